# SPDX-License-Identifier: GPL-2.0-only
# The kernel module's kernel-independent core (kernel/core/*.c) compiled into
# a userspace node addon, so that the differential tests can ask the very C
# code that runs in dattobd.ko what it decides. Kept in a subfolder so that
# `npm ci` never compiles it; build with `npm run build:core-addon` (the
# differential tests do that themselves when the addon is missing).
{
  "targets": [
    {
      "target_name": "dbd_core_addon",
      "sources": [
        "dbd_core_addon.cc",
        "../../../kernel/core/dbd_check.c",
        "../../../kernel/core/dbd_geometry.c",
        "../../../kernel/core/dbd_header.c",
        "../../../kernel/core/dbd_json.c"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "../../../kernel/core"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-Wall", "-Wextra", "-Werror"],
      "cflags_c": ["-std=gnu11"],
      "cflags_cc": ["-std=c++17", "-fexceptions"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"]
    }
  ]
}

# SPDX-License-Identifier: GPL-2.0-only
# The ioctl binding. Kept in this subfolder (not at the package root) so that
# `npm ci` never compiles it; build it with `npm run build:native`.
# node-addon-api is used header-only (no gyp dependency, so node-gyp writes
# nothing outside build/).
{
  "targets": [
    {
      "target_name": "dattobd_native",
      "sources": ["dattobd_native.cc", "copy_engine.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "../../kernel/include/uapi"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-Wall", "-Wextra", "-Werror"],
      "cflags_cc": ["-Wall", "-Wextra", "-Werror", "-std=c++17", "-fexceptions"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"]
    }
  ]
}

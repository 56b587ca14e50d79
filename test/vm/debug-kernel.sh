#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# The debug-kernel lane's kernel: Debian's linux-source-6.12 built with
# KASAN, lockdep (PROVE_LOCKING), DEBUG_ATOMIC_SLEEP, KFENCE, DEBUG_LIST,
# hung-task and soft-lockup detection, the fault-injection framework
# (failslab, fail_page_alloc, fail_make_request, debugfs, stack filter) and
# IBT, with everything the VM guest needs built in (PVH, virtio, 9p, ext4,
# xfs, loop, device-mapper with flakey/delay/log-writes).  Cached outside
# the repository in $DBD_VM_DIR/debug/<source version>-<config hash>/, so
# it is built once per source version and config (about 30 minutes with
# 2 cores).  Writes $DBD_VM_DIR/debug/kernel.json, which the VM harness
# reads for DBD_VM_KERNELS=6.12-debug.  Prints where the kernel is.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
DIR=${DBD_VM_DIR:-${TMPDIR:-/tmp}/dattobd-vm}
JOBS=${DBD_DEBUG_JOBS:-$(nproc)}

need=()
for p in linux-source-6.12 flex bison libelf-dev libssl-dev bc make gcc xz-utils cpio kmod; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "debug-kernel: installing ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# config fragment: the options the lane is for, and what the guest needs
FRAGMENT="
CONFIG_LOCALVERSION=\"-dbd-debug\"
CONFIG_LOCALVERSION_AUTO=n
CONFIG_DEBUG_INFO_NONE=y
CONFIG_MODULES=y
CONFIG_MODULE_UNLOAD=y
CONFIG_MODULE_SIG=n
CONFIG_MODVERSIONS=n
CONFIG_PVH=y
CONFIG_X86_KERNEL_IBT=y
CONFIG_KALLSYMS_ALL=y
CONFIG_PROC_KCORE=y
CONFIG_FTRACE=y
CONFIG_FUNCTION_TRACER=y
CONFIG_DYNAMIC_FTRACE=y
CONFIG_VIRTIO=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_BLK=y
CONFIG_HW_RANDOM_VIRTIO=y
CONFIG_NET_9P=y
CONFIG_NET_9P_VIRTIO=y
CONFIG_9P_FS=y
CONFIG_9P_FS_POSIX_ACL=y
CONFIG_OVERLAY_FS=y
CONFIG_TMPFS=y
CONFIG_TMPFS_POSIX_ACL=y
CONFIG_DEVTMPFS=y
CONFIG_BLK_DEV_INITRD=y
CONFIG_EXT4_FS=y
CONFIG_EXT4_FS_POSIX_ACL=y
CONFIG_XFS_FS=y
CONFIG_XFS_POSIX_ACL=y
CONFIG_BLK_DEV_LOOP=y
CONFIG_MD=y
CONFIG_BLK_DEV_DM=y
CONFIG_DM_FLAKEY=y
CONFIG_DM_DELAY=y
CONFIG_DM_LOG_WRITES=y
CONFIG_DM_ZERO=y
CONFIG_USER_NS=y
CONFIG_CGROUPS=y
CONFIG_MEMCG=y
CONFIG_DEBUG_FS=y
CONFIG_KASAN=y
CONFIG_KASAN_GENERIC=y
CONFIG_KASAN_INLINE=y
CONFIG_KFENCE=y
CONFIG_PROVE_LOCKING=y
CONFIG_DEBUG_ATOMIC_SLEEP=y
CONFIG_DEBUG_LIST=y
CONFIG_DETECT_HUNG_TASK=y
CONFIG_SOFTLOCKUP_DETECTOR=y
CONFIG_FAULT_INJECTION=y
CONFIG_FAILSLAB=y
CONFIG_FAIL_PAGE_ALLOC=y
CONFIG_FAIL_MAKE_REQUEST=y
CONFIG_FAULT_INJECTION_DEBUG_FS=y
CONFIG_FAULT_INJECTION_STACKTRACE_FILTER=y
CONFIG_DRM=n
CONFIG_SOUND=n
CONFIG_USB_SUPPORT=n
CONFIG_WLAN=n
CONFIG_WIRELESS=n
CONFIG_INPUT_JOYSTICK=n
CONFIG_INPUT_TABLET=n
CONFIG_INPUT_TOUCHSCREEN=n
"
src_tar=/usr/src/linux-source-6.12.tar.xz
ver=$(dpkg-query -W -f '${Version}' linux-source-6.12)
# the cache key: the config fragment and the build recipe's version (bump
# RECIPE when the build steps below change; edits elsewhere in this script
# must not cost a 35 min rebuild)
RECIPE=1
hash=$(printf '%s recipe %s' "$FRAGMENT" "$RECIPE" | sha256sum | cut -c1-12)
out="$DIR/debug/6.12-$ver-$hash"
mkdir -p "$DIR/debug"
exec 9>"$DIR/debug/.lock"
flock 9

if [ ! -e "$out/done" ]; then
  echo "debug-kernel: building linux-source-6.12 $ver with the debug options in $out (about 30 min on 2 cores)"
  t0=$(date +%s)
  rm -rf "$out"
  mkdir -p "$out"
  tar -C "$out" -xf "$src_tar"
  src="$out/linux-source-6.12"
  printf '%s\n' "$FRAGMENT" > "$out/fragment.config"
  make -s -C "$src" defconfig >/dev/null
  make -s -C "$src" kvm_guest.config >/dev/null
  "$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" "$out/fragment.config" >/dev/null
  make -s -C "$src" olddefconfig >/dev/null
  # every option of the fragment must have survived the dependency resolution
  missing=$(grep '^CONFIG_.*=y$' "$out/fragment.config" | while read -r l; do grep -qx "$l" "$src/.config" || echo "$l"; done)
  if [ -n "$missing" ]; then
    echo "debug-kernel: options not enabled after olddefconfig:" >&2
    echo "$missing" >&2
    exit 1
  fi
  nice -n 19 make -s -C "$src" -j"$JOBS" bzImage modules
  kver=$(make -s -C "$src" kernelrelease)
  make -s -C "$src" INSTALL_MOD_PATH="$out/root" modules_install
  depmod -b "$out/root" "$kver"
  # the harness boots the uncompressed vmlinux directly (PVH)
  mkdir -p "$out/root/boot"
  cp "$src/arch/x86/boot/bzImage" "$out/root/boot/vmlinuz-$kver"
  cp "$src/vmlinux" "$out/root/boot/vmlinux-pvh-$kver"
  echo "$kver" > "$out/done"
  echo "debug-kernel: built $kver in $(( $(date +%s) - t0 )) s"
fi
kver=$(cat "$out/done")
# the guest's init looks for $DIR/kernels/<kver>/lib/modules/<kver>: a
# relative link, so that it resolves inside the guest's view of $DIR too
mkdir -p "$DIR/kernels"
ln -sfn "../debug/$(basename "$out")/root" "$DIR/kernels/$kver"
cat > "$DIR/debug/kernel.json" <<EOF
{"name":"6.12-debug","kver":"$kver","headers":"$out/linux-source-6.12","vmlinuz":"$out/root/boot/vmlinuz-$kver","modules":"$out/root"}
EOF
echo "debug-kernel: $kver at $out"

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# VM harness setup: host tool packages + Debian kernels (6.1, 6.12, 6.12-rt)
# unpacked (never installed) into ${DBD_VM_DIR:-${TMPDIR:-/tmp}/dattobd-vm}.
# Idempotent: a kernel whose unpacked tree is complete is not downloaded again.
# Writes $DBD_VM_DIR/kernels.json and prints the resolved versions.
#
# Environment:
#   DBD_VM_DIR        cache/work directory
#   DBD_VM_KERNELS    comma list of kernels to prepare (default: 6.1,6.12,6.12-rt)
#   DBD_VM_NO_APT=1   do not run apt-get install for tools (fail if missing)
#   DBD_VM_REFRESH=1  re-resolve the newest kernels even if kernels.json is recent
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

VM_DIR="${DBD_VM_DIR:-${TMPDIR:-/tmp}/dattobd-vm}"
KERNELS="${DBD_VM_KERNELS:-6.1,6.12,6.12-rt}"
mkdir -p "$VM_DIR/kernels" "$VM_DIR/debs"
# one setup at a time per cache directory (several test runs may share it)
exec 9>"$VM_DIR/.setup.lock"
flock 9

die() { echo "vm-setup: ERROR: $*" >&2; exit 1; }
log() { echo "vm-setup: $*" >&2; }

# ---- host tools ------------------------------------------------------------
TOOLS_PKGS="qemu-system-x86 busybox-static cpio kmod e2fsprogs xfsprogs xz-utils zstd make gcc-12 gcc libc6-dev pahole bc fio util-linux coreutils"
need_tools() {
  for c in qemu-system-x86_64 busybox cpio depmod mkfs.ext4 mkfs.xfs xz zstd make gcc pahole bc fio losetup flock timeout; do
    command -v "$c" >/dev/null 2>&1 || { echo "$c"; return 0; }
  done
  [ -x /bin/busybox ] || { echo busybox-static; return 0; }
  return 0
}
missing="$(need_tools)"
if [ -n "$missing" ]; then
  if [ "${DBD_VM_NO_APT:-0}" = 1 ]; then die "missing host tool '$missing' and DBD_VM_NO_APT=1"; fi
  command -v apt-get >/dev/null 2>&1 || die "missing host tool '$missing' and no apt-get to install it (install: $TOOLS_PKGS)"
  [ "$(id -u)" = 0 ] || die "missing host tool '$missing'; run as root or install: $TOOLS_PKGS"
  log "installing host tools: $TOOLS_PKGS"
  stamp="$VM_DIR/.apt-updated"
  if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +720 2>/dev/null)" ]; then
    apt-get update -qq && touch "$stamp"
  fi
  apt-get install -y -qq --no-install-recommends $TOOLS_PKGS >/dev/null || die "apt-get install of host tools failed"
  missing="$(need_tools)"
  [ -z "$missing" ] || die "host tool '$missing' still missing after apt-get install"
fi

# ---- kernel resolution -----------------------------------------------------
# Newest image package a metapackage depends on.
resolve_meta() {
  apt-cache depends "$1" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}'
}
apt_ready=0
ensure_apt_index() {
  [ "$apt_ready" = 1 ] && return 0
  if [ -z "$(resolve_meta linux-image-amd64)" ]; then
    [ "$(id -u)" = 0 ] || die "apt index has no linux-image-amd64 and we are not root to apt-get update"
    apt-get update -qq || die "apt-get update failed"
    touch "$VM_DIR/.apt-updated"
  fi
  apt_ready=1
}

# prints: <image-pkg> <kver>
resolve_kernel() {
  local name="$1" img
  case "$name" in
    6.1)     img="$(resolve_meta linux-image-amd64)";;
    6.12)    img="$(resolve_meta linux-image-6.12-amd64)";;
    6.12-rt) img="$(resolve_meta linux-image-6.12-rt-amd64)"
             if [ -z "$img" ]; then
               # no rt metapackage: derive from the 6.12 one
               img="$(resolve_meta linux-image-6.12-amd64)"; img="${img%-amd64}-rt-amd64"
             fi;;
    *) die "unknown kernel name '$name' (known: 6.1, 6.12, 6.12-rt)";;
  esac
  [ -n "$img" ] || die "cannot resolve the newest image for kernel $name via apt-cache depends"
  # image package may be a signed one: linux-image-<kver>[-unsigned]
  local kver="${img#linux-image-}"; kver="${kver%-unsigned}"
  echo "$img $kver"
}

prepare_kernel() {
  local name="$1" img kver root
  read -r img kver < <(resolve_kernel "$name")
  root="$VM_DIR/kernels/$kver"
  if [ -f "$root/.complete" ]; then
    log "$name: $kver (cached)"
    echo "$kver"; return 0
  fi
  log "$name: resolving packages for $kver"
  local hdr="linux-headers-$kver"
  # the headers' -common package and kbuild package come from the headers' Depends
  local deps common kbuild
  deps="$(apt-cache depends "$hdr" 2>/dev/null)" || die "no package $hdr"
  common="$(awk '/Depends: linux-headers-.*-common/ {print $2; exit}' <<<"$deps")"
  kbuild="$(awk '/Depends: linux-kbuild-/ {print $2; exit}' <<<"$deps")"
  [ -n "$common" ] && [ -n "$kbuild" ] || die "cannot resolve headers-common/kbuild for $hdr (deps: $deps)"
  local dl="$VM_DIR/debs/$kver"
  mkdir -p "$dl"
  ( cd "$dl" && for p in "$img" "$hdr" "$common" "$kbuild"; do
      ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download -qq "$p" >/dev/null 2>&1 || { echo "apt-get download $p failed" >&2; exit 1; }
    done ) || die "download failed for $name ($kver)"
  rm -rf "$root.tmp"; mkdir -p "$root.tmp"
  for d in "$dl"/*.deb; do dpkg -x "$d" "$root.tmp"; done
  # fix the absolute include of the -common tree in the flavour Makefile
  local mk="$root.tmp/usr/src/linux-headers-$kver/Makefile"
  [ -f "$mk" ] || die "headers Makefile missing: $mk"
  sed -i -E "s#(include|MAKEARGS.*:=.*-C) /usr/src/#\1 $root/usr/src/#g" "$mk"
  grep -q "/usr/src/" "$mk" && sed -i -E "s# /usr/src/# $root/usr/src/#g" "$mk"
  # symlinks inside the headers tree (scripts, tools) point to absolute /usr/lib/linux-kbuild-*
  find "$root.tmp/usr/src" -type l | while read -r l; do
    t="$(readlink "$l")"
    case "$t" in /usr/*) ln -sfn "$root$t" "$l";; esac
  done
  # modules dir: lib/modules/<kver> (Debian 12 usrmerge may put it under usr/lib)
  if [ ! -d "$root.tmp/lib/modules/$kver" ] && [ -d "$root.tmp/usr/lib/modules/$kver" ]; then
    mkdir -p "$root.tmp/lib/modules"; ln -sfn "../../usr/lib/modules/$kver" "$root.tmp/lib/modules/$kver"
  fi
  # build/source symlinks in the module tree point at /usr/src: repoint
  for l in build source; do
    [ -L "$root.tmp/lib/modules/$kver/$l" ] && ln -sfn "$root/usr/src/linux-headers-$kver" "$root.tmp/lib/modules/$kver/$l"
  done
  rm -rf "$root"; mv "$root.tmp" "$root"
  depmod -b "$root" "$kver" || die "depmod failed for $kver"
  touch "$root/.complete"
  log "$name: $kver unpacked in $root"
  echo "$kver"
}

# Fast path: kernels resolved less than DBD_VM_REFRESH_HOURS (default 24) ago and all
# unpacked: skip the apt queries (DBD_VM_REFRESH=1 forces a new resolution).
if [ "${DBD_VM_REFRESH:-0}" != 1 ] && [ "$KERNELS" = "6.1,6.12,6.12-rt" ] && [ -f "$VM_DIR/kernels.json" ] &&
   [ -z "$(find "$VM_DIR/kernels.json" -mmin +$(( ${DBD_VM_REFRESH_HOURS:-24} * 60 )) 2>/dev/null)" ]; then
  fresh=1
  for k in $(grep -o '"kver":"[^"]*"' "$VM_DIR/kernels.json" | cut -d'"' -f4); do
    [ -f "$VM_DIR/kernels/$k/.complete" ] || fresh=0
  done
  if [ "$fresh" = 1 ]; then
    grep -o '"name":"[^"]*","kver":"[^"]*"' "$VM_DIR/kernels.json" | sed -E 's/"name":"([^"]*)","kver":"([^"]*)"/kernel \1: \2 (resolved <24 h ago; DBD_VM_REFRESH=1 re-resolves)/'
    echo "kernels.json: $VM_DIR/kernels.json"
    exit 0
  fi
fi

ensure_apt_index
json="["
sep=""
IFS=',' read -r -a names <<<"$KERNELS"
for name in "${names[@]}"; do
  kver="$(prepare_kernel "$name")"
  root="$VM_DIR/kernels/$kver"
  vmlinuz="$root/boot/vmlinuz-$kver"
  [ -f "$vmlinuz" ] || die "missing $vmlinuz"
  json+="$sep{\"name\":\"$name\",\"kver\":\"$kver\",\"headers\":\"$root/usr/src/linux-headers-$kver\",\"vmlinuz\":\"$vmlinuz\",\"modules\":\"$root\"}"
  sep=","
  echo "kernel $name: $kver"
done
json+="]"
# only (re)write kernels.json for the default full set, or merge otherwise
if [ "$KERNELS" = "6.1,6.12,6.12-rt" ] || [ ! -f "$VM_DIR/kernels.json" ]; then
  printf '%s\n' "$json" > "$VM_DIR/kernels.json.tmp" && mv "$VM_DIR/kernels.json.tmp" "$VM_DIR/kernels.json"
else
  printf '%s\n' "$json" > "$VM_DIR/kernels.selected.json"
fi
echo "kernels.json: $VM_DIR/kernels.json"

#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0-only
# /init of the VM harness initramfs (busybox). Loads the virtio/9p modules,
# mounts the host's root filesystem read-only (9p tag "hostroot") and the
# run directory read-write (9p tag "results") and, when the kernel's cases
# are shared by several guests, their claim directory (9p tag "queue", on
# /run/dbd-queue), builds a writable scratch
# layer (tmpfs on /tmp /run /var/tmp /mnt /root, the guest kernel's modules
# on /usr/lib/modules/<kver>), then runs <rundir>/guest.sh chrooted into the
# host root. Exit status, full dmesg and a marker line go to the run dir and
# the serial console; then the guest powers off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "dbd-vm: init: $(cat /proc/uptime | cut -d' ' -f1)s since boot"

arg() { sed -n "s/.*\bdbd\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
RUNDIR="$(arg rundir)"
VMDIR="$(arg vmdir)"
REPODIR="$(arg repo)"
KVER="$(uname -r)"
HUNG="$(arg hung)"
QUEUE="$(arg queue)"

fail() {
  echo "dbd-vm: init: FATAL: $*"
  echo "DBD-VM-EXIT 254"
  poweroff -f
  sleep 10
}

while read -r m; do
  [ -n "$m" ] || continue
  insmod "/lib/mods/$m" || fail "insmod $m failed"
done < /lib/mods/order

mkdir -p /host /stash/vm /stash/run /stash/repo
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /host || fail "9p hostroot mount failed"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 results /stash/run || fail "9p results mount failed"
[ -n "$VMDIR" ] && mount --bind "/host$VMDIR" /stash/vm || fail "bind of $VMDIR failed"
[ -n "$REPODIR" ] && mount --bind "/host$REPODIR" /stash/repo || fail "bind of $REPODIR failed"

for d in tmp run var/tmp mnt root; do
  mount -t tmpfs -o mode=1777 tmpfs "/host/$d" || fail "tmpfs on /$d failed"
done
mkdir -p "/host$VMDIR"
mount --move /stash/vm "/host$VMDIR" || fail "move of $VMDIR failed"
mkdir -p "/host$REPODIR" 2>/dev/null
mount --move /stash/repo "/host$REPODIR" || fail "move of $REPODIR failed"
KROOT="$VMDIR/kernels/$KVER"
[ -d "/host$KROOT/lib/modules/$KVER" ] || fail "no module tree $KROOT/lib/modules/$KVER"
# The host has no /lib/modules for this kernel: every modprobe (ours and the
# kernel's request_module helper, whichever root it runs in) goes through a
# wrapper that passes -d <unpacked kernel root>.
mkdir -p /run /host/run/dbd-bin
printf '#!/bin/sh\nexec chroot /host /sbin/modprobe -d %s "$@"\n' "$KROOT" > /run/dbd-modprobe
printf '#!/bin/sh\nexec /sbin/modprobe -d %s "$@"\n' "$KROOT" > /host/run/dbd-modprobe
printf '#!/bin/sh\nexec /sbin/modprobe -d %s "$@"\n' "$KROOT" > /host/run/dbd-bin/modprobe
chmod 755 /run/dbd-modprobe /host/run/dbd-modprobe /host/run/dbd-bin/modprobe
echo /run/dbd-modprobe > /proc/sys/kernel/modprobe
mount --move /stash/run "/host$RUNDIR" || fail "move of run dir failed"
mount --move /proc /host/proc
mount --move /sys /host/sys
mount --move /dev /host/dev
mkdir -p /host/dev/pts /host/dev/shm 2>/dev/null
mount -t devpts devpts /host/dev/pts
mount -t tmpfs tmpfs /host/dev/shm
if [ "$QUEUE" = 1 ]; then
  mkdir -p /host/run/dbd-queue
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 queue /host/run/dbd-queue || fail "9p queue mount failed"
fi
mount -t debugfs debugfs /host/sys/kernel/debug 2>/dev/null
echo "${HUNG:-30}" > /host/proc/sys/kernel/hung_task_timeout_secs 2>/dev/null
echo "dbd-vm: init: ready at $(cut -d' ' -f1 /host/proc/uptime)s"

chroot /host /usr/bin/env -i PATH=/run/dbd-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root TMPDIR=/tmp TERM="${TERM:-dumb}" LANG=C.UTF-8 \
  DBD_VM_RUNDIR="$RUNDIR" DBD_VM_DIR="$VMDIR" \
  /bin/sh "$RUNDIR/guest.sh"
rc=$?
echo "$rc" > "/host$RUNDIR/exit-status"
dmesg > "/host$RUNDIR/dmesg.txt"
sync
echo "dbd-vm: init: payload exited $rc at $(cut -d' ' -f1 /host/proc/uptime)s"
echo "DBD-VM-EXIT $rc"
umount "/host$RUNDIR" 2>/dev/null
poweroff -f
sleep 10

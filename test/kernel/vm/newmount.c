// SPDX-License-Identifier: GPL-2.0-only
/*
 * newmount: mount a block device with the new mount API (fsopen, fsconfig,
 * fsmount, move_mount), or remount a mounted filesystem read-only or
 * read-write (fspick, fsconfig reconfigure), as util-linux >= 2.39 does.
 * Usage: newmount <fstype> <bdev> <dir>
 *        newmount remount ro|rw <dir>
 *        newmount remount-as-nobody ro|rw <dir>
 * The last picks the mount as the caller, then drops to uid/gid 65534 (no
 * capabilities) before fsconfig(FSCONFIG_CMD_RECONFIGURE): an unprivileged
 * reconfigure, as in a user namespace of one's own (which a chroot, as in
 * the VM harness, cannot create).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <string.h>
#include <unistd.h>
#include <grp.h>
#include <linux/mount.h>

static int remount(const char *mode, const char *dir, int drop)
{
	int fc = syscall(SYS_fspick, AT_FDCWD, dir, FSPICK_CLOEXEC);
	struct mount_attr attr = { 0 };

	if (fc < 0) {
		perror("fspick");
		return 1;
	}
	if (drop && (setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
		     setresuid(65534, 65534, 65534))) {
		perror("drop privileges");
		return 1;
	}
	if (syscall(SYS_fsconfig, fc, FSCONFIG_SET_FLAG, mode, NULL, 0) ||
	    syscall(SYS_fsconfig, fc, FSCONFIG_CMD_RECONFIGURE, NULL, NULL, 0)) {
		perror("fsconfig");
		return 1;
	}
	close(fc);
	/* then the mount's own flag, as util-linux does */
	if (!strcmp(mode, "ro"))
		attr.attr_set = MOUNT_ATTR_RDONLY;
	else
		attr.attr_clr = MOUNT_ATTR_RDONLY;
	if (syscall(SYS_mount_setattr, AT_FDCWD, dir, 0, &attr, sizeof(attr))) {
		perror("mount_setattr");
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int fs, mnt;

	if (argc == 4 && !strcmp(argv[1], "remount"))
		return remount(argv[2], argv[3], 0);
	if (argc == 4 && !strcmp(argv[1], "remount-as-nobody"))
		return remount(argv[2], argv[3], 1);
	if (argc != 4)
		return 100;
	fs = syscall(SYS_fsopen, argv[1], FSOPEN_CLOEXEC);
	if (fs < 0) {
		perror("fsopen");
		return 1;
	}
	if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "source", argv[2], 0) ||
	    syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0)) {
		perror("fsconfig");
		return 1;
	}
	mnt = syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0);
	if (mnt < 0) {
		perror("fsmount");
		return 1;
	}
	if (syscall(SYS_move_mount, mnt, "", AT_FDCWD, argv[3],
		    MOVE_MOUNT_F_EMPTY_PATH)) {
		perror("move_mount");
		return 1;
	}
	return 0;
}

// SPDX-License-Identifier: GPL-2.0-only
/*
 * newmount: mount a block device with the new mount API (fsopen, fsconfig,
 * fsmount, move_mount), as util-linux >= 2.39 does.
 * Usage: newmount <fstype> <bdev> <dir>
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/mount.h>

int main(int argc, char **argv)
{
	int fs, mnt;

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

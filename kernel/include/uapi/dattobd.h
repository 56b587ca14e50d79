/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note */
/*
 * dattobd-ts userspace ABI: ioctl numbers, parameter structs and the
 * on-disk COW (.datto) header.  Drop-in compatible with dattobd 0.12.
 *
 * This header is the single source of truth for the ABI.  It is used by
 * the kernel module, by the userspace build of the module's core, and by
 * the node-addon-api binding.  The TypeScript constants in src/abi/ are
 * checked against it by a test.
 */
#ifndef _UAPI_DATTOBD_H
#define _UAPI_DATTOBD_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define DATTOBD_VERSION "0.12.1"
#define DATTO_IOCTL_MAGIC 0x91

#define DATTO_CTL_NAME "datto-ctl"
#define DATTO_BLKDEV_NAME "datto"
#define DATTO_PROC_NAME "datto-info"

#define PATH_MAX_DATTO 4096

struct setup_params {
	char *bdev;			/* block device path */
	char *cow;			/* cow file path */
	unsigned long fallocated_space;	/* cow file size in MiB, 0 = default */
	unsigned long cache_size;	/* index cache in bytes, 0 = default */
	unsigned int minor;		/* requested minor */
};

struct reload_params {
	char *bdev;			/* block device path */
	char *cow;			/* cow path relative to the mount point */
	unsigned long cache_size;	/* index cache in bytes, 0 = default */
	unsigned int minor;		/* requested minor */
};

struct transition_snap_params {
	char *cow;			/* new cow file path */
	unsigned long fallocated_space;	/* MiB, 0 = reuse the previous size */
	unsigned int minor;
};

struct reconfigure_params {
	unsigned long cache_size;	/* bytes, 0 = default */
	unsigned int minor;
};

struct expand_cow_file_params {
	__u64 size;			/* MiB to add */
	unsigned int minor;
};

struct reconfigure_auto_expand_params {
	__u64 step_size;		/* MiB, 0 disables growth */
	__u64 reserved_space;		/* MiB kept free on the filesystem */
	unsigned int minor;
};

#define COW_UUID_SIZE 16
#define COW_BLOCK_LOG_SIZE 12
#define COW_BLOCK_SIZE (1 << COW_BLOCK_LOG_SIZE)
#define COW_HEADER_SIZE 4096
#define COW_MAGIC ((__u32)4776)
#define COW_CLEAN 0
#define COW_INDEX_ONLY 1
#define COW_VMALLOC_UPPER 2

#define COW_VERSION_0 0
#define COW_VERSION_CHANGED_BLOCKS 1

struct cow_header {
	__u32 magic;			/* COW_MAGIC */
	__u32 flags;			/* COW_CLEAN, COW_INDEX_ONLY, ... bits */
	__u64 fpos;			/* next free data block */
	__u64 fsize;			/* file size in bytes */
	__u64 seqid;			/* sequence id, 1 for a new series */
	__u8 uuid[COW_UUID_SIZE];	/* series uuid */
	__u64 version;			/* COW_VERSION_* */
	__u64 nr_changed_blocks;	/* entries that went 0 -> non-zero */
};

struct dattobd_info {
	unsigned int minor;
	unsigned long state;
	int error;
	unsigned long cache_size;
	unsigned long long falloc_size;
	unsigned long long seqid;
	char uuid[COW_UUID_SIZE];
	char cow[PATH_MAX_DATTO];
	char bdev[PATH_MAX_DATTO];
	unsigned long long version;
	unsigned long long nr_changed_blocks;
};

/* state bits of struct dattobd_info.state and /proc "state" */
#define SNAPSHOT 0
#define ACTIVE 1
#define UNVERIFIED 2

#define IOCTL_SETUP_SNAP _IOW(DATTO_IOCTL_MAGIC, 1, struct setup_params)
#define IOCTL_RELOAD_SNAP _IOW(DATTO_IOCTL_MAGIC, 2, struct reload_params)
#define IOCTL_RELOAD_INC _IOW(DATTO_IOCTL_MAGIC, 3, struct reload_params)
#define IOCTL_DESTROY _IOW(DATTO_IOCTL_MAGIC, 4, unsigned int)
#define IOCTL_TRANSITION_INC _IOW(DATTO_IOCTL_MAGIC, 5, unsigned int)
#define IOCTL_TRANSITION_SNAP \
	_IOW(DATTO_IOCTL_MAGIC, 6, struct transition_snap_params)
#define IOCTL_RECONFIGURE _IOW(DATTO_IOCTL_MAGIC, 7, struct reconfigure_params)
#define IOCTL_DATTOBD_INFO _IOR(DATTO_IOCTL_MAGIC, 8, struct dattobd_info)
#define IOCTL_GET_FREE _IOR(DATTO_IOCTL_MAGIC, 9, int)
#define IOCTL_EXPAND_COW_FILE \
	_IOW(DATTO_IOCTL_MAGIC, 10, struct expand_cow_file_params)
#define IOCTL_RECONFIGURE_AUTO_EXPAND \
	_IOW(DATTO_IOCTL_MAGIC, 11, struct reconfigure_auto_expand_params)

#endif /* _UAPI_DATTOBD_H */

/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The few kernel interfaces that differ between the supported kernels
 * (Debian 6.1 and 6.12).  One switch, DBD_NEW_BLOCK_API, set by a feature
 * probe in Kbuild: true from 6.9 on (bdev files, bdev_freeze, gendisk-
 * based open, mnt_idmap, queue limits at disk allocation, no bd_super).
 */
#ifndef DBD_COMPAT_H
#define DBD_COMPAT_H

#include <linux/blkdev.h>
#include <linux/fs.h>
#include <linux/uio.h>

#ifndef DBD_NEW_BLOCK_API
#error "DBD_NEW_BLOCK_API must be set by Kbuild"
#endif

/* a block device opened read-only, non-exclusive */
struct dbd_bdev {
	struct block_device *bdev;
#if DBD_NEW_BLOCK_API
	struct file *file;
#endif
};

int dbd_bdev_open(const char *path, struct dbd_bdev *h);
void dbd_bdev_close(struct dbd_bdev *h);

/*
 * The filesystem mounted on bdev, with an active reference (release with
 * deactivate_super()), or NULL if none.
 */
struct super_block *dbd_bdev_get_super(struct block_device *bdev);

int dbd_freeze(struct block_device *bdev);
int dbd_thaw(struct block_device *bdev);

/* unlink a dentry; the caller holds the parent's inode lock */
int dbd_vfs_unlink(struct inode *dir, struct dentry *dentry);
int dbd_notify_change(struct file *filp, struct iattr *attr);

struct gendisk *dbd_alloc_disk(struct block_device *base);

/* iov_iter direction of a write source (ITER_SOURCE since 6.2) */
#ifdef ITER_SOURCE
#define DBD_ITER_SOURCE ITER_SOURCE
#define DBD_ITER_DEST ITER_DEST
#else
#define DBD_ITER_SOURCE WRITE
#define DBD_ITER_DEST READ
#endif

#ifndef DBD_ITER_WRITE_STARTS_WRITE
#error "DBD_ITER_WRITE_STARTS_WRITE must be set by Kbuild"
#endif

#endif /* DBD_COMPAT_H */

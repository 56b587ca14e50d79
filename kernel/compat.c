// SPDX-License-Identifier: GPL-2.0-only
/*
 * Version-dependent kernel interfaces, see compat.h.
 */
#include <linux/blkdev.h>
#include <linux/fs.h>
#include <linux/mount.h>
#include <linux/err.h>
#include "compat.h"

int dbd_bdev_open(const char *path, struct dbd_bdev *h)
{
#if DBD_NEW_BLOCK_API
	struct file *f = bdev_file_open_by_path(path, BLK_OPEN_READ, NULL, NULL);

	if (IS_ERR(f))
		return PTR_ERR(f);
	h->file = f;
	h->bdev = file_bdev(f);
#else
	struct block_device *b = blkdev_get_by_path(path, FMODE_READ, NULL);

	if (IS_ERR(b))
		return PTR_ERR(b);
	h->bdev = b;
#endif
	return 0;
}

void dbd_bdev_close(struct dbd_bdev *h)
{
	if (!h->bdev)
		return;
#if DBD_NEW_BLOCK_API
	fput(h->file);
	h->file = NULL;
#else
	blkdev_put(h->bdev, FMODE_READ);
#endif
	h->bdev = NULL;
}

struct super_block *dbd_bdev_get_super(struct block_device *bdev)
{
	struct super_block *sb = NULL;

#if DBD_NEW_BLOCK_API
	/*
	 * Since 6.6 a mounted filesystem is the holder of its block device;
	 * the holder is a super_block only if the holder ops are the
	 * filesystem's (an LVM PV or md member has another holder).
	 */
	mutex_lock(&bdev->bd_holder_lock);
	if (bdev->bd_holder && bdev->bd_holder_ops == &fs_holder_ops) {
		sb = bdev->bd_holder;
		if (!atomic_inc_not_zero(&sb->s_active))
			sb = NULL;
	}
	mutex_unlock(&bdev->bd_holder_lock);
#else
	sb = READ_ONCE(bdev->bd_super);
	if (sb && !atomic_inc_not_zero(&sb->s_active))
		sb = NULL;
#endif
	return sb;
}

int dbd_freeze(struct block_device *bdev)
{
#if DBD_NEW_BLOCK_API
	return bdev_freeze(bdev);
#else
	return freeze_bdev(bdev);
#endif
}

int dbd_thaw(struct block_device *bdev)
{
#if DBD_NEW_BLOCK_API
	return bdev_thaw(bdev);
#else
	return thaw_bdev(bdev);
#endif
}

int dbd_vfs_unlink(struct inode *dir, struct dentry *dentry)
{
#if DBD_NEW_BLOCK_API
	return vfs_unlink(&nop_mnt_idmap, dir, dentry, NULL);
#else
	return vfs_unlink(&init_user_ns, dir, dentry, NULL);
#endif
}

int dbd_notify_change(struct file *filp, struct iattr *attr)
{
#if DBD_NEW_BLOCK_API
	return notify_change(file_mnt_idmap(filp), filp->f_path.dentry, attr,
			     NULL);
#else
	return notify_change(file_mnt_user_ns(filp), filp->f_path.dentry, attr,
			     NULL);
#endif
}

struct gendisk *dbd_alloc_disk(struct block_device *base)
{
	struct gendisk *disk;
#if DBD_NEW_BLOCK_API
	struct queue_limits lim = {
		.logical_block_size = bdev_logical_block_size(base),
		.physical_block_size = 4096,
		.io_min = 4096,
		.max_hw_sectors = 2048,
	};

	disk = blk_alloc_disk(&lim, NUMA_NO_NODE);
	if (IS_ERR(disk))
		return disk;
#else
	disk = blk_alloc_disk(NUMA_NO_NODE);
	if (!disk)
		return ERR_PTR(-ENOMEM);
	blk_queue_logical_block_size(disk->queue,
				     bdev_logical_block_size(base));
	blk_queue_physical_block_size(disk->queue, 4096);
	blk_queue_io_min(disk->queue, 4096);
	blk_queue_max_hw_sectors(disk->queue, 2048);
#endif
	return disk;
}

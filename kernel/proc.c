// SPDX-License-Identifier: GPL-2.0-only
/*
 * /proc/datto-info: JSON description of every device (format in
 * kernel/core/dbd_json.c).  The text is built under dbd_ctl_mutex when the
 * file is opened; the mutex is not held while userspace keeps it open.
 */
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include "dbd.h"

#define DBD_PROC_DEV_MAX (2 * 6 * PATH_MAX_DATTO + 1024)

static void dbd_proc_view(struct dbd_dev *dev, struct dbd_proc_dev *d)
{
	memset(d, 0, sizeof(*d));
	d->minor = dev->minor;
	d->cow_file = dev->cow_path ? dev->cow_path : "";
	d->block_device = dev->bdev_path ? dev->bdev_path : "";
	d->max_cache = dbd_dev_cache(dev);
	d->unverified = dev->state & DBD_STATE_UNVERIFIED;
	d->fallocate_bytes = dev->falloc_mib * DBD_MIB;
	if (dev->cow && !d->unverified) {
		mutex_lock(&dev->cow->lock);
		d->has_cow = true;
		d->cow_size_current = dev->cow->hdr.fsize;
		d->seq_id = dev->cow->hdr.seqid;
		memcpy(d->uuid, dev->cow->hdr.uuid, sizeof(d->uuid));
		d->version = dev->cow->hdr.version;
		d->nr_changed_blocks = dev->cow->hdr.nr_changed_blocks;
		mutex_unlock(&dev->cow->lock);
	}
	d->has_auto_expand = dev->has_auto_expand;
	d->step_size_mib = dev->step_mib;
	d->reserved_space_mib = dev->reserved_mib;
	d->error = dbd_dev_failed(dev);
	d->state = dev->state;
}

static int dbd_proc_show(struct seq_file *m, void *v)
{
	struct dbd_proc_dev *d;
	char *buf;
	bool first = true;
	unsigned int i;

	buf = kmalloc(DBD_PROC_DEV_MAX, GFP_KERNEL);
	d = kmalloc(sizeof(*d), GFP_KERNEL);
	if (!buf || !d) {
		kfree(buf);
		kfree(d);
		return -ENOMEM;
	}
	dbd_proc_head(buf, DBD_PROC_DEV_MAX);
	seq_puts(m, buf);
	mutex_lock(&dbd_ctl_mutex);
	for (i = 0; i < dbd_max_snap_devices; i++) {
		struct dbd_dev *dev = dbd_dev_get(i);

		if (!dev)
			continue;
		dbd_proc_view(dev, d);
		dbd_proc_dev(buf, DBD_PROC_DEV_MAX, d, first);
		seq_puts(m, buf);
		first = false;
	}
	mutex_unlock(&dbd_ctl_mutex);
	dbd_proc_tail(buf, DBD_PROC_DEV_MAX);
	seq_puts(m, buf);
	kfree(d);
	kfree(buf);
	return 0;
}

static int dbd_proc_open(struct inode *inode, struct file *file)
{
	return single_open(file, dbd_proc_show, NULL);
}

static const struct proc_ops dbd_proc_ops = {
	.proc_open = dbd_proc_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
};

static struct proc_dir_entry *dbd_proc_entry;

int dbd_proc_init(void)
{
	dbd_proc_entry = proc_create(DATTO_PROC_NAME, 0444, NULL,
				     &dbd_proc_ops);
	return dbd_proc_entry ? 0 : -ENOMEM;
}

void dbd_proc_exit(void)
{
	proc_remove(dbd_proc_entry);
}

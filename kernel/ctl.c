// SPDX-License-Identifier: GPL-2.0-only
/*
 * /dev/datto-ctl: ioctl dispatch.  Every command copies and validates its
 * arguments (bad pointer -> EFAULT, NULL or over-long path -> EINVAL),
 * then checks the minor in the order range -> existence -> busy ->
 * failed -> state (kernel/core/dbd_check.c) under dbd_ctl_mutex.
 */
#include <linux/module.h>
#include <linux/miscdevice.h>
#include <linux/fs.h>
#include <linux/uaccess.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/capability.h>
#include <linux/err.h>
#include "dbd.h"

/* copy a user path: NULL -> EINVAL, fault -> EFAULT, > 4095 -> EINVAL */
static char *dbd_copy_path(const char __user *up)
{
	char *s;

	if (!up)
		return ERR_PTR(-EINVAL);
	s = strndup_user(up, PAGE_SIZE);
	if (IS_ERR(s))
		return s;
	return s;
}

static int dbd_check(enum dbd_cmd cmd, unsigned int minor)
{
	struct dbd_minor_view v;

	if (minor >= dbd_max_snap_devices)
		return -EINVAL;
	dbd_dev_view(minor, &v);
	return dbd_check_cmd(cmd, minor, dbd_max_snap_devices, &v);
}

static int ioctl_setup(void __user *arg)
{
	struct setup_params p;
	char *bdev, *cow;
	int ret;

	if (copy_from_user(&p, arg, sizeof(p)))
		return -EFAULT;
	bdev = dbd_copy_path((const char __user *)p.bdev);
	if (IS_ERR(bdev))
		return PTR_ERR(bdev);
	cow = dbd_copy_path((const char __user *)p.cow);
	if (IS_ERR(cow)) {
		kfree(bdev);
		return PTR_ERR(cow);
	}
	mutex_lock(&dbd_ctl_mutex);
	ret = dbd_check(DBD_CMD_SETUP_SNAP, p.minor);
	if (!ret)
		ret = dbd_dev_setup_snap(p.minor, bdev, cow,
					 p.fallocated_space, p.cache_size);
	mutex_unlock(&dbd_ctl_mutex);
	kfree(cow);
	kfree(bdev);
	return ret;
}

static int ioctl_reload(void __user *arg, bool snapshot)
{
	struct reload_params p;
	char *bdev, *cow;
	int ret;

	if (copy_from_user(&p, arg, sizeof(p)))
		return -EFAULT;
	bdev = dbd_copy_path((const char __user *)p.bdev);
	if (IS_ERR(bdev))
		return PTR_ERR(bdev);
	cow = dbd_copy_path((const char __user *)p.cow);
	if (IS_ERR(cow)) {
		kfree(bdev);
		return PTR_ERR(cow);
	}
	mutex_lock(&dbd_ctl_mutex);
	ret = dbd_check(snapshot ? DBD_CMD_RELOAD_SNAP : DBD_CMD_RELOAD_INC,
			p.minor);
	if (!ret)
		ret = dbd_dev_reload(p.minor, bdev, cow, p.cache_size,
				     snapshot);
	mutex_unlock(&dbd_ctl_mutex);
	kfree(cow);
	kfree(bdev);
	return ret;
}

static int ioctl_minor_cmd(void __user *arg, enum dbd_cmd cmd)
{
	unsigned int minor;
	int ret;

	if (copy_from_user(&minor, arg, sizeof(minor)))
		return -EFAULT;
	mutex_lock(&dbd_ctl_mutex);
	ret = dbd_check(cmd, minor);
	if (!ret) {
		if (cmd == DBD_CMD_DESTROY)
			ret = dbd_dev_destroy(dbd_dev_get(minor));
		else
			ret = dbd_dev_transition_inc(dbd_dev_get(minor));
	}
	mutex_unlock(&dbd_ctl_mutex);
	return ret;
}

static int ioctl_transition_snap(void __user *arg)
{
	struct transition_snap_params p;
	char *cow;
	int ret;

	if (copy_from_user(&p, arg, sizeof(p)))
		return -EFAULT;
	cow = dbd_copy_path((const char __user *)p.cow);
	if (IS_ERR(cow))
		return PTR_ERR(cow);
	mutex_lock(&dbd_ctl_mutex);
	ret = dbd_check(DBD_CMD_TRANSITION_SNAP, p.minor);
	if (!ret)
		ret = dbd_dev_transition_snap(dbd_dev_get(p.minor), cow,
					      p.fallocated_space);
	mutex_unlock(&dbd_ctl_mutex);
	kfree(cow);
	return ret;
}

static int ioctl_reconfigure(void __user *arg)
{
	struct reconfigure_params p;
	struct dbd_dev *dev;
	int ret;

	if (copy_from_user(&p, arg, sizeof(p)))
		return -EFAULT;
	mutex_lock(&dbd_ctl_mutex);
	ret = dbd_check(DBD_CMD_RECONFIGURE, p.minor);
	if (!ret) {
		dev = dbd_dev_get(p.minor);
		dev->cache_size = p.cache_size;
		if ((dev->state & DBD_STATE_ACTIVE) && dev->cow)
			dbd_cow_set_cache(dev->cow, dbd_dev_cache(dev));
	}
	mutex_unlock(&dbd_ctl_mutex);
	return ret;
}

static void fill_info(struct dbd_dev *dev, struct dattobd_info *info)
{
	bool unverified = dev->state & DBD_STATE_UNVERIFIED;

	info->state = dev->state;
	info->error = dbd_dev_failed(dev);
	info->cache_size = dbd_dev_cache(dev);
	info->falloc_size = 0;
	info->seqid = 0;
	memset(info->uuid, 0, sizeof(info->uuid));
	if (!unverified && dev->cow) {
		mutex_lock(&dev->cow->lock);
		info->falloc_size = dev->cow->hdr.fsize;
		info->seqid = dev->cow->hdr.seqid;
		memcpy(info->uuid, dev->cow->hdr.uuid, sizeof(info->uuid));
		info->version = dev->cow->hdr.version;
		info->nr_changed_blocks = dev->cow->hdr.nr_changed_blocks;
		mutex_unlock(&dev->cow->lock);
	}
	strscpy(info->cow, dev->cow_path ? dev->cow_path : "",
		sizeof(info->cow));
	strscpy(info->bdev, dev->bdev_path ? dev->bdev_path : "",
		sizeof(info->bdev));
}

static int ioctl_info(void __user *arg)
{
	struct dattobd_info *info;
	int ret;

	/* in/out: the caller's bytes are the starting point (no kernel
	 * memory leaks, fields we do not fill are returned unchanged)
	 */
	info = kmalloc(sizeof(*info), GFP_KERNEL);
	if (!info)
		return -ENOMEM;
	if (copy_from_user(info, arg, sizeof(*info))) {
		ret = -EFAULT;
		goto out;
	}
	mutex_lock(&dbd_ctl_mutex);
	ret = dbd_check(DBD_CMD_INFO, info->minor);
	if (!ret)
		fill_info(dbd_dev_get(info->minor), info);
	mutex_unlock(&dbd_ctl_mutex);
	if (!ret && copy_to_user(arg, info, sizeof(*info)))
		ret = -EFAULT;
out:
	kfree(info);
	return ret;
}

static int ioctl_get_free(void __user *arg)
{
	int minor;

	mutex_lock(&dbd_ctl_mutex);
	minor = dbd_dev_free_minor();
	mutex_unlock(&dbd_ctl_mutex);
	if (minor < 0)
		return minor;
	if (copy_to_user(arg, &minor, sizeof(minor)))
		return -EFAULT;
	return 0;
}

static int ioctl_expand(void __user *arg)
{
	struct expand_cow_file_params p;
	int ret;

	if (copy_from_user(&p, arg, sizeof(p)))
		return -EFAULT;
	mutex_lock(&dbd_ctl_mutex);
	ret = dbd_check(DBD_CMD_EXPAND_COW_FILE, p.minor);
	if (!ret)
		ret = dbd_dev_expand(dbd_dev_get(p.minor), p.size);
	mutex_unlock(&dbd_ctl_mutex);
	return ret;
}

static int ioctl_auto_expand(void __user *arg)
{
	struct reconfigure_auto_expand_params p;
	struct dbd_dev *dev;
	int ret;

	if (copy_from_user(&p, arg, sizeof(p)))
		return -EFAULT;
	mutex_lock(&dbd_ctl_mutex);
	ret = dbd_check(DBD_CMD_RECONFIGURE_AUTO_EXPAND, p.minor);
	if (!ret) {
		dev = dbd_dev_get(p.minor);
		if (dev->cow)
			mutex_lock(&dev->cow->lock);
		dev->step_mib = p.step_size;
		dev->reserved_mib = p.reserved_space;
		dev->has_auto_expand = true;
		if (dev->cow)
			mutex_unlock(&dev->cow->lock);
	}
	mutex_unlock(&dbd_ctl_mutex);
	return ret;
}

static long dbd_ctl_ioctl(struct file *filp, unsigned int cmd,
			  unsigned long arg)
{
	void __user *uarg = (void __user *)arg;
	int ret;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;

	switch (cmd) {
	case IOCTL_SETUP_SNAP:
		ret = ioctl_setup(uarg);
		break;
	case IOCTL_RELOAD_SNAP:
		ret = ioctl_reload(uarg, true);
		break;
	case IOCTL_RELOAD_INC:
		ret = ioctl_reload(uarg, false);
		break;
	case IOCTL_DESTROY:
		ret = ioctl_minor_cmd(uarg, DBD_CMD_DESTROY);
		break;
	case IOCTL_TRANSITION_INC:
		ret = ioctl_minor_cmd(uarg, DBD_CMD_TRANSITION_INC);
		break;
	case IOCTL_TRANSITION_SNAP:
		ret = ioctl_transition_snap(uarg);
		break;
	case IOCTL_RECONFIGURE:
		ret = ioctl_reconfigure(uarg);
		break;
	case IOCTL_DATTOBD_INFO:
		ret = ioctl_info(uarg);
		break;
	case IOCTL_GET_FREE:
		ret = ioctl_get_free(uarg);
		break;
	case IOCTL_EXPAND_COW_FILE:
		ret = ioctl_expand(uarg);
		break;
	case IOCTL_RECONFIGURE_AUTO_EXPAND:
		ret = ioctl_auto_expand(uarg);
		break;
	default:
		ret = -EINVAL;
	}
	if (ret)
		dbd_dbg("ioctl %#x: %d", cmd, ret);
	return ret;
}

static const struct file_operations dbd_ctl_fops = {
	.owner = THIS_MODULE,
	.open = nonseekable_open,
	.unlocked_ioctl = dbd_ctl_ioctl,
	.compat_ioctl = dbd_ctl_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice dbd_ctl_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = DATTO_CTL_NAME,
	.fops = &dbd_ctl_fops,
	.mode = 0600,
};

int dbd_ctl_init(void)
{
	return misc_register(&dbd_ctl_misc);
}

void dbd_ctl_exit(void)
{
	misc_deregister(&dbd_ctl_misc);
}

// SPDX-License-Identifier: GPL-2.0-only
/*
 * Device table and the management operations: setup, reload, destroy,
 * transitions, expand.  Every function here runs under dbd_ctl_mutex.
 */
#include <linux/slab.h>
#include <linux/namei.h>
#include <linux/dcache.h>
#include <linux/err.h>
#include <linux/workqueue.h>
#include "dbd.h"

static struct dbd_dev *dbd_devs[DBD_HARD_MAX_DEVICES];

struct dbd_dev *dbd_dev_get(unsigned int minor)
{
	if (minor >= dbd_max_snap_devices)
		return NULL;
	return dbd_devs[minor];
}

int dbd_dev_free_minor(void)
{
	unsigned int i;

	for (i = 0; i < dbd_max_snap_devices; i++)
		if (!dbd_devs[i])
			return i;
	return -ENOENT;
}

void dbd_dev_view(unsigned int minor, struct dbd_minor_view *v)
{
	struct dbd_dev *dev = dbd_dev_get(minor);

	memset(v, 0, sizeof(*v));
	if (!dev)
		return;
	v->exists = true;
	v->busy = atomic_read(&dev->refs) != 0;
	v->fail_code = dbd_dev_failed(dev);
	v->state = dev->state;
}

/*
 * Every state change goes through the core's state table (dbd_state_next,
 * the table the emulator is checked against): an event that does not
 * apply is a module bug, reported and ignored.
 */
static void dev_enter(struct dbd_dev *dev, enum dbd_event ev)
{
	unsigned long next;

	if (WARN_ONCE(dbd_state_next(dev->state, ev, &next),
		      "dattobd: event %d does not apply to state %lu of device %u",
		      ev, dev->state, dev->minor))
		return;
	dev->state = next;
}

void dbd_dev_fail(struct dbd_dev *dev, int err)
{
	unsigned long flags;

	if (atomic_cmpxchg(&dev->fail_code, 0, err) != 0)
		return;
	dbd_err("device %u failed: %d", dev->minor, err);
	/*
	 * The engine threads drop their queues and discard the COW file.
	 * Called from bio completions and engine threads too, while an ioctl
	 * may be replacing the engines: an engine is freed only after it is
	 * unpublished under eng_lock.
	 */
	spin_lock_irqsave(&dev->eng_lock, flags);
	if (dev->snap)
		dbd_snap_wake(dev->snap);
	if (dev->inc)
		dbd_inc_wake(dev->inc);
	spin_unlock_irqrestore(&dev->eng_lock, flags);
}

static void dev_set_snap(struct dbd_dev *dev, struct dbd_snap *snap)
{
	unsigned long flags;

	spin_lock_irqsave(&dev->eng_lock, flags);
	dev->snap = snap;
	spin_unlock_irqrestore(&dev->eng_lock, flags);
}

static void dev_set_inc(struct dbd_dev *dev, struct dbd_inc *inc)
{
	unsigned long flags;

	spin_lock_irqsave(&dev->eng_lock, flags);
	dev->inc = inc;
	spin_unlock_irqrestore(&dev->eng_lock, flags);
}

static struct dbd_dev *dev_alloc(unsigned int minor, unsigned long cache_size)
{
	struct dbd_dev *dev = kzalloc(sizeof(*dev), GFP_KERNEL);

	if (!dev)
		return NULL;
	dev->minor = minor;
	dev->cache_size = cache_size;
	atomic_set(&dev->fail_code, 0);
	spin_lock_init(&dev->eng_lock);
	atomic_set(&dev->refs, 0);
	kref_init(&dev->kref);
	return dev;
}

static void dev_release(struct kref *kref)
{
	struct dbd_dev *dev = container_of(kref, struct dbd_dev, kref);

	kfree(dev->bdev_path);
	kfree(dev->cow_path);
	kfree(dev);
}

/* the last opener of an old /dev/dattoN may hold dev after this */
void dbd_dev_put(struct dbd_dev *dev)
{
	kref_put(&dev->kref, dev_release);
}

static void dev_free(struct dbd_dev *dev)
{
	dbd_bdev_close(&dev->base);
	dbd_dev_put(dev);
}

/* absolute path of a block device node, symlinks resolved */
static int abs_path(const char *path, char **out)
{
	struct path p;
	char *buf, *s;
	int ret;

	ret = kern_path(path, LOOKUP_FOLLOW, &p);
	if (ret)
		return ret;
	buf = kmalloc(PATH_MAX_DATTO, GFP_KERNEL);
	if (!buf) {
		path_put(&p);
		return -ENOMEM;
	}
	s = d_path(&p, buf, PATH_MAX_DATTO);
	path_put(&p);
	if (IS_ERR(s)) {
		kfree(buf);
		return PTR_ERR(s);
	}
	*out = kstrdup(s, GFP_KERNEL);
	kfree(buf);
	return *out ? 0 : -ENOMEM;
}

static bool bdev_already_traced(struct block_device *bdev)
{
	unsigned int i;

	for (i = 0; i < dbd_max_snap_devices; i++) {
		struct dbd_dev *d = dbd_devs[i];

		if (d && !(d->state & DBD_STATE_UNVERIFIED) &&
		    d->base.bdev == bdev)
			return true;
	}
	return false;
}

/* open the COW file for a new series / transition and check it */
static struct dbd_cow *cow_open_new(struct dbd_dev *dev, const char *path,
				    u64 falloc_mib, u64 seqid, const u8 *uuid,
				    struct super_block *sb, char **rel,
				    int *err)
{
	struct dbd_cow *cow;

	cow = dbd_cow_create(path, dev->size, falloc_mib, seqid, uuid,
			     dbd_dev_cache(dev), err);
	if (!cow)
		return NULL;
	*err = dbd_cow_check_same_fs(cow, sb);
	if (*err) {
		dbd_err("cow file must be on the filesystem of the block device");
		dbd_cow_close(cow, true);
		return NULL;
	}
	*err = dbd_cow_rel_path(cow, rel);
	if (*err) {
		dbd_cow_close(cow, true);
		return NULL;
	}
	return cow;
}

static void dev_teardown_active(struct dbd_dev *dev, bool unlink)
{
	struct dbd_trace *t = dev->trace;
	struct dbd_snap *snap = dev->snap;
	struct dbd_inc *inc = dev->inc;

	dbd_trace_remove(dev);
	if (snap) {
		dbd_snap_stop(snap);
		dbd_snap_disk_del(dev);
		dev_set_snap(dev, NULL);
		dbd_snap_free(snap);
	}
	dbd_snap_disk_del(dev);
	if (inc) {
		dev_set_inc(dev, NULL);
		dbd_inc_free(inc);
	}
	if (t) {
		dbd_trace_free(t);
		dev->trace = NULL;
	}
	if (dev->cow) {
		dbd_cow_close(dev->cow, unlink);
		dev->cow = NULL;
	}
}

int dbd_dev_setup_snap(unsigned int minor, const char *bdev_path,
		       const char *cow_path, unsigned long falloc_mib,
		       unsigned long cache_size)
{
	struct super_block *sb = NULL;
	struct dbd_trace *t = NULL;
	struct dbd_snap *snap;
	struct dbd_dev *dev;
	int ret;

	dev = dev_alloc(minor, cache_size);
	if (!dev)
		return -ENOMEM;
	ret = dbd_bdev_open(bdev_path, &dev->base);
	if (ret) {
		dbd_err("error opening block device '%s': %d", bdev_path, ret);
		goto err;
	}
	sb = dbd_bdev_get_super(dev->base.bdev);
	if (!sb || sb_rdonly(sb)) {
		dbd_err("illegal to perform setup while unmounted: %d", -EINVAL);
		ret = -EINVAL;
		goto err;
	}
	if (bdev_already_traced(dev->base.bdev)) {
		dbd_err("block device is already being traced: %d", -EINVAL);
		ret = -EINVAL;
		goto err;
	}
	ret = abs_path(bdev_path, &dev->bdev_path);
	if (ret)
		goto err;
	dev->sect_off = dev->base.bdev->bd_start_sect;
	dev->size = bdev_nr_sectors(dev->base.bdev);

	dev->cow = cow_open_new(dev, cow_path, falloc_mib, 1, NULL, sb,
				&dev->cow_path, &ret);
	if (!dev->cow)
		goto err;
	dev->falloc_mib = dev->cow->falloc_mib;
	dev_enter(dev, DBD_EV_SETUP);

	snap = dbd_snap_create(dev, dev->cow);
	if (IS_ERR(snap)) {
		ret = PTR_ERR(snap);
		goto err;
	}
	dev_set_snap(dev, snap);
	t = dbd_trace_alloc(dev);
	if (!t) {
		ret = -ENOMEM;
		goto err;
	}
	t->snap = snap;
	ret = dbd_trace_install(dev, t);
	if (ret) {
		dbd_trace_free(t);
		goto err;
	}
	/* /dev/dattoN appears only once it shows the snapshot instant */
	ret = dbd_snap_disk_add(dev);
	if (ret)
		goto err;
	deactivate_super(sb);
	dbd_devs[minor] = dev;
	dbd_info("snapshot %u set up on %s", minor, dev->bdev_path);
	return 0;

err:
	if (sb)
		deactivate_super(sb);
	dev_teardown_active(dev, true);
	dev_free(dev);
	return ret;
}

int dbd_dev_reload(unsigned int minor, const char *bdev_path,
		   const char *cow_path, unsigned long cache_size,
		   bool snapshot)
{
	struct super_block *sb;
	struct dbd_bdev b = { 0 };
	struct dbd_dev *dev;
	int ret;

	ret = dbd_bdev_open(bdev_path, &b);
	if (ret) {
		dbd_err("error opening block device '%s': %d", bdev_path, ret);
		return ret;
	}
	sb = dbd_bdev_get_super(b.bdev);
	if (sb) {
		ret = sb_rdonly(sb) ? 0 : -EINVAL;
		deactivate_super(sb);
	}
	dbd_bdev_close(&b);
	if (ret) {
		dbd_err("illegal to perform reload while mounted: %d", ret);
		return ret;
	}
	dev = dev_alloc(minor, cache_size);
	if (!dev)
		return -ENOMEM;
	dev->bdev_path = kstrdup(bdev_path, GFP_KERNEL);
	dev->cow_path = kstrdup(cow_path, GFP_KERNEL);
	if (!dev->bdev_path || !dev->cow_path) {
		dev_free(dev);
		return -ENOMEM;
	}
	dev_enter(dev, snapshot ? DBD_EV_RELOAD_SNAP : DBD_EV_RELOAD_INC);
	dbd_devs[minor] = dev;
	return 0;
}

int dbd_dev_destroy(struct dbd_dev *dev)
{
	/* active devices lose their COW file; others keep it (SPEC P17) */
	bool unlink = dev->state & DBD_STATE_ACTIVE;

	dbd_devs[dev->minor] = NULL;
	dev_teardown_active(dev, unlink);
	dev_free(dev);
	return 0;
}

void dbd_dev_destroy_all(void)
{
	unsigned int i;

	for (i = 0; i < dbd_max_snap_devices; i++)
		if (dbd_devs[i])
			dbd_dev_destroy(dbd_devs[i]);
}

int dbd_dev_transition_inc(struct dbd_dev *dev)
{
	struct dbd_trace *old = dev->trace, *t;
	struct dbd_snap *snap = dev->snap;
	struct dbd_inc *inc;
	int ret;

	inc = dbd_inc_create(dev, dev->cow);
	if (IS_ERR(inc))
		return PTR_ERR(inc);
	t = dbd_trace_alloc(dev);
	if (!t) {
		dbd_inc_free(inc);
		return -ENOMEM;
	}
	t->inc = inc;
	ret = dbd_trace_install(dev, t);
	if (ret) {
		dbd_trace_free(t);
		dbd_inc_free(inc);
		return ret;
	}
	dev_set_inc(dev, inc);
	/* the old snapshot engine drains (data flushed by the freeze) */
	dbd_snap_stop(snap);
	if (!dbd_dev_failed(dev)) {
		ret = dbd_snap_mark_self(snap, dev->cow);
		if (ret)
			dbd_dev_fail(dev, ret);
	}
	dbd_snap_disk_del(dev);
	dev_set_snap(dev, NULL);
	dbd_snap_free(snap);
	dbd_trace_free(old);
	dev->has_auto_expand = false;
	dev_enter(dev, DBD_EV_TRANSITION_INC);
	ret = dbd_dev_failed(dev);
	if (ret)
		return ret;
	dbd_cow_truncate_to_index(dev->cow);
	return 0;
}

int dbd_dev_transition_snap(struct dbd_dev *dev, const char *cow_path,
			    unsigned long falloc_mib)
{
	struct dbd_trace *old = dev->trace, *t = NULL;
	struct dbd_cow *old_cow = dev->cow, *cow;
	struct dbd_inc *inc = dev->inc;
	struct dbd_snap *snap = NULL;
	struct super_block *sb;
	unsigned long old_cache = dev->cache_size;
	char *rel = NULL;
	int ret, closed;

	sb = dbd_bdev_get_super(dev->base.bdev);
	if (!sb)
		return -EINVAL;
	/* cache size is not carried over (SPEC 3.5) */
	dev->cache_size = 0;
	cow = cow_open_new(dev, cow_path, falloc_mib ? falloc_mib :
			   dev->falloc_mib, old_cow->hdr.seqid + 1,
			   old_cow->hdr.uuid, sb, &rel, &ret);
	deactivate_super(sb);
	if (!cow) {
		dev->cache_size = old_cache;
		return ret;
	}
	snap = dbd_snap_create(dev, cow);
	if (IS_ERR(snap)) {
		ret = PTR_ERR(snap);
		snap = NULL;
		goto err;
	}
	dev_set_snap(dev, snap);
	dev->cow = cow;
	t = dbd_trace_alloc(dev);
	if (!t) {
		ret = -ENOMEM;
		goto err;
	}
	t->snap = snap;
	ret = dbd_trace_install(dev, t);
	if (ret)
		goto err;
	/* old incremental engine drains into the old index, file closed */
	dev_set_inc(dev, NULL);
	dbd_inc_free(inc);
	dbd_trace_free(old);
	/*
	 * The new snapshot is valid even if the old file cannot be closed,
	 * but the old file's changed-block list is not: it stays unclean
	 * (update-img refuses it) and the ioctl reports EIO.
	 */
	closed = dbd_cow_sync(old_cow, true);
	if (closed)
		dbd_err("error closing previous cow file: %d; its changed-block list is not usable",
			closed);
	dbd_cow_close(old_cow, false);
	kfree(dev->cow_path);
	dev->cow_path = rel;
	dev->falloc_mib = cow->falloc_mib;
	dev_enter(dev, DBD_EV_TRANSITION_SNAP);
	/* /dev/dattoN appears only once it shows the snapshot instant */
	ret = dbd_snap_disk_add(dev);
	if (ret) {
		dbd_err("error adding the snapshot device: %d", ret);
		dbd_dev_fail(dev, ret);
		return ret;
	}
	return closed ? -EIO : 0;

err:
	dbd_trace_free(t);
	dbd_snap_disk_del(dev);
	dev_set_snap(dev, NULL);
	if (snap)
		dbd_snap_free(snap);
	dev->cow = old_cow;
	dev->cache_size = old_cache;
	dbd_cow_close(cow, true);
	kfree(rel);
	return ret;
}

int dbd_dev_expand(struct dbd_dev *dev, u64 mib)
{
	int ret = dbd_cow_expand(dev->cow, dbd_mib_bytes(mib));

	if (ret) {
		dbd_err("error expanding cow file: %d", ret);
		dbd_dev_fail(dev, ret);
	}
	return ret;
}

/* ------------------------------------------------------------------ */
/* Mount / umount handlers (called from hooks.c, no VFS lock held)     */

static void dev_resume(struct dbd_dev *dev, const struct path *root,
		       enum dbd_event ev)
{
	int ret = dbd_cow_resume(dev->cow, root, dev->cow_path);

	if (ret) {
		dbd_err("error reopening cow file of device %u: %d",
			dev->minor, ret);
		dbd_dev_fail(dev, ret);
		return;
	}
	dev_enter(dev, ev);
	dev->umount_check = false;	/* that unmount is over */
	if (dev->snap)
		dbd_snap_wake(dev->snap);
	if (dev->inc)
		dbd_inc_wake(dev->inc);
	dbd_info("device %u active again", dev->minor);
}

/*
 * Make every active device dormant whose COW file is open through mnt (or,
 * with mnt NULL, lives on sb): index flushed, file closed clean; tracing
 * stays and keeps what it sees in memory.
 */
static void mount_suspend(const struct vfsmount *mnt,
			  const struct super_block *sb, unsigned long *dormant)
{
	unsigned int i;
	int ret;

	mutex_lock(&dbd_ctl_mutex);
	for (i = 0; i < dbd_max_snap_devices; i++) {
		struct dbd_dev *dev = dbd_devs[i];
		struct file *f;

		if (!dev || dbd_dev_failed(dev) ||
		    (dev->state & (DBD_STATE_UNVERIFIED | DBD_STATE_ACTIVE)) !=
		    DBD_STATE_ACTIVE || !dev->cow || !dev->cow->filp)
			continue;
		f = dev->cow->filp;
		if (mnt ? f->f_path.mnt != mnt : file_inode(f)->i_sb != sb)
			continue;
		/* what the engine still holds goes in first (SPEC 3.5) */
		if (dev->inc)
			dbd_inc_flush(dev->inc);
		if (dev->snap) {
			ret = dbd_snap_flush(dev->snap);
			if (ret == -EINTR)
				dbd_warn("device %u: unmount killed while saving snapshot data, the rest stays in memory",
					 dev->minor);
			if (dbd_dev_failed(dev))
				continue;
		}
		ret = dbd_cow_suspend(dev->cow);
		if (ret) {
			dbd_err("error closing cow file of device %u: %d",
				dev->minor, ret);
			dbd_dev_fail(dev, ret);
			continue;
		}
		dev_enter(dev, DBD_EV_UMOUNT);
		/* throttled writers stop waiting: nothing drains while dormant */
		if (dev->snap)
			dbd_snap_wake(dev->snap);
		/* dbd_mount_post_umount() sets it if this is an unmount that succeeds */
		dev->umount_check = false;
		set_bit(i, dormant);
		dbd_info("device %u dormant", dev->minor);
	}
	mutex_unlock(&dbd_ctl_mutex);
}

/*
 * Before an unmount or remount-ro of a mount: the devices whose COW file
 * is open through that mount go dormant.  Returns the mount point's path
 * (for re-activation if the umount fails) or NULL.
 */
char *dbd_mount_pre_umount(const struct path *path, unsigned long *dormant)
{
	char *buf, *p, *out = NULL;

	if (path->dentry != path->mnt->mnt_root)
		return NULL;
	buf = kmalloc(PATH_MAX_DATTO, GFP_KERNEL);
	if (!buf)
		return NULL;
	p = d_path(path, buf, PATH_MAX_DATTO);
	if (!IS_ERR(p))
		out = kstrdup(p, GFP_KERNEL);
	kfree(buf);
	mount_suspend(path->mnt, NULL, dormant);
	return out;
}

/* before a remount-ro of a superblock (new mount API) */
void dbd_mount_pre_umount_sb(struct super_block *sb, unsigned long *dormant)
{
	mount_suspend(NULL, sb, dormant);
}

/*
 * SPEC 3.2: after a successful unmount of the mount holding the COW file,
 * a writable superblock of the block device must not remain (a bind mount
 * or another namespace's copy): the device could not save what is written
 * through it.  The unmounted mount releases the superblock only when the
 * unmounting task returns to userspace, so the check runs a moment later.
 */

static void dev_umount_check_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(dbd_umount_check, dev_umount_check_fn);

/*
 * A mount in progress may already have a new, writable superblock of the
 * device that its activation (after the mount) will pick up: the check
 * waits for it instead of failing the device (seen when a mount followed
 * an unmount by about the check's delay).
 */
static atomic_t dbd_mounts_in_flight = ATOMIC_INIT(0);

void dbd_mount_begin(void)
{
	atomic_inc(&dbd_mounts_in_flight);
}

void dbd_mount_end(void)
{
	atomic_dec(&dbd_mounts_in_flight);
}

static void dev_umount_check_fn(struct work_struct *work)
{
	struct super_block *sb;
	bool again = false;
	unsigned int i;

	mutex_lock(&dbd_ctl_mutex);
	for (i = 0; i < dbd_max_snap_devices; i++) {
		struct dbd_dev *dev = dbd_devs[i];

		if (!dev || !dev->umount_check)
			continue;
		if (atomic_read(&dbd_mounts_in_flight)) {
			again = true;
			continue;
		}
		dev->umount_check = false;
		if (dbd_dev_failed(dev) ||
		    (dev->state & (DBD_STATE_ACTIVE | DBD_STATE_UNVERIFIED)))
			continue;
		sb = dbd_bdev_get_super(dev->base.bdev);
		if (!sb)
			continue;
		if (!sb_rdonly(sb)) {
			dbd_err("device %u still mounted after umounting cow file's file-system",
				i);
			dbd_dev_fail(dev, -EIO);
		}
		deactivate_super(sb);
	}
	mutex_unlock(&dbd_ctl_mutex);
	if (again)
		mod_delayed_work(system_wq, &dbd_umount_check, HZ / 4);
}

/* module exit, before the devices are destroyed (no dbd_ctl_mutex held) */
void dbd_dev_exit_checks(void)
{
	cancel_delayed_work_sync(&dbd_umount_check);
}

/* after the unmount: if it failed, the dormant devices come back */
void dbd_mount_post_umount(const char *mnt_path, const unsigned long *dormant,
			   int ret)
{
	struct path root;
	unsigned int i;
	bool have_root;

	if (find_first_bit(dormant, DBD_HARD_MAX_DEVICES) >=
	    DBD_HARD_MAX_DEVICES)
		return;
	if (!ret) {
		mutex_lock(&dbd_ctl_mutex);
		for_each_set_bit(i, dormant, DBD_HARD_MAX_DEVICES) {
			struct dbd_dev *dev = dbd_dev_get(i);

			if (dev)
				dev->umount_check = true;
		}
		mutex_unlock(&dbd_ctl_mutex);
		/* a second from the latest unmount, not from the first */
		mod_delayed_work(system_wq, &dbd_umount_check, HZ);
		return;
	}
	have_root = mnt_path && !kern_path(mnt_path, LOOKUP_FOLLOW, &root);
	mutex_lock(&dbd_ctl_mutex);
	for_each_set_bit(i, dormant, DBD_HARD_MAX_DEVICES) {
		struct dbd_dev *dev = dbd_dev_get(i);

		if (!dev || (dev->state & DBD_STATE_ACTIVE) ||
		    dbd_dev_failed(dev))
			continue;
		if (have_root)
			dev_resume(dev, &root, DBD_EV_UMOUNT_FAILED);
		else
			dbd_dev_fail(dev, -ENODEV);
	}
	mutex_unlock(&dbd_ctl_mutex);
	if (have_root)
		path_put(&root);
}

/* unverified -> active (SPEC 3.5) on the rw mount of its block device */
static void dev_activate_unverified(struct dbd_dev *dev,
				    const struct path *root,
				    struct super_block *sb)
{
	unsigned long before = dev->state;
	bool snapshot = before & DBD_STATE_SNAPSHOT;
	struct dbd_trace *t = NULL;
	char *abs = NULL, *rel = NULL;
	bool traced = false;
	int ret;

	if (dbd_bdev_open(dev->bdev_path, &dev->base))
		return;
	if (dev->base.bdev != sb->s_bdev) {
		dbd_bdev_close(&dev->base);
		return;
	}
	if (bdev_already_traced(dev->base.bdev)) {
		ret = -EINVAL;
		dbd_err("block device is already being traced: %d", ret);
		goto err;
	}
	dev->sect_off = dev->base.bdev->bd_start_sect;
	dev->size = bdev_nr_sectors(dev->base.bdev);
	dev->cow = dbd_cow_load(root, dev->cow_path, dev->size, !snapshot,
				dbd_dev_cache(dev), &ret);
	if (!dev->cow) {
		dbd_err("error reloading cow file of device %u: %d",
			dev->minor, ret);
		goto err;
	}
	ret = abs_path(dev->bdev_path, &abs);
	if (!ret)
		ret = dbd_cow_rel_path(dev->cow, &rel);
	if (ret)
		goto err;
	dev_enter(dev, DBD_EV_MOUNT_RW);
	t = dbd_trace_alloc(dev);
	if (!t) {
		ret = -ENOMEM;
		goto err;
	}
	if (snapshot) {
		struct dbd_snap *snap = dbd_snap_create(dev, dev->cow);

		if (IS_ERR(snap)) {
			ret = PTR_ERR(snap);
			goto err;
		}
		dev_set_snap(dev, snap);
		ret = dbd_snap_load_done(snap);
		t->snap = snap;
	} else {
		struct dbd_inc *inc = dbd_inc_create(dev, dev->cow);

		if (IS_ERR(inc)) {
			ret = PTR_ERR(inc);
			goto err;
		}
		dev_set_inc(dev, inc);
		t->inc = inc;
	}
	if (ret)
		goto err;
	ret = dbd_trace_install(dev, t);
	if (ret)
		goto err;
	traced = true;
	/* /dev/dattoN appears only once writes are traced */
	if (snapshot) {
		ret = dbd_snap_disk_add(dev);
		if (ret)
			goto err;
	}
	dev->falloc_mib = dev->cow->falloc_mib;
	kfree(dev->bdev_path);
	dev->bdev_path = abs;
	kfree(dev->cow_path);
	dev->cow_path = rel;
	dbd_info("device %u activated on %s", dev->minor, dev->bdev_path);
	return;

err:
	/*
	 * Back to unverified, with the error.  The COW file is kept; if
	 * nothing was traced it is as it was, and clean again: a reload
	 * after the cause is gone must still find it reloadable.
	 */
	if (dev->cow && !traced && dbd_cow_sync(dev->cow, true))
		dbd_warn("cannot mark the refused cow file of device %u clean again",
			 dev->minor);
	if (dev->trace != t)
		dbd_trace_free(t);
	dev_teardown_active(dev, false);
	dbd_bdev_close(&dev->base);
	kfree(abs);
	kfree(rel);
	/* a failed activation is no transition: unverified, with the error */
	dev->state = before;
	dbd_dev_fail(dev, ret);
}

/* A mount became writable (new rw mount, remount-rw, move_mount): its root */
void dbd_mount_activate_path(const struct path *path)
{
	struct super_block *sb;
	struct path root;
	unsigned int i;

	root = *path;
	path_get(&root);
	sb = root.mnt->mnt_sb;
	if (root.dentry != root.mnt->mnt_root || !sb->s_bdev ||
	    sb_rdonly(sb) || __mnt_is_readonly(root.mnt))
		goto out;

	mutex_lock(&dbd_ctl_mutex);
	for (i = 0; i < dbd_max_snap_devices; i++) {
		struct dbd_dev *dev = dbd_devs[i];

		if (!dev || dbd_dev_failed(dev) ||
		    (dev->state & DBD_STATE_ACTIVE))
			continue;
		if (dev->state & DBD_STATE_UNVERIFIED)
			dev_activate_unverified(dev, &root, sb);
		else if (dev->base.bdev == sb->s_bdev)
			dev_resume(dev, &root, DBD_EV_MOUNT_RW);
	}
	mutex_unlock(&dbd_ctl_mutex);
out:
	path_put(&root);
}

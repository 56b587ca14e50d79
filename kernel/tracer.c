// SPDX-License-Identifier: GPL-2.0-only
/*
 * Write interception: an IPMODIFY ftrace_ops on the exported
 * submit_bio_noacct() redirects every call that does not come from this
 * module to dbd_submit_bio_noacct().  That function hands writes to a
 * traced block device to the device's engine and calls the original
 * submit_bio_noacct() for everything else; since that call comes from
 * this module, the ftrace callback lets it through (livepatch-style).
 *
 * The traced devices are published in an RCU array; the ftrace_ops is
 * registered only while at least one device is traced.
 *
 * A redirected call runs module code and may sleep in the original (a
 * request tag, throttling) with a return address in this module: the
 * callback pins the module for the duration, so rmmod either waits for
 * no such call (it is refused with EBUSY while one sleeps) or, once the
 * module is going, the callback no longer redirects.
 */
#include <linux/module.h>
#include <linux/ftrace.h>
#include <linux/rcupdate.h>
#include <linux/bio.h>
#include <linux/blkdev.h>
#include "dbd.h"

static struct dbd_trace __rcu *dbd_traces[DBD_HARD_MAX_DEVICES];
static unsigned int dbd_nr_traced;	/* under dbd_ctl_mutex */
static DEFINE_MUTEX(dbd_ftrace_lock);

static void dbd_submit_bio_noacct(struct bio *bio);

static void notrace dbd_ftrace_cb(unsigned long ip, unsigned long parent_ip,
				  struct ftrace_ops *op,
				  struct ftrace_regs *fregs)
{
	if (within_module(parent_ip, THIS_MODULE))
		return;
	if (!try_module_get(THIS_MODULE))
		return;
#if DBD_NEW_BLOCK_API
	ftrace_regs_set_instruction_pointer(fregs,
					    (unsigned long)dbd_submit_bio_noacct);
#else
	ftrace_instruction_pointer_set(fregs,
				       (unsigned long)dbd_submit_bio_noacct);
#endif
}

static struct ftrace_ops dbd_ftrace_ops = {
	.func = dbd_ftrace_cb,
	.flags = FTRACE_OPS_FL_IPMODIFY |
#ifndef CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS
		 FTRACE_OPS_FL_SAVE_REGS |
#endif
		 FTRACE_OPS_FL_PERMANENT,
};

static bool dbd_ftrace_on;

static int dbd_ftrace_enable(void)
{
	int ret;

	if (dbd_ftrace_on)
		return 0;
	ret = register_ftrace_function(&dbd_ftrace_ops);
	if (ret) {
		dbd_err("error installing the write hook: %d", ret);
		return ret;
	}
	dbd_ftrace_on = true;
	return 0;
}

static void dbd_ftrace_disable(void)
{
	if (!dbd_ftrace_on)
		return;
	unregister_ftrace_function(&dbd_ftrace_ops);
	dbd_ftrace_on = false;
}

int dbd_tracer_init(void)
{
	int ret;

	ret = ftrace_set_filter_ip(&dbd_ftrace_ops,
				   (unsigned long)submit_bio_noacct, 0, 0);
	if (ret)
		dbd_err("submit_bio_noacct cannot be traced: %d", ret);
	return ret;
}

void dbd_tracer_exit(void)
{
	mutex_lock(&dbd_ftrace_lock);
	dbd_ftrace_disable();
	mutex_unlock(&dbd_ftrace_lock);
	ftrace_set_filter_ip(&dbd_ftrace_ops, (unsigned long)submit_bio_noacct,
			     1, 0);
}

void dbd_submit_passthrough(struct bio *bio)
{
	submit_bio_noacct(bio);
	/* keep the call out of tail position: see within_module() above */
	barrier();
}

static bool dbd_is_traced_op(struct bio *bio)
{
	switch (bio_op(bio)) {
	case REQ_OP_WRITE:
	case REQ_OP_WRITE_ZEROES:
	case REQ_OP_DISCARD:
	case REQ_OP_SECURE_ERASE:
		return bio_sectors(bio) != 0;
	default:
		return false;
	}
}

/*
 * Partition-relative 4 KiB block range a write touches in t's device;
 * false if none.  A bio of the traced partition has partition-relative
 * sectors unless the block layer remapped it already (a split remainder);
 * a bio of the whole disk always has disk-relative ones.
 */
bool dbd_trace_range(const struct dbd_trace *t, struct bio *bio, u64 *first,
		     u64 *last)
{
	sector_t start = bio->bi_iter.bi_sector;
	sector_t end = bio_end_sector(bio);

	if (bio->bi_bdev != t->bdev || bio_flagged(bio, BIO_REMAPPED)) {
		if (end <= t->sect_off)
			return false;
		start = start > t->sect_off ? start - t->sect_off : 0;
		end -= t->sect_off;
	}
	if (start >= t->size || end <= start)
		return false;
	if (end > t->size)
		end = t->size;
	return dbd_block_range(start, end - start, first, last) == 0;
}

/* t's device, or the whole disk it is a partition of */
static bool dbd_trace_matches(struct dbd_trace *t, struct bio *bio)
{
	u64 first, last;

	if (t->bdev == bio->bi_bdev)
		return true;
	return bdev_is_partition(t->bdev) &&
	       bio->bi_bdev == bdev_whole(t->bdev) &&
	       dbd_trace_range(t, bio, &first, &last);
}

static struct dbd_trace *dbd_trace_find(struct bio *bio)
{
	struct dbd_trace *t;
	unsigned int i;

	for (i = 0; i < dbd_max_snap_devices; i++) {
		t = rcu_dereference(dbd_traces[i]);
		if (t && dbd_trace_matches(t, bio)) {
			if (dbd_dev_failed(t->dev))
				return NULL;
			atomic_inc(&t->users);
			return t;
		}
	}
	return NULL;
}

static void dbd_trace_put(struct dbd_trace *t)
{
	if (atomic_dec_and_test(&t->users))
		wake_up_all(&t->users_wq);
}

/*
 * A flush of a traced device, or of the whole disk one is a partition of:
 * every snapshot on it saves the COW data of earlier writes first
 * (dbd_snap_flush_wait).
 */
static void dbd_trace_flush(struct bio *bio)
{
	struct dbd_trace *t;
	unsigned int i;

	for (i = 0; i < dbd_max_snap_devices; i++) {
		rcu_read_lock();
		t = rcu_dereference(dbd_traces[i]);
		if (!t || !t->snap || dbd_dev_failed(t->dev) ||
		    (t->bdev != bio->bi_bdev &&
		     !(bdev_is_partition(t->bdev) &&
		       bdev_whole(t->bdev) == bio->bi_bdev))) {
			rcu_read_unlock();
			continue;
		}
		atomic_inc(&t->users);
		rcu_read_unlock();
		dbd_snap_flush_wait(t->snap);
		dbd_trace_put(t);
	}
}

/* the redirect target: same signature as submit_bio_noacct() */
static void dbd_submit_bio_noacct(struct bio *bio)
{
	struct dbd_trace *t = NULL;
	bool held = false;

	if (op_is_write(bio_op(bio)) && op_is_flush(bio->bi_opf))
		dbd_trace_flush(bio);
	if (dbd_is_traced_op(bio)) {
		rcu_read_lock();
		t = dbd_trace_find(bio);
		rcu_read_unlock();
	}
	if (t) {
		if (t->snap)
			held = dbd_snap_write(t, bio);
		else if (t->inc)
			dbd_inc_write(t, bio);
		dbd_trace_put(t);
	}
	if (!held)
		dbd_submit_passthrough(bio);
	module_put(THIS_MODULE);
}

struct dbd_trace *dbd_trace_alloc(struct dbd_dev *dev)
{
	struct dbd_trace *t = kzalloc(sizeof(*t), GFP_KERNEL);

	if (!t)
		return NULL;
	t->dev = dev;
	t->bdev = dev->base.bdev;
	t->sect_off = dev->sect_off;
	t->size = dev->size;
	atomic_set(&t->users, 1);
	init_waitqueue_head(&t->users_wq);
	return t;
}

void dbd_trace_free(struct dbd_trace *t)
{
	kfree(t);
}

/* wait until no hook call uses t any more */
static void dbd_trace_quiesce(struct dbd_trace *t)
{
	synchronize_rcu();
	atomic_dec(&t->users);
	wait_event(t->users_wq, atomic_read(&t->users) == 0);
	atomic_set(&t->users, 1);
}

/*
 * Publish t (replacing the device's current trace, if any) while the
 * filesystem is frozen: that is the snapshot instant.  The previous trace
 * is quiesced (no hook call uses it any more) and left to the caller to
 * free.  Caller holds dbd_ctl_mutex.
 */
int dbd_trace_install(struct dbd_dev *dev, struct dbd_trace *t)
{
	struct dbd_trace *old = dev->trace;
	int ret;

	mutex_lock(&dbd_ftrace_lock);
	ret = dbd_ftrace_enable();
	mutex_unlock(&dbd_ftrace_lock);
	if (ret)
		return ret;

	WRITE_ONCE(dev->freezing, true);
	if (dev->snap)
		dbd_snap_wake(dev->snap);
	ret = dbd_freeze(dev->base.bdev);
	if (ret) {
		WRITE_ONCE(dev->freezing, false);
		dbd_err("error freezing the block device: %d", ret);
		if (!dbd_nr_traced) {
			mutex_lock(&dbd_ftrace_lock);
			dbd_ftrace_disable();
			mutex_unlock(&dbd_ftrace_lock);
		}
		return ret;
	}
	rcu_assign_pointer(dbd_traces[dev->minor], t);
	dev->trace = t;
	if (!old)
		dbd_nr_traced++;
	ret = dbd_thaw(dev->base.bdev);
	WRITE_ONCE(dev->freezing, false);
	if (ret)
		dbd_warn("error thawing the block device: %d", ret);
	if (old)
		dbd_trace_quiesce(old);
	return 0;
}

/*
 * Stop tracing the device (no freeze needed: the engines drain what the
 * hook handed them).  Leaves dev->trace for the caller to free.
 */
void dbd_trace_remove(struct dbd_dev *dev)
{
	struct dbd_trace *t = dev->trace;

	if (!t)
		return;
	rcu_assign_pointer(dbd_traces[dev->minor], NULL);
	dbd_trace_quiesce(t);
	if (!--dbd_nr_traced) {
		mutex_lock(&dbd_ftrace_lock);
		dbd_ftrace_disable();
		mutex_unlock(&dbd_ftrace_lock);
	}
}

// SPDX-License-Identifier: GPL-2.0-only
/*
 * Incremental mode: writes pass at once; the hook records the touched
 * block ranges and the device's thread marks them changed (index entry
 * 1) in the COW file.  The COW file's own writes (its index) are recorded
 * too: the next incremental image must match the next snapshot in every
 * block, the old COW file's included.
 * Discards, secure erases and write-zeroes are recorded like writes.
 */
#include <linux/kthread.h>
#include <linux/slab.h>
#include <linux/sched/mm.h>
#include "dbd.h"

struct dbd_range {
	struct list_head list;
	u64 first;
	u64 last;
};

struct dbd_inc {
	struct dbd_dev *dev;
	struct dbd_cow *cow;
	spinlock_t lock;
	struct list_head ranges;
	wait_queue_head_t wq;
	struct task_struct *task;
	bool stop;
};

void dbd_inc_write(struct dbd_trace *t, struct bio *bio)
{
	struct dbd_inc *inc = t->inc;
	sector_t start = bio->bi_iter.bi_sector;
	sector_t nr = bio_sectors(bio);
	struct dbd_range *r, *tail;
	u64 first, last;

	if (bio_flagged(bio, BIO_REMAPPED))
		start -= t->sect_off;
	if (start >= t->size)
		return;
	if (nr > t->size - start)
		nr = t->size - start;
	if (dbd_block_range(start, nr, &first, &last))
		return;

	spin_lock(&inc->lock);
	tail = list_empty(&inc->ranges) ? NULL :
	       list_last_entry(&inc->ranges, struct dbd_range, list);
	if (tail && first <= tail->last + 1 && last + 1 >= tail->first) {
		tail->first = min(tail->first, first);
		tail->last = max(tail->last, last);
		spin_unlock(&inc->lock);
		return;
	}
	spin_unlock(&inc->lock);

	r = kmalloc(sizeof(*r), (bio->bi_opf & REQ_NOWAIT) ?
		    GFP_NOWAIT | __GFP_NOWARN : GFP_NOIO);
	if (!r) {
		dbd_dev_fail(t->dev, -ENOMEM);
		return;
	}
	r->first = first;
	r->last = last;
	spin_lock(&inc->lock);
	list_add_tail(&r->list, &inc->ranges);
	spin_unlock(&inc->lock);
	wake_up(&inc->wq);
}

static int inc_thread(void *data)
{
	struct dbd_inc *inc = data;
	struct dbd_range *r;
	unsigned int noio = memalloc_noio_save();
	bool discarded = false;
	int ret;

	for (;;) {
		/* while dormant (COW file closed) ranges wait in memory */
		wait_event_idle(inc->wq, (!list_empty(&inc->ranges) &&
					  (READ_ONCE(inc->cow->filp) ||
					   dbd_dev_failed(inc->dev))) ||
			   READ_ONCE(inc->stop) ||
			   (dbd_dev_failed(inc->dev) && !discarded));
		if (dbd_dev_failed(inc->dev) && !discarded) {
			dbd_cow_discard(inc->cow);
			discarded = true;
		}
		spin_lock(&inc->lock);
		r = list_first_entry_or_null(&inc->ranges, struct dbd_range,
					     list);
		if (r)
			list_del(&r->list);
		spin_unlock(&inc->lock);
		if (!r) {
			if (READ_ONCE(inc->stop))
				break;
			continue;
		}
		if (!dbd_dev_failed(inc->dev)) {
			ret = dbd_cow_mark_changed(inc->cow, r->first,
						   r->last);
			if (ret == -EAGAIN && !READ_ONCE(inc->stop)) {
				spin_lock(&inc->lock);
				list_add(&r->list, &inc->ranges);
				spin_unlock(&inc->lock);
				continue;
			}
			if (ret && ret != -EAGAIN)
				dbd_dev_fail(inc->dev, ret);
		}
		kfree(r);
	}
	memalloc_noio_restore(noio);
	return 0;
}

struct dbd_inc *dbd_inc_create(struct dbd_dev *dev, struct dbd_cow *cow)
{
	struct dbd_inc *inc = kzalloc(sizeof(*inc), GFP_KERNEL);

	if (!inc)
		return ERR_PTR(-ENOMEM);
	inc->dev = dev;
	inc->cow = cow;
	spin_lock_init(&inc->lock);
	INIT_LIST_HEAD(&inc->ranges);
	init_waitqueue_head(&inc->wq);
	inc->task = kthread_run(inc_thread, inc, "datto_inc%u", dev->minor);
	if (IS_ERR(inc->task)) {
		int ret = PTR_ERR(inc->task);

		kfree(inc);
		return ERR_PTR(ret);
	}
	set_user_nice(inc->task, MIN_NICE);
	get_task_struct(inc->task);
	return inc;
}

void dbd_inc_wake(struct dbd_inc *inc)
{
	wake_up_all(&inc->wq);
}

/* drain the recorded ranges into the index; tracing must be removed */
void dbd_inc_stop(struct dbd_inc *inc)
{
	if (!inc->task)
		return;
	WRITE_ONCE(inc->stop, true);
	wake_up_all(&inc->wq);
	kthread_stop(inc->task);
	put_task_struct(inc->task);
	inc->task = NULL;
}

void dbd_inc_free(struct dbd_inc *inc)
{
	dbd_inc_stop(inc);
	kfree(inc);
}

// SPDX-License-Identifier: GPL-2.0-only
/*
 * Incremental mode: writes pass at once; the hook sets the touched blocks
 * in a per-device bitmap (no allocation, at most one wake-up per drain
 * pass) and the device's thread folds the set bits, run by run, into the
 * COW file's index (entry 1).  The COW file's own writes (its index) are
 * recorded too: the next incremental image must match the next snapshot
 * in every block, the old COW file's included.
 * Discards, secure erases and write-zeroes are recorded like writes.
 *
 * A bit is cleared only once its run is in the index.  While the device
 * is dormant (COW file closed) the bits stay set in memory and are drained
 * when the file is open again; stopping the engine drains them all.
 */
#include <linux/kthread.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/bitmap.h>
#include <linux/sizes.h>
#include <linux/sched/mm.h>
#include "dbd.h"

/* the thread lets writes gather this long after a wake-up */
#define DBD_INC_DELAY_MS 10
/* longest run handed to the index at once (cow->lock hold time) */
#define DBD_INC_MAX_RUN (16 * DBD_SECTION_ENTRIES)

struct dbd_inc {
	struct dbd_dev *dev;
	struct dbd_cow *cow;
	spinlock_t lock;	/* bitmap, kicked */
	unsigned long *bitmap;	/* changed blocks not yet in the index */
	unsigned long nbits;
	bool kicked;		/* bits were set since the thread last looked */
	struct mutex drain_lock;	/* one drain pass at a time */
	wait_queue_head_t wq;
	struct task_struct *task;
	bool stop;
};

void dbd_inc_write(struct dbd_trace *t, struct bio *bio)
{
	struct dbd_inc *inc = t->inc;
	unsigned long flags;
	u64 first, last;
	bool wake;

	/* (also rebases whole-disk bios: see dbd_trace_range in tracer.c) */
	if (!dbd_trace_range(t, bio, &first, &last) || first >= inc->nbits)
		return;
	if (last >= inc->nbits)
		last = inc->nbits - 1;

	spin_lock_irqsave(&inc->lock, flags);
	dbd_bits(inc->bitmap, first, last, true);
	wake = !inc->kicked;
	inc->kicked = true;
	spin_unlock_irqrestore(&inc->lock, flags);
	if (wake)
		wake_up(&inc->wq);
}

/*
 * One pass over the bitmap: every run of set bits goes into the index.
 * -EAGAIN: the COW file is closed (dormant); the bits of the run that
 * could not be marked are set again.  Other errors fail the device.
 */
static int inc_drain(struct dbd_inc *inc)
{
	unsigned long first = 0, last;
	int ret = 0;

	mutex_lock(&inc->drain_lock);
	for (;;) {
		spin_lock_irq(&inc->lock);
		first = find_next_bit(inc->bitmap, inc->nbits, first);
		if (first >= inc->nbits) {
			spin_unlock_irq(&inc->lock);
			break;
		}
		last = find_next_zero_bit(inc->bitmap, inc->nbits, first) - 1;
		if (last - first >= DBD_INC_MAX_RUN)
			last = first + DBD_INC_MAX_RUN - 1;
		dbd_bits(inc->bitmap, first, last, false);
		spin_unlock_irq(&inc->lock);

		ret = dbd_cow_mark_changed(inc->cow, first, last);
		if (ret) {
			spin_lock_irq(&inc->lock);
			dbd_bits(inc->bitmap, first, last, true);
			spin_unlock_irq(&inc->lock);
			break;
		}
		first = last + 1;
		cond_resched();
	}
	mutex_unlock(&inc->drain_lock);
	return ret;
}

static bool inc_empty(struct dbd_inc *inc)
{
	bool empty;

	spin_lock_irq(&inc->lock);
	empty = find_first_bit(inc->bitmap, inc->nbits) >= inc->nbits;
	spin_unlock_irq(&inc->lock);
	return empty;
}

/* a failed device records nothing more: drop what is pending */
static void inc_drop_all(struct dbd_inc *inc)
{
	spin_lock_irq(&inc->lock);
	bitmap_zero(inc->bitmap, inc->nbits);
	inc->kicked = false;
	spin_unlock_irq(&inc->lock);
}

static int inc_thread(void *data)
{
	struct dbd_inc *inc = data;
	unsigned int noio = memalloc_noio_save();
	bool discarded = false;
	int ret;

	for (;;) {
		wait_event_idle(inc->wq, READ_ONCE(inc->kicked) ||
				READ_ONCE(inc->stop) ||
				(dbd_dev_failed(inc->dev) && !discarded));
		if (dbd_dev_failed(inc->dev)) {
			if (!discarded) {
				dbd_cow_discard(inc->cow);
				discarded = true;
			}
			inc_drop_all(inc);
			if (READ_ONCE(inc->stop))
				break;
			continue;
		}
		/* let more writes gather; stop or failure end the wait */
		if (!READ_ONCE(inc->stop))
			wait_event_idle_timeout(inc->wq, READ_ONCE(inc->stop) ||
						dbd_dev_failed(inc->dev),
						msecs_to_jiffies(DBD_INC_DELAY_MS));
		spin_lock_irq(&inc->lock);
		inc->kicked = false;
		spin_unlock_irq(&inc->lock);

		ret = inc_drain(inc);
		if (ret == -EAGAIN) {
			/* dormant: the bits wait in memory for the file */
			if (READ_ONCE(inc->stop))
				break;
			wait_event_idle(inc->wq, READ_ONCE(inc->cow->filp) ||
					READ_ONCE(inc->stop) ||
					dbd_dev_failed(inc->dev));
			WRITE_ONCE(inc->kicked, true);
			continue;
		}
		if (ret) {
			dbd_dev_fail(inc->dev, ret);
			continue;
		}
		/* the last pass may have recorded the index's own writes */
		if (READ_ONCE(inc->stop) && inc_empty(inc))
			break;
	}
	memalloc_noio_restore(noio);
	return 0;
}

struct dbd_inc *dbd_inc_create(struct dbd_dev *dev, struct dbd_cow *cow)
{
	struct dbd_inc *inc = kzalloc(sizeof(*inc), GFP_KERNEL);
	unsigned int noio;
	int ret;

	if (!inc)
		return ERR_PTR(-ENOMEM);
	inc->dev = dev;
	inc->cow = cow;
	inc->nbits = DIV_ROUND_UP_ULL(dev->size, DBD_SECTORS_PER_BLOCK);
	/* may run while the filesystem is frozen: no I/O for reclaim */
	noio = memalloc_noio_save();
	inc->bitmap = kvcalloc(BITS_TO_LONGS(max(inc->nbits, 1UL)),
			       sizeof(unsigned long), GFP_KERNEL);
	memalloc_noio_restore(noio);
	if (!inc->bitmap) {
		kfree(inc);
		return ERR_PTR(-ENOMEM);
	}
	spin_lock_init(&inc->lock);
	mutex_init(&inc->drain_lock);
	init_waitqueue_head(&inc->wq);
	inc->task = kthread_run(inc_thread, inc, "datto_inc%u", dev->minor);
	if (IS_ERR(inc->task)) {
		ret = PTR_ERR(inc->task);
		kvfree(inc->bitmap);
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

/*
 * Put every block recorded so far into the index now (e.g. before the COW
 * file is suspended).  Returns -EAGAIN while dormant, 0 or the error that
 * failed the device.
 */
int dbd_inc_flush(struct dbd_inc *inc)
{
	int ret;

	if (dbd_dev_failed(inc->dev))
		return dbd_dev_failed(inc->dev);
	ret = inc_drain(inc);
	if (ret && ret != -EAGAIN)
		dbd_dev_fail(inc->dev, ret);
	return ret;
}

/* drain the recorded blocks into the index; tracing must be removed */
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
	kvfree(inc->bitmap);
	kfree(inc);
}

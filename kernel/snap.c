// SPDX-License-Identifier: GPL-2.0-only
/*
 * Snapshot mode.
 *
 * Write path: the hook (dbd_snap_write) lets a write through at once when
 * every block it touches has its original data saved already ("done"
 * bitmap).  Otherwise the bio is held and handed to the device's mrf
 * thread, which reads the original data of the blocks not yet saved,
 * keeps the pages in memory (pending xarray; page->private holds the
 * block, page->lru the COW queue), marks the blocks done and only then
 * submits the held write.  The COW thread appends the pending pages to
 * the COW file (direct I/O from these very pages where the filesystem
 * allows it) and drops them.  The user's write therefore waits
 * for a read, never for a COW file write (which could wait on the fs
 * journal, whose own writes may be held here).
 *
 * Snapshot device reads (/dev/dattoN): a read none of whose blocks is done
 * is cloned to the origin by the submitter (the "direct" reads); any other
 * read is served by a reader thread: blocks not done from the origin, done
 * blocks from the pending pages or the COW file.  done bits only change
 * under snap->rsem held for write, then the mrf thread waits for the direct
 * reads that were in flight (see snap_submit_direct) before it releases
 * the held writes; a reader thread holds rsem for read while it classifies
 * blocks and reads the origin.  So no write overtakes an origin read.
 */
#include <linux/kthread.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/highmem.h>
#include <linux/sched/mm.h>
#include <linux/module.h>
#include "dbd.h"

#define DBD_BATCH_PAGES 4096		/* 16 MiB read per mrf batch */
#define DBD_CLONE_PAGES 256		/* 1 MiB per read bio */
#define DBD_PENDING_LIMIT 16384		/* 64 MiB read but not yet saved */
#define DBD_PENDING_HARD (2 * DBD_PENDING_LIMIT)	/* the mrf thread waits */
#define DBD_THROTTLE_WAIT (2 * HZ)	/* longest wait of one throttled write */
#define DBD_FLUSH_WAIT (10 * HZ)	/* longest wait of one flush */
#define DBD_WINDOW_BLOCKS 256		/* snapshot read window */
#define DBD_READERS 4			/* snapshot reads served at once */

/*
 * The bios this module allocates (the mrf thread's origin reads, the
 * direct reads' clones) come from its own pool.  The mrf thread may hold
 * bios of fs_bio_set (the file system's held writes): under memory
 * pressure, waiting on that same mempool for a bio that only it can give
 * back would never end.  Bios taken from this pool are always submitted
 * before the next is allocated, so its reserve is refilled by I/O that
 * does not depend on the waiter; a clone allocated in a submit_bio call
 * while earlier ones still wait on current->bio_list is covered by the
 * pool's rescuer.
 */
static struct bio_set dbd_bio_set;

struct dbd_snap;

/* a direct read's clone (the pool's front pad) */
struct dbd_clone {
	struct dbd_snap *s;
	struct bio *orig;
	unsigned int phase;
	struct bio bio;		/* last: the bio's inline vecs follow */
};

int dbd_snap_init(void)
{
	return bioset_init(&dbd_bio_set, BIO_POOL_SIZE,
			   offsetof(struct dbd_clone, bio),
			   BIOSET_NEED_BVECS | BIOSET_NEED_RESCUER);
}

/* after every snapshot engine is gone (all their bios are put) */
void dbd_snap_exit(void)
{
	bioset_exit(&dbd_bio_set);
}

/* one reader thread of /dev/dattoN and its window */
struct dbd_reader {
	struct dbd_snap *s;
	struct task_struct *task;
	struct page *win[DBD_WINDOW_BLOCKS];
	struct bio_vec bv[DBD_WINDOW_BLOCKS];	/* COW file reads */
};

struct dbd_snap {
	struct dbd_dev *dev;
	struct dbd_cow *cow;
	struct block_device *bdev;
	sector_t size;
	u64 nblocks;
	unsigned long *done;
	unsigned long *claim;		/* mrf thread only */
	unsigned long *self;		/* blocks the COW file's own writes hit */
	spinlock_t lock;
	struct bio_list held;
	struct bio_list reads;
	struct xarray pending;		/* block -> page */
	struct list_head cowq;
	long pending_pages;
	wait_queue_head_t mrf_wq;
	wait_queue_head_t cow_wq;
	wait_queue_head_t rd_wq;
	wait_queue_head_t throttle_wq;
	struct rw_semaphore rsem;
	/* direct reads in flight per phase (under dr_lock), current phase (lock) */
	spinlock_t dr_lock;
	unsigned int dr_inflight[2];
	unsigned int dr_phase;
	/*
	 * Between a commit's phase switch and the end of its wait (lock):
	 * blocks just marked done may still be read directly from the
	 * origin, so writes to done blocks are held too, not passed.
	 */
	bool dr_draining;
	/* a throttled writer waited in vain: no throttling until a save */
	bool cow_stalled;
	/* progress counters for dbd_snap_flush (lock) */
	u64 held_in, held_out;		/* writes held / released by mrf */
	u64 queued_pages, saved_pages;	/* pages queued / done by COW thread */
	wait_queue_head_t dr_wq;
	struct task_struct *mrf_task;
	struct task_struct *cow_task;
	struct dbd_reader *rd[DBD_READERS];
	bool stop_mrf, stop_cow, stop_rd;
	/* COW thread batch */
	u64 cblocks[DBD_COW_BATCH];
	struct page *cpages[DBD_COW_BATCH];
};

struct dbd_read_batch {
	atomic_t remaining;
	int error;
	struct completion done;
};

static void dbd_read_endio(struct bio *bio)
{
	struct dbd_read_batch *rb = bio->bi_private;

	if (bio->bi_status)
		WRITE_ONCE(rb->error, -EIO);
	bio_put(bio);
	if (atomic_dec_and_test(&rb->remaining))
		complete(&rb->done);
}

static void rb_init(struct dbd_read_batch *rb)
{
	atomic_set(&rb->remaining, 1);
	rb->error = 0;
	init_completion(&rb->done);
}

static int rb_wait(struct dbd_read_batch *rb)
{
	if (!atomic_dec_and_test(&rb->remaining))
		wait_for_completion_io(&rb->done);
	return READ_ONCE(rb->error);
}

/*
 * Read blocks [first, first + n) of the origin into pages (one per
 * block); the partial last block of the device is zero-filled.
 */
static void snap_read_origin(struct dbd_snap *s, u64 first, unsigned int n,
			     struct page **pages, struct dbd_read_batch *rb)
{
	unsigned int i = 0;

	while (i < n) {
		unsigned int nr = min_t(unsigned int, n - i, DBD_CLONE_PAGES);
		struct bio *bio;
		unsigned int j;

		bio = bio_alloc_bioset(s->bdev, nr, REQ_OP_READ | REQ_SYNC,
				       GFP_NOIO, &dbd_bio_set);
		bio->bi_iter.bi_sector = (first + i) * DBD_SECTORS_PER_BLOCK;
		for (j = 0; j < nr; j++) {
			u64 b = first + i + j;
			sector_t left = s->size - b * DBD_SECTORS_PER_BLOCK;
			unsigned int len = DBD_BLOCK_SIZE;

			if (left < DBD_SECTORS_PER_BLOCK) {
				len = left << SECTOR_SHIFT;
				zero_user(pages[i + j], len, DBD_BLOCK_SIZE - len);
			}
			__bio_add_page(bio, pages[i + j], len, 0);
			if (len < DBD_BLOCK_SIZE) {
				nr = j + 1;
				break;
			}
		}
		bio->bi_private = rb;
		bio->bi_end_io = dbd_read_endio;
		atomic_inc(&rb->remaining);
		submit_bio(bio);
		i += nr;
	}
}

/* ------------------------------------------------------------ write hook */

/*
 * A page of original data the COW thread is saving: pending pages carry
 * their block number in page->private until they are freed.  Only the
 * COW thread writes them (direct I/O to the COW file), so other tasks'
 * pages are never looked up.
 */
static bool snap_own_page(struct dbd_snap *s, struct page *page)
{
	unsigned long blk = page_private(page);

	return current == READ_ONCE(s->cow_task) && blk < s->nblocks &&
	       xa_load(&s->pending, blk) == page;
}

static bool snap_all_cow_pages(struct dbd_snap *s, struct bio *bio)
{
	struct bio_vec bv;
	struct bvec_iter iter;

	if (bio_op(bio) != REQ_OP_WRITE)
		return false;
	bio_for_each_segment(bv, bio, iter) {
		if (!dbd_cow_owns_page(s->cow, bv.bv_page) &&
		    !snap_own_page(s, bv.bv_page))
			return false;
	}
	return true;
}

static void snap_free_page(struct page *pg)
{
	set_page_private(pg, 0);
	__free_page(pg);
}

/* partition-relative block range of a bio; false if outside the device */
static bool snap_bio_range(struct dbd_trace *t, struct bio *bio, u64 *first,
			   u64 *last)
{
	return dbd_trace_range(t, bio, first, last);
}

static bool snap_range_done(struct dbd_snap *s, u64 first, u64 last)
{
	return find_next_zero_bit(s->done, last + 1, first) > last;
}

/*
 * Throttle user tasks while too much original data is in memory, for a
 * bounded time.  Never a task that may hold up the COW thread itself: a
 * kernel thread, a task inside a bio submission or a filesystem
 * transaction (journal handle), or any task while the module freezes the
 * filesystem or the COW file is closed (dormant: nothing drains then).
 * A wait that made no room in DBD_THROTTLE_WAIT (an external freeze
 * holding the COW thread, a stuck disk) turns throttling off until the
 * COW thread saves its next batch: a writer never waits on it unbounded.
 */
static bool snap_throttle_off(struct dbd_snap *s)
{
	return dbd_dev_failed(s->dev) || READ_ONCE(s->dev->freezing) ||
	       !READ_ONCE(s->cow->filp) || READ_ONCE(s->cow_stalled);
}

static void snap_throttle(struct dbd_snap *s)
{
	long left;

	if ((current->flags & (PF_KTHREAD | PF_MEMALLOC)) ||
	    current->bio_list || current->journal_info ||
	    READ_ONCE(s->pending_pages) < DBD_PENDING_LIMIT ||
	    snap_throttle_off(s))
		return;
	left = wait_event_killable_timeout(s->throttle_wq,
					   READ_ONCE(s->pending_pages) <
					   DBD_PENDING_LIMIT ||
					   snap_throttle_off(s),
					   DBD_THROTTLE_WAIT);
	if (!left)
		WRITE_ONCE(s->cow_stalled, true);
}

bool dbd_snap_write(struct dbd_trace *t, struct bio *bio)
{
	struct dbd_snap *s = t->snap;
	u64 first, last;

	if (!snap_bio_range(t, bio, &first, &last))
		return false;
	if (snap_all_cow_pages(s, bio)) {
		/*
		 * The COW file's own writes are not copied, but they change
		 * the volume after the snapshot instant: remembered for the
		 * next incremental (dbd_snap_mark_self).
		 */
		spin_lock(&s->lock);
		dbd_bits(s->self, first, last, true);
		spin_unlock(&s->lock);
		return false;
	}
	spin_lock(&s->lock);
	if (snap_range_done(s, first, last) && !s->dr_draining) {
		spin_unlock(&s->lock);
		return false;
	}
	if (bio_op(bio) == REQ_OP_DISCARD) {
		/*
		 * Discarding blocks whose original data is not saved would
		 * change what the snapshot reads.  A discard is only a hint:
		 * complete it without passing it down.
		 */
		spin_unlock(&s->lock);
		bio_endio(bio);
		return true;
	}
	bio_list_add(&s->held, bio);
	s->held_in++;
	spin_unlock(&s->lock);
	wake_up(&s->mrf_wq);

	snap_throttle(s);
	return true;
}

/* ------------------------------------------------------------ mrf thread */

struct dbd_batch {
	unsigned int n;
	u64 blocks[DBD_BATCH_PAGES];
	struct page *pages[DBD_BATCH_PAGES];
};

/*
 * Direct reads.  A read of /dev/dattoN none of whose blocks is done is
 * cloned to the origin from the submitter's context and completes with
 * its clone: no thread, no copy.  Under s->lock (which also covers done
 * bits) it is counted in the current phase; snap_batch_commit marks blocks
 * done and switches the phase under the same lock, then waits until the
 * previous phase has no read in flight before the held writes go out.  So
 * a read that found a block not done reads it before any write to it, and
 * a stream of new reads (counted in the new phase) cannot starve the mrf
 * thread.
 */
static bool snap_direct_drained(struct dbd_snap *s, unsigned int phase)
{
	unsigned long flags;
	bool idle;

	spin_lock_irqsave(&s->dr_lock, flags);
	idle = !s->dr_inflight[phase];
	spin_unlock_irqrestore(&s->dr_lock, flags);
	return idle;
}

static void snap_direct_endio(struct bio *clone)
{
	struct dbd_clone *c = container_of(clone, struct dbd_clone, bio);
	struct dbd_snap *s = c->s;
	struct bio *orig = c->orig;
	unsigned int phase = c->phase;	/* c goes with the clone */
	unsigned long flags;

	orig->bi_status = clone->bi_status;
	if (clone->bi_status) {
		int err = blk_status_to_errno(clone->bi_status);

		dbd_err("error reading snapshot: %d", err);
		dbd_dev_fail(s->dev, err);
	}
	bio_put(clone);
	/* the last use of s: a waiter that sees the count drop may free it */
	spin_lock_irqsave(&s->dr_lock, flags);
	if (!--s->dr_inflight[phase])
		wake_up_all(&s->dr_wq);
	spin_unlock_irqrestore(&s->dr_lock, flags);
	bio_endio(orig);
}

static bool snap_all_origin(struct dbd_snap *s, u64 first, u64 last)
{
	return find_next_bit(s->done, last + 1, first) > last;
}

/* Submit bio as a direct read if none of its blocks is done; false if not. */
static bool snap_submit_direct(struct dbd_snap *s, struct bio *bio)
{
	u64 first = bio->bi_iter.bi_sector / DBD_SECTORS_PER_BLOCK;
	u64 last = (bio_end_sector(bio) - 1) / DBD_SECTORS_PER_BLOCK;
	struct dbd_clone *c;
	struct bio *clone;
	unsigned long flags;
	bool origin;

	if (bio_end_sector(bio) > s->size)
		return false;
	spin_lock(&s->lock);
	origin = snap_all_origin(s, first, last);
	spin_unlock(&s->lock);
	if (!origin)
		return false;
	clone = bio_alloc_clone(s->bdev, bio, GFP_NOIO, &dbd_bio_set);
	if (!clone)
		return false;
	c = container_of(clone, struct dbd_clone, bio);
	c->s = s;
	c->orig = bio;
	clone->bi_opf = REQ_OP_READ | REQ_SYNC;
	clone->bi_end_io = snap_direct_endio;
	/* again, now for good: a batch may have been committed meanwhile */
	spin_lock(&s->lock);
	origin = snap_all_origin(s, first, last);
	if (origin) {
		c->phase = s->dr_phase;
		spin_lock_irqsave(&s->dr_lock, flags);
		s->dr_inflight[c->phase]++;
		spin_unlock_irqrestore(&s->dr_lock, flags);
	}
	spin_unlock(&s->lock);
	if (!origin) {
		bio_put(clone);
		return false;
	}
	submit_bio_noacct(clone);
	return true;
}

/* read the claimed blocks of the batch and hand them to the COW thread */
static void snap_batch_commit(struct dbd_snap *s, struct dbd_batch *b)
{
	struct dbd_read_batch rb;
	unsigned int i, j, phase;
	int err = 0;
	LIST_HEAD(items);

	if (!b->n)
		return;
	rb_init(&rb);
	for (i = 0; i < b->n; i = j) {
		for (j = i + 1; j < b->n && b->blocks[j] == b->blocks[j - 1] + 1;
		     j++)
			;
		snap_read_origin(s, b->blocks[i], j - i, &b->pages[i], &rb);
	}
	err = rb_wait(&rb);
	for (i = 0; i < b->n && !err; i++) {
		list_add_tail(&b->pages[i]->lru, &items);
		err = xa_err(xa_store(&s->pending, b->blocks[i], b->pages[i],
				      GFP_NOIO));
	}
	if (err) {
		dbd_dev_fail(s->dev, err);
		for (i = 0; i < b->n; i++) {
			xa_erase(&s->pending, b->blocks[i]);
			clear_bit(b->blocks[i], s->claim);
			snap_free_page(b->pages[i]);
		}
		b->n = 0;
		return;
	}
	down_write(&s->rsem);
	spin_lock(&s->lock);
	for (i = 0; i < b->n; i++) {
		set_bit(b->blocks[i], s->done);
		clear_bit(b->blocks[i], s->claim);
	}
	list_splice_tail(&items, &s->cowq);
	s->pending_pages += b->n;
	s->queued_pages += b->n;
	phase = s->dr_phase;
	s->dr_phase = !phase;
	s->dr_draining = true;
	spin_unlock(&s->lock);
	up_write(&s->rsem);
	/*
	 * Direct reads that found these blocks not done finish first; until
	 * then no write to them may pass (held ones are released after this
	 * returns, new ones are held by dbd_snap_write).
	 */
	wait_event(s->dr_wq, snap_direct_drained(s, phase));
	spin_lock(&s->lock);
	s->dr_draining = false;
	spin_unlock(&s->lock);
	wake_up(&s->cow_wq);
	b->n = 0;
}

/*
 * Room for one more original before it is read.  Writers the throttle
 * does not hold back (kernel threads such as writeback) and single large
 * bios (one WRITE_ZEROES covers up to GiBs, and its submitter is throttled
 * only after it is held) would otherwise pin a page per block: at DBD_PENDING_HARD
 * the mrf thread commits what it has and waits for the COW thread, as
 * long as that makes progress (DBD_THROTTLE_WAIT, as the throttle: a COW
 * thread stuck behind a write held here must not deadlock).  Past a
 * quarter of RAM the snapshot fails (-ENOMEM) rather than the machine.
 */
static int snap_mrf_room(struct dbd_snap *s, struct dbd_batch *b)
{
	unsigned long ceiling = max_t(unsigned long, DBD_PENDING_HARD,
				      totalram_pages() / 4);
	long left;

	if (READ_ONCE(s->pending_pages) + b->n < DBD_PENDING_HARD)
		return 0;
	if (READ_ONCE(s->pending_pages) + b->n >= ceiling)
		return -ENOMEM;
	if (snap_throttle_off(s))
		return 0;
	snap_batch_commit(s, b);
	left = wait_event_timeout(s->throttle_wq,
				  READ_ONCE(s->pending_pages) <
				  DBD_PENDING_LIMIT || snap_throttle_off(s),
				  DBD_THROTTLE_WAIT);
	if (!left)
		WRITE_ONCE(s->cow_stalled, true);
	return 0;
}

static int snap_mrf_thread(void *data)
{
	struct dbd_snap *s = data;
	struct dbd_batch *b;
	struct bio_list todo, release;
	struct bio *bio;
	unsigned int noio = memalloc_noio_save();
	u64 taken;

	b = kvmalloc(sizeof(*b), GFP_KERNEL);
	for (;;) {
		wait_event_idle(s->mrf_wq, !bio_list_empty(&s->held) ||
			   READ_ONCE(s->stop_mrf));
		spin_lock(&s->lock);
		todo = s->held;
		bio_list_init(&s->held);
		spin_unlock(&s->lock);
		if (bio_list_empty(&todo) && READ_ONCE(s->stop_mrf))
			break;
		bio_list_init(&release);
		if (b)
			b->n = 0;
		taken = 0;
		while ((bio = bio_list_pop(&todo))) {
			struct dbd_trace tr = {
				.bdev = s->bdev, .size = s->size,
				.sect_off = s->dev->sect_off,
			};
			u64 first, last, blk;

			bio_list_add(&release, bio);
			taken++;
			if (!b) {
				dbd_dev_fail(s->dev, -ENOMEM);
				continue;
			}
			if (dbd_dev_failed(s->dev) ||
			    !snap_bio_range(&tr, bio, &first, &last))
				continue;
			for (blk = first; blk <= last; blk++) {
				struct page *pg;

				if (test_bit(blk, s->done) ||
				    test_bit(blk, s->claim))
					continue;
				if (b->n == DBD_BATCH_PAGES)
					snap_batch_commit(s, b);
				if (snap_mrf_room(s, b)) {
					dbd_err("original data waiting for the cow file exceeds a quarter of memory");
					dbd_dev_fail(s->dev, -ENOMEM);
					break;
				}
				pg = alloc_page(GFP_NOIO);
				if (!pg) {
					dbd_dev_fail(s->dev, -ENOMEM);
					break;
				}
				set_page_private(pg, blk);
				set_bit(blk, s->claim);
				b->blocks[b->n] = blk;
				b->pages[b->n++] = pg;
			}
		}
		if (b)
			snap_batch_commit(s, b);
		/* the original data is saved (or the device failed) */
		while ((bio = bio_list_pop(&release)))
			dbd_submit_passthrough(bio);
		spin_lock(&s->lock);
		s->held_out += taken;
		spin_unlock(&s->lock);
		wake_up_all(&s->throttle_wq);
	}
	kvfree(b);
	memalloc_noio_restore(noio);
	return 0;
}

/* ------------------------------------------------------------ COW thread */

static int snap_cow_thread(void *data)
{
	struct dbd_snap *s = data;
	struct page *pg, *tmp;
	unsigned int noio = memalloc_noio_save();
	u64 *blocks = s->cblocks;
	struct page **pages = s->cpages;
	bool discarded = false;
	unsigned int n;
	LIST_HEAD(batch);
	int ret;

	for (;;) {
		/* while dormant (COW file closed) the queue waits in memory */
		wait_event_idle(s->cow_wq, (!list_empty(&s->cowq) &&
					    (READ_ONCE(s->cow->filp) ||
					     dbd_dev_failed(s->dev))) ||
			   READ_ONCE(s->stop_cow) ||
			   (dbd_dev_failed(s->dev) && !discarded));
		if (dbd_dev_failed(s->dev) && !discarded) {
			/* a failed snapshot keeps no COW file (SPEC 3.4) */
			dbd_cow_discard(s->cow);
			discarded = true;
		}
		n = 0;
		spin_lock(&s->lock);
		list_for_each_entry_safe(pg, tmp, &s->cowq, lru) {
			if (n == DBD_COW_BATCH)
				break;
			list_move_tail(&pg->lru, &batch);
			blocks[n] = page_private(pg);
			pages[n++] = pg;
		}
		spin_unlock(&s->lock);
		if (!n) {
			if (READ_ONCE(s->stop_cow))
				break;
			continue;
		}
		if (!dbd_dev_failed(s->dev)) {
			ret = dbd_cow_save_blocks(s->cow, blocks, pages, n,
						  s->dev);
			if (ret == -EAGAIN && !READ_ONCE(s->stop_cow)) {
				/* dormant: back to the head, in order */
				spin_lock(&s->lock);
				list_splice(&batch, &s->cowq);
				spin_unlock(&s->lock);
				INIT_LIST_HEAD(&batch);
				continue;
			}
			/* stopping while dormant drops the data: no file */
			if (ret && ret != -EAGAIN)
				dbd_dev_fail(s->dev, ret);
		}
		spin_lock(&s->lock);
		list_for_each_entry(pg, &batch, lru)
			xa_erase(&s->pending, page_private(pg));
		s->pending_pages -= n;
		s->saved_pages += n;
		spin_unlock(&s->lock);
		WRITE_ONCE(s->cow_stalled, false);
		list_for_each_entry_safe(pg, tmp, &batch, lru) {
			list_del(&pg->lru);
			snap_free_page(pg);
		}
		wake_up_all(&s->throttle_wq);
	}
	memalloc_noio_restore(noio);
	return 0;
}

/* ------------------------------------------------------- snapshot reads */

enum { SRC_ORIGIN, SRC_MEM, SRC_COW };

/* fill win[0..n) with the snapshot contents of blocks first.. */
static int snap_load_window(struct dbd_reader *r, u64 first, unsigned int n)
{
	struct dbd_snap *s = r->s;
	struct page **win = r->win;
	u8 src[DBD_WINDOW_BLOCKS];
	struct dbd_read_batch rb;
	bool need_origin = false;
	unsigned int i;
	int ret = 0;

	down_read(&s->rsem);
	spin_lock(&s->lock);
	for (i = 0; i < n; i++) {
		src[i] = test_bit(first + i, s->done) ? SRC_COW : SRC_ORIGIN;
		if (src[i] == SRC_ORIGIN)
			need_origin = true;
	}
	spin_unlock(&s->lock);
	if (need_origin) {
		rb_init(&rb);
		snap_read_origin(s, first, n, win, &rb);
		ret = rb_wait(&rb);
	}
	/* pages not yet in the COW file are copied while still pending */
	spin_lock(&s->lock);
	for (i = 0; i < n && !ret; i++) {
		struct page *pg;

		if (src[i] != SRC_COW)
			continue;
		pg = xa_load(&s->pending, first + i);
		if (pg) {
			copy_highpage(win[i], pg);
			src[i] = SRC_MEM;
		}
	}
	spin_unlock(&s->lock);
	up_read(&s->rsem);

	/* COW data: runs of consecutive data blocks read with one call */
	i = 0;
	while (i < n && !ret) {
		unsigned int len = 1;
		u64 val, next;

		if (src[i] != SRC_COW) {
			i++;
			continue;
		}
		ret = dbd_cow_get(s->cow, first + i, &val);
		/* saved data only: never the header, the index or a hole */
		if (!ret && !dbd_index_entry_saved(val, &s->cow->geo,
						   READ_ONCE(s->cow->hdr.fpos)))
			ret = -EIO;
		while (!ret && i + len < n && src[i + len] == SRC_COW &&
		       !dbd_cow_get(s->cow, first + i + len, &next) &&
		       next == val + len)
			len++;
		if (!ret)
			ret = dbd_cow_read_blocks(s->cow, val, &win[i], r->bv,
						  len);
		i += len;
	}
	return ret;
}

static int snap_serve_read(struct dbd_reader *r, struct bio *bio)
{
	struct dbd_snap *s = r->s;
	struct page **win = r->win;
	struct bio_vec bv;
	struct bvec_iter iter;
	u64 pos = (u64)bio->bi_iter.bi_sector << SECTOR_SHIFT;
	u64 end = pos + bio->bi_iter.bi_size;
	u64 dev_blocks = DIV_ROUND_UP_ULL(s->size, DBD_SECTORS_PER_BLOCK);
	u64 wfirst = 0;
	unsigned int wn = 0;
	int ret;

	if (end > (u64)s->size << SECTOR_SHIFT)
		return -EIO;
	bio_for_each_segment(bv, bio, iter) {
		unsigned int done = 0;

		while (done < bv.bv_len) {
			u64 blk = pos >> DBD_BLOCK_SHIFT;
			unsigned int off = pos & (DBD_BLOCK_SIZE - 1);
			unsigned int len = min_t(unsigned int,
						 bv.bv_len - done,
						 DBD_BLOCK_SIZE - off);
			void *dst, *src;

			if (blk < wfirst || blk >= wfirst + wn) {
				u64 last = (end - 1) >> DBD_BLOCK_SHIFT;

				wfirst = blk;
				wn = min_t(u64, last - blk + 1,
					   DBD_WINDOW_BLOCKS);
				wn = min_t(u64, wn, dev_blocks - blk);
				ret = snap_load_window(r, wfirst, wn);
				if (ret)
					return ret;
			}
			dst = kmap_local_page(bv.bv_page);
			src = kmap_local_page(win[blk - wfirst]);
			memcpy(dst + bv.bv_offset + done, src + off, len);
			kunmap_local(src);
			kunmap_local(dst);
			done += len;
			pos += len;
		}
	}
	return 0;
}

static int snap_rd_thread(void *data)
{
	struct dbd_reader *r = data;
	struct dbd_snap *s = r->s;
	struct bio *bio;
	unsigned int noio = memalloc_noio_save();
	int ret;

	for (;;) {
		wait_event_idle(s->rd_wq, !bio_list_empty(&s->reads) ||
			   READ_ONCE(s->stop_rd));
		spin_lock(&s->lock);
		bio = bio_list_pop(&s->reads);
		spin_unlock(&s->lock);
		if (!bio) {
			if (READ_ONCE(s->stop_rd))
				break;
			continue;
		}
		if (dbd_dev_failed(s->dev)) {
			bio->bi_status = BLK_STS_IOERR;
		} else if (!(READ_ONCE(s->dev->state) & DBD_STATE_ACTIVE)) {
			bio->bi_status = BLK_STS_DEV_RESOURCE;	/* dormant */
		} else {
			ret = snap_serve_read(r, bio);
			if (ret == -EAGAIN) {
				bio->bi_status = BLK_STS_DEV_RESOURCE;
			} else if (ret) {
				dbd_err("error reading snapshot: %d", ret);
				dbd_dev_fail(s->dev, ret);
				bio->bi_status = BLK_STS_IOERR;
			}
		}
		bio_endio(bio);
	}
	memalloc_noio_restore(noio);
	return 0;
}

/* ------------------------------------------------------- engine life */

static void snap_readers_stop(struct dbd_snap *s)
{
	unsigned int i, j;

	WRITE_ONCE(s->stop_rd, true);
	wake_up_all(&s->rd_wq);
	for (i = 0; i < DBD_READERS; i++) {
		struct dbd_reader *r = s->rd[i];

		if (!r)
			continue;
		if (r->task) {
			kthread_stop(r->task);
			put_task_struct(r->task);
		}
		for (j = 0; j < DBD_WINDOW_BLOCKS; j++)
			if (r->win[j])
				__free_page(r->win[j]);
		kfree(r);
		s->rd[i] = NULL;
	}
}

static int snap_readers_start(struct dbd_snap *s)
{
	unsigned int i, j;

	for (i = 0; i < DBD_READERS; i++) {
		struct dbd_reader *r = kzalloc(sizeof(*r), GFP_KERNEL);

		if (!r)
			return -ENOMEM;
		s->rd[i] = r;
		r->s = s;
		for (j = 0; j < DBD_WINDOW_BLOCKS; j++) {
			r->win[j] = alloc_page(GFP_KERNEL);
			if (!r->win[j])
				return -ENOMEM;
		}
		r->task = kthread_run(snap_rd_thread, r, "datto_snap_rd%u.%u",
				      s->dev->minor, i);
		if (IS_ERR(r->task)) {
			r->task = NULL;
			return -ENOMEM;
		}
		get_task_struct(r->task);
	}
	return 0;
}

struct dbd_snap *dbd_snap_create(struct dbd_dev *dev, struct dbd_cow *cow)
{
	struct dbd_snap *s = kvzalloc(sizeof(*s), GFP_KERNEL);

	if (!s)
		return ERR_PTR(-ENOMEM);
	s->dev = dev;
	s->cow = cow;
	s->bdev = dev->base.bdev;
	s->size = dev->size;
	s->nblocks = DIV_ROUND_UP_ULL(dev->size, DBD_SECTORS_PER_BLOCK);
	s->done = kvcalloc(BITS_TO_LONGS(s->nblocks), sizeof(long),
			   GFP_KERNEL);
	s->claim = kvcalloc(BITS_TO_LONGS(s->nblocks), sizeof(long),
			    GFP_KERNEL);
	s->self = kvcalloc(BITS_TO_LONGS(s->nblocks), sizeof(long),
			   GFP_KERNEL);
	if (!s->done || !s->claim || !s->self)
		goto err;
	spin_lock_init(&s->lock);
	bio_list_init(&s->held);
	bio_list_init(&s->reads);
	xa_init(&s->pending);
	INIT_LIST_HEAD(&s->cowq);
	init_waitqueue_head(&s->mrf_wq);
	init_waitqueue_head(&s->cow_wq);
	init_waitqueue_head(&s->rd_wq);
	init_waitqueue_head(&s->throttle_wq);
	init_rwsem(&s->rsem);
	spin_lock_init(&s->dr_lock);
	init_waitqueue_head(&s->dr_wq);

	s->cow_task = kthread_run(snap_cow_thread, s, "datto_snap_cow%u",
				  dev->minor);
	if (IS_ERR(s->cow_task))
		goto err_cow;
	s->mrf_task = kthread_run(snap_mrf_thread, s, "datto_snap_mrf%u",
				  dev->minor);
	if (IS_ERR(s->mrf_task))
		goto err_mrf;
	if (snap_readers_start(s))
		goto err_rd;
	set_user_nice(s->cow_task, MIN_NICE);
	set_user_nice(s->mrf_task, MIN_NICE);
	get_task_struct(s->cow_task);
	get_task_struct(s->mrf_task);
	return s;

err_rd:
	snap_readers_stop(s);
	WRITE_ONCE(s->stop_mrf, true);
	kthread_stop(s->mrf_task);
err_mrf:
	s->mrf_task = NULL;
	WRITE_ONCE(s->stop_cow, true);
	kthread_stop(s->cow_task);
err_cow:
	s->cow_task = NULL;
err:
	kvfree(s->done);
	kvfree(s->claim);
	kvfree(s->self);
	kvfree(s);
	return ERR_PTR(-ENOMEM);
}

static void snap_stop_task(struct task_struct **task, bool *flag,
			   wait_queue_head_t *wq)
{
	if (!*task)
		return;
	WRITE_ONCE(*flag, true);
	wake_up_all(wq);
	kthread_stop(*task);
	put_task_struct(*task);
	*task = NULL;
}

static bool snap_reached(struct dbd_snap *s, u64 *done, u64 target)
{
	bool ok;

	spin_lock(&s->lock);
	ok = *done >= target;
	spin_unlock(&s->lock);
	return ok || dbd_dev_failed(s->dev);
}

/*
 * Write what the engine holds into the COW file now (the file must be
 * open): every write held before the call has its original data read and
 * every page queued by then is appended.  Both queues are FIFO, so this
 * waits only for what came before, even while new writes arrive.
 * -EINTR if the caller was killed meanwhile.
 */
/* wait until *done reaches what *queued is now; kick wakes the worker */
static int snap_catch_up(struct dbd_snap *s, u64 *queued, u64 *done,
			 wait_queue_head_t *kick)
{
	u64 target;

	spin_lock(&s->lock);
	target = *queued;
	spin_unlock(&s->lock);
	wake_up(kick);
	if (wait_event_killable(s->throttle_wq, snap_reached(s, done, target)))
		return -EINTR;
	return 0;
}

int dbd_snap_flush(struct dbd_snap *s)
{
	int ret = snap_catch_up(s, &s->held_in, &s->held_out, &s->mrf_wq);

	if (!ret)
		ret = snap_catch_up(s, &s->queued_pages, &s->saved_pages,
				    &s->cow_wq);
	return ret ? ret : dbd_dev_failed(s->dev);
}

/*
 * A flush (PREFLUSH or FUA) of the traced device completes only after the
 * COW data of every write before it is in the COW file or has failed the
 * device: a caller that synced its data knows the snapshot holds the
 * originals, and a full COW file has failed the snapshot by the time
 * sync() returns.  Called in the submitter's context before the flush is
 * passed on.  Not while the module fsyncs the COW file (it holds the lock
 * the COW thread needs and waits for the journal commit that sends this
 * flush, measured: the commit of a remount-ro's fsync), for a task inside
 * a journal handle, the engine's threads, nor while throttling is off
 * (dormant, freezing, failed, stalled).  The COW thread can itself wait for the flusher: a
 * freeze (its writes wait for the thaw) or a journal commit (its writes
 * need journal space the commit frees).  So the wait ends when the engine
 * made no progress for DBD_THROTTLE_WAIT (DBD_FLUSH_WAIT at most) and
 * flush waits are off until the COW thread saves its next batch, like a
 * throttle wait: the snapshot goes on, only this flush's order is lost.
 */
static bool snap_flush_reached(struct dbd_snap *s, u64 held, u64 *queued,
			       u64 *progress)
{
	bool ok;

	spin_lock(&s->lock);
	/*
	 * The pages of the writes before the flush are all queued once
	 * held_out reaches held (both FIFO): the target from then on.
	 */
	if (*queued == U64_MAX && s->held_out >= held)
		*queued = s->queued_pages;
	ok = *queued != U64_MAX && s->saved_pages >= *queued;
	*progress = s->held_out + s->saved_pages;
	spin_unlock(&s->lock);
	/*
	 * The module's own fsync of the COW file holds cow->lock, which the
	 * COW thread needs, and waits for the journal commit that may be
	 * this very flush: never wait while one is running.
	 */
	return ok || snap_throttle_off(s) || READ_ONCE(s->cow->fsync_task);
}

void dbd_snap_flush_wait(struct dbd_snap *s)
{
	unsigned long start = jiffies, moved = jiffies;
	u64 held, queued = U64_MAX, progress, last;

	if (snap_throttle_off(s) || READ_ONCE(s->cow->fsync_task) ||
	    current == s->mrf_task || current == s->cow_task ||
	    current->journal_info)
		return;
	spin_lock(&s->lock);
	held = s->held_in;
	last = s->held_out + s->saved_pages;
	spin_unlock(&s->lock);
	wake_up(&s->mrf_wq);
	for (;;) {
		if (wait_event_timeout(s->throttle_wq,
				       snap_flush_reached(s, held, &queued,
							  &progress),
				       HZ / 10))
			return;
		if (progress != last) {
			last = progress;
			moved = jiffies;
		}
		if (time_after(jiffies, moved + DBD_THROTTLE_WAIT) ||
		    time_after(jiffies, start + DBD_FLUSH_WAIT))
			break;
	}
	WRITE_ONCE(s->cow_stalled, true);
	dbd_warn_ratelimited("device %u: a flush waited %u ms for the cow file and was passed on without it",
			     s->dev->minor, jiffies_to_msecs(jiffies - start));
}

void dbd_snap_wake(struct dbd_snap *s)
{
	wake_up_all(&s->cow_wq);
	wake_up_all(&s->throttle_wq);
}

/*
 * Reloaded COW file: blocks with an index entry are saved already.  The
 * file's own writes before the reload are not on record (self lives in
 * memory only), so every block the file has written counts as one of
 * them: the next incremental then matches the next snapshot in the old
 * COW file's blocks too.  A filesystem that cannot map file blocks only
 * loses that (and is told so).
 */
int dbd_snap_load_done(struct dbd_snap *s)
{
	int ret = dbd_cow_scan(s->cow, s->done, s->nblocks);

	if (ret)
		return ret;
	ret = dbd_cow_map_used(s->cow, s->self, s->nblocks);
	if (ret)
		dbd_warn("cannot map the blocks of the reloaded cow file (%d): the next incremental may miss blocks that file changed",
			 ret);
	return 0;
}

/*
 * Mark the blocks the COW file's own writes changed during this snapshot
 * as changed in cow (its index, turning incremental): the next
 * incremental image must get them too, or it would differ from the next
 * snapshot in the old COW file's blocks.  The engine must be stopped.
 */
int dbd_snap_mark_self(struct dbd_snap *s, struct dbd_cow *cow)
{
	unsigned long first = 0, last;
	int ret = 0;

	for (;;) {
		first = find_next_bit(s->self, s->nblocks, first);
		if (first >= s->nblocks)
			break;
		last = find_next_zero_bit(s->self, s->nblocks, first);
		ret = dbd_cow_mark_changed(cow, first, last - 1);
		if (ret)
			break;
		first = last;
	}
	return ret;
}

/* drain held writes and pending COW data; tracing must be removed */
void dbd_snap_stop(struct dbd_snap *s)
{
	snap_stop_task(&s->mrf_task, &s->stop_mrf, &s->mrf_wq);
	snap_stop_task(&s->cow_task, &s->stop_cow, &s->cow_wq);
	wake_up_all(&s->throttle_wq);
}

/* the snapshot disk must be gone: serve queued reads, free */
void dbd_snap_free(struct dbd_snap *s)
{
	dbd_snap_stop(s);
	snap_readers_stop(s);
	wait_event(s->dr_wq, snap_direct_drained(s, 0) &&
		   snap_direct_drained(s, 1));
	xa_destroy(&s->pending);
	kvfree(s->done);
	kvfree(s->claim);
	kvfree(s->self);
	kvfree(s);
}

/* ------------------------------------------------------- /dev/dattoN */

static void dbd_snap_submit_bio(struct bio *bio)
{
	struct dbd_dev *dev = bio->bi_bdev->bd_disk->private_data;
	struct dbd_snap *s = dev->snap;

	if (op_is_write(bio_op(bio))) {
		bio->bi_status = BLK_STS_NOTSUPP;
	} else if (dbd_dev_failed(dev) || !s) {
		bio->bi_status = BLK_STS_IOERR;
	} else if (!(dev->state & DBD_STATE_ACTIVE)) {
		bio->bi_status = BLK_STS_DEV_RESOURCE;	/* dormant: EBUSY */
	} else if (!bio_sectors(bio)) {
		bio->bi_status = BLK_STS_OK;
	} else {
		/* not a direct read: a reader thread serves it */
		if (!snap_submit_direct(s, bio)) {
			spin_lock(&s->lock);
			bio_list_add(&s->reads, bio);
			spin_unlock(&s->lock);
			wake_up(&s->rd_wq);
		}
		return;
	}
	bio_endio(bio);
}

#if DBD_NEW_BLOCK_API
static int dbd_snap_open(struct gendisk *disk, blk_mode_t mode)
{
	struct dbd_dev *dev = disk->private_data;

	/* del_gendisk() waits for opens: dev is alive here */
	kref_get(&dev->kref);
	atomic_inc(&dev->refs);
	return 0;
}

static void dbd_snap_release(struct gendisk *disk)
{
	struct dbd_dev *dev = disk->private_data;

	atomic_dec(&dev->refs);
	/* dev may have been destroyed while open: this may free it */
	dbd_dev_put(dev);
}
#else
static int dbd_snap_open(struct block_device *bdev, fmode_t mode)
{
	struct dbd_dev *dev = bdev->bd_disk->private_data;

	/* del_gendisk() waits for opens: dev is alive here */
	kref_get(&dev->kref);
	atomic_inc(&dev->refs);
	return 0;
}

static void dbd_snap_release(struct gendisk *disk, fmode_t mode)
{
	struct dbd_dev *dev = disk->private_data;

	atomic_dec(&dev->refs);
	/* dev may have been destroyed while open: this may free it */
	dbd_dev_put(dev);
}
#endif

static const struct block_device_operations dbd_snap_fops = {
	.owner = THIS_MODULE,
	.submit_bio = dbd_snap_submit_bio,
	.open = dbd_snap_open,
	.release = dbd_snap_release,
};

int dbd_snap_disk_add(struct dbd_dev *dev)
{
	struct gendisk *disk;
	int ret;

	disk = dbd_alloc_disk(dev->base.bdev);
	if (IS_ERR(disk))
		return PTR_ERR(disk);
	disk->major = dbd_major;
	disk->first_minor = dev->minor;
	disk->minors = 1;
	disk->flags |= GENHD_FL_NO_PART;
	disk->fops = &dbd_snap_fops;
	disk->private_data = dev;
	snprintf(disk->disk_name, DISK_NAME_LEN, "datto%u", dev->minor);
	set_capacity(disk, dev->size);
	set_disk_ro(disk, true);
	ret = add_disk(disk);
	if (ret) {
		put_disk(disk);
		return ret;
	}
	dev->disk = disk;
	return 0;
}

void dbd_snap_disk_del(struct dbd_dev *dev)
{
	if (!dev->disk)
		return;
	del_gendisk(dev->disk);
	put_disk(dev->disk);
	dev->disk = NULL;
}

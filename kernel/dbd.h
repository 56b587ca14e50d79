/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dattobd-ts kernel module: internal structures and interfaces.
 */
#ifndef DBD_H
#define DBD_H

#include <linux/types.h>
#include <linux/fs.h>
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/xarray.h>
#include <linux/rwsem.h>
#include <linux/kref.h>
#include <linux/bitmap.h>
#include <linux/sizes.h>
#include "dattobd.h"
#include "dbd_core.h"
#include "compat.h"

#define DBD_LOG_PREFIX "datto: "
#define dbd_err(fmt, ...) pr_err(DBD_LOG_PREFIX fmt "\n", ##__VA_ARGS__)
#define dbd_warn(fmt, ...) pr_warn(DBD_LOG_PREFIX fmt "\n", ##__VA_ARGS__)
#define dbd_info(fmt, ...) pr_info(DBD_LOG_PREFIX fmt "\n", ##__VA_ARGS__)
#define dbd_warn_ratelimited(fmt, ...) \
	pr_warn_ratelimited(DBD_LOG_PREFIX fmt "\n", ##__VA_ARGS__)
#define dbd_dbg(fmt, ...) do { \
	if (dbd_debug) \
		pr_info(DBD_LOG_PREFIX fmt "\n", ##__VA_ARGS__); \
} while (0)

struct dbd_dev;

/* module parameters */
extern int dbd_debug;
extern unsigned long dbd_cow_max_memory_default;
extern unsigned int dbd_cow_fallocate_percentage_default;
extern unsigned int dbd_max_snap_devices;	/* effective value */
extern int dbd_major;

/* Serialises every management operation (ioctl, /proc, mount hooks). */
extern struct mutex dbd_ctl_mutex;

/* ------------------------------------------------------------------ */
/* COW file manager (cow.c)                                            */

struct dbd_section {
	u64 *map;		/* 4096 entries when resident, else NULL */
	bool on_disk;		/* the file holds entries for this section */
	bool dirty;
	u32 usage;
};

struct dbd_cow {
	struct file *filp;
	struct file *dfilp;	/* O_DIRECT twin for COW data I/O, or NULL */
	bool no_dio;		/* the filesystem refused direct I/O */
	struct inode *inode;
	struct address_space *mapping;	/* compared only, never dereferenced */
	struct dbd_geometry geo;
	struct mutex lock;	/* index, header fields, file writes */
	struct dbd_section *sects;	/* geo.mem_sects entries */
	u64 resident;
	u64 allowed;		/* sections allowed resident */
	struct dbd_header hdr;	/* in-memory header */
	u64 falloc_mib;		/* remembered fallocated size */
	bool index_only;
	bool unlinked;
	/* the task in the module's own fsync of the file (flushes must not wait) */
	struct task_struct *fsync_task;
	/* data appends (under lock): DBD_COW_BATCH entries each */
	struct bio_vec *wvec;
	u64 *wblk;
};

#define DBD_COW_BATCH 64	/* pages per COW data write */

int dbd_cow_init(void);
void dbd_cow_exit(void);
struct dbd_cow *dbd_cow_create(const char *path, sector_t size_sectors,
			       u64 falloc_mib, u64 seqid, const u8 *uuid,
			       unsigned long cache_bytes, int *err);
struct dbd_cow *dbd_cow_load(const struct path *root, const char *rel,
			     sector_t size_sectors, bool index_only,
			     unsigned long cache_bytes, int *err);
int dbd_cow_suspend(struct dbd_cow *cow);
int dbd_cow_scan(struct dbd_cow *cow, unsigned long *bitmap, u64 nbits);
int dbd_cow_map_used(struct dbd_cow *cow, unsigned long *bitmap, u64 nbits);
int dbd_cow_resume(struct dbd_cow *cow, const struct path *root,
		   const char *rel);
int dbd_cow_check_same_fs(struct dbd_cow *cow, struct super_block *sb);
int dbd_cow_rel_path(struct dbd_cow *cow, char **out);
void dbd_cow_set_cache(struct dbd_cow *cow, unsigned long cache_bytes);
int dbd_cow_get(struct dbd_cow *cow, u64 block, u64 *val);
int dbd_cow_save_blocks(struct dbd_cow *cow, const u64 *blocks,
			struct page **pages, unsigned int n,
			struct dbd_dev *dev);
int dbd_cow_mark_changed(struct dbd_cow *cow, u64 first, u64 last);
int dbd_cow_read_blocks(struct dbd_cow *cow, u64 data_blk,
			struct page **pages, struct bio_vec *bv,
			unsigned int n);
int dbd_cow_expand(struct dbd_cow *cow, u64 bytes);
int dbd_cow_truncate_to_index(struct dbd_cow *cow);
int dbd_cow_sync(struct dbd_cow *cow, bool clean);
/* close; unlink the file first if unlink is set */
void dbd_cow_close(struct dbd_cow *cow, bool unlink);
bool dbd_cow_owns_page(struct dbd_cow *cow, struct page *page);
void dbd_cow_discard(struct dbd_cow *cow);

/* ------------------------------------------------------------------ */
/* Traced block device and engines                                     */

struct dbd_snap;
struct dbd_inc;

/* What the write hook sees for one traced minor; RCU-published. */
struct dbd_trace {
	struct dbd_dev *dev;
	struct block_device *bdev;
	sector_t sect_off;	/* partition start sector on the disk */
	sector_t size;		/* partition size in sectors */
	struct dbd_snap *snap;	/* snapshot mode, or */
	struct dbd_inc *inc;	/* incremental mode */
	atomic_t users;		/* hook calls in progress */
	wait_queue_head_t users_wq;
};

struct dbd_dev {
	unsigned int minor;
	unsigned long state;	/* DBD_STATE_* */
	atomic_t fail_code;	/* 0 or negative errno, first error wins */
	unsigned long cache_size;	/* configured, 0 = module default */
	char *bdev_path;
	char *cow_path;
	struct dbd_bdev base;	/* open while not unverified */
	sector_t sect_off;
	sector_t size;
	struct dbd_cow *cow;	/* NULL when unverified / dormant */
	u64 falloc_mib;		/* remembered COW size (MiB) */
	/* changed under eng_lock: dbd_dev_fail reads them from any context */
	spinlock_t eng_lock;
	struct dbd_snap *snap;
	struct dbd_inc *inc;
	struct dbd_trace *trace;
	bool has_auto_expand;
	u64 step_mib;
	u64 reserved_mib;
	/* snapshot block device */
	struct gendisk *disk;
	atomic_t refs;		/* opens of /dev/dattoN */
	/* the device table's reference and one per open of /dev/dattoN */
	struct kref kref;
	/* set while the module freezes the filesystem: no writer throttling */
	bool freezing;
	/* dormant by an unmount: check for a writable superblock left */
	bool umount_check;
};

static inline unsigned long dbd_dev_cache(const struct dbd_dev *dev)
{
	return dev->cache_size ? dev->cache_size : dbd_cow_max_memory_default;
}

void dbd_dev_put(struct dbd_dev *dev);

/*
 * Set or clear bits first..last of a block bitmap.  bitmap_set/clear take
 * unsigned int starts and lengths (volumes over 16 TiB have more blocks):
 * go from the word of first, in chunks.
 */
static inline void dbd_bits(unsigned long *map, u64 first, u64 last,
			    bool set)
{
	while (first <= last) {
		u64 n = min_t(u64, last - first + 1, SZ_1G);
		unsigned long *w = map + BIT_WORD(first);
		unsigned int off = first % BITS_PER_LONG;

		if (set)
			bitmap_set(w, off, (unsigned int)n);
		else
			bitmap_clear(w, off, (unsigned int)n);
		first += n;
	}
}

/* first error wins; also stops tracing of the device */
void dbd_dev_fail(struct dbd_dev *dev, int err);
static inline int dbd_dev_failed(struct dbd_dev *dev)
{
	return atomic_read(&dev->fail_code);
}

/* device table (dev.c); callers hold dbd_ctl_mutex */
struct dbd_dev *dbd_dev_get(unsigned int minor);
int dbd_dev_free_minor(void);
void dbd_dev_view(unsigned int minor, struct dbd_minor_view *v);

int dbd_dev_setup_snap(unsigned int minor, const char *bdev, const char *cow,
		       unsigned long falloc_mib, unsigned long cache_size);
int dbd_dev_reload(unsigned int minor, const char *bdev, const char *cow,
		   unsigned long cache_size, bool snapshot);
int dbd_dev_destroy(struct dbd_dev *dev);
int dbd_dev_transition_inc(struct dbd_dev *dev);
int dbd_dev_transition_snap(struct dbd_dev *dev, const char *cow,
			    unsigned long falloc_mib);
int dbd_dev_expand(struct dbd_dev *dev, u64 mib);
int dbd_dev_auto_expand_grow(struct dbd_dev *dev, struct dbd_cow *cow);
void dbd_dev_destroy_all(void);

/* tracer.c: write hook */
int dbd_tracer_init(void);
void dbd_tracer_exit(void);
int dbd_trace_install(struct dbd_dev *dev, struct dbd_trace *t);
void dbd_trace_remove(struct dbd_dev *dev);
struct dbd_trace *dbd_trace_alloc(struct dbd_dev *dev);
void dbd_trace_free(struct dbd_trace *t);
bool dbd_trace_range(const struct dbd_trace *t, struct bio *bio, u64 *first,
		     u64 *last);
/* called by engines to submit bios they held back */
void dbd_submit_passthrough(struct bio *bio);

/* snap.c: snapshot engine and /dev/dattoN */
int dbd_snap_init(void);
void dbd_snap_exit(void);
struct dbd_snap *dbd_snap_create(struct dbd_dev *dev, struct dbd_cow *cow);
void dbd_snap_stop(struct dbd_snap *snap);	/* drains */
void dbd_snap_free(struct dbd_snap *snap);
bool dbd_snap_write(struct dbd_trace *t, struct bio *bio);
void dbd_snap_wake(struct dbd_snap *snap);
/* save what is held and queued before the call; the COW file is open */
int dbd_snap_flush(struct dbd_snap *snap);
void dbd_snap_flush_wait(struct dbd_snap *snap);
int dbd_snap_load_done(struct dbd_snap *snap);
int dbd_snap_mark_self(struct dbd_snap *snap, struct dbd_cow *cow);
int dbd_snap_disk_add(struct dbd_dev *dev);
void dbd_snap_disk_del(struct dbd_dev *dev);

/* inc.c: incremental engine */
struct dbd_inc *dbd_inc_create(struct dbd_dev *dev, struct dbd_cow *cow);
void dbd_inc_stop(struct dbd_inc *inc);	/* drains */
void dbd_inc_free(struct dbd_inc *inc);
void dbd_inc_write(struct dbd_trace *t, struct bio *bio);
void dbd_inc_wake(struct dbd_inc *inc);
/* put what is recorded into the index now; -EAGAIN while dormant */
int dbd_inc_flush(struct dbd_inc *inc);

/* hooks.c: mount / umount detection */
int dbd_hooks_init(void);
void dbd_hooks_exit(void);

/* dev.c: mount / umount handlers */
char *dbd_mount_pre_umount(const struct path *path, unsigned long *dormant);
void dbd_mount_pre_umount_sb(struct super_block *sb, unsigned long *dormant);
void dbd_mount_post_umount(const char *mnt_path, const unsigned long *dormant,
			   int ret);
void dbd_mount_activate_path(const struct path *path);
/* around a mount that may make a superblock writable (and activate) */
void dbd_mount_begin(void);
void dbd_mount_end(void);
void dbd_dev_exit_checks(void);

/* proc.c */
int dbd_proc_init(void);
void dbd_proc_exit(void);

/* ctl.c */
int dbd_ctl_init(void);
void dbd_ctl_exit(void);

#endif /* DBD_H */

// SPDX-License-Identifier: GPL-2.0-only
/*
 * The COW (.datto) file: creation, header, index cache, data blocks.
 * Layout and rules are in kernel/core (geometry, header encoding); this
 * file does the I/O.  All functions that touch the index or write the
 * file take cow->lock.
 *
 * The file is protected by S_IMMUTABLE on the in-memory inode while it
 * is open; the flag is lifted only around the module's own writes.
 */
#include <linux/fs.h>
#include <linux/file.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/uuid.h>
#include <linux/statfs.h>
#include <linux/sched/mm.h>
#include <linux/dcache.h>
#include <linux/mount.h>
#include <linux/namei.h>
#include <linux/falloc.h>
#include <linux/workqueue.h>
#include <linux/uio.h>
#include <linux/bvec.h>
#include <linux/cred.h>
#include <linux/sched/task.h>
#include "dbd.h"

/*
 * Existing COW files are reopened (re-activation after a mount, reload)
 * with the module's own credentials, never the caller's: the file is the
 * module's (mode 000), and whoever mounted the filesystem again must not
 * decide whether the device survives.
 */
static const struct cred *dbd_cow_cred;

int dbd_cow_init(void)
{
	dbd_cow_cred = prepare_kernel_cred(&init_task);
	return dbd_cow_cred ? 0 : -ENOMEM;
}

void dbd_cow_exit(void)
{
	put_cred(dbd_cow_cred);
}

static int cow_write_section(struct dbd_cow *cow, u64 s);

struct cow_close_work {
	struct work_struct work;
	struct file *filp;
};

static void cow_close_fn(struct work_struct *work)
{
	struct cow_close_work *cw = container_of(work, struct cow_close_work,
						 work);

	filp_close(cw->filp, NULL);
}

/*
 * Close a file so that its last reference is gone on return: a user task's
 * final fput is deferred to its return to userspace, which would keep the
 * mount busy for the umount we are called from.  A kernel worker's fput
 * goes to the delayed-fput list, which flush_delayed_fput() runs now.
 */
static void cow_close_sync(struct file *filp)
{
	struct cow_close_work cw = { .filp = filp };

	INIT_WORK_ONSTACK(&cw.work, cow_close_fn);
	schedule_work(&cw.work);
	flush_work(&cw.work);
	destroy_work_on_stack(&cw.work);
	flush_delayed_fput();
}

/* caller holds cow->lock; the data-append file is closed with filp */
static void cow_close_dio(struct dbd_cow *cow)
{
	if (cow->dfilp) {
		cow_close_sync(cow->dfilp);
		cow->dfilp = NULL;
	}
}

/*
 * The module's own fsync of the COW file, under cow->lock: the flush it
 * sends must not wait for the COW thread (dbd_snap_flush_wait), which
 * needs that lock.
 */
static int cow_fsync(struct dbd_cow *cow)
{
	int ret;

	WRITE_ONCE(cow->fsync_task, current);
	ret = vfs_fsync(cow->filp, 0);
	WRITE_ONCE(cow->fsync_task, NULL);
	return ret;
}

static void cow_unprotect(struct dbd_cow *cow)
{
	if (cow->inode)
		inode_set_flags(cow->inode, 0, S_IMMUTABLE);
}

static void cow_protect(struct dbd_cow *cow)
{
	if (cow->inode)
		inode_set_flags(cow->inode, S_IMMUTABLE, S_IMMUTABLE);
}

static int cow_kwrite(struct dbd_cow *cow, const void *buf, size_t len,
		      loff_t pos)
{
	ssize_t n;

	if (!cow->filp)
		return -EAGAIN;
	cow_unprotect(cow);
	n = kernel_write(cow->filp, buf, len, &pos);
	cow_protect(cow);
	if (n < 0)
		return (int)n;
	return n == len ? 0 : -EIO;
}

/* caller holds cow->lock (or owns cow exclusively) */
static int cow_kread(struct dbd_cow *cow, void *buf, size_t len, loff_t pos)
{
	struct file *f = cow->filp;
	ssize_t n;

	if (!f)
		return -EAGAIN;
	n = kernel_read(f, buf, len, &pos);

	if (n < 0)
		return (int)n;
	if (n < len)
		memset((char *)buf + n, 0, len - n);
	return 0;
}

static int cow_write_header(struct dbd_cow *cow)
{
	u8 buf[DBD_HEADER_USED];

	dbd_header_encode(&cow->hdr, buf);
	return cow_kwrite(cow, buf, sizeof(buf), 0);
}

/* fallocate [pos, pos + len), falling back to writing zeros */
static int cow_allocate(struct dbd_cow *cow, u64 pos, u64 len)
{
	u64 max = file_inode(cow->filp)->i_sb->s_maxbytes;
	struct kstatfs st;
	void *zero;
	u64 done;
	int ret;

	/* a size the filesystem cannot hold: refused before anything changes */
	if (len > max || pos > max - len)
		return -EFBIG;
	cow_unprotect(cow);
	ret = vfs_fallocate(cow->filp, 0, pos, len);
	cow_protect(cow);
	if (ret != -EOPNOTSUPP)
		return ret;
	/* no fallocate: zeroes are written, but never past the free space */
	ret = vfs_statfs(&cow->filp->f_path, &st);
	if (ret)
		return ret;
	if (len / st.f_bsize > st.f_bavail)
		return -ENOSPC;
	zero = kzalloc(PAGE_SIZE, GFP_KERNEL);
	if (!zero)
		return -ENOMEM;
	for (done = 0; done < len && !ret; done += PAGE_SIZE)
		ret = cow_kwrite(cow, zero, PAGE_SIZE, pos + done);
	kfree(zero);
	return ret;
}

void dbd_cow_set_cache(struct dbd_cow *cow, unsigned long cache_bytes)
{
	mutex_lock(&cow->lock);
	cow->allowed = dbd_cache_sections_allowed(cache_bytes,
						  cow->geo.total_sects);
	mutex_unlock(&cow->lock);
}

static struct dbd_cow *cow_alloc(sector_t size_sectors,
				 unsigned long cache_bytes)
{
	struct dbd_cow *cow = kzalloc(sizeof(*cow), GFP_KERNEL);

	if (!cow)
		return NULL;
	mutex_init(&cow->lock);
	dbd_geometry_init(&cow->geo, size_sectors);
	cow->sects = kvcalloc(cow->geo.mem_sects, sizeof(*cow->sects),
			      GFP_KERNEL);
	cow->wvec = kcalloc(DBD_COW_BATCH, sizeof(*cow->wvec), GFP_KERNEL);
	cow->wblk = kcalloc(DBD_COW_BATCH, sizeof(*cow->wblk), GFP_KERNEL);
	if (!cow->sects || !cow->wvec || !cow->wblk) {
		kvfree(cow->sects);
		kfree(cow->wvec);
		kfree(cow->wblk);
		kfree(cow);
		return NULL;
	}
	cow->allowed = dbd_cache_sections_allowed(cache_bytes,
						  cow->geo.total_sects);
	return cow;
}

static void cow_free_sections(struct dbd_cow *cow)
{
	u64 s;

	for (s = 0; s < cow->geo.mem_sects; s++)
		kvfree(cow->sects[s].map);
	kvfree(cow->sects);
	kfree(cow->wvec);
	kfree(cow->wblk);
}

struct dbd_cow *dbd_cow_create(const char *path, sector_t size_sectors,
			       u64 falloc_mib, u64 seqid, const u8 *uuid,
			       unsigned long cache_bytes, int *err)
{
	struct dbd_cow *cow;
	struct file *f;
	u64 bytes;
	int ret;

	cow = cow_alloc(size_sectors, cache_bytes);
	if (!cow) {
		*err = -ENOMEM;
		return NULL;
	}
	f = filp_open(path, O_CREAT | O_TRUNC | O_RDWR | O_LARGEFILE, 0);
	if (IS_ERR(f)) {
		ret = PTR_ERR(f);
		dbd_err("error opening cow file '%s': %d", path, ret);
		goto err_free;
	}
	cow->filp = f;
	cow->inode = file_inode(f);
	cow->mapping = cow->inode->i_mapping;
	if (!S_ISREG(cow->inode->i_mode)) {
		ret = -EINVAL;
		dbd_err("cow file '%s' is not a regular file", path);
		filp_close(f, NULL);
		goto err_free;
	}
	f->f_flags |= O_NOATIME;
	cow_protect(cow);
	cow->index_only = false;

	bytes = dbd_cow_file_bytes(size_sectors, falloc_mib,
				   dbd_cow_fallocate_percentage_default,
				   &cow->falloc_mib);
	ret = cow_allocate(cow, 0, bytes);
	if (ret) {
		dbd_err("error allocating cow file: %d", ret);
		goto err_close;
	}
	cow->hdr.magic = DBD_COW_MAGIC;
	cow->hdr.flags = 0;
	cow->hdr.fpos = cow->geo.first_data_blk;
	cow->hdr.fsize = bytes;
	cow->hdr.seqid = seqid;
	if (uuid)
		memcpy(cow->hdr.uuid, uuid, sizeof(cow->hdr.uuid));
	else
		generate_random_uuid(cow->hdr.uuid);
	cow->hdr.version = COW_VERSION_CHANGED_BLOCKS;
	cow->hdr.nr_changed_blocks = 0;
	ret = cow_write_header(cow);
	if (ret) {
		dbd_err("error writing cow header: %d", ret);
		goto err_close;
	}
	return cow;

err_close:
	dbd_cow_close(cow, true);
	*err = ret;
	return NULL;
err_free:
	cow_free_sections(cow);
	kfree(cow);
	*err = ret;
	return NULL;
}

/*
 * Open an existing COW file relative to a mount root and check its header
 * (SPEC 2.10); on success the header is adopted and rewritten dirty.
 * Caller holds cow->lock (or owns cow exclusively).  With expect, it must
 * be that file (same uuid and seqid: re-activation after a mount); only a
 * file that passed every check is marked in use (not clean) on disk.
 */
/*
 * COW paths are kept relative to the filesystem's root; a mount may show
 * only a subdirectory of it (a bind mount of a subdirectory, a btrfs
 * subvolume).  The path relative to root's mount, or NULL when the file is
 * not under that mount's root (the open fails with -ENOENT, and the device
 * shows it: never active without its file).  buf: PATH_MAX_DATTO bytes.
 */
static const char *cow_rel_in_mount(const struct path *root, const char *rel,
				 char *buf)
{
	size_t n;
	char *p;

	if (root->mnt->mnt_root == root->mnt->mnt_sb->s_root)
		return rel;
	p = dentry_path_raw(root->mnt->mnt_root, buf, PATH_MAX_DATTO);
	if (IS_ERR(p))
		return NULL;
	n = strlen(p);
	if (strncmp(rel, p, n) || rel[n] != '/')
		return NULL;
	return rel + n;
}

static struct file *cow_open_root(const struct path *root, const char *rel)
{
	char *buf = kmalloc(PATH_MAX_DATTO, GFP_KERNEL);
	const struct cred *old;
	struct file *f;

	if (!buf)
		return ERR_PTR(-ENOMEM);
	rel = cow_rel_in_mount(root, rel, buf);
	if (!rel) {
		kfree(buf);
		return ERR_PTR(-ENOENT);
	}
	while (*rel == '/')
		rel++;
	old = override_creds(dbd_cow_cred);
	f = file_open_root(root, rel, O_RDWR | O_LARGEFILE, 0);
	revert_creds(old);
	kfree(buf);
	return f;
}

static int cow_open_existing(struct dbd_cow *cow, const struct path *root,
			     const char *rel, bool index_only,
			     const struct dbd_header *expect)
{
	struct dbd_header h;
	u8 buf[DBD_HEADER_USED];
	struct file *f;
	int ret;

	f = cow_open_root(root, rel);
	if (IS_ERR(f))
		return PTR_ERR(f);
	if (!S_ISREG(file_inode(f)->i_mode)) {
		filp_close(f, NULL);
		return -EINVAL;
	}
	f->f_flags |= O_NOATIME;
	cow->filp = f;
	cow->inode = file_inode(f);
	WRITE_ONCE(cow->mapping, cow->inode->i_mapping);
	ret = cow_kread(cow, buf, sizeof(buf), 0);
	if (!ret) {
		dbd_header_decode(buf, &h);
		ret = dbd_header_check_reload(&h, index_only);
		if (ret)
			dbd_err("cow file not left in clean state or wrong mode: %d",
				ret);
	}
	if (!ret) {
		ret = dbd_header_check_layout(&h, &cow->geo, index_only,
					      i_size_read(cow->inode));
		if (ret)
			dbd_err("cow file header does not fit the file or the device (fpos %llu, fsize %llu): %d",
				(unsigned long long)h.fpos,
				(unsigned long long)h.fsize, ret);
	}
	if (!ret && expect && (memcmp(expect->uuid, h.uuid, sizeof(h.uuid)) ||
			       expect->seqid != h.seqid)) {
		ret = -EINVAL;
		dbd_err("cow file was replaced while dormant: %d", ret);
	}
	if (ret) {
		filp_close(f, NULL);
		cow->filp = NULL;
		cow->inode = NULL;
		WRITE_ONCE(cow->mapping, NULL);
		return ret;
	}
	/* the vmalloc marker is an in-memory detail; start clean of it */
	h.flags &= ~(DBD_FLAG_CLEAN | DBD_FLAG_VMALLOC_UPPER);
	cow->hdr = h;
	cow->index_only = index_only;
	cow_protect(cow);
	ret = cow_write_header(cow);
	if (ret) {
		cow_unprotect(cow);
		filp_close(f, NULL);
		cow->filp = NULL;
		cow->inode = NULL;
		WRITE_ONCE(cow->mapping, NULL);
	}
	return ret;
}

struct dbd_cow *dbd_cow_load(const struct path *root, const char *rel,
			     sector_t size_sectors, bool index_only,
			     unsigned long cache_bytes, int *err)
{
	struct dbd_cow *cow = cow_alloc(size_sectors, cache_bytes);
	u64 s;

	if (!cow) {
		*err = -ENOMEM;
		return NULL;
	}
	*err = cow_open_existing(cow, root, rel, index_only, NULL);
	if (*err) {
		cow_free_sections(cow);
		kfree(cow);
		return NULL;
	}
	for (s = 0; s < cow->geo.total_sects; s++)
		cow->sects[s].on_disk = true;
	/* P9: an index-only file has no meaningful "fallocated" size */
	cow->falloc_mib = index_only ? 0 : cow->hdr.fsize / DBD_MIB;
	return cow;
}

/* dormant: flush the index, mark the file clean and close it */
int dbd_cow_suspend(struct dbd_cow *cow)
{
	u64 s;
	int ret = 0;

	mutex_lock(&cow->lock);
	for (s = 0; s < cow->geo.total_sects && !ret; s++)
		ret = cow_write_section(cow, s);
	if (!ret) {
		cow->hdr.flags |= DBD_FLAG_CLEAN;
		ret = cow_write_header(cow);
		cow->hdr.flags &= ~DBD_FLAG_CLEAN;
	}
	if (!ret)
		ret = cow_fsync(cow);
	if (!ret) {
		for (s = 0; s < cow->geo.total_sects; s++) {
			struct dbd_section *sec = &cow->sects[s];

			if (!sec->map)
				continue;
			kvfree(sec->map);
			sec->map = NULL;
			sec->on_disk = true;
			cow->resident--;
		}
		cow_unprotect(cow);
		cow_close_dio(cow);
		cow_close_sync(cow->filp);
		WRITE_ONCE(cow->filp, NULL);
		cow->inode = NULL;
		WRITE_ONCE(cow->mapping, NULL);
	}
	mutex_unlock(&cow->lock);
	return ret;
}

/* dormant -> active: reopen relative to the new mount and check */
int dbd_cow_resume(struct dbd_cow *cow, const struct path *root,
		   const char *rel)
{
	struct dbd_header old;
	int ret;

	mutex_lock(&cow->lock);
	old = cow->hdr;
	ret = cow_open_existing(cow, root, rel, cow->index_only, &old);
	if (ret)
		cow->hdr = old;
	mutex_unlock(&cow->lock);
	return ret;
}

int dbd_cow_check_same_fs(struct dbd_cow *cow, struct super_block *sb)
{
	return cow->inode->i_sb == sb ? 0 : -EINVAL;
}

int dbd_cow_rel_path(struct dbd_cow *cow, char **out)
{
	char *buf = kmalloc(PATH_MAX_DATTO, GFP_KERNEL);
	char *p;

	if (!buf)
		return -ENOMEM;
	p = dentry_path_raw(cow->filp->f_path.dentry, buf, PATH_MAX_DATTO);
	if (IS_ERR(p)) {
		kfree(buf);
		return PTR_ERR(p);
	}
	*out = kstrdup(p, GFP_KERNEL);
	kfree(buf);
	return *out ? 0 : -ENOMEM;
}

/* ---------------------------------------------------------------- index */

static int cow_write_section(struct dbd_cow *cow, u64 s)
{
	struct dbd_section *sec = &cow->sects[s];
	int ret;

	if (!sec->map || !sec->dirty)
		return 0;
	/* the in-memory-only section past the on-disk index (P14) */
	if (s >= cow->geo.total_sects)
		return 0;
	ret = cow_kwrite(cow, sec->map, DBD_SECTION_BYTES,
			 DBD_HEADER_BYTES + s * DBD_SECTION_BYTES);
	if (ret)
		return ret;
	sec->dirty = false;
	sec->on_disk = true;
	return 0;
}

static int cow_evict(struct dbd_cow *cow, u64 keep)
{
	u64 allowed = cow->allowed ? cow->allowed : 1;
	u64 target = allowed / 2, s, total = 0, n = 0, avg;
	int pass, ret;

	if (cow->resident <= allowed)
		return 0;
	for (s = 0; s < cow->geo.mem_sects; s++) {
		if (cow->sects[s].map) {
			total += cow->sects[s].usage;
			n++;
		}
	}
	avg = n ? total / n : 0;
	/* least used first, then any section but the one in use */
	for (pass = 0; pass < 2; pass++) {
		for (s = 0; s < cow->geo.total_sects; s++) {
			struct dbd_section *sec = &cow->sects[s];

			if (cow->resident <= target)
				goto done;
			if (!sec->map || s == keep ||
			    (pass == 0 && sec->usage > avg))
				continue;
			ret = cow_write_section(cow, s);
			if (ret)
				return ret;
			kvfree(sec->map);
			sec->map = NULL;
			cow->resident--;
		}
	}
done:
	for (s = 0; s < cow->geo.mem_sects; s++)
		cow->sects[s].usage = 0;
	return 0;
}

/* make section s resident; caller holds cow->lock */
static int cow_section(struct dbd_cow *cow, u64 s, u64 **map)
{
	struct dbd_section *sec;
	unsigned int noio;
	int ret;

	if (s >= cow->geo.mem_sects)
		return -EINVAL;
	sec = &cow->sects[s];
	if (!sec->map) {
		if (!cow->filp)
			return -EAGAIN;
		noio = memalloc_noio_save();
		sec->map = kvzalloc(DBD_SECTION_BYTES, GFP_KERNEL);
		memalloc_noio_restore(noio);
		if (!sec->map)
			return -ENOMEM;
		cow->resident++;
		if (sec->on_disk) {
			ret = cow_kread(cow, sec->map, DBD_SECTION_BYTES,
					DBD_HEADER_BYTES +
					s * DBD_SECTION_BYTES);
			if (ret) {
				kvfree(sec->map);
				sec->map = NULL;
				cow->resident--;
				return ret;
			}
		}
		ret = cow_evict(cow, s);
		if (ret)
			return ret;
	}
	if (sec->usage < U32_MAX)
		sec->usage++;
	*map = sec->map;
	return 0;
}

int dbd_cow_get(struct dbd_cow *cow, u64 block, u64 *val)
{
	u64 *map;
	int ret;

	mutex_lock(&cow->lock);
	ret = cow_section(cow, block / DBD_SECTION_ENTRIES, &map);
	if (!ret)
		*val = le64_to_cpu(map[block % DBD_SECTION_ENTRIES]);
	mutex_unlock(&cow->lock);
	return ret;
}

static void cow_set_entry(struct dbd_cow *cow, u64 *map, u64 block, u64 val)
{
	u64 *e = &map[block % DBD_SECTION_ENTRIES];

	if (le64_to_cpu(*e) == val)
		return;
	if (!*e && val && cow->hdr.version >= COW_VERSION_CHANGED_BLOCKS)
		cow->hdr.nr_changed_blocks++;
	*e = cpu_to_le64(val);
	cow->sects[block / DBD_SECTION_ENTRIES].dirty = true;
}

/*
 * The file COW data goes through (appends and snapshot reads): an O_DIRECT
 * twin of filp when the filesystem supports it (no copy through the page
 * cache, no writeback later; the pages are written as they are), else
 * filp itself.  Caller holds cow->lock.
 */
static struct file *cow_data_file(struct dbd_cow *cow)
{
	struct file *f;

	if (cow->dfilp || cow->no_dio)
		return cow->dfilp ? cow->dfilp : cow->filp;
	cow_unprotect(cow);
	f = dentry_open(&cow->filp->f_path, O_RDWR | O_DIRECT | O_LARGEFILE,
			cow->filp->f_cred);
	cow_protect(cow);
	if (IS_ERR(f)) {
		dbd_info("cow file: no direct I/O (%ld), using the page cache",
			 PTR_ERR(f));
		cow->no_dio = true;
		return cow->filp;
	}
	cow->dfilp = f;
	return f;
}

/* direct I/O refused or cut short: this file goes through filp from now on */
static void cow_drop_dio(struct dbd_cow *cow, const char *op, ssize_t ret)
{
	dbd_info("cow file: direct %s returned %zd, using the page cache",
		 op, ret);
	cow_close_dio(cow);
	cow->no_dio = true;
}

static ssize_t cow_write_iter(struct file *f, struct bio_vec *vec,
			      unsigned int n, loff_t pos)
{
	struct iov_iter iter;
	ssize_t ret;

	iov_iter_bvec(&iter, DBD_ITER_SOURCE, vec, n, n * DBD_BLOCK_SIZE);
#if DBD_ITER_WRITE_STARTS_WRITE
	/* takes sb_writers itself: taking it twice deadlocks against a freeze */
	ret = vfs_iter_write(f, &iter, &pos, 0);
#else
	file_start_write(f);
	ret = vfs_iter_write(f, &iter, &pos, 0);
	file_end_write(f);
#endif
	return ret;
}

/* append the pages in cow->wvec[0..n) at file block blk with one write */
static int cow_write_run(struct dbd_cow *cow, unsigned int n, u64 blk)
{
	loff_t pos = blk * DBD_BLOCK_SIZE;
	struct file *f;
	ssize_t ret;

	if (!cow->filp)
		return -EAGAIN;
	f = cow_data_file(cow);
	cow_unprotect(cow);
	ret = cow_write_iter(f, cow->wvec, n, pos);
	if (f != cow->filp && ret != n * DBD_BLOCK_SIZE) {
		cow_drop_dio(cow, "write", ret);
		ret = cow_write_iter(cow->filp, cow->wvec, n, pos);
	}
	cow_protect(cow);
	if (ret < 0)
		return (int)ret;
	return ret == n * DBD_BLOCK_SIZE ? 0 : -EIO;
}

/*
 * Save the original contents of blocks (SPEC 2.5), in the order given:
 * nothing to do for a block whose entry is set already, else append at
 * fpos (growing the file with auto-expand when configured) and point the
 * entry at it.  Consecutive appends (up to DBD_COW_BATCH) are written
 * with one call.  On error, the blocks saved before it keep their entries.
 */
int dbd_cow_save_blocks(struct dbd_cow *cow, const u64 *blocks,
			struct page **pages, unsigned int n,
			struct dbd_dev *dev)
{
	unsigned int i = 0, j, len;
	u64 first_blk = 0, blk, *map;
	int err = 0, ret;

	mutex_lock(&cow->lock);
	while (i < n && !err) {
		/* collect a run of appends (fpos only grows: contiguous) */
		for (len = 0; i < n && len < DBD_COW_BATCH; i++) {
			err = cow->filp ? cow_section(cow, blocks[i] /
						      DBD_SECTION_ENTRIES,
						      &map) : -EAGAIN;
			if (err)
				break;
			if (map[blocks[i] % DBD_SECTION_ENTRIES])
				continue;
			while ((err = dbd_cow_alloc_block(&cow->hdr.fpos,
							  cow->hdr.fsize,
							  &blk)) == -EFBIG) {
				if (!dev || dbd_dev_auto_expand_grow(dev, cow))
					break;
			}
			if (err) {
				dbd_err("cow file max size exceeded (%llu/%llu): %d",
					(unsigned long long)cow->hdr.fpos *
					DBD_BLOCK_SIZE,
					(unsigned long long)cow->hdr.fsize, err);
				break;
			}
			if (!len)
				first_blk = blk;
			cow->wblk[len] = blocks[i];
			cow->wvec[len].bv_page = pages[i];
			cow->wvec[len].bv_len = DBD_BLOCK_SIZE;
			cow->wvec[len++].bv_offset = 0;
		}
		if (!len)
			continue;
		ret = cow_write_run(cow, len, first_blk);
		if (ret) {
			dbd_err("error writing cow data: %d", ret);
			err = ret;
			break;
		}
		/* entries last: a section may have been evicted meanwhile */
		for (j = 0; j < len; j++) {
			ret = cow_section(cow, cow->wblk[j] /
					  DBD_SECTION_ENTRIES, &map);
			if (ret) {
				err = ret;
				break;
			}
			cow_set_entry(cow, map, cow->wblk[j], first_blk + j);
		}
	}
	mutex_unlock(&cow->lock);
	return err;
}

/*
 * Set a bit for every block whose index entry is non-zero.  A reloaded
 * snapshot's entries must point at saved data, [first_data_blk, fpos):
 * any other entry (a corrupt or crafted file) would make /dev/dattoN read
 * the header, the index or data appended later as that block (-EINVAL).
 */
int dbd_cow_scan(struct dbd_cow *cow, unsigned long *bitmap, u64 nbits)
{
	u64 s, i, *map;
	int ret = 0;

	for (s = 0; s < cow->geo.mem_sects && !ret; s++) {
		mutex_lock(&cow->lock);
		ret = cow_section(cow, s, &map);
		for (i = 0; !ret && i < DBD_SECTION_ENTRIES; i++) {
			u64 b = s * DBD_SECTION_ENTRIES + i;
			u64 v = le64_to_cpu(map[i]);

			if (b >= nbits || !v)
				continue;
			if (!dbd_index_entry_saved(v, &cow->geo, cow->hdr.fpos)) {
				ret = -EINVAL;
				dbd_err("cow file index entry of block %llu points outside the saved data (%llu): %d",
					(unsigned long long)b,
					(unsigned long long)v, ret);
				break;
			}
			set_bit(b, bitmap);
		}
		mutex_unlock(&cow->lock);
		cond_resched();
	}
	return ret;
}

/*
 * Set a bit for every device block holding the file's first fpos blocks
 * (header, index, saved data): all a snapshot's own writes went there.
 * Holes and unwritten (preallocated) extents map to 0 and are skipped.
 * fpos comes from the file: it is bounded by the file's size and by the
 * most a snapshot of this device can append (each block saved once).
 * Returns -EINVAL if the filesystem cannot map file blocks.
 */
int dbd_cow_map_used(struct dbd_cow *cow, unsigned long *bitmap, u64 nbits)
{
	unsigned int bits = cow->inode->i_blkbits;
	u64 used = min3(cow->hdr.fpos, cow->geo.first_data_blk + nbits,
			DIV_ROUND_UP((u64)i_size_read(cow->inode),
				     DBD_BLOCK_SIZE));
	u64 n, i, b;
	sector_t blk;
	int ret;

	if (bits < SECTOR_SHIFT || bits > PAGE_SHIFT)
		return -EINVAL;
	n = DIV_ROUND_UP(used * DBD_BLOCK_SIZE, 1ULL << bits);
	for (i = 0; i < n; i++) {
		blk = i;
		ret = bmap(cow->inode, &blk);
		if (ret)
			return ret;
		b = ((u64)blk << (bits - SECTOR_SHIFT)) / DBD_SECTORS_PER_BLOCK;
		if (blk && b < nbits)
			set_bit(b, bitmap);
		cond_resched();
	}
	return 0;
}

int dbd_cow_mark_changed(struct dbd_cow *cow, u64 first, u64 last)
{
	u64 b, *map = NULL;
	int ret = 0;

	mutex_lock(&cow->lock);
	if (!cow->filp)
		ret = -EAGAIN;
	for (b = first; b <= last && !ret; b++) {
		if (!map || b % DBD_SECTION_ENTRIES == 0) {
			ret = cow_section(cow, b / DBD_SECTION_ENTRIES, &map);
			if (ret)
				break;
		}
		cow_set_entry(cow, map, b, 1);
	}
	mutex_unlock(&cow->lock);
	return ret;
}

/*
 * Read n consecutive data blocks starting at data_blk into pages (one
 * block per page) with one read, bv being room for n bio_vecs; beyond the
 * end of the file reads zeros.
 */
int dbd_cow_read_blocks(struct dbd_cow *cow, u64 data_blk,
			struct page **pages, struct bio_vec *bv,
			unsigned int n)
{
	struct iov_iter iter;
	loff_t pos = data_blk * DBD_BLOCK_SIZE;
	unsigned int i;
	ssize_t ret;

	for (i = 0; i < n; i++) {
		bv[i].bv_page = pages[i];
		bv[i].bv_len = DBD_BLOCK_SIZE;
		bv[i].bv_offset = 0;
	}
	iov_iter_bvec(&iter, DBD_ITER_DEST, bv, n, n * DBD_BLOCK_SIZE);
	mutex_lock(&cow->lock);
	if (!cow->filp) {
		ret = -EAGAIN;
	} else {
		struct file *f = cow_data_file(cow);

		ret = vfs_iter_read(f, &iter, &pos, 0);
		if (f != cow->filp && ret == -EINVAL) {
			cow_drop_dio(cow, "read", ret);
			iov_iter_bvec(&iter, DBD_ITER_DEST, bv, n,
				      n * DBD_BLOCK_SIZE);
			ret = vfs_iter_read(cow->filp, &iter, &pos, 0);
		}
	}
	mutex_unlock(&cow->lock);
	if (ret < 0)
		return (int)ret;
	/* short read: past the end of the file (sparse tail) */
	iov_iter_zero(iov_iter_count(&iter), &iter);
	return 0;
}

/* caller holds cow->lock */
static int cow_expand_locked(struct dbd_cow *cow, u64 bytes)
{
	int ret;

	/* discarded by a device failure (or dormant) meanwhile */
	if (!cow->filp)
		return -EIO;
	ret = cow_allocate(cow, cow->hdr.fsize, bytes);
	if (ret)
		return ret;
	cow->hdr.fsize += bytes;
	return cow_write_header(cow);
}

int dbd_cow_expand(struct dbd_cow *cow, u64 bytes)
{
	int ret;

	mutex_lock(&cow->lock);
	ret = cow_expand_locked(cow, bytes);
	mutex_unlock(&cow->lock);
	return ret;
}

/* auto-expand step; called from dbd_cow_save_blocks with cow->lock held */
int dbd_dev_auto_expand_grow(struct dbd_dev *dev, struct dbd_cow *cow)
{
	struct kstatfs st;
	bool ok;
	u64 step = READ_ONCE(dev->step_mib);
	u64 reserved = READ_ONCE(dev->reserved_mib);

	if (!READ_ONCE(dev->has_auto_expand))
		return -EFBIG;
	ok = !vfs_statfs(&cow->filp->f_path, &st);
	if (!dbd_auto_expand_allowed(step, reserved, ok, ok ? st.f_bsize : 0,
				     ok ? st.f_bavail : 0))
		return -EFBIG;
	dbd_info("auto-expanding cow file by %llu MiB",
		 (unsigned long long)step);
	return cow_expand_locked(cow, dbd_mib_bytes(step)) ? -EFBIG : 0;
}

int dbd_cow_truncate_to_index(struct dbd_cow *cow)
{
	struct iattr attr = {
		.ia_valid = ATTR_SIZE,
		.ia_size = cow->geo.data_offset,
	};
	int ret;

	mutex_lock(&cow->lock);
	if (!cow->filp) {
		/* discarded by a device failure meanwhile */
		mutex_unlock(&cow->lock);
		return -EIO;
	}
	cow_close_dio(cow);	/* no data appends any more */
	cow->index_only = true;
	cow->hdr.flags |= DBD_FLAG_INDEX_ONLY;
	cow->hdr.fsize = cow->geo.data_offset;
	cow_unprotect(cow);
	/* a size change is a write: freeze protection first, then the inode */
	file_start_write(cow->filp);
	inode_lock(cow->inode);
	ret = dbd_notify_change(cow->filp, &attr);
	inode_unlock(cow->inode);
	file_end_write(cow->filp);
	cow_protect(cow);
	mutex_unlock(&cow->lock);
	if (ret)
		dbd_warn("error truncating cow file, incremental will use more disk space than needed: %d",
			 ret);
	return ret;
}

int dbd_cow_sync(struct dbd_cow *cow, bool clean)
{
	u64 s;
	int ret = 0;

	mutex_lock(&cow->lock);
	for (s = 0; s < cow->geo.total_sects && !ret; s++)
		ret = cow_write_section(cow, s);
	if (!ret) {
		if (clean)
			cow->hdr.flags |= DBD_FLAG_CLEAN;
		ret = cow_write_header(cow);
	}
	if (!ret)
		ret = cow_fsync(cow);
	if (ret && clean && cow->filp) {
		/* never a CLEAN header over an index that is not on disk */
		cow->hdr.flags &= ~DBD_FLAG_CLEAN;
		if (!cow_write_header(cow))
			cow_fsync(cow);
	}
	mutex_unlock(&cow->lock);
	return ret;
}

static int cow_unlink(struct dbd_cow *cow)
{
	struct dentry *dentry = cow->filp->f_path.dentry;
	struct vfsmount *mnt = cow->filp->f_path.mnt;
	struct dentry *dir;
	int ret;

	ret = mnt_want_write(mnt);
	if (ret)
		return ret;
	dget(dentry);
	dir = dget_parent(dentry);
	inode_lock_nested(d_inode(dir), I_MUTEX_PARENT);
	if (dentry->d_parent == dir && !d_unhashed(dentry) &&
	    d_is_positive(dentry)) {
		cow_unprotect(cow);
		ret = dbd_vfs_unlink(d_inode(dir), dentry);
	}
	inode_unlock(d_inode(dir));
	dput(dir);
	dput(dentry);
	mnt_drop_write(mnt);
	return ret;
}

void dbd_cow_close(struct dbd_cow *cow, bool unlink)
{
	int ret;

	if (cow->filp) {
		if (unlink && !cow->unlinked) {
			ret = cow_unlink(cow);
			if (ret)
				dbd_warn("error unlinking cow file: %d", ret);
		}
		cow_unprotect(cow);
		if (cow->dfilp)
			filp_close(cow->dfilp, NULL);
		filp_close(cow->filp, NULL);
		cow->filp = NULL;
		cow->inode = NULL;
		WRITE_ONCE(cow->mapping, NULL);
	}
	cow_free_sections(cow);
	kfree(cow);
}

/*
 * Failure (SPEC 3.4): remove the file and close it now, so that it neither
 * takes space nor keeps the filesystem busy.  Nothing reads or writes a
 * failed device's file any more.
 */
void dbd_cow_discard(struct dbd_cow *cow)
{
	int ret;

	mutex_lock(&cow->lock);
	if (cow->filp) {
		if (!cow->unlinked) {
			ret = cow_unlink(cow);
			if (ret)
				dbd_warn("error unlinking cow file: %d", ret);
			cow->unlinked = true;
		}
		cow_unprotect(cow);
		cow_close_dio(cow);
		cow_close_sync(cow->filp);
		WRITE_ONCE(cow->filp, NULL);
		cow->inode = NULL;
		WRITE_ONCE(cow->mapping, NULL);
	}
	mutex_unlock(&cow->lock);
}

/*
 * Is this a page-cache page of the COW file?  Only compares pointers: a
 * bio page may be a slab, vmalloc or movable page whose ->mapping is not
 * an address_space, so it must never be dereferenced.
 */
bool dbd_cow_owns_page(struct dbd_cow *cow, struct page *page)
{
	struct address_space *mapping = READ_ONCE(cow->mapping);

	return mapping && READ_ONCE(page_folio(page)->mapping) == mapping;
}

/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dattobd-ts core: the decision logic of the driver that does not need the
 * kernel.  Pure functions over plain structs; errors are returned as
 * negative errno values (0 = success).  The same files are compiled into
 * dattobd.ko and, in userspace, into the unit tests and the node addon
 * that compares them with the TypeScript emulator.
 *
 * Units: sectors are 512 bytes, blocks are 4096 bytes (COW_BLOCK_SIZE),
 * a section is 4096 index entries (16 MiB of volume, 32 KiB of index).
 */
#ifndef DBD_CORE_H
#define DBD_CORE_H

#include "dbd_shim.h"

#define DBD_SECTOR_SHIFT 9
#define DBD_BLOCK_SHIFT 12
#define DBD_BLOCK_SIZE 4096u
#define DBD_SECTORS_PER_BLOCK 8u
#define DBD_SECTION_ENTRIES 4096u
#define DBD_SECTION_BYTES (DBD_SECTION_ENTRIES * 8u)
#define DBD_HEADER_BYTES 4096u
#define DBD_HEADER_USED 64u
#define DBD_COW_MAGIC 4776u
#define DBD_MIB 1048576ull
/*
 * Largest size in MiB a size argument stands for: its bytes still fit a
 * loff_t.  Larger requests saturate here (dbd_mib_bytes), so that
 * fallocate refuses them (EFBIG) instead of a wrapped, small product.
 */
#define DBD_MAX_COW_MIB ((1ull << 43) - 1)
/* bytes of one in-memory section descriptor, as in the established driver */
#define DBD_SECTION_DESC_BYTES 24u

/* header flag bits (values, not bit numbers) */
#define DBD_FLAG_CLEAN (1u << 0)
#define DBD_FLAG_INDEX_ONLY (1u << 1)
#define DBD_FLAG_VMALLOC_UPPER (1u << 2)

/* state bits (SPEC section 3.1) */
#define DBD_STATE_SNAPSHOT (1ul << 0)
#define DBD_STATE_ACTIVE (1ul << 1)
#define DBD_STATE_UNVERIFIED (1ul << 2)

#define DBD_DEFAULT_CACHE_BYTES 314572800ul
#define DBD_DEFAULT_FALLOC_PERCENT 10u
#define DBD_DEFAULT_MAX_DEVICES 24u
#define DBD_HARD_MAX_DEVICES 255u

/* ---------------------------------------------------------------------- */
/* COW geometry (SPEC 2.1, 2.6, 2.12)                                      */

struct dbd_geometry {
	u64 size_sectors;	/* traced partition size in sectors */
	u64 nblocks;		/* floor(size_sectors / 8): on-disk formula */
	u64 total_sects;	/* ceil(nblocks / 4096) index sections */
	u64 index_bytes;	/* total_sects * 32768 */
	u64 data_offset;	/* 4096 + index_bytes */
	u64 first_data_blk;	/* data_offset / 4096 */
	/*
	 * Sections the in-memory index must have so that every block the
	 * device can address (ceil(size_sectors / 8)) is in bounds: one more
	 * than total_sects when the partial last block starts a new section
	 * (pitfall P14).  Never written to disk.
	 */
	u64 mem_sects;
};

void dbd_geometry_init(struct dbd_geometry *g, u64 size_sectors);

/* Default COW file size in bytes: size * percent / 100 (exact bytes). */
u64 dbd_default_cow_bytes(u64 size_sectors, unsigned int percent);
/* mib * 1 MiB, saturated at DBD_MAX_COW_MIB */
u64 dbd_mib_bytes(u64 mib);

/*
 * COW file size for setup / transition: fallocated_mib != 0 gives
 * fallocated_mib MiB, else the default percentage.  *remembered_mib gets
 * the "falloc MB" the driver remembers (floor(bytes / 1 MiB)).
 */
u64 dbd_cow_file_bytes(u64 size_sectors, u64 fallocated_mib,
		       unsigned int percent, u64 *remembered_mib);

/* Index sections that may be resident for a given cache size in bytes. */
u64 dbd_cache_sections_allowed(u64 cache_bytes, u64 total_sects);

/*
 * Blocks touched by a sector range (partition-relative):
 * first = floor(start / 8), last = ceil((start + nr) / 8) - 1.
 * Returns -EINVAL for an empty range.
 */
int dbd_block_range(u64 start_sect, u64 nr_sects, u64 *first, u64 *last);

/* ---------------------------------------------------------------------- */
/* COW data append rule (SPEC 2.5)                                         */

/*
 * Allocate the next data block: on success *blk = fpos and fpos is
 * advanced.  -EFBIG when fpos * 4096 >= fsize (the caller may grow the
 * file and retry).
 */
int dbd_cow_alloc_block(u64 *fpos, u64 fsize, u64 *blk);

/*
 * Auto-expand decision (SPEC 2.9): grow by step_mib when
 * ceil((step + reserved) MiB / f_bsize) <= f_bavail; if statfs failed,
 * only when reserved_mib == 0.  step_mib == 0 never grows.
 */
bool dbd_auto_expand_allowed(u64 step_mib, u64 reserved_mib, bool statfs_ok,
			     u64 f_bsize, u64 f_bavail);

/* ---------------------------------------------------------------------- */
/* Header and index encoding (SPEC 2.2, 2.4, 2.10)                         */

struct dbd_header {
	u32 magic;
	u32 flags;
	u64 fpos;
	u64 fsize;
	u64 seqid;
	u8 uuid[16];
	u64 version;
	u64 nr_changed_blocks;
};

/* Encode into / decode from the 64 little-endian bytes at file offset 0. */
void dbd_header_encode(const struct dbd_header *h, u8 out[DBD_HEADER_USED]);
void dbd_header_decode(const u8 in[DBD_HEADER_USED], struct dbd_header *h);

/*
 * Checks for reload (unverified -> active) and reopen (dormant -> active):
 * magic, CLEAN set, INDEX_ONLY equal to index_only.  -EINVAL otherwise.
 */
int dbd_header_check_reload(const struct dbd_header *h, bool index_only);

/*
 * Further reload / reopen checks of a header against the device geometry
 * and the file's size (file_bytes), so that a crafted or stale header can
 * neither make appends land on the header or the index nor point entries
 * past the end of the file: the index must be in the file; for a snapshot
 * (not index_only) first_data_blk <= fpos <= ceil(fsize / 4096) and
 * fpos * 4096 <= file_bytes.  -EINVAL otherwise.
 */
int dbd_header_check_layout(const struct dbd_header *h,
			    const struct dbd_geometry *g, bool index_only,
			    u64 file_bytes);

/* One index entry: little-endian u64 at 4096 + 8 * block. */
void dbd_index_entry_encode(u64 value, u8 out[8]);
u64 dbd_index_entry_decode(const u8 in[8]);
u64 dbd_index_entry_offset(u64 block);

/*
 * A snapshot file's non-zero index entry must point at saved data:
 * first_data_blk <= value < fpos.  Anything else (a corrupt or crafted
 * file) would read the header, the index or later data as the block.
 */
bool dbd_index_entry_saved(u64 value, const struct dbd_geometry *g, u64 fpos);

/* ---------------------------------------------------------------------- */
/* ioctl argument checks (SPEC 1.4, 3.3)                                   */

enum dbd_cmd {
	DBD_CMD_SETUP_SNAP = 1,
	DBD_CMD_RELOAD_SNAP,
	DBD_CMD_RELOAD_INC,
	DBD_CMD_DESTROY,
	DBD_CMD_TRANSITION_INC,
	DBD_CMD_TRANSITION_SNAP,
	DBD_CMD_RECONFIGURE,
	DBD_CMD_INFO,
	DBD_CMD_GET_FREE,
	DBD_CMD_EXPAND_COW_FILE,
	DBD_CMD_RECONFIGURE_AUTO_EXPAND,
};

/* What the check needs to know about one minor slot. */
struct dbd_minor_view {
	bool exists;
	bool busy;		/* /dev/dattoN open */
	int fail_code;		/* 0 or negative errno */
	unsigned long state;	/* DBD_STATE_* bits */
};

/*
 * Validate a command against a minor: range -> existence -> busy ->
 * failed -> state.  Returns 0 when the command may proceed.
 */
int dbd_check_cmd(enum dbd_cmd cmd, unsigned int minor,
		  unsigned int max_devices, const struct dbd_minor_view *v);

/* Effective max_snap_devices for a module parameter value (0 -> 24). */
unsigned int dbd_max_devices(unsigned int param);

/* ---------------------------------------------------------------------- */
/* State machine (SPEC 3.2)                                                */

enum dbd_event {
	DBD_EV_SETUP,		/* SETUP_SNAP */
	DBD_EV_RELOAD_SNAP,
	DBD_EV_RELOAD_INC,
	DBD_EV_TRANSITION_INC,
	DBD_EV_TRANSITION_SNAP,
	DBD_EV_MOUNT_RW,	/* rw mount / remount-rw of the bdev */
	DBD_EV_UMOUNT,		/* umount / remount-ro of the cow mount */
	DBD_EV_UMOUNT_FAILED,	/* the umount syscall itself failed */
};

/*
 * Next state for an event.  For SETUP/RELOAD_* `state` is ignored (no
 * device yet).  Returns -EINVAL when the event does not apply.
 */
int dbd_state_next(unsigned long state, enum dbd_event ev,
		   unsigned long *next);

/* ---------------------------------------------------------------------- */
/* /proc/datto-info (SPEC 4.1)                                             */

/*
 * Escape a string for a JSON string literal (without the quotes): '"',
 * '\\' and control characters are escaped, valid UTF-8 passes through,
 * bytes that are not valid UTF-8 become \u00XX.  Writes at most size
 * bytes including the NUL; returns the length the full escape needs
 * (excluding the NUL), like snprintf.
 */
size_t dbd_json_escape(char *dst, size_t size, const char *src);

struct dbd_proc_dev {
	unsigned int minor;
	const char *cow_file;
	const char *block_device;
	u64 max_cache;
	bool unverified;
	bool has_cow;		/* a COW manager exists */
	u64 fallocate_bytes;	/* remembered falloc MiB * 1 MiB */
	u64 cow_size_current;
	u64 seq_id;
	u8 uuid[16];
	u64 version;
	u64 nr_changed_blocks;
	bool has_auto_expand;
	u64 step_size_mib;
	u64 reserved_space_mib;
	int error;		/* 0 or negative errno */
	unsigned long state;
};

/*
 * Format pieces of the /proc file.  Each returns the length the full
 * text needs (excluding NUL) and writes at most size bytes, like
 * snprintf.  The file is: head, then for each device (ascending minor)
 * dev(first = lowest), then tail.
 */
size_t dbd_proc_head(char *buf, size_t size);
size_t dbd_proc_dev(char *buf, size_t size, const struct dbd_proc_dev *d,
		    bool first);
size_t dbd_proc_tail(char *buf, size_t size);

#endif /* DBD_CORE_H */

// SPDX-License-Identifier: GPL-2.0-only
/*
 * The 64-byte COW header and index entries, little-endian on disk.
 */
#include "dbd_core.h"

static void put_le32(u8 *p, u32 v)
{
	int i;

	for (i = 0; i < 4; i++)
		p[i] = (u8)(v >> (8 * i));
}

static void put_le64(u8 *p, u64 v)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (u8)(v >> (8 * i));
}

static u32 get_le32(const u8 *p)
{
	u32 v = 0;
	int i;

	for (i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static u64 get_le64(const u8 *p)
{
	u64 v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

void dbd_header_encode(const struct dbd_header *h, u8 out[DBD_HEADER_USED])
{
	put_le32(out + 0x00, h->magic);
	put_le32(out + 0x04, h->flags);
	put_le64(out + 0x08, h->fpos);
	put_le64(out + 0x10, h->fsize);
	put_le64(out + 0x18, h->seqid);
	memcpy(out + 0x20, h->uuid, sizeof(h->uuid));
	put_le64(out + 0x30, h->version);
	put_le64(out + 0x38, h->nr_changed_blocks);
}

void dbd_header_decode(const u8 in[DBD_HEADER_USED], struct dbd_header *h)
{
	h->magic = get_le32(in + 0x00);
	h->flags = get_le32(in + 0x04);
	h->fpos = get_le64(in + 0x08);
	h->fsize = get_le64(in + 0x10);
	h->seqid = get_le64(in + 0x18);
	memcpy(h->uuid, in + 0x20, sizeof(h->uuid));
	h->version = get_le64(in + 0x30);
	h->nr_changed_blocks = get_le64(in + 0x38);
}

int dbd_header_check_reload(const struct dbd_header *h, bool index_only)
{
	bool file_index_only = (h->flags & DBD_FLAG_INDEX_ONLY) != 0;

	if (h->magic != DBD_COW_MAGIC)
		return -EINVAL;
	if (!(h->flags & DBD_FLAG_CLEAN))
		return -EINVAL;
	if (file_index_only != index_only)
		return -EINVAL;
	return 0;
}

int dbd_header_check_layout(const struct dbd_header *h,
			    const struct dbd_geometry *g, bool index_only,
			    u64 file_bytes)
{
	u64 max_fpos = h->fsize / DBD_BLOCK_SIZE +
		       (h->fsize % DBD_BLOCK_SIZE ? 1 : 0);

	if (file_bytes < g->data_offset)
		return -EINVAL;	/* the index is cut short */
	if (index_only)
		return 0;	/* no appends, fpos is not used */
	if (h->fpos < g->first_data_blk)
		return -EINVAL;	/* appends would overwrite the index */
	if (h->fpos > max_fpos)
		return -EINVAL;	/* past what the file ever had room for */
	if (h->fpos > file_bytes / DBD_BLOCK_SIZE)
		return -EINVAL;	/* saved data is missing from the file */
	return 0;
}

void dbd_index_entry_encode(u64 value, u8 out[8])
{
	put_le64(out, value);
}

u64 dbd_index_entry_decode(const u8 in[8])
{
	return get_le64(in);
}

bool dbd_index_entry_saved(u64 value, const struct dbd_geometry *g, u64 fpos)
{
	return value >= g->first_data_blk && value < fpos;
}

u64 dbd_index_entry_offset(u64 block)
{
	return DBD_HEADER_BYTES + 8 * block;
}

// SPDX-License-Identifier: GPL-2.0-only
/*
 * COW file geometry, sizes, cache allowance and the data append rule.
 */
#include "dbd_core.h"

static u64 div_round_up_u64(u64 n, u64 d)
{
	return n / d + (n % d ? 1 : 0);
}

void dbd_geometry_init(struct dbd_geometry *g, u64 size_sectors)
{
	u64 addressable = div_round_up_u64(size_sectors, DBD_SECTORS_PER_BLOCK);

	g->size_sectors = size_sectors;
	g->nblocks = size_sectors / DBD_SECTORS_PER_BLOCK;
	g->total_sects = div_round_up_u64(g->nblocks, DBD_SECTION_ENTRIES);
	g->index_bytes = g->total_sects * DBD_SECTION_BYTES;
	g->data_offset = DBD_HEADER_BYTES + g->index_bytes;
	g->first_data_blk = g->data_offset / DBD_BLOCK_SIZE;
	g->mem_sects = div_round_up_u64(addressable, DBD_SECTION_ENTRIES);
	if (g->mem_sects < g->total_sects)
		g->mem_sects = g->total_sects;
}

u64 dbd_default_cow_bytes(u64 size_sectors, unsigned int percent)
{
	u64 bytes = size_sectors * 512u;

	/* split to avoid overflow for huge volumes: (a*q + r) * p / 100 */
	return (bytes / 100u) * percent + (bytes % 100u) * percent / 100u;
}

u64 dbd_mib_bytes(u64 mib)
{
	return (mib > DBD_MAX_COW_MIB ? DBD_MAX_COW_MIB : mib) * DBD_MIB;
}

u64 dbd_cow_file_bytes(u64 size_sectors, u64 fallocated_mib,
		       unsigned int percent, u64 *remembered_mib)
{
	u64 bytes;

	if (fallocated_mib)
		bytes = dbd_mib_bytes(fallocated_mib);
	else
		bytes = dbd_default_cow_bytes(size_sectors, percent);
	if (remembered_mib)
		*remembered_mib = bytes / DBD_MIB;
	return bytes;
}

u64 dbd_cache_sections_allowed(u64 cache_bytes, u64 total_sects)
{
	u64 desc = total_sects * DBD_SECTION_DESC_BYTES;

	if (cache_bytes <= desc)
		return 0;
	return (cache_bytes - desc) / DBD_SECTION_BYTES;
}

int dbd_block_range(u64 start_sect, u64 nr_sects, u64 *first, u64 *last)
{
	u64 end = start_sect + nr_sects;

	if (!nr_sects || end < start_sect)
		return -EINVAL;
	*first = start_sect / DBD_SECTORS_PER_BLOCK;
	*last = div_round_up_u64(end, DBD_SECTORS_PER_BLOCK) - 1;
	return 0;
}

int dbd_cow_alloc_block(u64 *fpos, u64 fsize, u64 *blk)
{
	/* compare in blocks so that fpos * 4096 cannot overflow */
	if (*fpos >= fsize / DBD_BLOCK_SIZE + (fsize % DBD_BLOCK_SIZE ? 1 : 0))
		return -EFBIG;
	*blk = (*fpos)++;
	return 0;
}

bool dbd_auto_expand_allowed(u64 step_mib, u64 reserved_mib, bool statfs_ok,
			     u64 f_bsize, u64 f_bavail)
{
	u64 need, mib = step_mib + reserved_mib;

	if (mib < step_mib)
		mib = DBD_MAX_COW_MIB;
	if (!step_mib)
		return false;
	if (!statfs_ok)
		return reserved_mib == 0;
	if (!f_bsize)
		return false;
	need = div_round_up_u64(dbd_mib_bytes(mib), f_bsize);
	return need <= f_bavail;
}

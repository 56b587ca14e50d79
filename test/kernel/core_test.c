// SPDX-License-Identifier: GPL-2.0-only
/*
 * Userspace test of kernel/core: built with -Wall -Wextra -Werror by
 * core-build.test.ts.  Prints one line per failed check and exits 1 if
 * any failed.
 */
#include <stdlib.h>
#include "dbd_core.h"

static int failures;

#define CHECK(cond) do { \
	if (!(cond)) { \
		printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
		failures++; \
	} \
} while (0)

static void test_geometry(void)
{
	struct dbd_geometry g;
	u64 mib = 0;
	u64 first, last, fpos, blk;

	/* SPEC 2.13: a 256 MiB volume */
	dbd_geometry_init(&g, 524288);
	CHECK(g.nblocks == 65536);
	CHECK(g.total_sects == 16);
	CHECK(g.index_bytes == 524288);
	CHECK(g.data_offset == 528384);
	CHECK(g.first_data_blk == 129);
	CHECK(g.mem_sects == 16);
	CHECK(dbd_cow_file_bytes(524288, 0, 10, &mib) == 26843545);
	CHECK(mib == 25);
	CHECK(dbd_cow_file_bytes(524288, 50, 10, &mib) == 52428800);
	CHECK(mib == 50);
	CHECK((52428800 - g.data_offset) / 4096 == 12671);

	/* P14: 4096 full blocks + 3 sectors needs one extra in-memory section */
	dbd_geometry_init(&g, 4096ull * 8 + 3);
	CHECK(g.total_sects == 1);
	CHECK(g.mem_sects == 2);

	CHECK(dbd_cache_sections_allowed(314572800, 16) == 9599);
	CHECK(dbd_cache_sections_allowed(100, 16) == 0);

	CHECK(dbd_block_range(0, 1, &first, &last) == 0 && first == 0 &&
	      last == 0);
	CHECK(dbd_block_range(7, 2, &first, &last) == 0 && first == 0 &&
	      last == 1);
	CHECK(dbd_block_range(8, 8, &first, &last) == 0 && first == 1 &&
	      last == 1);
	CHECK(dbd_block_range(8, 0, &first, &last) == -EINVAL);

	fpos = 129;
	CHECK(dbd_cow_alloc_block(&fpos, 129 * 4096 + 4096, &blk) == 0);
	CHECK(blk == 129 && fpos == 130);
	CHECK(dbd_cow_alloc_block(&fpos, 129 * 4096 + 4096, &blk) == -EFBIG);
	CHECK(fpos == 130);
	/* fsize < data_offset: the very first COW fails */
	fpos = 129;
	CHECK(dbd_cow_alloc_block(&fpos, 4096, &blk) == -EFBIG);

	CHECK(dbd_auto_expand_allowed(100, 2, true, 4096, 26112));
	CHECK(!dbd_auto_expand_allowed(100, 2, true, 4096, 26111));
	CHECK(dbd_auto_expand_allowed(100, 0, false, 0, 0));
	CHECK(!dbd_auto_expand_allowed(100, 1, false, 0, 0));
	CHECK(!dbd_auto_expand_allowed(0, 0, true, 4096, 1u << 30));
}

static void test_header(void)
{
	struct dbd_header h = { 0 }, d;
	u8 buf[DBD_HEADER_USED];
	u8 e[8];
	int i;

	h.magic = DBD_COW_MAGIC;
	h.flags = DBD_FLAG_CLEAN | DBD_FLAG_INDEX_ONLY;
	h.fpos = 129;
	h.fsize = 528384;
	h.seqid = 2;
	for (i = 0; i < 16; i++)
		h.uuid[i] = (u8)(0xa0 + i);
	h.version = 1;
	h.nr_changed_blocks = 0x0102030405060708ull;
	dbd_header_encode(&h, buf);
	CHECK(buf[0] == 0xa8 && buf[1] == 0x12 && buf[2] == 0 && buf[3] == 0);
	CHECK(buf[4] == 3);
	CHECK(buf[8] == 129 && buf[9] == 0);
	CHECK(buf[0x10] == 0x00 && buf[0x11] == 0x10 && buf[0x12] == 0x08);
	CHECK(buf[0x18] == 2);
	CHECK(buf[0x20] == 0xa0 && buf[0x2f] == 0xaf);
	CHECK(buf[0x30] == 1);
	CHECK(buf[0x38] == 0x08 && buf[0x3f] == 0x01);
	dbd_header_decode(buf, &d);
	CHECK(memcmp(&h, &d, sizeof(h)) == 0);

	CHECK(dbd_header_check_reload(&d, true) == 0);
	CHECK(dbd_header_check_reload(&d, false) == -EINVAL);
	d.flags = DBD_FLAG_INDEX_ONLY;
	CHECK(dbd_header_check_reload(&d, true) == -EINVAL);
	d.flags = DBD_FLAG_CLEAN | DBD_FLAG_VMALLOC_UPPER;
	CHECK(dbd_header_check_reload(&d, false) == 0);
	d.magic = 4777;
	CHECK(dbd_header_check_reload(&d, false) == -EINVAL);

	dbd_index_entry_encode(300, e);
	CHECK(e[0] == 44 && e[1] == 1 && e[7] == 0);
	CHECK(dbd_index_entry_decode(e) == 300);
	CHECK(dbd_index_entry_offset(4096) == 4096 + 32768);
}

static void test_checks(void)
{
	struct dbd_minor_view none = { false, false, 0, 0 };
	struct dbd_minor_view v = { true, false, 0, 0 };
	unsigned long st, next;
	int cmd;

	CHECK(dbd_max_devices(0) == 24);
	CHECK(dbd_max_devices(300) == 255);
	CHECK(dbd_max_devices(7) == 7);

	/* range first, for every command but GET_FREE */
	for (cmd = DBD_CMD_SETUP_SNAP; cmd <= DBD_CMD_RECONFIGURE_AUTO_EXPAND;
	     cmd++) {
		if (cmd == DBD_CMD_GET_FREE)
			continue;
		CHECK(dbd_check_cmd(cmd, 24, 24, &v) == -EINVAL);
	}
	CHECK(dbd_check_cmd(DBD_CMD_SETUP_SNAP, 0, 24, &none) == 0);
	CHECK(dbd_check_cmd(DBD_CMD_RELOAD_INC, 0, 24, &v) == -EBUSY);
	CHECK(dbd_check_cmd(DBD_CMD_DESTROY, 0, 24, &none) == -ENOENT);
	CHECK(dbd_check_cmd(DBD_CMD_INFO, 0, 24, &none) == -ENOENT);
	CHECK(dbd_check_cmd(DBD_CMD_EXPAND_COW_FILE, 0, 24, &none) == -ENOENT);

	/* SPEC 3.3 matrix for states 0..5 */
	for (st = 0; st <= 5; st++) {
		v.state = st;
		v.busy = false;
		v.fail_code = 0;
		CHECK(dbd_check_cmd(DBD_CMD_DESTROY, 0, 24, &v) == 0);
		CHECK(dbd_check_cmd(DBD_CMD_TRANSITION_INC, 0, 24, &v) ==
		      (st == 3 ? 0 : -EINVAL));
		CHECK(dbd_check_cmd(DBD_CMD_TRANSITION_SNAP, 0, 24, &v) ==
		      (st == 2 ? 0 : -EINVAL));
		CHECK(dbd_check_cmd(DBD_CMD_RECONFIGURE, 0, 24, &v) == 0);
		CHECK(dbd_check_cmd(DBD_CMD_INFO, 0, 24, &v) == 0);
		CHECK(dbd_check_cmd(DBD_CMD_EXPAND_COW_FILE, 0, 24, &v) ==
		      (st == 3 ? 0 : -EINVAL));
		CHECK(dbd_check_cmd(DBD_CMD_RECONFIGURE_AUTO_EXPAND, 0, 24,
				    &v) == (st == 3 ? 0 : -EINVAL));
		CHECK(dbd_check_cmd(DBD_CMD_SETUP_SNAP, 0, 24, &v) == -EBUSY);

		v.fail_code = -27;
		CHECK(dbd_check_cmd(DBD_CMD_DESTROY, 0, 24, &v) == 0);
		CHECK(dbd_check_cmd(DBD_CMD_TRANSITION_INC, 0, 24, &v) ==
		      -EINVAL);
		CHECK(dbd_check_cmd(DBD_CMD_RECONFIGURE, 0, 24, &v) == -EINVAL);
		CHECK(dbd_check_cmd(DBD_CMD_INFO, 0, 24, &v) == 0);
		CHECK(dbd_check_cmd(DBD_CMD_EXPAND_COW_FILE, 0, 24, &v) ==
		      -EINVAL);

		/* busy beats failed */
		v.busy = true;
		CHECK(dbd_check_cmd(DBD_CMD_DESTROY, 0, 24, &v) == -EBUSY);
		CHECK(dbd_check_cmd(DBD_CMD_TRANSITION_INC, 0, 24, &v) ==
		      -EBUSY);
		CHECK(dbd_check_cmd(DBD_CMD_RECONFIGURE, 0, 24, &v) == -EBUSY);
		CHECK(dbd_check_cmd(DBD_CMD_INFO, 0, 24, &v) == 0);
		/* expand allows busy, then fails on the fail code */
		CHECK(dbd_check_cmd(DBD_CMD_EXPAND_COW_FILE, 0, 24, &v) ==
		      -EINVAL);
		v.fail_code = 0;
		CHECK(dbd_check_cmd(DBD_CMD_EXPAND_COW_FILE, 0, 24, &v) ==
		      (st == 3 ? 0 : -EINVAL));
	}

	CHECK(dbd_state_next(0, DBD_EV_SETUP, &next) == 0 && next == 3);
	CHECK(dbd_state_next(0, DBD_EV_RELOAD_SNAP, &next) == 0 && next == 5);
	CHECK(dbd_state_next(0, DBD_EV_RELOAD_INC, &next) == 0 && next == 4);
	CHECK(dbd_state_next(3, DBD_EV_TRANSITION_INC, &next) == 0 &&
	      next == 2);
	CHECK(dbd_state_next(2, DBD_EV_TRANSITION_INC, &next) == -EINVAL);
	CHECK(dbd_state_next(2, DBD_EV_TRANSITION_SNAP, &next) == 0 &&
	      next == 3);
	CHECK(dbd_state_next(5, DBD_EV_MOUNT_RW, &next) == 0 && next == 3);
	CHECK(dbd_state_next(4, DBD_EV_MOUNT_RW, &next) == 0 && next == 2);
	CHECK(dbd_state_next(1, DBD_EV_MOUNT_RW, &next) == 0 && next == 3);
	CHECK(dbd_state_next(0, DBD_EV_MOUNT_RW, &next) == 0 && next == 2);
	CHECK(dbd_state_next(3, DBD_EV_MOUNT_RW, &next) == -EINVAL);
	CHECK(dbd_state_next(3, DBD_EV_UMOUNT, &next) == 0 && next == 1);
	CHECK(dbd_state_next(2, DBD_EV_UMOUNT, &next) == 0 && next == 0);
	CHECK(dbd_state_next(5, DBD_EV_UMOUNT, &next) == -EINVAL);
	CHECK(dbd_state_next(1, DBD_EV_UMOUNT_FAILED, &next) == 0 &&
	      next == 3);
}

static void test_json(void)
{
	char buf[4096];
	size_t n;
	struct dbd_proc_dev d = { 0 };
	int i;

	n = dbd_json_escape(buf, sizeof(buf), "a\"b\\c\nd\x01\xc3\xa9\xff");
	CHECK(strcmp(buf, "a\\\"b\\\\c\\nd\\u0001\xc3\xa9\\u00ff") == 0);
	CHECK(n == strlen(buf));
	/* truncation still reports the full length and terminates */
	n = dbd_json_escape(buf, 4, "\"\"\"");
	CHECK(n == 6 && strlen(buf) == 3);

	n = dbd_proc_head(buf, sizeof(buf));
	n += dbd_proc_tail(buf + n, sizeof(buf) - n);
	CHECK(strcmp(buf, "{\n\t\"version\": \"0.12.1\",\n\t\"devices\": [\n"
		     "\n\t]\n}\n") == 0);

	d.minor = 1;
	d.cow_file = "/cow.snap";
	d.block_device = "/dev/loop0";
	d.max_cache = 314572800;
	d.has_cow = true;
	d.fallocate_bytes = 26214400;
	d.cow_size_current = 26843545;
	d.seq_id = 1;
	for (i = 0; i < 16; i++)
		d.uuid[i] = (u8)(i * 0x11);
	d.version = 1;
	d.nr_changed_blocks = 12;
	d.has_auto_expand = true;
	d.step_size_mib = 100;
	d.reserved_space_mib = 2;
	d.error = -27;
	d.state = 3;
	dbd_proc_dev(buf, sizeof(buf), &d, true);
	CHECK(strcmp(buf,
		     "\t\t{\n"
		     "\t\t\t\"minor\": 1,\n"
		     "\t\t\t\"cow_file\": \"/cow.snap\",\n"
		     "\t\t\t\"block_device\": \"/dev/loop0\",\n"
		     "\t\t\t\"max_cache\": 314572800,\n"
		     "\t\t\t\"fallocate\": 26214400,\n"
		     "\t\t\t\"cow_size_current\": 26843545,\n"
		     "\t\t\t\"seq_id\": 1,\n"
		     "\t\t\t\"uuid\": \"00112233445566778899aabbccddeeff\",\n"
		     "\t\t\t\"version\": 1,\n"
		     "\t\t\t\"nr_changed_blocks\": 12,\n"
		     "\t\t\t\"auto_expand\": {\n"
		     "\t\t\t\t\"step_size_mib\": 100,\n"
		     "\t\t\t\t\"reserved_space_mib\": 2\n"
		     "\t\t\t},\n"
		     "\t\t\t\"error\": -27,\n"
		     "\t\t\t\"state\": 3\n"
		     "\t\t}") == 0);

	/* unverified: no fallocate/cow fields; not first: leading ",\n" */
	memset(&d, 0, sizeof(d));
	d.minor = 4;
	d.cow_file = "/.da\"tto";
	d.block_device = "/dev/vdb";
	d.max_cache = 1;
	d.unverified = true;
	d.state = 5;
	dbd_proc_dev(buf, sizeof(buf), &d, false);
	CHECK(strcmp(buf,
		     ",\n\t\t{\n"
		     "\t\t\t\"minor\": 4,\n"
		     "\t\t\t\"cow_file\": \"/.da\\\"tto\",\n"
		     "\t\t\t\"block_device\": \"/dev/vdb\",\n"
		     "\t\t\t\"max_cache\": 1,\n"
		     "\t\t\t\"state\": 5\n"
		     "\t\t}") == 0);
}

int main(void)
{
	test_geometry();
	test_header();
	test_checks();
	test_json();
	if (failures) {
		printf("%d check(s) failed\n", failures);
		return 1;
	}
	printf("core ok\n");
	return 0;
}

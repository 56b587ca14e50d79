// SPDX-License-Identifier: GPL-2.0-only
/*
 * dattobd-ts: module entry, parameters, block major.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/blkdev.h>
#include "dbd.h"

int dbd_debug;
static int may_hook_syscalls = 1;
unsigned long dbd_cow_max_memory_default = DBD_DEFAULT_CACHE_BYTES;
unsigned int dbd_cow_fallocate_percentage_default = DBD_DEFAULT_FALLOC_PERCENT;
static unsigned int max_snap_devices = DBD_DEFAULT_MAX_DEVICES;
unsigned int dbd_max_snap_devices;
int dbd_major;
DEFINE_MUTEX(dbd_ctl_mutex);

module_param_named(debug, dbd_debug, int, 0644);
MODULE_PARM_DESC(debug, "enables debug logging");
module_param(may_hook_syscalls, int, 0444);
MODULE_PARM_DESC(may_hook_syscalls, "accepted for compatibility, no effect");
module_param_named(cow_max_memory_default, dbd_cow_max_memory_default, ulong,
		   0);
MODULE_PARM_DESC(cow_max_memory_default, "default index cache size (bytes)");
module_param_named(cow_fallocate_percentage_default,
		   dbd_cow_fallocate_percentage_default, uint, 0);
MODULE_PARM_DESC(cow_fallocate_percentage_default,
		 "default COW file size as a percentage of the volume");
module_param(max_snap_devices, uint, 0444);
MODULE_PARM_DESC(max_snap_devices, "number of minors (default 24, max 255)");

static int __init dbd_init(void)
{
	int ret;

	if (max_snap_devices > DBD_HARD_MAX_DEVICES)
		dbd_warn("max_snap_devices %u too large, using %u",
			 max_snap_devices, DBD_HARD_MAX_DEVICES);
	dbd_max_snap_devices = dbd_max_devices(max_snap_devices);
	max_snap_devices = dbd_max_snap_devices;

	dbd_major = register_blkdev(0, DATTO_BLKDEV_NAME);
	if (dbd_major < 0) {
		dbd_err("error registering block device: %d", dbd_major);
		return dbd_major;
	}
	ret = dbd_cow_init();
	if (ret)
		goto err_blk;
	ret = dbd_snap_init();
	if (ret)
		goto err_cow;
	ret = dbd_tracer_init();
	if (ret)
		goto err_snap;
	ret = dbd_proc_init();
	if (ret)
		goto err_tracer;
	ret = dbd_ctl_init();
	if (ret)
		goto err_proc;
	dbd_hooks_init();
	dbd_info("module loaded, %u minors", dbd_max_snap_devices);
	return 0;

err_proc:
	dbd_proc_exit();
err_tracer:
	dbd_tracer_exit();
err_snap:
	dbd_snap_exit();
err_cow:
	dbd_cow_exit();
err_blk:
	unregister_blkdev(dbd_major, DATTO_BLKDEV_NAME);
	return ret;
}

static void __exit dbd_exit(void)
{
	dbd_hooks_exit();
	dbd_ctl_exit();
	dbd_proc_exit();
	dbd_dev_exit_checks();
	mutex_lock(&dbd_ctl_mutex);
	dbd_dev_destroy_all();
	mutex_unlock(&dbd_ctl_mutex);
	dbd_tracer_exit();
	dbd_snap_exit();
	dbd_cow_exit();
	unregister_blkdev(dbd_major, DATTO_BLKDEV_NAME);
	dbd_info("module unloaded");
}

module_init(dbd_init);
module_exit(dbd_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("dattobd-ts authors");
MODULE_DESCRIPTION("Live point-in-time snapshots and incremental backups of block devices");
MODULE_VERSION(DATTOBD_VERSION);

// SPDX-License-Identifier: GPL-2.0-only
/*
 * ioctl-abuse: calls the dattobd ioctls with bad arguments and prints one
 * line "<case> <errno name or OK>" per call, for kernel-ioctl.vm.ts.
 *
 * Usage: ioctl-abuse <scratch-bdev> <unverified-minor>
 *   <unverified-minor> must hold an unverified (reloaded) device so that
 *   the info case can check that unfilled fields are returned unchanged.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../../kernel/include/uapi/dattobd.h"

static int ctl;

static const char *ename(int e)
{
	switch (e) {
	case 0: return "OK";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EINVAL: return "EINVAL";
	case ENOTTY: return "ENOTTY";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENOTBLK: return "ENOTBLK";
	default: return "OTHER";
	}
}

static void call(const char *name, unsigned long req, void *arg)
{
	int r = ioctl(ctl, req, arg);

	printf("%s %s\n", name, ename(r < 0 ? errno : 0));
}

int main(int argc, char **argv)
{
	void *bad = (void *)1;
	char *unmapped, *longpath, *maxpath;
	struct setup_params sp;
	struct reload_params rp;
	struct transition_snap_params tp;
	struct reconfigure_params cp;
	struct expand_cow_file_params ep;
	struct reconfigure_auto_expand_params ap;
	struct dattobd_info info;
	unsigned int minor;
	long pg = sysconf(_SC_PAGESIZE);

	if (argc != 3)
		return 100;
	ctl = open("/dev/datto-ctl", O_RDONLY);
	if (ctl < 0) {
		perror("open /dev/datto-ctl");
		return 101;
	}
	/* a string that runs into an unmapped page */
	unmapped = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(unmapped, 'a', 2 * pg);
	munmap(unmapped + pg, pg);
	longpath = malloc(5000);
	memset(longpath, 'a', 4999);
	longpath[4999] = 0;
	maxpath = malloc(4096);
	memset(maxpath, 'a', 4095);
	maxpath[4095] = 0;

	/* every command with an unreadable argument pointer */
	call("setup-badptr", IOCTL_SETUP_SNAP, bad);
	call("reload-snap-badptr", IOCTL_RELOAD_SNAP, bad);
	call("reload-inc-badptr", IOCTL_RELOAD_INC, bad);
	call("destroy-badptr", IOCTL_DESTROY, bad);
	call("transition-inc-badptr", IOCTL_TRANSITION_INC, bad);
	call("transition-snap-badptr", IOCTL_TRANSITION_SNAP, bad);
	call("reconfigure-badptr", IOCTL_RECONFIGURE, bad);
	call("info-badptr", IOCTL_DATTOBD_INFO, bad);
	call("get-free-badptr", IOCTL_GET_FREE, bad);
	call("expand-badptr", IOCTL_EXPAND_COW_FILE, bad);
	call("auto-expand-badptr", IOCTL_RECONFIGURE_AUTO_EXPAND, bad);
	call("unknown-cmd", _IOW(DATTO_IOCTL_MAGIC, 12, int), &minor);
	call("wrong-size-cmd", _IOW(DATTO_IOCTL_MAGIC, 1, int), &minor);

	/* path arguments */
	memset(&sp, 0, sizeof(sp));
	sp.bdev = NULL;
	sp.cow = "/tmp/x.cow";
	call("setup-null-bdev", IOCTL_SETUP_SNAP, &sp);
	sp.bdev = argv[1];
	sp.cow = NULL;
	call("setup-null-cow", IOCTL_SETUP_SNAP, &sp);
	sp.bdev = bad;
	sp.cow = "/tmp/x.cow";
	call("setup-bad-bdev-ptr", IOCTL_SETUP_SNAP, &sp);
	sp.bdev = argv[1];
	sp.cow = unmapped + pg - 10;
	call("setup-cow-runs-into-unmapped", IOCTL_SETUP_SNAP, &sp);
	sp.bdev = longpath;
	sp.cow = "/tmp/x.cow";
	call("setup-long-bdev", IOCTL_SETUP_SNAP, &sp);
	sp.bdev = maxpath;
	call("setup-4095-bdev", IOCTL_SETUP_SNAP, &sp);
	sp.bdev = argv[1];
	sp.minor = 24;
	call("setup-minor-24", IOCTL_SETUP_SNAP, &sp);
	sp.minor = 0xffffffffu;
	call("setup-minor-max", IOCTL_SETUP_SNAP, &sp);
	sp.minor = 0;
	sp.bdev = "/nonexistent-bdev";
	call("setup-missing-bdev", IOCTL_SETUP_SNAP, &sp);
	sp.bdev = "/tmp";
	call("setup-dir-bdev", IOCTL_SETUP_SNAP, &sp);
	sp.bdev = argv[1];
	call("setup-unmounted", IOCTL_SETUP_SNAP, &sp);

	memset(&rp, 0, sizeof(rp));
	rp.bdev = argv[1];
	rp.cow = longpath;
	call("reload-long-cow", IOCTL_RELOAD_SNAP, &rp);
	rp.cow = NULL;
	call("reload-null-cow", IOCTL_RELOAD_INC, &rp);

	memset(&tp, 0, sizeof(tp));
	tp.cow = NULL;
	call("transition-snap-null-cow", IOCTL_TRANSITION_SNAP, &tp);
	tp.cow = longpath;
	call("transition-snap-long-cow", IOCTL_TRANSITION_SNAP, &tp);
	tp.cow = "/tmp/y.cow";
	tp.minor = 30;
	call("transition-snap-minor-30", IOCTL_TRANSITION_SNAP, &tp);

	/* minors: out of range, absent, unverified state */
	minor = 24;
	call("destroy-minor-24", IOCTL_DESTROY, &minor);
	minor = 23;
	call("destroy-absent", IOCTL_DESTROY, &minor);
	call("transition-inc-absent", IOCTL_TRANSITION_INC, &minor);
	tp.minor = 23;
	call("transition-snap-absent", IOCTL_TRANSITION_SNAP, &tp);
	cp.cache_size = 0;
	cp.minor = 23;
	call("reconfigure-absent", IOCTL_RECONFIGURE, &cp);
	ep.size = 1;
	ep.minor = 23;
	call("expand-absent", IOCTL_EXPAND_COW_FILE, &ep);
	ap.step_size = 1;
	ap.reserved_space = 0;
	ap.minor = 23;
	call("auto-expand-absent", IOCTL_RECONFIGURE_AUTO_EXPAND, &ap);
	ap.minor = 99;
	call("auto-expand-minor-99", IOCTL_RECONFIGURE_AUTO_EXPAND, &ap);

	minor = (unsigned int)atoi(argv[2]);
	call("transition-inc-unverified", IOCTL_TRANSITION_INC, &minor);
	tp.minor = minor;
	call("transition-snap-unverified", IOCTL_TRANSITION_SNAP, &tp);
	ep.minor = minor;
	call("expand-unverified", IOCTL_EXPAND_COW_FILE, &ep);
	ap.minor = minor;
	call("auto-expand-unverified", IOCTL_RECONFIGURE_AUTO_EXPAND, &ap);
	cp.minor = minor;
	cp.cache_size = 12345;
	call("reconfigure-unverified", IOCTL_RECONFIGURE, &cp);
	rp.cow = "/.datto";
	rp.minor = minor;
	call("reload-busy-minor", IOCTL_RELOAD_SNAP, &rp);

	/* info of an unverified device: untouched fields come back as given */
	memset(&info, 0xaa, sizeof(info));
	info.minor = minor;
	call("info-unverified", IOCTL_DATTOBD_INFO, &info);
	printf("info-version-untouched %s\n",
	       info.version == 0xaaaaaaaaaaaaaaaaull ? "OK" : "CHANGED");
	printf("info-cache %lu\n", info.cache_size);
	printf("info-state %lu\n", info.state);
	printf("info-cow %s\n", info.cow);
	printf("info-falloc-zero %s\n", info.falloc_size == 0 ? "OK" : "NO");

	/* without CAP_SYS_ADMIN every command is EPERM, even on an open fd */
	if (setuid(65534) == 0) {
		call("nonroot-get-free", IOCTL_GET_FREE, &minor);
		call("nonroot-info", IOCTL_DATTOBD_INFO, &info);
		minor = 0;
		call("nonroot-destroy", IOCTL_DESTROY, &minor);
		call("nonroot-unknown", _IOW(DATTO_IOCTL_MAGIC, 12, int),
		     &minor);
	}
	return 0;
}

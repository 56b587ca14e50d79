// SPDX-License-Identifier: GPL-2.0-only
/*
 * dbd-ioctl: a tiny command-line front end to the dattobd ioctls, built from
 * kernel/include/uapi/dattobd.h, for VM tests that run before (or without)
 * the node binding.
 *
 * Usage: dbd-ioctl [-d /dev/datto-ctl] <command> [args]
 *   get-free
 *   info <minor>                                   (prints JSON)
 *   setup <minor> <bdev> <cow> [falloc_mib] [cache_bytes]
 *   reload-snap <minor> <bdev> <cow> [cache_bytes]
 *   reload-inc <minor> <bdev> <cow> [cache_bytes]
 *   destroy <minor>
 *   transition-inc <minor>
 *   transition-snap <minor> <cow> [falloc_mib]
 *   reconfigure <minor> <cache_bytes>
 *   expand <minor> <size_mib>
 *   auto-expand <minor> <step_mib> <reserved_mib>
 *   raw <nr>                                       (unknown-command probe)
 *
 * Success: exit 0, result on stdout. Failure of the ioctl: one line
 * "dbd-ioctl: <cmd>: <ERRNO_NAME> (<n>): <strerror>" on stderr and exit
 * status = errno (so callers can tell EINVAL from EBUSY). Usage errors exit 100.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../../../kernel/include/uapi/dattobd.h"

#define EXIT_USAGE 100

static const char *errno_name(int e)
{
	switch (e) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case E2BIG: return "E2BIG";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case EXDEV: return "EXDEV";
	case ENODEV: return "ENODEV";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL";
	case ENFILE: return "ENFILE";
	case EMFILE: return "EMFILE";
	case ENOTTY: return "ENOTTY";
	case EFBIG: return "EFBIG";
	case ENOSPC: return "ENOSPC";
	case EROFS: return "EROFS";
	case ERANGE: return "ERANGE";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENOSYS: return "ENOSYS";
	case ENOTBLK: return "ENOTBLK";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EINTR: return "EINTR";
	default: return "E?";
	}
}

static unsigned long long num(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *s == '\0' || *end != '\0' || *s == '-') {
		fprintf(stderr, "dbd-ioctl: bad number for %s: '%s'\n", what, s);
		exit(EXIT_USAGE);
	}
	return v;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: dbd-ioctl [-d ctl] get-free | info M | setup M BDEV COW [MiB] [cache]\n"
		"       | reload-snap M BDEV COW [cache] | reload-inc M BDEV COW [cache]\n"
		"       | destroy M | transition-inc M | transition-snap M COW [MiB]\n"
		"       | reconfigure M cache | expand M MiB | auto-expand M step reserved | raw NR\n");
	exit(EXIT_USAGE);
}

static void json_str(const char *s, size_t max)
{
	size_t i;

	putchar('"');
	for (i = 0; i < max && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_info(const struct dattobd_info *in)
{
	int i;

	printf("{\"minor\":%u,\"state\":%lu,\"error\":%d,\"cache_size\":%lu,"
	       "\"falloc_size\":%llu,\"seqid\":%llu,\"uuid\":\"",
	       in->minor, in->state, in->error, in->cache_size,
	       in->falloc_size, in->seqid);
	for (i = 0; i < COW_UUID_SIZE; i++)
		printf("%02x", (unsigned char)in->uuid[i]);
	printf("\",\"cow\":");
	json_str(in->cow, sizeof(in->cow));
	printf(",\"bdev\":");
	json_str(in->bdev, sizeof(in->bdev));
	printf(",\"version\":%llu,\"nr_changed_blocks\":%llu}\n",
	       in->version, in->nr_changed_blocks);
}

int main(int argc, char **argv)
{
	const char *ctl = "/dev/" DATTO_CTL_NAME;
	const char *cmd;
	unsigned long req;
	void *arg;
	int fd, ret, nargs;
	unsigned int minor = 0;
	int free_minor = -1;
	struct setup_params sp;
	struct reload_params rp;
	struct transition_snap_params tp;
	struct reconfigure_params cp;
	struct expand_cow_file_params ep;
	struct reconfigure_auto_expand_params ap;
	static struct dattobd_info info;

	if (argc >= 3 && strcmp(argv[1], "-d") == 0) {
		ctl = argv[2];
		argv += 2;
		argc -= 2;
	}
	if (argc < 2)
		usage();
	cmd = argv[1];
	nargs = argc - 2;
	if (nargs >= 1 && strcmp(cmd, "get-free") && strcmp(cmd, "raw"))
		minor = (unsigned int)num(argv[2], "minor");

	if (!strcmp(cmd, "get-free") && nargs == 0) {
		req = IOCTL_GET_FREE;
		arg = &free_minor;
	} else if (!strcmp(cmd, "info") && nargs == 1) {
		memset(&info, 0, sizeof(info));
		info.minor = minor;
		req = IOCTL_DATTOBD_INFO;
		arg = &info;
	} else if (!strcmp(cmd, "setup") && nargs >= 3 && nargs <= 5) {
		memset(&sp, 0, sizeof(sp));
		sp.minor = minor;
		sp.bdev = argv[3];
		sp.cow = argv[4];
		sp.fallocated_space = nargs >= 4 ? num(argv[5], "falloc_mib") : 0;
		sp.cache_size = nargs >= 5 ? num(argv[6], "cache_bytes") : 0;
		req = IOCTL_SETUP_SNAP;
		arg = &sp;
	} else if ((!strcmp(cmd, "reload-snap") || !strcmp(cmd, "reload-inc")) &&
		   nargs >= 3 && nargs <= 4) {
		memset(&rp, 0, sizeof(rp));
		rp.minor = minor;
		rp.bdev = argv[3];
		rp.cow = argv[4];
		rp.cache_size = nargs >= 4 ? num(argv[5], "cache_bytes") : 0;
		req = !strcmp(cmd, "reload-snap") ? IOCTL_RELOAD_SNAP : IOCTL_RELOAD_INC;
		arg = &rp;
	} else if (!strcmp(cmd, "destroy") && nargs == 1) {
		req = IOCTL_DESTROY;
		arg = &minor;
	} else if (!strcmp(cmd, "transition-inc") && nargs == 1) {
		req = IOCTL_TRANSITION_INC;
		arg = &minor;
	} else if (!strcmp(cmd, "transition-snap") && nargs >= 2 && nargs <= 3) {
		memset(&tp, 0, sizeof(tp));
		tp.minor = minor;
		tp.cow = argv[3];
		tp.fallocated_space = nargs >= 3 ? num(argv[4], "falloc_mib") : 0;
		req = IOCTL_TRANSITION_SNAP;
		arg = &tp;
	} else if (!strcmp(cmd, "reconfigure") && nargs == 2) {
		memset(&cp, 0, sizeof(cp));
		cp.minor = minor;
		cp.cache_size = num(argv[3], "cache_bytes");
		req = IOCTL_RECONFIGURE;
		arg = &cp;
	} else if (!strcmp(cmd, "expand") && nargs == 2) {
		memset(&ep, 0, sizeof(ep));
		ep.minor = minor;
		ep.size = num(argv[3], "size_mib");
		req = IOCTL_EXPAND_COW_FILE;
		arg = &ep;
	} else if (!strcmp(cmd, "auto-expand") && nargs == 3) {
		memset(&ap, 0, sizeof(ap));
		ap.minor = minor;
		ap.step_size = num(argv[3], "step_mib");
		ap.reserved_space = num(argv[4], "reserved_mib");
		req = IOCTL_RECONFIGURE_AUTO_EXPAND;
		arg = &ap;
	} else if (!strcmp(cmd, "raw") && nargs == 1) {
		req = _IOW(DATTO_IOCTL_MAGIC, (unsigned int)num(argv[2], "nr"), int);
		arg = &free_minor;
	} else {
		usage();
	}

	fd = open(ctl, O_RDONLY);
	if (fd < 0) {
		int e = errno;

		fprintf(stderr, "dbd-ioctl: open %s: %s (%d): %s\n", ctl,
			errno_name(e), e, strerror(e));
		return e > 0 && e < EXIT_USAGE ? e : EXIT_USAGE + 1;
	}
	ret = ioctl(fd, req, arg);
	if (ret < 0) {
		int e = errno;

		fprintf(stderr, "dbd-ioctl: %s: %s (%d): %s\n", cmd,
			errno_name(e), e, strerror(e));
		close(fd);
		return e > 0 && e < EXIT_USAGE ? e : EXIT_USAGE + 1;
	}
	close(fd);
	if (req == IOCTL_GET_FREE)
		printf("%d\n", free_minor);
	else if (req == IOCTL_DATTOBD_INFO)
		print_info(&info);
	return 0;
}

// SPDX-License-Identifier: GPL-2.0-only
/*
 * race-io: three O_DIRECT 4 KiB I/Os on one block, each from its own
 * thread at a fixed time after the start, to race a snapshot read with
 * writes to the origin (with dm-delay making reads slow):
 *   t = 0        write pattern 'A' to <origin> at <block>
 *   t = <r_ms>   read <snap> at <block> into <out>
 *   t = <w2_ms>  write pattern 'B' to <origin> at <block>
 * Prints when each I/O began and ended (ms since the start).
 * Usage: race-io <origin> <snap> <block> <r_ms> <w2_ms> <out>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BS 4096

struct op {
	const char *name;
	const char *path;
	int write;
	char fill;
	long at_ms;
	off_t pos;
	void *buf;
	double begin, end;
	int err;
};

static struct timespec t0;

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0.tv_sec) * 1e3 + (t.tv_nsec - t0.tv_nsec) / 1e6;
}

static void *run(void *arg)
{
	struct op *o = arg;
	struct timespec at = t0;
	ssize_t n;
	int fd;

	at.tv_sec += o->at_ms / 1000;
	at.tv_nsec += (o->at_ms % 1000) * 1000000L;
	if (at.tv_nsec >= 1000000000L) {
		at.tv_sec++;
		at.tv_nsec -= 1000000000L;
	}
	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
	fd = open(o->path, (o->write ? O_WRONLY : O_RDONLY) | O_DIRECT);
	if (fd < 0) {
		o->err = errno;
		return NULL;
	}
	if (o->write)
		memset(o->buf, o->fill, BS);
	o->begin = now_ms();
	n = o->write ? pwrite(fd, o->buf, BS, o->pos) :
		       pread(fd, o->buf, BS, o->pos);
	o->end = now_ms();
	if (n != BS)
		o->err = n < 0 ? errno : EIO;
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	struct op ops[3];
	pthread_t th[3];
	FILE *out;
	off_t pos;
	int i;

	if (argc != 7) {
		fprintf(stderr, "usage: race-io <origin> <snap> <block> <r_ms> <w2_ms> <out>\n");
		return 2;
	}
	pos = (off_t)strtoull(argv[3], NULL, 10) * BS;
	memset(ops, 0, sizeof(ops));
	ops[0] = (struct op){ .name = "write1", .path = argv[1], .write = 1,
			      .fill = 'A', .at_ms = 0, .pos = pos };
	ops[1] = (struct op){ .name = "read", .path = argv[2],
			      .at_ms = atol(argv[4]), .pos = pos };
	ops[2] = (struct op){ .name = "write2", .path = argv[1], .write = 1,
			      .fill = 'B', .at_ms = atol(argv[5]), .pos = pos };
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < 3; i++) {
		if (posix_memalign(&ops[i].buf, BS, BS))
			return 1;
		pthread_create(&th[i], NULL, run, &ops[i]);
	}
	for (i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < 3; i++) {
		printf("%s %.0f %.0f %s\n", ops[i].name, ops[i].begin,
		       ops[i].end, ops[i].err ? strerror(ops[i].err) : "ok");
		if (ops[i].err)
			return 1;
	}
	out = fopen(argv[6], "w");
	if (!out || fwrite(ops[1].buf, BS, 1, out) != 1)
		return 1;
	fclose(out);
	return 0;
}

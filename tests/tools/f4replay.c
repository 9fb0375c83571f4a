// SPDX-License-Identifier: GPL-2.0
/*
 * f4replay --- replay the journal of an ext3/ext4 image with fuse4fs's
 * journal code, for tests.
 *
 * usage: f4replay [-o io_options] [-s fs_bytes] DEVICE
 * fs_bytes: how far the file system may reach from its start (default:
 * the device's end, less any offset=N in io_options).
 * exit status: 0 replayed, 1 nothing to do, 2 refused or failed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ext2fs/ext2fs.h>
#include <et/com_err.h>

#include "fuse4fs/journal.h"

static void print_log(void *arg, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* The device's bytes past the offset given in the io options, if any. */
static unsigned long long default_region(const char *device,
					 const char *io_options)
{
	const char *off = io_options ? strstr(io_options, "offset=") : NULL;
	unsigned long long offset = off ? strtoull(off + 7, NULL, 0) : 0;
	blk64_t size = 0;

	if (ext2fs_get_device_size2(device, 1, &size) || size <= offset)
		return 0;
	return size - offset;
}

static void usage(void)
{
	fprintf(stderr, "usage: f4replay [-o io_options] [-s fs_bytes] "
		"DEVICE\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct f4_journal_report rep;
	const char *io_options = NULL, *device;
	char why[512] = "";
	ext2_filsys fs;
	errcode_t err;
	unsigned long long fs_bytes = 0;
	int opt, ret, have_size = 0;

	while ((opt = getopt(argc, argv, "o:s:")) != -1) {
		if (opt == 'o') {
			io_options = optarg;
		} else if (opt == 's') {
			fs_bytes = strtoull(optarg, NULL, 0);
			have_size = 1;
		} else {
			usage();
		}
	}
	if (optind != argc - 1)
		usage();
	device = argv[optind];
	if (!have_size)
		fs_bytes = default_region(device, io_options);
	add_error_table(&et_ext2_error_table);

	err = ext2fs_open2(device, io_options,
			   EXT2_FLAG_64BITS | EXT2_FLAG_IGNORE_CSUM_ERRORS,
			   0, 0, unix_io_manager, &fs);
	if (err) {
		fprintf(stderr, "f4replay: %s: cannot open: %s\n", device,
			error_message(err));
		return 2;
	}
	ret = f4_journal_check(fs, fs_bytes, why, sizeof(why));
	ext2fs_close_free(&fs);
	if (ret == 0) {
		printf("no recovery needed\n");
		return 1;
	}
	if (ret < 0) {
		fprintf(stderr, "f4replay: %s: %s (%s)\n", device, why,
			strerror(-ret));
		return 2;
	}

	ret = f4_journal_recover(device, io_options, fs_bytes, &rep,
				 print_log, NULL, why, sizeof(why));
	if (ret < 0) {
		fprintf(stderr, "f4replay: %s: %s (%s)\n", device, why,
			strerror(-ret));
		return 2;
	}
	printf("transactions: %lu\n", rep.transactions);
	printf("blocks: %lu\n", rep.blocks);
	printf("revoked: %lu\n", rep.revoked);
	printf("first_tid: %llu\n", rep.first_tid);
	printf("last_tid: %llu\n", rep.last_tid);
	printf("stopped_early: %d\n", rep.stopped_early);
	printf("failed_commit: %d\n", rep.failed_commit);
	printf("fs_error: %d\n", rep.fs_error);
	printf("journal_errno: %d\n", rep.journal_errno);
	printf("wrapped: %d\n", rep.wrapped);
	printf("next_tid: %llu\n", rep.next_tid);
	return 0;
}

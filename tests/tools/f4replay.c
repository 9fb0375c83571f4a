// SPDX-License-Identifier: GPL-2.0
/*
 * f4replay --- replay the journal of an ext3/ext4 image with fuse4fs's
 * journal code, for tests.
 *
 * usage: f4replay [-o io_options] DEVICE
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

static void usage(void)
{
	fprintf(stderr, "usage: f4replay [-o io_options] DEVICE\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct f4_journal_report rep;
	const char *io_options = NULL, *device;
	char why[512] = "";
	ext2_filsys fs;
	errcode_t err;
	int opt, ret;

	while ((opt = getopt(argc, argv, "o:")) != -1) {
		if (opt == 'o')
			io_options = optarg;
		else
			usage();
	}
	if (optind != argc - 1)
		usage();
	device = argv[optind];
	add_error_table(&et_ext2_error_table);

	err = ext2fs_open2(device, io_options,
			   EXT2_FLAG_64BITS | EXT2_FLAG_IGNORE_CSUM_ERRORS,
			   0, 0, unix_io_manager, &fs);
	if (err) {
		fprintf(stderr, "f4replay: %s: cannot open: %s\n", device,
			error_message(err));
		return 2;
	}
	ret = f4_journal_check(fs, why, sizeof(why));
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

	ret = f4_journal_recover(device, io_options, &rep, print_log, NULL,
				 why, sizeof(why));
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

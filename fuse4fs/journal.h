/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fuse4fs journal recovery: replay of the internal jbd2 journal of an
 * ext3/ext4 file system, read with our own parser because libext2fs has
 * no public journal API.  Depends only on libext2fs, com_err and libc.
 */
#ifndef FUSE4FS_JOURNAL_H
#define FUSE4FS_JOURNAL_H

#include <stddef.h>
#include <ext2fs/ext2fs.h>

struct f4_journal_report {
	unsigned long transactions;	/* committed transactions replayed */
	unsigned long blocks;		/* blocks written to the file system */
	unsigned long revoked;		/* block copies skipped because of a revoke */
	unsigned long long first_tid, last_tid;
	int stopped_early;		/* replay ended at a bad checksum or torn
					 * transaction, as the kernel would */
	/* Additions (fuse4fs): */
	int failed_commit;		/* the transaction after last_tid has a bad
					 * commit checksum (not async commit): the
					 * file system was marked as having errors */
	int fs_error;			/* EXT2_ERROR_FS was set in the superblock
					 * (failed commit or journal s_errno) */
	int journal_errno;		/* s_errno recorded in the journal, or 0 */
	int wrapped;			/* the replayed log wrapped around the end */
	unsigned long long next_tid;	/* journal sequence after the reset */
};

typedef void (*f4_journal_log_fn)(void *arg, const char *fmt, ...);

/*
 * Does the file system (already opened by the caller with ext2fs_open2)
 * need recovery, and can we do it?
 * 0: nothing to do (no journal, or needs_recovery clear);
 * 1: recovery needed and supported;
 * negative errno (-EOPNOTSUPP for an external journal, fast commits present,
 * unknown journal format/feature; -EUCLEAN for a damaged journal) with a
 * one-line reason in why.  Only reads; the whole log is scanned and
 * validated (including data block checksums) so that a later
 * f4_journal_recover() fails only on I/O errors.
 *
 * fs_bytes: the bytes the file system may span from its start, i.e. to
 * the end of its partition or device, as the caller knows from where it
 * lies (never from the image).  No logged block past that is accepted,
 * whatever a logged superblock says; 0 (unknown) accepts nothing past
 * the file system's current end.
 */
int f4_journal_check(ext2_filsys fs, unsigned long long fs_bytes,
		     char *why, size_t whylen);
/* Can the journal of a file system needing no replay be read?  0 or -errno */
int f4_journal_validate(ext2_filsys fs, char *why, size_t whylen);

/*
 * Replay the internal journal of the file system at device (io_options as
 * for ext2fs_open2, e.g. "offset=1048576" or NULL).  Opens the device
 * read-write itself, replays, resets the journal (empty, sequence
 * advanced), clears needs_recovery in the primary superblock (and brings
 * its free block/inode totals in line with the group descriptors, as the
 * kernel does at mount), writes everything out and closes.  Progress and
 * the result go through log (may be NULL).  0 or negative errno with a
 * one-line reason in why.  Never writes outside the file system, nor past
 * fs_bytes (as for f4_journal_check), and writes nothing at all when it
 * refuses.
 *
 * The caller must not hold the file system open for writing meanwhile, and
 * must re-open it afterwards: blocks replayed may include the superblock
 * and group descriptors.
 */
int f4_journal_recover(const char *device, const char *io_options,
		       unsigned long long fs_bytes,
		       struct f4_journal_report *rep,
		       f4_journal_log_fn log, void *logarg,
		       char *why, size_t whylen);

#endif /* FUSE4FS_JOURNAL_H */

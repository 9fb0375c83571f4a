/*
 * errors.c - one translation from libext2fs error codes to errno, logging,
 * and what happens when fuse4fs finds the file system damaged.
 *
 * Damage is handled as the kernel's ext4 does: the operation that hit it
 * fails with EFSCORRUPTED (EUCLEAN), the superblock records the error so
 * that e2fsck checks the file system next time, and the errors= policy
 * decides whether to continue, go read-only, or stop.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "fuse4fs.h"

static int log_syslog;
static int log_verbose;
static int log_quiet;

/* For the fuzzer and tools: only say what is fatal. */
void f4_log_set_quiet(int on)
{
	log_quiet = on;
}

void f4_log_to_syslog(int on)
{
	if (on && !log_syslog)
		openlog("fuse4fs", LOG_PID, LOG_DAEMON);
	log_syslog = on;
}

void f4_set_verbose(int on)
{
	log_verbose = on;
}

void f4_log(int level, const char *fmt, ...)
{
	va_list ap;

	if (level == LOG_DEBUG && !log_verbose)
		return;
	if (log_quiet && level > LOG_CRIT)
		return;
	va_start(ap, fmt);
	if (log_syslog) {
		vsyslog(level, fmt, ap);
	} else {
		fputs("fuse4fs: ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	va_end(ap);
}

/* Checksum failures get a code of their own in the superblock. */
static int is_bad_checksum(errcode_t err)
{
	switch (err) {
	case EXT2_ET_INODE_CSUM_INVALID:
	case EXT2_ET_INODE_BITMAP_CSUM_INVALID:
	case EXT2_ET_EXTENT_CSUM_INVALID:
	case EXT2_ET_DIR_CSUM_INVALID:
	case EXT2_ET_EXT_ATTR_CSUM_INVALID:
	case EXT2_ET_SB_CSUM_INVALID:
	case EXT2_ET_BLOCK_BITMAP_CSUM_INVALID:
	case EXT2_ET_MMP_CSUM_INVALID:
	case EXT2_ET_BAD_CRC:
		return 1;
	}
	return 0;
}

/* Codes that mean the on-disk metadata is not what it should be. */
static int is_corruption(errcode_t err)
{
	if (is_bad_checksum(err))
		return 1;
	switch (err) {
	case EXT2_ET_DIR_CORRUPTED:
	case EXT2_ET_BAD_BLOCK_NUM:
	case EXT2_ET_BAD_INODE_NUM:
	case EXT2_ET_BAD_IND_BLOCK:
	case EXT2_ET_BAD_DIND_BLOCK:
	case EXT2_ET_BAD_TIND_BLOCK:
	case EXT2_ET_CORRUPT_SUPERBLOCK:
	case EXT2_ET_MISSING_INODE_TABLE:
	case EXT2_ET_BAD_EA_BLOCK_NUM:
	case EXT2_ET_DIRHASH_UNSUPP:
	case EXT2_ET_EXTENT_HEADER_BAD:
	case EXT2_ET_EXTENT_INDEX_BAD:
	case EXT2_ET_EXTENT_LEAF_BAD:
	case EXT2_ET_BAD_EA_HASH:
	case EXT2_ET_BAD_EA_HEADER:
	case EXT2_ET_EA_BAD_VALUE_OFFSET:
	case EXT2_ET_EA_BAD_VALUE_SIZE:
	case EXT2_ET_EA_BAD_NAME_LEN:
	case EXT2_ET_INODE_IS_GARBAGE:
	case EXT2_ET_FILESYSTEM_CORRUPTED:
	case EXT2_ET_INODE_CORRUPTED:
	case EXT2_ET_EA_INODE_CORRUPTED:
	case EXT2_ET_EXTENT_CYCLE:
	case EXT2_ET_INLINE_DATA_NO_BLOCK:
	case EXT2_ET_NO_INLINE_DATA:
	case EXT2_ET_SYMLINK_LOOP:
	case EXT2_ET_EXTENT_NOT_FOUND:
	case EXT2_ET_INLINE_DATA_CANT_ITERATE:
		return 1;
	}
	return 0;
}

/* The one place where libext2fs error codes become errno values. */
int f4_errno(errcode_t err)
{
	if (err == 0)
		return 0;
	/* libext2fs passes system errors through as plain errno values */
	if (err > 0 && err < 4096)
		return -(int)err;
	if (is_corruption(err))
		return -EFSCORRUPTED;

	switch (err) {
	case EXT2_ET_NO_MEMORY:
		return -ENOMEM;
	case EXT2_ET_RO_FILSYS:
	case EXT2_ET_FILE_RO:
		return -EROFS;
	case EXT2_ET_DIR_NO_SPACE:
	case EXT2_ET_BLOCK_ALLOC_FAIL:
	case EXT2_ET_INODE_ALLOC_FAIL:
	case EXT2_ET_EA_NO_SPACE:
	case EXT2_ET_INLINE_DATA_NO_SPACE:
	case EXT2_ET_TOO_MANY_INODES:
	case EXT2_ET_DIR_NO_SPACE_FOR_CSUM:
	case EXT2_ET_RES_GDT_BLOCKS:
		return -ENOSPC;
	case EXT2_ET_NO_DIRECTORY:
		return -ENOTDIR;
	case EXT2_ET_FILE_NOT_FOUND:
		return -ENOENT;
	case EXT2_ET_EA_KEY_NOT_FOUND:
		return -ENODATA;
	case EXT2_ET_FILE_EXISTS:
	case EXT2_ET_DIR_EXISTS:
		return -EEXIST;
	case EXT2_ET_FILE_TOO_BIG:
	case EXT2_ET_EXTENT_INVALID_LENGTH:
		return -EFBIG;
	case EXT2_ET_TOO_MANY_REFS:
		return -EMLINK;
	case EXT2_ET_OP_NOT_SUPPORTED:
	case EXT2_ET_UNIMPLEMENTED:
	case EXT2_ET_EXTENT_NOT_SUPPORTED:
	case EXT2_ET_UNSUPP_FEATURE:
	case EXT2_ET_RO_UNSUPP_FEATURE:
	case EXT2_ET_MISSING_EA_FEATURE:
	case EXT2_ET_EXTERNAL_JOURNAL_NOSUPP:
		return -EOPNOTSUPP;
	case EXT2_ET_INVALID_ARGUMENT:
	case EXT2_ET_MAGIC_EXT2_FILE:
		return -EINVAL;
	case EXT2_ET_EXTENT_NO_SPACE:
		return -ENOSPC;
	case EXT2_ET_MMP_FAILED:
	case EXT2_ET_MMP_FSCK_ON:
		return -EBUSY;
	}
	return -EIO;
}

static int already_noted(struct f4fs *f, ext2_ino_t ino, int what)
{
	unsigned int i;

	for (i = 0; i < f->nnoted && i < 64; i++)
		if (f->noted[i].ino == ino && f->noted[i].what == what)
			return 1;
	f->noted[f->nnoted % 64].ino = ino;
	f->noted[f->nnoted % 64].what = what;
	f->nnoted++;
	return 0;
}


/* s_{first,last}_error_errcode holds ext4's EXT4_ERR_* numbers, not errno */
enum {
	F4_ERR_UNKNOWN = 1,
	F4_ERR_EIO = 2,
	F4_ERR_ENOMEM = 3,
	F4_ERR_EFSBADCRC = 4,
	F4_ERR_EFSCORRUPTED = 5,
	F4_ERR_ENOSPC = 6,
};

static int ext4_err_code(int errnum)
{
	switch (errnum) {
	case EIO:
		return F4_ERR_EIO;
	case ENOMEM:
		return F4_ERR_ENOMEM;
	case EBADMSG:			/* the kernel's EFSBADCRC */
		return F4_ERR_EFSBADCRC;
	case EFSCORRUPTED:
		return F4_ERR_EFSCORRUPTED;
	case ENOSPC:
		return F4_ERR_ENOSPC;
	}
	return F4_ERR_UNKNOWN;
}

/* The superblock's error record, as the kernel keeps it. */
static void note_in_super(struct ext2_super_block *sb, ext2_ino_t ino,
			  int errnum, const char *what)
{
	time_t now = time(NULL);

	errnum = ext4_err_code(errnum);
	sb->s_state |= EXT2_ERROR_FS;
	sb->s_error_count++;
	if (!sb->s_first_error_time) {
		sb->s_first_error_time = now;
		sb->s_first_error_time_hi = (uint64_t)now >> 32;
		sb->s_first_error_ino = ino;
		sb->s_first_error_block = 0;
		sb->s_first_error_line = 0;
		sb->s_first_error_errcode = errnum;
		strncpy((char *)sb->s_first_error_func, what,
			sizeof(sb->s_first_error_func));
	}
	sb->s_last_error_time = now;
	sb->s_last_error_time_hi = (uint64_t)now >> 32;
	sb->s_last_error_ino = ino;
	sb->s_last_error_block = 0;
	sb->s_last_error_line = 0;
	sb->s_last_error_errcode = errnum;
	strncpy((char *)sb->s_last_error_func, what,
		sizeof(sb->s_last_error_func));
}

/*
 * Damage found while mounting, before fuse4fs falls back to read-only:
 * on disk at once, with no errors= policy (nothing is mounted yet).
 */
void f4_record_mount_error(struct f4fs *f, errcode_t err, const char *what)
{
	if (!f->fs || !(f->fs->flags & EXT2_FLAG_RW))
		return;
	note_in_super(f->fs->super, 0, is_bad_checksum(err) ? EBADMSG :
		      f4_errno(err) == -EFSCORRUPTED ? EFSCORRUPTED : EIO,
		      what);
	ext2fs_mark_super_dirty(f->fs);
	ext2fs_flush2(f->fs, 0);
}

/*
 * Record an error in the superblock as the kernel does, so that the next
 * e2fsck knows to check the file system, and apply the errors= policy.
 */
static void record_error(struct f4fs *f, ext2_ino_t ino, int errnum,
			 const char *what)
{
	struct ext2_super_block *sb = f->fs->super;
	int policy = f->opts ? f->opts->errors : F4_ERRORS_DEFAULT;

	if (policy == F4_ERRORS_DEFAULT) {
		switch (sb->s_errors) {
		case EXT2_ERRORS_RO:
			policy = F4_ERRORS_REMOUNT_RO;
			break;
		case EXT2_ERRORS_PANIC:
			policy = F4_ERRORS_PANIC;
			break;
		default:
			policy = F4_ERRORS_CONTINUE;
		}
	}

	if (!(f->fs->flags & EXT2_FLAG_RW))
		goto policy;

	note_in_super(sb, ino, errnum, what);
	ext2fs_mark_super_dirty(f->fs);
	f4_fs_dirty(f);
	/* The record must reach the disk even if we stop right after. */
	if (policy != F4_ERRORS_CONTINUE)
		f4_fs_flush(f);

policy:
	switch (policy) {
	case F4_ERRORS_REMOUNT_RO:
		if (!f->ro) {
			f4_log(LOG_CRIT, "remounting file system read-only");
			f->ro = 1;
			f->forced_ro = 1;
		}
		break;
	case F4_ERRORS_PANIC:
		if (!f->shutdown) {
			f4_log(LOG_CRIT, "errors=panic: stopping; nothing more "
			       "is written to %s", f->opts->device);
			f->shutdown = 1;
			f->ro = 1;
			f4_io_stop_writes(f->fs->io);
			if (f->panic)
				f->panic(f);
		}
		break;
	}
}

/*
 * Translate a libext2fs error for the operation that hit it.  Metadata
 * damage is logged once per inode and kind, and recorded.
 */
int f4_fs_error(struct f4fs *f, ext2_ino_t ino, errcode_t err,
		const char *what)
{
	int ret = f4_errno(err);

	if (ret != -EFSCORRUPTED && ret != -EIO)
		return ret;
	if (!already_noted(f, ino, (int)(err & 0xffff)))
		f4_log(LOG_ERR, "inode %u: %s: %s", ino, what,
		       error_message(err));
	if (is_bad_checksum(err))
		record_error(f, ino, EBADMSG, what);
	else if (ret == -EFSCORRUPTED)
		record_error(f, ino, EFSCORRUPTED, what);
	else
		record_error(f, ino, EIO, what);
	return ret;
}

/* Damage that fuse4fs itself detects (no libext2fs error code). */
int f4_corrupt(struct f4fs *f, ext2_ino_t ino, const char *fmt, ...)
{
	char what[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (!already_noted(f, ino, (int)(strlen(what) * 131 + what[0])))
		f4_log(LOG_ERR, "inode %u: %s", ino, what);
	record_error(f, ino, EFSCORRUPTED, what);
	return -EFSCORRUPTED;
}

/* May we change the file system now? */
int f4_check_writable(struct f4fs *f)
{
	if (f->shutdown)
		return -EIO;
	if (f->ro || !(f->fs->flags & EXT2_FLAG_RW))
		return -EROFS;
	return 0;
}

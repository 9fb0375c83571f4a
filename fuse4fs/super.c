/*
 * super.c - opening, checking, flushing and closing the file system.
 *
 * Everything that can make a mount fail is checked here, before fuse4fs
 * daemonizes, so the user sees one clear line instead of a dead mount.
 * While mounted read-write the file system is marked not clean; a clean
 * unmount writes everything and restores the state it had at mount.
 */
#include "config.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "fuse4fs.h"
#include "journal.h"

static const struct feature_name {
	int kind;			/* 0 compat, 1 incompat, 2 ro_compat */
	unsigned int mask;
	const char *name;
} feature_names[] = {
	{ 1, EXT2_FEATURE_INCOMPAT_COMPRESSION, "compression" },
	{ 1, EXT3_FEATURE_INCOMPAT_JOURNAL_DEV, "journal_dev" },
	{ 1, EXT4_FEATURE_INCOMPAT_MMP, "mmp" },
	{ 1, EXT4_FEATURE_INCOMPAT_DIRDATA, "dirdata" },
	{ 1, EXT4_FEATURE_INCOMPAT_ENCRYPT, "encrypt" },
	{ 1, EXT4_FEATURE_INCOMPAT_CASEFOLD, "casefold" },
	{ 2, EXT4_FEATURE_RO_COMPAT_HAS_SNAPSHOT, "snapshot" },
	{ 2, EXT4_FEATURE_RO_COMPAT_BIGALLOC, "bigalloc" },
	{ 2, EXT4_FEATURE_RO_COMPAT_REPLICA, "replica" },
	{ 2, EXT4_FEATURE_RO_COMPAT_READONLY, "read-only" },
	{ 2, EXT4_FEATURE_RO_COMPAT_SHARED_BLOCKS, "shared_blocks" },
	{ 2, EXT4_FEATURE_RO_COMPAT_QUOTA, "quota" },
	{ 2, EXT4_FEATURE_RO_COMPAT_PROJECT, "project" },
};

static void feature_list(int kind, unsigned int mask, char *buf, size_t len)
{
	size_t i, used = 0;

	buf[0] = 0;
	for (i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++) {
		if (feature_names[i].kind != kind ||
		    !(mask & feature_names[i].mask))
			continue;
		used += snprintf(buf + used, used < len ? len - used : 0,
				 "%s%s", used ? ", " : "",
				 feature_names[i].name);
		mask &= ~feature_names[i].mask;
	}
	if (mask)
		snprintf(buf + used, used < len ? len - used : 0,
			 "%sunknown 0x%x", used ? ", " : "", mask);
}

void f4_lock(struct f4fs *f)
{
	pthread_mutex_lock(&f->lock);
}

/*
 * Release the lock, then tell the kernel about the inodes whose cached
 * attributes the work done under it made stale.
 */
void f4_unlock(struct f4fs *f)
{
	void (*inval_inode)(struct f4fs *f, ext2_ino_t ino) = f->inval_inode;
	ext2_ino_t inval[F4_INVAL_MAX];
	unsigned int i, n = f->ninval;

	memcpy(inval, f->inval, n * sizeof(inval[0]));
	f->ninval = 0;
	pthread_mutex_unlock(&f->lock);
	for (i = 0; i < n; i++)
		inval_inode(f, inval[i]);
}

/*
 * The kernel's cached attributes of ino are stale: note it for f4_unlock().
 * Inodes the kernel doesn't hold need no note.
 */
void f4_inval_inode(struct f4fs *f, ext2_ino_t ino)
{
	unsigned int i;

	if (!f->inval_inode || !f4_nlookup(f, ino))
		return;
	for (i = 0; i < f->ninval; i++)
		if (f->inval[i] == ino)
			return;
	if (f->ninval < F4_INVAL_MAX)
		f->inval[f->ninval++] = ino;
	else
		f4_log(LOG_WARNING, "inode %u: too many changed inodes in one "
		       "request; the kernel may show stale attributes", ino);
}

void f4_fs_dirty(struct f4fs *f)
{
	f->dirty = 1;
}

/*
 * Write out everything: superblock, group descriptors, bitmaps, and the
 * block cache, then ask the device to make it durable.
 */
int f4_fs_flush(struct f4fs *f)
{
	errcode_t err;

	if (!f->fs || !(f->fs->flags & EXT2_FLAG_RW))
		return 0;
	err = ext2fs_flush2(f->fs, 0);
	if (err) {
		f4_log(LOG_ERR, "flushing %s: %s", f->opts->device,
		       error_message(err));
		return f4_errno(err);
	}
	f->dirty = 0;
	f->last_flush = time(NULL);
	f4_alloc_flushed(f);
	return 0;
}

static void *flusher_main(void *arg)
{
	struct f4fs *f = arg;
	struct timespec ts;

	pthread_mutex_lock(&f->lock);
	while (!f->stopping) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += f->opts->commit_interval ?
			     f->opts->commit_interval : F4_DEFAULT_COMMIT;
		pthread_cond_timedwait(&f->flusher_cond, &f->lock, &ts);
		if (f->stopping)
			break;
		if (f->dirty)
			f4_fs_flush(f);
		f4_io_tick(f->fs->io);
		cache_tick(&f->inodes);
		if (ext2fs_has_feature_mmp(f->fs->super) &&
		    (f->fs->flags & EXT2_FLAG_RW))
			ext2fs_mmp_update2(f->fs, 0);
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

int f4_start_flusher(struct f4fs *f)
{
	int ret;

	ret = pthread_create(&f->flusher, NULL, flusher_main, f);
	if (ret)
		return -ret;
	f->flusher_running = 1;
	return 0;
}

void f4_stop_flusher(struct f4fs *f)
{
	if (!f->flusher_running)
		return;
	pthread_mutex_lock(&f->lock);
	f->stopping = 1;
	pthread_cond_signal(&f->flusher_cond);
	pthread_mutex_unlock(&f->lock);
	pthread_join(f->flusher, NULL);
	f->flusher_running = 0;
}

/*
 * Blocks that hold metadata rather than file data: what "bsddf" leaves
 * out of f_blocks, as the kernel does.
 */
static void compute_overhead(struct f4fs *f)
{
	ext2_filsys fs = f->fs;
	blk64_t overhead = fs->super->s_first_data_block;
	dgrp_t g;

	for (g = 0; g < fs->group_desc_count; g++) {
		blk64_t super_blk, old_desc, new_desc;
		blk_t used = 0;

		ext2fs_super_and_bgd_loc2(fs, g, &super_blk, &old_desc,
					  &new_desc, &used);
		overhead += used + 2 + fs->inode_blocks_per_group;
	}
	overhead += f->journal_blocks;
	/* mke2fs records the real figure; the kernel prefers it too */
	if (fs->super->s_overhead_clusters)
		overhead = (blk64_t)fs->super->s_overhead_clusters *
			   EXT2FS_CLUSTER_RATIO(fs);
	f->overhead = overhead;
}

static void find_journal_size(struct f4fs *f)
{
	struct ext2_inode inode;
	ext2_ino_t jino = f->fs->super->s_journal_inum;

	f->journal_blocks = 0;
	if (!ext2fs_has_feature_journal(f->fs->super) || !jino)
		return;
	if (ext2fs_read_inode(f->fs, jino, &inode))
		return;
	f->journal_blocks = EXT2_I_SIZE(&inode) / f->fs->blocksize;
}

int f4_statfs(struct f4fs *f, struct statvfs *st)
{
	ext2_filsys fs = f->fs;
	struct ext2_super_block *sb = fs->super;
	blk64_t blocks = ext2fs_blocks_count(sb);
	blk64_t free = ext2fs_free_blocks_count(sb);
	blk64_t reserved = ext2fs_r_blocks_count(sb);
	uint64_t uuid_lo, uuid_hi;

	memset(st, 0, sizeof(*st));
	st->f_bsize = fs->blocksize;
	st->f_frsize = fs->blocksize;
	if (!f->opts->minixdf)
		blocks = blocks > f->overhead ? blocks - f->overhead : 0;
	st->f_blocks = blocks;
	/*
	 * Like ext4, hold back 2% (at most 4096 clusters) beyond the root
	 * reserve on extent file systems, so that extent tree blocks can
	 * still be allocated when users have filled the file system.
	 */
	if (ext2fs_has_feature_extents(sb))
		reserved += ext2fs_blocks_count(sb) / 50 < 4096 ?
			    ext2fs_blocks_count(sb) / 50 : 4096;
	st->f_bfree = free;
	st->f_bavail = free > reserved ? free - reserved : 0;
	st->f_files = sb->s_inodes_count;
	st->f_ffree = sb->s_free_inodes_count;
	st->f_favail = sb->s_free_inodes_count;
	memcpy(&uuid_lo, sb->s_uuid, 8);
	memcpy(&uuid_hi, sb->s_uuid + 8, 8);
	st->f_fsid = uuid_lo ^ uuid_hi;
	st->f_namemax = F4_NAME_MAX;
	if (f->ro)
		st->f_flag |= ST_RDONLY;
	return 0;
}

/* ---- opening -------------------------------------------------------- */

/*
 * The bytes the file system may span from its start: its partition, or
 * the device (image) past the offset.  Known from the command line and
 * the device alone, before anything on the image is trusted; no write may
 * leave this range, whatever the image (or its journal) says.  0 if the
 * device's size can't be found.
 */
static unsigned long long region_bytes(struct f4_opts *opts)
{
	blk64_t dev = 0;
	unsigned long long bytes;

	if (ext2fs_get_device_size2(opts->device, 1, &dev) || !dev)
		return opts->size_limit;
	bytes = dev > opts->offset ? dev - opts->offset : 0;
	if (opts->size_limit && opts->size_limit < bytes)
		bytes = opts->size_limit;
	return bytes;
}

static char io_options[64];

/* For libext2fs's own I/O managers (the journal replay). */
static const char *make_io_options(struct f4_opts *opts)
{
	if (!opts->offset)
		return NULL;
	snprintf(io_options, sizeof(io_options), "offset=%llu", opts->offset);
	return io_options;
}

static char f4_io_options[96];

/* For fuse4fs's block cache: the offset and the end of the byte range. */
static const char *make_f4_io_options(struct f4_opts *opts)
{
	unsigned long long end = region_bytes(opts);

	if (end)
		snprintf(f4_io_options, sizeof(f4_io_options),
			 "offset=%llu&end=%llu", opts->offset, end);
	else if (opts->offset)
		snprintf(f4_io_options, sizeof(f4_io_options), "offset=%llu",
			 opts->offset);
	else
		return NULL;
	return f4_io_options;
}

static int explain_open_error(struct f4_opts *opts, errcode_t err, int rw)
{
	const char *dev = opts->device;

	switch (err) {
	case EXT2_ET_BAD_MAGIC:
		f4_log(LOG_ERR, "%s: not an ext2/ext3/ext4 file system "
		       "(no valid superblock found%s)", dev,
		       opts->offset ? " at the given offset" : "");
		break;
	case EXT2_ET_SB_CSUM_INVALID:
		f4_log(LOG_ERR, "%s: superblock checksum does not match; "
		       "run e2fsck", dev);
		break;
	case EXT2_ET_CORRUPT_SUPERBLOCK:
	case EXT2_ET_BAD_DESC_SIZE:
	case EXT2_ET_UNEXPECTED_BLOCK_SIZE:
	case EXT2_ET_GDESC_BAD_BLOCK_MAP:
	case EXT2_ET_GDESC_BAD_INODE_MAP:
	case EXT2_ET_GDESC_BAD_INODE_TABLE:
	case EXT2_ET_REV_TOO_HIGH:
		f4_log(LOG_ERR, "%s: damaged superblock or group descriptors "
		       "(%s); run e2fsck", dev, error_message(err));
		break;
	case EBUSY:
		f4_log(LOG_ERR, "%s: device is busy (mounted or opened "
		       "exclusively by someone else)", dev);
		break;
	case EXT2_ET_MMP_FAILED:
	case EXT2_ET_MMP_FSCK_ON:
	case EXT2_ET_MMP_UNKNOWN_SEQ:
		f4_log(LOG_ERR, "%s: multiple-mount protection: the file "
		       "system is in use elsewhere (%s)", dev,
		       error_message(err));
		break;
	case EXT2_ET_MMP_MAGIC_INVALID:
	case EXT2_ET_MMP_BAD_BLOCK:
	case EXT2_ET_MMP_CSUM_INVALID:
		f4_log(LOG_ERR, "%s: multiple-mount protection block is "
		       "damaged (%s); run e2fsck", dev, error_message(err));
		break;
	case EXT2_ET_SHORT_READ:
		f4_log(LOG_ERR, "%s: too short to hold an ext2/ext3/ext4 "
		       "file system", dev);
		break;
	default:
		f4_log(LOG_ERR, "%s: cannot open%s: %s", dev,
		       rw ? " read-write" : "", error_message(err));
	}
	return -(err > 0 && err < 4096 ? (int)err : EINVAL);
}

/* Unknown features, named, before libext2fs gives a bare error code. */
/* Features libext2fs can read but fuse4fs does not write correctly */
static int readonly_features(struct ext2_super_block *sb, char *names,
			     size_t size)
{
	unsigned int ro_compat;

	ro_compat = sb->s_feature_ro_compat &
		    ~EXT2_LIB_FEATURE_RO_COMPAT_SUPP;
	ro_compat |= sb->s_feature_ro_compat &
		     (EXT4_FEATURE_RO_COMPAT_BIGALLOC |
		      EXT4_FEATURE_RO_COMPAT_READONLY |
		      EXT4_FEATURE_RO_COMPAT_SHARED_BLOCKS |
		      EXT4_FEATURE_RO_COMPAT_QUOTA |
		      EXT4_FEATURE_RO_COMPAT_PROJECT);
	if (!ro_compat)
		return 0;
	feature_list(2, ro_compat, names, size);
	return 1;
}

/*
 * Features whose names or contents fuse4fs does not decode yet: even a
 * read-only mount would serve wrong results (case-insensitive lookups
 * that fail, ciphertext names and data), so no mount at all.
 */
static int undecoded_features(struct ext2_super_block *sb, char *names,
			      size_t size)
{
	unsigned int incompat;

	incompat = sb->s_feature_incompat &
		   (EXT4_FEATURE_INCOMPAT_ENCRYPT |
		    EXT4_FEATURE_INCOMPAT_CASEFOLD);
	if (!incompat)
		return 0;
	feature_list(1, incompat, names, size);
	return 1;
}

static int check_features(struct f4_opts *opts, ext2_filsys fs, int *rw)
{
	struct ext2_super_block *sb = fs->super;
	unsigned int incompat;
	char names[160];

	incompat = sb->s_feature_incompat & ~EXT2_LIB_FEATURE_INCOMPAT_SUPP;
	incompat |= sb->s_feature_incompat &
		    (EXT3_FEATURE_INCOMPAT_JOURNAL_DEV |
		     EXT4_FEATURE_INCOMPAT_DIRDATA);
	if (incompat) {
		feature_list(1, incompat, names, sizeof(names));
		f4_log(LOG_ERR, "%s: file system has features fuse4fs does "
		       "not support: %s", opts->device, names);
		return -EOPNOTSUPP;
	}
	if (undecoded_features(sb, names, sizeof(names))) {
		f4_log(LOG_ERR, "%s: file system has features fuse4fs "
		       "cannot decode yet: %s; not mounted, not even "
		       "read-only (names or contents would come out wrong)",
		       opts->device, names);
		return -EOPNOTSUPP;
	}
	if (*rw && readonly_features(sb, names, sizeof(names))) {
		f4_log(LOG_ERR, "%s: file system has features fuse4fs can "
		       "only read: %s; mount with -o ro", opts->device,
		       names);
		return -EROFS;
	}
	return 0;
}

/*
 * The layout everything else relies on, checked once as ext4 does at
 * mount: where the first data block is, and that every group's bitmaps
 * and inode table lie inside the file system and clear of each other.
 */
static int check_geometry(struct f4_opts *opts, ext2_filsys fs)
{
	struct ext2_super_block *sb = fs->super;
	blk64_t first = fs->blocksize == 1024 &&
			!ext2fs_has_feature_bigalloc(sb) ? 1 : 0;
	errcode_t err;

	if (sb->s_first_data_block != first) {
		f4_log(LOG_ERR, "%s: bad superblock: first data block is %u, "
		       "should be %llu for %u-byte blocks; run e2fsck",
		       opts->device, sb->s_first_data_block,
		       (unsigned long long)first, fs->blocksize);
		return -EUCLEAN;
	}
	/* libext2fs trusts these when it writes in-inode xattrs */
	if (EXT2_INODE_SIZE(sb) > EXT2_GOOD_OLD_INODE_SIZE) {
		unsigned int room = EXT2_INODE_SIZE(sb) -
				    EXT2_GOOD_OLD_INODE_SIZE;

		if (sb->s_want_extra_isize > room ||
		    sb->s_want_extra_isize % 4 ||
		    sb->s_min_extra_isize > room ||
		    sb->s_min_extra_isize % 4) {
			f4_log(LOG_ERR, "%s: bad superblock: extra inode size "
			       "%u (minimum %u) for %u-byte inodes; run "
			       "e2fsck", opts->device, sb->s_want_extra_isize,
			       sb->s_min_extra_isize, EXT2_INODE_SIZE(sb));
			return -EUCLEAN;
		}
	}
	err = ext2fs_check_desc(fs);
	if (err) {
		f4_log(LOG_ERR, "%s: bad group descriptors: %s; run e2fsck",
		       opts->device, error_message(err));
		return -EUCLEAN;
	}
	return 0;
}

/*
 * Does a read-only mount still clean up orphans first?  ext4 does, when
 * it can write the device, unless told not to touch the journal; the
 * on-disk state it leaves is then the one a read-write mount would.
 */
static int want_ro_orphan_cleanup(struct f4_opts *opts, ext2_filsys fs,
				  int dev_writable)
{
	struct ext2_super_block *sb = fs->super;
	char names[160];

	if (!opts->readonly || !dev_writable || opts->norecovery)
		return 0;
	if (!sb->s_last_orphan && !ext2fs_has_feature_orphan_present(sb))
		return 0;
	return !readonly_features(sb, names, sizeof(names));
}

/* Free the orphans in a short read-write session of their own. */
static void clean_orphans_for_ro(struct f4_opts *opts)
{
	struct f4_opts o = *opts;
	struct f4fs tmp;
	int ret;

	memset(&tmp, 0, sizeof(tmp));
	o.readonly = 0;
	o.partition = 0;		/* already turned into offset */
	o.lockfile = NULL;
	tmp.orphans_only = 1;
	f4_log(LOG_NOTICE, "%s: cleaning up orphan inodes before the "
	       "read-only mount", opts->device);
	ret = f4_fs_open(&tmp, &o);
	if (!ret)
		ret = f4_fs_close(&tmp);
	if (ret)
		f4_log(LOG_WARNING, "%s: orphan cleanup failed (%s); mounting "
		       "read-only with the orphans left in place",
		       opts->device, strerror(-ret));
}

static errcode_t open_fs(struct f4_opts *opts, int rw, int force,
			 ext2_filsys *fsp)
{
	int flags = EXT2_FLAG_64BITS;

	if (!opts->no_excl)
		flags |= EXT2_FLAG_EXCLUSIVE;
	if (rw)
		flags |= EXT2_FLAG_RW;
	if (force)
		flags |= EXT2_FLAG_FORCE | EXT2_FLAG_SKIP_MMP;
	return ext2fs_open2(opts->device, make_f4_io_options(opts), flags, 0,
			    0, f4_io_manager, fsp);
}

/* Is the device itself writable?  A read-only image falls back to ro. */
/*
 * Can we write the device?  A read-only block device (losetup -r, a
 * write-protected disk) still opens O_RDWR; only BLKROGET tells.
 */
static int device_writable(const char *device)
{
	int fd = open(device, O_RDWR | O_CLOEXEC);
	struct stat st;
	int ro = 0;

	if (fd < 0)
		return errno == EROFS || errno == EACCES || errno == EPERM ?
		       0 : 1;
	if (!fstat(fd, &st) && S_ISBLK(st.st_mode) &&
	    !ioctl(fd, BLKROGET, &ro) && ro) {
		close(fd);
		return 0;
	}
	close(fd);
	return 1;
}

static int check_device(struct f4_opts *opts)
{
	struct stat st;

	if (stat(opts->device, &st)) {
		f4_log(LOG_ERR, "%s: %s", opts->device, strerror(errno));
		return -errno;
	}
	if (S_ISDIR(st.st_mode)) {
		f4_log(LOG_ERR, "%s: is a directory, not a disk image or "
		       "block device", opts->device);
		return -EISDIR;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		f4_log(LOG_ERR, "%s: not a regular file or block device",
		       opts->device);
		return -EINVAL;
	}
	if (access(opts->device, R_OK)) {
		f4_log(LOG_ERR, "%s: cannot read: %s", opts->device,
		       strerror(errno));
		return -errno;
	}
	return 0;
}

static int check_mounted(struct f4_opts *opts)
{
	char mtpt[PATH_MAX];
	int mount_flags = 0;

	if (ext2fs_check_mount_point(opts->device, &mount_flags, mtpt,
				     sizeof(mtpt)))
		return 0;
	if (mount_flags & EXT2_MF_MOUNTED) {
		f4_log(LOG_ERR, "%s: already mounted on %s", opts->device,
		       mtpt[0] ? mtpt : "(unknown)");
		return -EBUSY;
	}
	return 0;
}

static void log_journal(void *arg, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	f4_log(LOG_NOTICE, "%s: %s", (const char *)arg, line);
}

/*
 * Replay the journal if the file system needs it.  The kernel replays even
 * for a read-only mount (unless told norecovery); so do we.  fs is a
 * read-only handle; the replay opens the device itself, so the caller
 * opens the file system again afterwards.
 */
static int maybe_recover(struct f4_opts *opts, ext2_filsys fs, int *rw,
			 int dev_writable)
{
	struct f4_journal_report rep;
	char why[256] = "";
	int ret;

	if (!ext2fs_has_feature_journal_needs_recovery(fs->super)) {
		if (opts->norecovery)
			return 0;
		ret = f4_journal_validate(fs, why, sizeof(why));
		if (ret)
			f4_log(LOG_ERR, "%s: bad journal: %s; run e2fsck, or "
			       "mount with -o ro,norecovery", opts->device,
			       why);
		return ret;
	}
	if (!ext2fs_has_feature_journal(fs->super)) {
		f4_log(LOG_WARNING, "%s: needs_recovery set without a "
		       "journal; ignoring", opts->device);
		return 0;
	}
	if (opts->norecovery) {
		f4_log(LOG_WARNING, "%s: journal needs recovery; norecovery "
		       "given, so not replaying it and mounting read-only "
		       "(recent changes may be missing)", opts->device);
		*rw = 0;
		return 0;
	}
	if (!dev_writable) {
		f4_log(LOG_ERR, "%s: journal needs recovery but the device "
		       "is read-only; use -o norecovery to mount it without "
		       "replaying", opts->device);
		return -EROFS;
	}
	ret = f4_journal_check(fs, region_bytes(opts), why, sizeof(why));
	if (ret < 0) {
		f4_log(LOG_ERR, "%s: cannot replay the journal: %s",
		       opts->device, why);
		return ret;
	}
	if (ret == 0)
		return 0;

	f4_log(LOG_NOTICE, "%s: recovering journal", opts->device);
	memset(&rep, 0, sizeof(rep));
	ret = f4_journal_recover(opts->device, make_io_options(opts),
				 region_bytes(opts), &rep, log_journal,
				 opts->device, why, sizeof(why));
	if (ret < 0) {
		f4_log(LOG_ERR, "%s: journal recovery failed: %s",
		       opts->device, why);
		return ret;
	}
	f4_log(LOG_NOTICE, "%s: journal recovered: %lu transaction%s, %lu "
	       "block%s replayed, %lu revoked%s", opts->device,
	       rep.transactions, rep.transactions == 1 ? "" : "s",
	       rep.blocks, rep.blocks == 1 ? "" : "s", rep.revoked,
	       rep.stopped_early ? " (stopped at an incomplete or damaged "
	       "transaction)" : "");
	if (rep.fs_error)
		f4_log(LOG_WARNING, "%s: the journal recorded an error; the "
		       "file system is marked as having errors, run e2fsck",
		       opts->device);
	return 0;
}

static int check_size(struct f4_opts *opts, ext2_filsys fs)
{
	blk64_t dev_blocks = region_bytes(opts) / fs->blocksize;

	if (!dev_blocks)
		return 0;
	if (ext2fs_blocks_count(fs->super) > dev_blocks) {
		f4_log(LOG_ERR, "%s: file system is %llu blocks but the "
		       "device holds only %llu: image truncated?",
		       opts->device,
		       (unsigned long long)ext2fs_blocks_count(fs->super),
		       (unsigned long long)dev_blocks);
		return -EINVAL;
	}
	return 0;
}

static int take_lockfile(struct f4fs *f)
{
	const char *path = f->opts->lockfile;

	f->lock_fd = -1;
	if (!path)
		return 0;
	f->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (f->lock_fd < 0) {
		f4_log(LOG_ERR, "lockfile %s: %s", path, strerror(errno));
		return -errno;
	}
	if (flock(f->lock_fd, LOCK_EX | LOCK_NB)) {
		f4_log(LOG_ERR, "lockfile %s: held by another process", path);
		close(f->lock_fd);
		f->lock_fd = -1;
		return -EBUSY;
	}
	return 0;
}

static void release_lockfile(struct f4fs *f)
{
	if (f->lock_fd < 0)
		return;
	close(f->lock_fd);
	unlink(f->opts->lockfile);
	f->lock_fd = -1;
}

static void warn_state(struct f4fs *f)
{
	struct ext2_super_block *sb = f->fs->super;

	if (sb->s_state & EXT2_ERROR_FS)
		f4_log(LOG_WARNING, "%s: file system has errors recorded; "
		       "running e2fsck is recommended", f->opts->device);
	else if (!(sb->s_state & EXT2_VALID_FS))
		f4_log(LOG_WARNING, "%s: file system was not cleanly "
		       "unmounted; running e2fsck is recommended",
		       f->opts->device);
}

/* A read-write mount: not clean until unmounted, and say where. */
static int mark_mounted(struct f4fs *f)
{
	struct ext2_super_block *sb = f->fs->super;
	time_t now = time(NULL);
	char path[PATH_MAX];

	f->mount_state = sb->s_state;
	if (f->orphans_only)
		return 0;		/* a read-only mount's orphan cleanup */
	sb->s_state &= ~EXT2_VALID_FS;
	sb->s_mnt_count++;
	sb->s_mtime = now;
	sb->s_mtime_hi = (uint64_t)now >> 32;
	if (f->opts->mountpoint &&
	    realpath(f->opts->mountpoint, path) != NULL) {
		memset(sb->s_last_mounted, 0, sizeof(sb->s_last_mounted));
		strncpy((char *)sb->s_last_mounted, path,
			sizeof(sb->s_last_mounted));
	}
	ext2fs_mark_super_dirty(f->fs);
	return f4_fs_flush(f);
}

static int load_bitmaps(struct f4fs *f)
{
	errcode_t err;

	err = ext2fs_read_bitmaps(f->fs);
	if (!err)
		return 0;
	f4_log(LOG_ERR, "%s: reading allocation bitmaps: %s; mounting "
	       "read-only, run e2fsck", f->opts->device, error_message(err));
	f4_record_mount_error(f, err, "reading allocation bitmaps");
	return -EFSCORRUPTED;
}

int f4_fs_open(struct f4fs *f, struct f4_opts *opts)
{
	int rw = !opts->readonly;
	int dev_writable, clean, cache_ready = 0;
	errcode_t err;
	int ret;

	initialize_ext2_error_table();
	f->opts = opts;
	f->lock_fd = -1;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->flusher_cond, NULL);
	list_init(&f->orphans);
	list_init(&f->dcache_lru);
	f->dcache_limit = F4_DCACHE_LIMIT;

	ret = check_device(opts);
	if (ret)
		return ret;
	if (opts->partition) {
		char why[200];
		unsigned long long size;

		ret = f4_find_partition(opts->device, opts->partition,
					&opts->offset, &size, why,
					sizeof(why));
		opts->size_limit = size;
		if (ret) {
			f4_log(LOG_ERR, "%s: partition %d: %s", opts->device,
			       opts->partition, why);
			return ret;
		}
	}
	dev_writable = device_writable(opts->device);
	if (rw && !dev_writable) {
		f4_log(LOG_WARNING, "%s: device is write-protected, mounting "
		       "read-only", opts->device);
		rw = 0;
	}
	ret = check_mounted(opts);
	if (ret)
		return ret;

	/*
	 * First a read-only look: name what we can't handle, and replay the
	 * journal before anything opens the file system for writing.
	 */
	err = open_fs(opts, 0, 1, &f->fs);
	if (err)
		return explain_open_error(opts, err, 0);
	ret = check_features(opts, f->fs, &rw);
	if (!ret)
		ret = check_geometry(opts, f->fs);
	if (!ret)
		ret = maybe_recover(opts, f->fs, &rw, dev_writable);
	clean = !ret && want_ro_orphan_cleanup(opts, f->fs, dev_writable);
	ext2fs_free(f->fs);
	f->fs = NULL;
	if (ret)
		return ret;
	if (clean && !f->orphans_only)
		clean_orphans_for_ro(opts);

	err = open_fs(opts, rw, 0, &f->fs);
	if (err == EXT2_ET_RO_UNSUPP_FEATURE && rw) {
		f4_log(LOG_ERR, "%s: file system has read-only-compatible "
		       "features fuse4fs cannot write; mount with -o ro",
		       opts->device);
		return -EROFS;
	}
	if (err)
		return explain_open_error(opts, err, rw);
	ret = check_size(opts, f->fs);
	if (ret)
		goto fail;

	f->fs->flags |= EXT2_FLAG_MASTER_SB_ONLY;
	f->blocksize = f->fs->blocksize;
	f->inode_size = EXT2_INODE_SIZE(f->fs->super);
	f4_io_limit(f->fs->io, ext2fs_blocks_count(f->fs->super));
	f4_io_set_cache_size(f->fs->io, opts->cache_size ?
			     opts->cache_size : F4_DEFAULT_CACHE_SIZE);
	ext2fs_create_inode_cache(f->fs, 256);

	warn_state(f);
	if (rw) {
		ret = load_bitmaps(f);
		if (ret) {
			ext2fs_free(f->fs);
			f->fs = NULL;
			rw = 0;
			err = open_fs(opts, 0, 0, &f->fs);
			if (err)
				return explain_open_error(opts, err, 0);
			f->fs->flags |= EXT2_FLAG_MASTER_SB_ONLY;
		}
	}
	f->ro = !rw;
	find_journal_size(f);
	compute_overhead(f);

	ret = take_lockfile(f);
	if (ret)
		goto fail;
	ret = f4_alloc_init(f);
	if (ret)
		goto fail;
	ret = f4_map_init(f);
	if (ret)
		goto fail;
	ret = f4_inode_init_cache(f);
	if (ret)
		goto fail;
	cache_ready = 1;
	if (rw) {
		ret = mark_mounted(f);
		if (ret)
			goto fail;
		ret = f4_orphan_recover(f);
		if (ret)
			goto fail;
	} else {
		f4_orphan_load(f);
	}
	return 0;
fail:
	if (cache_ready) {
		f4_orphan_forget_all(f);
		f4_inode_destroy_cache(f);
	}
	f4_map_free(f);
	f4_alloc_free(f);
	release_lockfile(f);
	if (f->fs)
		ext2fs_free(f->fs);
	f->fs = NULL;
	return ret;
}

int f4_fs_close(struct f4fs *f)
{
	struct ext2_super_block *sb;
	errcode_t err = 0;
	int ret = 0;

	if (!f->fs)
		return 0;
	sb = f->fs->super;
	if (f->shutdown) {
		f4_alloc_free(f);
		/* errors=panic: the error is on disk; write nothing more */
		ext2fs_free(f->fs);
	} else if (f->fs->flags & EXT2_FLAG_RW) {
		/* The kernel is gone: nobody can reach orphans any more */
		if (!f->forced_ro)
			ret = f4_orphan_release_all(f);
		/*
		 * Lifetime writes, counted once: ext2fs_close2() adds what
		 * get_stats reports too, but only to a counter already in
		 * use, and the bytes taken here are no longer reported.
		 */
		sb->s_kbytes_written += f4_io_take_written(f->fs->io) >> 10;
		/* Back to the state at mount, plus any error we found */
		sb->s_state = (f->mount_state & (EXT2_VALID_FS |
						 EXT2_ERROR_FS)) |
			      (sb->s_state & EXT2_ERROR_FS);
		if (f->mount_state & EXT2_VALID_FS)
			sb->s_state |= EXT2_VALID_FS;
		ext2fs_mark_super_dirty(f->fs);
		f4_alloc_free(f);
		err = ext2fs_close2(f->fs, 0);
		if (err) {
			f4_log(LOG_ERR, "%s: writing the file system at "
			       "unmount: %s", f->opts->device,
			       error_message(err));
			ext2fs_free(f->fs);
			ret = f4_errno(err);
		}
	} else {
		f4_alloc_free(f);
		ext2fs_free(f->fs);
	}
	f->fs = NULL;
	f4_map_free(f);
	/* Orphans not released (read-only now, or stopped): memory only */
	f4_orphan_forget_all(f);
	f4_inode_destroy_cache(f);
	release_lockfile(f);
	return ret;
}

/*
 * inode.c - in-core inode records, attributes and timestamps.
 *
 * The kernel's FUSE nodeid is the ext2 inode number, so the record of an
 * inode is simply keyed by it.  A record exists while the kernel holds a
 * lookup reference or an open file; it pins itself in the cache for as
 * long as either is true, and the cache may reclaim it afterwards.  What
 * the record remembers (lookup and open counts, orphan state) is exactly
 * what forget, release and unlink must agree on.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "fuse4fs.h"

/* ---- records ---------------------------------------------------------- */

static struct cache_node *irec_alloc(struct cache *c, uint64_t key, void *arg)
{
	struct f4_inode *in = calloc(1, sizeof(*in));

	if (!in)
		return NULL;
	in->cnode.key = key;
	in->ino = key;
	list_init(&in->orphan_link);
	list_init(&in->open_dirs);
	return &in->cnode;
}

static void irec_release(struct cache *c, struct cache_node *n)
{
	struct f4_inode *in = container_of(n, struct f4_inode, cnode);

	f4_dcache_drop(cache_priv(c), in);
	free(in);
}

static const struct cache_ops irec_ops = {
	.alloc = irec_alloc,
	.release = irec_release,
};

int f4_inode_init_cache(struct f4fs *f)
{
	/*
	 * Referenced records are never reclaimed, so this only bounds how
	 * many unreferenced ones linger for reuse.
	 */
	if (cache_init(&f->inodes, &irec_ops, 16384, f))
		return -ENOMEM;
	return 0;
}

/* The kernel is gone: the generations it knew need no pins any more. */
static int unpin_kernel_gen(struct cache *c, struct cache_node *n, void *arg)
{
	struct f4_inode *in = container_of(n, struct f4_inode, cnode);
	struct f4fs *f = arg;

	if (in->flags & F4I_KERNEL_GEN) {
		in->flags &= ~F4I_KERNEL_GEN;
		f->nkernel_gen--;
		cache_put(c, n);
	}
	return 0;
}

void f4_inode_destroy_cache(struct f4fs *f)
{
	struct cache_stats st;

	if (f->nkernel_gen)
		cache_walk(&f->inodes, unpin_kernel_gen, f);
	cache_get_stats(&f->inodes, &st);
	if (st.referenced)
		f4_log(7, "%zu inode records still referenced at unmount",
		       st.referenced);
	cache_destroy(&f->inodes);
	f4_lookups_free(&f->lookups);
}

struct f4_inode *f4_iget(struct f4fs *f, ext2_ino_t ino)
{
	struct cache_node *n = cache_get(&f->inodes, ino, 0, NULL);

	return n ? container_of(n, struct f4_inode, cnode) : NULL;
}

struct f4_inode *f4_iget_incore(struct f4fs *f, ext2_ino_t ino)
{
	struct cache_node *n = cache_get(&f->inodes, ino, CACHE_GET_INCORE,
					 NULL);

	return n ? container_of(n, struct f4_inode, cnode) : NULL;
}

void f4_iput(struct f4fs *f, struct f4_inode *inode)
{
	if (inode)
		cache_put(&f->inodes, &inode->cnode);
}

/* The kernel now holds one more reference to ino. */
int f4_lookup_ref(struct f4fs *f, ext2_ino_t ino)
{
	return f4_lookups_inc(&f->lookups, ino);
}

uint32_t f4_nlookup(struct f4fs *f, ext2_ino_t ino)
{
	return f4_lookups_get(&f->lookups, ino);
}

/*
 * The kernel compares the generation of every lookup reply with the one
 * it was first given for the inode, and takes an inode whose generation
 * changed for stale: its open files then fail with EIO.  So when
 * FS_IOC_SETVERSION changes the generation of an inode the kernel holds,
 * the kernel keeps hearing the old one (gen) until it forgets the inode;
 * the record is pinned till then.  After that, lookups (and so file
 * handles) see the new one, as ext4's handles do at once.
 */
int f4_keep_kernel_gen(struct f4fs *f, ext2_ino_t ino, uint32_t gen)
{
	struct f4_inode *in;

	if (!f4_nlookup(f, ino))
		return 0;
	in = f4_iget(f, ino);
	if (!in)
		return -ENOMEM;
	if (in->flags & F4I_KERNEL_GEN) {
		f4_iput(f, in);		/* pinned already, with the first */
		return 0;
	}
	in->flags |= F4I_KERNEL_GEN;
	in->kernel_gen = gen;
	f->nkernel_gen++;
	return 0;
}

/* The generation to give the kernel for ino, whose disk one is gen. */
static uint32_t kernel_gen(struct f4fs *f, ext2_ino_t ino, uint32_t gen)
{
	struct f4_inode *in;

	if (!f->nkernel_gen)
		return gen;
	in = f4_iget_incore(f, ino);
	if (!in)
		return gen;
	if (in->flags & F4I_KERNEL_GEN)
		gen = in->kernel_gen;
	f4_iput(f, in);
	return gen;
}

int f4_forget(struct f4fs *f, ext2_ino_t ino, uint64_t nlookup)
{
	struct f4_inode *in;

	if (f4_lookups_dec(&f->lookups, ino, nlookup))
		return 0;
	/* the kernel let go: an orphan it was the last user of goes now */
	in = f4_iget_incore(f, ino);
	if (!in)
		return 0;
	if (in->flags & F4I_KERNEL_GEN) {
		in->flags &= ~F4I_KERNEL_GEN;
		f->nkernel_gen--;
		f4_iput(f, in);		/* the pin of f4_keep_kernel_gen() */
	}
	f4_maybe_free(f, in);
	f4_iput(f, in);
	return 0;
}

/* ---- on-disk inodes --------------------------------------------------- */

int f4_check_ino(struct f4fs *f, ext2_ino_t ino)
{
	if (ino == EXT2_ROOT_INO)
		return 0;
	if (ino < EXT2_FIRST_INODE(f->fs->super) ||
	    ino > f->fs->super->s_inodes_count)
		return -EFSCORRUPTED;
	return 0;
}

/*
 * What ext4 refuses in a live inode before anyone uses it: nonsense here
 * would otherwise reach the kernel (a file type it can't handle, a
 * negative size) or send libext2fs down the wrong mapping code.
 */
static int check_live_inode(struct f4fs *f, ext2_ino_t ino,
			    const struct ext2_inode_large *inode)
{
	uint64_t size = EXT2_I_SIZE(inode);

	switch (inode->i_mode & LINUX_S_IFMT) {
	case LINUX_S_IFREG:
	case LINUX_S_IFDIR:
	case LINUX_S_IFLNK:
	case LINUX_S_IFCHR:
	case LINUX_S_IFBLK:
	case LINUX_S_IFIFO:
	case LINUX_S_IFSOCK:
		break;
	default:
		return f4_corrupt(f, ino, "bad file type (mode 0%o)",
				  inode->i_mode);
	}
	if ((int64_t)size < 0)
		return f4_corrupt(f, ino, "bad i_size %llu",
				  (unsigned long long)size);
	if ((inode->i_flags & EXT4_INLINE_DATA_FL) &&
	    ((inode->i_flags & EXT4_EXTENTS_FL) ||
	     !ext2fs_has_feature_inline_data(f->fs->super)))
		return f4_corrupt(f, ino, "inline data flag with extents, "
				  "or without the inline_data feature");
	return 0;
}

int f4_read_inode(struct f4fs *f, ext2_ino_t ino,
		  struct ext2_inode_large *inode)
{
	errcode_t err;

	if (ino < 1 || ino > f->fs->super->s_inodes_count)
		return f4_corrupt(f, ino, "inode number out of range");
	memset(inode, 0, sizeof(*inode));
	err = ext2fs_read_inode_full(f->fs, ino, (struct ext2_inode *)inode,
				     sizeof(*inode));
	if (err)
		return f4_fs_error(f, ino, err, "reading inode");
	if (f->inode_size > EXT2_GOOD_OLD_INODE_SIZE &&
	    (inode->i_extra_isize & 3 ||
	     inode->i_extra_isize > f->inode_size - EXT2_GOOD_OLD_INODE_SIZE))
		return f4_corrupt(f, ino, "bad i_extra_isize %u",
				  inode->i_extra_isize);
	if (inode->i_links_count)
		return check_live_inode(f, ino, inode);
	return 0;
}

int f4_write_inode(struct f4fs *f, ext2_ino_t ino,
		   struct ext2_inode_large *inode)
{
	errcode_t err;

	err = ext2fs_write_inode_full(f->fs, ino, (struct ext2_inode *)inode,
				      sizeof(*inode));
	if (err)
		return f4_fs_error(f, ino, err, "writing inode");
	f4_fs_dirty(f);
	return 0;
}

/* ---- timestamps ------------------------------------------------------- */

void f4_now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

/* Is field (ending at byte end of the large inode) present on disk? */
int f4_inode_has_extra(struct f4fs *f, const struct ext2_inode_large *inode,
		       size_t end)
{
	if (f->inode_size <= EXT2_GOOD_OLD_INODE_SIZE)
		return 0;
	return EXT2_GOOD_OLD_INODE_SIZE + inode->i_extra_isize >= end;
}

#define FIELD_END(field) \
	(offsetof(struct ext2_inode_large, field) + \
	 sizeof(((struct ext2_inode_large *)0)->field))

static uint32_t encode_extra(const struct timespec *ts)
{
	int64_t sec = ts->tv_sec;
	uint32_t epoch = ((sec - (int32_t)sec) >> 32) & EXT4_EPOCH_MASK;

	return ((uint32_t)ts->tv_nsec << EXT4_EPOCH_BITS) | epoch;
}

static void decode_time(uint32_t lo, uint32_t extra, int has_extra,
			struct timespec *ts)
{
	int64_t sec = (int32_t)lo;

	ts->tv_nsec = 0;
	if (has_extra) {
		sec += (int64_t)(extra & EXT4_EPOCH_MASK) << 32;
		ts->tv_nsec = extra >> EXT4_EPOCH_BITS;
		if (ts->tv_nsec >= 1000000000)
			ts->tv_nsec = 0;
	}
	ts->tv_sec = sec;
}

/*
 * What ext4 can store: 32-bit signed seconds, extended by two epoch bits
 * (to 2446) where the inode has the extra fields.  Like the kernel, clamp
 * anything outside and drop the nanoseconds at the limits.
 */
static struct timespec clamp_time(int extra, const struct timespec *ts)
{
	int64_t min = INT32_MIN;
	int64_t max = extra ? (int64_t)INT32_MIN + (1LL << 34) - 1 : INT32_MAX;
	struct timespec t = *ts;

	if (t.tv_sec <= min) {
		t.tv_sec = min;
		t.tv_nsec = 0;
	} else if (t.tv_sec >= max) {
		t.tv_sec = max;
		t.tv_nsec = 0;
	}
	if (!extra)
		t.tv_nsec = 0;
	return t;
}

void f4_set_time(struct f4fs *f, struct ext2_inode_large *inode, int which,
		 const struct timespec *when)
{
	int extra = f4_inode_has_extra(f, inode, FIELD_END(i_atime_extra));
	struct timespec clamped = clamp_time(extra, when);
	const struct timespec *ts = &clamped;
	uint32_t lo = (uint32_t)ts->tv_sec;

	switch (which) {
	case F4_ATIME:
		inode->i_atime = lo;
		if (f4_inode_has_extra(f, inode, FIELD_END(i_atime_extra)))
			inode->i_atime_extra = encode_extra(ts);
		break;
	case F4_MTIME:
		inode->i_mtime = lo;
		if (f4_inode_has_extra(f, inode, FIELD_END(i_mtime_extra)))
			inode->i_mtime_extra = encode_extra(ts);
		break;
	case F4_CTIME:
		inode->i_ctime = lo;
		if (f4_inode_has_extra(f, inode, FIELD_END(i_ctime_extra)))
			inode->i_ctime_extra = encode_extra(ts);
		break;
	case F4_CRTIME:
		if (f4_inode_has_extra(f, inode, FIELD_END(i_crtime_extra))) {
			inode->i_crtime = lo;
			inode->i_crtime_extra = encode_extra(ts);
		}
		break;
	}
}

void f4_get_time(struct f4fs *f, const struct ext2_inode_large *inode,
		 int which, struct timespec *ts)
{
	switch (which) {
	case F4_ATIME:
		decode_time(inode->i_atime, inode->i_atime_extra,
			    f4_inode_has_extra(f, inode,
					       FIELD_END(i_atime_extra)), ts);
		break;
	case F4_MTIME:
		decode_time(inode->i_mtime, inode->i_mtime_extra,
			    f4_inode_has_extra(f, inode,
					       FIELD_END(i_mtime_extra)), ts);
		break;
	case F4_CTIME:
		decode_time(inode->i_ctime, inode->i_ctime_extra,
			    f4_inode_has_extra(f, inode,
					       FIELD_END(i_ctime_extra)), ts);
		break;
	default:
		decode_time(inode->i_crtime, inode->i_crtime_extra,
			    f4_inode_has_extra(f, inode,
					       FIELD_END(i_crtime_extra)), ts);
	}
}

/* Update mtime and/or ctime to now, as a change to the inode does. */
void f4_touch(struct f4fs *f, struct ext2_inode_large *inode, int mask)
{
	struct timespec now;

	f4_now(&now);
	if (mask & F4_TOUCH_M)
		f4_set_time(f, inode, F4_MTIME, &now);
	if (mask & F4_TOUCH_C)
		f4_set_time(f, inode, F4_CTIME, &now);
}

/* ---- attributes ------------------------------------------------------- */

static dev_t decode_rdev(const struct ext2_inode_large *inode)
{
	uint32_t old = inode->i_block[0], new = inode->i_block[1];

	if (old)
		return makedev((old >> 8) & 0xff, old & 0xff);
	return makedev((new & 0xfff00) >> 8,
		       (new & 0xff) | ((new >> 12) & 0xfff00));
}

void f4_inode_to_stat(struct f4fs *f, ext2_ino_t ino,
		      const struct ext2_inode_large *inode, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = inode->i_mode;
	/* dir_nlink keeps 1 on disk for "too many"; 0 is a removed directory */
	st->st_nlink = inode->i_links_count;
	st->st_uid = inode_uid(*inode);
	st->st_gid = inode_gid(*inode);
	st->st_size = EXT2_I_SIZE(inode);
	st->st_blksize = f->blocksize;
	st->st_blocks = ext2fs_get_stat_i_blocks(f->fs,
						 (struct ext2_inode *)inode);
	/*
	 * Like ext4, count inline data as sectors, so that tools don't
	 * take a small inline file for an entirely sparse one.
	 */
	if ((inode->i_flags & EXT4_INLINE_DATA_FL) &&
	    LINUX_S_ISREG(inode->i_mode))
		st->st_blocks += (st->st_size + 511) >> 9;
	if (LINUX_S_ISCHR(inode->i_mode) || LINUX_S_ISBLK(inode->i_mode))
		st->st_rdev = decode_rdev(inode);
	f4_get_time(f, inode, F4_ATIME, &st->st_atim);
	f4_get_time(f, inode, F4_MTIME, &st->st_mtim);
	f4_get_time(f, inode, F4_CTIME, &st->st_ctim);
}

int f4_getattr(struct f4fs *f, ext2_ino_t ino, struct stat *st)
{
	struct ext2_inode_large inode;
	int ret;

	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	f4_inode_to_stat(f, ino, &inode, st);
	return 0;
}

static int fill_entry(struct f4fs *f, ext2_ino_t ino, struct f4_entry *e,
		      int linked)
{
	struct ext2_inode_large inode;
	int ret;

	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if (!inode.i_mode || (linked && !inode.i_links_count))
		return f4_corrupt(f, ino, "directory entry points to an "
				  "unused inode");
	e->ino = ino;
	e->generation = kernel_gen(f, ino, inode.i_generation);
	f4_inode_to_stat(f, ino, &inode, &e->attr);
	return 0;
}

/* Fill a lookup reply for ino; the caller takes the lookup reference. */
int f4_fill_entry(struct f4fs *f, ext2_ino_t ino, struct f4_entry *e)
{
	return fill_entry(f, ino, e, 1);
}

/* The same for an inode with no name (O_TMPFILE, unlinked while open). */
int f4_fill_entry_unlinked(struct f4fs *f, ext2_ino_t ino, struct f4_entry *e)
{
	return fill_entry(f, ino, e, 0);
}

/*
 * The kernel's rule for dropping setuid/setgid when a file's contents or
 * owner change: setuid always, setgid when it is group-executable or the
 * one making the change is not in the file's group (and not root).
 */
void f4_kill_suid(struct f4fs *f, struct f4_cred *cred,
		  struct ext2_inode_large *inode)
{
	inode->i_mode &= ~LINUX_S_ISUID;
	if (!(inode->i_mode & LINUX_S_ISGID))
		return;
	if ((inode->i_mode & LINUX_S_IXGRP) ||
	    (cred && !f4_capable(f, cred) &&
	     !f4_in_group(cred, inode_gid(*inode))))
		inode->i_mode &= ~LINUX_S_ISGID;
}

/*
 * Immutable inodes change in no way; append-only ones may only have their
 * times set to "now" (and lose setuid/setgid), as in the kernel.
 */
static int setattr_flags_check(const struct ext2_inode_large *inode,
			       int to_set)
{
	int explicit_times = ((to_set & F4_SET_ATIME) &&
			      !(to_set & F4_SET_ATIME_NOW)) ||
			     ((to_set & F4_SET_MTIME) &&
			      !(to_set & F4_SET_MTIME_NOW)) ||
			     (to_set & F4_SET_CTIME);

	to_set &= ~F4_SET_KILL_SUIDGID;
	if ((inode->i_flags & EXT2_IMMUTABLE_FL) && to_set)
		return -EPERM;
	if ((inode->i_flags & EXT2_APPEND_FL) &&
	    ((to_set & (F4_SET_SIZE | F4_SET_MODE | F4_SET_UID |
			F4_SET_GID)) || explicit_times))
		return -EPERM;
	return 0;
}

/*
 * Is this chmod the one the kernel sends on a writer's behalf, to drop
 * setuid (and setgid, when group-executable) from a regular file it is
 * about to write?  Exactly those bits, nothing else, on nothing else.
 */
static int is_writer_killpriv(struct f4fs *f, const struct stat *attr,
			      const struct ext2_inode_large *inode, int to_set)
{
	mode_t old = inode->i_mode & 07777, new = old & ~S_ISUID;

	/*
	 * chmod(2) sets a ctime too, and with the write-back cache the
	 * kernel passes it on; its own killpriv sets none (except along
	 * with a truncate's size).  Without the cache the two look alike:
	 * a writer may then drop exactly what a write would have dropped.
	 */
	if (!LINUX_S_ISREG(inode->i_mode) ||
	    (f->writeback && (to_set & F4_SET_CTIME) &&
	     !(to_set & F4_SET_SIZE)))
		return 0;
	if ((old & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		new &= ~S_ISGID;
	return new != old && (attr->st_mode & 07777) == new;
}

/*
 * Does this set every time it sets to "now" (utimensat(2) with UTIME_NOW
 * or UTIME_OMIT only)?  With the write-back cache the kernel sends its
 * own "now" as an explicit mtime, the same instant as the ctime it sends
 * along; a caller who gives exactly that instant asks for nothing more.
 */
static int times_are_now(struct f4fs *f, const struct stat *attr,
			 int to_set)
{
	if ((to_set & F4_SET_ATIME) && !(to_set & F4_SET_ATIME_NOW))
		return 0;
	if (!(to_set & F4_SET_MTIME) || (to_set & F4_SET_MTIME_NOW))
		return 1;
	return f->writeback && (to_set & F4_SET_CTIME) &&
	       attr->st_mtim.tv_sec == attr->st_ctim.tv_sec &&
	       attr->st_mtim.tv_nsec == attr->st_ctim.tv_nsec;
}

static int setattr_perm(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
			struct ext2_inode_large *inode, const struct stat *attr,
			int to_set, struct f4_file *fh)
{
	int owner = f4_is_owner(f, cred, inode);
	int ret;

	if (!f4_self_checks(f) || f4_capable(f, cred))
		return 0;
	/* chown first: the kernel may send its killpriv chmod along */
	if (to_set & F4_SET_UID) {
		if (attr->st_uid != inode_uid(*inode) || !owner)
			return -EPERM;
	}
	if (to_set & F4_SET_GID) {
		if (!owner)
			return -EPERM;
		if (attr->st_gid != inode_gid(*inode) &&
		    !f4_in_group(cred, attr->st_gid))
			return -EPERM;
	}
	if ((to_set & F4_SET_SIZE) && !fh) {
		ret = f4_check_perm(f, cred, inode, ino, MAY_WRITE);
		if (ret)
			return ret;
	}
	/*
	 * libfuse 3.14 doesn't take on HANDLE_KILLPRIV, so the kernel clears
	 * setuid/setgid for a writer by sending a chmod with the writer's
	 * credentials.  Allow exactly that to anyone who may write the file:
	 * a write would have cleared the same bits.
	 */
	if ((to_set & F4_SET_MODE) && !owner) {
		if (!is_writer_killpriv(f, attr, inode, to_set) ||
		    f4_check_perm(f, cred, inode, ino, MAY_WRITE))
			return -EPERM;
	}
	/*
	 * Times that come with a size change are the truncate's own.  With
	 * the kernel's write-back cache every time change comes with a
	 * ctime, utimes(2) included; only the kernel flushing the times of
	 * writes it has already allowed names an open file (fh) and sets no
	 * atime.
	 */
	if ((to_set & (F4_SET_ATIME | F4_SET_MTIME)) && !owner &&
	    !(to_set & F4_SET_SIZE) &&
	    !(f->writeback && fh && (to_set & F4_SET_CTIME) &&
	      !(to_set & F4_SET_ATIME))) {
		/* Setting times to "now" needs only write permission */
		if (!times_are_now(f, attr, to_set))
			return -EPERM;
		ret = f4_check_perm(f, cred, inode, ino, MAY_WRITE);
		if (ret)
			return ret;
	}
	return 0;
}

static void apply_owner(struct f4fs *f, struct f4_cred *cred,
			struct ext2_inode_large *inode,
			const struct stat *attr, int to_set)
{
	int changed = 0;

	/*
	 * chown drops setuid/setgid from non-directories, even for root;
	 * whether setgid goes depends on the group the file had before.
	 */
	if ((to_set & (F4_SET_UID | F4_SET_GID)) &&
	    !LINUX_S_ISDIR(inode->i_mode))
		f4_kill_suid(f, cred, inode);
	if ((to_set & F4_SET_UID) && attr->st_uid != inode_uid(*inode)) {
		inode->i_uid = attr->st_uid;
		ext2fs_set_i_uid_high(*inode, attr->st_uid >> 16);
		changed = 1;
	}
	if ((to_set & F4_SET_GID) && attr->st_gid != inode_gid(*inode)) {
		inode->i_gid = attr->st_gid;
		ext2fs_set_i_gid_high(*inode, attr->st_gid >> 16);
		changed = 1;
	}
	(void)changed;
}

static void apply_times(struct f4fs *f, struct ext2_inode_large *inode,
			const struct stat *attr, int to_set)
{
	struct timespec now;

	f4_now(&now);
	if (to_set & F4_SET_ATIME)
		f4_set_time(f, inode, F4_ATIME, (to_set & F4_SET_ATIME_NOW) ?
			    &now : &attr->st_atim);
	if (to_set & F4_SET_MTIME)
		f4_set_time(f, inode, F4_MTIME, (to_set & F4_SET_MTIME_NOW) ?
			    &now : &attr->st_mtim);
	if (to_set & F4_SET_CTIME)
		f4_set_time(f, inode, F4_CTIME, &attr->st_ctim);
	else
		f4_set_time(f, inode, F4_CTIME, &now);
}

int f4_setattr(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
	       const struct stat *attr, int to_set, struct f4_file *fh,
	       struct stat *out)
{
	struct ext2_inode_large inode;
	int chown_nop, ret;

	ret = f4_check_writable(f);
	if (ret)
		return ret;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	ret = setattr_perm(f, cred, ino, &inode, attr, to_set, fh);
	if (ret)
		return ret;
	ret = setattr_flags_check(&inode, to_set);
	if (ret)
		return ret;

	if (to_set & F4_SET_SIZE) {
		if (LINUX_S_ISDIR(inode.i_mode))
			return -EISDIR;
		if (!LINUX_S_ISREG(inode.i_mode))
			return -EINVAL;
		if ((uint64_t)attr->st_size > f4_max_file_size(f, &inode))
			return -EFBIG;
		ret = f4_truncate(f, ino, &inode, attr->st_size);
		if (ret)
			return ret;
		if (!f4_capable(f, cred))
			f4_kill_suid(f, cred, &inode);
		f4_touch(f, &inode, F4_TOUCH_MC);
	}
	/*
	 * A setattr that sets nothing (libfuse 3.14 drops the ctime and
	 * kill-suid bits) is what chown(f, -1, -1) sends: it still drops
	 * setuid/setgid, which with HANDLE_KILLPRIV_V2 the kernel leaves to
	 * us.
	 */
	chown_nop = !(to_set & ~(F4_SET_CTIME | F4_SET_KILL_SUIDGID)) &&
		    !LINUX_S_ISDIR(inode.i_mode);
	if ((to_set & F4_SET_KILL_SUIDGID) || chown_nop)
		f4_kill_suid(f, cred, &inode);
	if (to_set & F4_SET_MODE) {
		mode_t mode = attr->st_mode & 07777;

		/*
		 * Only group members keep setgid, as chmod(2) says (with
		 * default_permissions the kernel has already seen to it).
		 */
		if (!f4_capable(f, cred) &&
		    !f4_in_group(cred, inode_gid(inode)))
			mode &= ~S_ISGID;
		inode.i_mode = (inode.i_mode & LINUX_S_IFMT) | mode;
	}
	apply_owner(f, cred, &inode, attr, to_set);
	apply_times(f, &inode, attr, to_set);

	ret = f4_write_inode(f, ino, &inode);
	if (ret)
		return ret;
	/* Truncating or chowning drops file capabilities too (killpriv) */
	if (((to_set & (F4_SET_SIZE | F4_SET_UID | F4_SET_GID)) ||
	     chown_nop) && !LINUX_S_ISDIR(inode.i_mode)) {
		ret = f4_kill_caps(f, ino);
		if (!ret)
			ret = f4_read_inode(f, ino, &inode);
		if (ret)
			return ret;
	}
	if ((to_set & F4_SET_MODE) && f->opts->acl) {
		ret = f4_acl_chmod(f, ino, inode.i_mode);
		if (ret)
			return ret;
		ret = f4_read_inode(f, ino, &inode);
		if (ret)
			return ret;
	}
	if (out)
		f4_inode_to_stat(f, ino, &inode, out);
	return 0;
}

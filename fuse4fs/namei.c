/*
 * namei.c - names: lookup, create, mknod, mkdir, symlink, link, unlink,
 * rmdir, rename, and the inodes they create and release.
 *
 * Each function checks what the kernel's ext4 (and VFS, when fuse4fs
 * makes the permission checks) would check, in the same order where it
 * changes the errno a caller sees, then changes directory entries, link
 * counts and timestamps.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "fuse4fs.h"
#include <ext2fs/ext3_extents.h>

/* Flags a new inode inherits from its directory, as ext4 does. */
#define INHERITED_FL	(EXT2_SYNC_FL | EXT2_NODUMP_FL | EXT2_NOATIME_FL | \
			 EXT2_DIRSYNC_FL | EXT4_PROJINHERIT_FL)
#define DIR_ONLY_FL	(EXT2_DIRSYNC_FL | EXT2_TOPDIR_FL)

int f4_check_name(const char *name, size_t *lenp)
{
	size_t len = strlen(name);

	if (len > F4_NAME_MAX)
		return -ENAMETOOLONG;
	if (!len)
		return -ENOENT;
	if (lenp)
		*lenp = len;
	return 0;
}

static int is_dot_or_dotdot(const char *name)
{
	return name[0] == '.' &&
	       (!name[1] || (name[1] == '.' && !name[2]));
}

static int dir_is_dx(const struct ext2_inode_large *dir)
{
	return !!(dir->i_flags & EXT2_INDEX_FL);
}

/* ext4's rule for a directory gaining a subdirectory. */
static int dir_link_max(struct f4fs *f, const struct ext2_inode_large *dir)
{
	if (dir->i_links_count < F4_LINK_MAX)
		return 0;
	return !(ext2fs_has_feature_dir_nlink(f->fs->super) &&
		 dir_is_dx(dir));
}

static void inc_dir_count(struct f4fs *f, struct ext2_inode_large *dir)
{
	/*
	 * With dir_nlink, an indexed directory with too many subdirectories
	 * to count says 1, and stays at 1.
	 */
	dir->i_links_count++;
	if (dir_is_dx(dir) && ext2fs_has_feature_dir_nlink(f->fs->super) &&
	    (dir->i_links_count > F4_LINK_MAX || dir->i_links_count == 2))
		dir->i_links_count = 1;
}

static void dec_dir_count(struct ext2_inode_large *dir)
{
	if (dir->i_links_count > 2)
		dir->i_links_count--;
}

static int sync_dir(struct f4fs *f, const struct ext2_inode_large *dir)
{
	if (f->opts->dirsync || f->opts->sync ||
	    (dir->i_flags & (EXT2_DIRSYNC_FL | EXT2_SYNC_FL)))
		return f4_fs_flush(f);
	return 0;
}

/*
 * Read a directory that is about to change, and check we may change it:
 * search and write permission, and no immutable or (for removal)
 * append-only flag.
 */
static int prep_dir(struct f4fs *f, struct f4_cred *cred, ext2_ino_t dir,
		    struct ext2_inode_large *inode, int removing)
{
	int ret;

	ret = f4_read_inode(f, dir, inode);
	if (ret)
		return ret;
	if (!LINUX_S_ISDIR(inode->i_mode))
		return -ENOTDIR;
	if (!inode->i_links_count)
		return -ENOENT;			/* removed while open */
	ret = f4_check_perm(f, cred, inode, dir, MAY_WRITE | MAY_EXEC);
	if (ret)
		return ret;
	return f4_check_immutable(inode, removing ? F4_OP_UNLINK :
				  F4_OP_WRITE);
}

/*
 * "." of any inode: the kernel resolves "." and ".." itself on a path
 * walk, and asks for them only to turn a file handle (NFS export,
 * open_by_handle_at) back into an inode it no longer holds.  A number
 * that is no live inode makes the handle stale; the kernel compares the
 * generation with the handle's.
 */
static int lookup_self(struct f4fs *f, ext2_ino_t ino, struct f4_entry *e)
{
	struct ext2_inode_large inode;
	int ret;

	if (f4_check_ino(f, ino) ||
	    !ext2fs_test_inode_bitmap2(f->fs->inode_map, ino))
		return -ESTALE;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if (!inode.i_links_count || !inode.i_mode)
		return -ESTALE;
	return f4_fill_entry(f, ino, e);
}

/*
 * "." and "..", asked for by the kernel's export operations only: like
 * ext4's, they check no permission (decoding a handle takes privilege).
 */
static int lookup_dots(struct f4fs *f, ext2_ino_t parent, const char *name,
		       size_t len, struct f4_entry *e)
{
	struct ext2_inode_large inode;
	ext2_ino_t ino;
	int ret;

	ret = lookup_self(f, parent, e);
	if (ret || len == 1)
		return ret;
	ret = f4_read_inode(f, parent, &inode);
	if (ret)
		return ret;
	if (!LINUX_S_ISDIR(inode.i_mode))
		return -ENOTDIR;
	ret = f4_dir_lookup(f, parent, name, len, &ino, NULL);
	if (ret)
		return ret;
	return f4_fill_entry(f, ino, e);
}

int f4_lookup(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	      const char *name, struct f4_entry *e)
{
	ext2_ino_t ino;
	size_t len;
	int ret;

	ret = f4_check_name(name, &len);
	if (ret)
		return ret;
	if (is_dot_or_dotdot(name)) {
		ret = lookup_dots(f, parent, name, len, e);
		return ret ? ret : f4_lookup_ref(f, e->ino);
	}
	ret = f4_check_ino_perm(f, cred, parent, MAY_EXEC);
	if (ret)
		return ret;
	ret = f4_dir_lookup(f, parent, name, len, &ino, NULL);
	if (ret)
		return ret;
	ret = f4_fill_entry(f, ino, e);
	if (ret)
		return ret;
	return f4_lookup_ref(f, ino);
}

/* ---- new inodes ------------------------------------------------------- */

static uint32_t next_generation(void)
{
	static uint32_t gen;

	if (!gen) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		gen = (uint32_t)(ts.tv_nsec ^ ts.tv_sec ^ getpid() * 2654435761U);
	}
	return gen += 0x9e3779b9;
}

static void init_extents(struct ext2_inode_large *inode)
{
	struct ext3_extent_header *eh = (void *)inode->i_block;

	memset(inode->i_block, 0, sizeof(inode->i_block));
	eh->eh_magic = ext2fs_cpu_to_le16(EXT3_EXT_MAGIC);
	eh->eh_max = ext2fs_cpu_to_le16((sizeof(inode->i_block) -
					 sizeof(*eh)) /
					sizeof(struct ext3_extent));
	inode->i_flags |= EXT4_EXTENTS_FL;
}

/*
 * Allocate and write a fresh inode of the given mode, owned by the
 * caller (or the directory's group, for setgid directories), with
 * nothing in it yet.  The caller links it somewhere.
 */
int f4_new_inode(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
		 mode_t mode, struct ext2_inode_large *pinode,
		 ext2_ino_t *inop, struct ext2_inode_large *inode)
{
	ext2_filsys fs = f->fs;
	struct timespec now;
	gid_t gid = cred->gid;
	ext2_ino_t ino;
	errcode_t err;
	char *buf;

	err = ext2fs_new_inode(fs, parent, mode, NULL, &ino);
	if (err)
		return f4_fs_error(f, parent, err, "allocating inode");

	if (pinode->i_mode & LINUX_S_ISGID) {
		gid = inode_gid(*pinode);
		if (S_ISDIR(mode))
			mode |= S_ISGID;
	}
	if (!S_ISDIR(mode) && (mode & (S_ISGID | S_IXGRP)) ==
	    (S_ISGID | S_IXGRP) && f4_self_checks(f) &&
	    !f4_capable(f, cred) && !f4_in_group(cred, gid))
		mode &= ~S_ISGID;

	memset(inode, 0, sizeof(*inode));
	inode->i_mode = mode;
	inode->i_uid = cred->uid;
	ext2fs_set_i_uid_high(*inode, cred->uid >> 16);
	inode->i_gid = gid;
	ext2fs_set_i_gid_high(*inode, gid >> 16);
	inode->i_links_count = S_ISDIR(mode) ? 2 : 1;
	inode->i_generation = next_generation();
	inode->i_flags = pinode->i_flags & INHERITED_FL;
	if (!S_ISDIR(mode))
		inode->i_flags &= ~DIR_ONLY_FL;
	if (f->inode_size > EXT2_GOOD_OLD_INODE_SIZE)
		inode->i_extra_isize = sizeof(struct ext2_inode_large) -
				       EXT2_GOOD_OLD_INODE_SIZE;
	if (S_ISREG(mode) && ext2fs_has_feature_extents(fs->super))
		init_extents(inode);
	f4_now(&now);
	f4_set_time(f, inode, F4_ATIME, &now);
	f4_set_time(f, inode, F4_MTIME, &now);
	f4_set_time(f, inode, F4_CTIME, &now);
	f4_set_time(f, inode, F4_CRTIME, &now);

	/* Zero the whole on-disk inode, in-inode xattr space included */
	buf = calloc(1, f->inode_size);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, inode, f->inode_size < sizeof(*inode) ?
	       f->inode_size : sizeof(*inode));
	err = ext2fs_write_inode_full(fs, ino, (struct ext2_inode *)buf,
				      f->inode_size);
	free(buf);
	if (err)
		return f4_fs_error(f, ino, err, "writing new inode");
	ext2fs_inode_alloc_stats2(fs, ino, +1, S_ISDIR(mode));
	f4_fs_dirty(f);
	*inop = ino;
	return 0;
}

/* Give back an inode nobody links to or uses any more. */
int f4_free_inode(struct f4fs *f, ext2_ino_t ino,
		  struct ext2_inode_large *inode)
{
	int is_dir = LINUX_S_ISDIR(inode->i_mode);
	struct timespec now;
	int ret;

	ret = f4_free_blocks_all(f, ino, inode);
	if (ret)
		return ret;
	ret = f4_free_xattrs(f, ino, inode);
	if (ret)
		return ret;
	f4_now(&now);
	inode->i_links_count = 0;
	inode->i_dtime = now.tv_sec;
	ret = f4_write_inode(f, ino, inode);
	if (ret)
		return ret;
	ext2fs_inode_alloc_stats2(f->fs, ino, -1, is_dir);
	f4_fs_dirty(f);
	return 0;
}

/*
 * One name fewer.  At zero the inode goes on the orphan list while the
 * kernel still has it open or looked up (an O_PATH descriptor, a working
 * directory); otherwise nothing can reach it and it is freed now.
 */
int f4_drop_link(struct f4fs *f, ext2_ino_t ino,
		 struct ext2_inode_large *inode)
{
	struct f4_inode *rec;
	int ret;

	if (LINUX_S_ISDIR(inode->i_mode))
		inode->i_links_count = 0;
	else if (inode->i_links_count)
		inode->i_links_count--;
	f4_touch(f, inode, F4_TOUCH_C);
	if (inode->i_links_count)
		return f4_write_inode(f, ino, inode);

	rec = f4_iget_incore(f, ino);
	if ((rec && rec->nopen) || f4_nlookup(f, ino)) {
		/* still known to the kernel: an orphan until it lets go */
		if (!rec)
			rec = f4_iget(f, ino);
		if (!rec)
			return -ENOMEM;
		ret = f4_orphan_add(f, rec, inode);
		f4_iput(f, rec);
		return ret;
	}
	f4_iput(f, rec);
	return f4_free_inode(f, ino, inode);
}

/* ---- creation ---------------------------------------------------------- */

struct new_entry {
	const char *name;
	size_t len;
	mode_t mode;
	dev_t rdev;
	const char *target;		/* symlinks */
};

static void encode_rdev(struct ext2_inode_large *inode, dev_t rdev)
{
	unsigned int maj = major(rdev), min = minor(rdev);

	memset(inode->i_block, 0, sizeof(inode->i_block));
	if (maj < 256 && min < 256) {
		inode->i_block[0] = ext2fs_cpu_to_le32(maj << 8 | min);
	} else {
		inode->i_block[1] = ext2fs_cpu_to_le32((min & 0xff) |
						       (maj << 8) |
						       ((min & ~0xffU) << 12));
	}
}

static int write_symlink(struct f4fs *f, ext2_ino_t ino,
			 struct ext2_inode_large *inode, const char *target,
			 size_t len)
{
	ext2_filsys fs = f->fs;
	blk64_t pblk = 0, goal;
	errcode_t err;
	char *block;
	int ret;

	inode->i_size = len;
	if (len < sizeof(inode->i_block)) {
		/* Fast symlink: the target lives in the inode itself */
		inode->i_flags &= ~(EXT4_EXTENTS_FL | EXT4_INLINE_DATA_FL);
		memset(inode->i_block, 0, sizeof(inode->i_block));
		memcpy(inode->i_block, target, len);
		return f4_write_inode(f, ino, inode);
	}
	block = calloc(1, f->blocksize);
	if (!block)
		return -ENOMEM;
	memcpy(block, target, len);
	goal = ext2fs_find_inode_goal(fs, ino, (struct ext2_inode *)inode, 0);
	err = ext2fs_new_block2(fs, goal, NULL, &pblk);
	if (err)
		goto fail;
	err = io_channel_write_blk64(fs->io, pblk, 1, block);
	if (err)
		goto fail;
	ext2fs_block_alloc_stats2(fs, pblk, +1);
	ext2fs_iblk_set(fs, (struct ext2_inode *)inode, 1);
	if (ext2fs_has_feature_extents(fs->super)) {
		ext2_extent_handle_t handle;

		init_extents(inode);
		ret = f4_write_inode(f, ino, inode);
		if (ret)
			goto out;
		err = ext2fs_extent_open2(fs, ino, (struct ext2_inode *)inode,
					  &handle);
		if (!err) {
			err = ext2fs_extent_set_bmap(handle, 0, pblk, 0);
			ext2fs_extent_free(handle);
		}
		if (err)
			goto fail;
		ret = f4_read_inode(f, ino, inode);
		goto out;
	}
	inode->i_block[0] = pblk;
	ret = f4_write_inode(f, ino, inode);
	goto out;
fail:
	ret = f4_fs_error(f, ino, err, "writing symlink");
out:
	free(block);
	return ret;
}

/* Fill a new inode's contents according to its type. */
static int init_contents(struct f4fs *f, ext2_ino_t parent, ext2_ino_t ino,
			 struct ext2_inode_large *inode,
			 const struct new_entry *ne)
{
	switch (ne->mode & S_IFMT) {
	case S_IFDIR:
		return f4_dir_init(f, ino, parent, inode);
	case S_IFLNK:
		return write_symlink(f, ino, inode, ne->target,
				     strlen(ne->target));
	case S_IFCHR:
	case S_IFBLK:
		encode_rdev(inode, ne->rdev);
		return f4_write_inode(f, ino, inode);
	}
	return 0;
}

/*
 * The common path of create, mknod, mkdir and symlink: check, make the
 * inode, link it in, update the parent, and return its attributes with a
 * lookup reference taken.
 */
static int make_node(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
		     struct new_entry *ne, struct f4_entry *e)
{
	struct ext2_inode_large pinode, inode;
	ext2_ino_t ino, existing;
	int is_dir = S_ISDIR(ne->mode);
	int has_acl = 0;
	int ret;

	ret = f4_check_writable(f);
	if (ret)
		return ret;
	ret = prep_dir(f, cred, parent, &pinode, 0);
	if (ret)
		return ret;
	ret = f4_dir_lookup(f, parent, ne->name, ne->len, &existing, NULL);
	if (ret == 0)
		return -EEXIST;
	if (ret != -ENOENT)
		return ret;
	if (is_dir && dir_link_max(f, &pinode))
		return -EMLINK;

	/* A symlink's mode is always 0777: no umask, no ACL */
	if (f->opts->acl && !S_ISLNK(ne->mode)) {
		ret = f4_inherit_acl(f, parent, 0, &pinode, &ne->mode,
				     &has_acl);
		if (ret)
			return ret;
	}
	if (!has_acl && !S_ISLNK(ne->mode))
		ne->mode &= ~(cred->umask & 0777);

	ret = f4_new_inode(f, cred, parent, ne->mode, &pinode, &ino, &inode);
	if (ret)
		return ret;
	ret = init_contents(f, parent, ino, &inode, ne);
	if (ret)
		goto undo;
	if (has_acl) {
		ret = f4_inherit_acl(f, parent, ino, &inode, &ne->mode,
				     &has_acl);
		if (ret)
			goto undo;
	}
	ret = f4_dir_add(f, parent, ne->name, ne->len, ino,
			 f4_mode_to_ftype(ne->mode));
	if (ret)
		goto undo;

	ret = f4_read_inode(f, parent, &pinode);
	if (ret)
		return ret;
	if (is_dir)
		inc_dir_count(f, &pinode);
	f4_touch(f, &pinode, F4_TOUCH_MC);
	ret = f4_write_inode(f, parent, &pinode);
	if (ret)
		return ret;
	ret = sync_dir(f, &pinode);
	if (ret)
		return ret;
	ret = f4_fill_entry(f, ino, e);
	if (ret)
		return ret;
	return f4_lookup_ref(f, ino);
undo:
	/* Nothing links to it yet: give everything back */
	if (!f4_read_inode(f, ino, &inode))
		f4_free_inode(f, ino, &inode);
	return ret;
}

int f4_mknod(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	     const char *name, mode_t mode, dev_t rdev, struct f4_entry *e)
{
	struct new_entry ne = { name, 0, mode, rdev, NULL };
	int ret;

	ret = f4_check_name(name, &ne.len);
	if (ret)
		return ret;
	switch (mode & S_IFMT) {
	case 0:
		ne.mode |= S_IFREG;
		break;
	case S_IFREG:
	case S_IFIFO:
	case S_IFSOCK:
		break;
	case S_IFCHR:
	case S_IFBLK:
		if (f4_self_checks(f) && !f4_capable(f, cred))
			return -EPERM;
		break;
	default:
		return -EINVAL;
	}
	return make_node(f, cred, parent, &ne, e);
}

int f4_mkdir(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	     const char *name, mode_t mode, struct f4_entry *e)
{
	struct new_entry ne = { name, 0, (mode & 07777) | S_IFDIR, 0, NULL };
	int ret;

	ret = f4_check_name(name, &ne.len);
	if (ret)
		return ret;
	return make_node(f, cred, parent, &ne, e);
}

int f4_symlink(struct f4fs *f, struct f4_cred *cred, const char *target,
	       ext2_ino_t parent, const char *name, struct f4_entry *e)
{
	struct new_entry ne = { name, 0, S_IFLNK | 0777, 0, target };
	size_t tlen = strlen(target);
	int ret;

	ret = f4_check_name(name, &ne.len);
	if (ret)
		return ret;
	if (!tlen)
		return -ENOENT;
	if (tlen > F4_SYMLINK_MAX || tlen >= f->blocksize)
		return -ENAMETOOLONG;
	return make_node(f, cred, parent, &ne, e);
}

int f4_create(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	      const char *name, mode_t mode, int flags, struct f4_entry *e,
	      struct f4_file **fhp)
{
	struct new_entry ne = { name, 0, (mode & 07777) | S_IFREG, 0, NULL };
	struct f4_file *fh;
	int ret;

	ret = f4_check_name(name, &ne.len);
	if (ret)
		return ret;
	fh = calloc(1, sizeof(*fh));
	if (!fh)
		return -ENOMEM;
	ret = make_node(f, cred, parent, &ne, e);
	if (ret) {
		free(fh);
		return ret;
	}
	fh->inode = f4_iget(f, e->ino);
	if (!fh->inode) {
		free(fh);
		f4_forget(f, e->ino, 1);
		return -ENOMEM;
	}
	fh->flags = flags;
	fh->may_reserve = f4_may_use_reserved(f, cred);
	fh->inode->nopen++;
	*fhp = fh;
	return 0;
}

/* O_TMPFILE: an unnamed file, on the orphan list from the start. */
int f4_tmpfile(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	       mode_t mode, int flags, struct f4_entry *e,
	       struct f4_file **fhp)
{
	struct ext2_inode_large pinode, inode;
	struct f4_file *fh;
	ext2_ino_t ino;
	int has_acl = 0;
	int ret;

	ret = f4_check_writable(f);
	if (ret)
		return ret;
	ret = prep_dir(f, cred, parent, &pinode, 0);
	if (ret)
		return ret;
	mode = (mode & 07777) | S_IFREG;
	if (f->opts->acl) {
		ret = f4_inherit_acl(f, parent, 0, &pinode, &mode, &has_acl);
		if (ret)
			return ret;
	}
	if (!has_acl)
		mode &= ~(cred->umask & 0777);
	fh = calloc(1, sizeof(*fh));
	if (!fh)
		return -ENOMEM;
	ret = f4_new_inode(f, cred, parent, mode, &pinode, &ino, &inode);
	if (ret)
		goto fail;
	if (has_acl) {
		ret = f4_inherit_acl(f, parent, ino, &inode, &mode, &has_acl);
		if (ret)
			goto fail_inode;
	}
	fh->inode = f4_iget(f, ino);
	if (!fh->inode) {
		ret = -ENOMEM;
		goto fail_inode;
	}
	fh->inode->nopen++;
	fh->flags = flags;
	fh->may_reserve = f4_may_use_reserved(f, cred);
	ret = f4_read_inode(f, ino, &inode);
	if (!ret) {
		inode.i_links_count = 0;
		ret = f4_orphan_add(f, fh->inode, &inode);
	}
	if (ret) {
		fh->inode->nopen--;
		f4_iput(f, fh->inode);
		goto fail_inode;
	}
	ret = f4_fill_entry_unlinked(f, ino, e);
	if (!ret)
		ret = f4_lookup_ref(f, ino);
	if (ret) {
		f4_release(f, fh);
		return ret;
	}
	*fhp = fh;
	return 0;
fail_inode:
	if (!f4_read_inode(f, ino, &inode))
		f4_free_inode(f, ino, &inode);
fail:
	free(fh);
	return ret;
}

/* ---- links and removal ------------------------------------------------- */

/*
 * fs.protected_hardlinks: only the owner (or root) may link to a file
 * they couldn't read and write, or to a setuid or executable setgid file.
 * The kernel enforces this with its own permission check, which for FUSE
 * without default_permissions lets everything through, so do it here.
 */
static int protected_hardlinks(void)
{
	static int value = -1;
	char buf[8] = "";
	FILE *fp;

	if (value < 0) {
		fp = fopen("/proc/sys/fs/protected_hardlinks", "re");
		value = fp && fgets(buf, sizeof(buf), fp) ? atoi(buf) : 0;
		if (fp)
			fclose(fp);
	}
	return value;
}

static int may_link(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		    const struct ext2_inode_large *inode)
{
	mode_t mode = inode->i_mode;

	if (!f4_self_checks(f) || f4_capable(f, cred) ||
	    f4_is_owner(f, cred, inode) || !protected_hardlinks())
		return 0;
	if (!LINUX_S_ISREG(mode) || (mode & LINUX_S_ISUID) ||
	    (mode & (LINUX_S_ISGID | LINUX_S_IXGRP)) ==
	    (LINUX_S_ISGID | LINUX_S_IXGRP))
		return -EPERM;
	if (f4_check_perm(f, cred, inode, ino, 6))
		return -EPERM;
	return 0;
}

int f4_link(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
	    ext2_ino_t parent, const char *name, struct f4_entry *e)
{
	struct ext2_inode_large pinode, inode;
	struct f4_inode *rec;
	ext2_ino_t existing;
	size_t len;
	int ret;

	ret = f4_check_name(name, &len);
	if (ret)
		return ret;
	ret = f4_check_writable(f);
	if (ret)
		return ret;
	ret = prep_dir(f, cred, parent, &pinode, 0);
	if (ret)
		return ret;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if (LINUX_S_ISDIR(inode.i_mode))
		return -EPERM;
	ret = f4_check_immutable(&inode, F4_OP_LINK);
	if (ret)
		return ret;
	if (inode.i_links_count >= F4_LINK_MAX)
		return -EMLINK;
	ret = may_link(f, cred, ino, &inode);
	if (ret)
		return ret;
	ret = f4_dir_lookup(f, parent, name, len, &existing, NULL);
	if (ret == 0)
		return -EEXIST;
	if (ret != -ENOENT)
		return ret;

	ret = f4_dir_add(f, parent, name, len, ino,
			 f4_mode_to_ftype(inode.i_mode));
	if (ret)
		return ret;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	rec = f4_iget_incore(f, ino);
	if (!inode.i_links_count && rec && (rec->flags & F4I_ORPHAN)) {
		/* linkat() of an O_TMPFILE or unlinked-but-open file */
		ret = f4_orphan_del(f, rec, &inode);
		if (ret) {
			f4_iput(f, rec);
			return ret;
		}
	}
	f4_iput(f, rec);
	inode.i_links_count++;
	inode.i_dtime = 0;
	f4_touch(f, &inode, F4_TOUCH_C);
	ret = f4_write_inode(f, ino, &inode);
	if (ret)
		return ret;

	ret = f4_read_inode(f, parent, &pinode);
	if (ret)
		return ret;
	f4_touch(f, &pinode, F4_TOUCH_MC);
	ret = f4_write_inode(f, parent, &pinode);
	if (ret)
		return ret;
	ret = sync_dir(f, &pinode);
	if (ret)
		return ret;
	ret = f4_fill_entry(f, ino, e);
	if (ret)
		return ret;
	return f4_lookup_ref(f, ino);
}

static int remove_name(struct f4fs *f, struct f4_cred *cred,
		       ext2_ino_t parent, const char *name, int want_dir)
{
	struct ext2_inode_large pinode, inode;
	ext2_ino_t ino;
	size_t len;
	int ret;

	ret = f4_check_name(name, &len);
	if (ret)
		return ret;
	if (want_dir && is_dot_or_dotdot(name))
		return name[1] ? -ENOTEMPTY : -EINVAL;
	ret = f4_check_writable(f);
	if (ret)
		return ret;
	ret = prep_dir(f, cred, parent, &pinode, 1);
	if (ret)
		return ret;
	ret = f4_dir_lookup(f, parent, name, len, &ino, NULL);
	if (ret)
		return ret;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if (want_dir && !LINUX_S_ISDIR(inode.i_mode))
		return -ENOTDIR;
	if (!want_dir && LINUX_S_ISDIR(inode.i_mode))
		return -EISDIR;
	ret = f4_check_sticky(f, cred, &pinode, &inode);
	if (ret)
		return ret;
	ret = f4_check_immutable(&inode, F4_OP_UNLINK);
	if (ret)
		return ret;
	if (want_dir) {
		if (ino == EXT2_ROOT_INO)
			return -EBUSY;
		ret = f4_dir_is_empty(f, ino);
		if (ret < 0)
			return ret;
		if (!ret)
			return -ENOTEMPTY;
	}

	ret = f4_dir_remove(f, parent, name, len, ino);
	if (ret)
		return ret;
	ret = f4_read_inode(f, parent, &pinode);
	if (ret)
		return ret;
	if (want_dir)
		dec_dir_count(&pinode);
	f4_touch(f, &pinode, F4_TOUCH_MC);
	ret = f4_write_inode(f, parent, &pinode);
	if (ret)
		return ret;
	ret = f4_drop_link(f, ino, &inode);
	if (ret)
		return ret;
	return sync_dir(f, &pinode);
}

int f4_unlink(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	      const char *name)
{
	return remove_name(f, cred, parent, name, 0);
}

int f4_rmdir(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	     const char *name)
{
	return remove_name(f, cred, parent, name, 1);
}

int f4_readlink(struct f4fs *f, ext2_ino_t ino, char *buf, size_t size)
{
	struct ext2_inode_large inode;
	size_t len, got;
	blk64_t pblk = 0;
	errcode_t err;
	char *block;
	int ret;

	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if (!LINUX_S_ISLNK(inode.i_mode))
		return -EINVAL;
	len = EXT2_I_SIZE(&inode);
	if (!len || len >= f->blocksize || len > F4_SYMLINK_MAX)
		return f4_corrupt(f, ino, "symlink length %zu invalid", len);
	if (len >= size)
		len = size - 1;

	if (inode.i_flags & EXT4_INLINE_DATA_FL) {
		block = calloc(1, f->blocksize + EXT4_MIN_INLINE_DATA_SIZE);
		if (!block)
			return -ENOMEM;
		err = ext2fs_inline_data_size(f->fs, ino, &got);
		if (!err && got > f->blocksize)
			err = EXT2_ET_INLINE_DATA_NO_SPACE;
		if (!err)
			err = ext2fs_inline_data_get(f->fs, ino,
						     (struct ext2_inode *)&inode,
						     block, &got);
		if (!err && got < len)
			len = got;
		goto copy;
	}
	if (ext2fs_is_fast_symlink((struct ext2_inode *)&inode)) {
		memcpy(buf, inode.i_block, len);
		buf[len] = 0;
		return 0;
	}
	block = malloc(f->blocksize);
	if (!block)
		return -ENOMEM;
	err = ext2fs_bmap2(f->fs, ino, (struct ext2_inode *)&inode, NULL, 0, 0,
			   NULL, &pblk);
	if (!err && (!pblk || f4_valid_data_blocks(f, ino, pblk, 1)))
		err = EXT2_ET_BAD_BLOCK_NUM;
	if (!err)
		err = io_channel_read_blk64(f->fs->io, pblk, 1, block);
copy:
	if (!err) {
		memcpy(buf, block, len);
		buf[len] = 0;
	}
	free(block);
	if (err)
		return f4_fs_error(f, ino, err, "reading symlink");
	return 0;
}

/* ---- rename ----------------------------------------------------------- */

/* Is dir inside (or equal to) ancestor?  Walks ".." up to the root. */
static int is_within(struct f4fs *f, ext2_ino_t dir, ext2_ino_t ancestor)
{
	int depth = 0;
	int ret;

	while (dir != EXT2_ROOT_INO) {
		ext2_ino_t up;

		if (dir == ancestor)
			return 1;
		ret = f4_dir_lookup(f, dir, "..", 2, &up, NULL);
		if (ret)
			return ret;
		if (up == dir || ++depth > 65536)
			return f4_corrupt(f, dir, "directory loop");
		dir = up;
	}
	return ancestor == EXT2_ROOT_INO;
}

struct rename_side {
	ext2_ino_t dir;
	const char *name;
	size_t len;
	struct ext2_inode_large dinode;
	ext2_ino_t ino;			/* 0: no entry */
	struct ext2_inode_large inode;
};

/*
 * The source always loses its name, the target only if it exists: an
 * append-only directory refuses just the losing side.
 */
static int rename_lookup(struct f4fs *f, struct f4_cred *cred,
			 struct rename_side *s, int source)
{
	int ret;

	ret = prep_dir(f, cred, s->dir, &s->dinode, source);
	if (ret)
		return ret;
	ret = f4_dir_lookup(f, s->dir, s->name, s->len, &s->ino, NULL);
	if (ret == -ENOENT) {
		s->ino = 0;
		return 0;
	}
	if (ret)
		return ret;
	if (!source) {
		/* Replacing a name removes one from the target directory */
		ret = f4_check_immutable(&s->dinode, F4_OP_UNLINK);
		if (ret)
			return ret;
	}
	ret = f4_read_inode(f, s->ino, &s->inode);
	if (ret)
		return ret;
	ret = f4_check_sticky(f, cred, &s->dinode, &s->inode);
	if (ret)
		return ret;
	return f4_check_immutable(&s->inode, F4_OP_UNLINK);
}

static int rename_checks(struct f4fs *f, struct f4_cred *cred,
			 struct rename_side *src, struct rename_side *dst,
			 unsigned int flags)
{
	int sdir = LINUX_S_ISDIR(src->inode.i_mode);
	int ddir = dst->ino && LINUX_S_ISDIR(dst->inode.i_mode);
	int ret;

	if ((flags & F4_RENAME_NOREPLACE) && dst->ino)
		return -EEXIST;
	if ((flags & F4_RENAME_EXCHANGE) && !dst->ino)
		return -ENOENT;
	/* A directory may not move below itself */
	if (sdir && src->dir != dst->dir) {
		ret = is_within(f, dst->dir, src->ino);
		if (ret)
			return ret < 0 ? ret : -EINVAL;
		ret = f4_check_perm(f, cred, &src->inode, src->ino, MAY_WRITE);
		if (ret)
			return ret;
	}
	if (flags & F4_RENAME_EXCHANGE) {
		if (ddir && src->dir != dst->dir) {
			ret = is_within(f, src->dir, dst->ino);
			if (ret)
				return ret < 0 ? ret : -EINVAL;
			ret = f4_check_perm(f, cred, &dst->inode, dst->ino,
					    MAY_WRITE);
			if (ret)
				return ret;
		}
		return 0;
	}
	if (sdir && src->dir != dst->dir && !ddir &&
	    dir_link_max(f, &dst->dinode))
		return -EMLINK;
	if (!dst->ino)
		return 0;
	if (sdir && !ddir)
		return -ENOTDIR;
	if (!sdir && ddir)
		return -EISDIR;
	if (ddir) {
		ret = f4_dir_is_empty(f, dst->ino);
		if (ret < 0)
			return ret;
		if (!ret)
			return -ENOTEMPTY;
	}
	return 0;
}

/* Directory link counts and ".." after a directory changed parent. */
static int move_dir(struct f4fs *f, ext2_ino_t dir, ext2_ino_t from,
		    ext2_ino_t to)
{
	struct ext2_inode_large inode;
	int ret;

	ret = f4_dir_set_dotdot(f, dir, to);
	if (ret)
		return ret;
	ret = f4_read_inode(f, from, &inode);
	if (ret)
		return ret;
	dec_dir_count(&inode);
	ret = f4_write_inode(f, from, &inode);
	if (ret)
		return ret;
	ret = f4_read_inode(f, to, &inode);
	if (ret)
		return ret;
	inc_dir_count(f, &inode);
	return f4_write_inode(f, to, &inode);
}

static int touch_ino(struct f4fs *f, ext2_ino_t ino, int mask)
{
	struct ext2_inode_large inode;
	int ret;

	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	f4_touch(f, &inode, mask);
	return f4_write_inode(f, ino, &inode);
}

static int do_exchange(struct f4fs *f, struct rename_side *src,
		       struct rename_side *dst)
{
	int sdir = LINUX_S_ISDIR(src->inode.i_mode);
	int ddir = LINUX_S_ISDIR(dst->inode.i_mode);
	int ret;

	ret = f4_dir_set(f, src->dir, src->name, src->len, dst->ino,
			 f4_mode_to_ftype(dst->inode.i_mode));
	if (ret)
		return ret;
	ret = f4_dir_set(f, dst->dir, dst->name, dst->len, src->ino,
			 f4_mode_to_ftype(src->inode.i_mode));
	if (ret)
		return ret;
	if (src->dir != dst->dir) {
		if (sdir)
			ret = move_dir(f, src->ino, src->dir, dst->dir);
		if (!ret && ddir)
			ret = move_dir(f, dst->ino, dst->dir, src->dir);
		if (ret)
			return ret;
	}
	ret = touch_ino(f, src->ino, F4_TOUCH_C);
	if (!ret)
		ret = touch_ino(f, dst->ino, F4_TOUCH_C);
	return ret;
}

static int do_rename(struct f4fs *f, struct rename_side *src,
		     struct rename_side *dst)
{
	int sdir = LINUX_S_ISDIR(src->inode.i_mode);
	int ret;

	if (dst->ino) {
		ret = f4_dir_set(f, dst->dir, dst->name, dst->len, src->ino,
				 f4_mode_to_ftype(src->inode.i_mode));
		if (ret)
			return ret;
		if (sdir) {
			/* The replaced directory's ".." no longer counts */
			struct ext2_inode_large d;

			ret = f4_read_inode(f, dst->dir, &d);
			if (ret)
				return ret;
			dec_dir_count(&d);
			ret = f4_write_inode(f, dst->dir, &d);
			if (ret)
				return ret;
		}
		ret = f4_drop_link(f, dst->ino, &dst->inode);
		if (ret)
			return ret;
	} else {
		ret = f4_dir_add(f, dst->dir, dst->name, dst->len, src->ino,
				 f4_mode_to_ftype(src->inode.i_mode));
		if (ret)
			return ret;
	}
	ret = f4_dir_remove(f, src->dir, src->name, src->len, src->ino);
	if (ret)
		return ret;
	if (sdir && src->dir != dst->dir) {
		ret = move_dir(f, src->ino, src->dir, dst->dir);
		if (ret)
			return ret;
	}
	return touch_ino(f, src->ino, F4_TOUCH_C);
}

static int make_whiteout(struct f4fs *f, struct f4_cred *cred,
			 struct rename_side *src)
{
	struct new_entry ne = { src->name, src->len, S_IFCHR, 0, NULL };
	struct f4_entry e;
	int ret;

	ret = make_node(f, cred, src->dir, &ne, &e);
	if (ret)
		return ret;
	/* Nobody asked for this inode: drop the reference make_node took */
	return f4_forget(f, e.ino, 1);
}

int f4_rename(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	      const char *name, ext2_ino_t newparent, const char *newname,
	      unsigned int flags)
{
	struct rename_side src = { parent, name }, dst = { newparent, newname };
	struct ext2_inode_large d;
	int ret;

	if (flags & ~(F4_RENAME_NOREPLACE | F4_RENAME_EXCHANGE |
		      F4_RENAME_WHITEOUT))
		return -EINVAL;
	if ((flags & F4_RENAME_EXCHANGE) &&
	    (flags & (F4_RENAME_NOREPLACE | F4_RENAME_WHITEOUT)))
		return -EINVAL;
	if ((flags & F4_RENAME_WHITEOUT) && f4_self_checks(f) &&
	    !f4_capable(f, cred))
		return -EPERM;
	ret = f4_check_name(name, &src.len);
	if (!ret)
		ret = f4_check_name(newname, &dst.len);
	if (ret)
		return ret;
	if (is_dot_or_dotdot(name) || is_dot_or_dotdot(newname))
		return -EBUSY;
	ret = f4_check_writable(f);
	if (ret)
		return ret;
	ret = rename_lookup(f, cred, &src, 1);
	if (ret)
		return ret;
	if (!src.ino)
		return -ENOENT;
	ret = rename_lookup(f, cred, &dst, (flags & F4_RENAME_EXCHANGE) != 0);
	if (ret)
		return ret;
	if (src.ino == dst.ino)
		return 0;		/* two names of one file: nothing to do */
	ret = rename_checks(f, cred, &src, &dst, flags);
	if (ret)
		return ret;

	if (flags & F4_RENAME_EXCHANGE)
		ret = do_exchange(f, &src, &dst);
	else
		ret = do_rename(f, &src, &dst);
	if (ret)
		return ret;
	if (flags & F4_RENAME_WHITEOUT) {
		ret = make_whiteout(f, cred, &src);
		if (ret)
			return ret;
	}

	ret = touch_ino(f, parent, F4_TOUCH_MC);
	if (!ret && newparent != parent)
		ret = touch_ino(f, newparent, F4_TOUCH_MC);
	if (ret)
		return ret;
	ret = f4_read_inode(f, newparent, &d);
	if (ret)
		return ret;
	return sync_dir(f, &d);
}

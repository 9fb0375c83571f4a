/*
 * ioctl.c - inode flags (chattr/lsattr), fsxattr, generation, FITRIM.
 */
#include "config.h"

#include <linux/fs.h>
#include <string.h>

#include "fuse4fs.h"

/* ext4 flags and their FS_XFLAG_* equivalents */
static const struct {
	uint32_t ext4;
	uint32_t xflag;
} xflag_map[] = {
	{ EXT2_SYNC_FL, FS_XFLAG_SYNC },
	{ EXT2_IMMUTABLE_FL, FS_XFLAG_IMMUTABLE },
	{ EXT2_APPEND_FL, FS_XFLAG_APPEND },
	{ EXT2_NODUMP_FL, FS_XFLAG_NODUMP },
	{ EXT2_NOATIME_FL, FS_XFLAG_NOATIME },
	{ EXT4_PROJINHERIT_FL, FS_XFLAG_PROJINHERIT },
};

#define NXFLAGS (sizeof(xflag_map) / sizeof(xflag_map[0]))

/* What the kernel's ext4 lets chattr see and change. */
#define F4_DAX_FL	0x02000000
#define F4_FL_MODIFIABLE (EXT2_SECRM_FL | EXT2_UNRM_FL | EXT2_COMPR_FL | \
			  EXT2_SYNC_FL | EXT2_IMMUTABLE_FL | EXT2_APPEND_FL | \
			  EXT2_NODUMP_FL | EXT2_NOATIME_FL | \
			  EXT3_JOURNAL_DATA_FL | EXT2_NOTAIL_FL | \
			  EXT2_DIRSYNC_FL | EXT2_TOPDIR_FL | EXT4_EXTENTS_FL | \
			  0x00400000 | F4_DAX_FL | EXT4_PROJINHERIT_FL | \
			  EXT4_CASEFOLD_FL)
#define F4_FL_VISIBLE	(F4_FL_MODIFIABLE | EXT2_DIRTY_FL | EXT2_COMPRBLK_FL | \
			 EXT2_NOCOMPR_FL | EXT4_ENCRYPT_FL | EXT2_INDEX_FL | \
			 EXT4_VERITY_FL | EXT4_INLINE_DATA_FL)
/* Flags that mean nothing outside directories (and more for others) */
#define F4_DIR_ONLY_FL	(EXT2_DIRSYNC_FL | EXT2_TOPDIR_FL | \
			 EXT4_CASEFOLD_FL | EXT4_PROJINHERIT_FL)
#define F4_OTHER_FL	(EXT2_NODUMP_FL | EXT2_NOATIME_FL)

static int may_change_flags(struct f4fs *f, struct f4_cred *cred,
			    const struct ext2_inode_large *inode,
			    uint32_t newflags)
{
	uint32_t changed = (inode->i_flags ^ newflags);

	if (!f4_is_owner(f, cred, inode) && !f4_capable(f, cred))
		return -EPERM;
	if ((changed & (EXT2_IMMUTABLE_FL | EXT2_APPEND_FL)) &&
	    !f4_capable(f, cred))
		return -EPERM;
	/* A file that stays immutable can't change in any other way */
	if ((inode->i_flags & newflags & EXT2_IMMUTABLE_FL) &&
	    (changed & ~EXT2_IMMUTABLE_FL))
		return -EPERM;
	return 0;
}

/* Flags this kind of inode can't have, as ext4_mask_flags() says. */
static uint32_t misplaced_flags(const struct ext2_inode_large *inode,
				uint32_t flags)
{
	if (LINUX_S_ISDIR(inode->i_mode))
		return 0;
	if (LINUX_S_ISREG(inode->i_mode))
		return flags & F4_DIR_ONLY_FL;
	return flags & ~F4_OTHER_FL;
}

static int set_flags(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		     uint32_t flags)
{
	struct ext2_inode_large inode;
	uint32_t newflags, changed;
	int ret;

	ret = f4_check_writable(f);
	if (ret)
		return ret;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if (flags & ~F4_FL_VISIBLE)
		return -EOPNOTSUPP;
	newflags = (inode.i_flags & ~F4_FL_MODIFIABLE) |
		   (flags & F4_FL_MODIFIABLE);
	changed = newflags ^ inode.i_flags;
	if (misplaced_flags(&inode, flags & F4_FL_MODIFIABLE & changed))
		return -EOPNOTSUPP;
	/* Extents can't be turned on or off here */
	if (changed & EXT4_EXTENTS_FL)
		return -EOPNOTSUPP;
	if ((changed & EXT4_CASEFOLD_FL) &&
	    !ext2fs_has_feature_casefold(f->fs->super))
		return -EOPNOTSUPP;
	/* DAX can't apply to file data kept in the inode */
	if ((changed & newflags & F4_DAX_FL) && LINUX_S_ISREG(inode.i_mode) &&
	    (inode.i_flags & (EXT4_INLINE_DATA_FL | EXT4_ENCRYPT_FL |
			      EXT4_VERITY_FL)))
		return -EOPNOTSUPP;
	ret = may_change_flags(f, cred, &inode, newflags);
	if (ret)
		return ret;
	/* Data journalling needs a journal fuse4fs doesn't write */
	if (changed & EXT3_JOURNAL_DATA_FL)
		return -EPERM;
	inode.i_flags = newflags;
	f4_touch(f, &inode, F4_TOUCH_C);
	ret = f4_write_inode(f, ino, &inode);
	if (!ret)
		f4_inval_inode(f, ino);	/* the new ctime */
	return ret;
}

static int get_fsxattr(struct f4fs *f, ext2_ino_t ino, struct fsxattr *fa)
{
	struct ext2_inode_large inode;
	unsigned int i;
	int ret;

	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	memset(fa, 0, sizeof(*fa));
	for (i = 0; i < NXFLAGS; i++)
		if (inode.i_flags & xflag_map[i].ext4)
			fa->fsx_xflags |= xflag_map[i].xflag;
	if (f4_inode_has_extra(f, &inode,
			       offsetof(struct ext2_inode_large, i_projid) + 4))
		fa->fsx_projid = inode.i_projid;
	return 0;
}

static int set_fsxattr(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		       const struct fsxattr *fa)
{
	struct ext2_inode_large inode;
	uint32_t flags;
	unsigned int i;
	int ret;

	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if (fa->fsx_projid != (f4_inode_has_extra(f, &inode,
			offsetof(struct ext2_inode_large, i_projid) + 4) ?
			inode.i_projid : 0))
		return -EOPNOTSUPP;	/* no project quota support */
	flags = inode.i_flags & F4_FL_VISIBLE;
	for (i = 0; i < NXFLAGS; i++) {
		flags &= ~xflag_map[i].ext4;
		if (fa->fsx_xflags & xflag_map[i].xflag)
			flags |= xflag_map[i].ext4;
	}
	return set_flags(f, cred, ino, flags);
}

static int set_version(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		       uint32_t gen)
{
	struct ext2_inode_large inode;
	int ret;

	/* With metadata_csum the generation seeds the inode's checksums */
	if (ext2fs_has_feature_metadata_csum(f->fs->super))
		return -ENOTTY;
	ret = f4_check_writable(f);
	if (ret)
		return ret;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if (!f4_is_owner(f, cred, &inode) && !f4_capable(f, cred))
		return -EPERM;
	ret = f4_keep_kernel_gen(f, ino, inode.i_generation);
	if (ret)
		return ret;
	inode.i_generation = gen;
	f4_touch(f, &inode, F4_TOUCH_C);
	ret = f4_write_inode(f, ino, &inode);
	if (!ret)
		f4_inval_inode(f, ino);	/* the new ctime */
	return ret;
}

static int get_u32(const void *in, size_t in_size, uint32_t *v)
{
	if (in_size == 4) {
		memcpy(v, in, 4);
		return 0;
	}
	if (in_size == 8) {
		uint64_t l;

		memcpy(&l, in, 8);
		*v = l;
		return 0;
	}
	return -EINVAL;
}

static int put_u32(void *out, size_t *out_size, uint32_t v)
{
	if (*out_size >= 8) {
		uint64_t l = v;

		memcpy(out, &l, 8);
		*out_size = 8;
	} else if (*out_size >= 4) {
		memcpy(out, &v, 4);
		*out_size = 4;
	} else {
		return -EINVAL;
	}
	return 0;
}

int f4_ioctl(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
	     unsigned int cmd, const void *in, size_t in_size, void *out,
	     size_t *out_size)
{
	struct ext2_inode_large inode;
	uint32_t v;
	int ret;

	switch (cmd) {
	case FS_IOC_GETFLAGS:
	case FS_IOC32_GETFLAGS:
		ret = f4_read_inode(f, ino, &inode);
		if (ret)
			return ret;
		return put_u32(out, out_size, inode.i_flags & F4_FL_VISIBLE);
	case FS_IOC_SETFLAGS:
	case FS_IOC32_SETFLAGS:
		*out_size = 0;
		ret = get_u32(in, in_size, &v);
		return ret ? ret : set_flags(f, cred, ino, v);
	case FS_IOC_GETVERSION:
	case FS_IOC32_GETVERSION:
		ret = f4_read_inode(f, ino, &inode);
		if (ret)
			return ret;
		return put_u32(out, out_size, inode.i_generation);
	case FS_IOC_SETVERSION:
	case FS_IOC32_SETVERSION:
		*out_size = 0;
		ret = get_u32(in, in_size, &v);
		return ret ? ret : set_version(f, cred, ino, v);
	case FS_IOC_FSGETXATTR:
		if (*out_size < sizeof(struct fsxattr))
			return -EINVAL;
		*out_size = sizeof(struct fsxattr);
		return get_fsxattr(f, ino, out);
	case FS_IOC_FSSETXATTR:
		*out_size = 0;
		if (in_size < sizeof(struct fsxattr))
			return -EINVAL;
		return set_fsxattr(f, cred, ino, in);
	case FITRIM: {
		struct fstrim_range r;
		uint64_t trimmed;

		if (!f4_capable(f, cred))
			return -EPERM;
		if (in_size < sizeof(r) || *out_size < sizeof(r))
			return -EINVAL;
		memcpy(&r, in, sizeof(r));
		ret = f4_fstrim(f, r.start, r.len, r.minlen, &trimmed);
		if (ret)
			return ret;
		r.len = trimmed;
		memcpy(out, &r, sizeof(r));
		*out_size = sizeof(r);
		return 0;
	}
	}
	return -ENOTTY;
}

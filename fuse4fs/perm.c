/*
 * perm.c - permission checks, when fuse4fs makes them itself.
 *
 * Three modes: with default_permissions the kernel checks everything and
 * these functions allow all; with fakeroot nobody is checked; otherwise
 * (the default) fuse4fs applies the same rules as the kernel's
 * generic_permission(): owner, group or other bits, POSIX ACLs when the
 * acl option is on, and root passing everything but execute on files
 * that nobody may execute.
 */
#include "config.h"

#include "fuse4fs.h"

#define MAY_EXEC	1
#define MAY_WRITE	2
#define MAY_READ	4

int f4_self_checks(struct f4fs *f)
{
	return !f->opts->fakeroot && !f->opts->default_permissions;
}

int f4_capable(struct f4fs *f, const struct f4_cred *cred)
{
	return f->opts->fakeroot || cred->uid == 0;
}

int f4_is_owner(struct f4fs *f, const struct f4_cred *cred,
		const struct ext2_inode_large *inode)
{
	return f->opts->fakeroot || cred->uid == inode_uid(*inode);
}

int f4_in_group(struct f4_cred *cred, gid_t gid)
{
	int i;

	if (cred->gid == gid)
		return 1;
	if (cred->ngroups < 0 && cred->get_groups)
		cred->get_groups(cred);
	for (i = 0; i < cred->ngroups; i++)
		if (cred->groups[i] == gid)
			return 1;
	return 0;
}

static int mode_permission(struct f4_cred *cred,
			   const struct ext2_inode_large *inode, int mask)
{
	unsigned int mode = inode->i_mode;

	if (cred->uid == inode_uid(*inode))
		mode >>= 6;
	else if (f4_in_group(cred, inode_gid(*inode)))
		mode >>= 3;
	return ((mode & mask & 7) == (mask & 7)) ? 0 : -EACCES;
}

int f4_check_perm(struct f4fs *f, struct f4_cred *cred,
		  const struct ext2_inode_large *inode, ext2_ino_t ino,
		  int mask)
{
	int ret;

	if (!f4_self_checks(f) || !mask)
		return 0;
	if (cred->uid == 0) {
		/* Root may execute only what somebody may execute */
		if ((mask & MAY_EXEC) && !LINUX_S_ISDIR(inode->i_mode) &&
		    !(inode->i_mode & 0111))
			return -EACCES;
		return 0;
	}
	if (f->opts->acl) {
		ret = f4_acl_permission(f, cred, ino, inode, mask);
		if (ret != -EAGAIN)
			return ret;
	}
	return mode_permission(cred, inode, mask);
}

int f4_check_ino_perm(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		      int mask)
{
	struct ext2_inode_large inode;
	int ret;

	if (!f4_self_checks(f))
		return 0;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	return f4_check_perm(f, cred, &inode, ino, mask);
}

/* In a sticky directory only owners (or root) may remove or rename. */
int f4_check_sticky(struct f4fs *f, const struct f4_cred *cred,
		    const struct ext2_inode_large *dir,
		    const struct ext2_inode_large *victim)
{
	if (!f4_self_checks(f) || !(dir->i_mode & LINUX_S_ISVTX))
		return 0;
	if (f4_capable(f, cred) || cred->uid == inode_uid(*victim) ||
	    cred->uid == inode_uid(*dir))
		return 0;
	return -EPERM;
}

int f4_access(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
	      int mask)
{
	struct ext2_inode_large inode;
	int ret;

	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if ((mask & MAY_WRITE) && f->ro &&
	    (LINUX_S_ISREG(inode.i_mode) || LINUX_S_ISDIR(inode.i_mode) ||
	     LINUX_S_ISLNK(inode.i_mode)))
		return -EROFS;
	if ((mask & MAY_WRITE) && (inode.i_flags & EXT2_IMMUTABLE_FL))
		return -EPERM;
	return f4_check_perm(f, cred, &inode, ino, mask);
}

/*
 * perm.c - permission checks, when fuse4fs makes them itself.
 *
 * Three modes: with default_permissions (implied by allow_other and
 * allow_root, see options.c) the kernel checks everything and these
 * functions allow all; with fakeroot nobody is checked; otherwise (a
 * mount only its owner can reach) fuse4fs applies the same rules as the
 * kernel's generic_permission(): owner, group or other bits, POSIX ACLs
 * when the acl option is on, and root passing everything but execute on
 * files that nobody may execute.
 */
#include "config.h"

#include <stdlib.h>

#include "fuse4fs.h"

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

/*
 * Is gid among all of a caller's supplementary groups?  list(arg, size,
 * groups) says how many there are and fills in at most size of them.
 * 1: yes, 0: no, or -errno.
 */
int f4_group_search(int (*list)(void *arg, int size, gid_t *groups),
		    void *arg, gid_t gid)
{
	int size = list(arg, 0, NULL), n, i, found = 0;
	gid_t *groups;

	if (size < 0)
		return size;
	size += 16;			/* room for groups added meanwhile */
	groups = calloc(size, sizeof(*groups));
	if (!groups)
		return -ENOMEM;
	n = list(arg, size, groups);
	for (i = 0; i < n && i < size && !found; i++)
		found = groups[i] == gid;
	free(groups);
	return n < 0 ? n : found;
}

/*
 * Is gid one of the caller's groups?  1: yes, 0: no, F4_GROUPS_UNKNOWN:
 * the supplementary groups could not be read.  Every group counts, not
 * just the first F4_NGROUPS.
 */
int f4_group_member(struct f4_cred *cred, gid_t gid)
{
	int i;

	if (cred->gid == gid)
		return 1;
	if (cred->ngroups == -1 && cred->get_groups)
		cred->get_groups(cred);
	if (cred->ngroups == F4_GROUPS_UNKNOWN)
		return F4_GROUPS_UNKNOWN;
	for (i = 0; i < cred->ngroups; i++)
		if (cred->groups[i] == gid)
			return 1;
	if (!cred->more_groups || !cred->find_group)
		return 0;
	i = cred->find_group(cred, gid);
	return i < 0 ? F4_GROUPS_UNKNOWN : !!i;
}

/* Membership that grants something: unknown counts as "not a member". */
int f4_in_group(struct f4_cred *cred, gid_t gid)
{
	return f4_group_member(cred, gid) == 1;
}

static int mode_permission(struct f4_cred *cred,
			   const struct ext2_inode_large *inode, int mask)
{
	unsigned int mode = inode->i_mode;
	int member;

	mask &= 7;
	if (cred->uid == inode_uid(*inode))
		return ((mode >> 6) & mask) == mask ? 0 : -EACCES;
	member = f4_group_member(cred, inode_gid(*inode));
	if (member == 1)
		mode >>= 3;
	else if (member < 0)
		/*
		 * The caller's groups can't be read: grant only what both the
		 * group and the other bits grant, so that not knowing never
		 * gives more than knowing would.
		 */
		mode &= mode >> 3;
	return (mode & mask) == mask ? 0 : -EACCES;
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

/*
 * Immutable inodes may not be changed at all, append-only ones only by
 * adding data at their end (F4_OP_WRITE); ext4's rule, checked before
 * any change.
 */
int f4_check_immutable(const struct ext2_inode_large *inode, int op)
{
	if (inode->i_flags & EXT2_IMMUTABLE_FL)
		return -EPERM;
	if ((inode->i_flags & EXT2_APPEND_FL) && op != F4_OP_WRITE)
		return -EPERM;
	return 0;
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
	if (mask & MAY_WRITE) {
		ret = f4_check_immutable(&inode, F4_OP_WRITE);
		if (ret)
			return ret;
	}
	return f4_check_perm(f, cred, &inode, ino, mask);
}

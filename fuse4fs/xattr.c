/*
 * xattr.c - extended attributes and POSIX ACLs.
 *
 * libext2fs stores the attributes, in the inode and in an external block,
 * and converts POSIX ACLs between the VFS's xattr format and ext4's
 * compact on-disk one.  This file adds what the kernel adds on top: the
 * namespaces and who may use them, XATTR_CREATE/XATTR_REPLACE, ERANGE,
 * the hidden system.data of inline-data inodes, and ACL semantics
 * (inheritance of default ACLs, the mode <-> ACL mask link, checks).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/xattr.h>
#include <linux/limits.h>

#include "fuse4fs.h"

#define CAPS_XATTR	"security.capability"
#define ACL_ACCESS	"system.posix_acl_access"
#define ACL_DEFAULT	"system.posix_acl_default"
#define XATTR_MAX_VALUE	65536

/* The VFS's POSIX ACL xattr format (what libext2fs hands us). */
#define ACL_VERSION	2
#define ACL_USER_OBJ	0x01
#define ACL_USER	0x02
#define ACL_GROUP_OBJ	0x04
#define ACL_GROUP	0x08
#define ACL_MASK	0x10
#define ACL_OTHER	0x20

struct acl_entry {
	uint16_t tag;
	uint16_t perm;
	uint32_t id;
};

struct acl {
	int count;
	struct acl_entry e[];
};

enum ns { NS_USER, NS_TRUSTED, NS_SECURITY, NS_ACL, NS_BAD };

static enum ns name_space(const char *name)
{
	if (!strncmp(name, "user.", 5))
		return NS_USER;
	if (!strncmp(name, "trusted.", 8))
		return NS_TRUSTED;
	if (!strncmp(name, "security.", 9))
		return NS_SECURITY;
	if (!strcmp(name, ACL_ACCESS) || !strcmp(name, ACL_DEFAULT))
		return NS_ACL;
	return NS_BAD;
}

static int open_xattrs(struct f4fs *f, ext2_ino_t ino,
		       struct ext2_xattr_handle **h)
{
	errcode_t err;

	err = ext2fs_xattrs_open(f->fs, ino, h);
	if (err)
		return f4_fs_error(f, ino, err, "opening xattrs");
	err = ext2fs_xattrs_read(*h);
	if (err) {
		ext2fs_xattrs_close(h);
		return f4_fs_error(f, ino, err, "reading xattrs");
	}
	return 0;
}

/* Read one attribute: value malloc'ed in *val.  -ENODATA if absent. */
static int get_value(struct f4fs *f, ext2_ino_t ino, const char *name,
		     void **val, size_t *len)
{
	struct ext2_xattr_handle *h;
	errcode_t err;
	int ret;

	ret = open_xattrs(f, ino, &h);
	if (ret)
		return ret;
	err = ext2fs_xattr_get(h, name, val, len);
	ext2fs_xattrs_close(&h);
	if (err == EXT2_ET_EA_KEY_NOT_FOUND)
		return -ENODATA;
	if (err)
		return f4_fs_error(f, ino, err, "reading xattr");
	return 0;
}

/*
 * libext2fs leaves an external xattr block in place when its last entry
 * goes; the kernel gives it back.  So do we.
 */
static int drop_empty_block(struct f4fs *f, ext2_ino_t ino)
{
	struct ext2_inode_large inode;
	struct ext2_ext_attr_header *hdr;
	blk64_t blk;
	__u32 count;
	char *buf;
	errcode_t err;
	int ret;

	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	blk = ext2fs_file_acl_block(f->fs, (struct ext2_inode *)&inode);
	if (!blk || f4_valid_data_blocks(f, ino, blk, 1))
		return 0;
	buf = malloc(f->blocksize);
	if (!buf)
		return -ENOMEM;
	err = ext2fs_read_ext_attr3(f->fs, blk, buf, ino);
	hdr = (struct ext2_ext_attr_header *)buf;
	/* An empty block: the entry list ends right after the header */
	if (err || *(__u32 *)(buf + sizeof(*hdr)) != 0) {
		free(buf);
		return err ? f4_fs_error(f, ino, err, "reading xattr block") :
			     0;
	}
	err = ext2fs_adjust_ea_refcount3(f->fs, blk, buf, -1, &count, ino);
	free(buf);
	if (err)
		return f4_fs_error(f, ino, err, "releasing xattr block");
	if (!count)
		ext2fs_block_alloc_stats2(f->fs, blk, -1);
	ext2fs_file_acl_block_set(f->fs, (struct ext2_inode *)&inode, 0);
	ext2fs_iblk_sub_blocks(f->fs, (struct ext2_inode *)&inode, 1);
	return f4_write_inode(f, ino, &inode);
}

/*
 * A block shared by several inodes (the kernel shares identical ones)
 * that a change here would leave as it was: libext2fs copies it anyway
 * whenever it writes the inode's attributes, even when only the in-inode
 * part changed.  Note the block before the change ...
 */
struct shared_block {
	blk64_t blk;			/* 0: none, or not shared */
	char *buf;
};

static int note_shared_block(struct f4fs *f, ext2_ino_t ino,
			     struct shared_block *sb)
{
	struct ext2_inode_large inode;
	struct ext2_ext_attr_header *hdr;
	errcode_t err;
	int ret;

	sb->blk = 0;
	sb->buf = NULL;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	sb->blk = ext2fs_file_acl_block(f->fs, (struct ext2_inode *)&inode);
	if (!sb->blk || f4_valid_data_blocks(f, ino, sb->blk, 1))
		goto none;
	sb->buf = malloc(f->blocksize);
	if (!sb->buf)
		return -ENOMEM;
	err = ext2fs_read_ext_attr3(f->fs, sb->blk, sb->buf, ino);
	hdr = (struct ext2_ext_attr_header *)sb->buf;
	if (!err && hdr->h_refcount > 1)
		return 0;
	free(sb->buf);
	sb->buf = NULL;
none:
	sb->blk = 0;
	return 0;
}

/* ... and if the copy says the same, go back to sharing the original. */
static int reuse_shared_block(struct f4fs *f, ext2_ino_t ino,
			      struct shared_block *sb)
{
	size_t hlen = sizeof(struct ext2_ext_attr_header);
	struct ext2_inode_large inode;
	blk64_t copy;
	char *buf = NULL;
	__u32 count;
	errcode_t err;
	int ret;

	if (!sb->blk)
		return 0;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		goto out;
	copy = ext2fs_file_acl_block(f->fs, (struct ext2_inode *)&inode);
	if (!copy || copy == sb->blk || f4_valid_data_blocks(f, ino, copy, 1))
		goto out;
	buf = malloc(f->blocksize);
	ret = -ENOMEM;
	if (!buf)
		goto out;
	ret = 0;
	err = ext2fs_read_ext_attr3(f->fs, copy, buf, ino);
	if (err || ((struct ext2_ext_attr_header *)buf)->h_refcount != 1 ||
	    memcmp(buf + hlen, sb->buf + hlen, f->blocksize - hlen))
		goto out;
	err = ext2fs_adjust_ea_refcount3(f->fs, sb->blk, buf, +1, &count,
					 ino);
	if (err) {
		ret = f4_fs_error(f, ino, err, "sharing xattr block");
		goto out;
	}
	ext2fs_block_alloc_stats2(f->fs, copy, -1);
	ext2fs_file_acl_block_set(f->fs, (struct ext2_inode *)&inode, sb->blk);
	ret = f4_write_inode(f, ino, &inode);
out:
	free(buf);
	return ret;
}

/* ---- values in their own inodes (ea_inode) ----------------------------- */

/*
 * With ea_inode, a value too big for the xattr block lives in an inode
 * of its own, which entries name by e_value_inum.  The EA inode counts
 * its references (one per in-inode entry, one per entry in a distinct
 * xattr block, however many inodes share that block), and the owner's
 * i_blocks is charged the value's size in whole blocks (clusters, with
 * bigalloc), as the kernel's
 * quota code charges it.  libext2fs creates and drops EA inodes when a
 * value is set or removed, but leaves both of these to us.
 */
typedef int (*ea_ref_fn)(struct f4fs *f, ext2_ino_t ino,
			 const struct ext2_ext_attr_entry *e, void *arg);

/* Call fn for each entry in [start, start + size) that names an EA inode. */
static int walk_ea_refs(struct f4fs *f, ext2_ino_t ino, const char *start,
			size_t size, ea_ref_fn fn, void *arg)
{
	const char *p = start, *end = start + size;
	const struct ext2_ext_attr_entry *e;
	int ret;

	while (p + sizeof(__u32) <= end) {
		e = (const struct ext2_ext_attr_entry *)p;
		if (EXT2_EXT_IS_LAST_ENTRY(e))
			return 0;
		if (p + sizeof(*e) > end ||
		    p + EXT2_EXT_ATTR_LEN(e->e_name_len) > end)
			return f4_corrupt(f, ino, "xattr entry at offset %zu "
					  "runs past its area",
					  (size_t)(p - start));
		if (e->e_value_inum) {
			ret = fn(f, ino, e, arg);
			if (ret)
				return ret;
		}
		p = (const char *)EXT2_EXT_ATTR_NEXT(e);
	}
	return 0;
}

/* The entries stored in the inode body itself. */
static int walk_ibody_refs(struct f4fs *f, ext2_ino_t ino, ea_ref_fn fn,
			   void *arg)
{
	struct ext2_inode_large *raw;
	size_t off;
	errcode_t err;
	int ret = 0;

	if (f->inode_size <= EXT2_GOOD_OLD_INODE_SIZE)
		return 0;
	raw = calloc(1, f->inode_size > sizeof(*raw) ? f->inode_size :
			sizeof(*raw));
	if (!raw)
		return -ENOMEM;
	err = ext2fs_read_inode_full(f->fs, ino, (struct ext2_inode *)raw,
				     f->inode_size);
	if (err) {
		ret = f4_fs_error(f, ino, err, "reading inode");
		goto out;
	}
	/* No room for in-inode xattrs without the extra fields */
	off = EXT2_GOOD_OLD_INODE_SIZE + raw->i_extra_isize;
	if (raw->i_extra_isize < sizeof(raw->i_extra_isize) ||
	    raw->i_extra_isize & 3 || off + sizeof(__u32) > f->inode_size ||
	    *(__u32 *)((char *)raw + off) != EXT2_EXT_ATTR_MAGIC)
		goto out;
	off += sizeof(__u32);
	ret = walk_ea_refs(f, ino, (char *)raw + off, f->inode_size - off,
			   fn, arg);
out:
	free(raw);
	return ret;
}

/* The entries of an xattr block already read into buf. */
static int walk_block_refs(struct f4fs *f, ext2_ino_t ino, const char *buf,
			   ea_ref_fn fn, void *arg)
{
	size_t hlen = sizeof(struct ext2_ext_attr_header);

	if (((const struct ext2_ext_attr_header *)buf)->h_magic !=
	    EXT2_EXT_ATTR_MAGIC)
		return 0;
	return walk_ea_refs(f, ino, buf + hlen, f->blocksize - hlen, fn, arg);
}

/* The same for the entries of the inode's xattr block, if it has one. */
static int walk_xblock_refs(struct f4fs *f, ext2_ino_t ino,
			    const struct ext2_inode_large *inode, ea_ref_fn fn,
			    void *arg)
{
	blk64_t blk;
	errcode_t err;
	char *buf;
	int ret;

	blk = ext2fs_file_acl_block(f->fs, (struct ext2_inode *)inode);
	if (!blk || f4_valid_data_blocks(f, ino, blk, 1))
		return 0;
	buf = malloc(f->blocksize);
	if (!buf)
		return -ENOMEM;
	err = ext2fs_read_ext_attr3(f->fs, blk, buf, ino);
	if (err)
		ret = f4_fs_error(f, ino, err, "reading xattr block");
	else
		ret = walk_block_refs(f, ino, buf, fn, arg);
	free(buf);
	return ret;
}

/* What an inode's EA-inode values cost it: blocks and references. */
struct ea_tally {
	blk64_t blocks;			/* clusters added to its i_blocks */
	__u64 refs;			/* each costs it an inode in quota */
};

static uint32_t cluster_bytes(struct f4fs *f)
{
	return (uint32_t)f->blocksize << f->fs->cluster_ratio_bits;
}

static int add_charge(struct f4fs *f, ext2_ino_t ino,
		      const struct ext2_ext_attr_entry *e, void *arg)
{
	struct ea_tally *t = arg;

	/* whole clusters with bigalloc, as the kernel and e2fsck count */
	t->blocks += (e->e_value_size + cluster_bytes(f) - 1) /
		     cluster_bytes(f);
	t->refs++;
	return 0;
}

/* Tally the inode's EA-inode values, in its body and in its block. */
static int ea_inode_charge(struct f4fs *f, ext2_ino_t ino,
			   struct ea_tally *t)
{
	struct ext2_inode_large inode;
	int ret;

	t->blocks = 0;
	t->refs = 0;
	if (!ext2fs_has_feature_ea_inode(f->fs->super))
		return 0;
	ret = walk_ibody_refs(f, ino, add_charge, t);
	if (!ret)
		ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if (inode.i_flags & EXT4_EA_INODE_FL)
		return 0;
	return walk_xblock_refs(f, ino, &inode, add_charge, t);
}

/* How many EA-inode values the inode names (quota.c charges them). */
int f4_xattr_ea_refs(struct f4fs *f, ext2_ino_t ino, __u64 *refs)
{
	struct ea_tally t;
	int ret;

	ret = ea_inode_charge(f, ino, &t);
	*refs = ret ? 0 : t.refs;
	return ret;
}

/*
 * Charge the owner for EA-inode values gained, credit it for those lost:
 * their blocks in i_blocks (which quota.c sees written), and one inode
 * each in quota, as the kernel charges them and e2fsck counts them.
 */
static int ea_inode_recharge(struct f4fs *f, ext2_ino_t ino,
			     const struct ea_tally *before)
{
	struct ext2_inode_large inode;
	struct ea_tally after;
	int ret;

	ret = ea_inode_charge(f, ino, &after);
	if (ret)
		return ret;
	if (after.blocks == before->blocks && after.refs == before->refs)
		return 0;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	f4_quota_ea_inodes(f, ino, &inode,
			   (int64_t)(after.refs - before->refs));
	if (after.blocks == before->blocks)
		return 0;
	if (after.blocks > before->blocks)
		ext2fs_iblk_add_blocks(f->fs, (struct ext2_inode *)&inode,
				       after.blocks - before->blocks);
	else
		ext2fs_iblk_sub_blocks(f->fs, (struct ext2_inode *)&inode,
				       before->blocks - after.blocks);
	return f4_write_inode(f, ino, &inode);
}

/*
 * libext2fs makes EA inodes owned by root with generation 0; the kernel
 * gives them the owner's uid and gid (its quota code looks there) and a
 * generation of their own, as any new inode.  Do the same for the ones
 * just made for ino: named once, and still as libext2fs left them.
 */
static int ea_inode_adopt(struct f4fs *f, ext2_ino_t owner,
			  const struct ext2_ext_attr_entry *e, void *arg)
{
	const struct ext2_inode_large *o = arg;
	ext2_ino_t ea = e->e_value_inum;
	struct ext2_inode_large ei;
	int ret;

	if (f4_check_ino(f, ea) || ea == EXT2_ROOT_INO)
		return 0;
	ret = f4_read_inode(f, ea, &ei);
	if (ret)
		return ret;
	if (!(ei.i_flags & EXT4_EA_INODE_FL) || ei.i_generation ||
	    inode_uid(ei) || inode_gid(ei) ||
	    ext2fs_get_ea_inode_ref((struct ext2_inode *)&ei) != 1)
		return 0;
	ei.i_uid = inode_uid(*o);
	ext2fs_set_i_uid_high(ei, inode_uid(*o) >> 16);
	ei.i_gid = inode_gid(*o);
	ext2fs_set_i_gid_high(ei, inode_gid(*o) >> 16);
	ei.i_generation = f4_next_generation();
	return f4_write_inode(f, ea, &ei);
}

static int ea_inodes_adopt(struct f4fs *f, ext2_ino_t ino)
{
	struct ext2_inode_large inode;
	int ret;

	if (!ext2fs_has_feature_ea_inode(f->fs->super))
		return 0;
	ret = f4_read_inode(f, ino, &inode);
	if (!ret)
		ret = walk_ibody_refs(f, ino, ea_inode_adopt, &inode);
	if (ret)
		return ret;
	return walk_xblock_refs(f, ino, &inode, ea_inode_adopt, &inode);
}

/*
 * Drop one reference to an EA inode; the last one frees it.  A reference
 * that doesn't lead to an EA inode is reported and left alone: freeing
 * whatever inode it names would be worse.
 */
static int ea_inode_put(struct f4fs *f, ext2_ino_t owner,
			const struct ext2_ext_attr_entry *e, void *arg)
{
	ext2_ino_t ea = e->e_value_inum;
	struct ext2_inode_large ei;
	__u64 ref;
	int ret;

	if (f4_check_ino(f, ea) || ea == EXT2_ROOT_INO ||
	    !ext2fs_test_inode_bitmap2(f->fs->inode_map, ea)) {
		f4_corrupt(f, owner, "xattr value in bad or free inode %u",
			   ea);
		return 0;
	}
	ret = f4_read_inode(f, ea, &ei);
	if (ret)
		return ret;
	if (!(ei.i_flags & EXT4_EA_INODE_FL) || !ei.i_links_count) {
		f4_corrupt(f, owner, "xattr value inode %u is not an EA inode",
			   ea);
		return 0;
	}
	ref = ext2fs_get_ea_inode_ref((struct ext2_inode *)&ei);
	if (ref > 1) {
		ext2fs_set_ea_inode_ref((struct ext2_inode *)&ei, ref - 1);
		return f4_write_inode(f, ea, &ei);
	}
	ext2fs_set_ea_inode_ref((struct ext2_inode *)&ei, 0);
	return f4_free_inode(f, ea, &ei);
}

/* One more reference to an EA inode (a copied block names it too). */
static int ea_inode_get(struct f4fs *f, ext2_ino_t owner,
			const struct ext2_ext_attr_entry *e, void *arg)
{
	ext2_ino_t ea = e->e_value_inum;
	struct ext2_inode_large ei;
	__u64 ref;
	int ret;

	if (f4_check_ino(f, ea) || ea == EXT2_ROOT_INO)
		return f4_corrupt(f, owner, "xattr value in bad inode %u", ea);
	ret = f4_read_inode(f, ea, &ei);
	if (ret)
		return ret;
	if (!(ei.i_flags & EXT4_EA_INODE_FL) || !ei.i_links_count)
		return f4_corrupt(f, owner, "xattr value inode %u is not an "
				  "EA inode", ea);
	ref = ext2fs_get_ea_inode_ref((struct ext2_inode *)&ei);
	ext2fs_set_ea_inode_ref((struct ext2_inode *)&ei, ref + 1);
	return f4_write_inode(f, ea, &ei);
}

/*
 * A change to an inode whose xattr block is shared makes libext2fs copy
 * the block, and the copy names the same EA inodes without taking
 * references; libext2fs then drops one for each value it replaces or
 * removes, which would free an EA inode the other sharers still use.
 * So the copy's references are taken before the change, and given back
 * if the inode ends up sharing the original block after all.
 */
static int shared_ea_refs_take(struct f4fs *f, ext2_ino_t ino,
			       const struct shared_block *sb)
{
	if (!sb->blk || !ext2fs_has_feature_ea_inode(f->fs->super))
		return 0;
	return walk_block_refs(f, ino, sb->buf, ea_inode_get, NULL);
}

static int shared_ea_refs_settle(struct f4fs *f, ext2_ino_t ino,
				 const struct shared_block *sb)
{
	struct ext2_inode_large inode;
	int ret;

	if (!sb->blk || !ext2fs_has_feature_ea_inode(f->fs->super))
		return 0;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if (ext2fs_file_acl_block(f->fs, (struct ext2_inode *)&inode) !=
	    sb->blk)
		return 0;		/* a copy (or none): it kept them */
	return walk_block_refs(f, ino, sb->buf, ea_inode_put, NULL);
}

/* Set (value != NULL) or remove one attribute. */
static int put_value(struct f4fs *f, ext2_ino_t ino, const char *name,
		     const void *value, size_t size, int flags)
{
	struct ext2_xattr_handle *h;
	struct shared_block shared;
	void *old = NULL;
	size_t oldlen;
	struct ea_tally charge;
	errcode_t err;
	int ret, r, exists;

	ret = ea_inode_charge(f, ino, &charge);
	if (ret)
		return ret;
	ret = note_shared_block(f, ino, &shared);
	if (ret)
		return ret;
	ret = shared_ea_refs_take(f, ino, &shared);
	if (ret) {
		free(shared.buf);
		return ret;
	}
	ret = open_xattrs(f, ino, &h);
	if (ret) {
		shared_ea_refs_settle(f, ino, &shared);
		free(shared.buf);
		return ret;
	}
	err = ext2fs_xattr_get(h, name, &old, &oldlen);
	exists = !err;
	if (old)
		ext2fs_free_mem(&old);
	if (err && err != EXT2_ET_EA_KEY_NOT_FOUND) {
		ret = f4_fs_error(f, ino, err, "reading xattr");
		goto out;
	}
	if (value) {
		if ((flags & XATTR_CREATE) && exists) {
			ret = -EEXIST;
			goto out;
		}
		if ((flags & XATTR_REPLACE) && !exists) {
			ret = -ENODATA;
			goto out;
		}
		err = ext2fs_xattr_set(h, name, value, size);
	} else {
		if (!exists) {
			ret = -ENODATA;
			goto out;
		}
		err = ext2fs_xattr_remove(h, name);
	}
	if (err) {
		ret = f4_fs_error(f, ino, err, "writing xattr");
		goto out;
	}
	f4_fs_dirty(f);
out:
	ext2fs_xattrs_close(&h);
	if (!ret)
		ret = drop_empty_block(f, ino);
	if (!ret)
		ret = reuse_shared_block(f, ino, &shared);
	r = shared_ea_refs_settle(f, ino, &shared);
	if (!ret)
		ret = r;
	free(shared.buf);
	if (!ret)
		ret = ea_inode_recharge(f, ino, &charge);
	if (!ret && value)
		ret = ea_inodes_adopt(f, ino);
	return ret;
}

/* Where one named attribute's value is kept, if in an EA inode. */
struct ea_probe {
	const char *name;
	__u32 size;			/* its size; 0: not in an EA inode */
};

static const char *const ea_prefix[] = {
	[1] = "user.", [2] = ACL_ACCESS, [3] = ACL_DEFAULT,
	[4] = "trusted.", [6] = "security.", [7] = "system.",
};

static int probe_entry(struct f4fs *f, ext2_ino_t ino,
		       const struct ext2_ext_attr_entry *e, void *arg)
{
	struct ea_probe *p = arg;
	const char *pre = "";
	size_t plen;

	if (e->e_name_index < sizeof(ea_prefix) / sizeof(ea_prefix[0]) &&
	    ea_prefix[e->e_name_index])
		pre = ea_prefix[e->e_name_index];
	plen = strlen(pre);
	if (strncmp(p->name, pre, plen) ||
	    strlen(p->name + plen) != e->e_name_len ||
	    memcmp(p->name + plen, (const char *)(e + 1), e->e_name_len))
		return 0;
	p->size = e->e_value_size;
	return 0;
}

static int ea_probe(struct f4fs *f, ext2_ino_t ino, struct ea_probe *p)
{
	struct ext2_inode_large inode;
	int ret;

	p->size = 0;
	ret = walk_ibody_refs(f, ino, probe_entry, p);
	if (!ret)
		ret = f4_read_inode(f, ino, &inode);
	if (ret || p->size)
		return ret;
	return walk_xblock_refs(f, ino, &inode, probe_entry, p);
}

/*
 * A value that lands in an EA inode costs the file's owners an inode and
 * the value's blocks, and the kernel refuses it (EDQUOT) when that passes
 * a limit binding the caller.  It charges the new value before it lets
 * go of the old one, so a replacement must fit next to the value it
 * replaces.  Where the value goes is libext2fs's choice, so the check
 * follows the change: a value over the limit is taken back, and the old
 * one (if any) put back in its place.
 */
static int put_value_limited(struct f4fs *f, struct f4_cred *cred,
			     ext2_ino_t ino, const char *name,
			     const void *value, size_t size, int flags)
{
	struct ext2_inode_large inode;
	struct ea_probe was = { name, 0 }, now = { name, 0 };
	uint64_t space = 0, inodes = 0;
	void *old = NULL;
	size_t oldlen = 0;
	int ret, r, had;

	if (!ext2fs_has_feature_ea_inode(f->fs->super) ||
	    !f4_quota_binds(f, cred))
		return put_value(f, ino, name, value, size, flags);
	ret = ea_probe(f, ino, &was);
	if (ret)
		return ret;
	ret = get_value(f, ino, name, &old, &oldlen);
	if (ret && ret != -ENODATA)
		return ret;
	had = !ret;
	ret = put_value(f, ino, name, value, size, flags);
	if (!ret)
		ret = ea_probe(f, ino, &now);
	if (ret || !now.size)
		goto out;
	if (was.size) {		/* still charged when the new one was */
		space = (uint64_t)((was.size + cluster_bytes(f) - 1) /
				   cluster_bytes(f)) * cluster_bytes(f);
		inodes = 1;
	}
	ret = f4_read_inode(f, ino, &inode);
	if (!ret)
		ret = f4_quota_exceeded(f, cred, &inode, space, inodes);
	if (ret != -EDQUOT)
		goto out;
	r = put_value(f, ino, name, had ? (old ? old : "") : NULL, oldlen, 0);
	if (r) {
		f4_log(LOG_ERR, "inode %u: xattr %s over quota and could not "
		       "be taken back: %s", ino, name, strerror(-r));
		ret = r;
	}
out:
	if (old)
		ext2fs_free_mem(&old);
	return ret;
}

/* ---- ACLs ------------------------------------------------------------- */

static struct acl *acl_parse(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	struct acl *acl;
	int i, n;

	if (len < 4 || (len - 4) % 8 || ext2fs_le32_to_cpu(*(uint32_t *)p) !=
	    ACL_VERSION)
		return NULL;
	n = (len - 4) / 8;
	acl = malloc(sizeof(*acl) + n * sizeof(struct acl_entry));
	if (!acl)
		return NULL;
	acl->count = n;
	for (i = 0; i < n; i++) {
		const uint8_t *e = p + 4 + i * 8;

		acl->e[i].tag = e[0] | e[1] << 8;
		acl->e[i].perm = e[2] | e[3] << 8;
		acl->e[i].id = ext2fs_le32_to_cpu(*(uint32_t *)(e + 4));
	}
	return acl;
}

static void *acl_format(const struct acl *acl, size_t *len)
{
	uint8_t *buf, *e;
	uint32_t v;
	int i;

	*len = 4 + acl->count * 8;
	buf = malloc(*len);
	if (!buf)
		return NULL;
	v = ext2fs_cpu_to_le32(ACL_VERSION);
	memcpy(buf, &v, 4);
	for (i = 0; i < acl->count; i++) {
		e = buf + 4 + i * 8;
		e[0] = acl->e[i].tag & 0xff;
		e[1] = acl->e[i].tag >> 8;
		e[2] = acl->e[i].perm & 0xff;
		e[3] = acl->e[i].perm >> 8;
		v = ext2fs_cpu_to_le32(acl->e[i].id);
		memcpy(e + 4, &v, 4);
	}
	return buf;
}

/* The entry that carries the group class: the mask if any, else group. */
static struct acl_entry *acl_find(struct acl *acl, uint16_t tag)
{
	int i;

	for (i = 0; i < acl->count; i++)
		if (acl->e[i].tag == tag)
			return &acl->e[i];
	return NULL;
}

/* A valid ACL has one of each base entry and, with named ones, a mask. */
static int acl_valid(const struct acl *acl)
{
	int uo = 0, go = 0, o = 0, m = 0, named = 0, i;

	for (i = 0; i < acl->count; i++) {
		if (acl->e[i].perm & ~7)
			return 0;
		switch (acl->e[i].tag) {
		case ACL_USER_OBJ: uo++; break;
		case ACL_GROUP_OBJ: go++; break;
		case ACL_OTHER: o++; break;
		case ACL_MASK: m++; break;
		case ACL_USER:
		case ACL_GROUP: named++; break;
		default: return 0;
		}
	}
	return uo == 1 && go == 1 && o == 1 && m <= 1 && (!named || m == 1);
}

static int acl_is_minimal(const struct acl *acl)
{
	return acl->count == 3;
}

static int read_acl(struct f4fs *f, ext2_ino_t ino, const char *name,
		    struct acl **aclp)
{
	void *val = NULL;
	size_t len = 0;
	int ret;

	*aclp = NULL;
	ret = get_value(f, ino, name, &val, &len);
	if (ret)
		return ret;
	*aclp = acl_parse(val, len);
	ext2fs_free_mem(&val);
	if (!*aclp || !acl_valid(*aclp)) {
		free(*aclp);
		*aclp = NULL;
		return f4_corrupt(f, ino, "invalid %s", name);
	}
	return 0;
}

static int write_acl(struct f4fs *f, ext2_ino_t ino, const char *name,
		     const struct acl *acl)
{
	size_t len;
	void *buf = acl_format(acl, &len);
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = put_value(f, ino, name, buf, len, 0);
	free(buf);
	return ret;
}

/* Make the mode's permission bits and the ACL's base entries agree. */
static mode_t acl_to_mode(struct acl *acl, mode_t mode)
{
	struct acl_entry *uo = acl_find(acl, ACL_USER_OBJ);
	struct acl_entry *go = acl_find(acl, ACL_MASK);
	struct acl_entry *o = acl_find(acl, ACL_OTHER);

	if (!go)
		go = acl_find(acl, ACL_GROUP_OBJ);
	return (mode & ~0777) | (uo->perm << 6) | (go->perm << 3) | o->perm;
}

static void mode_to_acl(struct acl *acl, mode_t mode)
{
	struct acl_entry *go = acl_find(acl, ACL_MASK);

	if (!go)
		go = acl_find(acl, ACL_GROUP_OBJ);
	acl_find(acl, ACL_USER_OBJ)->perm = (mode >> 6) & 7;
	go->perm = (mode >> 3) & 7;
	acl_find(acl, ACL_OTHER)->perm = mode & 7;
}

/*
 * The access check of POSIX.1e: owner, named users, then the group class
 * (limited by the mask), then other.  -EAGAIN when there is no ACL.
 */
int f4_acl_permission(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		      const struct ext2_inode_large *inode, int mask)
{
	struct acl *acl;
	struct acl_entry *m;
	int ret, i, group_match = 0, maybe_denied = 0, allowed = 0;

	mask &= 7;
	ret = read_acl(f, ino, ACL_ACCESS, &acl);
	if (ret == -ENODATA)
		return -EAGAIN;
	if (ret)
		return ret;
	m = acl_find(acl, ACL_MASK);
	if (cred->uid == inode_uid(*inode)) {
		allowed = (acl_find(acl, ACL_USER_OBJ)->perm & mask) == mask;
		goto out;
	}
	for (i = 0; i < acl->count; i++) {
		struct acl_entry *e = &acl->e[i];
		int perm = e->perm & (m ? m->perm : 7);

		if (e->tag == ACL_USER && e->id == cred->uid) {
			allowed = (perm & mask) == mask;
			goto out;
		}
	}
	for (i = 0; i < acl->count; i++) {
		struct acl_entry *e = &acl->e[i];
		int perm = e->perm & (m ? m->perm : 7);
		int match = 0;

		if (e->tag == ACL_GROUP_OBJ)
			match = f4_group_member(cred, inode_gid(*inode));
		else if (e->tag == ACL_GROUP)
			match = f4_group_member(cred, e->id);
		if (match < 0) {
			/* Groups unknown: this entry might be the caller's */
			if ((perm & mask) != mask)
				maybe_denied = 1;
			continue;
		}
		if (match) {
			group_match = 1;
			if ((perm & mask) == mask) {
				allowed = 1;
				goto out;
			}
		}
	}
	if (!group_match && !maybe_denied)
		allowed = (acl_find(acl, ACL_OTHER)->perm & mask) == mask;
out:
	free(acl);
	return allowed ? 0 : -EACCES;
}

/*
 * A new inode in a directory with a default ACL: the mode is limited by
 * the ACL instead of the umask, the ACL becomes the inode's access ACL,
 * and directories inherit the default ACL too.  Called twice by creators:
 * with ino 0 to learn the mode, then with the new inode to store ACLs.
 */
int f4_inherit_acl(struct f4fs *f, ext2_ino_t dir, ext2_ino_t ino,
		   struct ext2_inode_large *inode, mode_t *mode, int *has_acl)
{
	struct acl *def, *acc;
	int ret, i;

	ret = read_acl(f, dir, ACL_DEFAULT, &def);
	if (ret == -ENODATA) {
		*has_acl = 0;
		return 0;
	}
	if (ret)
		return ret;
	*has_acl = 1;
	acc = malloc(sizeof(*acc) + def->count * sizeof(struct acl_entry));
	if (!acc) {
		ret = -ENOMEM;
		goto out;
	}
	acc->count = def->count;
	memcpy(acc->e, def->e, def->count * sizeof(struct acl_entry));
	/* The requested mode limits the owner, group class and other */
	for (i = 0; i < acc->count; i++) {
		struct acl_entry *e = &acc->e[i];

		switch (e->tag) {
		case ACL_USER_OBJ:
			e->perm &= (*mode >> 6) & 7;
			break;
		case ACL_OTHER:
			e->perm &= *mode & 7;
			break;
		case ACL_MASK:
			e->perm &= (*mode >> 3) & 7;
			break;
		case ACL_GROUP_OBJ:
			if (!acl_find(acc, ACL_MASK))
				e->perm &= (*mode >> 3) & 7;
			break;
		}
	}
	*mode = acl_to_mode(acc, *mode);
	if (!ino)
		goto out;
	if (!acl_is_minimal(acc)) {
		ret = write_acl(f, ino, ACL_ACCESS, acc);
		if (ret)
			goto out;
	}
	if (S_ISDIR(*mode))
		ret = write_acl(f, ino, ACL_DEFAULT, def);
	if (!ret)
		ret = f4_read_inode(f, ino, inode);
out:
	free(acc);
	free(def);
	return ret;
}

/* chmod: the access ACL's base entries follow the new mode. */
int f4_acl_chmod(struct f4fs *f, ext2_ino_t ino, mode_t mode)
{
	struct acl *acl;
	int ret;

	ret = read_acl(f, ino, ACL_ACCESS, &acl);
	if (ret == -ENODATA)
		return 0;
	if (ret)
		return ret;
	mode_to_acl(acl, mode);
	ret = write_acl(f, ino, ACL_ACCESS, acl);
	free(acl);
	return ret;
}

/*
 * Setting an access ACL sets the mode's permission bits too, and an ACL
 * that says no more than the mode is not stored at all (as the kernel's
 * posix_acl_update_mode() does).
 */
static int set_access_acl(struct f4fs *f, struct f4_cred *cred,
			  ext2_ino_t ino, const void *value, size_t size,
			  int flags, int *stored)
{
	struct ext2_inode_large inode;
	struct acl *acl;
	int ret;

	*stored = 1;
	acl = acl_parse(value, size);
	if (!acl || !acl_valid(acl)) {
		free(acl);
		return -EINVAL;
	}
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		goto out;
	inode.i_mode = acl_to_mode(acl, inode.i_mode);
	/*
	 * Like chmod, an ACL change drops setgid unless the caller is in the
	 * file's group.  In every mode: with default_permissions the kernel
	 * leaves this to the file system (it would only flag it through
	 * FUSE_SETXATTR_EXT, which libfuse 3.14 doesn't take).
	 */
	if (!f4_capable(f, cred) && !f4_in_group(cred, inode_gid(inode)))
		inode.i_mode &= ~LINUX_S_ISGID;
	ret = f4_write_inode(f, ino, &inode);
	if (ret)
		goto out;
	if (acl_is_minimal(acl)) {
		*stored = 0;
		ret = put_value(f, ino, ACL_ACCESS, NULL, 0, 0);
		if (ret == -ENODATA)
			ret = 0;
	}
out:
	free(acl);
	return ret;
}

/*
 * Writing to, truncating or chowning a file drops its file capabilities,
 * as the kernel's "killpriv" does (fuse4fs takes that job on, see
 * mount.c).  Whether an inode has none is remembered, so that only the
 * first write after a lookup pays for looking.
 */
int f4_kill_caps(struct f4fs *f, ext2_ino_t ino)
{
	struct f4_inode *rec = f4_iget_incore(f, ino);
	void *val = NULL;
	size_t len;
	int ret = 0;

	if (rec && rec->no_caps)
		goto out;
	ret = get_value(f, ino, CAPS_XATTR, &val, &len);
	if (!ret) {
		ext2fs_free_mem(&val);
		ret = put_value(f, ino, CAPS_XATTR, NULL, 0, 0);
	}
	if (ret == -ENODATA)
		ret = 0;
	if (!ret && rec)
		rec->no_caps = 1;
out:
	f4_iput(f, rec);
	return ret;
}

static void caps_changed(struct f4fs *f, ext2_ino_t ino, const char *name)
{
	struct f4_inode *rec;

	if (strcmp(name, CAPS_XATTR))
		return;
	rec = f4_iget_incore(f, ino);
	if (rec)
		rec->no_caps = 0;
	f4_iput(f, rec);
}

/* ---- the interface ------------------------------------------------------ */

static int xattr_perm(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		      const struct ext2_inode_large *inode, enum ns ns,
		      int write)
{
	int isreg = LINUX_S_ISREG(inode->i_mode);
	int isdir = LINUX_S_ISDIR(inode->i_mode);

	switch (ns) {
	case NS_BAD:
		return -EOPNOTSUPP;
	case NS_ACL:
		if (!f->opts->acl)
			return -EOPNOTSUPP;
		if (write && !f4_is_owner(f, cred, inode) &&
		    !f4_capable(f, cred))
			return -EPERM;
		return 0;
	case NS_TRUSTED:
		if (!f4_capable(f, cred))
			return write ? -EPERM : -ENODATA;
		return 0;
	case NS_SECURITY:
		if (write && f4_self_checks(f) && !f4_capable(f, cred) &&
		    !f4_is_owner(f, cred, inode))
			return -EPERM;
		return 0;
	case NS_USER:
		if (!isreg && !isdir)
			return write ? -EPERM : -ENODATA;
		if (write && isdir && (inode->i_mode & LINUX_S_ISVTX) &&
		    !f4_is_owner(f, cred, inode) && !f4_capable(f, cred))
			return -EPERM;
		return f4_check_perm(f, cred, inode, ino,
				     write ? MAY_WRITE : MAY_READ);
	}
	return 0;
}

static int check_xattr_name(const char *name)
{
	size_t len = strlen(name);
	const char *dot = strchr(name, '.');

	if (!len || len > XATTR_NAME_MAX)
		return -ERANGE;
	/* A namespace with nothing after it names nothing */
	if (dot && !dot[1] && name_space(name) != NS_BAD)
		return -EINVAL;
	if (name_space(name) == NS_BAD)
		return -EOPNOTSUPP;	/* system.data (inline data) and co */
	return 0;
}

/*
 * The change is done: a new ctime, and if the inode's block count moved
 * (an xattr block or an EA-inode value came or went), the kernel's
 * cached st_blocks is stale, since it only drops the ctime itself.
 */
static int touch_ctime(struct f4fs *f, ext2_ino_t ino,
		       const struct ext2_inode_large *before)
{
	struct ext2_inode_large inode;
	int ret;

	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if (ext2fs_get_stat_i_blocks(f->fs, (struct ext2_inode *)&inode) !=
	    ext2fs_get_stat_i_blocks(f->fs, (struct ext2_inode *)before))
		f4_inval_inode(f, ino);
	f4_touch(f, &inode, F4_TOUCH_C);
	return f4_write_inode(f, ino, &inode);
}

int f4_setxattr(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		const char *name, const void *value, size_t size, int flags)
{
	struct ext2_inode_large inode;
	enum ns ns = name_space(name);
	int ret, stored = 1;

	ret = check_xattr_name(name);
	if (ret)
		return ret;
	if (size > XATTR_MAX_VALUE)
		return -E2BIG;
	if (flags & ~(XATTR_CREATE | XATTR_REPLACE))
		return -EINVAL;
	ret = f4_check_writable(f);
	if (ret)
		return ret;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	ret = xattr_perm(f, cred, ino, &inode, ns, 1);
	if (ret)
		return ret;
	ret = f4_check_immutable(&inode, F4_OP_ATTR);
	if (ret)
		return ret;
	if (!ext2fs_has_feature_xattr(f->fs->super))
		return -EOPNOTSUPP;
	if (ns == NS_ACL) {
		if (!strcmp(name, ACL_DEFAULT)) {
			if (!LINUX_S_ISDIR(inode.i_mode))
				return -EACCES;
			struct acl *acl = acl_parse(value, size);
			int ok = acl && acl_valid(acl);

			free(acl);
			if (!ok)
				return -EINVAL;
		} else {
			ret = set_access_acl(f, cred, ino, value, size, flags,
					     &stored);
			if (ret)
				return ret;
		}
	}
	if (stored)
		ret = put_value_limited(f, cred, ino, name, value ? value : "",
					size, flags);
	caps_changed(f, ino, name);
	if (!ret)
		ret = touch_ctime(f, ino, &inode);
	return ret;
}

ssize_t f4_getxattr(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		    const char *name, void *value, size_t size)
{
	struct ext2_inode_large inode;
	void *val = NULL;
	size_t len = 0;
	int ret;

	ret = check_xattr_name(name);
	if (ret)
		return ret;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	ret = xattr_perm(f, cred, ino, &inode, name_space(name), 0);
	if (ret)
		return ret;
	ret = get_value(f, ino, name, &val, &len);
	if (ret)
		return ret;
	if (size) {
		if (len > size)
			ret = -ERANGE;
		else
			memcpy(value, val, len);
	}
	ext2fs_free_mem(&val);
	return ret ? ret : (ssize_t)len;
}

struct list_ctx {
	struct f4fs *f;
	struct f4_cred *cred;
	char *list;
	size_t size, used;
};

static int list_proc(char *name, char *value, size_t len, void *arg)
{
	struct list_ctx *lc = arg;
	enum ns ns = name_space(name);
	size_t n = strlen(name) + 1;

	if (ns == NS_BAD)
		return 0;		/* system.data and the like */
	if (ns == NS_TRUSTED && !f4_capable(lc->f, lc->cred))
		return 0;
	if (ns == NS_ACL && !lc->f->opts->acl)
		return 0;
	if (lc->size && lc->used + n <= lc->size)
		memcpy(lc->list + lc->used, name, n);
	lc->used += n;
	return 0;
}

ssize_t f4_listxattr(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		     char *list, size_t size)
{
	struct list_ctx lc = { f, cred, list, size, 0 };
	struct ext2_xattr_handle *h;
	errcode_t err;
	int ret;

	ret = open_xattrs(f, ino, &h);
	if (ret)
		return ret;
	err = ext2fs_xattrs_iterate(h, list_proc, &lc);
	ext2fs_xattrs_close(&h);
	if (err)
		return f4_fs_error(f, ino, err, "listing xattrs");
	if (size && lc.used > size)
		return -ERANGE;
	return lc.used;
}

int f4_removexattr(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		   const char *name)
{
	struct ext2_inode_large inode;
	int ret;

	ret = check_xattr_name(name);
	if (ret)
		return ret;
	ret = f4_check_writable(f);
	if (ret)
		return ret;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	ret = xattr_perm(f, cred, ino, &inode, name_space(name), 1);
	if (ret)
		return ret;
	ret = f4_check_immutable(&inode, F4_OP_ATTR);
	if (ret)
		return ret;
	ret = put_value(f, ino, name, NULL, 0, 0);
	caps_changed(f, ino, name);
	if (!ret)
		ret = touch_ctime(f, ino, &inode);
	return ret;
}

/*
 * A deleted inode gives back its xattr block (shared ones by refcount)
 * and its references to EA inodes: those of its own entries, and those
 * of its block's entries when it held the block's last reference.
 */
int f4_free_xattrs(struct f4fs *f, ext2_ino_t ino,
		   struct ext2_inode_large *inode)
{
	blk64_t blk = ext2fs_file_acl_block(f->fs, (struct ext2_inode *)inode);
	int ea_refs = ext2fs_has_feature_ea_inode(f->fs->super) &&
		      !(inode->i_flags & EXT4_EA_INODE_FL);
	__u32 count = 0;
	errcode_t err;
	char *buf;
	__u64 refs;
	int ret = 0;

	if (ea_refs && f->quota) {
		/* each value it names cost its owners an inode */
		ret = f4_xattr_ea_refs(f, ino, &refs);
		if (ret)
			return ret;
		f4_quota_ea_inodes(f, ino, inode, -(int64_t)refs);
	}
	if (ea_refs) {
		ret = walk_ibody_refs(f, ino, ea_inode_put, NULL);
		if (ret)
			return ret;
	}
	if (!blk)
		return 0;
	if (f4_valid_data_blocks(f, ino, blk, 1))
		goto clear;			/* damaged: just let go */
	buf = malloc(f->blocksize);
	if (!buf)
		return -ENOMEM;
	/* This reads the block into buf, and writes the new count */
	err = ext2fs_adjust_ea_refcount3(f->fs, blk, buf, -1, &count, ino);
	if (err) {
		free(buf);
		f4_fs_error(f, ino, err, "releasing xattr block");
		goto clear;
	}
	if (!count && ea_refs)
		ret = walk_block_refs(f, ino, buf, ea_inode_put, NULL);
	free(buf);
	if (ret)
		return ret;
	if (!count)
		ext2fs_block_alloc_stats2(f->fs, blk, -1);
	ext2fs_iblk_sub_blocks(f->fs, (struct ext2_inode *)inode, 1);
clear:
	ext2fs_file_acl_block_set(f->fs, (struct ext2_inode *)inode, 0);
	f4_fs_dirty(f);
	return 0;
}

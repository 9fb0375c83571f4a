/*
 * htree.c - hashed directory indexes.
 *
 * An htree directory's first block is a root holding "." and "..", a
 * small header, and (hash, block) pairs sorted by hash; one or two levels
 * of index blocks may follow, and the leaves are ordinary directory
 * blocks.  A name lives in the leaf whose range its hash falls in, or, if
 * several names share a hash, in the leaves that continue that range.
 *
 * Inserting into an htree is left to ext2fs_link(); this file finds the
 * leaves for a name and turns a full one-block directory into an htree,
 * as the kernel does when such a directory needs to grow.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fuse4fs.h"

#define DX_ROOT_INFO_OFF	24	/* after "." (12) and ".." (12) */

static unsigned int dx_csum_size(struct f4fs *f)
{
	return ext2fs_has_feature_metadata_csum(f->fs->super) ?
	       sizeof(struct ext2_dx_tail) : 0;
}

static int map_lblk(struct f4fs *f, ext2_ino_t dir,
		    const struct ext2_inode_large *inode, blk64_t lblk,
		    blk64_t *pblk)
{
	errcode_t err;
	int ret_flags = 0;

	if (lblk >= EXT2_I_SIZE(inode) / f->blocksize)
		return f4_corrupt(f, dir, "htree points past the end of the "
				  "directory (block %llu)",
				  (unsigned long long)lblk);
	err = ext2fs_bmap2(f->fs, dir, (struct ext2_inode *)inode, NULL, 0,
			   lblk, &ret_flags, pblk);
	if (err)
		return f4_fs_error(f, dir, err, "mapping directory block");
	if (!*pblk || (ret_flags & BMAP_RET_UNINIT))
		return f4_corrupt(f, dir, "htree block %llu is a hole",
				  (unsigned long long)lblk);
	return f4_valid_data_blocks(f, dir, *pblk, 1);
}

static int read_lblk(struct f4fs *f, ext2_ino_t dir,
		     const struct ext2_inode_large *inode, blk64_t lblk,
		     char *buf)
{
	blk64_t pblk;
	errcode_t err;
	int ret;

	ret = map_lblk(f, dir, inode, lblk, &pblk);
	if (ret)
		return ret;
	err = ext2fs_read_dir_block4(f->fs, pblk, buf, 0, dir);
	if (err)
		return f4_fs_error(f, dir, err, "reading htree block");
	return 0;
}

struct dx_level {
	struct ext2_dx_entry *entries;
	unsigned int count;
	unsigned int at;
};

/* Check a (count, limit) header at off and find hash's slot. */
static int dx_search(struct f4fs *f, ext2_ino_t dir, char *buf,
		     unsigned int off, uint32_t hash, struct dx_level *lv)
{
	struct ext2_dx_countlimit *cl = (void *)(buf + off);
	unsigned int limit = ext2fs_le16_to_cpu(cl->limit);
	unsigned int count = ext2fs_le16_to_cpu(cl->count);
	unsigned int lo, hi;
	struct ext2_dx_entry *e = (void *)(buf + off);

	if (!count || count > limit ||
	    off + (size_t)limit * sizeof(*e) > f->blocksize)
		return f4_corrupt(f, dir, "htree node count %u limit %u "
				  "invalid", count, limit);
	/* Entry 0 covers everything below entry 1's hash */
	lo = 1;
	hi = count;
	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;

		if (ext2fs_le32_to_cpu(e[mid].hash) > hash)
			hi = mid;
		else
			lo = mid + 1;
	}
	lv->entries = e;
	lv->count = count;
	lv->at = lo - 1;
	return 0;
}

static uint32_t dx_block(const struct dx_level *lv, unsigned int i)
{
	return ext2fs_le32_to_cpu(lv->entries[i].block) & EXT4_DX_BLOCK_MASK;
}

static int name_hash(struct f4fs *f, const struct ext2_inode_large *inode,
		     int version, const char *name, size_t len,
		     uint32_t *hash)
{
	uint32_t minor;
	errcode_t err;
	int alg = version;

	if (alg <= EXT2_HASH_TEA &&
	    (f->fs->super->s_flags & EXT2_FLAGS_UNSIGNED_HASH))
		alg += 3;
	err = ext2fs_dirhash2(alg, name, len, f->fs->encoding,
			      inode->i_flags & EXT4_CASEFOLD_FL,
			      f->fs->super->s_hash_seed, hash, &minor);
	return err ? -EAGAIN : 0;
}

/*
 * Find the physical leaf blocks name may be in.  -EAGAIN means the index
 * can't answer (a hash fuse4fs doesn't compute, or collisions running
 * across index blocks): the caller scans every block instead.
 */
int f4_htree_lookup_leaf(struct f4fs *f, ext2_ino_t dir,
			 const struct ext2_inode_large *inode,
			 const char *name, size_t len, blk64_t *leaves,
			 int maxleaves, int *nleaves)
{
	struct ext2_dx_root_info *root;
	struct dx_level lv = { NULL, 0, 0 };
	unsigned int levels, level, off, j;
	uint32_t hash, bound = 0, upper = 0;
	int have_bound = 0, upper_bound = 0;
	char *buf;
	int ret, n = 0;

	buf = malloc(f->blocksize);
	if (!buf)
		return -ENOMEM;
	ret = read_lblk(f, dir, inode, 0, buf);
	if (ret)
		goto out;
	root = (void *)(buf + DX_ROOT_INFO_OFF);
	if (root->reserved_zero || root->info_length != 8 ||
	    root->indirect_levels >= ext2_dir_htree_level(f->fs)) {
		ret = f4_corrupt(f, dir, "htree root is damaged");
		goto out;
	}
	if (root->hash_version > EXT2_HASH_TEA) {
		ret = -EAGAIN;
		goto out;
	}
	ret = name_hash(f, inode, root->hash_version, name, len, &hash);
	if (ret)
		goto out;
	levels = root->indirect_levels;
	off = DX_ROOT_INFO_OFF + root->info_length;
	for (level = 0; ; level++) {
		ret = dx_search(f, dir, buf, off, hash, &lv);
		if (ret)
			goto out;
		/* Where the subtree we go down into ends, seen from above */
		if (lv.at + 1 < lv.count) {
			bound = ext2fs_le32_to_cpu(lv.entries[lv.at + 1].hash);
			have_bound = 1;
		}
		if (level == levels)
			break;
		upper = bound;
		upper_bound = have_bound;
		ret = read_lblk(f, dir, inode, dx_block(&lv, lv.at), buf);
		if (ret)
			goto out;
		off = 8;		/* past the empty dirent of a node */
	}
	/* The leaf, and any that continue this hash after it */
	for (j = lv.at; j < lv.count && n < maxleaves; j++) {
		if (j > lv.at &&
		    (ext2fs_le32_to_cpu(lv.entries[j].hash) & ~1U) != hash)
			break;
		ret = map_lblk(f, dir, inode, dx_block(&lv, j), &leaves[n]);
		if (ret)
			goto out;
		n++;
	}
	/*
	 * Leaves that continue this hash can only be in the next index
	 * block if the subtree after ours starts with a continuation of it
	 * (rare: many names with one hash); then scan everything.
	 */
	if (n == maxleaves || (j == lv.count && levels > 0 && upper_bound &&
			       (upper & ~1U) == hash)) {
		ret = -EAGAIN;
		goto out;
	}
	*nleaves = n;
	ret = 0;
out:
	free(buf);
	return ret;
}

/* Pack live entries other than "." and ".." from src into dst. */
static int repack_entries(struct f4fs *f, ext2_ino_t dir, const char *src,
			  char *dst, unsigned int end)
{
	unsigned int off = 0, out = 0, rec_len, last = 0;
	struct ext2_dir_entry *de, *nde;
	int nent = 0;

	memset(dst, 0, f->blocksize);
	while (off < f->blocksize) {
		unsigned int need;

		de = (struct ext2_dir_entry *)(src + off);
		if (ext2fs_get_rec_len(f->fs, de, &rec_len) || rec_len < 8 ||
		    off + rec_len > f->blocksize)
			return f4_corrupt(f, dir, "damaged directory block");
		if (off + rec_len > end)
			break;			/* the checksum tail */
		off += rec_len;
		if (!de->inode || nent++ < 2)
			continue;		/* unused, ".", ".." */
		need = EXT2_DIR_REC_LEN(ext2fs_dirent_name_len(de));
		nde = (struct ext2_dir_entry *)(dst + out);
		memcpy(nde, de, 8 + ext2fs_dirent_name_len(de));
		ext2fs_set_rec_len(f->fs, need, nde);
		last = out;
		out += need;
	}
	if (!out)
		return f4_corrupt(f, dir, "full directory block has no "
				  "entries");
	nde = (struct ext2_dir_entry *)(dst + last);
	ext2fs_set_rec_len(f->fs, end - last, nde);
	if (end < f->blocksize)
		ext2fs_initialize_dirent_tail(f->fs,
					      EXT2_DIRENT_TAIL(dst,
							       f->blocksize));
	return 0;
}

/* Rewrite block 0 as an htree root with one leaf, logical block 1. */
static void build_root(struct f4fs *f, ext2_ino_t dir, ext2_ino_t parent,
		       char *buf)
{
	struct ext2_dir_entry *dot, *dotdot;
	struct ext2_dx_root_info *root;
	struct ext2_dx_countlimit *cl;
	struct ext2_dx_entry *e;
	int ftype = ext2fs_has_feature_filetype(f->fs->super) ?
		    EXT2_FT_DIR : 0;
	unsigned int limit;

	memset(buf, 0, f->blocksize);
	dot = (struct ext2_dir_entry *)buf;
	dot->inode = dir;
	ext2fs_dirent_set_name_len(dot, 1);
	ext2fs_dirent_set_file_type(dot, ftype);
	dot->name[0] = '.';
	ext2fs_set_rec_len(f->fs, 12, dot);

	dotdot = (struct ext2_dir_entry *)(buf + 12);
	dotdot->inode = parent;
	ext2fs_dirent_set_name_len(dotdot, 2);
	ext2fs_dirent_set_file_type(dotdot, ftype);
	dotdot->name[0] = '.';
	dotdot->name[1] = '.';
	ext2fs_set_rec_len(f->fs, f->blocksize - 12, dotdot);

	root = (struct ext2_dx_root_info *)(buf + DX_ROOT_INFO_OFF);
	root->hash_version = f->fs->super->s_def_hash_version;
	if (root->hash_version > EXT2_HASH_TEA)
		root->hash_version = EXT2_HASH_HALF_MD4;
	root->info_length = 8;

	cl = (struct ext2_dx_countlimit *)(buf + DX_ROOT_INFO_OFF + 8);
	limit = (f->blocksize - DX_ROOT_INFO_OFF - 8 - dx_csum_size(f)) /
		sizeof(struct ext2_dx_entry);
	cl->limit = ext2fs_cpu_to_le16(limit);
	cl->count = ext2fs_cpu_to_le16(1);
	e = (struct ext2_dx_entry *)cl;
	e[0].block = ext2fs_cpu_to_le32(1);
}

/*
 * Turn a full, one-block linear directory into an htree: its entries move
 * to a new leaf and block 0 becomes the index root.  ext2fs_link() then
 * splits leaves as entries arrive.
 */
int f4_htree_convert(struct f4fs *f, ext2_ino_t dir,
		     struct ext2_inode_large *inode)
{
	ext2_filsys fs = f->fs;
	struct ext2_dir_entry *dot, *dotdot;
	blk64_t pblk0, pblk1;
	char *buf, *leaf;
	unsigned int end;
	errcode_t err;
	ext2_ino_t parent;
	int ret;

	buf = malloc(2 * f->blocksize);
	if (!buf)
		return -ENOMEM;
	leaf = buf + f->blocksize;
	ret = map_lblk(f, dir, inode, 0, &pblk0);
	if (ret)
		goto out;
	err = ext2fs_read_dir_block4(fs, pblk0, buf, 0, dir);
	if (err) {
		ret = f4_fs_error(f, dir, err, "reading directory block");
		goto out;
	}
	dot = (struct ext2_dir_entry *)buf;
	dotdot = (struct ext2_dir_entry *)(buf + 12);
	if (dot->inode != dir || ext2fs_dirent_name_len(dot) != 1 ||
	    ext2fs_dirent_name_len(dotdot) != 2 ||
	    memcmp(dotdot->name, "..", 2)) {
		ret = f4_corrupt(f, dir, "first directory block lacks . "
				 "and ..");
		goto out;
	}
	parent = dotdot->inode;
	end = f->blocksize - (ext2fs_has_feature_metadata_csum(fs->super) ?
			      sizeof(struct ext2_dir_entry_tail) : 0);
	ret = repack_entries(f, dir, buf, leaf, end);
	if (ret)
		goto out;

	/* Logical block 1 takes the entries */
	err = ext2fs_inode_size_set(fs, (struct ext2_inode *)inode,
				    2 * f->blocksize);
	if (!err)
		err = ext2fs_fallocate(fs, EXT2_FALLOCATE_FORCE_INIT, dir,
				       (struct ext2_inode *)inode, pblk0, 1,
				       1);
	if (err) {
		ret = f4_fs_error(f, dir, err, "growing directory");
		goto out;
	}
	inode->i_flags |= EXT2_INDEX_FL;
	ret = f4_write_inode(f, dir, inode);
	if (ret)
		goto out;
	ret = map_lblk(f, dir, inode, 1, &pblk1);
	if (ret)
		goto out;
	err = ext2fs_write_dir_block4(fs, pblk1, leaf, 0, dir);
	if (!err) {
		build_root(f, dir, parent, buf);
		err = ext2fs_write_dir_block4(fs, pblk0, buf, 0, dir);
	}
	if (err)
		ret = f4_fs_error(f, dir, err, "writing htree");
	f4_fs_dirty(f);
out:
	free(buf);
	return ret;
}

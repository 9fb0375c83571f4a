/*
 * map.c - where a file's blocks are: logical to physical mapping, block
 * allocation for writes, and the "system zone" check.
 *
 * Reads and writes work a run of contiguous blocks at a time (an extent,
 * or a contiguous stretch of a block-mapped file) so that file data moves
 * in large I/Os.  Every run taken from an inode is checked against the
 * blocks the file system keeps for itself (superblocks, descriptors,
 * bitmaps, inode tables) and its size: a damaged extent tree must not
 * turn a write into one over metadata.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fuse4fs.h"

/* The runs of blocks that no file may own, as a block bitmap. */
int f4_map_init(struct f4fs *f)
{
	ext2_filsys fs = f->fs;
	ext2fs_block_bitmap zone;
	errcode_t err;
	dgrp_t g;

	err = ext2fs_allocate_block_bitmap(fs, "system zone", &zone);
	if (err)
		return f4_errno(err);
	for (g = 0; g < fs->group_desc_count; g++) {
		blk64_t b;

		ext2fs_reserve_super_and_bgd(fs, g, zone);
		b = ext2fs_block_bitmap_loc(fs, g);
		if (b && b < ext2fs_blocks_count(fs->super))
			ext2fs_mark_block_bitmap2(zone, b);
		b = ext2fs_inode_bitmap_loc(fs, g);
		if (b && b < ext2fs_blocks_count(fs->super))
			ext2fs_mark_block_bitmap2(zone, b);
		b = ext2fs_inode_table_loc(fs, g);
		if (b && b + fs->inode_blocks_per_group <=
			 ext2fs_blocks_count(fs->super))
			ext2fs_mark_block_bitmap_range2(zone, b,
						fs->inode_blocks_per_group);
	}
	f->sysmap = zone;
	return 0;
}

void f4_map_free(struct f4fs *f)
{
	if (f->sysmap)
		ext2fs_free_block_bitmap(f->sysmap);
	f->sysmap = NULL;
}

/* 0 if [pblk, pblk + len) may hold file data, else -EFSCORRUPTED. */
int f4_valid_data_blocks(struct f4fs *f, ext2_ino_t ino, blk64_t pblk,
			 blk64_t len)
{
	blk64_t end = ext2fs_blocks_count(f->fs->super);

	if (!len || pblk < f->fs->super->s_first_data_block || pblk >= end ||
	    len > end - pblk)
		return f4_corrupt(f, ino, "block %llu (+%llu) outside the "
				  "file system", (unsigned long long)pblk,
				  (unsigned long long)len);
	if (f->sysmap &&
	    !ext2fs_test_block_bitmap_range2(f->sysmap, pblk, len))
		return f4_corrupt(f, ino, "blocks %llu-%llu overlap file "
				  "system metadata", (unsigned long long)pblk,
				  (unsigned long long)(pblk + len - 1));
	return 0;
}

/* block_iterate3 callback: every block a block-mapped file points at. */
static int check_one(ext2_filsys fs, blk64_t *blocknr, e2_blkcnt_t blockcnt,
		     blk64_t ref_blk, int ref_offset, void *priv)
{
	struct { struct f4fs *f; ext2_ino_t ino; int ret; } *c = priv;

	c->ret = f4_valid_data_blocks(c->f, c->ino, *blocknr, 1);
	return c->ret ? BLOCK_ABORT : 0;
}

/*
 * Every block of the file (its data and the blocks of its extent tree or
 * indirect blocks) lies where a file's blocks may: 0 or -EFSCORRUPTED.
 * For directories handed to libext2fs (ext2fs_link(), ext2fs_expand_dir(),
 * ext2fs_dir_iterate2()), which read and write the blocks a damaged map
 * names without asking, inode tables included.  One check per extent.
 */
int f4_valid_file_blocks(struct f4fs *f, ext2_ino_t ino,
			 struct ext2_inode_large *inode)
{
	struct { struct f4fs *f; ext2_ino_t ino; int ret; } c = { f, ino, 0 };
	ext2_extent_handle_t h;
	struct ext2fs_extent ex;
	errcode_t err;
	int op = EXT2_EXTENT_ROOT;

	if (inode->i_flags & EXT4_INLINE_DATA_FL)
		return 0;
	if (!(inode->i_flags & EXT4_EXTENTS_FL)) {
		err = ext2fs_block_iterate3(f->fs, ino, BLOCK_FLAG_READ_ONLY,
					    NULL, check_one, &c);
		if (c.ret)
			return c.ret;
		return err ? f4_fs_error(f, ino, err, "mapping blocks") : 0;
	}
	err = ext2fs_extent_open2(f->fs, ino, (struct ext2_inode *)inode, &h);
	if (err)
		return f4_fs_error(f, ino, err, "reading extent tree");
	while (!c.ret) {
		err = ext2fs_extent_get(h, op, &ex);
		op = EXT2_EXTENT_NEXT;
		if (err == EXT2_ET_EXTENT_NO_NEXT ||
		    err == EXT2_ET_NO_CURRENT_NODE) {
			err = 0;
			break;
		}
		if (err)
			break;
		if (ex.e_flags & EXT2_EXTENT_FLAGS_SECOND_VISIT)
			continue;
		/* a leaf's extent, or the tree block an index entry names */
		c.ret = f4_valid_data_blocks(f, ino, ex.e_pblk,
				(ex.e_flags & EXT2_EXTENT_FLAGS_LEAF) ?
				ex.e_len : 1);
	}
	ext2fs_extent_free(h);
	if (c.ret)
		return c.ret;
	return err ? f4_fs_error(f, ino, err, "reading extent tree") : 0;
}

static int map_extent(struct f4fs *f, ext2_ino_t ino,
		      struct ext2_inode_large *inode, blk64_t lblk,
		      blk64_t len, struct f4_map *map)
{
	ext2_extent_handle_t h;
	struct ext2fs_extent ex;
	errcode_t err;
	int ret = 0;

	err = ext2fs_extent_open2(f->fs, ino, (struct ext2_inode *)inode, &h);
	if (err)
		return f4_fs_error(f, ino, err, "reading extent tree");
	err = ext2fs_extent_goto2(h, 0, lblk);
	if (!err) {
		err = ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &ex);
		if (err)
			goto out;
		if (ex.e_lblk > lblk || !ex.e_len ||
		    lblk - ex.e_lblk >= ex.e_len) {
			ret = f4_corrupt(f, ino, "extent lookup for block %llu "
					 "returned %llu+%u",
					 (unsigned long long)lblk,
					 (unsigned long long)ex.e_lblk,
					 ex.e_len);
			goto out;
		}
		map->pblk = ex.e_pblk + (lblk - ex.e_lblk);
		if (len > ex.e_len - (lblk - ex.e_lblk))
			len = ex.e_len - (lblk - ex.e_lblk);
		map->len = len;
		map->unwritten = !!(ex.e_flags & EXT2_EXTENT_FLAGS_UNINIT);
		ret = f4_valid_data_blocks(f, ino, map->pblk, map->len);
		goto out;
	}
	if (err != EXT2_ET_EXTENT_NOT_FOUND && err != EXT2_ET_NO_CURRENT_NODE)
		goto out;
	/* A hole: it lasts until the next extent, if any */
	err = 0;
	map->pblk = 0;
	map->unwritten = 0;
	map->len = len;
	if (ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &ex))
		goto out;
	while (ex.e_lblk <= lblk) {
		if (ext2fs_extent_get(h, EXT2_EXTENT_NEXT_LEAF, &ex))
			goto out;
	}
	if (ex.e_lblk - lblk < map->len)
		map->len = ex.e_lblk - lblk;
out:
	ext2fs_extent_free(h);
	if (err)
		return f4_fs_error(f, ino, err, "reading extent tree");
	return ret;
}

/* The run within one table of block pointers, from slot pos on. */
static void scan_table(const __u32 *tab, unsigned int n, unsigned int pos,
		       blk64_t len, struct f4_map *map)
{
	blk64_t first = ext2fs_le32_to_cpu(tab[pos]), count = 1, p;

	for (pos++; pos < n && count < len; pos++, count++) {
		p = ext2fs_le32_to_cpu(tab[pos]);
		if (first ? p != first + count : p != 0)
			break;
	}
	map->pblk = first;
	map->len = count;
}

/*
 * Block-mapped (ext2/ext3) files: walk the indirect tree by hand, one
 * block read per level, so that a missing indirect block is seen as the
 * hole it is (up to apb^3 blocks at once) rather than probed block by
 * block, which made SEEK_DATA over a sparse terabyte take minutes.
 */
static int map_blockmap(struct f4fs *f, ext2_ino_t ino,
			struct ext2_inode_large *inode, blk64_t lblk,
			blk64_t len, struct f4_map *map)
{
	ext2_filsys fs = f->fs;
	blk64_t apb = fs->blocksize / 4, span, idx = lblk, ptr;
	unsigned int slot;
	errcode_t err;
	__u32 *buf = NULL;
	int level, ret = 0;

	map->unwritten = 0;
	if (idx < EXT2_NDIR_BLOCKS) {
		scan_table(inode->i_block, EXT2_NDIR_BLOCKS, idx, len, map);
		goto check;
	}
	idx -= EXT2_NDIR_BLOCKS;
	for (level = 1, span = apb; level <= 3; level++, span *= apb) {
		if (idx < span)
			break;
		idx -= span;
	}
	if (level > 3) {			/* past the largest file */
		map->pblk = 0;
		map->len = len;
		return 0;
	}
	ptr = inode->i_block[EXT2_NDIR_BLOCKS + level - 1];
	buf = malloc(fs->blocksize);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (!ptr) {			/* the whole subtree is a hole */
			map->pblk = 0;
			map->len = span - idx < len ? span - idx : len;
			goto out;
		}
		ret = f4_valid_data_blocks(f, ino, ptr, 1);
		if (ret)
			goto out;
		err = io_channel_read_blk64(fs->io, ptr, 1, buf);
		if (err) {
			ret = f4_fs_error(f, ino, err, "reading indirect block");
			goto out;
		}
		span /= apb;
		slot = idx / span;
		idx %= span;
		if (span == 1)
			break;
		ptr = ext2fs_le32_to_cpu(buf[slot]);
	}
	scan_table(buf, apb, slot, len, map);
check:
	if (map->pblk)
		ret = f4_valid_data_blocks(f, ino, map->pblk, map->len);
out:
	free(buf);
	return ret;
}

/*
 * The run of blocks starting at lblk, at most len long: mapped (pblk),
 * unwritten (reads as zeros), or a hole (pblk 0).
 */
int f4_map_blocks(struct f4fs *f, ext2_ino_t ino,
		  struct ext2_inode_large *inode, blk64_t lblk, blk64_t len,
		  struct f4_map *map)
{
	map->lblk = lblk;
	if (inode->i_flags & EXT4_EXTENTS_FL)
		return map_extent(f, ino, inode, lblk, len, map);
	return map_blockmap(f, ino, inode, lblk, len, map);
}

static blk64_t alloc_goal(struct f4fs *f, ext2_ino_t ino,
			  struct ext2_inode_large *inode, blk64_t lblk)
{
	struct f4_map prev;

	if (lblk && !f4_map_blocks(f, ino, inode, lblk - 1, 1, &prev) &&
	    prev.pblk)
		return prev.pblk + 1;
	return ext2fs_find_inode_goal(f->fs, ino, (struct ext2_inode *)inode,
				      lblk);
}

/*
 * A free run for file data, at or after goal, from blocks that are free
 * on disk as well as in memory (alloc.c); when only blocks freed since
 * the last flush are left, flush and use them.
 */
static errcode_t find_range(struct f4fs *f, blk64_t goal, blk64_t len,
			    blk64_t *pblk, blk64_t *plen)
{
	ext2_filsys fs = f->fs;
	blk64_t first = fs->super->s_first_data_block;
	errcode_t err;

	err = f4_alloc_range(f, goal, len, pblk, plen);
	if (err == EXT2_ET_BLOCK_ALLOC_FAIL && goal > first)
		err = f4_alloc_range(f, first, len, pblk, plen);
	if (err == EXT2_ET_BLOCK_ALLOC_FAIL && f->freed &&
	    ext2fs_free_blocks_count(fs->super) && !f4_fs_flush(f))
		err = f4_alloc_range(f, first, len, pblk, plen);
	return err;
}

#define INIT_MAX_LEN	32768		/* longest initialized extent */
#define UNINIT_MAX_LEN	32767		/* longest unwritten extent */

/* Two initialized extents that continue each other, logically and on disk. */
static int can_join(const struct ext2fs_extent *l,
		    const struct ext2fs_extent *r)
{
	return !(l->e_flags & EXT2_EXTENT_FLAGS_UNINIT) &&
	       !(r->e_flags & EXT2_EXTENT_FLAGS_UNINIT) &&
	       l->e_lblk + l->e_len == r->e_lblk &&
	       l->e_pblk + l->e_len == r->e_pblk &&
	       l->e_len + r->e_len <= INIT_MAX_LEN;
}

/* Put the handle on the extent holding lblk, and read it. */
static errcode_t extent_at(ext2_extent_handle_t h, blk64_t lblk,
			   struct ext2fs_extent *ex)
{
	errcode_t err = ext2fs_extent_goto2(h, 0, lblk);

	if (!err)
		err = ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, ex);
	return err;
}

/*
 * The parents' keys must follow a leaf's first extent: one that grows
 * leftwards or is deleted changes them.  A tree left with no current
 * node (its last extent gone) has nothing to fix.
 */
static errcode_t fix_parents(ext2_extent_handle_t h)
{
	errcode_t err = ext2fs_extent_fix_parents(h);

	return err == EXT2_ET_NO_CURRENT_NODE ? 0 : err;
}

/* Replace the extent starting at ex->e_lblk's start block with *ex. */
static errcode_t replace_at(ext2_extent_handle_t h, blk64_t at,
			    struct ext2fs_extent *ex)
{
	struct ext2fs_extent old;
	errcode_t err = extent_at(h, at, &old);

	if (!err)
		err = ext2fs_extent_replace(h, 0, ex);
	if (!err)
		err = fix_parents(h);
	return err;
}

/*
 * Join the initialized extent *cur with its neighbours where they
 * continue it, so that filling a preallocated file in random order ends
 * with a few long extents, not one per write.  Each join deletes the
 * neighbour first and then grows *cur: a failure in between leaves a
 * hole over blocks still marked in use (lost space), never two extents
 * mapping the same block or an extent reaching past its leaf's range.
 */
static errcode_t merge_neighbours(ext2_extent_handle_t h,
				  struct ext2fs_extent *cur)
{
	struct ext2fs_extent nb;
	errcode_t err;

	if (cur->e_lblk && !extent_at(h, cur->e_lblk - 1, &nb) &&
	    can_join(&nb, cur)) {
		err = extent_at(h, cur->e_lblk, &nb);
		if (!err)
			err = ext2fs_extent_delete(h, 0);
		if (!err)
			err = fix_parents(h);
		if (err)
			return err;
		err = extent_at(h, cur->e_lblk - 1, &nb);
		if (err)
			return err;
		nb.e_len += cur->e_len;
		err = ext2fs_extent_replace(h, 0, &nb);
		if (!err)
			err = fix_parents(h);
		if (err)
			return err;
		*cur = nb;
	}
	if (!extent_at(h, cur->e_lblk + cur->e_len, &nb) &&
	    nb.e_lblk == cur->e_lblk + cur->e_len && can_join(cur, &nb)) {
		err = ext2fs_extent_delete(h, 0);
		if (!err)
			err = fix_parents(h);
		if (err)
			return err;
		cur->e_len += nb.e_len;
		err = replace_at(h, cur->e_lblk, cur);
		if (err)
			return err;
	}
	return 0;
}

/* Delete the extent holding lblk. */
static errcode_t delete_at(ext2_extent_handle_t h, blk64_t lblk)
{
	struct ext2fs_extent ex;
	errcode_t err = extent_at(h, lblk, &ex);

	if (!err)
		err = ext2fs_extent_delete(h, 0);
	if (!err)
		err = fix_parents(h);
	return err;
}

/*
 * Written blocks at an edge of the unwritten extent *ex (its start if
 * left, else its end) that continue an initialized neighbour move into
 * that neighbour, as ext4 does it: the boundary shifts and no extent is
 * added, so the tree doesn't grow.  The unwritten extent shrinks to *rest
 * first (see split_unwritten).  1 if done, with any error in *errp.
 */
static int absorb_edge(ext2_extent_handle_t h, const struct ext2fs_extent *ex,
		       const struct ext2fs_extent *mid,
		       const struct ext2fs_extent *rest, int left,
		       errcode_t *errp)
{
	struct ext2fs_extent nb, keep = *rest;

	if (left ? !mid->e_lblk || extent_at(h, mid->e_lblk - 1, &nb) ||
		   !can_join(&nb, mid)
		 : extent_at(h, mid->e_lblk + mid->e_len, &nb) ||
		   !can_join(mid, &nb))
		return 0;
	if (keep.e_len)
		*errp = replace_at(h, ex->e_lblk, &keep);
	else
		*errp = delete_at(h, ex->e_lblk);
	if (*errp)
		return 1;
	if (left) {
		nb.e_len += mid->e_len;
		*errp = replace_at(h, nb.e_lblk, &nb);
	} else {
		blk64_t at = nb.e_lblk;

		nb.e_lblk = mid->e_lblk;
		nb.e_pblk = mid->e_pblk;
		nb.e_len += mid->e_len;
		*errp = replace_at(h, at, &nb);
	}
	return 1;
}

/*
 * Split the unwritten extent *ex around [mid->e_lblk, + mid->e_len),
 * which becomes initialized.  The unwritten extent is shrunk before the
 * new pieces go in, so a failure part way (no space for a new tree
 * block) leaves a hole, which reads as zeros just as the unwritten
 * blocks did, rather than overlapping extents.
 */
static errcode_t split_unwritten(ext2_extent_handle_t h,
				 const struct ext2fs_extent *ex,
				 struct ext2fs_extent *mid)
{
	blk64_t last = ex->e_lblk + ex->e_len - 1;
	blk64_t b = mid->e_lblk + mid->e_len - 1;
	struct ext2fs_extent head = *ex, tail = *ex;
	errcode_t err = 0;

	tail.e_lblk = b + 1;
	tail.e_pblk = ex->e_pblk + (b + 1 - ex->e_lblk);
	tail.e_len = last - b;
	head.e_len = mid->e_lblk - ex->e_lblk;

	if (!head.e_len && absorb_edge(h, ex, mid, &tail, 1, &err))
		return err;
	if (!tail.e_len && absorb_edge(h, ex, mid, &head, 0, &err))
		return err;
	if (!head.e_len && !tail.e_len) {
		return replace_at(h, ex->e_lblk, mid);
	} else if (!head.e_len) {
		/* the tail keeps the slot; the written part goes before it */
		err = replace_at(h, ex->e_lblk, &tail);
		if (!err)
			err = ext2fs_extent_insert(h, 0, mid);
	} else {
		err = replace_at(h, ex->e_lblk, &head);
		if (!err)
			err = ext2fs_extent_insert(h, EXT2_EXTENT_INSERT_AFTER,
						   mid);
		if (!err && tail.e_len)
			err = fix_parents(h);
		if (!err && tail.e_len)
			err = ext2fs_extent_insert(h, EXT2_EXTENT_INSERT_AFTER,
						   &tail);
	}
	if (!err)
		err = fix_parents(h);
	return err;
}

/*
 * The blocks of map (all in one unwritten extent) now hold the data just
 * written there: mark them initialized.  Called only after the data is
 * on the device, so that no crash or failed write can expose what the
 * preallocated blocks held before.
 */
int f4_map_convert(struct f4fs *f, ext2_ino_t ino,
		   struct ext2_inode_large *inode, const struct f4_map *map)
{
	struct ext2fs_extent ex, mid;
	ext2_extent_handle_t h;
	errcode_t err;
	int ret = 0;

	err = ext2fs_extent_open2(f->fs, ino, (struct ext2_inode *)inode, &h);
	if (err)
		return f4_fs_error(f, ino, err, "reading extent tree");
	err = extent_at(h, map->lblk, &ex);
	if (err)
		goto out;
	if (!(ex.e_flags & EXT2_EXTENT_FLAGS_UNINIT) ||
	    ex.e_lblk > map->lblk ||
	    map->lblk + map->len > ex.e_lblk + ex.e_len ||
	    ex.e_pblk + (map->lblk - ex.e_lblk) != map->pblk) {
		ret = f4_corrupt(f, ino, "unwritten extent at block %llu "
				 "changed while it was written (now %llu+%u "
				 "at %llu)", (unsigned long long)map->lblk,
				 (unsigned long long)ex.e_lblk, ex.e_len,
				 (unsigned long long)ex.e_pblk);
		goto out;
	}
	mid.e_lblk = map->lblk;
	mid.e_pblk = map->pblk;
	mid.e_len = map->len;
	mid.e_flags = 0;
	err = split_unwritten(h, &ex, &mid);
	if (!err)
		err = extent_at(h, map->lblk, &mid);
	if (!err)
		err = merge_neighbours(h, &mid);
out:
	ext2fs_extent_free(h);
	f4_fs_dirty(f);
	if (err)
		return f4_fs_error(f, ino, err, "initializing extent");
	return ret;
}

/*
 * Allocate physical blocks for the hole at [lblk, lblk + len) of an
 * extent file and map as many as come in one contiguous run, growing the
 * extent to the left when the new blocks follow it on disk.  (libext2fs's
 * ext2fs_fallocate() fills the whole hole before the first extent, not
 * just the range asked for, so fuse4fs does this itself.)
 */
static int insert_range(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
			struct ext2_inode_large *inode, blk64_t lblk,
			blk64_t len, blk64_t goal, int unwritten,
			struct f4_map *map)
{
	ext2_filsys fs = f->fs;
	blk64_t max = unwritten ? UNINIT_MAX_LEN : INIT_MAX_LEN;
	struct ext2fs_extent left, ex;
	ext2_extent_handle_t h;
	blk64_t pblk, plen;
	errcode_t err;
	int flag = unwritten ? EXT2_EXTENT_FLAGS_UNINIT : 0;

	if (len > max)
		len = max;
	len = f4_alloc_allowed(f, cred, len);
	if (!len)
		return -ENOSPC;
	if (goal < fs->super->s_first_data_block ||
	    goal >= ext2fs_blocks_count(fs->super))
		goal = fs->super->s_first_data_block;
	err = find_range(f, goal, len, &pblk, &plen);
	if (err)
		return f4_errno(err) == -ENOSPC ? -ENOSPC :
		       f4_fs_error(f, ino, err, "allocating blocks");
	if (plen > len)
		plen = len;
	ext2fs_block_alloc_stats_range(fs, pblk, plen, +1);

	err = ext2fs_extent_open2(fs, ino, (struct ext2_inode *)inode, &h);
	if (err)
		goto undo;
	/* Grow the extent on the left if the blocks continue it */
	if (lblk && !ext2fs_extent_goto2(h, 0, lblk - 1) &&
	    !ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &left) &&
	    left.e_lblk + left.e_len == lblk &&
	    left.e_pblk + left.e_len == pblk &&
	    (left.e_flags & EXT2_EXTENT_FLAGS_UNINIT) == flag &&
	    left.e_len + plen <= max) {
		left.e_len += plen;
		err = ext2fs_extent_replace(h, 0, &left);
		if (!err)
			err = ext2fs_extent_fix_parents(h);
		goto done;
	}
	ex.e_lblk = lblk;
	ex.e_pblk = pblk;
	ex.e_len = plen;
	ex.e_flags = flag;
	ext2fs_extent_goto2(h, 0, lblk);
	err = ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &left);
	if (err == EXT2_ET_NO_CURRENT_NODE) {
		err = ext2fs_extent_insert(h, EXT2_EXTENT_INSERT_AFTER, &ex);
	} else if (!err) {
		err = ext2fs_extent_insert(h, left.e_lblk > lblk ? 0 :
					   EXT2_EXTENT_INSERT_AFTER, &ex);
	}
	if (!err)
		err = ext2fs_extent_fix_parents(h);
done:
	ext2fs_extent_free(h);
	if (err)
		goto undo;
	ext2fs_iblk_add_blocks(fs, (struct ext2_inode *)inode, plen);
	f4_fs_dirty(f);
	map->lblk = lblk;
	map->pblk = pblk;
	map->len = plen;
	map->unwritten = unwritten;
	return 0;
undo:
	ext2fs_block_alloc_stats_range(fs, pblk, plen, -1);
	f4_alloc_freed_range(f, pblk, plen);
	return f4_fs_error(f, ino, err, "mapping new blocks");
}

/*
 * fallocate: unwritten extents over every hole in [lblk, lblk + len).
 * What was allocated before an ENOSPC stays, as with ext4.
 */
int f4_map_prealloc(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		    struct ext2_inode_large *inode, blk64_t lblk, blk64_t len)
{
	blk64_t end = lblk + len;
	struct f4_map map;
	int ret;

	while (lblk < end) {
		ret = f4_map_blocks(f, ino, inode, lblk, end - lblk, &map);
		if (ret)
			return ret;
		if (!map.pblk) {
			ret = insert_range(f, cred, ino, inode, lblk, map.len,
					   alloc_goal(f, ino, inode, lblk), 1,
					   &map);
			if (ret)
				return ret;
		}
		lblk += map.len;
	}
	return 0;
}

/*
 * Block-mapped files: one physically contiguous run, mapped block by
 * block.  The caller writes the run as new, so nothing past it may be
 * mapped here: a block mapped now but written later would be taken for
 * old data and its unwritten parts left unzeroed.
 */
static int alloc_blockmap(struct f4fs *f, struct f4_cred *cred,
			  ext2_ino_t ino, struct ext2_inode_large *inode,
			  blk64_t lblk, blk64_t len)
{
	ext2_filsys fs = f->fs;
	blk64_t i, p, n, b;
	errcode_t err;
	int ret;

	if (len > 256)
		len = 256;
	len = f4_alloc_allowed(f, cred, len);
	if (!len)
		return -ENOSPC;
	err = find_range(f, alloc_goal(f, ino, inode, lblk), len, &p, &n);
	if (err)
		goto fail;
	/* All in use first, so that new indirect blocks land elsewhere */
	ext2fs_block_alloc_stats_range(fs, p, n, +1);
	for (i = 0; i < n; i++) {
		b = p + i;
		/* SET maps our block; ALLOC adds missing indirect blocks */
		err = ext2fs_bmap2(fs, ino, (struct ext2_inode *)inode, NULL,
				   BMAP_ALLOC | BMAP_SET, lblk + i, NULL, &b);
		if (err)
			break;
		ext2fs_iblk_add_blocks(fs, (struct ext2_inode *)inode, 1);
	}
	if (i < n) {
		ext2fs_block_alloc_stats_range(fs, p + i, n - i, -1);
		f4_alloc_freed_range(f, p + i, n - i);
	}
	if (i)
		return 0;		/* keep what we got */
fail:
	ret = f4_errno(err);
	return ret == -ENOSPC ? ret : f4_fs_error(f, ino, err,
						 "allocating block");
}

/*
 * Make the first blocks of [lblk, lblk + len) ready for writing: mapped,
 * newly or before.  *was_new says the run held no data before, so parts
 * of its first and last blocks that the write doesn't cover must be
 * zeroed by the caller.  A run that is unwritten stays so (map->unwritten)
 * until the caller has written all of it and calls f4_map_convert().  The
 * inode is changed in memory; the caller writes it.
 */
int f4_map_alloc(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		 struct ext2_inode_large *inode, blk64_t lblk, blk64_t len,
		 struct f4_map *map, int *was_new)
{
	int ret;

	*was_new = 0;
	ret = f4_map_blocks(f, ino, inode, lblk, len, map);
	if (ret || (map->pblk && !map->unwritten))
		return ret;
	*was_new = 1;
	if (map->unwritten)
		return 0;	/* the caller converts it once written */
	if (inode->i_flags & EXT4_EXTENTS_FL) {
		return insert_range(f, cred, ino, inode, lblk, map->len,
				    alloc_goal(f, ino, inode, lblk), 0, map);
	} else {
		ret = alloc_blockmap(f, cred, ino, inode, lblk, map->len);
		if (ret)
			return ret;
	}
	f4_fs_dirty(f);
	ret = f4_map_blocks(f, ino, inode, lblk, map->len, map);
	if (ret)
		return ret;
	if (!map->pblk)
		return -ENOSPC;
	if (map->unwritten)
		return f4_corrupt(f, ino, "new blocks are unwritten");
	return 0;
}

/*
 * Free the blocks of [start, end] (inclusive) of an extent file, working
 * down from end one extent at a time: drop extents wholly inside, trim
 * those that overlap an edge, split one that spans the range.  (Written
 * here because libext2fs's ext2fs_punch() fails on an extent that ends at
 * the last block of the file system.)
 */
int f4_punch_extents(struct f4fs *f, ext2_ino_t ino,
		     struct ext2_inode_large *inode, blk64_t start, blk64_t end)
{
	ext2_filsys fs = f->fs;
	ext2_extent_handle_t h;
	struct ext2fs_extent ex, tail;
	blk64_t freed = 0, a, b, last, olblk, opblk;
	errcode_t err;
	int ret = 0;

	err = ext2fs_extent_open2(fs, ino, (struct ext2_inode *)inode, &h);
	if (err)
		return f4_fs_error(f, ino, err, "reading extent tree");
	while (start <= end) {
		ext2fs_extent_goto2(h, 0, end);
		err = ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &ex);
		if (err == EXT2_ET_NO_CURRENT_NODE) {
			err = 0;
			break;
		}
		if (!err && ex.e_lblk > end) {
			/*
			 * end lies before the first extent of the leaf that
			 * the index chose: that index entry starts before its
			 * leaf.  What precedes end is in the leaf before.
			 */
			err = ext2fs_extent_get(h, EXT2_EXTENT_PREV_LEAF, &ex);
			if (err == EXT2_ET_EXTENT_NO_PREV) {
				err = 0;
				break;
			}
		}
		if (err)
			break;
		if (!ex.e_len || ex.e_lblk > end ||
		    ex.e_lblk + ex.e_len <= start)
			break;			/* nothing mapped in range */
		last = ex.e_lblk + ex.e_len - 1;
		a = ex.e_lblk > start ? ex.e_lblk : start;
		b = last < end ? last : end;
		ret = f4_valid_data_blocks(f, ino, ex.e_pblk, ex.e_len);
		if (ret)
			break;
		olblk = ex.e_lblk;
		opblk = ex.e_pblk;
		if (a == ex.e_lblk && b == last) {
			err = ext2fs_extent_delete(h, 0);
		} else if (a == ex.e_lblk) {
			ex.e_pblk += b + 1 - ex.e_lblk;
			ex.e_len -= b + 1 - ex.e_lblk;
			ex.e_lblk = b + 1;
			err = ext2fs_extent_replace(h, 0, &ex);
		} else if (b == last) {
			ex.e_len = a - ex.e_lblk;
			err = ext2fs_extent_replace(h, 0, &ex);
		} else {
			tail.e_lblk = b + 1;
			tail.e_pblk = ex.e_pblk + (b + 1 - ex.e_lblk);
			tail.e_len = last - b;
			tail.e_flags = ex.e_flags;
			ex.e_len = a - ex.e_lblk;
			err = ext2fs_extent_replace(h, 0, &ex);
			if (!err)
				err = ext2fs_extent_insert(h,
						EXT2_EXTENT_INSERT_AFTER, &tail);
		}
		if (!err)
			err = ext2fs_extent_fix_parents(h);
		if (err == EXT2_ET_NO_CURRENT_NODE)
			err = 0;	/* the tree is empty now */
		if (err)
			break;
		ext2fs_block_alloc_stats_range(fs, opblk + (a - olblk),
					       b - a + 1, -1);
		f4_alloc_freed_range(f, opblk + (a - olblk), b - a + 1);
		freed += b - a + 1;
		if (a == start || !a)
			break;
		end = a - 1;
	}
	ext2fs_extent_free(h);
	if (freed) {
		ext2fs_iblk_sub_blocks(fs, (struct ext2_inode *)inode, freed);
		f4_fs_dirty(f);
	}
	if (ret)
		return ret;
	if (err)
		return f4_fs_error(f, ino, err, "freeing blocks");
	return 0;
}

/* ---- block-mapped (ext2/ext3) files ------------------------------------ */

struct ind_punch {
	struct f4fs *f;
	ext2_ino_t ino;
	blk64_t start, end;		/* logical blocks, inclusive */
	blk64_t ptrs;			/* block numbers per block */
	blk64_t freed;
	int err;
};

static void free_one(struct ind_punch *p, __u32 *ptr)
{
	if (f4_valid_data_blocks(p->f, p->ino, *ptr, 1)) {
		p->err = -EFSCORRUPTED;
		return;
	}
	ext2fs_block_alloc_stats2(p->f->fs, *ptr, -1);
	*ptr = 0;
	p->freed++;
}

/*
 * Free what the pointer at *ptr maps, for the part of [start, end] that
 * falls in the span of logical blocks [base, base + ptrs^level) it covers;
 * then the indirect block itself if nothing is left in it.  Returns 1 if
 * *ptr changed.
 */
static int punch_ind(struct ind_punch *p, __u32 *ptr, int level, blk64_t base)
{
	blk64_t span = 1, child, first, last, i;
	__u32 *entries;
	char *buf;
	int changed = 0, empty = 1;
	errcode_t err;

	for (i = 0; i < (blk64_t)level; i++)
		span *= p->ptrs;
	if (!*ptr || p->err || p->end < base || p->start >= base + span)
		return 0;
	if (!level) {
		free_one(p, ptr);
		return 1;
	}
	if (f4_valid_data_blocks(p->f, p->ino, *ptr, 1)) {
		p->err = -EFSCORRUPTED;
		return 0;
	}
	buf = malloc(p->f->blocksize);
	if (!buf) {
		p->err = -ENOMEM;
		return 0;
	}
	err = ext2fs_read_ind_block(p->f->fs, *ptr, buf);
	if (err) {
		p->err = f4_fs_error(p->f, p->ino, err, "reading indirect block");
		goto out;
	}
	entries = (__u32 *)buf;
	child = span / p->ptrs;
	first = p->start > base ? (p->start - base) / child : 0;
	last = (p->end - base) / child;
	if (last >= p->ptrs)
		last = p->ptrs - 1;
	for (i = first; i <= last && !p->err; i++)
		changed |= punch_ind(p, &entries[i], level - 1,
				     base + i * child);
	for (i = 0; i < p->ptrs; i++)
		if (entries[i]) {
			empty = 0;
			break;
		}
	if (p->err)
		goto out;
	if (empty) {
		free_one(p, ptr);
		changed = 1;
		goto out;
	}
	if (changed) {
		err = ext2fs_write_ind_block(p->f->fs, *ptr, buf);
		if (err)
			p->err = f4_fs_error(p->f, p->ino, err,
					     "writing indirect block");
	}
	changed = 0;		/* *ptr itself is unchanged */
out:
	free(buf);
	return changed;
}

/*
 * Free logical blocks [start, end] of a block-mapped file, and indirect
 * blocks left empty.  (libext2fs's ext2fs_punch() leaves blocks mapped
 * when the range crosses from one level of indirection to the next.)
 */
int f4_punch_blockmap(struct f4fs *f, ext2_ino_t ino,
		      struct ext2_inode_large *inode, blk64_t start, blk64_t end)
{
	struct ind_punch p = { f, ino, start, end, f->blocksize / 4, 0, 0 };
	blk64_t base = EXT2_NDIR_BLOCKS, span = p.ptrs;
	int i;

	for (i = 0; i < EXT2_NDIR_BLOCKS; i++)
		punch_ind(&p, &inode->i_block[i], 0, i);
	for (i = 0; i < 3 && !p.err; i++) {
		punch_ind(&p, &inode->i_block[EXT2_IND_BLOCK + i], i + 1, base);
		base += span;
		span *= p.ptrs;
	}
	if (p.freed) {
		ext2fs_iblk_sub_blocks(f->fs, (struct ext2_inode *)inode,
				       p.freed);
		f4_fs_dirty(f);
	}
	return p.err;
}

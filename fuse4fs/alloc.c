/*
 * alloc.c - where file data may go.
 *
 * File data is written straight to the device while metadata waits in
 * the write-back cache until the next flush.  If a block freed since the
 * last flush were handed out again for data, a crash would leave the
 * old, still-written-out metadata (a directory, an extent tree) pointing
 * at someone's file data.  So data blocks come from an "allocatable" map:
 * the allocation bitmap plus every block freed since the last flush.
 * Freed blocks become allocatable again once a flush has put on disk the
 * metadata that no longer uses them.  Metadata blocks need no such care:
 * they go through the same cache as the metadata that freed them.
 *
 * The reserved blocks are kept for root (and the superblock's resuid and
 * resgid), as the kernel keeps them.
 */
#include "config.h"

#include "fuse4fs.h"

/*
 * libext2fs tells us of every block it frees one at a time.  (Its range
 * callback can't be used: 1.47.0 calls it with the range already used
 * up.  fuse4fs frees ranges itself, through f4_alloc_freed_range().)
 */
static void stats_one(ext2_filsys fs, blk64_t blk, int inuse)
{
	struct f4fs *f = fs->priv_data;

	if (f && f->freed && inuse < 0) {
		ext2fs_mark_block_bitmap2(f->freed, blk);
		if (f->freed_cur)
			ext2fs_mark_block_bitmap2(f->freed_cur, blk);
	}
}

void f4_alloc_freed_range(struct f4fs *f, blk64_t blk, blk64_t num)
{
	if (f->freed && num)
		ext2fs_mark_block_bitmap_range2(f->freed, blk, num);
	if (f->freed_cur && num)
		ext2fs_mark_block_bitmap_range2(f->freed_cur, blk, num);
}

int f4_alloc_init(struct f4fs *f)
{
	ext2_filsys fs = f->fs;
	errcode_t err;

	if (!(fs->flags & EXT2_FLAG_RW) || !fs->block_map)
		return 0;
	err = ext2fs_allocate_block_bitmap(fs, "freed since flush", &f->freed);
	if (err)
		return f4_errno(err);
	/*
	 * Journaled, a block freed in a transaction stays out of file data
	 * until the journal can no longer replay that transaction: the
	 * commit after the next (txn.c).  freed holds both generations,
	 * freed_cur the frees since the last commit.
	 */
	if (ext2fs_has_feature_journal(fs->super)) {
		err = ext2fs_allocate_block_bitmap(fs, "freed since commit",
						   &f->freed_cur);
		if (err)
			return f4_errno(err);
	}
	fs->priv_data = f;
	ext2fs_set_block_alloc_stats_callback(fs, stats_one, NULL);
	return 0;
}

void f4_alloc_free(struct f4fs *f)
{
	if (f->fs)
		ext2fs_set_block_alloc_stats_callback(f->fs, NULL, NULL);
	if (f->freed)
		ext2fs_free_block_bitmap(f->freed);
	f->freed = NULL;
	if (f->freed_cur)
		ext2fs_free_block_bitmap(f->freed_cur);
	f->freed_cur = NULL;
}

/* A flush put the freeing metadata on disk: those blocks are free now. */
void f4_alloc_flushed(struct f4fs *f)
{
	if (f->txn)
		return;			/* f4_alloc_committed() */
	if (f->freed)
		ext2fs_clear_block_bitmap(f->freed);
	if (f->freed_cur)
		ext2fs_clear_block_bitmap(f->freed_cur);
}

/*
 * A transaction committed, and the journal no longer points at the one
 * before: what that one freed is free now; what this one freed waits.
 */
void f4_alloc_committed(struct f4fs *f)
{
	ext2fs_block_bitmap tmp;

	if (!f->freed || !f->freed_cur)
		return;
	tmp = f->freed;
	f->freed = f->freed_cur;
	f->freed_cur = tmp;
	ext2fs_clear_block_bitmap(f->freed_cur);
}

/*
 * A free run for file data at or after goal, at most len long, that was
 * free on disk at the last flush too; 0, or EXT2_ET_BLOCK_ALLOC_FAIL.
 */
errcode_t f4_alloc_range(struct f4fs *f, blk64_t goal, blk64_t len,
			 blk64_t *pblk, blk64_t *plen)
{
	ext2_filsys fs = f->fs;
	blk64_t end = ext2fs_blocks_count(fs->super) - 1, first;
	errcode_t err;
	int tries;

	/* A few hops past recently freed runs; then the caller flushes */
	for (tries = 0; tries < 64; tries++) {
		err = ext2fs_new_range(fs, 0, goal, len, NULL, pblk, plen);
		if (err)
			return err;
		if (*plen > len)
			*plen = len;
		if (!f->freed ||
		    ext2fs_find_first_set_block_bitmap2(f->freed, *pblk,
							*pblk + *plen - 1,
							&first))
			return 0;
		if (first > *pblk) {
			*plen = first - *pblk;	/* the clean part before */
			return 0;
		}
		if (ext2fs_find_first_zero_block_bitmap2(f->freed, first, end,
							 &goal))
			goal = fs->super->s_first_data_block;
	}
	return EXT2_ET_BLOCK_ALLOC_FAIL;
}

/* May this caller dig into the blocks reserved for root? */
int f4_may_use_reserved(struct f4fs *f, struct f4_cred *cred)
{
	struct ext2_super_block *sb = f->fs->super;

	if (cred && cred->writeback)
		return cred->may_reserve;
	if (!cred || f->opts->fakeroot || !cred->uid)
		return 1;
	return cred->uid == sb->s_def_resuid ||
	       (sb->s_def_resgid && f4_in_group(cred, sb->s_def_resgid));
}

/*
 * How many of want data blocks may this caller have?  0: none (ENOSPC).
 * Others must leave the root reserve, and on extent file systems ext4's
 * own 2% (at most 4096 clusters) kept for extent tree growth, untouched.
 * On bigalloc file systems want and the answer are whole clusters.
 */
blk64_t f4_alloc_allowed(struct f4fs *f, struct f4_cred *cred, blk64_t want)
{
	struct ext2_super_block *sb = f->fs->super;
	blk64_t free = ext2fs_free_blocks_count(sb), keep = 0;

	/* ext4 counts the root reserve in whole clusters, rounding down */
	if (!f4_may_use_reserved(f, cred))
		keep = EXT2FS_C2B(f->fs, EXT2FS_B2C(f->fs,
				  ext2fs_r_blocks_count(sb))) +
		       f4_alloc_ext4_reserve(f->fs);
	if (free <= keep)
		return 0;
	/* bigalloc: whole clusters only (want is a number of them) */
	want = free - keep < want ? free - keep : want;
	return want & ~(blk64_t)EXT2FS_CLUSTER_MASK(f->fs);
}

/*
 * The blocks ext4 holds back on extent file systems beyond the root
 * reserve, for extent tree growth: 2% of the clusters, at most 4096
 * clusters.
 */
blk64_t f4_alloc_ext4_reserve(ext2_filsys fs)
{
	blk64_t clusters = EXT2FS_B2C(fs, ext2fs_blocks_count(fs->super));

	if (!ext2fs_has_feature_extents(fs->super))
		return 0;
	clusters = clusters / 50 < 4096 ? clusters / 50 : 4096;
	return EXT2FS_C2B(fs, clusters);
}


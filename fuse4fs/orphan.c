/*
 * orphan.c - inodes with no name that are still in use.
 *
 * When the last name of an inode goes while the kernel still holds it
 * (open, or looked up), the inode keeps its blocks and goes on the
 * on-disk orphan list, so that a crash can't leak it: the next mount
 * frees it.  It is freed for real on its last release or forget.
 *
 * Two on-disk forms, as ext4 has them: the classic chain (the superblock
 * points at the newest orphan, each orphan's i_dtime at the next), and
 * the orphan file (an array of inode numbers in the blocks of a special
 * inode), used when the orphan_file feature is on and it has room.
 *
 * To unlink an inode from the middle of the chain in O(1), every in-core
 * orphan record remembers which orphan points at it (orphan_prev): the
 * reverse of the on-disk list.  Orphan records stay pinned in the inode
 * cache for as long as they are orphans.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "fuse4fs.h"

struct f4_orphan_file {
	ext2_ino_t ino;
	uint32_t nblocks;
	int per_block;
	blk64_t *pblk;
	uint32_t *nfree;
};

#define SLOT(b, i)	(((uint32_t)(b) << 16) | ((i) + 1))
#define SLOT_BLOCK(s)	((s) >> 16)
#define SLOT_INDEX(s)	(((s) & 0xffff) - 1)

/* ---- the orphan file ------------------------------------------------ */

static int ofile_read(struct f4fs *f, uint32_t b, char *buf)
{
	struct f4_orphan_file *of = f->ofile;
	struct ext4_orphan_block_tail *t;
	errcode_t err;

	err = io_channel_read_blk64(f->fs->io, of->pblk[b], 1, buf);
	if (err)
		return f4_fs_error(f, of->ino, err, "reading orphan file");
	t = ext2fs_orphan_block_tail(f->fs, buf);
	if (ext2fs_le32_to_cpu(t->ob_magic) != EXT4_ORPHAN_BLOCK_MAGIC)
		return f4_corrupt(f, of->ino, "orphan file block %u has bad "
				  "magic", b);
	if (ext2fs_has_feature_metadata_csum(f->fs->super) &&
	    !ext2fs_orphan_file_block_csum_verify(f->fs, of->ino,
						  of->pblk[b], buf))
		return f4_corrupt(f, of->ino, "orphan file block %u has a "
				  "bad checksum", b);
	return 0;
}

static int ofile_write(struct f4fs *f, uint32_t b, char *buf)
{
	struct f4_orphan_file *of = f->ofile;
	errcode_t err = 0;

	if (ext2fs_has_feature_metadata_csum(f->fs->super))
		err = ext2fs_orphan_file_block_csum_set(f->fs, of->ino,
							of->pblk[b], buf);
	if (!err)
		err = io_channel_write_blk64(f->fs->io, of->pblk[b], 1, buf);
	if (err)
		return f4_fs_error(f, of->ino, err, "writing orphan file");
	f4_fs_dirty(f);
	return 0;
}

static void ofile_free(struct f4fs *f)
{
	if (!f->ofile)
		return;
	free(f->ofile->pblk);
	free(f->ofile->nfree);
	free(f->ofile);
	f->ofile = NULL;
}

/* Find the orphan file's blocks; a damaged one is simply not used. */
static int ofile_load(struct f4fs *f)
{
	struct ext2_inode_large inode;
	struct f4_orphan_file *of;
	ext2_ino_t ino = f->fs->super->s_orphan_file_inum;
	uint32_t b;
	errcode_t err;

	if (!ext2fs_has_feature_orphan_file(f->fs->super) || !ino)
		return 0;
	if (ino > f->fs->super->s_inodes_count || f4_read_inode(f, ino, &inode))
		return f4_corrupt(f, ino, "orphan file inode is unusable");
	of = calloc(1, sizeof(*of));
	if (!of)
		return -ENOMEM;
	of->ino = ino;
	of->nblocks = EXT2_I_SIZE(&inode) / f->blocksize;
	of->per_block = ext2fs_inodes_per_orphan_block(f->fs);
	if (of->nblocks > 65535)
		of->nblocks = 65535;
	of->pblk = calloc(of->nblocks + 1, sizeof(*of->pblk));
	of->nfree = calloc(of->nblocks + 1, sizeof(*of->nfree));
	if (!of->pblk || !of->nfree) {
		f->ofile = of;
		ofile_free(f);
		return -ENOMEM;
	}
	for (b = 0; b < of->nblocks; b++) {
		err = ext2fs_bmap2(f->fs, ino, (struct ext2_inode *)&inode,
				   NULL, 0, b, NULL, &of->pblk[b]);
		if (err || !of->pblk[b] ||
		    f4_valid_data_blocks(f, ino, of->pblk[b], 1)) {
			f->ofile = of;
			ofile_free(f);
			return f4_corrupt(f, ino, "orphan file block %u is "
					  "unmapped or invalid", b);
		}
	}
	f->ofile = of;
	return 0;
}

/* Count the free slots of each block (after recovery emptied them). */
static void ofile_count_free(struct f4fs *f)
{
	struct f4_orphan_file *of = f->ofile;
	char *buf;
	uint32_t b;
	int i;

	if (!of)
		return;
	buf = malloc(f->blocksize);
	if (!buf)
		return;
	for (b = 0; b < of->nblocks; b++) {
		__u32 *slots = (__u32 *)buf;

		of->nfree[b] = 0;
		if (ofile_read(f, b, buf))
			continue;
		for (i = 0; i < of->per_block; i++)
			if (!slots[i])
				of->nfree[b]++;
	}
	free(buf);
}

static int ofile_add(struct f4fs *f, ext2_ino_t ino, uint32_t *slot)
{
	struct f4_orphan_file *of = f->ofile;
	__u32 *slots;
	char *buf;
	uint32_t b;
	int i, ret = -ENOSPC;

	if (!of)
		return -ENOSPC;
	for (b = 0; b < of->nblocks && !of->nfree[b]; b++)
		;
	if (b == of->nblocks)
		return -ENOSPC;
	buf = malloc(f->blocksize);
	if (!buf)
		return -ENOMEM;
	ret = ofile_read(f, b, buf);
	if (ret)
		goto out;
	slots = (__u32 *)buf;
	for (i = 0; i < of->per_block && slots[i]; i++)
		;
	if (i == of->per_block) {
		of->nfree[b] = 0;
		ret = -ENOSPC;
		goto out;
	}
	slots[i] = ext2fs_cpu_to_le32(ino);
	ret = ofile_write(f, b, buf);
	if (!ret) {
		of->nfree[b]--;
		*slot = SLOT(b, i);
	}
out:
	free(buf);
	return ret;
}

static int ofile_del(struct f4fs *f, ext2_ino_t ino, uint32_t slot)
{
	struct f4_orphan_file *of = f->ofile;
	uint32_t b = SLOT_BLOCK(slot);
	int i = SLOT_INDEX(slot);
	__u32 *slots;
	char *buf;
	int ret;

	if (!of || b >= of->nblocks || i >= of->per_block)
		return f4_corrupt(f, ino, "bad orphan file slot");
	buf = malloc(f->blocksize);
	if (!buf)
		return -ENOMEM;
	ret = ofile_read(f, b, buf);
	if (!ret) {
		slots = (__u32 *)buf;
		if (ext2fs_le32_to_cpu(slots[i]) != ino)
			ret = f4_corrupt(f, ino, "orphan file slot lost");
		else {
			slots[i] = 0;
			ret = ofile_write(f, b, buf);
			if (!ret)
				of->nfree[b]++;
		}
	}
	free(buf);
	return ret;
}

/* ---- the chain ---------------------------------------------------------- */

/* Slow path: find who points at ino when the in-core link is missing. */
static ext2_ino_t chain_find_prev(struct f4fs *f, ext2_ino_t ino)
{
	struct ext2_inode_large inode;
	ext2_ino_t cur = f->fs->super->s_last_orphan;
	uint32_t n = 0;

	while (cur && n++ < f->fs->super->s_inodes_count) {
		if (f4_read_inode(f, cur, &inode))
			return 0;
		if (inode.i_dtime == ino)
			return cur;
		cur = inode.i_dtime;
	}
	return 0;
}

static void set_prev_link(struct f4fs *f, ext2_ino_t ino, ext2_ino_t prev)
{
	struct f4_inode *rec;

	if (!ino)
		return;
	rec = f4_iget_incore(f, ino);
	if (rec) {
		rec->orphan_prev = prev;
		f4_iput(f, rec);
	}
}

static int chain_del(struct f4fs *f, struct f4_inode *rec,
		     struct ext2_inode_large *ei)
{
	struct ext2_super_block *sb = f->fs->super;
	struct ext2_inode_large prev;
	ext2_ino_t next = ei->i_dtime, prev_ino = rec->orphan_prev;
	int ret;

	if (next > sb->s_inodes_count)
		next = 0;
	if (!prev_ino && sb->s_last_orphan != rec->ino)
		prev_ino = chain_find_prev(f, rec->ino);
	if (!prev_ino) {
		if (sb->s_last_orphan == rec->ino) {
			sb->s_last_orphan = next;
			ext2fs_mark_super_dirty(f->fs);
		}
	} else {
		ret = f4_read_inode(f, prev_ino, &prev);
		if (ret)
			return ret;
		if (prev.i_dtime != rec->ino) {
			prev_ino = chain_find_prev(f, rec->ino);
			if (!prev_ino)
				goto unlinked;
			ret = f4_read_inode(f, prev_ino, &prev);
			if (ret)
				return ret;
		}
		prev.i_dtime = next;
		ret = f4_write_inode(f, prev_ino, &prev);
		if (ret)
			return ret;
	}
unlinked:
	set_prev_link(f, next, prev_ino);
	ei->i_dtime = 0;
	f4_fs_dirty(f);
	return 0;
}

/* ---- the interface ------------------------------------------------------ */

int f4_orphan_add(struct f4fs *f, struct f4_inode *rec,
		  struct ext2_inode_large *ei)
{
	struct ext2_super_block *sb = f->fs->super;
	uint32_t slot = 0;
	int ret;

	if (rec->flags & F4I_ORPHAN)
		return f4_write_inode(f, rec->ino, ei);
	ret = ofile_add(f, rec->ino, &slot);
	if (ret && ret != -ENOSPC)
		return ret;
	if (!slot) {
		ext2_ino_t head = sb->s_last_orphan;

		ei->i_dtime = head;
		sb->s_last_orphan = rec->ino;
		ext2fs_mark_super_dirty(f->fs);
		rec->orphan_prev = 0;
		set_prev_link(f, head, rec->ino);
	}
	ret = f4_write_inode(f, rec->ino, ei);
	if (ret)
		return ret;
	rec->orphan_slot = slot;
	rec->flags |= F4I_ORPHAN;
	list_add(&rec->orphan_link, &f->orphans);
	cache_hold(&f->inodes, &rec->cnode);	/* orphans stay in core */
	return 0;
}

/* Take rec off the orphan list; ei is updated in memory, not written. */
int f4_orphan_del(struct f4fs *f, struct f4_inode *rec,
		  struct ext2_inode_large *ei)
{
	int ret;

	if (!(rec->flags & F4I_ORPHAN))
		return 0;
	if (rec->orphan_slot)
		ret = ofile_del(f, rec->ino, rec->orphan_slot);
	else
		ret = chain_del(f, rec, ei);
	if (ret)
		return ret;
	rec->orphan_slot = 0;
	rec->orphan_prev = 0;
	rec->flags &= ~F4I_ORPHAN;
	list_del_init(&rec->orphan_link);
	f4_iput(f, rec);			/* the orphan pin */
	return 0;
}

static int release_orphan(struct f4fs *f, struct f4_inode *rec)
{
	struct ext2_inode_large ei;
	int ret;

	ret = f4_read_inode(f, rec->ino, &ei);
	if (ret)
		return ret;
	cache_hold(&f->inodes, &rec->cnode);
	ret = f4_orphan_del(f, rec, &ei);
	if (!ret) {
		if (!ei.i_links_count)
			ret = f4_free_inode(f, rec->ino, &ei);
		else
			ret = f4_write_inode(f, rec->ino, &ei);
	}
	f4_iput(f, rec);
	return ret;
}

/*
 * rec was released or forgotten: free it if it is an orphan the kernel
 * neither has open nor holds.  A held inode (an O_PATH descriptor, a
 * working directory) must keep its number and attributes, as on ext4,
 * until the kernel evicts it; the kernel drops an inode with no links
 * as soon as its last user goes, so the forget comes promptly.
 */
int f4_maybe_free(struct f4fs *f, struct f4_inode *rec)
{
	if (!(rec->flags & F4I_ORPHAN) || rec->nopen ||
	    f4_nlookup(f, rec->ino))
		return 0;
	if (f->ro)
		return 0;		/* freed at the next rw mount */
	return release_orphan(f, rec);
}

/*
 * Drop what memory still holds of the orphan list without writing: the
 * orphans stay on disk for the next read-write mount to clean up.
 */
void f4_orphan_forget_all(struct f4fs *f)
{
	struct f4_inode *rec, *tmp;

	list_for_each_entry_safe(rec, tmp, &f->orphans, orphan_link) {
		rec->flags &= ~F4I_ORPHAN;
		list_del_init(&rec->orphan_link);
		f4_iput(f, rec);
	}
	ofile_free(f);
}

/* Unmount: nobody can reach the remaining orphans any more. */
int f4_orphan_release_all(struct f4fs *f)
{
	struct f4_inode *rec, *tmp;
	int ret = 0, r;

	list_for_each_entry_safe(rec, tmp, &f->orphans, orphan_link) {
		r = release_orphan(f, rec);
		if (r && !ret)
			ret = r;
	}
	if (!ret && f->ofile &&
	    ext2fs_has_feature_orphan_present(f->fs->super)) {
		ext2fs_clear_feature_orphan_present(f->fs->super);
		ext2fs_mark_super_dirty(f->fs);
	}
	ofile_free(f);
	return ret;
}

/* ---- recovery at mount -------------------------------------------------- */

struct recovery {
	unsigned int freed, truncated, bad;
};

static int recover_one(struct f4fs *f, ext2_ino_t ino, ext2_ino_t *next,
		       struct recovery *r)
{
	struct ext2_inode_large ei;
	int ret;

	*next = 0;
	if (f4_check_ino(f, ino) || ino == EXT2_ROOT_INO) {
		r->bad++;
		return f4_corrupt(f, ino, "bad orphan inode number");
	}
	ret = f4_read_inode(f, ino, &ei);
	if (ret) {
		r->bad++;
		return ret;
	}
	*next = ei.i_dtime;
	if (!ext2fs_test_inode_bitmap2(f->fs->inode_map, ino) || !ei.i_mode) {
		r->bad++;
		return f4_corrupt(f, ino, "orphan inode is not in use");
	}
	ei.i_dtime = 0;
	if (!ei.i_links_count) {
		ret = f4_free_inode(f, ino, &ei);
		if (!ret)
			r->freed++;
		return ret;
	}
	/* Still linked: a truncate that didn't finish.  Finish it. */
	ret = f4_trim_past_eof(f, ino, &ei);
	if (!ret)
		ret = f4_write_inode(f, ino, &ei);
	if (!ret)
		r->truncated++;
	return ret;
}

static void recover_chain(struct f4fs *f, struct recovery *r)
{
	struct ext2_super_block *sb = f->fs->super;
	ext2_ino_t ino = sb->s_last_orphan, next;
	uint32_t n = 0;

	while (ino) {
		if (++n > sb->s_inodes_count) {
			f4_corrupt(f, ino, "orphan list loops");
			break;
		}
		if (recover_one(f, ino, &next, r))
			break;
		ino = next;
	}
	if (sb->s_last_orphan) {
		sb->s_last_orphan = 0;
		ext2fs_mark_super_dirty(f->fs);
		f4_fs_dirty(f);
	}
}

static void recover_ofile(struct f4fs *f, struct recovery *r)
{
	struct f4_orphan_file *of = f->ofile;
	ext2_ino_t next;
	char *buf;
	uint32_t b;
	int i;

	if (!of)
		return;
	buf = malloc(f->blocksize);
	if (!buf)
		return;
	for (b = 0; b < of->nblocks; b++) {
		__u32 *slots = (__u32 *)buf;
		int changed = 0;

		if (ofile_read(f, b, buf))
			continue;
		for (i = 0; i < of->per_block; i++) {
			ext2_ino_t ino = ext2fs_le32_to_cpu(slots[i]);

			if (!ino)
				continue;
			recover_one(f, ino, &next, r);
			slots[i] = 0;
			changed = 1;
		}
		if (changed)
			ofile_write(f, b, buf);
	}
	free(buf);
}

/*
 * A read-write mount of a file system that has orphans (left by a crash
 * of fuse4fs or the kernel) frees them, or finishes their truncation, as
 * the kernel does.
 */
int f4_orphan_recover(struct f4fs *f)
{
	struct recovery r = { 0, 0, 0 };
	int ret;

	ret = ofile_load(f);
	if (ret == -ENOMEM)
		return ret;
	if (f->fs->super->s_last_orphan || f->ofile)
		f4_log(LOG_DEBUG, "%s: checking for orphan inodes",
		       f->opts->device);
	recover_chain(f, &r);
	recover_ofile(f, &r);
	if (r.freed || r.truncated || r.bad)
		f4_log(LOG_NOTICE, "%s: orphan cleanup: %u inode%s freed, %u "
		       "truncated%s", f->opts->device, r.freed,
		       r.freed == 1 ? "" : "s", r.truncated,
		       r.bad ? "; damaged orphan list, run e2fsck" : "");
	ofile_count_free(f);
	if (f->ofile && !ext2fs_has_feature_orphan_present(f->fs->super)) {
		ext2fs_set_feature_orphan_present(f->fs->super);
		ext2fs_mark_super_dirty(f->fs);
	}
	return f4_fs_flush(f);
}

/* Read-only: leave orphans alone, but say they are there. */
int f4_orphan_load(struct f4fs *f)
{
	struct ext2_super_block *sb = f->fs->super;
	struct ext2_inode_large ei;
	ext2_ino_t ino = sb->s_last_orphan;
	unsigned int n = 0;

	while (ino && n < 1000000 && !f4_check_ino(f, ino) &&
	       !f4_read_inode(f, ino, &ei)) {
		n++;
		ino = ei.i_dtime;
	}
	if (n || ext2fs_has_feature_orphan_present(sb))
		f4_log(LOG_NOTICE, "%s: orphan inodes present; they will be "
		       "cleaned up at the next read-write mount",
		       f->opts->device);
	return 0;
}

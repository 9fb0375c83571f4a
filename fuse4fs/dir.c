/*
 * dir.c - directory entries: find, add, remove, replace, iterate.
 *
 * Lookups and removals in hashed (htree) directories go straight to the
 * leaf block the name hashes to, so they cost a few block reads whatever
 * the directory's size; linear directories are scanned block by block.
 * New entries go in through libext2fs's ext2fs_link(), which already
 * inserts into htree directories by hash; like the kernel, a linear
 * directory that outgrows its first block is turned into an htree first
 * (htree.c), so directories fuse4fs grows stay fast for everyone.
 *
 * Every directory block read here is checked entry by entry before use:
 * a damaged rec_len must never send us outside the block.
 */
#include "config.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "fuse4fs.h"

int f4_ftype_to_dt(int ftype)
{
	switch (ftype) {
	case EXT2_FT_REG_FILE:	return DT_REG;
	case EXT2_FT_DIR:	return DT_DIR;
	case EXT2_FT_CHRDEV:	return DT_CHR;
	case EXT2_FT_BLKDEV:	return DT_BLK;
	case EXT2_FT_FIFO:	return DT_FIFO;
	case EXT2_FT_SOCK:	return DT_SOCK;
	case EXT2_FT_SYMLINK:	return DT_LNK;
	}
	return DT_UNKNOWN;
}

int f4_mode_to_ftype(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:	return EXT2_FT_REG_FILE;
	case S_IFDIR:	return EXT2_FT_DIR;
	case S_IFCHR:	return EXT2_FT_CHRDEV;
	case S_IFBLK:	return EXT2_FT_BLKDEV;
	case S_IFIFO:	return EXT2_FT_FIFO;
	case S_IFSOCK:	return EXT2_FT_SOCK;
	case S_IFLNK:	return EXT2_FT_SYMLINK;
	}
	return EXT2_FT_UNKNOWN;
}

static unsigned int csum_size(struct f4fs *f)
{
	return ext2fs_has_feature_metadata_csum(f->fs->super) ?
	       sizeof(struct ext2_dir_entry_tail) : 0;
}

static int read_dir_inode(struct f4fs *f, ext2_ino_t dir,
			  struct ext2_inode_large *inode)
{
	int ret = f4_read_inode(f, dir, inode);

	if (ret)
		return ret;
	if (!LINUX_S_ISDIR(inode->i_mode))
		return -ENOTDIR;
	return 0;
}

/* An entry changed (ino 0: went away): tell whoever keeps copies. */
static void dir_changed(struct f4fs *f, ext2_ino_t dir, const char *name,
			size_t len, ext2_ino_t ino, int ftype)
{
	f4_dcache_update(f, dir, name, len, ino, ftype);
	f4_dir_snapshots_update(f, dir, name, len, ino, ftype);
}

/* ---- one directory block ---------------------------------------------- */

/*
 * Step to the entry at off, checking it fits the block.  Returns the
 * entry's rec_len, 0 at the end of the block, or -EFSCORRUPTED.
 */
static int dirent_at(struct f4fs *f, const char *buf, unsigned int off,
		     unsigned int end, struct ext2_dir_entry **dep)
{
	struct ext2_dir_entry *de;
	unsigned int rec_len;

	if (off >= end)
		return 0;
	if (end - off < 8)
		return -EFSCORRUPTED;
	de = (struct ext2_dir_entry *)(buf + off);
	if (ext2fs_get_rec_len(f->fs, de, &rec_len))
		return -EFSCORRUPTED;
	if (rec_len < 8 || rec_len % 4 || rec_len > end - off ||
	    (unsigned int)ext2fs_dirent_name_len(de) + 8 > rec_len)
		return -EFSCORRUPTED;
	*dep = de;
	return rec_len;
}

/* Where entries stop: before the checksum tail, if there is one. */
static unsigned int block_end(struct f4fs *f, const char *buf)
{
	unsigned int bs = f->blocksize, cs = csum_size(f);
	const struct ext2_dir_entry_tail *t;

	if (!cs)
		return bs;
	t = (const struct ext2_dir_entry_tail *)(buf + bs - cs);
	if (t->det_reserved_zero1 == 0 &&
	    t->det_rec_len == sizeof(*t) &&
	    t->det_reserved_name_len == EXT2_DIR_NAME_LEN_CSUM)
		return bs - cs;
	return bs;
}

struct found {
	blk64_t pblk;
	unsigned int off;		/* of the entry */
	unsigned int prev_off;		/* of the entry before, or ~0 */
	ext2_ino_t ino;
	int ftype;
};

/* Search one block for name.  1 found, 0 not here, <0 damaged. */
static int search_block(struct f4fs *f, ext2_ino_t dir, const char *buf,
			const char *name, size_t len, struct found *fd)
{
	unsigned int end, off = 0, prev = ~0U, first_len;
	struct ext2_dir_entry *de = (struct ext2_dir_entry *)buf;
	int rec_len;

	/*
	 * An empty block, or an htree index block (which poses as one, and
	 * may still hold a stale checksum tail from its days as a leaf):
	 * no entries here.
	 */
	if (!de->inode && !ext2fs_get_rec_len(f->fs, de, &first_len) &&
	    first_len == f->blocksize)
		return 0;
	end = block_end(f, buf);

	while ((rec_len = dirent_at(f, buf, off, end, &de)) > 0) {
		if (de->inode &&
		    (size_t)ext2fs_dirent_name_len(de) == len &&
		    !memcmp(de->name, name, len)) {
			fd->off = off;
			fd->prev_off = prev;
			fd->ino = de->inode;
			fd->ftype = ext2fs_dirent_file_type(de);
			return 1;
		}
		prev = off;
		off += rec_len;
	}
	if (rec_len < 0)
		return f4_corrupt(f, dir, "damaged directory entry at offset "
				  "%u in block %llu", off,
				  (unsigned long long)fd->pblk);
	return 0;
}

/*
 * An htree root or index block, which has no dirent checksum tail (its
 * checksum is of another kind, checked by libext2fs where htree.c reads
 * it).
 */
static int is_dx_block(struct f4fs *f, const char *buf, int htree)
{
	const struct ext2_dir_entry *de = (const void *)buf;
	unsigned int rec_len;

	if (ext2fs_get_rec_len(f->fs, (struct ext2_dir_entry *)de, &rec_len))
		return 0;
	if (!de->inode && rec_len == f->blocksize)
		return 1;		/* an index node (or an empty block) */
	/* the root: "." then ".." spanning the rest, in an htree */
	return htree && rec_len == 12 && ext2fs_dirent_name_len(de) == 1 &&
	       de->name[0] == '.';
}

/*
 * Directory blocks are read from (and written to) the block cache
 * directly, with fuse4fs's own checksum code (csum.c): libext2fs's
 * byte-at-a-time crc32c was most of the cost of a create.
 */
static int read_block(struct f4fs *f, ext2_ino_t dir, uint32_t gen,
		      int htree, blk64_t pblk, char *buf)
{
	errcode_t err;
	int ok, ret;

	/* inside the file system, and not in its metadata */
	ret = f4_valid_data_blocks(f, dir, pblk, 1);
	if (ret)
		return ret;
	err = io_channel_read_blk64(f->fs->io, pblk, 1, buf);
	if (err)
		return f4_fs_error(f, dir, err, "reading directory block");
	ok = f4_dirblock_verify(f, dir, gen, buf);
	if (ok < 0 && is_dx_block(f, buf, htree)) {
		/* an index block: libext2fs knows its checksum */
		err = ext2fs_read_dir_block4(f->fs, pblk, buf, 0, dir);
		if (err)
			return f4_fs_error(f, dir, err,
					   "reading htree block");
		return 0;
	}
	if (ok <= 0)
		return f4_fs_error(f, dir, ok ? EXT2_ET_DIR_NO_SPACE_FOR_CSUM :
				   EXT2_ET_DIR_CSUM_INVALID,
				   "reading directory block");
	return 0;
}

static int write_block(struct f4fs *f, ext2_ino_t dir, uint32_t gen,
		       int htree, blk64_t pblk, char *buf)
{
	errcode_t err;
	int ret;

	ret = f4_valid_data_blocks(f, dir, pblk, 1);
	if (ret)
		return ret;
	if (ext2fs_has_feature_metadata_csum(f->fs->super) &&
	    is_dx_block(f, buf, htree)) {
		err = ext2fs_write_dir_block4(f->fs, pblk, buf, 0, dir);
		if (err)
			return f4_fs_error(f, dir, err, "writing htree block");
		f4_fs_dirty(f);
		return 0;
	}
	ret = f4_dirblock_csum_set(f, dir, gen, buf);
	if (ret)
		return f4_corrupt(f, dir, "directory block %llu has no room "
				  "for its checksum", (unsigned long long)pblk);
	err = io_channel_write_blk64(f->fs->io, pblk, 1, buf);
	if (err)
		return f4_fs_error(f, dir, err, "writing directory block");
	f4_fs_dirty(f);
	return 0;
}

/* ---- walking every block -------------------------------------------- */

struct walk {
	struct f4fs *f;
	ext2_ino_t dir;
	uint32_t gen;
	int htree;
	char *buf;
	const char *name;
	size_t len;
	struct found *fd;
	int ret;
};

static int walk_proc(ext2_filsys fs, blk64_t *blocknr, e2_blkcnt_t blockcnt,
		     blk64_t ref_blk, int ref_offset, void *priv)
{
	struct walk *w = priv;

	if (blockcnt < 0)
		return 0;
	w->ret = read_block(w->f, w->dir, w->gen, w->htree, *blocknr, w->buf);
	if (w->ret)
		return BLOCK_ABORT;
	w->fd->pblk = *blocknr;
	w->ret = search_block(w->f, w->dir, w->buf, w->name, w->len, w->fd);
	return w->ret ? BLOCK_ABORT : 0;
}

static int linear_find(struct f4fs *f, ext2_ino_t dir,
		       const struct ext2_inode_large *inode, const char *name,
		       size_t len, char *buf, struct found *fd)
{
	struct walk w = { f, dir, inode->i_generation,
			  !!(inode->i_flags & EXT2_INDEX_FL), buf, name, len,
			  fd, 0 };
	errcode_t err;

	err = ext2fs_block_iterate3(f->fs, dir, BLOCK_FLAG_READ_ONLY |
				    BLOCK_FLAG_DATA_ONLY, NULL, walk_proc, &w);
	if (w.ret < 0)
		return w.ret;
	if (err)
		return f4_fs_error(f, dir, err, "mapping directory blocks");
	return w.ret;		/* 1 found, 0 not */
}

static int htree_find(struct f4fs *f, ext2_ino_t dir,
		      const struct ext2_inode_large *inode, const char *name,
		      size_t len, char *buf, struct found *fd)
{
	blk64_t leaves[8];
	int n = 0, i, ret;

	ret = f4_htree_lookup_leaf(f, dir, inode, name, len, leaves, 8, &n);
	if (ret)
		return ret;
	for (i = 0; i < n; i++) {
		fd->pblk = leaves[i];
		ret = read_block(f, dir, inode->i_generation, 1, leaves[i], buf);
		if (ret)
			return ret;
		ret = search_block(f, dir, buf, name, len, fd);
		if (ret)
			return ret;
	}
	return 0;
}

static int is_htree(struct f4fs *f, const struct ext2_inode_large *inode)
{
	return (inode->i_flags & EXT2_INDEX_FL) &&
	       ext2fs_has_feature_dir_index(f->fs->super);
}

/*
 * Find name in a block-based directory, leaving its block in buf.
 * 1 found, 0 absent, negative errno.
 */
static int find_entry(struct f4fs *f, ext2_ino_t dir,
		      const struct ext2_inode_large *inode, const char *name,
		      size_t len, char *buf, struct found *fd)
{
	int ret;

	if (is_htree(f, inode)) {
		ret = htree_find(f, dir, inode, name, len, buf, fd);
		/* A damaged index still has its leaves: scan them all */
		if (ret != -EFSCORRUPTED && ret != -EAGAIN)
			return ret;
	}
	return linear_find(f, dir, inode, name, len, buf, fd);
}

/*
 * ext2fs_dir_iterate2() must be told when a directory keeps its entries
 * in the inode: with that flag it reads no blocks at all.
 */
static int iterate(struct f4fs *f, ext2_ino_t dir, int flags,
		   int (*fn)(ext2_ino_t, int, struct ext2_dir_entry *, int,
			     int, char *, void *), void *arg)
{
	struct ext2_inode_large inode;
	errcode_t err;
	int ret;

	ret = read_dir_inode(f, dir, &inode);
	if (ret)
		return ret;
	if (inode.i_flags & EXT4_INLINE_DATA_FL)
		flags |= DIRENT_FLAG_INCLUDE_INLINE_DATA;
	ret = f4_valid_file_blocks(f, dir, &inode);
	if (ret)
		return ret;
	err = ext2fs_dir_iterate2(f->fs, dir, flags, NULL, fn, arg);
	if (err)
		return f4_fs_error(f, dir, err, "reading directory");
	return 0;
}

/* ---- inline-data directories ---------------------------------------- */

struct inline_find {
	const char *name;
	size_t len;
	ext2_ino_t ino;			/* found */
	ext2_ino_t newino;		/* with set: point the entry here */
	int ftype;			/* found */
	int newftype;
	int set;
};

static int inline_find_proc(ext2_ino_t dir, int entry,
			    struct ext2_dir_entry *de, int offset,
			    int blocksize, char *buf, void *priv)
{
	struct inline_find *fi = priv;

	if (!de->inode || (size_t)ext2fs_dirent_name_len(de) != fi->len ||
	    memcmp(de->name, fi->name, fi->len))
		return 0;
	fi->ino = de->inode;
	fi->ftype = ext2fs_dirent_file_type(de);
	if (fi->set) {
		de->inode = fi->newino;
		ext2fs_dirent_set_file_type(de, fi->newftype);
		return DIRENT_CHANGED | DIRENT_ABORT;
	}
	return DIRENT_ABORT;
}

static int inline_find(struct f4fs *f, ext2_ino_t dir,
		       struct inline_find *fi)
{
	int ret = iterate(f, dir, 0, inline_find_proc, fi);

	if (ret)
		return ret;
	return fi->ino ? 1 : 0;
}

/*
 * Entries in [off, end) of an inline directory must tile it exactly.
 * libext2fs doesn't check before growing the directory out of the inode,
 * and loops for ever on entries that stop short of the end.
 */
static int inline_region_ok(const char *buf, unsigned int off,
			    unsigned int end)
{
	while (off < end) {
		const struct ext2_dir_entry *de = (const void *)(buf + off);
		unsigned int rec_len, name_len;

		if (end - off < 8)
			return 0;
		rec_len = ext2fs_le16_to_cpu(de->rec_len);
		name_len = ext2fs_dirent_name_len(de);
		if (rec_len < 8 || rec_len % 4 || rec_len > end - off ||
		    name_len + 8 > rec_len)
			return 0;
		off += rec_len;
	}
	return 1;
}

static int check_inline_dir(struct f4fs *f, ext2_ino_t dir)
{
	const unsigned int in_inode = EXT4_MIN_INLINE_DATA_SIZE;
	size_t size = 0;
	errcode_t err;
	char *buf;
	int ok;

	err = ext2fs_inline_data_size(f->fs, dir, &size);
	if (err)
		return f4_fs_error(f, dir, err, "reading inline directory");
	if (size < in_inode)
		return f4_corrupt(f, dir, "inline directory of %zu bytes",
				  size);
	buf = calloc(1, size);
	if (!buf)
		return -ENOMEM;
	err = ext2fs_inline_data_get(f->fs, dir, NULL, buf, &size);
	if (err) {
		free(buf);
		return f4_fs_error(f, dir, err, "reading inline directory");
	}
	/* 4 bytes of parent inode number, then entries */
	ok = inline_region_ok(buf, 4, in_inode) &&
	     inline_region_ok(buf, in_inode, size);
	free(buf);
	return ok ? 0 : f4_corrupt(f, dir, "damaged inline directory entries");
}

/*
 * "." and ".." open a directory's first block, also in a hashed
 * directory (where the root's ".." spans the index), which the hash
 * never leads to; an inline directory keeps ".." as its first four
 * bytes.  Read the block and find "..": *dotdot points into buf.
 */
static int dotdot_entry(struct f4fs *f, ext2_ino_t dir,
			const struct ext2_inode_large *inode, char *buf,
			blk64_t *pblk, struct ext2_dir_entry **dotdot)
{
	struct ext2_dir_entry *dot;
	errcode_t err;
	int ret, rec_len;

	*pblk = 0;
	err = ext2fs_bmap2(f->fs, dir, (struct ext2_inode *)inode, NULL, 0, 0,
			   NULL, pblk);
	if (err)
		return f4_fs_error(f, dir, err, "mapping directory");
	if (!*pblk)
		return f4_corrupt(f, dir, "directory has no first block");
	ret = read_block(f, dir, inode->i_generation,
			 !!(inode->i_flags & EXT2_INDEX_FL), *pblk, buf);
	if (ret)
		return ret;
	rec_len = dirent_at(f, buf, 0, f->blocksize, &dot);
	if (rec_len <= 0 || ext2fs_dirent_name_len(dot) != 1 ||
	    dot->name[0] != '.' ||
	    dirent_at(f, buf, rec_len, f->blocksize, dotdot) <= 0 ||
	    ext2fs_dirent_name_len(*dotdot) != 2 ||
	    memcmp((*dotdot)->name, "..", 2))
		return f4_corrupt(f, dir, "first directory block lacks \".\" "
				  "and \"..\"");
	return 0;
}

/* The parent a directory's ".." names. */
static int dir_get_dotdot(struct f4fs *f, ext2_ino_t dir,
			  const struct ext2_inode_large *inode,
			  ext2_ino_t *parent)
{
	struct ext2_dir_entry *dotdot;
	blk64_t pblk;
	char *buf;
	int ret;

	if (f4_is_inline(inode)) {
		*parent = ext2fs_le32_to_cpu(inode->i_block[0]);
		return 0;
	}
	buf = malloc(f->blocksize);
	if (!buf)
		return -ENOMEM;
	ret = dotdot_entry(f, dir, inode, buf, &pblk, &dotdot);
	if (!ret)
		*parent = dotdot->inode;
	free(buf);
	return ret;
}

/* ---- the interface ---------------------------------------------------- */

static int check_found(struct f4fs *f, ext2_ino_t dir, ext2_ino_t ino)
{
	if (f4_check_ino(f, ino))
		return f4_corrupt(f, dir, "entry points to invalid inode %u",
				  ino);
	return 0;
}

int f4_dir_lookup(struct f4fs *f, ext2_ino_t dir, const char *name,
		  size_t len, ext2_ino_t *ino, int *ftype)
{
	struct ext2_inode_large inode;
	struct found fd;
	char *buf;
	int ret;

	ret = read_dir_inode(f, dir, &inode);
	if (ret)
		return ret;
	if (len <= 2 && name[0] == '.' && (len == 1 || name[1] == '.')) {
		/* Not where the name hash (or the dcache) would look */
		fd.ino = dir;
		fd.ftype = EXT2_FT_DIR;
		if (len == 2) {
			ret = dir_get_dotdot(f, dir, &inode, &fd.ino);
			if (ret)
				return ret;
		}
		ret = 1;
		goto found;
	}
	ret = f4_dcache_lookup(f, dir, name, len, &fd.ino, &fd.ftype);
	if (ret != -EAGAIN)
		goto found;
	if (f4_is_inline(&inode)) {
		struct inline_find fi = { name, len, 0, 0, 0, 0, 0 };

		ret = inline_find(f, dir, &fi);
		fd.ino = fi.ino;
		fd.ftype = fi.ftype;
	} else {
		buf = malloc(f->blocksize);
		if (!buf)
			return -ENOMEM;
		ret = find_entry(f, dir, &inode, name, len, buf, &fd);
		free(buf);
	}
found:
	if (ret < 0)
		return ret;
	if (!ret)
		return -ENOENT;
	ret = check_found(f, dir, fd.ino);
	if (ret)
		return ret;
	*ino = fd.ino;
	if (ftype)
		*ftype = fd.ftype;
	return 0;
}

/*
 * Remove name (which must point at expect, if given).  Like the kernel,
 * fold the entry into the one before it, or mark it unused if it is the
 * first in its block.
 */
int f4_dir_remove(struct f4fs *f, ext2_ino_t dir, const char *name,
		  size_t len, ext2_ino_t expect)
{
	struct ext2_inode_large inode;
	struct ext2_dir_entry *de, *prev;
	struct found fd;
	unsigned int rec_len, prev_len;
	char *buf;
	errcode_t err;
	int ret;

	ret = read_dir_inode(f, dir, &inode);
	if (ret)
		return ret;
	if (f4_is_inline(&inode)) {
		char nbuf[F4_NAME_MAX + 1];

		memcpy(nbuf, name, len);
		nbuf[len] = 0;
		err = ext2fs_unlink(f->fs, dir, nbuf, expect, 0);
		if (err == EXT2_ET_DIR_NO_SPACE)
			return -ENOENT;
		if (err)
			return f4_fs_error(f, dir, err, "removing entry");
		f4_fs_dirty(f);
		dir_changed(f, dir, name, len, 0, 0);
		return 0;
	}
	buf = malloc(f->blocksize);
	if (!buf)
		return -ENOMEM;
	ret = find_entry(f, dir, &inode, name, len, buf, &fd);
	if (ret <= 0) {
		ret = ret ? ret : -ENOENT;
		goto out;
	}
	if (expect && fd.ino != expect) {
		ret = -ENOENT;
		goto out;
	}
	de = (struct ext2_dir_entry *)(buf + fd.off);
	ext2fs_get_rec_len(f->fs, de, &rec_len);
	if (fd.prev_off != ~0U) {
		prev = (struct ext2_dir_entry *)(buf + fd.prev_off);
		ext2fs_get_rec_len(f->fs, prev, &prev_len);
		ext2fs_set_rec_len(f->fs, prev_len + rec_len, prev);
	} else {
		de->inode = 0;
	}
	ret = write_block(f, dir, inode.i_generation,
			  !!(inode.i_flags & EXT2_INDEX_FL), fd.pblk, buf);
	if (!ret)
		dir_changed(f, dir, name, len, 0, 0);
out:
	free(buf);
	return ret;
}

/* Point an existing entry at another inode (rename over a target). */
int f4_dir_set(struct f4fs *f, ext2_ino_t dir, const char *name, size_t len,
	       ext2_ino_t ino, int ftype)
{
	struct ext2_inode_large inode;
	struct ext2_dir_entry *de;
	struct found fd;
	char *buf;
	int ret;

	ret = read_dir_inode(f, dir, &inode);
	if (ret)
		return ret;
	if (f4_is_inline(&inode)) {
		struct inline_find fi = { name, len, 0, ino, 0, ftype, 1 };

		ret = inline_find(f, dir, &fi);
		if (ret > 0) {
			f4_fs_dirty(f);
			dir_changed(f, dir, name, len, ino, ftype);
		}
		return ret < 0 ? ret : ret ? 0 : -ENOENT;
	}
	buf = malloc(f->blocksize);
	if (!buf)
		return -ENOMEM;
	ret = find_entry(f, dir, &inode, name, len, buf, &fd);
	if (ret <= 0) {
		ret = ret ? ret : -ENOENT;
		goto out;
	}
	de = (struct ext2_dir_entry *)(buf + fd.off);
	de->inode = ino;
	if (ext2fs_has_feature_filetype(f->fs->super))
		ext2fs_dirent_set_file_type(de, ftype);
	ret = write_block(f, dir, inode.i_generation,
			  !!(inode.i_flags & EXT2_INDEX_FL), fd.pblk, buf);
	if (!ret)
		dir_changed(f, dir, name, len, ino, ftype);
out:
	free(buf);
	return ret;
}

/* Put an entry in this block if it has room: 1 done, 0 no room. */
static int insert_in_block(struct f4fs *f, ext2_ino_t dir, char *buf,
			   const char *name, size_t len, ext2_ino_t ino,
			   int ftype)
{
	unsigned int end, off = 0, need = EXT2_DIR_REC_LEN(len), used;
	struct ext2_dir_entry *de, *nde;
	int rec_len;

	end = block_end(f, buf);
	while ((rec_len = dirent_at(f, buf, off, end, &de)) > 0) {
		used = de->inode ?
		       EXT2_DIR_REC_LEN(ext2fs_dirent_name_len(de)) : 0;
		if ((unsigned int)rec_len >= used + need) {
			nde = de;
			if (used) {
				/* split the slack off the end of this one */
				ext2fs_set_rec_len(f->fs, used, de);
				nde = (struct ext2_dir_entry *)(buf + off + used);
				ext2fs_set_rec_len(f->fs, rec_len - used, nde);
			}
			nde->inode = ino;
			ext2fs_dirent_set_name_len(nde, len);
			ext2fs_dirent_set_file_type(nde, ftype);
			memcpy(nde->name, name, len);
			return 1;
		}
		off += rec_len;
	}
	if (rec_len < 0)
		return f4_corrupt(f, dir, "damaged directory entry at offset "
				  "%u", off);
	return 0;
}

struct add_walk {
	struct f4fs *f;
	ext2_ino_t dir;
	uint32_t gen;
	char *buf;
	const char *name;
	size_t len;
	ext2_ino_t ino;
	int ftype;
	int ret;
};

static int add_proc(ext2_filsys fs, blk64_t *blocknr, e2_blkcnt_t blockcnt,
		    blk64_t ref_blk, int ref_offset, void *priv)
{
	struct add_walk *w = priv;

	if (blockcnt < 0)
		return 0;
	w->ret = read_block(w->f, w->dir, w->gen, 0, *blocknr, w->buf);
	if (!w->ret)
		w->ret = insert_in_block(w->f, w->dir, w->buf, w->name, w->len,
					 w->ino, w->ftype);
	if (w->ret > 0)
		w->ret = write_block(w->f, w->dir, w->gen, 0, *blocknr,
				     w->buf) ?:
			 1;
	return w->ret ? BLOCK_ABORT : 0;
}

/*
 * Add to a linear directory's first block with room, the way ext2fs_link()
 * would but with fuse4fs's own block I/O.  1 done, 0 no room anywhere.
 */
static int linear_add(struct f4fs *f, ext2_ino_t dir,
		      const struct ext2_inode_large *inode, const char *name,
		      size_t len, ext2_ino_t ino, int ftype)
{
	struct add_walk w = { f, dir, inode->i_generation, NULL, name, len,
			      ino, ftype, 0 };
	errcode_t err;

	w.buf = malloc(f->blocksize);
	if (!w.buf)
		return -ENOMEM;
	err = ext2fs_block_iterate3(f->fs, dir, BLOCK_FLAG_READ_ONLY |
				    BLOCK_FLAG_DATA_ONLY, NULL, add_proc, &w);
	free(w.buf);
	if (w.ret)
		return w.ret;
	if (err)
		return f4_fs_error(f, dir, err, "mapping directory blocks");
	return 0;
}

int f4_dir_add(struct f4fs *f, ext2_ino_t dir, const char *name, size_t len,
	       ext2_ino_t ino, int ftype)
{
	struct ext2_inode_large inode;
	char nbuf[F4_NAME_MAX + 1];
	errcode_t err;
	int ret, tries;

	if (!ext2fs_has_feature_filetype(f->fs->super))
		ftype = 0;
	ret = read_dir_inode(f, dir, &inode);
	if (ret)
		return ret;
	if (!f4_is_inline(&inode) && !is_htree(f, &inode)) {
		ret = linear_add(f, dir, &inode, name, len, ino, ftype);
		if (ret < 0)
			return ret;
		if (ret > 0)
			goto added;
	}
	memcpy(nbuf, name, len);
	nbuf[len] = 0;
	for (tries = 0; tries < 4; tries++) {
		/* libext2fs writes wherever the directory's map says */
		ret = f4_valid_file_blocks(f, dir, &inode);
		if (ret)
			return ret;
		err = ext2fs_link(f->fs, dir, nbuf, ino, ftype);
		if (err != EXT2_ET_DIR_NO_SPACE)
			break;
		ret = read_dir_inode(f, dir, &inode);
		if (ret)
			return ret;
		if (is_htree(f, &inode))
			return -ENOSPC;		/* the index is full */
		if (!f4_is_inline(&inode) &&
		    EXT2_I_SIZE(&inode) == f->blocksize &&
		    ext2fs_has_feature_dir_index(f->fs->super)) {
			ret = f4_htree_convert(f, dir, &inode);
			if (ret)
				return ret;
			continue;
		}
		if (f4_is_inline(&inode)) {
			ret = check_inline_dir(f, dir);
			if (ret)
				return ret;
		}
		ret = f4_valid_file_blocks(f, dir, &inode);
		if (ret)
			return ret;
		err = ext2fs_expand_dir(f->fs, dir);
		if (err)
			return f4_fs_error(f, dir, err, "growing directory");
	}
	if (err)
		return f4_fs_error(f, dir, err, "adding directory entry");
added:
	f4_fs_dirty(f);
	f4_dcache_update(f, dir, name, len, ino, ftype);
	return 0;
}

/* ---- whole-directory operations ---------------------------------------- */

struct empty_check {
	int entries;
};

static int empty_proc(ext2_ino_t dir, int entry, struct ext2_dir_entry *de,
		      int offset, int blocksize, char *buf, void *priv)
{
	struct empty_check *ec = priv;
	int len = ext2fs_dirent_name_len(de);

	if (!de->inode)
		return 0;
	if ((len == 1 && de->name[0] == '.') ||
	    (len == 2 && de->name[0] == '.' && de->name[1] == '.'))
		return 0;
	ec->entries++;
	return DIRENT_ABORT;
}

/* 1 if only . and .. are left, 0 if not, negative errno. */
int f4_dir_is_empty(struct f4fs *f, ext2_ino_t dir)
{
	struct empty_check ec = { 0 };
	int ret = iterate(f, dir, 0, empty_proc, &ec);

	if (ret)
		return ret;
	return ec.entries == 0;
}

struct iter_ctx {
	int (*fn)(ext2_ino_t ino, int ftype, const char *name, size_t len,
		  void *arg);
	void *arg;
	int ret;
};

static int iter_proc(ext2_ino_t dir, int entry, struct ext2_dir_entry *de,
		     int offset, int blocksize, char *buf, void *priv)
{
	struct iter_ctx *ic = priv;

	if (!de->inode || entry == DIRENT_CHECKSUM)
		return 0;
	ic->ret = ic->fn(de->inode, ext2fs_dirent_file_type(de), de->name,
			 ext2fs_dirent_name_len(de), ic->arg);
	return ic->ret ? DIRENT_ABORT : 0;
}

int f4_dir_iterate(struct f4fs *f, ext2_ino_t dir,
		   int (*fn)(ext2_ino_t ino, int ftype, const char *name,
			     size_t len, void *arg),
		   void *arg)
{
	struct iter_ctx ic = { fn, arg, 0 };
	int ret = iterate(f, dir, 0, iter_proc, &ic);

	return ic.ret ? ic.ret : ret;
}

/* Point ".." at a new parent (a directory moved by rename). */
int f4_dir_set_dotdot(struct f4fs *f, ext2_ino_t dir, ext2_ino_t parent)
{
	struct ext2_inode_large inode;
	struct ext2_dir_entry *dotdot;
	blk64_t pblk;
	char *buf;
	int ret;

	ret = read_dir_inode(f, dir, &inode);
	if (ret)
		return ret;
	if (f4_is_inline(&inode)) {
		/* The first four bytes of an inline directory are ".." */
		inode.i_block[0] = ext2fs_cpu_to_le32(parent);
		return f4_write_inode(f, dir, &inode);
	}
	buf = malloc(f->blocksize);
	if (!buf)
		return -ENOMEM;
	ret = dotdot_entry(f, dir, &inode, buf, &pblk, &dotdot);
	if (!ret) {
		dotdot->inode = parent;
		ret = write_block(f, dir, inode.i_generation,
				  !!(inode.i_flags & EXT2_INDEX_FL), pblk,
				  buf);
	}
	free(buf);
	return ret;
}

/* Give a new directory inode its "." and ".." (inline where possible). */
int f4_dir_init(struct f4fs *f, ext2_ino_t dir, ext2_ino_t parent,
		struct ext2_inode_large *inode)
{
	ext2_filsys fs = f->fs;
	blk64_t pblk = 0, goal;
	char *block = NULL;
	errcode_t err;
	int ret;

	if (ext2fs_has_feature_inline_data(fs->super)) {
		err = ext2fs_new_dir_inline_data(fs, dir, parent,
						 inode->i_block);
		if (err)
			return f4_fs_error(f, dir, err, "making directory");
		inode->i_flags |= EXT4_INLINE_DATA_FL;
		inode->i_flags &= ~EXT4_EXTENTS_FL;
		inode->i_size = EXT4_MIN_INLINE_DATA_SIZE;
		ret = f4_write_inode(f, dir, inode);
		if (ret)
			return ret;
		err = ext2fs_inline_data_init(fs, dir);
		if (err)
			return f4_fs_error(f, dir, err, "making directory");
		return f4_read_inode(f, dir, inode);
	}

	goal = ext2fs_find_inode_goal(fs, dir, (struct ext2_inode *)inode, 0);
	err = ext2fs_new_block2(fs, goal, NULL, &pblk);
	if (err)
		return f4_fs_error(f, dir, err, "allocating directory block");
	err = ext2fs_new_dir_block(fs, dir, parent, &block);
	if (err)
		goto fail;
	err = ext2fs_write_dir_block4(fs, pblk, block, 0, dir);
	ext2fs_free_mem(&block);
	if (err)
		goto fail;
	ext2fs_block_alloc_stats2(fs, pblk, +1);
	inode->i_size = f->blocksize;
	ext2fs_iblk_set(fs, (struct ext2_inode *)inode, 1);
	if (ext2fs_has_feature_extents(fs->super)) {
		ext2_extent_handle_t handle;

		inode->i_flags |= EXT4_EXTENTS_FL;
		ret = f4_write_inode(f, dir, inode);
		if (ret)
			return ret;
		err = ext2fs_extent_open2(fs, dir, (struct ext2_inode *)inode,
					  &handle);
		if (!err) {
			err = ext2fs_extent_set_bmap(handle, 0, pblk, 0);
			ext2fs_extent_free(handle);
		}
		if (err)
			return f4_fs_error(f, dir, err, "mapping directory");
		return f4_read_inode(f, dir, inode);
	}
	inode->i_block[0] = pblk;
	return f4_write_inode(f, dir, inode);
fail:
	ext2fs_free_mem(&block);
	return f4_fs_error(f, dir, err, "making directory");
}

/* ---- open directories: a snapshot of the entries ------------------------ */

static int snap_add(ext2_ino_t ino, int ftype, const char *name, size_t len,
		    void *arg)
{
	struct f4_dir *d = arg;
	struct f4_dirent *e;

	if (d->nents == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct f4_dirent *n = realloc(d->ents, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		d->ents = n;
		d->cap = cap;
	}
	if (d->names_len + len + 1 > d->names_cap) {
		size_t cap = d->names_cap ? d->names_cap * 2 : 1024;
		char *n;

		while (cap < d->names_len + len + 1)
			cap *= 2;
		n = realloc(d->names, cap);
		if (!n)
			return -ENOMEM;
		d->names = n;
		d->names_cap = cap;
	}
	e = &d->ents[d->nents++];
	e->ino = ino;
	e->type = f4_ftype_to_dt(ftype);
	/* inline directories have no entries for . and .. to take it from */
	if (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')))
		e->type = DT_DIR;
	e->namelen = len;
	e->name_off = d->names_len;
	memcpy(d->names + d->names_len, name, len);
	d->names[d->names_len + len] = 0;
	d->names_len += len + 1;
	return 0;
}

static const char *snap_name(const struct f4_dir *d, size_t i)
{
	return d->names + d->ents[i].name_off;
}

/* Index the snapshot by name, the first time an entry must be found. */
static int snap_index(struct f4_dir *d)
{
	size_t i, size = 16;

	if (d->index)
		return 0;
	while (size < d->nents * 2)
		size *= 2;
	d->index = calloc(size, sizeof(*d->index));
	if (!d->index)
		return -ENOMEM;
	d->index_size = size;
	for (i = 0; i < d->nents; i++) {
		size_t h = f4_name_hash(snap_name(d, i), d->ents[i].namelen) &
			   (size - 1);

		while (d->index[h])
			h = (h + 1) & (size - 1);
		d->index[h] = i + 1;
	}
	return 0;
}

static struct f4_dirent *snap_find(struct f4_dir *d, const char *name,
				   size_t len)
{
	size_t h;

	if (snap_index(d))
		return NULL;
	h = f4_name_hash(name, len) & (d->index_size - 1);
	for (; d->index[h]; h = (h + 1) & (d->index_size - 1)) {
		struct f4_dirent *e = &d->ents[d->index[h] - 1];

		if (e->namelen == len &&
		    !memcmp(d->names + e->name_off, name, len))
			return e;
	}
	return NULL;
}

/*
 * An entry of dir was removed (ino 0) or now names another inode: tell
 * the open snapshots, so that readdir doesn't return names that are gone,
 * as reading the live directory wouldn't.
 */
void f4_dir_snapshots_update(struct f4fs *f, ext2_ino_t dir,
			     const char *name, size_t len, ext2_ino_t ino,
			     int ftype)
{
	struct f4_inode *rec = f4_iget_incore(f, dir);
	struct f4_dir *d;

	if (!rec)
		return;
	list_for_each_entry(d, &rec->open_dirs, link) {
		struct f4_dirent *e;

		if (!d->loaded)
			continue;
		e = snap_find(d, name, len);
		if (!e)
			continue;
		e->ino = ino;
		if (ino)
			e->type = f4_ftype_to_dt(ftype);
	}
	f4_iput(f, rec);
}

/*
 * Read the whole directory into the handle.  Offsets handed to the kernel
 * are indexes into this snapshot, so telldir/seekdir stay stable while
 * entries come and go; removals are reflected (the entry is skipped), and
 * a read from offset 0 takes a fresh snapshot.
 */
int f4_dir_load(struct f4fs *f, struct f4_dir *d)
{
	int ret;

	d->nents = 0;
	d->names_len = 0;
	free(d->index);
	d->index = NULL;
	d->index_size = 0;
	ret = f4_dir_iterate(f, d->inode->ino, snap_add, d);
	d->loaded = !ret;
	return ret;
}

int f4_opendir(struct f4fs *f, const struct f4_cred *cred, ext2_ino_t ino,
	       struct f4_dir **dp)
{
	struct ext2_inode_large inode;
	struct f4_dir *d;
	int ret;

	ret = read_dir_inode(f, ino, &inode);
	if (ret)
		return ret;
	ret = f4_check_perm(f, (struct f4_cred *)cred, &inode, ino, 4);
	if (ret)
		return ret;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->inode = f4_iget(f, ino);
	if (!d->inode) {
		free(d);
		return -ENOMEM;
	}
	d->inode->nopen++;
	list_add(&d->link, &d->inode->open_dirs);
	*dp = d;
	return 0;
}

void f4_releasedir(struct f4fs *f, struct f4_dir *d)
{
	if (!d)
		return;
	list_del(&d->link);
	d->inode->nopen--;
	f4_maybe_free(f, d->inode);
	f4_iput(f, d->inode);
	free(d->ents);
	free(d->names);
	free(d->index);
	free(d);
}

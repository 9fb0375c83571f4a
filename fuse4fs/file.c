/*
 * file.c - file data: open, read, write, truncate, fallocate, seek.
 *
 * Data moves a run of contiguous blocks at a time, straight between the
 * caller's buffer and the device (map.c finds the runs).  Blocks a write
 * only partly covers are read, patched and written whole; blocks that
 * held no data before (holes, unwritten extents) are zero-filled around
 * what is written, so nothing stale is ever exposed.
 */
#include "config.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuse4fs.h"
#include <ext2fs/ext3_extents.h>

/* Exported by libext2fs but missing from its public header. */
errcode_t ext2fs_inline_data_expand(ext2_filsys fs, ext2_ino_t ino);
errcode_t ext2fs_inline_data_ea_remove(ext2_filsys fs, ext2_ino_t ino);

/* ---- limits ----------------------------------------------------------- */

/* The largest file ext4 allows for this inode's format. */
uint64_t f4_max_file_size(struct f4fs *f, const struct ext2_inode_large *in)
{
	unsigned int bits = f->fs->super->s_log_block_size + 10;
	int huge = ext2fs_has_feature_huge_file(f->fs->super);
	uint64_t upper, res, ptrs, meta;

	if (!in || (in->i_flags & EXT4_EXTENTS_FL) ||
	    (in->i_flags & EXT4_INLINE_DATA_FL &&
	     ext2fs_has_feature_extents(f->fs->super))) {
		/* i_blocks counts 512-byte sectors in 32 bits without huge */
		upper = huge ? (1ULL << 48) - 1 : (1ULL << 32) - 1;
		upper >>= bits - 9;
		res = 0xffffffffULL;		/* logical blocks */
		if (res > upper)
			res = upper;
		res <<= bits;
	} else {
		/*
		 * A block-mapped file is limited by its block tree and by
		 * i_blocks, which counts the indirect blocks as well: the
		 * largest dense file whose data and indirect blocks fit.
		 */
		uint64_t ind1, ind2;

		ptrs = f->blocksize / 4;
		upper = huge ? (1ULL << 48) - 1 : (1ULL << 32) - 1;
		upper >>= bits - 9;
		res = 12 + ptrs + ptrs * ptrs + ptrs * ptrs * ptrs;
		meta = 1 + (1 + ptrs) + (1 + ptrs + ptrs * ptrs);
		if (res + meta > upper) {
			res = upper;
			upper -= 12;
			meta = 1;		/* the indirect block */
			upper -= ptrs;
			if (upper < ptrs * ptrs) {
				meta += 1 + (upper + ptrs - 1) / ptrs;
			} else {
				meta += 1 + ptrs;
				upper -= ptrs * ptrs;
				ind1 = (upper + ptrs - 1) / ptrs;
				ind2 = (upper + ptrs * ptrs - 1) /
				       (ptrs * ptrs);
				meta += 1 + ind1 + ind2;
			}
			res -= meta;
		}
		res <<= bits;
	}
	if (res > (uint64_t)LLONG_MAX)
		res = LLONG_MAX;
	return res;
}

/* ---- open and release ------------------------------------------------- */

static int open_checks(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		       struct ext2_inode_large *inode, int flags)
{
	int acc = flags & O_ACCMODE, mask = 0, ret;
	int writing = acc != O_RDONLY || (flags & O_TRUNC);

	/*
	 * execve() opens the file with __FMODE_EXEC and asks for execute
	 * permission alone (a 0711 program runs, a 0744 one doesn't for
	 * others).  The kernel, without default_permissions, checks only
	 * that somebody may execute it.
	 */
	if (flags & F4_FMODE_EXEC) {
		if (!LINUX_S_ISREG(inode->i_mode))
			return -EACCES;
		return f4_check_perm(f, cred, inode, ino, MAY_EXEC);
	}
	if (acc != O_WRONLY)
		mask |= MAY_READ;
	if (writing)
		mask |= MAY_WRITE;
	if (LINUX_S_ISDIR(inode->i_mode) && writing)
		return -EISDIR;
	if (writing) {
		ret = f4_check_writable(f);
		if (ret)
			return ret;
		ret = f4_check_immutable(inode, F4_OP_WRITE);
		if (ret)
			return ret;
		if ((inode->i_flags & EXT2_APPEND_FL) &&
		    (!(flags & O_APPEND) || (flags & O_TRUNC)))
			return -EPERM;
	}
	return f4_check_perm(f, cred, inode, ino, mask);
}

int f4_open(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino, int flags,
	    struct f4_file **fhp)
{
	struct ext2_inode_large inode;
	struct f4_file *fh;
	int ret;

	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	ret = open_checks(f, cred, ino, &inode, flags);
	if (ret)
		return ret;
	/* Contents of an encrypted file need the key, which fuse4fs lacks */
	if (LINUX_S_ISREG(inode.i_mode) && f4_is_encrypted(&inode))
		return -ENOKEY;
	/* (the kernel truncates with a SETATTR: see op_init) */
	if ((flags & O_TRUNC) && LINUX_S_ISREG(inode.i_mode)) {
		struct stat attr = { .st_size = 0 };

		ret = f4_setattr(f, cred, ino, &attr,
				 F4_SET_SIZE | F4_SET_MTIME | F4_SET_MTIME_NOW,
				 NULL, NULL);
		if (ret)
			return ret;
	}
	fh = calloc(1, sizeof(*fh));
	if (!fh)
		return -ENOMEM;
	fh->inode = f4_iget(f, ino);
	if (!fh->inode) {
		free(fh);
		return -ENOMEM;
	}
	fh->flags = flags;
	fh->may_reserve = f4_may_use_reserved(f, cred);
	/*
	 * An append-only file's writes must come as they happen, each at
	 * the end: cached pages written back later would rewrite the last
	 * partial block from its start.
	 */
	fh->direct_io = f->writeback && (inode.i_flags & EXT2_APPEND_FL);
	fh->inode->nopen++;
	*fhp = fh;
	return 0;
}

int f4_release(struct f4fs *f, struct f4_file *fh)
{
	int ret;

	if (!fh)
		return 0;
	fh->inode->nopen--;
	ret = f4_maybe_free(f, fh->inode);
	f4_iput(f, fh->inode);
	free(fh);
	return ret;
}

/* ---- inline data ------------------------------------------------------- */

/* Move an inline file's data out to a block, before changing its size. */
static int expand_inline(struct f4fs *f, ext2_ino_t ino,
			 struct ext2_inode_large *inode)
{
	errcode_t err;

	err = ext2fs_inline_data_expand(f->fs, ino);
	if (err)
		return f4_fs_error(f, ino, err, "moving inline data to a "
				   "block");
	f4_fs_dirty(f);
	return f4_read_inode(f, ino, inode);
}

static ssize_t read_inline(struct f4fs *f, ext2_ino_t ino,
			   struct ext2_inode_large *inode, char *buf,
			   size_t size, off_t off)
{
	size_t len = 0;
	char *data;
	errcode_t err;

	err = ext2fs_inline_data_size(f->fs, ino, &len);
	if (err)
		return f4_fs_error(f, ino, err, "reading inline data");
	if (len > f->blocksize + EXT2_I_SIZE(inode))
		return f4_corrupt(f, ino, "inline data size %zu", len);
	data = calloc(1, len + 1);
	if (!data)
		return -ENOMEM;
	err = ext2fs_inline_data_get(f->fs, ino, (struct ext2_inode *)inode,
				     data, &len);
	if (err) {
		free(data);
		return f4_fs_error(f, ino, err, "reading inline data");
	}
	if ((size_t)off >= len) {
		size = 0;
	} else {
		if (size > len - off)
			size = len - off;
		memcpy(buf, data + off, size);
	}
	free(data);
	return size;
}

/*
 * Small files on an inline_data file system keep their bytes in the inode
 * (i_block, then the system.data xattr), as ext4 does: a file with no
 * blocks whose data fits stays, or becomes, inline; one that outgrows the
 * inode moves to blocks.
 */
static int may_inline(struct f4fs *f, const struct ext2_inode_large *inode)
{
	return ext2fs_has_feature_inline_data(f->fs->super) &&
	       f->inode_size > EXT2_GOOD_OLD_INODE_SIZE &&
	       LINUX_S_ISREG(inode->i_mode) && !f4_is_inline(inode) &&
	       !EXT2_I_SIZE(inode) &&
	       !ext2fs_get_stat_i_blocks(f->fs, (struct ext2_inode *)inode);
}

/* Turn an empty block-less file into an (empty) inline one. */
static int make_inline(struct f4fs *f, ext2_ino_t ino,
		       struct ext2_inode_large *inode)
{
	errcode_t err;
	int ret;

	inode->i_flags &= ~EXT4_EXTENTS_FL;
	inode->i_flags |= EXT4_INLINE_DATA_FL;
	memset(inode->i_block, 0, sizeof(inode->i_block));
	ret = f4_write_inode(f, ino, inode);
	if (ret)
		return ret;
	err = ext2fs_inline_data_init(f->fs, ino);
	if (err)
		return f4_fs_error(f, ino, err, "making inline data");
	return f4_read_inode(f, ino, inode);
}

/* Back to an empty extent file, when the first data didn't fit after all. */
static int unmake_inline(struct f4fs *f, ext2_ino_t ino,
			 struct ext2_inode_large *inode)
{
	struct ext3_extent_header *eh = (void *)inode->i_block;
	int ret;

	ext2fs_inline_data_ea_remove(f->fs, ino);
	ret = f4_read_inode(f, ino, inode);
	if (ret)
		return ret;
	inode->i_flags &= ~EXT4_INLINE_DATA_FL;
	memset(inode->i_block, 0, sizeof(inode->i_block));
	if (ext2fs_has_feature_extents(f->fs->super)) {
		eh->eh_magic = ext2fs_cpu_to_le16(EXT3_EXT_MAGIC);
		eh->eh_max = ext2fs_cpu_to_le16((sizeof(inode->i_block) -
						 sizeof(*eh)) /
						sizeof(struct ext3_extent));
		inode->i_flags |= EXT4_EXTENTS_FL;
	}
	return f4_write_inode(f, ino, inode);
}

/*
 * Give an inline file new contents: newsize bytes, of which [off, off +
 * len) come from buf and the rest are kept (or zero).  1 if done, 0 if it
 * doesn't fit in the inode (nothing changed), negative errno.
 */
static int set_inline(struct f4fs *f, ext2_ino_t ino,
		      struct ext2_inode_large *inode, const char *buf,
		      size_t len, uint64_t off, uint64_t newsize)
{
	size_t cur = 0;
	char *data;
	errcode_t err;

	if (newsize > f->blocksize || off + len > newsize)
		return 0;
	data = calloc(1, newsize + f->blocksize);
	if (!data)
		return -ENOMEM;
	err = ext2fs_inline_data_size(f->fs, ino, &cur);
	if (!err && cur > f->blocksize)
		err = EXT2_ET_INLINE_DATA_NO_SPACE;
	if (!err && cur) {
		err = ext2fs_inline_data_get(f->fs, ino,
					     (struct ext2_inode *)inode, data,
					     &cur);
		if (cur > newsize)
			memset(data + newsize, 0, cur - newsize);
	}
	if (err) {
		free(data);
		return f4_fs_error(f, ino, err, "reading inline data");
	}
	if (len)
		memcpy(data + off, buf, len);
	err = ext2fs_inline_data_set(f->fs, ino, (struct ext2_inode *)inode,
				     data, newsize);
	free(data);
	if (err == EXT2_ET_INLINE_DATA_NO_SPACE || err == EXT2_ET_EA_NO_SPACE)
		return 0;
	if (err)
		return f4_fs_error(f, ino, err, "writing inline data");
	f4_fs_dirty(f);
	err = f4_read_inode(f, ino, inode);
	if (err)
		return err;
	ext2fs_inode_size_set(f->fs, (struct ext2_inode *)inode, newsize);
	return 1;
}

/* Try to write [off, off + size) inline.  1 done, 0 use blocks, <0 error. */
static int write_inline(struct f4fs *f, ext2_ino_t ino,
			struct ext2_inode_large *inode, const char *buf,
			size_t size, uint64_t off)
{
	uint64_t isize = EXT2_I_SIZE(inode), end = off + size;
	int fresh = 0, ret;

	if (!f4_is_inline(inode)) {
		if (!may_inline(f, inode) || end > f->blocksize)
			return 0;
		ret = make_inline(f, ino, inode);
		if (ret)
			return ret;
		fresh = 1;
	}
	ret = set_inline(f, ino, inode, buf, size, off,
			 end > isize ? end : isize);
	if (ret == 0) {
		if (fresh)
			ret = unmake_inline(f, ino, inode);
		else
			ret = expand_inline(f, ino, inode);
		return ret ? ret : 0;
	}
	return ret;
}

/* ---- reading ---------------------------------------------------------- */

/* Read whole blocks [lblk, lblk + count) of a file into buf. */
static int read_blocks(struct f4fs *f, ext2_ino_t ino,
		       struct ext2_inode_large *inode, blk64_t lblk,
		       blk64_t count, char *buf)
{
	struct f4_map map;
	errcode_t err;
	int ret;

	while (count) {
		ret = f4_map_blocks(f, ino, inode, lblk, count, &map);
		if (ret)
			return ret;
		if (!map.len)
			return f4_corrupt(f, ino, "empty mapping at block %llu",
					  (unsigned long long)lblk);
		if (!map.pblk || map.unwritten) {
			memset(buf, 0, map.len * f->blocksize);
		} else {
			err = f4_io_read_data(f->fs->io, map.pblk, map.len,
					      buf);
			if (err)
				return f4_fs_error(f, ino, err,
						   "reading file data");
		}
		buf += map.len * f->blocksize;
		lblk += map.len;
		count -= map.len;
	}
	return 0;
}

/* relatime, as the kernel mounts by default; or noatime / strictatime. */
static int update_atime(struct f4fs *f, ext2_ino_t ino,
			struct ext2_inode_large *inode)
{
	struct timespec now, at, mt, ct;

	if (f->ro || f->opts->noatime || (inode->i_flags & EXT2_NOATIME_FL))
		return 0;
	f4_now(&now);
	f4_get_time(f, inode, F4_ATIME, &at);
	if (!f->opts->strictatime) {
		f4_get_time(f, inode, F4_MTIME, &mt);
		f4_get_time(f, inode, F4_CTIME, &ct);
		if (at.tv_sec > mt.tv_sec && at.tv_sec > ct.tv_sec &&
		    now.tv_sec - at.tv_sec < 24 * 3600)
			return 0;
		if (at.tv_sec == mt.tv_sec && at.tv_nsec > mt.tv_nsec &&
		    at.tv_sec == ct.tv_sec && at.tv_nsec > ct.tv_nsec)
			return 0;
	}
	f4_set_time(f, inode, F4_ATIME, &now);
	return f4_write_inode(f, ino, inode);
}

/*
 * Sequential reads: have the device's page cache fetch the blocks that
 * come next while this request is copied out and the kernel sends the
 * next one.  The kernel's readahead on the FUSE file asks for one
 * max_readahead window at a time and each of those waits for a disk read
 * here; this keeps the disk a window ahead instead.
 */
#define F4_DATA_READAHEAD	(8 << 20)

static void readahead_data(struct f4fs *f, struct f4_file *fh, ext2_ino_t ino,
			   struct ext2_inode_large *inode, blk64_t next,
			   uint64_t isize)
{
	blk64_t window = F4_DATA_READAHEAD / f->blocksize;
	blk64_t eof = (isize + f->blocksize - 1) / f->blocksize;
	blk64_t lblk = fh->ra_end > next ? fh->ra_end : next;
	blk64_t end = next + window < eof ? next + window : eof;
	struct f4_map map;

	if (fh->ra_end > next + window / 2)
		return;		/* still far enough ahead */
	while (lblk < end) {
		if (f4_map_blocks(f, ino, inode, lblk, end - lblk, &map) ||
		    !map.len)
			break;
		if (map.pblk && !map.unwritten)
			io_channel_cache_readahead(f->fs->io, map.pblk,
						   map.len);
		lblk += map.len;
	}
	fh->ra_end = lblk;
}

ssize_t f4_read(struct f4fs *f, struct f4_file *fh, char *buf, size_t size,
		off_t off)
{
	ext2_ino_t ino = fh->inode->ino;
	struct ext2_inode_large inode;
	uint64_t isize, first, last, skip;
	char *bounce;
	ssize_t got;
	int ret;

	if (off < 0)
		return -EINVAL;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if (LINUX_S_ISDIR(inode.i_mode))
		return -EISDIR;
	isize = EXT2_I_SIZE(&inode);
	if ((uint64_t)off >= isize || !size)
		return 0;
	if (size > isize - off)
		size = isize - off;

	if (f4_is_inline(&inode)) {
		got = read_inline(f, ino, &inode, buf, size, off);
		goto done;
	}
	first = off / f->blocksize;
	last = (off + size - 1) / f->blocksize;
	skip = off - first * f->blocksize;
	if (!skip && !(size % f->blocksize)) {
		/* Block-aligned: straight into the caller's buffer */
		ret = read_blocks(f, ino, &inode, first, last - first + 1, buf);
		got = ret ? ret : (ssize_t)size;
		goto done;
	}
	bounce = malloc((last - first + 1) * f->blocksize);
	if (!bounce)
		return -ENOMEM;
	ret = read_blocks(f, ino, &inode, first, last - first + 1, bounce);
	if (!ret)
		memcpy(buf, bounce + skip, size);
	free(bounce);
	got = ret ? ret : (ssize_t)size;
done:
	if (got > 0) {
		if ((uint64_t)off == fh->next_read && !f4_is_inline(&inode))
			readahead_data(f, fh, ino, &inode,
				       (off + got - 1) / f->blocksize + 1, isize);
		fh->next_read = off + got;
		update_atime(f, ino, &inode);
	}
	return got;
}

/* ---- writing ---------------------------------------------------------- */

/*
 * Write data to blocks [lblk, lblk + count) that start at byte skip of the
 * first block.  Edge blocks not wholly covered are merged with what they
 * held (or with zeros if they held nothing).
 */
static int write_run(struct f4fs *f, ext2_ino_t ino, const struct f4_map *map,
		     int was_new, const char *data, size_t skip, size_t len,
		     char *bounce)
{
	size_t bs = f->blocksize, span = map->len * bs;
	size_t tail = span - skip - len;
	errcode_t err;

	if (!skip && !tail) {
		err = f4_io_write_data(f->fs->io, map->pblk, map->len, data);
		goto out;
	}
	/* Fill the edges of the bounce buffer, then the data */
	if (skip) {
		if (was_new)
			memset(bounce, 0, bs);
		else if ((err = f4_io_read_data(f->fs->io, map->pblk, 1,
						bounce)))
			goto out;
	}
	if (tail) {
		char *lastb = bounce + span - bs;

		if (was_new)
			memset(lastb, 0, bs);
		else if ((map->len > 1 || !skip) &&
			 (err = f4_io_read_data(f->fs->io,
						map->pblk + map->len - 1, 1,
						lastb)))
			goto out;
	}
	memcpy(bounce + skip, data, len);
	err = f4_io_write_data(f->fs->io, map->pblk, map->len, bounce);
out:
	if (err)
		return f4_fs_error(f, ino, err, "writing file data");
	return 0;
}

static int punch_blocks(struct f4fs *f, ext2_ino_t ino,
			struct ext2_inode_large *inode, blk64_t start,
			blk64_t end);

static void kill_suid_on_write(struct f4fs *f, struct f4_cred *cred,
			       struct ext2_inode_large *inode)
{
	if (cred && (cred->writeback || f4_capable(f, cred)))
		return;
	f4_kill_suid(f, cred, inode);
}

static int must_sync(struct f4fs *f, struct f4_file *fh,
		     const struct ext2_inode_large *inode)
{
	return f->opts->sync || (fh && (fh->flags & (O_SYNC | O_DSYNC))) ||
	       (inode->i_flags & EXT2_SYNC_FL);
}

ssize_t f4_write(struct f4fs *f, struct f4_cred *cred, struct f4_file *fh,
		 const char *buf, size_t size, off_t off)
{
	ext2_ino_t ino = fh->inode->ino;
	struct ext2_inode_large inode;
	size_t done = 0, bs = f->blocksize;
	uint64_t max, isize;
	char *bounce = NULL;
	int ret;

	ret = f4_check_writable(f);
	if (ret)
		return ret;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if (!LINUX_S_ISREG(inode.i_mode))
		return -EINVAL;
	ret = f4_check_immutable(&inode, F4_OP_WRITE);
	if (ret)
		return ret;
	isize = EXT2_I_SIZE(&inode);
	/* With the kernel's write-back cache, its offsets already append */
	if ((fh->flags & O_APPEND) && !f->writeback)
		off = isize;
	if ((inode.i_flags & EXT2_APPEND_FL) && (uint64_t)off != isize)
		return -EPERM;
	if (off < 0)
		return -EINVAL;
	if (!size)
		return 0;
	max = f4_max_file_size(f, &inode);
	if ((uint64_t)off >= max)
		return -EFBIG;
	if (size > max - off)
		size = max - off;
	if (f4_is_inline(&inode) || may_inline(f, &inode)) {
		ret = write_inline(f, ino, &inode, buf, size, off);
		if (ret < 0)
			return ret;
		if (ret > 0) {
			done = size;
			ret = 0;
			goto written;
		}
	}

	while (done < size) {
		uint64_t pos = off + done;
		blk64_t lblk = pos / bs, last = (off + size - 1) / bs;
		size_t skip = pos % bs, len;
		struct f4_map map;
		int was_new;

		ret = f4_map_alloc(f, cred, ino, &inode, lblk,
				   last - lblk + 1, &map, &was_new);
		if (ret)
			break;
		len = map.len * bs - skip;
		if (len > size - done)
			len = size - done;
		if ((skip || (skip + len) % bs) && !bounce) {
			bounce = malloc(((size + 2 * bs - 1) / bs + 1) * bs);
			if (!bounce) {
				ret = -ENOMEM;
				break;
			}
		}
		ret = write_run(f, ino, &map, was_new, buf + done, skip, len,
				bounce);
		if (ret) {
			/* what was mapped for it must not show old data */
			if (was_new && !map.unwritten)
				punch_blocks(f, ino, &inode, map.lblk,
					     map.lblk + map.len - 1);
			break;
		}
		/* Unwritten blocks become data only once the data is there */
		if (map.unwritten) {
			ret = f4_map_convert(f, ino, &inode, &map);
			if (ret)
				break;
		}
		done += len;
	}
	free(bounce);
written:
	/* Whatever was written counts, even if the rest failed */
	if (done) {
		if (off + done > isize)
			ext2fs_inode_size_set(f->fs, (struct ext2_inode *)&inode,
					      off + done);
		kill_suid_on_write(f, cred, &inode);
		if (!fh->inode->no_caps) {
			/* the xattr code writes the inode: keep ours current */
			int wret = f4_write_inode(f, ino, &inode);

			if (!wret)
				wret = f4_kill_caps(f, ino);
			if (!wret)
				wret = f4_read_inode(f, ino, &inode);
			if (wret && !ret)
				ret = wret;
		}
		f4_touch(f, &inode, F4_TOUCH_MC);
		fh->inode->data_version++;
	}
	if (done || f->dirty) {
		int wret = f4_write_inode(f, ino, &inode);

		if (wret && !ret)
			ret = wret;
	}
	if (done && must_sync(f, fh, &inode)) {
		int sret = f4_fs_flush(f);

		if (sret && !ret)
			ret = sret;
	}
	return done ? (ssize_t)done : ret;
}

/* ---- size changes and holes ---------------------------------------------- */

/* Zero bytes [from, from + len) of the block holding byte from. */
static int zero_partial(struct f4fs *f, ext2_ino_t ino,
			struct ext2_inode_large *inode, uint64_t from,
			size_t len)
{
	struct f4_map map;
	size_t bs = f->blocksize, skip = from % bs;
	char *block;
	errcode_t err;
	int ret;

	if (!len)
		return 0;
	ret = f4_map_blocks(f, ino, inode, from / bs, 1, &map);
	if (ret || !map.pblk || map.unwritten)
		return ret;
	block = malloc(bs);
	if (!block)
		return -ENOMEM;
	err = f4_io_read_data(f->fs->io, map.pblk, 1, block);
	if (!err) {
		memset(block + skip, 0, len);
		err = f4_io_write_data(f->fs->io, map.pblk, 1, block);
	}
	free(block);
	if (err)
		return f4_fs_error(f, ino, err, "zeroing file data");
	return 0;
}

/* Free blocks [start, end] (inclusive; end ~0 for all). */
static int punch_blocks(struct f4fs *f, ext2_ino_t ino,
			struct ext2_inode_large *inode, blk64_t start,
			blk64_t end)
{
	/* "To the end": the last logical block a file can have */
	if (end > 0xffffffffULL)
		end = 0xffffffffULL;
	if (end < start)
		return 0;
	if (inode->i_flags & EXT4_EXTENTS_FL)
		return f4_punch_extents(f, ino, inode, start, end);
	return f4_punch_blockmap(f, ino, inode, start, end);
}

/* Set the size, freeing what lies past it; writes the inode. */
int f4_truncate(struct f4fs *f, ext2_ino_t ino,
		struct ext2_inode_large *inode, uint64_t size)
{
	uint64_t isize = EXT2_I_SIZE(inode), bs = f->blocksize;
	int ret;

	if (f4_is_inline(inode) && size != isize) {
		ret = set_inline(f, ino, inode, NULL, 0, 0, size);
		if (ret < 0)
			return ret;
		if (ret > 0)
			return f4_write_inode(f, ino, inode);
		ret = expand_inline(f, ino, inode);
		if (ret)
			return ret;
	}
	if (size < isize) {
		ret = punch_blocks(f, ino, inode, (size + bs - 1) / bs, ~0ULL);
		if (ret)
			return ret;
		/* What the last block holds past the new end must read 0 */
		if (size % bs)
			ret = zero_partial(f, ino, inode, size,
					   bs - size % bs);
	} else if (size > isize && isize % bs) {
		ret = zero_partial(f, ino, inode, isize, bs - isize % bs);
	} else {
		ret = 0;
	}
	if (ret)
		return ret;
	ext2fs_inode_size_set(f->fs, (struct ext2_inode *)inode, size);
	return f4_write_inode(f, ino, inode);
}

/* Free every block the inode owns (it is being deleted). */
int f4_free_blocks_all(struct f4fs *f, ext2_ino_t ino,
		       struct ext2_inode_large *inode)
{
	mode_t mode = inode->i_mode;

	if (!LINUX_S_ISREG(mode) && !LINUX_S_ISDIR(mode) &&
	    !LINUX_S_ISLNK(mode))
		return 0;		/* devices keep their number in i_block */
	if (LINUX_S_ISLNK(mode) &&
	    ext2fs_is_fast_symlink((struct ext2_inode *)inode))
		return 0;
	if (f4_is_inline(inode))
		return 0;		/* lives in the inode and its xattrs */
	if (!ext2fs_inode_has_valid_blocks2(f->fs, (struct ext2_inode *)inode))
		return 0;
	return punch_blocks(f, ino, inode, 0, ~0ULL);
}

/*
 * Zero [off, off + len): bytes in blocks it only partly covers are zeroed
 * in place; whole blocks are freed (punch) or, for ZERO_RANGE, turned
 * into unwritten extents.
 */
static int zero_blocks(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		       struct ext2_inode_large *inode, uint64_t off,
		       uint64_t len, int keep_allocated)
{
	uint64_t bs = f->blocksize, end = off + len;
	uint64_t first_full = (off + bs - 1) / bs, end_full = end / bs;
	int ret;

	if (first_full > end_full)		/* inside a single block */
		return zero_partial(f, ino, inode, off, len);
	ret = zero_partial(f, ino, inode, off, first_full * bs - off);
	if (!ret && end > end_full * bs)
		ret = zero_partial(f, ino, inode, end_full * bs,
				   end - end_full * bs);
	if (ret || end_full == first_full)
		return ret;
	ret = punch_blocks(f, ino, inode, first_full, end_full - 1);
	if (!ret && keep_allocated)
		ret = f4_map_prealloc(f, cred, ino, inode, first_full,
				      end_full - first_full);
	return ret;
}

/*
 * PUNCH_HOLE as ext4 does it: nothing past EOF except that a hole
 * reaching past EOF runs to the end of the page holding EOF.
 */
static int do_punch(struct f4fs *f, ext2_ino_t ino,
		    struct ext2_inode_large *inode, uint64_t off, uint64_t len)
{
	uint64_t isize = EXT2_I_SIZE(inode), page = 4096;

	if (off >= isize)
		return 0;
	if (off + len > isize)
		len = (isize | (page - 1)) + 1 - off;
	return zero_blocks(f, NULL, ino, inode, off, len, 0);
}

static int do_preallocate(struct f4fs *f, struct f4_cred *cred,
			  ext2_ino_t ino, struct ext2_inode_large *inode,
			  uint64_t off, uint64_t len)
{
	uint64_t bs = f->blocksize;
	blk64_t start = off / bs, end = (off + len + bs - 1) / bs;

	return f4_map_prealloc(f, cred, ino, inode, start, end - start);
}

int f4_fallocate(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		 int mode, off_t off, off_t len)
{
	struct ext2_inode_large inode;
	int keep = mode & FALLOC_FL_KEEP_SIZE;
	uint64_t end, max;
	int ret;

	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE |
		     FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) &&
	    (!keep || (mode & FALLOC_FL_ZERO_RANGE)))
		return -EOPNOTSUPP;
	if (off < 0 || len <= 0)
		return -EINVAL;
	ret = f4_check_writable(f);
	if (ret)
		return ret;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if (!LINUX_S_ISREG(inode.i_mode))
		return LINUX_S_ISDIR(inode.i_mode) ? -EISDIR : -ENODEV;
	ret = f4_check_immutable(&inode, F4_OP_WRITE);
	if (ret)
		return ret;
	if ((inode.i_flags & EXT2_APPEND_FL) &&
	    (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)))
		return -EPERM;
	max = f4_max_file_size(f, &inode);
	end = (uint64_t)off + len;
	if (end > max || end < (uint64_t)off)
		return -EFBIG;
	if (f4_is_inline(&inode)) {
		ret = expand_inline(f, ino, &inode);
		if (ret)
			return ret;
	}
	/* ext4 preallocates and zeroes ranges only in extent files */
	if (!(inode.i_flags & EXT4_EXTENTS_FL) &&
	    !(mode & FALLOC_FL_PUNCH_HOLE))
		return -EOPNOTSUPP;

	if (mode & FALLOC_FL_PUNCH_HOLE) {
		ret = do_punch(f, ino, &inode, off, len);
	} else if (mode & FALLOC_FL_ZERO_RANGE) {
		ret = zero_blocks(f, cred, ino, &inode, off, len, 1);
	} else {
		ret = do_preallocate(f, cred, ino, &inode, off, len);
	}
	if (ret)
		goto out;
	if (!keep && end > EXT2_I_SIZE(&inode)) {
		ext2fs_inode_size_set(f->fs, (struct ext2_inode *)&inode, end);
		f4_touch(f, &inode, F4_TOUCH_M);
	}
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		f4_touch(f, &inode, F4_TOUCH_M);
	f4_touch(f, &inode, F4_TOUCH_C);
	if (!f4_capable(f, cred))
		kill_suid_on_write(f, cred, &inode);
out:
	{
		int wret = f4_write_inode(f, ino, &inode);

		if (!ret)
			ret = wret;
	}
	return ret;
}

/* SEEK_DATA / SEEK_HOLE: unwritten extents read as zeros, so are holes. */
off_t f4_lseek(struct f4fs *f, ext2_ino_t ino, off_t off, int whence)
{
	struct ext2_inode_large inode;
	uint64_t isize, bs = f->blocksize;
	blk64_t lblk, end;
	struct f4_map map;
	int ret;

	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	isize = EXT2_I_SIZE(&inode);
	if (whence == SEEK_SET || whence == SEEK_CUR || whence == SEEK_END)
		return -EINVAL;		/* the kernel handles these */
	if (off < 0 || (uint64_t)off >= isize)
		return -ENXIO;
	if (f4_is_inline(&inode))
		return whence == SEEK_DATA ? off : (off_t)isize;
	end = (isize + bs - 1) / bs;
	for (lblk = off / bs; lblk < end; lblk += map.len) {
		ret = f4_map_blocks(f, ino, &inode, lblk, end - lblk, &map);
		if (ret)
			return ret;
		if (!map.len)
			break;
		if (whence == SEEK_DATA && map.pblk && !map.unwritten)
			return lblk * bs > (uint64_t)off ? (off_t)(lblk * bs)
							 : off;
		if (whence == SEEK_HOLE && (!map.pblk || map.unwritten))
			return lblk * bs > (uint64_t)off ? (off_t)(lblk * bs)
							 : off;
	}
	if (whence == SEEK_DATA)
		return -ENXIO;
	return isize;
}

int f4_fsync(struct f4fs *f, ext2_ino_t ino, int datasync)
{
	/* journaled: returns once the commit holding everything is durable */
	return f4_fs_flush(f);
}

/* FUSE bmap (fuseblk): the device block holding a file block. */
int f4_bmap(struct f4fs *f, ext2_ino_t ino, uint64_t blocksize,
	    uint64_t *idx)
{
	struct ext2_inode_large inode;
	struct f4_map map;
	uint64_t byte;
	int ret;

	if (!blocksize || blocksize > f->blocksize)
		return -EINVAL;
	ret = f4_read_inode(f, ino, &inode);
	if (ret)
		return ret;
	if (f4_is_inline(&inode))
		return -EINVAL;
	byte = *idx * blocksize;
	ret = f4_map_blocks(f, ino, &inode, byte / f->blocksize, 1, &map);
	if (ret)
		return ret;
	if (!map.pblk || map.unwritten) {
		*idx = 0;
		return 0;
	}
	*idx = (map.pblk * f->blocksize + byte % f->blocksize +
		f->opts->offset) / blocksize;
	return 0;
}

/* FITRIM: discard free block ranges of at least minlen bytes. */
int f4_fstrim(struct f4fs *f, uint64_t start, uint64_t len, uint64_t minlen,
	      uint64_t *trimmed)
{
	ext2_filsys fs = f->fs;
	blk64_t first = start / f->blocksize, last, blk, next;
	blk64_t minblocks = (minlen + f->blocksize - 1) / f->blocksize;
	uint64_t done = 0;
	errcode_t err;
	int ret;

	*trimmed = 0;
	ret = f4_check_writable(f);
	if (ret)
		return ret;
	if (!fs->block_map)
		return -EROFS;
	/*
	 * Blocks freed since the last flush are free in memory but still in
	 * use on disk: a crash now brings back the file, directory or tree
	 * that owned them (alloc.c).  Make their freeing durable first, or
	 * the discard would destroy what the crash brings back.  Journaled,
	 * a second commit moves the journal past the one that freed them.
	 */
	ret = f4_fs_flush(f);
	if (!ret && f->txn)
		ret = f4_fs_flush(f);
	if (ret)
		return ret;
	/* ext4's checks: a range inside the file system, at least a block */
	if (first >= ext2fs_blocks_count(fs->super) || len < f->blocksize ||
	    minblocks > fs->super->s_clusters_per_group)
		return -EINVAL;
	if (first < fs->super->s_first_data_block)
		first = fs->super->s_first_data_block;
	last = ext2fs_blocks_count(fs->super) - 1;
	if (len / f->blocksize < last - first + 1)
		last = first + len / f->blocksize - 1;
	if (!minblocks)
		minblocks = 1;
	for (blk = first; blk <= last; blk = next) {
		blk64_t free_start, free_end, held;

		err = ext2fs_find_first_zero_block_bitmap2(fs->block_map, blk,
							   last, &free_start);
		if (err)
			break;			/* no free block left */
		err = ext2fs_find_first_set_block_bitmap2(fs->block_map,
							  free_start, last,
							  &free_end);
		if (err)
			free_end = last + 1;
		next = free_end;
		/* freed but not yet committed for good: keep their contents */
		if (f->freed && !ext2fs_find_first_set_block_bitmap2(f->freed,
				free_start, free_end - 1, &held)) {
			free_end = held;
			next = held + 1;
		}
		if (free_end - free_start < minblocks)
			continue;
		err = io_channel_discard(fs->io, free_start,
					 free_end - free_start);
		if (err == EXT2_ET_UNIMPLEMENTED || err == EOPNOTSUPP)
			return -EOPNOTSUPP;
		if (err)
			return f4_errno(err);
		done += (free_end - free_start) * f->blocksize;
	}
	*trimmed = done;
	return 0;
}

/* Free blocks past i_size (an interrupted truncate, found at mount). */
int f4_trim_past_eof(struct f4fs *f, ext2_ino_t ino,
		     struct ext2_inode_large *inode)
{
	uint64_t bs = f->blocksize;

	if (!LINUX_S_ISREG(inode->i_mode) || f4_is_inline(inode) ||
	    !ext2fs_inode_has_valid_blocks2(f->fs, (struct ext2_inode *)inode))
		return 0;
	return punch_blocks(f, ino, inode, (EXT2_I_SIZE(inode) + bs - 1) / bs,
			    ~0ULL);
}

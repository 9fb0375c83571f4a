/*
 * blockio.c - the I/O manager under libext2fs: a write-back block cache
 * over a file descriptor.
 *
 * libext2fs reads and writes metadata one block at a time.  Sending each
 * of those to the device (as unix_io's small cache mostly does) is what
 * makes metadata work slow, so single-block I/O goes through a large
 * write-back cache (cache_size), written out in block order at flush
 * points: fsync, the periodic flush, unmount.
 *
 * Multi-block I/O is file data: it goes straight to the device, and the
 * cache is kept coherent with it (reads see dirty cached blocks, writes
 * replace cached copies).  Byte-granular I/O (the superblock) flushes and
 * drops whatever it overlaps first.
 *
 * Writes past the end of the file system, once its size is known, are
 * refused: a damaged block map must never make us write outside it.  And
 * no write at all may leave the byte range the file system was given (its
 * partition, or the device past the offset: the "end" option, fixed when
 * the channel opens, before anything on the image is read).
 */
#include "config.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuse4fs.h"

#define F4_IO_MAGIC	0x46344930	/* "F4I0" */

struct f4_io {
	int magic;
	int fd;
	int rw;
	int blockdev;
	unsigned long long offset;	/* where the file system starts */
	unsigned long long limit;	/* blocks; 0 until known */
	unsigned long long end;		/* bytes from offset; 0: none */
	unsigned long long cache_bytes;
	int block_size;
	struct cache cache;
	int cache_ready;
	int discard;			/* errors=panic: write nothing more */
	unsigned long long bytes_read, bytes_written;
};

/*
 * One allocation per cached block: header and data together.  (An aligned
 * data buffer of its own costs glibc nearly a second page per block.)
 */
struct f4_blk {
	struct cache_node cnode;
	struct f4_io *io;
	unsigned char data[];
};

struct blk_fill {
	const void *src;		/* whole-block contents, or NULL: read */
	errcode_t err;
};

static struct f4_io *chan_io(io_channel channel)
{
	return channel->private_data;
}

static errcode_t errno_code(void)
{
	return errno ? (errcode_t)errno : EXT2_ET_SHORT_READ;
}

static errcode_t raw_pread(struct f4_io *io, void *buf, size_t size,
			   unsigned long long pos)
{
	size_t done = 0;

	while (done < size) {
		ssize_t n = pread(io->fd, (char *)buf + done, size - done,
				  io->offset + pos + done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno_code();
		}
		if (n == 0) {
			/* Past the end of the device: the rest reads as zero */
			memset((char *)buf + done, 0, size - done);
			return EXT2_ET_SHORT_READ;
		}
		done += n;
	}
	io->bytes_read += size;
	return 0;
}

static errcode_t raw_pwrite(struct f4_io *io, const void *buf, size_t size,
			    unsigned long long pos)
{
	size_t done = 0;

	if (!io->rw)
		return EXT2_ET_RO_FILSYS;
	if (io->end && (pos > io->end || size > io->end - pos)) {
		f4_log(3, "refusing to write bytes %llu-%llu: past the end of "
		       "the file system's partition or device (%llu bytes)",
		       pos, pos + size - 1, io->end);
		return EXT2_ET_BAD_BLOCK_NUM;
	}
	while (done < size) {
		ssize_t n = pwrite(io->fd, (const char *)buf + done,
				   size - done, io->offset + pos + done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno ? (errcode_t)errno : EXT2_ET_SHORT_WRITE;
		}
		if (n == 0)
			return EXT2_ET_SHORT_WRITE;
		done += n;
	}
	io->bytes_written += size;
	return 0;
}

static int outside(struct f4_io *io, unsigned long long block,
		   unsigned long long count)
{
	unsigned long long end = io->end / io->block_size;

	if (io->end && (block >= end || count > end - block))
		return 1;
	if (!io->limit)
		return 0;
	return block >= io->limit || count > io->limit - block;
}

/* ---- the block cache ------------------------------------------------- */

static struct cache_node *blk_alloc(struct cache *c, uint64_t key, void *arg)
{
	struct f4_io *io = cache_priv(c);
	struct blk_fill *fill = arg;
	struct f4_blk *b;

	b = malloc(sizeof(*b) + io->block_size);
	if (!b)
		goto nomem;
	memset(b, 0, sizeof(*b));
	b->io = io;
	b->cnode.key = key;
	if (fill && fill->src) {
		memcpy(b->data, fill->src, io->block_size);
	} else {
		errcode_t err = raw_pread(io, b->data, io->block_size,
					  key * io->block_size);
		if (err) {
			if (fill)
				fill->err = err;
			free(b);
			errno = EIO;
			return NULL;
		}
	}
	return &b->cnode;
nomem:
	if (fill)
		fill->err = EXT2_ET_NO_MEMORY;
	errno = ENOMEM;
	return NULL;
}

static int blk_flush(struct cache *c, struct cache_node *n)
{
	struct f4_blk *b = container_of(n, struct f4_blk, cnode);
	struct f4_io *io = b->io;
	errcode_t err;

	err = raw_pwrite(io, b->data, io->block_size, n->key * io->block_size);
	if (err) {
		f4_log(3, "writing block %llu: %s",
		       (unsigned long long)n->key, error_message(err));
		return err < 4096 ? -(int)err : -EIO;
	}
	return 0;
}

static void blk_release(struct cache *c, struct cache_node *n)
{
	struct f4_blk *b = container_of(n, struct f4_blk, cnode);

	free(b);
}

static const struct cache_ops blk_ops = {
	.alloc = blk_alloc,
	.flush = blk_flush,
	.release = blk_release,
};

static size_t cache_blocks(struct f4_io *io)
{
	unsigned long long n = io->cache_bytes / io->block_size;

	return n < 16 ? 16 : n;
}

static errcode_t setup_cache(struct f4_io *io)
{
	if (io->cache_ready)
		return 0;
	if (cache_init(&io->cache, &blk_ops, cache_blocks(io), io))
		return EXT2_ET_NO_MEMORY;
	io->cache_ready = 1;
	return 0;
}

static errcode_t flush_cache(struct f4_io *io)
{
	int ret;

	if (!io->cache_ready)
		return 0;
	ret = cache_flush(&io->cache);
	return ret ? (errcode_t)-ret : 0;
}

struct range_walk {
	unsigned long long first, count;
	unsigned long long *keys;
	size_t nkeys, cap;
};

static int collect_in_range(struct cache *c, struct cache_node *node,
			    void *arg)
{
	struct range_walk *w = arg;

	if (node->key < w->first || node->key - w->first >= w->count)
		return 0;
	if (w->nkeys == w->cap) {
		size_t ncap = w->cap ? w->cap * 2 : 64;
		unsigned long long *nk = realloc(w->keys, ncap * sizeof(*nk));

		if (!nk)
			return -ENOMEM;
		w->keys = nk;
		w->cap = ncap;
	}
	w->keys[w->nkeys++] = node->key;
	return 0;
}

/* Forget cached copies of [first, first + count) without writing them. */
static void drop_range(struct f4_io *io, unsigned long long first,
		       unsigned long long count)
{
	struct cache_stats st;
	unsigned long long i;

	if (!io->cache_ready)
		return;
	cache_get_stats(&io->cache, &st);
	if (count > st.nodes * 4 + 64) {
		/* Cheaper to look at what is cached than at every block */
		struct range_walk w = { first, count, NULL, 0, 0 };

		cache_walk(&io->cache, collect_in_range, &w);
		for (i = 0; i < w.nkeys; i++)
			cache_drop(&io->cache, w.keys[i]);
		free(w.keys);
		return;
	}
	for (i = 0; i < count; i++)
		cache_drop(&io->cache, first + i);
}

/* Write back, then forget, cached blocks overlapping a byte range. */
static errcode_t evict_bytes(struct f4_io *io, unsigned long long pos,
			     unsigned long long size)
{
	unsigned long long first, last, b;

	if (!io->cache_ready || !size)
		return 0;
	first = pos / io->block_size;
	last = (pos + size - 1) / io->block_size;
	for (b = first; b <= last; b++) {
		struct cache_node *n = cache_get(&io->cache, b,
						 CACHE_GET_INCORE, NULL);
		int ret = 0;

		if (!n)
			continue;
		if (cache_node_dirty(&io->cache, n)) {
			ret = blk_flush(&io->cache, n);
			if (!ret)
				cache_mark_clean(&io->cache, n);
		}
		cache_put(&io->cache, n);
		if (ret)
			return EXT2_ET_SHORT_WRITE;
		cache_drop(&io->cache, b);
	}
	return 0;
}

/* ---- the io_manager -------------------------------------------------- */

static errcode_t f4_open_channel(const char *name, int flags,
				 io_channel *channel)
{
	io_channel io = NULL;
	struct f4_io *data = NULL;
	struct stat st;
	int open_flags;
	errcode_t err;

	if (!name)
		return EXT2_ET_BAD_DEVICE_NAME;
	err = ext2fs_get_memzero(sizeof(*io), &io);
	if (err)
		return err;
	err = ext2fs_get_memzero(sizeof(*data), &data);
	if (err)
		goto fail;
	err = ext2fs_get_mem(strlen(name) + 1, &io->name);
	if (err)
		goto fail;
	strcpy(io->name, name);

	io->magic = EXT2_ET_MAGIC_IO_CHANNEL;
	io->manager = f4_io_manager;
	io->block_size = 1024;
	io->refcount = 1;
	io->private_data = data;

	data->magic = F4_IO_MAGIC;
	data->block_size = 1024;
	data->rw = !!(flags & IO_FLAG_RW);
	data->cache_bytes = F4_DEFAULT_CACHE_SIZE;

	open_flags = data->rw ? O_RDWR : O_RDONLY;
	if (flags & IO_FLAG_EXCLUSIVE)
		open_flags |= O_EXCL;
	data->fd = open(name, open_flags | O_CLOEXEC);
	if (data->fd < 0) {
		err = errno;
		goto fail;
	}
	if (fstat(data->fd, &st) == 0 && S_ISBLK(st.st_mode)) {
		data->blockdev = 1;
		io->flags |= CHANNEL_FLAGS_BLOCK_DEVICE;
	}
	/*
	 * Two fuse4fs daemons on one image would corrupt it: an image file
	 * is locked, exclusively for read-write (O_EXCL does it for block
	 * devices).
	 */
	if (!data->blockdev && (flags & IO_FLAG_EXCLUSIVE) &&
	    flock(data->fd, (data->rw ? LOCK_EX : LOCK_SH) | LOCK_NB)) {
		err = errno == EWOULDBLOCK ? EBUSY : errno;
		goto fail_fd;
	}
	err = setup_cache(data);
	if (err)
		goto fail_fd;
	*channel = io;
	return 0;

fail_fd:
	close(data->fd);
fail:
	if (io)
		ext2fs_free_mem(&io->name);
	ext2fs_free_mem(&data);
	ext2fs_free_mem(&io);
	return err;
}

static int forget_dirty(struct cache *c, struct cache_node *n, void *arg)
{
	cache_mark_clean(c, n);
	return 0;
}

static errcode_t f4_close_channel(io_channel channel)
{
	struct f4_io *io = chan_io(channel);
	errcode_t err = 0;

	if (--channel->refcount > 0)
		return 0;
	if (io->cache_ready) {
		if (io->discard)
			cache_walk(&io->cache, forget_dirty, NULL);
		else
			err = flush_cache(io);
		cache_destroy(&io->cache);
	}
	if (io->rw && fsync(io->fd) && !err)
		err = errno;
	if (close(io->fd) && !err)
		err = errno;
	ext2fs_free_mem(&channel->private_data);
	ext2fs_free_mem(&channel->name);
	ext2fs_free_mem(&channel);
	return err;
}

static errcode_t f4_set_blksize(io_channel channel, int blksize)
{
	struct f4_io *io = chan_io(channel);
	errcode_t err;

	if (io->block_size == blksize)
		return 0;
	/* Cached blocks are of the old size: write them out and forget */
	err = flush_cache(io);
	if (err)
		return err;
	if (io->cache_ready) {
		cache_purge(&io->cache);
		cache_set_max(&io->cache, 16);
	}
	channel->block_size = blksize;
	io->block_size = blksize;
	if (io->cache_ready)
		cache_set_max(&io->cache, cache_blocks(io));
	return 0;
}

static errcode_t read_bytes(struct f4_io *io, unsigned long long pos,
			    size_t size, void *buf)
{
	errcode_t err = evict_bytes(io, pos, size);

	if (err)
		return err;
	return raw_pread(io, buf, size, pos);
}

static errcode_t read_one(struct f4_io *io, unsigned long long block,
			  void *buf)
{
	struct blk_fill fill = { NULL, 0 };
	struct cache_node *n;
	struct f4_blk *b;

	n = cache_get(&io->cache, block, 0, &fill);
	if (!n)
		return fill.err ? fill.err : EXT2_ET_NO_MEMORY;
	b = container_of(n, struct f4_blk, cnode);
	memcpy(buf, b->data, io->block_size);
	cache_put(&io->cache, n);
	return 0;
}

/* Large reads go to the device; dirty cached blocks are newer. */
static errcode_t read_many(struct f4_io *io, unsigned long long block,
			   int count, void *buf)
{
	errcode_t err;
	int i;

	err = raw_pread(io, buf, (size_t)count * io->block_size,
			block * io->block_size);
	if (err)
		return err;
	for (i = 0; i < count; i++) {
		struct cache_node *n = cache_get(&io->cache, block + i,
						 CACHE_GET_INCORE, NULL);
		if (!n)
			continue;
		if (cache_node_dirty(&io->cache, n)) {
			struct f4_blk *b = container_of(n, struct f4_blk,
							cnode);
			memcpy((char *)buf + (size_t)i * io->block_size,
			       b->data, io->block_size);
		}
		cache_put(&io->cache, n);
	}
	return 0;
}

static errcode_t f4_read_blk64(io_channel channel, unsigned long long block,
			       int count, void *buf)
{
	struct f4_io *io = chan_io(channel);
	errcode_t err;

	if (count < 0) {
		err = read_bytes(io, block * io->block_size, -count, buf);
		goto out;
	}
	if (outside(io, block, count)) {
		memset(buf, 0, (size_t)count * io->block_size);
		return EXT2_ET_BAD_BLOCK_NUM;
	}
	if (count == 1)
		err = read_one(io, block, buf);
	else
		err = read_many(io, block, count, buf);
out:
	if (err && channel->read_error)
		err = channel->read_error(channel, block, count, buf,
					  io->block_size, 0, err);
	return err;
}

static errcode_t f4_read_blk(io_channel channel, unsigned long block,
			     int count, void *buf)
{
	return f4_read_blk64(channel, block, count, buf);
}

static errcode_t write_one(struct f4_io *io, unsigned long long block,
			   const void *buf)
{
	struct blk_fill fill = { buf, 0 };
	struct cache_node *n;
	struct f4_blk *b;

	n = cache_get(&io->cache, block, CACHE_GET_INCORE, NULL);
	if (n) {
		b = container_of(n, struct f4_blk, cnode);
		memcpy(b->data, buf, io->block_size);
	} else {
		n = cache_get(&io->cache, block, 0, &fill);
		if (!n)
			return fill.err ? fill.err : EXT2_ET_NO_MEMORY;
	}
	cache_mark_dirty(&io->cache, n);
	cache_put(&io->cache, n);
	return 0;
}

/* Large writes go to the device; cached copies take the new data. */
static errcode_t write_many(struct f4_io *io, unsigned long long block,
			    int count, const void *buf)
{
	errcode_t err;
	int i;

	err = raw_pwrite(io, buf, (size_t)count * io->block_size,
			 block * io->block_size);
	if (err)
		return err;
	for (i = 0; i < count; i++) {
		struct cache_node *n = cache_get(&io->cache, block + i,
						 CACHE_GET_INCORE, NULL);
		struct f4_blk *b;

		if (!n)
			continue;
		b = container_of(n, struct f4_blk, cnode);
		memcpy(b->data, (const char *)buf + (size_t)i * io->block_size,
		       io->block_size);
		cache_mark_clean(&io->cache, n);
		cache_put(&io->cache, n);
	}
	return 0;
}

static errcode_t f4_write_blk64(io_channel channel, unsigned long long block,
				int count, const void *buf)
{
	struct f4_io *io = chan_io(channel);
	errcode_t err;

	if (!io->rw)
		return EXT2_ET_RO_FILSYS;
	if (count < 0) {
		unsigned long long pos = block * io->block_size;

		err = evict_bytes(io, pos, -count);
		if (!err)
			err = raw_pwrite(io, buf, -count, pos);
		goto out;
	}
	if (outside(io, block, count)) {
		f4_log(3, "refusing to write blocks %llu-%llu: past the end "
		       "of the file system", block, block + count - 1);
		return EXT2_ET_BAD_BLOCK_NUM;
	}
	if (count == 1)
		err = write_one(io, block, buf);
	else
		err = write_many(io, block, count, buf);
out:
	if (err && channel->write_error)
		err = channel->write_error(channel, block, count, buf,
					   io->block_size, 0, err);
	return err;
}

static errcode_t f4_write_blk(io_channel channel, unsigned long block,
			      int count, const void *buf)
{
	return f4_write_blk64(channel, block, count, buf);
}

static errcode_t f4_write_byte(io_channel channel, unsigned long offset,
			       int size, const void *buf)
{
	struct f4_io *io = chan_io(channel);
	errcode_t err;

	if (!io->rw)
		return EXT2_ET_RO_FILSYS;
	if (size <= 0)
		return EXT2_ET_INVALID_ARGUMENT;
	err = evict_bytes(io, offset, size);
	if (err)
		return err;
	return raw_pwrite(io, buf, size, offset);
}

static errcode_t f4_flush_channel(io_channel channel)
{
	struct f4_io *io = chan_io(channel);
	errcode_t err;

	if (io->discard)
		return EXT2_ET_RO_FILSYS;
	err = flush_cache(io);
	if (err)
		return err;
	if (io->rw && fdatasync(io->fd))
		return errno;
	return 0;
}

static errcode_t parse_ull(const char *arg, unsigned long long *val)
{
	char *end;

	if (!arg || !*arg)
		return EXT2_ET_INVALID_ARGUMENT;
	errno = 0;
	*val = strtoull(arg, &end, 0);
	if (errno || *end)
		return EXT2_ET_INVALID_ARGUMENT;
	return 0;
}

static errcode_t f4_set_option(io_channel channel, const char *option,
			       const char *arg)
{
	struct f4_io *io = chan_io(channel);
	unsigned long long val;
	errcode_t err;

	err = parse_ull(arg, &val);
	if (err)
		return err;
	if (!strcmp(option, "offset")) {
		if (val > LLONG_MAX)
			return EXT2_ET_INVALID_ARGUMENT;
		err = flush_cache(io);
		if (err)
			return err;
		if (io->cache_ready)
			cache_purge(&io->cache);
		io->offset = val;
		return 0;
	}
	if (!strcmp(option, "cache_size")) {
		io->cache_bytes = val;
		if (io->cache_ready)
			cache_set_max(&io->cache, cache_blocks(io));
		return 0;
	}
	if (!strcmp(option, "fs_blocks")) {
		io->limit = val;
		return 0;
	}
	if (!strcmp(option, "end")) {
		/* set once, when the channel opens: nothing may widen it */
		if (io->end && (!val || val > io->end))
			return EXT2_ET_INVALID_ARGUMENT;
		io->end = val;
		return 0;
	}
	return EXT2_ET_INVALID_ARGUMENT;
}

static errcode_t f4_get_stats(io_channel channel, io_stats *stats)
{
	static struct struct_io_stats st;
	struct f4_io *io = chan_io(channel);

	st.num_fields = 2;
	st.bytes_read = io->bytes_read;
	st.bytes_written = io->bytes_written;
	if (stats)
		*stats = &st;
	return 0;
}

static errcode_t f4_discard(io_channel channel, unsigned long long block,
			    unsigned long long count)
{
	struct f4_io *io = chan_io(channel);
	unsigned long long range[2];
	int ret;

	if (!io->rw)
		return EXT2_ET_RO_FILSYS;
	if (outside(io, block, count))
		return EXT2_ET_BAD_BLOCK_NUM;
	drop_range(io, block, count);
	range[0] = io->offset + block * io->block_size;
	range[1] = count * io->block_size;
	if (io->blockdev)
		ret = ioctl(io->fd, BLKDISCARD, range);
	else
		ret = fallocate(io->fd, FALLOC_FL_PUNCH_HOLE |
				FALLOC_FL_KEEP_SIZE, range[0], range[1]);
	if (ret)
		return errno == EOPNOTSUPP ? EXT2_ET_UNIMPLEMENTED : errno;
	return 0;
}

static errcode_t f4_zeroout(io_channel channel, unsigned long long block,
			    unsigned long long count)
{
	struct f4_io *io = chan_io(channel);
	unsigned long long range[2];
	static const char zeros[65536];
	unsigned long long pos, left;
	errcode_t err;

	if (!io->rw)
		return EXT2_ET_RO_FILSYS;
	if (outside(io, block, count))
		return EXT2_ET_BAD_BLOCK_NUM;
	drop_range(io, block, count);
	range[0] = io->offset + block * io->block_size;
	range[1] = count * io->block_size;
	if (io->blockdev) {
		if (!ioctl(io->fd, BLKZEROOUT, range))
			return 0;
	} else if (!fallocate(io->fd, FALLOC_FL_ZERO_RANGE |
			      FALLOC_FL_KEEP_SIZE, range[0], range[1])) {
		return 0;
	}
	pos = block * io->block_size;
	for (left = range[1]; left; ) {
		size_t n = left > sizeof(zeros) ? sizeof(zeros) : left;

		err = raw_pwrite(io, zeros, n, pos);
		if (err)
			return err;
		pos += n;
		left -= n;
	}
	return 0;
}

static errcode_t f4_readahead(io_channel channel, unsigned long long block,
			      unsigned long long count)
{
	struct f4_io *io = chan_io(channel);

	posix_fadvise(io->fd, io->offset + block * io->block_size,
		      count * io->block_size, POSIX_FADV_WILLNEED);
	return 0;
}

static struct struct_io_manager f4_io_manager_struct = {
	.magic		= EXT2_ET_MAGIC_IO_MANAGER,
	.name		= "fuse4fs block cache",
	.open		= f4_open_channel,
	.close		= f4_close_channel,
	.set_blksize	= f4_set_blksize,
	.read_blk	= f4_read_blk,
	.write_blk	= f4_write_blk,
	.flush		= f4_flush_channel,
	.write_byte	= f4_write_byte,
	.set_option	= f4_set_option,
	.get_stats	= f4_get_stats,
	.read_blk64	= f4_read_blk64,
	.write_blk64	= f4_write_blk64,
	.discard	= f4_discard,
	.cache_readahead = f4_readahead,
	.zeroout	= f4_zeroout,
};

io_manager f4_io_manager = &f4_io_manager_struct;

static int is_ours(io_channel io)
{
	return io && io->manager == f4_io_manager;
}

int f4_io_set_cache_size(io_channel io, unsigned long long bytes)
{
	char opt[64];

	if (!is_ours(io))
		return -EINVAL;
	snprintf(opt, sizeof(opt), "cache_size=%llu", bytes);
	return io_channel_set_options(io, opt) ? -EINVAL : 0;
}

int f4_io_limit(io_channel io, unsigned long long blocks)
{
	if (!is_ours(io))
		return -EINVAL;
	chan_io(io)->limit = blocks;
	return 0;
}

/* Periodic housekeeping: let the cache shrink when it is idle. */
void f4_io_tick(io_channel io)
{
	if (is_ours(io) && chan_io(io)->cache_ready)
		cache_tick(&chan_io(io)->cache);
}

/*
 * File data: always straight to the device, whatever the count, so data
 * never crowds metadata out of the cache.  Cached copies stay coherent.
 */
errcode_t f4_io_read_data(io_channel io, unsigned long long block, int count,
			  void *buf)
{
	struct f4_io *data;

	if (!is_ours(io))
		return io_channel_read_blk64(io, block, count, buf);
	data = chan_io(io);
	if (count <= 0)
		return EXT2_ET_INVALID_ARGUMENT;
	if (outside(data, block, count))
		return EXT2_ET_BAD_BLOCK_NUM;
	return read_many(data, block, count, buf);
}

errcode_t f4_io_write_data(io_channel io, unsigned long long block, int count,
			   const void *buf)
{
	struct f4_io *data;

	if (!is_ours(io))
		return io_channel_write_blk64(io, block, count, buf);
	data = chan_io(io);
	if (!data->rw)
		return EXT2_ET_RO_FILSYS;
	if (count <= 0)
		return EXT2_ET_INVALID_ARGUMENT;
	if (outside(data, block, count)) {
		f4_log(3, "refusing to write blocks %llu-%llu: past the end "
		       "of the file system", block, block + count - 1);
		return EXT2_ET_BAD_BLOCK_NUM;
	}
	return write_many(data, block, count, buf);
}

/*
 * Bytes written since the last call (or the open), for s_kbytes_written.
 * Taking them resets the count, so that ext2fs_close2(), which adds what
 * get_stats reports when the counter is already in use, doesn't count
 * them a second time.
 */
unsigned long long f4_io_take_written(io_channel io)
{
	unsigned long long n = 0;

	if (is_ours(io)) {
		n = chan_io(io)->bytes_written;
		chan_io(io)->bytes_written = 0;
	}
	return n;
}

/* errors=panic: from now on nothing reaches the device. */
void f4_io_stop_writes(io_channel io)
{
	if (is_ours(io)) {
		chan_io(io)->discard = 1;
		chan_io(io)->rw = 0;
	}
}

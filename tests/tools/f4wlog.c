/*
 * f4wlog.so - record what a process writes to one image file or device.
 *
 * An LD_PRELOAD shim for crash-state testing (tests/tools/crashcheck.py).
 * Every call that changes the image (pwrite, write, their vector forms,
 * ftruncate, fallocate, the BLKDISCARD/BLKZEROOUT ioctls) and every call
 * that makes earlier writes durable (fsync, fdatasync, syncfs, sync) is
 * appended to a log file, in the order the calls took effect, with the
 * data written; a write on an O_SYNC/O_DSYNC descriptor or with
 * RWF_SYNC/RWF_DSYNC is a write and a flush.  sync_file_range and
 * BLKFLSBUF are not flushes: they write the page cache back but do not
 * flush the device's write cache, so a journal must not count on them,
 * and the log does not either.
 * From the image as it was before the run and this log, any state a disk
 * could be left in by a power cut can be rebuilt.
 *
 *   F4_WLOG_IMAGE=PATH   the image (or block device) to watch
 *   F4_WLOG=PATH         the log to append to (created if missing)
 *
 * The image is recognised by device and inode (st_rdev for a block
 * device), so every descriptor the process opens on it, by any name, is
 * watched.  Calls on the image are serialised under one mutex held across
 * the system call and the log append: the log order is then the order in
 * which the calls ran, and a flush in the log covers exactly the writes
 * logged before it.  Only calls that succeeded are logged (a short write
 * logs the bytes that were written).
 *
 * Only the process started with the shim records: it takes itself out of
 * LD_PRELOAD for the programs it runs and stops recording in forked
 * children (none of which write the image; crashcheck.py checks that the
 * log accounts for every byte of the final image).
 *
 * Log format (little endian): the 8-byte magic "F4WLOG01", then records of
 * a 32-byte header { u32 type; u32 how; u64 seq; u64 off; u64 len }
 * followed, for F4W_WRITE only, by len bytes of data.  seq counts records
 * from 0.  The log's size at any moment is a position in the log: when a
 * program reads it after its fsync on the mount returned, the flush that
 * made its data durable (if the daemon did its job) is logged before that
 * position.
 *
 * Not seen: asynchronous I/O (io_submit, io_uring) and writes through
 * shared mappings.  fuse4fs uses neither; if it ever does, crashcheck.py's
 * check that the log accounts for the final image fails.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>

enum f4w_type {
	F4W_WRITE = 1,		/* off, len, data */
	F4W_FLUSH = 2,		/* how: which call */
	F4W_TRUNCATE = 3,	/* off: the new size */
	F4W_DISCARD = 4,	/* off, len: contents undefined, read as 0 */
	F4W_ZERO = 5,		/* off, len: zeroed */
};

enum f4w_how {
	HOW_FSYNC = 1, HOW_FDATASYNC, HOW_SYNCFS, HOW_SYNC, HOW_SYNC_WRITE,
};

struct f4w_rec {
	uint32_t type;
	uint32_t how;
	uint64_t seq;
	uint64_t off;
	uint64_t len;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;
static int watching;
static dev_t img_dev, img_rdev;
static ino_t img_ino;
static int img_is_blk;
static uint64_t seq;

#define REAL(name) static __typeof__(name) *real_##name
REAL(pwrite); REAL(pwrite64); REAL(pwritev); REAL(pwritev2);
REAL(write); REAL(writev); REAL(fsync); REAL(fdatasync);
REAL(syncfs); REAL(sync); REAL(ftruncate);
REAL(ftruncate64); REAL(fallocate); REAL(fallocate64);
static int (*real_ioctl)(int, unsigned long, ...);

static void die(const char *what)
{
	fprintf(stderr, "f4wlog: %s: %s\n", what, strerror(errno));
	abort();
}

static void *sym(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (!p) {
		fprintf(stderr, "f4wlog: no symbol %s\n", name);
		abort();
	}
	return p;
}

/*
 * Only the process that was started under the shim records: a forked
 * child (fuse4fs's auto_unmount watchdog) would log with a copy of our
 * sequence counter, and programs we exec must not record at all.
 */
static void f4w_child(void)
{
	watching = 0;
}

__attribute__((constructor))
static void f4w_init(void)
{
	const char *image = getenv("F4_WLOG_IMAGE");
	const char *logp = getenv("F4_WLOG");
	struct stat st;

#define GET(name) real_##name = sym(#name)
	GET(pwrite); GET(pwrite64); GET(pwritev); GET(pwritev2);
	GET(write); GET(writev); GET(fsync); GET(fdatasync);
	GET(syncfs); GET(sync); GET(ftruncate);
	GET(ftruncate64); GET(fallocate); GET(fallocate64);
	real_ioctl = sym("ioctl");
#undef GET
	if (!image || !logp)
		return;
	unsetenv("LD_PRELOAD");
	pthread_atfork(NULL, NULL, f4w_child);
	if (stat(image, &st))
		die(image);
	img_is_blk = S_ISBLK(st.st_mode);
	img_dev = st.st_dev;
	img_ino = st.st_ino;
	img_rdev = st.st_rdev;
	log_fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (log_fd < 0)
		die(logp);
	if (lseek(log_fd, 0, SEEK_END) == 0 &&
	    real_write(log_fd, "F4WLOG01", 8) != 8)
		die(logp);
	watching = 1;
}

/* Is fd the watched image?  One fstat per call: descriptors come and go. */
static int is_image(int fd)
{
	struct stat st;

	if (!watching || fd < 0 || fd == log_fd || fstat(fd, &st))
		return 0;
	if (img_is_blk)
		return S_ISBLK(st.st_mode) && st.st_rdev == img_rdev;
	return st.st_dev == img_dev && st.st_ino == img_ino;
}

/* Append one record (and its data pieces) in a single write.  Under lock. */
static void log_rec(uint32_t type, uint32_t how, uint64_t off, uint64_t len,
		    const struct iovec *iov, int iovcnt)
{
	struct f4w_rec r = { type, how, seq++, off, len };
	size_t total = sizeof(r) + (iov ? len : 0);
	char *buf = malloc(total), *p;
	uint64_t left = len;
	int i;

	if (!buf)
		die("malloc");
	memcpy(buf, &r, sizeof(r));
	p = buf + sizeof(r);
	for (i = 0; iov && i < iovcnt && left; i++) {
		size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;

		memcpy(p, iov[i].iov_base, n);
		p += n;
		left -= n;
	}
	/* O_APPEND: one write is one record, whatever else appends */
	if (real_write(log_fd, buf, total) != (ssize_t)total)
		die("writing the log");
	free(buf);
}

enum wmode { W_WRITEV, W_PWRITEV, W_PWRITEV2 };

/*
 * A write that is durable when it returns (O_SYNC/O_DSYNC descriptor,
 * RWF_SYNC/RWF_DSYNC) ends in a flush of the device's cache on Linux,
 * which makes every earlier write durable too: log a flush after it.
 */
static int write_is_sync(int fd, int flags)
{
	int fl = fcntl(fd, F_GETFL);

	if (flags & (RWF_SYNC | RWF_DSYNC))
		return 1;
	return fl >= 0 && (fl & (O_SYNC | O_DSYNC));
}

static ssize_t logged_pwritev(int fd, const struct iovec *iov, int iovcnt,
			      off_t off, enum wmode mode, int flags)
{
	off_t at = off;
	ssize_t n;

	pthread_mutex_lock(&lock);
	if (mode == W_WRITEV || off == -1)
		at = lseek(fd, 0, SEEK_CUR);	/* where it will land */
	if (mode == W_PWRITEV2)
		n = real_pwritev2(fd, iov, iovcnt, off, flags);
	else if (mode == W_PWRITEV)
		n = real_pwritev(fd, iov, iovcnt, off);
	else
		n = real_writev(fd, iov, iovcnt);
	if (n > 0 && at >= 0) {
		log_rec(F4W_WRITE, 0, at, n, iov, iovcnt);
		if (write_is_sync(fd, flags))
			log_rec(F4W_FLUSH, HOW_SYNC_WRITE, 0, 0, NULL, 0);
	}
	pthread_mutex_unlock(&lock);
	return n;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t off)
{
	struct iovec v = { (void *)buf, count };

	if (!is_image(fd))
		return real_pwrite(fd, buf, count, off);
	return logged_pwritev(fd, &v, 1, off, W_PWRITEV, 0);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t off)
{
	struct iovec v = { (void *)buf, count };

	if (!is_image(fd))
		return real_pwrite64(fd, buf, count, off);
	return logged_pwritev(fd, &v, 1, off, W_PWRITEV, 0);
}

ssize_t write(int fd, const void *buf, size_t count)
{
	struct iovec v = { (void *)buf, count };

	if (!is_image(fd))
		return real_write(fd, buf, count);
	return logged_pwritev(fd, &v, 1, 0, W_WRITEV, 0);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	if (!is_image(fd))
		return real_writev(fd, iov, iovcnt);
	return logged_pwritev(fd, iov, iovcnt, 0, W_WRITEV, 0);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	if (!is_image(fd))
		return real_pwritev(fd, iov, iovcnt, off);
	return logged_pwritev(fd, iov, iovcnt, off, W_PWRITEV, 0);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t off)
	__attribute__((alias("pwritev")));

ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t off,
		 int flags)
{
	if (!is_image(fd))
		return real_pwritev2(fd, iov, iovcnt, off, flags);
	/* off == -1 means "the current offset" for pwritev2 */
	return logged_pwritev(fd, iov, iovcnt, off, W_PWRITEV2, flags);
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int iovcnt, off_t off,
		    int flags) __attribute__((alias("pwritev2")));

/* A flush: log it after it returned successfully. */
#define FLUSH_CALL(how, call)						\
	do {								\
		int ret_;						\
		pthread_mutex_lock(&lock);				\
		ret_ = (call);						\
		if (ret_ == 0)						\
			log_rec(F4W_FLUSH, (how), 0, 0, NULL, 0);	\
		pthread_mutex_unlock(&lock);				\
		return ret_;						\
	} while (0)

int fsync(int fd)
{
	if (!is_image(fd))
		return real_fsync(fd);
	FLUSH_CALL(HOW_FSYNC, real_fsync(fd));
}

int fdatasync(int fd)
{
	if (!is_image(fd))
		return real_fdatasync(fd);
	FLUSH_CALL(HOW_FDATASYNC, real_fdatasync(fd));
}

int syncfs(int fd)
{
	if (!is_image(fd))
		return real_syncfs(fd);
	FLUSH_CALL(HOW_SYNCFS, real_syncfs(fd));
}

void sync(void)
{
	if (!watching) {
		real_sync();
		return;
	}
	pthread_mutex_lock(&lock);
	real_sync();
	log_rec(F4W_FLUSH, HOW_SYNC, 0, 0, NULL, 0);
	pthread_mutex_unlock(&lock);
}

static int logged_truncate(int fd, off_t size, int is64)
{
	int ret;

	pthread_mutex_lock(&lock);
	ret = is64 ? real_ftruncate64(fd, size) : real_ftruncate(fd, size);
	if (ret == 0)
		log_rec(F4W_TRUNCATE, 0, size, 0, NULL, 0);
	pthread_mutex_unlock(&lock);
	return ret;
}

int ftruncate(int fd, off_t size)
{
	if (!is_image(fd))
		return real_ftruncate(fd, size);
	return logged_truncate(fd, size, 0);
}

int ftruncate64(int fd, off64_t size)
{
	if (!is_image(fd))
		return real_ftruncate64(fd, size);
	return logged_truncate(fd, size, 1);
}

/*
 * fallocate: punching a hole is a discard (reads back zeros on a file);
 * zeroing a range writes zeros.  Plain allocation and KEEP_SIZE change no
 * byte that a reader sees, so they are not logged.
 */
static int logged_fallocate(int fd, int mode, off_t off, off_t len, int is64)
{
	int ret;

	pthread_mutex_lock(&lock);
	ret = is64 ? real_fallocate64(fd, mode, off, len) :
		     real_fallocate(fd, mode, off, len);
	if (ret == 0 && (mode & FALLOC_FL_PUNCH_HOLE))
		log_rec(F4W_DISCARD, 0, off, len, NULL, 0);
	else if (ret == 0 && (mode & FALLOC_FL_ZERO_RANGE))
		log_rec(F4W_ZERO, 0, off, len, NULL, 0);
	pthread_mutex_unlock(&lock);
	return ret;
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
	if (!is_image(fd))
		return real_fallocate(fd, mode, off, len);
	return logged_fallocate(fd, mode, off, len, 0);
}

int fallocate64(int fd, int mode, off64_t off, off64_t len)
{
	if (!is_image(fd))
		return real_fallocate64(fd, mode, off, len);
	return logged_fallocate(fd, mode, off, len, 1);
}

/* glibc declares ioctl(int, unsigned long, ...); the argument is a pointer. */
int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;
	uint64_t *range;
	int ret;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if ((req != BLKDISCARD && req != BLKZEROOUT &&
	     req != BLKSECDISCARD) || !is_image(fd))
		return real_ioctl(fd, req, arg);
	pthread_mutex_lock(&lock);
	ret = real_ioctl(fd, req, arg);
	range = arg;
	if (ret == 0 && req == BLKZEROOUT)
		log_rec(F4W_ZERO, 0, range[0], range[1], NULL, 0);
	else if (ret == 0)
		log_rec(F4W_DISCARD, 0, range[0], range[1], NULL, 0);
	pthread_mutex_unlock(&lock);
	return ret;
}

/*
 * mount.c - how fuse4fs puts itself in front of the kernel.
 *
 * A plain FUSE mount ends asynchronously: umount(2) returns as soon as the
 * kernel lets go, while the daemon may still be writing.  A "fuseblk"
 * mount is different: at umount the kernel sends DESTROY and waits for the
 * reply, and fuse4fs writes everything and closes the image before
 * replying (ops.c).  So when root mounts, fuse4fs uses fuseblk: on the
 * block device itself, or, for an image file, on a loop device attached
 * to the image.  The loop device is only the kernel's handle for the
 * mount (fuse4fs keeps doing its I/O on the image file); it is set to
 * detach itself when the mount lets go of it.
 *
 * fuseblk needs root; unprivileged mounts are plain FUSE mounts made
 * through fusermount3.  If no loop device can be had, root falls back to
 * a plain mount too, and says so.
 */
#include "config.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <syslog.h>
#include <unistd.h>

#include "ops.h"
#include "mount.h"

#include <linux/fuse.h>
#include <poll.h>
#include <sys/uio.h>

/* Attach image to a free loop device; returns its open fd, or -errno. */
static int attach_loop(const char *image, int ro, char *dev, size_t len)
{
	struct loop_config cfg;
	int ctl, lfd = -1, ifd, n, tries;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return -errno;
	ifd = open(image, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (ifd < 0) {
		close(ctl);
		return -errno;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = ifd;
	cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | (ro ? LO_FLAGS_READ_ONLY : 0);
	/* Another process may take the free device first: try again */
	for (tries = 0; tries < 16; tries++) {
		n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			break;
		snprintf(dev, len, "/dev/loop%d", n);
		lfd = open(dev, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
		if (lfd < 0)
			break;
		if (!ioctl(lfd, LOOP_CONFIGURE, &cfg))
			break;
		close(lfd);
		lfd = -1;
		if (errno != EBUSY)
			break;
	}
	if (lfd < 0)
		lfd = -(errno ? errno : EBUSY);
	close(ifd);
	close(ctl);
	return lfd;
}

/*
 * Decide how to mount.  Sets m->blkdev and m->source; may attach a loop
 * device (kept open in m->loop_fd until the mount holds it).
 */
void f4_mount_prepare(struct f4fs *f, struct f4_mount *m)
{
	struct f4_opts *o = f->opts;
	struct stat st;
	int fd;

	memset(m, 0, sizeof(*m));
	m->loop_fd = -1;
	if (geteuid() != 0 || !o->fuseblk || stat(o->device, &st))
		return;
	if (S_ISBLK(st.st_mode)) {
		snprintf(m->source, sizeof(m->source), "%s", o->device);
		m->blkdev = 1;
		return;
	}
	fd = attach_loop(o->device, f->ro, m->source, sizeof(m->source));
	if (fd < 0) {
		f4_log(LOG_NOTICE, "%s: no loop device (%s): mounting without "
		       "fuseblk, so umount will not wait for the data to be "
		       "written", o->device, strerror(-fd));
		return;
	}
	m->loop_fd = fd;
	m->blkdev = 1;
}

/* The mount holds the loop device now (or failed): let go of ours. */
void f4_mount_done(struct f4_mount *m)
{
	if (m->loop_fd >= 0)
		close(m->loop_fd);
	m->loop_fd = -1;
}

/* Append one FUSE mount option, escaping commas and backslashes. */
static void add_opt(char *buf, size_t len, const char *key, const char *val)
{
	size_t used = strlen(buf);

	if (used && used < len - 1)
		buf[used++] = ',';
	for (; *key && used < len - 1; key++)
		buf[used++] = *key;
	if (val) {
		if (used < len - 1)
			buf[used++] = '=';
		for (; *val && used < len - 2; val++) {
			if (*val == ',' || *val == '\\')
				buf[used++] = '\\';
			buf[used++] = *val;
		}
	}
	buf[used] = 0;
}

static void mount_options(const struct f4fs *f, const struct f4_mount *m,
			  char *buf, size_t len)
{
	const struct f4_opts *o = f->opts;
	char bs[32];

	buf[0] = 0;
	if (m->blkdev) {
		/* The kernel finds the block device by the source name */
		add_opt(buf, len, "fsname", m->source);
		add_opt(buf, len, "blkdev", NULL);
		/* fuseblk's block size: a power of two up to a page */
		snprintf(bs, sizeof(bs), "%u",
			 f->blocksize > 4096 ? 4096 : f->blocksize);
		add_opt(buf, len, "blksize", bs);
	} else {
		add_opt(buf, len, "fsname", o->fsname ? o->fsname : o->device);
	}
	add_opt(buf, len, "subtype", o->subtype ? o->subtype : "fuse4fs");
	if (o->allow_other)
		add_opt(buf, len, "allow_other", NULL);
	else if (o->allow_root)
		add_opt(buf, len, "allow_root", NULL);
	if (o->default_permissions)
		add_opt(buf, len, "default_permissions", NULL);
	if (f->ro)
		add_opt(buf, len, "ro", NULL);
	add_opt(buf, len, o->suid ? "suid" : "nosuid", NULL);
	add_opt(buf, len, o->dev ? "dev" : "nodev", NULL);
	if (o->noexec)
		add_opt(buf, len, "noexec", NULL);
	if (o->dirsync)
		add_opt(buf, len, "dirsync", NULL);
	/*
	 * libfuse's auto_unmount mounts through fusermount3, which can't do
	 * suid or dev; root gets fuse4fs's own watchdog instead.
	 */
	if (o->auto_unmount && geteuid() != 0)
		add_opt(buf, len, "auto_unmount", NULL);
}

struct fuse_session *f4_make_session(struct f4fs *f, const struct f4_mount *m)
{
	char mopts[PATH_MAX * 2 + 256];
	char *argv[5];
	int argc = 0;
	struct fuse_args args;
	struct fuse_session *se;

	mount_options(f, m, mopts, sizeof(mopts));
	argv[argc++] = f->opts->progname;
	argv[argc++] = "-o";
	argv[argc++] = mopts;
	if (f->opts->debug)
		argv[argc++] = "-d";
	argv[argc] = NULL;
	args.argc = argc;
	args.argv = argv;
	args.allocated = 0;
	se = fuse_session_new(&args, &f4_ops, sizeof(f4_ops), f);
	fuse_opt_free_args(&args);
	return se;
}

/*
 * auto_unmount for root: a small process that waits for the daemon to go
 * away.  If it goes without saying goodbye (killed, crashed), the
 * watchdog detaches the mount, so users find an empty directory rather
 * than "Transport endpoint is not connected".  Returns the daemon's end
 * of the pipe, or -1.
 */
int f4_start_watchdog(const char *mountpoint)
{
	int p[2], fd;
	pid_t pid;
	char c = 0;

	if (pipe2(p, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		/* Hold nothing of the daemon's: above all not /dev/fuse */
		for (fd = 0; fd < 1024; fd++)
			if (fd != p[0])
				close(fd);
		fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		setsid();
		signal(SIGHUP, SIG_IGN);
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		while (read(p[0], &c, 1) < 0 && errno == EINTR)
			;
		if (c != 'q')
			umount2(mountpoint, MNT_DETACH);
		_exit(0);
	}
	close(p[0]);
	return p[1];
}

/* A clean exit: the watchdog must leave the mount point alone. */
void f4_stop_watchdog(int fd)
{
	if (fd < 0)
		return;
	if (write(fd, "q", 1) != 1)
		f4_log(LOG_DEBUG, "watchdog: %s", strerror(errno));
	close(fd);
}

/*
 * Root mounts are made here, with mount(2), and libfuse is handed the
 * /dev/fuse descriptor through its custom-I/O hook.  That hook lets
 * fuse4fs ask the kernel for HANDLE_KILLPRIV_V2, which libfuse 3.14
 * doesn't negotiate: fuse4fs itself drops setuid/setgid and file
 * capabilities on write, truncate and chown (file.c, inode.c), so the
 * kernel can stop asking for security.capability before every write and
 * re-reading attributes before every chown.  The flag only changes which
 * request carries the "kill" (a flag bit libfuse passes through or
 * ignores), never the meaning of a request libfuse decodes.
 */
static uint64_t init_unique;
static uint32_t kernel_flags;

static ssize_t direct_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);
	const struct fuse_in_header *in = buf;

	if (n >= (ssize_t)(sizeof(*in) + 16) && in->opcode == FUSE_INIT) {
		const struct fuse_init_in *arg = (const void *)(in + 1);

		kernel_flags = arg->flags;
		init_unique = in->unique;
	}
	return n;		/* libfuse looks at errno itself */
}

static ssize_t direct_writev(int fd, struct iovec *iov, int count,
			     void *userdata)
{
	ssize_t n;

	if (init_unique && count >= 2 &&
	    iov[0].iov_len >= sizeof(struct fuse_out_header) &&
	    iov[1].iov_len >= 16) {
		struct fuse_out_header *out = iov[0].iov_base;
		struct fuse_init_out *arg = iov[1].iov_base;

		if (out->unique == init_unique && !out->error) {
			if (kernel_flags & FUSE_HANDLE_KILLPRIV_V2)
				arg->flags |= FUSE_HANDLE_KILLPRIV_V2;
			init_unique = 0;
		}
	}
	n = writev(fd, iov, count);
	return n;
}

static const struct fuse_custom_io direct_io = {
	.writev = direct_writev,
	.read = direct_read,
};

/* Mount with mount(2) for root; 0, or -errno to fall back to libfuse. */
int f4_mount_direct(struct f4fs *f, struct f4_mount *m,
		    struct fuse_session *se)
{
	const struct f4_opts *o = f->opts;
	char opts[256], type[128];
	const char *source;
	unsigned long flags = 0;
	struct stat st;
	int fd, ret;

	if (geteuid() != 0 || stat(o->mountpoint, &st))
		return -EPERM;
	fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	snprintf(opts, sizeof(opts), "fd=%d,rootmode=%o,user_id=%u,"
		 "group_id=%u%s%s", fd, st.st_mode & S_IFMT, getuid(),
		 getgid(), o->allow_other ? ",allow_other" : "",
		 o->default_permissions ? ",default_permissions" : "");
	if (m->blkdev) {
		size_t used = strlen(opts);

		snprintf(opts + used, sizeof(opts) - used, ",blksize=%u",
			 f->blocksize > 4096 ? 4096 : f->blocksize);
	}
	snprintf(type, sizeof(type), "%s.%s", m->blkdev ? "fuseblk" : "fuse",
		 o->subtype ? o->subtype : "fuse4fs");
	source = m->blkdev ? m->source : (o->fsname ? o->fsname : o->device);
	if (!o->suid)
		flags |= MS_NOSUID;
	if (!o->dev)
		flags |= MS_NODEV;
	if (o->noexec)
		flags |= MS_NOEXEC;
	if (o->dirsync)
		flags |= MS_DIRSYNC;
	if (f->ro)
		flags |= MS_RDONLY;
	if (mount(source, o->mountpoint, type, flags, opts)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	ret = fuse_session_custom_io(se, &direct_io, fd);
	if (ret) {
		umount2(o->mountpoint, MNT_DETACH);
		close(fd);
		return ret;
	}
	m->direct = 1;
	return 0;
}

/* Take the mount down if it is still there (a signal, errors=panic). */
void f4_mount_finish(struct f4fs *f, struct f4_mount *m,
		     struct fuse_session *se)
{
	struct pollfd pfd = { .fd = fuse_session_fd(se), .events = 0 };

	if (!m->direct) {
		fuse_session_unmount(se);
		return;
	}
	/* An unmounted connection reports an error: then nothing to do */
	if (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR))
		return;
	umount2(f->opts->mountpoint, MNT_DETACH);
}

/*
 * Readahead.  The kernel gives a FUSE mount a readahead window of at most
 * 128 KiB, whatever max_readahead says (it keeps the smaller of the two),
 * while ext4 on the same disk reads ahead as far as the disk's queue
 * says (2.5 MiB on a virtio disk).  Sequential reads then reach fuse4fs
 * in small pieces, each waiting for the one before.  Root may set the
 * window in sysfs: fuse4fs gives its mount the readahead of the device
 * that holds the file system, as kernel ext4 would have on it.
 */
#define F4_FALLBACK_READAHEAD_KB	2048

/*
 * Write v to a sysfs file: 0 or -errno.  sysfs takes the value when the
 * buffered line is flushed, so fclose() reports the error, and the
 * stream is gone whether it succeeds or not.
 */
int f4_write_sysfs_long(const char *path, long v)
{
	FILE *fp = fopen(path, "we");
	int ret = 0;

	if (!fp)
		return -errno;
	if (fprintf(fp, "%ld\n", v) < 0)
		ret = errno ? -errno : -EIO;
	if (fclose(fp) && !ret)
		ret = errno ? -errno : -EIO;
	return ret;
}

static long read_sysfs_long(const char *path)
{
	char buf[32];
	long v = -1;
	FILE *fp = fopen(path, "re");

	if (!fp)
		return -1;
	if (fgets(buf, sizeof(buf), fp))
		v = strtol(buf, NULL, 10);
	fclose(fp);
	return v;
}

/* The readahead, in KiB, of the disk that holds path (a device or file). */
static long holder_readahead_kb(const char *path)
{
	char sys[128];
	struct stat st;
	dev_t dev;
	long kb;

	if (stat(path, &st))
		return -1;
	dev = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;
	snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u/queue/read_ahead_kb",
		 major(dev), minor(dev));
	kb = read_sysfs_long(sys);
	if (kb < 0) {		/* a partition: its disk has the queue */
		snprintf(sys, sizeof(sys),
			 "/sys/dev/block/%u:%u/../queue/read_ahead_kb",
			 major(dev), minor(dev));
		kb = read_sysfs_long(sys);
	}
	return kb;
}

/* "major:minor" of the file system mounted on mnt, from mountinfo. */
static int mount_devnum(const char *mnt, char *out, size_t len)
{
	char line[4096], devnum[32], point[PATH_MAX];
	FILE *fp = fopen("/proc/self/mountinfo", "re");
	int found = 0;

	if (!fp)
		return 0;
	while (fgets(line, sizeof(line), fp)) {
		/* id parent major:minor root mount-point ... */
		if (sscanf(line, "%*s %*s %31s %*s %4095s", devnum, point) != 2)
			continue;
		if (!strcmp(point, mnt)) {	/* the last one is on top */
			snprintf(out, len, "%s", devnum);
			found = 1;
		}
	}
	fclose(fp);
	return found;
}

/*
 * Called from INIT, before the reply: the kernel then keeps the smaller
 * of the window set here and max_readahead, so the caller sets that to
 * the returned size (bytes; 0 if the window was left alone).
 */
size_t f4_tune_readahead(struct f4fs *f)
{
	const char *suffix[] = { "-fuseblk", "" };
	char devnum[32], path[128];
	long want, have;
	unsigned int i;
	int ret;

	if (!f->opts->mountpoint || strpbrk(f->opts->mountpoint, " \t\n\\") ||
	    !mount_devnum(f->opts->mountpoint, devnum, sizeof(devnum)))
		return 0;
	want = holder_readahead_kb(f->opts->device);
	if (want <= 0)
		want = F4_FALLBACK_READAHEAD_KB;
	for (i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "/sys/class/bdi/%s%s/read_ahead_kb",
			 devnum, suffix[i]);
		have = read_sysfs_long(path);
		if (have >= 0)
			break;
	}
	if (have < 0 || have >= want)
		return 0;
	ret = f4_write_sysfs_long(path, want);
	if (ret) {
		f4_log(LOG_DEBUG, "%s: readahead stays at %ld KiB: %s",
		       f->opts->mountpoint, have, strerror(-ret));
		return 0;
	}
	f4_log(LOG_DEBUG, "%s: readahead %ld KiB", f->opts->mountpoint, want);
	return (size_t)want << 10;
}

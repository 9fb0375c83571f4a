/*
 * session.c - fuse4fs's own request loop.
 *
 * libfuse 3.14 answers FUSE_TMPFILE (O_TMPFILE) with ENOSYS because its
 * op table has no slot for it.  Rather than fork libfuse, fuse4fs reads
 * requests itself (fuse_session_receive_buf), handles FUSE_TMPFILE here,
 * and passes everything else to fuse_session_process_buf().  Where
 * configure finds libfuse's own tmpfile op, that is used instead.
 *
 * FUSE_SYNCFS (syncfs(2), and sync(1) for every FUSE mount) has no slot
 * in libfuse 3.14's op table either, so it too is answered here: it is
 * what a user runs to make everything written so far durable, and the
 * kernel stops sending it once it has been answered with ENOSYS.
 *
 * Workers: N threads each receive and process requests; the core's one
 * lock serializes the file-system work.  Cancellation is only allowed
 * while a worker waits for a request, never while it holds the lock.
 *
 * Spinning (-o spin=USEC): a FUSE round trip is two wake-ups, and on a
 * virtual machine waking a thread whose CPU has gone idle costs an
 * interrupt through the hypervisor, tens of microseconds, more than the
 * file-system work of most requests.  Metadata-heavy callers (tar, ls,
 * rm) send one request right after another, so after each request one
 * worker polls /dev/fuse without sleeping for up to spin_us before it
 * blocks; the next request then finds it awake.  An idle mount sleeps
 * as before: the price is at most spin_us of CPU time after a request.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <linux/fuse.h>

#include "ops.h"

static int send_reply(struct fuse_session *se, uint64_t unique, int error,
		      struct iovec *iov, int n)
{
	struct fuse_out_header out;
	size_t len = sizeof(out);
	int i;

	for (i = 1; i < n; i++)
		len += iov[i].iov_len;
	out.unique = unique;
	out.error = error;
	out.len = len;
	iov[0].iov_base = &out;
	iov[0].iov_len = sizeof(out);
	if (writev(fuse_session_fd(se), iov, n) != (ssize_t)len)
		return -errno;
	return 0;
}

/* The opcode of a request read into memory, or 0. */
static uint32_t opcode_of(const struct fuse_buf *buf)
{
	const struct fuse_in_header *in = buf->mem;

	if ((buf->flags & FUSE_BUF_IS_FD) || buf->size < sizeof(*in))
		return 0;
	return in->opcode;
}

/* FUSE_SYNCFS: everything written so far becomes durable, as fsync. */
static void handle_syncfs(struct fuse_session *se, struct f4fs *f,
			  const struct fuse_buf *buf)
{
	const struct fuse_in_header *in = buf->mem;
	struct iovec iov[1];
	int ret;

	f4_lock(f);
	ret = f4_fs_flush(f);
	f4_unlock(f);
	send_reply(se, in->unique, ret, iov, 1);
}

#ifndef HAVE_STRUCT_FUSE_LOWLEVEL_OPS_TMPFILE

/*
 * Supplementary groups of a process, for requests libfuse doesn't see:
 * the first size go to list; returns how many there are, or -errno.
 */
static int proc_group_list(pid_t pid, gid_t *list, int size)
{
	char path[64], *line = NULL, *p, *end;
	size_t cap = 0;
	int n = -EIO;
	FILE *fp;

	if (!pid)
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid,
		 (int)pid);
	fp = fopen(path, "re");
	if (!fp)
		return -errno;
	while (getline(&line, &cap, fp) > 0) {
		if (strncmp(line, "Groups:", 7))
			continue;
		for (n = 0, p = line + 7; ; p = end, n++) {
			unsigned long g = strtoul(p, &end, 10);

			if (end == p)
				break;
			if (n < size)
				list[n] = g;
		}
		break;
	}
	free(line);
	fclose(fp);
	return n;
}

static int proc_groups(struct f4_cred *cred)
{
	int n = proc_group_list(cred->pid, cred->groups, F4_NGROUPS);

	if (n < 0) {
		cred->ngroups = F4_GROUPS_UNKNOWN;
		return 0;
	}
	cred->ngroups = n > F4_NGROUPS ? F4_NGROUPS : n;
	cred->more_groups = n > F4_NGROUPS;
	return 0;
}

static int pid_group_list(void *pid, int size, gid_t *list)
{
	return proc_group_list((pid_t)(uintptr_t)pid, list, size);
}

static int proc_find_group(struct f4_cred *cred, gid_t gid)
{
	return f4_group_search(pid_group_list, (void *)(uintptr_t)cred->pid,
			       gid);
}

static void fill_attr(const struct stat *st, struct fuse_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->ino = st->st_ino;
	a->size = st->st_size;
	a->blocks = st->st_blocks;
	a->atime = st->st_atim.tv_sec;
	a->mtime = st->st_mtim.tv_sec;
	a->ctime = st->st_ctim.tv_sec;
	a->atimensec = st->st_atim.tv_nsec;
	a->mtimensec = st->st_mtim.tv_nsec;
	a->ctimensec = st->st_ctim.tv_nsec;
	a->mode = st->st_mode;
	a->nlink = st->st_nlink;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->rdev = st->st_rdev;
	a->blksize = st->st_blksize;
}

/* FUSE_TMPFILE: a create without a name; the reply is a create reply. */
static void handle_tmpfile(struct fuse_session *se, struct f4fs *f,
			   const struct fuse_buf *buf)
{
	const struct fuse_in_header *in = buf->mem;
	const struct fuse_create_in *arg = (const void *)(in + 1);
	struct fuse_entry_out eo;
	struct fuse_open_out oo;
	struct f4_file *fh = NULL;
	struct f4_cred cred;
	struct f4_entry e;
	struct iovec iov[3];
	int ret;

	if (buf->size < sizeof(*in) + sizeof(*arg)) {
		send_reply(se, in->unique, -EINVAL, iov, 1);
		return;
	}
	memset(&cred, 0, sizeof(cred));
	cred.uid = in->uid;
	cred.gid = in->gid;
	cred.pid = in->pid;
	cred.umask = arg->umask;
	cred.ngroups = -1;
	cred.get_groups = proc_groups;
	cred.find_group = proc_find_group;

	f4_lock(f);
	ret = f4_tmpfile(f, &cred, f4_ino_of(in->nodeid), arg->mode,
			 arg->flags, &e, &fh);
	f4_unlock(f);
	if (ret) {
		send_reply(se, in->unique, ret, iov, 1);
		return;
	}
	memset(&eo, 0, sizeof(eo));
	eo.nodeid = f4_nodeid_of(e.ino);
	eo.generation = e.generation;
	eo.entry_valid = eo.attr_valid = 86400;
	fill_attr(&e.attr, &eo.attr);
	memset(&oo, 0, sizeof(oo));
	oo.fh = (uintptr_t)fh;
	oo.open_flags = f->opts->direct ? FOPEN_DIRECT_IO : FOPEN_KEEP_CACHE;
	iov[1].iov_base = &eo;
	iov[1].iov_len = sizeof(eo);
	iov[2].iov_base = &oo;
	iov[2].iov_len = sizeof(oo);
	if (send_reply(se, in->unique, 0, iov, 3)) {
		/* The caller is gone: nothing holds the file */
		f4_lock(f);
		f4_release(f, fh);
		f4_forget(f, e.ino, 1);
		f4_unlock(f);
	}
}

#endif /* !HAVE_STRUCT_FUSE_LOWLEVEL_OPS_TMPFILE */

static sem_t *loop_done;

/* Stop serving (errors=panic): wake the loop so that it unmounts. */
void f4_session_stop(struct fuse_session *se)
{
	fuse_session_exit(se);
	if (loop_done)
		sem_post(loop_done);
}

struct worker {
	pthread_t thread;
	struct fuse_session *se;
	struct f4fs *f;
	sem_t *done;
	struct fuse_buf buf;		/* freed after join: cancel-safe */
	long long spin_ns;		/* 0: block in read(2) at once */
	int error;
	int started;
};

static int spinning;		/* a worker is polling; others sleep */

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * The next request, as fuse_session_receive_buf() returns it.  With
 * spinning on, the device is non-blocking: EAGAIN means "nothing yet".
 */
static int receive(struct worker *w, struct fuse_buf *buf)
{
	struct pollfd pfd = { .fd = fuse_session_fd(w->se), .events = POLLIN };
	long long until = 0;
	int spinner = 0, res;

	if (w->spin_ns && !__atomic_exchange_n(&spinning, 1, __ATOMIC_ACQUIRE)) {
		spinner = 1;
		until = now_ns() + w->spin_ns;
	}
	for (;;) {
		res = fuse_session_receive_buf(w->se, buf);
		if (res != -EAGAIN)
			break;
		if (spinner && now_ns() < until)
			continue;
		if (spinner) {
			__atomic_store_n(&spinning, 0, __ATOMIC_RELEASE);
			spinner = 0;
		}
		if (poll(&pfd, 1, -1) < 0 && errno != EINTR) {
			res = -errno;
			break;
		}
	}
	if (spinner)
		__atomic_store_n(&spinning, 0, __ATOMIC_RELEASE);
	return res;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct fuse_buf *buf = &w->buf;
	int res;

	while (!fuse_session_exited(w->se)) {
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		res = receive(w, buf);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (res == -EINTR)
			continue;
		if (res <= 0) {
			if (res < 0)
				w->error = res;
			break;
		}
		if (opcode_of(buf) == FUSE_SYNCFS) {
			handle_syncfs(w->se, w->f, buf);
			continue;
		}
#ifndef HAVE_STRUCT_FUSE_LOWLEVEL_OPS_TMPFILE
		if (opcode_of(buf) == FUSE_TMPFILE) {
			handle_tmpfile(w->se, w->f, buf);
			continue;
		}
#endif
		fuse_session_process_buf(w->se, buf);
	}
	fuse_session_exit(w->se);
	sem_post(w->done);
	return NULL;
}

/*
 * Serve requests until the file system is unmounted or fuse4fs is told
 * to stop.  Returns 0, or the negative errno that stopped it.
 */
int f4_session_loop(struct fuse_session *se, struct f4fs *f, int threads)
{
	long long spin_ns = f->opts->spin_us * 1000LL;
	struct worker *w;
	sem_t done;
	int i, fd, fl, ret = 0;

	if (threads < 1)
		threads = 1;
	fd = fuse_session_fd(se);
	fl = fcntl(fd, F_GETFL);
	if (spin_ns && (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
		f4_log(LOG_WARNING, "spin: cannot make /dev/fuse non-blocking: "
		       "%s", strerror(errno));
		spin_ns = 0;
	}
	w = calloc(threads, sizeof(*w));
	if (!w)
		return -ENOMEM;
	sem_init(&done, 0, 0);
	loop_done = &done;
	for (i = 0; i < threads; i++) {
		w[i].se = se;
		w[i].f = f;
		w[i].done = &done;
		w[i].spin_ns = spin_ns;
		if (pthread_create(&w[i].thread, NULL, worker_main, &w[i])) {
			ret = -errno;
			fuse_session_exit(se);
			break;
		}
		w[i].started = 1;
	}
	/* Wake on the first worker to finish, or on a signal */
	while (!fuse_session_exited(se))
		sem_wait(&done);
	for (i = 0; i < threads; i++)
		if (w[i].started)
			pthread_cancel(w[i].thread);
	for (i = 0; i < threads; i++) {
		if (!w[i].started)
			continue;
		pthread_join(w[i].thread, NULL);
		free(w[i].buf.mem);
		if (w[i].error && !ret)
			ret = w[i].error;
	}
	loop_done = NULL;
	sem_destroy(&done);
	free(w);
	return ret;
}

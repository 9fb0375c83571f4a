/*
 * f4session - drive fuse4fs's FUSE layer (ops.c) without a kernel: the
 * requests of a scenario are built here and passed to libfuse's request
 * decoder through a session with custom I/O, whose writev can make a
 * reply fail the way a lost request does (ENOENT).  For what a real mount
 * can't do on demand.
 *
 *   f4session IMAGE readdirplus-lost   a READDIRPLUS reply the kernel never
 *                                      gets must hand over no references
 *   f4session IMAGE forget-after-destroy
 *                                      FORGET after DESTROY (fuseblk
 *                                      unmount, several workers) must not
 *                                      touch the closed file system
 *   f4session IMAGE sysfs-write PATH   the write of a sysfs value whose
 *                                      flush fails (/dev/full): an error,
 *                                      no crash
 *
 * Exit status 0 when fuse4fs behaved; 1 with a message when not; 2 on
 * usage or setup errors.  Build with -fsanitize=address to catch use of
 * freed state.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fuse4fs/ops.h"
#include "fuse4fs/mount.h"
#include <linux/fuse.h>

static uint64_t fail_unique;		/* reply to make fail, 0: none */
static char reply[1 << 17];		/* the last reply that went out */
static size_t reply_len;
static uint64_t next_unique = 2;

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *ud)
{
	const struct fuse_out_header *out = iov[0].iov_base;
	size_t len = 0;
	int i;

	if (out->unique && out->unique == fail_unique) {
		errno = ENOENT;		/* the kernel no longer knows it */
		return -1;
	}
	for (i = 0; i < count; i++) {
		if (len + iov[i].iov_len <= sizeof(reply))
			memcpy(reply + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	reply_len = len;
	return len;
}

static ssize_t io_read(int fd, void *buf, size_t len, void *ud)
{
	errno = ENODEV;
	return -1;
}

/* Send one request; returns its unique. */
static uint64_t send(struct fuse_session *se, uint32_t opcode,
		     uint64_t nodeid, const void *arg, size_t arglen)
{
	static char req[4096] __attribute__((aligned(8)));
	struct fuse_in_header *in = (void *)req;
	struct fuse_buf buf;

	memset(req, 0, sizeof(*in));
	in->len = sizeof(*in) + arglen;
	in->opcode = opcode;
	in->unique = next_unique += 2;
	in->nodeid = nodeid;
	if (arglen)
		memcpy(req + sizeof(*in), arg, arglen);
	memset(&buf, 0, sizeof(buf));
	buf.mem = req;
	buf.size = in->len;
	reply_len = 0;
	fuse_session_process_buf(se, &buf);
	return in->unique;
}

static int reply_error(void)
{
	const struct fuse_out_header *out = (void *)reply;

	return reply_len >= sizeof(*out) ? out->error : -EPROTO;
}

static int do_init(struct fuse_session *se)
{
	struct fuse_init_in init;

	memset(&init, 0, sizeof(init));
	init.major = FUSE_KERNEL_VERSION;
	init.minor = 31;
	init.max_readahead = 1 << 20;
	init.flags = FUSE_DO_READDIRPLUS | FUSE_EXPORT_SUPPORT |
		     FUSE_ASYNC_READ | FUSE_BIG_WRITES;
	send(se, FUSE_INIT, 0, &init, sizeof(init));
	return reply_error();
}

static int opendir_root(struct fuse_session *se, uint64_t *fh)
{
	struct fuse_open_in oi;
	const struct fuse_open_out *oo;

	memset(&oi, 0, sizeof(oi));
	oi.flags = O_RDONLY | O_DIRECTORY;
	send(se, FUSE_OPENDIR, FUSE_ROOT_ID, &oi, sizeof(oi));
	if (reply_error())
		return reply_error();
	oo = (void *)(reply + sizeof(struct fuse_out_header));
	*fh = oo->fh;
	return 0;
}

static uint64_t readdirplus(struct fuse_session *se, uint64_t fh)
{
	struct fuse_read_in ri;

	memset(&ri, 0, sizeof(ri));
	ri.fh = fh;
	ri.size = 4096;
	return send(se, FUSE_READDIRPLUS, FUSE_ROOT_ID, &ri, sizeof(ri));
}

static uint64_t refs_of_files(struct f4fs *f, ext2_ino_t first, ext2_ino_t n)
{
	uint64_t sum = 0;
	ext2_ino_t ino;

	f4_lock(f);
	for (ino = first; ino < first + n; ino++)
		sum += f4_nlookup(f, ino);
	f4_unlock(f);
	return sum;
}

/*
 * READDIRPLUS whose reply fails: the references the listing took must be
 * dropped again.  Then one that gets through, to show that the listing
 * did take references.
 */
static int readdirplus_lost(struct fuse_session *se, struct f4fs *f)
{
	ext2_ino_t first = EXT2_FIRST_INODE(f->fs->super);
	ext2_ino_t n = f->fs->super->s_inodes_count - first;
	uint64_t fh, lost, got;
	int ret;

	if (n > 4096)
		n = 4096;
	ret = opendir_root(se, &fh);
	if (ret) {
		fprintf(stderr, "OPENDIR: %s\n", strerror(-ret));
		return 2;
	}
	fail_unique = next_unique + 2;
	readdirplus(se, fh);
	fail_unique = 0;
	lost = refs_of_files(f, first, n);
	readdirplus(se, fh);
	got = refs_of_files(f, first, n);
	printf("references after a lost reply: %llu, after a delivered one: "
	       "%llu\n", (unsigned long long)lost, (unsigned long long)got);
	if (!got) {
		fprintf(stderr, "the listing handed over no references: "
			"nothing was tested (no files in the root?)\n");
		return 2;
	}
	return lost ? 1 : 0;
}

/* LOOKUP a name in the root; the inode number or 0. */
static ext2_ino_t lookup(struct fuse_session *se, const char *name)
{
	const struct fuse_entry_out *eo;

	send(se, FUSE_LOOKUP, FUSE_ROOT_ID, name, strlen(name) + 1);
	if (reply_error())
		return 0;
	eo = (void *)(reply + sizeof(struct fuse_out_header));
	return eo->nodeid;
}

/*
 * After DESTROY closed the file system, FORGETs (queued apart from other
 * requests, and handled by any worker) still come.
 */
static int forget_after_destroy(struct fuse_session *se, struct f4fs *f)
{
	struct {
		struct fuse_batch_forget_in b;
		struct fuse_forget_one one;
	} batch;
	struct fuse_forget_in fi;
	ext2_ino_t ino = lookup(se, "lost+found");

	if (!ino) {
		fprintf(stderr, "LOOKUP lost+found failed\n");
		return 2;
	}
	send(se, FUSE_DESTROY, 0, NULL, 0);
	if (!f->closed) {
		fprintf(stderr, "DESTROY did not close the file system\n");
		return 2;
	}
	memset(&fi, 0, sizeof(fi));
	fi.nlookup = 1;
	send(se, FUSE_FORGET, ino, &fi, sizeof(fi));
	memset(&batch, 0, sizeof(batch));
	batch.b.count = 1;
	batch.one.nodeid = ino;
	batch.one.nlookup = 1;
	send(se, FUSE_BATCH_FORGET, 0, &batch, sizeof(batch));
	printf("FORGET after DESTROY: survived\n");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct fuse_custom_io io = {
		.writev = io_writev,
		.read = io_read,
	};
	char *args_v[] = { argv[0], NULL };
	struct fuse_args args = FUSE_ARGS_INIT(1, args_v);
	char *opt_v[] = { argv[0], NULL, "/nonexistent-f4session", NULL };
	struct fuse_session *se;
	struct f4_opts opts;
	struct f4fs f;
	int ret, fd;

	if (argc == 4 && !strcmp(argv[2], "sysfs-write")) {
		ret = f4_write_sysfs_long(argv[3], 2048);
		printf("write to %s: %s\n", argv[3],
		       ret ? strerror(-ret) : "ok");
		return 0;
	}
	if (argc != 3) {
		fprintf(stderr, "usage: %s IMAGE readdirplus-lost|"
			"forget-after-destroy\n       %s - sysfs-write PATH\n",
			argv[0], argv[0]);
		return 2;
	}
	memset(&f, 0, sizeof(f));
	opt_v[1] = argv[1];
	if (f4_parse_options(3, opt_v, &opts) || f4_fs_open(&f, &opts))
		return 2;
	se = fuse_session_new(&args, &f4_ops, sizeof(f4_ops), &f);
	fuse_opt_free_args(&args);
	fd = open("/dev/null", O_RDWR);
	if (!se || fd < 0 || fuse_session_custom_io(se, &io, fd)) {
		fprintf(stderr, "cannot set up the session\n");
		return 2;
	}
	f4_ops_attach(&f, se);
	ret = do_init(se);
	if (ret) {
		fprintf(stderr, "INIT: %s\n", strerror(-ret));
		return 2;
	}
	if (!strcmp(argv[2], "readdirplus-lost"))
		ret = readdirplus_lost(se, &f);
	else if (!strcmp(argv[2], "forget-after-destroy"))
		ret = forget_after_destroy(se, &f);
	else
		ret = 2;
	fuse_session_destroy(se);
	f4_ops_attach(&f, NULL);
	if (!f.closed)
		f4_fs_close(&f);
	f4_free_options(&opts);
	return ret;
}

// SPDX-License-Identifier: GPL-2.0
/*
 * f4fuzz.c - a libFuzzer harness for the fuse4fs core.
 *
 * Each input is a (damaged) ext2/3/4 image plus a little program of
 * operations.  The harness writes the image to a private file in
 * /dev/shm, mounts it with f4_fs_open(), walks the whole tree the way
 * the kernel would (readdir, lookup, getattr, read, readlink, xattrs),
 * runs the operations (create, write, truncate, rename, unlink, xattrs,
 * fallocate, ...) and unmounts.  Errors returned by the core are expected
 * and ignored; only crashes, sanitizer reports, leaks and hangs count.
 *
 * The core is used as ops.c uses it: only inode numbers the "kernel"
 * holds a lookup reference on are passed in, every reference is
 * forgotten and every handle released before f4_fs_close().
 *
 * Input format (all integers little-endian), see doc in fuzz/README.md:
 *
 *   0  u8   flags0 (F0_*)         1  u8  flags1 (F1_*)
 *   2  u8   image size: (n + 1) * 64 KiB
 *   3  u8   salt for generated names; its low 2 bits + 1: the partition
 *   4  u16  length of the operation program, then the program itself
 *   ... chunks up to the end: u32 offset, u16 length, data
 *
 * Everything not covered by a chunk reads as zeros, which keeps inputs
 * small and makes most mutations land on metadata.  fuzz/f4pack.py packs
 * an image into this format; "f4fuzz-replay -x INPUT IMAGE" unpacks one
 * (with the harness's superblock fixups applied) for use with e2fsck,
 * debugfs or a real fuse4fs mount.
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/ioctl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <et/com_err.h>

#include "fuse4fs/fuse4fs.h"

/* flags0 */
#define F0_RO		0x01	/* mount read-only */
#define F0_NOCSUM	0x02	/* drop metadata_csum: mutations survive */
#define F0_NORECOVERY	0x04
#define F0_ERRORS_SHIFT	3	/* 2 bits: enum f4_errors_behaviour */
#define F0_ACL		0x20
#define F0_SMALLCACHE	0x40	/* a tiny block cache: eviction paths */
#define F0_USER		0x80	/* an unprivileged caller, permission checks */
/* flags1 */
#define F1_SYNC		0x01
#define F1_DIRSYNC	0x02
#define F1_NOATIME	0x04
#define F1_STRICTATIME	0x08
#define F1_MINIXDF	0x10
#define F1_ROOTCHECKS	0x20	/* root, but without fakeroot */
#define F1_PLUS		0x40	/* walk with readdirplus-style references */
#define F1_PARTITION	0x80	/* a disk image: mount partition 1-4 */

#define HDR_SIZE	6
#define IMG_UNIT	(64 * 1024)

/* Bounds that keep one input at a few tens of milliseconds. */
#define MAX_NODES	1024	/* more than the walk and the ops add */
#define MAX_DIRS	64	/* directories the walk opens */
#define MAX_DEPTH	8
#define MAX_WALK_ENTRIES 600	/* names looked up by the walk */
#define MAX_READ_TOTAL	(512 * 1024)
#define MAX_OPS		96
#define MAX_BULK	768	/* links + unlinks by the bulk ops */
#define MAX_FILES	8	/* open file handles during the program */
#define MAX_OPEN_DIRS	4
#define TIME_BUDGET_MS	2000	/* a safety net, not the normal bound */

struct node {
	ext2_ino_t ino;
	ext2_ino_t parent;
	mode_t mode;
	char name[F4_NAME_MAX + 1];
};

struct fz {
	struct f4fs f;
	struct f4_opts opts;
	struct f4_cred cred;
	struct node nodes[MAX_NODES];
	int nnodes;
	struct f4_file *files[MAX_FILES];
	struct f4_dir *dirs[MAX_OPEN_DIRS];
	const uint8_t *prog;		/* the operation program */
	size_t prog_len, pc;
	uint8_t salt;
	size_t read_total;
	unsigned int bulk;		/* names the bulk ops made or removed */
	struct timespec start;
	char *buf;			/* I/O buffer, BUF_SIZE bytes */
};

#define BUF_SIZE	(256 * 1024)

static char img_path[64];
static char *io_buf;

/* ---- the image ------------------------------------------------------- */

static uint16_t get16(const uint8_t *p)
{
	return p[0] | (p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return p[0] | (p[1] << 8) | (p[2] << 16) | ((uint32_t)p[3] << 24);
}

/*
 * Adjust the primary superblock so that the run is quick and meaningful:
 * no multiple-mount protection (libext2fs would sleep for seconds), and
 * optionally no metadata checksums, so that mutated metadata is parsed
 * instead of rejected at the first checksum.  A superblock checksum that
 * was right stays right.
 */
static void fix_super(int fd, unsigned int flags0, uint64_t base)
{
	struct ext2_super_block sb;
	uint32_t crc;
	int csum_ok = 0, changed = 0;

	if (pread(fd, &sb, sizeof(sb), base + 1024) != sizeof(sb))
		return;
	if (sb.s_magic != EXT2_SUPER_MAGIC)
		return;
	if (sb.s_feature_ro_compat & EXT4_FEATURE_RO_COMPAT_METADATA_CSUM) {
		crc = ext2fs_crc32c_le(~0U, (unsigned char *)&sb,
				       offsetof(struct ext2_super_block,
						s_checksum));
		csum_ok = crc == sb.s_checksum;
	}
	if (sb.s_feature_incompat & EXT4_FEATURE_INCOMPAT_MMP) {
		sb.s_feature_incompat &= ~EXT4_FEATURE_INCOMPAT_MMP;
		changed = 1;
	}
	if ((flags0 & F0_NOCSUM) &&
	    (sb.s_feature_ro_compat & EXT4_FEATURE_RO_COMPAT_METADATA_CSUM)) {
		sb.s_feature_ro_compat &= ~EXT4_FEATURE_RO_COMPAT_METADATA_CSUM;
		/* what tune2fs -O ^metadata_csum leaves: plain uninit_bg */
		sb.s_feature_ro_compat |= EXT4_FEATURE_RO_COMPAT_GDT_CSUM;
		sb.s_feature_incompat &= ~EXT4_FEATURE_INCOMPAT_CSUM_SEED;
		changed = 1;
	}
	if (!changed)
		return;
	if (csum_ok &&
	    (sb.s_feature_ro_compat & EXT4_FEATURE_RO_COMPAT_METADATA_CSUM))
		sb.s_checksum = ext2fs_crc32c_le(~0U, (unsigned char *)&sb,
				offsetof(struct ext2_super_block, s_checksum));
	if (pwrite(fd, &sb, sizeof(sb), base + 1024) != sizeof(sb))
		return;
}

/* Which partition a whole-disk input (F1_PARTITION) mounts. */
static int partition_number(const uint8_t *data)
{
	return 1 + (data[3] & 3);
}

/* Write the image described by the input to path; 0 or -1. */
static int write_image(const char *path, const uint8_t *data, size_t size)
{
	size_t pos, img_size, prog_len;
	unsigned long long base, psize;
	char why[200];
	int fd;

	if (size < HDR_SIZE)
		return -1;
	img_size = (size_t)(data[2] + 1) * IMG_UNIT;
	prog_len = get16(data + 4);
	pos = HDR_SIZE + prog_len;
	if (pos > size)
		pos = size;

	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		perror(path);
		abort();
	}
	if (ftruncate(fd, img_size)) {
		perror(path);
		abort();
	}
	while (pos + 6 <= size) {
		size_t off = get32(data + pos), len = get16(data + pos + 4);

		pos += 6;
		if (len > size - pos)
			len = size - pos;
		if (off < img_size) {
			size_t n = len < img_size - off ? len : img_size - off;

			if (pwrite(fd, data + pos, n, off) != (ssize_t)n) {
				perror(path);
				abort();
			}
		}
		pos += len;
	}
	close(fd);
	/*
	 * The partition table parser reads the image first, whatever the
	 * flags say: MBR and GPT parsing of untrusted images is fuzzed too.
	 */
	base = 0;
	if (f4_find_partition(path, partition_number(data), &base, &psize,
			      why, sizeof(why)) || !(data[1] & F1_PARTITION))
		base = 0;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		perror(path);
		abort();
	}
	fix_super(fd, data[0], base);
	close(fd);
	return 0;
}

/* ---- bookkeeping ------------------------------------------------------- */

static long elapsed_ms(const struct fz *z)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - z->start.tv_sec) * 1000 +
	       (now.tv_nsec - z->start.tv_nsec) / 1000000;
}

static int out_of_time(const struct fz *z)
{
	return elapsed_ms(z) > TIME_BUDGET_MS;
}

/*
 * Every node but the root (index 0) holds one lookup reference on its
 * inode, as a kernel dentry would; forgetting the node gives it back.
 * When the table is full the reference goes back at once.
 */
static int add_node(struct fz *z, ext2_ino_t parent, const char *name,
		    const struct f4_entry *e)
{
	struct node *n;

	if (z->nnodes >= MAX_NODES) {
		if (z->nnodes)
			f4_forget(&z->f, e->ino, 1);
		return -1;
	}
	n = &z->nodes[z->nnodes];
	n->ino = e->ino;
	n->parent = parent;
	n->mode = e->attr.st_mode;
	snprintf(n->name, sizeof(n->name), "%s", name);
	return z->nnodes++;
}

/* Do we (the kernel) still know ino, so that it may be passed in? */
static int have_ino(const struct fz *z, ext2_ino_t ino)
{
	int i;

	for (i = 0; i < z->nnodes; i++)
		if (z->nodes[i].ino == ino)
			return 1;
	return 0;
}

static int is_open(const struct fz *z, ext2_ino_t ino)
{
	int i;

	for (i = 0; i < MAX_FILES; i++)
		if (z->files[i] && z->files[i]->inode->ino == ino)
			return 1;
	for (i = 0; i < MAX_OPEN_DIRS; i++)
		if (z->dirs[i] && z->dirs[i]->inode->ino == ino)
			return 1;
	return 0;
}

/*
 * FORGET for one node.  An open file pins the kernel's inode, so the
 * last reference of an open inode is never dropped.
 */
static void forget_node(struct fz *z, int k)
{
	ext2_ino_t ino = z->nodes[k].ino;
	int i, others = 0;

	if (k == 0)
		return;
	for (i = 0; i < z->nnodes; i++)
		if (i != k && z->nodes[i].ino == ino)
			others++;
	if (!others && is_open(z, ino))
		return;
	f4_forget(&z->f, ino, 1);
	z->nodes[k] = z->nodes[--z->nnodes];
}

/* ---- the program ------------------------------------------------------- */

/*
 * F4FUZZ_TRACE=1 prints every core call the program makes and what it
 * returned: the quickest way to see what a crashing input does.
 */
static int tracing;

static long trace_call(const char *what, long ret)
{
	char text[200];
	size_t n = 0;

	if (!tracing)
		return ret;
	for (; *what && n < sizeof(text) - 1; what++) {
		if (*what == '\n' || *what == '\t' || *what == ' ') {
			if (n && text[n - 1] == ' ')
				continue;
			text[n++] = ' ';
		} else {
			text[n++] = *what;
		}
	}
	text[n] = 0;
	fprintf(stderr, "f4fuzz: %s = %ld%s%s\n", text, ret,
		ret < 0 && ret > -4096 ? " " : "",
		ret < 0 && ret > -4096 ? strerror((int)-ret) : "");
	return ret;
}

#define CALL(x)	trace_call(#x, (long)(x))

static unsigned int next8(struct fz *z)
{
	if (z->pc >= z->prog_len)
		return 0;
	return z->prog[z->pc++];
}

static unsigned int next16(struct fz *z)
{
	return next8(z) | (next8(z) << 8);
}

static struct node *pick_node(struct fz *z)
{
	return &z->nodes[next8(z) % z->nnodes];
}

static struct node *pick_dir(struct fz *z)
{
	unsigned int k = next8(z);
	int i, n = z->nnodes;

	for (i = 0; i < n; i++) {
		struct node *nd = &z->nodes[(k + i) % n];

		if (S_ISDIR(nd->mode))
			return nd;
	}
	return &z->nodes[0];
}

static struct node *pick_reg(struct fz *z)
{
	unsigned int k = next8(z);
	int i, n = z->nnodes;

	for (i = 0; i < n; i++) {
		struct node *nd = &z->nodes[(k + i) % n];

		if (S_ISREG(nd->mode))
			return nd;
	}
	return NULL;
}

/* A name for something new: mostly short ones that collide, some long. */
static void make_name(struct fz *z, char *name)
{
	unsigned int k = next8(z);

	if (k < 160) {
		snprintf(name, F4_NAME_MAX + 1, "n%u", (k + z->salt) % 40);
	} else if (k < 200) {
		struct node *nd = pick_node(z);

		snprintf(name, F4_NAME_MAX + 1, "%s",
			 nd->name[0] ? nd->name : "x");
	} else {
		size_t len = 1 + (k - 200) * 254 / 55, i;

		for (i = 0; i < len; i++)
			name[i] = 'a' + (i * 7 + k + z->salt) % 26;
		name[len] = 0;
	}
}

/* Names for the bulk ops: len bytes, unique per (tag, i). */
static void bulk_name(char *name, unsigned int len, unsigned int tag,
		      unsigned int i)
{
	char num[16];
	unsigned int n, j;

	n = snprintf(num, sizeof(num), "%u-%u", tag % 4, i);
	if (len < n)
		len = n;
	for (j = 0; j < len - n; j++)
		name[j] = 'A' + (j + i) % 26;
	memcpy(name + len - n, num, n);
	name[len] = 0;
}

static const uint64_t offsets[] = {
	0, 1, 59, 60, 100, 511, 4095, 4096, 4097, 8191, 12 * 1024,
	12 * 4096, 13 * 4096 - 1, (12 + 256) * 1024ULL,
	(12 + 256 + 65536) * 1024ULL, (12 + 1024) * 4096ULL, 1 << 20,
	(1ULL << 32) - 1, 1ULL << 32, (1ULL << 31) - 4096,
	(1ULL << 40) - 4096, (16ULL << 40) - 1, 1ULL << 62,
};

static uint64_t pick_offset(struct fz *z, uint64_t size)
{
	unsigned int k = next8(z);

	if (k < 96)
		return offsets[k % (sizeof(offsets) / sizeof(offsets[0]))];
	if (k < 128)
		return size;
	if (k < 160)
		return size ? size - 1 - (next16(z) % size) : 0;
	return (uint64_t)next16(z) * ((k & 7) ? 512 : 4093);
}

static const size_t sizes[] = {
	1, 2, 59, 60, 61, 100, 511, 512, 1024, 4095, 4096, 4097, 8192,
	12288, 65536, BUF_SIZE,
};

static size_t pick_size(struct fz *z)
{
	unsigned int k = next8(z);

	if (k < 200)
		return sizes[k % (sizeof(sizes) / sizeof(sizes[0]))];
	return 1 + next16(z) % BUF_SIZE;
}

static void fill_buf(struct fz *z, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		z->buf[i] = (char)(i * 31 + z->salt + (i >> 9));
}

static struct f4_file **free_file_slot(struct fz *z)
{
	int i;

	for (i = 0; i < MAX_FILES; i++)
		if (!z->files[i])
			return &z->files[i];
	/* full: release one, as a process closing a file would */
	i = next8(z) % MAX_FILES;
	f4_release(&z->f, z->files[i]);
	z->files[i] = NULL;
	return &z->files[i];
}

static struct f4_file *pick_file(struct fz *z)
{
	unsigned int k = next8(z);
	int i;

	for (i = 0; i < MAX_FILES; i++) {
		struct f4_file *fh = z->files[(k + i) % MAX_FILES];

		if (fh)
			return fh;
	}
	return NULL;
}

static const int open_flags[] = {
	O_RDONLY, O_WRONLY, O_RDWR, O_RDWR | O_TRUNC, O_WRONLY | O_APPEND,
	O_RDWR | O_SYNC, O_RDONLY | O_NOATIME, O_WRONLY | O_TRUNC | O_APPEND,
};

static const char *const xattr_names[] = {
	"user.a", "user.b", "user.long_attribute_name_for_the_fuzzer",
	"trusted.t", "security.selinux", "security.capability",
	"system.posix_acl_access", "system.posix_acl_default",
	"system.data", "user.", "bogus.x", "user.c",
};

/* A POSIX ACL xattr value: header plus entries (tag, perm, id). */
static size_t make_acl(struct fz *z, char *buf)
{
	static const uint16_t tags[] = { 1, 2, 4, 8, 16, 32, 0, 0x40 };
	unsigned int n = next8(z) % 8, i;
	uint8_t *p = (uint8_t *)buf;

	p[0] = 2; p[1] = p[2] = p[3] = 0;		/* version 2 */
	for (i = 0; i < n; i++) {
		uint8_t *e = p + 4 + i * 8;
		uint16_t tag = tags[next8(z) % 8];
		uint32_t id = next8(z) % 3 ? 1000 : 0xffffffff;

		e[0] = tag; e[1] = tag >> 8;
		e[2] = next8(z) & 7; e[3] = 0;
		e[4] = id; e[5] = id >> 8; e[6] = id >> 16; e[7] = id >> 24;
	}
	return 4 + n * 8;
}

static void op_read(struct fz *z, struct f4_file *fh, uint64_t size)
{
	size_t len = pick_size(z);
	uint64_t off = pick_offset(z, size);

	if (off > INT64_MAX - len)
		return;
	f4_read(&z->f, fh, z->buf, len, (off_t)off);
}

/*
 * Only what the kernel could send: ops on inodes it knows, open() only
 * on regular files, readlink only on symlinks, names it would pass,
 * sizes and offsets within what the VFS lets through.
 */
static int parent_known(struct fz *z, const struct node *n)
{
	return n->name[0] && have_ino(z, n->parent);
}

static void run_op(struct fz *z)
{
	struct f4fs *f = &z->f;
	struct f4_cred *cred = &z->cred;
	char name[F4_NAME_MAX + 1], name2[F4_SYMLINK_MAX + 2];
	struct f4_entry e;
	struct stat st;
	struct node *a, *b;
	unsigned int op = next8(z) % 30;
	int ret;

	switch (op) {
	case 0: {		/* create, write, keep open */
		struct f4_file *fh = NULL, **slot;
		unsigned int mode = 0100644 | (next8(z) & 07);
		int fl = open_flags[next8(z) % 8] | O_CREAT;
		ext2_ino_t dir;
		size_t len;
		uint64_t off;

		dir = pick_dir(z)->ino;
		make_name(z, name);
		len = pick_size(z);
		off = pick_offset(z, 0);
		slot = free_file_slot(z);
		ret = CALL(f4_create(f, cred, dir, name, mode, fl, &e, &fh));
		if (ret)
			break;
		*slot = fh;
		add_node(z, dir, name, &e);
		if ((fl & O_ACCMODE) == O_RDONLY || off > INT64_MAX - len)
			break;
		fill_buf(z, len);
		CALL(f4_write(f, cred, fh, z->buf, len, (off_t)off));
		break;
	}
	case 1: {		/* open an existing file */
		struct f4_file *fh = NULL, **slot;
		int fl = open_flags[next8(z) % 8];

		a = pick_reg(z);
		if (!a)
			break;
		slot = free_file_slot(z);
		if (CALL(f4_open(f, cred, a->ino, fl, &fh)) == 0)
			*slot = fh;
		break;
	}
	case 2: {		/* write to an open file */
		struct f4_file *fh = pick_file(z);
		size_t len = pick_size(z);
		uint64_t off;

		if (!fh || (fh->flags & O_ACCMODE) == O_RDONLY)
			break;
		if (f4_getattr(f, fh->inode->ino, &st))
			st.st_size = 0;
		off = pick_offset(z, st.st_size);
		if (off > INT64_MAX - len)
			break;
		fill_buf(z, len);
		CALL(f4_write(f, cred, fh, z->buf, len, (off_t)off));
		break;
	}
	case 3: {		/* read from an open file */
		struct f4_file *fh = pick_file(z);

		if (!fh || (fh->flags & O_ACCMODE) == O_WRONLY)
			break;
		if (f4_getattr(f, fh->inode->ino, &st))
			st.st_size = 0;
		op_read(z, fh, st.st_size);
		break;
	}
	case 4: {		/* close a file */
		unsigned int i = next8(z) % MAX_FILES;

		CALL(f4_release(f, z->files[i]));
		z->files[i] = NULL;
		break;
	}
	case 5: {		/* truncate */
		uint64_t size;

		a = pick_reg(z);
		if (!a)
			break;
		if (f4_getattr(f, a->ino, &st))
			st.st_size = 0;
		size = pick_offset(z, st.st_size);
		memset(&st, 0, sizeof(st));
		st.st_size = (off_t)(size & INT64_MAX);
		CALL(f4_setattr(f, cred, a->ino, &st, F4_SET_SIZE, NULL, &st));
		break;
	}
	case 6: {		/* mkdir */
		unsigned int mode = 0755 | (next8(z) << 9 & 07000);

		a = pick_dir(z);
		make_name(z, name);
		if (CALL(f4_mkdir(f, cred, a->ino, name, mode, &e)) == 0)
			add_node(z, a->ino, name, &e);
		break;
	}
	case 7:			/* unlink */
		a = pick_node(z);
		if (parent_known(z, a))
			CALL(f4_unlink(f, cred, a->parent, a->name));
		break;
	case 8:			/* rmdir */
		a = pick_node(z);
		if (parent_known(z, a))
			CALL(f4_rmdir(f, cred, a->parent, a->name));
		break;
	case 9: {		/* rename */
		static const unsigned int rflags[] = {
			0, 0, 0, F4_RENAME_NOREPLACE, F4_RENAME_EXCHANGE,
			F4_RENAME_WHITEOUT,
		};
		unsigned int fl = rflags[next8(z) % 6];

		a = pick_node(z);
		b = pick_dir(z);
		make_name(z, name);
		if (!parent_known(z, a))
			break;
		ret = CALL(f4_rename(f, cred, a->parent, a->name, b->ino, name, fl));
		if (!ret && !(fl & F4_RENAME_EXCHANGE)) {
			a->parent = b->ino;
			snprintf(a->name, sizeof(a->name), "%s", name);
		}
		break;
	}
	case 10:		/* link: the VFS never links directories */
		a = pick_node(z);
		b = pick_dir(z);
		make_name(z, name);
		if (S_ISDIR(a->mode))
			break;
		if (CALL(f4_link(f, cred, a->ino, b->ino, name, &e)) == 0)
			add_node(z, b->ino, name, &e);
		break;
	case 11: {		/* symlink */
		size_t len = next8(z) & 1 ? next8(z) % 80 + 1
					  : next16(z) % F4_SYMLINK_MAX + 1;
		size_t i;

		for (i = 0; i < len; i++)
			name2[i] = 'a' + (i + z->salt) % 26;
		name2[len] = 0;
		a = pick_dir(z);
		make_name(z, name);
		if (CALL(f4_symlink(f, cred, name2, a->ino, name, &e)) == 0)
			add_node(z, a->ino, name, &e);
		break;
	}
	case 12: {		/* mknod */
		static const mode_t kinds[] = {
			S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK, S_IFREG,
			S_IFREG | S_ISUID | S_ISGID,
		};
		mode_t mode = kinds[next8(z) % 6] | 0644;
		dev_t dev = makedev(next8(z), next16(z));

		a = pick_dir(z);
		make_name(z, name);
		if (CALL(f4_mknod(f, cred, a->ino, name, mode, dev, &e)) == 0)
			add_node(z, a->ino, name, &e);
		break;
	}
	case 13: {		/* setxattr */
		static const size_t xs[] = {
			0, 1, 4, 40, 100, 500, 1000, 3000, 4000, 5000,
			65535, 65536,
		};
		const char *xn = xattr_names[next8(z) % 12];
		unsigned int k = next8(z);
		size_t len;

		a = pick_node(z);
		if (strncmp(xn, "system.posix_acl", 16) == 0 && k < 200) {
			len = make_acl(z, z->buf);
		} else {
			len = xs[k % 12];
			fill_buf(z, len);
		}
		CALL(f4_setxattr(f, cred, a->ino, xn, z->buf, len, next8(z) % 3));
		break;
	}
	case 14:		/* removexattr */
		a = pick_node(z);
		CALL(f4_removexattr(f, cred, a->ino, xattr_names[next8(z) % 12]));
		break;
	case 15: {		/* fallocate */
		static const int modes[] = {
			0, FALLOC_FL_KEEP_SIZE,
			FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			FALLOC_FL_ZERO_RANGE,
			FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
			FALLOC_FL_COLLAPSE_RANGE,
		};
		uint64_t off, len;
		int mode;

		a = pick_reg(z);
		if (!a)
			break;
		if (f4_getattr(f, a->ino, &st))
			st.st_size = 0;
		mode = modes[next8(z) % 6];
		off = pick_offset(z, st.st_size);
		len = pick_offset(z, 0) + 1;
		/* vfs_fallocate: no overflow of off + len */
		if (off > INT64_MAX || len > INT64_MAX - off)
			break;
		CALL(f4_fallocate(f, cred, a->ino, mode, (off_t)off, (off_t)len));
		break;
	}
	case 16: {		/* setattr: mode, owner, times */
		int which = next8(z);
		int set = 0;

		a = pick_node(z);
		memset(&st, 0, sizeof(st));
		st.st_mode = next16(z) & 07777;
		st.st_uid = next8(z) & 1 ? 0 : 1000 + next8(z);
		st.st_gid = next8(z) & 1 ? 0 : 1000 + next8(z);
		st.st_atim.tv_sec = (time_t)(int32_t)(next16(z) << 16);
		st.st_atim.tv_nsec = next16(z) * 15259 % 1000000000;
		st.st_mtim.tv_sec = (time_t)1 << (next8(z) % 40);
		st.st_ctim.tv_sec = (time_t)-1 - next8(z);
		if (which & 1) set |= F4_SET_MODE;
		if (which & 2) set |= F4_SET_UID;
		if (which & 4) set |= F4_SET_GID;
		if (which & 8) set |= F4_SET_ATIME;
		if (which & 16) set |= F4_SET_MTIME;
		if (which & 32) set |= F4_SET_ATIME_NOW | F4_SET_MTIME_NOW;
		if (which & 64) set |= F4_SET_KILL_SUIDGID;
		if (which & 128) set |= F4_SET_CTIME;
		CALL(f4_setattr(f, cred, a->ino, &st, set, NULL, &st));
		break;
	}
	case 17: {		/* O_TMPFILE */
		struct f4_file *fh = NULL, **slot;

		a = pick_dir(z);
		slot = free_file_slot(z);
		if (CALL(f4_tmpfile(f, cred, a->ino, 0100600, O_RDWR, &e, &fh)))
			break;
		*slot = fh;
		e.attr.st_mode = S_IFREG | 0600;
		add_node(z, a->ino, "", &e);
		break;
	}
	case 18: {		/* opendir and read it, keep it open */
		unsigned int i = next8(z) % MAX_OPEN_DIRS;
		struct f4_dir *d = NULL;

		a = pick_dir(z);
		if (z->dirs[i]) {
			CALL(f4_dir_load(f, z->dirs[i]));
			break;
		}
		if (CALL(f4_opendir(f, cred, a->ino, &d)) == 0) {
			z->dirs[i] = d;
			CALL(f4_dir_load(f, d));
		}
		break;
	}
	case 19: {		/* closedir */
		unsigned int i = next8(z) % MAX_OPEN_DIRS;

		f4_releasedir(f, z->dirs[i]);
		z->dirs[i] = NULL;
		break;
	}
	case 20:		/* forget: the kernel drops a dentry */
		forget_node(z, next8(z) % z->nnodes);
		break;
	case 21:		/* lookup a name, maybe a new one */
		a = pick_dir(z);
		make_name(z, name);
		if (CALL(f4_lookup(f, cred, a->ino, name, &e)) == 0)
			add_node(z, a->ino, name, &e);
		break;
	case 22: {		/* ioctl, with the sizes the kernel passes */
		static const unsigned int cmds[] = {
			FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_IOC_GETVERSION,
			FS_IOC_SETVERSION, FS_IOC_FSGETXATTR,
			FS_IOC_FSSETXATTR, FITRIM, FS_IOC32_GETFLAGS,
			FS_IOC32_SETFLAGS,
		};
		static const uint32_t flagvals[] = {
			0, FS_APPEND_FL, FS_IMMUTABLE_FL, FS_NOATIME_FL,
			FS_SYNC_FL, FS_DIRSYNC_FL, FS_EXTENT_FL, FS_INDEX_FL,
			FS_NODUMP_FL, FS_PROJINHERIT_FL, FS_CASEFOLD_FL,
			0xffffffff,
		};
		union {
			uint64_t v;
			struct fsxattr x;
			struct fstrim_range r;
		} in, out;
		unsigned int cmd = cmds[next8(z) % 9];
		size_t in_size = _IOC_DIR(cmd) & _IOC_WRITE ? _IOC_SIZE(cmd) : 0;
		size_t out_size = _IOC_DIR(cmd) & _IOC_READ ? _IOC_SIZE(cmd) : 0;

		a = pick_node(z);
		memset(&in, 0, sizeof(in));
		if (cmd == FITRIM) {
			in.r.start = next16(z) * 1024ULL;
			in.r.len = next8(z) & 1 ? UINT64_MAX
					       : next16(z) * 4096ULL;
			in.r.minlen = next8(z) * 1024ULL;
		} else if (cmd == FS_IOC_FSSETXATTR) {
			in.x.fsx_xflags = next16(z) | (next8(z) << 24);
			in.x.fsx_projid = next8(z) & 1 ? 0 : next8(z);
			in.x.fsx_extsize = next16(z);
		} else if (cmd == FS_IOC_SETVERSION) {
			in.v = next16(z) << 16 | next16(z);
		} else {
			uint32_t v = flagvals[next8(z) % 12];

			if (next8(z) & 1)
				v |= flagvals[next8(z) % 12];
			in.v = v;
		}
		CALL(f4_ioctl(f, cred, a->ino, cmd, &in, in_size, &out, &out_size));
		break;
	}
	case 23: {		/* lseek data/hole, bmap */
		uint64_t idx = next16(z), off;
		int whence = next8(z) & 1 ? SEEK_DATA : SEEK_HOLE;

		a = pick_reg(z);
		if (!a)
			break;
		if (f4_getattr(f, a->ino, &st))
			st.st_size = 0;
		off = pick_offset(z, st.st_size);
		CALL(f4_lseek(f, a->ino, (off_t)(off & INT64_MAX), whence));
		CALL(f4_bmap(f, a->ino, next8(z) & 1 ? 512 : 4096, &idx));
		break;
	}
	case 24:		/* fsync, flush */
		a = pick_node(z);
		CALL(f4_fsync(f, a->ino, next8(z) & 1));
		if (next8(z) & 1)
			CALL(f4_fs_flush(f));
		break;
	case 25: {		/* statfs, access, getxattr, listxattr */
		struct statvfs sv;
		char list[512];
		const char *xn;

		a = pick_node(z);
		CALL(f4_statfs(f, &sv));
		CALL(f4_access(f, cred, a->ino, next8(z) & 7));
		xn = xattr_names[next8(z) % 12];
		CALL(f4_getxattr(f, cred, a->ino, xn, list,
			    next8(z) & 1 ? sizeof(list) : 3));
		CALL(f4_listxattr(f, cred, a->ino, list,
			     next8(z) & 1 ? sizeof(list) : 5));
		break;
	}
	case 26:		/* readlink */
		a = pick_node(z);
		if (S_ISLNK(a->mode))
			CALL(f4_readlink(f, a->ino, name2, sizeof(name2)));
		break;
	case 28: {		/* many links into one directory: it grows */
		unsigned int n = next8(z) % 64 + 1, len = next8(z) % 255 + 1;
		unsigned int i, tag = next8(z);

		a = pick_node(z);
		b = pick_dir(z);
		if (S_ISDIR(a->mode))
			break;
		for (i = 0; i < n && z->bulk < MAX_BULK; i++, z->bulk++) {
			bulk_name(name, len, tag, i);
			if (CALL(f4_link(f, cred, a->ino, b->ino, name, &e)) == 0)
				CALL(f4_forget(f, e.ino, 1));
		}
		break;
	}
	case 29: {		/* and shrinks again */
		unsigned int n = next8(z) % 64 + 1, len = next8(z) % 255 + 1;
		unsigned int i, tag = next8(z), step = next8(z) % 3 + 1;

		b = pick_dir(z);
		for (i = 0; i < n && z->bulk < MAX_BULK; i += step, z->bulk++) {
			bulk_name(name, len, tag, i);
			CALL(f4_unlink(f, cred, b->ino, name));
		}
		break;
	}
	case 27:		/* create with O_EXCL over an existing name */
		a = pick_node(z);
		if (parent_known(z, a)) {
			struct f4_file *fh = NULL;
			ext2_ino_t dir = a->parent;

			snprintf(name, sizeof(name), "%s", a->name);
			if (CALL(f4_create(f, cred, dir, name, 0100644,
				      O_RDWR | O_CREAT | O_EXCL, &e,
				      &fh)) == 0) {
				CALL(f4_release(f, fh));
				add_node(z, dir, name, &e);
			}
		}
		break;
	}
}

/* ---- the walk ---------------------------------------------------------- */

static void check_xattrs(struct fz *z, ext2_ino_t ino)
{
	struct f4fs *f = &z->f;
	char list[4096], *p, *value = z->buf;
	ssize_t len, vlen;

	len = f4_listxattr(f, &z->cred, ino, NULL, 0);
	if (len <= 0)
		return;
	len = f4_listxattr(f, &z->cred, ino, list, sizeof(list));
	if (len <= 0 || len > (ssize_t)sizeof(list))
		return;
	list[len - 1] = 0;
	for (p = list; p < list + len; p += strlen(p) + 1) {
		vlen = f4_getxattr(f, &z->cred, ino, p, NULL, 0);
		if (vlen < 0)
			continue;
		f4_getxattr(f, &z->cred, ino, p, value, BUF_SIZE);
		if (vlen > 0)
			f4_getxattr(f, &z->cred, ino, p, value, vlen - 1);
	}
}

static void read_file(struct fz *z, const struct node *n, uint64_t size)
{
	struct f4fs *f = &z->f;
	struct f4_file *fh;
	size_t len;
	ssize_t got;

	if (z->read_total >= MAX_READ_TOTAL)
		return;
	if (f4_open(f, &z->cred, n->ino, O_RDONLY, &fh))
		return;
	len = size < 65536 ? size + 1 : 65536;
	got = f4_read(f, fh, z->buf, len, 0);
	z->read_total += len;
	if (size > 65536 && got >= 0) {
		/* the tail, and one block in the middle */
		f4_read(f, fh, z->buf, 8192, (off_t)(size - 4096));
		f4_read(f, fh, z->buf, 4096, (off_t)(size / 2));
		z->read_total += 12288;
	}
	f4_release(f, fh);
}

static void visit(struct fz *z, int idx)
{
	struct f4fs *f = &z->f;
	struct node *n = &z->nodes[idx];
	char target[F4_SYMLINK_MAX + 2];
	struct stat st;

	if (f4_getattr(f, n->ino, &st))
		return;
	n->mode = st.st_mode;
	if (S_ISREG(st.st_mode))
		read_file(z, n, st.st_size);
	else if (S_ISLNK(st.st_mode))
		f4_readlink(f, n->ino, target, sizeof(target));
	check_xattrs(z, n->ino);
}

static int is_dot(const char *name)
{
	return name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]));
}

static void walk(struct fz *z, int plus)
{
	struct f4fs *f = &z->f;
	int depth[MAX_NODES];
	int next = 0, dirs = 0, entries = 0;

	depth[0] = 0;
	visit(z, 0);
	while (next < z->nnodes && dirs < MAX_DIRS &&
	       entries < MAX_WALK_ENTRIES && !out_of_time(z)) {
		int idx = next++;
		struct node *dn = &z->nodes[idx];
		struct f4_dir *d = NULL;
		size_t i;

		if (!S_ISDIR(dn->mode) || depth[idx] >= MAX_DEPTH)
			continue;
		if (f4_opendir(f, &z->cred, dn->ino, &d))
			continue;
		dirs++;
		if (f4_dir_load(f, d) == 0) {
			for (i = 0; i < d->nents &&
			     entries < MAX_WALK_ENTRIES; i++) {
				struct f4_dirent *de = &d->ents[i];
				const char *name = d->names + de->name_off;
				ext2_ino_t dir_ino = dn->ino;
				struct f4_entry e;
				int ret, k;

				if (!de->ino || is_dot(name) || !name[0] ||
				    strchr(name, '/'))
					continue;
				entries++;
				if (plus) {
					/* what readdirplus does */
					ret = f4_fill_entry(f, de->ino, &e);
					if (!ret)
						ret = f4_lookup_ref(f, de->ino);
				} else {
					ret = f4_lookup(f, &z->cred, dir_ino,
							name, &e);
				}
				if (ret)
					continue;
				k = add_node(z, dir_ino, name, &e);
				if (k < 0)
					continue;
				depth[k] = depth[idx] + 1;
				visit(z, k);
				/* nodes[] may not move, but dn is still valid */
			}
		}
		f4_releasedir(f, d);
	}
}

/* ---- one input ----------------------------------------------------------- */

static void setup_opts(struct fz *z, const uint8_t *data)
{
	unsigned int f0 = data[0], f1 = data[1];
	struct f4_opts *o = &z->opts;

	memset(o, 0, sizeof(*o));
	o->device = img_path;
	o->mountpoint = "/";
	o->progname = "f4fuzz";
	o->fakeroot = !(f0 & F0_USER) && !(f1 & F1_ROOTCHECKS);
	o->readonly = !!(f0 & F0_RO);
	o->norecovery = !!(f0 & F0_NORECOVERY);
	o->errors = (f0 >> F0_ERRORS_SHIFT) & 3;
	o->acl = !!(f0 & F0_ACL);
	o->cache_size = f0 & F0_SMALLCACHE ? 16 * 1024 : 0;
	o->sync = !!(f1 & F1_SYNC);
	o->dirsync = !!(f1 & F1_DIRSYNC);
	o->noatime = !!(f1 & F1_NOATIME);
	o->strictatime = !!(f1 & F1_STRICTATIME) && !o->noatime;
	o->minixdf = !!(f1 & F1_MINIXDF);
	o->partition = f1 & F1_PARTITION ? partition_number(data) : 0;
	o->auto_unmount = 1;
	o->max_threads = 4;
	o->commit_interval = F4_DEFAULT_COMMIT;

	memset(&z->cred, 0, sizeof(z->cred));
	if (f0 & F0_USER) {
		z->cred.uid = 1000;
		z->cred.gid = 1000;
		z->cred.ngroups = 1;
		z->cred.groups[0] = 100;
	}
	z->cred.pid = 1;
	z->cred.umask = 022;
}

static void teardown(struct fz *z)
{
	struct f4fs *f = &z->f;
	int i;

	for (i = 0; i < MAX_OPEN_DIRS; i++)
		f4_releasedir(f, z->dirs[i]);
	for (i = 0; i < MAX_FILES; i++)
		f4_release(f, z->files[i]);
	for (i = 1; i < z->nnodes; i++)
		f4_forget(f, z->nodes[i].ino, 1);
	z->nnodes = 0;
	f4_fs_close(f);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->flusher_cond);
}

static void run_one(const uint8_t *data, size_t size)
{
	struct fz *z;
	struct f4_entry root;
	size_t prog_len;
	int nops;

	if (size < HDR_SIZE || write_image(img_path, data, size))
		return;
	z = calloc(1, sizeof(*z));
	if (!z)
		abort();
	z->buf = io_buf;
	clock_gettime(CLOCK_MONOTONIC, &z->start);
	setup_opts(z, data);
	prog_len = get16(data + 4);
	z->prog = data + HDR_SIZE;
	z->prog_len = prog_len < size - HDR_SIZE ? prog_len : size - HDR_SIZE;
	z->salt = data[3];

	if (f4_fs_open(&z->f, &z->opts)) {
		pthread_mutex_destroy(&z->f.lock);
		pthread_cond_destroy(&z->f.flusher_cond);
		free(z);
		return;
	}

	/* The root: the kernel looks it up implicitly, without a ref. */
	memset(&root, 0, sizeof(root));
	root.ino = F4_ROOT_INO;
	root.attr.st_mode = S_IFDIR;
	add_node(z, F4_ROOT_INO, "", &root);
	{
		struct statvfs sv;

		f4_statfs(&z->f, &sv);
	}
	walk(z, !!(data[1] & F1_PLUS));

	for (nops = 0; z->pc < z->prog_len && nops < MAX_OPS &&
	     !out_of_time(z); nops++)
		run_op(z);
	teardown(z);
	free(z);
}

/* ---- libFuzzer entry points ------------------------------------------------ */

/*
 * libext2fs reports through com_err() when it is handed something out of
 * range, such as a block number past the end of a bitmap.  Inside bigger
 * library functions (reading the bitmaps of a damaged image, say) that is
 * the library coping with bad metadata; but when the library function the
 * core called is itself a bitmap or allocation-statistics primitive, the
 * core passed a bad number: count that as a crash, so that it is found
 * and kept.  F4FUZZ_COMERR_OK=1 turns this off.
 */
static const char *lib_symbol(void *pc, int *is_lib)
{
	Dl_info info;

	*is_lib = 0;
	if (!dladdr(pc, &info) || !info.dli_fname)
		return NULL;
	*is_lib = strstr(info.dli_fname, "libext2fs") ||
		  strstr(info.dli_fname, "libcom_err");
	return info.dli_sname;
}

static int core_passed_it(void)
{
	void *pcs[64];
	const char *sym, *outer = NULL;
	int n = backtrace(pcs, 64), i, lib, seen = 0;

	for (i = 1; i < n; i++) {
		sym = lib_symbol(pcs[i], &lib);
		if (lib) {
			seen = 1;
			outer = sym;
		} else if (seen) {
			break;		/* the core's frame */
		}
	}
	if (!outer)
		return 0;
	return strstr(outer, "generic_bmap") || strstr(outer, "alloc_stats") ||
	       strstr(outer, "bitmap_range") || strstr(outer, "_bitmap2");
}

static void comerr_hook(const char *whoami, long code, const char *fmt,
			va_list ap)
{
	int fatal = !getenv("F4FUZZ_COMERR_OK") && core_passed_it();

	if (!fatal && !getenv("F4FUZZ_VERBOSE"))
		return;
	fprintf(stderr, "f4fuzz: libext2fs complained%s: %s: ",
		fatal ? " about what the core passed" : "",
		whoami ? whoami : "?");
	if (code)
		fprintf(stderr, "%s ", error_message(code));
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	if (fatal)
		abort();
}

static void cleanup(void)
{
	if (img_path[0])
		unlink(img_path);
	free(io_buf);
	io_buf = NULL;
}

/*
 * f4fuzz-replay: a sanitizer report must not leave the image behind in
 * /dev/shm.  (Not in the fuzzer: libFuzzer's own death callback writes
 * the crashing input, and there is only one.)
 */
#if defined(F4FUZZ_REPLAY) && defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/common_interface_defs.h>
#define HAVE_DEATH_CALLBACK 1

static void remove_image(void)
{
	if (img_path[0])
		unlink(img_path);
}
#endif
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("F4FUZZ_TMPDIR");

	if (!dir) {
		struct stat st;

		dir = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ?
		      "/dev/shm" : "/tmp";
	}
	snprintf(img_path, sizeof(img_path), "%s/f4fuzz-%d.img", dir,
		 (int)getpid());
	io_buf = malloc(BUF_SIZE + 1);
	if (!io_buf)
		abort();
	atexit(cleanup);
#ifdef HAVE_DEATH_CALLBACK
	__sanitizer_set_death_callback(remove_image);
#endif
	set_com_err_hook(comerr_hook);
	f4_log_set_quiet(getenv("F4FUZZ_VERBOSE") ? 0 : 1);
	tracing = getenv("F4FUZZ_TRACE") != NULL;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run_one(data, size);
	return 0;
}

#ifdef F4FUZZ_REPLAY
/*
 * f4fuzz-replay: run inputs without libFuzzer (regression tests), or
 * unpack one into an image.
 *
 *   f4fuzz-replay FILE...        run each input once
 *   f4fuzz-replay -x INPUT IMAGE write the image INPUT describes
 */
static int read_input(const char *path, uint8_t **data, size_t *size)
{
	FILE *fp = fopen(path, "rb");
	size_t cap = 1 << 16, len = 0, n;
	uint8_t *buf;

	if (!fp) {
		perror(path);
		return -1;
	}
	buf = malloc(cap);
	while (buf && (n = fread(buf + len, 1, cap - len, fp)) > 0) {
		len += n;
		if (len == cap) {
			uint8_t *nb = realloc(buf, cap * 2);

			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	fclose(fp);
	if (!buf)
		return -1;
	*data = buf;
	*size = len;
	return 0;
}

int main(int argc, char **argv)
{
	uint8_t *data;
	size_t size;
	int i, status = 0;

	LLVMFuzzerInitialize(&argc, &argv);
	if (argc == 4 && strcmp(argv[1], "-x") == 0) {
		if (read_input(argv[2], &data, &size))
			return 2;
		if (size < HDR_SIZE || write_image(argv[3], data, size)) {
			fprintf(stderr, "%s: too short\n", argv[2]);
			free(data);
			return 2;
		}
		free(data);
		return 0;
	}
	if (argc < 2) {
		fprintf(stderr, "usage: f4fuzz-replay FILE...\n"
			"       f4fuzz-replay -x INPUT IMAGE\n");
		return 2;
	}
	for (i = 1; i < argc; i++) {
		if (read_input(argv[i], &data, &size)) {
			status = 2;
			continue;
		}
		fprintf(stderr, "f4fuzz-replay: %s (%zu bytes)\n", argv[i],
			size);
		LLVMFuzzerTestOneInput(data, size);
		free(data);
	}
	fprintf(stderr, "f4fuzz-replay: %d input%s ran\n", argc - 1,
		argc == 2 ? "" : "s");
	return status;
}
#endif

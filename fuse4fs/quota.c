/*
 * quota.c - user, group and project quota: usage kept exact, limits
 * enforced.
 *
 * Usage, as e2fsck computes it and compares it with the quota files, is
 * the sum over every allocated inode (the root and ordinary inodes; not
 * the reserved ones, the quota files or EA inodes) of one inode and its
 * i_blocks in bytes, charged to the inode's uid, gid and project ID,
 * plus one inode more for each xattr value it keeps in an EA inode (the
 * value's blocks are in its i_blocks already).
 * fuse4fs keeps that sum by watching the inode table, not the
 * operations: every inode write libext2fs makes, ours and its own
 * (extent tree blocks, xattr blocks), passes through fs->write_inode,
 * where the on-disk inode is compared with the new one and the
 * difference moved between owners.  Allocating and freeing an inode
 * (its bitmap bit changing) charge or release it whole.  So the
 * invariant is simply "charged == what the allocated inodes on disk
 * say", and no operation has to know about quota, but for the inodes
 * EA-inode values cost: xattr.c reports those as they change, and an
 * inode changing hands takes them along here.
 *
 * The records of the ids used since mount live in memory and go back to
 * the quota files at the start of each flush, so that they reach the
 * disk with the metadata they count.  The files are in the kernel's v2
 * tree format, revision 1 ("vfsv1"), which is what mke2fs -O quota
 * writes:
 *
 *   block 0     header: magic, version; then the info: grace times,
 *               flags, blocks in the file, the first free block and the
 *               first data block with a free entry
 *   block 1     the root of a four-level radix tree indexed by the bytes
 *               of the id, most significant first; each tree block holds
 *               256 block numbers (0: nothing below)
 *   data blocks a 16-byte header (next/prev on the free-entry list, the
 *               number of entries) and 14 entries of 72 bytes
 *
 * All blocks are 1 KiB whatever the file system's block size.
 */
#include "config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "fuse4fs.h"

#define QT_BLKSIZE	1024
#define QT_TREEOFF	1		/* the root of the tree */
#define QT_DEPTH	4
#define QT_REFS		(QT_BLKSIZE / 4)
#define QT_HDR		16		/* data block header */
#define QT_ENTRY	72		/* one record */
#define QT_PER_BLK	((QT_BLKSIZE - QT_HDR) / QT_ENTRY)
#define QT_INFO_OFF	8
#define QT_VERSION	1		/* 64-bit records */
#define QT_BUCKETS	256

static const uint32_t qt_magic[F4_MAXQUOTAS] = {
	0xd9c01f11, 0xd9c01927, 0xd9c03f14
};
static const char *const qt_name[F4_MAXQUOTAS] = {
	"user", "group", "project"
};

/* On-disk layouts, little-endian. */
struct qt_info {
	uint32_t bgrace;
	uint32_t igrace;
	uint32_t flags;
	uint32_t blocks;
	uint32_t free_blk;
	uint32_t free_entry;
};

struct qt_dhdr {
	uint32_t next_free;
	uint32_t prev_free;
	uint16_t entries;
	uint16_t pad1;
	uint32_t pad2;
};

struct qt_disk_dq {
	uint32_t id;
	uint32_t pad;
	uint64_t ihardlimit;
	uint64_t isoftlimit;
	uint64_t curinodes;
	uint64_t bhardlimit;		/* 1 KiB units */
	uint64_t bsoftlimit;
	uint64_t curspace;		/* bytes */
	uint64_t btime;
	uint64_t itime;
};

/* One id's record, in memory. */
struct dq {
	struct dq *next;
	uint32_t id;
	uint32_t blk;			/* data block of its entry; 0: none yet */
	unsigned int slot;
	int dirty;
	uint64_t space, inodes;
	uint64_t bhard, bsoft;		/* bytes; 0: no limit */
	uint64_t ihard, isoft;
	int64_t btime, itime;		/* grace ends; 0: not over soft */
};

struct qfile {
	ext2_ino_t ino;			/* 0: this type is not kept */
	int type;
	struct qt_info info;
	int info_dirty;
	struct dq *hash[QT_BUCKETS];
};

struct f4_quota {
	struct qfile q[F4_MAXQUOTAS];
	int warned;			/* usage went negative: logged once */
};

/* ---- helpers ---------------------------------------------------------- */

uint32_t f4_inode_projid(struct f4fs *f, const struct ext2_inode_large *inode)
{
	if (!f4_inode_has_extra(f, inode,
				offsetof(struct ext2_inode_large, i_projid) +
				sizeof(inode->i_projid)))
		return 0;
	return inode->i_projid;
}

static uint32_t inode_id(int type, uint32_t uid, uint32_t gid, uint32_t prj)
{
	return type == F4_USRQUOTA ? uid : type == F4_GRPQUOTA ? gid : prj;
}

/* Is the inode's usage counted at all?  (What e2fsck counts.) */
static int tracked(struct f4fs *f, ext2_ino_t ino)
{
	struct ext2_super_block *sb = f->fs->super;
	int t;

	if (ino != EXT2_ROOT_INO && ino < EXT2_FIRST_INODE(sb))
		return 0;
	for (t = 0; t < F4_MAXQUOTAS; t++)
		if (f->quota->q[t].ino == ino)
			return 0;
	return ino != sb->s_prj_quota_inum;
}

/* What one inode costs: 1 inode and i_blocks in bytes, or nothing. */
static void inode_cost(struct f4fs *f, const struct ext2_inode *inode,
		       uint64_t *space, uint64_t *inodes)
{
	*space = 0;
	*inodes = 0;
	if (inode->i_flags & EXT4_EA_INODE_FL)
		return;
	*space = (uint64_t)ext2fs_get_stat_i_blocks(f->fs,
			(struct ext2_inode *)inode) * 512;
	*inodes = 1;
}

/* ---- quota file I/O ---------------------------------------------------- */

static int qf_io(struct f4fs *f, struct qfile *qf, uint32_t blk, void *buf,
		 int write)
{
	ext2_file_t file;
	unsigned int got = 0;
	errcode_t err, err2;

	err = ext2fs_file_open(f->fs, qf->ino, write ? EXT2_FILE_WRITE : 0,
			       &file);
	if (err)
		goto out;
	err = ext2fs_file_llseek(file, (uint64_t)blk * QT_BLKSIZE,
				 EXT2_SEEK_SET, NULL);
	if (!err && write)
		err = ext2fs_file_write(file, buf, QT_BLKSIZE, &got);
	else if (!err)
		err = ext2fs_file_read(file, buf, QT_BLKSIZE, &got);
	err2 = ext2fs_file_close(file);
	if (!err)
		err = err2;
	if (!err && got < QT_BLKSIZE) {
		if (write)
			err = EXT2_ET_SHORT_WRITE;
		else		/* past the end of a sparse file: zeros */
			memset((char *)buf + got, 0, QT_BLKSIZE - got);
	}
out:
	if (err) {
		f4_log(LOG_ERR, "%s quota file (inode %u): %s block %u: %s",
		       qt_name[qf->type], qf->ino, write ? "writing" :
		       "reading", blk, error_message(err));
		return f4_fs_error(f, qf->ino, err, "quota file");
	}
	return 0;
}

static int qf_read(struct f4fs *f, struct qfile *qf, uint32_t blk, void *buf)
{
	return qf_io(f, qf, blk, buf, 0);
}

static int qf_write(struct f4fs *f, struct qfile *qf, uint32_t blk,
		    void *buf)
{
	return qf_io(f, qf, blk, buf, 1);
}

static int qf_corrupt(struct f4fs *f, struct qfile *qf, uint32_t blk,
		      const char *why)
{
	return f4_corrupt(f, qf->ino, "%s quota file: block %u: %s; run "
			  "e2fsck", qt_name[qf->type], blk, why);
}

static int entry_unused(const char *e)
{
	int i;

	for (i = 0; i < QT_ENTRY; i++)
		if (e[i])
			return 0;
	return 1;
}

static void decode_dq(struct dq *dq, const char *e)
{
	struct qt_disk_dq d;

	memcpy(&d, e, sizeof(d));
	dq->ihard = ext2fs_le64_to_cpu(d.ihardlimit);
	dq->isoft = ext2fs_le64_to_cpu(d.isoftlimit);
	dq->inodes = ext2fs_le64_to_cpu(d.curinodes);
	dq->bhard = ext2fs_le64_to_cpu(d.bhardlimit) << 10;
	dq->bsoft = ext2fs_le64_to_cpu(d.bsoftlimit) << 10;
	dq->space = ext2fs_le64_to_cpu(d.curspace);
	dq->btime = ext2fs_le64_to_cpu(d.btime);
	dq->itime = ext2fs_le64_to_cpu(d.itime);
	/* an all-zero record carries itime 1 so as not to read as free */
	if (!dq->ihard && !dq->isoft && !dq->inodes && !dq->bhard &&
	    !dq->bsoft && !dq->space && !dq->btime && dq->itime == 1)
		dq->itime = 0;
}

static void encode_dq(const struct dq *dq, char *e)
{
	struct qt_disk_dq d;

	memset(&d, 0, sizeof(d));
	d.id = ext2fs_cpu_to_le32(dq->id);
	d.ihardlimit = ext2fs_cpu_to_le64(dq->ihard);
	d.isoftlimit = ext2fs_cpu_to_le64(dq->isoft);
	d.curinodes = ext2fs_cpu_to_le64(dq->inodes);
	d.bhardlimit = ext2fs_cpu_to_le64(dq->bhard >> 10);
	d.bsoftlimit = ext2fs_cpu_to_le64(dq->bsoft >> 10);
	d.curspace = ext2fs_cpu_to_le64(dq->space);
	d.btime = ext2fs_cpu_to_le64(dq->btime);
	d.itime = ext2fs_cpu_to_le64(dq->itime);
	memcpy(e, &d, sizeof(d));
	if (entry_unused(e)) {
		d.itime = ext2fs_cpu_to_le64(1);
		memcpy(e, &d, sizeof(d));
	}
}

static int read_info(struct f4fs *f, struct qfile *qf)
{
	uint32_t buf[QT_BLKSIZE / 4];
	struct qt_info *in = (void *)((char *)buf + QT_INFO_OFF);
	int ret;

	ret = qf_read(f, qf, 0, buf);
	if (ret)
		return ret;
	if (ext2fs_le32_to_cpu(buf[0]) != qt_magic[qf->type] ||
	    ext2fs_le32_to_cpu(buf[1]) != QT_VERSION)
		return qf_corrupt(f, qf, 0, "not a vfsv1 quota file of this "
				  "type");
	qf->info.bgrace = ext2fs_le32_to_cpu(in->bgrace);
	qf->info.igrace = ext2fs_le32_to_cpu(in->igrace);
	qf->info.flags = ext2fs_le32_to_cpu(in->flags);
	qf->info.blocks = ext2fs_le32_to_cpu(in->blocks);
	qf->info.free_blk = ext2fs_le32_to_cpu(in->free_blk);
	qf->info.free_entry = ext2fs_le32_to_cpu(in->free_entry);
	if (qf->info.blocks <= QT_TREEOFF ||
	    qf->info.free_blk >= qf->info.blocks ||
	    qf->info.free_entry >= qf->info.blocks)
		return qf_corrupt(f, qf, 0, "bad header");
	return 0;
}

static int write_info(struct f4fs *f, struct qfile *qf)
{
	char buf[QT_BLKSIZE];
	struct qt_info in;
	int ret;

	ret = qf_read(f, qf, 0, buf);
	if (ret)
		return ret;
	in.bgrace = ext2fs_cpu_to_le32(qf->info.bgrace);
	in.igrace = ext2fs_cpu_to_le32(qf->info.igrace);
	in.flags = ext2fs_cpu_to_le32(qf->info.flags);
	in.blocks = ext2fs_cpu_to_le32(qf->info.blocks);
	in.free_blk = ext2fs_cpu_to_le32(qf->info.free_blk);
	in.free_entry = ext2fs_cpu_to_le32(qf->info.free_entry);
	memcpy(buf + QT_INFO_OFF, &in, sizeof(in));
	ret = qf_write(f, qf, 0, buf);
	if (!ret)
		qf->info_dirty = 0;
	return ret;
}

static unsigned int tree_index(uint32_t id, int depth)
{
	return (id >> (8 * (QT_DEPTH - 1 - depth))) & 0xff;
}

/* Find id's record in the file: dq->blk stays 0 when there is none. */
static int tree_find(struct f4fs *f, struct qfile *qf, struct dq *dq)
{
	uint32_t buf[QT_REFS];
	uint32_t blk = QT_TREEOFF, ref;
	const char *e;
	int depth, i, ret;

	for (depth = 0; depth < QT_DEPTH; depth++) {
		ret = qf_read(f, qf, blk, buf);
		if (ret)
			return ret;
		ref = ext2fs_le32_to_cpu(buf[tree_index(dq->id, depth)]);
		if (!ref)
			return 0;
		if (ref <= QT_TREEOFF || ref >= qf->info.blocks)
			return qf_corrupt(f, qf, blk, "reference out of range");
		blk = ref;
	}
	ret = qf_read(f, qf, blk, buf);
	if (ret)
		return ret;
	for (i = 0; i < QT_PER_BLK; i++) {
		e = (char *)buf + QT_HDR + i * QT_ENTRY;
		if (entry_unused(e) ||
		    ext2fs_le32_to_cpu(((struct qt_disk_dq *)e)->id) != dq->id)
			continue;
		decode_dq(dq, e);
		dq->blk = blk;
		dq->slot = i;
		return 0;
	}
	return qf_corrupt(f, qf, blk, "tree points to a block without the id");
}

/* A zeroed block for the tree or for records: a freed one, or a new one. */
static int new_block(struct f4fs *f, struct qfile *qf, uint32_t *blk)
{
	char buf[QT_BLKSIZE];
	struct qt_dhdr *h = (void *)buf;
	int ret;

	if (qf->info.free_blk) {
		*blk = qf->info.free_blk;
		ret = qf_read(f, qf, *blk, buf);
		if (ret)
			return ret;
		qf->info.free_blk = ext2fs_le32_to_cpu(h->next_free);
		if (qf->info.free_blk >= qf->info.blocks)
			return qf_corrupt(f, qf, *blk, "bad free block list");
	} else {
		*blk = qf->info.blocks++;
	}
	qf->info_dirty = 1;
	memset(buf, 0, sizeof(buf));
	return qf_write(f, qf, *blk, buf);
}

/* Take a block off the list of data blocks with free entries. */
static int unlink_free_entry(struct f4fs *f, struct qfile *qf,
			     struct qt_dhdr *h)
{
	uint32_t next = ext2fs_le32_to_cpu(h->next_free);
	uint32_t prev = ext2fs_le32_to_cpu(h->prev_free);
	char buf[QT_BLKSIZE];
	struct qt_dhdr *o = (void *)buf;
	int ret;

	if (next) {
		ret = qf_read(f, qf, next, buf);
		if (ret)
			return ret;
		o->prev_free = ext2fs_cpu_to_le32(prev);
		ret = qf_write(f, qf, next, buf);
		if (ret)
			return ret;
	}
	if (prev) {
		ret = qf_read(f, qf, prev, buf);
		if (ret)
			return ret;
		o->next_free = ext2fs_cpu_to_le32(next);
		ret = qf_write(f, qf, prev, buf);
		if (ret)
			return ret;
	} else {
		qf->info.free_entry = next;
		qf->info_dirty = 1;
	}
	h->next_free = 0;
	h->prev_free = 0;
	return 0;
}

/* Put dq's record into a free entry of some data block. */
static int take_entry(struct f4fs *f, struct qfile *qf, struct dq *dq)
{
	char buf[QT_BLKSIZE];
	struct qt_dhdr *h = (void *)buf;
	unsigned int entries;
	uint32_t blk;
	char *e;
	int i, ret;

	if (qf->info.free_entry) {
		blk = qf->info.free_entry;
		ret = qf_read(f, qf, blk, buf);
		if (ret)
			return ret;
	} else {
		ret = new_block(f, qf, &blk);
		if (ret)
			return ret;
		memset(buf, 0, sizeof(buf));
		qf->info.free_entry = blk;
		qf->info_dirty = 1;
	}
	entries = ext2fs_le16_to_cpu(h->entries) + 1;
	if (entries > QT_PER_BLK)
		return qf_corrupt(f, qf, blk, "full block on the free list");
	h->entries = ext2fs_cpu_to_le16(entries);
	if (entries == QT_PER_BLK) {
		ret = unlink_free_entry(f, qf, h);
		if (ret)
			return ret;
	}
	for (i = 0; i < QT_PER_BLK; i++) {
		e = buf + QT_HDR + i * QT_ENTRY;
		if (entry_unused(e))
			break;
	}
	if (i == QT_PER_BLK)
		return qf_corrupt(f, qf, blk, "no free entry in a block on "
				  "the free list");
	encode_dq(dq, e);
	ret = qf_write(f, qf, blk, buf);
	if (ret)
		return ret;
	dq->blk = blk;
	dq->slot = i;
	return 0;
}

/* Add dq to the file: a record, and the tree path to it. */
static int tree_insert(struct f4fs *f, struct qfile *qf, struct dq *dq)
{
	uint32_t buf[QT_REFS];
	uint32_t blk = QT_TREEOFF, ref;
	unsigned int idx;
	int depth, ret;

	for (depth = 0; depth < QT_DEPTH; depth++) {
		ret = qf_read(f, qf, blk, buf);
		if (ret)
			return ret;
		idx = tree_index(dq->id, depth);
		ref = ext2fs_le32_to_cpu(buf[idx]);
		if (depth == QT_DEPTH - 1) {
			if (ref)
				return qf_corrupt(f, qf, blk, "id already "
						  "in the tree");
			ret = take_entry(f, qf, dq);
			if (ret)
				return ret;
			buf[idx] = ext2fs_cpu_to_le32(dq->blk);
			return qf_write(f, qf, blk, buf);
		}
		if (!ref) {
			ret = new_block(f, qf, &ref);
			if (ret)
				return ret;
			buf[idx] = ext2fs_cpu_to_le32(ref);
			ret = qf_write(f, qf, blk, buf);
			if (ret)
				return ret;
		} else if (ref <= QT_TREEOFF || ref >= qf->info.blocks) {
			return qf_corrupt(f, qf, blk, "reference out of range");
		}
		blk = ref;
	}
	return 0;
}

static int write_dq(struct f4fs *f, struct qfile *qf, struct dq *dq)
{
	char buf[QT_BLKSIZE];
	int ret;

	if (!dq->blk)
		ret = tree_insert(f, qf, dq);
	else {
		ret = qf_read(f, qf, dq->blk, buf);
		if (!ret) {
			encode_dq(dq, buf + QT_HDR + dq->slot * QT_ENTRY);
			ret = qf_write(f, qf, dq->blk, buf);
		}
	}
	if (!ret)
		dq->dirty = 0;
	return ret;
}

/* ---- records in memory ------------------------------------------------- */

/* id's record, read from the file the first time; NULL: out of memory. */
static struct dq *get_dq(struct f4fs *f, struct qfile *qf, uint32_t id)
{
	struct dq **head = &qf->hash[(id * 2654435761U) >> 24];
	struct dq *dq;

	for (dq = *head; dq; dq = dq->next)
		if (dq->id == id)
			return dq;
	dq = calloc(1, sizeof(*dq));
	if (!dq)
		return NULL;
	dq->id = id;
	if (tree_find(f, qf, dq)) {
		/*
		 * The error is logged and recorded; count from zero so that
		 * the rest of the file system stays usable.
		 */
		memset(dq, 0, sizeof(*dq));
		dq->id = id;
	}
	dq->next = *head;
	*head = dq;
	return dq;
}

static void fix_grace(struct qfile *qf, struct dq *dq)
{
	time_t now = time(NULL);

	if (dq->bsoft && dq->space > dq->bsoft) {
		if (!dq->btime)
			dq->btime = now + qf->info.bgrace;
	} else {
		dq->btime = 0;
	}
	if (dq->isoft && dq->inodes > dq->isoft) {
		if (!dq->itime)
			dq->itime = now + qf->info.igrace;
	} else {
		dq->itime = 0;
	}
}

static void add_usage(struct f4fs *f, uint64_t *v, int64_t d, uint32_t id,
		      int type)
{
	if (d < 0 && (uint64_t)-d > *v) {
		if (!f->quota->warned++)
			f4_log(LOG_WARNING, "%s quota of id %u would go below "
			       "zero; the quota file was wrong, run e2fsck",
			       qt_name[type], id);
		*v = 0;
		return;
	}
	*v += d;
}

static void charge(struct f4fs *f, int type, uint32_t id, int64_t space,
		   int64_t inodes)
{
	struct qfile *qf = &f->quota->q[type];
	struct dq *dq;

	if (!qf->ino || (!space && !inodes))
		return;
	dq = get_dq(f, qf, id);
	if (!dq) {
		f4_log(LOG_ERR, "%s quota of id %u: out of memory; usage "
		       "will be wrong until e2fsck", qt_name[type], id);
		return;
	}
	add_usage(f, &dq->space, space, id, type);
	add_usage(f, &dq->inodes, inodes, id, type);
	fix_grace(qf, dq);
	dq->dirty = 1;
	f4_fs_dirty(f);
}

struct owner {
	uint32_t uid, gid, prj;
	uint64_t space, inodes;
};

/* Move usage from one owner to another, per quota type, net. */
static void move(struct f4fs *f, const struct owner *from,
		 const struct owner *to)
{
	uint32_t a, b;
	int t;

	for (t = 0; t < F4_MAXQUOTAS; t++) {
		a = inode_id(t, from->uid, from->gid, from->prj);
		b = inode_id(t, to->uid, to->gid, to->prj);
		if (a == b) {
			charge(f, t, a, (int64_t)(to->space - from->space),
			       (int64_t)(to->inodes - from->inodes));
		} else {
			charge(f, t, a, -(int64_t)from->space,
			       -(int64_t)from->inodes);
			charge(f, t, b, to->space, to->inodes);
		}
	}
}

static void ea_inodes_move(struct f4fs *f, ext2_ino_t ino,
			   struct owner *from, struct owner *to);

static void owner_of(struct f4fs *f, const struct ext2_inode *inode,
		     uint32_t prj, struct owner *o)
{
	o->uid = inode_uid(*inode);
	o->gid = inode_gid(*inode);
	o->prj = prj;
	inode_cost(f, inode, &o->space, &o->inodes);
}

/* ---- the inode table watch -------------------------------------------- */

/*
 * libext2fs calls this before it writes any inode.  The old inode is
 * read back (from libext2fs's inode cache, usually) and the difference
 * charged.  The project ID lies beyond the 128 bytes every caller
 * passes: it is taken from the new inode only when the write is a full
 * one from f4_write_inode(); everyone else keeps the disk's.
 */
static errcode_t write_hook(ext2_filsys fs, ext2_ino_t ino,
			    struct ext2_inode *inode)
{
	struct f4fs *f = fs->priv_data;
	struct ext2_inode_large old;
	struct owner from, to;
	uint32_t prj;

	if (!f || !f->quota || !fs->inode_map || !tracked(f, ino) ||
	    !ext2fs_test_inode_bitmap2(fs->inode_map, ino))
		return EXT2_ET_CALLBACK_NOTHANDLED;
	memset(&old, 0, sizeof(old));
	if (ext2fs_read_inode_full(fs, ino, (struct ext2_inode *)&old,
				   sizeof(old))) {
		f4_log(LOG_WARNING, "inode %u: cannot read the old inode; its "
		       "quota usage may be off until e2fsck", ino);
		return EXT2_ET_CALLBACK_NOTHANDLED;
	}
	prj = f4_inode_projid(f, &old);
	owner_of(f, (struct ext2_inode *)&old, prj, &from);
	if ((void *)inode == (void *)f->quota_full)
		prj = f4_inode_projid(f, f->quota_full);
	owner_of(f, inode, prj, &to);
	if (from.uid != to.uid || from.gid != to.gid || from.prj != to.prj)
		ea_inodes_move(f, ino, &from, &to);
	move(f, &from, &to);
	return EXT2_ET_CALLBACK_NOTHANDLED;
}

/* Its EA-inode values' inodes go too (chown, chgrp, chattr -p). */
static void ea_inodes_move(struct f4fs *f, ext2_ino_t ino,
			   struct owner *from, struct owner *to)
{
	__u64 refs;

	if (!ext2fs_has_feature_ea_inode(f->fs->super) || !from->inodes ||
	    f4_xattr_ea_refs(f, ino, &refs))
		return;
	from->inodes += refs;
	to->inodes += refs;
}

/*
 * The inode's xattr values kept in EA inodes changed in number by delta:
 * each is one inode to its owners' account (the EA inode itself is
 * charged to nobody).
 */
void f4_quota_ea_inodes(struct f4fs *f, ext2_ino_t ino,
			const struct ext2_inode_large *inode, int64_t delta)
{
	int t;

	if (!f->quota || !delta || !tracked(f, ino))
		return;
	for (t = 0; t < F4_MAXQUOTAS; t++)
		charge(f, t, inode_id(t, inode_uid(*inode), inode_gid(*inode),
				      f4_inode_projid(f, inode)), 0, delta);
}

/* Charge or release a whole inode whose bitmap bit changed (+1/-1). */
void f4_quota_inode_alloc(struct f4fs *f, ext2_ino_t ino, int delta)
{
	struct ext2_inode_large in;
	struct owner o, none;

	if (!f->quota || !tracked(f, ino))
		return;
	memset(&in, 0, sizeof(in));
	if (ext2fs_read_inode_full(f->fs, ino, (struct ext2_inode *)&in,
				   sizeof(in))) {
		f4_log(LOG_WARNING, "inode %u: cannot read it to count its "
		       "quota usage", ino);
		return;
	}
	owner_of(f, (struct ext2_inode *)&in, f4_inode_projid(f, &in), &o);
	none = o;
	none.space = 0;
	none.inodes = 0;
	if (delta > 0)
		move(f, &none, &o);
	else
		move(f, &o, &none);
}

/* ---- limits ------------------------------------------------------------ */

/*
 * As the kernel: root (CAP_SYS_RESOURCE) ignores limits.  The kernel's
 * write-back of cached pages carries no caller; it is judged by the one
 * who opened the file (whether it may use the root reserve).
 */
static int exempt(struct f4fs *f, struct f4_cred *cred)
{
	if (!cred)
		return 1;
	if (cred->writeback)
		return cred->may_reserve;
	return f4_capable(f, cred);
}

/*
 * How much more of something (bytes or inodes) an owner using used may
 * take before a limit bites: the hard limit, or the soft one once its
 * grace time (since) has run out.  UINT64_MAX: no limit.
 */
static uint64_t room(uint64_t used, uint64_t hard, uint64_t soft,
		     time_t since)
{
	uint64_t r = UINT64_MAX;

	if (hard)
		r = hard > used ? hard - used : 0;
	if (soft && since && time(NULL) >= since) {
		uint64_t left = soft > used ? soft - used : 0;

		if (left < r)
			r = left;
	}
	return r;
}

static uint64_t space_room(struct dq *dq)
{
	return room(dq->space, dq->bhard, dq->bsoft, dq->btime);
}

static uint64_t inode_room(struct dq *dq)
{
	return room(dq->inodes, dq->ihard, dq->isoft, dq->itime);
}

/* May owner take space more bytes and inodes more inodes?  -EDQUOT if not */
static int check_owner(struct f4fs *f, uint32_t uid, uint32_t gid,
		       uint32_t prj, uint64_t space, uint64_t inodes)
{
	struct qfile *qf;
	struct dq *dq;
	int t;

	for (t = 0; t < F4_MAXQUOTAS; t++) {
		qf = &f->quota->q[t];
		if (!qf->ino)
			continue;
		dq = get_dq(f, qf, inode_id(t, uid, gid, prj));
		if (!dq)
			return -ENOMEM;
		if (space > space_room(dq) || inodes > inode_room(dq))
			return -EDQUOT;
	}
	return 0;
}

/* The records of the inode's owners, one per quota type (NULL: none). */
static int owner_dqs(struct f4fs *f, const struct ext2_inode_large *inode,
		     struct dq *dqs[F4_MAXQUOTAS])
{
	struct qfile *qf;
	int t;

	for (t = 0; t < F4_MAXQUOTAS; t++) {
		qf = &f->quota->q[t];
		dqs[t] = NULL;
		if (!qf->ino)
			continue;
		dqs[t] = get_dq(f, qf, inode_id(t, inode_uid(*inode),
						inode_gid(*inode),
						f4_inode_projid(f, inode)));
		if (!dqs[t])
			return -ENOMEM;
	}
	return 0;
}

/*
 * How many of *len new blocks may the inode's owners have?  Cuts *len
 * down to what fits, or returns -EDQUOT when not one block does.
 */
int f4_quota_clamp_blocks(struct f4fs *f, struct f4_cred *cred,
			  const struct ext2_inode_large *inode, blk64_t *len)
{
	uint64_t room = UINT64_MAX, r;
	struct dq *dqs[F4_MAXQUOTAS], *dq;
	int t, ret;

	if (!f->quota || exempt(f, cred))
		return 0;
	ret = owner_dqs(f, inode, dqs);
	if (ret)
		return ret;
	for (t = 0; t < F4_MAXQUOTAS; t++) {
		dq = dqs[t];
		if (!dq)
			continue;
		r = space_room(dq);
		if (r < room)
			room = r;
	}
	room /= f->blocksize;
	if (!room)
		return -EDQUOT;
	if (*len > room)
		*len = room;
	return 0;
}

/* Are the inode's owners past a limit that bites cred?  -EDQUOT if so */
int f4_quota_over(struct f4fs *f, struct f4_cred *cred,
		  const struct ext2_inode_large *inode)
{
	struct dq *dqs[F4_MAXQUOTAS], *dq;
	int t, ret;

	if (!f->quota || exempt(f, cred))
		return 0;
	ret = owner_dqs(f, inode, dqs);
	if (ret)
		return ret;
	for (t = 0; t < F4_MAXQUOTAS; t++) {
		dq = dqs[t];
		if (!dq)
			continue;
		if ((dq->bhard && dq->space > dq->bhard) ||
		    (dq->bsoft && dq->space > dq->bsoft && dq->btime &&
		     time(NULL) >= dq->btime))
			return -EDQUOT;
	}
	return 0;
}

/* Do limits bind cred at all? */
int f4_quota_binds(struct f4fs *f, struct f4_cred *cred)
{
	return f->quota && !exempt(f, cred);
}

/*
 * Would the inode's owners, with space bytes and inodes more than they
 * have, be past a block or inode limit that bites cred?  -EDQUOT if so.
 * (Called after an allocation was charged, to take it back when the
 * kernel would have refused it.)
 */
int f4_quota_exceeded(struct f4fs *f, struct f4_cred *cred,
		      const struct ext2_inode_large *inode, uint64_t space,
		      uint64_t inodes)
{
	time_t now = time(NULL);
	struct dq *dqs[F4_MAXQUOTAS], *dq;
	int t, ret;

	if (!f->quota || exempt(f, cred))
		return 0;
	ret = owner_dqs(f, inode, dqs);
	if (ret)
		return ret;
	for (t = 0; t < F4_MAXQUOTAS; t++) {
		dq = dqs[t];
		if (!dq)
			continue;
		if ((dq->bhard && dq->space + space > dq->bhard) ||
		    (dq->ihard && dq->inodes + inodes > dq->ihard) ||
		    (dq->bsoft && dq->space + space > dq->bsoft &&
		     dq->btime && now >= dq->btime) ||
		    (dq->isoft && dq->inodes + inodes > dq->isoft &&
		     dq->itime && now >= dq->itime))
			return -EDQUOT;
	}
	return 0;
}

/* May cred make a new inode owned by uid, gid and project prj? */
int f4_quota_may_create(struct f4fs *f, struct f4_cred *cred, uint32_t uid,
			uint32_t gid, uint32_t prj)
{
	if (!f->quota || exempt(f, cred))
		return 0;
	return check_owner(f, uid, gid, prj, 0, 1);
}

/*
 * May the inode change hands to (uid, gid, prj)?  As the kernel's
 * dquot_transfer(): the new owners must have room for all of it.
 */
int f4_quota_may_transfer(struct f4fs *f, struct f4_cred *cred,
			  ext2_ino_t ino, const struct ext2_inode_large *inode,
			  uint32_t uid, uint32_t gid, uint32_t prj)
{
	uint64_t space, inodes;
	struct qfile *qf;
	struct dq *dq;
	uint32_t old;
	__u64 refs = 0;
	int t, ret;

	if (!f->quota || exempt(f, cred))
		return 0;
	inode_cost(f, (const struct ext2_inode *)inode, &space, &inodes);
	/* and the inodes its EA-inode values cost (ext4 counts them too) */
	if (inodes && ext2fs_has_feature_ea_inode(f->fs->super)) {
		ret = f4_xattr_ea_refs(f, ino, &refs);
		if (ret)
			return ret;
		inodes += refs;
	}
	for (t = 0; t < F4_MAXQUOTAS; t++) {
		qf = &f->quota->q[t];
		old = inode_id(t, inode_uid(*inode), inode_gid(*inode),
			       f4_inode_projid(f, inode));
		if (!qf->ino || old == inode_id(t, uid, gid, prj))
			continue;
		dq = get_dq(f, qf, inode_id(t, uid, gid, prj));
		if (!dq)
			return -ENOMEM;
		if (space > space_room(dq) || inodes > inode_room(dq))
			return -EDQUOT;
	}
	return 0;
}

static uint64_t min_not_zero(uint64_t a, uint64_t b)
{
	return !a ? b : !b ? a : a < b ? a : b;
}

/*
 * statfs of a directory that hands its project down shows the project's
 * limits, as ext4 does, so that df there tells how much room is left.
 */
void f4_quota_statfs(struct f4fs *f, ext2_ino_t ino, struct statvfs *st)
{
	struct qfile *qf;
	struct ext2_inode_large inode;
	uint64_t limit, used, left;
	struct dq *dq;

	if (!f->quota || !f->quota->q[F4_PRJQUOTA].ino)
		return;
	qf = &f->quota->q[F4_PRJQUOTA];
	if (f4_read_inode(f, ino, &inode) ||
	    !(inode.i_flags & EXT4_PROJINHERIT_FL))
		return;
	dq = get_dq(f, qf, f4_inode_projid(f, &inode));
	if (!dq)
		return;
	limit = min_not_zero(dq->bsoft, dq->bhard) / f->blocksize;
	if (limit) {
		used = dq->space / f->blocksize;
		left = limit > used ? limit - used : 0;
		if (st->f_blocks > limit)
			st->f_blocks = limit;
		if (st->f_bfree > left)
			st->f_bfree = left;
		if (st->f_bavail > left)
			st->f_bavail = left;
	}
	limit = min_not_zero(dq->isoft, dq->ihard);
	if (limit) {
		left = limit > dq->inodes ? limit - dq->inodes : 0;
		if (st->f_files > limit)
			st->f_files = limit;
		if (st->f_ffree > left)
			st->f_ffree = left;
		if (st->f_favail > left)
			st->f_favail = left;
	}
}

/* ---- mount, flush, unmount --------------------------------------------- */

/* Write every changed record and header back to the quota files. */
int f4_quota_flush(struct f4fs *f)
{
	struct qfile *qf;
	struct dq *dq;
	int t, b, ret;

	if (!f->quota)
		return 0;
	for (t = 0; t < F4_MAXQUOTAS; t++) {
		qf = &f->quota->q[t];
		if (!qf->ino)
			continue;
		for (b = 0; b < QT_BUCKETS; b++) {
			for (dq = qf->hash[b]; dq; dq = dq->next) {
				if (!dq->dirty)
					continue;
				ret = write_dq(f, qf, dq);
				if (ret)
					return ret;
			}
		}
		if (qf->info_dirty) {
			ret = write_info(f, qf);
			if (ret)
				return ret;
		}
	}
	return 0;
}

static ext2_ino_t quota_inum(struct ext2_super_block *sb, int type)
{
	switch (type) {
	case F4_USRQUOTA:
		return sb->s_usr_quota_inum;
	case F4_GRPQUOTA:
		return sb->s_grp_quota_inum;
	default:
		return ext2fs_has_feature_project(sb) ?
		       sb->s_prj_quota_inum : 0;
	}
}

/*
 * Open the quota files of a read-write mount and start watching inode
 * writes.  Records are read on first use, not here: a file with many
 * ids costs nothing until they are touched.
 */
int f4_quota_init(struct f4fs *f)
{
	struct ext2_super_block *sb = f->fs->super;
	struct f4_quota *q;
	ext2_ino_t ino;
	int t, ret, any = 0;

	if (!ext2fs_has_feature_quota(sb) || !(f->fs->flags & EXT2_FLAG_RW))
		return 0;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	f->quota = q;
	for (t = 0; t < F4_MAXQUOTAS; t++) {
		q->q[t].type = t;
		ino = quota_inum(sb, t);
		if (!ino)
			continue;
		if (ino > sb->s_inodes_count) {
			ret = f4_corrupt(f, ino, "%s quota inode number out of "
					 "range", qt_name[t]);
			goto fail;
		}
		q->q[t].ino = ino;
		ret = read_info(f, &q->q[t]);
		if (ret) {
			f4_log(LOG_ERR, "%s: %s quota file (inode %u) is "
			       "damaged; run e2fsck", f->opts->device,
			       qt_name[t], ino);
			goto fail;
		}
		any = 1;
	}
	if (!any) {
		free(q);
		f->quota = NULL;
		return 0;
	}
	f->fs->write_inode = write_hook;
	return 0;
fail:
	f4_quota_free(f);
	return ret;
}

void f4_quota_free(struct f4fs *f)
{
	struct f4_quota *q = f->quota;
	struct dq *dq, *next;
	int t, b;

	if (!q)
		return;
	if (f->fs)
		f->fs->write_inode = NULL;
	for (t = 0; t < F4_MAXQUOTAS; t++)
		for (b = 0; b < QT_BUCKETS; b++)
			for (dq = q->q[t].hash[b]; dq; dq = next) {
				next = dq->next;
				free(dq);
			}
	free(q);
	f->quota = NULL;
}

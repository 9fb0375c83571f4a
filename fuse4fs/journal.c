// SPDX-License-Identifier: GPL-2.0
/*
 * journal.c --- replay of the internal jbd2 journal of ext3/ext4.
 *
 * The system libext2fs has no public journal API, so the jbd2 format is
 * read here.  The format and the replay rules follow the kernel's
 * documentation (Documentation/filesystems/ext4/journal.rst) and the
 * behaviour of the kernel's recovery:
 *
 *  - The log runs from s_start, expecting transaction s_sequence, and
 *    ends at the first block without the jbd2 magic, with an unexpected
 *    sequence number or of an unknown type.  A transaction counts only
 *    once its commit block has been seen and its checksums are good.
 *  - A block copy is not replayed if the block was revoked by the same or
 *    a later committed transaction.
 *  - A commit block with a bad checksum ends the replay before its
 *    transaction; if it is older than the previous commit it is a stale
 *    leftover of an earlier pass through the log and simply marks the end.
 *    A bad descriptor or revoke block checksum in a transaction whose
 *    commit looks current, a bad data block checksum or a malformed block
 *    make the kernel refuse the journal; we refuse too (-EUCLEAN), before
 *    writing anything.
 *
 * Everything is validated before the first write: the whole log is
 * scanned, all targets are checked to lie inside the file system and
 * outside the journal, the last logged copy of the primary superblock (if
 * any) must be a superblock, and all data checksums are verified.  A
 * descriptor block whose tags run off its end is damage (the kernel always
 * marks the last tag), as is a revoke block claiming more than a block.
 *
 * Fast commits (ext4 fast_commit) and external journals are not replayed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>

#include "journal.h"

#include "jbd2.h"

/* ext4 fast commit area: the first block starts with a HEAD tag. */
#define FC_TAG_HEAD		9

/* A run of journal blocks: journal block lblk.. maps to fs block pblk.. */
struct jrun {
	__u32 lblk;
	__u32 len;
	blk64_t pblk;
};

/* One logged copy of a file-system block, from a committed transaction. */
struct jcopy {
	blk64_t target;
	__u32 pos;		/* journal block holding the data */
	__u32 tid;
	__u32 csum;		/* tag checksum (v2: low 16 bits only) */
	__u32 flags;
};

/* A tag as decoded from a descriptor block. */
struct jtag {
	blk64_t target;
	__u32 flags;
	__u32 csum;
};

/*
 * Blocks that have a logged copy, with the newest transaction that revoked
 * them.  Only blocks with a copy need to be remembered: a revoke can only
 * cancel copies from its own or earlier transactions, and those have all
 * been seen by the time the revoking transaction commits.
 */
struct rv_slot {
	blk64_t key;		/* block + 1; 0 marks an empty slot */
	__u32 tid;
	int revoked;
};

struct rv_table {
	struct rv_slot *slot;
	size_t cap;		/* power of two */
	size_t used;
};

struct jnl {
	ext2_filsys fs;
	char *why;
	size_t whylen;
	f4_journal_log_fn log;
	void *logarg;

	unsigned int bs;
	unsigned char *buf;	/* one journal block */
	unsigned char *buf2;	/* another one */
	struct jtag *tags;	/* decoded tags of one descriptor */
	unsigned char sb[JSB_SIZE];

	ext2_ino_t ino;
	__u64 isize;
	struct jrun *runs;	/* sorted by lblk, contiguous from 0 */
	size_t nruns, capruns;
	blk64_t *meta;		/* mapping blocks of the journal inode */
	size_t nmeta, capmeta;
	int map_err;		/* bad block met while mapping, or ENOMEM */
	int map_hole;		/* the mapping from block 0 has a gap */
	__u64 map_bad;
	__u64 map_next;		/* journal blocks mapped from 0 without a gap */

	__u32 maxlen, first, last, sequence, start, jerrno;
	__u32 compat, incompat, rocompat, num_fc;
	int v1csum, v23csum, csum3, is64, async;
	unsigned int tag_bytes;
	__u32 seed;

	struct jcopy *copies;
	size_t ncopies, capcopies;
	struct rv_table rv;
	__u32 end_tid;
	unsigned long ntxn;
	unsigned long nrecords;	/* revoke records in committed transactions */
	int stopped_early, failed_commit, wrapped;
	blk64_t fs_limit;	/* first block past the file system */
	blk64_t region;		/* blocks in its partition or device */
};

static __u16 get_le16(const unsigned char *p)
{
	return (__u16)(p[0] | (p[1] << 8));
}

static __u32 get_le32(const unsigned char *p)
{
	return p[0] | ((__u32)p[1] << 8) | ((__u32)p[2] << 16) |
	       ((__u32)p[3] << 24);
}

/* Transaction ids wrap around; compare them the way jbd2 does. */
static int tid_geq(__u32 a, __u32 b)
{
	return (__s32)(a - b) >= 0;
}

static int jerr(struct jnl *j, int err, const char *fmt, ...)
{
	va_list ap;

	if (j->why && j->whylen) {
		va_start(ap, fmt);
		vsnprintf(j->why, j->whylen, fmt, ap);
		va_end(ap);
	}
	return err;
}

static void jlog(struct jnl *j, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	if (!j->log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	j->log(j->logarg, "%s", line);
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	size_t ncap;
	void *p;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 64;
	while (ncap < need)
		ncap *= 2;
	p = realloc(*arr, ncap * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

/* ---- revoke table ---------------------------------------------------- */

static size_t rv_hash(blk64_t key, size_t cap)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 17) & (cap - 1);
}

static struct rv_slot *rv_find(struct rv_table *t, blk64_t blk)
{
	size_t i;

	if (!t->cap)
		return NULL;
	for (i = rv_hash(blk + 1, t->cap); t->slot[i].key;
	     i = (i + 1) & (t->cap - 1))
		if (t->slot[i].key == blk + 1)
			return &t->slot[i];
	return NULL;
}

static int rv_insert(struct rv_table *t, blk64_t blk)
{
	struct rv_slot *old = t->slot;
	size_t oldcap = t->cap, i, k;

	if (rv_find(t, blk))
		return 0;
	if ((t->used + 1) * 2 > t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 1024;

		t->slot = calloc(ncap, sizeof(*t->slot));
		if (!t->slot) {
			t->slot = old;
			return -ENOMEM;
		}
		t->cap = ncap;
		for (k = 0; k < oldcap; k++) {
			if (!old[k].key)
				continue;
			for (i = rv_hash(old[k].key, ncap); t->slot[i].key;
			     i = (i + 1) & (ncap - 1))
				;
			t->slot[i] = old[k];
		}
		free(old);
	}
	for (i = rv_hash(blk + 1, t->cap); t->slot[i].key;
	     i = (i + 1) & (t->cap - 1))
		;
	t->slot[i].key = blk + 1;
	t->used++;
	return 0;
}

static int is_revoked(struct jnl *j, const struct jcopy *c)
{
	struct rv_slot *s = rv_find(&j->rv, c->target);

	return s && s->revoked && tid_geq(s->tid, c->tid);
}

/* ---- journal inode mapping ------------------------------------------- */

static int map_cb(ext2_filsys fs, blk64_t *blocknr, e2_blkcnt_t blockcnt,
		  blk64_t ref_blk, int ref_offset, void *priv)
{
	struct jnl *j = priv;
	struct jrun *r;
	blk64_t pblk = *blocknr;

	if (pblk < fs->super->s_first_data_block ||
	    pblk >= ext2fs_blocks_count(fs->super)) {
		j->map_err = EXT2_ET_BAD_BLOCK_NUM;
		j->map_bad = pblk;
		return BLOCK_ABORT;
	}
	if (blockcnt < 0) {
		if (grow((void **)&j->meta, &j->capmeta, j->nmeta + 1,
			 sizeof(*j->meta))) {
			j->map_err = ENOMEM;
			return BLOCK_ABORT;
		}
		j->meta[j->nmeta++] = pblk;
		return 0;
	}
	/*
	 * Only the part mapped without a hole from block 0 is usable; a hole
	 * inside the log is reported once the log's length is known.
	 */
	if (j->map_hole || (__u64)blockcnt != j->map_next ||
	    blockcnt >= 0xffffffffLL) {
		j->map_hole = 1;
		return 0;
	}
	j->map_next = blockcnt + 1;
	if (j->nruns) {
		r = &j->runs[j->nruns - 1];
		if (r->pblk + r->len == pblk && r->len < 0x80000000U) {
			r->len++;
			return 0;
		}
	}
	if (grow((void **)&j->runs, &j->capruns, j->nruns + 1,
		 sizeof(*j->runs))) {
		j->map_err = ENOMEM;
		return BLOCK_ABORT;
	}
	r = &j->runs[j->nruns++];
	r->lblk = blockcnt;
	r->len = 1;
	r->pblk = pblk;
	return 0;
}

static int map_journal(struct jnl *j)
{
	ext2_filsys fs = j->fs;
	struct ext2_inode inode;
	errcode_t err;

	j->ino = fs->super->s_journal_inum;
	if (j->ino < 1 || j->ino > fs->super->s_inodes_count)
		return jerr(j, -EUCLEAN, "journal inode number %u is out of range",
			    j->ino);
	err = ext2fs_read_inode(fs, j->ino, &inode);
	if (err)
		return jerr(j, -EUCLEAN, "cannot read journal inode %u: %s",
			    j->ino, error_message(err));
	if (!inode.i_links_count || !LINUX_S_ISREG(inode.i_mode))
		return jerr(j, -EUCLEAN,
			    "journal inode %u is not an in-use regular file",
			    j->ino);
	if (EXT2_I_SIZE(&inode) < (__u64)JBD2_MIN_BLOCKS * j->bs)
		return jerr(j, -EUCLEAN, "journal inode %u is too small (%llu bytes)",
			    j->ino, (unsigned long long)EXT2_I_SIZE(&inode));
	j->isize = EXT2_I_SIZE(&inode);
	err = ext2fs_block_iterate3(fs, j->ino, BLOCK_FLAG_READ_ONLY, NULL,
				    map_cb, j);
	if (j->map_err == ENOMEM)
		return jerr(j, -ENOMEM, "out of memory mapping the journal");
	if (j->map_err == EXT2_ET_BAD_BLOCK_NUM)
		return jerr(j, -EUCLEAN,
			    "journal inode maps block %llu, outside the file system",
			    (unsigned long long)j->map_bad);
	if (err)
		return jerr(j, -EUCLEAN, "cannot map journal inode %u: %s",
			    j->ino, error_message(err));
	if (!j->nruns)
		return jerr(j, -EUCLEAN, "journal inode %u has a hole at block 0",
			    j->ino);
	return 0;
}

static int jmap(struct jnl *j, __u32 lblk, blk64_t *pblk)
{
	size_t lo = 0, hi = j->nruns;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct jrun *r = &j->runs[mid];

		if (lblk < r->lblk)
			hi = mid;
		else if (lblk - r->lblk >= r->len)
			lo = mid + 1;
		else {
			*pblk = r->pblk + (lblk - r->lblk);
			return 0;
		}
	}
	return -1;
}

/* Is fs block blk part of the journal (log blocks or mapping blocks)? */
static int in_journal(struct jnl *j, blk64_t blk)
{
	size_t i;

	for (i = 0; i < j->nruns; i++)
		if (blk >= j->runs[i].pblk &&
		    blk - j->runs[i].pblk < j->runs[i].len)
			return 1;
	for (i = 0; i < j->nmeta; i++)
		if (blk == j->meta[i])
			return 1;
	return 0;
}

static int jread(struct jnl *j, __u32 pos, unsigned char *buf)
{
	blk64_t pblk;
	errcode_t err;

	if (jmap(j, pos, &pblk))
		return jerr(j, -EUCLEAN, "journal block %u is not mapped", pos);
	err = io_channel_read_blk64(j->fs->io, pblk, 1, buf);
	if (err)
		return jerr(j, -EIO, "reading journal block %u (fs block %llu): %s",
			    pos, (unsigned long long)pblk, error_message(err));
	return 0;
}

/* ---- journal superblock ---------------------------------------------- */

static __u32 jsb_csum(const unsigned char *sb)
{
	unsigned char tmp[JSB_SIZE];

	memcpy(tmp, sb, JSB_SIZE);
	memset(tmp + JSB_CHECKSUM, 0, 4);
	return ext2fs_crc32c_le(~0U, tmp, JSB_SIZE);
}

static int load_sb(struct jnl *j)
{
	unsigned char *sb = j->sb;
	__u32 type, bad;
	int err;

	err = jread(j, 0, j->buf);
	if (err)
		return err;
	memcpy(sb, j->buf, JSB_SIZE);
	if (get_be32(sb) != JBD2_MAGIC)
		return jerr(j, -EUCLEAN, "journal superblock has bad magic 0x%08x",
			    get_be32(sb));
	type = get_be32(sb + 4);
	if (type != JBD2_SB_V1 && type != JBD2_SB_V2)
		return jerr(j, -EUCLEAN, "journal superblock has unknown type %u",
			    type);
	if (get_be32(sb + JSB_BLOCKSIZE) != j->bs)
		return jerr(j, -EUCLEAN,
			    "journal block size %u differs from the file system's %u",
			    get_be32(sb + JSB_BLOCKSIZE), j->bs);
	j->maxlen = get_be32(sb + JSB_MAXLEN);
	j->first = get_be32(sb + JSB_FIRST);
	j->sequence = get_be32(sb + JSB_SEQUENCE);
	j->start = get_be32(sb + JSB_START);
	j->jerrno = get_be32(sb + JSB_ERRNO);
	if (type == JBD2_SB_V2) {
		j->compat = get_be32(sb + JSB_COMPAT);
		j->incompat = get_be32(sb + JSB_INCOMPAT);
		j->rocompat = get_be32(sb + JSB_ROCOMPAT);
	}

	/* The log must be mapped without holes over its whole length. */
	if (j->maxlen < JBD2_MIN_BLOCKS)
		return jerr(j, -EUCLEAN, "journal length %u blocks is too short",
			    j->maxlen);
	if (j->maxlen > j->map_next && j->map_hole)
		return jerr(j, -EUCLEAN, "journal inode has a hole at block %llu",
			    (unsigned long long)j->map_next);
	if (j->maxlen > j->map_next || (__u64)j->maxlen * j->bs > j->isize)
		return jerr(j, -EUCLEAN,
			    "journal length %u blocks is more than the journal inode holds",
			    j->maxlen);
	if (j->first == 0 || j->first >= j->maxlen)
		return jerr(j, -EUCLEAN, "journal first log block %u is invalid",
			    j->first);

	bad = j->incompat & ~JBD2_INCOMPAT_KNOWN;
	if (bad)
		return jerr(j, -EOPNOTSUPP,
			    "journal has unknown incompatible features 0x%x", bad);
	if (j->rocompat)
		return jerr(j, -EOPNOTSUPP,
			    "journal has unknown read-only features 0x%x",
			    j->rocompat);
	j->v1csum = !!(j->compat & JBD2_COMPAT_CHECKSUM);
	j->csum3 = !!(j->incompat & JBD2_INCOMPAT_CSUM_V3);
	j->v23csum = !!(j->incompat & (JBD2_INCOMPAT_CSUM_V2 |
				       JBD2_INCOMPAT_CSUM_V3));
	j->is64 = !!(j->incompat & JBD2_INCOMPAT_64BIT);
	j->async = !!(j->incompat & JBD2_INCOMPAT_ASYNC);
	if (j->csum3 && (j->incompat & JBD2_INCOMPAT_CSUM_V2))
		return jerr(j, -EUCLEAN,
			    "journal claims both checksum v2 and v3");
	if (j->v1csum && j->v23csum)
		return jerr(j, -EUCLEAN,
			    "journal claims both checksum v1 and v2/v3");
	if (j->v23csum) {
		if (sb[JSB_CSUM_TYPE] != JBD2_CRC32C_CHKSUM)
			return jerr(j, -EOPNOTSUPP,
				    "journal checksum type %u is not supported",
				    sb[JSB_CSUM_TYPE]);
		if (jsb_csum(sb) != get_be32(sb + JSB_CHECKSUM))
			return jerr(j, -EUCLEAN,
				    "journal superblock checksum does not match");
		j->seed = ext2fs_crc32c_le(~0U, sb + JSB_UUID, 16);
	}

	if (j->csum3)
		j->tag_bytes = 16;
	else
		j->tag_bytes = 8 + (j->is64 ? 4 : 0) +
			       ((j->incompat & JBD2_INCOMPAT_CSUM_V2) ? 2 : 0);

	j->last = j->maxlen;
	if (j->incompat & JBD2_INCOMPAT_FC) {
		j->num_fc = get_be32(sb + JSB_NUM_FC);
		if (!j->num_fc)
			j->num_fc = JBD2_DEFAULT_FC_BLOCKS;
		if (j->num_fc >= j->maxlen ||
		    j->maxlen - j->num_fc < JBD2_MIN_BLOCKS ||
		    j->maxlen - j->num_fc <= j->first)
			return jerr(j, -EUCLEAN,
				    "journal fast commit area (%u blocks) does not fit",
				    j->num_fc);
		j->last = j->maxlen - j->num_fc;
	}
	if (j->start && (j->start < j->first || j->start >= j->last))
		return jerr(j, -EUCLEAN,
			    "journal log start %u is outside the log (%u-%u)",
			    j->start, j->first, j->last - 1);
	return 0;
}

/* ---- the scan ---------------------------------------------------------- */

static int tail_ok(struct jnl *j, const unsigned char *blk)
{
	unsigned char *tmp = j->buf2;

	memcpy(tmp, blk, j->bs);
	memset(tmp + j->bs - JTAIL_SIZE, 0, JTAIL_SIZE);
	return ext2fs_crc32c_le(j->seed, tmp, j->bs) ==
	       get_be32(blk + j->bs - JTAIL_SIZE);
}

static int commit_csum_ok(struct jnl *j, const unsigned char *blk)
{
	unsigned char *tmp = j->buf2;

	memcpy(tmp, blk, j->bs);
	memset(tmp + JC_CSUM, 0, 4);
	return ext2fs_crc32c_le(j->seed, tmp, j->bs) ==
	       get_be32(blk + JC_CSUM);
}

static int data_csum_ok(struct jnl *j, const struct jcopy *c,
			const unsigned char *data)
{
	unsigned char seq[4];
	__u32 crc;

	if (!j->v23csum)
		return 1;
	put_be32(seq, c->tid);
	crc = ext2fs_crc32c_le(j->seed, seq, 4);
	crc = ext2fs_crc32c_le(crc, data, j->bs);
	if (j->csum3)
		return crc == c->csum;
	return (crc & 0xffff) == (c->csum & 0xffff);
}

/*
 * Decode the tags of a descriptor block.  A kernel always marks the last
 * tag; a tag list that runs off the end of the block is damage, unless the
 * block is already suspect (bad checksum), when we only need its length
 * to skip it, as the kernel does.
 */
static int parse_tags(struct jnl *j, const unsigned char *blk, __u32 tid,
		      __u32 pos, int strict, unsigned int *ntags)
{
	unsigned int off = JHDR_SIZE, n = 0;
	unsigned int end = j->bs - (j->v23csum ? JTAIL_SIZE : 0);
	int last = 0;

	while (off + j->tag_bytes <= end) {
		const unsigned char *t = blk + off;
		struct jtag *tg = &j->tags[n++];

		tg->target = get_be32(t);
		tg->flags = get_be16(t + 6);
		if (j->csum3)
			tg->csum = get_be32(t + 12);
		else
			tg->csum = get_be16(t + 4);
		if (j->is64)
			tg->target |= (blk64_t)get_be32(t + 8) << 32;
		off += j->tag_bytes;
		if (!(tg->flags & JBD2_FLAG_SAME_UUID))
			off += 16;
		if (tg->flags & JBD2_FLAG_LAST_TAG) {
			last = 1;
			break;
		}
	}
	if (strict && (!last || off > end))
		return jerr(j, -EUCLEAN,
			    "descriptor block %u of transaction %u is truncated: its tags run past the end of the block",
			    pos, tid);
	*ntags = n;
	return 0;
}

static __u32 next_pos(struct jnl *j, __u32 pos, int *wrapped)
{
	if (++pos >= j->last) {
		pos = j->first;
		*wrapped = 1;
	}
	return pos;
}

static int apply_revoke_block(struct jnl *j, __u32 pos, __u32 tid)
{
	unsigned int rlen = j->is64 ? 8 : 4, off, count;
	unsigned int end = j->bs - (j->v23csum ? JTAIL_SIZE : 0);
	struct rv_slot *s;
	blk64_t blk;
	int err;

	err = jread(j, pos, j->buf);
	if (err)
		return err;
	count = get_be32(j->buf + JR_COUNT);
	if (count > end)
		return jerr(j, -EUCLEAN,
			    "revoke block %u of transaction %u claims %u bytes of records",
			    pos, tid, count);
	for (off = JR_HDR_SIZE; off + rlen <= count; off += rlen) {
		if (j->is64)
			blk = get_be64(j->buf + off);
		else
			blk = get_be32(j->buf + off);
		j->nrecords++;
		s = rv_find(&j->rv, blk);
		if (s) {
			s->revoked = 1;
			s->tid = tid;
		}
	}
	return 0;
}

/* Where the scan of the log is. */
struct scan {
	__u32 pos;		/* next journal block to read */
	__u32 tid;		/* transaction expected */
	__u64 walked;		/* blocks read so far */
	__u64 loglen;
	__u64 last_time;	/* commit time of the last transaction */
	size_t first_copy;	/* first copy of the open transaction */
	__u32 *rvpos;		/* revoke blocks of the open transaction */
	size_t nrv, caprv;
	__u32 crc;		/* checksum v1 of the open transaction */
	int pending;		/* the open transaction has blocks */
	int suspect;		/* ... one of them with a bad checksum */
	int wrap;		/* the scan has wrapped around the log */
};

/* Scan step results; negative values are errors. */
enum { SCAN_NEXT = 0, SCAN_END = 1, SCAN_STALE = 2 };

/*
 * A transaction's commit block has been accepted: its copies become
 * replayable and its revoke records take effect.
 */
static int accept_txn(struct jnl *j, struct scan *st, __u64 ctime)
{
	size_t i;
	int err;

	for (i = st->first_copy; i < j->ncopies; i++)
		if (rv_insert(&j->rv, j->copies[i].target))
			return jerr(j, -ENOMEM, "out of memory");
	for (i = 0; i < st->nrv; i++) {
		err = apply_revoke_block(j, st->rvpos[i], st->tid);
		if (err)
			return err;
	}
	j->ntxn++;
	if (st->wrap)
		j->wrapped = 1;
	st->last_time = ctime;
	st->tid++;
	st->first_copy = j->ncopies;
	st->nrv = 0;
	st->pending = 0;
	st->crc = ~0U;
	return SCAN_NEXT;
}

/* The descriptor block in j->buf, at blkpos, and the data blocks after it. */
static int scan_descriptor(struct jnl *j, struct scan *st, __u32 blkpos)
{
	unsigned int ntags = 0, i;
	struct jcopy *c;
	int err;

	st->pending = 1;
	if (j->v23csum && !tail_ok(j, j->buf))
		st->suspect = 1;
	if (j->v1csum)
		st->crc = ext2fs_crc32_be(st->crc, j->buf, j->bs);
	err = parse_tags(j, j->buf, st->tid, blkpos, !st->suspect, &ntags);
	if (err)
		return err;
	for (i = 0; i < ntags; i++) {
		if (st->walked >= st->loglen) {
			if (st->suspect)
				return SCAN_STALE;
			return jerr(j, -EUCLEAN,
				    "transaction %u is longer than the journal",
				    st->tid);
		}
		if (grow((void **)&j->copies, &j->capcopies, j->ncopies + 1,
			 sizeof(*j->copies)))
			return jerr(j, -ENOMEM, "out of memory");
		c = &j->copies[j->ncopies++];
		c->target = j->tags[i].target;
		c->flags = j->tags[i].flags;
		c->csum = j->tags[i].csum;
		c->tid = st->tid;
		c->pos = st->pos;
		if (j->v1csum) {
			err = jread(j, st->pos, j->buf2);
			if (err)
				return err;
			st->crc = ext2fs_crc32_be(st->crc, j->buf2, j->bs);
		}
		st->pos = next_pos(j, st->pos, &st->wrap);
		st->walked++;
	}
	return SCAN_NEXT;
}

/* The revoke block in j->buf, at blkpos: applied if its transaction commits. */
static int scan_revoke(struct jnl *j, struct scan *st, __u32 blkpos)
{
	st->pending = 1;
	if (j->v23csum && !tail_ok(j, j->buf))
		st->suspect = 1;
	if (grow((void **)&st->rvpos, &st->caprv, st->nrv + 1,
		 sizeof(*st->rvpos)))
		return jerr(j, -ENOMEM, "out of memory");
	st->rvpos[st->nrv++] = blkpos;
	return SCAN_NEXT;
}

static int commit_ok(struct jnl *j, struct scan *st, const unsigned char *b)
{
	__u32 sum = get_be32(b + JC_CSUM);

	if (j->v1csum) {
		/* A v1 commit may also carry no checksum at all. */
		if (b[JC_CSUM_TYPE] == 0 && b[JC_CSUM_SIZE] == 0 && sum == 0)
			return 1;
		return b[JC_CSUM_TYPE] == JBD2_CRC32_CHKSUM &&
		       b[JC_CSUM_SIZE] == JBD2_CRC32_CHKSUM_SIZE &&
		       sum == st->crc;
	}
	if (j->v23csum)
		return commit_csum_ok(j, b);
	return 1;
}

/*
 * The commit block in j->buf.  A block with a bad checksum whose commit
 * time goes backwards is a leftover of an earlier trip around the log,
 * i.e. the end of this one.
 */
static int scan_commit(struct jnl *j, struct scan *st)
{
	__u64 ctime = get_be64(j->buf + JC_COMMIT_SEC);

	if (st->suspect) {
		if (ctime < st->last_time)
			return SCAN_STALE;
		return jerr(j, -EUCLEAN,
			    "transaction %u has a descriptor or revoke block with a bad checksum",
			    st->tid);
	}
	if (!commit_ok(j, st, j->buf)) {
		if (ctime < st->last_time)
			return SCAN_STALE;
		/* Neither this transaction nor anything after it. */
		j->stopped_early = 1;
		if (!j->async)
			j->failed_commit = 1;
		jlog(j, "journal: transaction %u has a bad commit checksum, replay stops before it",
		     st->tid);
		return SCAN_STALE;
	}
	return accept_txn(j, st, ctime);
}

/*
 * Walk the log from s_start: collect the block copies of the committed
 * transactions and the revokes that apply to them, and find where the
 * log ends (j->end_tid, the first transaction not replayed).
 */
static int scan(struct jnl *j)
{
	struct scan st = {
		.pos = j->start, .tid = j->sequence,
		.loglen = j->last - j->first, .crc = ~0U,
		.first_copy = j->ncopies,
	};
	__u32 blkpos, type;
	int ret = SCAN_NEXT;

	j->end_tid = j->sequence;
	if (!j->start)
		return 0;
	while (ret == SCAN_NEXT && st.walked < st.loglen) {
		ret = jread(j, st.pos, j->buf);
		if (ret)
			break;
		type = get_be32(j->buf + 4);
		if (get_be32(j->buf) != JBD2_MAGIC ||
		    get_be32(j->buf + 8) != st.tid)
			break;
		blkpos = st.pos;
		st.pos = next_pos(j, st.pos, &st.wrap);
		st.walked++;
		if (type == JBD2_DESCRIPTOR)
			ret = scan_descriptor(j, &st, blkpos);
		else if (type == JBD2_REVOKE)
			ret = scan_revoke(j, &st, blkpos);
		else if (type == JBD2_COMMIT)
			ret = scan_commit(j, &st);
		else
			ret = SCAN_END;		/* unknown block type */
	}
	if (ret == SCAN_STALE) {
		/* The open transaction is dropped without complaint. */
		st.pending = 0;
		ret = 0;
	}
	if (ret >= 0 && st.pending) {
		/* A transaction without its commit block is not replayed. */
		j->stopped_early = 1;
		jlog(j, "journal: transaction %u is incomplete (no commit block), not replayed",
		     st.tid);
	}
	j->ncopies = st.first_copy;
	j->end_tid = st.tid;
	free(st.rvpos);
	return ret < 0 ? ret : 0;
}

/* ---- validation ------------------------------------------------------ */

#define SB_FIELD(s, f)	((s) + offsetof(struct ext2_super_block, f))

/*
 * The highest block a replay may write: the file system's end, or the
 * end recorded in the logged copy of the primary superblock (an online
 * resize journals the new superblock together with the blocks past the
 * old end); never past the end of its partition or device (j->region,
 * which the caller knows from where the file system lies, not from
 * anything on it).  That copy must be a superblock with this file
 * system's block size: replaying anything else there would destroy the
 * file system.
 */
static int find_limit(struct jnl *j)
{
	ext2_filsys fs = j->fs;
	blk64_t sbblk = j->bs == 1024 ? 1 : 0;
	unsigned int sboff = j->bs == 1024 ? 0 : 1024;
	const struct jcopy *last = NULL;
	const unsigned char *s;
	blk64_t count;
	size_t i;
	int err;

	j->fs_limit = ext2fs_blocks_count(fs->super);
	if (j->region && j->fs_limit > j->region)
		j->fs_limit = j->region;
	for (i = 0; i < j->ncopies; i++)
		if (j->copies[i].target == sbblk && !is_revoked(j, &j->copies[i]))
			last = &j->copies[i];
	if (!last)
		return 0;
	err = jread(j, last->pos, j->buf);
	if (err)
		return err;
	s = j->buf + sboff;
	if (get_le16(SB_FIELD(s, s_magic)) != EXT2_SUPER_MAGIC ||
	    get_le32(SB_FIELD(s, s_log_block_size)) !=
	    fs->super->s_log_block_size)
		return jerr(j, -EUCLEAN,
			    "transaction %u logs block %llu, which holds the superblock, without a valid superblock",
			    last->tid, (unsigned long long)sbblk);
	count = get_le32(SB_FIELD(s, s_blocks_count));
	if (get_le32(SB_FIELD(s, s_feature_incompat)) &
	    EXT4_FEATURE_INCOMPAT_64BIT)
		count |= (blk64_t)get_le32(SB_FIELD(s, s_blocks_count_hi)) << 32;
	/* Growing, but only into what the partition or device holds */
	if (count > j->fs_limit && j->region > j->fs_limit)
		j->fs_limit = count < j->region ? count : j->region;
	return 0;
}

static int validate(struct jnl *j)
{
	blk64_t lo = j->fs->super->s_first_data_block;
	size_t i;
	int err;

	err = find_limit(j);
	if (err)
		return err;
	for (i = 0; i < j->ncopies; i++) {
		const struct jcopy *c = &j->copies[i];

		if (is_revoked(j, c))
			continue;
		if (c->target < lo || c->target >= j->fs_limit)
			return jerr(j, -EUCLEAN,
				    "transaction %u writes block %llu, outside the file system (%llu blocks)",
				    c->tid, (unsigned long long)c->target,
				    (unsigned long long)j->fs_limit);
		if (in_journal(j, c->target))
			return jerr(j, -EUCLEAN,
				    "transaction %u writes block %llu, inside the journal",
				    c->tid, (unsigned long long)c->target);
		if (!j->v23csum)
			continue;
		err = jread(j, c->pos, j->buf);
		if (err)
			return err;
		if (!data_csum_ok(j, c, j->buf))
			return jerr(j, -EUCLEAN,
				    "transaction %u: logged copy of block %llu (journal block %u) fails its checksum",
				    c->tid, (unsigned long long)c->target,
				    c->pos);
	}
	return 0;
}

/* Live fast commits follow the last full commit with its successor's tid. */
static int check_fast_commit(struct jnl *j)
{
	__u32 pos = j->last + 1;
	int err;

	if (!(j->incompat & JBD2_INCOMPAT_FC) || pos >= j->maxlen)
		return 0;
	err = jread(j, pos, j->buf);
	if (err)
		return err;
	if (get_le16(j->buf) == FC_TAG_HEAD && get_le16(j->buf + 2) >= 8 &&
	    get_le32(j->buf + 8) == j->end_tid)
		return jerr(j, -EOPNOTSUPP,
			    "journal holds fast commits (fast_commit) for transaction %u; fast commit replay is not supported, run e2fsck",
			    j->end_tid);
	return 0;
}

/* ---- setup ------------------------------------------------------------ */

static void jnl_free(struct jnl *j)
{
	free(j->buf);
	free(j->buf2);
	free(j->tags);
	free(j->runs);
	free(j->meta);
	free(j->copies);
	free(j->rv.slot);
}

/*
 * Is there a journal to recover at all, and is it ours to recover?
 * 0 when not, 1 when it is, negative errno when we cannot.
 */
static int fs_needs_recovery(struct jnl *j)
{
	struct ext2_super_block *s = j->fs->super;
	int has_journal = ext2fs_has_feature_journal(s);
	int recover = ext2fs_has_feature_journal_needs_recovery(s);
	int uuid_set = 0, i;

	if (!recover)
		return 0;
	if (!has_journal)
		return jerr(j, -EUCLEAN,
			    "needs_recovery is set but the file system has no journal");
	for (i = 0; i < 16; i++)
		uuid_set |= s->s_journal_uuid[i];
	if (!s->s_journal_inum) {
		if (s->s_journal_dev || uuid_set)
			return jerr(j, -EOPNOTSUPP,
				    "the journal is external (journal_dev 0x%x): external journals are not supported",
				    s->s_journal_dev);
		return jerr(j, -EUCLEAN, "has_journal is set but no journal inode");
	}
	return 1;
}

/* Load, scan and validate; 1 when a replay can follow, else <= 0. */
static int jnl_prepare(struct jnl *j)
{
	int err;

	err = fs_needs_recovery(j);
	if (err <= 0)
		return err;
	j->bs = j->fs->blocksize;
	j->buf = malloc(j->bs);
	j->buf2 = malloc(j->bs);
	j->tags = calloc(j->bs / 8 + 1, sizeof(*j->tags));
	if (!j->buf || !j->buf2 || !j->tags)
		return jerr(j, -ENOMEM, "out of memory");
	err = map_journal(j);
	if (!err)
		err = load_sb(j);
	if (!err)
		err = scan(j);
	if (!err)
		err = check_fast_commit(j);
	if (!err)
		err = validate(j);
	return err ? err : 1;
}

int f4_journal_check(ext2_filsys fs, unsigned long long fs_bytes,
		     char *why, size_t whylen)
{
	struct jnl j;
	int ret;

	memset(&j, 0, sizeof(j));
	j.fs = fs;
	j.region = fs_bytes / fs->blocksize;
	j.why = why;
	j.whylen = whylen;
	if (why && whylen)
		why[0] = 0;
	ret = jnl_prepare(&j);
	jnl_free(&j);
	return ret;
}

/*
 * A journal that needs no replay must still be one: ext4 refuses to mount
 * over a journal inode or superblock it can't make sense of.
 */
int f4_journal_validate(ext2_filsys fs, char *why, size_t whylen)
{
	struct jnl j;
	int ret;

	if (why && whylen)
		why[0] = 0;
	if (!ext2fs_has_feature_journal(fs->super) ||
	    !fs->super->s_journal_inum)
		return 0;		/* none, or external: nothing to read */
	memset(&j, 0, sizeof(j));
	j.fs = fs;
	j.why = why;
	j.whylen = whylen;
	j.bs = fs->blocksize;
	j.buf = malloc(j.bs);
	if (!j.buf)
		ret = jerr(&j, -ENOMEM, "out of memory");
	else
		ret = map_journal(&j);
	if (!ret)
		ret = load_sb(&j);
	jnl_free(&j);
	return ret;
}

/* ---- replay ------------------------------------------------------------ */

static int replay(struct jnl *j, struct f4_journal_report *rep)
{
	errcode_t err;
	size_t i;
	int ret;

	for (i = 0; i < j->ncopies; i++) {
		const struct jcopy *c = &j->copies[i];

		if (is_revoked(j, c)) {
			rep->revoked++;
			continue;
		}
		if (c->target < j->fs->super->s_first_data_block ||
		    c->target >= j->fs_limit)
			return jerr(j, -EUCLEAN,
				    "transaction %u writes block %llu, outside the file system (%llu blocks)",
				    c->tid, (unsigned long long)c->target,
				    (unsigned long long)j->fs_limit);
		ret = jread(j, c->pos, j->buf);
		if (ret)
			return ret;
		if (c->flags & JBD2_FLAG_ESCAPE)
			put_be32(j->buf, JBD2_MAGIC);
		err = io_channel_write_blk64(j->fs->io, c->target, 1, j->buf);
		if (err)
			return jerr(j, -EIO, "writing block %llu: %s",
				    (unsigned long long)c->target,
				    error_message(err));
		rep->blocks++;
	}
	err = io_channel_flush(j->fs->io);
	if (err)
		return jerr(j, -EIO, "flushing replayed blocks: %s",
			    error_message(err));
	return 0;
}

/* Mark the journal empty, with a sequence past anything in the log. */
static int reset_journal(struct jnl *j)
{
	unsigned char *sb = j->buf;
	blk64_t pblk;
	errcode_t err;

	if (jmap(j, 0, &pblk))
		return jerr(j, -EUCLEAN, "journal superblock is not mapped");
	err = io_channel_read_blk64(j->fs->io, pblk, 1, sb);
	if (err)
		return jerr(j, -EIO, "re-reading the journal superblock: %s",
			    error_message(err));
	if (memcmp(sb, j->sb, JSB_SIZE))
		return jerr(j, -EUCLEAN,
			    "journal superblock changed during replay");
	put_be32(sb + JSB_SEQUENCE, j->end_tid + 1);
	put_be32(sb + JSB_START, 0);
	put_be32(sb + JSB_ERRNO, 0);	/* moved to the file system's state */
	if (j->v23csum)
		put_be32(sb + JSB_CHECKSUM, jsb_csum(sb));
	err = io_channel_write_blk64(j->fs->io, pblk, 1, sb);
	if (!err)
		err = io_channel_flush(j->fs->io);
	if (err)
		return jerr(j, -EIO, "writing the journal superblock: %s",
			    error_message(err));
	return 0;
}

/*
 * Clear needs_recovery in the primary superblock as it is on disk now
 * (the replay may have rewritten it), and bring its free block and inode
 * totals in line with the group descriptors as the kernel does at mount.
 * Only the primary superblock is written.
 */
static int finish_super(struct jnl *j, const char *device,
			const char *io_options, int mark_error)
{
	ext2_filsys fs;
	__u64 free_blocks = 0, free_inodes = 0;
	dgrp_t g;
	errcode_t err;

	err = ext2fs_open2(device, io_options,
			   EXT2_FLAG_RW | EXT2_FLAG_64BITS |
			   EXT2_FLAG_IGNORE_CSUM_ERRORS | EXT2_FLAG_SKIP_MMP,
			   0, 0, unix_io_manager, &fs);
	if (err)
		return jerr(j, -EUCLEAN,
			    "cannot open the file system after replay: %s",
			    error_message(err));
	for (g = 0; g < fs->group_desc_count; g++) {
		free_blocks += ext2fs_bg_free_blocks_count(fs, g);
		free_inodes += ext2fs_bg_free_inodes_count(fs, g);
	}
	free_blocks = EXT2FS_C2B(fs, free_blocks);
	if (free_blocks <= ext2fs_blocks_count(fs->super))
		ext2fs_free_blocks_count_set(fs->super, free_blocks);
	if (free_inodes <= fs->super->s_inodes_count)
		fs->super->s_free_inodes_count = free_inodes;
	ext2fs_clear_feature_journal_needs_recovery(fs->super);
	if (mark_error)
		fs->super->s_state |= EXT2_ERROR_FS;
	fs->flags |= EXT2_FLAG_SUPER_ONLY | EXT2_FLAG_MASTER_SB_ONLY;
	ext2fs_mark_super_dirty(fs);
	err = ext2fs_close_free(&fs);
	if (err)
		return jerr(j, -EIO, "writing the superblock: %s",
			    error_message(err));
	return 0;
}

/*
 * Drop the handle used for the replay without letting libext2fs write its
 * stale copy of the superblock: ext2fs_close() would flush it (and after
 * any write it marks the superblock dirty to account s_kbytes_written).
 */
static void drop_fs(ext2_filsys fs)
{
	fs->flags &= ~(EXT2_FLAG_DIRTY | EXT2_FLAG_CHANGED);
	if (ext2fs_has_feature_mmp(fs->super))
		ext2fs_mmp_stop(fs);
	ext2fs_free(fs);
}

int f4_journal_recover(const char *device, const char *io_options,
		       unsigned long long fs_bytes,
		       struct f4_journal_report *rep,
		       f4_journal_log_fn log, void *logarg,
		       char *why, size_t whylen)
{
	struct f4_journal_report local;
	struct jnl j;
	ext2_filsys fs = NULL;
	errcode_t err;
	int ret, mark_error;

	if (!rep)
		rep = &local;
	memset(rep, 0, sizeof(*rep));
	memset(&j, 0, sizeof(j));
	j.why = why;
	j.whylen = whylen;
	j.log = log;
	j.logarg = logarg;
	if (why && whylen)
		why[0] = 0;

	err = ext2fs_open2(device, io_options,
			   EXT2_FLAG_RW | EXT2_FLAG_64BITS | EXT2_FLAG_EXCLUSIVE |
			   EXT2_FLAG_IGNORE_CSUM_ERRORS,
			   0, 0, unix_io_manager, &fs);
	if (err)
		return jerr(&j, err == EXT2_ET_UNSUPP_FEATURE ||
				err == EXT2_ET_RO_UNSUPP_FEATURE ?
				-EOPNOTSUPP : -EIO,
			    "cannot open %s: %s", device, error_message(err));
	j.fs = fs;
	j.region = fs_bytes / fs->blocksize;
	ret = jnl_prepare(&j);
	if (ret <= 0) {
		if (ret == 0)
			jlog(&j, "journal: no recovery needed");
		goto out;
	}

	rep->journal_errno = (int)j.jerrno;
	if (j.start)
		jlog(&j, "journal: recovering from log block %u, transaction %u",
		     j.start, j.sequence);
	else
		jlog(&j, "journal: log is empty, clearing needs_recovery");
	ret = replay(&j, rep);
	if (ret)
		goto out;
	ret = reset_journal(&j);
	if (ret)
		goto out;
	/*
	 * The superblock is updated through a second handle that reads what
	 * the replay left on disk; this one stays open (holding MMP, if any)
	 * until then, but never writes its stale superblock.
	 */
	mark_error = j.failed_commit || j.jerrno;
	ret = finish_super(&j, device, io_options, mark_error);
	if (ret)
		goto out;

	rep->transactions = j.ntxn;
	if (j.ntxn) {
		rep->first_tid = j.sequence;
		rep->last_tid = (__u32)(j.end_tid - 1);
	}
	rep->stopped_early = j.stopped_early;
	rep->failed_commit = j.failed_commit;
	rep->fs_error = mark_error;
	rep->wrapped = j.wrapped;
	rep->next_tid = (__u32)(j.end_tid + 1);
	if (j.jerrno)
		jlog(&j, "journal: errno %d was recorded in the journal; file system marked as having errors",
		     (int)j.jerrno);
	if (j.failed_commit)
		jlog(&j, "journal: file system marked as having errors (corrupt transaction %u)",
		     j.end_tid);
	jlog(&j, "journal: replayed %lu transactions (%llu-%llu), %lu blocks written, %lu revoked copies skipped (%lu revoke records)%s",
	     rep->transactions, rep->first_tid, rep->last_tid, rep->blocks,
	     rep->revoked, j.nrecords,
	     j.stopped_early ? ", stopped early" : "");
	ret = 0;
out:
	if (fs)
		drop_fs(fs);
	jnl_free(&j);
	return ret;
}

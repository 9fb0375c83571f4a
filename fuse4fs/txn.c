/*
 * txn.c - journaled writes: the block cache's dirty set committed as jbd2
 * transactions in the file system's own (internal) journal.
 *
 * While a journaled file system is mounted read-write, every metadata
 * block libext2fs writes stays pinned in the block cache (blockio.c) as
 * part of the running transaction.  A commit happens at an operation
 * boundary (under f->lock): the superblock, group descriptors and bitmaps
 * are put into the cache by ext2fs_flush2(), then
 *
 *   1. descriptor blocks with their tags, the block copies (escaped when
 *      they begin with the jbd2 magic) and revoke blocks go to the log;
 *   2. fdatasync: the log and every file data block written before it
 *      (ordered data), and the previous transaction's checkpoint;
 *   3. the commit block, and the journal superblock pointing at this
 *      transaction (the previous one is home and durable now);
 *   4. fdatasync: the transaction is durable;
 *   5. checkpoint: the blocks are written home, not yet synced: the next
 *      commit's first fdatasync makes them durable before the journal
 *      superblock moves past this transaction.
 *
 * So at any instant the journal holds at most the last two transactions,
 * and replaying from the journal superblock's start gives the state after
 * the last durable commit.  Data written in place over a block the last
 * transaction logged is revoked by the next one; blocks freed in a
 * transaction are not given to file data until the journal superblock
 * can no longer point at it (alloc.c keeps them for two commits).
 *
 * At mount needs_recovery is set (written in place, durable) and stays set
 * while mounted; a clean unmount checkpoints, leaves an empty journal with
 * the sequence advanced and clears it.  The journal superblock's features
 * are kept as mke2fs made them; a journal we cannot write (checksum v1,
 * async commit, fast commits) leaves the mount unjournaled, as before.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "fuse4fs.h"

#include "jbd2.h"

#define STAGE_BLOCKS		256	/* contiguous blocks per write */

struct f4_txn {
	struct f4fs *f;
	io_channel io;
	unsigned int bs;
	blk64_t *map;			/* journal block -> fs block */
	__u32 maxlen, first, last;
	__u32 head;			/* next log block to write */
	__u32 prev_start;		/* last commit's start; 0: none */
	__u32 tid;			/* the next transaction's sequence */
	__u32 incompat;
	int csum, csum3, is64;
	unsigned int tag_bytes;
	__u32 seed;
	unsigned char uuid[16];
	unsigned char *jsb;		/* journal superblock, a whole block */
	unsigned char *blk;		/* scratch block */
	unsigned char *stage;		/* STAGE_BLOCKS contiguous blocks */
	blk64_t stage_first;
	size_t nstage;
	size_t soft_limit, hard_limit;	/* blocks in a transaction */
	int dead;
	unsigned long commits, overflows;
};

static __u32 crc(struct f4_txn *t, __u32 c, const void *buf, size_t len)
{
	return ext2fs_crc32c_le(c, buf, len);
}

/* ---- staged writes: contiguous runs go to the device in one write ---- */

static errcode_t stage_flush(struct f4_txn *t)
{
	errcode_t err = 0;

	if (t->nstage)
		err = f4_io_raw_write(t->io, t->stage_first, t->nstage,
				      t->stage);
	t->nstage = 0;
	return err;
}

static errcode_t stage_add(struct f4_txn *t, blk64_t where, const void *data)
{
	errcode_t err;

	if (t->nstage && (t->nstage == STAGE_BLOCKS ||
			  where != t->stage_first + t->nstage)) {
		err = stage_flush(t);
		if (err)
			return err;
	}
	if (!t->nstage)
		t->stage_first = where;
	memcpy(t->stage + t->nstage * t->bs, data, t->bs);
	t->nstage++;
	return 0;
}

/* Append one block to the log at head. */
static errcode_t log_add(struct f4_txn *t, const void *data)
{
	errcode_t err = stage_add(t, t->map[t->head], data);

	if (++t->head >= t->last)
		t->head = t->first;
	return err;
}

/* ---- the journal superblock ----------------------------------------- */

static errcode_t write_jsb(struct f4_txn *t, __u32 start, __u32 seq)
{
	errcode_t err;

	put_be32(t->jsb + JSB_START, start);
	put_be32(t->jsb + JSB_SEQUENCE, seq);
	if (t->csum) {
		put_be32(t->jsb + JSB_CHECKSUM, 0);
		put_be32(t->jsb + JSB_CHECKSUM,
			 crc(t, ~0U, t->jsb, JSB_SIZE));
	}
	err = stage_flush(t);
	if (!err)
		err = f4_io_raw_write(t->io, t->map[0], 1, t->jsb);
	return err;
}

/*
 * Empty the log: the last transaction is home and durable first, then the
 * journal superblock says "nothing to replay".  Nothing logged before can
 * be replayed after this, so nothing needs revoking either.
 */
static errcode_t reset_log(struct f4_txn *t)
{
	errcode_t err;

	err = stage_flush(t);
	if (!err)
		err = f4_io_sync(t->io);
	if (!err)
		err = write_jsb(t, 0, t->tid);
	if (!err)
		err = f4_io_sync(t->io);
	if (err)
		return err;
	t->prev_start = 0;
	t->head = t->first;
	f4_io_forget_prev(t->io);
	return 0;
}

/* ---- mount ------------------------------------------------------------ */

static int map_journal(struct f4_txn *t, ext2_ino_t ino)
{
	ext2_filsys fs = t->f->fs;
	struct ext2_inode inode;
	errcode_t err;
	__u64 len;
	__u32 i;

	err = ext2fs_read_inode(fs, ino, &inode);
	if (err)
		return f4_errno(err);
	/* The size is the image's word: no bigger than the file system */
	len = EXT2_I_SIZE(&inode) / fs->blocksize;
	if (len < 1024 || len > ext2fs_blocks_count(fs->super) ||
	    len > UINT32_MAX)
		return -EUCLEAN;
	t->map = calloc(len, sizeof(*t->map));
	if (!t->map)
		return -ENOMEM;
	t->maxlen = len;
	for (i = 0; i < t->maxlen; i++) {
		err = ext2fs_bmap2(fs, ino, &inode, NULL, 0, i, NULL,
				   &t->map[i]);
		if (err || !t->map[i] ||
		    t->map[i] >= ext2fs_blocks_count(fs->super))
			return -EUCLEAN;
	}
	return 0;
}

/* Can we write this journal the way it is formatted?  0, or why not. */
static const char *check_jsb(struct f4_txn *t)
{
	unsigned char *sb = t->jsb;
	__u32 type = get_be32(sb + 4), compat = 0, ro = 0;

	if (get_be32(sb) != JBD2_MAGIC)
		return "bad journal superblock magic";
	if (type != JBD2_SB_V1 && type != JBD2_SB_V2)
		return "unknown journal superblock type";
	if (get_be32(sb + JSB_BLOCKSIZE) != t->bs)
		return "journal block size differs from the file system's";
	if (type == JBD2_SB_V2) {
		compat = get_be32(sb + JSB_COMPAT);
		t->incompat = get_be32(sb + JSB_INCOMPAT);
		ro = get_be32(sb + JSB_ROCOMPAT);
	}
	if (compat & JBD2_COMPAT_CHECKSUM)
		return "journal uses checksum v1";
	if (t->incompat & (JBD2_INCOMPAT_ASYNC | JBD2_INCOMPAT_FC))
		return "journal uses async commit or fast commits";
	if (t->incompat & ~(JBD2_INCOMPAT_REVOKE | JBD2_INCOMPAT_64BIT |
			    JBD2_INCOMPAT_CSUM_V2 | JBD2_INCOMPAT_CSUM_V3))
		return "journal has unknown features";
	if (ro)
		return "journal has unknown read-only features";
	if (get_be32(sb + JSB_MAXLEN) > t->maxlen ||
	    get_be32(sb + JSB_MAXLEN) < 1024)
		return "journal length does not match its inode";
	t->maxlen = get_be32(sb + JSB_MAXLEN);
	t->first = get_be32(sb + JSB_FIRST);
	if (!t->first || t->first >= t->maxlen)
		return "bad first log block";
	if (get_be32(sb + JSB_START))
		return "journal is not empty (not recovered)";
	t->last = t->maxlen;
	t->tid = get_be32(sb + JSB_SEQUENCE);
	t->csum3 = !!(t->incompat & JBD2_INCOMPAT_CSUM_V3);
	t->csum = !!(t->incompat & (JBD2_INCOMPAT_CSUM_V2 |
				    JBD2_INCOMPAT_CSUM_V3));
	t->is64 = !!(t->incompat & JBD2_INCOMPAT_64BIT);
	if (!t->is64 && ext2fs_blocks_count(t->f->fs->super) > 0xffffffffULL)
		return "journal has 32-bit block numbers, the file system "
		       "more blocks";
	memcpy(t->uuid, sb + JSB_UUID, 16);
	if (t->csum) {
		t->seed = crc(t, ~0U, t->uuid, 16);
		put_be32(t->blk, get_be32(sb + JSB_CHECKSUM));
		put_be32(sb + JSB_CHECKSUM, 0);
		if (crc(t, ~0U, sb, JSB_SIZE) != get_be32(t->blk))
			return "journal superblock checksum does not match";
		put_be32(sb + JSB_CHECKSUM, get_be32(t->blk));
	}
	if (t->csum3)
		t->tag_bytes = 16;
	else
		t->tag_bytes = (t->is64 ? 12 : 8) +
			       ((t->incompat & JBD2_INCOMPAT_CSUM_V2) ? 2 : 0);
	return NULL;
}

static void txn_free(struct f4_txn *t)
{
	if (!t)
		return;
	free(t->map);
	free(t->jsb);
	free(t->blk);
	free(t->stage);
	free(t);
}

/* A transaction outgrew the journal's allowance inside one operation. */
static void overflow(void *arg)
{
	struct f4_txn *t = arg;
	int ret;

	if (!t->overflows++)
		f4_log(LOG_NOTICE, "%s: one operation changes more than %zu "
		       "blocks; committing part of it early (a crash now "
		       "could need e2fsck)", t->f->opts->device,
		       t->hard_limit);
	ret = f4_txn_commit(t->f, 1);
	if (ret)
		f4_log(LOG_ERR, "%s: early commit failed: %s",
		       t->f->opts->device, strerror(-ret));
}

/*
 * Read-write mount of a file system with an internal journal: set
 * needs_recovery (durably, in place) and start journaling.  0 also when
 * the file system has no journal we can write; then nothing changes.
 */
int f4_txn_start(struct f4fs *f)
{
	ext2_filsys fs = f->fs;
	struct f4_txn *t;
	const char *why;
	errcode_t err;
	int ret;

	if (!(fs->flags & EXT2_FLAG_RW) ||
	    !ext2fs_has_feature_journal(fs->super) ||
	    !fs->super->s_journal_inum)
		return 0;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->f = f;
	t->io = fs->io;
	t->bs = fs->blocksize;
	t->jsb = malloc(t->bs);
	t->blk = malloc(t->bs);
	t->stage = malloc((size_t)STAGE_BLOCKS * t->bs);
	ret = -ENOMEM;
	if (!t->jsb || !t->blk || !t->stage)
		goto fail;
	ret = map_journal(t, fs->super->s_journal_inum);
	if (ret) {
		f4_log(LOG_WARNING, "%s: cannot map the journal inode (%s); "
		       "writing without the journal", f->opts->device,
		       strerror(-ret));
		txn_free(t);
		return 0;
	}
	err = f4_io_raw_read(t->io, t->map[0], 1, t->jsb);
	if (err) {
		ret = f4_errno(err);
		goto fail;
	}
	why = check_jsb(t);
	if (why) {
		f4_log(LOG_WARNING, "%s: %s; writing without the journal "
		       "(a crash will need e2fsck)", f->opts->device, why);
		txn_free(t);
		return 0;
	}
	t->head = t->first;
	/* a quarter of the journal, or what the cache is meant to hold */
	t->soft_limit = (t->last - t->first) / 4;
	if (t->soft_limit > f4_io_cache_blocks(t->io) / 2)
		t->soft_limit = f4_io_cache_blocks(t->io) / 2;
	t->hard_limit = (t->last - t->first) * 3 / 8;

	/* needs_recovery, durable before anything is logged */
	ext2fs_set_feature_journal_needs_recovery(fs->super);
	ext2fs_mark_super_dirty(fs);
	ret = f4_fs_flush(f);
	if (ret)
		goto fail;
	ret = f4_io_journal_begin(t->io, t->hard_limit, overflow, t);
	if (ret)
		goto fail;
	f->txn = t;
	f4_log(LOG_DEBUG, "%s: journaling to inode %u (%u blocks, %s)",
	       f->opts->device, fs->super->s_journal_inum,
	       t->last - t->first, t->csum3 ? "checksum v3" :
	       t->csum ? "checksum v2" : "no checksums");
	return 0;
fail:
	f4_log(LOG_ERR, "%s: starting the journal: %s", f->opts->device,
	       strerror(-ret));
	txn_free(t);
	return ret;
}

/* ---- commit ----------------------------------------------------------- */

static void header(unsigned char *b, __u32 type, __u32 tid)
{
	put_be32(b, JBD2_MAGIC);
	put_be32(b + 4, type);
	put_be32(b + 8, tid);
}

static void tail_csum(struct f4_txn *t, unsigned char *b)
{
	if (!t->csum)
		return;
	put_be32(b + t->bs - JTAIL_SIZE, 0);
	put_be32(b + t->bs - JTAIL_SIZE, crc(t, t->seed, b, t->bs));
}

/* Tags that fit in one descriptor block (the first carries the UUID). */
static size_t tags_per_desc(struct f4_txn *t)
{
	size_t room = t->bs - JHDR_SIZE - (t->csum ? JTAIL_SIZE : 0) - 16;

	return room / t->tag_bytes;
}

static size_t revokes_per_block(struct f4_txn *t)
{
	return (t->bs - JR_HDR_SIZE - (t->csum ? JTAIL_SIZE : 0)) /
	       (t->is64 ? 8 : 4);
}

static void put_tag(struct f4_txn *t, unsigned char *p, blk64_t target,
		    __u32 flags, const unsigned char *copy)
{
	__u32 c = 0;

	if (t->csum) {
		unsigned char seq[4];

		put_be32(seq, t->tid);
		c = crc(t, t->seed, seq, 4);
		c = crc(t, c, copy, t->bs);
	}
	memset(p, 0, t->tag_bytes);
	put_be32(p, (__u32)target);
	if (t->csum3) {
		put_be32(p + 4, flags);
		put_be32(p + 12, c);
	} else {
		put_be16(p + 4, (__u16)c);
		put_be16(p + 6, (__u16)flags);
	}
	if (t->is64)
		put_be32(p + 8, (__u32)(target >> 32));
}

/*
 * A block that starts with the jbd2 magic goes to the log with those four
 * bytes zeroed (its tag says ESCAPE): a copy in scratch.
 */
static const unsigned char *escaped(struct f4_txn *t, const unsigned char *d,
				    unsigned char *scratch)
{
	if (get_be32(d) != JBD2_MAGIC)
		return d;
	memcpy(scratch, d, t->bs);
	memset(scratch, 0, 4);
	return scratch;
}

/* Descriptor blocks and block copies. */
static errcode_t log_blocks(struct f4_txn *t, const struct f4_io_blk *list,
			    size_t n)
{
	size_t per = tags_per_desc(t), i = 0, k, off;
	unsigned char *desc = t->blk;
	errcode_t err;

	while (i < n) {
		size_t cnt = n - i < per ? n - i : per;

		memset(desc, 0, t->bs);
		header(desc, JBD2_DESCRIPTOR, t->tid);
		off = JHDR_SIZE;
		for (k = 0; k < cnt; k++) {
			const unsigned char *d = list[i + k].data;
			__u32 flags = k ? JBD2_FLAG_SAME_UUID : 0;
			unsigned char *copy = t->stage; /* tag csum scratch */

			if (k == cnt - 1)
				flags |= JBD2_FLAG_LAST_TAG;
			if (get_be32(d) == JBD2_MAGIC) {
				flags |= JBD2_FLAG_ESCAPE;
				err = stage_flush(t);
				if (err)
					return err;
				d = escaped(t, d, copy);
			}
			put_tag(t, desc + off, list[i + k].key, flags, d);
			off += t->tag_bytes;
			if (!k) {
				memcpy(desc + off, t->uuid, 16);
				off += 16;
			}
		}
		tail_csum(t, desc);
		err = log_add(t, desc);
		for (k = 0; !err && k < cnt; k++) {
			err = log_add(t, escaped(t, list[i + k].data, desc));
		}
		if (err)
			return err;
		i += cnt;
	}
	return 0;
}

static errcode_t log_revokes(struct f4_txn *t, const unsigned long long *rv,
			     size_t n)
{
	size_t per = revokes_per_block(t), i = 0, k;
	unsigned int rec = t->is64 ? 8 : 4;
	unsigned char *b = t->blk;
	errcode_t err;

	while (i < n) {
		size_t cnt = n - i < per ? n - i : per;

		memset(b, 0, t->bs);
		header(b, JBD2_REVOKE, t->tid);
		put_be32(b + JR_COUNT, JR_HDR_SIZE + cnt * rec);
		for (k = 0; k < cnt; k++) {
			if (t->is64)
				put_be64(b + JR_HDR_SIZE + k * rec, rv[i + k]);
			else
				put_be32(b + JR_HDR_SIZE + k * rec,
					 (__u32)rv[i + k]);
		}
		tail_csum(t, b);
		err = log_add(t, b);
		if (err)
			return err;
		i += cnt;
	}
	return 0;
}

static errcode_t log_commit(struct f4_txn *t)
{
	unsigned char *b = t->blk;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	memset(b, 0, t->bs);
	header(b, JBD2_COMMIT, t->tid);
	put_be64(b + JC_COMMIT_SEC, ts.tv_sec);
	put_be32(b + JC_COMMIT_NSEC, ts.tv_nsec);
	if (t->csum)
		put_be32(b + JC_CSUM, crc(t, t->seed, b, t->bs));
	return log_add(t, b);
}

/* Log blocks free for this transaction: all but the last one's. */
static size_t log_room(struct f4_txn *t)
{
	size_t len = t->last - t->first;

	if (!t->prev_start)
		return len;
	if (t->head >= t->prev_start)
		return len - (t->head - t->prev_start);
	return t->prev_start - t->head;
}

static errcode_t checkpoint(struct f4_txn *t, const struct f4_io_blk *list,
			    size_t n)
{
	errcode_t err = 0;
	size_t i;

	for (i = 0; i < n && !err; i++)
		err = stage_add(t, list[i].key, list[i].data);
	if (!err)
		err = stage_flush(t);
	return err;
}

/* The journal can't be written: stop writing anything, like jbd2's abort. */
static int txn_abort(struct f4_txn *t, errcode_t err, const char *what)
{
	struct f4fs *f = t->f;

	f4_log(LOG_CRIT, "%s: journal commit failed (%s: %s); stopping, "
	       "nothing more is written", f->opts->device, what,
	       error_message(err));
	t->dead = 1;
	f4_io_txn_abort(t->io);
	f4_io_stop_writes(t->io);
	f->shutdown = 1;
	f->ro = 1;
	return -EIO;
}

/*
 * Commit the running transaction (the caller has already put the
 * superblock, descriptors and bitmaps into the cache) and, with
 * do_checkpoint, write its blocks home.  Returns once it is durable.
 */
int f4_txn_commit(struct f4fs *f, int do_checkpoint)
{
	struct f4_txn *t = f->txn;
	struct f4_io_blk *list = NULL;
	unsigned long long *rv;
	size_t n, nrv, need, per;
	__u32 start;
	errcode_t err;
	int lost, ret;

	if (!t)
		return 0;
	if (t->dead)
		return -EIO;
	ret = f4_io_txn_list(t->io, &list, &n, &rv, &nrv, &lost);
	if (ret)
		return ret;
	if (!n) {
		/*
		 * Nothing to log: make file data durable.  If data went over
		 * blocks the last transaction logged, or blocks it freed wait
		 * for their release, the log is emptied instead.
		 */
		blk64_t any;
		int held = f->freed && !ext2fs_find_first_set_block_bitmap2(
				f->freed, f->fs->super->s_first_data_block,
				ext2fs_blocks_count(f->fs->super) - 1, &any);

		if (nrv || lost || held) {
			err = reset_log(t);
			if (!err)
				f4_alloc_committed(f);
		} else {
			err = f4_io_sync(t->io);
		}
		if (err)
			return txn_abort(t, err, "syncing");
		return 0;
	}
	per = tags_per_desc(t);
	need = (n + per - 1) / per + n + 1;
	if (nrv)
		need += (nrv + revokes_per_block(t) - 1) /
			revokes_per_block(t);
	if (lost || need >= log_room(t)) {
		err = reset_log(t);
		if (err)
			goto abort;
		nrv = 0;
	}
	if (need >= t->last - t->first) {
		free(list);
		return txn_abort(t, EXT2_ET_NO_MEMORY, "transaction larger "
				 "than the journal");
	}
	start = t->head;
	err = log_blocks(t, list, n);
	if (!err && nrv)
		err = log_revokes(t, rv, nrv);
	if (!err)
		err = stage_flush(t);
	if (!err)
		err = f4_io_sync(t->io);
	if (err)
		goto abort;
	/* The last transaction is home and durable: point past it */
	err = log_commit(t);
	if (!err)
		err = write_jsb(t, start, t->tid);
	if (!err)
		err = f4_io_sync(t->io);
	if (err)
		goto abort;
	t->prev_start = start;
	t->tid++;
	t->commits++;
	if (do_checkpoint) {
		err = checkpoint(t, list, n);
		if (err)
			goto abort;
	}
	f4_io_txn_done(t->io, list, n, 1);
	f4_alloc_committed(f);
	free(list);
	return 0;
abort:
	free(list);
	return txn_abort(t, err, "writing the log");
}

/* Commit if the transaction has grown past its share of the journal. */
void f4_txn_maybe_commit(struct f4fs *f)
{
	struct f4_txn *t = f->txn;

	if (t && !t->dead && f4_io_txn_blocks(t->io) >= t->soft_limit)
		f4_fs_flush(f);
}

/*
 * Clean unmount, after the last commit: everything home and durable, an
 * empty journal with the sequence advanced, needs_recovery cleared in the
 * in-core superblock (the caller writes it, in place).
 */
int f4_txn_finish(struct f4fs *f)
{
	struct f4_txn *t = f->txn;
	errcode_t err;

	if (!t)
		return 0;
	f->txn = NULL;
	if (t->dead) {
		txn_free(t);
		return -EIO;
	}
	if (f4_io_txn_blocks(t->io))
		f4_log(LOG_ERR, "%s: blocks left uncommitted at unmount",
		       f->opts->device);
	err = reset_log(t);
	f4_io_journal_end(t->io);
	txn_free(t);
	if (err) {
		f4_log(LOG_ERR, "%s: emptying the journal: %s",
		       f->opts->device, error_message(err));
		return f4_errno(err);
	}
	ext2fs_clear_feature_journal_needs_recovery(f->fs->super);
	ext2fs_mark_super_dirty(f->fs);
	return 0;
}

/* Shutdown: throw the running transaction away and stop. */
void f4_txn_abort(struct f4fs *f)
{
	struct f4_txn *t = f->txn;

	if (!t)
		return;
	t->dead = 1;
	f4_io_txn_abort(t->io);
}

void f4_txn_free(struct f4fs *f)
{
	txn_free(f->txn);
	f->txn = NULL;
}

/*
 * EXT4_IOC_SHUTDOWN.  Afterwards every operation fails with EIO and
 * nothing more is written, not even at unmount: the image is left
 * exactly as a crash at that instant would leave it.
 *   DEFAULT:    commit and checkpoint everything, then stop;
 *   LOGFLUSH:   commit the running transaction to the log, no checkpoint
 *               (the image then needs its journal replayed);
 *   NOLOGFLUSH: stop at once; the running transaction is lost.
 * Without a journal DEFAULT and LOGFLUSH flush everything, NOLOGFLUSH
 * throws away what the cache holds.
 */
int f4_shutdown(struct f4fs *f, const struct f4_cred *cred, uint32_t flags)
{
	int ret = 0;

	if (!f4_capable(f, (struct f4_cred *)cred))
		return -EPERM;
	if (flags > F4_GOING_FLAGS_NOLOGFLUSH)
		return -EINVAL;
	if (f->shutdown)
		return 0;
	if (f->ro || !(f->fs->flags & EXT2_FLAG_RW))
		flags = F4_GOING_FLAGS_NOLOGFLUSH;	/* nothing to write */
	if (flags == F4_GOING_FLAGS_LOGFLUSH && f->txn) {
		errcode_t err = ext2fs_flush2(f->fs, EXT2_FLAG_FLUSH_NO_SYNC);

		ret = err ? f4_errno(err) : f4_txn_commit(f, 0);
	} else if (flags != F4_GOING_FLAGS_NOLOGFLUSH) {
		ret = f4_fs_flush(f);
		if (!ret && f->txn)
			ret = f4_errno(f4_io_sync(f->fs->io));
	}
	f4_log(LOG_NOTICE, "%s: shut down (%s)%s; every operation now fails "
	       "and nothing more is written", f->opts->device,
	       flags == F4_GOING_FLAGS_DEFAULT ? "everything written" :
	       flags == F4_GOING_FLAGS_LOGFLUSH ? "log committed" :
	       "nothing more written",
	       ret ? " after a failed flush" : "");
	f4_txn_abort(f);
	f4_io_stop_writes(f->fs->io);
	f->shutdown = 1;
	f->shutdown_asked = 1;
	f->ro = 1;
	return ret;
}

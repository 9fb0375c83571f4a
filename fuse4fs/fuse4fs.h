/*
 * fuse4fs.h - the file-system core's context and interface.
 *
 * The core is everything fuse4fs does to an ext2/3/4 file system, written
 * as plain functions that return 0 (or a byte count) or a negative errno.
 * It never includes FUSE headers: ops.c translates FUSE requests into
 * these calls, and tests and the fuzzer call them directly.
 *
 * Locking: libext2fs is not thread-safe, so one mutex (f4fs.lock) guards
 * the ext2_filsys, every in-core inode record and directory snapshot,
 * and the orphan list.  FUSE handlers take it around each core call; the
 * background flusher takes it too.  Core functions assume it is held,
 * except f4_fs_open()/f4_fs_close(), which run before and after the
 * session.  The caches in lib/support have their own internal locks so
 * that their bookkeeping stays consistent whatever the caller does.
 */
#ifndef FUSE4FS_H
#define FUSE4FS_H

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>

#include "support/list.h"
#include "support/cache.h"

#ifndef EFSCORRUPTED
#define EFSCORRUPTED	EUCLEAN		/* what ext4 returns for bad metadata */
#endif

#define F4_ROOT_INO	EXT2_ROOT_INO
#define F4_NAME_MAX	255
#define F4_LINK_MAX	65000		/* EXT4_LINK_MAX */
#define F4_SYMLINK_MAX	4095		/* longest target PATH_MAX allows */

enum f4_errors_behaviour {
	F4_ERRORS_DEFAULT = 0,		/* whatever the superblock says */
	F4_ERRORS_CONTINUE,
	F4_ERRORS_REMOUNT_RO,
	F4_ERRORS_PANIC,
};

/* Options, as parsed from the command line (options.c). */
struct f4_opts {
	char *device;
	char *mountpoint;
	char *progname;
	int helper;			/* invoked as mount.fuse4fs */
	int foreground;
	int debug;
	int single_thread;
	int verbose;
	int readonly;			/* -o ro */
	int fakeroot;			/* no permission checks at all */
	int default_permissions;	/* the kernel checks permissions */
	int allow_other;
	int allow_root;
	int suid;			/* honour setuid/setgid bits */
	int dev;			/* honour device nodes */
	int noexec;
	int errors;			/* enum f4_errors_behaviour */
	int dirsync;
	int sync;
	int direct;			/* direct_io for every open file */
	int writeback;			/* ask for the kernel's write-back cache */
	int minixdf;
	int norecovery;
	int acl;
	int noatime;			/* atime updates off */
	int strictatime;		/* atime updated on every access */
	int auto_unmount;
	int fuseblk;			/* root: mount as fuseblk */
	int no_excl;			/* don't open the device O_EXCL */
	unsigned long long cache_size;	/* bytes of block cache */
	unsigned long long offset;	/* byte offset of the fs in device */
	int partition;			/* 1-based partition number, 0: none */
	unsigned long long size_limit;	/* bytes the fs may span, 0: device */
	char *lockfile;
	char *fsname;
	char *subtype;
	char *fuse_mount_opts;		/* what goes to the kernel's mount */
	unsigned int commit_interval;	/* seconds between flushes */
	unsigned int max_threads;
	unsigned int spin_us;		/* poll for the next request this long */
};

#define F4_DEFAULT_CACHE_SIZE	(64ULL << 20)
#define F4_DEFAULT_COMMIT	5
#define F4_DEFAULT_SPIN_US	100
#define F4_DCACHE_LIMIT		(32ULL << 20)

int f4_parse_options(int argc, char **argv, struct f4_opts *opts);
void f4_free_options(struct f4_opts *opts);
void f4_usage(const char *progname, int full);

/* What a permission check asks for, as the kernel's MAY_* flags. */
#define MAY_EXEC	1
#define MAY_WRITE	2
#define MAY_READ	4

/* execve()'s open flag (the kernel's __FMODE_EXEC), passed on by FUSE */
#define F4_FMODE_EXEC	040

#define F4_NGROUPS	64		/* supplementary groups kept in a cred */
#define F4_GROUPS_UNKNOWN (-2)		/* ngroups: they could not be read */

/* Who is asking: the FUSE layer fills this from the request. */
struct f4_cred {
	uid_t uid;
	gid_t gid;
	pid_t pid;
	mode_t umask;
	/*
	 * Supplementary groups: ngroups is -1 until they are fetched,
	 * F4_GROUPS_UNKNOWN when they can't be read (the caller is in
	 * another PID namespace, or gone), else how many are in groups[].
	 * A caller with more than F4_NGROUPS has more_groups set, and
	 * find_group() looks through the whole list.
	 */
	int ngroups;
	int more_groups;
	gid_t groups[F4_NGROUPS];
	/* Fill in supplementary groups; called only when they matter. */
	int (*get_groups)(struct f4_cred *cred);
	/* 1: gid is one of the caller's groups, 0: not, <0: can't tell */
	int (*find_group)(struct f4_cred *cred, gid_t gid);
	void *req;			/* opaque, for get_groups */
	/*
	 * A write-back of the kernel's cached pages arrives as whoever made
	 * the kernel flush them: the kernel has already dropped privileges
	 * as needed, and the reserve is the opener's (f4_file.may_reserve).
	 */
	int writeback;
	int may_reserve;		/* with writeback */
};

struct f4_entry {
	ext2_ino_t ino;
	uint32_t generation;
	struct stat attr;
	/*
	 * The name lives in a casefolded directory: the kernel's FUSE
	 * dentries are case-sensitive, so it must not cache this one.
	 */
	int uncached_name;
};

/* The kernel's lookup counts (lookups.c): ino -> count, 8 bytes each. */
struct f4_lookup_slot;
struct f4_lookups {
	struct f4_lookup_slot *slots;
	size_t size;			/* slots, a power of two, or 0 */
	size_t used;
};

/*
 * In-core inode record: for inodes open, orphaned or otherwise needing
 * more than a lookup count (those are in f4fs.lookups), plus a bounded
 * number of unreferenced ones kept for reuse.
 */
struct f4_inode {
	struct cache_node cnode;
	ext2_ino_t ino;
	unsigned int nopen;		/* open files and directories */
	unsigned int flags;
	struct list_head orphan_link;	/* on f4fs.orphans when F4I_ORPHAN */
	ext2_ino_t orphan_prev;		/* on-disk chain: who points at us */
	uint32_t orphan_slot;		/* orphan_file: block << 16 | index */
	uint64_t data_version;		/* bumped on every data change */
	struct list_head open_dirs;	/* struct f4_dir snapshots of it */
	int no_caps;			/* known to have no security.capability */
	struct f4_dindex *dindex;	/* directories: name table (dcache.c) */
	uint32_t kernel_gen;		/* with F4I_KERNEL_GEN */
};

#define F4I_ORPHAN	0x1		/* on the on-disk orphan list */
#define F4I_KERNEL_GEN	0x2		/* kernel_gen differs from the disk's */

/* An open file. */
struct f4_file {
	struct f4_inode *inode;
	int flags;			/* open(2) flags */
	int may_reserve;		/* opener may use the root reserve */
	int direct_io;			/* bypass the kernel's page cache */
	uint64_t next_read;		/* byte after the last read */
	blk64_t ra_end;			/* device readahead asked up to here */
};

/* An open directory: a snapshot of its entries, taken at offset 0. */
struct f4_dirent {
	ext2_ino_t ino;
	uint8_t type;			/* DT_* */
	uint8_t namelen;
	uint32_t name_off;		/* into f4_dir.names */
};

struct f4_dir {
	struct f4_inode *inode;
	struct list_head link;		/* on inode->open_dirs */
	struct f4_dirent *ents;		/* ino 0: removed since the snapshot */
	size_t nents, cap;
	char *names;
	size_t names_len, names_cap;
	uint32_t *index;		/* name hash -> ents slot + 1 */
	size_t index_size;
	int loaded;
	int casefold;			/* names matched by casefold */
};

struct f4_orphan_file;
struct f4_dindex;
struct f4_quota;

#define F4_USRQUOTA	0
#define F4_GRPQUOTA	1
#define F4_PRJQUOTA	2
#define F4_MAXQUOTAS	3

struct f4_error_note {
	ext2_ino_t ino;
	int what;
};

#define F4_INVAL_MAX	8		/* inodes one request may change */

struct f4fs {
	ext2_filsys fs;
	pthread_mutex_t lock;
	struct f4_opts *opts;
	int ro;				/* no writes at all */
	int forced_ro;			/* errors=remount-ro fired */
	int orphans_only;		/* a session to clean orphans, no more */
	int writeback;			/* the kernel caches writes (ops.c) */
	int shutdown;			/* errors=panic fired, or shut down */
	int shutdown_asked;		/* by EXT4_IOC_SHUTDOWN: not an error */
	unsigned int blocksize;
	unsigned int inode_size;
	struct cache inodes;		/* struct f4_inode records */
	struct f4_lookups lookups;	/* the kernel's lookup counts */
	unsigned int nkernel_gen;	/* records with F4I_KERNEL_GEN */
	struct list_head orphans;	/* in-core orphan list (orphan.c) */
	int dirty;			/* metadata changed since last flush */
	uint16_t mount_state;		/* s_state when mounted */
	time_t last_flush;
	uint64_t journal_blocks;	/* for statfs overhead */
	uint64_t overhead;		/* metadata blocks, for bsddf */
	ext2fs_block_bitmap sysmap;	/* blocks no file may own (map.c) */
	struct f4_orphan_file *ofile;	/* orphan.c */
	ext2fs_block_bitmap freed;	/* not for file data yet (alloc.c) */
	ext2fs_block_bitmap freed_cur;	/* journaling: freed since the commit */
	struct f4_txn *txn;		/* journaled writes (txn.c), or NULL */
	struct f4_quota *quota;		/* quota.c; NULL: no quota kept */
	/* the inode f4_write_inode() is writing in full (quota.c) */
	const struct ext2_inode_large *quota_full;
	struct list_head dcache_lru;	/* directory name tables (dcache.c) */
	size_t dcache_bytes, dcache_limit;
	pthread_t flusher;
	int flusher_running;
	pthread_cond_t flusher_cond;
	int stopping;
	int closed;			/* f4_fs_close() has run */
	int close_status;
	int lock_fd;			/* -o lockfile */
	/* errors already logged, so each is logged once */
	struct f4_error_note noted[64];
	unsigned int nnoted;
	/*
	 * Attributes the core changes where the kernel can't see it (an
	 * ioctl's reply carries none): f4_inval_inode() notes the inode,
	 * and f4_unlock() hands the notes to inval_inode, which the FUSE
	 * layer sets, once the lock is released, because the kernel may
	 * wait for a request that needs the lock before it takes the note.
	 */
	void (*inval_inode)(struct f4fs *f, ext2_ino_t ino);
	void *fuse_priv;		/* for inval_inode: the session */
	ext2_ino_t inval[F4_INVAL_MAX];
	unsigned int ninval;
	void (*panic)(struct f4fs *f);
};

/* errors.c */
int f4_errno(errcode_t err);
void f4_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void f4_log_to_syslog(int on);
void f4_set_verbose(int on);
void f4_log_set_quiet(int on);
int f4_fs_error(struct f4fs *f, ext2_ino_t ino, errcode_t err,
		const char *what);
void f4_record_mount_error(struct f4fs *f, errcode_t err, const char *what);
int f4_corrupt(struct f4fs *f, ext2_ino_t ino, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int f4_check_writable(struct f4fs *f);

/* super.c */
int f4_fs_open(struct f4fs *f, struct f4_opts *opts);
int f4_fs_close(struct f4fs *f);
int f4_fs_flush(struct f4fs *f);
void f4_fs_dirty(struct f4fs *f);
int f4_statfs(struct f4fs *f, struct statvfs *st);
int f4_start_flusher(struct f4fs *f);
void f4_stop_flusher(struct f4fs *f);
void f4_lock(struct f4fs *f);
void f4_unlock(struct f4fs *f);
void f4_inval_inode(struct f4fs *f, ext2_ino_t ino);

/* txn.c: journaled writes */
struct f4_txn;
int f4_txn_start(struct f4fs *f);
int f4_txn_commit(struct f4fs *f, int do_checkpoint);
void f4_txn_maybe_commit(struct f4fs *f);
int f4_txn_finish(struct f4fs *f);
void f4_txn_abort(struct f4fs *f);
void f4_txn_free(struct f4fs *f);
/* EXT4_IOC_SHUTDOWN (XFS's "going down"), _IOR('X', 125, __u32), and modes */
#define F4_IOC_SHUTDOWN			0x8004587dU
#define F4_GOING_FLAGS_DEFAULT		0
#define F4_GOING_FLAGS_LOGFLUSH		1
#define F4_GOING_FLAGS_NOLOGFLUSH	2
int f4_shutdown(struct f4fs *f, const struct f4_cred *cred, uint32_t flags);

/* blockio.c */
extern io_manager f4_io_manager;
int f4_io_set_cache_size(io_channel io, unsigned long long bytes);
void f4_io_tick(io_channel io);
void f4_io_stop_writes(io_channel io);
unsigned long long f4_io_take_written(io_channel io);
int f4_io_limit(io_channel io, unsigned long long blocks);
errcode_t f4_io_read_data(io_channel io, unsigned long long block, int count,
			  void *buf);
errcode_t f4_io_write_data(io_channel io, unsigned long long block, int count,
			   const void *buf);
/* blockio.c: what the transaction layer (txn.c) needs */
struct f4_io_blk {
	unsigned long long key;
	unsigned char *data;
};
int f4_io_journal_begin(io_channel io, size_t limit,
			void (*overflow)(void *arg), void *arg);
void f4_io_journal_end(io_channel io);
size_t f4_io_txn_blocks(io_channel io);
size_t f4_io_cache_blocks(io_channel io);
int f4_io_txn_list(io_channel io, struct f4_io_blk **list, size_t *n,
		   unsigned long long **revoke, size_t *nrevoke, int *lost);
void f4_io_txn_done(io_channel io, const struct f4_io_blk *list, size_t n,
		    int keep_prev);
void f4_io_forget_prev(io_channel io);
void f4_io_txn_abort(io_channel io);
errcode_t f4_io_raw_write(io_channel io, unsigned long long block, int count,
			  const void *buf);
errcode_t f4_io_raw_read(io_channel io, unsigned long long block, int count,
			 void *buf);
errcode_t f4_io_sync(io_channel io);

/* inode.c */
int f4_inode_init_cache(struct f4fs *f);
void f4_inode_destroy_cache(struct f4fs *f);
struct f4_inode *f4_iget(struct f4fs *f, ext2_ino_t ino);
struct f4_inode *f4_iget_incore(struct f4fs *f, ext2_ino_t ino);
void f4_iput(struct f4fs *f, struct f4_inode *inode);
int f4_read_inode(struct f4fs *f, ext2_ino_t ino,
		  struct ext2_inode_large *inode);
int f4_write_inode(struct f4fs *f, ext2_ino_t ino,
		   struct ext2_inode_large *inode);
int f4_check_ino(struct f4fs *f, ext2_ino_t ino);
void f4_inode_to_stat(struct f4fs *f, ext2_ino_t ino,
		      const struct ext2_inode_large *inode, struct stat *st);
int f4_fill_entry(struct f4fs *f, ext2_ino_t ino, struct f4_entry *e);
int f4_fill_entry_unlinked(struct f4fs *f, ext2_ino_t ino,
			   struct f4_entry *e);
int f4_lookup_ref(struct f4fs *f, ext2_ino_t ino);
int f4_forget(struct f4fs *f, ext2_ino_t ino, uint64_t nlookup);
uint32_t f4_nlookup(struct f4fs *f, ext2_ino_t ino);
int f4_keep_kernel_gen(struct f4fs *f, ext2_ino_t ino, uint32_t gen);

/* lookups.c */
void f4_lookups_free(struct f4_lookups *t);
uint32_t f4_lookups_get(const struct f4_lookups *t, ext2_ino_t ino);
int f4_lookups_inc(struct f4_lookups *t, ext2_ino_t ino);
uint32_t f4_lookups_dec(struct f4_lookups *t, ext2_ino_t ino, uint64_t n);
int f4_getattr(struct f4fs *f, ext2_ino_t ino, struct stat *st);

#define F4_SET_MODE	(1 << 0)
#define F4_SET_UID	(1 << 1)
#define F4_SET_GID	(1 << 2)
#define F4_SET_SIZE	(1 << 3)
#define F4_SET_ATIME	(1 << 4)
#define F4_SET_MTIME	(1 << 5)
#define F4_SET_ATIME_NOW (1 << 7)
#define F4_SET_MTIME_NOW (1 << 8)
#define F4_SET_CTIME	(1 << 10)
#define F4_SET_KILL_SUIDGID (1 << 11)
int f4_setattr(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
	       const struct stat *attr, int to_set, struct f4_file *fh,
	       struct stat *out);

/* Timestamps */
void f4_kill_suid(struct f4fs *f, struct f4_cred *cred,
		  struct ext2_inode_large *inode);
void f4_now(struct timespec *ts);
void f4_set_time(struct f4fs *f, struct ext2_inode_large *inode,
		 int which, const struct timespec *ts);
void f4_get_time(struct f4fs *f, const struct ext2_inode_large *inode,
		 int which, struct timespec *ts);
#define F4_ATIME	0
#define F4_MTIME	1
#define F4_CTIME	2
#define F4_CRTIME	3
void f4_touch(struct f4fs *f, struct ext2_inode_large *inode, int mask);
#define F4_TOUCH_M	0x1
#define F4_TOUCH_C	0x2
#define F4_TOUCH_MC	(F4_TOUCH_M | F4_TOUCH_C)
int f4_inode_has_extra(struct f4fs *f, const struct ext2_inode_large *inode,
		       size_t field_end);

/* perm.c */
int f4_in_group(struct f4_cred *cred, gid_t gid);
int f4_group_search(int (*list)(void *arg, int size, gid_t *groups),
		    void *arg, gid_t gid);
int f4_group_member(struct f4_cred *cred, gid_t gid);
int f4_check_perm(struct f4fs *f, struct f4_cred *cred,
		  const struct ext2_inode_large *inode, ext2_ino_t ino,
		  int mask);
int f4_check_ino_perm(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		      int mask);
int f4_is_owner(struct f4fs *f, const struct f4_cred *cred,
		const struct ext2_inode_large *inode);
int f4_self_checks(struct f4fs *f);
int f4_capable(struct f4fs *f, const struct f4_cred *cred);
int f4_check_sticky(struct f4fs *f, const struct f4_cred *cred,
		    const struct ext2_inode_large *dir,
		    const struct ext2_inode_large *victim);
/* What f4_check_immutable() is asked about */
#define F4_OP_WRITE	1		/* add data: append-only files allow it */
#define F4_OP_UNLINK	2		/* remove or rename a name */
#define F4_OP_ATTR	3		/* change xattrs */
#define F4_OP_LINK	4		/* add a hard link */
int f4_check_immutable(const struct ext2_inode_large *inode, int op);
int f4_access(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
	      int mask);

/* dir.c: directory entries */
int f4_dir_casefolded(struct f4fs *f, ext2_ino_t dir);

/* fscrypt.c: encrypted directories without the key */
struct f4_nokey {
	unsigned char raw[189];		/* the decoded no-key name */
	int exact;			/* ct is the whole ciphertext */
	const char *ct;
	size_t ctlen;
};
int f4_is_encrypted(const struct ext2_inode_large *inode);
size_t f4_nokey_len(size_t ctlen);
void f4_nokey_encode(uint32_t hash, uint32_t minor, const char *ct,
		     size_t ctlen, char *out, size_t *outlen);
int f4_nokey_decode(const char *name, size_t len, struct f4_nokey *nk);
int f4_nokey_match(const struct f4_nokey *nk, const char *de, size_t delen);
int f4_htree_readdir_version(struct f4fs *f, ext2_ino_t dir,
			     const struct ext2_inode_large *inode,
			     int *version);
int f4_dir_lookup(struct f4fs *f, ext2_ino_t dir, const char *name,
		  size_t len, ext2_ino_t *ino, int *ftype);
int f4_dir_add(struct f4fs *f, ext2_ino_t dir, const char *name, size_t len,
	       ext2_ino_t ino, int ftype);
int f4_dir_remove(struct f4fs *f, ext2_ino_t dir, const char *name,
		  size_t len, ext2_ino_t expect);
int f4_dir_set(struct f4fs *f, ext2_ino_t dir, const char *name, size_t len,
	       ext2_ino_t ino, int ftype);
int f4_dir_is_empty(struct f4fs *f, ext2_ino_t dir);
int f4_dir_set_dotdot(struct f4fs *f, ext2_ino_t dir, ext2_ino_t parent);
int f4_dir_init(struct f4fs *f, ext2_ino_t dir, ext2_ino_t parent,
		struct ext2_inode_large *inode);
int f4_opendir(struct f4fs *f, const struct f4_cred *cred, ext2_ino_t ino,
	       struct f4_dir **dp);
int f4_dir_load(struct f4fs *f, struct f4_dir *d);
void f4_dir_snapshots_update(struct f4fs *f, ext2_ino_t dir,
			     const char *name, size_t len, ext2_ino_t ino,
			     int ftype);
void f4_releasedir(struct f4fs *f, struct f4_dir *d);
int f4_ftype_to_dt(int ftype);

/* FNV-1a: the hash of the in-memory name tables (dir.c, dcache.c). */
static inline uint32_t f4_name_hash(const char *name, size_t len)
{
	uint32_t h = 2166136261U;

	while (len--)
		h = (h ^ (unsigned char)*name++) * 16777619U;
	return h;
}

static inline int f4_is_inline(const struct ext2_inode_large *inode)
{
	return !!(inode->i_flags & EXT4_INLINE_DATA_FL);
}
int f4_mode_to_ftype(mode_t mode);
int f4_dir_iterate(struct f4fs *f, ext2_ino_t dir,
		   int (*fn)(ext2_ino_t ino, int ftype, const char *name,
			     size_t len, void *arg),
		   void *arg);

/* csum.c */
uint32_t f4_crc32c(uint32_t crc, const void *buf, size_t len);
int f4_dirblock_verify(struct f4fs *f, ext2_ino_t dir, uint32_t gen,
		       const char *buf);
int f4_dirblock_csum_set(struct f4fs *f, ext2_ino_t dir, uint32_t gen,
			 char *buf);

/* dcache.c: per-directory name tables */
int f4_dcache_lookup(struct f4fs *f, ext2_ino_t dir, const char *name,
		     size_t len, ext2_ino_t *ino, int *ftype);
void f4_dcache_update(struct f4fs *f, ext2_ino_t dir, const char *name,
		      size_t len, ext2_ino_t ino, int ftype);
void f4_dcache_drop(struct f4fs *f, struct f4_inode *rec);

/* htree.c: hashed directories */
int f4_htree_lookup_leaf(struct f4fs *f, ext2_ino_t dir,
			 const struct ext2_inode_large *inode,
			 const char *name, size_t len, blk64_t *leaves,
			 int maxleaves, int *nleaves);
int f4_htree_convert(struct f4fs *f, ext2_ino_t dir,
		     struct ext2_inode_large *inode);
int f4_htree_clear(struct f4fs *f, ext2_ino_t dir,
		   struct ext2_inode_large *inode);

/* namei.c: names */
int f4_lookup(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	      const char *name, struct f4_entry *e);
int f4_mknod(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	     const char *name, mode_t mode, dev_t rdev, struct f4_entry *e);
int f4_mkdir(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	     const char *name, mode_t mode, struct f4_entry *e);
int f4_symlink(struct f4fs *f, struct f4_cred *cred, const char *target,
	       ext2_ino_t parent, const char *name, struct f4_entry *e);
int f4_link(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
	    ext2_ino_t parent, const char *name, struct f4_entry *e);
int f4_unlink(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	      const char *name);
int f4_rmdir(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	     const char *name);
#define F4_RENAME_NOREPLACE	(1 << 0)
#define F4_RENAME_EXCHANGE	(1 << 1)
#define F4_RENAME_WHITEOUT	(1 << 2)
int f4_rename(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	      const char *name, ext2_ino_t newparent, const char *newname,
	      unsigned int flags);
int f4_readlink(struct f4fs *f, ext2_ino_t ino, char *buf, size_t size);
int f4_create(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	      const char *name, mode_t mode, int flags, struct f4_entry *e,
	      struct f4_file **fhp);
int f4_tmpfile(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
	       mode_t mode, int flags, struct f4_entry *e,
	       struct f4_file **fhp);
uint32_t f4_next_generation(void);
int f4_new_inode(struct f4fs *f, struct f4_cred *cred, ext2_ino_t parent,
		 mode_t mode, struct ext2_inode_large *pinode,
		 ext2_ino_t *inop, struct ext2_inode_large *inode);
int f4_drop_link(struct f4fs *f, ext2_ino_t ino,
		 struct ext2_inode_large *inode);
int f4_free_inode(struct f4fs *f, ext2_ino_t ino,
		  struct ext2_inode_large *inode);
int f4_check_name(const char *name, size_t *lenp);
int f4_project_check(struct f4fs *f, const struct ext2_inode_large *dir,
		     const struct ext2_inode_large *inode);

/* alloc.c: where file data may go */
int f4_alloc_init(struct f4fs *f);
void f4_alloc_free(struct f4fs *f);
void f4_alloc_flushed(struct f4fs *f);
void f4_alloc_committed(struct f4fs *f);
int f4_may_use_reserved(struct f4fs *f, struct f4_cred *cred);
blk64_t f4_alloc_allowed(struct f4fs *f, struct f4_cred *cred, blk64_t want);
blk64_t f4_alloc_ext4_reserve(ext2_filsys fs);
errcode_t f4_alloc_range(struct f4fs *f, blk64_t goal, blk64_t len,
			 blk64_t *pblk, blk64_t *plen);
void f4_alloc_freed_range(struct f4fs *f, blk64_t blk, blk64_t num);

/* map.c: logical to physical block mapping */
struct f4_map {
	blk64_t lblk;
	blk64_t pblk;			/* 0 for a hole */
	blk64_t len;
	int unwritten;
};
int f4_map_blocks(struct f4fs *f, ext2_ino_t ino,
		  struct ext2_inode_large *inode, blk64_t lblk, blk64_t len,
		  struct f4_map *map);
int f4_map_alloc(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		 struct ext2_inode_large *inode, blk64_t lblk, blk64_t len,
		 struct f4_map *map, int *was_new);
int f4_map_convert(struct f4fs *f, ext2_ino_t ino,
		   struct ext2_inode_large *inode, const struct f4_map *map);
int f4_punch_extents(struct f4fs *f, ext2_ino_t ino,
		     struct ext2_inode_large *inode, blk64_t start, blk64_t end);
int f4_punch_blockmap(struct f4fs *f, ext2_ino_t ino,
		      struct ext2_inode_large *inode, blk64_t start, blk64_t end);
int f4_map_prealloc(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		    struct ext2_inode_large *inode, blk64_t lblk, blk64_t len);
int f4_valid_data_blocks(struct f4fs *f, ext2_ino_t ino, blk64_t pblk,
			 blk64_t len);
int f4_valid_file_blocks(struct f4fs *f, ext2_ino_t ino,
			 struct ext2_inode_large *inode);
int f4_map_init(struct f4fs *f);
void f4_map_free(struct f4fs *f);

/* file.c: file data */
int f4_open(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino, int flags,
	    struct f4_file **fhp);
int f4_release(struct f4fs *f, struct f4_file *fh);
ssize_t f4_read(struct f4fs *f, struct f4_file *fh, char *buf, size_t size,
		off_t off);
ssize_t f4_write(struct f4fs *f, struct f4_cred *cred, struct f4_file *fh,
		 const char *buf, size_t size, off_t off);
int f4_fsync(struct f4fs *f, ext2_ino_t ino, int datasync);
int f4_truncate(struct f4fs *f, ext2_ino_t ino,
		struct ext2_inode_large *inode, uint64_t size);
int f4_fallocate(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		 int mode, off_t off, off_t len);
off_t f4_lseek(struct f4fs *f, ext2_ino_t ino, off_t off, int whence);
int f4_bmap(struct f4fs *f, ext2_ino_t ino, uint64_t blocksize,
	    uint64_t *idx);
uint64_t f4_max_file_size(struct f4fs *f, const struct ext2_inode_large *in);
int f4_free_blocks_all(struct f4fs *f, ext2_ino_t ino,
		       struct ext2_inode_large *inode);
int f4_fstrim(struct f4fs *f, uint64_t start, uint64_t len, uint64_t minlen,
	      uint64_t *trimmed);
int f4_trim_past_eof(struct f4fs *f, ext2_ino_t ino,
		     struct ext2_inode_large *inode);

/* xattr.c */
int f4_setxattr(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		const char *name, const void *value, size_t size, int flags);
ssize_t f4_getxattr(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		    const char *name, void *value, size_t size);
ssize_t f4_listxattr(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		     char *list, size_t size);
int f4_removexattr(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		   const char *name);
int f4_inherit_acl(struct f4fs *f, ext2_ino_t dir, ext2_ino_t ino,
		   struct ext2_inode_large *inode, mode_t *mode, int *has_acl);
int f4_acl_chmod(struct f4fs *f, ext2_ino_t ino, mode_t mode);
int f4_acl_permission(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
		      const struct ext2_inode_large *inode, int mask);
int f4_kill_caps(struct f4fs *f, ext2_ino_t ino);
int f4_free_xattrs(struct f4fs *f, ext2_ino_t ino,
		   struct ext2_inode_large *inode);
int f4_xattr_ea_refs(struct f4fs *f, ext2_ino_t ino, __u64 *refs);

/* ioctl.c */
int f4_ioctl(struct f4fs *f, struct f4_cred *cred, ext2_ino_t ino,
	     unsigned int cmd, const void *in, size_t in_size, void *out,
	     size_t *out_size);

/* orphan.c */
int f4_orphan_add(struct f4fs *f, struct f4_inode *inode,
		  struct ext2_inode_large *ei);
int f4_orphan_del(struct f4fs *f, struct f4_inode *inode,
		  struct ext2_inode_large *ei);
int f4_orphan_recover(struct f4fs *f);
int f4_orphan_load(struct f4fs *f);
int f4_orphan_release_all(struct f4fs *f);
void f4_orphan_forget_all(struct f4fs *f);
int f4_maybe_free(struct f4fs *f, struct f4_inode *inode);

/* quota.c */
int f4_quota_init(struct f4fs *f);
void f4_quota_free(struct f4fs *f);
int f4_quota_flush(struct f4fs *f);
void f4_quota_statfs(struct f4fs *f, ext2_ino_t ino, struct statvfs *st);
void f4_quota_inode_alloc(struct f4fs *f, ext2_ino_t ino, int delta);
uint32_t f4_inode_projid(struct f4fs *f, const struct ext2_inode_large *inode);
int f4_quota_clamp_blocks(struct f4fs *f, struct f4_cred *cred,
			  const struct ext2_inode_large *inode, blk64_t *len);
int f4_quota_over(struct f4fs *f, struct f4_cred *cred,
		  const struct ext2_inode_large *inode);
int f4_quota_may_create(struct f4fs *f, struct f4_cred *cred, uint32_t uid,
			uint32_t gid, uint32_t prj);
int f4_quota_may_transfer(struct f4fs *f, struct f4_cred *cred,
			  ext2_ino_t ino, const struct ext2_inode_large *inode,
			  uint32_t uid, uint32_t gid, uint32_t prj);
void f4_quota_ea_inodes(struct f4fs *f, ext2_ino_t ino,
			const struct ext2_inode_large *inode, int64_t delta);
int f4_quota_binds(struct f4fs *f, struct f4_cred *cred);
int f4_quota_exceeded(struct f4fs *f, struct f4_cred *cred,
		      const struct ext2_inode_large *inode, uint64_t space,
		      uint64_t inodes);

/* partition.c */
int f4_find_partition(const char *device, int number,
		      unsigned long long *offset, unsigned long long *size,
		      char *why, size_t whylen);

#endif /* FUSE4FS_H */

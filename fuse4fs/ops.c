/*
 * ops.c - the FUSE layer: each handler decodes the request, takes the
 * lock, calls the core, and replies.  Nothing here knows ext2.
 *
 * The nodeid is the inode number, except that FUSE's root (1) is ext2's
 * root inode (2).  Because fuse4fs owns the image while mounted, nothing
 * changes behind the kernel's back, so entries and attributes are given
 * long timeouts and file pages are kept across opens.  Where a request
 * changes attributes its reply doesn't carry (ioctls), the core notes
 * the inode and inval_inode() below tells the kernel.
 */
#include "config.h"

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <syslog.h>
#include <unistd.h>

#include "fuse4fs.h"
#include "ops.h"
#include "mount.h"

#define CACHE_TIMEOUT	86400.0

static struct f4fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

ext2_ino_t f4_ino_of(fuse_ino_t n)
{
	return n == FUSE_ROOT_ID ? EXT2_ROOT_INO : (ext2_ino_t)n;
}

fuse_ino_t f4_nodeid_of(ext2_ino_t ino)
{
	return ino == EXT2_ROOT_INO ? FUSE_ROOT_ID : ino;
}

/*
 * The caller's supplementary groups, read by libfuse from /proc: the
 * first F4_NGROUPS are kept.  A caller in another PID namespace comes with
 * pid 0 and its groups can't be read: F4_GROUPS_UNKNOWN, and the checks
 * then give no more than they would to a non-member.
 */
static int get_groups(struct f4_cred *cred)
{
	int n = fuse_req_getgroups(cred->req, F4_NGROUPS, cred->groups);

	if (n < 0 || !cred->pid) {
		cred->ngroups = F4_GROUPS_UNKNOWN;
		return 0;
	}
	cred->ngroups = n > F4_NGROUPS ? F4_NGROUPS : n;
	cred->more_groups = n > F4_NGROUPS;
	return 0;
}

static int req_group_list(void *req, int size, gid_t *list)
{
	return fuse_req_getgroups(req, size, list);
}

/* For a caller with more groups than fit in the cred: read them all. */
static int find_group(struct f4_cred *cred, gid_t gid)
{
	return f4_group_search(req_group_list, cred->req, gid);
}

void f4_cred_of(fuse_req_t req, struct f4_cred *cred)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	cred->uid = ctx->uid;
	cred->gid = ctx->gid;
	cred->pid = ctx->pid;
	cred->umask = ctx->umask;
	cred->ngroups = -1;
	cred->more_groups = 0;
	cred->get_groups = get_groups;
	cred->find_group = find_group;
	cred->req = req;
	cred->writeback = 0;
	cred->may_reserve = 0;
}

/*
 * How long the kernel may trust a name: as long as it likes.  Other users
 * can only reach a mount where the kernel checks permissions (allow_other
 * and allow_root imply default_permissions), and the kernel checks search
 * permission on cached names itself there.
 */
static double entry_timeout(const struct f4fs *f)
{
	(void)f;
	return CACHE_TIMEOUT;
}

static void fill_param(const struct f4fs *f, const struct f4_entry *e,
		       struct fuse_entry_param *ep)
{
	memset(ep, 0, sizeof(*ep));
	ep->ino = f4_nodeid_of(e->ino);
	ep->generation = e->generation;
	ep->attr = e->attr;
	ep->attr_timeout = CACHE_TIMEOUT;
	/*
	 * Except in casefolded directories: the kernel's FUSE dentries are
	 * case-sensitive, so a cached "ABC" would outlive an unlink through
	 * "abc".  There every use of a name asks fuse4fs again (a lookup
	 * per path component, answered from the directory's hashed leaf).
	 */
	ep->entry_timeout = e->uncached_name ? 0 : entry_timeout(f);
}

/* Reply with a new entry; if the kernel never gets it, undo the ref. */
static void reply_entry(fuse_req_t req, struct f4fs *f, int ret,
			const struct f4_entry *e)
{
	struct fuse_entry_param ep;

	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	fill_param(f, e, &ep);
	if (fuse_reply_entry(req, &ep)) {
		f4_lock(f);
		f4_forget(f, e->ino, 1);
		f4_unlock(f);
	}
}

static void reply_err(fuse_req_t req, int ret)
{
	fuse_reply_err(req, ret < 0 ? -ret : ret);
}

/*
 * The core changed attributes of ino that the kernel caches, in a way no
 * reply tells it about (f4_unlock() calls this, without the lock: the
 * kernel may be waiting on a request that needs it).  Attributes only:
 * the file's pages stay valid.
 */
static void inval_inode(struct f4fs *f, ext2_ino_t ino)
{
	int ret;

	ret = fuse_lowlevel_notify_inval_inode(f->fuse_priv, f4_nodeid_of(ino),
					       -1, 0);
	/* ENOENT: the kernel has let go of the inode meanwhile */
	if (ret && ret != -ENOENT)
		f4_log(LOG_DEBUG, "inode %u: telling the kernel its attributes "
		       "changed: %s", ino, strerror(-ret));
}

/*
 * Drop the kernel's dentry for name in dir (a casefolded directory's name
 * that a reply couldn't mark uncached).  Never while the kernel may be
 * waiting on a reply that needs dir's lock.
 */
static void inval_entry(struct f4fs *f, ext2_ino_t dir, const char *name)
{
	int ret;

	if (!f->fuse_priv)
		return;
	ret = fuse_lowlevel_notify_inval_entry(f->fuse_priv,
					       f4_nodeid_of(dir), name,
					       strlen(name));
	if (ret && ret != -ENOENT)
		f4_log(LOG_DEBUG, "directory %u: dropping the kernel's entry "
		       "for a name: %s", dir, strerror(-ret));
}

/* Let the core reach the kernel's caches through se (NULL: no more). */
void f4_ops_attach(struct f4fs *f, struct fuse_session *se)
{
	f4_lock(f);
	f->fuse_priv = se;
	f->inval_inode = se ? inval_inode : NULL;
	f->ninval = 0;
	f4_unlock(f);
}

/* ---- lifecycle -------------------------------------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct f4fs *f = userdata;
	size_t ra;

	/*
	 * HANDLE_KILLPRIV: fuse4fs drops setuid/setgid itself on write,
	 * truncate and chown, with ext4's rules, instead of the kernel
	 * sending a chmod on the writer's behalf.
	 *
	 * No ATOMIC_O_TRUNC: an open(O_TRUNC) by another user drops those
	 * bits too, but an open's reply carries no attributes, and the
	 * kernel goes on judging with the mode it cached (a hard link to a
	 * setgid program is refused, for one).  Truncated by a SETATTR
	 * after the open, the new mode comes back in the reply.
	 */
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
	conn->want |= conn->capable & (FUSE_CAP_HANDLE_KILLPRIV |
				       FUSE_CAP_EXPORT_SUPPORT |
				       FUSE_CAP_IOCTL_DIR |
				       FUSE_CAP_CACHE_SYMLINKS);
	conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
			FUSE_CAP_SPLICE_MOVE);
	/*
	 * With POSIX ACLs the kernel checks permissions itself, as with
	 * default_permissions (and enforces the ACLs, which it caches):
	 * checking again here could only disagree.
	 */
	if (f->opts->acl && (conn->capable & FUSE_CAP_POSIX_ACL)) {
		conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
		f->opts->default_permissions = 1;
	}
	/*
	 * -o writeback_cache: the kernel's page cache may hold writes back
	 * (the way ext4's delayed allocation does), so small random writes
	 * cost no round trip each.  Opt-in, because the kernel then keeps a
	 * regular file's mtime, ctime and size itself and ignores ours: a
	 * truncate to the same size leaves the times alone, times are not
	 * clamped to what the inode can hold until the kernel forgets the
	 * inode, and reads served from cached pages don't touch atime.
	 * Never with -o sync (every write(2) must reach the disk) or
	 * -o direct (no page cache for file data at all), nor with blocks
	 * smaller than a page: write-back comes in whole pages and would
	 * fill the holes around a small write.
	 */
	if (f->opts->writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE) &&
	    !f->opts->sync &&
	    !f->opts->direct && f->blocksize >= (size_t)getpagesize())
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	else
		conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	f->writeback = !!(conn->want & FUSE_CAP_WRITEBACK_CACHE);
	if (f->opts->writeback && !f->writeback)
		f4_log(LOG_WARNING, "writeback_cache not used: %s",
		       f->opts->sync ? "-o sync" :
		       f->opts->direct ? "-o direct" :
		       !(conn->capable & FUSE_CAP_WRITEBACK_CACHE) ?
		       "the kernel does not offer it" :
		       "blocks are smaller than a page");
	conn->max_write = 1 << 20;
	conn->time_gran = 1;
	ra = f4_tune_readahead(f);
	conn->max_readahead = ra > (1 << 20) ? ra : 1 << 20;
}

static void op_destroy(void *userdata)
{
	struct f4fs *f = userdata;

	/*
	 * For fuseblk mounts the kernel waits for this reply before umount
	 * returns: everything must be on the device when it does.
	 */
	f4_stop_flusher(f);
	f4_lock(f);
	f->close_status = f4_fs_close(f);
	f->closed = 1;
	f4_unlock(f);
}

/* ---- names ------------------------------------------------------------ */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct f4fs *f = fs_of(req);
	struct f4_entry e;
	struct f4_cred cred;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	e.uncached_name = 0;
	ret = f4_lookup(f, &cred, f4_ino_of(parent), name, &e);
	f4_unlock(f);
	/* A cached absence of "abc" would hide a later "ABC" */
	if (ret == -ENOENT && !e.uncached_name) {
		/* Nobody else changes the image: absence can be cached too */
		struct fuse_entry_param ep;

		memset(&ep, 0, sizeof(ep));
		ep.entry_timeout = entry_timeout(f);
		fuse_reply_entry(req, &ep);
		return;
	}
	reply_entry(req, f, ret, &e);
}

/*
 * FORGETs are queued apart from other requests and may still be read,
 * or handled by another worker, after DESTROY (a fuseblk unmount) has
 * closed the file system: by then there is nothing left to forget.
 */
static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct f4fs *f = fs_of(req);

	f4_lock(f);
	if (!f->closed)
		f4_forget(f, f4_ino_of(ino), nlookup);
	f4_unlock(f);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	struct f4fs *f = fs_of(req);
	size_t i;

	f4_lock(f);
	for (i = 0; i < count && !f->closed; i++)
		f4_forget(f, f4_ino_of(forgets[i].ino), forgets[i].nlookup);
	f4_unlock(f);
	fuse_reply_none(req);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	struct f4_entry e;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_mknod(f, &cred, f4_ino_of(parent), name, mode, rdev, &e);
	f4_unlock(f);
	reply_entry(req, f, ret, &e);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	struct f4_entry e;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_mkdir(f, &cred, f4_ino_of(parent), name, mode, &e);
	f4_unlock(f);
	reply_entry(req, f, ret, &e);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	struct f4_entry e;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_symlink(f, &cred, link, f4_ino_of(parent), name, &e);
	f4_unlock(f);
	reply_entry(req, f, ret, &e);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	struct f4_entry e;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_link(f, &cred, f4_ino_of(ino), f4_ino_of(newparent), newname,
		      &e);
	f4_unlock(f);
	reply_entry(req, f, ret, &e);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_unlink(f, &cred, f4_ino_of(parent), name);
	f4_unlock(f);
	reply_err(req, ret);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_rmdir(f, &cred, f4_ino_of(parent), name);
	f4_unlock(f);
	reply_err(req, ret);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	int ret, cf_old, cf_new;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_rename(f, &cred, f4_ino_of(parent), name,
			f4_ino_of(newparent), newname, flags);
	cf_old = !ret && f4_dir_casefolded(f, f4_ino_of(parent));
	cf_new = !ret && f4_dir_casefolded(f, f4_ino_of(newparent));
	f4_unlock(f);
	reply_err(req, ret);
	/*
	 * The kernel moves the source's dentry, timeout and all, to the new
	 * name: in a casefolded directory it must not stay cached (see
	 * fill_param).  Only after the reply: the kernel holds the
	 * directories locked until the rename is answered.
	 */
	if (cf_new)
		inval_entry(f, f4_ino_of(newparent), newname);
	if (cf_old && (flags & F4_RENAME_EXCHANGE))
		inval_entry(f, f4_ino_of(parent), name);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct f4fs *f = fs_of(req);
	char buf[PATH_MAX + 1];
	int ret;

	f4_lock(f);
	ret = f4_readlink(f, f4_ino_of(ino), buf, sizeof(buf));
	f4_unlock(f);
	if (ret)
		reply_err(req, ret);
	else
		fuse_reply_readlink(req, buf);
}

/* ---- attributes ---------------------------------------------------------- */

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct f4fs *f = fs_of(req);
	struct stat st;
	int ret;

	f4_lock(f);
	ret = f4_getattr(f, f4_ino_of(ino), &st);
	f4_unlock(f);
	if (ret)
		reply_err(req, ret);
	else
		fuse_reply_attr(req, &st, CACHE_TIMEOUT);
}

static int setattr_flags(int to_set)
{
	static const struct { int fuse, f4; } map[] = {
		{ FUSE_SET_ATTR_MODE, F4_SET_MODE },
		{ FUSE_SET_ATTR_UID, F4_SET_UID },
		{ FUSE_SET_ATTR_GID, F4_SET_GID },
		{ FUSE_SET_ATTR_SIZE, F4_SET_SIZE },
		{ FUSE_SET_ATTR_ATIME, F4_SET_ATIME },
		{ FUSE_SET_ATTR_MTIME, F4_SET_MTIME },
		{ FUSE_SET_ATTR_ATIME_NOW, F4_SET_ATIME | F4_SET_ATIME_NOW },
		{ FUSE_SET_ATTR_MTIME_NOW, F4_SET_MTIME | F4_SET_MTIME_NOW },
		{ FUSE_SET_ATTR_CTIME, F4_SET_CTIME },
		{ FUSE_SET_ATTR_KILL_SUID, F4_SET_KILL_SUIDGID },
		{ FUSE_SET_ATTR_KILL_SGID, F4_SET_KILL_SUIDGID },
		{ FUSE_SET_ATTR_KILL_PRIV, F4_SET_KILL_SUIDGID },
	};
	int out = 0;
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (to_set & map[i].fuse)
			out |= map[i].f4;
	return out;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	struct stat st;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_setattr(f, &cred, f4_ino_of(ino), attr, setattr_flags(to_set),
			 fi ? (struct f4_file *)(uintptr_t)fi->fh : NULL, &st);
	f4_unlock(f);
	if (ret)
		reply_err(req, ret);
	else
		fuse_reply_attr(req, &st, CACHE_TIMEOUT);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_access(f, &cred, f4_ino_of(ino), mask);
	f4_unlock(f);
	reply_err(req, ret);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct f4fs *f = fs_of(req);
	struct statvfs st;

	f4_lock(f);
	f4_statfs(f, &st);
	f4_quota_statfs(f, f4_ino_of(ino), &st);
	f4_unlock(f);
	fuse_reply_statfs(req, &st);
}

/* ---- files -------------------------------------------------------------- */

static struct f4_file *fh_of(struct fuse_file_info *fi)
{
	return (struct f4_file *)(uintptr_t)fi->fh;
}

static void set_open_flags(struct f4fs *f, struct fuse_file_info *fi)
{
	fi->keep_cache = !f->opts->direct;
	fi->direct_io = f->opts->direct;
	/*
	 * Writes reach us as they happen and there are no locks to drop,
	 * so a close needs no FLUSH round trip (release still comes).
	 */
	fi->noflush = 1;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct f4fs *f = fs_of(req);
	struct f4_file *fh = NULL;
	struct f4_cred cred;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_open(f, &cred, f4_ino_of(ino), fi->flags, &fh);
	f4_unlock(f);
	if (ret) {
		reply_err(req, ret);
		return;
	}
	fi->fh = (uintptr_t)fh;
	set_open_flags(f, fi);
	if (fh->direct_io)
		fi->direct_io = 1;
	if (fi->flags & O_TRUNC)
		fi->keep_cache = 0;
	if (fuse_reply_open(req, fi)) {
		f4_lock(f);
		f4_release(f, fh);
		f4_unlock(f);
	}
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct f4fs *f = fs_of(req);
	struct fuse_entry_param ep;
	struct f4_file *fh = NULL;
	struct f4_cred cred;
	struct f4_entry e;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_create(f, &cred, f4_ino_of(parent), name, mode, fi->flags, &e,
			&fh);
	f4_unlock(f);
	if (ret) {
		reply_err(req, ret);
		return;
	}
	fi->fh = (uintptr_t)fh;
	set_open_flags(f, fi);
	fill_param(f, &e, &ep);
	if (fuse_reply_create(req, &ep, fi)) {
		f4_lock(f);
		f4_release(f, fh);
		f4_forget(f, e.ino, 1);
		f4_unlock(f);
	}
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct f4fs *f = fs_of(req);
	char *buf = malloc(size ? size : 1);
	ssize_t ret;

	if (!buf) {
		reply_err(req, -ENOMEM);
		return;
	}
	f4_lock(f);
	ret = f4_read(f, fh_of(fi), buf, size, off);
	f4_unlock(f);
	if (ret < 0)
		reply_err(req, ret);
	else
		fuse_reply_buf(req, buf, ret);
	free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	ssize_t ret;

	f4_cred_of(req, &cred);
	if (fi->writepage) {
		cred.writeback = 1;
		cred.may_reserve = fh_of(fi)->may_reserve;
	}
	f4_lock(f);
	ret = f4_write(f, &cred, fh_of(fi), buf, size, off);
	f4_unlock(f);
	if (ret < 0)
		reply_err(req, ret);
	else
		fuse_reply_write(req, ret);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct f4fs *f = fs_of(req);

	f4_lock(f);
	f4_release(f, fh_of(fi));
	f4_unlock(f);
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct f4fs *f = fs_of(req);
	int ret;

	f4_lock(f);
	ret = f4_fsync(f, f4_ino_of(ino), datasync);
	f4_unlock(f);
	reply_err(req, ret);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
			 off_t off, off_t len, struct fuse_file_info *fi)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_fallocate(f, &cred, f4_ino_of(ino), mode, off, len);
	f4_unlock(f);
	reply_err(req, ret);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct f4fs *f = fs_of(req);
	off_t ret;

	/*
	 * Under the write-back cache, data the kernel has not sent yet is
	 * invisible here and would be reported as a hole.  ENOSYS makes the
	 * kernel answer SEEK_DATA/SEEK_HOLE itself, treating the whole file
	 * as data, which is always correct.
	 */
	if (f->writeback) {
		reply_err(req, -ENOSYS);
		return;
	}
	f4_lock(f);
	ret = f4_lseek(f, f4_ino_of(ino), off, whence);
	f4_unlock(f);
	if (ret < 0)
		reply_err(req, ret);
	else
		fuse_reply_lseek(req, ret);
}

static void op_bmap(fuse_req_t req, fuse_ino_t ino, size_t blocksize,
		    uint64_t idx)
{
	struct f4fs *f = fs_of(req);
	int ret;

	f4_lock(f);
	ret = f4_bmap(f, f4_ino_of(ino), blocksize, &idx);
	f4_unlock(f);
	if (ret)
		reply_err(req, ret);
	else
		fuse_reply_bmap(req, idx);
}

/*
 * EXT4_IOC_SHUTDOWN is _IOR, so a restricted FUSE ioctl brings no input:
 * its flags are read from the caller's memory, where arg points.
 */
static int caller_u32(fuse_req_t req, void *arg, uint32_t *v)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct iovec local = { v, sizeof(*v) }, remote = { arg, sizeof(*v) };

	if (process_vm_readv(ctx->pid, &local, 1, &remote, 1, 0) !=
	    sizeof(*v))
		return -EFAULT;
	return 0;
}

static void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd,
		     void *arg, struct fuse_file_info *fi, unsigned flags,
		     const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	char out[256];
	size_t out_size = out_bufsz < sizeof(out) ? out_bufsz : sizeof(out);
	uint32_t going;
	int ret;

	if (flags & FUSE_IOCTL_UNRESTRICTED) {
		reply_err(req, -ENOTTY);
		return;
	}
	f4_cred_of(req, &cred);
	if (cmd == F4_IOC_SHUTDOWN && in_bufsz < sizeof(going)) {
		ret = caller_u32(req, arg, &going);
		if (ret) {
			reply_err(req, ret);
			return;
		}
		in_buf = &going;
		in_bufsz = sizeof(going);
	}
	f4_lock(f);
	ret = f4_ioctl(f, &cred, f4_ino_of(ino), cmd, in_buf, in_bufsz, out,
		       &out_size);
	f4_unlock(f);
	if (ret)
		reply_err(req, ret);
	else
		fuse_reply_ioctl(req, 0, out_size ? out : NULL, out_size);
}

/* ---- directories -------------------------------------------------------- */

static struct f4_dir *dir_of(struct fuse_file_info *fi)
{
	return (struct f4_dir *)(uintptr_t)fi->fh;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct f4fs *f = fs_of(req);
	struct f4_dir *d = NULL;
	struct f4_cred cred;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_opendir(f, &cred, f4_ino_of(ino), &d);
	f4_unlock(f);
	if (ret) {
		reply_err(req, ret);
		return;
	}
	/*
	 * No kernel readdir cache: it would go on serving names removed
	 * while the directory is open, where ext4 (and our snapshot) skip
	 * them.
	 */
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi)) {
		f4_lock(f);
		f4_releasedir(f, d);
		f4_unlock(f);
	}
}

static void do_readdir(fuse_req_t req, size_t size, off_t off,
		       struct fuse_file_info *fi, int plus)
{
	struct f4fs *f = fs_of(req);
	struct f4_dir *d = dir_of(fi);
	ext2_ino_t *refs = NULL;	/* references this reply hands over */
	size_t i, nrefs = 0;
	char *buf;
	size_t used = 0;
	int ret = 0;

	buf = malloc(size);
	/* At most as many entries as the shortest (a name of "") fits */
	if (plus)
		refs = malloc((size / fuse_add_direntry_plus(req, NULL, 0, "",
							      NULL, 0) + 1) *
			      sizeof(*refs));
	if (!buf || (plus && !refs)) {
		free(buf);
		free(refs);
		reply_err(req, -ENOMEM);
		return;
	}
	f4_lock(f);
	if (off == 0 || !d->loaded)
		ret = f4_dir_load(f, d);
	for (; !ret && (size_t)off < d->nents; off++) {
		struct f4_dirent *de = &d->ents[off];
		const char *name = d->names + de->name_off;
		struct fuse_entry_param ep;
		struct f4_entry e;
		size_t len;
		int dot = name[0] == '.' && (!name[1] ||
					     (name[1] == '.' && !name[2]));

		if (!de->ino)
			continue;	/* removed since the snapshot */
		memset(&e, 0, sizeof(e));
		e.ino = de->ino;
		e.attr.st_ino = de->ino;
		e.attr.st_mode = de->type << 12;
		if (!plus) {
			len = fuse_add_direntry(req, buf + used, size - used,
						name, &e.attr, off + 1);
		} else {
			/*
			 * An inode the kernel holds already has current
			 * attributes there (fuse4fs invalidates them itself
			 * where they change behind the kernel's back):
			 * listing it bare spares a stat here and a dentry
			 * refresh in the kernel, most of a warm find or ls.
			 */
			int bare = dot || f4_nlookup(f, de->ino);

			if (!bare) {
				ret = f4_fill_entry(f, de->ino, &e);
				/*
				 * A damaged inode still has its name listed,
				 * as on ext4; stat of it gives the error.
				 */
				if (ret == -EFSCORRUPTED || ret == -EIO) {
					bare = 1;
					ret = 0;
				}
				if (ret)
					break;
			}
			e.uncached_name = d->casefold;
			fill_param(f, &e, &ep);
			if (bare)
				ep.ino = 0;
			len = fuse_add_direntry_plus(req, buf + used,
						     size - used, name, &ep,
						     off + 1);
		}
		if (len > size - used)
			break;
		/* Every entry with attributes hands the kernel a reference */
		if (plus && ep.ino && !f4_lookup_ref(f, de->ino))
			refs[nrefs++] = de->ino;
		used += len;
	}
	f4_unlock(f);
	/* An entry we can't stat ends the listing there, not silently */
	if (ret && !used) {
		reply_err(req, ret);
	} else if (fuse_reply_buf(req, buf, used) && nrefs) {
		/* The kernel never got the entries: take the references back */
		f4_lock(f);
		for (i = 0; i < nrefs; i++)
			f4_forget(f, refs[i], 1);
		f4_unlock(f);
	}
	free(refs);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, size, off, fi, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, size, off, fi, 1);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct f4fs *f = fs_of(req);

	f4_lock(f);
	f4_releasedir(f, dir_of(fi));
	f4_unlock(f);
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	op_fsync(req, ino, datasync, fi);
}

/* ---- extended attributes ------------------------------------------------ */

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_setxattr(f, &cred, f4_ino_of(ino), name, value, size, flags);
	f4_unlock(f);
	reply_err(req, ret);
}

static void reply_xattr(fuse_req_t req, ssize_t ret, size_t size,
			const char *buf)
{
	if (ret < 0)
		reply_err(req, ret);
	else if (!size)
		fuse_reply_xattr(req, ret);
	else
		fuse_reply_buf(req, buf, ret);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	char *buf = size ? malloc(size) : NULL;
	ssize_t ret;

	if (size && !buf) {
		reply_err(req, -ENOMEM);
		return;
	}
	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_getxattr(f, &cred, f4_ino_of(ino), name, buf, size);
	f4_unlock(f);
	reply_xattr(req, ret, size, buf);
	free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	char *buf = size ? malloc(size) : NULL;
	ssize_t ret;

	if (size && !buf) {
		reply_err(req, -ENOMEM);
		return;
	}
	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_listxattr(f, &cred, f4_ino_of(ino), buf, size);
	f4_unlock(f);
	reply_xattr(req, ret, size, buf);
	free(buf);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct f4fs *f = fs_of(req);
	struct f4_cred cred;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_removexattr(f, &cred, f4_ino_of(ino), name);
	f4_unlock(f);
	reply_err(req, ret);
}

#ifdef HAVE_STRUCT_FUSE_LOWLEVEL_OPS_TMPFILE
static void op_tmpfile(fuse_req_t req, fuse_ino_t parent, mode_t mode,
		       struct fuse_file_info *fi)
{
	struct f4fs *f = fs_of(req);
	struct fuse_entry_param ep;
	struct f4_file *fh = NULL;
	struct f4_cred cred;
	struct f4_entry e;
	int ret;

	f4_cred_of(req, &cred);
	f4_lock(f);
	ret = f4_tmpfile(f, &cred, f4_ino_of(parent), mode, fi->flags, &e, &fh);
	f4_unlock(f);
	if (ret) {
		reply_err(req, ret);
		return;
	}
	fi->fh = (uintptr_t)fh;
	set_open_flags(f, fi);
	fill_param(f, &e, &ep);
	if (fuse_reply_create(req, &ep, fi)) {
		f4_lock(f);
		f4_release(f, fh);
		f4_forget(f, e.ino, 1);
		f4_unlock(f);
	}
}
#endif

const struct fuse_lowlevel_ops f4_ops = {
	.init		= op_init,
	.destroy	= op_destroy,
	.lookup		= op_lookup,
	.forget		= op_forget,
	.forget_multi	= op_forget_multi,
	.getattr	= op_getattr,
	.setattr	= op_setattr,
	.readlink	= op_readlink,
	.mknod		= op_mknod,
	.mkdir		= op_mkdir,
	.unlink		= op_unlink,
	.rmdir		= op_rmdir,
	.symlink	= op_symlink,
	.rename		= op_rename,
	.link		= op_link,
	.open		= op_open,
	.read		= op_read,
	.write		= op_write,
	.flush		= op_flush,
	.release	= op_release,
	.fsync		= op_fsync,
	.opendir	= op_opendir,
	.readdir	= op_readdir,
	.readdirplus	= op_readdirplus,
	.releasedir	= op_releasedir,
	.fsyncdir	= op_fsyncdir,
	.statfs		= op_statfs,
	.setxattr	= op_setxattr,
	.getxattr	= op_getxattr,
	.listxattr	= op_listxattr,
	.removexattr	= op_removexattr,
	.access		= op_access,
	.create		= op_create,
	.bmap		= op_bmap,
	.ioctl		= op_ioctl,
	.fallocate	= op_fallocate,
	.lseek		= op_lseek,
#ifdef HAVE_STRUCT_FUSE_LOWLEVEL_OPS_TMPFILE
	.tmpfile	= op_tmpfile,
#endif
};

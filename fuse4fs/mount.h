/*
 * mount.h - how fuse4fs mounts (mount.c).
 */
#ifndef F4_MOUNT_H
#define F4_MOUNT_H

#include <limits.h>
#include <stddef.h>

struct f4_mount {
	int blkdev;			/* fuseblk: umount waits for us */
	int loop_fd;			/* our hold on the loop device */
	int direct;			/* mounted by us, not by libfuse */
	char source[PATH_MAX];		/* the block device, for fuseblk */
};

void f4_mount_prepare(struct f4fs *f, struct f4_mount *m);
void f4_mount_done(struct f4_mount *m);
struct fuse_session *f4_make_session(struct f4fs *f, const struct f4_mount *m);
int f4_start_watchdog(const char *mountpoint);
int f4_mount_direct(struct f4fs *f, struct f4_mount *m,
		    struct fuse_session *se);
void f4_mount_finish(struct f4fs *f, struct f4_mount *m,
		     struct fuse_session *se);
void f4_stop_watchdog(int fd);
size_t f4_tune_readahead(struct f4fs *f);
int f4_write_sysfs_long(const char *path, long v);

#endif

/*
 * fuse4fs.c - mount an ext2/ext3/ext4 file system through FUSE.
 *
 * main() parses the command line, opens and checks the file system (so
 * that every reason not to mount is one clear line on stderr), mounts,
 * daemonizes, and serves requests until unmounted.  The op table is in
 * ops.c, the request loop in session.c.
 *
 * Exit status: 0 success, 1 bad usage or options, 2 the file system can't
 * be opened or checked, 3 the mount failed, 4 errors while unmounting.
 */
#include "config.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "ops.h"
#include "mount.h"

#define EXIT_USAGE	1
#define EXIT_FS		2
#define EXIT_MOUNT	3
#define EXIT_UNMOUNT	4

static struct fuse_session *the_session;

/* errors=panic: stop serving; the mount goes away with us. */
static void panic_stop(struct f4fs *f)
{
	if (the_session)
		f4_session_stop(the_session);
}

static int is_mount_point(const char *path)
{
	char line[8192];
	FILE *fp = fopen("/proc/self/mountinfo", "re");
	int found = 0;

	if (!fp)
		return 0;
	while (!found && fgets(line, sizeof(line), fp)) {
		char *f[5], *save = NULL, *p = line;
		int i;

		for (i = 0; i < 5; i++, p = NULL) {
			f[i] = strtok_r(p, " ", &save);
			if (!f[i])
				break;
		}
		if (i == 5 && !strcmp(f[4], path))
			found = 1;
	}
	fclose(fp);
	return found;
}

static int check_mountpoint(const struct f4_opts *opts)
{
	struct stat st;

	if (stat(opts->mountpoint, &st)) {
		fprintf(stderr, "fuse4fs: %s: %s\n", opts->mountpoint,
			strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "fuse4fs: %s: mount point is not a "
			"directory\n", opts->mountpoint);
		return -1;
	}
	if (is_mount_point(opts->mountpoint)) {
		fprintf(stderr, "fuse4fs: %s: already a mount point\n",
			opts->mountpoint);
		return -1;
	}
	return 0;
}

static int serve(struct f4fs *f, struct fuse_session *se)
{
	int threads = f->opts->single_thread ? 1 : f->opts->max_threads;
	int ret;

	ret = f4_start_flusher(f);
	if (ret) {
		f4_log(LOG_ERR, "cannot start the flusher thread: %s",
		       strerror(-ret));
		return ret;
	}
	ret = f4_session_loop(se, f, threads);
	if (ret)
		f4_log(LOG_ERR, "%s: request loop stopped: %s",
		       f->opts->mountpoint, strerror(-ret));
	return ret;
}

int main(int argc, char **argv)
{
	struct f4_opts opts;
	struct f4fs f;
	struct f4_mount m;
	struct fuse_session *se;
	struct stat st;
	int ret, status = 0, watchdog = -1;

	memset(&f, 0, sizeof(f));
	ret = f4_parse_options(argc, argv, &opts);
	if (ret)
		return ret > 0 ? 0 : EXIT_USAGE;
	f4_set_verbose(opts.verbose || opts.debug);
	if (check_mountpoint(&opts)) {
		f4_free_options(&opts);
		return EXIT_USAGE;
	}
	/* A fuseblk mount claims the block device itself: don't claim it */
	if (geteuid() == 0 && opts.fuseblk && !stat(opts.device, &st) &&
	    S_ISBLK(st.st_mode))
		opts.no_excl = 1;
	if (f4_fs_open(&f, &opts)) {
		f4_free_options(&opts);
		return EXIT_FS;
	}
	f.panic = panic_stop;

	f4_mount_prepare(&f, &m);
	se = f4_make_session(&f, &m);
	if (!se) {
		f4_mount_done(&m);
		fprintf(stderr, "fuse4fs: cannot set up the FUSE session\n");
		status = EXIT_MOUNT;
		goto close;
	}
	the_session = se;
	f4_ops_attach(&f, se);
	ret = fuse_set_signal_handlers(se);
	if (!ret && f4_mount_direct(&f, &m, se))
		ret = fuse_session_mount(se, opts.mountpoint);
	f4_mount_done(&m);
	if (ret) {
		fprintf(stderr, "fuse4fs: cannot mount %s on %s\n",
			opts.device, opts.mountpoint);
		status = EXIT_MOUNT;
		goto destroy;
	}
	if (!opts.foreground) {
		f4_log_to_syslog(1);
		if (fuse_daemonize(0)) {
			status = EXIT_MOUNT;
			goto unmount;
		}
	}
	if (opts.auto_unmount && geteuid() == 0)
		watchdog = f4_start_watchdog(opts.mountpoint);
	f4_log(LOG_INFO, "%s mounted on %s%s", opts.device, opts.mountpoint,
	       f.ro ? " (read-only)" : "");
	if (serve(&f, se))
		status = EXIT_UNMOUNT;
unmount:
	f4_mount_finish(&f, &m, se);
	f4_stop_watchdog(watchdog);
destroy:
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);
	f4_ops_attach(&f, NULL);
	the_session = NULL;
close:
	if (!f.closed) {
		f4_stop_flusher(&f);
		f.close_status = f4_fs_close(&f);
	}
	if (f.close_status && !status)
		status = EXIT_UNMOUNT;
	if (f.shutdown && !status)
		status = EXIT_UNMOUNT;
	f4_free_options(&opts);
	return status;
}

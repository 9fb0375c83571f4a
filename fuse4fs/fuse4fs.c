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

#define EXIT_USAGE	1
#define EXIT_FS		2
#define EXIT_MOUNT	3
#define EXIT_UNMOUNT	4

static struct fuse_session *the_session;

/* errors=panic: stop serving; the mount goes away with us. */
static void panic_stop(struct f4fs *f)
{
	if (the_session)
		fuse_session_exit(the_session);
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

/* Append one FUSE mount option, escaping commas and backslashes. */
static void add_opt(char *buf, size_t len, const char *key, const char *val)
{
	size_t used = strlen(buf);

	if (used && used < len - 1)
		buf[used++] = ',';
	for (; *key && used < len - 1; key++)
		buf[used++] = *key;
	if (val) {
		if (used < len - 1)
			buf[used++] = '=';
		for (; *val && used < len - 2; val++) {
			if (*val == ',' || *val == '\\')
				buf[used++] = '\\';
			buf[used++] = *val;
		}
	}
	buf[used] = 0;
}

static void fuse_mount_options(const struct f4fs *f, char *buf, size_t len)
{
	const struct f4_opts *o = f->opts;

	buf[0] = 0;
	add_opt(buf, len, "fsname", o->fsname ? o->fsname : o->device);
	add_opt(buf, len, "subtype", o->subtype ? o->subtype : "fuse4fs");
	if (o->allow_other)
		add_opt(buf, len, "allow_other", NULL);
	else if (o->allow_root)
		add_opt(buf, len, "allow_root", NULL);
	if (o->default_permissions)
		add_opt(buf, len, "default_permissions", NULL);
	if (f->ro)
		add_opt(buf, len, "ro", NULL);
	add_opt(buf, len, o->suid ? "suid" : "nosuid", NULL);
	add_opt(buf, len, o->dev ? "dev" : "nodev", NULL);
	if (o->noexec)
		add_opt(buf, len, "noexec", NULL);
	if (o->dirsync)
		add_opt(buf, len, "dirsync", NULL);
	if (o->auto_unmount)
		add_opt(buf, len, "auto_unmount", NULL);
}

static struct fuse_session *make_session(struct f4fs *f)
{
	char mopts[PATH_MAX * 2 + 256];
	char *argv[5];
	int argc = 0;
	struct fuse_args args;
	struct fuse_session *se;

	fuse_mount_options(f, mopts, sizeof(mopts));
	argv[argc++] = f->opts->progname;
	argv[argc++] = "-o";
	argv[argc++] = mopts;
	if (f->opts->debug)
		argv[argc++] = "-d";
	argv[argc] = NULL;
	args.argc = argc;
	args.argv = argv;
	args.allocated = 0;
	se = fuse_session_new(&args, &f4_ops, sizeof(f4_ops), f);
	fuse_opt_free_args(&args);
	return se;
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
	struct fuse_session *se;
	int ret, status = 0;

	memset(&f, 0, sizeof(f));
	ret = f4_parse_options(argc, argv, &opts);
	if (ret)
		return ret > 0 ? 0 : EXIT_USAGE;
	f4_set_verbose(opts.verbose || opts.debug);
	if (check_mountpoint(&opts)) {
		f4_free_options(&opts);
		return EXIT_USAGE;
	}
	if (f4_fs_open(&f, &opts)) {
		f4_free_options(&opts);
		return EXIT_FS;
	}
	f.panic = panic_stop;

	se = make_session(&f);
	if (!se) {
		fprintf(stderr, "fuse4fs: cannot set up the FUSE session\n");
		status = EXIT_MOUNT;
		goto close;
	}
	the_session = se;
	if (fuse_set_signal_handlers(se) ||
	    fuse_session_mount(se, opts.mountpoint)) {
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
	f4_log(LOG_INFO, "%s mounted on %s%s", opts.device, opts.mountpoint,
	       f.ro ? " (read-only)" : "");
	if (serve(&f, se))
		status = EXIT_UNMOUNT;
unmount:
	fuse_session_unmount(se);
destroy:
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);
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

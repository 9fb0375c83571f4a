/*
 * options.c - the command line.
 *
 * fuse4fs [options] DEVICE|IMAGE MOUNTPOINT, options before or after the
 * positional arguments, as fuse4fs or as the mount.fuse4fs helper that
 * mount(8) runs (which passes -o, -n, -s, -v and -t).  Every -o option is
 * in the table below, which --help prints and the man page must match;
 * anything else is an error, not a silent no-op.
 */
#include "config.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuse4fs.h"

enum opt_id {
	O_RO, O_RW, O_FAKEROOT, O_KERNEL, O_DEFAULT_PERMISSIONS,
	O_ALLOW_OTHER, O_ALLOW_ROOT, O_ACL, O_NOACL, O_ERRORS, O_DIRSYNC,
	O_WRITEBACK, O_NOWRITEBACK,
	O_SYNC, O_ASYNC, O_CACHE_SIZE, O_DIRECT, O_LOCKFILE, O_MINIXDF,
	O_BSDDF, O_NORECOVERY, O_NOLOAD, O_DEBUG, O_OFFSET, O_PARTITION,
	O_COMMIT, O_THREADS, O_SPIN, O_NOATIME, O_RELATIME, O_STRICTATIME, O_ATIME,
	O_NODIRATIME, O_SUID, O_NOSUID, O_DEV, O_NODEV, O_EXEC, O_NOEXEC,
	O_FSNAME, O_SUBTYPE, O_AUTO_UNMOUNT, O_NOAUTO_UNMOUNT, O_USER_XATTR,
	O_FUSEBLK, O_NOFUSEBLK,
	O_IGNORED,
};

struct opt_desc {
	const char *name;
	const char *arg;		/* name of its value, or NULL */
	enum opt_id id;
	const char *help;
};

static const struct opt_desc opt_table[] = {
	{ "ro", NULL, O_RO, "mount read-only" },
	{ "rw", NULL, O_RW, "mount read-write (the default)" },
	{ "fakeroot", NULL, O_FAKEROOT,
	  "no permission checks: everyone is treated as root" },
	{ "kernel", NULL, O_KERNEL,
	  "allow_other, default_permissions, suid and dev together" },
	{ "default_permissions", NULL, O_DEFAULT_PERMISSIONS,
	  "let the kernel check permissions" },
	{ "allow_other", NULL, O_ALLOW_OTHER,
	  "let other users use the mount (implies default_permissions)" },
	{ "allow_root", NULL, O_ALLOW_ROOT,
	  "let root use the mount (implies default_permissions)" },
	{ "acl", NULL, O_ACL, "POSIX access control lists" },
	{ "noacl", NULL, O_NOACL, "no POSIX ACLs (the default)" },
	{ "errors", "MODE", O_ERRORS,
	  "continue|remount-ro|panic on damage (default: the superblock's)" },
	{ "dirsync", NULL, O_DIRSYNC, "write directory changes at once" },
	{ "sync", NULL, O_SYNC, "write every change at once" },
	{ "async", NULL, O_ASYNC, "write changes in the background (default)" },
	{ "cache_size", "SIZE", O_CACHE_SIZE,
	  "block cache size, N[kmg] (default 64m)" },
	{ "direct", NULL, O_DIRECT, "no kernel page cache for file data" },
	{ "writeback_cache", NULL, O_WRITEBACK,
	  "let the kernel hold writes back; faster small writes, but the "
	  "kernel keeps mtime and ctime (see the manual)" },
	{ "nowriteback_cache", NULL, O_NOWRITEBACK,
	  "every write(2) reaches fuse4fs (the default)" },
	{ "lockfile", "PATH", O_LOCKFILE, "hold a lock on PATH while mounted" },
	{ "minixdf", NULL, O_MINIXDF, "statfs counts metadata blocks as used" },
	{ "bsddf", NULL, O_BSDDF, "statfs leaves metadata out (default)" },
	{ "norecovery", NULL, O_NORECOVERY,
	  "don't replay the journal; implies ro" },
	{ "noload", NULL, O_NOLOAD, "same as norecovery" },
	{ "debug", NULL, O_DEBUG, "print every request (implies -f)" },
	{ "offset", "BYTES", O_OFFSET,
	  "the file system starts this many bytes into the device" },
	{ "partition", "N", O_PARTITION,
	  "mount partition N of a partitioned (MBR or GPT) image" },
	{ "commit", "SECONDS", O_COMMIT,
	  "seconds between background writes (default 5)" },
	{ "threads", "N", O_THREADS, "worker threads (default 1)" },
	{ "spin", "USEC", O_SPIN,
	  "after a request, poll this long for the next before sleeping "
	  "(default 100, 0: never)" },
	{ "noatime", NULL, O_NOATIME, "don't update access times" },
	{ "relatime", NULL, O_RELATIME,
	  "update access times lazily (the default)" },
	{ "strictatime", NULL, O_STRICTATIME, "update access times always" },
	{ "atime", NULL, O_ATIME, "same as relatime" },
	{ "nodiratime", NULL, O_NODIRATIME, "accepted; directories get no atime" },
	{ "suid", NULL, O_SUID, "honour setuid and setgid bits" },
	{ "nosuid", NULL, O_NOSUID, "ignore setuid and setgid bits (default)" },
	{ "dev", NULL, O_DEV, "honour device nodes" },
	{ "nodev", NULL, O_NODEV, "ignore device nodes (default)" },
	{ "exec", NULL, O_EXEC, "allow running programs (default)" },
	{ "noexec", NULL, O_NOEXEC, "don't allow running programs" },
	{ "fsname", "NAME", O_FSNAME, "source name shown in /proc/mounts" },
	{ "subtype", "NAME", O_SUBTYPE, "type shown as fuse.SUBTYPE" },
	{ "auto_unmount", NULL, O_AUTO_UNMOUNT,
	  "unmount if fuse4fs dies (the default)" },
	{ "noauto_unmount", NULL, O_NOAUTO_UNMOUNT,
	  "leave the mount if fuse4fs dies" },
	{ "user_xattr", NULL, O_USER_XATTR, "accepted; user xattrs are on" },
	{ "fuseblk", NULL, O_FUSEBLK,
	  "root: mount as fuseblk, so umount waits until all is written "
	  "(default)" },
	{ "nofuseblk", NULL, O_NOFUSEBLK,
	  "plain FUSE mount: umount returns before the data is written" },
	/* what mount(8) and fstab pass along */
	{ "defaults", NULL, O_IGNORED, "fstab: the default options" },
	{ "auto", NULL, O_IGNORED, "fstab: mount at boot" },
	{ "noauto", NULL, O_IGNORED, "fstab: don't mount at boot" },
	{ "nofail", NULL, O_IGNORED, "fstab: boot even if missing" },
	{ "_netdev", NULL, O_IGNORED, "fstab: needs the network" },
	{ "user", NULL, O_IGNORED, "fstab: users may mount" },
	{ "users", NULL, O_IGNORED, "fstab: users may mount and unmount" },
	{ "nouser", NULL, O_IGNORED, "fstab: only root may mount" },
	{ "x-*", NULL, O_IGNORED, "fstab: options for other programs" },
	{ "comment=*", NULL, O_IGNORED, "fstab: options for other programs" },
	{ NULL, NULL, 0, NULL }
};

void f4_usage(const char *progname, int full)
{
	const struct opt_desc *o;

	printf("usage: %s [options] DEVICE|IMAGE MOUNTPOINT\n", progname);
	if (!full) {
		printf("Try '%s --help' for the options.\n", progname);
		return;
	}
	printf("\nMount an ext2, ext3 or ext4 file system through FUSE.\n\n"
	       "general options:\n"
	       "    -h, --help             this help\n"
	       "    -V, --version          the version\n"
	       "    -f                     stay in the foreground\n"
	       "    -d                     debug output (implies -f)\n"
	       "    -s                     single-threaded (as mount.fuse4fs:"
	       " sloppy, ignore\n"
	       "                           unknown -o options)\n"
	       "    -v                     verbose\n"
	       "    -n                     accepted for mount(8); ignored\n"
	       "    -t TYPE                accepted for mount(8); ignored\n"
	       "    -o OPT[,OPT...]        mount options:\n\n");
	for (o = opt_table; o->name; o++) {
		char left[40];

		snprintf(left, sizeof(left), "%s%s%s", o->name,
			 o->arg ? "=" : "", o->arg ? o->arg : "");
		printf("    %-22s %s\n", left, o->help);
	}
	printf("\nexit status: 0 success, 1 bad usage or options, 2 the file "
	       "system can't be\nopened or checked, 3 the mount failed, 4 "
	       "errors while unmounting.\n");
}

/* ---- values ----------------------------------------------------------- */

static int parse_number(const char *s, unsigned long long *val)
{
	char *end;

	if (!s || !*s || *s == '-')
		return -1;
	errno = 0;
	*val = strtoull(s, &end, 0);
	return (errno || *end) ? -1 : 0;
}

static int parse_size(const char *s, unsigned long long *val)
{
	unsigned long long n, mult = 1;
	char *end;

	if (!s || !*s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno)
		return -1;
	switch (*end) {
	case 'k': case 'K': mult = 1ULL << 10; end++; break;
	case 'm': case 'M': mult = 1ULL << 20; end++; break;
	case 'g': case 'G': mult = 1ULL << 30; end++; break;
	}
	if (*end || n > (1ULL << 40) / mult)
		return -1;
	*val = n * mult;
	return 0;
}

static int bad_value(const char *name, const char *val, const char *want)
{
	fprintf(stderr, "fuse4fs: invalid value '%s' for option %s: %s\n",
		val ? val : "", name, want);
	return -1;
}

static char *dup_or_die(const char *s)
{
	char *d = strdup(s);

	if (!d) {
		fprintf(stderr, "fuse4fs: out of memory\n");
		exit(1);
	}
	return d;
}

struct parse_state {
	struct f4_opts *o;
	int sloppy;
	int explicit_rw;
	int saw_errors;
	int explicit_suid;		/* -1: not given; else last suid/nosuid */
	int explicit_dev;		/* -1: not given; else last dev/nodev */
};

static const struct opt_desc *find_opt(const char *name, size_t len)
{
	const struct opt_desc *o;

	for (o = opt_table; o->name; o++) {
		size_t n = strlen(o->name);

		/* "x-*", "comment=*": anything starting so, value or not */
		if (o->name[n - 1] == '*') {
			if (!strncmp(name, o->name, n - 1))
				return o;
			continue;
		}
		if (n == len && !strncmp(name, o->name, len))
			return o;
	}
	return NULL;
}

static int apply_opt(struct parse_state *ps, const struct opt_desc *d,
		     const char *name, const char *val)
{
	struct f4_opts *o = ps->o;
	unsigned long long n;

	switch (d->id) {
	case O_RO: o->readonly = 1; break;
	case O_RW: o->readonly = 0; ps->explicit_rw = 1; break;
	case O_FAKEROOT: o->fakeroot = 1; break;
	case O_KERNEL:
		o->allow_other = o->default_permissions = 1;
		o->suid = o->dev = 1;
		break;
	case O_DEFAULT_PERMISSIONS: o->default_permissions = 1; break;
	case O_ALLOW_OTHER: o->allow_other = 1; break;
	case O_ALLOW_ROOT: o->allow_root = 1; break;
	case O_ACL: o->acl = 1; break;
	case O_NOACL: o->acl = 0; break;
	case O_ERRORS:
		if (!strcmp(val, "continue"))
			o->errors = F4_ERRORS_CONTINUE;
		else if (!strcmp(val, "remount-ro"))
			o->errors = F4_ERRORS_REMOUNT_RO;
		else if (!strcmp(val, "panic"))
			o->errors = F4_ERRORS_PANIC;
		else
			return bad_value(name, val,
					 "continue, remount-ro or panic");
		break;
	case O_DIRSYNC: o->dirsync = 1; break;
	case O_SYNC: o->sync = 1; break;
	case O_ASYNC: o->sync = 0; break;
	case O_CACHE_SIZE:
		if (parse_size(val, &n) || n < (256ULL << 10))
			return bad_value(name, val, "a size of at least 256k, "
					 "like 64m or 1g");
		o->cache_size = n;
		break;
	case O_DIRECT: o->direct = 1; break;
	case O_WRITEBACK: o->writeback = 1; break;
	case O_NOWRITEBACK: o->writeback = 0; break;
	case O_LOCKFILE:
		if (!*val)
			return bad_value(name, val, "a path");
		free(o->lockfile);
		o->lockfile = dup_or_die(val);
		break;
	case O_MINIXDF: o->minixdf = 1; break;
	case O_BSDDF: o->minixdf = 0; break;
	case O_NORECOVERY:
	case O_NOLOAD: o->norecovery = 1; break;
	case O_DEBUG: o->debug = o->foreground = 1; break;
	case O_OFFSET:
		if (parse_number(val, &n) || n > LLONG_MAX)
			return bad_value(name, val, "a byte count");
		o->offset = n;
		break;
	case O_PARTITION:
		if (parse_number(val, &n) || n < 1 || n > 128)
			return bad_value(name, val, "a number from 1 to 128");
		o->partition = n;
		break;
	case O_COMMIT:
		if (parse_number(val, &n) || n < 1 || n > 600)
			return bad_value(name, val, "seconds, 1 to 600");
		o->commit_interval = n;
		break;
	case O_THREADS:
		if (parse_number(val, &n) || n < 1 || n > 64)
			return bad_value(name, val, "a number from 1 to 64");
		o->max_threads = n;
		break;
	case O_SPIN:
		if (parse_number(val, &n) || n > 10000)
			return bad_value(name, val, "microseconds, 0 to 10000");
		o->spin_us = n;
		break;
	case O_NOATIME: o->noatime = 1; o->strictatime = 0; break;
	case O_RELATIME:
	case O_ATIME: o->noatime = 0; o->strictatime = 0; break;
	case O_STRICTATIME: o->noatime = 0; o->strictatime = 1; break;
	case O_NODIRATIME: break;
	case O_SUID: o->suid = ps->explicit_suid = 1; break;
	case O_NOSUID: o->suid = ps->explicit_suid = 0; break;
	case O_DEV: o->dev = ps->explicit_dev = 1; break;
	case O_NODEV: o->dev = ps->explicit_dev = 0; break;
	case O_EXEC: o->noexec = 0; break;
	case O_NOEXEC: o->noexec = 1; break;
	case O_FSNAME:
	case O_SUBTYPE:
		if (!*val || strchr(val, ','))
			return bad_value(name, val, "a name without commas");
		if (d->id == O_FSNAME) {
			free(o->fsname);
			o->fsname = dup_or_die(val);
		} else {
			free(o->subtype);
			o->subtype = dup_or_die(val);
		}
		break;
	case O_AUTO_UNMOUNT: o->auto_unmount = 1; break;
	case O_NOAUTO_UNMOUNT: o->auto_unmount = 0; break;
	case O_FUSEBLK: o->fuseblk = 1; break;
	case O_NOFUSEBLK: o->fuseblk = 0; break;
	case O_USER_XATTR:
	case O_IGNORED:
		break;
	}
	return 0;
}

/* One -o argument: options separated by commas. */
static int parse_o(struct parse_state *ps, const char *arg)
{
	char *copy = dup_or_die(arg), *opt, *save = NULL;
	int ret = 0;

	for (opt = strtok_r(copy, ",", &save); opt && !ret;
	     opt = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(opt, '=');
		size_t len = eq ? (size_t)(eq - opt) : strlen(opt);
		const struct opt_desc *d = find_opt(opt, len);

		if (!d) {
			if (ps->sloppy) {
				fprintf(stderr, "fuse4fs: ignoring unknown "
					"option '%s'\n", opt);
				continue;
			}
			fprintf(stderr, "fuse4fs: unknown option '%s' (see "
				"--help)\n", opt);
			ret = -1;
			break;
		}
		if (d->id == O_IGNORED)
			continue;
		if (d->arg && !eq) {
			fprintf(stderr, "fuse4fs: option '%s' needs a value "
				"(%s=...)\n", d->name, d->name);
			ret = -1;
			break;
		}
		if (!d->arg && eq) {
			fprintf(stderr, "fuse4fs: option '%.*s' takes no "
				"value\n", (int)len, opt);
			ret = -1;
			break;
		}
		ret = apply_opt(ps, d, d->name, eq ? eq + 1 : NULL);
	}
	free(copy);
	return ret;
}

static int check_conflicts(struct parse_state *ps)
{
	struct f4_opts *o = ps->o;

	if (o->fakeroot && o->default_permissions) {
		fprintf(stderr, "fuse4fs: fakeroot turns permission checks "
			"off; it can't be combined with default_permissions "
			"or kernel\n");
		return -1;
	}
	if (o->offset && o->partition) {
		fprintf(stderr, "fuse4fs: give either offset= or "
			"partition=, not both\n");
		return -1;
	}
	if (o->norecovery && ps->explicit_rw && !o->readonly) {
		fprintf(stderr, "fuse4fs: norecovery mounts read-only; it "
			"can't be combined with rw\n");
		return -1;
	}
	if (o->norecovery)
		o->readonly = 1;
	/*
	 * What "kernel" implies gives way to suid/nosuid and dev/nodev given
	 * explicitly, wherever they stand: mount(8) puts fstab's nosuid
	 * before the file system's own options.
	 */
	if (ps->explicit_suid >= 0)
		o->suid = ps->explicit_suid;
	if (ps->explicit_dev >= 0)
		o->dev = ps->explicit_dev;
	/*
	 * When other users can reach the mount, the kernel checks their
	 * permissions (default_permissions): it never asks fuse4fs before
	 * opening a FIFO or a device node, so checks made here could not be
	 * complete.  fakeroot, which checks nothing for anybody, is the one
	 * exception.
	 */
	if ((o->allow_other || o->allow_root) && !o->fakeroot)
		o->default_permissions = 1;
	return 0;
}

static const char *basename_of(const char *p)
{
	const char *s = strrchr(p, '/');

	return s ? s + 1 : p;
}

/*
 * Returns 0 to go on, 1 when --help or --version was answered, -1 after
 * printing what is wrong.
 */
int f4_parse_options(int argc, char **argv, struct f4_opts *o)
{
	struct parse_state ps = { o, 0, 0, 0, -1, -1 };
	char *pos[2] = { NULL, NULL };
	int npos = 0, i, ret, only_pos = 0;

	memset(o, 0, sizeof(*o));
	o->progname = dup_or_die(basename_of(argv[0]));
	o->helper = !strncmp(o->progname, "mount.", 6);
	o->auto_unmount = 1;
	o->fuseblk = 1;
	o->max_threads = 1;
	o->spin_us = F4_DEFAULT_SPIN_US;
	o->commit_interval = F4_DEFAULT_COMMIT;

	for (i = 1; i < argc; i++) {
		char *a = argv[i];

		if (only_pos || a[0] != '-' || !a[1]) {
			if (npos == 2) {
				fprintf(stderr, "fuse4fs: too many arguments: "
					"'%s'\n", a);
				return -1;
			}
			pos[npos++] = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			only_pos = 1;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			f4_usage(o->progname, 1);
			return 1;
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			const char *ver = "?", *date = "?";

			ext2fs_get_library_version(&ver, &date);
			printf("fuse4fs %s (libext2fs %s)\n",
			       FUSE4FS_VERSION, ver);
			return 1;
		} else if (!strcmp(a, "-f")) {
			o->foreground = 1;
		} else if (!strcmp(a, "-d")) {
			o->debug = o->foreground = 1;
		} else if (!strcmp(a, "-s")) {
			if (o->helper)
				ps.sloppy = 1;
			else
				o->single_thread = 1;
		} else if (!strcmp(a, "-v")) {
			o->verbose = 1;
		} else if (!strcmp(a, "-n")) {
			/* mount(8): don't write /etc/mtab; nothing to do */
		} else if (!strcmp(a, "-t")) {
			if (++i == argc) {
				fprintf(stderr, "fuse4fs: -t needs a type\n");
				return -1;
			}
		} else if (!strncmp(a, "-o", 2)) {
			const char *arg = a[2] ? a + 2 : argv[++i];

			if (!arg) {
				fprintf(stderr, "fuse4fs: -o needs options\n");
				return -1;
			}
			if (parse_o(&ps, arg))
				return -1;
		} else {
			fprintf(stderr, "fuse4fs: unknown option '%s' (see "
				"--help)\n", a);
			return -1;
		}
	}
	if (npos < 2) {
		fprintf(stderr, "fuse4fs: missing %s\n", npos ?
			"MOUNTPOINT" : "DEVICE|IMAGE and MOUNTPOINT");
		f4_usage(o->progname, 0);
		return -1;
	}
	ret = check_conflicts(&ps);
	if (ret)
		return ret;
	/* fuse4fs changes directory when it daemonizes: keep full paths */
	o->device = realpath(pos[0], NULL);
	if (!o->device)
		o->device = dup_or_die(pos[0]);
	o->mountpoint = realpath(pos[1], NULL);
	if (!o->mountpoint)
		o->mountpoint = dup_or_die(pos[1]);
	return 0;
}

void f4_free_options(struct f4_opts *o)
{
	free(o->device);
	free(o->mountpoint);
	free(o->progname);
	free(o->lockfile);
	free(o->fsname);
	free(o->subtype);
	free(o->fuse_mount_opts);
	memset(o, 0, sizeof(*o));
}

/*
 * f4bench: tiny syscall drivers for bench/run.
 *
 * The benchmark wants to time the file system, not the harness, so the
 * per-name loops (stat a list of names, make hard links, create / look up
 * / remove entries of one big directory, walk a tree) live here in C.
 * Every driver runs the very same binary, so whatever overhead is left is
 * equal across kernel ext4, fuse2fs and fuse4fs.
 *
 * Each command prints one line of counts on success and exits non-zero
 * on the first unexpected error, so a broken driver cannot produce a
 * fast-looking number.
 *
 *   f4bench lstat  LIST        lstat() every name in LIST (one per line)
 *   f4bench link   LIST        link() "src<TAB>dst" pairs from LIST
 *   f4bench create DIR N       create N empty files DIR/e00000000...
 *   f4bench stat   DIR N       lstat() those N names
 *   f4bench unlink DIR N       unlink() those N names
 *   f4bench walk   DIR         lstat() every entry below DIR (nftw)
 *   f4bench xattr  FILE N      N lgetxattr(FILE, "security.selinux"), each
 *                              ENODATA: on FUSE one round trip apiece
 *   f4bench pingpong N         one-byte round trips over two pipes to a
 *                              child that polls its end without sleeping,
 *                              median of 5 batches of N: the machine's
 *                              floor for a cross-CPU wake-up
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what, const char *name)
{
	fprintf(stderr, "f4bench: %s %s: %s\n", what, name, strerror(errno));
	exit(1);
}

static FILE *open_list(const char *path)
{
	FILE *f = fopen(path, "r");

	if (!f)
		die("open", path);
	return f;
}

/* Strip the trailing newline; returns the length left. */
static size_t chomp(char *line, ssize_t len)
{
	if (len > 0 && line[len - 1] == '\n')
		line[--len] = '\0';
	return len;
}

static int cmd_lstat(const char *list)
{
	FILE *f = open_list(list);
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	unsigned long n = 0, nlink_sum = 0;
	struct stat st;

	while ((len = getline(&line, &cap, f)) >= 0) {
		if (!chomp(line, len))
			continue;
		if (lstat(line, &st))
			die("lstat", line);
		n++;
		nlink_sum += st.st_nlink;
	}
	printf("names %lu nlink_sum %lu\n", n, nlink_sum);
	free(line);
	fclose(f);
	return 0;
}

static int cmd_link(const char *list)
{
	FILE *f = open_list(list);
	char *line = NULL, *tab;
	size_t cap = 0;
	ssize_t len;
	unsigned long n = 0;

	while ((len = getline(&line, &cap, f)) >= 0) {
		if (!chomp(line, len))
			continue;
		tab = strchr(line, '\t');
		if (!tab) {
			fprintf(stderr, "f4bench: bad link line: %s\n", line);
			return 1;
		}
		*tab = '\0';
		if (link(line, tab + 1))
			die("link", tab + 1);
		n++;
	}
	printf("links %lu\n", n);
	free(line);
	fclose(f);
	return 0;
}

static void entry_name(char *buf, size_t len, const char *dir,
		       unsigned long i)
{
	snprintf(buf, len, "%s/e%08lu", dir, i);
}

static int cmd_bigdir(const char *op, const char *dir, unsigned long n)
{
	char name[4096];
	struct stat st;
	unsigned long i;
	int fd;

	for (i = 0; i < n; i++) {
		entry_name(name, sizeof(name), dir, i);
		if (!strcmp(op, "create")) {
			fd = open(name, O_CREAT | O_EXCL | O_WRONLY, 0644);
			if (fd < 0)
				die("create", name);
			close(fd);
		} else if (!strcmp(op, "stat")) {
			if (lstat(name, &st))
				die("lstat", name);
			if (!S_ISREG(st.st_mode)) {
				fprintf(stderr, "f4bench: %s not a file\n",
					name);
				return 1;
			}
		} else {
			if (unlink(name))
				die("unlink", name);
		}
	}
	printf("%s %lu\n", op, n);
	return 0;
}

static unsigned long walk_files, walk_dirs, walk_other;

static int walk_one(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	if (flag == FTW_NS || flag == FTW_DNR) {
		fprintf(stderr, "f4bench: cannot stat/read %s\n", path);
		return 1;
	}
	if (S_ISREG(st->st_mode))
		walk_files++;
	else if (S_ISDIR(st->st_mode))
		walk_dirs++;
	else
		walk_other++;
	return 0;
}

static int cmd_walk(const char *dir)
{
	if (nftw(dir, walk_one, 64, FTW_PHYS))
		return 1;
	printf("files %lu dirs %lu other %lu\n", walk_files, walk_dirs,
	       walk_other);
	return 0;
}

static int cmd_xattr(const char *file, unsigned long n)
{
	char buf[256];
	unsigned long i;

	for (i = 0; i < n; i++)
		if (lgetxattr(file, "security.selinux", buf, sizeof(buf)) >= 0 ||
		    errno != ENODATA)
			die("lgetxattr (expected ENODATA)", file);
	printf("calls %lu\n", n);
	return 0;
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median over 5 batches of n round trips: one batch is easily disturbed. */
static int cmd_pingpong(unsigned long n)
{
	int to[2], back[2], status, b;
	double t[5];
	unsigned long i;
	pid_t pid;
	char c = 'x';

	if (pipe(to) || pipe(back))
		die("pipe", "");
	pid = fork();
	if (pid < 0)
		die("fork", "");
	if (!pid) {
		fcntl(to[0], F_SETFL, O_NONBLOCK);
		for (i = 0; i < 5 * n; i++) {
			while (read(to[0], &c, 1) != 1)
				;
			if (write(back[1], &c, 1) != 1)
				_exit(1);
		}
		_exit(0);
	}
	for (b = 0; b < 5; b++) {
		double t0 = now_us();

		for (i = 0; i < n; i++)
			if (write(to[1], &c, 1) != 1 ||
			    read(back[0], &c, 1) != 1)
				die("pipe round trip", "");
		t[b] = (now_us() - t0) / n;
	}
	if (waitpid(pid, &status, 0) != pid || status)
		die("child", "");
	qsort(t, 5, sizeof(t[0]), cmp_double);
	printf("us_per_round_trip %.2f\n", t[2]);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "xattr"))
		return cmd_xattr(argv[2], strtoul(argv[3], NULL, 10));
	if (argc == 3 && !strcmp(argv[1], "pingpong"))
		return cmd_pingpong(strtoul(argv[2], NULL, 10));
	if (argc == 3 && !strcmp(argv[1], "lstat"))
		return cmd_lstat(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "link"))
		return cmd_link(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "walk"))
		return cmd_walk(argv[2]);
	if (argc == 4 && (!strcmp(argv[1], "create") ||
			  !strcmp(argv[1], "stat") ||
			  !strcmp(argv[1], "unlink")))
		return cmd_bigdir(argv[1], argv[2],
				  strtoul(argv[3], NULL, 10));
	fprintf(stderr, "usage: f4bench lstat|link LIST | walk DIR | "
		"create|stat|unlink DIR N | xattr FILE N | pingpong N\n");
	return 2;
}

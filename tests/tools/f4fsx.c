/*
 * f4fsx - randomized file data exerciser for the fuse4fs test suite.
 *
 * A pseudo-random sequence of operations (reads, writes, O_APPEND writes,
 * truncates, the fallocate modes, mapped reads and writes, syncs, reopens
 * and SEEK_DATA/SEEK_HOLE queries) runs against one or more files in a
 * directory.  Every file's size and contents are also kept in memory; each
 * result the file system hands back is compared against that model, and
 * the first divergence stops the run with a report and exit status 1.
 *
 * The sequence depends only on the seed and the model, never on what the
 * file system returns, so it can be generated without I/O (--model-only),
 * logged (--log-ops) and replayed on another file system (--replay).  The
 * final model can be saved (--save-model) and later compared against the
 * files on disk (--check-model), e.g. across an unmount/remount.
 *
 * Exit status: 0 success, 1 the file system diverged from the model (or a
 * call on it failed unexpectedly), 2 usage or setup error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/falloc.h>

#define LOG_VERSION	"f4fsx-oplog v1"
#define MODEL_MAGIC	"f4fsx-model v1"
#define HISTORY_SHOWN	30

enum {
	OP_READ, OP_WRITE, OP_APPEND, OP_MAPREAD, OP_MAPWRITE, OP_TRUNCATE,
	OP_FALLOC, OP_FKEEP, OP_PUNCH, OP_ZERO, OP_ZEROKEEP,
	OP_FSYNC, OP_FDATASYNC, OP_REOPEN, OP_SEEK,
	OP_DREAD, OP_DWRITE, OP_COLLAPSE, OP_INSERT, OP_REMOUNT,
	OP_PBURST, OP_FRAG,		/* generators: expand into other ops */
	OP_NR
};

#ifndef FALLOC_FL_COLLAPSE_RANGE
#define FALLOC_FL_COLLAPSE_RANGE	0x08
#endif
#ifndef FALLOC_FL_INSERT_RANGE
#define FALLOC_FL_INSERT_RANGE		0x20
#endif

#define DIO_ALIGN	512		/* O_DIRECT offsets, lengths, buffers */
#define MAX_PENDING	8192		/* ops a generator may queue */

/* Which arguments follow "NAME FILE" in the text form of an op. */
enum { A_NONE, A_SIZE, A_OFFLEN, A_OFFLENDATA, A_LENDATA, A_OFFWALK };

struct opinfo {
	const char	*name;
	int		weight;		/* relative frequency (-w) */
	int		args;
	int		fmode;		/* fallocate mode; -1: not fallocate */
};

static struct opinfo optab[OP_NR] = {
	[OP_READ]	= { "read",	 14, A_OFFLEN,	   -1 },
	[OP_WRITE]	= { "write",	 16, A_OFFLENDATA, -1 },
	[OP_APPEND]	= { "append",	  4, A_LENDATA,	   -1 },
	[OP_MAPREAD]	= { "mapread",	  5, A_OFFLEN,	   -1 },
	[OP_MAPWRITE]	= { "mapwrite",	  5, A_OFFLENDATA, -1 },
	[OP_TRUNCATE]	= { "truncate",	  5, A_SIZE,	   -1 },
	[OP_FALLOC]	= { "falloc",	  4, A_OFFLEN,	   0 },
	[OP_FKEEP]	= { "fkeep",	  4, A_OFFLEN,
			    FALLOC_FL_KEEP_SIZE },
	[OP_PUNCH]	= { "punch",	  6, A_OFFLEN,
			    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE },
	[OP_ZERO]	= { "zero",	  4, A_OFFLEN,
			    FALLOC_FL_ZERO_RANGE },
	[OP_ZEROKEEP]	= { "zerokeep",	  4, A_OFFLEN,
			    FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE },
	[OP_FSYNC]	= { "fsync",	  2, A_NONE,	   -1 },
	[OP_FDATASYNC]	= { "fdatasync",  2, A_NONE,	   -1 },
	[OP_REOPEN]	= { "reopen",	  3, A_NONE,	   -1 },
	[OP_SEEK]	= { "seek",	  6, A_OFFWALK,	   -1 },
	[OP_DREAD]	= { "dread",	  4, A_OFFLEN,	   -1 },
	[OP_DWRITE]	= { "dwrite",	  4, A_OFFLENDATA, -1 },
	[OP_COLLAPSE]	= { "collapse",	  2, A_OFFLEN,
			    FALLOC_FL_COLLAPSE_RANGE },
	[OP_INSERT]	= { "insert",	  2, A_OFFLEN,
			    FALLOC_FL_INSERT_RANGE },
	/* weight set by --remount-cmd; never without a command to run */
	[OP_REMOUNT]	= { "remount",	  0, A_NONE,	   -1 },
	[OP_PBURST]	= { "pburst",	  1, A_NONE,	   -1 },
	[OP_FRAG]	= { "frag",	  1, A_NONE,	   -1 },
};

/* Generator pseudo-ops never reach a log, a history or a file system. */
static int is_generator(int t)
{
	return t == OP_PBURST || t == OP_FRAG;
}

/*
 * One operation.  off is the offset (the new size for truncate, the old
 * size for append, filled in when it runs); dseed selects the data written,
 * 0 meaning zeros.
 */
struct op {
	uint8_t		type;
	uint8_t		walk;		/* seek: walk the whole map too */
	uint16_t	file;
	uint32_t	dseed;
	uint64_t	off;
	uint64_t	len;
};

struct mfile {
	unsigned char	*data;		/* maxlen bytes, 0 beyond size */
	uint32_t	*who;		/* op that last set each byte */
	uint64_t	size;
	int		fd;		/* O_RDWR */
	int		afd;		/* O_APPEND, opened on demand */
	int		dfd;		/* O_DIRECT, opened on demand */
	char		*path;
};

static struct {
	uint64_t	nops;
	int		nops_set;
	uint64_t	seed;
	unsigned	nfiles;
	uint64_t	maxlen;
	uint64_t	maxop;
	uint64_t	bs;
	const char	*dir;
	int		disabled[OP_NR];
	int		verbose;
	int		model_only;
	int		probe;
	const char	*logfile;
	const char	*oplog;
	const char	*replay;
	const char	*save_model;
	const char	*check_model;
	uint64_t	inject_op;
	const char	*inject_kind;
	int		unsupported[OP_NR];	/* -U: must fail EOPNOTSUPP */
	const char	*unsupported_arg;
	const char	*remount_cmd;
	const char	*fresh_cmd;
	int		reduce;
	double		reduce_time;
	const char	*reduce_out;
	uint64_t	remount_every;	/* -M: mean ops between remounts */
	int		reduce_child;	/* replay skips ops that do not fit */
	const char	*self;		/* argv[0], for the reduction replays */
} cfg = {
	.nops = 10000, .nfiles = 1, .maxlen = 256 * 1024, .maxop = 64 * 1024,
	.bs = 4096, .dir = NULL, .reduce_time = 300,
};

static struct mfile *files;
static struct op *hist;			/* hist[n - 1] is op n */
static uint64_t nhist, hist_cap;
static uint64_t cur_op;			/* 0: before the first op */
static const char *phase;		/* set while checking whole files */
static uint64_t counts[OP_NR];
static FILE *hlog, *oplogf;
static uint64_t rng_state;
static long pagesize;
static int saved_argc;
static char **saved_argv;
static unsigned char *iobuf;		/* scratch, maxlen bytes */

static sigjmp_buf bus_jmp;
static volatile sig_atomic_t bus_armed;

/* ---- helpers ---------------------------------------------------------- */

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "f4fsx: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);

	if (!p)
		die("out of memory");
	return p;
}

static const char *errname(int err)
{
	const char *s = strerrorname_np(err);

	return s ? s : "?";
}

/* splitmix64: tiny, fast, and good enough to pick test operations. */
static uint64_t rnd64(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform-enough value in [0, n); n == 0 gives 0. */
static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd64() % n : 0;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t max64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/*
 * The data an op with dseed s writes at file offset x.  It depends on the
 * absolute offset, so a write that lands in the wrong place is caught.
 */
static void fill_pattern(unsigned char *buf, uint32_t s, uint64_t off,
			 uint64_t len)
{
	uint64_t i, word = UINT64_MAX, h = 0;

	if (!s) {
		memset(buf, 0, len);
		return;
	}
	for (i = 0; i < len; i++) {
		uint64_t x = off + i;

		if ((x >> 3) != word) {
			word = x >> 3;
			h = (word + 1) * 0x9e3779b97f4a7c15ULL ^
			    ((uint64_t)s << 32 | s);
			h ^= h >> 29;
			h *= 0xbf58476d1ce4e5b9ULL;
			h ^= h >> 32;
		}
		buf[i] = h >> ((x & 7) * 8);
	}
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	}
	if (*end)
		return -1;
	*out = v;
	return 0;
}

/* ---- op text form (log, replay, reports) ------------------------------- */

static void format_op(const struct op *op, char *buf, size_t sz)
{
	const struct opinfo *oi = &optab[op->type];
	unsigned long long off = op->off, len = op->len;

	switch (oi->args) {
	case A_NONE:
		snprintf(buf, sz, "%s %u", oi->name, op->file);
		break;
	case A_SIZE:
		snprintf(buf, sz, "%s %u %llu", oi->name, op->file, off);
		break;
	case A_OFFLEN:
		snprintf(buf, sz, "%s %u %llu %llu", oi->name, op->file, off,
			 len);
		break;
	case A_OFFLENDATA:
		snprintf(buf, sz, "%s %u %llu %llu 0x%08x", oi->name, op->file,
			 off, len, op->dseed);
		break;
	case A_LENDATA:
		snprintf(buf, sz, "%s %u %llu 0x%08x", oi->name, op->file, len,
			 op->dseed);
		break;
	case A_OFFWALK:
		snprintf(buf, sz, "%s %u %llu %u", oi->name, op->file, off,
			 op->walk);
		break;
	}
}

static int op_by_name(const char *name)
{
	int i;

	for (i = 0; i < OP_NR; i++)
		if (!strcmp(optab[i].name, name))
			return i;
	return -1;
}

/* Parse one line of an op log; 0 on success, 1 to skip, -1 on error. */
static int parse_op(const char *line, struct op *op)
{
	char name[32];
	unsigned file, dseed = 0;
	unsigned long long a = 0, b = 0;
	int n, t, want;

	while (*line == ' ' || *line == '\t')
		line++;
	if (*line == '#' || *line == '\n' || !*line)
		return 1;
	n = sscanf(line, "%31s %u", name, &file);
	if (n < 2 || (t = op_by_name(name)) < 0)
		return -1;
	memset(op, 0, sizeof(*op));
	op->type = t;
	op->file = file;
	switch (optab[t].args) {
	case A_NONE:
		return 0;
	case A_SIZE:
		want = 3;
		n = sscanf(line, "%*s %*u %llu", &a) + 2;
		break;
	case A_OFFLEN:
		want = 4;
		n = sscanf(line, "%*s %*u %llu %llu", &a, &b) + 2;
		break;
	case A_OFFLENDATA:
		want = 5;
		n = sscanf(line, "%*s %*u %llu %llu %x", &a, &b, &dseed) + 2;
		break;
	case A_LENDATA:
		want = 4;
		n = sscanf(line, "%*s %*u %llu %x", &b, &dseed) + 2;
		break;
	default:
		want = 4;
		n = sscanf(line, "%*s %*u %llu %llu", &a, &b) + 2;
		op->walk = !!b;
		b = 0;
		break;
	}
	if (n != want)
		return -1;
	op->off = a;
	op->len = b;
	op->dseed = dseed;
	return 0;
}

/* ---- failure reports --------------------------------------------------- */

static void out2(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (hlog) {
		va_start(ap, fmt);
		vfprintf(hlog, fmt, ap);
		va_end(ap);
	}
}

static void describe_op_number(uint64_t n, char *buf, size_t sz)
{
	if (n == 0 || n > nhist) {
		snprintf(buf, sz, "(none in this run)");
		return;
	}
	format_op(&hist[n - 1], buf, sz);
}

static void print_history(void)
{
	uint64_t first = cur_op > HISTORY_SHOWN ?
			 cur_op - HISTORY_SHOWN + 1 : 1;
	uint64_t n;
	char buf[160];

	if (!nhist)
		return;
	out2("f4fsx: last %d ops (number, op, file, offset/size, length, "
	     "data seed):\n", HISTORY_SHOWN);
	for (n = first; n <= nhist; n++) {
		format_op(&hist[n - 1], buf, sizeof(buf));
		out2("  %8" PRIu64 " %s%s\n", n, buf,
		     n == cur_op && !phase ? "   <-- failing op" : "");
	}
}

static void print_repro(void)
{
	int i;

	out2("f4fsx: command:");
	for (i = 0; i < saved_argc; i++)
		out2(" %s", saved_argv[i]);
	out2("\n");
}

static void fail_header(void)
{
	char buf[160];

	fflush(stdout);
	if (oplogf)
		fflush(oplogf);
	if (phase) {
		out2("f4fsx: FAILURE in the %s after op %" PRIu64 " (seed %"
		     PRIu64 ")\n", phase, cur_op, cfg.seed);
	} else {
		format_op(&hist[cur_op - 1], buf, sizeof(buf));
		out2("f4fsx: FAILURE at op %" PRIu64 ": %s (seed %" PRIu64
		     ")\n", cur_op, buf, cfg.seed);
	}
}

static void reduce(void);

static void fail_footer(void)
{
	print_history();
	print_repro();
	if (cfg.reduce && !cfg.reduce_child)
		reduce();
	if (hlog)
		fclose(hlog);
	if (oplogf)
		fclose(oplogf);
	exit(1);
}

static void fail(const char *fmt, ...)
{
	va_list ap;
	char msg[512];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fail_header();
	out2("f4fsx: %s\n", msg);
	fail_footer();
}

static void fail_errno(const char *what, int err)
{
	fail("%s failed: %s (%s)", what, strerror(err), errname(err));
}

static void hexline(const char *label, const unsigned char *p, uint64_t n)
{
	uint64_t i;

	out2("f4fsx:   %-9s", label);
	for (i = 0; i < n; i++)
		out2(" %02x", p[i]);
	out2("\n");
}

/*
 * Report that the file's bytes at [off, off + len), read by `how`, differ
 * from the model at index d (relative to off).
 */
static void fail_data(unsigned fi, const char *how, uint64_t off,
		      const unsigned char *got, uint64_t len, uint64_t d)
{
	struct mfile *m = &files[fi];
	const unsigned char *exp = m->data + off;
	uint64_t i, ndiff = 0, run_end = d, show, from;
	uint32_t w = m->who[off + d];
	char buf[160];

	for (i = d; i < len; i++)
		ndiff += got[i] != exp[i];
	while (run_end < len && got[run_end] != exp[run_end])
		run_end++;
	fail_header();
	out2("f4fsx: data mismatch in %s (%s of [%" PRIu64 ", %" PRIu64
	     "), model size %" PRIu64 ")\n", m->path, how, off, off + len,
	     m->size);
	out2("f4fsx:   first difference at file offset %" PRIu64
	     " (0x%" PRIx64 ", block %" PRIu64 " + %" PRIu64
	     "): expected 0x%02x, actual 0x%02x\n", off + d, off + d,
	     (off + d) / cfg.bs, (off + d) % cfg.bs, exp[d], got[d]);
	out2("f4fsx:   %" PRIu64 " byte(s) differ in the range; first "
	     "differing run is [%" PRIu64 ", %" PRIu64 ")\n", ndiff, off + d,
	     off + run_end);
	if (w) {
		describe_op_number(w, buf, sizeof(buf));
		out2("f4fsx:   expected byte was last set by op %u: %s\n", w,
		     buf);
	} else {
		out2("f4fsx:   expected byte was not set by any op of this "
		     "run (initial model contents)\n");
	}
	from = d > 8 ? d - 8 : 0;
	show = min64(len - from, 24);
	out2("f4fsx:   bytes from offset %" PRIu64 ":\n", off + from);
	hexline("expected", exp + from, show);
	hexline("actual", got + from, show);
	fail_footer();
}

/* Compare got[0..len) with the model at off; fail on the first mismatch. */
static void check_data(unsigned fi, const char *how, uint64_t off,
		       const unsigned char *got, uint64_t len)
{
	const unsigned char *exp = files[fi].data + off;
	uint64_t i;

	if (!memcmp(got, exp, len))
		return;
	for (i = 0; i < len && got[i] == exp[i]; i++)
		;
	fail_data(fi, how, off, got, len, i);
}

/* ---- the model --------------------------------------------------------- */

/* First non-zero model byte in [a, b), or UINT64_MAX. */
static uint64_t model_nonzero(const struct mfile *m, uint64_t a, uint64_t b)
{
	uint64_t i;

	for (i = a; i < b; i++)
		if (m->data[i])
			return i;
	return UINT64_MAX;
}

static void model_set(struct mfile *m, uint64_t off, uint64_t len,
		      uint32_t dseed)
{
	uint64_t i;

	fill_pattern(m->data + off, dseed, off, len);
	for (i = off; i < off + len; i++)
		m->who[i] = cur_op;
	if (off + len > m->size)
		m->size = off + len;
}

static void model_zero(struct mfile *m, uint64_t off, uint64_t end)
{
	uint64_t i;

	if (end <= off)
		return;
	memset(m->data + off, 0, end - off);
	for (i = off; i < end; i++)
		m->who[i] = cur_op;
}

/* Move model bytes (and who set them) from [from, from + n) to to. */
static void model_shift(struct mfile *m, uint64_t from, uint64_t to,
			uint64_t n)
{
	memmove(m->data + to, m->data + from, n);
	memmove(m->who + to, m->who + from, n * sizeof(*m->who));
}

/* Apply the effect of a (successful) op to the model. */
static void model_apply(const struct op *op)
{
	struct mfile *m = &files[op->file];
	uint64_t end = op->off + op->len;

	switch (op->type) {
	case OP_WRITE:
	case OP_APPEND:
	case OP_MAPWRITE:
	case OP_DWRITE:
		model_set(m, op->off, op->len, op->dseed);
		break;
	case OP_TRUNCATE:
		/* Keep the invariant: the model is zero beyond its size. */
		if (op->off < m->size)
			model_zero(m, op->off, m->size);
		m->size = op->off;
		break;
	case OP_FALLOC:
		if (end > m->size)
			m->size = end;
		break;
	case OP_PUNCH:
	case OP_ZEROKEEP:
		model_zero(m, op->off, min64(end, m->size));
		break;
	case OP_ZERO:
		model_zero(m, op->off, end);
		if (end > m->size)
			m->size = end;
		break;
	case OP_COLLAPSE:
		model_shift(m, end, op->off, m->size - end);
		model_zero(m, m->size - op->len, m->size);
		m->size -= op->len;
		break;
	case OP_INSERT:
		model_shift(m, op->off, end, m->size - op->off);
		model_zero(m, op->off, end);
		m->size += op->len;
		break;
	default:
		break;
	}
}

static void save_model(const char *path)
{
	FILE *f = fopen(path, "w");
	unsigned i;

	if (!f)
		die("%s: %s", path, strerror(errno));
	fprintf(f, "%s nfiles %u\n", MODEL_MAGIC, cfg.nfiles);
	for (i = 0; i < cfg.nfiles; i++) {
		fprintf(f, "file %u size %" PRIu64 "\n", i, files[i].size);
		if (fwrite(files[i].data, 1, files[i].size, f) != files[i].size)
			die("%s: write error", path);
		fputc('\n', f);
	}
	if (fclose(f))
		die("%s: %s", path, strerror(errno));
}

struct loaded_model {
	unsigned	nfiles;
	uint64_t	*size;
	unsigned char	**data;
};

static void load_model(const char *path, struct loaded_model *lm)
{
	FILE *f = fopen(path, "r");
	char line[128];
	unsigned i, idx;
	unsigned long long sz;

	if (!f)
		die("%s: %s", path, strerror(errno));
	if (!fgets(line, sizeof(line), f) ||
	    sscanf(line, MODEL_MAGIC " nfiles %u", &lm->nfiles) != 1 ||
	    !lm->nfiles || lm->nfiles > 65535)
		die("%s: not an f4fsx model file", path);
	lm->size = xcalloc(lm->nfiles, sizeof(*lm->size));
	lm->data = xcalloc(lm->nfiles, sizeof(*lm->data));
	for (i = 0; i < lm->nfiles; i++) {
		if (!fgets(line, sizeof(line), f) ||
		    sscanf(line, "file %u size %llu", &idx, &sz) != 2 ||
		    idx != i)
			die("%s: bad header for file %u", path, i);
		lm->size[i] = sz;
		lm->data[i] = xcalloc(sz, 1);
		if (fread(lm->data[i], 1, sz, f) != sz || fgetc(f) != '\n')
			die("%s: truncated model for file %u", path, i);
	}
	fclose(f);
}

/* ---- file system side --------------------------------------------------- */

static void bus_handler(int sig)
{
	(void)sig;
	if (bus_armed)
		siglongjmp(bus_jmp, 1);
	signal(SIGBUS, SIG_DFL);
	raise(SIGBUS);
}

static void open_file(unsigned fi, int create)
{
	struct mfile *m = &files[fi];
	int flags = O_RDWR | (create ? O_CREAT | O_TRUNC : 0);

	m->fd = open(m->path, flags, 0644);
	if (m->fd < 0)
		fail("open %s: %s (%s)", m->path, strerror(errno),
		     errname(errno));
	m->afd = -1;
	m->dfd = -1;
}

static void close_file(unsigned fi)
{
	struct mfile *m = &files[fi];

	if (m->afd >= 0 && close(m->afd))
		fail_errno("close (O_APPEND descriptor)", errno);
	if (m->dfd >= 0 && close(m->dfd))
		fail_errno("close (O_DIRECT descriptor)", errno);
	if (close(m->fd))
		fail_errno("close", errno);
	m->fd = m->afd = m->dfd = -1;
}

static uint64_t read_full(int fd, unsigned char *buf, uint64_t len,
			  uint64_t off)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t r = pread(fd, buf + done, len - done, off + done);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			fail_errno("pread", errno);
		}
		if (r == 0)
			break;
		done += r;
	}
	return done;
}

static void write_full(int fd, const unsigned char *buf, uint64_t len,
		       uint64_t off, int append)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t r = append ? write(fd, buf + done, len - done) :
				pwrite(fd, buf + done, len - done, off + done);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			fail_errno(append ? "write (O_APPEND)" : "pwrite",
				   errno);
		}
		if (r == 0)
			fail("%s wrote 0 bytes at offset %" PRIu64,
			     append ? "write" : "pwrite", off + done);
		done += r;
	}
}

static void check_size(unsigned fi, const char *when)
{
	struct mfile *m = &files[fi];
	struct stat st;

	if (fstat(m->fd, &st))
		fail_errno("fstat", errno);
	if ((uint64_t)st.st_size != m->size)
		fail("size mismatch %s: %s has st_size %lld, model size %"
		     PRIu64, when, m->path, (long long)st.st_size, m->size);
}

/* lseek wrapper: the offset, or -errno. */
static int64_t seek(int fd, uint64_t off, int whence)
{
	off_t r = lseek(fd, off, whence);

	return r < 0 ? -errno : r;
}

static const char *whence_name(int whence)
{
	return whence == SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE";
}

/*
 * What SEEK_DATA/SEEK_HOLE report must agree with the model in the
 * direction that always holds: a file system may call zeros data (it need
 * not track holes at all), but it may never put non-zero model bytes in a
 * hole, and SEEK_DATA may never jump over them.
 */
static void check_hole_zero(struct mfile *m, const char *what, uint64_t a,
			    uint64_t b)
{
	uint64_t nz = model_nonzero(m, a, b);

	if (nz != UINT64_MAX)
		fail("%s: %s reports [%" PRIu64 ", %" PRIu64 ") as a hole but "
		     "the model has data there: first non-zero byte at offset %"
		     PRIu64 " (expected 0x%02x, last set by op %u)", m->path,
		     what, a, b, nz, m->data[nz], m->who[nz]);
}

static void expect_enxio(struct mfile *m, uint64_t off, int whence)
{
	int64_t r = seek(m->fd, off, whence);

	if (r != -ENXIO)
		fail("%s: %s(%" PRIu64 ") at or beyond EOF (size %" PRIu64
		     ") returned %" PRId64 " (%s), expected ENXIO", m->path,
		     whence_name(whence), off, m->size, r,
		     r < 0 ? errname(-r) : "an offset");
}

/* The next data offset at or after off, size if none. */
static uint64_t next_data(struct mfile *m, uint64_t off)
{
	int64_t d = seek(m->fd, off, SEEK_DATA);
	char what[64];

	/*
	 * No data left is ENXIO; kernel ext4 sometimes answers with the size
	 * instead (an unwritten extent past EOF in the page holding EOF).
	 * Both say "hole up to EOF", which is all that is checked.
	 */
	if (d == -ENXIO)
		d = m->size;
	else if (d < 0)
		fail("%s: SEEK_DATA(%" PRIu64 ") failed: %s", m->path, off,
		     errname(-d));
	else if ((uint64_t)d < off || (uint64_t)d > m->size)
		fail("%s: SEEK_DATA(%" PRIu64 ") returned %" PRId64
		     ", outside [%" PRIu64 ", size %" PRIu64 ")", m->path, off,
		     d, off, m->size);
	snprintf(what, sizeof(what), "SEEK_DATA(%" PRIu64 ")", off);
	check_hole_zero(m, what, off, d);
	return d;
}

/* The start of the next hole at or after off (size for the EOF hole). */
static uint64_t next_hole(struct mfile *m, uint64_t off)
{
	int64_t h = seek(m->fd, off, SEEK_HOLE);

	if (h < 0)
		fail("%s: SEEK_HOLE(%" PRIu64 ") failed: %s", m->path, off,
		     errname(-h));
	if ((uint64_t)h < off || (uint64_t)h > m->size)
		fail("%s: SEEK_HOLE(%" PRIu64 ") returned %" PRId64
		     ", outside [%" PRIu64 ", size %" PRIu64 "]", m->path, off,
		     h, off, m->size);
	return h;
}

/*
 * The two directions need not agree with each other: kernel ext4 itself,
 * scanning the page cache over unwritten extents, can answer SEEK_DATA(a)
 * = b and SEEK_HOLE(b) = b.  Only the model comparison is a failure.
 */
static void check_seek_at(unsigned fi, uint64_t off)
{
	struct mfile *m = &files[fi];
	uint64_t h;

	if (off >= m->size) {
		expect_enxio(m, off, SEEK_DATA);
		expect_enxio(m, off, SEEK_HOLE);
		return;
	}
	next_data(m, off);
	h = next_hole(m, off);
	if (h == m->size)
		return;
	/* h starts a hole: it lasts until the next data, and must be zero. */
	next_data(m, h);
}

/* Walk the whole data/hole map of a file. */
static void check_seek_map(unsigned fi)
{
	struct mfile *m = &files[fi];
	uint64_t pos = 0, d, h;

	while (pos < m->size) {
		d = next_data(m, pos);
		if (d == m->size)
			break;
		h = next_hole(m, d);
		/* keep moving even if the two directions disagree */
		pos = h > d ? h : d + 1;
	}
	expect_enxio(m, m->size, SEEK_DATA);
	expect_enxio(m, m->size, SEEK_HOLE);
}

/* Size, seek map and every byte of one file against the model. */
static void check_file(unsigned fi, const char *when)
{
	struct mfile *m = &files[fi];
	uint64_t off, n, got;
	char how[64];

	check_size(fi, when);
	if (!cfg.disabled[OP_SEEK])
		check_seek_map(fi);
	for (off = 0; off < m->size; off += n) {
		n = min64(m->size - off, cfg.maxlen);
		got = read_full(m->fd, iobuf, n, off);
		if (got != n)
			fail("%s: %s: short read at %" PRIu64 ": got %" PRIu64
			     " of %" PRIu64 " bytes (model size %" PRIu64 ")",
			     m->path, when, off, got, n, m->size);
		snprintf(how, sizeof(how), "full read, %s", when);
		check_data(fi, how, off, iobuf, n);
	}
	if (read_full(m->fd, iobuf, 1, m->size) != 0)
		fail("%s: %s: read at EOF (%" PRIu64 ") returned data",
		     m->path, when, m->size);
}

static void *map_range(unsigned fi, uint64_t off, uint64_t len, int prot,
		       uint64_t *delta, uint64_t *maplen)
{
	uint64_t moff = off & ~(uint64_t)(pagesize - 1);
	void *p;

	*delta = off - moff;
	*maplen = *delta + len;
	p = mmap(NULL, *maplen, prot, MAP_SHARED, files[fi].fd, moff);
	if (p == MAP_FAILED)
		fail_errno("mmap", errno);
	return p;
}

static void do_mapread(const struct op *op)
{
	uint64_t delta, maplen;
	unsigned char *p = map_range(op->file, op->off, op->len, PROT_READ,
				     &delta, &maplen);

	if (sigsetjmp(bus_jmp, 1))
		fail("SIGBUS reading the mapping of [%" PRIu64 ", %" PRIu64
		     ") (model size %" PRIu64 ")", op->off, op->off + op->len,
		     files[op->file].size);
	bus_armed = 1;
	memcpy(iobuf, p + delta, op->len);
	bus_armed = 0;
	if (munmap(p, maplen))
		fail_errno("munmap", errno);
	check_data(op->file, "mapped read", op->off, iobuf, op->len);
}

static void do_mapwrite(const struct op *op)
{
	uint64_t delta, maplen;
	unsigned char *p = map_range(op->file, op->off, op->len,
				     PROT_READ | PROT_WRITE, &delta, &maplen);

	fill_pattern(iobuf, op->dseed, op->off, op->len);
	if (sigsetjmp(bus_jmp, 1))
		fail("SIGBUS writing the mapping of [%" PRIu64 ", %" PRIu64
		     ") (model size %" PRIu64 ")", op->off, op->off + op->len,
		     files[op->file].size);
	bus_armed = 1;
	memcpy(p + delta, iobuf, op->len);
	bus_armed = 0;
	if (msync(p, maplen, MS_SYNC))
		fail_errno("msync", errno);
	if (munmap(p, maplen))
		fail_errno("munmap", errno);
}

/*
 * Returns 1 if the op took effect, 0 if it failed as -U said it must
 * (EOPNOTSUPP, and the file must not change: the caller skips the model
 * update and every later check compares against the unchanged model).
 */
static int do_fallocate(const struct op *op)
{
	const struct opinfo *oi = &optab[op->type];
	int r = fallocate(files[op->file].fd, oi->fmode, op->off, op->len);

	if (cfg.unsupported[op->type]) {
		if (r)
			r = errno;
		if (r == EOPNOTSUPP)
			return 0;
		fail("fallocate mode 0x%x (%s) on %s %s; -U %s says it must "
		     "fail with EOPNOTSUPP and change nothing", oi->fmode,
		     oi->name, files[op->file].path,
		     r ? "failed with another error" : "succeeded", oi->name);
	}
	if (!r)
		return 1;
	if (errno == EOPNOTSUPP)
		fail("fallocate mode 0x%x (%s) returned EOPNOTSUPP; if the "
		     "file system is not expected to support it, disable the "
		     "op with -x %s (or -U %s to require EOPNOTSUPP)",
		     oi->fmode, oi->name, oi->name, oi->name);
	fail_errno("fallocate", errno);
	return 0;
}

/*
 * One O_DIRECT pread: a short read at EOF leaves the next offset
 * unaligned, which O_DIRECT refuses, so no loop as in read_full.
 */
static uint64_t read_direct(int fd, uint64_t len, uint64_t off)
{
	ssize_t r;

	do
		r = pread(fd, iobuf, len, off);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		fail_errno("O_DIRECT pread", errno);
	return r;
}

static int direct_fd(unsigned fi)
{
	struct mfile *m = &files[fi];

	if (m->dfd < 0) {
		m->dfd = open(m->path, O_RDWR | O_DIRECT);
		if (m->dfd < 0)
			fail("open %s O_DIRECT: %s (%s); disable with -x "
			     "dread,dwrite", m->path, strerror(errno),
			     errname(errno));
	}
	return m->dfd;
}

/*
 * Close every file, run the remount command (it unmounts, runs e2fsck -fn
 * and mounts again), reopen and check every file in full against the
 * model: what survives a remount is what was on disk.
 */
static void do_remount(void)
{
	static char when[64];
	unsigned i;
	int st;

	for (i = 0; i < cfg.nfiles; i++)
		close_file(i);
	fflush(stdout);
	fflush(stderr);
	st = system(cfg.remount_cmd);
	if (st)
		fail("remount command '%s' failed (status 0x%x): unmount, "
		     "e2fsck -fn or mount went wrong, see its output above",
		     cfg.remount_cmd, st);
	snprintf(when, sizeof(when), "check after the remount at op %"
		 PRIu64, cur_op);
	for (i = 0; i < cfg.nfiles; i++)
		open_file(i, 0);
	phase = when;
	for (i = 0; i < cfg.nfiles; i++)
		check_file(i, when);
	phase = NULL;
}

/* Run one op against the file system, check it, then update the model. */
static void run_op(struct op *op)
{
	struct mfile *m = &files[op->file];
	uint64_t got, want;
	int64_t pos;

	switch (op->type) {
	case OP_READ:
		got = read_full(m->fd, iobuf, op->len, op->off);
		want = op->off >= m->size ? 0 : min64(op->len,
						      m->size - op->off);
		if (got != want)
			fail("read returned %" PRIu64 " bytes, expected %"
			     PRIu64 " (model size %" PRIu64 ")", got, want,
			     m->size);
		check_data(op->file, "pread", op->off, iobuf, got);
		break;
	case OP_WRITE:
		fill_pattern(iobuf, op->dseed, op->off, op->len);
		write_full(m->fd, iobuf, op->len, op->off, 0);
		break;
	case OP_APPEND:
		if (m->afd < 0) {
			m->afd = open(m->path, O_WRONLY | O_APPEND);
			if (m->afd < 0)
				fail_errno("open O_APPEND", errno);
		}
		fill_pattern(iobuf, op->dseed, op->off, op->len);
		write_full(m->afd, iobuf, op->len, op->off, 1);
		pos = seek(m->afd, 0, SEEK_CUR);
		if (pos != (int64_t)(op->off + op->len))
			fail("after an O_APPEND write the file offset is %"
			     PRId64 ", expected %" PRIu64, pos,
			     op->off + op->len);
		break;
	case OP_MAPREAD:
		do_mapread(op);
		break;
	case OP_MAPWRITE:
		do_mapwrite(op);
		break;
	case OP_TRUNCATE:
		if (ftruncate(m->fd, op->off))
			fail_errno("ftruncate", errno);
		break;
	case OP_FALLOC:
	case OP_FKEEP:
	case OP_PUNCH:
	case OP_ZERO:
	case OP_ZEROKEEP:
	case OP_COLLAPSE:
	case OP_INSERT:
		if (!do_fallocate(op)) {
			check_size(op->file, "after a refused fallocate");
			return;
		}
		break;
	case OP_DREAD:
		got = read_direct(direct_fd(op->file), op->len, op->off);
		want = op->off >= m->size ? 0 : min64(op->len,
						      m->size - op->off);
		if (got != want)
			fail("O_DIRECT read returned %" PRIu64 " bytes, "
			     "expected %" PRIu64 " (model size %" PRIu64 ")",
			     got, want, m->size);
		check_data(op->file, "O_DIRECT pread", op->off, iobuf, got);
		break;
	case OP_DWRITE:
		fill_pattern(iobuf, op->dseed, op->off, op->len);
		write_full(direct_fd(op->file), iobuf, op->len, op->off, 0);
		break;
	case OP_REMOUNT:
		do_remount();
		break;
	case OP_FSYNC:
		if (fsync(m->fd))
			fail_errno("fsync", errno);
		break;
	case OP_FDATASYNC:
		if (fdatasync(m->fd))
			fail_errno("fdatasync", errno);
		break;
	case OP_REOPEN:
		close_file(op->file);
		open_file(op->file, 0);
		break;
	case OP_SEEK:
		check_seek_at(op->file, op->off);
		if (op->walk)
			check_seek_map(op->file);
		break;
	}
	model_apply(op);
	check_size(op->file, "after the op");
}

/* ---- op generation ----------------------------------------------------- */

/* An offset in [0, limit), biased to block boundaries, EOF and the start. */
static uint64_t pick_off(uint64_t limit, uint64_t size)
{
	uint64_t bs = cfg.bs, o;

	if (!limit)
		return 0;
	switch (rnd_below(8)) {
	case 0: case 1: case 2:
		o = rnd_below(limit);
		break;
	case 3: case 4:
		o = rnd_below(limit) / bs * bs;
		break;
	case 5:		/* around EOF */
		o = size + rnd_below(2 * bs);
		o -= min64(o, bs);
		break;
	case 6:		/* a few bytes either side of a block boundary */
		o = rnd_below(limit) / bs * bs + rnd_below(33);
		o -= min64(o, 16);
		break;
	default:
		o = rnd_below(min64(limit, 4 * bs));
		break;
	}
	return o < limit ? o : rnd_below(limit);
}

/* A length in [1, cfg.maxop], biased to blocks and small sizes. */
static uint64_t pick_len(void)
{
	uint64_t bs = cfg.bs, maxop = cfg.maxop, l;

	switch (rnd_below(8)) {
	case 0: case 1: case 2:
		l = 1 + rnd_below(maxop);
		break;
	case 3: case 4:
		l = (1 + rnd_below(max64(maxop / bs, 1))) * bs;
		break;
	case 5:
		l = 1 + rnd_below(min64(maxop, 64));
		break;
	case 6:		/* about one block */
		l = bs + rnd_below(17);
		l -= min64(l - 1, 8);
		break;
	default:
		l = 1 + rnd_below(min64(maxop, 2 * bs));
		break;
	}
	return l < 1 ? 1 : l > maxop ? maxop : l;
}

static uint64_t pick_size(uint64_t size)
{
	uint64_t bs = cfg.bs, maxlen = cfg.maxlen, s;

	switch (rnd_below(4)) {
	case 0:
		s = rnd_below(maxlen + 1);
		break;
	case 1:
		s = rnd_below(maxlen + 1) / bs * bs;
		break;
	case 2:		/* a small step up or down */
		s = size + rnd_below(4 * bs);
		s -= min64(s, 2 * bs);
		break;
	default:
		s = size + rnd_below(bs + 1);
		break;
	}
	return min64(s, maxlen);
}

static int pick_type(void)
{
	int total = 0, i, r;

	for (i = 0; i < OP_NR; i++)
		if (!cfg.disabled[i])
			total += optab[i].weight;
	if (!total)
		die("every op is disabled or has weight 0");
	r = rnd_below(total);
	for (i = 0; i < OP_NR; i++) {
		if (cfg.disabled[i])
			continue;
		if (r < optab[i].weight)
			return i;
		r -= optab[i].weight;
	}
	return OP_READ;
}

/* Pick a data seed: mostly a pattern, sometimes explicit zeros. */
static uint32_t pick_dseed(void)
{
	uint32_t s;

	if (rnd_below(16) == 0)
		return 0;
	do
		s = rnd64();
	while (!s);
	return s;
}

/* Ops queued by a generator, handed out before any new random op. */
static struct op pending[MAX_PENDING];
static unsigned npending, pending_next;

static void queue_op(int type, unsigned fi, uint64_t off, uint64_t len,
		     uint32_t dseed)
{
	struct op *op;

	if (npending == MAX_PENDING)
		return;
	op = &pending[npending++];
	memset(op, 0, sizeof(*op));
	op->type = type;
	op->file = fi;
	op->off = off;
	op->len = len;
	op->dseed = dseed;
}

/* Fisher-Yates shuffle of the block order of a generator. */
static void shuffle(uint32_t *v, uint32_t n)
{
	uint32_t i, j, t;

	for (i = n; i > 1; i--) {
		j = rnd_below(i);
		t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

/*
 * pburst: preallocate a block-aligned region (fallocate, with or without
 * KEEP_SIZE), then write each of its blocks once, in random order, then
 * read the region back: the fio randwrite pattern that lost data when
 * unwritten extents were converted block by block.
 */
static void gen_pburst(unsigned fi)
{
	uint64_t bs = cfg.bs, nb_max = cfg.maxlen / bs, nb, start, i;
	uint32_t *order;
	int ft;

	if (nb_max < 2)
		return;
	nb = 2 + rnd_below(min64(nb_max - 1, MAX_PENDING / 2 - 4));
	start = rnd_below(nb_max - nb + 1) * bs;
	ft = rnd_below(2) ? OP_FALLOC : OP_FKEEP;
	if (cfg.disabled[ft])
		ft = ft == OP_FALLOC ? OP_FKEEP : OP_FALLOC;
	if (!cfg.disabled[ft])
		queue_op(ft, fi, start, nb * bs, 0);
	order = xcalloc(nb, sizeof(*order));
	for (i = 0; i < nb; i++)
		order[i] = i;
	shuffle(order, nb);
	for (i = 0; i < nb; i++)
		queue_op(OP_WRITE, fi, start + order[i] * bs, bs,
			 pick_dseed() | 1);
	free(order);
	queue_op(OP_READ, fi, start, nb * bs, 0);
}

/*
 * frag: small writes to every other block of a region, in random order,
 * so the file gets one extent per write: enough of them split extent
 * leaves and then index blocks (about 340 extents a 4 KiB leaf, 84 a
 * 1 KiB one; the inode holds 4).
 */
static void gen_frag(unsigned fi)
{
	uint64_t bs = cfg.bs, slots = cfg.maxlen / (2 * bs), n, start, i;
	uint32_t *order;

	if (!slots)
		return;
	n = 1 + rnd_below(min64(slots, MAX_PENDING - 2));
	start = rnd_below(slots - n + 1) * 2 * bs;
	order = xcalloc(n, sizeof(*order));
	for (i = 0; i < n; i++)
		order[i] = i;
	shuffle(order, n);
	for (i = 0; i < n; i++)
		queue_op(OP_WRITE, fi, start + order[i] * 2 * bs,
			 1 + rnd_below(bs), pick_dseed() | 1);
	free(order);
}

/* A block-aligned collapse or insert that the model allows, or 0. */
static int gen_shift(struct op *op, uint64_t size)
{
	uint64_t bs = cfg.bs, lim, nb, mo = max64(cfg.maxop / bs, 1);

	if (op->type == OP_COLLAPSE) {
		/* off + len must end on a block boundary below the size */
		lim = size ? (size - 1) / bs : 0;
		if (!lim)
			return 0;
		nb = 1 + rnd_below(min64(lim, mo));
		op->off = rnd_below(lim - nb + 1) * bs;
		op->len = nb * bs;
		return 1;
	}
	/* insert: off inside the file, the result within maxlen */
	lim = (cfg.maxlen - size) / bs;
	if (!size || !lim)
		return 0;
	op->off = rnd_below((size - 1) / bs + 1) * bs;
	op->len = (1 + rnd_below(min64(lim, mo))) * bs;
	return 1;
}

/* An O_DIRECT range: DIO_ALIGN-aligned offset and length. */
static void gen_direct(struct op *op, uint64_t size)
{
	uint64_t slots = cfg.maxlen / DIO_ALIGN, len;

	op->off = pick_off(cfg.maxlen, size) / DIO_ALIGN * DIO_ALIGN;
	len = (pick_len() + DIO_ALIGN - 1) / DIO_ALIGN;
	len = min64(max64(len, 1), slots - op->off / DIO_ALIGN);
	op->len = len * DIO_ALIGN;
}

static void gen_op(struct op *op)
{
	struct mfile *m;
	uint64_t size, maxlen = cfg.maxlen;
	int t;

	memset(op, 0, sizeof(*op));
	/* -M: a remount may come anywhere, in a generator's burst too */
	if (cfg.remount_every && !cfg.disabled[OP_REMOUNT] &&
	    !rnd_below(cfg.remount_every)) {
		op->type = OP_REMOUNT;
		return;
	}
again:
	if (pending_next < npending) {
		*op = pending[pending_next++];
		return;
	}
	npending = pending_next = 0;
	t = pick_type();
	if (is_generator(t)) {
		if (t == OP_PBURST)
			gen_pburst(rnd_below(cfg.nfiles));
		else
			gen_frag(rnd_below(cfg.nfiles));
		goto again;
	}
	op->file = rnd_below(cfg.nfiles);
	m = &files[op->file];
	size = m->size;
	/* Mapped I/O can only touch bytes inside the file. */
	if ((t == OP_MAPREAD || t == OP_MAPWRITE) && !size) {
		t = t == OP_MAPREAD ? OP_READ : OP_WRITE;
		if (cfg.disabled[t])
			goto again;
	}
	if (t == OP_APPEND && size >= maxlen) {
		t = OP_TRUNCATE;
		if (cfg.disabled[t])
			goto again;
	}
	op->type = t;
	switch (t) {
	case OP_READ:
		op->off = pick_off(maxlen, size);
		op->len = pick_len();
		if (op->off + op->len > maxlen)
			op->len = maxlen - op->off;
		break;
	case OP_MAPREAD:
	case OP_MAPWRITE:
		op->off = pick_off(size, size);
		op->len = min64(pick_len(), size - op->off);
		break;
	case OP_APPEND:
		op->off = size;
		op->len = min64(pick_len(), maxlen - size);
		break;
	case OP_TRUNCATE:
		op->off = pick_size(size);
		break;
	case OP_SEEK:
		op->off = pick_off(size + 2 * cfg.bs, size);
		op->walk = rnd_below(4) == 0;
		break;
	case OP_FSYNC:
	case OP_FDATASYNC:
	case OP_REOPEN:
	case OP_REMOUNT:
		break;
	case OP_DREAD:
	case OP_DWRITE:
		if (maxlen < DIO_ALIGN)
			goto again;
		gen_direct(op, size);
		break;
	case OP_COLLAPSE:
	case OP_INSERT:
		if (!gen_shift(op, size))
			goto again;
		break;
	default:	/* write and the fallocate modes */
		op->off = pick_off(maxlen, size);
		op->len = min64(pick_len(), maxlen - op->off);
		break;
	}
	if (optab[t].args == A_OFFLENDATA || optab[t].args == A_LENDATA)
		op->dseed = pick_dseed();
}

/*
 * Whether a replayed op fits the model: 0 if it does.  An op log cut down
 * by the reducer can hold ops that no longer fit (a collapse beyond a size
 * that an op removed from the log would have made); a reduction replay
 * skips those, any other replay stops.
 */
static int op_misfit(const struct op *op, uint64_t *endp)
{
	uint64_t size = files[op->file].size, end = op->off + op->len;
	uint64_t bs = cfg.bs;

	switch (optab[op->type].args) {
	case A_SIZE:
		end = op->off;
		break;
	case A_LENDATA:
		end = size + op->len;
		break;
	case A_OFFWALK:
	case A_NONE:
		return op->type == OP_REMOUNT && !cfg.remount_cmd ? 4 : 0;
	}
	*endp = end;
	if (end > cfg.maxlen || end < op->off)
		return 1;
	if ((op->type == OP_MAPREAD || op->type == OP_MAPWRITE) &&
	    (end > size || !op->len))
		return 2;
	if (optab[op->type].fmode >= 0 && !op->len)
		return 3;
	if ((op->type == OP_DREAD || op->type == OP_DWRITE) &&
	    (op->off % DIO_ALIGN || op->len % DIO_ALIGN))
		return 5;
	if ((op->type == OP_COLLAPSE || op->type == OP_INSERT) &&
	    (op->off % bs || op->len % bs))
		return 6;
	if (op->type == OP_COLLAPSE && end >= size)
		return 7;
	if (op->type == OP_INSERT && (op->off >= size ||
				      size + op->len > cfg.maxlen))
		return 8;
	return 0;
}

/* Reject a replayed op this model cannot hold; 1: skip it. */
static int validate_op(const struct op *op, uint64_t lineno)
{
	uint64_t size, end = op->off + op->len;
	int why;

	if (op->file >= cfg.nfiles)
		die("replay line %" PRIu64 ": file %u, log has %u files",
		    lineno, op->file, cfg.nfiles);
	why = op_misfit(op, &end);
	if (!why)
		return 0;
	if (cfg.reduce_child)
		return 1;
	if (why == 4)
		die("replay line %" PRIu64 ": remount op but no --remount-cmd",
		    lineno);
	if (why >= 5)
		die("replay line %" PRIu64 ": %s range [%" PRIu64 ", %" PRIu64
		    ") is not aligned or does not fit the file (size %" PRIu64
		    ", block size -b %" PRIu64 ")", lineno,
		    optab[op->type].name, op->off, end,
		    files[op->file].size, cfg.bs);

	if (op->file >= cfg.nfiles)
		die("replay line %" PRIu64 ": file %u, log has %u files",
		    lineno, op->file, cfg.nfiles);
	size = files[op->file].size;
	if (end > cfg.maxlen || end < op->off)
		die("replay line %" PRIu64 ": range ends at %" PRIu64
		    ", beyond the model's maximum length %" PRIu64, lineno, end,
		    cfg.maxlen);
	if ((op->type == OP_MAPREAD || op->type == OP_MAPWRITE) &&
	    (end > size || !op->len))
		die("replay line %" PRIu64 ": mapped range [%" PRIu64 ", %"
		    PRIu64 ") is not inside the file (size %" PRIu64 ")",
		    lineno, op->off, end, size);
	if (optab[op->type].fmode >= 0 && !op->len)
		die("replay line %" PRIu64 ": fallocate with length 0", lineno);
	return 1;
}

/* ---- self-test hook ---------------------------------------------------- */

/*
 * --inject-bug N[:KIND]: after op N, deliberately corrupt the model so the
 * run must report a divergence.  KIND "data" flips a byte in the middle of
 * a file, "size" makes the model size one byte longer, "hole" puts 0xff in
 * the middle of the longest run of zeros (most likely a hole, so the
 * SEEK_DATA/SEEK_HOLE checks see it).  This exists to prove the checks can
 * fail.
 */
static void inject_bug(const struct op *op)
{
	const char *kind = cfg.inject_kind ? cfg.inject_kind : "data";
	struct mfile *m = NULL;
	unsigned i, fi = op->file;
	uint64_t at;

	for (i = 0; i < cfg.nfiles && !m; i++) {
		fi = (op->file + i) % cfg.nfiles;
		if (files[fi].size)
			m = &files[fi];
	}
	if (!m || !strcmp(kind, "size")) {
		uint64_t old;

		if (!m)
			m = &files[fi = op->file];
		old = m->size;
		if (m->size < cfg.maxlen)
			m->size++;
		else
			m->data[--m->size] = 0;
		fprintf(stderr, "f4fsx: inject-bug: after op %" PRIu64
			": model size of file %u changed from %" PRIu64 " to %"
			PRIu64 "\n", cur_op, fi, old, m->size);
		return;
	}
	at = m->size / 2;
	if (!strcmp(kind, "hole")) {
		uint64_t run = 0, best = 0, j;

		for (j = 0; j < m->size; j++) {
			run = m->data[j] ? 0 : run + 1;
			if (run > best) {
				best = run;
				at = j - run / 2;
			}
		}
	}
	fprintf(stderr, "f4fsx: inject-bug: after op %" PRIu64
		": file %u offset %" PRIu64 " model byte 0x%02x -> 0x%02x\n",
		cur_op, fi, at, m->data[at],
		!strcmp(kind, "hole") && !m->data[at] ? 0xff :
		m->data[at] ^ 0x5a);
	if (!strcmp(kind, "hole") && !m->data[at])
		m->data[at] = 0xff;
	else
		m->data[at] ^= 0x5a;
}

/* ---- probe --------------------------------------------------------------- */

/*
 * Does SEEK_DATA find freshly written, not yet synced data behind a hole?
 * Kernel ext4 (seen on 6.18) does not in block-mapped (ext2/ext3 format)
 * files once the data lies past the first dozen blocks: it returns ENXIO.
 * Reported so a caller testing the kernel itself can decide to disable the
 * seek checks while ops run; it is a bug, not a capability.
 */
static void probe_seek_data(unsigned char *buf)
{
	static const uint64_t blocks[] = { 5, 13, 20, 1100 };
	char path[4096];
	uint64_t at;
	unsigned i;
	off_t r;
	int fd, broken = 0;

	snprintf(path, sizeof(path), "%s/f4fsx.probe", cfg.dir);
	for (i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
		at = blocks[i] * cfg.bs;
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			die("%s: %s", path, strerror(errno));
		if (pwrite(fd, buf, 16, at) != 16)
			die("%s: cannot write probe data: %s", path,
			    strerror(errno));
		r = lseek(fd, cfg.bs, SEEK_DATA);
		if (r < 0 || (uint64_t)r > at) {
			printf("probe seek_data broken: SEEK_DATA(%" PRIu64
			       ") = %s with unsynced data at %" PRIu64 "\n",
			       cfg.bs, r < 0 ? errname(errno) : "past the data",
			       at);
			broken = 1;
		}
		close(fd);
		unlink(path);
	}
	if (!broken)
		printf("probe seek_data ok\n");
}

/*
 * --probe: report which fallocate modes the file system under DIR accepts,
 * so a caller can pass -x for the ones it is known not to support.
 */
static int probe(void)
{
	static const int ops[] = { OP_FALLOC, OP_FKEEP, OP_PUNCH, OP_ZERO,
				   OP_ZEROKEEP, OP_COLLAPSE, OP_INSERT };
	char path[4096], unsupported[256] = "";
	unsigned char *buf;
	unsigned i;
	int fd, bad = 0;

	snprintf(path, sizeof(path), "%s/f4fsx.probe", cfg.dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	buf = xcalloc(4 * cfg.bs, 1);
	fill_pattern(buf, 1, 0, 4 * cfg.bs);
	if (pwrite(fd, buf, 4 * cfg.bs, 0) != (ssize_t)(4 * cfg.bs) ||
	    fsync(fd))
		die("%s: cannot write probe data: %s", path, strerror(errno));
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		const struct opinfo *oi = &optab[ops[i]];
		int r = fallocate(fd, oi->fmode, cfg.bs, 2 * cfg.bs);
		int err = errno;

		if (!r) {
			printf("probe %s ok\n", oi->name);
		} else if (err == EOPNOTSUPP) {
			printf("probe %s EOPNOTSUPP\n", oi->name);
			if (*unsupported)
				strcat(unsupported, ",");
			strcat(unsupported, oi->name);
		} else {
			printf("probe %s error %s\n", oi->name, errname(err));
			bad = 1;
		}
	}
	printf("probe unsupported: %s\n", *unsupported ? unsupported : "none");
	close(fd);
	unlink(path);
	probe_seek_data(buf);
	free(buf);
	return bad ? 1 : 0;
}

/* ---- reduction ---------------------------------------------------------- */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void write_oplog_header(FILE *f)
{
	fprintf(f, LOG_VERSION " nfiles %u maxlen %" PRIu64 " seed %" PRIu64
		" bs %" PRIu64 "\n", cfg.nfiles, cfg.maxlen, cfg.seed, cfg.bs);
}

static void write_subset(const char *path, const uint32_t *idx, uint64_t n)
{
	FILE *f = fopen(path, "w");
	char buf[160];
	uint64_t i;

	if (!f)
		die("%s: %s", path, strerror(errno));
	write_oplog_header(f);
	for (i = 0; i < n; i++) {
		format_op(&hist[idx[i]], buf, sizeof(buf));
		fprintf(f, "%s\n", buf);
	}
	if (fclose(f))
		die("%s: %s", path, strerror(errno));
}

static uint64_t reduce_runs;

/*
 * Replay ops idx[0..n) of the history on a fresh file system (made by
 * --fresh-cmd) in a child f4fsx; 1 if that run fails (exit status 1).
 */
static int reduce_try(const char *logpath, const uint32_t *idx, uint64_t n,
		      int show)
{
	char bsarg[32];
	const char *argv[24];
	int argc = 0, st, fd;
	pid_t pid;

	write_subset(logpath, idx, n);
	fflush(stdout);
	fflush(stderr);
	reduce_runs++;
	st = system(cfg.fresh_cmd);
	if (st)
		die("reduce: fresh command '%s' failed (status 0x%x)",
		    cfg.fresh_cmd, st);
	snprintf(bsarg, sizeof(bsarg), "%" PRIu64, cfg.bs);
	argv[argc++] = cfg.self;
	argv[argc++] = "--replay";
	argv[argc++] = logpath;
	argv[argc++] = "--reduce-child";
	argv[argc++] = "-b";
	argv[argc++] = bsarg;
	if (cfg.unsupported_arg) {
		argv[argc++] = "-U";
		argv[argc++] = cfg.unsupported_arg;
	}
	if (cfg.disabled[OP_SEEK]) {
		argv[argc++] = "-x";
		argv[argc++] = "seek";
	}
	if (cfg.remount_cmd) {
		argv[argc++] = "--remount-cmd";
		argv[argc++] = cfg.remount_cmd;
	}
	argv[argc++] = cfg.dir;
	argv[argc] = NULL;
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (!pid) {
		if (!show) {
			fd = open("/dev/null", O_WRONLY);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		alarm(600);
		execv(cfg.self, (char **)argv);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0)
		die("waitpid: %s", strerror(errno));
	return WIFEXITED(st) && WEXITSTATUS(st) == 1;
}

/*
 * Most of a long history before the failure is irrelevant: find by
 * bisection the latest start from which the tail alone still fails (a
 * heuristic, the failure need not be monotonic in the start) and keep
 * that tail.  Costs log2(n) replays where plain chunk removal costs many.
 */
static uint64_t trim_prefix(const char *logpath, uint32_t *idx, uint64_t n,
			    double t0)
{
	uint64_t lo = 0, hi = n - 1, mid;	/* the tail from lo fails */

	while (lo < hi && now() - t0 < cfg.reduce_time) {
		mid = lo + (hi - lo + 1) / 2;
		if (reduce_try(logpath, idx + mid, n - mid, 0))
			lo = mid;
		else
			hi = mid - 1;
	}
	if (lo) {
		memmove(idx, idx + lo, (n - lo) * sizeof(*idx));
		if (cfg.verbose)
			out2("f4fsx: reduce: the last %" PRIu64 " ops still "
			     "fail\n", n - lo);
	}
	return n - lo;
}

/*
 * Delta debugging over the op history up to the failure: remove chunks of
 * ops while the replay on a fresh file system still fails, halving the
 * chunks when none can go, until single ops cannot be removed or the
 * time budget (--reduce-time) is spent.  The result is 1-minimal when the
 * search ends by itself.
 */
static void reduce(void)
{
	uint64_t n = nhist, chunks = 2, csize, lo, hi, c, i, m;
	uint32_t *idx, *tmp;
	double t0 = now();
	char logpath[4200];
	const char *out = cfg.reduce_out ? cfg.reduce_out :
			  "f4fsx.reduced.log";
	int found, done = 0;

	cfg.reduce = 0;
	if (!cfg.fresh_cmd || !cfg.dir || !n) {
		out2("f4fsx: no reduction: it needs --fresh-cmd and a history\n");
		return;
	}
	for (i = 0; i < cfg.nfiles; i++) {
		if (files[i].fd >= 0)
			close(files[i].fd);
		if (files[i].afd >= 0)
			close(files[i].afd);
		if (files[i].dfd >= 0)
			close(files[i].dfd);
		files[i].fd = files[i].afd = files[i].dfd = -1;
	}
	snprintf(logpath, sizeof(logpath), "%s.try", out);
	idx = xcalloc(n, sizeof(*idx));
	tmp = xcalloc(n, sizeof(*tmp));
	for (i = 0; i < n; i++)
		idx[i] = i;
	out2("f4fsx: reducing %" PRIu64 " ops (seed %" PRIu64 ") by replays "
	     "on fresh file systems, at most %.0f s...\n", n, cfg.seed,
	     cfg.reduce_time);
	if (!reduce_try(logpath, idx, n, 0)) {
		out2("f4fsx: the failure does not reproduce when the %" PRIu64
		     " ops are replayed on a fresh file system; no reduction\n",
		     n);
		goto out;
	}
	n = trim_prefix(logpath, idx, n, t0);
	done = n == 1;
	while (n >= 2) {
		if (now() - t0 > cfg.reduce_time) {
			out2("f4fsx: reduction time budget spent\n");
			break;
		}
		csize = (n + chunks - 1) / chunks;
		found = 0;
		for (c = 0; c * csize < n && !found; c++) {
			lo = c * csize;
			hi = min64(n, lo + csize);
			for (i = 0, m = 0; i < n; i++)
				if (i < lo || i >= hi)
					tmp[m++] = idx[i];
			if (reduce_try(logpath, tmp, m, 0)) {
				memcpy(idx, tmp, m * sizeof(*idx));
				n = m;
				chunks = max64(chunks - 1, 2);
				found = 1;
				if (cfg.verbose)
					out2("f4fsx: reduce: %" PRIu64
					     " ops still fail\n", n);
			}
			if (now() - t0 > cfg.reduce_time)
				break;
		}
		if (found)
			continue;
		if (chunks >= n) {
			done = 1;
			break;
		}
		chunks = min64(2 * chunks, n);
	}
	write_subset(out, idx, n);
	out2("f4fsx: REDUCED: seed %" PRIu64 ": %" PRIu64 " of %" PRIu64
	     " ops still fail on a fresh file system (%s; %" PRIu64
	     " replays, %.0f s); written to %s:\n", cfg.seed, n, nhist,
	     done ? "no single op can be removed" : "not minimal",
	     reduce_runs, now() - t0, out);
	for (i = 0; i < n; i++) {
		char buf[160];

		format_op(&hist[idx[i]], buf, sizeof(buf));
		out2("f4fsx:   %s\n", buf);
	}
	out2("f4fsx: the reduced sequence's own report follows (--replay %s):"
	     "\n", out);
	reduce_try(logpath, idx, n, 1);
out:
	unlink(logpath);
	free(idx);
	free(tmp);
}

/* ---- main ---------------------------------------------------------------- */

static void usage(int status)
{
	FILE *f = status ? stderr : stdout;

	fprintf(f,
"usage: f4fsx [options] [DIR]\n"
"Random file operations in DIR, each checked against an in-memory model.\n"
"Files are DIR/f4fsx.0 .. f4fsx.<nfiles-1>; they are created empty unless\n"
"--check-model is given.\n"
"\n"
"  -N ops         number of operations (default 10000; with --replay the\n"
"                 whole log unless given)\n"
"  -S seed        random seed (default: from the clock; always printed)\n"
"  -f nfiles      number of files (default 1)\n"
"  -l maxlen      maximum file length (default 256k; k/m/g suffixes)\n"
"  -o maxop       maximum length of one op (default 64k)\n"
"  -b bs          block size hint for aligned/boundary offsets (default 4096)\n"
"  -p dir         directory to work in (or give DIR as the argument)\n"
"  -W             no mapped writes        -R   no mapped reads\n"
"  -x op[,op..]   disable ops; names: read write append mapread mapwrite\n"
"                 truncate falloc fkeep punch zero zerokeep fsync fdatasync\n"
"                 reopen seek dread dwrite (O_DIRECT) collapse insert\n"
"                 remount, and the generators pburst (fallocate a region,\n"
"                 write its blocks once each in random order, read it back)\n"
"                 and frag (small writes to every other block, random order:\n"
"                 deep extent trees).  EOPNOTSUPP from an enabled fallocate\n"
"                 mode is a failure: disable modes the file system lacks,\n"
"                 or list them with -U.  -x seek also drops SEEK_DATA/\n"
"                 SEEK_HOLE from whole-file checks.\n"
"  -U op[,op..]   fallocate modes (falloc fkeep punch zero zerokeep collapse\n"
"                 insert) that must fail with EOPNOTSUPP and change nothing\n"
"  -w op=n[,..]   relative op weights (defaults: read 14 write 16 append 4\n"
"                 mapread 5 mapwrite 5 truncate 5 falloc 4 fkeep 4 punch 6\n"
"                 zero 4 zerokeep 4 fsync 2 fdatasync 2 reopen 3 seek 6\n"
"                 dread 4 dwrite 4 collapse 2 insert 2 remount 1 pburst 1\n"
"                 frag 1)\n"
"  -M n           with --remount-cmd: remount after 1 in n ops on average\n"
"                 (instead of by the remount weight)\n"
"  --remount-cmd CMD  enables the remount op: close every file, run CMD\n"
"                 (sh -c; it must unmount DIR, run e2fsck -fn, mount again\n"
"                 and exit 0), then check every file in full\n"
"  --fresh-cmd CMD    a command that unmounts DIR, makes a fresh file\n"
"                 system and mounts it (for --reduce)\n"
"  --reduce       on a failure, delta-debug the op history: replay subsets\n"
"                 on fresh file systems, print the shortest failing sequence\n"
"                 found and write it to --reduce-out (f4fsx.reduced.log)\n"
"  --reduce-time S    time budget of --reduce in seconds (default 300)\n"
"  -v             print every op\n"
"  -L file        write every op, and any failure report, to file\n"
"  --log-ops file write the op sequence, one op per line, for --replay\n"
"  --replay file  run the ops of a --log-ops file instead of random ones\n"
"                 (the log fixes the files, lengths and ops: -f -l -x -w do\n"
"                 not apply)\n"
"  --save-model file  on success, write the final model (size and bytes of\n"
"                 every file) to file\n"
"  --check-model file  load the model from file (it sets the number of\n"
"                 files), check the files in DIR against it (size, bytes,\n"
"                 SEEK_DATA/SEEK_HOLE), then run -N further ops from that\n"
"                 state; -N 0 only checks.  Use across unmount/remount:\n"
"                   f4fsx -S1 -N5000 --save-model m1 DIR; remount;\n"
"                   f4fsx -S2 -N5000 --check-model m1 --save-model m2 DIR;\n"
"                   remount; f4fsx -N0 --check-model m2 DIR\n"
"  -n, --model-only   generate ops and update the model only, no I/O (with\n"
"                 --log-ops/--save-model: make a log and its expected result)\n"
"  --probe        report which fallocate modes DIR's file system supports\n"
"                 (\"probe unsupported: a,b\" line), whether SEEK_DATA finds\n"
"                 unsynced data (\"probe seek_data ok|broken\"), and exit\n"
"\n"
"After the last op every file is checked in full.  On the first divergence\n"
"the op, the range, the first differing byte (expected/actual), the op that\n"
"set the expected byte and the last %d ops are printed; exit status 1.\n"
"Exit status 0 prints a one-line summary of op counts; 2 is a usage error.\n"
"Op log lines: NAME FILE [ARGS]: read/mapread/falloc/fkeep/punch/zero/\n"
"zerokeep F OFF LEN; write/mapwrite F OFF LEN DSEED; append F LEN DSEED;\n"
"truncate F SIZE; seek F OFF WALK; fsync/fdatasync/reopen F.\n",
		HISTORY_SHOWN);
	exit(status);
}

/* -w name=weight,...: change the op mix. */
static void set_weights(const char *arg)
{
	char *list = strdup(arg), *tok, *save = NULL, *eq, *end;
	long w;
	int t;

	if (!list)
		die("out of memory");
	for (tok = strtok_r(list, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		eq = strchr(tok, '=');
		if (!eq)
			die("-w: expected NAME=WEIGHT, got '%s'", tok);
		*eq++ = 0;
		t = op_by_name(tok);
		w = strtol(eq, &end, 10);
		if (t < 0 || *end || end == eq || w < 0 || w > 10000)
			die("-w: bad '%s=%s'", tok, eq);
		optab[t].weight = w;
	}
	free(list);
}

/*
 * A comma-separated list of op names, for option opt: mark each in set.
 * fallocate_only: the ops must be fallocate modes.
 */
static void mark_ops(const char *arg, char opt, int *set, int fallocate_only)
{
	char *list = strdup(arg), *tok, *save = NULL;
	int t;

	if (!list)
		die("out of memory");
	for (tok = strtok_r(list, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		t = op_by_name(tok);
		if (t < 0 || (fallocate_only && optab[t].fmode < 0))
			die("-%c: '%s' is not a%s op", opt, tok,
			    fallocate_only ? " fallocate" : "n");
		set[t] = 1;
	}
	free(list);
}

/* -U op[,op..]: fallocate modes that must fail with EOPNOTSUPP. */
static void unsupported_ops(const char *arg)
{
	mark_ops(arg, 'U', cfg.unsupported, 1);
	cfg.unsupported_arg = arg;
}

static void disable_ops(const char *arg)
{
	mark_ops(arg, 'x', cfg.disabled, 0);
}

enum {
	LO_LOG_OPS = 256, LO_REPLAY, LO_SAVE, LO_CHECK, LO_INJECT, LO_PROBE,
	LO_REMOUNT, LO_FRESH, LO_REDUCE, LO_REDUCE_TIME, LO_REDUCE_OUT,
	LO_REDUCE_CHILD,
};

static void parse_args(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "log-ops", required_argument, NULL, LO_LOG_OPS },
		{ "replay", required_argument, NULL, LO_REPLAY },
		{ "save-model", required_argument, NULL, LO_SAVE },
		{ "check-model", required_argument, NULL, LO_CHECK },
		{ "inject-bug", required_argument, NULL, LO_INJECT },
		{ "probe", no_argument, NULL, LO_PROBE },
		{ "remount-cmd", required_argument, NULL, LO_REMOUNT },
		{ "fresh-cmd", required_argument, NULL, LO_FRESH },
		{ "reduce", no_argument, NULL, LO_REDUCE },
		{ "reduce-time", required_argument, NULL, LO_REDUCE_TIME },
		{ "reduce-out", required_argument, NULL, LO_REDUCE_OUT },
		{ "reduce-child", no_argument, NULL, LO_REDUCE_CHILD },
		{ "unsupported", required_argument, NULL, 'U' },
		{ "model-only", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, seed_set = 0, remount_weight = 0;
	uint64_t v;
	char *colon, *arg;

	while ((c = getopt_long(argc, argv, "N:S:f:l:o:b:p:WRx:w:vL:nhU:M:", lopts,
				NULL)) != -1) {
		switch (c) {
		case 'N':
			if (parse_size(optarg, &cfg.nops))
				die("bad -N '%s'", optarg);
			cfg.nops_set = 1;
			break;
		case 'S':
			if (parse_size(optarg, &cfg.seed))
				die("bad -S '%s'", optarg);
			seed_set = 1;
			break;
		case 'f':
			if (parse_size(optarg, &v) || !v || v > 1000)
				die("bad -f '%s' (1..1000)", optarg);
			cfg.nfiles = v;
			break;
		case 'l':
			if (parse_size(optarg, &cfg.maxlen) || !cfg.maxlen ||
			    cfg.maxlen > (1ULL << 32))
				die("bad -l '%s'", optarg);
			break;
		case 'o':
			if (parse_size(optarg, &cfg.maxop) || !cfg.maxop)
				die("bad -o '%s'", optarg);
			break;
		case 'b':
			if (parse_size(optarg, &cfg.bs) || !cfg.bs ||
			    cfg.bs > (1 << 20))
				die("bad -b '%s'", optarg);
			break;
		case 'p':
			cfg.dir = optarg;
			break;
		case 'W':
			cfg.disabled[OP_MAPWRITE] = 1;
			break;
		case 'R':
			cfg.disabled[OP_MAPREAD] = 1;
			break;
		case 'x':
			disable_ops(optarg);
			break;
		case 'w':
			set_weights(optarg);
			if (strstr(optarg, "remount="))
				remount_weight = 1;
			break;
		case 'U':
			unsupported_ops(optarg);
			break;
		case 'M':
			if (parse_size(optarg, &cfg.remount_every) ||
			    !cfg.remount_every)
				die("bad -M '%s'", optarg);
			break;
		case LO_REMOUNT:
			cfg.remount_cmd = optarg;
			break;
		case LO_FRESH:
			cfg.fresh_cmd = optarg;
			break;
		case LO_REDUCE:
			cfg.reduce = 1;
			break;
		case LO_REDUCE_TIME:
			cfg.reduce_time = strtod(optarg, NULL);
			break;
		case LO_REDUCE_OUT:
			cfg.reduce_out = optarg;
			break;
		case LO_REDUCE_CHILD:
			cfg.reduce_child = 1;
			break;
		case 'v':
			cfg.verbose = 1;
			break;
		case 'L':
			cfg.logfile = optarg;
			break;
		case 'n':
			cfg.model_only = 1;
			break;
		case LO_LOG_OPS:
			cfg.oplog = optarg;
			break;
		case LO_REPLAY:
			cfg.replay = optarg;
			break;
		case LO_SAVE:
			cfg.save_model = optarg;
			break;
		case LO_CHECK:
			cfg.check_model = optarg;
			break;
		case LO_INJECT:
			arg = strdup(optarg);
			if (!arg)
				die("out of memory");
			colon = strchr(arg, ':');
			if (colon)
				*colon++ = 0;
			if (parse_size(arg, &cfg.inject_op) ||
			    !cfg.inject_op)
				die("bad --inject-bug '%s'", optarg);
			if (colon && strcmp(colon, "data") &&
			    strcmp(colon, "size") && strcmp(colon, "hole"))
				die("--inject-bug kind must be data, size or "
				    "hole");
			cfg.inject_kind = colon;
			break;
		case LO_PROBE:
			cfg.probe = 1;
			break;
		case 'h':
			usage(0);
			break;
		default:
			usage(2);
		}
	}
	if (optind < argc) {
		if (cfg.dir || optind + 1 < argc)
			usage(2);
		cfg.dir = argv[optind];
	}
	if (!cfg.dir && !cfg.model_only)
		die("no directory given (-p DIR or DIR)");
	if (cfg.model_only && cfg.check_model)
		die("--model-only cannot --check-model (it does no I/O)");
	if (cfg.maxop > cfg.maxlen)
		cfg.maxop = cfg.maxlen;
	if (!cfg.remount_cmd)
		cfg.disabled[OP_REMOUNT] = 1;
	else if (cfg.remount_every)
		optab[OP_REMOUNT].weight = 0;
	else if (!remount_weight)
		optab[OP_REMOUNT].weight = 1;
	if (cfg.reduce && !cfg.fresh_cmd)
		die("--reduce needs --fresh-cmd (a command that unmounts, "
		    "makes a fresh file system and mounts it on DIR)");
	if (!seed_set)
		cfg.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
}

/* Read the header of a replay log; returns the open stream. */
static FILE *open_replay(void)
{
	FILE *f = fopen(cfg.replay, "r");
	char line[256];
	unsigned nf;
	unsigned long long ml, seed, bs;
	int n;

	if (!f)
		die("%s: %s", cfg.replay, strerror(errno));
	if (!fgets(line, sizeof(line), f) ||
	    (n = sscanf(line, LOG_VERSION " nfiles %u maxlen %llu seed %llu "
			"bs %llu", &nf, &ml, &seed, &bs)) < 3 || !nf ||
	    nf > 1000 || !ml)
		die("%s: not an f4fsx op log", cfg.replay);
	if (n == 4 && bs)
		cfg.bs = bs;
	cfg.nfiles = nf;
	cfg.maxlen = ml;
	cfg.seed = seed;
	return f;
}

static void setup_files(void)
{
	struct loaded_model lm = { 0 };
	unsigned i;
	uint64_t longest = 0;

	if (cfg.check_model) {
		load_model(cfg.check_model, &lm);
		if (cfg.replay && lm.nfiles != cfg.nfiles)
			die("model has %u files, replay log %u", lm.nfiles,
			    cfg.nfiles);
		cfg.nfiles = lm.nfiles;
		for (i = 0; i < lm.nfiles; i++)
			longest = max64(longest, lm.size[i]);
		if (longest > cfg.maxlen) {
			if (cfg.replay)
				die("model file longer than the log's maxlen");
			cfg.maxlen = longest;
		}
	}
	if (cfg.maxop > cfg.maxlen)
		cfg.maxop = cfg.maxlen;
	files = xcalloc(cfg.nfiles, sizeof(*files));
	if (posix_memalign((void **)&iobuf, 4096, cfg.maxlen + 4096))
		die("out of memory");
	for (i = 0; i < cfg.nfiles; i++) {
		struct mfile *m = &files[i];

		m->data = xcalloc(cfg.maxlen, 1);
		m->who = xcalloc(cfg.maxlen, sizeof(*m->who));
		m->fd = m->afd = -1;
		if (cfg.dir) {
			m->path = xcalloc(strlen(cfg.dir) + 32, 1);
			sprintf(m->path, "%s/f4fsx.%u", cfg.dir, i);
		} else {
			m->path = xcalloc(32, 1);
			sprintf(m->path, "f4fsx.%u", i);
		}
		if (lm.data) {
			m->size = lm.size[i];
			memcpy(m->data, lm.data[i], m->size);
			free(lm.data[i]);
		}
		if (!cfg.model_only)
			open_file(i, !cfg.check_model);
	}
	free(lm.data);
	free(lm.size);
	if (cfg.check_model) {
		phase = "initial check against the loaded model";
		for (i = 0; i < cfg.nfiles; i++)
			check_file(i, phase);
		phase = NULL;
	}
}

static void record(const struct op *op)
{
	char buf[160];

	if (nhist == hist_cap) {
		hist_cap = hist_cap ? 2 * hist_cap : 4096;
		hist = realloc(hist, hist_cap * sizeof(*hist));
		if (!hist)
			die("out of memory");
	}
	hist[nhist++] = *op;
	if (!cfg.verbose && !hlog && !oplogf)
		return;
	format_op(op, buf, sizeof(buf));
	if (oplogf)
		fprintf(oplogf, "%s\n", buf);
	if (hlog)
		fprintf(hlog, "%" PRIu64 " %s\n", cur_op, buf);
	if (cfg.verbose)
		printf("%" PRIu64 " %s\n", cur_op, buf);
}

int main(int argc, char **argv)
{
	FILE *rf = NULL;
	struct op op;
	uint64_t lineno = 1;
	char line[256];
	int i, r;

	static char self[4096];
	ssize_t sl;

	saved_argc = argc;
	saved_argv = argv;
	sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	cfg.self = sl > 0 ? (self[sl] = 0, self) : argv[0];
	setvbuf(stdout, NULL, _IOLBF, 0);
	pagesize = sysconf(_SC_PAGESIZE);
	parse_args(argc, argv);
	if (cfg.probe)
		return probe();
	if (cfg.replay)
		rf = open_replay();
	rng_state = cfg.seed;
	signal(SIGBUS, bus_handler);
	if (cfg.logfile && !(hlog = fopen(cfg.logfile, "w")))
		die("%s: %s", cfg.logfile, strerror(errno));
	setup_files();
	if (cfg.oplog) {
		oplogf = fopen(cfg.oplog, "w");
		if (!oplogf)
			die("%s: %s", cfg.oplog, strerror(errno));
		write_oplog_header(oplogf);
	}
	if (hlog)
		fprintf(hlog, "# seed %" PRIu64 " nfiles %u maxlen %" PRIu64
			" maxop %" PRIu64 " bs %" PRIu64 "\n", cfg.seed,
			cfg.nfiles, cfg.maxlen, cfg.maxop, cfg.bs);
	for (i = 0; i < OP_NR && !rf; i++)
		if (!cfg.disabled[i])
			break;
	if (i == OP_NR && cfg.nops)
		die("every op is disabled");

	while (!cfg.nops_set || cur_op < cfg.nops) {
		if (rf) {
			if (!fgets(line, sizeof(line), rf))
				break;
			lineno++;
			r = parse_op(line, &op);
			if (r > 0)
				continue;
			if (r < 0)
				die("%s:%" PRIu64 ": cannot parse '%s'",
				    cfg.replay, lineno, strtok(line, "\n"));
			if (validate_op(&op, lineno))
				continue;
		} else {
			if (cur_op >= cfg.nops)
				break;
			gen_op(&op);
		}
		if (op.type == OP_APPEND)
			op.off = files[op.file].size;
		cur_op++;
		record(&op);
		counts[op.type]++;
		if (cfg.model_only)
			model_apply(&op);
		else
			run_op(&op);
		if (cur_op == cfg.inject_op)
			inject_bug(&op);
	}
	if (!cfg.model_only) {
		phase = "final check";
		for (i = 0; i < (int)cfg.nfiles; i++)
			check_file(i, phase);
		for (i = 0; i < (int)cfg.nfiles; i++)
			close_file(i);
	}
	if (cfg.save_model)
		save_model(cfg.save_model);
	if (oplogf && fclose(oplogf))
		die("%s: %s", cfg.oplog, strerror(errno));
	oplogf = NULL;

	printf("f4fsx: OK %" PRIu64 " ops%s, seed %" PRIu64 ", %u file(s):",
	       cur_op, cfg.model_only ? " (model only)" : "", cfg.seed,
	       cfg.nfiles);
	for (i = 0; i < OP_NR; i++)
		if (!is_generator(i))
			printf(" %s=%" PRIu64, optab[i].name, counts[i]);
	printf("\n");
	if (hlog)
		fclose(hlog);
	return 0;
}

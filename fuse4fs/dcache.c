/*
 * dcache.c - an in-memory name index per directory.
 *
 * Every create asks first whether the name exists, and every lookup the
 * kernel can't answer from its own dcache comes here; reading and
 * checksumming directory blocks for each would dominate metadata work.
 * So the first lookup in a directory reads it once into a hash table
 * hung on the directory's in-core record, and every change fuse4fs makes
 * to the directory (dir.c: add, remove, replace) keeps the table exact.
 * A table is authoritative: a name it doesn't have doesn't exist.
 *
 * Memory is bounded: tables are dropped, least recently used first, when
 * they would exceed the budget, and go with their record when the inode
 * cache reclaims it.  A directory whose table was dropped is simply read
 * again when needed.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fuse4fs.h"

struct dent {
	struct dent *next;
	ext2_ino_t ino;
	uint8_t ftype;
	uint8_t len;
	char name[];
};

struct f4_dindex {
	struct dent **buckets;
	size_t nbuckets;		/* a power of two */
	size_t nents;
	size_t bytes;			/* charged to f->dcache_bytes */
	struct list_head lru;		/* on f->dcache_lru */
	struct f4_inode *owner;
};

/* Fold the high bits in: buckets are chosen by the low ones. */
static uint32_t hash_name(const char *name, size_t len)
{
	uint32_t h = f4_name_hash(name, len);

	return h ^ (h >> 15);
}

static void charge(struct f4fs *f, struct f4_dindex *x, long delta)
{
	x->bytes += delta;
	f->dcache_bytes += delta;
}

static struct dent **slot_of(struct f4_dindex *x, const char *name,
			     size_t len)
{
	struct dent **p = &x->buckets[hash_name(name, len) &
				      (x->nbuckets - 1)];

	for (; *p; p = &(*p)->next)
		if ((*p)->len == len && !memcmp((*p)->name, name, len))
			break;
	return p;
}

static int grow(struct f4fs *f, struct f4_dindex *x)
{
	size_t n = x->nbuckets * 2, i;
	struct dent **b = calloc(n, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (i = 0; i < x->nbuckets; i++) {
		struct dent *d = x->buckets[i], *next;

		for (; d; d = next) {
			size_t h = hash_name(d->name, d->len) & (n - 1);

			next = d->next;
			d->next = b[h];
			b[h] = d;
		}
	}
	free(x->buckets);
	charge(f, x, (long)((n - x->nbuckets) * sizeof(*b)));
	x->buckets = b;
	x->nbuckets = n;
	return 0;
}

static int insert(struct f4fs *f, struct f4_dindex *x, const char *name,
		  size_t len, ext2_ino_t ino, int ftype)
{
	struct dent **p, *d;

	if (x->nents >= x->nbuckets && grow(f, x))
		return -ENOMEM;
	p = slot_of(x, name, len);
	if (*p) {
		(*p)->ino = ino;
		(*p)->ftype = ftype;
		return 0;
	}
	d = malloc(sizeof(*d) + len);
	if (!d)
		return -ENOMEM;
	d->next = NULL;
	d->ino = ino;
	d->ftype = ftype;
	d->len = len;
	memcpy(d->name, name, len);
	*p = d;
	x->nents++;
	charge(f, x, (long)(sizeof(*d) + len));
	return 0;
}

static void free_index(struct f4fs *f, struct f4_dindex *x)
{
	size_t i;

	for (i = 0; i < x->nbuckets; i++) {
		struct dent *d = x->buckets[i], *next;

		for (; d; d = next) {
			next = d->next;
			free(d);
		}
	}
	free(x->buckets);
	f->dcache_bytes -= x->bytes;
	list_del(&x->lru);
	free(x);
}

/* Forget a directory's table (its record is going, or it went wrong). */
void f4_dcache_drop(struct f4fs *f, struct f4_inode *rec)
{
	if (!rec || !rec->dindex)
		return;
	free_index(f, rec->dindex);
	rec->dindex = NULL;
}

/* Make room for bytes more, dropping the least recently used tables. */
static void make_room(struct f4fs *f, size_t bytes)
{
	while (f->dcache_bytes + bytes > f->dcache_limit &&
	       !list_empty(&f->dcache_lru)) {
		struct f4_dindex *x = list_last_entry(&f->dcache_lru,
						      struct f4_dindex, lru);
		struct f4_inode *owner = x->owner;

		f4_dcache_drop(f, owner);
	}
}

struct build_ctx {
	struct f4fs *f;
	struct f4_inode *rec;
};

static int is_dots(const char *name, size_t len)
{
	return name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.'));
}

static int add_entry(ext2_ino_t ino, int ftype, const char *name,
		     size_t len, void *arg)
{
	struct build_ctx *b = arg;
	struct f4fs *f = b->f;
	struct f4_inode *rec = b->rec;

	/* . and .. are not looked up here; keep them out */
	if (is_dots(name, len))
		return 0;
	return insert(f, rec->dindex, name, len, ino, ftype);
}

static int build(struct f4fs *f, struct f4_inode *rec)
{
	struct build_ctx b = { f, rec };
	struct f4_dindex *x;
	int ret;

	make_room(f, 4096);
	if (f->dcache_bytes >= f->dcache_limit)
		return -ENOSPC;
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->nbuckets = 16;
	x->buckets = calloc(x->nbuckets, sizeof(*x->buckets));
	if (!x->buckets) {
		free(x);
		return -ENOMEM;
	}
	x->owner = rec;
	list_add(&x->lru, &f->dcache_lru);
	charge(f, x, (long)(sizeof(*x) + x->nbuckets * sizeof(*x->buckets)));
	rec->dindex = x;
	ret = f4_dir_iterate(f, rec->ino, add_entry, &b);
	if (ret || f->dcache_bytes > f->dcache_limit) {
		f4_dcache_drop(f, rec);
		return ret ? ret : -ENOSPC;
	}
	return 0;
}

/*
 * Look name up in dir's table, reading the directory into one first if
 * there is none.  1 found, 0 known absent, -EAGAIN no table (read the
 * directory), other negative errno.
 */
int f4_dcache_lookup(struct f4fs *f, ext2_ino_t dir, const char *name,
		     size_t len, ext2_ino_t *ino, int *ftype)
{
	struct f4_inode *rec;
	struct dent *d;
	int ret;

	if (is_dots(name, len))
		return -EAGAIN;
	rec = f4_iget_incore(f, dir);
	if (!rec)
		return -EAGAIN;
	if (!rec->dindex) {
		ret = build(f, rec);
		if (ret) {
			f4_iput(f, rec);
			return ret == -EFSCORRUPTED || ret == -EIO ? ret :
			       -EAGAIN;
		}
	}
	list_move(&rec->dindex->lru, &f->dcache_lru);
	d = *slot_of(rec->dindex, name, len);
	if (d) {
		*ino = d->ino;
		if (ftype)
			*ftype = d->ftype;
	}
	f4_iput(f, rec);
	return d ? 1 : 0;
}

/* dir.c changed an entry: ino 0 removes it. */
void f4_dcache_update(struct f4fs *f, ext2_ino_t dir, const char *name,
		      size_t len, ext2_ino_t ino, int ftype)
{
	struct f4_inode *rec = f4_iget_incore(f, dir);
	struct f4_dindex *x;
	struct dent **p, *d;

	if (!rec)
		return;
	x = rec->dindex;
	if (!x)
		goto out;
	if (ino) {
		if (insert(f, x, name, len, ino, ftype))
			f4_dcache_drop(f, rec);	/* can't keep it exact */
		goto out;
	}
	p = slot_of(x, name, len);
	d = *p;
	if (d) {
		*p = d->next;
		x->nents--;
		charge(f, x, -(long)(sizeof(*d) + d->len));
		free(d);
	}
out:
	f4_iput(f, rec);
}

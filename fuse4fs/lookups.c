/*
 * fuse4fs - the kernel's lookup counts, one small slot per inode.
 *
 * The kernel holds a reference (a lookup count) on every inode it has
 * been told about until it sends FORGET, and with plenty of memory it
 * may hold a million of them after a walk.  Counting them in the full
 * in-core inode record (struct f4_inode, ~180 bytes with its cache node)
 * would make the daemon's memory grow with the kernel's inode cache, so
 * the counts live here: an open-addressing table of 8-byte slots, linear
 * probing, deletion by shifting back (no tombstones).  Records exist only
 * for inodes that need more (open, orphaned, indexed directories).
 *
 * A count that would pass UINT32_MAX sticks there: the inode is then never
 * freed by a forget, only by the orphan cleanup of the next mount, which
 * is safe where freeing it early would not be.
 *
 * Called with the file-system lock held, like everything in the core.
 */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuse4fs.h"

#define LOOKUPS_MIN	1024		/* slots; a power of two */

struct f4_lookup_slot {
	uint32_t ino;			/* 0: empty */
	uint32_t count;
};

static size_t slot_of(const struct f4_lookups *t, uint32_t ino)
{
	return (size_t)((ino * 0x9E3779B1u) & (uint32_t)(t->size - 1));
}

static struct f4_lookup_slot *find(const struct f4_lookups *t, uint32_t ino)
{
	size_t i;

	if (!t->size)
		return NULL;
	for (i = slot_of(t, ino); t->slots[i].ino; i = (i + 1) & (t->size - 1))
		if (t->slots[i].ino == ino)
			return &t->slots[i];
	return NULL;
}

static void put_slot(struct f4_lookups *t, uint32_t ino, uint32_t count)
{
	size_t i = slot_of(t, ino);

	while (t->slots[i].ino)
		i = (i + 1) & (t->size - 1);
	t->slots[i].ino = ino;
	t->slots[i].count = count;
}

static int resize(struct f4_lookups *t, size_t size)
{
	struct f4_lookups n = { NULL, size, t->used };
	size_t i;

	n.slots = calloc(size, sizeof(*n.slots));
	if (!n.slots)
		return -ENOMEM;
	for (i = 0; i < t->size; i++)
		if (t->slots[i].ino)
			put_slot(&n, t->slots[i].ino, t->slots[i].count);
	free(t->slots);
	*t = n;
	return 0;
}

void f4_lookups_free(struct f4_lookups *t)
{
	free(t->slots);
	t->slots = NULL;
	t->size = t->used = 0;
}

uint32_t f4_lookups_get(const struct f4_lookups *t, ext2_ino_t ino)
{
	const struct f4_lookup_slot *s = find(t, ino);

	return s ? s->count : 0;
}

/* One more kernel reference to ino; 0 or -ENOMEM. */
int f4_lookups_inc(struct f4_lookups *t, ext2_ino_t ino)
{
	struct f4_lookup_slot *s = find(t, ino);
	int ret;

	if (s) {
		if (s->count < UINT32_MAX)
			s->count++;
		return 0;
	}
	/* at most three quarters full */
	if ((t->used + 1) * 4 > t->size * 3) {
		ret = resize(t, t->size ? t->size * 2 : LOOKUPS_MIN);
		if (ret)
			return ret;
	}
	put_slot(t, ino, 1);
	t->used++;
	return 0;
}

/* Remove the slot at i, shifting back the entries that probed past it. */
static void remove_at(struct f4_lookups *t, size_t i)
{
	size_t j = i, home;

	for (;;) {
		t->slots[i].ino = 0;
		for (;;) {
			j = (j + 1) & (t->size - 1);
			if (!t->slots[j].ino)
				return;
			home = slot_of(t, t->slots[j].ino);
			/* may j's entry move to i?  only if home is not in (i, j] */
			if (i <= j ? (home <= i || home > j) :
				     (home <= i && home > j))
				break;
		}
		t->slots[i] = t->slots[j];
		i = j;
	}
}

/* The kernel drops n references; returns the count left. */
uint32_t f4_lookups_dec(struct f4_lookups *t, ext2_ino_t ino, uint64_t n)
{
	struct f4_lookup_slot *s = find(t, ino);

	if (!s)
		return 0;
	if (s->count == UINT32_MAX)
		return s->count;		/* stuck: see the top */
	if (n < s->count) {
		s->count -= n;
		return s->count;
	}
	remove_at(t, s - t->slots);
	t->used--;
	/* give the memory of a forgotten walk back */
	if (t->size > LOOKUPS_MIN && t->used * 8 < t->size)
		resize(t, t->size / 2);		/* on failure keep the big one */
	return 0;
}

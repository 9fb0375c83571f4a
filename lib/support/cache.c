/*
 * cache.c - a generic, thread-safe hash cache of reference-counted nodes.
 *
 * See cache.h for the interface, the sizing policy and the locking rules.
 *
 * Every node in the cache is in exactly one hash bucket.  A node with no
 * user reference is also on c->lru (least recently used first); a
 * referenced node's mru_link points at itself, so the number of
 * unreferenced nodes is always c->nodes - c->referenced.  A dirty node is
 * on c->dirty_list.  Internal holds (a write-back or a walk in progress)
 * are counted in n->pins; they keep a node in the cache without moving it
 * in the LRU order.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/cache.h"

/* Private node flags. */
#define CACHE_NODE_DIRTY	0x1	/* needs write-back */
#define CACHE_NODE_REDIRTY	0x2	/* dirtied since write-back began */
#define CACHE_NODE_FLUSHING	0x4	/* ops->flush running */

#define CACHE_MIN_BUCKETS	64
/* Buckets moved to a resized table per lookup, and per tick. */
#define CACHE_REHASH_STEP	4
#define CACHE_TICK_REHASH	4096
/* Dirty nodes a reclaim pass writes back at once (sorted by key). */
#define CACHE_FLUSH_BATCH	16
/* Extra LRU nodes a reclaim pass may look at past busy or dirty ones. */
#define CACHE_SCAN_SLACK	32

/* A cache_get() calling ops->alloc without the lock. */
struct cache_pending {
	struct list_head link;
	uint64_t key;
	int stale;		/* a node with this key left the cache */
};

static void cache_lock(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
}

static void cache_unlock(struct cache *c)
{
	pthread_mutex_unlock(&c->lock);
}

/*
 * Inode and block numbers are mostly small and sequential, so mix every
 * key bit into the low bits used to pick a bucket.  This is the usual
 * xor-shift / multiply finaliser with Stafford's "mix 13" constants.
 */
static uint64_t cache_hash(uint64_t key)
{
	key ^= key >> 30;
	key *= 0xbf58476d1ce4e5b9ULL;
	key ^= key >> 27;
	key *= 0x94d049bb133111ebULL;
	key ^= key >> 31;
	return key;
}

static size_t cache_floor(const struct cache *c)
{
	return c->max_nodes < CACHE_MIN_TARGET ? c->max_nodes :
						 CACHE_MIN_TARGET;
}

static size_t cache_unreferenced(const struct cache *c)
{
	return c->nodes - c->referenced;
}

static int cache_resizing(const struct cache *c)
{
	return c->tab[1].buckets != NULL;
}

/*
 * The bucket that holds (or will hold) @key.  While the table is being
 * resized, tab[0] buckets below rehash_next have already been moved, so
 * their keys live in tab[1]; every other key is still in tab[0].
 */
static struct list_head *cache_bucket(struct cache *c, uint64_t key)
{
	uint64_t h = cache_hash(key);
	struct cache_table *t = &c->tab[0];

	if (cache_resizing(c) && (h & (t->size - 1)) < c->rehash_next)
		t = &c->tab[1];
	return &t->buckets[h & (t->size - 1)];
}

static struct cache_node *cache_lookup(struct cache *c, uint64_t key)
{
	struct list_head *b = cache_bucket(c, key);
	struct cache_node *n;

	if (!b->next)
		return NULL;
	list_for_each_entry(n, b, hash_link)
		if (n->key == key)
			return n;
	return NULL;
}

static void cache_bucket_add(struct list_head *b, struct cache_node *n)
{
	/* calloc'ed buckets are initialised lazily: no pause on resize */
	if (!b->next)
		list_init(b);
	list_add(&n->hash_link, b);
}

/* Start moving to a table of @size buckets; on ENOMEM just keep the old. */
static void cache_start_resize(struct cache *c, size_t size)
{
	struct list_head *b;

	if (cache_resizing(c) || size == c->tab[0].size)
		return;
	b = calloc(size, sizeof(*b));
	if (!b)
		return;
	c->tab[1].buckets = b;
	c->tab[1].size = size;
	c->rehash_next = 0;
}

/* Move up to @count buckets to the new table; finish when all are moved. */
static void cache_rehash_step(struct cache *c, size_t count)
{
	struct cache_table *old = &c->tab[0], *new = &c->tab[1];
	struct cache_node *n, *tmp;
	struct list_head *b;

	if (!cache_resizing(c))
		return;
	while (count-- && c->rehash_next < old->size) {
		b = &old->buckets[c->rehash_next++];
		if (!b->next)
			continue;
		list_for_each_entry_safe(n, tmp, b, hash_link) {
			list_del(&n->hash_link);
			cache_bucket_add(&new->buckets[cache_hash(n->key) &
						       (new->size - 1)], n);
		}
	}
	if (c->rehash_next < old->size)
		return;
	free(old->buckets);
	*old = *new;
	new->buckets = NULL;
	new->size = 0;
	c->rehash_next = 0;
}

static size_t cache_roundup_pow2(size_t n)
{
	size_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

/* Shrink a sparse table; called from the tick so it cannot oscillate. */
static void cache_maybe_shrink_table(struct cache *c)
{
	size_t size = c->tab[0].size, want;

	if (cache_resizing(c) || size <= CACHE_MIN_BUCKETS ||
	    c->nodes >= size / 4)
		return;
	want = cache_roundup_pow2(c->nodes * 2);
	if (want < CACHE_MIN_BUCKETS)
		want = CACHE_MIN_BUCKETS;
	cache_start_resize(c, want);
}

static void cache_insert(struct cache *c, struct cache_node *n)
{
	cache_bucket_add(cache_bucket(c, n->key), n);
	c->nodes++;
	if (!cache_resizing(c) && c->nodes > c->tab[0].size)
		cache_start_resize(c, c->tab[0].size * 2);
}

/* Set up a node fresh from ops->alloc (whatever it left in our fields). */
static void cache_node_init(struct cache_node *n, uint64_t key)
{
	list_init(&n->hash_link);
	list_init(&n->mru_link);
	list_init(&n->dirty_link);
	n->key = key;
	n->refcount = 0;
	n->flags = 0;
	n->pins = 0;
}

/* Take a user reference; a node leaves the LRU when it gets its first. */
static void cache_ref(struct cache *c, struct cache_node *n)
{
	if (n->refcount++ == 0) {
		list_del(&n->mru_link);
		c->referenced++;
	}
}

static void cache_clear_dirty(struct cache *c, struct cache_node *n)
{
	if (n->flags & CACHE_NODE_DIRTY) {
		list_del(&n->dirty_link);
		c->dirty--;
	}
	n->flags &= ~(CACHE_NODE_DIRTY | CACHE_NODE_REDIRTY);
}

/*
 * Take an unreferenced, unpinned node out of the cache and queue it on
 * @dead, to be released once the lock is dropped.  An allocation of the
 * same key running meanwhile may have read data older than what this node
 * held (it may just have been written back), so mark it stale.
 */
static void cache_evict(struct cache *c, struct cache_node *n,
			struct list_head *dead)
{
	struct cache_pending *p;

	assert(!n->refcount && !n->pins);
	list_del(&n->hash_link);
	list_move_tail(&n->mru_link, dead);
	cache_clear_dirty(c, n);
	c->nodes--;
	list_for_each_entry(p, &c->pending, link)
		if (p->key == n->key)
			p->stale = 1;
}

/* Release the nodes on @dead; called without the lock. */
static void cache_release_list(struct cache *c, struct list_head *dead)
{
	struct cache_node *n, *tmp;

	list_for_each_entry_safe(n, tmp, dead, mru_link) {
		list_del(&n->mru_link);
		c->ops->release(c, n);
	}
}

/* Drop the lock to release @dead, if there is anything to release. */
static void cache_release_unlocked(struct cache *c, struct list_head *dead)
{
	if (list_empty(dead))
		return;
	cache_unlock(c);
	cache_release_list(c, dead);
	cache_lock(c);
}

/*
 * Write-back protocol: begin (locked) pins the node and marks it as being
 * flushed, the callback runs unlocked, end (locked) records the result.
 * REDIRTY is cleared at the start so a cache_mark_dirty() that races with
 * the write-back keeps the node dirty.
 */
static void cache_flush_begin(struct cache_node *n)
{
	n->pins++;
	n->flags |= CACHE_NODE_FLUSHING;
	n->flags &= ~CACHE_NODE_REDIRTY;
}

static int cache_call_flush(struct cache *c, struct cache_node *n)
{
	return c->ops->flush ? c->ops->flush(c, n) : 0;
}

static void cache_flush_end(struct cache *c, struct cache_node *n, int err)
{
	if (err) {
		c->flush_errors++;
	} else {
		c->flushes++;
		if (!(n->flags & CACHE_NODE_REDIRTY))
			cache_clear_dirty(c, n);
	}
	n->flags &= ~CACHE_NODE_FLUSHING;
	n->pins--;
	pthread_cond_broadcast(&c->flush_done);
}

static int cache_cmp_node_key(const void *a, const void *b)
{
	const struct cache_node *x = *(const struct cache_node * const *)a;
	const struct cache_node *y = *(const struct cache_node * const *)b;

	return x->key < y->key ? -1 : x->key > y->key;
}

static int cache_cmp_key(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Write back a batch of pinned nodes, sorted by key so block write-back
 * is sequential; called without the lock.
 */
static void cache_flush_batch(struct cache *c, struct cache_node **batch,
			      int *errs, size_t nb)
{
	size_t i;

	qsort(batch, nb, sizeof(*batch), cache_cmp_node_key);
	for (i = 0; i < nb; i++)
		errs[i] = cache_call_flush(c, batch[i]);
}

/*
 * Reclaim unreferenced nodes, least recently used first, until at most
 * @keep remain.  Nodes pinned by a write-back or a walk are skipped.
 * Dirty nodes are written back first when @may_flush, up to
 * CACHE_FLUSH_BATCH at a time sorted by key, keeping the LRU order.  A
 * node whose write-back fails (or that is dirtied again meanwhile) goes to
 * the MRU end, and the rest of the pass only takes clean nodes, so a
 * failing device is not hammered and the pass always ends.
 * Called and returns with the lock held; drops it around callbacks.
 */
static void cache_reclaim(struct cache *c, size_t keep, int may_flush)
{
	struct cache_node *batch[CACHE_FLUSH_BATCH];
	int errs[CACHE_FLUSH_BATCH];
	struct cache_node *n, *tmp;
	size_t excess, taken, scanned, nb, progress, kept, i;
	LIST_HEAD(dead);

	while (cache_unreferenced(c) > keep) {
		excess = cache_unreferenced(c) - keep;
		taken = scanned = nb = progress = kept = 0;
		list_for_each_entry_safe(n, tmp, &c->lru, mru_link) {
			if (taken >= excess ||
			    scanned++ >= 2 * excess + CACHE_SCAN_SLACK)
				break;
			if (n->pins)
				continue;
			if (!(n->flags & CACHE_NODE_DIRTY)) {
				cache_evict(c, n, &dead);
				c->reclaimed++;
				taken++;
				progress++;
			} else if (may_flush) {
				/* take no newer clean node before this one */
				if (nb == CACHE_FLUSH_BATCH)
					break;
				cache_flush_begin(n);
				batch[nb++] = n;
				taken++;
			}
		}
		if (nb) {
			cache_unlock(c);
			cache_release_list(c, &dead);
			cache_flush_batch(c, batch, errs, nb);
			cache_lock(c);
		}
		for (i = 0; i < nb; i++) {
			n = batch[i];
			cache_flush_end(c, n, errs[i]);
			if (n->refcount)
				continue;
			if (errs[i] || (n->flags & CACHE_NODE_DIRTY)) {
				/* failed, or dirtied again meanwhile */
				kept++;
				list_move_tail(&n->mru_link, &c->lru);
			} else if (!n->pins) {
				cache_evict(c, n, &dead);
				c->reclaimed++;
				progress++;
			}
		}
		/* after keeping a dirty node, go on without write-back */
		if (kept)
			may_flush = 0;
		else if (!progress)
			break;
	}
	cache_release_unlocked(c, &dead);
}

/*
 * Free clean unreferenced nodes above the target without any I/O; used on
 * cache_put(), where nodes come back after being held.  Looks at a bounded
 * number of LRU nodes so a run of dirty ones cannot make put slow.
 */
static void cache_trim_clean(struct cache *c, struct list_head *dead)
{
	struct cache_node *n, *tmp;
	size_t excess, scanned = 0;

	if (cache_unreferenced(c) <= c->target)
		return;
	excess = cache_unreferenced(c) - c->target;
	list_for_each_entry_safe(n, tmp, &c->lru, mru_link) {
		if (!excess || scanned++ >= excess + CACHE_SCAN_SLACK)
			break;
		if (n->pins || (n->flags & CACHE_NODE_DIRTY))
			continue;
		cache_evict(c, n, dead);
		c->reclaimed++;
		excess--;
	}
}

/*
 * A miss while the cache already keeps target unreferenced nodes means a
 * bigger cache might have hit: after target/2 such misses, double.
 */
static void cache_note_miss(struct cache *c)
{
	size_t need, target;

	if (c->target >= c->max_nodes || cache_unreferenced(c) < c->target)
		return;
	need = c->target / 2 ? c->target / 2 : 1;
	if (++c->pressure < need)
		return;
	target = c->target * 2;
	if (target < cache_floor(c))
		target = cache_floor(c);
	c->target = target < c->max_nodes ? target : c->max_nodes;
	c->pressure = 0;
}

int cache_init(struct cache *c, const struct cache_ops *ops, size_t max_nodes,
	       void *priv)
{
	int err;

	if (!ops || !ops->alloc || !ops->release)
		return -EINVAL;
	memset(c, 0, sizeof(*c));
	c->tab[0].buckets = calloc(CACHE_MIN_BUCKETS, sizeof(struct list_head));
	if (!c->tab[0].buckets)
		return -ENOMEM;
	c->tab[0].size = CACHE_MIN_BUCKETS;
	err = pthread_mutex_init(&c->lock, NULL);
	if (err)
		goto out_free;
	err = pthread_cond_init(&c->flush_done, NULL);
	if (err)
		goto out_mutex;
	c->ops = ops;
	c->priv = priv;
	list_init(&c->lru);
	list_init(&c->dirty_list);
	list_init(&c->pending);
	c->max_nodes = max_nodes;
	c->target = cache_floor(c);
	return 0;

out_mutex:
	pthread_mutex_destroy(&c->lock);
out_free:
	free(c->tab[0].buckets);
	c->tab[0].buckets = NULL;
	return -err;
}

void *cache_priv(struct cache *c)
{
	return c->priv;
}

int cache_destroy(struct cache *c)
{
	struct cache_node *n, *tmp;
	struct list_head *b;
	size_t t, i;
	LIST_HEAD(dead);
	int err;

	cache_lock(c);
	if (c->referenced) {
		cache_unlock(c);
		return -EBUSY;
	}
	cache_unlock(c);

	err = cache_flush(c);

	cache_lock(c);
	for (t = 0; t < 2; t++) {
		for (i = 0; i < c->tab[t].size; i++) {
			b = &c->tab[t].buckets[i];
			if (!b->next)
				continue;
			list_for_each_entry_safe(n, tmp, b, hash_link)
				cache_evict(c, n, &dead);
		}
		free(c->tab[t].buckets);
		c->tab[t].buckets = NULL;
		c->tab[t].size = 0;
	}
	cache_unlock(c);
	cache_release_list(c, &dead);
	pthread_cond_destroy(&c->flush_done);
	pthread_mutex_destroy(&c->lock);
	return err;
}

struct cache_node *cache_get(struct cache *c, uint64_t key, int flags,
			     void *arg)
{
	struct cache_pending pend;
	struct cache_node *n, *fresh;
	int err;

	cache_lock(c);
	cache_rehash_step(c, CACHE_REHASH_STEP);
	n = cache_lookup(c, key);
	if (n) {
		c->hits++;
		goto found;
	}
	c->misses++;
	if (flags & CACHE_GET_INCORE) {
		cache_unlock(c);
		errno = ENOENT;
		return NULL;
	}
	cache_note_miss(c);
	/* make room for the node about to be added */
	cache_reclaim(c, c->target ? c->target - 1 : 0, 1);

	for (;;) {
		/* the lock may have been dropped: look again */
		n = cache_lookup(c, key);
		if (n)
			goto found;
		pend.key = key;
		pend.stale = 0;
		list_add(&pend.link, &c->pending);
		cache_unlock(c);

		errno = 0;
		fresh = c->ops->alloc(c, key, arg);
		err = errno;
		if (fresh)
			cache_node_init(fresh, key);

		cache_lock(c);
		list_del(&pend.link);
		if (!fresh) {
			cache_unlock(c);
			errno = err ? err : ENOMEM;
			return NULL;
		}
		n = cache_lookup(c, key);
		if (n) {
			/* another thread created it first: use that one */
			cache_ref(c, n);
			cache_unlock(c);
			c->ops->release(c, fresh);
			return n;
		}
		if (!pend.stale)
			break;
		/*
		 * A node for this key was created and evicted while we read
		 * ours, so ours may predate its write-back: read again.
		 */
		cache_unlock(c);
		c->ops->release(c, fresh);
		cache_lock(c);
	}

	fresh->refcount = 1;
	c->referenced++;
	cache_insert(c, fresh);
	cache_unlock(c);
	return fresh;

found:
	cache_ref(c, n);
	cache_unlock(c);
	return n;
}

void cache_hold(struct cache *c, struct cache_node *n)
{
	cache_lock(c);
	assert(n->refcount > 0);
	n->refcount++;
	cache_unlock(c);
}

void cache_put(struct cache *c, struct cache_node *n)
{
	LIST_HEAD(dead);

	cache_lock(c);
	assert(n->refcount > 0);
	if (--n->refcount == 0) {
		list_add_tail(&n->mru_link, &c->lru);
		c->referenced--;
		cache_trim_clean(c, &dead);
	}
	cache_unlock(c);
	cache_release_list(c, &dead);
}

unsigned int cache_refcount(struct cache *c, struct cache_node *n)
{
	unsigned int ref;

	cache_lock(c);
	ref = n->refcount;
	cache_unlock(c);
	return ref;
}

void cache_mark_dirty(struct cache *c, struct cache_node *n)
{
	cache_lock(c);
	if (!(n->flags & CACHE_NODE_DIRTY)) {
		n->flags |= CACHE_NODE_DIRTY;
		list_add_tail(&n->dirty_link, &c->dirty_list);
		c->dirty++;
	}
	n->flags |= CACHE_NODE_REDIRTY;
	cache_unlock(c);
}

void cache_mark_clean(struct cache *c, struct cache_node *n)
{
	cache_lock(c);
	cache_clear_dirty(c, n);
	cache_unlock(c);
}

int cache_node_dirty(struct cache *c, struct cache_node *n)
{
	int dirty;

	cache_lock(c);
	dirty = !!(n->flags & CACHE_NODE_DIRTY);
	cache_unlock(c);
	return dirty;
}

/*
 * Write back the node for @key if it is in core and dirty, first waiting
 * for a write-back of it running in another thread (which may fail or
 * predate the latest change).
 */
static int cache_flush_key(struct cache *c, uint64_t key)
{
	struct cache_node *n;
	int err = 0;

	cache_lock(c);
	n = cache_lookup(c, key);
	if (!n)
		goto out;
	while (n->flags & CACHE_NODE_FLUSHING) {
		n->pins++;
		pthread_cond_wait(&c->flush_done, &c->lock);
		n->pins--;
	}
	if (!(n->flags & CACHE_NODE_DIRTY))
		goto out;
	cache_flush_begin(n);
	cache_unlock(c);
	err = cache_call_flush(c, n);
	cache_lock(c);
	cache_flush_end(c, n, err);
out:
	cache_unlock(c);
	return err;
}

/*
 * Collect the dirty keys under the lock and write back one key at a time:
 * holding no pin between callbacks, the nodes stay free to move in the
 * LRU or to be dropped meanwhile.
 */
int cache_flush(struct cache *c)
{
	struct cache_node *n;
	uint64_t *keys;
	size_t nkeys = 0, i;
	int err = 0, ret;

	cache_lock(c);
	if (!c->dirty) {
		cache_unlock(c);
		return 0;
	}
	keys = malloc(c->dirty * sizeof(*keys));
	if (!keys) {
		cache_unlock(c);
		return -ENOMEM;
	}
	list_for_each_entry(n, &c->dirty_list, dirty_link)
		keys[nkeys++] = n->key;
	cache_unlock(c);

	qsort(keys, nkeys, sizeof(*keys), cache_cmp_key);
	for (i = 0; i < nkeys; i++) {
		ret = cache_flush_key(c, keys[i]);
		if (ret && !err)
			err = ret;
	}
	free(keys);
	return err;
}

int cache_drop(struct cache *c, uint64_t key)
{
	struct cache_node *n;
	LIST_HEAD(dead);
	int err = 0;

	cache_lock(c);
	n = cache_lookup(c, key);
	if (!n)
		err = -ENOENT;
	else if (n->refcount || n->pins)
		err = -EBUSY;
	else
		cache_evict(c, n, &dead);
	cache_unlock(c);
	cache_release_list(c, &dead);
	return err;
}

/* Every node in core, pinned; *@count set.  Called with the lock held. */
static struct cache_node **cache_pin_all(struct cache *c, size_t *count)
{
	struct cache_node **all, *n;
	struct list_head *b;
	size_t t, i, k = 0;

	all = malloc((c->nodes ? c->nodes : 1) * sizeof(*all));
	if (!all)
		return NULL;
	for (t = 0; t < 2; t++) {
		for (i = 0; i < c->tab[t].size; i++) {
			b = &c->tab[t].buckets[i];
			if (!b->next)
				continue;
			list_for_each_entry(n, b, hash_link) {
				n->pins++;
				all[k++] = n;
			}
		}
	}
	*count = k;
	return all;
}

int cache_walk(struct cache *c,
	       int (*fn)(struct cache *c, struct cache_node *n, void *arg),
	       void *arg)
{
	struct cache_node **all;
	size_t count = 0, i;
	int ret = 0;

	cache_lock(c);
	all = cache_pin_all(c, &count);
	cache_unlock(c);
	if (!all)
		return -ENOMEM;

	qsort(all, count, sizeof(*all), cache_cmp_node_key);
	for (i = 0; i < count && !ret; i++)
		ret = fn(c, all[i], arg);

	cache_lock(c);
	for (i = 0; i < count; i++)
		all[i]->pins--;
	cache_unlock(c);
	free(all);
	return ret;
}

int cache_purge(struct cache *c)
{
	struct cache_node *n, *tmp;
	LIST_HEAD(dead);
	int err;

	err = cache_flush(c);
	cache_lock(c);
	list_for_each_entry_safe(n, tmp, &c->lru, mru_link)
		if (!n->pins && !(n->flags & CACHE_NODE_DIRTY))
			cache_evict(c, n, &dead);
	cache_unlock(c);
	cache_release_list(c, &dead);
	return err;
}

void cache_set_max(struct cache *c, size_t max_nodes)
{
	cache_lock(c);
	c->max_nodes = max_nodes;
	if (c->target > max_nodes)
		c->target = max_nodes;
	if (c->target < cache_floor(c))
		c->target = cache_floor(c);
	c->pressure = 0;
	cache_reclaim(c, c->target, 1);
	cache_unlock(c);
}

/*
 * Fewer than target/8 lookups since the last tick is a quiet tick; after
 * CACHE_IDLE_TICKS quiet ticks in a row, every further quiet tick halves
 * the target.  The excess (and anything a put left above the target
 * because it was dirty) is reclaimed here.
 */
void cache_tick(struct cache *c)
{
	uint64_t lookups, recent;
	size_t target;

	cache_lock(c);
	lookups = c->hits + c->misses;
	recent = lookups - c->last_lookups;
	c->last_lookups = lookups;
	if (recent * 8 < c->target) {
		if (c->idle_ticks < CACHE_IDLE_TICKS)
			c->idle_ticks++;
		if (c->idle_ticks >= CACHE_IDLE_TICKS) {
			target = c->target / 2;
			if (target < cache_floor(c))
				target = cache_floor(c);
			c->target = target;
			c->pressure = 0;
		}
	} else {
		c->idle_ticks = 0;
	}
	cache_reclaim(c, c->target, 1);
	cache_maybe_shrink_table(c);
	cache_rehash_step(c, CACHE_TICK_REHASH);
	cache_unlock(c);
}

void cache_get_stats(struct cache *c, struct cache_stats *st)
{
	cache_lock(c);
	st->hits = c->hits;
	st->misses = c->misses;
	st->reclaimed = c->reclaimed;
	st->flushes = c->flushes;
	st->flush_errors = c->flush_errors;
	st->nodes = c->nodes;
	st->referenced = c->referenced;
	st->dirty = c->dirty;
	st->buckets = cache_resizing(c) ? c->tab[1].size : c->tab[0].size;
	st->target = c->target;
	st->max_nodes = c->max_nodes;
	cache_unlock(c);
}

#define CHECK_FAIL(...)					\
	do {						\
		fprintf(stderr, "cache_check: " __VA_ARGS__);	\
		err = -EUCLEAN;				\
		goto out;				\
	} while (0)

int cache_check(struct cache *c)
{
	struct cache_node *n, **all = NULL;
	size_t count = 0, referenced = 0, dirty = 0, lru = 0, i;
	int err = 0;

	cache_lock(c);
	all = cache_pin_all(c, &count);
	if (!all) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < count; i++)
		all[i]->pins--;
	if (count != c->nodes)
		CHECK_FAIL("%zu nodes hashed, %zu counted\n", count, c->nodes);
	for (i = 0; i < count; i++) {
		struct list_head *b = cache_bucket(c, all[i]->key), *p;
		int found = 0;

		n = all[i];
		if (b->next)
			list_for_each(p, b)
				if (p == &n->hash_link)
					found = 1;
		if (!found)
			CHECK_FAIL("key %llu not in its bucket\n",
				   (unsigned long long)n->key);
		if (n->refcount) {
			referenced++;
			if (!list_empty(&n->mru_link))
				CHECK_FAIL("referenced key %llu on the LRU\n",
					   (unsigned long long)n->key);
		}
		if (n->flags & CACHE_NODE_DIRTY)
			dirty++;
		if ((n->flags & CACHE_NODE_FLUSHING) && !n->pins)
			CHECK_FAIL("key %llu flushing but not pinned\n",
				   (unsigned long long)n->key);
	}
	if (referenced != c->referenced)
		CHECK_FAIL("%zu referenced, %zu counted\n", referenced,
			   c->referenced);
	if (dirty != c->dirty)
		CHECK_FAIL("%zu dirty, %zu counted\n", dirty, c->dirty);
	i = 0;
	list_for_each_entry(n, &c->dirty_list, dirty_link) {
		if (!(n->flags & CACHE_NODE_DIRTY))
			CHECK_FAIL("clean key %llu on the dirty list\n",
				   (unsigned long long)n->key);
		i++;
	}
	if (i != dirty)
		CHECK_FAIL("%zu on the dirty list, %zu dirty\n", i, dirty);
	list_for_each_entry(n, &c->lru, mru_link) {
		if (n->refcount)
			CHECK_FAIL("key %llu on the LRU with %u references\n",
				   (unsigned long long)n->key, n->refcount);
		lru++;
	}
	if (lru != c->nodes - c->referenced)
		CHECK_FAIL("%zu on the LRU, %zu unreferenced\n", lru,
			   c->nodes - c->referenced);
	if (c->target > c->max_nodes || c->target < cache_floor(c))
		CHECK_FAIL("target %zu outside [%zu, %zu]\n", c->target,
			   cache_floor(c), c->max_nodes);
	qsort(all, count, sizeof(*all), cache_cmp_node_key);
	for (i = 1; i < count; i++)
		if (all[i - 1]->key == all[i]->key)
			CHECK_FAIL("key %llu cached twice\n",
				   (unsigned long long)all[i]->key);
out:
	cache_unlock(c);
	free(all);
	return err;
}

/*
 * test_cache.c - unit tests for lib/support/cache.c.
 *
 * Exits 0 if every check passes; otherwise prints the failed check and
 * exits 1.  Also built with ASan/UBSan and with TSan (see Makefile.in);
 * the stress test is what gives those builds something to find.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "support/cache.h"

static const char *current_test;

#define CHECK(cond)							\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "FAIL %s (%s:%d): %s\n",	\
				current_test, __FILE__, __LINE__, #cond); \
			exit(1);					\
		}							\
	} while (0)

#define CHECK_EQ(a, b)							\
	do {								\
		unsigned long long a_ = (a), b_ = (b);			\
		if (a_ != b_) {						\
			fprintf(stderr, "FAIL %s (%s:%d): %s == %s "	\
				"(%llu != %llu)\n", current_test,	\
				__FILE__, __LINE__, #a, #b, a_, b_);	\
			exit(1);					\
		}							\
	} while (0)

#define NODE_MAGIC	0x6e6f6465cafef00dULL
#define NODE_DEAD	0xdeaddeaddeaddeadULL
#define LOG_MAX		8192

/* A user structure with a cache node embedded (not at offset 0). */
struct tnode {
	uint64_t magic;
	uint64_t value;			/* derived from the key by alloc */
	unsigned long serial;		/* which alloc call made it */
	atomic_int flushing;		/* ops->flush running on it */
	atomic_int users;		/* references the test holds */
	struct cache_node cn;
};

/* Per-cache test state, passed as the cache's priv pointer. */
struct tctx {
	atomic_ulong allocs;
	atomic_ulong releases;
	atomic_ulong flush_calls;
	atomic_ulong bad;		/* callback sanity check failures */
	atomic_ulong flush_overlap;	/* two flushes of one node at once */
	int threaded;			/* no logging */

	/* single-threaded logs */
	uint64_t flush_log[LOG_MAX];
	size_t nflush;
	uint64_t release_log[LOG_MAX];
	size_t nrelease;

	/* fault injection and hooks (set before use, read-only meanwhile) */
	int fail_key_set;
	uint64_t fail_key;		/* flush of this key fails */
	unsigned int fail_every;	/* every n-th flush fails */
	unsigned int alloc_fail_every;	/* every n-th alloc fails */
	int alloc_fail_key_set;
	uint64_t alloc_fail_key;
	int redirty_key_set;
	uint64_t redirty_key;		/* flush marks this node dirty again */

	/* alloc rendezvous for the race tests */
	uint64_t block_key;
	atomic_int block_calls;		/* allocs of block_key left to block */
	pthread_barrier_t *barrier;	/* wait here if set */
	sem_t *in_alloc;		/* post when blocking ... */
	sem_t *go;			/* ... then wait for this */
};

static struct tnode *tnode_of(struct cache_node *n)
{
	return container_of(n, struct tnode, cn);
}

static uint64_t value_of(uint64_t key)
{
	return key * 3 + 1;
}

static struct cache_node *t_alloc(struct cache *c, uint64_t key, void *arg)
{
	struct tctx *t = cache_priv(c);
	struct tnode *tn;
	unsigned long serial;

	if (t->alloc_fail_key_set && key == t->alloc_fail_key) {
		errno = ENOMEM;
		return NULL;
	}
	if (t->alloc_fail_every) {
		static atomic_ulong calls;

		if (atomic_fetch_add(&calls, 1) % t->alloc_fail_every == 0) {
			errno = ENOMEM;
			return NULL;
		}
	}
	if (key == t->block_key && atomic_fetch_sub(&t->block_calls, 1) > 0) {
		if (t->barrier)
			pthread_barrier_wait(t->barrier);
		if (t->in_alloc)
			sem_post(t->in_alloc);
		if (t->go)
			sem_wait(t->go);
	}
	tn = calloc(1, sizeof(*tn));
	if (!tn)
		return NULL;
	serial = atomic_fetch_add(&t->allocs, 1) + 1;
	tn->magic = NODE_MAGIC;
	tn->value = value_of(key);
	tn->serial = serial;
	/* garbage in the private fields must not matter */
	memset(&tn->cn, 0x5a, sizeof(tn->cn));
	return &tn->cn;
}

static int t_flush(struct cache *c, struct cache_node *n)
{
	struct tctx *t = cache_priv(c);
	struct tnode *tn = tnode_of(n);
	unsigned long call;
	int err = 0;

	if (tn->magic != NODE_MAGIC || tn->value != value_of(n->key))
		atomic_fetch_add(&t->bad, 1);
	if (atomic_exchange(&tn->flushing, 1))
		atomic_fetch_add(&t->flush_overlap, 1);
	call = atomic_fetch_add(&t->flush_calls, 1);
	if (!t->threaded && t->nflush < LOG_MAX)
		t->flush_log[t->nflush++] = n->key;
	if (t->redirty_key_set && n->key == t->redirty_key)
		cache_mark_dirty(c, n);
	if (t->fail_key_set && n->key == t->fail_key)
		err = -EIO;
	if (t->fail_every && call % t->fail_every == 0)
		err = -EIO;
	atomic_store(&tn->flushing, 0);
	return err;
}

static void t_release(struct cache *c, struct cache_node *n)
{
	struct tctx *t = cache_priv(c);
	struct tnode *tn = tnode_of(n);

	/* the node has left the cache: nobody may hold or flush it */
	if (tn->magic != NODE_MAGIC || n->refcount || atomic_load(&tn->users) ||
	    atomic_load(&tn->flushing))
		atomic_fetch_add(&t->bad, 1);
	if (!t->threaded && t->nrelease < LOG_MAX)
		t->release_log[t->nrelease++] = n->key;
	tn->magic = NODE_DEAD;
	atomic_fetch_add(&t->releases, 1);
	free(tn);
}

static const struct cache_ops t_ops = {
	.alloc = t_alloc,
	.flush = t_flush,
	.release = t_release,
};

static void setup(struct cache *c, struct tctx *t, size_t max)
{
	memset(t, 0, sizeof(*t));
	t->block_key = UINT64_MAX;
	CHECK_EQ(cache_init(c, &t_ops, max, t), 0);
}

/* Destroy the cache and check that every node allocated was released. */
static void teardown(struct cache *c, struct tctx *t)
{
	CHECK_EQ(cache_check(c), 0);
	CHECK_EQ(cache_destroy(c), 0);
	CHECK_EQ(atomic_load(&t->allocs), atomic_load(&t->releases));
	CHECK_EQ(atomic_load(&t->bad), 0);
	CHECK_EQ(atomic_load(&t->flush_overlap), 0);
}

static struct cache_node *get(struct cache *c, uint64_t key)
{
	struct cache_node *n = cache_get(c, key, 0, NULL);

	CHECK(n != NULL);
	CHECK_EQ(n->key, key);
	CHECK_EQ(tnode_of(n)->magic, NODE_MAGIC);
	CHECK_EQ(tnode_of(n)->value, value_of(key));
	return n;
}

static int incore(struct cache *c, uint64_t key)
{
	struct cache_node *n = cache_get(c, key, CACHE_GET_INCORE, NULL);

	if (!n)
		return 0;
	cache_put(c, n);
	return 1;
}

static void touch(struct cache *c, uint64_t key)
{
	cache_put(c, get(c, key));
}

static void touch_dirty(struct cache *c, uint64_t key)
{
	struct cache_node *n = get(c, key);

	cache_mark_dirty(c, n);
	cache_put(c, n);
}

static struct cache_stats stats(struct cache *c)
{
	struct cache_stats st;

	cache_get_stats(c, &st);
	return st;
}

static size_t unreferenced(struct cache *c)
{
	struct cache_stats st = stats(c);

	return st.nodes - st.referenced;
}

static void check_log(const uint64_t *log, size_t n, const uint64_t *want,
		      size_t nwant, const char *what, int line)
{
	size_t i;

	for (i = 0; i < n || i < nwant; i++) {
		if (i < n && i < nwant && log[i] == want[i])
			continue;
		fprintf(stderr, "FAIL %s (%s:%d): %s entry %zu: ", current_test,
			__FILE__, line, what, i);
		if (i < n)
			fprintf(stderr, "got %llu", (unsigned long long)log[i]);
		else
			fprintf(stderr, "got nothing");
		if (i < nwant)
			fprintf(stderr, ", want %llu\n",
				(unsigned long long)want[i]);
		else
			fprintf(stderr, ", want nothing\n");
		exit(1);
	}
}

#define EXPECT_FLUSHED(t, ...)						\
	do {								\
		static const uint64_t want_[] = { __VA_ARGS__ };	\
		check_log((t)->flush_log, (t)->nflush, want_,		\
			  sizeof(want_) / sizeof(want_[0]),		\
			  "flush log", __LINE__);			\
	} while (0)
#define EXPECT_RELEASED(t, ...)						\
	do {								\
		static const uint64_t want_[] = { __VA_ARGS__ };	\
		check_log((t)->release_log, (t)->nrelease, want_,	\
			  sizeof(want_) / sizeof(want_[0]),		\
			  "release log", __LINE__);			\
	} while (0)

/* ---- single-threaded tests ------------------------------------------- */

static void test_basic(void)
{
	struct cache c;
	struct tctx t;
	struct cache_node *n, *m;
	struct cache_stats st;
	struct cache_ops bad_ops = { .alloc = t_alloc };

	current_test = "basic";
	CHECK_EQ(cache_init(&c, &bad_ops, 10, NULL), -EINVAL);
	setup(&c, &t, 100);
	CHECK(cache_priv(&c) == &t);

	st = stats(&c);
	CHECK_EQ(st.nodes + st.hits + st.misses + st.dirty, 0);
	CHECK_EQ(st.max_nodes, 100);
	CHECK_EQ(st.target, CACHE_MIN_TARGET);

	n = get(&c, 1);
	CHECK_EQ(cache_refcount(&c, n), 1);
	CHECK_EQ(t.allocs, 1);
	st = stats(&c);
	CHECK_EQ(st.misses, 1);
	CHECK_EQ(st.hits, 0);
	CHECK_EQ(st.nodes, 1);
	CHECK_EQ(st.referenced, 1);

	m = get(&c, 1);
	CHECK(m == n);
	CHECK_EQ(cache_refcount(&c, n), 2);
	cache_hold(&c, n);
	CHECK_EQ(cache_refcount(&c, n), 3);
	CHECK_EQ(t.allocs, 1);
	st = stats(&c);
	CHECK_EQ(st.hits, 1);
	CHECK_EQ(st.misses, 1);

	cache_put(&c, n);
	cache_put(&c, n);
	CHECK_EQ(cache_refcount(&c, n), 1);
	CHECK_EQ(stats(&c).referenced, 1);
	cache_put(&c, n);
	CHECK_EQ(cache_refcount(&c, n), 0);
	st = stats(&c);
	CHECK_EQ(st.referenced, 0);
	CHECK_EQ(st.nodes, 1);

	/* CACHE_GET_INCORE: hits like a normal get, never allocates */
	m = cache_get(&c, 1, CACHE_GET_INCORE, NULL);
	CHECK(m == n);
	CHECK_EQ(cache_refcount(&c, m), 1);
	cache_put(&c, m);
	errno = 0;
	CHECK(cache_get(&c, 2, CACHE_GET_INCORE, NULL) == NULL);
	CHECK_EQ(errno, ENOENT);
	CHECK_EQ(t.allocs, 1);
	st = stats(&c);
	CHECK_EQ(st.hits, 2);
	CHECK_EQ(st.misses, 2);
	CHECK_EQ(st.nodes, 1);

	/* a failed alloc returns its errno and leaves nothing behind */
	t.alloc_fail_key_set = 1;
	t.alloc_fail_key = 5;
	errno = 0;
	CHECK(cache_get(&c, 5, 0, NULL) == NULL);
	CHECK_EQ(errno, ENOMEM);
	CHECK_EQ(stats(&c).nodes, 1);
	CHECK(!incore(&c, 5));
	t.alloc_fail_key_set = 0;
	touch(&c, 5);
	CHECK(incore(&c, 5));

	/* keys are 64-bit */
	touch(&c, UINT64_MAX - 1);
	touch(&c, 1ULL << 63);
	CHECK(incore(&c, UINT64_MAX - 1));
	CHECK(incore(&c, 1ULL << 63));
	CHECK(!incore(&c, 0));

	/* dirty flag */
	n = get(&c, 1);
	CHECK(!cache_node_dirty(&c, n));
	cache_mark_dirty(&c, n);
	cache_mark_dirty(&c, n);
	CHECK(cache_node_dirty(&c, n));
	CHECK_EQ(stats(&c).dirty, 1);
	cache_mark_clean(&c, n);
	CHECK(!cache_node_dirty(&c, n));
	CHECK_EQ(stats(&c).dirty, 0);
	cache_put(&c, n);
	CHECK_EQ(cache_flush(&c), 0);
	CHECK_EQ(t.nflush, 0);

	teardown(&c, &t);
	CHECK_EQ(t.allocs, 4);
}

static void test_refcount(void)
{
	struct cache c;
	struct tctx t;
	struct cache_node *held[3], *n;
	struct cache_stats st;
	uint64_t k;
	int i;

	current_test = "refcount";
	setup(&c, &t, 4);
	for (i = 0; i < 3; i++)
		held[i] = get(&c, i + 1);
	touch(&c, 4);
	CHECK_EQ(stats(&c).nodes, 4);

	/* purge releases only unreferenced nodes */
	CHECK_EQ(cache_purge(&c), 0);
	EXPECT_RELEASED(&t, 4);
	st = stats(&c);
	CHECK_EQ(st.nodes, 3);
	CHECK_EQ(st.referenced, 3);

	/* drop refuses referenced nodes */
	CHECK_EQ(cache_drop(&c, 1), -EBUSY);
	CHECK_EQ(cache_drop(&c, 99), -ENOENT);
	CHECK(incore(&c, 1));

	/* reclaim under a miss-heavy load never touches them */
	for (k = 10; k < 200; k++) {
		touch(&c, k);
		CHECK(unreferenced(&c) <= 4);
	}
	for (i = 0; i < 3; i++) {
		CHECK(incore(&c, i + 1));
		CHECK_EQ(cache_refcount(&c, held[i]), 1);
		CHECK_EQ(tnode_of(held[i])->magic, NODE_MAGIC);
	}
	CHECK_EQ(stats(&c).referenced, 3);

	/* once put they are ordinary */
	for (i = 0; i < 3; i++)
		cache_put(&c, held[i]);
	CHECK_EQ(cache_drop(&c, 1), 0);
	CHECK_EQ(t.release_log[t.nrelease - 1], 1);
	CHECK(!incore(&c, 1));
	CHECK_EQ(cache_drop(&c, 1), -ENOENT);

	/* destroy refuses while a node is referenced, and changes nothing */
	n = get(&c, 2);
	CHECK_EQ(cache_destroy(&c), -EBUSY);
	CHECK_EQ(cache_check(&c), 0);
	CHECK(incore(&c, 2));
	CHECK(atomic_load(&t.releases) < atomic_load(&t.allocs));
	cache_put(&c, n);

	teardown(&c, &t);
}

static void test_lru(void)
{
	struct cache c;
	struct tctx t;
	struct cache_node *n;
	uint64_t k;

	current_test = "lru";
	setup(&c, &t, 4);
	CHECK_EQ(stats(&c).target, 4);
	for (k = 1; k <= 4; k++)
		touch(&c, k);
	touch(&c, 1);			/* LRU order now 2 3 4 1 */
	CHECK_EQ(t.nrelease, 0);

	touch(&c, 5);			/* 3 4 1 5 */
	EXPECT_RELEASED(&t, 2);
	touch(&c, 6);			/* 4 1 5 6 */
	EXPECT_RELEASED(&t, 2, 3);
	touch(&c, 4);			/* hit: 1 5 6 4 */
	touch(&c, 7);			/* 5 6 4 7 */
	EXPECT_RELEASED(&t, 2, 3, 1);

	/* a referenced node is not on the LRU: 6 goes, 5 stays */
	n = get(&c, 5);			/* 6 4 7 */
	touch(&c, 8);			/* 6 4 7 8 */
	EXPECT_RELEASED(&t, 2, 3, 1);
	touch(&c, 9);			/* 4 7 8 9 */
	EXPECT_RELEASED(&t, 2, 3, 1, 6);
	touch(&c, 10);			/* 7 8 9 10 */
	EXPECT_RELEASED(&t, 2, 3, 1, 6, 4);
	/* a put node goes to the MRU end */
	cache_put(&c, n);		/* 7 8 9 10 5: trimmed at put */
	EXPECT_RELEASED(&t, 2, 3, 1, 6, 4, 7);
	touch(&c, 11);			/* 9 10 5 11 */
	EXPECT_RELEASED(&t, 2, 3, 1, 6, 4, 7, 8);
	for (k = 9; k <= 11; k++)
		CHECK(incore(&c, k));
	CHECK(incore(&c, 5));
	CHECK_EQ(stats(&c).nodes, 4);
	CHECK(stats(&c).reclaimed >= 7);

	teardown(&c, &t);
}

static void test_dirty(void)
{
	struct cache c;
	struct tctx t;
	struct cache_node *n, *held[6];
	struct cache_stats st;
	uint64_t k;

	current_test = "dirty";
	setup(&c, &t, 4);
	for (k = 1; k <= 4; k++)
		touch(&c, k);
	n = get(&c, 1);
	cache_mark_dirty(&c, n);
	cache_put(&c, n);		/* 2 3 4 1* */
	n = get(&c, 3);
	cache_mark_dirty(&c, n);
	cache_put(&c, n);		/* 2 4 1* 3* */
	CHECK_EQ(stats(&c).dirty, 2);

	/* clean LRU nodes go without write-back */
	touch(&c, 5);			/* 4 1* 3* 5 */
	touch(&c, 6);			/* 1* 3* 5 6 */
	EXPECT_RELEASED(&t, 2, 4);
	CHECK_EQ(t.nflush, 0);

	/* a dirty LRU node is written back, then reclaimed */
	touch(&c, 7);			/* 3* 5 6 7 */
	EXPECT_FLUSHED(&t, 1);
	EXPECT_RELEASED(&t, 2, 4, 1);
	CHECK_EQ(stats(&c).dirty, 1);
	CHECK_EQ(stats(&c).flushes, 1);

	/* dirty nodes put above the target wait for the next tick */
	for (k = 8; k <= 13; k++)
		held[k - 8] = get(&c, k);	/* 8: writes back and frees 3 */
	EXPECT_FLUSHED(&t, 1, 3);
	EXPECT_RELEASED(&t, 2, 4, 1, 3);
	for (k = 8; k <= 13; k++)
		cache_mark_dirty(&c, held[k - 8]);
	for (k = 13; k >= 8; k--)
		cache_put(&c, held[k - 8]);	/* put trims 5 6 7, clean */
	EXPECT_RELEASED(&t, 2, 4, 1, 3, 5, 6, 7);
	st = stats(&c);				/* 13* 12* 11* 10* 9* 8* */
	CHECK_EQ(st.nodes, 6);
	CHECK_EQ(st.dirty, 6);
	CHECK_EQ(t.nflush, 2);
	cache_tick(&c);				/* back to the target */
	EXPECT_FLUSHED(&t, 1, 3, 12, 13);
	EXPECT_RELEASED(&t, 2, 4, 1, 3, 5, 6, 7, 12, 13);
	CHECK_EQ(stats(&c).nodes, 4);

	/* a batch of write-backs is sorted by key */
	cache_set_max(&c, 1);			/* 11* 10* 9* go */
	EXPECT_FLUSHED(&t, 1, 3, 12, 13, 9, 10, 11);
	st = stats(&c);
	CHECK_EQ(st.nodes, 1);
	CHECK_EQ(st.dirty, 1);
	CHECK_EQ(st.flushes, 7);
	CHECK(incore(&c, 8));

	teardown(&c, &t);
	EXPECT_FLUSHED(&t, 1, 3, 12, 13, 9, 10, 11, 8);
}

static void test_flush_order(void)
{
	static const uint64_t keys[] = { 50, 3, 17, 9, 1000, 2, 1ULL << 40 };
	struct cache c;
	struct tctx t;
	struct cache_node *n;
	size_t i;

	current_test = "flush_order";
	setup(&c, &t, 1000);
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		touch_dirty(&c, keys[i]);
	touch(&c, 5);			/* clean */
	touch_dirty(&c, 6);
	n = get(&c, 6);
	cache_mark_clean(&c, n);	/* cleaned again */
	cache_put(&c, n);
	n = get(&c, 4);			/* dirty and still referenced */
	cache_mark_dirty(&c, n);
	CHECK_EQ(stats(&c).dirty, 8);

	CHECK_EQ(cache_flush(&c), 0);
	EXPECT_FLUSHED(&t, 2, 3, 4, 9, 17, 50, 1000, 1ULL << 40);
	CHECK_EQ(stats(&c).dirty, 0);
	CHECK_EQ(stats(&c).flushes, 8);
	CHECK(!cache_node_dirty(&c, n));
	CHECK_EQ(cache_refcount(&c, n), 1);
	/* write-back keeps the nodes */
	CHECK_EQ(stats(&c).nodes, 10);
	CHECK_EQ(t.nrelease, 0);

	/* nothing dirty: nothing written */
	CHECK_EQ(cache_flush(&c), 0);
	CHECK_EQ(t.nflush, 8);

	/* marked dirty during its own write-back: stays dirty */
	t.redirty_key_set = 1;
	t.redirty_key = 4;
	cache_mark_dirty(&c, n);
	touch_dirty(&c, 3);
	CHECK_EQ(cache_flush(&c), 0);
	EXPECT_FLUSHED(&t, 2, 3, 4, 9, 17, 50, 1000, 1ULL << 40, 3, 4);
	CHECK(cache_node_dirty(&c, n));
	CHECK_EQ(stats(&c).dirty, 1);
	t.redirty_key_set = 0;
	CHECK_EQ(cache_flush(&c), 0);
	CHECK(!cache_node_dirty(&c, n));
	cache_put(&c, n);

	/* drop discards a dirty node without writing it back */
	touch_dirty(&c, 17);
	CHECK_EQ(stats(&c).dirty, 1);
	CHECK_EQ(cache_drop(&c, 17), 0);
	CHECK_EQ(stats(&c).dirty, 0);
	CHECK_EQ(t.nflush, 11);
	CHECK_EQ(cache_flush(&c), 0);
	CHECK_EQ(t.nflush, 11);

	/* destroy writes back what is dirty */
	touch_dirty(&c, 9);
	touch_dirty(&c, 2);
	CHECK_EQ(cache_destroy(&c), 0);
	CHECK_EQ(t.nflush, 13);
	CHECK_EQ(t.flush_log[11], 2);
	CHECK_EQ(t.flush_log[12], 9);
	CHECK_EQ(t.allocs, t.releases);
}

static void test_flush_error(void)
{
	struct cache c;
	struct tctx t;
	struct cache_node *n;
	struct cache_stats st;

	current_test = "flush_error";
	setup(&c, &t, 4);
	touch_dirty(&c, 1);
	touch(&c, 2);
	touch(&c, 3);
	touch_dirty(&c, 4);		/* 1* 2 3 4* */
	t.fail_key_set = 1;
	t.fail_key = 1;

	/*
	 * Reclaim tries 1, fails, and moves on to a clean node; 1 stays dirty
	 * and is not retried in the same pass.
	 */
	touch(&c, 5);			/* 3 4* 1* 5 */
	EXPECT_FLUSHED(&t, 1);
	EXPECT_RELEASED(&t, 2);
	/* the failed node went to the MRU end: not retried first */
	touch(&c, 6);			/* 4* 1* 5 6 */
	EXPECT_FLUSHED(&t, 1);
	EXPECT_RELEASED(&t, 2, 3);
	st = stats(&c);
	CHECK_EQ(st.flush_errors, 1);
	CHECK_EQ(st.flushes, 0);
	CHECK_EQ(st.dirty, 2);
	CHECK(incore(&c, 1));
	n = get(&c, 1);
	CHECK(cache_node_dirty(&c, n));
	cache_put(&c, n);

	/* cache_flush tries all, returns the error, node stays dirty */
	CHECK_EQ(cache_flush(&c), -EIO);
	EXPECT_FLUSHED(&t, 1, 1, 4);
	st = stats(&c);
	CHECK_EQ(st.flush_errors, 2);
	CHECK_EQ(st.flushes, 1);
	CHECK_EQ(st.dirty, 1);

	/* purge keeps what it cannot write back */
	CHECK_EQ(cache_purge(&c), -EIO);
	CHECK_EQ(stats(&c).flush_errors, 3);
	st = stats(&c);
	CHECK_EQ(st.nodes, 1);
	CHECK_EQ(st.dirty, 1);
	CHECK(incore(&c, 1));

	/* the device recovers */
	t.fail_key_set = 0;
	CHECK_EQ(cache_flush(&c), 0);
	CHECK_EQ(stats(&c).dirty, 0);
	CHECK_EQ(cache_purge(&c), 0);
	CHECK_EQ(stats(&c).nodes, 0);
	CHECK_EQ(t.allocs, t.releases);

	/* destroy reports the error but still releases everything */
	touch_dirty(&c, 7);
	touch_dirty(&c, 8);
	t.fail_key_set = 1;
	t.fail_key = 7;
	CHECK_EQ(cache_destroy(&c), -EIO);
	CHECK_EQ(t.allocs, t.releases);
	CHECK_EQ(t.flush_log[t.nflush - 1], 8);
	CHECK_EQ(t.bad, 0);
}

/* A node dirtied again during its reclaim write-back must not be freed. */
static void test_redirty_reclaim(void)
{
	struct cache c;
	struct tctx t;

	current_test = "redirty_reclaim";
	setup(&c, &t, 4);
	touch_dirty(&c, 1);
	touch(&c, 2);
	touch(&c, 3);
	touch(&c, 4);			/* 1* 2 3 4 */
	t.redirty_key_set = 1;
	t.redirty_key = 1;
	touch(&c, 5);			/* 1 kept, 2 goes: 3 4 1* 5 */
	EXPECT_FLUSHED(&t, 1);
	EXPECT_RELEASED(&t, 2);
	CHECK_EQ(stats(&c).dirty, 1);
	CHECK_EQ(stats(&c).flushes, 1);
	touch(&c, 6);			/* 4 1* 5 6 */
	EXPECT_FLUSHED(&t, 1);
	EXPECT_RELEASED(&t, 2, 3);
	CHECK_EQ(stats(&c).nodes, 4);
	t.redirty_key_set = 0;
	teardown(&c, &t);
	EXPECT_FLUSHED(&t, 1, 1);
}

/* Fill a cache of max @max with a miss-only workload until target == max. */
static void grow_to_max(struct cache *c, uint64_t *next_key, size_t max)
{
	struct cache_stats st;
	size_t prev = stats(c).target;
	int i;

	for (i = 0; i < 100000 && stats(c).target < max; i++) {
		touch(c, (*next_key)++);
		st = stats(c);
		CHECK(st.target <= st.max_nodes);
		CHECK(st.nodes - st.referenced <= st.target);
		/* growth is gradual: at most a doubling at a time */
		CHECK(st.target == prev || st.target == 2 * prev ||
		      (st.target == max && st.target < 2 * prev));
		prev = st.target;
	}
	CHECK_EQ(stats(c).target, max);
	/* and then fill it */
	while (stats(c).nodes < max)
		touch(c, (*next_key)++);
}

static void test_growth(void)
{
	struct cache c;
	struct tctx t;
	struct cache_node **held;
	struct cache_stats st;
	uint64_t key = 0;
	size_t prev, steps = 0;
	int i;

	current_test = "growth";
	setup(&c, &t, 1000);

	/* the cache fills to its initial target before it grows */
	for (i = 0; i < CACHE_MIN_TARGET + 4; i++)
		touch(&c, key++);
	st = stats(&c);
	CHECK_EQ(st.target, CACHE_MIN_TARGET);
	CHECK_EQ(st.nodes, CACHE_MIN_TARGET);

	/* misses at the target grow it, never beyond max_nodes */
	prev = stats(&c).target;
	for (i = 0; i < 20000; i++) {
		touch(&c, key++);
		st = stats(&c);
		CHECK(st.target <= 1000);
		CHECK(st.nodes - st.referenced <= st.target);
		CHECK(st.nodes <= 1000);
		if (st.target != prev) {
			CHECK(st.target == 2 * prev || st.target == 1000);
			steps++;
		}
		prev = st.target;
	}
	CHECK_EQ(stats(&c).target, 1000);
	CHECK_EQ(stats(&c).nodes, 1000);
	CHECK(steps >= 5);		/* 16 32 64 128 256 512 1000 */
	st = stats(&c);
	CHECK_EQ(st.misses, key);
	CHECK_EQ(st.hits, 0);
	CHECK(st.reclaimed == key - 1000);
	CHECK(st.buckets >= 512);
	teardown(&c, &t);

	/* a working set that fits does not grow the target */
	setup(&c, &t, 1000);
	for (i = 0; i < 20000; i++)
		touch(&c, i % 10);
	st = stats(&c);
	CHECK_EQ(st.target, CACHE_MIN_TARGET);
	CHECK_EQ(st.misses, 10);
	CHECK_EQ(st.hits, 19990);
	teardown(&c, &t);

	/* referenced nodes may exceed max_nodes; get never fails */
	setup(&c, &t, 50);
	held = calloc(500, sizeof(*held));
	CHECK(held != NULL);
	for (i = 0; i < 500; i++)
		held[i] = get(&c, i);
	st = stats(&c);
	CHECK_EQ(st.nodes, 500);
	CHECK_EQ(st.referenced, 500);
	CHECK_EQ(cache_check(&c), 0);
	for (i = 0; i < 500; i++) {
		cache_put(&c, held[i]);
		CHECK(unreferenced(&c) <= stats(&c).target);
	}
	CHECK(stats(&c).nodes <= 50);
	/* the most recently put are the ones kept */
	CHECK(incore(&c, 499));
	CHECK(!incore(&c, 0));
	free(held);
	teardown(&c, &t);
}

static void test_shrink(void)
{
	struct cache c;
	struct tctx t;
	struct cache_stats st;
	uint64_t key = 0, k;
	size_t before;
	int i;

	current_test = "shrink";
	setup(&c, &t, 1000);
	grow_to_max(&c, &key, 1000);
	/* the 100 least recently used nodes are dirty */
	for (k = key - 1000; k < key - 900; k++)
		touch_dirty(&c, k);
	for (k = key - 900; k < key; k++)
		touch(&c, k);
	CHECK_EQ(stats(&c).dirty, 100);
	CHECK(stats(&c).buckets >= 512);

	/* a busy cache keeps its size */
	for (i = 0; i < 5; i++) {
		for (k = key - 250; k < key; k++)
			touch(&c, k);
		cache_tick(&c);
		CHECK_EQ(stats(&c).target, 1000);
	}
	CHECK_EQ(stats(&c).nodes, 1000);

	/* one quiet tick is not enough; then each quiet tick halves */
	cache_tick(&c);
	CHECK_EQ(stats(&c).target, 1000);
	before = 1000;
	for (i = 0; i < 20; i++) {
		cache_tick(&c);
		st = stats(&c);
		CHECK(st.target == before / 2 || st.target == CACHE_MIN_TARGET);
		CHECK(st.nodes <= st.target);
		CHECK_EQ(cache_check(&c), 0);
		before = st.target;
	}
	st = stats(&c);
	CHECK_EQ(st.target, CACHE_MIN_TARGET);
	CHECK_EQ(st.nodes, CACHE_MIN_TARGET);
	/* the dirty nodes were written back before being reclaimed */
	CHECK_EQ(st.dirty, 0);
	CHECK_EQ(st.flushes, 100);
	CHECK_EQ(t.nflush, 100);
	for (i = 1; i < 100; i++)
		CHECK(t.flush_log[i - 1] < t.flush_log[i]);
	/* the most recently used survive */
	for (k = key - CACHE_MIN_TARGET; k < key; k++)
		CHECK(incore(&c, k));
	/* the hash table shrank too */
	CHECK(st.buckets <= 64);

	/* and it can grow again */
	grow_to_max(&c, &key, 1000);
	teardown(&c, &t);
}

static void test_set_max(void)
{
	struct cache c;
	struct tctx t;
	struct cache_node *n;
	struct cache_stats st;
	uint64_t key = 0, k, pinned;

	current_test = "set_max";
	setup(&c, &t, 1000);
	grow_to_max(&c, &key, 1000);
	for (k = key - 1000; k < key; k += 10)
		touch_dirty(&c, k);
	pinned = key - 1000 + 1;
	n = get(&c, pinned);	/* the LRU end, but referenced */
	CHECK_EQ(stats(&c).dirty, 100);

	cache_set_max(&c, 100);
	st = stats(&c);
	CHECK_EQ(st.max_nodes, 100);
	CHECK_EQ(st.target, 100);
	CHECK_EQ(st.nodes - st.referenced, 100);
	CHECK_EQ(st.referenced, 1);
	CHECK(incore(&c, pinned));
	/* the dirty nodes are the most recently used 100: all kept */
	CHECK_EQ(st.dirty, 100);
	CHECK_EQ(t.nflush, 0);

	cache_set_max(&c, 5);
	st = stats(&c);
	CHECK_EQ(st.target, 5);
	CHECK_EQ(st.nodes - st.referenced, 5);
	CHECK_EQ(t.nflush, 95);
	CHECK_EQ(st.dirty, 5);
	/* the target never exceeds max_nodes, even under misses */
	for (k = 0; k < 100; k++) {
		touch(&c, key++);
		CHECK(unreferenced(&c) <= 5);
		CHECK_EQ(stats(&c).target, 5);
	}

	/* raising max_nodes does not jump the target to it */
	cache_set_max(&c, 2000);
	st = stats(&c);
	CHECK_EQ(st.max_nodes, 2000);
	CHECK_EQ(st.target, CACHE_MIN_TARGET);

	/* max 0: only referenced nodes are kept */
	cache_set_max(&c, 0);
	CHECK_EQ(stats(&c).target, 0);
	CHECK_EQ(unreferenced(&c), 0);
	touch(&c, 12345);
	CHECK_EQ(unreferenced(&c), 0);
	CHECK(incore(&c, pinned));
	cache_put(&c, n);
	CHECK_EQ(stats(&c).nodes, 0);
	touch_dirty(&c, 7);		/* dirty: waits for the tick */
	CHECK_EQ(stats(&c).nodes, 1);
	cache_tick(&c);
	CHECK_EQ(stats(&c).nodes, 0);
	CHECK_EQ(t.flush_log[t.nflush - 1], 7);
	teardown(&c, &t);
}

struct walk_state {
	uint64_t keys[256];
	size_t count;
	size_t stop_after;
	int probe;
};

static int walk_fn(struct cache *c, struct cache_node *n, void *arg)
{
	struct walk_state *w = arg;
	struct cache_node *m;

	if (tnode_of(n)->magic != NODE_MAGIC || w->count >= 256)
		return -EUCLEAN;
	w->keys[w->count++] = n->key;
	if (w->probe) {
		/* the walk pins nodes: they cannot be dropped under it */
		if (cache_drop(c, n->key) != -EBUSY)
			return -EINVAL;
		/* calling back into the cache is fine */
		m = cache_get(c, 1000 + n->key, 0, NULL);
		if (!m)
			return -ENOMEM;
		cache_put(c, m);
	}
	if (w->stop_after && w->count == w->stop_after)
		return 42;
	return 0;
}

static void test_walk(void)
{
	struct cache c;
	struct tctx t;
	struct walk_state w;
	struct cache_node *held[10];
	uint64_t k;
	size_t i;

	current_test = "walk";
	setup(&c, &t, 100);
	memset(&w, 0, sizeof(w));
	CHECK_EQ(cache_walk(&c, walk_fn, &w), 0);
	CHECK_EQ(w.count, 0);

	/* 16 nodes: 10 referenced, 6 not */
	for (k = 16; k > 0; k--)
		touch(&c, k * 7);
	for (i = 0; i < 10; i++)
		held[i] = get(&c, (i + 1) * 7);
	touch_dirty(&c, 70);
	CHECK_EQ(stats(&c).nodes, 16);

	memset(&w, 0, sizeof(w));
	CHECK_EQ(cache_walk(&c, walk_fn, &w), 0);
	CHECK_EQ(w.count, 16);
	for (i = 0; i < 16; i++)
		CHECK_EQ(w.keys[i], (i + 1) * 7);

	/* a non-zero return stops the walk and is returned */
	memset(&w, 0, sizeof(w));
	w.stop_after = 5;
	CHECK_EQ(cache_walk(&c, walk_fn, &w), 42);
	CHECK_EQ(w.count, 5);

	/*
	 * The callback may use the cache.  Its misses reclaim, but not the
	 * pinned nodes; nodes it adds are not visited.
	 */
	memset(&w, 0, sizeof(w));
	w.probe = 1;
	CHECK_EQ(cache_walk(&c, walk_fn, &w), 0);
	CHECK_EQ(w.count, 16);
	CHECK_EQ(cache_check(&c), 0);
	CHECK_EQ(stats(&c).dirty, 1);
	CHECK_EQ(t.nflush, 0);
	for (k = 1; k <= 16; k++)
		CHECK(incore(&c, k * 7));

	/* the pins are gone afterwards */
	CHECK_EQ(cache_drop(&c, 14 * 7), 0);
	cache_put(&c, held[0]);
	CHECK_EQ(cache_drop(&c, 7), 0);
	for (i = 1; i < 10; i++)
		cache_put(&c, held[i]);
	teardown(&c, &t);
}

static void test_hash_resize(void)
{
	const size_t nkeys = 20000;
	struct cache_node **held;
	struct cache c;
	struct tctx t;
	struct cache_stats st;
	size_t i, j;
	int ticks;

	current_test = "hash_resize";
	setup(&c, &t, 100000);
	held = calloc(nkeys, sizeof(*held));
	CHECK(held != NULL);
	/* sequential keys, and keys in a high range with a large stride */
	for (i = 0; i < nkeys; i++) {
		uint64_t key = i & 1 ? (i << 32) | 0xffff : i;

		held[i] = get(&c, key);
		/* lookups stay right while buckets move */
		if (i % 997 == 0) {
			CHECK_EQ(cache_check(&c), 0);
			for (j = 0; j <= i; j += 13)
				CHECK(cache_get(&c, held[j]->key,
						CACHE_GET_INCORE, NULL) ==
				      held[j]);
			for (j = 0; j <= i; j += 13)
				cache_put(&c, held[j]);
		}
	}
	st = stats(&c);
	CHECK_EQ(st.nodes, nkeys);
	CHECK(st.buckets >= nkeys / 2);
	CHECK_EQ(cache_check(&c), 0);

	for (i = 0; i < nkeys; i++)
		cache_put(&c, held[i]);
	CHECK(stats(&c).nodes <= CACHE_MIN_TARGET);

	/* an idle cache gives back its table over a few ticks */
	for (ticks = 0; ticks < 20 && stats(&c).buckets > 64; ticks++) {
		cache_tick(&c);
		CHECK_EQ(cache_check(&c), 0);
	}
	CHECK(stats(&c).buckets <= 64);
	free(held);
	teardown(&c, &t);
}

/* ---- multi-threaded tests -------------------------------------------- */

struct race_arg {
	struct cache *c;
	uint64_t key;
	struct cache_node *n;
};

static void *race_get(void *p)
{
	struct race_arg *a = p;

	a->n = cache_get(a->c, a->key, 0, NULL);
	return NULL;
}

static void test_alloc_race(void)
{
	struct cache c;
	struct tctx t;
	pthread_barrier_t barrier;
	struct race_arg a[2];
	pthread_t th[2];
	int i;

	current_test = "alloc_race";
	setup(&c, &t, 100);
	/* both threads are inside alloc for key 42 at the same time */
	CHECK_EQ(pthread_barrier_init(&barrier, NULL, 2), 0);
	t.barrier = &barrier;
	t.block_key = 42;
	atomic_store(&t.block_calls, 2);
	for (i = 0; i < 2; i++) {
		a[i].c = &c;
		a[i].key = 42;
		CHECK_EQ(pthread_create(&th[i], NULL, race_get, &a[i]), 0);
	}
	for (i = 0; i < 2; i++)
		CHECK_EQ(pthread_join(th[i], NULL), 0);
	CHECK(a[0].n != NULL);
	CHECK(a[0].n == a[1].n);
	CHECK_EQ(cache_refcount(&c, a[0].n), 2);
	CHECK_EQ(t.allocs, 2);
	CHECK_EQ(t.releases, 1);
	CHECK_EQ(stats(&c).nodes, 1);
	CHECK_EQ(stats(&c).misses, 2);
	cache_put(&c, a[0].n);
	cache_put(&c, a[1].n);
	pthread_barrier_destroy(&barrier);
	teardown(&c, &t);
}

/*
 * A node is created, dirtied, written back and evicted while another
 * thread's alloc of the same key is still reading: that read may predate
 * the write-back, so the cache must discard it and allocate again.
 */
static void test_stale_alloc(void)
{
	struct cache c;
	struct tctx t;
	sem_t in_alloc, go;
	struct race_arg a;
	pthread_t th;

	current_test = "stale_alloc";
	setup(&c, &t, 100);
	CHECK_EQ(sem_init(&in_alloc, 0, 0), 0);
	CHECK_EQ(sem_init(&go, 0, 0), 0);
	t.in_alloc = &in_alloc;
	t.go = &go;
	t.block_key = 7;
	atomic_store(&t.block_calls, 1);
	a.c = &c;
	a.key = 7;
	CHECK_EQ(pthread_create(&th, NULL, race_get, &a), 0);
	CHECK_EQ(sem_wait(&in_alloc), 0);

	touch_dirty(&c, 7);		/* alloc #2 */
	CHECK_EQ(cache_purge(&c), 0);	/* written back and evicted */
	EXPECT_FLUSHED(&t, 7);
	CHECK(!incore(&c, 7));

	CHECK_EQ(sem_post(&go), 0);
	CHECK_EQ(pthread_join(th, NULL), 0);
	CHECK(a.n != NULL);
	CHECK_EQ(tnode_of(a.n)->serial, 3);	/* read again after eviction */
	CHECK_EQ(t.allocs, 3);
	CHECK_EQ(t.releases, 2);
	cache_put(&c, a.n);
	sem_destroy(&in_alloc);
	sem_destroy(&go);
	teardown(&c, &t);
}

#define STRESS_THREADS	8
#define STRESS_HOLD	4

struct stress_arg {
	struct cache *c;
	unsigned int id;
	unsigned long ops;
	uint64_t keys;			/* key space */
	size_t max_range;		/* cache_set_max(2 .. max_range + 1) */
	atomic_int *running;
	unsigned long failures;		/* checks failed in this thread */
};

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static int stress_walk_fn(struct cache *c, struct cache_node *n, void *arg)
{
	struct stress_arg *a = arg;
	struct tnode *tn = tnode_of(n);

	if (tn->magic != NODE_MAGIC || tn->value != value_of(n->key) ||
	    n->key >= a->keys)
		a->failures++;
	return 0;
}

/* Count the references the test holds, so release can check for none. */
static void stress_use(struct cache_node *n)
{
	atomic_fetch_add(&tnode_of(n)->users, 1);
}

static void stress_put(struct cache *c, struct cache_node *n)
{
	atomic_fetch_sub(&tnode_of(n)->users, 1);
	cache_put(c, n);
}

/* A random mix of every operation, checking what each returns. */
static void *stress_thread(void *p)
{
	struct stress_arg *a = p;
	struct cache *c = a->c;
	struct cache_node *held[STRESS_HOLD] = { NULL };
	struct cache_node *n;
	uint64_t rng = 0x9e3779b97f4a7c15ULL * (a->id + 1);
	unsigned long i;
	unsigned int op, slot;
	int err;

	for (i = 0; i < a->ops; i++) {
		uint64_t r = rng_next(&rng);
		uint64_t key = (r >> 8) % a->keys;

		op = r % 1000;
		slot = (r >> 20) % STRESS_HOLD;
		if (op < 550) {
			/* get, use, maybe dirty, put */
			n = cache_get(c, key, 0, NULL);
			if (!n) {
				if (errno != ENOMEM)
					a->failures++;
				continue;
			}
			stress_use(n);
			if (n->key != key || tnode_of(n)->magic != NODE_MAGIC ||
			    tnode_of(n)->value != value_of(key))
				a->failures++;
			if (op < 150)
				cache_mark_dirty(c, n);
			else if (op < 160)
				cache_mark_clean(c, n);
			if (cache_refcount(c, n) == 0)
				a->failures++;
			stress_put(c, n);
		} else if (op < 700) {
			/* hold a node for a while */
			if (held[slot]) {
				if (op < 620)
					cache_mark_dirty(c, held[slot]);
				stress_put(c, held[slot]);
				held[slot] = NULL;
			} else {
				n = cache_get(c, key, 0, NULL);
				if (!n)
					continue;
				stress_use(n);
				if (n->key != key)
					a->failures++;
				held[slot] = n;
				if (op < 640) {
					/* a second reference, put at once */
					cache_hold(c, n);
					stress_use(n);
					stress_put(c, n);
				}
			}
		} else if (op < 800) {
			n = cache_get(c, key, CACHE_GET_INCORE, NULL);
			if (!n) {
				if (errno != ENOENT)
					a->failures++;
				continue;
			}
			stress_use(n);
			if (n->key != key ||
			    tnode_of(n)->value != value_of(key))
				a->failures++;
			stress_put(c, n);
		} else if (op < 990) {
			err = cache_drop(c, key);
			if (err && err != -ENOENT && err != -EBUSY)
				a->failures++;
		} else if (op < 993) {
			err = cache_flush(c);
			if (err && err != -EIO)
				a->failures++;
		} else if (op < 995) {
			if (cache_walk(c, stress_walk_fn, a))
				a->failures++;
		} else if (op < 997) {
			cache_tick(c);
		} else if (op < 998) {
			err = cache_purge(c);
			if (err && err != -EIO)
				a->failures++;
		} else {
			cache_set_max(c, 2 + (r >> 40) % a->max_range);
		}
	}
	for (slot = 0; slot < STRESS_HOLD; slot++)
		if (held[slot])
			stress_put(c, held[slot]);
	atomic_fetch_sub(a->running, 1);
	return NULL;
}

/*
 * @nthreads threads run @ops random operations each on @keys keys, with
 * write-back and allocation failures injected, then the cache must be
 * consistent and release everything it allocated.
 */
static void stress(const char *name, unsigned long ops, uint64_t keys,
		   size_t max, size_t *max_buckets)
{
	struct stress_arg args[STRESS_THREADS];
	pthread_t th[STRESS_THREADS];
	struct cache_stats st, final;
	struct timespec t0, t1, nap = { 0, 1000000 };
	atomic_int running;
	struct cache c;
	struct tctx t;
	unsigned int i;

	current_test = name;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	setup(&c, &t, max);
	t.threaded = 1;
	t.fail_every = 23;		/* write-back errors */
	t.alloc_fail_every = 97;	/* allocation failures */
	atomic_store(&running, STRESS_THREADS);
	for (i = 0; i < STRESS_THREADS; i++) {
		args[i].c = &c;
		args[i].id = i;
		args[i].ops = ops;
		args[i].keys = keys;
		args[i].max_range = max * 2;
		args[i].running = &running;
		args[i].failures = 0;
		CHECK_EQ(pthread_create(&th[i], NULL, stress_thread, &args[i]),
			 0);
	}
	*max_buckets = 0;
	while (atomic_load(&running)) {
		st = stats(&c);
		if (st.buckets > *max_buckets)
			*max_buckets = st.buckets;
		nanosleep(&nap, NULL);
	}
	for (i = 0; i < STRESS_THREADS; i++) {
		CHECK_EQ(pthread_join(th[i], NULL), 0);
		CHECK_EQ(args[i].failures, 0);
	}

	CHECK_EQ(cache_check(&c), 0);
	st = stats(&c);
	CHECK_EQ(st.referenced, 0);
	CHECK_EQ(st.nodes, atomic_load(&t.allocs) - atomic_load(&t.releases));
	CHECK(st.nodes <= keys);
	CHECK(st.hits > 0 && st.misses > 0 && st.reclaimed > 0);
	CHECK(st.flushes > 0 && st.flush_errors > 0);
	CHECK_EQ(atomic_load(&t.bad), 0);
	CHECK_EQ(atomic_load(&t.flush_overlap), 0);

	/* quiesced: the bounds hold again */
	t.fail_every = 0;
	cache_set_max(&c, max);
	cache_tick(&c);
	final = stats(&c);
	CHECK(final.target <= max);
	CHECK(final.nodes <= final.target);
	CHECK_EQ(cache_flush(&c), 0);
	CHECK_EQ(stats(&c).dirty, 0);
	teardown(&c, &t);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%s: %d threads x %lu ops on %llu keys: %llu hits, %llu misses, "
	       "%llu reclaimed, %llu flushes, %llu flush errors, "
	       "up to %zu buckets, %.1f s\n", name, STRESS_THREADS, ops,
	       (unsigned long long)keys, (unsigned long long)st.hits,
	       (unsigned long long)st.misses,
	       (unsigned long long)st.reclaimed,
	       (unsigned long long)st.flushes,
	       (unsigned long long)st.flush_errors, *max_buckets,
	       (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
}

static void test_stress(void)
{
	size_t buckets;

	/* a small hot key space: contention on the same nodes */
	stress("stress_hot", 200000, 64, 16, &buckets);
	/* a large one: the hash table grows and shrinks under load */
	stress("stress_wide", 50000, 20000, 4096, &buckets);
	CHECK(buckets > 64);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_basic();
	test_refcount();
	test_lru();
	test_dirty();
	test_flush_order();
	test_flush_error();
	test_redirty_reclaim();
	test_growth();
	test_shrink();
	test_set_max();
	test_walk();
	test_hash_resize();
	test_alloc_race();
	test_stale_alloc();
	test_stress();
	printf("test_cache: all tests passed\n");
	return 0;
}

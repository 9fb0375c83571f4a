/*
 * cache.h - a generic, thread-safe hash cache of reference-counted nodes.
 *
 * The user embeds a struct cache_node in its own structure and supplies
 * callbacks that create a node on a miss, write back a dirty node and free
 * a node that has left the cache.  The cache looks nodes up by a 64-bit
 * key, counts references, keeps unreferenced nodes in least recently used
 * order and reclaims them when it holds more than its current target.
 *
 * Lifetime of a node
 *   cache_get() returns a node with one more reference, creating it with
 *   ops->alloc() on a miss.  While its reference count is above zero a
 *   node is never reclaimed, dropped or released.  cache_put() drops a
 *   reference; at zero the node goes to the most recently used end of the
 *   reclaimable list.  Reclaim takes the least recently used unreferenced
 *   nodes first, writing dirty ones back with ops->flush() before freeing
 *   them with ops->release().  A cache_get() never fails because the cache
 *   is full: referenced nodes may exceed max_nodes.
 *
 * Size
 *   max_nodes bounds the number of unreferenced nodes the cache keeps.
 *   The cache keeps at most "target" of them, target <= max_nodes.  The
 *   target starts at CACHE_MIN_TARGET (or max_nodes if smaller) and
 *   doubles, up to max_nodes, each time target/2 misses have happened
 *   while the cache held target unreferenced nodes.  cache_tick(), which
 *   the host calls about once a second, halves it (down to the starting
 *   value) after CACHE_IDLE_TICKS consecutive ticks in which fewer than
 *   target/8 lookups were made, and reclaims the excess.  Unreferenced
 *   clean nodes above the target are freed when they are put; dirty ones
 *   wait for the next miss, tick, flush or purge.
 *   The hash table grows and shrinks with the number of nodes; buckets
 *   move to a resized table a few at a time on each lookup, so there is
 *   no long pause.
 *
 * Dirty nodes
 *   cache_mark_dirty() flags a node for write-back.  ops->flush() is
 *   called without the cache lock, with the node pinned so it cannot be
 *   reclaimed, dropped or released meanwhile, and never for the same node
 *   from two threads at once.  If the node is marked dirty again while its
 *   write-back runs it stays dirty; if the write-back fails it stays dirty
 *   and flush_errors is counted.  Reclaim writes dirty nodes back in
 *   batches sorted by key, in LRU order; a node it cannot write back (or
 *   that is dirtied again meanwhile) is kept and moved to the MRU end, and
 *   the rest of that pass only takes clean nodes.  A cache without
 *   ops->flush treats every write-back as successful.
 *
 * Locking rules
 *   - One internal mutex protects every field of struct cache and the
 *     private fields of every node; it is never held while a callback runs.
 *   - Callbacks may therefore call back into the cache, with two
 *     exceptions: ops->release() gets a node that has already left the
 *     cache and must not pass it to any cache function, and ops->flush()
 *     must not call cache_flush(), cache_purge() or cache_destroy() on the
 *     same cache (they would wait for the write-back that is running).
 *   - The node's key is set before the node becomes visible and is never
 *     changed; it may be read without the lock.  The user's own data in a
 *     node is not protected by the cache: serialise it yourself.
 *   - A caller may only use a node (hold, put, mark dirty/clean, read its
 *     data) while it holds a reference to it; a cache_walk() callback may
 *     also use the node it is given, except cache_hold()/cache_put().
 *   - cache_get(), cache_put(), cache_flush(), cache_purge(),
 *     cache_drop(), cache_walk(), cache_set_max() and cache_tick() may
 *     call callbacks, so do not call them while holding a lock that a
 *     callback takes.
 *   - cache_init() and cache_destroy() must not race with any other call.
 *
 * Return values follow the kernel convention: 0 or a negative errno.
 */
#ifndef FUSE4FS_SUPPORT_CACHE_H
#define FUSE4FS_SUPPORT_CACHE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "support/list.h"

struct cache;

struct cache_node {			/* embed in your own struct */
	struct list_head hash_link;	/* private */
	struct list_head mru_link;	/* private */
	uint64_t key;
	unsigned int refcount;		/* private */
	unsigned int flags;		/* private (dirty bit etc.) */
	unsigned int pins;		/* private: flush/walk holds */
	struct list_head dirty_link;	/* private */
};

struct cache_ops {
	/*
	 * Create a node for @key on a miss; NULL (errno set) on failure.
	 * Called WITHOUT the cache lock held (it may do I/O).  The cache sets
	 * the node's key itself.  If two threads race to create the same
	 * key, one result is released and both get the same node.  If a
	 * node for the key leaves the cache while alloc runs, the result is
	 * released and alloc called again: what it read may predate that
	 * node's write-back.
	 */
	struct cache_node *(*alloc)(struct cache *c, uint64_t key, void *arg);
	/*
	 * Optional: write back a dirty node; 0 or -errno.  Called without the
	 * cache lock, with the node pinned.  On error the node stays dirty.
	 */
	int (*flush)(struct cache *c, struct cache_node *n);
	/* Free a node that has left the cache.  Called without the lock. */
	void (*release)(struct cache *c, struct cache_node *n);
};

struct cache_stats {
	uint64_t hits;		/* lookups that found the node in core */
	uint64_t misses;	/* lookups that did not */
	uint64_t reclaimed;	/* nodes freed to stay within the target */
	uint64_t flushes;	/* successful write-backs */
	uint64_t flush_errors;	/* failed write-backs */
	size_t nodes;		/* nodes in the cache */
	size_t referenced;	/* of which with a reference count above 0 */
	size_t dirty;		/* of which dirty */
	size_t buckets;		/* hash table size */
	size_t target;		/* unreferenced nodes kept at most */
	size_t max_nodes;	/* upper bound of target */
};

/* A hash table; buckets are initialised on first use (next == NULL). */
struct cache_table {
	struct list_head *buckets;
	size_t size;			/* a power of two, or 0 */
};

/* The fields are private; the definition is here so it can be embedded. */
struct cache {
	pthread_mutex_t lock;
	pthread_cond_t flush_done;	/* a node's write-back finished */
	const struct cache_ops *ops;
	void *priv;
	/* tab[0] is the table; tab[1] the one being moved to, if any */
	struct cache_table tab[2];
	size_t rehash_next;		/* next tab[0] bucket to move */
	struct list_head lru;		/* unreferenced nodes, LRU first */
	struct list_head dirty_list;	/* dirty nodes, in no order */
	struct list_head pending;	/* allocations in progress */
	size_t nodes;
	size_t referenced;
	size_t dirty;
	size_t max_nodes;
	size_t target;
	size_t pressure;		/* misses at target since growth */
	unsigned int idle_ticks;
	uint64_t last_lookups;		/* hits + misses at the last tick */
	uint64_t hits;
	uint64_t misses;
	uint64_t reclaimed;
	uint64_t flushes;
	uint64_t flush_errors;
};

/* Smallest target the cache shrinks to (unless max_nodes is smaller). */
#define CACHE_MIN_TARGET	16
/* Quiet ticks in a row before the target starts to shrink. */
#define CACHE_IDLE_TICKS	2

/*
 * Set up @c to keep at most @max_nodes unreferenced nodes; @ops must
 * outlive the cache and provide alloc and release.  0, -EINVAL or -ENOMEM.
 */
int cache_init(struct cache *c, const struct cache_ops *ops, size_t max_nodes,
	       void *priv);
void *cache_priv(struct cache *c);
/*
 * Flush dirty nodes and release every node; returns the first flush error
 * (nodes are released even if their write-back failed).  All nodes must
 * be unreferenced: if one is not, nothing is done and -EBUSY is returned.
 */
int cache_destroy(struct cache *c);

/* cache_get() flag: only return a node already in core; never alloc. */
#define CACHE_GET_INCORE	0x1
/*
 * Return the node for @key with one more reference, creating it with
 * ops->alloc(c, key, arg) on a miss.  NULL with errno set on failure:
 * ENOENT for a miss with CACHE_GET_INCORE, else alloc's errno.  Every
 * call counts as a hit or a miss (CACHE_GET_INCORE misses included; only
 * the others can grow the target).  A miss may reclaim, and so write back
 * dirty nodes, before calling alloc.
 */
struct cache_node *cache_get(struct cache *c, uint64_t key, int flags,
			     void *arg);
/* Take another reference on a node you already hold. */
void cache_hold(struct cache *c, struct cache_node *n);
/* Drop a reference; at 0 the node becomes reclaimable (MRU end). */
void cache_put(struct cache *c, struct cache_node *n);
/* The node's current user reference count. */
unsigned int cache_refcount(struct cache *c, struct cache_node *n);

void cache_mark_dirty(struct cache *c, struct cache_node *n);
void cache_mark_clean(struct cache *c, struct cache_node *n);
int cache_node_dirty(struct cache *c, struct cache_node *n);

/*
 * Write back every node that is dirty when the call starts, in ascending
 * key order.  Waits for write-backs of those nodes already running in
 * other threads.  Tries all; returns the first error, -ENOMEM if the list
 * of keys cannot be allocated.
 */
int cache_flush(struct cache *c);
/*
 * Remove an unreferenced node WITHOUT writing it back (discard).  0,
 * -ENOENT if not in core, or -EBUSY if referenced (or pinned by a walk or
 * write-back in progress).
 */
int cache_drop(struct cache *c, uint64_t key);
/*
 * Call @fn on every node in core when the walk starts, in ascending key
 * order, without the cache lock and with the nodes pinned (they cannot
 * leave the cache during the walk: cache_drop() on them returns -EBUSY).
 * A non-zero return from @fn stops the walk and is returned; -ENOMEM if
 * the node list cannot be allocated.
 */
int cache_walk(struct cache *c,
	       int (*fn)(struct cache *c, struct cache_node *n, void *arg),
	       void *arg);
/*
 * Flush dirty nodes and release every unreferenced node.  Nodes that are
 * still dirty afterwards (write-back failed, or dirtied again meanwhile)
 * are kept.  Returns the first flush error.
 */
int cache_purge(struct cache *c);
/* Change max_nodes; lowering it reclaims down to the new bound at once. */
void cache_set_max(struct cache *c, size_t max_nodes);
/* Called periodically (about once a second): shrinks an idle cache. */
void cache_tick(struct cache *c);
void cache_get_stats(struct cache *c, struct cache_stats *st);

/*
 * Debugging: check the cache's internal consistency (hash placement,
 * counters, LRU membership, duplicate keys).  0 or -EUCLEAN, with a
 * description written to stderr.  Takes the lock; O(nodes log nodes).
 */
int cache_check(struct cache *c);

#endif /* FUSE4FS_SUPPORT_CACHE_H */

/*
 * list.h - intrusive doubly linked circular lists.
 *
 * A list is a struct list_head used as the head, linked in a ring with
 * struct list_head members embedded in the elements.  An empty head points
 * at itself.  Elements are recovered from their member with list_entry().
 *
 * Removal (list_del, list_del_init) leaves the removed member linked to
 * itself, so list_empty() on a removed member is true and removing it a
 * second time does nothing.
 *
 * No locking: callers serialise access to a list themselves.
 */
#ifndef FUSE4FS_SUPPORT_LIST_H
#define FUSE4FS_SUPPORT_LIST_H

#include <stddef.h>

struct list_head {
	struct list_head *next;
	struct list_head *prev;
};

#define LIST_HEAD_INIT(name)	{ &(name), &(name) }
#define LIST_HEAD(name)		struct list_head name = LIST_HEAD_INIT(name)

/* The structure of type @type whose member @member is at @ptr. */
#define list_entry(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#ifndef container_of
#define container_of(ptr, type, member)	list_entry(ptr, type, member)
#endif

static inline void list_init(struct list_head *head)
{
	head->next = head;
	head->prev = head;
}

/* Link @entry between two neighbours that are currently adjacent. */
static inline void list_insert_between(struct list_head *entry,
				       struct list_head *prev,
				       struct list_head *next)
{
	entry->prev = prev;
	entry->next = next;
	prev->next = entry;
	next->prev = entry;
}

/* Insert @entry right after @head (at the front of the list). */
static inline void list_add(struct list_head *entry, struct list_head *head)
{
	list_insert_between(entry, head, head->next);
}

/* Insert @entry right before @head (at the back of the list). */
static inline void list_add_tail(struct list_head *entry,
				 struct list_head *head)
{
	list_insert_between(entry, head->prev, head);
}

/*
 * Unlink @entry and leave it pointing at itself.  Safe on an entry that
 * was never added, provided it was initialised with list_init().
 */
static inline void list_del_init(struct list_head *entry)
{
	entry->prev->next = entry->next;
	entry->next->prev = entry->prev;
	list_init(entry);
}

/* Same as list_del_init(): a deleted entry is always left self-linked. */
static inline void list_del(struct list_head *entry)
{
	list_del_init(entry);
}

static inline int list_empty(const struct list_head *head)
{
	return head->next == head;
}

/* True if the list holds exactly one entry. */
static inline int list_is_singular(const struct list_head *head)
{
	return !list_empty(head) && head->next == head->prev;
}

static inline int list_is_first(const struct list_head *entry,
				const struct list_head *head)
{
	return entry->prev == head;
}

static inline int list_is_last(const struct list_head *entry,
			       const struct list_head *head)
{
	return entry->next == head;
}

/* Take @entry off whatever list it is on and put it at the front of @head. */
static inline void list_move(struct list_head *entry, struct list_head *head)
{
	list_del_init(entry);
	list_add(entry, head);
}

/* Take @entry off whatever list it is on and put it at the back of @head. */
static inline void list_move_tail(struct list_head *entry,
				  struct list_head *head)
{
	list_del_init(entry);
	list_add_tail(entry, head);
}

/* Link the entries of @list (non-empty) between @prev and @next. */
static inline void list_splice_between(const struct list_head *list,
				       struct list_head *prev,
				       struct list_head *next)
{
	struct list_head *first = list->next;
	struct list_head *last = list->prev;

	first->prev = prev;
	prev->next = first;
	last->next = next;
	next->prev = last;
}

/*
 * Move every entry of @list to the front of @head, keeping their order.
 * @list itself is left stale: reinitialise it before using it again, or
 * use list_splice_init().
 */
static inline void list_splice(const struct list_head *list,
			       struct list_head *head)
{
	if (!list_empty(list))
		list_splice_between(list, head, head->next);
}

/* As list_splice(), but to the back of @head. */
static inline void list_splice_tail(const struct list_head *list,
				    struct list_head *head)
{
	if (!list_empty(list))
		list_splice_between(list, head->prev, head);
}

/* As list_splice(), and leave @list empty. */
static inline void list_splice_init(struct list_head *list,
				    struct list_head *head)
{
	if (!list_empty(list)) {
		list_splice_between(list, head, head->next);
		list_init(list);
	}
}

/* As list_splice_tail(), and leave @list empty. */
static inline void list_splice_tail_init(struct list_head *list,
					 struct list_head *head)
{
	if (!list_empty(list)) {
		list_splice_between(list, head->prev, head);
		list_init(list);
	}
}

/* First and last entries; the list must not be empty. */
#define list_first_entry(head, type, member) \
	list_entry((head)->next, type, member)
#define list_last_entry(head, type, member) \
	list_entry((head)->prev, type, member)

/* Neighbouring entries of @pos (which may wrap to the head). */
#define list_next_entry(pos, member) \
	list_entry((pos)->member.next, __typeof__(*(pos)), member)
#define list_prev_entry(pos, member) \
	list_entry((pos)->member.prev, __typeof__(*(pos)), member)

#define list_for_each(pos, head) \
	for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

#define list_for_each_reverse(pos, head) \
	for ((pos) = (head)->prev; (pos) != (head); (pos) = (pos)->prev)

/* Iterate while allowing @pos to be removed; @n is scratch. */
#define list_for_each_safe(pos, n, head) \
	for ((pos) = (head)->next, (n) = (pos)->next; (pos) != (head); \
	     (pos) = (n), (n) = (pos)->next)

#define list_for_each_entry(pos, head, member) \
	for ((pos) = list_first_entry(head, __typeof__(*(pos)), member); \
	     &(pos)->member != (head); \
	     (pos) = list_next_entry(pos, member))

#define list_for_each_entry_reverse(pos, head, member) \
	for ((pos) = list_last_entry(head, __typeof__(*(pos)), member); \
	     &(pos)->member != (head); \
	     (pos) = list_prev_entry(pos, member))

/* Iterate over entries while allowing @pos to be removed; @n is scratch. */
#define list_for_each_entry_safe(pos, n, head, member) \
	for ((pos) = list_first_entry(head, __typeof__(*(pos)), member), \
	     (n) = list_next_entry(pos, member); \
	     &(pos)->member != (head); \
	     (pos) = (n), (n) = list_next_entry(n, member))

#define list_for_each_entry_safe_reverse(pos, n, head, member) \
	for ((pos) = list_last_entry(head, __typeof__(*(pos)), member), \
	     (n) = list_prev_entry(pos, member); \
	     &(pos)->member != (head); \
	     (pos) = (n), (n) = list_prev_entry(n, member))

#endif /* FUSE4FS_SUPPORT_LIST_H */

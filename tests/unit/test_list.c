/*
 * test_list.c - unit tests for lib/support/list.h.
 *
 * Exits 0 if every check passes; otherwise prints the failed check and
 * exits 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include "support/list.h"

static const char *current_test;

#define CHECK(cond)							\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "FAIL %s (%s:%d): %s\n",	\
				current_test, __FILE__, __LINE__, #cond); \
			exit(1);					\
		}							\
	} while (0)

struct item {
	int v;
	struct list_head link;
};

#define NITEMS 8
static struct item items[NITEMS];

static void reset_items(void)
{
	int i;

	for (i = 0; i < NITEMS; i++) {
		items[i].v = i;
		list_init(&items[i].link);
	}
}

/*
 * Check that @head holds exactly the values @want[0..n-1] in order, both
 * walking forwards and backwards, with consistent prev/next pointers.
 */
static void expect(const struct list_head *head, const int *want, int n,
		   int line)
{
	const struct list_head *p;
	int i = 0;

	for (p = head->next; p != head; p = p->next) {
		if (i >= n || list_entry(p, struct item, link)->v != want[i] ||
		    p->next->prev != p) {
			fprintf(stderr, "FAIL %s (%s:%d): forward element %d\n",
				current_test, __FILE__, line, i);
			exit(1);
		}
		i++;
	}
	if (i != n) {
		fprintf(stderr, "FAIL %s (%s:%d): %d elements, want %d\n",
			current_test, __FILE__, line, i, n);
		exit(1);
	}
	for (p = head->prev; p != head; p = p->prev) {
		i--;
		if (i < 0 || list_entry(p, struct item, link)->v != want[i] ||
		    p->prev->next != p) {
			fprintf(stderr,
				"FAIL %s (%s:%d): backward element %d\n",
				current_test, __FILE__, line, i);
			exit(1);
		}
	}
	if (i != 0 || head->next->prev != head || head->prev->next != head) {
		fprintf(stderr, "FAIL %s (%s:%d): broken head links\n",
			current_test, __FILE__, line);
		exit(1);
	}
}

#define EXPECT(head, ...)						\
	do {								\
		static const int want_[] = { __VA_ARGS__ };		\
		expect(head, want_, sizeof(want_) / sizeof(want_[0]),	\
		       __LINE__);					\
	} while (0)
#define EXPECT_EMPTY(head)						\
	do {								\
		expect(head, NULL, 0, __LINE__);			\
		CHECK(list_empty(head));				\
	} while (0)

static void test_init(void)
{
	LIST_HEAD(a);
	struct list_head b = LIST_HEAD_INIT(b);
	struct list_head c;

	current_test = "init";
	list_init(&c);
	CHECK(list_empty(&a) && a.next == &a && a.prev == &a);
	CHECK(list_empty(&b) && b.next == &b && b.prev == &b);
	CHECK(list_empty(&c) && c.next == &c && c.prev == &c);
	CHECK(!list_is_singular(&a));
}

static void test_add(void)
{
	LIST_HEAD(head);

	current_test = "add";
	reset_items();
	list_add(&items[1].link, &head);
	EXPECT(&head, 1);
	CHECK(list_is_singular(&head) && !list_empty(&head));
	list_add(&items[2].link, &head);
	EXPECT(&head, 2, 1);
	CHECK(!list_is_singular(&head));
	list_add_tail(&items[3].link, &head);
	EXPECT(&head, 2, 1, 3);
	/* adding after an element inserts in the middle */
	list_add(&items[4].link, &items[1].link);
	EXPECT(&head, 2, 1, 4, 3);
	list_add_tail(&items[5].link, &items[2].link);
	EXPECT(&head, 5, 2, 1, 4, 3);
	CHECK(list_first_entry(&head, struct item, link) == &items[5]);
	CHECK(list_last_entry(&head, struct item, link) == &items[3]);
	CHECK(list_is_first(&items[5].link, &head));
	CHECK(list_is_last(&items[3].link, &head));
	CHECK(!list_is_first(&items[2].link, &head));
	CHECK(!list_is_last(&items[4].link, &head));
	CHECK(list_next_entry(&items[2], link) == &items[1]);
	CHECK(list_prev_entry(&items[2], link) == &items[5]);
}

static void test_del(void)
{
	LIST_HEAD(head);
	int i;

	current_test = "del";
	reset_items();
	for (i = 0; i < 4; i++)
		list_add_tail(&items[i].link, &head);
	EXPECT(&head, 0, 1, 2, 3);

	list_del(&items[2].link);	/* middle */
	EXPECT(&head, 0, 1, 3);
	CHECK(list_empty(&items[2].link));
	CHECK(items[2].link.next == &items[2].link &&
	      items[2].link.prev == &items[2].link);
	list_del(&items[2].link);	/* deleting twice is harmless */
	EXPECT(&head, 0, 1, 3);
	CHECK(list_empty(&items[2].link));

	list_del_init(&items[0].link);	/* first */
	EXPECT(&head, 1, 3);
	CHECK(list_empty(&items[0].link));
	list_del_init(&items[0].link);
	EXPECT(&head, 1, 3);

	list_del(&items[3].link);	/* last */
	EXPECT(&head, 1);
	CHECK(list_is_singular(&head));
	list_del(&items[1].link);	/* only */
	EXPECT_EMPTY(&head);
	CHECK(!list_is_singular(&head));

	/* a deleted node can be added again */
	list_add(&items[1].link, &head);
	EXPECT(&head, 1);
	/* deleting a never-added, initialised node leaves the list alone */
	list_del(&items[6].link);
	EXPECT(&head, 1);
	CHECK(list_empty(&items[6].link));
}

static void test_move(void)
{
	LIST_HEAD(a);
	LIST_HEAD(b);
	int i;

	current_test = "move";
	reset_items();
	for (i = 0; i < 4; i++)
		list_add_tail(&items[i].link, &a);

	list_move(&items[2].link, &b);
	EXPECT(&a, 0, 1, 3);
	EXPECT(&b, 2);
	list_move(&items[0].link, &b);
	EXPECT(&a, 1, 3);
	EXPECT(&b, 0, 2);
	list_move_tail(&items[3].link, &b);
	EXPECT(&a, 1);
	EXPECT(&b, 0, 2, 3);
	/* moving within the same list reorders it */
	list_move_tail(&items[0].link, &b);
	EXPECT(&b, 2, 3, 0);
	list_move(&items[0].link, &b);
	EXPECT(&b, 0, 2, 3);
	list_move(&items[0].link, &b);	/* already first */
	EXPECT(&b, 0, 2, 3);
	list_move_tail(&items[3].link, &b);	/* already last */
	EXPECT(&b, 0, 2, 3);
	/* moving the only element empties the source */
	list_move_tail(&items[1].link, &b);
	EXPECT_EMPTY(&a);
	EXPECT(&b, 0, 2, 3, 1);
	/* moving a self-linked (deleted) node just adds it */
	list_del(&items[2].link);
	list_move(&items[2].link, &a);
	EXPECT(&a, 2);
	EXPECT(&b, 0, 3, 1);
}

static void fill(struct list_head *head, int from, int to)
{
	int i;

	list_init(head);
	for (i = from; i < to; i++) {
		list_init(&items[i].link);
		list_add_tail(&items[i].link, head);
	}
}

static void test_splice(void)
{
	LIST_HEAD(a);
	LIST_HEAD(b);

	current_test = "splice";
	reset_items();

	/* empty into empty */
	list_splice(&a, &b);
	EXPECT_EMPTY(&b);
	list_splice_tail(&a, &b);
	EXPECT_EMPTY(&b);
	list_splice_init(&a, &b);
	EXPECT_EMPTY(&a);
	EXPECT_EMPTY(&b);
	list_splice_tail_init(&a, &b);
	EXPECT_EMPTY(&a);
	EXPECT_EMPTY(&b);

	/* empty into non-empty changes nothing */
	fill(&b, 0, 2);
	list_splice(&a, &b);
	EXPECT(&b, 0, 1);
	list_splice_tail(&a, &b);
	EXPECT(&b, 0, 1);
	list_splice_init(&a, &b);
	EXPECT(&b, 0, 1);
	EXPECT_EMPTY(&a);

	/* non-empty into empty */
	fill(&a, 0, 3);
	list_init(&b);
	list_splice(&a, &b);
	EXPECT(&b, 0, 1, 2);

	/* front and back of a non-empty list */
	fill(&a, 0, 3);
	fill(&b, 3, 5);
	list_splice(&a, &b);
	EXPECT(&b, 0, 1, 2, 3, 4);
	fill(&a, 0, 3);
	fill(&b, 3, 5);
	list_splice_tail(&a, &b);
	EXPECT(&b, 3, 4, 0, 1, 2);

	/* the _init variants leave the source empty and reusable */
	fill(&a, 0, 2);
	fill(&b, 2, 4);
	list_splice_init(&a, &b);
	EXPECT(&b, 0, 1, 2, 3);
	EXPECT_EMPTY(&a);
	fill(&a, 4, 6);
	list_splice_tail_init(&a, &b);
	EXPECT(&b, 0, 1, 2, 3, 4, 5);
	EXPECT_EMPTY(&a);
	list_add(&items[7].link, &a);
	EXPECT(&a, 7);

	/* single elements */
	fill(&a, 0, 1);
	fill(&b, 1, 2);
	list_splice_init(&a, &b);
	EXPECT(&b, 0, 1);
	EXPECT_EMPTY(&a);
	fill(&a, 2, 3);
	list_splice_tail_init(&a, &b);
	EXPECT(&b, 0, 1, 2);

	/* splicing after an element inserts in the middle */
	fill(&a, 5, 7);
	list_splice_init(&a, &items[0].link);
	EXPECT(&b, 0, 5, 6, 1, 2);
}

static void test_iterate(void)
{
	LIST_HEAD(head);
	struct list_head *p, *tmp;
	struct item *it, *next;
	int n;

	current_test = "iterate";
	reset_items();

	/* every iterator on an empty list runs zero times */
	n = 0;
	list_for_each(p, &head)
		n++;
	list_for_each_reverse(p, &head)
		n++;
	list_for_each_safe(p, tmp, &head)
		n++;
	list_for_each_entry(it, &head, link)
		n++;
	list_for_each_entry_reverse(it, &head, link)
		n++;
	list_for_each_entry_safe(it, next, &head, link)
		n++;
	list_for_each_entry_safe_reverse(it, next, &head, link)
		n++;
	CHECK(n == 0);

	fill(&head, 0, NITEMS);
	n = 0;
	list_for_each(p, &head) {
		CHECK(list_entry(p, struct item, link)->v == n);
		n++;
	}
	CHECK(n == NITEMS);
	list_for_each_reverse(p, &head) {
		n--;
		CHECK(list_entry(p, struct item, link)->v == n);
	}
	CHECK(n == 0);
	list_for_each_entry(it, &head, link) {
		CHECK(it->v == n);
		n++;
	}
	CHECK(n == NITEMS);
	list_for_each_entry_reverse(it, &head, link) {
		n--;
		CHECK(it->v == n);
	}
	CHECK(n == 0);

	/* single element */
	fill(&head, 3, 4);
	n = 0;
	list_for_each_entry(it, &head, link)
		n += it->v;
	list_for_each_entry_reverse(it, &head, link)
		n += it->v;
	CHECK(n == 6);
}

static void test_safe_delete(void)
{
	LIST_HEAD(head);
	LIST_HEAD(other);
	struct list_head *p, *tmp;
	struct item *it, *next;
	int n;

	current_test = "safe_delete";
	reset_items();

	/* delete the odd ones while walking forwards (raw nodes) */
	fill(&head, 0, NITEMS);
	n = 0;
	list_for_each_safe(p, tmp, &head) {
		CHECK(list_entry(p, struct item, link)->v == n);
		if (n & 1)
			list_del(p);
		n++;
	}
	CHECK(n == NITEMS);
	EXPECT(&head, 0, 2, 4, 6);

	/* delete everything while walking forwards (entries) */
	n = 0;
	list_for_each_entry_safe(it, next, &head, link) {
		CHECK(it->v == 2 * n);
		list_del(&it->link);
		n++;
	}
	CHECK(n == 4);
	EXPECT_EMPTY(&head);

	/* move entries to another list while walking */
	fill(&head, 0, NITEMS);
	list_for_each_entry_safe(it, next, &head, link)
		if (it->v % 3 == 0)
			list_move_tail(&it->link, &other);
	EXPECT(&head, 1, 2, 4, 5, 7);
	EXPECT(&other, 0, 3, 6);

	/* delete while walking backwards */
	fill(&head, 0, NITEMS);
	n = NITEMS;
	list_for_each_entry_safe_reverse(it, next, &head, link) {
		n--;
		CHECK(it->v == n);
		if (n >= 4)
			list_del(&it->link);
	}
	CHECK(n == 0);
	EXPECT(&head, 0, 1, 2, 3);

	/* single element: delete it */
	fill(&head, 5, 6);
	n = 0;
	list_for_each_entry_safe(it, next, &head, link) {
		list_del(&it->link);
		n++;
	}
	CHECK(n == 1);
	EXPECT_EMPTY(&head);
}

int main(void)
{
	test_init();
	test_add();
	test_del();
	test_move();
	test_splice();
	test_iterate();
	test_safe_delete();
	printf("test_list: all tests passed\n");
	return 0;
}

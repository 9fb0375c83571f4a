/*
 * Unit test of fuse4fs/lookups.c, the table of the kernel's lookup
 * counts: random increments and forgets against a plain array, with keys
 * chosen to collide, through growth and shrinking.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuse4fs.h"

static int failures;

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__,	\
			#cond);						\
		failures++;						\
	}								\
} while (0)

#define NKEYS 50000

static uint32_t model[NKEYS + 1];

static void check_all(struct f4_lookups *t)
{
	size_t live = 0;
	uint32_t i;

	for (i = 1; i <= NKEYS; i++) {
		if (f4_lookups_get(t, i) != model[i]) {
			fprintf(stderr, "FAIL ino %u: %u, model %u\n", i,
				f4_lookups_get(t, i), model[i]);
			failures++;
			return;
		}
		live += !!model[i];
	}
	CHECK(t->used == live);
	CHECK(!t->size || t->used * 4 <= t->size * 3);
}

static void test_basic(void)
{
	struct f4_lookups t = { NULL, 0, 0 };

	CHECK(f4_lookups_get(&t, 5) == 0);
	CHECK(f4_lookups_dec(&t, 5, 1) == 0);	/* unknown: nothing */
	CHECK(f4_lookups_inc(&t, 5) == 0);
	CHECK(f4_lookups_inc(&t, 5) == 0);
	CHECK(f4_lookups_get(&t, 5) == 2);
	CHECK(f4_lookups_dec(&t, 5, 1) == 1);
	CHECK(f4_lookups_dec(&t, 5, 7) == 0);	/* more than held: gone */
	CHECK(f4_lookups_get(&t, 5) == 0);
	CHECK(t.used == 0);
	f4_lookups_free(&t);
}

static void test_random(void)
{
	struct f4_lookups t = { NULL, 0, 0 };
	unsigned int seed = 12345;
	size_t step, peak = 0;
	uint32_t ino, n;

	memset(model, 0, sizeof(model));
	/* phase 1 grows to tens of thousands of keys, phase 2 drains */
	for (step = 0; step < 2000000; step++) {
		int grow = step < 1200000;

		ino = 1 + rand_r(&seed) % NKEYS;
		/* multiples of a power of two collide in the low bits */
		if (rand_r(&seed) % 4 == 0)
			ino = 1 + (ino * 1024) % NKEYS;
		if (rand_r(&seed) % 3 < (grow ? 2 : 1)) {
			CHECK(f4_lookups_inc(&t, ino) == 0);
			model[ino]++;
		} else {
			n = 1 + rand_r(&seed) % 3;
			model[ino] = model[ino] > n ? model[ino] - n : 0;
			CHECK(f4_lookups_dec(&t, ino, n) == model[ino]);
		}
		if (t.size > peak)
			peak = t.size;
		if (step % 100000 == 0)
			check_all(&t);
	}
	check_all(&t);
	/* forget the rest: the table must shrink back */
	for (ino = 1; ino <= NKEYS; ino++)
		if (model[ino]) {
			CHECK(f4_lookups_dec(&t, ino, model[ino]) == 0);
			model[ino] = 0;
		}
	check_all(&t);
	CHECK(t.used == 0);
	CHECK(t.size < peak);
	printf("random: peak %zu slots, %zu at the end\n", peak, t.size);
	f4_lookups_free(&t);
}

int main(void)
{
	test_basic();
	test_random();
	if (failures) {
		printf("test_lookups: %d failures\n", failures);
		return 1;
	}
	printf("test_lookups: all tests passed\n");
	return 0;
}

// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/* Threads that race on one region, for the concurrency tests: racers.h. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdlib.h>

#include "racers.h"

void racers_error(struct racers *s, int err)
{
	int zero = 0;

	atomic_compare_exchange_strong(&s->error, &zero, err);
}

void racer_start(struct racer *a, struct racers *s, int id,
		 void *(*fn)(void *))
{
	*a = (struct racer){ .s = s, .id = id, .seed = s->seed_base + id };
	if (pthread_create(&a->thread, NULL, fn, a))
		fail("pthread_create");
}

void *racer_place(void *arg)
{
	struct racer *a = arg;
	int ret = place_pattern_pieces(a->s->e, 0, a->s->e->len, &a->seed);

	if (ret)
		racers_error(a->s, ret);
	return NULL;
}

void *racer_read(void *arg)
{
	struct racer *a = arg;
	struct test_env *e = a->s->e;

	a->bad = -1;
	for (int i = 0; i < a->s->reads && a->bad < 0; i++) {
		uint64_t off = ((uint64_t)rand_r(&a->seed) % e->len) & ~7ULL;

		a->bad = pattern_check(e->guest + off, off, 8, e->seed);
	}
	return NULL;
}

void *racer_own(void *arg)
{
	struct racer *a = arg;
	struct racers *s = a->s;
	struct test_env *e = s->e;
	uint64_t pieces = e->len / SZ_4K, buf[SZ_4K / 8];
	int ret = 0;

	for (uint32_t round = 1; round <= (uint32_t)s->rounds && !ret; round++) {
		for (int k = 0; k < s->per_round && !ret; k++) {
			uint64_t p = (uint64_t)rand_r(&a->seed) %
				     (pieces / s->owners) * s->owners + a->id;
			uint32_t v = (uint32_t)a->id << 16 | round;

			ret = mhgm_drop(e->r, p * SZ_4K, SZ_4K);
			if (ret)
				break;
			pattern_fill(buf, p * SZ_4K, SZ_4K, v);
			ret = mhgm_place(e->r, p * SZ_4K, buf, SZ_4K, 0);
			s->version[p] = v;
		}
	}
	if (ret)
		racers_error(s, ret);
	return NULL;
}

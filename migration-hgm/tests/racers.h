/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * Threads that race on one region, shared by the concurrency tests
 * (concurrency.c in fallback mode, hgm-concurrency.c in HGM mode).
 */
#ifndef MHGM_TEST_RACERS_H
#define MHGM_TEST_RACERS_H

#include "helpers.h"

/* What the racing threads of one phase share. */
struct racers {
	struct test_env *e;
	int efd;
	atomic_bool stop;	/* the placers are done: stop collapsing */
	atomic_int error;	/* the first error a thread saw */
	atomic_ulong drops;
	atomic_ulong collapse_calls;
	uint32_t *version;	/* owners: per piece, last version placed */
	unsigned int seed_base;	/* a thread's seed: seed_base + its id */
	int reads;		/* racer_read(): reads per thread */
	int owners, rounds, per_round;	/* racer_own() */
};

struct racer {
	struct racers *s;
	pthread_t thread;
	unsigned int seed;
	int id;
	long long bad;		/* racer_read(): first bad offset, or -1 */
};

/* Keep the first error of a phase. */
void racers_error(struct racers *s, int err);
/* Start @fn on a thread for racer @a of @s. */
void racer_start(struct racer *a, struct racers *s, int id,
		 void *(*fn)(void *));
/* Place every piece of the region with the seed's pattern. */
void *racer_place(void *arg);
/* Read random words of the guest mapping and check the pattern. */
void *racer_read(void *arg);
/*
 * Owner @id of every owners-th piece: drop one of its pieces and place it
 * again with a new version, rounds x per_round times.
 */
void *racer_own(void *arg);

#endif

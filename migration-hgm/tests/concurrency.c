// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * concurrency: the library used the way a VMM uses it, all at once.
 *
 * Phase 1: four receive threads place every piece of the same hugepages,
 * each in its own shuffled order (so every piece is sent four times at
 * once), while workers fault on the guest mapping, a fault thread resolves
 * them, and a collapse thread calls mhgm_collapse() and reads statistics in
 * a loop.  Each piece must be copied exactly once, each hugepage mapped with
 * exactly one UFFDIO_CONTINUE, and the guest must read what was sent.
 *
 * Phase 2: four threads each own every fourth piece and repeatedly drop and
 * re-place random pieces of theirs with new data, sharing hugepages with
 * each other.  At the end every hugepage must be mapped and every piece must
 * hold its owner's last version.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <unistd.h>

#include "racers.h"

#define NR_HP		8
#define PLACERS		4
#define WORKERS		3
#define READS		400
#define OWNERS		4
#define ROUNDS		30
#define PER_ROUND	24

static void *collapser_main(void *arg)
{
	struct racer *a = arg;
	struct mhgm_stats st;
	uint64_t n;
	int ret;

	while (!atomic_load(&a->s->stop)) {
		ret = mhgm_collapse(a->s->e->r, 0, a->s->e->len, &n);
		if (!ret)
			ret = mhgm_region_stats(a->s->e->r, &st);
		if (ret) {
			racers_error(a->s, ret);
			break;
		}
		/* counters are read one by one: compare each with a bound */
		if (st.pieces_present > st.pieces ||
		    st.pieces_mapped > st.pieces ||
		    st.hugepages_collapsed > st.hugepages ||
		    st.hugepages_complete > st.hugepages ||
		    st.hugepages_split != 0) {
			racers_error(a->s, -EPROTO);
			break;
		}
		usleep(200);
	}
	return NULL;
}

static void phase1(struct test_env *e)
{
	struct racer placers[PLACERS], workers[WORKERS], collapser;
	struct racers s = { .e = e, .seed_base = 1000, .reads = READS,
			    .owners = OWNERS, .rounds = ROUNDS,
			    .per_round = PER_ROUND };
	struct fault_server server;
	struct mhgm_stats st;
	long long bad;

	fault_server_start(&server, e, false);
	for (int i = 0; i < WORKERS; i++)
		racer_start(&workers[i], &s, i, racer_read);
	racer_start(&collapser, &s, 99, collapser_main);
	for (int i = 0; i < PLACERS; i++)
		racer_start(&placers[i], &s, 10 + i, racer_place);

	for (int i = 0; i < PLACERS; i++)
		pthread_join(placers[i].thread, NULL);
	atomic_store(&s.stop, true);
	pthread_join(collapser.thread, NULL);
	for (int i = 0; i < WORKERS; i++) {
		pthread_join(workers[i].thread, NULL);
		check(workers[i].bad < 0, "worker %d read wrong data at %lld",
		      i, workers[i].bad);
	}
	fault_server_stop(&server);
	check(!atomic_load(&s.error), "a thread failed: %s",
	      errname(atomic_load(&s.error)));

	for (uint64_t o = 0; o < e->len; o += SZ_4K)
		check(page_mapped(e->guest + o), "offset %llu not mapped",
		      (unsigned long long)o);
	bad = pattern_check(e->guest, 0, e->len, e->seed);
	check(bad < 0, "wrong data at %lld", bad);
	check_ret(mhgm_region_stats(e->r, &st), 0);
	check_eq(st.pieces_copied, st.pieces);
	check_eq(st.pieces_present, st.pieces);
	check_eq(st.pieces_mapped, st.pieces);
	check_eq(st.hugepages_collapsed, NR_HP);
	check_eq(st.continues, NR_HP);
	pass("phase 1: %d placers x every piece, %lu faults: each piece "
	     "copied once, each hugepage continued once, data verified",
	     PLACERS, atomic_load(&server.faults));
}

static void phase2(struct test_env *e)
{
	struct racer owners[OWNERS];
	uint64_t pieces = e->len / SZ_4K;
	struct racers s = { .e = e, .seed_base = 1000, .reads = READS,
			    .owners = OWNERS, .rounds = ROUNDS,
			    .per_round = PER_ROUND };
	struct mhgm_stats st;

	s.version = calloc(pieces, sizeof(*s.version));
	for (uint64_t p = 0; p < pieces; p++)
		s.version[p] = e->seed;
	for (int i = 0; i < OWNERS; i++)
		racer_start(&owners[i], &s, i, racer_own);
	for (int i = 0; i < OWNERS; i++)
		pthread_join(owners[i].thread, NULL);
	check(!atomic_load(&s.error), "a thread failed: %s",
	      errname(atomic_load(&s.error)));

	for (uint64_t p = 0; p < pieces; p++) {
		long long bad;

		check(page_mapped(e->guest + p * SZ_4K),
		      "piece %llu not mapped", (unsigned long long)p);
		bad = pattern_check(e->guest + p * SZ_4K, p * SZ_4K, SZ_4K,
				    s.version[p]);
		check(bad < 0, "piece %llu: not version %#x at %lld",
		      (unsigned long long)p, s.version[p], bad);
	}
	check_ret(mhgm_region_stats(e->r, &st), 0);
	check_eq(st.pieces_present, st.pieces);
	check_eq(st.pieces_mapped, st.pieces);
	check_eq(st.hugepages_collapsed, NR_HP);
	check_eq(st.pieces_dropped, OWNERS * ROUNDS * PER_ROUND);
	free(s.version);
	pass("phase 2: %d owners x %d drop+place: every piece holds its last "
	     "version, every hugepage mapped", OWNERS, ROUNDS * PER_ROUND);
}

int main(void)
{
	struct test_env e;

	watchdog(180);
	need_hugepages(SZ_2M, NR_HP + 1);
	env_setup(&e, SZ_2M, NR_HP, 0, true);
	check_ret(mhgm_region_populate(e.r, NULL, NULL), 0);
	phase1(&e);
	phase2(&e);
	env_teardown(&e);
	return KSFT_PASS;
}

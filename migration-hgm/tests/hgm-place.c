// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * hgm-place: 4 KiB placement on a kernel with HGM (skips elsewhere).
 *
 *  - after mhgm_region_split() a single placed piece is mapped alone: the
 *    pieces beside it stay unmapped;
 *  - worker threads fault on random places; each fault asks for exactly one
 *    4 KiB piece, which the fault thread places; only what was touched is
 *    ever fetched, and every word read is what was sent;
 *  - a hugepage completed piece by piece stays split under the manual policy
 *    and mhgm_collapse() collapses it.
 * Runs on 2 MiB pages, and on 1 GiB pages too when one is free.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <unistd.h>

#include "helpers.h"

#define WORKERS		4
#define READS		200

struct worker {
	struct test_env *e;
	pthread_t thread;
	unsigned int seed;
	long long bad;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct test_env *e = w->e;

	w->bad = -1;
	for (int i = 0; i < READS && w->bad < 0; i++) {
		/* hugepage 0 is placed by hand: read the others */
		uint64_t off = e->hpsize + (uint64_t)rand_r(&w->seed) %
			       (e->len - e->hpsize);

		off &= ~7ULL;
		w->bad = pattern_check(e->guest + off, off, 8, e->seed);
	}
	return NULL;
}

static void run(uint64_t hpsize, const struct mhgm_probe *probe)
{
	struct worker workers[WORKERS];
	struct fault_server server;
	struct mhgm_stats st;
	struct test_env e;
	uint64_t buf[SZ_4K / 8], n;
	long pte;
	long long bad;
	int ret;

	/* 2 MiB: 3 hugepages to read from, so reads cover well under half */
	env_setup(&e, hpsize, hpsize == SZ_2M ? 4 : 2, 0, false);
	check_ret(mhgm_region_split(e.r), 0);
	check_ret(mhgm_region_mode(e.r), MHGM_MODE_HGM);
	env_register(&e);
	check_ret(mhgm_region_populate(e.r, NULL, NULL), 0);

	/* one piece, mapped alone */
	pattern_fill(buf, 10 * SZ_4K, SZ_4K, e.seed);
	check_ret(mhgm_place(e.r, 10 * SZ_4K, buf, SZ_4K, 0), 0);
	check(page_mapped(e.guest + 10 * SZ_4K), "placed piece not mapped");
	check(!page_mapped(e.guest + 9 * SZ_4K) &&
	      !page_mapped(e.guest + 11 * SZ_4K), "neighbours mapped");
	bad = pattern_check(e.guest + 10 * SZ_4K, 10 * SZ_4K, SZ_4K, e.seed);
	check(bad < 0, "wrong data at %lld", bad);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.mode, MHGM_MODE_HGM);
	check_eq(st.pieces_mapped, 1);
	check_eq(st.hugepages_split, 1);
	check_eq(st.hugepages_collapsed, 0);
	check_eq(st.continues, 1);
	pte = smaps_field(e.guest, "HugetlbPteMapped");
	check(pte < 0 || pte >= 4, "HugetlbPteMapped %ld kB", pte);
	pass("%llu kB: one 4 KiB piece mapped alone",
	     (unsigned long long)hpsize >> 10);

	/* faults fetch exactly the piece they touch */
	fault_server_start(&server, &e, false);
	for (int i = 0; i < WORKERS; i++) {
		workers[i] = (struct worker){ .e = &e, .seed = 7 + i };
		check(!pthread_create(&workers[i].thread, NULL, worker_main,
				      &workers[i]), "pthread_create");
	}
	for (int i = 0; i < WORKERS; i++) {
		pthread_join(workers[i].thread, NULL);
		check(workers[i].bad < 0, "worker %d read wrong data at %lld",
		      i, workers[i].bad);
	}
	fault_server_stop(&server);
	check_eq(atomic_load(&server.max_request), SZ_4K);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check(st.pieces_copied <= atomic_load(&server.missing) + 1,
	      "copied %llu pieces for %lu missing faults",
	      (unsigned long long)st.pieces_copied,
	      atomic_load(&server.missing));
	check(st.pieces_present < st.pieces / 2, "fetched %llu of %llu",
	      (unsigned long long)st.pieces_present,
	      (unsigned long long)st.pieces);
	check(st.latency.count > 0, "no latency recorded");
	pass("%d workers x %d reads: %lu faults, each asked for 4 KiB; "
	     "p50 %llu p99 %llu ns", WORKERS, READS,
	     atomic_load(&server.faults), (unsigned long long)st.latency.p50,
	     (unsigned long long)st.latency.p99);

	/* complete hugepage 0 piece by piece: split until collapsed */
	for (uint64_t o = 0; o < hpsize; o += SZ_4K) {
		pattern_fill(buf, o, SZ_4K, e.seed);
		check_ret(mhgm_place(e.r, o, buf, SZ_4K, 0), 0);
	}
	bad = pattern_check(e.guest, 0, hpsize, e.seed);
	check(bad < 0, "wrong data at %lld", bad);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check(st.hugepages_complete >= 1 && st.hugepages_collapsed == 0,
	      "complete %llu collapsed %llu",
	      (unsigned long long)st.hugepages_complete,
	      (unsigned long long)st.hugepages_collapsed);
	ret = mhgm_collapse(e.r, 0, hpsize, &n);
	if (mhgm_probe_has(probe, MHGM_FEAT_COLLAPSE) == 1) {
		check_ret(ret, 0);
		check_eq(n, 1);
		check_ret(mhgm_region_stats(e.r, &st), 0);
		check_eq(st.hugepages_collapsed, 1);
		check_eq(st.collapses, 1);
		bad = pattern_check(e.guest, 0, hpsize, e.seed);
		check(bad < 0, "wrong data after collapse at %lld", bad);
		pass("complete hugepage collapsed, data intact");
	} else {
		check_ret(ret, -EOPNOTSUPP);
		pass("kernel without MADV_COLLAPSE on hugetlb: -EOPNOTSUPP");
	}
	env_teardown(&e);
}

int main(void)
{
	struct mhgm_probe probe;

	watchdog(300);
	need_hgm(SZ_2M, &probe);
	need_hugepages(SZ_2M, 5);
	run(SZ_2M, &probe);
	if (free_hugepages(SZ_1G) >= 2 && !mhgm_probe(SZ_1G, &probe) &&
	    probe.mode == MHGM_MODE_HGM)
		run(SZ_1G, &probe);
	else
		printf("1 GiB pages: not run (need 2 free and HGM)\n");
	return KSFT_PASS;
}

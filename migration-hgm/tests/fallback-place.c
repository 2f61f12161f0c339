// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * fallback-place: whole-hugepage placement on 2 MiB pages, the path every
 * kernel without HGM takes (the region is never split here).
 *
 *  - populate allocates every hugepage, reporting progress, and can be
 *    cancelled;
 *  - a hugepage is not mapped until its last 4 KiB piece is placed, then
 *    mapped whole with one UFFDIO_CONTINUE;
 *  - worker threads read random places of the guest mapping while a fault
 *    thread resolves their faults through mhgm_fault() and "receives" the
 *    missing data piece by piece with mhgm_place(); every word the workers
 *    read, and at the end the whole guest mapping, is compared with what was
 *    sent;
 *  - mhgm_map() of a whole hugepage maps it before all its pieces arrived.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <unistd.h>

#include "helpers.h"

#define NR_HP		8
#define WORKERS		4
#define READS		300

struct progress {
	uint64_t calls, last, total;
	bool monotonic;
};

static int on_progress(uint64_t done, uint64_t total, void *opaque)
{
	struct progress *p = opaque;

	if (done <= p->last)
		p->monotonic = false;
	p->calls++;
	p->last = done;
	p->total = total;
	return 0;
}

static int cancel_at_once(uint64_t done, uint64_t total, void *opaque)
{
	(void)done;
	(void)total;
	(*(int *)opaque)++;
	return 1;
}

struct worker {
	struct test_env *e;
	pthread_t thread;
	unsigned int seed;
	long long bad;		/* offset of a wrong word, or -1 */
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct test_env *e = w->e;

	w->bad = -1;
	for (int i = 0; i < READS && w->bad < 0; i++) {
		/* hugepage 0 is placed by hand in main(): skip it */
		uint64_t off = SZ_2M + (uint64_t)rand_r(&w->seed) %
			       (e->len - SZ_2M);

		off &= ~7ULL;
		w->bad = pattern_check(e->guest + off, off, 8, e->seed);
	}
	return NULL;
}

static void check_mapped(struct test_env *e, uint64_t hp, int want)
{
	for (uint64_t o = 0; o < e->hpsize; o += SZ_4K)
		if (page_mapped(e->guest + hp * e->hpsize + o) != want)
			fail("hugepage %llu piece %llu: mapped %d, expected %d",
			     (unsigned long long)hp,
			     (unsigned long long)(o / SZ_4K), !want, want);
}

static void place_all_but_one(struct test_env *e, uint64_t hole)
{
	uint64_t buf[SZ_4K / 8];

	for (uint64_t o = 0; o < e->hpsize; o += SZ_4K) {
		if (o == hole)
			continue;
		pattern_fill(buf, o, SZ_4K, e->seed);
		check_ret(mhgm_place(e->r, o, buf, SZ_4K, 0), 0);
	}
}

int main(void)
{
	struct progress prog = { .monotonic = true };
	struct worker workers[WORKERS];
	struct fault_server server;
	struct mhgm_stats st;
	struct test_env e, e2;
	uint64_t buf[SZ_4K / 8];
	long free_before;
	long long bad;
	int cancels = 0;

	watchdog(120);
	need_hugepages(SZ_2M, NR_HP + 2);
	env_setup(&e, SZ_2M, NR_HP, 0, true);

	/* populate */
	free_before = free_hugepages(SZ_2M);
	check_ret(mhgm_region_populate(e.r, on_progress, &prog), 0);
	check_eq(prog.calls, NR_HP);
	check_eq(prog.last, e.len);
	check_eq(prog.total, e.len);
	check(prog.monotonic, "progress went backwards");
	check_eq(free_before - free_hugepages(SZ_2M), NR_HP);
	check_ret(mhgm_region_populate(e.r, cancel_at_once, &cancels),
		  -ECANCELED);
	check_eq(cancels, 1);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.pieces_present, 0);
	pass("populate: %d hugepages allocated, progress reported, cancel "
	     "-ECANCELED", NR_HP);

	/* not mapped until complete, then mapped whole at once */
	check_ret(mhgm_region_mode(e.r), MHGM_MODE_FALLBACK);
	place_all_but_one(&e, 5 * SZ_4K);
	check_mapped(&e, 0, 0);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.pieces_present, e.hpsize / SZ_4K - 1);
	check_eq(st.pieces_mapped, 0);
	check_eq(st.continues, 0);
	check_eq(st.hugepages_collapsed, 0);
	pattern_fill(buf, 5 * SZ_4K, SZ_4K, e.seed);
	check_ret(mhgm_place(e.r, 5 * SZ_4K, buf, SZ_4K, 0), 0);
	check_mapped(&e, 0, 1);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.continues, 1);
	check_eq(st.hugepages_collapsed, 1);
	check_eq(st.pieces_mapped, e.hpsize / SZ_4K);
	bad = pattern_check(e.guest, 0, e.hpsize, e.seed);
	check(bad < 0, "wrong data at %lld", bad);
	/* a second send of the same piece is ignored */
	memset(buf, 0xee, sizeof(buf));
	check_ret(mhgm_place(e.r, 5 * SZ_4K, buf, SZ_4K, 0), 0);
	bad = pattern_check(e.guest, 0, e.hpsize, e.seed);
	check(bad < 0, "a duplicate place overwrote data at %lld", bad);
	pass("hugepage mapped only with its last piece, with one "
	     "UFFDIO_CONTINUE; duplicate ignored");

	/* workers fault, the fault thread receives piece by piece */
	fault_server_start(&server, &e, true);
	for (int i = 0; i < WORKERS; i++) {
		workers[i] = (struct worker){ .e = &e, .seed = 100 + i };
		check(!pthread_create(&workers[i].thread, NULL, worker_main,
				      &workers[i]), "pthread_create");
	}
	for (int i = 0; i < WORKERS; i++) {
		pthread_join(workers[i].thread, NULL);
		check(workers[i].bad < 0, "worker %d read a wrong word at %lld",
		      i, workers[i].bad);
	}
	pass("%d workers x %d reads verified (%lu faults, %lu missing)",
	     WORKERS, READS, atomic_load(&server.faults),
	     atomic_load(&server.missing));
	/* the whole mapping, byte for byte (faults in what nobody read) */
	bad = pattern_check(e.guest, 0, e.len, e.seed);
	check(bad < 0, "wrong data at %lld", bad);
	fault_server_stop(&server);
	for (uint64_t hp = 0; hp < NR_HP; hp++)
		check_mapped(&e, hp, 1);

	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.mode, MHGM_MODE_FALLBACK);
	check_eq(st.hugepages, NR_HP);
	check_eq(st.hugepages_collapsed, NR_HP);
	check_eq(st.hugepages_complete, NR_HP);
	check_eq(st.hugepages_split, 0);
	check_eq(st.pieces_present, st.pieces);
	check_eq(st.pieces_mapped, st.pieces);
	check_eq(st.pieces_copied, st.pieces);	/* each piece copied once */
	check_eq(st.continues, NR_HP);		/* one per hugepage */
	check_eq(st.faults, atomic_load(&server.faults));
	check(st.faults >= NR_HP - 1, "faults %llu",
	      (unsigned long long)st.faults);
	check_eq(st.latency.count + st.faults_untimed,
		 atomic_load(&server.missing) +
		 (st.faults - atomic_load(&server.missing)));
	check(st.latency.p50 <= st.latency.p99 &&
	      st.latency.p99 <= st.latency.max && st.latency.max > 0,
	      "latency p50 %llu p99 %llu max %llu",
	      (unsigned long long)st.latency.p50,
	      (unsigned long long)st.latency.p99,
	      (unsigned long long)st.latency.max);
	pass("whole mapping verified; stats: %llu faults, latency p50 %llu "
	     "p90 %llu p99 %llu max %llu ns",
	     (unsigned long long)st.faults,
	     (unsigned long long)st.latency.p50,
	     (unsigned long long)st.latency.p90,
	     (unsigned long long)st.latency.p99,
	     (unsigned long long)st.latency.max);
	env_teardown(&e);

	/* mhgm_map(): the caller asks for a hugepage to be mapped */
	env_setup(&e2, SZ_2M, 2, 0, true);
	pattern_fill(buf, SZ_2M + SZ_4K, SZ_4K, e2.seed);
	check_ret(mhgm_place(e2.r, SZ_2M + SZ_4K, buf, SZ_4K, 0), 0);
	check_mapped(&e2, 1, 0);
	check_ret(mhgm_map(e2.r, SZ_2M, SZ_2M, 0), 0);
	check_mapped(&e2, 1, 1);
	check_mapped(&e2, 0, 0);
	bad = pattern_check(e2.guest + SZ_2M + SZ_4K, SZ_2M + SZ_4K, SZ_4K,
			    e2.seed);
	check(bad < 0, "placed piece wrong at %lld", bad);
	for (uint64_t o = SZ_2M; o < 2 * SZ_2M; o += SZ_4K)
		if (o != SZ_2M + SZ_4K)
			check(e2.guest[o] == 0 && e2.guest[o + SZ_4K - 1] == 0,
			      "page cache content at %llu",
			      (unsigned long long)o);
	check_ret(mhgm_region_stats(e2.r, &st), 0);
	check_eq(st.pieces_present, e2.hpsize / SZ_4K);
	check_eq(st.hugepages_collapsed, 1);
	env_teardown(&e2);
	pass("mhgm_map of a whole hugepage maps it with the page cache data");
	return KSFT_PASS;
}

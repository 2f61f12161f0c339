// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * hgm-concurrency: the library on HGM (skips without it), used by many
 * threads at once as a VMM's fault, receive and collapse threads use it.
 *
 * Phase 1, deferred collapse: worker threads read random words of the guest
 * mapping and fault; a fault thread answers with mhgm_fault() and places
 * the 4 KiB asked for; three receive threads place every piece, each in its
 * own shuffled order; a drop thread drops random pieces again (same data:
 * the source re-sends them); a collapse thread polls the eventfd, calls
 * mhgm_collapse_pending() and mhgm_collapse() of the whole region, and
 * checks the counters.  Every word read must be what was sent; at the end
 * each piece was copied once plus once per drop, and after a last collapse
 * smaps shows every hugepage mapped by one PMD.
 *
 * Phase 2, collapse on completion: four threads each own every fourth
 * piece and drop and re-place random pieces of theirs with new data,
 * sharing hugepages with each other, while the collapse thread collapses
 * the whole region in a loop.  Every piece must end with its owner's last
 * version, every hugepage mapped by one PMD.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "racers.h"

#define NR_HP		8
#define WORKERS		3
#define READS		300
#define PLACERS		3
#define DROPS		150
#define OWNERS		4
#define ROUNDS		10
#define PER_ROUND	24

/* Drop 1 to 4 random pieces at a time (across hugepages too). */
static void *dropper_main(void *arg)
{
	struct racer *a = arg;
	struct test_env *e = a->s->e;
	uint64_t pieces = e->len / SZ_4K;

	for (int i = 0; i < DROPS; i++) {
		uint64_t n = 1 + rand_r(&a->seed) % 4;
		uint64_t p = rand_r(&a->seed) % (pieces - n);
		int ret = mhgm_drop(e->r, p * SZ_4K, n * SZ_4K);

		if (ret) {
			racers_error(a->s, ret);
			break;
		}
		atomic_fetch_add(&a->s->drops, 1);
		usleep(500);
	}
	return NULL;
}

static bool collapse_retry(int ret)
{
	return ret == -EAGAIN || ret == -EBUSY;
}

static void *collapser_main(void *arg)
{
	struct racer *a = arg;
	struct racers *s = a->s;
	struct pollfd pfd = { .fd = s->efd, .events = POLLIN };
	struct mhgm_stats st;
	uint64_t n, v;
	int ret;

	while (!atomic_load(&s->stop)) {
		if (s->efd >= 0 && poll(&pfd, 1, 2) == 1 &&
		    read(s->efd, &v, sizeof(v)) == sizeof(v)) {
			ret = mhgm_collapse_pending(s->e->r, 0, &n);
			if (ret < 0 && !collapse_retry(ret)) {
				racers_error(s, ret);
				break;
			}
		}
		ret = mhgm_collapse(s->e->r, 0, s->e->len, &n);
		if (ret && !collapse_retry(ret)) {
			racers_error(s, ret);
			break;
		}
		atomic_fetch_add(&s->collapse_calls, 1);
		ret = mhgm_region_stats(s->e->r, &st);
		if (ret) {
			racers_error(s, ret);
			break;
		}
		/* counters are read one by one: compare each with a bound */
		if (st.pieces_present > st.pieces ||
		    st.pieces_mapped > st.pieces ||
		    st.hugepages_collapsed > st.hugepages ||
		    st.hugepages_split > st.hugepages ||
		    st.hugepages_complete > st.hugepages ||
		    st.hugepages_queued > st.hugepages) {
			racers_error(s, -EPROTO);
			break;
		}
		if (s->efd < 0)
			usleep(500);
	}
	return NULL;
}

/* Last collapse of the whole region: every hugepage mapped by one PMD. */
static void check_collapsed(struct test_env *e)
{
	struct mhgm_stats st;
	uint64_t n;

	check_ret(mhgm_collapse(e->r, 0, e->len, &n), 0);
	check(mhgm_collapse_pending(e->r, 0, &n) >= 0, "collapse_pending");
	check_ret(mhgm_region_stats(e->r, &st), 0);
	check_eq(st.pieces_present, st.pieces);
	check_eq(st.pieces_mapped, st.pieces);
	check_eq(st.hugepages_collapsed, NR_HP);
	check_eq(st.hugepages_split, 0);
	check_eq(st.hugepages_queued, 0);
	check_eq(smaps_field(e->guest, "HugetlbPteMapped"), 0);
	check_eq(smaps_field(e->guest, "HugetlbPmdMapped"), e->len >> 10);
}

static void phase1(struct test_env *e)
{
	struct racer workers[WORKERS], placers[PLACERS];
	struct racer dropper, collapser;
	struct racers s = { .e = e, .seed_base = 2000, .reads = READS,
			    .owners = OWNERS, .rounds = ROUNDS,
			    .per_round = PER_ROUND };
	struct fault_server server;
	struct mhgm_stats st;
	char *data;
	long long bad;

	s.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	check(s.efd >= 0, "eventfd");
	check_ret(mhgm_region_set_collapse(e->r, MHGM_COLLAPSE_DEFERRED,
					   s.efd), 0);

	fault_server_start(&server, e, false);
	racer_start(&collapser, &s, 99, collapser_main);
	for (int i = 0; i < WORKERS; i++)
		racer_start(&workers[i], &s, i, racer_read);
	racer_start(&dropper, &s, 50, dropper_main);
	for (int i = 0; i < PLACERS; i++)
		racer_start(&placers[i], &s, 10 + i, racer_place);

	for (int i = 0; i < PLACERS; i++)
		pthread_join(placers[i].thread, NULL);
	pthread_join(dropper.thread, NULL);
	for (int i = 0; i < WORKERS; i++) {
		pthread_join(workers[i].thread, NULL);
		check(workers[i].bad < 0, "worker %d read wrong data at %lld",
		      i, workers[i].bad);
	}
	atomic_store(&s.stop, true);
	pthread_join(collapser.thread, NULL);
	fault_server_stop(&server);
	check(!atomic_load(&s.error), "a thread failed: %s",
	      errname(atomic_load(&s.error)));

	/* what was dropped after its last placement comes again */
	data = malloc(e->len);
	check(data, "malloc");
	pattern_fill(data, 0, e->len, e->seed);
	check_ret(mhgm_place(e->r, 0, data, e->len, 0), 0);
	free(data);
	check_collapsed(e);
	for (uint64_t o = 0; o < e->len; o += SZ_4K)
		check(page_mapped(e->guest + o), "offset %llu not mapped",
		      (unsigned long long)o);
	bad = pattern_check(e->guest, 0, e->len, e->seed);
	check(bad < 0, "wrong data at %lld", bad);
	check_ret(mhgm_region_stats(e->r, &st), 0);
	check_eq(st.pieces_copied, st.pieces + st.pieces_dropped);
	check(st.collapses > 0, "nothing collapsed by MADV_COLLAPSE");
	check_ret(mhgm_region_set_collapse(e->r, MHGM_COLLAPSE_MANUAL, -1), 0);
	close(s.efd);
	pass("phase 1: %d placers, %lu faults, %lu drops (%llu pieces), "
	     "%llu collapses: each piece copied once per drop plus one, "
	     "data verified, all hugepages one PMD", PLACERS,
	     atomic_load(&server.faults), atomic_load(&s.drops),
	     (unsigned long long)st.pieces_dropped,
	     (unsigned long long)st.collapses);
}

static void phase2(struct test_env *e)
{
	struct racer owners[OWNERS], collapser;
	uint64_t pieces = e->len / SZ_4K;
	struct racers s = { .e = e, .efd = -1, .seed_base = 2000,
			    .reads = READS, .owners = OWNERS, .rounds = ROUNDS,
			    .per_round = PER_ROUND };
	struct mhgm_stats before, st;

	check_ret(mhgm_region_stats(e->r, &before), 0);
	check_ret(mhgm_region_set_collapse(e->r, MHGM_COLLAPSE_ON_COMPLETE,
					   -1), 0);
	s.version = calloc(pieces, sizeof(*s.version));
	check(s.version, "calloc");
	for (uint64_t p = 0; p < pieces; p++)
		s.version[p] = e->seed;
	racer_start(&collapser, &s, 99, collapser_main);
	for (int i = 0; i < OWNERS; i++)
		racer_start(&owners[i], &s, i, racer_own);
	for (int i = 0; i < OWNERS; i++)
		pthread_join(owners[i].thread, NULL);
	atomic_store(&s.stop, true);
	pthread_join(collapser.thread, NULL);
	check(!atomic_load(&s.error), "a thread failed: %s",
	      errname(atomic_load(&s.error)));

	check_collapsed(e);
	for (uint64_t p = 0; p < pieces; p++) {
		long long bad = pattern_check(e->guest + p * SZ_4K, p * SZ_4K,
					      SZ_4K, s.version[p]);

		check(bad < 0, "piece %llu: not version %#x at %lld",
		      (unsigned long long)p, s.version[p], bad);
	}
	check_ret(mhgm_region_stats(e->r, &st), 0);
	check_eq(st.pieces_dropped - before.pieces_dropped,
		 OWNERS * ROUNDS * PER_ROUND);
	free(s.version);
	pass("phase 2: %d owners x %d drop+place with on-complete collapse "
	     "and %lu concurrent mhgm_collapse() calls: every piece holds its "
	     "last version, all hugepages one PMD", OWNERS, ROUNDS * PER_ROUND,
	     atomic_load(&s.collapse_calls));
}

int main(void)
{
	struct mhgm_probe probe;
	struct test_env e;

	watchdog(240);
	need_hgm(SZ_2M, &probe);
	if (mhgm_probe_has(&probe, MHGM_FEAT_COLLAPSE) != 1)
		skip("kernel has no MADV_COLLAPSE for hugetlb");
	need_hugepages(SZ_2M, NR_HP + 1);
	env_setup(&e, SZ_2M, NR_HP, 0, false);
	check_ret(mhgm_region_split(e.r), 0);
	env_register(&e);
	check_ret(mhgm_region_populate(e.r, NULL, NULL), 0);
	phase1(&e);
	phase2(&e);
	env_teardown(&e);
	return KSFT_PASS;
}

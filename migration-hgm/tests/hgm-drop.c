// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * hgm-drop: 4 KiB drop on a kernel with HGM (skips elsewhere).
 *
 *  registered  dropping a piece of a hugepage mapped whole unmaps that piece
 *              only: the rest is read without a single fault, the page
 *              cache and the hugepage pool are untouched, a fault on the
 *              dropped piece asks for that piece only, and the new data is
 *              mapped when it comes;
 *  precopy     the postcopy order (written through the guest mapping,
 *              split, drop, then register): the kernel unmaps hugetlb
 *              memory in whole hugepages only, so the hugepages of the
 *              dropped pieces are unmapped; the first fault on each maps
 *              all its kept pieces at once, only the dropped pieces are
 *              asked for, and a collapse leaves every hugepage one PMD;
 *  ranges      mhgm_drop_ranges() of many pieces of hugepages mapped whole
 *              unmaps exactly those pieces, with one unmap per hugepage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <unistd.h>

#include "helpers.h"

#define NR_HP	2
#define SEED2	0xd00d

/* A split, registered region with every piece placed and mapped */
static void placed_region(struct test_env *e, char *data)
{
	env_setup(e, SZ_2M, NR_HP, 0, false);
	check_ret(mhgm_region_split(e->r), 0);
	env_register(e);
	check_ret(mhgm_region_populate(e->r, NULL, NULL), 0);
	pattern_fill(data, 0, e->len, e->seed);
	check_ret(mhgm_place(e->r, 0, data, e->len, 0), 0);
}

static void registered(void)
{
	struct fault_server server;
	struct mhgm_stats st;
	struct mhgm_range req;
	struct test_env e;
	uint64_t ppp = SZ_2M / SZ_4K, buf[SZ_4K / 8];
	char *data = malloc(NR_HP * SZ_2M);
	long free_before;
	long long bad;

	placed_region(&e, data);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.hugepages_collapsed, NR_HP);	/* continued whole */

	free_before = free_hugepages(SZ_2M);
	check_ret(mhgm_drop(e.r, 7 * SZ_4K, SZ_4K), 0);
	check(!page_mapped(e.guest + 7 * SZ_4K), "dropped piece mapped");
	check(page_mapped(e.guest + 6 * SZ_4K) &&
	      page_mapped(e.guest + 8 * SZ_4K), "neighbours unmapped");
	check_eq(free_hugepages(SZ_2M), free_before);
	bad = pattern_check(mhgm_region_alias(e.r), 0, e.len, e.seed);
	check(bad < 0, "page cache changed at %lld", bad);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.pieces_present, NR_HP * ppp - 1);
	check_eq(st.pieces_mapped, NR_HP * ppp - 1);
	check_eq(st.hugepages_split, 1);
	check_eq(st.hugepages_collapsed, NR_HP - 1);
	pass("drop of one piece: only it is unmapped; page cache and pool "
	     "untouched");

	/* everything else reads without a fault */
	fault_server_start(&server, &e, false);
	bad = pattern_check(e.guest, 0, 7 * SZ_4K, e.seed);
	check(bad < 0, "wrong data at %lld", bad);
	bad = pattern_check(e.guest + 8 * SZ_4K, 8 * SZ_4K,
			    e.len - 8 * SZ_4K, e.seed);
	check(bad < 0, "wrong data at %lld", bad);
	check_eq(atomic_load(&server.faults), 0);
	fault_server_stop(&server);
	pass("the other pieces read without a fault");

	check_ret(mhgm_fault(e.r, 7 * SZ_4K + 12, 0, &req),
		  MHGM_FAULT_MISSING);
	check_eq(req.offset, 7 * SZ_4K);
	check_eq(req.length, SZ_4K);
	check_ret(mhgm_fault(e.r, 6 * SZ_4K, 0, &req), MHGM_FAULT_MAPPED);
	pattern_fill(buf, 7 * SZ_4K, SZ_4K, SEED2);
	check_ret(mhgm_place(e.r, 7 * SZ_4K, buf, SZ_4K, 0), 0);
	check(page_mapped(e.guest + 7 * SZ_4K), "re-placed piece unmapped");
	bad = pattern_check(e.guest + 7 * SZ_4K, 7 * SZ_4K, SZ_4K, SEED2);
	check(bad < 0, "new data wrong at %lld", bad);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.pieces_mapped, NR_HP * ppp);
	check_eq(st.latency.count, 2);	/* piece 6 at once, piece 7 now */
	pass("fault asks for the 4 KiB piece; new data mapped");

	/* across the hugepage boundary */
	check_ret(mhgm_drop(e.r, SZ_2M - SZ_4K, 2 * SZ_4K), 0);
	check(!page_mapped(e.guest + SZ_2M - SZ_4K) &&
	      !page_mapped(e.guest + SZ_2M), "dropped pieces mapped");
	check(page_mapped(e.guest + SZ_2M - 2 * SZ_4K) &&
	      page_mapped(e.guest + SZ_2M + SZ_4K), "neighbours unmapped");
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.hugepages_split, NR_HP);
	check_eq(st.hugepages_collapsed, 0);
	pass("drop across the hugepage boundary");
	env_teardown(&e);
	free(data);
}

static void precopy(void)
{
	const uint64_t ppp = SZ_2M / SZ_4K;
	const uint64_t dropped[] = { 7, ppp + 100 };
	struct fault_server server;
	struct mhgm_stats st;
	struct test_env e;
	char *alias;
	long long bad;

	env_setup(&e, SZ_2M, NR_HP, MHGM_REGION_INIT_PRESENT, false);
	pattern_fill(e.guest, 0, e.len, e.seed);
	check_ret(mhgm_region_split(e.r), 0);
	alias = mhgm_region_alias(e.r);
	for (unsigned int i = 0; i < 2; i++) {
		check_ret(mhgm_drop(e.r, dropped[i] * SZ_4K, SZ_4K), 0);
		/* stale data the source must replace */
		memset(alias + dropped[i] * SZ_4K, 0xee, SZ_4K);
	}
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.pieces_present, NR_HP * ppp - 2);
	check_eq(st.pieces_mapped, 0);
	check_eq(st.pieces_dropped, 2);
	for (uint64_t o = 0; o < e.len; o += SZ_4K)
		check(!page_mapped(e.guest + o), "offset %llu still mapped",
		      (unsigned long long)o);
	pass("precopy: drop before registration unmaps the hugepages of the "
	     "dropped pieces, keeps the rest present");

	env_register(&e);
	fault_server_start(&server, &e, false);
	for (uint64_t p = 0; p < NR_HP * ppp; p++) {
		if (p == dropped[0] || p == dropped[1])
			continue;
		bad = pattern_check(e.guest + p * SZ_4K, p * SZ_4K, SZ_4K,
				    e.seed);
		check(bad < 0, "wrong data at %lld", bad);
	}
	/* the server counts after mhgm_fault() returns: count in the library */
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.faults, NR_HP);
	check_eq(atomic_load(&server.missing), 0);
	for (unsigned int i = 0; i < 2; i++) {
		uint64_t o = dropped[i] * SZ_4K;

		bad = pattern_check(e.guest + o, o, SZ_4K, e.seed);
		check(bad < 0, "dropped piece: wrong data at %lld", bad);
	}
	fault_server_stop(&server);
	check_eq(atomic_load(&server.missing), 2);
	check_eq(atomic_load(&server.max_request), SZ_4K);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.pieces_mapped, NR_HP * ppp);
	check_eq(st.pieces_copied, 2);
	pass("precopy: one fault per hugepage maps its kept pieces; only the "
	     "2 dropped pieces fetched, new data mapped");

	check_ret(mhgm_collapse(e.r, 0, e.len, NULL), 0);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.hugepages_collapsed, NR_HP);
	check_eq(smaps_field(e.guest, "HugetlbPteMapped"), 0);
	check_eq(smaps_field(e.guest, "HugetlbPmdMapped"), e.len >> 10);
	bad = pattern_check(e.guest, 0, e.len, e.seed);
	check(bad < 0, "wrong data after collapse at %lld", bad);
	pass("precopy: collapsed to one PMD per hugepage, data verified");
	env_teardown(&e);
}

static void ranges(void)
{
	const uint64_t ppp = SZ_2M / SZ_4K;
	struct mhgm_range r[64];
	struct mhgm_stats st;
	struct test_env e;
	char *data = malloc(NR_HP * SZ_2M);
	unsigned int n = 0;
	long long bad;

	placed_region(&e, data);
	/* every third piece of the last 96 of hugepage 0 and the first 96 of 1 */
	for (uint64_t p = ppp - 96; p < ppp + 96; p += 3)
		r[n++] = (struct mhgm_range){ p * SZ_4K, SZ_4K };
	check_ret(mhgm_drop_ranges(e.r, r, n), 0);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.drop_unmaps, 2);
	check_eq(st.pieces_dropped, n);
	check_eq(st.pieces_mapped, NR_HP * ppp - n);
	for (uint64_t p = ppp - 99; p < ppp + 99; p++) {
		bool dropped = p >= ppp - 96 && p < ppp + 96 &&
			       (p - (ppp - 96)) % 3 == 0;

		check(page_mapped(e.guest + p * SZ_4K) == !dropped,
		      "piece %llu %s", (unsigned long long)p,
		      dropped ? "still mapped" : "unmapped");
	}
	bad = pattern_check(mhgm_region_alias(e.r), 0, e.len, e.seed);
	check(bad < 0, "page cache changed at %lld", bad);
	pass("ranges: %u single pieces over 2 hugepages: 2 unmaps, exactly "
	     "those pieces unmapped", n);
	env_teardown(&e);
	free(data);
}

int main(void)
{
	struct mhgm_probe probe;

	watchdog(120);
	need_hgm(SZ_2M, &probe);
	need_hugepages(SZ_2M, NR_HP + 1);
	registered();
	precopy();
	ranges();
	return KSFT_PASS;
}

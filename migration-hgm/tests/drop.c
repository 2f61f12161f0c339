// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * drop: mhgm_drop() forgets re-dirtied pieces without discarding any
 * hugepage.  In fallback mode the hugepage is unmapped whole, keeps its
 * other pieces present, is asked for only the dropped span, and is mapped
 * again when the dropped pieces come back with new data.  Also from a region
 * that starts fully present (after precopy through the guest mapping).
 * mhgm_drop_ranges() drops exactly the pieces of its ranges with one unmap
 * per hugepage they touch, and drops nothing on bad input.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/userfaultfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"

#define NR_HP	4
#define SEED2	0xbeef

static int hp_mapped(struct test_env *e, uint64_t hp)
{
	int first = page_mapped(e->guest + hp * e->hpsize);

	for (uint64_t o = SZ_4K; o < e->hpsize; o += SZ_4K)
		if (page_mapped(e->guest + hp * e->hpsize + o) != first)
			fail("hugepage %llu mapped in part",
			     (unsigned long long)hp);
	return first;
}

static void place_pattern(struct test_env *e, uint64_t off, uint64_t len,
			  uint64_t seed)
{
	char *buf = malloc(len);

	pattern_fill(buf, off, len, seed);
	check_ret(mhgm_place(e->r, off, buf, len, 0), 0);
	free(buf);
}

static void expect_request(struct test_env *e, uint64_t fault_off,
			   uint64_t want_off, uint64_t want_len)
{
	struct mhgm_range req;

	check_ret(mhgm_fault(e->r, fault_off, 0, &req), MHGM_FAULT_MISSING);
	check_eq(req.offset, want_off);
	check_eq(req.length, want_len);
}

static void fallback_drop(void)
{
	struct test_env e;
	struct mhgm_stats st;
	const char *alias;
	uint64_t ppp = SZ_2M / SZ_4K;
	long free_before;
	long long bad;

	env_setup(&e, SZ_2M, NR_HP, 0, true);
	check_ret(mhgm_region_populate(e.r, NULL, NULL), 0);
	place_pattern(&e, 0, 2 * SZ_2M, e.seed);
	check(hp_mapped(&e, 0) && hp_mapped(&e, 1), "placed, mapped");

	free_before = free_hugepages(SZ_2M);
	check_ret(mhgm_drop(e.r, 7 * SZ_4K, SZ_4K), 0);
	check(!hp_mapped(&e, 0), "hugepage 0 still mapped after drop");
	check(hp_mapped(&e, 1), "hugepage 1 unmapped by a drop in 0");
	check_eq(free_hugepages(SZ_2M), free_before);
	alias = mhgm_region_alias(e.r);
	bad = pattern_check(alias, 0, 2 * SZ_2M, e.seed);
	check(bad < 0, "page cache changed by drop at %lld", bad);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.pieces_present, 2 * ppp - 1);
	check_eq(st.pieces_mapped, ppp);
	check_eq(st.pieces_dropped, 1);
	check_eq(st.hugepages_complete, 1);
	check_eq(st.hugepages_collapsed, 1);
	pass("drop of one piece: hugepage unmapped whole, page cache and pool "
	     "untouched");

	/* faults anywhere in it ask for the dropped piece only */
	expect_request(&e, 7 * SZ_4K + 100, 7 * SZ_4K, SZ_4K);
	expect_request(&e, 3 * SZ_4K, 7 * SZ_4K, SZ_4K);
	place_pattern(&e, 7 * SZ_4K, SZ_4K, SEED2);
	check(hp_mapped(&e, 0), "not mapped again after the dropped piece");
	bad = pattern_check(e.guest + 7 * SZ_4K, 7 * SZ_4K, SZ_4K, SEED2);
	check(bad < 0, "new data of the dropped piece wrong at %lld", bad);
	bad = pattern_check(e.guest, 0, 7 * SZ_4K, e.seed);
	check(bad < 0, "kept data wrong at %lld", bad);
	bad = pattern_check(e.guest + 8 * SZ_4K, 8 * SZ_4K,
			    SZ_2M - 8 * SZ_4K, e.seed);
	check(bad < 0, "kept data wrong at %lld", bad);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.latency.count, 2);		/* the two noted faults */
	check_eq(st.pieces_present, 2 * ppp);
	check_eq(st.hugepages_collapsed, 2);
	pass("fault asks for the dropped span; new data mapped, the rest kept");

	/* a range across two hugepages */
	check_ret(mhgm_drop(e.r, SZ_2M - 2 * SZ_4K, 4 * SZ_4K), 0);
	check(!hp_mapped(&e, 0) && !hp_mapped(&e, 1), "both unmapped");
	expect_request(&e, SZ_2M - SZ_4K, SZ_2M - 2 * SZ_4K, 2 * SZ_4K);
	expect_request(&e, SZ_2M + 99 * SZ_4K, SZ_2M, 2 * SZ_4K);
	/* pieces never received: nothing to drop, no error */
	check_ret(mhgm_drop(e.r, 2 * SZ_2M, SZ_2M), 0);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.pieces_dropped, 5);
	check_eq(st.pieces_present, 2 * ppp - 4);
	check_eq(st.hugepages_complete, 0);
	check_eq(st.hugepages_collapsed, 0);
	place_pattern(&e, SZ_2M - 2 * SZ_4K, 4 * SZ_4K, SEED2);
	check(hp_mapped(&e, 0) && hp_mapped(&e, 1), "both mapped again");
	bad = pattern_check(e.guest + SZ_2M - 2 * SZ_4K, SZ_2M - 2 * SZ_4K,
			    4 * SZ_4K, SEED2);
	check(bad < 0, "wrong data at %lld", bad);
	pass("drop across hugepages; drop of absent pieces is a no-op");
	env_teardown(&e);
}

/* Many ranges at once: one unmap per hugepage, nothing on bad input. */
static void drop_ranges(void)
{
	const uint64_t ppp = SZ_2M / SZ_4K;
	const struct mhgm_range ranges[] = {
		{ 5 * SZ_4K, SZ_4K },
		{ 9 * SZ_4K, 2 * SZ_4K },
		{ SZ_2M - SZ_4K, 2 * SZ_4K },		/* hugepages 0 and 1 */
		{ SZ_2M + 100 * SZ_4K, SZ_4K },
		{ 3 * SZ_2M + SZ_4K, SZ_4K },
	};
	const struct mhgm_range unsorted[] = {
		{ 9 * SZ_4K, SZ_4K }, { 5 * SZ_4K, SZ_4K },
	};
	const struct mhgm_range overlap[] = {
		{ 5 * SZ_4K, 2 * SZ_4K }, { 6 * SZ_4K, SZ_4K },
	};
	const struct mhgm_range past_end[] = {
		{ 5 * SZ_4K, SZ_4K }, { NR_HP * SZ_2M, SZ_4K },
	};
	const struct mhgm_range unaligned[] = {
		{ 5 * SZ_4K, SZ_4K }, { 6 * SZ_4K + 8, SZ_4K },
	};
	struct mhgm_stats st;
	struct test_env e;
	long long bad;

	env_setup(&e, SZ_2M, NR_HP, 0, true);
	check_ret(mhgm_region_populate(e.r, NULL, NULL), 0);
	place_pattern(&e, 0, e.len, e.seed);
	for (uint64_t i = 0; i < NR_HP; i++)
		check(hp_mapped(&e, i), "hugepage %llu not mapped",
		      (unsigned long long)i);

	check_ret(mhgm_drop_ranges(e.r, unsorted, 2), -EINVAL);
	check_ret(mhgm_drop_ranges(e.r, overlap, 2), -EINVAL);
	check_ret(mhgm_drop_ranges(e.r, past_end, 2), -ERANGE);
	check_ret(mhgm_drop_ranges(e.r, unaligned, 2), -EINVAL);
	check_ret(mhgm_drop_ranges(e.r, ranges, 0), -EINVAL);
	check_ret(mhgm_drop_ranges(e.r, NULL, 1), -EINVAL);
	check_ret(mhgm_drop_ranges(NULL, ranges, 1), -EINVAL);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.pieces_dropped, 0);
	check_eq(st.drop_unmaps, 0);
	check_eq(st.pieces_present, NR_HP * ppp);
	for (uint64_t i = 0; i < NR_HP; i++)
		check(hp_mapped(&e, i), "hugepage %llu unmapped by bad input",
		      (unsigned long long)i);
	pass("drop_ranges: unsorted, overlapping, out-of-range, unaligned and "
	     "empty lists drop nothing");

	check_ret(mhgm_drop_ranges(e.r, ranges, 5), 0);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.drop_unmaps, 3);		/* hugepages 0, 1 and 3 */
	check_eq(st.pieces_dropped, 7);
	check_eq(st.pieces_present, NR_HP * ppp - 7);
	check(!hp_mapped(&e, 0) && !hp_mapped(&e, 1) && !hp_mapped(&e, 3),
	      "a hugepage with dropped pieces still mapped");
	check(hp_mapped(&e, 2), "hugepage 2 unmapped");
	/* fallback mode asks for the span from the first to the last missing */
	expect_request(&e, 0, 5 * SZ_4K, SZ_2M - 5 * SZ_4K);
	expect_request(&e, SZ_2M, SZ_2M, 101 * SZ_4K);
	expect_request(&e, 3 * SZ_2M, 3 * SZ_2M + SZ_4K, SZ_4K);
	bad = pattern_check(mhgm_region_alias(e.r), 0, e.len, e.seed);
	check(bad < 0, "page cache changed by drop at %lld", bad);
	pass("drop_ranges: exactly the pieces of 5 ranges, one unmap for each "
	     "of the 3 hugepages they touch");
	env_teardown(&e);
}

/* Precopy wrote through the guest mapping; then the region is created. */
static void precopy_drop(void)
{
	struct mhgm_region_params p;
	struct mhgm_stats st;
	struct test_env e = { .hpsize = SZ_2M, .len = 2 * SZ_2M,
			      .seed = 77 };
	long long bad;
	int ret;

	e.memfd = hugetlb_memfd(SZ_2M, e.len);
	e.guest = mmap(NULL, e.len, PROT_READ | PROT_WRITE, MAP_SHARED,
		       e.memfd, 0);
	check(e.guest != MAP_FAILED, "mmap");
	pattern_fill(e.guest, 0, e.len, e.seed);
	p = (struct mhgm_region_params){
		.fd = e.memfd, .map_flags = MAP_SHARED, .length = e.len,
		.guest = e.guest, .flags = MHGM_REGION_INIT_PRESENT,
	};
	check_ret(mhgm_region_create(&p, &e.r), 0);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.pieces_present, st.pieces);
	check_eq(st.pieces_mapped, st.pieces);
	check_eq(st.hugepages_collapsed, 2);
	e.uffd = uffd_open(UFFD_FEATURE_MINOR_HUGETLBFS);
	check(e.uffd >= 0, "uffd");
	check_ret(mhgm_region_register(e.r, e.uffd), 0);

	check_ret(mhgm_drop(e.r, SZ_2M, SZ_4K), 0);
	check_ret(mhgm_drop(e.r, SZ_2M + 100 * SZ_4K, SZ_4K), 0);
	check(hp_mapped(&e, 0), "hugepage 0 untouched");
	check(!hp_mapped(&e, 1), "hugepage 1 unmapped");
	expect_request(&e, SZ_2M + 50 * SZ_4K, SZ_2M, 101 * SZ_4K);
	place_pattern(&e, SZ_2M, SZ_4K, SEED2);
	check(!hp_mapped(&e, 1), "mapped with a piece still missing");
	place_pattern(&e, SZ_2M + 100 * SZ_4K, SZ_4K, SEED2);
	check(hp_mapped(&e, 1), "not mapped when complete");
	bad = pattern_check(e.guest + SZ_2M, SZ_2M, SZ_4K, SEED2);
	check(bad < 0, "wrong data at %lld", bad);
	bad = pattern_check(e.guest + SZ_2M + SZ_4K, SZ_2M + SZ_4K,
			    99 * SZ_4K, e.seed);
	check(bad < 0, "wrong data at %lld", bad);
	bad = pattern_check(e.guest + SZ_2M + 100 * SZ_4K,
			    SZ_2M + 100 * SZ_4K, SZ_4K, SEED2);
	check(bad < 0, "wrong data at %lld", bad);
	ret = mhgm_region_stats(e.r, &st);
	check_ret(ret, 0);
	check_eq(st.pieces_dropped, 2);
	check_eq(st.pieces_copied, 2);
	env_teardown(&e);
	pass("precopy region: drop, request, re-place, data verified");
}

int main(void)
{
	watchdog(60);
	need_hugepages(SZ_2M, NR_HP + 2);
	fallback_drop();
	drop_ranges();
	precopy_drop();
	return KSFT_PASS;
}

// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * hgm-collapse: the collapse policies on a kernel with HGM and MADV_COLLAPSE
 * for hugetlb (skips elsewhere).
 *
 *  manual       a hugepage completed in pieces stays split until
 *               mhgm_collapse(), which reports it;
 *  on-complete  the place of the last piece collapses it;
 *  deferred     it is queued, the eventfd fires, mhgm_collapse_pending()
 *               collapses it;
 *  whole        a hugepage placed in one call is mapped whole at once, no
 *               MADV_COLLAPSE needed;
 *  drop         a collapsed hugepage that loses a piece is split again and
 *               queued again when complete.
 * smaps' HugetlbPteMapped is checked where the kernel reports it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "helpers.h"

#define NR_HP	4

static void place_pieces(struct test_env *e, uint64_t hp)
{
	uint64_t buf[SZ_4K / 8];

	for (uint64_t o = hp * SZ_2M; o < (hp + 1) * SZ_2M; o += SZ_4K) {
		pattern_fill(buf, o, SZ_4K, e->seed);
		check_ret(mhgm_place(e->r, o, buf, SZ_4K, 0), 0);
	}
}

static struct mhgm_stats stats(struct test_env *e)
{
	struct mhgm_stats st;

	check_ret(mhgm_region_stats(e->r, &st), 0);
	return st;
}

static bool efd_fired(int efd)
{
	struct pollfd pfd = { .fd = efd, .events = POLLIN };
	uint64_t v;

	if (poll(&pfd, 1, 0) != 1)
		return false;
	return read(efd, &v, sizeof(v)) == sizeof(v) && v > 0;
}

int main(void)
{
	struct mhgm_probe probe;
	struct test_env e;
	char *data;
	uint64_t n;
	long long bad;
	int efd;

	watchdog(120);
	need_hgm(SZ_2M, &probe);
	if (mhgm_probe_has(&probe, MHGM_FEAT_COLLAPSE) != 1)
		skip("kernel has no MADV_COLLAPSE for hugetlb");
	need_hugepages(SZ_2M, NR_HP + 1);
	env_setup(&e, SZ_2M, NR_HP, 0, false);
	check_ret(mhgm_region_split(e.r), 0);
	env_register(&e);
	check_ret(mhgm_region_populate(e.r, NULL, NULL), 0);

	place_pieces(&e, 0);
	check_eq(stats(&e).hugepages_split, 1);
	check_eq(stats(&e).hugepages_collapsed, 0);
	check(smaps_field(e.guest, "HugetlbPteMapped") != 0, "no PTE mapping");
	check_ret(mhgm_collapse(e.r, 0, e.len, &n), 0);
	check_eq(n, 1);
	check_eq(stats(&e).hugepages_split, 0);
	check_eq(stats(&e).hugepages_collapsed, 1);
	check_eq(stats(&e).collapses, 1);
	check(smaps_field(e.guest, "HugetlbPteMapped") <= 0,
	      "PTE mappings left after collapse");
	check_ret(mhgm_collapse(e.r, 0, e.len, &n), 0);
	check_eq(n, 0);
	pass("manual: split until mhgm_collapse(), which reports 1");

	check_ret(mhgm_region_set_collapse(e.r, MHGM_COLLAPSE_ON_COMPLETE, -1),
		  0);
	place_pieces(&e, 1);
	check_eq(stats(&e).hugepages_collapsed, 2);
	check_eq(stats(&e).collapses, 2);
	pass("on-complete: collapsed by the last place");

	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	check_ret(mhgm_region_set_collapse(e.r, MHGM_COLLAPSE_DEFERRED, efd),
		  0);
	place_pieces(&e, 2);
	check(efd_fired(efd), "eventfd not signalled");
	check_eq(stats(&e).hugepages_queued, 1);
	check_eq(stats(&e).hugepages_collapsed, 2);
	check_ret(mhgm_collapse_pending(e.r, 0, &n), 0);
	check_eq(n, 1);
	check_eq(stats(&e).hugepages_queued, 0);
	check_eq(stats(&e).hugepages_collapsed, 3);
	pass("deferred: queued, eventfd fired, collapsed by "
	     "mhgm_collapse_pending()");

	data = malloc(SZ_2M);
	pattern_fill(data, 3 * SZ_2M, SZ_2M, e.seed);
	check_ret(mhgm_place(e.r, 3 * SZ_2M, data, SZ_2M, 0), 0);
	check_eq(stats(&e).hugepages_collapsed, 4);
	check_eq(stats(&e).collapses, 3);
	check_eq(stats(&e).hugepages_queued, 0);
	pass("whole placement: mapped whole without MADV_COLLAPSE");

	check_ret(mhgm_drop(e.r, 3 * SZ_2M + 5 * SZ_4K, SZ_4K), 0);
	check_eq(stats(&e).hugepages_split, 1);
	check_eq(stats(&e).hugepages_collapsed, 3);
	check_ret(mhgm_place(e.r, 3 * SZ_2M + 5 * SZ_4K,
			     data + 5 * SZ_4K, SZ_4K, 0), 0);
	check(efd_fired(efd), "eventfd not signalled");
	check_ret(mhgm_collapse_pending(e.r, 0, &n), 0);
	check_eq(n, 1);
	check_eq(stats(&e).hugepages_collapsed, NR_HP);
	bad = pattern_check(e.guest, 0, e.len, e.seed);
	check(bad < 0, "wrong data at %lld", bad);
	pass("drop splits a collapsed hugepage; re-completed, queued, "
	     "collapsed; all data verified");
	env_teardown(&e);
	close(efd);
	free(data);
	return KSFT_PASS;
}

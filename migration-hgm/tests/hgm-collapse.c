// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * hgm-collapse: the collapse policies on a kernel with HGM and MADV_COLLAPSE
 * for hugetlb (skips elsewhere), with the kernel's page tables read back
 * from the HugetlbPudMapped/PmdMapped/PteMapped lines of smaps after every
 * step.
 *
 *  manual       a hugepage completed in pieces stays split (mapped by PTEs)
 *               until mhgm_collapse(), which reports it and leaves it
 *               mapped by one PMD;
 *  on-complete  the place of the last piece collapses it;
 *  deferred     it is queued, the eventfd fires, mhgm_collapse_pending()
 *               collapses it;
 *  whole        a hugepage placed in one call is mapped by one PMD at once,
 *               no MADV_COLLAPSE needed;
 *  drop         a collapsed hugepage that loses a piece is split again and
 *               queued again when complete;
 *  1 GiB        (when a 1 GiB page is free) a page mapped by PTEs and PMDs
 *               is collapsed to one PUD.
 * Every byte is checked through the guest mapping after each collapse.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "helpers.h"

#define NR_HP	4
#define KB_2M	(SZ_2M >> 10)

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

/*
 * The guest mapping must be mapped by exactly @pud, @pmd and @pte kB of
 * PUD, PMD and PTE entries, as the kernel reports it in smaps.
 */
static void check_smaps(struct test_env *e, long pud, long pmd, long pte)
{
	long got_pud = smaps_field(e->guest, "HugetlbPudMapped");
	long got_pmd = smaps_field(e->guest, "HugetlbPmdMapped");
	long got_pte = smaps_field(e->guest, "HugetlbPteMapped");

	check(got_pud >= 0 && got_pmd >= 0 && got_pte >= 0,
	      "smaps has no HugetlbPud/Pmd/PteMapped lines");
	check(got_pud == pud && got_pmd == pmd && got_pte == pte,
	      "smaps: HugetlbPudMapped %ld HugetlbPmdMapped %ld "
	      "HugetlbPteMapped %ld kB, expected %ld %ld %ld kB",
	      got_pud, got_pmd, got_pte, pud, pmd, pte);
}

static void check_data(struct test_env *e, uint64_t off, uint64_t len)
{
	long long bad = pattern_check(e->guest + off, off, len, e->seed);

	check(bad < 0, "wrong data at %lld", bad);
}

static void run_2m(void)
{
	struct test_env e;
	char *data;
	uint64_t n;
	int efd;

	need_hugepages(SZ_2M, NR_HP + 1);
	env_setup(&e, SZ_2M, NR_HP, 0, false);
	check_ret(mhgm_region_split(e.r), 0);
	env_register(&e);
	check_ret(mhgm_region_populate(e.r, NULL, NULL), 0);
	check_smaps(&e, 0, 0, 0);

	place_pieces(&e, 0);
	check_eq(stats(&e).hugepages_split, 1);
	check_eq(stats(&e).hugepages_collapsed, 0);
	check_smaps(&e, 0, 0, KB_2M);
	check_ret(mhgm_collapse(e.r, 0, e.len, &n), 0);
	check_eq(n, 1);
	check_eq(stats(&e).hugepages_split, 0);
	check_eq(stats(&e).hugepages_collapsed, 1);
	check_eq(stats(&e).collapses, 1);
	check_smaps(&e, 0, KB_2M, 0);
	check_data(&e, 0, SZ_2M);
	check_ret(mhgm_collapse(e.r, 0, e.len, &n), 0);
	check_eq(n, 0);
	check_smaps(&e, 0, KB_2M, 0);
	pass("manual: split (2048 kB of PTEs) until mhgm_collapse(), which "
	     "reports 1; then one PMD, data intact");

	check_ret(mhgm_region_set_collapse(e.r, MHGM_COLLAPSE_ON_COMPLETE, -1),
		  0);
	place_pieces(&e, 1);
	check_eq(stats(&e).hugepages_collapsed, 2);
	check_eq(stats(&e).collapses, 2);
	check_smaps(&e, 0, 2 * KB_2M, 0);
	check_data(&e, SZ_2M, SZ_2M);
	pass("on-complete: collapsed by the last place");

	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	check(efd >= 0, "eventfd");
	check_ret(mhgm_region_set_collapse(e.r, MHGM_COLLAPSE_DEFERRED, efd),
		  0);
	place_pieces(&e, 2);
	check(efd_fired(efd), "eventfd not signalled");
	check_eq(stats(&e).hugepages_queued, 1);
	check_eq(stats(&e).hugepages_collapsed, 2);
	check_smaps(&e, 0, 2 * KB_2M, KB_2M);
	check_ret(mhgm_collapse_pending(e.r, 0, &n), 0);
	check_eq(n, 1);
	check_eq(stats(&e).hugepages_queued, 0);
	check_eq(stats(&e).hugepages_collapsed, 3);
	check_smaps(&e, 0, 3 * KB_2M, 0);
	check_data(&e, 2 * SZ_2M, SZ_2M);
	pass("deferred: queued, eventfd fired, collapsed by "
	     "mhgm_collapse_pending()");

	data = malloc(SZ_2M);
	check(data, "malloc");
	pattern_fill(data, 3 * SZ_2M, SZ_2M, e.seed);
	check_ret(mhgm_place(e.r, 3 * SZ_2M, data, SZ_2M, 0), 0);
	check_eq(stats(&e).hugepages_collapsed, 4);
	check_eq(stats(&e).collapses, 3);
	check_eq(stats(&e).hugepages_queued, 0);
	check_smaps(&e, 0, 4 * KB_2M, 0);
	pass("whole placement: mapped by one PMD without MADV_COLLAPSE");

	check_ret(mhgm_drop(e.r, 3 * SZ_2M + 5 * SZ_4K, SZ_4K), 0);
	check_eq(stats(&e).hugepages_split, 1);
	check_eq(stats(&e).hugepages_collapsed, 3);
	check_smaps(&e, 0, 3 * KB_2M, KB_2M - 4);
	check_ret(mhgm_place(e.r, 3 * SZ_2M + 5 * SZ_4K,
			     data + 5 * SZ_4K, SZ_4K, 0), 0);
	check(efd_fired(efd), "eventfd not signalled");
	check_smaps(&e, 0, 3 * KB_2M, KB_2M);
	check_ret(mhgm_collapse_pending(e.r, 0, &n), 0);
	check_eq(n, 1);
	check_eq(stats(&e).hugepages_collapsed, NR_HP);
	check_smaps(&e, 0, NR_HP * KB_2M, 0);
	check_data(&e, 0, e.len);
	pass("drop splits a collapsed hugepage; re-completed, queued, "
	     "collapsed; all data verified");
	env_teardown(&e);
	close(efd);
	free(data);
}

/*
 * One 1 GiB page: one piece placed alone (a PTE), the rest received
 * straight into the alias and mapped with mhgm_map(), which maps it with
 * PTEs up to the first 2 MiB boundary and PMDs after it; mhgm_collapse()
 * leaves one PUD.
 */
static void run_1g(void)
{
	const uint64_t x = 10 * SZ_4K;
	uint64_t buf[SZ_4K / 8], n;
	struct test_env e;
	char *alias;

	env_setup(&e, SZ_1G, 1, 0, false);
	check_ret(mhgm_region_split(e.r), 0);
	env_register(&e);
	check_ret(mhgm_region_populate(e.r, NULL, NULL), 0);

	pattern_fill(buf, x, SZ_4K, e.seed);
	check_ret(mhgm_place(e.r, x, buf, SZ_4K, 0), 0);
	check_smaps(&e, 0, 0, 4);

	alias = mhgm_region_alias(e.r);
	pattern_fill(alias, 0, x, e.seed);
	pattern_fill(alias + x + SZ_4K, x + SZ_4K, SZ_1G - x - SZ_4K, e.seed);
	check_ret(mhgm_map(e.r, 0, x, 0), 0);
	check_ret(mhgm_map(e.r, x + SZ_4K, SZ_1G - x - SZ_4K, 0), 0);
	check_eq(stats(&e).hugepages_complete, 1);
	check_eq(stats(&e).hugepages_split, 1);
	check_smaps(&e, 0, (SZ_1G - SZ_2M) >> 10, KB_2M);

	check_ret(mhgm_collapse(e.r, 0, SZ_1G, &n), 0);
	check_eq(n, 1);
	check_eq(stats(&e).hugepages_collapsed, 1);
	check_smaps(&e, SZ_1G >> 10, 0, 0);
	check_data(&e, 0, SZ_1G);
	pass("1 GiB: PTEs and PMDs collapsed to one PUD, data intact");
	env_teardown(&e);
}

int main(void)
{
	struct mhgm_probe probe;

	watchdog(300);
	need_hgm(SZ_2M, &probe);
	if (mhgm_probe_has(&probe, MHGM_FEAT_COLLAPSE) != 1)
		skip("kernel has no MADV_COLLAPSE for hugetlb");
	run_2m();
	if (free_hugepages(SZ_1G) >= 1 && !mhgm_probe(SZ_1G, &probe) &&
	    probe.mode == MHGM_MODE_HGM &&
	    mhgm_probe_has(&probe, MHGM_FEAT_COLLAPSE) == 1)
		run_1g();
	else
		printf("1 GiB pages: not run (need one free, HGM and "
		       "MADV_COLLAPSE)\n");
	return KSFT_PASS;
}

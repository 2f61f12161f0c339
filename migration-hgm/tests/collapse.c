// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * collapse: mhgm_collapse() and the policies in fallback mode, where
 * hugepages are only ever mapped whole.  Complete hugepages that were placed
 * with MHGM_PLACE_NOMAP are mapped whole by mhgm_collapse() (and counted);
 * incomplete ones are left alone; nothing is ever queued; an unregistered
 * region cannot map and says so by collapsing nothing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "helpers.h"

#define NR_HP	3

static struct mhgm_stats stats(struct test_env *e)
{
	struct mhgm_stats st;

	check_ret(mhgm_region_stats(e->r, &st), 0);
	return st;
}

int main(void)
{
	struct pollfd pfd;
	struct test_env e;
	char *data = malloc(SZ_2M);
	uint64_t n;
	long long bad;
	int efd;

	watchdog(60);
	need_hugepages(SZ_2M, NR_HP + 1);
	env_setup(&e, SZ_2M, NR_HP, 0, false);

	/* not registered: pieces become present, nothing can be mapped */
	pattern_fill(data, 0, SZ_2M, e.seed);
	check_ret(mhgm_place(e.r, 0, data, SZ_2M, 0), 0);
	check_eq(stats(&e).hugepages_complete, 1);
	check_eq(stats(&e).pieces_mapped, 0);
	check_ret(mhgm_collapse(e.r, 0, e.len, &n), 0);
	check_eq(n, 0);
	pass("unregistered: complete but unmapped, collapse maps nothing");

	env_register(&e);
	check(!page_mapped(e.guest), "mapped before collapse");
	check_ret(mhgm_collapse(e.r, 0, e.len, &n), 0);
	check_eq(n, 1);
	check(page_mapped(e.guest) && page_mapped(e.guest + SZ_2M - SZ_4K),
	      "not mapped by collapse");
	bad = pattern_check(e.guest, 0, SZ_2M, e.seed);
	check(bad < 0, "wrong data at %lld", bad);
	check_eq(stats(&e).collapses, 0);	/* no MADV_COLLAPSE needed */
	check_eq(stats(&e).continues, 1);
	pass("registered: collapse maps the complete hugepage whole");

	/* NOMAP: present, not mapped, until collapse */
	pattern_fill(data, SZ_2M, SZ_2M, e.seed);
	check_ret(mhgm_place(e.r, SZ_2M, data, SZ_2M, MHGM_PLACE_NOMAP), 0);
	check(!page_mapped(e.guest + SZ_2M), "NOMAP mapped");
	pattern_fill(data, 2 * SZ_2M, SZ_2M, e.seed);
	check_ret(mhgm_place(e.r, 2 * SZ_2M, data, 10 * SZ_4K,
			     MHGM_PLACE_NOMAP), 0);
	check_ret(mhgm_collapse(e.r, SZ_2M, 2 * SZ_2M, &n), 0);
	check_eq(n, 1);
	check(page_mapped(e.guest + SZ_2M), "complete hugepage unmapped");
	check(!page_mapped(e.guest + 2 * SZ_2M), "incomplete hugepage mapped");
	check_ret(mhgm_collapse(e.r, 0, e.len, &n), 0);
	check_eq(n, 0);
	check_eq(stats(&e).hugepages_collapsed, 2);
	check_eq(stats(&e).hugepages_split, 0);
	pass("NOMAP + collapse: complete mapped, incomplete left alone");

	/* the policies are accepted and change nothing in fallback mode */
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	check_ret(mhgm_region_set_collapse(e.r, MHGM_COLLAPSE_DEFERRED, efd),
		  0);
	check_ret(mhgm_place(e.r, 2 * SZ_2M, data, SZ_2M, 0), 0);
	check(page_mapped(e.guest + 2 * SZ_2M), "complete hugepage unmapped");
	pfd = (struct pollfd){ .fd = efd, .events = POLLIN };
	check_ret(poll(&pfd, 1, 0), 0);
	check_eq(stats(&e).hugepages_queued, 0);
	check_ret(mhgm_collapse_pending(e.r, 0, &n), 0);
	check_eq(n, 0);
	check_ret(mhgm_region_set_collapse(e.r, MHGM_COLLAPSE_ON_COMPLETE, -1),
		  0);
	check_eq(stats(&e).hugepages_collapsed, NR_HP);
	bad = pattern_check(e.guest, 0, e.len, e.seed);
	check(bad < 0, "wrong data at %lld", bad);
	pass("policies: nothing queued in fallback mode; all data verified");
	env_teardown(&e);
	close(efd);
	free(data);
	return KSFT_PASS;
}

// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * unregister-wake: mhgm_region_unregister() and mhgm_region_close() release
 * the threads blocked in a minor fault on the region.  The kernel wakes them
 * on UFFDIO_UNREGISTER only for missing-mode registrations, so the library
 * must wake the range itself.  Released, each thread faults again on the
 * unregistered range and reads what the page cache holds.
 *
 * The data is placed with MHGM_PLACE_NOMAP (present, not mapped) and nobody
 * serves the userfaultfd: the readers can only get past their fault by the
 * wake.  Fallback mode on any kernel; HGM mode as well where the kernel has
 * it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define NR_HP		2
#define READERS		3

struct reader {
	struct test_env *e;
	pthread_t thread;
	uint64_t off;
	atomic_bool done;
	long long bad;
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;

	rd->bad = pattern_check(rd->e->guest + rd->off, rd->off, 8,
				rd->e->seed);
	atomic_store(&rd->done, true);
	return NULL;
}

/* Read @n fault messages from the userfaultfd: the readers are blocked. */
static void wait_faults(struct test_env *e, int n)
{
	struct pollfd pfd = { .fd = e->uffd, .events = POLLIN };
	int seen = 0;

	while (seen < n) {
		struct uffd_msg msg;
		uint64_t off;

		check(poll(&pfd, 1, 10000) == 1, "%d of %d readers faulted",
		      seen, n);
		if (read(e->uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		check(msg.event == UFFD_EVENT_PAGEFAULT &&
		      (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR),
		      "event %u flags %#llx", msg.event,
		      (unsigned long long)msg.arg.pagefault.flags);
		check_ret(mhgm_region_offset(e->r, (void *)(uintptr_t)
					     msg.arg.pagefault.address, &off),
			  0);
		seen++;
	}
}

static void join_released(struct reader *rd)
{
	struct timespec deadline;
	int err;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 10;
	err = pthread_timedjoin_np(rd->thread, NULL, &deadline);
	check(!err, "reader at %llu still blocked in its fault: %s",
	      (unsigned long long)rd->off, strerror(err));
	check(rd->bad < 0, "reader at %llu read wrong data at %lld",
	      (unsigned long long)rd->off, rd->bad);
	check(page_mapped(rd->e->guest + rd->off), "offset %llu not mapped",
	      (unsigned long long)rd->off);
}

static void run(bool hgm, bool close_region)
{
	const uint64_t offs[READERS] = {
		5 * SZ_4K + 8, SZ_2M - SZ_4K, SZ_2M + 77 * SZ_4K + 64,
	};
	struct reader readers[READERS];
	struct mhgm_stats st;
	struct test_env e;
	char *data;

	env_setup(&e, SZ_2M, NR_HP, 0, false);
	if (hgm)
		check_ret(mhgm_region_split(e.r), 0);
	env_register(&e);
	check_ret(mhgm_region_populate(e.r, NULL, NULL), 0);
	data = malloc(e.len);
	check(data, "malloc");
	pattern_fill(data, 0, e.len, e.seed);
	check_ret(mhgm_place(e.r, 0, data, e.len, MHGM_PLACE_NOMAP), 0);
	free(data);
	check(!page_mapped(e.guest) && !page_mapped(e.guest + SZ_2M),
	      "NOMAP placement mapped the guest range");

	for (int i = 0; i < READERS; i++) {
		readers[i] = (struct reader){ .e = &e, .off = offs[i] };
		check(!pthread_create(&readers[i].thread, NULL, reader_main,
				      &readers[i]), "pthread_create");
	}
	wait_faults(&e, READERS);
	usleep(50 * 1000);
	for (int i = 0; i < READERS; i++)
		check(!atomic_load(&readers[i].done),
		      "reader at %llu ran on without its fault resolved",
		      (unsigned long long)offs[i]);

	if (close_region) {
		check_ret(mhgm_region_close(e.r), 0);
	} else {
		check_ret(mhgm_region_unregister(e.r), 0);
		check_ret(mhgm_region_stats(e.r, &st), 0);
		check_eq(st.registered, 0);
		check_ret(mhgm_fault(e.r, offs[0], 0, NULL), -ENOENT);
	}
	for (int i = 0; i < READERS; i++)
		join_released(&readers[i]);
	pass("%s mode: %d readers blocked in minor faults released by %s, "
	     "read the page cache", hgm ? "HGM" : "fallback", READERS,
	     close_region ? "mhgm_region_close()" : "mhgm_region_unregister()");

	if (close_region) {
		mhgm_region_free(e.r);
		close(e.uffd);
		munmap(e.guest, e.len);
		close(e.memfd);
	} else {
		env_teardown(&e);
	}
}

int main(void)
{
	struct mhgm_probe probe;

	watchdog(120);
	need_hugepages(SZ_2M, NR_HP + 1);
	run(false, false);
	run(false, true);
	if (!mhgm_probe(SZ_2M, &probe) && probe.mode == MHGM_MODE_HGM) {
		run(true, false);
		run(true, true);
	} else {
		printf("HGM mode: not run (kernel without HGM)\n");
	}
	return KSFT_PASS;
}

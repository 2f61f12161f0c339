// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * stats: the latency histogram's percentiles on known inputs (exact where
 * promised, within 1/32 above the true value elsewhere, never above the
 * maximum), lock-free concurrent recording, and a region's counters and
 * fault timing after a known sequence of operations.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <unistd.h>

#include "helpers.h"

#define THREADS		4
#define PER_THREAD	100000

/* true <= got <= true * (1 + 1/32) */
#define check_close(got, truth)						\
	do {								\
		unsigned long long g_ = (got), t_ = (truth);		\
		if (g_ < t_ || g_ > t_ + t_ / 32)			\
			fail("%s = %llu, true value %llu", #got, g_, t_); \
	} while (0)

static void *recorder(void *arg)
{
	struct mhgm_histogram *h = arg;

	for (uint64_t i = 0; i < PER_THREAD; i++)
		mhgm_histogram_record(h, i * 37 + 1);
	return NULL;
}

static void histogram_known(void)
{
	struct mhgm_histogram *h;
	struct mhgm_latency lat;
	pthread_t t[THREADS];
	unsigned int rs = 9;
	uint64_t v;

	check_ret(mhgm_histogram_new(NULL), -EINVAL);
	check_ret(mhgm_histogram_new(&h), 0);
	check_ret(mhgm_histogram_percentile(h, 50, &v), -ENODATA);
	check_ret(mhgm_histogram_summary(h, &lat), 0);
	check_eq(lat.count, 0);
	check_eq(lat.max, 0);
	check_eq(lat.p99, 0);
	check_ret(mhgm_histogram_summary(h, NULL), -EINVAL);
	mhgm_histogram_record(h, 5);
	check_ret(mhgm_histogram_percentile(h, -1, &v), -EINVAL);
	check_ret(mhgm_histogram_percentile(h, 100.5, &v), -EINVAL);
	check_ret(mhgm_histogram_percentile(h, NAN, &v), -EINVAL);
	check_ret(mhgm_histogram_percentile(h, 50, NULL), -EINVAL);
	pass("empty histogram, bad arguments");

	/* below 64 every value has its own bucket */
	mhgm_histogram_reset(h);
	for (uint64_t i = 0; i < 64; i++)
		mhgm_histogram_record(h, 63 - i);
	check_ret(mhgm_histogram_summary(h, &lat), 0);
	check_eq(lat.count, 64);
	check_eq(lat.min, 0);
	check_eq(lat.max, 63);
	check_eq(lat.mean, 31);
	check_eq(lat.p50, 31);
	check_eq(lat.p90, 57);		/* rank ceil(57.6) = 58 -> 57 */
	check_eq(lat.p99, 63);
	pass("exact below 64: p50 %llu p90 %llu",
	     (unsigned long long)lat.p50, (unsigned long long)lat.p90);

	/* 1 us .. 1000 us */
	mhgm_histogram_reset(h);
	for (uint64_t i = 1000; i >= 1; i--)
		mhgm_histogram_record(h, i * 1000);
	check_ret(mhgm_histogram_summary(h, &lat), 0);
	check_eq(lat.count, 1000);
	check_eq(lat.min, 1000);
	check_eq(lat.max, 1000000);
	check_eq(lat.mean, 500500);
	check_close(lat.p50, 500000);
	check_close(lat.p90, 900000);
	check_close(lat.p99, 990000);
	check_close(lat.p999, 999000);
	check_ret(mhgm_histogram_percentile(h, 0, &v), 0);
	check_eq(v, 1000);
	check_ret(mhgm_histogram_percentile(h, 100, &v), 0);
	check_eq(v, 1000000);
	check_ret(mhgm_histogram_percentile(h, 25, &v), 0);
	check_close(v, 250000);
	pass("1..1000 us: p50 %llu p90 %llu p99 %llu p99.9 %llu max %llu",
	     (unsigned long long)lat.p50, (unsigned long long)lat.p90,
	     (unsigned long long)lat.p99, (unsigned long long)lat.p999,
	     (unsigned long long)lat.max);

	/* bucket bounds over the whole range: {v, huge} -> p50 near v */
	for (int i = 0; i < 20000; i++) {
		int shift = rand_r(&rs) % 63;
		uint64_t x = ((uint64_t)rand_r(&rs) << 32 | rand_r(&rs)) >>
			     shift;

		mhgm_histogram_reset(h);
		mhgm_histogram_record(h, x);
		mhgm_histogram_record(h, UINT64_MAX);
		check_ret(mhgm_histogram_percentile(h, 50, &v), 0);
		check_close(v, x);
	}
	check_ret(mhgm_histogram_percentile(h, 100, &v), 0);
	check_eq(v, UINT64_MAX);
	pass("20000 random values: reported within 1/32 above, up to 2^64-1");

	mhgm_histogram_reset(h);
	for (int i = 0; i < THREADS; i++)
		check(!pthread_create(&t[i], NULL, recorder, h), "thread");
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	check_ret(mhgm_histogram_summary(h, &lat), 0);
	check_eq(lat.count, THREADS * PER_THREAD);
	check_eq(lat.min, 1);
	check_eq(lat.max, (PER_THREAD - 1) * 37 + 1);
	check_eq(lat.mean, ((PER_THREAD - 1) * 37) / 2 + 1);
	check_close(lat.p50, (PER_THREAD / 2 - 1) * 37 + 1);
	pass("%d threads recording concurrently: nothing lost", THREADS);
	mhgm_histogram_free(h);
	mhgm_histogram_free(NULL);
}

static void region_counters(void)
{
	struct mhgm_stats st;
	struct mhgm_range req;
	struct test_env e;
	uint64_t ppp = SZ_2M / SZ_4K, t0;
	char *buf = calloc(1, SZ_2M);

	env_setup(&e, SZ_2M, 2, 0, true);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.mode, MHGM_MODE_FALLBACK);
	check_eq(st.collapse_policy, MHGM_COLLAPSE_MANUAL);
	check_eq(st.hpage_size, SZ_2M);
	check_eq(st.piece_size, SZ_4K);
	check_eq(st.registered, 1);
	check_eq(st.hugepages, 2);
	check_eq(st.pieces, 2 * ppp);
	check_eq(st.pieces_present + st.pieces_mapped + st.faults +
		 st.continues + st.latency.count, 0);

	check_ret(mhgm_place(e.r, 0, buf, 10 * SZ_4K, 0), 0);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.pieces_present, 10);
	check_eq(st.pieces_copied, 10);
	check_eq(st.pieces_mapped, 0);
	check_eq(st.hugepages_complete, 0);
	check_ret(mhgm_place(e.r, 0, buf, SZ_2M, 0), 0);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.pieces_present, ppp);
	check_eq(st.pieces_copied, ppp);
	check_eq(st.pieces_mapped, ppp);
	check_eq(st.hugepages_complete, 1);
	check_eq(st.hugepages_collapsed, 1);
	check_eq(st.hugepages_split, 0);
	check_eq(st.continues, 1);
	pass("piece and hugepage counters follow placement");

	/* caller-measured latencies */
	for (uint64_t i = 1; i <= 100; i++)
		check_ret(mhgm_region_record_latency(e.r, i * 10000), 0);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.latency.count, 100);
	check_eq(st.latency.max, 1000000);
	check_close(st.latency.p50, 500000);
	check_close(st.latency.p90, 900000);
	check_close(st.latency.p99, 990000);
	check_ret(mhgm_region_reset_latency(e.r), 0);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.latency.count, 0);
	pass("recorded latencies summarised, reset");

	/* fault seen 5 ms ago, twice (one sample), then the data arrives */
	t0 = mhgm_clock_ns() - 5000000;
	check_ret(mhgm_fault(e.r, SZ_2M + 3 * SZ_4K, t0, &req),
		  MHGM_FAULT_MISSING);
	check_ret(mhgm_fault(e.r, SZ_2M, t0 + 1000, &req), MHGM_FAULT_MISSING);
	check_ret(mhgm_place(e.r, SZ_2M, buf, SZ_2M, 0), 0);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.faults, 2);
	check_eq(st.faults_mapped, 0);
	check_eq(st.latency.count, 2);	/* two pieces were waiting */
	check(st.latency.min >= 5000000 - 1000 &&
	      st.latency.max < 5000000000ULL,
	      "min %llu max %llu", (unsigned long long)st.latency.min,
	      (unsigned long long)st.latency.max);
	/* the same piece twice: one sample */
	check_ret(mhgm_drop(e.r, SZ_2M, SZ_4K), 0);
	check_ret(mhgm_region_reset_latency(e.r), 0);
	check_ret(mhgm_fault(e.r, SZ_2M, 0, &req), MHGM_FAULT_MISSING);
	check_ret(mhgm_fault(e.r, SZ_2M, 0, &req), MHGM_FAULT_MISSING);
	check_ret(mhgm_place(e.r, SZ_2M, buf, SZ_4K, 0), 0);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.latency.count, 1);
	/* a fault on a mapped piece is answered at once */
	check_ret(mhgm_fault(e.r, 5 * SZ_4K, mhgm_clock_ns() - 1000000, &req),
		  MHGM_FAULT_MAPPED);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.faults, 5);
	check_eq(st.faults_mapped, 1);
	check_eq(st.latency.count, 2);
	check(st.latency.max >= 1000000, "max %llu",
	      (unsigned long long)st.latency.max);
	pass("fault -> mapped latency timed once per waiting piece");

	check_ret(mhgm_region_set_collapse(e.r, MHGM_COLLAPSE_DEFERRED, -1), 0);
	check_ret(mhgm_region_stats(e.r, &st), 0);
	check_eq(st.collapse_policy, MHGM_COLLAPSE_DEFERRED);
	env_teardown(&e);
	free(buf);
}

int main(void)
{
	watchdog(120);
	histogram_known();
	need_hugepages(SZ_2M, 3);
	region_counters();
	return KSFT_PASS;
}

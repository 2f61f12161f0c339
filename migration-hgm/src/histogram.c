// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * Latency histogram: log-linear buckets (HdrHistogram's layout with 5
 * sub-bucket bits), lock-free recording with relaxed atomics.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "lib.h"

static unsigned int bucket_of(uint64_t v)
{
	unsigned int e;

	if (v < HIST_LINEAR)
		return v;
	e = 63 - __builtin_clzll(v);
	return HIST_LINEAR + (e - HIST_SUB_BITS - 1) * HIST_SUB +
	       ((v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1));
}

/* The largest value that falls into bucket @b. */
static uint64_t bucket_high(unsigned int b)
{
	unsigned int e, sub;
	uint64_t low;

	if (b < HIST_LINEAR)
		return b;
	e = (b - HIST_LINEAR) / HIST_SUB + HIST_SUB_BITS + 1;
	sub = (b - HIST_LINEAR) % HIST_SUB;
	low = (uint64_t)(HIST_SUB + sub) << (e - HIST_SUB_BITS);
	return low + ((uint64_t)1 << (e - HIST_SUB_BITS)) - 1;
}

void hist_init(struct mhgm_histogram *h)
{
	for (unsigned int b = 0; b < HIST_BUCKETS; b++)
		atomic_init(&h->bucket[b], 0);
	atomic_init(&h->min, UINT64_MAX);
	atomic_init(&h->max, 0);
	atomic_init(&h->sum, 0);
}

int mhgm_histogram_new(struct mhgm_histogram **histp)
{
	struct mhgm_histogram *h;

	if (!histp)
		return -EINVAL;
	h = malloc(sizeof(*h));
	if (!h)
		return -ENOMEM;
	hist_init(h);
	*histp = h;
	return 0;
}

void mhgm_histogram_free(struct mhgm_histogram *hist)
{
	free(hist);
}

void mhgm_histogram_record(struct mhgm_histogram *h, uint64_t ns)
{
	uint64_t old;

	if (!h)
		return;
	atomic_fetch_add_explicit(&h->bucket[bucket_of(ns)], 1,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum, ns, memory_order_relaxed);
	old = atomic_load_explicit(&h->min, memory_order_relaxed);
	while (ns < old &&
	       !atomic_compare_exchange_weak_explicit(&h->min, &old, ns,
						      memory_order_relaxed,
						      memory_order_relaxed))
		;
	old = atomic_load_explicit(&h->max, memory_order_relaxed);
	while (ns > old &&
	       !atomic_compare_exchange_weak_explicit(&h->max, &old, ns,
						      memory_order_relaxed,
						      memory_order_relaxed))
		;
}

void mhgm_histogram_reset(struct mhgm_histogram *h)
{
	if (h)
		hist_init(h);
}

/* A consistent-enough copy of the buckets, and their total. */
static uint64_t snapshot(const struct mhgm_histogram *h, uint64_t *counts)
{
	uint64_t total = 0;

	for (unsigned int b = 0; b < HIST_BUCKETS; b++) {
		counts[b] = atomic_load_explicit(&h->bucket[b],
						 memory_order_relaxed);
		total += counts[b];
	}
	return total;
}

static uint64_t percentile(const uint64_t *counts, uint64_t total,
			   uint64_t min, uint64_t max, double percent)
{
	uint64_t rank, seen = 0, v;
	double want = percent / 100.0 * (double)total;

	if (percent <= 0.0)
		return min;
	rank = (uint64_t)want;
	if ((double)rank < want)
		rank++;
	if (rank < 1)
		rank = 1;
	for (unsigned int b = 0; b < HIST_BUCKETS; b++) {
		seen += counts[b];
		if (seen >= rank) {
			v = bucket_high(b);
			if (v > max)
				v = max;
			return v < min ? min : v;
		}
	}
	return max;
}

int mhgm_histogram_percentile(const struct mhgm_histogram *h, double percent,
			      uint64_t *value)
{
	uint64_t counts[HIST_BUCKETS], total;

	if (!h || !value || !(percent >= 0.0 && percent <= 100.0))
		return -EINVAL;
	total = snapshot(h, counts);
	if (!total)
		return -ENODATA;
	*value = percentile(counts, total,
			    atomic_load_explicit(&h->min, memory_order_relaxed),
			    atomic_load_explicit(&h->max, memory_order_relaxed),
			    percent);
	return 0;
}

int mhgm_histogram_summary(const struct mhgm_histogram *h,
			   struct mhgm_latency *lat)
{
	uint64_t counts[HIST_BUCKETS], total, min, max;

	if (!h || !lat)
		return -EINVAL;
	*lat = (struct mhgm_latency){ 0 };
	total = snapshot(h, counts);
	if (!total)
		return 0;
	min = atomic_load_explicit(&h->min, memory_order_relaxed);
	max = atomic_load_explicit(&h->max, memory_order_relaxed);
	lat->count = total;
	lat->min = min;
	lat->max = max;
	lat->mean = atomic_load_explicit(&h->sum, memory_order_relaxed) / total;
	lat->p50 = percentile(counts, total, min, max, 50.0);
	lat->p90 = percentile(counts, total, min, max, 90.0);
	lat->p99 = percentile(counts, total, min, max, 99.0);
	lat->p999 = percentile(counts, total, min, max, 99.9);
	return 0;
}

uint64_t mhgm_clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * Helpers shared by the libmigration-hgm tests.  Each test is a program of
 * its own: exit 0 pass, 4 skip (kselftest; the last line says why), anything
 * else fail.
 */
#ifndef MHGM_TEST_HELPERS_H
#define MHGM_TEST_HELPERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "migration-hgm.h"

#define KSFT_PASS	0
#define KSFT_FAIL	1
#define KSFT_SKIP	4

#define SZ_4K		(4096ULL)
#define SZ_2M		(2ULL << 20)
#define SZ_1G		(1ULL << 30)

#define skip(...)							\
	do {								\
		printf("skip: " __VA_ARGS__);				\
		printf("\n");						\
		exit(KSFT_SKIP);					\
	} while (0)

#define fail(...)							\
	do {								\
		printf("FAIL: %s:%d: ", __FILE__, __LINE__);		\
		printf(__VA_ARGS__);					\
		printf("\n");						\
		exit(KSFT_FAIL);					\
	} while (0)

#define check(cond, fmt, ...)						\
	do {								\
		if (!(cond))						\
			fail("check '%s' failed: " fmt, #cond,		\
			     ##__VA_ARGS__);				\
	} while (0)

/* An int-returning call must return exactly @want (0, -EINVAL...). */
#define check_ret(expr, want)						\
	do {								\
		long long got_ = (expr), want_ = (want);		\
		if (got_ != want_)					\
			fail("%s = %lld (%s), expected %lld (%s)", #expr, \
			     got_, errname(got_), want_, errname(want_)); \
	} while (0)

/* Two unsigned values must be equal. */
#define check_eq(a, b)							\
	do {								\
		unsigned long long a_ = (a), b_ = (b);			\
		if (a_ != b_)						\
			fail("%s = %llu, expected %s = %llu", #a, a_, #b, b_); \
	} while (0)

#define pass(...)							\
	do {								\
		printf("ok: " __VA_ARGS__);				\
		printf("\n");						\
	} while (0)

const char *errname(long long ret);

/* Kill the test (as failed) after @seconds: a lost fault would hang it. */
void watchdog(unsigned int seconds);

/*
 * Make sure @count hugepages of @hpsize are free, raising nr_hugepages if
 * needed (root only); the old value is restored at exit.  Skips the test if
 * that is not possible.
 */
void need_hugepages(uint64_t hpsize, unsigned long count);
long free_hugepages(uint64_t hpsize);

/* A hugetlb memfd of @size bytes of @hpsize pages; fails the test if not. */
int hugetlb_memfd(uint64_t hpsize, uint64_t size);

/* A userfaultfd after UFFDIO_API with @features; -errno on failure. */
int uffd_open(uint64_t features);

/* 1 if the base page at @addr is mapped (mincore), 0 if not. */
int page_mapped(const void *addr);

/* The test pattern: 64-bit words derived from the region offset. */
void pattern_fill(void *buf, uint64_t off, size_t len, uint64_t seed);
/* Offset of the first word that differs from the pattern, or -1. */
long long pattern_check(const void *buf, uint64_t off, size_t len,
			uint64_t seed);

/*
 * A standard test region: a hugetlb memfd of @nr hugepages mapped shared as
 * the "guest", a region over it, and (if @register_uffd) a userfaultfd set
 * up for minor faults and registered through the library.  Without
 * @register_uffd, env_register() does that part later.
 */
struct test_env {
	uint64_t hpsize;
	uint64_t len;
	int memfd;
	int uffd;
	char *guest;
	struct mhgm_region *r;
	uint64_t seed;
};

void env_setup(struct test_env *e, uint64_t hpsize, uint64_t nr,
	       uint32_t region_flags, bool register_uffd);
void env_register(struct test_env *e);
void env_teardown(struct test_env *e);

/*
 * The "source" side of a fault loop: a thread reading the env's userfaultfd,
 * handing each fault to mhgm_fault() and, when data is missing, "receiving"
 * the requested range as the pattern, piece by piece in a shuffled order,
 * with mhgm_place().
 */
struct fault_server {
	struct test_env *e;
	pthread_t thread;
	atomic_bool stop;
	atomic_ulong faults;
	atomic_ulong missing;
	atomic_ulong max_request;	/* longest range asked for */
	atomic_int error;	/* first failure, 0 if none */
	bool piecewise;		/* place 4 KiB at a time (else one call) */
};

void fault_server_start(struct fault_server *s, struct test_env *e,
			bool piecewise);
/* Stops the thread; fails the test if it saw an error. */
void fault_server_stop(struct fault_server *s);

/*
 * Skip the test unless mhgm_probe() finds HGM for @hpsize; the reason line
 * lists what the kernel lacks.  Fills @probe.
 */
void need_hgm(uint64_t hpsize, struct mhgm_probe *probe);

/*
 * A field of /proc/self/smaps (e.g. "HugetlbPteMapped") for the mapping
 * that contains @addr, in kB; -1 if the kernel does not report it.
 */
long smaps_field(const void *addr, const char *field);

/* Place the pattern for [off, off + len) one piece at a time, shuffled. */
int place_pattern_pieces(struct test_env *e, uint64_t off, uint64_t len,
			 unsigned int *rand_state);

#endif /* MHGM_TEST_HELPERS_H */

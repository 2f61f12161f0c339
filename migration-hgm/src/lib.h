/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * Internal definitions of libmigration-hgm; not installed.
 *
 * Locking, outermost first:
 *   region->life      (rwlock) read by every public call, written by close;
 *   region->setup     (mutex) split, register, unregister, set_collapse;
 *   hpage->lock       (mutex) one hugepage: its bits, counts, flags, and
 *                     every ioctl/madvise on its range;
 *   region->pend.lock, region->queue.lock  (mutexes) leaf locks.
 * The per-region counters and the histogram are atomics and need no lock.
 */
#ifndef MHGM_LIB_H
#define MHGM_LIB_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "migration-hgm.h"

/*
 * Internal functions shared between the source files: not exported from the
 * shared library (see the version map), and kept out of the caller's
 * namespace in the static one.
 */
#define region_enter	mhgm__region_enter
#define region_exit	mhgm__region_exit
#define bits_set	mhgm__bits_set
#define bits_clear	mhgm__bits_clear
#define bits_next	mhgm__bits_next
#define hist_init	mhgm__hist_init

#define BITS_PER_LONG	(sizeof(unsigned long) * CHAR_BIT)
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

/* Log-linear buckets: 64 exact, then 32 per power of two from 2^6 to 2^63. */
#define HIST_SUB_BITS	5
#define HIST_SUB	(1U << HIST_SUB_BITS)
#define HIST_LINEAR	(2 * HIST_SUB)
#define HIST_BUCKETS	(HIST_LINEAR + (63 - HIST_SUB_BITS) * HIST_SUB)

struct mhgm_histogram {
	_Atomic uint64_t bucket[HIST_BUCKETS];
	_Atomic uint64_t min;		/* UINT64_MAX when empty */
	_Atomic uint64_t max;
	_Atomic uint64_t sum;
};

void hist_init(struct mhgm_histogram *h);

/* hpage.flags */
#define HP_ALLOCATED	(1U << 0)	/* in the page cache (fallocate done) */
#define HP_WHOLE	(1U << 1)	/* mapped by one hugepage mapping */
#define HP_QUEUED	(1U << 2)	/* on the deferred collapse queue */

struct hpage {
	pthread_mutex_t lock;
	uint32_t nr_present;
	uint32_t nr_mapped;
	uint32_t nr_waiting;		/* entries in region->pend */
	uint32_t flags;
};

/* A fault noted by mhgm_fault() and not mapped yet. */
struct pending {
	uint64_t piece;			/* UINT64_MAX: free slot */
	uint64_t ns;
};

#define PENDING_SLOTS	4096

struct counters {
	_Atomic uint64_t pieces_present;
	_Atomic uint64_t pieces_mapped;
	_Atomic uint64_t hp_split;
	_Atomic uint64_t hp_complete;
	_Atomic uint64_t hp_whole;
	_Atomic uint64_t hp_queued;
	_Atomic uint64_t faults;
	_Atomic uint64_t faults_mapped;
	_Atomic uint64_t faults_untimed;
	_Atomic uint64_t pieces_copied;
	_Atomic uint64_t pieces_dropped;
	_Atomic uint64_t drop_unmaps;
	_Atomic uint64_t continues;
	_Atomic uint64_t collapses;
	_Atomic uint64_t collapse_failures;
};

struct mhgm_region {
	pthread_rwlock_t life;
	bool closed;

	/* set at creation, constant afterwards */
	int fd;				/* our dup of the caller's fd */
	uint64_t file_offset;
	uint64_t length;
	uint64_t hpsize;
	uint64_t piece;			/* base page size */
	uint64_t ppp;			/* pieces per hugepage */
	uint64_t nr_hp;
	uint64_t nr_pieces;
	char *guest;
	char *alias;
	struct hpage *hp;
	unsigned long *present;		/* bit per piece, under hpage lock */
	unsigned long *mapped;		/* bit per piece, under hpage lock */

	pthread_mutex_t setup;
	_Atomic int mode;		/* enum mhgm_mode */
	_Atomic int uffd;		/* -1: not registered */
	_Atomic int policy;		/* enum mhgm_collapse_policy */
	_Atomic int collapse_efd;	/* -1: none */

	struct {
		pthread_mutex_t lock;
		struct pending slot[PENDING_SLOTS];
		unsigned int used;
	} pend;

	struct {
		pthread_mutex_t lock;
		uint64_t *ring;			/* nr_hp entries */
		uint64_t head, count;
	} queue;

	struct counters c;
	struct mhgm_histogram lat;
};

static inline void count_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static inline void count_sub(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_sub_explicit(c, v, memory_order_relaxed);
}

static inline uint64_t count_read(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* Begin/end a public call: -EBADF once the region is closed. */
int region_enter(struct mhgm_region *r);
void region_exit(struct mhgm_region *r);

/* Bitmaps over global piece indices [first, last). */
uint64_t bits_set(unsigned long *map, uint64_t first, uint64_t last);
uint64_t bits_clear(unsigned long *map, uint64_t first, uint64_t last);
uint64_t bits_next(const unsigned long *map, bool set, uint64_t first,
		   uint64_t last);

static inline bool bit_test(const unsigned long *map, uint64_t i)
{
	return map[i / BITS_PER_LONG] & (1UL << (i % BITS_PER_LONG));
}

#endif /* MHGM_LIB_H */

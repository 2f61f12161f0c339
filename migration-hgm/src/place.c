// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * Placing data: place, map, fault, drop, collapse.
 *
 * Every operation walks the hugepages its range touches and works on each
 * under that hugepage's lock (hp_begin/hp_end), which also keeps the region
 * counters in step with the hugepage's state.  Invariant in fallback mode:
 * a hugepage is mapped whole or not at all (nr_mapped is 0 or ppp).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib.h"

/* Bound on retries of UFFDIO_CONTINUE that made no progress (EAGAIN). */
#define CONTINUE_RETRIES	100

/* ------------------------------------------------ hugepage accounting */

struct hp_snap {
	uint32_t present, mapped, flags;
};

static bool snap_split(uint32_t mapped, uint32_t flags)
{
	return mapped && !(flags & HP_WHOLE);
}

static void hp_begin(struct mhgm_region *r, uint64_t i, struct hp_snap *s)
{
	struct hpage *h = &r->hp[i];

	pthread_mutex_lock(&h->lock);
	*s = (struct hp_snap){ h->nr_present, h->nr_mapped, h->flags };
}

static void count_change(_Atomic uint64_t *c, bool was, bool is)
{
	if (was != is)
		count_add(c, is ? 1 : (uint64_t)-1);
}

/* Bring the region counters up to date with hugepage @i, and unlock it. */
static void hp_end(struct mhgm_region *r, uint64_t i, const struct hp_snap *s)
{
	struct hpage *h = &r->hp[i];
	struct counters *c = &r->c;

	count_add(&c->pieces_present, (uint64_t)h->nr_present - s->present);
	count_add(&c->pieces_mapped, (uint64_t)h->nr_mapped - s->mapped);
	count_change(&c->hp_complete, s->present == r->ppp,
		     h->nr_present == r->ppp);
	count_change(&c->hp_whole, s->flags & HP_WHOLE, h->flags & HP_WHOLE);
	count_change(&c->hp_queued, s->flags & HP_QUEUED,
		     h->flags & HP_QUEUED);
	count_change(&c->hp_split, snap_split(s->mapped, s->flags),
		     snap_split(h->nr_mapped, h->flags));
	pthread_mutex_unlock(&h->lock);
}

static void set_present(struct mhgm_region *r, struct hpage *h,
			uint64_t first, uint64_t last)
{
	h->nr_present += bits_set(r->present, first, last);
}

static void set_mapped(struct mhgm_region *r, struct hpage *h,
		       uint64_t first, uint64_t last)
{
	h->nr_mapped += bits_set(r->mapped, first, last);
}

/* Make sure hugepage @i is in the page cache, so the alias cannot SIGBUS. */
static int hp_allocate(struct mhgm_region *r, uint64_t i)
{
	struct hpage *h = &r->hp[i];

	if (h->flags & HP_ALLOCATED)
		return 0;
	if (fallocate(r->fd, 0, r->file_offset + i * r->hpsize, r->hpsize))
		return -errno;
	h->flags |= HP_ALLOCATED;
	return 0;
}

/* -------------------------------------------------------- fault timing */

/*
 * Note a fault on @piece for timing.  One entry per piece: a repeated fault
 * keeps the earliest time.  False if the table is full (not timed).
 */
static bool note_fault(struct mhgm_region *r, struct hpage *h, uint64_t piece,
		       uint64_t ns)
{
	struct pending *free_slot = NULL;
	unsigned int seen = 0;
	bool ret = true;

	pthread_mutex_lock(&r->pend.lock);
	for (unsigned int s = 0; s < PENDING_SLOTS; s++) {
		struct pending *e = &r->pend.slot[s];

		if (e->piece == UINT64_MAX) {
			if (!free_slot)
				free_slot = e;
			if (seen == r->pend.used)
				break;
			continue;
		}
		seen++;
		if (e->piece == piece) {
			if (ns < e->ns)
				e->ns = ns;
			goto out;
		}
	}
	if (!free_slot) {
		ret = false;
		goto out;
	}
	*free_slot = (struct pending){ .piece = piece, .ns = ns };
	r->pend.used++;
	h->nr_waiting++;
out:
	pthread_mutex_unlock(&r->pend.lock);
	return ret;
}

/* Time the noted faults on pieces [first, last), which were just mapped. */
static void resolve_waiters(struct mhgm_region *r, struct hpage *h,
			    uint64_t first, uint64_t last)
{
	uint64_t now;
	unsigned int seen = 0;

	if (!h->nr_waiting)
		return;
	now = mhgm_clock_ns();
	pthread_mutex_lock(&r->pend.lock);
	for (unsigned int s = 0; s < PENDING_SLOTS && seen < r->pend.used;
	     s++) {
		struct pending *e = &r->pend.slot[s];

		if (e->piece == UINT64_MAX)
			continue;
		if (e->piece < first || e->piece >= last) {
			seen++;
			continue;
		}
		mhgm_histogram_record(&r->lat, now > e->ns ? now - e->ns : 0);
		e->piece = UINT64_MAX;
		r->pend.used--;
		h->nr_waiting--;
	}
	pthread_mutex_unlock(&r->pend.lock);
}

/* ------------------------------------------------------ kernel calls */

static void uffd_wake(int uffd, uint64_t addr, uint64_t len)
{
	struct uffdio_range range = { .start = addr, .len = len };

	ioctl(uffd, UFFDIO_WAKE, &range);
}

/*
 * UFFDIO_CONTINUE of guest range [off, off + len).  A @granule that turns
 * out to be mapped already (EEXIST) is woken instead and skipped, so threads
 * waiting on it run on.  Partial progress (EAGAIN) is resumed.
 */
static int uffd_continue(struct mhgm_region *r, int uffd, uint64_t off,
			 uint64_t len, uint64_t granule)
{
	uint64_t addr = (uintptr_t)r->guest + off, end = addr + len;
	unsigned int stuck = 0;

	while (addr < end) {
		struct uffdio_continue cont = {
			.range = { .start = addr, .len = end - addr },
		};
		int err;

		if (!ioctl(uffd, UFFDIO_CONTINUE, &cont)) {
			count_add(&r->c.continues, 1);
			return 0;
		}
		err = errno;
		if (cont.mapped > 0) {
			count_add(&r->c.continues, 1);
			addr += cont.mapped;
			stuck = 0;
		}
		if (err == EEXIST) {
			uffd_wake(uffd, addr, granule);
			addr += granule;
		} else if (err != EAGAIN || ++stuck > CONTINUE_RETRIES) {
			return -err;
		}
	}
	return 0;
}

/*
 * Map what the mode allows of pieces [first, last) of hugepage @i: the whole
 * hugepage once all its pieces are present and none is mapped (or, in
 * fallback mode, once all are present); in HGM mode otherwise each run of
 * present, unmapped pieces.  Hugepage lock held.
 */
static int hp_map(struct mhgm_region *r, uint64_t i, uint64_t first,
		  uint64_t last, int mode, int uffd)
{
	struct hpage *h = &r->hp[i];
	uint64_t base = i * r->ppp, p, end;
	int ret;

	if (uffd < 0 || (h->flags & HP_WHOLE))
		return 0;
	if (h->nr_present == r->ppp &&
	    (h->nr_mapped == 0 || mode == MHGM_MODE_FALLBACK)) {
		ret = uffd_continue(r, uffd, i * r->hpsize, r->hpsize,
				    mode == MHGM_MODE_HGM ? r->piece :
							    r->hpsize);
		if (ret)
			return ret;
		set_mapped(r, h, base, base + r->ppp);
		h->flags |= HP_WHOLE;
		resolve_waiters(r, h, base, base + r->ppp);
		return 0;
	}
	if (mode == MHGM_MODE_FALLBACK)
		return 0;

	for (p = first; p < last; p = end) {
		/* next present piece that is not mapped */
		while (p < last) {
			p = bits_next(r->present, true, p, last);
			if (p == last || !bit_test(r->mapped, p))
				break;
			p++;
		}
		if (p >= last)
			break;
		end = p + 1;
		while (end < last && bit_test(r->present, end) &&
		       !bit_test(r->mapped, end))
			end++;
		ret = uffd_continue(r, uffd, p * r->piece, (end - p) * r->piece,
				    r->piece);
		if (ret)
			return ret;
		set_mapped(r, h, p, end);
		resolve_waiters(r, h, p, end);
	}
	return 0;
}

/*
 * Drop pieces [first, last) of hugepage @i: unmap them from the guest and
 * forget them.  Upstream kernels unmap hugetlb memory in whole hugepages
 * only (MADV_DONTNEED wants a hugepage-aligned start and rounds the length
 * down to whole hugepages); the HGM series unmaps PAGE_SIZE pieces of a
 * split mapping, but nothing probes for that yet, so the whole hugepage is
 * unmapped.  On a shared mapping that frees nothing: the page
 * cache keeps every piece.  In HGM mode on a registered region, the pieces
 * that were mapped and are kept are mapped again at once; otherwise they
 * stay present and are mapped again by the next call that maps the
 * hugepage or a fault on them.  Hugepage lock held.
 */
/* The pieces [*first, *last) of hugepage @i inside [off, off + len). */
static void hp_pieces(struct mhgm_region *r, uint64_t i, uint64_t off,
		      uint64_t len, uint64_t *first, uint64_t *last)
{
	uint64_t start = i * r->hpsize, end = start + r->hpsize;

	if (start < off)
		start = off;
	if (end > off + len)
		end = off + len;
	*first = start / r->piece;
	*last = end / r->piece;
}

/* Each hugepage @i that [off, off + len) touches; the range is checked. */
/*
 * Drop the pieces of hugepage @i that @ranges (sorted, @nr of them, the
 * first ending inside or after the hugepage) cover: one unmap of the whole
 * hugepage for all of them.  Hugepage lock held.
 */
static int hp_drop(struct mhgm_region *r, uint64_t i,
		   const struct mhgm_range *ranges, size_t nr, int mode,
		   int uffd)
{
	struct hpage *h = &r->hp[i];
	uint64_t base = i * r->ppp, end = base + r->ppp, dropped = 0;
	uint64_t first, last, p, q;
	bool remap = mode == MHGM_MODE_HGM && uffd >= 0;
	size_t k;
	int ret = 0;

	if (madvise(r->guest + i * r->hpsize, r->hpsize, MADV_DONTNEED))
		return -errno;
	count_add(&r->c.drop_unmaps, 1);
	for (k = 0; k < nr && ranges[k].offset < (i + 1) * r->hpsize; k++) {
		hp_pieces(r, i, ranges[k].offset, ranges[k].length, &first,
			  &last);
		if (first >= last)
			continue;
		dropped += bits_clear(r->present, first, last);
		if (remap)
			h->nr_mapped -= bits_clear(r->mapped, first, last);
	}
	h->nr_present -= dropped;
	count_add(&r->c.pieces_dropped, dropped);
	h->flags &= ~HP_WHOLE;
	if (!remap) {
		h->nr_mapped -= bits_clear(r->mapped, base, end);
		return 0;
	}
	/* each run of pieces still marked mapped; after a failure, forget it */
	for (p = base; p < end; p = q) {
		p = bits_next(r->mapped, true, p, end);
		q = bits_next(r->mapped, false, p, end);
		if (p == q)
			break;
		if (!ret)
			ret = uffd_continue(r, uffd, p * r->piece,
					    (q - p) * r->piece, r->piece);
		if (ret)
			h->nr_mapped -= bits_clear(r->mapped, p, q);
	}
	return ret;
}

static void hp_enqueue(struct mhgm_region *r, uint64_t i, bool notify)
{
	struct hpage *h = &r->hp[i];
	uint64_t one = 1;
	int efd;

	if (h->flags & HP_QUEUED)
		return;
	pthread_mutex_lock(&r->queue.lock);
	r->queue.ring[(r->queue.head + r->queue.count) % r->nr_hp] = i;
	r->queue.count++;
	pthread_mutex_unlock(&r->queue.lock);
	h->flags |= HP_QUEUED;
	efd = atomic_load(&r->collapse_efd);
	/* A failed write leaves a full eventfd, which still polls readable. */
	if (notify && efd >= 0 && write(efd, &one, sizeof(one)) < 0)
		return;
}

/*
 * Collapse hugepage @i if all its pieces are present and it is not mapped
 * whole yet; *done counts it on success.  Hugepage lock held.
 *
 * MADV_COLLAPSE maps whole each hugepage of its range that is mapped in
 * pieces, pieces that were not mapped included, and leaves alone those
 * mapped whole or not at all.  So it is only ever issued on one complete
 * hugepage: on an incomplete one it would map pieces that never arrived.
 * What it would leave alone, a hugepage with nothing mapped, is mapped
 * whole by UFFDIO_CONTINUE, or left unmapped on an unregistered region.
 */
static int hp_collapse(struct mhgm_region *r, uint64_t i, int mode, int uffd,
		       uint64_t *done)
{
	struct hpage *h = &r->hp[i];
	uint64_t base = i * r->ppp;
	int ret;

	if ((h->flags & HP_WHOLE) || h->nr_present != r->ppp)
		return 0;
	if (h->nr_mapped < r->ppp && uffd >= 0) {
		ret = hp_map(r, i, base, base + r->ppp, mode, uffd);
		if (ret)
			return ret;
		if (h->flags & HP_WHOLE) {
			(*done)++;
			return 0;
		}
	}
	if (mode != MHGM_MODE_HGM || !h->nr_mapped)
		return 0;
	if (madvise(r->guest + i * r->hpsize, r->hpsize,
		    MHGM_MADV_COLLAPSE)) {
		ret = errno == EINVAL ? -EOPNOTSUPP : -errno;
		count_add(&r->c.collapse_failures, 1);
		return ret;
	}
	count_add(&r->c.collapses, 1);
	set_mapped(r, h, base, base + r->ppp);
	h->flags |= HP_WHOLE;
	(*done)++;
	return 0;
}

/* After mapping in HGM mode: apply the collapse policy to a full hugepage. */
static void hp_completed(struct mhgm_region *r, uint64_t i, int mode,
			 int uffd)
{
	struct hpage *h = &r->hp[i];
	uint64_t done = 0;

	if (mode != MHGM_MODE_HGM || h->nr_mapped != r->ppp ||
	    (h->flags & HP_WHOLE))
		return;
	switch (atomic_load(&r->policy)) {
	case MHGM_COLLAPSE_ON_COMPLETE:
		/* a failure leaves it split, counted; mhgm_collapse() retries */
		hp_collapse(r, i, mode, uffd, &done);
		break;
	case MHGM_COLLAPSE_DEFERRED:
		hp_enqueue(r, i, true);
		break;
	}
}

/* ------------------------------------------------------ public calls */

/* Range checks shared by place, map, drop: 0, -EINVAL or -ERANGE. */
static int check_range(struct mhgm_region *r, uint64_t off, uint64_t len,
		       uint64_t align)
{
	if (!len || off % align || len % align)
		return -EINVAL;
	if (off >= r->length || len > r->length - off)
		return -ERANGE;
	return 0;
}

#define for_each_hp(r, off, len, i)					\
	for ((i) = (off) / (r)->hpsize;					\
	     (i) * (r)->hpsize < (off) + (len); (i)++)

static void copy_in(struct mhgm_region *r, uint64_t first, uint64_t last,
		    const char *src, uint64_t off)
{
	uint64_t p = first, end;

	while (p < last) {
		p = bits_next(r->present, false, p, last);
		if (p == last)
			break;
		end = bits_next(r->present, true, p, last);
		if (src)
			memcpy(r->alias + p * r->piece,
			       src + (p * r->piece - off),
			       (end - p) * r->piece);
		else
			memset(r->alias + p * r->piece, 0,
			       (end - p) * r->piece);
		count_add(&r->c.pieces_copied, end - p);
		p = end;
	}
}

static int place_or_map(struct mhgm_region *r, uint64_t off, const void *src,
			size_t len, uint32_t flags, bool copy)
{
	uint64_t i, first, last;
	int ret, mode, uffd;

	if (flags & ~MHGM_PLACE_NOMAP)
		return -EINVAL;
	ret = region_enter(r);
	if (ret)
		return ret;
	ret = check_range(r, off, len, r->piece);
	if (ret)
		goto out;
	mode = atomic_load(&r->mode);
	uffd = atomic_load(&r->uffd);
	for_each_hp(r, off, len, i) {
		struct hpage *h = &r->hp[i];
		struct hp_snap s;

		hp_pieces(r, i, off, len, &first, &last);
		hp_begin(r, i, &s);
		ret = hp_allocate(r, i);
		if (!ret) {
			if (copy)
				copy_in(r, first, last, src, off);
			set_present(r, h, first, last);
			if (!(flags & MHGM_PLACE_NOMAP))
				ret = hp_map(r, i, first, last, mode, uffd);
			if (!ret)
				hp_completed(r, i, mode, uffd);
		}
		hp_end(r, i, &s);
		if (ret)
			break;
	}
out:
	region_exit(r);
	return ret;
}

int mhgm_place(struct mhgm_region *r, uint64_t offset, const void *src,
	       size_t len, uint32_t flags)
{
	return place_or_map(r, offset, src, len, flags, true);
}

int mhgm_map(struct mhgm_region *r, uint64_t offset, size_t len,
	     uint32_t flags)
{
	return place_or_map(r, offset, NULL, len, flags, false);
}

/* Fallback request: from the first to the last missing piece of @i. */
static void missing_span(struct mhgm_region *r, uint64_t i,
			 struct mhgm_range *req)
{
	uint64_t base = i * r->ppp, first, last;

	first = bits_next(r->present, false, base, base + r->ppp);
	last = base + r->ppp;
	while (last > first + 1 && bit_test(r->present, last - 1))
		last--;
	req->offset = first * r->piece;
	req->length = (last - first) * r->piece;
}

int mhgm_fault(struct mhgm_region *r, uint64_t offset, uint64_t fault_ns,
	       struct mhgm_range *request)
{
	uint64_t p, i;
	struct hpage *h;
	struct hp_snap s;
	int ret, mode, uffd;
	bool ready, timed;

	ret = region_enter(r);
	if (ret)
		return ret;
	if (offset >= r->length) {
		ret = -ERANGE;
		goto out;
	}
	uffd = atomic_load(&r->uffd);
	if (uffd < 0) {
		ret = -ENOENT;
		goto out;
	}
	if (!fault_ns)
		fault_ns = mhgm_clock_ns();
	count_add(&r->c.faults, 1);
	mode = atomic_load(&r->mode);
	p = offset / r->piece;
	i = p / r->ppp;
	h = &r->hp[i];

	hp_begin(r, i, &s);
	ready = mode == MHGM_MODE_HGM ? bit_test(r->present, p) :
					h->nr_present == r->ppp;
	timed = note_fault(r, h, p, fault_ns);
	if (!ready) {
		if (!timed)
			count_add(&r->c.faults_untimed, 1);
		if (request) {
			if (mode == MHGM_MODE_HGM)
				*request = (struct mhgm_range){
					p * r->piece, r->piece };
			else
				missing_span(r, i, request);
		}
		ret = MHGM_FAULT_MISSING;
		goto unlock;
	}

	ret = hp_allocate(r, i);
	if (ret)
		goto unlock;
	if (bit_test(r->mapped, p)) {
		/* mapped already (a race with place, or behind our back) */
		if (mode == MHGM_MODE_HGM)
			ret = uffd_continue(r, uffd, p * r->piece, r->piece,
					    r->piece);
		else
			ret = uffd_continue(r, uffd, i * r->hpsize, r->hpsize,
					    r->hpsize);
		if (!ret)
			resolve_waiters(r, h, p, p + 1);
	} else {
		/*
		 * Every present piece of the hugepage, not just this one:
		 * after a drop before registration, or MHGM_PLACE_NOMAP, its
		 * neighbours are present but unmapped, and would otherwise
		 * each fault on their own.
		 */
		ret = hp_map(r, i, i * r->ppp, (i + 1) * r->ppp, mode, uffd);
		if (!ret)
			hp_completed(r, i, mode, uffd);
	}
	if (!ret) {
		count_add(&r->c.faults_mapped, 1);
		if (!timed)
			mhgm_histogram_record(&r->lat,
					      mhgm_clock_ns() - fault_ns);
		ret = MHGM_FAULT_MAPPED;
	}
unlock:
	hp_end(r, i, &s);
out:
	region_exit(r);
	return ret;
}

int mhgm_drop_ranges(struct mhgm_region *r, const struct mhgm_range *ranges,
		     size_t nr)
{
	uint64_t i, from = 0;
	size_t k;
	int ret, mode, uffd;

	if (!ranges || !nr)
		return -EINVAL;
	ret = region_enter(r);
	if (ret)
		return ret;
	/* all or nothing: check every range before dropping any */
	for (k = 0; k < nr; k++) {
		ret = check_range(r, ranges[k].offset, ranges[k].length,
				  r->piece);
		if (ret)
			goto out;
		if (k && ranges[k].offset <
			 ranges[k - 1].offset + ranges[k - 1].length) {
			ret = -EINVAL;
			goto out;
		}
	}
	mode = atomic_load(&r->mode);
	uffd = atomic_load(&r->uffd);
	/* one unmap per hugepage that any range touches */
	for (k = 0; k < nr;) {
		struct hp_snap s;

		if (from < ranges[k].offset)
			from = ranges[k].offset;
		i = from / r->hpsize;
		hp_begin(r, i, &s);
		ret = hp_drop(r, i, &ranges[k], nr - k, mode, uffd);
		hp_end(r, i, &s);
		if (ret)
			break;
		from = (i + 1) * r->hpsize;
		while (k < nr && ranges[k].offset + ranges[k].length <= from)
			k++;
	}
out:
	region_exit(r);
	return ret;
}

int mhgm_drop(struct mhgm_region *r, uint64_t offset, size_t len)
{
	struct mhgm_range range = { offset, len };

	return mhgm_drop_ranges(r, &range, 1);
}

int mhgm_collapse(struct mhgm_region *r, uint64_t offset, uint64_t len,
		  uint64_t *collapsed)
{
	uint64_t i, done = 0;
	int ret, err, mode, uffd;

	if (collapsed)
		*collapsed = 0;
	ret = region_enter(r);
	if (ret)
		return ret;
	ret = check_range(r, offset, len, r->hpsize);
	if (ret)
		goto out;
	mode = atomic_load(&r->mode);
	uffd = atomic_load(&r->uffd);
	for_each_hp(r, offset, len, i) {
		struct hp_snap s;

		hp_begin(r, i, &s);
		err = hp_collapse(r, i, mode, uffd, &done);
		hp_end(r, i, &s);
		if (err && !ret)
			ret = err;
		if (err == -EOPNOTSUPP)
			break;
	}
	if (collapsed)
		*collapsed = done;
out:
	region_exit(r);
	return ret;
}

int mhgm_collapse_pending(struct mhgm_region *r, unsigned int max,
			  uint64_t *collapsed)
{
	uint64_t done = 0, todo, i;
	int ret, err, mode, uffd;

	if (collapsed)
		*collapsed = 0;
	ret = region_enter(r);
	if (ret)
		return ret;
	mode = atomic_load(&r->mode);
	uffd = atomic_load(&r->uffd);
	pthread_mutex_lock(&r->queue.lock);
	todo = r->queue.count;
	pthread_mutex_unlock(&r->queue.lock);
	if (max && max < todo)
		todo = max;

	while (todo--) {
		struct hp_snap s;

		pthread_mutex_lock(&r->queue.lock);
		if (!r->queue.count) {
			pthread_mutex_unlock(&r->queue.lock);
			break;
		}
		i = r->queue.ring[r->queue.head];
		r->queue.head = (r->queue.head + 1) % r->nr_hp;
		r->queue.count--;
		pthread_mutex_unlock(&r->queue.lock);

		hp_begin(r, i, &s);
		r->hp[i].flags &= ~HP_QUEUED;
		err = hp_collapse(r, i, mode, uffd, &done);
		if (err == -EAGAIN || err == -EBUSY)
			hp_enqueue(r, i, false);
		hp_end(r, i, &s);
		if (err && err != -EAGAIN && err != -EBUSY) {
			ret = err;
			break;
		}
	}
	if (collapsed)
		*collapsed = done;
	if (!ret) {
		pthread_mutex_lock(&r->queue.lock);
		ret = r->queue.count > INT32_MAX ? INT32_MAX :
						   (int)r->queue.count;
		pthread_mutex_unlock(&r->queue.lock);
	}
	region_exit(r);
	return ret;
}

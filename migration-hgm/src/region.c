// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * Region lifecycle and setup: create (validate, alias), populate, split,
 * register, close; statistics; the bitmap helpers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "lib.h"

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC		0x958458f6
#endif
#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE	0x03
#endif

/* ------------------------------------------------------------ bitmaps */

static unsigned long word_mask(uint64_t first, uint64_t last, uint64_t w)
{
	uint64_t ws = w * BITS_PER_LONG, we = ws + BITS_PER_LONG;
	unsigned long m = ~0UL;

	if (first > ws)
		m &= ~0UL << (first - ws);
	if (last < we)
		m &= ~0UL >> (we - last);
	return m;
}

/* Set or clear the bits [first, last); return how many changed. */
static uint64_t bits_update(unsigned long *map, uint64_t first, uint64_t last,
			    bool set)
{
	uint64_t n = 0;

	if (first >= last)
		return 0;
	for (uint64_t w = first / BITS_PER_LONG;
	     w <= (last - 1) / BITS_PER_LONG; w++) {
		unsigned long m = word_mask(first, last, w);
		unsigned long changed = m & (set ? ~map[w] : map[w]);

		n += __builtin_popcountl(changed);
		map[w] ^= changed;
	}
	return n;
}

uint64_t bits_set(unsigned long *map, uint64_t first, uint64_t last)
{
	return bits_update(map, first, last, true);
}

uint64_t bits_clear(unsigned long *map, uint64_t first, uint64_t last)
{
	return bits_update(map, first, last, false);
}

/* The first index in [first, last) whose bit is @set, or last. */
uint64_t bits_next(const unsigned long *map, bool set, uint64_t first,
		   uint64_t last)
{
	while (first < last) {
		uint64_t ws = first - first % BITS_PER_LONG;
		unsigned long w = map[first / BITS_PER_LONG];

		if (!set)
			w = ~w;
		w &= ~0UL << (first - ws);
		if (w) {
			uint64_t i = ws + __builtin_ctzl(w);

			return i < last ? i : last;
		}
		first = ws + BITS_PER_LONG;
	}
	return last;
}

/* ---------------------------------------------------------- lifecycle */

int region_enter(struct mhgm_region *r)
{
	if (!r)
		return -EINVAL;
	pthread_rwlock_rdlock(&r->life);
	if (r->closed) {
		pthread_rwlock_unlock(&r->life);
		return -EBADF;
	}
	return 0;
}

void region_exit(struct mhgm_region *r)
{
	pthread_rwlock_unlock(&r->life);
}

/*
 * Check /proc/self/maps: [start, start + len) must be covered by shared
 * mappings of (dev, ino) at file offset @off.  Returns 1 when the file
 * cannot be read (no /proc): the caller's map_flags are all we have then.
 */
static int check_guest_maps(uintptr_t start, uint64_t len, dev_t dev,
			    ino_t ino, uint64_t off)
{
	uintptr_t next = start, end = start + len;
	char *line = NULL;
	size_t cap = 0;
	int ret = -EFAULT;
	FILE *f;

	f = fopen("/proc/self/maps", "re");
	if (!f)
		return 1;
	while (getline(&line, &cap, f) > 0) {
		unsigned long lo, hi, pgoff, inode;
		unsigned int maj, min;
		char perms[5];

		if (sscanf(line, "%lx-%lx %4s %lx %x:%x %lu", &lo, &hi, perms,
			   &pgoff, &maj, &min, &inode) != 7)
			continue;
		if (hi <= next)
			continue;
		if (lo > next)
			break;		/* a hole: -EFAULT */
		if (perms[3] != 's') {
			ret = -EOPNOTSUPP;
			break;
		}
		if (makedev(maj, min) != dev || inode != ino ||
		    pgoff + (next - lo) != off + (next - start)) {
			ret = -EINVAL;
			break;
		}
		next = hi;
		if (next >= end) {
			ret = 0;
			break;
		}
	}
	free(line);
	fclose(f);
	return ret;
}

static int validate(const struct mhgm_region_params *p, struct stat *st,
		    uint64_t *hpsize)
{
	uintptr_t guest = (uintptr_t)p->guest;
	struct statfs sfs;
	int fl, ret;

	fl = fcntl(p->fd, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) != O_RDWR)
		return -EBADF;
	if (fstat(p->fd, st))
		return -EBADF;
	if (!S_ISREG(st->st_mode))
		return -EOPNOTSUPP;
	if (fstatfs(p->fd, &sfs))
		return -errno;
	if (sfs.f_type != HUGETLBFS_MAGIC)
		return -EOPNOTSUPP;
	if ((p->map_flags & MAP_TYPE) != MAP_SHARED &&
	    (p->map_flags & MAP_TYPE) != MAP_SHARED_VALIDATE)
		return -EOPNOTSUPP;

	*hpsize = sfs.f_bsize;
	if (p->hpage_size && p->hpage_size != *hpsize)
		return -EINVAL;
	if (!p->length || p->length % *hpsize || p->offset % *hpsize ||
	    guest % *hpsize)
		return -EINVAL;
	if (p->offset + p->length < p->offset ||
	    p->offset + p->length > (uint64_t)st->st_size ||
	    guest + p->length < guest)
		return -EINVAL;

	ret = check_guest_maps(guest, p->length, st->st_dev, st->st_ino,
			       p->offset);
	return ret < 0 ? ret : 0;
}

static int region_alloc(struct mhgm_region *r)
{
	pthread_rwlockattr_t attr;
	uint64_t words = (r->nr_pieces + BITS_PER_LONG - 1) / BITS_PER_LONG;

	r->hp = calloc(r->nr_hp, sizeof(*r->hp));
	r->present = calloc(words, sizeof(unsigned long));
	r->mapped = calloc(words, sizeof(unsigned long));
	r->queue.ring = calloc(r->nr_hp, sizeof(*r->queue.ring));
	if (!r->hp || !r->present || !r->mapped || !r->queue.ring)
		return -ENOMEM;

	/* Writers first, so close is not starved by a stream of calls. */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&r->life, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&r->setup, NULL);
	pthread_mutex_init(&r->pend.lock, NULL);
	pthread_mutex_init(&r->queue.lock, NULL);
	for (uint64_t i = 0; i < r->nr_hp; i++)
		pthread_mutex_init(&r->hp[i].lock, NULL);
	for (unsigned int s = 0; s < PENDING_SLOTS; s++)
		r->pend.slot[s].piece = UINT64_MAX;
	hist_init(&r->lat);
	return 0;
}

static void region_release(struct mhgm_region *r, bool locks)
{
	if (locks) {
		for (uint64_t i = 0; i < r->nr_hp; i++)
			pthread_mutex_destroy(&r->hp[i].lock);
		pthread_mutex_destroy(&r->queue.lock);
		pthread_mutex_destroy(&r->pend.lock);
		pthread_mutex_destroy(&r->setup);
		pthread_rwlock_destroy(&r->life);
	}
	free(r->queue.ring);
	free(r->mapped);
	free(r->present);
	free(r->hp);
	free(r);
}

int mhgm_region_create(const struct mhgm_region_params *p,
		       struct mhgm_region **regionp)
{
	struct mhgm_region *r;
	uint64_t hpsize = 0;
	struct stat st;
	int ret;

	if (!p || !regionp || !p->guest ||
	    (p->flags & ~MHGM_REGION_INIT_PRESENT) || p->resv1)
		return -EINVAL;
	for (unsigned int i = 0; i < ARRAY_SIZE(p->resv2); i++)
		if (p->resv2[i])
			return -EINVAL;
	ret = validate(p, &st, &hpsize);
	if (ret)
		return ret;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->fd = -1;
	r->file_offset = p->offset;
	r->length = p->length;
	r->hpsize = hpsize;
	r->piece = sysconf(_SC_PAGESIZE);
	r->ppp = hpsize / r->piece;
	r->nr_hp = p->length / hpsize;
	r->nr_pieces = p->length / r->piece;
	r->guest = p->guest;
	atomic_init(&r->mode, MHGM_MODE_FALLBACK);
	atomic_init(&r->uffd, -1);
	atomic_init(&r->policy, MHGM_COLLAPSE_MANUAL);
	atomic_init(&r->collapse_efd, -1);
	ret = region_alloc(r);
	if (ret) {
		region_release(r, false);
		return ret;
	}

	r->fd = fcntl(p->fd, F_DUPFD_CLOEXEC, 3);
	if (r->fd < 0) {
		ret = -errno;
		goto fail;
	}
	/* NORESERVE: the guest mapping made any reservation already. */
	r->alias = mmap(NULL, r->length, PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_NORESERVE, r->fd, r->file_offset);
	if (r->alias == MAP_FAILED) {
		ret = -errno;
		close(r->fd);
		goto fail;
	}

	if (p->flags & MHGM_REGION_INIT_PRESENT) {
		bits_set(r->present, 0, r->nr_pieces);
		bits_set(r->mapped, 0, r->nr_pieces);
		for (uint64_t i = 0; i < r->nr_hp; i++) {
			r->hp[i].nr_present = r->ppp;
			r->hp[i].nr_mapped = r->ppp;
			r->hp[i].flags = HP_WHOLE;
		}
		atomic_init(&r->c.pieces_present, r->nr_pieces);
		atomic_init(&r->c.pieces_mapped, r->nr_pieces);
		atomic_init(&r->c.hp_complete, r->nr_hp);
		atomic_init(&r->c.hp_whole, r->nr_hp);
	}
	*regionp = r;
	return 0;
fail:
	region_release(r, true);
	return ret;
}

/*
 * UFFDIO_UNREGISTER the guest range, then UFFDIO_WAKE it: the kernel wakes
 * the threads waiting on a fault when it unregisters a missing-mode range,
 * but not a minor-mode one, and those would sleep forever.  Woken, they
 * fault again on a range that is no longer registered and map whatever the
 * page cache holds.  No wake when the unregistration fails: the threads
 * would only fault and wait again.  Returns 0 or a negative errno, and in
 * *@unregistered whether the range is unregistered.
 */
static int uffd_unregister(struct mhgm_region *r, int uffd,
			   bool *unregistered)
{
	struct uffdio_range range = {
		.start = (uintptr_t)r->guest,
		.len = r->length,
	};

	*unregistered = false;
	if (ioctl(uffd, UFFDIO_UNREGISTER, &range))
		return -errno;
	*unregistered = true;
	if (ioctl(uffd, UFFDIO_WAKE, &range))
		return -errno;
	return 0;
}

int mhgm_region_close(struct mhgm_region *r)
{
	bool unregistered;
	int uffd;

	if (!r)
		return -EINVAL;
	pthread_rwlock_wrlock(&r->life);
	if (r->closed) {
		pthread_rwlock_unlock(&r->life);
		return -EBADF;
	}
	r->closed = true;
	uffd = atomic_exchange(&r->uffd, -1);
	/* Closing anyway: a caller could do nothing about a failure here. */
	if (uffd >= 0)
		uffd_unregister(r, uffd, &unregistered);
	munmap(r->alias, r->length);
	r->alias = NULL;
	close(r->fd);
	r->fd = -1;
	pthread_rwlock_unlock(&r->life);
	return 0;
}

void mhgm_region_free(struct mhgm_region *r)
{
	if (!r)
		return;
	mhgm_region_close(r);
	region_release(r, true);
}

/* ------------------------------------------------------------- setup */

int mhgm_region_populate(struct mhgm_region *r, mhgm_progress_fn progress,
			 void *opaque)
{
	for (uint64_t i = 0; r && i < r->nr_hp; i++) {
		struct hpage *h = &r->hp[i];
		int ret = region_enter(r);

		if (ret)
			return ret;
		pthread_mutex_lock(&h->lock);
		if (!(h->flags & HP_ALLOCATED)) {
			if (fallocate(r->fd, 0, r->file_offset + i * r->hpsize,
				      r->hpsize))
				ret = -errno;
			else
				h->flags |= HP_ALLOCATED;
		}
		pthread_mutex_unlock(&h->lock);
		region_exit(r);
		if (ret)
			return ret;
		/* Outside the region lock: the callback may call us. */
		if (progress && progress((i + 1) * r->hpsize, r->length,
					 opaque))
			return -ECANCELED;
	}
	return r ? 0 : -EINVAL;
}

int mhgm_region_split(struct mhgm_region *r)
{
	int ret = region_enter(r);

	if (ret)
		return ret;
	pthread_mutex_lock(&r->setup);
	if (atomic_load(&r->mode) == MHGM_MODE_HGM)
		goto out;
	/*
	 * Before registration only: placement reads the mode without the
	 * setup lock, and nothing may be mapped under fallback rules while
	 * another thread already maps 4 KiB pieces.
	 */
	if (atomic_load(&r->uffd) >= 0)
		ret = -EBUSY;
	else if (madvise(r->guest, r->length, MHGM_MADV_SPLIT))
		ret = errno == EINVAL ? -EOPNOTSUPP : -errno;
	else
		atomic_store(&r->mode, MHGM_MODE_HGM);
out:
	pthread_mutex_unlock(&r->setup);
	region_exit(r);
	return ret;
}

int mhgm_region_mode(struct mhgm_region *r)
{
	int ret = region_enter(r);

	if (ret)
		return ret;
	ret = atomic_load(&r->mode);
	region_exit(r);
	return ret;
}

/*
 * The features a userfaultfd was set up with, from the "API:" line of its
 * fdinfo.  0 found, -EBADF when @uffd is not a userfaultfd, 1 when fdinfo
 * cannot be read.
 */
static int uffd_features(int uffd, uint64_t *features)
{
	char path[64], *line = NULL;
	size_t cap = 0;
	int ret = -EBADF;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", uffd);
	f = fopen(path, "re");
	if (!f)
		return 1;
	while (getline(&line, &cap, f) > 0) {
		unsigned long long api, ioctls;
		unsigned int feat;

		if (sscanf(line, "API:\t%llx:%x:%llx", &api, &feat,
			   &ioctls) == 3) {
			*features = feat;
			ret = 0;
			break;
		}
	}
	free(line);
	fclose(f);
	return ret;
}

int mhgm_region_register(struct mhgm_region *r, int uffd)
{
	const uint64_t need = (1ULL << _UFFDIO_CONTINUE) |
			      (1ULL << _UFFDIO_WAKE);
	struct uffdio_register reg;
	uint64_t features = 0;
	bool unregistered;
	int ret, unread;

	ret = region_enter(r);
	if (ret)
		return ret;
	pthread_mutex_lock(&r->setup);
	if (atomic_load(&r->uffd) >= 0) {
		ret = -EALREADY;
		goto out;
	}
	if (uffd < 0 || fcntl(uffd, F_GETFD) < 0) {
		ret = -EBADF;
		goto out;
	}
	unread = uffd_features(uffd, &features);
	if (unread < 0) {
		ret = unread;
		goto out;
	}
	/* 0 also means "no UFFDIO_API yet": the kernel marks it initialized */
	if (!unread && !(features & UFFD_FEATURE_MINOR_HUGETLBFS)) {
		ret = -EPROTO;
		goto out;
	}
	reg = (struct uffdio_register){
		.range = { .start = (uintptr_t)r->guest, .len = r->length },
		.mode = UFFDIO_REGISTER_MODE_MINOR,
	};
	if (ioctl(uffd, UFFDIO_REGISTER, &reg)) {
		switch (errno) {
		case ENOTTY:
		case EBADF:
			ret = -EBADF;
			break;
		case EINVAL:
			/* features looked right: the kernel cannot do it */
			ret = unread ? -EPROTO : -EOPNOTSUPP;
			break;
		default:
			ret = -errno;
		}
		goto out;
	}
	if ((reg.ioctls & need) != need) {
		/* a guest thread may have faulted already: wake it */
		uffd_unregister(r, uffd, &unregistered);
		ret = -EOPNOTSUPP;
		goto out;
	}
	atomic_store(&r->uffd, uffd);
out:
	pthread_mutex_unlock(&r->setup);
	region_exit(r);
	return ret;
}

int mhgm_region_unregister(struct mhgm_region *r)
{
	int ret = region_enter(r);
	bool unregistered;
	int uffd;

	if (ret)
		return ret;
	pthread_mutex_lock(&r->setup);
	uffd = atomic_load(&r->uffd);
	if (uffd < 0) {
		ret = -ENOENT;
	} else {
		ret = uffd_unregister(r, uffd, &unregistered);
		if (unregistered)
			atomic_store(&r->uffd, -1);
	}
	pthread_mutex_unlock(&r->setup);
	region_exit(r);
	return ret;
}

void *mhgm_region_alias(struct mhgm_region *r)
{
	void *alias;

	if (region_enter(r))
		return NULL;
	alias = r->alias;
	region_exit(r);
	return alias;
}

int mhgm_region_offset(struct mhgm_region *r, const void *addr,
		       uint64_t *offset)
{
	uintptr_t a = (uintptr_t)addr, g;
	int ret;

	if (!offset)
		return -EINVAL;
	ret = region_enter(r);
	if (ret)
		return ret;
	g = (uintptr_t)r->guest;
	if (a < g || a - g >= r->length)
		ret = -ERANGE;
	else
		*offset = a - g;
	region_exit(r);
	return ret;
}

int mhgm_region_set_collapse(struct mhgm_region *r,
			     enum mhgm_collapse_policy policy, int eventfd)
{
	int ret;

	if (policy != MHGM_COLLAPSE_MANUAL &&
	    policy != MHGM_COLLAPSE_ON_COMPLETE &&
	    policy != MHGM_COLLAPSE_DEFERRED)
		return -EINVAL;
	ret = region_enter(r);
	if (ret)
		return ret;
	pthread_mutex_lock(&r->setup);
	atomic_store(&r->collapse_efd,
		     policy == MHGM_COLLAPSE_DEFERRED ? eventfd : -1);
	atomic_store(&r->policy, policy);
	pthread_mutex_unlock(&r->setup);
	region_exit(r);
	return 0;
}

/* -------------------------------------------------------- statistics */

int mhgm_region_stats(struct mhgm_region *r, struct mhgm_stats *s)
{
	struct counters *c;
	int ret;

	if (!s)
		return -EINVAL;
	ret = region_enter(r);
	if (ret)
		return ret;
	c = &r->c;
	*s = (struct mhgm_stats){
		.mode = atomic_load(&r->mode),
		.collapse_policy = atomic_load(&r->policy),
		.hpage_size = r->hpsize,
		.piece_size = r->piece,
		.registered = atomic_load(&r->uffd) >= 0,
		.hugepages = r->nr_hp,
		.hugepages_split = count_read(&c->hp_split),
		.hugepages_complete = count_read(&c->hp_complete),
		.hugepages_collapsed = count_read(&c->hp_whole),
		.hugepages_queued = count_read(&c->hp_queued),
		.pieces = r->nr_pieces,
		.pieces_present = count_read(&c->pieces_present),
		.pieces_mapped = count_read(&c->pieces_mapped),
		.faults = count_read(&c->faults),
		.faults_mapped = count_read(&c->faults_mapped),
		.faults_untimed = count_read(&c->faults_untimed),
		.pieces_copied = count_read(&c->pieces_copied),
		.pieces_dropped = count_read(&c->pieces_dropped),
		.drop_unmaps = count_read(&c->drop_unmaps),
		.continues = count_read(&c->continues),
		.collapses = count_read(&c->collapses),
		.collapse_failures = count_read(&c->collapse_failures),
	};
	mhgm_histogram_summary(&r->lat, &s->latency);
	region_exit(r);
	return 0;
}

int mhgm_region_record_latency(struct mhgm_region *r, uint64_t ns)
{
	int ret = region_enter(r);

	if (ret)
		return ret;
	mhgm_histogram_record(&r->lat, ns);
	region_exit(r);
	return 0;
}

int mhgm_region_reset_latency(struct mhgm_region *r)
{
	int ret = region_enter(r);

	if (ret)
		return ret;
	mhgm_histogram_reset(&r->lat);
	region_exit(r);
	return 0;
}

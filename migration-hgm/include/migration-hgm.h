/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * libmigration-hgm: place incoming memory into shared hugetlb RAM during
 * postcopy live migration, 4 KiB at a time where the kernel has HugeTLB
 * high-granularity mapping (HGM), a whole hugepage at a time where it has not.
 *
 * This header is the whole contract.  Overview (docs/libmigration-hgm.md has
 * a complete example):
 *
 *   mhgm_probe()                what the running kernel supports
 *   mhgm_region_create()        one hugetlb RAM block: validate, map the alias
 *   mhgm_region_populate()      allocate every hugepage in the page cache
 *   mhgm_region_split()         MADV_SPLIT: switch the region to HGM mode
 *   mhgm_region_register()      userfaultfd minor-mode registration
 *   mhgm_fault()                a guest fault: map it now or say what to fetch
 *   mhgm_place(), mhgm_map()    data arrived: copy it in and map it
 *   mhgm_drop(), mhgm_drop_ranges()  forget pieces the source re-dirtied
 *   mhgm_collapse()             back to hugepage-sized mappings
 *   mhgm_region_stats()         counters and the fault latency distribution
 *   mhgm_region_close(), mhgm_region_free()
 *
 * Terms.  A region covers one RAM block: a range of a hugetlbfs file that the
 * caller has mapped MAP_SHARED at the "guest" address.  The library maps the
 * same range a second time (the "alias") and writes incoming data there, so
 * the guest never sees a half-written page.  A "piece" is one base page
 * (4 KiB on x86_64) of the region; offsets and lengths given to the library
 * are byte offsets into the region and must be multiples of the piece size
 * unless a function says otherwise.  Each piece is "present" (its data is in
 * the page cache: received, or vouched for by the caller) and/or "mapped"
 * (the guest mapping maps it).
 *
 * Modes.  A region starts in MHGM_MODE_FALLBACK: a hugepage is mapped
 * (UFFDIO_CONTINUE of the whole hugepage) only once all its pieces are
 * present, so the guest waits for the whole hugepage.  mhgm_region_split()
 * switches it to MHGM_MODE_HGM when the kernel accepts MADV_SPLIT: each piece
 * is mapped as soon as it is present, and complete hugepages are collapsed
 * back to hugepage mappings by the collapse policy or by mhgm_collapse().  The
 * API is the same in both modes; mhgm_region_mode() and the statistics say
 * which one is in use.
 *
 * Errors.  Functions that can fail return 0 (or a documented non-negative
 * value) on success and a negative errno value on failure; errno itself is
 * not meaningful.  The library never prints, never aborts, keeps no global
 * state, and starts no threads.  Common errors, besides those listed per
 * function:
 *   -EINVAL  a NULL pointer, unknown flags, non-zero reserved fields, or an
 *            offset/length that is not aligned as required or is zero;
 *   -ERANGE  an offset/length that reaches outside the region;
 *   -EBADF   the region was closed with mhgm_region_close();
 *   -ENOMEM  out of memory.
 *
 * Thread safety.  Every function may be called concurrently from any number
 * of threads on the same region (a VMM's fault thread, its receive threads
 * and a collapse thread), except mhgm_region_free(), which must be the last
 * call on a region.  mhgm_region_close() waits for calls in progress to
 * return; calls made after it return -EBADF.  Calls on different pieces of a
 * hugepage serialize on a per-hugepage lock (held across the copy and the
 * ioctl for that hugepage); calls on different hugepages run in parallel.
 * The library never blocks on the userfaultfd, so mhgm_fault() may be called
 * from the thread that reads it -- with one exception: see mhgm_drop().
 * The mode is fixed once the region is registered (mhgm_region_split()).
 * mhgm_region_populate() calls its progress callback with no lock held.
 */
#ifndef MIGRATION_HGM_H
#define MIGRATION_HGM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MHGM_VERSION_MAJOR	0
#define MHGM_VERSION_MINOR	2

/*
 * The madvise() advice values of the HGM uAPI (x86_64), under names of our
 * own so they never clash with a libc that defines them.
 */
#define MHGM_MADV_COLLAPSE	25	/* MADV_COLLAPSE */
#define MHGM_MADV_SPLIT		26	/* MADV_SPLIT */

/* ---------------------------------------------------------------- probe */

/* Features reported by mhgm_probe(), as bits of known/supported. */
#define MHGM_FEAT_SPLIT		(1U << 0) /* madvise(MADV_SPLIT) on hugetlb */
#define MHGM_FEAT_CONTINUE_4K	(1U << 1) /* UFFDIO_CONTINUE of 4 KiB */
#define MHGM_FEAT_COLLAPSE	(1U << 2) /* madvise(MADV_COLLAPSE), hugetlb */
#define MHGM_FEAT_MINOR		(1U << 3) /* UFFD_FEATURE_MINOR_HUGETLBFS */

enum mhgm_mode {
	MHGM_MODE_FALLBACK = 0,	/* whole-hugepage placement */
	MHGM_MODE_HGM = 1,	/* 4 KiB placement, MADV_SPLIT in effect */
};

struct mhgm_probe {
	uint64_t hpage_size;	/* hugepage size that was probed */
	uint32_t known;		/* MHGM_FEAT_* whose answer was determined */
	uint32_t supported;	/* MHGM_FEAT_* that work (subset of known) */
	uint32_t mode;		/* enum mhgm_mode a region would get */
	uint32_t resv1;
	uint64_t resv2[4];
};

/*
 * mhgm_probe - find out what the running kernel supports
 * @hpage_size: hugepage size to probe, in bytes (2 MiB, 1 GiB); 0 for the
 *	kernel's default hugepage size
 * @probe: filled on success
 *
 * Tries each operation on a private scratch hugetlb memfd of one hugepage,
 * with a userfaultfd of its own, and undoes everything before returning: the
 * caller's memory and file descriptors are never touched.  The scratch file
 * briefly takes one free hugepage of @hpage_size from the pool (the kernel
 * zeroes it, which takes a moment for a 1 GiB page).
 *
 * Each MHGM_FEAT_* bit is set in @probe->known when the kernel gave a clear
 * answer and, if that answer was yes, in @probe->supported too.  A feature
 * whose test needs a hugepage (MHGM_FEAT_CONTINUE_4K) stays unknown when no
 * free hugepage of that size is available, and MHGM_FEAT_MINOR and
 * MHGM_FEAT_CONTINUE_4K stay unknown when this process may not create a
 * userfaultfd; the probe never guesses.  @probe->mode is MHGM_MODE_HGM when
 * MADV_SPLIT and minor faults are supported and 4 KiB UFFDIO_CONTINUE is not
 * known to fail, MHGM_MODE_FALLBACK otherwise.  Use mhgm_probe_has() to read
 * one feature.
 *
 * Return: 0 on success, or a negative errno:
 *   -EINVAL  @probe is NULL, or @hpage_size is not a power of two;
 *   -ENOENT  the kernel has no hugepages of @hpage_size;
 *   other    as returned by memfd_create(MFD_HUGETLB) (e.g. -ENOSYS);
 *   -ENOMEM, -EMFILE  out of memory or file descriptors.
 */
int mhgm_probe(uint64_t hpage_size, struct mhgm_probe *probe);

/*
 * mhgm_probe_has - read one feature from a probe result
 * @probe: filled by mhgm_probe()
 * @feature: one MHGM_FEAT_* bit
 *
 * Return: 1 supported, 0 not supported, -1 unknown.
 */
static inline int mhgm_probe_has(const struct mhgm_probe *probe,
				 uint32_t feature)
{
	if (!(probe->known & feature))
		return -1;
	return (probe->supported & feature) ? 1 : 0;
}

/* --------------------------------------------------------------- region */

struct mhgm_region;

/* mhgm_region_params.flags: every piece starts present and mapped */
#define MHGM_REGION_INIT_PRESENT (1U << 0)

struct mhgm_region_params {
	int fd;			/* hugetlbfs file (memfd or file), O_RDWR */
	int map_flags;		/* mmap flags of the guest mapping */
	uint64_t offset;	/* file offset of the block, hugepage-aligned */
	uint64_t length;	/* bytes, a multiple of the hugepage size */
	uint64_t hpage_size;	/* hugepage size, or 0: that of @fd */
	void *guest;		/* the caller's guest mapping of the block */
	uint32_t flags;		/* MHGM_REGION_* */
	uint32_t resv1;		/* must be 0 */
	uint64_t resv2[4];	/* must be 0 */
};

/*
 * mhgm_region_create - set up one hugetlb RAM block
 * @params: the block; see struct mhgm_region_params
 * @regionp: on success, the new region
 *
 * Validates the block and maps the alias: @params->length bytes of
 * @params->fd at @params->offset, MAP_SHARED, a second time.  @params->fd is
 * duplicated, so the caller may close its descriptor.  The caller keeps its
 * guest mapping; the library never unmaps it.  Validation: @fd must be a
 * regular file on hugetlbfs (fstatfs) opened for reading and writing, large
 * enough for the block; @map_flags must be MAP_SHARED or MAP_SHARED_VALIDATE
 * (with any other flags); where /proc/self/maps can be read, the guest range
 * must be mapped shared from that very file at that offset.
 *
 * While the region exists the caller must not punch holes in, or truncate,
 * the block (mhgm_drop() is how pieces are discarded), nor unmap the guest
 * range.
 *
 * Every piece starts neither present nor mapped, or both with
 * MHGM_REGION_INIT_PRESENT (the caller wrote the block through the guest
 * mapping already, as QEMU does in precopy; it then mhgm_drop()s whatever
 * the source re-dirtied).  The region starts in MHGM_MODE_FALLBACK with
 * collapse policy MHGM_COLLAPSE_MANUAL and no userfaultfd.
 *
 * Return: 0 on success, or a negative errno:
 *   -EBADF       @fd is not an open file descriptor, or not opened O_RDWR;
 *   -EOPNOTSUPP  @fd is not a regular file on hugetlbfs, or the guest
 *                mapping is private (per @map_flags or /proc/self/maps): the
 *                library cannot serve this block, use plain postcopy;
 *   -EINVAL      misaligned @offset/@length/@guest, zero @length, a
 *                @hpage_size that does not match the file's, a block beyond
 *                the end of the file, the guest range mapping another file or
 *                another offset, unknown flags or non-zero reserved fields;
 *   -EFAULT      the guest range is not entirely mapped;
 *   -ENOMEM      out of memory, or the alias could not be mapped.
 */
int mhgm_region_create(const struct mhgm_region_params *params,
		       struct mhgm_region **regionp);

/*
 * mhgm_region_close - shut a region down
 * @region: the region
 *
 * Waits for calls in progress on @region to return, unregisters the guest
 * range from the userfaultfd if mhgm_region_register() registered it and
 * wakes the threads still waiting on a fault there, as
 * mhgm_region_unregister() does (they then map whatever is in the page
 * cache), unmaps the alias and closes the library's copy of the file
 * descriptor.  The guest mapping and the page cache are left as they are.
 * Later calls on @region return -EBADF; statistics can no longer be read.
 *
 * Return: 0, or -EBADF if @region was already closed, -EINVAL if NULL.
 */
int mhgm_region_close(struct mhgm_region *region);

/*
 * mhgm_region_free - release a region
 * @region: the region, or NULL (then nothing happens)
 *
 * Closes @region if mhgm_region_close() was not called, then frees it.  This
 * must be the last call on @region, made when no other thread uses it.
 */
void mhgm_region_free(struct mhgm_region *region);

/* Progress callback of mhgm_region_populate(); non-zero return cancels. */
typedef int (*mhgm_progress_fn)(uint64_t done, uint64_t total, void *opaque);

/*
 * mhgm_region_populate - allocate every hugepage of the region up front
 * @region: the region
 * @progress: called after each hugepage with the bytes done so far and the
 *	region length, from the calling thread; may be NULL
 * @opaque: passed to @progress
 *
 * Allocates each hugepage of the block in the page cache with fallocate(),
 * so that every later guest fault is a minor fault.  Pages already in the
 * page cache are kept as they are; new ones are zeroed by the kernel, which
 * takes a while for 1 GiB pages.  Pieces do not become present: a zeroed
 * hugepage holds no received data.  Calling it is optional (mhgm_place()
 * allocates a hugepage on first use) but recommended before postcopy starts.
 *
 * Return: 0 on success, or a negative errno:
 *   -ENOSPC     not enough free hugepages (those allocated so far stay);
 *   -ECANCELED  @progress returned non-zero;
 *   other       as returned by fallocate().
 */
int mhgm_region_populate(struct mhgm_region *region, mhgm_progress_fn progress,
			 void *opaque);

/*
 * mhgm_region_split - switch the region to HGM mode
 * @region: the region
 *
 * Issues madvise(MADV_SPLIT) on the guest range.  On success the region uses
 * MHGM_MODE_HGM from now on: pieces are mapped 4 KiB at a time, and after
 * mhgm_drop() only the dropped pieces are asked for again (see there).  When
 * the kernel refuses, the region keeps MHGM_MODE_FALLBACK, which works the
 * same through this API.  Call it before mhgm_region_register() (the mode
 * must not change while faults are being served); pieces placed before are
 * kept, and a region created with MHGM_REGION_INIT_PRESENT may be split and
 * then have single pieces dropped.  Calling it again in HGM mode does
 * nothing.
 *
 * Return: 0 on success, or a negative errno:
 *   -EOPNOTSUPP  the kernel has no HGM for this mapping (EINVAL from madvise);
 *   -EBUSY       the region is registered with a userfaultfd already;
 *   other        as returned by madvise().
 */
int mhgm_region_split(struct mhgm_region *region);

/*
 * mhgm_region_mode - the mode a region uses
 * @region: the region
 *
 * Return: MHGM_MODE_FALLBACK or MHGM_MODE_HGM, or -EBADF after close,
 * -EINVAL if @region is NULL.
 */
int mhgm_region_mode(struct mhgm_region *region);

/*
 * mhgm_region_register - register the guest range for minor faults
 * @region: the region
 * @uffd: the caller's userfaultfd, created by this process and already set
 *	up with UFFDIO_API requesting UFFD_FEATURE_MINOR_HUGETLBFS
 *
 * Issues UFFDIO_REGISTER with UFFDIO_REGISTER_MODE_MINOR on the guest range
 * and remembers @uffd for UFFDIO_CONTINUE and UFFDIO_WAKE.  The library never
 * reads @uffd: the caller reads fault messages and passes them to
 * mhgm_fault().  @uffd is not duplicated; keep it open until
 * mhgm_region_unregister() or mhgm_region_close().  Until a region is
 * registered, nothing is mapped by the library: pieces only become present.
 * If the features of @uffd cannot be read from /proc/self/fdinfo, they are
 * judged from the kernel's answer to the registration.
 *
 * Return: 0 on success, or a negative errno:
 *   -EBADF       @uffd is not an open userfaultfd;
 *   -EPROTO      @uffd has not been through UFFDIO_API, or without
 *                UFFD_FEATURE_MINOR_HUGETLBFS;
 *   -EOPNOTSUPP  the kernel cannot resolve minor faults on this range with
 *                UFFDIO_CONTINUE;
 *   -EBUSY       the range is registered with another userfaultfd;
 *   -EALREADY    @region is registered already.
 */
int mhgm_region_register(struct mhgm_region *region, int uffd);

/*
 * mhgm_region_unregister - undo mhgm_region_register()
 * @region: the region
 *
 * Issues UFFDIO_UNREGISTER on the guest range and forgets the userfaultfd,
 * then UFFDIO_WAKE on the range: the kernel wakes the threads waiting on a
 * fault when it unregisters a missing-mode range but not a minor-mode one.
 * Woken threads fault again on the unregistered range and map whatever is
 * in the page cache.  Fault messages already queued on the userfaultfd stay
 * there; mhgm_fault() then returns -ENOENT for them.
 *
 * Return: 0 on success, or a negative errno:
 *   -ENOENT  @region is not registered;
 *   other    UFFDIO_UNREGISTER failed: the range stays registered, nothing
 *            was woken; or UFFDIO_WAKE failed: the range is unregistered,
 *            but threads waiting on it may not have been woken.
 */
int mhgm_region_unregister(struct mhgm_region *region);

/*
 * mhgm_region_alias - the alias mapping of a region
 * @region: the region
 *
 * A caller may receive data straight into the alias (for pieces that are
 * not present yet) and then call mhgm_map(), saving the copy of
 * mhgm_place().  It must not write to pieces that are present: the guest may
 * be using them.  The alias is unmapped by mhgm_region_close().
 *
 * Return: the address where offset 0 of the region is mapped a second time,
 * or NULL if @region is NULL or closed.
 */
void *mhgm_region_alias(struct mhgm_region *region);

/*
 * mhgm_region_offset - translate a guest address into a region offset
 * @region: the region
 * @addr: an address in the guest mapping, e.g. a fault address
 * @offset: on success, @addr minus the start of the guest mapping
 *
 * Return: 0, or -ERANGE if @addr is outside the region, -EBADF after close,
 * -EINVAL if @region or @offset is NULL.
 */
int mhgm_region_offset(struct mhgm_region *region, const void *addr,
		       uint64_t *offset);

/* ---------------------------------------------------------------- place */

/* Flags of mhgm_place() and mhgm_map(). */
#define MHGM_PLACE_NOMAP (1U << 0) /* make present only, map nothing yet */

/*
 * mhgm_place - copy incoming data in and map it
 * @region: the region
 * @offset: region offset of the data, a multiple of the piece size
 * @src: the data, @len bytes; NULL places zeroes
 * @len: a multiple of the piece size; may span hugepages
 * @flags: 0 or MHGM_PLACE_NOMAP
 *
 * Copies each piece of the range that is not present yet into the alias and
 * marks it present; pieces already present are left untouched (their data is
 * not copied again: a duplicate send is harmless).  Then, unless
 * MHGM_PLACE_NOMAP is given and when the region is registered, maps what the
 * mode allows: in HGM mode each present piece of the range (one
 * UFFDIO_CONTINUE per run of pieces, or one for the whole hugepage when all
 * its pieces are present and none is mapped); in fallback mode each hugepage
 * of the range whose pieces are now all present.  Mapping wakes threads
 * waiting on those pieces.  In HGM mode a hugepage that becomes completely
 * mapped is collapsed according to the collapse policy.  Faults noted by
 * mhgm_fault() on pieces that get mapped are timed into the latency
 * histogram.  A hugepage not yet allocated (see mhgm_region_populate()) is
 * allocated first.  @src must be readable for @len bytes.
 *
 * Return: 0 on success, or a negative errno; pieces copied before an error
 * stay present:
 *   -ENOSPC  a hugepage could not be allocated;
 *   -EFAULT, -ENOENT, -ESRCH  UFFDIO_CONTINUE failed (page gone from the
 *            page cache, range no longer registered, process exiting);
 *   -EAGAIN  the mapping kept changing under UFFDIO_CONTINUE; try again.
 */
int mhgm_place(struct mhgm_region *region, uint64_t offset, const void *src,
	       size_t len, uint32_t flags);

/*
 * mhgm_map - mark a range present and map it
 * @region: the region
 * @offset: region offset, a multiple of the piece size
 * @len: a multiple of the piece size
 * @flags: 0 or MHGM_PLACE_NOMAP
 *
 * Like mhgm_place() without the copy: the caller vouches that the page cache
 * already holds the right data for the range (it received it straight into
 * the alias, or the data is known to be there).  Marks every piece of the
 * range present, then maps as mhgm_place() does.  To map a hugepage whole
 * in fallback mode before all its pieces have arrived, mhgm_map() the whole
 * hugepage.
 *
 * Return: as mhgm_place().
 */
int mhgm_map(struct mhgm_region *region, uint64_t offset, size_t len,
	     uint32_t flags);

/* Return values of mhgm_fault() */
#define MHGM_FAULT_MAPPED	0	/* resolved: the thread runs on */
#define MHGM_FAULT_MISSING	1	/* fetch @request, mhgm_place() it */

struct mhgm_range {
	uint64_t offset;
	uint64_t length;
};

/*
 * mhgm_fault - handle a minor fault the caller read from its userfaultfd
 * @region: the region
 * @offset: region offset of the fault address (any alignment; see
 *	mhgm_region_offset())
 * @fault_ns: when the fault was seen, CLOCK_MONOTONIC nanoseconds (see
 *	mhgm_clock_ns()); 0 means now
 * @request: on MHGM_FAULT_MISSING, the range to fetch; may be NULL
 *
 * If the faulting piece is present (in fallback mode: if its whole hugepage
 * is), maps it together with the other present pieces of its hugepage that
 * are not mapped yet (MHGM_PLACE_NOMAP, a drop before registration), wakes
 * the faulting thread, records the latency since @fault_ns and returns
 * MHGM_FAULT_MAPPED.  A fault on a piece the library believes mapped is
 * answered with UFFDIO_WAKE after UFFDIO_CONTINUE finds it mapped, so a
 * fault that raced with mhgm_place() is never lost.
 * Otherwise the fault is noted (once per piece) so that the mhgm_place() or
 * mhgm_map() that maps the piece records its latency, and the function
 * returns MHGM_FAULT_MISSING with @request set to what the caller should ask
 * the source for: the faulting piece in HGM mode; in fallback mode the span
 * from the first to the last missing piece of the hugepage.  The caller may
 * ask for more.
 *
 * Return: MHGM_FAULT_MAPPED or MHGM_FAULT_MISSING, or a negative errno:
 *   -ENOENT  the region is not registered with a userfaultfd;
 *   other    as mhgm_place().
 */
int mhgm_fault(struct mhgm_region *region, uint64_t offset, uint64_t fault_ns,
	       struct mhgm_range *request);

/*
 * mhgm_drop - forget pieces whose data is stale
 * @region: the region
 * @offset: region offset, a multiple of the piece size
 * @len: a multiple of the piece size
 *
 * For the pages a source re-dirtied (postcopy discard): unmaps the range from
 * the guest and clears its present and mapped state, without discarding any
 * hugepage from the page cache (no hole is punched and no hugepage is freed).
 * Upstream kernels unmap hugetlb memory in whole hugepages only (the HGM
 * series unmaps PAGE_SIZE pieces of a split mapping, which the library
 * does not probe for yet), so each hugepage the range touches is unmapped
 * whole with madvise(MADV_DONTNEED); its other pieces stay present.  In
 * HGM mode on a registered region, those that were mapped are mapped again
 * at once with UFFDIO_CONTINUE, so only the dropped pieces fault.
 * Otherwise (fallback mode, or not registered yet) they are mapped again
 * later: in fallback mode with the whole hugepage once the dropped pieces
 * come back, in HGM mode by the first fault on any of them, which maps
 * every present piece of the hugepage.  The next guest access to a dropped piece faults, and
 * mhgm_fault() then asks for that piece.  Collapsed hugepages lose that
 * state.
 *
 * If the userfaultfd was set up with UFFD_FEATURE_EVENT_REMOVE, the kernel
 * makes madvise wait until the UFFD_EVENT_REMOVE message is read: then do
 * not call mhgm_drop() from the thread that reads the userfaultfd.
 *
 * Return: 0 on success, or a negative errno: from madvise(), and then
 * state is cleared only for the hugepages whose unmap succeeded; or from
 * UFFDIO_CONTINUE (as mhgm_place()) when mapping the kept pieces again,
 * and then the pieces not mapped again are marked unmapped (still present).
 */
int mhgm_drop(struct mhgm_region *region, uint64_t offset, size_t len);

/*
 * mhgm_drop_ranges - mhgm_drop() of many ranges, one unmap per hugepage
 * @region: the region
 * @ranges: @nr ranges, each as @offset/@len of mhgm_drop(), sorted by
 *	offset and not overlapping (one may start where the last ended)
 * @nr: how many, at least 1
 *
 * Drops exactly the pieces that @ranges cover, as mhgm_drop() of each range
 * would, but unmaps (and in HGM mode on a registered region maps again) each
 * hugepage that the ranges touch once, not once per range.  A postcopy
 * source's discard list of a write-heavy guest holds many short ranges in
 * one hugepage (up to half its pieces, 131072 for 1 GiB, when every other
 * 4 KiB page was re-dirtied); dropping them one by one costs one
 * madvise(MADV_DONTNEED) of the whole hugepage each (see docs/benchmarks.md
 * for the measured cost).  Available since 0.2 (MHGM_VERSION_MINOR 2);
 * stats.drop_unmaps counts the hugepages unmapped.
 *
 * Return: 0 on success, or a negative errno: -EINVAL or -ERANGE for any
 * range as mhgm_drop(), and -EINVAL if @ranges is NULL, @nr is 0, or the
 * ranges are not sorted or overlap; then nothing is dropped.  Otherwise an
 * error of mhgm_drop(), with its meaning, for the hugepage where the call
 * stopped: the hugepages before it were dropped, those after it were not.
 */
int mhgm_drop_ranges(struct mhgm_region *region,
		     const struct mhgm_range *ranges, size_t nr);

/* ------------------------------------------------------------- collapse */

enum mhgm_collapse_policy {
	MHGM_COLLAPSE_MANUAL = 0,	/* only by mhgm_collapse() */
	MHGM_COLLAPSE_ON_COMPLETE = 1,	/* by the call that completes it */
	MHGM_COLLAPSE_DEFERRED = 2,	/* queued for mhgm_collapse_pending() */
};

/*
 * mhgm_region_set_collapse - choose when complete hugepages are collapsed
 * @region: the region
 * @policy: enum mhgm_collapse_policy
 * @eventfd: with MHGM_COLLAPSE_DEFERRED, an eventfd the library adds 1 to
 *	each time it queues a hugepage (so a collapse thread can poll it), or
 *	-1; ignored by the other policies.  Not duplicated: keep it open.
 *
 * A hugepage is complete when all its pieces are mapped at 4 KiB granularity
 * (HGM mode only; in fallback mode hugepages are only ever mapped whole and
 * the policy has no effect).  Changing the policy does not touch hugepages
 * that completed before.
 *
 * Return: 0 on success, -EINVAL for an unknown @policy.
 */
int mhgm_region_set_collapse(struct mhgm_region *region,
			     enum mhgm_collapse_policy policy, int eventfd);

/*
 * mhgm_collapse - collapse complete hugepages of a range
 * @region: the region
 * @offset: region offset, a multiple of the hugepage size
 * @len: a multiple of the hugepage size
 * @collapsed: on return (success or not), how many hugepages this call
 *	turned into hugepage-sized mappings; may be NULL
 *
 * For each hugepage of the range whose pieces are all present and that is
 * not mapped whole: maps the pieces not yet mapped (registered regions only),
 * then in HGM mode issues madvise(MADV_COLLAPSE) on that one hugepage, which
 * replaces the PTEs and PMDs mapping its pieces with one hugepage-sized
 * entry and frees their page tables -- or, when none of its pieces was
 * mapped, maps it whole with one UFFDIO_CONTINUE, which needs no collapse.
 * MADV_COLLAPSE maps the pieces that were not mapped too, so on a region
 * that is not registered a hugepage with some pieces mapped is collapsed
 * all the same; one with none mapped is left unmapped (the guest then
 * faults it in whole).  MADV_COLLAPSE is never issued on a hugepage with
 * missing pieces: the kernel would map them, stale data and all.  In
 * fallback mode complete hugepages are mapped whole (such hugepages exist
 * only after MHGM_PLACE_NOMAP).  Hugepages with missing pieces are skipped.
 * At the end of postcopy, mhgm_collapse() of the whole (registered) region
 * leaves every hugepage mapped whole.
 *
 * Return: 0 on success, or the first negative errno met (the other hugepages
 * are still processed, except after -EOPNOTSUPP):
 *   -EOPNOTSUPP  the kernel refuses MADV_COLLAPSE on hugetlb;
 *   -EAGAIN, -EBUSY, -ENOMEM  MADV_COLLAPSE failed for a hugepage; retry later;
 *   other        as mhgm_place().
 */
int mhgm_collapse(struct mhgm_region *region, uint64_t offset, uint64_t len,
		  uint64_t *collapsed);

/*
 * mhgm_collapse_pending - collapse hugepages queued by MHGM_COLLAPSE_DEFERRED
 * @region: the region
 * @max: at most this many queued hugepages; 0 for all queued now
 * @collapsed: as for mhgm_collapse(); may be NULL
 *
 * Takes hugepages off the queue in the order they completed and collapses
 * each that is still complete, as mhgm_collapse() does.  Meant for a collapse
 * thread that polls the eventfd given to mhgm_region_set_collapse().
 * Hugepages that fail with -EAGAIN or -EBUSY are queued again.
 *
 * Return: the number of hugepages still queued (>= 0), or a negative errno
 * as mhgm_collapse().
 */
int mhgm_collapse_pending(struct mhgm_region *region, unsigned int max,
			  uint64_t *collapsed);

/* ---------------------------------------------------- latency histogram */

/*
 * A log-linear histogram of nanosecond values: exact below 64, then 32
 * buckets per power of two, so a reported percentile is at most 1/32
 * (3.2 %) above the true value and never above the maximum.  Recording is
 * lock-free and may run concurrently with anything else on the histogram.
 */
struct mhgm_histogram;

struct mhgm_latency {
	uint64_t count;
	uint64_t min, max, mean;	/* exact (mean rounded down) */
	uint64_t p50, p90, p99, p999;	/* bucket upper bounds, <= max */
};

/*
 * mhgm_histogram_new - allocate an empty histogram
 * @histp: on success, the histogram
 *
 * Each region has a histogram of its own (see mhgm_region_stats()); this
 * one is for callers that want to time something else the same way, e.g.
 * a source answering page requests.  About 15 KiB.
 *
 * Return: 0, or -EINVAL if @histp is NULL, -ENOMEM.
 */
int mhgm_histogram_new(struct mhgm_histogram **histp);

/*
 * mhgm_histogram_free - free a histogram
 * @hist: from mhgm_histogram_new(), or NULL (then nothing happens); must
 *	not be in use by another thread
 */
void mhgm_histogram_free(struct mhgm_histogram *hist);

/*
 * mhgm_histogram_record - add one value
 * @hist: the histogram; NULL is ignored
 * @ns: the value, normally nanoseconds; any 64-bit value is accepted
 *
 * Lock-free (a few relaxed atomic operations); safe from any thread.
 */
void mhgm_histogram_record(struct mhgm_histogram *hist, uint64_t ns);

/*
 * mhgm_histogram_reset - forget all values
 * @hist: the histogram; NULL is ignored
 *
 * Values recorded by other threads while the reset runs may survive it
 * in part; reset when nothing records, or accept that.
 */
void mhgm_histogram_reset(struct mhgm_histogram *hist);

/*
 * mhgm_histogram_percentile - one percentile
 * @hist: the histogram
 * @percent: 0.0 to 100.0; 0 gives the minimum, 100 the maximum
 * @value: on success, the smallest bucket upper bound (capped at the
 *	maximum) below which at least @percent % of the values lie
 * Return: 0, -ENODATA if the histogram is empty, -EINVAL for bad arguments.
 */
int mhgm_histogram_percentile(const struct mhgm_histogram *hist,
			      double percent, uint64_t *value);

/*
 * mhgm_histogram_summary - count, min, max, mean, p50, p90, p99, p99.9
 * @hist: the histogram
 * @lat: filled; all zero when the histogram is empty
 *
 * The percentiles are computed as mhgm_histogram_percentile() does, from
 * one pass over the buckets, so they are consistent with each other and
 * with @lat->count even while other threads record.
 *
 * Return: 0, or -EINVAL if an argument is NULL.
 */
int mhgm_histogram_summary(const struct mhgm_histogram *hist,
			   struct mhgm_latency *lat);

/*
 * mhgm_clock_ns - the clock fault timestamps are taken from
 *
 * Timestamps given to mhgm_fault() must come from this clock (or from
 * clock_gettime(CLOCK_MONOTONIC) in nanoseconds, which is the same).
 *
 * Return: CLOCK_MONOTONIC in nanoseconds.
 */
uint64_t mhgm_clock_ns(void);

/* ----------------------------------------------------------- statistics */

struct mhgm_stats {
	uint32_t mode;			/* enum mhgm_mode */
	uint32_t collapse_policy;	/* enum mhgm_collapse_policy */
	uint64_t hpage_size;
	uint64_t piece_size;
	uint64_t registered;		/* 1 if a userfaultfd is registered */

	/* state now */
	uint64_t hugepages;		/* in the region */
	uint64_t hugepages_split;	/* partly mapped, or mapped in pieces */
	uint64_t hugepages_complete;	/* every piece present */
	uint64_t hugepages_collapsed;	/* mapped by one hugepage mapping */
	uint64_t hugepages_queued;	/* for mhgm_collapse_pending() */
	uint64_t pieces;		/* in the region */
	uint64_t pieces_present;
	uint64_t pieces_mapped;

	/* events since creation */
	uint64_t faults;		/* mhgm_fault() calls */
	uint64_t faults_mapped;		/* of which resolved at once */
	uint64_t faults_untimed;	/* not timed: too many outstanding */
	uint64_t pieces_copied;		/* by mhgm_place() */
	uint64_t pieces_dropped;	/* present pieces dropped */
	uint64_t continues;		/* successful UFFDIO_CONTINUE ioctls */
	uint64_t collapses;		/* successful MADV_COLLAPSE */
	uint64_t collapse_failures;	/* failed MADV_COLLAPSE */

	struct mhgm_latency latency;	/* fault seen -> mapped */
	/* since 0.2 */
	uint64_t drop_unmaps;		/* hugepages unmapped by drops */
	uint64_t resv[7];
};

/*
 * mhgm_region_stats - read a region's statistics
 * @region: the region
 * @stats: filled on success
 *
 * Counters are read without stopping other threads, so under concurrent use
 * they are each exact but not necessarily taken at the same instant.
 *
 * Return: 0, or -EBADF after close, -EINVAL if an argument is NULL.
 */
int mhgm_region_stats(struct mhgm_region *region, struct mhgm_stats *stats);

/*
 * mhgm_region_record_latency - add a latency the caller measured itself
 * @region: the region
 * @ns: nanoseconds from fault seen to mapped
 *
 * For callers that time faults on their own instead of through mhgm_fault().
 *
 * Return: 0, or -EBADF after close, -EINVAL if @region is NULL.
 */
int mhgm_region_record_latency(struct mhgm_region *region, uint64_t ns);

/*
 * mhgm_region_reset_latency - empty the region's latency histogram
 * @region: the region
 *
 * For a new measurement interval; the other statistics are not reset.
 *
 * Return: 0, or -EBADF after close, -EINVAL if @region is NULL.
 */
int mhgm_region_reset_latency(struct mhgm_region *region);

#ifdef __cplusplus
}
#endif

#endif /* MIGRATION_HGM_H */

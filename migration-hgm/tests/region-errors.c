// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * region-errors: every documented error of region setup, registration and
 * the range checks, and -EBADF for every call after mhgm_region_close().
 * Bad input must change nothing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "helpers.h"

#define NR_HP	4
#define LEN	(NR_HP * SZ_2M)

static struct mhgm_region_params params(int fd, void *guest)
{
	return (struct mhgm_region_params){
		.fd = fd,
		.map_flags = MAP_SHARED,
		.length = LEN,
		.guest = guest,
	};
}

static void *map_fd(int fd, uint64_t len, int flags, uint64_t off)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags | MAP_NORESERVE,
		       fd, off);

	if (p == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	return p;
}

static void create_errors(int memfd, char *guest)
{
	struct mhgm_region_params p;
	struct mhgm_region *r = NULL;
	int fd, tmpfs, sv[2];
	char path[64], *other;

	p = params(memfd, guest);
	check_ret(mhgm_region_create(NULL, &r), -EINVAL);
	check_ret(mhgm_region_create(&p, NULL), -EINVAL);
	p.guest = NULL;
	check_ret(mhgm_region_create(&p, &r), -EINVAL);
	p = params(memfd, guest);
	p.flags = 1U << 7;
	check_ret(mhgm_region_create(&p, &r), -EINVAL);
	p = params(memfd, guest);
	p.resv1 = 1;
	check_ret(mhgm_region_create(&p, &r), -EINVAL);
	p = params(memfd, guest);
	p.resv2[3] = 1;
	check_ret(mhgm_region_create(&p, &r), -EINVAL);
	pass("NULL pointers, unknown flags, reserved fields: -EINVAL");

	p = params(-1, guest);
	check_ret(mhgm_region_create(&p, &r), -EBADF);
	fd = dup(memfd);
	close(fd);
	p = params(fd, guest);
	check_ret(mhgm_region_create(&p, &r), -EBADF);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	fd = open(path, O_RDONLY);
	check(fd >= 0, "reopen read-only");
	p = params(fd, guest);
	check_ret(mhgm_region_create(&p, &r), -EBADF);
	close(fd);
	pass("closed or read-only descriptor: -EBADF");

	/* tmpfs memfd, mapped shared: not hugetlbfs */
	tmpfs = memfd_create("mhgm-tmpfs", MFD_CLOEXEC);
	check(tmpfs >= 0 && !ftruncate(tmpfs, LEN), "tmpfs memfd");
	other = map_fd(tmpfs, LEN, MAP_SHARED, 0);
	p = params(tmpfs, other);
	check_ret(mhgm_region_create(&p, &r), -EOPNOTSUPP);
	munmap(other, LEN);
	close(tmpfs);
	check(!socketpair(AF_UNIX, SOCK_STREAM, 0, sv), "socketpair");
	p = params(sv[0], guest);
	check_ret(mhgm_region_create(&p, &r), -EOPNOTSUPP);
	close(sv[0]);
	close(sv[1]);
	pass("not hugetlbfs: -EOPNOTSUPP");

	p = params(memfd, guest);
	p.map_flags = MAP_PRIVATE;
	check_ret(mhgm_region_create(&p, &r), -EOPNOTSUPP);
	other = map_fd(memfd, LEN, MAP_PRIVATE, 0);
	p = params(memfd, other);	/* the caller says shared: it is not */
	check_ret(mhgm_region_create(&p, &r), -EOPNOTSUPP);
	munmap(other, LEN);
	pass("private mapping (by flags, and by /proc/self/maps): -EOPNOTSUPP");

	p = params(memfd, guest);
	p.offset = SZ_4K;
	check_ret(mhgm_region_create(&p, &r), -EINVAL);
	p = params(memfd, guest);
	p.length = SZ_2M + SZ_4K;
	check_ret(mhgm_region_create(&p, &r), -EINVAL);
	p.length = 0;
	check_ret(mhgm_region_create(&p, &r), -EINVAL);
	p = params(memfd, guest + SZ_4K);
	check_ret(mhgm_region_create(&p, &r), -EINVAL);
	p = params(memfd, guest);
	p.hpage_size = SZ_1G;
	check_ret(mhgm_region_create(&p, &r), -EINVAL);
	p = params(memfd, guest);
	p.length = LEN + SZ_2M;		/* beyond the end of the file */
	check_ret(mhgm_region_create(&p, &r), -EINVAL);
	p = params(memfd, guest);
	p.offset = UINT64_MAX - SZ_2M + 1;	/* aligned, but wraps */
	check_ret(mhgm_region_create(&p, &r), -EINVAL);
	p = params(memfd, guest);
	p.offset = SZ_2M;		/* guest maps offset 0 */
	p.length = LEN - SZ_2M;
	check_ret(mhgm_region_create(&p, &r), -EINVAL);
	pass("misaligned, oversized, wrong size or offset: -EINVAL");

	/* Another hugetlb file at the guest address. */
	fd = hugetlb_memfd(SZ_2M, LEN);
	other = map_fd(fd, LEN, MAP_SHARED, 0);
	p = params(memfd, other);
	check_ret(mhgm_region_create(&p, &r), -EINVAL);
	/* The last hugepage of the guest range not mapped at all. */
	munmap(other + LEN - SZ_2M, SZ_2M);
	p = params(fd, other);
	check_ret(mhgm_region_create(&p, &r), -EFAULT);
	munmap(other, LEN - SZ_2M);
	close(fd);
	pass("guest range of another file: -EINVAL; not mapped: -EFAULT");
	check(r == NULL, "no region was returned");
}

static void register_errors(int memfd, char *guest)
{
	struct mhgm_region_params p = params(memfd, guest);
	struct mhgm_region *r, *r2;
	int efd, raw, nofeat, good, good2;

	check_ret(mhgm_region_create(&p, &r), 0);
	check_ret(mhgm_region_create(&p, &r2), 0);

	efd = eventfd(0, EFD_CLOEXEC);
	check_ret(mhgm_region_register(r, -1), -EBADF);
	check_ret(mhgm_region_register(r, efd), -EBADF);
	check_ret(mhgm_region_register(r, memfd), -EBADF);
	pass("not a userfaultfd: -EBADF");

	raw = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (raw < 0)
		skip("cannot create a userfaultfd: %s", strerror(errno));
	check_ret(mhgm_region_register(r, raw), -EPROTO);
	nofeat = uffd_open(0);
	check(nofeat >= 0, "uffd without features");
	check_ret(mhgm_region_register(r, nofeat), -EPROTO);
	pass("no UFFDIO_API, or without MINOR_HUGETLBFS: -EPROTO");

	good = uffd_open(UFFD_FEATURE_MINOR_HUGETLBFS);
	if (good == -EINVAL)
		skip("kernel has no UFFD_FEATURE_MINOR_HUGETLBFS");
	good2 = uffd_open(UFFD_FEATURE_MINOR_HUGETLBFS);
	check(good >= 0 && good2 >= 0, "uffd with minor faults");
	check_ret(mhgm_region_register(r, good), 0);
	check_ret(mhgm_region_register(r, good), -EALREADY);
	check_ret(mhgm_region_split(r), -EBUSY);
	check_ret(mhgm_region_register(r2, good2), -EBUSY);
	pass("register: 0, again -EALREADY, other uffd on same range -EBUSY; "
	     "split after register -EBUSY");
	check_ret(mhgm_region_unregister(r), 0);
	check_ret(mhgm_region_unregister(r), -ENOENT);
	check_ret(mhgm_region_register(r2, good2), 0);
	check_ret(mhgm_region_unregister(r2), 0);
	pass("unregister: 0, again -ENOENT; the range is free again");

	mhgm_region_free(r);
	mhgm_region_free(r2);
	close(efd);
	close(raw);
	close(nofeat);
	close(good);
	close(good2);
}

static void range_errors(int memfd, char *guest)
{
	struct mhgm_region_params p = params(memfd, guest);
	char buf[SZ_4K] = { 0 };
	struct mhgm_stats st;
	struct mhgm_region *r;
	struct mhgm_range req;
	uint64_t off, n;

	check_ret(mhgm_region_create(&p, &r), 0);
	check_ret(mhgm_fault(r, 0, 0, &req), -ENOENT);	/* not registered */

	check_ret(mhgm_place(r, 1, buf, SZ_4K, 0), -EINVAL);
	check_ret(mhgm_place(r, 0, buf, 0, 0), -EINVAL);
	check_ret(mhgm_place(r, 0, buf, 100, 0), -EINVAL);
	check_ret(mhgm_place(r, 0, buf, SZ_4K, 1U << 9), -EINVAL);
	check_ret(mhgm_place(r, LEN, buf, SZ_4K, 0), -ERANGE);
	check_ret(mhgm_place(r, LEN - SZ_4K, buf, 2 * SZ_4K, 0), -ERANGE);
	check_ret(mhgm_place(r, SZ_4K, buf, SIZE_MAX & ~(SZ_4K - 1), 0),
		  -ERANGE);
	check_ret(mhgm_map(r, 3, SZ_4K, 0), -EINVAL);
	check_ret(mhgm_map(r, 0, LEN + SZ_4K, 0), -ERANGE);
	check_ret(mhgm_drop(r, 0, 12), -EINVAL);
	check_ret(mhgm_drop(r, LEN, SZ_4K), -ERANGE);
	check_ret(mhgm_collapse(r, SZ_4K, SZ_2M, &n), -EINVAL);
	check_ret(mhgm_collapse(r, 0, SZ_4K, &n), -EINVAL);
	check_ret(mhgm_collapse(r, 0, LEN + SZ_2M, &n), -ERANGE);
	check_ret(mhgm_region_set_collapse(r, 7, -1), -EINVAL);
	check_ret(mhgm_region_offset(r, guest + LEN, &off), -ERANGE);
	check_ret(mhgm_region_offset(r, guest - 1, &off), -ERANGE);
	check_ret(mhgm_region_offset(r, guest, NULL), -EINVAL);
	check_ret(mhgm_region_offset(r, guest + SZ_2M + 5, &off), 0);
	check_eq(off, SZ_2M + 5);
	check_ret(mhgm_region_stats(r, NULL), -EINVAL);
	check_ret(mhgm_region_stats(r, &st), 0);
	check_eq(st.pieces_present, 0);
	check_eq(st.pieces_copied, 0);
	check_eq(st.mode, MHGM_MODE_FALLBACK);
	pass("misaligned -EINVAL, outside -ERANGE; nothing changed");

	check_ret(mhgm_place(NULL, 0, buf, SZ_4K, 0), -EINVAL);
	check_ret(mhgm_map(NULL, 0, SZ_4K, 0), -EINVAL);
	check_ret(mhgm_fault(NULL, 0, 0, &req), -EINVAL);
	check_ret(mhgm_drop(NULL, 0, SZ_4K), -EINVAL);
	check_ret(mhgm_collapse(NULL, 0, SZ_2M, &n), -EINVAL);
	check_ret(mhgm_collapse_pending(NULL, 0, &n), -EINVAL);
	check_ret(mhgm_region_populate(NULL, NULL, NULL), -EINVAL);
	check_ret(mhgm_region_split(NULL), -EINVAL);
	check_ret(mhgm_region_mode(NULL), -EINVAL);
	check_ret(mhgm_region_register(NULL, 0), -EINVAL);
	check_ret(mhgm_region_close(NULL), -EINVAL);
	check(mhgm_region_alias(NULL) == NULL, "alias(NULL)");
	mhgm_region_free(NULL);
	pass("NULL region: -EINVAL");
	mhgm_region_free(r);
}

static void after_close(int memfd, char *guest)
{
	struct mhgm_region_params p = params(memfd, guest);
	struct uffdio_register reg = {
		.range = { (uintptr_t)guest, LEN },
		.mode = UFFDIO_REGISTER_MODE_MINOR,
	};
	char buf[SZ_4K] = { 0 };
	struct mhgm_stats st;
	struct mhgm_region *r;
	struct mhgm_range req;
	uint64_t off, n;
	int uffd, uffd2;

	uffd = uffd_open(UFFD_FEATURE_MINOR_HUGETLBFS);
	uffd2 = uffd_open(UFFD_FEATURE_MINOR_HUGETLBFS);
	check(uffd >= 0 && uffd2 >= 0, "uffd");
	check_ret(mhgm_region_create(&p, &r), 0);
	check(mhgm_region_alias(r) != NULL, "alias");
	check_ret(mhgm_region_register(r, uffd), 0);
	check_ret(mhgm_region_close(r), 0);

	check_ret(mhgm_region_close(r), -EBADF);
	check_ret(mhgm_region_populate(r, NULL, NULL), -EBADF);
	check_ret(mhgm_region_split(r), -EBADF);
	check_ret(mhgm_region_mode(r), -EBADF);
	check_ret(mhgm_region_register(r, uffd), -EBADF);
	check_ret(mhgm_region_unregister(r), -EBADF);
	check(mhgm_region_alias(r) == NULL, "alias after close");
	check_ret(mhgm_region_offset(r, guest, &off), -EBADF);
	check_ret(mhgm_place(r, 0, buf, SZ_4K, 0), -EBADF);
	check_ret(mhgm_map(r, 0, SZ_4K, 0), -EBADF);
	check_ret(mhgm_fault(r, 0, 0, &req), -EBADF);
	check_ret(mhgm_drop(r, 0, SZ_4K), -EBADF);
	check_ret(mhgm_drop_ranges(r, &(struct mhgm_range){ 0, SZ_4K }, 1),
		  -EBADF);
	check_ret(mhgm_region_set_collapse(r, MHGM_COLLAPSE_MANUAL, -1),
		  -EBADF);
	check_ret(mhgm_collapse(r, 0, SZ_2M, &n), -EBADF);
	check_ret(mhgm_collapse_pending(r, 0, &n), -EBADF);
	check_ret(mhgm_region_stats(r, &st), -EBADF);
	check_ret(mhgm_region_record_latency(r, 5), -EBADF);
	check_ret(mhgm_region_reset_latency(r), -EBADF);
	pass("every call after close: -EBADF");

	/* close unregistered the range: another uffd may take it */
	check(!ioctl(uffd2, UFFDIO_REGISTER, &reg),
	      "register after close: %s", strerror(errno));
	pass("close unregistered the guest range");
	mhgm_region_free(r);
	close(uffd);
	close(uffd2);
}

int main(void)
{
	struct mhgm_probe probe;
	struct mhgm_region_params p;
	struct mhgm_region *r;
	int memfd, ret;
	char *guest;

	watchdog(60);
	need_hugepages(SZ_2M, NR_HP);
	memfd = hugetlb_memfd(SZ_2M, LEN);
	guest = map_fd(memfd, LEN, MAP_SHARED, 0);

	create_errors(memfd, guest);
	register_errors(memfd, guest);
	range_errors(memfd, guest);
	after_close(memfd, guest);

	/* split: -EOPNOTSUPP exactly when the kernel has no MADV_SPLIT */
	check_ret(mhgm_probe(SZ_2M, &probe), 0);
	p = params(memfd, guest);
	check_ret(mhgm_region_create(&p, &r), 0);
	check_ret(mhgm_region_mode(r), MHGM_MODE_FALLBACK);
	ret = mhgm_region_split(r);
	if (mhgm_probe_has(&probe, MHGM_FEAT_SPLIT) == 1) {
		check_ret(ret, 0);
		check_ret(mhgm_region_mode(r), MHGM_MODE_HGM);
		check_ret(mhgm_region_split(r), 0);
	} else {
		check_ret(ret, -EOPNOTSUPP);
		check_ret(mhgm_region_mode(r), MHGM_MODE_FALLBACK);
	}
	pass("split: %s, mode %s", errname(ret),
	     mhgm_region_mode(r) == MHGM_MODE_HGM ? "hgm" : "fallback");
	mhgm_region_free(r);
	munmap(guest, LEN);
	close(memfd);
	return KSFT_PASS;
}

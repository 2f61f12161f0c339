// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * mhgm_probe(): try each HGM operation on a scratch hugetlb memfd of one
 * hugepage, mapped twice (as "guest" and "alias"), with a private
 * userfaultfd.  Nothing of the caller's is touched.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "lib.h"

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC		0x958458f6
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY	1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW	_IO(0xAA, 0x00)
#endif

#define PROBE_BYTE	0x5a

struct probe_ctx {
	struct mhgm_probe *p;
	uint64_t hpsize;
	long page;
	int memfd;
	char *guest;
	char *alias;
};

static void answer(struct mhgm_probe *p, uint32_t feat, bool yes)
{
	p->known |= feat;
	if (yes)
		p->supported |= feat;
}

/*
 * A new userfaultfd, O_CLOEXEC | O_NONBLOCK, or -1.  Unprivileged processes
 * may only get a user-mode-only one (vm.unprivileged_userfaultfd = 0), or
 * only through /dev/userfaultfd.
 */
static int uffd_new(void)
{
	int flags = O_CLOEXEC | O_NONBLOCK, fd, dev;

	fd = syscall(SYS_userfaultfd, flags);
	if (fd < 0 && errno == EPERM)
		fd = syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
	if (fd >= 0)
		return fd;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -1;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
	close(dev);
	return fd < 0 ? -1 : fd;
}

/* MHGM_FEAT_MINOR: UFFDIO_API with no features reports what exists. */
static int probe_minor(struct probe_ctx *c)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = uffd_new();

	if (fd < 0)
		return -1;
	if (!ioctl(fd, UFFDIO_API, &api))
		answer(c->p, MHGM_FEAT_MINOR,
		       api.features & UFFD_FEATURE_MINOR_HUGETLBFS);
	close(fd);
	return 0;
}

/* Set c->p for a madvise @advice on the guest mapping; EINVAL means no. */
static void probe_madvise(struct probe_ctx *c, int advice, uint32_t feat)
{
	if (!madvise(c->guest, c->hpsize, advice))
		answer(c->p, feat, true);
	else if (errno == EINVAL)
		answer(c->p, feat, false);
	else if (advice == MHGM_MADV_COLLAPSE &&
		 (errno == EAGAIN || errno == EBUSY || errno == ENOMEM))
		answer(c->p, feat, true);	/* it tried: hugetlb accepted */
}

/*
 * MHGM_FEAT_CONTINUE_4K: needs a hugepage in the page cache, a minor-mode
 * registration, and a UFFDIO_CONTINUE of the second base page.  Without HGM
 * the kernel insists on hugepage alignment and says EINVAL.  Only the page
 * that was mapped is ever read through the registered mapping, so nothing
 * here can block on the userfaultfd.
 */
static void probe_continue(struct probe_ctx *c)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_MINOR_HUGETLBFS,
	};
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)c->guest, .len = c->hpsize },
		.mode = UFFDIO_REGISTER_MODE_MINOR,
	};
	struct uffdio_continue cont = {
		.range = { .start = (uintptr_t)c->guest + c->page,
			   .len = c->page },
	};
	int fd;

	if (mhgm_probe_has(c->p, MHGM_FEAT_MINOR) == 0) {
		/* no minor faults, so no UFFDIO_CONTINUE of any size */
		answer(c->p, MHGM_FEAT_CONTINUE_4K, false);
		return;
	}
	if (fallocate(c->memfd, 0, 0, c->hpsize))
		return;		/* no free hugepage: unknown */
	c->alias = mmap(NULL, c->hpsize, PROT_READ | PROT_WRITE, MAP_SHARED,
			c->memfd, 0);
	if (c->alias == MAP_FAILED) {
		c->alias = NULL;
		return;
	}
	memset(c->alias + c->page, PROBE_BYTE, c->page);

	fd = uffd_new();
	if (fd < 0)
		return;
	if (ioctl(fd, UFFDIO_API, &api) || ioctl(fd, UFFDIO_REGISTER, &reg) ||
	    !(reg.ioctls & (1ULL << _UFFDIO_CONTINUE)))
		goto out;
	if (!ioctl(fd, UFFDIO_CONTINUE, &cont))
		answer(c->p, MHGM_FEAT_CONTINUE_4K,
		       ((volatile char *)c->guest)[c->page] == PROBE_BYTE);
	else if (errno == EINVAL)
		answer(c->p, MHGM_FEAT_CONTINUE_4K, false);
out:
	close(fd);	/* unregisters the range */
}

static int memfd_hugetlb(uint64_t hpsize)
{
	unsigned int flags = MFD_CLOEXEC | MFD_HUGETLB, log2;

	if (hpsize) {
		log2 = __builtin_ctzll(hpsize);
		flags |= log2 << MFD_HUGE_SHIFT;
	}
	return memfd_create("mhgm-probe", flags);
}

int mhgm_probe(uint64_t hpage_size, struct mhgm_probe *probe)
{
	struct probe_ctx c = { .p = probe, .page = sysconf(_SC_PAGESIZE) };
	struct statfs sfs;
	int ret = 0;

	if (!probe || (hpage_size & (hpage_size - 1)))
		return -EINVAL;
	*probe = (struct mhgm_probe){ .mode = MHGM_MODE_FALLBACK };

	c.memfd = memfd_hugetlb(hpage_size);
	if (c.memfd < 0)
		return errno == ENODEV ? -ENOENT : -errno;
	if (fstatfs(c.memfd, &sfs) || sfs.f_type != HUGETLBFS_MAGIC ||
	    (hpage_size && (uint64_t)sfs.f_bsize != hpage_size)) {
		ret = -ENOENT;
		goto out;
	}
	c.hpsize = sfs.f_bsize;
	probe->hpage_size = c.hpsize;
	if (ftruncate(c.memfd, c.hpsize)) {
		ret = -errno;
		goto out;
	}

	probe_minor(&c);

	/* NORESERVE: a missing free hugepage must not fail the mapping. */
	c.guest = mmap(NULL, c.hpsize, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_NORESERVE, c.memfd, 0);
	if (c.guest == MAP_FAILED) {
		c.guest = NULL;
		ret = -errno;
		goto out;
	}
	probe_madvise(&c, MHGM_MADV_SPLIT, MHGM_FEAT_SPLIT);
	probe_continue(&c);
	probe_madvise(&c, MHGM_MADV_COLLAPSE, MHGM_FEAT_COLLAPSE);

	if (mhgm_probe_has(probe, MHGM_FEAT_SPLIT) == 1 &&
	    mhgm_probe_has(probe, MHGM_FEAT_MINOR) == 1 &&
	    mhgm_probe_has(probe, MHGM_FEAT_CONTINUE_4K) != 0)
		probe->mode = MHGM_MODE_HGM;
out:
	if (c.guest)
		munmap(c.guest, c.hpsize);
	if (c.alias)
		munmap(c.alias, c.hpsize);
	close(c.memfd);
	return ret;
}

// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * probe: mhgm_probe() answers what the kernel really does, leaves no trace
 * (hugepages, file descriptors, mappings), and says "unknown" instead of
 * guessing when no free hugepage is left.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "helpers.h"

static const char *tri(int v)
{
	return v == 1 ? "yes" : v == 0 ? "no" : "unknown";
}

static void print_probe(const struct mhgm_probe *p)
{
	printf("probe %llu kB: split %s, continue-4k %s, collapse %s, "
	       "minor %s -> mode %s\n",
	       (unsigned long long)p->hpage_size >> 10,
	       tri(mhgm_probe_has(p, MHGM_FEAT_SPLIT)),
	       tri(mhgm_probe_has(p, MHGM_FEAT_CONTINUE_4K)),
	       tri(mhgm_probe_has(p, MHGM_FEAT_COLLAPSE)),
	       tri(mhgm_probe_has(p, MHGM_FEAT_MINOR)),
	       p->mode == MHGM_MODE_HGM ? "hgm" : "fallback");
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;

	if (!d)
		fail("opendir %s", dir);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static int count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	int n = 0, c;

	if (!f)
		fail("open %s", path);
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* What the kernel says, found independently of the library. */
struct truth {
	int split, collapse, minor, cont4k;
};

static int madv_answer(char *addr, uint64_t len, int advice)
{
	if (!madvise(addr, len, advice))
		return 1;
	return errno == EINVAL ? 0 : -1;
}

static struct truth find_truth(uint64_t hpsize)
{
	struct truth t = { -1, -1, -1, -1 };
	struct uffdio_api api = { .api = UFFD_API };
	int fd = hugetlb_memfd(hpsize, hpsize), uffd;
	char *guest, *alias;

	uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd >= 0 && !ioctl(uffd, UFFDIO_API, &api))
		t.minor = !!(api.features & UFFD_FEATURE_MINOR_HUGETLBFS);
	if (uffd >= 0)
		close(uffd);

	guest = mmap(NULL, hpsize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	alias = mmap(NULL, hpsize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (guest == MAP_FAILED || alias == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	t.split = madv_answer(guest, hpsize, MHGM_MADV_SPLIT);
	alias[SZ_4K] = 7;	/* allocates the page */

	uffd = uffd_open(UFFD_FEATURE_MINOR_HUGETLBFS);
	if (uffd >= 0) {
		struct uffdio_register reg = {
			.range = { (uintptr_t)guest, hpsize },
			.mode = UFFDIO_REGISTER_MODE_MINOR,
		};
		struct uffdio_continue cont = {
			.range = { (uintptr_t)guest + SZ_4K, SZ_4K },
		};

		if (!ioctl(uffd, UFFDIO_REGISTER, &reg)) {
			if (!ioctl(uffd, UFFDIO_CONTINUE, &cont))
				t.cont4k = guest[SZ_4K] == 7;
			else if (errno == EINVAL)
				t.cont4k = 0;
		}
		close(uffd);
	} else if (t.minor == 0) {
		t.cont4k = 0;
	}
	t.collapse = madv_answer(guest, hpsize, MHGM_MADV_COLLAPSE);
	munmap(guest, hpsize);
	munmap(alias, hpsize);
	close(fd);
	return t;
}

static void check_consistent(const struct mhgm_probe *p)
{
	check(!(p->supported & ~p->known), "supported %#x known %#x",
	      p->supported, p->known);
	check(p->mode == MHGM_MODE_FALLBACK || p->mode == MHGM_MODE_HGM,
	      "mode %u", p->mode);
	if (p->mode == MHGM_MODE_HGM)
		check(mhgm_probe_has(p, MHGM_FEAT_SPLIT) == 1 &&
		      mhgm_probe_has(p, MHGM_FEAT_MINOR) == 1 &&
		      mhgm_probe_has(p, MHGM_FEAT_CONTINUE_4K) != 0,
		      "HGM mode without the features");
	else
		check(mhgm_probe_has(p, MHGM_FEAT_SPLIT) != 1 ||
		      mhgm_probe_has(p, MHGM_FEAT_MINOR) != 1 ||
		      mhgm_probe_has(p, MHGM_FEAT_CONTINUE_4K) == 0,
		      "fallback mode although the features are there");
}

#define check_feature(p, feat, truth)					\
	do {								\
		if ((truth) >= 0)					\
			check(mhgm_probe_has(p, feat) == (truth),	\
			      "%s: probe %s, kernel %s", #feat,		\
			      tri(mhgm_probe_has(p, feat)), tri(truth)); \
	} while (0)

int main(void)
{
	struct mhgm_probe p, p1g;
	struct truth t;
	long free_before;
	int fds, maps, ret, hog;

	watchdog(60);
	check_ret(mhgm_probe(0, NULL), -EINVAL);
	check_ret(mhgm_probe(3 * SZ_2M, &p), -EINVAL);
	check_ret(mhgm_probe(1ULL << 40, &p), -ENOENT);	/* no 1 TiB pages */
	pass("argument errors");

	need_hugepages(SZ_2M, 2);
	free_before = free_hugepages(SZ_2M);
	fds = count_entries("/proc/self/fd");
	maps = count_lines("/proc/self/maps");
	check_ret(mhgm_probe(SZ_2M, &p), 0);
	print_probe(&p);
	check_eq(p.hpage_size, SZ_2M);
	check_eq(free_hugepages(SZ_2M), free_before);
	check_eq(count_entries("/proc/self/fd"), fds);
	check_eq(count_lines("/proc/self/maps"), maps);
	pass("no hugepage, descriptor or mapping left behind");

	check_consistent(&p);
	check(p.known & MHGM_FEAT_SPLIT, "MADV_SPLIT needs no page: known");
	check(p.known & MHGM_FEAT_CONTINUE_4K,
	      "a hugepage was free: continue-4k must be known");
	t = find_truth(SZ_2M);
	check_feature(&p, MHGM_FEAT_SPLIT, t.split);
	check_feature(&p, MHGM_FEAT_MINOR, t.minor);
	check_feature(&p, MHGM_FEAT_CONTINUE_4K, t.cont4k);
	check_feature(&p, MHGM_FEAT_COLLAPSE, t.collapse);
	pass("answers match the kernel's own (split %s, minor %s, "
	     "continue-4k %s, collapse %s)", tri(t.split), tri(t.minor),
	     tri(t.cont4k), tri(t.collapse));

	check_ret(mhgm_probe(0, &p1g), 0);
	check(p1g.hpage_size >= SZ_2M, "default size %llu",
	      (unsigned long long)p1g.hpage_size);
	ret = mhgm_probe(SZ_1G, &p1g);
	if (ret == 0) {
		print_probe(&p1g);
		check_eq(p1g.hpage_size, SZ_1G);
		check_consistent(&p1g);
	} else {
		check_ret(ret, -ENOENT);
	}

	/* Take every free 2 MiB page: the probe must say "unknown". */
	free_before = free_hugepages(SZ_2M);
	hog = hugetlb_memfd(SZ_2M, free_before * SZ_2M);
	if (fallocate(hog, 0, 0, free_before * SZ_2M))
		fail("fallocate %ld hugepages: %s", free_before,
		     strerror(errno));
	if (free_hugepages(SZ_2M) != 0) {
		close(hog);
		fail("pool still has free pages (overcommit?)");
	}
	check_ret(mhgm_probe(SZ_2M, &p), 0);
	close(hog);
	print_probe(&p);
	check(!(p.known & MHGM_FEAT_CONTINUE_4K) || t.minor == 0,
	      "continue-4k known without a free hugepage");
	check(p.known & MHGM_FEAT_SPLIT, "split known without a page");
	check_consistent(&p);
	pass("no free hugepage: continue-4k unknown, the rest still answered");
	return KSFT_PASS;
}

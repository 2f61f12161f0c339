// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "helpers.h"

const char *errname(long long ret)
{
	static __thread char buf[32];

	if (ret >= 0)
		return "ok";
	switch (-ret) {
#define E(x) case x: return #x
	E(EPERM); E(ENOENT); E(ESRCH); E(EBADF); E(ENOMEM); E(EFAULT);
	E(EBUSY); E(EEXIST); E(EINVAL); E(ENOSPC); E(ERANGE); E(ENOTTY);
	E(EAGAIN); E(ENODATA); E(EPROTO); E(EOPNOTSUPP); E(EALREADY);
	E(ECANCELED); E(ENOSYS);
#undef E
	}
	snprintf(buf, sizeof(buf), "errno %lld", -ret);
	return buf;
}

/* ------------------------------------------------- hugepage pool */

static struct {
	char path[128];
	long old;
} restore[2];
static unsigned int nr_restore;

static void restore_pool(void)
{
	for (unsigned int i = 0; i < nr_restore; i++) {
		char buf[32];
		int fd = open(restore[i].path, O_WRONLY);
		int n;

		if (fd < 0)
			continue;
		n = snprintf(buf, sizeof(buf), "%ld\n", restore[i].old);
		if (write(fd, buf, n) < 0) {
			/* nothing more we can do */
		}
		close(fd);
	}
	nr_restore = 0;
}

/* A crash must not leave the pool raised either. */
static void on_fatal(int sig)
{
	restore_pool();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void on_alarm(int sig)
{
	static const char msg[] =
		"FAIL: timed out (a fault was not resolved?)\n";

	(void)sig;
	restore_pool();
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* exiting anyway */
	}
	_exit(KSFT_FAIL);
}

void watchdog(unsigned int seconds)
{
	signal(SIGALRM, on_alarm);
	alarm(seconds);
}

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

long free_hugepages(uint64_t hpsize)
{
	char path[128];

	snprintf(path, sizeof(path),
		 "/sys/kernel/mm/hugepages/hugepages-%llukB/free_hugepages",
		 (unsigned long long)hpsize >> 10);
	return read_long(path);
}

void need_hugepages(uint64_t hpsize, unsigned long count)
{
	char path[128], buf[32];
	long free_now = free_hugepages(hpsize), nr, want;
	int fd, n;

	if (free_now < 0)
		skip("no %llu kB hugepages on this kernel",
		     (unsigned long long)hpsize >> 10);
	if ((unsigned long)free_now >= count)
		return;
	snprintf(path, sizeof(path),
		 "/sys/kernel/mm/hugepages/hugepages-%llukB/nr_hugepages",
		 (unsigned long long)hpsize >> 10);
	nr = read_long(path);
	fd = open(path, O_WRONLY);
	if (nr < 0 || fd < 0)
		skip("need %lu free %llu kB hugepages, have %ld, and cannot "
		     "reserve more (not root?)", count,
		     (unsigned long long)hpsize >> 10, free_now);
	if (nr_restore < 2) {
		snprintf(restore[nr_restore].path, sizeof(restore[0].path),
			 "%s", path);
		restore[nr_restore++].old = nr;
		atexit(restore_pool);
		signal(SIGSEGV, on_fatal);
		signal(SIGBUS, on_fatal);
		signal(SIGABRT, on_fatal);
		signal(SIGTERM, on_fatal);
		signal(SIGINT, on_fatal);
	}
	want = nr + (long)count - free_now;
	n = snprintf(buf, sizeof(buf), "%ld\n", want);
	if (write(fd, buf, n) < 0) {
		/* checked below */
	}
	close(fd);
	free_now = free_hugepages(hpsize);
	if (free_now < (long)count)
		skip("need %lu free %llu kB hugepages, could reserve only %ld",
		     count, (unsigned long long)hpsize >> 10, free_now);
	printf("nr_hugepages (%llu kB): %ld -> %ld, restored at exit\n",
	       (unsigned long long)hpsize >> 10, nr, want);
}

/* ------------------------------------------------------ plumbing */

int hugetlb_memfd(uint64_t hpsize, uint64_t size)
{
	unsigned int flags = MFD_CLOEXEC | MFD_HUGETLB |
		((unsigned int)__builtin_ctzll(hpsize) << MFD_HUGE_SHIFT);
	int fd = memfd_create("mhgm-test", flags);

	if (fd < 0)
		fail("memfd_create(MFD_HUGETLB): %s", strerror(errno));
	if (ftruncate(fd, size))
		fail("ftruncate: %s", strerror(errno));
	return fd;
}

int uffd_open(uint64_t features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api)) {
		int err = errno;

		close(fd);
		return -err;
	}
	return fd;
}

int page_mapped(const void *addr)
{
	unsigned char vec = 0;
	uintptr_t a = (uintptr_t)addr & ~(uintptr_t)(SZ_4K - 1);

	if (mincore((void *)a, SZ_4K, &vec))
		fail("mincore: %s", strerror(errno));
	return vec & 1;
}

static uint64_t pattern_word(uint64_t off, uint64_t seed)
{
	uint64_t x = (off + seed) * 0x9e3779b97f4a7c15ULL;

	return x ^ (x >> 29);
}

void pattern_fill(void *buf, uint64_t off, size_t len, uint64_t seed)
{
	uint64_t *w = buf;

	for (size_t i = 0; i < len / 8; i++)
		w[i] = pattern_word(off + i * 8, seed);
}

long long pattern_check(const void *buf, uint64_t off, size_t len,
			uint64_t seed)
{
	const volatile uint64_t *w = buf;

	for (size_t i = 0; i < len / 8; i++)
		if (w[i] != pattern_word(off + i * 8, seed))
			return off + i * 8;
	return -1;
}

void env_setup(struct test_env *e, uint64_t hpsize, uint64_t nr,
	       uint32_t region_flags, bool register_uffd)
{
	struct mhgm_region_params p;
	int ret;

	*e = (struct test_env){ .hpsize = hpsize, .len = hpsize * nr,
				.uffd = -1, .seed = 0x1234 };
	e->memfd = hugetlb_memfd(hpsize, e->len);
	e->guest = mmap(NULL, e->len, PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_NORESERVE, e->memfd, 0);
	if (e->guest == MAP_FAILED)
		fail("mmap guest: %s", strerror(errno));
	p = (struct mhgm_region_params){
		.fd = e->memfd,
		.map_flags = MAP_SHARED | MAP_NORESERVE,
		.length = e->len,
		.hpage_size = hpsize,
		.guest = e->guest,
		.flags = region_flags,
	};
	ret = mhgm_region_create(&p, &e->r);
	if (ret)
		fail("mhgm_region_create: %s", errname(ret));
	if (register_uffd)
		env_register(e);
}

void env_register(struct test_env *e)
{
	int ret;

	e->uffd = uffd_open(UFFD_FEATURE_MINOR_HUGETLBFS);
	if (e->uffd == -EINVAL)
		skip("kernel has no UFFD_FEATURE_MINOR_HUGETLBFS");
	if (e->uffd < 0)
		skip("cannot create a userfaultfd: %s", errname(e->uffd));
	ret = mhgm_region_register(e->r, e->uffd);
	if (ret)
		fail("mhgm_region_register: %s", errname(ret));
}

void env_teardown(struct test_env *e)
{
	check_ret(mhgm_region_close(e->r), 0);
	mhgm_region_free(e->r);
	if (e->uffd >= 0)
		close(e->uffd);
	munmap(e->guest, e->len);
	close(e->memfd);
}

/* Fisher-Yates over piece indices. */
static void shuffle(uint64_t *v, uint64_t n, unsigned int *state)
{
	for (uint64_t i = n; i > 1; i--) {
		uint64_t j = rand_r(state) % i, t = v[i - 1];

		v[i - 1] = v[j];
		v[j] = t;
	}
}

int place_pattern_pieces(struct test_env *e, uint64_t off, uint64_t len,
			 unsigned int *rand_state)
{
	uint64_t n = len / SZ_4K, *order = malloc(n * sizeof(*order));
	uint64_t buf[SZ_4K / 8];
	int ret = 0;

	if (!order)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++)
		order[i] = i;
	shuffle(order, n, rand_state);
	for (uint64_t i = 0; i < n && !ret; i++) {
		uint64_t o = off + order[i] * SZ_4K;

		pattern_fill(buf, o, SZ_4K, e->seed);
		ret = mhgm_place(e->r, o, buf, SZ_4K, 0);
	}
	free(order);
	return ret;
}

static void *fault_server_main(void *arg)
{
	struct fault_server *s = arg;
	struct test_env *e = s->e;
	unsigned int rs = 42;
	struct pollfd pfd = { .fd = e->uffd, .events = POLLIN };

	while (!atomic_load(&s->stop)) {
		struct uffd_msg msg;
		struct mhgm_range req;
		uint64_t now, off;
		int ret;

		if (poll(&pfd, 1, 20) <= 0)
			continue;
		if (read(e->uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;	/* EAGAIN: woken by someone else */
		now = mhgm_clock_ns();
		if (msg.event != UFFD_EVENT_PAGEFAULT ||
		    !(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR)) {
			atomic_store(&s->error, -EPROTO);
			break;
		}
		ret = mhgm_region_offset(e->r, (void *)(uintptr_t)
					 msg.arg.pagefault.address, &off);
		if (!ret)
			ret = mhgm_fault(e->r, off, now, &req);
		atomic_fetch_add(&s->faults, 1);
		if (ret == MHGM_FAULT_MISSING) {
			unsigned long m = atomic_load(&s->max_request);

			while (req.length > m &&
			       !atomic_compare_exchange_weak(&s->max_request,
							     &m, req.length))
				;
			atomic_fetch_add(&s->missing, 1);
			if (s->piecewise) {
				ret = place_pattern_pieces(e, req.offset,
							   req.length, &rs);
			} else {
				char *buf = malloc(req.length);

				pattern_fill(buf, req.offset, req.length,
					     e->seed);
				ret = mhgm_place(e->r, req.offset, buf,
						 req.length, 0);
				free(buf);
			}
		}
		if (ret < 0) {
			atomic_store(&s->error, ret);
			break;
		}
	}
	return NULL;
}

void fault_server_start(struct fault_server *s, struct test_env *e,
			bool piecewise)
{
	memset(s, 0, sizeof(*s));
	s->e = e;
	s->piecewise = piecewise;
	if (pthread_create(&s->thread, NULL, fault_server_main, s))
		fail("pthread_create");
}

void fault_server_stop(struct fault_server *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	if (atomic_load(&s->error))
		fail("fault server: %s", errname(atomic_load(&s->error)));
}

static const char *tri(int v)
{
	return v == 1 ? "yes" : v == 0 ? "no" : "unknown";
}

void need_hgm(uint64_t hpsize, struct mhgm_probe *probe)
{
	int ret = mhgm_probe(hpsize, probe);

	if (ret)
		skip("mhgm_probe(%llu kB): %s",
		     (unsigned long long)hpsize >> 10, errname(ret));
	if (probe->mode != MHGM_MODE_HGM)
		skip("kernel lacks HGM for %llu kB pages (MADV_SPLIT %s, "
		     "4 KiB UFFDIO_CONTINUE %s, minor faults %s)",
		     (unsigned long long)hpsize >> 10,
		     tri(mhgm_probe_has(probe, MHGM_FEAT_SPLIT)),
		     tri(mhgm_probe_has(probe, MHGM_FEAT_CONTINUE_4K)),
		     tri(mhgm_probe_has(probe, MHGM_FEAT_MINOR)));
}

long smaps_field(const void *addr, const char *field)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	uintptr_t a = (uintptr_t)addr;
	size_t flen = strlen(field);
	bool inside = false;
	char line[512];
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			if (inside)
				break;
			inside = a >= lo && a < hi;
			continue;
		}
		if (inside && !strncmp(line, field, flen) &&
		    line[flen] == ':') {
			sscanf(line + flen + 1, "%ld", &v);
			break;
		}
	}
	fclose(f);
	return v;
}

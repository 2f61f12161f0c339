// SPDX-License-Identifier: GPL-2.0-only
/*
 * minor-fault-latency: userfaultfd minor-fault latency on hugetlb, today's
 * (upstream) behaviour beside high-granularity mapping (HGM).
 *
 * A hugetlb memfd is mapped shared twice: the "guest" mapping, registered
 * with userfaultfd in minor mode, and the "alias", through which data is
 * written without faulting the guest.  Worker threads touch random 4 KiB
 * pieces of the guest mapping; one handler thread (as in QEMU's postcopy)
 * resolves each fault with UFFDIO_CONTINUE of the whole hugepage, because
 * without HGM a hugetlb page is mapped whole or not at all.  Two cases:
 *
 *   present  the hugepage's data is already in the page cache: the fault
 *            costs only the round trip through the handler;
 *   copy     the data arrives on demand: the handler writes the whole
 *            hugepage through the alias before mapping it, as a postcopy
 *            destination must receive the whole hugepage first.
 *   hgm      the same with HGM: the guest mapping is split (MADV_SPLIT),
 *            and the handler writes and maps (UFFDIO_CONTINUE) only the
 *            4 KiB piece that faulted.  After each round the rest is
 *            written and the hugepages are collapsed (MADV_COLLAPSE), so
 *            the same whole-mapping check runs.  Skipped on kernels
 *            without HGM.
 *
 * Every worker checks the 4 KiB it touched, and after each round the whole
 * guest mapping is compared with what was written.  Latency (fault seen by
 * the worker -> access completed) is printed as a distribution.
 *
 * Exit status: 0 all ran and verified, 1 a check failed, 4 (kselftest's
 * "skip") nothing could run, for example no free hugepages of any size.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/memfd.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define KSFT_SKIP 4
#define PIECE 4096UL

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MADV_SPLIT
#define MADV_SPLIT 26
#endif

enum fill_mode { FILL_PRESENT, FILL_COPY, FILL_HGM };

struct sample_set {
	uint64_t *ns;
	size_t n, cap;
	pthread_mutex_t lock;
};

struct run {
	size_t hpsize;		/* hugepage size */
	size_t npages;		/* hugepages in the region */
	unsigned int threads;
	unsigned int rounds;
	enum fill_mode mode;

	int memfd, uffd;
	char *guest, *alias;
	unsigned int round;	/* pattern generation of the current round */
	bool *placed;		/* per unit (hugepage, or piece for HGM): resolved */
	uint64_t template[PIECE / 8];

	pthread_barrier_t start;
	volatile bool stop_handler;
	int failed;
	struct sample_set lat;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/*
 * Contents of the 4 KiB piece at file offset @off in round @round: a
 * per-round template whose first word names the piece, so a piece copied to
 * the wrong place or left from an earlier round is caught.
 */
static void make_template(struct run *r)
{
	for (size_t i = 0; i < PIECE / 8; i++)
		r->template[i] = mix64(((uint64_t)r->round << 32) ^ i);
}

static uint64_t piece_tag(const struct run *r, size_t off)
{
	return mix64(off ^ ((uint64_t)r->round << 48)) | 1;
}

static void fill_piece(const struct run *r, char *dst, size_t off)
{
	memcpy(dst, r->template, PIECE);
	*(uint64_t *)dst = piece_tag(r, off);
}

static bool piece_ok(const struct run *r, const char *p, size_t off)
{
	return *(const uint64_t *)p == piece_tag(r, off) &&
	       !memcmp(p + 8, (const char *)r->template + 8, PIECE - 8);
}

static void fill_hugepage(const struct run *r, size_t page)
{
	size_t base = page * r->hpsize;

	for (size_t off = 0; off < r->hpsize; off += PIECE)
		fill_piece(r, r->alias + base + off, base + off);
}

static void add_sample(struct sample_set *s, uint64_t ns)
{
	pthread_mutex_lock(&s->lock);
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 1024;
		uint64_t *p = realloc(s->ns, cap * sizeof(*p));

		if (!p) {
			pthread_mutex_unlock(&s->lock);
			return;
		}
		s->ns = p;
		s->cap = cap;
	}
	s->ns[s->n++] = ns;
	pthread_mutex_unlock(&s->lock);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted set. */
static uint64_t percentile(const struct sample_set *s, unsigned int pct)
{
	size_t rank = (s->n * pct + 99) / 100;

	return s->ns[rank ? rank - 1 : 0];
}

static void fmt_ns(char *buf, size_t len, uint64_t ns)
{
	if (ns >= 10000000000ull)
		snprintf(buf, len, "%.1f s", ns / 1e9);
	else if (ns >= 10000000ull)
		snprintf(buf, len, "%.1f ms", ns / 1e6);
	else
		snprintf(buf, len, "%.1f us", ns / 1e3);
}

static const char *size_name(size_t hpsize)
{
	return hpsize == (1ul << 30) ? "1G" : "2M";
}

static const char *mode_name(enum fill_mode m)
{
	switch (m) {
	case FILL_PRESENT:
		return "present: CONTINUE whole page";
	case FILL_COPY:
		return "copy: write whole page + CONTINUE";
	default:
		return "hgm: write 4 KiB + CONTINUE 4 KiB";
	}
}

/* The unit a fault is resolved in: a hugepage, or a 4 KiB piece with HGM. */
static size_t unit_size(const struct run *r)
{
	return r->mode == FILL_HGM ? PIECE : r->hpsize;
}

static size_t nr_units(const struct run *r)
{
	return r->npages * r->hpsize / unit_size(r);
}

static void print_header(void)
{
	printf("%-5s %-36s %7s %10s %10s %10s %10s\n", "page", "case",
	       "samples", "p50", "p90", "p99", "max");
}

static void print_stats(struct run *r)
{
	struct sample_set *s = &r->lat;
	char p50[32], p90[32], p99[32], max[32];

	if (!s->n) {
		printf("%-5s %-36s %7s\n", size_name(r->hpsize), mode_name(r->mode), "0");
		return;
	}
	qsort(s->ns, s->n, sizeof(*s->ns), cmp_u64);
	fmt_ns(p50, sizeof(p50), percentile(s, 50));
	fmt_ns(p90, sizeof(p90), percentile(s, 90));
	fmt_ns(p99, sizeof(p99), percentile(s, 99));
	fmt_ns(max, sizeof(max), s->ns[s->n - 1]);
	printf("%-5s %-36s %7zu %10s %10s %10s %10s\n", size_name(r->hpsize),
	       mode_name(r->mode), s->n, p50, p90, p99, max);
	fflush(stdout);
}

/*
 * Resolve one reported fault: whole-hugepage placement, as upstream, or
 * with HGM just the 4 KiB piece.
 */
static int resolve(struct run *r, uint64_t addr)
{
	size_t unit = unit_size(r), i = (addr - (uintptr_t)r->guest) / unit;
	struct uffdio_continue cont = {
		.range = {
			.start = (uintptr_t)r->guest + i * unit,
			.len = unit,
		},
	};
	struct uffdio_range wake = cont.range;

	if (i >= nr_units(r)) {
		fprintf(stderr, "fault at %#" PRIx64 " outside the region\n", addr);
		return -1;
	}
	if (!r->placed[i]) {
		if (r->mode == FILL_COPY)
			fill_hugepage(r, i);
		else if (r->mode == FILL_HGM)
			fill_piece(r, r->alias + i * PIECE, i * PIECE);
		r->placed[i] = true;
		if (!ioctl(r->uffd, UFFDIO_CONTINUE, &cont))
			return 0;
		if (errno != EEXIST) {
			fprintf(stderr, "UFFDIO_CONTINUE: %s\n", strerror(errno));
			return -1;
		}
	}
	/* Mapped already (a second fault on the same page raced): just wake. */
	if (ioctl(r->uffd, UFFDIO_WAKE, &wake)) {
		fprintf(stderr, "UFFDIO_WAKE: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

static void *handler_thread(void *arg)
{
	struct run *r = arg;
	struct pollfd pfd = { .fd = r->uffd, .events = POLLIN };

	while (!r->stop_handler) {
		struct uffd_msg msg;
		int n = poll(&pfd, 1, 100);

		if (n <= 0)
			continue;
		if (read(r->uffd, &msg, sizeof(msg)) != sizeof(msg)) {
			if (errno == EAGAIN)
				continue;
			perror("read(userfaultfd)");
			r->failed = 1;
			break;
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT ||
		    !(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR)) {
			fprintf(stderr, "unexpected userfaultfd event %u flags %#llx\n",
				msg.event, (unsigned long long)msg.arg.pagefault.flags);
			r->failed = 1;
			continue;
		}
		if (resolve(r, msg.arg.pagefault.address))
			r->failed = 1;
	}
	return NULL;
}

struct worker {
	struct run *r;
	unsigned int id;
};

static void *worker_thread(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->r;
	uint64_t seed = mix64(w->id * 7919 + r->round + 1);

	pthread_barrier_wait(&r->start);
	/*
	 * With fewer hugepages than threads, several threads fault on the
	 * same hugepage at once; otherwise each thread owns every Nth page.
	 */
	for (size_t page = w->id % r->npages; page < r->npages; page += r->threads) {
		size_t piece, off;
		uint64_t t0;
		volatile char *p;

		seed = mix64(seed);
		piece = seed % (r->hpsize / PIECE);
		off = page * r->hpsize + piece * PIECE;
		p = (volatile char *)r->guest + off;
		t0 = now_ns();
		(void)*p;
		add_sample(&r->lat, now_ns() - t0);
		if (!piece_ok(r, (const char *)p, off)) {
			fprintf(stderr, "thread %u: wrong data at offset %#zx\n", w->id, off);
			r->failed = 1;
		}
		if (r->threads > r->npages)
			break;
	}
	return NULL;
}

static int verify_all(struct run *r)
{
	size_t bad = 0, first = 0;

	for (size_t off = 0; off < r->npages * r->hpsize; off += PIECE) {
		if (!piece_ok(r, r->guest + off, off)) {
			if (!bad++)
				first = off;
		}
	}
	if (bad) {
		fprintf(stderr, "%s round %u: %zu pieces of 4 KiB differ, first at %#zx\n",
			size_name(r->hpsize), r->round, bad, first);
		return -1;
	}
	return 0;
}

/*
 * End of an HGM round: write the pieces no worker faulted on and collapse
 * the hugepages, which maps them whole again (faulting 262144 pieces of a
 * 1 GiB page one by one would take long in the lab).
 */
static int finish_hgm_round(struct run *r)
{
	for (size_t i = 0; i < nr_units(r); i++) {
		if (!r->placed[i])
			fill_piece(r, r->alias + i * PIECE, i * PIECE);
	}
	if (madvise(r->guest, r->npages * r->hpsize, MADV_COLLAPSE)) {
		perror("madvise(MADV_COLLAPSE)");
		return -1;
	}
	return 0;
}

static int uffd_open(void)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_MINOR_HUGETLBFS,
	};
	int fd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (fd >= 0) {
			int ufd = ioctl(fd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);

			close(fd);
			fd = ufd;
		}
	}
	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static long free_hugepages(size_t hpsize)
{
	char path[128];
	long n = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%zukB/free_hugepages",
		 hpsize >> 10);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &n) != 1)
		n = -1;
	fclose(f);
	return n;
}

static void teardown(struct run *r)
{
	if (r->guest && r->guest != MAP_FAILED)
		munmap(r->guest, r->npages * r->hpsize);
	if (r->alias && r->alias != MAP_FAILED)
		munmap(r->alias, r->npages * r->hpsize);
	if (r->uffd >= 0)
		close(r->uffd);
	if (r->memfd >= 0)
		close(r->memfd);
	free(r->placed);
	free(r->lat.ns);
	pthread_mutex_destroy(&r->lat.lock);
}

/*
 * The region of @r: a hugetlb memfd with every hugepage allocated, mapped
 * twice (guest, split for HGM, registered for minor faults; and alias).
 * Returns 0, 1 on an error, KSFT_SKIP if the machine cannot run it.  The
 * caller calls teardown() in every case.
 */
static int region_setup(struct run *r, const char *what)
{
	size_t len = r->npages * r->hpsize;
	unsigned int mfd_flags = MFD_CLOEXEC | MFD_HUGETLB |
		(r->hpsize == (1ul << 30) ? MFD_HUGE_1GB : MFD_HUGE_2MB);
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MINOR };
	long avail = free_hugepages(r->hpsize);

	r->memfd = r->uffd = -1;
	pthread_mutex_init(&r->lat.lock, NULL);
	if (avail < (long)r->npages) {
		printf("%-5s %-36s skipped: needs %zu free %s pages, %ld free\n",
		       size_name(r->hpsize), what, r->npages,
		       size_name(r->hpsize), avail < 0 ? 0 : avail);
		return KSFT_SKIP;
	}
	r->memfd = memfd_create("minor-fault-latency", mfd_flags);
	if (r->memfd < 0 || ftruncate(r->memfd, len)) {
		perror("hugetlb memfd");
		return 1;
	}
	r->guest = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	r->alias = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	if (r->guest == MAP_FAILED || r->alias == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	/* Allocate every hugepage up front: every fault is then a minor one. */
	if (fallocate(r->memfd, 0, 0, len)) {
		perror("fallocate");
		return 1;
	}
	if (r->mode == FILL_HGM && madvise(r->guest, len, MADV_SPLIT)) {
		if (errno != EINVAL) {
			perror("madvise(MADV_SPLIT)");
			return 1;
		}
		printf("%-5s %-36s skipped: kernel without HGM (MADV_SPLIT: EINVAL)\n",
		       size_name(r->hpsize), what);
		return KSFT_SKIP;
	}
	r->uffd = uffd_open();
	if (r->uffd < 0) {
		printf("skipped: userfaultfd with minor hugetlbfs faults: %s\n", strerror(-r->uffd));
		return KSFT_SKIP;
	}
	reg.range.start = (uintptr_t)r->guest;
	reg.range.len = len;
	if (ioctl(r->uffd, UFFDIO_REGISTER, &reg)) {
		perror("UFFDIO_REGISTER(MINOR)");
		return 1;
	}
	return 0;
}

/* Returns 0 on success, 1 on a failed check, KSFT_SKIP if it cannot run. */
static int run_case(struct run *r)
{
	size_t len = r->npages * r->hpsize;
	pthread_t handler, *tids = NULL;
	struct worker *w = NULL;
	int ret;

	ret = region_setup(r, mode_name(r->mode));
	if (ret)
		goto out;
	ret = 1;
	r->placed = calloc(nr_units(r), sizeof(*r->placed));
	tids = calloc(r->threads, sizeof(*tids));
	w = calloc(r->threads, sizeof(*w));
	if (!r->placed || !tids || !w)
		goto out;
	if (pthread_create(&handler, NULL, handler_thread, r))
		goto out;

	for (unsigned int round = 0; round < r->rounds && !r->failed; round++) {
		r->round = round + 1;
		make_template(r);
		memset(r->placed, 0, nr_units(r) * sizeof(*r->placed));
		if (r->mode == FILL_PRESENT) {
			for (size_t page = 0; page < r->npages; page++)
				fill_hugepage(r, page);
		}
		/* Unmap the guest view; the page cache keeps the data. */
		if (madvise(r->guest, len, MADV_DONTNEED)) {
			perror("madvise(MADV_DONTNEED)");
			r->failed = 1;
			break;
		}
		pthread_barrier_init(&r->start, NULL, r->threads);
		for (unsigned int t = 0; t < r->threads; t++) {
			w[t] = (struct worker){ .r = r, .id = t };
			pthread_create(&tids[t], NULL, worker_thread, &w[t]);
		}
		for (unsigned int t = 0; t < r->threads; t++)
			pthread_join(tids[t], NULL);
		pthread_barrier_destroy(&r->start);
		/* Fault in what the workers did not touch, then compare all. */
		if (r->mode == FILL_HGM) {
			if (finish_hgm_round(r))
				r->failed = 1;
		} else {
			for (size_t page = 0; page < r->npages; page++) {
				if (!r->placed[page] && r->mode == FILL_COPY)
					fill_hugepage(r, page);
			}
		}
		if (verify_all(r))
			r->failed = 1;
	}
	r->stop_handler = true;
	pthread_join(handler, NULL);
	print_stats(r);
	ret = r->failed ? 1 : 0;
out:
	free(tids);
	free(w);
	teardown(r);
	return ret;
}

static int continue_range(const struct run *r, size_t off, size_t len)
{
	struct uffdio_continue cont = {
		.range = { .start = (uintptr_t)r->guest + off, .len = len },
	};

	if (ioctl(r->uffd, UFFDIO_CONTINUE, &cont)) {
		fprintf(stderr, "UFFDIO_CONTINUE of %zu bytes at %#zx: %s\n",
			len, off, strerror(errno));
		return 1;
	}
	return 0;
}

/*
 * What mapping in pieces costs the kernel, without any fault: one thread
 * maps every 4 KiB piece of @npages hugepages of data already in the page
 * cache with UFFDIO_CONTINUE (as a postcopy destination maps pieces as
 * they arrive), then maps the hugepages whole again with MADV_COLLAPSE,
 * which zaps hpsize / 4 KiB entries per hugepage holding the hugetlb VMA
 * lock and the i_mmap_rwsem for writing: the time it takes bounds how long
 * faults and rmap walks of the file wait.  Upstream's cost, one
 * UFFDIO_CONTINUE of each whole hugepage, is measured on the same data.
 * The guest mapping is checked against the data after each step.
 */
static int measure_cost(size_t hpsize, size_t npages)
{
	struct run run = { .hpsize = hpsize, .npages = npages, .mode = FILL_HGM,
			   .round = 1 };
	struct run *r = &run;
	size_t len = npages * hpsize, pieces = len / PIECE;
	char each[32], coll[32], whole[32];
	uint64_t t0, t_pieces, t_collapse, t_whole;
	int ret;

	ret = region_setup(r, "CONTINUE every piece, collapse");
	if (ret)
		goto out;
	ret = 1;
	make_template(r);
	for (size_t page = 0; page < npages; page++)
		fill_hugepage(r, page);

	t0 = now_ns();
	for (size_t off = 0; off < len; off += PIECE) {
		if (continue_range(r, off, PIECE))
			goto out;
	}
	t_pieces = now_ns() - t0;
	if (verify_all(r))
		goto out;

	t0 = now_ns();
	if (madvise(r->guest, len, MADV_COLLAPSE)) {
		perror("madvise(MADV_COLLAPSE)");
		goto out;
	}
	t_collapse = now_ns() - t0;
	if (verify_all(r))
		goto out;

	/* Upstream: the same data, placed one whole hugepage at a time. */
	if (madvise(r->guest, len, MADV_DONTNEED)) {
		perror("madvise(MADV_DONTNEED)");
		goto out;
	}
	t0 = now_ns();
	for (size_t page = 0; page < npages; page++) {
		if (continue_range(r, page * hpsize, hpsize))
			goto out;
	}
	t_whole = now_ns() - t0;
	if (verify_all(r))
		goto out;

	fmt_ns(each, sizeof(each), t_pieces / pieces);
	fmt_ns(coll, sizeof(coll), t_collapse / npages);
	fmt_ns(whole, sizeof(whole), t_whole / npages);
	printf("%-5s %9zu %12s %12.0f %16s %18s\n", size_name(hpsize),
	       hpsize / PIECE, each, pieces / (t_pieces / 1e9), coll, whole);
	fflush(stdout);
	ret = 0;
out:
	teardown(r);
	return ret;
}

static size_t parse_size(const char *s)
{
	if (!strcmp(s, "2M") || !strcmp(s, "2m"))
		return 2ul << 20;
	if (!strcmp(s, "1G") || !strcmp(s, "1g"))
		return 1ul << 30;
	fprintf(stderr, "page size must be 2M or 1G, not '%s'\n", s);
	exit(2);
}

static unsigned long parse_num(const char *s, const char *what)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || !v || v > 1000000) {
		fprintf(stderr, "%s must be a positive number, not '%s'\n", what, s);
		exit(2);
	}
	return v;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [--size 2M|1G] [--pages N] [--threads N] [--rounds N]\n"
		"          [--mode present|copy|hgm]\n"
		"Without --size, runs the set: 2 MiB and 1 GiB pages, every mode.\n",
		prog);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "pages", required_argument, NULL, 'p' },
		{ "threads", required_argument, NULL, 't' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "mode", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	/* The baseline set, sized for the lab (TCG) as well as real hosts. */
	struct run set[] = {
		{ .hpsize = 2ul << 20, .npages = 32, .threads = 4, .rounds = 8, .mode = FILL_PRESENT },
		{ .hpsize = 2ul << 20, .npages = 32, .threads = 4, .rounds = 2, .mode = FILL_COPY },
		{ .hpsize = 1ul << 30, .npages = 1, .threads = 1, .rounds = 16, .mode = FILL_PRESENT },
		{ .hpsize = 1ul << 30, .npages = 1, .threads = 4, .rounds = 2, .mode = FILL_COPY },
		{ .hpsize = 2ul << 20, .npages = 32, .threads = 4, .rounds = 2, .mode = FILL_HGM },
		{ .hpsize = 1ul << 30, .npages = 1, .threads = 4, .rounds = 4, .mode = FILL_HGM },
	};
	struct run one = { .hpsize = 0, .npages = 4, .threads = 4, .rounds = 4, .mode = FILL_PRESENT };
	struct run *runs = set;
	size_t nruns = sizeof(set) / sizeof(set[0]);
	int c, ran = 0, failed = 0;

	while ((c = getopt_long(argc, argv, "s:p:t:r:m:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': one.hpsize = parse_size(optarg); break;
		case 'p': one.npages = parse_num(optarg, "--pages"); break;
		case 't': one.threads = parse_num(optarg, "--threads"); break;
		case 'r': one.rounds = parse_num(optarg, "--rounds"); break;
		case 'm':
			if (!strcmp(optarg, "present"))
				one.mode = FILL_PRESENT;
			else if (!strcmp(optarg, "copy"))
				one.mode = FILL_COPY;
			else if (!strcmp(optarg, "hgm"))
				one.mode = FILL_HGM;
			else
				usage(argv[0]);
			break;
		default: usage(argv[0]);
		}
	}
	if (optind != argc)
		usage(argv[0]);
	if (one.hpsize) {
		runs = &one;
		nruns = 1;
	}

	printf("userfaultfd minor faults on shared hugetlb: upstream, each fault is\n"
	       "resolved by UFFDIO_CONTINUE of the whole hugepage; hgm, of the 4 KiB\n"
	       "piece (latency: worker's access -> access completed)\n");
	print_header();
	for (size_t i = 0; i < nruns; i++) {
		int ret = run_case(&runs[i]);

		if (ret != KSFT_SKIP)
			ran++;
		if (ret == 1)
			failed++;
	}
	if (!one.hpsize) {
		static const struct { size_t hpsize, npages; } costs[] = {
			{ 2ul << 20, 32 }, { 1ul << 30, 1 },
		};

		printf("\nkernel cost of HGM, one thread, data in the page cache, no fault:\n"
		       "CONTINUE of every 4 KiB piece, then MADV_COLLAPSE (zaps every piece\n"
		       "under the i_mmap_rwsem held for writing); upstream: CONTINUE of the\n"
		       "whole hugepage\n");
		printf("%-5s %9s %12s %12s %16s %18s\n", "page", "pieces",
		       "CONTINUE 4K", "per second", "collapse/page", "CONTINUE whole");
		for (size_t i = 0; i < sizeof(costs) / sizeof(costs[0]); i++) {
			int ret = measure_cost(costs[i].hpsize, costs[i].npages);

			if (ret != KSFT_SKIP)
				ran++;
			if (ret == 1)
				failed++;
		}
	}
	if (!ran) {
		printf("nothing ran: reserve hugepages first (see README)\n");
		return KSFT_SKIP;
	}
	printf("data check: %s\n", failed ? "FAILED" : "every byte of every round matched");
	return failed ? 1 : 0;
}

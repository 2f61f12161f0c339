// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * hgm-loopback: a postcopy destination and its source, as two processes
 * joined by a TCP connection over loopback, written against the public API
 * of libmigration-hgm (migration-hgm.h) and nothing else of it.
 *
 * The source holds a hugetlb region filled with a pattern (each 4 KiB piece
 * derived from a hash of its index) and answers "offset, length" requests
 * with a header and exactly those bytes.  The destination maps a hugetlb
 * memfd shared as "guest" memory and sets it up through the library
 * (create, populate, split in HGM mode, register on its userfaultfd).  Worker
 * threads stand in for vCPUs: they read random 4 KiB pieces of the guest
 * mapping and fault.  As in the library's guide, two threads serve them:
 *
 *   fault thread    reads the userfaultfd, stamps each fault, calls
 *                   mhgm_fault(): a piece that has arrived is mapped at
 *                   once, without a round trip; otherwise it sends the
 *                   source a request for what the library asks for (the
 *                   4 KiB piece in HGM mode, the rest of the hugepage in
 *                   whole-page mode), never twice for the same piece;
 *   receive thread  reads the replies and mhgm_place()s them, which maps
 *                   them and records each fault's latency, fault seen ->
 *                   mapped, in the library's histogram.
 *
 * Modes: "hgm" splits the region (MADV_SPLIT, 4 KiB placement; needs a
 * kernel with HGM, which mhgm_probe() reports); "whole" leaves it in the
 * library's fallback mode, which is how an upstream kernel resolves minor
 * faults on hugetlb (a region not split places whole hugepages on every
 * kernel).  Both modes touch the same pieces (same seed).  Each row reports
 * faults, latency percentiles, wall time and the bytes that crossed the
 * socket; then every piece the destination placed is compared byte for byte
 * with the pattern through the guest mapping.
 *
 * Exit status: 0 every row that ran verified, 1 a check or a call failed,
 * 2 bad arguments, 4 (kselftest's "skip") nothing could run.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/memfd.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <migration-hgm.h>

#define KSFT_SKIP	4
#define EXIT_USAGE	2

#define PIECE		((uint64_t)4096)
#define SZ_2M		((uint64_t)2 << 20)
#define SZ_1G		((uint64_t)1 << 30)
#define CHUNK		SZ_2M		/* receive buffer */
#define MAX_WORKERS	64
#define MAX_TOUCHES	1000000
#define WATCHDOG_S	600		/* a lost fault hangs the workers */
#define BITS		(8 * sizeof(unsigned long))
#define STR_(x)		#x
#define STR(x)		STR_(x)

struct page_size {
	const char *name;
	uint64_t bytes;
	uint64_t nr;		/* hugepages in the region */
};

/* Sized so that a row takes seconds in the lab (TCG) as well. */
static const struct page_size page_sizes[] = {
	{ "2M", SZ_2M, 32 },
	{ "1G", SZ_1G, 1 },
};
#define NR_SIZES	(sizeof(page_sizes) / sizeof(page_sizes[0]))

enum { MODE_WHOLE = 1 << 0, MODE_HGM = 1 << 1 };

struct options {
	unsigned int sizes;	/* bit i: page_sizes[i] */
	unsigned int modes;	/* MODE_* */
	unsigned int workers;
	unsigned int touches;	/* per row, over all workers */
	uint64_t seed;
};

/* ------------------------------------------------------------ pattern */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Word @w of the piece whose index hashes to @hash. */
static inline uint64_t pattern_word(uint64_t hash, unsigned int w)
{
	return hash ^ (w * 0x9e3779b97f4a7c15ULL);
}

static void pattern_fill(uint64_t *dst, uint64_t piece, uint64_t nr)
{
	for (uint64_t p = piece; p < piece + nr; p++) {
		uint64_t hash = mix64(p);

		for (unsigned int w = 0; w < PIECE / 8; w++)
			*dst++ = pattern_word(hash, w);
	}
}

static bool piece_ok(const uint64_t *src, uint64_t piece)
{
	uint64_t hash = mix64(piece);

	for (unsigned int w = 0; w < PIECE / 8; w++) {
		if (src[w] != pattern_word(hash, w))
			return false;
	}
	return true;
}

/* ------------------------------------------------------------- wire */

/*
 * TCP over 127.0.0.1 rather than an AF_UNIX socketpair: migration streams
 * run over TCP, so every request and every page here pays the same kernel
 * networking path a real migration pays, minus the wire.  TCP_NODELAY, as
 * requests are tiny and latency-bound: Nagle would hold one back while the
 * previous one is unacknowledged.
 */
enum wire_op {
	OP_SETUP = 1,	/* offset: hugepage size, length: region length */
	OP_READ = 2,	/* reply: OP_DATA header, then @length bytes */
	OP_DATA = 3,
	OP_SYNC = 4,	/* reply: OP_SYNC once every earlier reply is sent */
};

struct wire_msg {
	uint32_t op;
	int32_t status;		/* replies: 0 or a negative errno */
	uint64_t offset;
	uint64_t length;
};

static int send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= n;
	}
	return 0;
}

/* 0, 1 if the peer closed before the first byte, or a negative errno. */
static int recv_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = recv(fd, p + done, len - done, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (!n)
			return done ? -ECONNRESET : 1;
		done += n;
	}
	return 0;
}

static int send_msg(int fd, uint32_t op, int32_t status, uint64_t offset,
		    uint64_t length)
{
	struct wire_msg m = {
		.op = op,
		.status = status,
		.offset = offset,
		.length = length,
	};

	return send_all(fd, &m, sizeof(m));
}

static int recv_msg(int fd, struct wire_msg *m)
{
	int ret = recv_all(fd, m, sizeof(*m));

	return ret > 0 ? -ECONNRESET : ret;
}

/* Both ends of a TCP connection over 127.0.0.1; fills @port. */
static int loopback_connect(int *listen_end, int *connect_end, uint16_t *port)
{
	struct sockaddr_in addr = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	socklen_t alen = sizeof(addr);
	int one = 1, lfd, cfd = -1, afd = -1, ret = 0;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || cfd < 0 ||
	    bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) ||
	    listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&addr, &alen) ||
	    connect(cfd, (struct sockaddr *)&addr, sizeof(addr)))
		ret = -errno;
	if (!ret)
		afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (!ret && afd < 0)
		ret = -errno;
	if (!ret && (setsockopt(afd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
		     setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))))
		ret = -errno;
	if (lfd >= 0)
		close(lfd);
	if (ret) {
		if (cfd >= 0)
			close(cfd);
		if (afd >= 0)
			close(afd);
		return ret;
	}
	*listen_end = afd;
	*connect_end = cfd;
	*port = ntohs(addr.sin_port);
	return 0;
}

/* ----------------------------------------------------------- hugetlb */

static int hugetlb_memfd(const char *name, uint64_t hpsize, uint64_t len)
{
	unsigned int flags = MFD_CLOEXEC | MFD_HUGETLB |
		((unsigned int)__builtin_ctzll(hpsize) << MFD_HUGE_SHIFT);
	int fd = memfd_create(name, flags);

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, len)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/* Free hugepages of @hpsize, or -1 if the kernel has no such size. */
static long free_hugepages(uint64_t hpsize)
{
	char path[96];
	long n = -1;
	FILE *f;

	snprintf(path, sizeof(path),
		 "/sys/kernel/mm/hugepages/hugepages-%" PRIu64 "kB/free_hugepages",
		 hpsize >> 10);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &n) != 1)
		n = -1;
	fclose(f);
	return n;
}

/* ------------------------------------------------------------ source */

struct source {
	int sock;
	int memfd;
	char *mem;
	uint64_t len;
};

static void source_release(struct source *s)
{
	if (s->mem)
		munmap(s->mem, s->len);
	if (s->memfd >= 0)
		close(s->memfd);
	s->mem = NULL;
	s->memfd = -1;
	s->len = 0;
}

/* A new region of @len bytes of @hpsize pages, filled with the pattern. */
static int source_setup(struct source *s, uint64_t hpsize, uint64_t len)
{
	source_release(s);
	if (hpsize != SZ_2M && hpsize != SZ_1G)
		return -EINVAL;
	if (!len || len % hpsize)
		return -EINVAL;
	s->memfd = hugetlb_memfd("hgm-loopback-source", hpsize, len);
	if (s->memfd < 0)
		return s->memfd;
	/* allocate first: out of hugepages is ENOSPC here, not SIGBUS below */
	if (fallocate(s->memfd, 0, 0, len))
		goto fail;
	s->mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, s->memfd, 0);
	if (s->mem == MAP_FAILED) {
		s->mem = NULL;
		goto fail;
	}
	s->len = len;
	pattern_fill((uint64_t *)s->mem, 0, len / PIECE);
	return 0;
fail:
	len = -errno;
	source_release(s);
	return (int)len;
}

static int source_read(struct source *s, uint64_t off, uint64_t len)
{
	int ret;

	if (!s->mem || off > s->len || len > s->len - off)
		return -ERANGE;
	ret = send_msg(s->sock, OP_DATA, 0, off, len);
	return ret ? ret : send_all(s->sock, s->mem + off, len);
}

static int source_serve(struct source *s, const struct wire_msg *m)
{
	switch (m->op) {
	case OP_SETUP:
		return send_msg(s->sock, OP_SETUP,
				source_setup(s, m->offset, m->length), 0, 0);
	case OP_READ:
		return source_read(s, m->offset, m->length);
	case OP_SYNC:
		return send_msg(s->sock, OP_SYNC, 0, 0, 0);
	}
	return -EPROTO;
}

/* The source process: serve requests until the destination hangs up. */
static int source_main(int sock)
{
	struct source s = { .sock = sock, .memfd = -1 };
	struct wire_msg m;
	int ret;

	for (;;) {
		ret = recv_all(sock, &m, sizeof(m));
		if (!ret)
			ret = source_serve(&s, &m);
		if (ret)
			break;
	}
	source_release(&s);
	close(sock);
	if (ret > 0)
		return 0;	/* the destination is done */
	fprintf(stderr, "hgm-loopback: source: %s\n", strerror(-ret));
	return 1;
}

/* ------------------------------------------------------- destination */

/* One row: a region of one page size, placed in one mode. */
struct row {
	const struct options *opt;
	const struct page_size *ps;
	int mode;			/* MODE_WHOLE or MODE_HGM */
	int sock;
	uint64_t len;
	uint64_t nr_pieces;

	int memfd, uffd, stop_efd;
	char *guest;
	struct mhgm_region *region;

	unsigned long *requested;	/* per piece; fault thread only */
	unsigned long *placed;		/* per piece; receive thread only */
	char *buf;			/* receive buffer, CHUNK bytes */
	uint64_t bytes;			/* received from the source */

	pthread_barrier_t start;
	atomic_int error;		/* first failure, 0 if none */
	atomic_ulong bad_touches;	/* touched pieces that read wrong */
	uint64_t elapsed_ns;
};

static bool bit_test(const unsigned long *map, uint64_t i)
{
	return map[i / BITS] & (1UL << (i % BITS));
}

static void bit_set(unsigned long *map, uint64_t i)
{
	map[i / BITS] |= 1UL << (i % BITS);
}

/*
 * Unregister the guest range, so that no access waits for a fault thread
 * any more (it reads whatever the page cache holds); the library also wakes
 * the accesses waiting already.
 */
static void row_release(struct row *r)
{
	mhgm_region_unregister(r->region);
}

/* Record the first failure and let the workers go: the row fails. */
static void row_fail(struct row *r, int err)
{
	int zero = 0;

	if (atomic_compare_exchange_strong(&r->error, &zero, err))
		row_release(r);
}

/* Ask the source for the pieces of @req not asked for yet. */
static int request(struct row *r, const struct mhgm_range *req)
{
	uint64_t p = req->offset / PIECE, end = p + req->length / PIECE, q;
	int ret;

	for (; p < end; p = q) {
		if (bit_test(r->requested, p)) {
			q = p + 1;
			continue;
		}
		for (q = p; q < end && !bit_test(r->requested, q); q++)
			bit_set(r->requested, q);
		ret = send_msg(r->sock, OP_READ, 0, p * PIECE, (q - p) * PIECE);
		if (ret)
			return ret;
	}
	return 0;
}

static int handle_fault(struct row *r, const struct uffd_msg *msg,
			uint64_t seen)
{
	void *addr = (void *)(uintptr_t)msg->arg.pagefault.address;
	struct mhgm_range req;
	uint64_t off;
	int ret;

	if (msg->event != UFFD_EVENT_PAGEFAULT)
		return -EPROTO;
	ret = mhgm_region_offset(r->region, addr, &off);
	if (!ret)
		ret = mhgm_fault(r->region, off, seen, &req);
	if (ret == MHGM_FAULT_MISSING)
		ret = request(r, &req);
	return ret;
}

/* Fault thread: until told to stop, serve every fault it reads. */
static void *fault_main(void *arg)
{
	struct row *r = arg;
	struct pollfd pfd[2] = {
		{ .fd = r->uffd, .events = POLLIN },
		{ .fd = r->stop_efd, .events = POLLIN },
	};
	struct uffd_msg msgs[16];
	uint64_t seen;
	ssize_t n;
	int ret = 0;

	while (!ret && !atomic_load(&r->error)) {
		if (poll(pfd, 2, -1) < 0) {
			ret = errno == EINTR ? 0 : -errno;
			continue;
		}
		if (pfd[1].revents)
			break;
		n = read(r->uffd, msgs, sizeof(msgs));
		if (n < 0) {
			ret = errno == EAGAIN || errno == EINTR ? 0 : -errno;
			continue;
		}
		seen = mhgm_clock_ns();
		for (ssize_t i = 0; !ret && i < n / (ssize_t)sizeof(msgs[0]); i++)
			ret = handle_fault(r, &msgs[i], seen);
	}
	if (ret < 0)
		row_fail(r, ret);
	return NULL;
}

/* Receive one reply's data and place it, a buffer at a time. */
static int receive_data(struct row *r, uint64_t off, uint64_t len)
{
	int ret;

	if (off % PIECE || len % PIECE || off > r->len || len > r->len - off)
		return -EPROTO;
	while (len) {
		uint64_t n = len < CHUNK ? len : CHUNK;

		ret = recv_all(r->sock, r->buf, n);
		if (ret)
			return ret > 0 ? -ECONNRESET : ret;
		ret = mhgm_place(r->region, off, r->buf, n, 0);
		if (ret)
			return ret;
		for (uint64_t p = off / PIECE; p < (off + n) / PIECE; p++)
			bit_set(r->placed, p);
		r->bytes += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* Receive thread: place replies until the OP_SYNC reply. */
static void *receive_main(void *arg)
{
	struct row *r = arg;
	struct wire_msg m;
	int ret;

	for (;;) {
		ret = recv_msg(r->sock, &m);
		if (ret || m.op == OP_SYNC)
			break;
		if (m.op == OP_DATA && !m.status)
			ret = receive_data(r, m.offset, m.length);
		else
			ret = m.status ? m.status : -EPROTO;
		if (ret)
			break;
	}
	if (ret)
		row_fail(r, ret);
	return NULL;
}

struct worker {
	struct row *r;
	pthread_t thread;
	unsigned int id;
	unsigned int touches;
};

/* A vCPU: read random pieces (the same in every mode), check each. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct row *r = w->r;
	uint64_t state = mix64(r->opt->seed ^ ((uint64_t)w->id << 40));

	pthread_barrier_wait(&r->start);
	for (unsigned int i = 0; i < w->touches; i++) {
		uint64_t piece;

		state = mix64(state + i);
		piece = state % r->nr_pieces;
		if (!piece_ok((const uint64_t *)(r->guest + piece * PIECE), piece))
			atomic_fetch_add(&r->bad_touches, 1);
	}
	return NULL;
}

static int uffd_open(void)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_MINOR_HUGETLBFS,
	};
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0 && (errno == EPERM || errno == ENOSYS)) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			close(dev);
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

/* On a terminal that can redraw a line (the lab's console cannot). */
static bool progress_wanted(void)
{
	const char *term = getenv("TERM");

	return isatty(STDERR_FILENO) && term && strcmp(term, "dumb");
}

static int show_progress(uint64_t done, uint64_t total, void *opaque)
{
	const struct row *r = opaque;

	fprintf(stderr, "\r%s %s: allocating hugepages %3u%%", r->ps->name,
		r->mode == MODE_HGM ? "hgm" : "whole",
		(unsigned int)(done * 100 / total));
	if (done == total)
		fputs("\r\033[K", stderr);
	return 0;
}

/*
 * The destination's guest memory and its region, set up as a VMM does
 * before postcopy starts.  On error, says which step failed.
 */
static int row_setup(struct row *r, const char **step)
{
	struct mhgm_region_params params = {
		.map_flags = MAP_SHARED,
		.length = r->len,
	};
	size_t words = (r->nr_pieces + BITS - 1) / BITS;
	int ret, want;

	*step = "memory";
	r->requested = calloc(words, sizeof(unsigned long));
	r->placed = calloc(words, sizeof(unsigned long));
	r->buf = malloc(CHUNK);
	if (!r->requested || !r->placed || !r->buf)
		return -ENOMEM;
	*step = "hugetlb memfd";
	r->memfd = hugetlb_memfd("hgm-loopback-guest", r->ps->bytes, r->len);
	if (r->memfd < 0)
		return r->memfd;
	r->guest = mmap(NULL, r->len, PROT_READ | PROT_WRITE, MAP_SHARED,
			r->memfd, 0);
	if (r->guest == MAP_FAILED) {
		r->guest = NULL;
		return -errno;
	}
	*step = "mhgm_region_create";
	params.fd = r->memfd;
	params.guest = r->guest;
	ret = mhgm_region_create(&params, &r->region);
	if (ret)
		return ret;
	*step = "mhgm_region_populate";
	ret = mhgm_region_populate(r->region,
				   progress_wanted() ? show_progress : NULL, r);
	if (ret)
		return ret;
	/* whole: not split, the region keeps the fallback (upstream) mode */
	*step = "mhgm_region_split";
	if (r->mode == MODE_HGM) {
		ret = mhgm_region_split(r->region);
		if (ret)
			return ret;
	}
	*step = "mhgm_region_mode";
	want = r->mode == MODE_HGM ? MHGM_MODE_HGM : MHGM_MODE_FALLBACK;
	if (mhgm_region_mode(r->region) != want)
		return -EPROTO;
	*step = "userfaultfd";
	r->uffd = uffd_open();
	if (r->uffd < 0)
		return r->uffd;
	*step = "eventfd";
	r->stop_efd = eventfd(0, EFD_CLOEXEC);
	if (r->stop_efd < 0)
		return -errno;
	*step = "mhgm_region_register";
	return mhgm_region_register(r->region, r->uffd);
}

static void row_teardown(struct row *r)
{
	mhgm_region_free(r->region);	/* closes: unregisters, unmaps */
	if (r->guest)
		munmap(r->guest, r->len);
	if (r->memfd >= 0)
		close(r->memfd);
	if (r->uffd >= 0)
		close(r->uffd);
	if (r->stop_efd >= 0)
		close(r->stop_efd);
	free(r->requested);
	free(r->placed);
	free(r->buf);
}

static int stop_fault_thread(struct row *r, pthread_t fault)
{
	uint64_t one = 1;
	int ret = 0;

	if (write(r->stop_efd, &one, sizeof(one)) < 0)
		ret = -errno;
	pthread_join(fault, NULL);
	return ret;
}

/* Workers fault; fault and receive threads serve; all joined on return. */
static int row_measure(struct row *r)
{
	unsigned int nw = r->opt->workers;
	struct worker w[MAX_WORKERS];
	pthread_t fault, receive;
	unsigned int i;
	uint64_t t0;
	int ret;

	if (pthread_create(&fault, NULL, fault_main, r))
		return -EAGAIN;
	if (pthread_create(&receive, NULL, receive_main, r)) {
		stop_fault_thread(r, fault);
		return -EAGAIN;
	}
	pthread_barrier_init(&r->start, NULL, nw + 1);
	for (i = 0; i < nw; i++) {
		w[i] = (struct worker){
			.r = r,
			.id = i,
			.touches = r->opt->touches / nw +
				   (i < r->opt->touches % nw),
		};
		if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]))
			break;
	}
	if (i < nw) {
		/* nobody runs without all of them: fail before the barrier */
		fprintf(stderr, "hgm-loopback: cannot start %u workers\n", nw);
		exit(1);
	}
	t0 = mhgm_clock_ns();	/* no worker starts before this thread arrives */
	pthread_barrier_wait(&r->start);
	for (i = 0; i < nw; i++)
		pthread_join(w[i].thread, NULL);
	r->elapsed_ns = mhgm_clock_ns() - t0;

	ret = stop_fault_thread(r, fault);
	/* every reply asked for is in once the source answers OP_SYNC */
	if (!ret && !atomic_load(&r->error))
		ret = send_msg(r->sock, OP_SYNC, 0, 0, 0);
	if (ret)
		row_fail(r, ret);
	if (atomic_load(&r->error))
		shutdown(r->sock, SHUT_RDWR);	/* the stream is lost */
	pthread_join(receive, NULL);
	pthread_barrier_destroy(&r->start);
	return atomic_load(&r->error);
}

/*
 * Compare every piece the destination placed with the pattern, through the
 * guest mapping.  Released first: an access the library failed to map then
 * reads the page cache instead of waiting for a fault thread that is gone.
 * Returns the number of pieces that differ; *checked counts pieces.
 */
static uint64_t row_verify(struct row *r, uint64_t *checked)
{
	uint64_t bad = 0, first = 0;

	row_release(r);
	*checked = 0;
	for (uint64_t p = 0; p < r->nr_pieces; p++) {
		if (!bit_test(r->placed, p))
			continue;
		(*checked)++;
		if (!piece_ok((const uint64_t *)(r->guest + p * PIECE), p) &&
		    !bad++)
			first = p;
	}
	if (bad)
		fprintf(stderr, "hgm-loopback: %s %s: %" PRIu64 " of %" PRIu64
			" placed pieces differ from the source, first at "
			"offset %#" PRIx64 "\n", r->ps->name,
			r->mode == MODE_HGM ? "hgm" : "whole", bad, *checked,
			first * PIECE);
	return bad;
}

static void fmt_ns(char *buf, size_t len, uint64_t ns, bool valid)
{
	if (!valid)
		snprintf(buf, len, "-");
	else if (ns < 1000000ULL)
		snprintf(buf, len, "%.1fus", ns / 1e3);
	else if (ns < 1000000000ULL)
		snprintf(buf, len, "%.1fms", ns / 1e6);
	else
		snprintf(buf, len, "%.2fs", ns / 1e9);
}

static void fmt_bytes(char *buf, size_t len, uint64_t bytes)
{
	if (bytes < (1ULL << 20))
		snprintf(buf, len, "%" PRIu64 "KiB", bytes >> 10);
	else if (bytes < (1ULL << 30))
		snprintf(buf, len, "%.1fMiB", bytes / 1048576.0);
	else
		snprintf(buf, len, "%.2fGiB", bytes / 1073741824.0);
}

#define ROW_FMT	"%-4s  %-5s  %7s  %9s  %9s  %9s  %9s  %9s  %11s\n"

static void print_header(void)
{
	printf(ROW_FMT, "page", "mode", "faults", "p50", "p90", "p99", "max",
	       "time", "transferred");
}

static void print_row(const struct row *r, const struct mhgm_stats *st)
{
	const struct mhgm_latency *l = &st->latency;
	char f[24], p50[16], p90[16], p99[16], max[16], t[16], b[16];

	snprintf(f, sizeof(f), "%" PRIu64, st->faults);
	fmt_ns(p50, sizeof(p50), l->p50, l->count);
	fmt_ns(p90, sizeof(p90), l->p90, l->count);
	fmt_ns(p99, sizeof(p99), l->p99, l->count);
	fmt_ns(max, sizeof(max), l->max, l->count);
	fmt_ns(t, sizeof(t), r->elapsed_ns, true);
	fmt_bytes(b, sizeof(b), r->bytes);
	printf(ROW_FMT, r->ps->name, r->mode == MODE_HGM ? "hgm" : "whole",
	       f, p50, p90, p99, max, t, b);
}

/* The library's view must match what the destination placed. */
static int row_check_stats(const struct row *r, const struct mhgm_stats *st,
			   uint64_t placed)
{
	if (st->pieces_present == placed && st->pieces_mapped == placed &&
	    st->pieces_copied == placed)
		return 0;
	fprintf(stderr, "hgm-loopback: %s %s: placed %" PRIu64 " pieces, the "
		"library counts %" PRIu64 " present, %" PRIu64 " mapped, %"
		PRIu64 " copied\n", r->ps->name,
		r->mode == MODE_HGM ? "hgm" : "whole", placed,
		st->pieces_present, st->pieces_mapped, st->pieces_copied);
	return 1;
}

struct tally {
	unsigned int ran, failed;
	uint64_t pieces;		/* verified */
};

/* One row from setup to teardown; 1 if it failed. */
static int run_row(const struct options *opt, const struct page_size *ps,
		   int mode, int sock, struct tally *t)
{
	struct row r = {
		.opt = opt, .ps = ps, .mode = mode, .sock = sock,
		.len = ps->bytes * ps->nr, .nr_pieces = ps->bytes * ps->nr / PIECE,
		.memfd = -1, .uffd = -1, .stop_efd = -1,
	};
	const char *step;
	struct mhgm_stats st;
	uint64_t checked = 0, bad;
	int ret, failed = 1;

	ret = row_setup(&r, &step);
	if (ret == -EOPNOTSUPP && mode == MODE_HGM &&
	    !strcmp(step, "mhgm_region_split")) {
		printf("%-4s  %-5s  skipped: kernel without HGM\n", ps->name, "hgm");
		row_teardown(&r);
		return 0;
	}
	t->ran++;
	if (ret) {
		fprintf(stderr, "hgm-loopback: %s %s: %s: %s\n", ps->name,
			mode == MODE_HGM ? "hgm" : "whole", step, strerror(-ret));
		goto out;
	}
	ret = row_measure(&r);
	if (ret)
		fprintf(stderr, "hgm-loopback: %s %s: serving faults: %s\n",
			ps->name, mode == MODE_HGM ? "hgm" : "whole",
			strerror(-ret));
	if (mhgm_region_stats(r.region, &st))
		goto out;
	print_row(&r, &st);
	bad = row_verify(&r, &checked);
	t->pieces += checked;
	failed = ret || bad || row_check_stats(&r, &st, checked) ||
		 atomic_load(&r.bad_touches);
	if (atomic_load(&r.bad_touches))
		fprintf(stderr, "hgm-loopback: %s %s: %lu touches read wrong "
			"data\n", ps->name, mode == MODE_HGM ? "hgm" : "whole",
			atomic_load(&r.bad_touches));
out:
	row_teardown(&r);
	t->failed += failed;
	return failed;
}

/* 0, or prints why the size cannot run and returns non-zero. */
static int size_usable(const struct page_size *ps)
{
	long free = free_hugepages(ps->bytes);

	if (free < 0) {
		printf("%-4s  skipped: this kernel has no %s hugepages\n",
		       ps->name, ps->name);
		return 1;
	}
	if ((uint64_t)free < 2 * ps->nr) {
		printf("%-4s  skipped: needs %" PRIu64 " free %s hugepages "
		       "(%" PRIu64 " source + %" PRIu64 " destination), %ld free\n",
		       ps->name, 2 * ps->nr, ps->name, ps->nr, ps->nr, free);
		return 1;
	}
	return 0;
}

/* Have the source set up its region for @ps; 0 or a negative errno. */
static int source_prepare(int sock, const struct page_size *ps)
{
	struct wire_msg m;
	int ret = send_msg(sock, OP_SETUP, 0, ps->bytes, ps->bytes * ps->nr);

	if (!ret)
		ret = recv_msg(sock, &m);
	if (!ret && m.op != OP_SETUP)
		ret = -EPROTO;
	return ret ? ret : m.status;
}

static void run_size(const struct options *opt, const struct page_size *ps,
		     int sock, struct tally *t)
{
	struct mhgm_probe probe = { 0 };
	bool hgm = false;
	int ret;

	if (size_usable(ps))
		return;
	/* probe before the source takes its hugepages: it needs a free one */
	if (opt->modes & MODE_HGM) {
		ret = mhgm_probe(ps->bytes, &probe);
		if (ret)
			fprintf(stderr, "hgm-loopback: %s: mhgm_probe: %s\n",
				ps->name, strerror(-ret));
		hgm = !ret && probe.mode == MHGM_MODE_HGM;
	}
	ret = source_prepare(sock, ps);
	if (ret == -ENOSPC || ret == -ENOMEM) {
		printf("%-4s  skipped: the source could not allocate %" PRIu64
		       " %s hugepages: %s\n", ps->name, ps->nr, ps->name,
		       strerror(-ret));
		return;
	}
	if (ret) {
		fprintf(stderr, "hgm-loopback: %s: source setup: %s\n",
			ps->name, strerror(-ret));
		t->failed++;
		return;
	}
	if ((opt->modes & MODE_WHOLE) && run_row(opt, ps, MODE_WHOLE, sock, t))
		return;	/* after a failure the stream may be out of step */
	if (!(opt->modes & MODE_HGM))
		return;
	if (hgm)
		run_row(opt, ps, MODE_HGM, sock, t);
	else
		printf("%-4s  %-5s  skipped: kernel without HGM\n", ps->name,
		       "hgm");
}

static void on_watchdog(int sig)
{
	static const char msg[] = "hgm-loopback: destination timed out "
				  "(a fault was never resolved?)\n";

	(void)sig;
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(1);
	_exit(1);
}

/* The destination process; its exit status is the program's. */
static int dest_main(const struct options *opt, int sock, uint16_t port)
{
	struct tally t = { 0 };

	signal(SIGALRM, on_watchdog);
	alarm(WATCHDOG_S);
	printf("hgm-loopback: postcopy source and destination processes over "
	       "TCP 127.0.0.1:%u\n", port);
	printf("workers: %u, touches per row: %u random 4 KiB pieces (seed %" PRIu64
	       "); latency: fault seen -> mapped\n", opt->workers, opt->touches,
	       opt->seed);
	print_header();
	for (unsigned int i = 0; i < NR_SIZES && !t.failed; i++) {
		if (opt->sizes & (1U << i))
			run_size(opt, &page_sizes[i], sock, &t);
	}
	close(sock);
	if (t.failed) {
		printf("byte check: FAILED (see the errors above)\n");
		return 1;
	}
	if (!t.ran) {
		printf("nothing ran: see the rows above\n");
		return KSFT_SKIP;
	}
	printf("byte check: OK, all %" PRIu64 " bytes the destination placed "
	       "match the source\n", t.pieces * PIECE);
	return 0;
}

/* ----------------------------------------------------------- options */

static void usage(const char *prog)
{
	printf("usage: %s [--sizes 2M,1G] [--modes whole,hgm] [--workers N]\n"
		"       %*s [--touches N] [--seed N]\n"
		"A postcopy source and destination over TCP loopback, through\n"
		"libmigration-hgm: workers fault on random 4 KiB pieces of shared\n"
		"hugetlb memory; each row reports faults, latency (fault seen ->\n"
		"mapped), time and bytes transferred, then every placed byte is\n"
		"checked.  Regions: 32 x 2 MiB, 1 x 1 GiB; each size needs twice\n"
		"that in free hugepages (source and destination).\n"
		"  --sizes    page sizes to run (default 2M,1G)\n"
		"  --modes    whole: whole-hugepage placement, as upstream;\n"
		"             hgm: 4 KiB placement, needs HGM (default whole,hgm)\n"
		"  --workers  faulting threads, 1-%d (default 4)\n"
		"  --touches  4 KiB reads per row over all workers, 1-%d\n"
		"             (default 256)\n"
		"  --seed     random seed of the touched pieces (default 1)\n",
		prog, (int)strlen(prog), "", MAX_WORKERS, MAX_TOUCHES);
}

static int parse_uint(const char *s, uint64_t max, uint64_t *v)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, &end, 0);
	if (errno || *end || *v > max)
		return -EINVAL;
	return 0;
}

/* Comma-separated names into bits of @names[]; 0 if none or unknown. */
static unsigned int parse_list(const char *arg, const char *const *names,
			       unsigned int nr)
{
	char *copy = strdup(arg), *save = NULL, *tok;
	unsigned int bits = 0, i;

	if (!copy)
		return 0;
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < nr && strcasecmp(tok, names[i]); i++)
			;
		if (i == nr) {
			bits = 0;
			break;
		}
		bits |= 1U << i;
	}
	free(copy);
	return bits;
}

/* One option's argument into @opt; 0, or -1 if it is not valid. */
static int parse_arg(int c, const char *arg, struct options *opt)
{
	static const char *const sizes[] = { "2M", "1G" };
	static const char *const modes[] = { "whole", "hgm" };
	uint64_t v;

	switch (c) {
	case 's':
		opt->sizes = parse_list(arg, sizes, NR_SIZES);
		return opt->sizes ? 0 : -1;
	case 'm':
		opt->modes = parse_list(arg, modes, 2);
		return opt->modes ? 0 : -1;
	case 'w':
		if (parse_uint(arg, MAX_WORKERS, &v) || !v)
			return -1;
		opt->workers = v;
		return 0;
	case 't':
		if (parse_uint(arg, MAX_TOUCHES, &v) || !v)
			return -1;
		opt->touches = v;
		return 0;
	case 'S':
		if (parse_uint(arg, UINT64_MAX, &v))
			return -1;
		opt->seed = v;
		return 0;
	}
	return -1;
}

static int parse_options(int argc, char **argv, struct options *opt)
{
	static const struct option longopts[] = {
		{ "sizes", required_argument, NULL, 's' },
		{ "modes", required_argument, NULL, 'm' },
		{ "workers", required_argument, NULL, 'w' },
		{ "touches", required_argument, NULL, 't' },
		{ "seed", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	/* what each of longopts[] takes */
	static const char *const valid[] = {
		"a list of 2M, 1G", "a list of whole, hgm",
		"1 to " STR(MAX_WORKERS), "1 to " STR(MAX_TOUCHES), "a number",
	};
	int c, idx;

	while ((c = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
		if (c == 'h') {
			usage(argv[0]);
			exit(0);
		}
		if (c == '?')
			return -1;	/* getopt said why */
		if (parse_arg(c, optarg, opt)) {
			fprintf(stderr, "%s: --%s: %s, not '%s'\n", argv[0],
				longopts[idx].name, valid[idx], optarg);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0],
			argv[optind]);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------- main */

/* Wait for a child: its exit status, or 1 (explained) if it did not exit. */
static int reap(pid_t pid, const char *who)
{
	int status;

	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			fprintf(stderr, "hgm-loopback: waitpid(%s): %s\n", who,
				strerror(errno));
			return 1;
		}
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	fprintf(stderr, "hgm-loopback: %s killed by signal %d (%s)\n", who,
		WTERMSIG(status), strsignal(WTERMSIG(status)));
	return 1;
}

static pid_t spawn(int (*fn)(const struct options *, int, uint16_t),
		   const struct options *opt, int keep, int drop, uint16_t port)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		close(drop);
		exit(fn(opt, keep, port));
	}
	return pid;
}

static int source_entry(const struct options *opt, int sock, uint16_t port)
{
	(void)opt;
	(void)port;
	return source_main(sock);
}

int main(int argc, char **argv)
{
	struct options opt = {
		.sizes = (1U << NR_SIZES) - 1, .modes = MODE_WHOLE | MODE_HGM,
		.workers = 4, .touches = 256, .seed = 1,
	};
	int dest_sock, src_sock, ret, dest_code, src_code;
	pid_t src, dest;
	uint16_t port;

	if (parse_options(argc, argv, &opt)) {
		fprintf(stderr, "Try '%s --help'.\n", argv[0]);
		return EXIT_USAGE;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	ret = loopback_connect(&dest_sock, &src_sock, &port);
	if (ret) {
		fprintf(stderr, "hgm-loopback: TCP connection over 127.0.0.1: %s "
			"(is the loopback interface up?)\n", strerror(-ret));
		return 1;
	}
	src = spawn(source_entry, &opt, src_sock, dest_sock, port);
	dest = src < 0 ? -1 : spawn(dest_main, &opt, dest_sock, src_sock, port);
	if (src < 0 || dest < 0) {
		perror("hgm-loopback: fork");
		return 1;
	}
	close(src_sock);
	close(dest_sock);
	/* the source ends when the destination hangs up, or fails alone */
	dest_code = reap(dest, "destination");
	src_code = reap(src, "source");
	if (src_code && !dest_code)
		return 1;
	return dest_code;
}

// SPDX-License-Identifier: GPL-2.0-only
/*
 * pattern-check [--skip START-END]... SRC DST [SIZE]: verify every byte of
 * the guest RAM of a pattern-guest (tests/guest/pattern-guest.c) on the
 * destination of a migration against the source's, both VMs stopped.  SRC
 * and DST are files
 * holding guest RAM from guest-physical address 0 (for example
 * /proc/PID/fd/N of QEMU's memory-backend-memfd); SIZE (bytes) defaults to
 * the smaller file's size.
 *
 * The guest went on writing on the destination after the switch, so:
 *  - below 4 MiB (firmware, the guest's image) the pages are equal, except
 *    the guest's stack (the 64 KiB below 0x90000);
 *  - from 4 MiB to the end of what the guest writes, page N begins with
 *    the word N << 32 | count on both sides, the destination's count no
 *    lower than the source's, and the rest of the page equals the
 *    source's.  The guest's area ends where the source's pages stop
 *    carrying their numbers (the firmware's tables at the top of RAM),
 *    and from there the pages are equal.
 * --skip START-END (hexadecimal or decimal byte addresses, repeatable)
 * leaves that range out of the check, for example the option ROM area
 * 0xc0000-0x100000, which KVM's kvmvapic patches on the destination.
 * Prints the number of pages checked and the first ten bad pages; exit 0 if
 * none is bad, 1 if some are, 2 on usage or I/O errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE		4096u
#define START		(4u << 20)
#define STACK_LO	0x80000u
#define STACK_HI	0x90000u
#define CHUNK		(2u << 20)

static uint64_t bad;

#define MAX_SKIPS	8
static struct { uint64_t start, end; } skips[MAX_SKIPS];
static int nr_skips;

static int skipped(uint64_t addr)
{
	for (int i = 0; i < nr_skips; i++)
		if (addr >= skips[i].start && addr < skips[i].end)
			return 1;
	return 0;
}

/* "START-END" into the next skips[] entry; 0, or -1 if malformed */
static int parse_skip(const char *arg)
{
	char *end;
	uint64_t a, b;

	if (nr_skips == MAX_SKIPS)
		return -1;
	errno = 0;
	a = strtoull(arg, &end, 0);
	if (errno || end == arg || *end != '-')
		return -1;
	arg = end + 1;
	b = strtoull(arg, &end, 0);
	if (errno || end == arg || *end || b <= a)
		return -1;
	skips[nr_skips].start = a;
	skips[nr_skips++].end = b;
	return 0;
}

static void report(uint64_t addr, const char *what, const uint8_t *s,
		   const uint8_t *d)
{
	uint64_t sw, dw;

	if (bad++ >= 10)
		return;
	memcpy(&sw, s, 8);
	memcpy(&dw, d, 8);
	printf("bad page at 0x%" PRIx64 ": %s (source word %#" PRIx64
	       ", destination word %#" PRIx64 ")\n", addr, what, sw, dw);
}

/* Whether the pattern area is over: the source's page does not carry N */
static int past_pattern;

static void check_page(uint64_t addr, const uint8_t *s, const uint8_t *d)
{
	uint64_t n = addr / PAGE, sw, dw;

	if (skipped(addr))
		return;
	if (addr < START || past_pattern) {
		if (addr >= STACK_LO && addr < STACK_HI)
			return;
		if (memcmp(s, d, PAGE))
			report(addr, "differs from the source", s, d);
		return;
	}
	memcpy(&sw, s, 8);
	memcpy(&dw, d, 8);
	if (sw >> 32 != n) {
		past_pattern = 1;
		check_page(addr, s, d);
	} else if (dw >> 32 != n) {
		report(addr, "does not carry its page number", s, d);
	} else if ((uint32_t)dw < (uint32_t)sw) {
		report(addr, "lost writes made on the source", s, d);
	} else if (memcmp(s + 8, d + 8, PAGE - 8)) {
		report(addr, "differs from the source after its first word", s, d);
	}
}

static ssize_t read_full(int fd, uint8_t *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pread(fd, buf + done, len - done, off + done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -1 : (ssize_t)done;
		done += r;
	}
	return done;
}

int main(int argc, char **argv)
{
	uint8_t *s = malloc(CHUNK), *d = malloc(CHUNK);
	struct stat st_s, st_d;
	uint64_t size, off;
	int fs, fd;

	while (argc > 2 && !strcmp(argv[1], "--skip")) {
		if (parse_skip(argv[2])) {
			fprintf(stderr, "pattern-check: bad range '%s' (START-END)\n",
				argv[2]);
			return 2;
		}
		argc -= 2;
		argv += 2;
	}
	if (argc < 3 || argc > 4 || !s || !d) {
		fprintf(stderr, "usage: pattern-check [--skip START-END]... SRC DST [SIZE]\n");
		return 2;
	}
	fs = open(argv[1], O_RDONLY);
	fd = open(argv[2], O_RDONLY);
	if (fs < 0 || fd < 0 || fstat(fs, &st_s) || fstat(fd, &st_d)) {
		perror("pattern-check: open");
		return 2;
	}
	size = argc == 4 ? strtoull(argv[3], NULL, 0) :
	       (uint64_t)(st_s.st_size < st_d.st_size ? st_s.st_size : st_d.st_size);
	if (!size || size % CHUNK) {
		fprintf(stderr, "pattern-check: size %" PRIu64 " is not a multiple of 2 MiB\n",
			size);
		return 2;
	}
	for (off = 0; off < size; off += CHUNK) {
		if (read_full(fs, s, CHUNK, off) != CHUNK ||
		    read_full(fd, d, CHUNK, off) != CHUNK) {
			fprintf(stderr, "pattern-check: short read at %#" PRIx64 "\n", off);
			return 2;
		}
		for (uint32_t i = 0; i < CHUNK; i += PAGE)
			check_page(off + i, s + i, d + i);
	}
	printf("pattern-check: %" PRIu64 " pages of 4 KiB checked, %" PRIu64
	       " bad\n", size / PAGE, bad);
	return bad ? 1 : 0;
}

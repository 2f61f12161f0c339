// SPDX-License-Identifier: GPL-2.0-only
/*
 * pattern-guest: a bare-metal x86 guest for postcopy tests and the demo.
 *
 * QEMU loads it with -kernel (multiboot) and enters it in 32-bit protected
 * mode, paging off.  From 4 MiB to the end of the RAM the firmware reports
 * available, the first 8 bytes of page number N hold
 *
 *	(uint64_t)N << 32 | number of writes to the page so far
 *
 * and the rest of the page is never written (the firmware may have left
 * data there).  The guest first writes N << 32 into every page, then,
 * forever, increments the count of random pages.  Before each write it
 * checks the word it is about to replace: its own page number.  A
 * migration that loses a page or places it at the wrong address is caught
 * by the guest itself (it prints "BAD" on the serial port and stops) and
 * afterwards by comparing guest RAM with the source's (pattern-check.c):
 * every page of the destination carries its own number and a count no
 * lower than the source's, and the rest of it equals the source's.
 *
 * Command line (multiboot, QEMU's -append), for the benchmark
 * (tests/bench): "delay=N" spins N loop iterations between two writes, for
 * a lower dirty rate (default 0: as fast as the CPU goes); "stride=K"
 * writes only every K-th page after the first fill (default 1), so that
 * what a migration finds dirty is scattered 4 KiB pages, not runs.
 *
 * Serial output (COM1): "pattern-guest: N MiB" when every page holds its
 * number, then a '.' every 65536 writes.  The stack is the 64 KiB below STACK_TOP, the only other
 * memory the guest writes.
 */
#include <stdint.h>

#define MB_MAGIC	0x1badb002
#define MB_FLAGS	0x00000002	/* we want the memory map */
#define MB_BOOT_MAGIC	0x2badb002
#define COM1		0x3f8
#define PAGE		4096u
#define START		(4u << 20)
/* the stack: 64 KiB of conventional memory below 0x90000 */
#define STACK_TOP	0x90000
#define STR(x)		STR2(x)
#define STR2(x)		#x

struct multiboot_info {
	uint32_t flags;
	uint32_t mem_lower;	/* KiB below 1 MiB */
	uint32_t mem_upper;	/* KiB above 1 MiB */
	uint32_t boot_device, cmdline, mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr;	/* flags bit 6 */
};

struct multiboot_mmap {
	uint32_t size;		/* of the rest of the entry */
	uint64_t addr, len;
	uint32_t type;		/* 1: available RAM */
} __attribute__((packed));

__attribute__((section(".multiboot"), aligned(4), used))
static const uint32_t multiboot_header[3] = {
	MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
};

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static void putc_serial(char c)
{
	outb(COM1, c);
}

static void puts_serial(const char *s)
{
	while (*s)
		putc_serial(*s++);
}

static void putu_serial(uint32_t v)
{
	char buf[11];
	int i = 10;

	buf[i] = 0;
	do {
		buf[--i] = '0' + v % 10;
		v /= 10;
	} while (v);
	puts_serial(buf + i);
}

/* The value of "NAME=" in the multiboot command line, or 0 */
static uint32_t cmdline_u32(const struct multiboot_info *mbi, const char *name)
{
	const char *c, *n;
	uint32_t v = 0;

	if (!(mbi->flags & (1 << 2)) || !mbi->cmdline)
		return 0;
	for (c = (const char *)(uintptr_t)mbi->cmdline; *c; c++) {
		if (c != (const char *)(uintptr_t)mbi->cmdline && c[-1] != ' ')
			continue;
		for (n = name; *n && *c == *n; n++, c++)
			;
		if (*n || *c != '=')
			continue;
		for (c++; *c >= '0' && *c <= '9'; c++)
			v = v * 10 + (*c - '0');
		return v;
	}
	return 0;
}

static void halt(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

void pattern_main(uint32_t magic, const struct multiboot_info *mbi);

void pattern_main(uint32_t magic, const struct multiboot_info *mbi)
{
	uint32_t end, npages, delay, stride, x = 2463534242u, writes = 0;

	if (magic != MB_BOOT_MAGIC || !(mbi->flags & (1 << 6))) {
		puts_serial("pattern-guest: not started by a multiboot loader\n");
		halt();
	}
	/*
	 * The available RAM that starts at or below START; the firmware keeps
	 * its tables in reserved ranges at the top of RAM.
	 */
	end = 0;
	for (uint32_t off = 0; off < mbi->mmap_length;) {
		const struct multiboot_mmap *e =
			(const void *)(uintptr_t)(mbi->mmap_addr + off);

		if (e->type == 1 && e->addr <= START && e->addr + e->len > START &&
		    e->addr + e->len <= 0xffffffffu)
			end = e->addr + e->len;
		off += e->size + 4;
	}
	end &= ~(PAGE - 1);
	if (end <= START) {
		puts_serial("pattern-guest: too little RAM\n");
		halt();
	}
	npages = (end - START) / PAGE;
	delay = cmdline_u32(mbi, "delay");
	stride = cmdline_u32(mbi, "stride");
	if (!stride || stride > npages)
		stride = 1;
	for (uint32_t n = START / PAGE; n < START / PAGE + npages; n++) {
		volatile uint32_t *w = (volatile uint32_t *)(uintptr_t)(n * PAGE);

		w[1] = n;
		w[0] = 0;
	}
	puts_serial("pattern-guest: ");
	putu_serial((end - START) >> 20);
	puts_serial(" MiB\n");

	for (;;) {
		volatile uint32_t *w;
		uint32_t n, count, tag;

		/* xorshift32 */
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		n = START / PAGE + x % (npages / stride) * stride;
		w = (volatile uint32_t *)(uintptr_t)(n * PAGE);
		count = w[0];
		tag = w[1];
		if (tag != n || count == 0xffffffffu) {
			puts_serial("\nBAD page ");
			putu_serial(n);
			puts_serial(" holds ");
			putu_serial(tag);
			puts_serial(":");
			putu_serial(count);
			puts_serial("\n");
			halt();
		}
		/* little endian: the low word is the count */
		w[1] = n;
		w[0] = count + 1;
		if (!(++writes & 0xffff))
			putc_serial('.');
		for (uint32_t i = 0; i < delay; i++)
			__asm__ volatile("" : : : "memory");
	}
}

/* The entry point: a stack, then C with the multiboot registers */
__asm__(".globl _start\n"
	"_start:\n"
	"	mov $" STR(STACK_TOP) ", %esp\n"
	"	push %ebx\n"
	"	push %eax\n"
	"	call pattern_main\n"
	"1:	cli\n"
	"	hlt\n"
	"	jmp 1b\n");

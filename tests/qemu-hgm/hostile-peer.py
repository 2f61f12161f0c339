#!/usr/bin/python3
"""A hostile migration peer: crafted and random migration streams against
one side of a postcopy migration of the QEMU fork.

Each case starts one QEMU (machine "none", RAM in a shared memfd, so it
starts in a fraction of a second) and plays the other side itself:

  dest-*  this script is the source: it writes a migration stream (header,
          configuration, OPEN_RETURN_PATH, POSTCOPY_ADVISE, the HGM query,
          the "ram" section, POSTCOPY_LISTEN, then RAM pages in postcopy)
          with one malformed element, and reads the return path;
  src-*   this script is the destination: it reads the source's stream
          and, once the source is in postcopy, sends one malformed page
          request on the return path.

A case passes when the QEMU under attack neither dies by a signal (an
assert() aborts, a wild access segfaults) nor hangs, and reports the
malformed input with the message expected for it; a source keeps its
guest: its QEMU still runs, the migration failed in precopy and is
postcopy-paused (recoverable) after the switch.  "fuzz" runs
--runs random streams (structured: each is a valid prefix followed by
records whose fields are drawn from boundary values, reproducible from
--seed) against destinations, "src-fuzz" --src-runs random return-path
messages against sources; there only the first two conditions apply.

Why not libFuzzer: the stream parsers of QEMU live on global migration
state (the incoming state machine, RAM blocks, userfaultfd), so a harness
linked into one process would have to rebuild most of QEMU's startup; a
generator that drives the real binary tests exactly what a peer reaches.

usage: hostile-peer.py --qemu QEMU [--hugepage 2M|1G] [--mem MIB]
                       [--require-hgm] [--seed N] [--runs N] [--src-runs N]
                       [--race-runs N] CASE...
CASE: dest-discard-past-end dest-discard-wrap dest-discard-name
      dest-page-flags dest-page-xbzrle dest-preempt-page-flags
      dest-hgm-newer-source dest-hgm-unversioned-source
      dest-switch-without-discard src-req-wrap src-req-empty
      src-req-precopy src-req-preempt-len src-hgm-bad-version
      dest-hgm-setup-fails-auto dest-hgm-setup-fails-on
      dest-hgm-setup-monitor-on dest-hgm-setup-monitor-auto
      dest-hgm-early-switch src-hgm-wait dest-preempt-pause-race
      dest-listen-unpackaged dest-listen-without-run
      dest-listen-package-eof dest-package-nested
      fuzz src-fuzz,
      or "all" (every dest-* and src-* case, then both fuzz runs).
--require-hgm: the destination must place its RAM with HGM (else FAIL):
               for the lab, where the kernel has HGM.
Exit status 0 when every case passed; one line per case, then
"N passed, N failed".

Only the Python standard library is used (QMP: hgmqmp.py).
"""

import argparse
import mmap
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from hgmqmp import QMP, guest_ram_file

# migration/savevm.h, migration/savevm.c, migration/ram.h, migration.h
VM_FILE_MAGIC, VM_FILE_VERSION = 0x5145564d, 3
VM_EOF, VM_SECTION_START, VM_SECTION_PART = 0x00, 0x01, 0x02
VM_CONFIGURATION, VM_COMMAND, VM_SECTION_FOOTER = 0x07, 0x08, 0x7e
CMD_OPEN_RETURN_PATH, CMD_PING, CMD_POSTCOPY_ADVISE = 1, 2, 3
CMD_POSTCOPY_LISTEN, CMD_POSTCOPY_RUN, CMD_POSTCOPY_RAM_DISCARD = 4, 5, 6
CMD_PACKAGED, CMD_MAX = 7, 12
FLAG_ZERO, FLAG_PAGE, FLAG_EOS, FLAG_CONTINUE = 0x2, 0x8, 0x10, 0x20
FLAG_XBZRLE = 0x40
RP_SHUT, RP_PONG, RP_REQ_PAGES_ID, RP_REQ_PAGES = 1, 2, 3, 4
# postcopy-hgm.h: "HGQ"/"HGA" and the protocol version in the low byte
HGM_QUERY_MAGIC, HGM_ACK_MAGIC, HGM_VERSION = 0x48475100, 0x48474100, 1
HGM_PING_QUERY = HGM_QUERY_MAGIC | HGM_VERSION
HGM_PONG_ACK = HGM_ACK_MAGIC | HGM_VERSION
HGM_UNVERSIONED_QUERY = 0x48474d51  # "HGMQ", before versions existed
TARGET_PAGE = 4096
RAM_SECTION = 1


def log(msg):
    print(f'[hostile {time.strftime("%H:%M:%S")}] {msg}', flush=True)


class CaseFailed(Exception):
    """A case failed; its QEMU's output stays in its directory."""


# ---------------------------------------------------------------- QEMU

class Qemu:
    """One QEMU under attack: machine "none" with its RAM in memfd mem0."""

    def __init__(self, args, name, incoming, extra=(), backend_extra='',
                 cpus=None):
        self.dir = tempfile.mkdtemp(prefix=f'hostile-{name}-')
        self.size = args.mem << 20
        self.keep = args.keep
        self.qmp_path = f'{self.dir}/qmp'
        self.log_path = f'{self.dir}/stderr'
        backend = f'memory-backend-memfd,id=mem0,size={args.mem}M,share=on'
        if args.hugepage:
            backend += f',hugetlb=on,hugetlbsize={args.hugepage}'
        backend += backend_extra
        cmd = [args.qemu, '-nodefaults', '-no-user-config', '-display', 'none',
               '-machine', 'none,memory-backend=mem0', '-accel', 'tcg',
               '-m', f'{args.mem}M', '-object', backend,
               '-qmp', f'unix:{self.qmp_path},server=on,wait=off',
               *args.qemu_arg, *extra]
        if incoming:
            cmd += ['-incoming', 'defer']
        self.errfile = open(self.log_path, 'w')
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self.errfile,
            stderr=subprocess.STDOUT,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus
            else None)
        deadline = time.time() + 30
        while not os.path.exists(self.qmp_path):
            if self.proc.poll() is not None or time.time() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise CaseFailed('QEMU did not start:\n' + self.stderr())
            time.sleep(0.05)
        self.qmp = QMP(self.qmp_path, timeout=30)
        # A monitor that stops answering (a main loop blocked for good) must
        # fail the case, not hang it
        self.qmp.sock.settimeout(20)

    def fill_ram(self):
        """Random bytes in all of guest RAM (through the memfd), so that
        precopy takes time: zero pages cost the rate limit nothing."""
        with open(guest_ram_file(self.proc.pid), 'r+b') as f:
            m = mmap.mmap(f.fileno(), self.size)
            m[:] = os.urandom(self.size)
            m.close()

    def kill(self):
        """At the end of a case: kill the QEMU if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def remove(self):
        """Forget the output of a case that passed (unless --keep)."""
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def stderr(self):
        with open(self.log_path, errors='replace') as f:
            return f.read()

    def ramblocks(self):
        """{name: (page size, used length)} from "info ramblock"."""
        units = {'B': 1, 'KiB': 1 << 10, 'MiB': 1 << 20, 'GiB': 1 << 30}
        blocks = {}
        for line in self.qmp.hmp('info ramblock').splitlines():
            m = re.match(r'\s*(\S+)\s+(\d+)\s+(\w+)\s+0x[0-9a-f]+\s+'
                         r'0x([0-9a-f]+)', line)
            if m:
                blocks[m.group(1)] = (int(m.group(2)) * units[m.group(3)],
                                      int(m.group(4), 16))
        if not blocks:
            raise CaseFailed('"info ramblock" lists no RAM block')
        return blocks

    def status(self):
        try:
            info = self.qmp.cmd('query-migrate')
        except (OSError, EOFError, RuntimeError):
            return None, None
        return info.get('status'), info.get('error-desc')

    def finish(self, timeout=20):
        """Wait until the QEMU exits or its migration has ended; then quit
        it.  Returns (exit status or None if it was still running, the
        last migration status seen)."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            status, _ = self.status()
            last = status or last
            if status in ('failed', 'postcopy-paused', 'completed'):
                break
            time.sleep(0.2)
        rc = self.proc.poll()
        if rc is None:
            alive = True
            try:
                self.qmp.cmd('quit')
            except (OSError, EOFError, RuntimeError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise CaseFailed(f'QEMU did not quit (migration {last})')
            if time.time() >= deadline:
                raise CaseFailed(f'migration still {last} after {timeout} s:'
                                 ' the peer\'s input neither failed nor'
                                 ' ended it')
        else:
            alive = False
        self.errfile.close()
        return (None if alive else rc), last


def check_no_crash(q, rc):
    err = q.stderr()
    if rc is not None and rc < 0:
        raise CaseFailed(f'QEMU died by signal {-rc} ({q.log_path});'
                         ' its last output:\n'
                         + '\n'.join(err.splitlines()[-8:]))
    if re.search(r'assertion|Assertion|\*\*ERROR\*\*', err):
        raise CaseFailed('QEMU reports an assertion:\n' + err[-2000:])
    return err


# ------------------------------------------------ stream to a destination

def be16(v):
    return struct.pack('>H', v & 0xffff)


def be32(v):
    return struct.pack('>I', v & 0xffffffff)


def be64(v):
    return struct.pack('>Q', v & 0xffffffffffffffff)


def counted(s):
    b = s.encode() if isinstance(s, str) else s
    return bytes([len(b)]) + b


def command(cmd, data=b''):
    return bytes([VM_COMMAND]) + be16(cmd) + be16(len(data)) + data


def footer(section):
    return bytes([VM_SECTION_FOOTER]) + be32(section)


def discard(block, ranges, name=None):
    data = b'\0' + counted(name if name is not None else block) + b'\0'
    for start, length in ranges:
        data += be64(start) + be64(length)
    return command(CMD_POSTCOPY_RAM_DISCARD, data)


def page(block, offset, flags, data=None, cont=False):
    """One RAM record of a section: header, block name, payload."""
    rec = be64(offset | flags | (FLAG_CONTINUE if cont else 0))
    if not cont:
        rec += counted(block)
    if flags & FLAG_ZERO and not flags & FLAG_PAGE:
        rec += b'\0'
    if flags & FLAG_PAGE:
        rec += data if data is not None else bytes(range(256)) * 16
    return rec


def ram_part(records):
    return (bytes([VM_SECTION_PART]) + be32(RAM_SECTION) + b''.join(records)
            + be64(FLAG_EOS) + footer(RAM_SECTION))


class Source:
    """This script as the source of a postcopy migration into @q."""

    def __init__(self, args, q, preempt=False, exit_on_error=True):
        self.args, self.q = args, q
        self.blocks = q.ramblocks()
        self.block = 'mem0'
        self.pagesize, self.length = self.blocks[self.block]
        self.pongs = []
        self.fast = None
        srv = socket.socket()
        srv.bind(('127.0.0.1', 0))
        srv.listen(1)
        self.port = port = srv.getsockname()[1]
        srv.close()
        caps = [{'capability': 'postcopy-ram', 'state': True}]
        if preempt:
            caps.append({'capability': 'postcopy-preempt', 'state': True})
        q.qmp.cmd('migrate-set-capabilities', capabilities=caps)
        q.qmp.cmd('migrate-incoming', uri=f'tcp:127.0.0.1:{port}',
                  **{'exit-on-error': exit_on_error})
        deadline = time.time() + 10
        while True:
            try:
                self.sock = socket.create_connection(('127.0.0.1', port))
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.reader = threading.Thread(target=self._read_rp, daemon=True)
        self.reader.start()

    def _read_rp(self):
        buf = b''
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 4:
                    typ, ln = struct.unpack('>HH', buf[:4])
                    if len(buf) < 4 + ln:
                        break
                    if typ == RP_PONG and ln == 4:
                        self.pongs.append(struct.unpack('>I', buf[4:8])[0])
                    buf = buf[4 + ln:]
        except OSError:
            return

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the destination gave up: its status says why

    def prologue(self, hgm_query=HGM_PING_QUERY):
        """Everything up to the switch: the destination is then advised,
        has its RAM set up (with HGM where it can) and knows section 1 as
        "ram".  @hgm_query: the value of the HGM query PING (None: no
        query).  Returns the bytes."""
        summary = 0
        for psize, _ in self.blocks.values():
            summary |= psize
        s = be32(VM_FILE_MAGIC) + be32(VM_FILE_VERSION)
        s += bytes([VM_CONFIGURATION]) + be32(4) + b'none'
        s += command(CMD_OPEN_RETURN_PATH)
        s += command(CMD_POSTCOPY_ADVISE, be64(summary) + be64(TARGET_PAGE))
        if hgm_query is not None:
            s += command(CMD_PING, be32(hgm_query))
        s += (bytes([VM_SECTION_START]) + be32(RAM_SECTION) + counted('ram')
              + be32(0) + be32(4) + be64(FLAG_EOS) + footer(RAM_SECTION))
        return s

    def wait_pong(self, value, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if value in self.pongs:
                return True
            if self.q.proc.poll() is not None:
                return False
            time.sleep(0.1)
        return False

    def check_hgm(self, ack=HGM_PONG_ACK):
        """With --require-hgm: the destination answered the query with HGM
        (@ack) and places mem0 4 KiB at a time."""
        if not self.args.require_hgm:
            return
        if not self.wait_pong(ack):
            raise CaseFailed(f'the destination did not accept HGM (pongs:'
                             f' {[hex(p) for p in self.pongs]})')

    def open_fast(self):
        """The postcopy-preempt channel: the second connection, which a
        source opens when it switches to postcopy."""
        self.fast = socket.create_connection(('127.0.0.1', self.port))

    def send_fast(self, data):
        try:
            self.fast.sendall(data)
        except OSError:
            pass

    def end(self):
        """No more stream: the destination reads EOF (the return path stays
        open)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        for sock in (self.sock, self.fast):
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except (OSError, AttributeError):
                pass


def wait_running(q, timeout=30):
    """Valid input: the destination runs the guest in postcopy."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, err = q.status()
        try:
            running = q.qmp.cmd('query-status')['running']
        except (OSError, EOFError, RuntimeError):
            running = False
        if status == 'postcopy-active' and running:
            return
        if status in ('failed', None):
            break
        time.sleep(0.2)
    raise CaseFailed(f'the destination is not running in postcopy (migration'
                     f' {status}: {err}):\n' + q.stderr()[-2000:])


def wait_output(q, pattern, timeout=30):
    """Until @pattern is in the QEMU's output or the QEMU has exited."""
    deadline = time.time() + timeout
    while time.time() < deadline and q.proc.poll() is None:
        if re.search(pattern, q.stderr()):
            return
        time.sleep(0.05)


def dest_case(args, name, build, expect, fuzzing=False, preempt=False,
              fast=None, query=HGM_PING_QUERY, check=None):
    """Run a destination, feed it prologue + build(src), check the result.
    @expect is a regular expression its output must match; None: the input
    is valid and the destination must run the guest in postcopy (unless
    @fuzzing: then anything but a crash or a hang is fine).  With @preempt,
    fast(src) returns what to send on the preempt channel after that.
    @query: the HGM query; check(src), if given, checks the answer instead
    of --require-hgm."""
    q = Qemu(args, name, incoming=True)
    src = None
    try:
        src = Source(args, q, preempt)
        src.send(src.prologue(query))
        if check:
            check(src)
        else:
            src.check_hgm()
        if preempt:
            src.open_fast()
        src.send(build(src))
        if fast:
            src.send_fast(fast(src))
            if expect:
                # The fast load thread reads its channel on its own: end
                # the main channel only once it has (a pause at the main
                # channel's end would otherwise close the preempt channel
                # before the thread read what is under test)
                wait_output(q, expect)
        if expect is None and not fuzzing and not check:
            wait_running(q)
        # Nothing more comes: the destination must not wait for ever
        src.end()
        rc, status = q.finish()
    finally:
        if src:
            src.close()
        q.kill()
    err = check_no_crash(q, rc)
    if expect and not re.search(expect, err):
        raise CaseFailed(f'expected /{expect}/ in the destination\'s output'
                         f' (migration {status}, exit {rc}):\n{err[-2000:]}')
    q.remove()
    return f'destination: {status or "exited"} ({rc if rc is not None else "alive"})'


def expect_pong(src, value):
    if not src.wait_pong(value, timeout=60):
        raise CaseFailed(f'expected PONG {value:#x} to the HGM query, got'
                         f' {[hex(p) for p in src.pongs]}')


def packaged(blob):
    return command(CMD_PACKAGED, be32(len(blob))) + blob


def switch():
    """The switch as a source makes it: LISTEN and RUN in a package (the
    destination's main thread reads the package while its listen thread
    goes on reading the stream)."""
    return packaged(command(CMD_POSTCOPY_LISTEN) + command(CMD_POSTCOPY_RUN))


def switch_then(records, discard_first=True):
    """A discard of the first page (as sources send), the switch, then one
    RAM part with @records."""
    def build(src):
        out = b''
        if discard_first:
            out += discard(src.block, [(0, src.pagesize)])
        return out + switch() + ram_part(records(src))
    return build


DEST_CASES = {
    # A discard far past the end of the block: the received bitmap was
    # cleared before the range was checked.
    'dest-discard-past-end': (
        lambda s: discard(s.block, [(1 << 40, 1 << 20)]),
        r'ram_discard_range: invalid range'),
    # A discard whose end wraps around 2^64.
    'dest-discard-wrap': (
        lambda s: discard(s.block, [(TARGET_PAGE, -TARGET_PAGE)]),
        r'ram_discard_range: invalid range'),
    # A block name with a NUL in it, 16 bytes after the NUL: the length of
    # the ranges was computed from strlen(), so one more range was read
    # from the stream after the command.
    'dest-discard-name': (
        lambda s: discard(s.block, [(0, s.pagesize)],
                          name=s.block + '\0' + 'x' * 15),
        r'CMD_POSTCOPY_RAM_DISCARD invalid RAMBlock ID'),
    # Both PAGE and ZERO in one page header, in postcopy.
    'dest-page-flags': (
        switch_then(lambda s: [page(s.block, 0, FLAG_PAGE | FLAG_ZERO)]),
        r'Unknown combination of migration flags'),
    # An XBZRLE page in postcopy.
    'dest-page-xbzrle': (
        switch_then(lambda s: [page(s.block, 0, FLAG_XBZRLE) + b'\0' * 3]),
        r'Unknown combination of migration flags'),
    # The same on the postcopy-preempt channel (raw RAM records, no
    # section): the destination's fast load thread.
    'dest-preempt-page-flags': (
        switch_then(lambda s: []),
        r'Unknown combination of migration flags',
        dict(preempt=True, fast=lambda s: page(
            s.block, 0, FLAG_PAGE | FLAG_ZERO) + be64(FLAG_EOS))),
    # A later fork asks with version 2: an HGM destination answers with
    # version 1, its own; one without HGM echoes the query.
    'dest-hgm-newer-source': (
        lambda s: b'', None,
        dict(query=HGM_QUERY_MAGIC | 2, check=lambda s: expect_pong(
            s, HGM_ACK_MAGIC | 1 if s.args.require_hgm
            else HGM_QUERY_MAGIC | 2))),
    # A fork from before versions existed asks "HGMQ": echoed, so it takes
    # the upstream path.
    'dest-hgm-unversioned-source': (
        lambda s: b'', None,
        dict(query=HGM_UNVERSIONED_QUERY, check=lambda s: expect_pong(
            s, HGM_UNVERSIONED_QUERY))),
    # No discard before the switch (a source with no dirty page): the
    # destination left LISTENING for DISCARD, loaded pages with the precopy
    # code and refused RUN.  Valid input: the destination must run.
    'dest-switch-without-discard': (
        switch_then(lambda s: [page(s.block, 0, FLAG_ZERO)],
                    discard_first=False),
        None),
}


# ------------------------------------------- HGM setup that cannot work

def hog_hugepages(size, keep_free):
    """Allocate every free hugepage of @size bytes but @keep_free, in a
    hugetlb memfd; returns its fd (close it to free them), or None if
    there is nothing to take."""
    d = f'/sys/kernel/mm/hugepages/hugepages-{size >> 10}kB'
    free = int(open(f'{d}/free_hugepages').read())
    if free <= keep_free:
        return None
    flag = {2 << 20: os.MFD_HUGE_2MB, 1 << 30: os.MFD_HUGE_1GB}[size]
    fd = os.memfd_create('hostile-peer-hog', os.MFD_HUGETLB | flag)
    os.ftruncate(fd, (free - keep_free) * size)
    os.posix_fallocate(fd, 0, (free - keep_free) * size)
    return fd


def end_clean(q, src):
    """A case that passed: the stream ends, the QEMU quits without a crash
    and its output goes."""
    src.end()
    q.finish()
    check_no_crash(q, q.proc.returncode)
    q.remove()


def hgm_info(q):
    return q.qmp.cmd('query-postcopy-hgm')


def hgm_setup_failure(args, name, mode):
    """The destination's RAM (reserve=off) cannot be populated: all but
    one free hugepage are taken.  Under auto the query must say "unused"
    and why, under on "failed", and query-migrate must give the reason.
    On a kernel without HGM the reason is that instead (still "unused"
    or "failed", never "setup" for ever)."""
    if not args.hugepage:
        return None
    hpsize = {'2M': 2 << 20, '1G': 1 << 30}[args.hugepage]
    q = Qemu(args, name, incoming=True, backend_extra=',reserve=off')
    hog = src = None
    try:
        q.qmp.cmd('migrate-set-parameters', **{'postcopy-hgm': mode})
        hog = hog_hugepages(hpsize, 1)
        src = Source(args, q, exit_on_error=False)
        src.send(src.prologue())
        want = 'unused' if mode == 'auto' else 'failed'
        deadline = time.time() + 60
        while True:
            info = hgm_info(q)
            if info['status'] == want or time.time() > deadline:
                break
            time.sleep(0.2)
        reason = info.get('reason', '')
        if info['status'] != want or not reason:
            raise CaseFailed(f'query-postcopy-hgm: {info}, expected status'
                             f' {want} with a reason')
        if args.require_hgm and 'allocate' not in reason:
            raise CaseFailed(f'reason {reason!r}: expected the allocation'
                             ' failure')
        if mode == 'auto':
            # The query is answered with an echo: no HGM, upstream postcopy
            expect_pong(src, HGM_PING_QUERY)
            src.send(discard(src.block, [(0, src.pagesize)]))
            time.sleep(1)
            info = hgm_info(q)
            if info['status'] != 'unused':
                raise CaseFailed(f'after the first discard: {info}')
            detail = f'unused: {reason}'
        else:
            status, err = q.status()
            if status != 'failed' or reason not in (err or ''):
                raise CaseFailed(f'query-migrate: {status}, error {err!r};'
                                 f' expected failed with {reason!r}')
            detail = f'failed, query-migrate: {err}'
        end_clean(q, src)
        return f'destination {detail}'
    finally:
        if src:
            src.close()
        if hog is not None:
            os.close(hog)
        q.kill()


def slow_setup_destination(args, name):
    """A destination whose HGM setup takes seconds in the lab (256 MiB of
    2 MiB pages, 2 GiB of 1 GiB pages to zero), or None without
    --require-hgm and --hugepage."""
    if not args.require_hgm or not args.hugepage:
        return None
    a = argparse.Namespace(**vars(args))
    a.mem = {'2M': 256, '1G': 2048}[args.hugepage]
    return Qemu(a, name, incoming=True)


def hgm_setup_monitor(args, name, mode):
    """The destination allocates its RAM for HGM beside precopy: its
    monitor answers during the setup and shows the progress, and the
    source's query gets its answer only at the end.  RAM is large enough
    (256 MiB of 2 MiB pages, 2 GiB of 1 GiB pages) that zeroing it takes
    seconds in the lab.  Before, postcopy-hgm=on allocated all of it in
    POSTCOPY_ADVISE under the BQL: the monitor first answered "active"."""
    q = slow_setup_destination(args, name)
    if not q:
        return None
    src = None
    try:
        q.qmp.cmd('migrate-set-parameters', **{'postcopy-hgm': mode})
        src = Source(args, q)
        src.send(src.prologue())
        seen = []
        deadline = time.time() + 240
        while time.time() < deadline:
            # The answer is sent only after the setup is done, so one seen
            # before a query that says "setup" came too early
            answered = bool(src.pongs)
            t = time.time()
            info = hgm_info(q)
            took = time.time() - t
            st = info['status']
            if st == 'setup':
                alloc = sum(b['allocated'] for b in info['blocks'])
                if answered:
                    raise CaseFailed(f'the source\'s query was answered'
                                     f' ({[hex(p) for p in src.pongs]})'
                                     ' before the setup was done')
                seen.append((alloc, took))
            elif st in ('active', 'unused', 'failed'):
                break
            time.sleep(0.05)
        if info['status'] != 'active':
            raise CaseFailed(f'query-postcopy-hgm: {info}')
        if not seen:
            raise CaseFailed('query-postcopy-hgm never answered "setup":'
                             ' the monitor was blocked while the hugepages'
                             ' were allocated')
        total = info['blocks'][0]['hugepages'] * info['blocks'][0]['page-size']
        if info['blocks'][0]['allocated'] != total:
            raise CaseFailed(f'allocated {info["blocks"][0]["allocated"]}'
                             f' of {total} after the setup')
        expect_pong(src, HGM_PONG_ACK)
        src.send(discard(src.block, [(0, src.pagesize)]) + switch())
        wait_running(q)
        end_clean(q, src)
        return (f'{len(seen)} answers during the setup (longest'
                f' {max(t for _, t in seen) * 1000:.0f} ms, allocated'
                f' {seen[0][0] >> 20} .. {seen[-1][0] >> 20} of'
                f' {total >> 20} MiB)')
    finally:
        if src:
            src.close()
        q.kill()


def hgm_early_switch(args, name):
    """A source that does not ask for HGM (an upstream QEMU) switches to
    postcopy at once, while the destination (auto) still allocates its
    RAM: the destination waits for its setup at the switch without
    blocking the main loop (the monitor answers "setup" meanwhile), then
    runs the guest in postcopy with HGM.  Before, it joined the setup
    thread under the BQL there, and the monitor went dead."""
    q = slow_setup_destination(args, name)
    if not q:
        return None
    src = None
    try:
        q.qmp.cmd('migrate-set-parameters', **{'postcopy-hgm': 'auto'})
        src = Source(args, q)
        src.send(src.prologue(None))
        src.send(discard(src.block, [(0, src.pagesize)]) + switch())
        seen = 0
        deadline = time.time() + 240
        while time.time() < deadline:
            info = hgm_info(q)
            if info['status'] != 'setup' and seen:
                break
            seen += info['status'] == 'setup'
            time.sleep(0.05)
        if not seen:
            raise CaseFailed('query-postcopy-hgm never answered "setup"'
                             ' while the switch waited for the setup')
        wait_running(q, timeout=120)
        info = hgm_info(q)
        if info['status'] != 'active' or info['source-agreed']:
            raise CaseFailed(f'query-postcopy-hgm: {info}; expected active,'
                             ' source not agreed')
        end_clean(q, src)
        return f'{seen} answers "setup" during the switch, then active'
    finally:
        if src:
            src.close()
        q.kill()


def monitor_answers(q, wait=0.5):
    """After @wait s: the QEMU's monitor answers within 5 s (or the QEMU
    has exited)."""
    time.sleep(wait)
    q.qmp.sock.settimeout(5)
    try:
        q.qmp.cmd('query-status')
    except (OSError, EOFError, RuntimeError) as e:
        if q.proc.poll() is None:
            raise CaseFailed('the monitor does not answer while the stream'
                             f' is open ({e!r})') from None
    q.qmp.sock.settimeout(20)


def listen_case(args, name, switch_bytes, expect):
    """A switch in another shape than a source's LISTEN + RUN package,
    then one RAM part on the main channel.  From LISTEN on, the
    destination's listen thread reads the main channel: its main thread
    must have stopped reading it, or both read one stream at once (and the
    main thread, blocked in a read with the BQL held, silences the
    monitor).  The monitor must answer while the stream is still open;
    after its end the output must match @expect."""
    q = Qemu(args, name, incoming=True)
    src = None
    try:
        src = Source(args, q)
        src.send(src.prologue(None) + discard(src.block, [(0, src.pagesize)])
                 + switch_bytes)
        monitor_answers(q)
        src.send(ram_part([page(src.block, 0, FLAG_ZERO)]))
        monitor_answers(q)
        src.end()
        rc, status = q.finish()
    finally:
        if src:
            src.close()
        q.kill()
    err = check_no_crash(q, rc)
    if not re.search(expect, err):
        raise CaseFailed(f'expected /{expect}/ in the destination\'s output'
                         f' (migration {status}, exit {rc}):\n{err[-2000:]}')
    q.remove()
    return f'destination: {status or "exited"} ({rc if rc is not None else "alive"})'


def preempt_pause_race(args, name):
    """The main channel ends right after the switch, with the
    postcopy-preempt channel open: the destination pauses (closing the
    preempt channel) while its fast load thread, just started at LISTEN,
    may not have taken its mutex yet.  It then read the channel the pause
    had closed: a segfault (ram_load_postcopy() on a NULL QEMUFile).  The
    race is timing: --race-runs destinations, each on one CPU (where
    the thread loses the race in a few runs in a hundred), try it.
    Each must pause or fail, not crash."""
    outcomes = {}
    cpu = min(os.sched_getaffinity(0))
    for i in range(args.race_runs):
        q = Qemu(args, f'{name}-{i}', incoming=True, cpus={cpu})
        src = None
        try:
            src = Source(args, q, preempt=True)
            src.send(src.prologue(None))
            src.open_fast()
            src.send(discard(src.block, [(0, src.pagesize)]) + switch()
                     + ram_part([]))
            src.end()
            rc, status = q.finish()
            check_no_crash(q, rc)
            outcomes[status] = outcomes.get(status, 0) + 1
            q.remove()
        except CaseFailed as e:
            raise CaseFailed(f'run {i + 1} of {args.race_runs}: {e}') from None
        finally:
            if src:
                src.close()
            q.kill()
    return 'outcomes: ' + ', '.join(f'{n} {s or "exited"}' for s, n in
                                    sorted(outcomes.items(), key=str))


SPECIAL_CASES = {
    'dest-hgm-setup-fails-auto': lambda args: hgm_setup_failure(
        args, 'dest-hgm-setup-fails-auto', 'auto'),
    'dest-hgm-setup-fails-on': lambda args: hgm_setup_failure(
        args, 'dest-hgm-setup-fails-on', 'on'),
    'dest-hgm-setup-monitor-on': lambda args: hgm_setup_monitor(
        args, 'dest-hgm-setup-monitor-on', 'on'),
    'dest-hgm-setup-monitor-auto': lambda args: hgm_setup_monitor(
        args, 'dest-hgm-setup-monitor-auto', 'auto'),
    'dest-hgm-early-switch': lambda args: hgm_early_switch(
        args, 'dest-hgm-early-switch'),
    'src-hgm-wait': lambda args: src_hgm_wait(args, 'src-hgm-wait'),
    'dest-preempt-pause-race': lambda args: preempt_pause_race(
        args, 'dest-preempt-pause-race'),
    # LISTEN outside a package: the main thread read on after it.
    'dest-listen-unpackaged': lambda args: listen_case(
        args, 'dest-listen-unpackaged', command(CMD_POSTCOPY_LISTEN),
        r'CMD_POSTCOPY_LISTEN outside CMD_PACKAGED'),
    # A package with LISTEN but no RUN: reading past its end fails the
    # main thread while the listen thread runs.  That freed the incoming
    # state the listen and preempt threads were using.
    'dest-listen-without-run': lambda args: listen_case(
        args, 'dest-listen-without-run', packaged(command(
            CMD_POSTCOPY_LISTEN)), r'load of migration failed'),
    # The same package ended by an EOF marker: the main thread read on
    # after it.  The listen thread alone owns the main channel then; it
    # fails at its end (the guest never ran).
    'dest-listen-package-eof': lambda args: listen_case(
        args, 'dest-listen-package-eof', packaged(command(
            CMD_POSTCOPY_LISTEN) + bytes([VM_EOF])),
        r'postcopy_ram_listen_thread: loadvm failed'),
    # The switch package inside a package: the inner one's contents were
    # read from the main channel, by the main thread.
    'dest-package-nested': lambda args: listen_case(
        args, 'dest-package-nested', packaged(switch()),
        r'CMD_PACKAGED inside CMD_PACKAGED'),
}


# ------------------------------------------------------------- fuzzing

def boundary(rng, length):
    return rng.choice([0, TARGET_PAGE, length - TARGET_PAGE, length,
                       length + TARGET_PAGE, 1 << 40, 1 << 63,
                       (1 << 64) - TARGET_PAGE,
                       rng.randrange(0, max(length, 1), TARGET_PAGE),
                       rng.getrandbits(64)])


def fuzz_record(rng, src):
    """A random element of the stream after LISTEN."""
    kind = rng.randrange(6)
    if kind < 3:  # RAM records in a section part
        recs = []
        for i in range(rng.randint(1, 4)):
            flags = rng.choice([FLAG_ZERO, FLAG_PAGE, FLAG_PAGE | FLAG_ZERO,
                                FLAG_XBZRLE, FLAG_EOS | FLAG_PAGE, 0x4,
                                0x80, 0x200, rng.getrandbits(12) & ~0xfe1])
            off = boundary(rng, src.length) & ~0xfff
            name = rng.choice([src.block, src.block, '', 'nosuch',
                               'x' * 255])
            recs.append(page(name, off, flags, cont=(i and rng.random() < .5)))
        return ram_part(recs)
    if kind == 3:  # a discard, in the wrong state after LISTEN too
        return discard(src.block, [(boundary(rng, src.length),
                                    boundary(rng, src.length))])
    if kind == 4:  # a command with a random payload
        cmd = rng.randrange(CMD_MAX + 2)
        return command(cmd, rng.randbytes(rng.choice([0, 1, 4, 16, 300])))
    # raw bytes
    return rng.randbytes(rng.randint(1, 64))


def seeded_runs(name, seed, runs, option, what, one):
    """one(i, rng) for runs i = 0..@runs-1, each from random seed
    @seed + i; collects the failures so that every seed is tried."""
    failures = []
    for i in range(runs):
        try:
            one(i, random.Random(seed + i))
        except CaseFailed as e:
            failures.append(f'seed {seed + i}: {e}')
            log(f'{name} run {i} (seed {seed + i}): FAIL: {e}')
    if failures:
        raise CaseFailed(f'{len(failures)} of {runs} runs failed; reproduce'
                         f' with --seed S {option} 1:\n' +
                         '\n'.join(failures))
    return f'{runs} {what} (seeds {seed}..{seed + runs - 1})'


def fuzz(args, seed, runs):
    def one(i, rng):
        before_listen = rng.random() < 0.2

        def build(src):
            out = b''
            if before_listen:
                out += discard(src.block, [(boundary(rng, src.length),
                                            boundary(rng, src.length))])
            out += switch()
            for _ in range(rng.randint(1, 5)):
                out += fuzz_record(rng, src)
            return out
        dest_case(args, f'fuzz{i}', build, None, fuzzing=True)
    return seeded_runs('fuzz', seed, runs, '--runs', 'random streams', one)


# ------------------------------------------------- requests to a source

class Destination:
    """This script as the destination of a postcopy migration from @q:
    it accepts every connection (main and preempt channels), reads and
    drops what the source sends, and writes return-path messages."""

    def __init__(self, args, q, preempt, hgm='off'):
        self.q = q
        self.srv = socket.socket()
        self.srv.bind(('127.0.0.1', 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()
        caps = [{'capability': 'postcopy-ram', 'state': True}]
        if preempt:
            caps.append({'capability': 'postcopy-preempt', 'state': True})
        q.qmp.cmd('migrate-set-capabilities', capabilities=caps)
        # The source must not wait for an HGM answer this peer never gives
        # (unless the case answers); slow enough that postcopy lasts while
        # the test sends requests.
        q.qmp.cmd('migrate-set-parameters', **{
            'postcopy-hgm': hgm, 'max-bandwidth': 1 << 20,
            'max-postcopy-bandwidth': 1 << 20})

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            if not self.conns:
                # A source with postcopy-preempt waits for one PONG on the
                # main channel before it opens the preempt channel
                c.sendall(be16(RP_PONG) + be16(4) + be32(1))
            self.conns.append(c)
            threading.Thread(target=self._drain, args=(c,),
                             daemon=True).start()

    @staticmethod
    def _drain(c):
        try:
            while c.recv(1 << 20):
                pass
        except OSError:
            pass

    def migrate(self, postcopy=True):
        self.q.fill_ram()
        self.q.qmp.cmd('migrate', uri=f'tcp:127.0.0.1:{self.port}')
        deadline = time.time() + 30
        want = 'postcopy-active' if postcopy else 'active'
        while time.time() < deadline:
            status, err = self.q.status()
            if status == want and self.conns:
                return
            if status == 'active' and postcopy:
                try:
                    self.q.qmp.cmd('migrate-start-postcopy')
                except RuntimeError:
                    pass
            if status in ('failed', 'completed', None):
                raise CaseFailed(f'source migration {status}: {err}')
            time.sleep(0.1)
        raise CaseFailed(f'source never reached {want} (still {status}):\n'
                         + self.q.stderr()[-2000:])

    def send(self, msg):
        try:
            self.conns[0].sendall(msg)
        except OSError:
            pass  # the source gave up: its status says why

    def request(self, block, start, length):
        data = be64(start) + be32(length) + counted(block)
        self.send(be16(RP_REQ_PAGES_ID) + be16(len(data)) + data)

    def close(self):
        self.srv.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def src_fuzz_message(rng, length):
    """A random return-path message: mostly page requests, with fields
    drawn from boundary values; a payload that fits its type four times
    in five, a length that does not match it one time in five."""
    typ = rng.choice([RP_REQ_PAGES_ID, RP_REQ_PAGES_ID, RP_REQ_PAGES,
                      RP_REQ_PAGES, 0, RP_SHUT, RP_PONG, 5, 6, 7, 8, 0xffff])
    start = rng.choice([boundary(rng, length), (1 << 64) - TARGET_PAGE,
                        rng.randrange(0, length, TARGET_PAGE)])
    size = rng.choice([boundary(rng, length), TARGET_PAGE, 2 * TARGET_PAGE,
                       0x200000, 0xffffffff]) & 0xffffffff
    name = counted(rng.choice(['mem0', 'mem0', '', 'nosuch', 'x' * 255]))
    shaped = {RP_REQ_PAGES_ID: be64(start) + be32(size) + name,
              RP_REQ_PAGES: be64(start) + be32(size),
              RP_SHUT: be32(rng.choice([0, 1])),
              RP_PONG: be32(rng.choice([1, HGM_PONG_ACK, HGM_PING_QUERY])),
              5: name, 6: be32(rng.choice([0, 1, 0x4f4b4159])), 7: b''}
    if typ in shaped and rng.random() < 0.8:
        data = shaped[typ]
    else:
        data = rng.randbytes(rng.choice([0, 3, 12, 300, 600]))
    if rng.random() < 0.2:
        return be16(typ) + be16(rng.getrandbits(16)) + data
    return be16(typ) + be16(len(data)) + data


def src_fuzz(args, seed, runs):
    """Random return-path messages into sources in postcopy (or still in
    precopy): anything but a crash, a hang or an exit is fine."""
    def one(i, rng):
        postcopy = rng.random() < 0.8

        def send(dst):
            # The first message the source refuses ends its return path:
            # valid requests first, so that the random one meets a source
            # that has served some
            for _ in range(rng.randint(0, 3)):
                dst.request('mem0', rng.randrange(0, args.mem << 20,
                                                  TARGET_PAGE), TARGET_PAGE)
            dst.send(src_fuzz_message(rng, args.mem << 20))
        src_case(args, f'src-fuzz{i}', send, None, postcopy=postcopy)
    return seeded_runs('src-fuzz', seed, runs, '--src-runs',
                       'random return paths', one)


def src_case(args, name, send, expect, postcopy=True, preempt=False,
             hgm='off'):
    """Run a source into this script, send(dst) once it is in postcopy (or
    precopy), check the result: @expect is a regular expression its
    migration's error must match; None (fuzzing): only that the source
    neither died nor hangs."""
    q = Qemu(args, name, incoming=False)
    dst = None
    try:
        dst = Destination(args, q, preempt, hgm)
        dst.migrate(postcopy)
        send(dst)
        if expect is None:
            time.sleep(2)
            status, err = q.status()
            rc = q.proc.poll()
            if rc is None and status is None:
                raise CaseFailed('the source\'s monitor does not answer')
            if rc is None:
                try:
                    q.qmp.cmd('quit')
                except (OSError, EOFError, RuntimeError):
                    pass
                q.proc.wait(10)
            q.errfile.close()
            check_no_crash(q, q.proc.returncode)
            if rc is not None:
                raise CaseFailed(f'the source exited ({rc})')
            q.remove()
            return f'source: {status}'
        deadline = time.time() + 20
        status = err = None
        while time.time() < deadline:
            status, err = q.status()
            if status in ('failed', 'postcopy-paused', None):
                break
            time.sleep(0.1)
        rc = q.proc.poll()
        if rc is None and status not in ('failed', 'postcopy-paused'):
            raise CaseFailed(f'source still {status} 20 s after the'
                             ' request: it was not refused')
        if rc is None:
            try:
                q.qmp.cmd('quit')
            except (OSError, EOFError, RuntimeError):
                pass
            q.proc.wait(10)
        q.errfile.close()
        check_no_crash(q, q.proc.returncode if rc is not None else None)
        if rc is not None:
            raise CaseFailed(f'the source exited ({rc}): it must keep the'
                             ' guest')
        if not err or not re.search(expect, err):
            raise CaseFailed(f'source migration {status}, error-desc'
                             f' {err!r}, expected /{expect}/')
        # Precopy fails with the guest still on the source; postcopy
        # pauses, so that it can be recovered
        want = 'postcopy-paused' if postcopy else 'failed'
        if status != want:
            raise CaseFailed(f'source migration {status}, expected {want}'
                             f' ({err})')
        q.remove()
        return f'source: {status}: {err}'
    finally:
        if dst:
            dst.close()
        q.kill()


def src_hgm_wait(args, name):
    """A source that asked for HGM waits for the answer before it switches
    to postcopy, and says so: query-migrate shows "waiting", and
    migrate-start-postcopy explains the wait.  Then the answer comes and
    the switch follows."""
    q = Qemu(args, name, incoming=False)
    dst = None
    try:
        dst = Destination(args, q, False, 'auto')
        q.fill_ram()
        q.qmp.cmd('migrate', uri=f'tcp:127.0.0.1:{dst.port}')
        deadline = time.time() + 30
        while time.time() < deadline:
            info = q.qmp.cmd('query-migrate')
            if info.get('status') == 'active' and dst.conns:
                break
            time.sleep(0.1)
        if info.get('postcopy-hgm') != 'waiting':
            raise CaseFailed(f'query-migrate: {info.get("status")},'
                             f' postcopy-hgm {info.get("postcopy-hgm")!r};'
                             ' expected waiting')
        said = q.qmp.hmp('migrate_start_postcopy')
        if 'destination has allocated the hugepages' not in said:
            raise CaseFailed(f'migrate_start_postcopy said {said!r}: not why'
                             ' the switch waits')
        time.sleep(2)
        info = q.qmp.cmd('query-migrate')
        if info.get('status') != 'active':
            raise CaseFailed(f'the source switched ({info.get("status")})'
                             ' without the answer to its HGM query')
        # The answer: this destination places hugetlb RAM 4 KiB at a time
        dst.send(be16(RP_PONG) + be16(4) + be32(HGM_PONG_ACK))
        deadline = time.time() + 20
        while time.time() < deadline:
            info = q.qmp.cmd('query-migrate')
            if info.get('status') != 'active':
                break
            time.sleep(0.1)
        if (info.get('status') != 'postcopy-active' or
                info.get('postcopy-hgm') != 'accepted'):
            raise CaseFailed(f'after the answer: query-migrate'
                             f' {info.get("status")}, postcopy-hgm'
                             f' {info.get("postcopy-hgm")!r}; expected'
                             ' postcopy-active, accepted')
        q.qmp.cmd('quit')
        q.proc.wait(10)
        q.errfile.close()
        check_no_crash(q, q.proc.returncode)
        q.remove()
        return 'waiting, then postcopy-active with accepted'
    finally:
        if dst:
            dst.close()
        q.kill()


def req(start, length):
    return lambda dst: dst.request('mem0', start, length)


SRC_CASES = {
    # start near 2^64: start + len - 1 wraps into the block.
    'src-req-wrap': dict(send=req((1 << 64) - TARGET_PAGE, 2 * TARGET_PAGE),
                         expect=r'request overrun'),
    'src-req-empty': dict(send=req(TARGET_PAGE, 0),
                          expect=r'request overrun'),
    # Before postcopy: RAM may not be set up to answer.
    'src-req-precopy': dict(send=req(0, TARGET_PAGE), postcopy=False,
                            expect=r'before postcopy started'),
    # With preempt, a request that is not whole host pages (hugepages
    # only; on 4 KiB RAM every aligned length is whole pages).
    'src-req-preempt-len': dict(send=req(0, TARGET_PAGE), preempt=True,
                                expect=r'is not a multiple of the page size'),
    # An answer to the HGM query with a version the source did not offer:
    # a broken destination, fails the migration even under auto.
    'src-hgm-bad-version': dict(
        send=lambda dst: dst.send(be16(RP_PONG) + be16(4) +
                                  be32(HGM_ACK_MAGIC | (HGM_VERSION + 1))),
        postcopy=False, hgm='auto', expect=r'protocol version 2'),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--hugepage', choices=['2M', '1G'])
    ap.add_argument('--mem', type=int, default=0,
                    help='guest RAM in MiB (default: 64, or 2 hugepages)')
    ap.add_argument('--require-hgm', action='store_true')
    ap.add_argument('--keep', action='store_true',
                    help='keep the output of QEMUs that passed too')
    ap.add_argument('--qemu-arg', action='append', default=[],
                    help='one more argument for QEMU (e.g. -trace ...)')
    ap.add_argument('--seed', type=int, default=int(time.time()))
    ap.add_argument('--runs', type=int, default=20,
                    help='random streams of "fuzz" (about 0.5 s each)')
    ap.add_argument('--src-runs', type=int, default=5,
                    help='random return paths of "src-fuzz" (about 3 s each)')
    ap.add_argument('--race-runs', type=int, default=40,
                    help='destinations of dest-preempt-pause-race'
                    ' (about 0.3 s each)')
    ap.add_argument('cases', nargs='+')
    args = ap.parse_args()
    if not args.mem:
        args.mem = {'2M': 4, '1G': 2048}.get(args.hugepage, 64)
    cases = []
    for c in args.cases:
        if c == 'all':
            cases += (list(DEST_CASES) + list(SPECIAL_CASES) + list(SRC_CASES)
                      + ['fuzz', 'src-fuzz'])
        elif (c in DEST_CASES or c in SRC_CASES or c in SPECIAL_CASES or
              c in ('fuzz', 'src-fuzz')):
            cases.append(c)
        else:
            ap.error(f'unknown case {c}')
    passed = failed = skipped = 0
    for c in cases:
        log(f'--- {c}')
        try:
            if c in DEST_CASES:
                build, expect, *opts = DEST_CASES[c]
                detail = dest_case(args, c, build, expect,
                                   **(opts[0] if opts else {}))
            elif c in SPECIAL_CASES:
                detail = SPECIAL_CASES[c](args)
                if detail is None:
                    print(f'=== {c}: SKIP (needs --hugepage, and'
                          ' --require-hgm for dest-hgm-setup-monitor-*'
                          ' and dest-hgm-early-switch)')
                    skipped += 1
                    continue
            elif c in SRC_CASES:
                kw = SRC_CASES[c]
                if kw.get('preempt') and not args.hugepage:
                    print(f'=== {c}: SKIP (needs --hugepage: on 4 KiB RAM'
                          ' every aligned request is whole pages)')
                    skipped += 1
                    continue
                detail = src_case(args, c, **kw)
            else:
                detail = (fuzz(args, args.seed, args.runs) if c == 'fuzz'
                          else src_fuzz(args, args.seed, args.src_runs))
        except CaseFailed as e:
            print(f'=== {c}: FAIL: {e}', flush=True)
            failed += 1
            continue
        print(f'=== {c}: PASS ({detail})', flush=True)
        passed += 1
    print(f'{passed} passed, {failed} failed, {skipped} skipped')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

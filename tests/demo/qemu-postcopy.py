#!/usr/bin/python3
"""Postcopy migration of a running guest backed by hugetlb pages, with HGM
and with the upstream path, fault latency side by side.

For each page size (1 GiB: 1 GiB of guest RAM; 2 MiB: 256 MiB) and each
path, a source and a destination QEMU (our fork) run on this host with
guest RAM in a shared hugetlb memfd.  The guest (tests/guest/pattern-guest)
writes a self-checking pattern to random 4 KiB pages of all its RAM, all
the time.  After two seconds of throttled precopy the migration switches
to postcopy, and the guest goes on running on the destination, faulting on
pages that have not arrived.  The two paths differ only in the
destination's postcopy-hgm parameter:

  upstream  postcopy-hgm=off: a fault waits for its whole hugepage, which
            is placed at once (what upstream QEMU and Linux do);
  hgm       postcopy-hgm=auto: the destination asks for and places the
            faulting 4 KiB page and maps the pages of a hugepage as they
            arrive; hugepages are collapsed back when postcopy ends.

Latency is the destination's own measurement (query-postcopy-hgm): from the
fault to the page being mapped, once per 4 KiB page with HGM and once per
hugepage without.  Afterwards both VMs are stopped and every byte of guest
RAM is checked (pattern-check) against the source's; the guest checks each
page it writes as well.  Any failure exits 1.

usage (as root, inside the lab):
  qemu-postcopy.py --qemu QEMU --guest PATTERN_GUEST --check PATTERN_CHECK
                   [--fw DIR] [--accel tcg|kvm] [--sizes 1G,2M]
"""

import argparse
import mmap
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'qemu-hgm'))
from hgmqmp import QMP, guest_ram_file, smaps_hugetlb, wait_status  # noqa: E402

RAM_MIB = {'1G': 1024, '2M': 256}
MADV_SPLIT = 26


def log(msg):
    print(f'[qemu-postcopy {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def fmt_ns(ns):
    if ns >= 1e9:
        return f'{ns / 1e9:.2f}s'
    if ns >= 1e6:
        return f'{ns / 1e6:.1f}ms'
    return f'{ns / 1e3:.0f}us'


class Guest:
    def __init__(self, args, name, page, mem_mib, extra):
        self.name = name
        self.serial = f'/tmp/demo-{name}.serial'
        qmp_path = f'/tmp/demo-{name}.qmp'
        for path in (self.serial, qmp_path):
            if os.path.exists(path):
                os.unlink(path)
        size = f'{mem_mib}M'
        cmd = [args.qemu, '-nodefaults', '-no-user-config', '-display', 'none',
               '-L', args.fw, '-machine', 'pc,memory-backend=mem',
               '-accel', args.accel,
               '-cpu', 'host' if args.accel == 'kvm' else 'max',
               '-m', size,
               '-object', f'memory-backend-memfd,id=mem,size={size},'
                          f'hugetlb=on,hugetlbsize={page},share=on',
               '-kernel', args.guest,
               # kvmvapic would patch its ROM in guest RAM on the
               # destination under KVM, which the memory check would see
               '-global', 'apic-common.vapic=off',
               '-serial', f'file:{self.serial}',
               '-qmp', f'unix:{qmp_path},server=on,wait=off'] + extra
        self.stderr = open(f'/tmp/demo-{name}.stderr', 'w+b')
        self.proc = subprocess.Popen(cmd, stdout=self.stderr,
                                     stderr=subprocess.STDOUT)
        self.qmp = QMP(qmp_path)

    def output(self):
        try:
            with open(self.serial, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def quit(self):
        try:
            self.qmp.cmd('quit')
        except Exception:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors='replace').strip()
        if text:
            log(f'{self.name} stderr: {text[-2000:]}')


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise TimeoutError(f'{what} after {timeout} s')


def hgm_unusable(page):
    """Why this host cannot place hugetlb pages of this size with HGM, or
    None if it can (MADV_SPLIT works on a shared hugetlb mapping)."""
    flags = os.MFD_HUGETLB | (os.MFD_HUGE_1GB if page == '1G'
                              else os.MFD_HUGE_2MB)
    size = (1 << 30) if page == '1G' else (2 << 20)
    fd = os.memfd_create('qemu-postcopy-probe', flags)
    try:
        os.ftruncate(fd, size)
        try:
            m = mmap.mmap(fd, size)
        except OSError as e:
            return f'cannot map a {page} hugetlb page: {e.strerror}'
        try:
            m.madvise(MADV_SPLIT)
        except OSError:
            return 'kernel without HGM'
        finally:
            m.close()
        return None
    finally:
        os.close(fd)


def migrate(args, page, path):
    """One migration; returns a dict for the table, raises on failure."""
    mem_mib = RAM_MIB[page]
    hgm = path == 'hgm'
    dst_extra = ['-incoming', 'defer']
    if not hgm:
        dst_extra += ['-global', 'migration.postcopy-hgm=off']
    src = Guest(args, f'{page}-{path}-src', page, mem_mib, [])
    dst = Guest(args, f'{page}-{path}-dst', page, mem_mib, dst_extra)
    try:
        # The guest runs and has written to many pages
        wait_for(lambda: src.output().count('.') >= 4, 600,
                 'the guest wrote no pattern')
        log(f'{page} {path}: guest running, starting the migration')
        caps = [{'capability': 'postcopy-ram', 'state': True}]
        for q in (src.qmp, dst.qmp):
            q.cmd('migrate-set-capabilities', capabilities=caps)
        src.qmp.cmd('migrate-set-parameters', **{'max-bandwidth': 16 << 20})
        sock = f'/tmp/demo-{page}-{path}.sock'
        dst.qmp.cmd('migrate-incoming', uri=f'unix:{sock}')
        src.qmp.cmd('migrate', uri=f'unix:{sock}')
        wait_status(src.qmp, ('active',), 120)
        time.sleep(2)
        t0 = time.time()
        src.qmp.cmd('migrate-start-postcopy')
        wait_status(src.qmp, ('postcopy-active', 'completed'), 600)
        log(f'{page} {path}: postcopy started')
        # Postcopy at full speed, as a real migration would
        src.qmp.cmd('migrate-set-parameters',
                    **{'max-postcopy-bandwidth': 0})
        # Sample the destination's smaps until the end: with HGM, guest RAM
        # is mapped by PTEs while postcopy runs
        max_pte = 0
        while True:
            status = src.qmp.cmd('query-migrate')['status']
            if status == 'completed':
                break
            if status in ('failed', 'cancelled'):
                raise RuntimeError(f'the migration {status}')
            max_pte = max(max_pte, smaps_hugetlb(dst.proc.pid).get(
                'HugetlbPteMapped', 0))
            time.sleep(0.2)
        wait_status(dst.qmp, ('completed',), 300)
        postcopy_s = time.time() - t0
        log(f'{page} {path}: postcopy completed after {postcopy_s:.1f} s')
        if hgm:
            # The collapse at the end may still be running
            wait_for(lambda: dst.qmp.cmd('query-postcopy-hgm')['status']
                     in ('done', 'off'), 300, 'HGM postcopy not done')
        # The guest goes on writing on the destination
        dots = dst.output().count('.')
        wait_for(lambda: dst.output().count('.') > dots or 'BAD' in dst.output(),
                 300, 'the guest stopped writing on the destination')
        dst.qmp.cmd('stop')
        for g in (src, dst):
            if 'BAD' in g.output():
                raise RuntimeError(f'the guest found a bad page on the '
                                   f'{g.name}: '
                                   f'{g.output().split("BAD", 1)[1][:80]}')

        info = dst.qmp.cmd('query-postcopy-hgm')
        if hgm:
            if info['status'] != 'done' or len(info['blocks']) != 1:
                raise RuntimeError(f'HGM was not used: {info}')
            lat = info['blocks'][0]['latency']
        else:
            if info['status'] != 'off' or 'whole-page-latency' not in info:
                raise RuntimeError(f'unexpected query-postcopy-hgm: {info}')
            lat = info['whole-page-latency']
        smaps = smaps_hugetlb(dst.proc.pid)
        if smaps.get('HugetlbPteMapped', 0):
            raise RuntimeError(f'guest RAM still PTE-mapped: {smaps}')
        if hgm and not max_pte:
            raise RuntimeError('smaps never showed PTE-mapped guest RAM')
        check = subprocess.run([args.check, guest_ram_file(src.proc.pid),
                                guest_ram_file(dst.proc.pid)],
                               stdout=subprocess.PIPE, text=True)
        for line in check.stdout.splitlines():
            log(f'{page} {path}: {line}')
        if check.returncode:
            raise RuntimeError('the memory check failed')
        return {'page': page, 'path': path, 'lat': lat,
                'postcopy': postcopy_s, 'max_pte': max_pte, 'smaps': smaps}
    finally:
        src.quit()
        dst.quit()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--guest', required=True, help='pattern-guest')
    ap.add_argument('--check', required=True, help='pattern-check')
    ap.add_argument('--fw', default=os.path.join(
        os.environ.get('HGM_CACHE', '/var/cache/hgm'), 'build/qemu/lab-firmware'))
    # TCG by default: in the lab, under nested KVM, the dirty logging of a
    # guest writing all over its RAM makes precopy crawl (the qtests cover
    # KVM guests: tests/lab-tests/40-qemu-hgm-qtests)
    ap.add_argument('--accel', choices=['kvm', 'tcg'], default='tcg')
    ap.add_argument('--sizes', default='1G,2M')
    args = ap.parse_args()

    log(f'guest on {args.accel}; RAM '
        + ', '.join(f'{RAM_MIB[s]} MiB of {s} pages' for s in args.sizes.split(',')))
    rows, failed = [], False
    for page in args.sizes.split(','):
        for path in ('upstream', 'hgm'):
            why = hgm_unusable(page) if path == 'hgm' else None
            if why:
                rows.append({'page': page, 'path': path, 'skip': why})
                continue
            log(f'{page} {path}: migrating')
            try:
                rows.append(migrate(args, page, path))
            except Exception as e:  # report, then go on with the next
                log(f'{page} {path}: FAIL: {e}')
                rows.append({'page': page, 'path': path, 'error': str(e)})
                failed = True

    print()
    print(f'{"page":<5} {"path":<9} {"faults":>7} {"p50":>9} {"p99":>9} '
          f'{"max":>9} {"postcopy":>9}  memory')
    for r in rows:
        if 'error' in r:
            print(f'{r["page"]:<5} {r["path"]:<9} FAILED: {r["error"]}')
            continue
        if 'skip' in r:
            print(f'{r["page"]:<5} {r["path"]:<9} skipped: {r["skip"]}')
            continue
        lat = r['lat']
        print(f'{r["page"]:<5} {r["path"]:<9} {lat["count"]:>7} '
              f'{fmt_ns(lat["p50"]):>9} {fmt_ns(lat["p99"]):>9} '
              f'{fmt_ns(lat["max"]):>9} {r["postcopy"]:>8.1f}s  OK')
    print('faults: pages the guest waited for (4 KiB pages with hgm, '
          'hugepages without); latency from the fault to the page mapped')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

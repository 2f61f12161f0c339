#!/usr/bin/python3
"""Postcopy smoke test of the QEMU fork with HGM, run inside the lab.

Starts a source and a destination QEMU on this host, each with its RAM in a
shared hugetlb memfd, migrates the source with postcopy, touches guest pages
on the destination while postcopy runs, and checks:

  - the migration completes;
  - the destination used HGM (trace events) or not, as expected;
  - every byte of guest RAM on the destination equals the source's
    (both VMs are paused at the end; the destination with -S never ran);
  - afterwards no guest RAM is mapped by PTEs on the destination (smaps),
    and query-postcopy-hgm reports the final statistics;
  - with --expect-split (the destination with x-postcopy-hgm-keep-split=on),
    the opposite: none collapsed, every hugepage split in postcopy still
    split and mapped by PTEs once read (pieces that arrived but were never
    touched are mapped on first access, after postcopy has unregistered);
    the hugepages complete before the switch are mapped whole.

With --expect-fail the migration must fail before the switch to postcopy,
with the guest still running on the source (postcopy-hgm=on where HGM
cannot be used).

Under --accel kvm, KVM itself writes a page of guest RAM on the destination
when it loads the vCPU state (kvmclock), with or without HGM, so the RAM
comparison is exact only under TCG (the default).

usage (inside the lab, as root):
  postcopy-smoke.py --qemu QEMU --kernel BZIMAGE [--fw DIR] [--mem 256]
                    [--hugepage 2M|1G] [--preempt] [--expect hgm|upstream]
                    [--expect-agreed yes|no] [--expect-fail] [--expect-split]
                    [--src-args ARGS] [--dst-args ARGS]
e.g. --dst-args "-global migration.postcopy-hgm=off"

Only the Python standard library is used (QMP over a unix socket, see
hgmqmp.py).
"""

import argparse
import json
import os
import random
import re
import shlex
import subprocess
import sys
import time

from hgmqmp import QMP, smaps_hugetlb, wait_status


class Done(Exception):
    """The checks of this run are over."""


def log(msg):
    print(f'[smoke {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def start_qemu(args, name, extra, incoming):
    qmp_path = f'/tmp/{name}.qmp'
    if os.path.exists(qmp_path):
        os.unlink(qmp_path)
    size = f'{args.mem}M'
    cmd = [args.qemu, '-nodefaults', '-no-user-config', '-display', 'none',
           '-L', args.fw, '-machine', 'pc,memory-backend=mem',
           '-accel', args.accel, '-cpu', 'max' if args.accel == 'tcg' else 'host',
           '-m', size,
           '-object', f'memory-backend-memfd,id=mem,size={size},hugetlb=on,'
                      f'hugetlbsize={args.hugepage},'
                      f'share={args.dst_share if incoming else "on"}',
           '-kernel', args.kernel, '-append', 'console=ttyS0 panic=0',
           '-serial', f'file:/tmp/{name}-console.log',
           '-device', f'loader,file={args.pattern},addr={args.pattern_addr:#x},'
                      'force-raw=on',
           '-qmp', f'unix:{qmp_path},server=on,wait=off',
           '-trace', 'postcopy_hgm_*', '-D', f'/tmp/{name}-trace.log']
    if incoming:
        cmd += ['-incoming', 'defer', '-S']
    cmd += shlex.split(extra)
    log(f'{name}: {" ".join(cmd)}')
    errlog = open(f'/tmp/{name}-stderr.log', 'wb')
    proc = subprocess.Popen(cmd, stdout=errlog, stderr=subprocess.STDOUT)
    return proc, QMP(qmp_path)


def recover(sq, dq):
    """Break postcopy off and resume it over a new channel."""
    sq.cmd('migrate-pause')
    wait_status(sq, ('postcopy-paused',), 60)
    wait_status(dq, ('postcopy-paused',), 60)
    log('postcopy paused on both sides')
    # The destination stays postcopy-paused until the source connects
    dq.cmd('migrate-recover', uri='unix:/tmp/smoke-rec.sock')
    time.sleep(0.5)
    sq.cmd('migrate', uri='unix:/tmp/smoke-rec.sock', resume=True)
    wait_status(sq, ('postcopy-active', 'completed'), 120)
    wait_status(dq, ('postcopy-active', 'completed'), 120)
    log('postcopy resumed')


def differing_pages(path_a, path_b):
    """Guest-physical addresses of the 4 KiB pages that differ."""
    diff = []
    with open(path_a, 'rb') as a, open(path_b, 'rb') as b:
        addr = 0
        while True:
            pa, pb = a.read(4096), b.read(4096)
            if not pa and not pb:
                return diff
            if pa != pb:
                diff.append(addr)
            addr += 4096


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--kernel', required=True)
    ap.add_argument('--fw', default=os.path.join(
        os.environ.get('HGM_CACHE', '/var/cache/hgm'), 'build/qemu/lab-firmware'))
    ap.add_argument('--mem', type=int, default=256, help='MiB')
    ap.add_argument('--hugepage', default='2M')
    ap.add_argument('--accel', default='tcg')
    ap.add_argument('--preempt', action='store_true')
    ap.add_argument('--expect', choices=['hgm', 'upstream'], default='hgm')
    ap.add_argument('--expect-agreed', choices=['yes', 'no'], default=None,
                    help='whether the source must have agreed to HGM '
                         '(default: yes when --expect hgm)')
    ap.add_argument('--expect-fail', action='store_true')
    ap.add_argument('--expect-split', action='store_true',
                    help='hugepages must stay split after the migration '
                         '(destination: x-postcopy-hgm-keep-split=on)')
    ap.add_argument('--collapse', choices=['end', 'hugepage'], default='end')
    ap.add_argument('--recover', action='store_true',
                    help='pause postcopy halfway (migrate-pause) and resume '
                         'it (migrate-recover, migrate resume=true)')
    ap.add_argument('--dst-share', choices=['on', 'off'], default='on',
                    help='share= of the destination memory backend')
    ap.add_argument('--src-args', default='')
    ap.add_argument('--dst-args', default='')
    ap.add_argument('--boot-seconds', type=float, default=5)
    ap.add_argument('--touch', type=int, default=64,
                    help='guest pages the destination reads during postcopy')
    args = ap.parse_args()

    mem = args.mem << 20
    args.pattern = '/tmp/smoke-pattern'
    args.pattern_addr = mem // 2
    with open(args.pattern, 'wb') as f:
        for _ in range(mem // 4 // (1 << 20)):
            f.write(random.randbytes(1 << 20))

    src, sq = start_qemu(args, 'src', args.src_args, incoming=False)
    dst, dq = start_qemu(args, 'dst', args.dst_args, incoming=True)
    ok = False
    try:
        caps = [{'capability': 'postcopy-ram', 'state': True}]
        if args.preempt:
            caps.append({'capability': 'postcopy-preempt', 'state': True})
        for q in (sq, dq):
            q.cmd('migrate-set-capabilities', capabilities=caps)
        dq.cmd('migrate-set-parameters',
               **{'postcopy-hgm-collapse': args.collapse})
        log(f'destination postcopy-hgm: '
            f'{dq.cmd("query-migrate-parameters").get("postcopy-hgm")}')
        # Slow precopy, so that most pages move in postcopy
        sq.cmd('migrate-set-parameters', **{'max-bandwidth': 8 << 20,
                                            'max-postcopy-bandwidth': 16 << 20})
        time.sleep(args.boot_seconds)  # let the guest boot and dirty memory
        dq.cmd('migrate-incoming', uri='unix:/tmp/smoke-mig.sock')
        t0 = time.time()
        sq.cmd('migrate', uri='unix:/tmp/smoke-mig.sock')
        if args.expect_fail:
            try:
                wait_status(sq, ('active',), 60)
                time.sleep(2)
                sq.cmd('migrate-start-postcopy')
                wait_status(sq, ('postcopy-active', 'completed'), 300)
                log('the migration did not fail')
            except RuntimeError as e:
                running = sq.cmd('query-status')['status']
                log(f'failed as expected: {e}; source VM {running}')
                ok = running == 'running'
            raise Done()
        wait_status(sq, ('active',), 60)
        time.sleep(2)
        sq.cmd('migrate-start-postcopy')
        wait_status(sq, ('postcopy-active', 'completed'), 300)
        log(f'postcopy started after {time.time() - t0:.1f} s')
        log(f'destination: {dq.cmd("query-postcopy-hgm")}')

        # Fault pages in from the destination's side: QEMU's own accesses
        # go through the guest mapping like a vCPU's.
        rng = random.Random(1)
        t1 = time.time()
        for i in range(args.touch):
            if args.recover and i == args.touch // 2:
                recover(sq, dq)
            addr = rng.randrange(0, mem, 4096)
            dq.hmp(f'xp /1xg {addr:#x}')
        log(f'{args.touch} reads on the destination took {time.time() - t1:.2f} s')

        wait_status(sq, ('completed',), 600)
        wait_status(dq, ('completed',), 120)
        log(f'migration completed after {time.time() - t0:.1f} s')
        time.sleep(1)  # the listen thread collapses after completion

        sq.cmd('pmemsave', val=0, size=mem, filename='/tmp/src.mem')
        dq.cmd('pmemsave', val=0, size=mem, filename='/tmp/dst.mem')
        diff = differing_pages('/tmp/src.mem', '/tmp/dst.mem')
        same = not diff
        log(f'guest RAM identical: {same}')
        if diff:
            log(f'{len(diff)} pages differ, first: '
                + ' '.join(f'{p:#x}' for p in diff[:16]))

        info = dq.cmd('query-postcopy-hgm')
        log(f'query-postcopy-hgm: {json.dumps(info)}')
        for line in dq.hmp('info postcopy_hgm').splitlines():
            log(f'  {line}')
        smaps = smaps_hugetlb(dst.pid)
        log(f'destination smaps: {smaps}')
        trace = open('/tmp/dst-trace.log', errors='replace').read()
        used_hgm = 'postcopy_hgm_block_done' in trace
        log(f'destination used HGM: {used_hgm}')
        for line in trace.splitlines():
            if re.search(r'postcopy_hgm_(active|answer|unused|block_done|setup_done)',
                         line):
                log(f'  {line}')

        ok = same and used_hgm == (args.expect == 'hgm')
        if used_hgm:
            agreed = args.expect_agreed or 'yes'
            if info['status'] != 'done' or \
               info['source-agreed'] != (agreed == 'yes'):
                log(f'query-postcopy-hgm: expected status done, '
                    f'source-agreed {agreed}')
                ok = False
        if args.expect_split:
            blk = info['blocks'][0] if info.get('blocks') else {}
            split = blk.get('split', 0)
            # Hugepages complete before the switch were mapped whole from
            # the start; every one split in postcopy must still be split
            if not split or blk.get('collapses') or \
                    split + blk.get('collapsed', 0) != blk.get('hugepages'):
                log('expected the hugepages split in postcopy still split,'
                    f' none collapsed: {blk}')
                ok = False
            # pmemsave above read all of guest RAM through the mapping
            pte_kib = split * blk.get('page-size', 0) >> 10
            mapped = sum(smaps.get(k, 0) for k in (
                'HugetlbPteMapped', 'HugetlbPmdMapped', 'HugetlbPudMapped'))
            if smaps.get('HugetlbPteMapped', 0) != pte_kib or \
                    mapped != mem >> 10:
                log(f'expected {pte_kib} kB of guest RAM mapped by PTEs'
                    f' ({split} split hugepages), all {mem >> 10} kB'
                    f' mapped: {smaps}')
                ok = False
        elif used_hgm and smaps.get('HugetlbPteMapped', 0):
            log('destination still maps guest RAM with PTEs')
            ok = False
    except Done:
        pass
    finally:
        for q, p in ((sq, src), (dq, dst)):
            try:
                q.cmd('quit')
            except Exception:
                pass
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for name in ('src', 'dst'):
            path = f'/tmp/{name}-stderr.log'
            text = open(path, errors='replace').read().strip()
            if text:
                log(f'{name} stderr:\n{text[-3000:]}')
    log('PASS' if ok else 'FAIL')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/python3
"""Postcopy benchmark of the QEMU fork, run inside the lab (tests/bench/run).

One row per migration of a running pattern-guest (tests/guest) between two
QEMUs on the lab host, over a unix socket, under each accelerator given
(KVM: the lab's nested SVM, the path users' guests take; TCG) and with
postcopy-preempt off and on.  The guest RAM is GUEST_MIB of:

  1g-hgm       1 GiB hugetlb pages, HGM (4 KiB faults, collapse at the end)
  1g-upstream  1 GiB hugetlb pages, postcopy-hgm=off (a fault waits for
               its whole hugepage: upstream QEMU's behaviour)
  2m-hgm, 2m-upstream   the same with 2 MiB pages
  4k           shared memory in 4 KiB pages (memory-backend-memfd without
               hugetlb): upstream postcopy at its best, the floor

Each row: after the guest has initialized its RAM, a throttled precopy of
PRECOPY_MIB, then migrate-start-postcopy; the guest keeps running on the
destination and faults on what has not arrived.  Columns (the CSV header
names them):

  faults, lat_p50_us .. lat_max_us  fault-to-mapped latency on the
      destination (query-postcopy-hgm: the HGM block's, or
      whole-page-latency for the other paths; the same clock)
  blocktime_ms   total vCPU blocktime (postcopy-blocktime capability)
  downtime_ms    the source's downtime (query-migrate)
  pause_ms       the guest's pause at the switch: source stops it to the
                 destination starts it (trace vmstate_downtime_checkpoint)
  discard_ranges the discard list the source sent at the switch (trace
                 postcopy_discard_send_finish)
  drop_ms        HGM destination: time in mhgm_drop_ranges() (trace
                 postcopy_hgm_drop)
  switch_to_done_s   migrate-start-postcopy to completed on the destination
  postcopy_mib   bytes the source sent after the switch (ram.postcopy-bytes)
  resent_mib     pages sent beyond the RAM's size (ram.normal + duplicate)
  requests       page requests the source received (ram.postcopy-requests)
  collapse_ms    MADV_COLLAPSE of the whole RAM at the end (trace
                 postcopy_hgm_end), and per hugepage
  pte_peak_kib   the destination's peak VmPTE during postcopy (page tables
                 of split hugepages)
  wps_before, wps_after   the guest's page writes per second on the source
      before the migration and on the destination after it completed
  pte_after_kib  the destination's VmPTE after wps_after (the guest has
                 touched its RAM again): page tables left by split hugepages

A benchmark: nothing is asserted but that each migration completes.  The
lab runs under TCG: compare rows of one run, not with real hardware.

Plans (--plans, rows keyed by the first columns: plan .. discard_batch):

  main     --kinds x --accels x --preempt, GUEST_MIB, PRECOPY_MIB
  discard  KVM, preempt on: a guest that writes every other page
           (stride=2) and DISCARD_PRECOPY_MIB of precopy, so that the
           switch's discard list is one 4 KiB range per other page of
           what was sent: 1g-hgm, 1g-hgm with x-postcopy-hgm-discard-batch=1
           (each range dropped on its own), 1g-upstream, 4k
  scale    KVM, preempt on: 1g-hgm, 1g-upstream, 4k at each of
           --scale-mib and each guest delay= of --scale-delay (dirty rate)
  split    KVM and TCG, preempt on: 1g-hgm, 1g-hgm-split (the destination
           with x-postcopy-hgm-keep-split: nothing collapsed), 4k, under
           each of --accels: what collapsing buys the guest after the
           migration (wps_after, pte_after_kib)

usage: postcopy-bench.py --qemu QEMU --guest PATTERN_GUEST --csv FILE
           [--plans main,discard,scale,split] [--kinds 1g-hgm,...]
           [--accels kvm,tcg] [--preempt off,on] [--guest-mib 1024]
           [--precopy-mib 16] [--scale-mib 1024,3072] [--scale-delay 0,2000]
           [--discard-precopy-mib 256]
"""

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'qemu-hgm'))
from hgmqmp import QMP, quit_qemu, wait_status  # noqa: E402

KINDS = {
    '1g-hgm': ('1G', True),
    '1g-upstream': ('1G', False),
    '2m-hgm': ('2M', True),
    '2m-upstream': ('2M', False),
    '4k': (None, False),
}
# HGM kinds whose destination leaves every hugepage split (the split plan)
SPLIT_KINDS = {'1g-hgm-split': '1g-hgm', '2m-hgm-split': '2m-hgm'}
# What a row is: KEYS (the plan sets them), then what it measured.
KEYS = ['plan', 'kind', 'accel', 'preempt', 'guest_mib', 'delay', 'stride',
        'precopy_mib', 'discard_batch']
FIELDS = KEYS + ['faults', 'lat_p50_us', 'lat_p90_us',
                 'lat_p99_us', 'lat_max_us', 'blocktime_ms', 'downtime_ms',
                 'pause_ms', 'discard_ranges', 'drop_ms',
                 'switch_to_done_s', 'postcopy_mib', 'resent_mib', 'requests',
                 'collapse_ms',
                 'collapse_per_hugepage_ms', 'pte_peak_kib', 'wps_before',
                 'wps_after', 'pte_after_kib']
# The guest prints a '.' every this many page writes (pattern-guest.c).
WRITES_PER_DOT = 65536


def log(msg):
    print(f'[bench {time.strftime("%H:%M:%S")}] {msg}', flush=True)


ROW_EVENTS = ['postcopy_hgm_end', 'vmstate_downtime_checkpoint',
              'postcopy_discard_send_finish', 'postcopy_hgm_drop']
# Trace events along a fault's path, for --stages rows (docs/benchmarks.md):
# destination, then source.
STAGE_EVENTS = ['postcopy_ram_fault_thread_request', 'ram_load_postcopy_loop',
                'postcopy_place_page', 'migrate_handle_rp_req_pages',
                'ram_save_queue_pages', 'postcopy_preempt_send_host_page',
                'get_queued_page']
STAGES = ['request', 'queue', 'send', 'receive', 'place']
STAGE_FIELDS = ['kind', 'accel', 'preempt', 'faults'] + \
    [f'{st}_{q}_us' for st in STAGES + ['total'] for q in ('p50', 'p90')]


def start_qemu(args, name, row, incoming, stages=False):
    kind, accel = row['kind'], row['accel']
    page, hgm = KINDS[SPLIT_KINDS.get(kind, kind)]
    size = f'{row["guest_mib"]}M'
    backend = f'memory-backend-memfd,id=mem,size={size},share=on'
    if page:
        backend += f',hugetlb=on,hugetlbsize={page}'
    qmp_path = f'/tmp/bench-{name}.qmp'
    for p in (qmp_path, f'/tmp/bench-{name}.serial'):
        if os.path.exists(p):
            os.unlink(p)
    cmd = [args.qemu, '-nodefaults', '-no-user-config', '-display', 'none',
           '-L', args.fw, '-machine', 'pc,memory-backend=mem',
           '-accel', accel, '-cpu', 'host' if accel == 'kvm' else 'max',
           '-m', size, '-object', backend, '-kernel', args.guest,
           '-append', f'delay={row["delay"]} stride={row["stride"]}',
           '-serial', f'file:/tmp/bench-{name}.serial',
           '-qmp', f'unix:{qmp_path},server=on,wait=off',
           '-msg', 'timestamp=on', '-D', f'/tmp/bench-{name}.trace']
    # A few events per migration (one host, one clock): the collapse, the
    # switch's checkpoints, the discard list's size and its drop.
    for ev in ROW_EVENTS + (STAGE_EVENTS if stages else []) + args.trace:
        cmd += ['-trace', ev]
    if incoming:
        cmd += ['-incoming', 'defer']
        if not hgm:
            cmd += ['-global', 'migration.postcopy-hgm=off']
        if kind in SPLIT_KINDS:
            cmd += ['-global', 'migration.x-postcopy-hgm-keep-split=on']
        if row.get('discard_batch'):
            cmd += ['-global', 'migration.x-postcopy-hgm-discard-batch='
                    f'{row["discard_batch"]}']
    err = open(f'/tmp/bench-{name}.stderr', 'wb')
    proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT)
    return proc, QMP(qmp_path)


def serial(name):
    try:
        with open(f'/tmp/bench-{name}.serial', errors='replace') as f:
            return f.read()
    except FileNotFoundError:
        return ''


def wait_serial(name, pattern, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = serial(name)
        if 'BAD' in text:
            raise RuntimeError(f'{name}: the guest found a bad page: {text[-200:]}')
        if re.search(pattern, text):
            return
        time.sleep(0.2)
    raise TimeoutError(f'{name}: no "{pattern}" on the serial port in {timeout} s')


def write_rate(name, seconds):
    """The guest's page writes per second, from its serial dots."""
    before = serial(name).count('.')
    time.sleep(seconds)
    return (serial(name).count('.') - before) * WRITES_PER_DOT / seconds


def vm_pte_kib(pid):
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmPTE:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def switch_figures(row):
    """From the trace logs: pause_ms, the guest's pause at the switch (the
    source stops it, src-downtime-start, to the destination starting it,
    dst-postcopy-bh-vm-started); discard_ranges, what the source sent for
    RAM block "mem" (postcopy_discard_send_finish); drop_ms, the HGM
    destination's time in mhgm_drop_ranges() (postcopy_hgm_drop)."""
    t_stop = t_start = None
    drop_ns = 0
    for t, ev, a in trace_events('/tmp/bench-src.trace'):
        if ev == 'vmstate_downtime_checkpoint' and a == 'src-downtime-start':
            t_stop = t_stop or t
        elif ev == 'postcopy_discard_send_finish' and a.startswith('mem '):
            m = re.search(r'sent=(\d+)', a)
            row['discard_ranges'] = int(m.group(1))
    for t, ev, a in trace_events('/tmp/bench-dst.trace'):
        if ev == 'vmstate_downtime_checkpoint' and \
                a == 'dst-postcopy-bh-vm-started':
            t_start = t_start or t
        elif ev == 'postcopy_hgm_drop' and a.startswith('mem: '):
            drop_ns += int(re.search(r'in (\d+) ns', a).group(1))
    if t_stop and t_start:
        row['pause_ms'] = round((t_start - t_stop) * 1000, 1)
    if drop_ns:
        row['drop_ms'] = round(drop_ns / 1e6, 2)


def run_row(args, spec, stages=False):
    row = dict(spec)
    preempt = row['preempt']
    src, sq = start_qemu(args, 'src', row, False, stages)
    dst, dq = start_qemu(args, 'dst', row, True, stages)
    try:
        caps = [{'capability': 'postcopy-ram', 'state': True}]
        if preempt == 'on':
            caps.append({'capability': 'postcopy-preempt', 'state': True})
        sq.cmd('migrate-set-capabilities', capabilities=caps)
        dq.cmd('migrate-set-capabilities', capabilities=caps + [
            {'capability': 'postcopy-blocktime', 'state': True}])
        wait_serial('src', r'pattern-guest: \d+ MiB', args.boot_timeout)
        row['wps_before'] = round(write_rate('src', args.rate_seconds))
        sq.cmd('migrate-set-parameters', **{'max-bandwidth': 32 << 20})
        dq.cmd('migrate-incoming', uri='unix:/tmp/bench-mig.sock')
        sq.cmd('migrate', uri='unix:/tmp/bench-mig.sock')
        deadline = time.time() + 300
        while True:
            info = wait_status(sq, ('active',), 60)
            if info.get('ram', {}).get('transferred', 0) >= row['precopy_mib'] << 20:
                break
            if time.time() > deadline:
                raise TimeoutError('precopy did not send enough')
            time.sleep(0.1)
        # Postcopy at full speed, as a real migration would run.
        sq.cmd('migrate-set-parameters', **{'max-postcopy-bandwidth': 0})
        t_switch = time.time()
        sq.cmd('migrate-start-postcopy')
        pte_peak = 0
        deadline = t_switch + args.postcopy_timeout
        while True:
            pte_peak = max(pte_peak, vm_pte_kib(dst.pid))
            dinfo = dq.cmd('query-migrate')
            # The blocktime context may be gone once completed: keep the
            # last figure seen during postcopy.
            if 'postcopy-blocktime' in dinfo:
                row['blocktime_ms'] = dinfo['postcopy-blocktime']
            status = dinfo.get('status')
            if status == 'completed':
                break
            if status in ('failed', 'cancelled') or time.time() > deadline:
                raise RuntimeError(f'destination migration {status}')
            time.sleep(0.05)
        row['switch_to_done_s'] = round(time.time() - t_switch, 2)
        row['pte_peak_kib'] = pte_peak
        sinfo = wait_status(sq, ('completed',), 120)
        row['downtime_ms'] = sinfo.get('downtime')
        ram = sinfo.get('ram', {})
        row['postcopy_mib'] = round(ram.get('postcopy-bytes', 0) / (1 << 20), 1)
        row['requests'] = ram.get('postcopy-requests')
        # Every page is sent at least once (the guest wrote all of them):
        # what was sent beyond RAM's size in pages was sent again.
        if ram.get('page-size') and ram.get('total'):
            row['resent_mib'] = round(
                (ram.get('normal', 0) + ram.get('duplicate', 0) -
                 ram['total'] // ram['page-size']) * ram['page-size'] /
                (1 << 20), 1)
        dinfo = dq.cmd('query-migrate')
        if 'postcopy-blocktime' in dinfo:
            row['blocktime_ms'] = dinfo['postcopy-blocktime']

        hgm = dq.cmd('query-postcopy-hgm')
        deadline = time.time() + 300
        while hgm.get('status') in ('setup', 'active') and time.time() < deadline:
            time.sleep(0.2)
            hgm = dq.cmd('query-postcopy-hgm')
        lat = hgm['blocks'][0]['latency'] if hgm.get('blocks') \
            else hgm.get('whole-page-latency')
        if lat:
            row['faults'] = lat['count']
            for p in ('p50', 'p90', 'p99', 'max'):
                row[f'lat_{p}_us'] = round(lat[p] / 1000, 1)
        switch_figures(row)
        m = re.search(r'postcopy_hgm_end .*?(\d+) hugepages collapsed, \d+ faults '
                      r'meanwhile, (\d+) ns', open('/tmp/bench-dst.trace',
                                                   errors='replace').read())
        if m:
            row['collapse_ms'] = round(int(m.group(2)) / 1e6, 1)
            if int(m.group(1)):
                row['collapse_per_hugepage_ms'] = \
                    round(int(m.group(2)) / 1e6 / int(m.group(1)), 2)
        row['wps_after'] = round(write_rate('dst', args.rate_seconds))
        row['pte_after_kib'] = vm_pte_kib(dst.pid)
        if args.trace_dir:
            # Thread names, to tell which thread a traced fault came from
            with open(f'{args.trace_dir}/dst-threads.txt', 'a') as f:
                f.write(f'== {row["plan"]} {row["kind"]} pid {dst.pid}\n')
                for tid in sorted(os.listdir(f'/proc/{dst.pid}/task')):
                    with open(f'/proc/{dst.pid}/task/{tid}/comm') as c:
                        f.write(f'{tid} {c.read().strip()}\n')
        if 'BAD' in serial('dst'):
            raise RuntimeError('the guest found a bad page on the destination')
    finally:
        for q, p in ((sq, src), (dq, dst)):
            quit_qemu(q, p)
    return row


TRACE_LINE = re.compile(r'^\d+@(\d+)\.(\d+):(\w+) (.*)$')


def trace_events(path):
    """(seconds, event, arguments) of each timestamped line of a trace log."""
    with open(path, errors='replace') as f:
        for line in f:
            m = TRACE_LINE.match(line)
            if m:
                yield int(m.group(1)) + int(m.group(2)) / 1e6, m.group(3), m.group(4)


def first_after(times, t):
    """The first of the sorted TIMES at or after T, or None."""
    for x in times:
        if x >= t:
            return x
    return None


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


def stage_times(row):
    """Per-stage latency of the faults that reached the source, from the
    trace logs of both sides (one host, one clock): request (fault read on
    the destination to the request read on the source), queue (to queued,
    ram_save_queue_pages), send (to the page taken to be sent: preempt
    channel or queue), receive (to its 4 KiB read on the destination),
    place (to placed).  Pages are matched by their offset in the RAM
    block "mem"."""
    fault, base = {}, None
    recv, place = {}, {}
    for t, ev, a in trace_events('/tmp/bench-dst.trace'):
        if ev == 'postcopy_ram_fault_thread_request' and ' rb=mem ' in a:
            hva = int(re.search(r'HVA=0x([0-9a-f]+)', a).group(1), 16)
            off = int(re.search(r'offset=0x([0-9a-f]+)', a).group(1), 16)
            base = hva - off
            fault.setdefault(off, t)
        elif ev == 'ram_load_postcopy_loop':
            off = int(re.search(r'addr=0x([0-9a-f]+)', a).group(1), 16)
            recv.setdefault(off, []).append(t)
        elif ev == 'postcopy_place_page' and base is not None:
            off = int(a.split('=')[1], 16) - base
            place.setdefault(off, []).append(t)
    rx, queued, sent = {}, {}, {}
    block = None
    for t, ev, a in trace_events('/tmp/bench-src.trace'):
        if ev == 'migrate_handle_rp_req_pages':
            # A request names its RAM block only when it changes: "(null)"
            # is the one named last.
            name = a.split()[1]
            block = block if name == '(null)' else name
            if block == 'mem':
                rx.setdefault(int(a.split()[3], 16), []).append(t)
        elif ev == 'ram_save_queue_pages' and a.startswith('mem: '):
            queued.setdefault(int(a.split()[2], 16), []).append(t)
        elif ev == 'postcopy_preempt_send_host_page' and a.startswith('ramblock mem '):
            sent.setdefault(int(a.split()[3], 16) * 4096, []).append(t)
        elif ev == 'get_queued_page' and a.startswith('mem/'):
            sent.setdefault(int(a.split()[0][4:], 16), []).append(t)
    per = {st: [] for st in STAGES + ['total']}
    for off, t0 in fault.items():
        t1 = first_after(rx.get(off, []), t0)
        t2 = t1 and first_after(queued.get(off, []), t1)
        t3 = t2 and first_after(sent.get(off, []), t2)
        t4 = t3 and first_after(recv.get(off, []), t3)
        t5 = t4 and first_after(place.get(off, []), t4)
        if not t5:
            continue  # arrived before its request, or not traced
        for st, a, b in zip(STAGES, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)):
            per[st].append((b - a) * 1e6)
        per['total'].append((t5 - t0) * 1e6)
    out = {k: row[k] for k in ('kind', 'accel', 'preempt')}
    out['faults'] = len(per['total'])
    if per['total']:
        for st, v in per.items():
            out[f'{st}_p50_us'] = round(percentile(v, 50), 1)
            out[f'{st}_p90_us'] = round(percentile(v, 90), 1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--guest', required=True)
    ap.add_argument('--csv', required=True)
    ap.add_argument('--fw', default=os.path.join(
        os.environ.get('HGM_CACHE', '/var/cache/hgm'), 'build/qemu/lab-firmware'))
    ap.add_argument('--plans', default='main',
                    help='main, discard, scale, split (comma separated; see '
                         'docs/benchmarks.md)')
    ap.add_argument('--kinds', default=','.join(KINDS),
                    help='the kinds of row to run, in every plan')
    ap.add_argument('--accels', default='kvm,tcg')
    ap.add_argument('--preempt', default='off,on')
    ap.add_argument('--guest-mib', type=int, default=1024)
    ap.add_argument('--precopy-mib', type=int, default=16)
    ap.add_argument('--scale-mib', default='1024,3072',
                    help='guest sizes of the scale plan')
    ap.add_argument('--scale-delay', default='0,2000',
                    help='guest delay= values (dirty rates) of the scale plan')
    ap.add_argument('--discard-precopy-mib', type=int, default=256,
                    help='precopy of the discard plan, whose guest writes '
                         'every other page (stride=2)')
    ap.add_argument('--rate-seconds', type=float, default=3)
    ap.add_argument('--boot-timeout', type=float, default=300)
    ap.add_argument('--postcopy-timeout', type=float, default=900)
    ap.add_argument('--stages', default='1g-hgm,4k',
                    help='kinds to run once more, under KVM with preempt on, '
                         'with trace events along the fault path, for the '
                         'per-stage table (empty: none)')
    ap.add_argument('--trace-dir', help='keep the trace logs of every row '
                    'here, as N-KIND-src.trace and N-KIND-dst.trace')
    ap.add_argument('--trace', action='append', default=[],
                    help='one more trace event (pattern) for both QEMUs of '
                         'every row, for a closer look with --trace-dir')
    args = ap.parse_args()

    for kind in args.kinds.split(',') + list(filter(None, args.stages.split(','))):
        if kind not in KINDS and kind not in SPLIT_KINDS:
            sys.exit(f'unknown kind {kind}: {", ".join(list(KINDS) + list(SPLIT_KINDS))}')
    base = {'accel': 'kvm', 'preempt': 'on', 'guest_mib': args.guest_mib,
            'delay': 0, 'stride': 1, 'precopy_mib': args.precopy_mib,
            'discard_batch': ''}
    plan = []
    for name in args.plans.split(','):
        if name == 'main':
            plan += [dict(base, plan=name, kind=k, accel=a, preempt=p)
                     for a in args.accels.split(',')
                     for k in args.kinds.split(',')
                     for p in args.preempt.split(',')]
        elif name == 'discard':
            # A write-heavy guest whose re-dirtied pages are scattered:
            # the sent part of RAM comes back as one 4 KiB range per
            # other page.  HGM with the default batch and with batch 1
            # (each range dropped on its own, as before batching).
            d = dict(base, plan=name, stride=2,
                     precopy_mib=args.discard_precopy_mib)
            plan += [dict(d, kind='1g-hgm'),
                     dict(d, kind='1g-hgm', discard_batch=1),
                     dict(d, kind='1g-upstream'), dict(d, kind='4k')]
        elif name == 'scale':
            plan += [dict(base, plan=name, kind=k, guest_mib=int(m),
                          delay=int(d))
                     for m in args.scale_mib.split(',')
                     for d in args.scale_delay.split(',')
                     for k in ('1g-hgm', '1g-upstream', '4k')]
        elif name == 'split':
            # The guest writing random pages of all its RAM as fast as it
            # can after the migration: collapsed, left split, 4 KiB RAM.
            plan += [dict(base, plan=name, kind=k, accel=a)
                     for a in args.accels.split(',')
                     for k in ('1g-hgm', '1g-hgm-split', '4k')]
        else:
            sys.exit(f'unknown plan {name}: main, discard, scale, split')
    plan = [r for r in plan if r['kind'] in args.kinds.split(',') or
            (r['kind'] in SPLIT_KINDS and SPLIT_KINDS[r['kind']] in
             args.kinds.split(','))]

    rows, failed = [], 0
    for i, spec in enumerate(plan, 1):
        what = ' '.join(f'{k}={spec[k]}' for k in KEYS if spec[k] != '')
        if spec['accel'] == 'kvm' and not os.path.exists('/dev/kvm'):
            log(f'[{i}/{len(plan)}] {what}: skipped, no /dev/kvm')
            continue
        log(f'[{i}/{len(plan)}] {what} ...')
        t0 = time.time()
        try:
            row = run_row(args, spec)
        except Exception as e:  # a benchmark row failing must not lose the others
            log(f'  failed: {e}')
            for name in ('src', 'dst'):
                text = open(f'/tmp/bench-{name}.stderr', errors='replace').read()
                if text.strip():
                    log(f'  {name} stderr: {text.strip()[-1000:]}')
            failed += 1
            continue
        if args.trace_dir:
            for side in ('src', 'dst'):
                shutil.copy(f'/tmp/bench-{side}.trace',
                            f'{args.trace_dir}/{i}-{spec["kind"]}-{side}.trace')
        log(f'  done in {time.time() - t0:.0f} s: ' +
            ', '.join(f'{k}={row.get(k)}' for k in FIELDS[len(KEYS):]))
        rows.append(row)
        with open(args.csv, 'w', newline='') as f:
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            w.writerows(rows)
    stage_csv = re.sub(r'(\.csv)?$', '-stages.csv', args.csv, count=1)
    stage_rows = []
    for kind in filter(None, args.stages.split(',')):
        if not os.path.exists('/dev/kvm'):
            continue
        log(f'stages: {kind} under kvm, preempt on, traced ...')
        try:
            row = run_row(args, dict(base, plan='stages', kind=kind),
                          stages=True)
            if args.trace_dir:
                for side in ('src', 'dst'):
                    shutil.copy(f'/tmp/bench-{side}.trace',
                                f'{args.trace_dir}/stages-{kind}-{side}.trace')
            row = stage_times(row)
        except Exception as e:
            log(f'  failed: {e}')
            failed += 1
            continue
        log('  ' + ', '.join(f'{k}={row.get(k)}' for k in STAGE_FIELDS[3:]))
        stage_rows.append(row)
        with open(stage_csv, 'w', newline='') as f:
            w = csv.DictWriter(f, STAGE_FIELDS)
            w.writeheader()
            w.writerows(stage_rows)
    log(f'{len(rows)} rows written to {args.csv}, {len(stage_rows)} to '
        f'{stage_csv}, {failed} failed')
    return 1 if failed or not rows else 0


if __name__ == '__main__':
    sys.exit(main())

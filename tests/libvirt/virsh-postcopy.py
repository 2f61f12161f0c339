#!/usr/bin/python3
"""virsh migrate --live --postcopy of a guest in hugetlb pages, between two
libvirt hosts, with HGM and with the upstream path, every byte checked.

The hosts are two libvirtd daemons (Debian's libvirt, unmodified) started
by tests/libvirt/lab-hosts, each in its own mount and UTS namespaces with
its own hostname, host UUID, state and hugetlbfs mounts; QEMU runs as
libvirt's unprivileged user.  Migration is peer to peer (the source's
libvirtd drives the destination's) over UNIX sockets: libvirt's connection
goes to the destination daemon's socket, and QEMU's migration stream goes
through a forwarder between the two hosts' socket directories (socat), the
"network" a test can cut.

The guest (tests/guest/pattern-guest) writes a self-checking pattern to
random 4 KiB pages of all its RAM, all the time.  Each case checks:
  - the migration ends as the case expects, with the guest running on the
    destination and still writing;
  - the guest found no bad page, and every byte of the destination's RAM
    matches the source's as it was when the source stopped (the source's
    RAM file is held open until the check, pattern-check);
  - HGM was used (or not) as expected: the destination's query-postcopy-hgm
    through `virsh qemu-monitor-command`, its smaps showing PTE-mapped
    hugetlb during postcopy and only hugepage-sized mappings at the end;
  - each host's hugetlbfs is back to where it started once the domain is
    gone from it.

Cases (--cases, comma separated):
  after-precopy     virsh migrate --live --p2p --postcopy --postcopy-after-precopy
  migrate-postcopy  virsh migrate --postcopy, then virsh migrate-postcopy
  cut-resume        the migration stream is cut during postcopy; the source
                    ends "paused (post-copy failed)"; virsh migrate
                    --postcopy-resume over a new stream completes it
  abort-resume      virsh domjobabort --postcopy during postcopy, then
                    virsh migrate --postcopy-resume
  monitor           the HGM monitor commands through virsh
                    qemu-monitor-command: during postcopy (libvirt 11.3
                    holds the destination's job then: the command waits
                    30 s for it and fails, which the case logs), and after
                    it: query-postcopy-hgm, "info postcopy_hgm", collapse
                    requests by RAM block and by guest-physical range, good
                    and bad, QMP and HMP, each refused with an error and
                    nothing changed
A case may carry modifiers, CASE+MOD[+MOD]:
  hgm-off           the destination's QEMU runs with postcopy-hgm=off (the
                    upstream path), for comparison
  upstream-src      the source's QEMU is --upstream-qemu (QEMU 10.0 without
                    our patches), the destination's the fork
  upstream-dst      the other way round
and the table's "path" column says what the destination did: "hgm" (4 KiB
pieces placed and mapped, hugepages collapsed at the end) or "upstream"
(whole hugepages).  --expect-hgm no (a destination kernel without HGM)
expects the upstream path everywhere.

usage (as root, where lab-hosts can start libvirtd; the lab, see
tests/lab-tests/50-libvirt-postcopy):
  virsh-postcopy.py --qemu QEMU --guest PATTERN_GUEST --check PATTERN_CHECK
                    [--accel kvm|tcg] [--page 1G|2M] [--cases LIST]
                    [--expect-hgm yes|no] [--upstream-qemu QEMU]
"""

import argparse
import json
import re
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'qemu-hgm'))
import hgmqmp  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
LAB_HOSTS = os.path.join(HERE, 'lab-hosts')
ROOT = '/run/hgm-hosts'
SRC, DST = 'hgm-a', 'hgm-b'
RAM_MIB = {'1G': 1024, '2M': 256}
HUGETLBFS = {'1G': '/dev/hugepages1G', '2M': '/dev/hugepages'}
SMAPS_FIELD = {'1G': 'HugetlbPudMapped', '2M': 'HugetlbPmdMapped'}
MIG_SOCK = '/run/hgm-mig/migration.sock'


def log(msg):
    print(f'[virsh-postcopy {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def fmt_ns(ns):
    if ns >= 1e9:
        return f'{ns / 1e9:.2f}s'
    if ns >= 1e6:
        return f'{ns / 1e6:.1f}ms'
    return f'{ns / 1e3:.0f}us'


class Failure(Exception):
    pass


class Skip(Exception):
    """The case cannot run to its end here, for a reason outside the
    project (the message says which)."""


# libvirt 11.3.0 (Debian's bookworm-backports and trixie builds) passes no
# fd to qemuProcessIncomingDefNew() from qemuMigrationDstPrepareResume(),
# which reads through it: the destination's libvirtd dies on every
# --postcopy-resume with this in the kernel log (docs/libvirt.md)
RESUME_CRASH = re.compile(r'libvirtd\[\d+\]: segfault at 0 .* in '
                          r'libvirt_driver_qemu\.so')


def uri(host):
    return f'qemu+unix:///system?socket={ROOT}/{host}/run/libvirt-sock'


def virsh(host, *args, check=True, timeout=600):
    """virsh ARGS on HOST; its stdout, or Failure with what virsh printed."""
    cmd = ['virsh', '-q', '-c', uri(host)] + list(args)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    if check and r.returncode:
        raise Failure(f'virsh {" ".join(args[:2])} on {host} failed: '
                      f'{r.stderr.strip() or r.stdout.strip()}')
    return r.stdout.strip() if check else r


def qmp(host, dom, execute, **arguments):
    msg = {'execute': execute}
    if arguments:
        msg['arguments'] = arguments
    for _ in range(5):
        try:
            out = virsh(host, 'qemu-monitor-command', dom, json.dumps(msg))
            return json.loads(out)['return']
        except Failure as e:
            # libvirt still finishing a migration phase on HOST (its job
            # lock times out after 30 s): ask again
            if 'cannot acquire state change lock' not in str(e):
                raise
            last = e
    raise last


def domstate(host, dom):
    r = virsh(host, 'domstate', '--reason', dom, check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def host_pid(host):
    with open(f'{ROOT}/{host}/libvirtd.pid') as f:
        return int(f.read())


def dead_hosts():
    """The hosts whose libvirtd is gone."""
    return [h for h in (SRC, DST)
            if not os.path.exists(f'/proc/{host_pid(h)}')]


def qemu_pid(host, dom):
    try:
        with open(f'{ROOT}/{host}/run/qemu/{dom}.pid') as f:
            return int(f.read())
    except (FileNotFoundError, ValueError):
        return None


def hugetlbfs_free(host, page):
    """Free pages of HOST's own hugetlbfs mount for PAGE (statfs)."""
    st = os.statvfs(f'/proc/{host_pid(host)}/root{HUGETLBFS[page]}')
    return st.f_bfree


def ram_fd(pid):
    """Our own fd on the file of guest RAM of QEMU PID (libvirt gives
    memory-backend-file a directory on hugetlbfs, and QEMU unlinks the
    file it makes there)."""
    fds = f'/proc/{pid}/fd'
    for fd in os.listdir(fds):
        try:
            target = os.readlink(f'{fds}/{fd}')
        except OSError:
            continue
        if 'qemu_back_mem' in target:
            return os.open(f'{fds}/{fd}', os.O_RDONLY)
    raise Failure(f'no guest RAM file among the fds of QEMU {pid}')


def smaps_hugetlb(pid):
    """Hugetlb mapping sizes (kB) over QEMU's guest RAM file; {} once QEMU
    is gone."""
    try:
        return hgmqmp.smaps_hugetlb(pid, ('qemu_back_mem',))
    except (FileNotFoundError, ProcessLookupError):
        return {}


def serial(host, dom):
    try:
        with open(f'{ROOT}/{host}/log/qemu/{dom}.serial', errors='replace') as f:
            return f.read()
    except FileNotFoundError:
        return ''


def caps_set(host):
    """The migration capabilities libvirt last turned on in a QEMU of
    HOST, from its libvirtd log (the QMP it sent)."""
    last = None
    try:
        with open(f'{ROOT}/{host}/log/libvirtd.log', errors='replace') as f:
            for line in f:
                if 'migrate-set-capabilities' in line and 'msg=' in line:
                    last = line
    except OSError:
        return None
    if not last:
        return None
    return sorted(set(re.findall(r'"capability":"([a-z-]+)","state":true',
                                 last.replace('\\"', '"'))))


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise Failure(f'{what} after {timeout} s')


class Wire:
    """The migration network between SRC and DST: a forwarder from the
    socket path the source's QEMU connects to (in SRC's /run/hgm-mig) to
    the one the destination's QEMU listens on (in DST's).  cut() kills it
    and every connection it carries."""

    def __init__(self):
        self.proc = None

    def up(self):
        listen = f'{ROOT}/{SRC}/mig/{os.path.basename(MIG_SOCK)}'
        if os.path.exists(listen):
            os.unlink(listen)
        self.proc = subprocess.Popen(
            ['socat', f'UNIX-LISTEN:{listen},fork,mode=0666',
             f'UNIX-CONNECT:{ROOT}/{DST}/mig/{os.path.basename(MIG_SOCK)}'],
            start_new_session=True)
        wait_for(lambda: os.path.exists(listen), 10, 'the forwarder did not listen')

    def cut(self):
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None


def domain_xml(args, name, emulator, extra_qemu_args=()):
    mem = RAM_MIB[args.page]
    size, unit = (1, 'GiB') if args.page == '1G' else (2, 'MiB')
    kvm = args.accel == 'kvm'
    qemu_ns = ''
    if extra_qemu_args:
        qemu_ns = '  <qemu:commandline>\n' + ''.join(
            f"    <qemu:arg value='{a}'/>\n" for a in extra_qemu_args) + \
            '  </qemu:commandline>\n'
    return f"""<domain type='{'kvm' if kvm else 'qemu'}' \
xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <uuid>{uuid.uuid5(uuid.NAMESPACE_URL, 'hgm-lab:' + name)}</uuid>
  <memory unit='MiB'>{mem}</memory>
  <memoryBacking>
    <hugepages><page size='{size}' unit='{unit}'/></hugepages>
    <access mode='shared'/>
  </memoryBacking>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>/var/lib/libvirt/images/pattern-guest</kernel>
  </os>
  {"<cpu mode='host-passthrough'/>" if kvm else ''}
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
    <serial type='file'>
      <source path='/var/log/libvirt/qemu/{name}.serial'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
{qemu_ns}</domain>
"""


class Case:
    def __init__(self, args, name, wire):
        self.args, self.name, self.wire = args, name, wire
        self.case, *mods = name.split('+')
        self.mods = set(mods)
        unknown = self.mods - {'hgm-off', 'upstream-src', 'upstream-dst'}
        if self.case not in CASES or unknown:
            raise Failure(f'unknown case {name}')
        if self.mods & {'upstream-src', 'upstream-dst'} and \
                not args.upstream_qemu:
            raise Failure(f'{name} needs --upstream-qemu')
        self.src_qemu = args.upstream_qemu if 'upstream-src' in self.mods \
            else args.qemu
        self.dst_qemu = args.upstream_qemu if 'upstream-dst' in self.mods \
            else args.qemu
        # the destination places 4 KiB pieces: the fork on an HGM kernel,
        # with postcopy-hgm on (an upstream source's whole hugepages too)
        self.hgm = args.expect_hgm == 'yes' and not \
            self.mods & {'hgm-off', 'upstream-dst'}
        self.dom = f'pattern-{args.page.lower()}'
        self.src_fd = None
        self.max_pte = 0
        self.row = {'page': args.page, 'case': name}
        self.dmesg_lines = len(subprocess.run(
            ['dmesg'], stdout=subprocess.PIPE, text=True).stdout.splitlines())

    # -- pieces --------------------------------------------------------
    def start_guest(self):
        for h in (SRC, DST):
            shutil.copy(self.args.guest, f'{ROOT}/{h}/lib/images/pattern-guest')
            os.chmod(f'{ROOT}/{h}/lib/images/pattern-guest', 0o644)
        self.free0 = {h: hugetlbfs_free(h, self.args.page) for h in (SRC, DST)}
        path = f'{ROOT}/{SRC}/lib/images/{self.dom}.xml'
        with open(path, 'w') as f:
            f.write(domain_xml(self.args, self.dom, self.src_qemu))
        t0 = time.time()
        virsh(SRC, 'create', path)
        # libvirt starts QEMU with prealloc=on for hugepage RAM: most of
        # this is the kernel zeroing every hugepage
        t_create = time.time() - t0
        wait_for(lambda: serial(SRC, self.dom).count('.') >= 4, 600,
                 'the guest wrote no pattern')
        log(f'{self.name}: guest running on {SRC}, virsh create took '
            f'{t_create:.1f} s ({serial(SRC, self.dom).splitlines()[0][:60]})')
        self.src_pid = qemu_pid(SRC, self.dom)

    def migrate_cmd(self, *flags):
        cmd = ['migrate', '--live', '--p2p', '--verbose', '--postcopy'] + \
            list(flags)
        if 'hgm-off' in self.mods or self.dst_qemu != self.src_qemu:
            # the destination's own domain XML: another <emulator>, or
            # QEMU arguments of its own
            path = f'{ROOT}/{SRC}/lib/images/{self.dom}-dst.xml'
            extra = ['-global', 'migration.postcopy-hgm=off'] \
                if 'hgm-off' in self.mods else []
            with open(path, 'w') as f:
                f.write(domain_xml(self.args, self.dom, self.dst_qemu, extra))
            cmd += ['--xml', path]
        return cmd + [self.dom, uri(DST), f'unix://{MIG_SOCK}']

    def start_migrate(self, *flags):
        cmd = ['virsh', '-c', uri(SRC)] + self.migrate_cmd(*flags)
        log(f'{self.name}: {" ".join(cmd[3:])}')
        self.t_start = time.time()
        return subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def job_status(self):
        r = virsh(SRC, 'domjobinfo', self.dom, check=False)
        return r.stdout if r.returncode == 0 else ''

    def memory_processed(self):
        """MiB of RAM the source's migration job has sent so far."""
        m = re.search(r'^Memory processed:\s+([0-9.]+) (KiB|MiB|GiB)',
                      self.job_status(), re.M)
        if not m:
            return 0
        return float(m.group(1)) * {'KiB': 1 / 1024, 'MiB': 1,
                                    'GiB': 1024}[m.group(2)]

    def sample(self):
        """While migrating: hold the source's RAM, watch the destination."""
        if self.src_fd is None and self.src_pid:
            try:
                self.src_fd = ram_fd(self.src_pid)
            except (Failure, OSError):
                pass
        pid = qemu_pid(DST, self.dom)
        if pid:
            self.max_pte = max(self.max_pte, smaps_hugetlb(pid).get(
                'HugetlbPteMapped', 0))

    def finish(self, proc, timeout=1200):
        """Wait for virsh migrate; return (exit status, output)."""
        deadline = time.time() + timeout
        while proc.poll() is None:
            if time.time() > deadline:
                proc.kill()
                raise Failure(f'virsh migrate still running after {timeout} s')
            self.sample()
            time.sleep(0.2)
        out = proc.stdout.read()
        return proc.returncode, out

    def hgm_info(self):
        """The destination's query-postcopy-hgm; None from an upstream QEMU."""
        if 'upstream-dst' in self.mods:
            return None
        return qmp(DST, self.dom, 'query-postcopy-hgm')

    def check_after(self):
        """The migration has completed: check everything."""
        a = self.args
        self.row['total'] = time.time() - self.t_start
        if domstate(SRC, self.dom) is not None:
            raise Failure(f'the domain is still on {SRC}: {domstate(SRC, self.dom)}')
        state = domstate(DST, self.dom)
        if not state or not state.startswith('running'):
            raise Failure(f'the domain is not running on {DST}: {state}')
        if self.hgm:
            wait_for(lambda: self.hgm_info()['status'] == 'done', 600,
                     'HGM postcopy not done')
        dots = serial(DST, self.dom).count('.')
        wait_for(lambda: serial(DST, self.dom).count('.') > dots or
                 'BAD' in serial(DST, self.dom), 300,
                 'the guest stopped writing on the destination')
        virsh(DST, 'suspend', self.dom)
        info = self.hgm_info()
        for h in (SRC, DST):
            if 'BAD' in serial(h, self.dom):
                blocks = info.get('blocks', []) if info else []
                raise Failure(f'the guest found a bad page on {h}: '
                              f'{serial(h, self.dom).split("BAD", 1)[1][:80]}'
                              + ''.join(f'; {b["block"]}: {b["pages-present"]}'
                                        f' of {b["pages"]} pages present'
                                        for b in blocks))
        dst_pid = qemu_pid(DST, self.dom)
        smaps = smaps_hugetlb(dst_pid)
        whole = smaps.get(SMAPS_FIELD[a.page], 0)
        log(f'{self.name}: destination smaps {smaps}, PTE-mapped at most '
            f'{self.max_pte} kB during postcopy; query-postcopy-hgm ' +
            (f'status {info["status"]}, source-agreed '
             f'{info.get("source-agreed")}' if info else
             'absent (upstream QEMU)'))
        if smaps.get('HugetlbPteMapped', 0):
            raise Failure(f'guest RAM still PTE-mapped at the end: {smaps}')
        if SMAPS_FIELD[a.page] not in smaps:
            # a kernel without HGM has no Hugetlb*Mapped: every hugetlb
            # mapping is hugepage-sized there
            whole = smaps.get('Shared_Hugetlb', 0) + \
                smaps.get('Private_Hugetlb', 0)
        if whole < RAM_MIB[a.page] * 1024:
            raise Failure(f'guest RAM not mapped by {a.page} pages at the end: '
                          f'{smaps}')
        if self.hgm:
            if info['status'] != 'done' or len(info['blocks']) != 1:
                raise Failure(f'HGM was not used: {info}')
            b = info['blocks'][0]
            if b['collapsed'] != b['hugepages'] or b['pages-present'] != b['pages']:
                raise Failure(f'not every hugepage arrived and collapsed: {b}')
            # an upstream source sends whole hugepages, placed in pieces
            # that may all land between two looks at smaps
            if not self.max_pte and 'upstream-src' not in self.mods:
                raise Failure('smaps never showed PTE-mapped guest RAM')
            self.row['lat'] = b['latency']
            self.row['path'] = 'hgm'
        else:
            # off: postcopy-hgm=off; unused: auto, HGM cannot work here,
            # and the destination must say why
            if info and (info['status'] not in ('off', 'unused') or
                         info['status'] == 'unused' and
                         not info.get('reason')) or self.max_pte:
                raise Failure(f'HGM used where it should not be: {info}, '
                              f'{self.max_pte} kB PTE-mapped')
            self.row['lat'] = info.get('whole-page-latency') if info else None
            self.row['path'] = 'upstream'
        # libvirt resets the destination's capabilities once the migration
        # is over, and holds its monitor during postcopy: the source's
        # tell what both ran with
        caps = caps_set(SRC)
        log(f'{self.name}: migration capabilities libvirt set on the '
            f'source: {caps}')
        self.row['preempt'] = None if caps is None else \
            'postcopy-preempt' in caps
        if self.src_fd is None:
            raise Failure("never got hold of the source's guest RAM")
        check = [a.check]
        if a.accel == 'kvm':
            # KVM's kvmvapic patches its option ROM in guest RAM on the
            # destination (docs/libvirt.md); the guest's own pages are all
            # checked
            check += ['--skip', '0xc0000-0x100000']
        check += [f'/proc/self/fd/{self.src_fd}', f'/proc/{dst_pid}/fd/'
                  f'{self.dst_ram_fdno(dst_pid)}']
        r = subprocess.run(check, stdout=subprocess.PIPE, text=True,
                           pass_fds=(self.src_fd,))
        for line in r.stdout.splitlines():
            log(f'{self.name}: {line}')
        if r.returncode:
            raise Failure('the memory check failed')
        os.close(self.src_fd)
        self.src_fd = None
        self.check_hugepages(SRC)
        if self.case == 'monitor':
            self.monitor_after()
        virsh(DST, 'destroy', self.dom)
        self.check_hugepages(DST)
        self.row['ok'] = True

    def dst_ram_fdno(self, pid):
        fd = ram_fd(pid)
        try:
            target = os.readlink(f'/proc/self/fd/{fd}')
        finally:
            os.close(fd)
        for n in os.listdir(f'/proc/{pid}/fd'):
            try:
                if os.readlink(f'/proc/{pid}/fd/{n}') == target:
                    return n
            except OSError:
                pass
        raise Failure('lost the destination RAM file')

    def check_hugepages(self, host):
        free = wait_for(lambda: hugetlbfs_free(host, self.args.page)
                        == self.free0[host] and self.free0[host], 60,
                        f'{host} hugetlbfs not back to {self.free0[host]} free')
        log(f'{self.name}: {host} hugetlbfs back to {free} free {self.args.page} pages')

    def cleanup(self):
        if self.src_fd is not None:
            os.close(self.src_fd)
            self.src_fd = None
        for h in (SRC, DST):
            virsh(h, 'destroy', self.dom, check=False)

    # -- the cases -----------------------------------------------------
    def run(self):
        self.start_guest()
        self.wire.up()
        if self.case == 'after-precopy':
            proc = self.start_migrate('--postcopy-after-precopy')
        else:
            flags = ['--bandwidth', '8']
            if self.case != 'migrate-postcopy':
                # postcopy slow enough to be caught in the middle
                flags += ['--postcopy-bandwidth', '2']
            proc = self.start_migrate(*flags)
            # switch with most of the RAM still on the source
            wait_for(lambda: self.memory_processed() >= 16 or
                     proc.poll() is not None, 300, 'no migration job')
            if proc.poll() is not None:
                rc, out = self.finish(proc)
                raise Failure(f'virsh migrate ended before the switch to '
                              f'postcopy (exit {rc}): {out.strip()[-300:]}')
            log(f'{self.name}: virsh migrate-postcopy')
            # not waited for: it returns once libvirt has seen the switch,
            # and a KVM guest may have faulted in most of its RAM by then
            switch = subprocess.Popen(
                ['virsh', '-q', '-c', uri(SRC), 'migrate-postcopy', self.dom],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if self.case != 'migrate-postcopy':
                self.in_postcopy(proc)
            if switch.wait(timeout=300):
                raise Failure(f'virsh migrate-postcopy failed: '
                              f'{switch.stdout.read().strip()}')
        if self.case in ('cut-resume', 'abort-resume'):
            self.interrupt(proc)
            proc = self.start_migrate('--postcopy-resume')
        elif self.case == 'monitor':
            # libvirt 11.3 keeps the destination's job while postcopy runs
            # (its Finish phase waits for the end): a monitor command
            # waits 30 s for the job lock and fails
            t0 = time.time()
            r = virsh(DST, 'qemu-monitor-command', self.dom,
                      '{"execute":"query-postcopy-hgm"}', check=False)
            err = (r.stderr or '').strip()
            said = 'answered ' + r.stdout.strip()[:200] if r.returncode == 0 \
                else err
            log(f'{self.name}: query-postcopy-hgm during postcopy: {said} '
                f'after {time.time() - t0:.1f} s')
            if r.returncode and 'state change lock' not in err:
                raise Failure(f'query-postcopy-hgm during postcopy: {err}')
        rc, out = self.finish(proc)
        for line in out.strip().splitlines()[-3:]:
            log(f'{self.name}: virsh: {line}')
        if rc:
            dead = dead_hosts()
            if self.case in ('cut-resume', 'abort-resume') and \
                    DST in dead and self.libvirt_resume_crash():
                raise Skip('--postcopy-resume: the destination\'s libvirtd '
                           'segfaulted in qemuProcessIncomingDefNew(), the '
                           'libvirt 11.3.0 resume bug (docs/libvirt.md, '
                           '"Known problems"); everything up to the resume '
                           'passed')
            raise Failure(f'virsh migrate failed: {out.strip()[-300:]}' +
                          (f' (libvirtd of {", ".join(dead)} died)'
                           if dead else ''))
        self.wire.cut()
        self.check_after()

    def libvirt_resume_crash(self):
        """Has a libvirtd died of the resume bug since this case began?"""
        r = subprocess.run(['dmesg'], stdout=subprocess.PIPE, text=True)
        return any(RESUME_CRASH.search(line)
                   for line in r.stdout.splitlines()[self.dmesg_lines:])

    def in_postcopy(self, proc):
        """Wait until the destination runs in postcopy and has placed a
        few pieces: soon, a KVM guest faults in the rest fast."""
        def switched():
            # smaps first: libvirt's state and monitor lag behind
            self.sample()
            return proc.poll() is not None or self.max_pte or \
                'post-copy' in (domstate(SRC, self.dom) or '')
        wait_for(switched, 300, 'no switch to postcopy')
        if proc.poll() is not None:
            raise Failure('the migration ended before the test could '
                          'catch it in postcopy')
        if self.hgm:
            wait_for(lambda: self.sample() or self.max_pte, 120,
                     'destination never PTE-mapped guest RAM')

    def interrupt(self, proc):
        """Break the migration in postcopy; check both sides say so."""
        if self.case == 'cut-resume':
            log(f'{self.name}: cutting the migration stream')
            self.wire.cut()
        else:
            log(f'{self.name}: virsh domjobabort --postcopy')
            virsh(SRC, 'domjobabort', '--postcopy', self.dom)
        rc, out = self.finish(proc, 300)
        log(f'{self.name}: virsh migrate exited {rc}: '
            f'{out.strip().splitlines()[-1] if out.strip() else ""}')
        if rc == 0:
            raise Failure('virsh migrate succeeded although postcopy broke')
        state = wait_for(lambda: (domstate(SRC, self.dom) or '').startswith(
            'paused (post-copy failed)') and domstate(SRC, self.dom), 120,
            f'source not "paused (post-copy failed)": {domstate(SRC, self.dom)}')
        log(f'{self.name}: source {state}, destination '
            f'{domstate(DST, self.dom)}')
        if self.hgm:
            # libvirt keeps the destination's job while its Finish phase
            # waits, so ask the kernel, not the monitor: a hugepage with
            # pieces missing stays split (PTE-mapped) while paused
            time.sleep(2)
            pte = smaps_hugetlb(qemu_pid(DST, self.dom)).get(
                'HugetlbPteMapped', 0)
            log(f'{self.name}: destination while paused: {pte} kB of guest '
                f'RAM mapped in 4 KiB pieces')
            if not pte:
                raise Failure('no partly received hugepage left split '
                              'while postcopy is paused')
        self.wire.up()

    def hmp(self, command):
        return virsh(DST, 'qemu-monitor-command', '--hmp', self.dom, command)

    def qmp_error(self, execute, **arguments):
        """Run a QMP command that must fail; return the error.  virsh
        qemu-monitor-command hands QEMU's reply over as it is and exits
        0 when QEMU answers with an error: the reply must hold one."""
        msg = json.dumps({'execute': execute, 'arguments': arguments})
        r = virsh(DST, 'qemu-monitor-command', self.dom, msg, check=False)
        if r.returncode:
            err = r.stderr.strip()
            if 'error' not in err.lower():
                raise Failure(f'{msg}: no error message from virsh: {err!r}')
            return err
        try:
            reply = json.loads(r.stdout)
        except ValueError:
            raise Failure(f'{msg}: not a QMP reply: {r.stdout.strip()!r}')
        if 'error' not in reply:
            raise Failure(f'{msg} succeeded: {r.stdout.strip()}')
        e = reply['error']
        return f'error: {e.get("class")}: {e.get("desc")}'

    def monitor_after(self):
        """The HGM monitor commands through virsh once postcopy is over
        (libvirt lets them through only then): the query and its HMP
        form, and collapse requests, good and bad, each refused with an
        error virsh prints and nothing changed."""
        info = self.hgm_info()
        b = info['blocks'][0]
        block, hp = b['block'], b['page-size']
        text = self.hmp('info postcopy_hgm')
        log(f'{self.name}: HMP info postcopy_hgm: '
            f'{" / ".join(text.splitlines()[:3])}')
        if 'status: done' not in text or block not in text:
            raise Failure(f'info postcopy_hgm after postcopy: {text!r}')
        requests = [
            {'block': block}, {'gpa': hp, 'size': hp},
            {'block': 'no-such-block'}, {'block': block, 'offset': 4096},
            {'block': block, 'offset': b['hugepages'] * hp},
            {'block': block, 'size': hp + 4096}, {'gpa': 4096, 'size': hp},
            {'gpa': 1 << 45, 'size': hp}, {},
            {'block': block, 'gpa': 0, 'size': hp},
        ]
        for arguments in requests:
            err = self.qmp_error('migrate-postcopy-hgm-collapse', **arguments)
            log(f'{self.name}: collapse {json.dumps(arguments)}: '
                f'{err.splitlines()[-1]}')
        # numbers are bytes, as in QMP: a good range gets the same answer
        # as there (no HGM postcopy in progress any more)
        over = 'No postcopy migration with HGM is in progress'
        for command, want in (
                (f'migrate_postcopy_hgm_collapse {block}', over),
                (f'migrate_postcopy_hgm_collapse {block} {hp:#x} {hp:#x}',
                 over),
                (f'migrate_postcopy_hgm_collapse -g {hp:#x} {hp:#x}', over),
                (f'migrate_postcopy_hgm_collapse -g {hp} {hp}', over),
                ('migrate_postcopy_hgm_collapse -g zzz 0x200000', 'usage'),
                ('migrate_postcopy_hgm_collapse -g 0x200000', 'usage')):
            text = self.hmp(command)
            log(f'{self.name}: HMP {command}: {text.strip()}')
            if want not in text:
                raise Failure(f'HMP {command}: {text.strip()!r}, expected '
                              f'{want!r}')
        after = self.hgm_info()
        if after != info:
            raise Failure(f'refused collapses changed the state: {info} -> '
                          f'{after}')
        self.row['monitor'] = True

CASES = ('after-precopy', 'migrate-postcopy', 'cut-resume', 'abort-resume',
         'monitor')


def stuck_qemus():
    """Say what keeps QEMUs of libvirt's user alive, and kill them."""
    r = subprocess.run(['pgrep', '-u', 'libvirt-qemu', '-f', 'qemu-system'],
                       stdout=subprocess.PIPE, text=True)
    for pid in r.stdout.split():
        try:
            with open(f'/proc/{pid}/status') as f:
                st = [line.strip() for line in f if line.split(':')[0] in
                      ('Name', 'State', 'SigPnd', 'ShdPnd', 'SigBlk')]
            tasks = []
            for t in os.listdir(f'/proc/{pid}/task'):
                with open(f'/proc/{pid}/task/{t}/stat') as f:
                    state = f.read().rsplit(')', 1)[1].split()[0]
                with open(f'/proc/{pid}/task/{t}/wchan') as f:
                    wchan = f.read()
                with open(f'/proc/{pid}/task/{t}/comm') as f:
                    comm = f.read().strip()
                tasks.append(f'{t} {comm} {state} {wchan}')
            log(f'QEMU {pid} still there: {"; ".join(st)}; threads: '
                f'{", ".join(tasks)}')
            os.kill(int(pid), signal.SIGKILL)
        except OSError as e:
            log(f'QEMU {pid}: {e}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--guest', required=True, help='pattern-guest')
    ap.add_argument('--check', required=True, help='pattern-check')
    ap.add_argument('--accel', choices=['kvm', 'tcg'], default='kvm')
    ap.add_argument('--page', choices=['1G', '2M'], default='1G')
    ap.add_argument('--cases', default='after-precopy')
    ap.add_argument('--expect-hgm', choices=['yes', 'no'], default='yes')
    ap.add_argument('--upstream-qemu',
                    help='QEMU 10.0 without our patches, for +upstream-*')
    ap.add_argument('--hugepages', type=int, default=2,
                    help='each host\'s hugetlbfs limit, in pages')
    args = ap.parse_args()
    # a timeout's SIGTERM still stops the hosts and their QEMUs (finally)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    n2m = args.hugepages * (RAM_MIB['2M'] // 2) if args.page == '2M' else 0
    n1g = args.hugepages if args.page == '1G' else 0

    def start_hosts():
        if subprocess.run([LAB_HOSTS, 'start', '--hugepages-1g', str(n1g),
                           '--hugepages-2m', str(n2m), SRC, DST]).returncode:
            subprocess.run([LAB_HOSTS, 'stop'])
            print('the libvirt hosts did not start (above)')
            return False
        return True

    pool = '/sys/kernel/mm/hugepages/hugepages-%dkB/free_hugepages' % (
        RAM_MIB[args.page] * 1024 if args.page == '1G' else 2048)

    def pool_free():
        with open(pool) as f:
            return int(f.read())

    free0 = pool_free()

    def pool_back(timeout, when):
        """Wait for the hugepages the hosts had at the start."""
        try:
            wait_for(lambda: pool_free() >= free0, timeout,
                     f'{args.page} hugepages not back to {free0} free {when}')
            return True
        except Failure as e:
            log(f'{e} ({pool_free()} free)')
            return False

    if not start_hosts():
        print('0 passed, 1 failed')
        return 1
    wire = Wire()
    rows, failed, skipped = [], 0, 0
    try:
        for name in args.cases.split(','):
            log(f'== {args.page} {name}, guest under {args.accel}')
            c = None
            try:
                c = Case(args, name, wire)
                c.run()
            except Skip as e:
                log(f'{name}: SKIP: {e}')
                skipped += 1
                c.row['skip'] = str(e)
            except Exception as e:  # report, then go on with the next
                log(f'{name}: FAIL: {e}')
                failed += 1
                if c is None:
                    rows.append({'page': args.page, 'case': name,
                                 'error': str(e)})
                    continue
                c.row['error'] = str(e)
                for h in (SRC, DST):
                    try:
                        with open(f'{ROOT}/{h}/log/qemu/{c.dom}.log') as f:
                            tail = f.read()[-1500:]
                        log(f'{name}: {h} QEMU log: {tail}')
                    except OSError:
                        pass
            finally:
                wire.cut()
                if c:
                    c.cleanup()
            rows.append(c.row)
            dead = dead_hosts()
            if dead:
                log(f'libvirtd of {", ".join(dead)} gone: restarting the '
                    f'hosts')
                subprocess.run([LAB_HOSTS, 'stop'])
                if not pool_back(120, 'after the hosts stopped'):
                    stuck_qemus()
                    pool_back(60, 'after SIGKILL')
                if not start_hosts():
                    failed += 1
                    break
    finally:
        subprocess.run([LAB_HOSTS, 'stop'])

    print()
    print(f'{"page":<5} {"case":<30} {"path":<9} {"preempt":<8}{"faults":>7} '
          f'{"p50":>9} {"p99":>9} {"max":>9} {"total":>8}  memory')
    for r in rows:
        if 'error' in r:
            print(f'{r["page"]:<5} {r["case"]:<30} FAILED: {r["error"]}')
            continue
        if 'skip' in r:
            print(f'{r["page"]:<5} {r["case"]:<30} SKIPPED: {r["skip"]}')
            continue
        lat = r.get('lat')
        cells = [f'{lat["count"]:>7}'] + [
            f'{fmt_ns(lat[k]):>9}' for k in ('p50', 'p99', 'max')] if lat \
            else [f'{"-":>7}'] + [f'{"-":>9}'] * 3
        preempt = {True: 'on', False: 'off', None: '?'}[r.get('preempt')]
        print(f'{r["page"]:<5} {r["case"]:<30} {r["path"]:<9} {preempt:<8}'
              f'{" ".join(cells)} {r["total"]:>7.1f}s  OK')
    print('path: what the destination did (hgm: 4 KiB pieces, collapsed at '
          'the end; upstream: whole hugepages); faults: pages the guest '
          'waited for, latency from the fault to the page mapped '
          '(query-postcopy-hgm; "-" where the destination is upstream '
          'QEMU); memory OK: every byte checked')
    print(f'{len(rows) - failed - skipped} passed, {failed} failed, '
          f'{skipped} skipped')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

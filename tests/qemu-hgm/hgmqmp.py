"""QMP and /proc helpers for the QEMU fork's tests and demonstration.

Only the Python standard library: QMP over a unix socket, waiting for a
migration status, the hugetlb mapping sizes in a process's smaps, and the
file of a QEMU process's guest RAM (memory-backend-memfd).
"""

import json
import os
import re
import socket
import subprocess
import time


class QMP:
    def __init__(self, path, timeout=60):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.file = self.sock.makefile('rwb')
        self.events = []
        self._read()  # greeting
        self.cmd('qmp_capabilities')

    def _read(self):
        line = self.file.readline()
        if not line:
            raise EOFError('QMP connection closed')
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {'execute': name}
        if args:
            msg['arguments'] = args
        self.file.write(json.dumps(msg).encode() + b'\n')
        self.file.flush()
        while True:
            resp = self._read()
            if 'event' in resp:
                self.events.append(resp)
                continue
            if 'error' in resp:
                raise RuntimeError(f'{name}: {resp["error"]["desc"]}')
            return resp['return']

    def hmp(self, line):
        return self.cmd('human-monitor-command', **{'command-line': line})


def quit_qemu(qmp, proc, timeout=30):
    """Ask a QEMU to quit over QMP, and kill it if it has not exited after
    TIMEOUT seconds."""
    try:
        qmp.cmd('quit')
    except Exception:  # already gone, or its monitor is stuck
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_status(qmp, want, timeout, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = qmp.cmd('query-migrate')
        status = info.get('status')
        if status in want:
            return info
        if status in ('failed', 'cancelled'):
            raise RuntimeError(f'migration {status}: {info.get("error-desc")}')
        time.sleep(0.2)
    raise TimeoutError(f'migration still {status} after {timeout} s')


def smaps_hugetlb(pid, names=('memfd:mem', 'mem (deleted)')):
    """Sum of the Hugetlb*Mapped fields (and Private_/Shared_Hugetlb, kB)
    over the mappings of guest RAM: those whose line names one of NAMES
    (by default the memfd of memory-backend-memfd id=mem)."""
    sums = {}
    current = None
    with open(f'/proc/{pid}/smaps') as f:
        for line in f:
            if re.match(r'^[0-9a-f]+-[0-9a-f]+ ', line):
                current = any(n in line for n in names)
                continue
            if not current:
                continue
            m = re.match(r'^(Hugetlb\w*|Private_Hugetlb|Shared_Hugetlb):\s+(\d+) kB',
                         line)
            if m:
                sums[m.group(1)] = sums.get(m.group(1), 0) + int(m.group(2))
    return sums


def guest_ram_file(pid):
    """/proc/PID/fd/N of the memory-backend-memfd holding guest RAM."""
    fds = f'/proc/{pid}/fd'
    for fd in os.listdir(fds):
        try:
            target = os.readlink(f'{fds}/{fd}')
        except OSError:
            continue
        if target.startswith('/memfd:memory-backend-memfd'):
            return f'{fds}/{fd}'
    raise RuntimeError(f'no memory-backend-memfd among the fds of {pid}')

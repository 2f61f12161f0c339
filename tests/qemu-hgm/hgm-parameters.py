#!/usr/bin/python3
"""The fork's two migration parameters as -global properties.

Starts the fork with -global migration.postcopy-hgm=... and
-global migration.postcopy-hgm-collapse=..., reads them back with
query-migrate-parameters and "info migrate_parameters", and checks that a
value the enum does not have is refused at startup with a message that
names it.  A destination started by libvirt knows neither parameter, so
-global (in <qemu:commandline>) is how a user sets them there.

usage: hgm-parameters.py QEMU
"""

import os
import subprocess
import sys
import tempfile
import time

from hgmqmp import QMP


def qemu(binary, extra, qmp=None):
    cmd = [binary, '-nodefaults', '-no-user-config', '-display', 'none',
           '-machine', 'none', '-accel', 'tcg', *extra]
    if qmp:
        cmd += ['-qmp', f'unix:{qmp},server=on,wait=off']
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def main():
    binary = sys.argv[1]
    failed = 0
    d = tempfile.mkdtemp(prefix='hgm-parameters-')
    cases = [((), 'auto', 'end'),
             (('postcopy-hgm=off', 'postcopy-hgm-collapse=hugepage'),
              'off', 'hugepage'),
             (('postcopy-hgm=on',), 'on', 'end')]
    for i, (globs, hgm, collapse) in enumerate(cases):
        path = f'{d}/qmp{i}'
        extra = [a for g in globs for a in ('-global', f'migration.{g}')]
        p = qemu(binary, extra, path)
        deadline = time.time() + 30
        while not os.path.exists(path) and p.poll() is None and \
                time.time() < deadline:
            time.sleep(0.05)
        if p.poll() is not None or not os.path.exists(path):
            out = p.communicate(timeout=30)[0] if p.poll() is not None else ''
            p.kill()
            print(f'FAIL: -global {" ".join(globs)}: QEMU did not start:'
                  f' {out.strip()!r}')
            failed += 1
            continue
        try:
            q = QMP(path, timeout=30)
            params = q.cmd('query-migrate-parameters')
            hmp = q.hmp('info migrate_parameters')
            q.cmd('quit')
        finally:
            p.wait(30)
        got = (params.get('postcopy-hgm'), params.get('postcopy-hgm-collapse'))
        ok = (got == (hgm, collapse) and f'postcopy-hgm: {hgm}' in hmp and
              f'postcopy-hgm-collapse: {collapse}' in hmp)
        print(f'{"ok" if ok else "FAIL"}: -global {" ".join(globs) or "(none)"}:'
              f' query-migrate-parameters {got}, expected {(hgm, collapse)}')
        failed += not ok
    for bad in ('postcopy-hgm-collapse=sometimes', 'postcopy-hgm=maybe'):
        p = qemu(binary, ['-global', f'migration.{bad}'])
        out, _ = p.communicate(timeout=30)
        value = bad.split('=')[1]
        ok = (p.returncode == 1 and
              f"does not accept value '{value}'" in out)
        print(f'{"ok" if ok else "FAIL"}: -global migration.{bad}: exit'
              f' {p.returncode}, {out.strip()!r}')
        failed += not ok
    os.system(f'rm -rf {d}')
    print(f'{len(cases) + 2 - failed} passed, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

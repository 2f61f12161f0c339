# shellcheck shell=bash
# Helpers for the test scripts under tests/unit and tests/lab-tests.
set -euo pipefail
: "${HGM_TOP:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
. "$HGM_TOP/scripts/hgm-common.sh"
: "${HGM_BUILDDIR:=$HGM_TOP/build}"
: "${LAB:=$HGM_TOP/tests/lab/lab}"

# skip REASON: end this test as skipped (exit 4, the kselftest convention).
skip() { echo "skip: $*"; exit 4; }
# fail MESSAGE: end this test as failed.
fail() { echo "FAIL: $*"; exit 1; }
# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
	if [ "$2" != "$3" ]; then fail "$1: expected '$2', got '$3'"; fi
	echo "ok: $1 = '$3'"
}

# need_lab: skip unless the lab kernel and QEMU have been built.
need_lab() {
	[ -e "$HGM_CACHE/build/linux-lab/arch/x86/boot/bzImage" ] ||
		skip "no lab kernel in $HGM_CACHE (run ./configure && meson compile -C build)"
	[ -x "$HGM_CACHE/build/qemu/qemu-system-x86_64" ] ||
		skip "no lab QEMU in $HGM_CACHE (run ./configure && meson compile -C build)"
}

# retry_hung CMD [ARG...]: run CMD (one that boots the lab through
# tests/lab/lab), capturing stdout+stderr in $LAB_OUT and the exit status in
# $LAB_RC.  A guest that stops answering (lab exit 123) is run again, up to
# twice, saying so; a third hang fails.  LAB_NO_RETRY=1 turns the retries
# off.  Why retry at all: see docs/lab.md, "Hangs".
retry_hung() {
	local try
	for try in 1 2 3; do
		LAB_RC=0
		LAB_OUT=$("$@" 2>&1) || LAB_RC=$?
		printf '%s\n' "$LAB_OUT" | sed 's/^/    lab| /'
		[ "$LAB_RC" -eq 123 ] && [ "$try" != 3 ] && [ -z "${LAB_NO_RETRY:-}" ] || break
		echo "note: the lab guest hung (console log kept, above); running it again"
	done
}

# lab_run ARGS...: retry_hung tests/lab/lab run ARGS...
lab_run() {
	retry_hung "$LAB" run "$@"
}

# reserve_hugepages SIZE_KB COUNT: make sure COUNT pages of that size are
# free, raising nr_hugepages if needed; the old value is restored on exit.
reserve_hugepages() {
	local d=/sys/kernel/mm/hugepages/hugepages-$1kB free nr
	[ -d "$d" ] || return 1
	free=$(cat "$d/free_hugepages")
	[ "$free" -ge "$2" ] && return 0
	[ -w "$d/nr_hugepages" ] || return 1
	nr=$(cat "$d/nr_hugepages")
	HGM_RESTORE_HUGEPAGES+=("$d/nr_hugepages=$nr")
	trap 'for r in "${HGM_RESTORE_HUGEPAGES[@]}"; do echo "${r#*=}" >"${r%%=*}"; done' EXIT
	echo $((nr + $2 - free)) >"$d/nr_hugepages" 2>/dev/null || true
	[ "$(cat "$d/free_hugepages")" -ge "$2" ]
}
HGM_RESTORE_HUGEPAGES=()

# shellcheck shell=bash
# Common helpers for the HGM build scripts.  Source this file; it sets no
# options of its own beyond what the caller chose.

HGM_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Where fetched sources, pristine trees and the big build outputs live.  Kept
# outside the git tree so a fresh clone stays small and a second build is
# incremental.  Override with HGM_CACHE=/some/dir.
HGM_CACHE=${HGM_CACHE:-/var/cache/hgm}

# Pinned upstreams.  Linux comes from Debian's linux-source-6.12 binary
# package, QEMU from the 10.0 series of Debian's qemu source package (the one
# Debian 13 "trixie" carries).  Bump these deliberately: the patch queues must
# then apply again without fuzz.
HGM_LINUX_PKG=linux-source-6.12
HGM_LINUX_VERSION=${HGM_LINUX_VERSION:-6.12.117-1~deb12u1}
HGM_QEMU_SUITE=trixie
HGM_QEMU_VERSION=${HGM_QEMU_VERSION:-1:10.0.13+ds-0+deb13u1}

hgm_log() { printf '[hgm] %s\n' "$*" >&2; }
hgm_die() { printf '[hgm] error: %s\n' "$*" >&2; exit 1; }

# hgm_step NAME CMD... : run CMD with a progress line and its duration.
hgm_step() {
	local name=$1 t0 rc=0
	shift
	t0=$(date +%s)
	hgm_log "$name ..."
	"$@" || rc=$?
	if [ "$rc" -ne 0 ]; then
		hgm_log "$name failed (exit $rc) after $(($(date +%s) - t0)) s"
		return "$rc"
	fi
	hgm_log "$name done in $(($(date +%s) - t0)) s"
}

hgm_need_root() {
	[ "$(id -u)" -eq 0 ] || hgm_die "$1 needs root (it uses apt and reserves hugepages)"
}

# Git identity and dates used for the commits the build makes itself, so the
# pristine base commit has the same hash on every machine.
export GIT_AUTHOR_NAME="HGM developers" GIT_AUTHOR_EMAIL="hgm-dev@localhost"
export GIT_COMMITTER_NAME="HGM developers" GIT_COMMITTER_EMAIL="hgm-dev@localhost"

# hgm_tree COMPONENT: the cached git repository holding pristine upstream
# (tag "upstream") and the patched tree the build uses (branch "hgm-build").
hgm_tree() { printf '%s/src/%s\n' "$HGM_CACHE" "$1"; }

# hgm_queue_dir COMPONENT: where that component's patch queue lives.
hgm_queue_dir() {
	case $1 in
	linux) printf '%s/linux-patches\n' "$HGM_TOP" ;;
	qemu) printf '%s/qemu\n' "$HGM_TOP" ;;
	*) hgm_die "unknown component '$1' (expected linux or qemu)" ;;
	esac
}

# hgm_queue_patches COMPONENT: the patch files named by its series file, in
# order, one absolute path a line.  Blank lines and # comments are ignored.
hgm_queue_patches() {
	local dir p
	dir=$(hgm_queue_dir "$1")
	[ -e "$dir/series" ] || hgm_die "$dir/series is missing"
	while read -r p _; do
		case $p in '' | '#'*) continue ;; esac
		[ -e "$dir/$p" ] || hgm_die "$dir/series names $p, which does not exist"
		printf '%s/%s\n' "$dir" "$p"
	done <"$dir/series"
}

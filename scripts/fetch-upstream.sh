#!/usr/bin/env bash
# fetch-upstream.sh linux|qemu
#
# Make the cached git repository of a pinned upstream and check out our patch
# queue on top of it:
#   $HGM_CACHE/src/COMPONENT   tag "upstream"  = the pristine source, one commit
#                              branch "hgm-build" = upstream + one commit a patch
# The source comes from Debian's packages through apt, by name and exact
# version.  The queue is applied with "git am", which refuses any patch that
# does not apply exactly (no fuzz, no offsets into the wrong context); the
# first such patch is named and the build stops.
#
# Checking out with git touches only the files that differ, so a changed
# queue rebuilds incrementally.
set -euo pipefail
. "$(dirname "$0")/hgm-common.sh"

comp=${1:?usage: fetch-upstream.sh linux|qemu}
dl=$HGM_CACHE/dl
repo=$(hgm_tree "$comp")
mkdir -p "$dl" "$HGM_CACHE/src"

# Unpack the pristine source of $comp into directory $1.
unpack_linux() {
	local deb
	deb=$(ls "$dl"/"${HGM_LINUX_PKG}_${HGM_LINUX_VERSION}"_*.deb 2>/dev/null | head -n1 || true)
	if [ -z "$deb" ]; then
		(cd "$dl" && apt-get -o APT::Sandbox::User=root download "$HGM_LINUX_PKG=$HGM_LINUX_VERSION") ||
			hgm_die "cannot download $HGM_LINUX_PKG=$HGM_LINUX_VERSION; 'apt-cache policy $HGM_LINUX_PKG' lists the versions on offer (bump HGM_LINUX_VERSION in scripts/hgm-common.sh, then check the queue still applies)"
		deb=$(ls "$dl"/"${HGM_LINUX_PKG}_${HGM_LINUX_VERSION}"_*.deb | head -n1)
	fi
	dpkg-deb --fsys-tarfile "$deb" |
		tar -xO "./usr/src/$HGM_LINUX_PKG.tar.xz" |
		tar -xJ -C "$1" --strip-components=1
}

unpack_qemu() {
	local orig
	orig=$(ls "$dl"/qemu_*.orig.tar.* 2>/dev/null | head -n1 || true)
	if [ -z "$orig" ]; then
		(cd "$dl" && apt-get -o APT::Sandbox::User=root source --download-only "qemu=$HGM_QEMU_VERSION") ||
			hgm_die "cannot download the qemu=$HGM_QEMU_VERSION source package; 'apt-cache showsrc qemu' lists the versions on offer (scripts/install-deps.sh adds the $HGM_QEMU_SUITE deb-src entry; bump HGM_QEMU_VERSION in scripts/hgm-common.sh)"
		orig=$(ls "$dl"/qemu_*.orig.tar.* | head -n1)
	fi
	# Upstream's release tarball as Debian repacked it (+ds: firmware blobs
	# removed).  Debian's own packaging patches are not applied: the fork
	# sits on upstream QEMU.
	tar -xf "$orig" -C "$1" --strip-components=1
}

pinned_version() {
	case $comp in
	linux) echo "$HGM_LINUX_PKG $HGM_LINUX_VERSION" ;;
	qemu) echo "qemu (source) $HGM_QEMU_VERSION" ;;
	*) hgm_die "unknown component '$comp' (expected linux or qemu)" ;;
	esac
}

want=$(pinned_version)
if [ ! -e "$repo/.git/hgm-upstream" ] || [ "$(cat "$repo/.git/hgm-upstream")" != "$want" ]; then
	rm -rf "$repo" "$repo.tmp"
	mkdir -p "$repo.tmp"
	hgm_step "unpack $want" "unpack_$comp" "$repo.tmp"
	(
		cd "$repo.tmp"
		git init -q -b pristine
		git config core.autocrlf false
		git config gc.auto 0
		hgm_step "record pristine $comp in git" git add -A -f .
		GIT_AUTHOR_DATE="2000-01-01T00:00:00Z" GIT_COMMITTER_DATE="2000-01-01T00:00:00Z" \
			git commit -q --no-verify -m "upstream: $want"
		git tag upstream
		printf '%s\n' "$want" >.git/hgm-upstream
	)
	mv "$repo.tmp" "$repo"
fi

# Apply the queue unless the checked-out hgm-build already matches it.
mapfile -t patches < <(hgm_queue_patches "$comp")
stamp=$( (echo "$want"; cat "$(hgm_queue_dir "$comp")/series" "${patches[@]}" /dev/null) | sha256sum | cut -d' ' -f1)
cd "$repo"
if [ "$(cat .git/hgm-queue 2>/dev/null)" = "$stamp" ] &&
	[ "$(git symbolic-ref -q --short HEAD)" = hgm-build ] &&
	[ -z "$(git status --porcelain --untracked-files=no)" ]; then
	hgm_log "$comp: $want + ${#patches[@]} patches already checked out"
	exit 0
fi
rm -f .git/hgm-queue
git am --abort >/dev/null 2>&1 || true

# Re-applying the queue rewrites every file it touches.  Remember those
# files' times, so the ones whose content ends up unchanged can get them
# back and are not rebuilt.
old=$(git rev-parse -q --verify HEAD || true)
mtimes=$(mktemp)
{
	[ -z "$old" ] || git diff --name-only refs/tags/upstream "$old"
	for p in "${patches[@]}"; do
		git apply --numstat "$p" 2>/dev/null | cut -f3 || true
	done
} | sort -u | while read -r f; do
	if [ -f "$f" ]; then stat -c '%Y %n' -- "$f"; fi
done >"$mtimes" || true

git checkout -q -f -B hgm-build refs/tags/upstream
for p in "${patches[@]}"; do
	if ! GIT_COMMITTER_DATE="2000-01-01T00:00:00Z" git am -q --no-3way --keep-cr "$p" >/dev/null 2>am.err; then
		cat am.err >&2 || true
		git am --abort >/dev/null 2>&1 || true
		rm -f am.err
		hgm_die "$comp: patch ${p#"$HGM_TOP"/} does not apply to $want without fuzz; refresh the queue (scripts/patch-queue import $comp, rebase, export)"
	fi
done
rm -f am.err
if [ -n "$old" ]; then
	changed=$(git diff --name-only "$old" HEAD)
	while read -r t f; do
		if [ -f "$f" ] && ! grep -qxF -- "$f" <<<"$changed"; then
			touch -d "@$t" -- "$f"
		fi
	done <"$mtimes"
fi
rm -f "$mtimes"
echo "$stamp" >.git/hgm-queue
hgm_log "$comp: $want + ${#patches[@]} patches applied"
echo "$want + ${#patches[@]} patches"  >.git/hgm-version

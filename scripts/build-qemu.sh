#!/usr/bin/env bash
# build-qemu.sh [--stamp FILE] [--upstream] [NINJA-TARGET...]: configure
# (once) and build the patched QEMU in $HGM_CACHE/build/qemu:
# qemu-system-x86_64 (KVM, TCG, virtfs, slirp), qemu-img and the x86 option
# ROMs the lab's -kernel boot needs.  Extra ninja targets (for example
# tests/qtest/migration-test) may be given as arguments.
#
# QEMU links libmigration-hgm statically: built in our meson build
# directory ($HGM_BUILDDIR, default ./build), staged with a .pc file for
# pkg-config in $HGM_CACHE/build/libmigration-hgm.
#
# --upstream builds the peer the fallback tests migrate with instead:
# qemu-system-x86_64 of the same QEMU release without our migration
# patches (only 0001, the build fix for Debian's repacked source), from a
# git worktree of the same repository in $HGM_CACHE/src/qemu-upstream,
# into $HGM_CACHE/build/qemu-upstream.
set -euo pipefail
. "$(dirname "$0")/hgm-common.sh"

stamp_file= upstream=
while [ $# -gt 0 ]; do
	case $1 in
	--stamp) stamp_file=$2; shift 2 ;;
	--upstream) upstream=1; shift ;;
	*) break ;;
	esac
done
repo=$(hgm_tree qemu)
[ -d "$repo/.git" ] || hgm_die "$repo is missing; run ./configure first"

# upstream_tree DIR: check out in DIR the pristine release plus the build
# fix (the first patch of our queue), again when either changed.
upstream_tree() {
	local wt=$1 fix want
	fix=$(grep -v '^#' "$HGM_TOP/qemu/series" | grep -v '^$' | head -n1)
	case $fix in 0001-*) ;; *) fix= ;; esac
	[ -n "$fix" ] || hgm_die "qemu/series does not start with the build fix 0001"
	want=$(git -C "$repo" rev-parse refs/tags/upstream)-$(sha256sum <"$HGM_TOP/qemu/$fix" | cut -c1-16)
	[ "$(cat "$wt.hgm-tree" 2>/dev/null)" != "$want" ] || [ ! -e "$wt/.git" ] || return 0
	rm -rf "$wt" "$wt.hgm-tree"
	git -C "$repo" worktree prune
	git -C "$repo" worktree add -q --detach "$wt" refs/tags/upstream
	git -C "$wt" -c user.name=hgm-build -c user.email=hgm-build@localhost \
		am -q --no-3way "$HGM_TOP/qemu/$fix" ||
		hgm_die "qemu/$fix does not apply to the pristine QEMU"
	echo "$want" >"$wt.hgm-tree"
}

extra_args=()
if [ -n "$upstream" ]; then
	src=$HGM_CACHE/src/qemu-upstream
	out=$HGM_CACHE/build/qemu-upstream
	upstream_tree "$src"
	stage=
	targets=(qemu-system-x86_64)
else
	src=$repo
	out=$HGM_CACHE/build/qemu
	grep -q "^option('migration_hgm'" "$src/meson_options.txt" ||
		hgm_die "$src predates the QEMU queue's libmigration-hgm patch; run ./configure to apply the queue again"

	builddir=${HGM_BUILDDIR:-$HGM_TOP/build}
	mhgm_lib=$builddir/migration-hgm/libmigration-hgm.a
	[ -e "$mhgm_lib" ] ||
		hgm_die "$mhgm_lib is missing; build it first: ninja -C $builddir migration-hgm/libmigration-hgm.a"
	# Stage the library and its header at a fixed path for QEMU's build,
	# with a .pc file for pkg-config, so that QEMU's configuration does not
	# depend on where this checkout is (another clone reuses the QEMU
	# build).  install -C leaves unchanged files alone: ninja relinks QEMU
	# only when the library changed.
	stage=$HGM_CACHE/build/libmigration-hgm
	mkdir -p "$stage/include" "$stage/lib"
	install -C -m 644 "$mhgm_lib" "$stage/lib/libmigration-hgm.a"
	install -C -m 644 "$HGM_TOP/migration-hgm/include/migration-hgm.h" "$stage/include/migration-hgm.h"
	version=$(sed -n 's/^Version: //p' "$builddir/meson-uninstalled/libmigration-hgm-uninstalled.pc" 2>/dev/null)
	[ -n "$version" ] || hgm_die "no libmigration-hgm version in $builddir/meson-uninstalled; run ./configure first"
	printf '%s\n' "prefix=$stage" "" "Name: libmigration-hgm" \
		"Description: HugeTLB high-granularity mapping for postcopy live migration" \
		"Version: $version" 'Libs: -L${prefix}/lib -lmigration-hgm' \
		"Libs.private: -pthread" 'Cflags: -I${prefix}/include' >"$stage/libmigration-hgm.pc.new"
	if cmp -s "$stage/libmigration-hgm.pc.new" "$stage/libmigration-hgm.pc"; then
		rm "$stage/libmigration-hgm.pc.new"
	else
		mv "$stage/libmigration-hgm.pc.new" "$stage/libmigration-hgm.pc"
	fi
	export PKG_CONFIG_PATH=$stage${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
	extra_args=(--enable-migration-hgm)
	targets=(qemu-system-x86_64 qemu-img "$@")
fi

# Debian's source package strips the bundled meson wheel: QEMU 10.0 needs
# meson >= 1.5, which scripts/install-deps.sh installs from
# bookworm-backports.  --python points at Debian's interpreter so QEMU's venv
# sees that meson (a pyenv python on PATH would not).
args=(
	--target-list=x86_64-softmmu
	--python=/usr/bin/python3
	--disable-download
	--disable-install-blobs
	--disable-docs
	--disable-werror
	--enable-kvm --enable-tcg --enable-virtfs --enable-slirp --enable-tools
	--disable-gtk --disable-sdl --disable-vnc --disable-opengl --disable-spice
	--disable-xen --disable-guest-agent
	"${extra_args[@]}"
)
stamp=$(printf '%s\n' "${args[@]}" "$stage" | sha256sum | cut -d' ' -f1)
mkdir -p "$out"
if [ ! -e "$out/build.ninja" ] || [ "$(cat "$out/.hgm-configure" 2>/dev/null)" != "$stamp" ]; then
	rm -rf "$out"
	mkdir -p "$out"
	(cd "$out" && hgm_step "configure QEMU" "$src/configure" "${args[@]}" >configure.log 2>&1) || {
		tail -n 40 "$out/configure.log" >&2
		hgm_die "QEMU configure failed; full log in $out/configure.log"
	}
	echo "$stamp" >"$out/.hgm-configure"
fi
hgm_step "build ${upstream:+upstream }QEMU (${targets[*]})" ninja -C "$out" -j"$(nproc)" "${targets[@]}"

# The option ROMs that -kernel needs (Linux and multiboot kernels) are built
# by make, not ninja, and only when configure found a compiler for 16-bit
# x86 code (gcc-multilib).
[ -e "$out/pc-bios/optionrom/config.mak" ] ||
	hgm_die "QEMU configure found no i386 compiler for the option ROMs; install gcc-multilib and rerun"
hgm_step "build QEMU option ROMs" make -s -C "$out/pc-bios/optionrom" linuxboot_dma.bin \
	multiboot_dma.bin kvmvapic.bin

# Firmware directory for -L: the source package has no blobs, so take the
# BIOS and the virtio NIC ROM from Debian's seabios and ipxe-qemu packages.
fw=$out/lab-firmware
mkdir -p "$fw"
ln -sf /usr/share/seabios/bios-256k.bin "$fw/bios-256k.bin"
ln -sf /usr/lib/ipxe/qemu/efi-virtio.rom "$fw/efi-virtio.rom"
ln -sf ../pc-bios/optionrom/linuxboot_dma.bin "$fw/linuxboot_dma.bin"
ln -sf ../pc-bios/optionrom/kvmvapic.bin "$fw/kvmvapic.bin"
ln -sf ../pc-bios/optionrom/multiboot_dma.bin "$fw/multiboot_dma.bin"
for f in "$fw"/*; do
	[ -e "$f" ] || hgm_die "firmware $f is missing (is the seabios/ipxe-qemu package installed?)"
done
# QEMU run from its build directory (as QEMU's qtests do) looks for firmware
# in its data directory there, qemu-bundle/<prefix>/share/qemu: give it
# Debian's BIOS, VGA BIOSes and NIC ROMs, and the option ROMs built above.
datadirs=("$out"/qemu-bundle/*/*/share/qemu)
datadir=${datadirs[0]}
[ -d "$datadir" ] || hgm_die "no data directory in $out/qemu-bundle/*/*/share/qemu"
for f in /usr/share/seabios/bios-256k.bin /usr/share/seabios/bios-microvm.bin \
	/usr/share/seabios/vgabios-*.bin \
	/usr/lib/ipxe/qemu/efi-*.rom "$out"/pc-bios/optionrom/linuxboot_dma.bin \
	"$out"/pc-bios/optionrom/multiboot_dma.bin "$out"/pc-bios/optionrom/kvmvapic.bin; do
	ln -sf "$f" "$datadir/${f##*/}"
done
hgm_log "QEMU: $("$out/qemu-system-x86_64" --version | head -n1)"
[ -z "$stamp_file" ] || touch "$stamp_file"

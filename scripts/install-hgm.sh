#!/usr/bin/env bash
# install-hgm.sh: install the QEMU fork and libmigration-hgm on a host.
#
# usage: scripts/install-hgm.sh [--prefix DIR] [--destdir DIR] [--builddir DIR]
#                               [--upstream]
#
#   --prefix DIR    where they go (default /opt/hgm):
#                     DIR/bin/qemu-system-x86_64, DIR/bin/qemu-img
#                     DIR/share/qemu/     firmware: Debian's seabios and
#                                         ipxe-qemu (symlinks), our option ROMs
#                     DIR/lib/libmigration-hgm.{so*,a}, DIR/lib/pkgconfig/
#                     DIR/include/migration-hgm.h
#   --destdir DIR   stage the tree under DIR instead of / (packaging, tests)
#   --builddir DIR  the meson build directory (default build)
#   --upstream      install the same QEMU release built without our
#                   patches instead (meson compile -C build qemu-upstream),
#                   qemu-system-x86_64 and its firmware only, default
#                   prefix /opt/qemu-upstream: the
#                   peer of the fallback tests
#
# The prefix keeps the fork apart from Debian's qemu-system-x86, which owns
# /usr/bin/qemu-system-x86_64 (and which libvirt's package pulls in): a
# domain uses the fork through <emulator>DIR/bin/qemu-system-x86_64</emulator>
# (docs/libvirt.md).  QEMU finds its data directory relative to its binary,
# so the staged tree works where it is too.  QEMU links libmigration-hgm
# statically; the shared library is for other VMMs.  Needs the build:
# ./configure && meson compile -C build.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/hgm-common.sh"

prefix="" destdir="" builddir=$top/build upstream=
while [ $# -gt 0 ]; do
	case $1 in
	--prefix) prefix=$2; shift 2 ;;
	--destdir) destdir=$2; shift 2 ;;
	--builddir) builddir=$2; shift 2 ;;
	--upstream) upstream=1; shift ;;
	--stamp) stamp_file=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//p}' "$0"; exit 0 ;;
	*) hgm_die "install-hgm.sh: unknown option '$1' (see --help)" ;;
	esac
done
if [ -n "$upstream" ]; then
	: "${prefix:=/opt/qemu-upstream}"
	qemu=$HGM_CACHE/build/qemu-upstream build_cmd="meson compile -C build qemu-upstream"
else
	: "${prefix:=/opt/hgm}"
	qemu=$HGM_CACHE/build/qemu build_cmd="./configure && meson compile -C build"
fi
case $prefix in /*) ;; *) hgm_die "--prefix must be an absolute path, not '$prefix'" ;; esac

[ -x "$qemu/qemu-system-x86_64" ] ||
	hgm_die "no QEMU build in $qemu; run $build_cmd"
lib=$builddir/migration-hgm
[ -n "$upstream" ] || [ -e "$lib/libmigration-hgm.a" ] ||
	hgm_die "no libmigration-hgm in $lib; run meson compile -C $builddir"

d=$destdir$prefix
mkdir -p "$d/bin" "$d/share/qemu"
# the upstream build makes qemu-system-x86_64 only
install -C -m 755 "$qemu/qemu-system-x86_64" "$d/bin/"
[ -n "$upstream" ] || install -C -m 755 "$qemu/qemu-img" "$d/bin/"
cp -rT "$qemu/pc-bios/keymaps" "$d/share/qemu/keymaps" 2>/dev/null || true
install -C -m 644 "$qemu"/pc-bios/optionrom/{linuxboot_dma,multiboot_dma,kvmvapic}.bin "$d/share/qemu/"
for f in /usr/share/seabios/bios-256k.bin /usr/share/seabios/vgabios-*.bin \
	/usr/lib/ipxe/qemu/efi-*.rom; do
	[ -e "$f" ] || hgm_die "firmware $f is missing (install seabios and ipxe-qemu)"
	ln -sfn "$f" "$d/share/qemu/${f##*/}"
done

if [ -n "$upstream" ]; then
	"$d/bin/qemu-system-x86_64" --version | head -n1 | grep -q . ||
		hgm_die "the installed QEMU in $d/bin does not run"
	hgm_log "installed QEMU without our patches in $d"
	[ -z "${stamp_file:-}" ] || touch "$stamp_file"
	exit 0
fi
mkdir -p "$d/lib/pkgconfig" "$d/include"
for f in "$lib"/libmigration-hgm.so*; do
	[ -d "$f" ] || cp -P "$f" "$d/lib/"
done
install -C -m 644 "$lib/libmigration-hgm.a" "$d/lib/"
install -C -m 644 "$top/migration-hgm/include/migration-hgm.h" "$d/include/"
version=$(sed -n "s/^mhgm_version = '\(.*\)'/\1/p" "$top/migration-hgm/meson.build")
cat >"$d/lib/pkgconfig/libmigration-hgm.pc" <<EOF
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: libmigration-hgm
Description: HugeTLB high-granularity mapping for postcopy live migration
Version: $version
Libs: -L\${libdir} -lmigration-hgm
Libs.private: -pthread
Cflags: -I\${includedir}
EOF

"$d/bin/qemu-system-x86_64" --version | head -n1 | grep -q . ||
	hgm_die "the installed QEMU in $d/bin does not run"
hgm_log "installed the QEMU fork and libmigration-hgm $version in $d"
[ -z "${stamp_file:-}" ] || touch "$stamp_file"

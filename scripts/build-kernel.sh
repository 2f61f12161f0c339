#!/usr/bin/env bash
# build-kernel.sh [--stamp FILE] [VARIANT]
#
# Build the lab kernel (a bzImage, no modules) from the patched tree in
# $HGM_CACHE/src/linux, out of tree in $HGM_CACHE/build/linux-VARIANT.
# The .config is tinyconfig + kernel/configs/kvm_guest.config + the fragment
# linux-patches/VARIANT.config (plus lab.config under any other variant); it is
# regenerated only when one of those inputs changes, so rebuilds stay
# incremental.  Every option the fragments set must survive Kconfig, or the
# build stops naming it.
#
# Also installs the uAPI headers (for the selftests) into the build directory.
set -euo pipefail
. "$(dirname "$0")/hgm-common.sh"

stamp_file=
if [ "${1:-}" = --stamp ]; then
	stamp_file=$2
	shift 2
fi
variant=${1:-lab}
src=$(hgm_tree linux)
out=$HGM_CACHE/build/linux-$variant
[ -d "$src/.git" ] || hgm_die "$src is missing; run ./configure first"

frags=("$HGM_TOP/linux-patches/lab.config")
[ "$variant" = lab ] || frags+=("$HGM_TOP/linux-patches/$variant.config")
for f in "${frags[@]}"; do
	[ -e "$f" ] || hgm_die "no config fragment $f for variant '$variant'"
done
# LOCALVERSION= keeps setlocalversion from appending "+" for the git tree.
mk=(make -C "$src" O="$out" ARCH=x86_64 LOCALVERSION= -j"$(nproc)")

mkdir -p "$out"
stamp=$(cat "$src/.git/hgm-upstream" "$src/kernel/configs/kvm_guest.config" "${frags[@]}" | sha256sum | cut -d' ' -f1)
if [ ! -e "$out/.config" ] || [ "$(cat "$out/.hgm-config" 2>/dev/null)" != "$stamp" ]; then
	rm -f "$out/.hgm-config"
	"${mk[@]}" -s tinyconfig >/dev/null
	(cd "$src" && ARCH=x86_64 scripts/kconfig/merge_config.sh -m -O "$out" \
		"$out/.config" kernel/configs/kvm_guest.config "${frags[@]}" >"$out/merge_config.log")
	"${mk[@]}" -s olddefconfig
	missing=$(cat "${frags[@]}" | sed -n 's/^\(CONFIG_[A-Za-z0-9_]*\)=y$/\1/p' | sort -u |
		while read -r opt; do grep -qx "$opt=y" "$out/.config" || echo "$opt"; done)
	[ -z "$missing" ] || hgm_die "Kconfig dropped options the lab needs (a missing dependency?): $(echo $missing)"
	echo "$stamp" >"$out/.hgm-config"
	hgm_log "linux-$variant: .config generated from ${frags[*]##*/}"
fi
hgm_step "build linux-$variant bzImage" "${mk[@]}" -s bzImage
hgm_step "install uAPI headers" "${mk[@]}" -s headers
hgm_log "linux-$variant: $(cat "$out/include/config/kernel.release") -> $out/arch/x86/boot/bzImage"
[ -z "$stamp_file" ] || touch "$stamp_file"

#!/usr/bin/env bash
# build-selftests.sh [--stamp FILE]: build the kernel's mm selftests from the
# patched tree into $HGM_CACHE/build/selftests-mm, and KVM's
# demand_paging_test (with its HGM mode) into $HGM_CACHE/build/selftests-kvm,
# against the uAPI headers of the lab kernel build (scripts/build-kernel.sh
# installs them).
set -euo pipefail
. "$(dirname "$0")/hgm-common.sh"

stamp_file=
if [ "${1:-}" = --stamp ]; then
	stamp_file=$2
	shift 2
fi
src=$(hgm_tree linux)
hdr=$HGM_CACHE/build/linux-lab/usr/include
out=$HGM_CACHE/build/selftests-mm
[ -d "$hdr/linux" ] || hgm_die "no uAPI headers in $hdr; build the kernel first (scripts/build-kernel.sh)"
mkdir -p "$out"
# Only the programs tests/mm-selftests/list runs: some others do not build
# in every stable release (6.12.117's khugepaged.c misses an include).
mapfile -t targets < <(awk '!/^#/ && NF >= 3 { sub("^\\./", "", $3); print "'"$out"'/" $3 }' \
	"$HGM_TOP/tests/mm-selftests/list" | sort -u)
# and the randomized stress, which the debug-kernel tier runs
targets+=("$out/hugetlb-hgm-stress")
hgm_step "build mm selftests (${#targets[@]} programs)" make -s -C "$src/tools/testing/selftests/mm" \
	-j"$(nproc)" OUTPUT="$out" KHDR_INCLUDES="-isystem $hdr" "${targets[@]}" >"$out/build.log" 2>&1 || {
	tail -n 30 "$out/build.log" >&2
	hgm_die "mm selftests did not build; log in $out/build.log"
}
kvm=$HGM_CACHE/build/selftests-kvm
mkdir -p "$kvm"
hgm_step "build KVM demand_paging_test, hugetlb_hgm_invalidate_test" \
	make -s -C "$src/tools/testing/selftests/kvm" -j"$(nproc)" OUTPUT="$kvm" \
	KHDR_INCLUDES="-isystem $hdr" "$kvm/demand_paging_test" \
	"$kvm/x86_64/hugetlb_hgm_invalidate_test" >"$kvm/build.log" 2>&1 || {
	tail -n 30 "$kvm/build.log" >&2
	hgm_die "the KVM selftests did not build; log in $kvm/build.log"
}
[ -z "$stamp_file" ] || touch "$stamp_file"

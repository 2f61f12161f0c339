#!/usr/bin/env bash
# build-kernel-deb.sh: the HGM kernel as Debian packages for a real host.
#
# usage: scripts/build-kernel-deb.sh [--config FILE] [--localmodconfig [--lsmod FILE]]
#                                    [--localversion STR] [--out DIR]
#
# Builds Linux 6.12 with our queue (the patched tree ./configure prepares in
# $HGM_CACHE/src/linux) with `make bindeb-pkg`, from a host's own
# configuration with HugeTLB high-granularity mapping switched on:
#
#   --config FILE      the configuration to start from (default: the running
#                      kernel's, /boot/config-$(uname -r), else /proc/config.gz)
#   --localmodconfig   build only the modules loaded now (or those FILE lists,
#                      `lsmod` output of the target host): a kernel with every
#                      module of Debian's configuration takes hours on two
#                      cores, this one a fraction of that
#   --localversion S   appended to the release (default -hgm)
#   --out DIR          where the .deb files go (default
#                      $HGM_CACHE/build/linux-deb)
#
# The options switched on over the base configuration: HUGETLBFS,
# HUGETLB_PAGE, USERFAULTFD, HUGETLB_HIGH_GRANULARITY_MAPPING (the ones
# docs/kernel.md names).  Debian's module signing keys and trusted-key lists
# are not in the tree, so they are cleared (a fresh key is generated) and
# debug info is off (the packages stay small).  Install on the host with
# `dpkg -i linux-image-*.deb`, reboot into it, and check that it has HGM as
# docs/libvirt.md ("The hosts") shows.  Not run by the tests: it takes long.
set -euo pipefail
. "$(dirname "$0")/hgm-common.sh"

config="" localmod="" lsmod_file="" localversion=-hgm out=$HGM_CACHE/build/linux-deb
while [ $# -gt 0 ]; do
	case $1 in
	--config) config=$2; shift 2 ;;
	--localmodconfig) localmod=1; shift ;;
	--lsmod) lsmod_file=$2; shift 2 ;;
	--localversion) localversion=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//p}' "$0"; exit 0 ;;
	*) hgm_die "build-kernel-deb.sh: unknown option '$1' (see --help)" ;;
	esac
done
[ -z "$lsmod_file" ] || [ -n "$localmod" ] || hgm_die "--lsmod goes with --localmodconfig"
[ -z "$lsmod_file" ] || [ -r "$lsmod_file" ] || hgm_die "cannot read $lsmod_file"

src=$(hgm_tree linux)
[ -d "$src/.git" ] || hgm_die "$src is missing; run ./configure first"
if [ -z "$config" ]; then
	if [ -r "/boot/config-$(uname -r)" ]; then
		config=/boot/config-$(uname -r)
	elif [ -r /proc/config.gz ]; then
		config=/proc/config.gz
	else
		hgm_die "no configuration of the running kernel in /boot or /proc/config.gz; give --config FILE"
	fi
fi
[ -r "$config" ] || hgm_die "cannot read $config"

# What bindeb-pkg and a Debian-style configuration need
need=()
for p in bc libssl-dev libelf-dev dpkg-dev debhelper flex bison rsync kmod cpio; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
	hgm_need_root "installing ${need[*]}"
	hgm_step "apt-get install ${need[*]}" apt-get install -y -q --no-install-recommends "${need[@]}"
fi

tree=$out/tree
mkdir -p "$tree"
# LOCALVERSION= keeps setlocalversion from appending "+" for the git tree
mk=(make -C "$src" O="$tree" ARCH=x86_64 LOCALVERSION= -j"$(nproc)")
t0=$(date +%s)
case $config in
*.gz) zcat "$config" >"$tree/.config" ;;
*) cp "$config" "$tree/.config" ;;
esac
hgm_log "kernel .deb: starting from $config"
if [ -n "$localmod" ]; then
	lsmod_out=$out/lsmod
	if [ -n "$lsmod_file" ]; then cp "$lsmod_file" "$lsmod_out"; else lsmod >"$lsmod_out"; fi
	hgm_log "localmodconfig: $(($(wc -l <"$lsmod_out") - 1)) modules loaded on the target"
	# an answer for every new option, the default (yes ends on SIGPIPE
	# when make is done: not a failure under pipefail)
	{ yes '' || true; } | "${mk[@]}" -s LSMOD="$lsmod_out" localmodconfig >/dev/null
fi
cfg=("$src/scripts/config" --file "$tree/.config")
"${cfg[@]}" --enable HUGETLBFS --enable HUGETLB_PAGE --enable USERFAULTFD \
	--enable HUGETLB_HIGH_GRANULARITY_MAPPING \
	--set-str LOCALVERSION "$localversion" --disable LOCALVERSION_AUTO \
	--set-str SYSTEM_TRUSTED_KEYS "" --set-str SYSTEM_REVOCATION_KEYS "" \
	--set-str MODULE_SIG_KEY certs/signing_key.pem \
	--disable DEBUG_INFO --enable DEBUG_INFO_NONE \
	--disable DEBUG_INFO_DWARF5 --disable DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT \
	--disable DEBUG_INFO_BTF
"${mk[@]}" -s olddefconfig
for opt in HUGETLBFS USERFAULTFD HUGETLB_HIGH_GRANULARITY_MAPPING; do
	grep -qx "CONFIG_$opt=y" "$tree/.config" ||
		hgm_die "CONFIG_$opt did not survive Kconfig (a missing dependency in $config?)"
done
release=$("${mk[@]}" -s kernelrelease)
hgm_step "make bindeb-pkg ($release, $(grep -c '=m$' "$tree/.config") modules)" \
	"${mk[@]}" -s bindeb-pkg KDEB_PKGVERSION="$(sed 's/-.*//' <<<"$release")-1hgm"
hgm_log "built in $(($(date +%s) - t0)) s:"
ls -1 "$out"/*"$release"*.deb >&2 || hgm_die "no .deb for $release in $out"

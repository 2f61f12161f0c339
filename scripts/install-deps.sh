#!/usr/bin/env bash
# Install everything the build and the tests need, with apt.
#
# Debian 12 lacks two things we need, so this adds two apt entries, reusing
# the archive address already configured on the machine (never a hard-coded
# host): bookworm-backports (meson >= 1.5, which QEMU 10.0 requires) and a
# deb-src entry for trixie (the QEMU 10.0 source package).
set -euo pipefail
. "$(dirname "$0")/hgm-common.sh"
hgm_need_root "installing build dependencies"

# The URI of the main Debian archive as this machine's apt knows it: the
# entry that serves the plain "bookworm" suite.
debian_archive_uri() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] || continue
		awk 'BEGIN { RS = ""; FS = "\n" }
		{
			uris = ""; ok = 0
			for (i = 1; i <= NF; i++) {
				if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, u, /[ \t]+/); uris = u[1] }
				if ($i ~ /^Suites:/ && $i ~ /(^|[ \t])bookworm([ \t]|$)/) ok = 1
			}
			if (ok && uris != "") { print uris; exit }
		}' "$f"
	done | head -n1
	if [ -e /etc/apt/sources.list ]; then
		awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list
	fi
}

uri=$(debian_archive_uri | head -n1)
[ -n "$uri" ] || hgm_die "no apt entry for the Debian 12 (bookworm) archive found in /etc/apt; add one and rerun"

list=/etc/apt/sources.list.d/hgm-build.sources
want=$(cat <<SRC
# Added by the HGM build (scripts/install-deps.sh).
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: $uri
Suites: $HGM_QEMU_SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
)
if [ ! -e "$list" ] || [ "$(cat "$list")" != "$want" ] || [ -n "${HGM_APT_UPDATE:-}" ]; then
	printf '%s\n' "$want" >"$list"
	hgm_step "apt-get update" apt-get update -q
elif [ ! -d /var/lib/apt/lists ] || [ -z "$(ls /var/lib/apt/lists/*bookworm-backports*Packages* 2>/dev/null)" ]; then
	hgm_step "apt-get update" apt-get update -q
fi

export DEBIAN_FRONTEND=noninteractive
pkgs=(
	# kernel and selftests
	build-essential bc bison flex libelf-dev libssl-dev cpio xz-utils kmod
	rsync python3 perl libnuma-dev libcap-dev
	# fetching and patching upstream
	dpkg-dev git ca-certificates
	# QEMU 10.0 (x86_64-softmmu, KVM, virtfs, user networking); meson and
	# pycotap come from bookworm-backports, below
	ninja-build pkg-config python3-venv libglib2.0-dev libpixman-1-dev
	zlib1g-dev libfdt-dev libcap-ng-dev libattr1-dev libslirp-dev
	# firmware for the lab VM (the source package strips QEMU's blobs);
	# gcc-multilib builds QEMU's 16-bit option ROMs and 32-bit selftests
	seabios ipxe-qemu gcc-multilib
	# running the tests (ncat: QEMU's functional migration test, exec: case)
	procps iproute2 util-linux ncat
	# the benchmark's plot (tests/bench/plot)
	gnuplot-nox
)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ! dpkg --compare-versions "$(dpkg-query -W -f='${Version}' meson 2>/dev/null || echo 0)" ge 1.5; then
	missing+=(meson/bookworm-backports)
fi
if ! dpkg-query -W -f='${Status}\n' python3-pycotap 2>/dev/null | grep -q "install ok installed"; then
	missing+=(python3-pycotap/bookworm-backports)
fi
# libvirt 11.3 from bookworm-backports, for the libvirt end-to-end tests
# (docs/libvirt.md): Debian's monolithic libvirtd and virsh, unmodified.
# Every libvirt package must come from the same release, so each is named
# with its suite; the QEMU that libvirt-daemon-driver-qemu depends on
# (Debian's qemu-system-x86) is not the one the tests run.  socat is the
# tests' migration "network" between two hosts.
if ! dpkg --compare-versions "$(dpkg-query -W -f='${Version}' libvirt-daemon-system 2>/dev/null || echo 0)" ge 11.3; then
	for p in libvirt-common libvirt0 libvirt-clients libvirt-daemon-common \
		libvirt-daemon-log libvirt-daemon libvirt-daemon-driver-network \
		libvirt-daemon-config-network libvirt-daemon-driver-nwfilter \
		libvirt-daemon-config-nwfilter libvirt-daemon-driver-nodedev \
		libvirt-daemon-driver-qemu libvirt-daemon-driver-secret \
		libvirt-daemon-driver-storage libvirt-daemon-system; do
		missing+=("$p/bookworm-backports")
	done
fi
dpkg-query -W -f='${Status}\n' socat 2>/dev/null | grep -q 'install ok installed' || missing+=(socat)
if [ "${#missing[@]}" -gt 0 ]; then
	hgm_step "apt-get install ${missing[*]}" \
		apt-get install -y -q --no-install-recommends "${missing[@]}"
else
	hgm_log "build dependencies already installed"
fi

#!/usr/bin/env bash
# abi-symbols.sh LIB MAP: the shared library exports exactly the symbols the
# version map lists, each with a version node of the map.
set -euo pipefail
lib=$1 map=$2
want=$(sed -n 's/^[[:space:]]*\(mhgm_[a-z0-9_]*\);.*/\1/p' "$map" | sort)
got=$(nm -D --defined-only "$lib" | awk '$2 == "T" { print $3 }' |
	sed 's/@.*//' | sort)
if [ "$want" != "$got" ]; then
	echo "FAIL: exported symbols differ from $map:"
	diff <(echo "$want") <(echo "$got") || true
	exit 1
fi
nodes=$(sed -n 's/^\([A-Z0-9_.]*\) {.*/\1/p' "$map")
unversioned=$(nm -D --defined-only "$lib" | awk '$2 == "T" { print $3 }' |
	grep -v -E "@@?($(echo "$nodes" | paste -sd'|'))\$" || true)
if [ -n "$unversioned" ]; then
	echo "FAIL: symbols without a version node: $unversioned"
	exit 1
fi
echo "ok: $(echo "$got" | wc -l) symbols, all versioned ($nodes)"

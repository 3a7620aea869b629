#!/usr/bin/env bash
# Check that the CPU kernel plugins match the kernels nvcc built:
#
#   check_symbols.sh CUBIN... -- PLUGIN.so...
#
# Every kernel (global FUNC symbol defined in a cubin, i.e. its mangled name) must have a
# vgpu_emu_<name> export in one of the plugins, and every vgpu_emu_* export must
# name a kernel of one of the cubins (no stale names). Exit 77 (skip) without
# readelf or nm.
set -u
command -v readelf >/dev/null 2>&1 || { echo "check_symbols: readelf not found, skipped"; exit 77; }
command -v nm >/dev/null 2>&1 || { echo "check_symbols: nm not found, skipped"; exit 77; }

cubins=()
plugins=()
seen_sep=0
for a in "$@"; do
    if [ "$a" = -- ]; then
        seen_sep=1
    elif [ $seen_sep = 0 ]; then
        cubins+=("$a")
    else
        plugins+=("$a")
    fi
done
if [ ${#cubins[@]} = 0 ] || [ ${#plugins[@]} = 0 ]; then
    echo "usage: check_symbols.sh CUBIN... -- PLUGIN.so..." >&2
    exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-e2e-sym.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

for c in "${cubins[@]}"; do
    # Num: Value Size Type Bind Vis [<other>: 10] Ndx Name -> the name is the last field; a
    # relocatable cubin also lists the functions it calls but does not define (Ndx UND)
    readelf -sW "$c" | awk '$4 == "FUNC" && $5 == "GLOBAL" && $7 != "UND" { print $NF }' || exit 1
done | sort -u >"$tmp/kernels"
for p in "${plugins[@]}"; do
    nm -D --defined-only "$p" | awk '$2 == "T" && $3 ~ /^vgpu_emu_/ { sub(/^vgpu_emu_/, "", $3); print $3 }' || exit 1
done | sort -u >"$tmp/plugins"

[ -s "$tmp/kernels" ] || { echo "check_symbols: FAIL: no kernels found in ${cubins[*]}"; exit 1; }
echo "kernels: $(wc -l <"$tmp/kernels"), plugin functions: $(wc -l <"$tmp/plugins")"
missing=$(comm -23 "$tmp/kernels" "$tmp/plugins")
stale=$(comm -13 "$tmp/kernels" "$tmp/plugins")
rc=0
if [ -n "$missing" ]; then
    echo "check_symbols: FAIL: kernels without a plugin function (vgpu_emu_<name>):"
    sed 's/^/    /' <<<"$missing"
    rc=1
fi
if [ -n "$stale" ]; then
    echo "check_symbols: FAIL: plugin functions that name no kernel:"
    sed 's/^/    /' <<<"$stale"
    rc=1
fi
[ $rc = 0 ] && sed 's/^/PASS /' "$tmp/kernels"
exit $rc

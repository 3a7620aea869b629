#!/usr/bin/env bash
# Fetch llama.cpp's prebuilt CUDA backend (ggml) for the e2e_ggml_discovery test: the npm
# package @node-llama-cpp/linux-x64-cuda at one pinned version, whose libggml-cuda.so links
# libcudart.so.13 and libcublas.so.13 (the CUDA 13.0 toolkit's) and libcuda.so.1 (vgpu's).
#
#   fetch.sh                 make sure the package is in the cache; print its library directory
#   fetch.sh --run CMD ARGS  the same, then run CMD ARGS with VGPU_GGML_DIR set to that directory
#                            and it (and VGPU_GGML_CUDA_LIB, if set) prepended to LD_LIBRARY_PATH
#
# Cache: $VGPU_GGML_CACHE, default ~/.cache/vgpu/ggml-cuda-<version>. The first run downloads
# the tarball with `npm pack`, checks its sha256 against the one recorded below, extracts the
# files the test needs and marks the cache complete; later runs only check that the files are
# there and never touch the network. Concurrent runs (ctest -j) serialise on a lock file.
#
# Exit status: 0 ok (or CMD's status with --run); 77 the package cannot be fetched (no npm,
# registry unreachable): ctest reports the test as skipped, unless VGPU_GGML_REQUIRE=1, which
# turns that into a failure (1); 1 anything else (checksum mismatch, files missing, ...).
set -u

version=3.22.1
package=@node-llama-cpp/linux-x64-cuda
# sha256 of node-llama-cpp-linux-x64-cuda-3.22.1.tgz as served by registry.npmjs.org
# (its sha512 is the registry's dist.integrity sha512-8rQCjyNNLZJUFit+...6KB88itduTBuA==)
tarball_sha256=d6cd3ff39a43b024816952e0bc6452d6711608d26256ff6eb0fe8cf7ff55bb2c
bins=package/bins/linux-x64-cuda
# what the test loads, plus what documents the build (ggml version, license)
files=(
    "$bins/libggml-base.so"
    "$bins/libggml-cuda.so"
    "$bins/libggml.cuda.v0.5.0.so"
    "$bins/_nlcBuildMetadata.json"
    package/package.json
    package/LICENSE
)

cache=${VGPU_GGML_CACHE:-${HOME:-/tmp}/.cache/vgpu/ggml-cuda-$version}
marker="$cache/.vgpu-complete"

say() { echo "fetch.sh: $*" >&2; }

# cannot fetch: skip (77), or fail when the caller insists on running the test
unavailable() {
    say "$*"
    if [ "${VGPU_GGML_REQUIRE:-0}" = 1 ]; then
        say "VGPU_GGML_REQUIRE=1: failing instead of skipping"
        exit 1
    fi
    say "the ggml test is skipped (exit 77)"
    exit 77
}

complete() {
    local f
    [ -f "$marker" ] && [ "$(cat "$marker")" = "$tarball_sha256" ] || return 1
    for f in "${files[@]}"; do
        [ -s "$cache/$f" ] || return 1
    done
    return 0
}

fetch() {
    local tmp tgz sum f
    command -v npm >/dev/null 2>&1 || unavailable "npm not found: cannot fetch $package@$version"
    command -v sha256sum >/dev/null 2>&1 || {
        say "sha256sum not found"
        exit 1
    }
    mkdir -p "$cache" || exit 1
    tmp=$(mktemp -d "$cache/.fetch.XXXXXX") || exit 1
    # shellcheck disable=SC2064 # expand $tmp now
    trap "rm -rf '$tmp'" EXIT
    say "downloading $package@$version (about 143 MB) into $cache"
    # a private npm cache: the tarball is not kept twice
    if ! (cd "$tmp" && npm pack "$package@$version" --cache "$tmp/npm-cache" \
        --loglevel error --no-fund --no-audit >"$tmp/npm.out" 2>"$tmp/npm.err"); then
        cat "$tmp/npm.err" >&2
        unavailable "npm pack $package@$version failed"
    fi
    tgz=$(find "$tmp" -maxdepth 1 -name '*.tgz' | head -n 1)
    [ -n "$tgz" ] || {
        say "npm pack produced no tarball"
        exit 1
    }
    sum=$(sha256sum "$tgz" | cut -d' ' -f1)
    if [ "$sum" != "$tarball_sha256" ]; then
        say "sha256 mismatch for $tgz: got $sum, expected $tarball_sha256"
        exit 1
    fi
    mkdir -p "$tmp/x" || exit 1
    if ! tar -xzf "$tgz" -C "$tmp/x" "${files[@]}"; then
        say "cannot extract ${files[*]} from $tgz"
        exit 1
    fi
    for f in "${files[@]}"; do
        mkdir -p "$cache/$(dirname "$f")" || exit 1
        mv -f "$tmp/x/$f" "$cache/$f" || exit 1
    done
    echo "$tarball_sha256" >"$marker.tmp" || exit 1
    mv -f "$marker.tmp" "$marker" || exit 1
    rm -rf "$tmp"
    trap - EXIT
    complete || {
        say "cache $cache incomplete after extraction"
        exit 1
    }
    say "cached $package@$version in $cache"
}

if ! complete; then
    mkdir -p "$cache" || exit 1
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$cache/.lock" || exit 1
        flock 9 || exit 1
    fi
    # another run may have filled the cache while we waited for the lock
    complete || fetch
fi

dir="$cache/$bins"
if [ "${1:-}" = --run ]; then
    shift
    [ $# -ge 1 ] || {
        say "--run needs a command"
        exit 1
    }
    exec 9>&-
    export VGPU_GGML_DIR="$dir"
    export LD_LIBRARY_PATH="$dir${VGPU_GGML_CUDA_LIB:+:$VGPU_GGML_CUDA_LIB}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    exec "$@"
fi
echo "$dir"

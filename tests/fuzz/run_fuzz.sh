#!/usr/bin/env bash
# `make fuzz`: build the libFuzzer harnesses (every tests/fuzz/fuzz_*.c) with clang into
# $BUILD_FUZZ (default build-fuzz) and run each for FUZZ_SECONDS (default 60), seeded with
# a scratch copy of its committed corpus (tests/fuzz/corpus/<harness>/, left unchanged).
# Prints per harness: runs (executions), corpus size at the end, coverage at start and
# end (libFuzzer's "cov"), and crashes. A crashing input is kept in
# $BUILD_FUZZ/findings/<harness>/ (see tests/fuzz/README.md for turning it into a
# regression input). Exits 1 if any harness crashed, 0 otherwise; skips (exit 0, with a
# message) when clang with libFuzzer is not installed.
#
#   FUZZ_SECONDS=N    seconds per harness (default 60)
#   FUZZ_HARNESSES="fuzz_a fuzz_b"   only these (default: all)
#   FUZZ_ARGS="..."   extra libFuzzer flags
set -u
cd "$(dirname "$0")/../.." || exit 1
build=${BUILD_FUZZ:-build-fuzz}
seconds=${FUZZ_SECONDS:-60}
cc=${FUZZ_CC:-clang}

probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$probe/p.c"
if ! command -v "$cc" >/dev/null 2>&1 || ! "$cc" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >/dev/null 2>&1; then
    echo "make fuzz: SKIPPED: $cc with libFuzzer (-fsanitize=fuzzer, libclang_rt.fuzzer) is not installed"
    exit 0
fi

echo "make fuzz: building the harnesses in $build"
cmake -S . -B "$build" -DCMAKE_C_COMPILER="$cc" -DVGPU_FUZZ=ON -DVGPU_E2E=OFF >"$probe/cmake.log" 2>&1 ||
    { cat "$probe/cmake.log"; echo "make fuzz: cmake failed"; exit 1; }
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target vgpu_fuzzers >"$probe/build.log" 2>&1 ||
    { tail -50 "$probe/build.log"; echo "make fuzz: build failed"; exit 1; }

harnesses=${FUZZ_HARNESSES:-$(find tests/fuzz -maxdepth 1 -name 'fuzz_*.c' -printf '%f\n' | sed 's/\.c$//' | sort)}
count_files() { find "$1" -mindepth 1 -maxdepth 1 -type f | wc -l; }
failed=0
summary=()
for h in $harnesses; do
    bin=$build/bin/$h
    [ -x "$bin" ] || { echo "make fuzz: $bin missing"; failed=1; continue; }
    work=$build/fuzz-work/$h
    findings=$build/findings/$h
    rm -rf "$work"
    mkdir -p "$work" "$findings"
    if [ -d "tests/fuzz/corpus/$h" ]; then
        cp tests/fuzz/corpus/"$h"/* "$work"/ 2>/dev/null
    fi
    seeds=$(count_files "$work")
    before=$(count_files "$findings")
    echo "make fuzz: $h for ${seconds}s ($seeds seeds)"
    log=$build/fuzz-$h.log
    # -close_fd_mask=2: the daemon code's error log lines (one per rejected input) are
    # not printed; libFuzzer's and the sanitizers' reports still are.
    # shellcheck disable=SC2086
    ASAN_OPTIONS=${ASAN_OPTIONS:-intercept_tls_get_addr=0} \
        "$bin" "$work" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -close_fd_mask=2 \
        -print_final_stats=1 -artifact_prefix="$findings/" ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov0=$(grep -m1 -E '(INITED|INIT) cov:' "$log" | sed -E 's/.*cov: ([0-9]+).*/\1/')
    cov1=$(grep -E ' cov: [0-9]+' "$log" | tail -1 | sed -E 's/.* cov: ([0-9]+).*/\1/')
    corpus=$(count_files "$work")
    crashes=$(($(count_files "$findings") - before))
    line=$(printf '%-18s runs %-10s corpus %-6s cov %s -> %s  crashes %s' "$h" "${runs:-?}" "$corpus" "${cov0:-?}" "${cov1:-?}" "$crashes")
    summary+=("$line")
    if [ $rc -ne 0 ] || [ "$crashes" -gt 0 ]; then
        failed=1
        echo "make fuzz: $h FAILED (exit $rc); the end of its log ($log):"
        tail -60 "$log"
        ls -l "$findings"
    fi
done
echo "make fuzz: summary (${seconds}s each)"
for l in "${summary[@]}"; do echo "  $l"; done
exit $failed

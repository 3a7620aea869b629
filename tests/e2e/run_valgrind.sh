#!/usr/bin/env bash
# `make valgrind`: vgpud and its workers under valgrind memcheck through the end-to-end
# programs, on the emu backend.
#
#   tests/e2e/run_valgrind.sh [BUILD_DIR]      (default: build; programs from `make`)
#
# Starts `vgpud --backend emu` listening on a unix socket and on TCP under
#   valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite
#            --trace-children=yes (workers are exec'ed copies of vgpud)
# runs drv_basic, drv_threads, drv_vmm, drv_mapped, drv_link, drv_pipeline, rt_work,
# rt_basic_static and nvml_basic against it (over unix with and without the shared-memory
# upgrade, and over TCP), SIGKILLs a
# client in the middle of its work, stops vgpud with SIGTERM, and fails when any
# valgrind log (one per process: the daemon, each worker, the spare worker) reports an
# error (invalid access, uninitialised value, bad free...) or a definitely lost block,
# when a program fails, or when the daemon does not exit cleanly.
# Suppressions (tests/e2e/valgrind.supp) cover third-party code only.
# Exits 0 (skipped, with a message) when valgrind or the e2e programs are missing.
#
# Environment: VGPU_VALGRIND_KEEP=1 keeps the logs' directory (its path is printed);
# VGPU_VALGRIND_TIMEOUT seconds per program (default 400).
set -u
cd "$(dirname "$0")/../.." || exit 1
build=${1:-${BUILD:-build}}
bin=$build/bin
e2e=$build/tests/e2e
limit=${VGPU_VALGRIND_TIMEOUT:-400}

if ! command -v valgrind >/dev/null 2>&1; then
    echo "make valgrind: SKIPPED: valgrind is not installed"
    exit 0
fi
for f in "$bin/vgpud" "$bin/vgpu" "$e2e/drv_basic" "$e2e/e2e_probe" "$e2e/killed_probe"; do
    if [ ! -x "$f" ]; then
        echo "make valgrind: SKIPPED: $f is missing (build with make; the e2e programs need nvcc)"
        exit 0
    fi
done
plugins=$(find "$e2e/plugins" -maxdepth 1 -name '*.so' 2>/dev/null | sort | tr '\n' ':')
plugins=${plugins%:}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-valgrind.XXXXXX") || exit 1
daemon_pid=
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$?
    [ -n "$daemon_pid" ] && kill -KILL -- "-$daemon_pid" 2>/dev/null
    if [ "${VGPU_VALGRIND_KEEP:-0}" = 1 ]; then echo "make valgrind: kept $tmp"; else rm -rf "$tmp"; fi
    exit "$rc"
}
trap cleanup EXIT

port=$("$e2e/e2e_probe" freeport) || { echo "make valgrind: no free TCP port"; exit 1; }
unix_addr="unix:$tmp/vgpud.sock"
tcp_addr="tcp:127.0.0.1:$port"
vg=(valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite
    --error-exitcode=99 --trace-children=yes --child-silent-after-fork=yes --num-callers=30
    --suppressions=tests/e2e/valgrind.supp --log-file="$tmp/vg.%p.log")
# A token (required over TCP; the clients prove it there, and also over the unix socket,
# which then runs the authenticated handshake under memcheck too)
(umask 077 && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/token") || exit 1
export VGPU_TOKEN_FILE="$tmp/token"
echo "make valgrind: starting vgpud under memcheck on $unix_addr and $tcp_addr (logs: $tmp)"
VGPU_LOG=info VGPU_EMU_KERNELS="$plugins" setsid "${vg[@]}" "$bin/vgpud" --listen "$unix_addr" \
    --listen "$tcp_addr" --backend emu --token-file "$tmp/token" </dev/null >"$tmp/vgpud.log" 2>&1 &
daemon_pid=$!
up=0
for ((i = 0; i < 600; i++)); do # up to ~60 s: valgrind starts slowly
    kill -0 "$daemon_pid" 2>/dev/null || break
    if "$e2e/e2e_probe" connect "$unix_addr" 2>/dev/null && "$e2e/e2e_probe" connect "$tcp_addr" 2>/dev/null; then
        up=1
        break
    fi
    sleep 0.1
done
if [ $up != 1 ]; then
    echo "make valgrind: FAIL: vgpud did not start"
    cat "$tmp/vgpud.log" "$tmp"/vg.*.log
    exit 1
fi

failed=0
run() { # ADDR PROGRAM [ARGS...]
    local addr=$1 start rc
    shift
    start=$SECONDS
    timeout -k 10 "$limit" "$bin/vgpu" run --server "$addr" -- "$@" </dev/null >"$tmp/prog.log" 2>&1
    rc=$?
    if [ $rc = 0 ]; then
        echo "make valgrind:   ok   $(basename "$1") over ${addr%%:*}${VGPU_SHM:+ VGPU_SHM=$VGPU_SHM} ($((SECONDS - start)) s)"
    else
        echo "make valgrind:   FAIL $(basename "$1") over ${addr%%:*}: exit $rc; its output:"
        tail -30 "$tmp/prog.log"
        failed=1
    fi
}
for p in drv_basic drv_threads drv_vmm drv_mapped drv_link drv_pipeline nvml_basic rt_work; do
    [ -x "$e2e/$p" ] && run "$unix_addr" "$e2e/$p"
done
for p in drv_basic drv_vmm drv_threads rt_basic_static; do
    [ -x "$e2e/$p" ] && run "$tcp_addr" "$e2e/$p"
done
# lanes on the unix socket itself (no shared-memory upgrade)
VGPU_SHM=0 run "$unix_addr" "$e2e/drv_basic"
VGPU_SHM=0 run "$unix_addr" "$e2e/drv_mapped"

# A client SIGKILLed in the middle of its work (copies streaming to the device).
"$bin/vgpu" run --server "$unix_addr" -- "$e2e/killed_probe" hold 1048576 4 copy </dev/null >"$tmp/killed.log" 2>&1 &
kp=$!
for ((i = 0; i < 1200; i++)); do
    grep -q '^ready' "$tmp/killed.log" 2>/dev/null && break
    kill -0 "$kp" 2>/dev/null || break
    sleep 0.1
done
if grep -q '^ready' "$tmp/killed.log"; then
    sleep 1
    pkill_target=$(pgrep -P "$kp" 2>/dev/null | head -1) # vgpu run execs the program: $kp is it
    kill -KILL "$kp" ${pkill_target:+"$pkill_target"} 2>/dev/null
    wait "$kp" 2>/dev/null
    echo "make valgrind:   ok   killed_probe SIGKILLed mid-copy"
else
    echo "make valgrind:   FAIL killed_probe never got ready:"
    cat "$tmp/killed.log"
    failed=1
    kill -KILL "$kp" 2>/dev/null
fi
# Let the killed client's worker notice and exit (under valgrind: slowly).
for ((i = 0; i < 600; i++)); do
    grep -q "(killed_probe@.*disconnected" "$tmp/vgpud.log" 2>/dev/null && break
    sleep 0.1
done

echo "make valgrind: stopping vgpud (SIGTERM)"
kill -TERM "$daemon_pid"
status=killed
for ((i = 0; i < 1200; i++)); do # up to 120 s: leak checks of every process
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
        wait "$daemon_pid"
        status=$?
        break
    fi
    sleep 0.1
done
# Workers still finishing their leak check (they outlive the daemon briefly).
for ((i = 0; i < 600; i++)); do
    pgrep -s "$daemon_pid" >/dev/null 2>&1 || break
    sleep 0.1
done
[ "$status" = killed ] && kill -KILL -- "-$daemon_pid" 2>/dev/null
daemon_pid=
case "$status" in
0 | 143) ;;
*)
    echo "make valgrind: FAIL: vgpud exit status $status after SIGTERM (99: memcheck errors)"
    failed=1
    ;;
esac

nlogs=0
nworkers=0
for log in "$tmp"/vg.*.log; do
    [ -e "$log" ] || continue
    nlogs=$((nlogs + 1))
    grep -q -- '--worker' "$log" && nworkers=$((nworkers + 1))
    errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$log" | tail -1)
    if [ -z "$errors" ]; then
        # a process that exec'ed something else, or died before valgrind's summary
        if grep -q 'Command: .*vgpud' "$log"; then
            echo "make valgrind: FAIL: $(basename "$log") has no error summary (process killed?)"
            failed=1
        fi
    elif [ "$errors" != 0 ]; then
        echo "make valgrind: FAIL: $(basename "$log"): $errors errors:"
        cat "$log"
        failed=1
    fi
done
echo "make valgrind: $nlogs processes checked ($nworkers workers), daemon exit status $status"
if [ "$nworkers" -lt 5 ]; then
    echo "make valgrind: FAIL: expected the workers to run under valgrind too"
    failed=1
fi
if [ $failed != 0 ]; then
    echo "---- vgpud log ----"
    tail -100 "$tmp/vgpud.log"
    echo "make valgrind: FAIL"
    exit 1
fi
echo "make valgrind: PASS (no memcheck errors, no definite leaks)"
exit 0

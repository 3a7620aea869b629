#!/usr/bin/env bash
# Fault, limit and isolation tests of vgpud with real guest clients (fault_client.c):
#
#   faults.sh loop     unix|unix-noshm|tcp|ivshmem FAULT_CLIENT [DRV_BASIC]
#       VGPU_FAULT_ITERATIONS (default 40) clients, each doing a random multi-threaded mix
#       of copies, memsets, launches, streams and events, SIGKILLed after a random delay
#       (at once, as it enters cuInit, or within 600 ms: before its handshake, during
#       cuInit, mid-work). Afterwards: the daemon
#       is alive, no worker is left but the spare, `vgpu smi` lists no client, device
#       memory is back to its baseline, and a fresh client (DRV_BASIC if given) works.
#       Prints iterations, kills by phase and leftovers.
#   faults.sh restart  unix|unix-noshm|tcp|ivshmem FAULT_CLIENT
#       SIGKILLs vgpud under a running client (one thread blocked in cuStreamSynchronize
#       behind long kernels) and starts it again: the client's calls fail fast with one
#       sticky error, the blocked thread returns, the guest logs one error line, and a new
#       process works.
#   faults.sh foreign  unix|tcp FAULT_CLIENT
#       client B uses client A's handles and device addresses: every call fails, A's data
#       is intact, and the daemon logs "... names a ... that is not its own" for those
#       that reach it (the guest library refuses unknown streams and events itself).
#   faults.sh limits   unix|tcp FAULT_CLIENT
#       a daemon with --max-clients 2 --max-lanes 4 --max-objects 64 --max-message 1M:
#       a third client's cuInit fails (and the daemon logs it), a fifth thread's lane is
#       refused, the 65th object fails with CUDA_ERROR_OUT_OF_MEMORY, a 2 MiB frame ends
#       its session.
#   faults.sh flood    unix|tcp FAULT_CLIENT DRV_BASIC
#       300 silent and 20 slow-loris connections (test_daemon --flood, from other TCP
#       source addresses or another process): a legit client passes drv_basic meanwhile,
#       and every flood connection is refused at once or dropped at the hello deadline.
#       VGPU_E2E_TEST_DAEMON names test_daemon.
#   ivshmem: the region is a file (ivshmem:FILE, as a VM's guest maps its device); the
#   daemon runs with --ivshmem-timeout 2, since a killed guest is noticed by its beat.
#   faults.sh stall    unix FAULT_CLIENT
#       a fake daemon (python) answers the handshake, then sends 10 bytes of its next reply
#       and stalls: with VGPU_TIMEOUT=2 the client's cuInit fails within seconds, with one
#       log line saying why, instead of hanging.
#
# Environment: the VGPU_E2E_* variables of run_e2e.sh (e2e.cmake sets them).
set -u

die() {
    echo "faults: FAIL: $*" >&2
    [ -s "${tmp:-/nonexistent}/vgpud.log" ] && { echo "---- vgpud log (last 60 lines) ----"; tail -60 "$tmp/vgpud.log"; }
    exit 1
}

[ $# -ge 3 ] || { echo "usage: faults.sh loop|restart|foreign|limits MODE FAULT_CLIENT [DRV_BASIC]" >&2; exit 2; }
test_name=$1
mode=$2
client=$3
drv_basic=${4:-}
bin=${VGPU_E2E_BIN:-}
vgpud=${VGPU_E2E_VGPUD:-${bin:+$bin/vgpud}}
vgpu=${VGPU_E2E_VGPU:-${bin:+$bin/vgpu}}
probe=${VGPU_E2E_PROBE:-}
lib=${VGPU_E2E_LIB:-}
backend=${VGPU_E2E_BACKEND:-emu}
[ -x "$vgpud" ] || die "vgpud not found: '$vgpud'"
[ -x "$probe" ] || die "e2e_probe not found: '$probe'"
[ -x "$client" ] || die "client not found: '$client'"
[ -e "$lib/libcuda.so.1" ] || die "VGPU_E2E_LIB does not hold libcuda.so.1: '$lib'"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-faults.XXXXXX") || die "mktemp"
daemon_pid=
bg_pids=()
cleanup() {
    local rc=$?
    for p in "${bg_pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    if [ -n "$daemon_pid" ]; then
        kill -TERM "$daemon_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon_pid" 2>/dev/null
        wait "$daemon_pid" 2>/dev/null
    fi
    exec 8>&- 9>&- 2>/dev/null
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT

if [ "$mode" = ivshmem ]; then
    addr="ivshmem:$tmp/region"
elif [ "$mode" != tcp ]; then
    addr="unix:$tmp/vgpud.sock"
else
    port=$("$probe" freeport) || die "no free TCP port"
    addr="tcp:127.0.0.1:$port"
fi
daemon_args=(--listen "$addr" --backend "$backend")
[ "$backend" = emu ] && [ -n "${VGPU_E2E_EMU_MEMORY:-}" ] && daemon_args+=(--emu-memory "$VGPU_E2E_EMU_MEMORY")
# Plain TCP needs --tcp-no-auth where the daemon requires tokens on TCP.
[ "$mode" = tcp ] && "$vgpud" --help 2>/dev/null | grep -q -- --tcp-no-auth && daemon_args+=(--tcp-no-auth)
[ "$mode" = ivshmem ] && daemon_args+=(--tcp-no-auth --ivshmem-timeout 2)

start_daemon() { # extra vgpud arguments
    VGPU_LOG=info VGPU_EMU_KERNELS="${VGPU_E2E_PLUGINS:-}" "$vgpud" "${daemon_args[@]}" "$@" </dev/null \
        >>"$tmp/vgpud.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 300); do
        kill -0 "$daemon_pid" 2>/dev/null || die "vgpud exited during startup"
        "$probe" connect "$addr" 2>/dev/null && return 0
        sleep 0.05
    done
    die "vgpud does not accept connections on $addr"
}

# Sanitizer builds: the clients get the sanitizer runtime preloaded (they load vgpu's
# instrumented libcuda); the shell, python and other tools do not.
pre=()
[ -n "${VGPU_E2E_PRELOAD:-}" ] && pre=(env "LD_PRELOAD=$VGPU_E2E_PRELOAD")
export VGPU_SERVER="$addr" LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
case "$mode" in
unix) unset VGPU_SHM ;;
unix-noshm) export VGPU_SHM=0 ;;
esac

# The daemon's worker processes (its children).
workers() {
    # grep, not awk over the files: mawk gives up on a file whose process just exited
    grep -H '^PPid:' /proc/[0-9]*/status 2>/dev/null | awk -F'[/:[:space:]]+' -v p="$daemon_pid" '$NF == p { print $3 }'
}

free_mem() {
    local out
    out=$(timeout 60 "${pre[@]}" "$client" info) || die "'$client info' failed"
    echo "$out" | sed -n 's/^free=\([0-9]*\) .*/\1/p'
}

wait_log() { # ERE [seconds]
    for _ in $(seq $((${2:-10} * 20))); do
        grep -qE "$1" "$tmp/vgpud.log" && return 0
        sleep 0.05
    done
    return 1
}

no_sanitizer_reports() {
    grep -qE "AddressSanitizer|LeakSanitizer|runtime error" "$tmp/vgpud.log" && die "sanitizer report in the daemon log"
    return 0
}

# Wait for "ready" (or another line) in a file written by a background client.
wait_line() { # FILE PATTERN PID
    for _ in $(seq 600); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

case "$test_name" in
# ------------------------------------------------------------------------------------
loop)
    start_daemon
    iterations=${VGPU_FAULT_ITERATIONS:-40}
    base=$(free_mem)
    [ -n "$base" ] || die "no free memory figure"
    echo "faults: loop over $mode, $iterations iterations, free device memory at start $base"
    declare -A kills=([start]=0 [init]=0 [work]=0)
    RANDOM=${VGPU_FAULT_SEED:-4242}
    for i in $(seq "$iterations"); do
        out="$tmp/work.$i"
        "${pre[@]}" "$client" work "$i" $((2 + RANDOM % 3)) >"$out" 2>&1 &
        pid=$!
        # One kill in eight at once (process start), one in eight as soon as it says it
        # calls cuInit (the handshake), the others anywhere in the first 600 ms.
        case $((RANDOM % 8)) in
        0) ;;
        1) for _ in $(seq 2000); do grep -q '^phase init' "$out" 2>/dev/null && break; done ;;
        *) sleep "$(printf '0.%03d' $((RANDOM % 600)))" ;;
        esac
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        if grep -q '^phase work' "$out"; then kills[work]=$((kills[work] + 1))
        elif grep -q '^phase init' "$out"; then kills[init]=$((kills[init] + 1))
        else kills[start]=$((kills[start] + 1)); fi
        grep -q "fault_client:.*failed" "$out" && die "client $i failed before it was killed: $(cat "$out")"
        kill -0 "$daemon_pid" 2>/dev/null || die "vgpud died in iteration $i"
    done
    left=
    for _ in $(seq 400); do
        left=$(workers | wc -l)
        [ "$left" -le 1 ] && break
        sleep 0.05
    done
    leftover_workers=$((left > 1 ? left - 1 : 0))
    kill -0 "$daemon_pid" 2>/dev/null || die "vgpud died"
    after=$(free_mem)
    leftover_bytes=$((base > after ? base - after : after - base))
    clients=0
    if [ -x "$vgpu" ]; then
        clients=$(timeout 60 "$vgpu" smi --server "$addr" --json |
            python3 -c 'import json,sys; print(len(json.load(sys.stdin)["clients"]))') || die "vgpu smi failed"
    fi
    connected=$(grep -c "connected via" "$tmp/vgpud.log")
    freed=$(grep -cE "disconnected \((connection closed|malformed message|peer timeout)\)" "$tmp/vgpud.log")
    echo "faults: iterations $iterations; kills by phase: before the handshake $((kills[start])), during cuInit $((kills[init])), mid-work $((kills[work]))"
    echo "faults: sessions connected $connected, sessions ended with their device state freed $freed"
    echo "faults: leftovers: workers $leftover_workers, smi clients $clients, device memory $leftover_bytes bytes (free $base -> $after)"
    [ "$leftover_workers" = 0 ] || die "workers left besides the spare: $(workers | tr '\n' ' ')"
    [ "$clients" = 0 ] || die "vgpu smi still lists $clients clients"
    if [ "$backend" = emu ]; then
        [ "$leftover_bytes" = 0 ] || die "device memory not back to baseline ($base -> $after)"
    else
        [ "$leftover_bytes" -le $((64 << 20)) ] || die "device memory differs from baseline by $leftover_bytes bytes"
    fi
    if [ -n "$drv_basic" ]; then
        timeout 120 "${pre[@]}" "$drv_basic" >"$tmp/fresh.out" 2>&1 || { cat "$tmp/fresh.out"; die "a fresh drv_basic failed"; }
        echo "faults: a fresh client (drv_basic) passed: $(tail -1 "$tmp/fresh.out")"
    fi
    no_sanitizer_reports
    echo "faults: PASS loop ($mode)"
    ;;
# ------------------------------------------------------------------------------------
restart)
    start_daemon
    mkfifo "$tmp/in" || die "mkfifo"
    VGPU_LOG=warn "${pre[@]}" "$client" restart <"$tmp/in" >"$tmp/restart.out" 2>"$tmp/restart.err" &
    cpid=$!
    bg_pids+=("$cpid")
    exec 9>"$tmp/in"
    wait_line "$tmp/restart.out" '^blocked' "$cpid" || die "the client never got going: $(cat "$tmp/restart.out" "$tmp/restart.err")"
    sleep 0.5 # into its cuStreamSynchronize
    if [ "$mode" = unix ]; then
        grep -qE "lane 0 on shared memory" "$tmp/vgpud.log" || die "the client's lane 0 is not on shared memory"
    fi
    echo "faults: SIGKILL vgpud (pid $daemon_pid) under the running client"
    kill -KILL "$daemon_pid"
    wait "$daemon_pid" 2>/dev/null
    daemon_pid=
    echo gone >&9
    sleep 1
    [ "${addr%%:*}" = unix ] && rm -f "$tmp/vgpud.sock" # a killed daemon leaves its socket file
    start_daemon
    echo "faults: vgpud started again (pid $daemon_pid)"
    echo back >&9
    exec 9>&-
    rc=0
    for _ in $(seq 600); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$cpid" 2>/dev/null && die "the client hangs: $(cat "$tmp/restart.out")"
    wait "$cpid" || rc=$?
    cat "$tmp/restart.out"
    echo "---- guest stderr ----"
    cat "$tmp/restart.err"
    [ "$rc" = 0 ] || die "the client saw calls that did not fail fast with one sticky error (exit $rc)"
    lines=$(grep -c "connection to vgpud lost" "$tmp/restart.err")
    [ "$lines" = 1 ] || die "expected one 'connection to vgpud lost' line from the guest, got $lines"
    grep -qiE "segmentation|abort|core dumped" "$tmp/restart.err" && die "the client crashed"
    out=$(timeout 60 "${pre[@]}" "$client" info) || die "a new client after the restart failed"
    echo "faults: a new client after the restart: $out"
    no_sanitizer_reports
    echo "faults: PASS restart ($mode)"
    ;;
# ------------------------------------------------------------------------------------
foreign)
    start_daemon
    mkfifo "$tmp/in" || die "mkfifo"
    "${pre[@]}" "$client" owner "$tmp/handles" <"$tmp/in" >"$tmp/owner.out" 2>&1 &
    opid=$!
    bg_pids+=("$opid")
    exec 9>"$tmp/in"
    wait_line "$tmp/owner.out" '^ready' "$opid" || die "the owner never got ready: $(cat "$tmp/owner.out")"
    echo "faults: client A (pid $opid) wrote: $(cat "$tmp/handles")"
    irc=0
    "${pre[@]}" "$client" intruder "$tmp/handles" >"$tmp/intruder.out" 2>&1 || irc=$?
    cat "$tmp/intruder.out"
    [ "$irc" = 0 ] || die "client B got through with A's handles or memory"
    echo done >&9
    exec 9>&-
    orc=0
    wait "$opid" || orc=$?
    cat "$tmp/owner.out"
    [ "$orc" = 0 ] && grep -q '^intact' "$tmp/owner.out" || die "client A's data or objects were damaged"
    # Streams and events are refused by the guest library already (it knows which are
    # its own); test_daemon sends them to the daemon directly.
    for what in "MEMCPY_DTOH names a device address range" "MEMCPY_HTOD names a device address range" \
        "MEMSET names a device address range" "MEM_FREE names a device allocation" \
        "MODULE_GET_FUNCTION names a module" "MODULE_UNLOAD names a module" \
        "(FUNC_PARAM_INFO|LAUNCH) names a function"; do
        wait_log "client pid [0-9]+: ($what) that is not its own" 5 || die "no daemon log line for: $what"
    done
    grep -E "that is not its own" "$tmp/vgpud.log" | sed 's/^/faults: daemon: /'
    no_sanitizer_reports
    echo "faults: PASS foreign ($mode)"
    ;;
# ------------------------------------------------------------------------------------
limits)
    start_daemon --max-clients 2 --max-lanes 4 --max-objects 64 --max-message 1M
    "$vgpud" --help | grep -q -- "--max-clients" || die "vgpud --help does not list --max-clients"
    # Two clients hold both client slots; a third one's cuInit fails.
    mkfifo "$tmp/in" || die "mkfifo"
    "${pre[@]}" "$client" hold <"$tmp/in" >"$tmp/h1.out" 2>&1 &
    h1=$!
    bg_pids+=("$h1")
    exec 9>"$tmp/in"
    "${pre[@]}" "$client" hold <"$tmp/in" >"$tmp/h2.out" 2>&1 9>&- & # not holding the fifo's write end itself
    h2=$!
    bg_pids+=("$h2")
    wait_line "$tmp/h1.out" '^ready' "$h1" || die "holder 1 never got ready: $(cat "$tmp/h1.out")"
    wait_line "$tmp/h2.out" '^ready' "$h2" || die "holder 2 never got ready: $(cat "$tmp/h2.out")"
    if "${pre[@]}" "$client" info >"$tmp/third.out" 2>&1; then die "a third client got in past --max-clients 2"; fi
    grep -q "daemon busy" "$tmp/third.out" || die "the third client's error does not say why: $(cat "$tmp/third.out")"
    wait_log "refused: 2 clients connected \(--max-clients 2\)" 5 || die "no daemon log line for the refused client"
    echo "faults: third client refused: $(grep -m1 'daemon busy' "$tmp/third.out")"
    echo done >&9
    echo done >&9
    exec 9>&-
    wait "$h1" "$h2"
    for _ in $(seq 200); do [ "$(workers | wc -l)" -le 1 ] && break; sleep 0.05; done
    # A client whose 6 threads want lanes: lane 0 plus 3 more fit in --max-lanes 4.
    "${pre[@]}" "$client" lanes 6 >"$tmp/lanes.out" 2>&1 || die "the lanes client failed: $(cat "$tmp/lanes.out")"
    read -r _ ok refused < <(grep '^lanes:' "$tmp/lanes.out")
    echo "faults: lanes: $ok threads worked, $refused refused"
    [ "${refused:-0}" -ge 1 ] && [ "${ok:-0}" -ge 1 ] || die "expected some threads refused: $(cat "$tmp/lanes.out")"
    wait_log "lane refused: 4 lanes open \(--max-lanes 4\)" 5 || die "no daemon log line for the refused lane"
    # Objects: the 65th handle fails with out of memory; freeing one makes room.
    "${pre[@]}" "$client" objects >"$tmp/objects.out" 2>&1 || die "the objects client failed: $(cat "$tmp/objects.out")"
    cat "$tmp/objects.out"
    wait_log "handle table full .*--max-objects 64" 5 || die "no daemon log line for the full handle table"
    # A frame over --max-message ends that session (a 2 MiB copy travels as one frame).
    "${pre[@]}" "$client" big $((2 << 20)) >"$tmp/big.out" 2>&1
    cat "$tmp/big.out"
    grep -q "^big: CUDA_ERROR" "$tmp/big.out" || die "a 2 MiB frame was accepted under --max-message 1M"
    wait_log "exceeds the limit of 1048576 bytes \(--max-message\)" 5 || die "no daemon log line for the oversized frame"
    kill -0 "$daemon_pid" 2>/dev/null || die "vgpud died"
    out=$(timeout 60 "${pre[@]}" "$client" info) || die "a client after the limits test failed"
    no_sanitizer_reports
    echo "faults: PASS limits ($mode)"
    ;;
# ------------------------------------------------------------------------------------
flood)
    td=${VGPU_E2E_TEST_DAEMON:-}
    [ -x "$td" ] || die "VGPU_E2E_TEST_DAEMON does not name test_daemon: '$td'"
    [ -x "$drv_basic" ] || die "drv_basic not given"
    start_daemon
    "$td" --flood "$addr" 300 20 >"$tmp/flood.out" 2>&1 &
    fpid=$!
    bg_pids+=("$fpid")
    wait_line "$tmp/flood.out" '^flooding' "$fpid" || die "the flood did not start: $(cat "$tmp/flood.out")"
    t0=$(date +%s.%N)
    timeout 120 "${pre[@]}" "$drv_basic" >"$tmp/fresh.out" 2>&1 || { cat "$tmp/fresh.out"; die "drv_basic failed during the flood"; }
    t1=$(date +%s.%N)
    # (drv_basic connected while the flood held its connections: they live 5 s or more)
    echo "faults: started during the flood, drv_basic passed in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s: $(tail -1 "$tmp/fresh.out")"
    frc=0
    wait "$fpid" || frc=$?
    cat "$tmp/flood.out"
    [ "$frc" = 0 ] || die "flood connections were not all dropped"
    wait_log "refused: 64 of its handshakes already pending" 5 || die "no daemon log line for the per-peer bound"
    kill -0 "$daemon_pid" 2>/dev/null || die "vgpud died"
    no_sanitizer_reports
    echo "faults: PASS flood ($mode)"
    ;;
# ------------------------------------------------------------------------------------
stall)
    [ "$mode" = unix ] || die "stall runs over a unix socket only"
    python3 - "$tmp/vgpud.sock" >"$tmp/vgpud.log" 2>&1 <<'PY' &
import socket, struct, sys, time
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1]); srv.listen(4)
print("fake daemon listening", flush=True)
def read_frame(c):
    hdr = b""
    while len(hdr) < 16:
        d = c.recv(16 - len(hdr))
        if not d: return None
        hdr += d
    length, op, flags, seq = struct.unpack("<IHHQ", hdr)
    body = b""
    while len(body) < length:
        d = c.recv(length - len(body))
        if not d: return None
        body += d
    return op, seq
while True:
    c, _ = srv.accept()
    if read_frame(c) is None: continue  # a liveness probe
    # the handshake of protocol 2 (docs/protocol.md §5), without a token: CHALLENGE,
    # AUTH (read), AUTH_OK, then the HELLO reply
    ch = struct.pack("<iI", 0, 2) + b"\1" * 32
    c.sendall(struct.pack("<IHHQ", len(ch), 0, 2, 0) + ch)
    if read_frame(c) is None: continue
    ok = struct.pack("<i", 0) + b"\0" * 32
    c.sendall(struct.pack("<IHHQ", len(ok), 0, 2, 0) + ok)
    msg = b"fake daemon"
    body = struct.pack("<iIQI", 0, 2, 7, 0) + b"\0" * 16 + struct.pack("<I", len(msg)) + msg + struct.pack("<I", 0)
    c.sendall(struct.pack("<IHHQ", len(body), 0, 2, 0) + body)
    f = read_frame(c)
    if f is None: continue
    print("request op %#x: sending 10 bytes of its reply, then stalling" % f[0], flush=True)
    c.sendall(struct.pack("<IHHQ", 64, 0, 2, f[1])[:10])
    time.sleep(60)
PY
    daemon_pid=$!
    for _ in $(seq 200); do [ -S "$tmp/vgpud.sock" ] && break; sleep 0.05; done
    [ -S "$tmp/vgpud.sock" ] || die "the fake daemon did not start"
    t0=$(date +%s.%N)
    rc=0
    VGPU_TIMEOUT=2 VGPU_SHM=0 timeout 60 "${pre[@]}" "$client" info >"$tmp/stall.out" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    cat "$tmp/stall.out"
    [ "$rc" != 124 ] || die "the client hung on a daemon that stalled midway through a reply"
    [ "$rc" != 0 ] || die "the client succeeded against a stalled daemon"
    grep -q "stopped midway through a reply for 2 s" "$tmp/stall.out" || die "no guest log line saying why"
    awk -v s="$secs" 'BEGIN { exit !(s < 30) }' || die "the client took $secs s to give up"
    echo "faults: the client gave up after $secs s (VGPU_TIMEOUT=2)"
    echo "faults: PASS stall ($mode)"
    ;;
*) die "unknown test '$test_name'" ;;
esac

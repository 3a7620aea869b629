#!/usr/bin/env bash
# A SIGKILLed short-lived client leaves nothing on the server (Ollama SIGKILLs its
# discovery probes when they overrun their time limits).
#
#   killed_probe.sh unix|unix-noshm|tcp|tcp-tls|ivshmem KILLED_PROBE
#
# unix: the clients' lanes move to shared memory, with 4 KiB rings (VGPU_SHM_RING), and
# the holding client copies whole 16 MiB buffers in its loop, so that it is killed in
# the middle of a message streaming through the ring; the daemon's log must show its
# lane on shared memory. unix-noshm: VGPU_SHM=0, the lanes stay on the socket. tcp-tls: over
# TLS (test certificates from tls_certs.sh; a skip without openssl), killed mid-copy too, so
# the daemon's relay sees the guest vanish in the middle of a record. ivshmem: the region is
# a file (as in a VM's guest, nothing tells the daemon a process died): vgpud runs with
# --ivshmem-timeout 2 and must notice that the killed client's beat stopped.
#
# Starts a private vgpud, then:
#   1. `KILLED_PROBE info` (a fresh client): free device memory before;
#   2. `KILLED_PROBE hold 16M 4` in the background: waits for its "ready" line (it then
#      holds 64 MiB and keeps memsetting them), and SIGKILLs it mid-work;
#   3. waits for the daemon's log line "client pid PID (...) disconnected (connection
#      closed): freed 4 allocations and 0 VMM allocations (67108864 bytes), ..." and for the client's worker
#      process to be gone;
#   4. `KILLED_PROBE info` again: free device memory must equal the value of step 1
#      (exactly on the emu backend; within 64 MiB on a real GPU, whose free memory other
#      processes move).
# The clients run with vgpu's libcuda.so.1 first on LD_LIBRARY_PATH and VGPU_SERVER set.
# Environment: the VGPU_E2E_* variables of run_e2e.sh (e2e.cmake sets them).
set -u

die() {
    echo "killed_probe: FAIL: $*" >&2
    [ -s "${tmp:-/nonexistent}/vgpud.log" ] && { echo "---- vgpud log ----"; cat "$tmp/vgpud.log"; }
    exit 1
}

[ $# -eq 2 ] || { echo "usage: killed_probe.sh unix|unix-noshm|tcp|tcp-tls|ivshmem KILLED_PROBE" >&2; exit 2; }
mode=$1
client=$2
bin=${VGPU_E2E_BIN:-}
vgpud=${VGPU_E2E_VGPUD:-${bin:+$bin/vgpud}}
probe=${VGPU_E2E_PROBE:-}
lib=${VGPU_E2E_LIB:-}
backend=${VGPU_E2E_BACKEND:-emu}
[ -x "$vgpud" ] || die "vgpud not found: '$vgpud'"
[ -x "$probe" ] || die "e2e_probe not found: '$probe'"
[ -x "$client" ] || die "client not found: '$client'"
[ -e "$lib/libcuda.so.1" ] || die "VGPU_E2E_LIB does not hold libcuda.so.1: '$lib'"

bytes=$((16 << 20))
count=4
held=$((bytes * count))

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-killed.XXXXXX") || die "mktemp"
daemon_pid=
hold_pid=
cleanup() {
    local rc=$?
    [ -n "$hold_pid" ] && kill -KILL "$hold_pid" 2>/dev/null
    if [ -n "$daemon_pid" ]; then
        kill -TERM "$daemon_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon_pid" 2>/dev/null
        wait "$daemon_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT

if [ "$mode" = ivshmem ]; then
    addr="ivshmem:$tmp/region"
elif [ "${mode%%-*}" != tcp ]; then
    addr="unix:$tmp/vgpud.sock"
else
    port=$("$probe" freeport) || die "no free TCP port"
    addr="tcp:127.0.0.1:$port"
fi
# A token (required over TCP), which the clients prove through VGPU_TOKEN_FILE.
(umask 077 && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/token") || die "cannot write a token"
export VGPU_TOKEN_FILE="$tmp/token"
args=(--listen "$addr" --backend "$backend" --token-file "$tmp/token")
if [ "$mode" = tcp-tls ]; then
    bash "$(dirname "$0")/tls_certs.sh" "$tmp/tls" >/dev/null || exit $?
    args+=(--tls-cert "$tmp/tls/server.pem" --tls-key "$tmp/tls/server.key")
    export VGPU_TLS_CA="$tmp/tls/ca.pem"
fi
[ "$backend" = emu ] && [ -n "${VGPU_E2E_EMU_MEMORY:-}" ] && args+=(--emu-memory "$VGPU_E2E_EMU_MEMORY")
[ "$mode" = ivshmem ] && args+=(--ivshmem-timeout 2)
echo "killed_probe: $vgpud ${args[*]}"
VGPU_LOG=info VGPU_EMU_KERNELS="${VGPU_E2E_PLUGINS:-}" "$vgpud" "${args[@]}" </dev/null >"$tmp/vgpud.log" 2>&1 &
daemon_pid=$!
up=0
for _ in $(seq 300); do
    kill -0 "$daemon_pid" 2>/dev/null || die "vgpud exited during startup"
    if "$probe" connect "$addr" 2>/dev/null; then up=1; break; fi
    sleep 0.05
done
[ $up = 1 ] || die "vgpud does not accept connections on $addr"

[ -n "${VGPU_E2E_PRELOAD:-}" ] && export LD_PRELOAD="$VGPU_E2E_PRELOAD"
export VGPU_SERVER="$addr" LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
hold_mode=()
case "$mode" in
unix)
    unset VGPU_SHM
    export VGPU_SHM_RING=4096
    hold_mode=(copy)
    ;;
unix-noshm) export VGPU_SHM=0 ;;
tcp-tls | ivshmem) hold_mode=(copy) ;;
esac

# The daemon's worker processes (its children), one per connected client.
workers() {
    # grep, not awk over the files: mawk gives up on a file whose process just exited
    grep -H '^PPid:' /proc/[0-9]*/status 2>/dev/null | awk -F'[/:[:space:]]+' -v p="$daemon_pid" '$NF == p { print $3 }'
}

info() {
    local out
    out=$(timeout 60 "$client" info) || die "'$client info' failed"
    echo "$out" | sed -n 's/^free=\([0-9]*\) .*/\1/p'
}

free_before=$(info)
[ -n "$free_before" ] || die "no free memory figure before"
echo "killed_probe: free before: $free_before"

"$client" hold "$bytes" "$count" "${hold_mode[@]}" >"$tmp/hold.out" 2>&1 & # killed below, or by cleanup
hold_pid=$!
ready=0
for _ in $(seq 600); do
    grep -q '^ready ' "$tmp/hold.out" 2>/dev/null && { ready=1; break; }
    kill -0 "$hold_pid" 2>/dev/null || break
    sleep 0.05
done
[ $ready = 1 ] || die "the holding client never got ready: $(cat "$tmp/hold.out")"
victim=$hold_pid
echo "killed_probe: $(cat "$tmp/hold.out"); workers now: $(workers | tr '\n' ' ')"
free_during=$(info)
echo "killed_probe: free seen by another client while it holds $held bytes: $free_during"
if [ "$backend" != emu ] && [ "$free_during" -gt $((free_before - held)) ]; then
    die "free memory did not drop by the $held bytes held ($free_before -> $free_during)"
fi
sleep 0.2 # let it get well into its memset loop
echo "killed_probe: SIGKILL client pid $victim"
kill -KILL "$victim" || die "could not kill $victim"
wait "$hold_pid" 2>/dev/null
hold_pid=

line=
for _ in $(seq 200); do
    pattern="client pid $victim \(.*\) disconnected \(connection closed\): freed $count allocations and 0 VMM allocations \($held bytes\)"
    line=$(grep -E "$pattern" "$tmp/vgpud.log" | head -1)
    [ -n "$line" ] && break
    sleep 0.05
done
[ -n "$line" ] || die "no disconnect line for pid $victim freeing $count allocations ($held bytes) in the daemon log"
echo "killed_probe: daemon: ${line#*] }"

# The victim's own worker (named in the daemon's connect line) must be gone; the daemon
# keeps one spare worker waiting for the next client, which is not the victim's.
victim_worker=$(grep -oE "client pid $victim \(.*\) connected via .* worker pid [0-9]+" "$tmp/vgpud.log" | grep -oE '[0-9]+$' | head -1)
[ -n "$victim_worker" ] || die "no connect line naming the worker of pid $victim in the daemon log"
shm_line=$(grep -E "client pid $victim \(.*\): lane 0 on shared memory" "$tmp/vgpud.log" | head -1)
if [ "$mode" = unix ]; then
    [ -n "$shm_line" ] || die "the killed client's lane 0 was not on shared memory"
    echo "killed_probe: ${shm_line#*] }"
elif [ -n "$shm_line" ]; then
    die "the killed client's lane 0 moved to shared memory in mode $mode"
fi
left=
for _ in $(seq 200); do
    left=$(workers | grep -x "$victim_worker" || true)
    [ -z "$left" ] && break
    sleep 0.05
done
[ -z "$left" ] || die "the killed client's worker (pid $victim_worker) is still running"
for _ in $(seq 200); do [ "$(workers | wc -l)" -le 1 ] && break; sleep 0.05; done
[ "$(workers | wc -l)" -le 1 ] || die "workers left besides the spare: $(workers | tr '\n' ' ')"

free_after=$(info)
echo "killed_probe: free after: $free_after"
if [ "$backend" = emu ]; then
    [ "$free_after" = "$free_before" ] || die "free memory $free_after != $free_before before the killed client"
else
    diff=$((free_after > free_before ? free_after - free_before : free_before - free_after))
    [ "$diff" -le $((64 << 20)) ] || die "free memory $free_after differs from $free_before by $diff bytes"
fi
grep -qE "AddressSanitizer|runtime error" "$tmp/vgpud.log" && die "sanitizer report in the daemon log"
echo "killed_probe: PASS ($mode)"

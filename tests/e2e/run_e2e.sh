#!/usr/bin/env bash
# Run one end-to-end test program against a private vgpud.
#
#   run_e2e.sh unix|unix-noshm|tcp PROGRAM [ARGS...]
#       start `vgpud --listen ADDR --backend BACKEND --token-file FILE` (ADDR a unix
#       socket in a private temp dir, or tcp:127.0.0.1:<free port>; FILE a fresh token,
#       which the program proves over TCP via VGPU_TOKEN_FILE), wait until it accepts, run
#       `vgpu run --server ADDR -- PROGRAM ARGS...`, then stop the daemon with SIGTERM.
#       Fails if the program fails, if the daemon dies during the run, or if it does
#       not exit cleanly (status 0 or 143) within 10 s of SIGTERM. unix: the lanes move
#       to shared memory (the default; the daemon's log must show it); unix-noshm: the
#       program runs with VGPU_SHM=0 and its lanes stay on the socket.
#   run_e2e.sh vsock PROGRAM [ARGS...]
#       as tcp, over vsock: vgpud listens on vsock:PORT, the program reaches it at
#       vsock:1:PORT (the local CID) with the token. Needs the vsock_loopback module;
#       without it (binding CID 1 fails) exits 77, a skip, saying so.
#   run_e2e.sh ivshmem PROGRAM [ARGS...]
#       as tcp, over ivshmem with the region a file: vgpud listens on ivshmem:FILE (a
#       fresh file in the temp dir, which it creates), the program maps the same file
#       (VGPU_SERVER=ivshmem:FILE) with the token, as a virtual machine's guest maps the
#       BAR of QEMU's ivshmem device (tests/vm runs that).
#   run_e2e.sh ivshmem-doorbell PROGRAM [ARGS...]
#       as ivshmem, with vgpud as the ivshmem server (--listen ivshmem-doorbell:SOCKET) of a
#       simulated QEMU (VGPU_E2E_QEMU_SIM, tests/e2e/ivshmem_qemu_sim.c) that makes a fake
#       sysfs device of the region; the program finds it with VGPU_SERVER=ivshmem:auto
#       (VGPU_IVSHMEM_SYSFS) and rings the daemon through its doorbell register. The
#       daemon's log must show the VM attached and the simulator must have seen rings.
#   run_e2e.sh tcp-tls|tcp-tls-client PROGRAM [ARGS...]
#       as tcp, over TLS: a test CA and certificates are made with the openssl command
#       (tls_certs.sh; exit 77, a skip, without it), vgpud gets --tls-cert/--tls-key
#       (tcp-tls-client: also --tls-client-ca) and the program VGPU_TLS_CA (and
#       VGPU_TLS_CERT/VGPU_TLS_KEY, and the address tcp:localhost:PORT, so the name is
#       checked rather than the IP); the daemon's log must show the session on TLS.
#   run_e2e.sh tls-refused-CASE PROGRAM [ARGS...]
#       a TLS mismatch that must fail cleanly: PROGRAM (tests/e2e/unreachable.c) checks
#       that cuInit fails promptly, and the guest's and the daemon's logs must say why.
#       CASE: wrong-ca (guest trusts another CA), wrong-name (daemon's certificate names
#       another host), plain-guest (no VGPU_TLS_CA against a TLS daemon), plain-daemon
#       (TLS guest against a plain daemon), no-client-cert / other-client-cert (daemon
#       with --tls-client-ca; guest without a certificate / with one from another CA),
#       bad-ca-file (VGPU_TLS_CA names no file), cert-without-key (VGPU_TLS_CERT alone).
#   run_e2e.sh dead-unix|dead-tcp|dead-vsock|dead-ivshmem PROGRAM [ARGS...]
#       no daemon: run PROGRAM directly with VGPU_SERVER set to an address where
#       nothing listens (a stale unix socket file / a closed TCP port / a vsock port on
#       the local CID, which fails at once also where vsock or its loopback is missing /
#       an ivshmem region file no daemon has set up)
#       and vgpu's libcuda.so.1 first on LD_LIBRARY_PATH (tests/e2e/unreachable.c).
#
# Environment (e2e.cmake sets these for ctest):
#   VGPU_E2E_BIN        directory holding vgpud and vgpu
#   VGPU_E2E_VGPUD, VGPU_E2E_VGPU   explicit paths (override VGPU_E2E_BIN)
#   VGPU_E2E_LIB        directory holding vgpu's libcuda.so.1 (dead-* modes)
#   VGPU_E2E_PLUGINS    colon-separated CPU kernel plugins -> daemon's VGPU_EMU_KERNELS
#   VGPU_E2E_PROBE      path of the e2e_probe helper
#   VGPU_E2E_BACKEND    emu (default) | cuda | auto
#   VGPU_E2E_EMU_MEMORY optional --emu-memory SIZE for the emu backend
#   VGPU_E2E_CLIENT_MEMORY_LIMIT optional --client-memory-limit SIZE
#   VGPU_E2E_CLIENT_PINNED_LIMIT optional --client-pinned-limit SIZE
#   VGPU_E2E_TIMEOUT    seconds the program may run (default 240)
#   VGPU_E2E_KEEP=1     keep the temp dir (its path is printed)
set -u

die() {
    echo "run_e2e: $*" >&2
    exit 1
}

[ $# -ge 2 ] || die "usage: run_e2e.sh unix|unix-noshm|tcp|vsock|ivshmem|ivshmem-doorbell|tcp-tls|tcp-tls-client|tls-refused-CASE|dead-unix|dead-tcp|dead-vsock|dead-ivshmem PROGRAM [ARGS...]"
mode=$1
prog=$2
shift 2

bin=${VGPU_E2E_BIN:-}
vgpud=${VGPU_E2E_VGPUD:-${bin:+$bin/vgpud}}
vgpu=${VGPU_E2E_VGPU:-${bin:+$bin/vgpu}}
probe=${VGPU_E2E_PROBE:-}
backend=${VGPU_E2E_BACKEND:-emu}
limit=${VGPU_E2E_TIMEOUT:-240}

[ -x "$prog" ] || die "program not found or not executable: $prog"
if [ -z "$probe" ] || [ ! -x "$probe" ]; then
    die "VGPU_E2E_PROBE does not name the e2e_probe helper: '$probe'"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-e2e.XXXXXX") || die "mktemp failed"
daemon_pid=
daemon_pgid=

# Stop the daemon: SIGTERM, up to 10 s, then SIGKILL; then SIGKILL whatever is left
# in its process group (it leads its own group when started through setsid).
# Sets daemon_status to its exit status, or "killed".
daemon_status=
stop_daemon() {
    [ -n "$daemon_pid" ] || return 0
    local pid=$daemon_pid pgid=$daemon_pgid i
    daemon_pid=
    daemon_pgid=
    kill -TERM "$pid" 2>/dev/null
    # bash reaps its exited children as they die, so kill -0 fails once vgpud is gone
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "run_e2e: vgpud (pid $pid) ignored SIGTERM for 10 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        daemon_status=killed
    else
        wait "$pid" 2>/dev/null
        daemon_status=$?
    fi
    [ -n "$pgid" ] && kill -KILL -- "-$pgid" 2>/dev/null
    return 0
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$?
    stop_program
    [ -n "${sim_pid:-}" ] && kill -KILL "$sim_pid" 2>/dev/null
    stop_daemon
    if [ "${VGPU_E2E_KEEP:-0}" = 1 ]; then
        echo "run_e2e: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

show_daemon_log() {
    if [ -s "$tmp/vgpud.log" ]; then
        echo "---- vgpud log ($1) ----"
        cat "$tmp/vgpud.log"
        echo "---- end of vgpud log ----"
    fi
}

# Start vgpud listening on $1; wait until it accepts (at $2 if given). 0 on success.
start_daemon() {
    local listen=$1 reach=${2:-$1} i
    local args=(--listen "$listen" --backend "$backend" --token-file "$tmp/token" "${daemon_extra[@]}")
    if [ -n "${VGPU_E2E_CLIENT_MEMORY_LIMIT:-}" ]; then
        args+=(--client-memory-limit "$VGPU_E2E_CLIENT_MEMORY_LIMIT")
    fi
    if [ -n "${VGPU_E2E_CLIENT_PINNED_LIMIT:-}" ]; then
        args+=(--client-pinned-limit "$VGPU_E2E_CLIENT_PINNED_LIMIT")
    fi
    if [ "$backend" = emu ] && [ -n "${VGPU_E2E_EMU_MEMORY:-}" ]; then
        args+=(--emu-memory "$VGPU_E2E_EMU_MEMORY")
    fi
    echo "run_e2e: starting $vgpud ${args[*]}"
    echo "run_e2e: VGPU_EMU_KERNELS=${VGPU_E2E_PLUGINS:-}"
    # its own session/process group, so that cleanup can take any helpers with it
    # (without job control a background job is no group leader, so setsid execs
    # vgpud in place instead of forking: $! is the daemon itself)
    local launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    VGPU_LOG=info VGPU_EMU_KERNELS="${VGPU_E2E_PLUGINS:-}" "${launcher[@]}" "$vgpud" "${args[@]}" \
        </dev/null >>"$tmp/vgpud.log" 2>&1 &
    daemon_pid=$!
    daemon_pgid=
    [ ${#launcher[@]} -gt 0 ] && daemon_pgid=$daemon_pid
    for ((i = 0; i < 300; i++)); do # up to ~15 s
        if ! kill -0 "$daemon_pid" 2>/dev/null; then
            wait "$daemon_pid" 2>/dev/null
            echo "run_e2e: vgpud exited during startup (status $?)" >&2
            daemon_pid=
            return 1
        fi
        if [ "$reach" = none ]; then # ivshmem-doorbell: the socket exists once vgpud is ready
            [ -S "${listen#*:}" ] && grep -q "ready (backend" "$tmp/vgpud.log" && return 0
        elif "$probe" connect "$reach" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "run_e2e: vgpud did not accept connections on $reach within 15 s" >&2
    stop_daemon
    return 1
}

# Extra vgpud options (TLS modes).
daemon_extra=()

# Every daemon has a token (tenant "default"), required over TCP (TLS included): programs
# prove it there (VGPU_TOKEN_FILE); over the unix socket they connect without one.
(umask 077 && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/token") || die "cannot write a token"
unset VGPU_TOKEN VGPU_TOKEN_FILE

# TLS modes: certificates in $tmp/tls; skip (77) without the openssl command.
tls_setup() {
    if "$vgpud" --listen unix:/nonexistent/vgpud.sock --tls-cert /dev/null --tls-key /dev/null 2>&1 |
        grep -q "built without TLS"; then
        echo "run_e2e: SKIP: vgpud was built without TLS (no OpenSSL at build time)"
        exit 77
    fi
    bash "$(dirname "$0")/tls_certs.sh" "$tmp/tls" || {
        rc=$?
        [ $rc = 77 ] && echo "run_e2e: SKIP: no openssl command to make test certificates"
        exit $rc
    }
}

# Start vgpud on a free TCP port (a few tries: the port can be taken meanwhile); sets addr.
start_tcp_daemon() {
    local _
    for _ in 1 2 3; do
        port=$("$probe" freeport) || die "no free TCP port"
        addr="tcp:127.0.0.1:$port"
        start_daemon "$addr" && return 0
    done
    show_daemon_log "startup failed"
    die "could not start vgpud"
}

# Run the program with a time limit; its output goes straight to ours. It runs in
# the background and we `wait` for it, so that a SIGTERM/SIGINT to this script is
# handled at once (cleanup stops the program and the daemon). Returns its status.
prog_pid=
run_limited() {
    local t=() rc
    command -v timeout >/dev/null 2>&1 && t=(timeout -k 10 "$limit")
    "${t[@]}" "$@" </dev/null 2>&1 &
    prog_pid=$!
    wait "$prog_pid"
    rc=$?
    prog_pid=
    return "$rc"
}

# shellcheck disable=SC2317 # called from cleanup (the EXIT trap)
stop_program() {
    [ -n "$prog_pid" ] || return 0
    local i
    kill -TERM "$prog_pid" 2>/dev/null # timeout(1) passes it on to the program
    for ((i = 0; i < 50; i++)); do
        kill -0 "$prog_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$prog_pid" 2>/dev/null
    wait "$prog_pid" 2>/dev/null
    prog_pid=
}

case "$mode" in
unix | unix-noshm | tcp | vsock | ivshmem | ivshmem-doorbell | tcp-tls | tcp-tls-client)
    # the network (vsock and ivshmem reach virtual machines) needs the token
    [ "${mode%%-*}" = tcp ] || [ "$mode" = vsock ] || [ "${mode%%-*}" = ivshmem ] && export VGPU_TOKEN_FILE="$tmp/token"
    [ -x "$vgpud" ] || die "vgpud not found: '$vgpud' (set VGPU_E2E_BIN)"
    [ -x "$vgpu" ] || die "vgpu not found: '$vgpu' (set VGPU_E2E_BIN)"
    case "$mode" in
    tcp-tls*)
        tls_setup
        daemon_extra+=(--tls-cert "$tmp/tls/server.pem" --tls-key "$tmp/tls/server.key")
        export VGPU_TLS_CA="$tmp/tls/ca.pem"
        if [ "$mode" = tcp-tls-client ]; then
            daemon_extra+=(--tls-client-ca "$tmp/tls/ca.pem")
            export VGPU_TLS_CERT="$tmp/tls/client.pem" VGPU_TLS_KEY="$tmp/tls/client.key"
        fi
        ;;
    esac
    started=0
    for _ in 1 2 3; do
        reach=
        if [ "$mode" = vsock ]; then
            port=$("$probe" vsockport)
            rc=$?
            if [ $rc = 77 ]; then
                echo "run_e2e: SKIP: this machine has no vsock loopback (load vsock_loopback to run vsock tests)"
                exit 77
            fi
            [ $rc = 0 ] || die "no free vsock port"
            addr="vsock:$port"
            reach="vsock:1:$port"
        elif [ "$mode" = ivshmem ]; then
            addr="ivshmem:$tmp/region"
        elif [ "$mode" = ivshmem-doorbell ]; then
            addr="ivshmem-doorbell:$tmp/ivshmem.sock"
            reach=none # nothing to probe: a connection would attach as the VM
        elif [ "${mode%%-*}" != tcp ]; then
            addr="unix:$tmp/vgpud.sock"
        else
            port=$("$probe" freeport) || die "no free TCP port"
            addr="tcp:127.0.0.1:$port"
        fi
        if start_daemon "$addr" "$reach"; then
            started=1
            break
        fi
        # a TCP or vsock port can be taken between freeport and bind: try another one
        [ "${mode%%-*}" = tcp ] || [ "$mode" = vsock ] || break
    done
    if [ $started != 1 ]; then
        show_daemon_log "startup failed"
        die "could not start vgpud"
    fi

    echo "run_e2e: $vgpu run --server $addr -- $prog $*"
    # A sanitizer build's guest library needs the ASan runtime loaded first in
    # programs that were not built with it (the nvcc-built ones).
    if [ -n "${VGPU_E2E_PRELOAD:-}" ]; then export LD_PRELOAD="$VGPU_E2E_PRELOAD"; fi
    if [ "$mode" = unix-noshm ]; then export VGPU_SHM=0; else unset VGPU_SHM; fi
    start=$(date +%s.%N)
    # with a client certificate, the guest names the daemon by host name (SSL_set1_host)
    # rather than by address as the others do
    [ "$mode" = tcp-tls-client ] && addr="tcp:localhost:$port"
    # the daemon listens on every CID; the guest names one
    [ "$mode" = vsock ] && addr=$reach
    if [ "$mode" = ivshmem-doorbell ]; then
        sim=${VGPU_E2E_QEMU_SIM:-}
        [ -x "$sim" ] || die "VGPU_E2E_QEMU_SIM does not name ivshmem_qemu_sim: '$sim'"
        "$sim" "$tmp/ivshmem.sock" "$tmp/sysfs" >"$tmp/sim.out" 2>&1 &
        sim_pid=$!
        for _ in $(seq 200); do grep -q '^ready' "$tmp/sim.out" 2>/dev/null && break; sleep 0.05; done
        grep -q '^ready' "$tmp/sim.out" || die "the simulated QEMU did not attach: $(cat "$tmp/sim.out")"
        export VGPU_IVSHMEM_SYSFS="$tmp/sysfs"
        addr="ivshmem:auto"
    fi
    run_limited "$vgpu" run --server "$addr" -- "$prog" "$@"
    rc=$?
    end=$(date +%s.%N)
    echo "run_e2e: program exit status $rc after $(awk "BEGIN{printf \"%.2f\", $end - $start}") s"
    [ $rc = 124 ] && echo "run_e2e: TIMEOUT after $limit s" >&2

    failed=0
    [ $rc = 0 ] || failed=1
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
        echo "run_e2e: FAIL: vgpud died while the program ran" >&2
        failed=1
    fi
    stop_daemon
    # the transport the lanes used (the worker logs "lane 0 on shared memory")
    shm_lanes=$(grep -c "lane 0 on shared memory" "$tmp/vgpud.log" 2>/dev/null)
    case "$mode" in
    unix)
        if [ "${shm_lanes:-0}" = 0 ]; then
            echo "run_e2e: FAIL: no session moved to shared memory over unix" >&2
            failed=1
        fi
        ;;
    unix-noshm | tcp | vsock | ivshmem* | tcp-tls*)
        if [ "${shm_lanes:-0}" != 0 ]; then
            echo "run_e2e: FAIL: a session moved to shared memory in mode $mode" >&2
            failed=1
        fi
        ;;
    esac
    case "$mode" in
    vsock)
        if ! grep -q "connected via vsock" "$tmp/vgpud.log"; then
            echo "run_e2e: FAIL: the daemon's log shows no session over vsock" >&2
            failed=1
        fi
        ;;
    ivshmem)
        if ! grep -q "connected via ivshmem:" "$tmp/vgpud.log"; then
            echo "run_e2e: FAIL: the daemon's log shows no session over ivshmem" >&2
            failed=1
        fi
        ;;
    ivshmem-doorbell)
        kill -TERM "$sim_pid" 2>/dev/null
        wait "$sim_pid"
        sim_rc=$?
        sim_pid=
        echo "run_e2e: simulated QEMU: $(tr '\n' ' ' <"$tmp/sim.out") (exit $sim_rc)"
        if ! grep -q "a VM attached" "$tmp/vgpud.log" || ! grep -q "connected via ivshmem:" "$tmp/vgpud.log"; then
            echo "run_e2e: FAIL: the daemon's log shows no VM attached, or no session over ivshmem" >&2
            failed=1
        fi
        if [ "$sim_rc" != 0 ] || ! grep -qE '^rings [1-9]' "$tmp/sim.out"; then
            echo "run_e2e: FAIL: the guest never rang the daemon's doorbell" >&2
            failed=1
        fi
        ;;
    tcp-tls*)
        if ! grep -q "connected via tcp:.* (tls)" "$tmp/vgpud.log"; then
            echo "run_e2e: FAIL: the daemon's log shows no session over TLS" >&2
            failed=1
        fi
        ;;
    esac
    echo "run_e2e: vgpud exit status after SIGTERM: $daemon_status"
    case "$daemon_status" in
    0 | 143) ;;
    *)
        echo "run_e2e: FAIL: vgpud did not shut down cleanly (status $daemon_status)" >&2
        failed=1
        ;;
    esac
    show_daemon_log "$mode"
    if [ $failed != 0 ]; then
        echo "run_e2e: FAIL ($prog)" >&2
        exit 1
    fi
    echo "run_e2e: PASS ($prog)"
    exit 0
    ;;
tls-refused-*)
    [ -x "$vgpud" ] || die "vgpud not found: '$vgpud' (set VGPU_E2E_BIN)"
    lib=${VGPU_E2E_LIB:-}
    [ -e "$lib/libcuda.so.1" ] || die "VGPU_E2E_LIB does not hold libcuda.so.1: '$lib'"
    tls_setup
    c=$tmp/tls
    server_tls=(--tls-cert "$c/server.pem" --tls-key "$c/server.key")
    guest_env=(VGPU_TLS_CA="$c/ca.pem")
    case "${mode#tls-refused-}" in
    wrong-ca)
        guest_env=(VGPU_TLS_CA="$c/other-ca.pem")
        guest_says="certificate verify failed"
        daemon_says="TLS handshake failed"
        ;;
    wrong-name)
        server_tls=(--tls-cert "$c/wrongname.pem" --tls-key "$c/wrongname.key")
        guest_says="certificate verify failed (IP address mismatch)"
        daemon_says="TLS handshake failed"
        ;;
    plain-guest)
        guest_env=()
        guest_says="accepts TLS only"
        daemon_says="refused: plain tcp, but this daemon accepts TLS only"
        ;;
    plain-daemon)
        server_tls=()
        guest_says="TLS handshake with tcp:127.0.0.1:[0-9]* failed"
        daemon_says="refused: it speaks TLS, but this daemon has no --tls-cert"
        ;;
    bad-ca-file)
        guest_env=(VGPU_TLS_CA="$c/nope.pem")
        guest_says="VGPU_TLS_CA $c/nope.pem: No such file"
        daemon_says=""
        ;;
    cert-without-key)
        guest_env+=(VGPU_TLS_CERT="$c/client.pem")
        guest_says="VGPU_TLS_CERT and VGPU_TLS_KEY go together"
        daemon_says=""
        ;;
    no-client-cert)
        server_tls+=(--tls-client-ca "$c/ca.pem")
        guest_says="certificate required"
        daemon_says="TLS handshake failed: peer did not return a certificate"
        ;;
    other-client-cert)
        server_tls+=(--tls-client-ca "$c/ca.pem")
        guest_env+=(VGPU_TLS_CERT="$c/other-client.pem" VGPU_TLS_KEY="$c/other-client.key")
        guest_says="alert unknown ca"
        daemon_says="TLS handshake failed: certificate verify failed"
        ;;
    *) die "unknown mode '$mode'" ;;
    esac
    daemon_extra+=("${server_tls[@]}")
    start_tcp_daemon
    # the TLS handshake may wait out the connect timeout (5 s) before it fails
    export VGPU_E2E_UNREACHABLE_MAX_S=${VGPU_E2E_UNREACHABLE_MAX_S:-12}
    echo "run_e2e: VGPU_SERVER=$addr ${guest_env[*]} LD_LIBRARY_PATH=$lib $prog $*"
    if [ -n "${VGPU_E2E_PRELOAD:-}" ]; then export LD_PRELOAD="$VGPU_E2E_PRELOAD"; fi
    unset VGPU_TLS_CA VGPU_TLS_CERT VGPU_TLS_KEY
    run_limited env "${guest_env[@]}" VGPU_SERVER="$addr" \
        LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$prog" "$@" >"$tmp/guest.log"
    rc=$?
    cat "$tmp/guest.log"
    echo "run_e2e: program exit status $rc"
    failed=0
    [ $rc = 0 ] || failed=1
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
        echo "run_e2e: FAIL: vgpud died" >&2
        failed=1
    fi
    # the daemon logs a refused handshake when it gives up on it: give it a moment
    for ((i = 0; i < 100; i++)); do
        grep -q -- "$daemon_says" "$tmp/vgpud.log" && break
        sleep 0.1
    done
    if ! grep -q -- "$guest_says" "$tmp/guest.log"; then
        echo "run_e2e: FAIL: the guest's log does not say '$guest_says'" >&2
        failed=1
    fi
    if [ -n "$daemon_says" ] && ! grep -q -- "$daemon_says" "$tmp/vgpud.log"; then
        echo "run_e2e: FAIL: the daemon's log does not say '$daemon_says'" >&2
        failed=1
    fi
    stop_daemon
    show_daemon_log "$mode"
    [ $failed = 0 ] || {
        echo "run_e2e: FAIL ($mode)" >&2
        exit 1
    }
    echo "run_e2e: PASS ($mode)"
    exit 0
    ;;
dead-unix | dead-tcp | dead-vsock | dead-ivshmem)
    lib=${VGPU_E2E_LIB:-}
    if [ -z "$lib" ] || [ ! -e "$lib/libcuda.so.1" ]; then
        die "VGPU_E2E_LIB does not hold libcuda.so.1: '$lib'"
    fi
    if [ "$mode" = dead-unix ]; then
        "$probe" deadsock "$tmp/dead.sock" || die "cannot create a dead socket"
        addr="unix:$tmp/dead.sock"
    elif [ "$mode" = dead-vsock ]; then
        # a port nobody listens on where there is a loopback; elsewhere any connect fails
        port=$("$probe" vsockport 2>/dev/null) || port=9
        addr="vsock:1:$port"
        # a virtio-vsock guest without loopback waits out the kernel's 2 s connect timeout
        export VGPU_E2E_UNREACHABLE_MAX_S=${VGPU_E2E_UNREACHABLE_MAX_S:-8}
    elif [ "$mode" = dead-ivshmem ]; then
        # what a guest sees when QEMU created the file and vgpud never set it up
        truncate -s 64M "$tmp/region" || die "cannot create a region file"
        addr="ivshmem:$tmp/region"
    else
        port=$("$probe" freeport) || die "no free TCP port"
        addr="tcp:127.0.0.1:$port"
    fi
    echo "run_e2e: VGPU_SERVER=$addr (nothing listens) LD_LIBRARY_PATH=$lib $prog $*"
    if [ -n "${VGPU_E2E_PRELOAD:-}" ]; then export LD_PRELOAD="$VGPU_E2E_PRELOAD"; fi
    VGPU_SERVER="$addr" LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" run_limited "$prog" "$@"
    rc=$?
    echo "run_e2e: program exit status $rc"
    [ $rc = 0 ] || {
        echo "run_e2e: FAIL ($prog)" >&2
        exit 1
    }
    echo "run_e2e: PASS ($prog)"
    exit 0
    ;;
*)
    die "unknown mode '$mode' (unix, unix-noshm, tcp, vsock, ivshmem, ivshmem-doorbell, tcp-tls, tcp-tls-client, tls-refused-*, dead-unix, dead-tcp, dead-vsock, dead-ivshmem)"
    ;;
esac

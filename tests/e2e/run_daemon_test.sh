#!/usr/bin/env bash
# Run tests/e2e/test_daemon.c against a private vgpud (emu backend).
#
#   run_daemon_test.sh unix|tcp VGPUD TEST_DAEMON
#
# Starts `VGPUD --backend emu --listen ADDR --token-file FILE` (ADDR a unix socket in a
# private temp dir, or tcp:127.0.0.1:<free port>; FILE a fresh random token) with its
# stderr in a log file, waits until it accepts, runs `TEST_DAEMON ADDR` with
# VGPU_DAEMON_TEST_LOG naming that log (and, over TCP, VGPU_TOKEN the token), then stops the
# daemon with SIGTERM. Fails if the test fails, if the daemon died during the test, or
# if it does not exit with status 0 within 10 s of SIGTERM. VGPU_DAEMON_TEST_KEEP=1
# keeps the temp dir. VGPU_DAEMON_TEST_ARGS: extra vgpud options; VGPU_DAEMON_TEST_MODE:
# an option put before ADDR (--faults).
set -u

die() {
    echo "run_daemon_test: $*" >&2
    exit 1
}

[ $# -eq 3 ] || die "usage: run_daemon_test.sh unix|tcp VGPUD TEST_DAEMON"
mode=$1
vgpud=$2
prog=$3
case "$mode" in unix | tcp) ;; *) die "unknown mode '$mode' (unix or tcp)" ;; esac
[ -x "$vgpud" ] || die "vgpud not found: '$vgpud'"
[ -x "$prog" ] || die "test program not found: '$prog'"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-daemon-test.XXXXXX") || die "mktemp failed"
log=$tmp/vgpud.log
daemon_pid=
daemon_pgid=
daemon_status=

# SIGTERM, up to 10 s, then SIGKILL; then SIGKILL whatever is left in the daemon's
# process group (its workers). Sets daemon_status to the exit status or "killed".
stop_daemon() {
    [ -n "$daemon_pid" ] || return 0
    local pid=$daemon_pid pgid=$daemon_pgid i
    daemon_pid=
    daemon_pgid=
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "run_daemon_test: vgpud (pid $pid) still running 10 s after SIGTERM; killing it" >&2
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
    stop_daemon
    if [ "${VGPU_DAEMON_TEST_KEEP:-0}" = 1 ]; then
        echo "run_daemon_test: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Start vgpud on $1 and wait (up to 15 s) until it accepts. 0 on success.
start_daemon() {
    local addr=$1 i launcher=()
    echo "run_daemon_test: starting $vgpud --backend emu --listen $addr --token-file $tmp/token"
    # its own process group, so that cleanup can take stray workers with it (without
    # job control, setsid execs vgpud in place: $! is the daemon itself)
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    # shellcheck disable=SC2086 # VGPU_DAEMON_TEST_ARGS: extra vgpud options, split on spaces
    VGPU_LOG=info "${launcher[@]}" "$vgpud" --backend emu --listen "$addr" --token-file "$tmp/token" ${VGPU_DAEMON_TEST_ARGS:-} </dev/null >>"$log" 2>&1 &
    daemon_pid=$!
    daemon_pgid=
    [ ${#launcher[@]} -gt 0 ] && daemon_pgid=$daemon_pid
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$daemon_pid" 2>/dev/null; then
            wait "$daemon_pid" 2>/dev/null
            echo "run_daemon_test: vgpud exited during startup (status $?)" >&2
            daemon_pid=
            return 1
        fi
        "$prog" --probe "$addr" && return 0
        sleep 0.05
    done
    echo "run_daemon_test: vgpud did not accept connections on $addr within 15 s" >&2
    stop_daemon
    return 1
}

show_log() {
    echo "---- vgpud log ----"
    cat "$log" 2>/dev/null
    echo "---- end of vgpud log ----"
}

# The daemon has a token (tenant "default"); the test proves it over TCP, where it is
# required, and connects without one over the unix socket, where it is not.
(umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/token") || die "cannot write a token"
if [ "$mode" = tcp ]; then VGPU_TOKEN=$(cat "$tmp/token"); export VGPU_TOKEN; else unset VGPU_TOKEN; fi
unset VGPU_TOKEN_FILE

started=0
for _ in 1 2 3; do
    if [ "$mode" = unix ]; then
        addr="unix:$tmp/vgpud.sock"
    else
        port=$("$prog" --freeport) || die "no free TCP port"
        addr="tcp:127.0.0.1:$port"
    fi
    if start_daemon "$addr"; then
        started=1
        break
    fi
    [ "$mode" = tcp ] || break # a TCP port can be taken between --freeport and bind
done
if [ $started != 1 ]; then
    show_log
    die "could not start vgpud"
fi

t=()
command -v timeout >/dev/null 2>&1 && t=(timeout -k 5 60)
# shellcheck disable=SC2086 # VGPU_DAEMON_TEST_MODE: test_daemon's mode option (--faults)
VGPU_DAEMON_TEST_LOG=$log "${t[@]}" "$prog" ${VGPU_DAEMON_TEST_MODE:-} "$addr" </dev/null
rc=$?
[ $rc = 124 ] && echo "run_daemon_test: test program TIMED OUT after 60 s" >&2

failed=0
[ $rc = 0 ] || failed=1
if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "run_daemon_test: FAIL: vgpud died during the test" >&2
    failed=1
fi
stop_daemon
echo "run_daemon_test: vgpud exit status after SIGTERM: $daemon_status"
if [ "$daemon_status" != 0 ]; then
    echo "run_daemon_test: FAIL: vgpud did not exit with status 0 within 10 s of SIGTERM" >&2
    failed=1
fi
show_log
if [ $failed != 0 ]; then
    echo "run_daemon_test: FAIL ($mode)" >&2
    exit 1
fi
echo "run_daemon_test: PASS ($mode)"
exit 0

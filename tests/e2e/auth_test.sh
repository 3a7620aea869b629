#!/usr/bin/env bash
# Tenants and authentication end to end (emu backend), against private vgpud daemons:
#
#   auth_test.sh AUTH_PROBE DRV_QUOTA
#
#  - vgpud refuses to start with a TCP listener and no token, and on a bad --config
#    (naming the line); --tcp-no-auth starts with a warning and admits anyone;
#  - a daemon configured by a --config file with two tenants (token files, different
#    memory-limit) and a [server] section (the command line overriding one entry):
#    each tenant's token is accepted over TCP and its client sees its own quota through
#    CUDA and NVML (drv_quota); a wrong and a missing token are refused with
#    CUDA_ERROR_NOT_PERMITTED / NVML_ERROR_NO_PERMISSION within seconds, one error line
#    on the guest, one on the daemon; over the unix socket a client without a token gets
#    the default quota and one with a token its tenant's;
#  - unix peers against --allow-users/--allow-groups (refused as `nobody`, accepted by
#    name and by id) and a tenant chosen by its `users`.
#
# Environment (e2e.cmake sets it): VGPU_E2E_VGPUD, VGPU_E2E_LIB (vgpu's libcuda.so.1 and
# libnvidia-ml.so.1), VGPU_E2E_PROBE (e2e_probe), VGPU_E2E_PRELOAD (sanitizer builds).
# Output: PASS/FAIL per check; exit 1 if any failed.
set -u

[ $# -eq 2 ] || { echo "usage: auth_test.sh AUTH_PROBE DRV_QUOTA" >&2; exit 2; }
auth_probe=$1
drv_quota=$2
vgpud=${VGPU_E2E_VGPUD:?}
lib=${VGPU_E2E_LIB:?}
probe=${VGPU_E2E_PROBE:?}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-auth.XXXXXX") || exit 1
daemon_pid=
passed=0
failed=0

stop_daemon() {
    [ -n "$daemon_pid" ] || return 0
    kill -TERM "$daemon_pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
    daemon_pid=
}
cleanup() {
    stop_daemon
    [ "${VGPU_E2E_KEEP:-0}" = 1 ] && echo "auth_test: kept $tmp" || rm -rf "$tmp"
}
trap cleanup EXIT

pass() {
    echo "PASS $1"
    passed=$((passed + 1))
}
fail() {
    echo "FAIL $1: $2"
    failed=$((failed + 1))
    [ -f "$log" ] && { echo "---- vgpud log ----"; cat "$log"; echo "----"; }
    [ -f "$tmp/out" ] && { echo "---- guest output ----"; cat "$tmp/out"; echo "----"; }
}

# start_daemon NAME WAIT_ADDR ARGS...: vgpud with ARGS, its log in $tmp/NAME.log; waits
# until WAIT_ADDR accepts. 0 on success.
log=
start_daemon() {
    local name=$1 addr=$2
    shift 2
    log=$tmp/$name.log
    VGPU_LOG=info "$vgpud" --backend emu "$@" </dev/null >"$log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 300); do
        if ! kill -0 "$daemon_pid" 2>/dev/null; then
            wait "$daemon_pid" 2>/dev/null
            daemon_pid=
            echo "auth_test: vgpud $* exited during startup:"
            cat "$log"
            return 1
        fi
        "$probe" connect "$addr" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "auth_test: vgpud $* does not accept on $addr"
    stop_daemon
    return 1
}

# guest ADDR PROGRAM ARGS...: run a guest program against ADDR (with whatever VGPU_TOKEN*
# the caller exported), output in $tmp/out; returns its exit status.
guest() {
    local addr=$1
    shift
    local pre=()
    [ -n "${VGPU_E2E_PRELOAD:-}" ] && pre=(env "LD_PRELOAD=$VGPU_E2E_PRELOAD")
    "${pre[@]}" env VGPU_SERVER="$addr" LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        timeout -k 5 60 "$@" </dev/null >"$tmp/out" 2>&1
}

free_port() { "$probe" freeport; }
mktoken() { (umask 077 && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$1"); }
unset VGPU_TOKEN VGPU_TOKEN_FILE

# A refusal: exit 3 (NOT_PERMITTED / NO_PERMISSION), exactly one guest line saying
# authentication failed, and the daemon's line with the reason.
check_refused() {
    local name=$1 rc=$2 daemon_why=$3
    local glines
    glines=$(grep -c "authentication failed" "$tmp/out")
    if [ "$rc" != 3 ]; then
        fail "$name" "exit status $rc, expected 3 (a clean not-permitted error)"
    elif [ "$glines" != 1 ]; then
        fail "$name" "$glines guest lines say 'authentication failed', expected 1"
    elif ! grep -q "authentication failed: $daemon_why" "$log"; then
        fail "$name" "no daemon line 'authentication failed: $daemon_why'"
    else
        pass "$name"
    fi
}

# check_total NAME BYTES KEY TOKEN ADDR cuda|nvml: auth_probe (with TOKEN, VAR=VALUE
# or "-", in its environment) succeeds and prints KEY=BYTES.
check_total() {
    local name=$1 want=$2 key=$3 token=$4 addr=$5 mode=$6
    (
        [ "$token" != - ] && export "${token?}"
        guest "$addr" "$auth_probe" "$mode"
    )
    local rc=$?
    if [ $rc != 0 ]; then fail "$name" "exit status $rc"
    elif ! grep -qx "$key=$want" "$tmp/out"; then fail "$name" "no line $key=$want"
    else pass "$name"; fi
}

# ---- startup checks
port=$(free_port)
timeout 20 "$vgpud" --backend emu --listen "tcp:127.0.0.1:$port" >"$tmp/out" 2>&1
rc=$?
log=$tmp/none
if [ $rc = 2 ] && grep -q "needs a token" "$tmp/out"; then pass startup_refuses_tcp_without_token
else fail startup_refuses_tcp_without_token "status $rc"; fi

printf '[server]\nbackend = emu\n\n[tenant x]\nweight = 5000\nusers = 0\n' >"$tmp/bad.conf"
timeout 20 "$vgpud" --config "$tmp/bad.conf" --listen "unix:$tmp/bad.sock" >"$tmp/out" 2>&1
rc=$?
if [ $rc = 2 ] && grep -q "bad.conf:5: bad weight" "$tmp/out"; then pass startup_refuses_bad_config
else fail startup_refuses_bad_config "status $rc"; fi

printf '[server]\nlisten = unix:%s/bad.sock\nbackend = emu\nemu-memory = lots\n' "$tmp" >"$tmp/bad2.conf"
timeout 20 "$vgpud" --config "$tmp/bad2.conf" >"$tmp/out" 2>&1
rc=$?
if [ $rc = 2 ] && grep -q "bad --emu-memory 'lots'" "$tmp/out" && grep -q "bad2.conf line 4" "$tmp/out"; then
    pass startup_refuses_bad_server_option
else fail startup_refuses_bad_server_option "status $rc"; fi

port=$(free_port)
if start_daemon noauth "tcp:127.0.0.1:$port" --listen "tcp:127.0.0.1:$port" --tcp-no-auth; then
    guest "tcp:127.0.0.1:$port" "$auth_probe" cuda
    rc=$?
    if [ $rc != 0 ]; then fail tcp_no_auth_admits_anyone "exit status $rc"
    elif ! grep -q "tcp-no-auth: clients without a token are accepted" "$log"; then
        fail tcp_no_auth_admits_anyone "no startup warning"
    else pass tcp_no_auth_admits_anyone; fi
    stop_daemon
else
    fail tcp_no_auth_admits_anyone "daemon did not start"
fi

# ---- two tenants from a configuration file
mktoken "$tmp/alice.token"
mktoken "$tmp/bob.token"
port=$(free_port)
tcp="tcp:127.0.0.1:$port"
sock="unix:$tmp/d.sock"
cat >"$tmp/vgpud.conf" <<EOF
# two tenants with their own quotas; anonymous unix clients get client-memory-limit
[server]
listen = $tcp
listen = $sock
client-memory-limit = 80M

[tenant alice]
token-file = alice.token
memory-limit = 64M
weight = 2

[tenant bob]
token-file = $tmp/bob.token
memory-limit = 48M
EOF
# the command line wins over the file: anonymous clients get 72M, not 80M
if start_daemon tenants "$sock" --config "$tmp/vgpud.conf" --client-memory-limit 72M; then
    VGPU_TOKEN_FILE=$tmp/alice.token guest "$tcp" "$auth_probe" cuda
    rc=$?
    if [ $rc = 0 ] && grep -q "tenant alice" "$log"; then pass token_accepted_tcp
    else fail token_accepted_tcp "exit status $rc"; fi

    VGPU_TOKEN=not-the-token guest "$tcp" "$auth_probe" cuda
    check_refused wrong_token_refused $? "wrong token"
    guest "$tcp" "$auth_probe" cuda
    check_refused missing_token_refused $? "no token"
    guest "$tcp" "$auth_probe" nvml
    check_refused missing_token_refused_nvml $? "no token"
    VGPU_TOKEN=not-the-token guest "$tcp" "$auth_probe" nvml
    check_refused wrong_token_refused_nvml $? "wrong token"

    # alice: the whole quota check (drv_quota is written for 64 MiB); the others: the
    # totals CUDA and NVML report
    VGPU_TOKEN_FILE=$tmp/alice.token guest "$tcp" "$drv_quota" $((64 << 20))
    rc=$?
    if [ $rc = 0 ]; then pass tenant_alice_quota_64M; else fail tenant_alice_quota_64M "drv_quota status $rc"; fi
    check_total tenant_bob_quota_48M_cuda "$((48 << 20))" total "VGPU_TOKEN=$(cat "$tmp/bob.token")" "$tcp" cuda
    check_total tenant_bob_quota_48M_nvml "$((48 << 20))" nvml_total "VGPU_TOKEN_FILE=$tmp/bob.token" "$tcp" nvml
    check_total unix_anonymous_command_line_quota_72M "$((72 << 20))" total - "$sock" cuda
    check_total unix_anonymous_command_line_quota_72M_nvml "$((72 << 20))" nvml_total - "$sock" nvml
    check_total unix_token_picks_tenant "$((48 << 20))" nvml_total "VGPU_TOKEN_FILE=$tmp/bob.token" "$sock" nvml
    stop_daemon
else
    fail tenants_daemon "did not start"
fi

# ---- unix peers and allow lists (SO_PEERCRED)
me=$(id -un)
myuid=$(id -u)
mygroup=$(id -gn)
sock="unix:$tmp/u.sock"
if [ "$myuid" != "$(id -u nobody 2>/dev/null)" ] && start_daemon allow_nobody "$sock" --listen "$sock" --allow-users nobody; then
    guest "$sock" "$auth_probe" cuda
    check_refused unix_peer_refused_by_allow_list $? "uid $myuid"
    stop_daemon
else
    echo "SKIP unix_peer_refused_by_allow_list (running as nobody, or no daemon)"
fi
for allow in "--allow-users $me" "--allow-users nobody,$myuid" "--allow-groups $mygroup"; do
    name="unix_peer_accepted_${allow#--}"
    name=${name// /_}
    # shellcheck disable=SC2086 # split the option from its value
    if start_daemon allow "$sock" --listen "$sock" $allow; then
        guest "$sock" "$auth_probe" cuda
        rc=$?
        if [ $rc = 0 ]; then pass "$name"; else fail "$name" "exit status $rc"; fi
        stop_daemon
    else
        fail "$name" "daemon did not start"
    fi
done

printf '[tenant mine]\nusers = %s\nmemory-limit = 64M\n[tenant other]\nusers = nobody\nmemory-limit = 8M\n' "$me" \
    >"$tmp/users.conf"
if start_daemon users "$sock" --listen "$sock" --config "$tmp/users.conf"; then
    guest "$sock" "$drv_quota" $((64 << 20))
    rc=$?
    if [ $rc = 0 ] && grep -q "tenant mine" "$log"; then pass unix_tenant_by_user
    else fail unix_tenant_by_user "drv_quota status $rc"; fi
    stop_daemon
else
    fail unix_tenant_by_user "daemon did not start"
fi

echo "auth_test: $passed passed, $failed failed"
[ $failed = 0 ]

#!/usr/bin/env bash
# The QEMU guest test (tests/vm/README.md): boots a Debian kernel under QEMU (TCG: no
# KVM needed) with an initramfs in which vgpu is installed as on a real guest, and runs
# the end-to-end programs and `vgpu bench` in the guest against a private vgpud on this
# host (emu backend), over each transport:
#   tcp      QEMU's user-mode network: the guest reaches the daemon's 127.0.0.1:PORT at
#            10.0.2.2:PORT, with the address and token from the guest's client.conf
#   ivshmem  vgpud --listen ivshmem:FILE; QEMU maps FILE as an ivshmem-plain PCI device
#            (memory-backend-file, share=on) at 00:05.0; the guest uses VGPU_SERVER=ivshmem:auto
#   ivshmem-doorbell  vgpud --listen ivshmem-doorbell:SOCKET, the ivshmem server of QEMU's
#            ivshmem-doorbell device at 00:06.0 (-chardev socket); the guest uses
#            VGPU_SERVER=ivshmem:0000:00:06.0 and rings the daemon through BAR 0
# Prints a table (test x transport: result and seconds), the round-trip latency seen from
# inside the guest per transport, the boot time and the total runtime; exits 0 when every
# test passed, 1 otherwise (the logs are kept then, in a temp dir it names), 77 when this
# machine cannot run it (no QEMU or kernel: run tests/vm/setup.sh first).
#
#   run_vm_test.sh [--transports tcp,ivshmem,ivshmem-doorbell] [--only TEST,...] [--no-bench] [--keep] BUILD_DIR
#
# --transports  default: tcp, plus ivshmem and ivshmem-doorbell when `vgpud --help` mentions them
# --only        run only these tests (names as in the table) in the guest
# --no-bench    skip `vgpu bench --quick` in the guest
# --keep        keep the temp dir (also VGPU_VM_KEEP=1)
# Environment:
#   VGPU_VM_CACHE          where setup.sh put the kernel (default $HOME/.cache/vgpu-vm)
#   VGPU_VM_TIMEOUT        seconds for the whole guest run, then QEMU is killed (default 1800)
#   VGPU_VM_BOOT_TIMEOUT   seconds until the guest's /init must report (default 180)
#   VGPU_VM_TEST_TIMEOUT   seconds one program may run in the guest (default 300)
#   VGPU_VM_MEMORY, VGPU_VM_SMP   guest memory in MiB (default 512) and CPUs (default 2)
#   VGPU_VM_QEMU_ARGS      extra QEMU arguments (split on spaces)
#   VGPU_VM_VGPUD          the daemon to run (default BUILD_DIR/bin/vgpud)
set -u

die() {
    echo "vm-test: $*" >&2
    exit 1
}
skip() {
    echo "vm-test: SKIP: $*"
    exit 77
}
usage() {
    echo "usage: run_vm_test.sh [--transports tcp,ivshmem,ivshmem-doorbell] [--only TEST,...] [--no-bench] [--keep] BUILD_DIR" >&2
    exit 2
}

transports=
only=
bench=1
keep=${VGPU_VM_KEEP:-0}
build=
while [ $# -gt 0 ]; do
    case "$1" in
    --transports) [ $# -ge 2 ] || usage; transports=$2; shift 2 ;;
    --transports=*) transports=${1#*=}; shift ;;
    --only) [ $# -ge 2 ] || usage; only=$2; shift 2 ;;
    --only=*) only=${1#*=}; shift ;;
    --no-bench) bench=0; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) usage ;;
    -*) echo "vm-test: unknown option $1" >&2; usage ;;
    *) [ -z "$build" ] || usage; build=$1; shift ;;
    esac
done
[ -n "$build" ] || usage
build=$(cd "$build" 2>/dev/null && pwd) || die "no build directory $build"
here=$(cd "$(dirname "$0")" && pwd)
cache=${VGPU_VM_CACHE:-$HOME/.cache/vgpu-vm}
run_limit=${VGPU_VM_TIMEOUT:-1800}
boot_limit=${VGPU_VM_BOOT_TIMEOUT:-180}
test_limit=${VGPU_VM_TEST_TIMEOUT:-300}
memory=${VGPU_VM_MEMORY:-512}
smp=${VGPU_VM_SMP:-2}

vgpud=${VGPU_VM_VGPUD:-$build/bin/vgpud}
probe=$build/tests/e2e/e2e_probe
[ -x "$vgpud" ] || die "$vgpud missing: build first (make)"
[ -x "$probe" ] || die "$probe missing: build first (make)"
command -v qemu-system-x86_64 >/dev/null 2>&1 || skip "no qemu-system-x86_64: run tests/vm/setup.sh"
kdir=$(cat "$cache/current" 2>/dev/null)
{ [ -n "$kdir" ] && [ -e "$kdir/.ready" ]; } || skip "no guest kernel in $cache: run tests/vm/setup.sh"

# ---- transports ----
daemon_has_ivshmem=0
daemon_has_doorbell=0
"$vgpud" --help 2>&1 | grep -q 'ivshmem:' && daemon_has_ivshmem=1
"$vgpud" --help 2>&1 | grep -q 'ivshmem-doorbell:' && daemon_has_doorbell=1
if [ -z "$transports" ]; then
    transports=tcp
    [ $daemon_has_ivshmem = 1 ] && transports+=,ivshmem
    [ $daemon_has_doorbell = 1 ] && transports+=,ivshmem-doorbell
fi
transport_list=$(echo "$transports" | tr ',' ' ')
use_ivshmem=0
use_doorbell=0
for t in $transport_list; do
    case "$t" in
    tcp) ;;
    ivshmem)
        use_ivshmem=1
        [ $daemon_has_ivshmem = 1 ] || die "this vgpud has no ivshmem listener (vgpud --help does not mention it)"
        ;;
    ivshmem-doorbell)
        use_doorbell=1
        [ $daemon_has_doorbell = 1 ] || die "this vgpud has no ivshmem-doorbell listener"
        ;;
    *) die "unknown transport '$t' (tcp, ivshmem, ivshmem-doorbell)" ;;
    esac
done

# ---- temp dir and cleanup ----
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-vm.XXXXXX") || die "mktemp failed"
shm_file=
daemon_pid=
qemu_pid=
failed=0
# stop a process we started in its own session: SIGTERM, up to $2 s, then SIGKILL;
# sets stopped_status to its exit status (or "killed")
stopped_status=
stop_process() {
    local pid=$1 grace=$2 i status
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        status=killed
    else
        wait "$pid" 2>/dev/null
        status=$?
    fi
    kill -KILL -- "-$pid" 2>/dev/null # whatever is left of its process group
    stopped_status=$status
}
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$?
    [ -n "$qemu_pid" ] && stop_process "$qemu_pid" 5
    [ -n "$daemon_pid" ] && stop_process "$daemon_pid" 10
    [ -n "$shm_file" ] && rm -f "$shm_file"
    if [ "$keep" = 1 ] || [ "$rc" != 0 ]; then
        echo "vm-test: logs kept in $tmp (serial.log: the guest's console; vgpud.log; qemu.log)"
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
t_start=$(now)

# ---- the guest image, with a fresh token ----
(umask 077 && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/token") || die "cannot write a token"
t0=$(now)
# a plain cpio: the kernel unpacks it faster than a gzip one under TCG
bash "$here/mkinitramfs.sh" "$build" "$tmp/initrd.cpio" "$tmp/token" || die "mkinitramfs.sh failed"
initrd_s=$(since "$t0")
read -r -a tests <<<"$(tr '\n' ' ' <"$tmp/initrd.cpio.tests")"
if [ -n "$only" ]; then
    read -r -a tests <<<"$(echo "$only" | tr ',' ' ')"
fi
[ "$bench" = 1 ] && tests+=(bench)

# ---- the daemon ----
plugins=$(find "$build/tests/e2e/plugins" -name '*.so' 2>/dev/null | sort | tr '\n' ':')
plugins=${plugins%:}
start_daemon() {
    local args=(--listen "tcp:127.0.0.1:$port" --backend emu --token-file "$tmp/token") i
    [ $use_ivshmem = 1 ] && args+=(--listen "ivshmem:$shm_file")
    [ $use_doorbell = 1 ] && args+=(--listen "ivshmem-doorbell:$tmp/ivshmem.sock")
    echo "vm-test: VGPU_EMU_KERNELS=$plugins $vgpud ${args[*]}" >>"$tmp/vgpud.log"
    VGPU_LOG=info VGPU_EMU_KERNELS=$plugins setsid "$vgpud" "${args[@]}" </dev/null >>"$tmp/vgpud.log" 2>&1 &
    daemon_pid=$!
    for ((i = 0; i < 300; i++)); do # up to ~15 s
        if ! kill -0 "$daemon_pid" 2>/dev/null; then
            wait "$daemon_pid" 2>/dev/null
            echo "vm-test: vgpud exited during startup (status $?)" >&2
            daemon_pid=
            return 1
        fi
        if "$probe" connect "tcp:127.0.0.1:$port" 2>/dev/null &&
            { [ $use_ivshmem = 0 ] || [ -s "$shm_file" ]; } &&
            { [ $use_doorbell = 0 ] || [ -S "$tmp/ivshmem.sock" ]; }; then
            return 0
        fi
        sleep 0.05
    done
    echo "vm-test: vgpud did not get ready within 15 s" >&2
    stop_process "$daemon_pid" 10
    daemon_pid=
    return 1
}
if [ $use_ivshmem = 1 ]; then
    # QEMU maps it as guest RAM: tmpfs when there is one
    shm_dir=/dev/shm
    [ -d "$shm_dir" ] && [ -w "$shm_dir" ] || shm_dir=$tmp
    shm_file=$(mktemp -u "$shm_dir/vgpu-vm-ivshmem.XXXXXX")
fi
started=0
for _ in 1 2 3; do # the port may be taken between freeport and bind
    port=$("$probe" freeport) || die "no free TCP port"
    [ -n "$shm_file" ] && rm -f "$shm_file"
    if start_daemon; then
        started=1
        break
    fi
done
if [ $started != 1 ]; then
    cat "$tmp/vgpud.log" >&2
    die "could not start vgpud"
fi

# ---- QEMU ----
append="console=ttyS0 quiet loglevel=3 panic=-1 vgpu.port=$port vgpu.transports=$transports"
append+=" vgpu.timeout=$test_limit vgpu.bench=$bench${only:+ vgpu.only=$only}"
# shellcheck disable=SC2054 # the commas belong to QEMU's option syntax
qemu=(qemu-system-x86_64 -machine q35 -accel tcg -smp "$smp" -m "$memory"
    -display none -monitor none -serial "file:$tmp/serial.log" -no-reboot
    -kernel "$kdir/vmlinuz" -initrd "$tmp/initrd.cpio" -append "$append"
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0)
if [ $use_ivshmem = 1 ]; then
    # the region as vgpud made it (a power of two, as ivshmem requires)
    shm_size=$(stat -c %s "$shm_file") || die "vgpud made no $shm_file"
    # shellcheck disable=SC2054 # QEMU's option syntax
    qemu+=(-object "memory-backend-file,id=vgpushm,share=on,mem-path=$shm_file,size=$shm_size"
        -device ivshmem-plain,memdev=vgpushm,addr=0x5)
fi
if [ $use_doorbell = 1 ]; then
    # QEMU gets the memory and the eventfds from vgpud, its ivshmem server
    # shellcheck disable=SC2054 # QEMU's option syntax
    qemu+=(-chardev "socket,path=$tmp/ivshmem.sock,id=vgpudb" -device ivshmem-doorbell,chardev=vgpudb,vectors=1,addr=0x6)
fi
if [ -n "${VGPU_VM_QEMU_ARGS:-}" ]; then
    read -r -a extra <<<"$VGPU_VM_QEMU_ARGS"
    qemu+=("${extra[@]}")
fi
echo "vm-test: ${qemu[*]}" | tee "$tmp/qemu.log"
: >"$tmp/serial.log"
t_qemu=$(now)
setsid "${qemu[@]}" </dev/null >>"$tmp/qemu.log" 2>&1 &
qemu_pid=$!

# each result line of the guest as it comes
last_shown=0
show_progress() {
    local n
    n=$(tr -d '\r' <"$tmp/serial.log" | grep -c '^VGPU-VM-RESULT')
    [ "$n" -gt "$last_shown" ] || return 0
    tr -d '\r' <"$tmp/serial.log" | grep '^VGPU-VM-RESULT' | sed -n "$((last_shown + 1)),${n}p" |
        while read -r _ name transport result rc secs; do
            echo "vm-test:   $name over $transport: $result (status $rc, $secs s)"
        done
    last_shown=$n
}

# Wait for the guest: /init must report within boot_limit, everything within run_limit.
boot_s=
guest_boot_s=
qemu_status=
outcome=
while :; do
    if ! kill -0 "$qemu_pid" 2>/dev/null; then
        wait "$qemu_pid" 2>/dev/null
        qemu_status=$?
        qemu_pid=
        break
    fi
    elapsed=$(since "$t_qemu")
    if [ -z "$boot_s" ]; then
        line=$(tr -d '\r' <"$tmp/serial.log" | grep -m1 '^VGPU-VM-BOOTED')
        if [ -n "$line" ]; then
            boot_s=$elapsed
            guest_boot_s=${line#VGPU-VM-BOOTED }
            echo "vm-test: the guest booted in $boot_s s (its /init started at uptime $guest_boot_s s)"
        elif awk -v e="$elapsed" -v l="$boot_limit" 'BEGIN { exit !(e > l) }'; then
            outcome="no sign of the guest's /init within $boot_limit s"
            break
        fi
    fi
    if awk -v e="$elapsed" -v l="$run_limit" 'BEGIN { exit !(e > l) }'; then
        outcome="the guest did not finish within $run_limit s (VGPU_VM_TIMEOUT)"
        break
    fi
    show_progress
    sleep 0.5
done
show_progress
if [ -n "$qemu_pid" ]; then
    echo "vm-test: FAIL: $outcome; stopping QEMU" >&2
    stop_process "$qemu_pid" 5
    qemu_pid=
    failed=1
fi
run_s=$(since "$t_qemu")
tr -d '\r' <"$tmp/serial.log" >"$tmp/console.log"
if [ -n "$qemu_status" ] && [ "$qemu_status" != 0 ]; then
    echo "vm-test: FAIL: QEMU exited with status $qemu_status:" >&2
    tail -n 20 "$tmp/qemu.log" >&2
    failed=1
fi
if ! grep -q '^VGPU-VM-DONE' "$tmp/console.log"; then
    echo "vm-test: FAIL: the guest did not finish its run (no VGPU-VM-DONE)" >&2
    failed=1
fi
if grep -q '^VGPU-VM-ERROR' "$tmp/console.log"; then
    grep '^VGPU-VM-ERROR' "$tmp/console.log" | sed 's/^VGPU-VM-ERROR/vm-test: FAIL: in the guest:/' >&2
    failed=1
fi

# ---- the daemon must have lived through it and stop cleanly ----
if [ -n "$daemon_pid" ]; then
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
        echo "vm-test: FAIL: vgpud died during the run" >&2
        failed=1
    fi
    stop_process "$daemon_pid" 10
    daemon_status=$stopped_status
    daemon_pid=
    case "$daemon_status" in
    0 | 143) ;;
    *)
        echo "vm-test: FAIL: vgpud did not shut down cleanly (status $daemon_status)" >&2
        failed=1
        ;;
    esac
fi
# the guest's sessions really came over each transport: the daemon logs each as
# "connected via tcp:127.0.0.1:PORT (tcp)" (the user-mode network's NAT) or
# "connected via ivshmem:FILE slot N (guest pid P) (ivshmem)" (FILE: the socket's path for
# ivshmem-doorbell)
sessions=
for t in $transport_list; do
    case "$t" in
    ivshmem) pattern="connected via ivshmem:$shm_file " ;;
    ivshmem-doorbell) pattern="connected via ivshmem:$tmp/ivshmem.sock " ;;
    *) pattern="connected via $t:" ;;
    esac
    n=$(grep -c "$pattern" "$tmp/vgpud.log")
    sessions+="${sessions:+, }$t $n"
    if [ "$n" = 0 ]; then
        echo "vm-test: FAIL: the daemon's log shows no session over $t" >&2
        failed=1
    fi
done

# the doorbell was used: vgpud counts the guests' rings ("... rang N times")
if [ $use_doorbell = 1 ]; then
    rings=$(sed -n 's/.*ivshmem .*ivshmem.sock: .*rang \([0-9]*\) times.*/\1/p' "$tmp/vgpud.log" | tail -n1)
    sessions+=" (doorbell rings: ${rings:-none})"
    if [ "${rings:-0}" = 0 ]; then
        echo "vm-test: FAIL: the guest never rang the daemon over ivshmem-doorbell" >&2
        failed=1
    fi
fi

# ---- summary ----
result_of() { # NAME TRANSPORT -> "PASS 3.80" / "FAIL(rc) 1.00" / "missing"
    awk -v n="$1" -v t="$2" '$1 == "VGPU-VM-RESULT" && $2 == n && $3 == t {
        r = ($4 == "PASS") ? "PASS" : "FAIL(" $5 ")"; printf "%s %.1fs", r, $6; found = 1; exit }
        END { if (!found) print "missing" }' "$tmp/console.log"
}
echo
echo "vm-test: results (kernel $(cat "$kdir/kernel-version"), $(qemu-system-x86_64 --version | head -n1 | sed 's/ (.*//'), TCG, $smp vCPUs, $memory MiB)"
printf '  %-18s' test
for t in $transport_list; do printf ' %-17s' "$t"; done
echo
passed=0
total=0
for name in "${tests[@]}"; do
    printf '  %-18s' "$name"
    for t in $transport_list; do
        r=$(result_of "$name" "$t")
        printf ' %-17s' "$r"
        total=$((total + 1))
        case "$r" in PASS*) passed=$((passed + 1)) ;; *) failed=1 ;; esac
    done
    echo
done
echo "vm-test: $passed of $total passed; sessions in the daemon's log: $sessions"
if [ "$bench" = 1 ]; then
    echo "vm-test: round trip from inside the guest (vgpu bench --quick: 4-byte device-to-host copy), and launch rate:"
    for t in $transport_list; do
        json=$(grep -m1 "^VGPU-VM-BENCH $t " "$tmp/console.log" | cut -d' ' -f3-)
        rtt=$(echo "$json" | sed -n 's/.*"rtt_us":{"p50":\([0-9.]*\),"p99":\([0-9.]*\)}.*/median \1 us, p99 \2 us/p')
        launch=$(echo "$json" | sed -n 's/.*"launches_per_s":{"p50":\([0-9.]*\),.*/\1/p')
        pp=$(echo "$json" | sed -n 's/.*"unix_pingpong_us":{"p50":\([0-9.]*\),.*/\1/p')
        printf '  %-16s %s; %s launches/s (guest unix-socket ping-pong baseline: %s us)\n' "$t" \
            "${rtt:-n/a}" "${launch:-n/a}" "${pp:-n/a}"
    done
fi
echo "vm-test: initramfs built in $initrd_s s; guest booted in ${boot_s:-n/a} s (kernel to /init: ${guest_boot_s:-n/a} s); guest run ${run_s} s; total $(since "$t_start") s"
if [ $failed != 0 ]; then
    echo "vm-test: FAIL; the guest's console (last 40 lines):" >&2
    tail -n 40 "$tmp/console.log" >&2
    exit 1
fi
echo "vm-test: PASS"
exit 0

#!/bin/sh
# /init of the QEMU guest test's initramfs (busybox sh; mkinitramfs.sh puts it there).
# Sets the guest up (file systems, network modules, eth0 at 10.0.2.15 behind QEMU's
# user-mode network, ldconfig for vgpu's /etc/ld.so.conf.d entry, /etc/vgpu/client.conf),
# then for each transport runs every test of /etc/vgpu-vm/tests and `vgpu bench`, and
# powers off. Everything it reports goes to the serial console as marker lines that
# run_vm_test.sh parses:
#   VGPU-VM-BOOTED UPTIME                     guest uptime (s) when /init started its work
#   VGPU-VM-START NAME TRANSPORT              a test begins (its output follows)
#   VGPU-VM-RESULT NAME TRANSPORT PASS|FAIL RC SECONDS
#   VGPU-VM-BENCH TRANSPORT JSON              `vgpu bench --json` from inside the guest
#   VGPU-VM-ERROR TEXT                        a set-up step failed
#   VGPU-VM-DONE                              all done, powering off
# Parameters from the kernel command line:
#   vgpu.port=N             vgpud's TCP port on the host (reached at 10.0.2.2:N)
#   vgpu.transports=A,B     tcp, ivshmem and/or ivshmem-doorbell (default tcp)
#   vgpu.timeout=S          seconds one test may run (default 300)
#   vgpu.bench=0|1          run `vgpu bench --quick` per transport (default 1)
#   vgpu.only=A,B           run only these tests (default: all)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/shm /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
# The kernel found no /dev/console in the archive (it has no device nodes): open it now.
exec </dev/console >/dev/console 2>&1
# Keep kernel messages from cutting into the marker lines.
echo 1 >/proc/sys/kernel/printk

error() { echo "VGPU-VM-ERROR $*"; }
finish() {
    echo "VGPU-VM-DONE"
    sync
    poweroff -f
    sleep 5
    echo o >/proc/sysrq-trigger # poweroff failed: the kernel's own
}

uptime_s() { cut -d' ' -f1 /proc/uptime; }
echo "VGPU-VM-BOOTED $(uptime_s)"

port=
transports=tcp
timeout_s=300
bench=1
only=
read -r cmdline </proc/cmdline
for arg in $cmdline; do
    case "$arg" in
    vgpu.port=*) port=${arg#*=} ;;
    vgpu.transports=*) transports=$(echo "${arg#*=}" | tr ',' ' ') ;;
    vgpu.timeout=*) timeout_s=${arg#*=} ;;
    vgpu.bench=*) bench=${arg#*=} ;;
    vgpu.only=*) only=$(echo "${arg#*=}" | tr ',' ' ') ;;
    esac
done
[ -n "$port" ] || error "no vgpu.port= on the kernel command line"

# ---- network: virtio-net behind QEMU's user-mode network (host = 10.0.2.2) ----
while read -r m; do
    [ -n "$m" ] || continue
    insmod "/lib/modules/$m.ko" || error "insmod $m failed"
done </lib/modules/modules.load
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    ip addr add 10.0.2.15/24 dev eth0
    ip route add default via 10.0.2.2
else
    error "no eth0 (network driver not loaded?)"
fi

# ---- vgpu as installed: the loader cache, the guest configuration ----
ldconfig || error "ldconfig failed"
{
    echo "# written by the VM test's /init"
    echo "server = tcp:10.0.2.2:$port"
    [ -f /etc/vgpu/token ] && echo "token-file = /etc/vgpu/token"
} >/etc/vgpu/client.conf
# nvml_basic checks the emu's documented values only when told the backend
export VGPU_E2E_BACKEND=emu
echo "VGPU-VM-INFO kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs, eth0 $(cat /sys/class/net/eth0/address 2>/dev/null)"

# The ivshmem device (PCI 1af4:1110; at $1 if given): its sysfs directory, memory
# decoding enabled.
ivshmem_device() {
    for d in /sys/bus/pci/devices/${1:-*}; do
        [ "$(cat "$d/vendor" 2>/dev/null)" = 0x1af4 ] || continue
        [ "$(cat "$d/device" 2>/dev/null)" = 0x1110 ] || continue
        echo 1 >"$d/enable" 2>/dev/null
        echo "$d"
        return 0
    done
    return 1
}

# `vgpu smi` shows the daemon's emulated device
smi_check() {
    out=$(vgpu smi </dev/null 2>&1)
    rc=$?
    echo "$out"
    [ $rc = 0 ] || return $rc
    echo "$out" | grep -q "vgpu emulated GPU" || {
        echo "smi: the emulated device is not listed"
        return 1
    }
}

selected() {
    [ -z "$only" ] && return 0
    for o in $only; do [ "$o" = "$1" ] && return 0; done
    return 1
}

for transport in $transports; do
    case "$transport" in
    tcp)
        # the address and the token come from /etc/vgpu/client.conf, as on an installed guest
        unset VGPU_SERVER
        server=tcp:10.0.2.2:$port
        ;;
    ivshmem)
        if dev=$(ivshmem_device); then
            echo "VGPU-VM-INFO ivshmem device ${dev##*/}: $(head -n3 "$dev/resource" | tail -n1)"
        else
            error "no ivshmem PCI device (1af4:1110)"
        fi
        export VGPU_SERVER=ivshmem:auto
        server=$VGPU_SERVER
        ;;
    ivshmem-doorbell)
        # run_vm_test.sh puts the ivshmem-doorbell device at 00:06.0 (ivshmem-plain at 05.0,
        # which ivshmem:auto finds first)
        if dev=$(ivshmem_device 0000:00:06.0); then
            echo "VGPU-VM-INFO ivshmem-doorbell device ${dev##*/}: $(head -n3 "$dev/resource" | tail -n1)"
        else
            error "no ivshmem-doorbell PCI device at 0000:00:06.0"
        fi
        export VGPU_SERVER=ivshmem:0000:00:06.0
        server=$VGPU_SERVER
        ;;
    *)
        error "unknown transport $transport"
        continue
        ;;
    esac
    while read -r name cmd; do
        [ -n "$name" ] || continue
        selected "$name" || continue
        echo "VGPU-VM-START $name $transport"
        t0=$(uptime_s)
        if [ "$name" = smi ]; then
            smi_check
        else
            # shellcheck disable=SC2086 # the command line is split on purpose
            timeout -s KILL "$timeout_s" $cmd </dev/null 2>&1
        fi
        rc=$?
        t1=$(uptime_s)
        result=FAIL
        [ $rc = 0 ] && result=PASS
        echo "VGPU-VM-RESULT $name $transport $result $rc $(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")"
    done </etc/vgpu-vm/tests
    if [ "$bench" = 1 ]; then
        echo "VGPU-VM-START bench $transport"
        t0=$(uptime_s)
        json=$(timeout -s KILL "$timeout_s" vgpu bench --server "$server" --quick --no-native --json \
            </dev/null 2>/tmp/bench.err)
        rc=$?
        t1=$(uptime_s)
        cat /tmp/bench.err
        echo "VGPU-VM-BENCH $transport $json"
        result=FAIL
        [ $rc = 0 ] && result=PASS
        echo "VGPU-VM-RESULT bench $transport $result $rc $(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")"
    fi
done
finish

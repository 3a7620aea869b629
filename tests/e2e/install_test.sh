#!/usr/bin/env bash
# `make install` / `make uninstall` into a temporary DESTDIR (no root needed):
#   1. install with PREFIX=/usr and check the layout: binaries, the guest libraries in
#      usr/lib/vgpu with their .so links, etc/ld.so.conf.d/vgpu.conf naming that
#      directory, the systemd unit, the configurations (installed only when absent);
#   2. start the installed usr/bin/vgpud (emu backend) on TCP with a token, and run
#      drv_basic against it with LD_LIBRARY_PATH on the installed lib dir and no
#      VGPU_SERVER or token variable: the address and token-file come from a
#      client.conf named by VGPU_CLIENT_CONF; then check that a conf naming a wrong
#      token file is refused, and that VGPU_TOKEN_FILE in the environment wins over it;
#   3. uninstall and check nothing is left (an edited config stays, said so).
#
#   install_test.sh SRC_DIR BUILD_DIR DRV_BASIC   (env: VGPU_E2E_PROBE, VGPU_E2E_PLUGINS)
set -u
src=$1 build=$2 drv_basic=$3
probe=${VGPU_E2E_PROBE:?}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-install.XXXXXX") || exit 1
root=$tmp/root
daemon_pid=
cleanup() {
    local rc=$?
    if [ -n "$daemon_pid" ]; then
        kill -TERM "$daemon_pid" 2>/dev/null
        wait "$daemon_pid" 2>/dev/null
    fi
    [ "$rc" = 0 ] || { [ -s "$tmp/vgpud.log" ] && sed 's/^/vgpud: /' "$tmp/vgpud.log"; }
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
fail() {
    echo "install_test: FAIL: $*" >&2
    exit 1
}
check_file() { if [ ! -f "$root/$1" ] || [ -L "$root/$1" ]; then fail "$1 missing (or not a plain file)"; fi; }
check_link() { [ "$(readlink "$root/$1")" = "$2" ] || fail "$1 is not a link to $2"; }

# 1. install and layout
make -s -C "$src" install BUILD="$build" JOBS=1 DESTDIR="$root" PREFIX=/usr >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "make install"; }
for f in usr/bin/vgpud usr/bin/vgpu usr/bin/vgpu-bench-worker; do
    check_file "$f"
    [ -x "$root/$f" ] || fail "$f is not executable"
done
check_file usr/lib/vgpu/libcuda.so.1
check_file usr/lib/vgpu/libnvidia-ml.so.1
check_link usr/lib/vgpu/libcuda.so libcuda.so.1
check_link usr/lib/vgpu/libnvidia-ml.so libnvidia-ml.so.1
[ "$(find "$root/usr/lib/vgpu" -mindepth 1 | wc -l)" = 4 ] || fail "usr/lib/vgpu holds more than the guest libraries"
[ "$(grep -v '^#' "$root/etc/ld.so.conf.d/vgpu.conf")" = /usr/lib/vgpu ] ||
    fail "etc/ld.so.conf.d/vgpu.conf does not name /usr/lib/vgpu"
unit=$root/usr/lib/systemd/system/vgpud.service
[ -f "$unit" ] || fail "vgpud.service missing"
for want in 'ExecStart=/usr/bin/vgpud --config /etc/vgpu/vgpud.conf' 'Restart=on-failure' \
    'RuntimeDirectory=vgpud' 'NoNewPrivileges=yes' 'WantedBy=multi-user.target'; do
    grep -qxF "$want" "$unit" || fail "vgpud.service lacks '$want'"
done
grep -q '{{' "$unit" && fail "vgpud.service has an unreplaced placeholder"
grep -qE '^(PrivateDevices=yes|DevicePolicy=closed|MemoryDenyWriteExecute=yes)' "$unit" &&
    fail "vgpud.service hides the GPU from the driver"
cmp -s "$root/etc/vgpu/vgpud.conf" "$src/dist/vgpud.conf" || fail "etc/vgpu/vgpud.conf is not the shipped one"
cmp -s "$root/etc/vgpu/client.conf" "$src/dist/client.conf" || fail "etc/vgpu/client.conf is not the shipped one"
grep -qx 'listen = unix:/run/vgpud/vgpud.sock' "$root/etc/vgpu/vgpud.conf" ||
    fail "vgpud.conf does not listen at the guests' default address"
grep -q '"unix:/run/vgpud/vgpud.sock"' "$src/src/common/proto.h" || fail "VGPU_DEFAULT_SERVER changed: update dist/"
# the shipped daemon config is valid (its listen replaced: /run/vgpud is not ours)
"$root/usr/bin/vgpud" --config "$root/etc/vgpu/vgpud.conf" --listen "unix:$tmp/check.sock" --backend emu \
    >"$tmp/check.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$tmp/check.sock" ] && break; sleep 0.05; done
[ -S "$tmp/check.sock" ] || { cat "$tmp/check.log"; fail "vgpud does not start with the shipped vgpud.conf"; }
kill -TERM "$pid"
wait "$pid"
# configurations are installed only when absent
echo "server = tcp:edited:1" >>"$root/etc/vgpu/client.conf"
make -s -C "$src" install BUILD="$build" JOBS=1 DESTDIR="$root" PREFIX=/usr >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "second make install"; }
grep -q 'tcp:edited:1' "$root/etc/vgpu/client.conf" || fail "a reinstall replaced an edited client.conf"
cp "$src/dist/client.conf" "$root/etc/vgpu/client.conf"
echo "install_test: layout ok"

# 2. the installed daemon and libraries, configured by client.conf alone
unset VGPU_SERVER VGPU_TOKEN VGPU_TOKEN_FILE VGPU_TLS_CA VGPU_TLS_CERT VGPU_TLS_KEY VGPU_TIMEOUT
(umask 077 && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/token") || fail "token"
started=
for _ in 1 2 3; do
    port=$("$probe" freeport) || fail "no free port"
    printf '[server]\nlisten = tcp:127.0.0.1:%s\nbackend = emu\ntoken-file = %s\n' "$port" "$tmp/token" \
        >"$tmp/vgpud.conf"
    VGPU_LOG=info VGPU_EMU_KERNELS="${VGPU_E2E_PLUGINS:-}" "$root/usr/bin/vgpud" --config "$tmp/vgpud.conf" \
        </dev/null >"$tmp/vgpud.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 200); do
        "$probe" connect "tcp:127.0.0.1:$port" 2>/dev/null && { started=1; break; }
        kill -0 "$daemon_pid" 2>/dev/null || break
        sleep 0.05
    done
    [ -n "$started" ] && break
    kill "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
    daemon_pid=
done
[ -n "$started" ] || fail "the installed vgpud did not start"
mkdir "$tmp/guest"
cp "$tmp/token" "$tmp/guest/vgpud.token" # relative token-file: next to client.conf
printf '# test\n[client]\nserver = tcp:127.0.0.1:%s\ntoken-file = vgpud.token\ntimeout = 30\n' "$port" \
    >"$tmp/guest/client.conf"
LD_LIBRARY_PATH="$root/usr/lib/vgpu" VGPU_CLIENT_CONF="$tmp/guest/client.conf" timeout 120 "$drv_basic" \
    >"$tmp/run.log" 2>&1 || { cat "$tmp/run.log"; fail "drv_basic through the installed libraries"; }
grep -q "connected via tcp.*tenant default" "$tmp/vgpud.log" || fail "the daemon did not see the token's tenant"
# the library was the installed one
LD_LIBRARY_PATH="$root/usr/lib/vgpu" LD_DEBUG=libs VGPU_CLIENT_CONF="$tmp/guest/client.conf" timeout 120 \
    "$drv_basic" 2>&1 | grep -q "calling init: $root/usr/lib/vgpu/libcuda.so.1" ||
    fail "drv_basic did not load the installed libcuda.so.1"
# the token came from the conf: a conf naming another token file is refused
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/guest/wrong.token"
chmod 600 "$tmp/guest/wrong.token"
sed 's/vgpud.token/wrong.token/' "$tmp/guest/client.conf" >"$tmp/guest/wrong.conf"
if LD_LIBRARY_PATH="$root/usr/lib/vgpu" VGPU_CLIENT_CONF="$tmp/guest/wrong.conf" timeout 60 "$drv_basic" \
    >"$tmp/wrong.log" 2>&1; then
    fail "a wrong token file in client.conf was accepted"
fi
grep -q "authentication failed" "$tmp/wrong.log" || { cat "$tmp/wrong.log"; fail "no authentication failure logged"; }
# ...unless VGPU_TOKEN_FILE in the environment names the right one (the environment wins)
LD_LIBRARY_PATH="$root/usr/lib/vgpu" VGPU_CLIENT_CONF="$tmp/guest/wrong.conf" VGPU_TOKEN_FILE="$tmp/token" \
    timeout 120 "$drv_basic" >"$tmp/run.log" 2>&1 || { cat "$tmp/run.log"; fail "VGPU_TOKEN_FILE did not win"; }
kill -TERM "$daemon_pid"
wait "$daemon_pid"
daemon_pid=
echo "install_test: drv_basic through the installed vgpud and libraries, configured by client.conf: ok"

# 3. uninstall: an edited configuration stays, everything else goes
echo "backend = emu" >>"$root/etc/vgpu/vgpud.conf"
make -s -C "$src" uninstall BUILD="$build" DESTDIR="$root" PREFIX=/usr >"$tmp/uninstall.log" 2>&1 ||
    { cat "$tmp/uninstall.log"; fail "make uninstall"; }
grep -q "Keeping: .*vgpud.conf" "$tmp/uninstall.log" || fail "uninstall did not say it kept the edited vgpud.conf"
rm "$root/etc/vgpu/vgpud.conf"
rmdir "$root/etc/vgpu" 2>/dev/null
left=$(find "$root" ! -type d)
[ -z "$left" ] || fail "left after uninstall: $left"
[ ! -e "$root/usr/lib/vgpu" ] || fail "usr/lib/vgpu left after uninstall"
echo "install_test: uninstall ok"

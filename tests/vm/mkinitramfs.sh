#!/usr/bin/env bash
# Build the QEMU guest test's initramfs (tests/vm/README.md): a whole small Linux guest
# in one cpio archive, in which vgpu is installed as on a real guest.
#
#   mkinitramfs.sh BUILD_DIR OUT.cpio[.gz] [TOKEN_FILE]
#
# It holds
#   - a busybox (static, else with its libraries) and a link per applet;
#   - vgpu installed by `cmake --install BUILD_DIR --prefix /usr` (DESTDIR): the guest
#     libraries in /usr/lib/vgpu with /etc/ld.so.conf.d/vgpu.conf, `vgpu` and
#     `vgpu-bench-worker` in /usr/bin (vgpud and its configuration are removed: the guest
#     does not serve); the host's static /sbin/ldconfig, which /init runs as an installer
#     would, so programs find libcuda.so.1 through /etc/ld.so.cache with no LD_LIBRARY_PATH;
#   - the end-to-end programs that exist in BUILD_DIR/tests/e2e, in /opt/vgpu-tests, and
#     the list of tests /init runs (/etc/vgpu-vm/tests: "NAME COMMAND [ARGS...]");
#   - every shared library these need (ldd), libgcc_s (glibc dlopens it for
#     pthread_cancel) and the files programs open by absolute path (nvml_basic's export
#     list at its source-tree path);
#   - the network modules prepared by setup.sh (in the kernel cache directory named by
#     ${VGPU_VM_CACHE:-$HOME/.cache/vgpu-vm}/current) with their load order;
#   - TOKEN_FILE, if given, as /etc/vgpu/token (the daemon's tenant token);
#   - /init, from guest-init.sh next to this script.
# BUILD_DIR must be writable: cmake --install writes its install_manifest.txt there.
# OUT ending in .gz is gzip-compressed, else a plain newc cpio (which the kernel unpacks
# faster under TCG). The names of the tests go to OUT.tests as well, for the host side.
set -u

die() {
    echo "mkinitramfs: $*" >&2
    exit 1
}

{ [ $# -ge 2 ] && [ $# -le 3 ]; } || die "usage: mkinitramfs.sh BUILD_DIR OUT.cpio[.gz] [TOKEN_FILE]"
build=$(cd "$1" 2>/dev/null && pwd) || die "no build directory $1"
out=$2
token=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
cache=${VGPU_VM_CACHE:-$HOME/.cache/vgpu-vm}

kdir=$(cat "$cache/current" 2>/dev/null) || die "no kernel prepared in $cache: run tests/vm/setup.sh"
[ -f "$kdir/modules.load" ] || die "$kdir is incomplete: run tests/vm/setup.sh"
for cmd in busybox cpio gzip ldd; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found (tests/vm/setup.sh installs what is missing)"
done
[ -f "$build/CMakeCache.txt" ] || die "$build is not a CMake build directory"
[ -e "$build/lib/libcuda.so.1" ] || die "$build/lib/libcuda.so.1 missing: build first (make)"
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-initramfs.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib/modules,etc/vgpu,etc/vgpu-vm,opt/vgpu-tests,proc,sys,dev,tmp,run,root}

# ---- busybox and its applets ----
bb=$(command -v busybox)
cp -L "$bb" "$root/bin/busybox" || die "cannot copy $bb"
busybox --list-full | while read -r applet; do
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done

# ---- vgpu, installed as on a real guest ----
DESTDIR=$root cmake --install "$build" --prefix /usr >"$tmp/install.log" 2>&1 ||
    {
        cat "$tmp/install.log" >&2
        die "cmake --install $build failed"
    }
[ -e "$root/usr/lib/vgpu/libcuda.so.1" ] || die "the install put no usr/lib/vgpu/libcuda.so.1"
[ -e "$root/etc/ld.so.conf.d/vgpu.conf" ] || die "the install put no etc/ld.so.conf.d/vgpu.conf"
# the guest runs no daemon
rm -f "$root/usr/bin/vgpud" "$root/etc/vgpu/vgpud.conf"
rm -rf "$root/usr/lib/systemd"
# the system's own library directories, as Debian lists them, and ldconfig to cache them
cat >"$root/etc/ld.so.conf" <<'EOF'
include /etc/ld.so.conf.d/*.conf
EOF
printf '%s\n' /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu >"$root/etc/ld.so.conf.d/x86_64-linux-gnu.conf"
ldconfig_bin=$(command -v ldconfig 2>/dev/null || echo /sbin/ldconfig)
[ -x "$ldconfig_bin" ] || die "no ldconfig on this machine"
rm -f "$root/sbin/ldconfig"
cp -L "$ldconfig_bin" "$root/sbin/ldconfig"

# ---- the test programs ----
# NAME PROGRAM [ARGS]: what /init runs on each transport, when PROGRAM was built
e2e=$build/tests/e2e
: >"$root/etc/vgpu-vm/tests"
add_test() { # NAME FILE [ARGS...]: FILE (in $e2e) copied to /opt/vgpu-tests
    local name=$1 file=$2
    shift 2
    if [ ! -x "$e2e/$file" ]; then
        echo "mkinitramfs: $file not built: test $name left out" >&2
        return 0
    fi
    cp "$e2e/$file" "$root/opt/vgpu-tests/$file"
    echo "$name /opt/vgpu-tests/$file${*:+ $*}" >>"$root/etc/vgpu-vm/tests"
}
add_test drv_basic drv_basic
add_test drv_threads drv_threads
add_test drv_vmm drv_vmm
add_test drv_mapped drv_mapped
add_test drv_pipeline drv_pipeline
add_test drv_link drv_link
add_test rt_basic_static rt_basic_static
add_test rt_work rt_work
# nvml_basic checks the export list it is given (the guest's /tmp hides source trees there)
[ -f "$src/spec/nvml_exports.txt" ] && cp "$src/spec/nvml_exports.txt" "$root/opt/vgpu-tests/nvml_exports.txt"
add_test nvml_basic nvml_basic /opt/vgpu-tests/nvml_exports.txt
add_test probe_ollama probe_ollama
# `vgpu smi` (its own NVML session): /init checks it shows the emulated device
echo "smi smi" >>"$root/etc/vgpu-vm/tests"
grep -q '^drv_basic ' "$root/etc/vgpu-vm/tests" || die "drv_basic not built ($e2e): is nvcc missing?"
cut -d' ' -f1 "$root/etc/vgpu-vm/tests" >"$out.tests"

# ---- shared libraries ----
# ldd of every ELF file we ship; vgpu's own libraries are found in the image, not on
# the host (LD_LIBRARY_PATH), and then skipped as already there.
: >"$tmp/libs"
for f in "$root"/bin/busybox "$root"/usr/bin/* "$root"/usr/lib/vgpu/*.so.1 "$root"/opt/vgpu-tests/*; do
    [ -L "$f" ] && continue
    LD_LIBRARY_PATH=$root/usr/lib/vgpu ldd "$f" 2>/dev/null >>"$tmp/libs"
done
# lines: "name => /path (addr)", "/path (addr)", "name => not found", "linux-vdso.so.1 (addr)"
{
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' "$tmp/libs"
    [ -e /lib/x86_64-linux-gnu/libgcc_s.so.1 ] && echo /lib/x86_64-linux-gnu/libgcc_s.so.1
} | sort -u | while read -r lib; do
    case "$lib" in "$root"/*) continue ;; esac
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib" || exit 1
done || die "copying the shared libraries failed"
if grep -q "not found" "$tmp/libs"; then
    grep "not found" "$tmp/libs" | sort -u >&2
    die "some libraries were not found"
fi
[ -e "$root/lib64/ld-linux-x86-64.so.2" ] || die "no dynamic loader collected (ldd failed?)"

# ---- kernel modules, token, /init ----
while read -r m; do
    [ -n "$m" ] && cp "$kdir/modules/$m.ko" "$root/lib/modules/"
done <"$kdir/modules.load"
cp "$kdir/modules.load" "$root/lib/modules/modules.load"
if [ -n "$token" ]; then
    { cp "$token" "$root/etc/vgpu/token" && chmod 600 "$root/etc/vgpu/token"; } || die "cannot copy $token"
fi
{ cp "$here/guest-init.sh" "$root/init" && chmod 755 "$root/init"; } || die "cannot copy guest-init.sh"

# ---- the archive ----
# owned by root in the guest whoever builds it; sorted for reproducibility
case "$out" in
*.gz) compress=(gzip -6) ;;
*) compress=(cat) ;;
esac
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | "${compress[@]}" >"$out.tmp" ||
    die "cpio failed"
mv "$out.tmp" "$out"
echo "mkinitramfs: $out ($(du -k "$out" | cut -f1) KiB; tests: $(tr '\n' ' ' <"$out.tests"))"

#!/usr/bin/env bash
# Prepare the QEMU guest test (tests/vm/README.md): idempotent, cheap once done.
#   1. the host tools: qemu-system-x86_64, a busybox (busybox-static), cpio, xz, gzip;
#      installed with apt-get when missing and we are root, else it says what to install
#      and exits 77 (a skip);
#   2. the Debian kernel, WITHOUT installing it: `apt-get download` of the package that
#      linux-image-amd64 currently depends on, unpacked into the cache directory
#      ${VGPU_VM_CACHE:-$HOME/.cache/vgpu-vm}/<package>/ with
#        vmlinuz          the kernel
#        config           its configuration (which drivers are built in)
#        modules/*.ko     the modules the guest needs for its network card (virtio_net and
#                         what it depends on, read from each module's .modinfo: the package
#                         has no modules.dep), decompressed (busybox insmod may not read .ko.xz)
#        modules.load     their names in load order (dependencies first); empty when the
#                         drivers are built in
#      and ${VGPU_VM_CACHE}/current naming that directory.
# With no network but a kernel already in the cache, the newest cached one is used; a new
# kernel replaces the cached ones.
#
#   setup.sh            exit 0 ready, 77 cannot run here (says why), 1 failed
set -u

cache=${VGPU_VM_CACHE:-$HOME/.cache/vgpu-vm}
# The guest's network card and the modules behind it; virtio-pci is how QEMU attaches it.
wanted_modules=(virtio_pci virtio_net)

say() { echo "vm-setup: $*"; }
die() {
    echo "vm-setup: $*" >&2
    exit 1
}
skip() {
    echo "vm-setup: SKIP: $*"
    exit 77
}

# ---- 1. host tools ----
# command -> Debian package
declare -A package_of=(
    [qemu-system-x86_64]=qemu-system-x86
    [busybox]=busybox-static
    [cpio]=cpio
    [xz]=xz-utils
    [gzip]=gzip
    [dpkg-deb]=dpkg
    [apt-get]=apt
)
missing=()
for cmd in "${!package_of[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${package_of[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        skip "missing ${missing[*]} and no apt-get to install them (a Debian-like host is needed)"
    fi
    if [ "$(id -u)" != 0 ]; then
        skip "missing packages; as root run: apt-get install -y ${missing[*]}"
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >"/tmp/vgpu-vm-apt.$$.log" 2>&1; then
        # stale package lists: refresh once and retry
        apt-get update >>"/tmp/vgpu-vm-apt.$$.log" 2>&1
        apt-get install -y --no-install-recommends "${missing[@]}" >>"/tmp/vgpu-vm-apt.$$.log" 2>&1 || {
            cat "/tmp/vgpu-vm-apt.$$.log" >&2
            rm -f "/tmp/vgpu-vm-apt.$$.log"
            die "apt-get install ${missing[*]} failed"
        }
    fi
    rm -f "/tmp/vgpu-vm-apt.$$.log"
fi

# ---- 2. the kernel ----
mkdir -p "$cache" || die "cannot create the cache directory $cache"
# what an interrupted earlier run left
find "$cache" -mindepth 1 -maxdepth 1 -name '.fetch.*' -mmin +60 -exec rm -rf {} + 2>/dev/null

# The package linux-image-amd64 depends on now, e.g. linux-image-6.1.0-56-amd64.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
if [ -z "$kpkg" ]; then
    # no package lists (or no network when they were made): fall back to the cache
    latest=$(find "$cache" -mindepth 2 -maxdepth 2 -name .ready -printf '%h\n' 2>/dev/null | sort -V | tail -n1)
    [ -n "$latest" ] || skip "apt-cache knows no linux-image-amd64 and the cache $cache holds no kernel"
    kpkg=$(basename "$latest")
    say "apt-cache knows no linux-image-amd64; using the cached $kpkg"
fi
kdir=$cache/$kpkg

if [ ! -e "$kdir/.ready" ]; then
    say "fetching $kpkg (not installed: only unpacked into $kdir)"
    work=$(mktemp -d "$cache/.fetch.XXXXXX") || die "mktemp in $cache failed"
    trap 'rm -rf "$work"' EXIT
    # apt-get download writes into the current directory; as root apt warns that it
    # cannot drop to the _apt user there, which is harmless
    if ! (cd "$work" && apt-get download "$kpkg" >download.log 2>&1); then
        if [ "$(id -u)" = 0 ]; then
            say "download failed; refreshing the package lists once"
            apt-get update >"$work/update.log" 2>&1
        fi
        (cd "$work" && apt-get download "$kpkg" >download.log 2>&1) || {
            cat "$work/download.log" >&2
            die "apt-get download $kpkg failed"
        }
    fi
    deb=$(find "$work" -maxdepth 1 -name "${kpkg}_*.deb" | head -n1)
    [ -n "$deb" ] || die "apt-get download left no ${kpkg}_*.deb"

    # Unpack the package's file system tree (dpkg-deb -x), then keep only what the guest
    # needs: the whole tree is several hundred MB of modules.
    { mkdir -p "$work/root" && dpkg-deb -x "$deb" "$work/root"; } || die "dpkg-deb -x $deb failed"
    vmlinuz=$(find "$work/root/boot" -name 'vmlinuz-*' | head -n1)
    config=$(find "$work/root/boot" -name 'config-*' | head -n1)
    { [ -n "$vmlinuz" ] && [ -n "$config" ]; } || die "$deb holds no boot/vmlinuz-* and boot/config-*"
    kver=${vmlinuz##*/vmlinuz-}
    moddir=$(find "$work/root" -maxdepth 3 -type d -path "*/modules/$kver" | head -n1)
    { [ -n "$moddir" ] && [ -d "$moddir/kernel" ]; } || die "$deb holds no modules/$kver/kernel"

    stage=$work/out
    mkdir -p "$stage/modules"
    { cp "$vmlinuz" "$stage/vmlinuz" && cp "$config" "$stage/config"; } || die "copying the kernel failed"
    echo "$kver" >"$stage/kernel-version"

    # The package ships no modules.dep (depmod makes it at install time), so each
    # module's dependencies come from its own .modinfo section ("depends=a,b").
    # Module names use '_' where file names may use '-'.
    find "$moddir/kernel" -name '*.ko*' >"$work/modules.list"
    module_file() { # $1 = module name -> its file, or nothing
        awk -v m="$1" '{ n = $0; sub(/.*\//, "", n); sub(/\.ko.*/, "", n); gsub(/-/, "_", n)
                         if (n == m) { print; exit } }' "$work/modules.list"
    }
    decompress() { # $1 = module file -> the plain .ko on stdout
        case "$1" in
        *.ko) cat "$1" ;;
        *.ko.xz) xz -dc "$1" ;;
        *.ko.zst) zstd -dcq "$1" ;;
        *.ko.gz) gzip -dc "$1" ;;
        *) return 1 ;;
        esac
    }
    order=()
    add_module() { # $1 = module name; its dependencies first, each module once
        local name=$1 file dep have
        for have in "${order[@]}"; do [ "$have" = "$name" ] && return 0; done
        file=$(module_file "$name")
        [ -n "$file" ] || {
            echo "vm-setup: no module $name in the package" >&2
            return 1
        }
        decompress "$file" >"$stage/modules/$name.ko" || {
            echo "vm-setup: cannot decompress $file" >&2
            return 1
        }
        for dep in $(tr '\0' '\n' <"$stage/modules/$name.ko" | sed -n 's/^depends=//p' | head -n1 | tr ',' ' '); do
            add_module "${dep//-/_}" || return 1
        done
        order+=("$name")
    }
    for m in "${wanted_modules[@]}"; do
        if [ -n "$(module_file "$m")" ]; then
            add_module "$m" || die "cannot take module $m"
        elif grep -q "/$m.ko" "$moddir/modules.builtin" 2>/dev/null; then
            say "$m is built into the kernel"
        else
            die "$kpkg has neither a module $m nor $m built in"
        fi
    done
    printf '%s\n' "${order[@]}" | sed '/^$/d' >"$stage/modules.load"
    # what the configuration says about the drivers involved (for the record)
    grep -E '^CONFIG_(VIRTIO|VIRTIO_PCI|VIRTIO_NET|NET_FAILOVER|E1000|PCI|DEVTMPFS|BLK_DEV_INITRD|RD_GZIP)=' \
        "$stage/config" >"$stage/config.summary"

    rm -rf "$kdir"
    mv "$stage" "$kdir" || die "cannot move the kernel into $kdir"
    touch "$kdir/.ready"
    rm -rf "$work"
    trap - EXIT
    # the kernels linux-image-amd64 depended on before are of no more use
    find "$cache" -mindepth 1 -maxdepth 1 -type d -name 'linux-image-*' ! -name "$kpkg" -exec rm -rf {} +
fi
echo "$kdir" >"$cache/current.tmp" && mv "$cache/current.tmp" "$cache/current"

say "kernel $(cat "$kdir/kernel-version") from $kpkg in $kdir"
say "modules to load: $(tr '\n' ' ' <"$kdir/modules.load")"
say "qemu: $(qemu-system-x86_64 --version | head -n1)"
exit 0

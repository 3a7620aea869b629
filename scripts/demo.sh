#!/usr/bin/env bash
# The main job: build vgpu, start vgpud on the best backend available (the GPU when
# there is one, else the emulated device), run a CUDA program through `vgpu run`,
# and show what it saw. Usage: scripts/demo.sh [build-dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
cmake -S "$root" -B "$build" >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
prog=$build/bin/hello_vgpu
plugins=$build/tests/e2e/plugins/libvgpu_e2e_rt_kernels.so
if [ ! -x "$prog" ]; then
  echo "demo: $prog was not built (is nvcc installed at /usr/local/cuda/bin?)" >&2
  exit 1
fi
tmp=$(mktemp -d)
sock=$tmp/vgpud.sock
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
VGPU_EMU_KERNELS=$plugins "$build/bin/vgpud" --listen "unix:$sock" --backend auto 2>"$tmp/vgpud.log" &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
echo "== vgpud: $(grep -o 'backend auto: using.*' "$tmp/vgpud.log" || echo started)"
echo "== running $prog through vgpu run --server unix:$sock"
status=0
"$build/bin/vgpu" run --server "unix:$sock" -- "$prog" || status=$?
echo "== program exit status: $status"
echo "== vgpud log:"
sed 's/^/   /' "$tmp/vgpud.log"
exit $status

#!/usr/bin/env bash
# Run by run_e2e.sh through `vgpu run` (so VGPU_SERVER names the test daemon): holds
# device memory in a client, then checks `vgpu smi` and `vgpu smi --json` show the
# emulated device and that client with its memory and tenant ("default" over TCP, where
# run_e2e.sh's programs prove the daemon's --token-file token; none over unix sockets).
set -euo pipefail
# Sanitizer builds preload libasan for uninstrumented programs; bash is not one of ours,
# and LeakSanitizer in its forked subshells would fail them. What it runs is instrumented.
unset LD_PRELOAD
vgpu=${VGPU_E2E_VGPU:?}
hold=${VGPU_E2E_HOLD:?}
ready=$(mktemp -u)
"$hold" 64 30 "$ready" &
holder=$!
for _ in $(seq 400); do [ -e "$ready" ] && break; sleep 0.05; done
rm -f "$ready"
"$vgpu" smi
json=$("$vgpu" smi --json)
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
tenant=
[ -n "${VGPU_TOKEN_FILE:-}${VGPU_TOKEN:-}" ] && tenant=default
python3 - "$json" "$holder" "${VGPU_E2E_BACKEND:-emu}" "${VGPU_E2E_EMU_MEMORY:-}" "$tenant" <<'PY'
import json, sys
doc = json.loads(sys.argv[1]); holder = int(sys.argv[2]); backend = sys.argv[3]; tenant = sys.argv[5]
dev = doc["devices"][0]
ok = dev["uuid"].startswith("GPU-") and dev["memory_total"] > 0 and dev["name"] != ""
if backend == "emu" and not sys.argv[4]:  # the emulated device with its default memory
    ok = ok and dev["name"] == "vgpu emulated GPU" and dev["memory_total"] == 16 << 30
mine = [c for c in doc["clients"] if c["pid"] == holder]
ok = ok and len(mine) == 1 and mine[0]["memory_used"] >= 64 << 20 and dev["memory_used"] >= 64 << 20
ok = ok and mine[0]["tenant"] == tenant
print("PASS smi_json" if ok else "FAIL smi_json: %r" % doc)
sys.exit(0 if ok else 1)
PY

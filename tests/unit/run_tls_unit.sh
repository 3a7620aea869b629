#!/usr/bin/env bash
# Run test_tls with a fresh test CA and certificates (tests/e2e/tls_certs.sh; exit 77, a
# skip, without the openssl command).
#
#   run_tls_unit.sh TEST_TLS
set -u
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-tls-unit.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
bash "$(dirname "$0")/../e2e/tls_certs.sh" "$tmp" >/dev/null || exit $?
"$1" "$tmp"

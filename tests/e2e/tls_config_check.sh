#!/usr/bin/env bash
# vgpud refuses to start, with a clear error, when its TLS files are unusable.
#
#   tls_config_check.sh VGPUD
#
# Each case runs `vgpud --listen tcp:127.0.0.1:0 --backend emu <TLS options>` and expects a
# quick non-zero exit with the given words on stderr. Certificates come from tls_certs.sh
# (exit 77, a skip, without the openssl command).
set -u
[ $# = 1 ] && [ -x "$1" ] || { echo "usage: tls_config_check.sh VGPUD" >&2; exit 2; }
vgpud=$1
if "$vgpud" --listen unix:/nonexistent/vgpud.sock --tls-cert /dev/null --tls-key /dev/null 2>&1 |
    grep -q "built without TLS"; then
    echo "tls_config_check: SKIP: vgpud was built without TLS"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-tlscfg.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
bash "$(dirname "$0")/tls_certs.sh" "$tmp" >/dev/null || exit $?
echo "not a certificate" >"$tmp/garbage.pem"

# a daemon that requires a token for tcp would refuse for that reason first
no_auth=()
if "$vgpud" --help 2>&1 | grep -q -- --tcp-no-auth; then no_auth=(--tcp-no-auth); fi

checks=0
failed=0
# expect_refusal NAME WORDS OPTIONS...
expect_refusal() {
    local name=$1 words=$2 rc
    shift 2
    checks=$((checks + 1))
    timeout 20 "$vgpud" --listen tcp:127.0.0.1:0 --backend emu "${no_auth[@]}" "$@" >"$tmp/out" 2>&1
    rc=$?
    if [ $rc != 0 ] && [ $rc != 124 ] && grep -q -- "$words" "$tmp/out"; then
        echo "PASS $name: $(head -1 "$tmp/out")"
    else
        echo "FAIL $name: exit status $rc, expected a refusal saying '$words'; output:"
        cat "$tmp/out"
        failed=$((failed + 1))
    fi
}

c=$tmp
expect_refusal missing_cert "certificate $c/nope.pem: No such file" --tls-cert "$c/nope.pem" --tls-key "$c/server.key"
expect_refusal missing_key "key $c/nope.key: No such file" --tls-cert "$c/server.pem" --tls-key "$c/nope.key"
expect_refusal cert_without_key "go together" --tls-cert "$c/server.pem"
expect_refusal client_ca_alone "go together" --tls-client-ca "$c/ca.pem"
expect_refusal garbage_cert "not a usable PEM certificate" --tls-cert "$c/garbage.pem" --tls-key "$c/server.key"
expect_refusal garbage_key "not a usable PEM private key" --tls-cert "$c/server.pem" --tls-key "$c/garbage.pem"
expect_refusal key_of_another_cert "does not belong" --tls-cert "$c/server.pem" --tls-key "$c/client.key"
expect_refusal garbage_client_ca "tls-client-ca" --tls-cert "$c/server.pem" --tls-key "$c/server.key" \
    --tls-client-ca "$c/garbage.pem"
expect_refusal missing_client_ca "No such file" --tls-cert "$c/server.pem" --tls-key "$c/server.key" \
    --tls-client-ca "$c/nope.pem"

echo "tls_config_check: $checks checks, $failed failed: $([ $failed = 0 ] && echo PASS || echo FAIL)"
[ $failed = 0 ]

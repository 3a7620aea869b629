#!/usr/bin/env bash
# Make the certificates the TLS tests use, with the openssl command, in DIR:
#   ca.pem/.key            the test CA
#   server.pem/.key        vgpud's certificate from it (DNS:localhost, IP:127.0.0.1)
#   wrongname.pem/.key     from the same CA, for DNS:wrong.example only
#   client.pem/.key        a client certificate from the CA
#   other-ca.pem/.key      an unrelated CA; other-client.pem/.key a client certificate from it
# Exit 77 (skip) when there is no openssl command.
#
#   tls_certs.sh DIR
set -eu
[ $# = 1 ] || { echo "usage: tls_certs.sh DIR" >&2; exit 2; }
command -v openssl >/dev/null 2>&1 || { echo "tls_certs: no openssl command: skipping" >&2; exit 77; }
mkdir -p "$1"
cd "$1"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

# ca NAME CN
ca() {
    key "$1"
    openssl req -x509 -new -key "$1.key" -sha256 -days 3 -subj "/CN=$2" -out "$1.pem" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}

# leaf NAME CN SUBJECT_ALT_NAMES EXTENDED_KEY_USAGE CA
leaf() {
    key "$1"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$3" "$4" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$5.pem" -CAkey "$5.key" -CAcreateserial -days 3 -sha256 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}

ca ca "vgpu test CA"
ca other-ca "vgpu unrelated CA"
leaf server vgpud "DNS:localhost,IP:127.0.0.1" serverAuth ca
leaf wrongname vgpud "DNS:wrong.example" serverAuth ca
leaf client guest "DNS:guest" clientAuth ca
leaf other-client guest "DNS:guest" clientAuth other-ca
chmod 600 ./*.key
echo "tls_certs: test CA and certificates in $PWD"

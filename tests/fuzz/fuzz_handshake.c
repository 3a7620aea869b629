/*
 * libFuzzer harness for the daemon's handshake (src/server/handshake.c): the HELLO and
 * AUTH decoders and the authentication checks, with a fixed table of test tenants.
 *
 * Input: the whole input is decoded as a HELLO body and as an AUTH body; then it is
 * read as one handshake, u16 hello_len (little-endian), hello_len bytes of HELLO body,
 * and the rest an AUTH body, which goes through what vgpud does with it: the
 * transcript over the HELLO and a fixed challenge, the key search over the tenants'
 * tokens, the daemon's proof and the derived session token, and the unix-peer tenant
 * and allow-list checks with ids taken from the HELLO. Seeds (real messages) are in
 * tests/fuzz/corpus/fuzz_handshake/ (written by gen_handshake_seeds.c).
 *
 *   clang -g -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Iinclude -Isrc -I. -I/usr/local/cuda/include \
 *       tests/fuzz/fuzz_handshake.c src/server/handshake.c src/common/auth.c src/common/sha256.c \
 *       src/common/wire.c src/common/util.c -o fuzz_handshake
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/auth.h"
#include "server/handshake.h"

/* The fixed test tenants: two with tokens (one also a unix user), one by group only. */
static const uint8_t token_a[] = "fuzz-tenant-a-token";
static const uint8_t token_b[] = "fuzz-tenant-b-token-longer-than-a-sha256-block-0123456789abcdefghijklmnop";
static uid_t users_a[] = {1000, 1001};
static gid_t groups_c[] = {44};

/* The challenge vgpud would send, with a fixed nonce so a seed's proof stays valid. */
static const uint8_t daemon_nonce[VGPU_AUTH_NONCE_BYTES] = {0xd0, 0xd1, 0xd2, 0xd3};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hs_hello hi;
    struct hs_auth auth;
    (void)hs_decode_hello(VGPU_OP_HELLO, data, size, &hi);
    (void)hs_decode_auth(VGPU_OP_AUTH, data, size, &auth);
    if (size < 2) return 0;
    size_t hello_len = (size_t)data[0] | (size_t)data[1] << 8;
    if (hello_len > size - 2) return 0;
    const uint8_t *hello = data + 2, *rest = hello + hello_len;
    size_t rest_len = size - 2 - hello_len;
    if (hs_decode_hello(VGPU_OP_HELLO, hello, hello_len, &hi) != HS_OK) return 0;
    if (hs_decode_auth(VGPU_OP_AUTH, rest, rest_len, &auth)) return 0;

    struct wire_buf chal;
    wire_buf_init(&chal);
    vgpu_challenge_put(&chal, daemon_nonce);
    uint8_t transcript[VGPU_SHA256_BYTES];
    if (!chal.oom) vgpu_auth_transcript(hello, hello_len, chal.data, chal.len, transcript);
    wire_buf_free(&chal);

    struct vgpu_tenant tenants[3];
    memset(tenants, 0, sizeof tenants);
    memcpy(tenants[0].name, "a", 2);
    memcpy(tenants[0].token, token_a, sizeof token_a - 1);
    tenants[0].token_len = sizeof token_a - 1;
    tenants[0].uids = users_a;
    tenants[0].nuids = 2;
    memcpy(tenants[1].name, "b", 2);
    memcpy(tenants[1].token, token_b, sizeof token_b - 1);
    tenants[1].token_len = sizeof token_b - 1;
    memcpy(tenants[2].name, "c", 2);
    tenants[2].gids = groups_c;
    tenants[2].ngids = 1;
    struct hs_key keys[3];
    for (int i = 0; i < 3; i++) keys[i] = (struct hs_key){tenants[i].token, tenants[i].token_len};

    if (auth.method == VGPU_AUTH_TOKEN) {
        int t = hs_find_key(keys, 3, transcript, auth.proof);
        if (t >= 0) {
            uint8_t proof[VGPU_AUTH_PROOF_BYTES], session_token[VGPU_TOKEN_BYTES];
            vgpu_auth_daemon_proof(keys[t].key, keys[t].len, transcript, auth.proof, proof);
            vgpu_auth_session_token(keys[t].key, keys[t].len, transcript, session_token);
        }
    } else {
        /* a unix peer without a token: its ids, here from the HELLO */
        gid_t gids[2] = {(gid_t)hi.pid, (gid_t)hi.features};
        (void)hs_unix_tenant(tenants, 3, (uid_t)hi.pid, gids, 2);
        (void)hs_allowed(users_a, 2, groups_c, 1, (uid_t)hi.pid, gids, 2);
    }
    return 0;
}

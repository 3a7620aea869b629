/*
 * Writes the seed inputs of fuzz_handshake.c (tests/fuzz/corpus/fuzz_handshake/): real HELLO
 * and AUTH bodies as the guest builds them (common/auth.c), in the harness's input
 * layout (u16 hello_len, HELLO body, AUTH body), with proofs made against the
 * harness's fixed challenge and test tokens. Run once by hand; the outputs are committed.
 *
 *   cc -Iinclude -Isrc -I. -I/usr/local/cuda/include tests/fuzz/gen_handshake_seeds.c \
 *      src/common/auth.c src/common/sha256.c src/common/wire.c -o /tmp/gen && /tmp/gen tests/fuzz/corpus/fuzz_handshake
 */
#include <stdio.h>
#include <string.h>

#include "common/auth.h"

static const uint8_t token_a[] = "fuzz-tenant-a-token";
static const uint8_t daemon_nonce[VGPU_AUTH_NONCE_BYTES] = {0xd0, 0xd1, 0xd2, 0xd3};

static void write_seed(const char *dir, const char *name, const struct wire_buf *hello, const struct wire_buf *auth)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return;
    }
    uint8_t len[2] = {(uint8_t)hello->len, (uint8_t)(hello->len >> 8)};
    fwrite(len, 1, 2, f);
    fwrite(hello->data, 1, hello->len, f);
    if (auth) fwrite(auth->data, 1, auth->len, f);
    fclose(f);
}

static void seed(const char *dir, const char *name, uint32_t version, uint32_t kind, uint32_t pid, uint64_t session,
                 uint32_t features, const uint8_t *key, size_t keylen)
{
    uint8_t nonce[VGPU_AUTH_NONCE_BYTES];
    for (size_t i = 0; i < sizeof nonce; i++) nonce[i] = (uint8_t)(i * 7 + pid);
    struct wire_buf hello, chal, auth;
    wire_buf_init(&hello);
    wire_buf_init(&chal);
    wire_buf_init(&auth);
    vgpu_hello_put(&hello, version, kind, pid, "seed_prog", "seed-host", session, nonce, features);
    vgpu_challenge_put(&chal, daemon_nonce);
    uint8_t t[VGPU_SHA256_BYTES], proof[VGPU_AUTH_PROOF_BYTES] = {0};
    vgpu_auth_transcript(hello.data, hello.len, chal.data, chal.len, t);
    if (key) vgpu_auth_guest_proof(key, keylen, t, proof);
    vgpu_auth_put(&auth, key ? VGPU_AUTH_TOKEN : VGPU_AUTH_NONE, proof);
    write_seed(dir, name, &hello, &auth);
    wire_buf_free(&hello);
    wire_buf_free(&chal);
    wire_buf_free(&auth);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_handshake_seeds DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    seed(dir, "new_session_token_a", VGPU_PROTOCOL_VERSION, VGPU_HELLO_NEW_SESSION, 1234, 0, VGPU_FEATURE_SHM,
         token_a, sizeof token_a - 1);
    seed(dir, "new_session_no_token", VGPU_PROTOCOL_VERSION, VGPU_HELLO_NEW_SESSION, 1000, 0, 0, NULL, 0);
    seed(dir, "new_session_wrong_token", VGPU_PROTOCOL_VERSION, VGPU_HELLO_NEW_SESSION, 77, 0, 0,
         (const uint8_t *)"wrong", 5);
    static const uint8_t session_token[VGPU_TOKEN_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    seed(dir, "join_session", VGPU_PROTOCOL_VERSION, VGPU_HELLO_JOIN_SESSION, 1234, 3, VGPU_FEATURE_SHM,
         session_token, sizeof session_token);
    seed(dir, "other_version", 1, VGPU_HELLO_NEW_SESSION, 5, 0, 0, NULL, 0);
    return 0;
}

/* The version 2 handshake's messages and proofs (see auth.h): pure functions over
 * buffers. The guest's side of the exchange is in hello_client.c. */
#include "common/auth.h"

#include <string.h>

/* Domain-separation labels (NUL included): a proof made for one purpose is useless for another. */
static const char LABEL_TRANSCRIPT[] = "vgpu-auth-v2 transcript";
static const char LABEL_GUEST[] = "vgpu-auth-v2 guest proof";
static const char LABEL_DAEMON[] = "vgpu-auth-v2 daemon proof";
static const char LABEL_SESSION[] = "vgpu-auth-v2 session token";

static void put_len(struct vgpu_sha256 *h, size_t n)
{
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)((uint64_t)n >> (8 * i));
    vgpu_sha256_update(h, le, sizeof le);
}

void vgpu_auth_transcript(const uint8_t *hello, size_t hello_len, const uint8_t *challenge, size_t challenge_len,
                          uint8_t out[VGPU_SHA256_BYTES])
{
    struct vgpu_sha256 h;
    vgpu_sha256_init(&h);
    vgpu_sha256_update(&h, LABEL_TRANSCRIPT, sizeof LABEL_TRANSCRIPT);
    put_len(&h, hello_len);
    vgpu_sha256_update(&h, hello, hello_len);
    put_len(&h, challenge_len);
    vgpu_sha256_update(&h, challenge, challenge_len);
    vgpu_sha256_final(&h, out);
}

void vgpu_auth_guest_proof(const uint8_t *key, size_t keylen, const uint8_t transcript[VGPU_SHA256_BYTES],
                           uint8_t out[VGPU_AUTH_PROOF_BYTES])
{
    struct vgpu_hmac_sha256 m;
    vgpu_hmac_sha256_init(&m, key, keylen);
    vgpu_hmac_sha256_update(&m, LABEL_GUEST, sizeof LABEL_GUEST);
    vgpu_hmac_sha256_update(&m, transcript, VGPU_SHA256_BYTES);
    vgpu_hmac_sha256_final(&m, out);
}

void vgpu_auth_daemon_proof(const uint8_t *key, size_t keylen, const uint8_t transcript[VGPU_SHA256_BYTES],
                            const uint8_t guest_proof[VGPU_AUTH_PROOF_BYTES], uint8_t out[VGPU_AUTH_PROOF_BYTES])
{
    struct vgpu_hmac_sha256 m;
    vgpu_hmac_sha256_init(&m, key, keylen);
    vgpu_hmac_sha256_update(&m, LABEL_DAEMON, sizeof LABEL_DAEMON);
    vgpu_hmac_sha256_update(&m, transcript, VGPU_SHA256_BYTES);
    vgpu_hmac_sha256_update(&m, guest_proof, VGPU_AUTH_PROOF_BYTES);
    vgpu_hmac_sha256_final(&m, out);
}

void vgpu_auth_session_token(const uint8_t *key, size_t keylen, const uint8_t transcript[VGPU_SHA256_BYTES],
                             uint8_t out[VGPU_TOKEN_BYTES])
{
    uint8_t full[VGPU_SHA256_BYTES];
    struct vgpu_hmac_sha256 m;
    vgpu_hmac_sha256_init(&m, key, keylen);
    vgpu_hmac_sha256_update(&m, LABEL_SESSION, sizeof LABEL_SESSION);
    vgpu_hmac_sha256_update(&m, transcript, VGPU_SHA256_BYTES);
    vgpu_hmac_sha256_final(&m, full);
    memcpy(out, full, VGPU_TOKEN_BYTES);
    memset(full, 0, sizeof full);
}

void vgpu_hello_put(struct wire_buf *b, uint32_t version, uint32_t kind, uint32_t pid, const char *name,
                    const char *host, uint64_t session, const uint8_t nonce[VGPU_AUTH_NONCE_BYTES],
                    uint32_t features)
{
    wire_put_u32(b, VGPU_PROTOCOL_MAGIC);
    wire_put_u32(b, version);
    wire_put_u32(b, kind);
    wire_put_u32(b, pid);
    wire_put_str(b, name);
    wire_put_str(b, host);
    wire_put_u64(b, session);
    wire_put_raw(b, nonce, VGPU_AUTH_NONCE_BYTES);
    wire_put_u32(b, features);
}

void vgpu_challenge_put(struct wire_buf *b, const uint8_t nonce[VGPU_AUTH_NONCE_BYTES])
{
    wire_put_i32(b, 0);
    wire_put_u32(b, VGPU_PROTOCOL_VERSION);
    wire_put_raw(b, nonce, VGPU_AUTH_NONCE_BYTES);
}

void vgpu_auth_put(struct wire_buf *b, uint32_t method, const uint8_t proof[VGPU_AUTH_PROOF_BYTES])
{
    wire_put_u32(b, method);
    wire_put_raw(b, proof, VGPU_AUTH_PROOF_BYTES);
}

void vgpu_auth_ok_put(struct wire_buf *b, const uint8_t proof[VGPU_AUTH_PROOF_BYTES])
{
    wire_put_i32(b, 0);
    wire_put_raw(b, proof, VGPU_AUTH_PROOF_BYTES);
}

void vgpu_hello_error_put(struct wire_buf *b, int32_t result, const char *msg)
{
    wire_put_i32(b, result);
    wire_put_u32(b, VGPU_PROTOCOL_VERSION);
    wire_put_u64(b, 0);
    wire_put_u32(b, 0);
    wire_put_raw(b, (uint8_t[VGPU_TOKEN_BYTES]){0}, VGPU_TOKEN_BYTES);
    wire_put_str(b, msg);
}

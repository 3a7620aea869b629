/*
 * The connection handshake of protocol version 2 (docs/protocol.md §5), shared by the
 * guest libraries, the daemon and the tests: message layouts, and the mutual
 * challenge-response that proves a secret (a tenant's token, or a session token for a
 * lane join) without sending it:
 *
 *   guest  -> HELLO      kind, pid, name, host, session, guest nonce, features
 *   daemon -> CHALLENGE  daemon nonce                       (or an error reply)
 *   guest  -> AUTH       method, proof = HMAC(key, "guest" label, transcript)
 *   daemon -> AUTH_OK    daemon proof = HMAC(key, "daemon" label, transcript, guest proof)
 *                                                            (or an error reply)
 *   then the worker's HELLO reply, as in version 1.
 *
 * The transcript is SHA-256 over both messages' bodies, so a proof is bound to both
 * nonces, the session kind and id, and everything else the HELLO said.
 */
#ifndef VGPU_AUTH_H
#define VGPU_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/proto.h"
#include "common/sha256.h"
#include "transport/transport.h"

#define VGPU_AUTH_NONCE_BYTES 32
#define VGPU_AUTH_PROOF_BYTES 32

/* AUTH methods */
enum { VGPU_AUTH_NONE = 0, VGPU_AUTH_TOKEN = 1 };

/* Transcript hash of a handshake: the HELLO body and the CHALLENGE body. */
void vgpu_auth_transcript(const uint8_t *hello, size_t hello_len, const uint8_t *challenge, size_t challenge_len,
                          uint8_t out[VGPU_SHA256_BYTES]);
/* The guest's proof of `key`, the daemon's answer (which also covers the guest proof),
 * and the session token both sides derive from a tenant token (never sent). */
void vgpu_auth_guest_proof(const uint8_t *key, size_t keylen, const uint8_t transcript[VGPU_SHA256_BYTES],
                           uint8_t out[VGPU_AUTH_PROOF_BYTES]);
void vgpu_auth_daemon_proof(const uint8_t *key, size_t keylen, const uint8_t transcript[VGPU_SHA256_BYTES],
                            const uint8_t guest_proof[VGPU_AUTH_PROOF_BYTES], uint8_t out[VGPU_AUTH_PROOF_BYTES]);
void vgpu_auth_session_token(const uint8_t *key, size_t keylen, const uint8_t transcript[VGPU_SHA256_BYTES],
                             uint8_t out[VGPU_TOKEN_BYTES]);

/* Message bodies. */
void vgpu_hello_put(struct wire_buf *b, uint32_t version, uint32_t kind, uint32_t pid, const char *name,
                    const char *host, uint64_t session, const uint8_t nonce[VGPU_AUTH_NONCE_BYTES],
                    uint32_t features);
void vgpu_challenge_put(struct wire_buf *b, const uint8_t nonce[VGPU_AUTH_NONCE_BYTES]);
void vgpu_auth_put(struct wire_buf *b, uint32_t method, const uint8_t proof[VGPU_AUTH_PROOF_BYTES]);
void vgpu_auth_ok_put(struct wire_buf *b, const uint8_t proof[VGPU_AUTH_PROOF_BYTES]);
/* The error reply of the daemon's parent (the HELLO reply layout of every version). */
void vgpu_hello_error_put(struct wire_buf *b, int32_t result, const char *msg);

/* What the guest side of a handshake says and learns. */
struct vgpu_hello_params {
    uint32_t version; /* VGPU_PROTOCOL_VERSION (tests send others) */
    uint32_t kind;    /* VGPU_HELLO_NEW_SESSION or VGPU_HELLO_JOIN_SESSION */
    uint32_t pid;
    const char *name, *host;
    uint64_t session;              /* JOIN: the session to join */
    uint32_t features;             /* VGPU_FEATURE_* the guest can use */
    const uint8_t *key;            /* NEW: the tenant token (NULL: none); JOIN: the session token */
    size_t keylen;
    int stall_ms; /* bound on an answer stalled midway (vgpu_frame_recv_ex); <= 0: none */
};

struct vgpu_hello_result {
    int32_t result;   /* the daemon's answer: CUDA_SUCCESS, or why it refused */
    bool auth_failed; /* refused at authentication (result CUDA_ERROR_NOT_PERMITTED) */
    uint32_t version; /* the daemon's protocol version */
    uint64_t session;
    uint32_t lane;
    uint8_t token[VGPU_TOKEN_BYTES]; /* NEW: the session token (derived when a key was used) */
    char msg[256];
    uint32_t features; /* granted; 0 when the reply had no feature word */
    bool answered;     /* the daemon answered the HELLO at all (a close before that is a refusal
                        * for the moment: too many handshakes pending) */
};

/* Run the guest side of the handshake on c (body: scratch buffer). 0 when the daemon
 * answered (res->result says how), -1 on a transport error or a malformed or
 * unauthenticated answer (err says why; res->auth_failed when the daemon could not
 * prove it knows the key). */
int vgpu_hello_exchange(struct vgpu_conn *c, const struct vgpu_hello_params *p, struct wire_buf *body,
                        struct vgpu_hello_result *res, char *err, size_t errlen);

#endif

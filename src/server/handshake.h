/*
 * The daemon's side of the connection handshake (docs/protocol.md §5) as pure functions
 * over byte buffers, with no sockets, so that they can be fuzzed
 * (tests/fuzz/fuzz_handshake.c): decoding HELLO and AUTH, finding which key made a
 * proof, and deciding which tenant a unix-socket peer belongs to.
 */
#ifndef VGPU_SERVER_HANDSHAKE_H
#define VGPU_SERVER_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/auth.h"
#include "server/config.h"

struct hs_hello {
    uint32_t version, kind, pid;
    char name[64], host[64];
    uint64_t session;
    uint8_t nonce[VGPU_AUTH_NONCE_BYTES];
    uint32_t features;
    bool ids_parsed; /* pid, name and host decoded (also with another version, for its log line) */
};

enum hs_status {
    HS_OK = 0,
    HS_NOT_HELLO, /* another op, wrong magic, or too short for magic and version: close, no reply */
    HS_VERSION,   /* another protocol version: answer with an error reply */
    HS_MALFORMED, /* this version, but it does not decode: close, no reply */
};

/* A HELLO frame (op and body). Anything after the feature word is ignored. */
enum hs_status hs_decode_hello(uint16_t op, const uint8_t *body, size_t len, struct hs_hello *out);

struct hs_auth {
    uint32_t method; /* VGPU_AUTH_NONE or VGPU_AUTH_TOKEN */
    uint8_t proof[VGPU_AUTH_PROOF_BYTES];
};

/* An AUTH frame: exactly u32 method (0 or 1), raw[32] proof. 0 when it decodes. */
int hs_decode_auth(uint16_t op, const uint8_t *body, size_t len, struct hs_auth *out);

struct hs_key {
    const uint8_t *key;
    size_t len;
};

/* Index of the key that made `proof` over `transcript`, or -1. Every key is tried and
 * each proof compared in constant time, so the time taken says nothing about which
 * key (if any) matched. */
int hs_find_key(const struct hs_key *keys, size_t n, const uint8_t transcript[VGPU_SHA256_BYTES],
                const uint8_t proof[VGPU_AUTH_PROOF_BYTES]);

/* The first tenant (index) whose users contain uid or whose groups contain one of
 * gids, or -1. */
int hs_unix_tenant(const struct vgpu_tenant *tenants, size_t n, uid_t uid, const gid_t *gids, size_t ngids);

/* Whether uid or one of gids is on an allow list. */
bool hs_allowed(const uid_t *uids, size_t nuids, const gid_t *allow_gids, size_t nallow, uid_t uid,
                const gid_t *gids, size_t ngids);

#endif

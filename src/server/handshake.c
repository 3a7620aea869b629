/* The daemon's handshake decoding and checks (see handshake.h). Everything here trusts
 * nothing about its input: it comes straight from a peer that has not authenticated. */
#include "server/handshake.h"

#include <string.h>

#include "common/util.h"

/* Names from the peer end up in the daemon's log: control characters (a newline that would
 * forge a log line, terminal escapes) become '?'. The transcript keeps the raw bytes. */
static void printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}

enum hs_status hs_decode_hello(uint16_t op, const uint8_t *body, size_t len, struct hs_hello *out)
{
    memset(out, 0, sizeof *out);
    struct wire_rd r;
    wire_rd_init(&r, body, len);
    uint32_t magic = wire_get_u32(&r);
    out->version = wire_get_u32(&r);
    if (op != VGPU_OP_HELLO || magic != VGPU_PROTOCOL_MAGIC || r.bad) return HS_NOT_HELLO;
    /* kind, pid, name and host sit at the same place in every version so far: read them
     * for the log line even when the versions differ. */
    out->kind = wire_get_u32(&r);
    out->pid = wire_get_u32(&r);
    wire_get_str(&r, out->name, sizeof out->name);
    wire_get_str(&r, out->host, sizeof out->host);
    printable(out->name);
    printable(out->host);
    out->ids_parsed = !r.bad;
    if (out->version != VGPU_PROTOCOL_VERSION) return HS_VERSION;
    out->session = wire_get_u64(&r);
    const uint8_t *nonce = wire_get_raw(&r, VGPU_AUTH_NONCE_BYTES);
    out->features = wire_get_u32(&r);
    if (r.bad || !nonce) return HS_MALFORMED;
    memcpy(out->nonce, nonce, sizeof out->nonce);
    if (out->kind != VGPU_HELLO_NEW_SESSION && out->kind != VGPU_HELLO_JOIN_SESSION) return HS_MALFORMED;
    return HS_OK;
}

int hs_decode_auth(uint16_t op, const uint8_t *body, size_t len, struct hs_auth *out)
{
    memset(out, 0, sizeof *out);
    if (op != VGPU_OP_AUTH) return -1;
    struct wire_rd r;
    wire_rd_init(&r, body, len);
    out->method = wire_get_u32(&r);
    const uint8_t *proof = wire_get_raw(&r, VGPU_AUTH_PROOF_BYTES);
    if (!wire_rd_end(&r) || !proof) return -1;
    if (out->method != VGPU_AUTH_NONE && out->method != VGPU_AUTH_TOKEN) return -1;
    memcpy(out->proof, proof, sizeof out->proof);
    return 0;
}

int hs_find_key(const struct hs_key *keys, size_t n, const uint8_t transcript[VGPU_SHA256_BYTES],
                const uint8_t proof[VGPU_AUTH_PROOF_BYTES])
{
    int found = -1;
    for (size_t i = 0; i < n; i++) {
        uint8_t expect[VGPU_AUTH_PROOF_BYTES];
        if (!keys[i].len) continue; /* a tenant without a token is no key (not a secret) */
        vgpu_auth_guest_proof(keys[i].key, keys[i].len, transcript, expect);
        bool match = vgpu_consttime_equal(expect, proof, sizeof expect);
        if (match && found < 0) found = (int)i;
    }
    return found;
}

static bool has_id(const unsigned *ids, size_t n, unsigned id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

int hs_unix_tenant(const struct vgpu_tenant *tenants, size_t n, uid_t uid, const gid_t *gids, size_t ngids)
{
    for (size_t i = 0; i < n; i++) {
        if (has_id(tenants[i].uids, tenants[i].nuids, uid)) return (int)i;
        for (size_t g = 0; g < ngids; g++)
            if (has_id(tenants[i].gids, tenants[i].ngids, gids[g])) return (int)i;
    }
    return -1;
}

bool hs_allowed(const uid_t *uids, size_t nuids, const gid_t *allow_gids, size_t nallow, uid_t uid,
                const gid_t *gids, size_t ngids)
{
    if (has_id(uids, nuids, uid)) return true;
    for (size_t g = 0; g < ngids; g++)
        if (has_id(allow_gids, nallow, gids[g])) return true;
    return false;
}

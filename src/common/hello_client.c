/* The guest's side of the version 2 handshake (see auth.h): HELLO, CHALLENGE, AUTH,
 * AUTH_OK and the HELLO reply over a connection. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

#include <cuda.h>

#include "common/auth.h"
#include "common/frame.h"
#include "common/util.h"

/* A HELLO reply (the worker's, or any error reply): 0 when it decodes. */
static int parse_hello_reply(const struct wire_buf *body, struct vgpu_hello_result *res)
{
    struct wire_rd r;
    wire_rd_init(&r, body->data, body->len);
    res->result = wire_get_i32(&r);
    res->version = wire_get_u32(&r);
    res->session = wire_get_u64(&r);
    res->lane = wire_get_u32(&r);
    const uint8_t *token = wire_get_raw(&r, VGPU_TOKEN_BYTES);
    if (token) memcpy(res->token, token, VGPU_TOKEN_BYTES);
    res->msg[0] = 0;
    wire_get_str(&r, res->msg, sizeof res->msg);
    res->features = !r.bad && r.left >= 4 ? wire_get_u32(&r) : 0; /* only when the HELLO had its word */
    return wire_rd_end(&r) ? 0 : -1;
}

static int recv_reply(struct vgpu_conn *c, struct wire_buf *body, int stall_ms, const char *what, char *err,
                      size_t errlen)
{
    struct vgpu_frame_hdr h;
    if (vgpu_frame_recv_ex(c, &h, body, VGPU_MAX_FRAME_PAYLOAD, stall_ms)) {
        int saved = errno; /* 0: closed without an answer */
        snprintf(err, errlen, "no answer to %s: %s", what, errno ? strerror(errno) : "connection closed");
        errno = saved;
        return -1;
    }
    if (!(h.flags & VGPU_FRAME_REPLY)) {
        snprintf(err, errlen, "malformed answer to %s", what);
        return -1;
    }
    return 0;
}

/* The first i32 of every answer: 0, or an error reply in the HELLO reply layout. */
static int32_t answer_result(const struct wire_buf *body)
{
    struct wire_rd r;
    wire_rd_init(&r, body->data, body->len);
    int32_t v = wire_get_i32(&r);
    return r.bad ? -1 : v;
}

static int error_answer(const struct wire_buf *body, struct vgpu_hello_result *res, char *err, size_t errlen)
{
    if (parse_hello_reply(body, res)) {
        snprintf(err, errlen, "malformed hello reply");
        return -1;
    }
    res->auth_failed = res->result == CUDA_ERROR_NOT_PERMITTED;
    return 0;
}

int vgpu_hello_exchange(struct vgpu_conn *c, const struct vgpu_hello_params *p, struct wire_buf *body,
                        struct vgpu_hello_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    uint8_t nonce[VGPU_AUTH_NONCE_BYTES];
    if (getrandom(nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce) {
        snprintf(err, errlen, "no random numbers: %s", strerror(errno));
        return -1;
    }
    struct wire_buf hello;
    wire_buf_init(&hello);
    vgpu_hello_put(&hello, p->version, p->kind, p->pid, p->name, p->host, p->session, nonce, p->features);
    int rc = -1;
    if (hello.oom) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (vgpu_frame_send(c, VGPU_OP_HELLO, 0, 0, hello.data, hello.len, NULL, 0)) {
        snprintf(err, errlen, "send failed: %s", strerror(errno));
        goto out;
    }
    if (recv_reply(c, body, p->stall_ms, "hello", err, errlen)) goto out;
    res->answered = true;
    if (answer_result(body) != 0) { /* refused at once (another version, a full daemon) */
        rc = error_answer(body, res, err, errlen);
        goto out;
    }
    /* CHALLENGE: i32 0, u32 version, raw[32] daemon nonce */
    struct wire_rd r;
    wire_rd_init(&r, body->data, body->len);
    (void)wire_get_i32(&r);
    res->version = wire_get_u32(&r);
    (void)wire_get_raw(&r, VGPU_AUTH_NONCE_BYTES);
    if (!wire_rd_end(&r)) {
        snprintf(err, errlen, "malformed challenge");
        goto out;
    }
    uint8_t transcript[VGPU_SHA256_BYTES], proof[VGPU_AUTH_PROOF_BYTES] = {0}, expect[VGPU_AUTH_PROOF_BYTES];
    vgpu_auth_transcript(hello.data, hello.len, body->data, body->len, transcript);
    if (p->key) vgpu_auth_guest_proof(p->key, p->keylen, transcript, proof);
    struct wire_buf auth;
    wire_buf_init(&auth);
    vgpu_auth_put(&auth, p->key ? VGPU_AUTH_TOKEN : VGPU_AUTH_NONE, proof);
    int sent = auth.oom ? -1 : vgpu_frame_send(c, VGPU_OP_AUTH, 0, 0, auth.data, auth.len, NULL, 0);
    wire_buf_free(&auth);
    if (sent) {
        snprintf(err, errlen, "send failed: %s", strerror(errno));
        goto out;
    }
    if (recv_reply(c, body, p->stall_ms, "authentication", err, errlen)) goto out;
    if (answer_result(body) != 0) {
        rc = error_answer(body, res, err, errlen);
        goto out;
    }
    /* AUTH_OK: i32 0, raw[32] daemon proof */
    wire_rd_init(&r, body->data, body->len);
    (void)wire_get_i32(&r);
    const uint8_t *daemon_proof = wire_get_raw(&r, VGPU_AUTH_PROOF_BYTES);
    if (!wire_rd_end(&r)) {
        snprintf(err, errlen, "malformed authentication answer");
        goto out;
    }
    if (p->key) {
        vgpu_auth_daemon_proof(p->key, p->keylen, transcript, proof, expect);
        if (!vgpu_consttime_equal(expect, daemon_proof, sizeof expect)) {
            snprintf(err, errlen, "the daemon could not prove that it knows the token");
            res->auth_failed = true;
            goto out;
        }
    }
    if (recv_reply(c, body, p->stall_ms, "hello", err, errlen)) goto out;
    if (parse_hello_reply(body, res)) {
        snprintf(err, errlen, "malformed hello reply");
        goto out;
    }
    /* A session opened with a token has a token both sides derive; it never crossed the wire. */
    if (p->kind == VGPU_HELLO_NEW_SESSION && p->key) vgpu_auth_session_token(p->key, p->keylen, transcript, res->token);
    rc = 0;
out:;
    int saved = errno; /* the caller tells a close without an answer (0) from errors */
    wire_buf_free(&hello);
    errno = saved;
    return rc;
}

/*
 * Fuzz harness: the worker's message decoder and op handlers (src/server/worker.c
 * lane_serve_frame and ops_*.c) on the emu backend, in-process.
 *
 * Input: a stream of request frames as on the wire (16-byte header, then `length` bytes
 * of body; common/wire.h), served one after another on lane 0 of a fresh session whose
 * replies go to a sink. A frame cut short by the end of the input ends the stream (the
 * guest went away). 8-byte values VGPU_HANDLE_TOKEN | i in a body stand for the i-th
 * handle the session created (server/frame_record.h), so inputs can name objects
 * created earlier in the same input; the recorded corpus uses them.
 *
 * After the stream the harness destroys everything the session still holds by sending
 * the destroy requests a guest would (graphs, streams, memory, modules, contexts, the
 * primary context), which keeps runs independent of each other, then frees the session.
 *
 * Lanes 1-63 exist and have closed (a FENCE naming them returns at once).
 * Not served (they would block this single thread forever or need a second process):
 * HOSTFN_ATTACH and HOSTFN_WAIT (a host-function lane waits for requests; without an
 * attached lane a host function is skipped, which is what runs here), SHM_UPGRADE and
 * SHM_READY (they move the lane to shared memory mapped with the guest).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/frame.h"
#include "server/frame_record.h"
#include "server/worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- a connection whose replies go nowhere ---- */

static uint8_t sink_scratch[1u << 20];

static int sink_writev(struct vgpu_conn *c, struct iovec *iov, int iovcnt)
{
    (void)c;
    /* Copy every byte out (ASan checks each memcpy's whole range), so that a reply
     * pointing outside its buffer shows; memcpy rather than a byte loop, which was
     * the slowest part of inputs that copy whole allocations back. */
    for (int i = 0; i < iovcnt; i++)
        for (size_t off = 0; off < iov[i].iov_len; off += sizeof sink_scratch) {
            size_t n = iov[i].iov_len - off < sizeof sink_scratch ? iov[i].iov_len - off : sizeof sink_scratch;
            memcpy(sink_scratch, (const uint8_t *)iov[i].iov_base + off, n);
        }
    return 0;
}

static int sink_writev_fd(struct vgpu_conn *c, struct iovec *iov, int iovcnt, int fd)
{
    (void)fd;
    return sink_writev(c, iov, iovcnt);
}

static int sink_read(struct vgpu_conn *c, void *buf, size_t n)
{
    (void)c, (void)buf, (void)n;
    return -1;
}

static void sink_close(struct vgpu_conn *c) { (void)c; }

static const struct vgpu_transport sink_transport = {
    .scheme = "fuzz",
    .writev_all = sink_writev,
    .read_all = sink_read,
    .writev_fd = sink_writev_fd,
    .close = sink_close,
};

/* ---- one session ---- */

static bool skipped_op(uint16_t op)
{
    return op == VGPU_OP_HOSTFN_ATTACH || op == VGPU_OP_HOSTFN_WAIT || op == VGPU_OP_SHM_UPGRADE ||
           op == VGPU_OP_SHM_READY;
}

/* Serve one frame; false when the lane (or session) ended. */
static bool serve(struct lane *L, uint16_t op, uint16_t flags, const void *body, size_t len,
                  const struct handle_order *order)
{
    struct vgpu_frame_hdr h = {.length = (uint32_t)len, .op = op, .flags = flags, .seq = 1};
    wire_buf_reset(&L->in);
    void *p = wire_put_space(&L->in, len);
    if (!p && len) return false;
    if (len) memcpy(p, body, len);
    if (order) handle_order_detokenize(order, L->in.data, len);
    const char *why;
    return lane_serve_frame(L, &h, &why) == LANE_NEXT;
}

/* Destroy requests for every handle of `kind` still in the table. */
static void destroy_all(struct lane *L, enum handle_kind kind, uint16_t op, bool with_size, bool owner_zero_only)
{
    struct session *s = L->s;
    for (int pass = 0; pass < 8; pass++) { /* graphs of graphs go in several passes */
        size_t n = 0;
        pthread_mutex_lock(&s->lock);
        struct handle_entry *snap = s->handles.used ? malloc(s->handles.used * sizeof *snap) : NULL;
        for (size_t i = 0; snap && i < s->handles.cap; i++) {
            struct handle_entry *e = &s->handles.slots[i];
            if (e->kind == kind && (!owner_zero_only || e->owner == 0) && n < s->handles.used) snap[n++] = *e;
        }
        pthread_mutex_unlock(&s->lock);
        for (size_t i = 0; i < n; i++) {
            uint8_t b[16];
            for (int k = 0; k < 8; k++) {
                b[k] = (uint8_t)(snap[i].value >> (8 * k));
                b[8 + k] = (uint8_t)(snap[i].size >> (8 * k)); /* CTX_DESTROY: "after" 0 */
            }
            if (kind == H_CONTEXT) memset(b + 8, 0, 8);
            serve(L, op, 0, b, with_size ? 16 : 8, NULL);
        }
        free(snap);
        if (n == 0) break;
    }
}

static void teardown(struct lane *L)
{
    destroy_all(L, H_GRAPH_EXEC, VGPU_OP_GRAPH_EXEC_DESTROY, false, false);
    destroy_all(L, H_GRAPH, VGPU_OP_GRAPH_DESTROY, false, true);
    destroy_all(L, H_GRAPH, VGPU_OP_GRAPH_DESTROY, false, false);
    destroy_all(L, H_LINK, VGPU_OP_LINK_DESTROY, false, false);
    destroy_all(L, H_EVENT, VGPU_OP_EVENT_DESTROY, false, false);
    destroy_all(L, H_STREAM, VGPU_OP_STREAM_DESTROY, false, false);
    destroy_all(L, H_VA_MAPPING, VGPU_OP_VMM_UNMAP, true, false);
    destroy_all(L, H_MEM_HANDLE, VGPU_OP_VMM_RELEASE, false, false);
    destroy_all(L, H_VA_RANGE, VGPU_OP_VMM_FREE, true, false);
    destroy_all(L, H_MEMORY, VGPU_OP_MEM_FREE, false, false);
    destroy_all(L, H_MODULE, VGPU_OP_MODULE_UNLOAD, false, false);
    destroy_all(L, H_LIBRARY, VGPU_OP_LIBRARY_UNLOAD, false, false);
    destroy_all(L, H_CONTEXT, VGPU_OP_CTX_DESTROY, true, false);
    /* The primary context: reset (frees what it holds), then give back every retain. */
    uint8_t dev0[4] = {0};
    serve(L, VGPU_OP_PRIMARY_CTX_RESET, 0, dev0, 4, NULL);
    for (int i = 0; i < 4096; i++) {
        serve(L, VGPU_OP_PRIMARY_CTX_RELEASE, 0, dev0, 4, NULL);
        if (L->out.len < 4 || (L->out.data[0] | L->out.data[1] | L->out.data[2] | L->out.data[3])) break;
    }
    drv.cuCtxSetCurrent(NULL);
}

static void init_once(void)
{
    static bool done;
    if (done) return;
    done = true;
    if (!getenv("VGPU_LOG")) vgpu_log_set_level(VGPU_LOG_ERROR); /* quieter: every bad input logs an error */
    char err[256];
    /* A small device: allocations past 32 MiB fail, which keeps every input fast (the
     * cost of an input grows with the memory it can fill and copy). */
    if (backend_open_emu(32ull << 20, err, sizeof err) || drv.cuInit(0) != CUDA_SUCCESS) {
        fprintf(stderr, "fuzz_decoder: emu backend: %s\n", err);
        abort();
    }
    server_backend_name = "emu";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    struct session *s = calloc(1, sizeof *s);
    struct lane *L = calloc(1, sizeof *L);
    struct vgpu_conn *conn = calloc(1, sizeof *conn);
    if (!s || !L || !conn) abort();
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->fence_lock, NULL);
    pthread_cond_init(&s->fence_cond, NULL);
    hostfn_session_init(s);
    s->id = 1;
    s->client_pid = 1;
    strcpy(s->client_name, "fuzz");
    strcpy(s->client_host, "fuzz");
    conn->t = &sink_transport;
    conn->fd = -1;
    L->s = s;
    L->conn = conn;
    L->index = 0;
    L->hello_features = -1;
    L->progress = session_lane_progress(s, 0, true);
    /* Recorded sessions had more lanes, and lane 0's FENCEs name them: here they exist
     * and have closed, so a fence never waits. */
    for (unsigned i = 1; i < 64; i++) {
        struct lane_progress *p = session_lane_progress(s, i, true);
        if (p) atomic_store(&p->open, false);
    }
    wire_buf_init(&L->in);
    wire_buf_init(&L->out);
    struct handle_order order = {0};

    size_t pos = 0;
    while (size - pos >= VGPU_FRAME_HDR_SIZE) {
        struct vgpu_frame_hdr h;
        vgpu_frame_hdr_decode(data + pos, &h);
        pos += VGPU_FRAME_HDR_SIZE;
        if (h.length > VGPU_MAX_FRAME_PAYLOAD || h.length > size - pos) break; /* oversized / cut short */
        const uint8_t *body = data + pos;
        pos += h.length;
        if (skipped_op(h.op)) continue;
        handle_order_update(&order, s);
        if (h.flags & VGPU_FRAME_REPLY) break; /* ends the session (checked by lane_serve_frame too) */
        if (!serve(L, h.op, h.flags, body, h.length, &order)) break;
    }

    teardown(L);
    hostfn_session_release(s);
    handle_order_free(&order);
    handles_free(&s->handles);
    for (size_t i = 0; i < s->nprogress; i++) free(s->progress[i]);
    free(s->progress);
    wire_buf_free(&L->in);
    wire_buf_free(&L->out);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->fence_lock);
    pthread_cond_destroy(&s->fence_cond);
    pthread_mutex_destroy(&s->hostfn_lock);
    pthread_cond_destroy(&s->hostfn_cond);
    free(conn);
    free(L);
    free(s);
    return 0;
}

/*
 * The guest's connection to vgpud, shared by vgpu's guest libraries (libcuda.so.1 and
 * libnvidia-ml.so.1; each links its own copy, so each has its own session). Each
 * application thread talks over its own lane (a connection served by its own daemon
 * thread), so calls from different threads never queue behind each other and the
 * daemon keeps CUDA's per-thread current context. The first lane, opened by
 * vg_rpc_open, owns the session.
 *
 * This level knows frames, lanes and fences, not result codes: a call reports whether
 * the daemon answered (VG_RPC_OK, with the reply's result word) or why not; each
 * library maps that onto its own API (guest/cuda/rpc.h: CUresult; guest/nvml:
 * nvmlReturn_t).
 */
#ifndef VGPU_GUEST_COMMON_RPC_H
#define VGPU_GUEST_COMMON_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/proto.h"
#include "common/wire.h"

enum vg_rpc_status {
    VG_RPC_OK = 0,   /* answered (calls) or sent (posts) */
    VG_RPC_NOT_OPEN, /* no session: vg_rpc_open was not called or failed */
    VG_RPC_FORKED,   /* this is a child forked after the session opened: it has none */
    VG_RPC_LOST,     /* the connection failed, now or before (logged once) */
    VG_RPC_NO_LANE,  /* this thread could not open its lane (logged) */
    VG_RPC_NOMEM,    /* the arguments could not be built */
    VG_RPC_UNSUPPORTED, /* this lane's transport cannot do it (pass a descriptor over TCP) */
};

/* Open the session (first lane) to VGPU_SERVER or the default address, authenticating
 * with VGPU_TOKEN or VGPU_TOKEN_FILE when set. `api` names the library's API in
 * messages ("CUDA", "NVML"). 0 on success (and when already open); logs one line and
 * returns VG_RPC_OPEN_DENIED when authentication failed, -1 when the daemon cannot be
 * reached or refused otherwise. */
#define VG_RPC_OPEN_DENIED (-2)
int vg_rpc_open(const char *api);
bool vg_rpc_is_open(void);

/* A synchronous call: send op with `args` (and optional bulk bytes appended), wait for
 * the reply. On VG_RPC_OK, *result is the reply's result word and *reply (if not
 * NULL) reads the outputs; it stays valid until this thread's next call. */
enum vg_rpc_status vg_rpc_call(uint16_t op, const struct wire_buf *args, const void *bulk, size_t bulk_len,
                               struct wire_rd *reply, int32_t *result);

/* vg_rpc_call with a file descriptor passed along with the request (unix sockets:
 * the daemon takes it with vgpu_conn_take_fd); VG_RPC_UNSUPPORTED elsewhere. */
enum vg_rpc_status vg_rpc_call_fd(uint16_t op, const struct wire_buf *args, int fd, struct wire_rd *reply,
                                  int32_t *result);
/* Whether this thread's lane can pass descriptors (same host, unix socket). */
bool vg_rpc_can_pass_fds(void);

/* A series of `count` calls of one op whose successful replies are exactly a block of
 * data (device-to-host copy chunks), kept `window` deep so the daemon prepares the
 * next reply while this side receives the last. build() writes request i's arguments;
 * dest() gives where reply i's data goes and its expected length. On VG_RPC_OK,
 * *result is the first failing reply's result word (0 if all succeeded); after a
 * failure no further requests are sent. */
struct vg_rpc_pipe {
    unsigned count, window;
    void (*build)(void *ctx, unsigned i, struct wire_buf *args);
    void *(*dest)(void *ctx, unsigned i, size_t *len);
    void *ctx;
};
enum vg_rpc_status vg_rpc_call_pipelined(uint16_t op, const struct vg_rpc_pipe *p, int32_t *result);

/* An asynchronous call: no reply; the daemon keeps a failure for the next synchronizing
 * call on this thread's lane. VG_RPC_OK once the frame is written. */
enum vg_rpc_status vg_rpc_post(uint16_t op, const struct wire_buf *args, const void *bulk, size_t bulk_len);

/* fn runs on a thread whose lane closed at thread exit and that calls again (from a
 * later thread-exit destructor): a new lane and daemon thread serve it, and fn restores
 * what the old one knew (libcuda: the current context). */
void vg_rpc_on_lane_reopen(void (*fn)(void));

/* Per-thread scratch argument buffer, reset on each use. */
struct wire_buf *vg_rpc_args(void);

/* Calls from this thread no longer wait for other threads' posted work (no FENCE).
 * For the thread that runs host functions: the work it would wait for can be a host
 * function waiting for it. */
void vg_rpc_thread_skip_fences(void);

/* Log a reply whose outputs do not decode (the daemon is broken or hostile). */
void vg_rpc_log_bad_reply(uint16_t op);

#endif

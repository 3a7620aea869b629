/*
 * libcuda's calls to vgpud: the shared guest transport (guest/common/rpc.h) with its
 * outcomes expressed as CUresult. Each application thread talks over its own lane;
 * the first lane, opened by cuInit, owns the session.
 */
#ifndef VGPU_GUEST_RPC_H
#define VGPU_GUEST_RPC_H

#include "common/proto.h"
#include "common/wire.h"
#include "guest/common/rpc.h"
#include "guest/cuda/guest.h"

/* Open the session (first lane) to VGPU_SERVER or the default address. Logs one
 * line and returns CUDA_ERROR_NO_DEVICE when the daemon cannot be reached. */
CUresult vg_rpc_connect(void);

/* A synchronous call: send op with `args` (and optional bulk bytes appended), wait for
 * the reply. On CUDA_SUCCESS, *reply reads the outputs; it stays valid until this
 * thread's next call. Without an answer: CUDA_ERROR_NOT_INITIALIZED before cuInit and
 * in a child forked after it, CUDA_ERROR_DEVICE_UNAVAILABLE when the connection (or
 * this thread's lane) is gone, CUDA_ERROR_OUT_OF_MEMORY when args could not be built. */
CUresult vg_call(uint16_t op, const struct wire_buf *args, const void *bulk, size_t bulk_len, struct wire_rd *reply);

/* vg_call for ops whose failing replies may carry outputs too (the JIT logs of MODULE_LOAD,
 * LIBRARY_LOAD and LINK_*): *answered says whether the daemon answered; if so, *reply reads
 * what follows the result word, whatever the result. */
CUresult vg_call_answered(uint16_t op, const struct wire_buf *args, const void *bulk, size_t bulk_len,
                          struct wire_rd *reply, bool *answered);

/* An asynchronous call: no reply; a failure surfaces at the next synchronizing call
 * on this thread. Returns an error only when the request could not be sent (no
 * session, connection gone, arguments could not be built). */
CUresult vg_post(uint16_t op, const struct wire_buf *args, const void *bulk, size_t bulk_len);

/* Convenience: a call whose reply has no outputs (or whose outputs are ignored). */
CUresult vg_call_simple(uint16_t op, const struct wire_buf *args);

/* A call passing a file descriptor with the request (guest/common/rpc.h). */
CUresult vg_call_fd(uint16_t op, const struct wire_buf *args, int fd, struct wire_rd *reply);

/* A pipelined series of calls whose replies are data blocks (guest/common/rpc.h). */
CUresult vg_call_pipelined(uint16_t op, const struct vg_rpc_pipe *p);

/* Per-thread scratch argument buffer, reset on each use. */
struct wire_buf *vg_args(void);

/* A reply that does not decode: the daemon is broken or hostile. */
CUresult vg_bad_reply(uint16_t op);

#endif

/* Entry point of a vgpud worker process (one per client), and the assignment the
 * daemon sends a waiting worker when its client arrives. */
#ifndef VGPU_WORKER_H
#define VGPU_WORKER_H

#include "server/server.h"
#include "transport/ivshmem.h"

struct worker_args {
    const char *backend; /* "cuda" or "emu" (resolved by the parent) */
    const char *driver;  /* real driver path for cuda, NULL for the default */
    unsigned long long emu_memory;
    int ctl_fd, board_fd; /* inherited: control socket (fd 4), status board (fd 5) */
};

/* One SEQPACKET message on the control socket, carrying lane 0's connection as
 * SCM_RIGHTS. Both ends are the same vgpud binary, so the layout is simply this struct. */
struct worker_assignment {
    uint64_t session_id;
    int32_t client_pid;
    int32_t board_slot; /* -1: the board is full */
    char transport[8];  /* scheme of lane 0 ("unix", "tcp") */
    int32_t hello_features; /* lane 0's HELLO feature word (VGPU_FEATURE_*), -1 if it had none */
    char client_name[64];
    char client_host[64];
    uint8_t token[VGPU_TOKEN_BYTES];
    /* The client's tenant (docs/config.md): "" for none. */
    char tenant[64];
    uint64_t memory_limit;    /* device memory quota in bytes, 0 for none */
    uint32_t compute_weight;  /* share of GPU time, 1..1000 */
    uint8_t token_derived;    /* 1: the guest derived the session token itself; the HELLO reply omits it */
    uint64_t pinned_limit;    /* pinned host memory the daemon may hold for it, 0 for none */
    struct vgpu_ivshmem_handoff ivshmem; /* transport "ivshmem": lane 0's slot and ring positions */
};

/* The message that hands a further lane's connection (SCM_RIGHTS) to the worker. */
struct worker_lane_handover {
    char tag;               /* 'L' */
    int32_t hello_features; /* that lane's HELLO feature word, -1 if it had none */
    struct vgpu_ivshmem_handoff ivshmem; /* transport "ivshmem": the lane's slot and ring positions */
};

int worker_main(const struct worker_args *a);

/* Serving one received frame (its body in L->in) on a lane: dispatch it to its handler
 * and send the reply on L->conn. The lane's loop (worker.c) calls it for every frame;
 * the fuzz harness (tests/fuzz/fuzz_decoder.c) calls it with frames from its input and
 * a connection that discards replies. */
enum lane_step {
    LANE_NEXT,        /* served: go on with the next frame */
    LANE_GOODBYE,     /* the guest said goodbye: the lane ends */
    LANE_SEND_FAILED, /* the reply could not be sent (errno): the lane ends */
    LANE_END_SESSION, /* malformed or a reply frame, or no memory for the reply: *why says which,
                       * the error is logged, and the whole session must end */
};
enum lane_step lane_serve_frame(struct lane *L, const struct vgpu_frame_hdr *h, const char **why);

#endif

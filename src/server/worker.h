/* Entry point of a vgpud worker process (one per client). */
#ifndef VGPU_WORKER_H
#define VGPU_WORKER_H

#include "server/server.h"

struct worker_args {
    const char *backend;   /* "cuda" or "emu" (resolved by the parent) */
    const char *driver;    /* real driver path for cuda, NULL for the default */
    unsigned long long emu_memory;
    const char *transport; /* "unix:" or "tcp:" scheme of lane 0 */
    int conn_fd, ctl_fd, board_fd;
    int board_slot;        /* this client's status board slot, -1 for none */
    uint64_t session_id;
    int client_pid;
    const char *client_name, *client_host;
};

int worker_main(const struct worker_args *a);

#endif

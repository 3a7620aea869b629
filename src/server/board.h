/*
 * The status board: one shared-memory table, created by the daemon and mapped by
 * every worker, with a slot per connected client (pid, name, host, device memory in
 * use). Workers write their own slot; anyone reads all of them. It answers "which
 * processes use the GPU" (NVML's running processes, `vgpu smi`) without asking the
 * daemon or other workers. Readers may see a slot mid-update: values are advisory.
 * The same memfd also holds the compute-share scheduler's state (sched.h).
 */
#ifndef VGPU_SERVER_BOARD_H
#define VGPU_SERVER_BOARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define BOARD_SLOTS 1024

struct board_slot {
    atomic_uint state;          /* 0 free, 1 reserved by the daemon, 2 live (worker running) */
    int32_t client_pid;
    int32_t worker_pid;
    uint64_t session_id;
    uint64_t started_unix_ms;
    _Atomic uint64_t memory_bytes; /* device memory the client holds */
    char client_name[64];
    char client_host[64];
    char tenant[64]; /* "" for none */
};

struct board_entry { /* a copy of a live slot */
    int client_pid, worker_pid;
    uint64_t session_id, started_unix_ms, memory_bytes;
    char client_name[64], client_host[64], tenant[64];
};

/* Daemon: create the board (a memfd); returns its fd, or -1. */
int board_create(void);
/* Worker: map the board passed as fd (and attach the scheduler's region). */
int board_attach(int fd);
/* Daemon: reserve a free slot for a new client; -1 when full. */
int board_reserve(uint64_t session_id, int client_pid, const char *name, const char *host, const char *tenant);
/* Daemon: free a slot whose worker ended. */
void board_release(int slot);
/* Worker: its slot is live / its memory changed by delta bytes. */
void board_set_live(int slot, int worker_pid);
void board_add_memory(int64_t delta);
/* Anyone: copy the live slots; returns how many (at most max). */
int board_snapshot(struct board_entry *out, int max);

#endif

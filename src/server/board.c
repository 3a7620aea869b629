/* The status board (see board.h): a memfd-backed array of client slots. */
#include "server/board.h"

#include "server/sched.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static struct board_slot *board;
static int my_slot = -1;

/* The slots, then the compute-share scheduler's region (sched.c), page aligned. */
#define BOARD_SLOTS_BYTES ((sizeof(struct board_slot) * BOARD_SLOTS + 4095) & ~(size_t)4095)

static size_t board_bytes(void) { return BOARD_SLOTS_BYTES + sched_shared_bytes(); }

static int map_board(int fd)
{
    void *p = mmap(NULL, board_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return -1;
    board = p;
    return 0;
}

int board_create(void)
{
    int fd = memfd_create("vgpud-board", MFD_CLOEXEC);
    if (fd < 0) return -1;
    if (ftruncate(fd, (off_t)board_bytes()) || map_board(fd) ||
        sched_shared_init((char *)board + BOARD_SLOTS_BYTES)) {
        close(fd);
        return -1;
    }
    return fd;
}

int board_attach(int fd)
{
    if (map_board(fd)) return -1;
    sched_shared_attach((char *)board + BOARD_SLOTS_BYTES);
    return 0;
}

int board_reserve(uint64_t session_id, int client_pid, const char *name, const char *host, const char *tenant)
{
    if (!board) return -1;
    for (int i = 0; i < BOARD_SLOTS; i++) {
        unsigned expected = 0;
        if (!atomic_compare_exchange_strong(&board[i].state, &expected, 1)) continue;
        struct board_slot *s = &board[i];
        s->client_pid = client_pid;
        s->worker_pid = 0;
        s->session_id = session_id;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s->started_unix_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        atomic_store(&s->memory_bytes, 0);
        snprintf(s->client_name, sizeof s->client_name, "%s", name ? name : "?");
        snprintf(s->client_host, sizeof s->client_host, "%s", host ? host : "?");
        snprintf(s->tenant, sizeof s->tenant, "%s", tenant ? tenant : "");
        return i;
    }
    return -1;
}

void board_release(int slot)
{
    if (board && slot >= 0 && slot < BOARD_SLOTS) atomic_store(&board[slot].state, 0);
}

void board_set_live(int slot, int worker_pid)
{
    if (!board || slot < 0 || slot >= BOARD_SLOTS) return;
    my_slot = slot;
    board[slot].worker_pid = worker_pid;
    atomic_store(&board[slot].state, 2);
}

void board_add_memory(int64_t delta)
{
    if (board && my_slot >= 0) atomic_fetch_add(&board[my_slot].memory_bytes, (uint64_t)delta);
}

int board_snapshot(struct board_entry *out, int max)
{
    int n = 0;
    for (int i = 0; board && i < BOARD_SLOTS && n < max; i++) {
        struct board_slot *s = &board[i];
        if (atomic_load(&s->state) != 2) continue;
        struct board_entry *e = &out[n++];
        e->client_pid = s->client_pid;
        e->worker_pid = s->worker_pid;
        e->session_id = s->session_id;
        e->started_unix_ms = s->started_unix_ms;
        e->memory_bytes = atomic_load(&s->memory_bytes);
        memcpy(e->client_name, s->client_name, sizeof e->client_name);
        e->client_name[sizeof e->client_name - 1] = 0;
        memcpy(e->client_host, s->client_host, sizeof e->client_host);
        e->client_host[sizeof e->client_host - 1] = 0;
        memcpy(e->tenant, s->tenant, sizeof e->tenant);
        e->tenant[sizeof e->tenant - 1] = 0;
    }
    return n;
}

/* VGPU_RECORD_FRAMES: recording received frames with their handles as tokens (see
 * frame_record.h). */
#include "server/frame_record.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_HANDLES 65536u
#define RECORD_MAX_LANES 256u
#define RECORD_MAX_BODY (16u << 10)  /* bigger frames (bulk copies) are left out */
#define RECORD_MAX_FILE (64u << 10)  /* a lane stops recording past this: corpus inputs stay small */

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

struct new_handle {
    uint8_t kind;
    uint64_t value;
};

static int cmp_new(const void *a, const void *b)
{
    const struct new_handle *x = a, *y = b;
    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    return x->value < y->value ? -1 : x->value > y->value;
}

/* Index of value in o->sorted (insertion point when absent). */
static size_t sorted_find(const struct handle_order *o, uint64_t value)
{
    size_t lo = 0, hi = o->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (o->sorted[mid] < value)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool known(const struct handle_order *o, uint64_t value)
{
    size_t i = sorted_find(o, value);
    return i < o->n && o->sorted[i] == value;
}

static void append(struct handle_order *o, uint64_t value)
{
    if (o->n == MAX_HANDLES || known(o, value)) return;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        uint64_t *v = realloc(o->values, cap * sizeof *v);
        if (v) o->values = v;
        uint64_t *s = realloc(o->sorted, cap * sizeof *s);
        if (s) o->sorted = s;
        uint32_t *si = realloc(o->sorted_index, cap * sizeof *si);
        if (si) o->sorted_index = si;
        if (!v || !s || !si) return;
        o->cap = cap;
    }
    size_t at = sorted_find(o, value);
    memmove(&o->sorted[at + 1], &o->sorted[at], (o->n - at) * sizeof *o->sorted);
    memmove(&o->sorted_index[at + 1], &o->sorted_index[at], (o->n - at) * sizeof *o->sorted_index);
    o->sorted[at] = value;
    o->sorted_index[at] = (uint32_t)o->n;
    o->values[o->n++] = value;
}

void handle_order_update(struct handle_order *o, struct session *s)
{
    pthread_mutex_lock(&s->lock);
    struct handle_table *t = &s->handles;
    size_t nnew = 0;
    struct new_handle *fresh = t->used ? malloc(t->used * sizeof *fresh) : NULL;
    for (size_t i = 0; fresh && i < t->cap; i++) {
        const struct handle_entry *e = &t->slots[i];
        if (e->kind == 0 || e->kind >= H_KIND_COUNT || known(o, e->value) || nnew == t->used) continue;
        fresh[nnew++] = (struct new_handle){e->kind, e->value};
    }
    pthread_mutex_unlock(&s->lock);
    /* The table's order depends on the values (addresses); (kind, value) order does
     * not, as long as one frame's new objects are allocated in the same relative order. */
    if (nnew) qsort(fresh, nnew, sizeof *fresh, cmp_new);
    for (size_t i = 0; i < nnew; i++) append(o, fresh[i].value);
    free(fresh);
}

void handle_order_tokenize(const struct handle_order *o, uint8_t *body, size_t len)
{
    for (size_t i = 0; o->n && i + 8 <= len; i++) {
        uint64_t v = get_le64(body + i);
        if (v < 65536) continue; /* small numbers are sizes and flags, never handles */
        size_t at = sorted_find(o, v);
        if (at == o->n || o->sorted[at] != v) continue;
        put_le64(body + i, VGPU_HANDLE_TOKEN | o->sorted_index[at]);
        i += 7;
    }
}

void handle_order_detokenize(const struct handle_order *o, uint8_t *body, size_t len)
{
    for (size_t i = 0; o->n && i + 8 <= len; i++) {
        uint64_t v = get_le64(body + i);
        if ((v & VGPU_HANDLE_TOKEN_MASK) != VGPU_HANDLE_TOKEN) continue;
        put_le64(body + i, o->values[(v & 0xffff) % o->n]);
        i += 7;
    }
}

void handle_order_free(struct handle_order *o)
{
    free(o->values);
    free(o->sorted);
    free(o->sorted_index);
    *o = (struct handle_order){0};
}

/* ---- the recorder ---- */

static pthread_once_t record_once = PTHREAD_ONCE_INIT;
static const char *record_dir;
static pthread_mutex_t record_lock = PTHREAD_MUTEX_INITIALIZER;
static struct handle_order record_order; /* one session per worker process */
static int record_fd[RECORD_MAX_LANES];
static size_t record_bytes[RECORD_MAX_LANES];

static void record_setup(void)
{
    const char *d = getenv("VGPU_RECORD_FRAMES");
    if (d && *d) record_dir = d;
}

bool frame_record_on(void)
{
    pthread_once(&record_once, record_setup);
    return record_dir != NULL;
}

void frame_record(struct lane *L, const struct vgpu_frame_hdr *h)
{
    if (L->index >= RECORD_MAX_LANES || h->length > RECORD_MAX_BODY) return;
    pthread_mutex_lock(&record_lock);
    if (record_bytes[L->index] + VGPU_FRAME_HDR_SIZE + h->length > RECORD_MAX_FILE) goto out;
    if (record_fd[L->index] == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/frames-%d-lane%u.bin", record_dir, (int)getpid(), L->index);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        record_fd[L->index] = fd >= 0 ? fd : -1;
        if (fd < 0) VGPU_WARN("VGPU_RECORD_FRAMES: cannot create %s", path);
    }
    if (record_fd[L->index] < 0) goto out;
    handle_order_update(&record_order, L->s);
    uint8_t *body = malloc(h->length ? h->length : 1);
    if (!body) goto out;
    memcpy(body, L->in.data, h->length);
    handle_order_tokenize(&record_order, body, h->length);
    uint8_t hdr[VGPU_FRAME_HDR_SIZE];
    vgpu_frame_hdr_encode(h, hdr);
    struct iovec iov[2] = {{hdr, sizeof hdr}, {body, h->length}};
    if (writev(record_fd[L->index], iov, 2) == (ssize_t)(sizeof hdr + h->length))
        record_bytes[L->index] += sizeof hdr + h->length;
    free(body);
out:
    pthread_mutex_unlock(&record_lock);
}

/* Wire codec implementation: bounds-checked little-endian reader and growable writer. */
#include "common/wire.h"

#include <stdlib.h>
#include <string.h>

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

void vgpu_frame_hdr_encode(const struct vgpu_frame_hdr *h, uint8_t out[VGPU_FRAME_HDR_SIZE])
{
    put_le(out, h->length, 4);
    put_le(out + 4, h->op, 2);
    put_le(out + 6, h->flags, 2);
    put_le(out + 8, h->seq, 8);
}

void vgpu_frame_hdr_decode(const uint8_t in[VGPU_FRAME_HDR_SIZE], struct vgpu_frame_hdr *h)
{
    h->length = (uint32_t)get_le(in, 4);
    h->op = (uint16_t)get_le(in + 4, 2);
    h->flags = (uint16_t)get_le(in + 6, 2);
    h->seq = get_le(in + 8, 8);
}

void wire_buf_init(struct wire_buf *b) { memset(b, 0, sizeof *b); }

void wire_buf_free(struct wire_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void wire_buf_reset(struct wire_buf *b)
{
    b->len = 0;
    b->oom = false;
}

void *wire_put_space(struct wire_buf *b, size_t n)
{
    if (b->oom) return NULL;
    if (n > SIZE_MAX / 2 - b->len) {
        b->oom = true;
        return NULL;
    }
    /* A buffer without storage gets some even for n == 0: the result is then a valid
     * pointer (NULL + 0 is undefined behaviour, found by fuzz_decoder). */
    if (b->len + n > b->cap || !b->data) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) {
            b->oom = true;
            return NULL;
        }
        b->data = d;
        b->cap = cap;
    }
    void *p = b->data + b->len;
    b->len += n;
    return p;
}

void wire_put_raw(struct wire_buf *b, const void *p, size_t n)
{
    void *d = wire_put_space(b, n);
    if (d && n) memcpy(d, p, n);
}

void wire_put_u8(struct wire_buf *b, uint8_t v) { wire_put_raw(b, &v, 1); }

void wire_put_u16(struct wire_buf *b, uint16_t v)
{
    uint8_t *d = wire_put_space(b, 2);
    if (d) put_le(d, v, 2);
}

void wire_put_u32(struct wire_buf *b, uint32_t v)
{
    uint8_t *d = wire_put_space(b, 4);
    if (d) put_le(d, v, 4);
}

void wire_put_u64(struct wire_buf *b, uint64_t v)
{
    uint8_t *d = wire_put_space(b, 8);
    if (d) put_le(d, v, 8);
}

void wire_put_f32(struct wire_buf *b, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    wire_put_u32(b, u);
}

void wire_put_bytes(struct wire_buf *b, const void *p, size_t n)
{
    if (n > UINT32_MAX - 1) {
        b->oom = true;
        return;
    }
    wire_put_u32(b, (uint32_t)n);
    wire_put_raw(b, p, n);
}

void wire_put_str(struct wire_buf *b, const char *s)
{
    if (!s) {
        wire_put_u32(b, UINT32_MAX);
        return;
    }
    wire_put_bytes(b, s, strlen(s));
}

const void *wire_get_raw(struct wire_rd *r, size_t n)
{
    if (r->bad || n > r->left) {
        r->bad = true;
        return NULL;
    }
    const void *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

uint8_t wire_get_u8(struct wire_rd *r)
{
    const uint8_t *p = wire_get_raw(r, 1);
    return p ? p[0] : 0;
}

uint16_t wire_get_u16(struct wire_rd *r)
{
    const uint8_t *p = wire_get_raw(r, 2);
    return p ? (uint16_t)get_le(p, 2) : 0;
}

uint32_t wire_get_u32(struct wire_rd *r)
{
    const uint8_t *p = wire_get_raw(r, 4);
    return p ? (uint32_t)get_le(p, 4) : 0;
}

uint64_t wire_get_u64(struct wire_rd *r)
{
    const uint8_t *p = wire_get_raw(r, 8);
    return p ? get_le(p, 8) : 0;
}

float wire_get_f32(struct wire_rd *r)
{
    uint32_t u = wire_get_u32(r);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

const void *wire_get_bytes(struct wire_rd *r, size_t max, size_t *len)
{
    uint32_t n = wire_get_u32(r);
    if (r->bad || n > max) {
        r->bad = true;
        *len = 0;
        return NULL;
    }
    const void *p = wire_get_raw(r, n);
    *len = p ? n : 0;
    return p;
}

const char *wire_get_str(struct wire_rd *r, char *out, size_t out_size)
{
    uint32_t n = wire_get_u32(r);
    if (r->bad) return NULL;
    if (n == UINT32_MAX) return NULL;
    if (out_size == 0 || n > out_size - 1) {
        r->bad = true;
        return NULL;
    }
    const char *p = wire_get_raw(r, n);
    if (!p) return NULL;
    if (memchr(p, 0, n)) {
        r->bad = true;
        return NULL;
    }
    memcpy(out, p, n);
    out[n] = 0;
    return out;
}

/*
 * Wire codec: little-endian encoding of request/reply bodies, and the frame header
 * shared by every transport. See docs/protocol.md for the message catalogue.
 *
 * Writers grow a buffer; readers never read past the end: any short or malformed
 * field latches `bad`, returns zero/NULL, and the caller checks wire_rd_end() once.
 */
#ifndef VGPU_WIRE_H
#define VGPU_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VGPU_PROTOCOL_MAGIC 0x55504756u /* "VGPU" */
#define VGPU_PROTOCOL_VERSION 2u /* 2: authenticated handshake (common/auth.h) */

/* Hard limits. A frame over VGPU_MAX_FRAME_PAYLOAD, or a field over its limit where
 * the protocol fixes one, ends the session; a request merely too large for the device
 * (too many kernel parameters, say) is answered with an error. See docs/protocol.md. */
#define VGPU_MAX_FRAME_PAYLOAD ((uint32_t)(64u << 20) + 65536u) /* one frame's body */
#define VGPU_MAX_BULK_CHUNK ((size_t)16 << 20)                  /* the guest splits copies into chunks of this */
#define VGPU_MAX_STRING 4096u                                    /* names, paths */
#define VGPU_MAX_MODULE_IMAGE ((uint32_t)(64u << 20))            /* a module image */
#define VGPU_MAX_KERNEL_PARAMS 4096u                             /* parameter count */
#define VGPU_MAX_PARAM_BYTES 32764u                              /* CUDA's parameter space */

/* Frame header flags. */
#define VGPU_FRAME_NOREPLY 0x1u /* request: asynchronous, the server sends no reply */
#define VGPU_FRAME_REPLY 0x2u   /* server -> guest: the answer to request `seq` */

struct vgpu_frame_hdr {
    uint32_t length; /* bytes of body following the 16-byte header */
    uint16_t op;     /* wire operation (gen/ops.h); 0 in replies */
    uint16_t flags;  /* VGPU_FRAME_* */
    uint64_t seq;    /* request id, echoed in the reply */
};
#define VGPU_FRAME_HDR_SIZE 16u

void vgpu_frame_hdr_encode(const struct vgpu_frame_hdr *h, uint8_t out[VGPU_FRAME_HDR_SIZE]);
void vgpu_frame_hdr_decode(const uint8_t in[VGPU_FRAME_HDR_SIZE], struct vgpu_frame_hdr *h);

struct wire_buf {
    uint8_t *data;
    size_t len, cap;
    bool oom; /* an allocation failed: the buffer is unusable */
};

void wire_buf_init(struct wire_buf *b);
void wire_buf_free(struct wire_buf *b);
void wire_buf_reset(struct wire_buf *b);
/* Reserve n bytes at the end and return them (NULL on failure). */
void *wire_put_space(struct wire_buf *b, size_t n);
void wire_put_raw(struct wire_buf *b, const void *p, size_t n);
void wire_put_u8(struct wire_buf *b, uint8_t v);
void wire_put_u16(struct wire_buf *b, uint16_t v);
void wire_put_u32(struct wire_buf *b, uint32_t v);
void wire_put_u64(struct wire_buf *b, uint64_t v);
static inline void wire_put_i32(struct wire_buf *b, int32_t v) { wire_put_u32(b, (uint32_t)v); }
static inline void wire_put_i64(struct wire_buf *b, int64_t v) { wire_put_u64(b, (uint64_t)v); }
void wire_put_f32(struct wire_buf *b, float v);
/* u32 length + bytes */
void wire_put_bytes(struct wire_buf *b, const void *p, size_t n);
/* u32 length (without NUL) + bytes; NULL encodes as length 0xffffffff */
void wire_put_str(struct wire_buf *b, const char *s);

struct wire_rd {
    const uint8_t *p;
    size_t left;
    bool bad;
};

static inline void wire_rd_init(struct wire_rd *r, const void *p, size_t n)
{
    r->p = (const uint8_t *)p;
    r->left = n;
    r->bad = false;
}
const void *wire_get_raw(struct wire_rd *r, size_t n);
uint8_t wire_get_u8(struct wire_rd *r);
uint16_t wire_get_u16(struct wire_rd *r);
uint32_t wire_get_u32(struct wire_rd *r);
uint64_t wire_get_u64(struct wire_rd *r);
static inline int32_t wire_get_i32(struct wire_rd *r) { return (int32_t)wire_get_u32(r); }
static inline int64_t wire_get_i64(struct wire_rd *r) { return (int64_t)wire_get_u64(r); }
float wire_get_f32(struct wire_rd *r);
/* Length-prefixed bytes of at most max bytes; returns a view into the frame. */
const void *wire_get_bytes(struct wire_rd *r, size_t max, size_t *len);
/* Length-prefixed string of at most max bytes copied into out (NUL-terminated,
 * out_size > max). Embedded NULs are malformed. Returns out, or NULL for a NULL string. */
const char *wire_get_str(struct wire_rd *r, char *out, size_t out_size);
/* True when the body was well formed and fully consumed. */
static inline bool wire_rd_end(const struct wire_rd *r) { return !r->bad && r->left == 0; }

#endif

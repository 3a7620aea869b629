/* Shared between the module-image parser's files (fatbin.c, fatbin_elf.c, fatbin_ptx.c, fatbin_lz4.c,
 * fatbin_zstd.c): little-endian readers, error reporting, result building, the decoders. Not public. */
#ifndef VGPU_COMMON_FATBIN_INTERNAL_H
#define VGPU_COMMON_FATBIN_INTERNAL_H

#include "common/fatbin.h"

#include <stdarg.h>
#include <string.h>

/* Unaligned little-endian loads: fatbin entries and ELF tables sit at arbitrary offsets. */
static inline uint16_t vgpu_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (uint16_t)p[1] << 8); }
static inline uint32_t vgpu_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t vgpu_rd64(const uint8_t *p) { return (uint64_t)vgpu_rd32(p) | (uint64_t)vgpu_rd32(p + 4) << 32; }

/* True when [off, off+len) lies inside a buffer of n bytes, without overflowing. */
static inline bool vgpu_in_bounds(uint64_t off, uint64_t len, size_t n)
{
    return off <= n && len <= n - off;
}

/* Formats into err (when err and errlen are set); always returns -1 so callers can `return vgpu_fb_err(...)`. */
int vgpu_fb_err(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* NUL-terminated copy of the first len bytes of s; NULL on allocation failure. */
char *vgpu_fb_strndup(const char *s, size_t len);

/* Append a zeroed entry to out->kernels / out->globals; NULL on allocation failure. */
struct vgpu_kernel_info *vgpu_fb_add_kernel(struct vgpu_module_info *out);
struct vgpu_global_info *vgpu_fb_add_global(struct vgpu_module_info *out);

/* Registers-limited threads per block for a kernel using num_regs registers, capped by bound (a launch
 * bound, 0 = none) and 1024. */
uint32_t vgpu_fb_max_threads(uint32_t num_regs, uint64_t bound);

/* Cubin and PTX parsers: append to out (which the caller zeroed and frees on failure). */
int vgpu_elf_parse(const uint8_t *p, size_t n, struct vgpu_module_info *out, char *err, size_t errlen);
int vgpu_ptx_parse(const char *p, size_t n, struct vgpu_module_info *out, char *err, size_t errlen);
/* Extent of an ELF64 little-endian image: the furthest byte named by its header, section header table,
 * program header table, sections and segments. Reads only inside [0, avail) (SIZE_MAX in the guest, where
 * nothing better is known) and the tables the header names. 0 on success, -1 if malformed or too large. */
int vgpu_elf_extent(const uint8_t *p, size_t avail, size_t *size_out);
/* ELF cubin's target arch from its header (e_flags), 0 if unknown; n >= 64 required. */
uint32_t vgpu_elf_sm(const uint8_t *p, size_t n);

/* LZ4 block (no frame) decoder: 0 and *outlen on success, -1 on any malformed input or overflow of dst. */
int vgpu_lz4_decode(const uint8_t *src, size_t srclen, uint8_t *dst, size_t dstcap, size_t *outlen);

/* zstd frame decoder through libzstd.so.1 loaded at run time: 0 and *outlen on success, -1 with a message. */
int vgpu_zstd_decode(const uint8_t *src, size_t srclen, uint8_t *dst, size_t dstcap, size_t *outlen, char *err,
                     size_t errlen);
/* Tests: load `soname` instead of libzstd.so.1 from now on (NULL restores it); forgets a loaded library. */
void vgpu_zstd_set_library(const char *soname);

#endif

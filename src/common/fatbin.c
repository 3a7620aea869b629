/* Module images: recognising them, measuring them (guest side, on application memory), walking fatbin
 * containers and choosing an entry, decompressing it, and the vgpu_module_info result shared by the ELF
 * and PTX parsers (fatbin_elf.c, fatbin_ptx.c). */
#include "common/fatbin_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* Mirrors __fatBinC_Wrapper_t (fatbinary_section.h) so the data pointer is found at the right offset on
 * every ABI. */
struct vgpu_fatbin_wrapper {
    int magic;
    int version; /* 1: filename_or_fatbins is a file name; 2 (-rdc): prelinked fatbins. data is the fatbin in both */
    const unsigned long long *data;
    void *filename_or_fatbins;
};

static const uint8_t k_wrapper_magic[4] = {0xB1, 0x43, 0x62, 0x46};
static const uint8_t k_fatbin_magic[4] = {0x50, 0xED, 0x55, 0xBA};
static const uint8_t k_elf_magic[4] = {0x7F, 'E', 'L', 'F'};

/* Byte-at-a-time prefix test: stops at the first mismatch, so a NUL-terminated string shorter than the
 * magic is never read past its terminator. */
static bool has_magic(const uint8_t *p, const uint8_t m[4])
{
    for (int i = 0; i < 4; i++)
        if (p[i] != m[i])
            return false;
    return true;
}

static bool is_blank(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

enum vgpu_image_kind vgpu_image_kind(const void *image)
{
    const uint8_t *p = image;
    if (!p)
        return VGPU_IMAGE_UNKNOWN;
    if (has_magic(p, k_wrapper_magic))
        return VGPU_IMAGE_WRAPPER;
    if (has_magic(p, k_fatbin_magic))
        return VGPU_IMAGE_FATBIN;
    if (has_magic(p, k_elf_magic))
        return VGPU_IMAGE_ELF;
    while (is_blank(*p))
        p++;
    if (*p == '.' || *p == '/')
        return VGPU_IMAGE_PTX;
    return VGPU_IMAGE_UNKNOWN;
}

const void *vgpu_image_unwrap(const void *image)
{
    if (!image || !has_magic(image, k_wrapper_magic))
        return image;
    struct vgpu_fatbin_wrapper w;
    memcpy(&w, image, sizeof w);
    return w.data;
}

/* Size from a fatbin header: header size + payload size. avail bounds what may be read (SIZE_MAX in the
 * guest, where nothing better is known). */
static int fatbin_size(const uint8_t *p, size_t avail, size_t *size_out)
{
    if (avail < 16 || !has_magic(p, k_fatbin_magic))
        return -1;
    uint64_t hs = vgpu_rd16(p + 6), payload = vgpu_rd64(p + 8);
    if (hs < 16 || payload > VGPU_IMAGE_MAX_BYTES || hs + payload > VGPU_IMAGE_MAX_BYTES)
        return -1;
    *size_out = (size_t)(hs + payload);
    return 0;
}

#define ELF_EHDR_SIZE 64u
#define ELF_SHDR_SIZE 64u
#define ELF_PHDR_SIZE 56u
#define ELF_SHT_NOBITS 8u

int vgpu_elf_extent(const uint8_t *p, size_t avail, size_t *size_out)
{
    if (avail < ELF_EHDR_SIZE || !has_magic(p, k_elf_magic) || p[4] != 2 /* ELFCLASS64 */ ||
        p[5] != 1 /* little endian */)
        return -1;
    const uint64_t max = VGPU_IMAGE_MAX_BYTES;
    uint64_t phoff = vgpu_rd64(p + 0x20), shoff = vgpu_rd64(p + 0x28);
    uint32_t phentsize = vgpu_rd16(p + 0x36), phnum = vgpu_rd16(p + 0x38);
    uint32_t shentsize = vgpu_rd16(p + 0x3A), shnum = vgpu_rd16(p + 0x3C);
    uint64_t end = ELF_EHDR_SIZE;

    if (shoff) {
        if (shentsize < ELF_SHDR_SIZE || shoff > max || !vgpu_in_bounds(shoff, shentsize, avail))
            return -1;
        /* Extended numbering: counts that do not fit the header live in section header 0. */
        if (shnum == 0)
            shnum = (uint32_t)(vgpu_rd64(p + shoff + 0x20) > max ? max : vgpu_rd64(p + shoff + 0x20));
        if (phnum == 0xFFFF)
            phnum = vgpu_rd32(p + shoff + 0x2C);
        uint64_t tab = (uint64_t)shnum * shentsize;
        if (tab > max || shoff + tab > max || !vgpu_in_bounds(shoff, tab, avail))
            return -1;
        if (shoff + tab > end)
            end = shoff + tab;
        for (uint32_t i = 0; i < shnum; i++) {
            const uint8_t *sh = p + shoff + (uint64_t)i * shentsize;
            if (vgpu_rd32(sh + 4) == ELF_SHT_NOBITS)
                continue;
            uint64_t off = vgpu_rd64(sh + 0x18), sz = vgpu_rd64(sh + 0x20);
            if (off > max || sz > max || off + sz > max)
                return -1;
            if (off + sz > end)
                end = off + sz;
        }
    } else if (shnum != 0) {
        return -1;
    }
    if (phoff && phnum) {
        uint64_t tab = (uint64_t)phnum * phentsize;
        if (phentsize < ELF_PHDR_SIZE || phoff > max || tab > max || phoff + tab > max ||
            !vgpu_in_bounds(phoff, tab, avail))
            return -1;
        if (phoff + tab > end)
            end = phoff + tab;
        for (uint32_t i = 0; i < phnum; i++) {
            const uint8_t *ph = p + phoff + (uint64_t)i * phentsize;
            uint64_t off = vgpu_rd64(ph + 0x08), sz = vgpu_rd64(ph + 0x20);
            if (off > max || sz > max || off + sz > max)
                return -1;
            if (off + sz > end)
                end = off + sz;
        }
    }
    *size_out = (size_t)end;
    return 0;
}

int vgpu_image_size(const void *image, size_t *size_out)
{
    if (!image || !size_out)
        return -1;
    switch (vgpu_image_kind(image)) {
    case VGPU_IMAGE_WRAPPER: {
        const uint8_t *fb = vgpu_image_unwrap(image);
        if (!fb || vgpu_image_kind(fb) != VGPU_IMAGE_FATBIN)
            return -1;
        return fatbin_size(fb, SIZE_MAX, size_out);
    }
    case VGPU_IMAGE_FATBIN:
        return fatbin_size(image, SIZE_MAX, size_out);
    case VGPU_IMAGE_ELF:
        return vgpu_elf_extent(image, SIZE_MAX, size_out);
    case VGPU_IMAGE_PTX: {
        const char *s = image;
        size_t n = 0;
        while (s[n] != '\0') {
            if (++n >= VGPU_IMAGE_MAX_BYTES)
                return -1;
        }
        *size_out = n + 1;
        return 0;
    }
    default:
        return -1;
    }
}

/* A fatbin whose header and entries lie within its n bytes, each uncompressed ELF entry also within its
 * entry: what the driver will read of it. */
static bool fatbin_consistent(const uint8_t *p, size_t n)
{
    size_t total, elf;
    if (fatbin_size(p, n, &total) != 0 || total > n)
        return false;
    size_t off = vgpu_rd16(p + 6);
    while (total - off >= 64) {
        const uint8_t *h = p + off;
        uint64_t ehs = vgpu_rd32(h + 4), sz = vgpu_rd64(h + 8);
        if (ehs < 64 || ehs > total - off || sz > total - off - ehs)
            return false;
        if (vgpu_rd16(h) == VGPU_FATBIN_KIND_ELF &&
            !(vgpu_rd64(h + 40) & (VGPU_FATBIN_FLAG_LZ4 | VGPU_FATBIN_FLAG_ZSTD)) &&
            (vgpu_elf_extent(h + ehs, (size_t)sz, &elf) != 0 || elf > sz))
            return false;
        off += (size_t)(ehs + sz);
    }
    return true;
}

int vgpu_image_size_bounded(const void *image, size_t len, size_t *size_out)
{
    const uint8_t *p = image;
    size_t size;
    if (!p || !size_out || len < 4)
        return -1;
    if (has_magic(p, k_fatbin_magic)) {
        if (!fatbin_consistent(p, len) || fatbin_size(p, len, &size) != 0)
            return -1;
    } else if (has_magic(p, k_elf_magic)) {
        if (vgpu_elf_extent(p, len, &size) != 0 || size > len)
            return -1;
    } else if (has_magic(p, k_wrapper_magic)) {
        return -1;
    } else {
        size_t i = 0;
        while (i < len && is_blank(p[i]))
            i++;
        if (i == len || (p[i] != '.' && p[i] != '/'))
            return -1;
        const uint8_t *nul = memchr(p, '\0', len);
        size = nul ? (size_t)(nul - p) + 1 : len + 1;
    }
    *size_out = size;
    return 0;
}

/* ---- helpers shared with the ELF and PTX parsers ---- */

int vgpu_fb_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

char *vgpu_fb_strndup(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

/* Grow an array of elem-sized items whose capacity is implied by its count: 4, then the next power of two.
 * Counts are bounded by the input size, so the multiplication cannot overflow. */
static void *grow(void *arr, uint32_t count, size_t elem)
{
    if (count != 0 && (count < 4 || (count & (count - 1)) != 0))
        return arr; /* still room */
    size_t cap = count ? (size_t)count * 2 : 4;
    return realloc(arr, cap * elem);
}

struct vgpu_kernel_info *vgpu_fb_add_kernel(struct vgpu_module_info *out)
{
    if (out->num_kernels >= UINT32_MAX / 2)
        return NULL;
    struct vgpu_kernel_info *k = grow(out->kernels, out->num_kernels, sizeof *k);
    if (!k)
        return NULL;
    out->kernels = k;
    k = &out->kernels[out->num_kernels++];
    memset(k, 0, sizeof *k);
    return k;
}

struct vgpu_global_info *vgpu_fb_add_global(struct vgpu_module_info *out)
{
    if (out->num_globals >= UINT32_MAX / 2)
        return NULL;
    struct vgpu_global_info *g = grow(out->globals, out->num_globals, sizeof *g);
    if (!g)
        return NULL;
    out->globals = g;
    g = &out->globals[out->num_globals++];
    memset(g, 0, sizeof *g);
    return g;
}

uint32_t vgpu_fb_max_threads(uint32_t num_regs, uint64_t bound)
{
    uint64_t t = 1024;
    if (bound && bound < t)
        t = bound;
    /* Registers are allocated per warp in units of 256, and a block's warps are spread evenly over the
     * SM's 4 partitions of 16K registers each (measured on H100: 102 registers -> 512 threads). */
    if (num_regs > 0 && num_regs <= 255) {
        uint32_t per_warp = (num_regs * 32 + 255) / 256 * 256;
        uint64_t threads = (uint64_t)(16384 / per_warp) * 4 * 32;
        if (threads < t)
            t = threads;
    }
    return (uint32_t)t;
}

/* ---- fatbin containers ---- */

#define FATBIN_ENTRY_MIN 64u

struct fatbin_entry {
    uint32_t kind, arch;
    uint64_t flags, uncompressed;
    uint32_t compressed;
    const uint8_t *data;
    size_t len;
};

/* Whether a real device of want_sm could run an entry: SASS runs on the same major version with an
 * equal or newer minor (sm_86 on sm_89, not on sm_90; measured: the driver answers
 * CUDA_ERROR_NO_BINARY_FOR_GPU otherwise), PTX is JIT-compiled for any newer arch. */
static bool runs_on(uint32_t kind, uint32_t arch, uint32_t want_sm)
{
    if (want_sm == 0)
        return true;
    if (kind == VGPU_FATBIN_KIND_ELF)
        return arch / 10 == want_sm / 10 && arch <= want_sm;
    return kind == VGPU_FATBIN_KIND_PTX && arch <= want_sm;
}

/* Pick the entry to use: the best ELF for want_sm, else the best PTX (see vgpu_module_parse). */
static const struct fatbin_entry *choose_entry(const struct fatbin_entry *e, size_t n, uint32_t want_sm)
{
    uint32_t limit = want_sm ? want_sm : UINT32_MAX;
    const struct fatbin_entry *elf = NULL, *ptx_fit = NULL, *ptx_any = NULL;
    for (size_t i = 0; i < n; i++) {
        if (e[i].kind == VGPU_FATBIN_KIND_ELF && e[i].arch <= limit && (!elf || e[i].arch > elf->arch))
            elf = &e[i];
        if (e[i].kind == VGPU_FATBIN_KIND_PTX) {
            if (e[i].arch <= limit && (!ptx_fit || e[i].arch > ptx_fit->arch))
                ptx_fit = &e[i];
            if (!ptx_any || e[i].arch > ptx_any->arch)
                ptx_any = &e[i];
        }
    }
    return elf ? elf : ptx_fit ? ptx_fit : ptx_any;
}

/* Decompress an entry into a new buffer (*buf, *len), or point at it in place when it is stored plain. */
static int entry_payload(const struct fatbin_entry *e, uint8_t **buf, const uint8_t **data, size_t *len, char *err,
                         size_t errlen)
{
    uint64_t how = e->flags & (VGPU_FATBIN_FLAG_LZ4 | VGPU_FATBIN_FLAG_ZSTD);
    *buf = NULL;
    if (!how) {
        *data = e->data;
        *len = e->len;
        return 0;
    }
    if (how == (VGPU_FATBIN_FLAG_LZ4 | VGPU_FATBIN_FLAG_ZSTD))
        return vgpu_fb_err(err, errlen, "fatbin entry flags 0x%llx claim both LZ4 and zstd",
                           (unsigned long long)e->flags);
    if (e->compressed == 0 || e->compressed > e->len)
        return vgpu_fb_err(err, errlen, "fatbin entry compressed size %u outside its %zu-byte payload",
                           e->compressed, e->len);
    if (e->uncompressed == 0 || e->uncompressed > VGPU_IMAGE_MAX_DECOMPRESSED)
        return vgpu_fb_err(err, errlen, "fatbin entry uncompressed size %llu out of range",
                           (unsigned long long)e->uncompressed);
    /* An LZ4 byte expands to at most 255 bytes: a larger claim is a lie, refuse before allocating. */
    if (how == VGPU_FATBIN_FLAG_LZ4 && e->uncompressed > (uint64_t)e->compressed * 255 + 16)
        return vgpu_fb_err(err, errlen, "fatbin entry uncompressed size %llu impossible for %u LZ4 bytes",
                           (unsigned long long)e->uncompressed, e->compressed);
    size_t cap = (size_t)e->uncompressed, got = 0;
    uint8_t *out = malloc(cap);
    if (!out)
        return vgpu_fb_err(err, errlen, "out of memory decompressing %zu bytes", cap);
    int rc;
    if (how == VGPU_FATBIN_FLAG_LZ4) {
        rc = vgpu_lz4_decode(e->data, e->compressed, out, cap, &got);
        if (rc != 0)
            vgpu_fb_err(err, errlen, "corrupt LZ4 data in fatbin entry");
    } else {
        rc = vgpu_zstd_decode(e->data, e->compressed, out, cap, &got, err, errlen);
    }
    if (rc == 0 && got != cap)
        rc = vgpu_fb_err(err, errlen, "fatbin entry decompressed to %zu bytes, header says %zu", got, cap);
    if (rc != 0) {
        free(out);
        return -1;
    }
    *buf = out;
    *data = out;
    *len = cap;
    return 0;
}

/* Walk a fatbin container of n bytes: *out is a new array of its *count entries (free() it). 0, or -1. */
static int fatbin_walk(const uint8_t *p, size_t n, struct fatbin_entry **out, size_t *count_out, char *err,
                       size_t errlen)
{
    size_t total;
    if (n < 16 || fatbin_size(p, n, &total) != 0)
        return vgpu_fb_err(err, errlen, "bad fatbin header");
    if (total > n)
        return vgpu_fb_err(err, errlen, "fatbin header claims %zu bytes, %zu given", total, n);
    size_t off = vgpu_rd16(p + 6), end = total;
    size_t cap = (end - off) / FATBIN_ENTRY_MIN, count = 0;
    struct fatbin_entry *entries = calloc(cap ? cap : 1, sizeof *entries);
    if (!entries)
        return vgpu_fb_err(err, errlen, "out of memory");
    int rc = 0;
    while (end - off >= FATBIN_ENTRY_MIN) {
        const uint8_t *h = p + off;
        uint32_t ehs = vgpu_rd32(h + 4);
        uint64_t sz = vgpu_rd64(h + 8);
        if (ehs < FATBIN_ENTRY_MIN || ehs > end - off || sz > end - off - ehs) {
            rc = vgpu_fb_err(err, errlen, "fatbin entry at offset %zu overruns the container", off);
            break;
        }
        struct fatbin_entry *e = &entries[count++];
        e->kind = vgpu_rd16(h);
        e->compressed = vgpu_rd32(h + 16);
        e->arch = vgpu_rd32(h + 28);
        e->flags = vgpu_rd64(h + 40);
        e->uncompressed = vgpu_rd64(h + 56);
        e->data = h + ehs;
        e->len = (size_t)sz;
        off += ehs + (size_t)sz;
    }
    for (; rc == 0 && off < end; off++)
        if (p[off] != 0)
            rc = vgpu_fb_err(err, errlen, "fatbin has %zu stray bytes after its last entry", end - off);
    if (rc != 0) {
        free(entries);
        return -1;
    }
    *out = entries;
    *count_out = count;
    return 0;
}

static bool fatbin_is_linked(const uint8_t *p, size_t n)
{
    return n >= 16 && has_magic(p, k_fatbin_magic) && vgpu_rd16(p + 4) == VGPU_FATBIN_VERSION_LINKED;
}

/* Walk a fatbin container of n bytes and choose an entry for want_sm: 0 with *chosen set, or -1. */
static int fatbin_choose(const uint8_t *p, size_t n, uint32_t want_sm, struct fatbin_entry *chosen,
                         bool *loadable, char *err, size_t errlen)
{
    *loadable = false;
    struct fatbin_entry *entries;
    size_t count;
    if (fatbin_walk(p, n, &entries, &count, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < count; i++)
        *loadable = *loadable || runs_on(entries[i].kind, entries[i].arch, want_sm);
    const struct fatbin_entry *e = choose_entry(entries, count, want_sm);
    int rc = 0;
    if (!e)
        rc = vgpu_fb_err(err, errlen, "fatbin has no ELF for sm_%u or below and no PTX", want_sm);
    else
        *chosen = *e;
    free(entries);
    return rc;
}

int vgpu_fatbin_select(const void *fatbin, size_t size, uint32_t want_sm, uint8_t **out, size_t *outlen,
                       uint32_t *kind, uint32_t *arch, char *err, size_t errlen)
{
    struct fatbin_entry e;
    uint8_t *buf;
    const uint8_t *data = NULL;
    size_t len = 0;
    bool loadable;
    if (err && errlen)
        err[0] = '\0';
    if (!fatbin || !out || !outlen)
        return vgpu_fb_err(err, errlen, "no fatbin");
    if (fatbin_choose(fatbin, size, want_sm, &e, &loadable, err, errlen) != 0 ||
        entry_payload(&e, &buf, &data, &len, err, errlen) != 0)
        return -1;
    if (!buf) {
        if (!(buf = malloc(len ? len : 1)))
            return vgpu_fb_err(err, errlen, "out of memory");
        memcpy(buf, data, len);
    }
    *out = buf;
    *outlen = len;
    if (kind)
        *kind = e.kind;
    if (arch)
        *arch = e.arch;
    return 0;
}

/* Parse one plain ELF or PTX piece into out (zeroed by the caller). */
static int parse_piece(uint32_t kind, const uint8_t *data, size_t len, struct vgpu_module_info *out, char *err,
                       size_t errlen)
{
    if (kind == VGPU_FATBIN_KIND_ELF)
        return vgpu_elf_parse(data, len, out, err, errlen);
    if (kind == VGPU_FATBIN_KIND_PTX) {
        out->from_ptx = true;
        return vgpu_ptx_parse((const char *)data, len, out, err, errlen);
    }
    return vgpu_fb_err(err, errlen, "fatbin entry of kind %u is neither ELF nor PTX", kind);
}

/* Move the kernels and globals of one into out (one is emptied). */
static int merge_info(struct vgpu_module_info *out, struct vgpu_module_info *one, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < one->num_kernels; i++) {
        struct vgpu_kernel_info *k = vgpu_fb_add_kernel(out);
        if (!k)
            return vgpu_fb_err(err, errlen, "out of memory");
        *k = one->kernels[i];
        memset(&one->kernels[i], 0, sizeof one->kernels[i]);
    }
    for (uint32_t i = 0; i < one->num_globals; i++) {
        struct vgpu_global_info *g = vgpu_fb_add_global(out);
        if (!g)
            return vgpu_fb_err(err, errlen, "out of memory");
        *g = one->globals[i];
        memset(&one->globals[i], 0, sizeof one->globals[i]);
    }
    return 0;
}

/* A linked container: every entry, merged. */
static int parse_linked(const uint8_t *p, size_t n, uint32_t want_sm, struct vgpu_module_info *out, char *err,
                        size_t errlen)
{
    struct fatbin_entry *entries;
    size_t count;
    if (fatbin_walk(p, n, &entries, &count, err, errlen) != 0)
        return -1;
    int rc = count ? 0 : vgpu_fb_err(err, errlen, "linked container without entries");
    out->loadable = true;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        uint8_t *buf;
        const uint8_t *data = NULL;
        size_t len = 0;
        if (entry_payload(&entries[i], &buf, &data, &len, err, errlen) != 0) {
            rc = -1;
            break;
        }
        struct vgpu_module_info one;
        memset(&one, 0, sizeof one);
        rc = parse_piece(entries[i].kind, data, len, &one, err, errlen);
        free(buf);
        if (rc == 0 && entries[i].kind == VGPU_FATBIN_KIND_ELF) {
            out->loadable = out->loadable && runs_on(VGPU_FATBIN_KIND_ELF, entries[i].arch, want_sm);
            if (entries[i].arch > out->sm)
                out->sm = entries[i].arch;
        }
        if (rc == 0 && one.from_ptx)
            out->from_ptx = true;
        if (rc == 0)
            rc = merge_info(out, &one, err, errlen);
        vgpu_module_info_free(&one);
    }
    free(entries);
    return rc;
}

static int parse_fatbin(const uint8_t *p, size_t n, uint32_t want_sm, struct vgpu_module_info *out, char *err,
                        size_t errlen)
{
    if (fatbin_is_linked(p, n))
        return parse_linked(p, n, want_sm, out, err, errlen);
    struct fatbin_entry e;
    uint8_t *buf;
    const uint8_t *data = NULL;
    size_t len = 0;
    bool loadable;
    if (fatbin_choose(p, n, want_sm, &e, &loadable, err, errlen) != 0 ||
        entry_payload(&e, &buf, &data, &len, err, errlen) != 0)
        return -1;
    int rc = parse_piece(e.kind, data, len, out, err, errlen);
    out->sm = e.kind == VGPU_FATBIN_KIND_ELF ? e.arch : 0;
    out->loadable = loadable;
    free(buf);
    return rc;
}

int vgpu_image_inputs(const void *image, size_t size, uint32_t want_sm,
                      int (*fn)(const struct vgpu_image_input *in, void *arg), void *arg, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    const uint8_t *p = image;
    if (!p || size < 4 || size > VGPU_IMAGE_MAX_BYTES)
        return vgpu_fb_err(err, errlen, "empty or oversized image");
    if (has_magic(p, k_elf_magic)) {
        struct vgpu_image_input in = {VGPU_FATBIN_KIND_ELF, vgpu_elf_sm(p, size), p, size};
        return fn(&in, arg) ? -1 : 0;
    }
    if (has_magic(p, k_wrapper_magic))
        return vgpu_fb_err(err, errlen, "fatbin wrapper: send the fatbin it points to");
    if (!has_magic(p, k_fatbin_magic)) {
        size_t i = 0;
        while (i < size && is_blank(p[i]))
            i++;
        if (i == size || (p[i] != '.' && p[i] != '/'))
            return vgpu_fb_err(err, errlen, "unknown module image format");
        struct vgpu_image_input in = {VGPU_FATBIN_KIND_PTX, 0, p, size};
        return fn(&in, arg) ? -1 : 0;
    }
    struct fatbin_entry *entries = NULL, chosen;
    size_t count = 0;
    bool loadable;
    if (fatbin_is_linked(p, size)) {
        if (fatbin_walk(p, size, &entries, &count, err, errlen) != 0)
            return -1;
    } else {
        if (fatbin_choose(p, size, want_sm, &chosen, &loadable, err, errlen) != 0)
            return -1;
        entries = &chosen;
        count = 1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        const struct fatbin_entry *e = &entries[i];
        if (e->kind != VGPU_FATBIN_KIND_ELF && e->kind != VGPU_FATBIN_KIND_PTX) {
            rc = vgpu_fb_err(err, errlen, "fatbin entry of kind %u is neither ELF nor PTX", e->kind);
            break;
        }
        uint8_t *buf;
        const uint8_t *data = NULL;
        size_t len = 0;
        if (entry_payload(e, &buf, &data, &len, err, errlen) != 0) {
            rc = -1;
            break;
        }
        struct vgpu_image_input in = {e->kind, e->kind == VGPU_FATBIN_KIND_ELF ? e->arch : 0, data, len};
        rc = fn(&in, arg) ? -1 : 0;
        free(buf);
    }
    if (entries != &chosen)
        free(entries);
    return rc;
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
    wr16(p, (uint16_t)v);
    wr16(p + 2, (uint16_t)(v >> 16));
}

static void wr64(uint8_t *p, uint64_t v)
{
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

int vgpu_fatbin_write_linked(const struct vgpu_image_input *in, size_t n, uint8_t **out, size_t *outlen)
{
    size_t total = 16;
    for (size_t i = 0; i < n; i++) {
        if (in[i].len > VGPU_IMAGE_MAX_BYTES || total + FATBIN_ENTRY_MIN + in[i].len > VGPU_IMAGE_MAX_BYTES)
            return -1;
        total += FATBIN_ENTRY_MIN + in[i].len;
    }
    uint8_t *buf = calloc(1, total), *q = buf;
    if (!buf)
        return -1;
    memcpy(q, k_fatbin_magic, 4);
    wr16(q + 4, VGPU_FATBIN_VERSION_LINKED);
    wr16(q + 6, 16);
    wr64(q + 8, total - 16);
    q += 16;
    for (size_t i = 0; i < n; i++) {
        wr16(q, (uint16_t)in[i].kind);
        wr16(q + 2, 0x0101); /* entry version, as nvcc writes it */
        wr32(q + 4, FATBIN_ENTRY_MIN);
        wr64(q + 8, in[i].len);
        wr32(q + 28, in[i].arch);
        if (in[i].len)
            memcpy(q + FATBIN_ENTRY_MIN, in[i].data, in[i].len);
        q += FATBIN_ENTRY_MIN + in[i].len;
    }
    *out = buf;
    *outlen = total;
    return 0;
}

static int cmp_kernel(const void *a, const void *b)
{
    return strcmp(((const struct vgpu_kernel_info *)a)->name, ((const struct vgpu_kernel_info *)b)->name);
}

static int cmp_global(const void *a, const void *b)
{
    return strcmp(((const struct vgpu_global_info *)a)->name, ((const struct vgpu_global_info *)b)->name);
}

int vgpu_module_parse(const void *image, size_t size, uint32_t want_sm, struct vgpu_module_info *out, char *err,
                      size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out)
        return vgpu_fb_err(err, errlen, "no output");
    memset(out, 0, sizeof *out);
    if (!image || size == 0)
        return vgpu_fb_err(err, errlen, "empty image");
    if (size > VGPU_IMAGE_MAX_BYTES)
        return vgpu_fb_err(err, errlen, "image of %zu bytes is too large", size);
    const uint8_t *p = image;
    int rc;
    if (size >= 4 && has_magic(p, k_wrapper_magic)) {
        rc = vgpu_fb_err(err, errlen, "fatbin wrapper: send the fatbin it points to");
    } else if (size >= 4 && has_magic(p, k_fatbin_magic)) {
        rc = parse_fatbin(p, size, want_sm, out, err, errlen);
    } else if (size >= 4 && has_magic(p, k_elf_magic)) {
        rc = vgpu_elf_parse(p, size, out, err, errlen);
        if (rc == 0) {
            out->sm = vgpu_elf_sm(p, size);
            out->loadable = runs_on(VGPU_FATBIN_KIND_ELF, out->sm, want_sm);
        }
    } else {
        size_t i = 0;
        while (i < size && is_blank(p[i]))
            i++;
        if (i < size && (p[i] == '.' || p[i] == '/')) {
            rc = vgpu_ptx_parse(image, size, out, err, errlen);
            out->from_ptx = true;
            out->loadable = true; /* the JIT decides; we do not read .target */
        } else {
            rc = vgpu_fb_err(err, errlen, "unknown module image format");
        }
    }
    if (rc != 0) {
        vgpu_module_info_free(out);
        return -1;
    }
    if (out->num_kernels > 1)
        qsort(out->kernels, out->num_kernels, sizeof *out->kernels, cmp_kernel);
    if (out->num_globals > 1)
        qsort(out->globals, out->num_globals, sizeof *out->globals, cmp_global);
    if (fatbin_is_linked(p, size)) { /* the inputs of a link may not define a symbol twice */
        const char *dup = NULL;
        for (uint32_t i = 1; !dup && i < out->num_kernels; i++)
            if (strcmp(out->kernels[i - 1].name, out->kernels[i].name) == 0)
                dup = out->kernels[i].name;
        for (uint32_t i = 1; !dup && i < out->num_globals; i++)
            if (strcmp(out->globals[i - 1].name, out->globals[i].name) == 0)
                dup = out->globals[i].name;
        if (dup) {
            vgpu_fb_err(err, errlen, "'%s' is defined by two inputs of the link", dup);
            vgpu_module_info_free(out);
            return -1;
        }
    }
    return 0;
}

void vgpu_module_info_free(struct vgpu_module_info *info)
{
    if (!info)
        return;
    for (uint32_t i = 0; i < info->num_kernels; i++) {
        free(info->kernels[i].name);
        free(info->kernels[i].params);
    }
    for (uint32_t i = 0; i < info->num_globals; i++) {
        free(info->globals[i].name);
        free(info->globals[i].init);
    }
    free(info->kernels);
    free(info->globals);
    memset(info, 0, sizeof *info);
}

const struct vgpu_kernel_info *vgpu_module_find_kernel(const struct vgpu_module_info *m, const char *name)
{
    if (!m || !name || !m->num_kernels)
        return NULL;
    struct vgpu_kernel_info key = {.name = (char *)name};
    return bsearch(&key, m->kernels, m->num_kernels, sizeof key, cmp_kernel);
}

const struct vgpu_global_info *vgpu_module_find_global(const struct vgpu_module_info *m, const char *name)
{
    if (!m || !name || !m->num_globals)
        return NULL;
    struct vgpu_global_info key = {.name = (char *)name};
    return bsearch(&key, m->globals, m->num_globals, sizeof key, cmp_global);
}

/* ELF cubin parser: kernels (STT_FUNC symbols with a .text.<name> and a .nv.info.<name> section), their
 * parameter layouts and resource use from the .nv.info attributes, and __device__/__constant__ globals.
 * The input may be hostile: every table, string and record is bounds-checked before use. */
#include "common/fatbin_internal.h"

#include <stdlib.h>

#define SHT_SYMTAB 2u
#define SHT_NOBITS 8u
#define SHN_LORESERVE 0xFF00u
#define SHN_XINDEX 0xFFFFu
#define STT_OBJECT 1u
#define STT_FUNC 2u
#define SYM_SIZE 24u
#define ET_REL 1u
#define STO_CUDA_ENTRY 0x10u /* st_other of a kernel's symbol */

/* .nv.info attribute formats and the attributes we read. Each record is u8 format, u8 attribute, u16;
 * for EIFMT_SVAL the u16 is the length of the value that follows, otherwise it is the value itself. */
#define EIFMT_NVAL 0x01
#define EIFMT_BVAL 0x02
#define EIFMT_HVAL 0x03
#define EIFMT_SVAL 0x04
#define EIATTR_MAX_THREADS 0x05 /* u32 x, y, z: __launch_bounds__ / .maxntid */
#define EIATTR_REQNTID 0x10     /* u32 x, y, z: .reqntid */
#define EIATTR_FRAME_SIZE 0x11  /* u32 symbol, u32 bytes of local memory */
#define EIATTR_KPARAM_INFO 0x17 /* u32 index, u16 ordinal, u16 offset, u32 flags (size in bits 18..31) */
#define EIATTR_REGCOUNT 0x2F    /* u32 symbol, u32 registers */

struct sec {
    const char *name;
    uint32_t type;
    uint64_t off, size;
    uint32_t link;
};

struct named {
    const char *name;
    uint32_t idx;
};

struct elf {
    const uint8_t *p;
    size_t n;
    struct sec *sec;
    uint32_t nsec;
    struct named *sorted; /* sections by name, for lookups like ".nv.info.<kernel>" */
    const uint8_t *syms;
    uint32_t nsyms;
    const char *strtab;
    size_t strtab_size;
};

uint32_t vgpu_elf_sm(const uint8_t *p, size_t n)
{
    if (n < 64)
        return 0;
    uint32_t flags = vgpu_rd32(p + 0x30);
    /* ABI version 8 (CUDA 13) moved the SM number from bits 0-7 to bits 8-15 of e_flags. */
    return p[8] >= 8 ? (flags >> 8) & 0xFF : flags & 0xFF;
}

/* A NUL-terminated string at off inside [base, base+size), or NULL. */
static const char *str_at(const char *base, size_t size, uint64_t off)
{
    if (off >= size)
        return NULL;
    return memchr(base + off, '\0', size - off) ? base + off : NULL;
}

/* strcmp(prefix + name, s) without building the concatenation. */
static int cmp_prefixed(const char *prefix, const char *name, const char *s)
{
    for (; *prefix; prefix++, s++)
        if (*prefix != *s)
            return (unsigned char)*prefix - (unsigned char)*s;
    return strcmp(name, s);
}

static int cmp_named(const void *a, const void *b)
{
    return strcmp(((const struct named *)a)->name, ((const struct named *)b)->name);
}

/* Section called prefix+name, or NULL. */
static const struct sec *find_sec(const struct elf *e, const char *prefix, const char *name)
{
    size_t lo = 0, hi = e->nsec;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_prefixed(prefix, name, e->sorted[mid].name);
        if (c == 0)
            return &e->sec[e->sorted[mid].idx];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static int load_sections(struct elf *e, char *err, size_t errlen)
{
    const uint8_t *p = e->p;
    size_t n = e->n;
    if (n < 64 || p[4] != 2 || p[5] != 1)
        return vgpu_fb_err(err, errlen, "not a 64-bit little-endian ELF");
    uint64_t shoff = vgpu_rd64(p + 0x28);
    uint32_t shentsize = vgpu_rd16(p + 0x3A), shnum = vgpu_rd16(p + 0x3C), shstrndx = vgpu_rd16(p + 0x3E);
    if (shoff == 0 || shentsize < 64 || !vgpu_in_bounds(shoff, shentsize, n))
        return vgpu_fb_err(err, errlen, "ELF section header table missing or out of bounds");
    if (shnum == 0) /* extended numbering */
        shnum = vgpu_rd64(p + shoff + 0x20) > UINT32_MAX ? UINT32_MAX : (uint32_t)vgpu_rd64(p + shoff + 0x20);
    if (shstrndx == SHN_XINDEX)
        shstrndx = vgpu_rd32(p + shoff + 0x28);
    if (!vgpu_in_bounds(shoff, (uint64_t)shnum * shentsize, n))
        return vgpu_fb_err(err, errlen, "ELF section header table (%u entries) out of bounds", shnum);
    if (shstrndx >= shnum)
        return vgpu_fb_err(err, errlen, "ELF section name table index %u out of range", shstrndx);
    e->nsec = shnum;
    e->sec = calloc(shnum, sizeof *e->sec);
    e->sorted = calloc(shnum, sizeof *e->sorted);
    if (!e->sec || !e->sorted)
        return vgpu_fb_err(err, errlen, "out of memory");
    for (uint32_t i = 0; i < shnum; i++) {
        const uint8_t *sh = p + shoff + (uint64_t)i * shentsize;
        struct sec *s = &e->sec[i];
        s->type = vgpu_rd32(sh + 4);
        s->off = vgpu_rd64(sh + 0x18);
        s->size = vgpu_rd64(sh + 0x20);
        s->link = vgpu_rd32(sh + 0x28);
        if (i != 0 && s->type != SHT_NOBITS && !vgpu_in_bounds(s->off, s->size, n))
            return vgpu_fb_err(err, errlen, "ELF section %u out of bounds", i);
    }
    const struct sec *names = &e->sec[shstrndx];
    if (names->type == SHT_NOBITS || shstrndx == 0)
        return vgpu_fb_err(err, errlen, "ELF has no section name table");
    for (uint32_t i = 0; i < shnum; i++) {
        const uint8_t *sh = p + shoff + (uint64_t)i * shentsize;
        e->sec[i].name = str_at((const char *)p + names->off, names->size, vgpu_rd32(sh));
        if (!e->sec[i].name)
            return vgpu_fb_err(err, errlen, "ELF section %u has a bad name", i);
        e->sorted[i].name = e->sec[i].name;
        e->sorted[i].idx = i;
    }
    qsort(e->sorted, shnum, sizeof *e->sorted, cmp_named);
    return 0;
}

static int load_symbols(struct elf *e, char *err, size_t errlen)
{
    for (uint32_t i = 1; i < e->nsec; i++) {
        const struct sec *s = &e->sec[i];
        if (s->type != SHT_SYMTAB)
            continue;
        if (s->link == 0 || s->link >= e->nsec || e->sec[s->link].type == SHT_NOBITS)
            return vgpu_fb_err(err, errlen, "ELF symbol table has no string table");
        if (s->size / SYM_SIZE > UINT32_MAX)
            return vgpu_fb_err(err, errlen, "ELF symbol table too large");
        e->syms = e->p + s->off;
        e->nsyms = (uint32_t)(s->size / SYM_SIZE);
        e->strtab = (const char *)e->p + e->sec[s->link].off;
        e->strtab_size = e->sec[s->link].size;
        return 0;
    }
    return 0; /* no symbols: a module with nothing in it */
}

/* Iterates .nv.info records. 1: *a filled; 0: end; -1: malformed. */
struct attr {
    uint8_t fmt, id;
    uint16_t hval;
    const uint8_t *val;
    uint32_t len;
};

static int next_attr(const uint8_t **pp, const uint8_t *end, struct attr *a)
{
    const uint8_t *p = *pp;
    if (p == end)
        return 0;
    if (end - p < 4)
        return -1;
    a->fmt = p[0];
    a->id = p[1];
    a->hval = vgpu_rd16(p + 2);
    a->val = NULL;
    a->len = 0;
    p += 4;
    if (a->fmt == EIFMT_SVAL) {
        if (a->hval > end - p)
            return -1;
        a->val = p;
        a->len = a->hval;
        p += a->hval;
    } else if (a->fmt != EIFMT_NVAL && a->fmt != EIFMT_BVAL && a->fmt != EIFMT_HVAL) {
        return -1; /* unknown format: its length is unknowable */
    }
    *pp = p;
    return 1;
}

/* x * y * z of a MAX_THREADS/REQNTID value, each clamped to 65536 so the product cannot overflow. */
static uint64_t dims_product(const struct attr *a)
{
    if (a->fmt != EIFMT_SVAL || a->len < 12)
        return 0;
    uint64_t prod = 1;
    for (int i = 0; i < 3; i++) {
        uint32_t d = vgpu_rd32(a->val + 4 * i);
        prod *= d > 65536 ? 65536 : d;
    }
    return prod;
}

struct kparam {
    uint32_t ordinal, offset, size;
};

/* Per-kernel .nv.info.<name>: parameter layout and launch bounds. */
static int parse_kernel_info(const struct elf *e, const struct sec *info, struct vgpu_kernel_info *k,
                             uint64_t *bound, char *err, size_t errlen)
{
    const uint8_t *p = e->p + info->off, *end = p + info->size;
    struct attr a;
    int r, rc = -1;
    size_t nparams = 0, maxparams = (size_t)(info->size / 16); /* a KPARAM_INFO record takes 16 bytes */
    struct kparam *kp = calloc(maxparams ? maxparams : 1, sizeof *kp);
    bool *seen = calloc(maxparams ? maxparams : 1, sizeof *seen);
    *bound = 0;
    if (!kp || !seen) {
        vgpu_fb_err(err, errlen, "out of memory");
        goto done;
    }
    while ((r = next_attr(&p, end, &a)) == 1) {
        if (a.id == EIATTR_KPARAM_INFO && a.fmt == EIFMT_SVAL) {
            if (a.len < 12 || nparams >= maxparams) {
                vgpu_fb_err(err, errlen, "kernel %s: short KPARAM_INFO record", k->name);
                goto done;
            }
            struct kparam *q = &kp[nparams++];
            q->ordinal = vgpu_rd16(a.val + 4);
            q->offset = vgpu_rd16(a.val + 6);
            q->size = (vgpu_rd32(a.val + 8) >> 18) & 0x3FFF;
        } else if (a.id == EIATTR_MAX_THREADS || a.id == EIATTR_REQNTID) {
            uint64_t t = dims_product(&a);
            if (t && (!*bound || t < *bound))
                *bound = t;
        }
    }
    if (r < 0) {
        vgpu_fb_err(err, errlen, "kernel %s: malformed .nv.info record", k->name);
        goto done;
    }
    if (nparams) {
        if (!(k->params = calloc(nparams, sizeof *k->params))) {
            vgpu_fb_err(err, errlen, "out of memory");
            goto done;
        }
        /* Ordinals must be exactly 0..n-1 (nvcc lists them in reverse). */
        for (size_t i = 0; i < nparams; i++) {
            if (kp[i].ordinal >= nparams || seen[kp[i].ordinal]) {
                vgpu_fb_err(err, errlen, "kernel %s: bad parameter ordinal %u", k->name, kp[i].ordinal);
                goto done;
            }
            seen[kp[i].ordinal] = true;
            k->params[kp[i].ordinal].offset = kp[i].offset;
            k->params[kp[i].ordinal].size = kp[i].size;
        }
        k->num_params = (uint32_t)nparams;
        k->param_bytes = k->params[nparams - 1].offset + k->params[nparams - 1].size;
    }
    rc = 0;
done:
    free(seen);
    free(kp);
    return rc;
}

static bool is_const_bank(const char *secname)
{
    /* .nv.constant<N>: bank 0 holds kernel parameters, the others module data. */
    const char *prefix = ".nv.constant";
    size_t pl = strlen(prefix);
    if (strncmp(secname, prefix, pl) != 0 || secname[pl] < '1' || secname[pl] > '9')
        return false;
    for (const char *c = secname + pl + 1; *c; c++)
        if (*c < '0' || *c > '9')
            return false;
    return true;
}

static int add_global(const struct elf *e, const uint8_t *s, const char *name, struct vgpu_module_info *out,
                      char *err, size_t errlen)
{
    uint32_t shndx = vgpu_rd16(s + 6);
    const struct sec *sec = &e->sec[shndx];
    bool constant = is_const_bank(sec->name);
    if (!constant && strcmp(sec->name, ".nv.global") != 0 && strcmp(sec->name, ".nv.global.init") != 0)
        return 0;
    uint64_t value = vgpu_rd64(s + 8), size = vgpu_rd64(s + 16);
    if (value > sec->size || size > sec->size - value)
        return 0; /* not inside its section: not something we can describe */
    struct vgpu_global_info *g = vgpu_fb_add_global(out);
    if (!g || !(g->name = vgpu_fb_strndup(name, strlen(name))))
        return vgpu_fb_err(err, errlen, "out of memory");
    g->size = size;
    g->constant = constant;
    if (sec->type != SHT_NOBITS && size > 0) {
        if (!(g->init = malloc((size_t)size)))
            return vgpu_fb_err(err, errlen, "out of memory");
        memcpy(g->init, e->p + sec->off + value, (size_t)size);
    }
    return 0;
}

/* Bytes of system-reserved shared memory counted in every kernel's .nv.shared.<name> section: from sm_90
 * on, static __shared__ data is laid out after the block's 1 KiB reserved window, and the driver reports
 * shared sizes without it (measured on H100 against CUDA 12.3 and 13.0 cubins). The
 * .nv.reservedSmem.cap symbol is no guide: it is undefined, 0 in CUDA 12 cubins. Older arches have no
 * window in the section. */
static uint64_t reserved_shared(const struct elf *e)
{
    return vgpu_elf_sm(e->p, e->n) >= 90 ? 1024 : 0;
}

/* Module-wide .nv.info: registers and stack frame per kernel, keyed by symbol index. */
static int parse_module_info(const struct elf *e, const uint32_t *kernel_of_sym, struct vgpu_module_info *out,
                             char *err, size_t errlen)
{
    const struct sec *info = find_sec(e, ".nv.info", "");
    if (!info || info->type == SHT_NOBITS)
        return 0;
    const uint8_t *p = e->p + info->off, *end = p + info->size;
    struct attr a;
    int r;
    while ((r = next_attr(&p, end, &a)) == 1) {
        if ((a.id != EIATTR_REGCOUNT && a.id != EIATTR_FRAME_SIZE) || a.fmt != EIFMT_SVAL || a.len < 8)
            continue;
        uint32_t sym = vgpu_rd32(a.val), value = vgpu_rd32(a.val + 4);
        if (sym >= e->nsyms || kernel_of_sym[sym] == 0)
            continue;
        struct vgpu_kernel_info *k = &out->kernels[kernel_of_sym[sym] - 1];
        if (a.id == EIATTR_REGCOUNT)
            k->num_regs = value;
        else
            k->local_bytes = value;
    }
    if (r < 0)
        return vgpu_fb_err(err, errlen, "malformed .nv.info record");
    return 0;
}

int vgpu_elf_parse(const uint8_t *p, size_t n, struct vgpu_module_info *out, char *err, size_t errlen)
{
    struct elf e = {.p = p, .n = n};
    uint32_t *kernel_of_sym = NULL; /* symbol index -> kernel index + 1 */
    uint64_t *bounds = NULL;        /* per kernel launch bound, 0 = none */
    int rc = -1;

    size_t need;
    if (vgpu_elf_extent(p, n, &need) != 0 || need > n) {
        vgpu_fb_err(err, errlen, "ELF image truncated or malformed (%zu bytes given)", n);
        goto done;
    }
    if (load_sections(&e, err, errlen) != 0 || load_symbols(&e, err, errlen) != 0)
        goto done;
    kernel_of_sym = calloc(e.nsyms ? e.nsyms : 1, sizeof *kernel_of_sym);
    bounds = calloc(e.nsyms ? e.nsyms : 1, sizeof *bounds);
    if (!kernel_of_sym || !bounds) {
        vgpu_fb_err(err, errlen, "out of memory");
        goto done;
    }
    const struct sec *cbank = find_sec(&e, ".nv.constant3", "");
    uint64_t reserved_smem = reserved_shared(&e);
    uint32_t const_bytes = cbank && cbank->size <= UINT32_MAX ? (uint32_t)cbank->size : 0;
    bool relocatable = vgpu_rd16(p + 16) == ET_REL; /* n >= 64: vgpu_elf_extent checked it */

    for (uint32_t i = 1; i < e.nsyms; i++) {
        const uint8_t *s = e.syms + (size_t)i * SYM_SIZE;
        uint32_t type = s[4] & 0xF, shndx = vgpu_rd16(s + 6);
        if ((type != STT_FUNC && type != STT_OBJECT) || shndx == 0 || shndx >= SHN_LORESERVE || shndx >= e.nsec)
            continue;
        const char *name = str_at(e.strtab, e.strtab_size, vgpu_rd32(s));
        if (!name) {
            vgpu_fb_err(err, errlen, "ELF symbol %u has a bad name", i);
            goto done;
        }
        if (name[0] == '\0')
            continue;
        if (type == STT_OBJECT) {
            if (add_global(&e, s, name, out, err, errlen) != 0)
                goto done;
            continue;
        }
        /* A kernel lives in .text.<name> and has .nv.info.<name>; device functions have neither, except
         * in relocatable cubins (-rdc), where only kernels are marked STO_CUDA_ENTRY. */
        if (relocatable && !(s[5] & STO_CUDA_ENTRY))
            continue;
        const struct sec *info = find_sec(&e, ".nv.info.", name);
        if (cmp_prefixed(".text.", name, e.sec[shndx].name) != 0 || !info ||
            info->type == SHT_NOBITS)
            continue;
        struct vgpu_kernel_info *k = vgpu_fb_add_kernel(out);
        if (!k || !(k->name = vgpu_fb_strndup(name, strlen(name)))) {
            vgpu_fb_err(err, errlen, "out of memory");
            goto done;
        }
        kernel_of_sym[i] = out->num_kernels;
        if (parse_kernel_info(&e, info, k, &bounds[out->num_kernels - 1], err, errlen) != 0)
            goto done;
        const struct sec *shared = find_sec(&e, ".nv.shared.", name);
        if (shared && shared->size <= UINT32_MAX)
            k->shared_bytes = shared->size > reserved_smem ? (uint32_t)(shared->size - reserved_smem) : 0;
        k->const_bytes = const_bytes;
    }
    if (parse_module_info(&e, kernel_of_sym, out, err, errlen) != 0)
        goto done;
    for (uint32_t i = 0; i < out->num_kernels; i++)
        out->kernels[i].max_threads = vgpu_fb_max_threads(out->kernels[i].num_regs, bounds[i]);
    rc = 0;
done:
    free(bounds);
    free(kernel_of_sym);
    free(e.sorted);
    free(e.sec);
    return rc;
}

/* Unit test for the module-image parser (src/common/fatbin*.c): nvcc-built fixtures (see fatbin.cmake and
 * fixtures/kernels.cu) parsed and checked against what the source says, plus hand-written PTX, the LZ4
 * decoder, and hostile input (truncations, byte flips, absurd sizes) that must fail cleanly.
 * Usage: test_fatbin FIXTURE_DIR. Exit status 0 when every check passed. */
#include "common/fatbin.h"
#include "common/fatbin_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_checks, g_failures;
static const char *g_dir;

static void check(bool ok, const char *fmt, ...)
{
    va_list ap;
    g_checks++;
    if (!ok)
        g_failures++;
    printf("%s ", ok ? "ok  " : "FAIL");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

struct file {
    uint8_t *data; /* one extra NUL byte after len */
    size_t len;
};

static struct file load(const char *name)
{
    char path[4096];
    struct file f = {0};
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        check(false, "open fixture %s", path);
        exit(1);
    }
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    rewind(fp);
    f.data = malloc((size_t)n + 1);
    if (!f.data || fread(f.data, 1, (size_t)n, fp) != (size_t)n)
        exit(1);
    f.data[n] = 0;
    f.len = (size_t)n;
    fclose(fp);
    return f;
}

/* First occurrence of needle in hay, or NULL (memmem is not in C11). */
static const uint8_t *find_bytes(const uint8_t *hay, size_t n, const void *needle, size_t k)
{
    for (size_t i = 0; k <= n && i <= n - k; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return hay + i;
    return NULL;
}

/* ---- expectations from fixtures/kernels.cu ---- */

struct expect {
    const char *name;
    uint32_t n;
    struct vgpu_param_layout p[6];
};

static const struct expect k_expect[] = {
    {"k_mixed", 6, {{0, 8}, {8, 4}, {16, 8}, {24, 24}, {48, 1}, {49, 3}}},
    {"_Z8k_noargsv", 0, {{0, 0}}},
    {"k_char_ptr", 2, {{0, 1}, {8, 8}}},
    {"k_big", 3, {{0, 4}, {16, 512}, {528, 8}}},
    {"k_shared", 4, {{0, 8}, {8, 8}, {16, 2}, {20, 4}}},
    {"k_local", 2, {{0, 4}, {8, 8}}},
    {"k_regs", 3, {{0, 8}, {8, 8}, {16, 4}}},
};
#define N_KERNELS (sizeof k_expect / sizeof k_expect[0])

static void check_fixture_module(const struct vgpu_module_info *m, const char *label, bool elf)
{
    check(m->num_kernels == N_KERNELS, "%s: %u kernels (want %zu)", label, m->num_kernels, N_KERNELS);
    check(m->from_ptx == !elf, "%s: from_ptx=%d", label, m->from_ptx);
    for (size_t i = 0; i < N_KERNELS; i++) {
        const struct expect *x = &k_expect[i];
        const struct vgpu_kernel_info *k = vgpu_module_find_kernel(m, x->name);
        if (!k) {
            check(false, "%s: kernel %s present", label, x->name);
            continue;
        }
        bool same = k->num_params == x->n;
        for (uint32_t j = 0; same && j < x->n; j++)
            same = k->params[j].offset == x->p[j].offset && k->params[j].size == x->p[j].size;
        uint32_t bytes = x->n ? x->p[x->n - 1].offset + x->p[x->n - 1].size : 0;
        check(same && k->param_bytes == bytes, "%s: %s has %u params, layout as in the source, %u bytes", label,
              x->name, k->num_params, k->param_bytes);
        uint32_t want_threads = strcmp(x->name, "k_shared") == 0 ? 256 : 1024;
        if (elf) {
            check(k->num_regs > 0 && k->const_bytes == 64, "%s: %s regs=%u const=%u", label, x->name, k->num_regs,
                  k->const_bytes);
            if (strcmp(x->name, "k_regs") == 0)
                want_threads = vgpu_fb_max_threads(k->num_regs, 0);
        }
        check(k->max_threads == want_threads, "%s: %s max_threads=%u (want %u)", label, x->name, k->max_threads,
              want_threads);
    }
    check(!vgpu_module_find_kernel(m, "_Z6helperf") && !vgpu_module_find_kernel(m, "$k_shared$_Z6helperf") &&
              !vgpu_module_find_kernel(m, "k_nope"),
          "%s: device function and unknown names are not kernels", label);
    if (elf) {
        const struct vgpu_kernel_info *ks = vgpu_module_find_kernel(m, "k_shared"),
                                      *kl = vgpu_module_find_kernel(m, "k_local"),
                                      *kr = vgpu_module_find_kernel(m, "k_regs");
        /* driver-reported values, measured on H100 for sm_90 (the sm_75 cubin has no reserved window) */
        check(ks && ks->shared_bytes == 1024, "%s: k_shared static shared = %u (want 1024)", label,
              ks ? ks->shared_bytes : 0);
        check(kl && kl->local_bytes == 256, "%s: k_local frame = %u (want 256)", label, kl ? kl->local_bytes : 0);
        check(kr && kr->num_regs > 64 && kr->max_threads < 1024 && kr->max_threads % 128 == 0,
              "%s: k_regs %u registers limit blocks to %u threads", label, kr ? kr->num_regs : 0,
              kr ? kr->max_threads : 0);
    }

    check(m->num_globals == 3, "%s: %u globals (want 3)", label, m->num_globals);
    const struct vgpu_global_info *gi = vgpu_module_find_global(m, "g_init"), *gz = vgpu_module_find_global(m, "g_zero"),
                                  *gc = vgpu_module_find_global(m, "c_table");
    static const int32_t init[4] = {1, 2, 3, 4};
    int32_t got[4] = {0};
    if (gi && gi->init && gi->size == sizeof got)
        memcpy(got, gi->init, sizeof got);
    check(gi && gi->size == 16 && !gi->constant && memcmp(got, init, sizeof init) == 0,
          "%s: g_init is 16 bytes holding {1,2,3,4}", label);
    bool zero = gz && gz->size == 64 && !gz->constant;
    for (uint64_t i = 0; zero && gz->init && i < gz->size; i++)
        zero = gz->init[i] == 0;
    check(zero, "%s: g_zero is 64 zero bytes", label);
    float one = 0;
    if (gc && gc->init && gc->size == 64)
        memcpy(&one, gc->init, sizeof one);
    check(gc && gc->constant && gc->size == 64 && one == 1.0f, "%s: c_table is a 64-byte __constant__ starting 1.0f",
          label);
}

static void parse_fixture(const char *name, uint32_t want_sm, uint32_t expect_sm, bool elf, bool loadable)
{
    struct file f = load(name);
    struct vgpu_module_info m;
    char err[256];
    char label[128];
    snprintf(label, sizeof label, "%s@sm_%u", name, want_sm);
    int rc = vgpu_module_parse(f.data, f.len, want_sm, &m, err, sizeof err);
    check(rc == 0, "%s: parses (%s)", label, rc ? err : "ok");
    if (rc == 0) {
        check(m.sm == expect_sm, "%s: chose sm %u (want %u)", label, m.sm, expect_sm);
        check(m.loadable == loadable, "%s: a real sm_%u device %s load it", label, want_sm, loadable ? "can" : "cannot");
        check_fixture_module(&m, label, elf);
    }
    vgpu_module_info_free(&m);
    free(f.data);
}

/* ---- what nvcc 13 actually writes: the fatbin entries' kinds, arches and compression flags ---- */

struct entry_summary {
    uint32_t kind, arch;
    uint64_t flags;
};

static size_t walk_fatbin(const struct file *f, struct entry_summary *out, size_t max)
{
    size_t off = vgpu_rd16(f->data + 6), end = off + vgpu_rd64(f->data + 8), n = 0;
    while (off + 64 <= end && off + 64 <= f->len && n < max) {
        const uint8_t *h = f->data + off;
        out[n].kind = vgpu_rd16(h);
        out[n].arch = vgpu_rd32(h + 28);
        out[n].flags = vgpu_rd64(h + 40);
        n++;
        off += vgpu_rd32(h + 4) + vgpu_rd64(h + 8);
    }
    return n;
}

static void test_compression_flags(void)
{
    static const struct {
        const char *name;
        uint64_t elf_flag, ptx_flag;
    } cases[] = {
        {"multi.fatbin", 0, VGPU_FATBIN_FLAG_ZSTD}, /* default: PTX compressed, ELF not */
        {"nocomp.fatbin", 0, 0},
        {"zstd.fatbin", VGPU_FATBIN_FLAG_ZSTD, VGPU_FATBIN_FLAG_ZSTD},
        {"lz4.fatbin", VGPU_FATBIN_FLAG_LZ4, VGPU_FATBIN_FLAG_LZ4},
        {"ptx_lz4.fatbin", 0, VGPU_FATBIN_FLAG_LZ4},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct file f = load(cases[c].name);
        struct entry_summary e[8];
        size_t n = walk_fatbin(&f, e, 8);
        bool ok = n > 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t want = e[i].kind == VGPU_FATBIN_KIND_ELF ? cases[c].elf_flag : cases[c].ptx_flag;
            ok = ok && (e[i].flags & (VGPU_FATBIN_FLAG_LZ4 | VGPU_FATBIN_FLAG_ZSTD)) == want;
        }
        check(ok, "%s: %zu entries carry the expected compression flags", cases[c].name, n);
        free(f.data);
    }
}

/* ---- sizes, kinds, wrappers ---- */

static void test_sizes(void)
{
    static const char *files[] = {"plain.fatbin", "multi.fatbin", "zstd.fatbin", "lz4.fatbin",
                                  "nocomp.fatbin", "k90.cubin",   "k75.cubin",   "kernels.ptx"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        struct file f = load(files[i]);
        bool ptx = strstr(files[i], ".ptx") != NULL;
        /* place the image in a bigger buffer with garbage after it: the size must come from the headers */
        uint8_t *big = malloc(f.len + 4096);
        memcpy(big, f.data, f.len);
        memset(big + f.len, ptx ? 0 : 0xA5, 4096);
        size_t sz = 0;
        int rc = vgpu_image_size(big, &sz);
        check(rc == 0 && sz == f.len + (ptx ? 1 : 0), "%s: vgpu_image_size = %zu (file %zu)", files[i], sz, f.len);
        enum vgpu_image_kind want = ptx ? VGPU_IMAGE_PTX : strstr(files[i], ".cubin") ? VGPU_IMAGE_ELF : VGPU_IMAGE_FATBIN;
        check(vgpu_image_kind(big) == want, "%s: vgpu_image_kind", files[i]);
        check(vgpu_image_unwrap(big) == big, "%s: unwrap of a non-wrapper is itself", files[i]);
        rc = vgpu_image_size_bounded(f.data, f.len, &sz);
        check(rc == 0 && sz == f.len + (ptx ? 1 : 0), "%s: vgpu_image_size_bounded = %zu", files[i], sz);
        check(vgpu_image_size_bounded(f.data, f.len - 1, &sz) == (ptx ? 0 : -1), "%s: bounded size of %zu bytes less one",
              files[i], f.len);
        free(big);
        free(f.data);
    }

    struct file f = load("multi.fatbin");
    for (int version = 1; version <= 2; version++) {
        struct {
            int magic, version;
            const unsigned long long *data;
            void *extra;
        } w = {(int)VGPU_FATBIN_WRAPPER_MAGIC, version, (const unsigned long long *)f.data, NULL};
        size_t sz = 0;
        int rc = vgpu_image_size(&w, &sz);
        check(vgpu_image_kind(&w) == VGPU_IMAGE_WRAPPER, "wrapper v%d: recognised", version);
        check(vgpu_image_unwrap(&w) == f.data, "wrapper v%d: unwraps to its fatbin", version);
        check(rc == 0 && sz == f.len, "wrapper v%d: size is its fatbin's (%zu)", version, sz);
        struct vgpu_module_info m;
        char err[128];
        check(vgpu_image_size_bounded(&w, sizeof w, &sz) == -1, "wrapper v%d: no bounded size", version);
        check(vgpu_module_parse(&w, sizeof w, 90, &m, err, sizeof err) == -1 && m.num_kernels == 0,
              "wrapper v%d: parse refuses a pointer-carrying wrapper (%s)", version, err);
    }
    free(f.data);

    size_t sz = 0;
    check(vgpu_image_size("", &sz) == -1, "size of an empty string: unknown");
    check(vgpu_image_size("hello", &sz) == -1, "size of non-PTX text: unknown");
    check(vgpu_image_size(NULL, &sz) == -1, "size of NULL: unknown");
    check(vgpu_image_size("\n// c\n.version 9.0\n", &sz) == 0 && sz == 20, "size of PTX text: strlen+1");
    uint8_t hdr[64] = {0x50, 0xED, 0x55, 0xBA, 1, 0, 16, 0};
    memset(hdr + 8, 0xFF, 8);
    check(vgpu_image_size(hdr, &sz) == -1, "fatbin claiming 2^64 bytes: refused");
    uint8_t elf[64] = {0x7F, 'E', 'L', 'F', 2, 1, 1};
    memset(elf + 0x28, 0x7F, 8); /* e_shoff far away */
    elf[0x3A] = 64;
    elf[0x3C] = 1;
    check(vgpu_image_size(elf, &sz) == -1, "ELF with section headers at 2^63: refused");
}

/* ---- fatbin entry selection and decompression against the plain cubins ---- */

static void test_select(void)
{
    static const struct {
        const char *fatbin;
        uint32_t want_sm;
        const char *same_as; /* NULL: a PTX entry is expected */
    } cases[] = {
        {"zstd.fatbin", 90, "k90.cubin"}, {"zstd.fatbin", 89, "k75.cubin"}, {"lz4.fatbin", 90, "k90.cubin"},
        {"lz4.fatbin", 75, "k75.cubin"},  {"multi.fatbin", 0, "k90.cubin"}, {"nocomp.fatbin", 120, "k90.cubin"},
        {"lz4.fatbin", 70, NULL},         {"zstd.fatbin", 70, NULL},        {"ptx_lz4.fatbin", 90, NULL},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct file f = load(cases[c].fatbin);
        uint8_t *out = NULL;
        size_t len = 0;
        uint32_t kind = 0, arch = 0;
        char err[256];
        int rc = vgpu_fatbin_select(f.data, f.len, cases[c].want_sm, &out, &len, &kind, &arch, err, sizeof err);
        if (cases[c].same_as) {
            struct file want = load(cases[c].same_as);
            check(rc == 0 && kind == VGPU_FATBIN_KIND_ELF && len >= want.len && memcmp(out, want.data, want.len) == 0,
                  "%s@sm_%u: chosen ELF (sm_%u) is byte-identical to %s (%s)", cases[c].fatbin, cases[c].want_sm,
                  arch, cases[c].same_as, rc ? err : "decoded");
            free(want.data);
        } else {
            check(rc == 0 && kind == VGPU_FATBIN_KIND_PTX && arch == 90 && find_bytes(out, len, ".entry k_mixed(", 15),
                  "%s@sm_%u: falls back to the compute_90 PTX (%s)", cases[c].fatbin, cases[c].want_sm,
                  rc ? err : "decoded");
        }
        free(out);
        free(f.data);
    }
}

/* ---- zstd library handling ---- */

static void test_zstd_loader(void)
{
    struct file f = load("zstd.fatbin");
    struct vgpu_module_info m;
    char err[256];
    vgpu_zstd_set_library("libzstd-vgpu-missing.so.9");
    int rc = vgpu_module_parse(f.data, f.len, 90, &m, err, sizeof err);
    check(rc == -1 && strstr(err, "libzstd-vgpu-missing.so.9") != NULL, "missing libzstd: error says so (%s)", err);
    vgpu_zstd_set_library(NULL);
    rc = vgpu_module_parse(f.data, f.len, 90, &m, err, sizeof err);
    check(rc == 0 && m.num_kernels == N_KERNELS, "libzstd restored: zstd fatbin parses again");
    vgpu_module_info_free(&m);
    free(f.data);
}

/* ---- hand-written PTX ---- */

static const char k_ptx[] =
    "//\n// hand-written\n/* block comment with .entry fake( */\n"
    ".version 8.5\n.target sm_80, texmode_independent\n.address_size 64\n"
    ".file 1 \"/src/a{b}.cu\", 1700000000, 123\n"
    ".extern .func (.param .b32 r) ext_fn(.param .b32 a);\n"
    ".extern .entry declared_only(.param .u32 x);\n"
    ".extern .global .u32 ext_var;\n"
    ".extern .shared .align 16 .b8 dyn_smem[];\n"
    ".visible .global .u32 gx = 7;\n"
    ".global .f32 gf[3] = {0f3F800000, 2.5, -1.0};\n"
    ".visible .const .align 8 .u64 cp = generic(gx);\n"
    ".global .align 4 .u32 a1, a2[4] = {1, 0x10, 010, 0b11};\n"
    ".global .v4 .f32 vec4;\n"
    ".global .s16 neg[2] = {-1, -2};\n"
    ".shared .align 4 .b8 demoted[1024];\n"
    ".func (.param .b32 func_retval0) dev_fn(.param .b32 p)\n{\n\t{ .reg .b32 t; }\n\tret;\n}\n"
    ".visible .entry k1(\n"
    "\t.param .u64 .ptr .global .align 16 k1_param_0,\n"
    "\t.param .u8 k1_param_1,\n"
    "\t.param .align 8 .b8 k1_param_2[24],\n"
    "\t.param .f32 k1_param_3,\n"
    "\t.param .align 1 .b8 k1_param_4[3],\n"
    "\t.param .v2 .u32 k1_param_5,\n"
    "\t.param .b16 k1_param_6\n"
    ")\n.maxntid 128, 2, 1\n.minnctapersm 2\n{\n\t.reg .b64 %rd<3>;\n\tret;\n}\n"
    ".weak .entry k2()\n.reqntid 64\n{\n\tret;\n}\n"
    ".entry k3(.param .f64 a, .param .u16 b, .param .align 16 .b8 c[32], .param .texref t) { ret; }\n"
    ".section .debug_str { .b8 65,66,0 }\n";

static void test_ptx_text(void)
{
    struct vgpu_module_info m;
    char err[256];
    /* exact size, no NUL: the parser must not look past it */
    size_t n = sizeof k_ptx - 1;
    char *copy = malloc(n);
    memcpy(copy, k_ptx, n);
    int rc = vgpu_module_parse(copy, n, 90, &m, err, sizeof err);
    check(rc == 0, "hand-written PTX parses (%s)", rc ? err : "ok");
    check(m.from_ptx && m.sm == 0 && m.num_kernels == 3, "PTX: 3 kernels, from_ptx, sm 0 (got %u)", m.num_kernels);
    const struct vgpu_kernel_info *k1 = vgpu_module_find_kernel(&m, "k1"), *k2 = vgpu_module_find_kernel(&m, "k2"),
                                  *k3 = vgpu_module_find_kernel(&m, "k3");
    static const struct vgpu_param_layout p1[] = {{0, 8}, {8, 1}, {16, 24}, {40, 4}, {44, 3}, {48, 8}, {56, 2}};
    bool same = k1 && k1->num_params == 7;
    for (uint32_t i = 0; same && i < 7; i++)
        same = k1->params[i].offset == p1[i].offset && k1->params[i].size == p1[i].size;
    check(same && k1->param_bytes == 58, "PTX k1: .ptr/.align/array/vector parameters laid out naturally");
    check(k1 && k1->max_threads == 256, "PTX k1: .maxntid 128,2,1 -> 256 threads");
    check(k2 && k2->num_params == 0 && k2->max_threads == 64, "PTX k2: no params, .reqntid 64");
    static const struct vgpu_param_layout p3[] = {{0, 8}, {8, 2}, {16, 32}, {48, 8}};
    same = k3 && k3->num_params == 4;
    for (uint32_t i = 0; same && i < 4; i++)
        same = k3->params[i].offset == p3[i].offset && k3->params[i].size == p3[i].size;
    check(same, "PTX k3: one-line entry with .texref");
    check(!vgpu_module_find_kernel(&m, "declared_only") && !vgpu_module_find_kernel(&m, "dev_fn") &&
              !vgpu_module_find_kernel(&m, "fake"),
          "PTX: declarations, functions and comments are not kernels");

    const struct vgpu_global_info *g;
    check((g = vgpu_module_find_global(&m, "gx")) && g->size == 4 && g->init && vgpu_rd32(g->init) == 7,
          "PTX global gx = 7");
    float fv[3] = {0};
    if ((g = vgpu_module_find_global(&m, "gf")) && g->init && g->size == 12)
        memcpy(fv, g->init, sizeof fv);
    check(g && fv[0] == 1.0f && fv[1] == 2.5f && fv[2] == -1.0f, "PTX global gf = {0f3F800000, 2.5, -1.0}");
    check((g = vgpu_module_find_global(&m, "cp")) && g->size == 8 && g->constant && g->init &&
              vgpu_rd64(g->init) == 0,
          "PTX const cp = generic(gx): 8 bytes, address left 0");
    check((g = vgpu_module_find_global(&m, "a1")) && g->size == 4 && !g->init, "PTX a1: 4 bytes, zero");
    check((g = vgpu_module_find_global(&m, "a2")) && g->size == 16 && g->init && vgpu_rd32(g->init) == 1 &&
              vgpu_rd32(g->init + 4) == 16 && vgpu_rd32(g->init + 8) == 8 && vgpu_rd32(g->init + 12) == 3,
          "PTX a2[4] = {1, 0x10, 010, 0b11}");
    check((g = vgpu_module_find_global(&m, "vec4")) && g->size == 16, "PTX .v4 .f32 global: 16 bytes");
    check((g = vgpu_module_find_global(&m, "neg")) && g->size == 4 && g->init && vgpu_rd16(g->init) == 0xFFFF &&
              vgpu_rd16(g->init + 2) == 0xFFFE,
          "PTX .s16 neg = {-1, -2}");
    check(m.num_globals == 7 && !vgpu_module_find_global(&m, "ext_var") && !vgpu_module_find_global(&m, "demoted") &&
              !vgpu_module_find_global(&m, "dyn_smem"),
          "PTX: %u globals; extern and shared ones are not listed", m.num_globals);
    vgpu_module_info_free(&m);

    /* every prefix: must never crash, and the parse of the whole text stays the reference */
    int ok = 0, failed = 0;
    for (size_t len = 1; len < n; len++) {
        memcpy(copy, k_ptx, len);
        if (vgpu_module_parse(copy, len, 90, &m, err, sizeof err) == 0) {
            ok++;
            vgpu_module_info_free(&m);
        } else {
            failed++;
        }
    }
    check(failed > 0, "hand-written PTX prefixes: %d parse, %d refused, none crash", ok, failed);
    free(copy);

    static const struct {
        const char *text, *why;
    } bad[] = {
        {".version 8.0\n.entry k(.param .b8 p[4000000000]) { }", "huge array parameter"},
        {".version 8.0\n.entry k(.param .b8 p[18446744073709551615][16]) { }", "overflowing dimensions"},
        {".version 8.0\n.global .b8 x[99999999999999] = {1};", "huge initialised global"},
        {".version 8.0\n.global .b8 x[] = {1, 2};", "unsized initialised global"},
        {".version 8.0\n.global .b8 a[200000000] = {1};\n.global .b8 b[200000000] = {1};", "initialisers over 256 MiB in all"},
        {".version 8.0\n.entry k(.param .u32 a) { ret;", "unterminated body"},
        {".version 8.0\n.entry (.param .u32 a) { }", "entry without a name"},
        {".version 8.0\n.entry k(.param a) { }", "parameter without a type"},
        {".version 8.0\n.entry k(.param .u32 a, .param .align 3 .b8 b[2]) { }", "bad alignment"},
        {".version 8.0\n.global .u32 x = {1}};", "unbalanced initialiser"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc = vgpu_module_parse(bad[i].text, strlen(bad[i].text) + 1, 90, &m, err, sizeof err);
        check(rc == -1 && err[0] && m.num_kernels == 0, "PTX %s: refused (%s)", bad[i].why, err);
    }
}

/* ---- LZ4 decoder ---- */

static void test_lz4(void)
{
    uint8_t out[64];
    size_t n = 0;
    /* literals "abc", then a match of 9 at offset 3 (overlapping), then last literals "Z" */
    static const uint8_t ok1[] = {0x35, 'a', 'b', 'c', 3, 0, 0x10, 'Z'};
    check(vgpu_lz4_decode(ok1, sizeof ok1, out, sizeof out, &n) == 0 && n == 13 && memcmp(out, "abcabcabcabcZ", 13) == 0,
          "lz4: overlapping match");
    /* 15+3 = 18 literals through a length continuation byte */
    uint8_t ok2[1 + 1 + 18];
    ok2[0] = 0xF0;
    ok2[1] = 3;
    memset(ok2 + 2, 'x', 18);
    check(vgpu_lz4_decode(ok2, sizeof ok2, out, sizeof out, &n) == 0 && n == 18, "lz4: long literal run");
    static const uint8_t bad_off0[] = {0x10, 'a', 0, 0, 0x00};
    static const uint8_t bad_far[] = {0x10, 'a', 2, 0, 0x00};
    static const uint8_t bad_trunc[] = {0x30, 'a', 'b'};
    static const uint8_t bad_offtrunc[] = {0x10, 'a', 1};
    static const uint8_t bad_long[] = {0x1F, 'a', 1, 0, 255, 255, 255};
    static const uint8_t big_match[] = {0x1F, 'a', 1, 0, 100, 0x00};
    check(vgpu_lz4_decode(bad_off0, sizeof bad_off0, out, sizeof out, &n) == -1, "lz4: offset 0 refused");
    check(vgpu_lz4_decode(bad_far, sizeof bad_far, out, sizeof out, &n) == -1, "lz4: offset before output refused");
    check(vgpu_lz4_decode(bad_trunc, sizeof bad_trunc, out, sizeof out, &n) == -1, "lz4: truncated literals refused");
    check(vgpu_lz4_decode(bad_offtrunc, sizeof bad_offtrunc, out, sizeof out, &n) == -1, "lz4: truncated offset refused");
    check(vgpu_lz4_decode(bad_long, sizeof bad_long, out, sizeof out, &n) == -1, "lz4: runaway length refused");
    check(vgpu_lz4_decode(big_match, sizeof big_match, out, sizeof out, &n) == -1, "lz4: output overflow refused");
    check(vgpu_lz4_decode(ok1, 0, out, sizeof out, &n) == -1, "lz4: empty input refused");
}

/* ---- hostile input ---- */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* Parse must return 0 or -1; on 0 the result must be internally consistent. */
static bool parse_sane(const uint8_t *p, size_t n, uint32_t want_sm, int *rc_out)
{
    struct vgpu_module_info m;
    char err[256];
    err[0] = 'x';
    int rc = vgpu_module_parse(p, n, want_sm, &m, err, sizeof err);
    bool sane = rc == 0 || (rc == -1 && err[0] != 'x' && m.num_kernels == 0 && m.kernels == NULL);
    for (uint32_t i = 0; rc == 0 && i < m.num_kernels; i++) {
        const struct vgpu_kernel_info *k = &m.kernels[i];
        sane = sane && k->name && (k->num_params == 0 || k->params) && vgpu_module_find_kernel(&m, k->name);
        for (uint32_t j = 0; sane && j < k->num_params; j++)
            sane = k->params[j].size <= (1u << 20) && k->params[j].offset <= (1u << 20);
    }
    for (uint32_t i = 0; rc == 0 && i < m.num_globals; i++)
        sane = sane && m.globals[i].name && (m.globals[i].init == NULL || m.globals[i].size > 0);
    vgpu_module_info_free(&m);
    *rc_out = rc;
    return sane;
}

/* Byte ranges of a trusted cubin worth mutating: headers, tables, symbols and .nv.info sections. */
struct range {
    size_t off, len;
};

static size_t interesting_ranges(const struct file *f, struct range *r, size_t max)
{
    size_t n = 0, shoff = vgpu_rd64(f->data + 0x28);
    uint32_t shnum = vgpu_rd16(f->data + 0x3C), shstr = vgpu_rd16(f->data + 0x3E);
    r[n++] = (struct range){0, 64};
    r[n++] = (struct range){shoff, (size_t)shnum * 64};
    const uint8_t *names = f->data + vgpu_rd64(f->data + shoff + shstr * 64 + 0x18);
    for (uint32_t i = 1; i < shnum && n < max; i++) {
        const uint8_t *sh = f->data + shoff + i * 64;
        const char *name = (const char *)names + vgpu_rd32(sh);
        uint32_t type = vgpu_rd32(sh + 4);
        if (strncmp(name, ".nv.info", 8) == 0 || type == 2 /* symtab */ || type == 3 /* strtab */ ||
            strncmp(name, ".nv.global", 10) == 0)
            r[n++] = (struct range){(size_t)vgpu_rd64(sh + 0x18), (size_t)vgpu_rd64(sh + 0x20)};
    }
    return n;
}

/* Truncations and random byte flips of a fixture. Binary images must refuse every truncation; PTX text
 * need not (a prefix ending between statements is valid PTX). */
static void fuzz_file(const char *name, int rounds, bool targeted, bool truncations_refused)
{
    struct file f = load(name);
    uint8_t *buf = malloc(f.len + 1);
    int rc, accepted = 0, refused = 0;
    bool sane = true;

    /* every truncation: binary images must all be refused */
    bool all_refused = true;
    for (size_t len = 0; len < f.len; len++) {
        memcpy(buf, f.data, len);
        sane = parse_sane(buf, len, 90, &rc) && sane;
        size_t sz;
        if (rc == 0 || (vgpu_image_size_bounded(buf, len, &sz) == 0 && truncations_refused))
            all_refused = false;
    }
    if (truncations_refused)
        check(sane && all_refused, "%s: all %zu truncations refused", name, f.len);
    else
        check(sane, "%s: %zu truncations, no crash, results sane", name, f.len);

    struct range r[64];
    size_t nr = targeted ? interesting_ranges(&f, r, 64) : 0;
    for (int i = 0; i < rounds; i++) {
        memcpy(buf, f.data, f.len);
        int flips = 1 + (int)(rnd() % 4);
        for (int k = 0; k < flips; k++) {
            size_t pos;
            if (nr && (rnd() & 1)) {
                const struct range *q = &r[rnd() % nr];
                pos = q->len ? q->off + (size_t)(rnd() % q->len) : q->off;
            } else {
                pos = (size_t)(rnd() % f.len);
            }
            if (pos < f.len)
                buf[pos] ^= (uint8_t)(1u << (rnd() % 8)) | (uint8_t)((rnd() & 1) ? rnd() : 0);
        }
        sane = parse_sane(buf, f.len, (uint32_t)(rnd() % 2 ? 90 : 75), &rc) && sane;
        size_t sz;
        if (vgpu_image_size_bounded(buf, f.len, &sz) == 0 && sz > f.len + 1)
            sane = false;
        rc == 0 ? accepted++ : refused++;
    }
    check(sane, "%s: %d random mutations: %d parsed, %d refused, no crash, results sane", name, rounds, accepted,
          refused);
    free(buf);
    free(f.data);
}

/* Writes v (n bytes, little endian) at p. */
static void put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void expect_refused(const uint8_t *p, size_t n, const char *what)
{
    struct vgpu_module_info m;
    char err[256] = "";
    int rc = vgpu_module_parse(p, n, 90, &m, err, sizeof err);
    check(rc == -1 && err[0], "%s: refused (%s)", what, err);
    if (rc == 0)
        vgpu_module_info_free(&m);
}

/* Offset of the first fatbin entry of the given kind in f. */
static size_t entry_of(const struct file *f, uint32_t kind, uint32_t arch)
{
    size_t off = vgpu_rd16(f->data + 6), end = off + vgpu_rd64(f->data + 8);
    while (off + 64 <= end) {
        if (vgpu_rd16(f->data + off) == kind && vgpu_rd32(f->data + off + 28) == arch)
            return off;
        off += vgpu_rd32(f->data + off + 4) + vgpu_rd64(f->data + off + 8);
    }
    return 0;
}

/* Offset of section `name` in a trusted cubin; *size gets its size. */
static size_t section_of(const struct file *f, const char *name, size_t *size)
{
    size_t shoff = vgpu_rd64(f->data + 0x28);
    uint32_t shnum = vgpu_rd16(f->data + 0x3C), shstr = vgpu_rd16(f->data + 0x3E);
    const char *names = (const char *)f->data + vgpu_rd64(f->data + shoff + shstr * 64 + 0x18);
    for (uint32_t i = 1; i < shnum; i++) {
        const uint8_t *sh = f->data + shoff + i * 64;
        if (strcmp(names + vgpu_rd32(sh), name) == 0) {
            *size = vgpu_rd64(sh + 0x20);
            return vgpu_rd64(sh + 0x18);
        }
    }
    *size = 0;
    return 0;
}

static void test_absurd(void)
{
    struct file z = load("zstd.fatbin"), l = load("lz4.fatbin"), c = load("k90.cubin");
    uint8_t *b = malloc(z.len + l.len + c.len);

    memcpy(b, z.data, z.len);
    put(b + 8, UINT64_MAX - 8, 8);
    expect_refused(b, z.len, "fatbin payload size 2^64-9");
    memcpy(b, z.data, z.len);
    put(b + 6, 8, 2);
    expect_refused(b, z.len, "fatbin header size 8");
    size_t e90 = entry_of(&z, VGPU_FATBIN_KIND_ELF, 90);
    memcpy(b, z.data, z.len);
    put(b + e90 + 4, 0x7FFFFFFF, 4);
    expect_refused(b, z.len, "fatbin entry header size 2^31");
    memcpy(b, z.data, z.len);
    put(b + e90 + 8, UINT64_MAX, 8);
    expect_refused(b, z.len, "fatbin entry payload size 2^64-1");
    memcpy(b, z.data, z.len);
    put(b + e90 + 56, (uint64_t)1 << 40, 8);
    expect_refused(b, z.len, "zstd entry claiming 1 TiB uncompressed");
    memcpy(b, z.data, z.len);
    put(b + e90 + 56, vgpu_rd64(z.data + e90 + 56) - 1, 8);
    expect_refused(b, z.len, "zstd entry claiming one byte less than its frame");
    memcpy(b, z.data, z.len);
    put(b + e90 + 16, 0xFFFFFFFF, 4);
    expect_refused(b, z.len, "zstd entry compressed size beyond its payload");

    size_t l90 = entry_of(&l, VGPU_FATBIN_KIND_ELF, 90);
    uint64_t usz = vgpu_rd64(l.data + l90 + 56);
    memcpy(b, l.data, l.len);
    put(b + l90 + 56, (uint64_t)vgpu_rd32(l.data + l90 + 16) * 300, 8);
    expect_refused(b, l.len, "LZ4 entry claiming an impossible ratio");
    memcpy(b, l.data, l.len);
    put(b + l90 + 56, usz - 1, 8);
    expect_refused(b, l.len, "LZ4 entry one byte short of its output");
    memcpy(b, l.data, l.len);
    put(b + l90 + 56, usz + 1, 8);
    expect_refused(b, l.len, "LZ4 entry one byte longer than its output");
    memcpy(b, l.data, l.len);
    put(b + l90 + 40, vgpu_rd64(l.data + l90 + 40) | VGPU_FATBIN_FLAG_ZSTD, 8);
    expect_refused(b, l.len, "entry flagged both LZ4 and zstd");
    memcpy(b, l.data, l.len);
    for (size_t off = vgpu_rd16(b + 6); off + 64 <= l.len; off += vgpu_rd32(b + off + 4) + vgpu_rd64(b + off + 8))
        put(b + off, 7, 2); /* no entry of a known kind */
    expect_refused(b, l.len, "fatbin with no usable entry");

    {
        struct file nc = load("nocomp.fatbin");
        size_t e = entry_of(&nc, VGPU_FATBIN_KIND_ELF, 90), elf = e + vgpu_rd32(nc.data + e + 4);
        put(nc.data + elf + 0x28, vgpu_rd64(nc.data + e + 8), 8); /* section headers just past the entry */
        size_t sz;
        check(vgpu_image_size_bounded(nc.data, nc.len, &sz) == -1,
              "bounded size: fatbin whose plain ELF entry overruns itself refused");
        expect_refused(nc.data, nc.len, "fatbin whose chosen ELF entry overruns itself");
        free(nc.data);
    }

    /* prefixes of a real LZ4 stream, straight into the decoder */
    {
        const uint8_t *src = l.data + l90 + vgpu_rd32(l.data + l90 + 4);
        uint32_t csz = vgpu_rd32(l.data + l90 + 16);
        uint8_t *out = malloc(usz);
        size_t got;
        bool ok = vgpu_lz4_decode(src, csz, out, usz, &got) == 0 && got == usz;
        for (uint32_t len = 0; ok && len < csz; len++)
            ok = vgpu_lz4_decode(src, len, out, usz, &got) == -1 || got < usz;
        check(ok, "lz4: the real stream decodes, none of its %u prefixes decodes fully", csz);
        free(out);
    }

    memcpy(b, c.data, c.len);
    put(b + 0x3C, 0xFFFF, 2);
    expect_refused(b, c.len, "ELF with 65535 section headers");
    memcpy(b, c.data, c.len);
    put(b + 0x28, UINT64_MAX - 63, 8);
    expect_refused(b, c.len, "ELF section header table at 2^64-64");
    memcpy(b, c.data, c.len);
    put(b + 0x3A, 0, 2);
    expect_refused(b, c.len, "ELF section header entries of size 0");
    memcpy(b, c.data, c.len);
    put(b + 0x3E, 0xFFFE, 2);
    expect_refused(b, c.len, "ELF section name table index 65534");
    memcpy(b, c.data, c.len);
    put(b + 0x38, 0xFFFE, 2);
    expect_refused(b, c.len, "ELF with 65534 program headers");
    size_t shoff = vgpu_rd64(c.data + 0x28), sz;
    memcpy(b, c.data, c.len);
    put(b + shoff + 64 * 3 + 0x20, (uint64_t)1 << 40, 8); /* a section 1 TiB long */
    expect_refused(b, c.len, "ELF section of 1 TiB");
    size_t info = section_of(&c, ".nv.info.k_mixed", &sz);
    const uint8_t *kp = find_bytes(c.data + info, sz, "\x04\x17\x0c\x00", 4);
    check(info && kp, "fixture: .nv.info.k_mixed has a KPARAM_INFO record");
    if (kp) {
        size_t at = (size_t)(kp - c.data);
        memcpy(b, c.data, c.len);
        put(b + at + 8, 999, 2);
        expect_refused(b, c.len, "KPARAM_INFO ordinal 999");
        memcpy(b, c.data, c.len);
        put(b + at + 2, 0xFFFF, 2);
        expect_refused(b, c.len, "attribute length running past its section");
        memcpy(b, c.data, c.len);
        b[at] = 0x09;
        expect_refused(b, c.len, "attribute of unknown format");
        memcpy(b, c.data, c.len);
        put(b + at + 2, 4, 2); /* KPARAM record cut to 4 bytes; the rest then misparses or is short */
        struct vgpu_module_info m;
        char err[128];
        int rc = vgpu_module_parse(b, c.len, 90, &m, err, sizeof err);
        check(rc == -1, "short KPARAM_INFO record: refused (%s)", rc ? err : "accepted");
        if (rc == 0)
            vgpu_module_info_free(&m);
    }

    free(b);
    free(z.data);
    free(l.data);
    free(c.data);
}

/* ---- relocatable cubins and linked containers (the emu's cuLinkComplete output) ---- */

struct pieces {
    uint32_t kind[8], arch[8];
    size_t n;
};

static int count_piece(const struct vgpu_image_input *in, void *arg)
{
    struct pieces *p = arg;
    if (p->n < 8) {
        p->kind[p->n] = in->kind;
        p->arch[p->n] = in->arch;
    }
    p->n++;
    return 0;
}

static void test_linked(void)
{
    struct file rdc = load("krdc.cubin"), k90 = load("k90.cubin"), ptx = load("kernels.ptx"), multi = load("multi.fatbin");
    struct vgpu_module_info m;
    char err[256];
    int rc = vgpu_module_parse(rdc.data, rdc.len, 90, &m, err, sizeof err);
    check(rc == 0 && m.num_kernels == N_KERNELS && !vgpu_module_find_kernel(&m, "_Z6helperf"),
          "krdc.cubin: %u kernels, the relocatable device function helper() is none (%s)", rc ? 0 : m.num_kernels,
          rc ? err : "ok");
    vgpu_module_info_free(&m);

    static const char extra[] = ".version 8.0\n.target sm_90\n.address_size 64\n"
                                ".visible .entry extra_k(.param .u64 p, .param .u32 n)\n{\n\tret;\n}\n";
    struct vgpu_image_input in[2] = {
        {VGPU_FATBIN_KIND_ELF, 90, k90.data, k90.len},
        {VGPU_FATBIN_KIND_PTX, 0, extra, sizeof extra},
    };
    uint8_t *img = NULL;
    size_t len = 0, measured = 0;
    rc = vgpu_fatbin_write_linked(in, 2, &img, &len);
    check(rc == 0 && img, "linked container written (%zu bytes)", len);
    if (!img)
        return;
    rc = vgpu_image_size(img, &measured);
    check(vgpu_image_kind(img) == VGPU_IMAGE_FATBIN && rc == 0 && measured == len, "linked container measures %zu bytes",
          measured);
    rc = vgpu_image_size_bounded(img, len, &measured);
    check(rc == 0 && measured == len, "linked container is self-consistent");
    rc = vgpu_module_parse(img, len, 90, &m, err, sizeof err);
    check(rc == 0, "linked container parses (%s)", rc ? err : "ok");
    if (rc == 0) {
        const struct vgpu_kernel_info *x = vgpu_module_find_kernel(&m, "extra_k");
        check(m.num_kernels == N_KERNELS + 1 && x && x->num_params == 2 && vgpu_module_find_kernel(&m, "k_mixed"),
              "linked container: every kernel of both inputs (%u)", m.num_kernels);
        check(m.num_globals == 3 && vgpu_module_find_global(&m, "g_init"), "linked container: the cubin's globals");
        check(m.sm == 90 && m.loadable && m.from_ptx, "linked container: sm %u, loadable, has PTX", m.sm);
    }
    vgpu_module_info_free(&m);
    rc = vgpu_module_parse(img, len, 80, &m, err, sizeof err);
    check(rc == 0 && !m.loadable, "linked container: its sm_90 cubin cannot run on sm_80");
    vgpu_module_info_free(&m);

    struct pieces pc = {{0}, {0}, 0};
    rc = vgpu_image_inputs(img, len, 90, count_piece, &pc, err, sizeof err);
    check(rc == 0 && pc.n == 2 && pc.kind[0] == VGPU_FATBIN_KIND_ELF && pc.arch[0] == 90 &&
              pc.kind[1] == VGPU_FATBIN_KIND_PTX,
          "inputs of a linked container: each entry (%zu)", pc.n);
    pc.n = 0;
    rc = vgpu_image_inputs(multi.data, multi.len, 90, count_piece, &pc, err, sizeof err);
    check(rc == 0 && pc.n == 1 && pc.kind[0] == VGPU_FATBIN_KIND_ELF && pc.arch[0] == 90,
          "inputs of an nvcc fatbin: the entry a load chooses (%zu)", pc.n);
    pc.n = 0;
    rc = vgpu_image_inputs(ptx.data, ptx.len, 90, count_piece, &pc, err, sizeof err);
    check(rc == 0 && pc.n == 1 && pc.kind[0] == VGPU_FATBIN_KIND_PTX, "inputs of PTX text: itself");
    check(vgpu_image_inputs("garbage", 8, 90, count_piece, &pc, err, sizeof err) != 0, "inputs of garbage: refused");
    free(img);

    /* the same kernels twice: a link may not define a symbol twice */
    in[1] = (struct vgpu_image_input){VGPU_FATBIN_KIND_PTX, 0, ptx.data, ptx.len};
    img = NULL;
    if (vgpu_fatbin_write_linked(in, 2, &img, &len) == 0) {
        rc = vgpu_module_parse(img, len, 90, &m, err, sizeof err);
        check(rc != 0 && strstr(err, "two inputs"), "duplicate definitions refused (%s)", rc ? err : "accepted");
        vgpu_module_info_free(&m);
        /* hostile variants of a linked container fail cleanly */
        for (size_t cut = 0; cut < len; cut += 7) {
            rc = vgpu_module_parse(img, cut, 90, &m, err, sizeof err);
            vgpu_module_info_free(&m);
        }
        check(true, "truncated linked containers: no crash");
    }
    free(img);
    free(rdc.data);
    free(k90.data);
    free(ptx.data);
    free(multi.data);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];

    test_compression_flags();
    test_sizes();
    /* fixture, want_sm, sm chosen, ELF (not PTX), loadable by a real device of want_sm */
    parse_fixture("plain.fatbin", 90, 90, true, true);
    parse_fixture("multi.fatbin", 90, 90, true, true);
    parse_fixture("multi.fatbin", 0, 90, true, true);
    parse_fixture("multi.fatbin", 89, 75, true, false); /* sm_75 SASS cannot run on sm_89, PTX is compute_90 */
    parse_fixture("zstd.fatbin", 90, 90, true, true);
    parse_fixture("zstd.fatbin", 75, 75, true, true);
    parse_fixture("lz4.fatbin", 90, 90, true, true);
    parse_fixture("lz4.fatbin", 80, 75, true, false);
    parse_fixture("nocomp.fatbin", 90, 90, true, true);
    parse_fixture("k90.cubin", 90, 90, true, true);
    parse_fixture("k75.cubin", 90, 75, true, false);
    parse_fixture("k75.cubin", 75, 75, true, true);
    parse_fixture("kernels.ptx", 90, 0, false, true);
    parse_fixture("plain.fatbin", 80, 0, false, false); /* no ELF <= sm_80: the zstd-compressed compute_90 PTX */
    parse_fixture("ptx_lz4.fatbin", 90, 0, false, true); /* PTX only, LZ4 */
    test_select();
    test_zstd_loader();
    test_ptx_text();
    test_lz4();
    test_absurd();
    test_linked();
    fuzz_file("k90.cubin", 4000, true, true);
    fuzz_file("lz4.fatbin", 2000, false, true);
    fuzz_file("zstd.fatbin", 2000, false, true);
    fuzz_file("nocomp.fatbin", 2000, false, true);
    fuzz_file("kernels.ptx", 2000, false, false);

    printf("%d checks, %d failed\n", g_checks, g_failures);
    return g_failures != 0;
}

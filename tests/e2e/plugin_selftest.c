/*
 * Self-test of the end-to-end CPU kernel plugins, without a daemon:
 *
 *     plugin_selftest PLUGIN.so [PLUGIN.so...]
 *
 * dlopens the plugins, calls each vgpu_emu_<kernel> on host buffers exactly as the
 * emu backend would (params[i] points to argument i's bytes, device pointers are
 * host pointers) and compares the results with independent host computations,
 * including guard elements the kernels must not touch.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_types.h"
#include "vgpu/emu_kernel.h"

static void *g_handles[16];
static int g_nhandles, g_checks, g_failed;

static void check(int ok, const char *name, const char *detail)
{
    g_checks++;
    if (!ok)
        g_failed++;
    printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name, ok || !detail ? "" : ": ", ok || !detail ? "" : detail);
}

static vgpu_emu_kernel_fn find(const char *kernel)
{
    char sym[512];
    snprintf(sym, sizeof sym, "%s%s", VGPU_EMU_KERNEL_PREFIX, kernel);
    for (int i = 0; i < g_nhandles; i++) {
        void *p = dlsym(g_handles[i], sym);
        if (p) {
            vgpu_emu_kernel_fn fn;
            memcpy(&fn, &p, sizeof fn);
            return fn;
        }
    }
    char buf[600];
    snprintf(buf, sizeof buf, "no symbol %s in the plugins", sym);
    check(0, kernel, buf);
    return NULL;
}

static struct vgpu_emu_launch launch(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                                     unsigned shmem)
{
    struct vgpu_emu_launch l = {{gx, gy, gz}, {bx, by, bz}, shmem, NULL};
    return l;
}

static uint64_t g_s = 88172645463325252ull;
static unsigned rnd(void)
{
    g_s ^= g_s << 13;
    g_s ^= g_s >> 7;
    g_s ^= g_s << 17;
    return (unsigned)(g_s >> 16);
}

#define GUARD 0xA5A5A5A5u

/* ------------------------------------------------------------------------------ */
/* rt_basic kernels */

static void t_vec_add(void)
{
    vgpu_emu_kernel_fn fn = find("_Z7vec_addPKfS0_Pfi");
    if (!fn)
        return;
    enum { N = 1000 };
    float a[N], b[N], c[N + 24];
    for (int i = 0; i < N; i++)
        a[i] = (float)rnd() / 3.0f, b[i] = -(float)rnd() / 7.0f;
    for (int i = 0; i < N + 24; i++)
        c[i] = -1.0f;
    const float *pa = a, *pb = b;
    float *pc = c;
    int n = N;
    void *params[] = {&pa, &pb, &pc, &n};
    struct vgpu_emu_launch l = launch(4, 1, 1, 256, 1, 1, 0);
    fn(&l, params);
    int ok = 1;
    for (int i = 0; i < N; i++)
        ok = ok && c[i] == a[i] + b[i];
    for (int i = N; i < N + 24; i++)
        ok = ok && c[i] == -1.0f;
    check(ok, "rt.vec_add", NULL);
}

static void t_scale_fill(void)
{
    vgpu_emu_kernel_fn sc = find("_Z9k_scale_dPddi"), fi = find("_Z6k_fillIiEvPT_S0_i"),
                       fd = find("_Z6k_fillIdEvPT_S0_i");
    if (!sc || !fi || !fd)
        return;
    enum { N = 777 };
    double x[N + 1], want[N + 1], s = -1.000000123, *px = x;
    for (int i = 0; i <= N; i++)
        x[i] = want[i] = (double)(int)(rnd() % 2000001u - 1000000) / 7.0;
    for (int i = 0; i < N; i++)
        want[i] = x[i] * s;
    int n = N;
    void *p1[] = {&px, &s, &n};
    struct vgpu_emu_launch l = launch(2, 1, 1, 512, 1, 1, 0);
    sc(&l, p1);
    check(memcmp(x, want, sizeof x) == 0, "rt.k_scale_d", NULL);

    int xi[N + 1], *pi = xi, v = -7;
    for (int i = 0; i <= N; i++)
        xi[i] = 5;
    void *p2[] = {&pi, &v, &n};
    l = launch(7, 1, 1, 128, 1, 1, 0);
    fi(&l, p2);
    int ok = xi[N] == 5;
    for (int i = 0; i < N; i++)
        ok = ok && xi[i] == -7;
    check(ok, "rt.k_fill<int>", NULL);

    double dv = 2.5, *pd = x;
    int n1 = N - 1;
    x[N - 1] = 9.0;
    void *p3[] = {&pd, &dv, &n1};
    l = launch(1, 1, 1, 1024, 1, 1, 0);
    fd(&l, p3);
    ok = x[N - 1] == 9.0;
    for (int i = 0; i < N - 1; i++)
        ok = ok && x[i] == 2.5;
    check(ok, "rt.k_fill<double>", NULL);
}

static void t_grid(void)
{
    vgpu_emu_kernel_fn fn = find("_Z6k_gridPjii");
    if (!fn)
        return;
    enum { W = 100, H = 77, P = 2 };
    static unsigned out[W * H * P + 8];
    for (int i = 0; i < W * H * P + 8; i++)
        out[i] = GUARD;
    unsigned *po = out;
    int w = W, h = H;
    void *params[] = {&po, &w, &h};
    struct vgpu_emu_launch l = launch(7, 10, P, 16, 8, 1, 0);
    fn(&l, params);
    int ok = 1;
    for (int z = 0; z < P; z++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                unsigned block = ((unsigned)z * 10 + (unsigned)(y / 8)) * 7 + (unsigned)(x / 16);
                unsigned thread = (unsigned)(y % 8) * 16 + (unsigned)(x % 16);
                ok = ok && out[(z * H + y) * W + x] == ((block << 16) | thread);
            }
    for (int i = W * H * P; i < W * H * P + 8; i++)
        ok = ok && out[i] == GUARD;
    check(ok, "rt.k_grid", NULL);
}

static void t_block_sum(const char *kernel, const char *name)
{
    vgpu_emu_kernel_fn fn = find(kernel);
    if (!fn)
        return;
    enum { N = 1000, BS = 128, NB = (N + BS - 1) / BS };
    unsigned in[N], want[NB + 1], got[NB + 1];
    memset(want, 0, sizeof want);
    for (int i = 0; i < N; i++) {
        in[i] = rnd();
        want[i / BS] += in[i];
    }
    want[NB] = got[NB] = GUARD;
    const unsigned *pin = in;
    unsigned *pout = got;
    int n = N;
    void *params[] = {&pin, &pout, &n};
    struct vgpu_emu_launch l = launch(NB, 1, 1, BS, 1, 1, BS * 4);
    fn(&l, params);
    check(memcmp(got, want, sizeof got) == 0, name, NULL);
    char n2[128];
    snprintf(n2, sizeof n2, "%s_too_little_shared", name);
    l.shared_mem_bytes = BS * 4 - 4;
    fn(&l, params);
    check(got[0] == 0xDEADBEEFu && got[NB] == GUARD, n2, NULL);
}

static void sample_args(struct e2e_s24 *s24, struct e2e_s40 *s40, struct e2e_s3 *s3, struct e2e_a16 *a16)
{
    struct e2e_s24 a = {-3.25, -123456, 1.5e-3f, -9876543210LL};
    *s24 = a;
    memset(s40, 0, sizeof *s40);
    s40->a = 0x7ABCDEF0;
    s40->b = 6.02214076e23;
    s40->c = -100;
    s40->d = 0x0123456789ABCDEFLL;
    s40->e = -0.0f;
    s40->f = -32000;
    struct e2e_s3 b = {-1, 2, 127};
    *s3 = b;
    struct e2e_a16 c = {0xDEADBEEF, 1, 0x80000000u, 42};
    *a16 = c;
}

static void t_rt_args(void)
{
    vgpu_emu_kernel_fn fn = find("_Z6k_argsPyifd7e2e_s247e2e_s40c6e2e_s3s7e2e_a16cyh");
    if (!fn)
        return;
    struct e2e_s24 s24;
    struct e2e_s40 s40;
    struct e2e_s3 s3;
    struct e2e_a16 a16;
    sample_args(&s24, &s40, &s3, &a16);
    int i = -2147483000;
    float f = 3.14159274f;
    double d = -2.718281828459045;
    char c = -5, c2 = 'z';
    short sh = -12345;
    unsigned long long u64 = 0xFEDCBA9876543210ull, out[E2E_ARG_SLOTS], want[E2E_ARG_SLOTS], *po = out;
    unsigned char uc = 0xFE;
    memset(out, 0, sizeof out);
    /* the argument bytes in separate, deliberately unaligned buffers */
    unsigned char raw[13][64];
    const void *src[13] = {&po, &i, &f, &d, &s24, &s40, &c, &s3, &sh, &a16, &c2, &u64, &uc};
    const size_t sz[13] = {8, 4, 4, 8, 24, 40, 1, 3, 2, 16, 1, 8, 1};
    void *params[13];
    for (int k = 0; k < 13; k++) {
        memcpy(raw[k] + 1, src[k], sz[k]);
        params[k] = raw[k] + 1;
    }
    struct vgpu_emu_launch l = launch(2, 3, 1, 3, 2, 1, 0);
    fn(&l, params);
    /* independent expectation, slot by slot */
    memset(want, 0, sizeof want);
    want[0] = (unsigned long long)(long long)i;
    uint32_t u32;
    memcpy(&u32, &f, 4);
    want[1] = u32;
    memcpy(&want[2], &d, 8);
    memcpy(&want[3], &s24.a, 8);
    want[4] = (unsigned long long)(long long)s24.b;
    memcpy(&u32, &s24.c, 4);
    want[5] = u32;
    want[6] = (unsigned long long)s24.d;
    want[7] = (unsigned long long)(long long)s40.a;
    memcpy(&want[8], &s40.b, 8);
    want[9] = (unsigned long long)(long long)s40.c;
    want[10] = (unsigned long long)s40.d;
    memcpy(&u32, &s40.e, 4);
    want[11] = u32;
    want[12] = (unsigned long long)(long long)s40.f;
    want[13] = (unsigned long long)(long long)c;
    want[14] = (unsigned long long)(long long)s3.x;
    want[15] = (unsigned long long)(long long)s3.y;
    want[16] = (unsigned long long)(long long)s3.z;
    want[17] = (unsigned long long)(long long)sh;
    want[18] = a16.x;
    want[19] = a16.y;
    want[20] = a16.z;
    want[21] = a16.w;
    want[22] = (unsigned long long)(long long)c2;
    want[23] = u64;
    want[24] = uc;
    want[E2E_ARG_SUM_SLOT] = e2e_checksum(want, E2E_ARG_SUM_SLOT);
    want[E2E_ARG_THREADS_SLOT] = 36;
    int bad = -1;
    for (int k = 0; k < E2E_ARG_SLOTS && bad < 0; k++)
        if (out[k] != want[k])
            bad = k;
    char buf[128];
    snprintf(buf, sizeof buf, "slot %d", bad);
    check(bad < 0 && want[4] == 0xFFFFFFFFFFFE1DC0ull && want[13] == 0xFFFFFFFFFFFFFFFBull, "rt.k_args", buf);
}

static void t_global_rw(void)
{
    vgpu_emu_kernel_fn fn = find("_Z11k_global_rwPiS_i");
    if (!fn)
        return;
    enum { N = 256 };
    int g[N], init[N], out[N + 2];
    for (int i = 0; i < N; i++)
        g[i] = init[i] = (int)(rnd() % 100000u) - 50000;
    for (int i = 0; i < N + 2; i++)
        out[i] = 12345;
    int *po = out, *pg = g, n = N;
    void *params[] = {&po, &pg, &n};
    struct vgpu_emu_launch l = launch(4, 1, 1, 64, 1, 1, 0);
    fn(&l, params);
    int ok = out[N] == 1 && out[N + 1] == 12345;
    for (int i = 0; i < N; i++)
        ok = ok && out[i] == init[i] && g[i] == init[i] * 3 + 1;
    check(ok, "rt.k_global_rw", NULL);
}

static void t_hash(const char *kernel, const char *name)
{
    vgpu_emu_kernel_fn fn = find(kernel);
    if (!fn)
        return;
    enum { N = 3001 };
    unsigned d[N + 1], init[N], key = 0x1234567u;
    for (int i = 0; i < N; i++)
        d[i] = init[i] = rnd();
    d[N] = GUARD;
    unsigned *pd = d;
    int n = N;
    void *params[] = {&pd, &key, &n};
    struct vgpu_emu_launch l = launch((N + 255) / 256, 1, 1, 256, 1, 1, 0);
    fn(&l, params);
    int ok = d[N] == GUARD;
    for (int i = 0; i < N; i++)
        ok = ok && d[i] == init[i] * 2654435761u + key + (unsigned)i;
    check(ok, name, NULL);
}

/* l_apply (drv_link.c): link_mix of each element with k + i, computed here independently */
static void t_link_apply(void)
{
    vgpu_emu_kernel_fn fn = find("l_apply");
    if (!fn)
        return;
    enum { N = 1000 };
    unsigned d[N + 1], init[N], key = 0xA5A5u;
    for (int i = 0; i < N; i++)
        d[i] = init[i] = rnd();
    d[N] = GUARD;
    unsigned *pd = d;
    int n = N;
    void *params[] = {&pd, &key, &n};
    struct vgpu_emu_launch l = launch((N + 127) / 128, 1, 1, 128, 1, 1, 0);
    fn(&l, params);
    int ok = d[N] == GUARD;
    for (int i = 0; i < N; i++) {
        unsigned h = init[i] * 2246822519u;
        ok = ok && d[i] == (h ^ (h >> 13)) + key + (unsigned)i;
    }
    check(ok, "drv.l_apply", NULL);
}

/* ------------------------------------------------------------------------------ */
/* drv_basic kernels */

static void t_fill(void)
{
    vgpu_emu_kernel_fn fn = find("d_fill");
    if (!fn)
        return;
    enum { N = 100003 };
    static unsigned p[N + 1];
    p[N] = GUARD;
    unsigned *pp = p, v = 0x10000000u;
    int n = N;
    void *params[] = {&pp, &v, &n};
    struct vgpu_emu_launch l = launch(37, 1, 1, 256, 1, 1, 0);
    fn(&l, params);
    int ok = p[N] == GUARD;
    for (int i = 0; i < N; i++)
        ok = ok && p[i] == v + (unsigned)i;
    check(ok, "drv.d_fill_grid_stride", NULL);
}

static void t_axpy(void)
{
    vgpu_emu_kernel_fn fn = find("d_axpy");
    if (!fn)
        return;
    enum { N = 999 };
    double x[N], y[N + 1], want[N + 1], a = -0.7071067811865476;
    for (int i = 0; i < N; i++) {
        x[i] = (double)(i % 1000 - 500) / 3.0;
        y[i] = (double)(i * 7 % 333) * 1.25;
        volatile double prod = a * x[i];
        want[i] = prod + y[i];
    }
    y[N] = want[N] = 42.0;
    double *py = y;
    const double *px = x;
    int n = N;
    void *params[] = {&py, &px, &a, &n};
    struct vgpu_emu_launch l = launch(4, 1, 1, 256, 1, 1, 0);
    fn(&l, params);
    check(memcmp(y, want, sizeof y) == 0, "drv.d_axpy", NULL);
}

static void t_drv_args(void)
{
    vgpu_emu_kernel_fn fn = find("d_args");
    if (!fn)
        return;
    char c = -7;
    struct e2e_s3 t = {'a', -128, 127};
    short s = -4321;
    double d = 1.0 / 3.0;
    int i = 0x7FFFFFFF;
    struct e2e_s24 st = {-0.0, -1, 65504.0f, 0x7FFFFFFFFFFFFFFFLL};
    struct e2e_s40 s40;
    memset(&s40, 0, sizeof s40);
    s40.a = -99;
    s40.b = 1e-300;
    s40.c = 'Q';
    s40.d = -1234567890123LL;
    s40.e = 0.1f;
    s40.f = 0x7FFF;
    float f = -1.5f;
    unsigned char uc = 0x81;
    struct e2e_a16 a = {1, 0xFFFFFFFFu, 0x12345678, 0};
    unsigned long long out[E2E_ARG_SLOTS], want[E2E_ARG_SLOTS], *po = out;
    /* one packed buffer, as the daemon would split a launch's `extra` buffer */
    unsigned char buf[128] __attribute__((aligned(16)));
    const size_t off[11] = {0, 8, 9, 12, 16, 24, 32, 56, 64, 104, 112};
    const void *src[11] = {&po, &c, &t, &s, &d, &i, &st, &f, &s40, &uc, &a};
    const size_t sz[11] = {8, 1, 3, 2, 8, 4, 24, 4, 40, 1, 16};
    void *params[11];
    memset(buf, 0xCC, sizeof buf);
    for (int k = 0; k < 11; k++) {
        memcpy(buf + off[k], src[k], sz[k]);
        params[k] = buf + off[k];
    }
    memset(out, 0, sizeof out);
    struct vgpu_emu_launch l = launch(1, 2, 3, 4, 5, 1, 0);
    fn(&l, params);
    e2e_encode_drv_args(want, c, t, s, d, i, st, f, s40, uc, a);
    want[E2E_ARG_THREADS_SLOT] = 120;
    int ok = memcmp(out, want, sizeof out) == 0 && want[1] == 'a' && want[2] == 0xFFFFFFFFFFFFFF80ull &&
             want[6] == 0x7FFFFFFF && want[19] == 1 && want[20] == 0xFFFFFFFFu;
    check(ok, "drv.d_args", NULL);
}

static void t_global_scale(void)
{
    vgpu_emu_kernel_fn fn = find("_Z14d_global_scalePiS_PKii");
    if (!fn)
        return;
    int g[64], init[64], coef[4] = {3, -1, 7, 100}, out[66];
    for (int k = 0; k < 64; k++)
        g[k] = init[k] = k * k - 40;
    out[65] = 777;
    int *po = out, *pg = g, n = 64;
    const int *pc = coef;
    void *params[] = {&po, &pg, &pc, &n};
    struct vgpu_emu_launch l = launch(2, 1, 1, 32, 1, 1, 0);
    fn(&l, params);
    int ok = out[64] == 1 && out[65] == 777;
    for (int k = 0; k < 64; k++)
        ok = ok && out[k] == init[k] * coef[k & 3] && g[k] == init[k] + 1;
    check(ok, "drv.d_global_scale", NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: plugin_selftest PLUGIN.so [PLUGIN.so...]\n");
        return 2;
    }
    for (int i = 1; i < argc && g_nhandles < 16; i++) {
        void *h = dlopen(argv[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "plugin_selftest: %s\n", dlerror());
            return 1;
        }
        g_handles[g_nhandles++] = h;
    }
    t_vec_add();
    t_scale_fill();
    t_grid();
    t_block_sum("_Z11k_block_sumPKjPji", "rt.k_block_sum");
    t_rt_args();
    t_global_rw();
    t_hash("_Z8k_threadPjji", "rt.k_thread");
    t_fill();
    t_axpy();
    t_drv_args();
    t_block_sum("d_block_sum", "drv.d_block_sum");
    t_hash("d_hash", "drv.d_hash");
    t_global_scale();
    t_link_apply();
    printf("plugin_selftest: %d checks, %d failed: %s\n", g_checks, g_failed, g_failed ? "FAIL" : "PASS");
    return g_failed ? 1 : 0;
}

/*
 * CPU versions of the kernels in tests/e2e/rt_basic.cu for `vgpud --backend emu`.
 * Each function is named vgpu_emu_<mangled kernel name> (names from readelf -s of
 * the sm_90 cubin; tests/e2e/check_symbols.sh verifies them) and reproduces the
 * kernel bit for bit over the whole grid.
 */
#include <stdint.h>
#include <string.h>

#include "../e2e_types.h"
#include "emu_plugin.h"

/* __global__ void vec_add(const float *a, const float *b, float *c, int n) */
EMU_KERNEL(_Z7vec_addPKfS0_Pfi)
{
    const float *a, *b;
    float *c;
    int n;
    ARG(a, 0);
    ARG(b, 1);
    ARG(c, 2);
    ARG(n, 3);
    struct emu_idx t = emu_idx_init(L);
    EMU_FOR_EACH_BLOCK(t) EMU_FOR_EACH_THREAD(t)
    {
        int i = emu_gid_x(&t);
        if (i < n)
            c[i] = a[i] + b[i];
    }
}

/* __global__ void k_scale_d(double *x, double s, int n) */
EMU_KERNEL(_Z9k_scale_dPddi)
{
    double *x, s;
    int n;
    ARG(x, 0);
    ARG(s, 1);
    ARG(n, 2);
    struct emu_idx t = emu_idx_init(L);
    EMU_FOR_EACH_BLOCK(t) EMU_FOR_EACH_THREAD(t)
    {
        int i = emu_gid_x(&t);
        if (i < n)
            x[i] = x[i] * s;
    }
}

/* template __global__ void k_fill<int>(int *p, int v, int n) */
EMU_KERNEL(_Z6k_fillIiEvPT_S0_i)
{
    int *p, v, n;
    ARG(p, 0);
    ARG(v, 1);
    ARG(n, 2);
    struct emu_idx t = emu_idx_init(L);
    EMU_FOR_EACH_BLOCK(t) EMU_FOR_EACH_THREAD(t)
    {
        int i = emu_gid_x(&t);
        if (i < n)
            p[i] = v;
    }
}

/* template __global__ void k_fill<double>(double *p, double v, int n) */
EMU_KERNEL(_Z6k_fillIdEvPT_S0_i)
{
    double *p, v;
    int n;
    ARG(p, 0);
    ARG(v, 1);
    ARG(n, 2);
    struct emu_idx t = emu_idx_init(L);
    EMU_FOR_EACH_BLOCK(t) EMU_FOR_EACH_THREAD(t)
    {
        int i = emu_gid_x(&t);
        if (i < n)
            p[i] = v;
    }
}

/* __global__ void k_grid(unsigned *out, int width, int height) */
EMU_KERNEL(_Z6k_gridPjii)
{
    unsigned *out;
    int width, height;
    ARG(out, 0);
    ARG(width, 1);
    ARG(height, 2);
    struct emu_idx t = emu_idx_init(L);
    EMU_FOR_EACH_BLOCK(t) EMU_FOR_EACH_THREAD(t)
    {
        unsigned x = t.bx * t.bdx + t.tx;
        unsigned y = t.by * t.bdy + t.ty;
        if (x < (unsigned)width && y < (unsigned)height)
            out[((size_t)t.bz * height + y) * width + x] =
                e2e_grid_value(t.bx, t.by, t.bz, t.gx, t.gy, t.tx, t.ty, t.bdx);
    }
}

/* __global__ void k_block_sum(const unsigned *in, unsigned *out, int n), dynamic shared memory */
EMU_KERNEL(_Z11k_block_sumPKjPji)
{
    const unsigned *in;
    unsigned *out;
    int n;
    ARG(in, 0);
    ARG(out, 1);
    ARG(n, 2);
    for (unsigned b = 0; b < L->grid_dim[0]; b++)
        out[b] = emu_block_sum(L, in, n, b);
}

/* __global__ void k_args(unsigned long long *out, int i, float f, double d, e2e_s24 s24, e2e_s40 s40,
 *                        char c, e2e_s3 s3, short sh, e2e_a16 a16, char c2, unsigned long long u64,
 *                        unsigned char uc) */
EMU_KERNEL(_Z6k_argsPyifd7e2e_s247e2e_s40c6e2e_s3s7e2e_a16cyh)
{
    unsigned long long *out, u64;
    int i;
    float f;
    double d;
    struct e2e_s24 s24;
    struct e2e_s40 s40;
    char c, c2;
    struct e2e_s3 s3;
    short sh;
    struct e2e_a16 a16;
    unsigned char uc;
    ARG(out, 0);
    ARG(i, 1);
    ARG(f, 2);
    ARG(d, 3);
    ARG(s24, 4);
    ARG(s40, 5);
    ARG(c, 6);
    ARG(s3, 7);
    ARG(sh, 8);
    ARG(a16, 9);
    ARG(c2, 10);
    ARG(u64, 11);
    ARG(uc, 12);
    unsigned long long threads = emu_total_threads(L);
    if (threads == 0)
        return;
    e2e_encode_rt_args(out, i, f, d, s24, s40, c, s3, sh, a16, c2, u64, uc);
    out[E2E_ARG_THREADS_SLOT] += threads;
}

/* __global__ void k_global_rw(int *out, int *gaddr, int n)
 * The kernel reads and updates the __device__ global g_vals; gaddr is its address
 * (the host passes cudaGetSymbolAddress(g_vals)), which is how the plugin reaches
 * it. The GPU kernel writes out[n] = (gaddr == g_vals), true by construction. */
EMU_KERNEL(_Z11k_global_rwPiS_i)
{
    int *out, *g, n;
    ARG(out, 0);
    ARG(g, 1);
    ARG(n, 2);
    struct emu_idx t = emu_idx_init(L);
    EMU_FOR_EACH_BLOCK(t) EMU_FOR_EACH_THREAD(t)
    {
        int i = emu_gid_x(&t);
        if (i < n) {
            out[i] = g[i];
            g[i] = (int)((unsigned)g[i] * 3u + 1u);
        }
        if (i == 0)
            out[n] = 1;
    }
}

/* __global__ void k_thread(unsigned *data, unsigned key, int n) */
EMU_KERNEL(_Z8k_threadPjji)
{
    unsigned *data, key;
    int n;
    ARG(data, 0);
    ARG(key, 1);
    ARG(n, 2);
    struct emu_idx t = emu_idx_init(L);
    EMU_FOR_EACH_BLOCK(t) EMU_FOR_EACH_THREAD(t)
    {
        int i = emu_gid_x(&t);
        if (i < n)
            data[i] = e2e_hash_step(data[i], key, (unsigned)i);
    }
}

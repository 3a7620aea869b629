/*
 * CPU versions of the kernels in tests/e2e/drv_kernels.cu (used by drv_basic.c) and
 * link_kernels_a.cu (drv_link.c) for `vgpud --backend emu`. Each function is named vgpu_emu_<kernel name> and
 * reproduces the kernel bit for bit over the whole grid.
 */
#include <stdint.h>
#include <string.h>

#include "../e2e_types.h"
#include "emu_plugin.h"

/* extern "C" __global__ void d_fill(unsigned *p, unsigned v, int n): grid-stride loop */
EMU_KERNEL(d_fill)
{
    unsigned *p, v;
    int n;
    ARG(p, 0);
    ARG(v, 1);
    ARG(n, 2);
    struct emu_idx t = emu_idx_init(L);
    unsigned stride = t.bdx * t.gx;
    if (stride == 0)
        return;
    EMU_FOR_EACH_BLOCK(t) EMU_FOR_EACH_THREAD(t)
    {
        for (int i = emu_gid_x(&t); i < n; i = (int)((unsigned)i + stride))
            p[i] = v + (unsigned)i;
    }
}

/* extern "C" __global__ void d_axpy(double *y, const double *x, double a, int n):
 * y[i] = a * x[i] + y[i], two separately rounded operations */
EMU_KERNEL(d_axpy)
{
    double *y, a;
    const double *x;
    int n;
    ARG(y, 0);
    ARG(x, 1);
    ARG(a, 2);
    ARG(n, 3);
    struct emu_idx t = emu_idx_init(L);
    EMU_FOR_EACH_BLOCK(t) EMU_FOR_EACH_THREAD(t)
    {
        int i = emu_gid_x(&t);
        if (i < n) {
            volatile double prod = a * x[i]; /* no contraction into an FMA */
            y[i] = prod + y[i];
        }
    }
}

/* extern "C" __global__ void d_args(unsigned long long *out, char c, e2e_s3 t, short s, double d, int i,
 *                                   e2e_s24 st, float f, e2e_s40 s40, unsigned char uc, e2e_a16 a) */
EMU_KERNEL(d_args)
{
    unsigned long long *out;
    char c;
    struct e2e_s3 t;
    short s;
    double d;
    int i;
    struct e2e_s24 st;
    float f;
    struct e2e_s40 s40;
    unsigned char uc;
    struct e2e_a16 a;
    ARG(out, 0);
    ARG(c, 1);
    ARG(t, 2);
    ARG(s, 3);
    ARG(d, 4);
    ARG(i, 5);
    ARG(st, 6);
    ARG(f, 7);
    ARG(s40, 8);
    ARG(uc, 9);
    ARG(a, 10);
    unsigned long long threads = emu_total_threads(L);
    if (threads == 0)
        return;
    e2e_encode_drv_args(out, c, t, s, d, i, st, f, s40, uc, a);
    out[E2E_ARG_THREADS_SLOT] += threads;
}

/* extern "C" __global__ void d_block_sum(const unsigned *in, unsigned *out, int n), dynamic shared memory */
EMU_KERNEL(d_block_sum)
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

/* extern "C" __global__ void d_hash(unsigned *data, unsigned key, int n) */
EMU_KERNEL(d_hash)
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

/* __global__ void d_global_scale(int *out, int *gaddr, const int *caddr, int n)
 * The kernel uses the module globals d_counter (__device__) and c_coef (__constant__);
 * the host passes their cuModuleGetGlobal addresses as gaddr and caddr, which is how
 * the plugin reaches them. out[n] = (gaddr == d_counter), true by construction. */
EMU_KERNEL(_Z14d_global_scalePiS_PKii)
{
    int *out, *g, n;
    const int *coef;
    ARG(out, 0);
    ARG(g, 1);
    ARG(coef, 2);
    ARG(n, 3);
    struct emu_idx t = emu_idx_init(L);
    EMU_FOR_EACH_BLOCK(t) EMU_FOR_EACH_THREAD(t)
    {
        int i = emu_gid_x(&t);
        if (i < n) {
            out[i] = (int)((unsigned)g[i] * (unsigned)coef[i & 3]);
            g[i] = (int)((unsigned)g[i] + 1u);
        }
        if (i == 0)
            out[n] = 1;
    }
}

/* extern "C" __global__ void d_fault(int *p, int v): *p = v by thread 0. An address in
 * the first 64 KiB stands for unmapped device memory: the emu reports a device fault
 * instead of writing there. */
EMU_KERNEL(d_fault)
{
    int *p, v;
    ARG(p, 0);
    ARG(v, 1);
    if ((uintptr_t)p < 65536u) {
        if (L->fault) *L->fault = VGPU_EMU_FAULT_ILLEGAL_ADDRESS;
        return;
    }
    *p = v;
}

/* extern "C" __global__ void l_apply(unsigned *p, unsigned k, int n) (link_kernels_a.cu, used by
 * drv_link.c): p[i] = link_mix(p[i], k + i), link_mix coming from link_kernels_b.cu */
EMU_KERNEL(l_apply)
{
    unsigned *p, k;
    int n;
    ARG(p, 0);
    ARG(k, 1);
    ARG(n, 2);
    struct emu_idx t = emu_idx_init(L);
    EMU_FOR_EACH_BLOCK(t) EMU_FOR_EACH_THREAD(t)
    {
        int i = emu_gid_x(&t);
        if (i < n)
            p[i] = e2e_link_mix(p[i], k + (unsigned)i);
    }
}

/*
 * Types and argument encodings shared by the end-to-end test programs
 * (rt_basic.cu, drv_kernels.cu, drv_basic.c, link_kernels_{a,b}.cu, drv_link.c), their
 * CPU plugins (plugins/ directory) and the plugin self-test. Plain C that nvcc also accepts in device code.
 *
 * The argument kernels write every argument they received into an output array
 * of E2E_ARG_SLOTS 64-bit slots (signed values sign-extended, floating-point values
 * as their bit patterns) plus a checksum, so a host can compare bit-exactly what
 * the GPU (or the emu plugin) saw with what it passed.
 */
#ifndef VGPU_E2E_TYPES_H
#define VGPU_E2E_TYPES_H

#include <string.h>

#ifdef __CUDACC__
#define E2E_HD __host__ __device__
#else
#define E2E_HD
#endif

#ifdef __cplusplus
#define E2E_STATIC_ASSERT(c, m) static_assert(c, m)
#define E2E_ALIGNOF(t) alignof(t)
#else
#define E2E_STATIC_ASSERT(c, m) _Static_assert(c, m)
#define E2E_ALIGNOF(t) _Alignof(t)
#endif

/* 3 bytes, alignment 1 */
struct e2e_s3 {
    char x, y, z;
};
/* 24 bytes, alignment 8 */
struct e2e_s24 {
    double a;
    int b;
    float c;
    long long d;
};
/* 40 bytes, alignment 8, holes after a, c and f */
struct e2e_s40 {
    int a;
    double b;
    char c;
    long long d;
    float e;
    short f;
};
/* 16 bytes, alignment 16 */
struct __attribute__((aligned(16))) e2e_a16 {
    unsigned x, y, z, w;
};

E2E_STATIC_ASSERT(sizeof(struct e2e_s3) == 3, "e2e_s3 size");
E2E_STATIC_ASSERT(sizeof(struct e2e_s24) == 24, "e2e_s24 size");
E2E_STATIC_ASSERT(sizeof(struct e2e_s40) == 40, "e2e_s40 size");
E2E_STATIC_ASSERT(sizeof(struct e2e_a16) == 16, "e2e_a16 size");
E2E_STATIC_ASSERT(E2E_ALIGNOF(struct e2e_a16) == 16, "e2e_a16 alignment");

#define E2E_ARG_SLOTS 32
/* slot that counts the threads that ran (every thread adds 1) */
#define E2E_ARG_THREADS_SLOT 31
/* slot holding the checksum of the slots before it */
#define E2E_ARG_SUM_SLOT 30

static inline E2E_HD unsigned long long e2e_fbits(float f)
{
    unsigned u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline E2E_HD unsigned long long e2e_dbits(double d)
{
    unsigned long long u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static inline E2E_HD unsigned long long e2e_sx(long long v) { return (unsigned long long)v; }

static inline E2E_HD unsigned long long e2e_checksum(const unsigned long long *o, int n)
{
    unsigned long long h = 1469598103934665603ULL;
    for (int i = 0; i < n; i++) {
        h ^= o[i];
        h *= 1099511628211ULL;
        h ^= h >> 29;
    }
    return h;
}

/* rt_basic's k_args(out, i, f, d, s24, s40, c, s3, sh, a16, c2, u64, uc) */
static inline E2E_HD void e2e_encode_rt_args(unsigned long long *o, int i, float f, double d, struct e2e_s24 s24,
                                             struct e2e_s40 s40, char c, struct e2e_s3 s3, short sh,
                                             struct e2e_a16 a16, char c2, unsigned long long u64, unsigned char uc)
{
    o[0] = e2e_sx(i);
    o[1] = e2e_fbits(f);
    o[2] = e2e_dbits(d);
    o[3] = e2e_dbits(s24.a);
    o[4] = e2e_sx(s24.b);
    o[5] = e2e_fbits(s24.c);
    o[6] = e2e_sx(s24.d);
    o[7] = e2e_sx(s40.a);
    o[8] = e2e_dbits(s40.b);
    o[9] = e2e_sx(s40.c);
    o[10] = e2e_sx(s40.d);
    o[11] = e2e_fbits(s40.e);
    o[12] = e2e_sx(s40.f);
    o[13] = e2e_sx(c);
    o[14] = e2e_sx(s3.x);
    o[15] = e2e_sx(s3.y);
    o[16] = e2e_sx(s3.z);
    o[17] = e2e_sx(sh);
    o[18] = a16.x;
    o[19] = a16.y;
    o[20] = a16.z;
    o[21] = a16.w;
    o[22] = e2e_sx(c2);
    o[23] = u64;
    o[24] = uc;
    for (int k = 25; k < E2E_ARG_SUM_SLOT; k++)
        o[k] = 0;
    o[E2E_ARG_SUM_SLOT] = e2e_checksum(o, E2E_ARG_SUM_SLOT);
}

/* drv_kernels' d_args(out, c, t, s, d, i, st, f, s40, uc, a) */
static inline E2E_HD void e2e_encode_drv_args(unsigned long long *o, char c, struct e2e_s3 t, short s, double d, int i,
                                              struct e2e_s24 st, float f, struct e2e_s40 s40, unsigned char uc,
                                              struct e2e_a16 a)
{
    o[0] = e2e_sx(c);
    o[1] = e2e_sx(t.x);
    o[2] = e2e_sx(t.y);
    o[3] = e2e_sx(t.z);
    o[4] = e2e_sx(s);
    o[5] = e2e_dbits(d);
    o[6] = e2e_sx(i);
    o[7] = e2e_dbits(st.a);
    o[8] = e2e_sx(st.b);
    o[9] = e2e_fbits(st.c);
    o[10] = e2e_sx(st.d);
    o[11] = e2e_fbits(f);
    o[12] = e2e_sx(s40.a);
    o[13] = e2e_dbits(s40.b);
    o[14] = e2e_sx(s40.c);
    o[15] = e2e_sx(s40.d);
    o[16] = e2e_fbits(s40.e);
    o[17] = e2e_sx(s40.f);
    o[18] = uc;
    o[19] = a.x;
    o[20] = a.y;
    o[21] = a.z;
    o[22] = a.w;
    for (int k = 23; k < E2E_ARG_SUM_SLOT; k++)
        o[k] = 0;
    o[E2E_ARG_SUM_SLOT] = e2e_checksum(o, E2E_ARG_SUM_SLOT);
}

/* Value a k_grid thread writes: its block's linear index and its linear thread index. */
static inline E2E_HD unsigned e2e_grid_value(unsigned bx, unsigned by, unsigned bz, unsigned gx, unsigned gy,
                                             unsigned tx, unsigned ty, unsigned bdx)
{
    unsigned block = (bz * gy + by) * gx + bx;
    unsigned thread = ty * bdx + tx;
    return (block << 16) | thread;
}

/* link_mix (link_kernels_b.cu), which l_apply (link_kernels_a.cu) calls across a link */
static inline E2E_HD unsigned e2e_link_mix(unsigned x, unsigned k)
{
    unsigned h = x * 2246822519u;
    return (h ^ (h >> 13)) + k;
}

/* k_thread / d_hash: one step of the per-element hash */
static inline E2E_HD unsigned e2e_hash_step(unsigned v, unsigned key, unsigned i)
{
    return v * 2654435761u + key + i;
}

#endif

/*
 * Helpers for the CPU kernel plugins of the end-to-end tests (see
 * include/vgpu/emu_kernel.h for the ABI). A plugin function runs a whole grid: the
 * loops below visit every block and every thread in the same index order as the
 * CUDA built-ins (x fastest). params[i] points to the bytes of argument i; ARG()
 * copies them out, so no alignment is assumed. Device pointers are host pointers.
 */
#ifndef VGPU_E2E_EMU_PLUGIN_H
#define VGPU_E2E_EMU_PLUGIN_H

#include <string.h>

#include "vgpu/emu_kernel.h"

#define EMU_EXPORT __attribute__((visibility("default")))

/* Declare and define vgpu_emu_<mangled name>(L, params). */
#define EMU_KERNEL(mangled)                                                                     \
    EMU_EXPORT void vgpu_emu_##mangled(const struct vgpu_emu_launch *L, void *const *params); \
    EMU_EXPORT void vgpu_emu_##mangled(const struct vgpu_emu_launch *L, void *const *params)

/* copy argument i into the variable var (its size must be the argument's) */
#define ARG(var, i) memcpy(&(var), params[(i)], sizeof(var))

/* gridDim/blockDim/blockIdx/threadIdx in the loops below */
struct emu_idx {
    unsigned gx, gy, gz;  /* gridDim */
    unsigned bdx, bdy, bdz; /* blockDim */
    unsigned bx, by, bz;  /* blockIdx */
    unsigned tx, ty, tz;  /* threadIdx */
};

static inline struct emu_idx emu_idx_init(const struct vgpu_emu_launch *L)
{
    struct emu_idx t;
    memset(&t, 0, sizeof t);
    t.gx = L->grid_dim[0];
    t.gy = L->grid_dim[1];
    t.gz = L->grid_dim[2];
    t.bdx = L->block_dim[0];
    t.bdy = L->block_dim[1];
    t.bdz = L->block_dim[2];
    return t;
}

#define EMU_FOR_EACH_BLOCK(t)                 \
    for ((t).bz = 0; (t).bz < (t).gz; (t).bz++) \
        for ((t).by = 0; (t).by < (t).gy; (t).by++) \
            for ((t).bx = 0; (t).bx < (t).gx; (t).bx++)

#define EMU_FOR_EACH_THREAD(t)                  \
    for ((t).tz = 0; (t).tz < (t).bdz; (t).tz++)  \
        for ((t).ty = 0; (t).ty < (t).bdy; (t).ty++)  \
            for ((t).tx = 0; (t).tx < (t).bdx; (t).tx++)

/* blockIdx.x * blockDim.x + threadIdx.x, as the int a kernel computes */
static inline int emu_gid_x(const struct emu_idx *t) { return (int)(t->bx * t->bdx + t->tx); }

static inline unsigned long long emu_total_threads(const struct vgpu_emu_launch *L)
{
    return (unsigned long long)L->grid_dim[0] * L->grid_dim[1] * L->grid_dim[2] * L->block_dim[0] *
           L->block_dim[1] * L->block_dim[2];
}

/*
 * The per-block tree reduction of k_block_sum / d_block_sum, step by step: between
 * two __syncthreads() no thread reads what another writes, so running the threads
 * of a phase one after the other gives the GPU's result, for any blockDim.x.
 * Returns 0xDEADBEEF if the launch has too little dynamic shared memory (on a GPU
 * that kernel would fault).
 */
static inline unsigned emu_block_sum(const struct vgpu_emu_launch *L, const unsigned *in, int n, unsigned block)
{
    unsigned sh[1024];
    unsigned bd = L->block_dim[0];
    if (bd > 1024 || (unsigned long long)L->shared_mem_bytes < (unsigned long long)bd * sizeof(unsigned))
        return 0xDEADBEEFu;
    for (unsigned t = 0; t < bd; t++) {
        unsigned i = block * bd + t;
        sh[t] = i < (unsigned)n ? in[i] : 0u;
    }
    for (unsigned s = bd / 2; s > 0; s >>= 1)
        for (unsigned t = 0; t < s; t++)
            sh[t] += sh[t + s];
    return sh[0];
}

#endif

/*
 * CPU versions of the kernels in tests/e2e/rt_work.cu for `vgpud --backend emu`
 * (names: readelf -s of the sm_90 cubin; tests/e2e/check_symbols.sh verifies them).
 */
#include "emu_plugin.h"

/* __global__ void k_add(int *p, int v, int n) */
EMU_KERNEL(_Z5k_addPiii)
{
    int *p, v, n;
    ARG(p, 0);
    ARG(v, 1);
    ARG(n, 2);
    struct emu_idx t = emu_idx_init(L);
    EMU_FOR_EACH_BLOCK(t) EMU_FOR_EACH_THREAD(t)
    {
        int i = emu_gid_x(&t);
        if (i < n) p[i] += v;
    }
}

/* __global__ void k_mul(int *p, int m, int n) */
EMU_KERNEL(_Z5k_mulPiii)
{
    int *p, m, n;
    ARG(p, 0);
    ARG(m, 1);
    ARG(n, 2);
    struct emu_idx t = emu_idx_init(L);
    EMU_FOR_EACH_BLOCK(t) EMU_FOR_EACH_THREAD(t)
    {
        int i = emu_gid_x(&t);
        if (i < n) p[i] *= m;
    }
}

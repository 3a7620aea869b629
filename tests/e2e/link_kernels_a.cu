// First input of drv_link.c's links: a kernel calling a device function that only the
// second input (link_kernels_b.cu) defines. nvcc -rdc=true builds it into relocatable PTX
// and a relocatable cubin, so the driver's linker must resolve link_mix. plugins/drv_kernels.c
// runs l_apply on the CPU for the emu backend.
#include "e2e_types.h"

extern __device__ unsigned link_mix(unsigned x, unsigned k);

extern "C" __global__ void l_apply(unsigned *p, unsigned k, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        p[i] = link_mix(p[i], k + (unsigned)i);
}

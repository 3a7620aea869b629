// Second input of drv_link.c's links: the device function link_kernels_a.cu's kernel calls
// (relocatable PTX, cubin and fatbin with nvcc -rdc=true). It defines no kernel.
#include "e2e_types.h"

__device__ unsigned link_mix(unsigned x, unsigned k) { return e2e_link_mix(x, k); }

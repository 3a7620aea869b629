// Kernels of the driver-API end-to-end test (drv_basic.c). nvcc turns this file
// into a fatbin (embedded in drv_basic), a raw cubin (also embedded) and PTX (for the
// GPU suite). plugins/drv_kernels.c implements each kernel on the CPU for the emu
// backend; keep the two in step. Arithmetic is integer or single IEEE operations
// (no contraction into FMA) so the CPU results are bit-identical.
#include "e2e_types.h"

// grid-stride fill: exercises gridDim when the grid is smaller than n
extern "C" __global__ void d_fill(unsigned *p, unsigned v, int n)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
        p[i] = v + (unsigned)i;
}

extern "C" __global__ void d_axpy(double *y, const double *x, double a, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = __dadd_rn(__dmul_rn(a, x[i]), y[i]);
}

// parameter offsets: out 0, c 8, t 9, s 12, d 16, i 24, st 32, f 56, s40 64, uc 104, a 112; 128 bytes
extern "C" __global__ void d_args(unsigned long long *out, char c, e2e_s3 t, short s, double d, int i, e2e_s24 st,
                                  float f, e2e_s40 s40, unsigned char uc, e2e_a16 a)
{
    if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0 && threadIdx.y == 0 &&
        threadIdx.z == 0)
        e2e_encode_drv_args(out, c, t, s, d, i, st, f, s40, uc, a);
    atomicAdd(&out[E2E_ARG_THREADS_SLOT], 1ULL);
}

extern "C" __global__ void d_block_sum(const unsigned *in, unsigned *out, int n)
{
    extern __shared__ unsigned sh[];
    unsigned t = threadIdx.x;
    unsigned i = blockIdx.x * blockDim.x + t;
    sh[t] = i < (unsigned)n ? in[i] : 0u;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s)
            sh[t] += sh[t + s];
        __syncthreads();
    }
    if (t == 0)
        out[blockIdx.x] = sh[0];
}

extern "C" __global__ void d_hash(unsigned *data, unsigned key, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        data[i] = e2e_hash_step(data[i], key, (unsigned)i);
}

// Module globals, reached by the host through cuModuleGetGlobal. The kernel also
// receives their addresses: on a GPU it only reports whether gaddr equals
// &d_counter, the emu plugin (which cannot see module globals) uses them.
#define D_COUNTER_N 64
__device__ int d_counter[D_COUNTER_N];
__constant__ int c_coef[4];

// C++-mangled on purpose: _Z14d_global_scalePiS_PKii
__global__ void d_global_scale(int *out, int *gaddr, const int *caddr, int n)
{
    (void)caddr;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = d_counter[i] * c_coef[i & 3];
        d_counter[i] += 1;
    }
    if (i == 0)
        out[n] = gaddr == d_counter ? 1 : 0;
}

// writes v through p: launched with a bogus p, a device fault (CUDA_ERROR_ILLEGAL_ADDRESS,
// sticky) for drv_pipeline.c
extern "C" __global__ void d_fault(int *p, int v)
{
    if (threadIdx.x == 0 && blockIdx.x == 0) *p = v;
}

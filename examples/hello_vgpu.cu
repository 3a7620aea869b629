// hello_vgpu: an ordinary CUDA program (nothing vgpu-specific in it) that prints what
// it sees: the device, its memory, the driver, and the result of a kernel. `make demo`
// runs it through `vgpu run`. Its kernel matches the emu backend's CPU plugin for
// vec_add (tests/e2e/plugins/rt_kernels.c), so it also runs without a GPU.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cuda_runtime.h>

__global__ void vec_add(const float *a, const float *b, float *c, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i] + b[i];
}

#define CHECK(call)                                                                    \
    do {                                                                               \
        cudaError_t e_ = (call);                                                       \
        if (e_ != cudaSuccess) {                                                       \
            std::printf("%s failed: %s\n", #call, cudaGetErrorString(e_));             \
            return 1;                                                                  \
        }                                                                              \
    } while (0)

int main()
{
    int count = 0, driver = 0, runtime = 0;
    CHECK(cudaGetDeviceCount(&count));
    CHECK(cudaDriverGetVersion(&driver));
    CHECK(cudaRuntimeGetVersion(&runtime));
    std::printf("CUDA devices: %d (driver %d.%d, runtime %d.%d)\n", count, driver / 1000, driver % 1000 / 10,
                runtime / 1000, runtime % 1000 / 10);
    for (int d = 0; d < count; d++) {
        cudaDeviceProp p;
        CHECK(cudaGetDeviceProperties(&p, d));
        char pci[32];
        CHECK(cudaDeviceGetPCIBusId(pci, sizeof pci, d));
        std::printf("device %d: %s, compute capability %d.%d, %d SMs, %.1f GiB, PCI %s\n", d, p.name, p.major,
                    p.minor, p.multiProcessorCount, p.totalGlobalMem / 1073741824.0, pci);
    }
    size_t free_b = 0, total_b = 0;
    CHECK(cudaMemGetInfo(&free_b, &total_b));
    std::printf("memory: %.1f GiB free of %.1f GiB\n", free_b / 1073741824.0, total_b / 1073741824.0);

    const int n = 1 << 20;
    std::vector<float> a(n), b(n), c(n);
    for (int i = 0; i < n; i++) {
        a[i] = (float)i;
        b[i] = 2.0f * (float)i;
    }
    float *da, *db, *dc;
    CHECK(cudaMalloc(&da, n * sizeof(float)));
    CHECK(cudaMalloc(&db, n * sizeof(float)));
    CHECK(cudaMalloc(&dc, n * sizeof(float)));
    CHECK(cudaMemcpy(da, a.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(db, b.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    cudaEvent_t start, stop;
    CHECK(cudaEventCreate(&start));
    CHECK(cudaEventCreate(&stop));
    CHECK(cudaEventRecord(start));
    vec_add<<<(n + 255) / 256, 256>>>(da, db, dc, n);
    CHECK(cudaGetLastError());
    CHECK(cudaEventRecord(stop));
    CHECK(cudaMemcpy(c.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, start, stop));
    int wrong = 0;
    for (int i = 0; i < n; i++) wrong += c[i] != 3.0f * (float)i;
    std::printf("vec_add of %d floats: %s (%d wrong), kernel %.3f ms\n", n, wrong ? "WRONG" : "correct", wrong, ms);
    CHECK(cudaFree(da));
    CHECK(cudaFree(db));
    CHECK(cudaFree(dc));
    return wrong ? 1 : 0;
}

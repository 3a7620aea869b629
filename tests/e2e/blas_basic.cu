// cuBLAS and cuBLASLt through vgpu (CUDA 13: libcublas.so.13, libcublasLt.so.13), without
// running a cuBLAS kernel (the emu backend has no CPU versions of them):
//   - cublasCreate (loads cuBLAS's kernel libraries, asks occupancy and cluster occupancy of
//     them), version, stream, pointer and math modes;
//   - host <-> device copies: cublasSetVector/GetVector (strided on either side),
//     cublasSetMatrix/GetMatrix (leading dimensions larger than the rows), their Async forms
//     on a stream, checked element by element and against the device layout read back
//     with cudaMemcpy2D;
//   - argument errors cuBLAS reports itself, and a copy from an unmapped device address
//     (CUBLAS_STATUS_MAPPING_ERROR) that leaves the handle working;
//   - cublasDestroy, and a second create/destroy cycle;
//   - cublasLtCreate, matmul descriptors and layouts, a heuristic query (cuBLASLt's kernel
//     attributes and export table 21318C60), cublasLtDestroy.
// One PASS/FAIL line per check (check.h), then a summary; exit 0 only if all passed.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "check.h"

#define CUBLAS_OK(name, call)                                                                    \
    do {                                                                                         \
        cublasStatus_t st_ = (call);                                                             \
        check(st_ == CUBLAS_STATUS_SUCCESS, (name), "%s (%d)", cublasGetStatusName(st_), (int)st_); \
    } while (0)

#define CUDA_OK(name, call)                                                                      \
    do {                                                                                         \
        cudaError_t e_ = (call);                                                                 \
        check(e_ == cudaSuccess, (name), "%s", cudaGetErrorName(e_));                             \
    } while (0)

static void expect_status(const char *name, cublasStatus_t got, cublasStatus_t want)
{
    check(got == want, name, "got %s (%d), want %s", cublasGetStatusName(got), (int)got, cublasGetStatusName(want));
}

static float value_of(int i) { return (float)(i * 3 + 1) * 0.5f; }

static void test_handle_and_modes(cublasHandle_t h, cudaStream_t s)
{
    int version = 0;
    CUBLAS_OK("blas.get_version", cublasGetVersion(h, &version));
    check(version / 10000 == CUBLAS_VER_MAJOR, "blas.version_major", "%d", version);
    int major = -1;
    CUBLAS_OK("blas.get_property", cublasGetProperty(MAJOR_VERSION, &major));
    check(major == CUBLAS_VER_MAJOR, "blas.property_major", "%d", major);

    cudaStream_t got = (cudaStream_t)(uintptr_t)1;
    CUBLAS_OK("blas.get_default_stream", cublasGetStream(h, &got));
    check(got == nullptr, "blas.default_stream_is_null", "%p", (void *)got);
    CUBLAS_OK("blas.set_stream", cublasSetStream(h, s));
    CUBLAS_OK("blas.get_stream", cublasGetStream(h, &got));
    check(got == s, "blas.stream_round_trip", "%p != %p", (void *)got, (void *)s);

    cublasPointerMode_t pm;
    CUBLAS_OK("blas.set_pointer_mode", cublasSetPointerMode(h, CUBLAS_POINTER_MODE_DEVICE));
    CUBLAS_OK("blas.get_pointer_mode", cublasGetPointerMode(h, &pm));
    check(pm == CUBLAS_POINTER_MODE_DEVICE, "blas.pointer_mode_round_trip", "%d", (int)pm);
    CUBLAS_OK("blas.reset_pointer_mode", cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
    cublasMath_t mm;
    CUBLAS_OK("blas.set_math_mode", cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH));
    CUBLAS_OK("blas.get_math_mode", cublasGetMathMode(h, &mm));
    check(mm == CUBLAS_TF32_TENSOR_OP_MATH, "blas.math_mode_round_trip", "%d", (int)mm);
    CUBLAS_OK("blas.reset_math_mode", cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
}

static void test_vectors(void)
{
    const int n = 100003;
    std::vector<float> x(n), y(n);
    for (int i = 0; i < n; i++) x[i] = value_of(i);
    float *d = nullptr;
    CUDA_OK("vector.malloc", cudaMalloc(&d, 2 * (size_t)n * sizeof(float)));

    // contiguous both ways
    CUBLAS_OK("vector.set", cublasSetVector(n, sizeof(float), x.data(), 1, d, 1));
    CUBLAS_OK("vector.get", cublasGetVector(n, sizeof(float), d, 1, y.data(), 1));
    check(memcmp(x.data(), y.data(), n * sizeof(float)) == 0, "vector.round_trip", nullptr);

    // every second host element to consecutive device elements, then out to every third
    const int m = n / 2;
    CUBLAS_OK("vector.set_strided_host", cublasSetVector(m, sizeof(float), x.data(), 2, d, 1));
    std::vector<float> z(3 * (size_t)m, -1.0f);
    CUBLAS_OK("vector.get_strided_host", cublasGetVector(m, sizeof(float), d, 1, z.data(), 3));
    bool ok = true;
    for (int i = 0; i < m && ok; i++)
        ok = z[3 * (size_t)i] == x[2 * (size_t)i] && z[3 * (size_t)i + 1] == -1.0f && z[3 * (size_t)i + 2] == -1.0f;
    check(ok, "vector.strided_host_round_trip", nullptr);

    // doubles at a device stride of 2: the device layout must show the gaps
    std::vector<double> xd(1000), yd(1000, 0.0), raw(2000, 0.0);
    for (int i = 0; i < 1000; i++) xd[i] = 1.0 / (i + 1);
    CUDA_OK("vector.clear", cudaMemset(d, 0, 2000 * sizeof(double))); // d holds 2n floats
    CUBLAS_OK("vector.set_strided_device", cublasSetVector(1000, sizeof(double), xd.data(), 1, d, 2));
    CUBLAS_OK("vector.get_strided_device", cublasGetVector(1000, sizeof(double), d, 2, yd.data(), 1));
    check(memcmp(xd.data(), yd.data(), 1000 * sizeof(double)) == 0, "vector.strided_device_round_trip", nullptr);
    CUDA_OK("vector.read_raw", cudaMemcpy(raw.data(), d, 2000 * sizeof(double), cudaMemcpyDeviceToHost));
    ok = true;
    for (int i = 0; i < 1000 && ok; i++) ok = raw[2 * i] == xd[i] && raw[2 * i + 1] == 0.0;
    check(ok, "vector.strided_device_layout", nullptr);

    // argument errors cuBLAS checks itself
    expect_status("vector.zero_increment", cublasSetVector(10, sizeof(float), x.data(), 0, d, 1),
                  CUBLAS_STATUS_INVALID_VALUE);
    expect_status("vector.zero_element_size", cublasGetVector(10, 0, d, 1, y.data(), 1), CUBLAS_STATUS_INVALID_VALUE);
    CUDA_OK("vector.free", cudaFree(d));
}

static void test_matrices(cudaStream_t s)
{
    const int rows = 37, cols = 23, lda = 40, ldd = 64, ldb = 45;
    std::vector<float> a((size_t)lda * cols), b((size_t)ldb * cols, -2.0f), raw((size_t)ldd * cols);
    for (int c = 0; c < cols; c++)
        for (int r = 0; r < lda; r++) a[(size_t)c * lda + r] = r < rows ? value_of(c * 1000 + r) : -7.0f;
    float *d = nullptr;
    CUDA_OK("matrix.malloc", cudaMalloc(&d, (size_t)ldd * cols * sizeof(float)));
    CUDA_OK("matrix.clear", cudaMemset(d, 0, (size_t)ldd * cols * sizeof(float)));

    CUBLAS_OK("matrix.set", cublasSetMatrix(rows, cols, sizeof(float), a.data(), lda, d, ldd));
    CUBLAS_OK("matrix.get", cublasGetMatrix(rows, cols, sizeof(float), d, ldd, b.data(), ldb));
    cublasStatus_t st;
    bool ok = true;
    for (int c = 0; c < cols && ok; c++)
        for (int r = 0; r < ldb && ok; r++)
            ok = b[(size_t)c * ldb + r] == (r < rows ? a[(size_t)c * lda + r] : -2.0f);
    check(ok, "matrix.round_trip", nullptr);
    CUDA_OK("matrix.read_raw", cudaMemcpy2D(raw.data(), ldd * sizeof(float), d, ldd * sizeof(float),
                                            ldd * sizeof(float), cols, cudaMemcpyDeviceToHost));
    ok = true;
    for (int c = 0; c < cols && ok; c++)
        for (int r = 0; r < ldd && ok; r++)
            ok = raw[(size_t)c * ldd + r] == (r < rows ? a[(size_t)c * lda + r] : 0.0f);
    check(ok, "matrix.device_layout", nullptr);

    // the Async forms on a stream, with pinned host buffers
    float *ha = nullptr, *hb = nullptr;
    CUDA_OK("matrix.host_alloc", cudaMallocHost(&ha, (size_t)rows * cols * sizeof(float)));
    CUDA_OK("matrix.host_alloc", cudaMallocHost(&hb, (size_t)rows * cols * sizeof(float)));
    if (ha && hb) {
        for (int i = 0; i < rows * cols; i++) ha[i] = value_of(7 * i);
        memset(hb, 0, (size_t)rows * cols * sizeof(float));
        CUBLAS_OK("matrix.set_async", cublasSetMatrixAsync(rows, cols, sizeof(float), ha, rows, d, ldd, s));
        CUBLAS_OK("matrix.get_async", cublasGetMatrixAsync(rows, cols, sizeof(float), d, ldd, hb, rows, s));
        CUDA_OK("matrix.sync", cudaStreamSynchronize(s));
        check(memcmp(ha, hb, (size_t)rows * cols * sizeof(float)) == 0, "matrix.async_round_trip", nullptr);

        memset(hb, 0, (size_t)rows * cols * sizeof(float));
        CUBLAS_OK("vector.set_async", cublasSetVectorAsync(rows * 2, sizeof(float), ha, 1, d, 1, s));
        CUBLAS_OK("vector.get_async", cublasGetVectorAsync(rows * 2, sizeof(float), d, 1, hb, 1, s));
        CUDA_OK("vector.sync", cudaStreamSynchronize(s));
        check(memcmp(ha, hb, (size_t)rows * 2 * sizeof(float)) == 0, "vector.async_round_trip", nullptr);
    }
    cudaFreeHost(ha);
    cudaFreeHost(hb);

    // documented argument errors; a leading dimension below the rows is left to the copy, which fails
    expect_status("matrix.lda_zero", cublasSetMatrix(rows, cols, sizeof(float), a.data(), 0, d, ldd),
                  CUBLAS_STATUS_INVALID_VALUE);
    expect_status("matrix.negative_rows", cublasGetMatrix(-1, cols, sizeof(float), d, ldd, b.data(), ldb),
                  CUBLAS_STATUS_INVALID_VALUE);
    st = cublasGetMatrix(rows, cols, sizeof(float), d, rows - 1, b.data(), ldb);
    check(st != CUBLAS_STATUS_SUCCESS, "matrix.ld_below_rows_fails", "%s", cublasGetStatusName(st));

    // a device address nothing is mapped at: the copy fails, nothing else does
    CUBLAS_OK("matrix.set_before_error", cublasSetMatrix(rows, cols, sizeof(float), a.data(), lda, d, ldd));
    float *bogus = (float *)(uintptr_t)0x10000;
    expect_status("matrix.unmapped_device_address",
                  cublasGetMatrix(rows, cols, sizeof(float), bogus, ldd, b.data(), ldb), CUBLAS_STATUS_MAPPING_ERROR);
    cudaGetLastError();
    std::fill(b.begin(), b.end(), -2.0f);
    CUBLAS_OK("matrix.get_after_error", cublasGetMatrix(rows, cols, sizeof(float), d, ldd, b.data(), ldb));
    ok = true;
    for (int c = 0; c < cols && ok; c++)
        for (int r = 0; r < rows && ok; r++) ok = b[(size_t)c * ldb + r] == a[(size_t)c * lda + r];
    check(ok, "matrix.round_trip_after_error", nullptr);
    CUDA_OK("matrix.free", cudaFree(d));
}

static void test_lt(void)
{
    cublasLtHandle_t lt = nullptr;
    CUBLAS_OK("lt.create", cublasLtCreate(&lt));
    if (!lt) return;
    check(cublasLtGetVersion() / 10000 == CUBLAS_VER_MAJOR, "lt.version_major", "%zu", cublasLtGetVersion());

    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    CUBLAS_OK("lt.matmul_desc_create", cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_OK("lt.layout_create", cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, 128, 64, 128));
    CUBLAS_OK("lt.layout_create", cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, 64, 96, 64));
    CUBLAS_OK("lt.layout_create", cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, 128, 96, 128));
    CUBLAS_OK("lt.preference_create", cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = 4 << 20;
    CUBLAS_OK("lt.preference_workspace",
              cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    if (op && la && lb && lc && pref) {
        cublasLtMatmulHeuristicResult_t res[4];
        int found = 0;
        CUBLAS_OK("lt.heuristic", cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 4, res, &found));
        check(found >= 1, "lt.heuristic_found_algorithms", "%d", found);
    }
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
    CUBLAS_OK("lt.destroy", cublasLtDestroy(lt));
}

int main(void)
{
    setvbuf(stdout, nullptr, _IOLBF, 0);
    cublasHandle_t h = nullptr;
    cublasStatus_t st = cublasCreate(&h);
    check(st == CUBLAS_STATUS_SUCCESS && h, "blas.create", "%s (%d)", cublasGetStatusName(st), (int)st);
    if (st != CUBLAS_STATUS_SUCCESS) return check_summary("blas_basic");

    cudaStream_t s = nullptr;
    CUDA_OK("blas.stream_create", cudaStreamCreate(&s));
    test_handle_and_modes(h, s);
    test_vectors();
    test_matrices(s);
    CUBLAS_OK("blas.destroy", cublasDestroy(h));

    // a second handle in the same process: cuBLAS's per-context state is reused
    h = nullptr;
    CUBLAS_OK("blas.create_again", cublasCreate(&h));
    if (h) {
        float one = 1.0f, back = 0.0f, *d = nullptr;
        CUDA_OK("blas.malloc_again", cudaMalloc(&d, sizeof one));
        CUBLAS_OK("blas.set_again", cublasSetVector(1, sizeof one, &one, 1, d, 1));
        CUBLAS_OK("blas.get_again", cublasGetVector(1, sizeof one, d, 1, &back, 1));
        check(back == one, "blas.round_trip_again", "%f", back);
        cudaFree(d);
        CUBLAS_OK("blas.destroy_again", cublasDestroy(h));
    }
    cudaStreamDestroy(s);

    test_lt();
    CUDA_OK("blas.device_synchronize", cudaDeviceSynchronize());
    return check_summary("blas_basic");
}

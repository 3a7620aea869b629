// GPU suite: cuBLAS and cuBLASLt GEMMs, run natively and through vgpu by tests/gpu/run.
// Each GEMM is checked against a double-precision CPU reference within a tolerance that
// suits its input type; the result's bytes are also hashed and printed as a `value` line,
// so the suite can tell whether vgpu's run computed bit-for-bit what the native run did
// (the same kernels on the same GPU with the same inputs must agree exactly).
//   - cublasSgemm (FP32), transposed and not, alpha/beta != 1/0, on a user stream;
//   - cublasGemmEx FP16 x FP16 -> FP32 with CUBLAS_COMPUTE_32F, and BF16 -> BF16;
//   - cublasGemmStridedBatchedEx, 4 batches of FP32;
//   - cublasLtMatmul FP32 with a bias epilogue (CUBLASLT_EPILOGUE_BIAS) and a workspace.
// Runs real cuBLAS kernels, so the emu backend cannot run it: CI only builds it.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#include "check.h"

#define CUDA_MUST(call)                                                                        \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            printf("FAIL %s: %s (line %d)\n", #call, cudaGetErrorName(e_), __LINE__);           \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)
#define BLAS_MUST(call)                                                                        \
    do {                                                                                       \
        cublasStatus_t s_ = (call);                                                            \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                     \
            printf("FAIL %s: %s (line %d)\n", #call, cublasGetStatusName(s_), __LINE__);        \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

// Deterministic inputs in [-1, 1), the same in every run.
static void fill(std::vector<float> &v, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (float &f : v) {
        x = x * 1664525u + 1013904223u;
        f = (float)((x >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
}

// FNV-1a over the result bytes: printed so native and vgpu runs can be compared exactly.
static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static void value(const char *name, const void *p, size_t n)
{
    printf("value %s %016llx\n", name, (unsigned long long)hash_bytes(p, n));
}

// C = alpha * op(A) * op(B) + beta * C, column-major, in double.
static void ref_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const std::vector<float> &A, int lda,
                     const std::vector<float> &B, int ldb, float beta, std::vector<double> &C, int ldc)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                double a = ta ? A[(size_t)i * lda + p] : A[(size_t)p * lda + i];
                double b = tb ? B[(size_t)p * ldb + j] : B[(size_t)j * ldb + p];
                s += a * b;
            }
            C[(size_t)j * ldc + i] = alpha * s + beta * C[(size_t)j * ldc + i];
        }
}

// Largest |got - want| relative to the scale of the sums (k terms of magnitude <= 1).
static double max_err(const float *got, const std::vector<double> &want, int k)
{
    double e = 0;
    for (size_t i = 0; i < want.size(); i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > e) e = d;
    }
    return e / sqrt((double)k);
}

template <class T> static T *upload(const std::vector<T> &h)
{
    T *d = nullptr;
    CUDA_MUST(cudaMalloc(&d, h.size() * sizeof(T)));
    CUDA_MUST(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

static void sgemm_case(cublasHandle_t h, cudaStream_t s, bool ta, bool tb, const char *name)
{
    const int m = 192, n = 160, k = 256;
    const int lda = ta ? k : m, ldb = tb ? n : k, ldc = m;
    std::vector<float> A((size_t)lda * (ta ? m : k)), B((size_t)ldb * (tb ? k : n)), C((size_t)ldc * n);
    fill(A, 1), fill(B, 2), fill(C, 3);
    std::vector<double> want(C.begin(), C.end());
    const float alpha = 0.75f, beta = -0.5f;
    ref_gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, want, ldc);
    float *dA = upload(A), *dB = upload(B), *dC = upload(C);
    BLAS_MUST(cublasSetStream(h, s));
    BLAS_MUST(cublasSgemm(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, dA, lda,
                          dB, ldb, &beta, dC, ldc));
    std::vector<float> got(C.size());
    CUDA_MUST(cudaMemcpyAsync(got.data(), dC, got.size() * sizeof(float), cudaMemcpyDeviceToHost, s));
    CUDA_MUST(cudaStreamSynchronize(s));
    double e = max_err(got.data(), want, k);
    check(e < 1e-5, name, "max scaled error %g", e);
    value(name, got.data(), got.size() * sizeof(float));
    cudaFree(dA), cudaFree(dB), cudaFree(dC);
}

static void gemm_ex_fp16(cublasHandle_t h)
{
    const int m = 128, n = 96, k = 512;
    std::vector<float> A((size_t)m * k), B((size_t)k * n);
    fill(A, 4), fill(B, 5);
    std::vector<__half> hA(A.size()), hB(B.size());
    for (size_t i = 0; i < A.size(); i++) hA[i] = __float2half(A[i]), A[i] = __half2float(hA[i]);
    for (size_t i = 0; i < B.size(); i++) hB[i] = __float2half(B[i]), B[i] = __half2float(hB[i]);
    std::vector<double> want((size_t)m * n, 0.0);
    ref_gemm(false, false, m, n, k, 1.0f, A, m, B, k, 0.0f, want, m);
    __half *dA = upload(hA), *dB = upload(hB);
    float *dC = nullptr;
    CUDA_MUST(cudaMalloc(&dC, want.size() * sizeof(float)));
    const float one = 1.0f, zero = 0.0f;
    BLAS_MUST(cublasSetStream(h, 0));
    BLAS_MUST(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, dA, CUDA_R_16F, m, dB, CUDA_R_16F, k, &zero, dC,
                           CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    std::vector<float> got(want.size());
    CUDA_MUST(cudaMemcpy(got.data(), dC, got.size() * sizeof(float), cudaMemcpyDeviceToHost));
    double e = max_err(got.data(), want, k);
    check(e < 1e-4, "gemm_ex.fp16_in_fp32_out", "max scaled error %g", e);
    value("gemm_ex.fp16_in_fp32_out", got.data(), got.size() * sizeof(float));
    cudaFree(dA), cudaFree(dB), cudaFree(dC);
}

static void gemm_ex_bf16(cublasHandle_t h)
{
    const int m = 64, n = 64, k = 128;
    std::vector<float> A((size_t)m * k), B((size_t)k * n);
    fill(A, 6), fill(B, 7);
    std::vector<__nv_bfloat16> hA(A.size()), hB(B.size());
    for (size_t i = 0; i < A.size(); i++) hA[i] = __float2bfloat16(A[i]), A[i] = __bfloat162float(hA[i]);
    for (size_t i = 0; i < B.size(); i++) hB[i] = __float2bfloat16(B[i]), B[i] = __bfloat162float(hB[i]);
    std::vector<double> want((size_t)m * n, 0.0);
    ref_gemm(false, false, m, n, k, 1.0f, A, m, B, k, 0.0f, want, m);
    __nv_bfloat16 *dA = upload(hA), *dB = upload(hB), *dC = nullptr;
    CUDA_MUST(cudaMalloc(&dC, want.size() * sizeof(__nv_bfloat16)));
    const float one = 1.0f, zero = 0.0f;
    BLAS_MUST(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, dA, CUDA_R_16BF, m, dB, CUDA_R_16BF, k, &zero,
                           dC, CUDA_R_16BF, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    std::vector<__nv_bfloat16> raw(want.size());
    CUDA_MUST(cudaMemcpy(raw.data(), dC, raw.size() * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost));
    std::vector<float> got(raw.size());
    for (size_t i = 0; i < raw.size(); i++) got[i] = __bfloat162float(raw[i]);
    double e = max_err(got.data(), want, k);
    check(e < 2e-2, "gemm_ex.bf16", "max scaled error %g", e); // bf16 output: 8 mantissa bits
    value("gemm_ex.bf16", raw.data(), raw.size() * sizeof(__nv_bfloat16));
    cudaFree(dA), cudaFree(dB), cudaFree(dC);
}

static void gemm_strided_batched(cublasHandle_t h)
{
    const int m = 32, n = 48, k = 64, batch = 4;
    std::vector<float> A((size_t)m * k * batch), B((size_t)k * n * batch);
    fill(A, 8), fill(B, 9);
    float *dA = upload(A), *dB = upload(B), *dC = nullptr;
    CUDA_MUST(cudaMalloc(&dC, (size_t)m * n * batch * sizeof(float)));
    const float one = 1.0f, zero = 0.0f;
    BLAS_MUST(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, dA, CUDA_R_32F, m,
                                         (long long)m * k, dB, CUDA_R_32F, k, (long long)k * n, &zero, dC, CUDA_R_32F,
                                         m, (long long)m * n, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    std::vector<float> got((size_t)m * n * batch);
    CUDA_MUST(cudaMemcpy(got.data(), dC, got.size() * sizeof(float), cudaMemcpyDeviceToHost));
    double e = 0;
    for (int b = 0; b < batch; b++) {
        std::vector<float> a(A.begin() + (size_t)b * m * k, A.begin() + (size_t)(b + 1) * m * k);
        std::vector<float> bb(B.begin() + (size_t)b * k * n, B.begin() + (size_t)(b + 1) * k * n);
        std::vector<double> want((size_t)m * n, 0.0);
        ref_gemm(false, false, m, n, k, 1.0f, a, m, bb, k, 0.0f, want, m);
        double eb = max_err(got.data() + (size_t)b * m * n, want, k);
        if (eb > e) e = eb;
    }
    check(e < 1e-5, "gemm_strided_batched.fp32", "max scaled error %g", e);
    value("gemm_strided_batched.fp32", got.data(), got.size() * sizeof(float));
    cudaFree(dA), cudaFree(dB), cudaFree(dC);
}

#define LT_MUST(call) BLAS_MUST(call)

static void lt_matmul_bias(void)
{
    const int m = 128, n = 64, k = 96;
    std::vector<float> A((size_t)m * k), B((size_t)k * n), bias(m);
    fill(A, 10), fill(B, 11), fill(bias, 12);
    std::vector<double> want((size_t)m * n, 0.0);
    ref_gemm(false, false, m, n, k, 1.0f, A, m, B, k, 0.0f, want, m);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) want[(size_t)j * m + i] += bias[i];
    float *dA = upload(A), *dB = upload(B), *dBias = upload(bias), *dD = nullptr;
    CUDA_MUST(cudaMalloc(&dD, want.size() * sizeof(float)));
    size_t ws_size = 4 << 20;
    void *ws = nullptr;
    CUDA_MUST(cudaMalloc(&ws, ws_size));

    cublasLtHandle_t lt;
    LT_MUST(cublasLtCreate(&lt));
    cublasLtMatmulDesc_t op;
    LT_MUST(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    LT_MUST(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    LT_MUST(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &dBias, sizeof dBias));
    cublasLtMatrixLayout_t la, lb, ld;
    LT_MUST(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, m, k, m));
    LT_MUST(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, k, n, k));
    LT_MUST(cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, m, n, m));
    cublasLtMatmulPreference_t pref;
    LT_MUST(cublasLtMatmulPreferenceCreate(&pref));
    LT_MUST(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_size,
                                                 sizeof ws_size));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    LT_MUST(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, ld, ld, pref, 1, &heur, &found));
    check(found >= 1, "lt.heuristic", "no algorithm found");
    if (found >= 1) {
        const float one = 1.0f, zero = 0.0f;
        LT_MUST(cublasLtMatmul(lt, op, &one, dA, la, dB, lb, &zero, dD, ld, dD, ld, &heur.algo, ws, ws_size, 0));
        std::vector<float> got(want.size());
        CUDA_MUST(cudaMemcpy(got.data(), dD, got.size() * sizeof(float), cudaMemcpyDeviceToHost));
        double e = max_err(got.data(), want, k);
        check(e < 1e-5, "lt.matmul_bias.fp32", "max scaled error %g", e);
        value("lt.matmul_bias.fp32", got.data(), got.size() * sizeof(float));
    }
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(ld);
    cublasLtMatmulDescDestroy(op);
    cublasLtDestroy(lt);
    cudaFree(dA), cudaFree(dB), cudaFree(dBias), cudaFree(dD), cudaFree(ws);
}

int main(void)
{
    cublasHandle_t h;
    BLAS_MUST(cublasCreate(&h));
    // Exact comparisons between runs need the same kernels: no TF32 shortcuts.
    BLAS_MUST(cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH));
    cudaStream_t s;
    CUDA_MUST(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    sgemm_case(h, s, false, false, "sgemm.nn");
    sgemm_case(h, s, true, false, "sgemm.tn");
    sgemm_case(h, s, false, true, "sgemm.nt");
    gemm_ex_fp16(h);
    gemm_ex_bf16(h);
    gemm_strided_batched(h);
    lt_matmul_bias();
    BLAS_MUST(cublasDestroy(h));
    CUDA_MUST(cudaStreamDestroy(s));
    return check_summary("blas_gemm");
}

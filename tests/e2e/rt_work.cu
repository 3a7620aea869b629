// End-to-end test of the runtime features real workloads lean on, through vgpu
// (run by run_e2e.sh under `vgpu run`), built with nvcc and static cudart:
//   - host functions and stream callbacks: stream order, after the device-to-host copy
//     before them has landed, across streams, and a callback that calls CUDA itself;
//   - CUDA graphs: stream capture (global, thread-local and relaxed modes, cross-stream
//     through events, with a host function), capture queries, instantiate variants,
//     upload, replay, exec update; explicit construction (kernel, memset, memcpy, host,
//     event record, child-graph and empty nodes); kernel node parameters read back
//     (kernelParams must point into this process) and changed on the graph and on the
//     executable graph.
// One `PASS name` / `FAIL name: why` line per check; exit status 0 iff all passed.
// The emu backend runs the kernels from tests/e2e/plugins/work_kernels.c.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

__global__ void k_add(int *p, int v, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        p[i] += v;
}

__global__ void k_mul(int *p, int m, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        p[i] *= m;
}

// ---------------------------------------------------------------------------------
// reporting

static std::mutex g_print_lock;
static int g_checks, g_failed;

static bool check(bool ok, const char *name, const char *fmt = nullptr, ...)
{
    std::lock_guard<std::mutex> lock(g_print_lock);
    g_checks++;
    if (ok) {
        printf("PASS %s\n", name);
    } else {
        g_failed++;
        printf("FAIL %s", name);
        if (fmt) {
            printf(": ");
            va_list ap;
            va_start(ap, fmt);
            vprintf(fmt, ap);
            va_end(ap);
        }
        printf("\n");
    }
    fflush(stdout);
    return ok;
}

#define TRY(name, call)                                                                                  \
    do {                                                                                                 \
        cudaError_t e_ = (call);                                                                         \
        if (e_ != cudaSuccess) {                                                                         \
            check(false, name, "%s -> %s (%s)", #call, cudaGetErrorName(e_), cudaGetErrorString(e_));   \
            return;                                                                                      \
        }                                                                                                \
    } while (0)

static const int N = 1000;
static const unsigned B = 128;
static const unsigned G = (N + B - 1) / B;

// every element equal to want?
static bool all_equal(const int *h, int want, int *bad_index)
{
    for (int i = 0; i < N; i++)
        if (h[i] != want) {
            *bad_index = i;
            return false;
        }
    return true;
}

static bool device_all_equal(const int *d, int want, const char *name)
{
    std::vector<int> h(N);
    cudaError_t e = cudaMemcpy(h.data(), d, N * sizeof(int), cudaMemcpyDeviceToHost);
    if (e != cudaSuccess)
        return check(false, name, "cudaMemcpy: %s", cudaGetErrorName(e));
    int bad = -1;
    bool ok = all_equal(h.data(), want, &bad);
    return check(ok, name, "element %d is %d, want %d", bad, ok ? 0 : h[bad], want);
}

// ---------------------------------------------------------------------------------
// host functions

struct seen_value {
    const int *pinned; // read by the host function
    int value;         // what it saw
    int order;         // when it ran
};
static std::atomic<int> g_order{0};

static void CUDART_CB read_pinned(void *arg)
{
    seen_value *s = (seen_value *)arg;
    s->value = s->pinned[N - 1];
    s->order = ++g_order;
}

struct callback_seen {
    cudaStream_t stream;
    cudaError_t status;
    int calls;
};
static void CUDART_CB stream_callback(cudaStream_t stream, cudaError_t status, void *arg)
{
    callback_seen *c = (callback_seen *)arg;
    c->stream = stream;
    c->status = status;
    c->calls++;
}

// A host function that itself calls CUDA (documented as not allowed, but real code
// does it; the guest must not deadlock).
struct calls_cuda {
    int count;
    cudaError_t err;
};
static void CUDART_CB call_cuda(void *arg)
{
    calls_cuda *c = (calls_cuda *)arg;
    c->err = cudaGetDeviceCount(&c->count);
}

static void test_host_functions()
{
    int *d = nullptr, *pinned = nullptr;
    cudaStream_t s1, s2;
    TRY("hostfn.setup", cudaMalloc(&d, N * sizeof(int)));
    TRY("hostfn.setup", cudaMallocHost(&pinned, N * sizeof(int)));
    TRY("hostfn.setup", cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
    TRY("hostfn.setup", cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));

    // kernel -> copy to pinned -> host function reads pinned; repeated, in order
    seen_value seen[3];
    TRY("hostfn.setup", cudaMemsetAsync(d, 0, N * sizeof(int), s1));
    for (int k = 0; k < 3; k++) {
        k_add<<<G, B, 0, s1>>>(d, 10, N);
        TRY("hostfn.copy", cudaMemcpyAsync(pinned, d, N * sizeof(int), cudaMemcpyDeviceToHost, s1));
        seen[k] = {pinned, -1, 0};
        TRY("hostfn.launch", cudaLaunchHostFunc(s1, read_pinned, &seen[k]));
    }
    TRY("hostfn.sync", cudaStreamSynchronize(s1));
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "hostfn.sees_copy_%d", k);
        check(seen[k].value == 10 * (k + 1), name, "saw %d, want %d", seen[k].value, 10 * (k + 1));
        snprintf(name, sizeof name, "hostfn.order_%d", k);
        check(seen[k].order == k + 1, name, "ran as %d, want %d", seen[k].order, k + 1);
    }

    // the stream waits for the host function: work after it sees its effect
    callback_seen cb = {nullptr, cudaErrorUnknown, 0};
    TRY("hostfn.callback", cudaStreamAddCallback(s1, stream_callback, &cb, 0));
    TRY("hostfn.callback", cudaStreamSynchronize(s1));
    check(cb.calls == 1 && cb.stream == s1 && cb.status == cudaSuccess, "hostfn.stream_callback",
          "calls %d, stream %p (want %p), status %s", cb.calls, (void *)cb.stream, (void *)s1,
          cudaGetErrorName(cb.status));

    // across streams: s2 waits on an event recorded after s1's host function
    cudaEvent_t ev;
    TRY("hostfn.cross", cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    seen_value cross = {pinned, -1, 0};
    k_add<<<G, B, 0, s1>>>(d, 1, N);
    TRY("hostfn.cross", cudaMemcpyAsync(pinned, d, N * sizeof(int), cudaMemcpyDeviceToHost, s1));
    TRY("hostfn.cross", cudaLaunchHostFunc(s1, read_pinned, &cross));
    TRY("hostfn.cross", cudaEventRecord(ev, s1));
    TRY("hostfn.cross", cudaStreamWaitEvent(s2, ev, 0));
    k_mul<<<G, B, 0, s2>>>(d, 2, N);
    TRY("hostfn.cross", cudaStreamSynchronize(s2));
    check(cross.value == 31, "hostfn.cross_stream_value", "saw %d", cross.value);
    device_all_equal(d, 62, "hostfn.cross_stream_result");

    // a host function calling CUDA
    calls_cuda cc = {0, cudaErrorUnknown};
    TRY("hostfn.calls_cuda", cudaLaunchHostFunc(s1, call_cuda, &cc));
    TRY("hostfn.calls_cuda", cudaStreamSynchronize(s1));
    check(cc.err == cudaSuccess && cc.count >= 1, "hostfn.calls_cuda", "%s, count %d", cudaGetErrorName(cc.err),
          cc.count);

    // legacy default stream and per-thread default stream
    seen_value legacy = {pinned, -1, 0};
    TRY("hostfn.default_stream", cudaLaunchHostFunc(0, read_pinned, &legacy));
    TRY("hostfn.default_stream", cudaDeviceSynchronize());
    check(legacy.order > 0, "hostfn.default_stream");
    seen_value ptds = {pinned, -1, 0};
    TRY("hostfn.per_thread_stream", cudaLaunchHostFunc(cudaStreamPerThread, read_pinned, &ptds));
    TRY("hostfn.per_thread_stream", cudaStreamSynchronize(cudaStreamPerThread));
    check(ptds.order > 0, "hostfn.per_thread_stream");

    // from several threads at once
    std::atomic<int> ran{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++)
        threads.emplace_back([&ran]() {
            cudaStream_t s;
            if (cudaStreamCreate(&s) != cudaSuccess)
                return;
            for (int k = 0; k < 5; k++)
                cudaLaunchHostFunc(
                    s, [](void *a) { ++*(std::atomic<int> *)a; }, &ran);
            cudaStreamSynchronize(s);
            cudaStreamDestroy(s);
        });
    for (auto &t : threads)
        t.join();
    check(ran == 20, "hostfn.threads", "ran %d of 20", ran.load());

    cudaEventDestroy(ev);
    cudaStreamDestroy(s1);
    cudaStreamDestroy(s2);
    cudaFreeHost(pinned);
    cudaFree(d);
}

// ---------------------------------------------------------------------------------

int main()
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (!check(e == cudaSuccess && count > 0, "device.count", "%s, %d", cudaGetErrorName(e), count))
        return 1;
    test_host_functions();
    printf("rt_work: %d checks, %d failed\n", g_checks, g_failed);
    return g_failed ? 1 : 0;
}

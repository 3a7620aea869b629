// End-to-end test of the runtime features real workloads lean on, through vgpu
// (run by run_e2e.sh under `vgpu run`), built with nvcc and static cudart:
//   - host functions and stream callbacks: stream order, after the device-to-host copy
//     before them has landed, across streams, and a callback that calls CUDA itself;
//   - CUDA graphs: stream capture (global, thread-local and relaxed modes, cross-stream
//     through events, with a host function), capture queries, instantiate variants,
//     upload, replay, exec update; explicit construction (kernel, memset, memcpy, host,
//     event record, child-graph and empty nodes); kernel node parameters read back
//     (kernelParams must point into this process) and changed on the graph and on the
//     executable graph;
//   - capture into an existing graph (cudaStreamBeginCaptureToGraph, with and without
//     edge data), fork/join through cudaStreamUpdateCaptureDependencies (set and add)
//     and the capture info it changes;
//   - graphs copying between the device and pinned host memory (cudaMallocHost): captured
//     cudaMemcpyAsync/cudaMemcpy2DAsync and explicit memcpy nodes (1D and 3D forms,
//     cudaMemcpyDefault, parameters read back and changed), replayed with host changes
//     in between and results checked after each kind of sync; the same captured with
//     mapped pinned and managed memory; a captured copy from pageable (malloc) memory
//     fails cleanly.
// One `PASS name` / `FAIL name: why` line per check; exit status 0 iff all passed.
// The emu backend runs the kernels from tests/e2e/plugins/work_kernels.c.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
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
// graphs

static std::atomic<int> g_host_node_runs{0};
static void CUDART_CB count_run(void *arg) { ++*(std::atomic<int> *)arg; }

// memset(d, 0) -> k_add(d, add) -> k_mul(d, 3) -> host(count) -> copy d2 <- d, captured on s
static cudaError_t capture_chain(cudaStream_t s, int *d, int *d2, int add, cudaStreamCaptureMode mode, cudaGraph_t *g)
{
    cudaError_t e = cudaStreamBeginCapture(s, mode);
    if (e != cudaSuccess)
        return e;
    cudaMemsetAsync(d, 0, N * sizeof(int), s);
    k_add<<<G, B, 0, s>>>(d, add, N);
    k_mul<<<G, B, 0, s>>>(d, 3, N);
    cudaLaunchHostFunc(s, count_run, &g_host_node_runs);
    cudaMemcpyAsync(d2, d, N * sizeof(int), cudaMemcpyDeviceToDevice, s);
    return cudaStreamEndCapture(s, g);
}

static cudaGraphNode_t first_node_of_type(cudaGraph_t g, cudaGraphNodeType type)
{
    size_t n = 0;
    if (cudaGraphGetNodes(g, nullptr, &n) != cudaSuccess)
        return nullptr;
    std::vector<cudaGraphNode_t> nodes(n);
    if (cudaGraphGetNodes(g, nodes.data(), &n) != cudaSuccess)
        return nullptr;
    for (auto node : nodes) {
        cudaGraphNodeType t;
        if (cudaGraphNodeGetType(node, &t) == cudaSuccess && t == type)
            return node;
    }
    return nullptr;
}

static void test_capture()
{
    int *d = nullptr, *d2 = nullptr;
    cudaStream_t s;
    TRY("capture.setup", cudaMalloc(&d, N * sizeof(int)));
    TRY("capture.setup", cudaMalloc(&d2, N * sizeof(int)));
    TRY("capture.setup", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

    // status queries around a capture
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusActive;
    TRY("capture.status_idle", cudaStreamIsCapturing(s, &st));
    check(st == cudaStreamCaptureStatusNone, "capture.status_idle");
    TRY("capture.begin", cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    TRY("capture.status_active", cudaStreamIsCapturing(s, &st));
    check(st == cudaStreamCaptureStatusActive, "capture.status_active", "status %d", (int)st);
    k_add<<<G, B, 0, s>>>(d, 1, N);
    unsigned long long id = 0;
    cudaGraph_t in_progress = nullptr;
    const cudaGraphNode_t *deps = nullptr;
    size_t ndeps = 0;
    TRY("capture.info", cudaStreamGetCaptureInfo(s, &st, &id, &in_progress, &deps, nullptr, &ndeps));
    check(st == cudaStreamCaptureStatusActive && id != 0 && in_progress && ndeps == 1 && deps && deps[0],
          "capture.info", "status %d id %llu graph %p deps %zu", (int)st, id, (void *)in_progress, ndeps);
    cudaGraph_t g0;
    TRY("capture.end", cudaStreamEndCapture(s, &g0));
    TRY("capture.status_after", cudaStreamIsCapturing(s, &st));
    check(st == cudaStreamCaptureStatusNone, "capture.status_after");
    cudaGraphDestroy(g0);

    // a chain with a memset, kernels, a host function and a device copy, replayed
    cudaGraph_t g;
    TRY("capture.chain", capture_chain(s, d, d2, 5, cudaStreamCaptureModeGlobal, &g));
    size_t count = 0;
    TRY("capture.nodes", cudaGraphGetNodes(g, nullptr, &count));
    check(count == 5, "capture.node_count", "%zu nodes", count);
    cudaGraphExec_t exec;
    TRY("capture.instantiate", cudaGraphInstantiate(&exec, g, 0));
    g_host_node_runs = 0;
    for (int k = 0; k < 3; k++)
        TRY("capture.launch", cudaGraphLaunch(exec, s));
    TRY("capture.sync", cudaStreamSynchronize(s));
    check(g_host_node_runs == 3, "capture.host_node_runs", "%d runs", g_host_node_runs.load());
    device_all_equal(d, 15, "capture.replay_result");
    device_all_equal(d2, 15, "capture.replay_copy");

    // kernel node parameters read back point into this process and can be changed
    cudaGraphNode_t kn = first_node_of_type(g, cudaGraphNodeTypeKernel);
    cudaKernelNodeParams kp;
    memset(&kp, 0, sizeof kp);
    cudaError_t kge = kn ? cudaGraphKernelNodeGetParams(kn, &kp) : cudaErrorInvalidValue;
    if (check(kn != nullptr, "graph.kernel_node_found") &&
        check(kge == cudaSuccess, "graph.kernel_node_get", "%s", cudaGetErrorName(kge))) {
        int *p0 = nullptr, v1 = 0, n2 = 0;
        memcpy(&p0, kp.kernelParams[0], sizeof p0);
        memcpy(&v1, kp.kernelParams[1], sizeof v1);
        memcpy(&n2, kp.kernelParams[2], sizeof n2);
        check(p0 == d && v1 == 5 && n2 == N, "graph.kernel_node_args", "ptr %p (want %p), v %d, n %d", (void *)p0,
              (void *)d, v1, n2);
        check(kp.func == (void *)k_add, "graph.kernel_node_func", "%p vs %p", kp.func, (void *)k_add);
        check(kp.gridDim.x == G && kp.blockDim.x == B, "graph.kernel_node_dims");
        // on the graph: a new instantiation sees 7
        int seven = 7;
        void *args[3] = {&d, &seven, &n2};
        kp.kernelParams = args;
        TRY("graph.kernel_node_set", cudaGraphKernelNodeSetParams(kn, &kp));
        cudaGraphExec_t exec2;
        TRY("graph.kernel_node_set", cudaGraphInstantiate(&exec2, g, 0));
        TRY("graph.kernel_node_set", cudaGraphLaunch(exec2, s));
        TRY("graph.kernel_node_set", cudaStreamSynchronize(s));
        device_all_equal(d, 21, "graph.kernel_node_set_result");
        cudaGraphExecDestroy(exec2);
        // on the first executable graph: 9
        int nine = 9;
        args[1] = &nine;
        TRY("graph.exec_kernel_node_set", cudaGraphExecKernelNodeSetParams(exec, kn, &kp));
        TRY("graph.exec_kernel_node_set", cudaGraphLaunch(exec, s));
        TRY("graph.exec_kernel_node_set", cudaStreamSynchronize(s));
        device_all_equal(d, 27, "graph.exec_kernel_node_set_result");
    }

    // exec update from a re-capture with another argument
    cudaGraph_t g2;
    TRY("graph.exec_update", capture_chain(s, d, d2, 2, cudaStreamCaptureModeThreadLocal, &g2));
    cudaGraphExecUpdateResultInfo info;
    memset(&info, 0, sizeof info);
    cudaError_t ue = cudaGraphExecUpdate(exec, g2, &info);
    check(ue == cudaSuccess && info.result == cudaGraphExecUpdateSuccess, "graph.exec_update", "%s, result %d",
          cudaGetErrorName(ue), (int)info.result);
    TRY("graph.exec_update", cudaGraphLaunch(exec, s));
    TRY("graph.exec_update", cudaStreamSynchronize(s));
    device_all_equal(d, 6, "graph.exec_update_result");

    // relaxed mode, cross-stream through events: s waits for s2's kernel
    cudaStream_t s2;
    cudaEvent_t e1, e2;
    TRY("capture.cross", cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
    TRY("capture.cross", cudaEventCreateWithFlags(&e1, cudaEventDisableTiming));
    TRY("capture.cross", cudaEventCreateWithFlags(&e2, cudaEventDisableTiming));
    cudaGraph_t g3;
    TRY("capture.cross", cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
    cudaMemsetAsync(d, 0, N * sizeof(int), s);
    cudaEventRecord(e1, s);
    cudaStreamWaitEvent(s2, e1, 0);
    k_add<<<G, B, 0, s2>>>(d, 4, N);
    cudaEventRecord(e2, s2);
    cudaStreamWaitEvent(s, e2, 0);
    k_mul<<<G, B, 0, s>>>(d, 5, N);
    TRY("capture.cross", cudaStreamEndCapture(s, &g3));
    size_t edges = 0;
    TRY("capture.cross", cudaGraphGetEdges(g3, nullptr, nullptr, nullptr, &edges));
    // memset -> add (on s2) -> mul; the driver may also keep memset -> mul
    check(edges == 2 || edges == 3, "capture.cross_edges", "%zu edges", edges);
    cudaGraphExec_t exec3;
    TRY("capture.cross", cudaGraphInstantiateWithFlags(&exec3, g3, 0));
    TRY("capture.cross", cudaGraphLaunch(exec3, s));
    TRY("capture.cross", cudaStreamSynchronize(s));
    device_all_equal(d, 20, "capture.cross_result");

    // a copy from host memory cannot be captured: the capture ends invalidated, and
    // the stream works afterwards
    std::vector<int> host(N, 1);
    cudaGraph_t g4 = nullptr;
    TRY("capture.host_copy", cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
    cudaError_t ce = cudaMemcpyAsync(d, host.data(), N * sizeof(int), cudaMemcpyHostToDevice, s);
    cudaError_t ee = cudaStreamEndCapture(s, &g4);
    check(ce != cudaSuccess || ee != cudaSuccess, "capture.host_copy_refused", "copy %s, end %s",
          cudaGetErrorName(ce), cudaGetErrorName(ee));
    cudaGetLastError();
    if (g4)
        cudaGraphDestroy(g4);
    k_add<<<G, B, 0, s>>>(d, 1, N);
    check(cudaStreamSynchronize(s) == cudaSuccess, "capture.stream_usable_after");
    device_all_equal(d, 21, "capture.stream_usable_after_result");

    // capture mode exchange
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    TRY("capture.mode_exchange", cudaThreadExchangeStreamCaptureMode(&mode));
    cudaStreamCaptureMode back = mode;
    TRY("capture.mode_exchange", cudaThreadExchangeStreamCaptureMode(&back));
    check(mode == cudaStreamCaptureModeGlobal && back == cudaStreamCaptureModeRelaxed, "capture.mode_exchange",
          "%d %d", (int)mode, (int)back);

    cudaGraphExecDestroy(exec3);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(g3);
    cudaGraphDestroy(g2);
    cudaGraphDestroy(g);
    cudaEventDestroy(e1);
    cudaEventDestroy(e2);
    cudaStreamDestroy(s2);
    cudaStreamDestroy(s);
    cudaFree(d2);
    cudaFree(d);
}

static void test_explicit_graph()
{
    int *d = nullptr, *d2 = nullptr;
    cudaStream_t s;
    TRY("graph.setup", cudaMalloc(&d, N * sizeof(int)));
    TRY("graph.setup", cudaMalloc(&d2, N * sizeof(int)));
    TRY("graph.setup", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaGraph_t g, child;
    TRY("graph.create", cudaGraphCreate(&g, 0));
    TRY("graph.create", cudaGraphCreate(&child, 0));

    cudaMemsetParams mp;
    memset(&mp, 0, sizeof mp);
    mp.dst = d;
    mp.value = 1;
    mp.elementSize = 4;
    mp.width = N;
    mp.height = 1;
    cudaGraphNode_t n_set, n_mul, n_child, n_host, n_rec, n_copy, n_empty;
    TRY("graph.add_memset", cudaGraphAddMemsetNode(&n_set, g, nullptr, 0, &mp));

    int n = N, four = 4, three = 3;
    void *mul_args[3] = {&d, &four, &n};
    cudaKernelNodeParams kp;
    memset(&kp, 0, sizeof kp);
    kp.func = (void *)k_mul;
    kp.gridDim = dim3(G);
    kp.blockDim = dim3(B);
    kp.kernelParams = mul_args;
    TRY("graph.add_kernel", cudaGraphAddKernelNode(&n_mul, g, &n_set, 1, &kp));

    void *add_args[3] = {&d, &three, &n};
    kp.func = (void *)k_add;
    kp.kernelParams = add_args;
    cudaGraphNode_t child_kernel;
    TRY("graph.child_kernel", cudaGraphAddKernelNode(&child_kernel, child, nullptr, 0, &kp));
    TRY("graph.add_child", cudaGraphAddChildGraphNode(&n_child, g, &n_mul, 1, child));

    cudaHostNodeParams hp = {count_run, &g_host_node_runs};
    TRY("graph.add_host", cudaGraphAddHostNode(&n_host, g, &n_child, 1, &hp));
    cudaEvent_t ev;
    TRY("graph.add_event", cudaEventCreate(&ev));
    TRY("graph.add_event", cudaGraphAddEventRecordNode(&n_rec, g, &n_host, 1, ev));

    cudaMemcpy3DParms cp;
    memset(&cp, 0, sizeof cp);
    cp.srcPtr = make_cudaPitchedPtr(d, N * sizeof(int), N, 1);
    cp.dstPtr = make_cudaPitchedPtr(d2, N * sizeof(int), N, 1);
    cp.extent = make_cudaExtent(N * sizeof(int), 1, 1);
    cp.kind = cudaMemcpyDeviceToDevice;
    TRY("graph.add_memcpy", cudaGraphAddMemcpyNode(&n_copy, g, &n_host, 1, &cp));
    TRY("graph.add_empty", cudaGraphAddEmptyNode(&n_empty, g, nullptr, 0));

    size_t roots = 0, edges = 0, count = 0;
    TRY("graph.topology", cudaGraphGetRootNodes(g, nullptr, &roots));
    TRY("graph.topology", cudaGraphGetEdges(g, nullptr, nullptr, nullptr, &edges));
    TRY("graph.topology", cudaGraphGetNodes(g, nullptr, &count));
    check(roots == 2 && edges == 5 && count == 7, "graph.topology", "roots %zu edges %zu nodes %zu", roots, edges,
          count);
    cudaGraphNode_t dep = nullptr;
    size_t ndep = 1;
    TRY("graph.dependencies", cudaGraphNodeGetDependencies(n_mul, &dep, nullptr, &ndep));
    check(ndep == 1 && dep == n_set, "graph.dependencies");
    cudaGraph_t got_child = nullptr;
    TRY("graph.child_get", cudaGraphChildGraphNodeGetGraph(n_child, &got_child));
    size_t child_nodes = 0;
    TRY("graph.child_get", cudaGraphGetNodes(got_child, nullptr, &child_nodes));
    check(child_nodes == 1, "graph.child_nodes", "%zu", child_nodes);
    cudaHostNodeParams hp2;
    memset(&hp2, 0, sizeof hp2);
    TRY("graph.host_get", cudaGraphHostNodeGetParams(n_host, &hp2));
    check(hp2.fn == count_run && hp2.userData == &g_host_node_runs, "graph.host_node_params");
    cudaMemsetParams mp2;
    TRY("graph.memset_get", cudaGraphMemsetNodeGetParams(n_set, &mp2));
    check(mp2.dst == d && mp2.value == 1 && mp2.elementSize == 4 && mp2.width == N, "graph.memset_node_params");
    cudaEvent_t ev2 = nullptr;
    TRY("graph.event_get", cudaGraphEventRecordNodeGetEvent(n_rec, &ev2));
    check(ev2 == ev, "graph.event_node_event");

    cudaGraphExec_t exec;
    cudaGraphInstantiateParams ip;
    memset(&ip, 0, sizeof ip);
    ip.flags = cudaGraphInstantiateFlagUpload;
    ip.uploadStream = s;
    TRY("graph.instantiate_params", cudaGraphInstantiateWithParams(&exec, g, &ip));
    check(ip.result_out == cudaGraphInstantiateSuccess, "graph.instantiate_result");
    unsigned long long flags = 0;
    TRY("graph.exec_flags", cudaGraphExecGetFlags(exec, &flags));
    check(flags == cudaGraphInstantiateFlagUpload, "graph.exec_flags", "%llu", flags);
    TRY("graph.upload", cudaGraphUpload(exec, s));
    g_host_node_runs = 0;
    TRY("graph.launch", cudaGraphLaunch(exec, s));
    TRY("graph.launch", cudaGraphLaunch(exec, s));
    TRY("graph.launch", cudaStreamSynchronize(s));
    device_all_equal(d, 7, "graph.explicit_result");
    device_all_equal(d2, 7, "graph.explicit_copy");
    check(g_host_node_runs == 2, "graph.explicit_host_runs", "%d", g_host_node_runs.load());
    check(cudaEventQuery(ev) == cudaSuccess, "graph.event_recorded");

    // a disabled node is skipped
    TRY("graph.node_disable", cudaGraphNodeSetEnabled(exec, n_child, 0));
    unsigned enabled = 1;
    TRY("graph.node_disable", cudaGraphNodeGetEnabled(exec, n_child, &enabled));
    check(enabled == 0, "graph.node_disabled");
    TRY("graph.node_disable", cudaGraphLaunch(exec, s));
    TRY("graph.node_disable", cudaStreamSynchronize(s));
    device_all_equal(d, 4, "graph.node_disabled_result");

    // clone and find
    cudaGraph_t clone;
    TRY("graph.clone", cudaGraphClone(&clone, g));
    cudaGraphNode_t found = nullptr;
    TRY("graph.clone", cudaGraphNodeFindInClone(&found, n_mul, clone));
    cudaGraphNodeType t;
    TRY("graph.clone", cudaGraphNodeGetType(found, &t));
    check(found && found != n_mul && t == cudaGraphNodeTypeKernel, "graph.clone_find");

    // invalid handles are refused, not crashed on
    cudaGraphExec_t bad_exec = (cudaGraphExec_t)(uintptr_t)0x1234;
    check(cudaGraphExecDestroy(bad_exec) != cudaSuccess, "graph.bad_exec_refused");
    cudaGetLastError();

    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(clone);
    cudaGraphDestroy(g);
    cudaGraphDestroy(child);
    cudaEventDestroy(ev);
    cudaStreamDestroy(s);
    cudaFree(d2);
    cudaFree(d);
}


// ---------------------------------------------------------------------------------
// capture into an existing graph, capture dependencies

static size_t graph_node_count(cudaGraph_t g)
{
    size_t n = 0;
    return cudaGraphGetNodes(g, nullptr, &n) == cudaSuccess ? n : (size_t)-1;
}

static size_t graph_edge_count(cudaGraph_t g)
{
    size_t n = 0;
    return cudaGraphGetEdges(g, nullptr, nullptr, nullptr, &n) == cudaSuccess ? n : (size_t)-1;
}

static void test_capture_to_graph()
{
    int *d = nullptr;
    cudaStream_t s;
    TRY("capture_to_graph.setup", cudaMalloc(&d, N * sizeof(int)));
    TRY("capture_to_graph.setup", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

    // an existing graph with a memset node; the capture continues after it
    cudaGraph_t g;
    TRY("capture_to_graph.create", cudaGraphCreate(&g, 0));
    cudaMemsetParams mp;
    memset(&mp, 0, sizeof mp);
    mp.dst = d;
    mp.value = 0;
    mp.elementSize = 4;
    mp.width = N;
    mp.height = 1;
    cudaGraphNode_t n_set;
    TRY("capture_to_graph.memset", cudaGraphAddMemsetNode(&n_set, g, nullptr, 0, &mp));
    TRY("capture_to_graph.begin", cudaStreamBeginCaptureToGraph(s, g, &n_set, nullptr, 1, cudaStreamCaptureModeGlobal));
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    cudaGraph_t in_progress = nullptr;
    const cudaGraphNode_t *deps = nullptr;
    size_t ndeps = 0;
    TRY("capture_to_graph.info", cudaStreamGetCaptureInfo(s, &st, nullptr, &in_progress, &deps, nullptr, &ndeps));
    check(st == cudaStreamCaptureStatusActive && in_progress == g && ndeps == 1 && deps && deps[0] == n_set,
          "capture_to_graph.info", "status %d graph %p (want %p) deps %zu", (int)st, (void *)in_progress, (void *)g,
          ndeps);
    k_add<<<G, B, 0, s>>>(d, 2, N);
    k_mul<<<G, B, 0, s>>>(d, 3, N);
    cudaLaunchHostFunc(s, count_run, &g_host_node_runs);
    cudaGraph_t ended = nullptr;
    TRY("capture_to_graph.end", cudaStreamEndCapture(s, &ended));
    check(ended == g, "capture_to_graph.same_graph", "%p vs %p", (void *)ended, (void *)g);
    size_t nodes = graph_node_count(g), edges = graph_edge_count(g);
    check(nodes == 4 && edges == 3, "capture_to_graph.topology", "%zu nodes, %zu edges", nodes, edges);
    cudaGraphNode_t roots[2] = {};
    size_t nroots = 2;
    TRY("capture_to_graph.roots", cudaGraphGetRootNodes(g, roots, &nroots));
    check(nroots == 1 && roots[0] == n_set, "capture_to_graph.root_is_memset", "%zu roots", nroots);

    // replayed several times
    cudaGraphExec_t exec;
    TRY("capture_to_graph.instantiate", cudaGraphInstantiate(&exec, g, 0));
    g_host_node_runs = 0;
    for (int k = 0; k < 4; k++) {
        TRY("capture_to_graph.launch", cudaGraphLaunch(exec, s));
        TRY("capture_to_graph.launch", cudaStreamSynchronize(s));
        char name[64];
        snprintf(name, sizeof name, "capture_to_graph.replay_%d", k);
        device_all_equal(d, 6, name);
    }
    check(g_host_node_runs == 4, "capture_to_graph.host_runs", "%d", g_host_node_runs.load());

    // a second capture into the same graph, as a new root, with explicit (default) edge data
    cudaGraphEdgeData none;
    memset(&none, 0, sizeof none);
    TRY("capture_to_graph.again", cudaStreamBeginCaptureToGraph(s, g, nullptr, &none, 0, cudaStreamCaptureModeRelaxed));
    cudaLaunchHostFunc(s, count_run, &g_host_node_runs);
    TRY("capture_to_graph.again", cudaStreamEndCapture(s, &ended));
    nodes = graph_node_count(g);
    nroots = 2;
    TRY("capture_to_graph.again", cudaGraphGetRootNodes(g, roots, &nroots));
    check(ended == g && nodes == 5 && nroots == 2, "capture_to_graph.second_root", "%zu nodes, %zu roots", nodes,
          nroots);
    // with edge data given for a dependency
    TRY("capture_to_graph.edge_data",
        cudaStreamBeginCaptureToGraph(s, g, &n_set, &none, 1, cudaStreamCaptureModeGlobal));
    cudaLaunchHostFunc(s, count_run, &g_host_node_runs);
    TRY("capture_to_graph.edge_data", cudaStreamEndCapture(s, &ended));
    size_t deps_of_set = 0;
    TRY("capture_to_graph.edge_data", cudaGraphNodeGetDependentNodes(n_set, nullptr, nullptr, &deps_of_set));
    check(ended == g && deps_of_set == 2, "capture_to_graph.edge_data", "%zu dependents", deps_of_set);

    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(g);
    cudaStreamDestroy(s);
    cudaFree(d);
}

static bool contains(const cudaGraphNode_t *list, size_t n, cudaGraphNode_t want)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == want)
            return true;
    return false;
}

static void test_update_capture_dependencies()
{
    int *d1 = nullptr, *d2 = nullptr;
    cudaStream_t s;
    TRY("capture_deps.setup", cudaMalloc(&d1, N * sizeof(int)));
    TRY("capture_deps.setup", cudaMalloc(&d2, N * sizeof(int)));
    TRY("capture_deps.setup", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

    TRY("capture_deps.begin", cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    cudaMemsetAsync(d1, 0, N * sizeof(int), s);
    cudaMemsetAsync(d2, 0, N * sizeof(int), s);
    cudaStreamCaptureStatus st;
    cudaGraph_t cg = nullptr;
    const cudaGraphNode_t *deps = nullptr;
    const cudaGraphEdgeData *edata = nullptr;
    size_t ndeps = 0;
    TRY("capture_deps.info", cudaStreamGetCaptureInfo(s, &st, nullptr, &cg, &deps, nullptr, &ndeps));
    if (!check(cg && ndeps == 1, "capture_deps.info", "graph %p, %zu deps", (void *)cg, ndeps)) {
        cudaGraph_t junk;
        cudaStreamEndCapture(s, &junk);
        return;
    }
    cudaGraphNode_t a2 = deps[0];

    // fork: two kernels added to the capture's graph by hand, both after the memsets
    int n = N, five = 5, seven = 7, one = 1;
    void *args1[3] = {&d1, &five, &n}, *args2[3] = {&d2, &seven, &n};
    cudaKernelNodeParams kp;
    memset(&kp, 0, sizeof kp);
    kp.func = (void *)k_add;
    kp.gridDim = dim3(G);
    kp.blockDim = dim3(B);
    kp.kernelParams = args1;
    cudaGraphNode_t b1, b2, e;
    TRY("capture_deps.fork", cudaGraphAddKernelNode(&b1, cg, &a2, 1, &kp));
    kp.kernelParams = args2;
    TRY("capture_deps.fork", cudaGraphAddKernelNode(&b2, cg, &a2, 1, &kp));
    cudaGraphNode_t both[2] = {b1, b2};
    TRY("capture_deps.set", cudaStreamUpdateCaptureDependencies(s, both, nullptr, 2, cudaStreamSetCaptureDependencies));
    TRY("capture_deps.set", cudaStreamGetCaptureInfo(s, &st, nullptr, nullptr, &deps, &edata, &ndeps));
    check(ndeps == 2 && contains(deps, ndeps, b1) && contains(deps, ndeps, b2), "capture_deps.info_after_set",
          "%zu deps", ndeps);
    // default edges (the driver may answer them with no array at all)
    check(!edata || (edata[0].type == cudaGraphDependencyTypeDefault && edata[1].type == cudaGraphDependencyTypeDefault),
          "capture_deps.edge_data_default");

    // join: the next captured kernel waits for both
    k_mul<<<G, B, 0, s>>>(d1, 2, N);
    TRY("capture_deps.join", cudaStreamGetCaptureInfo(s, &st, nullptr, nullptr, &deps, nullptr, &ndeps));
    cudaGraphNode_t j1 = ndeps == 1 ? deps[0] : nullptr;
    size_t nj = 0;
    if (j1)
        TRY("capture_deps.join", cudaGraphNodeGetDependencies(j1, nullptr, nullptr, &nj));
    check(j1 && nj == 2, "capture_deps.join", "%zu deps, join has %zu", ndeps, nj);

    // add: a node by hand after the join, added to the stream's dependencies
    void *args3[3] = {&d2, &one, &n};
    kp.kernelParams = args3;
    TRY("capture_deps.add", cudaGraphAddKernelNode(&e, cg, &j1, 1, &kp));
    TRY("capture_deps.add", cudaStreamUpdateCaptureDependencies(s, &e, nullptr, 1, cudaStreamAddCaptureDependencies));
    TRY("capture_deps.add", cudaStreamGetCaptureInfo(s, &st, nullptr, nullptr, &deps, nullptr, &ndeps));
    check(ndeps == 2 && contains(deps, ndeps, j1) && contains(deps, ndeps, e), "capture_deps.info_after_add",
          "%zu deps", ndeps);
    k_mul<<<G, B, 0, s>>>(d2, 3, N);
    cudaGraph_t g;
    TRY("capture_deps.end", cudaStreamEndCapture(s, &g));
    size_t nodes = graph_node_count(g), edges = graph_edge_count(g);
    check(nodes == 7 && edges == 8, "capture_deps.topology", "%zu nodes, %zu edges", nodes, edges);
    cudaGraphExec_t exec;
    TRY("capture_deps.instantiate", cudaGraphInstantiate(&exec, g, 0));
    for (int k = 0; k < 2; k++) {
        TRY("capture_deps.launch", cudaGraphLaunch(exec, s));
        TRY("capture_deps.launch", cudaStreamSynchronize(s));
    }
    device_all_equal(d1, 10, "capture_deps.result_1");
    device_all_equal(d2, 24, "capture_deps.result_2");

    // not capturing: refused
    check(cudaStreamUpdateCaptureDependencies(s, &e, nullptr, 1, cudaStreamAddCaptureDependencies) != cudaSuccess,
          "capture_deps.not_capturing_refused");
    cudaGetLastError();

    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(g);
    cudaStreamDestroy(s);
    cudaFree(d1);
    cudaFree(d2);
}

// ---------------------------------------------------------------------------------
// graphs with pinned host memory

// out[i] == (in[i] + 1) * 2 for every i?
static bool check_doubled(const int *in, const int *out, const char *name)
{
    for (int i = 0; i < N; i++)
        if (out[i] != (in[i] + 1) * 2)
            return check(false, name, "element %d is %d, want %d", i, out[i], (in[i] + 1) * 2);
    return check(true, name);
}

// Sync by stream, device or event after a replay (k picks).
static cudaError_t sync_kind(int k, cudaStream_t s, cudaEvent_t ev)
{
    switch (k % 3) {
    case 0: return cudaStreamSynchronize(s);
    case 1: return cudaDeviceSynchronize();
    default: {
        cudaError_t e = cudaEventRecord(ev, s);
        return e != cudaSuccess ? e : cudaEventSynchronize(ev);
    }
    }
}

static void test_graph_pinned_capture()
{
    int *d = nullptr, *hin = nullptr, *hout = nullptr, *hout2 = nullptr;
    cudaStream_t s;
    cudaEvent_t ev;
    TRY("pinned_capture.setup", cudaMalloc(&d, N * sizeof(int)));
    TRY("pinned_capture.setup", cudaMallocHost(&hin, N * sizeof(int)));
    TRY("pinned_capture.setup", cudaMallocHost(&hout, N * sizeof(int)));
    TRY("pinned_capture.setup", cudaMallocHost(&hout2, N * sizeof(int)));
    TRY("pinned_capture.setup", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    TRY("pinned_capture.setup", cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));

    // H2D from pinned memory -> kernels -> D2H into pinned memory (1D and 2D), captured
    TRY("pinned_capture.begin", cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    cudaError_t e1 = cudaMemcpyAsync(d, hin, N * sizeof(int), cudaMemcpyHostToDevice, s);
    k_add<<<G, B, 0, s>>>(d, 1, N);
    k_mul<<<G, B, 0, s>>>(d, 2, N);
    cudaError_t e2 = cudaMemcpyAsync(hout, d, N * sizeof(int), cudaMemcpyDeviceToHost, s);
    // the same data as 10 rows of 100 into hout2
    cudaError_t e3 = cudaMemcpy2DAsync(hout2, 100 * sizeof(int), d, 100 * sizeof(int), 100 * sizeof(int), N / 100,
                                       cudaMemcpyDeviceToHost, s);
    cudaGraph_t g = nullptr;
    cudaError_t ee = cudaStreamEndCapture(s, &g);
    check(e1 == cudaSuccess && e2 == cudaSuccess && e3 == cudaSuccess && ee == cudaSuccess, "pinned_capture.captured",
          "h2d %s, d2h %s, 2d %s, end %s", cudaGetErrorName(e1), cudaGetErrorName(e2), cudaGetErrorName(e3),
          cudaGetErrorName(ee));
    if (ee != cudaSuccess || !g)
        return;
    size_t nodes = graph_node_count(g);
    check(nodes == 5, "pinned_capture.node_count", "%zu", nodes);
    cudaGraphNode_t cn = first_node_of_type(g, cudaGraphNodeTypeMemcpy);
    cudaMemcpy3DParms rp;
    memset(&rp, 0, sizeof rp);
    if (cn)
        TRY("pinned_capture.node_params", cudaGraphMemcpyNodeGetParams(cn, &rp));
    check(cn && rp.srcPtr.ptr == hin && rp.dstPtr.ptr == d, "pinned_capture.node_params", "src %p (want %p), dst %p",
          rp.srcPtr.ptr, (void *)hin, rp.dstPtr.ptr);

    cudaGraphExec_t exec;
    TRY("pinned_capture.instantiate", cudaGraphInstantiate(&exec, g, 0));
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < N; i++)
            hin[i] = i * (k + 1) + 100 * k; // host changes between replays
        memset(hout, 0xff, N * sizeof(int));
        memset(hout2, 0xff, N * sizeof(int));
        TRY("pinned_capture.launch", cudaGraphLaunch(exec, s));
        TRY("pinned_capture.sync", sync_kind(k, s, ev));
        char name[64];
        snprintf(name, sizeof name, "pinned_capture.replay_%d", k);
        check_doubled(hin, hout, name);
        snprintf(name, sizeof name, "pinned_capture.replay_2d_%d", k);
        check_doubled(hin, hout2, name);
    }

    // the pinned memory still works as such: a plain copy and a free
    TRY("pinned_capture.plain_copy", cudaMemcpy(hout, d, N * sizeof(int), cudaMemcpyDeviceToHost));
    check_doubled(hin, hout, "pinned_capture.plain_copy");

    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(g);
    check(cudaFreeHost(hin) == cudaSuccess && cudaFreeHost(hout) == cudaSuccess && cudaFreeHost(hout2) == cudaSuccess,
          "pinned_capture.free_host");
    cudaEventDestroy(ev);
    cudaStreamDestroy(s);
    cudaFree(d);
}

static void test_graph_pinned_nodes()
{
    int *d = nullptr, *hin = nullptr, *hin2 = nullptr, *hout = nullptr;
    cudaStream_t s;
    cudaEvent_t ev;
    TRY("pinned_nodes.setup", cudaMalloc(&d, N * sizeof(int)));
    TRY("pinned_nodes.setup", cudaMallocHost(&hin, N * sizeof(int)));
    TRY("pinned_nodes.setup", cudaHostAlloc(&hin2, N * sizeof(int), cudaHostAllocDefault));
    TRY("pinned_nodes.setup", cudaMallocHost(&hout, N * sizeof(int)));
    TRY("pinned_nodes.setup", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    TRY("pinned_nodes.setup", cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));

    cudaGraph_t g;
    TRY("pinned_nodes.create", cudaGraphCreate(&g, 0));
    cudaGraphNode_t n_in, n_add, n_mul, n_out;
    TRY("pinned_nodes.add_h2d",
        cudaGraphAddMemcpyNode1D(&n_in, g, nullptr, 0, d, hin, N * sizeof(int), cudaMemcpyHostToDevice));
    int n = N, one = 1, two = 2;
    void *add_args[3] = {&d, &one, &n}, *mul_args[3] = {&d, &two, &n};
    cudaKernelNodeParams kp;
    memset(&kp, 0, sizeof kp);
    kp.func = (void *)k_add;
    kp.gridDim = dim3(G);
    kp.blockDim = dim3(B);
    kp.kernelParams = add_args;
    TRY("pinned_nodes.add_kernel", cudaGraphAddKernelNode(&n_add, g, &n_in, 1, &kp));
    kp.func = (void *)k_mul;
    kp.kernelParams = mul_args;
    TRY("pinned_nodes.add_kernel", cudaGraphAddKernelNode(&n_mul, g, &n_add, 1, &kp));
    // D2H through the 3D parameters, the copy kind left to the pointers
    cudaMemcpy3DParms cp;
    memset(&cp, 0, sizeof cp);
    cp.srcPtr = make_cudaPitchedPtr(d, N * sizeof(int), N, 1);
    cp.dstPtr = make_cudaPitchedPtr(hout, N * sizeof(int), N, 1);
    cp.extent = make_cudaExtent(N * sizeof(int), 1, 1);
    cp.kind = cudaMemcpyDefault;
    TRY("pinned_nodes.add_d2h", cudaGraphAddMemcpyNode(&n_out, g, &n_mul, 1, &cp));

    cudaMemcpy3DParms rp;
    memset(&rp, 0, sizeof rp);
    TRY("pinned_nodes.params", cudaGraphMemcpyNodeGetParams(n_in, &rp));
    check(rp.srcPtr.ptr == hin && rp.dstPtr.ptr == d, "pinned_nodes.h2d_params", "src %p (want %p), dst %p",
          rp.srcPtr.ptr, (void *)hin, rp.dstPtr.ptr);
    memset(&rp, 0, sizeof rp);
    TRY("pinned_nodes.params", cudaGraphMemcpyNodeGetParams(n_out, &rp));
    check(rp.srcPtr.ptr == d && rp.dstPtr.ptr == hout, "pinned_nodes.d2h_params", "src %p, dst %p (want %p)",
          rp.srcPtr.ptr, rp.dstPtr.ptr, (void *)hout);

    cudaGraphExec_t exec;
    TRY("pinned_nodes.instantiate", cudaGraphInstantiate(&exec, g, 0));
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < N; i++)
            hin[i] = 3 * i - 7 * k;
        memset(hout, 0, N * sizeof(int));
        TRY("pinned_nodes.launch", cudaGraphLaunch(exec, s));
        TRY("pinned_nodes.sync", sync_kind(k + 1, s, ev));
        char name[64];
        snprintf(name, sizeof name, "pinned_nodes.replay_%d", k);
        check_doubled(hin, hout, name);
    }

    // the source switched to another pinned buffer, on the executable graph, then on the graph
    for (int i = 0; i < N; i++)
        hin2[i] = 1000 + i;
    TRY("pinned_nodes.exec_set",
        cudaGraphExecMemcpyNodeSetParams1D(exec, n_in, d, hin2, N * sizeof(int), cudaMemcpyHostToDevice));
    TRY("pinned_nodes.exec_set", cudaGraphLaunch(exec, s));
    TRY("pinned_nodes.exec_set", cudaStreamSynchronize(s));
    check_doubled(hin2, hout, "pinned_nodes.exec_set_result");
    for (int i = 0; i < N; i++)
        hin[i] = -i;
    TRY("pinned_nodes.graph_set", cudaGraphMemcpyNodeSetParams1D(n_in, d, hin, N * sizeof(int), cudaMemcpyHostToDevice));
    cudaGraphExec_t exec2;
    TRY("pinned_nodes.graph_set", cudaGraphInstantiate(&exec2, g, 0));
    TRY("pinned_nodes.graph_set", cudaGraphLaunch(exec2, s));
    TRY("pinned_nodes.graph_set", cudaStreamSynchronize(s));
    check_doubled(hin, hout, "pinned_nodes.graph_set_result");

    cudaGraphExecDestroy(exec2);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(g);
    cudaFreeHost(hin);
    cudaFreeHost(hin2);
    cudaFreeHost(hout);
    cudaEventDestroy(ev);
    cudaStreamDestroy(s);
    cudaFree(d);
}

// Mapped pinned memory (cudaHostAllocMapped) and managed memory in a captured graph.
static void test_graph_mapped_capture()
{
    int *d = nullptr, *hin = nullptr, *hout = nullptr, *managed = nullptr;
    cudaStream_t s;
    TRY("mapped_capture.setup", cudaMalloc(&d, N * sizeof(int)));
    TRY("mapped_capture.setup", cudaHostAlloc(&hin, N * sizeof(int), cudaHostAllocMapped));
    TRY("mapped_capture.setup", cudaHostAlloc(&hout, N * sizeof(int), cudaHostAllocMapped));
    TRY("mapped_capture.setup", cudaMallocManaged(&managed, N * sizeof(int)));
    TRY("mapped_capture.setup", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    TRY("mapped_capture.begin", cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    cudaError_t e1 = cudaMemcpyAsync(d, hin, N * sizeof(int), cudaMemcpyHostToDevice, s);
    k_add<<<G, B, 0, s>>>(d, 1, N);
    k_mul<<<G, B, 0, s>>>(d, 2, N);
    cudaError_t e2 = cudaMemcpyAsync(hout, d, N * sizeof(int), cudaMemcpyDeviceToHost, s);
    cudaError_t e3 = cudaMemcpyAsync(managed, d, N * sizeof(int), cudaMemcpyDefault, s);
    cudaGraph_t g = nullptr;
    cudaError_t ee = cudaStreamEndCapture(s, &g);
    check(e1 == cudaSuccess && e2 == cudaSuccess && e3 == cudaSuccess && ee == cudaSuccess, "mapped_capture.captured",
          "h2d %s, d2h %s, managed %s, end %s", cudaGetErrorName(e1), cudaGetErrorName(e2), cudaGetErrorName(e3),
          cudaGetErrorName(ee));
    if (ee != cudaSuccess || !g)
        return;
    cudaGraphExec_t exec;
    TRY("mapped_capture.instantiate", cudaGraphInstantiate(&exec, g, 0));
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < N; i++)
            hin[i] = 5 * i + k;
        TRY("mapped_capture.launch", cudaGraphLaunch(exec, s));
        TRY("mapped_capture.sync", cudaStreamSynchronize(s));
        char name[64];
        snprintf(name, sizeof name, "mapped_capture.replay_%d", k);
        check_doubled(hin, hout, name);
        snprintf(name, sizeof name, "mapped_capture.managed_%d", k);
        check_doubled(hin, managed, name);
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(g);
    cudaFreeHost(hin);
    cudaFreeHost(hout);
    cudaFree(managed);
    cudaStreamDestroy(s);
    cudaFree(d);
}

// A captured copy from pageable memory: the capture fails cleanly and the stream works afterwards.
static void test_graph_pageable_refused()
{
    int *d = nullptr;
    int *pageable = (int *)malloc(N * sizeof(int));
    cudaStream_t s;
    TRY("pageable.setup", cudaMalloc(&d, N * sizeof(int)));
    TRY("pageable.setup", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    for (int i = 0; i < N; i++)
        pageable[i] = 2;
    cudaGraph_t g = nullptr;
    TRY("pageable.begin", cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    cudaError_t ce = cudaMemcpyAsync(d, pageable, N * sizeof(int), cudaMemcpyHostToDevice, s);
    cudaError_t ee = cudaStreamEndCapture(s, &g);
    check(ce != cudaSuccess || ee != cudaSuccess, "pageable.capture_refused", "copy %s, end %s",
          cudaGetErrorName(ce), cudaGetErrorName(ee));
    cudaGetLastError();
    if (g)
        cudaGraphDestroy(g);
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusActive;
    check(cudaStreamIsCapturing(s, &st) == cudaSuccess && st == cudaStreamCaptureStatusNone, "pageable.capture_ended");
    TRY("pageable.after", cudaMemcpyAsync(d, pageable, N * sizeof(int), cudaMemcpyHostToDevice, s));
    k_add<<<G, B, 0, s>>>(d, 1, N);
    check(cudaStreamSynchronize(s) == cudaSuccess, "pageable.stream_usable_after");
    device_all_equal(d, 3, "pageable.stream_usable_after_result");
    cudaStreamDestroy(s);
    cudaFree(d);
    free(pageable);
}

// ---------------------------------------------------------------------------------

int main()
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (!check(e == cudaSuccess && count > 0, "device.count", "%s, %d", cudaGetErrorName(e), count))
        return 1;
    test_host_functions();
    test_capture();
    test_explicit_graph();
    test_capture_to_graph();
    test_update_capture_dependencies();
    test_graph_pinned_capture();
    test_graph_pinned_nodes();
    test_graph_mapped_capture();
    test_graph_pageable_refused();
    printf("rt_work: %d checks, %d failed\n", g_checks, g_failed);
    return g_failed ? 1 : 0;
}

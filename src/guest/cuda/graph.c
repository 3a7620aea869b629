/*
 * Stream capture and CUDA graphs, guest side (the daemon's half: src/server/ops_graph.c,
 * which documents the wire layouts).
 *
 * Graphs, nodes and executable graphs are the daemon's handles; the guest keeps only
 * what must live in this process:
 *   - host nodes: the guest's functions, as host-function tickets (hostfn.c);
 *   - kernel nodes read back: kernelParams must point into this process, so the
 *     arguments read back are kept per node until the next read of that node;
 *   - how many captures this process has begun and not ended: while none is active
 *     every stream answers "not capturing" locally (PyTorch asks before every
 *     allocation).
 * A graph runs when this process is not there to supply host data, so a copy in a graph
 * (a memcpy node, or an async copy captured from a stream: memcpy.c) may name host
 * memory only where the daemon holds a copy of it: mirrored memory (mapped pinned and
 * managed memory, mirror.h), or pinned memory, which becomes mirrored the first time a
 * graph names it (memory.h, vg_host_for_graph). The node names the daemon's copy; the
 * guest pushes host writes before each graph launch and pulls the graph's writes at
 * every synchronization, as for kernels. Pageable host memory answers
 * CUDA_ERROR_NOT_SUPPORTED (logged once): the daemon cannot reach it when the graph
 * runs. Node parameters read back name the guest's addresses again.
 *
 * Capture into an existing graph (cuStreamBeginCaptureToGraph) and changing a capturing
 * stream's dependencies (cuStreamUpdateCaptureDependencies) are forwarded with their
 * edge data; the daemon's driver (or the emu) keeps the dependency set, so
 * cuStreamGetCaptureInfo answers the updated one.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mirror_diff.h"
#include "guest/cuda/context.h"
#include "guest/cuda/graph.h"
#include "guest/cuda/handle_map.h"
#include "guest/cuda/hostfn.h"
#include "guest/cuda/memory.h"
#include "guest/cuda/mirror.h"
#include "guest/cuda/module.h"
#include "guest/cuda/rpc.h"

#define MAX_LIST 4096u /* dependencies in one request (the daemon's limit) */

static inline uint64_t h64(const void *p) { return (uint64_t)(uintptr_t)p; }

static atomic_int active_captures;

/* ---- node descriptions ---- */

/* Append a kernel NODE: the arguments packed at f's layout (or the `extra` buffer). */
static CUresult put_kernel(struct wire_buf *a, CUfunction f, const unsigned dims[7], void **kernelParams, void **extra)
{
    if (!f) return CUDA_ERROR_INVALID_VALUE;
    const void *bytes = NULL;
    size_t len = 0;
    uint8_t stackbuf[512], *packed = NULL;
    if (kernelParams && extra) return CUDA_ERROR_INVALID_VALUE;
    if (extra) {
        size_t have_size = 0;
        bool sized = false;
        for (size_t i = 0; i < 64 && extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
            if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER)
                bytes = extra[i + 1];
            else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE && extra[i + 1]) {
                have_size = *(const size_t *)extra[i + 1];
                sized = true;
            } else
                return CUDA_ERROR_INVALID_VALUE;
        }
        if (!bytes || !sized) return CUDA_ERROR_INVALID_VALUE;
        len = have_size;
    } else {
        CUresult rc = vg_func_pack_params(f, kernelParams, stackbuf, sizeof stackbuf, &packed, &len);
        if (rc != CUDA_SUCCESS) return rc;
        bytes = packed;
    }
    wire_put_u32(a, CU_GRAPH_NODE_TYPE_KERNEL);
    wire_put_u64(a, h64(f));
    for (int i = 0; i < 7; i++) wire_put_u32(a, dims[i]);
    wire_put_bytes(a, bytes, len);
    if (packed && packed != stackbuf) free(packed);
    return CUDA_SUCCESS;
}

static CUresult put_kernel_v2(struct wire_buf *a, const CUDA_KERNEL_NODE_PARAMS *p)
{
    if (!p) return CUDA_ERROR_INVALID_VALUE;
    const unsigned dims[7] = {p->gridDimX,  p->gridDimY,  p->gridDimZ,     p->blockDimX,
                              p->blockDimY, p->blockDimZ, p->sharedMemBytes};
    return put_kernel(a, p->func ? p->func : (CUfunction)p->kern, dims, p->kernelParams, p->extra);
}

static CUresult put_kernel_v1(struct wire_buf *a, const CUDA_KERNEL_NODE_PARAMS_v1 *p)
{
    if (!p) return CUDA_ERROR_INVALID_VALUE;
    const unsigned dims[7] = {p->gridDimX,  p->gridDimY,  p->gridDimZ,     p->blockDimX,
                              p->blockDimY, p->blockDimZ, p->sharedMemBytes};
    return put_kernel(a, p->func, dims, p->kernelParams, p->extra);
}

/* One side of a COPY (vg_put_copy): u32 memory type, u64 address, u64 x, y, z, pitch,
 * height. A host side names the daemon's copy of the mirrored memory it lies in. */
static CUresult put_side(struct wire_buf *a, CUmemorytype type, const void *host, CUdeviceptr dev, size_t x,
                         size_t y, size_t z, size_t pitch, size_t height, const CUDA_MEMCPY3D *c)
{
    static atomic_bool warned;
    uint64_t addr = type == CU_MEMORYTYPE_HOST ? (uint64_t)(uintptr_t)host : (uint64_t)dev;
    if (type == CU_MEMORYTYPE_ARRAY) return vg_unsupported("graph copies with CUDA arrays");
    if (type != CU_MEMORYTYPE_HOST && type != CU_MEMORYTYPE_DEVICE && type != CU_MEMORYTYPE_UNIFIED)
        return CUDA_ERROR_INVALID_VALUE;
    /* UNIFIED device memory goes as it is; so does a UNIFIED address the guest does not
     * know (device memory it does not track, a module global say): the daemon checks it. */
    if (type == CU_MEMORYTYPE_HOST || (type == CU_MEMORYTYPE_UNIFIED && !vg_is_device_range(addr, 1) &&
                                       !vg_is_device_range(addr + x, 1))) {
        uint64_t off, len, start, daemon;
        if (!vgpu_copy_side_extent(x, y, z, pitch, height, c->WidthInBytes, c->Height, c->Depth, &off, &len) ||
            __builtin_add_overflow(addr, off, &start))
            return CUDA_ERROR_INVALID_VALUE;
        CUresult rc = vg_host_for_graph(start, len, &daemon);
        if (rc == CUDA_SUCCESS) {
            addr = daemon - off; /* the side's base, as the daemon sees it */
        } else if (rc != CUDA_ERROR_NOT_SUPPORTED) {
            return rc;
        } else if (type == CU_MEMORYTYPE_HOST) {
            if (!atomic_exchange(&warned, true))
                VGPU_WARN("a graph copy names pageable host memory (%p): refused with CUDA_ERROR_NOT_SUPPORTED; "
                          "the daemon cannot reach this process's pageable memory when the graph runs (use "
                          "pinned memory: cudaMallocHost, cudaHostAlloc, cudaHostRegister)",
                          (void *)(uintptr_t)start);
            return CUDA_ERROR_NOT_SUPPORTED;
        }
    }
    wire_put_u32(a, type);
    wire_put_u64(a, addr);
    wire_put_u64(a, x);
    wire_put_u64(a, y);
    wire_put_u64(a, z);
    wire_put_u64(a, pitch);
    wire_put_u64(a, height);
    return CUDA_SUCCESS;
}

CUresult vg_put_copy(struct wire_buf *a, const CUDA_MEMCPY3D *c)
{
    if (!c) return CUDA_ERROR_INVALID_VALUE;
    if (c->srcLOD || c->dstLOD) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = put_side(a, c->srcMemoryType, c->srcHost, c->srcDevice, c->srcXInBytes, c->srcY, c->srcZ,
                           c->srcPitch, c->srcHeight, c);
    if (rc == CUDA_SUCCESS)
        rc = put_side(a, c->dstMemoryType, c->dstHost, c->dstDevice, c->dstXInBytes, c->dstY, c->dstZ, c->dstPitch,
                      c->dstHeight, c);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u64(a, c->WidthInBytes);
    wire_put_u64(a, c->Height);
    wire_put_u64(a, c->Depth);
    return CUDA_SUCCESS;
}

static CUresult put_memcpy(struct wire_buf *a, const CUDA_MEMCPY3D *c)
{
    if (!c) return CUDA_ERROR_INVALID_VALUE;
    wire_put_u32(a, CU_GRAPH_NODE_TYPE_MEMCPY);
    return vg_put_copy(a, c);
}

static CUresult put_memset(struct wire_buf *a, const CUDA_MEMSET_NODE_PARAMS *m)
{
    if (!m) return CUDA_ERROR_INVALID_VALUE;
    wire_put_u32(a, CU_GRAPH_NODE_TYPE_MEMSET);
    wire_put_u64(a, m->dst);
    wire_put_u64(a, m->pitch);
    wire_put_u32(a, m->value);
    wire_put_u32(a, m->elementSize);
    wire_put_u64(a, m->width);
    wire_put_u64(a, m->height);
    return CUDA_SUCCESS;
}

/* A host node: the function becomes a ticket that lives as long as the process (the
 * daemon does not say when the last graph holding it is gone). */
static CUresult put_host(struct wire_buf *a, const CUDA_HOST_NODE_PARAMS *h)
{
    if (!h || !h->fn) return CUDA_ERROR_INVALID_VALUE;
    uint64_t ticket;
    CUresult rc = vg_hostfn_ticket(h->fn, h->userData, &ticket);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u32(a, CU_GRAPH_NODE_TYPE_HOST);
    wire_put_u64(a, ticket);
    return CUDA_SUCCESS;
}

static void put_event(struct wire_buf *a, CUgraphNodeType type, CUevent e)
{
    wire_put_u32(a, type);
    wire_put_u64(a, h64(e));
}

/* ---- graphs ---- */

CUresult CUDAAPI cuGraphCreate(CUgraph *phGraph, unsigned int flags)
{
    REQUIRE_INIT();
    if (!phGraph) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u32(a, flags);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_GRAPH_CREATE, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t g = wire_get_u64(&r);
    if (!wire_rd_end(&r) || !g) return vg_bad_reply(VGPU_OP_GRAPH_CREATE);
    *phGraph = (CUgraph)(uintptr_t)g;
    return CUDA_SUCCESS;
}

static CUresult one_handle(uint16_t op, uint64_t h)
{
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h);
    return vg_call_simple(op, a);
}

CUresult CUDAAPI cuGraphDestroy(CUgraph hGraph)
{
    REQUIRE_INIT();
    return one_handle(VGPU_OP_GRAPH_DESTROY, h64(hGraph));
}

/* A call whose reply is one non-NULL handle. */
static CUresult handle_reply(uint16_t op, struct wire_buf *a, uint64_t *out)
{
    struct wire_rd r;
    CUresult rc = vg_call(op, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t v = wire_get_u64(&r);
    if (!wire_rd_end(&r) || !v) return vg_bad_reply(op);
    *out = v;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuGraphClone(CUgraph *phGraphClone, CUgraph originalGraph)
{
    REQUIRE_INIT();
    if (!phGraphClone) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(originalGraph));
    uint64_t v = 0;
    CUresult rc = handle_reply(VGPU_OP_GRAPH_CLONE, a, &v);
    if (rc == CUDA_SUCCESS) *phGraphClone = (CUgraph)(uintptr_t)v;
    return rc;
}

CUresult CUDAAPI cuGraphNodeFindInClone(CUgraphNode *phNode, CUgraphNode hOriginalNode, CUgraph hClonedGraph)
{
    REQUIRE_INIT();
    if (!phNode) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(hOriginalNode));
    wire_put_u64(a, h64(hClonedGraph));
    uint64_t v = 0;
    CUresult rc = handle_reply(VGPU_OP_GRAPH_FIND_IN_CLONE, a, &v);
    if (rc == CUDA_SUCCESS) *phNode = (CUgraphNode)(uintptr_t)v;
    return rc;
}

/* Node descriptions are built in a buffer of their own: packing kernel arguments may
 * ask the daemon for a layout, which reuses the thread's argument buffer. */
struct node_buf {
    struct wire_buf b;
};

static CUresult add_node(CUgraphNode *out, CUgraph g, const CUgraphNode *deps, size_t n, struct node_buf *nb,
                         CUresult built)
{
    CUresult rc = built;
    if (rc == CUDA_SUCCESS && (!out || (n && !deps))) rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS && n > MAX_LIST) rc = CUDA_ERROR_NOT_SUPPORTED;
    if (rc == CUDA_SUCCESS && nb->b.oom) rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (rc == CUDA_SUCCESS) {
        struct wire_buf *a = vg_args();
        wire_put_u64(a, h64(g));
        wire_put_u32(a, (uint32_t)n);
        for (size_t i = 0; i < n; i++) wire_put_u64(a, h64(deps[i]));
        wire_put_raw(a, nb->b.data, nb->b.len);
        uint64_t v = 0;
        rc = handle_reply(VGPU_OP_GRAPH_ADD_NODE, a, &v);
        if (rc == CUDA_SUCCESS) *out = (CUgraphNode)(uintptr_t)v;
    }
    wire_buf_free(&nb->b);
    return rc;
}

static struct wire_buf *node_start(struct node_buf *nb)
{
    wire_buf_init(&nb->b);
    return &nb->b;
}

CUresult CUDAAPI cuGraphAddKernelNode_v2(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                         size_t numDependencies, const CUDA_KERNEL_NODE_PARAMS *nodeParams)
{
    REQUIRE_INIT();
    struct node_buf nb;
    CUresult rc = put_kernel_v2(node_start(&nb), nodeParams);
    return add_node(phGraphNode, hGraph, dependencies, numDependencies, &nb, rc);
}

CUresult CUDAAPI cuGraphAddKernelNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                      size_t numDependencies, const CUDA_KERNEL_NODE_PARAMS_v1 *nodeParams)
{
    REQUIRE_INIT();
    struct node_buf nb;
    CUresult rc = put_kernel_v1(node_start(&nb), nodeParams);
    return add_node(phGraphNode, hGraph, dependencies, numDependencies, &nb, rc);
}

CUresult CUDAAPI cuGraphAddMemcpyNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                      size_t numDependencies, const CUDA_MEMCPY3D *copyParams, CUcontext ctx)
{
    REQUIRE_INIT();
    (void)ctx; /* the daemon uses the thread's current context, as cudart passes */
    struct node_buf nb;
    CUresult rc = put_memcpy(node_start(&nb), copyParams);
    return add_node(phGraphNode, hGraph, dependencies, numDependencies, &nb, rc);
}

CUresult CUDAAPI cuGraphAddMemsetNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                      size_t numDependencies, const CUDA_MEMSET_NODE_PARAMS *memsetParams,
                                      CUcontext ctx)
{
    REQUIRE_INIT();
    (void)ctx;
    struct node_buf nb;
    CUresult rc = put_memset(node_start(&nb), memsetParams);
    return add_node(phGraphNode, hGraph, dependencies, numDependencies, &nb, rc);
}

CUresult CUDAAPI cuGraphAddHostNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                    size_t numDependencies, const CUDA_HOST_NODE_PARAMS *nodeParams)
{
    REQUIRE_INIT();
    if (!nodeParams || !nodeParams->fn) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = vg_hostfn_runner_ready(); /* before building the arguments: it calls the daemon */
    if (rc != CUDA_SUCCESS) return rc;
    struct node_buf nb;
    rc = put_host(node_start(&nb), nodeParams);
    return add_node(phGraphNode, hGraph, dependencies, numDependencies, &nb, rc);
}

CUresult CUDAAPI cuGraphAddEventRecordNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                           size_t numDependencies, CUevent event)
{
    REQUIRE_INIT();
    struct node_buf nb;
    put_event(node_start(&nb), CU_GRAPH_NODE_TYPE_EVENT_RECORD, event);
    return add_node(phGraphNode, hGraph, dependencies, numDependencies, &nb, CUDA_SUCCESS);
}

CUresult CUDAAPI cuGraphAddEventWaitNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                         size_t numDependencies, CUevent event)
{
    REQUIRE_INIT();
    struct node_buf nb;
    put_event(node_start(&nb), CU_GRAPH_NODE_TYPE_WAIT_EVENT, event);
    return add_node(phGraphNode, hGraph, dependencies, numDependencies, &nb, CUDA_SUCCESS);
}

CUresult CUDAAPI cuGraphAddChildGraphNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                          size_t numDependencies, CUgraph childGraph)
{
    REQUIRE_INIT();
    struct node_buf nb;
    struct wire_buf *b = node_start(&nb);
    wire_put_u32(b, CU_GRAPH_NODE_TYPE_GRAPH);
    wire_put_u64(b, h64(childGraph));
    return add_node(phGraphNode, hGraph, dependencies, numDependencies, &nb, CUDA_SUCCESS);
}

CUresult CUDAAPI cuGraphAddEmptyNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                     size_t numDependencies)
{
    REQUIRE_INIT();
    struct node_buf nb;
    wire_put_u32(node_start(&nb), CU_GRAPH_NODE_TYPE_EMPTY);
    return add_node(phGraphNode, hGraph, dependencies, numDependencies, &nb, CUDA_SUCCESS);
}

/* ---- kernel nodes read back ---- */

/* Per node: the arguments last read back and the pointer array into them. Kept until
 * the node is destroyed or read again (as the driver keeps its copy). */
struct kernel_readback {
    uint8_t *args;
    void **ptrs;
};
static pthread_mutex_t readback_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vg_map readbacks; /* node -> struct kernel_readback * */

static void readback_forget(uint64_t node)
{
    uint64_t v = 0;
    pthread_mutex_lock(&readback_lock);
    if (vg_map_get(&readbacks, node, &v)) {
        struct kernel_readback *k = (struct kernel_readback *)(uintptr_t)v;
        free(k->args);
        free(k->ptrs);
        free(k);
        vg_map_del(&readbacks, node);
    }
    pthread_mutex_unlock(&readback_lock);
}

/* What GRAPH_NODE_GET said about a node. */
struct node_read {
    uint32_t type;
    uint64_t handle; /* func, event, child graph or host ticket */
    uint64_t kern;   /* kernel nodes: the CUkernel the node was made from, or 0 */
    unsigned dims[7];
    void **kernel_params;
    CUDA_MEMCPY3D copy;
    CUDA_MEMSET_NODE_PARAMS set;
};

/* A copy side read back: host memory named by the daemon's address (HOST sides, and
 * UNIFIED ones in mirrored or shared pinned memory) is named by the guest's again. */
static void side_to_guest(CUmemorytype type, CUdeviceptr *dev, void **host, size_t x)
{
    uint64_t v = *dev, guest;
    bool known = vg_mirror_guest_of_host(v + x, &guest) || vg_pinned_shared_guest_of(v + x, &guest);
    if (type == CU_MEMORYTYPE_HOST) {
        *dev = 0;
        *host = (void *)(uintptr_t)(known ? guest - x : v);
    } else if (type == CU_MEMORYTYPE_UNIFIED && known) {
        *dev = (CUdeviceptr)(guest - x);
    }
}

static CUresult node_get(CUgraphNode node, struct node_read *nr)
{
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(node));
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_GRAPH_NODE_GET, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    memset(nr, 0, sizeof *nr);
    nr->type = wire_get_u32(&r);
    switch (nr->type) {
    case CU_GRAPH_NODE_TYPE_KERNEL: {
        nr->handle = wire_get_u64(&r);
        nr->kern = wire_get_u64(&r);
        for (int i = 0; i < 7; i++) nr->dims[i] = wire_get_u32(&r);
        size_t len = 0;
        const void *args = wire_get_bytes(&r, VGPU_MAX_PARAM_BYTES, &len);
        uint32_t n = wire_get_u32(&r);
        if (r.bad || n > VGPU_MAX_KERNEL_PARAMS) return vg_bad_reply(VGPU_OP_GRAPH_NODE_GET);
        struct kernel_readback *k = calloc(1, sizeof *k);
        if (!k) return CUDA_ERROR_OUT_OF_MEMORY;
        k->args = malloc(len ? len : 1);
        k->ptrs = n ? calloc(n, sizeof *k->ptrs) : NULL;
        if (!k->args || (n && !k->ptrs)) {
            free(k->args);
            free(k);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        if (len) memcpy(k->args, args, len);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t off = wire_get_u32(&r), size = wire_get_u32(&r);
            if (off > len || size > len - off) r.bad = true; /* the layout must lie inside the bytes */
            else k->ptrs[i] = k->args + off;
        }
        if (!wire_rd_end(&r)) {
            free(k->args);
            free(k->ptrs);
            free(k);
            return vg_bad_reply(VGPU_OP_GRAPH_NODE_GET);
        }
        readback_forget(h64(node));
        pthread_mutex_lock(&readback_lock);
        int bad = vg_map_put(&readbacks, h64(node), (uint64_t)(uintptr_t)k);
        pthread_mutex_unlock(&readback_lock);
        if (bad) {
            free(k->args);
            free(k->ptrs);
            free(k);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        nr->kernel_params = k->ptrs;
        return CUDA_SUCCESS;
    }
    case CU_GRAPH_NODE_TYPE_MEMCPY: {
        CUDA_MEMCPY3D *c = &nr->copy;
        c->srcMemoryType = (CUmemorytype)wire_get_u32(&r);
        c->srcDevice = wire_get_u64(&r);
        c->srcXInBytes = wire_get_u64(&r);
        c->srcY = wire_get_u64(&r);
        c->srcZ = wire_get_u64(&r);
        c->srcPitch = wire_get_u64(&r);
        c->srcHeight = wire_get_u64(&r);
        c->dstMemoryType = (CUmemorytype)wire_get_u32(&r);
        c->dstDevice = wire_get_u64(&r);
        c->dstXInBytes = wire_get_u64(&r);
        c->dstY = wire_get_u64(&r);
        c->dstZ = wire_get_u64(&r);
        c->dstPitch = wire_get_u64(&r);
        c->dstHeight = wire_get_u64(&r);
        c->WidthInBytes = wire_get_u64(&r);
        c->Height = wire_get_u64(&r);
        c->Depth = wire_get_u64(&r);
        side_to_guest(c->srcMemoryType, &c->srcDevice, (void **)&c->srcHost, c->srcXInBytes);
        side_to_guest(c->dstMemoryType, &c->dstDevice, &c->dstHost, c->dstXInBytes);
        break;
    }
    case CU_GRAPH_NODE_TYPE_MEMSET:
        nr->set.dst = wire_get_u64(&r);
        nr->set.pitch = wire_get_u64(&r);
        nr->set.value = wire_get_u32(&r);
        nr->set.elementSize = wire_get_u32(&r);
        nr->set.width = wire_get_u64(&r);
        nr->set.height = wire_get_u64(&r);
        break;
    case CU_GRAPH_NODE_TYPE_HOST:
    case CU_GRAPH_NODE_TYPE_GRAPH:
    case CU_GRAPH_NODE_TYPE_WAIT_EVENT:
    case CU_GRAPH_NODE_TYPE_EVENT_RECORD: nr->handle = wire_get_u64(&r); break;
    default: break;
    }
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_GRAPH_NODE_GET);
    return CUDA_SUCCESS;
}

/* Read a node that must be of `type`. */
static CUresult node_get_typed(CUgraphNode node, uint32_t type, struct node_read *nr)
{
    CUresult rc = node_get(node, nr);
    if (rc == CUDA_SUCCESS && nr->type != type) return CUDA_ERROR_INVALID_VALUE;
    return rc;
}

CUresult CUDAAPI cuGraphNodeGetType(CUgraphNode hNode, CUgraphNodeType *type)
{
    REQUIRE_INIT();
    if (!type) return CUDA_ERROR_INVALID_VALUE;
    struct node_read nr;
    CUresult rc = node_get(hNode, &nr);
    if (rc == CUDA_SUCCESS) *type = (CUgraphNodeType)nr.type;
    return rc;
}

CUresult CUDAAPI cuGraphKernelNodeGetParams_v2(CUgraphNode hNode, CUDA_KERNEL_NODE_PARAMS *nodeParams)
{
    REQUIRE_INIT();
    if (!nodeParams) return CUDA_ERROR_INVALID_VALUE;
    struct node_read nr;
    CUresult rc = node_get_typed(hNode, CU_GRAPH_NODE_TYPE_KERNEL, &nr);
    if (rc != CUDA_SUCCESS) return rc;
    memset(nodeParams, 0, sizeof *nodeParams);
    nodeParams->func = (CUfunction)(uintptr_t)nr.handle;
    nodeParams->kern = (CUkernel)(uintptr_t)nr.kern;
    nodeParams->gridDimX = nr.dims[0];
    nodeParams->gridDimY = nr.dims[1];
    nodeParams->gridDimZ = nr.dims[2];
    nodeParams->blockDimX = nr.dims[3];
    nodeParams->blockDimY = nr.dims[4];
    nodeParams->blockDimZ = nr.dims[5];
    nodeParams->sharedMemBytes = nr.dims[6];
    nodeParams->kernelParams = nr.kernel_params;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuGraphKernelNodeGetParams(CUgraphNode hNode, CUDA_KERNEL_NODE_PARAMS_v1 *nodeParams)
{
    REQUIRE_INIT();
    if (!nodeParams) return CUDA_ERROR_INVALID_VALUE;
    CUDA_KERNEL_NODE_PARAMS p;
    CUresult rc = cuGraphKernelNodeGetParams_v2(hNode, &p);
    if (rc != CUDA_SUCCESS) return rc;
    memset(nodeParams, 0, sizeof *nodeParams);
    nodeParams->func = p.func ? p.func : (CUfunction)p.kern;
    nodeParams->gridDimX = p.gridDimX;
    nodeParams->gridDimY = p.gridDimY;
    nodeParams->gridDimZ = p.gridDimZ;
    nodeParams->blockDimX = p.blockDimX;
    nodeParams->blockDimY = p.blockDimY;
    nodeParams->blockDimZ = p.blockDimZ;
    nodeParams->sharedMemBytes = p.sharedMemBytes;
    nodeParams->kernelParams = p.kernelParams;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuGraphMemcpyNodeGetParams(CUgraphNode hNode, CUDA_MEMCPY3D *nodeParams)
{
    REQUIRE_INIT();
    if (!nodeParams) return CUDA_ERROR_INVALID_VALUE;
    struct node_read nr;
    CUresult rc = node_get_typed(hNode, CU_GRAPH_NODE_TYPE_MEMCPY, &nr);
    if (rc == CUDA_SUCCESS) *nodeParams = nr.copy;
    return rc;
}

CUresult CUDAAPI cuGraphMemsetNodeGetParams(CUgraphNode hNode, CUDA_MEMSET_NODE_PARAMS *nodeParams)
{
    REQUIRE_INIT();
    if (!nodeParams) return CUDA_ERROR_INVALID_VALUE;
    struct node_read nr;
    CUresult rc = node_get_typed(hNode, CU_GRAPH_NODE_TYPE_MEMSET, &nr);
    if (rc == CUDA_SUCCESS) *nodeParams = nr.set;
    return rc;
}

CUresult CUDAAPI cuGraphHostNodeGetParams(CUgraphNode hNode, CUDA_HOST_NODE_PARAMS *nodeParams)
{
    REQUIRE_INIT();
    if (!nodeParams) return CUDA_ERROR_INVALID_VALUE;
    struct node_read nr;
    CUresult rc = node_get_typed(hNode, CU_GRAPH_NODE_TYPE_HOST, &nr);
    if (rc != CUDA_SUCCESS) return rc;
    CUhostFn fn;
    void *ud;
    if (!vg_hostfn_lookup(nr.handle, &fn, &ud)) return vg_bad_reply(VGPU_OP_GRAPH_NODE_GET);
    nodeParams->fn = fn;
    nodeParams->userData = ud;
    return CUDA_SUCCESS;
}

static CUresult event_get(CUgraphNode n, uint32_t type, CUevent *out)
{
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    struct node_read nr;
    CUresult rc = node_get_typed(n, type, &nr);
    if (rc == CUDA_SUCCESS) *out = (CUevent)(uintptr_t)nr.handle;
    return rc;
}

CUresult CUDAAPI cuGraphEventRecordNodeGetEvent(CUgraphNode hNode, CUevent *event_out)
{
    REQUIRE_INIT();
    return event_get(hNode, CU_GRAPH_NODE_TYPE_EVENT_RECORD, event_out);
}

CUresult CUDAAPI cuGraphEventWaitNodeGetEvent(CUgraphNode hNode, CUevent *event_out)
{
    REQUIRE_INIT();
    return event_get(hNode, CU_GRAPH_NODE_TYPE_WAIT_EVENT, event_out);
}

CUresult CUDAAPI cuGraphChildGraphNodeGetGraph(CUgraphNode hNode, CUgraph *phGraph)
{
    REQUIRE_INIT();
    if (!phGraph) return CUDA_ERROR_INVALID_VALUE;
    struct node_read nr;
    CUresult rc = node_get_typed(hNode, CU_GRAPH_NODE_TYPE_GRAPH, &nr);
    if (rc == CUDA_SUCCESS) *phGraph = (CUgraph)(uintptr_t)nr.handle;
    return rc;
}

/* ---- setting node parameters, on a graph (exec 0) or an executable graph ---- */

static CUresult set_node(CUgraphExec exec, CUgraphNode node, struct node_buf *nb, CUresult built)
{
    CUresult rc = built;
    if (rc == CUDA_SUCCESS && nb->b.oom) rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (rc == CUDA_SUCCESS) {
        struct wire_buf *a = vg_args();
        if (exec) wire_put_u64(a, h64(exec));
        wire_put_u64(a, h64(node));
        wire_put_raw(a, nb->b.data, nb->b.len);
        rc = vg_call_simple(exec ? VGPU_OP_GRAPH_EXEC_NODE_SET : VGPU_OP_GRAPH_NODE_SET, a);
    }
    wire_buf_free(&nb->b);
    return rc;
}

static CUresult set_kernel_v2(CUgraphExec exec, CUgraphNode n, const CUDA_KERNEL_NODE_PARAMS *p)
{
    struct node_buf nb;
    CUresult rc = put_kernel_v2(node_start(&nb), p);
    return set_node(exec, n, &nb, rc);
}

static CUresult set_kernel_v1(CUgraphExec exec, CUgraphNode n, const CUDA_KERNEL_NODE_PARAMS_v1 *p)
{
    struct node_buf nb;
    CUresult rc = put_kernel_v1(node_start(&nb), p);
    return set_node(exec, n, &nb, rc);
}

CUresult CUDAAPI cuGraphKernelNodeSetParams_v2(CUgraphNode hNode, const CUDA_KERNEL_NODE_PARAMS *nodeParams)
{
    REQUIRE_INIT();
    return set_kernel_v2(NULL, hNode, nodeParams);
}

CUresult CUDAAPI cuGraphKernelNodeSetParams(CUgraphNode hNode, const CUDA_KERNEL_NODE_PARAMS_v1 *nodeParams)
{
    REQUIRE_INIT();
    return set_kernel_v1(NULL, hNode, nodeParams);
}

CUresult CUDAAPI cuGraphExecKernelNodeSetParams_v2(CUgraphExec hGraphExec, CUgraphNode hNode,
                                                   const CUDA_KERNEL_NODE_PARAMS *nodeParams)
{
    REQUIRE_INIT();
    if (!hGraphExec) return CUDA_ERROR_INVALID_VALUE;
    return set_kernel_v2(hGraphExec, hNode, nodeParams);
}

CUresult CUDAAPI cuGraphExecKernelNodeSetParams(CUgraphExec hGraphExec, CUgraphNode hNode,
                                                const CUDA_KERNEL_NODE_PARAMS_v1 *nodeParams)
{
    REQUIRE_INIT();
    if (!hGraphExec) return CUDA_ERROR_INVALID_VALUE;
    return set_kernel_v1(hGraphExec, hNode, nodeParams);
}

static CUresult set_memcpy(CUgraphExec exec, CUgraphNode n, const CUDA_MEMCPY3D *c)
{
    struct node_buf nb;
    CUresult rc = put_memcpy(node_start(&nb), c);
    return set_node(exec, n, &nb, rc);
}

CUresult CUDAAPI cuGraphMemcpyNodeSetParams(CUgraphNode hNode, const CUDA_MEMCPY3D *nodeParams)
{
    REQUIRE_INIT();
    return set_memcpy(NULL, hNode, nodeParams);
}

CUresult CUDAAPI cuGraphExecMemcpyNodeSetParams(CUgraphExec hGraphExec, CUgraphNode hNode,
                                                const CUDA_MEMCPY3D *copyParams, CUcontext ctx)
{
    REQUIRE_INIT();
    (void)ctx;
    if (!hGraphExec) return CUDA_ERROR_INVALID_VALUE;
    return set_memcpy(hGraphExec, hNode, copyParams);
}

static CUresult set_memset(CUgraphExec exec, CUgraphNode n, const CUDA_MEMSET_NODE_PARAMS *m)
{
    struct node_buf nb;
    CUresult rc = put_memset(node_start(&nb), m);
    return set_node(exec, n, &nb, rc);
}

CUresult CUDAAPI cuGraphMemsetNodeSetParams(CUgraphNode hNode, const CUDA_MEMSET_NODE_PARAMS *nodeParams)
{
    REQUIRE_INIT();
    return set_memset(NULL, hNode, nodeParams);
}

CUresult CUDAAPI cuGraphExecMemsetNodeSetParams(CUgraphExec hGraphExec, CUgraphNode hNode,
                                                const CUDA_MEMSET_NODE_PARAMS *memsetParams, CUcontext ctx)
{
    REQUIRE_INIT();
    (void)ctx;
    if (!hGraphExec) return CUDA_ERROR_INVALID_VALUE;
    return set_memset(hGraphExec, hNode, memsetParams);
}

static CUresult set_host(CUgraphExec exec, CUgraphNode n, const CUDA_HOST_NODE_PARAMS *h)
{
    if (!h || !h->fn) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = vg_hostfn_runner_ready();
    if (rc != CUDA_SUCCESS) return rc;
    struct node_buf nb;
    rc = put_host(node_start(&nb), h);
    return set_node(exec, n, &nb, rc);
}

CUresult CUDAAPI cuGraphHostNodeSetParams(CUgraphNode hNode, const CUDA_HOST_NODE_PARAMS *nodeParams)
{
    REQUIRE_INIT();
    return set_host(NULL, hNode, nodeParams);
}

CUresult CUDAAPI cuGraphExecHostNodeSetParams(CUgraphExec hGraphExec, CUgraphNode hNode,
                                              const CUDA_HOST_NODE_PARAMS *nodeParams)
{
    REQUIRE_INIT();
    if (!hGraphExec) return CUDA_ERROR_INVALID_VALUE;
    return set_host(hGraphExec, hNode, nodeParams);
}

static CUresult set_event(CUgraphExec exec, CUgraphNode n, uint32_t type, CUevent e)
{
    struct node_buf nb;
    put_event(node_start(&nb), (CUgraphNodeType)type, e);
    return set_node(exec, n, &nb, CUDA_SUCCESS);
}

CUresult CUDAAPI cuGraphEventRecordNodeSetEvent(CUgraphNode hNode, CUevent event)
{
    REQUIRE_INIT();
    return set_event(NULL, hNode, CU_GRAPH_NODE_TYPE_EVENT_RECORD, event);
}

CUresult CUDAAPI cuGraphEventWaitNodeSetEvent(CUgraphNode hNode, CUevent event)
{
    REQUIRE_INIT();
    return set_event(NULL, hNode, CU_GRAPH_NODE_TYPE_WAIT_EVENT, event);
}

CUresult CUDAAPI cuGraphExecEventRecordNodeSetEvent(CUgraphExec hGraphExec, CUgraphNode hNode, CUevent event)
{
    REQUIRE_INIT();
    if (!hGraphExec) return CUDA_ERROR_INVALID_VALUE;
    return set_event(hGraphExec, hNode, CU_GRAPH_NODE_TYPE_EVENT_RECORD, event);
}

CUresult CUDAAPI cuGraphExecEventWaitNodeSetEvent(CUgraphExec hGraphExec, CUgraphNode hNode, CUevent event)
{
    REQUIRE_INIT();
    if (!hGraphExec) return CUDA_ERROR_INVALID_VALUE;
    return set_event(hGraphExec, hNode, CU_GRAPH_NODE_TYPE_WAIT_EVENT, event);
}

CUresult CUDAAPI cuGraphExecChildGraphNodeSetParams(CUgraphExec hGraphExec, CUgraphNode hNode, CUgraph childGraph)
{
    REQUIRE_INIT();
    if (!hGraphExec) return CUDA_ERROR_INVALID_VALUE;
    struct node_buf nb;
    struct wire_buf *b = node_start(&nb);
    wire_put_u32(b, CU_GRAPH_NODE_TYPE_GRAPH);
    wire_put_u64(b, h64(childGraph));
    return set_node(hGraphExec, hNode, &nb, CUDA_SUCCESS);
}

CUresult CUDAAPI cuGraphDestroyNode(CUgraphNode hNode)
{
    REQUIRE_INIT();
    CUresult rc = one_handle(VGPU_OP_GRAPH_DESTROY_NODE, h64(hNode));
    if (rc == CUDA_SUCCESS) readback_forget(h64(hNode));
    return rc;
}

/* ---- topology ---- */

/* The driver's array protocol: with out NULL, the count; otherwise up to *count
 * entries (the rest of the caller's array NULLed) and the true count. */
static CUresult node_list(uint64_t v, uint32_t what, CUgraphNode *out, CUgraphEdgeData *edges, size_t *count)
{
    if (!count) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, v);
    wire_put_u32(a, what);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_GRAPH_NODES, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint32_t n = wire_get_u32(&r);
    size_t room = out ? *count : 0;
    for (uint32_t i = 0; i < n && !r.bad; i++) {
        uint64_t node = wire_get_u64(&r);
        const void *e = wire_get_raw(&r, 8);
        if (i < room) {
            out[i] = (CUgraphNode)(uintptr_t)node;
            if (edges && e) memcpy(&edges[i], e, sizeof edges[i]);
        }
    }
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_GRAPH_NODES);
    for (size_t i = n; i < room; i++) {
        out[i] = NULL;
        if (edges) memset(&edges[i], 0, sizeof edges[i]);
    }
    *count = n;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuGraphGetNodes(CUgraph hGraph, CUgraphNode *nodes, size_t *numNodes)
{
    REQUIRE_INIT();
    return node_list(h64(hGraph), 0, nodes, NULL, numNodes);
}

CUresult CUDAAPI cuGraphGetRootNodes(CUgraph hGraph, CUgraphNode *rootNodes, size_t *numRootNodes)
{
    REQUIRE_INIT();
    return node_list(h64(hGraph), 1, rootNodes, NULL, numRootNodes);
}

CUresult CUDAAPI cuGraphNodeGetDependencies(CUgraphNode hNode, CUgraphNode *dependencies, size_t *numDependencies)
{
    REQUIRE_INIT();
    return node_list(h64(hNode), 2, dependencies, NULL, numDependencies);
}

CUresult CUDAAPI cuGraphNodeGetDependencies_v2(CUgraphNode hNode, CUgraphNode *dependencies, CUgraphEdgeData *edgeData,
                                               size_t *numDependencies)
{
    REQUIRE_INIT();
    return node_list(h64(hNode), 2, dependencies, edgeData, numDependencies);
}

CUresult CUDAAPI cuGraphNodeGetDependentNodes(CUgraphNode hNode, CUgraphNode *dependentNodes,
                                              size_t *numDependentNodes)
{
    REQUIRE_INIT();
    return node_list(h64(hNode), 3, dependentNodes, NULL, numDependentNodes);
}

CUresult CUDAAPI cuGraphNodeGetDependentNodes_v2(CUgraphNode hNode, CUgraphNode *dependentNodes,
                                                 CUgraphEdgeData *edgeData, size_t *numDependentNodes)
{
    REQUIRE_INIT();
    return node_list(h64(hNode), 3, dependentNodes, edgeData, numDependentNodes);
}

static CUresult edges(CUgraph g, CUgraphNode *from, CUgraphNode *to, CUgraphEdgeData *edata, size_t *count)
{
    if (!count || (!from) != (!to)) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(g));
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_GRAPH_EDGES, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint32_t n = wire_get_u32(&r);
    size_t room = from ? *count : 0;
    for (uint32_t i = 0; i < n && !r.bad; i++) {
        uint64_t f = wire_get_u64(&r), t = wire_get_u64(&r);
        const void *e = wire_get_raw(&r, 8);
        if (i < room) {
            from[i] = (CUgraphNode)(uintptr_t)f;
            to[i] = (CUgraphNode)(uintptr_t)t;
            if (edata && e) memcpy(&edata[i], e, sizeof edata[i]);
        }
    }
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_GRAPH_EDGES);
    for (size_t i = n; i < room; i++) {
        from[i] = to[i] = NULL;
        if (edata) memset(&edata[i], 0, sizeof edata[i]);
    }
    *count = n;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuGraphGetEdges(CUgraph hGraph, CUgraphNode *from, CUgraphNode *to, size_t *numEdges)
{
    REQUIRE_INIT();
    return edges(hGraph, from, to, NULL, numEdges);
}

CUresult CUDAAPI cuGraphGetEdges_v2(CUgraph hGraph, CUgraphNode *from, CUgraphNode *to, CUgraphEdgeData *edgeData,
                                    size_t *numEdges)
{
    REQUIRE_INIT();
    return edges(hGraph, from, to, edgeData, numEdges);
}

static CUresult dependencies(CUgraph g, uint32_t add, const CUgraphNode *from, const CUgraphNode *to,
                             const CUgraphEdgeData *edata, size_t n)
{
    if (n && (!from || !to)) return CUDA_ERROR_INVALID_VALUE;
    if (n > MAX_LIST) return CUDA_ERROR_NOT_SUPPORTED;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(g));
    wire_put_u32(a, add);
    wire_put_u32(a, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        wire_put_u64(a, h64(from[i]));
        wire_put_u64(a, h64(to[i]));
        uint8_t raw[8] = {0};
        if (edata) memcpy(raw, &edata[i], sizeof raw);
        wire_put_raw(a, raw, sizeof raw);
    }
    return vg_call_simple(VGPU_OP_GRAPH_DEPENDENCIES, a);
}

CUresult CUDAAPI cuGraphAddDependencies(CUgraph hGraph, const CUgraphNode *from, const CUgraphNode *to,
                                        size_t numDependencies)
{
    REQUIRE_INIT();
    return dependencies(hGraph, 1, from, to, NULL, numDependencies);
}

CUresult CUDAAPI cuGraphAddDependencies_v2(CUgraph hGraph, const CUgraphNode *from, const CUgraphNode *to,
                                           const CUgraphEdgeData *edgeData, size_t numDependencies)
{
    REQUIRE_INIT();
    return dependencies(hGraph, 1, from, to, edgeData, numDependencies);
}

CUresult CUDAAPI cuGraphRemoveDependencies(CUgraph hGraph, const CUgraphNode *from, const CUgraphNode *to,
                                           size_t numDependencies)
{
    REQUIRE_INIT();
    return dependencies(hGraph, 0, from, to, NULL, numDependencies);
}

CUresult CUDAAPI cuGraphRemoveDependencies_v2(CUgraph hGraph, const CUgraphNode *from, const CUgraphNode *to,
                                              const CUgraphEdgeData *edgeData, size_t numDependencies)
{
    REQUIRE_INIT();
    return dependencies(hGraph, 0, from, to, edgeData, numDependencies);
}

/* ---- executable graphs ---- */

static CUresult instantiate(CUgraphExec *out, CUgraph g, uint64_t flags, CUstream upload, CUgraphNode *err_node,
                            CUgraphInstantiateResult *result)
{
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(g));
    wire_put_u64(a, flags);
    wire_put_u64(a, h64(upload));
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_GRAPH_INSTANTIATE, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    int32_t drc = wire_get_i32(&r);
    uint32_t res = wire_get_u32(&r);
    uint64_t exec = wire_get_u64(&r), err = wire_get_u64(&r);
    if (!wire_rd_end(&r) || (drc == CUDA_SUCCESS && !exec)) return vg_bad_reply(VGPU_OP_GRAPH_INSTANTIATE);
    if (err_node) *err_node = (CUgraphNode)(uintptr_t)err;
    if (result) *result = (CUgraphInstantiateResult)res;
    if (drc == CUDA_SUCCESS) *out = (CUgraphExec)(uintptr_t)exec;
    return (CUresult)drc;
}

CUresult CUDAAPI cuGraphInstantiateWithFlags(CUgraphExec *phGraphExec, CUgraph hGraph, unsigned long long flags)
{
    REQUIRE_INIT();
    return instantiate(phGraphExec, hGraph, flags, NULL, NULL, NULL);
}

static CUresult instantiate_legacy(CUgraphExec *phGraphExec, CUgraph hGraph, CUgraphNode *phErrorNode,
                                   char *logBuffer, size_t bufferSize)
{
    if (logBuffer && bufferSize) logBuffer[0] = 0;
    return instantiate(phGraphExec, hGraph, 0, NULL, phErrorNode, NULL);
}

CUresult CUDAAPI cuGraphInstantiate(CUgraphExec *phGraphExec, CUgraph hGraph, CUgraphNode *phErrorNode,
                                    char *logBuffer, size_t bufferSize)
{
    REQUIRE_INIT();
    return instantiate_legacy(phGraphExec, hGraph, phErrorNode, logBuffer, bufferSize);
}

CUresult CUDAAPI cuGraphInstantiate_v2(CUgraphExec *phGraphExec, CUgraph hGraph, CUgraphNode *phErrorNode,
                                       char *logBuffer, size_t bufferSize)
{
    REQUIRE_INIT();
    return instantiate_legacy(phGraphExec, hGraph, phErrorNode, logBuffer, bufferSize);
}

static CUresult instantiate_params(CUgraphExec *phGraphExec, CUgraph hGraph, CUDA_GRAPH_INSTANTIATE_PARAMS *p,
                                   bool ptsz)
{
    if (!p) return CUDA_ERROR_INVALID_VALUE;
    CUstream upload = ptsz ? vg_stream_ptsz(p->hUploadStream) : p->hUploadStream;
    CUresult rc = vg_stream_check(upload);
    if (rc != CUDA_SUCCESS) return rc;
    p->hErrNode_out = NULL;
    p->result_out = CUDA_GRAPH_INSTANTIATE_ERROR;
    return instantiate(phGraphExec, hGraph, p->flags, upload, &p->hErrNode_out, &p->result_out);
}

CUresult CUDAAPI cuGraphInstantiateWithParams(CUgraphExec *phGraphExec, CUgraph hGraph,
                                              CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams)
{
    REQUIRE_INIT();
    return instantiate_params(phGraphExec, hGraph, instantiateParams, false);
}

CUresult CUDAAPI cuGraphInstantiateWithParams_ptsz(CUgraphExec *phGraphExec, CUgraph hGraph,
                                                   CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams)
{
    REQUIRE_INIT();
    return instantiate_params(phGraphExec, hGraph, instantiateParams, true);
}

CUresult CUDAAPI cuGraphExecDestroy(CUgraphExec hGraphExec)
{
    REQUIRE_INIT();
    return one_handle(VGPU_OP_GRAPH_EXEC_DESTROY, h64(hGraphExec));
}

CUresult CUDAAPI cuGraphExecGetFlags(CUgraphExec hGraphExec, cuuint64_t *flags)
{
    REQUIRE_INIT();
    if (!flags) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(hGraphExec));
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_GRAPH_EXEC_FLAGS, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t v = wire_get_u64(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_GRAPH_EXEC_FLAGS);
    *flags = v;
    return CUDA_SUCCESS;
}

static CUresult exec_update(CUgraphExec e, CUgraph g, CUgraphExecUpdateResultInfo *info)
{
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(e));
    wire_put_u64(a, h64(g));
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_GRAPH_EXEC_UPDATE, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    int32_t drc = wire_get_i32(&r);
    uint32_t result = wire_get_u32(&r);
    uint64_t err = wire_get_u64(&r), from = wire_get_u64(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_GRAPH_EXEC_UPDATE);
    info->result = (CUgraphExecUpdateResult)result;
    info->errorNode = (CUgraphNode)(uintptr_t)err;
    info->errorFromNode = (CUgraphNode)(uintptr_t)from;
    return (CUresult)drc;
}

CUresult CUDAAPI cuGraphExecUpdate_v2(CUgraphExec hGraphExec, CUgraph hGraph, CUgraphExecUpdateResultInfo *resultInfo)
{
    REQUIRE_INIT();
    if (!resultInfo) return CUDA_ERROR_INVALID_VALUE;
    return exec_update(hGraphExec, hGraph, resultInfo);
}

CUresult CUDAAPI cuGraphExecUpdate(CUgraphExec hGraphExec, CUgraph hGraph, CUgraphNode *hErrorNode_out,
                                   CUgraphExecUpdateResult *updateResult_out)
{
    REQUIRE_INIT();
    if (!hErrorNode_out || !updateResult_out) return CUDA_ERROR_INVALID_VALUE;
    CUgraphExecUpdateResultInfo info;
    memset(&info, 0, sizeof info);
    CUresult rc = exec_update(hGraphExec, hGraph, &info);
    *hErrorNode_out = info.errorNode;
    *updateResult_out = info.result;
    return rc;
}

static CUresult node_enabled(CUgraphExec e, CUgraphNode n, uint32_t set, unsigned *value)
{
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(e));
    wire_put_u64(a, h64(n));
    wire_put_u32(a, set);
    wire_put_u32(a, set ? *value : 0);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_GRAPH_NODE_ENABLED, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint32_t v = wire_get_u32(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_GRAPH_NODE_ENABLED);
    *value = v;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuGraphNodeSetEnabled(CUgraphExec hGraphExec, CUgraphNode hNode, unsigned int isEnabled)
{
    REQUIRE_INIT();
    return node_enabled(hGraphExec, hNode, 1, &isEnabled);
}

CUresult CUDAAPI cuGraphNodeGetEnabled(CUgraphExec hGraphExec, CUgraphNode hNode, unsigned int *isEnabled)
{
    REQUIRE_INIT();
    if (!isEnabled) return CUDA_ERROR_INVALID_VALUE;
    return node_enabled(hGraphExec, hNode, 0, isEnabled);
}

/* Launch and upload are posted like a kernel launch. */
static CUresult graph_launch(CUgraphExec e, CUstream s, uint32_t upload)
{
    if (!e) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = vg_stream_check(s);
    if (rc == CUDA_SUCCESS && !upload) rc = vg_mirror_push(); /* the graph may read mapped memory */
    if (rc != CUDA_SUCCESS) return rc;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(e));
    wire_put_u64(a, h64(s));
    wire_put_u32(a, upload);
    return vg_post(VGPU_OP_GRAPH_LAUNCH, a, NULL, 0);
}

CUresult CUDAAPI cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream)
{
    REQUIRE_INIT();
    return graph_launch(hGraphExec, hStream, 0);
}

CUresult CUDAAPI cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream)
{
    REQUIRE_INIT();
    return graph_launch(hGraphExec, vg_stream_ptsz(hStream), 0);
}

CUresult CUDAAPI cuGraphUpload(CUgraphExec hGraphExec, CUstream hStream)
{
    REQUIRE_INIT();
    return graph_launch(hGraphExec, hStream, 1);
}

CUresult CUDAAPI cuGraphUpload_ptsz(CUgraphExec hGraphExec, CUstream hStream)
{
    REQUIRE_INIT();
    return graph_launch(hGraphExec, vg_stream_ptsz(hStream), 1);
}

/* ---- stream capture ---- */

bool vg_capture_active(void) { return atomic_load(&active_captures) > 0; }

static CUresult begin_capture(CUstream s, CUstreamCaptureMode mode)
{
    CUresult rc = vg_stream_check(s);
    if (rc != CUDA_SUCCESS) return rc;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(s));
    wire_put_u32(a, mode);
    rc = vg_call_simple(VGPU_OP_STREAM_BEGIN_CAPTURE, a);
    if (rc == CUDA_SUCCESS) atomic_fetch_add(&active_captures, 1);
    return rc;
}

CUresult CUDAAPI cuStreamBeginCapture(CUstream hStream)
{
    REQUIRE_INIT();
    return begin_capture(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL);
}

CUresult CUDAAPI cuStreamBeginCapture_ptsz(CUstream hStream)
{
    REQUIRE_INIT();
    return begin_capture(vg_stream_ptsz(hStream), CU_STREAM_CAPTURE_MODE_GLOBAL);
}

CUresult CUDAAPI cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode)
{
    REQUIRE_INIT();
    return begin_capture(hStream, mode);
}

CUresult CUDAAPI cuStreamBeginCapture_v2_ptsz(CUstream hStream, CUstreamCaptureMode mode)
{
    REQUIRE_INIT();
    return begin_capture(vg_stream_ptsz(hStream), mode);
}

/* count x {u64 node, 8 bytes edge data} (zeros without edge data). */
static void put_deps(struct wire_buf *a, const CUgraphNode *deps, const CUgraphEdgeData *edata, size_t n)
{
    wire_put_u32(a, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        wire_put_u64(a, h64(deps[i]));
        uint8_t raw[8] = {0};
        if (edata) memcpy(raw, &edata[i], sizeof raw);
        wire_put_raw(a, raw, sizeof raw);
    }
}

static CUresult begin_capture_to_graph(CUstream s, CUgraph g, const CUgraphNode *deps, const CUgraphEdgeData *edata,
                                       size_t n, CUstreamCaptureMode mode)
{
    if (n && !deps) return CUDA_ERROR_INVALID_VALUE;
    if (n > MAX_LIST) return CUDA_ERROR_NOT_SUPPORTED;
    CUresult rc = vg_stream_check(s);
    if (rc != CUDA_SUCCESS) return rc;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(s));
    wire_put_u64(a, h64(g));
    wire_put_u32(a, mode);
    put_deps(a, deps, edata, n);
    rc = vg_call_simple(VGPU_OP_STREAM_CAPTURE_TO_GRAPH, a);
    if (rc == CUDA_SUCCESS) atomic_fetch_add(&active_captures, 1);
    return rc;
}

CUresult CUDAAPI cuStreamBeginCaptureToGraph(CUstream hStream, CUgraph hGraph, const CUgraphNode *dependencies,
                                             const CUgraphEdgeData *dependencyData, size_t numDependencies,
                                             CUstreamCaptureMode mode)
{
    REQUIRE_INIT();
    return begin_capture_to_graph(hStream, hGraph, dependencies, dependencyData, numDependencies, mode);
}

CUresult CUDAAPI cuStreamBeginCaptureToGraph_ptsz(CUstream hStream, CUgraph hGraph, const CUgraphNode *dependencies,
                                                  const CUgraphEdgeData *dependencyData, size_t numDependencies,
                                                  CUstreamCaptureMode mode)
{
    REQUIRE_INIT();
    return begin_capture_to_graph(vg_stream_ptsz(hStream), hGraph, dependencies, dependencyData, numDependencies,
                                  mode);
}

/* The next captured node of s depends on deps (flags SET) or on them too (ADD). */
static CUresult update_capture_deps(CUstream s, const CUgraphNode *deps, const CUgraphEdgeData *edata, size_t n,
                                    unsigned flags)
{
    if (n && !deps) return CUDA_ERROR_INVALID_VALUE;
    if (n > MAX_LIST) return CUDA_ERROR_NOT_SUPPORTED;
    CUresult rc = vg_stream_check(s);
    if (rc != CUDA_SUCCESS) return rc;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(s));
    wire_put_u32(a, flags);
    put_deps(a, deps, edata, n);
    return vg_call_simple(VGPU_OP_STREAM_UPDATE_CAPTURE_DEPS, a);
}

CUresult CUDAAPI cuStreamUpdateCaptureDependencies(CUstream hStream, CUgraphNode *dependencies, size_t numDependencies,
                                                   unsigned int flags)
{
    REQUIRE_INIT();
    return update_capture_deps(hStream, dependencies, NULL, numDependencies, flags);
}

CUresult CUDAAPI cuStreamUpdateCaptureDependencies_ptsz(CUstream hStream, CUgraphNode *dependencies,
                                                        size_t numDependencies, unsigned int flags)
{
    REQUIRE_INIT();
    return update_capture_deps(vg_stream_ptsz(hStream), dependencies, NULL, numDependencies, flags);
}

CUresult CUDAAPI cuStreamUpdateCaptureDependencies_v2(CUstream hStream, CUgraphNode *dependencies,
                                                      const CUgraphEdgeData *dependencyData, size_t numDependencies,
                                                      unsigned int flags)
{
    REQUIRE_INIT();
    return update_capture_deps(hStream, dependencies, dependencyData, numDependencies, flags);
}

CUresult CUDAAPI cuStreamUpdateCaptureDependencies_v2_ptsz(CUstream hStream, CUgraphNode *dependencies,
                                                           const CUgraphEdgeData *dependencyData,
                                                           size_t numDependencies, unsigned int flags)
{
    REQUIRE_INIT();
    return update_capture_deps(vg_stream_ptsz(hStream), dependencies, dependencyData, numDependencies, flags);
}

static CUresult end_capture(CUstream s, CUgraph *phGraph)
{
    if (!phGraph) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = vg_stream_check(s);
    if (rc != CUDA_SUCCESS) return rc;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(s));
    struct wire_rd r;
    rc = vg_call(VGPU_OP_STREAM_END_CAPTURE, a, NULL, 0, &r);
    /* The capture is over unless the stream was not capturing at all. */
    if ((rc == CUDA_SUCCESS || rc == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED || rc == CUDA_ERROR_STREAM_CAPTURE_UNJOINED ||
         rc == CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD) &&
        atomic_load(&active_captures) > 0)
        atomic_fetch_sub(&active_captures, 1);
    if (rc != CUDA_SUCCESS) {
        *phGraph = NULL;
        return rc;
    }
    uint64_t g = wire_get_u64(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_STREAM_END_CAPTURE);
    *phGraph = (CUgraph)(uintptr_t)g;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamEndCapture(CUstream hStream, CUgraph *phGraph)
{
    REQUIRE_INIT();
    return end_capture(hStream, phGraph);
}

CUresult CUDAAPI cuStreamEndCapture_ptsz(CUstream hStream, CUgraph *phGraph)
{
    REQUIRE_INIT();
    return end_capture(vg_stream_ptsz(hStream), phGraph);
}

/* Capture facts of a stream; the dependency list stays valid until this thread asks
 * again (the driver's: until the next call on the stream). */
struct capture_info {
    CUstreamCaptureStatus status;
    uint64_t id;
    CUgraph graph;
    const CUgraphNode *deps;
    const CUgraphEdgeData *edges;
    size_t ndeps;
};

static CUresult capture_info(CUstream s, struct capture_info *ci)
{
    static _Thread_local CUgraphNode *deps;
    static _Thread_local CUgraphEdgeData *edata;
    static _Thread_local size_t cap;
    memset(ci, 0, sizeof *ci);
    CUresult rc = vg_stream_check(s);
    if (rc != CUDA_SUCCESS) return rc;
    if (!vg_capture_active()) { /* nothing in this process captures */
        ci->status = CU_STREAM_CAPTURE_STATUS_NONE;
        return CUDA_SUCCESS;
    }
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(s));
    struct wire_rd r;
    rc = vg_call(VGPU_OP_STREAM_CAPTURE_INFO, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    ci->status = (CUstreamCaptureStatus)wire_get_u32(&r);
    if (ci->status != CU_STREAM_CAPTURE_STATUS_NONE) {
        ci->id = wire_get_u64(&r);
        ci->graph = (CUgraph)(uintptr_t)wire_get_u64(&r);
        uint32_t n = wire_get_u32(&r);
        if (!r.bad && n > cap) {
            CUgraphNode *d = realloc(deps, n * sizeof *d);
            if (d) deps = d;
            CUgraphEdgeData *e = d ? realloc(edata, n * sizeof *e) : NULL;
            if (e) edata = e;
            if (!d || !e) return CUDA_ERROR_OUT_OF_MEMORY;
            cap = n;
        }
        for (uint32_t i = 0; i < n && !r.bad; i++) {
            deps[i] = (CUgraphNode)(uintptr_t)wire_get_u64(&r);
            const void *e = wire_get_raw(&r, 8);
            if (e) memcpy(&edata[i], e, sizeof edata[i]);
        }
        ci->deps = n ? deps : NULL;
        ci->edges = n ? edata : NULL;
        ci->ndeps = n;
    }
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_STREAM_CAPTURE_INFO);
    return CUDA_SUCCESS;
}

CUresult vg_stream_capturing(CUstream s, bool *capturing)
{
    *capturing = false;
    if (!vg_capture_active()) return CUDA_SUCCESS;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(s));
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_STREAM_CAPTURE_INFO, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    /* The status only: the dependency list another call of this thread handed out stays. */
    uint32_t status = wire_get_u32(&r);
    if (status != CU_STREAM_CAPTURE_STATUS_NONE) {
        wire_get_u64(&r);
        wire_get_u64(&r);
        uint32_t n = wire_get_u32(&r);
        for (uint32_t i = 0; i < n && !r.bad; i++) {
            wire_get_u64(&r);
            wire_get_raw(&r, 8);
        }
    }
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_STREAM_CAPTURE_INFO);
    *capturing = status == CU_STREAM_CAPTURE_STATUS_ACTIVE;
    return CUDA_SUCCESS;
}

static CUresult is_capturing(CUstream s, CUstreamCaptureStatus *status)
{
    if (!status) return CUDA_ERROR_INVALID_VALUE;
    struct capture_info ci;
    CUresult rc = capture_info(s, &ci);
    if (rc == CUDA_SUCCESS) *status = ci.status;
    return rc;
}

CUresult CUDAAPI cuStreamIsCapturing(CUstream hStream, CUstreamCaptureStatus *captureStatus)
{
    REQUIRE_INIT();
    return is_capturing(hStream, captureStatus);
}

CUresult CUDAAPI cuStreamIsCapturing_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus)
{
    REQUIRE_INIT();
    return is_capturing(vg_stream_ptsz(hStream), captureStatus);
}

static CUresult get_info(CUstream s, CUstreamCaptureStatus *status, cuuint64_t *id, CUgraph *graph,
                         const CUgraphNode **deps, const CUgraphEdgeData **edata, size_t *ndeps)
{
    if (!status) return CUDA_ERROR_INVALID_VALUE;
    struct capture_info ci;
    CUresult rc = capture_info(s, &ci);
    if (rc != CUDA_SUCCESS) return rc;
    *status = ci.status;
    if (ci.status == CU_STREAM_CAPTURE_STATUS_NONE) return CUDA_SUCCESS; /* outputs untouched, as the driver */
    if (id) *id = ci.id;
    if (graph) *graph = ci.graph;
    if (deps) *deps = ci.deps;
    if (edata) *edata = ci.edges;
    if (ndeps) *ndeps = ci.ndeps;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamGetCaptureInfo(CUstream hStream, CUstreamCaptureStatus *captureStatus_out, cuuint64_t *id_out)
{
    REQUIRE_INIT();
    return get_info(hStream, captureStatus_out, id_out, NULL, NULL, NULL, NULL);
}

CUresult CUDAAPI cuStreamGetCaptureInfo_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                             cuuint64_t *id_out)
{
    REQUIRE_INIT();
    return get_info(vg_stream_ptsz(hStream), captureStatus_out, id_out, NULL, NULL, NULL, NULL);
}

CUresult CUDAAPI cuStreamGetCaptureInfo_v2(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                           cuuint64_t *id_out, CUgraph *graph_out,
                                           const CUgraphNode **dependencies_out, size_t *numDependencies_out)
{
    REQUIRE_INIT();
    return get_info(hStream, captureStatus_out, id_out, graph_out, dependencies_out, NULL, numDependencies_out);
}

CUresult CUDAAPI cuStreamGetCaptureInfo_v2_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                                cuuint64_t *id_out, CUgraph *graph_out,
                                                const CUgraphNode **dependencies_out, size_t *numDependencies_out)
{
    REQUIRE_INIT();
    return get_info(vg_stream_ptsz(hStream), captureStatus_out, id_out, graph_out, dependencies_out, NULL,
                    numDependencies_out);
}

CUresult CUDAAPI cuStreamGetCaptureInfo_v3(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                           cuuint64_t *id_out, CUgraph *graph_out,
                                           const CUgraphNode **dependencies_out, const CUgraphEdgeData **edgeData_out,
                                           size_t *numDependencies_out)
{
    REQUIRE_INIT();
    return get_info(hStream, captureStatus_out, id_out, graph_out, dependencies_out, edgeData_out,
                    numDependencies_out);
}

CUresult CUDAAPI cuStreamGetCaptureInfo_v3_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                                cuuint64_t *id_out, CUgraph *graph_out,
                                                const CUgraphNode **dependencies_out,
                                                const CUgraphEdgeData **edgeData_out, size_t *numDependencies_out)
{
    REQUIRE_INIT();
    return get_info(vg_stream_ptsz(hStream), captureStatus_out, id_out, graph_out, dependencies_out, edgeData_out,
                    numDependencies_out);
}

CUresult CUDAAPI cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode *mode)
{
    REQUIRE_INIT();
    if (!mode) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u32(a, *mode);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_THREAD_CAPTURE_MODE, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint32_t old = wire_get_u32(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_THREAD_CAPTURE_MODE);
    *mode = (CUstreamCaptureMode)old;
    return CUDA_SUCCESS;
}

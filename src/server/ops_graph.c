/*
 * CUDA graphs and stream capture.
 *
 * Graphs, their nodes and executable graphs live in the driver; the client names them by
 * the driver's handles, each registered for the session (H_GRAPH, H_GRAPH_NODE with its
 * graph as owner, H_GRAPH_EXEC) the first time the daemon hands it out. Destroying a
 * graph forgets its nodes and, recursively, the child graphs of its child-graph nodes.
 *
 * Node parameters travel as a node description (NODE below), never as guest pointers:
 * kernel arguments are one packed block laid out at the offsets the driver reports for
 * the function (as for LAUNCH); copies (COPY) name device memory, or host memory only
 * inside one of the session's mirrors (by the daemon's address: the graph runs when the
 * guest cannot supply data, so the guest mirrors pinned memory a graph names and refuses
 * pageable memory); memsets name device memory; a host node carries the guest's
 * host-function ticket (the daemon's node calls hostfn_trampoline, ops_hostfn.c).
 * Reading a kernel node back returns the packed block and the layout, so the guest can
 * point kernelParams into its own copy.
 *
 * Wire layouts (request -> reply body after the i32 result, outputs only on success):
 *   COPY              2 x {u32 memory type, u64 address, u64 x, u64 y, u64 z, u64 pitch,
 *                     u64 height} (src, dst), u64 width, u64 height, u64 depth; memory type
 *                     DEVICE; HOST (address: the daemon's host address, the touched bytes
 *                     inside one mirror); UNIFIED (inside a mirror by host or device address,
 *                     or device memory by the driver's account). Anything else:
 *                     CUDA_ERROR_NOT_SUPPORTED, so the driver never reaches worker memory.
 *   NODE (u32 type = CUgraphNodeType, then)
 *     KERNEL 0        u64 func, u32 grid[3], u32 block[3], u32 shared, bytes args
 *     MEMCPY 1        COPY
 *     MEMSET 2        u64 dst, u64 pitch, u32 value, u32 element size, u64 width, u64 height
 *     HOST 3          u64 ticket
 *     GRAPH 4         u64 child graph
 *     EMPTY 5         (nothing)
 *     WAIT_EVENT 6, EVENT_RECORD 7   u64 event
 *   A node read back (GRAPH_NODE_GET) is the same, except KERNEL names both the
 *   function and the CUkernel it was made from (either may be 0): u64 func, u64 kern,
 *   u32 grid[3], u32 block[3], u32 shared, bytes args, then
 *   u32 count, count x {u32 offset, u32 size} (the layout of args).
 *
 *   STREAM_BEGIN_CAPTURE u64 stream, u32 mode                       -> (nothing)
 *   STREAM_CAPTURE_TO_GRAPH u64 stream, u64 graph, u32 mode, u32 count (<= 4096),
 *                        count x {u64 node, 8 bytes edge data}      -> (nothing)
 *                        (the graph is marked H_CAPTURE_GRAPH: a failed capture leaves it
 *                        to the client, where a STREAM_BEGIN_CAPTURE graph is forgotten)
 *   STREAM_UPDATE_CAPTURE_DEPS u64 stream, u32 flags (0 add, 1 set), u32 count (<= 4096),
 *                        count x {u64 node, 8 bytes edge data}      -> (nothing)
 *                        (all-zero edge data is passed as NULL: default edges)
 *   MEMCPY_MIRRORED      u64 stream, COPY                           -> (nothing)
 *                        (an async copy with host memory on a capturing stream, as
 *                        cuMemcpy3DAsync: the driver records the daemon's copy)
 *   STREAM_END_CAPTURE   u64 stream                                 -> u64 graph
 *   STREAM_CAPTURE_INFO  u64 stream                                 -> u32 status, u64 id, u64 graph,
 *                        u32 count, count x {u64 node, 8 bytes edge data}   (id.. only when capturing)
 *   THREAD_CAPTURE_MODE  u32 mode                                   -> u32 previous mode
 *   GRAPH_CREATE         u32 flags                                  -> u64 graph
 *   GRAPH_DESTROY        u64 graph                                  -> (nothing)
 *   GRAPH_CLONE          u64 graph                                  -> u64 clone
 *   GRAPH_FIND_IN_CLONE  u64 node, u64 clone                        -> u64 node of the clone
 *   GRAPH_ADD_NODE       u64 graph, u32 count (<= 4096), count x u64 dependency, NODE -> u64 node
 *   GRAPH_DESTROY_NODE   u64 node                                   -> (nothing)
 *   GRAPH_NODE_GET       u64 node                                   -> NODE (as read back)
 *   GRAPH_NODE_SET       u64 node, NODE                             -> (nothing)
 *   GRAPH_EXEC_NODE_SET  u64 exec, u64 node, NODE                   -> (nothing)
 *   GRAPH_NODES          u64 graph or node, u32 what (0 all nodes, 1 root nodes,
 *                        2 dependencies, 3 dependents)              -> u32 count, count x {u64 node, 8 bytes edge}
 *   GRAPH_EDGES          u64 graph                                  -> u32 count, count x {u64 from, u64 to, 8 bytes edge}
 *   GRAPH_DEPENDENCIES   u64 graph, u32 add (1) / remove (0), u32 count (<= 4096),
 *                        count x {u64 from, u64 to, 8 bytes edge}    -> (nothing)
 *   GRAPH_INSTANTIATE    u64 graph, u64 flags, u64 upload stream    -> i32 rc, u32 result, u64 exec, u64 error node
 *                        (answers CUDA_SUCCESS; rc is the driver's: the result and error
 *                        node matter most when instantiation fails)
 *   GRAPH_EXEC_DESTROY   u64 exec                                   -> (nothing)
 *   GRAPH_EXEC_FLAGS     u64 exec                                   -> u64 flags
 *   GRAPH_EXEC_UPDATE    u64 exec, u64 graph                        -> i32 rc, u32 result, u64 error node,
 *                        u64 error-from node  (answers CUDA_SUCCESS, as GRAPH_INSTANTIATE)
 *   GRAPH_NODE_ENABLED   u64 exec, u64 node, u32 set, u32 enabled   -> u32 enabled
 *   GRAPH_LAUNCH         u64 exec, u64 stream, u32 upload (0 launch, 1 upload)  [posted, no reply]
 *
 * MEMCPY_HTOD/DTOH/STRIDED (data on the wire) are refused while their stream captures
 * (ops_memory.c): the daemon's staging buffer would be captured, not the guest's memory;
 * the guest sends copies with mirrored or pinned memory on a capturing stream as
 * MEMCPY_MIRRORED instead.
 */
#include <string.h>

#include "common/log.h"
#include "common/mirror_diff.h"
#include "server/mirror.h"
#include "server/ops_module.h"

#define MAX_GRAPH_LIST 4096u /* dependencies in one request */

static inline uint64_t h64(const void *p) { return (uint64_t)(uintptr_t)p; }

/* Per lane thread: a kernel node's arguments and their pointer array. */
static _Thread_local struct srv_param t_layout[VGPU_MAX_KERNEL_PARAMS];
static _Thread_local _Alignas(16) unsigned char t_args[VGPU_MAX_PARAM_BYTES];
static _Thread_local void *t_ptrs[VGPU_MAX_KERNEL_PARAMS];

static bool wire_graph(struct session *s, uint64_t v, CUgraph *out)
{
    if (!v || !handles_has(s, H_GRAPH, v)) {
        if (v) session_foreign(s, "graph", v, CUDA_ERROR_INVALID_HANDLE);
        return false;
    }
    *out = (CUgraph)(uintptr_t)v;
    return true;
}

static bool wire_node(struct session *s, uint64_t v, CUgraphNode *out)
{
    if (!v || !handles_has(s, H_GRAPH_NODE, v)) {
        if (v) session_foreign(s, "graph node", v, CUDA_ERROR_INVALID_HANDLE);
        return false;
    }
    *out = (CUgraphNode)(uintptr_t)v;
    return true;
}

static bool wire_exec(struct session *s, uint64_t v, CUgraphExec *out)
{
    if (!v || !handles_has(s, H_GRAPH_EXEC, v)) {
        if (v) session_foreign(s, "executable graph", v, CUDA_ERROR_INVALID_HANDLE);
        return false;
    }
    *out = (CUgraphExec)(uintptr_t)v;
    return true;
}

static bool wire_event(struct session *s, uint64_t v, CUevent *out)
{
    if (!v || !handles_has(s, H_EVENT, v)) {
        if (v) session_foreign(s, "event", v, CUDA_ERROR_INVALID_HANDLE);
        return false;
    }
    *out = (CUevent)(uintptr_t)v;
    return true;
}

/* Register nodes the driver handed out, as members of graph. */
static CUresult register_nodes(struct session *s, const CUgraphNode *n, size_t count, uint64_t graph)
{
    for (size_t i = 0; i < count; i++)
        if (n[i] && handles_add(s, H_GRAPH_NODE, h64(n[i]), graph, 0)) return CUDA_ERROR_OUT_OF_MEMORY;
    return CUDA_SUCCESS;
}

/* Forget a graph, its nodes and (recursively) the child graphs its nodes own. */
static void forget_graph(struct session *s, uint64_t g)
{
    uint64_t stack[64];
    size_t depth = 0;
    stack[depth++] = g;
    while (depth) {
        uint64_t cur = stack[--depth];
        handles_remove(s, H_GRAPH, cur);
        uint64_t children[64];
        size_t n = handles_take_owned(s, cur, H_GRAPH, children, 64);
        handles_remove_owned(s, cur);
        for (size_t i = 0; i < n && depth < 64; i++) stack[depth++] = children[i];
    }
}

/* ---- node descriptions ---- */

struct node_desc {
    CUgraphNodeType type;
    CUDA_KERNEL_NODE_PARAMS kernel;
    CUDA_MEMCPY3D copy;
    CUDA_MEMSET_NODE_PARAMS set;
    CUDA_HOST_NODE_PARAMS host;
    CUevent event;
    CUgraph child;
};

/* Device memory by the driver's own account (a UNIFIED address that is not mirrored). */
static bool is_device_memory(uint64_t p)
{
    unsigned type = 0;
    return drv.cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (CUdeviceptr)p) == CUDA_SUCCESS &&
           (type == CU_MEMORYTYPE_DEVICE || type == CU_MEMORYTYPE_UNIFIED);
}

/* One side of a COPY: device memory as the client named it, or host memory inside one
 * of the session's mirrors or shared pinned regions (ops_host_shared.c) by the daemon's host address (HOST; UNIFIED when the address
 * is a mirror's). Anything else would have the driver read or write the worker's own
 * memory when the graph runs: refused. */
static CUresult copy_side_check(uint32_t type, uint64_t addr, uint64_t x, uint64_t y, uint64_t z, uint64_t pitch,
                                uint64_t height, const CUDA_MEMCPY3D *c)
{
    static atomic_bool warned;
    uint64_t off, len, start;
    if (type == CU_MEMORYTYPE_DEVICE) return CUDA_SUCCESS; /* the driver checks device addresses */
    if (type != CU_MEMORYTYPE_HOST && type != CU_MEMORYTYPE_UNIFIED) return CUDA_ERROR_NOT_SUPPORTED; /* arrays */
    if (!vgpu_copy_side_extent(x, y, z, pitch, height, c->WidthInBytes, c->Height, c->Depth, &off, &len))
        return CUDA_ERROR_INVALID_VALUE;
    bool unified = type == CU_MEMORYTYPE_UNIFIED;
    bool overflow = __builtin_add_overflow(addr, off, &start);
    if (!overflow && (mirror_range(start, len, unified) || host_shared_range(start, len))) return CUDA_SUCCESS;
    if (!overflow && unified && !mirror_range(start, 1, true) && is_device_memory(start)) return CUDA_SUCCESS;
    if (!atomic_exchange(&warned, true))
        VGPU_WARN("graph copy: %#llx (%llu bytes) is neither device memory nor mirrored host memory of this "
                  "client: refused (guest pageable memory is out of reach when the graph runs)",
                  (unsigned long long)addr, (unsigned long long)len);
    return CUDA_ERROR_NOT_SUPPORTED;
}

/* Decode a COPY (the MEMCPY node's body, also MEMCPY_MIRRORED's) into *c: each side
 * device memory, or host memory the daemon mirrors (then `device` is its host address). */
static CUresult copy_decode(struct lane *L, struct wire_rd *in, CUDA_MEMCPY3D *c)
{
    uint32_t st = wire_get_u32(in);
    uint64_t sdev = wire_get_u64(in), sx = wire_get_u64(in), sy = wire_get_u64(in), sz = wire_get_u64(in),
             spitch = wire_get_u64(in), sheight = wire_get_u64(in);
    uint32_t dt = wire_get_u32(in);
    uint64_t ddev = wire_get_u64(in), dx = wire_get_u64(in), dy = wire_get_u64(in), dz = wire_get_u64(in),
             dpitch = wire_get_u64(in), dheight = wire_get_u64(in);
    uint64_t w = wire_get_u64(in), h = wire_get_u64(in), depth = wire_get_u64(in);
    if (in->bad) REJECT(L, "bad copy description");
    *c = (CUDA_MEMCPY3D){.srcMemoryType = (CUmemorytype)st, .srcXInBytes = sx, .srcY = sy, .srcZ = sz,
                         .srcPitch = spitch, .srcHeight = sheight,
                         .dstMemoryType = (CUmemorytype)dt, .dstXInBytes = dx, .dstY = dy, .dstZ = dz,
                         .dstPitch = dpitch, .dstHeight = dheight,
                         .WidthInBytes = w, .Height = h, .Depth = depth};
    if (st == CU_MEMORYTYPE_HOST)
        c->srcHost = (const void *)(uintptr_t)sdev;
    else
        c->srcDevice = sdev;
    if (dt == CU_MEMORYTYPE_HOST)
        c->dstHost = (void *)(uintptr_t)ddev;
    else
        c->dstDevice = ddev;
    CUresult rc = copy_side_check(st, sdev, sx, sy, sz, spitch, sheight, c);
    return rc == CUDA_SUCCESS ? copy_side_check(dt, ddev, dx, dy, dz, dpitch, dheight, c) : rc;
}

/* Decode a NODE; *why is set (and VGPU_RC_MALFORMED returned) for an undecodable
 * message; handles and values the driver should judge give a CUresult. */
static CUresult node_decode(struct lane *L, struct wire_rd *in, struct node_desc *d)
{
    memset(d, 0, sizeof *d);
    d->type = (CUgraphNodeType)wire_get_u32(in);
    switch ((int)d->type) {
    case CU_GRAPH_NODE_TYPE_KERNEL: {
        uint64_t fv = wire_get_u64(in);
        unsigned v[7];
        for (int i = 0; i < 7; i++) v[i] = wire_get_u32(in);
        size_t plen = 0;
        const void *args = wire_get_bytes(in, VGPU_MAX_PARAM_BYTES, &plen);
        if (in->bad) REJECT(L, "bad kernel node");
        CUfunction f;
        if (!wire_function(L->s, fv, &f)) return CUDA_ERROR_INVALID_HANDLE;
        uint32_t n = 0;
        CUresult rc = srv_param_layout(L->s, fv, t_layout, VGPU_MAX_KERNEL_PARAMS, &n);
        if (rc != CUDA_SUCCESS) return rc;
        if (plen) memcpy(t_args, args, plen);
        for (uint32_t i = 0; i < n; i++) {
            if (t_layout[i].offset > plen || t_layout[i].size > plen - t_layout[i].offset)
                return CUDA_ERROR_INVALID_VALUE;
            t_ptrs[i] = t_args + t_layout[i].offset;
        }
        d->kernel = (CUDA_KERNEL_NODE_PARAMS){.func = f, .gridDimX = v[0], .gridDimY = v[1], .gridDimZ = v[2],
                                              .blockDimX = v[3], .blockDimY = v[4], .blockDimZ = v[5],
                                              .sharedMemBytes = v[6], .kernelParams = n ? t_ptrs : NULL};
        return CUDA_SUCCESS;
    }
    case CU_GRAPH_NODE_TYPE_MEMCPY: return copy_decode(L, in, &d->copy);
    case CU_GRAPH_NODE_TYPE_MEMSET:
        d->set.dst = wire_get_u64(in);
        d->set.pitch = wire_get_u64(in);
        d->set.value = wire_get_u32(in);
        d->set.elementSize = wire_get_u32(in);
        d->set.width = wire_get_u64(in);
        d->set.height = wire_get_u64(in);
        if (in->bad) REJECT(L, "bad memset node");
        return CUDA_SUCCESS;
    case CU_GRAPH_NODE_TYPE_HOST: {
        uint64_t ticket = wire_get_u64(in);
        if (in->bad || !ticket) REJECT(L, "bad host node");
        /* Kept until the session ends: the graph may run it any number of times. */
        struct hostfn_rec *rec = hostfn_rec_new(L->s, ticket, true);
        if (!rec) return CUDA_ERROR_OUT_OF_MEMORY;
        d->host = (CUDA_HOST_NODE_PARAMS){.fn = hostfn_trampoline, .userData = rec};
        return CUDA_SUCCESS;
    }
    case CU_GRAPH_NODE_TYPE_GRAPH: {
        uint64_t g = wire_get_u64(in);
        if (in->bad) REJECT(L, "bad child graph node");
        return wire_graph(L->s, g, &d->child) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    }
    case CU_GRAPH_NODE_TYPE_EMPTY: return in->bad ? (L->malformed = "bad node", VGPU_RC_MALFORMED) : CUDA_SUCCESS;
    case CU_GRAPH_NODE_TYPE_WAIT_EVENT:
    case CU_GRAPH_NODE_TYPE_EVENT_RECORD: {
        uint64_t e = wire_get_u64(in);
        if (in->bad) REJECT(L, "bad event node");
        return wire_event(L->s, e, &d->event) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    }
    default:
        if (in->bad) REJECT(L, "bad node");
        return CUDA_ERROR_NOT_SUPPORTED;
    }
}

/* The lane's current context, for memcpy and memset nodes. */
static CUcontext current_ctx(void)
{
    CUcontext c = NULL;
    drv.cuCtxGetCurrent(&c);
    return c;
}

CUresult op_GRAPH_ADD_NODE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t gv = wire_get_u64(in);
    uint32_t n = wire_get_u32(in);
    if (n > MAX_GRAPH_LIST) REJECT(L, "too many dependencies");
    CUgraphNode deps[MAX_GRAPH_LIST];
    bool deps_ok = true;
    for (uint32_t i = 0; i < n; i++) deps_ok &= wire_node(L->s, wire_get_u64(in), &deps[i]);
    struct node_desc d;
    CUresult rc = node_decode(L, in, &d);
    if (rc == VGPU_RC_MALFORMED) return rc;
    IN_END(L, in);
    CUgraph g;
    if (!wire_graph(L->s, gv, &g) || !deps_ok) return CUDA_ERROR_INVALID_VALUE;
    if (rc != CUDA_SUCCESS) return rc;
    CUgraphNode node = NULL;
    switch ((int)d.type) {
    case CU_GRAPH_NODE_TYPE_KERNEL: rc = drv.cuGraphAddKernelNode_v2(&node, g, deps, n, &d.kernel); break;
    case CU_GRAPH_NODE_TYPE_MEMCPY: rc = drv.cuGraphAddMemcpyNode(&node, g, deps, n, &d.copy, current_ctx()); break;
    case CU_GRAPH_NODE_TYPE_MEMSET: rc = drv.cuGraphAddMemsetNode(&node, g, deps, n, &d.set, current_ctx()); break;
    case CU_GRAPH_NODE_TYPE_HOST: rc = drv.cuGraphAddHostNode(&node, g, deps, n, &d.host); break;
    case CU_GRAPH_NODE_TYPE_GRAPH: rc = drv.cuGraphAddChildGraphNode(&node, g, deps, n, d.child); break;
    case CU_GRAPH_NODE_TYPE_EMPTY: rc = drv.cuGraphAddEmptyNode(&node, g, deps, n); break;
    case CU_GRAPH_NODE_TYPE_WAIT_EVENT: rc = drv.cuGraphAddEventWaitNode(&node, g, deps, n, d.event); break;
    default: rc = drv.cuGraphAddEventRecordNode(&node, g, deps, n, d.event); break;
    }
    if (rc != CUDA_SUCCESS) return rc;
    if (register_nodes(L->s, &node, 1, gv)) return CUDA_ERROR_OUT_OF_MEMORY;
    wire_put_u64(out, h64(node));
    return CUDA_SUCCESS;
}

CUresult op_GRAPH_NODE_SET(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t nv = wire_get_u64(in);
    struct node_desc d;
    CUresult rc = node_decode(L, in, &d);
    if (rc == VGPU_RC_MALFORMED) return rc;
    IN_END(L, in);
    CUgraphNode node;
    if (!wire_node(L->s, nv, &node)) return CUDA_ERROR_INVALID_VALUE;
    if (rc != CUDA_SUCCESS) return rc;
    switch ((int)d.type) {
    case CU_GRAPH_NODE_TYPE_KERNEL: return drv.cuGraphKernelNodeSetParams_v2(node, &d.kernel);
    case CU_GRAPH_NODE_TYPE_MEMCPY: return drv.cuGraphMemcpyNodeSetParams(node, &d.copy);
    case CU_GRAPH_NODE_TYPE_MEMSET: return drv.cuGraphMemsetNodeSetParams(node, &d.set);
    case CU_GRAPH_NODE_TYPE_HOST: return drv.cuGraphHostNodeSetParams(node, &d.host);
    case CU_GRAPH_NODE_TYPE_WAIT_EVENT: return drv.cuGraphEventWaitNodeSetEvent(node, d.event);
    case CU_GRAPH_NODE_TYPE_EVENT_RECORD: return drv.cuGraphEventRecordNodeSetEvent(node, d.event);
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult op_GRAPH_EXEC_NODE_SET(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t ev = wire_get_u64(in), nv = wire_get_u64(in);
    struct node_desc d;
    CUresult rc = node_decode(L, in, &d);
    if (rc == VGPU_RC_MALFORMED) return rc;
    IN_END(L, in);
    CUgraphExec e;
    CUgraphNode node;
    if (!wire_exec(L->s, ev, &e) || !wire_node(L->s, nv, &node)) return CUDA_ERROR_INVALID_VALUE;
    if (rc != CUDA_SUCCESS) return rc;
    switch ((int)d.type) {
    case CU_GRAPH_NODE_TYPE_KERNEL: return drv.cuGraphExecKernelNodeSetParams_v2(e, node, &d.kernel);
    case CU_GRAPH_NODE_TYPE_MEMCPY: return drv.cuGraphExecMemcpyNodeSetParams(e, node, &d.copy, current_ctx());
    case CU_GRAPH_NODE_TYPE_MEMSET: return drv.cuGraphExecMemsetNodeSetParams(e, node, &d.set, current_ctx());
    case CU_GRAPH_NODE_TYPE_HOST: return drv.cuGraphExecHostNodeSetParams(e, node, &d.host);
    case CU_GRAPH_NODE_TYPE_GRAPH: return drv.cuGraphExecChildGraphNodeSetParams(e, node, d.child);
    case CU_GRAPH_NODE_TYPE_WAIT_EVENT: return drv.cuGraphExecEventWaitNodeSetEvent(e, node, d.event);
    case CU_GRAPH_NODE_TYPE_EVENT_RECORD: return drv.cuGraphExecEventRecordNodeSetEvent(e, node, d.event);
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

/* A kernel node read back: its function (registered if the driver made it), the
 * packed arguments and their layout. */
static CUresult kernel_node_get(struct lane *L, CUgraphNode node, struct wire_buf *out)
{
    CUDA_KERNEL_NODE_PARAMS p;
    memset(&p, 0, sizeof p);
    CUresult rc = drv.cuGraphKernelNodeGetParams_v2(node, &p);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t fv = p.func ? h64(p.func) : h64(p.kern);
    if (!fv) return CUDA_ERROR_UNKNOWN;
    /* The driver may name a function the client never asked for (the context's
     * function of a CUkernel): it is the client's from now on. */
    if (p.func && !handles_has(L->s, H_FUNCTION, h64(p.func)) && !handles_has(L->s, H_KERNEL, h64(p.func)) &&
        handles_add(L->s, H_FUNCTION, h64(p.func), 0, 0))
        return CUDA_ERROR_OUT_OF_MEMORY;
    if (p.kern && !handles_has(L->s, H_KERNEL, h64(p.kern)) && handles_add(L->s, H_KERNEL, h64(p.kern), 0, 0))
        return CUDA_ERROR_OUT_OF_MEMORY;
    uint32_t n = 0;
    rc = srv_param_layout(L->s, fv, t_layout, VGPU_MAX_KERNEL_PARAMS, &n);
    if (rc != CUDA_SUCCESS) return rc;
    size_t len = 0;
    for (uint32_t i = 0; i < n; i++)
        if ((size_t)t_layout[i].offset + t_layout[i].size > len) len = (size_t)t_layout[i].offset + t_layout[i].size;
    memset(t_args, 0, len);
    const unsigned char *extra_buf = NULL;
    size_t extra_len = 0;
    for (size_t i = 0; p.extra && i < 16 && p.extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
        if (p.extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER) extra_buf = p.extra[i + 1];
        if (p.extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE && p.extra[i + 1]) extra_len = *(const size_t *)p.extra[i + 1];
    }
    for (uint32_t i = 0; i < n; i++) {
        if (p.kernelParams && p.kernelParams[i])
            memcpy(t_args + t_layout[i].offset, p.kernelParams[i], t_layout[i].size);
        else if (extra_buf && (size_t)t_layout[i].offset + t_layout[i].size <= extra_len)
            memcpy(t_args + t_layout[i].offset, extra_buf + t_layout[i].offset, t_layout[i].size);
    }
    wire_put_u32(out, CU_GRAPH_NODE_TYPE_KERNEL);
    wire_put_u64(out, h64(p.func));
    wire_put_u64(out, h64(p.kern));
    const unsigned v[7] = {p.gridDimX, p.gridDimY, p.gridDimZ, p.blockDimX, p.blockDimY, p.blockDimZ, p.sharedMemBytes};
    for (int i = 0; i < 7; i++) wire_put_u32(out, v[i]);
    wire_put_bytes(out, t_args, len);
    wire_put_u32(out, n);
    for (uint32_t i = 0; i < n; i++) {
        wire_put_u32(out, t_layout[i].offset);
        wire_put_u32(out, t_layout[i].size);
    }
    return CUDA_SUCCESS;
}

CUresult op_GRAPH_NODE_GET(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t nv = wire_get_u64(in);
    IN_END(L, in);
    CUgraphNode node;
    if (!wire_node(L->s, nv, &node)) return CUDA_ERROR_INVALID_VALUE;
    CUgraphNodeType type;
    CUresult rc = drv.cuGraphNodeGetType(node, &type);
    if (rc != CUDA_SUCCESS) return rc;
    switch ((int)type) {
    case CU_GRAPH_NODE_TYPE_KERNEL: return kernel_node_get(L, node, out);
    case CU_GRAPH_NODE_TYPE_MEMCPY: {
        CUDA_MEMCPY3D c;
        memset(&c, 0, sizeof c);
        if ((rc = drv.cuGraphMemcpyNodeGetParams(node, &c)) != CUDA_SUCCESS) return rc;
        wire_put_u32(out, type);
        /* Host sides name the daemon's copy of mirrored memory (the guest turns the
         * address into its own). */
        wire_put_u32(out, c.srcMemoryType);
        wire_put_u64(out, c.srcMemoryType == CU_MEMORYTYPE_HOST ? h64(c.srcHost) : c.srcDevice);
        wire_put_u64(out, c.srcXInBytes);
        wire_put_u64(out, c.srcY);
        wire_put_u64(out, c.srcZ);
        wire_put_u64(out, c.srcPitch);
        wire_put_u64(out, c.srcHeight);
        wire_put_u32(out, c.dstMemoryType);
        wire_put_u64(out, c.dstMemoryType == CU_MEMORYTYPE_HOST ? h64(c.dstHost) : c.dstDevice);
        wire_put_u64(out, c.dstXInBytes);
        wire_put_u64(out, c.dstY);
        wire_put_u64(out, c.dstZ);
        wire_put_u64(out, c.dstPitch);
        wire_put_u64(out, c.dstHeight);
        wire_put_u64(out, c.WidthInBytes);
        wire_put_u64(out, c.Height);
        wire_put_u64(out, c.Depth);
        return CUDA_SUCCESS;
    }
    case CU_GRAPH_NODE_TYPE_MEMSET: {
        CUDA_MEMSET_NODE_PARAMS m;
        if ((rc = drv.cuGraphMemsetNodeGetParams(node, &m)) != CUDA_SUCCESS) return rc;
        wire_put_u32(out, type);
        wire_put_u64(out, m.dst);
        wire_put_u64(out, m.pitch);
        wire_put_u32(out, m.value);
        wire_put_u32(out, m.elementSize);
        wire_put_u64(out, m.width);
        wire_put_u64(out, m.height);
        return CUDA_SUCCESS;
    }
    case CU_GRAPH_NODE_TYPE_HOST: {
        CUDA_HOST_NODE_PARAMS h;
        if ((rc = drv.cuGraphHostNodeGetParams(node, &h)) != CUDA_SUCCESS) return rc;
        /* Every host node of a client graph is the daemon's trampoline. */
        if (h.fn != hostfn_trampoline || !h.userData) return CUDA_ERROR_UNKNOWN;
        wire_put_u32(out, type);
        wire_put_u64(out, ((const struct hostfn_rec *)h.userData)->ticket);
        return CUDA_SUCCESS;
    }
    case CU_GRAPH_NODE_TYPE_GRAPH: {
        CUgraph child;
        if ((rc = drv.cuGraphChildGraphNodeGetGraph(node, &child)) != CUDA_SUCCESS) return rc;
        /* Owned by the node's graph: forgotten with it. */
        uint64_t owner = handles_owner(L->s, H_GRAPH_NODE, nv);
        if (handles_add(L->s, H_GRAPH, h64(child), owner, 0)) return CUDA_ERROR_OUT_OF_MEMORY;
        wire_put_u32(out, type);
        wire_put_u64(out, h64(child));
        return CUDA_SUCCESS;
    }
    case CU_GRAPH_NODE_TYPE_EMPTY: wire_put_u32(out, type); return CUDA_SUCCESS;
    case CU_GRAPH_NODE_TYPE_WAIT_EVENT:
    case CU_GRAPH_NODE_TYPE_EVENT_RECORD: {
        CUevent e = NULL;
        rc = type == CU_GRAPH_NODE_TYPE_WAIT_EVENT ? drv.cuGraphEventWaitNodeGetEvent(node, &e)
                                                   : drv.cuGraphEventRecordNodeGetEvent(node, &e);
        if (rc != CUDA_SUCCESS) return rc;
        wire_put_u32(out, type);
        wire_put_u64(out, h64(e));
        return CUDA_SUCCESS;
    }
    default: /* a kind vgpu does not describe: its type only */
        wire_put_u32(out, type);
        return CUDA_SUCCESS;
    }
}

/* ---- graphs ---- */

CUresult op_GRAPH_CREATE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint32_t flags = wire_get_u32(in);
    IN_END(L, in);
    CUgraph g = NULL;
    CUresult rc = drv.cuGraphCreate(&g, flags);
    if (rc != CUDA_SUCCESS) return rc;
    if (handles_add(L->s, H_GRAPH, h64(g), 0, 0)) {
        drv.cuGraphDestroy(g);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    wire_put_u64(out, h64(g));
    return CUDA_SUCCESS;
}

CUresult op_GRAPH_DESTROY(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t gv = wire_get_u64(in);
    IN_END(L, in);
    CUgraph g;
    /* A child graph belongs to its node: only top-level graphs (owner 0) are destroyed. */
    if (!wire_graph(L->s, gv, &g) || handles_owner(L->s, H_GRAPH, gv) != 0) return CUDA_ERROR_INVALID_VALUE;
    forget_graph(L->s, gv);
    return drv.cuGraphDestroy(g);
}

CUresult op_GRAPH_CLONE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t gv = wire_get_u64(in);
    IN_END(L, in);
    CUgraph g, c = NULL;
    if (!wire_graph(L->s, gv, &g)) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = drv.cuGraphClone(&c, g);
    if (rc != CUDA_SUCCESS) return rc;
    if (handles_add(L->s, H_GRAPH, h64(c), 0, 0)) {
        drv.cuGraphDestroy(c);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    wire_put_u64(out, h64(c));
    return CUDA_SUCCESS;
}

CUresult op_GRAPH_FIND_IN_CLONE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t nv = wire_get_u64(in), cv = wire_get_u64(in);
    IN_END(L, in);
    CUgraphNode n, found = NULL;
    CUgraph c;
    if (!wire_node(L->s, nv, &n) || !wire_graph(L->s, cv, &c)) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = drv.cuGraphNodeFindInClone(&found, n, c);
    if (rc != CUDA_SUCCESS) return rc;
    if (register_nodes(L->s, &found, 1, cv)) return CUDA_ERROR_OUT_OF_MEMORY;
    wire_put_u64(out, h64(found));
    return CUDA_SUCCESS;
}

CUresult op_GRAPH_DESTROY_NODE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t nv = wire_get_u64(in);
    IN_END(L, in);
    CUgraphNode n;
    if (!wire_node(L->s, nv, &n)) return CUDA_ERROR_INVALID_VALUE;
    CUgraphNodeType type;
    if (drv.cuGraphNodeGetType(n, &type) == CUDA_SUCCESS && type == CU_GRAPH_NODE_TYPE_GRAPH) {
        CUgraph child;
        if (drv.cuGraphChildGraphNodeGetGraph(n, &child) == CUDA_SUCCESS) forget_graph(L->s, h64(child));
    }
    CUresult rc = drv.cuGraphDestroyNode(n);
    if (rc == CUDA_SUCCESS) handles_remove(L->s, H_GRAPH_NODE, nv);
    return rc;
}

/* The driver's two-call array protocol, done here in one request. */
static void put_edge(struct wire_buf *out, const CUgraphEdgeData *e)
{
    unsigned char raw[8] = {0};
    if (e) memcpy(raw, e, sizeof raw < sizeof *e ? sizeof raw : sizeof *e);
    wire_put_raw(out, raw, sizeof raw);
}
_Static_assert(sizeof(CUgraphEdgeData) == 8, "edge data travels as 8 bytes");

CUresult op_GRAPH_NODES(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t v = wire_get_u64(in);
    uint32_t what = wire_get_u32(in);
    IN_END(L, in);
    if (what > 3) REJECT(L, "bad node list kind");
    CUgraph g = NULL;
    CUgraphNode node = NULL;
    uint64_t owner = v;
    if (what <= 1 ? !wire_graph(L->s, v, &g) : !wire_node(L->s, v, &node)) return CUDA_ERROR_INVALID_VALUE;
    if (what > 1) owner = handles_owner(L->s, H_GRAPH_NODE, v);
    size_t n = 0;
    CUresult rc;
    switch (what) {
    case 0: rc = drv.cuGraphGetNodes(g, NULL, &n); break;
    case 1: rc = drv.cuGraphGetRootNodes(g, NULL, &n); break;
    case 2: rc = drv.cuGraphNodeGetDependencies_v2(node, NULL, NULL, &n); break;
    default: rc = drv.cuGraphNodeGetDependentNodes_v2(node, NULL, NULL, &n); break;
    }
    if (rc != CUDA_SUCCESS) return rc;
    if (n > VGPU_MAX_FRAME_PAYLOAD / 16) return CUDA_ERROR_NOT_SUPPORTED;
    CUgraphNode *list = calloc(n ? n : 1, sizeof *list);
    CUgraphEdgeData *edges = calloc(n ? n : 1, sizeof *edges);
    if (!list || !edges) {
        free(list);
        free(edges);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    switch (what) {
    case 0: rc = drv.cuGraphGetNodes(g, list, &n); break;
    case 1: rc = drv.cuGraphGetRootNodes(g, list, &n); break;
    case 2: rc = drv.cuGraphNodeGetDependencies_v2(node, list, edges, &n); break;
    default: rc = drv.cuGraphNodeGetDependentNodes_v2(node, list, edges, &n); break;
    }
    if (rc == CUDA_SUCCESS) rc = register_nodes(L->s, list, n, owner);
    if (rc == CUDA_SUCCESS) {
        wire_put_u32(out, (uint32_t)n);
        for (size_t i = 0; i < n; i++) {
            wire_put_u64(out, h64(list[i]));
            put_edge(out, &edges[i]);
        }
    }
    free(list);
    free(edges);
    return rc;
}

CUresult op_GRAPH_EDGES(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t gv = wire_get_u64(in);
    IN_END(L, in);
    CUgraph g;
    if (!wire_graph(L->s, gv, &g)) return CUDA_ERROR_INVALID_VALUE;
    size_t n = 0;
    CUresult rc = drv.cuGraphGetEdges_v2(g, NULL, NULL, NULL, &n);
    if (rc != CUDA_SUCCESS) return rc;
    if (n > VGPU_MAX_FRAME_PAYLOAD / 24) return CUDA_ERROR_NOT_SUPPORTED;
    CUgraphNode *from = calloc(n ? n : 1, sizeof *from), *to = calloc(n ? n : 1, sizeof *to);
    CUgraphEdgeData *edges = calloc(n ? n : 1, sizeof *edges);
    rc = from && to && edges ? drv.cuGraphGetEdges_v2(g, from, to, edges, &n) : CUDA_ERROR_OUT_OF_MEMORY;
    if (rc == CUDA_SUCCESS) rc = register_nodes(L->s, from, n, gv);
    if (rc == CUDA_SUCCESS) rc = register_nodes(L->s, to, n, gv);
    if (rc == CUDA_SUCCESS) {
        wire_put_u32(out, (uint32_t)n);
        for (size_t i = 0; i < n; i++) {
            wire_put_u64(out, h64(from[i]));
            wire_put_u64(out, h64(to[i]));
            put_edge(out, &edges[i]);
        }
    }
    free(from);
    free(to);
    free(edges);
    return rc;
}

CUresult op_GRAPH_DEPENDENCIES(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t gv = wire_get_u64(in);
    uint32_t add = wire_get_u32(in), n = wire_get_u32(in);
    if (n > MAX_GRAPH_LIST || add > 1) REJECT(L, "bad dependency list");
    static _Thread_local CUgraphNode from[MAX_GRAPH_LIST], to[MAX_GRAPH_LIST];
    static _Thread_local CUgraphEdgeData edges[MAX_GRAPH_LIST];
    bool ok = true;
    for (uint32_t i = 0; i < n; i++) {
        ok &= wire_node(L->s, wire_get_u64(in), &from[i]);
        ok &= wire_node(L->s, wire_get_u64(in), &to[i]);
        const void *raw = wire_get_raw(in, 8);
        if (raw) memcpy(&edges[i], raw, 8);
    }
    IN_END(L, in);
    CUgraph g;
    if (!wire_graph(L->s, gv, &g) || !ok) return CUDA_ERROR_INVALID_VALUE;
    return add ? drv.cuGraphAddDependencies_v2(g, from, to, edges, n)
               : drv.cuGraphRemoveDependencies_v2(g, from, to, edges, n);
}

/* ---- executable graphs ---- */

CUresult op_GRAPH_INSTANTIATE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t gv = wire_get_u64(in), flags = wire_get_u64(in), sv = wire_get_u64(in);
    IN_END(L, in);
    CUgraph g;
    CUstream upload;
    if (!wire_graph(L->s, gv, &g)) return CUDA_ERROR_INVALID_VALUE;
    if (!wire_stream(L->s, sv, &upload)) return CUDA_ERROR_INVALID_HANDLE;
    CUDA_GRAPH_INSTANTIATE_PARAMS p = {.flags = flags, .hUploadStream = upload};
    CUgraphExec e = NULL;
    CUresult rc = drv.cuGraphInstantiateWithParams(&e, g, &p);
    if (rc == CUDA_SUCCESS && handles_add(L->s, H_GRAPH_EXEC, h64(e), 0, 0)) {
        drv.cuGraphExecDestroy(e);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (p.hErrNode_out) register_nodes(L->s, &p.hErrNode_out, 1, gv);
    wire_put_i32(out, rc);
    wire_put_u32(out, p.result_out);
    wire_put_u64(out, rc == CUDA_SUCCESS ? h64(e) : 0);
    wire_put_u64(out, h64(p.hErrNode_out));
    return CUDA_SUCCESS;
}

CUresult op_GRAPH_EXEC_DESTROY(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t ev = wire_get_u64(in);
    IN_END(L, in);
    if (!ev) return CUDA_ERROR_INVALID_VALUE;
    if (!handles_remove(L->s, H_GRAPH_EXEC, ev)) return session_foreign(L->s, "executable graph", ev, CUDA_ERROR_INVALID_VALUE);
    return drv.cuGraphExecDestroy((CUgraphExec)(uintptr_t)ev);
}

CUresult op_GRAPH_EXEC_FLAGS(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t ev = wire_get_u64(in);
    IN_END(L, in);
    CUgraphExec e;
    if (!wire_exec(L->s, ev, &e)) return CUDA_ERROR_INVALID_VALUE;
    cuuint64_t flags = 0;
    CUresult rc = drv.cuGraphExecGetFlags(e, &flags);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u64(out, flags);
    return CUDA_SUCCESS;
}

CUresult op_GRAPH_EXEC_UPDATE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t ev = wire_get_u64(in), gv = wire_get_u64(in);
    IN_END(L, in);
    CUgraphExec e;
    CUgraph g;
    if (!wire_exec(L->s, ev, &e) || !wire_graph(L->s, gv, &g)) return CUDA_ERROR_INVALID_VALUE;
    CUgraphExecUpdateResultInfo info;
    memset(&info, 0, sizeof info);
    CUresult rc = drv.cuGraphExecUpdate_v2(e, g, &info);
    register_nodes(L->s, &info.errorNode, 1, gv);
    register_nodes(L->s, &info.errorFromNode, 1, gv);
    wire_put_i32(out, rc);
    wire_put_u32(out, info.result);
    wire_put_u64(out, h64(info.errorNode));
    wire_put_u64(out, h64(info.errorFromNode));
    return CUDA_SUCCESS;
}

CUresult op_GRAPH_NODE_ENABLED(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t ev = wire_get_u64(in), nv = wire_get_u64(in);
    uint32_t set = wire_get_u32(in), enabled = wire_get_u32(in);
    IN_END(L, in);
    CUgraphExec e;
    CUgraphNode n;
    if (!wire_exec(L->s, ev, &e) || !wire_node(L->s, nv, &n)) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = set ? drv.cuGraphNodeSetEnabled(e, n, enabled) : drv.cuGraphNodeGetEnabled(e, n, &enabled);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u32(out, enabled);
    return CUDA_SUCCESS;
}

CUresult op_GRAPH_LAUNCH(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t ev = wire_get_u64(in), sv = wire_get_u64(in);
    uint32_t upload = wire_get_u32(in);
    IN_END(L, in);
    if (upload > 1) REJECT(L, "bad graph launch kind");
    CUgraphExec e;
    CUstream s;
    if (!wire_exec(L->s, ev, &e)) return CUDA_ERROR_INVALID_VALUE;
    if (!wire_stream(L->s, sv, &s)) return CUDA_ERROR_INVALID_HANDLE;
    return upload ? drv.cuGraphUpload(e, s) : server_submit_graph(e, s);
}

/* ---- stream capture ---- */

CUresult op_STREAM_BEGIN_CAPTURE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t sv = wire_get_u64(in);
    uint32_t mode = wire_get_u32(in);
    IN_END(L, in);
    CUstream s;
    if (!wire_stream(L->s, sv, &s)) return CUDA_ERROR_INVALID_HANDLE;
    return drv.cuStreamBeginCapture_v2(s, (CUstreamCaptureMode)mode);
}

/* A dependency list with edge data: count x {u64 node, 8 bytes edge}, each node one of
 * the session's. *edges_out is NULL when every edge is the default one (all zero), as
 * callers without edge data pass. false when a node is unknown. */
static bool get_deps(struct session *s, struct wire_rd *in, uint32_t n, CUgraphNode *nodes, CUgraphEdgeData *edges,
                     const CUgraphEdgeData **edges_out)
{
    static const unsigned char zero[sizeof(CUgraphEdgeData)];
    bool ok = true, any_edge = false;
    for (uint32_t i = 0; i < n; i++) {
        ok &= wire_node(s, wire_get_u64(in), &nodes[i]);
        const void *raw = wire_get_raw(in, sizeof edges[i]);
        memset(&edges[i], 0, sizeof edges[i]);
        if (raw) memcpy(&edges[i], raw, sizeof edges[i]);
        any_edge |= memcmp(&edges[i], zero, sizeof zero) != 0;
    }
    *edges_out = any_edge ? edges : NULL;
    return ok;
}

CUresult op_STREAM_CAPTURE_TO_GRAPH(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    static _Thread_local CUgraphNode deps[MAX_GRAPH_LIST];
    static _Thread_local CUgraphEdgeData edges[MAX_GRAPH_LIST];
    uint64_t sv = wire_get_u64(in), gv = wire_get_u64(in);
    uint32_t mode = wire_get_u32(in), n = wire_get_u32(in);
    if (n > MAX_GRAPH_LIST) REJECT(L, "too many dependencies");
    const CUgraphEdgeData *edata = NULL;
    bool deps_ok = get_deps(L->s, in, n, deps, edges, &edata);
    IN_END(L, in);
    CUstream s;
    CUgraph g;
    if (!wire_stream(L->s, sv, &s)) return CUDA_ERROR_INVALID_HANDLE;
    if (!wire_graph(L->s, gv, &g) || !deps_ok) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = drv.cuStreamBeginCaptureToGraph(s, g, deps, edata, n, (CUstreamCaptureMode)mode);
    /* The graph stays the client's whatever becomes of the capture. */
    if (rc == CUDA_SUCCESS && handles_add(L->s, H_CAPTURE_GRAPH, gv, gv, 0)) {
        CUgraph ended = NULL;
        drv.cuStreamEndCapture(s, &ended);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    return rc;
}

CUresult op_STREAM_UPDATE_CAPTURE_DEPS(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    static _Thread_local CUgraphNode deps[MAX_GRAPH_LIST];
    static _Thread_local CUgraphEdgeData edges[MAX_GRAPH_LIST];
    uint64_t sv = wire_get_u64(in);
    uint32_t flags = wire_get_u32(in), n = wire_get_u32(in);
    if (n > MAX_GRAPH_LIST) REJECT(L, "too many dependencies");
    const CUgraphEdgeData *edata = NULL;
    bool deps_ok = get_deps(L->s, in, n, deps, edges, &edata);
    IN_END(L, in);
    CUstream s;
    if (!wire_stream(L->s, sv, &s)) return CUDA_ERROR_INVALID_HANDLE;
    if (!deps_ok) return CUDA_ERROR_INVALID_VALUE;
    return drv.cuStreamUpdateCaptureDependencies_v2(s, deps, edata, n, flags);
}

/* An async copy between device memory and mirrored host memory (the daemon's copy):
 * what the guest sends for a copy with host memory on a capturing stream, so the graph
 * records memory it can reach whenever it runs. */
CUresult op_MEMCPY_MIRRORED(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t sv = wire_get_u64(in);
    CUDA_MEMCPY3D c;
    CUresult rc = copy_decode(L, in, &c);
    if (rc == VGPU_RC_MALFORMED) return rc;
    IN_END(L, in);
    CUstream s;
    if (!wire_stream(L->s, sv, &s)) return CUDA_ERROR_INVALID_HANDLE;
    if (rc != CUDA_SUCCESS) return rc;
    return drv.cuMemcpy3DAsync_v2(&c, s);
}

CUresult op_STREAM_END_CAPTURE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t sv = wire_get_u64(in);
    IN_END(L, in);
    CUstream s;
    if (!wire_stream(L->s, sv, &s)) return CUDA_ERROR_INVALID_HANDLE;
    /* The graph being captured, which the client may have been told of: forgotten if
     * the capture fails (the driver destroys it), unless it is the client's own graph
     * (cuStreamBeginCaptureToGraph), which stays. */
    CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
    CUgraph captured = NULL;
    drv.cuStreamGetCaptureInfo_v3(s, &st, NULL, &captured, NULL, NULL, NULL);
    CUgraph g = NULL;
    CUresult rc = drv.cuStreamEndCapture(s, &g);
    if (rc != CUDA_SUCCESS) {
        if (captured && !handles_has(L->s, H_CAPTURE_GRAPH, h64(captured))) forget_graph(L->s, h64(captured));
        return rc;
    }
    if (g && handles_add(L->s, H_GRAPH, h64(g), 0, 0)) {
        drv.cuGraphDestroy(g);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    wire_put_u64(out, h64(g));
    return CUDA_SUCCESS;
}

CUresult op_STREAM_CAPTURE_INFO(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t sv = wire_get_u64(in);
    IN_END(L, in);
    CUstream s;
    if (!wire_stream(L->s, sv, &s)) return CUDA_ERROR_INVALID_HANDLE;
    CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
    cuuint64_t id = 0;
    CUgraph g = NULL;
    const CUgraphNode *deps = NULL;
    const CUgraphEdgeData *edges = NULL;
    size_t n = 0;
    CUresult rc = drv.cuStreamGetCaptureInfo_v3(s, &st, &id, &g, &deps, &edges, &n);
    if (rc != CUDA_SUCCESS) return rc;
    if (st == CU_STREAM_CAPTURE_STATUS_NONE) {
        wire_put_u32(out, st);
        return CUDA_SUCCESS;
    }
    if (n > MAX_GRAPH_LIST * 16) return CUDA_ERROR_NOT_SUPPORTED;
    /* The graph being captured is the client's: it may add nodes to it. */
    if (g && handles_add(L->s, H_GRAPH, h64(g), 0, 0)) return CUDA_ERROR_OUT_OF_MEMORY;
    if (register_nodes(L->s, deps, n, h64(g))) return CUDA_ERROR_OUT_OF_MEMORY;
    wire_put_u32(out, st);
    wire_put_u64(out, id);
    wire_put_u64(out, h64(g));
    wire_put_u32(out, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        wire_put_u64(out, h64(deps[i]));
        put_edge(out, edges ? &edges[i] : NULL);
    }
    return CUDA_SUCCESS;
}

CUresult op_THREAD_CAPTURE_MODE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    CUstreamCaptureMode mode = (CUstreamCaptureMode)wire_get_u32(in);
    IN_END(L, in);
    CUresult rc = drv.cuThreadExchangeStreamCaptureMode(&mode);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u32(out, mode);
    return CUDA_SUCCESS;
}

/*
 * emu backend, host functions, CUDA graphs and stream capture.
 *
 * The emu executes in call order, so a host function on a stream runs inside
 * cuLaunchHostFunc, and launching an executable graph runs its nodes one after the
 * other in a topological order (a valid schedule of the graph's dependencies).
 *
 * A graph is a list of nodes, each with its incoming edges. Node parameters are deep
 * copies (kernel arguments are packed at the function's parameter layout), so a graph
 * never refers to caller memory. An executable graph is a copy of its graph's nodes in
 * topological order; each copied node remembers the node it came from (compared by
 * address, never dereferenced) so cuGraphExec*SetParams can name it.
 *
 * Stream capture: while a stream captures, the emu entry points that enqueue work call
 * emu_capture_* first, which append a node depending on the stream's current capture
 * dependencies instead of executing. cuEventRecord in a capture remembers those
 * dependencies in the event; cuStreamWaitEvent on such an event joins the waiting
 * stream to the capture (cross-stream capture). A synchronizing call on a capturing
 * stream fails with CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidates the capture,
 * as the driver does. The legacy NULL stream cannot capture.
 * A capture may add to the caller's graph (cuStreamBeginCaptureToGraph): the capture
 * borrows it (never frees it; if the graph is destroyed meanwhile the capture is
 * invalidated). A stream's capture dependencies carry edge data, set by
 * cuStreamUpdateCaptureDependencies_v2 and the capture-to-graph dependencies and answered
 * by cuStreamGetCaptureInfo; default and programmatic edges are kept as given and every
 * edge is run as a full dependency (a valid schedule for either).
 * Memcpy nodes may copy to and from host memory (the daemon names mirrored memory there);
 * a one-row copy may leave its pitches 0, as cudaGraphAddMemcpyNode1D does.
 */
#include "server/emu/emu_internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/fatbin.h"
#include "common/log.h"
#include "common/wire.h"

struct emu_graph;

struct emu_gnode {
    struct emu_graph *graph;
    CUgraphNodeType type;
    bool enabled;                /* executable-graph copies only */
    const struct emu_gnode *orig; /* copies: the node copied (never dereferenced) */
    struct emu_gnode **deps;     /* incoming edges, same graph */
    CUgraphEdgeData *edata;      /* parallel to deps */
    size_t ndeps, capdeps;
    union {
        struct {
            CUfunction func;
            unsigned grid[3], block[3], shared;
            unsigned char *args; /* packed at the layout's offsets */
            size_t args_len;
            uint32_t nparams;
            uint32_t *offsets;
        } k;
        CUDA_MEMCPY3D copy;
        CUDA_MEMSET_NODE_PARAMS set;
        CUDA_HOST_NODE_PARAMS host;
        CUevent event;
        struct emu_graph *child; /* owned */
    } p;
};

struct emu_graph {
    struct emu_gnode **nodes;
    size_t n, cap;
    bool exec;
    uint64_t flags; /* executable graphs: instantiate flags */
    unsigned busy;  /* executable graphs: launches running */
    bool dead;      /* executable graphs: destroyed while busy */
};

/* A capture sequence and a stream's (or event's) place in it. */
struct emu_capture {
    uint64_t id;
    struct emu_graph *graph; /* NULL once a borrowed graph was destroyed (then invalidated) */
    bool borrowed;           /* cuStreamBeginCaptureToGraph: the graph is the caller's, never freed here */
    CUstreamCaptureMode mode;
    bool invalidated;
    unsigned refs;            /* streams and events pointing at it */
    struct emu_capture *next; /* the list of live captures */
};
struct emu_capstate {
    struct emu_capture *cap;
    struct emu_gnode **deps;
    CUgraphEdgeData *edata; /* parallel to deps */
    size_t ndeps;
};
struct cap_entry {
    const void *key; /* stream or event */
    struct emu_capstate st;
    struct cap_entry *next;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct emu_set graphs, nodes, execs;
static struct cap_entry *stream_caps, *event_caps;
static struct emu_capture *live_captures;
static _Thread_local struct emu_capstate tls_ptds_cap; /* CU_STREAM_PER_THREAD of this thread */
static _Thread_local CUstreamCaptureMode tls_capture_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
static uint64_t next_capture_id = 1;

/* ---- host functions ---- */

CUresult CUDAAPI emu_cuLaunchHostFunc(CUstream hStream, CUhostFn fn, void *userData)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc != CUDA_SUCCESS) return rc;
    if (!fn) return CUDA_ERROR_INVALID_VALUE;
    CUDA_HOST_NODE_PARAMS p = {.fn = fn, .userData = userData};
    if (emu_capture_host(hStream, &p, &rc)) return rc;
    fn(userData);
    return CUDA_SUCCESS;
}

/* ---- nodes ---- */

static void node_free_params(struct emu_gnode *n);
static void graph_free(struct emu_graph *g);

static struct emu_graph *graph_new(void)
{
    struct emu_graph *g = calloc(1, sizeof *g);
    return g;
}

static int graph_append(struct emu_graph *g, struct emu_gnode *n)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        struct emu_gnode **grown = realloc(g->nodes, cap * sizeof *grown);
        if (!grown) return -1;
        g->nodes = grown;
        g->cap = cap;
    }
    g->nodes[g->n++] = n;
    n->graph = g;
    return 0;
}

static int node_add_dep(struct emu_gnode *n, struct emu_gnode *dep, const CUgraphEdgeData *ed)
{
    for (size_t i = 0; i < n->ndeps; i++)
        if (n->deps[i] == dep) return 0;
    if (n->ndeps == n->capdeps) {
        size_t cap = n->capdeps ? n->capdeps * 2 : 4;
        struct emu_gnode **d = realloc(n->deps, cap * sizeof *d);
        if (!d) return -1;
        n->deps = d;
        CUgraphEdgeData *e = realloc(n->edata, cap * sizeof *e);
        if (!e) return -1;
        n->edata = e;
        n->capdeps = cap;
    }
    n->deps[n->ndeps] = dep;
    if (ed)
        n->edata[n->ndeps] = *ed;
    else
        memset(&n->edata[n->ndeps], 0, sizeof n->edata[0]);
    n->ndeps++;
    return 0;
}

static struct emu_graph *graph_clone_locked(const struct emu_graph *src, bool exec);

/* Deep-copy the parameters of src into dst (same type). */
static CUresult params_copy(struct emu_gnode *dst, const struct emu_gnode *src)
{
    dst->type = src->type;
    dst->p = src->p;
    if (src->type == CU_GRAPH_NODE_TYPE_KERNEL) {
        dst->p.k.args = NULL;
        dst->p.k.offsets = NULL;
        if (src->p.k.args_len) {
            dst->p.k.args = malloc(src->p.k.args_len);
            if (!dst->p.k.args) return CUDA_ERROR_OUT_OF_MEMORY;
            memcpy(dst->p.k.args, src->p.k.args, src->p.k.args_len);
        }
        if (src->p.k.nparams) {
            dst->p.k.offsets = malloc(src->p.k.nparams * sizeof *dst->p.k.offsets);
            if (!dst->p.k.offsets) return CUDA_ERROR_OUT_OF_MEMORY;
            memcpy(dst->p.k.offsets, src->p.k.offsets, src->p.k.nparams * sizeof *dst->p.k.offsets);
        }
    } else if (src->type == CU_GRAPH_NODE_TYPE_GRAPH) {
        dst->p.child = graph_clone_locked(src->p.child, false);
        if (!dst->p.child) return CUDA_ERROR_OUT_OF_MEMORY;
    }
    return CUDA_SUCCESS;
}

static void node_free_params(struct emu_gnode *n)
{
    if (n->type == CU_GRAPH_NODE_TYPE_KERNEL) {
        free(n->p.k.args);
        free(n->p.k.offsets);
    } else if (n->type == CU_GRAPH_NODE_TYPE_GRAPH) {
        graph_free(n->p.child);
    }
    memset(&n->p, 0, sizeof n->p);
}

static void node_free(struct emu_gnode *n)
{
    node_free_params(n);
    free(n->deps);
    free(n->edata);
    free(n);
}

static void captures_detach_locked(const struct emu_graph *g);

static void graph_free(struct emu_graph *g)
{
    if (!g) return;
    if (!g->exec) captures_detach_locked(g);
    for (size_t i = 0; i < g->n; i++) {
        if (!g->exec) emu_set_del(&nodes, g->nodes[i]);
        node_free(g->nodes[i]);
    }
    free(g->nodes);
    free(g);
}

static size_t index_of(const struct emu_graph *g, const struct emu_gnode *n)
{
    for (size_t i = 0; i < g->n; i++)
        if (g->nodes[i] == n) return i;
    return (size_t)-1;
}

/* A copy of src's nodes and edges; an executable copy is in topological order and
 * its nodes are enabled. NULL when out of memory (or, for exec, when src has a cycle). */
static struct emu_graph *graph_clone_locked(const struct emu_graph *src, bool exec)
{
    struct emu_graph *g = graph_new();
    if (!g) return NULL;
    g->exec = exec;
    size_t n = src->n;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    struct emu_gnode **copy = calloc(n ? n : 1, sizeof *copy);
    bool ok = order && copy;
    /* Kahn's algorithm over the insertion order (stable for an already ordered graph). */
    if (ok) {
        size_t *indeg = calloc(n ? n : 1, sizeof *indeg);
        bool *done = calloc(n ? n : 1, sizeof *done);
        ok = indeg && done;
        for (size_t i = 0; ok && i < n; i++) indeg[i] = src->nodes[i]->ndeps;
        size_t k = 0;
        while (ok && k < n) {
            size_t pick = (size_t)-1;
            for (size_t i = 0; i < n; i++)
                if (!done[i] && indeg[i] == 0) {
                    pick = i;
                    break;
                }
            if (pick == (size_t)-1) {
                ok = false; /* a cycle */
                break;
            }
            done[pick] = true;
            order[k++] = pick;
            for (size_t j = 0; j < n; j++)
                for (size_t d = 0; d < src->nodes[j]->ndeps; d++)
                    if (src->nodes[j]->deps[d] == src->nodes[pick]) indeg[j]--;
        }
        free(indeg);
        free(done);
    }
    for (size_t i = 0; ok && i < n; i++) {
        const struct emu_gnode *s = src->nodes[exec ? order[i] : i];
        struct emu_gnode *c = calloc(1, sizeof *c);
        if (!c || params_copy(c, s) != CUDA_SUCCESS || graph_append(g, c)) {
            if (c) node_free(c);
            ok = false;
            break;
        }
        c->enabled = true;
        c->orig = s;
        copy[exec ? order[i] : i] = c;
        if (!exec && emu_set_add(&nodes, c)) ok = false;
    }
    for (size_t i = 0; ok && i < n; i++)
        for (size_t d = 0; d < src->nodes[i]->ndeps; d++) {
            size_t j = index_of(src, src->nodes[i]->deps[d]);
            if (j == (size_t)-1 || node_add_dep(copy[i], copy[j], &src->nodes[i]->edata[d])) ok = false;
        }
    free(order);
    free(copy);
    if (!ok) {
        graph_free(g);
        return NULL;
    }
    return g;
}

static bool graph_live(CUgraph g) { return g && emu_set_has(&graphs, g); }
static bool node_live(CUgraphNode n) { return n && emu_set_has(&nodes, n); }
static bool exec_live(CUgraphExec e) { return e && emu_set_has(&execs, e); }

/* Pack kernelParams at f's parameter layout into n's kernel parameters. */
static CUresult kernel_params_set(struct emu_gnode *n, CUfunction f, const unsigned grid[3], const unsigned block[3],
                                  unsigned shared, void **kernelParams, void **extra)
{
    if (extra) return CUDA_ERROR_NOT_SUPPORTED; /* graph kernel nodes with `extra` */
    struct emu_launch_target t;
    CUresult rc = emu_func_acquire(f, &t);
    if (rc != CUDA_SUCCESS) return rc;
    const struct vgpu_param_layout *layout = t.params;
    size_t len = 0;
    for (uint32_t i = 0; i < t.num_params; i++)
        if ((size_t)layout[i].offset + layout[i].size > len) len = (size_t)layout[i].offset + layout[i].size;
    unsigned char *args = NULL;
    uint32_t *offsets = NULL;
    if (t.num_params && !kernelParams) rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS && t.num_params) {
        args = calloc(1, len ? len : 1);
        offsets = malloc(t.num_params * sizeof *offsets);
        if (!args || !offsets) rc = CUDA_ERROR_OUT_OF_MEMORY;
        for (uint32_t i = 0; rc == CUDA_SUCCESS && i < t.num_params; i++) {
            if (!kernelParams[i]) {
                rc = CUDA_ERROR_INVALID_VALUE;
                break;
            }
            memcpy(args + layout[i].offset, kernelParams[i], layout[i].size);
            offsets[i] = layout[i].offset;
        }
    }
    uint32_t nparams = t.num_params;
    emu_func_release(t.func);
    if (rc != CUDA_SUCCESS) {
        free(args);
        free(offsets);
        return rc;
    }
    node_free_params(n);
    n->type = CU_GRAPH_NODE_TYPE_KERNEL;
    n->p.k.func = f;
    memcpy(n->p.k.grid, grid, sizeof n->p.k.grid);
    memcpy(n->p.k.block, block, sizeof n->p.k.block);
    n->p.k.shared = shared;
    n->p.k.args = args;
    n->p.k.args_len = len;
    n->p.k.nparams = nparams;
    n->p.k.offsets = offsets;
    return CUDA_SUCCESS;
}

/* Add a node of `type` with parameters `src` (a prototype node) to g after deps, with
 * edge data edata (parallel to deps; NULL: default edges). */
static CUresult node_add_locked(CUgraphNode *out, CUgraph hGraph, const CUgraphNode *deps, size_t ndeps,
                                const CUgraphEdgeData *edata, struct emu_gnode *proto)
{
    struct emu_graph *g = (struct emu_graph *)hGraph;
    if (!out || !graph_live(hGraph) || (ndeps && !deps)) return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < ndeps; i++)
        if (!node_live(deps[i]) || ((struct emu_gnode *)deps[i])->graph != g) return CUDA_ERROR_INVALID_VALUE;
    struct emu_gnode *n = calloc(1, sizeof *n);
    if (!n) return CUDA_ERROR_OUT_OF_MEMORY;
    n->type = proto->type;
    n->p = proto->p; /* ownership of deep parameters moves from the prototype */
    memset(&proto->p, 0, sizeof proto->p);
    for (size_t i = 0; i < ndeps; i++)
        if (node_add_dep(n, (struct emu_gnode *)deps[i], edata ? &edata[i] : NULL)) goto oom;
    if (emu_set_add(&nodes, n)) goto oom;
    if (graph_append(g, n)) {
        emu_set_del(&nodes, n);
        goto oom;
    }
    *out = (CUgraphNode)n;
    return CUDA_SUCCESS;
oom:
    node_free(n);
    return CUDA_ERROR_OUT_OF_MEMORY;
}

static CUresult memcpy_check(const CUDA_MEMCPY3D *c)
{
    if (!c) return CUDA_ERROR_INVALID_VALUE;
    /* Host memory in a graph is the caller's to keep valid; the daemon only builds
     * graphs over device memory, but the backend itself accepts what the driver does. */
    return CUDA_SUCCESS;
}

static CUresult memset_check(const CUDA_MEMSET_NODE_PARAMS *p)
{
    if (!p || (p->elementSize != 1 && p->elementSize != 2 && p->elementSize != 4)) return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}

static CUresult event_check(CUevent e) { return emu_cuEventQuery(e) == CUDA_ERROR_INVALID_HANDLE ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS; }

/* ---- graphs ---- */

CUresult CUDAAPI emu_cuGraphCreate(CUgraph *phGraph, unsigned int flags)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!phGraph || flags) return CUDA_ERROR_INVALID_VALUE;
    struct emu_graph *g = graph_new();
    if (!g) return CUDA_ERROR_OUT_OF_MEMORY;
    pthread_mutex_lock(&g_lock);
    int err = emu_set_add(&graphs, g);
    pthread_mutex_unlock(&g_lock);
    if (err) {
        free(g);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *phGraph = (CUgraph)g;
    return CUDA_SUCCESS;
}

/* Child graphs of nodes are owned by their node: not in the `graphs` registry. */
static void graph_unregister_children(struct emu_graph *g)
{
    for (size_t i = 0; i < g->n; i++)
        if (g->nodes[i]->type == CU_GRAPH_NODE_TYPE_GRAPH) {
            emu_set_del(&graphs, g->nodes[i]->p.child);
            graph_unregister_children(g->nodes[i]->p.child);
        }
}

CUresult CUDAAPI emu_cuGraphDestroy(CUgraph hGraph)
{
    pthread_mutex_lock(&g_lock);
    bool ok = graph_live(hGraph);
    if (ok) {
        emu_set_del(&graphs, hGraph);
        graph_unregister_children((struct emu_graph *)hGraph);
        graph_free((struct emu_graph *)hGraph);
    }
    pthread_mutex_unlock(&g_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuGraphClone(CUgraph *phGraphClone, CUgraph originalGraph)
{
    if (!phGraphClone) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    CUresult rc = CUDA_ERROR_INVALID_VALUE;
    if (graph_live(originalGraph)) {
        struct emu_graph *c = graph_clone_locked((struct emu_graph *)originalGraph, false);
        rc = CUDA_ERROR_OUT_OF_MEMORY;
        if (c && emu_set_add(&graphs, c) == 0) {
            *phGraphClone = (CUgraph)c;
            rc = CUDA_SUCCESS;
        } else if (c) {
            graph_free(c);
        }
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphNodeFindInClone(CUgraphNode *phNode, CUgraphNode hOriginalNode, CUgraph hClonedGraph)
{
    if (!phNode) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    CUresult rc = CUDA_ERROR_INVALID_VALUE;
    if (graph_live(hClonedGraph) && node_live(hOriginalNode)) {
        struct emu_graph *g = (struct emu_graph *)hClonedGraph;
        for (size_t i = 0; i < g->n; i++)
            if (g->nodes[i]->orig == (const struct emu_gnode *)hOriginalNode) {
                *phNode = (CUgraphNode)g->nodes[i];
                rc = CUDA_SUCCESS;
                break;
            }
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphAddKernelNode_v2(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                             size_t numDependencies, const CUDA_KERNEL_NODE_PARAMS *nodeParams)
{
    if (!nodeParams) return CUDA_ERROR_INVALID_VALUE;
    CUfunction f = nodeParams->func ? nodeParams->func : (CUfunction)nodeParams->kern;
    const unsigned grid[3] = {nodeParams->gridDimX, nodeParams->gridDimY, nodeParams->gridDimZ};
    const unsigned block[3] = {nodeParams->blockDimX, nodeParams->blockDimY, nodeParams->blockDimZ};
    struct emu_gnode proto = {0};
    CUresult rc =
        kernel_params_set(&proto, f, grid, block, nodeParams->sharedMemBytes, nodeParams->kernelParams, nodeParams->extra);
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&g_lock);
    rc = node_add_locked(phGraphNode, hGraph, dependencies, numDependencies, NULL, &proto);
    pthread_mutex_unlock(&g_lock);
    node_free_params(&proto);
    return rc;
}

CUresult CUDAAPI emu_cuGraphAddMemcpyNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                          size_t numDependencies, const CUDA_MEMCPY3D *copyParams, CUcontext ctx)
{
    (void)ctx;
    CUresult rc = memcpy_check(copyParams);
    if (rc != CUDA_SUCCESS) return rc;
    struct emu_gnode proto = {.type = CU_GRAPH_NODE_TYPE_MEMCPY, .p.copy = *copyParams};
    pthread_mutex_lock(&g_lock);
    rc = node_add_locked(phGraphNode, hGraph, dependencies, numDependencies, NULL, &proto);
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphAddMemsetNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                          size_t numDependencies, const CUDA_MEMSET_NODE_PARAMS *memsetParams,
                                          CUcontext ctx)
{
    (void)ctx;
    CUresult rc = memset_check(memsetParams);
    if (rc != CUDA_SUCCESS) return rc;
    struct emu_gnode proto = {.type = CU_GRAPH_NODE_TYPE_MEMSET, .p.set = *memsetParams};
    pthread_mutex_lock(&g_lock);
    rc = node_add_locked(phGraphNode, hGraph, dependencies, numDependencies, NULL, &proto);
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphAddHostNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                        size_t numDependencies, const CUDA_HOST_NODE_PARAMS *nodeParams)
{
    if (!nodeParams || !nodeParams->fn) return CUDA_ERROR_INVALID_VALUE;
    struct emu_gnode proto = {.type = CU_GRAPH_NODE_TYPE_HOST, .p.host = *nodeParams};
    pthread_mutex_lock(&g_lock);
    CUresult rc = node_add_locked(phGraphNode, hGraph, dependencies, numDependencies, NULL, &proto);
    pthread_mutex_unlock(&g_lock);
    return rc;
}

static CUresult add_event_node(CUgraphNode *out, CUgraph g, const CUgraphNode *deps, size_t n, CUevent e,
                               CUgraphNodeType type)
{
    CUresult rc = event_check(e);
    if (rc != CUDA_SUCCESS) return rc;
    struct emu_gnode proto = {.type = type, .p.event = e};
    pthread_mutex_lock(&g_lock);
    rc = node_add_locked(out, g, deps, n, NULL, &proto);
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphAddEventRecordNode(CUgraphNode *phGraphNode, CUgraph hGraph,
                                               const CUgraphNode *dependencies, size_t numDependencies, CUevent event)
{
    return add_event_node(phGraphNode, hGraph, dependencies, numDependencies, event, CU_GRAPH_NODE_TYPE_EVENT_RECORD);
}

CUresult CUDAAPI emu_cuGraphAddEventWaitNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                             size_t numDependencies, CUevent event)
{
    return add_event_node(phGraphNode, hGraph, dependencies, numDependencies, event, CU_GRAPH_NODE_TYPE_WAIT_EVENT);
}

CUresult CUDAAPI emu_cuGraphAddChildGraphNode(CUgraphNode *phGraphNode, CUgraph hGraph,
                                              const CUgraphNode *dependencies, size_t numDependencies, CUgraph childGraph)
{
    pthread_mutex_lock(&g_lock);
    CUresult rc = CUDA_ERROR_INVALID_VALUE;
    if (graph_live(childGraph) && childGraph != hGraph) {
        struct emu_gnode proto = {.type = CU_GRAPH_NODE_TYPE_GRAPH};
        proto.p.child = graph_clone_locked((struct emu_graph *)childGraph, false);
        rc = CUDA_ERROR_OUT_OF_MEMORY;
        if (proto.p.child && emu_set_add(&graphs, proto.p.child) == 0) {
            struct emu_graph *child = proto.p.child;
            rc = node_add_locked(phGraphNode, hGraph, dependencies, numDependencies, NULL, &proto);
            if (rc != CUDA_SUCCESS) emu_set_del(&graphs, child);
        } else if (proto.p.child) {
            graph_free(proto.p.child);
        }
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphAddEmptyNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                         size_t numDependencies)
{
    struct emu_gnode proto = {.type = CU_GRAPH_NODE_TYPE_EMPTY};
    pthread_mutex_lock(&g_lock);
    CUresult rc = node_add_locked(phGraphNode, hGraph, dependencies, numDependencies, NULL, &proto);
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphDestroyNode(CUgraphNode hNode)
{
    pthread_mutex_lock(&g_lock);
    CUresult rc = CUDA_ERROR_INVALID_VALUE;
    if (node_live(hNode)) {
        struct emu_gnode *n = (struct emu_gnode *)hNode;
        struct emu_graph *g = n->graph;
        size_t at = index_of(g, n);
        for (size_t i = 0; i < g->n; i++) { /* drop edges into and out of n */
            struct emu_gnode *m = g->nodes[i];
            for (size_t d = 0; d < m->ndeps;)
                if (m->deps[d] == n) {
                    m->deps[d] = m->deps[m->ndeps - 1];
                    m->edata[d] = m->edata[m->ndeps - 1];
                    m->ndeps--;
                } else {
                    d++;
                }
        }
        memmove(&g->nodes[at], &g->nodes[at + 1], (g->n - at - 1) * sizeof g->nodes[0]);
        g->n--;
        emu_set_del(&nodes, n);
        if (n->type == CU_GRAPH_NODE_TYPE_GRAPH) {
            emu_set_del(&graphs, n->p.child);
            graph_unregister_children(n->p.child);
        }
        node_free(n);
        rc = CUDA_SUCCESS;
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphNodeGetType(CUgraphNode hNode, CUgraphNodeType *type)
{
    if (!type) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    bool ok = node_live(hNode);
    if (ok) *type = ((struct emu_gnode *)hNode)->type;
    pthread_mutex_unlock(&g_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* A live node of the given type, or NULL. */
static struct emu_gnode *typed_node(CUgraphNode h, CUgraphNodeType type)
{
    if (!node_live(h)) return NULL;
    struct emu_gnode *n = (struct emu_gnode *)h;
    return n->type == type ? n : NULL;
}

/* kernelParams of a node read back point into the node's own packed copy, valid while
 * the node and its parameters are unchanged. */
static void **kernel_param_pointers(struct emu_gnode *n)
{
    static _Thread_local void *ptrs[VGPU_MAX_KERNEL_PARAMS];
    uint32_t count = n->p.k.nparams < VGPU_MAX_KERNEL_PARAMS ? n->p.k.nparams : VGPU_MAX_KERNEL_PARAMS;
    for (uint32_t i = 0; i < count; i++) ptrs[i] = n->p.k.args + n->p.k.offsets[i];
    return count ? ptrs : NULL;
}

CUresult CUDAAPI emu_cuGraphKernelNodeGetParams_v2(CUgraphNode hNode, CUDA_KERNEL_NODE_PARAMS *nodeParams)
{
    if (!nodeParams) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = typed_node(hNode, CU_GRAPH_NODE_TYPE_KERNEL);
    if (n) {
        memset(nodeParams, 0, sizeof *nodeParams);
        /* Made from a CUkernel: the context's function, and the kernel too. */
        CUfunction fn = NULL;
        if (emu_cuKernelGetFunction(&fn, (CUkernel)n->p.k.func) == CUDA_SUCCESS && fn != n->p.k.func) {
            nodeParams->func = fn;
            nodeParams->kern = (CUkernel)n->p.k.func;
        } else {
            nodeParams->func = n->p.k.func;
        }
        nodeParams->gridDimX = n->p.k.grid[0];
        nodeParams->gridDimY = n->p.k.grid[1];
        nodeParams->gridDimZ = n->p.k.grid[2];
        nodeParams->blockDimX = n->p.k.block[0];
        nodeParams->blockDimY = n->p.k.block[1];
        nodeParams->blockDimZ = n->p.k.block[2];
        nodeParams->sharedMemBytes = n->p.k.shared;
        nodeParams->kernelParams = kernel_param_pointers(n);
    }
    pthread_mutex_unlock(&g_lock);
    return n ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

static CUresult kernel_set_from(struct emu_gnode *n, const CUDA_KERNEL_NODE_PARAMS *p)
{
    CUfunction f = p->func ? p->func : (CUfunction)p->kern;
    const unsigned grid[3] = {p->gridDimX, p->gridDimY, p->gridDimZ};
    const unsigned block[3] = {p->blockDimX, p->blockDimY, p->blockDimZ};
    return kernel_params_set(n, f, grid, block, p->sharedMemBytes, p->kernelParams, p->extra);
}

CUresult CUDAAPI emu_cuGraphKernelNodeSetParams_v2(CUgraphNode hNode, const CUDA_KERNEL_NODE_PARAMS *nodeParams)
{
    if (!nodeParams) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = typed_node(hNode, CU_GRAPH_NODE_TYPE_KERNEL);
    CUresult rc = n ? kernel_set_from(n, nodeParams) : CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphMemcpyNodeGetParams(CUgraphNode hNode, CUDA_MEMCPY3D *nodeParams)
{
    if (!nodeParams) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = typed_node(hNode, CU_GRAPH_NODE_TYPE_MEMCPY);
    if (n) *nodeParams = n->p.copy;
    pthread_mutex_unlock(&g_lock);
    return n ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuGraphMemcpyNodeSetParams(CUgraphNode hNode, const CUDA_MEMCPY3D *nodeParams)
{
    CUresult rc = memcpy_check(nodeParams);
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = typed_node(hNode, CU_GRAPH_NODE_TYPE_MEMCPY);
    if (n) n->p.copy = *nodeParams;
    pthread_mutex_unlock(&g_lock);
    return n ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuGraphMemsetNodeGetParams(CUgraphNode hNode, CUDA_MEMSET_NODE_PARAMS *nodeParams)
{
    if (!nodeParams) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = typed_node(hNode, CU_GRAPH_NODE_TYPE_MEMSET);
    if (n) *nodeParams = n->p.set;
    pthread_mutex_unlock(&g_lock);
    return n ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuGraphMemsetNodeSetParams(CUgraphNode hNode, const CUDA_MEMSET_NODE_PARAMS *nodeParams)
{
    CUresult rc = memset_check(nodeParams);
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = typed_node(hNode, CU_GRAPH_NODE_TYPE_MEMSET);
    if (n) n->p.set = *nodeParams;
    pthread_mutex_unlock(&g_lock);
    return n ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuGraphHostNodeGetParams(CUgraphNode hNode, CUDA_HOST_NODE_PARAMS *nodeParams)
{
    if (!nodeParams) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = typed_node(hNode, CU_GRAPH_NODE_TYPE_HOST);
    if (n) *nodeParams = n->p.host;
    pthread_mutex_unlock(&g_lock);
    return n ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuGraphHostNodeSetParams(CUgraphNode hNode, const CUDA_HOST_NODE_PARAMS *nodeParams)
{
    if (!nodeParams || !nodeParams->fn) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = typed_node(hNode, CU_GRAPH_NODE_TYPE_HOST);
    if (n) n->p.host = *nodeParams;
    pthread_mutex_unlock(&g_lock);
    return n ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

static CUresult event_node_get(CUgraphNode h, CUgraphNodeType type, CUevent *out)
{
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = typed_node(h, type);
    if (n) *out = n->p.event;
    pthread_mutex_unlock(&g_lock);
    return n ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

static CUresult event_node_set(CUgraphNode h, CUgraphNodeType type, CUevent e)
{
    CUresult rc = event_check(e);
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = typed_node(h, type);
    if (n) n->p.event = e;
    pthread_mutex_unlock(&g_lock);
    return n ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuGraphEventRecordNodeGetEvent(CUgraphNode hNode, CUevent *event_out)
{
    return event_node_get(hNode, CU_GRAPH_NODE_TYPE_EVENT_RECORD, event_out);
}

CUresult CUDAAPI emu_cuGraphEventRecordNodeSetEvent(CUgraphNode hNode, CUevent event)
{
    return event_node_set(hNode, CU_GRAPH_NODE_TYPE_EVENT_RECORD, event);
}

CUresult CUDAAPI emu_cuGraphEventWaitNodeGetEvent(CUgraphNode hNode, CUevent *event_out)
{
    return event_node_get(hNode, CU_GRAPH_NODE_TYPE_WAIT_EVENT, event_out);
}

CUresult CUDAAPI emu_cuGraphEventWaitNodeSetEvent(CUgraphNode hNode, CUevent event)
{
    return event_node_set(hNode, CU_GRAPH_NODE_TYPE_WAIT_EVENT, event);
}

CUresult CUDAAPI emu_cuGraphChildGraphNodeGetGraph(CUgraphNode hNode, CUgraph *phGraph)
{
    if (!phGraph) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = typed_node(hNode, CU_GRAPH_NODE_TYPE_GRAPH);
    if (n) *phGraph = (CUgraph)n->p.child;
    pthread_mutex_unlock(&g_lock);
    return n ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* ---- topology queries ---- */

/* The driver's array protocol: NULL array: count only; otherwise fill up to *count
 * entries and set *count to the number there are. */
static void put_nodes(struct emu_gnode **list, size_t n, CUgraphNode *out, CUgraphEdgeData *edata,
                      const CUgraphEdgeData *src_edata, size_t *count)
{
    if (out) {
        for (size_t i = 0; i < n && i < *count; i++) {
            out[i] = (CUgraphNode)list[i];
            if (edata) {
                if (src_edata)
                    edata[i] = src_edata[i];
                else
                    memset(&edata[i], 0, sizeof edata[i]);
            }
        }
        for (size_t i = n; i < *count; i++) {
            out[i] = NULL;
            if (edata) memset(&edata[i], 0, sizeof edata[i]);
        }
    }
    *count = n;
}

CUresult CUDAAPI emu_cuGraphGetNodes(CUgraph hGraph, CUgraphNode *nodes_out, size_t *numNodes)
{
    if (!numNodes) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    bool ok = graph_live(hGraph);
    if (ok) {
        struct emu_graph *g = (struct emu_graph *)hGraph;
        put_nodes(g->nodes, g->n, nodes_out, NULL, NULL, numNodes);
    }
    pthread_mutex_unlock(&g_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuGraphGetRootNodes(CUgraph hGraph, CUgraphNode *rootNodes, size_t *numRootNodes)
{
    if (!numRootNodes) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    CUresult rc = CUDA_ERROR_INVALID_VALUE;
    if (graph_live(hGraph)) {
        struct emu_graph *g = (struct emu_graph *)hGraph;
        struct emu_gnode **roots = malloc((g->n ? g->n : 1) * sizeof *roots);
        rc = CUDA_ERROR_OUT_OF_MEMORY;
        if (roots) {
            size_t k = 0;
            for (size_t i = 0; i < g->n; i++)
                if (g->nodes[i]->ndeps == 0) roots[k++] = g->nodes[i];
            put_nodes(roots, k, rootNodes, NULL, NULL, numRootNodes);
            free(roots);
            rc = CUDA_SUCCESS;
        }
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphGetEdges_v2(CUgraph hGraph, CUgraphNode *from, CUgraphNode *to, CUgraphEdgeData *edgeData,
                                        size_t *numEdges)
{
    if (!numEdges || (!from) != (!to)) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    bool ok = graph_live(hGraph);
    if (ok) {
        struct emu_graph *g = (struct emu_graph *)hGraph;
        size_t k = 0;
        for (size_t i = 0; i < g->n; i++)
            for (size_t d = 0; d < g->nodes[i]->ndeps; d++, k++)
                if (from && k < *numEdges) {
                    from[k] = (CUgraphNode)g->nodes[i]->deps[d];
                    to[k] = (CUgraphNode)g->nodes[i];
                    if (edgeData) edgeData[k] = g->nodes[i]->edata[d];
                }
        for (size_t i = k; from && i < *numEdges; i++) {
            from[i] = to[i] = NULL;
            if (edgeData) memset(&edgeData[i], 0, sizeof edgeData[i]);
        }
        *numEdges = k;
    }
    pthread_mutex_unlock(&g_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuGraphNodeGetDependencies_v2(CUgraphNode hNode, CUgraphNode *dependencies,
                                                   CUgraphEdgeData *edgeData, size_t *numDependencies)
{
    if (!numDependencies) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    bool ok = node_live(hNode);
    if (ok) {
        struct emu_gnode *n = (struct emu_gnode *)hNode;
        put_nodes(n->deps, n->ndeps, dependencies, edgeData, n->edata, numDependencies);
    }
    pthread_mutex_unlock(&g_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuGraphNodeGetDependentNodes_v2(CUgraphNode hNode, CUgraphNode *dependentNodes,
                                                     CUgraphEdgeData *edgeData, size_t *numDependentNodes)
{
    if (!numDependentNodes) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    CUresult rc = CUDA_ERROR_INVALID_VALUE;
    if (node_live(hNode)) {
        struct emu_gnode *n = (struct emu_gnode *)hNode;
        struct emu_graph *g = n->graph;
        struct emu_gnode **list = malloc((g->n ? g->n : 1) * sizeof *list);
        CUgraphEdgeData *ed = malloc((g->n ? g->n : 1) * sizeof *ed);
        rc = CUDA_ERROR_OUT_OF_MEMORY;
        if (list && ed) {
            size_t k = 0;
            for (size_t i = 0; i < g->n; i++)
                for (size_t d = 0; d < g->nodes[i]->ndeps; d++)
                    if (g->nodes[i]->deps[d] == n) {
                        ed[k] = g->nodes[i]->edata[d];
                        list[k++] = g->nodes[i];
                    }
            put_nodes(list, k, dependentNodes, edgeData, ed, numDependentNodes);
            rc = CUDA_SUCCESS;
        }
        free(list);
        free(ed);
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

static CUresult edges_check(CUgraph hGraph, const CUgraphNode *from, const CUgraphNode *to, size_t n)
{
    if (!graph_live(hGraph) || (n && (!from || !to))) return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < n; i++)
        if (!node_live(from[i]) || !node_live(to[i]) || from[i] == to[i] ||
            ((struct emu_gnode *)from[i])->graph != (struct emu_graph *)hGraph ||
            ((struct emu_gnode *)to[i])->graph != (struct emu_graph *)hGraph)
            return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuGraphAddDependencies_v2(CUgraph hGraph, const CUgraphNode *from, const CUgraphNode *to,
                                               const CUgraphEdgeData *edgeData, size_t numDependencies)
{
    pthread_mutex_lock(&g_lock);
    CUresult rc = edges_check(hGraph, from, to, numDependencies);
    for (size_t i = 0; rc == CUDA_SUCCESS && i < numDependencies; i++)
        if (node_add_dep((struct emu_gnode *)to[i], (struct emu_gnode *)from[i], edgeData ? &edgeData[i] : NULL))
            rc = CUDA_ERROR_OUT_OF_MEMORY;
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphRemoveDependencies_v2(CUgraph hGraph, const CUgraphNode *from, const CUgraphNode *to,
                                                  const CUgraphEdgeData *edgeData, size_t numDependencies)
{
    (void)edgeData;
    pthread_mutex_lock(&g_lock);
    CUresult rc = edges_check(hGraph, from, to, numDependencies);
    for (size_t i = 0; rc == CUDA_SUCCESS && i < numDependencies; i++) {
        struct emu_gnode *n = (struct emu_gnode *)to[i];
        size_t d = 0;
        while (d < n->ndeps && n->deps[d] != (struct emu_gnode *)from[i]) d++;
        if (d == n->ndeps) {
            rc = CUDA_ERROR_INVALID_VALUE;
            break;
        }
        n->deps[d] = n->deps[n->ndeps - 1];
        n->edata[d] = n->edata[n->ndeps - 1];
        n->ndeps--;
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

/* ---- executable graphs ---- */

CUresult CUDAAPI emu_cuGraphInstantiateWithParams(CUgraphExec *phGraphExec, CUgraph hGraph,
                                                  CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!phGraphExec || !instantiateParams) return CUDA_ERROR_INVALID_VALUE;
    const uint64_t known = CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH | CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD |
                           CUDA_GRAPH_INSTANTIATE_FLAG_DEVICE_LAUNCH | CUDA_GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY;
    instantiateParams->hErrNode_out = NULL;
    if (instantiateParams->flags & ~known) {
        instantiateParams->result_out = CUDA_GRAPH_INSTANTIATE_INVALID_STRUCTURE;
        return CUDA_ERROR_INVALID_VALUE;
    }
    pthread_mutex_lock(&g_lock);
    rc = CUDA_ERROR_INVALID_VALUE;
    instantiateParams->result_out = CUDA_GRAPH_INSTANTIATE_ERROR;
    if (graph_live(hGraph)) {
        struct emu_graph *e = graph_clone_locked((struct emu_graph *)hGraph, true);
        if (!e) {
            rc = CUDA_ERROR_INVALID_VALUE; /* a cycle (or out of memory) */
            instantiateParams->result_out = CUDA_GRAPH_INSTANTIATE_INVALID_STRUCTURE;
        } else if (emu_set_add(&execs, e)) {
            graph_free(e);
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            e->flags = instantiateParams->flags;
            *phGraphExec = (CUgraphExec)e;
            instantiateParams->result_out = CUDA_GRAPH_INSTANTIATE_SUCCESS;
            rc = CUDA_SUCCESS;
        }
    }
    pthread_mutex_unlock(&g_lock);
    if (rc == CUDA_SUCCESS && (instantiateParams->flags & CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD))
        rc = emu_stream_check(instantiateParams->hUploadStream);
    return rc;
}

static void exec_release_locked(struct emu_graph *e)
{
    if (--e->busy == 0 && e->dead) graph_free(e);
}

CUresult CUDAAPI emu_cuGraphExecDestroy(CUgraphExec hGraphExec)
{
    pthread_mutex_lock(&g_lock);
    bool ok = exec_live(hGraphExec);
    if (ok) {
        struct emu_graph *e = (struct emu_graph *)hGraphExec;
        emu_set_del(&execs, e);
        if (e->busy)
            e->dead = true;
        else
            graph_free(e);
    }
    pthread_mutex_unlock(&g_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuGraphExecGetFlags(CUgraphExec hGraphExec, cuuint64_t *flags)
{
    if (!flags) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    bool ok = exec_live(hGraphExec);
    if (ok) *flags = ((struct emu_graph *)hGraphExec)->flags;
    pthread_mutex_unlock(&g_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* Run one node on stream s (not capturing). Called without g_lock: a host node may
 * run guest code that calls back into the daemon. */
static CUresult run_graph(struct emu_graph *g, CUstream s);

static CUresult run_node(struct emu_gnode *n, CUstream s)
{
    switch (n->type) {
    case CU_GRAPH_NODE_TYPE_KERNEL: {
        void *ptrs[VGPU_MAX_KERNEL_PARAMS];
        uint32_t count = n->p.k.nparams;
        if (count > VGPU_MAX_KERNEL_PARAMS) return CUDA_ERROR_NOT_SUPPORTED;
        for (uint32_t i = 0; i < count; i++) ptrs[i] = n->p.k.args + n->p.k.offsets[i];
        return emu_cuLaunchKernel(n->p.k.func, n->p.k.grid[0], n->p.k.grid[1], n->p.k.grid[2], n->p.k.block[0],
                                  n->p.k.block[1], n->p.k.block[2], n->p.k.shared, s, count ? ptrs : NULL, NULL);
    }
    case CU_GRAPH_NODE_TYPE_MEMCPY: {
        /* A one-row copy may leave its pitches 0 (cudaGraphAddMemcpyNode1D does; the
         * driver accepts it): a row's pitch is its width. */
        CUDA_MEMCPY3D c = n->p.copy;
        if (c.Height == 1 && c.Depth == 1) {
            if (c.srcPitch < c.WidthInBytes) c.srcPitch = c.WidthInBytes;
            if (c.dstPitch < c.WidthInBytes) c.dstPitch = c.WidthInBytes;
        }
        return emu_cuMemcpy3DAsync_v2(&c, s);
    }
    case CU_GRAPH_NODE_TYPE_MEMSET: {
        const CUDA_MEMSET_NODE_PARAMS *m = &n->p.set;
        size_t pitch = m->height > 1 ? m->pitch : m->width * m->elementSize;
        switch (m->elementSize) {
        case 1: return emu_cuMemsetD2D8Async(m->dst, pitch, (unsigned char)m->value, m->width, m->height, s);
        case 2: return emu_cuMemsetD2D16Async(m->dst, pitch, (unsigned short)m->value, m->width, m->height, s);
        default: return emu_cuMemsetD2D32Async(m->dst, pitch, m->value, m->width, m->height, s);
        }
    }
    case CU_GRAPH_NODE_TYPE_HOST: n->p.host.fn(n->p.host.userData); return CUDA_SUCCESS;
    case CU_GRAPH_NODE_TYPE_EVENT_RECORD: return emu_event_record_now(n->p.event);
    case CU_GRAPH_NODE_TYPE_WAIT_EVENT: return CUDA_SUCCESS; /* recorded events are complete */
    case CU_GRAPH_NODE_TYPE_GRAPH: return run_graph(n->p.child, s);
    case CU_GRAPH_NODE_TYPE_EMPTY: return CUDA_SUCCESS;
    default: return CUDA_ERROR_NOT_SUPPORTED;
    }
}

/* Child graphs are kept in insertion order; run them in a topological order too. */
static CUresult run_graph(struct emu_graph *g, CUstream s)
{
    if (g->exec) {
        for (size_t i = 0; i < g->n; i++) {
            if (!g->nodes[i]->enabled) continue;
            CUresult rc = run_node(g->nodes[i], s);
            if (rc != CUDA_SUCCESS) return rc;
        }
        return CUDA_SUCCESS;
    }
    pthread_mutex_lock(&g_lock);
    struct emu_graph *ordered = graph_clone_locked(g, true);
    pthread_mutex_unlock(&g_lock);
    if (!ordered) return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = run_graph(ordered, s);
    pthread_mutex_lock(&g_lock);
    graph_free(ordered);
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc != CUDA_SUCCESS) return rc;
    CUstreamCaptureStatus st;
    if (emu_cuStreamIsCapturing(hStream, &st) == CUDA_SUCCESS && st != CU_STREAM_CAPTURE_STATUS_NONE)
        return CUDA_ERROR_NOT_SUPPORTED; /* launching a graph into a capture */
    pthread_mutex_lock(&g_lock);
    struct emu_graph *e = exec_live(hGraphExec) ? (struct emu_graph *)hGraphExec : NULL;
    if (e) e->busy++;
    pthread_mutex_unlock(&g_lock);
    if (!e) return CUDA_ERROR_INVALID_VALUE;
    rc = run_graph(e, hStream);
    pthread_mutex_lock(&g_lock);
    exec_release_locked(e);
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphUpload(CUgraphExec hGraphExec, CUstream hStream)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&g_lock);
    bool ok = exec_live(hGraphExec);
    pthread_mutex_unlock(&g_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* The executable copy of original node h in e, or NULL. */
static struct emu_gnode *exec_node(CUgraphExec e, CUgraphNode h)
{
    if (!exec_live(e) || !node_live(h)) return NULL;
    struct emu_graph *g = (struct emu_graph *)e;
    for (size_t i = 0; i < g->n; i++)
        if (g->nodes[i]->orig == (const struct emu_gnode *)h) return g->nodes[i];
    return NULL;
}

CUresult CUDAAPI emu_cuGraphExecUpdate_v2(CUgraphExec hGraphExec, CUgraph hGraph, CUgraphExecUpdateResultInfo *resultInfo)
{
    if (!resultInfo) return CUDA_ERROR_INVALID_VALUE;
    memset(resultInfo, 0, sizeof *resultInfo);
    pthread_mutex_lock(&g_lock);
    CUresult rc = CUDA_ERROR_INVALID_VALUE;
    if (exec_live(hGraphExec) && graph_live(hGraph)) {
        struct emu_graph *e = (struct emu_graph *)hGraphExec;
        struct emu_graph *fresh = graph_clone_locked((struct emu_graph *)hGraph, true);
        rc = CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE;
        resultInfo->result = CU_GRAPH_EXEC_UPDATE_ERROR;
        if (fresh && fresh->n == e->n) {
            resultInfo->result = CU_GRAPH_EXEC_UPDATE_SUCCESS;
            for (size_t i = 0; i < e->n; i++) {
                struct emu_gnode *a = e->nodes[i], *b = fresh->nodes[i];
                if (a->type != b->type) {
                    resultInfo->result = CU_GRAPH_EXEC_UPDATE_ERROR_NODE_TYPE_CHANGED;
                    resultInfo->errorNode = (CUgraphNode)b->orig;
                    break;
                }
                if (a->ndeps != b->ndeps) {
                    resultInfo->result = CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED;
                    resultInfo->errorNode = (CUgraphNode)b->orig;
                    break;
                }
            }
            if (resultInfo->result == CU_GRAPH_EXEC_UPDATE_SUCCESS && !e->busy) {
                /* Same shape: take the new parameters (and node identities). */
                struct emu_gnode **swap = e->nodes;
                e->nodes = fresh->nodes;
                fresh->nodes = swap;
                for (size_t i = 0; i < e->n; i++) {
                    e->nodes[i]->graph = e;
                    fresh->nodes[i]->graph = fresh;
                }
                rc = CUDA_SUCCESS;
            } else if (resultInfo->result == CU_GRAPH_EXEC_UPDATE_SUCCESS) {
                resultInfo->result = CU_GRAPH_EXEC_UPDATE_ERROR_NOT_SUPPORTED;
            }
        } else if (fresh) {
            resultInfo->result = CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED;
        }
        graph_free(fresh);
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphExecKernelNodeSetParams_v2(CUgraphExec hGraphExec, CUgraphNode hNode,
                                                       const CUDA_KERNEL_NODE_PARAMS *nodeParams)
{
    if (!nodeParams) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = exec_node(hGraphExec, hNode);
    CUresult rc = n && n->type == CU_GRAPH_NODE_TYPE_KERNEL ? kernel_set_from(n, nodeParams) : CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphExecMemcpyNodeSetParams(CUgraphExec hGraphExec, CUgraphNode hNode,
                                                    const CUDA_MEMCPY3D *copyParams, CUcontext ctx)
{
    (void)ctx;
    CUresult rc = memcpy_check(copyParams);
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = exec_node(hGraphExec, hNode);
    bool ok = n && n->type == CU_GRAPH_NODE_TYPE_MEMCPY;
    if (ok) n->p.copy = *copyParams;
    pthread_mutex_unlock(&g_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuGraphExecMemsetNodeSetParams(CUgraphExec hGraphExec, CUgraphNode hNode,
                                                    const CUDA_MEMSET_NODE_PARAMS *memsetParams, CUcontext ctx)
{
    (void)ctx;
    CUresult rc = memset_check(memsetParams);
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = exec_node(hGraphExec, hNode);
    bool ok = n && n->type == CU_GRAPH_NODE_TYPE_MEMSET;
    if (ok) n->p.set = *memsetParams;
    pthread_mutex_unlock(&g_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuGraphExecHostNodeSetParams(CUgraphExec hGraphExec, CUgraphNode hNode,
                                                  const CUDA_HOST_NODE_PARAMS *nodeParams)
{
    if (!nodeParams || !nodeParams->fn) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = exec_node(hGraphExec, hNode);
    bool ok = n && n->type == CU_GRAPH_NODE_TYPE_HOST;
    if (ok) n->p.host = *nodeParams;
    pthread_mutex_unlock(&g_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

static CUresult exec_event_set(CUgraphExec e, CUgraphNode h, CUevent ev, CUgraphNodeType type)
{
    CUresult rc = event_check(ev);
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = exec_node(e, h);
    bool ok = n && n->type == type;
    if (ok) n->p.event = ev;
    pthread_mutex_unlock(&g_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuGraphExecEventRecordNodeSetEvent(CUgraphExec hGraphExec, CUgraphNode hNode, CUevent event)
{
    return exec_event_set(hGraphExec, hNode, event, CU_GRAPH_NODE_TYPE_EVENT_RECORD);
}

CUresult CUDAAPI emu_cuGraphExecEventWaitNodeSetEvent(CUgraphExec hGraphExec, CUgraphNode hNode, CUevent event)
{
    return exec_event_set(hGraphExec, hNode, event, CU_GRAPH_NODE_TYPE_WAIT_EVENT);
}

CUresult CUDAAPI emu_cuGraphExecChildGraphNodeSetParams(CUgraphExec hGraphExec, CUgraphNode hNode, CUgraph childGraph)
{
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = exec_node(hGraphExec, hNode);
    CUresult rc = CUDA_ERROR_INVALID_VALUE;
    if (n && n->type == CU_GRAPH_NODE_TYPE_GRAPH && graph_live(childGraph) &&
        ((struct emu_graph *)childGraph)->n == n->p.child->n) {
        struct emu_graph *c = graph_clone_locked((struct emu_graph *)childGraph, false);
        rc = CUDA_ERROR_OUT_OF_MEMORY;
        if (c) {
            graph_free(n->p.child);
            n->p.child = c;
            rc = CUDA_SUCCESS;
        }
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuGraphNodeSetEnabled(CUgraphExec hGraphExec, CUgraphNode hNode, unsigned int isEnabled)
{
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = exec_node(hGraphExec, hNode);
    if (n) n->enabled = isEnabled != 0;
    pthread_mutex_unlock(&g_lock);
    return n ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuGraphNodeGetEnabled(CUgraphExec hGraphExec, CUgraphNode hNode, unsigned int *isEnabled)
{
    if (!isEnabled) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_gnode *n = exec_node(hGraphExec, hNode);
    if (n) *isEnabled = n->enabled;
    pthread_mutex_unlock(&g_lock);
    return n ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* ---- stream capture ---- */

/* The capture state of stream s (created on demand when `create`), or NULL. Caller
 * holds g_lock. */
static struct emu_capstate *capstate_locked(const void *key, struct cap_entry **list, bool create)
{
    if (key == CU_STREAM_PER_THREAD && list == &stream_caps) return &tls_ptds_cap;
    for (struct cap_entry *e = *list; e; e = e->next)
        if (e->key == key) return &e->st;
    if (!create) return NULL;
    struct cap_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->key = key;
    e->next = *list;
    *list = e;
    return &e->st;
}

/* A new capture sequence into g (borrowed: the caller's graph), on the live list. */
static struct emu_capture *capture_new_locked(struct emu_graph *g, bool borrowed, CUstreamCaptureMode mode)
{
    struct emu_capture *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->id = next_capture_id++;
    c->graph = g;
    c->borrowed = borrowed;
    c->mode = mode;
    c->refs = 1;
    c->next = live_captures;
    live_captures = c;
    return c;
}

/* Graph g is being freed: a capture into it can add nothing more. */
static void captures_detach_locked(const struct emu_graph *g)
{
    for (struct emu_capture *c = live_captures; c; c = c->next)
        if (c->graph == g) {
            c->graph = NULL;
            c->invalidated = true;
        }
}

static void capture_unref_locked(struct emu_capture *c)
{
    if (c && --c->refs == 0) {
        for (struct emu_capture **p = &live_captures; *p; p = &(*p)->next)
            if (*p == c) {
                *p = c->next;
                break;
            }
        struct emu_graph *g = c->borrowed ? NULL : c->graph;
        c->graph = NULL;
        if (g) { /* never ended: the graph goes with it */
            emu_set_del(&graphs, g);
            graph_unregister_children(g);
            graph_free(g);
        }
        free(c);
    }
}

/* Leave the capture (if any) and forget the dependencies. */
static void capstate_clear_locked(struct emu_capstate *st)
{
    capture_unref_locked(st->cap);
    st->cap = NULL;
    free(st->deps);
    free(st->edata);
    st->deps = NULL;
    st->edata = NULL;
    st->ndeps = 0;
}

/* Replace the dependencies with deps and their edge data (NULL: default edges). */
static int capstate_set_deps_locked(struct emu_capstate *st, struct emu_gnode *const *deps,
                                    const CUgraphEdgeData *edata, size_t n)
{
    struct emu_gnode **d = NULL;
    CUgraphEdgeData *e = NULL;
    if (n) {
        d = malloc(n * sizeof *d);
        e = calloc(n, sizeof *e);
        if (!d || !e) {
            free(d);
            free(e);
            return -1;
        }
        memcpy(d, deps, n * sizeof *d);
        if (edata) memcpy(e, edata, n * sizeof *e);
    }
    free(st->deps);
    free(st->edata);
    st->deps = d;
    st->edata = e;
    st->ndeps = n;
    return 0;
}

/* Edge data the emu honours: a default or programmatic edge out of any port, into the
 * whole node, reserved bytes zero. The emu runs nodes one after another in a
 * topological order, so every edge is kept as a full dependency (stricter than a
 * programmatic one, so a valid schedule). */
static bool edges_valid(const CUgraphEdgeData *e, size_t n)
{
    static const unsigned char zero[sizeof e->reserved];
    for (size_t i = 0; e && i < n; i++)
        if (e[i].type > CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC || e[i].to_port != 0 ||
            memcmp(e[i].reserved, zero, sizeof zero) != 0)
            return false;
    return true;
}

/* deps are nodes of g. Caller holds g_lock. */
static bool deps_in_graph(const CUgraphNode *deps, size_t n, const struct emu_graph *g)
{
    for (size_t i = 0; i < n; i++)
        if (!node_live(deps[i]) || ((const struct emu_gnode *)deps[i])->graph != g) return false;
    return true;
}

static void forget_locked(const void *key, struct cap_entry **list)
{
    for (struct cap_entry **p = list; *p; p = &(*p)->next)
        if ((*p)->key == key) {
            struct cap_entry *e = *p;
            *p = e->next;
            capstate_clear_locked(&e->st);
            free(e);
            return;
        }
}

void emu_capture_forget_stream(CUstream s)
{
    pthread_mutex_lock(&g_lock);
    forget_locked(s, &stream_caps);
    pthread_mutex_unlock(&g_lock);
}

void emu_capture_forget_event(CUevent e)
{
    pthread_mutex_lock(&g_lock);
    forget_locked(e, &event_caps);
    pthread_mutex_unlock(&g_lock);
}

/* If s is capturing: add the node (type and parameters from proto, which it takes
 * over) after s's dependencies, make it s's only dependency, set *rc and return true.
 * An invalidated capture answers CUDA_ERROR_STREAM_CAPTURE_INVALIDATED. */
static bool capture_node(CUstream s, struct emu_gnode *proto, CUresult *rc)
{
    pthread_mutex_lock(&g_lock);
    struct emu_capstate *st = capstate_locked(s, &stream_caps, false);
    if (!st || !st->cap) {
        pthread_mutex_unlock(&g_lock);
        return false;
    }
    if (st->cap->invalidated) {
        *rc = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    } else {
        CUgraphNode n;
        *rc = node_add_locked(&n, (CUgraph)st->cap->graph, (const CUgraphNode *)st->deps, st->ndeps, st->edata,
                              proto);
        if (*rc == CUDA_SUCCESS) {
            struct emu_gnode *only = (struct emu_gnode *)n;
            if (capstate_set_deps_locked(st, &only, NULL, 1)) *rc = CUDA_ERROR_OUT_OF_MEMORY;
        }
        if (*rc != CUDA_SUCCESS) st->cap->invalidated = true;
    }
    pthread_mutex_unlock(&g_lock);
    return true;
}

bool emu_capture_kernel(CUstream s, CUfunction f, const unsigned grid[3], const unsigned block[3], unsigned shared,
                        void **kernelParams, CUresult *rc)
{
    CUstreamCaptureStatus cs;
    if (emu_cuStreamIsCapturing(s, &cs) != CUDA_SUCCESS || cs == CU_STREAM_CAPTURE_STATUS_NONE) return false;
    struct emu_gnode proto = {0};
    *rc = kernel_params_set(&proto, f, grid, block, shared, kernelParams, NULL);
    if (*rc != CUDA_SUCCESS) return true;
    bool captured = capture_node(s, &proto, rc);
    node_free_params(&proto);
    return captured;
}

bool emu_capture_copy(CUstream s, const CUDA_MEMCPY3D *copy, CUresult *rc)
{
    struct emu_gnode proto = {.type = CU_GRAPH_NODE_TYPE_MEMCPY, .p.copy = *copy};
    return capture_node(s, &proto, rc);
}

bool emu_capture_memset(CUstream s, const CUDA_MEMSET_NODE_PARAMS *set, CUresult *rc)
{
    struct emu_gnode proto = {.type = CU_GRAPH_NODE_TYPE_MEMSET, .p.set = *set};
    return capture_node(s, &proto, rc);
}

bool emu_capture_host(CUstream s, const CUDA_HOST_NODE_PARAMS *host, CUresult *rc)
{
    struct emu_gnode proto = {.type = CU_GRAPH_NODE_TYPE_HOST, .p.host = *host};
    return capture_node(s, &proto, rc);
}

bool emu_capture_event_record(CUevent e, CUstream s, unsigned flags, CUresult *rc)
{
    if (flags & CU_EVENT_RECORD_EXTERNAL) {
        struct emu_gnode proto = {.type = CU_GRAPH_NODE_TYPE_EVENT_RECORD, .p.event = e};
        return capture_node(s, &proto, rc);
    }
    pthread_mutex_lock(&g_lock);
    struct emu_capstate *st = capstate_locked(s, &stream_caps, false);
    bool capturing = st && st->cap;
    if (capturing) {
        struct emu_capstate *ev = capstate_locked(e, &event_caps, true);
        *rc = CUDA_ERROR_OUT_OF_MEMORY;
        if (ev && capstate_set_deps_locked(ev, st->deps, st->edata, st->ndeps) == 0) {
            if (ev->cap != st->cap) {
                capture_unref_locked(ev->cap);
                ev->cap = st->cap;
                ev->cap->refs++;
            }
            *rc = CUDA_SUCCESS;
        }
    } else {
        forget_locked(e, &event_caps); /* recorded outside any capture now */
    }
    pthread_mutex_unlock(&g_lock);
    return capturing;
}

bool emu_capture_wait_event(CUstream s, CUevent e, unsigned flags, CUresult *rc)
{
    pthread_mutex_lock(&g_lock);
    struct emu_capstate *ev = capstate_locked(e, &event_caps, false);
    struct emu_capstate *st = capstate_locked(s, &stream_caps, false);
    bool handled = false;
    if (ev && ev->cap && !ev->cap->invalidated) {
        /* Join (or merge into) the event's capture. */
        struct emu_capstate *target = capstate_locked(s, &stream_caps, true);
        handled = true;
        *rc = CUDA_ERROR_OUT_OF_MEMORY;
        if (target) {
            if (target->cap && target->cap != ev->cap) {
                *rc = CUDA_ERROR_STREAM_CAPTURE_MERGE;
            } else {
                size_t n = target->cap ? target->ndeps : 0;
                struct emu_gnode **merged = malloc((n + ev->ndeps + 1) * sizeof *merged);
                CUgraphEdgeData *medges = calloc(n + ev->ndeps + 1, sizeof *medges);
                if (merged && medges) {
                    size_t k = 0;
                    for (size_t i = 0; i < n; i++) {
                        if (target->edata) medges[k] = target->edata[i];
                        merged[k++] = target->deps[i];
                    }
                    for (size_t i = 0; i < ev->ndeps; i++) {
                        bool dup = false;
                        for (size_t j = 0; j < k; j++) dup |= merged[j] == ev->deps[i];
                        if (dup) continue;
                        if (ev->edata) medges[k] = ev->edata[i];
                        merged[k++] = ev->deps[i];
                    }
                    if (capstate_set_deps_locked(target, merged, medges, k) == 0) {
                        if (!target->cap) {
                            target->cap = ev->cap;
                            target->cap->refs++;
                        }
                        *rc = CUDA_SUCCESS;
                    }
                }
                free(merged);
                free(medges);
            }
        }
    } else if (st && st->cap) {
        handled = true;
        if (flags & CU_EVENT_WAIT_EXTERNAL) {
            pthread_mutex_unlock(&g_lock);
            struct emu_gnode proto = {.type = CU_GRAPH_NODE_TYPE_WAIT_EVENT, .p.event = e};
            return capture_node(s, &proto, rc);
        }
        *rc = CUDA_ERROR_STREAM_CAPTURE_ISOLATION;
        st->cap->invalidated = true;
    }
    pthread_mutex_unlock(&g_lock);
    return handled;
}

bool emu_capture_sync(CUstream s, CUresult *rc)
{
    pthread_mutex_lock(&g_lock);
    struct emu_capstate *st = capstate_locked(s, &stream_caps, false);
    bool capturing = st && st->cap;
    if (capturing) {
        st->cap->invalidated = true;
        *rc = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    pthread_mutex_unlock(&g_lock);
    return capturing;
}

static bool capture_mode_valid(CUstreamCaptureMode mode)
{
    return mode == CU_STREAM_CAPTURE_MODE_GLOBAL || mode == CU_STREAM_CAPTURE_MODE_THREAD_LOCAL ||
           mode == CU_STREAM_CAPTURE_MODE_RELAXED;
}

CUresult CUDAAPI emu_cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc != CUDA_SUCCESS) return rc;
    if (hStream == NULL || hStream == CU_STREAM_LEGACY) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    if (!capture_mode_valid(mode)) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_capstate *st = capstate_locked(hStream, &stream_caps, true);
    rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (st && st->cap) {
        rc = CUDA_ERROR_ILLEGAL_STATE;
    } else if (st) {
        struct emu_graph *g = graph_new();
        struct emu_capture *c = g && emu_set_add(&graphs, g) == 0 ? capture_new_locked(g, false, mode) : NULL;
        if (c) {
            capstate_set_deps_locked(st, NULL, NULL, 0);
            st->cap = c;
            rc = CUDA_SUCCESS;
        } else if (g) {
            emu_set_del(&graphs, g);
            free(g);
        }
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

/* Capture into the caller's graph: the captured nodes depend on `dependencies` first. */
CUresult CUDAAPI emu_cuStreamBeginCaptureToGraph(CUstream hStream, CUgraph hGraph, const CUgraphNode *dependencies,
                                                 const CUgraphEdgeData *dependencyData, size_t numDependencies,
                                                 CUstreamCaptureMode mode)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc != CUDA_SUCCESS) return rc;
    if (hStream == NULL || hStream == CU_STREAM_LEGACY) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    if (!capture_mode_valid(mode) || (numDependencies && !dependencies) ||
        !edges_valid(dependencyData, numDependencies))
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_graph *g = (struct emu_graph *)hGraph;
    struct emu_capstate *st = NULL;
    if (!graph_live(hGraph) || !deps_in_graph(dependencies, numDependencies, g)) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else if (!(st = capstate_locked(hStream, &stream_caps, true))) {
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    } else if (st->cap) {
        rc = CUDA_ERROR_ILLEGAL_STATE;
    } else if (capstate_set_deps_locked(st, (struct emu_gnode *const *)dependencies, dependencyData,
                                        numDependencies)) {
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    } else {
        st->cap = capture_new_locked(g, true, mode);
        rc = st->cap ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

/* Add to (flags 0) or replace (1) the nodes the stream's next captured node depends on. */
CUresult CUDAAPI emu_cuStreamUpdateCaptureDependencies_v2(CUstream hStream, CUgraphNode *dependencies,
                                                          const CUgraphEdgeData *dependencyData,
                                                          size_t numDependencies, unsigned int flags)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc != CUDA_SUCCESS) return rc;
    if (flags > CU_STREAM_SET_CAPTURE_DEPENDENCIES || (numDependencies && !dependencies) ||
        !edges_valid(dependencyData, numDependencies))
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_capstate *st = capstate_locked(hStream, &stream_caps, false);
    if (!st || !st->cap) {
        rc = CUDA_ERROR_ILLEGAL_STATE;
    } else if (st->cap->invalidated) {
        rc = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    } else if (!deps_in_graph(dependencies, numDependencies, st->cap->graph)) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else if (flags == CU_STREAM_SET_CAPTURE_DEPENDENCIES) {
        if (capstate_set_deps_locked(st, (struct emu_gnode *const *)dependencies, dependencyData, numDependencies))
            rc = CUDA_ERROR_OUT_OF_MEMORY;
    } else {
        size_t n = st->ndeps, k = n;
        struct emu_gnode **merged = malloc((n + numDependencies + 1) * sizeof *merged);
        CUgraphEdgeData *medges = calloc(n + numDependencies + 1, sizeof *medges);
        if (merged && medges) {
            if (n) {
                memcpy(merged, st->deps, n * sizeof *merged);
                memcpy(medges, st->edata, n * sizeof *medges);
            }
            for (size_t i = 0; i < numDependencies; i++) {
                bool dup = false;
                for (size_t j = 0; j < k; j++) dup |= merged[j] == (struct emu_gnode *)dependencies[i];
                if (dup) continue;
                if (dependencyData) medges[k] = dependencyData[i];
                merged[k++] = (struct emu_gnode *)dependencies[i];
            }
        }
        if (!merged || !medges || capstate_set_deps_locked(st, merged, medges, k)) rc = CUDA_ERROR_OUT_OF_MEMORY;
        free(merged);
        free(medges);
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuStreamEndCapture(CUstream hStream, CUgraph *phGraph)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc != CUDA_SUCCESS) return rc;
    if (!phGraph) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_capstate *st = capstate_locked(hStream, &stream_caps, false);
    if (!st || !st->cap) {
        pthread_mutex_unlock(&g_lock);
        return CUDA_ERROR_ILLEGAL_STATE;
    }
    struct emu_capture *c = st->cap;
    /* Every stream that joined leaves the capture with the origin. */
    for (struct cap_entry *e = stream_caps; e; e = e->next)
        if (e->st.cap == c && &e->st != st) capstate_clear_locked(&e->st);
    if (tls_ptds_cap.cap == c && &tls_ptds_cap != st) capstate_clear_locked(&tls_ptds_cap);
    if (c->invalidated) {
        *phGraph = NULL;
        rc = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    } else {
        *phGraph = (CUgraph)c->graph;
        c->graph = NULL; /* the caller owns it now */
        rc = CUDA_SUCCESS;
    }
    capstate_clear_locked(st);
    pthread_mutex_unlock(&g_lock);
    return rc;
}

CUresult CUDAAPI emu_cuStreamIsCapturing(CUstream hStream, CUstreamCaptureStatus *captureStatus)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc != CUDA_SUCCESS) return rc;
    if (!captureStatus) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_capstate *st = capstate_locked(hStream, &stream_caps, false);
    *captureStatus = !st || !st->cap       ? CU_STREAM_CAPTURE_STATUS_NONE
                     : st->cap->invalidated ? CU_STREAM_CAPTURE_STATUS_INVALIDATED
                                            : CU_STREAM_CAPTURE_STATUS_ACTIVE;
    pthread_mutex_unlock(&g_lock);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuStreamGetCaptureInfo_v3(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                               cuuint64_t *id_out, CUgraph *graph_out,
                                               const CUgraphNode **dependencies_out,
                                               const CUgraphEdgeData **edgeData_out, size_t *numDependencies_out)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc != CUDA_SUCCESS) return rc;
    if (!captureStatus_out) return CUDA_ERROR_INVALID_VALUE;
    static _Thread_local CUgraphEdgeData *zero_edges;
    static _Thread_local size_t zero_cap;
    pthread_mutex_lock(&g_lock);
    struct emu_capstate *st = capstate_locked(hStream, &stream_caps, false);
    bool active = st && st->cap;
    *captureStatus_out = !active ? CU_STREAM_CAPTURE_STATUS_NONE
                         : st->cap->invalidated ? CU_STREAM_CAPTURE_STATUS_INVALIDATED
                                                : CU_STREAM_CAPTURE_STATUS_ACTIVE;
    if (active) {
        if (id_out) *id_out = st->cap->id;
        if (graph_out) *graph_out = (CUgraph)st->cap->graph;
        if (dependencies_out) *dependencies_out = (const CUgraphNode *)st->deps;
        if (edgeData_out && st->edata) {
            *edgeData_out = st->edata;
        } else if (edgeData_out) { /* no dependencies: an empty array */
            if (zero_cap < st->ndeps + 1) {
                CUgraphEdgeData *z = realloc(zero_edges, (st->ndeps + 1) * sizeof *z);
                if (z) {
                    zero_edges = z;
                    zero_cap = st->ndeps + 1;
                }
            }
            if (zero_cap >= st->ndeps + 1) memset(zero_edges, 0, zero_cap * sizeof *zero_edges);
            *edgeData_out = zero_cap >= st->ndeps + 1 ? zero_edges : NULL;
        }
        if (numDependencies_out) *numDependencies_out = st->ndeps;
    }
    pthread_mutex_unlock(&g_lock);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode *mode)
{
    if (!mode) return CUDA_ERROR_INVALID_VALUE;
    if (*mode != CU_STREAM_CAPTURE_MODE_GLOBAL && *mode != CU_STREAM_CAPTURE_MODE_THREAD_LOCAL &&
        *mode != CU_STREAM_CAPTURE_MODE_RELAXED)
        return CUDA_ERROR_INVALID_VALUE;
    CUstreamCaptureMode old = tls_capture_mode;
    tls_capture_mode = *mode;
    *mode = old;
    return CUDA_SUCCESS;
}

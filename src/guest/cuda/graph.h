/*
 * What other guest files need of graph.c: the capture state of a stream, and the wire
 * description of a copy a graph may replay (also sent by memcpy.c for copies on a
 * capturing stream, as MEMCPY_MIRRORED).
 */
#ifndef VGPU_GUEST_GRAPH_H
#define VGPU_GUEST_GRAPH_H

#include "common/wire.h"
#include "guest/cuda/guest.h"

/* *capturing: whether stream s is capturing now (an active capture; an invalidated
 * one counts as not). Asks the daemon only while this process has a capture open. */
CUresult vg_stream_capturing(CUstream s, bool *capturing);

/* Append the COPY description of c (ops_graph.c): device sides as they are, host sides
 * (HOST, or UNIFIED naming guest host memory) as the daemon's address of the mirrored
 * memory they lie in; pinned memory not mirrored yet becomes mirrored here (memory.h,
 * vg_host_for_graph). CUDA_ERROR_NOT_SUPPORTED, logged once, for pageable host memory
 * and arrays; CUDA_ERROR_INVALID_VALUE for a shape that does not fit its pitch. Packing
 * may call the daemon: build it in a buffer other than the thread's vg_args(). */
CUresult vg_put_copy(struct wire_buf *a, const CUDA_MEMCPY3D *c);

#endif

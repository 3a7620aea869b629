/*
 * The driver function table the server executes guest calls with.
 *
 * Both backends fill the same table: `cuda` with dlsym() from the real libcuda.so.1,
 * `emu` with the CPU implementations in src/server/emu/. Server handlers are written
 * once, against this table, so the emu backend exercises exactly the code paths the
 * GPU uses. Each entry names the exact driver symbol and its cudaTypedefs.h prototype.
 */
#ifndef VGPU_SERVER_BACKEND_H
#define VGPU_SERVER_BACKEND_H

#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>
#include <cudaTypedefs.h>
#include <stdbool.h>

/* X(symbol, PFN type). Keep sorted by family. */
#define VGPU_BACKEND_FUNCS(X)                                                  \
    X(cuInit, PFN_cuInit_v2000)                                                \
    X(cuDriverGetVersion, PFN_cuDriverGetVersion_v2020)                        \
    X(cuDeviceGet, PFN_cuDeviceGet_v2000)                                      \
    X(cuDeviceGetCount, PFN_cuDeviceGetCount_v2000)                            \
    X(cuDeviceGetName, PFN_cuDeviceGetName_v2000)                              \
    X(cuDeviceGetUuid_v2, PFN_cuDeviceGetUuid_v11040)                          \
    X(cuDeviceTotalMem_v2, PFN_cuDeviceTotalMem_v3020)                         \
    X(cuDeviceGetAttribute, PFN_cuDeviceGetAttribute_v2000)                    \
    X(cuDeviceGetPCIBusId, PFN_cuDeviceGetPCIBusId_v4010)                      \
    X(cuDeviceGetP2PAttribute, PFN_cuDeviceGetP2PAttribute_v8000)              \
    X(cuDeviceCanAccessPeer, PFN_cuDeviceCanAccessPeer_v4000)                  \
    X(cuDevicePrimaryCtxRetain, PFN_cuDevicePrimaryCtxRetain_v7000)            \
    X(cuDevicePrimaryCtxRelease_v2, PFN_cuDevicePrimaryCtxRelease_v11000)      \
    X(cuDevicePrimaryCtxReset_v2, PFN_cuDevicePrimaryCtxReset_v11000)          \
    X(cuDevicePrimaryCtxGetState, PFN_cuDevicePrimaryCtxGetState_v7000)        \
    X(cuDevicePrimaryCtxSetFlags_v2, PFN_cuDevicePrimaryCtxSetFlags_v11000)    \
    X(cuCtxCreate_v2, PFN_cuCtxCreate_v3020)                                   \
    X(cuCtxDestroy_v2, PFN_cuCtxDestroy_v4000)                                 \
    X(cuCtxSetCurrent, PFN_cuCtxSetCurrent_v4000)                              \
    X(cuCtxGetCurrent, PFN_cuCtxGetCurrent_v4000)                              \
    X(cuCtxGetDevice, PFN_cuCtxGetDevice_v2000)                                \
    X(cuCtxSynchronize, PFN_cuCtxSynchronize_v2000)                            \
    X(cuCtxSetLimit, PFN_cuCtxSetLimit_v3010)                                  \
    X(cuCtxGetLimit, PFN_cuCtxGetLimit_v3010)                                  \
    X(cuCtxGetCacheConfig, PFN_cuCtxGetCacheConfig_v3020)                      \
    X(cuCtxSetCacheConfig, PFN_cuCtxSetCacheConfig_v3020)                      \
    X(cuCtxGetFlags, PFN_cuCtxGetFlags_v7000)                                  \
    X(cuCtxGetApiVersion, PFN_cuCtxGetApiVersion_v3020)                        \
    X(cuCtxGetStreamPriorityRange, PFN_cuCtxGetStreamPriorityRange_v5050)      \
    X(cuMemAlloc_v2, PFN_cuMemAlloc_v3020)                                     \
    X(cuMemAllocPitch_v2, PFN_cuMemAllocPitch_v3020)                           \
    X(cuMemFree_v2, PFN_cuMemFree_v3020)                                       \
    X(cuMemGetInfo_v2, PFN_cuMemGetInfo_v3020)                                 \
    X(cuMemGetAddressRange_v2, PFN_cuMemGetAddressRange_v3020)                 \
    X(cuMemcpyHtoD_v2, PFN_cuMemcpyHtoD_v3020)                                 \
    X(cuMemcpyDtoH_v2, PFN_cuMemcpyDtoH_v3020)                                 \
    X(cuMemcpyDtoD_v2, PFN_cuMemcpyDtoD_v3020)                                 \
    X(cuMemcpyHtoDAsync_v2, PFN_cuMemcpyHtoDAsync_v3020)                       \
    X(cuMemcpyDtoHAsync_v2, PFN_cuMemcpyDtoHAsync_v3020)                       \
    X(cuMemcpyDtoDAsync_v2, PFN_cuMemcpyDtoDAsync_v3020)                       \
    X(cuMemcpy2DAsync_v2, PFN_cuMemcpy2DAsync_v3020)                           \
    X(cuMemcpy3DAsync_v2, PFN_cuMemcpy3DAsync_v3020)                           \
    X(cuMemsetD8Async, PFN_cuMemsetD8Async_v3020)                              \
    X(cuMemsetD16Async, PFN_cuMemsetD16Async_v3020)                            \
    X(cuMemsetD32Async, PFN_cuMemsetD32Async_v3020)                            \
    X(cuMemsetD2D8Async, PFN_cuMemsetD2D8Async_v3020)                          \
    X(cuMemsetD2D16Async, PFN_cuMemsetD2D16Async_v3020)                        \
    X(cuMemsetD2D32Async, PFN_cuMemsetD2D32Async_v3020)                        \
    X(cuPointerGetAttribute, PFN_cuPointerGetAttribute_v4000)                  \
    X(cuMemHostAlloc, PFN_cuMemHostAlloc_v2020)                                \
    X(cuMemFreeHost, PFN_cuMemFreeHost_v2000)                                  \
    X(cuMemHostRegister_v2, PFN_cuMemHostRegister_v6050)                       \
    X(cuMemHostUnregister, PFN_cuMemHostUnregister_v4000)                      \
    X(cuMemHostGetDevicePointer_v2, PFN_cuMemHostGetDevicePointer_v3020)       \
    X(cuMemAllocManaged, PFN_cuMemAllocManaged_v6000)                          \
    X(cuMemPrefetchAsync_v2, PFN_cuMemPrefetchAsync_v12020)                    \
    X(cuMemAdvise_v2, PFN_cuMemAdvise_v12020)                                  \
    X(cuMemAddressReserve, PFN_cuMemAddressReserve_v10020)                     \
    X(cuMemAddressFree, PFN_cuMemAddressFree_v10020)                           \
    X(cuMemCreate, PFN_cuMemCreate_v10020)                                     \
    X(cuMemRelease, PFN_cuMemRelease_v10020)                                   \
    X(cuMemMap, PFN_cuMemMap_v10020)                                           \
    X(cuMemUnmap, PFN_cuMemUnmap_v10020)                                       \
    X(cuMemSetAccess, PFN_cuMemSetAccess_v10020)                               \
    X(cuMemGetAccess, PFN_cuMemGetAccess_v10020)                               \
    X(cuMemGetAllocationGranularity, PFN_cuMemGetAllocationGranularity_v10020) \
    X(cuMemGetAllocationPropertiesFromHandle,                                  \
      PFN_cuMemGetAllocationPropertiesFromHandle_v10020)                       \
    X(cuMemRetainAllocationHandle, PFN_cuMemRetainAllocationHandle_v11000)     \
    X(cuModuleLoadData, PFN_cuModuleLoadData_v2000)                            \
    X(cuModuleLoadDataEx, PFN_cuModuleLoadDataEx_v2010)                        \
    X(cuModuleUnload, PFN_cuModuleUnload_v2000)                                \
    X(cuModuleGetFunction, PFN_cuModuleGetFunction_v2000)                      \
    X(cuModuleGetGlobal_v2, PFN_cuModuleGetGlobal_v3020)                       \
    X(cuLinkCreate_v2, PFN_cuLinkCreate_v6050)                                 \
    X(cuLinkAddData_v2, PFN_cuLinkAddData_v6050)                               \
    X(cuLinkComplete, PFN_cuLinkComplete_v5050)                                \
    X(cuLinkDestroy, PFN_cuLinkDestroy_v5050)                                  \
    X(cuLibraryLoadData, PFN_cuLibraryLoadData_v12000)                         \
    X(cuLibraryUnload, PFN_cuLibraryUnload_v12000)                             \
    X(cuLibraryGetKernel, PFN_cuLibraryGetKernel_v12000)                       \
    X(cuLibraryGetModule, PFN_cuLibraryGetModule_v12000)                       \
    X(cuLibraryGetGlobal, PFN_cuLibraryGetGlobal_v12000)                       \
    X(cuKernelGetFunction, PFN_cuKernelGetFunction_v12000)                     \
    X(cuKernelGetAttribute, PFN_cuKernelGetAttribute_v12000)                   \
    X(cuKernelSetAttribute, PFN_cuKernelSetAttribute_v12000)                   \
    X(cuKernelGetParamInfo, PFN_cuKernelGetParamInfo_v12040)                   \
    X(cuKernelGetName, PFN_cuKernelGetName_v12030)                             \
    X(cuFuncGetParamInfo, PFN_cuFuncGetParamInfo_v12040)                       \
    X(cuFuncGetAttribute, PFN_cuFuncGetAttribute_v2020)                        \
    X(cuFuncSetAttribute, PFN_cuFuncSetAttribute_v9000)                        \
    X(cuFuncSetCacheConfig, PFN_cuFuncSetCacheConfig_v3000)                    \
    X(cuFuncGetName, PFN_cuFuncGetName_v12030)                                 \
    X(cuLaunchKernel, PFN_cuLaunchKernel_v4000)                                \
    X(cuLaunchKernelEx, PFN_cuLaunchKernelEx_v11060)                           \
    X(cuStreamCreate, PFN_cuStreamCreate_v2000)                                \
    X(cuStreamCreateWithPriority, PFN_cuStreamCreateWithPriority_v5050)        \
    X(cuStreamDestroy_v2, PFN_cuStreamDestroy_v4000)                           \
    X(cuStreamSynchronize, PFN_cuStreamSynchronize_v2000)                      \
    X(cuStreamQuery, PFN_cuStreamQuery_v2000)                                  \
    X(cuStreamWaitEvent, PFN_cuStreamWaitEvent_v3020)                          \
    X(cuStreamGetFlags, PFN_cuStreamGetFlags_v5050)                            \
    X(cuStreamGetPriority, PFN_cuStreamGetPriority_v5050)                      \
    X(cuLaunchHostFunc, PFN_cuLaunchHostFunc_v10000)                           \
    X(cuStreamIsCapturing, PFN_cuStreamIsCapturing_v10000)                     \
    X(cuStreamBeginCapture_v2, PFN_cuStreamBeginCapture_v10010)                \
    X(cuStreamEndCapture, PFN_cuStreamEndCapture_v10000)                       \
    X(cuStreamGetCaptureInfo_v3, PFN_cuStreamGetCaptureInfo_v12030)            \
    X(cuStreamBeginCaptureToGraph, PFN_cuStreamBeginCaptureToGraph_v12030)    \
    X(cuStreamUpdateCaptureDependencies_v2, PFN_cuStreamUpdateCaptureDependencies_v12030)\
    X(cuThreadExchangeStreamCaptureMode, PFN_cuThreadExchangeStreamCaptureMode_v10010)\
    X(cuGraphCreate, PFN_cuGraphCreate_v10000)                                 \
    X(cuGraphDestroy, PFN_cuGraphDestroy_v10000)                               \
    X(cuGraphClone, PFN_cuGraphClone_v10000)                                   \
    X(cuGraphNodeFindInClone, PFN_cuGraphNodeFindInClone_v10000)               \
    X(cuGraphAddKernelNode_v2, PFN_cuGraphAddKernelNode_v12000)                \
    X(cuGraphAddMemcpyNode, PFN_cuGraphAddMemcpyNode_v10000)                   \
    X(cuGraphAddMemsetNode, PFN_cuGraphAddMemsetNode_v10000)                   \
    X(cuGraphAddHostNode, PFN_cuGraphAddHostNode_v10000)                       \
    X(cuGraphAddEventRecordNode, PFN_cuGraphAddEventRecordNode_v11010)         \
    X(cuGraphAddEventWaitNode, PFN_cuGraphAddEventWaitNode_v11010)             \
    X(cuGraphAddChildGraphNode, PFN_cuGraphAddChildGraphNode_v10000)           \
    X(cuGraphAddEmptyNode, PFN_cuGraphAddEmptyNode_v10000)                     \
    X(cuGraphDestroyNode, PFN_cuGraphDestroyNode_v10000)                       \
    X(cuGraphNodeGetType, PFN_cuGraphNodeGetType_v10000)                       \
    X(cuGraphKernelNodeGetParams_v2, PFN_cuGraphKernelNodeGetParams_v12000)    \
    X(cuGraphKernelNodeSetParams_v2, PFN_cuGraphKernelNodeSetParams_v12000)    \
    X(cuGraphMemcpyNodeGetParams, PFN_cuGraphMemcpyNodeGetParams_v10000)       \
    X(cuGraphMemcpyNodeSetParams, PFN_cuGraphMemcpyNodeSetParams_v10000)       \
    X(cuGraphMemsetNodeGetParams, PFN_cuGraphMemsetNodeGetParams_v10000)       \
    X(cuGraphMemsetNodeSetParams, PFN_cuGraphMemsetNodeSetParams_v10000)       \
    X(cuGraphHostNodeGetParams, PFN_cuGraphHostNodeGetParams_v10000)           \
    X(cuGraphHostNodeSetParams, PFN_cuGraphHostNodeSetParams_v10000)           \
    X(cuGraphEventRecordNodeGetEvent, PFN_cuGraphEventRecordNodeGetEvent_v11010)\
    X(cuGraphEventRecordNodeSetEvent, PFN_cuGraphEventRecordNodeSetEvent_v11010)\
    X(cuGraphEventWaitNodeGetEvent, PFN_cuGraphEventWaitNodeGetEvent_v11010)   \
    X(cuGraphEventWaitNodeSetEvent, PFN_cuGraphEventWaitNodeSetEvent_v11010)   \
    X(cuGraphChildGraphNodeGetGraph, PFN_cuGraphChildGraphNodeGetGraph_v10000) \
    X(cuGraphGetNodes, PFN_cuGraphGetNodes_v10000)                             \
    X(cuGraphGetRootNodes, PFN_cuGraphGetRootNodes_v10000)                     \
    X(cuGraphGetEdges_v2, PFN_cuGraphGetEdges_v12030)                          \
    X(cuGraphNodeGetDependencies_v2, PFN_cuGraphNodeGetDependencies_v12030)    \
    X(cuGraphNodeGetDependentNodes_v2, PFN_cuGraphNodeGetDependentNodes_v12030)\
    X(cuGraphAddDependencies_v2, PFN_cuGraphAddDependencies_v12030)            \
    X(cuGraphRemoveDependencies_v2, PFN_cuGraphRemoveDependencies_v12030)      \
    X(cuGraphInstantiateWithParams, PFN_cuGraphInstantiateWithParams_v12000)   \
    X(cuGraphExecDestroy, PFN_cuGraphExecDestroy_v10000)                       \
    X(cuGraphExecGetFlags, PFN_cuGraphExecGetFlags_v12000)                     \
    X(cuGraphLaunch, PFN_cuGraphLaunch_v10000)                                 \
    X(cuGraphUpload, PFN_cuGraphUpload_v11010)                                 \
    X(cuGraphExecUpdate_v2, PFN_cuGraphExecUpdate_v12000)                      \
    X(cuGraphExecKernelNodeSetParams_v2, PFN_cuGraphExecKernelNodeSetParams_v12000)\
    X(cuGraphExecMemcpyNodeSetParams, PFN_cuGraphExecMemcpyNodeSetParams_v10020)\
    X(cuGraphExecMemsetNodeSetParams, PFN_cuGraphExecMemsetNodeSetParams_v10020)\
    X(cuGraphExecHostNodeSetParams, PFN_cuGraphExecHostNodeSetParams_v10020)   \
    X(cuGraphExecEventRecordNodeSetEvent, PFN_cuGraphExecEventRecordNodeSetEvent_v11010)\
    X(cuGraphExecEventWaitNodeSetEvent, PFN_cuGraphExecEventWaitNodeSetEvent_v11010)\
    X(cuGraphExecChildGraphNodeSetParams, PFN_cuGraphExecChildGraphNodeSetParams_v11010)\
    X(cuGraphNodeSetEnabled, PFN_cuGraphNodeSetEnabled_v11060)                 \
    X(cuGraphNodeGetEnabled, PFN_cuGraphNodeGetEnabled_v11060)                 \
    X(cuEventCreate, PFN_cuEventCreate_v2000)                                  \
    X(cuEventDestroy_v2, PFN_cuEventDestroy_v4000)                             \
    X(cuEventRecordWithFlags, PFN_cuEventRecordWithFlags_v11010)               \
    X(cuEventQuery, PFN_cuEventQuery_v2000)                                    \
    X(cuEventSynchronize, PFN_cuEventSynchronize_v2000)                        \
    X(cuEventElapsedTime_v2, PFN_cuEventElapsedTime_v12080)                    \
    X(cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags,                    \
      PFN_cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags_v7000)          \
    X(cuOccupancyAvailableDynamicSMemPerBlock,                                 \
      PFN_cuOccupancyAvailableDynamicSMemPerBlock_v10020)                      \
    X(cuOccupancyMaxActiveClusters, PFN_cuOccupancyMaxActiveClusters_v11070)

struct vgpu_driver {
#define VGPU_DRIVER_FIELD(sym, pfn) pfn sym;
    VGPU_BACKEND_FUNCS(VGPU_DRIVER_FIELD)
#undef VGPU_DRIVER_FIELD
};

/* The table in use by this server process; filled once by a backend_open_*(). */
extern struct vgpu_driver drv;

/* Fill `drv` from the real driver at `path` (NULL: "libcuda.so.1" from the system
 * search path). Refuses a library that is vgpu's own guest library. 0 on success;
 * on failure writes a reason into err. */
int backend_open_cuda(const char *path, char *err, size_t errlen);

/* Fill `drv` with the CPU emulation. memory_bytes sizes the simulated device. */
int backend_open_emu(unsigned long long memory_bytes, char *err, size_t errlen);

/* The emulated device's engine: emu calls enter() before it runs a kernel and
 * leave(ns the kernel ran) after, on the launching thread. vgpud's workers pass their
 * scheduler's (one engine shared by all workers, and GPU time charged to the tenant);
 * unset (the unit test), kernels simply run. enter says whether it got the engine. */
void backend_emu_set_engine(bool (*enter)(void), void (*leave)(uint64_t busy_ns));

#endif

/*
 * Test-only stand-ins for the guest.h functions that export_tables.c calls (and cuCtxGetId), so the
 * export tables can be tested without a server. Each answers from the small fixed state below, which
 * the tests set and inspect; nothing pretends to be a GPU beyond one device with fixed facts.
 */
#include "guest/cuda/guest.h"

#include <string.h>

/* State the tests control or inspect. */
CUcontext stub_current_ctx;       /* what vg_current_ctx() answers */
int stub_device_count = 1;        /* what vg_device_count() answers */
const void *stub_last_wrapper;    /* last argument of vg_module_load_fatbin_wrapper */
unsigned char stub_last_wrapper_bytes[24]; /* copy of it (it may live on the caller's stack) */

static int primary_ctx_object; /* its address is device 0's primary context handle */
static int module_object;      /* its address is the module handle every load returns */

CUcontext stub_primary_ctx(void)
{
    return (CUcontext)&primary_ctx_object;
}

CUmodule stub_module(void)
{
    return (CUmodule)&module_object;
}

int vg_driver_version(void)
{
    return 13000;
}

CUresult vg_require_init(void)
{
    return CUDA_SUCCESS;
}

int vg_device_count(void)
{
    return stub_device_count;
}

CUresult vg_device_uuid(CUdevice dev, CUuuid *out)
{
    if (dev < 0 || dev >= stub_device_count) return CUDA_ERROR_INVALID_DEVICE;
    for (int i = 0; i < 16; i++) out->bytes[i] = (char)(0x10 * dev + i);
    return CUDA_SUCCESS;
}

CUresult vg_device_attribute(CUdevice dev, CUdevice_attribute attr, int *out)
{
    if (dev < 0 || dev >= stub_device_count) return CUDA_ERROR_INVALID_DEVICE;
    switch (attr) {
    case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID: *out = 0; return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: *out = 0x19 + dev; return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID: *out = 0; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult vg_primary_ctx_handle(CUdevice dev, CUcontext *out)
{
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    *out = stub_primary_ctx();
    return CUDA_SUCCESS;
}

CUcontext vg_current_ctx(void)
{
    return stub_current_ctx;
}

CUresult vg_module_load_fatbin_wrapper(CUmodule *mod, const void *wrapper)
{
    stub_last_wrapper = wrapper;
    memcpy(stub_last_wrapper_bytes, wrapper, sizeof stub_last_wrapper_bytes);
    *mod = stub_module();
    return CUDA_SUCCESS;
}

CUresult vg_unsupported(const char *name)
{
    (void)name;
    return CUDA_ERROR_NOT_SUPPORTED;
}

/* The id of a context is its handle's value here; NULL means the current context. */
CUresult cuCtxGetId(CUcontext ctx, unsigned long long *id)
{
    if (!ctx) ctx = stub_current_ctx;
    if (!ctx) return CUDA_ERROR_INVALID_CONTEXT;
    *id = (unsigned long long)(uintptr_t)ctx;
    return CUDA_SUCCESS;
}

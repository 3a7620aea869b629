/*
 * cuGetProcAddress and cuGetProcAddress_v2: how cudart (and anyone else asking by
 * name) finds driver entry points. The answers come from gen/procaddr_table.c, the
 * table tools/gen.py derives from the CUDA typedef headers: one entry per
 * (API name, version, per-thread) variant, naming the exported symbol that
 * implements it. Nothing here needs cuInit or a connection: cudart asks before both.
 *
 * Behaviour, as measured on the real driver (580.159.04) with tools/procaddr_probe.c:
 *  - the variant used is the one with the largest version <= cudaVersion; a negative
 *    cudaVersion means the newest; 0 finds nothing;
 *  - CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM (2): a name that has _ptds/_ptsz
 *    variants resolves among those only (nothing below the first one's version);
 *    other names resolve as with the default. DEFAULT (0) and LEGACY_STREAM (1): the
 *    plain variants. Any other flag bit: CUDA_ERROR_INVALID_VALUE, nothing written;
 *  - unknown name, or every variant newer than cudaVersion: cuGetProcAddress_v2 sets
 *    *pfn = NULL and the status (SYMBOL_NOT_FOUND / VERSION_NOT_SUFFICIENT) and
 *    returns CUDA_SUCCESS; the CUDA 11.3 cuGetProcAddress returns CUDA_ERROR_NOT_FOUND
 *    and leaves *pfn alone.
 * Deliberate differences: a NULL symbol or pfn gives CUDA_ERROR_INVALID_VALUE (the
 * driver crashes), and a cudaVersion above the driver's is not refused (the driver
 * says CUDA_ERROR_INVALID_VALUE; here the newest variant is returned, since the
 * version the guest reports is the server's and may not be known yet).
 */
#include "guest/cuda/guest.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "common/log.h"
#include "gen/procaddr_table.h"

/* Index of the first table entry for `symbol`, or VG_PROCADDR_TABLE_LEN. */
static size_t first_entry(const char *symbol)
{
    size_t lo = 0, hi = VG_PROCADDR_TABLE_LEN;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(vg_procaddr_table[mid].name, symbol) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < VG_PROCADDR_TABLE_LEN && strcmp(vg_procaddr_table[lo].name, symbol) == 0)
        return lo;
    return VG_PROCADDR_TABLE_LEN;
}

/* Returns 1 the first time it sees `symbol` (by hash), 0 afterwards or once its
 * 64 slots are full: debug logs name each odd request once, however often it comes. */
static int first_sighting(const char *symbol)
{
    static _Atomic uint64_t seen[64];
    uint64_t h = 1469598103934665603ull;

    for (const unsigned char *p = (const unsigned char *)symbol; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    h |= 1; /* 0 marks a free slot */
    for (size_t n = 0, i = h % 64; n < 64; n++, i = (i + 1) % 64) {
        uint64_t cur = atomic_load_explicit(&seen[i], memory_order_relaxed);
        if (cur == 0 && atomic_compare_exchange_strong(&seen[i], &cur, h))
            return 1;
        if (cur == h)
            return 0;
    }
    return 0;
}

/* The lookup both entry points share. Returns CUDA_ERROR_INVALID_VALUE (nothing
 * written), CUDA_SUCCESS with *pfn set, or CUDA_ERROR_NOT_FOUND with *status set
 * (if given) to SYMBOL_NOT_FOUND or VERSION_NOT_SUFFICIENT and *pfn untouched. */
static CUresult lookup(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                       CUdriverProcAddressQueryResult *status)
{
    const cuuint64_t known_flags = CU_GET_PROC_ADDRESS_LEGACY_STREAM | CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;

    if (symbol == NULL || pfn == NULL || (flags & ~known_flags) != 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (cudaVersion < 0)
        cudaVersion = INT_MAX;

    size_t first = first_entry(symbol);
    if (first == VG_PROCADDR_TABLE_LEN) {
        if (status)
            *status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
        if (vgpu_log_enabled(VGPU_LOG_DEBUG) && first_sighting(symbol))
            vgpu_log(VGPU_LOG_DEBUG, "cuGetProcAddress: unknown entry point %s (version %d)", symbol,
                     cudaVersion);
        return CUDA_ERROR_NOT_FOUND;
    }

    size_t end = first;
    int any_per_thread = 0;
    while (end < VG_PROCADDR_TABLE_LEN && strcmp(vg_procaddr_table[end].name, symbol) == 0) {
        any_per_thread |= vg_procaddr_table[end].per_thread;
        end++;
    }
    unsigned char want_per_thread =
        (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) && any_per_thread ? 1 : 0;

    const struct vg_procaddr_entry *best = NULL;
    for (size_t i = first; i < end; i++) {
        const struct vg_procaddr_entry *e = &vg_procaddr_table[i];
        if (e->per_thread == want_per_thread && e->version <= cudaVersion &&
            (best == NULL || e->version > best->version))
            best = e;
    }
    if (best == NULL) {
        if (status)
            *status = CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT;
        if (vgpu_log_enabled(VGPU_LOG_DEBUG) && first_sighting(symbol))
            vgpu_log(VGPU_LOG_DEBUG, "cuGetProcAddress: %s has no variant for version %d (flags %llu)",
                     symbol, cudaVersion, (unsigned long long)flags);
        return CUDA_ERROR_NOT_FOUND;
    }
    /* Function to object pointer: what this API (like dlsym) exists to do. */
    *pfn = (void *)best->fn;
    if (status)
        *status = CU_GET_PROC_ADDRESS_SUCCESS;
    return CUDA_SUCCESS;
}

CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                             CUdriverProcAddressQueryResult *symbolStatus)
{
    CUresult r = lookup(symbol, pfn, cudaVersion, flags, symbolStatus);
    if (r == CUDA_ERROR_NOT_FOUND) {
        *pfn = NULL; /* the driver reports "not found" through the status only */
        return CUDA_SUCCESS;
    }
    return r;
}

/* The CUDA 11.3 form, without the status out-parameter. */
CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags)
{
    return lookup(symbol, pfn, cudaVersion, flags, NULL);
}

/* JIT options on the wire: classification and names (see jit_opts.h). */
#include "common/jit_opts.h"

#include <cuda.h>

enum vgpu_jit_class vgpu_jit_class(int32_t opt)
{
    switch (opt) {
    case CU_JIT_MAX_REGISTERS:
    case CU_JIT_OPTIMIZATION_LEVEL:
    case CU_JIT_TARGET_FROM_CUCONTEXT:
    case CU_JIT_TARGET:
    case CU_JIT_FALLBACK_STRATEGY:
    case CU_JIT_GENERATE_DEBUG_INFO:
    case CU_JIT_LOG_VERBOSE:
    case CU_JIT_GENERATE_LINE_INFO:
    case CU_JIT_CACHE_MODE:
    case CU_JIT_POSITION_INDEPENDENT_CODE:
    case CU_JIT_MIN_CTA_PER_SM:
    case CU_JIT_MAX_THREADS_PER_BLOCK:
    case CU_JIT_OVERRIDE_DIRECTIVE_VALUES:
    case CU_JIT_SPLIT_COMPILE:
        return VGPU_JIT_INPUT;
    case CU_JIT_WALL_TIME: return VGPU_JIT_OUTPUT;
    case CU_JIT_THREADS_PER_BLOCK: return VGPU_JIT_INOUT;
    case CU_JIT_INFO_LOG_BUFFER: return VGPU_JIT_INFO_LOG;
    case CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES: return VGPU_JIT_INFO_LOG_SIZE;
    case CU_JIT_ERROR_LOG_BUFFER: return VGPU_JIT_ERROR_LOG;
    case CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES: return VGPU_JIT_ERROR_LOG_SIZE;
    /* Arrays of names or host addresses in guest memory, the counts that go with them, an
     * internal option, and the deprecated pre-12.0 LTO controls. */
    case CU_JIT_NEW_SM3X_OPT:
    case CU_JIT_FAST_COMPILE:
    case CU_JIT_GLOBAL_SYMBOL_NAMES:
    case CU_JIT_GLOBAL_SYMBOL_ADDRESSES:
    case CU_JIT_GLOBAL_SYMBOL_COUNT:
    case CU_JIT_LTO:
    case CU_JIT_FTZ:
    case CU_JIT_PREC_DIV:
    case CU_JIT_PREC_SQRT:
    case CU_JIT_FMA:
    case CU_JIT_REFERENCED_KERNEL_NAMES:
    case CU_JIT_REFERENCED_KERNEL_COUNT:
    case CU_JIT_REFERENCED_VARIABLE_NAMES:
    case CU_JIT_REFERENCED_VARIABLE_COUNT:
    case CU_JIT_OPTIMIZE_UNUSED_DEVICE_VARIABLES:
        return VGPU_JIT_REFUSED;
    default: return VGPU_JIT_UNKNOWN;
    }
}

bool vgpu_jit_writes_slot(int32_t opt)
{
    switch (vgpu_jit_class(opt)) {
    case VGPU_JIT_OUTPUT:
    case VGPU_JIT_INOUT:
    case VGPU_JIT_INFO_LOG_SIZE:
    case VGPU_JIT_ERROR_LOG_SIZE:
        return true;
    default:
        return false;
    }
}

const char *vgpu_jit_option_name(int32_t opt)
{
    static const char *const names[] = {
        "CU_JIT_MAX_REGISTERS",
        "CU_JIT_THREADS_PER_BLOCK",
        "CU_JIT_WALL_TIME",
        "CU_JIT_INFO_LOG_BUFFER",
        "CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES",
        "CU_JIT_ERROR_LOG_BUFFER",
        "CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES",
        "CU_JIT_OPTIMIZATION_LEVEL",
        "CU_JIT_TARGET_FROM_CUCONTEXT",
        "CU_JIT_TARGET",
        "CU_JIT_FALLBACK_STRATEGY",
        "CU_JIT_GENERATE_DEBUG_INFO",
        "CU_JIT_LOG_VERBOSE",
        "CU_JIT_GENERATE_LINE_INFO",
        "CU_JIT_CACHE_MODE",
        "CU_JIT_NEW_SM3X_OPT",
        "CU_JIT_FAST_COMPILE",
        "CU_JIT_GLOBAL_SYMBOL_NAMES",
        "CU_JIT_GLOBAL_SYMBOL_ADDRESSES",
        "CU_JIT_GLOBAL_SYMBOL_COUNT",
        "CU_JIT_LTO",
        "CU_JIT_FTZ",
        "CU_JIT_PREC_DIV",
        "CU_JIT_PREC_SQRT",
        "CU_JIT_FMA",
        "CU_JIT_REFERENCED_KERNEL_NAMES",
        "CU_JIT_REFERENCED_KERNEL_COUNT",
        "CU_JIT_REFERENCED_VARIABLE_NAMES",
        "CU_JIT_REFERENCED_VARIABLE_COUNT",
        "CU_JIT_OPTIMIZE_UNUSED_DEVICE_VARIABLES",
        "CU_JIT_POSITION_INDEPENDENT_CODE",
        "CU_JIT_MIN_CTA_PER_SM",
        "CU_JIT_MAX_THREADS_PER_BLOCK",
        "CU_JIT_OVERRIDE_DIRECTIVE_VALUES",
        "CU_JIT_SPLIT_COMPILE",
    };
    _Static_assert(sizeof names / sizeof names[0] == CU_JIT_NUM_OPTIONS, "CUjit_option list changed");
    return opt >= 0 && (uint32_t)opt < sizeof names / sizeof names[0] ? names[opt] : "unknown JIT option";
}

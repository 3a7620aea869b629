/*
 * The cuda backend: fills the driver table from the real NVIDIA libcuda.so.1.
 * vgpu's own guest library is also called libcuda.so.1, so a library that carries
 * vgpu's marker symbol is refused: the daemon must never forward to itself.
 */
#include <dlfcn.h>
#include <stdio.h>

#include "server/backend.h"

struct vgpu_driver drv;

int backend_open_cuda(const char *path, char *err, size_t errlen)
{
    const char *name = path ? path : "libcuda.so.1";
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "cannot load %s: %s", name, dlerror());
        return -1;
    }
    if (dlsym(h, "vgpu_guest_library_marker")) {
        snprintf(err, errlen, "%s is vgpu's guest library, not the NVIDIA driver", name);
        dlclose(h);
        return -1;
    }
#define VGPU_LOAD_SYM(sym, pfn)                                                            \
    drv.sym = (pfn)dlsym(h, #sym);                                                         \
    if (!drv.sym) {                                                                        \
        snprintf(err, errlen, "%s lacks %s (driver too old for vgpu; need CUDA 12.8+)", name, #sym); \
        dlclose(h);                                                                        \
        return -1;                                                                         \
    }
    VGPU_BACKEND_FUNCS(VGPU_LOAD_SYM)
#undef VGPU_LOAD_SYM
    return 0;
}

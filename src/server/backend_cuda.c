/*
 * The cuda backend: fills the driver table from the real NVIDIA libcuda.so.1.
 * vgpu's own guest library is also called libcuda.so.1, so a library that carries
 * vgpu's marker symbol is refused: the daemon must never forward to itself.
 */
#include <dlfcn.h>
#include <stdio.h>

#include "server/backend.h"

struct vgpu_driver drv;

/* Where distributions and container runtimes put the NVIDIA driver, tried when the
 * search path yields vgpu's own library (e.g. vgpud started under `vgpu run`). */
static const char *const driver_paths[] = {
    "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib64/libcuda.so.1",       "/usr/lib/libcuda.so.1",
    "/usr/local/nvidia/lib64/libcuda.so.1",   "/usr/lib/aarch64-linux-gnu/libcuda.so.1", "/usr/lib/wsl/lib/libcuda.so.1",
};

static void *open_driver(const char *name, char *err, size_t errlen)
{
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "cannot load %s: %s", name, dlerror());
        return NULL;
    }
    if (dlsym(h, "vgpu_guest_library_marker")) {
        snprintf(err, errlen, "%s is vgpu's guest library, not the NVIDIA driver", name);
        dlclose(h);
        return NULL;
    }
    return h;
}

int backend_open_cuda(const char *path, char *err, size_t errlen)
{
    const char *name = path ? path : "libcuda.so.1";
    void *h = open_driver(name, err, errlen);
    for (size_t i = 0; !h && !path && i < sizeof driver_paths / sizeof driver_paths[0]; i++) {
        char e2[256];
        if ((h = open_driver(driver_paths[i], e2, sizeof e2)) != NULL) name = driver_paths[i];
    }
    if (!h) return -1;
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

/*
 * vgpu emu backend: the ABI of CPU kernel plugins.
 *
 * With `vgpud --backend emu` there is no GPU: device memory lives in the daemon's
 * RAM and a kernel runs as a C function from a shared object named in
 * VGPU_EMU_KERNELS (colon-separated paths). For a kernel whose mangled name is NAME
 * the plugin exports
 *
 *     void vgpu_emu_NAME(const struct vgpu_emu_launch *launch, void *const *params);
 *
 * params[i] points to the bytes of argument i (layout from the module's .nv.info).
 * Device pointers inside arguments are plain host pointers in the emu backend, so the
 * plugin dereferences them directly. The function runs the whole grid: it loops over
 * grid_dim x block_dim itself. Launching a kernel with no plugin fails with
 * CUDA_ERROR_NOT_SUPPORTED and the daemon logs the kernel's name.
 */
#ifndef VGPU_EMU_KERNEL_H
#define VGPU_EMU_KERNEL_H

#ifdef __cplusplus
extern "C" {
#endif

struct vgpu_emu_launch {
    unsigned grid_dim[3];
    unsigned block_dim[3];
    unsigned shared_mem_bytes;
    /* A kernel that would fault on a GPU stores one of VGPU_EMU_FAULT_* here (and
     * returns): like a device fault, it leaves the context unusable, every later call
     * in it failing with the matching error until the context is destroyed or reset. */
    int *fault;
};

#define VGPU_EMU_FAULT_ILLEGAL_ADDRESS 1 /* CUDA_ERROR_ILLEGAL_ADDRESS */
#define VGPU_EMU_FAULT_TRAP 2            /* CUDA_ERROR_LAUNCH_FAILED (a __trap()) */

typedef void (*vgpu_emu_kernel_fn)(const struct vgpu_emu_launch *launch, void *const *params);

#define VGPU_EMU_KERNEL_PREFIX "vgpu_emu_"

#ifdef __cplusplus
}
#endif

#endif

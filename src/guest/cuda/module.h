/*
 * Guest side of the module and launch families: what launch.c needs from module.c.
 * module.c keeps the guest's registry of module, library, kernel and function
 * handles with the answers about them that cannot change (parameter layouts, names,
 * immutable attributes); launch.c packs kernel arguments with the layouts.
 */
#ifndef VGPU_GUEST_MODULE_H
#define VGPU_GUEST_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "guest/cuda/guest.h"

/* How the argument block of a LAUNCH travels (u32 `args` field of the LAUNCH op;
 * server/ops_launch.c has the same values). */
#define VGPU_LAUNCH_ARGS_NONE 0u   /* kernelParams and extra both NULL */
#define VGPU_LAUNCH_ARGS_PACKED 1u /* kernelParams packed at the parameter layout's offsets */
#define VGPU_LAUNCH_ARGS_EXTRA 2u  /* the CU_LAUNCH_PARAM_BUFFER_POINTER buffer, as given */

/* Most launch attributes one LAUNCH carries. */
#define VGPU_MAX_LAUNCH_ATTRS 32u

/* Pack kernelParams for f into one argument block: each argument's bytes at its offset
 * in f's parameter layout (asked from the daemon on f's first use, then cached), gaps
 * zeroed. The block goes to `stackbuf` when it fits in `stackcap` bytes, otherwise to
 * a new allocation; *out points at it (free it when *out != stackbuf), *len is its
 * size. Returns CUDA_ERROR_INVALID_VALUE for a NULL argument pointer, or the daemon's
 * answer for a handle it does not know. */
CUresult vg_func_pack_params(CUfunction f, void **kernelParams, uint8_t *stackbuf, size_t stackcap, uint8_t **out,
                             size_t *len);

/* Read a file of the guest (a module or a link input) into a new buffer with a NUL
 * appended: *len is the file's size without it. CUDA_ERROR_FILE_NOT_FOUND when it cannot
 * be read, CUDA_ERROR_INVALID_VALUE when it reaches VGPU_MAX_MODULE_IMAGE (logged). */
CUresult vg_read_file(const char *path, uint8_t **out, size_t *len);

#endif

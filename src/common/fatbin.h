/* CUDA module images (fatbin wrapper, fatbin, ELF cubin, PTX text): how long one is, and what
 * kernels (with their parameter layouts) and globals it defines. The guest uses the size functions on
 * application memory; the server (emu backend) parses images received from an untrusted peer. */
#ifndef VGPU_COMMON_FATBIN_H
#define VGPU_COMMON_FATBIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VGPU_FATBIN_WRAPPER_MAGIC 0x466243B1u /* __fatBinC_Wrapper_t, what cudart registers */
#define VGPU_FATBIN_MAGIC 0xBA55ED50u
#define VGPU_FATBIN_FLAG_LZ4 0x2000u  /* fatbin entry flag: payload is a raw LZ4 block */
#define VGPU_FATBIN_FLAG_ZSTD 0x8000u /* fatbin entry flag: payload is a zstd frame */
#define VGPU_FATBIN_KIND_PTX 1u
#define VGPU_FATBIN_KIND_ELF 2u
/* Fatbin header version of the containers the emu backend's linker writes (cuLinkComplete): each entry is
 * one input of the link and a load uses all of them, merging their kernels and globals, where nvcc's
 * containers (version 1) hold alternatives of one module for different architectures. */
#define VGPU_FATBIN_VERSION_LINKED 0x4C56u /* "VL" */

/* Largest image (and largest decompressed fatbin entry) we accept: a sanity bound, far above real
 * module sizes, so a corrupt header can neither make the guest read gigabytes nor the server allocate them. */
#define VGPU_IMAGE_MAX_BYTES ((size_t)1 << 30)
#define VGPU_IMAGE_MAX_DECOMPRESSED ((size_t)256 << 20)

enum vgpu_image_kind {
    VGPU_IMAGE_UNKNOWN = 0,
    VGPU_IMAGE_WRAPPER, /* __fatBinC_Wrapper_t: holds a pointer to a fatbin */
    VGPU_IMAGE_FATBIN,
    VGPU_IMAGE_ELF,
    VGPU_IMAGE_PTX,
};

/* Kind of a module image, judged from its first bytes (read one at a time, so a short PTX string is never
 * over-read). PTX is recognised by its first non-blank character being '.' or '/'. */
enum vgpu_image_kind vgpu_image_kind(const void *image);

/* Byte length of a module image as given to cuModuleLoadData/cuLibraryLoadData (which take no length):
 * a fatbin wrapper (the size of the fatbin it points to: ship vgpu_image_unwrap(image), not the wrapper),
 * a fatbin (header size + payload size), an ELF cubin (max of the ELF header, section and program header
 * tables and the end of every section/segment), or NUL-terminated PTX text (strlen+1).
 * Used in the guest on application memory, so it only reads what the headers say. 0 on success, -1 if
 * unknown or larger than VGPU_IMAGE_MAX_BYTES. */
int vgpu_image_size(const void *image, size_t *size_out);

/* Server side of vgpu_image_size, for len bytes received from an untrusted peer: reads only inside them,
 * and succeeds only when what the driver will read lies inside them too: a fatbin's header and entries
 * (and every uncompressed ELF entry's tables and sections, inside its entry), an ELF's tables, sections and
 * segments. *size_out is then the image's own size (<= len; PTX: up to its first NUL plus 1, which is
 * len + 1 when no NUL lies within len: the caller supplies the terminator). -1 for anything else,
 * a fatbin wrapper included (it holds a pointer). */
int vgpu_image_size_bounded(const void *image, size_t len, size_t *size_out);

/* If image is a fatbin wrapper, return the fatbin pointer it carries (for both wrapper versions 1 and 2,
 * the `data` field); else image. */
const void *vgpu_image_unwrap(const void *image);

struct vgpu_param_layout {
    uint32_t offset, size;
};

struct vgpu_kernel_info {
    char *name; /* mangled name */
    uint32_t num_params;
    struct vgpu_param_layout *params; /* sorted by ordinal; NULL when num_params == 0 */
    uint32_t param_bytes;             /* offset+size of the last parameter */
    /* What cuFuncGetAttribute reports (checked against the driver on H100 for ~20,000 kernels of
     * cuBLAS/cuBLASLt/cuSPARSE); 0 when unknown, which is always the case for PTX except max_threads.
     * num_regs: EIATTR_REGCOUNT; shared_bytes: static __shared__, the size of .nv.shared.<name> less the
     * 1 KiB reserved window sm_90+ cubins count in it; const_bytes: size of the module's .nv.constant3;
     * local_bytes: EIATTR_FRAME_SIZE. max_threads: launch bounds (.maxntid/.reqntid,
     * EIATTR_MAX_THREADS/REQNTID) and the register limit (4 partitions of 16K registers per SM,
     * allocated per warp in units of 256), at most 1024. */
    uint32_t num_regs, shared_bytes, const_bytes, local_bytes, max_threads;
};

struct vgpu_global_info {
    char *name;
    uint64_t size;
    uint8_t *init;  /* size bytes of initial contents; NULL: zero-initialised */
    bool constant;  /* __constant__ (constant bank) rather than __device__ (global memory) */
};

struct vgpu_module_info {
    uint32_t sm; /* arch of the chosen image, e.g. 90; 0 for PTX */
    bool from_ptx;
    /* A real device of want_sm could load this image: the fatbin has an ELF entry of the same major
     * version and an equal or lower minor (sm_86 runs on sm_89, not on sm_90), or a PTX entry for an arch
     * <= want_sm; always true for PTX text and for want_sm 0. When false, the driver fails the load with
     * CUDA_ERROR_NO_BINARY_FOR_GPU, although the image parsed (from an older major's ELF). */
    bool loadable;
    uint32_t num_kernels;
    struct vgpu_kernel_info *kernels; /* sorted by name */
    uint32_t num_globals;
    struct vgpu_global_info *globals; /* sorted by name */
};

/* Parse a module image whose exact size is known. The bytes may come from an untrusted peer: every offset,
 * size and count is bounds-checked, and allocations stay proportional to the input (decompressed entries
 * are capped at VGPU_IMAGE_MAX_DECOMPRESSED).
 * Accepts a fatbin (the ELF entry with the highest sm <= want_sm is chosen; failing that the PTX entry
 * with the highest arch <= want_sm, failing that the PTX entry with the highest arch; want_sm 0 means no
 * limit; a linked container's entries are all used, and a kernel or global defined by two of them is
 * refused), an ELF cubin, or PTX text (NUL-terminated or not). A fatbin wrapper is refused: it holds a
 * pointer, which means nothing in another process. LZ4 entries are decoded here; zstd entries through
 * libzstd.so.1, loaded at run time (an error says so if it is missing).
 * 0 on success (*out filled, release with vgpu_module_info_free); -1 with a message in err (if err is
 * not NULL) on malformed or unsupported input, *out then zeroed. */
int vgpu_module_parse(const void *image, size_t size, uint32_t want_sm, struct vgpu_module_info *out,
                      char *err, size_t errlen);

void vgpu_module_info_free(struct vgpu_module_info *info);

/* The fatbin entry vgpu_module_parse would choose for want_sm, decompressed, in a new malloc'd buffer
 * (*out, *outlen; free() it). *kind gets VGPU_FATBIN_KIND_ELF or _PTX, *arch its sm (either may be NULL).
 * PTX comes back as stored, usually NUL-terminated. 0 on success; -1 with a message in err. */
int vgpu_fatbin_select(const void *fatbin, size_t size, uint32_t want_sm, uint8_t **out, size_t *outlen,
                       uint32_t *kind, uint32_t *arch, char *err, size_t errlen);

/* One piece of device code: an ELF cubin (arch = its sm) or PTX text (arch 0), plain. */
struct vgpu_image_input {
    uint32_t kind; /* VGPU_FATBIN_KIND_ELF or VGPU_FATBIN_KIND_PTX */
    uint32_t arch;
    const void *data;
    size_t len;
};

/* The device code a load of this image (size bytes) would use, one piece at a time: for an nvcc fatbin the
 * entry vgpu_module_parse chooses for want_sm, for a linked container (VGPU_FATBIN_VERSION_LINKED) every
 * entry, for an ELF cubin or PTX text the image itself. fn gets each piece (decompressed; valid during the
 * call) and returns 0 to go on. 0 on success; -1 when the image does not decode (message in err) or fn
 * returned non-zero (err untouched). */
int vgpu_image_inputs(const void *image, size_t size, uint32_t want_sm,
                      int (*fn)(const struct vgpu_image_input *in, void *arg), void *arg, char *err, size_t errlen);

/* Write a linked container (VGPU_FATBIN_VERSION_LINKED) with one uncompressed entry per piece, in order,
 * into a new malloc'd buffer (*out, *outlen; free() it). 0, or -1 when out of memory or larger than
 * VGPU_IMAGE_MAX_BYTES. */
int vgpu_fatbin_write_linked(const struct vgpu_image_input *in, size_t n, uint8_t **out, size_t *outlen);

/* Lookups by exact (mangled) name; NULL when absent. */
const struct vgpu_kernel_info *vgpu_module_find_kernel(const struct vgpu_module_info *m, const char *name);
const struct vgpu_global_info *vgpu_module_find_global(const struct vgpu_module_info *m, const char *name);

#ifdef __cplusplus
}
#endif

#endif

/*
 * vgpu end-to-end test: JIT options and JIT linking through the driver API, in plain C.
 *
 *   - cuModuleLoadDataEx of PTX (drv_kernels.cu) with info and error log buffers, their
 *     sizes, a register limit and the wall time: outputs sane, the kernel runs and obeys the
 *     limit; a tiny error log buffer is never overrun;
 *   - broken PTX: the load fails and the error log says why (cuModuleLoadDataEx,
 *     cuLibraryLoadFromFile); cuLibraryLoadData with JIT options;
 *   - cuLink*: relocatable inputs from link_kernels_a.cu (a kernel calling link_mix) and
 *     link_kernels_b.cu (link_mix), built by nvcc -rdc=true, linked as PTX + PTX, PTX + cubin
 *     through cuLinkAddFile, and cubin + fatbin; the linked image is loaded, the kernel
 *     launched and its results checked; the link's logs and wall time come back; a broken
 *     input fails with an error log; bad handles are refused; cuLinkDestroy frees.
 *
 * Meaningful natively on a GPU (tests/gpu/run compares its check lines with a run through
 * vgpu, where the daemon's driver compiles and links) and on the emu backend (CI), whose
 * loader and linker honour the log buffers with messages of their own and whose plugin
 * (plugins/drv_kernels.c) runs l_apply. A few checks are stricter through vgpu (the guest
 * library exports vgpu_guest_library_marker): a JIT option whose value points into this
 * process is refused, a destroyed link state is refused.
 *
 * Every check prints one line ("PASS name" / "FAIL name: why"), then a summary; the exit
 * status is 0 only if every check passed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <cuda.h>

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "e2e_types.h"

extern const unsigned char e2e_drv_ptx[], e2e_link_a_ptx[], e2e_link_b_ptx[], e2e_link_a_cubin[],
    e2e_link_b_cubin[], e2e_link_b_fatbin[];
extern const unsigned long e2e_drv_ptx_size, e2e_link_a_ptx_size, e2e_link_b_ptx_size, e2e_link_a_cubin_size,
    e2e_link_b_cubin_size, e2e_link_b_fatbin_size;

#define LOG_SIZE 8192
#define N 4099

/* PTX that no assembler accepts: an unknown instruction and no closing brace. */
static const char broken_ptx[] = ".version 8.0\n.target sm_90\n.address_size 64\n\n"
                                 ".visible .entry broken_k(\n\t.param .u64 broken_k_param_0\n)\n{\n"
                                 "\tthis_is_not_an_instruction %r1;\n\tret;\n";

static int g_vgpu; /* running on vgpu's guest library */
static char g_tmpdir[256];

static const char *ename(CUresult r)
{
    const char *s = NULL;
    if (cuGetErrorName(r, &s) != CUDA_SUCCESS || !s)
        return "(unknown CUresult)";
    return s;
}

#define TRY(name, call)                                                   \
    do {                                                                  \
        CUresult r_ = (call);                                             \
        if (r_ != CUDA_SUCCESS) {                                         \
            check(0, name, "%s -> %s (%d)", #call, ename(r_), (int)r_);   \
            return;                                                       \
        }                                                                 \
    } while (0)

static void expect_error(const char *name, CUresult got, CUresult want)
{
    int ok = got != CUDA_SUCCESS && (want == CUDA_SUCCESS || got == want);
    check(ok, name, "got %s (%d), want %s", ename(got), (int)got, want == CUDA_SUCCESS ? "an error" : ename(want));
}

/* A NUL-terminated copy of an embedded PTX text (embedding keeps the bytes only). */
static char *ptx_string(const unsigned char *p, unsigned long n)
{
    char *s = malloc(n + 1);
    if (!s)
        exit(1);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* Write bytes to a file of the temporary directory; its path in a static buffer per slot. */
static const char *write_temp(const char *name, const void *data, size_t n)
{
    static char paths[4][512];
    static int next;
    char *path = paths[next++ & 3];
    snprintf(path, 512, "%s/%s", g_tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        printf("FAIL cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
    return path;
}

/* A log for an `info` line: at most 200 bytes, line breaks as " | ". */
static const char *oneline(const char *log)
{
    static char out[4][256];
    static int next;
    char *o = out[next++ & 3];
    size_t j = 0;
    for (size_t i = 0; log[i] && j < 200; i++) {
        if (log[i] == '\n') {
            if (log[i + 1] && j + 3 < 200) {
                memcpy(o + j, " | ", 3);
                j += 3;
            }
        } else {
            o[j++] = log[i];
        }
    }
    o[j] = '\0';
    return o;
}

static float wall_ms(void *slot)
{
    float f;
    memcpy(&f, &slot, sizeof f); /* the driver stores a float in the slot itself */
    return f;
}

/* A log buffer the driver wrote: NUL-terminated inside it, as long as the size it reported
 * (which counts at most the whole buffer). */
static int log_sane(const char *buf, size_t cap, void *size_out)
{
    size_t reported = (size_t)(uintptr_t)size_out;
    return memchr(buf, '\0', cap) != NULL && reported <= cap;
}

/* ------------------------------------------------------------------------------ */

static unsigned g_init[N];
static CUdeviceptr g_buf;

/* Fill the buffer, launch l_apply from mod with key k, read back and compare with the host. */
static void run_l_apply(const char *name, CUmodule mod, unsigned key)
{
    CUfunction f;
    TRY(name, cuModuleGetFunction(&f, mod, "l_apply"));
    TRY(name, cuMemcpyHtoD(g_buf, g_init, sizeof g_init));
    CUdeviceptr p = g_buf;
    int n = N;
    void *args[] = {&p, &key, &n};
    TRY(name, cuLaunchKernel(f, (N + 127) / 128, 1, 1, 128, 1, 1, 0, NULL, args, NULL));
    static unsigned got[N];
    TRY(name, cuMemcpyDtoH(got, g_buf, sizeof got));
    int bad = -1;
    for (int i = 0; i < N && bad < 0; i++)
        if (got[i] != e2e_link_mix(g_init[i], key + (unsigned)i))
            bad = i;
    check(bad < 0, name, "element %d: %u, want %u", bad, bad >= 0 ? got[bad] : 0,
          bad >= 0 ? e2e_link_mix(g_init[bad], key + (unsigned)bad) : 0);
}

/* cuModuleLoadDataEx of PTX with logs, a register limit and the wall time. */
static void test_jit_load(void)
{
    char *ptx = ptx_string(e2e_drv_ptx, e2e_drv_ptx_size);
    static char info[LOG_SIZE], error[LOG_SIZE];
    memset(info, 'x', sizeof info);
    memset(error, 'x', sizeof error);
    CUjit_option o[] = {CU_JIT_INFO_LOG_BUFFER,  CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER,
                        CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_MAX_REGISTERS, CU_JIT_WALL_TIME,
                        CU_JIT_OPTIMIZATION_LEVEL, CU_JIT_GENERATE_LINE_INFO};
    void *v[] = {info, (void *)(uintptr_t)LOG_SIZE, error, (void *)(uintptr_t)LOG_SIZE, (void *)(uintptr_t)32,
                 (void *)(uintptr_t)0x7fc00000u /* overwritten */, (void *)(uintptr_t)3, (void *)(uintptr_t)1};
    CUmodule mod = NULL;
    TRY("jit.load_ptx", cuModuleLoadDataEx(&mod, ptx, sizeof o / sizeof o[0], o, v));
    check(mod != NULL, "jit.load_ptx", NULL);
    check(log_sane(info, sizeof info, v[1]), "jit.info_log_sane", "size out %zu", (size_t)(uintptr_t)v[1]);
    check(log_sane(error, sizeof error, v[3]) && error[0] == '\0', "jit.error_log_empty", "\"%.80s\"", error);
    float ms = wall_ms(v[5]);
    check(isfinite(ms) && ms >= 0.0f && ms < 600000.0f, "jit.wall_time", "%g ms", (double)ms);
    printf("info jit load: %g ms, info log \"%s\"\n", (double)ms, oneline(info));

    CUfunction f;
    TRY("jit.ptx_kernel", cuModuleGetFunction(&f, mod, "d_fill"));
    int regs = -1;
    TRY("jit.max_registers", cuFuncGetAttribute(&regs, CU_FUNC_ATTRIBUTE_NUM_REGS, f));
    check(regs >= 0 && regs <= 32, "jit.max_registers", "%d registers", regs);
    unsigned v0 = 0x1000u;
    CUdeviceptr p = g_buf;
    int n = N;
    void *args[] = {&p, &v0, &n};
    TRY("jit.ptx_kernel", cuLaunchKernel(f, 8, 1, 1, 128, 1, 1, 0, NULL, args, NULL));
    static unsigned got[N];
    TRY("jit.ptx_kernel", cuMemcpyDtoH(got, g_buf, sizeof got));
    int bad = -1;
    for (int i = 0; i < N && bad < 0; i++)
        if (got[i] != v0 + (unsigned)i)
            bad = i;
    check(bad < 0, "jit.ptx_kernel", "element %d", bad);
    TRY("jit.unload", cuModuleUnload(mod));

    /* no options at all, and options without values to write */
    TRY("jit.load_no_options", cuModuleLoadDataEx(&mod, ptx, 0, NULL, NULL));
    TRY("jit.load_no_options", cuModuleUnload(mod));
    free(ptx);
}

/* Broken PTX: the load fails and the error log says why, also into a tiny buffer. */
static void test_jit_errors(void)
{
    static char info[LOG_SIZE], error[LOG_SIZE];
    memset(error, 'x', sizeof error);
    CUjit_option o[] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER,
                        CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *v[] = {info, (void *)(uintptr_t)LOG_SIZE, error, (void *)(uintptr_t)LOG_SIZE};
    CUmodule mod = NULL;
    expect_error("jit.broken_ptx_fails", cuModuleLoadDataEx(&mod, broken_ptx, 4, o, v), CUDA_SUCCESS);
    check(error[0] != '\0' && log_sane(error, sizeof error, v[3]), "jit.broken_ptx_error_log", "size out %zu",
          (size_t)(uintptr_t)v[3]);
    check((size_t)(uintptr_t)v[3] > 0, "jit.broken_ptx_error_size", "%zu", (size_t)(uintptr_t)v[3]);
    printf("info broken PTX error log: \"%s\"\n", oneline(error));

    char tiny[8]; /* the driver is told 6 bytes: the last two must stay untouched */
    memset(tiny, 'x', sizeof tiny);
    CUjit_option o2[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *v2[] = {tiny, (void *)(uintptr_t)(sizeof tiny - 2)};
    expect_error("jit.broken_ptx_tiny_log_fails", cuModuleLoadDataEx(&mod, broken_ptx, 2, o2, v2), CUDA_SUCCESS);
    check(memchr(tiny, '\0', sizeof tiny - 2) != NULL && tiny[6] == 'x' && tiny[7] == 'x',
          "jit.broken_ptx_tiny_log", "log overran its 6 bytes");

    /* the file form, with the logs */
    const char *path = write_temp("broken.ptx", broken_ptx, sizeof broken_ptx - 1);
    memset(error, 'x', sizeof error);
    v[1] = (void *)(uintptr_t)LOG_SIZE;
    v[3] = (void *)(uintptr_t)LOG_SIZE;
    CUlibrary lib = NULL;
    expect_error("jit.library_file_broken", cuLibraryLoadFromFile(&lib, path, o, v, 4, NULL, NULL, 0), CUDA_SUCCESS);
    check(error[0] != '\0' && log_sane(error, sizeof error, v[3]), "jit.library_file_error_log", NULL);

    /* a good library with JIT options */
    char *ptx = ptx_string(e2e_drv_ptx, e2e_drv_ptx_size);
    memset(error, 'x', sizeof error);
    v[1] = (void *)(uintptr_t)LOG_SIZE;
    v[3] = (void *)(uintptr_t)LOG_SIZE;
    TRY("jit.library_load", cuLibraryLoadData(&lib, ptx, o, v, 4, NULL, NULL, 0));
    check(error[0] == '\0' && log_sane(info, sizeof info, v[1]), "jit.library_load_logs", NULL);
    CUkernel k;
    TRY("jit.library_kernel", cuLibraryGetKernel(&k, lib, "d_fill"));
    check(k != NULL, "jit.library_kernel", NULL);
    TRY("jit.library_unload", cuLibraryUnload(lib));
    free(ptx);

    /* options the driver does not know */
    CUjit_option bogus[] = {(CUjit_option)9999};
    void *bv[] = {NULL};
    expect_error("jit.unknown_option", cuModuleLoadDataEx(&mod, broken_ptx, 1, bogus, bv), CUDA_SUCCESS);

    /* a value pointing into this process: vgpu refuses it, the driver may take it */
    ptx = ptx_string(e2e_drv_ptx, e2e_drv_ptx_size);
    const char *names[] = {"no_such_symbol"};
    void *addrs[] = {NULL};
    CUjit_option o3[] = {CU_JIT_GLOBAL_SYMBOL_NAMES, CU_JIT_GLOBAL_SYMBOL_ADDRESSES, CU_JIT_GLOBAL_SYMBOL_COUNT};
    void *v3[] = {names, addrs, (void *)(uintptr_t)0};
    CUresult rc = cuModuleLoadDataEx(&mod, ptx, 3, o3, v3);
    if (rc == CUDA_SUCCESS)
        cuModuleUnload(mod);
    check(g_vgpu ? rc == CUDA_ERROR_NOT_SUPPORTED : 1, "jit.pointer_option_not_silently_ignored", "%s", ename(rc));
    free(ptx);
}

/* One link with logs: inputs added by add(), completed, loaded, launched. */
static void link_and_run(const char *name, unsigned key, CUresult (*add)(CUlinkState s), int destroy_before_run)
{
    char label[128];
    static char info[LOG_SIZE], error[LOG_SIZE];
    memset(info, 'x', sizeof info);
    memset(error, 'x', sizeof error);
    CUjit_option o[] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER,
                        CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_WALL_TIME, CU_JIT_LOG_VERBOSE};
    void *v[] = {info, (void *)(uintptr_t)LOG_SIZE, error, (void *)(uintptr_t)LOG_SIZE, NULL, (void *)(uintptr_t)1};
    CUlinkState ls = NULL;
    snprintf(label, sizeof label, "%s.create", name);
    TRY(label, cuLinkCreate(6, o, v, &ls));
    check(ls != NULL, label, NULL);
    snprintf(label, sizeof label, "%s.add", name);
    CUresult rc = add(ls);
    check(rc == CUDA_SUCCESS, label, "%s; error log \"%s\"", ename(rc), oneline(error));
    if (rc != CUDA_SUCCESS) {
        cuLinkDestroy(ls);
        return;
    }
    void *cubin = NULL;
    size_t size = 0;
    snprintf(label, sizeof label, "%s.complete", name);
    rc = cuLinkComplete(ls, &cubin, &size);
    check(rc == CUDA_SUCCESS && cubin && size > 0, label, "%s, %zu bytes; error log \"%s\"", ename(rc), size,
          oneline(error));
    if (rc != CUDA_SUCCESS) {
        cuLinkDestroy(ls);
        return;
    }
    snprintf(label, sizeof label, "%s.logs", name);
    check(log_sane(info, sizeof info, v[1]) && log_sane(error, sizeof error, v[3]) && error[0] == '\0', label,
          "error log \"%s\"", oneline(error));
    float ms = wall_ms(v[4]);
    snprintf(label, sizeof label, "%s.wall_time", name);
    check(isfinite(ms) && ms >= 0.0f && ms < 600000.0f, label, "%g ms", (double)ms);
    printf("info %s: %zu bytes in %g ms, info log \"%s\"\n", name, size, (double)ms, oneline(info));

    CUmodule mod = NULL;
    snprintf(label, sizeof label, "%s.load", name);
    if (destroy_before_run) {
        /* the module keeps what it loaded; the image itself dies with the link */
        void *copy = malloc(size);
        if (!copy)
            exit(1);
        memcpy(copy, cubin, size);
        TRY(label, cuLinkDestroy(ls));
        ls = NULL;
        rc = cuModuleLoadData(&mod, copy);
        free(copy);
    } else {
        rc = cuModuleLoadData(&mod, cubin);
    }
    check(rc == CUDA_SUCCESS, label, "%s", ename(rc));
    if (rc == CUDA_SUCCESS) {
        snprintf(label, sizeof label, "%s.run", name);
        run_l_apply(label, mod, key);
        cuModuleUnload(mod);
    }
    if (ls) {
        snprintf(label, sizeof label, "%s.destroy", name);
        TRY(label, cuLinkDestroy(ls));
        check(1, label, NULL);
    }
}

static CUresult add_ptx_ptx(CUlinkState s)
{
    char *a = ptx_string(e2e_link_a_ptx, e2e_link_a_ptx_size), *b = ptx_string(e2e_link_b_ptx, e2e_link_b_ptx_size);
    CUresult rc = cuLinkAddData(s, CU_JIT_INPUT_PTX, a, strlen(a) + 1, "link_kernels_a.ptx", 0, NULL, NULL);
    if (rc == CUDA_SUCCESS)
        rc = cuLinkAddData(s, CU_JIT_INPUT_PTX, b, strlen(b) + 1, "link_kernels_b.ptx", 0, NULL, NULL);
    free(a);
    free(b);
    return rc;
}

/* PTX with a compiler option of its own, and the other input from a file. */
static CUresult add_ptx_cubin_file(CUlinkState s)
{
    char *a = ptx_string(e2e_link_a_ptx, e2e_link_a_ptx_size);
    CUjit_option o[] = {CU_JIT_MAX_REGISTERS, CU_JIT_OPTIMIZATION_LEVEL};
    void *v[] = {(void *)(uintptr_t)64, (void *)(uintptr_t)4};
    CUresult rc = cuLinkAddData(s, CU_JIT_INPUT_PTX, a, strlen(a) + 1, NULL, 2, o, v);
    free(a);
    if (rc != CUDA_SUCCESS)
        return rc;
    const char *path = write_temp("link_kernels_b.cubin", e2e_link_b_cubin, e2e_link_b_cubin_size);
    return cuLinkAddFile(s, CU_JIT_INPUT_CUBIN, path, 0, NULL, NULL);
}

static CUresult add_cubin_fatbin(CUlinkState s)
{
    CUresult rc = cuLinkAddData(s, CU_JIT_INPUT_CUBIN, (void *)e2e_link_a_cubin, e2e_link_a_cubin_size,
                                "link_kernels_a.cubin", 0, NULL, NULL);
    if (rc == CUDA_SUCCESS)
        rc = cuLinkAddData(s, CU_JIT_INPUT_FATBINARY, (void *)e2e_link_b_fatbin, e2e_link_b_fatbin_size,
                           "link_kernels_b.fatbin", 0, NULL, NULL);
    return rc;
}

/* A PTX file through cuLinkAddFile, the cubin in memory. */
static CUresult add_ptx_file_cubin(CUlinkState s)
{
    const char *path = write_temp("link_kernels_a.ptx", e2e_link_a_ptx, e2e_link_a_ptx_size);
    CUresult rc = cuLinkAddFile(s, CU_JIT_INPUT_PTX, path, 0, NULL, NULL);
    if (rc == CUDA_SUCCESS)
        rc = cuLinkAddData(s, CU_JIT_INPUT_CUBIN, (void *)e2e_link_b_cubin, e2e_link_b_cubin_size, NULL, 0, NULL,
                           NULL);
    return rc;
}

static void test_link_errors(void)
{
    static char error[LOG_SIZE];
    memset(error, 'x', sizeof error);
    CUjit_option o[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *v[] = {error, (void *)(uintptr_t)LOG_SIZE};
    CUlinkState ls = NULL;
    TRY("link.errors_create", cuLinkCreate(2, o, v, &ls));
    expect_error("link.broken_ptx_fails",
                 cuLinkAddData(ls, CU_JIT_INPUT_PTX, (void *)broken_ptx, sizeof broken_ptx, "broken.ptx", 0, NULL, NULL),
                 CUDA_SUCCESS);
    check(error[0] != '\0' && memchr(error, '\0', sizeof error), "link.broken_ptx_error_log", NULL);
    printf("info broken link input error log: \"%s\"\n", oneline(error));
    static const unsigned char garbage[64] = {0x7f, 'E', 'L', 'F', 2, 1, 1};
    expect_error("link.garbage_cubin_fails",
                 cuLinkAddData(ls, CU_JIT_INPUT_CUBIN, (void *)garbage, sizeof garbage, "garbage", 0, NULL, NULL),
                 CUDA_SUCCESS);
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no_such_file.cubin", g_tmpdir);
    expect_error("link.add_file_missing", cuLinkAddFile(ls, CU_JIT_INPUT_CUBIN, missing, 0, NULL, NULL),
                 CUDA_ERROR_FILE_NOT_FOUND);
    TRY("link.errors_destroy", cuLinkDestroy(ls));
    check(1, "link.errors_destroy", NULL);

    void *cubin = NULL;
    size_t size = 0;
    char ptx[] = ".version 8.0\n.target sm_90\n.address_size 64\n";
    expect_error("link.null_handle_add",
                 cuLinkAddData(NULL, CU_JIT_INPUT_PTX, ptx, sizeof ptx, NULL, 0, NULL, NULL), CUDA_SUCCESS);
    expect_error("link.null_handle_complete", cuLinkComplete(NULL, &cubin, &size), CUDA_SUCCESS);
    expect_error("link.null_handle_destroy", cuLinkDestroy(NULL), CUDA_SUCCESS);
    expect_error("link.null_state_out", cuLinkCreate(0, NULL, NULL, NULL), CUDA_SUCCESS);

    /* a destroyed link state: refused by vgpu (the driver's behaviour is undefined: not asked) */
    CUresult rc = CUDA_ERROR_INVALID_HANDLE;
    if (g_vgpu) {
        TRY("link.destroyed_handle", cuLinkCreate(0, NULL, NULL, &ls));
        TRY("link.destroyed_handle", cuLinkDestroy(ls));
        rc = cuLinkComplete(ls, &cubin, &size);
        if (rc == CUDA_ERROR_INVALID_HANDLE)
            rc = cuLinkDestroy(ls);
    }
    check(rc == CUDA_ERROR_INVALID_HANDLE, "link.destroyed_handle", "%s", ename(rc));
}

int main(void)
{
    g_vgpu = dlsym(RTLD_DEFAULT, "vgpu_guest_library_marker") != NULL;
    snprintf(g_tmpdir, sizeof g_tmpdir, "%s/drv_link.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmpdir)) {
        printf("FAIL mkdtemp %s\n", g_tmpdir);
        return 1;
    }
    printf("info driver: %s\n", g_vgpu ? "vgpu's guest library" : "not vgpu's (native)");
    CU(cuInit(0));
    CUdevice dev;
    CU(cuDeviceGet(&dev, 0));
    CUcontext ctx;
    CU(cuDevicePrimaryCtxRetain(&ctx, dev));
    CU(cuCtxSetCurrent(ctx));
    CU(cuMemAlloc(&g_buf, sizeof g_init));
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < N; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        g_init[i] = (unsigned)s;
    }

    test_jit_load();
    test_jit_errors();
    link_and_run("link.ptx_ptx", 11u, add_ptx_ptx, 0);
    link_and_run("link.ptx_cubin_file", 22u, add_ptx_cubin_file, 0);
    link_and_run("link.cubin_fatbin", 33u, add_cubin_fatbin, 1);
    link_and_run("link.ptx_file_cubin", 44u, add_ptx_file_cubin, 0);
    test_link_errors();

    CU(cuMemFree(g_buf));
    CU(cuDevicePrimaryCtxRelease(dev));
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    if (system(cmd) != 0)
        printf("info could not remove %s\n", g_tmpdir);
    return check_summary("drv_link");
}

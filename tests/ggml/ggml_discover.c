/* ggml_discover: a real client of vgpu's libcuda.so.1. Loads llama.cpp's prebuilt CUDA backend
 * (libggml-base.so, libggml-cuda.so and the ggml backend registry of the npm package
 * @node-llama-cpp/linux-x64-cuda, fetched by tests/ggml/fetch.sh), lets it discover its devices
 * the way llama.cpp and Ollama do, prints everything it reports, and checks it against what the
 * vgpu daemon serves.
 *
 *   ggml_discover [DIR]      DIR: the package's library directory (default: $VGPU_GGML_DIR)
 *
 * Run through `vgpu run` (so libcuda.so.1 is vgpu's) with the CUDA toolkit's library directory
 * (libcudart.so.13, libcublas.so.13) on LD_LIBRARY_PATH. Expectations, from the environment
 * (unset or empty: only reported, not checked):
 *   VGPU_GGML_EXPECT_NAME    text the device description must contain ("vgpu emulated GPU")
 *   VGPU_GGML_EXPECT_TOTAL   total device memory in bytes (17179869184 for the emu default)
 *   VGPU_GGML_EXPECT_CC      compute capability "major.minor" ("9.0")
 *   VGPU_GGML_EXPECT_COUNT   number of devices (default 1)
 *   VGPU_GGML_EXACT_MEMORY   non-empty: free memory must drop by a 64 MiB buffer's size and
 *                            come back when it is freed (a device nobody else uses: emu)
 * Prints one "PASS name" / "FAIL name: why" line per check and a summary; exits 0 only if all
 * checks passed.
 *
 * The few ggml types and functions it needs are declared here; struct gd_dev_props mirrors
 * struct ggml_backend_dev_props of ggml 0.25.x (ggml/include/ggml-backend.h), the version the
 * pinned package ships (ggml_version() reports it). The shipped ggml_backend_dev_get_props()
 * zeroes exactly 56 bytes before filling them, which the size check below relies on. */
#include <ctype.h>
#include <dlfcn.h>
#include <glob.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- ggml declarations (opaque handles; the layouts this program reads) ---------------- */

typedef struct ggml_backend_reg *gd_reg_t;
typedef struct ggml_backend_device *gd_dev_t;
typedef struct ggml_backend *gd_backend_t;
typedef struct ggml_backend_buffer_type *gd_buft_t;
typedef struct ggml_backend_buffer *gd_buf_t;

enum gd_dev_type { GD_DEV_CPU, GD_DEV_GPU, GD_DEV_IGPU, GD_DEV_ACCEL, GD_DEV_META };

struct gd_dev_caps {
    bool async;
    bool host_buffer;
    bool buffer_from_host_ptr;
    bool events;
    bool mmap_support;
};

struct gd_dev_props {
    const char *name;
    const char *description;
    size_t memory_free;
    size_t memory_total;
    enum gd_dev_type type;
    const char *device_id; /* lower-case PCI bus id "dddd:bb:dd.f", or NULL */
    struct gd_dev_caps caps;
};
_Static_assert(sizeof(struct gd_dev_props) == 56, "ggml_backend_dev_props is 56 bytes in ggml 0.25");

struct gd_feature {
    const char *name;
    const char *value;
};

typedef void (*gd_log_cb)(int level, const char *text, void *user);

/* libggml-base.so */
static const char *(*p_ggml_version)(void);
static const char *(*p_ggml_commit)(void);
static void (*p_log_set)(gd_log_cb, void *);
static const char *(*p_reg_name)(gd_reg_t);
static size_t (*p_reg_dev_count)(gd_reg_t);
static gd_dev_t (*p_reg_dev_get)(gd_reg_t, size_t);
static void *(*p_reg_get_proc_address)(gd_reg_t, const char *);
static const char *(*p_dev_name)(gd_dev_t);
static const char *(*p_dev_description)(gd_dev_t);
static void (*p_dev_memory)(gd_dev_t, size_t *, size_t *);
static int (*p_dev_type)(gd_dev_t);
static void (*p_dev_get_props)(gd_dev_t, struct gd_dev_props *);
static gd_reg_t (*p_dev_backend_reg)(gd_dev_t);
static gd_backend_t (*p_dev_init)(gd_dev_t, const char *);
static gd_buft_t (*p_dev_buffer_type)(gd_dev_t);
static const char *(*p_backend_name)(gd_backend_t);
static gd_dev_t (*p_backend_get_device)(gd_backend_t);
static void (*p_backend_synchronize)(gd_backend_t);
static void (*p_backend_free)(gd_backend_t);
static const char *(*p_buft_name)(gd_buft_t);
static gd_buf_t (*p_buft_alloc_buffer)(gd_buft_t, size_t);
static void *(*p_buffer_get_base)(gd_buf_t);
static size_t (*p_buffer_get_size)(gd_buf_t);
static void (*p_buffer_clear)(gd_buf_t, uint8_t);
static void (*p_buffer_free)(gd_buf_t);

/* libggml-cuda.so */
static gd_reg_t (*p_cuda_reg)(void);

/* the backend registry (libggml.<variant>.so in this package) */
static gd_reg_t (*p_backend_load)(const char *);
static size_t (*p_reg_count)(void);
static gd_reg_t (*p_reg_by_name)(const char *);
static size_t (*p_dev_count)(void);
static gd_dev_t (*p_dev_get)(size_t);
static gd_dev_t (*p_dev_by_type)(int);

/* ---- checks ----------------------------------------------------------------------------- */

static int g_failed, g_passed;

static void check(bool ok, const char *name, const char *fmt, ...)
{
    if (ok) {
        printf("PASS %s\n", name);
        g_passed++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s: ", name);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    g_failed++;
}

static int finish(void)
{
    printf("ggml_discover: %d passed, %d failed\n", g_passed, g_failed);
    fflush(stdout);
    return g_failed ? 1 : 0;
}

static void *must_sym(void *lib, const char *libname, const char *sym)
{
    dlerror();
    void *p = dlsym(lib, sym);
    if (!p) {
        const char *e = dlerror();
        check(false, "symbols", "%s: %s not found (%s)", libname, sym, e ? e : "NULL");
    }
    return p;
}

#define SYM(var, lib, libname, name)                                                         \
    do {                                                                                     \
        *(void **)&(var) = must_sym((lib), (libname), (name));                               \
        if (!(var)) return false;                                                            \
    } while (0)

/* ---- ggml's log: echoed to stdout, the CUDA init line parsed ---------------------------- */

static char g_line[1024];
static size_t g_line_len;
static int g_cc_major = -1, g_cc_minor = -1;
static char g_vmm[8];

static void log_line(const char *line)
{
    printf("  [ggml] %s\n", line);
    const char *cc = strstr(line, "compute capability ");
    if (cc && g_cc_major < 0) {
        if (sscanf(cc + strlen("compute capability "), "%d.%d", &g_cc_major, &g_cc_minor) != 2)
            g_cc_major = g_cc_minor = -1;
    }
    const char *vmm = strstr(line, "VMM: ");
    if (vmm && !g_vmm[0]) {
        size_t i = 0;
        for (vmm += 5; vmm[i] && vmm[i] != ',' && i + 1 < sizeof g_vmm; i++) g_vmm[i] = vmm[i];
        g_vmm[i] = 0;
    }
}

static void on_log(int level, const char *text, void *user)
{
    (void)level;
    (void)user;
    for (; *text; text++) {
        if (*text == '\n' || g_line_len + 1 >= sizeof g_line) {
            g_line[g_line_len] = 0;
            log_line(g_line);
            g_line_len = 0;
            if (*text == '\n') continue;
        }
        g_line[g_line_len++] = *text;
    }
    fflush(stdout);
}

static void log_flush(void)
{
    if (g_line_len) {
        g_line[g_line_len] = 0;
        log_line(g_line);
        g_line_len = 0;
    }
}

/* ---- helpers ------------------------------------------------------------------------------ */

static const char *env_expect(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static const char *type_name(int t)
{
    switch (t) {
    case GD_DEV_CPU: return "CPU";
    case GD_DEV_GPU: return "GPU";
    case GD_DEV_IGPU: return "IGPU";
    case GD_DEV_ACCEL: return "ACCEL";
    case GD_DEV_META: return "META";
    default: return "?";
    }
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static const char *show(const char *s)
{
    return s ? s : "(null)";
}

/* "dddd:bb:dd.f", hex digits in lower case */
static bool pci_id_ok(const char *s)
{
    static const char pattern[] = "xxxx:xx:xx.x";
    if (!s || strlen(s) != sizeof pattern - 1) return false;
    for (size_t i = 0; pattern[i]; i++) {
        if (pattern[i] == 'x') {
            if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i])) return false;
        } else if (s[i] != pattern[i]) {
            return false;
        }
    }
    return true;
}

static bool load_base(void *lib, const char *n)
{
    SYM(p_ggml_version, lib, n, "ggml_version");
    SYM(p_ggml_commit, lib, n, "ggml_commit");
    SYM(p_log_set, lib, n, "ggml_log_set");
    SYM(p_reg_name, lib, n, "ggml_backend_reg_name");
    SYM(p_reg_dev_count, lib, n, "ggml_backend_reg_dev_count");
    SYM(p_reg_dev_get, lib, n, "ggml_backend_reg_dev_get");
    SYM(p_reg_get_proc_address, lib, n, "ggml_backend_reg_get_proc_address");
    SYM(p_dev_name, lib, n, "ggml_backend_dev_name");
    SYM(p_dev_description, lib, n, "ggml_backend_dev_description");
    SYM(p_dev_memory, lib, n, "ggml_backend_dev_memory");
    SYM(p_dev_type, lib, n, "ggml_backend_dev_type");
    SYM(p_dev_get_props, lib, n, "ggml_backend_dev_get_props");
    SYM(p_dev_backend_reg, lib, n, "ggml_backend_dev_backend_reg");
    SYM(p_dev_init, lib, n, "ggml_backend_dev_init");
    SYM(p_dev_buffer_type, lib, n, "ggml_backend_dev_buffer_type");
    SYM(p_backend_name, lib, n, "ggml_backend_name");
    SYM(p_backend_get_device, lib, n, "ggml_backend_get_device");
    SYM(p_backend_synchronize, lib, n, "ggml_backend_synchronize");
    SYM(p_backend_free, lib, n, "ggml_backend_free");
    SYM(p_buft_name, lib, n, "ggml_backend_buft_name");
    SYM(p_buft_alloc_buffer, lib, n, "ggml_backend_buft_alloc_buffer");
    SYM(p_buffer_get_base, lib, n, "ggml_backend_buffer_get_base");
    SYM(p_buffer_get_size, lib, n, "ggml_backend_buffer_get_size");
    SYM(p_buffer_clear, lib, n, "ggml_backend_buffer_clear");
    SYM(p_buffer_free, lib, n, "ggml_backend_buffer_free");
    return true;
}

static bool load_registry(void *lib, const char *n)
{
    SYM(p_backend_load, lib, n, "ggml_backend_load");
    SYM(p_reg_count, lib, n, "ggml_backend_reg_count");
    SYM(p_reg_by_name, lib, n, "ggml_backend_reg_by_name");
    SYM(p_dev_count, lib, n, "ggml_backend_dev_count");
    SYM(p_dev_get, lib, n, "ggml_backend_dev_get");
    SYM(p_dev_by_type, lib, n, "ggml_backend_dev_by_type");
    return true;
}

/* the registry library: libggml.<variant>.so next to libggml-base.so, if the package has one */
static bool find_registry(const char *dir, char *out, size_t outsz)
{
    char pat[4096];
    glob_t g;
    bool found = false;
    snprintf(pat, sizeof pat, "%s/libggml.*.so", dir);
    if (glob(pat, 0, NULL, &g) == 0) {
        if (g.gl_pathc >= 1) {
            snprintf(out, outsz, "%s", g.gl_pathv[0]);
            found = true;
        }
        globfree(&g);
    }
    return found;
}

/* ---- one device --------------------------------------------------------------------------- */

static void report_device(gd_reg_t reg, size_t i, gd_dev_t dev, bool expect_checks)
{
    char what[64];
    const char *name = p_dev_name(dev);
    const char *desc = p_dev_description(dev);
    size_t free_b = 0, total_b = 0;
    p_dev_memory(dev, &free_b, &total_b);
    int type = p_dev_type(dev);

    /* props: poison a larger buffer first; the library zeroes sizeof(its struct) bytes */
    union {
        struct gd_dev_props p;
        unsigned char bytes[128];
    } u;
    memset(u.bytes, 0xA5, sizeof u.bytes);
    p_dev_get_props(dev, &u.p);
    size_t touched = 0;
    for (size_t b = sizeof u.p; b < sizeof u.bytes; b++)
        if (u.bytes[b] != 0xA5) touched++;
    struct gd_dev_props *pr = &u.p;

    printf("device %zu:\n", i);
    printf("  name           %s\n", show(name));
    printf("  description    %s\n", show(desc));
    printf("  type           %s (%d)\n", type_name(type), type);
    printf("  memory free    %zu bytes (%.1f MiB)\n", free_b, free_b / 1048576.0);
    printf("  memory total   %zu bytes (%.1f MiB)\n", total_b, total_b / 1048576.0);
    printf("  device id      %s\n", show(pr->device_id));
    printf("  caps           async=%d host_buffer=%d buffer_from_host_ptr=%d events=%d mmap=%d\n",
           pr->caps.async, pr->caps.host_buffer, pr->caps.buffer_from_host_ptr, pr->caps.events,
           pr->caps.mmap_support);
    if (g_cc_major >= 0)
        printf("  compute cap.   %d.%d (from ggml_cuda_init's log)\n", g_cc_major, g_cc_minor);
    if (g_vmm[0]) printf("  VMM            %s\n", g_vmm);
    printf("  props          name=%s description=%s free=%zu total=%zu type=%d\n", show(pr->name),
           show(pr->description), pr->memory_free, pr->memory_total, (int)pr->type);

    snprintf(what, sizeof what, "dev%zu_props_layout", i);
    check(touched == 0, what, "ggml_backend_dev_get_props wrote %zu bytes past our 56-byte struct",
          touched);
    snprintf(what, sizeof what, "dev%zu_props_consistent", i);
    check(str_eq(pr->name, name) && str_eq(pr->description, desc) && (int)pr->type == type &&
              pr->memory_total == total_b && pr->memory_free <= pr->memory_total,
          what, "props (%s, %s, type %d, total %zu) differ from the getters (%s, %s, %d, %zu)",
          show(pr->name), show(pr->description), (int)pr->type, pr->memory_total, show(name),
          show(desc), type, total_b);
    snprintf(what, sizeof what, "dev%zu_backend_reg", i);
    check(p_dev_backend_reg(dev) == reg, what, "the device names another registration");
    snprintf(what, sizeof what, "dev%zu_name", i);
    char want[32];
    snprintf(want, sizeof want, "CUDA%zu", i);
    check(str_eq(name, want), what, "name '%s', expected '%s'", show(name), want);
    snprintf(what, sizeof what, "dev%zu_type_gpu", i);
    check(type == GD_DEV_GPU, what, "type %s (%d), expected GPU", type_name(type), type);
    snprintf(what, sizeof what, "dev%zu_memory", i);
    check(total_b > 0 && free_b > 0 && free_b <= total_b, what, "free %zu, total %zu", free_b,
          total_b);
    snprintf(what, sizeof what, "dev%zu_pci_bus_id", i);
    check(pci_id_ok(pr->device_id), what, "device_id '%s' is not a lower-case PCI bus id",
          show(pr->device_id));
    if (!expect_checks) return;

    const char *exp;
    if ((exp = env_expect("VGPU_GGML_EXPECT_NAME"))) {
        snprintf(what, sizeof what, "dev%zu_description", i);
        check(desc && strstr(desc, exp), what, "description '%s' does not contain '%s'",
              show(desc), exp);
    }
    if ((exp = env_expect("VGPU_GGML_EXPECT_TOTAL"))) {
        unsigned long long want_total = strtoull(exp, NULL, 0);
        snprintf(what, sizeof what, "dev%zu_memory_total", i);
        check(total_b == want_total, what, "total %zu, expected %llu", total_b, want_total);
    }
    if ((exp = env_expect("VGPU_GGML_EXPECT_CC"))) {
        int maj = -1, min = -1;
        sscanf(exp, "%d.%d", &maj, &min);
        snprintf(what, sizeof what, "dev%zu_compute_capability", i);
        check(g_cc_major == maj && g_cc_minor == min, what, "%d.%d in ggml's log, expected %s",
              g_cc_major, g_cc_minor, exp);
    }
}

/* ggml_backend_dev_init + a device buffer: the first things llama.cpp does after discovery */
static void use_device(gd_dev_t dev)
{
    size_t free0 = 0, total0 = 0, free1 = 0, total1 = 0;
    const size_t size = 64u << 20;
    /* free memory follows our allocations exactly only on a device nobody else uses (emu) */
    const bool exact = env_expect("VGPU_GGML_EXACT_MEMORY") != NULL;

    gd_backend_t be = p_dev_init(dev, NULL);
    check(be != NULL, "backend_init", "ggml_backend_dev_init returned NULL");
    if (!be) return;
    printf("backend: %s\n", show(p_backend_name(be)));
    check(p_backend_get_device(be) == dev, "backend_device", "the backend names another device");

    gd_buft_t buft = p_dev_buffer_type(dev);
    printf("buffer type: %s\n", buft ? show(p_buft_name(buft)) : "(none)");
    p_dev_memory(dev, &free0, &total0);
    gd_buf_t buf = buft ? p_buft_alloc_buffer(buft, size) : NULL;
    check(buf != NULL, "buffer_alloc", "64 MiB device buffer not allocated");
    if (buf) {
        p_dev_memory(dev, &free1, &total1);
        printf("buffer: base %p, size %zu; free memory %zu -> %zu bytes\n", p_buffer_get_base(buf),
               p_buffer_get_size(buf), free0, free1);
        check(p_buffer_get_base(buf) != NULL && p_buffer_get_size(buf) >= size, "buffer_shape",
              "base %p size %zu", p_buffer_get_base(buf), p_buffer_get_size(buf));
        if (exact)
            check(free1 + size <= free0 && total1 == total0, "buffer_accounted",
                  "free memory %zu -> %zu after a %zu-byte allocation", free0, free1, size);
        p_buffer_clear(buf, 0);
        p_backend_synchronize(be);
        p_buffer_free(buf);
        p_dev_memory(dev, &free1, &total1);
        printf("buffer freed: free memory %zu bytes\n", free1);
        if (exact)
            check(free1 == free0, "buffer_freed", "free memory %zu before, %zu after the free",
                  free0, free1);
    }
    p_backend_free(be);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : getenv("VGPU_GGML_DIR");
    char path[4096], regpath[4096];
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!dir || !*dir) {
        fprintf(stderr, "usage: ggml_discover DIR (or set VGPU_GGML_DIR)\n");
        return 2;
    }
    printf("ggml_discover: package directory %s\n", dir);

    snprintf(path, sizeof path, "%s/libggml-base.so", dir);
    void *base = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    check(base != NULL, "dlopen_ggml_base", "%s", dlerror());
    if (!base || !load_base(base, "libggml-base.so")) return finish();
    printf("ggml version %s, commit %s\n", show(p_ggml_version()), show(p_ggml_commit()));
    p_log_set(on_log, NULL);

    /* libggml-cuda.so pulls in libcudart.so.13, libcublas.so.13 and libcuda.so.1: a driver
     * symbol missing from libcuda.so.1 shows up here, in dlerror() */
    snprintf(path, sizeof path, "%s/libggml-cuda.so", dir);
    void *cuda = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    check(cuda != NULL, "dlopen_ggml_cuda", "%s", dlerror());
    if (!cuda) return finish();
    Dl_info di;
    void *cu_sym = dlsym(RTLD_DEFAULT, "cuDeviceGet");
    if (!cu_sym) cu_sym = dlsym(cuda, "cuDeviceGet");
    if (cu_sym && dladdr(cu_sym, &di) && di.dli_fname)
        printf("libcuda.so.1 in use: %s\n", di.dli_fname);
    *(void **)&p_cuda_reg = must_sym(cuda, "libggml-cuda.so", "ggml_backend_cuda_reg");
    if (!p_cuda_reg) return finish();

    /* discovery the way llama.cpp loads backends: the registry's ggml_backend_load() */
    gd_reg_t reg = NULL;
    bool have_registry = find_registry(dir, regpath, sizeof regpath);
    void *registry = NULL;
    if (have_registry) {
        registry = dlopen(regpath, RTLD_NOW | RTLD_GLOBAL);
        check(registry != NULL, "dlopen_registry", "%s", dlerror());
        if (!registry || !load_registry(registry, regpath)) return finish();
        printf("registry: %s\n", regpath);
        reg = p_backend_load(path);
        log_flush();
        check(reg != NULL, "ggml_backend_load", "ggml_backend_load(%s) returned NULL", path);
        if (!reg) return finish();
    }
    gd_reg_t direct = p_cuda_reg();
    log_flush();
    check(direct != NULL, "ggml_backend_cuda_reg", "returned NULL");
    if (!direct) return finish();
    if (reg)
        check(reg == direct, "same_registration", "ggml_backend_load and ggml_backend_cuda_reg differ");
    reg = direct;

    printf("backend registration: %s\n", show(p_reg_name(reg)));
    check(str_eq(p_reg_name(reg), "CUDA"), "reg_name", "'%s', expected 'CUDA'", show(p_reg_name(reg)));
    struct gd_feature *(*get_features)(gd_reg_t) = NULL;
    *(void **)&get_features = p_reg_get_proc_address(reg, "ggml_backend_get_features");
    if (get_features) {
        struct gd_feature *f = get_features(reg);
        printf("features:");
        for (; f && f->name; f++) printf(" %s=%s", f->name, show(f->value));
        printf("\n");
    }

    size_t count = p_reg_dev_count(reg);
    printf("device count: %zu\n", count);
    const char *exp_count = env_expect("VGPU_GGML_EXPECT_COUNT");
    size_t want_count = exp_count ? (size_t)strtoul(exp_count, NULL, 0) : 1;
    check(count == want_count, "device_count", "%zu devices, expected %zu", count, want_count);
    for (size_t i = 0; i < count; i++) {
        gd_dev_t dev = p_reg_dev_get(reg, i);
        check(dev != NULL, "dev_get", "ggml_backend_reg_dev_get(%zu) returned NULL", i);
        if (dev) report_device(reg, i, dev, i == 0);
    }

    if (registry && count > 0) {
        gd_dev_t dev0 = p_reg_dev_get(reg, 0);
        printf("registry: %zu backend(s), %zu device(s)\n", p_reg_count(), p_dev_count());
        check(p_reg_by_name("CUDA") == reg, "registry_by_name", "ggml_backend_reg_by_name(\"CUDA\")");
        check(p_dev_by_type(GD_DEV_GPU) == dev0, "registry_gpu",
              "ggml_backend_dev_by_type(GPU) is not CUDA0");
        bool listed = false;
        for (size_t i = 0; i < p_dev_count(); i++) listed |= p_dev_get(i) == dev0;
        check(listed, "registry_lists_device", "CUDA0 missing from ggml_backend_dev_get()");
    }

    if (count > 0) use_device(p_reg_dev_get(reg, 0));
    log_flush();
    return finish();
}

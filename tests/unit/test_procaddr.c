/*
 * test_procaddr: checks the built guest libcuda.so.1's cuGetProcAddress against
 * what cudart 13.0 asks of it and against the generated expectations.
 *
 *   test_procaddr LIBCUDA [PROBE_LIST [REQUESTS [EXPORTS]]]
 *     LIBCUDA     the library under test, e.g. build/lib/libcuda.so.1
 *     PROBE_LIST  gen/procaddr_probe.txt (NAME VERSION FLAGS EXPECT per line)
 *     REQUESTS    tests/unit/data/cudart-13.0-getprocaddress-requests.txt
 *     EXPORTS     spec/exports.txt
 * (defaults are relative to the repository root, the expected working directory).
 *
 * Checks: every symbol of EXPORTS is exported; every (name, version, flags) cudart
 * asks for resolves, to the address dlsym gives for the expected symbol; every line
 * of PROBE_LIST answers as expected (symbol, VERSION_NOT_SUFFICIENT or
 * SYMBOL_NOT_FOUND); a few hand-checked cases that do not rely on generated data;
 * and the argument checks of both cuGetProcAddress forms. Exit status 0 on success.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef CUresult (*get_proc_v2_fn)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);
typedef CUresult (*get_proc_v1_fn)(const char *, void **, int, cuuint64_t);

static void *lib;
static get_proc_v2_fn get_proc_v2;
static get_proc_v1_fn get_proc_v1;
static int checks, failures;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        failures++;                                                                                \
        fprintf(stderr, "FAIL: " __VA_ARGS__);                                                     \
        fputc('\n', stderr);                                                                       \
    } while (0)

/* One expectation: the symbol whose address must come back, or "-" (version not
 * sufficient) or "!" (symbol not found). Returns 1 if the library agreed. */
static int expect(const char *name, int version, unsigned flags, const char *want)
{
    void *fn = (void *)&fn; /* must be overwritten */
    CUdriverProcAddressQueryResult st = (CUdriverProcAddressQueryResult)-1;
    CUresult r = get_proc_v2(name, &fn, version, flags, &st);

    checks++;
    if (strcmp(want, "-") == 0 || strcmp(want, "!") == 0) {
        CUdriverProcAddressQueryResult want_st =
            want[0] == '-' ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
        if (fn != NULL || st != want_st || r != CUDA_SUCCESS) {
            FAIL("%s %d %u: want NULL, status %d, CUDA_SUCCESS; got %p, status %d, result %d", name,
                 version, flags, (int)want_st, fn, (int)st, (int)r);
            return 0;
        }
        return 1;
    }
    void *sym = dlsym(lib, want);
    if (sym == NULL) {
        FAIL("%s %d %u: expected symbol %s is not exported", name, version, flags, want);
        return 0;
    }
    if (r != CUDA_SUCCESS || st != CU_GET_PROC_ADDRESS_SUCCESS || fn != sym) {
        Dl_info info;
        const char *got = fn && dladdr(fn, &info) && info.dli_sname ? info.dli_sname : "?";
        FAIL("%s %d %u: want %s (%p); got %p (%s), status %d, result %d", name, version, flags, want, sym, fn,
             fn ? got : "NULL", (int)st, (int)r);
        return 0;
    }
    return 1;
}

struct probe {
    char name[128];
    int version;
    unsigned flags;
    char want[128];
};

static struct probe *probes;
static size_t nprobes;

static FILE *open_or_die(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    return f;
}

static void load_probes(const char *path)
{
    FILE *f = open_or_die(path);
    char *line = NULL;
    size_t cap = 0, alloc = 0;

    while (getline(&line, &cap, f) > 0) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (nprobes == alloc) {
            alloc = alloc ? 2 * alloc : 1024;
            probes = realloc(probes, alloc * sizeof *probes);
            if (probes == NULL)
                abort();
        }
        struct probe *p = &probes[nprobes];
        if (sscanf(line, "%127s %d %u %127s", p->name, &p->version, &p->flags, p->want) != 4) {
            fprintf(stderr, "%s: bad line: %s", path, line);
            exit(2);
        }
        nprobes++;
    }
    free(line);
    fclose(f);
}

static const struct probe *find_probe(const char *name, int version, unsigned flags)
{
    for (size_t i = 0; i < nprobes; i++)
        if (probes[i].version == version && probes[i].flags == flags && strcmp(probes[i].name, name) == 0)
            return &probes[i];
    return NULL;
}

static void check_exports(const char *path)
{
    FILE *f = open_or_die(path);
    char name[256];
    int n = 0;

    while (fscanf(f, "%255s", name) == 1) {
        if (name[0] == '#') {
            int c;
            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
            continue;
        }
        checks++;
        n++;
        if (dlsym(lib, name) == NULL)
            FAIL("%s (spec/exports.txt) is not exported", name);
    }
    fclose(f);
    if (n < 600)
        FAIL("%s: only %d names", path, n);
}

static void check_requests(const char *path)
{
    FILE *f = open_or_die(path);
    char name[128];
    int version, n = 0;
    unsigned flags;

    while (fscanf(f, "%127s %d %u", name, &version, &flags) == 3) {
        const struct probe *p = find_probe(name, version, flags);
        n++;
        if (p == NULL) {
            checks++;
            FAIL("cudart request %s %d %u is missing from the probe list", name, version, flags);
        } else if (p->want[0] == '-' || p->want[0] == '!') {
            checks++;
            FAIL("cudart request %s %d %u is expected not to resolve (%s)", name, version, flags, p->want);
        } else {
            expect(name, version, flags, p->want);
        }
    }
    fclose(f);
    if (n < 400)
        FAIL("%s: only %d requests", path, n);
}

/* Cases checked by hand against cuda.h and the real driver, independent of gen/. */
static void check_by_hand(void)
{
    expect("cuDeviceTotalMem", 3020, 0, "cuDeviceTotalMem_v2");
    expect("cuDeviceTotalMem", 2000, 0, "cuDeviceTotalMem");
    expect("cuCtxCreate", 2000, 0, "cuCtxCreate");
    expect("cuCtxCreate", 3020, 0, "cuCtxCreate_v2");
    expect("cuCtxCreate", 11040, 0, "cuCtxCreate_v3");
    expect("cuCtxCreate", 12050, 0, "cuCtxCreate_v4");
    expect("cuCtxCreate", 13000, 2, "cuCtxCreate_v4"); /* no per-thread variant: the plain one */
    expect("cuCtxCreate", 1000, 0, "-");
    expect("cuMemcpyHtoDAsync", 7000, 2, "cuMemcpyHtoDAsync_v2_ptsz");
    expect("cuMemcpyHtoDAsync", 13000, 2, "cuMemcpyHtoDAsync_v2_ptsz");
    expect("cuMemcpyHtoDAsync", 7000, 1, "cuMemcpyHtoDAsync_v2");
    expect("cuMemcpyHtoDAsync", 7000, 0, "cuMemcpyHtoDAsync_v2");
    expect("cuMemcpyHtoD", 3020, 2, "-"); /* per-thread asked for below its first version */
    expect("cuMemcpy", 13000, 2, "cuMemcpy_ptds");
    expect("cuCtxSynchronize", 13000, 0, "cuCtxSynchronize_v2");
    expect("cuCtxSynchronize", 12090, 0, "cuCtxSynchronize");
    expect("cuCtxGetDevice", 13000, 0, "cuCtxGetDevice_v2");
    expect("cuEventElapsedTime", 12080, 0, "cuEventElapsedTime_v2");
    expect("cuGraphInstantiate", 12000, 0, "cuGraphInstantiate_v2");
    expect("cuGraphInstantiateWithFlags", 11040, 0, "cuGraphInstantiateWithFlags");
    expect("cuStreamBeginCapture", 10010, 2, "cuStreamBeginCapture_v2_ptsz");
    expect("cuStreamGetCaptureInfo", 12030, 0, "cuStreamGetCaptureInfo_v3");
    expect("cuGetProcAddress", 11030, 0, "cuGetProcAddress");
    expect("cuGetProcAddress", 12000, 0, "cuGetProcAddress_v2");
    expect("cuDeviceGetUuid", 11040, 0, "cuDeviceGetUuid_v2");
    expect("cuGLInit", 2000, 0, "cuGLInit");
    expect("cuVDPAUCtxCreate", 3020, 0, "cuVDPAUCtxCreate_v2");
    expect("cuMemAlloc_v2", 13000, 0, "!"); /* symbol names are not API names */
    expect("cuNoSuchEntryPoint", 13000, 0, "!");
    expect("", 13000, 0, "!");
    expect("cuCtxCreate", -1, 0, "cuCtxCreate_v4"); /* negative: the newest */
    expect("cuMemcpyHtoDAsync", -1, 2, "cuMemcpyHtoDAsync_v2_ptsz");
    expect("cuInit", 0, 0, "-");
    expect("cuMemcpyHtoDAsync", 13000, 3, "cuMemcpyHtoDAsync_v2_ptsz");
    expect("cuEventCreateFromEGLSync", 13000, 0, "!"); /* not in the real driver either */
}

/* Argument handling, as the real driver does it (tools/procaddr_probe.c), except
 * for NULL symbol/pfn, on which the driver crashes. */
static void check_arguments(void)
{
    void *fn = NULL;
    void *const untouched = (void *)&fn;
    CUdriverProcAddressQueryResult st = (CUdriverProcAddressQueryResult)-1;

    checks += 9;
    if (get_proc_v2(NULL, &fn, 13000, 0, &st) != CUDA_ERROR_INVALID_VALUE)
        FAIL("NULL symbol: want CUDA_ERROR_INVALID_VALUE");
    if (get_proc_v2("cuInit", NULL, 13000, 0, &st) != CUDA_ERROR_INVALID_VALUE)
        FAIL("NULL pfn: want CUDA_ERROR_INVALID_VALUE");
    if (get_proc_v2("cuInit", &fn, 13000, 0, NULL) != CUDA_SUCCESS || fn != dlsym(lib, "cuInit"))
        FAIL("NULL status: cuInit must still resolve");
    fn = untouched;
    if (get_proc_v2("cuNoSuchEntryPoint", &fn, 13000, 0, NULL) != CUDA_SUCCESS || fn != NULL)
        FAIL("NULL status, unknown name: want CUDA_SUCCESS and NULL");
    fn = untouched;
    st = (CUdriverProcAddressQueryResult)-1;
    if (get_proc_v2("cuInit", &fn, 13000, 4, &st) != CUDA_ERROR_INVALID_VALUE || fn != untouched ||
        st != (CUdriverProcAddressQueryResult)-1)
        FAIL("flags 4: want CUDA_ERROR_INVALID_VALUE, nothing written");
    fn = untouched;
    if (get_proc_v1("cuInit", &fn, 2000, 0) != CUDA_SUCCESS || fn != dlsym(lib, "cuInit"))
        FAIL("cuGetProcAddress (11.3 form): cuInit must resolve");
    fn = untouched;
    if (get_proc_v1("cuNoSuchEntryPoint", &fn, 13000, 0) != CUDA_ERROR_NOT_FOUND || fn != untouched)
        FAIL("cuGetProcAddress (11.3 form), unknown name: want CUDA_ERROR_NOT_FOUND, *pfn untouched");
    fn = untouched;
    if (get_proc_v1("cuCtxCreate", &fn, 1000, 0) != CUDA_ERROR_NOT_FOUND || fn != untouched)
        FAIL("cuGetProcAddress (11.3 form), version too old: want CUDA_ERROR_NOT_FOUND, *pfn untouched");
    fn = untouched;
    if (get_proc_v1("cuInit", &fn, 13000, 8) != CUDA_ERROR_INVALID_VALUE || fn != untouched)
        FAIL("cuGetProcAddress (11.3 form), flags 8: want CUDA_ERROR_INVALID_VALUE, nothing written");
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 5) {
        fprintf(stderr, "usage: %s LIBCUDA [PROBE_LIST [REQUESTS [EXPORTS]]]\n", argv[0]);
        return 2;
    }
    const char *probe_path = argc > 2 ? argv[2] : "gen/procaddr_probe.txt";
    const char *req_path = argc > 3 ? argv[3] : "tests/unit/data/cudart-13.0-getprocaddress-requests.txt";
    const char *exports_path = argc > 4 ? argv[4] : "spec/exports.txt";

    lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "dlopen %s: %s\n", argv[1], dlerror());
        return 2;
    }
    get_proc_v2 = (get_proc_v2_fn)dlsym(lib, "cuGetProcAddress_v2");
    get_proc_v1 = (get_proc_v1_fn)dlsym(lib, "cuGetProcAddress");
    if (get_proc_v2 == NULL || get_proc_v1 == NULL) {
        fprintf(stderr, "%s does not export cuGetProcAddress and cuGetProcAddress_v2\n", argv[1]);
        return 1;
    }

    load_probes(probe_path);
    check_exports(exports_path);
    check_requests(req_path);
    for (size_t i = 0; i < nprobes; i++)
        expect(probes[i].name, probes[i].version, probes[i].flags, probes[i].want);
    check_by_hand();
    check_arguments();

    printf("test_procaddr: %d checks, %d failures (%zu probe lines)\n", checks, failures, nprobes);
    free(probes);
    return failures ? 1 : 0;
}

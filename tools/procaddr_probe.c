/*
 * procaddr_probe: checks vgpu's cuGetProcAddress model against the real NVIDIA
 * driver. Run it on a machine with the driver installed (no vgpu involved):
 *
 *   gcc -O2 tools/procaddr_probe.c -I/usr/local/cuda/include -ldl -o procaddr_probe
 *   ./procaddr_probe [PROBE_LIST [EXPORTS [LIBCUDA]]]
 *     PROBE_LIST  gen/procaddr_probe.txt: NAME VERSION FLAGS EXPECT, EXPECT a symbol,
 *                 `-` (VERSION_NOT_SUFFICIENT) or `!` (SYMBOL_NOT_FOUND)
 *     EXPORTS     spec/exports.txt
 *     LIBCUDA     libcuda.so.1 (the real driver, found the usual way)
 *
 * For every probe line it calls the driver's cuGetProcAddress_v2 and compares the
 * pointer with dlsym() of the expected symbol, naming what came back with dladdr().
 * It also reports: our exports that the driver lacks; API names the driver resolves
 * that our table lacks; the result codes and statuses the driver uses for each kind
 * of failure; and how it treats odd flags and versions. Output goes to stdout; the
 * last line is a summary. Exit status: 0 if nothing mismatched, 1 otherwise.
 */
#define _GNU_SOURCE /* dladdr */

#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef CUresult (*get_proc_v2_fn)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);
typedef CUresult (*get_proc_v1_fn)(const char *, void **, int, cuuint64_t);
typedef CUresult (*init_fn)(unsigned int);
typedef CUresult (*version_fn)(int *);

static void *lib;
static get_proc_v2_fn get_proc_v2;
static get_proc_v1_fn get_proc_v1;

/* "name" of a code address: its dynamic symbol, else library+offset. */
static const char *describe(const void *p, char *buf, size_t len)
{
    Dl_info info;

    if (p == NULL)
        return "NULL";
    if (dladdr(p, &info) == 0) {
        snprintf(buf, len, "%p", p);
    } else if (info.dli_sname && info.dli_saddr == p) {
        snprintf(buf, len, "%s", info.dli_sname);
    } else {
        const char *file = info.dli_fname ? strrchr(info.dli_fname, '/') : NULL;
        snprintf(buf, len, "%s+0x%lx (near %s)", file ? file + 1 : "?",
                 (unsigned long)((const char *)p - (const char *)info.dli_fbase),
                 info.dli_sname ? info.dli_sname : "?");
    }
    return buf;
}

/* Failure kinds seen: (expectation, result, status) -> count. */
struct outcome {
    char kind;
    int result, status;
    int count;
};
static struct outcome outcomes[64];
static int noutcomes;

static void note_outcome(char kind, CUresult r, CUdriverProcAddressQueryResult st)
{
    for (int i = 0; i < noutcomes; i++)
        if (outcomes[i].kind == kind && outcomes[i].result == (int)r && outcomes[i].status == (int)st) {
            outcomes[i].count++;
            return;
        }
    if (noutcomes < 64)
        outcomes[noutcomes++] = (struct outcome){kind, (int)r, (int)st, 1};
}

/* Probe list names, to find names the driver knows beyond them. */
static char **known;
static size_t nknown, known_cap;

static int is_known(const char *name)
{
    for (size_t i = 0; i < nknown; i++)
        if (strcmp(known[i], name) == 0)
            return 1;
    return 0;
}

static void add_known(const char *name)
{
    if (nknown && strcmp(known[nknown - 1], name) == 0)
        return;
    if (nknown == known_cap) {
        known_cap = known_cap ? 2 * known_cap : 1024;
        known = realloc(known, known_cap * sizeof *known);
        if (known == NULL)
            abort();
    }
    known[nknown++] = strdup(name);
}

/* Calls the driver with a NULL argument in a child process: it may crash. */
static void risky(const char *what, const char *symbol, void **pfn)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        CUdriverProcAddressQueryResult st;
        printf("INFO cuGetProcAddress_v2 %s: result %d\n", what, (int)get_proc_v2(symbol, pfn, 13000, 0, &st));
        fflush(stdout);
        _exit(0);
    }
    int ws = 0;
    if (pid < 0 || waitpid(pid, &ws, 0) < 0 || !WIFEXITED(ws))
        printf("INFO cuGetProcAddress_v2 %s: the driver crashed (wait status %d)\n", what, ws);
}

int main(int argc, char **argv)
{
    const char *probe_path = argc > 1 ? argv[1] : "gen/procaddr_probe.txt";
    const char *exports_path = argc > 2 ? argv[2] : "spec/exports.txt";
    const char *lib_path = argc > 3 ? argv[3] : "libcuda.so.1";
    char b1[256], b2[256];

    setvbuf(stdout, NULL, _IOLBF, 0);
    lib = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        printf("dlopen %s: %s\n", lib_path, dlerror());
        return 2;
    }
    init_fn init = (init_fn)dlsym(lib, "cuInit");
    version_fn get_version = (version_fn)dlsym(lib, "cuDriverGetVersion");
    get_proc_v2 = (get_proc_v2_fn)dlsym(lib, "cuGetProcAddress_v2");
    get_proc_v1 = (get_proc_v1_fn)dlsym(lib, "cuGetProcAddress");
    if (!init || !get_version || !get_proc_v2 || !get_proc_v1) {
        printf("%s lacks cuInit, cuDriverGetVersion or cuGetProcAddress(_v2)\n", lib_path);
        return 2;
    }
    int driver_version = 0;
    CUresult ir = init(0);
    get_version(&driver_version);
    Dl_info li;
    dladdr((void *)get_proc_v2, &li);
    printf("driver: %s, cuInit(0) = %d, cuDriverGetVersion = %d\n", li.dli_fname ? li.dli_fname : lib_path,
           (int)ir, driver_version);

    FILE *f = fopen(probe_path, "r");
    if (f == NULL) {
        perror(probe_path);
        return 2;
    }
    char name[128], want[128], line[512];
    int version, queries = 0, mismatches = 0, skipped = 0;
    unsigned flags;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || sscanf(line, "%127s %d %u %127s", name, &version, &flags, want) != 4)
            continue;
        if (strcmp(want, "!") != 0)
            add_known(name);
        if (version > driver_version) {
            skipped++;
            continue;
        }
        void *fn = NULL;
        CUdriverProcAddressQueryResult st = (CUdriverProcAddressQueryResult)-1;
        CUresult r = get_proc_v2(name, &fn, version, flags, &st);
        queries++;
        if (want[0] == '-' || want[0] == '!') {
            CUdriverProcAddressQueryResult want_st =
                want[0] == '-' ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
            note_outcome(want[0], r, st);
            if (fn != NULL || st != want_st) {
                mismatches++;
                printf("MISMATCH %s %d %u: expected %s; driver gave %s, status %d, result %d\n", name, version,
                       flags, want[0] == '-' ? "VERSION_NOT_SUFFICIENT" : "SYMBOL_NOT_FOUND",
                       describe(fn, b1, sizeof b1), (int)st, (int)r);
            }
            continue;
        }
        void *sym = dlsym(lib, want);
        if (r != CUDA_SUCCESS || st != CU_GET_PROC_ADDRESS_SUCCESS || fn == NULL || fn != sym) {
            mismatches++;
            printf("MISMATCH %s %d %u: expected %s (%s); driver gave %s, status %d, result %d\n", name, version,
                   flags, want, sym ? "exported" : "NOT EXPORTED by the driver", describe(fn, b2, sizeof b2),
                   (int)st, (int)r);
        }
    }
    fclose(f);

    for (int i = 0; i < noutcomes; i++)
        printf("INFO expected %s: driver answered result %d, status %d (%d times)\n",
               outcomes[i].kind == '-' ? "VERSION_NOT_SUFFICIENT" : "SYMBOL_NOT_FOUND", outcomes[i].result,
               outcomes[i].status, outcomes[i].count);

    /* Our exports the driver lacks, and API names it resolves that our table lacks. */
    int missing_exports = 0, extra_names = 0;
    f = fopen(exports_path, "r");
    if (f == NULL) {
        perror(exports_path);
    } else {
        while (fscanf(f, "%127s", name) == 1) {
            if (name[0] == '#') {
                int c;
                while ((c = fgetc(f)) != EOF && c != '\n')
                    ;
                continue;
            }
            if (dlsym(lib, name) == NULL) {
                missing_exports++;
                printf("EXPORT %s: in spec/exports.txt, not exported by the driver\n", name);
            }
            /* API name: strip _ptds/_ptsz, then _vN. */
            char base[128];
            snprintf(base, sizeof base, "%s", name);
            size_t n = strlen(base);
            if (n > 5 && (strcmp(base + n - 5, "_ptds") == 0 || strcmp(base + n - 5, "_ptsz") == 0))
                base[n -= 5] = '\0';
            char *v = strrchr(base, '_');
            if (v && v[1] == 'v' && v[2] >= '0' && v[2] <= '9' && strspn(v + 2, "0123456789") == strlen(v + 2))
                *v = '\0';
            if (is_known(base))
                continue;
            add_known(base);
            void *fn = NULL;
            CUdriverProcAddressQueryResult st;
            if (get_proc_v2(base, &fn, driver_version, 0, &st) == CUDA_SUCCESS && fn) {
                extra_names++;
                printf("EXTRA driver resolves %s %d 0 -> %s; our table lacks that name\n", base, driver_version,
                       describe(fn, b1, sizeof b1));
            }
        }
        fclose(f);
    }

    /* How the driver treats odd arguments (informational; compare procaddr.c).
     * form 2: cuGetProcAddress_v2 with a status pointer; 0: _v2 with a NULL status
     * pointer; 1: the CUDA 11.3 cuGetProcAddress. "untouched": *pfn was not written. */
    struct {
        int form;
        const char *name;
        int version;
        unsigned long long flags;
    } odd[] = {
        {2, "cuMemcpyHtoDAsync", 13000, 3}, {2, "cuMemcpyHtoDAsync", 13000, 4}, {2, "cuMemcpyHtoDAsync", 13000, 8},
        {2, "cuInit", 99999, 0},            {2, "cuInit", 13010, 0},            {2, "cuInit", 13001, 0},
        {2, "cuInit", 0, 0},                {2, "cuInit", -1, 0},               {2, "cuCtxCreate", -1, 0},
        {2, "cuCtxCreate", -1000, 0},       {2, "cuMemcpyHtoDAsync", -1, 2},    {2, "cuCtxCreate", 2147483647, 0},
        {2, "cuMemAlloc_v2", 13000, 0},     {2, "cuMemcpyHtoD_v2", 13000, 2},   {2, "cuGetProcAddress_v2", 13000, 0},
        {2, "cuMemcpyHtoD", 3020, 2},       {2, "cuDeviceTotalMem", 2000, 0},   {2, "cuGLInit", 2000, 0},
        {2, "cuEventCreateFromEGLSync", 13000, 0},
        {0, "cuVgpuNoSuchEntryPoint", 13000, 0}, {0, "cuCtxCreate", 1000, 0}, {0, "cuInit", 13000, 4},
        {1, "cuVgpuNoSuchEntryPoint", 13000, 0}, {1, "cuCtxCreate", 1000, 0}, {1, "cuInit", 13000, 4},
        {1, "cuInit", 99999, 0},            {1, "cuCtxCreate", 13000, 0},       {1, "cuMemcpyHtoD", 3020, 2},
    };
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        void *fn = (void *)&fn;
        CUdriverProcAddressQueryResult st = (CUdriverProcAddressQueryResult)-1;
        CUresult r = odd[i].form == 1 ? get_proc_v1(odd[i].name, &fn, odd[i].version, odd[i].flags)
                                      : get_proc_v2(odd[i].name, &fn, odd[i].version, odd[i].flags,
                                                    odd[i].form == 2 ? &st : NULL);
        printf("INFO %s %s %d %llu: result %d, status %d, %s\n",
               odd[i].form == 1 ? "cuGetProcAddress" : odd[i].form == 2 ? "_v2" : "_v2(status NULL)", odd[i].name,
               odd[i].version, odd[i].flags, (int)r, (int)st,
               fn == (void *)&fn ? "untouched" : describe(fn, b1, sizeof b1));
    }
    void *fn = NULL;
    risky("NULL symbol", NULL, &fn);
    risky("NULL pfn", "cuInit", NULL);

    printf("procaddr_probe: %d queries, %d mismatches, %d skipped (version > driver %d); "
           "%d exports missing from the driver; %d names the driver resolves beyond our table\n",
           queries, mismatches, skipped, driver_version, missing_exports, extra_names);
    return mismatches ? 1 : 0;
}

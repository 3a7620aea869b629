/*
 * Helper of the fault and isolation tests (fault_loop.sh, restart_probe.sh,
 * foreign_probe.sh): a CUDA client linked against vgpu's libcuda.so.1.
 *
 *     fault_client info
 *         prints "free=BYTES total=BYTES" (device 0's memory) and exits 0.
 *     fault_client work SEED THREADS
 *         prints "phase init", opens the device, prints "phase work", then THREADS threads
 *         do a random mix (seeded) of allocations and frees, host<->device copies of up to
 *         8 MiB, memsets, kernel launches, stream and event creation and synchronization,
 *         until the process is killed (fault_loop.sh SIGKILLs it at a random moment).
 *     fault_client owner FILE
 *         allocates a buffer filled with 0x5a, creates a stream and an event, loads the
 *         test module and gets d_fill; writes the handles and the buffer's address to
 *         FILE, prints "ready", waits for a line on stdin, then checks that its buffer
 *         still holds 0x5a and its stream and event still work; prints "intact".
 *     fault_client intruder FILE
 *         reads another client's values from FILE and uses them: copies, memsets and frees
 *         of its device memory, synchronizes, records and destroys its stream and event,
 *         gets a function from its module, launches its function. Prints one line per
 *         call ("refused OP: ERROR") and exits 0 only when every call failed.
 *     fault_client hold
 *         opens the device, prints "ready" and waits for a line on stdin (a client that
 *         occupies a --max-clients slot).
 *     fault_client lanes N
 *         N threads each allocate, use and free memory, all alive at once; prints
 *         "lanes: OK refused" (how many threads' calls worked, how many failed) and checks
 *         the main thread still works. Exit 0 unless the main thread failed.
 *     fault_client objects
 *         creates streams until the daemon refuses one; prints "objects: N then ERROR",
 *         destroys one and checks that a new one can then be created.
 *     fault_client big BYTES
 *         one host-to-device copy of BYTES; prints "big: RESULT".
 *     fault_client restart
 *         opens the device, prints "ready"; a second thread queues long kernels and
 *         prints "blocked" as it enters cuStreamSynchronize. After a line on stdin (the
 *         daemon was killed) it times a series of calls; after a second line (the daemon
 *         is back) it calls again. Prints what each returned and how long it took, and
 *         exits 0 when every call failed fast (under 5 s) with one and the same error, the
 *         blocked thread included.
 */
#include <cuda.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern const unsigned char e2e_drv_fatbin[];

static const char *cu_name(CUresult r)
{
    const char *s = NULL;
    return cuGetErrorName(r, &s) == CUDA_SUCCESS && s ? s : "?";
}

#define TRY(call)                                                                  \
    do {                                                                           \
        CUresult r_ = (call);                                                      \
        if (r_ != CUDA_SUCCESS) {                                                  \
            fprintf(stderr, "fault_client: %s failed: %s\n", #call, cu_name(r_)); \
            return 1;                                                              \
        }                                                                          \
    } while (0)

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static CUcontext ctx;

static int open_device(void)
{
    CUdevice dev;
    TRY(cuInit(0));
    TRY(cuDeviceGet(&dev, 0));
    TRY(cuDevicePrimaryCtxRetain(&ctx, dev));
    TRY(cuCtxSetCurrent(ctx));
    return 0;
}

/* ---- work: random load until killed ---- */

static CUfunction f_fill;

static uint32_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 11);
}

static void *worker(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    cuCtxSetCurrent(ctx);
    enum { SLOTS = 8, MAXB = 8 << 20 };
    CUdeviceptr buf[SLOTS] = {0};
    size_t size[SLOTS] = {0};
    unsigned char *host = malloc(MAXB);
    if (!host) return NULL;
    memset(host, 0x33, MAXB);
    CUstream st = NULL;
    cuStreamCreate(&st, CU_STREAM_NON_BLOCKING);
    for (;;) {
        unsigned k = rnd(&seed) % SLOTS, what = rnd(&seed) % 8;
        if (!buf[k]) {
            size[k] = 4096 + rnd(&seed) % MAXB;
            size[k] &= ~(size_t)3;
            if (cuMemAlloc(&buf[k], size[k]) != CUDA_SUCCESS) buf[k] = 0;
            continue;
        }
        switch (what) {
        case 0: cuMemcpyHtoD(buf[k], host, size[k]); break;
        case 1: cuMemcpyDtoH(host, buf[k], size[k]); break;
        case 2: cuMemsetD8Async(buf[k], (unsigned char)k, size[k], st); break;
        case 3: {
            unsigned v = k;
            int n = (int)(size[k] / 4);
            void *args[] = {&buf[k], &v, &n};
            cuLaunchKernel(f_fill, (unsigned)((n + 255) / 256), 1, 1, 256, 1, 1, 0, st, args, NULL);
            break;
        }
        case 4: cuStreamSynchronize(st); break;
        case 5: {
            CUevent e;
            if (cuEventCreate(&e, 0) == CUDA_SUCCESS) {
                cuEventRecord(e, st);
                cuEventSynchronize(e);
                cuEventDestroy(e);
            }
            break;
        }
        case 6: cuMemcpyHtoDAsync(buf[k], host, size[k], st); break;
        default:
            cuMemFree(buf[k]);
            buf[k] = 0;
        }
    }
    return NULL;
}

static int work(unsigned seed, int threads)
{
    printf("phase init\n");
    if (open_device()) return 1;
    CUmodule mod;
    TRY(cuModuleLoadData(&mod, e2e_drv_fatbin));
    TRY(cuModuleGetFunction(&f_fill, mod, "d_fill"));
    pthread_t th[16];
    if (threads < 1 || threads > 16) threads = 4;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(seed * 16u + (unsigned)i + 1))) return 1;
    printf("phase work\n");
    for (;;) pause();
}

/* ---- owner / intruder: another client's handles and memory ---- */

#define OWN_BYTES (1u << 20)

static int owner(const char *file)
{
    if (open_device()) return 1;
    CUdeviceptr p;
    CUstream st;
    CUevent ev;
    CUmodule mod;
    CUfunction fn;
    TRY(cuMemAlloc(&p, OWN_BYTES));
    TRY(cuMemsetD8(p, 0x5a, OWN_BYTES));
    TRY(cuStreamCreate(&st, CU_STREAM_NON_BLOCKING));
    TRY(cuEventCreate(&ev, 0));
    TRY(cuModuleLoadData(&mod, e2e_drv_fatbin));
    TRY(cuModuleGetFunction(&fn, mod, "d_fill"));
    FILE *f = fopen(file, "w");
    if (!f) return 1;
    fprintf(f, "%llx %llx %llx %llx %llx\n", (unsigned long long)p, (unsigned long long)(uintptr_t)st,
            (unsigned long long)(uintptr_t)ev, (unsigned long long)(uintptr_t)mod,
            (unsigned long long)(uintptr_t)fn);
    fclose(f);
    printf("ready\n");
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 1;
    unsigned char *h = malloc(OWN_BYTES);
    if (!h) return 1;
    TRY(cuMemcpyDtoH(h, p, OWN_BYTES));
    for (size_t i = 0; i < OWN_BYTES; i++)
        if (h[i] != 0x5a) {
            fprintf(stderr, "fault_client: byte %zu of the owner's buffer is 0x%02x, not 0x5a\n", i, h[i]);
            return 1;
        }
    TRY(cuEventRecord(ev, st));
    TRY(cuStreamSynchronize(st));
    TRY(cuEventSynchronize(ev));
    TRY(cuStreamDestroy(st));
    TRY(cuEventDestroy(ev));
    TRY(cuMemFree(p));
    free(h);
    printf("intact\n");
    return 0;
}

static int refused_count, accepted_count;

static void expect_refused(const char *what, CUresult r)
{
    if (r == CUDA_SUCCESS) {
        printf("ACCEPTED %s\n", what);
        accepted_count++;
    } else {
        printf("refused %s: %s\n", what, cu_name(r));
        refused_count++;
    }
}

static int intruder(const char *file)
{
    unsigned long long p, st, ev, mod, fn;
    FILE *f = fopen(file, "r");
    if (!f || fscanf(f, "%llx %llx %llx %llx %llx", &p, &st, &ev, &mod, &fn) != 5) {
        fprintf(stderr, "fault_client: cannot read %s\n", file);
        return 1;
    }
    fclose(f);
    if (open_device()) return 1;
    unsigned char *h = malloc(OWN_BYTES);
    if (!h) return 1;
    CUstream s = (CUstream)(uintptr_t)st;
    CUevent e = (CUevent)(uintptr_t)ev;
    expect_refused("cuMemcpyDtoH", cuMemcpyDtoH(h, (CUdeviceptr)p, 4096));
    expect_refused("cuMemcpyHtoD", cuMemcpyHtoD((CUdeviceptr)p, h, 4096));
    expect_refused("cuMemsetD8", cuMemsetD8((CUdeviceptr)p, 0, OWN_BYTES));
    expect_refused("cuMemsetD32 (inside)", cuMemsetD32((CUdeviceptr)p + 4096, 0, 16));
    expect_refused("cuMemFree", cuMemFree((CUdeviceptr)p));
    expect_refused("cuStreamSynchronize", cuStreamSynchronize(s));
    expect_refused("cuStreamQuery", cuStreamQuery(s));
    CUfunction got;
    expect_refused("cuModuleGetFunction", cuModuleGetFunction(&got, (CUmodule)(uintptr_t)mod, "d_fill"));
    /* Posted calls report their failure now or at the next synchronizing call. */
    CUresult r = cuEventRecord(e, NULL);
    if (r == CUDA_SUCCESS) r = cuCtxSynchronize();
    expect_refused("cuEventRecord", r);
    expect_refused("cuEventSynchronize", cuEventSynchronize(e));
    unsigned v = 1;
    int n = 16;
    void *args[] = {&p, &v, &n};
    r = cuLaunchKernel((CUfunction)(uintptr_t)fn, 1, 1, 1, 32, 1, 1, 0, NULL, args, NULL);
    if (r == CUDA_SUCCESS) r = cuCtxSynchronize();
    expect_refused("cuLaunchKernel", r);
    expect_refused("cuStreamDestroy", cuStreamDestroy(s));
    expect_refused("cuEventDestroy", cuEventDestroy(e));
    expect_refused("cuModuleUnload", cuModuleUnload((CUmodule)(uintptr_t)mod));
    /* This client still works. */
    CUdeviceptr mine;
    TRY(cuMemAlloc(&mine, 4096));
    TRY(cuMemsetD8(mine, 7, 4096));
    TRY(cuMemcpyDtoH(h, mine, 4096));
    TRY(cuMemFree(mine));
    free(h);
    printf("intruder: %d refused, %d accepted\n", refused_count, accepted_count);
    return accepted_count == 0 ? 0 : 1;
}

/* ---- restart: the daemon goes away under a running client ---- */

#define HASH_N (16 << 20)
static CUfunction f_hash;
static CUdeviceptr hash_buf;
static _Atomic int blocked_rc = -1;
static _Atomic double blocked_ms;
static double daemon_killed_at;

static void *blocked_thread(void *arg)
{
    (void)arg;
    cuCtxSetCurrent(ctx);
    CUstream st;
    if (cuStreamCreate(&st, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS) return NULL;
    unsigned key = 1;
    int n = HASH_N;
    void *args[] = {&hash_buf, &key, &n};
    for (int i = 0; i < 200; i++)
        cuLaunchKernel(f_hash, HASH_N / 256, 1, 1, 256, 1, 1, 0, st, args, NULL);
    printf("blocked\n");
    CUresult r = cuStreamSynchronize(st);
    blocked_ms = now_ms();
    blocked_rc = (int)r;
    return NULL;
}

static CUresult mem_info(void)
{
    size_t fr, to;
    return cuMemGetInfo(&fr, &to);
}

static int restart(void)
{
    if (open_device()) return 1;
    CUmodule mod;
    TRY(cuModuleLoadData(&mod, e2e_drv_fatbin));
    TRY(cuModuleGetFunction(&f_hash, mod, "d_hash"));
    TRY(cuModuleGetFunction(&f_fill, mod, "d_fill"));
    TRY(cuMemAlloc(&hash_buf, (size_t)HASH_N * 4));
    printf("ready\n");
    pthread_t th;
    if (pthread_create(&th, NULL, blocked_thread, NULL)) return 1;
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 1; /* the daemon is gone */
    daemon_killed_at = now_ms();
    int bad = 0;
    CUresult first = CUDA_SUCCESS;
    unsigned char h[256];
    CUdeviceptr p = 0;
    for (int round = 0; round < 2; round++) {
        if (round == 1 && !fgets(line, sizeof line, stdin)) return 1; /* the daemon is back */
        struct {
            const char *name;
            CUresult r;
            double ms;
        } calls[6];
        int nc = 0;
#define TIME(label, expr)                                   \
        do {                                                \
            double t0_ = now_ms();                          \
            CUresult r_ = (expr);                           \
            calls[nc].name = label;                         \
            calls[nc].r = r_;                               \
            calls[nc++].ms = now_ms() - t0_;                \
        } while (0)
        TIME("cuMemcpyHtoD", cuMemcpyHtoD(hash_buf, h, sizeof h));
        TIME("cuMemAlloc", cuMemAlloc(&p, 4096));
        unsigned v = 3;
        int n = 64;
        void *args[] = {&hash_buf, &v, &n};
        TIME("cuLaunchKernel", cuLaunchKernel(f_fill, 1, 1, 1, 64, 1, 1, 0, NULL, args, NULL));
        TIME("cuCtxSynchronize", cuCtxSynchronize());
        TIME("cuMemcpyDtoH", cuMemcpyDtoH(h, hash_buf, sizeof h));
        TIME("cuMemGetInfo", mem_info());
#undef TIME
        for (int i = 0; i < nc; i++) {
            printf("%s %s: %s in %.1f ms\n", round ? "after restart" : "daemon gone", calls[i].name,
                   cu_name(calls[i].r), calls[i].ms);
            if (first == CUDA_SUCCESS) first = calls[i].r;
            if (calls[i].r == CUDA_SUCCESS || calls[i].r != first || calls[i].ms > 5000) bad++;
        }
    }
    for (int i = 0; i < 500 && blocked_rc < 0; i++) usleep(10000);
    if (blocked_rc < 0) {
        printf("the thread in cuStreamSynchronize is still blocked\n");
        bad++;
    } else {
        printf("blocked cuStreamSynchronize returned %s %.1f ms after the kill was reported\n",
               cu_name((CUresult)blocked_rc), blocked_ms - daemon_killed_at);
        if (blocked_rc != (int)first) bad++;
    }
    printf("restart: sticky error %s, %d bad\n", cu_name(first), bad);
    fflush(stdout);
    _exit(bad ? 1 : 0); /* the blocked thread may still be inside the library */
}

/* ---- limits ---- */

static _Atomic int lanes_ok, lanes_refused;
static pthread_barrier_t lanes_barrier;

static void *lane_thread(void *arg)
{
    (void)arg;
    CUdeviceptr p = 0;
    CUresult r = cuCtxSetCurrent(ctx);
    if (r == CUDA_SUCCESS) r = cuMemAlloc(&p, 4096);
    if (r == CUDA_SUCCESS) r = cuMemsetD8(p, 1, 4096);
    if (r == CUDA_SUCCESS) r = cuMemFree(p);
    if (r == CUDA_SUCCESS) lanes_ok++;
    else {
        lanes_refused++;
        printf("lane thread: %s\n", cu_name(r));
    }
    pthread_barrier_wait(&lanes_barrier); /* every thread (and lane) alive at once */
    return NULL;
}

static int lanes(int n)
{
    if (open_device()) return 1;
    if (n < 1 || n > 64) return 2;
    pthread_t th[64];
    pthread_barrier_init(&lanes_barrier, NULL, (unsigned)n);
    for (int i = 0; i < n; i++)
        if (pthread_create(&th[i], NULL, lane_thread, NULL)) return 1;
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    printf("lanes: %d %d\n", (int)lanes_ok, (int)lanes_refused);
    CUdeviceptr p;
    TRY(cuMemAlloc(&p, 4096));
    TRY(cuMemFree(p));
    return 0;
}

static int objects(void)
{
    if (open_device()) return 1;
    enum { MAX = 100000 };
    CUstream *s = calloc(MAX, sizeof *s);
    if (!s) return 1;
    int n = 0;
    CUresult r = CUDA_SUCCESS;
    while (n < MAX && (r = cuStreamCreate(&s[n], 0)) == CUDA_SUCCESS) n++;
    printf("objects: %d then %s\n", n, cu_name(r));
    if (n == 0 || r != CUDA_ERROR_OUT_OF_MEMORY) return 1;
    TRY(cuStreamDestroy(s[n - 1]));
    TRY(cuStreamCreate(&s[n - 1], 0));
    TRY(cuStreamSynchronize(s[n - 1]));
    for (int i = 0; i < n; i++) TRY(cuStreamDestroy(s[i]));
    free(s);
    printf("objects: freed, creating works again\n");
    return 0;
}

static int big(size_t bytes)
{
    if (open_device()) return 1;
    CUdeviceptr p;
    TRY(cuMemAlloc(&p, bytes));
    unsigned char *h = calloc(1, bytes);
    if (!h) return 1;
    CUresult r = cuMemcpyHtoD(p, h, bytes);
    free(h);
    printf("big: %s\n", cu_name(r));
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 2 && !strcmp(argv[1], "info")) {
        if (open_device()) return 1;
        size_t free_b = 0, total = 0;
        TRY(cuMemGetInfo(&free_b, &total));
        printf("free=%zu total=%zu\n", free_b, total);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "work")) return work((unsigned)strtoul(argv[2], NULL, 0), atoi(argv[3]));
    if (argc == 3 && !strcmp(argv[1], "owner")) return owner(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "intruder")) return intruder(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "restart")) return restart();
    if (argc == 2 && !strcmp(argv[1], "hold")) {
        if (open_device()) return 1;
        printf("ready\n");
        char line[64];
        return fgets(line, sizeof line, stdin) ? 0 : 1;
    }
    if (argc == 3 && !strcmp(argv[1], "lanes")) return lanes(atoi(argv[2]));
    if (argc == 2 && !strcmp(argv[1], "objects")) return objects();
    if (argc == 3 && !strcmp(argv[1], "big")) return big(strtoull(argv[2], NULL, 0));
    fprintf(stderr, "usage: fault_client info | work SEED THREADS | owner FILE | intruder FILE | restart | hold |\n"
                    "       lanes N | objects | big BYTES\n");
    return 2;
}

/*
 * Startup benchmark: how long a short-lived CUDA process (an Ollama discovery probe,
 * `nvidia-smi`-like tools) takes from its start to its first device answer through vgpu.
 *
 *     startup [-n RUNS] --lib DIR ADDR...
 *         for each daemon address (unix:PATH, tcp:HOST:PORT), RUNS times: fork, exec this
 *         program in child mode with vgpu's libcuda.so.1 (DIR) first on LD_LIBRARY_PATH and
 *         VGPU_SERVER=ADDR, wait for it to exit; print a table of medians and p99s (ms).
 *     startup --child FORK_NS
 *         the tiny program: dlopen("libcuda.so.1"), cuInit, cuDeviceGetCount,
 *         cuDeviceGetName, exit. Reports on fd 3 when each step ended, in ns since the
 *         parent's fork (CLOCK_MONOTONIC is one clock for all processes).
 *
 * Columns: fork->exit (the parent's view, exit included), fork->main (exec and dynamic
 * loading of the program), main->answer (dlopen to the device name) and its parts:
 * dlopen, cuInit (connect, the daemon's HELLO = worker start, INIT, DEVICE_INFO), and
 * count+name (answered locally from cuInit's cache).
 * Not a test: bench/run starts a daemon and runs this; `make bench` runs bench/run.
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef int (*pfn_init)(unsigned int);
typedef int (*pfn_count)(int *);
typedef int (*pfn_get)(int *, int);
typedef int (*pfn_name)(char *, int, int);

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- child ---- */

enum { T_MAIN, T_DLOPEN, T_INIT, T_ANSWER, T_COUNT };

static int child(const char *fork_ns_text)
{
    uint64_t t[T_COUNT];
    t[T_MAIN] = now_ns();
    uint64_t fork_ns = strtoull(fork_ns_text, NULL, 10);
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    t[T_DLOPEN] = now_ns();
    if (!h) {
        fprintf(stderr, "startup: dlopen libcuda.so.1: %s\n", dlerror());
        return 1;
    }
    pfn_init init = (pfn_init)dlsym(h, "cuInit");
    pfn_count count = (pfn_count)dlsym(h, "cuDeviceGetCount");
    pfn_get get = (pfn_get)dlsym(h, "cuDeviceGet");
    pfn_name name = (pfn_name)dlsym(h, "cuDeviceGetName");
    if (!init || !count || !get || !name) return 1;
    int rc = init(0);
    t[T_INIT] = now_ns();
    int n = 0, dev = 0;
    char buf[256] = "";
    if (rc == 0) rc = count(&n);
    if (rc == 0 && n > 0) rc = get(&dev, 0);
    if (rc == 0 && n > 0) rc = name(buf, sizeof buf, dev);
    t[T_ANSWER] = now_ns();
    if (rc != 0 || n <= 0 || !buf[0]) {
        fprintf(stderr, "startup: no device answer (error %d, %d devices)\n", rc, n);
        return 1;
    }
    char line[256];
    int len = snprintf(line, sizeof line, "%llu %llu %llu %llu %s\n", (unsigned long long)(t[T_MAIN] - fork_ns),
                       (unsigned long long)(t[T_DLOPEN] - fork_ns), (unsigned long long)(t[T_INIT] - fork_ns),
                       (unsigned long long)(t[T_ANSWER] - fork_ns), buf);
    if (write(3, line, (size_t)len) != len) return 1;
    return 0;
}

/* ---- parent ---- */

enum { C_TOTAL, C_TO_MAIN, C_MAIN_TO_ANSWER, C_DLOPEN, C_INIT, C_LOCAL, C_NCOLS };
static const char *col_name[C_NCOLS] = {"fork->exit", "fork->main", "main->answer", "  dlopen", "  cuInit",
                                        "  count+name"};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* nearest-rank percentile of sorted v[0..n-1] */
static double pct(const double *v, int n, double p)
{
    int k = (int)(p / 100.0 * n + 0.999999);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

/* One run; fills ms[C_NCOLS]. 0 on success. */
static int one_run(const char *self, const char *lib, const char *addr, double *ms, char *devname, size_t namelen)
{
    int fds[2];
    if (pipe(fds)) return -1;
    char fork_text[32];
    uint64_t t0 = now_ns();
    snprintf(fork_text, sizeof fork_text, "%llu", (unsigned long long)t0);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fds[0]);
        if (fds[1] != 3) {
            dup2(fds[1], 3);
            close(fds[1]);
        }
        setenv("LD_LIBRARY_PATH", lib, 1);
        setenv("VGPU_SERVER", addr, 1);
        execl(self, "startup", "--child", fork_text, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[512];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fds[0], line + got, sizeof line - 1 - got);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        break;
    }
    line[got] = 0;
    close(fds[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    uint64_t t1 = now_ns();
    unsigned long long to_main, to_dlopen, to_init, to_answer;
    int off = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 ||
        sscanf(line, "%llu %llu %llu %llu %n", &to_main, &to_dlopen, &to_init, &to_answer, &off) != 4)
        return -1;
    snprintf(devname, namelen, "%s", line + off);
    devname[strcspn(devname, "\n")] = 0;
    ms[C_TOTAL] = (double)(t1 - t0) / 1e6;
    ms[C_TO_MAIN] = (double)to_main / 1e6;
    ms[C_MAIN_TO_ANSWER] = (double)(to_answer - to_main) / 1e6;
    ms[C_DLOPEN] = (double)(to_dlopen - to_main) / 1e6;
    ms[C_INIT] = (double)(to_init - to_dlopen) / 1e6;
    ms[C_LOCAL] = (double)(to_answer - to_init) / 1e6;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--child") == 0) return child(argv[2]);
    int runs = 50;
    const char *lib = NULL;
    int first_addr = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            runs = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--lib") == 0 && i + 1 < argc) {
            lib = argv[++i];
        } else {
            first_addr = i;
            break;
        }
    }
    if (!lib || !first_addr || runs < 1 || runs > 100000) {
        fprintf(stderr, "usage: startup [-n RUNS] --lib DIR ADDR...\n");
        return 2;
    }
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) return 1;
    self[sl] = 0;

    printf("%d runs per transport; ms; median / p99 (nearest rank)\n", runs);
    printf("%-34s", "");
    for (int c = 0; c < C_NCOLS; c++) printf(" %17s", col_name[c]);
    printf("\n");
    int failed = 0;
    char devname[256] = "";
    for (int a = first_addr; a < argc; a++) {
        const char *addr = argv[a];
        double *v[C_NCOLS];
        for (int c = 0; c < C_NCOLS; c++) v[c] = calloc((size_t)runs, sizeof(double));
        double ms[C_NCOLS];
        int ok = one_run(self, lib, addr, ms, devname, sizeof devname) == 0; /* warm-up, not counted */
        for (int r = 0; ok && r < runs; r++) {
            if (one_run(self, lib, addr, ms, devname, sizeof devname)) {
                ok = 0;
                break;
            }
            for (int c = 0; c < C_NCOLS; c++) v[c][r] = ms[c];
        }
        printf("%-34.34s", addr);
        if (!ok) {
            printf(" FAILED (no device answer; see stderr)\n");
            failed = 1;
        } else {
            for (int c = 0; c < C_NCOLS; c++) {
                qsort(v[c], (size_t)runs, sizeof(double), cmp_double);
                printf(" %8.2f / %6.2f", pct(v[c], runs, 50), pct(v[c], runs, 99));
            }
            printf("\n");
        }
        for (int c = 0; c < C_NCOLS; c++) free(v[c]);
    }
    if (devname[0]) printf("(the device answered \"%s\")\n", devname);
    return failed;
}

/*
 * `vgpu bench`: the performance table. Runs the benchmark worker (bench/worker.c) once
 * per column — natively on the real driver when this machine has one, and through vgpu
 * over each transport — plus two baselines measured here (a bare unix-socket
 * ping-pong between two processes, and single-core memcpy bandwidth), and prints one
 * table of medians and p99s, or JSON with --json.
 *
 *   vgpu bench [--server ADDR]... [--backend auto|cuda|emu] [--quick] [--json] [--no-native]
 *
 * Without --server it starts a private vgpud (next to this program) listening on a unix
 * socket and on TCP at 127.0.0.1, with --backend (default auto). A unix address is
 * measured twice: with the shared-memory upgrade (column "shm") and without it
 * (VGPU_SHM=0, column "unix").
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "transport/transport.h"

#define MAX_COLUMNS 8
#define MAX_COPIES 96

struct copy_row {
    char dir[8], mem[16];
    unsigned long long bytes;
    double p50, p99; /* GB/s */
};

struct column {
    char name[16];
    char server[300]; /* empty: native */
    bool shm_off;
    bool ok;
    char device[512];
    double rtt_p50, rtt_p99;       /* us */
    double launch_p50, launch_p99; /* us per launch */
    struct copy_row copies[MAX_COPIES];
    int ncopies;
};

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_double);
    size_t k = (size_t)(p / 100.0 * (double)n + 0.5);
    if (k > 0) k--;
    if (k >= n) k = n - 1;
    return v[k];
}

static int exe_dir(char *out, size_t n)
{
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return -1;
    exe[len] = 0;
    snprintf(out, n, "%s", dirname(exe));
    return 0;
}

/* ---- baselines ---- */

/* Round trips of a 32-byte message between two processes over a unix socket pair. */
static int pingpong(int n, double *p50, double *p99)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    char msg[32] = {0};
    if (pid == 0) {
        close(sv[0]);
        for (;;) {
            size_t got = 0;
            while (got < sizeof msg) {
                ssize_t r = read(sv[1], msg + got, sizeof msg - got);
                if (r <= 0) _exit(0);
                got += (size_t)r;
            }
            if (write(sv[1], msg, sizeof msg) != (ssize_t)sizeof msg) _exit(0);
        }
    }
    close(sv[1]);
    double *t = malloc((size_t)n * sizeof *t);
    int rc = t ? 0 : -1;
    for (int i = -n / 10; rc == 0 && i < n; i++) {
        double t0 = now_us();
        size_t got = 0;
        if (write(sv[0], msg, sizeof msg) != (ssize_t)sizeof msg) rc = -1;
        while (rc == 0 && got < sizeof msg) {
            ssize_t r = read(sv[0], msg + got, sizeof msg - got);
            if (r <= 0) rc = -1;
            else got += (size_t)r;
        }
        if (i >= 0 && rc == 0) t[i] = now_us() - t0;
    }
    close(sv[0]);
    waitpid(pid, NULL, 0);
    if (rc == 0) {
        *p50 = percentile(t, (size_t)n, 50);
        *p99 = percentile(t, (size_t)n, 99);
    }
    free(t);
    return rc;
}

/* Single-core memcpy bandwidth over 64 MiB buffers, GB/s (median of 9). */
static double memcpy_gbps(void)
{
    size_t n = 64u << 20;
    char *a = malloc(n), *b = malloc(n);
    if (!a || !b) {
        free(a);
        free(b);
        return 0;
    }
    memset(a, 1, n);
    memset(b, 2, n);
    double t[9];
    for (int i = 0; i < 9; i++) {
        double t0 = now_us();
        memcpy(i & 1 ? a : b, i & 1 ? b : a, n);
        t[i] = now_us() - t0;
    }
    volatile char sink = a[n / 2] + b[n / 3];
    (void)sink;
    free(a);
    free(b);
    return (double)n / percentile(t, 9, 50) / 1e3;
}

/* ---- the worker ---- */

static void parse_line(struct column *c, char *line)
{
    char dir[8], mem[16];
    unsigned long long bytes;
    double a, b;
    if (!strncmp(line, "device ", 7)) {
        line[strcspn(line, "\n")] = 0;
        snprintf(c->device, sizeof c->device, "%s", line + 7);
    } else if (sscanf(line, "rtt_us %lf %lf", &a, &b) == 2) {
        c->rtt_p50 = a, c->rtt_p99 = b;
    } else if (sscanf(line, "launch_us %lf %lf", &a, &b) == 2) {
        c->launch_p50 = a, c->launch_p99 = b;
    } else if (sscanf(line, "copy %7s %15s %llu %lf %lf", dir, mem, &bytes, &a, &b) == 5 && c->ncopies < MAX_COPIES) {
        struct copy_row *r = &c->copies[c->ncopies++];
        snprintf(r->dir, sizeof r->dir, "%s", dir);
        snprintf(r->mem, sizeof r->mem, "%s", mem);
        r->bytes = bytes, r->p50 = a, r->p99 = b;
    }
}

/* Run the worker for one column; its stderr goes to ours only when it fails. */
static void run_column(struct column *c, const char *worker, const char *lib_dir, bool quick)
{
    int out[2];
    char errpath[] = "/tmp/vgpu-bench-err.XXXXXX";
    int errfd = mkstemp(errpath);
    if (errfd < 0 || pipe2(out, O_CLOEXEC)) return;
    unlink(errpath);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(errfd, 2);
        if (c->server[0]) {
            const char *old = getenv("LD_LIBRARY_PATH");
            char path[PATH_MAX * 2];
            snprintf(path, sizeof path, "%s%s%s", lib_dir, old && *old ? ":" : "", old && *old ? old : "");
            setenv("LD_LIBRARY_PATH", path, 1);
            setenv("VGPU_SERVER", c->server, 1);
            if (c->shm_off) setenv("VGPU_SHM", "0", 1);
            else unsetenv("VGPU_SHM");
        }
        execl(worker, worker, quick ? "--quick" : NULL, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) parse_line(c, line);
    if (f) fclose(f);
    int status = 0;
    waitpid(pid, &status, 0);
    c->ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && c->ncopies > 0;
    if (!c->ok && c->server[0]) { /* native failing just means no driver here */
        fprintf(stderr, "vgpu bench: the %s run failed:\n", c->name);
        lseek(errfd, 0, SEEK_SET);
        char buf[4096];
        ssize_t n = read(errfd, buf, sizeof buf - 1);
        if (n > 0) fwrite(buf, 1, (size_t)n, stderr);
    }
    close(errfd);
}

/* ---- a private daemon ---- */

static pid_t daemon_pid;
static char daemon_dir[64];

static int free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) && !getsockname(fd, (struct sockaddr *)&a, &len))
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static int start_daemon(const char *bin_dir, const char *backend, char *unix_addr, size_t ulen, char *tcp_addr,
                        size_t tlen)
{
    snprintf(daemon_dir, sizeof daemon_dir, "/tmp/vgpu-bench.XXXXXX");
    if (!mkdtemp(daemon_dir)) return -1;
    int port = free_tcp_port();
    if (port < 0) return -1;
    snprintf(unix_addr, ulen, "unix:%s/vgpud.sock", daemon_dir);
    snprintf(tcp_addr, tlen, "tcp:127.0.0.1:%d", port);
    char vgpud[PATH_MAX + 8], log[128], token_file[128];
    snprintf(vgpud, sizeof vgpud, "%s/vgpud", bin_dir);
    snprintf(log, sizeof log, "%s/vgpud.log", daemon_dir);
    /* TCP needs a token: a fresh one, which the measured programs inherit as VGPU_TOKEN
     * (so the TCP columns include authentication, as real clients do). */
    snprintf(token_file, sizeof token_file, "%s/token", daemon_dir);
    uint8_t raw[16];
    char token[2 * sizeof raw + 1];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) return -1;
    for (size_t i = 0; i < sizeof raw; i++) snprintf(token + 2 * i, 3, "%02x", raw[i]);
    int tfd = open(token_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (tfd < 0 || write(tfd, token, strlen(token)) != (ssize_t)strlen(token)) {
        if (tfd >= 0) close(tfd);
        return -1;
    }
    close(tfd);
    setenv("VGPU_TOKEN", token, 1);
    daemon_pid = fork();
    if (daemon_pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0) dup2(fd, 2);
        execl(vgpud, vgpud, "--listen", unix_addr, "--listen", tcp_addr, "--backend", backend, "--token-file",
              token_file, (char *)NULL);
        _exit(127);
    }
    if (daemon_pid < 0) return -1;
    for (int i = 0; i < 400; i++) { /* up to 20 s: the cuda backend initialises the driver */
        struct vgpu_conn *c = NULL;
        char err[256];
        if (!vgpu_connect(unix_addr, 200, &c, err, sizeof err)) {
            vgpu_conn_close(c);
            return 0;
        }
        if (waitpid(daemon_pid, NULL, WNOHANG) == daemon_pid) break;
        usleep(50000);
    }
    fprintf(stderr, "vgpu bench: vgpud did not start; its log is %s\n", log);
    return -1;
}

static void stop_daemon(void)
{
    if (daemon_pid > 0) {
        kill(daemon_pid, SIGTERM);
        waitpid(daemon_pid, NULL, 0);
        daemon_pid = 0;
        char path[128];
        snprintf(path, sizeof path, "%s/vgpud.log", daemon_dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/token", daemon_dir);
        unlink(path);
        rmdir(daemon_dir);
    }
}

/* ---- output ---- */

static const char *size_name(unsigned long long b, char *buf, size_t n)
{
    if (b >= (1ull << 20)) snprintf(buf, n, "%llu MiB", b >> 20);
    else snprintf(buf, n, "%llu KiB", b >> 10);
    return buf;
}

static const struct copy_row *find_copy(const struct column *c, const struct copy_row *like)
{
    for (int i = 0; i < c->ncopies; i++)
        if (c->copies[i].bytes == like->bytes && !strcmp(c->copies[i].dir, like->dir) &&
            !strcmp(c->copies[i].mem, like->mem))
            return &c->copies[i];
    return NULL;
}

static void print_table(struct column *cols, int n, double pp50, double pp99, double mcpy)
{
    printf("baselines: unix-socket ping-pong p50 %.2f us, p99 %.2f us; memcpy (1 core) %.2f GB/s\n", pp50, pp99,
           mcpy);
    for (int i = 0; i < n; i++)
        if (cols[i].ok) printf("%-7s %s%s%s\n", cols[i].name, cols[i].device, cols[i].server[0] ? " via " : "",
                               cols[i].server);
    printf("\n%-28s", "median / p99");
    for (int i = 0; i < n; i++) printf(" %19s", cols[i].name);
    printf("\n%-28s", "round trip (us)");
    for (int i = 0; i < n; i++)
        if (cols[i].ok) printf(" %9.2f /%8.2f", cols[i].rtt_p50, cols[i].rtt_p99);
        else printf(" %19s", "n/a");
    printf("\n%-28s", "launches (M/s)");
    for (int i = 0; i < n; i++)
        if (cols[i].ok && cols[i].launch_p50 > 0)
            printf(" %9.3f /%8.3f", 1.0 / cols[i].launch_p50, 1.0 / cols[i].launch_p99);
        else printf(" %19s", "n/a");
    const struct column *ref = NULL;
    for (int i = 0; i < n && !ref; i++)
        if (cols[i].ok) ref = &cols[i];
    for (int k = 0; ref && k < ref->ncopies; k++) {
        char sz[32], label[64];
        snprintf(label, sizeof label, "%s %s %s (GB/s)", ref->copies[k].dir, ref->copies[k].mem,
                 size_name(ref->copies[k].bytes, sz, sizeof sz));
        printf("\n%-28s", label);
        for (int i = 0; i < n; i++) {
            const struct copy_row *r = cols[i].ok ? find_copy(&cols[i], &ref->copies[k]) : NULL;
            if (r) printf(" %9.3f /%8.3f", r->p50, r->p99);
            else printf(" %19s", "n/a");
        }
    }
    printf("\n");
}

static void print_json(struct column *cols, int n, double pp50, double pp99, double mcpy)
{
    printf("{\"baselines\":{\"unix_pingpong_us\":{\"p50\":%.3f,\"p99\":%.3f},\"memcpy_gbps\":%.3f},\"columns\":[",
           pp50, pp99, mcpy);
    for (int i = 0; i < n; i++) {
        const struct column *c = &cols[i];
        printf("%s{\"name\":\"%s\",\"ok\":%s", i ? "," : "", c->name, c->ok ? "true" : "false");
        if (c->ok) {
            printf(",\"device\":\"");
            for (const char *p = c->device; *p; p++)
                if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) putchar(*p);
            printf("\",\"rtt_us\":{\"p50\":%.3f,\"p99\":%.3f},\"launches_per_s\":{\"p50\":%.0f,\"p99\":%.0f},\"copies\":[",
                   c->rtt_p50, c->rtt_p99, 1e6 / c->launch_p50, 1e6 / c->launch_p99);
            for (int k = 0; k < c->ncopies; k++)
                printf("%s{\"dir\":\"%s\",\"mem\":\"%s\",\"bytes\":%llu,\"gbps\":{\"p50\":%.3f,\"p99\":%.3f}}",
                       k ? "," : "", c->copies[k].dir, c->copies[k].mem, c->copies[k].bytes, c->copies[k].p50,
                       c->copies[k].p99);
            printf("]");
        }
        printf("}");
    }
    printf("]}\n");
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vgpu bench [--server ADDR]... [--backend auto|cuda|emu] [--quick] [--json] [--no-native]\n"
               "  without --server, a private vgpud is started (unix socket and TCP on 127.0.0.1)\n");
}

static void add_server(struct column *cols, int *n, const char *addr)
{
    bool is_unix = !strncmp(addr, "unix:", 5);
    for (int pass = 0; pass < (is_unix ? 2 : 1) && *n < MAX_COLUMNS; pass++) {
        struct column *c = &cols[(*n)++];
        memset(c, 0, sizeof *c);
        snprintf(c->server, sizeof c->server, "%s", addr);
        c->shm_off = is_unix && pass == 1;
        const char *net = !strncmp(addr, "vsock:", 6) ? "vsock" : !strncmp(addr, "ivshmem:", 8) ? "ivshmem" : "tcp";
        snprintf(c->name, sizeof c->name, "%s", is_unix ? (pass == 0 ? "shm" : "unix") : net);
    }
}

int cmd_bench(int argc, char **argv)
{
    const char *servers[4];
    int nservers = 0;
    const char *backend = "auto";
    bool quick = false, json = false, native = true;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--server") && i + 1 < argc && nservers < 4) servers[nservers++] = argv[++i];
        else if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--no-native")) native = false;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "vgpu bench: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    char bin_dir[PATH_MAX], lib_dir[PATH_MAX], worker[PATH_MAX + 32];
    if (exe_dir(bin_dir, sizeof bin_dir) || cli_lib_dir(lib_dir, sizeof lib_dir)) {
        fprintf(stderr, "vgpu bench: cannot find vgpu's libcuda.so.1 (set VGPU_LIB_DIR)\n");
        return 1;
    }
    snprintf(worker, sizeof worker, "%s/vgpu-bench-worker", bin_dir);
    if (access(worker, X_OK)) {
        fprintf(stderr, "vgpu bench: %s not found\n", worker);
        return 1;
    }
    static struct column cols[MAX_COLUMNS];
    int n = 0;
    if (native) {
        memset(&cols[n], 0, sizeof cols[n]);
        snprintf(cols[n++].name, sizeof cols[0].name, "native");
    }
    char unix_addr[300], tcp_addr[64];
    if (nservers == 0) {
        if (start_daemon(bin_dir, backend, unix_addr, sizeof unix_addr, tcp_addr, sizeof tcp_addr)) {
            stop_daemon();
            return 1;
        }
        add_server(cols, &n, unix_addr);
        add_server(cols, &n, tcp_addr);
    }
    for (int i = 0; i < nservers; i++) add_server(cols, &n, servers[i]);

    double pp50 = 0, pp99 = 0;
    pingpong(quick ? 2000 : 20000, &pp50, &pp99);
    double mcpy = memcpy_gbps();
    int failed = 0;
    for (int i = 0; i < n; i++) {
        if (!json) fprintf(stderr, "vgpu bench: measuring %s...\n", cols[i].name);
        run_column(&cols[i], worker, lib_dir, quick);
        failed += !cols[i].ok && cols[i].server[0];
    }
    stop_daemon();
    if (json) print_json(cols, n, pp50, pp99, mcpy);
    else print_table(cols, n, pp50, pp99, mcpy);
    return failed ? 1 : 0;
}

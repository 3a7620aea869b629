/*
 * vgpu: the command line tool.
 *
 *   vgpu run [--server ADDR] -- CMD [ARGS...]
 *       Runs CMD with vgpu's libcuda.so.1 first on its library path and VGPU_SERVER
 *       set, so an unmodified CUDA program uses the remote GPU (TRITON_LIBCUDA_PATH
 *       too, unless set: Triton looks for libcuda.so.1 through ldconfig).
 *   vgpu smi [--server ADDR] [--json]
 *       The devices a vgpud serves and the clients using them, like nvidia-smi
 *       (src/cli/smi.c).
 *   vgpu bench [--server ADDR]... [--quick] [--json]
 *       Round trips, launch rate and copy bandwidth, natively and over each transport
 *       (src/cli/bench.c).
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/proto.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: vgpu run [--server ADDR] -- CMD [ARGS...]   run a CUDA program on the remote GPU\n"
               "       vgpu smi [--server ADDR] [--json]           devices and clients of a vgpud\n"
               "       vgpu bench [--server ADDR]... [--quick] [--json]  latency, launch rate, bandwidth\n"
               "  ADDR: unix:PATH, tcp:HOST:PORT, vsock:CID:PORT or ivshmem:auto|PCI_ADDRESS|FILE\n"
               "        (default: $VGPU_SERVER, else server in $VGPU_CLIENT_CONF or /etc/vgpu/client.conf,\n"
               "        else %s)\n",
            VGPU_DEFAULT_SERVER);
}

int cli_lib_dir(char *out, size_t n)
{
    const char *env = getenv("VGPU_LIB_DIR");
    if (env && env[0]) {
        snprintf(out, n, "%s", env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return -1;
    exe[len] = 0;
    char *dir = dirname(exe);
    /* ../lib in the build tree, ../lib/vgpu where `make install` puts them. */
    static const char *const rel[] = {"../lib", "../lib/vgpu"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        snprintf(out, n, "%s/%s", dir, rel[i]);
        char real[PATH_MAX];
        if (realpath(out, real)) snprintf(out, n, "%s", real);
        char probe[PATH_MAX + 16];
        snprintf(probe, sizeof probe, "%s/libcuda.so.1", out);
        if (access(probe, R_OK) == 0) return 0;
    }
    return -1;
}

static int cmd_run(int argc, char **argv)
{
    const char *server = NULL;
    int i = 0;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        }
        if (!strcmp(argv[i], "--server") && i + 1 < argc) server = argv[++i];
        else if (!strncmp(argv[i], "--server=", 9)) server = argv[i] + 9;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "vgpu run: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else break; /* the command, without "--" */
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    char dir[PATH_MAX];
    if (cli_lib_dir(dir, sizeof dir)) {
        fprintf(stderr, "vgpu run: cannot find vgpu's libcuda.so.1 (set VGPU_LIB_DIR)\n");
        return 1;
    }
    const char *old = getenv("LD_LIBRARY_PATH");
    size_t len = strlen(dir) + (old ? strlen(old) : 0) + 2;
    char *path = malloc(len);
    if (!path) return 1;
    snprintf(path, len, "%s%s%s", dir, old && old[0] ? ":" : "", old && old[0] ? old : "");
    setenv("LD_LIBRARY_PATH", path, 1);
    free(path);
    if (server) setenv("VGPU_SERVER", server, 1);
    /* Triton links its launcher against the libcuda it finds with `ldconfig -p`, which on
     * a machine with a driver is the real one; this variable names ours instead. */
    setenv("TRITON_LIBCUDA_PATH", dir, 0);
    execvp(argv[i], &argv[i]);
    fprintf(stderr, "vgpu run: cannot run %s: %s\n", argv[i], strerror(errno));
    return 127;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "run")) return cmd_run(argc - 2, argv + 2);
    if (!strcmp(argv[1], "smi")) return cmd_smi(argc - 2, argv + 2);
    if (!strcmp(argv[1], "bench")) return cmd_bench(argc - 2, argv + 2);
    fprintf(stderr, "vgpu: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

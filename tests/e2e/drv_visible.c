/*
 * vgpu end-to-end test: CUDA_VISIBLE_DEVICES in the guest library.
 *
 *     drv_visible                      (run through vgpu, CUDA_VISIBLE_DEVICES unset or not)
 *
 * Part 1 checks the parser itself (src/guest/cuda/visible.c, compiled into this program)
 * against made-up four-device tables, since the emu backend has one device: ordering,
 * UUID prefixes, ambiguity, duplicates, the end of the list.
 * Part 2 runs the library: the program reads the daemon's devices with the variable
 * unset, then re-executes itself once per case with CUDA_VISIBLE_DEVICES set, and the
 * child checks what the driver API shows: cuInit's result, the device count, each
 * guest ordinal's UUID and name (guest order = the variable's order), and that calls
 * carrying ordinals to the daemon and back (primary contexts, cuCtxCreate, peer
 * queries, the pointer attribute DEVICE_ORDINAL, cuCtxGetDevice) use the guest's
 * numbering. With no device visible cuInit must return CUDA_ERROR_NO_DEVICE, with a
 * device named twice CUDA_ERROR_INVALID_DEVICE, and later calls CUDA_ERROR_NOT_INITIALIZED,
 * as NVIDIA's driver does (measured on CUDA 13.0, see src/guest/cuda/visible.c).
 *
 *     drv_visible --child LABEL ok|nodev|twice [UUID NAME]...
 *         (internal: one case: cuInit succeeds with the devices listed, in guest order, or
 *         fails with CUDA_ERROR_NO_DEVICE / CUDA_ERROR_INVALID_DEVICE)
 *
 * Every check prints "PASS name" or "FAIL name: why"; exit status 0 only if all passed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <cuda.h>

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "guest/cuda/visible.h"

static const char *cu_name(CUresult r)
{
    const char *s = NULL;
    return cuGetErrorName(r, &s) == CUDA_SUCCESS && s ? s : "?";
}

static void uuid_text(const unsigned char *u, char out[37])
{
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3],
             u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

/* ------------------------------------------------------------------------------ */
/* part 1: the parser on made-up tables                                           */

static const unsigned char fake_uuids[4][16] = {
    {0x89, 0x32, 0xf9, 0x37, 0xd7, 0x2c, 0x41, 0x06, 0xc1, 0x2f, 0x20, 0xbd, 0x9f, 0xae, 0xd9, 0xf6},
    {0x89, 0x32, 0xaa, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc},
    {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0},
    {0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89},
};

/* expected: the daemon ordinals, "" for none, e.g. "1,0"; "twice" for a repeated device */
static void parse_case(const char *spec, int ndev, const char *expected)
{
    int out[4] = {-1, -1, -1, -1};
    int n = vg_visible_resolve(spec, fake_uuids, ndev, out);
    char got[64] = "";
    if (n < 0) snprintf(got, sizeof got, "twice");
    for (int i = 0; i < n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", i ? "," : "", out[i]);
    char name[160];
    snprintf(name, sizeof name, "parse[\"%s\"/%d]", spec, ndev);
    check(strcmp(got, expected) == 0, name, "selected \"%s\", expected \"%s\"", got, expected);
}

static void part_parser(void)
{
    check_label = "parser";
    /* indices: the list's order, the end of the list, strtoul reading */
    parse_case("0", 4, "0");
    parse_case("2,1", 4, "2,1");
    parse_case("3,0,2", 4, "3,0,2");
    parse_case("0,2,-1,1", 4, "0,2"); /* NVIDIA's example: 0 and 2 visible, 1 not */
    parse_case("2,5,1", 4, "2");      /* out of range ends the list */
    parse_case("4", 4, "");
    parse_case("-1", 4, "");
    parse_case("", 4, "");
    parse_case(" ", 4, "");
    parse_case("0,,1", 4, "0"); /* an empty entry ends the list */
    parse_case("1,", 4, "1");
    parse_case(" 1 , 0 ", 4, "1,0");
    parse_case("\t2", 4, "2");
    parse_case("1gpu2,2ampere", 4, "1,2");
    parse_case("+3", 4, "3");
    parse_case("-0", 4, "0");
    parse_case("00", 4, "0");
    parse_case("0x1", 4, "0");
    parse_case("junk", 4, "");
    parse_case("junk,0", 4, "");
    parse_case("99999999999999999999", 4, "");
    /* a device named twice before the list ends is an error */
    parse_case("0,0", 4, "twice");
    parse_case("1,2,1", 4, "twice");
    parse_case(" 1,1", 4, "twice");
    parse_case("1 ,1", 4, "twice");
    parse_case("1,2,9,1", 4, "1,2");
    parse_case("1,junk,1", 4, "1");
    /* UUIDs: unique prefix, any case, dashes anywhere, digits past the 32nd ignored */
    parse_case("GPU-8932f937", 4, "0");
    parse_case("GPU-8932F937-D72C", 4, "0");
    parse_case("GPU-8932f937-d72c-4106-c12f-20bd9faed9f6", 4, "0");
    parse_case("GPU-8932f937-d72c-4106-c12f-20bd9faed9f60", 4, "0");
    parse_case("GPU-8932f937-d72c-4106-c12f-20bd9faed9f6-anything", 4, "0");
    parse_case("GPU-8932f937d72c", 4, "0");
    parse_case("GPU--8932-f937", 4, "0");
    parse_case("GPU-8932", 4, "");                 /* ambiguous: devices 0 and 1 */
    parse_case("GPU-abcdef01,GPU-8932a", 4, "3,1");
    parse_case("GPU-1,GPU-8932", 4, "2");          /* the ambiguous entry ends the list */
    parse_case("GPU-ffff", 4, "");
    parse_case("GPU-8932f937 ", 4, "");
    parse_case("GPU-8932f937xyz", 4, "");
    parse_case(" GPU-8932f937", 4, "");
    parse_case("gpu-8932f937", 4, "");
    parse_case("GPU-", 4, "");
    parse_case("GPU-", 1, "");                     /* no digits: matches nothing */
    parse_case("GPU--", 1, "");
    parse_case("GPU-1234,GPU-12345678-9a", 4, "twice");
    parse_case("GPU-abcd,GPU-1,GPU-abcdef", 4, "twice");
    /* "MIG-" is read like "GPU-" */
    parse_case("MIG-8932f937", 4, "0");
    parse_case("MIG-abcd,GPU-abcdef", 4, "twice");
    parse_case("GPU-abcd,MIG-1234", 4, "3,2");
    parse_case("MIG-", 4, "");
    parse_case("MIG-GPU-8932f937/1/0", 4, "");
    /* forms do not mix: the other form ends the list */
    parse_case("GPU-abcd,0", 4, "3");
    parse_case("GPU-abcd,3", 4, "3");
    parse_case("2,GPU-abcd", 4, "2");
    parse_case("2,GPU-1234", 4, "2");
    /* no devices at all */
    parse_case("0", 0, "");

    check(vg_visible_may_select("0") && vg_visible_may_select("\t0") && vg_visible_may_select("GPU-a") &&
              vg_visible_may_select("MIG-8") && vg_visible_may_select("GPU--a") && vg_visible_may_select("7,junk"),
          "may_select.yes", "an index or a UUID prefix first can select a device");
    check(!vg_visible_may_select("") && !vg_visible_may_select("-1,0") && !vg_visible_may_select("junk") &&
              !vg_visible_may_select(",0") && !vg_visible_may_select(" GPU-a") && !vg_visible_may_select("GPU-") &&
              !vg_visible_may_select("GPU-zz") && !vg_visible_may_select("MIG-GPU-a"),
          "may_select.no", "an empty, negative, junk or digitless first entry selects nothing");
    check_label = "";
}

/* ------------------------------------------------------------------------------ */
/* part 2, child side: one CUDA_VISIBLE_DEVICES value                             */

static int child(int argc, char **argv)
{
    check_label = argv[2];
    const char *outcome = argv[3];
    int want = (argc - 4) / 2; /* expected devices, guest order */
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    printf("info %s: CUDA_VISIBLE_DEVICES=\"%s\", expecting %s, %d device(s)\n", check_label, cvd ? cvd : "(unset)",
           outcome, want);
    fflush(stdout);

    CUresult r = cuInit(0);
    if (strcmp(outcome, "ok") != 0) {
        CUresult fail = strcmp(outcome, "twice") == 0 ? CUDA_ERROR_INVALID_DEVICE : CUDA_ERROR_NO_DEVICE;
        check(r == fail, "cuInit", "%s, expected %s", cu_name(r), cu_name(fail));
        r = cuInit(0);
        check(r == fail, "cuInit_again", "%s, expected %s", cu_name(r), cu_name(fail));
        int n = -1;
        r = cuDeviceGetCount(&n);
        check(r == CUDA_ERROR_NOT_INITIALIZED, "cuDeviceGetCount", "%s, expected CUDA_ERROR_NOT_INITIALIZED",
              cu_name(r));
        CUdevice d;
        r = cuDeviceGet(&d, 0);
        check(r == CUDA_ERROR_NOT_INITIALIZED, "cuDeviceGet", "%s, expected CUDA_ERROR_NOT_INITIALIZED", cu_name(r));
        int v = 0;
        r = cuDriverGetVersion(&v);
        check(r == CUDA_SUCCESS && v > 0, "cuDriverGetVersion", "%s, %d", cu_name(r), v);
        return check_failed ? 1 : 0;
    }
    if (!check(r == CUDA_SUCCESS, "cuInit", "%s", cu_name(r))) return 1;
    int n = -1;
    r = cuDeviceGetCount(&n);
    check(r == CUDA_SUCCESS && n == want, "cuDeviceGetCount", "%s, count %d, expected %d", cu_name(r), n, want);
    if (n != want) return 1;

    for (int i = 0; i < n; i++) {
        char what[64];
        CUdevice d = -1;
        r = cuDeviceGet(&d, i);
        snprintf(what, sizeof what, "dev%d.cuDeviceGet", i);
        check(r == CUDA_SUCCESS && d == i, what, "%s, device %d", cu_name(r), (int)d);
        CUuuid u;
        char text[37] = "";
        r = cuDeviceGetUuid_v2(&u, i);
        if (r == CUDA_SUCCESS) uuid_text((const unsigned char *)u.bytes, text);
        snprintf(what, sizeof what, "dev%d.uuid", i);
        check(r == CUDA_SUCCESS && strcmp(text, argv[4 + 2 * i]) == 0, what, "%s, GPU-%s, expected GPU-%s",
              cu_name(r), text, argv[4 + 2 * i]);
        char name[256] = "";
        r = cuDeviceGetName(name, sizeof name, i);
        snprintf(what, sizeof what, "dev%d.name", i);
        check(r == CUDA_SUCCESS && strcmp(name, argv[5 + 2 * i]) == 0, what, "%s, \"%s\"", cu_name(r), name);
    }
    CUdevice d = -1;
    r = cuDeviceGet(&d, n);
    check(r == CUDA_ERROR_INVALID_DEVICE, "cuDeviceGet_past_end", "%s", cu_name(r));
    CUcontext c = NULL;
    r = cuCtxCreate(&c, NULL, 0, n);
    check(r == CUDA_ERROR_INVALID_DEVICE, "cuCtxCreate_past_end", "%s", cu_name(r));
    r = cuDevicePrimaryCtxRetain(&c, n);
    check(r == CUDA_ERROR_INVALID_DEVICE, "cuDevicePrimaryCtxRetain_past_end", "%s", cu_name(r));

    /* every visible device through the calls that carry ordinals */
    for (int i = 0; i < n; i++) {
        char what[96];
        CUcontext pc = NULL;
        r = cuDevicePrimaryCtxRetain(&pc, i);
        snprintf(what, sizeof what, "dev%d.cuDevicePrimaryCtxRetain", i);
        if (!check(r == CUDA_SUCCESS && pc, what, "%s", cu_name(r))) continue;
        unsigned flags = 0;
        int active = -1;
        r = cuDevicePrimaryCtxGetState(i, &flags, &active);
        snprintf(what, sizeof what, "dev%d.cuDevicePrimaryCtxGetState", i);
        check(r == CUDA_SUCCESS && active == 1, what, "%s, active %d", cu_name(r), active);
        r = cuCtxSetCurrent(pc);
        snprintf(what, sizeof what, "dev%d.cuCtxSetCurrent", i);
        check(r == CUDA_SUCCESS, what, "%s", cu_name(r));
        CUdevice cur = -1;
        r = cuCtxGetDevice(&cur);
        snprintf(what, sizeof what, "dev%d.cuCtxGetDevice", i);
        check(r == CUDA_SUCCESS && cur == i, what, "%s, device %d", cu_name(r), (int)cur);
        CUdeviceptr p = 0;
        r = cuMemAlloc(&p, 4096);
        snprintf(what, sizeof what, "dev%d.cuMemAlloc", i);
        if (check(r == CUDA_SUCCESS, what, "%s", cu_name(r))) {
            int ord = -7;
            r = cuPointerGetAttribute(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, p);
            snprintf(what, sizeof what, "dev%d.pointer_DEVICE_ORDINAL", i);
            check(r == CUDA_SUCCESS && ord == i, what, "%s, ordinal %d", cu_name(r), ord);
            cuMemFree(p);
        }
        int can = -1;
        r = cuDeviceCanAccessPeer(&can, i, i);
        snprintf(what, sizeof what, "dev%d.cuDeviceCanAccessPeer_self", i);
        check(r == CUDA_SUCCESS && can == 0, what, "%s, %d", cu_name(r), can);
        cuCtxSetCurrent(NULL);
        r = cuDevicePrimaryCtxRelease(i);
        snprintf(what, sizeof what, "dev%d.cuDevicePrimaryCtxRelease", i);
        check(r == CUDA_SUCCESS, what, "%s", cu_name(r));
        r = cuDevicePrimaryCtxGetState(i, &flags, &active);
        snprintf(what, sizeof what, "dev%d.inactive_after_release", i);
        check(r == CUDA_SUCCESS && active == 0, what, "%s, active %d", cu_name(r), active);
    }
    /* a created context on the last visible device */
    r = cuCtxCreate(&c, NULL, 0, n - 1);
    if (check(r == CUDA_SUCCESS, "cuCtxCreate_last", "%s", cu_name(r))) {
        CUdevice cur = -1;
        r = cuCtxGetDevice(&cur);
        check(r == CUDA_SUCCESS && cur == n - 1, "cuCtxCreate_last.cuCtxGetDevice", "%s, device %d", cu_name(r),
              (int)cur);
        CUdeviceptr p = 0;
        if (cuMemAlloc(&p, 256) == CUDA_SUCCESS) {
            int ord = -7;
            r = cuPointerGetAttribute(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, p);
            check(r == CUDA_SUCCESS && ord == n - 1, "cuCtxCreate_last.pointer_DEVICE_ORDINAL", "%s, ordinal %d",
                  cu_name(r), ord);
            cuMemFree(p);
        }
        r = cuCtxDestroy(c);
        check(r == CUDA_SUCCESS, "cuCtxDestroy", "%s", cu_name(r));
    }
    return check_failed ? 1 : 0;
}

/* ------------------------------------------------------------------------------ */
/* part 2, parent side                                                            */

#define MAX_DEV 16
static int g_ndev;
static char g_uuid[MAX_DEV][37];
static char g_name[MAX_DEV][256];

/* Run this program as a child with CUDA_VISIBLE_DEVICES=value (NULL: unset), expecting
 * the devices listed in `expect` (parent ordinals, -1 terminated; empty: cuInit fails
 * with CUDA_ERROR_NO_DEVICE), or with twice set, CUDA_ERROR_INVALID_DEVICE. */
static void run_case_x(const char *label, const char *value, const int *expect, bool twice)
{
    char *args[5 + 2 * MAX_DEV];
    int k = 0;
    args[k++] = "drv_visible";
    args[k++] = "--child";
    args[k++] = (char *)label;
    args[k++] = twice ? "twice" : expect[0] < 0 ? "nodev" : "ok";
    for (int i = 0; !twice && expect[i] >= 0 && i < MAX_DEV; i++) {
        args[k++] = g_uuid[expect[i]];
        args[k++] = g_name[expect[i]];
    }
    args[k] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        check(0, label, "fork failed");
        return;
    }
    if (pid == 0) {
        if (value)
            setenv("CUDA_VISIBLE_DEVICES", value, 1);
        else
            unsetenv("CUDA_VISIBLE_DEVICES");
        execv("/proc/self/exe", args);
        perror("drv_visible: execv /proc/self/exe");
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
    }
    char what[128];
    snprintf(what, sizeof what, "case[%s]", label);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0, what, "child %s %d", WIFEXITED(st) ? "exit status" : "signal",
          WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

/* The shortest prefix (at least 8 characters) of device d's UUID that no other has. */
static void unique_prefix(int d, char *out, size_t n)
{
    size_t len = 8;
    for (; len < 36; len++) {
        int others = 0;
        for (int j = 0; j < g_ndev; j++)
            if (j != d && strncmp(g_uuid[j], g_uuid[d], len) == 0) others++;
        if (!others) break;
    }
    snprintf(out, n, "%.*s", (int)len, g_uuid[d]);
}

static int parent(void)
{
    part_parser();

    /* the daemon's devices, as the guest sees them with the variable unset */
    unsetenv("CUDA_VISIBLE_DEVICES");
    CUresult r = cuInit(0);
    if (!check(r == CUDA_SUCCESS, "daemon.cuInit", "%s", cu_name(r))) return 1;
    r = cuDeviceGetCount(&g_ndev);
    if (!check(r == CUDA_SUCCESS && g_ndev >= 1 && g_ndev <= MAX_DEV, "daemon.cuDeviceGetCount", "%s, %d",
               cu_name(r), g_ndev))
        return 1;
    for (int i = 0; i < g_ndev; i++) {
        CUuuid u;
        if (cuDeviceGetUuid_v2(&u, i) != CUDA_SUCCESS ||
            cuDeviceGetName(g_name[i], sizeof g_name[i], i) != CUDA_SUCCESS) {
            check(0, "daemon.device_facts", "device %d", i);
            return 1;
        }
        uuid_text((const unsigned char *)u.bytes, g_uuid[i]);
        printf("info device %d: %s GPU-%s\n", i, g_name[i], g_uuid[i]);
    }

    char p0[40], upper[40], v[256];
    unique_prefix(0, p0, sizeof p0);
    snprintf(upper, sizeof upper, "%s", p0);
    for (char *c = upper; *c; c++) *c = (char)toupper((unsigned char)*c);
    static const int none[] = {-1}, d0[] = {0, -1}, d1[] = {1, -1}, d10[] = {1, 0, -1};
#define run_case(label, value, expect) run_case_x(label, value, expect, false)
#define run_case_twice(label, value) run_case_x(label, value, none, true)

    int all[MAX_DEV + 1];
    for (int i = 0; i < g_ndev; i++) all[i] = i;
    all[g_ndev] = -1;
    run_case("unset", NULL, all);
    run_case("index0", "0", d0);
    snprintf(v, sizeof v, "%d", g_ndev);
    run_case("index_out_of_range", v, none);
    run_case_twice("duplicate", "0,0");
    run_case_twice("duplicate_spaces", "0 , 0");
    snprintf(v, sizeof v, "0,%d", g_ndev);
    run_case("stops_at_out_of_range", v, d0);
    snprintf(v, sizeof v, "0,%d,0", g_ndev);
    run_case("stops_before_repeat", v, d0);
    run_case("stops_at_negative", "0,-1,1", d0);
    run_case("stops_at_empty", "0,,0", d0);
    run_case("negative", "-1", none);
    run_case("empty", "", none);
    run_case("garbage", "garbage", none);
    run_case("leading_blank", " 0", d0);
    run_case("strtoul", "0gpu", d0);
    run_case("trailing_comma", "0,", d0);
    run_case("plus", "+0", d0);
    snprintf(v, sizeof v, "GPU-%s", p0);
    run_case("uuid_prefix", v, d0);
    snprintf(v, sizeof v, "GPU-%s", g_uuid[0]);
    run_case("uuid_full", v, d0);
    snprintf(v, sizeof v, "GPU-%s", upper);
    run_case("uuid_upper", v, d0);
    snprintf(v, sizeof v, "GPU-%.8s%.4s", g_uuid[0], g_uuid[0] + 9);
    run_case("uuid_no_dashes", v, d0);
    snprintf(v, sizeof v, "MIG-%s", p0);
    run_case("mig_prefix", v, d0);
    snprintf(v, sizeof v, "GPU-%s,0", p0);
    run_case("uuid_then_index", v, d0);
    snprintf(v, sizeof v, "0,GPU-%s", p0);
    run_case("index_then_uuid", v, d0);
    snprintf(v, sizeof v, "GPU-%s,GPU-%s", p0, g_uuid[0]);
    run_case_twice("uuid_duplicate", v);
    snprintf(v, sizeof v, "MIG-%s,GPU-%s", g_uuid[0], p0);
    run_case_twice("mig_gpu_duplicate", v);
    run_case("uuid_unknown", "GPU-zz", none);
    run_case("uuid_empty", "GPU-", none);
    snprintf(v, sizeof v, " GPU-%s", p0);
    run_case("uuid_leading_blank", v, none);
    snprintf(v, sizeof v, "gpu-%s", p0);
    run_case("uuid_lowercase_prefix", v, none);
    if (g_ndev >= 2) { /* a real multi-GPU host: renumbering */
        char p1[40];
        unique_prefix(1, p1, sizeof p1);
        run_case("index1", "1", d1);
        run_case("reversed", "1,0", d10);
        snprintf(v, sizeof v, "GPU-%s,GPU-%s", p1, p0);
        run_case("uuid_reversed", v, d10);
    } else {
        printf("info one device: the renumbering cases (\"1,0\") are covered by the parser checks only\n");
    }

    printf("%s: %d checks, %d failed\n", check_failed ? "FAIL" : "PASS", check_count, check_failed);
    return check_failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && strcmp(argv[1], "--child") == 0) return child(argc, argv);
    return parent();
}

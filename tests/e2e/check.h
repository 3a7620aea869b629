/*
 * Check reporting shared by the end-to-end C programs: one `PASS name` or
 * `FAIL name: why` line per check (thread-safe, flushed), counters, and a summary
 * line. The GPU suite compares these lines between native and vgpu runs, so a check's
 * name must not depend on the run.
 */
#ifndef VGPU_E2E_CHECK_H
#define VGPU_E2E_CHECK_H

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int check_count, check_failed;
static const char *check_label = ""; /* prefix "label." for every name while set */
static pthread_mutex_t check_lock = PTHREAD_MUTEX_INITIALIZER;

static int check(int ok, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4), unused));
static int check(int ok, const char *name, const char *fmt, ...)
{
    pthread_mutex_lock(&check_lock);
    check_count++;
    const char *dot = *check_label ? "." : "";
    if (ok) {
        printf("PASS %s%s%s\n", check_label, dot, name);
    } else {
        check_failed++;
        printf("FAIL %s%s%s", check_label, dot, name);
        if (fmt && *fmt) {
            va_list ap;
            printf(": ");
            va_start(ap, fmt);
            vprintf(fmt, ap);
            va_end(ap);
        }
        printf("\n");
    }
    fflush(stdout);
    pthread_mutex_unlock(&check_lock);
    return ok;
}

/* A check without a message: the failing line is reported. */
#define CHECK(name, cond) check((cond) ? 1 : 0, (name), "line %d", __LINE__)

/* A setup step that must succeed: a failure ends the program. */
#define CU(call)                                                                   \
    do {                                                                           \
        CUresult rc_ = (call);                                                     \
        if (rc_ != CUDA_SUCCESS) {                                                 \
            printf("FAIL %s returned %d (line %d)\n", #call, (int)rc_, __LINE__);   \
            exit(1);                                                               \
        }                                                                          \
    } while (0)

/* The summary line ("prog: N checks, M failed: OK|FAIL") and the exit status. */
static int check_summary(const char *prog) __attribute__((unused));
static int check_summary(const char *prog)
{
    printf("%s: %d checks, %d failed: %s\n", prog, check_count, check_failed, check_failed ? "FAIL" : "OK");
    return check_failed ? 1 : 0;
}

#endif

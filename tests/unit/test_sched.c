/*
 * Unit test of the compute share (src/server/sched.c) across processes, as vgpud's
 * workers use it: a shared region, tenants in forked children. Checks behaviour, never
 * timings: a tenant that becomes active starts level with the active ones (no banked
 * credit); a tenant ahead of an active one by more than a slice is delayed (and then
 * goes on: the wait is bounded); a tenant alone is never delayed; the engine is taken
 * again after a holder died holding it (robust mutex), without waiting out its bound.
 */
#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/sched.h"

static int failures;
#define CHECK(c)                                                        \
    do {                                                                \
        if (!(c)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); \
            failures++;                                                 \
        }                                                               \
    } while (0)

static struct sched_tenant_info *find(const char *name)
{
    static struct sched_tenant_info t[SCHED_TENANTS];
    int n = sched_snapshot(t, SCHED_TENANTS);
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

/* Run fn in a child process; its exit status (0: its checks passed). */
static int in_child(int (*fn)(void))
{
    pid_t pid = fork();
    if (pid == 0) _exit(fn());
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int tenant_b_catches_up(void)
{
    sched_join("b", 2, 1);
    uint64_t waited = sched_before_submit(); /* becomes active: level with "a" */
    struct sched_tenant_info *a = find("a"), *b = find("b");
    int bad = !a || !b || b->vtime < a->vtime || waited != 0;
    if (bad) fprintf(stderr, "FAIL tenant b: vtime %llu, a's %llu, waited %llu\n", b ? (unsigned long long)b->vtime : 0,
                     a ? (unsigned long long)a->vtime : 0, (unsigned long long)waited);
    return bad;
}

static int holder_dies(void)
{
    sched_join("c", 3, 1);
    if (!sched_engine_enter()) return 1;
    _exit(0); /* dies holding the engine */
}

int main(void)
{
    size_t bytes = (sched_shared_bytes() + 4095) / 4096 * 4096;
    void *region = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED || sched_shared_init(region)) {
        fprintf(stderr, "cannot set up the shared region\n");
        return 1;
    }
    sched_join("a", 1, 1);
    CHECK(sched_before_submit() == 0); /* alone: never delayed */
    sched_charge(1000000000ull);       /* a has used a second */
    struct sched_tenant_info *a = find("a");
    CHECK(a && a->used_ns == 1000000000ull && a->vtime == 1000000000ull && a->weight == 1);
    CHECK(sched_before_submit() == 0); /* still alone */

    /* b arrives (in another process): no credit for the time it was not there. */
    CHECK(in_child(tenant_b_catches_up) == 0);

    /* b is active and level with a's first second; a runs another 100 ms ahead: a waits
     * (b stays active, never catching up here, until it goes idle or the wait's bound). */
    sched_charge(100000000ull);
    usleep(2000); /* past the last check's validity (a millisecond) */
    uint64_t waited = sched_before_submit();
    CHECK(waited > 0);
    a = find("a");
    CHECK(a && a->delayed_ns >= waited);
    /* b has gone idle meanwhile: a is alone again. */
    CHECK(sched_before_submit() == 0);

    /* A weight divides the virtual time. */
    sched_join("w4", 9, 4);
    sched_charge(400000000ull);
    struct sched_tenant_info *w = find("w4");
    CHECK(w && w->weight == 4 && w->vtime == 100000000ull && w->used_ns == 400000000ull);

    /* The engine: taken and given back; taken again after a holder died holding it. */
    CHECK(sched_engine_enter());
    sched_engine_leave(1000);
    CHECK(in_child(holder_dies) == 0);
    CHECK(sched_engine_enter()); /* robust: the dead owner's lock is recovered, not waited out */
    sched_engine_leave(1000);

    if (failures) {
        fprintf(stderr, "test_sched: %d failed\n", failures);
        return 1;
    }
    printf("test_sched: all checks passed\n");
    return 0;
}

/* Unit test of mirrored-memory change detection and merging (common/mirror_diff.c):
 * runs cover exactly the changed blocks, respect the size limit and the end of the
 * buffer, and a merge takes the peer's changes while keeping local ones. A random
 * two-sided exchange ends with both copies equal to what each side wrote. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mirror_diff.h"

static int failures, checks;
#define CHECK(cond)                                                              \
    do {                                                                         \
        checks++;                                                                \
        if (!(cond)) {                                                           \
            failures++;                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

#define B VGPU_MIRROR_BLOCK

static void test_runs(void)
{
    size_t size = 5 * 4096 + 100; /* ends inside a block */
    uint8_t *buf = calloc(1, size), *shadow = calloc(1, size);
    size_t off = 1, len = 1;
    CHECK(!vgpu_mirror_next_diff(buf, shadow, size, 0, 1 << 20, &off, &len));
    buf[3 * B + 7] = 1;
    buf[4 * B] = 2; /* the next block: one run of two */
    buf[9000] = 3;
    buf[size - 1] = 4;
    CHECK(vgpu_mirror_next_diff(buf, shadow, size, 0, 1 << 20, &off, &len));
    CHECK(off == 3 * B && len == 2 * B);
    CHECK(vgpu_mirror_next_diff(buf, shadow, size, off + len, 1 << 20, &off, &len));
    CHECK(off == 9000 / B * B && len == B);
    CHECK(vgpu_mirror_next_diff(buf, shadow, size, off + len, 1 << 20, &off, &len));
    CHECK(off == (size - 1) / B * B && off + len == size); /* cut at the end */
    CHECK(!vgpu_mirror_next_diff(buf, shadow, size, off + len, 1 << 20, &off, &len));
    /* the limit */
    memset(buf, 0xee, size);
    CHECK(vgpu_mirror_next_diff(buf, shadow, size, 0, 3 * B, &off, &len));
    CHECK(off == 0 && len == 3 * B);
    CHECK(vgpu_mirror_next_diff(buf, shadow, size, 3 * B + 5, 3 * B, &off, &len));
    CHECK(off == 3 * B && len == 3 * B);
    /* a tiny buffer */
    uint8_t a[3] = {1, 2, 3}, s[3] = {1, 0, 3};
    CHECK(vgpu_mirror_next_diff(a, s, 3, 0, B, &off, &len) && off == 0 && len == 3);
    free(buf);
    free(shadow);
}

static void test_merge(void)
{
    uint8_t buf[200], shadow[200], data[200];
    for (int i = 0; i < 200; i++) buf[i] = shadow[i] = data[i] = (uint8_t)i;
    buf[10] = 0xaa;  /* a local change the peer has not seen */
    data[20] = 0xbb; /* the peer's change */
    data[150] = 0xcc;
    vgpu_mirror_merge(buf, shadow, data, sizeof buf);
    CHECK(buf[10] == 0xaa && shadow[10] == 10);
    CHECK(buf[20] == 0xbb && shadow[20] == 0xbb);
    CHECK(buf[150] == 0xcc && shadow[150] == 0xcc);
    CHECK(buf[11] == 11 && buf[149] == 149);
}

/* Two sides write disjoint random bytes, then exchange their runs both ways. */
static void test_exchange(void)
{
    size_t size = 3 * 4096 + 1234;
    uint8_t *g = calloc(1, size), *gs = calloc(1, size), *d = calloc(1, size), *ds = calloc(1, size);
    uint8_t *want = calloc(1, size), *wire = malloc(size);
    srand(7);
    for (int round = 0; round < 20; round++) {
        for (int k = 0; k < 300; k++) {
            size_t i = (size_t)rand() % size;
            uint8_t v = (uint8_t)(rand() | 1);
            if (i % 2) g[i] = v; /* the guest writes odd bytes, the device even ones */
            else d[i] = v;
            want[i] = v;
        }
        /* guest -> device, then device -> guest, as push and pull do */
        size_t from = 0, off, len;
        while (vgpu_mirror_next_diff(g, gs, size, from, 1024, &off, &len)) {
            memcpy(wire, g + off, len);
            memcpy(gs + off, wire, len);
            vgpu_mirror_merge(d + off, ds + off, wire, len);
            from = off + len;
        }
        from = 0;
        while (vgpu_mirror_next_diff(d, ds, size, from, 1024, &off, &len)) {
            memcpy(wire, d + off, len);
            memcpy(ds + off, wire, len);
            vgpu_mirror_merge(g + off, gs + off, wire, len);
            from = off + len;
        }
        CHECK(memcmp(g, want, size) == 0);
        CHECK(memcmp(d, want, size) == 0);
        CHECK(memcmp(gs, want, size) == 0 && memcmp(ds, want, size) == 0);
    }
    free(g), free(gs), free(d), free(ds), free(want), free(wire);
}

int main(void)
{
    test_runs();
    test_merge();
    test_exchange();
    printf("test_mirror_diff: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

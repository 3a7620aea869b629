/* Unit test of the wire codec and frames: round trips of every field type, and
 * rejection of truncated, oversized and malformed input without reading past it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/frame.h"
#include "common/util.h"
#include "common/wire.h"

static int failures, checks;
#define CHECK(cond)                                                              \
    do {                                                                         \
        checks++;                                                                \
        if (!(cond)) {                                                           \
            failures++;                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

static void test_round_trip(void)
{
    struct wire_buf b;
    wire_buf_init(&b);
    wire_put_u8(&b, 0xab);
    wire_put_u16(&b, 0xbeef);
    wire_put_u32(&b, 0xdeadbeef);
    wire_put_u64(&b, 0x0123456789abcdefull);
    wire_put_i32(&b, -5);
    wire_put_f32(&b, 1.5f);
    wire_put_bytes(&b, "xyz", 3);
    wire_put_str(&b, "hello");
    wire_put_str(&b, NULL);
    wire_put_str(&b, "");
    CHECK(!b.oom);
    /* little endian on the wire whatever the host */
    CHECK(b.data[1] == 0xef && b.data[2] == 0xbe);
    struct wire_rd r;
    wire_rd_init(&r, b.data, b.len);
    CHECK(wire_get_u8(&r) == 0xab);
    CHECK(wire_get_u16(&r) == 0xbeef);
    CHECK(wire_get_u32(&r) == 0xdeadbeef);
    CHECK(wire_get_u64(&r) == 0x0123456789abcdefull);
    CHECK(wire_get_i32(&r) == -5);
    CHECK(wire_get_f32(&r) == 1.5f);
    size_t n;
    const char *p = wire_get_bytes(&r, 16, &n);
    CHECK(p && n == 3 && memcmp(p, "xyz", 3) == 0);
    char s[16];
    CHECK(wire_get_str(&r, s, sizeof s) && strcmp(s, "hello") == 0);
    CHECK(wire_get_str(&r, s, sizeof s) == NULL && !r.bad);
    CHECK(wire_get_str(&r, s, sizeof s) && s[0] == 0);
    CHECK(wire_rd_end(&r));
    /* reading past the end latches bad and yields zeros */
    CHECK(wire_get_u32(&r) == 0 && r.bad && !wire_rd_end(&r));
    wire_buf_free(&b);
}

static void test_truncation(void)
{
    struct wire_buf b;
    wire_buf_init(&b);
    wire_put_u64(&b, 7);
    wire_put_str(&b, "abcdef");
    wire_put_bytes(&b, "12345678", 8);
    for (size_t len = 0; len < b.len; len++) {
        struct wire_rd r;
        wire_rd_init(&r, b.data, len);
        char s[16];
        size_t n;
        wire_get_u64(&r);
        wire_get_str(&r, s, sizeof s);
        wire_get_bytes(&r, 64, &n);
        CHECK(!wire_rd_end(&r));
    }
    /* trailing garbage is not "end" either */
    struct wire_rd r;
    wire_put_u8(&b, 0);
    wire_rd_init(&r, b.data, b.len);
    char s[16];
    size_t n;
    wire_get_u64(&r);
    wire_get_str(&r, s, sizeof s);
    wire_get_bytes(&r, 64, &n);
    CHECK(!r.bad && !wire_rd_end(&r));
    wire_buf_free(&b);
}

static void test_malformed(void)
{
    struct wire_buf b;
    wire_buf_init(&b);
    /* a string longer than the caller's limit */
    wire_put_str(&b, "0123456789");
    struct wire_rd r;
    char s[8];
    wire_rd_init(&r, b.data, b.len);
    CHECK(wire_get_str(&r, s, sizeof s) == NULL && r.bad);
    /* a string with an embedded NUL */
    wire_buf_reset(&b);
    wire_put_bytes(&b, "ab\0cd", 5);
    char t[16];
    wire_rd_init(&r, b.data, b.len);
    CHECK(wire_get_str(&r, t, sizeof t) == NULL && r.bad);
    /* a length prefix claiming more than there is */
    wire_buf_reset(&b);
    wire_put_u32(&b, 0xfffffff0u);
    wire_put_u32(&b, 1);
    size_t n;
    wire_rd_init(&r, b.data, b.len);
    CHECK(wire_get_bytes(&r, SIZE_MAX, &n) == NULL && r.bad && n == 0);
    /* bytes over the caller's cap */
    wire_buf_reset(&b);
    wire_put_bytes(&b, "abcdef", 6);
    wire_rd_init(&r, b.data, b.len);
    CHECK(wire_get_bytes(&r, 5, &n) == NULL && r.bad);
    /* random garbage never crashes and never reads past the end (ASan watches) */
    srand(12345);
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = (size_t)(rand() % 64);
        uint8_t *buf = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(rand() % 8 == 0 ? 0xff : rand());
        wire_rd_init(&r, buf, len);
        char str[32];
        for (int k = 0; k < 8; k++) {
            switch (rand() % 5) {
            case 0: wire_get_u32(&r); break;
            case 1: wire_get_u64(&r); break;
            case 2: wire_get_str(&r, str, sizeof str); break;
            case 3: wire_get_bytes(&r, 16, &n); break;
            default: wire_get_raw(&r, (size_t)(rand() % 16)); break;
            }
        }
        CHECK(r.left <= len);
        free(buf);
    }
    wire_buf_free(&b);
}

static void test_frames(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct vgpu_conn *a = vgpu_conn_from_fd(&vgpu_transport_unix, sv[0]);
    struct vgpu_conn *b = vgpu_conn_from_fd(&vgpu_transport_unix, sv[1]);
    CHECK(vgpu_frame_send(a, 0x1234, VGPU_FRAME_NOREPLY, 99, "abc", 3, "defg", 4) == 0);
    struct vgpu_frame_hdr h;
    struct wire_buf body;
    wire_buf_init(&body);
    CHECK(vgpu_frame_recv(b, &h, &body) == 0);
    CHECK(h.op == 0x1234 && h.flags == VGPU_FRAME_NOREPLY && h.seq == 99 && h.length == 7);
    CHECK(body.len == 7 && memcmp(body.data, "abcdefg", 7) == 0);
    /* an oversized length is refused before any allocation */
    uint8_t hdr[VGPU_FRAME_HDR_SIZE];
    struct vgpu_frame_hdr big = {.length = VGPU_MAX_FRAME_PAYLOAD + 1, .op = 1};
    vgpu_frame_hdr_encode(&big, hdr);
    CHECK(write(sv[0], hdr, sizeof hdr) == (ssize_t)sizeof hdr);
    errno = 0;
    CHECK(vgpu_frame_recv(b, &h, &body) == -1 && errno == EMSGSIZE);
    /* a peer that closes mid-frame is an error with errno 0 */
    struct vgpu_frame_hdr part = {.length = 100, .op = 1};
    vgpu_frame_hdr_encode(&part, hdr);
    CHECK(write(sv[0], hdr, sizeof hdr) == (ssize_t)sizeof hdr);
    CHECK(write(sv[0], "xx", 2) == 2);
    vgpu_conn_close(a);
    CHECK(vgpu_frame_recv(b, &h, &body) == -1 && errno == 0);
    vgpu_conn_close(b);
    wire_buf_free(&body);
}

static void test_util(void)
{
    unsigned long long v;
    CHECK(vgpu_parse_size("16G", &v) == 0 && v == 16ull << 30);
    CHECK(vgpu_parse_size("512M", &v) == 0 && v == 512ull << 20);
    CHECK(vgpu_parse_size("4KiB", &v) == 0 && v == 4096);
    CHECK(vgpu_parse_size("123", &v) == 0 && v == 123);
    CHECK(vgpu_parse_size("", &v) == -1 && vgpu_parse_size("12X", &v) == -1 && vgpu_parse_size("-1", &v) == -1);
    CHECK(vgpu_parse_size("99999999999999999999G", &v) == -1);
    const char *where;
    CHECK(vgpu_transport_for("unix:/x", &where) == &vgpu_transport_unix && strcmp(where, "/x") == 0);
    CHECK(vgpu_transport_for("tcp:h:1", &where) == &vgpu_transport_tcp && strcmp(where, "h:1") == 0);
    CHECK(vgpu_transport_for("udp:h:1", &where) == NULL);
}

int main(void)
{
    test_round_trip();
    test_truncation();
    test_malformed();
    test_frames();
    test_util();
    printf("test_wire: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

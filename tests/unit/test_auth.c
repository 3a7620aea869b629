/* Unit test of vgpu's own SHA-256 and HMAC-SHA256 (src/common/sha256.c) against the
 * FIPS 180-2 and RFC 4231 test vectors, and of the handshake's proofs and decoders
 * (src/common/auth.c, src/server/handshake.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/auth.h"
#include "common/sha256.h"
#include "server/handshake.h"

static int failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while (0)

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", p[i]);
}

static void expect_hex(const char *what, const uint8_t *got, size_t n, const char *want)
{
    char h[2 * VGPU_SHA256_BYTES + 1];
    hex(got, n, h);
    if (strcmp(h, want)) {
        fprintf(stderr, "%s: got %s, want %s\n", what, h, want);
        failures++;
    } else {
        printf("ok: %s\n", what);
    }
}

static void test_sha256(void)
{
    uint8_t d[VGPU_SHA256_BYTES];
    vgpu_sha256("abc", 3, d);
    expect_hex("sha256(abc)", d, sizeof d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    vgpu_sha256("", 0, d);
    expect_hex("sha256()", d, sizeof d, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    vgpu_sha256(two, strlen(two), d);
    expect_hex("sha256(448 bits)", d, sizeof d, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* one million 'a', fed in uneven pieces to exercise block boundaries */
    struct vgpu_sha256 c;
    vgpu_sha256_init(&c);
    char chunk[1000];
    memset(chunk, 'a', sizeof chunk);
    size_t left = 1000000, step = 1;
    while (left) {
        size_t n = step < left ? step : left;
        if (n > sizeof chunk) n = sizeof chunk;
        vgpu_sha256_update(&c, chunk, n);
        left -= n;
        step = step % 997 + 7;
    }
    vgpu_sha256_final(&c, d);
    expect_hex("sha256(a x 1e6)", d, sizeof d, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_hmac(void)
{
    uint8_t d[VGPU_SHA256_BYTES], key[131], data[50];
    memset(key, 0x0b, 20);
    vgpu_hmac_sha256(key, 20, "Hi There", 8, d);
    expect_hex("rfc4231 case 1", d, sizeof d, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    vgpu_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, d);
    expect_hex("rfc4231 case 2", d, sizeof d, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(key, 0xaa, 20);
    memset(data, 0xdd, 50);
    vgpu_hmac_sha256(key, 20, data, 50, d);
    expect_hex("rfc4231 case 3", d, sizeof d, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    for (int i = 0; i < 25; i++) key[i] = (uint8_t)(i + 1);
    memset(data, 0xcd, 50);
    vgpu_hmac_sha256(key, 25, data, 50, d);
    expect_hex("rfc4231 case 4", d, sizeof d, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    memset(key, 0x0c, 20);
    vgpu_hmac_sha256(key, 20, "Test With Truncation", 20, d);
    expect_hex("rfc4231 case 5 (128 bits)", d, 16, "a3b6167473100ee06e0c796c2955552b");
    memset(key, 0xaa, 131);
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    vgpu_hmac_sha256(key, 131, m6, strlen(m6), d);
    expect_hex("rfc4231 case 6", d, sizeof d, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    const char *m7 = "This is a test using a larger than block-size key and a larger than block-size data. The key "
                     "needs to be hashed before being used by the HMAC algorithm.";
    struct vgpu_hmac_sha256 m;
    vgpu_hmac_sha256_init(&m, key, 131);
    vgpu_hmac_sha256_update(&m, m7, 10); /* in two pieces */
    vgpu_hmac_sha256_update(&m, m7 + 10, strlen(m7) - 10);
    vgpu_hmac_sha256_final(&m, d);
    expect_hex("rfc4231 case 7", d, sizeof d, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

/* The daemon's decoders and key search on messages built like the guest's. */
static void test_handshake(void)
{
    uint8_t nonce_g[VGPU_AUTH_NONCE_BYTES], nonce_d[VGPU_AUTH_NONCE_BYTES];
    memset(nonce_g, 1, sizeof nonce_g);
    memset(nonce_d, 2, sizeof nonce_d);
    struct wire_buf hello, chal, auth;
    wire_buf_init(&hello);
    wire_buf_init(&chal);
    wire_buf_init(&auth);
    vgpu_hello_put(&hello, VGPU_PROTOCOL_VERSION, VGPU_HELLO_NEW_SESSION, 42, "prog", "host", 0, nonce_g,
                   VGPU_FEATURE_SHM);
    struct hs_hello hi;
    CHECK(hs_decode_hello(VGPU_OP_HELLO, hello.data, hello.len, &hi) == HS_OK);
    CHECK(hi.pid == 42 && !strcmp(hi.name, "prog") && !strcmp(hi.host, "host") && hi.features == VGPU_FEATURE_SHM);
    CHECK(!memcmp(hi.nonce, nonce_g, sizeof nonce_g));
    CHECK(hs_decode_hello(VGPU_OP_AUTH, hello.data, hello.len, &hi) == HS_NOT_HELLO);
    CHECK(hs_decode_hello(VGPU_OP_HELLO, hello.data, 7, &hi) == HS_NOT_HELLO);
    CHECK(hs_decode_hello(VGPU_OP_HELLO, hello.data, hello.len - 1, &hi) == HS_MALFORMED);
    struct wire_buf v1;
    wire_buf_init(&v1);
    vgpu_hello_put(&v1, 1, VGPU_HELLO_NEW_SESSION, 7, "old", "h", 0, nonce_g, 0);
    CHECK(hs_decode_hello(VGPU_OP_HELLO, v1.data, v1.len, &hi) == HS_VERSION && hi.version == 1 && hi.ids_parsed);
    wire_buf_free(&v1);

    vgpu_challenge_put(&chal, nonce_d);
    uint8_t t[VGPU_SHA256_BYTES], proof[VGPU_AUTH_PROOF_BYTES];
    vgpu_auth_transcript(hello.data, hello.len, chal.data, chal.len, t);
    static const uint8_t k0[] = "alpha-token", k1[] = "bravo-token";
    struct hs_key keys[3] = {{k0, sizeof k0 - 1}, {NULL, 0}, {k1, sizeof k1 - 1}};
    vgpu_auth_guest_proof(k1, sizeof k1 - 1, t, proof);
    vgpu_auth_put(&auth, VGPU_AUTH_TOKEN, proof);
    struct hs_auth a;
    CHECK(hs_decode_auth(VGPU_OP_AUTH, auth.data, auth.len, &a) == 0 && a.method == VGPU_AUTH_TOKEN);
    CHECK(hs_find_key(keys, 3, t, a.proof) == 2);
    CHECK(hs_decode_auth(VGPU_OP_AUTH, auth.data, auth.len - 1, &a) != 0);
    CHECK(hs_decode_auth(VGPU_OP_HELLO, auth.data, auth.len, &a) != 0);
    auth.data[0] = 9; /* unknown method */
    CHECK(hs_decode_auth(VGPU_OP_AUTH, auth.data, auth.len, &a) != 0);
    /* another transcript (a different daemon nonce): the proof no longer matches */
    uint8_t t2[VGPU_SHA256_BYTES];
    chal.data[10] ^= 1;
    vgpu_auth_transcript(hello.data, hello.len, chal.data, chal.len, t2);
    CHECK(hs_find_key(keys, 3, t2, proof) == -1);
    /* the daemon's proof differs from the guest's, and the derived session token from both */
    uint8_t dp[VGPU_AUTH_PROOF_BYTES], st[VGPU_TOKEN_BYTES];
    vgpu_auth_daemon_proof(k1, sizeof k1 - 1, t, proof, dp);
    vgpu_auth_session_token(k1, sizeof k1 - 1, t, st);
    CHECK(memcmp(dp, proof, sizeof dp) && memcmp(st, proof, sizeof st) && memcmp(st, dp, sizeof st));

    /* unix peers: tenants by user or group, allow lists */
    uid_t u1[] = {1000};
    gid_t g1[] = {44};
    struct vgpu_tenant ten[2] = {{.name = "a", .uids = u1, .nuids = 1}, {.name = "b", .gids = g1, .ngids = 1}};
    gid_t groups[] = {5, 44};
    CHECK(hs_unix_tenant(ten, 2, 1000, groups, 1) == 0);
    CHECK(hs_unix_tenant(ten, 2, 7, groups, 2) == 1);
    CHECK(hs_unix_tenant(ten, 2, 7, groups, 1) == -1);
    CHECK(hs_allowed(u1, 1, g1, 1, 7, groups, 2) && !hs_allowed(u1, 1, g1, 1, 7, groups, 1));
    wire_buf_free(&hello);
    wire_buf_free(&chal);
    wire_buf_free(&auth);
}

int main(void)
{
    test_sha256();
    test_hmac();
    test_handshake();
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("auth tests passed\n");
    return 0;
}

/* Unit test of vgpud's configuration file parser (src/server/config.c): a good file with
 * every key, and each kind of error, which must name its line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/config.h"

static int failures;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                        \
        }                                                                      \
    } while (0)

static char dir[256];

static void write_file(const char *name, const char *text, mode_t mode)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

/* Parse text as DIR/test.conf; expect an error containing `want` (NULL: expect success). */
static void expect(const char *text, const char *want)
{
    char path[512], err[1024] = "";
    snprintf(path, sizeof path, "%s/test.conf", dir);
    struct vgpu_config c;
    int rc = config_parse(text, strlen(text), path, &c, err, sizeof err);
    if (!want) {
        if (rc) fprintf(stderr, "unexpected error: %s\n", err);
        CHECK(rc == 0);
        if (!rc) config_free(&c);
        return;
    }
    if (rc == 0) {
        fprintf(stderr, "no error for (wanted '%s'):\n%s\n", want, text);
        failures++;
        config_free(&c);
        return;
    }
    if (!strstr(err, want)) {
        fprintf(stderr, "error '%s' lacks '%s'\n", err, want);
        failures++;
    } else {
        printf("ok: %s\n", err);
    }
}

static void test_good(void)
{
    const char *text = "# vgpud configuration\n"
                       "; another comment\n"
                       "\n"
                       "[server]\n"
                       "listen = unix:/tmp/x.sock\n"
                       "  listen=tcp:127.0.0.1:7070  \n"
                       "client-memory-limit = 4G\n"
                       "tcp-no-auth = true\n"
                       "\n"
                       "[tenant alice]\n"
                       "token-file = alice.token\n"
                       "memory-limit = 8G\n"
                       "pinned-limit = 512M\n"
                       "weight = 2\n"
                       "[ tenant  bob.2 ]\n"
                       "users = root, 1001\n"
                       "groups = 0,44\n"
                       "[tenant carol]\n"
                       "token-file = " "%s/carol.token\n"
                       "weight = 1000\n"
                       "memory-limit = 0\n";
    char buf[2048], path[512], err[1024] = "";
    snprintf(buf, sizeof buf, text, dir);
    snprintf(path, sizeof path, "%s/test.conf", dir);
    struct vgpu_config c;
    int rc = config_parse(buf, strlen(buf), path, &c, err, sizeof err);
    if (rc) fprintf(stderr, "good file refused: %s\n", err);
    CHECK(rc == 0);
    if (rc) return;
    CHECK(c.noptions == 4);
    CHECK(!strcmp(c.options[0].name, "listen") && !strcmp(c.options[0].value, "unix:/tmp/x.sock"));
    CHECK(c.options[0].line == 5);
    CHECK(!strcmp(c.options[1].name, "listen") && !strcmp(c.options[1].value, "tcp:127.0.0.1:7070"));
    CHECK(!strcmp(c.options[2].name, "client-memory-limit") && !strcmp(c.options[2].value, "4G"));
    CHECK(!strcmp(c.options[3].name, "tcp-no-auth") && !strcmp(c.options[3].value, "true"));
    CHECK(c.ntenants == 3);
    struct vgpu_tenant *a = &c.tenants[0], *b = &c.tenants[1], *k = &c.tenants[2];
    CHECK(!strcmp(a->name, "alice") && a->token_len == 12 && !memcmp(a->token, "alice-secret", 12));
    CHECK(a->has_memory_limit && a->memory_limit == 8ull << 30 && a->weight == 2 && a->line == 10);
    CHECK(a->has_pinned_limit && a->pinned_limit == 512ull << 20);
    CHECK(!strcmp(b->name, "bob.2") && b->token_len == 0 && b->weight == 1 && !b->has_memory_limit &&
          !b->has_pinned_limit);
    CHECK(b->nuids == 2 && b->uids[0] == 0 && b->uids[1] == 1001);
    CHECK(b->ngids == 2 && b->gids[0] == 0 && b->gids[1] == 44);
    CHECK(!strcmp(k->name, "carol") && k->token_len == 5 && !memcmp(k->token, "c a r", 5));
    CHECK(k->weight == 1000 && k->has_memory_limit && k->memory_limit == 0);
    config_free(&c);

    /* An empty file is a valid (empty) configuration; so is one without a final newline. */
    expect("", NULL);
    expect("[server]\nbackend = emu", NULL);
}

static void test_errors(void)
{
    expect("listen = unix:/x\n", "test.conf:1: 'listen' outside a section");
    expect("\n[servers]\n", "test.conf:2: unknown section [servers]");
    expect("[server\n", "test.conf:1: section header without ']'");
    expect("[server]\nlisten unix:/x\n", "test.conf:2: expected 'key = value'");
    expect("[server]\nListen = x\n", "test.conf:2: bad key 'Listen'");
    expect("[server]\nlisten =\n", "test.conf:2: 'listen' has no value");
    expect("[server]\n= x\n", "test.conf:2: bad key ''");
    expect("[server]\n[server]\n", "test.conf:2: second [server] section");
    expect("[server]\nconfig = other.conf\n", "test.conf:2: 'config' cannot be set");
    expect("[tenant a]\ntoken-file = alice.token\ncolour = blue\n", "test.conf:3: unknown tenant key 'colour'");
    expect("[tenant a]\nusers = 0\nusers = 1\n", "test.conf:3: 'users' given twice");
    expect("[tenant a]\nusers = 0\n[tenant a]\nusers = 1\n", "test.conf:3: tenant 'a' defined twice");
    expect("[tenant]\n", "test.conf:1: unknown section [tenant]");
    expect("[tenant a/b]\n", "test.conf:1: bad tenant name 'a/b'");
    expect("[tenant aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n", "bad tenant name");
    expect("[tenant a]\nusers = 0\nweight = 0\n", "test.conf:3: bad weight '0'");
    expect("[tenant a]\nusers = 0\nweight = 1001\n", "test.conf:3: bad weight '1001'");
    expect("[tenant a]\nusers = 0\nweight = two\n", "test.conf:3: bad weight 'two'");
    expect("[tenant a]\nusers = 0\nmemory-limit = 8X\n", "test.conf:3: bad memory-limit '8X'");
    expect("[tenant a]\nusers = no-such-user-vgpu\n", "test.conf:2: unknown user 'no-such-user-vgpu'");
    expect("[tenant a]\ngroups = no-such-group-vgpu\n", "test.conf:2: unknown group 'no-such-group-vgpu'");
    expect("[tenant a]\nusers = 0,,1\n", "test.conf:2: empty item in list");
    expect("[tenant a]\nweight = 2\n", "test.conf:1: tenant 'a' has no token-file, users or groups");
    expect("[tenant a]\nweight = 2\n[server]\n", "test.conf:1: tenant 'a' has no token-file, users or groups");
    expect("[tenant a]\ntoken-file = missing.token\n", "test.conf:2: token file");
    expect("[tenant a]\ntoken-file = world.token\n", "accessible by group or others (mode 644)");
    expect("[tenant a]\ntoken-file = empty.token\n", "the first line holds no token");
    expect("[tenant a]\ntoken-file = long.token\n", "token longer than");
    expect("[tenant a]\ntoken-file = alice.token\n[tenant b]\ntoken-file = alice2.token\n",
           "tenants 'a' and 'b' have the same token");
    char longline[VGPU_CONFIG_LINE_MAX + 64];
    memset(longline, 'x', sizeof longline);
    memcpy(longline, "[server]\nlisten = ", 18);
    longline[sizeof longline - 1] = 0;
    expect(longline, "test.conf:2: line longer than");
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/test.conf", dir);
    struct vgpu_config c;
    static const char nul[] = "[server]\nbackend = e\0mu\n";
    int rc = config_parse(nul, sizeof nul - 1, path, &c, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "test.conf:2: NUL byte"));
    rc = config_load("/nonexistent/vgpud.conf", &c, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "/nonexistent/vgpud.conf"));
}

static void test_lists(void)
{
    uid_t *u = NULL;
    size_t n = 0;
    char err[256];
    CHECK(config_parse_uid_list("root, 7 ,nobody", &u, &n, err, sizeof err) == 0);
    CHECK(n == 3 && u[0] == 0 && u[1] == 7);
    free(u);
    u = NULL;
    n = 0;
    CHECK(config_parse_uid_list("", &u, &n, err, sizeof err) != 0);
    CHECK(config_parse_uid_list("4294967295", &u, &n, err, sizeof err) != 0);
    free(u);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/vgpu-test-config.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    write_file("alice.token", "  alice-secret \nsecond line ignored\n", 0600);
    write_file("alice2.token", "alice-secret\n", 0600);
    write_file("carol.token", "c a r", 0400);
    write_file("world.token", "x\n", 0644);
    write_file("empty.token", " \n", 0600);
    char big[VGPU_AUTH_TOKEN_MAX + 10];
    memset(big, 'k', sizeof big);
    big[sizeof big - 1] = 0;
    write_file("long.token", big, 0600);
    test_good();
    test_errors();
    test_lists();
    const char *names[] = {"alice.token", "alice2.token", "carol.token", "world.token", "empty.token", "long.token"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("config tests passed\n");
    return 0;
}

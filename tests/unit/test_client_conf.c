/* Unit test of the guest configuration file parser (src/common/client_conf.c): a good
 * file, malformed lines (warned, skipped, the rest still applies), relative paths,
 * environment precedence (per setting, and by group for token/token-file). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/client_conf.h"

static int failures;
#define CHECK(c)                                                        \
    do {                                                                \
        if (!(c)) {                                                     \
            fprintf(stderr, "%s:%d: FAIL: %s\n", __FILE__, __LINE__, #c); \
            failures++;                                                 \
        }                                                               \
    } while (0)

static int streq(const char *a, const char *b) { return a && b && !strcmp(a, b); }

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

int main(void)
{
    char dir[] = "/tmp/vgpu-client-conf-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char path[256];
    snprintf(path, sizeof path, "%s/client.conf", dir);
    static const char *const vars[] = {"VGPU_SERVER", "VGPU_TOKEN", "VGPU_TOKEN_FILE", "VGPU_TIMEOUT",
                                       "VGPU_TLS_CA", "VGPU_TLS_CERT", "VGPU_TLS_KEY"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);

    /* Before any file is loaded (the daemon's case) a setting is just the variable. */
    CHECK(vgpu_client_setting("VGPU_SERVER") == NULL);
    setenv("VGPU_SERVER", "tcp:a:1", 1);
    CHECK(streq(vgpu_client_setting("VGPU_SERVER"), "tcp:a:1"));
    unsetenv("VGPU_SERVER");

    /* A good file: comments, a [client] header, whitespace, relative and absolute paths. */
    write_file(path,
               "# guest configuration\n"
               "; another comment\n"
               "[client]\n"
               "  server   =  tcp:gpuhost:7000  \n"
               "\n"
               "token-file = vgpud.token\n"
               "timeout = 30\n"
               "tls-ca = /etc/vgpu/ca.pem\n"
               "tls-cert = guest.pem\n"
               "tls-key = guest.key\n",
               0644);
    CHECK(vgpu_client_conf_parse(path) == 0);
    char want[512];
    CHECK(streq(vgpu_client_setting("VGPU_SERVER"), "tcp:gpuhost:7000"));
    snprintf(want, sizeof want, "%s/vgpud.token", dir);
    CHECK(streq(vgpu_client_setting("VGPU_TOKEN_FILE"), want));
    CHECK(vgpu_client_setting("VGPU_TOKEN") == NULL);
    CHECK(streq(vgpu_client_setting("VGPU_TIMEOUT"), "30"));
    CHECK(streq(vgpu_client_setting("VGPU_TLS_CA"), "/etc/vgpu/ca.pem"));
    snprintf(want, sizeof want, "%s/guest.pem", dir);
    CHECK(streq(vgpu_client_setting("VGPU_TLS_CERT"), want));
    CHECK(vgpu_client_setting("VGPU_SHM") == NULL); /* not a client.conf setting */

    /* The environment wins, setting by setting... */
    setenv("VGPU_SERVER", "unix:/x.sock", 1);
    CHECK(streq(vgpu_client_setting("VGPU_SERVER"), "unix:/x.sock"));
    setenv("VGPU_SERVER", "", 1); /* an empty variable counts as unset */
    CHECK(streq(vgpu_client_setting("VGPU_SERVER"), "tcp:gpuhost:7000"));
    unsetenv("VGPU_SERVER");
    /* ...and by group: VGPU_TOKEN in the environment hides the file's token-file, and a
     * certificate from the environment is never paired with the file's key. */
    setenv("VGPU_TOKEN", "secret", 1);
    CHECK(streq(vgpu_client_setting("VGPU_TOKEN"), "secret"));
    CHECK(vgpu_client_setting("VGPU_TOKEN_FILE") == NULL);
    unsetenv("VGPU_TOKEN");
    setenv("VGPU_TLS_CERT", "/env.pem", 1);
    CHECK(vgpu_client_setting("VGPU_TLS_KEY") == NULL);
    CHECK(streq(vgpu_client_setting("VGPU_TLS_CA"), "/etc/vgpu/ca.pem"));
    unsetenv("VGPU_TLS_CERT");

    /* Malformed lines: each warned about and skipped; the good ones still apply. */
    char longline[5000];
    memset(longline, 'x', sizeof longline - 2);
    longline[sizeof longline - 2] = '\n';
    longline[sizeof longline - 1] = 0;
    char text[8000];
    snprintf(text, sizeof text,
             "no equals sign here\n"      /* 1 */
             "colour = blue\n"            /* 2: unknown key */
             "server =\n"                 /* 3: empty value */
             "timeout = soon\n"           /* 4: not seconds */
             "timeout = 99999999\n"       /* 5: too large */
             "%s"                         /* 6: too long */
             "server = unix:/run/v.sock\n" /* 7: good */
             "token = abc\n"              /* 8: good, but warned: file mode 644 */
             "[other]\n",                 /* 9: not key = value */
             longline);
    write_file(path, text, 0644);
    CHECK(vgpu_client_conf_parse(path) == 7);
    CHECK(streq(vgpu_client_setting("VGPU_SERVER"), "unix:/run/v.sock"));
    CHECK(streq(vgpu_client_setting("VGPU_TOKEN"), "abc"));
    CHECK(vgpu_client_setting("VGPU_TIMEOUT") == NULL);
    CHECK(vgpu_client_setting("VGPU_TOKEN_FILE") == NULL); /* nothing left from the first file */

    /* Binary junk and a missing last newline do not upset it. */
    write_file(path, "\x01\x02=\x03\nserver = tcp:h:1", 0600);
    CHECK(vgpu_client_conf_parse(path) == 1);
    CHECK(streq(vgpu_client_setting("VGPU_SERVER"), "tcp:h:1"));

    /* A missing file is fine: no settings, no warning. */
    unlink(path);
    CHECK(vgpu_client_conf_parse(path) == -1);
    CHECK(vgpu_client_setting("VGPU_SERVER") == NULL);

    /* vgpu_client_conf_load reads $VGPU_CLIENT_CONF. */
    write_file(path, "server = tcp:loaded:2\n", 0600);
    setenv("VGPU_CLIENT_CONF", path, 1);
    vgpu_client_conf_load();
    CHECK(streq(vgpu_client_setting("VGPU_SERVER"), "tcp:loaded:2"));

    unlink(path);
    rmdir(dir);
    if (failures) return 1;
    printf("client_conf: ok\n");
    return 0;
}

/* Parser of the guest configuration file (client_conf.h). Deliberately smaller than
 * vgpud's INI parser (src/server/config.c): it lives in every guest process, knows a
 * fixed handful of keys, and must never stop a program from starting, so each problem
 * is a warning naming its line and that line alone is ignored. */
#include "common/client_conf.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"

#define MAX_LINE 4096
#define MAX_LINES 10000

/* key in the file, its environment variable, whether a relative path is taken relative
 * to the file's directory, and its group (settings that must come from one source). */
static const struct setting {
    const char *key, *env;
    bool path;
    int group;
} settings[] = {
    {"server", "VGPU_SERVER", false, 0},   {"token", "VGPU_TOKEN", false, 1},
    {"token-file", "VGPU_TOKEN_FILE", true, 1}, {"timeout", "VGPU_TIMEOUT", false, 2},
    {"tls-ca", "VGPU_TLS_CA", true, 3},   {"tls-cert", "VGPU_TLS_CERT", true, 4},
    {"tls-key", "VGPU_TLS_KEY", true, 4},
};
#define NSETTINGS (sizeof settings / sizeof settings[0])

static char *values[NSETTINGS];
static bool loaded;
static pthread_once_t load_once = PTHREAD_ONCE_INIT;

static void clear(void)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (values[i]) explicit_bzero(values[i], strlen(values[i])); /* may hold a token */
        free(values[i]);
        values[i] = NULL;
    }
}

static char *trim(char *s)
{
    while (*s && isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) e--;
    *e = 0;
    return s;
}

static bool timeout_ok(const char *v)
{
    if (!*v || strlen(v) > 5) return false;
    for (const char *p = v; *p; p++)
        if (!isdigit((unsigned char)*p)) return false;
    return atol(v) <= 86400;
}

int vgpu_client_conf_parse(const char *path)
{
    clear();
    loaded = true;
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno != ENOENT) VGPU_WARN("%s: %s (ignored)", path, strerror(errno));
        return -1;
    }
    struct stat st;
    bool open_mode = fstat(fileno(f), &st) == 0 && (st.st_mode & 077);
    /* Relative paths are relative to the file's directory, as in vgpud's config. */
    char dir[1024] = ".";
    const char *slash = strrchr(path, '/');
    if (slash) snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    char line[MAX_LINE + 2];
    int warnings = 0;
    for (int lineno = 1; lineno <= MAX_LINES && fgets(line, sizeof line, f); lineno++) {
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            VGPU_WARN("%s:%d: line longer than %d bytes (ignored)", path, lineno, MAX_LINE);
            warnings++;
            int c;
            while ((c = getc(f)) != EOF && c != '\n') {}
            continue;
        }
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';' || !strcmp(s, "[client]")) continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            VGPU_WARN("%s:%d: expected 'key = value' (ignored)", path, lineno);
            warnings++;
            continue;
        }
        *eq = 0;
        char *key = trim(s), *val = trim(eq + 1);
        size_t i = 0;
        while (i < NSETTINGS && strcmp(settings[i].key, key)) i++;
        if (i == NSETTINGS) {
            for (char *p = key; *p; p++)
                if (!isprint((unsigned char)*p)) *p = '?'; /* log lines stay one printable line */
            VGPU_WARN("%s:%d: unknown key '%.64s' (ignored)", path, lineno, key);
            warnings++;
            continue;
        }
        if (!*val) {
            VGPU_WARN("%s:%d: %s has no value (ignored)", path, lineno, key);
            warnings++;
            continue;
        }
        if (!strcmp(key, "timeout") && !timeout_ok(val)) {
            VGPU_WARN("%s:%d: timeout '%.64s' is not a number of seconds from 0 to 86400 (ignored)", path, lineno,
                      val);
            warnings++;
            continue;
        }
        if (!strcmp(key, "token") && open_mode)
            VGPU_WARN("%s:%d: a token in a file that group or others can read: use token-file (mode 600)", path,
                      lineno);
        char *v;
        if (settings[i].path && val[0] != '/') {
            size_t n = strlen(dir) + strlen(val) + 2;
            v = malloc(n);
            if (v) snprintf(v, n, "%s/%s", dir, val);
        } else {
            v = strdup(val);
        }
        free(values[i]); /* the last of repeated keys wins */
        values[i] = v;
    }
    explicit_bzero(line, sizeof line);
    fclose(f);
    return warnings;
}

static void load(void)
{
    const char *path = getenv("VGPU_CLIENT_CONF");
    (void)vgpu_client_conf_parse(path && path[0] ? path : VGPU_CLIENT_CONF_DEFAULT);
}

void vgpu_client_conf_load(void) { pthread_once(&load_once, load); }

static bool env_set(const char *name)
{
    const char *v = getenv(name);
    return v && v[0];
}

const char *vgpu_client_setting(const char *env_name)
{
    if (env_set(env_name)) return getenv(env_name);
    if (!loaded) return NULL;
    size_t i = 0;
    while (i < NSETTINGS && strcmp(settings[i].env, env_name)) i++;
    if (i == NSETTINGS) return NULL;
    for (size_t j = 0; j < NSETTINGS; j++)
        if (settings[j].group == settings[i].group && env_set(settings[j].env)) return NULL;
    return values[i];
}

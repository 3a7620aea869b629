/*
 * The configuration file parser (see config.h and docs/config.md). Written for hostile
 * or careless input: every line is bounded, every error names its line, and a file
 * with any error is refused as a whole (vgpud does not start).
 */
#include "server/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

#define CONFIG_FILE_MAX (1u << 20)

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void tenant_free(struct vgpu_tenant *t)
{
    free(t->uids);
    free(t->gids);
    /* The token is a secret: do not leave it in freed memory. */
    memset(t, 0, sizeof *t);
}

void config_free(struct vgpu_config *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->noptions; i++) {
        free(c->options[i].name);
        free(c->options[i].value);
    }
    free(c->options);
    for (size_t i = 0; i < c->ntenants; i++) tenant_free(&c->tenants[i]);
    free(c->tenants);
    memset(c, 0, sizeof *c);
}

int config_read_token_file(const char *path, uint8_t *out, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        set_err(err, errlen, "token file %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        set_err(err, errlen, "token file %s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        set_err(err, errlen, "token file %s is accessible by group or others (mode %03o): chmod 600 it", path,
                (unsigned)(st.st_mode & 0777));
        close(fd);
        return -1;
    }
    /* The first line only; read a little more than a token can be to detect overlong ones. */
    char buf[VGPU_AUTH_TOKEN_MAX + 2];
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t n = read(fd, buf + got, sizeof buf - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            set_err(err, errlen, "token file %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (n == 0) break;
        got += (size_t)n;
        if (memchr(buf, '\n', got)) break;
    }
    close(fd);
    char *nl = memchr(buf, '\n', got);
    size_t line = nl ? (size_t)(nl - buf) : got;
    size_t b = 0, e = line;
    while (b < e && isspace((unsigned char)buf[b])) b++;
    while (e > b && isspace((unsigned char)buf[e - 1])) e--;
    int rc = 0;
    if (e == b) {
        set_err(err, errlen, "token file %s: the first line holds no token", path);
        rc = -1;
    } else if (!nl && got == sizeof buf) {
        set_err(err, errlen, "token file %s: token longer than %d bytes", path, VGPU_AUTH_TOKEN_MAX);
        rc = -1;
    } else if (e - b > VGPU_AUTH_TOKEN_MAX) {
        set_err(err, errlen, "token file %s: token longer than %d bytes", path, VGPU_AUTH_TOKEN_MAX);
        rc = -1;
    } else if (memchr(buf + b, 0, e - b)) {
        set_err(err, errlen, "token file %s: the token contains a NUL byte", path);
        rc = -1;
    } else {
        memcpy(out, buf + b, e - b);
        *len = e - b;
    }
    memset(buf, 0, sizeof buf);
    return rc;
}

/* Split a comma-separated list; calls add() for each trimmed, non-empty item. */
static int each_list_item(const char *list, int (*add)(const char *item, void *ctx, char *err, size_t errlen),
                          void *ctx, char *err, size_t errlen)
{
    size_t items = 0;
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n && isspace((unsigned char)*p)) p++, n--;
        while (n && isspace((unsigned char)p[n - 1])) n--;
        if (n == 0) {
            set_err(err, errlen, "empty item in list '%s'", list);
            return -1;
        }
        char item[256];
        if (n >= sizeof item) {
            set_err(err, errlen, "list item too long in '%s'", list);
            return -1;
        }
        memcpy(item, p, n);
        item[n] = 0;
        if (add(item, ctx, err, errlen)) return -1;
        items++;
        if (!comma) break;
        p = comma + 1;
    }
    return items ? 0 : -1;
}

/* A decimal id, or -1. */
static long long parse_id(const char *s)
{
    if (!isdigit((unsigned char)s[0])) return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v >= 0xffffffffull) return -1; /* (uid_t)-1 means "no id" */
    return (long long)v;
}

struct id_list {
    unsigned **ids; /* uid_t and gid_t are both unsigned int on Linux */
    size_t *n;
    bool groups;
};

static int add_id(const char *item, void *ctx, char *err, size_t errlen)
{
    struct id_list *l = ctx;
    long long id = parse_id(item);
    if (id < 0) {
        if (l->groups) {
            struct group gr, *res = NULL;
            char buf[16384];
            if (getgrnam_r(item, &gr, buf, sizeof buf, &res) || !res) {
                set_err(err, errlen, "unknown group '%s'", item);
                return -1;
            }
            id = res->gr_gid;
        } else {
            struct passwd pw, *res = NULL;
            char buf[16384];
            if (getpwnam_r(item, &pw, buf, sizeof buf, &res) || !res) {
                set_err(err, errlen, "unknown user '%s'", item);
                return -1;
            }
            id = res->pw_uid;
        }
    }
    if (*l->n >= 65536) {
        set_err(err, errlen, "too many ids in a list");
        return -1;
    }
    unsigned *grown = realloc(*l->ids, (*l->n + 1) * sizeof *grown);
    if (!grown) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    grown[(*l->n)++] = (unsigned)id;
    *l->ids = grown;
    return 0;
}

_Static_assert(_Generic((uid_t)0, unsigned: 1, default: 0) && _Generic((gid_t)0, unsigned: 1, default: 0),
               "uid_t and gid_t are unsigned int");

int config_parse_uid_list(const char *list, uid_t **ids, size_t *n, char *err, size_t errlen)
{
    struct id_list l = {ids, n, false};
    if (each_list_item(list, add_id, &l, err, errlen)) {
        if (err && !err[0]) set_err(err, errlen, "empty user list");
        return -1;
    }
    return 0;
}

int config_parse_gid_list(const char *list, gid_t **ids, size_t *n, char *err, size_t errlen)
{
    struct id_list l = {ids, n, true};
    if (each_list_item(list, add_id, &l, err, errlen)) {
        if (err && !err[0]) set_err(err, errlen, "empty group list");
        return -1;
    }
    return 0;
}

static bool tenant_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= VGPU_TENANT_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.') return false;
    return true;
}

int config_add_tenant(struct vgpu_config *c, const struct vgpu_tenant *t, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->ntenants; i++) {
        if (!strcmp(c->tenants[i].name, t->name)) {
            set_err(err, errlen, "tenant '%s' defined twice", t->name);
            return -1;
        }
        if (t->token_len && c->tenants[i].token_len == t->token_len &&
            vgpu_consttime_equal(c->tenants[i].token, t->token, t->token_len)) {
            set_err(err, errlen, "tenants '%s' and '%s' have the same token", c->tenants[i].name, t->name);
            return -1;
        }
    }
    if (c->ntenants >= VGPU_MAX_TENANTS) {
        set_err(err, errlen, "more than %d tenants", VGPU_MAX_TENANTS);
        return -1;
    }
    struct vgpu_tenant *grown = realloc(c->tenants, (c->ntenants + 1) * sizeof *grown);
    if (!grown) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    c->tenants = grown;
    c->tenants[c->ntenants++] = *t;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

static bool key_ok(const char *k)
{
    if (!*k) return false;
    for (; *k; k++)
        if (!islower((unsigned char)*k) && !isdigit((unsigned char)*k) && *k != '-') return false;
    return true;
}

/* A tenant being read, with which keys it had (each at most once). */
struct tenant_draft {
    struct vgpu_tenant t;
    bool open;
    bool seen_token, seen_users, seen_groups, seen_memory, seen_pinned, seen_weight;
};

static int finish_tenant(struct vgpu_config *c, struct tenant_draft *d, const char *path, char *err, size_t errlen)
{
    if (!d->open) return 0;
    d->open = false;
    if (!d->t.token_len && !d->t.nuids && !d->t.ngids) {
        set_err(err, errlen, "%s:%d: tenant '%s' has no token-file, users or groups: nobody could be it", path,
                d->t.line, d->t.name);
        tenant_free(&d->t);
        return -1;
    }
    char why[256];
    if (config_add_tenant(c, &d->t, why, sizeof why)) {
        set_err(err, errlen, "%s:%d: %s", path, d->t.line, why);
        tenant_free(&d->t);
        return -1;
    }
    memset(&d->t, 0, sizeof d->t); /* now owned by c */
    return 0;
}

/* The token file path: relative paths resolve against the configuration file's directory. */
static void resolve_path(const char *config_path, const char *value, char *out, size_t outlen)
{
    const char *slash = strrchr(config_path, '/');
    if (value[0] == '/' || !slash) snprintf(out, outlen, "%s", value);
    else snprintf(out, outlen, "%.*s/%s", (int)(slash - config_path), config_path, value);
}

static int tenant_key(struct tenant_draft *d, const char *key, const char *value, const char *path, int line,
                      char *err, size_t errlen)
{
    char why[512] = "";
    bool *seen = NULL;
    if (!strcmp(key, "token-file")) seen = &d->seen_token;
    else if (!strcmp(key, "users")) seen = &d->seen_users;
    else if (!strcmp(key, "groups")) seen = &d->seen_groups;
    else if (!strcmp(key, "memory-limit")) seen = &d->seen_memory;
    else if (!strcmp(key, "pinned-limit")) seen = &d->seen_pinned;
    else if (!strcmp(key, "weight")) seen = &d->seen_weight;
    else {
        set_err(err, errlen,
                "%s:%d: unknown tenant key '%s' (token-file, users, groups, memory-limit, pinned-limit, weight)", path, line, key);
        return -1;
    }
    if (*seen) {
        set_err(err, errlen, "%s:%d: '%s' given twice for tenant '%s'", path, line, key, d->t.name);
        return -1;
    }
    *seen = true;
    int rc = 0;
    if (!strcmp(key, "token-file")) {
        char file[PATH_MAX];
        resolve_path(path, value, file, sizeof file);
        rc = config_read_token_file(file, d->t.token, &d->t.token_len, why, sizeof why);
    } else if (!strcmp(key, "users")) {
        rc = config_parse_uid_list(value, &d->t.uids, &d->t.nuids, why, sizeof why);
    } else if (!strcmp(key, "groups")) {
        rc = config_parse_gid_list(value, &d->t.gids, &d->t.ngids, why, sizeof why);
    } else if (!strcmp(key, "memory-limit")) {
        rc = vgpu_parse_size(value, &d->t.memory_limit);
        if (rc) snprintf(why, sizeof why, "bad memory-limit '%s' (bytes, or with a K/M/G/T suffix)", value);
        d->t.has_memory_limit = true;
    } else if (!strcmp(key, "pinned-limit")) {
        rc = vgpu_parse_size(value, &d->t.pinned_limit);
        if (rc) snprintf(why, sizeof why, "bad pinned-limit '%s' (bytes, or with a K/M/G/T suffix)", value);
        d->t.has_pinned_limit = true;
    } else { /* weight */
        long long w = parse_id(value);
        if (w < 1 || w > VGPU_WEIGHT_MAX) {
            snprintf(why, sizeof why, "bad weight '%s' (an integer from 1 to %d)", value, VGPU_WEIGHT_MAX);
            rc = -1;
        } else {
            d->t.weight = (unsigned)w;
        }
    }
    if (rc) set_err(err, errlen, "%s:%d: %s", path, line, why);
    return rc;
}

static int add_option(struct vgpu_config *c, const char *key, const char *value, int line, char *err,
                      size_t errlen)
{
    if (c->noptions >= 4096) {
        set_err(err, errlen, "line %d: more than 4096 [server] entries", line);
        return -1;
    }
    struct vgpu_config_option *grown = realloc(c->options, (c->noptions + 1) * sizeof *grown);
    if (!grown) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    c->options = grown;
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    c->options[c->noptions++] = (struct vgpu_config_option){k, v, line};
    return 0;
}

int config_parse(const char *text, size_t len, const char *path, struct vgpu_config *out, char *err, size_t errlen)
{
    struct vgpu_config c = {0};
    struct tenant_draft d = {0};
    enum { NONE, SERVER, TENANT } section = NONE;
    bool had_server = false;
    char line_buf[VGPU_CONFIG_LINE_MAX + 1];
    int lineno = 0;
    size_t pos = 0;
    if (err && errlen) err[0] = 0;
    while (pos < len) {
        lineno++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        if (n > VGPU_CONFIG_LINE_MAX) {
            set_err(err, errlen, "%s:%d: line longer than %d bytes", path, lineno, VGPU_CONFIG_LINE_MAX);
            goto fail;
        }
        if (memchr(text + pos, 0, n)) {
            set_err(err, errlen, "%s:%d: NUL byte in line", path, lineno);
            goto fail;
        }
        memcpy(line_buf, text + pos, n);
        line_buf[n] = 0;
        pos += n + (nl ? 1 : 0);
        char *s = trim(line_buf);
        if (!*s || *s == '#' || *s == ';') continue;
        if (*s == '[') {
            size_t sl = strlen(s);
            if (s[sl - 1] != ']') {
                set_err(err, errlen, "%s:%d: section header without ']'", path, lineno);
                goto fail;
            }
            s[sl - 1] = 0;
            char *name = trim(s + 1);
            if (finish_tenant(&c, &d, path, err, errlen)) goto fail;
            if (!strcmp(name, "server")) {
                if (had_server) {
                    set_err(err, errlen, "%s:%d: second [server] section", path, lineno);
                    goto fail;
                }
                had_server = true;
                section = SERVER;
            } else if (!strncmp(name, "tenant", 6) && isspace((unsigned char)name[6])) {
                char *tn = trim(name + 6);
                if (!tenant_name_ok(tn)) {
                    set_err(err, errlen,
                            "%s:%d: bad tenant name '%s' (1 to %d letters, digits, '_', '-', '.')", path, lineno,
                            tn, VGPU_TENANT_NAME_MAX - 1);
                    goto fail;
                }
                for (size_t i = 0; i < c.ntenants; i++)
                    if (!strcmp(c.tenants[i].name, tn)) {
                        set_err(err, errlen, "%s:%d: tenant '%s' defined twice (first at line %d)", path, lineno, tn,
                                c.tenants[i].line);
                        goto fail;
                    }
                d = (struct tenant_draft){.open = true};
                snprintf(d.t.name, sizeof d.t.name, "%s", tn);
                d.t.weight = 1;
                d.t.line = lineno;
                section = TENANT;
            } else {
                set_err(err, errlen, "%s:%d: unknown section [%s] (expected [server] or [tenant NAME])", path, lineno,
                        name);
                goto fail;
            }
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            set_err(err, errlen, "%s:%d: expected 'key = value', a [section] or a # comment", path, lineno);
            goto fail;
        }
        *eq = 0;
        char *key = trim(s), *value = trim(eq + 1);
        if (!key_ok(key)) {
            set_err(err, errlen, "%s:%d: bad key '%s' (lower-case letters, digits and '-')", path, lineno, key);
            goto fail;
        }
        if (!*value) {
            set_err(err, errlen, "%s:%d: '%s' has no value", path, lineno, key);
            goto fail;
        }
        if (section == NONE) {
            set_err(err, errlen, "%s:%d: '%s' outside a section ([server] or [tenant NAME])", path, lineno, key);
            goto fail;
        }
        if (section == TENANT) {
            if (tenant_key(&d, key, value, path, lineno, err, errlen)) goto fail;
            continue;
        }
        if (!strcmp(key, "config") || !strcmp(key, "worker") || !strcmp(key, "help")) {
            set_err(err, errlen, "%s:%d: '%s' cannot be set in a configuration file", path, lineno, key);
            goto fail;
        }
        if (add_option(&c, key, value, lineno, err, errlen)) goto fail;
    }
    if (finish_tenant(&c, &d, path, err, errlen)) goto fail;
    *out = c;
    return 0;
fail:
    if (d.open) tenant_free(&d.t);
    config_free(&c);
    if (err && errlen && !err[0]) set_err(err, errlen, "%s: invalid", path);
    return -1;
}

int config_load(const char *path, struct vgpu_config *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *text = malloc(CONFIG_FILE_MAX + 1);
    if (!text) {
        fclose(f);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    size_t n = fread(text, 1, CONFIG_FILE_MAX + 1, f);
    bool failed = ferror(f);
    fclose(f);
    int rc = -1;
    if (failed) set_err(err, errlen, "%s: read error", path);
    else if (n > CONFIG_FILE_MAX) set_err(err, errlen, "%s: larger than %u bytes", path, CONFIG_FILE_MAX);
    else rc = config_parse(text, n, path, out, err, errlen);
    free(text);
    return rc;
}

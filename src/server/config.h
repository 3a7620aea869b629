/*
 * vgpud's configuration file (`vgpud --config FILE`, docs/config.md): a small INI
 * dialect read by our own parser. `[server]` holds vgpud's long options without their
 * dashes (applied as if given on the command line, which wins); `[tenant NAME]`
 * sections define tenants: how they authenticate (a token file, unix users/groups),
 * their device memory quota and their share of GPU time. Also the token-file and
 * user/group-list readers that the command line options share.
 */
#ifndef VGPU_SERVER_CONFIG_H
#define VGPU_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VGPU_TENANT_NAME_MAX 64   /* with the NUL */
#define VGPU_AUTH_TOKEN_MAX 1024  /* bytes of a tenant token */
#define VGPU_MAX_TENANTS 1024
#define VGPU_WEIGHT_MAX 1000
#define VGPU_CONFIG_LINE_MAX 4096

struct vgpu_tenant {
    char name[VGPU_TENANT_NAME_MAX];
    uint8_t token[VGPU_AUTH_TOKEN_MAX];
    size_t token_len; /* 0: no token (unix users/groups only) */
    uid_t *uids;
    size_t nuids;
    gid_t *gids;
    size_t ngids;
    unsigned long long memory_limit; /* valid when has_memory_limit */
    bool has_memory_limit;
    unsigned long long pinned_limit; /* pinned host memory the daemon holds; valid when has_pinned_limit */
    bool has_pinned_limit;
    unsigned weight; /* 1..VGPU_WEIGHT_MAX */
    int line;        /* of its section header (0: from the command line) */
};

/* One `[server]` entry: a vgpud long option without its dashes. */
struct vgpu_config_option {
    char *name;
    char *value;
    int line;
};

struct vgpu_config {
    struct vgpu_config_option *options;
    size_t noptions;
    struct vgpu_tenant *tenants;
    size_t ntenants;
};

/* Parse configuration text. `path` names it in messages and relative token-file paths
 * resolve against its directory. 0 on success; else -1 with "PATH:LINE: why" in err
 * and nothing allocated in out. */
int config_parse(const char *text, size_t len, const char *path, struct vgpu_config *out, char *err, size_t errlen);
/* Read and parse a file. */
int config_load(const char *path, struct vgpu_config *out, char *err, size_t errlen);
void config_free(struct vgpu_config *c);

/* The token of a token file: its first line with surrounding whitespace removed. A file
 * that group or others can read, an empty token or one over VGPU_AUTH_TOKEN_MAX bytes
 * is an error. 0 on success. */
int config_read_token_file(const char *path, uint8_t *out, size_t *len, char *err, size_t errlen);

/* A list such as "alice, 1001" (groups: "video, 44"): names or numeric ids, comma
 * separated; names are resolved now. Appends to the array *ids of *n entries. 0 on success. */
int config_parse_uid_list(const char *list, uid_t **ids, size_t *n, char *err, size_t errlen);
int config_parse_gid_list(const char *list, gid_t **ids, size_t *n, char *err, size_t errlen);

/* Add a tenant (the command line's "default" from --token-file); a name already
 * present is an error. 0 on success. */
int config_add_tenant(struct vgpu_config *c, const struct vgpu_tenant *t, char *err, size_t errlen);

#endif

/* PTX text parser: kernel entries (.entry NAME(.param ...)) with their parameter layouts, computed the way
 * the driver lays them out (each parameter at its natural or declared alignment), launch bounds
 * (.maxntid/.reqntid), and module-scope .global/.const variables with their sizes and initialisers.
 * Function bodies are skipped, only their braces counted. The text may be hostile: it is read only up to
 * the given size or the first NUL, and sizes are capped. */
#include "common/fatbin_internal.h"

#include <stdlib.h>

#define PTX_MAX_PARAM_BYTES (1u << 20)               /* far above the 32764-byte parameter limit */
/* Initialised variables, all together, get buffers this big at most: nvcc omits trailing zeros, so
 * "x[4194304] = {1}" is legitimate, but a short text must not make us allocate without limit. */
#define PTX_MAX_INIT_BYTES VGPU_IMAGE_MAX_DECOMPRESSED

struct tok {
    const char *s;
    size_t len; /* 0 at end of text */
};

struct lex {
    const char *p, *end;
    struct tok peeked;
    bool has_peek;
    uint64_t init_left; /* what initialisers may still allocate */
};

static bool is_ident(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$';
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static struct tok lex_next(struct lex *L)
{
    if (L->has_peek) {
        L->has_peek = false;
        return L->peeked;
    }
    const char *p = L->p, *end = L->end;
    for (;;) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v'))
            p++;
        if (end - p >= 2 && p[0] == '/' && p[1] == '/') {
            while (p < end && *p != '\n')
                p++;
        } else if (end - p >= 2 && p[0] == '/' && p[1] == '*') {
            p += 2;
            while (p < end && !(end - p >= 2 && p[0] == '*' && p[1] == '/'))
                p++;
            p = p < end ? p + 2 : end;
        } else {
            break;
        }
    }
    struct tok t = {p, 0};
    if (p >= end) {
        L->p = end;
        return t;
    }
    const char *q = p + 1;
    if (*p == '"') {
        while (q < end && *q != '"' && *q != '\n')
            q++;
        if (q < end && *q == '"')
            q++;
    } else if (*p == '.' || *p == '%' || is_ident(*p)) {
        /* Directives stop at the next '.', so ".v4.f32" is two tokens; numbers keep theirs ("1.5"). */
        bool number = is_digit(*p);
        while (q < end && (is_ident(*q) || (number && *q == '.')))
            q++;
    }
    t.len = (size_t)(q - p);
    L->p = q;
    return t;
}

static struct tok lex_peek(struct lex *L)
{
    if (!L->has_peek) {
        L->peeked = lex_next(L);
        L->has_peek = true;
    }
    return L->peeked;
}

static bool tok_is(struct tok t, const char *s)
{
    size_t n = strlen(s);
    return t.len == n && memcmp(t.s, s, n) == 0;
}

static bool tok_is_name(struct tok t)
{
    return t.len > 0 && (t.s[0] == '_' || t.s[0] == '$' || t.s[0] == '%' || (t.s[0] >= 'a' && t.s[0] <= 'z') ||
                         (t.s[0] >= 'A' && t.s[0] <= 'Z'));
}

/* Size in bytes of a PTX fundamental type directive, 0 if t is not one; *is_float for float types. */
static uint32_t type_size(struct tok t, bool *is_float)
{
    static const struct {
        const char *name;
        uint8_t size, is_float;
    } types[] = {
        {".b8", 1, 0},     {".u8", 1, 0},       {".s8", 1, 0},      {".b16", 2, 0},       {".u16", 2, 0},
        {".s16", 2, 0},    {".f16", 2, 1},      {".bf16", 2, 1},    {".b32", 4, 0},       {".u32", 4, 0},
        {".s32", 4, 0},    {".f32", 4, 1},      {".f16x2", 4, 0},   {".bf16x2", 4, 0},    {".tf32", 4, 0},
        {".b64", 8, 0},    {".u64", 8, 0},      {".s64", 8, 0},     {".f64", 8, 1},       {".b128", 16, 0},
        {".texref", 8, 0}, {".samplerref", 8, 0}, {".surfref", 8, 0}, {".pred", 1, 0},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (tok_is(t, types[i].name)) {
            *is_float = types[i].is_float;
            return types[i].size;
        }
    }
    return 0;
}

static uint32_t vector_width(struct tok t)
{
    return tok_is(t, ".v2") ? 2 : tok_is(t, ".v4") ? 4 : tok_is(t, ".v8") ? 8 : 0;
}

/* Unsigned integer token (decimal, 0x hex, 0 octal, 0b binary; trailing U allowed); false if not one. */
static bool tok_uint(struct tok t, uint64_t *v)
{
    char buf[80];
    if (t.len == 0 || t.len >= sizeof buf || !is_digit(t.s[0]))
        return false;
    memcpy(buf, t.s, t.len);
    buf[t.len] = '\0';
    size_t n = t.len;
    if (buf[n - 1] == 'U' || buf[n - 1] == 'u')
        buf[--n] = '\0';
    int base = 10;
    const char *digits = buf;
    if (n > 1 && buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X'))
        base = 16, digits = buf + 2;
    else if (n > 1 && buf[0] == '0' && (buf[1] == 'b' || buf[1] == 'B'))
        base = 2, digits = buf + 2;
    else if (n > 1 && buf[0] == '0')
        base = 8, digits = buf + 1;
    if (*digits == '\0')
        return false;
    char *stop;
    *v = strtoull(digits, &stop, base);
    return *stop == '\0';
}

static int fail(char *err, size_t errlen, const char *what, struct tok t)
{
    int n = t.len > 40 ? 40 : (int)t.len;
    return vgpu_fb_err(err, errlen, "PTX: %s near '%.*s'", what, n, t.len ? t.s : "");
}

/* After a '{' has been read: skip to its matching '}'. */
static int skip_block(struct lex *L, char *err, size_t errlen)
{
    size_t depth = 1;
    while (depth) {
        struct tok t = lex_next(L);
        if (!t.len)
            return fail(err, errlen, "unterminated block", t);
        if (tok_is(t, "{"))
            depth++;
        else if (tok_is(t, "}"))
            depth--;
    }
    return 0;
}

/* Reads the dimensions "[N][M]..." after a name into *count; false for an unsized "[]" or bad number. */
static int read_dims(struct lex *L, uint64_t *count, uint64_t limit, char *err, size_t errlen)
{
    *count = 1;
    while (tok_is(lex_peek(L), "[")) {
        lex_next(L);
        struct tok t = lex_next(L);
        uint64_t n;
        if (tok_is(t, "]")) {
            *count = 0; /* unsized: an extern array */
            continue;
        }
        if (!tok_uint(t, &n) || !tok_is(lex_next(L), "]"))
            return fail(err, errlen, "bad array dimension", t);
        if (n && *count > limit / n)
            return fail(err, errlen, "array too large", t);
        *count *= n;
    }
    return 0;
}

/* "(.param ... , .param ...)" after the '(' of an entry: offsets with natural or declared alignment. */
static int parse_params(struct lex *L, struct vgpu_kernel_info *k, char *err, size_t errlen)
{
    uint64_t cur = 0;
    uint32_t cap = 0;
    for (;;) {
        struct tok t = lex_next(L);
        if (tok_is(t, ")"))
            return 0;
        if (!tok_is(t, ".param"))
            return fail(err, errlen, "expected .param", t);
        uint32_t elem = 0, vec = 1, align = 0;
        uint64_t count = 1;
        bool ptr = false, is_float, named = false;
        for (;;) {
            t = lex_next(L);
            uint32_t sz, w;
            if (!t.len)
                return fail(err, errlen, "unterminated parameter list", t);
            if (tok_is(t, ",") || tok_is(t, ")"))
                break;
            if (tok_is(t, ".ptr")) {
                ptr = true; /* what follows (.global .align N) describes the pointee */
            } else if (tok_is(t, ".align")) {
                uint64_t a;
                struct tok n = lex_next(L);
                if (!tok_uint(n, &a) || a == 0 || a > 4096 || (a & (a - 1)))
                    return fail(err, errlen, "bad .align", n);
                if (!ptr)
                    align = (uint32_t)a;
            } else if ((sz = type_size(t, &is_float)) != 0) {
                elem = sz;
            } else if ((w = vector_width(t)) != 0) {
                vec = w;
            } else if (tok_is_name(t) && !named) {
                named = true;
                if (read_dims(L, &count, PTX_MAX_PARAM_BYTES, err, errlen) != 0)
                    return -1;
            }
        }
        if (!elem || !named || count == 0)
            return fail(err, errlen, "parameter without type, name or size", t);
        uint64_t size = (uint64_t)elem * vec * count;
        uint64_t a = align ? align : (uint64_t)elem * vec;
        uint64_t off = (cur + a - 1) / a * a;
        if (size > PTX_MAX_PARAM_BYTES || off + size > PTX_MAX_PARAM_BYTES)
            return fail(err, errlen, "parameters too large", t);
        if (k->num_params == cap) {
            cap = cap ? cap * 2 : 8;
            struct vgpu_param_layout *np = realloc(k->params, cap * sizeof *np);
            if (!np)
                return vgpu_fb_err(err, errlen, "out of memory");
            k->params = np;
        }
        k->params[k->num_params].offset = (uint32_t)off;
        k->params[k->num_params].size = (uint32_t)size;
        k->num_params++;
        cur = off + size;
        k->param_bytes = (uint32_t)cur;
        if (tok_is(t, ")"))
            return 0;
    }
}

/* "x, y, z" after .maxntid/.reqntid: their product (each clamped to 65536, so it cannot overflow). */
static uint64_t read_ntid(struct lex *L)
{
    uint64_t prod = 1, v;
    for (int i = 0; i < 3; i++) {
        if (!tok_uint(lex_peek(L), &v))
            break;
        lex_next(L);
        prod *= v > 65536 ? 65536 : v;
        if (!tok_is(lex_peek(L), ","))
            break;
        lex_next(L);
    }
    return prod;
}

/* After ".entry": NAME [(params)] [performance directives] then '{' body or ';' (a declaration). */
static int parse_entry(struct lex *L, bool is_extern, struct vgpu_module_info *out, char *err, size_t errlen)
{
    struct tok name = lex_next(L);
    if (!tok_is_name(name))
        return fail(err, errlen, "expected entry name", name);
    struct vgpu_kernel_info k = {0};
    uint64_t bound = 0;
    int rc = 0;
    if (tok_is(lex_peek(L), "(")) {
        lex_next(L);
        rc = parse_params(L, &k, err, errlen);
    }
    while (rc == 0) {
        struct tok t = lex_next(L);
        if (!t.len) {
            rc = fail(err, errlen, "entry without body", name);
        } else if (tok_is(t, ".maxntid") || tok_is(t, ".reqntid")) {
            uint64_t n = read_ntid(L);
            if (n && (!bound || n < bound))
                bound = n;
        } else if (tok_is(t, ";")) {
            break; /* declaration only */
        } else if (tok_is(t, "{")) {
            rc = skip_block(L, err, errlen);
            if (rc == 0 && !is_extern) {
                struct vgpu_kernel_info *nk = vgpu_fb_add_kernel(out);
                if (!nk || !(k.name = vgpu_fb_strndup(name.s, name.len))) {
                    rc = vgpu_fb_err(err, errlen, "out of memory");
                    break;
                }
                k.max_threads = vgpu_fb_max_threads(0, bound);
                *nk = k;
                return 0;
            }
            break;
        }
        /* anything else (.minnctapersm 2, .maxnreg 64, .noreturn ...) is irrelevant here */
    }
    free(k.name);
    free(k.params);
    return rc;
}

/* A variable being declared at module scope. */
struct var {
    bool is_extern, wanted, constant, is_float;
    uint32_t elem, vec;
    struct tok name;
    uint64_t count;
    uint8_t *init;
};

/* Little-endian store of v into an n-byte element; bytes beyond 8 (.b128) get 0. */
static void store(uint8_t *dst, uint64_t v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        dst[i] = i < 8 ? (uint8_t)(v >> (8 * i)) : 0;
}

/* Bits of a numeric literal for an element of the variable's type; false if t is not a number. */
static bool literal_bits(struct tok t, bool negative, const struct var *v, uint64_t *bits)
{
    char buf[80];
    if (t.len == 0 || t.len >= sizeof buf || !is_digit(t.s[0]))
        return false;
    memcpy(buf, t.s, t.len);
    buf[t.len] = '\0';
    if ((buf[1] == 'f' || buf[1] == 'F' || buf[1] == 'd' || buf[1] == 'D') && buf[0] == '0' && t.len > 2) {
        /* 0fXXXXXXXX / 0dXXXXXXXXXXXXXXXX: IEEE bit patterns, as nvcc writes float initialisers */
        char *stop;
        *bits = strtoull(buf + 2, &stop, 16);
        return *stop == '\0';
    }
    bool hex = t.len > 1 && (buf[1] == 'x' || buf[1] == 'X');
    if (!hex && (strchr(buf, '.') || strchr(buf, 'e') || strchr(buf, 'E'))) {
        double d = strtod(buf, NULL);
        if (negative)
            d = -d;
        if (v->is_float && v->elem == 4) {
            float f = (float)d;
            uint32_t u;
            memcpy(&u, &f, sizeof u);
            *bits = u;
        } else if (v->is_float && v->elem == 8) {
            memcpy(bits, &d, sizeof *bits);
        } else {
            *bits = (d >= -9.2e18 && d <= 9.2e18) ? (uint64_t)(int64_t)d : 0;
        }
        return true;
    }
    uint64_t u;
    if (!tok_uint(t, &u))
        return false;
    *bits = negative ? (uint64_t)0 - u : u;
    return true;
}

/* After '=': the initialiser of v, as a scalar or nested {...} lists, into v->init. Stops before the ','
 * or ';' that ends the declarator. Symbol references (generic(sym), sym+4) become zeros: their addresses
 * are only known once loaded. */
static int parse_init(struct lex *L, struct var *v, char *err, size_t errlen)
{
    uint64_t size = (uint64_t)v->elem * v->vec * v->count, idx = 0, n = size / v->elem;
    if (size == 0 || size > L->init_left)
        return fail(err, errlen, "initialised variable of bad size", v->name);
    L->init_left -= size;
    free(v->init);
    if (!(v->init = calloc(1, (size_t)size)))
        return vgpu_fb_err(err, errlen, "out of memory");
    size_t depth = 0;
    bool negative = false;
    for (;;) {
        struct tok t = lex_peek(L);
        if (!t.len)
            return fail(err, errlen, "unterminated initialiser", v->name);
        if (depth == 0 && (tok_is(t, ",") || tok_is(t, ";")))
            return 0;
        lex_next(L);
        uint64_t bits;
        if (tok_is(t, "{")) {
            depth++;
        } else if (tok_is(t, "}")) {
            if (depth == 0)
                return fail(err, errlen, "unbalanced '}' in initialiser", t);
            depth--;
        } else if (tok_is(t, "-")) {
            negative = !negative;
        } else if (literal_bits(t, negative, v, &bits)) {
            if (idx < n)
                store(v->init + idx * v->elem, bits, v->elem);
            idx++;
            negative = false;
        } else if (tok_is_name(t)) {
            if (tok_is(lex_peek(L), "(")) { /* generic(sym) */
                while ((t = lex_next(L)).len && !tok_is(t, ")"))
                    ;
            }
            if (tok_is(lex_peek(L), "+") || tok_is(lex_peek(L), "-")) { /* sym+offset */
                lex_next(L);
                lex_next(L);
            }
            idx++;
            negative = false;
        }
    }
}

static int finish_var(struct var *v, struct vgpu_module_info *out, char *err, size_t errlen)
{
    int rc = 0;
    if (v->wanted && !v->is_extern && v->name.len && v->elem && v->count) {
        struct vgpu_global_info *g = vgpu_fb_add_global(out);
        if (!g || !(g->name = vgpu_fb_strndup(v->name.s, v->name.len))) {
            rc = vgpu_fb_err(err, errlen, "out of memory");
        } else {
            g->size = (uint64_t)v->elem * v->vec * v->count;
            g->init = v->init;
            g->constant = v->constant;
            v->init = NULL;
        }
    }
    free(v->init);
    v->init = NULL;
    v->name.len = 0;
    v->count = 1;
    return rc;
}

/* A module-scope statement starting with first: an entry, a function (skipped), a variable declaration, or
 * something else that ends with ';' or a {...} block (.section, .pragma ...). */
static int parse_statement(struct lex *L, struct tok first, struct vgpu_module_info *out, char *err, size_t errlen)
{
    struct var v = {.vec = 1, .count = 1};
    struct tok t = first;
    int rc = 0;
    for (;; t = lex_next(L)) {
        uint32_t sz, w;
        if (!t.len) {
            rc = fail(err, errlen, "unterminated statement", first);
            break;
        }
        if (tok_is(t, ".entry")) {
            rc = parse_entry(L, v.is_extern, out, err, errlen);
            break;
        }
        if (tok_is(t, ".func")) { /* device function: skip its signature and body */
            for (;;) {
                t = lex_next(L);
                if (!t.len || tok_is(t, ";"))
                    break;
                if (tok_is(t, "{")) {
                    rc = skip_block(L, err, errlen);
                    break;
                }
            }
            break;
        }
        if (tok_is(t, ";")) {
            rc = finish_var(&v, out, err, errlen);
            break;
        }
        if (tok_is(t, ",")) {
            if ((rc = finish_var(&v, out, err, errlen)) != 0)
                break;
        } else if (tok_is(t, "{")) {
            rc = skip_block(L, err, errlen);
            break;
        } else if (tok_is(t, "=")) {
            if (!v.name.len || !v.elem) {
                rc = fail(err, errlen, "initialiser without a declared variable", t);
                break;
            }
            if (v.count == 0) {
                rc = fail(err, errlen, "unsized initialised array", v.name);
                break;
            }
            if ((rc = parse_init(L, &v, err, errlen)) != 0)
                break;
        } else if (tok_is(t, ".extern")) {
            v.is_extern = true;
        } else if (tok_is(t, ".global")) {
            v.wanted = true;
        } else if (tok_is(t, ".const")) {
            v.wanted = v.constant = true;
        } else if (tok_is(t, ".align")) {
            lex_next(L); /* the variable's own alignment: irrelevant to its size */
        } else if ((sz = type_size(t, &v.is_float)) != 0) {
            v.elem = sz;
        } else if ((w = vector_width(t)) != 0) {
            v.vec = w;
        } else if (tok_is_name(t) && !v.name.len && v.elem) {
            v.name = t;
            if ((rc = read_dims(L, &v.count, UINT64_MAX / 16, err, errlen)) != 0)
                break;
        }
    }
    free(v.init);
    return rc;
}

int vgpu_ptx_parse(const char *p, size_t n, struct vgpu_module_info *out, char *err, size_t errlen)
{
    const char *nul = memchr(p, '\0', n);
    struct lex L = {.p = p, .end = nul ? nul : p + n, .init_left = PTX_MAX_INIT_BYTES};
    for (;;) {
        struct tok t = lex_next(&L);
        if (!t.len)
            return 0;
        if (tok_is(t, ".version") || tok_is(t, ".address_size")) {
            lex_next(&L);
        } else if (tok_is(t, ".target") || tok_is(t, ".file")) {
            /* comma-separated operands, ended by a newline we cannot see: take "x (, y)*" */
            lex_next(&L);
            if (tok_is(t, ".file") && lex_peek(&L).len && lex_peek(&L).s[0] == '"')
                lex_next(&L);
            while (tok_is(lex_peek(&L), ",")) {
                lex_next(&L);
                lex_next(&L);
            }
        } else if (tok_is(t, ";") || tok_is(t, "}")) {
            continue;
        } else if (parse_statement(&L, t, out, err, errlen) != 0) {
            return -1;
        }
    }
}

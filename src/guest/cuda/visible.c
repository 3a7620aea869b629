/*
 * CUDA_VISIBLE_DEVICES parsing (see visible.h for the rules).
 *
 * Where the rules come from: NVIDIA's CUDA programming guide (indices or "GPU-" UUIDs,
 * a unique UUID prefix is enough, enumeration in list order, "only the devices whose
 * index precedes the invalid index are visible"), and measurements of the CUDA 13.0
 * driver (580 series, H100) for what the guide leaves open: "" and "-1" give
 * CUDA_ERROR_NO_DEVICE; "0,0", " 0,0" and "GPU-<prefix>,GPU-<full uuid>" give
 * CUDA_ERROR_INVALID_DEVICE; "0,5,0", "0,junk,0", "0,,0", "0,GPU-<uuid>" and
 * "GPU-<uuid>,0" show device 0 only; " 0", "\t0", "0 ", "+0", "-0", "00", "0x1",
 * "0gpu" are index 0; "GPU-73C8424B", "GPU-73c8-424b", "GPU--73c8424b", "GPU-73" and
 * "GPU-<full uuid>0" match; "GPU-", "gpu-<prefix>", " GPU-<prefix>", "GPU-<prefix> "
 * and "GPU-<prefix>xyz" do not; "MIG-<prefix of the GPU's uuid>" matches the GPU, and
 * "MIG-<uuid>,GPU-<same>" is a repeat. PyTorch's matcher (torch.cuda._parse_visible_devices,
 * validated against the 525 driver) agrees where the two overlap; from it comes the one
 * rule a single-GPU host cannot show: an ambiguous prefix ends the list.
 */
#include "guest/cuda/visible.h"

#include <ctype.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>

enum entry_form { FORM_INDEX, FORM_UUID, FORM_INVALID };

struct entry {
    const char *s; /* not NUL-terminated */
    size_t len;
};

/* The entry at *p (up to the next comma or the end of the string); advances *p past its
 * comma. false after the last entry. */
static bool next_entry(const char **p, bool *more, struct entry *e)
{
    if (!*more) return false;
    const char *s = *p, *end = strchr(s, ',');
    if (!end) {
        end = s + strlen(s);
        *more = false;
        *p = end;
    } else {
        *p = end + 1;
    }
    e->s = s;
    e->len = (size_t)(end - s);
    return true;
}

/* An index entry as strtoul reads it: leading blanks, an optional sign, decimal digits,
 * anything after them ignored. -1 when there are no digits, for a negative number
 * (other than -0), or past INT_MAX. */
static long entry_index(const struct entry *e)
{
    size_t i = 0;
    while (i < e->len && isspace((unsigned char)e->s[i])) i++;
    bool neg = false;
    if (i < e->len && (e->s[i] == '+' || e->s[i] == '-')) neg = e->s[i++] == '-';
    if (i >= e->len || !isdigit((unsigned char)e->s[i])) return -1;
    long v = 0;
    for (; i < e->len && isdigit((unsigned char)e->s[i]); i++) {
        v = v * 10 + (e->s[i] - '0');
        if (v > INT_MAX) return -1;
    }
    return neg && v != 0 ? -1 : v;
}

static bool uuid_prefixed(const struct entry *e)
{
    return e->len >= 4 && (memcmp(e->s, "GPU-", 4) == 0 || memcmp(e->s, "MIG-", 4) == 0);
}

static enum entry_form entry_form(const struct entry *e)
{
    if (uuid_prefixed(e)) return FORM_UUID;
    if (entry_index(e) >= 0) return FORM_INDEX;
    return FORM_INVALID; /* junk, empty, negative */
}

/* Whether the UUID entry's digits (after "GPU-"/"MIG-", dashes skipped, any case) begin
 * device uuid u's 32 hex digits; digits after the 32nd are not looked at. An entry
 * without digits matches nothing. */
static bool uuid_prefix_of(const struct entry *e, const unsigned char *u)
{
    static const char hex[] = "0123456789abcdef";
    size_t k = 0; /* digits matched */
    for (size_t i = 4; i < e->len && k < 32; i++) {
        int c = tolower((unsigned char)e->s[i]);
        if (c == '-') continue;
        int want = hex[(u[k / 2] >> (k % 2 ? 0 : 4)) & 0xf];
        if (c != want) return false;
        k++;
    }
    return k > 0;
}

/* The one device the UUID entry names; -1 when none does or several do. */
static int uuid_match(const struct entry *e, const unsigned char (*uuids)[16], int n)
{
    int found = -1;
    for (int d = 0; d < n; d++) {
        if (!uuid_prefix_of(e, uuids[d])) continue;
        if (found >= 0) return -1; /* ambiguous */
        found = d;
    }
    return found;
}

int vg_visible_resolve(const char *spec, const unsigned char (*uuids)[16], int n, int *out)
{
    if (!spec || n <= 0) return 0;
    const char *p = spec;
    bool more = true;
    struct entry e;
    enum entry_form list_form = FORM_INVALID;
    int count = 0;
    while (next_entry(&p, &more, &e)) {
        enum entry_form f = entry_form(&e);
        if (count == 0) list_form = f;
        if (f == FORM_INVALID || f != list_form) break;
        int dev;
        if (f == FORM_INDEX) {
            long v = entry_index(&e);
            if (v >= n) break;
            dev = (int)v;
        } else {
            dev = uuid_match(&e, uuids, n);
            if (dev < 0) break;
        }
        for (int i = 0; i < count; i++)
            if (out[i] == dev) return -1; /* named twice */
        out[count++] = dev;
    }
    return count;
}

bool vg_visible_may_select(const char *spec)
{
    if (!spec) return true;
    const char *p = spec;
    bool more = true;
    struct entry e;
    if (!next_entry(&p, &more, &e)) return false;
    switch (entry_form(&e)) {
    case FORM_INDEX: return true;
    case FORM_UUID:
        for (size_t i = 4; i < e.len; i++)
            if (e.s[i] != '-') return isxdigit((unsigned char)e.s[i]) != 0;
        return false;
    default: return false;
    }
}

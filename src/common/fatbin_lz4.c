/* LZ4 block decoder for fatbin entries flagged 0x2000 (nvcc --compress-mode=speed): raw blocks, no frame
 * header. Written to be safe on hostile input: every length is checked against both buffers. */
#include "common/fatbin_internal.h"

/* Read an LZ4 length continuation (bytes of 255 followed by a final byte < 255) onto *len. Stops growing
 * once *len exceeds limit, which callers then reject, so the sum never overflows. */
static int read_more(const uint8_t **ip, const uint8_t *iend, size_t *len, size_t limit)
{
    uint8_t b;
    do {
        if (*ip >= iend)
            return -1;
        b = *(*ip)++;
        *len += b;
        if (*len > limit)
            return -1;
    } while (b == 255);
    return 0;
}

int vgpu_lz4_decode(const uint8_t *src, size_t srclen, uint8_t *dst, size_t dstcap, size_t *outlen)
{
    const uint8_t *ip = src, *iend = src + srclen;
    uint8_t *op = dst, *oend = dst + dstcap;
    if (srclen == 0)
        return -1;
    for (;;) {
        if (ip >= iend)
            return -1;
        uint8_t token = *ip++;
        size_t lit = token >> 4;
        if (lit == 15 && read_more(&ip, iend, &lit, dstcap) != 0)
            return -1;
        if (lit > (size_t)(iend - ip) || lit > (size_t)(oend - op))
            return -1;
        memcpy(op, ip, lit);
        op += lit;
        ip += lit;
        if (ip == iend) /* the last sequence has literals only */
            break;
        if (iend - ip < 2)
            return -1;
        size_t off = (size_t)ip[0] | (size_t)ip[1] << 8;
        ip += 2;
        if (off == 0 || off > (size_t)(op - dst))
            return -1;
        size_t match = token & 15;
        if (match == 15 && read_more(&ip, iend, &match, dstcap) != 0)
            return -1;
        match += 4;
        if (match > (size_t)(oend - op))
            return -1;
        const uint8_t *from = op - off;
        if (off >= match) {
            memcpy(op, from, match);
            op += match;
        } else {
            /* Overlapping copy repeats the last `off` bytes: must go forward byte by byte. */
            for (size_t i = 0; i < match; i++)
                op[i] = from[i];
            op += match;
        }
    }
    *outlen = (size_t)(op - dst);
    return 0;
}

/* zstd decoding for fatbin entries flagged 0x8000 (nvcc's default for PTX, and for everything with
 * -Xfatbin -compress-all or --compress-mode=size). There is no zstd header or -dev package on the build
 * machines, so libzstd.so.1 is opened at run time and the few functions needed are declared here. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "common/fatbin_internal.h"

#include <dlfcn.h>
#include <stdio.h>
#include <pthread.h>

#define ZSTD_DEFAULT_SONAME "libzstd.so.1"
#define ZSTD_CONTENTSIZE_UNKNOWN (0ULL - 1)
#define ZSTD_CONTENTSIZE_ERROR (0ULL - 2)

/* Signatures from zstd.h (stable API since zstd 1.0). */
typedef size_t (*zstd_decompress_fn)(void *dst, size_t dst_cap, const void *src, size_t src_size);
typedef unsigned (*zstd_is_error_fn)(size_t code);
typedef const char *(*zstd_error_name_fn)(size_t code);
typedef unsigned long long (*zstd_frame_content_size_fn)(const void *src, size_t src_size);

static struct {
    pthread_mutex_t lock;
    int state; /* 0 not tried, 1 loaded, -1 failed (reason in why) */
    const char *soname;
    void *handle;
    zstd_decompress_fn decompress;
    zstd_is_error_fn is_error;
    zstd_error_name_fn error_name;
    zstd_frame_content_size_fn content_size;
    char why[160];
} zs = {.lock = PTHREAD_MUTEX_INITIALIZER, .soname = ZSTD_DEFAULT_SONAME};

/* dlsym returns void *; copying the bits is the portable way to turn it into a function pointer. */
static int sym(const char *name, void *fn_out, size_t fn_size)
{
    void *p = dlsym(zs.handle, name);
    if (!p || fn_size != sizeof p)
        return -1;
    memcpy(fn_out, &p, sizeof p);
    return 0;
}

/* Called with zs.lock held. */
static void load(void)
{
    zs.handle = dlopen(zs.soname, RTLD_NOW | RTLD_LOCAL);
    if (!zs.handle) {
        const char *e = dlerror();
        snprintf(zs.why, sizeof zs.why, "zstd-compressed fatbin entry, but %s could not be loaded (%s)", zs.soname,
                 e ? e : "not found");
        zs.state = -1;
        return;
    }
    if (sym("ZSTD_decompress", &zs.decompress, sizeof zs.decompress) || sym("ZSTD_isError", &zs.is_error, sizeof zs.is_error) ||
        sym("ZSTD_getErrorName", &zs.error_name, sizeof zs.error_name) ||
        sym("ZSTD_getFrameContentSize", &zs.content_size, sizeof zs.content_size)) {
        snprintf(zs.why, sizeof zs.why, "%s lacks the zstd decompression functions", zs.soname);
        dlclose(zs.handle);
        zs.handle = NULL;
        zs.state = -1;
        return;
    }
    zs.state = 1;
}

void vgpu_zstd_set_library(const char *soname)
{
    pthread_mutex_lock(&zs.lock);
    /* The old handle stays open: a decode on another thread may still be using its functions. */
    zs.soname = soname ? soname : ZSTD_DEFAULT_SONAME;
    zs.state = 0;
    zs.handle = NULL;
    pthread_mutex_unlock(&zs.lock);
}

int vgpu_zstd_decode(const uint8_t *src, size_t srclen, uint8_t *dst, size_t dstcap, size_t *outlen, char *err,
                     size_t errlen)
{
    pthread_mutex_lock(&zs.lock);
    if (zs.state == 0)
        load();
    int state = zs.state;
    zstd_decompress_fn decompress = zs.decompress;
    zstd_is_error_fn is_error = zs.is_error;
    zstd_error_name_fn error_name = zs.error_name;
    zstd_frame_content_size_fn content_size = zs.content_size;
    if (state < 0)
        vgpu_fb_err(err, errlen, "%s", zs.why);
    pthread_mutex_unlock(&zs.lock);
    if (state < 0)
        return -1;

    /* Refuse a frame that declares a different size before zstd does any work on it. */
    unsigned long long declared = content_size(src, srclen);
    if (declared == ZSTD_CONTENTSIZE_ERROR)
        return vgpu_fb_err(err, errlen, "corrupt zstd frame header in fatbin entry");
    if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != dstcap)
        return vgpu_fb_err(err, errlen, "zstd frame holds %llu bytes, fatbin entry says %zu", declared, dstcap);
    size_t r = decompress(dst, dstcap, src, srclen);
    if (is_error(r))
        return vgpu_fb_err(err, errlen, "zstd: %s", error_name(r));
    *outlen = r;
    return 0;
}

/*
 * libFuzzer harness for vgpud's configuration file parser (src/server/config.c): any
 * text must be accepted or refused with a message, never crash or leak. Token files
 * named by the input resolve under a directory that does not exist, so nothing outside
 * is read. Seeds: tests/fuzz/corpus/fuzz_config/.
 *
 *   clang -g -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude -Isrc -I. \
 *       tests/fuzz/fuzz_config.c src/server/config.c src/common/util.c -o fuzz_config
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "server/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vgpu_config c;
    char err[512];
    if (config_parse((const char *)data, size, "/nonexistent-vgpu-fuzz/vgpud.conf", &c, err, sizeof err) == 0) {
        /* a parsed configuration is consistent */
        for (size_t i = 0; i < c.ntenants; i++)
            if (!c.tenants[i].name[0] || c.tenants[i].weight < 1 || c.tenants[i].weight > VGPU_WEIGHT_MAX)
                __builtin_trap();
        config_free(&c);
    } else if (!memchr(err, 0, sizeof err) || !err[0]) {
        __builtin_trap(); /* every refusal says why */
    }
    return 0;
}

/*
 * Fuzz harness: the module-image parser (src/common/fatbin*.c: fatbin containers, ELF
 * cubins, LZ4 and zstd entries, PTX text) through the entry points the daemon calls on
 * images a guest sends: vgpu_image_size_bounded, vgpu_module_parse (with the lookups
 * the emu backend then makes), vgpu_fatbin_select and vgpu_image_inputs.
 *
 * Input: the image itself (a fatbin, cubin or PTX file is a valid seed). It is copied
 * into a buffer of exactly its size, so any read past the end shows under ASan.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/fatbin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t fuzz_sink_byte;

static int count_input(const struct vgpu_image_input *in, void *arg)
{
    /* Touch the first and last byte of each piece: it must lie inside valid memory. */
    if (in->len) {
        volatile uint8_t b = ((const uint8_t *)in->data)[0];
        b = ((const uint8_t *)in->data)[in->len - 1];
        (void)b;
    }
    ++*(size_t *)arg;
    return 0;
}

static void parse_with(const uint8_t *img, size_t size, uint32_t want_sm)
{
    char err[256];
    struct vgpu_module_info info;
    if (vgpu_module_parse(img, size, want_sm, &info, err, sizeof err) == 0) {
        for (uint32_t i = 0; i < info.num_kernels; i++) {
            const struct vgpu_kernel_info *k = vgpu_module_find_kernel(&info, info.kernels[i].name);
            if (!k) abort(); /* every listed kernel must be found by its name */
            /* (param_bytes is the last parameter's end, not a bound on every parameter:
             * the launch paths check each one against the buffer they get.) */
            uint32_t sum = 0;
            for (uint32_t p = 0; p < k->num_params; p++) sum += k->params[p].offset + k->params[p].size;
            if (sum == 0xFFFFFFFFu) fuzz_sink_byte = 0; /* keeps the reads */
        }
        for (uint32_t i = 0; i < info.num_globals; i++) {
            const struct vgpu_global_info *g = vgpu_module_find_global(&info, info.globals[i].name);
            if (!g) abort();
            if (g->init && g->size) {
                volatile uint8_t b = g->init[g->size - 1];
                (void)b;
            }
        }
        vgpu_module_info_free(&info);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *img = malloc(size ? size : 1);
    if (!img) return 0;
    memcpy(img, data, size);

    size_t bounded = 0;
    if (vgpu_image_size_bounded(img, size, &bounded) == 0 && bounded > size + 1) abort();

    parse_with(img, size, 90);
    parse_with(img, size, 0);

    char err[256];
    uint8_t *sel = NULL;
    size_t sel_len = 0;
    uint32_t kind = 0, arch = 0;
    if (vgpu_fatbin_select(img, size, 75, &sel, &sel_len, &kind, &arch, err, sizeof err) == 0) free(sel);

    size_t pieces = 0;
    vgpu_image_inputs(img, size, 90, count_input, &pieces, err, sizeof err);

    free(img);
    return 0;
}

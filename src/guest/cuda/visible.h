/*
 * CUDA_VISIBLE_DEVICES, as NVIDIA's driver reads it: which of the daemon's devices the
 * guest shows, in which order. Pure functions (no state, no I/O) so that tests can run
 * them against made-up device tables; init.c applies them at cuInit.
 */
#ifndef VGPU_GUEST_VISIBLE_H
#define VGPU_GUEST_VISIBLE_H

#include <stdbool.h>

/* Resolve `spec` (the variable's value) against n devices whose 16-byte UUIDs are
 * uuids[0..n-1], in the daemon's order. Writes the daemon ordinals of the visible
 * devices, in the guest's order, to out (room for n entries) and returns how many, or
 * -1 when the list names a device twice (the driver's cuInit then fails with
 * CUDA_ERROR_INVALID_DEVICE; with 0 visible devices it fails with CUDA_ERROR_NO_DEVICE).
 *
 * The rules (those of the NVIDIA driver, measured on CUDA 13.0; see visible.c):
 *   - a comma-separated list of entries, each a device index or a UUID prefix;
 *   - an index is read like strtoul: leading blanks, an optional sign, decimal digits,
 *     the rest ignored ("1gpu" and "1 " are 1, "0x1" is 0);
 *   - a UUID entry is "GPU-" or "MIG-" (exactly; the two are interchangeable) and hex
 *     digits, any case, dashes anywhere ignored, matched against the beginning of a
 *     device's 32 UUID digits; digits after the 32nd are ignored; it must match exactly
 *     one device;
 *   - the first entry decides which form the list uses; an entry of the other form,
 *     an index out of range, a negative number, an empty entry, a UUID prefix matching
 *     no device or several, or junk ends the list: the devices before it stay visible;
 *   - a device named twice (before the list ends) is an error. */
int vg_visible_resolve(const char *spec, const unsigned char (*uuids)[16], int n, int *out);

/* false when `spec` selects no device whatever the devices are (empty, or its first
 * entry is neither an index nor a UUID prefix): cuInit can fail without asking the
 * daemon. */
bool vg_visible_may_select(const char *spec);

#endif

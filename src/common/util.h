/* Small helpers shared by daemon, guest and command line tool. */
#ifndef VGPU_UTIL_H
#define VGPU_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "16G", "512M", "4096" -> bytes. 0 on success. */
int vgpu_parse_size(const char *s, unsigned long long *out);
/* Compare secrets without an early exit. */
bool vgpu_consttime_equal(const void *a, const void *b, size_t n);
/* Current process name (comm), best effort. */
void vgpu_process_name(char *out, size_t n);

#endif

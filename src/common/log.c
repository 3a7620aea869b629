/* Logging to stderr, level from VGPU_LOG. See log.h. */
#include "common/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static atomic_int log_level = -1; /* read lazily from VGPU_LOG; racing first readers agree */
static const char *log_tag = "vgpu";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void vgpu_log_set_tag(const char *tag) { log_tag = tag; }
void vgpu_log_set_level(enum vgpu_log_level level) { atomic_store(&log_level, (int)level); }

int vgpu_log_enabled(enum vgpu_log_level level)
{
    if (atomic_load_explicit(&log_level, memory_order_relaxed) < 0) {
        int lvl = VGPU_LOG_WARN;
        const char *env = getenv("VGPU_LOG");
        if (env) {
            for (int i = 0; i < 4; i++)
                if (strcmp(env, level_names[i]) == 0) lvl = i;
        }
        atomic_store_explicit(&log_level, lvl, memory_order_relaxed);
    }
    return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void vgpu_log(enum vgpu_log_level level, const char *fmt, ...)
{
    if (!vgpu_log_enabled(level)) return;
    /* Format the whole line first so concurrent threads never interleave within a line. */
    char line[1024];
    int n = snprintf(line, sizeof line, "%s[%d] %s: ", log_tag, (int)getpid(), level_names[level]);
    if (n < 0) return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) return;
    size_t len = strlen(line);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

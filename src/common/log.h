/*
 * Logging for every vgpu component: one line per message to stderr, filtered by
 * VGPU_LOG=error|warn|info|debug (default warn). Never stdout: applications parse it.
 */
#ifndef VGPU_LOG_H
#define VGPU_LOG_H

enum vgpu_log_level { VGPU_LOG_ERROR = 0, VGPU_LOG_WARN = 1, VGPU_LOG_INFO = 2, VGPU_LOG_DEBUG = 3 };

/* Component tag printed in front of every line ("vgpu", "vgpud", ...). */
void vgpu_log_set_tag(const char *tag);
/* Override the level (otherwise read once from VGPU_LOG). */
void vgpu_log_set_level(enum vgpu_log_level level);
int vgpu_log_enabled(enum vgpu_log_level level);
void vgpu_log(enum vgpu_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define VGPU_ERROR(...) vgpu_log(VGPU_LOG_ERROR, __VA_ARGS__)
#define VGPU_WARN(...) vgpu_log(VGPU_LOG_WARN, __VA_ARGS__)
#define VGPU_INFO(...) vgpu_log(VGPU_LOG_INFO, __VA_ARGS__)
#define VGPU_DEBUG(...) do { if (vgpu_log_enabled(VGPU_LOG_DEBUG)) vgpu_log(VGPU_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif

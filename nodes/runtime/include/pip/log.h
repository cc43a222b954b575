/*
 * Structured logging.  The library never prints by itself: it formats one
 * line per event and hands it to the sink that the program sets.
 *
 * Line format (greppable, one line per event):
 *   2026-12-04T20:33:13.123Z INFO node=counters cid=abc msg="started" k=v
 */
#ifndef PIP_LOG_H
#define PIP_LOG_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pip_log_level {
    PIP_LOG_ERROR = 0,
    PIP_LOG_WARN,
    PIP_LOG_INFO,
    PIP_LOG_DEBUG,
    PIP_LOG_TRACE,
} pip_log_level;

/* Receives one formatted line, without a trailing newline. */
typedef void (*pip_log_sink)(pip_log_level level, const char *line,
                             void *ctx);

/* Sets the sink (NULL: drop every line) and the most verbose level kept. */
void pip_log_configure(pip_log_sink sink, void *ctx, pip_log_level level);
/* A sink that writes each line to stderr. */
void pip_log_stderr(pip_log_level level, const char *line, void *ctx);
/* Parses "error", "warn", "info", "debug" or "trace"; -1 if unknown. */
int pip_log_level_parse(const char *name);
/* True when lines at this level reach the sink. */
int pip_log_enabled(pip_log_level level);

/*
 * Logs one event.  node names the node or component, cid is the
 * correlation id (NULL or empty to omit), fmt the message text.
 * Thread-safe; never blocks on anything but the sink.
 */
void pip_log(pip_log_level level, const char *node, const char *cid,
             const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void pip_vlog(pip_log_level level, const char *node, const char *cid,
              const char *fmt, va_list ap);

#ifdef __cplusplus
}
#endif
#endif

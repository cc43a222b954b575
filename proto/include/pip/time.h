/*
 * Date-time values.  On the wire and in storage a date-time is a UTC string
 * in the canonical form "YYYY-MM-DDTHH:MM:SS.mmmZ", so that byte order is
 * time order.  Inputs may be any ISO 8601 / RFC 3339 date-time with a zone
 * offset (or none, read as UTC) and are normalized to the canonical form.
 */
#ifndef PIP_TIME_H
#define PIP_TIME_H

#include <stdbool.h>
#include <stdint.h>

#define PIP_TIME_STRLEN 25 /* canonical form plus the terminating NUL */

/* Milliseconds since the Unix epoch, from the real-time clock. */
int64_t pip_now_ms(void);
/* Milliseconds from a monotonic clock, for deadlines and latencies. */
int64_t pip_mono_ms(void);
/* Microseconds from a monotonic clock. */
int64_t pip_mono_us(void);

/* Writes ms in canonical form into out[PIP_TIME_STRLEN]. */
void pip_time_format(int64_t ms, char out[PIP_TIME_STRLEN]);
/*
 * Parses an ISO 8601 date-time ("2026-01-31", "2026-01-31T10:00:00Z",
 * "2026-01-31T10:00:00.5+02:00") into ms since the epoch.
 * Returns false when text is not such a date-time.
 */
bool pip_time_parse(const char *text, int64_t *ms);

#endif

/*
 * log.c - stderr logging. Each event is written with one write(2) call so lines from
 * several subtask threads never interleave.
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int level = -1;

int sl__log_level(void)
{
    int l = atomic_load_explicit(&level, memory_order_relaxed);
    if (l >= 0)
        return l;
    const char *e = getenv("SLUICE_LOG_LEVEL");
    l = SL_LOG_NOTICE;
    if (e) {
        if (!strcasecmp(e, "error"))
            l = SL_LOG_ERROR;
        else if (!strcasecmp(e, "warn"))
            l = SL_LOG_WARN;
        else if (!strcasecmp(e, "info"))
            l = SL_LOG_INFO;
        else if (!strcasecmp(e, "debug"))
            l = SL_LOG_DEBUG;
    }
    atomic_store(&level, l);
    return l;
}

static void vwrite(int lv, const char *fmt, va_list ap)
{
    static const char *names[] = {"error", "warn", "notice", "info", "debug"};
    char buf[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(buf, sizeof buf, "%02d:%02d:%02d.%03ld level=%s ", tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, names[lv]);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof buf - 2)
        len = sizeof buf - 2;
    buf[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, len);
    (void)w;
}

void sl__log_write(int lv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwrite(lv, fmt, ap);
    va_end(ap);
}

void sl__log_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwrite(SL_LOG_ERROR, fmt, ap);
    va_end(ap);
    abort();
}

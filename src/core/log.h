/*
 * log.h - one-line key=value logging to stderr and always-on assertions.
 *
 * The level comes from SLUICE_LOG_LEVEL (error, warn, notice, info, debug; default notice) and is
 * checked before anything is formatted. The library never logs to stdout.
 */
#ifndef SL_CORE_LOG_H
#define SL_CORE_LOG_H

/* notice: events a user of a running job wants to see (job id, restarts, restores); the
 * default level shows error, warn and notice. */
enum { SL_LOG_ERROR = 0, SL_LOG_WARN = 1, SL_LOG_NOTICE = 2, SL_LOG_INFO = 3, SL_LOG_DEBUG = 4 };

int sl__log_level(void);
void sl__log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
_Noreturn void sl__log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define SL_LOG(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) <= sl__log_level())                                                            \
            sl__log_write((level), __VA_ARGS__);                                                   \
    } while (0)
#define SL_WARN(...) SL_LOG(SL_LOG_WARN, __VA_ARGS__)
#define SL_NOTICE(...) SL_LOG(SL_LOG_NOTICE, __VA_ARGS__)
#define SL_INFO(...) SL_LOG(SL_LOG_INFO, __VA_ARGS__)
#define SL_DEBUG(...) SL_LOG(SL_LOG_DEBUG, __VA_ARGS__)

/* Always on: invariants that, when broken, mean continuing would corrupt data. */
#define SL_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0))                                                          \
            sl__log_fatal("assertion failed: %s at %s:%d", #cond, __FILE__, __LINE__);             \
    } while (0)

#endif

/*
 * restart.c - the restart strategies of restart.h: none, fixed-delay, failure-rate and
 * exponential-delay, with Flink's semantics and defaults.
 *
 * The strategy is chosen once, from the configuration, when the job starts:
 *   restart-strategy.type set       that strategy, its parameters from restart-strategy.<type>.*
 *   not set, checkpointing enabled  fixed-delay with unlimited attempts and a 1 s delay; like
 *                                   Flink, the restart-strategy.fixed-delay.* keys are not read
 *   not set, no checkpointing       none
 *
 * Each call of sl__restart_on_failure() is one failure of the job at a caller-given time; the
 * answer is the delay before the next attempt or -1. Giving up is final: once a strategy has
 * answered -1 it answers -1 to every later failure, so a caller that reports a second failure
 * of the same attempt cannot revive a job that already failed.
 *
 * Semantics, strategy by strategy (n counts failures):
 *   fixed-delay        the n-th failure is restarted after `delay` while n <= attempts, so
 *                      attempts = 3 grants three restarts and the fourth failure fails the job.
 *   failure-rate       the job fails when this failure and the max-failures-per-interval before
 *                      it all lie within the interval ending now, ends included ("more than
 *                      max failures per interval"); otherwise it restarts after `delay`.
 *   exponential-delay  the k-th failure since the last reset (k = 0, 1, ...) waits
 *                      initial * multiplier^k, plus or minus a random jitter of up to
 *                      jitter-factor of that, then clamped to [initial, max]. When the job
 *                      has run for reset-backoff-threshold since its last restart, k starts
 *                      over at 0. The job fails when k reaches attempts-before-reset-backoff.
 *                      A failure reported before the scheduled restart has happened (now <=
 *                      the restart time) belongs to the same outage: it is not counted and
 *                      gets the time left until that restart.
 * Jitter comes from xorshift64*, seeded by the caller, so a test (or a rerun with the same
 * seed) sees the same delays.
 *
 * Not thread-safe: the job's coordinator owns a strategy.
 */
#include "checkpoint/restart.h"
#include "core/alloc.h"
#include "core/log.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Flink's defaults when checkpointing is enabled and no strategy is configured. */
#define DEFAULT_ATTEMPTS INT_MAX
#define DEFAULT_DELAY_MS 1000
/* Backoffs are computed in doubles and capped here before the jitter is added, so no sum can
 * overflow int64. Far above any max-backoff the table allows. */
#define BACKOFF_CAP ((double)(INT64_C(1) << 61))

typedef enum kind { KIND_NONE, KIND_FIXED_DELAY, KIND_FAILURE_RATE, KIND_EXPONENTIAL } kind;

struct sl__restart {
    kind kind;
    bool gave_up;        /* final: every later failure answers -1 */
    int restarts;        /* restarts granted, for sl__restart_count() */
    int64_t delay_ms;    /* fixed-delay, failure-rate */
    int64_t failures;    /* fixed-delay: failures seen */
    int64_t attempts;    /* fixed-delay: restarts allowed (INT_MAX: unlimited) */
    int64_t *times;      /* failure-rate: ring of the last max_failures + 1 failure times */
    int64_t ring_cap;    /* max_failures + 1 */
    int64_t ring_head;   /* index of the oldest time */
    int64_t ring_len;    /* times held */
    int64_t interval_ms; /* failure-rate window */
    int64_t initial_ms, max_ms, reset_ms; /* exponential-delay */
    double multiplier, jitter;
    int64_t attempts_before_reset;
    int64_t attempt;         /* exponential-delay: failures since the last reset */
    int64_t next_restart_ms; /* when the last granted restart happens */
    bool restarted;          /* next_restart_ms is set */
    uint64_t rng;            /* xorshift64* state, never 0 */
    char describe[512];
};

/* ---------------------------------------------------------------------------------------
 * Random numbers for the jitter
 * ------------------------------------------------------------------------------------- */

/* splitmix64, to spread a small or zero seed over the state; the result is never 0 for the
 * xorshift generator (a 0 state would stay 0 forever). */
static uint64_t seed_state(uint64_t seed)
{
    uint64_t z = seed + UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    z ^= z >> 31;
    return z ? z : UINT64_C(0x9E3779B97F4A7C15);
}

static uint64_t next_random(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

/* A uniform integer in [-off, off] (off >= 0); the modulo bias is below 2^-60 for the ranges
 * a backoff has. */
static int64_t random_offset(uint64_t *s, int64_t off)
{
    if (off <= 0)
        return 0;
    uint64_t range = 2 * (uint64_t)off + 1;
    return (int64_t)(next_random(s) % range) - off;
}

/* ---------------------------------------------------------------------------------------
 * Descriptions
 * ------------------------------------------------------------------------------------- */

/* A duration as the user wrote it, spaced and in lower case: "5s" -> "5 s", "2 MIN" ->
 * "2 min", "5000" -> "5000 ms" (a number without a unit is milliseconds). The text was
 * validated by the config, so it is digits, then optional white space and a unit. */
static void written_duration(const char *text, char *buf, size_t cap)
{
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    const char *digits = p;
    while (isdigit((unsigned char)*p))
        p++;
    int nd = (int)(p - digits);
    while (isspace((unsigned char)*p))
        p++;
    const char *unit = p;
    size_t nu = strlen(unit);
    while (nu && isspace((unsigned char)unit[nu - 1]))
        nu--;
    if (!nu) {
        snprintf(buf, cap, "%.*s ms", nd, digits);
        return;
    }
    snprintf(buf, cap, "%.*s %.*s", nd, digits, (int)nu, unit);
    for (char *q = buf + nd + 1; *q; q++)
        *q = (char)tolower((unsigned char)*q);
}

static const char *duration_key(const sl__config *c, const char *key, char *buf, size_t cap)
{
    written_duration(sl__config_get(c, key), buf, cap);
    return buf;
}

/* "1 attempt", "3 attempts", "unlimited attempts" (INT_MAX is Flink's "infinite"). */
static void describe_attempts(int64_t n, char *buf, size_t cap)
{
    if (n >= INT_MAX)
        snprintf(buf, cap, "unlimited attempts");
    else
        snprintf(buf, cap, "%lld attempt%s", (long long)n, n == 1 ? "" : "s");
}

/* ---------------------------------------------------------------------------------------
 * Creation
 * ------------------------------------------------------------------------------------- */

static void make_fixed_delay(sl__restart *r, const sl__config *c)
{
    char d[64], a[64];
    r->kind = KIND_FIXED_DELAY;
    r->attempts = sl__config_int(c, "restart-strategy.fixed-delay.attempts");
    r->delay_ms = sl__config_duration_ms(c, "restart-strategy.fixed-delay.delay");
    describe_attempts(r->attempts, a, sizeof a);
    snprintf(r->describe, sizeof r->describe, "fixed-delay (%s, delay %s)", a,
             duration_key(c, "restart-strategy.fixed-delay.delay", d, sizeof d));
}

static int make_failure_rate(sl__restart *r, const sl__config *c)
{
    char iv[64], d[64];
    int64_t max = sl__config_int(c, "restart-strategy.failure-rate.max-failures-per-interval");
    r->kind = KIND_FAILURE_RATE;
    r->interval_ms =
        sl__config_duration_ms(c, "restart-strategy.failure-rate.failure-rate-interval");
    r->delay_ms = sl__config_duration_ms(c, "restart-strategy.failure-rate.delay");
    r->ring_cap = max + 1;
    r->times = sl__calloc((size_t)r->ring_cap, sizeof *r->times);
    if (!r->times)
        return -1;
    snprintf(r->describe, sizeof r->describe, "failure-rate (max %lld failure%s per %s, delay %s)",
             (long long)max, max == 1 ? "" : "s",
             duration_key(c, "restart-strategy.failure-rate.failure-rate-interval", iv, sizeof iv),
             duration_key(c, "restart-strategy.failure-rate.delay", d, sizeof d));
    return 0;
}

static void make_exponential(sl__restart *r, const sl__config *c)
{
    char ini[64], max[64], mul[64], rst[64], jit[64], a[64];
    r->kind = KIND_EXPONENTIAL;
    r->initial_ms = sl__config_duration_ms(c, "restart-strategy.exponential-delay.initial-backoff");
    r->max_ms = sl__config_duration_ms(c, "restart-strategy.exponential-delay.max-backoff");
    r->multiplier = sl__config_double(c, "restart-strategy.exponential-delay.backoff-multiplier");
    r->reset_ms =
        sl__config_duration_ms(c, "restart-strategy.exponential-delay.reset-backoff-threshold");
    r->jitter = sl__config_double(c, "restart-strategy.exponential-delay.jitter-factor");
    r->attempts_before_reset =
        sl__config_int(c, "restart-strategy.exponential-delay.attempts-before-reset-backoff");
    describe_attempts(r->attempts_before_reset, a, sizeof a);
    /* Numbers by value ("1.5", not the "1.5000000000000000" a program may have set). */
    snprintf(mul, sizeof mul, "%g", r->multiplier);
    snprintf(jit, sizeof jit, "%g", r->jitter);
    snprintf(r->describe, sizeof r->describe,
             "exponential-delay (initial backoff %s, max backoff %s, multiplier %s, reset "
             "threshold %s, jitter %s, %s before reset)",
             duration_key(c, "restart-strategy.exponential-delay.initial-backoff", ini, sizeof ini),
             duration_key(c, "restart-strategy.exponential-delay.max-backoff", max, sizeof max),
             mul,
             duration_key(c, "restart-strategy.exponential-delay.reset-backoff-threshold", rst,
                          sizeof rst),
             jit, a);
}

sl__restart *sl__restart_create(const sl__config *c, bool checkpointing, uint64_t seed)
{
    SL_ASSERT(c);
    sl__restart *r = sl__calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->rng = seed_state(seed);
    const char *type = sl__config_get(c, "restart-strategy.type");
    if (!type && checkpointing) {
        r->kind = KIND_FIXED_DELAY;
        r->attempts = DEFAULT_ATTEMPTS;
        r->delay_ms = DEFAULT_DELAY_MS;
        snprintf(r->describe, sizeof r->describe,
                 "fixed-delay (unlimited attempts, delay 1 s; the default with checkpointing)");
    } else if (!type) {
        r->kind = KIND_NONE;
        snprintf(r->describe, sizeof r->describe, "none (the default without checkpointing)");
    } else if (!strcmp(type, "none") || !strcmp(type, "off") || !strcmp(type, "disable")) {
        r->kind = KIND_NONE;
        snprintf(r->describe, sizeof r->describe, "none");
    } else if (!strcmp(type, "fixed-delay") || !strcmp(type, "fixeddelay")) {
        make_fixed_delay(r, c);
    } else if (!strcmp(type, "failure-rate") || !strcmp(type, "failurerate")) {
        if (make_failure_rate(r, c)) {
            sl__restart_destroy(r);
            return NULL;
        }
    } else if (!strcmp(type, "exponential-delay") || !strcmp(type, "exponentialdelay")) {
        make_exponential(r, c);
    } else {
        sl__log_fatal("restart: restart-strategy.type holds \"%s\", which the table does not "
                      "accept",
                      type);
    }
    return r;
}

void sl__restart_destroy(sl__restart *r)
{
    if (!r)
        return;
    sl__free(r->times);
    sl__free(r);
}

/* ---------------------------------------------------------------------------------------
 * Failures
 * ------------------------------------------------------------------------------------- */

/* The delay before restart k (failures since the last reset, from 0), with jitter: Flink's
 * rule, jitter applied to the unclamped backoff and the sum clamped to [initial, max]. */
static int64_t exponential_backoff(sl__restart *r, int64_t k)
{
    double b = (double)r->initial_ms * pow(r->multiplier, (double)k);
    if (!(b < BACKOFF_CAP))
        b = BACKOFF_CAP;
    int64_t base = (int64_t)b;
    int64_t d = base + random_offset(&r->rng, (int64_t)((double)base * r->jitter));
    if (d > r->max_ms)
        d = r->max_ms;
    if (d < r->initial_ms)
        d = r->initial_ms;
    return d;
}

/* A failure after the scheduled restart (a merged one is handled by the caller). */
static int64_t on_exponential(sl__restart *r, int64_t now)
{
    if (r->restarted && now - r->next_restart_ms >= r->reset_ms)
        r->attempt = 0; /* ran long enough without a failure */
    int64_t k = r->attempt++;
    if (r->attempt > r->attempts_before_reset)
        return -1;
    int64_t d = exponential_backoff(r, k);
    r->next_restart_ms = now + d;
    r->restarted = true;
    return d;
}

static int64_t on_failure_rate(sl__restart *r, int64_t now)
{
    if (r->ring_len == r->ring_cap) {
        r->ring_head = (r->ring_head + 1) % r->ring_cap;
        r->ring_len--;
    }
    r->times[(r->ring_head + r->ring_len) % r->ring_cap] = now;
    r->ring_len++;
    /* Full ring: this failure and max-failures-per-interval earlier ones. */
    if (r->ring_len == r->ring_cap && now - r->times[r->ring_head] <= r->interval_ms)
        return -1;
    return r->delay_ms;
}

int64_t sl__restart_on_failure(sl__restart *r, int64_t now_ms)
{
    SL_ASSERT(r);
    if (r->gave_up)
        return -1;
    int64_t d = -1;
    switch (r->kind) {
    case KIND_NONE:
        break;
    case KIND_FIXED_DELAY:
        if (++r->failures <= r->attempts)
            d = r->delay_ms;
        break;
    case KIND_FAILURE_RATE:
        d = on_failure_rate(r, now_ms);
        break;
    case KIND_EXPONENTIAL:
        /* Reported before the restart it would cause has happened: the same outage, not a
         * new failure; it waits for the restart already scheduled. A failure at the very
         * moment of that restart comes from the restarted attempt and counts. */
        if (r->restarted && now_ms < r->next_restart_ms)
            return r->next_restart_ms - now_ms;
        d = on_exponential(r, now_ms);
        break;
    }
    if (d < 0)
        r->gave_up = true;
    else if (r->restarts < INT_MAX)
        r->restarts++;
    return d;
}

int sl__restart_count(const sl__restart *r)
{
    SL_ASSERT(r);
    return r->restarts;
}

const char *sl__restart_describe(const sl__restart *r)
{
    SL_ASSERT(r);
    return r->describe;
}

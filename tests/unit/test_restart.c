/*
 * test_restart.c - restart strategies: the defaults with and without checkpointing, none,
 * fixed-delay, failure-rate's sliding window, exponential-delay's growth, cap, jitter, reset,
 * attempt limit and merged failures, the description lines, validation of the restart and
 * checkpointing keys, and out-of-memory in creation. Time is passed in; nothing sleeps.
 */
#include "checkpoint/restart.h"
#include "core/alloc.h"
#include "core/config.h"
#include "sluice.h"
#include "test.h"

#include <limits.h>

/* A config with "key=value" pairs applied; every pair must be accepted. */
static sl__config *config_of(const char *const *pairs, size_t n)
{
    char err[256];
    sl__config *c = sl__config_create();
    CHECK(c);
    for (size_t i = 0; i < n; i++) {
        if (sl__config_set_pair(c, pairs[i], err, sizeof err))
            FAIL_AT("-D %s rejected: %s", pairs[i], err);
    }
    return c;
}

#define CONFIG(...)                                                                                \
    config_of((const char *const[]){__VA_ARGS__},                                                  \
              sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static sl__restart *strategy(const sl__config *c, bool checkpointing)
{
    sl__restart *r = sl__restart_create(c, checkpointing, 42);
    CHECK(r);
    return r;
}

TEST(none_by_default_without_checkpointing)
{
    sl__config *c = sl__config_create();
    sl__restart *r = strategy(c, false);
    CHECK_EQ_STR(sl__restart_describe(r), "none (the default without checkpointing)");
    CHECK_EQ_INT(sl__restart_on_failure(r, 0), -1);
    CHECK_EQ_INT(sl__restart_on_failure(r, 100000), -1);
    CHECK_EQ_INT(sl__restart_count(r), 0);
    sl__restart_destroy(r);
    sl__restart_destroy(NULL);
    sl__config_destroy(c);
}

TEST(none_explicit_in_every_spelling)
{
    static const char *spellings[] = {"restart-strategy.type=none", "restart-strategy=off",
                                      "restart-strategy.type=Disable"};
    for (int i = 0; i < 3; i++) {
        sl__config *c = config_of(&spellings[i], 1);
        /* checkpointing does not matter once a strategy is set */
        sl__restart *r = strategy(c, true);
        CHECK_EQ_STR(sl__restart_describe(r), "none");
        CHECK_EQ_INT(sl__restart_on_failure(r, 5), -1);
        CHECK_EQ_INT(sl__restart_count(r), 0);
        sl__restart_destroy(r);
        sl__config_destroy(c);
    }
}

TEST(checkpointing_default_is_unbounded_fixed_delay)
{
    /* Like Flink, the fixed-delay keys are not read when the strategy is not chosen. */
    sl__config *c =
        CONFIG("restart-strategy.fixed-delay.attempts=2", "restart-strategy.fixed-delay.delay=9 s");
    sl__restart *r = strategy(c, true);
    CHECK_EQ_STR(sl__restart_describe(r),
                 "fixed-delay (unlimited attempts, delay 1 s; the default with checkpointing)");
    for (int i = 0; i < 100000; i++)
        CHECK_EQ_INT(sl__restart_on_failure(r, (int64_t)i * 10), 1000);
    CHECK_EQ_INT(sl__restart_count(r), 100000);
    sl__restart_destroy(r);
    sl__config_destroy(c);
}

TEST(fixed_delay_gives_up_after_attempts)
{
    sl__config *c =
        CONFIG("restart-strategy.type=fixed-delay", "restart-strategy.fixed-delay.attempts=3",
               "restart-strategy.fixed-delay.delay=5 s");
    sl__restart *r = strategy(c, true);
    CHECK_EQ_STR(sl__restart_describe(r), "fixed-delay (3 attempts, delay 5 s)");
    CHECK_EQ_INT(sl__restart_on_failure(r, 0), 5000);
    CHECK_EQ_INT(sl__restart_on_failure(r, 6000), 5000);
    CHECK_EQ_INT(sl__restart_on_failure(r, 3600000), 5000);
    CHECK_EQ_INT(sl__restart_count(r), 3);
    CHECK_EQ_INT(sl__restart_on_failure(r, 3700000), -1);
    /* giving up is final */
    CHECK_EQ_INT(sl__restart_on_failure(r, 99000000), -1);
    CHECK_EQ_INT(sl__restart_count(r), 3);
    sl__restart_destroy(r);
    sl__config_destroy(c);
}

TEST(fixed_delay_defaults_zero_attempts_and_spellings)
{
    /* set explicitly with nothing else: Flink's defaults, 1 attempt and 1 s */
    sl__config *c = CONFIG("restart-strategy=FixedDelay");
    sl__restart *r = strategy(c, false);
    CHECK_EQ_STR(sl__restart_describe(r), "fixed-delay (1 attempt, delay 1 s)");
    CHECK_EQ_INT(sl__restart_on_failure(r, 0), 1000);
    CHECK_EQ_INT(sl__restart_on_failure(r, 2000), -1);
    sl__restart_destroy(r);
    sl__config_destroy(c);

    c = CONFIG("restart-strategy.type=fixed-delay", "restart-strategy.fixed-delay.attempts=0",
               "restart-strategy.fixed-delay.delay=0");
    r = strategy(c, true);
    CHECK_EQ_STR(sl__restart_describe(r), "fixed-delay (0 attempts, delay 0 ms)");
    CHECK_EQ_INT(sl__restart_on_failure(r, 0), -1);
    CHECK_EQ_INT(sl__restart_count(r), 0);
    sl__restart_destroy(r);
    sl__config_destroy(c);

    /* durations are described in the unit the user wrote */
    c = CONFIG("restart-strategy.type=fixed-delay", "restart-strategy.fixed-delay.attempts=2",
               "restart-strategy.fixed-delay.delay=2MIN");
    r = strategy(c, true);
    CHECK_EQ_STR(sl__restart_describe(r), "fixed-delay (2 attempts, delay 2 min)");
    CHECK_EQ_INT(sl__restart_on_failure(r, 0), 120000);
    sl__restart_destroy(r);
    sl__config_destroy(c);

    c = CONFIG("restart-strategy.type=fixed-delay", "restart-strategy.fixed-delay.delay=2500",
               "restart-strategy.fixed-delay.attempts=2147483647");
    r = strategy(c, true);
    CHECK_EQ_STR(sl__restart_describe(r), "fixed-delay (unlimited attempts, delay 2500 ms)");
    CHECK_EQ_INT(sl__restart_on_failure(r, 0), 2500);
    sl__restart_destroy(r);
    sl__config_destroy(c);
}

TEST(failure_rate_sliding_window)
{
    sl__config *c = CONFIG("restart-strategy.type=failure-rate",
                           "restart-strategy.failure-rate.max-failures-per-interval=3",
                           "restart-strategy.failure-rate.failure-rate-interval=10 s",
                           "restart-strategy.failure-rate.delay=500ms");
    sl__restart *r = strategy(c, true);
    CHECK_EQ_STR(sl__restart_describe(r), "failure-rate (max 3 failures per 10 s, delay 500 ms)");
    /* three failures in the window are tolerated */
    CHECK_EQ_INT(sl__restart_on_failure(r, 0), 500);
    CHECK_EQ_INT(sl__restart_on_failure(r, 1000), 500);
    CHECK_EQ_INT(sl__restart_on_failure(r, 2000), 500);
    /* a fourth exactly one interval after the first: the window includes both ends */
    CHECK_EQ_INT(sl__restart_on_failure(r, 10000), -1);
    CHECK_EQ_INT(sl__restart_count(r), 3);
    CHECK_EQ_INT(sl__restart_on_failure(r, 1000000), -1); /* final */
    sl__restart_destroy(r);

    r = strategy(c, true);
    CHECK_EQ_INT(sl__restart_on_failure(r, 0), 500);
    CHECK_EQ_INT(sl__restart_on_failure(r, 1000), 500);
    CHECK_EQ_INT(sl__restart_on_failure(r, 2000), 500);
    /* 1 ms later the first has left the window: [1000, 2000, 10001] */
    CHECK_EQ_INT(sl__restart_on_failure(r, 10001), 500);
    /* [1000, 2000, 10001, 10002]: four within 10 s */
    CHECK_EQ_INT(sl__restart_on_failure(r, 10002), -1);
    CHECK_EQ_INT(sl__restart_count(r), 4);
    sl__restart_destroy(r);

    /* a steady rate just below the limit runs forever; just above it fails at once */
    r = strategy(c, true);
    for (int i = 0; i < 1000; i++)
        CHECK_EQ_INT(sl__restart_on_failure(r, (int64_t)i * 3334), 500);
    sl__restart_destroy(r);
    r = strategy(c, true);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(sl__restart_on_failure(r, (int64_t)i * 3333), 500);
    CHECK_EQ_INT(sl__restart_on_failure(r, 3 * 3333), -1);
    sl__restart_destroy(r);
    sl__config_destroy(c);

    /* defaults: 1 failure per 1 min, delay 1 s */
    c = CONFIG("restart-strategy=failurerate");
    r = strategy(c, false);
    CHECK_EQ_STR(sl__restart_describe(r), "failure-rate (max 1 failure per 1 min, delay 1 s)");
    CHECK_EQ_INT(sl__restart_on_failure(r, 0), 1000);
    CHECK_EQ_INT(sl__restart_on_failure(r, 60001), 1000);
    CHECK_EQ_INT(sl__restart_on_failure(r, 120001), -1);
    sl__restart_destroy(r);
    sl__config_destroy(c);
}

/* An exponential-delay config: initial, max, multiplier, reset threshold, jitter, attempts. */
static sl__config *exponential(const char *initial, const char *max, const char *mult,
                               const char *reset, const char *jitter, const char *attempts)
{
    char err[256];
    sl__config *c = CONFIG("restart-strategy.type=exponential-delay");
    static const char *keys[] = {
        "restart-strategy.exponential-delay.initial-backoff",
        "restart-strategy.exponential-delay.max-backoff",
        "restart-strategy.exponential-delay.backoff-multiplier",
        "restart-strategy.exponential-delay.reset-backoff-threshold",
        "restart-strategy.exponential-delay.jitter-factor",
        "restart-strategy.exponential-delay.attempts-before-reset-backoff",
    };
    const char *values[] = {initial, max, mult, reset, jitter, attempts};
    for (int i = 0; i < 6; i++) {
        if (values[i] && sl__config_set(c, keys[i], values[i], err, sizeof err))
            FAIL_AT("%s=%s rejected: %s", keys[i], values[i], err);
    }
    return c;
}

/* Fails at now, then returns the time the job has run for `run` ms after its restart. */
static int64_t fail(sl__restart *r, int64_t *now, int64_t run)
{
    int64_t d = sl__restart_on_failure(r, *now);
    if (d >= 0)
        *now += d + run;
    return d;
}

TEST(exponential_growth_and_cap)
{
    sl__config *c = exponential("1 s", "10 s", "2", "1 h", "0", NULL);
    sl__restart *r = strategy(c, true);
    int64_t now = 1000000;
    static const int64_t expect[] = {1000, 2000, 4000, 8000, 10000, 10000, 10000};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        CHECK_EQ_INT(fail(r, &now, 100), expect[i]);
    CHECK_EQ_INT(sl__restart_count(r), 7);
    sl__restart_destroy(r);
    sl__config_destroy(c);

    /* a fractional multiplier: 1000 * 1.5^k, truncated to ms, up to the default 1 min */
    c = exponential(NULL, NULL, NULL, NULL, "0.0", NULL);
    r = strategy(c, true);
    static const int64_t expect15[] = {1000,  1500,  2250,  3375,  5062,  7593, 11390,
                                       17085, 25628, 38443, 57665, 60000, 60000};
    for (size_t i = 0; i < sizeof expect15 / sizeof expect15[0]; i++)
        CHECK_EQ_INT(fail(r, &now, 1), expect15[i]);
    /* long after the cap the delay stays at max (no overflow however many failures) */
    for (int i = 0; i < 5000; i++)
        CHECK_EQ_INT(fail(r, &now, 1), 60000);
    sl__restart_destroy(r);
    sl__config_destroy(c);

    /* multiplier 1: a constant backoff */
    c = exponential("3 s", "1 min", "1", "1 h", "0", NULL);
    r = strategy(c, true);
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(fail(r, &now, 1), 3000);
    sl__restart_destroy(r);
    sl__config_destroy(c);
}

TEST(exponential_jitter_bounds_and_repeatability)
{
    sl__config *c = exponential("1 s", "100 s", "2", "1 h", "0.25", NULL);
    int64_t first[8];
    bool varied = false;
    for (uint64_t seed = 0; seed < 200; seed++) {
        sl__restart *r = sl__restart_create(c, true, seed);
        CHECK(r);
        int64_t now = 0;
        for (int k = 0; k < 8; k++) {
            int64_t base = INT64_C(1000) << k, off = base / 4;
            int64_t d = fail(r, &now, 10);
            int64_t lo = base - off < 1000 ? 1000 : base - off;
            int64_t hi = base + off > 100000 ? 100000 : base + off;
            if (d < lo || d > hi)
                FAIL_AT("seed %llu failure %d: delay %lld outside [%lld, %lld]",
                        (unsigned long long)seed, k, (long long)d, (long long)lo, (long long)hi);
            if (seed == 0)
                first[k] = d;
            else if (d != first[k])
                varied = true;
        }
        sl__restart_destroy(r);
    }
    CHECK(varied);
    /* the same seed gives the same delays */
    for (int run = 0; run < 2; run++) {
        sl__restart *r = sl__restart_create(c, true, 0);
        int64_t now = 0;
        for (int k = 0; k < 8; k++)
            CHECK_EQ_INT(fail(r, &now, 10), first[k]);
        sl__restart_destroy(r);
    }
    sl__config_destroy(c);

    /* jitter 1: from initial (the floor) to twice the backoff, never above max */
    c = exponential("100 ms", "1 s", "2", "1 h", "1", NULL);
    for (uint64_t seed = 0; seed < 100; seed++) {
        sl__restart *r = sl__restart_create(c, true, seed);
        int64_t now = 0;
        for (int k = 0; k < 12; k++) {
            int64_t d = fail(r, &now, 10);
            int64_t hi = (INT64_C(100) << k) * 2;
            CHECK(d >= 100);
            CHECK(d <= (hi > 1000 ? 1000 : hi));
        }
        sl__restart_destroy(r);
    }
    sl__config_destroy(c);
}

TEST(exponential_reset_after_running_long_enough)
{
    sl__config *c = exponential("1 s", "1 min", "2", "10 s", "0", NULL);
    sl__restart *r = strategy(c, true);
    int64_t now = 0;
    CHECK_EQ_INT(fail(r, &now, 100), 1000);
    CHECK_EQ_INT(fail(r, &now, 100), 2000);
    CHECK_EQ_INT(fail(r, &now, 9999), 4000);
    /* ran 9999 ms since its restart: below the threshold, the backoff keeps growing */
    CHECK_EQ_INT(fail(r, &now, 10000), 8000);
    /* ran exactly the threshold: back to the initial backoff */
    CHECK_EQ_INT(fail(r, &now, 100), 1000);
    CHECK_EQ_INT(fail(r, &now, 100), 2000);
    CHECK_EQ_INT(sl__restart_count(r), 6);
    sl__restart_destroy(r);
    sl__config_destroy(c);
}

TEST(exponential_attempts_before_reset)
{
    sl__config *c = exponential("1 s", "1 min", "2", "10 s", "0", "3");
    sl__restart *r = strategy(c, true);
    CHECK_EQ_STR(sl__restart_describe(r),
                 "exponential-delay (initial backoff 1 s, max backoff 1 min, multiplier 2, reset "
                 "threshold 10 s, jitter 0, 3 attempts before reset)");
    int64_t now = 0;
    CHECK_EQ_INT(fail(r, &now, 100), 1000);
    CHECK_EQ_INT(fail(r, &now, 100), 2000);
    /* a reset gives the attempts back */
    CHECK_EQ_INT(fail(r, &now, 20000), 4000);
    CHECK_EQ_INT(fail(r, &now, 100), 1000);
    CHECK_EQ_INT(fail(r, &now, 100), 2000);
    CHECK_EQ_INT(fail(r, &now, 100), 4000);
    CHECK_EQ_INT(fail(r, &now, 100), -1);
    CHECK_EQ_INT(sl__restart_count(r), 6);
    /* final, even after a long quiet time */
    now += 24 * 3600 * 1000;
    CHECK_EQ_INT(sl__restart_on_failure(r, now), -1);
    sl__restart_destroy(r);

    /* failures far apart never use up the attempts */
    r = strategy(c, true);
    now = 0;
    for (int i = 0; i < 1000; i++)
        CHECK_EQ_INT(fail(r, &now, 10000), 1000);
    sl__restart_destroy(r);
    sl__config_destroy(c);
}

TEST(exponential_merges_failures_before_the_restart)
{
    sl__config *c = exponential("1 s", "1 min", "2", "1 h", "0", "2");
    sl__restart *r = strategy(c, true);
    CHECK_EQ_INT(sl__restart_on_failure(r, 5000), 1000);
    /* other subtasks of the same outage report before the restart at 6000 */
    CHECK_EQ_INT(sl__restart_on_failure(r, 5000), 1000);
    CHECK_EQ_INT(sl__restart_on_failure(r, 5400), 600);
    CHECK_EQ_INT(sl__restart_on_failure(r, 5999), 1);
    CHECK_EQ_INT(sl__restart_count(r), 1);
    /* at the moment of the restart or after it: the restarted attempt failed, a new
     * failure (the runtime reports failures only after an attempt ran) */
    CHECK_EQ_INT(sl__restart_on_failure(r, 6000), 2000);
    CHECK_EQ_INT(sl__restart_count(r), 2);
    CHECK_EQ_INT(sl__restart_on_failure(r, 8000), -1);
    sl__restart_destroy(r);
    sl__config_destroy(c);
}

TEST(exponential_defaults_and_description)
{
    sl__config *c = CONFIG("restart-strategy=ExponentialDelay");
    sl__restart *r = strategy(c, false);
    CHECK_EQ_STR(sl__restart_describe(r),
                 "exponential-delay (initial backoff 1 s, max backoff 1 min, multiplier 1.5, "
                 "reset threshold 1 h, jitter 0.1, unlimited attempts before reset)");
    /* initial 1 s with jitter 0.1: from 1000 (the floor) to 1100 */
    int64_t d = sl__restart_on_failure(r, 0);
    CHECK(d >= 1000 && d <= 1100);
    sl__restart_destroy(r);
    sl__config_destroy(c);

    c = exponential("250", " 2 Min ", "1.25", "1H", "0.05", "1");
    r = strategy(c, true);
    CHECK_EQ_STR(sl__restart_describe(r),
                 "exponential-delay (initial backoff 250 ms, max backoff 2 min, multiplier 1.25, "
                 "reset threshold 1 h, jitter 0.05, 1 attempt before reset)");
    sl__restart_destroy(r);
    sl__config_destroy(c);
}

/* Expects value to be rejected for key with a message containing want. */
static void rejects(const char *key, const char *value, const char *want)
{
    char err[256] = "";
    sl__config *c = sl__config_create();
    int rc = sl__config_set(c, key, value, err, sizeof err);
    if (rc != SL_ECONFIG)
        FAIL_AT("%s=\"%s\" accepted (rc %d), want an error", key, value, rc);
    CHECK_CONTAINS(err, key);
    CHECK_CONTAINS(err, want);
    CHECK(!sl__config_is_set(c, key));
    sl__config_destroy(c);
}

TEST(validation_of_the_new_keys)
{
    rejects("restart-strategy.type", "fixed",
            "accepted none, off, disable, fixed-delay, fixeddelay, failure-rate, failurerate, "
            "exponential-delay, exponentialdelay");
    rejects("restart-strategy", "always", "accepted none, off");
    rejects("restart-strategy.fixed-delay.attempts", "-1", "an integer from 0 to 2147483647");
    rejects("restart-strategy.fixed-delay.delay", "-1 s", "a duration");
    rejects("restart-strategy.failure-rate.max-failures-per-interval", "0",
            "an integer from 1 to 10000");
    rejects("restart-strategy.failure-rate.failure-rate-interval", "0", "from 1 ms to 365 d");
    rejects("restart-strategy.exponential-delay.backoff-multiplier", "0.5",
            "a decimal number from 1 to 1000");
    rejects("restart-strategy.exponential-delay.backoff-multiplier", "-2", "decimal number");
    rejects("restart-strategy.exponential-delay.backoff-multiplier", "1e4", "decimal number");
    rejects("restart-strategy.exponential-delay.backoff-multiplier", "1e999", "decimal number");
    rejects("restart-strategy.exponential-delay.backoff-multiplier", "0x2", "decimal number");
    rejects("restart-strategy.exponential-delay.backoff-multiplier", "1,5", "decimal number");
    rejects("restart-strategy.exponential-delay.backoff-multiplier", "nan", "decimal number");
    rejects("restart-strategy.exponential-delay.backoff-multiplier", "inf", "decimal number");
    rejects("restart-strategy.exponential-delay.backoff-multiplier", "", "decimal number");
    rejects("restart-strategy.exponential-delay.backoff-multiplier", ".", "decimal number");
    rejects("restart-strategy.exponential-delay.backoff-multiplier", "1.2.3", "decimal number");
    rejects("restart-strategy.exponential-delay.backoff-multiplier", "1000.5", "to 1000");
    rejects("restart-strategy.exponential-delay.jitter-factor", "1.5",
            "a decimal number from 0 to 1");
    rejects("restart-strategy.exponential-delay.jitter-factor", "1.0000001", "from 0 to 1");
    rejects("restart-strategy.exponential-delay.jitter-factor", "-0.1", "from 0 to 1");
    rejects("restart-strategy.exponential-delay.initial-backoff", "0 ms", "from 1 ms");
    rejects("restart-strategy.exponential-delay.reset-backoff-threshold", "0", "from 1 ms");
    rejects("restart-strategy.exponential-delay.attempts-before-reset-backoff", "0",
            "an integer from 1 to 2147483647");
    rejects("restart-strategy.exponential-delay.attempts-before-reset-backoff", "2147483648",
            "an integer from 1 to 2147483647");
    rejects("execution.checkpointing.interval", "5 ms", "from 10 ms to 365 d");
    rejects("execution.checkpointing.interval", "0", "from 10 ms");
    rejects("execution.checkpointing.interval", "-1", "from 10 ms");
    rejects("execution.checkpointing.timeout", "9", "from 10 ms");
    rejects("execution.checkpointing.min-pause", "-5 s", "a duration");
    rejects("execution.checkpointing.mode", "exactly-once", "accepted EXACTLY_ONCE, AT_LEAST_ONCE");
    rejects("execution.checkpointing.max-concurrent-checkpoints", "0", "from 1 to 1000");
    rejects("execution.checkpointing.tolerable-failed-checkpoints", "-1", "from 0 to 2147483647");
    rejects("execution.checkpointing.externalized-checkpoint-retention", "RETAIN",
            "accepted DELETE_ON_CANCELLATION, RETAIN_ON_CANCELLATION, NO_EXTERNALIZED_CHECKPOINTS");
    rejects("state.checkpoints.num-retained", "0", "from 1 to 10000");
    rejects("execution.checkpointing.num-retained", "-3", "from 1 to 10000");
    rejects("state.checkpoint-storage", "rocksdb", "accepted jobmanager, filesystem");
    rejects("execution.checkpointing.dir", "s3://bucket/cp", "a local path or a file:// URI");
    rejects("state.savepoints.dir", "", "a local path");

    /* the boundaries themselves are accepted */
    sl__config *c = CONFIG("execution.checkpointing.interval=10 ms",
                           "restart-strategy.exponential-delay.backoff-multiplier=1",
                           "restart-strategy.exponential-delay.jitter-factor=1",
                           "restart-strategy.exponential-delay.jitter-factor=0",
                           "restart-strategy.fixed-delay.attempts=0");
    CHECK_EQ_INT(sl__config_duration_ms(c, "execution.checkpointing.interval"), 10);
    sl__config_destroy(c);
}

TEST(out_of_memory_in_create)
{
    sl__config *c = CONFIG("restart-strategy.type=failure-rate",
                           "restart-strategy.failure-rate.max-failures-per-interval=10000");
    int failures = 0;
    long n;
    for (n = 1; n < 10; n++) {
        sl__alloc_fail_reset(n);
        sl__restart *r = sl__restart_create(c, true, 1);
        sl__alloc_fail_reset(0);
        if (r) {
            CHECK_EQ_INT(sl__restart_on_failure(r, 0), 1000);
            sl__restart_destroy(r);
            break;
        }
        failures++;
    }
    CHECK_EQ_INT(failures, 2);
    sl__config_destroy(c);
}

int main(int argc, char **argv)
{
    return RUN_TESTS(
        argc, argv, none_by_default_without_checkpointing, none_explicit_in_every_spelling,
        checkpointing_default_is_unbounded_fixed_delay, fixed_delay_gives_up_after_attempts,
        fixed_delay_defaults_zero_attempts_and_spellings, failure_rate_sliding_window,
        exponential_growth_and_cap, exponential_jitter_bounds_and_repeatability,
        exponential_reset_after_running_long_enough, exponential_attempts_before_reset,
        exponential_merges_failures_before_the_restart, exponential_defaults_and_description,
        validation_of_the_new_keys, out_of_memory_in_create);
}

/*
 * test_coordinator.c - the checkpoint coordinator's decisions with a fake clock on
 * in-memory storage: trigger pacing (interval, min pause, max concurrent), completion only
 * when every task acknowledged, subsumption of older pending checkpoints, expiry by
 * timeout, declines, and the tolerable-failure count.
 */
#include "checkpoint/coordinator.h"
#include "test.h"

#define JOB "0123456789abcdef0123456789abcdef"

static sl__storage *memory_storage(void)
{
    char err[256];
    sl__storage *st = sl__storage_create(NULL, JOB, 2, err, sizeof err);
    if (!st)
        FAIL_AT("storage: %s", err);
    return st;
}

static sl__coordinator *coord(sl__storage *st, int ntasks, int64_t interval, int64_t timeout,
                              int64_t min_pause, int max_concurrent, int tolerable)
{
    sl__coord_config cfg = {.interval_ms = interval,
                            .timeout_ms = timeout,
                            .min_pause_ms = min_pause,
                            .max_concurrent = max_concurrent,
                            .tolerable_failures = tolerable};
    sl__coordinator *c = sl__coord_create(&cfg, st, ntasks, 1, JOB, "job");
    CHECK(c != NULL);
    return c;
}

/* Acknowledges checkpoint id for subtask `subtask` of a stateless operator "op" with
 * parallelism ntasks (one task each). */
static sl__coord_event ack_at(sl__coordinator *c, int64_t id, int subtask, int ntasks, int64_t now)
{
    sl__op_ack a = {.uid = "op",
                    .name = "Op",
                    .parallelism = ntasks,
                    .max_parallelism = 128,
                    .subtask = subtask};
    a.state.subtask = subtask;
    a.state.file = strdup("");
    char err[512];
    return sl__coord_ack(c, id, &a, 1, false, NULL, now, err, sizeof err);
}

static sl__coord_event ack(sl__coordinator *c, int64_t id, int subtask, int ntasks)
{
    return ack_at(c, id, subtask, ntasks, 0);
}

TEST(interval_and_max_concurrent)
{
    sl__storage *st = memory_storage();
    sl__coordinator *c = coord(st, 1, 100, 10000, 0, 1, 0);
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 1000), 1);
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 1050), 0); /* interval not reached */
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 1200), 0); /* one pending already */
    CHECK_EQ_INT(ack_at(c, 1, 0, 1, 1200), SL_COORD_COMPLETED);
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 1200), 2);
    sl__coord_stats s;
    sl__coord_stats_get(c, &s);
    CHECK_EQ_INT(s.completed, 1);
    CHECK_EQ_INT(s.last_completed_id, 1);
    sl__coord_destroy(c);
    sl__storage_destroy(st);
}

TEST(completes_only_when_every_task_acknowledged)
{
    sl__storage *st = memory_storage();
    sl__coordinator *c = coord(st, 3, 10, 10000, 0, 1, 0);
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 0), 1);
    CHECK_EQ_INT(ack(c, 1, 0, 3), SL_COORD_PENDING);
    CHECK_EQ_INT(ack(c, 1, 2, 3), SL_COORD_PENDING);
    int64_t ids[4];
    CHECK_EQ_INT(sl__storage_retained(st, ids, 4), 0);
    CHECK_EQ_INT(ack(c, 1, 1, 3), SL_COORD_COMPLETED);
    CHECK_EQ_INT(sl__storage_retained(st, ids, 4), 1);
    CHECK_EQ_INT(ids[0], 1);
    /* an acknowledgement of a checkpoint nobody triggered is ignored */
    CHECK_EQ_INT(ack(c, 7, 0, 3), SL_COORD_PENDING);
    sl__coord_destroy(c);
    sl__storage_destroy(st);
}

TEST(min_pause_counts_from_the_last_completion)
{
    sl__storage *st = memory_storage();
    sl__coordinator *c = coord(st, 1, 100, 10000, 500, 1, 0);
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 0), 1);
    CHECK_EQ_INT(ack_at(c, 1, 0, 1, 1000), SL_COORD_COMPLETED); /* a slow checkpoint */
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 1400), 0);          /* interval passed, pause not */
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 1500), 2);
    sl__coord_destroy(c);
    sl__storage_destroy(st);
}

TEST(newer_completion_subsumes_older_pending)
{
    sl__storage *st = memory_storage();
    sl__coordinator *c = coord(st, 1, 10, 10000, 0, 3, 0);
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 0), 1);
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 20), 2);
    CHECK_EQ_INT(ack_at(c, 2, 0, 1, 30), SL_COORD_COMPLETED);
    /* 1 was subsumed: its late acknowledgement changes nothing */
    CHECK_EQ_INT(ack(c, 1, 0, 1), SL_COORD_PENDING);
    int64_t ids[4];
    CHECK_EQ_INT(sl__storage_retained(st, ids, 4), 1);
    CHECK_EQ_INT(ids[0], 2);
    sl__coord_destroy(c);
    sl__storage_destroy(st);
}

TEST(timeouts_and_declines_count_against_tolerable_failures)
{
    sl__storage *st = memory_storage();
    sl__coordinator *c = coord(st, 1, 10, 100, 0, 1, 1);
    char err[512];
    int64_t expired;
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 0), 1);
    CHECK_EQ_INT(sl__coord_tick(c, 50, &expired, err, sizeof err), SL_COORD_PENDING);
    CHECK_EQ_INT(expired, 0);
    CHECK_EQ_INT(sl__coord_tick(c, 100, &expired, err, sizeof err), SL_COORD_FAILED);
    CHECK_EQ_INT(expired, 1);
    /* the second consecutive failure exceeds the tolerable number 1 */
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 200), 2);
    CHECK_EQ_INT(sl__coord_ack(c, 2, NULL, 0, true, "disk full", 210, err, sizeof err),
                 SL_COORD_FAIL_JOB);
    CHECK_CONTAINS(err, "checkpoint 2 failed (disk full)");
    CHECK_CONTAINS(err, "execution.checkpointing.tolerable-failed-checkpoints");
    sl__coord_stats s;
    sl__coord_stats_get(c, &s);
    CHECK_EQ_INT(s.failed, 2);
    sl__coord_destroy(c);
    sl__storage_destroy(st);
}

TEST(a_success_resets_the_failure_count)
{
    sl__storage *st = memory_storage();
    sl__coordinator *c = coord(st, 1, 10, 100, 0, 1, 1);
    char err[512];
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 0), 1);
    CHECK_EQ_INT(sl__coord_ack(c, 1, NULL, 0, true, "x", 5, err, sizeof err), SL_COORD_FAILED);
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 20), 2);
    CHECK_EQ_INT(ack_at(c, 2, 0, 1, 25), SL_COORD_COMPLETED);
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 40), 3);
    CHECK_EQ_INT(sl__coord_ack(c, 3, NULL, 0, true, "y", 45, err, sizeof err), SL_COORD_FAILED);
    sl__coord_destroy(c);
    sl__storage_destroy(st);
}

TEST(first_checkpoint_one_interval_after_the_attempt_starts)
{
    sl__storage *st = memory_storage();
    sl__coordinator *c = coord(st, 1, 100, 10000, 0, 1, 0);
    sl__coord_new_attempt(c, 5000);
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 5050), 0);
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 5100), 1);
    sl__coord_destroy(c);
    sl__storage_destroy(st);
}

TEST(abort_pending_is_not_a_failure)
{
    sl__storage *st = memory_storage();
    sl__coordinator *c = coord(st, 2, 10, 100, 0, 2, 0);
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 0), 1);
    CHECK_EQ_INT(ack(c, 1, 0, 2), SL_COORD_PENDING);
    sl__coord_abort_pending(c);
    CHECK_EQ_INT(ack(c, 1, 1, 2), SL_COORD_PENDING);
    sl__coord_stats s;
    sl__coord_stats_get(c, &s);
    CHECK_EQ_INT(s.failed, 0);
    CHECK_EQ_INT(s.completed, 0);
    CHECK_EQ_INT(sl__coord_maybe_trigger(c, 20), 2);
    sl__coord_destroy(c);
    sl__storage_destroy(st);
}

int main(int argc, char **argv)
{
    return RUN_TESTS(
        argc, argv, interval_and_max_concurrent, completes_only_when_every_task_acknowledged,
        min_pause_counts_from_the_last_completion, newer_completion_subsumes_older_pending,
        timeouts_and_declines_count_against_tolerable_failures, a_success_resets_the_failure_count,
        first_checkpoint_one_interval_after_the_attempt_starts, abort_pending_is_not_a_failure);
}

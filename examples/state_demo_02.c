/*
 * state_demo_02 - the seed's StateDemo02: a parallel source that behaves like a Kafka
 * consumer, keeping its offset in operator ListState (Flink's CheckpointedFunction). It
 * emits "subTaskId:0,当前的offset值为:N" once a second and fails at every 5th offset; with
 * checkpoints every second and a fixed-delay restart strategy (2 attempts, 3 s) each
 * restart resumes from the offset of the last checkpoint instead of starting over, and
 * after the attempts are used up the job fails.
 *
 *   build/bin/state_demo_02 [-p N] [--] [CHECKPOINT_DIR] [--sleep-ms MS] [--restart-delay-ms MS]
 *                          [--interval-ms MS]
 *
 * CHECKPOINT_DIR defaults to a directory under /tmp. The flags shorten the seed's timings
 * (1 s between records, 3 s between restarts, checkpoints every 1 s) for tests.
 */
#include <sluice.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct demo_cfg {
    int64_t sleep_ms;
} demo_cfg;

typedef struct my_kafka_source {
    sl_state *offset_state; /* -1. the ListState holding the offset */
    int64_t offset;
    int64_t wake_at_ms; /* after emitting: when the pause ends, 0 when not pausing */
} my_kafka_source;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* -2. create the ListState, and read the offset back when restored */
static int src_initialize_state(sl_ctx *ctx)
{
    my_kafka_source *s = calloc(1, sizeof *s);
    if (!s)
        return sl_fail(ctx, "out of memory");
    sl_ctx_set_local(ctx, s);
    s->offset_state = sl_operator_list_state(ctx, "offsetState", "offset:i64", SL_SPLIT_EVEN);
    if (!s->offset_state)
        return SL_ESTATE;
    sl_iter *it;
    int rc = sl_list_get(s->offset_state, &it);
    if (rc > 0) {
        sl_value v;
        if (sl_iter_next(it, &v) > 0)
            s->offset = v.u.i64;
        sl_iter_close(it);
    }
    return rc < 0 ? rc : 0;
}

/* -3. use the state: emit the next offset, pause, then fail at every 5th. The pause is
 * spread over polls (returning SL_SOURCE_IDLE) rather than slept inside one, so a checkpoint
 * can be taken during it, as Flink takes one while the Java source sleeps: a failure at
 * offset 5 then resumes from 5, not 4. */
static int src_poll(sl_ctx *ctx)
{
    const demo_cfg *cfg = sl_ctx_user(ctx);
    my_kafka_source *s = sl_ctx_local(ctx);
    if (s->wake_at_ms) {
        int64_t left = s->wake_at_ms - now_ms();
        if (left > 0) {
            int rc = sl_ctx_sleep_ms(ctx, left < 50 ? left : 50);
            return rc < 0 ? rc : SL_SOURCE_IDLE;
        }
        s->wake_at_ms = 0;
        /* simulate a bug */
        if (s->offset % 5 == 0)
            return sl_fail(ctx, "bug出现了.....");
    }
    s->offset += 1;
    sl_value line = sl_ctx_printf(ctx, "subTaskId:%d,当前的offset值为:%lld", sl_ctx_subtask(ctx),
                                  (long long)s->offset);
    int rc = sl_emit(ctx, &line);
    if (rc < 0)
        return rc;
    s->wake_at_ms = now_ms() + cfg->sleep_ms;
    return SL_SOURCE_MORE;
}

/* -4. persist the offset in the state at each checkpoint */
static int src_snapshot_state(sl_ctx *ctx, int64_t checkpoint_id)
{
    (void)checkpoint_id;
    my_kafka_source *s = sl_ctx_local(ctx);
    sl_value v = SL_I64(s->offset);
    return sl_list_update(s->offset_state, &v, 1);
}

static int src_close(sl_ctx *ctx)
{
    free(sl_ctx_local(ctx));
    sl_ctx_set_local(ctx, NULL);
    return 0;
}

static int job(sl_env *env, int argc, char **argv)
{
    static demo_cfg cfg = {.sleep_ms = 1000};
    const char *dir = "/tmp/sluice-state-demo-02";
    int64_t restart_delay = 3000, interval = 1000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sleep-ms") && i + 1 < argc)
            cfg.sleep_ms = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--restart-delay-ms") && i + 1 < argc)
            restart_delay = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--interval-ms") && i + 1 < argc)
            interval = atoll(argv[++i]);
        else if (argv[i][0] != '-')
            dir = argv[i];
        else
            return sl_env_fail(env, SL_EINVAL,
                               "usage: %s [options] [CHECKPOINT_DIR] [--sleep-ms MS] "
                               "[--restart-delay-ms MS] [--interval-ms MS]",
                               argv[0]);
    }
    sl_env_set_runtime_mode(env, SL_AUTOMATIC);
    sl_env_set_parallelism(env, 1);
    sl_env_enable_checkpointing(env, interval, SL_EXACTLY_ONCE);
    sl_env_set_checkpoint_dir(env, dir);
    sl_env_set_externalized_checkpoints(env, SL_RETAIN_ON_CANCELLATION);
    /* fixed delay: restart twice, 3 s apart; a third failure ends the job */
    sl_env_set_restart_fixed_delay(env, 2, restart_delay);

    sl_source_fn fn = {.initialize_state = src_initialize_state,
                       .snapshot_state = src_snapshot_state,
                       .poll = src_poll,
                       .close = src_close,
                       .user = &cfg};
    sl_stream *ds = sl_add_source(env, "MyKafkaSource", "line:str", &fn, true, false);
    sl_set_uid(ds, "my-kafka-source");
    sl_print(ds);
    return sl_execute(env, "state_demo_02");
}

SL_JOB(job)

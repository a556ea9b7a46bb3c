/*
 * checkpoint_demo_02 - the seed's CheckpointDemo02_Restart: a socket word count with
 * checkpoints every second, where the word "bug" throws. With a fixed-delay restart
 * strategy (3 attempts, 5 s apart) the job restarts from its latest checkpoint and the
 * counts continue from the restored state; after the attempts are used up the job fails.
 * Results print as "word:::count", as in the seed.
 *
 *   nc -lk 9999
 *   build/bin/checkpoint_demo_02 [options] HOST PORT [CHECKPOINT_DIR] [--restart-delay-ms MS]
 *
 * All of CheckpointDemo01's settings are here: interval, storage directory, min pause,
 * tolerable failures, externalized retention, mode, timeout and max concurrent checkpoints.
 * Each can also be given as -D key=value (see docs/config.md).
 */
#include <sluice.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int split(sl_ctx *ctx, const sl_value *in)
{
    const char *p = in[0].u.s.ptr, *end = p + in[0].u.s.len;
    while (p < end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        const char *we = sp ? sp : end;
        size_t n = (size_t)(we - p);
        if (n == 3 && !memcmp(p, "bug", 3)) {
            fprintf(stderr, "bug.....\n");
            return sl_fail(ctx, "bug.....");
        }
        if (n) {
            sl_value out[2] = {sl_strn(p, n), SL_I64(1)};
            int rc = sl_emit(ctx, out);
            if (rc < 0)
                return rc;
        }
        p = we + 1;
    }
    return 0;
}

static int to_text(sl_ctx *ctx, const sl_value *in, sl_value *out)
{
    out[0] = sl_ctx_printf(ctx, "%.*s:::%lld", (int)in[0].u.s.len, in[0].u.s.ptr,
                           (long long)in[1].u.i64);
    return 0;
}

static int job(sl_env *env, int argc, char **argv)
{
    if (argc < 3)
        return sl_env_fail(env, SL_EINVAL,
                           "usage: %s [options] HOST PORT [CHECKPOINT_DIR] [--restart-delay-ms MS]",
                           argv[0]);
    char *end;
    long port = strtol(argv[2], &end, 10);
    if (*end || port < 1 || port > 65535)
        return sl_env_fail(env, SL_EINVAL, "port \"%s\" is not accepted: a number from 1 to 65535",
                           argv[2]);
    const char *dir = "/tmp/sluice-checkpoint-demo-02";
    int64_t restart_delay = 5000;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--restart-delay-ms") && i + 1 < argc)
            restart_delay = atoll(argv[++i]);
        else
            dir = argv[i];
    }
    sl_env_set_runtime_mode(env, SL_AUTOMATIC);

    /* type 1, required: a checkpoint every 1000 ms, into a directory */
    sl_env_enable_checkpointing(env, 1000, SL_EXACTLY_ONCE);
    sl_env_set_checkpoint_dir(env, dir);
    /* type 2, advised: 500 ms between checkpoints at least, tolerate 10 failed ones, keep
     * the checkpoints when the job is cancelled */
    sl_env_set_min_pause_between_checkpoints(env, 500);
    sl_env_set_tolerable_checkpoint_failures(env, 10);
    sl_env_set_externalized_checkpoints(env, SL_RETAIN_ON_CANCELLATION);
    /* type 3, the defaults: exactly-once, 60 s timeout, one checkpoint at a time */
    sl_env_set_checkpoint_timeout(env, 60000);
    sl_env_set_max_concurrent_checkpoints(env, 1);
    /* restart at most 3 times, 5 s apart */
    sl_env_set_restart_fixed_delay(env, 3, restart_delay);

    sl_stream *lines = sl_socket_text_stream(env, argv[1], (int)port, "\n", 0);
    sl_flat_map_fn fm = {.flat_map = split};
    sl_stream *words = sl_set_uid(sl_flat_map(lines, "word:str,count:i64", &fm), "split");
    sl_stream *counts = sl_set_uid(sl_sum(sl_key_by(words, 0), 1), "counts");
    sl_map_fn m = {.map = to_text};
    sl_stream *result = sl_set_uid(sl_map(counts, "line:str", &m), "format");
    sl_print(result);
    return sl_execute(env, "checkpoint_demo_02");
}

SL_JOB(job)

/*
 * eo_job - the job behind tests/e2e/test_exactly_once.sh (issue 3, items 8 and 9): a
 * deterministic replayable source through keyed operators that use every keyed state kind,
 * with a per-key sequence check in state, written through the two-phase-commit file sink.
 *
 *   eo_job [SLUICE OPTIONS] -- --out DIR --checkpoints DIR --count N [--keys K]
 *          [--keyed-parallelism P] [--mode EXACTLY_ONCE|AT_LEAST_ONCE] [--interval-ms MS]
 *          [--sleep-every N] [--sleep-ms MS] [--restart-attempts N] [--restart-delay-ms MS]
 *
 * The source is sl_from_generator: record i (0 <= i < N) is (key, seq, value) with
 *   key = i % K,  seq = i / K + 1,  value = ((i * 2654435761) mod 2^32) % 1000.
 * Its subtask s of p generates the indexes congruent to s modulo p in order, so when p
 * divides K every key lives in one generator stream and its seq runs 1, 2, 3, ... in source
 * order (a restore at another parallelism moves whole streams, so this stays true). The
 * source runs at the default parallelism (-p); each of its subtasks sleeps --sleep-ms after
 * every --sleep-every records, so that a run lasts long enough for checkpoints to complete.
 *
 * The keyed process function ("check", --keyed-parallelism subtasks) keeps per key:
 *   ValueState        the last seq applied; a record whose seq is not last+1 fails the job
 *                     with "sequence check failed" (also printed to stderr as
 *                     "eo_job: SEQUENCE CHECK FAILED ..."). In AT_LEAST_ONCE mode a record
 *                     with seq <= last (a replay of a record already in state) is skipped
 *                     and counted instead; a gap (seq > last+1) still fails.
 *   ListState         the last 3 values (sl_list_add while shorter, then sl_list_update)
 *   ReducingState     the sum of the values
 *   AggregatingState  (count, sum) -> (count, sum / count)
 *   MapState          value % 7 -> how many values fell in that bucket (read back by
 *                     iterating the map)
 * and emits per record the running results, a row printed as
 *   (key,seq,value,v1/v2/v3,sum,count,mean,c0/c1/c2/c3/c4/c5/c6)
 * to sl_write_text(--out), a two-phase-commit sink since checkpointing is on, at the default
 * parallelism. The test computes the same rows independently and compares.
 *
 * Checkpoints every --interval-ms (default 50) in --mode (default EXACTLY_ONCE) to
 * --checkpoints, RETAIN_ON_CANCELLATION, 3 retained; restarts fixed-delay
 * --restart-attempts (default 100) times --restart-delay-ms (default 50) apart. Every
 * operator has a uid (source, check, sink) so that -s restores it.
 *
 * A subtask of "check" that skipped duplicates prints "eo_job: duplicates skipped=N ..." to
 * stderr when it closes.
 */
#include <sluice.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct eo_cfg {
    int64_t keys;
    bool at_least_once;
    int64_t sleep_every;
    int64_t sleep_ms;
} eo_cfg;

/* ---- the source ------------------------------------------------------------------------ */

static int64_t value_of(int64_t i)
{
    return ((i * INT64_C(2654435761)) & INT64_C(0xffffffff)) % 1000;
}

static _Thread_local int64_t generated; /* per subtask thread (a new thread per attempt) */

static int gen(sl_ctx *ctx, void *user, int64_t index, sl_value *out)
{
    const eo_cfg *c = user;
    out[0] = SL_I64(index % c->keys);
    out[1] = SL_I64(index / c->keys + 1);
    out[2] = SL_I64(value_of(index));
    if (c->sleep_every > 0 && ++generated % c->sleep_every == 0) {
        int rc = sl_ctx_sleep_ms(ctx, c->sleep_ms);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- keyed state ----------------------------------------------------------------------- */

static int sum_reduce(sl_ctx *ctx, const sl_value *a, const sl_value *b, sl_value *out)
{
    (void)ctx;
    out[0] = SL_I64(a[0].u.i64 + b[0].u.i64);
    return 0;
}

static int acc_create(sl_ctx *ctx, sl_value *acc)
{
    (void)ctx;
    acc[0] = SL_I64(0);
    acc[1] = SL_I64(0);
    return 0;
}

static int acc_add(sl_ctx *ctx, const sl_value *in, const sl_value *acc, sl_value *acc_out)
{
    (void)ctx;
    acc_out[0] = SL_I64(acc[0].u.i64 + 1);
    acc_out[1] = SL_I64(acc[1].u.i64 + in[0].u.i64);
    return 0;
}

static int acc_result(sl_ctx *ctx, const sl_value *acc, sl_value *out)
{
    (void)ctx;
    out[0] = acc[0];
    out[1] = SL_I64(acc[0].u.i64 ? acc[1].u.i64 / acc[0].u.i64 : 0);
    return 0;
}

static const sl_aggregate_fn mean_fn = {
    .create = acc_create,
    .add = acc_add,
    .result = acc_result,
    .acc_schema = "count:i64,sum:i64",
    .result_schema = "count:i64,mean:i64",
};

typedef struct check_local {
    sl_state *last_seq, *last3, *sum, *mean, *buckets;
    int64_t duplicates;
    int64_t processed;
} check_local;

static int check_open(sl_ctx *ctx)
{
    check_local *l = calloc(1, sizeof *l);
    if (!l)
        return sl_fail(ctx, "out of memory");
    sl_ctx_set_local(ctx, l);
    const sl_state_desc descs[] = {
        {.name = "last-seq", .kind = SL_STATE_VALUE, .schema = "seq:i64"},
        {.name = "last-3", .kind = SL_STATE_LIST, .schema = "value:i64"},
        {.name = "sum", .kind = SL_STATE_REDUCING, .schema = "value:i64", .reduce = sum_reduce},
        {.name = "mean",
         .kind = SL_STATE_AGGREGATING,
         .schema = "value:i64",
         .aggregate = &mean_fn},
        {.name = "buckets", .kind = SL_STATE_MAP, .key_schema = "bucket:i64", .schema = "n:i64"},
    };
    sl_state **slots[] = {&l->last_seq, &l->last3, &l->sum, &l->mean, &l->buckets};
    for (size_t i = 0; i < sizeof descs / sizeof descs[0]; i++) {
        *slots[i] = sl_keyed_state(ctx, &descs[i]);
        if (!*slots[i])
            return SL_ESTATE;
    }
    return 0;
}

static int check_close(sl_ctx *ctx)
{
    check_local *l = sl_ctx_local(ctx);
    if (!l)
        return 0;
    if (l->duplicates)
        fprintf(stderr,
                "eo_job: duplicates skipped=%" PRId64 " processed=%" PRId64
                " subtask=%d attempt=%d\n",
                l->duplicates, l->processed, sl_ctx_subtask(ctx), sl_ctx_attempt(ctx));
    free(l);
    sl_ctx_set_local(ctx, NULL);
    return 0;
}

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ < 0)                                                                               \
            return sl_fail(ctx, "%s failed: %s", #expr, sl_strerror(rc_));                         \
    } while (0)

static int check_process(sl_ctx *ctx, const sl_value *in)
{
    const eo_cfg *c = sl_ctx_user(ctx);
    check_local *l = sl_ctx_local(ctx);
    int64_t key = in[0].u.i64, seq = in[1].u.i64, value = in[2].u.i64;

    /* ValueState: the sequence check */
    sl_value v;
    int found = sl_value_get(l->last_seq, &v);
    CHECK(found);
    int64_t last = found ? v.u.i64 : 0;
    if (seq != last + 1) {
        if (c->at_least_once && seq <= last) {
            l->duplicates++;
            return 0;
        }
        fprintf(stderr,
                "eo_job: SEQUENCE CHECK FAILED key=%" PRId64 " expected=%" PRId64 " got=%" PRId64
                " subtask=%d attempt=%d\n",
                key, last + 1, seq, sl_ctx_subtask(ctx), sl_ctx_attempt(ctx));
        return sl_fail(
            ctx, "sequence check failed: key %" PRId64 " expected seq %" PRId64 ", got %" PRId64,
            key, last + 1, seq);
    }
    l->processed++;
    sl_value nv = SL_I64(seq);
    CHECK(sl_value_update(l->last_seq, &nv));

    /* ListState: the last three values */
    int64_t vals[4];
    int n = 0;
    sl_iter *it;
    int rc = sl_list_get(l->last3, &it);
    CHECK(rc);
    if (rc > 0) {
        sl_value e;
        while (sl_iter_next(it, &e) > 0) {
            if (n == 3) {
                sl_iter_close(it);
                return sl_fail(ctx, "list state of key %" PRId64 " has more than 3 elements", key);
            }
            vals[n++] = e.u.i64;
        }
        sl_iter_close(it);
    }
    vals[n++] = value;
    sl_value add = SL_I64(value);
    if (n <= 3) {
        CHECK(sl_list_add(l->last3, &add));
    } else {
        sl_value keep[3] = {SL_I64(vals[1]), SL_I64(vals[2]), SL_I64(vals[3])};
        CHECK(sl_list_update(l->last3, keep, 3));
        memmove(vals, vals + 1, 3 * sizeof vals[0]);
        n = 3;
    }

    /* ReducingState: the sum */
    CHECK(sl_reducing_add(l->sum, &add));
    sl_value s;
    CHECK(sl_reducing_get(l->sum, &s));
    int64_t sum = s.u.i64;

    /* AggregatingState: (count, mean) */
    CHECK(sl_aggregating_add(l->mean, &add));
    sl_value agg[2];
    CHECK(sl_aggregating_get(l->mean, agg));
    int64_t count = agg[0].u.i64, mean = agg[1].u.i64;

    /* MapState: value % 7 -> count */
    sl_value bucket = SL_I64(value % 7), cnt;
    found = sl_map_get(l->buckets, &bucket, &cnt);
    CHECK(found);
    sl_value ncnt = SL_I64(found ? cnt.u.i64 + 1 : 1);
    CHECK(sl_map_put(l->buckets, &bucket, &ncnt));
    int64_t counts[7] = {0};
    rc = sl_map_iter(l->buckets, &it);
    CHECK(rc);
    if (rc > 0) {
        sl_value uk, uv;
        while (sl_iter_next_kv(it, &uk, &uv) > 0) {
            if (uk.u.i64 < 0 || uk.u.i64 > 6) {
                sl_iter_close(it);
                return sl_fail(ctx, "map state of key %" PRId64 " has bucket %" PRId64, key,
                               uk.u.i64);
            }
            counts[uk.u.i64] = uv.u.i64;
        }
        sl_iter_close(it);
    }

    sl_value out[8] = {
        in[0],
        in[1],
        in[2],
        n == 1 ? sl_ctx_printf(ctx, "%" PRId64, vals[0])
        : n == 2
            ? sl_ctx_printf(ctx, "%" PRId64 "/%" PRId64, vals[0], vals[1])
            : sl_ctx_printf(ctx, "%" PRId64 "/%" PRId64 "/%" PRId64, vals[0], vals[1], vals[2]),
        SL_I64(sum),
        SL_I64(count),
        SL_I64(mean),
        sl_ctx_printf(
            ctx, "%" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64,
            counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], counts[6]),
    };
    return sl_emit(ctx, out);
}

/* ---- the job ----------------------------------------------------------------------------- */

static int usage(sl_env *env, const char *why)
{
    return sl_env_fail(env, SL_EINVAL,
                       "%s\nusage: eo_job [SLUICE OPTIONS] -- --out DIR --checkpoints DIR "
                       "--count N [--keys K] [--keyed-parallelism P] "
                       "[--mode EXACTLY_ONCE|AT_LEAST_ONCE] [--interval-ms MS] "
                       "[--sleep-every N] [--sleep-ms MS] [--restart-attempts N] "
                       "[--restart-delay-ms MS]",
                       why);
}

static bool parse_i64(const char *s, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < 0)
        return false;
    *out = v;
    return true;
}

static eo_cfg cfg;

static int job(sl_env *env, int argc, char **argv)
{
    const char *out_dir = NULL, *chk_dir = NULL, *mode = "EXACTLY_ONCE";
    int64_t count = -1, keyed_par = 0, interval = 50, attempts = 100, delay = 50;
    cfg = (eo_cfg){.keys = 1000, .sleep_every = 0, .sleep_ms = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            return usage(env, "every option takes a value");
        const char *v = argv[++i];
        bool ok = true;
        if (!strcmp(a, "--out"))
            out_dir = v;
        else if (!strcmp(a, "--checkpoints"))
            chk_dir = v;
        else if (!strcmp(a, "--mode"))
            mode = v;
        else if (!strcmp(a, "--count"))
            ok = parse_i64(v, &count);
        else if (!strcmp(a, "--keys"))
            ok = parse_i64(v, &cfg.keys) && cfg.keys > 0;
        else if (!strcmp(a, "--keyed-parallelism"))
            ok = parse_i64(v, &keyed_par);
        else if (!strcmp(a, "--interval-ms"))
            ok = parse_i64(v, &interval);
        else if (!strcmp(a, "--sleep-every"))
            ok = parse_i64(v, &cfg.sleep_every);
        else if (!strcmp(a, "--sleep-ms"))
            ok = parse_i64(v, &cfg.sleep_ms);
        else if (!strcmp(a, "--restart-attempts"))
            ok = parse_i64(v, &attempts);
        else if (!strcmp(a, "--restart-delay-ms"))
            ok = parse_i64(v, &delay);
        else
            return usage(env, "unknown option");
        if (!ok)
            return usage(env, "bad value");
    }
    if (!out_dir || !chk_dir || count < 0)
        return usage(env, "--out, --checkpoints and --count are required");
    sl_checkpointing_mode m;
    if (!strcmp(mode, "EXACTLY_ONCE"))
        m = SL_EXACTLY_ONCE;
    else if (!strcmp(mode, "AT_LEAST_ONCE"))
        m = SL_AT_LEAST_ONCE;
    else
        return usage(env, "--mode is EXACTLY_ONCE or AT_LEAST_ONCE");
    cfg.at_least_once = m == SL_AT_LEAST_ONCE;

    char par[32];
    if (sl_env_get(env, "parallelism.default", par, sizeof par) < 0)
        return sl_env_fail(env, SL_ECONFIG, "parallelism.default is not readable");
    int64_t src_par = atoll(par);
    if (src_par < 1 || cfg.keys % src_par != 0)
        return sl_env_fail(env, SL_EINVAL,
                           "--keys %" PRId64 " must be a multiple of the source parallelism %s "
                           "(-p), so that each key's records come from one generator stream",
                           cfg.keys, par);

    sl_env_enable_checkpointing(env, interval, m);
    sl_env_set_checkpoint_dir(env, chk_dir);
    sl_env_set_externalized_checkpoints(env, SL_RETAIN_ON_CANCELLATION);
    sl_env_set_num_retained_checkpoints(env, 3);
    sl_env_set_restart_fixed_delay(env, (int)attempts, delay);

    sl_stream *src = sl_from_generator(env, "key:i64,seq:i64,value:i64", count, gen, &cfg);
    src = sl_set_uid(sl_set_name(src, "Generator"), "source");
    sl_process_fn fn = {
        .open = check_open, .close = check_close, .process = check_process, .user = &cfg};
    sl_stream *checked = sl_process(
        sl_key_by(src, 0),
        "key:i64,seq:i64,value:i64,last3:str,sum:i64,count:i64,mean:i64,buckets:str", &fn);
    checked = sl_set_uid(sl_set_name(checked, "Sequence Check"), "check");
    if (keyed_par > 0)
        sl_set_parallelism(checked, (int)keyed_par);
    sl_set_uid(sl_write_text(checked, out_dir), "sink");
    return sl_execute(env, "eo_job");
}

SL_JOB(job)

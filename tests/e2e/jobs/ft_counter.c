/*
 * ft_counter - a keyed counting job over a replayable source, for the fault-tolerance e2e
 * tests (checkpoint options, restart strategies, restore with -s, broken checkpoints).
 *
 *   ft_counter [sluice options] [--] [--count N] [--keys K] [--record-us US]
 *              [--fail-every N] [--fail-at IDX] [--fail-when-exists PATH]
 *              [--snapshot-ms MS] [--extra] [--counts-uid UID] [--source-uid UID]
 *              [--socket PORT]
 *
 * The source (uid "source", or --source-uid) is the engine's generator: record number idx
 * (0 <= idx < N, or unbounded with --count -1) is (key "k<idx % K>", seq idx / K, idx),
 * subtask i of p making
 * the indexes congruent to i mod p; --record-us paces it (a sleep per record). Its position
 * is operator state, so it rewinds on restore and is redistributed on rescale. With K a
 * multiple of the source parallelism every key's records come from one stream, in order.
 *
 * The keyed operator (uid "counts", or --counts-uid) keeps per key a ValueState count and
 * the last seq seen, and fails the job when a record's seq is not the last one + 1 (a gap
 * or a duplicate: state and source positions were not restored consistently). When a key's
 * last record (bounded input) is counted it emits (key,count); the print sink (uid "sink",
 * parallelism 1) writes "(k3,834)". At the end of its input each counts subtask writes
 * "ft_counter: processed=<n> subtask=<i>/<p> attempt=<a> restored=<0|1>" to stderr: the
 * records it processed in that (last) attempt.
 *
 * Failures on demand, in the counts operator:
 *   --fail-every N           every attempt fails after N records of a subtask
 *   --fail-at IDX            the first attempt fails on record IDX
 *   --fail-when-exists PATH  the first attempt fails once PATH exists
 *   --snapshot-ms MS         snapshot_state sleeps MS (a slow synchronous snapshot)
 *   --extra                  adds an identity map (uid "extra") with operator list state
 *                            between the source and the key-by
 *   --noop                   adds a stateless identity map (uid "noop") there
 *   --socket PORT            unions a second branch into the key-by: a socket text source
 *                            (uid "socket", parallelism 1) on 127.0.0.1:PORT whose every line
 *                            is a record (key "s:<line>", seq 0, idx -1); the counts
 *                            operator counts those without a sequence check and emits
 *                            (key,count) for each. It ends when the server closes.
 */
#include <sluice.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct cfg {
    int64_t count;
    int64_t keys;
    int64_t record_us;
    int64_t fail_every;
    int64_t fail_at;
    const char *fail_path;
    int64_t snapshot_ms;
} cfg;

typedef struct counts_local {
    sl_state *count, *last;
    int64_t processed;
} counts_local;

static int gen(sl_ctx *ctx, void *user, int64_t index, sl_value *out)
{
    const cfg *c = user;
    /* pacing: sleep in steps of 20 records, so the sleeps are long enough to be accurate */
    static _Thread_local int64_t made;
    if (c->record_us > 0 && ++made % 20 == 0)
        usleep((useconds_t)(c->record_us * 20));
    out[0] = sl_ctx_printf(ctx, "k%lld", (long long)(index % c->keys));
    out[1] = SL_I64(index / c->keys);
    out[2] = SL_I64(index);
    return 0;
}

/* Records of key k among 0..count-1: the indexes k, k + K, ... */
static int64_t records_of_key(const cfg *c, int64_t k)
{
    if (c->count < 0 || k >= c->count)
        return c->count < 0 ? -1 : 0;
    return (c->count - k + c->keys - 1) / c->keys;
}

static int counts_open(sl_ctx *ctx)
{
    counts_local *l = calloc(1, sizeof *l);
    if (!l)
        return sl_fail(ctx, "out of memory");
    sl_ctx_set_local(ctx, l);
    sl_state_desc dc = {.name = "count", .kind = SL_STATE_VALUE, .schema = "n:i64"};
    sl_state_desc dl = {.name = "last-seq", .kind = SL_STATE_VALUE, .schema = "seq:i64"};
    l->count = sl_keyed_state(ctx, &dc);
    l->last = sl_keyed_state(ctx, &dl);
    if (!l->count || !l->last)
        return SL_ESTATE;
    return 0;
}

static int counts_close(sl_ctx *ctx)
{
    free(sl_ctx_local(ctx));
    sl_ctx_set_local(ctx, NULL);
    return 0;
}

/* --socket: a line's record has no sequence; every one is counted and emitted */
static int count_socket_line(sl_ctx *ctx, counts_local *l, const sl_value *in)
{
    sl_value v;
    int rc = sl_value_get(l->count, &v);
    if (rc < 0)
        return rc;
    v = SL_I64(rc > 0 ? v.u.i64 + 1 : 1);
    if ((rc = sl_value_update(l->count, &v)) < 0)
        return rc;
    sl_value out[2] = {in[0], v};
    return sl_emit(ctx, out);
}

static int counts_process(sl_ctx *ctx, const sl_value *in)
{
    const cfg *c = sl_ctx_user(ctx);
    counts_local *l = sl_ctx_local(ctx);
    int64_t seq = in[1].u.i64, idx = in[2].u.i64;
    l->processed++;
    if (idx < 0)
        return count_socket_line(ctx, l, in);
    if (c->fail_every > 0 && l->processed >= c->fail_every)
        return sl_fail(ctx, "injected failure after %lld records (attempt %d)",
                       (long long)l->processed, sl_ctx_attempt(ctx));
    if (c->fail_at >= 0 && idx == c->fail_at && sl_ctx_attempt(ctx) == 0)
        return sl_fail(ctx, "injected failure at record %lld", (long long)idx);
    if (c->fail_path && sl_ctx_attempt(ctx) == 0 && access(c->fail_path, F_OK) == 0)
        return sl_fail(ctx, "injected failure: %s exists", c->fail_path);

    sl_value v;
    int64_t last = -1, n = 0;
    int rc = sl_value_get(l->last, &v);
    if (rc < 0)
        return rc;
    if (rc > 0)
        last = v.u.i64;
    rc = sl_value_get(l->count, &v);
    if (rc < 0)
        return rc;
    if (rc > 0)
        n = v.u.i64;
    if (seq != last + 1)
        return sl_fail(ctx, "sequence error for key %.*s: seq %lld after %lld (%s)",
                       (int)in[0].u.s.len, in[0].u.s.ptr, (long long)seq, (long long)last,
                       seq <= last ? "duplicate" : "gap");
    n++;
    v = SL_I64(seq);
    if ((rc = sl_value_update(l->last, &v)) < 0)
        return rc;
    v = SL_I64(n);
    if ((rc = sl_value_update(l->count, &v)) < 0)
        return rc;
    if (seq + 1 == records_of_key(c, idx % c->keys)) {
        sl_value out[2] = {in[0], SL_I64(n)};
        return sl_emit(ctx, out);
    }
    return 0;
}

static int counts_end(sl_ctx *ctx)
{
    counts_local *l = sl_ctx_local(ctx);
    fprintf(stderr, "ft_counter: processed=%lld subtask=%d/%d attempt=%d restored=%d\n",
            (long long)l->processed, sl_ctx_subtask(ctx), sl_ctx_parallelism(ctx),
            sl_ctx_attempt(ctx), sl_ctx_is_restored(ctx) ? 1 : 0);
    return 0;
}

static int counts_snapshot(sl_ctx *ctx, int64_t id)
{
    (void)id;
    const cfg *c = sl_ctx_user(ctx);
    if (c->snapshot_ms > 0)
        usleep((useconds_t)(c->snapshot_ms * 1000));
    return 0;
}

/* --extra: an identity map that keeps how many records it saw in operator list state */
typedef struct extra_local {
    sl_state *seen_state;
    int64_t seen;
} extra_local;

static int extra_init(sl_ctx *ctx)
{
    extra_local *l = calloc(1, sizeof *l);
    if (!l)
        return sl_fail(ctx, "out of memory");
    sl_ctx_set_local(ctx, l);
    l->seen_state = sl_operator_list_state(ctx, "seen", "n:i64", SL_SPLIT_EVEN);
    return l->seen_state ? 0 : SL_ESTATE;
}

static int extra_snapshot(sl_ctx *ctx, int64_t id)
{
    (void)id;
    extra_local *l = sl_ctx_local(ctx);
    sl_value v = SL_I64(l->seen);
    return sl_list_update(l->seen_state, &v, 1);
}

static int extra_map(sl_ctx *ctx, const sl_value *in, sl_value *out)
{
    extra_local *l = sl_ctx_local(ctx);
    l->seen++;
    memcpy(out, in, 3 * sizeof *out);
    return 0;
}

static int extra_close(sl_ctx *ctx)
{
    free(sl_ctx_local(ctx));
    sl_ctx_set_local(ctx, NULL);
    return 0;
}

static int noop_map(sl_ctx *ctx, const sl_value *in, sl_value *out)
{
    (void)ctx;
    memcpy(out, in, 3 * sizeof *out);
    return 0;
}

/* --socket: a line becomes (key "s:<line>", seq 0, idx -1) */
static int socket_line(sl_ctx *ctx, const sl_value *in, sl_value *out)
{
    out[0] = sl_ctx_printf(ctx, "s:%.*s", (int)in[0].u.s.len, in[0].u.s.ptr);
    out[1] = SL_I64(0);
    out[2] = SL_I64(-1);
    return 0;
}

static int job(sl_env *env, int argc, char **argv)
{
    static cfg c = {.count = 10000, .keys = 12, .fail_at = -1};
    const char *counts_uid = "counts", *source_uid = "source";
    int socket_port = 0;
    bool extra = false, noop = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--count") && has)
            c.count = atoll(argv[++i]);
        else if (!strcmp(a, "--keys") && has)
            c.keys = atoll(argv[++i]);
        else if (!strcmp(a, "--record-us") && has)
            c.record_us = atoll(argv[++i]);
        else if (!strcmp(a, "--fail-every") && has)
            c.fail_every = atoll(argv[++i]);
        else if (!strcmp(a, "--fail-at") && has)
            c.fail_at = atoll(argv[++i]);
        else if (!strcmp(a, "--fail-when-exists") && has)
            c.fail_path = argv[++i];
        else if (!strcmp(a, "--snapshot-ms") && has)
            c.snapshot_ms = atoll(argv[++i]);
        else if (!strcmp(a, "--counts-uid") && has)
            counts_uid = argv[++i];
        else if (!strcmp(a, "--source-uid") && has)
            source_uid = argv[++i];
        else if (!strcmp(a, "--socket") && has)
            socket_port = atoi(argv[++i]);
        else if (!strcmp(a, "--extra"))
            extra = true;
        else if (!strcmp(a, "--noop"))
            noop = true;
        else
            return sl_env_fail(env, SL_EINVAL,
                               "ft_counter: unknown argument \"%s\" (see tests/e2e/jobs/"
                               "ft_counter.c)",
                               a);
    }
    if (c.keys < 1)
        return sl_env_fail(env, SL_EINVAL, "ft_counter: --keys must be at least 1");

    sl_stream *src = sl_from_generator(env, "key:str,seq:i64,idx:i64", c.count, gen, &c);
    sl_set_uid(src, source_uid);
    if (extra) {
        sl_map_fn m = {.initialize_state = extra_init,
                       .snapshot_state = extra_snapshot,
                       .close = extra_close,
                       .map = extra_map};
        src = sl_set_uid(sl_map(src, "key:str,seq:i64,idx:i64", &m), "extra");
    }
    if (noop) {
        sl_map_fn m = {.map = noop_map};
        src = sl_set_uid(sl_map(src, "key:str,seq:i64,idx:i64", &m), "noop");
    }
    if (socket_port > 0) {
        sl_stream *lines = sl_socket_text_stream(env, "127.0.0.1", socket_port, "\n", 0);
        sl_set_uid(lines, "socket");
        sl_map_fn m = {.map = socket_line};
        sl_stream *rows = sl_map(lines, "key:str,seq:i64,idx:i64", &m);
        sl_set_uid(rows, "socket-rows");
        sl_set_parallelism(rows, 1);
        sl_stream *both[2] = {src, rows};
        src = sl_union(both, 2);
    }
    sl_process_fn p = {.open = counts_open,
                       .close = counts_close,
                       .snapshot_state = counts_snapshot,
                       .process = counts_process,
                       .end_input = counts_end,
                       .user = &c};
    sl_stream *counts = sl_process(sl_key_by(src, 0), "key:str,count:i64", &p);
    sl_set_uid(counts, counts_uid);
    sl_set_name(counts, "Counts");
    sl_stream *sink = sl_print(counts);
    sl_set_parallelism(sink, 1);
    sl_set_uid(sink, "sink");
    return sl_execute(env, "ft_counter");
}

SL_JOB(job)

/*
 * state_demo_01 - the maximum value per city, twice: with the built-in max_by(1), and by
 * hand with a keyed ValueState in a map function that emits (city, current, max).
 *
 * Runs in AUTOMATIC mode like the original: the input is bounded, so the job runs as a
 * BATCH job and max_by emits only the final row per city, (北京,6) and (上海,8), while the
 * map emits one row per input row.
 *
 *   build/bin/state_demo_01 [-p N]
 */
#include <sluice.h>

/* -2. the state handle, registered once per subtask in open() */
static int max_open(sl_ctx *ctx)
{
    sl_state_desc d = {.name = "maxValueState", .kind = SL_STATE_VALUE, .schema = "i64"};
    sl_state *st = sl_keyed_state(ctx, &d);
    if (!st)
        return SL_ESTATE;
    sl_ctx_set_local(ctx, st);
    return 0;
}

/* -3. use the state: compare the current value with the largest seen for this city */
static int max_map(sl_ctx *ctx, const sl_value *in, sl_value *out)
{
    sl_state *max_state = sl_ctx_local(ctx);
    int64_t current = in[1].u.i64;
    sl_value history;
    int found = sl_value_get(max_state, &history);
    if (found < 0)
        return found;
    int64_t max = found ? history.u.i64 : current;
    if (!found || current > max) {
        max = current;
        sl_value v = SL_I64(max);
        int rc = sl_value_update(max_state, &v);
        if (rc < 0)
            return rc;
    }
    out[0] = in[0];
    out[1] = SL_I64(current);
    out[2] = SL_I64(max);
    return 0;
}

static int job(sl_env *env, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    sl_env_set_runtime_mode(env, SL_AUTOMATIC);

    sl_value cities[] = {
        sl_str("北京"), SL_I64(1), sl_str("上海"), SL_I64(2), sl_str("北京"), SL_I64(6),
        sl_str("上海"), SL_I64(8), sl_str("北京"), SL_I64(3), sl_str("上海"), SL_I64(4),
    };
    sl_stream *tuples = sl_from_rows(env, "city:str,value:i64", cities, 6);

    /* in practice: max_by */
    sl_stream *result1 = sl_max_by(sl_key_by(tuples, 0), 1);

    /* by hand: a ValueState holding the maximum */
    sl_map_fn fn = {.open = max_open, .map = max_map};
    sl_stream *result2 = sl_map(sl_key_by(tuples, 0), "city:str,current:i64,max:i64", &fn);

    sl_print(result1);
    sl_print(result2);
    return sl_execute(env, "state_demo_01");
}

SL_JOB(job)

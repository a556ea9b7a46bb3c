/*
 * sensor_average - average temperature per sensor, with a keyed AggregatingState: the
 * accumulator keeps (sum, count) and the result is sum / count. The input is bounded, so the
 * job runs in BATCH mode and prints each sensor's final (sensor, average, readings).
 *
 *   build/bin/sensor_average [-p N]
 */
#include <sluice.h>

static int acc_create(sl_ctx *ctx, sl_value *acc)
{
    (void)ctx;
    acc[0] = SL_F64(0);
    acc[1] = SL_I64(0);
    return 0;
}

static int acc_add(sl_ctx *ctx, const sl_value *in, const sl_value *acc, sl_value *acc_out)
{
    (void)ctx;
    acc_out[0] = SL_F64(acc[0].u.f64 + in[0].u.f64);
    acc_out[1] = SL_I64(acc[1].u.i64 + 1);
    return 0;
}

static int acc_result(sl_ctx *ctx, const sl_value *acc, sl_value *out)
{
    (void)ctx;
    out[0] = SL_F64(acc[1].u.i64 ? acc[0].u.f64 / (double)acc[1].u.i64 : 0.0);
    out[1] = acc[1];
    return 0;
}

static const sl_aggregate_fn average = {
    .create = acc_create,
    .add = acc_add,
    .result = acc_result,
    .acc_schema = "sum:f64,count:i64",
    .result_schema = "avg:f64,count:i64",
};

static int avg_open(sl_ctx *ctx)
{
    sl_state_desc d = {.name = "average",
                       .kind = SL_STATE_AGGREGATING,
                       .schema = "temperature:f64",
                       .aggregate = &average};
    sl_state *st = sl_keyed_state(ctx, &d);
    if (!st)
        return SL_ESTATE;
    sl_ctx_set_local(ctx, st);
    return 0;
}

static int avg_process(sl_ctx *ctx, const sl_value *in)
{
    sl_state *avg = sl_ctx_local(ctx);
    int rc = sl_aggregating_add(avg, &in[1]);
    if (rc < 0)
        return rc;
    sl_value res[2];
    rc = sl_aggregating_get(avg, res);
    if (rc < 0)
        return rc;
    sl_value out[3] = {in[0], res[0], res[1]};
    return sl_emit(ctx, out);
}

static int job(sl_env *env, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    /* bounded input: BATCH, so max_by below emits only each sensor's final row */
    sl_env_set_runtime_mode(env, SL_AUTOMATIC);
    sl_value readings[] = {
        sl_str("s1"), SL_F64(20.0), sl_str("s2"), SL_F64(30.5), sl_str("s1"), SL_F64(22.0),
        sl_str("s3"), SL_F64(-4.0), sl_str("s2"), SL_F64(29.5), sl_str("s1"), SL_F64(24.0),
    };
    sl_stream *in = sl_from_rows(env, "sensor:str,temperature:f64", readings, 6);
    sl_process_fn fn = {.open = avg_open, .process = avg_process};
    sl_stream *avgs = sl_process(sl_key_by(in, 0), "sensor:str,avg:f64,readings:i64", &fn);
    /* keep the last (complete) average per sensor: max_by on the reading count */
    sl_print(sl_max_by(sl_key_by(avgs, 0), 2));
    return sl_execute(env, "sensor_average");
}

SL_JOB(job)

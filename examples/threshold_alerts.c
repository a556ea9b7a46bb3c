/*
 * threshold_alerts - broadcast state: alert thresholds per sensor type are broadcast to
 * every subtask and kept in broadcast state (read-write on the broadcast side); readings,
 * keyed by sensor, are checked against the threshold of their type (read-only on the keyed
 * side), and a reading above it prints (sensor, type, value, threshold).
 *
 * The thresholds arrive first: the readings source waits a moment before it starts, as a
 * rules topic would normally be loaded before events flow.
 *
 *   build/bin/threshold_alerts [-p N]
 */
#include <sluice.h>

static int rule_update(sl_ctx *ctx, const sl_value *in)
{
    sl_state *rules = sl_broadcast_state(ctx, "thresholds");
    if (!rules)
        return SL_ESTATE;
    return sl_map_put(rules, &in[0], &in[1]);
}

static int reading_check(sl_ctx *ctx, const sl_value *in)
{
    sl_state *rules = sl_broadcast_state(ctx, "thresholds");
    if (!rules)
        return SL_ESTATE;
    sl_value limit;
    int found = sl_map_get(rules, &in[1], &limit);
    if (found <= 0)
        return found;
    if (in[2].u.f64 <= limit.u.f64)
        return 0;
    sl_value out[4] = {in[0], in[1], in[2], limit};
    return sl_emit(ctx, out);
}

typedef struct reading {
    const char *sensor, *type;
    double value;
} reading;

static const reading readings[] = {
    {"t-1", "temperature", 21.5}, {"p-1", "pressure", 1.01}, {"t-2", "temperature", 38.2},
    {"t-1", "temperature", 41.0}, {"p-1", "pressure", 1.31}, {"h-1", "humidity", 99.0},
    {"t-2", "temperature", 29.9}, {"p-2", "pressure", 0.98},
};

static int gen_reading(sl_ctx *ctx, void *user, int64_t i, sl_value *out)
{
    (void)user;
    if (i == 0 && sl_ctx_sleep_ms(ctx, 300) < 0)
        return SL_ECANCELED;
    out[0] = sl_str(readings[i].sensor);
    out[1] = sl_str(readings[i].type);
    out[2] = SL_F64(readings[i].value);
    return 0;
}

static int job(sl_env *env, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    sl_value rules[] = {
        sl_str("temperature"),
        SL_F64(35.0),
        sl_str("pressure"),
        SL_F64(1.2),
    };
    sl_stream *rule_stream = sl_from_rows(env, "type:str,limit:f64", rules, 2);
    sl_stream *bcast = sl_broadcast(rule_stream, "thresholds", "type:str", "limit:f64");

    sl_stream *in =
        sl_from_generator(env, "sensor:str,type:str,value:f64",
                          (int64_t)(sizeof readings / sizeof readings[0]), gen_reading, NULL);
    sl_set_parallelism(in, 1);
    sl_broadcast_process_fn fn = {.process_element = reading_check,
                                  .process_broadcast = rule_update};
    sl_stream *alerts = sl_connect_broadcast(sl_key_by(in, 0), bcast,
                                             "sensor:str,type:str,value:f64,limit:f64", &fn);
    sl_print(alerts);
    return sl_execute(env, "threshold_alerts");
}

SL_JOB(job)

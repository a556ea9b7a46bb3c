/*
 * bad_job - a job program that makes one of the mistakes a user can make, chosen by its
 * argument, so the e2e tests can check the error a user would see:
 *   key-out-of-range   sl_key_by on a field the schema does not have
 *   sum-string         sl_sum on a str field
 *   not-keyed          sl_sum on a stream that is not keyed
 *   user-error         a map function that fails on one record (at parallelism 2)
 *   keyed-state-unkeyed  keyed state declared in a function on a non-keyed stream
 */
#include <sluice.h>

#include <string.h>

static int fail_on_3(sl_ctx *ctx, const sl_value *in, sl_value *out)
{
    if (in[0].u.i64 == 3)
        return sl_fail(ctx, "cannot handle %lld", (long long)in[0].u.i64);
    out[0] = in[0];
    return 0;
}

static int open_keyed(sl_ctx *ctx)
{
    sl_state_desc d = {.name = "count", .kind = SL_STATE_VALUE, .schema = "i64"};
    return sl_keyed_state(ctx, &d) ? 0 : SL_ESTATE;
}

static int identity(sl_ctx *ctx, const sl_value *in, sl_value *out)
{
    (void)ctx;
    out[0] = in[0];
    return 0;
}

static int job(sl_env *env, int argc, char **argv)
{
    if (argc != 2)
        return sl_env_fail(env, SL_EINVAL, "usage: bad_job MODE");
    const char *mode = argv[1];
    sl_value rows[] = {sl_str("北京"), SL_I64(1), sl_str("上海"), SL_I64(2)};
    sl_stream *in = sl_from_rows(env, "city:str,value:i64", rows, 2);
    if (!strcmp(mode, "key-out-of-range")) {
        sl_print(sl_sum(sl_key_by(in, 2), 1));
    } else if (!strcmp(mode, "sum-string")) {
        sl_print(sl_sum(sl_key_by(in, 0), 0));
    } else if (!strcmp(mode, "not-keyed")) {
        sl_print(sl_sum(in, 1));
    } else if (!strcmp(mode, "user-error")) {
        sl_map_fn fn = {.map = fail_on_3};
        sl_stream *m = sl_map(sl_from_sequence(env, 1, 10), "v:i64", &fn);
        sl_print(sl_set_parallelism(sl_set_name(m, "Validator"), 2));
    } else if (!strcmp(mode, "keyed-state-unkeyed")) {
        sl_map_fn fn = {.open = open_keyed, .map = identity};
        sl_print(sl_map(sl_from_sequence(env, 1, 10), "v:i64", &fn));
    } else {
        return sl_env_fail(env, SL_EINVAL, "unknown mode \"%s\"", mode);
    }
    return sl_execute(env, "bad_job");
}

SL_JOB(job)

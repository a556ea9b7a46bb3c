/*
 * order_totals - running total spent per customer, with a keyed ReducingState whose
 * reduce function adds amounts; each order prints (customer, total so far).
 *
 *   build/bin/order_totals [-p N]
 */
#include <sluice.h>

static int add_amounts(sl_ctx *ctx, const sl_value *a, const sl_value *b, sl_value *out)
{
    (void)ctx;
    out[0] = SL_F64(a[0].u.f64 + b[0].u.f64);
    return 0;
}

static int totals_open(sl_ctx *ctx)
{
    sl_state_desc d = {
        .name = "total", .kind = SL_STATE_REDUCING, .schema = "amount:f64", .reduce = add_amounts};
    sl_state *st = sl_keyed_state(ctx, &d);
    if (!st)
        return SL_ESTATE;
    sl_ctx_set_local(ctx, st);
    return 0;
}

static int totals_process(sl_ctx *ctx, const sl_value *in)
{
    sl_state *total = sl_ctx_local(ctx);
    int rc = sl_reducing_add(total, &in[1]);
    if (rc < 0)
        return rc;
    sl_value sum;
    rc = sl_reducing_get(total, &sum);
    if (rc < 0)
        return rc;
    sl_value out[2] = {in[0], sum};
    return sl_emit(ctx, out);
}

static int job(sl_env *env, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    sl_value orders[] = {
        sl_str("ann"), SL_F64(12.5), sl_str("ben"), SL_F64(3.0),  sl_str("ann"), SL_F64(7.5),
        sl_str("cid"), SL_F64(20.0), sl_str("ben"), SL_F64(4.25), sl_str("ann"), SL_F64(0.5),
    };
    sl_stream *in = sl_from_rows(env, "customer:str,amount:f64", orders, 6);
    sl_process_fn fn = {.open = totals_open, .process = totals_process};
    sl_print(sl_process(sl_key_by(in, 0), "customer:str,total:f64", &fn));
    return sl_execute(env, "order_totals");
}

SL_JOB(job)

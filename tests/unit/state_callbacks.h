/*
 * state_callbacks.h - the reduce and aggregate functions the state test suites share
 * (test_state.c, test_snapshot.c, test_rocksdb.c): a sum for reducing state and an average
 * (sum and count in the accumulator) for aggregating state.
 */
#ifndef SL_TEST_STATE_CALLBACKS_H
#define SL_TEST_STATE_CALLBACKS_H

#include "sluice.h"

static inline int sum_reduce(sl_ctx *ctx, const sl_value *a, const sl_value *b, sl_value *out)
{
    (void)ctx;
    out[0] = SL_I64(a[0].u.i64 + b[0].u.i64);
    return 0;
}

static inline int avg_create(sl_ctx *ctx, sl_value *acc)
{
    (void)ctx;
    acc[0] = SL_I64(0);
    acc[1] = SL_I64(0);
    return 0;
}

static inline int avg_add(sl_ctx *ctx, const sl_value *in, const sl_value *acc, sl_value *out)
{
    (void)ctx;
    out[0] = SL_I64(acc[0].u.i64 + in[0].u.i64);
    out[1] = SL_I64(acc[1].u.i64 + 1);
    return 0;
}

static inline int avg_result(sl_ctx *ctx, const sl_value *acc, sl_value *out)
{
    (void)ctx;
    out[0] = SL_F64((double)acc[0].u.i64 / (double)acc[1].u.i64);
    return 0;
}

static const sl_aggregate_fn avg_fn = {
    .create = avg_create,
    .add = avg_add,
    .result = avg_result,
    .acc_schema = "sum:i64,n:i64",
    .result_schema = "avg:f64",
};

#endif

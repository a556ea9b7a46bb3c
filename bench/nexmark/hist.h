/*
 * hist.h - a latency histogram for the benchmarks: log-linear buckets over non-negative
 * int64 values (nanoseconds), fixed size, no allocation when recording.
 *
 * Values below 2^HIST_SUB_BITS are counted exactly; above, each power of two is split into
 * 2^HIST_SUB_BITS equal buckets, so a bucket's width is at most 1/64 (1.6 %) of its value.
 * A percentile is reported as the upper end of the bucket holding it (never below the
 * true value, at most 1.6 % above it), and the maximum exactly.
 *
 * One histogram per thread; merge them when the threads are done.
 */
#ifndef SL_BENCH_HIST_H
#define SL_BENCH_HIST_H

#include <stdint.h>

enum {
    HIST_SUB_BITS = 6,
    HIST_SUB = 1 << HIST_SUB_BITS,
    HIST_BUCKETS = (65 - HIST_SUB_BITS) * HIST_SUB
};

typedef struct hist {
    uint64_t count;
    int64_t max, min;
    uint64_t buckets[HIST_BUCKETS];
} hist;

void hist_reset(hist *h);
/* Records v (negative values are recorded as 0). */
void hist_add(hist *h, int64_t v);
/* Adds every value of from into into. */
void hist_merge(hist *into, const hist *from);
/* The value at quantile q (0 <= q <= 1): the upper end of the bucket of the ceil(q * count)th
 * smallest value, capped at the maximum. 0 when empty. */
int64_t hist_quantile(const hist *h, double q);

#endif

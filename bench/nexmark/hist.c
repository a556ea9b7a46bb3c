/*
 * hist.c - log-linear latency histogram (see hist.h).
 */
#include "hist.h"

#include <string.h>

static int bucket_of(uint64_t v)
{
    if (v < HIST_SUB)
        return (int)v;
    int e = 63 - __builtin_clzll(v); /* >= HIST_SUB_BITS */
    int shift = e - HIST_SUB_BITS;
    int sub = (int)((v >> shift) & (HIST_SUB - 1));
    return (shift + 1) * HIST_SUB + sub;
}

/* The largest value that falls into bucket b. */
static int64_t bucket_high(int b)
{
    if (b < HIST_SUB)
        return b;
    int shift = b / HIST_SUB - 1, sub = b % HIST_SUB;
    uint64_t low = (uint64_t)(HIST_SUB + sub) << shift;
    return (int64_t)(low + ((uint64_t)1 << shift) - 1);
}

void hist_reset(hist *h)
{
    memset(h, 0, sizeof *h);
}

void hist_add(hist *h, int64_t v)
{
    if (v < 0)
        v = 0;
    if (!h->count || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->buckets[bucket_of((uint64_t)v)]++;
}

void hist_merge(hist *into, const hist *from)
{
    if (!from->count)
        return;
    if (!into->count || from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
    into->count += from->count;
    for (int b = 0; b < HIST_BUCKETS; b++)
        into->buckets[b] += from->buckets[b];
}

int64_t hist_quantile(const hist *h, double q)
{
    if (!h->count)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (int b = 0; b < HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            int64_t v = bucket_high(b);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

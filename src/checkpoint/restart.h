/*
 * restart.h - restart strategies: whether and when a failed job attempt is restarted.
 *
 * Strategies, as in Flink: none; fixed-delay (attempts, delay); failure-rate (at most N
 * failures within an interval, delay); exponential-delay (initial backoff, max backoff,
 * multiplier, reset threshold, jitter). Defaults follow Flink: without checkpointing none;
 * with checkpointing and no strategy configured, fixed-delay with unbounded attempts and a
 * 1 s delay. Configured with restart-strategy.type and restart-strategy.<type>.* keys.
 *
 * Pure logic: time is passed in, so tests need no clock. Not thread-safe (the coordinator
 * owns it).
 */
#ifndef SL_CHECKPOINT_RESTART_H
#define SL_CHECKPOINT_RESTART_H

#include "core/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl__restart sl__restart;

/* Creates the strategy the configuration asks for. checkpointing says whether
 * checkpointing is enabled (it changes the default). seed makes the jitter repeatable.
 * NULL on out of memory. */
sl__restart *sl__restart_create(const sl__config *c, bool checkpointing, uint64_t seed);
void sl__restart_destroy(sl__restart *r);

/* A job attempt failed at now_ms (any monotonic milliseconds). Returns the delay in ms
 * before the next attempt starts, or -1 when the strategy gives up. */
int64_t sl__restart_on_failure(sl__restart *r, int64_t now_ms);
/* The number of restarts granted so far. */
int sl__restart_count(const sl__restart *r);
/* One line for messages and logs, e.g. "fixed-delay (3 attempts, delay 5 s)". */
const char *sl__restart_describe(const sl__restart *r);

#endif

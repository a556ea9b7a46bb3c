/*
 * runtime.h - runs a job graph on the embedded local cluster: one thread per subtask,
 * chained operators as direct calls, channels between chains.
 */
#ifndef SL_RUNTIME_RUNTIME_H
#define SL_RUNTIME_RUNTIME_H

#include "api/graph.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

/* Runs g to completion. Blocks. Installs SIGINT/SIGTERM handlers for the duration (and
 * restores the previous ones): a signal cancels the job. Returns 0, SL_ECANCELED, or the
 * first failure with its message in err (which names operator and subtask). *signal_out
 * receives the signal number that cancelled the job, or 0. */
int sl__runtime_run(const sl__job_graph *g, char *err, size_t cap, int *signal_out);

/* For built-in connectors: whether the job takes checkpoints, and the job's id (32 hex
 * digits, new for every sl_execute). */
bool sl__ctx_checkpointing(const sl_ctx *ctx);
const char *sl__ctx_job_id(const sl_ctx *ctx);

#endif

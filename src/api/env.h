/*
 * env.h - internals of the environment shared by the builder (src/api) and the connectors
 * (src/connectors), which are written on the public API plus these few helpers.
 */
#ifndef SL_API_ENV_H
#define SL_API_ENV_H

#include "api/graph.h"
#include "sluice.h"

/* Hands p to the environment, which calls free_fn(p) when it is destroyed. Returns p; on
 * out of memory frees p at once, records SL_ENOMEM and returns NULL. */
void *sl__env_own(sl_env *env, void *p, void (*free_fn)(void *));
/* True when a builder error is recorded (builder calls then do nothing). */
bool sl__env_failed(const sl_env *env);
const sl__config *sl__env_config(const sl_env *env);
/* Calls fn(arg, ok, err, cap) once the job has ended (ok: it finished), before sl_execute returns
 * and before the job's checkpoints are deleted; for connectors that commit output only once the
 * whole job has finished. fn returns 0, or an error with a message in err: then the job
 * ends with that error and its checkpoints are kept, so a restore can commit again. */
int sl__env_on_finish(sl_env *env, int (*fn)(void *arg, bool ok, char *err, size_t cap), void *arg);

#endif

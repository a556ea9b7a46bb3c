/*
 * coordinator.h - the checkpoint coordinator: when to trigger checkpoint N, collecting the
 * acknowledgements of every task with its state handles, completing a checkpoint by writing
 * its metadata, and aborting it on timeout or decline, with the tolerable-failure count.
 *
 * It decides and keeps accounts; the runtime moves barriers and notifications. All calls
 * come from one thread (the one running the job's main loop).
 */
#ifndef SL_CHECKPOINT_COORDINATOR_H
#define SL_CHECKPOINT_COORDINATOR_H

#include "checkpoint/storage.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sl__coord_config {
    int64_t interval_ms; /* > 0 */
    int64_t timeout_ms;
    int64_t min_pause_ms;
    int max_concurrent;
    int tolerable_failures; /* consecutive failed checkpoints tolerated */
} sl__coord_config;

/* One operator subtask's part of an acknowledgement. The coordinator takes ownership of
 * state (its members). */
typedef struct sl__op_ack {
    const char *uid;
    const char *name;
    int parallelism;
    int max_parallelism;
    int subtask;
    sl__subtask_state state;
} sl__op_ack;

typedef struct sl__coordinator sl__coordinator;

/* ntasks acknowledgements complete a checkpoint. Ids start at first_id. */
sl__coordinator *sl__coord_create(const sl__coord_config *cfg, sl__storage *st, int ntasks,
                                  int64_t first_id, const char *job_id, const char *job_name);
void sl__coord_destroy(sl__coordinator *c); /* aborts what is pending */

/* Returns the id of a checkpoint to trigger now (the caller sends the barriers), or 0:
 * honours the interval, the min pause after the last completion and max concurrent. */
int64_t sl__coord_maybe_trigger(sl__coordinator *c, int64_t now_ms);

/* Starts a checkpoint now, whatever the interval, pause and concurrency say (the final
 * checkpoint of a job whose tasks are ending). Returns its id, or 0 on out of memory. */
int64_t sl__coord_trigger_now(sl__coordinator *c, int64_t now_ms);

typedef enum sl__coord_event {
    SL_COORD_PENDING = 0, /* nothing to tell */
    SL_COORD_COMPLETED,   /* the checkpoint is complete and durable: notify the tasks */
    SL_COORD_FAILED,      /* the checkpoint failed; tolerated */
    SL_COORD_FAIL_JOB,    /* the checkpoint failed and the tolerable count is exceeded */
} sl__coord_event;

/* A task acknowledged checkpoint id with nacks operator states (or declined it with a
 * reason) at now_ms (the clock of sl__coord_maybe_trigger). Unknown or already finished ids
 * are ignored (their states are freed). */
sl__coord_event sl__coord_ack(sl__coordinator *c, int64_t id, sl__op_ack *acks, int nacks,
                              bool declined, const char *reason, int64_t now_ms, char *err,
                              size_t cap);
/* Records how long a task was paused for the synchronous part of checkpoint id (the
 * largest pause per checkpoint is reported). Call before sl__coord_ack of that task. */
void sl__coord_sync_pause(sl__coordinator *c, int64_t id, int64_t us);
/* Expires checkpoints older than the timeout. Returns FAILED, FAIL_JOB or PENDING; *expired
 * receives the id of an expired checkpoint (0 if none). */
sl__coord_event sl__coord_tick(sl__coordinator *c, int64_t now_ms, int64_t *expired, char *err,
                               size_t cap);

/* Aborts every pending checkpoint without counting it as failed (the job attempt ended, or
 * a task finished and can no longer acknowledge). */
void sl__coord_abort_pending(sl__coordinator *c);

/* A job attempt starts at now_ms: pending checkpoints are aborted, the count of consecutive
 * failed checkpoints starts again (each attempt may fail as many as tolerated), and the
 * first checkpoint comes one interval later, as in Flink. NULL is a no-op. */
void sl__coord_new_attempt(sl__coordinator *c, int64_t now_ms);

/* The ids of pending checkpoints, oldest first; returns how many (at most cap). */
int sl__coord_pending_ids(const sl__coordinator *c, int64_t *ids, int cap);

/* Counters for logs and tests. */
typedef struct sl__coord_stats {
    int64_t completed, failed, last_completed_id;
    int64_t last_duration_ms, last_size_bytes;
    int64_t last_stored_bytes;  /* of last_size_bytes, what that checkpoint stored itself */
    int64_t last_sync_pause_us; /* largest synchronous pause of any task */
} sl__coord_stats;
void sl__coord_stats_get(const sl__coordinator *c, sl__coord_stats *out);

#endif

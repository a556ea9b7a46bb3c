/*
 * task.h - runtime internals shared by the runtime's files: the job, its tasks (one thread
 * per subtask of a chain), the operator instances inside a task (struct sl_ctx, which is
 * also what user functions see as their runtime context) and the record writers.
 */
#ifndef SL_RUNTIME_TASK_H
#define SL_RUNTIME_TASK_H

#include "api/graph.h"
#include "checkpoint/coordinator.h"
#include "checkpoint/storage.h"
#include "core/arena.h"
#include "runtime/channel.h"
#include "state/state.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct sl__job sl__job;
typedef struct sl__task sl__task;

/* Per-operator-instance scratch for computing keys. */
typedef struct sl__keyer {
    const sl__key_spec *spec;
    int field; /* spec->field, kept here: the job graph's cache lines stay out of the record path */
    sl_value *vals;
    uint8_t *buf;
    size_t cap;
} sl__keyer;

/* Sends records of one edge from one producer subtask to the consumer subtasks. */
typedef struct sl__writer {
    sl__partitioner part;
    const sl__key_spec *key;
    const sl__schema *schema;
    sl__channel **chans; /* by consumer subtask */
    int nchans;
    int rr;
    int max_parallelism;
    sl_ctx *key_ctx; /* context given to a key selector function */
    sl__keyer keyer; /* HASH */
    /* HASH of (string key, 8-byte number) pairs keyed by the string (write_pair) */
    bool pair;
} sl__writer;

typedef struct sl__output {
    sl_ctx *next; /* chained operator, or NULL */
    int input;
    sl__writer *w; /* network writer, or NULL */
} sl__output;

struct sl_ctx {
    sl__task *task;
    const sl__node *node;
    int subtask;
    int parallelism;
    void *user;
    void *local;
    sl__output *outs;
    int nouts;

    sl__keyed_backend *kb;  /* keyed operators */
    sl__operator_store *os; /* every operator */
    sl__keyer keyer;        /* keyed operators: input 0's key */
    sl_ctx *key_ctx;        /* context for the key selector */
    sl_value *key_view;     /* sl_ctx_current_key scratch */
    sl_value *out_row;      /* map / aggregation output scratch */
    sl_state *agg_state;    /* reduce and aggregations */
    /* A sum over a (key, number) pair keyed by the key: the stored row's other field is the
     * record's key, so the sum reads and writes only the number (sl__value_add_last_fn). */
    bool agg_pair;
    sl__value_add_last_fn agg_add_last; /* agg_pair: sl__value_add_last_fn_of(agg_state) */
    /* agg_pair: sl__value_add_last_run_fn_of(agg_state), or NULL */
    sl__value_add_last_run_fn agg_add_run;
    sl_state **bcast; /* broadcast connect: the broadcast states */
    int nbcast;
    bool opened;
    bool ended;
    bool restored; /* state came from a checkpoint (sl_ctx_is_restored) */
    /* Restored from a checkpoint in which this subtask had finished (see sl__op_restore): it
     * is initialized (operator state) but not opened, receives or polls nothing, does not
     * end its input again, and stays finished in every later checkpoint. */
    bool finished_on_restore;
};

/* Messages to a task from the coordinator, read on the task's thread between records. */
enum { SL_MAX_TRIGGERS = 64 };
typedef struct sl__mailbox {
    pthread_mutex_t mu;
    int64_t triggers[SL_MAX_TRIGGERS]; /* checkpoints to start (sources only) */
    int ntriggers;
    int64_t notify; /* highest completed checkpoint not yet notified, 0 if none */
} sl__mailbox;

struct sl__task {
    sl__job *job;
    int subtask;
    sl_ctx **ops; /* chain in topological order; ops[0] is the head */
    int nops;
    sl__gate *gate; /* NULL when the head is a source */
    int ninputs;    /* logical inputs of the head */
    const sl__schema *in_schema[2];
    sl_value *in_row[2];
    int *ended_per_input; /* END_OF_PARTITION seen, per logical input */
    int *chans_per_input;
    sl__writer **writers;
    int nwriters;
    sl__arena arena;
    pthread_t thread;
    bool dirty;
    int64_t dirty_since_ns;
    bool failed;

    /* checkpointing, task thread only unless noted */
    atomic_int mail; /* any thread sets it, with the mailbox filled first */
    sl__mailbox mb;
    int index;                        /* in job->tasks */
    int nchans;                       /* input channels */
    int nended;                       /* channels that delivered END_OF_PARTITION */
    int64_t align_id;                 /* exactly-once: checkpoint being aligned, 0 if none */
    int align_count;                  /* barriers of align_id received */
    int64_t alo_ids[SL_MAX_TRIGGERS]; /* at-least-once: barriers counted per checkpoint */
    int alo_counts[SL_MAX_TRIGGERS];
    int nalo;
    int64_t last_barrier; /* newest checkpoint snapshotted */
    int64_t notified;     /* newest checkpoint notified */

    /* A task that has processed all its input freezes: its state at its end is kept as a
     * snapshot (frozen_ops), and every later checkpoint takes this task's part from it.
     * The task thread fills frozen_ops and then sets frozen (release); the job's main
     * thread reads them after seeing frozen (acquire). */
    _Atomic int64_t last_acked; /* newest checkpoint this task's thread snapshotted */
    atomic_bool frozen;
    struct sl__io_op *frozen_ops;
    pthread_mutex_t frozen_mu;
    int64_t frozen_sent; /* main thread: newest checkpoint covered from frozen_ops */
};

/* An asynchronous snapshot part: what one operator instance hands to the I/O thread. */
typedef struct sl__io_op {
    bool borrowed; /* snap and op_state belong to a frozen task, not to this job */
    const char *uid, *name;
    int parallelism, max_parallelism, subtask;
    int kg_start, kg_end;
    sl__keyed_snapshot *snap; /* NULL when the operator has no keyed state, or finished */
    sl__buf op_state;
    bool finished; /* the task had ended: marked so in _metadata, no keyed state kept */
} sl__io_op;

typedef struct sl__io_job {
    int64_t id;
    pthread_mutex_t *lock; /* a frozen task's: its snapshot is written by one thread at a time */
    int64_t sync_us;       /* how long the task was stopped for the synchronous part */
    sl__io_op *ops;
    int nops;
    struct sl__io_job *next;
} sl__io_job;

/* An acknowledgement on its way from an I/O thread to the coordinator. */
typedef struct sl__ack_msg {
    int64_t id;
    int64_t sync_us;
    sl__op_ack *acks;
    int nacks;
    bool declined;
    char reason[512];
    struct sl__ack_msg *next;
} sl__ack_msg;

struct sl__job {
    const sl__job_graph *g;
    atomic_bool cancelled;
    pthread_mutex_t mu;
    pthread_cond_t done;
    int running;  /* guarded by mu */
    int err_code; /* guarded by mu; first failure */
    char err[1024];
    sl__task **tasks;
    int ntasks;
    sl__gate **gates;
    int ngates;
    sl__writer **writers;
    int nwriters;
    int64_t buffer_timeout_ns;
    size_t buf_size;
    int nbufs;
    int attempt;
    atomic_int finished_tasks;
    int64_t final_id; /* main thread: the final checkpoint, taken when every task froze */

    /* checkpointing (NULL storage: off) */
    sl__storage *storage;
    bool exactly_once;
    const sl__checkpoint_meta *restore; /* state to start from, or NULL */
    const char *restore_chk;            /* its path (NULL for memory storage) */
    pthread_t io_threads[2];
    int nio;
    sl__io_job *io_head, *io_tail; /* guarded by io_mu */
    bool io_stop;
    pthread_mutex_t io_mu;
    pthread_cond_t io_cv;
    sl__ack_msg *acks_head, *acks_tail; /* guarded by mu; the main loop drains them */
};

/* ---- checkpointing.c ---- */

/* Starts and stops the I/O threads of a job with checkpointing. */
int sl__io_start(sl__job *job);
void sl__io_stop(sl__job *job);
/* Posts to a task's mailbox (any thread). */
void sl__task_post_trigger(sl__task *t, int64_t id);
void sl__task_post_notify(sl__task *t, int64_t id);
/* Task thread: reads the mailbox; a source starts the checkpoints it was asked for. */
int sl__task_handle_mail(sl__task *t);
/* Task thread, at its end with checkpointing: snapshots its operators as they are now,
 * marked finished, and freezes (see sl__task.frozen). */
int sl__task_freeze(sl__task *t);
/* Main thread: covers checkpoint id for a frozen task from its frozen snapshot. */
void sl__task_submit_frozen(sl__task *t, int64_t id);
/* After the I/O threads stopped: releases a task's frozen snapshot. */
void sl__task_release_frozen(sl__task *t);
/* Task thread: a barrier (or the end of a channel, id 0) arrived on channel c. */
int sl__task_on_barrier(sl__task *t, sl__channel *c, int64_t id);
int sl__task_on_end(sl__task *t, sl__channel *c);
/* Task thread, in open: loads this operator instance's state from job->restore. */
int sl__op_restore(sl_ctx *ctx);

/* Fails the job with a message (the first failure wins) and cancels every task. */
void sl__job_fail(sl__job *job, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Cancels without recording a failure when one is already recorded. */
void sl__job_cancel(sl__job *job, int code, const char *msg);

/* Delivers a row to a chained operator instance: the operator's processing by kind. */
int sl__op_process(sl_ctx *ctx, int input, const sl_value *row);
/* Task thread: deserializes every record of buffer b, which came through channel c, and
 * delivers it to the task's head operator. Returns 0 or the first error (after failing the
 * job: SL_EFORMAT for a malformed record). */
int sl__op_process_buffer(sl__task *t, const sl__channel *c, const sl__buffer *b);
int sl__op_open(sl_ctx *ctx);
int sl__op_end_input(sl_ctx *ctx);
void sl__op_close(sl_ctx *ctx);

/* Flushes every partly filled output buffer of the task. */
int sl__task_flush(sl__task *t);

int64_t sl__now_ns(void);

/* Reports a function's failure: when the function returned an error without calling
 * sl_fail, a generic message naming the callback. Returns rc. */
int sl__op_failed(sl_ctx *ctx, const char *callback, int rc);

#endif

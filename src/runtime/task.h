/*
 * task.h - runtime internals shared by the runtime's files: the job, its tasks (one thread
 * per subtask of a chain), the operator instances inside a task (struct sl_ctx, which is
 * also what user functions see as their runtime context) and the record writers.
 */
#ifndef SL_RUNTIME_TASK_H
#define SL_RUNTIME_TASK_H

#include "api/graph.h"
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
    sl_state **bcast;       /* broadcast connect: the broadcast states */
    int nbcast;
    bool opened;
    bool ended;
};

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
};

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
};

/* Fails the job with a message (the first failure wins) and cancels every task. */
void sl__job_fail(sl__job *job, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Cancels without recording a failure when one is already recorded. */
void sl__job_cancel(sl__job *job, int code, const char *msg);

/* Delivers a row to a chained operator instance: the operator's processing by kind. */
int sl__op_process(sl_ctx *ctx, int input, const sl_value *row);
int sl__op_open(sl_ctx *ctx);
int sl__op_end_input(sl_ctx *ctx);
void sl__op_close(sl_ctx *ctx);

/* Computes the key row and bytes of row into k; returns 0 or a negative code. */
int sl__keyer_make(sl__keyer *k, sl_ctx *key_ctx, const sl_value *row, sl__key *out,
                   int max_parallelism);

/* Flushes every partly filled output buffer of the task. */
int sl__task_flush(sl__task *t);

int64_t sl__now_ns(void);

/* Reports a function's failure: when the function returned an error without calling
 * sl_fail, a generic message naming the callback. Returns rc. */
int sl__op_failed(sl_ctx *ctx, const char *callback, int rc);

#endif

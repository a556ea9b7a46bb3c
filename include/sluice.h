/*
 * sluice.h - the public interface of Sluice, a stateful stream-processing engine.
 *
 * A job program builds a dataflow on an environment (sources, transformations, sinks) and
 * runs it with sl_execute(). Records are rows: a fixed number of typed fields described by
 * a schema. Operators run in parallel subtasks, one thread per subtask, on an embedded local
 * cluster inside the program. State is managed: keyed state scoped to the current key, and
 * operator state, reached only through handles.
 *
 * Conventions that hold for every function below unless its comment says otherwise:
 *  - 0 is success; failures are negative codes from SL_ERRNO_MAP (see sl_strerror()).
 *  - Builder functions (everything taking an sl_env or sl_stream before sl_execute) never
 *    abort on a user error. The first error is recorded in the environment, later builder
 *    calls on a failed environment do nothing and return NULL, and sl_execute() returns the
 *    error with its message. So a job can be written as a straight line, like in Flink.
 *  - Handles (sl_env, sl_stream, sl_state, ...) are opaque. Streams and states are owned by
 *    their environment or runtime context and must not be freed by the caller.
 *  - Builder functions are called from the thread that created the environment. User
 *    callbacks run on subtask threads; a callback may only use the sl_ctx it was given.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SL_VERSION_MAJOR 0
#define SL_VERSION_MINOR 1
#define SL_VERSION_PATCH 0
#define SL_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------- */

/* X(name, value, message). Every code is negative; 0 is success. */
#define SL_ERRNO_MAP(X)                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(EIO, -3, "input/output error")                                                               \
    X(ECONFIG, -4, "invalid configuration")                                                        \
    X(ESCHEMA, -5, "schema mismatch")                                                              \
    X(ECONNECT, -6, "connection failed")                                                           \
    X(ECANCELED, -7, "job cancelled")                                                              \
    X(EUSER, -8, "user function failed")                                                           \
    X(EPERM, -9, "operation not permitted")                                                        \
    X(ESTATE, -10, "state access error")                                                           \
    X(ENOTFOUND, -11, "not found")                                                                 \
    X(EFORMAT, -12, "malformed input")                                                             \
    X(EUNSUPPORTED, -13, "not supported")

typedef enum sl_errno {
#define SL__ERR_ENUM(name, value, msg) SL_##name = value,
    SL_ERRNO_MAP(SL__ERR_ENUM)
#undef SL__ERR_ENUM
} sl_errno;

/* Returns a static description of code ("invalid argument"); "unknown error" otherwise. */
const char *sl_strerror(int code);
/* Returns the code's name ("EINVAL"); "UNKNOWN" for a code not in SL_ERRNO_MAP. */
const char *sl_err_name(int code);

/* ---------------------------------------------------------------------------------------
 * Values and rows
 *
 * A row is an array of sl_value, as many as its schema has fields. A str or bytes value
 * is a view: it points to memory owned by someone else (a record buffer, the runtime
 * context's arena, a state entry, or the program's static data). Whoever keeps a value
 * beyond the call it was given in copies it; managed state does that on every write.
 * ------------------------------------------------------------------------------------- */

typedef enum sl_type {
    SL_NULL = 0,
    SL_I64 = 1,
    SL_F64 = 2,
    SL_BOOL = 3,
    SL_STR = 4,
    SL_BYTES = 5,
} sl_type;

typedef struct sl_value {
    sl_type type;
    union {
        int64_t i64;
        double f64;
        bool b;
        struct {
            const char *ptr; /* not NUL-terminated in general */
            size_t len;
        } s;
    } u;
} sl_value;

/* Value constructors. SL_STR_LIT takes a string literal. sl_str() borrows its argument: the
 * bytes must outlive the value's use. */
#define SL_I64(x) ((sl_value){.type = SL_I64, .u.i64 = (x)})
#define SL_F64(x) ((sl_value){.type = SL_F64, .u.f64 = (x)})
#define SL_BOOL(x) ((sl_value){.type = SL_BOOL, .u.b = (x)})
#define SL_NULLV ((sl_value){.type = SL_NULL})
#define SL_STR_LIT(lit) ((sl_value){.type = SL_STR, .u.s = {.ptr = (lit), .len = sizeof(lit) - 1}})
sl_value sl_str(const char *s);
sl_value sl_strn(const char *s, size_t len);
sl_value sl_bytes(const void *p, size_t len);

/* Formats a row the way Flink prints a tuple: "(北京,6)". A row of one field prints as the
 * bare value ("hello"), f64 as Java does ("1.0", "0.1"), bool as true/false, null as
 * "null", bytes as hex prefixed by 0x. Writes at most cap bytes including the NUL and
 * returns the length the full text needs (snprintf's contract). Any thread. */
size_t sl_row_format(const sl_value *row, size_t nfields, char *buf, size_t cap);

/* ---------------------------------------------------------------------------------------
 * Environment
 * ------------------------------------------------------------------------------------- */

typedef struct sl_env sl_env;
typedef struct sl_stream sl_stream;
typedef struct sl_ctx sl_ctx;
typedef struct sl_state sl_state;
typedef struct sl_iter sl_iter;

/* Creates an environment, taking Sluice's own options from the front of argv:
 *   -p N            default parallelism (parallelism.default)
 *   -D key=value    any configuration key (see docs/config.md); repeatable
 *   --conf FILE     a YAML configuration file (flat "a.b: v" or nested mappings)
 *   -s PATH         restore from a retained checkpoint (its chk-<N> directory or _metadata)
 *   --allow-non-restored-state  skip state in that checkpoint of operators the job lacks
 *   -h, --help      print the usage to stdout and return NULL with *err_out = 0
 * Options are read up to the first argument that is not one of them, or up to "--", which
 * is consumed. The remaining arguments are the job's own: *job_argc and *job_argv (pointers
 * into argv) receive them. Precedence, lowest first: defaults, SLUICE_CONF_DIR/sluice.yaml
 * if that variable is set, --conf, -D and -p in order, then values set in code.
 * On error returns NULL, stores the code in *err_out and writes a message naming the
 * option or key and what is accepted into errbuf (errcap bytes, NUL-terminated).
 * The caller owns the environment and frees it with sl_env_destroy(). */
sl_env *sl_env_create(int argc, char **argv, int *job_argc, char ***job_argv, int *err_out,
                      char *errbuf, size_t errcap);
/* Frees the environment, its streams and everything sl_execute() left. NULL is a no-op. */
void sl_env_destroy(sl_env *env);

/* Sets a configuration key as -D does. Returns 0, or SL_ECONFIG with the message available
 * from sl_env_error() when the key is unknown or the value is not accepted. */
int sl_env_set(sl_env *env, const char *key, const char *value);
/* Reads a configuration key's effective value as text into buf. Returns 0 or SL_ENOTFOUND. */
int sl_env_get(const sl_env *env, const char *key, char *buf, size_t cap);
/* Default parallelism for operators that set none (like env.setParallelism in Flink: a
 * value set in code wins over -p). Must be 1..max parallelism; checked at sl_execute. */
void sl_env_set_parallelism(sl_env *env, int parallelism);
void sl_env_set_max_parallelism(sl_env *env, int max_parallelism);

typedef enum sl_runtime_mode {
    SL_STREAMING = 0,
    SL_BATCH = 1,
    SL_AUTOMATIC = 2, /* BATCH when every source is bounded, STREAMING otherwise */
} sl_runtime_mode;
void sl_env_set_runtime_mode(sl_env *env, sl_runtime_mode mode);

/* Records an error on the environment as a builder error would (the first one wins) and
 * returns code: a job function reports its own usage errors with
 * `return sl_env_fail(env, SL_EINVAL, "usage: word_count HOST PORT");`. */
int sl_env_fail(sl_env *env, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- Checkpointing and restarts (Flink's CheckpointConfig and RestartStrategies) --------
 *
 * Each call sets the configuration key named beside it, so the same settings can be given
 * with -D or --conf. A bad value is recorded as a builder error. Without checkpointing a
 * failure ends the job; with it, a failed job restarts from its latest completed
 * checkpoint as the restart strategy says. */

typedef enum sl_checkpointing_mode {
    SL_EXACTLY_ONCE = 0, /* tasks with several inputs align barriers */
    SL_AT_LEAST_ONCE = 1,
} sl_checkpointing_mode;

/* execution.checkpointing.interval and execution.checkpointing.mode. */
void sl_env_enable_checkpointing(sl_env *env, int64_t interval_ms, sl_checkpointing_mode mode);
/* state.checkpoints.dir: a path or file:// URI (Flink's FsStateBackend(path)); NULL keeps
 * checkpoints in memory (development only: they die with the process). */
void sl_env_set_checkpoint_dir(sl_env *env, const char *dir);
/* execution.checkpointing.min-pause */
void sl_env_set_min_pause_between_checkpoints(sl_env *env, int64_t ms);
/* execution.checkpointing.timeout: a checkpoint not complete by then is aborted and
 * counted as failed. */
void sl_env_set_checkpoint_timeout(sl_env *env, int64_t ms);
/* execution.checkpointing.max-concurrent-checkpoints */
void sl_env_set_max_concurrent_checkpoints(sl_env *env, int n);
/* execution.checkpointing.tolerable-failed-checkpoints: consecutive failed checkpoints
 * tolerated before the job fails (and the restart strategy takes over). */
void sl_env_set_tolerable_checkpoint_failures(sl_env *env, int n);

typedef enum sl_externalized_cleanup {
    SL_NO_EXTERNALIZED_CHECKPOINTS = 0, /* deleted when the job ends */
    SL_DELETE_ON_CANCELLATION = 1,      /* kept when the job fails, deleted on cancel */
    SL_RETAIN_ON_CANCELLATION = 2,      /* kept on cancel and on failure */
} sl_externalized_cleanup;
/* execution.checkpointing.externalized-checkpoint-retention */
void sl_env_set_externalized_checkpoints(sl_env *env, sl_externalized_cleanup cleanup);
/* state.checkpoints.num-retained */
void sl_env_set_num_retained_checkpoints(sl_env *env, int n);

/* restart-strategy.type and its keys. */
void sl_env_set_restart_none(sl_env *env);
void sl_env_set_restart_fixed_delay(sl_env *env, int attempts, int64_t delay_ms);
void sl_env_set_restart_failure_rate(sl_env *env, int max_failures, int64_t interval_ms,
                                     int64_t delay_ms);
void sl_env_set_restart_exponential_delay(sl_env *env, int64_t initial_ms, int64_t max_ms,
                                          double multiplier, int64_t reset_threshold_ms,
                                          double jitter);

/* The first error recorded on the environment (0 if none) and its message ("" if none).
 * The message lives as long as the environment. */
int sl_env_error_code(const sl_env *env);
const char *sl_env_error(const sl_env *env);

/* Builds the execution graph and runs the job on the embedded local cluster until every
 * source has ended and all records are processed, the job fails, or SIGINT/SIGTERM cancels
 * it. Blocks the calling thread. Returns 0 when the job finished, SL_ECANCELED when it was
 * cancelled by a signal, or the first error (a builder error, a failing user function, a
 * connector error); sl_env_error() then says which operator and subtask failed and why.
 * Can be called once per environment. */
int sl_execute(sl_env *env, const char *job_name);

/* ---------------------------------------------------------------------------------------
 * Runtime context: what a user function sees of the subtask it runs in
 * ------------------------------------------------------------------------------------- */

int sl_ctx_subtask(const sl_ctx *ctx);     /* 0-based index of this subtask */
int sl_ctx_parallelism(const sl_ctx *ctx); /* parallelism of this operator */
int sl_ctx_max_parallelism(const sl_ctx *ctx);
int sl_ctx_attempt(const sl_ctx *ctx); /* 0 on the first run, +1 per restart */
/* True when this operator's state was restored from a checkpoint (Flink's isRestored()):
 * in initialize_state() it tells a fresh start from a restore that gave this subtask no
 * operator state. */
bool sl_ctx_is_restored(const sl_ctx *ctx);
const char *sl_ctx_operator(const sl_ctx *ctx);
/* The user pointer given in the function struct (shared by all subtasks). */
void *sl_ctx_user(const sl_ctx *ctx);
/* A pointer private to this subtask's instance of the function, NULL until set; typically
 * allocated in open() and freed in close(). */
void *sl_ctx_local(const sl_ctx *ctx);
void sl_ctx_set_local(sl_ctx *ctx, void *local);

/* Scratch memory valid until the current callback returns to the runtime and the runtime
 * finishes the batch it belongs to (at least until all records the callback emitted have
 * been passed on). Never NULL: aborts on out of memory (hot path). */
void *sl_ctx_alloc(sl_ctx *ctx, size_t size);
/* A str value formatted into scratch memory, printf-style. */
sl_value sl_ctx_printf(sl_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Emits a row downstream: nfields values matching the operator's output schema. Used by
 * sources, flat_map, process and co-process functions. The row is consumed (serialized or
 * passed to a chained operator) before the call returns. Returns 0, or SL_ECANCELED when
 * the job is being cancelled (the callback should return). Blocks while downstream
 * buffers are full (backpressure). */
int sl_emit(sl_ctx *ctx, const sl_value *row);

/* Records an error message for this subtask and returns SL_EUSER: a user callback fails
 * the job with `return sl_fail(ctx, "bug in %s", word);`. */
int sl_fail(sl_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sleeps up to ms milliseconds, returning early with SL_ECANCELED when the job is being
 * cancelled. Flushes this subtask's pending output first, so what was emitted is not held
 * back while the source sleeps. */
int sl_ctx_sleep_ms(sl_ctx *ctx, int64_t ms);
/* True once the job is being cancelled or has failed; long-running callbacks poll it. */
bool sl_ctx_cancelled(const sl_ctx *ctx);

/* On a keyed stream, the current key as a row of the key schema. Views valid for the
 * current callback. Returns the number of key fields, or SL_EINVAL when not keyed. */
int sl_ctx_current_key(sl_ctx *ctx, const sl_value **key);

/* ---------------------------------------------------------------------------------------
 * Managed state
 *
 * Keyed state is declared with a descriptor in open() (or initialize_state()) of a
 * function that runs on a keyed stream, and is then scoped to the current key: the runtime
 * sets the key before each call. Values are rows of the descriptor's schema. Rows read from
 * state point into state memory and stay valid until the next write to any state of this
 * subtask or the end of the callback, whichever comes first.
 *
 * Return values: accessors return 1 when a value was found, 0 when absent (Flink's null),
 * or a negative code. Writers return 0 or a negative code.
 * ------------------------------------------------------------------------------------- */

typedef enum sl_state_kind {
    SL_STATE_VALUE = 1,
    SL_STATE_LIST = 2,
    SL_STATE_REDUCING = 3,
    SL_STATE_AGGREGATING = 4,
    SL_STATE_MAP = 5,
} sl_state_kind;

/* Combines two rows of the state's schema into out (which has the same schema). */
typedef int (*sl_reduce_cb)(sl_ctx *ctx, const sl_value *a, const sl_value *b, sl_value *out);

/* An aggregate function for aggregating state: the accumulator has schema acc_schema; add()
 * folds an input row (state schema) into it; result() makes the output row (result_schema)
 * from the accumulator; create() fills a fresh accumulator. */
typedef struct sl_aggregate_fn {
    int (*create)(sl_ctx *ctx, sl_value *acc);
    int (*add)(sl_ctx *ctx, const sl_value *in, const sl_value *acc, sl_value *acc_out);
    int (*result)(sl_ctx *ctx, const sl_value *acc, sl_value *out);
    const char *acc_schema;
    const char *result_schema;
} sl_aggregate_fn;

typedef struct sl_state_desc {
    const char *name; /* unique per operator */
    sl_state_kind kind;
    const char *schema;               /* value / element schema, e.g. "i64" or "ip:str,n:i64" */
    const char *key_schema;           /* MAP only: the user key schema */
    sl_reduce_cb reduce;              /* REDUCING only */
    const sl_aggregate_fn *aggregate; /* AGGREGATING only */
} sl_state_desc;

/* Registers (or, on a second call with the same name, returns) keyed state of this
 * operator. Returns NULL and fails the subtask with a message if the function does not run
 * on a keyed stream, the descriptor is invalid, or the same name was declared differently. */
sl_state *sl_keyed_state(sl_ctx *ctx, const sl_state_desc *desc);

/* Keyed state is scoped to (key, namespace); the namespace is empty unless set here (for
 * windows and user-defined scoping). The bytes are copied. */
int sl_state_set_namespace(sl_state *st, const void *ns, size_t len);
/* Removes the value for the current key and namespace, for every state kind. */
int sl_state_clear(sl_state *st);

/* VALUE */
int sl_value_get(sl_state *st, sl_value *out);
int sl_value_update(sl_state *st, const sl_value *row);

/* LIST (also operator list state) */
int sl_list_add(sl_state *st, const sl_value *row);
int sl_list_update(sl_state *st, const sl_value *rows, size_t nrows); /* replaces */
/* Starts iterating the list; returns 1 and an iterator when non-empty, 0 when empty. */
int sl_list_get(sl_state *st, sl_iter **it);

/* REDUCING and AGGREGATING: add() folds a row in, get() reads the result. */
int sl_reducing_add(sl_state *st, const sl_value *row);
int sl_reducing_get(sl_state *st, sl_value *out);
int sl_aggregating_add(sl_state *st, const sl_value *row);
int sl_aggregating_get(sl_state *st, sl_value *out);

/* MAP (also broadcast state) */
int sl_map_get(sl_state *st, const sl_value *ukey, sl_value *out);
int sl_map_put(sl_state *st, const sl_value *ukey, const sl_value *value);
int sl_map_remove(sl_state *st, const sl_value *ukey);
int sl_map_contains(sl_state *st, const sl_value *ukey);
/* Iterates (user key, value) pairs; sl_iter_next fills key then value. */
int sl_map_iter(sl_state *st, sl_iter **it);

/* Advances an iterator: returns 1 and fills row (and for maps, ukey) or 0 at the end. The
 * iterator is owned by the runtime context and released at the end of the callback or by
 * sl_iter_close(); writing to the state being iterated ends the iteration. */
int sl_iter_next(sl_iter *it, sl_value *row);
int sl_iter_next_kv(sl_iter *it, sl_value *ukey, sl_value *value);
void sl_iter_close(sl_iter *it);

/* Operator state (Flink's CheckpointedFunction): list state of this subtask, declared in
 * initialize_state(). On restore after a rescale its elements are redistributed: EVEN
 * splits the union of all subtasks' lists in contiguous ranges, UNION gives every subtask
 * all elements. */
typedef enum sl_redistribution { SL_SPLIT_EVEN = 0, SL_UNION = 1 } sl_redistribution;
sl_state *sl_operator_list_state(sl_ctx *ctx, const char *name, const char *schema,
                                 sl_redistribution mode);

/* Broadcast state: a map replicated on every subtask of a broadcast-connected operator.
 * Read-write in process_broadcast(), read-only in process_element() (writers return
 * SL_EPERM and fail the subtask). Declared in sl_broadcast(); fetched here by name. */
sl_state *sl_broadcast_state(sl_ctx *ctx, const char *name);

/* ---------------------------------------------------------------------------------------
 * User functions
 *
 * Each function struct starts with the same lifecycle hooks; any hook may be NULL. A hook
 * returns 0 or a negative code (use sl_fail() for a message); an error fails the job.
 *   open(ctx)                 once per subtask before the first record
 *   close(ctx)                once per subtask after the last record, also on failure
 *                             (even when initialize_state or open failed: free what
 *                             sl_ctx_local holds, which may be NULL)
 *   initialize_state(ctx)     before open(): declare operator state (restored on recovery)
 *   snapshot_state(ctx, id)   when a checkpoint is taken: write operator state
 *   notify_checkpoint_complete(ctx, id)  after checkpoint id is complete
 * ------------------------------------------------------------------------------------- */

#define SL_FN_HOOKS                                                                                \
    int (*open)(sl_ctx * ctx);                                                                     \
    int (*close)(sl_ctx * ctx);                                                                    \
    int (*initialize_state)(sl_ctx * ctx);                                                         \
    int (*snapshot_state)(sl_ctx * ctx, int64_t checkpoint_id);                                    \
    int (*notify_checkpoint_complete)(sl_ctx * ctx, int64_t checkpoint_id);                        \
    void *user

typedef struct sl_map_fn {
    SL_FN_HOOKS;
    /* Fills out (the output schema's fields) from in. */
    int (*map)(sl_ctx *ctx, const sl_value *in, sl_value *out);
} sl_map_fn;

typedef struct sl_flat_map_fn {
    SL_FN_HOOKS;
    /* Emits zero or more rows with sl_emit(). */
    int (*flat_map)(sl_ctx *ctx, const sl_value *in);
} sl_flat_map_fn;

typedef struct sl_filter_fn {
    SL_FN_HOOKS;
    /* Returns 1 to keep the row, 0 to drop it, negative on error. */
    int (*filter)(sl_ctx *ctx, const sl_value *in);
} sl_filter_fn;

typedef struct sl_reduce_fn {
    SL_FN_HOOKS;
    sl_reduce_cb reduce;
} sl_reduce_fn;

typedef struct sl_process_fn {
    SL_FN_HOOKS;
    /* Handles one row; may emit any number of rows and use keyed state. */
    int (*process)(sl_ctx *ctx, const sl_value *in);
    /* Called once when all input has ended (bounded input), may emit. */
    int (*end_input)(sl_ctx *ctx);
} sl_process_fn;

typedef struct sl_key_fn {
    SL_FN_HOOKS;
    /* Fills key (key schema's fields) from in. Must be deterministic: it runs both where
     * records are partitioned and where keyed state is accessed. */
    int (*key)(sl_ctx *ctx, const sl_value *in, sl_value *key);
} sl_key_fn;

typedef struct sl_broadcast_process_fn {
    SL_FN_HOOKS;
    /* A row of the keyed (or non-broadcast) input: broadcast state is read-only here. */
    int (*process_element)(sl_ctx *ctx, const sl_value *in);
    /* A row of the broadcast input: broadcast state is read-write here. */
    int (*process_broadcast)(sl_ctx *ctx, const sl_value *in);
} sl_broadcast_process_fn;

/* A source polled by the runtime. poll() emits zero or more rows with sl_emit() and
 * returns SL_SOURCE_MORE to be polled again, SL_SOURCE_IDLE when nothing is available now
 * (the runtime flushes pending output and polls again), SL_SOURCE_END when the source is
 * exhausted, or a negative code. Between two polls the runtime may checkpoint and cancel;
 * a poll should return within about 100 ms. */
enum { SL_SOURCE_END = 0, SL_SOURCE_MORE = 1, SL_SOURCE_IDLE = 2 };
typedef struct sl_source_fn {
    SL_FN_HOOKS;
    int (*poll)(sl_ctx *ctx);
} sl_source_fn;

typedef struct sl_sink_fn {
    SL_FN_HOOKS;
    int (*invoke)(sl_ctx *ctx, const sl_value *in);
} sl_sink_fn;

/* ---------------------------------------------------------------------------------------
 * Schemas
 *
 * A schema is written as text: comma-separated fields "name:type" or just "type", where type
 * is i64, f64, bool, str or bytes (int/long/double/string/boolean are accepted as aliases).
 * Unnamed fields are called f0, f1, ... as in Flink tuples. Any field may hold null.
 * Example: "city:str,value:i64".
 * ------------------------------------------------------------------------------------- */

/* Number of fields of the stream's schema, or 0 for NULL. */
int sl_stream_arity(const sl_stream *s);
/* Index of the field called name (or "f<N>", or a decimal index) in the stream's schema.
 * On a miss records an error naming the field and the fields that exist, returns -1. */
int sl_field(sl_stream *s, const char *name);
/* The schema as text, "city:str,value:i64"; lives as long as the environment. */
const char *sl_stream_schema(const sl_stream *s);

/* ---------------------------------------------------------------------------------------
 * Sources
 * ------------------------------------------------------------------------------------- */

/* A bounded, non-parallel source of nrows rows given in code: vals holds nrows * arity
 * values row after row (Flink's fromElements). The values are copied. */
sl_stream *sl_from_rows(sl_env *env, const char *schema, const sl_value *vals, size_t nrows);
/* A bounded parallel source of the numbers from..to inclusive, schema "value:i64"; the
 * range is split evenly across subtasks (Flink's fromSequence). */
sl_stream *sl_from_sequence(sl_env *env, int64_t from, int64_t to);
/* A bounded (count >= 0) or unbounded (count < 0) parallel generator: gen(ctx, user, index,
 * out) fills row number index and returns 0 (or a negative code to fail the job); subtask
 * i of p generates the indexes congruent to i modulo p, in increasing order. Values the
 * generator makes up may live in sl_ctx_alloc() memory. */
typedef int (*sl_generator_cb)(sl_ctx *ctx, void *user, int64_t index, sl_value *out);
sl_stream *sl_from_generator(sl_env *env, const char *schema, int64_t count, sl_generator_cb gen,
                             void *user);
/* Lines of text from a TCP server (Flink's socketTextStream), schema "line:str", parallelism
 * 1. delimiter splits records (NULL: "\n"; a trailing '\r' is dropped with "\n").
 * max_retry: how many times to reconnect, 500 ms apart, when the connection fails or
 * closes (0: never, -1: forever). Ends when the server closes the connection and no retry
 * is left; fails the job when connecting fails and no retry is left. */
sl_stream *sl_socket_text_stream(sl_env *env, const char *host, int port, const char *delimiter,
                                 int max_retry);
/* Lines of a text file, or of every regular file in a directory (files spread over the
 * subtasks), schema "line:str". Bounded. A path that does not exist fails the job. */
sl_stream *sl_read_text_file(sl_env *env, const char *path);
/* A user-defined source. parallel: runs with the operator's parallelism (else 1);
 * bounded: the source ends by itself (AUTOMATIC mode picks BATCH only if all are). */
sl_stream *sl_add_source(sl_env *env, const char *name, const char *schema, const sl_source_fn *fn,
                         bool parallel, bool bounded);

/* ---------------------------------------------------------------------------------------
 * Transformations. Function structs are copied; their user pointers are borrowed and must
 * outlive sl_execute().
 * ------------------------------------------------------------------------------------- */

sl_stream *sl_map(sl_stream *in, const char *out_schema, const sl_map_fn *fn);
sl_stream *sl_flat_map(sl_stream *in, const char *out_schema, const sl_flat_map_fn *fn);
sl_stream *sl_filter(sl_stream *in, const sl_filter_fn *fn);
/* A stream of several inputs with the same schema, merged (Flink's union). n >= 2. */
sl_stream *sl_union(sl_stream *const *inputs, size_t n);
/* Redistributes round-robin to all downstream subtasks. */
sl_stream *sl_rebalance(sl_stream *in);

/* Partitions by the field's value: the result is a keyed stream. */
sl_stream *sl_key_by(sl_stream *in, int field);
/* Partitions by a key computed by fn, of schema key_schema. */
sl_stream *sl_key_by_fn(sl_stream *in, const char *key_schema, const sl_key_fn *fn);

/* Rolling aggregations on a keyed stream, like Flink's. sum/min/max update one field and
 * keep the other fields of the key's first row; min_by/max_by emit the whole row holding
 * the minimum/maximum (the first one on ties). sum takes i64 or f64 fields; min/max and the
 * _by variants take i64, f64 and str. In STREAMING mode every input row emits the updated
 * row; in BATCH mode only the final row per key is emitted when the input ends. */
sl_stream *sl_sum(sl_stream *keyed, int field);
sl_stream *sl_min(sl_stream *keyed, int field);
sl_stream *sl_max(sl_stream *keyed, int field);
sl_stream *sl_min_by(sl_stream *keyed, int field);
sl_stream *sl_max_by(sl_stream *keyed, int field);
sl_stream *sl_reduce(sl_stream *keyed, const sl_reduce_fn *fn);
/* A process function; on a keyed stream it may use keyed state. */
sl_stream *sl_process(sl_stream *in, const char *out_schema, const sl_process_fn *fn);

/* Makes a broadcast stream that carries broadcast state name (map key_schema ->
 * value_schema), then connects a keyed or plain stream with it. */
sl_stream *sl_broadcast(sl_stream *in, const char *state_name, const char *key_schema,
                        const char *value_schema);
sl_stream *sl_connect_broadcast(sl_stream *in, sl_stream *broadcast, const char *out_schema,
                                const sl_broadcast_process_fn *fn);

/* Operator settings; each returns s (NULL-safe) so calls can be chained. */
sl_stream *sl_set_parallelism(sl_stream *s, int parallelism);
sl_stream *sl_set_name(sl_stream *s, const char *name);
/* A stable id under which the operator's state is kept in checkpoints. */
sl_stream *sl_set_uid(sl_stream *s, const char *uid);

/* ---------------------------------------------------------------------------------------
 * Sinks
 * ------------------------------------------------------------------------------------- */

/* Prints each row to stdout, one per line, formatted by sl_row_format(); when the sink
 * runs with parallelism above 1 each line starts with the 1-based subtask index, "3> ".
 * Lines are written whole (never interleaved). */
sl_stream *sl_print(sl_stream *in);
/* The same to stderr. */
sl_stream *sl_print_stderr(sl_stream *in);
/* Writes each row as a line to path (parallelism 1), or, with parallelism above 1, to
 * path/part-<subtask> with path created as a directory. Fails the job if it cannot write. */
sl_stream *sl_write_text(sl_stream *in, const char *path);
sl_stream *sl_add_sink(sl_stream *in, const char *name, const sl_sink_fn *fn);

/* ---------------------------------------------------------------------------------------
 * Job programs
 *
 * SL_JOB(fn) defines main() for a job program: it creates the environment from argv,
 * calls fn(env, job_argc, job_argv), prints the error to stderr if there is one and exits
 * 0 on success, 130 when cancelled by SIGINT, 143 by SIGTERM, 2 on a usage or config
 * error, 1 on any other failure. fn returns what sl_execute() returned (or its own error).
 * ------------------------------------------------------------------------------------- */

typedef int (*sl_job_fn)(sl_env *env, int argc, char **argv);
/* The main() behind SL_JOB; usable directly. */
int sl_job_main(int argc, char **argv, sl_job_fn job);

#define SL_JOB(fn)                                                                                 \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        return sl_job_main(argc, argv, (fn));                                                      \
    }

#ifdef __cplusplus
}
#endif
#endif /* SLUICE_H */

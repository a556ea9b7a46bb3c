/*
 * state.h - managed state: the keyed state backend interface, the heap backend, operator
 * state (list and broadcast), and the handles behind sluice.h's sl_state functions.
 *
 * Layering: the runtime creates one keyed backend per keyed operator subtask and one
 * operator state store per operator subtask, sets the current key before each call into
 * user code, and calls sl__state_end_call() after it. User code reaches state only through
 * sl_state handles (sluice.h). Values are stored in the serialized row format (core/row.h);
 * rows read from state point into state memory until the next write.
 *
 * The backend interface (sl__backend_ops in state_int.h) is what every backend implements:
 * heap (heap/heap_backend.c) and RocksDB (rocksdb/rocksdb_backend.c), chosen by
 * state.backend.type through sl__keyed_backend_create. Addressing is by (state, key group,
 * key bytes, namespace bytes, user key bytes). Snapshots are written per key group in a
 * canonical, backend-independent form so a checkpoint taken on one backend restores on
 * another and at another parallelism.
 *
 * Threads: a backend, its handles and an operator state store belong to one subtask thread.
 */
#ifndef SL_STATE_STATE_H
#define SL_STATE_STATE_H

#include "core/row.h"
#include "sluice.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer (used for snapshots). */
typedef struct sl__buf {
    uint8_t *data;
    size_t len, cap;
} sl__buf;
int sl__buf_reserve(sl__buf *b, size_t extra); /* 0 or SL_ENOMEM */
int sl__buf_append(sl__buf *b, const void *p, size_t n);
void sl__buf_free(sl__buf *b);

typedef struct sl__keyed_backend sl__keyed_backend;
typedef struct sl__config sl__config;

/* A current key: serialized key row bytes and its hash (sl__hash of the bytes). hint: where
 * a prefetch found the key's entry (sl__keyed_backend_prefetch's entry_hints), or 0; only
 * a hint, which the backend checks. */
typedef struct sl__key {
    const uint8_t *bytes;
    size_t len;
    uint64_t hash;
    int key_group;
    uint32_t hint;
} sl__key;

/* ---- Keyed backend ---------------------------------------------------------------- */

/* Creates the keyed state backend of one keyed operator subtask, as configured by
 * state.backend.type (c NULL: the default, hashmap): the heap backend, or a RocksDB
 * backend (rocksdb/rocksdb_backend.h) with its own database in a new working directory
 * under state.backend.rocksdb.localdir and the memory budget of the
 * state.backend.rocksdb.memory.* keys. It holds key groups [kg_start, kg_end) of
 * max_parallelism; key_schema describes the key bytes (copied; may be NULL). op_uid and
 * subtask name the working directory (op_uid may be NULL; other characters than letters,
 * digits, '.', '-' and '_' are replaced). Task thread. Returns the backend, to be freed
 * with sl__keyed_backend_destroy, or NULL with a message in err: an invalid range, out of
 * memory, or (RocksDB) a working directory that cannot be created or a database that
 * cannot be opened, naming the directory and RocksDB's reason. */
sl__keyed_backend *sl__keyed_backend_create(const sl__config *c, const char *op_uid, int subtask,
                                            int max_parallelism, int kg_start, int kg_end,
                                            const sl__schema *key_schema, char *err, size_t cap);

/* Creates the heap backend for key groups [kg_start, kg_end) of max_parallelism. NULL on
 * out of memory. key_schema describes the key bytes (for sl_ctx_current_key). */
sl__keyed_backend *sl__heap_backend_create(int max_parallelism, int kg_start, int kg_end,
                                           const sl__schema *key_schema);
/* Frees a backend of any kind with its registered handles; for RocksDB also closes the
 * database and removes its working directory. Every snapshot must have been released.
 * NULL is a no-op. */
void sl__keyed_backend_destroy(sl__keyed_backend *be);

/* Sets the key that state handles of this backend are scoped to until the next call. The
 * bytes are borrowed until then. key->key_group must be in the backend's range. Views read
 * through the handles before (rows, list and map elements) may end here when no iterator
 * is open (RocksDB backend: its view arena is reset). */
void sl__keyed_backend_set_key(sl__keyed_backend *be, const sl__key *key);
/* The same, the key given by its fields: the per-record path passes them in registers. A
 * key struct the caller has just written field by field and the callee copies whole is
 * read back in 16-byte loads that each span two of those stores still in flight: the load
 * waits for both to reach the cache (a failed store-to-load forward), a stall per record. */
void sl__keyed_backend_set_key_parts(sl__keyed_backend *be, const uint8_t *bytes, size_t len,
                                     uint64_t hash, int key_group);
const sl__key *sl__keyed_backend_current_key(const sl__keyed_backend *be);
/* A hint that keys (given by their hashes, sl__key.hash) are coming soon: starts loading
 * the memory their lookups in the registered states will read, so that it is in cache by
 * then. slot_hashes[0, nslot) are keys some records ahead: the table slots their lookups
 * start at are fetched. entry_hashes[0, nentry) are nearer keys whose slots were fetched
 * before (and have arrived by now): the entries those slots point to are fetched, and
 * entry_hints[0, nentry) (not NULL when nentry > 0) set to where each was found in the
 * first registered state, or 0 (for sl__key.hint, which the value_add_last_run of that
 * state uses). Both stages in one call, as a keyed input issues them once per run of
 * records. Changes nothing in the state; a hash outside the backend's key groups and a
 * backend without the hint are ignored (their hints are 0). */
void sl__keyed_backend_prefetch(sl__keyed_backend *be, const uint64_t *slot_hashes, size_t nslot,
                                const uint64_t *entry_hashes, size_t nentry, uint32_t *entry_hints);

/* Registers a keyed state (see sl_keyed_state in sluice.h). ctx is passed to reduce and
 * aggregate callbacks and used for sl_fail() messages. Returns NULL after sl_fail(). */
sl_state *sl__keyed_backend_state(sl__keyed_backend *be, sl_ctx *ctx, const sl_state_desc *d);

/* Calls fn for every (key, state has a value) of state st in key group order; the key
 * bytes are valid during the call. Only keys with a value in st's current namespace are
 * visited. fn may call sl__keyed_backend_set_key and read st.
 * Writing to st during the walk is not allowed. Returns 0 or the first non-zero from fn
 * (or, RocksDB, SL_EIO after sl_fail when reading the database fails). */
int sl__keyed_backend_for_each_key(sl__keyed_backend *be, sl_state *st,
                                   int (*fn)(void *arg, const sl__key *key), void *arg);

/* Number of entries (keys x namespaces) held for all states; for tests and metrics. The
 * heap backend counts as it goes; the RocksDB backend scans every column family. */
size_t sl__keyed_backend_size(const sl__keyed_backend *be);

/* Canonical snapshot of one key group, appended to out: every registered state's entries of
 * that key group, as
 *   varint nstates, then per state: name (varint len + bytes), kind byte, varint nentries,
 *   then per entry: key, namespace, payload (each varint len + bytes) where payload is the
 *   serialized value (VALUE/REDUCING/AGGREGATING), the list elements (varint count, then
 *   each varint len + row) or the map (varint count, then per pair ukey and value, each
 *   varint len + bytes).
 * Entries appear in the backend's order (heap: slots; RocksDB: key order); restore accepts
 * any order. Returns 0 or SL_ENOMEM (SL_EINVAL when key_group is outside the backend's
 * range; RocksDB: SL_EIO when reading fails, logged with the directory and RocksDB's
 * message). */
int sl__keyed_backend_snapshot_kg(sl__keyed_backend *be, int key_group, sl__buf *out);
/* Loads one key group's section written by snapshot_kg into this backend. States not yet
 * registered are kept by name and attached when registered (with kind checked then).
 * Returns 0, SL_EFORMAT with a message in err when the bytes are malformed, or SL_ENOMEM.
 * (SL_EINVAL with err when key_group is outside the backend's range; RocksDB: SL_EIO with
 * err when writing fails.) SL_EFORMAT leaves the backend unchanged; after SL_ENOMEM or
 * SL_EIO the key group may be partly loaded. */
int sl__keyed_backend_restore_kg(sl__keyed_backend *be, int key_group, const uint8_t *p, size_t len,
                                 char *err, size_t cap);

/* ---- Asynchronous snapshots (copy-on-write) ---------------------------------------------
 *
 * A checkpoint must not stop the task for longer than it takes to mark a version. begin()
 * is the synchronous part, on the task thread: it freezes what every key group holds now,
 * at the cost of copying each table's slot array (heap; no per-entry work, no
 * serialization) or of taking a RocksDB snapshot (RocksDB: a sequence number).
 * The task thread then goes on reading and writing; a write to an entry that a live
 * snapshot still references copies the entry first, and entries a snapshot references are
 * freed only once no snapshot needs them. write_kg() runs on another thread, concurrently
 * with the task thread, and serializes key group kg as it was at begin(). Several
 * snapshots may be live at once (concurrent checkpoints).
 */
typedef struct sl__keyed_snapshot sl__keyed_snapshot;

/* Task thread. Returns NULL on out of memory (the checkpoint is then declined). */
sl__keyed_snapshot *sl__keyed_backend_snapshot_begin(sl__keyed_backend *be);
/* Any one thread at a time per snapshot. Appends key group kg (in the backend's range) in
 * the canonical format of sl__keyed_backend_snapshot_kg. Returns 0, SL_EINVAL or SL_ENOMEM
 * (RocksDB: or SL_EIO, logged with the directory and RocksDB's message). */
int sl__keyed_snapshot_write_kg(sl__keyed_snapshot *s, int kg, sl__buf *out);
/* The thread that writes s, after it wrote key group kg for the last time: s will not read
 * kg again, so the task thread may change kg's entries in place instead of copying them for
 * s (heap backend; a no-op for others). Optional: without it, write_kg may be called for a
 * key group any number of times and always writes it as it was at begin(). */
void sl__keyed_snapshot_kg_written(sl__keyed_snapshot *s, int kg);
/* Any thread. Memory kept only for this snapshot is reclaimed by the task thread at a later
 * backend call, or by sl__keyed_backend_destroy (which must come after every release). */
void sl__keyed_snapshot_release(sl__keyed_snapshot *s);

/* For the runtime's sum aggregation, on its VALUE state st of the aggregation's schema: when
 * the current scope holds a row whose field f is not null, adds delta (not null, of f's
 * type: i64, wrapping, or f64) to that field in place, reads the updated row into out (as
 * sl_value_get: views into state memory) and returns 1. Returns 0 and leaves the stored
 * row as it was (out may have been overwritten) when the scope holds no row, or f is null in
 * it, or the backend has no in-place update: the caller then reads and updates the row as
 * usual. <0 on a state error (after sl_fail). Task thread. */
int sl__value_add(sl_state *st, int f, const sl_value *delta, sl_value *out);
/* A sum's add: delta (not null, of v's type, i64 or f64) to v, wrapping for i64. */
static inline void sl__add_number(sl_value *v, const sl_value *delta)
{
    if (v->type == SL_I64)
        v->u.i64 = (int64_t)((uint64_t)v->u.i64 + (uint64_t)delta->u.i64);
    else
        v->u.f64 += delta->u.f64;
}
/* sl__value_add for a schema of at most 8 fields whose last field is the one summed, when
 * the caller knows the other fields (a (key, number) pair keyed by the key): adds delta to
 * that field where the stored row ends and sets *sum to the new value, without reading the
 * rest of the row. The same returns: 1, 0 (also when the backend cannot add in place; the
 * caller then goes the usual way), <0. sl__value_add_last_fn_of gives st's function, which
 * the caller keeps: one call per record. */
typedef int (*sl__value_add_last_fn)(sl_state *st, const sl_value *delta, sl_value *sum);
sl__value_add_last_fn sl__value_add_last_fn_of(const sl_state *st);
/* sl__value_add_last for a run of keys in turn, each given, none made current (keys[i].hash
 * and key_group as sl__keyed_backend_set_key_parts takes them), in a state whose rows are
 * (key, number) pairs: the key row's bytes followed by the number's 8 (a sum over pairs
 * keyed by their first field). Adds deltas[i] to the number of keys[i]'s row in st's
 * namespace, or stores the row (keys[i], deltas[i]) when there is none, and sets
 * sums[i * stride] to the new number; stops at a key whose number is null (or whose row it
 * cannot store here) and returns how many keys it summed (0..n). That key it makes current
 * (sl__keyed_backend_set_key_parts), so that the caller goes on the usual way without a
 * lookup more (the keys are borrowed as set_key_parts borrows them). A batch of keys per
 * call, so that a call, and making a key current, is not what each record of a keyed sum
 * costs. NULL from sl__value_add_last_run_fn_of when the backend has none. Task thread. */
typedef size_t (*sl__value_add_last_run_fn)(sl_state *st, const sl__key *keys,
                                            const sl_value *deltas, sl_value *sums, size_t stride,
                                            size_t n);
sl__value_add_last_run_fn sl__value_add_last_run_fn_of(const sl_state *st);
/* ---- Snapshots made of files (RocksDB, state.backend.incremental) ------------------------
 *
 * An incremental RocksDB snapshot is a RocksDB checkpoint: a directory in the backend's
 * working directory with hard links to the database's SST files (immutable) and copies of
 * its small descriptor files (MANIFEST, CURRENT, OPTIONS, write-ahead logs). begin() makes
 * it on the task thread after flushing the memtables. Checkpoint storage then stores only
 * the SST files no earlier checkpoint stored in the job's shared directory, and the rest in
 * the checkpoint's own; on restore it puts them into a fresh directory that the backend
 * adopts (sl__rocksdb_backend_adopt). */
typedef struct sl__snapshot_file {
    const char *name; /* in the snapshot's directory */
    uint64_t size;
    bool immutable; /* an SST file: never changes, so checkpoints may share one stored copy */
    /* immutable: the shared name an earlier checkpoint of this backend stored it under (it
     * may be gone since: storage checks), or NULL */
    const char *uploaded;
} sl__snapshot_file;

/* True when s is a snapshot made of files; *dir and the files stay valid until s is
 * released, and write_kg is not used. False for snapshots written by key group. */
bool sl__keyed_snapshot_files(sl__keyed_snapshot *s, const char **dir,
                              const sl__snapshot_file **files, size_t *n);
/* Any thread (one at a time per snapshot): records that immutable file name of s is now
 * stored under shared name shared, so s itself and later snapshots of the same backend
 * offer it as uploaded. */
void sl__keyed_snapshot_set_uploaded(sl__keyed_snapshot *s, const char *name, const char *shared);
/* Why the last sl__keyed_backend_snapshot_begin of be returned NULL ("out of memory" unless
 * the backend says more, e.g. a RocksDB error naming the directory). Task thread. */
const char *sl__keyed_backend_snapshot_error(const sl__keyed_backend *be);

/* ---- Operator state -------------------------------------------------------------------*/

typedef struct sl__operator_store sl__operator_store;

sl__operator_store *sl__operator_store_create(void);
void sl__operator_store_destroy(sl__operator_store *os);

/* Registers (or returns) list state name; see sl_operator_list_state. */
sl_state *sl__operator_list_state(sl__operator_store *os, sl_ctx *ctx, const char *name,
                                  const char *schema, sl_redistribution mode);
/* Registers broadcast state (a map key_schema -> value_schema) and returns it, or returns
 * the one registered under name. */
sl_state *sl__operator_broadcast_state(sl__operator_store *os, sl_ctx *ctx, const char *name,
                                       const char *key_schema, const char *value_schema);
/* Finds registered state by name; NULL if none. */
sl_state *sl__operator_store_find(sl__operator_store *os, const char *name);
/* Makes writes through st fail with SL_EPERM (broadcast state on the element side). */
void sl__state_set_readonly(sl_state *st, bool readonly);

/* Snapshot of operator state: every list state's elements (varint len + row each) by name
 * and mode, and every broadcast state's pairs. Format:
 *   varint nstates, then per state: name, kind byte (LIST or MAP), mode byte, varint count,
 *   then elements (varint len + bytes) or pairs (key then value, varint len + bytes). */
int sl__operator_store_snapshot(sl__operator_store *os, sl__buf *out);

/* Redistribution on restore: given the snapshots of the old_p subtasks of one operator,
 * builds the state of new subtask new_index of new_p into os: SPLIT_EVEN list states
 * concatenate all old lists in subtask order and hand contiguous, nearly equal ranges to
 * the new subtasks (the first ones get one more when it does not divide); UNION list states
 * give every new subtask all elements; broadcast states are taken from old subtask 0
 * (they are equal on every subtask). Returns 0, SL_EFORMAT (with err) or SL_ENOMEM.
 * (SL_EINVAL with err on invalid arguments.) After SL_ENOMEM os may be partly restored. */
int sl__operator_store_restore(sl__operator_store *os, const sl__buf *old_snapshots, int old_p,
                               int new_index, int new_p, char *err, size_t cap);

/* ---- Per-call bookkeeping --------------------------------------------------------------*/

typedef struct sl__iter_block sl__iter_block;

/* A pool owned by a backend or operator store: iterators are recycled, so steady use
 * allocates nothing; every one still open is released by sl__iter_pool_release_all (at the
 * end of each call into user code). */
typedef struct sl__iter_pool {
    sl__iter_block *blocks;
    sl_iter *free;
    size_t open;
} sl__iter_pool;

/* The first member of every keyed backend (sl__keyed_backend, state_int.h) and of the
 * operator store: what sl__state_end_call has to look at, here so that its usual case
 * (nothing to release) is a test inline in the caller. Task thread. */
typedef struct sl__state_head {
    sl__iter_pool iters; /* the iterators of the handles */
    bool views; /* keyed backend: it handed out views that its release_views drops (RocksDB) */
} sl__state_head;

/* sl__state_end_call when there is something to release. */
void sl__state_end_call_slow(sl__keyed_backend *be, sl__operator_store *os);

/* Called by the runtime after each call into user code: releases open iterators and the
 * keyed backend's views. Either argument may be NULL. */
static inline void sl__state_end_call(sl__keyed_backend *be, sl__operator_store *os)
{
    const sl__state_head *b = (const sl__state_head *)(void *)be;
    const sl__state_head *o = (const sl__state_head *)(void *)os;
    if (__builtin_expect((b && (b->iters.open || b->views)) || (o && o->iters.open), 0))
        sl__state_end_call_slow(be, os);
}

#endif

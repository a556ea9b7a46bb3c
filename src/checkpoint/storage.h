/*
 * storage.h - checkpoint storage: state files and checkpoint metadata, in a local directory
 * (file:// URIs and plain paths) or in memory (for development: nothing survives the
 * process), with Flink's layout and retention.
 *
 * Layout under the checkpoint directory (state.checkpoints.dir):
 *   <job-id>/chk-<N>/_metadata      written last, by atomic rename, after every state file
 *                                   and the metadata itself were fsynced
 *   <job-id>/chk-<N>/<state files>  one per operator subtask: keyed state by key group and
 *                                   operator state
 *   <job-id>/shared/                files referenced by several (incremental) checkpoints
 *   <job-id>/taskowned/             files owned by tasks (e.g. two-phase-commit sinks)
 * Every file starts with a magic number and a format version and ends with a checksum; a
 * torn or corrupt file is detected and named, never silently loaded. docs/checkpoint-format.md
 * documents the bytes.
 *
 * Threads: a storage object is shared by the coordinator and the asynchronous snapshot
 * writers; every function here is thread-safe unless it says otherwise. File operations go
 * through a table (sl__file_ops) so tests can fail or tear writes and fill the disk.
 */
#ifndef SL_CHECKPOINT_STORAGE_H
#define SL_CHECKPOINT_STORAGE_H

#include "state/state.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* ---- metadata -------------------------------------------------------------------------- */

/* A file of an incremental keyed snapshot (a RocksDB checkpoint, see state.h). */
typedef struct sl__db_file {
    char *name; /* its name in the database directory ("000012.sst", "MANIFEST-000005") */
    char *path; /* where it is stored, relative to chk-<N>: "../shared/<name>" or "<name>" */
    uint64_t size;
    uint64_t checksum; /* XXH3-64 of its bytes */
    bool stored;       /* stored by this checkpoint, not referenced again (not in _metadata) */
} sl__db_file;

/* Where one operator subtask's state is: a file in the checkpoint (or shared/) directory,
 * with the byte range of each key group's section and of the operator state section, and
 * for an incremental keyed snapshot the database files (the key-group sections are then
 * empty). */
typedef struct sl__subtask_state {
    int subtask;
    char *file;           /* path relative to the chk-<N> directory ("" when no state) */
    uint64_t file_size;   /* bytes, whole file */
    uint64_t checksum;    /* of the whole file, as in its trailer */
    int kg_start, kg_end; /* key-group range [start, end) of keyed state; equal when none */
    uint64_t *kg_offset;  /* kg_end - kg_start + 1 offsets: section i is [off[i], off[i+1]) */
    uint64_t op_offset, op_length; /* operator state section; length 0 when none */
    int nfiles;                    /* database files; 0 when keyed state is by key group */
    sl__db_file *files;
    /* The subtask had processed all its input (its task had ended) when the checkpoint was
     * taken. Its keyed state is not kept (the key-group sections are empty): restored, it
     * stays finished and receives no record (see sl__op_restore). */
    bool finished;
} sl__subtask_state;

typedef struct sl__operator_state_meta {
    char *uid;
    char *name;
    int parallelism;
    int max_parallelism;
    sl__subtask_state *subtasks; /* parallelism entries, by subtask index */
} sl__operator_state_meta;

typedef struct sl__checkpoint_meta {
    int64_t id;
    char *job_id; /* 32 hex digits */
    char *job_name;
    int64_t timestamp_ms; /* when triggered, Unix epoch */
    int64_t duration_ms;  /* trigger to complete */
    bool savepoint;
    int format_version; /* of the _metadata it was loaded from; 0 for one not yet written */
    int noperators;
    sl__operator_state_meta *operators;
} sl__checkpoint_meta;

void sl__checkpoint_meta_free(sl__checkpoint_meta *m); /* NULL is a no-op; frees m too */

/* The operator with this uid in m, or NULL. */
const sl__operator_state_meta *sl__checkpoint_meta_find(const sl__checkpoint_meta *m,
                                                        const char *uid);
/* Whether every subtask of o had finished: the operator had fully finished. */
bool sl__operator_fully_finished(const sl__operator_state_meta *o);
/* Whether subtask `subtask` of `parallelism` of an operator restored from o starts finished:
 * the operator had fully finished (at any parallelism), or, at o's parallelism, that same
 * subtask had finished. A subtask of a partially finished operator restored at another
 * parallelism runs (the finished subtasks' key groups are empty, as they had no input left). */
bool sl__restores_finished(const sl__operator_state_meta *o, int subtask, int parallelism);

/* ---- storage ----------------------------------------------------------------------------- */

typedef struct sl__storage sl__storage;

/* File operations, replaceable by tests (fault injection). Same contracts as POSIX's
 * openat, write, fsync, close, renameat (within one directory) and mkdirat, and Linux's
 * sync_file_range (sync_range): dirfd is
 * AT_FDCWD or a directory opened through openat, and name is relative to it. A checkpoint
 * is written and completed through its directory's descriptor, so it completes (or is
 * removed) in that directory even if the directory is moved meanwhile. */
typedef struct sl__file_ops {
    int (*openat)(int dirfd, const char *name, int flags, mode_t mode);
    ssize_t (*write)(int fd, const void *p, size_t n);
    int (*fsync)(int fd);
    int (*sync_range)(int fd, off_t off, off_t n, unsigned flags);
    int (*close)(int fd);
    int (*renameat)(int dirfd, const char *from, const char *to);
    int (*mkdirat)(int dirfd, const char *name, mode_t mode);
} sl__file_ops;
/* The table in use (process-wide); tests swap it and restore the default. */
extern const sl__file_ops *sl__file_ops_current;
extern const sl__file_ops sl__file_ops_posix;

/* Opens storage for job_id: in directory dir (a path or file:// URI, created if missing)
 * or, with dir NULL, in memory. num_retained completed checkpoints are kept. Returns NULL
 * with a message naming the directory and the OS error (e.g. not writable) in err. */
sl__storage *sl__storage_create(const char *dir, const char *job_id, int num_retained, char *err,
                                size_t cap);
/* Frees the object; files are left as the retention policy left them. */
void sl__storage_destroy(sl__storage *st);
/* The job's directory (<dir>/<job-id>), or "memory" for in-memory storage. */
const char *sl__storage_job_dir(const sl__storage *st);
/* The job id it was created for. */
const char *sl__storage_job_id(const sl__storage *st);

/* Writing one operator subtask's state file for checkpoint id; used by one thread at a time
 * per writer, any number of writers in parallel. Sections must be added in this order:
 * key groups in increasing order, then the operator state. Open returns NULL with a message
 * when id was aborted or is not above the latest completed checkpoint (also one found on
 * disk at creation). With no key-group range and no operator state no file is written and
 * the state's file is "". */
typedef struct sl__state_writer sl__state_writer;
sl__state_writer *sl__state_writer_open(sl__storage *st, int64_t id, const char *uid, int subtask,
                                        int kg_start, int kg_end, char *err, size_t cap);
int sl__state_writer_add_kg(sl__state_writer *w, int kg, const uint8_t *p, size_t n);
int sl__state_writer_set_operator(sl__state_writer *w, const uint8_t *p, size_t n);
/* Writes the trailer, fsyncs and closes; fills *out (owned by the caller: free with
 * sl__subtask_state_free). On any failure the file is removed and a message naming the file
 * and the OS error (ENOSPC: "no space left on device") is in err; SL_ECANCELED when the
 * checkpoint was aborted or subsumed meanwhile. Frees w either way. */
int sl__state_writer_close(sl__state_writer *w, sl__subtask_state *out, char *err, size_t cap);
void sl__state_writer_abort(sl__state_writer *w);
void sl__subtask_state_free(sl__subtask_state *s); /* frees the members, not s */

/* Incremental keyed snapshots. Stores the files of snap (a snapshot made of files, see
 * sl__keyed_snapshot_files) of operator uid's subtask for checkpoint id and lists them in
 * out->files: an immutable file that an earlier checkpoint stored in <job>/shared/ and that
 * storage still holds is referenced again (sl__keyed_snapshot_set_uploaded remembers the
 * name), any other immutable file is copied there, and the rest into chk-<id>/; copies are
 * checksummed and fsynced. A shared file is referenced by every checkpoint that lists it,
 * from now until that checkpoint is aborted or deleted by retention, and deleted when no
 * checkpoint references it any more; never before. Any thread. 0, or an error with a
 * message naming the file and the OS error (SL_ECANCELED when id was aborted or subsumed);
 * the references taken go with id's abort. out->files is freed with the state. */
int sl__storage_put_db_files(sl__storage *st, int64_t id, const char *uid, int subtask,
                             sl__keyed_snapshot *snap, sl__subtask_state *out, char *err,
                             size_t cap);
/* Puts the database files of s (from checkpoint chk, or id for storage st as for
 * sl__state_reader_open) into the existing directory dir, under their database names:
 * shared immutable files are hard-linked when the file system allows it, others copied, so
 * nothing under the checkpoint is ever opened for writing. Every file's size and checksum
 * are checked against the metadata. 0, or SL_EFORMAT (a missing or corrupt file, named),
 * SL_EIO, SL_ENOMEM, with a message. */
int sl__storage_fetch_db_files(sl__storage *st, const char *chk, int64_t id,
                               const sl__subtask_state *s, const char *dir, char *err, size_t cap);
/* Reads every database file of s in checkpoint directory chk (a path, as for
 * sl__checkpoint_load) and checks its size and checksum against the metadata; nothing is
 * written. 0, or SL_EFORMAT (missing or corrupt, named), SL_EIO, SL_ENOMEM with a message. */
int sl__storage_check_db_files(const char *chk, const sl__subtask_state *s, char *err, size_t cap);
/* How many checkpoints (completed or in progress) reference shared file name (in shared/);
 * 0 when storage does not hold it. For tests. */
int sl__storage_shared_refs(sl__storage *st, const char *name);

/* Completes checkpoint m->id: writes _metadata (temp file, fsync, rename, fsync of the
 * directory), then drops completed checkpoints beyond num_retained, oldest first, from the
 * retained list and has the storage's deleting thread remove their directories
 * (sl__storage_settle waits for that). Returns 0, or an error with a message; on error the
 * checkpoint is not complete and its directory is removed. SL_EINVAL (nothing removed) when m fails
 * the checks of sl__checkpoint_load or m->id is not above the latest completed id. A savepoint
 * (m->savepoint) is never deleted by retention or discard_all. */
int sl__storage_complete(sl__storage *st, const sl__checkpoint_meta *m, char *err, size_t cap);
/* Discards checkpoint id (aborted or expired): lets no writer write more of it and has what
 * was written removed (in the background: sl__storage_settle). */
void sl__storage_abort(sl__storage *st, int64_t id);
/* Ids of the completed, retained checkpoints, newest first; returns the count (<= cap). */
int sl__storage_retained(const sl__storage *st, int64_t *ids, int cap);
/* Deletes every retained checkpoint of this job (DELETE_ON_CANCELLATION on cancel, or
 * NO_EXTERNALIZED_CHECKPOINTS at the end of the job), and the job directory if empty. */
void sl__storage_discard_all(sl__storage *st);
/* Waits until everything handed to the storage's deleting thread is deleted: checkpoints
 * subsumed by sl__storage_complete, aborted or failed ones, discarded state files. Removing
 * a checkpoint's _metadata is not left to it: that happens before the call that dooms the
 * checkpoint returns. discard_all and destroy wait for the thread too. */
void sl__storage_settle(sl__storage *st);
/* For tests: with hold, the deleting thread takes nothing more off its queue (and settle
 * does not wait for what is queued) until called again without; destroy deletes what is
 * queued regardless. */
void sl__storage_hold_deletions(sl__storage *st, bool hold);

/* ---- reading ------------------------------------------------------------------------------ */

/* Loads and validates checkpoint metadata from path: a chk-<N> directory, its _metadata
 * file, or for in-memory storage the id of a retained checkpoint of st (path NULL, id >= 0).
 * Every field is checked; a bad magic, version, checksum or truncation gives SL_EFORMAT with
 * a message naming the file; a path that is not a checkpoint gives SL_ENOTFOUND saying so. */
int sl__checkpoint_load(sl__storage *st, const char *path, int64_t id, sl__checkpoint_meta **out,
                        char *err, size_t cap);
/* A state file's contents, checked against its trailer checksum and the size and checksum
 * recorded in the metadata. chk is what was passed to sl__checkpoint_load (or NULL with id
 * for memory). The bytes are owned by the reader and stay valid until it is freed. */
typedef struct sl__state_reader sl__state_reader;
int sl__state_reader_open(sl__storage *st, const char *chk, int64_t id, const sl__subtask_state *s,
                          sl__state_reader **out, char *err, size_t cap);
/* The section of key group kg (kg in the subtask's range), or of operator state. */
int sl__state_reader_kg(sl__state_reader *r, int kg, const uint8_t **p, size_t *n);
int sl__state_reader_operator(sl__state_reader *r, const uint8_t **p, size_t *n);
void sl__state_reader_free(sl__state_reader *r);

/* Writes m as JSON (for `sluice checkpoint inspect`): job, id, timestamp, duration, and per
 * operator uid: name, parallelism, max parallelism, per subtask the file, size, checksum,
 * key-group range and section sizes. */
int sl__checkpoint_meta_json(const sl__checkpoint_meta *m, const char *chk_dir, FILE *out);

#endif

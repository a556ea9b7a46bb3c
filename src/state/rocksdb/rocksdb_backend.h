/*
 * rocksdb_backend.h - the RocksDB keyed state backend (state.backend.type: rocksdb): its
 * options, creation, and what tests and metrics may ask of it. Everything else goes through
 * the generic keyed backend interface of state.h (sl__keyed_backend_create picks this
 * backend by configuration).
 *
 * One RocksDB instance per keyed operator subtask, in a working directory of its own that
 * is created under the local directory and removed by sl__keyed_backend_destroy:
 *
 *   <localdir>/sluice-<op uid>-<subtask>-<random>/db/   the database
 *
 * beside db/: snap-<N>/ (incremental snapshots, until released) and restore-XXXXXX/
 * (files being restored). See rocksdb_backend.c for the key
 * layout, the memory budget and how errors are translated.
 *
 * Threads: as every backend, the task thread only; asynchronous snapshots as in state.h.
 */
#ifndef SL_STATE_ROCKSDB_BACKEND_H
#define SL_STATE_ROCKSDB_BACKEND_H

#include "state/state.h"

#include <rocksdb/c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl__rocksdb_options {
    /* Parent of the working directory; created (with its parents) when missing. NULL or
     * empty: $TMPDIR when set and not empty, else /tmp. Borrowed during create. */
    const char *localdir;
    /* Operator uid (or name) and subtask, for the working directory's name; name may be
     * NULL. Borrowed during create. */
    const char *name;
    int subtask;
    /* true: one block cache and one write-buffer budget for every column family of the
     * instance, together memory_size bytes, write_buffer_ratio of it for write buffers.
     * false: RocksDB's own defaults per column family (memory grows with the number of
     * states). */
    bool managed;
    int64_t memory_size;
    double write_buffer_ratio;
    /* Snapshots are RocksDB checkpoints (sl__keyed_snapshot_files in state.h) instead of
     * reads by key group (state.backend.incremental). */
    bool incremental;
} sl__rocksdb_options;

/* Defaults of the configuration keys (docs/config.md): localdir NULL, managed, 64 MiB, a
 * write-buffer ratio of 0.5. */
void sl__rocksdb_options_default(sl__rocksdb_options *o);
/* The state.backend.rocksdb.* keys of c (validated when set, so this cannot fail); name
 * and subtask are left as sl__rocksdb_options_default sets them. localdir points into c. */
void sl__rocksdb_options_from_config(const sl__config *c, sl__rocksdb_options *o);

/* Creates a RocksDB backend for key groups [kg_start, kg_end) of max_parallelism (see
 * sl__keyed_backend_create). Task thread. NULL with a message in err and, when code is not
 * NULL, *code set: SL_EIO when the working directory cannot be created or the database
 * cannot be opened (the message names the directory, the operation and the reason),
 * SL_ENOMEM, or SL_EINVAL for an invalid range. Nothing is left on disk after a failure. */
sl__keyed_backend *sl__rocksdb_backend_create(const sl__rocksdb_options *o, int max_parallelism,
                                              int kg_start, int kg_end,
                                              const sl__schema *key_schema, char *err, size_t cap,
                                              int *code);

/* True when be is a RocksDB backend. */
bool sl__backend_is_rocksdb(const sl__keyed_backend *be);

typedef struct sl__rocksdb_stats {
    const char *workdir;         /* the working directory; lives as long as the backend */
    const char *dbdir;           /* <workdir>/db */
    size_t block_cache_capacity; /* managed: the shared cache's capacity; else 0 */
    size_t block_cache_usage;    /* managed: bytes in that cache now */
    size_t write_buffer_budget;  /* managed: db_write_buffer_size; else 0 */
    size_t write_buffer_size;    /* per column family memtable size */
    size_t memtable_bytes;       /* memory of all memtables now (all column families) */
    size_t column_families;      /* states with a column family */
    size_t live_snapshots;       /* begun and not yet released */
} sl__rocksdb_stats;

/* The options the backend opens its databases with for o (create_if_missing,
 * error_if_exists, the merge operator, and with managed memory the table options and
 * write-buffer sizes): *opts (rocksdb_options_destroy) and, managed, the shared block cache
 * in *cache (rocksdb_cache_destroy after the database is closed; else NULL), with the sizes
 * chosen in sizes' block_cache_capacity, write_buffer_budget and write_buffer_size (the
 * rest zero). For running RocksDB directly with the backend's options (benchmarks).
 * 0, or SL_ESTATE with a message; *opts is set either way. */
int sl__rocksdb_db_options(const sl__rocksdb_options *o, rocksdb_options_t **opts,
                           rocksdb_cache_t **cache, sl__rocksdb_stats *sizes, char *err,
                           size_t cap);

/* Fills *out (be must be a RocksDB backend). Task thread. */
void sl__rocksdb_backend_stats(sl__keyed_backend *be, sl__rocksdb_stats *out);

/* Writes every column family's memtable to SST files and waits. Task thread. 0, or SL_EIO
 * with a message in err naming the directory. (For tests now; a local checkpoint will
 * flush first.) */
int sl__rocksdb_backend_flush(sl__keyed_backend *be, char *err, size_t cap);

/* ---- Restoring from files (incremental checkpoints) --------------------------------------
 *
 * A restore puts the files of a checkpointed database into a fresh directory inside the
 * backend's working directory (scratch_dir), never opening the checkpoint's own files for
 * writing, and the backend adopts it as its database. */

/* Creates an empty directory <workdir>/restore-XXXXXX and returns its path in *out (free
 * with sl__free). 0, SL_ENOMEM or SL_EIO with a message. Task thread. */
int sl__rocksdb_backend_scratch_dir(sl__keyed_backend *be, char **out, char *err, size_t cap);

/* Replaces be's (empty: no state registered or restored yet) database by the one in dir (a
 * directory of the working directory, moved into place), opens every column family, takes
 * the states from their records, and deletes every key group outside [keep_start,
 * keep_end) intersected with be's range (RocksDB delete_range). Registered states then
 * find their entries; registration reads every entry to check it against the declaration
 * unless the state's record in the database shows the same declaration. 0, or
 * SL_EINVAL (not empty), SL_EFORMAT (not a Sluice database), SL_EIO (RocksDB, naming the
 * directory) with a message; after an error be must only be destroyed. Task thread. */
int sl__rocksdb_backend_adopt(sl__keyed_backend *be, const char *dir, int keep_start, int keep_end,
                              char *err, size_t cap);

/* Records that SST file name of be's database is stored under shared name shared (a
 * restored one, so the next incremental checkpoint need not store it again). Any thread. */
void sl__rocksdb_backend_set_uploaded(sl__keyed_backend *be, const char *name, const char *shared);

#endif

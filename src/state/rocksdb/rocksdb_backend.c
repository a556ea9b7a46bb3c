/*
 * rocksdb_backend.c - the RocksDB keyed state backend: state kept in a RocksDB instance (in
 * memory and on local disk) instead of hash tables, for state larger than memory, at some
 * cost in read and write speed. Written against RocksDB's C API (rocksdb/c.h, 7.8).
 *
 * Layout. One database per keyed operator subtask, in a fresh working directory
 * (<localdir>/sluice-<uid>-<subtask>-XXXXXX/db) that sl__keyed_backend_destroy removes.
 * One column family per state, named "state/<name>"; the default column family holds one
 * record per state ("state/<name>" -> kind byte, then the declaration its entries were
 * checked against, once registered) so that the database describes itself: a restore from
 * an incremental checkpoint adopts the files and takes its states from these records. Keys
 * are
 *
 *   key group (2 bytes, big-endian) | varint len(key) | key | varint len(ns) | ns [| user key]
 *
 * with the serialized key row and namespace bytes, lengths as LEB128 varints (core/row.h).
 * A varint length in front makes the encoding prefix-free: the scope prefix of one (key
 * group, key, namespace) is never a prefix of another's, so a map's pairs are exactly the
 * keys that start with their scope's prefix, a key's entries (any namespace) are exactly
 * those that start with "key group | len | key", and a key group is a contiguous range
 * sorted before the next one. (Flink writes the key, then its length only when keys of the
 * type can be ambiguous; a leading length does the same in every case and allows prefix
 * scans by key.) Values are what the heap backend stores: the serialized row for VALUE,
 * REDUCING and AGGREGATING; for LIST the elements (each varint length + row), appended with
 * a merge operator that concatenates, so an append is one blind write; for MAP one RocksDB
 * key per pair (scope prefix + serialized user key -> serialized value). A list or map
 * exists only while it is non-empty, as in the heap backend.
 *
 * Reads. Point reads use rocksdb_get_pinned_cf (no copy inside RocksDB when the block is in
 * the cache) and copy the value into the backend's view arena, so what state.c hands out
 * stays valid whatever RocksDB does next; the arena is reset when a new key is set and at
 * the end of each call into user code, unless an iterator is open (release_views in
 * state_int.h). That is later than sluice.h promises (the next write): a row read before a
 * write to another state keeps working as it does on the heap. Map iteration is a RocksDB
 * iterator over the scope prefix (upper bound: the prefix's successor), each pair copied
 * into the arena. The key of every access is built in a buffer kept per state handle and
 * reused while the key and namespace stay the same: no allocation per access on our side
 * (RocksDB allocates the pinnable slice of a get and the iterator of a map iteration).
 *
 * Writes go to the memtable with the write-ahead log disabled: state is made durable by
 * checkpoints, never by RocksDB's own recovery (a subtask always starts from an empty
 * working directory and a checkpoint).
 *
 * Memory (state.backend.rocksdb.memory.*). When managed (the default), one LRU block cache
 * (data, index and filter blocks) shared by every column family of the instance and one
 * write-buffer budget (db_write_buffer_size, RocksDB's write buffer manager for the
 * instance) split memory_size by write_buffer_ratio. The C API of 7.8 has no
 * rocksdb_write_buffer_manager to charge memtables to the cache, as Flink does; the two are
 * bounded separately instead, each at least 1 MiB. Each column family's memtable is half
 * the write-buffer budget (at most 64 MiB), two at most. Unmanaged: RocksDB's defaults per
 * column family.
 *
 * Snapshots. Incremental ones (state.backend.incremental) flush the memtables and make a
 * RocksDB checkpoint (hard links) in <workdir>/snap-<N>; checkpoint storage stores its files
 * (state.h, "Snapshots made of files"). Full ones: begin() copies the list of states (name,
 * kind, column family) and takes a
 * RocksDB snapshot (a sequence number: no copy, the task goes on at once); write_kg() runs
 * on any thread and reads key group kg of every column family at that snapshot with
 * iterators bounded to the key group, writing exactly the canonical form of
 * sl__keyed_backend_snapshot_kg (state.h), so heap and RocksDB checkpoints restore into
 * each other. Entries come in key order (the heap writes slot order); restore accepts both.
 * restore_kg() validates (sl__kg_validate, shared with the heap backend) and then writes
 * the entries through write batches.
 *
 * Errors. RocksDB reports failures as a message in *errptr. rdb_fail() is the one place
 * that turns one into a Sluice error: SL_EIO for I/O errors, corruption and a full disk,
 * SL_ESTATE for anything else, with a message that names the operation, the state and the
 * database directory ahead of RocksDB's own text (which names the file). On the per-record
 * path the message goes to sl_fail through the handle, and the code back to the user; on
 * restore and registration into the caller's buffer; where there is neither (an
 * asynchronous snapshot, size()) it is logged. Nothing is dropped.
 *
 * Threads: the task thread, except write_kg and release of a snapshot (any thread: they
 * touch only the database, which is thread-safe, the snapshot's own copy of the state list,
 * and an atomic count of live snapshots).
 */
#include "state/rocksdb/rocksdb_backend.h"
#include "core/alloc.h"
#include "core/arena.h"
#include "core/config.h"
#include "core/hash.h"
#include "core/log.h"
#include "state/state_int.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB ((size_t)1 << 20)
#define KG_BYTES 2
#define CF_PREFIX "state/"
/* A restore writes its batch once it holds this many bytes (bounds restore memory). */
#define RESTORE_BATCH_BYTES (4 * MIB)

/* A registered or restored state. */
typedef struct rstate {
    char *name;
    sl_state_kind kind;
    sl_state *handle; /* NULL while only restored, not registered */
    /* The declaration (sl__state_describe) every entry was checked against, from the
     * state's record of an adopted database; NULL when unknown or when entries were
     * restored since without a check: registration then checks every entry. */
    char *signature;
    rocksdb_column_family_handle_t *cf;
    /* By key group - kg_start: written or restored into, so it may hold entries (a restore
     * of a map scope deletes the pairs already there only then). */
    uint8_t *touched;
    /* The last scope's key: prefix (key group | key | namespace), then a user key for maps.
     * The prefix is valid while pvalid and the key and namespace epochs are the same. */
    uint8_t *kbuf;
    size_t kcap, plen;
    bool pvalid;
    uint64_t key_epoch, ns_epoch;
} rstate;

/* A map iteration: a RocksDB iterator bounded to one scope prefix. The read options hold a
 * pointer to the upper bound, which lives in buf; both outlive the iterator. */
typedef struct cursor {
    struct cursor *next; /* all cursors of the backend */
    struct cursor *next_free;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    uint8_t *buf; /* the prefix, then its successor */
    size_t cap, plen;
} cursor;

/* What a snapshot knows of a state. */
typedef struct snap_state {
    const char *name; /* the rstate's: lives until the backend is destroyed */
    sl_state_kind kind;
    rocksdb_column_family_handle_t *cf;
} snap_state;

typedef struct rdb rdb;

/* A snapshot: a RocksDB snapshot read by key group, or (incremental) a RocksDB checkpoint
 * in dir, with its files listed (names owned by the snapshot). */
typedef struct rdb_snapshot {
    sl__keyed_snapshot base;
    rdb *rb;
    const rocksdb_snapshot_t *snap; /* NULL when incremental */
    char *dir;                      /* incremental: <workdir>/snap-<seq>; else NULL */
    sl__snapshot_file *files;
    size_t nfiles;
    size_t nstates;
    snap_state states[];
} rdb_snapshot;

/* An SST file of the database stored in shared checkpoint storage (incremental). */
typedef struct uploaded_file {
    char *name, *shared;
} uploaded_file;

struct rdb {
    sl__keyed_backend base;
    char *workdir, *dbdir;
    rocksdb_t *db;
    rocksdb_options_t *opts;    /* the database and every column family */
    rocksdb_cache_t *cache;     /* managed: the shared block cache; else NULL */
    rocksdb_readoptions_t *ro;  /* point reads */
    rocksdb_writeoptions_t *wo; /* write-ahead log off */
    rocksdb_writebatch_t *batch;
    size_t cache_capacity, wb_budget, wb_size;
    rstate **states; /* registered and restored, in order of appearance */
    size_t nstates, states_cap;
    sl__arena views; /* copies of what reads returned (see the file comment) */
    cursor *cursors, *free_cursors;
    uint8_t *walk; /* for_each_key: the scope of the key handed to fn */
    size_t walk_cap;
    atomic_size_t live_snapshots; /* any thread */
    bool incremental;             /* snapshots are RocksDB checkpoints (files) */
    uint64_t snap_seq;            /* names the snapshot directories */
    pthread_mutex_t up_mu;        /* guards uploaded: the task thread and I/O threads */
    uploaded_file *uploaded;      /* SST files stored in shared storage, by local name */
    size_t nuploaded, cap_uploaded;
};

static const sl__backend_ops rdb_ops;
static const sl__state_ops rdb_state_ops;
static const sl__snapshot_ops rdb_snapshot_ops;

/* ---- Errors ----------------------------------------------------------------------------- */

/* The one place where RocksDB's errors become Sluice's. msg is RocksDB's message from an
 * errptr (allocated by RocksDB; freed here). op names what failed ("get", "open", ...);
 * state the state involved, or NULL. The message goes to st (sl_fail) when given, into
 * err when given, and to the log when neither is. Returns SL_EIO for I/O errors, corruption
 * and a full disk, SL_ESTATE for anything else. */
static int rdb_fail(const rdb *rb, char *msg, const char *op, const char *state, sl_state *st,
                    char *err, size_t cap)
{
    const char *m = msg ? msg : "unknown error";
    int code = SL_ESTATE;
    if (!strncmp(m, "IO error", 8) || !strncmp(m, "Corruption", 10) || strstr(m, "No space") ||
        strstr(m, "ENOSPC"))
        code = SL_EIO;
    char text[1024];
    snprintf(text, sizeof text, "RocksDB %s%s%s%s failed in %s: %s", op,
             state ? " of state \"" : "", state ? state : "", state ? "\"" : "", rb->dbdir, m);
    if (!st && !err)
        SL_LOG(SL_LOG_ERROR, "event=rocksdb_error op=\"%s\" state=\"%s\" dir=%s error=\"%s\"", op,
               state ? state : "", rb->dbdir, m);
    rocksdb_free(msg);
    if (st)
        sl__state_fail(st, code, "%s", text);
    if (err && cap)
        snprintf(err, cap, "%s", text);
    return code;
}

/* ---- The list merge operator ------------------------------------------------------------ *
 *
 * Operands and values are runs of list elements (varint length + row each), so merging is
 * concatenation. RocksDB calls these on its own threads too (flush, compaction), so they
 * allocate with malloc directly rather than through the allocation wrapper and its test
 * countdown; on out of memory they report failure, which RocksDB turns into an error of
 * the read or compaction that needed the merge. */

static char *concat(const char *first, size_t first_len, const char *const *ops,
                    const size_t *op_lens, int n, unsigned char *success, size_t *out_len)
{
    size_t total = first_len;
    for (int i = 0; i < n; i++)
        total += op_lens[i];
    char *out = malloc(total ? total : 1);
    if (!out) {
        *success = 0;
        return NULL;
    }
    size_t at = 0;
    if (first_len) {
        memcpy(out, first, first_len);
        at = first_len;
    }
    for (int i = 0; i < n; i++) {
        memcpy(out + at, ops[i], op_lens[i]);
        at += op_lens[i];
    }
    *success = 1;
    *out_len = total;
    return out;
}

static char *list_full_merge(void *state, const char *key, size_t key_len, const char *existing,
                             size_t existing_len, const char *const *ops, const size_t *op_lens,
                             int n, unsigned char *success, size_t *out_len)
{
    (void)state;
    (void)key;
    (void)key_len;
    return concat(existing, existing ? existing_len : 0, ops, op_lens, n, success, out_len);
}

static char *list_partial_merge(void *state, const char *key, size_t key_len,
                                const char *const *ops, const size_t *op_lens, int n,
                                unsigned char *success, size_t *out_len)
{
    (void)state;
    (void)key;
    (void)key_len;
    return concat(NULL, 0, ops, op_lens, n, success, out_len);
}

static void list_merge_free(void *state, const char *value, size_t len)
{
    (void)state;
    (void)len;
    free((void *)value);
}

static const char *list_merge_name(void *state)
{
    (void)state;
    return "sluice.list.concat";
}

static void list_merge_destroy(void *state)
{
    (void)state;
}

/* ---- Keys ------------------------------------------------------------------------------- */

static uint8_t *put_kg(uint8_t *p, int kg)
{
    p[0] = (uint8_t)(kg >> 8);
    p[1] = (uint8_t)kg;
    return p + KG_BYTES;
}

static size_t scope_size(size_t klen, size_t nslen)
{
    return KG_BYTES + sl__varint_size(klen) + klen + sl__varint_size(nslen) + nslen;
}

static uint8_t *put_scope(uint8_t *p, int kg, const uint8_t *key, size_t klen, const uint8_t *ns,
                          size_t nslen)
{
    p = put_kg(p, kg);
    p = sl__varint_write(p, klen);
    memcpy(p, key, klen);
    p += klen;
    p = sl__varint_write(p, nslen);
    if (nslen)
        memcpy(p, ns, nslen);
    return p + nslen;
}

/* A database key taken apart. */
typedef struct dkey {
    int kg;
    const uint8_t *key, *ns, *rest; /* rest: the user key of a map pair */
    size_t klen, nslen, restlen;
    size_t plen; /* length of the scope prefix */
} dkey;

static bool parse_key(const uint8_t *p, size_t n, dkey *d)
{
    if (n < KG_BYTES)
        return false;
    sl__rd r = {p + KG_BYTES, p + n};
    d->kg = (p[0] << 8) | p[1];
    if (!sl__rd_bytes(&r, &d->key, &d->klen) || !sl__rd_bytes(&r, &d->ns, &d->nslen))
        return false;
    d->plen = (size_t)(r.p - p);
    d->rest = r.p;
    d->restlen = (size_t)(r.end - r.p);
    return true;
}

/* The current scope's prefix in rs->kbuf with room for extra bytes after it; returns its
 * length. Per-record path: grows the buffer with the aborting allocator. */
static size_t scope_prefix(sl_state *st, rstate *rs, size_t extra)
{
    const sl__keyed_backend *be = st->be;
    if (!(rs->pvalid && rs->key_epoch == be->key_epoch && rs->ns_epoch == st->ns_epoch)) {
        const sl__key *k = &be->key;
        size_t need = scope_size(k->len, st->ns_len) + extra;
        if (need > rs->kcap) {
            size_t cap = rs->kcap ? rs->kcap : 64;
            while (cap < need)
                cap *= 2;
            rs->kbuf = sl__xrealloc(rs->kbuf, cap);
            rs->kcap = cap;
        }
        rs->plen =
            (size_t)(put_scope(rs->kbuf, k->key_group, k->bytes, k->len, st->ns, st->ns_len) -
                     rs->kbuf);
        rs->pvalid = true;
        rs->key_epoch = be->key_epoch;
        rs->ns_epoch = st->ns_epoch;
    } else if (rs->plen + extra > rs->kcap) {
        size_t cap = rs->kcap;
        while (cap < rs->plen + extra)
            cap *= 2;
        rs->kbuf = sl__xrealloc(rs->kbuf, cap);
        rs->kcap = cap;
    }
    return rs->plen;
}

/* The smallest key above every key that starts with p[0..n) into out (room for n bytes):
 * its length, or 0 when there is none (all bytes 0xff). */
static size_t successor(const uint8_t *p, size_t n, uint8_t *out)
{
    while (n && p[n - 1] == 0xff)
        n--;
    if (!n)
        return 0;
    memcpy(out, p, n);
    out[n - 1]++;
    return n;
}

/* ---- Views ------------------------------------------------------------------------------ */

static uint8_t *view_copy(rdb *rb, const void *p, size_t n)
{
    uint8_t *v = sl__arena_alloc(&rb->views, n);
    if (n)
        memcpy(v, p, n);
    rb->base.head.views = true;
    return v;
}

static void rdb_release_views(sl__keyed_backend *be)
{
    rdb *rb = (rdb *)be;
    if (rb->base.head.views) {
        sl__arena_reset(&rb->views);
        rb->base.head.views = false;
    }
}

/* ---- State operations ------------------------------------------------------------------- */

static rdb *rdb_of(const sl_state *st)
{
    return (rdb *)st->be;
}

/* Point read of key k in rs's column family into a view. 1, 0 absent, <0 after sl_fail. */
static int get_view(sl_state *st, rstate *rs, const uint8_t *k, size_t kn, const uint8_t **v,
                    size_t *vn)
{
    rdb *rb = rdb_of(st);
    char *e = NULL;
    rocksdb_pinnableslice_t *ps =
        rocksdb_get_pinned_cf(rb->db, rb->ro, rs->cf, (const char *)k, kn, &e);
    if (e) {
        rocksdb_pinnableslice_destroy(ps);
        return rdb_fail(rb, e, "get", rs->name, st, NULL, 0);
    }
    if (!ps)
        return 0;
    size_t len;
    const char *val = rocksdb_pinnableslice_value(ps, &len);
    *v = view_copy(rb, val, len);
    *vn = len;
    rocksdb_pinnableslice_destroy(ps);
    return 1;
}

enum { W_PUT, W_MERGE, W_DELETE };

static int write_key(sl_state *st, rstate *rs, int how, const uint8_t *k, size_t kn,
                     const uint8_t *v, size_t vn)
{
    rdb *rb = rdb_of(st);
    char *e = NULL;
    const char *op = "put";
    if (how == W_PUT) {
        rocksdb_put_cf(rb->db, rb->wo, rs->cf, (const char *)k, kn, (const char *)v, vn, &e);
    } else if (how == W_MERGE) {
        op = "merge";
        rocksdb_merge_cf(rb->db, rb->wo, rs->cf, (const char *)k, kn, (const char *)v, vn, &e);
    } else {
        op = "delete";
        rocksdb_delete_cf(rb->db, rb->wo, rs->cf, (const char *)k, kn, &e);
    }
    if (e)
        return rdb_fail(rb, e, op, rs->name, st, NULL, 0);
    rs->touched[st->be->key.key_group - st->be->kg_start] = 1;
    return 0;
}

static int r_value_get(sl_state *st, const uint8_t **p, size_t *n)
{
    rstate *rs = st->impl;
    size_t kn = scope_prefix(st, rs, 0);
    return get_view(st, rs, rs->kbuf, kn, p, n);
}

static int r_value_put(sl_state *st, const uint8_t *p, size_t n)
{
    rstate *rs = st->impl;
    size_t kn = scope_prefix(st, rs, 0);
    return write_key(st, rs, W_PUT, rs->kbuf, kn, p, n);
}

static int r_list_append(sl_state *st, const uint8_t *p, size_t n, size_t count)
{
    (void)count; /* the elements carry their own framing */
    rstate *rs = st->impl;
    size_t kn = scope_prefix(st, rs, 0);
    return write_key(st, rs, W_MERGE, rs->kbuf, kn, p, n);
}

static int r_list_set(sl_state *st, const uint8_t *p, size_t n, size_t count)
{
    (void)count;
    rstate *rs = st->impl;
    size_t kn = scope_prefix(st, rs, 0);
    return write_key(st, rs, W_PUT, rs->kbuf, kn, p, n);
}

/* The current scope's prefix followed by user key k. */
static size_t pair_key(sl_state *st, rstate *rs, const uint8_t *k, size_t kn)
{
    size_t plen = scope_prefix(st, rs, kn);
    memcpy(rs->kbuf + plen, k, kn);
    return plen + kn;
}

static int r_map_get(sl_state *st, const uint8_t *k, size_t kn, const uint8_t **v, size_t *vn)
{
    rstate *rs = st->impl;
    size_t n = pair_key(st, rs, k, kn);
    return get_view(st, rs, rs->kbuf, n, v, vn);
}

static int r_map_put(sl_state *st, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
    rstate *rs = st->impl;
    size_t n = pair_key(st, rs, k, kn);
    return write_key(st, rs, W_PUT, rs->kbuf, n, v, vn);
}

static int r_map_remove(sl_state *st, const uint8_t *k, size_t kn)
{
    rstate *rs = st->impl;
    size_t n = pair_key(st, rs, k, kn);
    int rc = write_key(st, rs, W_DELETE, rs->kbuf, n, NULL, 0);
    return rc < 0 ? rc : 1; /* a blind delete: possibly removed */
}

/* ---- Map cursors ------------------------------------------------------------------------ */

static cursor *cursor_take(rdb *rb, size_t plen)
{
    cursor *c = rb->free_cursors;
    if (c) {
        rb->free_cursors = c->next_free;
    } else {
        c = sl__xcalloc(1, sizeof *c);
        c->ro = rocksdb_readoptions_create();
        c->next = rb->cursors;
        rb->cursors = c;
    }
    if (2 * plen > c->cap) {
        size_t cap = c->cap ? c->cap : 64;
        while (cap < 2 * plen)
            cap *= 2;
        c->buf = sl__xrealloc(c->buf, cap);
        c->cap = cap;
    }
    c->plen = plen;
    return c;
}

static void cursor_put(rdb *rb, cursor *c)
{
    if (c->it) {
        rocksdb_iter_destroy(c->it);
        c->it = NULL;
    }
    c->next_free = rb->free_cursors;
    rb->free_cursors = c;
}

/* Positions c (its prefix in c->buf) on its first key in cf, with the prefix's successor
 * as the upper bound. Returns 1 when a key is there, 0 when none, <0 after rdb_fail. */
static int cursor_seek(rdb *rb, cursor *c, rocksdb_column_family_handle_t *cf, const char *state,
                       sl_state *st)
{
    size_t slen = successor(c->buf, c->plen, c->buf + c->plen);
    rocksdb_readoptions_set_iterate_upper_bound(c->ro, slen ? (const char *)c->buf + c->plen : NULL,
                                                slen);
    c->it = rocksdb_create_iterator_cf(rb->db, c->ro, cf);
    rocksdb_iter_seek(c->it, (const char *)c->buf, c->plen);
    if (rocksdb_iter_valid(c->it))
        return 1;
    char *e = NULL;
    rocksdb_iter_get_error(c->it, &e);
    return e ? rdb_fail(rb, e, "iterate", state, st, NULL, 0) : 0;
}

static int r_map_iter_open(sl_state *st, sl_iter *it)
{
    rdb *rb = rdb_of(st);
    rstate *rs = st->impl;
    size_t plen = scope_prefix(st, rs, 0);
    cursor *c = cursor_take(rb, plen);
    memcpy(c->buf, rs->kbuf, plen);
    int rc = cursor_seek(rb, c, rs->cf, rs->name, st);
    if (rc <= 0) {
        cursor_put(rb, c);
        return rc;
    }
    it->cursor = c;
    return 1;
}

static int r_map_iter_next(sl_iter *it, const uint8_t **k, size_t *kn, const uint8_t **v,
                           size_t *vn)
{
    cursor *c = it->cursor;
    sl_state *st = it->st;
    rdb *rb = rdb_of(st);
    if (!rocksdb_iter_valid(c->it)) {
        char *e = NULL;
        rocksdb_iter_get_error(c->it, &e);
        return e ? rdb_fail(rb, e, "iterate", ((rstate *)st->impl)->name, st, NULL, 0) : 0;
    }
    size_t klen, vlen;
    const char *key = rocksdb_iter_key(c->it, &klen);
    if (klen < c->plen || memcmp(key, c->buf, c->plen))
        return 0;
    const char *val = rocksdb_iter_value(c->it, &vlen);
    *kn = klen - c->plen;
    *k = view_copy(rb, key + c->plen, *kn);
    *v = view_copy(rb, val, vlen);
    *vn = vlen;
    rocksdb_iter_next(c->it);
    return 1;
}

static void r_map_iter_close(sl_iter *it)
{
    if (it->cursor)
        cursor_put(rdb_of(it->st), it->cursor);
    it->cursor = NULL;
}

/* Deletes every pair of the current scope of a map (one batch). */
static int clear_map(sl_state *st, rstate *rs)
{
    rdb *rb = rdb_of(st);
    size_t plen = scope_prefix(st, rs, 0);
    cursor *c = cursor_take(rb, plen);
    memcpy(c->buf, rs->kbuf, plen);
    int rc = cursor_seek(rb, c, rs->cf, rs->name, st);
    if (rc <= 0) {
        cursor_put(rb, c);
        return rc;
    }
    rocksdb_writebatch_clear(rb->batch);
    while (rocksdb_iter_valid(c->it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(c->it, &klen);
        rocksdb_writebatch_delete_cf(rb->batch, rs->cf, key, klen);
        rocksdb_iter_next(c->it);
    }
    char *e = NULL;
    rocksdb_iter_get_error(c->it, &e);
    cursor_put(rb, c);
    if (e)
        return rdb_fail(rb, e, "iterate", rs->name, st, NULL, 0);
    rocksdb_write(rb->db, rb->wo, rb->batch, &e);
    rocksdb_writebatch_clear(rb->batch);
    if (e)
        return rdb_fail(rb, e, "write batch", rs->name, st, NULL, 0);
    return 1;
}

static int r_clear(sl_state *st)
{
    rstate *rs = st->impl;
    if (rs->kind == SL_STATE_MAP)
        return clear_map(st, rs);
    size_t kn = scope_prefix(st, rs, 0);
    int rc = write_key(st, rs, W_DELETE, rs->kbuf, kn, NULL, 0);
    return rc < 0 ? rc : 1; /* a blind delete: possibly removed */
}

static const sl__state_ops rdb_state_ops = {
    .value_get = r_value_get,
    .value_put = r_value_put,
    .list_get = r_value_get, /* the merged elements */
    .list_append = r_list_append,
    .list_set = r_list_set,
    .map_get = r_map_get,
    .map_put = r_map_put,
    .map_remove = r_map_remove,
    .map_iter_open = r_map_iter_open,
    .map_iter_next = r_map_iter_next,
    .map_iter_close = r_map_iter_close,
    .clear = r_clear,
};

/* ---- States and column families --------------------------------------------------------- */

static rstate *find_state(const rdb *rb, const char *name, size_t len)
{
    for (size_t i = 0; i < rb->nstates; i++) {
        rstate *rs = rb->states[i];
        if (strlen(rs->name) == len && !memcmp(rs->name, name, len))
            return rs;
    }
    return NULL;
}

/* A new state with its column family and its record in the default column family. Returns
 * NULL with a message in err and *code SL_ENOMEM or the translated RocksDB error. */
static rstate *new_state(rdb *rb, const char *name, size_t len, sl_state_kind kind,
                         rocksdb_column_family_handle_t *existing, char *err, size_t cap, int *code)
{
    *code = SL_ENOMEM;
    if (rb->nstates == rb->states_cap) {
        size_t c = rb->states_cap ? rb->states_cap * 2 : 4;
        rstate **states = sl__realloc(rb->states, c * sizeof *states);
        if (!states) {
            snprintf(err, cap, "out of memory registering state \"%.*s\"", (int)len, name);
            return NULL;
        }
        rb->states = states;
        rb->states_cap = c;
    }
    rstate *rs = sl__calloc(1, sizeof *rs);
    char *cfname = sl__malloc(sizeof CF_PREFIX + len);
    size_t nkg = (size_t)(rb->base.kg_end - rb->base.kg_start);
    if (!rs || !cfname || !(rs->name = sl__strndup(name, len)) ||
        !(rs->touched = sl__calloc(nkg ? nkg : 1, 1))) {
        if (rs)
            sl__free(rs->name);
        sl__free(rs);
        sl__free(cfname);
        snprintf(err, cap, "out of memory registering state \"%.*s\"", (int)len, name);
        return NULL;
    }
    memcpy(cfname, CF_PREFIX, sizeof CF_PREFIX - 1);
    memcpy(cfname + sizeof CF_PREFIX - 1, name, len);
    cfname[sizeof CF_PREFIX - 1 + len] = 0;
    char *e = NULL;
    if (existing)
        rs->cf = existing; /* adopted with the database: its record is there */
    else
        rs->cf = rocksdb_create_column_family(rb->db, rb->opts, cfname, &e);
    if (!e && !existing) {
        char kb = (char)kind;
        rocksdb_put(rb->db, rb->wo, cfname, strlen(cfname), &kb, 1, &e);
        if (e) {
            *code = rdb_fail(rb, e, "put (state record)", rs->name, NULL, err, cap);
            char *e2 = NULL;
            rocksdb_drop_column_family(rb->db, rs->cf, &e2);
            rocksdb_free(e2);
        }
    } else if (e) {
        *code = rdb_fail(rb, e, "create column family", rs->name, NULL, err, cap);
    }
    sl__free(cfname);
    if (e) {
        if (rs->cf)
            rocksdb_column_family_handle_destroy(rs->cf);
        sl__free(rs->touched);
        sl__free(rs->name);
        sl__free(rs);
        return NULL;
    }
    rs->kind = kind;
    rb->states[rb->nstates++] = rs;
    return rs;
}

static void free_state(rstate *rs)
{
    if (rs->cf)
        rocksdb_column_family_handle_destroy(rs->cf);
    sl__free(rs->kbuf);
    sl__free(rs->touched);
    sl__free(rs->signature);
    sl__free(rs->name);
    sl__free(rs);
}

/* A read options object for scans of key group range [kg0, kg1) (bounds in lo/hi, which
 * must outlive it), not filling the block cache, at snap when given. */
static rocksdb_readoptions_t *scan_options(const rocksdb_snapshot_t *snap, int kg0, int kg1,
                                           uint8_t *lo, uint8_t *hi)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(ro, 0);
    if (snap)
        rocksdb_readoptions_set_snapshot(ro, snap);
    put_kg(lo, kg0);
    if (kg1 < (1 << 16)) {
        put_kg(hi, kg1);
        rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, KG_BYTES);
    }
    return ro;
}

/* Ends a scan: unless rc already is an error, a read error the iterator met becomes one
 * (rdb_fail with op, state and st or err as given); frees the iterator and its options.
 * Returns rc or that error. */
static int scan_end(const rdb *rb, rocksdb_iterator_t *it, rocksdb_readoptions_t *ro, int rc,
                    const char *op, const char *state, sl_state *st, char *err, size_t cap)
{
    if (rc == 0) {
        char *e = NULL;
        rocksdb_iter_get_error(it, &e);
        if (e)
            rc = rdb_fail(rb, e, op, state, st, err, cap);
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

/* Checks every entry of a restored state against the schemas of the handle registering it. */
static int validate_restored(rdb *rb, rstate *rs, const sl_state *st, char *err, size_t cap)
{
    uint8_t lo[KG_BYTES], hi[KG_BYTES];
    rocksdb_readoptions_t *ro = scan_options(NULL, rb->base.kg_start, rb->base.kg_end, lo, hi);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(rb->db, ro, rs->cf);
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo, KG_BYTES); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        dkey d;
        bool ok = parse_key(k, kl, &d);
        uint64_t count = 0;
        if (ok && sl__kind_is_valuelike(rs->kind))
            ok = sl__row_valid(st->stored, v, vl);
        else if (ok && rs->kind == SL_STATE_LIST)
            ok = sl__elems_count(v, vl, &count) && sl__elems_valid(st->schema, v, vl, count);
        else if (ok)
            ok = sl__row_valid(st->key_schema, d.rest, d.restlen) &&
                 sl__row_valid(st->schema, v, vl);
        if (!ok) {
            char what[256];
            sl__state_describe(st, what, sizeof what);
            snprintf(err, cap,
                     "state \"%s\": a restored entry in key group %d does not parse as declared "
                     "(%s)",
                     st->name, kl >= KG_BYTES ? (k[0] << 8) | k[1] : -1, what);
            rc = SL_EFORMAT;
            break;
        }
    }
    return scan_end(rb, it, ro, rc, "iterate", rs->name, NULL, err, cap);
}

/* Writes the state's record in the default column family: its kind byte, then the
 * declaration its entries were checked against (what a restore of this database compares
 * before checking every entry again). */
static int put_record(rdb *rb, rstate *rs, const sl_state *st, char *err, size_t cap)
{
    char rec[1 + 1024], cfname[512];
    rec[0] = (char)rs->kind;
    sl__state_describe(st, rec + 1, sizeof rec - 1);
    snprintf(cfname, sizeof cfname, CF_PREFIX "%s", rs->name);
    char *e = NULL;
    rocksdb_put(rb->db, rb->wo, cfname, strlen(cfname), rec, 1 + strlen(rec + 1), &e);
    return e ? rdb_fail(rb, e, "put (state record)", rs->name, NULL, err, cap) : 0;
}

static int r_attach(sl__keyed_backend *be, sl_state *st, char *err, size_t cap)
{
    rdb *rb = (rdb *)be;
    rstate *rs = find_state(rb, st->name, strlen(st->name));
    if (rs) {
        SL_ASSERT(!rs->handle);
        if (rs->kind != st->kind) {
            snprintf(err, cap, "state \"%s\" was restored as %s state but is declared as %s",
                     st->name, sl__state_kind_name(rs->kind), sl__state_kind_name(st->kind));
            return SL_ESTATE;
        }
        /* an adopted database whose entries were checked against this very declaration
         * (and whose files against their checksums) need not be read through */
        char what[1024];
        sl__state_describe(st, what, sizeof what);
        if (!rs->signature || strcmp(rs->signature, what)) {
            int rc = validate_restored(rb, rs, st, err, cap);
            if (rc < 0)
                return rc;
        }
    } else {
        int code;
        rs = new_state(rb, st->name, strlen(st->name), st->kind, NULL, err, cap, &code);
        if (!rs)
            return code;
    }
    int rc = put_record(rb, rs, st, err, cap);
    if (rc < 0)
        return rc;
    rs->handle = st;
    rs->pvalid = false;
    st->impl = rs;
    st->ops = &rdb_state_ops;
    return 0;
}

/* ---- Walks ------------------------------------------------------------------------------ */

static int r_for_each_key(sl__keyed_backend *be, sl_state *st,
                          int (*fn)(void *arg, const sl__key *key), void *arg)
{
    rdb *rb = (rdb *)be;
    rstate *rs = st->impl;
    uint8_t lo[KG_BYTES], hi[KG_BYTES];
    rocksdb_readoptions_t *ro = scan_options(NULL, be->kg_start, be->kg_end, lo, hi);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(rb->db, ro, rs->cf);
    size_t last = 0; /* length of the last scope handed to fn (in rb->walk); 0: none */
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo, KG_BYTES); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        dkey d;
        if (!parse_key(k, kl, &d)) {
            rc = sl__state_fail(st, SL_ESTATE, "state \"%s\": a malformed key in %s", rs->name,
                                rb->dbdir);
            break;
        }
        if (d.nslen != st->ns_len || (d.nslen && memcmp(d.ns, st->ns, d.nslen)))
            continue;
        if (last && last == d.plen && !memcmp(rb->walk, k, d.plen))
            continue; /* the next pair of a map already visited */
        if (d.plen > rb->walk_cap) {
            size_t c = rb->walk_cap ? rb->walk_cap : 64;
            while (c < d.plen)
                c *= 2;
            rb->walk = sl__xrealloc(rb->walk, c);
            rb->walk_cap = c;
        }
        memcpy(rb->walk, k, d.plen);
        last = d.plen;
        const uint8_t *kb = rb->walk + (d.key - k);
        sl__key key = {.bytes = kb, .len = d.klen, .hash = sl__hash(kb, d.klen), .key_group = d.kg};
        if ((rc = fn(arg, &key)) != 0)
            break;
    }
    return scan_end(rb, it, ro, rc, "iterate", rs->name, st, NULL, 0);
}

static size_t r_size(const sl__keyed_backend *be)
{
    const rdb *rb = (const rdb *)be;
    size_t n = 0;
    uint8_t lo[KG_BYTES], hi[KG_BYTES];
    rocksdb_readoptions_t *ro = scan_options(NULL, be->kg_start, be->kg_end, lo, hi);
    for (size_t i = 0; i < rb->nstates; i++) {
        const rstate *rs = rb->states[i];
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(rb->db, ro, rs->cf);
        const uint8_t *prev = NULL;
        size_t prev_len = 0;
        sl__buf last = {0};
        for (rocksdb_iter_seek(it, (const char *)lo, KG_BYTES); rocksdb_iter_valid(it);
             rocksdb_iter_next(it)) {
            size_t kl;
            const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
            dkey d;
            if (rs->kind != SL_STATE_MAP || !parse_key(k, kl, &d)) {
                n++;
                continue;
            }
            if (prev && prev_len == d.plen && !memcmp(prev, k, d.plen))
                continue;
            n++;
            last.len = 0;
            if (sl__buf_append(&last, k, d.plen) == 0) {
                prev = last.data;
                prev_len = d.plen;
            } else {
                prev = NULL;
            }
        }
        char *e = NULL;
        rocksdb_iter_get_error(it, &e);
        if (e)
            rdb_fail(rb, e, "iterate (size)", rs->name, NULL, NULL, 0);
        sl__buf_free(&last);
        rocksdb_iter_destroy(it);
    }
    rocksdb_readoptions_destroy(ro);
    return n;
}

/* ---- Snapshots -------------------------------------------------------------------------- */

static int buf_varint(sl__buf *b, uint64_t v)
{
    if (sl__buf_reserve(b, 10) < 0)
        return SL_ENOMEM;
    b->len = (size_t)(sl__varint_write(b->data + b->len, v) - b->data);
    return 0;
}

static int buf_bytes(sl__buf *b, const void *p, size_t n)
{
    int rc = buf_varint(b, n);
    return rc < 0 ? rc : sl__buf_append(b, p, n);
}

/* Appends one canonical entry (key, namespace, payload = [varint count] + body). */
static int put_entry(sl__buf *b, const dkey *d, bool counted, uint64_t count, const void *body,
                     size_t n)
{
    size_t pl = (counted ? sl__varint_size(count) : 0) + n;
    if (buf_bytes(b, d->key, d->klen) < 0 || buf_bytes(b, d->ns, d->nslen) < 0 ||
        buf_varint(b, pl) < 0 || (counted && buf_varint(b, count) < 0) ||
        sl__buf_append(b, body, n) < 0)
        return SL_ENOMEM;
    return 0;
}

/* Scratch of one key-group write: the state sections, one state's entries, one map's
 * pairs and its scope. */
typedef struct kgw {
    sl__buf body, ents, pairs, scope;
} kgw;

/* Appends state s's entries of key group kg (at snap when given) to w->ents; their number
 * in *nent. */
static int write_state_kg(const rdb *rb, const snap_state *s, const rocksdb_snapshot_t *snap,
                          int kg, kgw *w, uint64_t *nent)
{
    uint8_t lo[KG_BYTES], hi[KG_BYTES];
    rocksdb_readoptions_t *ro = scan_options(snap, kg, kg + 1, lo, hi);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(rb->db, ro, s->cf);
    uint64_t npairs = 0;
    dkey scope; /* the map scope being collected: its key and ns point into w->scope */
    int rc = 0;
    *nent = 0;
    w->ents.len = 0;
    w->scope.len = 0;
    for (rocksdb_iter_seek(it, (const char *)lo, KG_BYTES); rocksdb_iter_valid(it) && rc == 0;
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        dkey d;
        uint64_t count = 0;
        if (!parse_key(k, kl, &d) || d.kg != kg ||
            (s->kind == SL_STATE_LIST && !sl__elems_count(v, vl, &count))) {
            SL_LOG(SL_LOG_ERROR,
                   "event=rocksdb_error dir=%s op=snapshot state=\"%s\" message=\"a malformed "
                   "entry in key group %d\"",
                   rb->dbdir, s->name, kg);
            rc = SL_ESTATE;
            break;
        }
        if (sl__kind_is_valuelike(s->kind)) {
            rc = put_entry(&w->ents, &d, false, 0, v, vl);
            ++*nent;
            continue;
        }
        if (s->kind == SL_STATE_LIST) {
            rc = put_entry(&w->ents, &d, true, count, v, vl);
            ++*nent;
            continue;
        }
        if (w->scope.len != d.plen || memcmp(w->scope.data, k, d.plen)) {
            if (w->scope.len) {
                rc = put_entry(&w->ents, &scope, true, npairs, w->pairs.data, w->pairs.len);
                ++*nent;
            }
            w->scope.len = 0;
            w->pairs.len = 0;
            npairs = 0;
            if (rc == 0 && (rc = sl__buf_append(&w->scope, k, d.plen)) == 0)
                parse_key(w->scope.data, w->scope.len, &scope);
        }
        if (rc == 0 &&
            (buf_bytes(&w->pairs, d.rest, d.restlen) < 0 || buf_bytes(&w->pairs, v, vl) < 0))
            rc = SL_ENOMEM;
        npairs++;
    }
    if (rc == 0 && w->scope.len) {
        rc = put_entry(&w->ents, &scope, true, npairs, w->pairs.data, w->pairs.len);
        ++*nent;
    }
    return scan_end(rb, it, ro, rc, "iterate (snapshot)", s->name, NULL, NULL, 0);
}

/* Appends the canonical form of key group kg of the given states to out. */
static int write_kg_section(const rdb *rb, const snap_state *states, size_t n,
                            const rocksdb_snapshot_t *snap, int kg, sl__buf *out)
{
    kgw w;
    memset(&w, 0, sizeof w);
    size_t nst = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint64_t nent;
        rc = write_state_kg(rb, &states[i], snap, kg, &w, &nent);
        if (rc < 0 || !nent)
            continue;
        nst++;
        const char *name = states[i].name;
        uint8_t kind = (uint8_t)states[i].kind;
        if (buf_bytes(&w.body, name, strlen(name)) < 0 || sl__buf_append(&w.body, &kind, 1) < 0 ||
            buf_varint(&w.body, nent) < 0 || sl__buf_append(&w.body, w.ents.data, w.ents.len) < 0)
            rc = SL_ENOMEM;
    }
    if (rc == 0 && (buf_varint(out, nst) < 0 || sl__buf_append(out, w.body.data, w.body.len) < 0))
        rc = SL_ENOMEM;
    sl__buf_free(&w.body);
    sl__buf_free(&w.ents);
    sl__buf_free(&w.pairs);
    sl__buf_free(&w.scope);
    return rc;
}

static void snap_states(const rdb *rb, snap_state *out)
{
    for (size_t i = 0; i < rb->nstates; i++) {
        const rstate *rs = rb->states[i];
        out[i] = (snap_state){.name = rs->name, .kind = rs->kind, .cf = rs->cf};
    }
}

static int r_snapshot_kg(sl__keyed_backend *be, int key_group, sl__buf *out)
{
    rdb *rb = (rdb *)be;
    snap_state *states = rb->nstates ? sl__malloc(rb->nstates * sizeof *states) : NULL;
    if (rb->nstates && !states)
        return SL_ENOMEM;
    snap_states(rb, states);
    int rc = write_kg_section(rb, states, rb->nstates, NULL, key_group, out);
    sl__free(states);
    return rc;
}

static void remove_tree(const char *dir);

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* snprintf into err, where the message may be cut (long paths). */
static void set_err(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

static void free_files(sl__snapshot_file *files, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sl__free((char *)files[i].name);
        sl__free((char *)files[i].uploaded);
    }
    sl__free(files);
}

static int cmp_file_name(const void *a, const void *b)
{
    return strcmp(((const sl__snapshot_file *)a)->name, ((const sl__snapshot_file *)b)->name);
}

/* Lists the regular files of dir, sorted by name, into *out (names and sizes; immutable for SST
 * files). 0, or SL_EIO / SL_ENOMEM with a message in err. */
static int list_files(const char *dir, sl__snapshot_file **out, size_t *n, char *err, size_t cap)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, cap, "cannot list RocksDB checkpoint directory %s: %s", dir, strerror(errno));
        return SL_EIO;
    }
    sl__snapshot_file *files = NULL;
    size_t nf = 0, capf = 0;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &sb) < 0) {
            set_err(err, cap, "cannot stat %s: %s", path, strerror(errno));
            rc = SL_EIO;
            break;
        }
        if (!S_ISREG(sb.st_mode))
            continue;
        if (nf == capf) {
            size_t c = capf ? capf * 2 : 16;
            sl__snapshot_file *f = sl__realloc(files, c * sizeof *f);
            if (!f) {
                rc = SL_ENOMEM;
                break;
            }
            files = f;
            capf = c;
        }
        files[nf] = (sl__snapshot_file){.size = (uint64_t)sb.st_size,
                                        .immutable = has_suffix(e->d_name, ".sst")};
        if (!(files[nf].name = sl__strdup(e->d_name))) {
            rc = SL_ENOMEM;
            break;
        }
        nf++;
    }
    closedir(d);
    if (rc == SL_ENOMEM)
        snprintf(err, cap, "out of memory listing RocksDB checkpoint directory %s", dir);
    if (rc < 0) {
        free_files(files, nf);
        return rc;
    }
    if (nf > 1)
        qsort(files, nf, sizeof *files, cmp_file_name);
    *out = files;
    *n = nf;
    return 0;
}

/* Incremental: flushes the memtables and makes a RocksDB checkpoint (hard links) in a new
 * directory of the working directory, lists its files and tells which SST files are
 * already stored in shared storage; forgets stored files the database no longer has (SST
 * files never come back once compacted away). Task thread. 0 or an error in err. */
static int checkpoint_files(rdb *rb, rdb_snapshot *s, char *err, size_t cap)
{
    size_t n = strlen(rb->workdir) + 32;
    if (!(s->dir = sl__malloc(n))) {
        snprintf(err, cap, "out of memory");
        return SL_ENOMEM;
    }
    snprintf(s->dir, n, "%s/snap-%" PRIu64, rb->workdir, ++rb->snap_seq);
    char *e = NULL;
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(rb->db, &e);
    if (!e) {
        /* log_size_for_flush 0: always flush (the write-ahead log is off) */
        rocksdb_checkpoint_create(cp, s->dir, 0, &e);
        rocksdb_checkpoint_object_destroy(cp);
    }
    if (e)
        return rdb_fail(rb, e, "checkpoint", NULL, NULL, err, cap);
    int rc = list_files(s->dir, &s->files, &s->nfiles, err, cap);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&rb->up_mu);
    size_t kept = 0;
    for (size_t u = 0; u < rb->nuploaded; u++) {
        uploaded_file *f = &rb->uploaded[u];
        size_t i = 0;
        while (i < s->nfiles && strcmp(s->files[i].name, f->name))
            i++;
        if (i == s->nfiles) {
            sl__free(f->name);
            sl__free(f->shared);
            continue;
        }
        if (!s->files[i].uploaded)
            s->files[i].uploaded = sl__strdup(f->shared); /* NULL: stored again */
        rb->uploaded[kept++] = *f;
    }
    rb->nuploaded = kept;
    pthread_mutex_unlock(&rb->up_mu);
    return 0;
}

static sl__keyed_snapshot *r_snapshot_begin(sl__keyed_backend *be)
{
    rdb *rb = (rdb *)be;
    be->snap_err[0] = 0;
    rdb_snapshot *s = sl__calloc(1, sizeof *s + rb->nstates * sizeof(snap_state));
    if (!s)
        return NULL;
    s->base.ops = &rdb_snapshot_ops;
    s->base.kg_start = be->kg_start;
    s->base.kg_end = be->kg_end;
    s->rb = rb;
    s->nstates = rb->nstates;
    snap_states(rb, s->states);
    if (rb->incremental) {
        if (checkpoint_files(rb, s, be->snap_err, sizeof be->snap_err) < 0) {
            if (s->dir)
                remove_tree(s->dir);
            free_files(s->files, s->nfiles);
            sl__free(s->dir);
            sl__free(s);
            return NULL;
        }
    } else {
        s->snap = rocksdb_create_snapshot(rb->db);
    }
    atomic_fetch_add(&rb->live_snapshots, 1);
    return &s->base;
}

static bool rs_files(sl__keyed_snapshot *base, const char **dir, const sl__snapshot_file **files,
                     size_t *n)
{
    const rdb_snapshot *s = (const rdb_snapshot *)base;
    if (!s->dir)
        return false;
    *dir = s->dir;
    *files = s->files;
    *n = s->nfiles;
    return true;
}

static void note_uploaded(rdb *rb, const char *name, const char *shared)
{
    pthread_mutex_lock(&rb->up_mu);
    size_t i = 0;
    while (i < rb->nuploaded && strcmp(rb->uploaded[i].name, name))
        i++;
    char *sh = sl__strdup(shared);
    if (i < rb->nuploaded) {
        if (sh) {
            sl__free(rb->uploaded[i].shared);
            rb->uploaded[i].shared = sh;
        }
    } else if (sh) {
        /* out of memory only means it is stored again next time */
        char *nm = sl__strdup(name);
        if (nm && rb->nuploaded == rb->cap_uploaded) {
            size_t c = rb->cap_uploaded ? rb->cap_uploaded * 2 : 16;
            uploaded_file *u = sl__realloc(rb->uploaded, c * sizeof *u);
            if (u) {
                rb->uploaded = u;
                rb->cap_uploaded = c;
            }
        }
        if (nm && rb->nuploaded < rb->cap_uploaded) {
            rb->uploaded[rb->nuploaded++] = (uploaded_file){.name = nm, .shared = sh};
        } else {
            sl__free(nm);
            sl__free(sh);
        }
    }
    pthread_mutex_unlock(&rb->up_mu);
}

/* Also updates the snapshot's own list: a frozen snapshot (a finished task's) is stored
 * again for later checkpoints, one at a time, and then references what it stored before. */
static void rs_set_uploaded(sl__keyed_snapshot *base, const char *name, const char *shared)
{
    rdb_snapshot *s = (rdb_snapshot *)base;
    note_uploaded(s->rb, name, shared);
    for (size_t i = 0; i < s->nfiles; i++)
        if (!strcmp(s->files[i].name, name)) {
            char *sh = sl__strdup(shared);
            if (sh) {
                sl__free((char *)s->files[i].uploaded);
                s->files[i].uploaded = sh;
            }
        }
}

static int rs_write_kg(sl__keyed_snapshot *base, int kg, sl__buf *out)
{
    const rdb_snapshot *s = (const rdb_snapshot *)base;
    if (s->dir)
        return SL_EINVAL; /* made of files: see sl__keyed_snapshot_files */
    return write_kg_section(s->rb, s->states, s->nstates, s->snap, kg, out);
}

static void rs_release(sl__keyed_snapshot *base)
{
    rdb_snapshot *s = (rdb_snapshot *)base;
    rdb *rb = s->rb;
    if (s->snap)
        rocksdb_release_snapshot(rb->db, s->snap);
    if (s->dir)
        remove_tree(s->dir);
    free_files(s->files, s->nfiles);
    sl__free(s->dir);
    sl__free(s);
    atomic_fetch_sub(&rb->live_snapshots, 1);
}

static const sl__snapshot_ops rdb_snapshot_ops = {
    .write_kg = rs_write_kg,
    .release = rs_release,
    .files = rs_files,
    .set_uploaded = rs_set_uploaded,
};

/* ---- Restore ---------------------------------------------------------------------------- */

static int lookup_state(sl__keyed_backend *be, const uint8_t *name, size_t len,
                        const sl_state **handle)
{
    const rstate *rs = find_state((rdb *)be, (const char *)name, len);
    *handle = rs ? rs->handle : NULL;
    return rs ? (int)rs->kind : 0;
}

/* Writes the batch (restore of key group kg). */
static int flush_batch(rdb *rb, int kg, char *err, size_t cap)
{
    char *e = NULL;
    rocksdb_write(rb->db, rb->wo, rb->batch, &e);
    rocksdb_writebatch_clear(rb->batch);
    if (e) {
        char what[64];
        snprintf(what, sizeof what, "write batch (restore of key group %d)", kg);
        return rdb_fail(rb, e, what, NULL, NULL, err, cap);
    }
    return 0;
}

/* Adds deletes of the pairs a map scope holds now (prefix key->data) to the batch. */
static int delete_old_pairs(rdb *rb, rstate *rs, const sl__buf *key, char *err, size_t cap)
{
    cursor *c = cursor_take(rb, key->len);
    memcpy(c->buf, key->data, key->len);
    int rc = cursor_seek(rb, c, rs->cf, rs->name, NULL);
    while (rc > 0 && rocksdb_iter_valid(c->it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(c->it, &kl);
        rocksdb_writebatch_delete_cf(rb->batch, rs->cf, k, kl);
        rocksdb_iter_next(c->it);
    }
    char *e = NULL;
    if (rc > 0)
        rocksdb_iter_get_error(c->it, &e);
    cursor_put(rb, c);
    if (e)
        return rdb_fail(rb, e, "iterate (restore)", rs->name, NULL, err, cap);
    if (rc < 0) /* cursor_seek logged it: no buffer given there */
        snprintf(err, cap, "RocksDB iterate (restore) of state \"%s\" failed in %s", rs->name,
                 rb->dbdir);
    return rc < 0 ? rc : 0;
}

/* Pass 2 of restore: writes the validated entries. */
static int apply_kg(rdb *rb, int kg, const uint8_t *p, size_t len, char *err, size_t cap)
{
    sl__rd r = {p, p + len};
    uint64_t nst;
    sl__buf key = {0};
    int rc = 0;
    if (!sl__rd_varint(&r, &nst)) /* validated before: cannot happen */
        return SL_EFORMAT;
    rocksdb_writebatch_clear(rb->batch);
    for (uint64_t i = 0; i < nst && rc == 0; i++) {
        sl__kg_section s;
        if (!sl__kg_read_section(&r, &s)) {
            rc = SL_EFORMAT;
            break;
        }
        rstate *rs = find_state(rb, (const char *)s.name, s.namelen);
        if (!rs) {
            rs = new_state(rb, (const char *)s.name, s.namelen, s.kind, NULL, err, cap, &rc);
            if (!rs)
                break;
            rc = 0;
        }
        if (rs->handle)
            rs->handle->mod++;
        sl__free(rs->signature); /* these entries are checked on registration */
        rs->signature = NULL;
        uint8_t *touched = &rs->touched[kg - rb->base.kg_start];
        bool had = *touched;
        *touched = 1;
        for (uint64_t e = 0; e < s.nentries && rc == 0; e++) {
            const uint8_t *k, *ns, *pl;
            size_t kl, nsl, pll;
            if (!sl__rd_bytes(&r, &k, &kl) || !sl__rd_bytes(&r, &ns, &nsl) ||
                !sl__rd_bytes(&r, &pl, &pll)) {
                rc = SL_EFORMAT;
                break;
            }
            key.len = 0;
            if (sl__buf_reserve(&key, scope_size(kl, nsl)) < 0) {
                rc = SL_ENOMEM;
                break;
            }
            key.len = (size_t)(put_scope(key.data, kg, k, kl, ns, nsl) - key.data);
            if (sl__kind_is_valuelike(s.kind)) {
                rocksdb_writebatch_put_cf(rb->batch, rs->cf, (const char *)key.data, key.len,
                                          (const char *)pl, pll);
            } else {
                sl__rd b = {pl, pl + pll};
                uint64_t count;
                if (!sl__rd_varint(&b, &count)) {
                    rc = SL_EFORMAT;
                    break;
                }
                if (s.kind == SL_STATE_LIST) {
                    if (count)
                        rocksdb_writebatch_put_cf(rb->batch, rs->cf, (const char *)key.data,
                                                  key.len, (const char *)b.p,
                                                  (size_t)(b.end - b.p));
                    else
                        rocksdb_writebatch_delete_cf(rb->batch, rs->cf, (const char *)key.data,
                                                     key.len);
                } else {
                    /* the snapshot's map replaces the scope's map */
                    if (had && (rc = delete_old_pairs(rb, rs, &key, err, cap)) < 0)
                        break;
                    size_t plen = key.len;
                    for (uint64_t j = 0; j < count; j++) {
                        const uint8_t *uk, *v;
                        size_t ukl, vl;
                        if (!sl__rd_bytes(&b, &uk, &ukl) || !sl__rd_bytes(&b, &v, &vl)) {
                            rc = SL_EFORMAT;
                            break;
                        }
                        key.len = plen;
                        if (sl__buf_append(&key, uk, ukl) < 0) {
                            rc = SL_ENOMEM;
                            break;
                        }
                        rocksdb_writebatch_put_cf(rb->batch, rs->cf, (const char *)key.data,
                                                  key.len, (const char *)v, vl);
                    }
                }
            }
            size_t bsize;
            rocksdb_writebatch_data(rb->batch, &bsize);
            if (rc == 0 && bsize >= RESTORE_BATCH_BYTES)
                rc = flush_batch(rb, kg, err, cap);
        }
    }
    if (rc == 0)
        rc = flush_batch(rb, kg, err, cap);
    rocksdb_writebatch_clear(rb->batch);
    sl__buf_free(&key);
    if (rc == SL_ENOMEM || rc == SL_EFORMAT)
        snprintf(err, cap, "%s restoring key group %d",
                 rc == SL_ENOMEM ? "out of memory" : "inconsistent bytes", kg);
    return rc;
}

static int r_restore_kg(sl__keyed_backend *be, int key_group, const uint8_t *p, size_t len,
                        char *err, size_t cap)
{
    int rc = sl__kg_validate(be, key_group, p, len, lookup_state, err, cap);
    if (rc < 0)
        return rc;
    return apply_kg((rdb *)be, key_group, p, len, err, cap);
}

/* ---- Lifecycle -------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(path) < 0)
        SL_WARN("event=rocksdb_cleanup_failed path=%s error=\"%s\"", path, strerror(errno));
    return 0;
}

/* Removes the working directory and everything in it. */
static void remove_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* mkdir -p. 0, or -1 with errno (ENOTDIR when a component is a file). */
static int make_dirs(const char *path)
{
    size_t n = strlen(path);
    char *p = sl__malloc(n + 1);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(p, path, n + 1);
    int rc = 0;
    for (size_t i = 1; i <= n && rc == 0; i++) {
        if (p[i] != '/' && p[i] != 0)
            continue;
        char c = p[i];
        p[i] = 0;
        struct stat sb;
        if (mkdir(p, 0777) < 0) {
            if (errno != EEXIST || stat(p, &sb) < 0)
                rc = -1;
            else if (!S_ISDIR(sb.st_mode)) {
                errno = ENOTDIR;
                rc = -1;
            }
        }
        p[i] = c;
    }
    sl__free(p);
    return rc;
}

static void rdb_destroy(sl__keyed_backend *be)
{
    rdb *rb = (rdb *)be;
    SL_ASSERT(atomic_load(&rb->live_snapshots) == 0); /* destroy comes after every release */
    for (cursor *c = rb->cursors; c;) {
        cursor *next = c->next;
        if (c->it)
            rocksdb_iter_destroy(c->it);
        rocksdb_readoptions_destroy(c->ro);
        sl__free(c->buf);
        sl__free(c);
        c = next;
    }
    for (size_t i = 0; i < rb->nstates; i++)
        free_state(rb->states[i]);
    sl__free(rb->states);
    if (rb->db)
        rocksdb_close(rb->db);
    if (rb->batch)
        rocksdb_writebatch_destroy(rb->batch);
    if (rb->ro)
        rocksdb_readoptions_destroy(rb->ro);
    if (rb->wo)
        rocksdb_writeoptions_destroy(rb->wo);
    if (rb->opts)
        rocksdb_options_destroy(rb->opts);
    if (rb->cache)
        rocksdb_cache_destroy(rb->cache);
    sl__arena_close(&rb->views);
    sl__free(rb->walk);
    for (size_t i = 0; i < rb->nuploaded; i++) {
        sl__free(rb->uploaded[i].name);
        sl__free(rb->uploaded[i].shared);
    }
    sl__free(rb->uploaded);
    pthread_mutex_destroy(&rb->up_mu);
    if (rb->workdir) {
        remove_tree(rb->workdir);
        SL_DEBUG("event=rocksdb_closed dir=%s", rb->workdir);
    }
    sl__free(rb->workdir);
    sl__free(rb->dbdir);
    sl__free(rb);
}

int sl__rocksdb_db_options(const sl__rocksdb_options *o, rocksdb_options_t **out,
                           rocksdb_cache_t **cache_out, sl__rocksdb_stats *sizes, char *err,
                           size_t cap)
{
    memset(sizes, 0, sizeof *sizes);
    *cache_out = NULL;
    rocksdb_options_t *base = rocksdb_options_create();
    rocksdb_options_t *opts = *out = rocksdb_options_create();
    char *e = NULL;
    /* Not in 7.8's C API as a setter: the database is removed right after closing, so the
     * memtables need not be flushed then. */
    rocksdb_get_options_from_string(base, "avoid_flush_during_shutdown=true", opts, &e);
    rocksdb_options_destroy(base);
    if (e) {
        snprintf(err, cap, "RocksDB set options failed: %s", e);
        rocksdb_free(e);
        return SL_ESTATE;
    }
    rocksdb_options_set_create_if_missing(opts, 1);
    rocksdb_options_set_error_if_exists(opts, 1);
    rocksdb_options_set_info_log_level(opts, 2); /* WARN: the LOG file stays small */
    rocksdb_options_set_keep_log_file_num(opts, 2);
    rocksdb_options_set_max_log_file_size(opts, MIB);
    rocksdb_options_set_stats_dump_period_sec(opts, 0);
    rocksdb_options_set_merge_operator(
        opts, rocksdb_mergeoperator_create(NULL, list_merge_destroy, list_full_merge,
                                           list_partial_merge, list_merge_free, list_merge_name));
    if (!o->managed)
        return 0;
    size_t total = o->memory_size > 0 ? (size_t)o->memory_size : 64 * MIB;
    double ratio = o->write_buffer_ratio;
    if (!(ratio >= 0 && ratio <= 1))
        ratio = 0.5;
    size_t wb = (size_t)((double)total * ratio);
    if (wb < MIB)
        wb = MIB;
    size_t cache = total > wb + MIB ? total - wb : MIB;
    size_t per_cf = wb / 2;
    if (per_cf > 64 * MIB)
        per_cf = 64 * MIB;
    if (per_cf < 256 * 1024)
        per_cf = 256 * 1024;
    rocksdb_cache_t *lru = *cache_out = rocksdb_cache_create_lru(cache);
    sizes->block_cache_capacity = cache;
    sizes->write_buffer_budget = wb;
    sizes->write_buffer_size = per_cf;
    rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(t, lru);
    /* Index and filter blocks live in the cache too, so the budget bounds them; partitioned
     * (two-level), with only the small top level pinned, so that a point read loads one
     * index and one filter partition instead of a whole file's index and filter. Without
     * partitions a cache smaller than the working set keeps evicting and re-reading whole
     * filters: ~10x slower reads once state outgrows the cache (measured on 1M keys). */
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(t, 1);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(t, 1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(t, 1);
    rocksdb_block_based_options_set_index_type(
        t, rocksdb_block_based_table_index_type_two_level_index_search);
    rocksdb_block_based_options_set_partition_filters(t, 1);
    rocksdb_block_based_options_set_pin_top_level_index_and_filter(t, 1);
    rocksdb_block_based_options_set_format_version(t, 5);
    rocksdb_block_based_options_set_filter_policy(t, rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_options_set_block_based_table_factory(opts, t);
    rocksdb_block_based_options_destroy(t);
    rocksdb_options_set_db_write_buffer_size(opts, wb);
    rocksdb_options_set_write_buffer_size(opts, per_cf);
    rocksdb_options_set_max_write_buffer_number(opts, 2);
    /* A bloom filter over whole keys in each memtable (2 % of it: about 8 bits per entry of
     * small state): a get of a key the memtable does not hold (most of them, once state
     * outgrows the write buffers) skips the skip-list search, which was half of a
     * get + update's time at 1 M keys. */
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(opts, 0.02);
    rocksdb_options_set_memtable_whole_key_filtering(opts, 1);
    return 0;
}

/* The database options: see the file comment. */
static int make_options(rdb *rb, const sl__rocksdb_options *o, char *err, size_t cap)
{
    sl__rocksdb_stats sizes;
    int rc = sl__rocksdb_db_options(o, &rb->opts, &rb->cache, &sizes, err, cap);
    rb->cache_capacity = sizes.block_cache_capacity;
    rb->wb_budget = sizes.write_buffer_budget;
    rb->wb_size = sizes.write_buffer_size;
    return rc;
}

/* "<dir>/sluice-<name>-<subtask>-XXXXXX" with name reduced to [A-Za-z0-9._-], at most 64. */
static char *workdir_template(const char *dir, const char *name, int subtask)
{
    char clean[65];
    size_t n = 0;
    for (const char *p = name && *name ? name : "op"; *p && n < sizeof clean - 1; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_';
        clean[n++] = ok ? c : '_';
    }
    clean[n] = 0;
    size_t len = strlen(dir) + n + 48;
    char *t = sl__malloc(len);
    if (t)
        snprintf(t, len, "%s/sluice-%s-%d-XXXXXX", dir, clean, subtask);
    return t;
}

void sl__rocksdb_options_default(sl__rocksdb_options *o)
{
    *o = (sl__rocksdb_options){
        .localdir = NULL,
        .name = NULL,
        .subtask = 0,
        .managed = true,
        .memory_size = 64 * (int64_t)MIB,
        .write_buffer_ratio = 0.5,
        .incremental = false,
    };
}

void sl__rocksdb_options_from_config(const sl__config *c, sl__rocksdb_options *o)
{
    sl__rocksdb_options_default(o);
    if (!c)
        return;
    o->localdir = sl__config_get(c, "state.backend.rocksdb.localdir");
    o->managed = sl__config_bool(c, "state.backend.rocksdb.memory.managed");
    o->memory_size = sl__config_memory(c, "state.backend.rocksdb.memory.fixed-per-subtask");
    o->write_buffer_ratio = sl__config_double(c, "state.backend.rocksdb.memory.write-buffer-ratio");
    o->incremental = sl__config_bool(c, "state.backend.incremental");
}

bool sl__backend_is_rocksdb(const sl__keyed_backend *be)
{
    return be && be->ops == &rdb_ops;
}

void sl__rocksdb_backend_stats(sl__keyed_backend *be, sl__rocksdb_stats *out)
{
    SL_ASSERT(sl__backend_is_rocksdb(be));
    rdb *rb = (rdb *)be;
    memset(out, 0, sizeof *out);
    out->workdir = rb->workdir;
    out->dbdir = rb->dbdir;
    out->block_cache_capacity = rb->cache ? rocksdb_cache_get_capacity(rb->cache) : 0;
    out->block_cache_usage = rb->cache ? rocksdb_cache_get_usage(rb->cache) : 0;
    out->write_buffer_budget = rb->wb_budget;
    out->write_buffer_size = rb->wb_size;
    uint64_t v = 0;
    if (rocksdb_property_int(rb->db, "rocksdb.size-all-mem-tables", &v) == 0)
        out->memtable_bytes += v;
    for (size_t i = 0; i < rb->nstates; i++)
        if (rocksdb_property_int_cf(rb->db, rb->states[i]->cf, "rocksdb.size-all-mem-tables", &v) ==
            0)
            out->memtable_bytes += v;
    out->column_families = rb->nstates;
    out->live_snapshots = atomic_load(&rb->live_snapshots);
}

int sl__rocksdb_backend_flush(sl__keyed_backend *be, char *err, size_t cap)
{
    SL_ASSERT(sl__backend_is_rocksdb(be));
    rdb *rb = (rdb *)be;
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    int rc = 0;
    for (size_t i = 0; i < rb->nstates && rc == 0; i++) {
        char *e = NULL;
        rocksdb_flush_cf(rb->db, fo, rb->states[i]->cf, &e);
        if (e)
            rc = rdb_fail(rb, e, "flush", rb->states[i]->name, NULL, err, cap);
    }
    rocksdb_flushoptions_destroy(fo);
    return rc;
}

int sl__rocksdb_backend_scratch_dir(sl__keyed_backend *be, char **out, char *err, size_t cap)
{
    SL_ASSERT(sl__backend_is_rocksdb(be));
    rdb *rb = (rdb *)be;
    size_t n = strlen(rb->workdir) + 24;
    char *d = sl__malloc(n);
    if (!d) {
        snprintf(err, cap, "out of memory");
        return SL_ENOMEM;
    }
    snprintf(d, n, "%s/restore-XXXXXX", rb->workdir);
    if (!mkdtemp(d)) {
        snprintf(err, cap, "cannot create a restore directory in %s: %s", rb->workdir,
                 strerror(errno));
        sl__free(d);
        return SL_EIO;
    }
    *out = d;
    return 0;
}

/* Deletes key groups [from, to) from every entry of rs (to may be 65536). */
static int delete_kgs(rdb *rb, rstate *rs, int from, int to, char *err, size_t cap)
{
    if (from >= to)
        return 0;
    uint8_t lo[KG_BYTES], hi[KG_BYTES + 16];
    size_t hn = KG_BYTES;
    put_kg(lo, from);
    if (to < (1 << 16)) {
        put_kg(hi, to);
    } else {
        memset(hi, 0xff, sizeof hi); /* above every key of the last key group */
        hn = sizeof hi;
    }
    char *e = NULL;
    rocksdb_delete_range_cf(rb->db, rb->wo, rs->cf, (const char *)lo, KG_BYTES, (const char *)hi,
                            hn, &e);
    return e ? rdb_fail(rb, e, "delete_range", rs->name, NULL, err, cap) : 0;
}

/* Opens the database in rb->dbdir with every column family it has and takes its states
 * from the records in the default column family. */
static int open_existing(rdb *rb, char *err, size_t cap)
{
    char *e = NULL;
    size_t ncf = 0;
    char **names = rocksdb_list_column_families(rb->opts, rb->dbdir, &ncf, &e);
    if (e)
        return rdb_fail(rb, e, "list column families", NULL, NULL, err, cap);
    const rocksdb_options_t **cfo = sl__calloc(ncf ? ncf : 1, sizeof *cfo);
    rocksdb_column_family_handle_t **h = sl__calloc(ncf ? ncf : 1, sizeof *h);
    int rc = 0;
    if (!cfo || !h) {
        snprintf(err, cap, "out of memory opening %s", rb->dbdir);
        rc = SL_ENOMEM;
    } else {
        for (size_t i = 0; i < ncf; i++)
            cfo[i] = rb->opts;
        rocksdb_options_set_error_if_exists(rb->opts, 0);
        rb->db = rocksdb_open_column_families(rb->opts, rb->dbdir, (int)ncf,
                                              (const char *const *)names, cfo, h, &e);
        rocksdb_options_set_error_if_exists(rb->opts, 1);
        if (e) {
            rb->db = NULL;
            rc = rdb_fail(rb, e, "open (restored)", NULL, NULL, err, cap);
        }
    }
    size_t plen = sizeof CF_PREFIX - 1;
    for (size_t i = 0; i < ncf && rb->db; i++) {
        if (!strcmp(names[i], "default")) {
            rocksdb_column_family_handle_destroy(h[i]);
            continue;
        }
        size_t vlen = 0;
        char *v = NULL;
        if (rc == 0 && strncmp(names[i], CF_PREFIX, plen)) {
            snprintf(err, cap,
                     "the restored database %s has a column family \"%s\" that is no Sluice "
                     "state",
                     rb->dbdir, names[i]);
            rc = SL_EFORMAT;
        } else if (rc == 0) {
            v = rocksdb_get(rb->db, rb->ro, names[i], strlen(names[i]), &vlen, &e);
            if (e)
                rc = rdb_fail(rb, e, "get (state record)", names[i] + plen, NULL, err, cap);
            else if (!v || vlen < 1 || !strcmp(sl__state_kind_name(v[0]), "?")) {
                snprintf(err, cap,
                         "the restored database %s has no valid record of the kind of state "
                         "\"%s\"",
                         rb->dbdir, names[i] + plen);
                rc = SL_EFORMAT;
            }
        }
        rstate *rs = NULL;
        if (rc == 0) {
            int code;
            rs = new_state(rb, names[i] + plen, strlen(names[i] + plen), (sl_state_kind)v[0], h[i],
                           err, cap, &code);
            if (!rs)
                rc = code;
            else if (vlen > 1)
                rs->signature = sl__strndup(v + 1, vlen - 1); /* NULL: checked again */
        }
        rocksdb_free(v);
        if (!rs)
            rocksdb_column_family_handle_destroy(h[i]);
    }
    sl__free(cfo);
    sl__free(h);
    rocksdb_list_column_families_destroy(names, ncf);
    return rc;
}

int sl__rocksdb_backend_adopt(sl__keyed_backend *be, const char *dir, int keep_start, int keep_end,
                              char *err, size_t cap)
{
    SL_ASSERT(sl__backend_is_rocksdb(be));
    rdb *rb = (rdb *)be;
    if (rb->nstates || atomic_load(&rb->live_snapshots)) {
        snprintf(err, cap, "a RocksDB backend adopts a restored database only while empty");
        return SL_EINVAL;
    }
    rocksdb_close(rb->db);
    rb->db = NULL;
    remove_tree(rb->dbdir);
    if (rename(dir, rb->dbdir) < 0) {
        snprintf(err, cap, "cannot move the restored database %s to %s: %s", dir, rb->dbdir,
                 strerror(errno));
        return SL_EIO;
    }
    int rc = open_existing(rb, err, cap);
    if (keep_start < be->kg_start)
        keep_start = be->kg_start;
    if (keep_end > be->kg_end)
        keep_end = be->kg_end;
    for (size_t i = 0; i < rb->nstates && rc == 0; i++) {
        rstate *rs = rb->states[i];
        rc = delete_kgs(rb, rs, 0, keep_start, err, cap);
        if (rc == 0)
            rc = delete_kgs(rb, rs, keep_end, 1 << 16, err, cap);
        for (int kg = keep_start; kg < keep_end; kg++)
            rs->touched[kg - be->kg_start] = 1;
    }
    SL_DEBUG("event=rocksdb_adopted dir=%s states=%zu key_groups=[%d,%d) rc=%d", rb->dbdir,
             rb->nstates, keep_start, keep_end, rc);
    return rc;
}

void sl__rocksdb_backend_set_uploaded(sl__keyed_backend *be, const char *name, const char *shared)
{
    SL_ASSERT(sl__backend_is_rocksdb(be));
    note_uploaded((rdb *)be, name, shared);
}

static const sl__backend_ops rdb_ops = {
    .name = "rocksdb",
    .destroy = rdb_destroy,
    .attach = r_attach,
    .for_each_key = r_for_each_key,
    .size = r_size,
    .snapshot_kg = r_snapshot_kg,
    .restore_kg = r_restore_kg,
    .snapshot_begin = r_snapshot_begin,
    .release_views = rdb_release_views,
};

sl__keyed_backend *sl__rocksdb_backend_create(const sl__rocksdb_options *o, int max_parallelism,
                                              int kg_start, int kg_end,
                                              const sl__schema *key_schema, char *err, size_t cap,
                                              int *code)
{
    int dummy;
    if (!code)
        code = &dummy;
    *code = SL_EINVAL;
    if (max_parallelism < 1 || max_parallelism > (1 << 16) || kg_start < 0 || kg_end < kg_start ||
        kg_end > max_parallelism) {
        snprintf(err, cap,
                 "invalid key-group range [%d, %d) of max parallelism %d for the RocksDB backend "
                 "(at most 65536 key groups)",
                 kg_start, kg_end, max_parallelism);
        return NULL;
    }
    sl__rocksdb_options defaults;
    if (!o) {
        sl__rocksdb_options_default(&defaults);
        o = &defaults;
    }
    *code = SL_ENOMEM;
    rdb *rb = sl__calloc(1, sizeof *rb);
    if (!rb) {
        snprintf(err, cap, "out of memory creating the RocksDB state backend");
        return NULL;
    }
    atomic_init(&rb->live_snapshots, 0);
    pthread_mutex_init(&rb->up_mu, NULL);
    rb->incremental = o->incremental;
    sl__arena_init(&rb->views);
    if (sl__keyed_backend_init(&rb->base, &rdb_ops, max_parallelism, kg_start, kg_end, key_schema) <
        0) {
        sl__free(rb);
        snprintf(err, cap, "out of memory creating the RocksDB state backend");
        return NULL;
    }
    const char *dir = o->localdir && *o->localdir ? o->localdir : getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    char *tmpl = NULL;
    int md = make_dirs(dir), md_errno = errno;
    if (md < 0 && md_errno == ENOMEM) {
        snprintf(err, cap, "out of memory creating the RocksDB state backend");
    } else if (md < 0) {
        *code = SL_EIO;
        snprintf(err, cap,
                 "cannot create the RocksDB local directory %s (state.backend.rocksdb.localdir): "
                 "%s",
                 dir, strerror(md_errno));
    } else if (!(tmpl = workdir_template(dir, o->name, o->subtask))) {
        snprintf(err, cap, "out of memory creating the RocksDB state backend");
    } else if (!mkdtemp(tmpl)) {
        *code = SL_EIO;
        snprintf(err, cap, "cannot create a RocksDB working directory in %s: %s", dir,
                 strerror(errno));
    } else {
        rb->workdir = tmpl;
        tmpl = NULL;
        size_t n = strlen(rb->workdir) + 4;
        if ((rb->dbdir = sl__malloc(n)))
            snprintf(rb->dbdir, n, "%s/db", rb->workdir);
        else
            snprintf(err, cap, "out of memory creating the RocksDB state backend");
    }
    sl__free(tmpl);
    if (!rb->dbdir) {
        sl__keyed_backend_destroy(&rb->base);
        return NULL;
    }
    if ((*code = make_options(rb, o, err, cap)) < 0) {
        sl__keyed_backend_destroy(&rb->base);
        return NULL;
    }
    char *e = NULL;
    rb->db = rocksdb_open(rb->opts, rb->dbdir, &e);
    if (e) {
        *code = rdb_fail(rb, e, "open", NULL, NULL, err, cap);
        rb->db = NULL;
        sl__keyed_backend_destroy(&rb->base);
        return NULL;
    }
    rb->ro = rocksdb_readoptions_create();
    rb->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_disable_WAL(rb->wo, 1);
    rb->batch = rocksdb_writebatch_create();
    SL_DEBUG("event=rocksdb_opened dir=%s managed=%d block_cache=%zu write_buffers=%zu", rb->dbdir,
             (int)o->managed, rb->cache_capacity, rb->wb_budget);
    *code = 0;
    return &rb->base;
}

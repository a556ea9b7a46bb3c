/*
 * state.c - the sl_state handles and sluice.h's state functions, written once for every
 * backend: checking the call against the state's kind, the current key and read-only
 * broadcast state, type-checking rows against the schema, serializing them (state copies
 * everything it keeps), running reduce and aggregate functions, and iterators. Storage is
 * reached through the handle's sl__state_ops (heap backend, operator store).
 *
 * Also here: the parts of the keyed backend interface that are the same for every backend
 * (current key, registration, dispatch to sl__backend_ops), the backend factory that picks
 * heap or RocksDB by configuration, the iterator pool, the validation of serialized rows
 * and of canonical key-group sections used by every backend's restore.
 *
 * Lifetimes: rows read from state are views into state memory (heap) or into the backend's
 * view arena (RocksDB), valid until the next write to any state of the same backend or
 * store or the end of the call into user code, whichever comes first (sluice.h). Rows given
 * to writers are serialized into the handle's scratch buffer before storage sees them, so a
 * row may hold views into state memory (a value just read, modified and written back)
 * without being clobbered.
 *
 * Errors from storage (a RocksDB read or write that failed) arrive as negative codes from
 * sl__state_ops, already reported through sl_fail by the backend; they are returned to the
 * caller as they are.
 */
#include "core/alloc.h"
#include "core/config.h"
#include "core/hash.h"
#include "core/log.h"
#include "state/rocksdb/rocksdb_backend.h"
#include "state/state_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- Messages ----------------------------------------------------------------------------*/

int sl__state_fail(sl_state *st, int code, const char *fmt, ...)
{
    if (st && st->ctx) {
        char msg[640];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        sl_fail(st->ctx, "%s", msg);
    }
    return code;
}

const char *sl__state_kind_name(int kind)
{
    switch (kind) {
    case SL_STATE_VALUE:
        return "VALUE";
    case SL_STATE_LIST:
        return "LIST";
    case SL_STATE_REDUCING:
        return "REDUCING";
    case SL_STATE_AGGREGATING:
        return "AGGREGATING";
    case SL_STATE_MAP:
        return "MAP";
    }
    return "?";
}

/* "VALUE", "operator LIST", "broadcast MAP". */
static const char *kind_desc(const sl_state *st)
{
    if (st->origin == SL__ORIGIN_OPERATOR)
        return "operator LIST";
    if (st->origin == SL__ORIGIN_BROADCAST)
        return "broadcast MAP";
    return sl__state_kind_name(st->kind);
}

/* The indefinite article for a kind description: "an AGGREGATING", "a VALUE". */
static const char *article(const char *desc)
{
    return strchr("AEIOUaeiou", desc[0]) ? "an" : "a";
}

void sl__state_describe(const sl_state *st, char *buf, size_t cap)
{
    switch (st->kind) {
    case SL_STATE_MAP:
        snprintf(buf, cap, "%s %s state of \"%s\" -> \"%s\"", article(kind_desc(st)), kind_desc(st),
                 st->key_schema->text, st->schema->text);
        break;
    case SL_STATE_AGGREGATING:
        snprintf(buf, cap, "an AGGREGATING state of \"%s\" (accumulator \"%s\", result \"%s\")",
                 st->schema->text, st->acc_schema->text, st->result_schema->text);
        break;
    default:
        snprintf(buf, cap, "%s %s state of \"%s\"", article(kind_desc(st)), kind_desc(st),
                 st->schema->text);
        break;
    }
}

/* ---- Handles -----------------------------------------------------------------------------*/

/* Parses one schema of a descriptor into *out; on failure fills err and *code. */
static bool parse_schema(const char *name, const char *what, const char *text, sl__schema **out,
                         char *err, size_t cap, int *code)
{
    char perr[256];
    *out = sl__schema_parse(text, perr, sizeof perr);
    if (*out)
        return true;
    *code = strstr(perr, "out of memory") ? SL_ENOMEM : SL_EINVAL;
    snprintf(err, cap, "state \"%s\": %s: %s", name, what, perr);
    return false;
}

sl_state *sl__state_new(const sl_state_desc *d, sl_ctx *ctx, char *err, size_t cap, int *code)
{
    *code = SL_EINVAL;
    if (!d) {
        snprintf(err, cap, "state descriptor is NULL");
        return NULL;
    }
    if (!d->name || !*d->name) {
        snprintf(err, cap, "state descriptor has no name");
        return NULL;
    }
    const char *name = d->name;
    if (d->kind < SL_STATE_VALUE || d->kind > SL_STATE_MAP) {
        snprintf(err, cap,
                 "state \"%s\": unknown kind %d (expected SL_STATE_VALUE, SL_STATE_LIST, "
                 "SL_STATE_REDUCING, SL_STATE_AGGREGATING or SL_STATE_MAP)",
                 name, (int)d->kind);
        return NULL;
    }
    if (!d->schema) {
        snprintf(err, cap, "state \"%s\": the descriptor has no schema", name);
        return NULL;
    }
    if (d->kind == SL_STATE_MAP && !d->key_schema) {
        snprintf(err, cap, "state \"%s\": MAP state needs key_schema (the user key schema)", name);
        return NULL;
    }
    if (d->kind == SL_STATE_REDUCING && !d->reduce) {
        snprintf(err, cap, "state \"%s\": REDUCING state needs a reduce function", name);
        return NULL;
    }
    const sl_aggregate_fn *ag = d->aggregate;
    if (d->kind == SL_STATE_AGGREGATING &&
        (!ag || !ag->create || !ag->add || !ag->result || !ag->acc_schema || !ag->result_schema)) {
        snprintf(err, cap,
                 "state \"%s\": AGGREGATING state needs an aggregate function with create, "
                 "add, result, acc_schema and result_schema",
                 name);
        return NULL;
    }
    sl_state *st = sl__calloc(1, sizeof *st);
    if (!st || !(st->name = sl__strdup(name))) {
        sl__free(st);
        *code = SL_ENOMEM;
        snprintf(err, cap, "out of memory registering state \"%s\"", name);
        return NULL;
    }
    st->kind = d->kind;
    st->ctx = ctx;
    st->reduce = d->reduce;
    if (ag) {
        st->agg = *ag;
        st->agg.acc_schema = st->agg.result_schema = NULL; /* not kept: parsed below */
    }
    bool ok = parse_schema(name, "schema", d->schema, &st->schema, err, cap, code);
    if (ok && d->kind == SL_STATE_MAP)
        ok = parse_schema(name, "key schema", d->key_schema, &st->key_schema, err, cap, code);
    if (ok && d->kind == SL_STATE_AGGREGATING) {
        ok = parse_schema(name, "accumulator schema", ag->acc_schema, &st->acc_schema, err, cap,
                          code) &&
             parse_schema(name, "result schema", ag->result_schema, &st->result_schema, err, cap,
                          code);
    }
    if (!ok) {
        sl__state_free(st);
        return NULL;
    }
    st->stored = st->acc_schema ? st->acc_schema : st->schema;
    return st;
}

void sl__state_free(sl_state *st)
{
    if (!st)
        return;
    sl__free(st->name);
    sl__schema_destroy(st->schema);
    sl__schema_destroy(st->key_schema);
    sl__schema_destroy(st->acc_schema);
    sl__schema_destroy(st->result_schema);
    sl__free(st->ns);
    sl__free(st->scratch);
    sl__free(st);
}

static bool same_schema(const sl__schema *a, const sl__schema *b)
{
    return (!a && !b) || (a && b && sl__schema_equal(a, b));
}

bool sl__state_same_decl(const sl_state *a, const sl_state *b)
{
    return a->kind == b->kind && same_schema(a->schema, b->schema) &&
           same_schema(a->key_schema, b->key_schema) && same_schema(a->acc_schema, b->acc_schema) &&
           same_schema(a->result_schema, b->result_schema);
}

void sl__state_set_readonly(sl_state *st, bool readonly)
{
    if (st)
        st->readonly = readonly;
}

/* ---- Validation of serialized rows ------------------------------------------------------ */

bool sl__row_valid(const sl__schema *s, const uint8_t *p, size_t n)
{
    sl_value tmp[s->n > 0 ? s->n : 1];
    return sl__row_read(s, p, p + n, tmp) == p + n;
}

bool sl__elems_valid(const sl__schema *s, const uint8_t *p, size_t n, uint64_t count)
{
    sl__rd r = {p, p + n};
    for (uint64_t i = 0; i < count; i++) {
        const uint8_t *e;
        size_t len;
        if (!sl__rd_bytes(&r, &e, &len) || (s && !sl__row_valid(s, e, len)))
            return false;
    }
    return r.p == r.end;
}

bool sl__pairs_valid(const sl__schema *ks, const sl__schema *vs, const uint8_t *p, size_t n,
                     uint64_t count)
{
    sl__rd r = {p, p + n};
    for (uint64_t i = 0; i < count; i++) {
        const uint8_t *k, *v;
        size_t kn, vn;
        if (!sl__rd_bytes(&r, &k, &kn) || (ks && !sl__row_valid(ks, k, kn)) ||
            !sl__rd_bytes(&r, &v, &vn) || (vs && !sl__row_valid(vs, v, vn)))
            return false;
    }
    return r.p == r.end;
}

bool sl__elems_count(const uint8_t *p, size_t n, uint64_t *count)
{
    sl__rd r = {p, p + n};
    uint64_t c = 0;
    while (r.p < r.end) {
        const uint8_t *e;
        size_t len;
        if (!sl__rd_bytes(&r, &e, &len))
            return false;
        c++;
    }
    *count = c;
    return true;
}

bool sl__payload_valid(const sl_state *st, int kind, const uint8_t *p, size_t n)
{
    if (sl__kind_is_valuelike(kind))
        return !st || sl__row_valid(st->stored, p, n);
    sl__rd r = {p, p + n};
    uint64_t count;
    if (!sl__rd_varint(&r, &count))
        return false;
    size_t rest = (size_t)(r.end - r.p);
    if (kind == SL_STATE_LIST)
        return sl__elems_valid(st ? st->schema : NULL, r.p, rest, count);
    return sl__pairs_valid(st ? st->key_schema : NULL, st ? st->schema : NULL, r.p, rest, count);
}

int sl__kg_validate(sl__keyed_backend *be, int kg, const uint8_t *p, size_t len,
                    sl__kg_lookup lookup, char *err, size_t cap)
{
    sl__rd r = {p, p + len};
    uint64_t nst;
    if (!sl__rd_varint(&r, &nst)) {
        snprintf(err, cap, "key group %d: the state count is truncated", kg);
        return SL_EFORMAT;
    }
    sl__kg_section *seen = NULL;
    size_t nseen = 0, seen_cap = 0;
    int rc = 0;
    for (uint64_t i = 0; i < nst && rc == 0; i++) {
        sl__kg_section s;
        if (!sl__kg_read_section(&r, &s)) {
            snprintf(err, cap, "key group %d: state %llu of %llu: its header is truncated", kg,
                     (unsigned long long)i, (unsigned long long)nst);
            rc = SL_EFORMAT;
            break;
        }
        int nl = (int)(s.namelen > 200 ? 200 : s.namelen);
        const char *nm = (const char *)s.name;
        if (!s.namelen || memchr(s.name, 0, s.namelen)) {
            snprintf(err, cap, "key group %d: state %llu has an empty or malformed name", kg,
                     (unsigned long long)i);
            rc = SL_EFORMAT;
            break;
        }
        if (s.kind < SL_STATE_VALUE || s.kind > SL_STATE_MAP) {
            snprintf(err, cap, "key group %d: state \"%.*s\": unknown kind %d", kg, nl, nm, s.kind);
            rc = SL_EFORMAT;
            break;
        }
        for (size_t j = 0; j < nseen; j++) {
            if (seen[j].namelen == s.namelen && !memcmp(seen[j].name, s.name, s.namelen)) {
                snprintf(err, cap, "key group %d: state \"%.*s\" appears twice", kg, nl, nm);
                rc = SL_EFORMAT;
            }
        }
        if (rc)
            break;
        if (nseen == seen_cap) {
            size_t c = seen_cap ? seen_cap * 2 : 8;
            sl__kg_section *ns = sl__realloc(seen, c * sizeof *ns);
            if (!ns) {
                snprintf(err, cap, "out of memory restoring key group %d", kg);
                rc = SL_ENOMEM;
                break;
            }
            seen = ns;
            seen_cap = c;
        }
        seen[nseen++] = s;
        const sl_state *st = NULL;
        int have = lookup(be, s.name, s.namelen, &st);
        if (have && have != s.kind) {
            snprintf(err, cap,
                     "key group %d: state \"%.*s\" is %s state in the snapshot but %s here", kg, nl,
                     nm, sl__state_kind_name(s.kind), sl__state_kind_name(have));
            rc = SL_EFORMAT;
            break;
        }
        for (uint64_t e = 0; e < s.nentries; e++) {
            const uint8_t *key, *ns, *pl;
            size_t kl, nsl, pll;
            const char *what = NULL;
            if (!sl__rd_bytes(&r, &key, &kl))
                what = "its key is truncated";
            else if (sl__key_group(sl__hash(key, kl), be->max_parallelism) != kg)
                what = "its key belongs to another key group";
            else if (be->key_schema && !sl__row_valid(be->key_schema, key, kl))
                what = "its key does not parse under the key schema";
            else if (!sl__rd_bytes(&r, &ns, &nsl))
                what = "its namespace is truncated";
            else if (!sl__rd_bytes(&r, &pl, &pll))
                what = "its value is truncated";
            else if (!sl__payload_valid(st, s.kind, pl, pll))
                what = st ? "its value does not parse under the state's schema"
                          : "its value is malformed";
            if (what) {
                snprintf(err, cap, "key group %d: state \"%.*s\": entry %llu of %llu: %s", kg, nl,
                         nm, (unsigned long long)e, (unsigned long long)s.nentries, what);
                rc = SL_EFORMAT;
                break;
            }
        }
    }
    sl__free(seen);
    if (rc == 0 && r.p != r.end) {
        snprintf(err, cap, "key group %d: %zu unexpected bytes after the last state", kg,
                 (size_t)(r.end - r.p));
        rc = SL_EFORMAT;
    }
    return rc;
}

/* ---- Iterator pool ---------------------------------------------------------------------- */

#define ITER_BLOCK 8

struct sl__iter_block {
    sl__iter_block *next;
    sl_iter it[ITER_BLOCK];
};

sl_iter *sl__iter_acquire(sl__iter_pool *pool, sl_state *st)
{
    if (!pool->free) {
        sl__iter_block *b = sl__xcalloc(1, sizeof *b);
        b->next = pool->blocks;
        pool->blocks = b;
        for (int i = ITER_BLOCK - 1; i >= 0; i--) {
            b->it[i].pool = pool;
            b->it[i].next_free = pool->free;
            pool->free = &b->it[i];
        }
    }
    sl_iter *it = pool->free;
    pool->free = it->next_free;
    it->next_free = NULL;
    it->st = st;
    it->mod = st->mod;
    it->map = false;
    it->cursor_open = false;
    it->p = it->end = NULL;
    it->tab = NULL;
    it->pos = 0;
    it->cursor = NULL;
    pool->open++;
    return it;
}

void sl__iter_release(sl_iter *it)
{
    if (!it->st)
        return;
    if (it->cursor_open && it->st->ops->map_iter_close)
        it->st->ops->map_iter_close(it);
    it->cursor_open = false;
    sl__iter_pool *pool = it->pool;
    it->st = NULL;
    it->next_free = pool->free;
    pool->free = it;
    pool->open--;
}

void sl__iter_pool_release_all(sl__iter_pool *pool)
{
    if (!pool->open) /* the usual case, checked first: this runs after every record */
        return;
    for (sl__iter_block *b = pool->blocks; b && pool->open; b = b->next)
        for (int i = 0; i < ITER_BLOCK; i++)
            sl__iter_release(&b->it[i]);
}

void sl__iter_pool_close(sl__iter_pool *pool)
{
    sl__iter_pool_release_all(pool);
    sl__iter_block *b = pool->blocks;
    while (b) {
        sl__iter_block *next = b->next;
        sl__free(b);
        b = next;
    }
    memset(pool, 0, sizeof *pool);
}

void sl__state_end_call_slow(sl__keyed_backend *be, sl__operator_store *os)
{
    if (be) {
        sl__iter_pool_release_all(&be->head.iters);
        if (be->ops->release_views)
            be->ops->release_views(be);
    }
    if (os) /* the store starts with its head (state.h) */
        sl__iter_pool_release_all(&((sl__state_head *)(void *)os)->iters);
}

/* ---- Keyed backend: the backend-independent part ---------------------------------------- */

int sl__keyed_backend_init(sl__keyed_backend *be, const sl__backend_ops *ops, int max_parallelism,
                           int kg_start, int kg_end, const sl__schema *key_schema)
{
    memset(be, 0, sizeof *be);
    be->ops = ops;
    be->max_parallelism = max_parallelism;
    be->kg_start = kg_start;
    be->kg_end = kg_end;
    if (key_schema && !(be->key_schema = sl__schema_copy(key_schema)))
        return SL_ENOMEM;
    return 0;
}

sl__keyed_backend *sl__keyed_backend_create(const sl__config *c, const char *op_uid, int subtask,
                                            int max_parallelism, int kg_start, int kg_end,
                                            const sl__schema *key_schema, char *err, size_t cap)
{
    if (max_parallelism < 1 || kg_start < 0 || kg_end < kg_start || kg_end > max_parallelism) {
        snprintf(err, cap, "invalid key-group range [%d, %d) of max parallelism %d", kg_start,
                 kg_end, max_parallelism);
        return NULL;
    }
    const char *type = c ? sl__config_get(c, "state.backend.type") : NULL;
    if (type && !strcmp(type, "rocksdb")) {
        sl__rocksdb_options o;
        sl__rocksdb_options_from_config(c, &o);
        o.name = op_uid;
        o.subtask = subtask;
        return sl__rocksdb_backend_create(&o, max_parallelism, kg_start, kg_end, key_schema, err,
                                          cap, NULL);
    }
    sl__keyed_backend *be = sl__heap_backend_create(max_parallelism, kg_start, kg_end, key_schema);
    if (!be)
        snprintf(err, cap, "out of memory creating the heap state backend");
    return be;
}

void sl__keyed_backend_destroy(sl__keyed_backend *be)
{
    if (!be)
        return;
    sl__iter_pool_close(&be->head.iters);
    for (size_t i = 0; i < be->nstates; i++)
        sl__state_free(be->states[i]);
    sl__free(be->states);
    sl__schema_destroy(be->key_schema);
    be->states = NULL;
    be->nstates = 0;
    be->key_schema = NULL;
    be->ops->destroy(be);
}

void sl__keyed_backend_set_key(sl__keyed_backend *be, const sl__key *key)
{
    SL_ASSERT(key);
    sl__keyed_backend_set_key_parts(be, key->bytes, key->len, key->hash, key->key_group);
}

void sl__keyed_backend_set_key_parts(sl__keyed_backend *be, const uint8_t *bytes, size_t len,
                                     uint64_t hash, int key_group)
{
    SL_ASSERT(key_group >= be->kg_start && key_group < be->kg_end);
    be->key = (sl__key){.bytes = bytes, .len = len, .hash = hash, .key_group = key_group};
    be->has_key = true;
    be->key_epoch++;
    if (be->head.views && !be->head.iters.open)
        be->ops->release_views(be);
}

void sl__keyed_backend_prefetch(sl__keyed_backend *be, const uint64_t *slot_hashes, size_t nslot,
                                const uint64_t *entry_hashes, size_t nentry, uint32_t *entry_hints)
{
    if (be->ops->prefetch)
        be->ops->prefetch(be, slot_hashes, nslot, entry_hashes, nentry, entry_hints);
    else if (nentry)
        memset(entry_hints, 0, nentry * sizeof *entry_hints);
}

const sl__key *sl__keyed_backend_current_key(const sl__keyed_backend *be)
{
    return be && be->has_key ? &be->key : NULL;
}

sl_state *sl__keyed_backend_state(sl__keyed_backend *be, sl_ctx *ctx, const sl_state_desc *d)
{
    char err[512];
    int code;
    if (!be)
        return NULL;
    sl_state *st = sl__state_new(d, ctx, err, sizeof err, &code);
    if (!st) {
        if (ctx)
            sl_fail(ctx, "%s", err);
        return NULL;
    }
    for (size_t i = 0; i < be->nstates; i++) {
        sl_state *old = be->states[i];
        if (strcmp(old->name, st->name))
            continue;
        if (sl__state_same_decl(old, st)) {
            sl__state_free(st);
            return old;
        }
        char was[256], now[256];
        sl__state_describe(old, was, sizeof was);
        sl__state_describe(st, now, sizeof now);
        if (ctx)
            sl_fail(ctx,
                    "state \"%s\" is already declared as %s; it cannot be declared again as %s",
                    old->name, was, now);
        sl__state_free(st);
        return NULL;
    }
    if (be->nstates == be->states_cap) {
        size_t cap = be->states_cap ? be->states_cap * 2 : 4;
        sl_state **states = sl__realloc(be->states, cap * sizeof *states);
        if (!states) {
            if (ctx)
                sl_fail(ctx, "out of memory registering state \"%s\"", st->name);
            sl__state_free(st);
            return NULL;
        }
        be->states = states;
        be->states_cap = cap;
    }
    st->be = be;
    st->iters = &be->head.iters;
    st->origin = SL__ORIGIN_KEYED;
    if (be->ops->attach(be, st, err, sizeof err) < 0) {
        if (ctx)
            sl_fail(ctx, "%s", err);
        sl__state_free(st);
        return NULL;
    }
    be->states[be->nstates++] = st;
    return st;
}

int sl__keyed_backend_for_each_key(sl__keyed_backend *be, sl_state *st,
                                   int (*fn)(void *arg, const sl__key *key), void *arg)
{
    if (!be || !st || st->be != be || !fn)
        return SL_EINVAL;
    return be->ops->for_each_key(be, st, fn, arg);
}

size_t sl__keyed_backend_size(const sl__keyed_backend *be)
{
    return be ? be->ops->size(be) : 0;
}

int sl__keyed_backend_snapshot_kg(sl__keyed_backend *be, int key_group, sl__buf *out)
{
    if (key_group < be->kg_start || key_group >= be->kg_end)
        return SL_EINVAL;
    return be->ops->snapshot_kg(be, key_group, out);
}

int sl__keyed_backend_restore_kg(sl__keyed_backend *be, int key_group, const uint8_t *p, size_t len,
                                 char *err, size_t cap)
{
    if (key_group < be->kg_start || key_group >= be->kg_end) {
        snprintf(err, cap, "key group %d is not in this backend's range [%d, %d)", key_group,
                 be->kg_start, be->kg_end);
        return SL_EINVAL;
    }
    if (!p && len) {
        snprintf(err, cap, "key group %d: no snapshot bytes", key_group);
        return SL_EINVAL;
    }
    static const uint8_t empty = 0;
    return be->ops->restore_kg(be, key_group, p ? p : &empty, len, err, cap);
}

sl__keyed_snapshot *sl__keyed_backend_snapshot_begin(sl__keyed_backend *be)
{
    return be ? be->ops->snapshot_begin(be) : NULL;
}

int sl__keyed_snapshot_write_kg(sl__keyed_snapshot *s, int kg, sl__buf *out)
{
    if (!s || !out || kg < s->kg_start || kg >= s->kg_end)
        return SL_EINVAL;
    return s->ops->write_kg(s, kg, out);
}

void sl__keyed_snapshot_kg_written(sl__keyed_snapshot *s, int kg)
{
    if (s && kg >= s->kg_start && kg < s->kg_end && s->ops->kg_written)
        s->ops->kg_written(s, kg);
}

void sl__keyed_snapshot_release(sl__keyed_snapshot *s)
{
    if (s)
        s->ops->release(s);
}

bool sl__keyed_snapshot_files(sl__keyed_snapshot *s, const char **dir,
                              const sl__snapshot_file **files, size_t *n)
{
    return s && s->ops->files && s->ops->files(s, dir, files, n);
}

void sl__keyed_snapshot_set_uploaded(sl__keyed_snapshot *s, const char *name, const char *shared)
{
    if (s && s->ops->set_uploaded)
        s->ops->set_uploaded(s, name, shared);
}

const char *sl__keyed_backend_snapshot_error(const sl__keyed_backend *be)
{
    return be && be->snap_err[0] ? be->snap_err : "out of memory";
}

/* ---- Checks shared by the public functions ---------------------------------------------- */

static int wrong_kind(sl_state *st, const char *call, const char *want)
{
    return sl__state_fail(st, SL_ESTATE, "state \"%s\" is %s %s state; %s needs %s %s state",
                          st->name, article(kind_desc(st)), kind_desc(st), call, article(want),
                          want);
}

/* The state is of kind (0: any) and, when keyed, has a current key. */
static int check_access(sl_state *st, int kind, const char *call)
{
    if (kind && st->kind != (sl_state_kind)kind)
        return wrong_kind(st, call, sl__state_kind_name(kind));
    if (st->be && !st->be->has_key)
        return sl__state_fail(st, SL_ESTATE,
                              "state \"%s\": %s without a current key (keyed state is scoped "
                              "to the key of the record being processed)",
                              st->name, call);
    return 0;
}

static int check_write(sl_state *st)
{
    if (st->readonly)
        return sl__state_fail(st, SL_EPERM,
                              "broadcast state \"%s\" is read-only in process_element; update "
                              "it in process_broadcast",
                              st->name);
    return 0;
}

/* Type-checks a row given by the user (or returned by a user callback) against s. */
static int check_row(sl_state *st, const sl__schema *s, const sl_value *row, const char *what,
                     const char *sname)
{
    if (!row)
        return sl__state_fail(st, SL_EINVAL, "state \"%s\": the row is NULL", st->name);
    int bad = sl__row_check(s, row);
    if (bad < 0)
        return 0;
    return sl__state_fail(
        st, SL_ESCHEMA, "state \"%s\": %s %d is %s, the state's %s \"%s\" says %s", st->name, what,
        bad, sl__type_name(row[bad].type), sname, s->text, sl__type_name(s->types[bad]));
}

static int check_value_row(sl_state *st, const sl__schema *s, const sl_value *row)
{
    return check_row(st, s, row, "field", "schema");
}

/* The handle's scratch buffer with room for n bytes (per-record path: aborts on OOM). */
static uint8_t *scratch(sl_state *st, size_t n)
{
    if (n > st->scratch_cap) {
        size_t cap = st->scratch_cap ? st->scratch_cap : 64;
        while (cap < n)
            cap *= 2;
        st->scratch = sl__xrealloc(st->scratch, cap);
        st->scratch_cap = cap;
    }
    return st->scratch;
}

/* Reads one stored row; SL_ESTATE if it does not parse (state memory is only written by
 * this module and restore validates, so that would be a bug). Returns 1. */
static int read_row(sl_state *st, const sl__schema *s, const uint8_t *p, size_t n, sl_value *out)
{
    if (sl__row_read(s, p, p + n, out) != p + n)
        return sl__state_fail(st, SL_ESTATE, "state \"%s\": a stored row does not parse as \"%s\"",
                              st->name, s->text);
    return 1;
}

static void fill_null(sl_value *row, int n)
{
    for (int i = 0; i < n; i++)
        row[i] = SL_NULLV;
}

/* Serializes row (already checked) into scratch and stores it as the scope's value. 0 or
 * the storage's error. */
static int put_value(sl_state *st, const sl__schema *s, const sl_value *row)
{
    size_t n = sl__row_size(s, row);
    uint8_t *p = scratch(st, n);
    sl__row_write(s, row, p);
    st->mod++;
    return st->ops->value_put(st, p, n);
}

/* ---- Common ----------------------------------------------------------------------------- */

int sl_state_set_namespace(sl_state *st, const void *ns, size_t len)
{
    if (!st)
        return SL_EINVAL;
    if (!st->be)
        return sl__state_fail(st, SL_EINVAL,
                              "state \"%s\" is %s %s state; sl_state_set_namespace needs "
                              "keyed state",
                              st->name, article(kind_desc(st)), kind_desc(st));
    if (len && !ns)
        return sl__state_fail(st, SL_EINVAL, "state \"%s\": namespace of %zu bytes is NULL",
                              st->name, len);
    if (len == st->ns_len && (!len || !memcmp(st->ns, ns, len)))
        return 0;
    if (len > st->ns_cap) {
        st->ns = sl__xrealloc(st->ns, len);
        st->ns_cap = len;
    }
    if (len)
        memmove(st->ns, ns, len);
    st->ns_len = len;
    st->ns_hash = len ? sl__hash(st->ns, len) : 0;
    st->ns_epoch++;
    return 0;
}

/* The checks every writer starts with: a handle, the right kind for the call, write
 * access (not read-only broadcast state) and, for writers of a row (with_row), the row
 * itself against the state's schema. */
static int begin_write(sl_state *st, sl_state_kind kind, const char *call, bool with_row,
                       const sl_value *row)
{
    if (!st)
        return SL_EINVAL;
    int rc = check_access(st, kind, call);
    if (rc == 0)
        rc = check_write(st);
    if (rc == 0 && with_row)
        rc = check_value_row(st, st->schema, row);
    return rc;
}

int sl_state_clear(sl_state *st)
{
    int rc = begin_write(st, 0, "sl_state_clear", false, NULL);
    if (rc < 0)
        return rc;
    rc = st->ops->clear(st);
    if (rc)
        st->mod++;
    return rc < 0 ? rc : 0;
}

/* ---- VALUE ------------------------------------------------------------------------------ */

/* Reads the stored row of a VALUE or REDUCING state (both keep one row of the schema). */
static int get_stored(sl_state *st, sl_state_kind kind, const char *call, sl_value *out)
{
    if (!st || !out)
        return SL_EINVAL;
    int rc = check_access(st, kind, call);
    if (rc < 0)
        return rc;
    const uint8_t *p;
    size_t n;
    if ((rc = st->ops->value_get(st, &p, &n)) <= 0)
        return rc;
    return read_row(st, st->schema, p, n, out);
}

int sl_value_get(sl_state *st, sl_value *out)
{
    return get_stored(st, SL_STATE_VALUE, "sl_value_get", out);
}

int sl_value_update(sl_state *st, const sl_value *row)
{
    int rc = begin_write(st, SL_STATE_VALUE, "sl_value_update", true, row);
    if (rc < 0)
        return rc;
    return put_value(st, st->schema, row);
}

int sl__value_add(sl_state *st, int f, const sl_value *delta, sl_value *out)
{
    SL_ASSERT(st->kind == SL_STATE_VALUE && !st->readonly && delta->type == st->schema->types[f]);
    uint8_t *p;
    size_t n;
    if (!st->ops->value_ref)
        return 0;
    int rc = st->ops->value_ref(st, &p, &n);
    if (rc <= 0)
        return rc;
    if ((rc = read_row(st, st->schema, p, n, out)) < 0)
        return rc;
    sl_value *v = &out[f];
    if (v->type == SL_NULL)
        return 0;
    sl__add_number(v, delta);
    /* f's 8 bytes end where the fields after it begin: counted from the row's end, that is
     * no work when f is the last field (a sum's usual shape) */
    size_t off = n - 8;
    for (int i = f + 1; i < st->schema->n; i++)
        off -= sl__value_size(&out[i]);
    memcpy(p + off, &v->u.i64, 8); /* as sl__row_write */
    st->mod++;
    return 1;
}

/* The add in place of a backend without one: none, the caller goes the usual way. */
static int no_add_last(sl_state *st, const sl_value *delta, sl_value *sum)
{
    (void)st, (void)delta, (void)sum;
    return 0;
}

sl__value_add_last_fn sl__value_add_last_fn_of(const sl_state *st)
{
    return st->ops->value_add_last ? st->ops->value_add_last : no_add_last;
}

sl__value_add_last_run_fn sl__value_add_last_run_fn_of(const sl_state *st)
{
    return st->ops->value_add_last_run;
}

/* ---- LIST ------------------------------------------------------------------------------- */

int sl_list_add(sl_state *st, const sl_value *row)
{
    int rc = begin_write(st, SL_STATE_LIST, "sl_list_add", true, row);
    if (rc < 0)
        return rc;
    size_t sz = sl__row_size(st->schema, row);
    size_t n = sl__varint_size(sz) + sz;
    uint8_t *p = scratch(st, n);
    sl__row_write(st->schema, row, sl__varint_write(p, sz));
    st->mod++;
    return st->ops->list_append(st, p, n, 1);
}

int sl_list_update(sl_state *st, const sl_value *rows, size_t nrows)
{
    int rc = begin_write(st, SL_STATE_LIST, "sl_list_update", false, NULL);
    if (rc < 0)
        return rc;
    const sl__schema *s = st->schema;
    if (nrows && !rows)
        return sl__state_fail(st, SL_EINVAL, "state \"%s\": sl_list_update of %zu NULL rows",
                              st->name, nrows);
    size_t total = 0;
    for (size_t i = 0; i < nrows; i++) {
        const sl_value *row = rows + i * (size_t)s->n;
        if ((rc = check_value_row(st, s, row)) < 0)
            return rc;
        size_t sz = sl__row_size(s, row);
        total += sl__varint_size(sz) + sz;
    }
    if (!nrows) {
        st->mod++;
        rc = st->ops->clear(st);
        return rc < 0 ? rc : 0;
    }
    uint8_t *p = scratch(st, total), *q = p;
    for (size_t i = 0; i < nrows; i++) {
        const sl_value *row = rows + i * (size_t)s->n;
        q = sl__row_write(s, row, sl__varint_write(q, sl__row_size(s, row)));
    }
    st->mod++;
    return st->ops->list_set(st, p, total, nrows);
}

int sl_list_get(sl_state *st, sl_iter **it)
{
    if (!st || !it)
        return SL_EINVAL;
    *it = NULL;
    int rc = check_access(st, SL_STATE_LIST, "sl_list_get");
    if (rc < 0)
        return rc;
    const uint8_t *p;
    size_t n;
    if ((rc = st->ops->list_get(st, &p, &n)) <= 0)
        return rc;
    sl_iter *i = sl__iter_acquire(st->iters, st);
    i->p = p;
    i->end = p + n;
    *it = i;
    return 1;
}

/* ---- REDUCING --------------------------------------------------------------------------- */

int sl_reducing_add(sl_state *st, const sl_value *row)
{
    int rc = begin_write(st, SL_STATE_REDUCING, "sl_reducing_add", true, row);
    if (rc < 0)
        return rc;
    const sl__schema *s = st->schema;
    const uint8_t *p;
    size_t n;
    if ((rc = st->ops->value_get(st, &p, &n)) < 0)
        return rc;
    if (rc == 0)
        return put_value(st, s, row);
    sl_value cur[s->n], out[s->n];
    if ((rc = read_row(st, s, p, n, cur)) < 0)
        return rc;
    fill_null(out, s->n);
    if ((rc = st->reduce(st->ctx, cur, row, out)) < 0)
        return rc;
    if ((rc = check_row(st, s, out, "reduce result field", "schema")) < 0)
        return rc;
    return put_value(st, s, out); /* out may hold views into cur: put_value copies first */
}

int sl_reducing_get(sl_state *st, sl_value *out)
{
    return get_stored(st, SL_STATE_REDUCING, "sl_reducing_get", out);
}

/* ---- AGGREGATING ------------------------------------------------------------------------ */

int sl_aggregating_add(sl_state *st, const sl_value *row)
{
    int rc = begin_write(st, SL_STATE_AGGREGATING, "sl_aggregating_add", true, row);
    if (rc < 0)
        return rc;
    const sl__schema *as = st->acc_schema;
    sl_value acc[as->n], acc_out[as->n];
    const uint8_t *p;
    size_t n;
    if ((rc = st->ops->value_get(st, &p, &n)) < 0)
        return rc;
    if (rc > 0) {
        if ((rc = read_row(st, as, p, n, acc)) < 0)
            return rc;
    } else {
        fill_null(acc, as->n);
        if ((rc = st->agg.create(st->ctx, acc)) < 0)
            return rc;
        if ((rc = check_row(st, as, acc, "accumulator field", "accumulator schema")) < 0)
            return rc;
    }
    /* acc_out starts as a copy of acc, so add() may update only the fields it changes. */
    memcpy(acc_out, acc, sizeof acc);
    if ((rc = st->agg.add(st->ctx, row, acc, acc_out)) < 0)
        return rc;
    if ((rc = check_row(st, as, acc_out, "accumulator field", "accumulator schema")) < 0)
        return rc;
    return put_value(st, as, acc_out);
}

int sl_aggregating_get(sl_state *st, sl_value *out)
{
    if (!st || !out)
        return SL_EINVAL;
    int rc = check_access(st, SL_STATE_AGGREGATING, "sl_aggregating_get");
    if (rc < 0)
        return rc;
    const sl__schema *as = st->acc_schema;
    const uint8_t *p;
    size_t n;
    if ((rc = st->ops->value_get(st, &p, &n)) <= 0)
        return rc;
    sl_value acc[as->n];
    if ((rc = read_row(st, as, p, n, acc)) < 0)
        return rc;
    fill_null(out, st->result_schema->n);
    if ((rc = st->agg.result(st->ctx, acc, out)) < 0)
        return rc;
    if ((rc = check_row(st, st->result_schema, out, "result field", "result schema")) < 0)
        return rc;
    return 1;
}

/* ---- MAP -------------------------------------------------------------------------------- */

/* Checks and serializes a user key into scratch, leaving room for extra bytes after it. */
static int user_key(sl_state *st, const sl_value *ukey, size_t extra, uint8_t **p, size_t *kn)
{
    int rc = check_row(st, st->key_schema, ukey, "user key field", "key schema");
    if (rc < 0)
        return rc;
    *kn = sl__row_size(st->key_schema, ukey);
    *p = scratch(st, *kn + extra);
    sl__row_write(st->key_schema, ukey, *p);
    return 0;
}

int sl_map_get(sl_state *st, const sl_value *ukey, sl_value *out)
{
    if (!st || !out)
        return SL_EINVAL;
    int rc = check_access(st, SL_STATE_MAP, "sl_map_get");
    uint8_t *k;
    size_t kn;
    if (rc == 0)
        rc = user_key(st, ukey, 0, &k, &kn);
    if (rc < 0)
        return rc;
    const uint8_t *v;
    size_t vn;
    if ((rc = st->ops->map_get(st, k, kn, &v, &vn)) <= 0)
        return rc;
    return read_row(st, st->schema, v, vn, out);
}

int sl_map_put(sl_state *st, const sl_value *ukey, const sl_value *value)
{
    int rc = begin_write(st, SL_STATE_MAP, "sl_map_put", true, value);
    if (rc < 0)
        return rc;
    size_t vn = sl__row_size(st->schema, value);
    uint8_t *k;
    size_t kn;
    if ((rc = user_key(st, ukey, vn, &k, &kn)) < 0)
        return rc;
    sl__row_write(st->schema, value, k + kn);
    st->mod++;
    return st->ops->map_put(st, k, kn, k + kn, vn);
}

int sl_map_remove(sl_state *st, const sl_value *ukey)
{
    int rc = begin_write(st, SL_STATE_MAP, "sl_map_remove", false, NULL);
    uint8_t *k;
    size_t kn;
    if (rc == 0)
        rc = user_key(st, ukey, 0, &k, &kn);
    if (rc < 0)
        return rc;
    rc = st->ops->map_remove(st, k, kn);
    if (rc)
        st->mod++;
    return rc < 0 ? rc : 0;
}

int sl_map_contains(sl_state *st, const sl_value *ukey)
{
    if (!st)
        return SL_EINVAL;
    int rc = check_access(st, SL_STATE_MAP, "sl_map_contains");
    uint8_t *k;
    size_t kn;
    if (rc == 0)
        rc = user_key(st, ukey, 0, &k, &kn);
    if (rc < 0)
        return rc;
    const uint8_t *v;
    size_t vn;
    return st->ops->map_get(st, k, kn, &v, &vn);
}

int sl_map_iter(sl_state *st, sl_iter **it)
{
    if (!st || !it)
        return SL_EINVAL;
    *it = NULL;
    int rc = check_access(st, SL_STATE_MAP, "sl_map_iter");
    if (rc < 0)
        return rc;
    sl_iter *i = sl__iter_acquire(st->iters, st);
    i->map = true;
    rc = st->ops->map_iter_open(st, i);
    if (rc <= 0) {
        sl__iter_release(i);
        return rc;
    }
    i->cursor_open = true;
    *it = i;
    return 1;
}

/* ---- Iterators -------------------------------------------------------------------------- */

/* The next pair of a live map iterator: 1, 0 at the end or after a write, <0 error. */
static int next_pair(sl_iter *it, const uint8_t **k, size_t *kn, const uint8_t **v, size_t *vn)
{
    if (it->st->mod != it->mod)
        return 0;
    if (it->tab) /* an in-memory map: the common case, called directly (and inlined) */
        return sl__htab_iter_next(it, k, kn, v, vn);
    return it->st->ops->map_iter_next(it, k, kn, v, vn);
}

int sl_iter_next(sl_iter *it, sl_value *row)
{
    if (!it || !it->st)
        return 0;
    sl_state *st = it->st;
    if (!row)
        return sl__state_fail(st, SL_EINVAL, "state \"%s\": sl_iter_next into a NULL row",
                              st->name);
    if (!it->map) {
        if (st->mod != it->mod || it->p >= it->end)
            return 0;
        sl__rd r = {it->p, it->end};
        const uint8_t *e;
        size_t n;
        if (!sl__rd_bytes(&r, &e, &n))
            return sl__state_fail(st, SL_ESTATE, "state \"%s\": a stored list is malformed",
                                  st->name);
        int rc = read_row(st, st->schema, e, n, row);
        if (rc < 0)
            return rc;
        it->p = r.p;
        return 1;
    }
    const uint8_t *k, *v;
    size_t kn, vn;
    int rc = next_pair(it, &k, &kn, &v, &vn);
    if (rc <= 0)
        return rc;
    rc = read_row(st, st->key_schema, k, kn, row);
    if (rc > 0)
        rc = read_row(st, st->schema, v, vn, row + st->key_schema->n);
    return rc;
}

int sl_iter_next_kv(sl_iter *it, sl_value *ukey, sl_value *value)
{
    if (!it || !it->st)
        return 0;
    sl_state *st = it->st;
    if (!it->map)
        return sl__state_fail(st, SL_EINVAL,
                              "sl_iter_next_kv on an iterator of %s state \"%s\"; use "
                              "sl_iter_next",
                              kind_desc(st), st->name);
    if (!ukey || !value)
        return sl__state_fail(st, SL_EINVAL, "state \"%s\": sl_iter_next_kv into a NULL row",
                              st->name);
    const uint8_t *k, *v;
    size_t kn, vn;
    int rc = next_pair(it, &k, &kn, &v, &vn);
    if (rc <= 0)
        return rc;
    rc = read_row(st, st->key_schema, k, kn, ukey);
    if (rc > 0)
        rc = read_row(st, st->schema, v, vn, value);
    return rc;
}

void sl_iter_close(sl_iter *it)
{
    if (it)
        sl__iter_release(it);
}

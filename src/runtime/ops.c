/*
 * ops.c - operator instances: what each kind of node does with a row, the runtime context
 * functions of sluice.h (sl_emit, sl_fail, state registration, ...) and the record writers
 * that partition and serialize rows into channels.
 *
 * Hot path per record: deserialize (sl__op_process_buffer), compute the key when keyed (the
 * serialized key row, borrowed from the record's bytes when it is their prefix; its hash
 * comes with the record from the producer, which hashed it to pick the channel), set the
 * backend's current key, call the user function, emit: a chained operator is a direct call
 * (inline for the loops over a buffer, the aggregations' usual case and unkeyed sinks), a
 * network output serializes into the channel's current buffer. No allocation and no lock
 * per record; state prefetches are issued per run of records.
 */
#include "core/alloc.h"
#include "core/failpoint.h"
#include "core/hash.h"
#include "core/log.h"
#include "runtime/runtime.h"
#include "runtime/task.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- failures ---------------------------------------------------------------------- */

static bool job_cancelled(const sl_ctx *ctx)
{
    return atomic_load_explicit(&ctx->task->job->cancelled, memory_order_relaxed);
}

int sl_fail(sl_ctx *ctx, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!ctx->task->failed) {
        ctx->task->failed = true;
        sl__job_fail(ctx->task->job, SL_EUSER, "operator '%s' (subtask %d/%d) failed: %s",
                     ctx->node->name, ctx->subtask + 1, ctx->parallelism, msg);
    }
    return SL_EUSER;
}

int sl__op_failed(sl_ctx *ctx, const char *callback, int rc)
{
    if (rc == SL_ECANCELED && job_cancelled(ctx))
        return rc;
    if (!ctx->task->failed && !job_cancelled(ctx)) {
        ctx->task->failed = true;
        sl__job_fail(ctx->task->job, rc,
                     "operator '%s' (subtask %d/%d) failed: %s returned %d (%s)", ctx->node->name,
                     ctx->subtask + 1, ctx->parallelism, callback, rc, sl_strerror(rc));
    }
    return rc;
}

/* ---- keys -------------------------------------------------------------------------- */

/* Makes k's buffer hold at least n bytes. */
static void keyer_reserve(sl__keyer *k, size_t n)
{
    if (n > k->cap) {
        k->cap = n < 64 ? 64 : n * 2;
        k->buf = sl__xrealloc(k->buf, k->cap);
    }
}

/* The key row of a key selector function, into k->buf; returns its size, or a negative
 * error (the operator has failed). Out of line, so that keyer_make's usual case, a key field,
 * stays small. */
static __attribute__((noinline)) int64_t keyer_select(sl__keyer *k, sl_ctx *key_ctx,
                                                      const sl_value *row)
{
    const sl__key_spec *spec = k->spec;
    if (!k->vals)
        k->vals = sl__xcalloc((size_t)spec->schema->n, sizeof *k->vals);
    for (int i = 0; i < spec->schema->n; i++)
        k->vals[i] = SL_NULLV;
    int rc = spec->fn.key(key_ctx, row, k->vals);
    if (rc < 0)
        return sl__op_failed(key_ctx, "key selector", rc);
    int bad = sl__row_check(spec->schema, k->vals);
    if (bad >= 0)
        return sl_fail(key_ctx,
                       "key selector returned field %d as %s; the key schema \"%s\" says %s", bad,
                       sl__type_name(k->vals[bad].type), spec->schema->text,
                       sl__type_name(spec->schema->types[bad]));
    size_t n = sl__row_size(spec->schema, k->vals);
    keyer_reserve(k, n);
    sl__row_write(spec->schema, k->vals, k->buf);
    return (int64_t)n;
}

/* Writes the key row of row into k->buf and returns its size, or a negative code (the
 * operator has failed). A key field is written here without the schema-directed loops of
 * sl__row_size and sl__row_write: its bitmap byte and its bytes, a string's inline. */
static inline __attribute__((always_inline)) int64_t keyer_row(sl__keyer *k, sl_ctx *key_ctx,
                                                               const sl_value *row)
{
    if (k->field < 0)
        return keyer_select(k, key_ctx, row);
    const sl_value *v = &row[k->field];
    size_t n;
    if (v->type == SL_STR || v->type == SL_BYTES) { /* the usual key: a word, an id */
        keyer_reserve(k, 1 + sl__varint_size(v->u.s.len) + v->u.s.len + SL__KEY_ROW_SLACK);
        n = sl__key_row_str(k->buf, v->u.s.ptr, v->u.s.len);
    } else {
        bool null = v->type == SL_NULL;
        n = 1 + (null ? 0 : sl__value_size(v));
        keyer_reserve(k, n);
        k->buf[0] = null;
        if (!null)
            sl__value_write(v, k->buf + 1);
    }
    return (int64_t)n;
}

/* Computes the key row and bytes of row into k; hash, when not NULL, is the key's hash
 * (known from the record's frame), else it is computed. Returns 0 or a negative code (the
 * operator has failed). */
static inline int keyer_make(sl__keyer *k, sl_ctx *key_ctx, const sl_value *row,
                             const uint64_t *hash, sl__key *out, int max_parallelism)
{
    int64_t n = keyer_row(k, key_ctx, row);
    if (n < 0)
        return (int)n;
    out->bytes = k->buf;
    out->len = n;
    out->hash = hash ? *hash : sl__hash(k->buf, n);
    out->key_group = sl__key_group(out->hash, max_parallelism);
    return 0;
}

/* ---- writers ----------------------------------------------------------------------- */

/*
 * Records of a keyed channel (a HASH edge's, sl__channel.keyed) are framed as
 *   u64 key hash (little-endian) | varint row length | row
 * The producer has computed the key's hash to pick the channel; the consumer takes it from
 * the frame instead of hashing the key again, and reads the hashes of the records ahead of
 * the one it processes to prefetch their state (sl__op_process_buffer). Other channels
 * carry bare rows back to back.
 */

/* The serialized size of row when it begins with its key row, kn bytes in w->keyer.buf
 * (keyer_row), or 0 when it does not. It does when the key is field 0 of a schema of at
 * most 8 fields (one bitmap byte) and no field is null (that byte 0): the row is then the
 * key row, the bitmap byte 0 and field 0's bytes, followed by the other fields' bytes.
 * The receiver borrows the key from the record on the same condition (frame_key). */
static inline size_t keyed_row_size(const sl__writer *w, const sl_value *row, size_t kn)
{
    const sl__schema *s = w->schema;
    if (w->keyer.field != 0 || s->n > 8)
        return 0;
    if (s->n == 2) /* a (key, value) pair, the usual keyed record: no loop */
        return row[1].type == SL_NULL ? 0 : kn + sl__value_size(&row[1]);
    size_t n = kn;
    for (int i = 1; i < s->n; i++) {
        if (row[i].type == SL_NULL)
            return 0;
        n += sl__value_size(&row[i]);
    }
    return n;
}

/* Writes a record of a keyed channel: its key row, kn bytes in w->keyer.buf, hashes to
 * hash. A row that begins with its key row is written as a copy of the key row and the
 * other fields (keyed_row_size), without encoding field 0 again. */
static int write_keyed(sl__writer *w, sl__channel *ch, const sl_value *row, uint64_t hash,
                       size_t kn, sl__task *t)
{
    const sl__schema *s = w->schema;
    size_t n = keyed_row_size(w, row, kn);
    bool after_key = n != 0;
    if (!after_key)
        n = sl__row_size(s, row);
    size_t head = 8 + sl__varint_size(n);
    sl__buffer *b = sl__channel_reserve(ch, head + n);
    if (!b)
        return SL_ECANCELED;
    uint8_t *p = b->data + b->len;
    memcpy(p, &hash, 8); /* little-endian hosts only, as rows */
    p = sl__varint_write(p + 8, n);
    if (after_key) {
        sl__copy_bytes(p, w->keyer.buf, kn);
        p += kn;
        if (s->n == 2)
            sl__value_write(&row[1], p);
        else
            for (int i = 1; i < s->n; i++)
                p = sl__value_write(&row[i], p);
    } else {
        sl__row_write(s, row, p);
    }
    b->len += head + n;
    t->dirty = true;
    return 0;
}

static int write_to(sl__writer *w, sl__channel *ch, const sl_value *row, sl__task *t)
{
    size_t n = sl__row_size(w->schema, row);
    sl__buffer *b = sl__channel_reserve(ch, n);
    if (!b)
        return SL_ECANCELED;
    sl__row_write(w->schema, row, b->data + b->len);
    b->len += n;
    t->dirty = true;
    return 0;
}

/* The channel of a HASH writer with more than one that a key of this hash goes to: the
 * consumer that owns its key group. */
static inline sl__channel *channel_of(const sl__writer *w, uint64_t hash)
{
    return w->chans[sl__key_group_owner(sl__key_group(hash, w->max_parallelism), w->nchans,
                                        w->max_parallelism)];
}

/* A HASH writer's record: the key row (as keyer_make would make it) and its hash, which
 * picks the channel and goes with the record. */
static inline int write_hashed(sl__writer *w, sl_ctx *from, const sl_value *row)
{
    int64_t kn = keyer_row(&w->keyer, w->key_ctx ? w->key_ctx : from, row);
    if (kn < 0)
        return (int)kn;
    uint64_t hash = sl__hash(w->keyer.buf, (size_t)kn);
    sl__channel *ch = w->nchans > 1 ? channel_of(w, hash) : w->chans[0];
    return write_keyed(w, ch, row, hash, (size_t)kn, from->task);
}

/* write_hashed for a writer of (string key, 8-byte number) pairs (w->pair) and a row with
 * neither null: the record is the key row (the bitmap byte 0, the string's length and
 * bytes) and the number's 8 bytes, so it is framed without looking at the schema. With one
 * consumer the key row is built in the channel's buffer, where the hash reads it; else in
 * the keyer's buffer first, whose hash picks the channel. */
static __attribute__((noinline)) int write_pair(sl__writer *w, sl_ctx *from, const sl_value *row)
{
    size_t len = row[0].u.s.len;
    size_t kn = 1 + sl__varint_size(len) + len, n = kn + 8, head = 8 + sl__varint_size(n);
    sl__channel *ch = w->chans[0];
    const uint8_t *key = NULL;
    uint64_t hash = 0;
    if (w->nchans > 1) {
        keyer_reserve(&w->keyer, kn + SL__KEY_ROW_SLACK);
        sl__key_row_str(w->keyer.buf, row[0].u.s.ptr, len);
        key = w->keyer.buf;
        hash = sl__hash(key, kn);
        ch = channel_of(w, hash);
    }
    sl__buffer *b = sl__channel_reserve(ch, head + n);
    if (!b)
        return SL_ECANCELED;
    uint8_t *p = b->data + b->len, *k = sl__varint_write(p + 8, n);
    if (key) {
        sl__copy_bytes(k, key, kn);
    } else {
        sl__key_row_str(k, row[0].u.s.ptr, len); /* its slack: where the number goes */
        hash = sl__hash(k, kn);
    }
    memcpy(p, &hash, 8); /* little-endian hosts only, as rows */
    memcpy(k + kn, &row[1].u.i64, 8);
    b->len += head + n;
    from->task->dirty = true;
    return 0;
}

static int writer_write(sl__writer *w, sl_ctx *from, const sl_value *row)
{
    switch (w->part) {
    case SL_PART_HASH: /* the keyed exchange: the hot one */
        return write_hashed(w, from, row);
    case SL_PART_FORWARD:
        return write_to(w, w->chans[from->subtask], row, from->task);
    case SL_PART_REBALANCE: {
        sl__channel *ch = w->chans[w->rr];
        if (++w->rr == w->nchans)
            w->rr = 0;
        return write_to(w, ch, row, from->task);
    }
    case SL_PART_BROADCAST:
        for (int i = 0; i < w->nchans; i++) {
            int rc = write_to(w, w->chans[i], row, from->task);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    return SL_EINVAL;
}

/* A row to a network output: a pair to write_pair, anything else to writer_write. */
static inline int write_out(sl__writer *w, sl_ctx *from, const sl_value *row)
{
    if (w->pair && row[0].type != SL_NULL && row[1].type != SL_NULL)
        return write_pair(w, from, row);
    return writer_write(w, from, row);
}

/* ---- emitting ---------------------------------------------------------------------- */

/* Whether next (an output's chained operator, or NULL for a writer) is a sink without keyed
 * state: one that emitting calls directly (sink_invoke), and that reads no current key. */
static inline bool chained_sink(const sl_ctx *next)
{
    return next && next->node->kind == SL_NODE_SINK && !next->kb;
}

/* A sink's part of process: calls its invoke function with row and ends the call into user
 * code. A chained sink that is not keyed (no current key to set) is called here straight
 * from emit_checked; process's prologue and dispatch cost more than most sinks. */
static inline int sink_invoke(sl_ctx *ctx, const sl_value *row)
{
    int rc = ctx->node->fn.sink.invoke(ctx, row);
    if (rc < 0)
        rc = sl__op_failed(ctx, "invoke", rc);
    sl__state_end_call(ctx->kb, ctx->os);
    return rc;
}

/* Passes a row whose types are known to match the operator's schema to every output.
 * Inline in its callers (sl_emit, the aggregations, ...): each row an operator emits passes
 * here, and as a function its prologue and epilogue cost more than the loop over the
 * usual one output. */
static inline __attribute__((always_inline)) int emit_checked(sl_ctx *ctx, const sl_value *row)
{
    for (int i = 0; i < ctx->nouts; i++) {
        const sl__output *o = &ctx->outs[i];
        int rc;
        if (!o->next)
            rc = write_out(o->w, ctx, row);
        else if (chained_sink(o->next))
            rc = sink_invoke(o->next, row); /* what process would do, without its dispatch */
        else
            rc = sl__op_process(o->next, o->input, row);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* sl_emit of a row whose field bad does not have the schema's type. */
static __attribute__((noinline, cold)) int emit_mistyped(sl_ctx *ctx, const sl_value *row, int bad)
{
    const sl__schema *s = ctx->node->schema;
    return sl_fail(ctx, "emitted field %d (%s) as %s; the operator's schema \"%s\" says %s", bad,
                   s->names[bad], sl__type_name(row[bad].type), s->text,
                   sl__type_name(s->types[bad]));
}

/* sink_invoke out of line, for sl_emit. */
static __attribute__((noinline)) int emit_to_sink(sl_ctx *sink, const sl_value *row)
{
    return sink_invoke(sink, row);
}

/* sl_emit of a checked row to more than one output. */
static __attribute__((noinline)) int emit_to_all(sl_ctx *ctx, const sl_value *row)
{
    return emit_checked(ctx, row);
}

/* User code calls this per row. With one output, the usual case, it ends in a jump to what
 * emit_checked would call (the writer, the chained sink, the chained operator), so that it
 * has no frame of its own to build and tear down. */
int sl_emit(sl_ctx *ctx, const sl_value *row)
{
    int bad = sl__row_check(ctx->node->schema, row);
    if (__builtin_expect(bad >= 0, 0))
        return emit_mistyped(ctx, row, bad);
    if (ctx->nouts != 1)
        return emit_to_all(ctx, row);
    const sl__output *o = &ctx->outs[0];
    if (!o->next)
        return write_out(o->w, ctx, row);
    if (chained_sink(o->next))
        return emit_to_sink(o->next, row);
    return sl__op_process(o->next, o->input, row);
}

/* ---- operator lifecycle and processing ---------------------------------------------- */

static int call_hook(sl_ctx *ctx, int (*hook)(sl_ctx *), const char *name)
{
    if (!hook)
        return 0;
    int rc = hook(ctx);
    return rc < 0 ? sl__op_failed(ctx, name, rc) : 0;
}

static sl_ctx *side_ctx(sl_ctx *owner, void *user)
{
    sl_ctx *c = sl__xcalloc(1, sizeof *c);
    c->task = owner->task;
    c->node = owner->node;
    c->subtask = owner->subtask;
    c->parallelism = owner->parallelism;
    c->user = user;
    return c;
}

int sl__op_open(sl_ctx *ctx)
{
    const sl__node *n = ctx->node;
    const sl__job_graph *g = ctx->task->job->g;
    ctx->os = sl__operator_store_create();
    if (!ctx->os)
        return sl_fail(ctx, "out of memory creating operator state");
    if (n->keyed) {
        const sl__key_spec *spec = &n->inputs[0].key;
        int start = sl__key_group_start(ctx->subtask, ctx->parallelism, g->max_parallelism);
        int end = sl__key_group_start(ctx->subtask + 1, ctx->parallelism, g->max_parallelism);
        char err[512];
        ctx->kb = sl__keyed_backend_create(g->config, n->uid, ctx->subtask, g->max_parallelism,
                                           start, end, spec->schema, err, sizeof err);
        if (!ctx->kb)
            return sl_fail(ctx, "cannot create the keyed state backend: %s", err);
        ctx->keyer.spec = spec;
        ctx->keyer.field = spec->field;
        if (spec->field < 0)
            ctx->key_ctx = side_ctx(ctx, spec->fn.user);
    }
    int rrc = sl__op_restore(ctx);
    if (rrc < 0)
        return rrc;
    ctx->out_row = sl__xcalloc((size_t)(2 * n->schema->n + 1), sizeof(sl_value));
    if (n->kind == SL_NODE_AGG || n->kind == SL_NODE_REDUCE) {
        sl_state_desc d = {.name = "_aggregate", .kind = SL_STATE_VALUE, .schema = n->schema->text};
        ctx->agg_state = sl_keyed_state(ctx, &d);
        if (!ctx->agg_state)
            return SL_ESTATE;
        ctx->agg_pair = n->kind == SL_NODE_AGG && n->agg == SL_AGG_SUM && n->schema->n == 2 &&
                        n->agg_field == 1 && ctx->keyer.field == 0 &&
                        (n->schema->types[1] == SL_I64 || n->schema->types[1] == SL_F64);
        ctx->agg_add_last = sl__value_add_last_fn_of(ctx->agg_state);
        ctx->agg_add_run = sl__value_add_last_run_fn_of(ctx->agg_state);
    }
    if (n->kind == SL_NODE_BROADCAST_CONNECT) {
        sl_state *st = sl__operator_broadcast_state(ctx->os, ctx, n->bcast.name,
                                                    n->bcast.key_schema, n->bcast.value_schema);
        if (!st)
            return SL_ESTATE;
        ctx->bcast = sl__xcalloc(1, sizeof *ctx->bcast);
        ctx->bcast[0] = st;
        ctx->nbcast = 1;
    }
    /* from here on close() runs whatever happens, so a hook that allocated before it
     * failed can free what it allocated */
    ctx->opened = true;
    int rc = call_hook(ctx, n->fn.hooks.initialize_state, "initialize_state");
    /* restored as finished: its state is back (a sink's pending files are recovered there)
     * but it will process nothing, so it is not opened (a socket source does not connect) */
    if (rc == 0 && !ctx->finished_on_restore)
        rc = call_hook(ctx, n->fn.hooks.open, "open");
    return rc;
}

static bool is_batch(const sl_ctx *ctx)
{
    return ctx->task->job->g->mode == SL_BATCH;
}

/* Emits the current value of the aggregate state (re-read, since a write may have moved
 * variable-length fields). */
static int emit_state(sl_ctx *ctx)
{
    sl_value *row = ctx->out_row;
    int found = sl_value_get(ctx->agg_state, row);
    if (found <= 0)
        return found;
    return emit_checked(ctx, row); /* read back with the operator's schema */
}

static bool better(sl__agg_kind k, const sl_value *candidate, const sl_value *current)
{
    if (candidate->type == SL_NULL)
        return false;
    if (current->type == SL_NULL)
        return true;
    int c = sl__value_cmp(candidate, current);
    return (k == SL_AGG_MIN || k == SL_AGG_MIN_BY) ? c < 0 : c > 0;
}

/* aggregate, except a sum's add in place: read the stored row, combine, update. */
static __attribute__((noinline)) int aggregate_row(sl_ctx *ctx, const sl_value *row)
{
    const sl__node *n = ctx->node;
    const sl__schema *s = n->schema;
    sl_value *cur = ctx->out_row;
    int f = n->agg_field;
    int found = sl_value_get(ctx->agg_state, cur);
    if (found < 0)
        return found;
    int rc = 0;
    bool changed = true;
    if (!found) {
        rc = sl_value_update(ctx->agg_state, row);
    } else {
        switch (n->agg) {
        case SL_AGG_SUM:
            if (row[f].type == SL_NULL) {
                changed = false;
            } else if (cur[f].type == SL_NULL) {
                cur[f] = row[f];
            } else {
                sl__add_number(&cur[f], &row[f]);
            }
            if (changed)
                rc = sl_value_update(ctx->agg_state, cur);
            break;
        case SL_AGG_MIN:
        case SL_AGG_MAX:
            changed = better(n->agg, &row[f], &cur[f]);
            if (changed) {
                cur[f] = row[f];
                rc = sl_value_update(ctx->agg_state, cur);
            }
            break;
        case SL_AGG_MIN_BY:
        case SL_AGG_MAX_BY:
            changed = better(n->agg, &row[f], &cur[f]);
            if (changed)
                rc = sl_value_update(ctx->agg_state, row);
            break;
        }
    }
    if (rc < 0 || is_batch(ctx))
        return rc;
    if (s->fixed_size && found && changed && n->agg != SL_AGG_MIN_BY && n->agg != SL_AGG_MAX_BY)
        return emit_checked(ctx, cur);
    return emit_state(ctx);
}

/* Aggregates row into the key's stored row and emits the result (STREAMING). The usual
 * case, a sum over a key seen before, adds in place, without a row round trip; inline in
 * process, and the rest (aggregate_row) out of line, so that it costs no call. sum_added:
 * what follows an add in place (added, its return; the sum, when added, in out_row). */
static inline __attribute__((always_inline)) int sum_added(sl_ctx *ctx, const sl_value *row,
                                                           int added)
{
    if (added < 0)
        return added;
    if (!added) /* no row yet, or a null sum so far */
        return aggregate_row(ctx, row);
    return is_batch(ctx) ? 0 : emit_checked(ctx, ctx->out_row);
}

/* The sum's add over a pair (agg_pair) whose number is not null; sum_pair calls it too. */
static inline __attribute__((always_inline)) int sum_pair_add(sl_ctx *ctx, const sl_value *row)
{
    sl_value *cur = ctx->out_row;
    int added = ctx->agg_add_last(ctx->agg_state, &row[1], &cur[1]);
    cur[0] = row[0]; /* the key: the same bytes as the stored row's field 0 */
    return sum_added(ctx, row, added);
}

static inline __attribute__((always_inline)) int aggregate(sl_ctx *ctx, const sl_value *row)
{
    const sl__node *n = ctx->node;
    int f = n->agg_field;
    if (n->agg == SL_AGG_SUM && row[f].type != SL_NULL) {
        if (ctx->agg_pair)
            return sum_pair_add(ctx, row);
        return sum_added(ctx, row, sl__value_add(ctx->agg_state, f, &row[f], ctx->out_row));
    }
    return aggregate_row(ctx, row);
}

static int reduce(sl_ctx *ctx, const sl_value *row)
{
    const sl__node *n = ctx->node;
    sl_value *cur = ctx->out_row;
    sl_value *out = ctx->out_row + n->schema->n;
    int found = sl_value_get(ctx->agg_state, cur);
    if (found < 0)
        return found;
    int rc;
    if (!found) {
        rc = sl_value_update(ctx->agg_state, row);
    } else {
        for (int i = 0; i < n->schema->n; i++)
            out[i] = SL_NULLV;
        rc = n->fn.reduce.reduce(ctx, cur, row, out);
        if (rc < 0)
            return sl__op_failed(ctx, "reduce", rc);
        int bad = sl__row_check(n->schema, out);
        if (bad >= 0)
            return sl_fail(ctx, "reduce returned field %d as %s; the schema \"%s\" says %s", bad,
                           sl__type_name(out[bad].type), n->schema->text,
                           sl__type_name(n->schema->types[bad]));
        rc = sl_value_update(ctx->agg_state, out);
    }
    if (rc < 0 || is_batch(ctx))
        return rc;
    return emit_state(ctx);
}

/* sl__op_process; key_hash, when not NULL, is the hash of row's key (from a keyed frame);
 * key, when not NULL, is row's whole key, made by the caller (frame_key). Inline in the
 * loops over a buffer's records, so that a record costs no call and what the loop knows
 * (the operator, its input, whether a key is given) is not tested again per record. */
static inline __attribute__((always_inline)) int
process(sl_ctx *ctx, int input, const sl_value *row, const uint64_t *key_hash, const sl__key *key)
{
    const sl__node *n = ctx->node;
    int rc;
    if (ctx->kb && input == 0) {
        sl__key made = {0}; /* set when rc is 0 */
        if (!key) {
            rc = keyer_make(&ctx->keyer, ctx->key_ctx ? ctx->key_ctx : ctx, row, key_hash, &made,
                            ctx->task->job->g->max_parallelism);
            if (rc < 0)
                return rc;
            key = &made;
        }
        sl__keyed_backend_set_key_parts(ctx->kb, key->bytes, key->len, key->hash, key->key_group);
    }
    switch (n->kind) {
    case SL_NODE_MAP: {
        sl_value *out = ctx->out_row;
        for (int i = 0; i < n->schema->n; i++)
            out[i] = SL_NULLV;
        rc = n->fn.map.map(ctx, row, out);
        if (rc < 0) {
            rc = sl__op_failed(ctx, "map", rc);
            break;
        }
        rc = sl_emit(ctx, out);
        break;
    }
    case SL_NODE_FLAT_MAP:
        rc = n->fn.flat_map.flat_map(ctx, row);
        if (rc < 0)
            rc = sl__op_failed(ctx, "flat_map", rc);
        break;
    case SL_NODE_FILTER:
        rc = n->fn.filter.filter(ctx, row);
        if (rc < 0)
            rc = sl__op_failed(ctx, "filter", rc);
        else if (rc > 0)
            rc = emit_checked(ctx, row); /* the input row, same schema */
        break;
    case SL_NODE_PROCESS:
        rc = n->fn.process.process(ctx, row);
        if (rc < 0)
            rc = sl__op_failed(ctx, "process", rc);
        break;
    case SL_NODE_REDUCE:
        rc = reduce(ctx, row);
        break;
    case SL_NODE_AGG:
        rc = aggregate(ctx, row);
        break;
    case SL_NODE_UNION:
        rc = emit_checked(ctx, row);
        break;
    case SL_NODE_BROADCAST_CONNECT:
        for (int i = 0; i < ctx->nbcast; i++)
            sl__state_set_readonly(ctx->bcast[i], input == 0);
        if (input == 0)
            rc = n->fn.bcast.process_element(ctx, row);
        else
            rc = n->fn.bcast.process_broadcast(ctx, row);
        if (rc < 0)
            rc = sl__op_failed(ctx, input == 0 ? "process_element" : "process_broadcast", rc);
        break;
    case SL_NODE_SINK:
        return sink_invoke(ctx, row); /* ends the call itself */
    default:
        rc = SL_EINVAL;
        break;
    }
    sl__state_end_call(ctx->kb, ctx->os);
    return rc;
}

int sl__op_process(sl_ctx *ctx, int input, const sl_value *row)
{
    return process(ctx, input, row, NULL, NULL);
}

/* Reads the frame at p (keyed channels, above): the key hash, and the row's bounds. NULL
 * when the frame is malformed. */
static const uint8_t *read_frame(const uint8_t *p, const uint8_t *end, uint64_t *hash,
                                 const uint8_t **row_end)
{
    uint64_t n;
    if (end - p < 9)
        return NULL;
    memcpy(hash, p, 8);
    p = sl__varint_read(p + 8, end, &n);
    if (!p || n > (uint64_t)(end - p))
        return NULL;
    *row_end = p + n;
    return p;
}

/* A keyed buffer's records are processed in runs of RUN, its frames read two runs ahead
 * of the run processed into a ring of RING (process_keyed_records). RING is a multiple of
 * RUN, so that a run's hashes lie together in the ring. */
enum { RUN = 8, RING = 4 * RUN };

/* How far ahead of the frame it reads the consumer asks for the buffer's bytes: the
 * producer wrote them on another core moments ago, and a line it still holds takes a
 * transfer between the cores' caches, which a sequential read would wait for line by
 * line. */
enum { FRAME_AHEAD = 1024 };

/* A keyed frame's row's bounds; its key hash is kept apart (process_keyed_records). */
typedef struct frame {
    const uint8_t *row, *row_end;
} frame;

static int malformed(sl__task *t, const sl_ctx *head)
{
    sl__job_fail(t->job, SL_EFORMAT,
                 "operator '%s' (subtask %d/%d): malformed record in input buffer",
                 head->node->name, t->subtask + 1, head->parallelism);
    return SL_EFORMAT;
}

/* Whether the keys of records of schema s can be borrowed from their frames (frame_key):
 * the key is field 0 of a record of at most 8 fields, whose null bitmap is one byte. */
static bool frame_keys(const sl__keyer *k, const sl__schema *s)
{
    return k->field == 0 && s->n <= 8;
}

/* The key row of a keyed frame's record, row read from bytes, borrowed from the frame when
 * it is a prefix of the record (frame_keys holds for the schema): the record has no nulls
 * (bitmap byte 0), and its field 0 is a string, bytes or 8-byte number. Its key row
 * (keyer_row) is then the bitmap byte 0 and the field's bytes, the record's first bytes; a
 * string's only when its length varint has its shortest form, which the check of where the
 * string's bytes lie ensures. Sets *key and returns true, or returns false when the key
 * must be built. Building it cost a copy of the key per record and, compared right after
 * in the state lookup, loads of bytes still being stored. */
static inline bool frame_key(const uint8_t *bytes, const sl_value *row, uint64_t hash,
                             int max_parallelism, sl__key *key)
{
    if (bytes[0] != 0)
        return false;
    const sl_value *v = &row[0];
    size_t n;
    if (v->type == SL_STR || v->type == SL_BYTES) {
        n = 1 + sl__varint_size(v->u.s.len) + v->u.s.len;
        if ((const uint8_t *)v->u.s.ptr + v->u.s.len != bytes + n)
            return false;
    } else if (v->type == SL_I64 || v->type == SL_F64) {
        n = 9;
    } else {
        return false;
    }
    *key = (sl__key){
        .bytes = bytes, .len = n, .hash = hash, .key_group = sl__key_group(hash, max_parallelism)};
    return true;
}

/* Reads a record of a keyed sum over (key, number) pairs (agg_pair) into *key and *num (the
 * row's two fields) when it has the pair's form: the row is the bitmap byte 0, the key's
 * bytes and the number's 8, so the key row is the record's first bytes (as frame_key
 * borrows it), *key_len bytes long, and the number its last 8. False when it has not (a null, or a
 * key length not in its shortest form): process takes it. */
static inline __attribute__((always_inline)) bool
pair_read(sl_type t0, sl_type t1, const frame *f, sl_value *key, sl_value *num, size_t *key_len)
{
    const uint8_t *p = f->row, *end = f->row_end - 8;
    if (end - p < 2 || p[0] != 0)
        return false;
    key->type = t0;
    if (t0 == SL_STR || t0 == SL_BYTES) {
        uint64_t len;
        const uint8_t *q = sl__varint_read(p + 1, end, &len);
        if (!q || len != (uint64_t)(end - q) || q != p + 1 + sl__varint_size(len))
            return false;
        key->u.s.ptr = (const char *)q;
        key->u.s.len = len;
    } else if ((t0 == SL_I64 || t0 == SL_F64) && end - p == 9) {
        memcpy(&key->u.i64, p + 1, 8);
    } else {
        return false;
    }
    num->type = t1;
    memcpy(&num->u.i64, end, 8);
    *key_len = (size_t)(end - p);
    return true;
}

/* A record of a keyed sum over (key, number) pairs (agg_pair), read and summed in one step:
 * makes the key current, adds the number to the stored sum and emits the pair, as process
 * would. Returns 1, or <0 when the operator failed; 0 before doing anything when the record
 * is not of the pair's form (pair_read): process takes it. Inline in process_keyed_records: what it
 * skips of process (the dispatch on the operator, the general row reader, the key's bounds
 * found again) is what a record of a word count costs beyond its lookup. */
static inline __attribute__((always_inline)) int sum_pair(sl_ctx *head, const sl__schema *s,
                                                          const frame *f, uint64_t hash,
                                                          int max_parallelism, sl_value *row,
                                                          bool *borrowed)
{
    size_t key_len;
    if (!pair_read(s->types[0], s->types[1], f, &row[0], &row[1], &key_len))
        return 0;
    if (sl__failpoint("task.record"))
        return sl_fail(head, "failpoint task.record fired");
    sl__keyed_backend_set_key_parts(head->kb, f->row, key_len, hash,
                                    sl__key_group(hash, max_parallelism));
    *borrowed = true;
    int rc = sum_pair_add(head, row); /* the number is not null: the bitmap byte is 0 */
    sl__state_end_call(head->kb, head->os);
    return rc < 0 ? rc : 1;
}

/* Whether every row the keyed head emits goes to a writer or to a chained sink without keyed
 * state: nothing it emits to reads the head's current key, so sum_pair_run may add a run
 * of records before it emits their sums. In BATCH mode nothing is emitted per record. */
static bool emits_keyless(const sl_ctx *head)
{
    if (is_batch(head))
        return true;
    for (int i = 0; i < head->nouts; i++) {
        const sl_ctx *next = head->outs[i].next;
        if (next && !chained_sink(next))
            return false;
    }
    return true;
}

/* The chained sink without keyed state that is head's one output, or NULL: what
 * emit_checked would call for each row, found once for a buffer. */
static sl_ctx *only_sink(const sl_ctx *head)
{
    if (head->nouts != 1)
        return NULL;
    sl_ctx *next = head->outs[0].next;
    return chained_sink(next) ? next : NULL;
}

/* The pairs of records [i, last) of the ring, from i up to the first record that is not a
 * pair (pair_read), summed with one call into the state (agg_add_run) and then emitted in
 * order, as sum_pair would one by one (a key's first record stores the pair: the row the
 * general way would store, and emit). The call stops at a key whose sum is null (or too
 * long a new key) and makes it current: that record goes the general way
 * (aggregate_row) and the rest of the run through another call. Sets *done to the records
 * processed (0 when record i is not a pair: process takes it); 0, or <0 when the operator
 * failed (the sums of the run's later records may then be added already: the job fails,
 * and its state with it). Leaves the last record's key current. row: the input row, which
 * aggregate_row reads; sink: only_sink(head). Only when emits_keyless holds. */
static inline __attribute__((always_inline)) int
sum_pair_run(sl_ctx *head, const sl__schema *s, const frame *ring, const uint64_t *hashes,
             const uint32_t *hints, size_t i, size_t last, int max_parallelism, sl_value *row,
             sl_ctx *sink, bool *borrowed, size_t *done)
{
    sl__key keys[RUN];
    sl_value out[RUN][2], nums[RUN]; /* out: the rows emitted, each (key, sum) */
    size_t n = 0, at = i % RING;     /* [i, last) lies together in the ring: one run */
    sl_type t0 = s->types[0], t1 = s->types[1];
    uint64_t kg_mask = sl__key_group_mask(max_parallelism);
    bool fired = false;
    *done = 0;
    for (; i + n < last; n++) {
        const frame *f = &ring[at + n];
        uint64_t hash = hashes[at + n];
        if (!pair_read(t0, t1, f, &out[n][0], &nums[n], &keys[n].len))
            break;
        if (sl__failpoint("task.record")) {
            fired = true;
            break;
        }
        keys[n].bytes = f->row;
        keys[n].hash = hash;
        keys[n].key_group = sl__key_group_masked(hash, max_parallelism, kg_mask);
        keys[n].hint = hints[at + n];
    }
    bool batch = is_batch(head);
    for (size_t j = 0; j < n;) {
        size_t added = head->agg_add_run(head->agg_state, &keys[j], &nums[j], &out[j][1], 2, n - j);
        if (j + added < n) /* it made the key it stopped at, in b, current */
            *borrowed = true;
        for (size_t a = j; !batch && a < j + added; a++) {
            int rc = sink ? sink_invoke(sink, out[a]) : emit_checked(head, out[a]);
            if (rc < 0)
                return rc;
        }
        j += added;
        if (j == n) {
            const sl__key *k = &keys[n - 1];
            sl__keyed_backend_set_key_parts(head->kb, k->bytes, k->len, k->hash, k->key_group);
            *borrowed = true;
            sl__state_end_call(head->kb, head->os);
            break;
        }
        /* record j's key, made current by the call: what sum_pair_add does when it cannot
         * add */
        row[0] = out[j][0];
        row[1] = nums[j];
        int rc = aggregate_row(head, row);
        sl__state_end_call(head->kb, head->os);
        if (rc < 0)
            return rc;
        j++;
    }
    *done = n;
    return fired ? sl_fail(head, "failpoint task.record fired") : 0;
}

/* After a buffer whose records' keys were borrowed from it (frame_key): the backend's
 * current key, which outlives the buffer (the buffer goes back to its producer), copied to
 * the keyer's own memory. */
static void keep_key(sl_ctx *head)
{
    const sl__key *cur = sl__keyed_backend_current_key(head->kb);
    if (!cur)
        return;
    sl__key k = *cur;
    keyer_reserve(&head->keyer, k.len);
    memcpy(head->keyer.buf, k.bytes, k.len);
    sl__keyed_backend_set_key_parts(head->kb, head->keyer.buf, k.len, k.hash, k.key_group);
}

/* The records of a keyed channel's buffer, in runs of RUN records. Each frame is read
 * once, two runs before its run is processed, and when a run is read its keys' state table
 * slots are prefetched; before a run is processed the entries of the next run are (their
 * slots have arrived by then), both stages in one call per run
 * (sl__keyed_backend_prefetch), so a record's slot is asked for 16 to 24 records and its
 * entry 8 to 16 records before its lookup. A keyed head's lookups in a large table
 * otherwise wait for two cache misses (slot, entry) per record; a call per record and
 * stage cost more than the prefetches. Records before a malformed frame are processed,
 * then the buffer fails. */
static int process_keyed_records(sl__task *t, const sl__channel *c, const sl__buffer *b,
                                 bool *borrowed /* the key last set is in b */)
{
    int input = c->input;
    const sl__schema *s = t->in_schema[input];
    sl_value *row = t->in_row[input];
    sl_ctx *head = t->ops[0];
    sl__keyed_backend *kb = input == 0 ? head->kb : NULL;
    int max_parallelism = t->job->g->max_parallelism;
    bool borrow = kb && frame_keys(&head->keyer, s);
    bool pair = kb && head->agg_pair;
    bool run = pair && head->agg_add_run && emits_keyless(head);
    sl_ctx *sink = run ? only_sink(head) : NULL;
    const uint8_t *scan = b->data, *end = b->data + b->len; /* the next frame to read */
    frame ring[RING];
    uint64_t hashes[RING]; /* the frames' key hashes, in the same places */
    uint32_t hints[RING];  /* where the entry prefetch found their entries (sl__key.hint) */
    size_t nread = 0;      /* frames read into the ring so far */
    bool bad = false;      /* scan stopped at a malformed frame */
    for (size_t first = 0;; first += RUN) {
        /* read to the end of the run after next (at the start, three runs); a stretch read
         * starts at a run boundary, so it lies together in the ring */
        size_t from = nread;
        while (!bad && scan < end && nread < first + 3 * RUN) {
            if (end - scan > FRAME_AHEAD)
                __builtin_prefetch(scan + FRAME_AHEAD);
            frame *f = &ring[nread % RING];
            f->row = read_frame(scan, end, &hashes[nread % RING], &f->row_end);
            if (!f->row) {
                bad = true;
                break;
            }
            scan = f->row_end;
            nread++;
        }
        if (first >= nread)
            return bad ? malformed(t, head) : 0;
        /* the entries of the next run; at the start, of this run too (their slots not yet
         * arrived: the prefetch waits for them, as the lookups would) */
        size_t efrom = first ? first + RUN : 0;
        size_t eto = first + 2 * RUN < nread ? first + 2 * RUN : nread;
        if (kb)
            sl__keyed_backend_prefetch(kb, &hashes[from % RING], nread - from,
                                       &hashes[efrom % RING], eto > efrom ? eto - efrom : 0,
                                       &hints[efrom % RING]);
        size_t last = first + RUN < nread ? first + RUN : nread;
        for (size_t i = first; i < last; i++) {
            if (run) {
                size_t done;
                int rc = sum_pair_run(head, s, ring, hashes, hints, i, last, max_parallelism, row,
                                      sink, borrowed, &done);
                if (rc < 0)
                    return rc;
                i += done;
                if (i == last)
                    break;
            }
            const frame *f = &ring[i % RING];
            const uint64_t *hash = &hashes[i % RING];
            if (pair) {
                int rc = sum_pair(head, s, f, *hash, max_parallelism, row, borrowed);
                if (rc < 0)
                    return rc;
                if (rc > 0)
                    continue;
            }
            if (sl__row_read(s, f->row, f->row_end, row) != f->row_end)
                return malformed(t, head);
            if (sl__failpoint("task.record"))
                return sl_fail(head, "failpoint task.record fired");
            sl__key key;
            const sl__key *kp = NULL;
            if (borrow) {
                if (frame_key(f->row, row, *hash, max_parallelism, &key))
                    kp = &key;
                *borrowed = kp != NULL;
            }
            int rc = process(head, input, row, hash, kp);
            if (rc < 0)
                return rc;
        }
    }
}

/* process_keyed_records, then keep_key when the last record's key was borrowed from b. */
static int process_keyed_buffer(sl__task *t, const sl__channel *c, const sl__buffer *b)
{
    bool borrowed = false;
    int rc = process_keyed_records(t, c, b, &borrowed);
    if (borrowed)
        keep_key(t->ops[0]);
    return rc;
}

/* A record for an operator restored as finished: its keyed state was not kept and it was
 * never opened. check_restore (runtime.c) refuses a job in which anything not finished
 * feeds it, so this is an invariant failing, not a user error. */
static __attribute__((noinline)) int finished_input(sl__task *t, const sl_ctx *head)
{
    sl__job_fail(t->job, SL_ESTATE,
                 "operator '%s' (subtask %d/%d) received a record, but it had finished in the "
                 "checkpoint it was restored from (its input had ended, and no state of it was "
                 "kept)",
                 head->node->name, t->subtask + 1, head->parallelism);
    return SL_ESTATE;
}

int sl__op_process_buffer(sl__task *t, const sl__channel *c, const sl__buffer *b)
{
    if (__builtin_expect(t->ops[0]->finished_on_restore, 0))
        return finished_input(t, t->ops[0]);
    if (c->keyed)
        return process_keyed_buffer(t, c, b);
    int input = c->input;
    const sl__schema *s = t->in_schema[input];
    sl_value *row = t->in_row[input];
    sl_ctx *head = t->ops[0];
    const uint8_t *p = b->data, *end = b->data + b->len;
    while (p < end) {
        if (end - p > FRAME_AHEAD)
            __builtin_prefetch(p + FRAME_AHEAD);
        p = sl__row_read(s, p, end, row);
        if (!p)
            return malformed(t, head);
        if (sl__failpoint("task.record"))
            return sl_fail(head, "failpoint task.record fired");
        int rc = process(head, input, row, NULL, NULL);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int emit_final(void *arg, const sl__key *key)
{
    sl_ctx *ctx = arg;
    sl__keyed_backend_set_key(ctx->kb, key);
    return emit_state(ctx);
}

int sl__op_end_input(sl_ctx *ctx)
{
    const sl__node *n = ctx->node;
    int rc = 0;
    if (ctx->finished_on_restore) {
        /* restored as finished: this instance already ended its input and what it emitted
         * then is in the checkpoint downstream */
        ctx->ended = true;
        return 0;
    }
    if ((n->kind == SL_NODE_AGG || n->kind == SL_NODE_REDUCE) && is_batch(ctx))
        rc = sl__keyed_backend_for_each_key(ctx->kb, ctx->agg_state, emit_final, ctx);
    else if (n->kind == SL_NODE_PROCESS && n->fn.process.end_input) {
        rc = n->fn.process.end_input(ctx);
        if (rc < 0)
            rc = sl__op_failed(ctx, "end_input", rc);
    }
    ctx->ended = true;
    return rc;
}

void sl__op_close(sl_ctx *ctx)
{
    if (!ctx->opened)
        return;
    ctx->opened = false;
    call_hook(ctx, ctx->node->fn.hooks.close, "close");
    sl__state_end_call(ctx->kb, ctx->os);
}

/* ---- the runtime context of sluice.h ------------------------------------------------ */

int sl_ctx_subtask(const sl_ctx *ctx)
{
    return ctx->subtask;
}

int sl_ctx_parallelism(const sl_ctx *ctx)
{
    return ctx->parallelism;
}

int sl_ctx_max_parallelism(const sl_ctx *ctx)
{
    return ctx->task->job->g->max_parallelism;
}

int sl_ctx_attempt(const sl_ctx *ctx)
{
    return ctx->task->job->attempt;
}

bool sl__ctx_checkpointing(const sl_ctx *ctx)
{
    return ctx->task->job->storage != NULL;
}

const char *sl__ctx_job_id(const sl_ctx *ctx)
{
    return ctx->task->job->g->job_id;
}

bool sl_ctx_is_restored(const sl_ctx *ctx)
{
    return ctx->restored;
}

const char *sl_ctx_operator(const sl_ctx *ctx)
{
    return ctx->node->name;
}

void *sl_ctx_user(const sl_ctx *ctx)
{
    return ctx->user;
}

void *sl_ctx_local(const sl_ctx *ctx)
{
    return ctx->local;
}

void sl_ctx_set_local(sl_ctx *ctx, void *local)
{
    ctx->local = local;
}

void *sl_ctx_alloc(sl_ctx *ctx, size_t size)
{
    return sl__arena_alloc(&ctx->task->arena, size);
}

sl_value sl_ctx_printf(sl_ctx *ctx, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *p = sl_ctx_alloc(ctx, (size_t)n + 1);
    if ((size_t)n < sizeof small) {
        memcpy(p, small, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(p, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return sl_strn(p, (size_t)n);
}

bool sl_ctx_cancelled(const sl_ctx *ctx)
{
    return job_cancelled(ctx);
}

int sl_ctx_sleep_ms(sl_ctx *ctx, int64_t ms)
{
    sl__task_flush(ctx->task);
    int64_t deadline = sl__now_ns() + ms * 1000000;
    for (;;) {
        if (job_cancelled(ctx))
            return SL_ECANCELED;
        int64_t left = deadline - sl__now_ns();
        if (left <= 0)
            return 0;
        if (left > 20000000)
            left = 20000000;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = left};
        nanosleep(&ts, NULL);
    }
}

int sl_ctx_current_key(sl_ctx *ctx, const sl_value **key)
{
    if (!ctx->kb)
        return SL_EINVAL;
    const sl__key *k = sl__keyed_backend_current_key(ctx->kb);
    const sl__schema *s = ctx->keyer.spec->schema;
    if (!ctx->key_view)
        ctx->key_view = sl__xcalloc((size_t)s->n, sizeof *ctx->key_view);
    if (!k || !sl__row_read(s, k->bytes, k->bytes + k->len, ctx->key_view))
        return SL_EINVAL;
    *key = ctx->key_view;
    return s->n;
}

sl_state *sl_keyed_state(sl_ctx *ctx, const sl_state_desc *desc)
{
    if (!ctx->kb) {
        sl_fail(ctx,
                "keyed state \"%s\" needs a keyed stream: declare it in a function applied "
                "after sl_key_by (or use sl_operator_list_state)",
                desc && desc->name ? desc->name : "?");
        return NULL;
    }
    return sl__keyed_backend_state(ctx->kb, ctx, desc);
}

sl_state *sl_operator_list_state(sl_ctx *ctx, const char *name, const char *schema,
                                 sl_redistribution mode)
{
    return sl__operator_list_state(ctx->os, ctx, name, schema, mode);
}

sl_state *sl_broadcast_state(sl_ctx *ctx, const char *name)
{
    sl_state *st = ctx->os ? sl__operator_store_find(ctx->os, name) : NULL;
    if (!st || ctx->node->kind != SL_NODE_BROADCAST_CONNECT) {
        sl_fail(ctx,
                "no broadcast state \"%s\" here: broadcast state is declared with "
                "sl_broadcast() and read in sl_connect_broadcast() functions",
                name ? name : "?");
        return NULL;
    }
    return st;
}

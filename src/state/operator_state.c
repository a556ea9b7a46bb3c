/*
 * operator_state.c - operator state of one operator subtask: list states (Flink's
 * CheckpointedFunction operator list state, redistributed on rescale by even split or
 * union) and broadcast map states (replicated, read-only on the element side), with their
 * snapshot and the redistribution of the old subtasks' snapshots on restore.
 *
 * Storage is unscoped: a list state is one sl__vec of length-prefixed rows, a broadcast
 * state one byte map (table.c). Handles use the same public functions as keyed state
 * (state.c) through this file's sl__state_ops. A state restored before it is registered
 * is kept by name and attached, kind and rows checked, when initialize_state (or the
 * runtime, for broadcast state) registers it.
 */
#include "core/alloc.h"
#include "core/log.h"
#include "state/state_int.h"

#include <stdio.h>
#include <string.h>

typedef struct ostate {
    sl__operator_store *os;
    char *name;
    sl_state_kind kind; /* LIST or MAP */
    sl_redistribution mode;
    sl_state *handle; /* NULL while only restored, not registered */
    sl__vec *list;    /* LIST; NULL when empty */
    sl__htab map;     /* MAP */
} ostate;

struct sl__operator_store {
    sl__state_head head; /* first: sl__state_end_call reads it (state.h) */
    ostate **states;     /* in order of registration or restore */
    size_t nstates, states_cap;
    sl__slab slab;
};

sl__operator_store *sl__operator_store_create(void)
{
    sl__operator_store *os = sl__calloc(1, sizeof *os);
    if (os)
        sl__slab_init(&os->slab);
    return os;
}

static void clear_content(ostate *o)
{
    sl__free(o->list);
    o->list = NULL;
    sl__kv_clear(&o->map, &o->os->slab);
}

void sl__operator_store_destroy(sl__operator_store *os)
{
    if (!os)
        return;
    for (size_t i = 0; i < os->nstates; i++) {
        ostate *o = os->states[i];
        clear_content(o);
        sl__state_free(o->handle);
        sl__free(o->name);
        sl__free(o);
    }
    sl__free(os->states);
    sl__slab_close(&os->slab);
    sl__iter_pool_close(&os->head.iters);
    sl__free(os);
}

static ostate *find(sl__operator_store *os, const char *name, size_t len)
{
    for (size_t i = 0; i < os->nstates; i++) {
        ostate *o = os->states[i];
        if (strlen(o->name) == len && !memcmp(o->name, name, len))
            return o;
    }
    return NULL;
}

/* A new empty state; NULL on out of memory. */
static ostate *new_ostate(sl__operator_store *os, const char *name, size_t len, sl_state_kind kind,
                          sl_redistribution mode)
{
    if (os->nstates == os->states_cap) {
        size_t cap = os->states_cap ? os->states_cap * 2 : 4;
        ostate **states = sl__realloc(os->states, cap * sizeof *states);
        if (!states)
            return NULL;
        os->states = states;
        os->states_cap = cap;
    }
    ostate *o = sl__calloc(1, sizeof *o);
    if (!o || !(o->name = sl__strndup(name, len))) {
        sl__free(o);
        return NULL;
    }
    o->os = os;
    o->kind = kind;
    o->mode = mode;
    os->states[os->nstates++] = o;
    return o;
}

/* ---- Storage operations ----------------------------------------------------------------- */

static int o_list_get(sl_state *st, const uint8_t **p, size_t *n)
{
    ostate *o = st->impl;
    if (!o->list || !o->list->len)
        return 0;
    *p = o->list->data;
    *n = o->list->len;
    return 1;
}

static int o_list_append(sl_state *st, const uint8_t *p, size_t n, size_t count)
{
    ostate *o = st->impl;
    o->list = sl__vec_append(o->list, p, n, count, false);
    return 0;
}

static int o_list_set(sl_state *st, const uint8_t *p, size_t n, size_t count)
{
    ostate *o = st->impl;
    if (o->list)
        o->list->len = o->list->count = 0;
    o->list = sl__vec_append(o->list, p, n, count, false);
    return 0;
}

static int o_map_get(sl_state *st, const uint8_t *k, size_t kn, const uint8_t **v, size_t *vn)
{
    ostate *o = st->impl;
    return sl__kv_get(&o->map, k, kn, v, vn);
}

static int o_map_put(sl_state *st, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
    ostate *o = st->impl;
    sl__kv_put(&o->map, &o->os->slab, k, kn, v, vn, false);
    return 0;
}

static int o_map_remove(sl_state *st, const uint8_t *k, size_t kn)
{
    ostate *o = st->impl;
    return sl__kv_remove(&o->map, &o->os->slab, k, kn);
}

static int o_map_iter_open(sl_state *st, sl_iter *it)
{
    ostate *o = st->impl;
    if (!o->map.count)
        return 0;
    it->tab = &o->map;
    it->pos = 0;
    return 1;
}

static int o_clear(sl_state *st)
{
    ostate *o = st->impl;
    bool had = (o->list && o->list->count) || o->map.count;
    clear_content(o);
    return had;
}

static const sl__state_ops operator_state_ops = {
    .list_get = o_list_get,
    .list_append = o_list_append,
    .list_set = o_list_set,
    .map_get = o_map_get,
    .map_put = o_map_put,
    .map_remove = o_map_remove,
    .map_iter_open = o_map_iter_open,
    .map_iter_next = sl__htab_iter_next,
    .clear = o_clear,
};

/* ---- Registration ----------------------------------------------------------------------- */

static const char *mode_name(sl_redistribution m)
{
    return m == SL_UNION ? "UNION" : "SPLIT_EVEN";
}

/* Checks restored content against the schemas of a handle being registered. */
static bool content_valid(const ostate *o, const sl_state *st)
{
    if (o->kind == SL_STATE_LIST)
        return !o->list || sl__elems_valid(st->schema, o->list->data, o->list->len, o->list->count);
    size_t p = 0;
    const uint8_t *e;
    while ((e = sl__htab_next(&o->map, &p))) {
        sl__ent x;
        sl__ent_view(e, &x);
        if (!sl__row_valid(st->key_schema, x.a, x.alen) || !sl__row_valid(st->schema, x.v, x.vlen))
            return false;
    }
    return true;
}

static sl_state *register_state(sl__operator_store *os, sl_ctx *ctx, const sl_state_desc *d,
                                int origin, sl_redistribution mode)
{
    char err[512];
    int code;
    sl_state *st = sl__state_new(d, ctx, err, sizeof err, &code);
    if (!st) {
        if (ctx)
            sl_fail(ctx, "%s", err);
        return NULL;
    }
    st->origin = origin;
    st->mode = mode;
    st->iters = &os->head.iters;
    st->ops = &operator_state_ops;
    ostate *o = find(os, st->name, strlen(st->name));
    if (o && o->handle) {
        sl_state *old = o->handle;
        if (old->origin == origin && sl__state_same_decl(old, st) && old->mode == mode) {
            sl__state_free(st);
            return old;
        }
        char was[256], now[256];
        sl__state_describe(old, was, sizeof was);
        sl__state_describe(st, now, sizeof now);
        if (ctx && old->origin == origin && sl__state_same_decl(old, st))
            sl_fail(ctx,
                    "operator list state \"%s\" is already declared with %s redistribution; it "
                    "cannot be declared again with %s",
                    st->name, mode_name(old->mode), mode_name(mode));
        else if (ctx)
            sl_fail(ctx,
                    "state \"%s\" is already declared as %s; it cannot be declared again as %s",
                    st->name, was, now);
        sl__state_free(st);
        return NULL;
    }
    if (o) {
        if (o->kind != st->kind) {
            if (ctx)
                sl_fail(ctx, "state \"%s\" was restored as %s state but is declared as %s",
                        st->name, o->kind == SL_STATE_LIST ? "an operator LIST" : "a broadcast MAP",
                        st->kind == SL_STATE_LIST ? "operator LIST" : "broadcast MAP");
            sl__state_free(st);
            return NULL;
        }
        if (!content_valid(o, st)) {
            char what[256];
            sl__state_describe(st, what, sizeof what);
            if (ctx)
                sl_fail(ctx, "state \"%s\": restored elements do not parse as declared (%s)",
                        st->name, what);
            sl__state_free(st);
            return NULL;
        }
        o->mode = mode;
    } else if (!(o = new_ostate(os, st->name, strlen(st->name), st->kind, mode))) {
        if (ctx)
            sl_fail(ctx, "out of memory registering state \"%s\"", st->name);
        sl__state_free(st);
        return NULL;
    }
    o->handle = st;
    st->impl = o;
    return st;
}

sl_state *sl__operator_list_state(sl__operator_store *os, sl_ctx *ctx, const char *name,
                                  const char *schema, sl_redistribution mode)
{
    if (!os)
        return NULL;
    if (mode != SL_SPLIT_EVEN && mode != SL_UNION) {
        if (ctx)
            sl_fail(ctx,
                    "operator list state \"%s\": unknown redistribution mode %d (expected "
                    "SL_SPLIT_EVEN or SL_UNION)",
                    name ? name : "?", (int)mode);
        return NULL;
    }
    sl_state_desc d = {.name = name, .kind = SL_STATE_LIST, .schema = schema};
    return register_state(os, ctx, &d, SL__ORIGIN_OPERATOR, mode);
}

sl_state *sl__operator_broadcast_state(sl__operator_store *os, sl_ctx *ctx, const char *name,
                                       const char *key_schema, const char *value_schema)
{
    if (!os)
        return NULL;
    sl_state_desc d = {
        .name = name, .kind = SL_STATE_MAP, .schema = value_schema, .key_schema = key_schema};
    return register_state(os, ctx, &d, SL__ORIGIN_BROADCAST, SL_SPLIT_EVEN);
}

sl_state *sl__operator_store_find(sl__operator_store *os, const char *name)
{
    if (!os || !name)
        return NULL;
    ostate *o = find(os, name, strlen(name));
    return o ? o->handle : NULL;
}

/* ---- Snapshot --------------------------------------------------------------------------- */

static size_t items_size(const ostate *o)
{
    if (o->kind == SL_STATE_LIST)
        return o->list ? o->list->len : 0;
    return sl__kv_pairs_size(&o->map);
}

static size_t items_count(const ostate *o)
{
    if (o->kind == SL_STATE_LIST)
        return o->list ? o->list->count : 0;
    return o->map.count;
}

int sl__operator_store_snapshot(sl__operator_store *os, sl__buf *out)
{
    size_t total = sl__varint_size(os->nstates);
    for (size_t i = 0; i < os->nstates; i++) {
        const ostate *o = os->states[i];
        size_t nl = strlen(o->name);
        total += sl__varint_size(nl) + nl + 2 + sl__varint_size(items_count(o)) + items_size(o);
    }
    if (sl__buf_reserve(out, total) < 0)
        return SL_ENOMEM;
    uint8_t *start = out->data + out->len, *w = sl__varint_write(start, os->nstates);
    for (size_t i = 0; i < os->nstates; i++) {
        const ostate *o = os->states[i];
        size_t nl = strlen(o->name);
        w = sl__varint_write(w, nl);
        memcpy(w, o->name, nl);
        w += nl;
        *w++ = (uint8_t)o->kind;
        *w++ = o->kind == SL_STATE_LIST ? (uint8_t)o->mode : 0;
        w = sl__varint_write(w, items_count(o));
        if (o->kind == SL_STATE_LIST) {
            if (o->list) {
                memcpy(w, o->list->data, o->list->len);
                w += o->list->len;
            }
        } else {
            w = sl__kv_pairs_write(&o->map, w);
        }
    }
    SL_ASSERT((size_t)(w - start) == total);
    out->len += total;
    return 0;
}

/* ---- Restore with redistribution -------------------------------------------------------- */

/* One state in one old subtask's snapshot. */
typedef struct part {
    int subtask;
    const uint8_t *name;
    size_t namelen;
    uint8_t kind, mode;
    uint64_t count;
    const uint8_t *items; /* elements or pairs, validated framing */
    size_t itemslen;
} part;

typedef struct parts {
    part *v;
    size_t n, cap;
} parts;

static int parse_snapshot(const sl__buf *b, int subtask, parts *ps, char *err, size_t cap)
{
    sl__rd r = {b->data, b->data ? b->data + b->len : NULL};
    uint64_t nst;
    if (!sl__rd_varint(&r, &nst)) {
        snprintf(err, cap, "operator state of old subtask %d: the state count is truncated",
                 subtask);
        return SL_EFORMAT;
    }
    size_t first = ps->n;
    for (uint64_t i = 0; i < nst; i++) {
        part pt = {.subtask = subtask};
        const char *problem = NULL;
        if (!sl__rd_bytes(&r, &pt.name, &pt.namelen) || !sl__rd_byte(&r, &pt.kind) ||
            !sl__rd_byte(&r, &pt.mode) || !sl__rd_varint(&r, &pt.count)) {
            snprintf(err, cap,
                     "operator state of old subtask %d: state %llu: its header is truncated",
                     subtask, (unsigned long long)i);
            return SL_EFORMAT;
        }
        int nl = (int)(pt.namelen > 200 ? 200 : pt.namelen);
        const char *nm = (const char *)pt.name;
        if (!pt.namelen || memchr(pt.name, 0, pt.namelen)) {
            snprintf(err, cap,
                     "operator state of old subtask %d: state %llu has an empty or malformed name",
                     subtask, (unsigned long long)i);
            return SL_EFORMAT;
        }
        if (pt.kind != SL_STATE_LIST && pt.kind != SL_STATE_MAP)
            problem = "its kind is neither LIST nor MAP";
        else if (pt.mode > (pt.kind == SL_STATE_LIST ? SL_UNION : 0))
            problem = "its redistribution mode is unknown";
        for (size_t j = first; j < ps->n && !problem; j++)
            if (ps->v[j].namelen == pt.namelen && !memcmp(ps->v[j].name, pt.name, pt.namelen))
                problem = "it appears twice";
        if (!problem) {
            pt.items = r.p;
            for (uint64_t e = 0; e < pt.count && !problem; e++) {
                const uint8_t *x;
                size_t xn;
                if (!sl__rd_bytes(&r, &x, &xn) ||
                    (pt.kind == SL_STATE_MAP && !sl__rd_bytes(&r, &x, &xn)))
                    problem = "its elements are truncated";
            }
            pt.itemslen = (size_t)(r.p - pt.items);
        }
        if (problem) {
            snprintf(err, cap, "operator state of old subtask %d: state \"%.*s\": %s", subtask, nl,
                     nm, problem);
            return SL_EFORMAT;
        }
        if (ps->n == ps->cap) {
            size_t c = ps->cap ? ps->cap * 2 : 8;
            part *v = sl__realloc(ps->v, c * sizeof *v);
            if (!v) {
                snprintf(err, cap, "out of memory restoring operator state");
                return SL_ENOMEM;
            }
            ps->v = v;
            ps->cap = c;
        }
        ps->v[ps->n++] = pt;
    }
    if (r.p != r.end) {
        snprintf(err, cap,
                 "operator state of old subtask %d: %zu unexpected bytes after the last state",
                 subtask, (size_t)(r.end - r.p));
        return SL_EFORMAT;
    }
    return 0;
}

static bool same_name(const part *a, const part *b)
{
    return a->namelen == b->namelen && !memcmp(a->name, b->name, a->namelen);
}

/* True when parts[i] is the first part of its state's group. */
static bool group_head(const parts *ps, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (same_name(&ps->v[j], &ps->v[i]))
            return false;
    return true;
}

/* Checks a group (all parts named like parts[i]) for consistency and, when the state is
 * registered here, its rows against the schemas. */
static int check_group(sl__operator_store *os, const parts *ps, size_t i, char *err, size_t cap)
{
    const part *h = &ps->v[i];
    int nl = (int)(h->namelen > 200 ? 200 : h->namelen);
    const char *nm = (const char *)h->name;
    for (size_t j = i + 1; j < ps->n; j++) {
        const part *q = &ps->v[j];
        if (same_name(q, h) && (q->kind != h->kind || q->mode != h->mode)) {
            snprintf(err, cap,
                     "operator state \"%.*s\": old subtask %d has it as %s (mode %d), old "
                     "subtask %d as %s (mode %d)",
                     nl, nm, h->subtask, sl__state_kind_name(h->kind), h->mode, q->subtask,
                     sl__state_kind_name(q->kind), q->mode);
            return SL_EFORMAT;
        }
    }
    const ostate *o = find(os, nm, h->namelen);
    if (o && o->kind != h->kind) {
        snprintf(err, cap, "operator state \"%.*s\" is %s state in the snapshot but %s here", nl,
                 nm, sl__state_kind_name(h->kind), sl__state_kind_name(o->kind));
        return SL_EFORMAT;
    }
    const sl_state *st = o ? o->handle : NULL;
    if (!st)
        return 0;
    for (size_t j = i; j < ps->n; j++) {
        const part *q = &ps->v[j];
        if (!same_name(q, h))
            continue;
        bool ok =
            q->kind == SL_STATE_LIST
                ? sl__elems_valid(st->schema, q->items, q->itemslen, q->count)
                : sl__pairs_valid(st->key_schema, st->schema, q->items, q->itemslen, q->count);
        if (!ok) {
            snprintf(err, cap,
                     "operator state \"%.*s\" of old subtask %d does not parse under its schema",
                     nl, nm, q->subtask);
            return SL_EFORMAT;
        }
    }
    return 0;
}

/* Byte offset, within a part's items, of element k (LIST parts). */
static size_t elem_offset(const part *q, uint64_t k)
{
    sl__rd r = {q->items, q->items + q->itemslen};
    for (uint64_t e = 0; e < k; e++) {
        const uint8_t *x;
        size_t xn;
        sl__rd_bytes(&r, &x, &xn);
    }
    return (size_t)(r.p - q->items);
}

/* Builds this subtask's share of a LIST group: elements [start, start + take) of the
 * concatenation of the old lists in subtask order. */
static int build_list(const parts *ps, size_t i, uint64_t start, uint64_t take, sl__vec **out)
{
    const part *h = &ps->v[i];
    uint64_t base = 0, end = start + take; /* base: global index of q's first element */
    sl__vec *v = NULL;
    for (size_t j = i; j < ps->n && base < end; j++) {
        const part *q = &ps->v[j];
        if (!same_name(q, h))
            continue;
        uint64_t lo = start > base ? start : base;
        uint64_t hi = end < base + q->count ? end : base + q->count;
        if (lo < hi) {
            size_t b0 = elem_offset(q, lo - base), b1 = elem_offset(q, hi - base);
            sl__vec *nv = sl__vec_append(v, q->items + b0, b1 - b0, (size_t)(hi - lo), true);
            if (!nv) {
                sl__free(v);
                return SL_ENOMEM;
            }
            v = nv;
        }
        base += q->count;
    }
    *out = v;
    return 0;
}

static int apply_group(sl__operator_store *os, const parts *ps, size_t i, int new_index, int new_p)
{
    const part *h = &ps->v[i];
    sl__vec *list = NULL;
    sl__htab map = {0};
    if (h->kind == SL_STATE_LIST) {
        uint64_t total = 0;
        for (size_t j = i; j < ps->n; j++)
            if (same_name(&ps->v[j], h))
                total += ps->v[j].count;
        uint64_t start = 0, take = total;
        if (h->mode == SL_SPLIT_EVEN) {
            uint64_t base = total / (uint64_t)new_p, rem = total % (uint64_t)new_p;
            uint64_t idx = (uint64_t)new_index;
            start = idx * base + (idx < rem ? idx : rem);
            take = base + (idx < rem ? 1 : 0);
        }
        if (build_list(ps, i, start, take, &list) < 0)
            return SL_ENOMEM;
    } else if (sl__kv_load_pairs(&map, &os->slab, h->items, h->itemslen, h->count) < 0) {
        sl__kv_clear(&map, &os->slab);
        return SL_ENOMEM;
    }
    ostate *o = find(os, (const char *)h->name, h->namelen);
    if (!o && !(o = new_ostate(os, (const char *)h->name, h->namelen, h->kind, h->mode))) {
        sl__free(list);
        sl__kv_clear(&map, &os->slab);
        return SL_ENOMEM;
    }
    clear_content(o);
    o->list = list;
    o->map = map;
    if (o->handle)
        o->handle->mod++;
    else
        o->mode = h->mode;
    return 0;
}

int sl__operator_store_restore(sl__operator_store *os, const sl__buf *old_snapshots, int old_p,
                               int new_index, int new_p, char *err, size_t cap)
{
    if (!os || old_p < 0 || (old_p && !old_snapshots) || new_p < 1 || new_index < 0 ||
        new_index >= new_p) {
        snprintf(err, cap,
                 "operator state restore: invalid arguments (old parallelism %d, new "
                 "subtask %d of %d)",
                 old_p, new_index, new_p);
        return SL_EINVAL;
    }
    parts ps = {0};
    int rc = 0;
    for (int s = 0; s < old_p && rc == 0; s++)
        rc = parse_snapshot(&old_snapshots[s], s, &ps, err, cap);
    for (size_t i = 0; i < ps.n && rc == 0; i++)
        if (group_head(&ps, i))
            rc = check_group(os, &ps, i, err, cap);
    for (size_t i = 0; i < ps.n && rc == 0; i++) {
        if (group_head(&ps, i) && (rc = apply_group(os, &ps, i, new_index, new_p)) < 0)
            snprintf(err, cap, "out of memory restoring operator state");
    }
    sl__free(ps.v);
    return rc;
}

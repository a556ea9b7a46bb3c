/*
 * heap_backend.c - the heap keyed state backend: every state's entries in memory, one hash
 * table per (state, key group) of the backend's range, created on the first entry of that
 * key group, so whole key groups can be snapshotted, restored and moved on rescale.
 *
 * An entry is addressed by (key bytes, namespace bytes) and stored as one slab block
 * (table.c): hash | lengths | key | namespace | value. The hash is the key's hash (sl__key)
 * combined with the namespace's only when the namespace is non-empty. The value is the
 * serialized row for VALUE, REDUCING and AGGREGATING state (an update of the same size, or
 * one that still fits the block, is done in place), and a pointer for LIST (an sl__vec of
 * length-prefixed rows) and MAP (a nested sl__htab from user key bytes to value bytes). A
 * list or map entry exists only while it is non-empty.
 *
 * Memory per VALUE entry with an 8-byte value (a 9-byte row: null bitmap + i64), empty
 * namespace and a key of K bytes: the block is 8 (hash) + 3 (three 1-byte varint lengths)
 * + K + 9 bytes rounded up to 8, i.e. 20 + K + at most 7 of padding, from a slab page with
 * no per-block header; plus one 8-byte slot at a load of 3/8..3/4 (10.7..21.3 bytes per
 * entry, ~15 on average). So about 23..28 + 15 = 38..43 bytes per entry above the key
 * bytes on average (for K = 9: a 32-byte block, 23 + 15 = 38), at most 48 just after a
 * table doubled. Per non-empty (state, key group) add a 32-byte table header. test_state's
 * memory_per_entry measures 40.2 bytes for 1M i64 keys (K = 9) over 128 key groups.
 *
 * Lookups: one probe sequence per access, no allocation and no lock on a hit. Each state
 * keeps a one-entry cache of the last lookup (found or not, with the slot), valid while
 * the current key, the state's namespace and the table layout are unchanged, so the usual
 * get-then-update does one hash lookup. "Layout" counts events that move entries between
 * slots (table growth, removal by backward shift, restore).
 */
#include "core/alloc.h"
#include "core/hash.h"
#include "core/log.h"
#include "state/state_int.h"

#include <stdio.h>
#include <string.h>

/* Where the current scope's entry is, or would be inserted. */
typedef struct pos {
    sl__htab *tab; /* the key group's table; NULL when not created yet */
    size_t slot;
    uint64_t hash;
    bool found;
} pos;

typedef struct hstate {
    char *name;
    sl_state_kind kind;
    sl_state *handle; /* NULL while only restored, not registered */
    sl__htab **kg;    /* by key group - kg_start */
    size_t nentries;
    uint64_t layout;
    struct {
        bool valid;
        uint64_t key_epoch, ns_epoch, layout;
        pos at;
    } cache;
} hstate;

typedef struct heap_backend {
    sl__keyed_backend base;
    sl__slab slab;
    hstate **states; /* registered and restored, in order of appearance */
    size_t nstates, states_cap;
    size_t nentries;
} heap_backend;

static const sl__state_ops heap_state_ops;
static const sl__backend_ops heap_ops;

static size_t nkg(const heap_backend *hb)
{
    return (size_t)(hb->base.kg_end - hb->base.kg_start);
}

/* ---- Entries ---------------------------------------------------------------------------- */

static void *ent_ptr(const uint8_t *e)
{
    sl__ent x;
    sl__ent_view(e, &x);
    void *p;
    memcpy(&p, x.v, sizeof p);
    return p;
}

static void ent_set_ptr(uint8_t *e, void *p)
{
    sl__ent x;
    sl__ent_view(e, &x);
    memcpy(x.v, &p, sizeof p);
}

static bool is_valuelike(int kind)
{
    return kind == SL_STATE_VALUE || kind == SL_STATE_REDUCING || kind == SL_STATE_AGGREGATING;
}

/* Frees an entry of a state of kind, with its list or map. */
static void free_entry(heap_backend *hb, int kind, uint8_t *e)
{
    if (kind == SL_STATE_LIST) {
        sl__free(ent_ptr(e));
    } else if (kind == SL_STATE_MAP) {
        sl__htab *m = ent_ptr(e);
        sl__kv_clear(m, &hb->slab);
        sl__free(m);
    }
    sl__ent_free(&hb->slab, e);
}

/* ---- Per-state storage ------------------------------------------------------------------ */

static hstate *find_state(heap_backend *hb, const char *name, size_t len)
{
    for (size_t i = 0; i < hb->nstates; i++) {
        hstate *hs = hb->states[i];
        if (strlen(hs->name) == len && !memcmp(hs->name, name, len))
            return hs;
    }
    return NULL;
}

/* A new, empty state of kind; NULL on out of memory. */
static hstate *new_state(heap_backend *hb, const char *name, size_t len, sl_state_kind kind)
{
    if (hb->nstates == hb->states_cap) {
        size_t cap = hb->states_cap ? hb->states_cap * 2 : 4;
        hstate **states = sl__realloc(hb->states, cap * sizeof *states);
        if (!states)
            return NULL;
        hb->states = states;
        hb->states_cap = cap;
    }
    hstate *hs = sl__calloc(1, sizeof *hs);
    if (!hs)
        return NULL;
    hs->name = sl__strndup(name, len);
    hs->kg = sl__calloc(nkg(hb), sizeof *hs->kg);
    if (!hs->name || !hs->kg) {
        sl__free(hs->name);
        sl__free(hs->kg);
        sl__free(hs);
        return NULL;
    }
    hs->kind = kind;
    hb->states[hb->nstates++] = hs;
    return hs;
}

static void free_state(heap_backend *hb, hstate *hs)
{
    for (size_t i = 0; i < nkg(hb); i++) {
        sl__htab *t = hs->kg[i];
        if (!t)
            continue;
        size_t p = 0;
        uint8_t *e;
        while ((e = sl__htab_next(t, &p)))
            free_entry(hb, hs->kind, e);
        sl__htab_close(t);
        sl__free(t);
    }
    sl__free(hs->kg);
    sl__free(hs->name);
    sl__free(hs);
}

/* ---- Scoped access ---------------------------------------------------------------------- */

static void remember(sl_state *st, const pos *at)
{
    hstate *hs = st->impl;
    hs->cache.valid = true;
    hs->cache.key_epoch = st->be->key_epoch;
    hs->cache.ns_epoch = st->ns_epoch;
    hs->cache.layout = hs->layout;
    hs->cache.at = *at;
}

/* Finds the entry of the current key and st's namespace. */
static void locate(sl_state *st, pos *at)
{
    hstate *hs = st->impl;
    const sl__keyed_backend *be = st->be;
    if (hs->cache.valid && hs->cache.key_epoch == be->key_epoch &&
        hs->cache.ns_epoch == st->ns_epoch && hs->cache.layout == hs->layout) {
        *at = hs->cache.at;
        return;
    }
    const sl__key *k = &be->key;
    at->hash = sl__scope_hash(k->hash, st->ns_hash, st->ns_len);
    at->tab = hs->kg[k->key_group - be->kg_start];
    at->slot = 0;
    at->found = at->tab &&
                sl__htab_find(at->tab, at->hash, k->bytes, k->len, st->ns, st->ns_len, &at->slot);
    remember(st, at);
}

static uint8_t *entry_at(const pos *at)
{
    return at->tab->slots[at->slot];
}

/* Inserts a new entry for the current scope (which locate found absent) with value v. */
static uint8_t *insert(sl_state *st, pos *at, const void *v, size_t vlen)
{
    heap_backend *hb = (heap_backend *)st->be;
    hstate *hs = st->impl;
    const sl__key *k = &hb->base.key;
    sl__htab **tp = &hs->kg[k->key_group - hb->base.kg_start];
    if (!*tp)
        *tp = sl__xcalloc(1, sizeof **tp);
    sl__htab *t = *tp;
    if (sl__htab_reserve(t, false) > 0 || at->tab != t) {
        hs->layout++;
        at->tab = t;
        sl__htab_find(t, at->hash, k->bytes, k->len, st->ns, st->ns_len, &at->slot);
    }
    uint8_t *e =
        sl__ent_make(&hb->slab, at->hash, k->bytes, k->len, st->ns, st->ns_len, v, vlen, false);
    sl__htab_insert_at(t, at->slot, e);
    hs->nentries++;
    hb->nentries++;
    at->found = true;
    remember(st, at);
    return e;
}

/* Removes the entry locate found. */
static void remove_at(sl_state *st, const pos *at)
{
    heap_backend *hb = (heap_backend *)st->be;
    hstate *hs = st->impl;
    uint8_t *e = entry_at(at);
    sl__htab_remove_at(at->tab, at->slot);
    free_entry(hb, hs->kind, e);
    hs->nentries--;
    hb->nentries--;
    hs->layout++;
}

static int h_value_get(sl_state *st, const uint8_t **p, size_t *n)
{
    pos at;
    locate(st, &at);
    if (!at.found)
        return 0;
    sl__ent x;
    sl__ent_view(entry_at(&at), &x);
    *p = x.v;
    *n = x.vlen;
    return 1;
}

static void h_value_put(sl_state *st, const uint8_t *p, size_t n)
{
    pos at;
    locate(st, &at);
    if (at.found) {
        heap_backend *hb = (heap_backend *)st->be;
        at.tab->slots[at.slot] = sl__ent_set_value(&hb->slab, entry_at(&at), p, n, false);
    } else {
        insert(st, &at, p, n);
    }
}

static int h_list_get(sl_state *st, const uint8_t **p, size_t *n)
{
    pos at;
    locate(st, &at);
    if (!at.found)
        return 0;
    const sl__vec *v = ent_ptr(entry_at(&at));
    *p = v->data;
    *n = v->len;
    return v->len > 0;
}

static void list_write(sl_state *st, const uint8_t *p, size_t n, size_t count, bool replace)
{
    pos at;
    locate(st, &at);
    if (at.found) {
        uint8_t *e = entry_at(&at);
        sl__vec *v = ent_ptr(e);
        if (replace)
            v->len = v->count = 0;
        ent_set_ptr(e, sl__vec_append(v, p, n, count, false));
    } else {
        sl__vec *v = sl__vec_append(NULL, p, n, count, false);
        insert(st, &at, &v, sizeof v);
    }
}

static void h_list_append(sl_state *st, const uint8_t *p, size_t n, size_t count)
{
    list_write(st, p, n, count, false);
}

static void h_list_set(sl_state *st, const uint8_t *p, size_t n, size_t count)
{
    list_write(st, p, n, count, true);
}

static int h_map_get(sl_state *st, const uint8_t *k, size_t kn, const uint8_t **v, size_t *vn)
{
    pos at;
    locate(st, &at);
    return at.found ? sl__kv_get(ent_ptr(entry_at(&at)), k, kn, v, vn) : 0;
}

static void h_map_put(sl_state *st, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
    heap_backend *hb = (heap_backend *)st->be;
    pos at;
    locate(st, &at);
    sl__htab *m;
    if (at.found) {
        m = ent_ptr(entry_at(&at));
    } else {
        m = sl__xcalloc(1, sizeof *m);
        insert(st, &at, &m, sizeof m);
    }
    sl__kv_put(m, &hb->slab, k, kn, v, vn, false);
}

static int h_map_remove(sl_state *st, const uint8_t *k, size_t kn)
{
    heap_backend *hb = (heap_backend *)st->be;
    pos at;
    locate(st, &at);
    if (!at.found)
        return 0;
    sl__htab *m = ent_ptr(entry_at(&at));
    int removed = sl__kv_remove(m, &hb->slab, k, kn);
    if (removed && !m->count)
        remove_at(st, &at);
    return removed;
}

static const sl__htab *h_map_table(sl_state *st)
{
    pos at;
    locate(st, &at);
    return at.found ? ent_ptr(entry_at(&at)) : NULL;
}

static int h_clear(sl_state *st)
{
    pos at;
    locate(st, &at);
    if (!at.found)
        return 0;
    remove_at(st, &at);
    return 1;
}

static const sl__state_ops heap_state_ops = {
    .value_get = h_value_get,
    .value_put = h_value_put,
    .list_get = h_list_get,
    .list_append = h_list_append,
    .list_set = h_list_set,
    .map_get = h_map_get,
    .map_put = h_map_put,
    .map_remove = h_map_remove,
    .map_table = h_map_table,
    .clear = h_clear,
};

/* ---- Validation ------------------------------------------------------------------------- */

/* Checks a value held in memory (restored before registration) against st's schemas. */
static bool entry_valid(const sl_state *st, const uint8_t *e)
{
    sl__ent x;
    sl__ent_view(e, &x);
    if (is_valuelike(st->kind))
        return sl__row_valid(st->stored, x.v, x.vlen);
    if (st->kind == SL_STATE_LIST) {
        const sl__vec *v = ent_ptr(e);
        return sl__elems_valid(st->schema, v->data, v->len, v->count);
    }
    const sl__htab *m = ent_ptr(e);
    size_t p = 0;
    const uint8_t *me;
    while ((me = sl__htab_next(m, &p))) {
        sl__ent y;
        sl__ent_view(me, &y);
        if (!sl__row_valid(st->key_schema, y.a, y.alen) || !sl__row_valid(st->schema, y.v, y.vlen))
            return false;
    }
    return true;
}

/* Checks a payload in snapshot form for a state of kind; schemas from st when registered. */
static bool payload_valid(const sl_state *st, int kind, const uint8_t *p, size_t n)
{
    if (is_valuelike(kind))
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

/* ---- Backend operations ----------------------------------------------------------------- */

static void h_destroy(sl__keyed_backend *be)
{
    heap_backend *hb = (heap_backend *)be;
    for (size_t i = 0; i < hb->nstates; i++)
        free_state(hb, hb->states[i]);
    sl__free(hb->states);
    sl__slab_close(&hb->slab);
    sl__free(hb);
}

static int h_attach(sl__keyed_backend *be, sl_state *st, char *err, size_t cap)
{
    heap_backend *hb = (heap_backend *)be;
    hstate *hs = find_state(hb, st->name, strlen(st->name));
    if (hs) {
        SL_ASSERT(!hs->handle);
        if (hs->kind != st->kind) {
            snprintf(err, cap, "state \"%s\" was restored as %s state but is declared as %s",
                     st->name, sl__state_kind_name(hs->kind), sl__state_kind_name(st->kind));
            return SL_ESTATE;
        }
        for (size_t i = 0; i < nkg(hb); i++) {
            size_t p = 0;
            const uint8_t *e;
            while (hs->kg[i] && (e = sl__htab_next(hs->kg[i], &p))) {
                if (!entry_valid(st, e)) {
                    char what[256];
                    sl__state_describe(st, what, sizeof what);
                    snprintf(err, cap,
                             "state \"%s\": a restored entry in key group %d does not parse as "
                             "declared (%s)",
                             st->name, be->kg_start + (int)i, what);
                    return SL_EFORMAT;
                }
            }
        }
    } else if (!(hs = new_state(hb, st->name, strlen(st->name), st->kind))) {
        snprintf(err, cap, "out of memory registering state \"%s\"", st->name);
        return SL_ENOMEM;
    }
    hs->handle = st;
    hs->cache.valid = false;
    st->impl = hs;
    st->ops = &heap_state_ops;
    return 0;
}

static int h_for_each_key(sl__keyed_backend *be, sl_state *st,
                          int (*fn)(void *arg, const sl__key *key), void *arg)
{
    heap_backend *hb = (heap_backend *)be;
    hstate *hs = st->impl;
    for (size_t i = 0; i < nkg(hb); i++) {
        const sl__htab *t = hs->kg[i];
        uint64_t layout = hs->layout;
        size_t p = 0;
        const uint8_t *e;
        while (t && (e = sl__htab_next(t, &p))) {
            sl__ent x;
            sl__ent_view(e, &x);
            if (x.blen != st->ns_len || (x.blen && memcmp(x.b, st->ns, x.blen)))
                continue;
            sl__key k = {.bytes = x.a,
                         .len = x.alen,
                         .hash = x.blen ? sl__hash(x.a, x.alen) : x.hash,
                         .key_group = be->kg_start + (int)i};
            int rc = fn(arg, &k);
            if (rc)
                return rc;
            if (hs->layout != layout) /* fn wrote to st, which is not allowed */
                return SL_ESTATE;
        }
    }
    return 0;
}

static size_t h_size(const sl__keyed_backend *be)
{
    return ((const heap_backend *)be)->nentries;
}

/* Size of an entry's payload in snapshot form. */
static size_t payload_size(int kind, const uint8_t *e)
{
    sl__ent x;
    sl__ent_view(e, &x);
    if (is_valuelike(kind))
        return x.vlen;
    if (kind == SL_STATE_LIST) {
        const sl__vec *v = ent_ptr(e);
        return sl__varint_size(v->count) + v->len;
    }
    const sl__htab *m = ent_ptr(e);
    return sl__varint_size(m->count) + sl__kv_pairs_size(m);
}

static uint8_t *payload_write(int kind, const uint8_t *e, uint8_t *p)
{
    sl__ent x;
    sl__ent_view(e, &x);
    if (is_valuelike(kind)) {
        memcpy(p, x.v, x.vlen);
        return p + x.vlen;
    }
    if (kind == SL_STATE_LIST) {
        const sl__vec *v = ent_ptr(e);
        p = sl__varint_write(p, v->count);
        memcpy(p, v->data, v->len);
        return p + v->len;
    }
    const sl__htab *m = ent_ptr(e);
    p = sl__varint_write(p, m->count);
    return sl__kv_pairs_write(m, p);
}

static int h_snapshot_kg(sl__keyed_backend *be, int key_group, sl__buf *out)
{
    heap_backend *hb = (heap_backend *)be;
    size_t idx = (size_t)(key_group - be->kg_start);
    size_t nst = 0, total = 0;
    for (size_t i = 0; i < hb->nstates; i++) {
        const hstate *hs = hb->states[i];
        const sl__htab *t = hs->kg[idx];
        if (!t || !t->count)
            continue;
        size_t namelen = strlen(hs->name);
        nst++;
        total += sl__varint_size(namelen) + namelen + 1 + sl__varint_size(t->count);
        size_t p = 0;
        const uint8_t *e;
        while ((e = sl__htab_next(t, &p))) {
            sl__ent x;
            sl__ent_view(e, &x);
            size_t pl = payload_size(hs->kind, e);
            total += sl__varint_size(x.alen) + x.alen + sl__varint_size(x.blen) + x.blen +
                     sl__varint_size(pl) + pl;
        }
    }
    total += sl__varint_size(nst);
    if (sl__buf_reserve(out, total) < 0)
        return SL_ENOMEM;
    uint8_t *start = out->data + out->len, *w = sl__varint_write(start, nst);
    for (size_t i = 0; i < hb->nstates; i++) {
        const hstate *hs = hb->states[i];
        const sl__htab *t = hs->kg[idx];
        if (!t || !t->count)
            continue;
        size_t namelen = strlen(hs->name);
        w = sl__varint_write(w, namelen);
        memcpy(w, hs->name, namelen);
        w += namelen;
        *w++ = (uint8_t)hs->kind;
        w = sl__varint_write(w, t->count);
        size_t p = 0;
        const uint8_t *e;
        while ((e = sl__htab_next(t, &p))) {
            sl__ent x;
            sl__ent_view(e, &x);
            w = sl__varint_write(w, x.alen);
            memcpy(w, x.a, x.alen);
            w += x.alen;
            w = sl__varint_write(w, x.blen);
            if (x.blen)
                memcpy(w, x.b, x.blen);
            w += x.blen;
            w = sl__varint_write(w, payload_size(hs->kind, e));
            w = payload_write(hs->kind, e, w);
        }
    }
    SL_ASSERT((size_t)(w - start) == total);
    out->len += total;
    return 0;
}

/* A state section's header: name, kind, entry count. */
typedef struct section {
    const uint8_t *name;
    size_t namelen;
    uint8_t kind;
    uint64_t nentries;
} section;

static bool read_section(sl__rd *r, section *s)
{
    return sl__rd_bytes(r, &s->name, &s->namelen) && sl__rd_byte(r, &s->kind) &&
           sl__rd_varint(r, &s->nentries);
}

/* Pass 1 of restore: checks everything without changing the backend. */
static int validate_kg(heap_backend *hb, int kg, const uint8_t *p, size_t len, char *err,
                       size_t cap)
{
    sl__rd r = {p, p + len};
    uint64_t nst;
    if (!sl__rd_varint(&r, &nst)) {
        snprintf(err, cap, "key group %d: the state count is truncated", kg);
        return SL_EFORMAT;
    }
    section *seen = NULL;
    size_t nseen = 0, seen_cap = 0;
    int rc = 0;
    for (uint64_t i = 0; i < nst && rc == 0; i++) {
        section s;
        if (!read_section(&r, &s)) {
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
            section *ns = sl__realloc(seen, c * sizeof *ns);
            if (!ns) {
                snprintf(err, cap, "out of memory restoring key group %d", kg);
                rc = SL_ENOMEM;
                break;
            }
            seen = ns;
            seen_cap = c;
        }
        seen[nseen++] = s;
        const hstate *hs = find_state(hb, nm, s.namelen);
        if (hs && hs->kind != s.kind) {
            snprintf(err, cap,
                     "key group %d: state \"%.*s\" is %s state in the snapshot but %s here", kg, nl,
                     nm, sl__state_kind_name(s.kind), sl__state_kind_name(hs->kind));
            rc = SL_EFORMAT;
            break;
        }
        const sl_state *st = hs ? hs->handle : NULL;
        for (uint64_t e = 0; e < s.nentries; e++) {
            const uint8_t *key, *ns, *pl;
            size_t kl, nsl, pll;
            const char *what = NULL;
            if (!sl__rd_bytes(&r, &key, &kl))
                what = "its key is truncated";
            else if (sl__key_group(sl__hash(key, kl), hb->base.max_parallelism) != kg)
                what = "its key belongs to another key group";
            else if (hb->base.key_schema && !sl__row_valid(hb->base.key_schema, key, kl))
                what = "its key does not parse under the key schema";
            else if (!sl__rd_bytes(&r, &ns, &nsl))
                what = "its namespace is truncated";
            else if (!sl__rd_bytes(&r, &pl, &pll))
                what = "its value is truncated";
            else if (!payload_valid(st, s.kind, pl, pll))
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

/* Makes the in-memory entry for a validated snapshot entry; NULL on out of memory, or
 * *empty when the list or map has no elements (such an entry is not stored). */
static uint8_t *load_entry(heap_backend *hb, int kind, uint64_t h, const uint8_t *key, size_t kl,
                           const uint8_t *ns, size_t nsl, const uint8_t *pl, size_t pll,
                           bool *empty)
{
    *empty = false;
    if (is_valuelike(kind))
        return sl__ent_make(&hb->slab, h, key, kl, ns, nsl, pl, pll, true);
    sl__rd r = {pl, pl + pll};
    uint64_t count = 0;
    sl__rd_varint(&r, &count); /* validated before */
    size_t rest = (size_t)(r.end - r.p);
    if (!count) {
        *empty = true;
        return NULL;
    }
    if (kind == SL_STATE_LIST) {
        sl__vec *v = sl__vec_append(NULL, r.p, rest, (size_t)count, true);
        if (!v)
            return NULL;
        uint8_t *e = sl__ent_make(&hb->slab, h, key, kl, ns, nsl, &v, sizeof v, true);
        if (!e)
            sl__free(v);
        return e;
    }
    sl__htab *m = sl__calloc(1, sizeof *m);
    if (!m)
        return NULL;
    uint8_t *e = NULL;
    if (sl__kv_load_pairs(m, &hb->slab, r.p, rest, count) == 0)
        e = sl__ent_make(&hb->slab, h, key, kl, ns, nsl, &m, sizeof m, true);
    if (!e) {
        sl__kv_clear(m, &hb->slab);
        sl__free(m);
    }
    return e;
}

/* Pass 2 of restore: inserts the validated entries. */
static int apply_kg(heap_backend *hb, int kg, const uint8_t *p, size_t len)
{
    size_t idx = (size_t)(kg - hb->base.kg_start);
    sl__rd r = {p, p + len};
    uint64_t nst;
    if (!sl__rd_varint(&r, &nst))
        return SL_EFORMAT; /* validated before: cannot happen */
    for (uint64_t i = 0; i < nst; i++) {
        section s;
        if (!read_section(&r, &s))
            return SL_EFORMAT;
        hstate *hs = find_state(hb, (const char *)s.name, s.namelen);
        if (!hs && !(hs = new_state(hb, (const char *)s.name, s.namelen, s.kind)))
            return SL_ENOMEM;
        hs->layout++;
        if (hs->handle)
            hs->handle->mod++;
        for (uint64_t e = 0; e < s.nentries; e++) {
            const uint8_t *key, *ns, *pl;
            size_t kl, nsl, pll;
            if (!sl__rd_bytes(&r, &key, &kl) || !sl__rd_bytes(&r, &ns, &nsl) ||
                !sl__rd_bytes(&r, &pl, &pll))
                return SL_EFORMAT;
            uint64_t h = sl__scope_hash(sl__hash(key, kl), nsl ? sl__hash(ns, nsl) : 0, nsl);
            if (!hs->kg[idx] && !(hs->kg[idx] = sl__calloc(1, sizeof *hs->kg[idx])))
                return SL_ENOMEM;
            sl__htab *t = hs->kg[idx];
            if (sl__htab_reserve(t, true) < 0)
                return SL_ENOMEM;
            size_t slot;
            bool found = sl__htab_find(t, h, key, kl, ns, nsl, &slot);
            bool empty;
            uint8_t *ent = load_entry(hb, s.kind, h, key, kl, ns, nsl, pl, pll, &empty);
            if (empty && found) { /* an empty list or map replaces what was there */
                uint8_t *old = t->slots[slot];
                sl__htab_remove_at(t, slot);
                free_entry(hb, hs->kind, old);
                hs->nentries--;
                hb->nentries--;
                continue;
            }
            if (empty)
                continue;
            if (!ent)
                return SL_ENOMEM;
            if (found) {
                free_entry(hb, hs->kind, t->slots[slot]);
                t->slots[slot] = ent;
            } else {
                sl__htab_insert_at(t, slot, ent);
                hs->nentries++;
                hb->nentries++;
            }
        }
    }
    return 0;
}

static int h_restore_kg(sl__keyed_backend *be, int key_group, const uint8_t *p, size_t len,
                        char *err, size_t cap)
{
    heap_backend *hb = (heap_backend *)be;
    int rc = validate_kg(hb, key_group, p, len, err, cap);
    if (rc < 0)
        return rc;
    rc = apply_kg(hb, key_group, p, len);
    if (rc < 0)
        snprintf(err, cap, "%s restoring key group %d",
                 rc == SL_ENOMEM ? "out of memory" : "inconsistent bytes", key_group);
    return rc;
}

static const sl__backend_ops heap_ops = {
    .name = "heap",
    .destroy = h_destroy,
    .attach = h_attach,
    .for_each_key = h_for_each_key,
    .size = h_size,
    .snapshot_kg = h_snapshot_kg,
    .restore_kg = h_restore_kg,
};

sl__keyed_backend *sl__heap_backend_create(int max_parallelism, int kg_start, int kg_end,
                                           const sl__schema *key_schema)
{
    if (max_parallelism < 1 || kg_start < 0 || kg_end < kg_start || kg_end > max_parallelism)
        return NULL;
    heap_backend *hb = sl__calloc(1, sizeof *hb);
    if (!hb)
        return NULL;
    sl__slab_init(&hb->slab);
    if (sl__keyed_backend_init(&hb->base, &heap_ops, max_parallelism, kg_start, kg_end,
                               key_schema) < 0) {
        sl__free(hb);
        return NULL;
    }
    return &hb->base;
}

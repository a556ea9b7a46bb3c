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
 * namespace and a key of K bytes: the block is 8 (32-bit hash and 32-bit snapshot version)
 * + 3 (three 1-byte varint lengths)
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
 * slots (table growth, removal by backward shift, restore). A slot holds the entry's
 * address and a 16-bit tag of its hash (state_int.h), so a probe reads only the entries
 * likely to match; sl__keyed_backend_prefetch loads the slot and then the entry of a key a
 * few records before its lookup (h_prefetch).
 *
 * Copy-on-write snapshots (state.h), after Flink's CopyOnWriteStateMap. The backend has a
 * version, bumped by every snapshot_begin; the snapshot takes the new value. Every entry
 * records the version it was written in (in the 8-byte word that also holds its hash, so
 * an entry costs no more than before). begin() copies the occupied slots of every
 * non-empty (state, key group) table, in slot order, into one buffer (a branch-free pass
 * over each slot array, nothing per entry) and notes each state's name and kind: that is
 * the whole synchronous part. The snapshot then
 * reaches exactly the entries the copied slots point to, and through list and map entries
 * their vectors and nested tables. cow_below is the highest version of the live
 * snapshots (0 when none is live): an entry with a lower version was in the tables when
 * that snapshot began (an entry stays in its table until it is removed, and removal is
 * final), and an entry with the same or a higher version was written after every live
 * snapshot began, so no snapshot reaches it. Hence the one rule on the task thread:
 *
 *   an entry with version < cow_below is never written nor freed,
 *
 * with one exception: once the writer of every live snapshot that reaches the entry has
 * said it is done with the entry's key group (kg_written, release; read with acquire
 * before the write), the snapshot will not read the entry again, and it is written in
 * place. A checkpoint's writer says so after each key group, so on average half the
 * copies a snapshot would cost are not made.
 *
 * A write to such an entry makes a new entry (current version) with the same address and
 * the new value, puts it in the same slot and defers the old one: a value is copied with
 * its update, a list's vector is copied before an append (not before a replacement), a
 * map's nested table is deep-copied (same capacity and slot order) before a put or remove
 * (a remove of the last pair just removes the entry). Clear, delete and restore defer the
 * entries they take out. Table resizes and backward shifts touch only the live slot
 * arrays, which no snapshot reads; the slab reuses a block only after it is freed, and a
 * deferred block is freed only when no live snapshot can reach it. The check on the hot
 * path is one compare of the entry's version with cow_below, false while no snapshot is
 * live; reads never check. (A list or map is copied whole on its first write after a
 * snapshot began, as Flink copies mutable state with its serializer: O(size) once per
 * snapshot for each list or map written while it is live.)
 *
 * A deferred entry removed while the backend was at version c and written at version v is
 * reachable exactly from the live snapshots with v < version <= c. Deferred entries wait
 * in chunks by c and are freed when no such snapshot is live any more. release() may run
 * on any thread: it pushes the snapshot onto an atomic stack (release order); the task
 * thread takes the stack (acquire) at its next snapshot call (begin, or a write that meets
 * an entry below cow_below) or backend call (snapshot, restore, for_each_key, stats,
 * destroy), drops the snapshots from its live list, keeps the largest slot copy for the
 * next begin() (whose copy then goes to memory already mapped instead of faulting in fresh
 * pages while the task waits), lowers cow_below, and starts a walk that frees the deferred
 * entries nothing reaches now, RECLAIM_PER_WRITE of them per write from then on (all at
 * once for stats and destroy), so that a release costs the task thread no stall. No lock
 * and no atomic operation is on the per-record path. The version is 32 bits: when it would
 * wrap, begin() declines while a snapshot is live and otherwise first resets every entry's
 * version to 0 (once in 2^32 checkpoints).
 */
#include "core/alloc.h"
#include "core/hash.h"
#include "core/log.h"
#include "state/state_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

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

/* Entries taken out of the live tables while a snapshot could still reach them, all
 * removed at the same backend version (epoch). Items are entry addresses with the kind
 * class (DEF_*) in the low two bits (entries are 8-aligned). */
enum { DEF_VALUE = 0, DEF_LIST = 1, DEF_MAP = 2 };
#define DCHUNK_ITEMS 510

typedef struct dchunk {
    struct dchunk *next;
    uint32_t epoch;
    uint32_t n;
    uintptr_t items[DCHUNK_ITEMS];
} dchunk;

typedef struct heap_snapshot heap_snapshot;

/* The tables of at most this many states are prefetched for a key (the first registered;
 * a keyed operator seldom has more). */
enum { PREFETCH_STATES = 4 };

typedef struct heap_backend {
    sl__keyed_backend base;
    sl__slab slab;
    hstate **states; /* registered and restored, in order of appearance */
    size_t nstates, states_cap;
    size_t nentries;
    /* Copy-on-write snapshots: the task thread only, except `released`. */
    uint32_t version;    /* bumped by every snapshot_begin */
    uint32_t cow_below;  /* the highest version of the live snapshots; 0 when none */
    heap_snapshot *live; /* begun and not yet collected, newest (highest version) first */
    size_t nlive;
    dchunk *deferred; /* newest first */
    size_t ndeferred;
    /* The walk over `deferred` that frees what no live snapshot reaches any more, a few
     * items per write (reclaim_step): the link to the chunk being walked (NULL when no
     * walk is on), the items of that chunk looked at and kept so far, and whether a
     * snapshot was released since the walk began (it then starts again at the end). */
    dchunk **walk;
    uint32_t walk_i, walk_kept;
    bool walk_again;
    /* Released snapshots: pushed by the releasing threads (release order), taken whole by
     * the task thread (acquire) in collect(). */
    _Atomic(heap_snapshot *) released;
    /* A released snapshot's slot copy, for the next begin() (task thread). */
    sl__slot *spare;
    size_t spare_cap;
    /* What h_prefetch reads: the first registered states' tables by key group (hs->kg,
     * which never moves) and handles (for the namespace), so that a prefetch goes straight
     * from the key to the slot. */
    struct {
        sl__htab *const *kg;
        const sl_state *handle;
    } pf[PREFETCH_STATES];
    size_t npf;
} heap_backend;

/* One (state, key group) table as a snapshot sees it. */
typedef struct snap_table {
    const sl__slot *slots; /* NULL when the table was empty */
    size_t cap, count;
} snap_table;

typedef struct snap_state {
    const char *name; /* the hstate's, which lives until the backend is destroyed */
    sl_state_kind kind;
} snap_state;

/* A snapshot. Written by begin() on the task thread, read by write_kg on any one thread;
 * immutable until release() (on any thread) pushes it on `released`; then the task thread
 * frees it, or keeps `slots` as the backend's spare. */
struct heap_snapshot {
    sl__keyed_snapshot base;
    heap_backend *hb;
    uint32_t version;
    size_t nstates, nkg;
    snap_state *states; /* nstates */
    snap_table *tabs;   /* [state * nkg + key group - kg_start] */
    sl__slot *slots;    /* one buffer holding every table's copied occupied slots */
    size_t slots_cap;   /* its capacity, in slots */
    /* [key group - kg_start]: set (release) by kg_written once the writer is done with the
     * key group; the task thread reads it (acquire) before changing an entry in place */
    atomic_uchar *written;
    heap_snapshot *next;  /* the backend's live list: the task thread only */
    heap_snapshot *rnext; /* the released stack: the releasing thread writes it */
};

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
    return sl__kind_is_valuelike(kind);
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

/* ---- Deferred frees (copy-on-write snapshots) ------------------------------------------- */

static uintptr_t def_class(int kind)
{
    return kind == SL_STATE_LIST ? DEF_LIST : kind == SL_STATE_MAP ? DEF_MAP : DEF_VALUE;
}

static void free_deferred(heap_backend *hb, uintptr_t item)
{
    uintptr_t c = item & 3;
    free_entry(hb,
               c == DEF_LIST  ? SL_STATE_LIST
               : c == DEF_MAP ? SL_STATE_MAP
                              : SL_STATE_VALUE,
               (uint8_t *)(item & ~(uintptr_t)3));
    hb->ndeferred--;
}

/* Keeps e (taken out of the live tables) until no live snapshot can reach it. */
static void defer(heap_backend *hb, int kind, uint8_t *e)
{
    SL_ASSERT(((uintptr_t)e & 3) == 0);
    dchunk *d = hb->deferred;
    if (!d || d->epoch != hb->version || d->n == DCHUNK_ITEMS) {
        d = sl__xmalloc(sizeof *d);
        d->next = hb->deferred;
        d->epoch = hb->version;
        d->n = 0;
        hb->deferred = d;
        if (hb->walk == &hb->deferred) /* the walk stays on the chunk it is in */
            hb->walk = &d->next;
    }
    d->items[d->n++] = (uintptr_t)e | def_class(kind);
    hb->ndeferred++;
}

/* Deferred entries freed per write while a walk is on: after a snapshot is released the
 * entries it kept (millions in a large state) are freed along with the task's own work
 * instead of in one stall of the task thread. */
enum { RECLAIM_PER_WRITE = 16, RECLAIM_AHEAD = 8 };

/* Frees deferred entries that no live snapshot reaches, looking at up to budget of them,
 * from where the walk stands. One removed at epoch c and written at version v is reachable
 * from the live snapshots with v < version <= c, i.e. when v is below m, the highest live
 * version not above c. What a walk finds free stays free (m only drops as snapshots are
 * released; a snapshot begun later has a version above every chunk's epoch), so the walk
 * may stop anywhere and go on at a later write. The chunk being walked is compacted as it
 * goes: items [walk_kept, walk_i) are holes, and defer() may still append to it. */
static void reclaim_step(heap_backend *hb, size_t budget)
{
    while (hb->walk && budget) {
        dchunk *d = *hb->walk;
        if (!d) {
            hb->walk = hb->walk_again ? &hb->deferred : NULL;
            hb->walk_again = false;
            continue;
        }
        uint32_t m = 0;
        for (const heap_snapshot *s = hb->live; s; s = s->next) {
            if (s->version <= d->epoch) {
                m = s->version; /* the list is in decreasing version order */
                break;
            }
        }
        for (; hb->walk_i < d->n && budget; budget--) {
            /* the entries are cold (removed long ago): their version is read, and a freed
             * one's first bytes written, a few items ahead of their turn */
            if (hb->walk_i + RECLAIM_AHEAD < d->n)
                __builtin_prefetch(
                    (const void *)(d->items[hb->walk_i + RECLAIM_AHEAD] & ~(uintptr_t)3), 1, 3);
            uintptr_t item = d->items[hb->walk_i++];
            if (sl__ent_version((const uint8_t *)(item & ~(uintptr_t)3)) < m)
                d->items[hb->walk_kept++] = item;
            else
                free_deferred(hb, item);
        }
        if (hb->walk_i < d->n)
            break;
        d->n = hb->walk_kept;
        hb->walk_i = hb->walk_kept = 0;
        if (d->n) {
            hb->walk = &d->next;
        } else {
            *hb->walk = d->next;
            sl__free(d);
        }
    }
}

/* Starts a walk over the deferred entries, or has the one on start again when it ends. */
static void reclaim_start(heap_backend *hb)
{
    if (hb->walk)
        hb->walk_again = true;
    else
        hb->walk = &hb->deferred;
}

/* Frees at once every deferred entry that no live snapshot reaches. */
static void reclaim_all(heap_backend *hb)
{
    reclaim_step(hb, SIZE_MAX); /* ends the walk on, if any */
    reclaim_start(hb);
    reclaim_step(hb, SIZE_MAX);
}

/* The write paths' share of a walk: a predictable branch while none is on. */
static inline void reclaim_some(heap_backend *hb)
{
    if (__builtin_expect(hb->walk != NULL, 0))
        reclaim_step(hb, RECLAIM_PER_WRITE);
}

/* Takes the snapshots released since the last call off the live list, lowers cow_below and
 * starts freeing what no live snapshot reaches any more (reclaim_step, spread over the
 * writes that follow). Task thread; cheap when nothing was released (one atomic load). */
static void collect(heap_backend *hb)
{
    if (!atomic_load_explicit(&hb->released, memory_order_relaxed))
        return;
    /* Acquire: the releasing threads' reads of entries happen before the frees below. */
    heap_snapshot *r = atomic_exchange_explicit(&hb->released, NULL, memory_order_acquire);
    while (r) {
        heap_snapshot *next = r->rnext;
        heap_snapshot **lp = &hb->live;
        while (*lp != r)
            lp = &(*lp)->next;
        *lp = r->next;
        hb->nlive--;
        if (r->slots_cap > hb->spare_cap) {
            sl__free(hb->spare);
            hb->spare = r->slots;
            hb->spare_cap = r->slots_cap;
        } else {
            sl__free(r->slots);
        }
        sl__free(r);
        r = next;
    }
    hb->cow_below = hb->live ? hb->live->version : 0;
    reclaim_start(hb);
    reclaim_step(hb, RECLAIM_PER_WRITE);
}

/* True when a live snapshot may reach e, so e must be neither written nor freed. The hot
 * paths test sl__ent_version(e) < hb->cow_below first; this is the slow path, which also
 * notices released snapshots. */
static bool shared(heap_backend *hb, const uint8_t *e)
{
    if (sl__ent_version(e) >= hb->cow_below)
        return false;
    collect(hb);
    return sl__ent_version(e) < hb->cow_below;
}

/* Disposes of an entry just taken out of its live table. */
static void drop_entry(heap_backend *hb, int kind, uint8_t *e)
{
    if (shared(hb, e))
        defer(hb, kind, e);
    else
        free_entry(hb, kind, e);
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

/* Frees a state's tables and entries as the backend is destroyed. Entries that own nothing
 * but their slab block are left to sl__slab_close, which frees their pages without reading
 * each entry (millions of cache misses at the end of a job with a large state). */
static void free_state(heap_backend *hb, hstate *hs)
{
    bool walk = !is_valuelike(hs->kind) || hb->slab.large;
    for (size_t i = 0; i < nkg(hb); i++) {
        sl__htab *t = hs->kg[i];
        if (!t)
            continue;
        size_t p = 0;
        uint8_t *e;
        while (walk && (e = sl__htab_next(t, &p)))
            free_entry(hb, hs->kind, e);
        sl__htab_close(t);
        sl__free(t);
    }
    sl__free(hs->kg);
    sl__free(hs->name);
    sl__free(hs);
}

/* ---- Scoped access ---------------------------------------------------------------------- */

/* Field by field: `at` was usually just written field by field on the stack, and a whole
 * struct copy loads it in 16-byte pieces that each span several of those stores still in
 * flight (a failed store-to-load forward, which stalled every lookup). */
static inline void remember(sl_state *st, const pos *at)
{
    hstate *hs = st->impl;
    hs->cache.valid = true;
    hs->cache.key_epoch = st->be->key_epoch;
    hs->cache.ns_epoch = st->ns_epoch;
    hs->cache.layout = hs->layout;
    hs->cache.at.tab = at->tab;
    hs->cache.at.slot = at->slot;
    hs->cache.at.hash = at->hash;
    hs->cache.at.found = at->found;
}

/* Looks up the entry of the current key and st's namespace in the table, without the
 * cache. */
static inline __attribute__((always_inline)) void find(sl_state *st, pos *at)
{
    hstate *hs = st->impl;
    const sl__keyed_backend *be = st->be;
    const sl__key *k = &be->key;
    uint64_t hash = sl__scope_hash(k->hash, st->ns_hash, st->ns_len);
    sl__htab *tab = hs->kg[k->key_group - be->kg_start];
    size_t slot = 0;
    bool found = tab && sl__htab_find(tab, hash, k->bytes, k->len, st->ns, st->ns_len, &slot);
    *at = (pos){.tab = tab, .slot = slot, .hash = hash, .found = found};
}

/* Finds the entry of the current key and st's namespace. */
static inline __attribute__((always_inline)) void locate(sl_state *st, pos *at)
{
    hstate *hs = st->impl;
    const sl__keyed_backend *be = st->be;
    if (hs->cache.valid && hs->cache.key_epoch == be->key_epoch &&
        hs->cache.ns_epoch == st->ns_epoch && hs->cache.layout == hs->layout) {
        *at = hs->cache.at;
        return;
    }
    find(st, at);
    remember(st, at);
}

static uint8_t *entry_at(const pos *at)
{
    return sl__htab_at(at->tab, at->slot);
}

/* Inserts a new entry for key k in st's namespace (which a lookup found absent at `at`)
 * with value v. */
static uint8_t *insert_key(sl_state *st, const sl__key *k, pos *at, const void *v, size_t vlen)
{
    heap_backend *hb = (heap_backend *)st->be;
    hstate *hs = st->impl;
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
    sl__ent_set_version(e, hb->version);
    sl__htab_insert_at(t, at->slot, e);
    hs->nentries++;
    hb->nentries++;
    at->found = true;
    return e;
}

/* Inserts a new entry for the current scope (which locate found absent) with value v. */
static uint8_t *insert(sl_state *st, pos *at, const void *v, size_t vlen)
{
    uint8_t *e = insert_key(st, &st->be->key, at, v, vlen);
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
    drop_entry(hb, hs->kind, e);
    hs->nentries--;
    hb->nentries--;
    hs->layout++;
}

/* Copy-on-write: replaces the entry at `at`, which a live snapshot may reach, by a new one
 * with the same address, value v and the current version, and defers the old one. */
static uint8_t *replace_entry(heap_backend *hb, int kind, const pos *at, const void *v, size_t vlen)
{
    uint8_t *e = entry_at(at);
    sl__ent x;
    sl__ent_view(e, &x);
    uint8_t *ne = sl__ent_make(&hb->slab, x.hash, x.a, x.alen, x.b, x.blen, v, vlen, false);
    sl__ent_set_version(ne, hb->version);
    sl__htab_replace_at(at->tab, at->slot, ne);
    defer(hb, kind, e);
    return ne;
}

/* Whether a live snapshot will still read entry e, of key group kg: one that reaches it
 * (begun after e was written) and has not been written past kg (kg_written). */
static bool still_read(heap_backend *hb, const uint8_t *e, int kg)
{
    if (!shared(hb, e))
        return false;
    uint32_t v = sl__ent_version(e);
    size_t idx = (size_t)(kg - hb->base.kg_start);
    for (const heap_snapshot *s = hb->live; s && s->version > v; s = s->next) /* newest first */
        if (!atomic_load_explicit(&s->written[idx], memory_order_acquire))
            return true;
    return false;
}

/* The one check on the write paths (for entry e of key group kg): whether to copy e before
 * changing it. False, predictably, while no snapshot is live. */
static inline bool cow_kg(heap_backend *hb, const uint8_t *e, int kg)
{
    return __builtin_expect(sl__ent_version(e) < hb->cow_below, 0) && still_read(hb, e, kg);
}

/* cow_kg for the current key's entry e. */
static inline bool cow(heap_backend *hb, const uint8_t *e)
{
    return cow_kg(hb, e, hb->base.key.key_group);
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

static int h_value_put(sl_state *st, const uint8_t *p, size_t n)
{
    reclaim_some((heap_backend *)st->be);
    pos at;
    locate(st, &at);
    if (at.found) {
        heap_backend *hb = (heap_backend *)st->be;
        uint8_t *e = entry_at(&at);
        if (cow(hb, e))
            replace_entry(hb, st->kind, &at, p, n);
        else
            sl__htab_replace_at(at.tab, at.slot, sl__ent_set_value(&hb->slab, e, p, n, false));
    } else {
        insert(st, &at, p, n);
    }
    return 0;
}

/* Looks up without the cache (a lookup finds what the cache would): its one caller,
 * sl__value_add, makes the sum's first access of a record, after a new current key, which
 * leaves the cache invalid, so checking it was wasted. A found entry is not remembered
 * either (the sum is done with the key); a missing one is, for the get and update that
 * insert it. */
static int h_value_ref(sl_state *st, uint8_t **p, size_t *n)
{
    reclaim_some((heap_backend *)st->be);
    pos at;
    find(st, &at);
    if (!at.found) {
        remember(st, &at);
        return 0;
    }
    heap_backend *hb = (heap_backend *)st->be;
    uint8_t *e = entry_at(&at);
    *p = sl__ent_value(e, n);
    if (cow(hb, e)) {
        e = replace_entry(hb, st->kind, &at, *p, *n);
        *p = sl__ent_value(e, n);
    }
    return 1;
}

/* What add_last reads of a state and its backend, read once for a run of keys: the run's
 * stores of sums could otherwise alias them, and each key would load them again. */
typedef struct add_scope {
    heap_backend *hb;
    sl__htab *const *kg; /* by key group - kg_start */
    int kg_start;
    size_t nkg;      /* key groups from kg_start */
    int f;           /* the summed field: the last */
    bool put_absent; /* store a row for a key that has none (put_pair) */
    uint64_t ns_hash;
    const uint8_t *ns;
    size_t ns_len;
} add_scope;

static inline add_scope add_scope_of(sl_state *st, bool put_absent)
{
    heap_backend *hb = (heap_backend *)st->be;
    return (add_scope){.hb = hb,
                       .kg = ((hstate *)st->impl)->kg,
                       .kg_start = hb->base.kg_start,
                       .nkg = nkg(hb),
                       .f = st->schema->n - 1,
                       .put_absent = put_absent,
                       .ns_hash = st->ns_hash,
                       .ns = st->ns,
                       .ns_len = st->ns_len};
}

/* The run's part for a key k that has no row (absent at `at`): stores the row (key, delta),
 * which is k's row followed by delta's 8 bytes (sl__value_add_last_run_fn), and sets *sum to
 * delta. 1, or 0 for a key too long for the copy here (the caller goes the usual way). */
static __attribute__((noinline)) int put_pair(sl_state *st, const sl__key *k, const sl_value *delta,
                                              sl_value *sum, pos *at)
{
    uint8_t row[256];
    if (k->len > sizeof row - 8)
        return 0;
    memcpy(row, k->bytes, k->len);
    memcpy(row + k->len, &delta->u.i64, 8); /* as sl__row_write */
    insert_key(st, k, at, row, k->len + 8);
    ((hstate *)st->impl)->cache.valid = false; /* the current key's place may be taken now */
    *sum = *delta;
    return 1;
}

/* sl__value_add_last for key k (current or not) in state st of scope c: finds its entry and
 * adds delta to the summed field where the stored row ends; with c->put_absent, stores the
 * row (key, delta) for a key that has none (put_pair). 1, or 0 when it did neither (the
 * entry is absent, or its sum null); *at then says where it is, or would be inserted. */
static inline __attribute__((always_inline)) int add_last(sl_state *st, const add_scope *c,
                                                          const sl__key *k, const sl_value *delta,
                                                          sl_value *sum, pos *at)
{
    SL_ASSERT((size_t)(k->key_group - c->kg_start) < c->nkg); /* one of the backend's */
    reclaim_some(c->hb);
    uint64_t hash = sl__scope_hash(k->hash, c->ns_hash, c->ns_len);
    sl__htab *tab = c->kg[k->key_group - c->kg_start];
    size_t slot = 0;
    bool found =
        tab && sl__htab_find_hinted(tab, hash, k->hint, k->bytes, k->len, c->ns, c->ns_len, &slot);
    if (!found) {
        *at = (pos){.tab = tab, .slot = slot, .hash = hash, .found = false};
        return c->put_absent ? put_pair(st, k, delta, sum, at) : 0;
    }
    uint8_t *e = sl__htab_at(tab, slot);
    size_t n;
    uint8_t *p = sl__ent_value(e, &n);
    /* the row: a one-byte null bitmap, ..., the summed field's 8 bytes last */
    if (n < 9 || (p[0] >> c->f) & 1) { /* the sum is null */
        *at = (pos){.tab = tab, .slot = slot, .hash = hash, .found = true};
        return 0;
    }
    if (cow_kg(c->hb, e, k->key_group)) {
        pos here = {.tab = tab, .slot = slot, .hash = hash, .found = true};
        p = sl__ent_value(replace_entry(c->hb, st->kind, &here, p, n), &n);
    }
    sum->type = delta->type;
    memcpy(&sum->u.i64, p + n - 8, 8); /* as sl__row_write: the value's 8 bytes */
    sl__add_number(sum, delta);
    memcpy(p + n - 8, &sum->u.i64, 8);
    return 1;
}

/* sl__value_add_last_fn (state.h). Where the entry is, or would be inserted, is
 * remembered when it does not add, for the get and update that follow. */
static int h_value_add_last(sl_state *st, const sl_value *delta, sl_value *sum)
{
    add_scope c = add_scope_of(st, false);
    pos at;
    if (add_last(st, &c, &st->be->key, delta, sum, &at)) {
        st->mod++;
        return 1;
    }
    remember(st, &at);
    return 0;
}

/* sl__value_add_last_run_fn (state.h): add_last for each key in turn, storing the rows of
 * keys that have none, not made current, but the one it stops at, whose place is then
 * remembered as h_value_add_last does. */
static size_t h_value_add_last_run(sl_state *st, const sl__key *keys, const sl_value *deltas,
                                   sl_value *sums, size_t stride, size_t n)
{
    add_scope c = add_scope_of(st, true);
    size_t i = 0;
    pos at;
    while (i < n && add_last(st, &c, &keys[i], &deltas[i], &sums[i * stride], &at))
        i++;
    st->mod += i;
    if (i < n) {
        const sl__key *k = &keys[i];
        sl__keyed_backend_set_key_parts(st->be, k->bytes, k->len, k->hash, k->key_group);
        remember(st, &at);
    }
    return i;
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
    reclaim_some((heap_backend *)st->be);
    pos at;
    locate(st, &at);
    if (at.found) {
        heap_backend *hb = (heap_backend *)st->be;
        uint8_t *e = entry_at(&at);
        sl__vec *v = ent_ptr(e);
        if (cow(hb, e)) {
            sl__vec *nv = replace ? NULL : sl__vec_copy(v, n);
            nv = sl__vec_append(nv, p, n, count, false);
            replace_entry(hb, SL_STATE_LIST, &at, &nv, sizeof nv);
            return;
        }
        if (replace)
            v->len = v->count = 0;
        ent_set_ptr(e, sl__vec_append(v, p, n, count, false));
    } else {
        sl__vec *v = sl__vec_append(NULL, p, n, count, false);
        insert(st, &at, &v, sizeof v);
    }
}

static int h_list_append(sl_state *st, const uint8_t *p, size_t n, size_t count)
{
    list_write(st, p, n, count, false);
    return 0;
}

static int h_list_set(sl_state *st, const uint8_t *p, size_t n, size_t count)
{
    list_write(st, p, n, count, true);
    return 0;
}

static int h_map_get(sl_state *st, const uint8_t *k, size_t kn, const uint8_t **v, size_t *vn)
{
    pos at;
    locate(st, &at);
    return at.found ? sl__kv_get(ent_ptr(entry_at(&at)), k, kn, v, vn) : 0;
}

/* Copy-on-write of a map entry: a deep copy of its table in a new entry. */
static sl__htab *copy_map(heap_backend *hb, const pos *at)
{
    const sl__htab *m = ent_ptr(entry_at(at));
    sl__htab *nm = sl__xmalloc(sizeof *nm);
    sl__kv_copy(nm, m, &hb->slab, false);
    replace_entry(hb, SL_STATE_MAP, at, &nm, sizeof nm);
    return nm;
}

static int h_map_put(sl_state *st, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
    heap_backend *hb = (heap_backend *)st->be;
    reclaim_some(hb);
    pos at;
    locate(st, &at);
    sl__htab *m;
    if (at.found) {
        uint8_t *e = entry_at(&at);
        m = cow(hb, e) ? copy_map(hb, &at) : ent_ptr(e);
    } else {
        m = sl__xcalloc(1, sizeof *m);
        insert(st, &at, &m, sizeof m);
    }
    sl__kv_put(m, &hb->slab, k, kn, v, vn, false);
    return 0;
}

static int h_map_remove(sl_state *st, const uint8_t *k, size_t kn)
{
    heap_backend *hb = (heap_backend *)st->be;
    reclaim_some(hb);
    pos at;
    locate(st, &at);
    if (!at.found)
        return 0;
    uint8_t *e = entry_at(&at);
    sl__htab *m = ent_ptr(e);
    if (cow(hb, e)) {
        const uint8_t *v;
        size_t vn;
        if (!sl__kv_get(m, k, kn, &v, &vn))
            return 0;
        if (m->count == 1) {
            remove_at(st, &at);
            return 1;
        }
        m = copy_map(hb, &at);
    }
    int removed = sl__kv_remove(m, &hb->slab, k, kn);
    if (removed && !m->count)
        remove_at(st, &at);
    return removed;
}

/* The cursor is the map's table and a slot: the table stays as it is until the next write
 * to the state (which may replace it: copy-on-write), and a write ends the iteration. */
static int h_map_iter_open(sl_state *st, sl_iter *it)
{
    pos at;
    locate(st, &at);
    const sl__htab *t = at.found ? ent_ptr(entry_at(&at)) : NULL;
    if (!t || !t->count)
        return 0;
    it->tab = t;
    it->pos = 0;
    return 1;
}

static int h_clear(sl_state *st)
{
    reclaim_some((heap_backend *)st->be);
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
    .value_ref = h_value_ref,
    .value_add_last = h_value_add_last,
    .value_add_last_run = h_value_add_last_run,
    .list_get = h_list_get,
    .list_append = h_list_append,
    .list_set = h_list_set,
    .map_get = h_map_get,
    .map_put = h_map_put,
    .map_remove = h_map_remove,
    .map_iter_open = h_map_iter_open,
    .map_iter_next = sl__htab_iter_next,
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

/* ---- Backend operations ----------------------------------------------------------------- */

static void h_destroy(sl__keyed_backend *be)
{
    heap_backend *hb = (heap_backend *)be;
    collect(hb);
    SL_ASSERT(!hb->live); /* destroy comes after every release (state.h) */
    reclaim_all(hb);      /* nothing is live: frees every deferred entry */
    SL_ASSERT(!hb->deferred && !hb->ndeferred);
    for (size_t i = 0; i < hb->nstates; i++)
        free_state(hb, hb->states[i]);
    sl__free(hb->states);
    sl__free(hb->spare);
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
    if (hb->npf < PREFETCH_STATES) {
        hb->pf[hb->npf].kg = hs->kg;
        hb->pf[hb->npf].handle = st;
        hb->npf++;
    }
    st->impl = hs;
    st->ops = &heap_state_ops;
    return 0;
}

static int h_for_each_key(sl__keyed_backend *be, sl_state *st,
                          int (*fn)(void *arg, const sl__key *key), void *arg)
{
    heap_backend *hb = (heap_backend *)be;
    hstate *hs = st->impl;
    collect(hb);
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
                         .hash = sl__hash(x.a, x.alen), /* entries keep 32 bits */
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

/* The table in kg (a state's tables by key group index, n of them, the first for key
 * group start) of hash's key group under max parallelism m (mask: sl__key_group_mask(m)),
 * or NULL when that key group is outside the backend's range or has no table yet. */
static inline const sl__htab *kg_table(sl__htab *const *kg, size_t n, int start, int m,
                                       uint64_t mask, uint64_t hash)
{
    size_t idx = (size_t)(sl__key_group_masked(hash, m, mask) - start);
    return idx < n ? kg[idx] : NULL;
}

/* The backend's part of sl__keyed_backend_prefetch, in the first registered states' tables
 * (hb->pf): for each state, the slots of slot_hashes' keys, then the entries of
 * entry_hashes' (whose slots were asked for earlier). A run of keys per call, so that the
 * loop, not a call, is what each key costs; what the loops read of the backend and the
 * state is read once, before them. */
static void h_prefetch(sl__keyed_backend *be, const uint64_t *slot_hashes, size_t nslot,
                       const uint64_t *entry_hashes, size_t nentry, uint32_t *entry_hints)
{
    heap_backend *hb = (heap_backend *)be;
    size_t n = nkg(hb);
    int start = hb->base.kg_start, m = hb->base.max_parallelism;
    uint64_t mask = sl__key_group_mask(m);
    if (!hb->npf && nentry)
        memset(entry_hints, 0, nentry * sizeof *entry_hints);
    for (size_t i = 0; i < hb->npf; i++) {
        sl__htab *const *kg = hb->pf[i].kg;
        uint64_t ns_hash = hb->pf[i].handle->ns_hash;
        size_t ns_len = hb->pf[i].handle->ns_len;
        for (size_t j = 0; j < nslot; j++) {
            const sl__htab *t = kg_table(kg, n, start, m, mask, slot_hashes[j]);
            if (t)
                sl__htab_prefetch_slot(t, sl__scope_hash(slot_hashes[j], ns_hash, ns_len));
        }
        for (size_t j = 0; j < nentry; j++) {
            const sl__htab *t = kg_table(kg, n, start, m, mask, entry_hashes[j]);
            uint32_t hint =
                t ? sl__htab_prefetch_entry(t, sl__scope_hash(entry_hashes[j], ns_hash, ns_len))
                  : 0;
            if (i == 0)
                entry_hints[j] = hint;
        }
    }
}

static size_t h_size(const sl__keyed_backend *be)
{
    return ((const heap_backend *)be)->nentries;
}

/* Size of an entry's payload in snapshot form; x is the entry's view. */
static size_t payload_size(int kind, const sl__ent *x)
{
    if (is_valuelike(kind))
        return x->vlen;
    const void *ptr;
    memcpy(&ptr, x->v, sizeof ptr);
    if (kind == SL_STATE_LIST) {
        const sl__vec *v = ptr;
        return sl__varint_size(v->count) + v->len;
    }
    const sl__htab *m = ptr;
    return sl__varint_size(m->count) + sl__kv_pairs_size(m);
}

static uint8_t *payload_write(int kind, const sl__ent *x, uint8_t *p)
{
    if (is_valuelike(kind)) {
        memcpy(p, x->v, x->vlen);
        return p + x->vlen;
    }
    const void *ptr;
    memcpy(&ptr, x->v, sizeof ptr);
    if (kind == SL_STATE_LIST) {
        const sl__vec *v = ptr;
        p = sl__varint_write(p, v->count);
        memcpy(p, v->data, v->len);
        return p + v->len;
    }
    const sl__htab *m = ptr;
    p = sl__varint_write(p, m->count);
    return sl__kv_pairs_write(m, p);
}

/* Where a key group's tables are read from: the live tables (snapshot_kg) or a snapshot's
 * copies (write_kg). Both see a table as its slot array in slot order, so both write the
 * same bytes for the same contents. */
typedef struct kg_source {
    const heap_backend *hb;    /* live tables, or */
    const heap_snapshot *snap; /* a snapshot */
    size_t idx;                /* key group - kg_start */
} kg_source;

static size_t source_nstates(const kg_source *src)
{
    return src->snap ? src->snap->nstates : src->hb->nstates;
}

/* State i's name, kind and table of the key group; false when the table is empty. */
static bool source_table(const kg_source *src, size_t i, const char **name, int *kind,
                         snap_table *tab)
{
    if (src->snap) {
        const heap_snapshot *s = src->snap;
        *tab = s->tabs[i * s->nkg + src->idx];
        *name = s->states[i].name;
        *kind = s->states[i].kind;
        return tab->count > 0;
    }
    const hstate *hs = src->hb->states[i];
    const sl__htab *t = hs->kg[src->idx];
    if (!t || !t->count)
        return false;
    tab->slots = t->slots;
    tab->cap = t->mask + 1;
    tab->count = t->count;
    *name = hs->name;
    *kind = hs->kind;
    return true;
}

/* Slots ahead of the one being written whose entry write_kg_section prefetches (both its
 * first cache lines): the slots are read in order, the entries they point to are
 * anywhere. */
enum { WRITE_AHEAD = 64 };

/* Appends the canonical form of one key group (state.h, snapshot_kg), in one pass over the
 * entries. Only reads. 0, or SL_ENOMEM with out as it was. */
static int write_kg_section(const kg_source *src, sl__buf *out)
{
    size_t start = out->len, nst = 0, n = source_nstates(src);
    const char *name;
    int kind;
    snap_table t;
    for (size_t i = 0; i < n; i++)
        nst += source_table(src, i, &name, &kind, &t);
    if (sl__buf_reserve(out, sl__varint_size(nst)) < 0)
        return SL_ENOMEM;
    out->len = (size_t)(sl__varint_write(out->data + out->len, nst) - out->data);
    for (size_t i = 0; i < n; i++) {
        if (!source_table(src, i, &name, &kind, &t))
            continue;
        size_t namelen = strlen(name);
        if (sl__buf_reserve(out,
                            sl__varint_size(namelen) + namelen + 1 + sl__varint_size(t.count)) < 0)
            goto nomem;
        uint8_t *w = sl__varint_write(out->data + out->len, namelen);
        memcpy(w, name, namelen);
        w += namelen;
        *w++ = (uint8_t)kind;
        w = sl__varint_write(w, t.count);
        out->len = (size_t)(w - out->data);
        for (size_t j = 0; j < t.cap; j++) {
            if (j + WRITE_AHEAD < t.cap && t.slots[j + WRITE_AHEAD])
                sl__ent_prefetch(sl__slot_ent(t.slots[j + WRITE_AHEAD]));
            const uint8_t *e = sl__slot_ent(t.slots[j]);
            if (!e)
                continue;
            sl__ent x;
            sl__ent_view(e, &x);
            size_t pl = payload_size(kind, &x);
            if (sl__buf_reserve(out, sl__varint_size(x.alen) + x.alen + sl__varint_size(x.blen) +
                                         x.blen + sl__varint_size(pl) + pl) < 0)
                goto nomem;
            w = sl__varint_write(out->data + out->len, x.alen);
            memcpy(w, x.a, x.alen);
            w += x.alen;
            w = sl__varint_write(w, x.blen);
            if (x.blen)
                memcpy(w, x.b, x.blen);
            w += x.blen;
            w = sl__varint_write(w, pl);
            w = payload_write(kind, &x, w);
            out->len = (size_t)(w - out->data);
        }
    }
    return 0;
nomem:
    out->len = start;
    return SL_ENOMEM;
}

static int h_snapshot_kg(sl__keyed_backend *be, int key_group, sl__buf *out)
{
    heap_backend *hb = (heap_backend *)be;
    collect(hb);
    kg_source src = {.hb = hb, .idx = (size_t)(key_group - be->kg_start)};
    return write_kg_section(&src, out);
}

/* ---- Asynchronous snapshots ------------------------------------------------------------- */

static const sl__snapshot_ops heap_snapshot_ops;

/* Version wrap-around (no snapshot live): every entry back to version 0. */
static void restamp(heap_backend *hb)
{
    reclaim_all(hb);
    SL_ASSERT(!hb->live && !hb->ndeferred);
    for (size_t i = 0; i < hb->nstates; i++) {
        hstate *hs = hb->states[i];
        for (size_t k = 0; k < nkg(hb); k++) {
            size_t p = 0;
            uint8_t *e;
            while (hs->kg[k] && (e = sl__htab_next(hs->kg[k], &p)))
                sl__ent_set_version(e, 0);
        }
    }
    hb->version = 0;
}

/* Memory for a snapshot's copy of up to n slots, of which the first used are copied now. A
 * large copy gets fresh pages from the kernel; those it copies into now are made present in
 * one call (MADV_POPULATE_WRITE, Linux 5.14; ignored where not known) instead of one fault
 * per page while the task thread copies into them. The rest, which the snapshots that reuse
 * the buffer grow into, fault a few at a time then (the first snapshot of a large state
 * pauses the task for every page it makes present: 17 ms for all of a 67 MB buffer here,
 * where the 5 M entries it copied needed 38 MB). */
static sl__slot *slots_alloc(size_t n, size_t used)
{
    sl__slot *p = sl__malloc(n * sizeof *p);
#ifdef MADV_POPULATE_WRITE
    if (p && used * sizeof *p >= (size_t)1 << 20) {
        uintptr_t lo = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
        uintptr_t hi = ((uintptr_t)(p + used) + 4095) & ~(uintptr_t)4095;
        uintptr_t end = (uintptr_t)(p + n) & ~(uintptr_t)4095;
        (void)madvise((void *)lo, (hi < end ? hi : end) - lo, MADV_POPULATE_WRITE);
    }
#endif
    return p;
}

static sl__keyed_snapshot *h_snapshot_begin(sl__keyed_backend *be)
{
    heap_backend *hb = (heap_backend *)be;
    collect(hb);
    if (hb->version == UINT32_MAX) {
        if (hb->live) {
            SL_WARN("event=snapshot_declined backend=heap reason=\"version wrap-around while "
                    "%zu snapshot(s) are live\"",
                    hb->nlive);
            return NULL;
        }
        restamp(hb);
    }
    /* The copy holds the entries' slots (total, plus one: the compacting copy below stores
     * one slot past the last entry). A new buffer is sized to the tables' capacity, which
     * changes only when a table doubles, so the next snapshots reuse it (the spare) while
     * the state grows: the first touch of fresh pages is what costs, up to 13 us a page in
     * a virtual machine. */
    size_t k = nkg(hb), ns = hb->nstates, total = 0, room = 0;
    for (size_t i = 0; i < ns; i++)
        for (size_t j = 0; j < k; j++) {
            const sl__htab *t = hb->states[i]->kg[j];
            if (t && t->count) {
                total += t->count;
                room += t->mask + 1;
            }
        }
    total += total > 0;
    room += room > 0;
    heap_snapshot *s = sl__malloc(sizeof *s + ns * sizeof(snap_state) +
                                  ns * k * sizeof(snap_table) + k * sizeof(atomic_uchar));
    sl__slot *slots = NULL;
    size_t cap = total;
    if (total && hb->spare_cap >= total) {
        slots = hb->spare;
        cap = hb->spare_cap;
    } else if (total) {
        slots = slots_alloc(room, total);
        cap = room;
    }
    if (!s || (total && !slots)) {
        sl__free(s);
        if (slots != hb->spare)
            sl__free(slots);
        return NULL;
    }
    if (slots == hb->spare) {
        hb->spare = NULL;
        hb->spare_cap = 0;
    }
    s->base.ops = &heap_snapshot_ops;
    s->base.kg_start = be->kg_start;
    s->base.kg_end = be->kg_end;
    s->hb = hb;
    s->nstates = ns;
    s->nkg = k;
    s->states = (snap_state *)(s + 1);
    s->tabs = (snap_table *)(s->states + ns);
    s->written = (atomic_uchar *)(s->tabs + ns * k);
    for (size_t j = 0; j < k; j++)
        atomic_init(&s->written[j], 0);
    s->slots = slots;
    s->slots_cap = slots ? cap : 0;
    s->rnext = NULL;
    sl__slot *w = slots;
    for (size_t i = 0; i < ns; i++) {
        const hstate *hs = hb->states[i];
        s->states[i].name = hs->name;
        s->states[i].kind = hs->kind;
        for (size_t j = 0; j < k; j++) {
            const sl__htab *t = hs->kg[j];
            snap_table *st = &s->tabs[i * k + j];
            if (!t || !t->count) {
                *st = (snap_table){0};
                continue;
            }
            /* the entries' slots in slot order, without the empty ones: about a third less
             * to write than the whole array at usual loads, and nothing but entries for
             * write_kg to walk, in the same order (branch-free: every slot is stored, only
             * an entry's is kept) */
            const sl__slot *from = t->slots, *end = t->slots + t->mask + 1;
            sl__slot *first = w;
            for (; from < end; from++) {
                *w = *from;
                w += *from != 0;
            }
            SL_ASSERT((size_t)(w - first) == t->count);
            *st = (snap_table){.slots = first, .cap = t->count, .count = t->count};
        }
    }
    /* From here on, entries written get this version or later: none of them is reachable
     * from s, and every entry s reaches has a lower one. */
    s->version = ++hb->version;
    s->next = hb->live;
    hb->live = s;
    hb->nlive++;
    hb->cow_below = s->version;
    return &s->base;
}

static int hs_write_kg(sl__keyed_snapshot *base, int key_group, sl__buf *out)
{
    const heap_snapshot *s = (const heap_snapshot *)base;
    kg_source src = {.snap = s, .idx = (size_t)(key_group - base->kg_start)};
    return write_kg_section(&src, out);
}

static void hs_kg_written(sl__keyed_snapshot *base, int key_group)
{
    heap_snapshot *s = (heap_snapshot *)base;
    /* Release: the writer's reads of the key group's entries happen before the task thread
     * changes them in place. */
    atomic_store_explicit(&s->written[key_group - base->kg_start], 1, memory_order_release);
}

static void hs_release(sl__keyed_snapshot *base)
{
    heap_snapshot *s = (heap_snapshot *)base;
    heap_backend *hb = s->hb;
    /* Release: this thread's reads of entries happen before the task thread frees them. */
    heap_snapshot *head = atomic_load_explicit(&hb->released, memory_order_relaxed);
    do {
        s->rnext = head;
    } while (!atomic_compare_exchange_weak_explicit(&hb->released, &head, s, memory_order_release,
                                                    memory_order_relaxed));
}

static const sl__snapshot_ops heap_snapshot_ops = {
    .write_kg = hs_write_kg,
    .kg_written = hs_kg_written,
    .release = hs_release,
};

void sl__heap_backend_stats(sl__keyed_backend *be, sl__heap_stats *out)
{
    SL_ASSERT(be && be->ops == &heap_ops);
    heap_backend *hb = (heap_backend *)be;
    collect(hb);
    reclaim_all(hb);
    out->slab_used = hb->slab.used;
    out->deferred = hb->ndeferred;
    out->live_snapshots = hb->nlive;
    out->version = hb->version;
}

#ifdef SL_TESTING
void sl__heap_backend_set_version(sl__keyed_backend *be, uint32_t version)
{
    heap_backend *hb = (heap_backend *)be;
    collect(hb);
    reclaim_all(hb);
    SL_ASSERT(!hb->live && !hb->ndeferred);
    hb->version = version;
}
#endif

/* What the heap backend holds under a name, for sl__kg_validate. */
static int lookup_state(sl__keyed_backend *be, const uint8_t *name, size_t len,
                        const sl_state **handle)
{
    const hstate *hs = find_state((heap_backend *)be, (const char *)name, len);
    *handle = hs ? hs->handle : NULL;
    return hs ? (int)hs->kind : 0;
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
        sl__kg_section s;
        if (!sl__kg_read_section(&r, &s))
            return SL_EFORMAT;
        hstate *hs = find_state(hb, (const char *)s.name, s.namelen);
        if (!hs && !(hs = new_state(hb, (const char *)s.name, s.namelen, s.kind)))
            return SL_ENOMEM;
        hs->layout++;
        if (hs->handle)
            hs->handle->mod++;
        if (s.nentries) {
            if (!hs->kg[idx] && !(hs->kg[idx] = sl__calloc(1, sizeof *hs->kg[idx])))
                return SL_ENOMEM;
            if (sl__htab_reserve_n(hs->kg[idx], (size_t)s.nentries, true) < 0)
                return SL_ENOMEM;
        }
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
                uint8_t *old = sl__htab_at(t, slot);
                sl__htab_remove_at(t, slot);
                drop_entry(hb, hs->kind, old);
                hs->nentries--;
                hb->nentries--;
                continue;
            }
            if (empty)
                continue;
            if (!ent)
                return SL_ENOMEM;
            sl__ent_set_version(ent, hb->version);
            if (found) {
                drop_entry(hb, hs->kind, sl__htab_at(t, slot));
                sl__htab_replace_at(t, slot, ent);
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
    collect(hb);
    int rc = sl__kg_validate(be, key_group, p, len, lookup_state, err, cap);
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
    .snapshot_begin = h_snapshot_begin,
    .prefetch = h_prefetch,
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
    atomic_init(&hb->released, NULL);
    if (sl__keyed_backend_init(&hb->base, &heap_ops, max_parallelism, kg_start, kg_end,
                               key_schema) < 0) {
        sl__free(hb);
        return NULL;
    }
    return &hb->base;
}

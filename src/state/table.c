/*
 * table.c - the in-memory building blocks of the heap backend and the operator store: a
 * slab allocator for small blocks, entry blobs that hold an address and a value in one
 * block, an open-addressing table of entries with backward-shift deletion, byte-keyed maps
 * on that table, and growable vectors of list elements. See state_int.h for the layouts.
 *
 * Nothing here knows about schemas, keys or state kinds; callers pass bytes. The may_fail
 * flag picks the allocation flavour: NULL/SL_ENOMEM on restore paths, abort on the
 * per-record path (core/alloc.h).
 */
#include "core/alloc.h"
#include "core/hash.h"
#include "core/log.h"
#include "state/state_int.h"

#include <string.h>

/* ---- Slab ------------------------------------------------------------------------------ */

/* Pages start with the link to the next page; blocks follow, 8-aligned. */
#define PAGE_HEADER 8

void sl__slab_init(sl__slab *s)
{
    memset(s, 0, sizeof *s);
}

static size_t round_grain(size_t n)
{
    return (n + SL__SLAB_GRAIN - 1) & ~(size_t)(SL__SLAB_GRAIN - 1);
}

/* Puts a free block on its list. Blocks are at least one grain, enough for the link. */
static void push_free(sl__slab *s, void *p, size_t n)
{
    size_t c = n / SL__SLAB_GRAIN;
    memcpy(p, &s->free[c], sizeof(void *));
    s->free[c] = p;
    SL_POISON(p, n);
}

void *sl__slab_alloc(sl__slab *s, size_t n, bool may_fail)
{
    n = round_grain(n ? n : 1);
    if (n > SL__SLAB_MAX) {
        void *p = may_fail ? sl__malloc(n) : sl__xmalloc(n);
        if (p) {
            s->used += n;
            s->large++;
        }
        return p;
    }
    size_t c = n / SL__SLAB_GRAIN;
    void *p = s->free[c];
    if (p) {
        SL_UNPOISON(p, n);
        memcpy(&s->free[c], p, sizeof(void *));
        s->used += n;
        /* Freed blocks are cold (an entry freed by reclaiming, long ago): fetch the next one
         * now, or the next allocation waits on its link. */
        if (s->free[c])
            __builtin_prefetch(s->free[c], 1, 3);
        return p;
    }
    if (s->left < n) {
        uint8_t *page = may_fail ? sl__malloc(SL__SLAB_PAGE) : sl__xmalloc(SL__SLAB_PAGE);
        if (!page)
            return NULL;
        if (s->left >= SL__SLAB_GRAIN) {
            SL_UNPOISON(s->cur, s->left);
            push_free(s, s->cur, s->left); /* the old page's tail is not wasted */
        }
        memcpy(page, &s->pages, sizeof(void *));
        s->pages = page;
        s->cur = page + PAGE_HEADER;
        s->left = SL__SLAB_PAGE - PAGE_HEADER;
        SL_POISON(s->cur, s->left);
    }
    p = s->cur;
    s->cur += n;
    s->left -= n;
    s->used += n;
    SL_UNPOISON(p, n);
    return p;
}

void sl__slab_free(sl__slab *s, void *p, size_t n)
{
    if (!p)
        return;
    n = round_grain(n ? n : 1);
    SL_ASSERT(s->used >= n);
    s->used -= n;
    if (n > SL__SLAB_MAX) {
        SL_ASSERT(s->large > 0);
        s->large--;
        sl__free(p);
        return;
    }
    push_free(s, p, n);
}

void sl__slab_close(sl__slab *s)
{
    void *page = s->pages;
    while (page) {
        SL_UNPOISON((uint8_t *)page, SL__SLAB_PAGE);
        void *next;
        memcpy(&next, page, sizeof next);
        sl__free(page);
        page = next;
    }
    sl__slab_init(s);
}

/* ---- Entries --------------------------------------------------------------------------- */

uint8_t *sl__ent_make(sl__slab *s, uint64_t hash, const void *a, size_t alen, const void *b,
                      size_t blen, const void *v, size_t vlen, bool may_fail)
{
    uint8_t *e = sl__slab_alloc(s, sl__ent_size(alen, blen, vlen), may_fail);
    if (!e)
        return NULL;
    uint32_t h = sl__ent_hash32(hash), version = 0;
    memcpy(e, &h, 4);
    memcpy(e + 4, &version, 4);
    uint8_t *p = e + 8;
    p = sl__varint_write(p, alen);
    p = sl__varint_write(p, blen);
    p = sl__varint_write(p, vlen);
    if (alen)
        memcpy(p, a, alen);
    p += alen;
    if (blen)
        memcpy(p, b, blen);
    p += blen;
    if (v && vlen)
        memcpy(p, v, vlen);
    return e;
}

uint8_t *sl__ent_set_value(sl__slab *s, uint8_t *e, const void *v, size_t vlen, bool may_fail)
{
    sl__ent x;
    sl__ent_view(e, &x);
    if (vlen == x.vlen) {
        if (vlen)
            memcpy(x.v, v, vlen);
        return e;
    }
    if (sl__ent_size(x.alen, x.blen, vlen) == x.size) {
        /* Same block: only the vlen varint may change width, moving a and b with it. */
        size_t pre = 8 + sl__varint_size(x.alen) + sl__varint_size(x.blen);
        size_t old_h = pre + sl__varint_size(x.vlen), new_h = pre + sl__varint_size(vlen);
        if (old_h != new_h)
            memmove(e + new_h, e + old_h, x.alen + x.blen);
        sl__varint_write(e + pre, vlen);
        if (vlen)
            memcpy(e + new_h + x.alen + x.blen, v, vlen);
        return e;
    }
    uint8_t *ne = sl__ent_make(s, x.hash, x.a, x.alen, x.b, x.blen, v, vlen, may_fail);
    if (!ne)
        return NULL;
    sl__ent_set_version(ne, x.version);
    sl__slab_free(s, e, x.size);
    return ne;
}

void sl__ent_free(sl__slab *s, uint8_t *e)
{
    sl__ent x;
    sl__ent_view(e, &x);
    sl__slab_free(s, e, x.size);
}

/* ---- Tables ---------------------------------------------------------------------------- */

static inline uint32_t ent_hash(const uint8_t *e)
{
    uint32_t h;
    memcpy(&h, e, 4);
    return h;
}

/* The slot for entry e: its address and the tag of its hash. */
static inline sl__slot make_slot(const uint8_t *e)
{
    uintptr_t a = (uintptr_t)e;
    SL_ASSERT((uint64_t)a <= SL__SLOT_ADDR);
    return sl__slot_tag(ent_hash(e)) | (sl__slot)a;
}

#ifdef SL_TESTING
_Thread_local uint64_t sl__htab_finds;
#endif

/* A zeroed slot array of n slots. Not calloc: a large calloc is fresh zero pages, which the
 * rehash first reads (mapping the shared zero page) and then writes, so every page takes a
 * second, copy-on-write fault whose TLB flush interrupts every other core running the
 * process (an I/O thread writing a checkpoint, the source): perf showed 5 % of a 10 M-key
 * count with checkpoints in those flushes. Writing the zeros first faults each page once,
 * writable. */
static sl__slot *new_slots(size_t n, bool may_fail)
{
    sl__slot *slots = may_fail ? sl__malloc(n * sizeof *slots) : sl__xmalloc(n * sizeof *slots);
    if (slots)
        memset(slots, 0, n * sizeof *slots);
    return slots;
}

int sl__htab_reserve_n(sl__htab *t, size_t extra, bool may_fail)
{
    size_t cap = t->slots ? t->mask + 1 : 0;
    if ((t->count + extra) * 4 <= cap * 3)
        return 0;
    size_t ncap = cap ? cap * 2 : 8;
    while ((t->count + extra) * 4 > ncap * 3)
        ncap *= 2;
    SL_ASSERT(ncap > cap);
    sl__slot *slots = new_slots(ncap, may_fail);
    if (!slots)
        return SL_ENOMEM;
    sl__htab nt = {.slots = slots,
                   .mask = ncap - 1,
                   .count = t->count,
                   .shift = 64 - __builtin_ctzll((unsigned long long)ncap)};
    for (size_t i = 0; i < cap; i++) {
        sl__slot s = t->slots[i];
        if (!s)
            continue;
        size_t j = sl__htab_home(&nt, ent_hash(sl__slot_ent(s)));
        while (slots[j])
            j = (j + 1) & nt.mask;
        slots[j] = s;
    }
    sl__free(t->slots);
    *t = nt;
    return 1;
}

int sl__htab_reserve(sl__htab *t, bool may_fail)
{
    return sl__htab_reserve_n(t, 1, may_fail);
}

void sl__htab_insert_at(sl__htab *t, size_t slot, uint8_t *e)
{
    t->slots[slot] = make_slot(e);
    t->count++;
}

void sl__htab_remove_at(sl__htab *t, size_t i)
{
    size_t j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        sl__slot s = t->slots[j];
        if (!s)
            break;
        /* s may move back to the hole at i unless its home lies cyclically in (i, j]. */
        size_t k = sl__htab_home(t, ent_hash(sl__slot_ent(s)));
        bool stays = j > i ? (k > i && k <= j) : (k > i || k <= j);
        if (!stays) {
            t->slots[i] = s;
            i = j;
        }
    }
    t->slots[i] = 0;
    t->count--;
}

uint8_t *sl__htab_next(const sl__htab *t, size_t *pos)
{
    if (!t->slots)
        return NULL;
    for (size_t i = *pos; i <= t->mask; i++) {
        if (t->slots[i]) {
            *pos = i + 1;
            return sl__slot_ent(t->slots[i]);
        }
    }
    *pos = t->mask + 1;
    return NULL;
}

void sl__htab_close(sl__htab *t)
{
    sl__free(t->slots);
    memset(t, 0, sizeof *t);
}

/* ---- Byte maps ------------------------------------------------------------------------- */

int sl__kv_get(const sl__htab *t, const uint8_t *k, size_t kn, const uint8_t **v, size_t *vn)
{
    size_t slot;
    if (!t->count || !sl__htab_find(t, sl__hash(k, kn), k, kn, NULL, 0, &slot))
        return 0;
    sl__ent x;
    sl__ent_view(sl__htab_at(t, slot), &x);
    *v = x.v;
    *vn = x.vlen;
    return 1;
}

int sl__kv_put(sl__htab *t, sl__slab *s, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn,
               bool may_fail)
{
    uint64_t h = sl__hash(k, kn);
    size_t slot;
    if (sl__htab_find(t, h, k, kn, NULL, 0, &slot)) {
        uint8_t *e = sl__ent_set_value(s, sl__htab_at(t, slot), v, vn, may_fail);
        if (!e)
            return SL_ENOMEM;
        sl__htab_replace_at(t, slot, e);
        return 0;
    }
    int rc = sl__htab_reserve(t, may_fail);
    if (rc < 0)
        return rc;
    if (rc > 0)
        sl__htab_find(t, h, k, kn, NULL, 0, &slot);
    uint8_t *e = sl__ent_make(s, h, k, kn, NULL, 0, v, vn, may_fail);
    if (!e)
        return SL_ENOMEM;
    sl__htab_insert_at(t, slot, e);
    return 0;
}

int sl__kv_remove(sl__htab *t, sl__slab *s, const uint8_t *k, size_t kn)
{
    size_t slot;
    if (!t->count || !sl__htab_find(t, sl__hash(k, kn), k, kn, NULL, 0, &slot))
        return 0;
    uint8_t *e = sl__htab_at(t, slot);
    sl__htab_remove_at(t, slot);
    sl__ent_free(s, e);
    return 1;
}

void sl__kv_clear(sl__htab *t, sl__slab *s)
{
    size_t pos = 0;
    uint8_t *e;
    while ((e = sl__htab_next(t, &pos)))
        sl__ent_free(s, e);
    sl__htab_close(t);
}

int sl__kv_copy(sl__htab *dst, const sl__htab *src, sl__slab *s, bool may_fail)
{
    memset(dst, 0, sizeof *dst);
    if (!src->slots)
        return 0;
    size_t cap = src->mask + 1;
    sl__slot *slots = new_slots(cap, may_fail);
    if (!slots)
        return SL_ENOMEM;
    *dst = *src;
    dst->slots = slots;
    /* Entries are self-contained blobs: a byte copy is a valid entry at the same slot. */
    for (size_t i = 0; i < cap; i++) {
        const uint8_t *e = sl__slot_ent(src->slots[i]);
        if (!e)
            continue;
        sl__ent x;
        sl__ent_view(e, &x);
        uint8_t *ne = sl__slab_alloc(s, x.size, may_fail);
        if (!ne) {
            dst->count = 0;
            for (size_t j = 0; j < i; j++)
                if (slots[j])
                    sl__ent_free(s, sl__slot_ent(slots[j]));
            sl__htab_close(dst);
            return SL_ENOMEM;
        }
        memcpy(ne, e, x.size);
        slots[i] = make_slot(ne);
    }
    return 0;
}

size_t sl__kv_pairs_size(const sl__htab *t)
{
    size_t n = 0, pos = 0;
    uint8_t *e;
    while ((e = sl__htab_next(t, &pos))) {
        sl__ent x;
        sl__ent_view(e, &x);
        n += sl__varint_size(x.alen) + x.alen + sl__varint_size(x.vlen) + x.vlen;
    }
    return n;
}

uint8_t *sl__kv_pairs_write(const sl__htab *t, uint8_t *p)
{
    size_t pos = 0;
    uint8_t *e;
    while ((e = sl__htab_next(t, &pos))) {
        sl__ent x;
        sl__ent_view(e, &x);
        p = sl__varint_write(p, x.alen);
        memcpy(p, x.a, x.alen);
        p += x.alen;
        p = sl__varint_write(p, x.vlen);
        if (x.vlen)
            memcpy(p, x.v, x.vlen);
        p += x.vlen;
    }
    return p;
}

int sl__kv_load_pairs(sl__htab *t, sl__slab *s, const uint8_t *p, size_t n, uint64_t count)
{
    sl__rd r = {p, p + n};
    for (uint64_t i = 0; i < count; i++) {
        const uint8_t *k, *v;
        size_t kn, vn;
        if (!sl__rd_bytes(&r, &k, &kn) || !sl__rd_bytes(&r, &v, &vn))
            return SL_EFORMAT; /* validated before: cannot happen */
        int rc = sl__kv_put(t, s, k, kn, v, vn, true);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- Vectors --------------------------------------------------------------------------- */

sl__vec *sl__vec_copy(const sl__vec *v, size_t extra)
{
    size_t cap = v->len + extra;
    SL_ASSERT(cap >= v->len && cap < SIZE_MAX - sizeof(sl__vec));
    if (cap < v->cap)
        cap = v->cap;
    sl__vec *nv = sl__xmalloc(sizeof *nv + cap);
    nv->len = v->len;
    nv->count = v->count;
    nv->cap = cap;
    if (v->len)
        memcpy(nv->data, v->data, v->len);
    return nv;
}

sl__vec *sl__vec_append(sl__vec *v, const uint8_t *p, size_t n, size_t count, bool may_fail)
{
    size_t len = v ? v->len : 0, cap = v ? v->cap : 0;
    if (!v || cap - len < n) {
        /* A new vector fits exactly (restore, or a list's first element); then doubling. */
        size_t ncap = v ? cap * 2 : n;
        if (ncap < len + n)
            ncap = len + n;
        SL_ASSERT(ncap >= len && ncap < SIZE_MAX - sizeof(sl__vec));
        sl__vec *nv =
            may_fail ? sl__realloc(v, sizeof *nv + ncap) : sl__xrealloc(v, sizeof *nv + ncap);
        if (!nv)
            return NULL;
        if (!v) {
            nv->len = 0;
            nv->count = 0;
        }
        nv->cap = ncap;
        v = nv;
    }
    if (n)
        memcpy(v->data + v->len, p, n);
    v->len += n;
    v->count += count;
    return v;
}

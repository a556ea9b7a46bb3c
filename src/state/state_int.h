/*
 * state_int.h - private to src/state: the sl_state handle, iterators and their pool, the
 * storage operations a state handle dispatches to, the keyed backend base that every
 * backend embeds, the validation of canonical key-group sections shared by the backends'
 * restore, and the shared building blocks of the heap backend and the operator store (a
 * slab allocator, entry blobs, an open-addressing table of entries, byte vectors).
 *
 * Layering inside the module: state.c implements sluice.h's state functions once, on top
 * of sl__state_ops (byte-level get/put/append/remove for the state's current scope, and a
 * cursor over a map's pairs); heap/heap_backend.c and rocksdb/rocksdb_backend.c implement
 * those operations for keyed state scoped to (key group, key, namespace) and the backend
 * operations (snapshot, restore, ...); operator_state.c implements them for unscoped
 * operator list and broadcast state. table.c holds the pieces the heap backend and the
 * operator store share. Nothing outside src/state includes this header (unit tests may).
 *
 * Threads: everything here belongs to one subtask thread, except what an asynchronous
 * snapshot (sl__keyed_snapshot) reads from another thread: for the heap backend entries,
 * list vectors and map tables that the snapshot can reach, which the task thread then
 * leaves unchanged (see heap/heap_backend.c), and the release path named there; for the
 * RocksDB backend the database itself (thread-safe) through a RocksDB snapshot.
 */
#ifndef SL_STATE_STATE_INT_H
#define SL_STATE_STATE_INT_H

#include "state/state.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- Bounded reading of untrusted bytes (snapshots) ------------------------------------ */

typedef struct sl__rd {
    const uint8_t *p, *end;
} sl__rd;

static inline bool sl__rd_varint(sl__rd *r, uint64_t *v)
{
    const uint8_t *q = sl__varint_read(r->p, r->end, v);
    if (!q)
        return false;
    r->p = q;
    return true;
}

static inline bool sl__rd_byte(sl__rd *r, uint8_t *b)
{
    if (r->p >= r->end)
        return false;
    *b = *r->p++;
    return true;
}

/* Reads varint length + bytes; false when the length runs past the end. */
static inline bool sl__rd_bytes(sl__rd *r, const uint8_t **p, size_t *n)
{
    uint64_t len;
    if (!sl__rd_varint(r, &len) || len > (uint64_t)(r->end - r->p))
        return false;
    *p = r->p;
    *n = (size_t)len;
    r->p += len;
    return true;
}

/* Validation of serialized rows against a schema (state.c). sl__row_valid: [p, p+n) is
 * exactly one row of s. sl__elems_valid: [p, p+n) is exactly count elements, each varint
 * length + one row of s (s NULL: only the framing is checked). sl__pairs_valid: exactly
 * count pairs, each varint length + key row then varint length + value row (NULL schemas:
 * framing only). */
bool sl__row_valid(const sl__schema *s, const uint8_t *p, size_t n);
bool sl__elems_valid(const sl__schema *s, const uint8_t *p, size_t n, uint64_t count);
bool sl__pairs_valid(const sl__schema *ks, const sl__schema *vs, const uint8_t *p, size_t n,
                     uint64_t count);

/* Upper-case kind name ("VALUE"); "?" for anything else. */
const char *sl__state_kind_name(int kind);

static inline bool sl__kind_is_valuelike(int kind)
{
    return kind == SL_STATE_VALUE || kind == SL_STATE_REDUCING || kind == SL_STATE_AGGREGATING;
}

/* Counts the elements of a list (each varint length + row) in [p, p+n). False when the
 * framing does not end exactly at p+n. */
bool sl__elems_count(const uint8_t *p, size_t n, uint64_t *count);

/* ---- Canonical key-group sections (state.h, sl__keyed_backend_snapshot_kg) --------------
 *
 * Every backend writes and reads the same bytes. Restore is in two passes: validation
 * (sl__kg_validate, which changes nothing) and then the backend's own application, which
 * reads the sections again with sl__kg_read_section and sl__rd_bytes and may assume they
 * are well formed. */

typedef struct sl__kg_section {
    const uint8_t *name;
    size_t namelen;
    uint8_t kind;
    uint64_t nentries;
} sl__kg_section;

static inline bool sl__kg_read_section(sl__rd *r, sl__kg_section *s)
{
    return sl__rd_bytes(r, &s->name, &s->namelen) && sl__rd_byte(r, &s->kind) &&
           sl__rd_varint(r, &s->nentries);
}

/* What the backend holds under a state name: its kind (0 when it holds nothing of that
 * name) and, when registered, the handle (for the schemas), else NULL. */
typedef int (*sl__kg_lookup)(sl__keyed_backend *be, const uint8_t *name, size_t len,
                             const sl_state **handle);

/* Checks one key group's section for restore into be: framing, names, kinds (against
 * what lookup reports), that every key belongs to key_group and parses under the key
 * schema, and that payloads parse under the schemas of registered states (framing only for
 * the others). Returns 0, SL_EFORMAT with a message in err, or SL_ENOMEM. */
int sl__kg_validate(sl__keyed_backend *be, int key_group, const uint8_t *p, size_t len,
                    sl__kg_lookup lookup, char *err, size_t cap);

/* Checks a payload in snapshot form for a state of kind; with schemas from st when given,
 * else the framing only. */
bool sl__payload_valid(const sl_state *st, int kind, const uint8_t *p, size_t n);

/* ---- Slab allocator (table.c) ------------------------------------------------------------
 *
 * Entry blobs are small and numerous; malloc would add 8 bytes of header and round to 16
 * per entry. The slab hands out blocks in multiples of 8 bytes carved from 64 KiB pages,
 * with one free list per size; blocks above SL__SLAB_MAX come from the allocator directly.
 * Freeing needs the block's size (the caller recomputes it from the blob header). Pages are
 * returned only by sl__slab_close. Under AddressSanitizer free blocks are poisoned.
 * `used` counts the bytes of blocks handed out and not yet freed (small and large), for
 * tests and metrics. */

#define SL__SLAB_GRAIN 8
#define SL__SLAB_MAX 256
#define SL__SLAB_PAGE 65536

typedef struct sl__slab {
    void *free[SL__SLAB_MAX / SL__SLAB_GRAIN + 1]; /* by size / GRAIN */
    uint8_t *cur;                                  /* bump pointer in the newest page */
    size_t left;                                   /* bytes left there */
    void *pages;                                   /* linked through each page's first word */
    size_t used;                                   /* bytes in blocks handed out */
    size_t large; /* blocks above SL__SLAB_MAX handed out and not yet freed */
} sl__slab;

void sl__slab_init(sl__slab *s);
/* A block of n bytes (8-aligned). may_fail: NULL on out of memory; else aborts. */
void *sl__slab_alloc(sl__slab *s, size_t n, bool may_fail);
/* Returns a block obtained with the same n. */
void sl__slab_free(sl__slab *s, void *p, size_t n);
/* Frees every page, and with them every small block still handed out. Large blocks must
 * have been freed already (large is 0): so when it is, blocks need not be freed one by one
 * before. */
void sl__slab_close(sl__slab *s);

/* ---- Entry blobs (table.c) ---------------------------------------------------------------
 *
 * An entry is one slab block:
 *   u32 hash | u32 version | varint alen | varint blen | varint vlen | a | b | v
 * padded to a multiple of 8. (a, b) is the address: (key, namespace) in the heap backend's
 * tables, (user key, empty) in maps. v is the value: a serialized row, or for list and map
 * entries of the heap backend an 8-byte pointer to the list's vector or the map's table.
 * The hash is stored so that resizing never rehashes bytes; it is the 64-bit hash folded to
 * 32 bits (sl__ent_hash32), which is plenty to place and filter entries, and leaves room
 * in the same 8 bytes for the version: the heap backend's snapshot version the entry was
 * written in (copy-on-write snapshots, heap/heap_backend.c); 0 elsewhere. Callers pass
 * 64-bit hashes; the functions below fold them. */

typedef struct sl__ent {
    uint32_t hash; /* folded */
    uint32_t version;
    const uint8_t *a, *b;
    uint8_t *v;
    size_t alen, blen, vlen;
    size_t size; /* block size */
} sl__ent;

static inline uint32_t sl__ent_hash32(uint64_t h)
{
    return (uint32_t)(h ^ (h >> 32)); /* the identity on values below 2^32 */
}

static inline uint32_t sl__ent_version(const uint8_t *e)
{
    uint32_t v;
    memcpy(&v, e + 4, 4);
    return v;
}

static inline void sl__ent_set_version(uint8_t *e, uint32_t v)
{
    memcpy(e + 4, &v, 4);
}

static inline size_t sl__ent_size(size_t alen, size_t blen, size_t vlen)
{
    size_t n = 8 + sl__varint_size(alen) + sl__varint_size(blen) + sl__varint_size(vlen) + alen +
               blen + vlen;
    return (n + SL__SLAB_GRAIN - 1) & ~(size_t)(SL__SLAB_GRAIN - 1);
}

/* A new entry (version 0) holding copies of a, b and v (v may be NULL: left uninitialised).
 * may_fail: NULL on out of memory; else aborts. */
uint8_t *sl__ent_make(sl__slab *s, uint64_t hash, const void *a, size_t alen, const void *b,
                      size_t blen, const void *v, size_t vlen, bool may_fail);

/* Decodes a varint written by this module (trusted memory, no bound needed). */
static inline const uint8_t *sl__get_varint(const uint8_t *p, size_t *v)
{
    size_t r = *p & 0x7f;
    if (!(*p++ & 0x80)) {
        *v = r;
        return p;
    }
    for (int shift = 7;; shift += 7) {
        uint8_t b = *p++;
        r |= (size_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    *v = r;
    return p;
}

/* Decodes an entry's header. Inline, as the lookups below: they are on the per-record
 * path. */
static inline void sl__ent_view(const uint8_t *e, sl__ent *x)
{
    memcpy(&x->hash, e, 4);
    memcpy(&x->version, e + 4, 4);
    const uint8_t *p = sl__get_varint(e + 8, &x->alen);
    p = sl__get_varint(p, &x->blen);
    p = sl__get_varint(p, &x->vlen);
    x->a = p;
    x->b = p + x->alen;
    x->v = (uint8_t *)p + x->alen + x->blen;
    x->size = sl__ent_size(x->alen, x->blen, x->vlen);
}

/* An entry's value and its length: the part of sl__ent_view a value read needs. */
static inline uint8_t *sl__ent_value(uint8_t *e, size_t *vlen)
{
    /* the three lengths when each is one byte (below 128), read at once with the byte
     * after them (an entry has at least 8 + 3 bytes, rounded up to 16); little-endian */
    uint32_t hdr;
    memcpy(&hdr, e + 8, 4);
    if (!(hdr & 0x808080)) {
        *vlen = (hdr >> 16) & 0xff;
        return e + 11 + (hdr & 0xff) + ((hdr >> 8) & 0xff);
    }
    size_t alen, blen;
    const uint8_t *p = sl__get_varint(e + 8, &alen);
    p = sl__get_varint(p, &blen);
    p = sl__get_varint(p, vlen);
    return (uint8_t *)p + alen + blen;
}

/* True when the n bytes at a and b are equal: memcmp, without its call for the short keys
 * that are usual (up to 16 bytes: two overlapping loads from each side, or three bytes). */
static inline bool sl__bytes_eq(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    if (n - 1 >= 16) /* 0, or above 16 */
        return !n || !memcmp(x, y, n);
    if (n >= 8) {
        uint64_t x0, x1, y0, y1;
        memcpy(&x0, x, 8);
        memcpy(&y0, y, 8);
        memcpy(&x1, x + n - 8, 8);
        memcpy(&y1, y + n - 8, 8);
        return ((x0 ^ y0) | (x1 ^ y1)) == 0;
    }
    if (n >= 4) {
        uint32_t x0, x1, y0, y1;
        memcpy(&x0, x, 4);
        memcpy(&y0, y, 4);
        memcpy(&x1, x + n - 4, 4);
        memcpy(&y1, y + n - 4, 4);
        return ((x0 ^ y0) | (x1 ^ y1)) == 0;
    }
    return x[0] == y[0] && x[n / 2] == y[n / 2] && x[n - 1] == y[n - 1];
}

/* True when entry e's address is (a, b). */
static inline __attribute__((always_inline)) bool
sl__ent_is(const uint8_t *e, const void *a, size_t alen, const void *b, size_t blen)
{
    const uint8_t *p;
    if (alen < 0x80 && blen < 0x80) {
        /* the usual case: both lengths are one-byte varints, so the entry's must be the
         * same bytes; read with the value's length and the byte after in one load (as
         * sl__ent_value) */
        uint32_t hdr;
        memcpy(&hdr, e + 8, 4);
        if ((hdr & 0xffff) != (alen | blen << 8))
            return false;
        p = e + 11;
        if (__builtin_expect(hdr & 0x800000, 0)) /* a value of 128 bytes or more */
            while (*p++ & 0x80)
                ;
    } else {
        size_t ea, eb, ev;
        p = sl__get_varint(e + 8, &ea);
        if (ea != alen)
            return false;
        p = sl__get_varint(p, &eb);
        if (eb != blen)
            return false;
        p = sl__get_varint(p, &ev);
    }
    return sl__bytes_eq(p, a, alen) && (!blen || sl__bytes_eq(p + alen, b, blen));
}
/* Replaces the value with vlen bytes from v: in place when the block size stays the same,
 * else in a new block (the old one is freed; the version is kept). Returns the entry's
 * (possibly new) address; NULL only when may_fail and out of memory (then e is unchanged).
 * v must not point into e. */
uint8_t *sl__ent_set_value(sl__slab *s, uint8_t *e, const void *v, size_t vlen, bool may_fail);
void sl__ent_free(sl__slab *s, uint8_t *e);

/* ---- Entry tables (table.c) -------------------------------------------------------------
 *
 * Open addressing with linear probing over pointers to entries; capacity a power of two,
 * load at most 3/4, removal by backward shift (no tombstones), so a probe ends at the first
 * empty slot. The home slot is the top bits of hash * 2^64/phi: it uses all bits of the
 * hash, since within one key group the low bits of the key hash are all alike. A table of
 * capacity 0 (slots NULL) is valid and empty.
 *
 * A slot (sl__slot) is the entry's address with a tag in its top 16 bits: the top half of
 * the entry's folded hash. User-space addresses of x86-64 and AArch64 fit in the low 48
 * bits (checked when a slot is made). A probe compares the tag first and reads the entry
 * only when it matches, so passing over other entries costs no memory access beyond the
 * slot array (about one in 65536 mismatches reaches the entry). 0 is an empty slot. Read
 * an entry's address with sl__slot_ent, never by a cast. */

typedef uint64_t sl__slot;

#define SL__SLOT_ADDR_BITS 48
#define SL__SLOT_ADDR ((UINT64_C(1) << SL__SLOT_ADDR_BITS) - 1)

/* The tag bits of a slot for an entry of folded hash h. */
static inline sl__slot sl__slot_tag(uint32_t h)
{
    return (sl__slot)(h >> 16) << SL__SLOT_ADDR_BITS;
}

/* The entry a slot points to; NULL for an empty slot. */
static inline uint8_t *sl__slot_ent(sl__slot s)
{
    return (uint8_t *)(uintptr_t)(s & SL__SLOT_ADDR);
}

typedef struct sl__htab {
    sl__slot *slots;
    size_t mask;  /* capacity - 1, or 0 when slots is NULL */
    size_t count; /* entries */
    int shift;    /* 64 - log2(capacity) */
} sl__htab;

/* The entry at slot (which holds one). */
static inline uint8_t *sl__htab_at(const sl__htab *t, size_t slot)
{
    return sl__slot_ent(t->slots[slot]);
}

/* Puts e at slot in place of the entry there, which has the same hash (a copy of it, or
 * the same entry moved by a value update), keeping the slot's tag. */
static inline void sl__htab_replace_at(sl__htab *t, size_t slot, uint8_t *e)
{
    t->slots[slot] = (t->slots[slot] & ~SL__SLOT_ADDR) | (sl__slot)(uintptr_t)e;
}

/* The home slot of folded hash h in t (which has slots). The 64-bit product still spreads
 * all of h's bits to the top. */
static inline size_t sl__htab_home(const sl__htab *t, uint32_t h)
{
    return (size_t)(((uint64_t)h * 0x9E3779B97F4A7C15ULL) >> t->shift);
}

#ifdef SL_TESTING
/* Probe sequences started by sl__htab_find on this thread (tests count lookups). */
extern _Thread_local uint64_t sl__htab_finds;
#endif

/* True when slot s (not empty) holds the entry (hash, a, b): its tag, then the entry's
 * folded hash, then its address in full. */
static inline __attribute__((always_inline)) bool
sl__slot_holds(sl__slot s, uint32_t hash, const void *a, size_t alen, const void *b, size_t blen)
{
    if ((s & ~SL__SLOT_ADDR) != sl__slot_tag(hash))
        return false;
    const uint8_t *e = sl__slot_ent(s);
    uint32_t eh;
    memcpy(&eh, e, 4);
    return eh == hash && sl__ent_is(e, a, alen, b, blen);
}

/* Finds the entry (hash, a, b). Returns true and its slot, or false and the slot where it
 * would be inserted (only meaningful when the table has capacity). Inline: one per state
 * access on the per-record path. */
static inline __attribute__((always_inline)) bool sl__htab_find(const sl__htab *t, uint64_t hash64,
                                                                const void *a, size_t alen,
                                                                const void *b, size_t blen,
                                                                size_t *slot)
{
#ifdef SL_TESTING
    sl__htab_finds++;
#endif
    if (!t->slots) {
        *slot = 0;
        return false;
    }
    uint32_t hash = sl__ent_hash32(hash64);
    for (size_t i = sl__htab_home(t, hash);; i = (i + 1) & t->mask) {
        sl__slot s = t->slots[i];
        if (!s) {
            *slot = i;
            return false;
        }
        if (sl__slot_holds(s, hash, a, alen, b, blen)) {
            *slot = i;
            return true;
        }
    }
}

/* sl__htab_find, looking first at the slot hint - 1 (hint 0: none), which a prefetch found
 * for the key a few records before (sl__htab_prefetch_entry). Inserts since then move no
 * entry, but a resize or a removal may have: the hint is used only when that slot holds an
 * entry (an empty slot's tag bits are 0, as some keys' tags are) and the entry is the
 * key's, compared in full, so a stale hint costs a compare, never a wrong answer.
 * A lookup that starts where its entry is skips the home slot's computation and the probe
 * along the slots before it, whose tag compares are branches no predictor learns. */
static inline __attribute__((always_inline)) bool
sl__htab_find_hinted(const sl__htab *t, uint64_t hash64, uint32_t hint, const void *a, size_t alen,
                     const void *b, size_t blen, size_t *slot)
{
    if (hint && t->slots && hint - 1 <= t->mask) {
        sl__slot s = t->slots[hint - 1];
        if (s && sl__slot_holds(s, sl__ent_hash32(hash64), a, alen, b, blen)) {
            *slot = hint - 1;
            return true;
        }
    }
    return sl__htab_find(t, hash64, a, alen, b, blen, slot);
}

/* __builtin_prefetch, kept: GCC's dead-code elimination deletes a prefetch together with
 * the branches and loop that lead to it when nothing else there has an effect (as in
 * sl__htab_prefetch_entry once inlined); the empty volatile asm is such an effect, and costs no
 * instruction. */
#define SL__PREFETCH(p)                                                                            \
    do {                                                                                           \
        __builtin_prefetch(p);                                                                     \
        __asm__ volatile("");                                                                      \
    } while (0)

/* Prefetches the first two cache lines of entry e: entries are packed in slab pages at
 * 8-byte alignment, so most of those over a few dozen bytes (a word count's: key, then a
 * value row holding the word again and its count) cross a line, and both a lookup (key
 * first, value at the end) and a snapshot writer read the whole entry. */
static inline void sl__ent_prefetch(const uint8_t *e)
{
    SL__PREFETCH(e);
    SL__PREFETCH(e + 63);
}

/* Slots sl__htab_prefetch_entry looks at for the entry. */
#define SL__HTAB_PREFETCH_PROBE 4

/* Prefetches for a coming sl__htab_find of hash: sl__htab_prefetch_slot the slot its probe
 * starts at, then sl__htab_prefetch_entry the entry of the first slot from there whose tag
 * matches, looking along the probe run for at most SL__HTAB_PREFETCH_PROBE slots (this
 * reads the slots, so prefetch the slot well before), both its first cache lines
 * (sl__ent_prefetch). Change nothing. Inline: they run for every record of a keyed input. */
static inline void sl__htab_prefetch_slot(const sl__htab *t, uint64_t hash64)
{
    if (t->slots)
        SL__PREFETCH(&t->slots[sl__htab_home(t, sl__ent_hash32(hash64))]);
}

/* Returns the slot it prefetched the entry of, plus one (a hint for sl__htab_find_hinted),
 * or 0 when it found none. */
static inline uint32_t sl__htab_prefetch_entry(const sl__htab *t, uint64_t hash64)
{
    if (!t->slots)
        return 0;
    uint32_t hash = sl__ent_hash32(hash64);
    sl__slot tag = sl__slot_tag(hash);
    size_t i = sl__htab_home(t, hash);
    for (int n = 0; n < SL__HTAB_PREFETCH_PROBE; n++, i = (i + 1) & t->mask) {
        sl__slot s = t->slots[i];
        if (!s)
            return 0;
        if ((s & ~SL__SLOT_ADDR) == tag) {
            sl__ent_prefetch(sl__slot_ent(s));
            return (uint32_t)i + 1;
        }
    }
    return 0;
}

/* Makes room for one more entry. Returns 1 when the table was (re)allocated, so slots
 * found before are stale, 0 when nothing moved, SL_ENOMEM (only when may_fail). */
int sl__htab_reserve(sl__htab *t, bool may_fail);
/* The same for extra more entries at once (restore sizes a table before filling it: entries
 * arrive ordered by hash, and inserting them into a small table that doubles as it fills
 * piles them into long probe runs). */
int sl__htab_reserve_n(sl__htab *t, size_t extra, bool may_fail);
/* Puts e at slot (an insertion slot from sl__htab_find after sl__htab_reserve). */
void sl__htab_insert_at(sl__htab *t, size_t slot, uint8_t *e);
/* Removes the entry at slot (without freeing it), shifting later entries back. */
void sl__htab_remove_at(sl__htab *t, size_t slot);
/* The next entry at or after *pos (advancing *pos past it), or NULL at the end. */
uint8_t *sl__htab_next(const sl__htab *t, size_t *pos);
/* Frees the slot array (not the entries) and empties t. */
void sl__htab_close(sl__htab *t);

/* Maps from user key bytes to value bytes, on an sl__htab (hash = sl__hash(key)). */
int sl__kv_get(const sl__htab *t, const uint8_t *k, size_t kn, const uint8_t **v, size_t *vn);
/* 0, or SL_ENOMEM (only when may_fail; the map is then unchanged). */
int sl__kv_put(sl__htab *t, sl__slab *s, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn,
               bool may_fail);
/* 1 when removed, 0 when absent. */
int sl__kv_remove(sl__htab *t, sl__slab *s, const uint8_t *k, size_t kn);
/* Frees every entry and the slots. */
void sl__kv_clear(sl__htab *t, sl__slab *s);
/* Makes dst (empty) a deep copy of src: the same capacity and slot order, each entry copied.
 * 0, or SL_ENOMEM (only when may_fail; dst is then empty). Only reads src. */
int sl__kv_copy(sl__htab *dst, const sl__htab *src, sl__slab *s, bool may_fail);
/* Serialized size of the map's pairs (each key and value as varint length + bytes). */
size_t sl__kv_pairs_size(const sl__htab *t);
/* Writes the pairs at p; returns the end. */
uint8_t *sl__kv_pairs_write(const sl__htab *t, uint8_t *p);
/* Inserts count pairs in the snapshot form (validated before). 0 or SL_ENOMEM (the pairs
 * inserted before stay). */
int sl__kv_load_pairs(sl__htab *t, sl__slab *s, const uint8_t *p, size_t n, uint64_t count);

/* ---- List vectors (table.c): elements, each varint length + serialized row ------------- */

typedef struct sl__vec {
    size_t len, cap, count; /* bytes used, bytes allocated, elements */
    uint8_t data[];
} sl__vec;

/* Appends count elements (n bytes at p) to v (NULL: a new vector). Returns the vector,
 * possibly moved; NULL only when may_fail and out of memory (v then unchanged). */
sl__vec *sl__vec_append(sl__vec *v, const uint8_t *p, size_t n, size_t count, bool may_fail);
/* A new vector holding v's elements with room for extra more bytes (at least v's capacity,
 * so appends keep doubling). Only reads v. Aborts on out of memory (per-record path). */
sl__vec *sl__vec_copy(const sl__vec *v, size_t extra);

/* ---- Iterators ------------------------------------------------------------------------- */

/* The pool of iterators (sl__iter_pool) is in state.h, in the head of every backend and
 * store (sl__state_head). */

struct sl_iter {
    sl__iter_pool *pool;
    sl_iter *next_free;
    sl_state *st; /* NULL while free */
    uint64_t mod; /* st->mod when started: a write to st ends the iteration */
    bool map;
    bool cursor_open;       /* map: the backend's cursor is open (map_iter_close pending) */
    const uint8_t *p, *end; /* list: the next element */
    /* map: the cursor, owned by the state's sl__state_ops. In-memory maps (heap backend,
     * operator store) set tab and pos, and state.c then calls sl__htab_iter_next directly;
     * the RocksDB backend leaves tab NULL and keeps its database iterator in cursor. */
    const sl__htab *tab;
    size_t pos;
    void *cursor;
};

/* Takes an iterator for st (aborts on out of memory: per-record path). */
sl_iter *sl__iter_acquire(sl__iter_pool *pool, sl_state *st);
/* Returns it to its pool, closing a map cursor left open. */
void sl__iter_release(sl_iter *it);
void sl__iter_pool_release_all(sl__iter_pool *pool);
/* Releases every open iterator, then frees the pool's memory. */
void sl__iter_pool_close(sl__iter_pool *pool);

/* map_iter_next of the in-memory maps: the next pair of the sl__htab in it->tab from slot
 * it->pos on. Views point into the table's entries. 1, or 0 at the end. Inline: state.c
 * calls it directly on the iteration path. */
static inline int sl__htab_iter_next(sl_iter *it, const uint8_t **k, size_t *kn, const uint8_t **v,
                                     size_t *vn)
{
    const uint8_t *e = sl__htab_next(it->tab, &it->pos);
    if (!e)
        return 0;
    sl__ent x;
    sl__ent_view(e, &x);
    *k = x.a;
    *kn = x.alen;
    *v = x.v;
    *vn = x.vlen;
    return 1;
}

/* ---- State handles ----------------------------------------------------------------------*/

/* Storage operations of one state for its current scope (the current key and namespace for
 * keyed state; the whole state for operator state). Only the operations of the state's
 * kind are called.
 *
 * Views returned point into state memory (or, for backends that keep no copy in memory,
 * into the backend's view arena: sl__keyed_backend.ops->release_views) and stay valid until
 * the next write to the backend or store, or the end of the call into user code. Writers
 * copy what they get, never see bytes that alias state memory (state.c serializes into the
 * handle's scratch first), and abort on out of memory (per-record path, as everywhere on
 * it).
 *
 * Errors: every operation may return a negative code (SL_EIO, SL_ESTATE) after it has
 * reported the failure through sl__state_fail (which reaches sl_fail when the handle has a
 * context); state.c passes the code to the user unchanged. The heap backend and the
 * operator store never fail here. */
typedef struct sl__state_ops {
    /* VALUE, REDUCING, AGGREGATING: the serialized row. 1 found, 0 absent, <0 error. */
    int (*value_get)(sl_state *st, const uint8_t **p, size_t *n);
    int (*value_put)(sl_state *st, const uint8_t *p, size_t n); /* 0 or <0 */
    /* Optional, VALUE: the stored row, writable in place (as value_get, but a backend with
     * copy-on-write snapshots has first given the scope an entry of its own), for an
     * update that keeps its size. 1 found, 0 absent, <0 error. */
    int (*value_ref)(sl_state *st, uint8_t **p, size_t *n);
    /* Optional, VALUE: sl__value_add_last_fn (state.h); without it the caller takes the
     * general way. */
    int (*value_add_last)(sl_state *st, const sl_value *delta, sl_value *sum);
    /* Optional, VALUE: sl__value_add_last_run_fn (state.h). */
    size_t (*value_add_last_run)(sl_state *st, const sl__key *keys, const sl_value *deltas,
                                 sl_value *sums, size_t stride, size_t n);
    /* LIST: the elements (varint length + row each). 1 non-empty, 0 empty, <0 error. */
    int (*list_get)(sl_state *st, const uint8_t **p, size_t *n);
    int (*list_append)(sl_state *st, const uint8_t *p, size_t n, size_t count);
    int (*list_set)(sl_state *st, const uint8_t *p, size_t n, size_t count); /* count > 0 */
    /* MAP: by serialized user key. get: 1 found, 0 absent, <0 error. remove: 1 removed (or,
     * for a backend that cannot tell without a read, possibly removed), 0 absent. */
    int (*map_get)(sl_state *st, const uint8_t *k, size_t kn, const uint8_t **v, size_t *vn);
    int (*map_put)(sl_state *st, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn);
    int (*map_remove)(sl_state *st, const uint8_t *k, size_t kn);
    /* MAP iteration, a cursor over the scope's pairs kept in the iterator (whose st is
     * set). open: 1 when positioned on the first pair (the cursor is then open until
     * map_iter_close), 0 when the map is empty (nothing to close), <0 error (nothing to
     * close). next: 1 and the next pair as views (above), 0 at the end, <0 error; state.c
     * stops calling it once the state was written (the iteration has ended) but closes the
     * cursor in any case. close may be NULL when a cursor holds nothing. */
    int (*map_iter_open)(sl_state *st, sl_iter *it);
    int (*map_iter_next)(sl_iter *it, const uint8_t **k, size_t *kn, const uint8_t **v, size_t *vn);
    void (*map_iter_close)(sl_iter *it);
    /* Every kind: removes the scope's value. 1 removed (or possibly removed, as for
     * map_remove), 0 absent, <0 error. */
    int (*clear)(sl_state *st);
} sl__state_ops;

enum { SL__ORIGIN_KEYED = 0, SL__ORIGIN_OPERATOR = 1, SL__ORIGIN_BROADCAST = 2 };

struct sl_state {
    const sl__state_ops *ops;
    void *impl;            /* the backend's or store's per-state storage */
    sl__keyed_backend *be; /* keyed state: its backend; NULL for operator state */
    sl__iter_pool *iters;
    sl_ctx *ctx; /* for callbacks and sl_fail; may be NULL (no messages then) */
    char *name;
    sl_state_kind kind;
    int origin; /* SL__ORIGIN_* */
    sl_redistribution mode;
    bool readonly;
    sl__schema *schema;        /* value / element / input rows */
    sl__schema *key_schema;    /* MAP: user keys */
    sl__schema *acc_schema;    /* AGGREGATING */
    sl__schema *result_schema; /* AGGREGATING */
    const sl__schema *stored;  /* what is stored: acc_schema or schema */
    sl_reduce_cb reduce;       /* REDUCING */
    sl_aggregate_fn agg;       /* AGGREGATING; its schema strings are not kept */
    uint64_t mod;              /* bumped by every write; iterators compare it */
    uint64_t ns_epoch;         /* bumped when the namespace changes */
    uint64_t ns_hash;          /* sl__hash of ns, 0 when empty */
    uint8_t *ns;               /* keyed state: current namespace (owned copy) */
    size_t ns_len, ns_cap;
    uint8_t *scratch; /* serialized rows on their way into state */
    size_t scratch_cap;
};

/* Creates a handle (not yet attached to storage) from a descriptor after validating it.
 * Returns NULL with a message in err and *code SL_EINVAL or SL_ENOMEM. */
sl_state *sl__state_new(const sl_state_desc *d, sl_ctx *ctx, char *err, size_t cap, int *code);
void sl__state_free(sl_state *st);
/* True when a and b were declared alike: kind and the field types of every schema. */
bool sl__state_same_decl(const sl_state *a, const sl_state *b);
/* Describes st's declaration for messages: "a VALUE state of \"n:i64\"". */
void sl__state_describe(const sl_state *st, char *buf, size_t cap);
/* Formats a message, passes it to sl_fail (when st has a ctx) and returns code. */
int sl__state_fail(sl_state *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- Keyed backend base -----------------------------------------------------------------*/

typedef struct sl__backend_ops {
    const char *name;
    /* Frees the backend's own parts and the backend itself (the base is closed before). */
    void (*destroy)(sl__keyed_backend *be);
    /* Gives a new handle its storage: restored entries of that name (checking the kind and
     * that they parse under the schemas) or empty. Sets st->ops and st->impl. Returns 0, or
     * SL_ESTATE / SL_EFORMAT / SL_ENOMEM / SL_EIO with a message in err. */
    int (*attach)(sl__keyed_backend *be, sl_state *st, char *err, size_t cap);
    int (*for_each_key)(sl__keyed_backend *be, sl_state *st,
                        int (*fn)(void *arg, const sl__key *key), void *arg);
    size_t (*size)(const sl__keyed_backend *be);
    int (*snapshot_kg)(sl__keyed_backend *be, int key_group, sl__buf *out);
    int (*restore_kg)(sl__keyed_backend *be, int key_group, const uint8_t *p, size_t len, char *err,
                      size_t cap);
    /* Asynchronous snapshots (state.h): begin on the task thread; NULL on out of memory. */
    sl__keyed_snapshot *(*snapshot_begin)(sl__keyed_backend *be);
    /* Optional: drops the views handed out so far (a backend that copies what it reads
     * into an arena resets it) and clears head.views, which the backend sets as it hands
     * views out. state.c calls it when a new key is set and at the end of every call into
     * user code, in both cases only while no iterator of the backend is open, and only when
     * head.views is set (end of call: or an iterator was open); the backend may also call it
     * itself before a write, on the same condition. */
    void (*release_views)(sl__keyed_backend *be);
    /* Optional: sl__keyed_backend_prefetch (which passes on every call: the backend checks
     * the key groups against its range). */
    void (*prefetch)(sl__keyed_backend *be, const uint64_t *slot_hashes, size_t nslot,
                     const uint64_t *entry_hashes, size_t nentry, uint32_t *entry_hints);
} sl__backend_ops;

/* Every backend's snapshot starts with this; kg_start/kg_end are the backend's range (the
 * generic functions in state.c check kg against it). */
typedef struct sl__snapshot_ops {
    int (*write_kg)(sl__keyed_snapshot *s, int key_group, sl__buf *out);
    void (*kg_written)(sl__keyed_snapshot *s, int key_group); /* optional */
    void (*release)(sl__keyed_snapshot *s);
    /* Optional (NULL: the snapshot is written by key group): a snapshot made of files, see
     * sl__keyed_snapshot_files and sl__keyed_snapshot_set_uploaded in state.h. */
    bool (*files)(sl__keyed_snapshot *s, const char **dir, const sl__snapshot_file **files,
                  size_t *n);
    void (*set_uploaded)(sl__keyed_snapshot *s, const char *name, const char *shared);
} sl__snapshot_ops;

struct sl__keyed_snapshot {
    const sl__snapshot_ops *ops;
    int kg_start, kg_end;
};

/* Every backend starts with this. */
struct sl__keyed_backend {
    sl__state_head head; /* first: sl__state_end_call reads it (state.h) */
    const sl__backend_ops *ops;
    int max_parallelism, kg_start, kg_end;
    sl__schema *key_schema;
    sl__key key; /* current key; bytes borrowed */
    bool has_key;
    uint64_t key_epoch; /* bumped by every set_key */
    sl_state **states;  /* registered handles, in registration order */
    size_t nstates, states_cap;
    char snap_err[256]; /* why the last snapshot_begin failed, when not out of memory */
};

/* Initialises the base (copies key_schema, which may be NULL). 0 or SL_ENOMEM. */
int sl__keyed_backend_init(sl__keyed_backend *be, const sl__backend_ops *ops, int max_parallelism,
                           int kg_start, int kg_end, const sl__schema *key_schema);

/* Counters of the heap backend, for tests and metrics (task thread). */
typedef struct sl__heap_stats {
    size_t slab_used;      /* bytes in slab blocks: entries and map entries */
    size_t deferred;       /* replaced or removed entries kept for live snapshots */
    size_t live_snapshots; /* begun and not yet seen released by the task thread */
    uint32_t version;      /* the backend's snapshot version */
} sl__heap_stats;

/* First reclaims what released snapshots kept (as any backend call on the task thread
 * may), then fills *out. be must be a heap backend. */
void sl__heap_backend_stats(sl__keyed_backend *be, sl__heap_stats *out);
#ifdef SL_TESTING
/* Sets the snapshot version counter (tests of its wrap-around). No snapshot may be live. */
void sl__heap_backend_set_version(sl__keyed_backend *be, uint32_t version);
#endif

/* Scope hash of the current key and st's namespace: the key hash alone when the namespace
 * is empty. */
static inline uint64_t sl__scope_hash(uint64_t key_hash, uint64_t ns_hash, size_t ns_len)
{
    if (!ns_len)
        return key_hash;
    uint64_t h = key_hash ^ (ns_hash * 0xff51afd7ed558ccdULL);
    return h ^ (h >> 32);
}

#endif

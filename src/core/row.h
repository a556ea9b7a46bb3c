/*
 * row.h - schemas and the serialized row format.
 *
 * Wire format of a row (in channel buffers, in state, in checkpoints), schema-directed:
 *   null bitmap: ceil(n/8) bytes, bit i (LSB first) set when field i is null
 *   then each non-null field in order:
 *     i64, f64  8 bytes little-endian
 *     bool      1 byte (0 or 1)
 *     str,bytes varint length (LEB128) then the bytes
 * Types are not on the wire; both sides know the schema. Reading gives zero-copy views:
 * str/bytes values point into the buffer read.
 */
#ifndef SL_CORE_ROW_H
#define SL_CORE_ROW_H

#include "sluice.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct sl__schema {
    int n;
    sl_type *types;
    char **names;
    char *text;        /* canonical text, "city:str,value:i64" */
    size_t fixed_size; /* serialized size when there are no str/bytes fields, else 0 */
    int shape;         /* SL__SHAPE_* of a 1- or 2-field schema, else 0: see below */
} sl__schema;

/*
 * Shapes: the row codec's fast paths. A field's kind says how a non-null value is encoded:
 * 8 bytes (i64, f64), 1 byte (bool) or varint length and bytes (str, bytes). A schema of
 * one or two fields has a shape naming its kinds, and sl__row_read/size/write handle a row
 * of that shape without nulls in straight-line code for it, instead of the loop with a
 * switch per field; rows with nulls (and other schemas) take the general loop. The bytes
 * are the same either way.
 */
enum { SL__KIND_FIX8, SL__KIND_BOOL, SL__KIND_VAR };
#define SL__SHAPE1(k0) (1 + (k0))
#define SL__SHAPE2(k0, k1) (4 + 3 * (k0) + (k1))

/* Parses schema text (see sluice.h). Returns a new schema or NULL with a message in err. */
sl__schema *sl__schema_parse(const char *text, char *err, size_t errcap);
sl__schema *sl__schema_copy(const sl__schema *s);
/* A schema of selected fields of s (for key_by on a field). */
sl__schema *sl__schema_project(const sl__schema *s, const int *fields, int n);
void sl__schema_destroy(sl__schema *s);
int sl__schema_equal(const sl__schema *a, const sl__schema *b);
/* Index of a field by name, "f<N>" or decimal index; -1 if none. */
int sl__schema_field(const sl__schema *s, const char *name);
const char *sl__type_name(sl_type t);

/* Serialized size of row. */
size_t sl__row_size(const sl__schema *s, const sl_value *row);
/* Writes row at dst (which has sl__row_size bytes) and returns the end. */
uint8_t *sl__row_write(const sl__schema *s, const sl_value *row, uint8_t *dst);
/* Reads a row from [p, end) into out; returns the end of the row or NULL if malformed. */
const uint8_t *sl__row_read(const sl__schema *s, const uint8_t *p, const uint8_t *end,
                            sl_value *out);
/* sl__row_check's loop, for schemas of other than two fields. */
int sl__row_check_general(const sl__schema *s, const sl_value *row);

/* Checks that every value's type matches the schema (null is always allowed). Returns -1
 * when it does, else the index of the first bad field. Inline: every row an operator
 * emits is checked, and the usual row has two fields, a few instructions unrolled. */
static inline int sl__row_check(const sl__schema *s, const sl_value *row)
{
    if (s->shape >= SL__SHAPE2(SL__KIND_FIX8, SL__KIND_FIX8)) { /* two fields, unrolled */
        if (row[0].type != s->types[0] && row[0].type != SL_NULL)
            return 0;
        return row[1].type != s->types[1] && row[1].type != SL_NULL ? 1 : -1;
    }
    return sl__row_check_general(s, row);
}

/* Compares two values of the same type (numbers numerically, str/bytes bytewise, null
 * first): <0, 0, >0. */
int sl__value_cmp(const sl_value *a, const sl_value *b);

/* Varints (LEB128, unsigned 64-bit). */
static inline size_t sl__varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}
static inline uint8_t *sl__varint_write(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}
/* Returns the end, or NULL when malformed or truncated. */
static inline const uint8_t *sl__varint_read(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    if (p < end && *p < 0x80) { /* the usual one-byte length */
        *v = *p;
        return p + 1;
    }
    uint64_t r = 0;
    for (int shift = 0; shift < 64 && p < end; shift += 7) {
        uint8_t b = *p++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return p;
        }
    }
    return NULL;
}

/* memcpy for the short strings of most rows (keys, words): up to 16 bytes by two
 * overlapping loads and stores that stay within [src, src + n), without a call. */
static inline void sl__copy_bytes(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (n >= 8 && n <= 16) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + n - 8, &b, 8);
    } else if (n >= 4 && n < 8) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        memcpy(d, &a, 4);
        memcpy(d + n - 4, &b, 4);
    } else if (n > 16) {
        memcpy(d, s, n);
    } else {
        for (size_t i = 0; i < n; i++) /* 0 to 3 bytes */
            d[i] = s[i];
    }
}

/* Bytes sl__key_row_str may store at dst beyond the row it writes (dst needs the row's size
 * plus this). */
#define SL__KEY_ROW_SLACK 8

/* Writes the row of a key that is one non-null string of n bytes (a null bitmap byte of 0,
 * varint n, the bytes) at dst and returns its size. Up to 14 bytes, the usual key (a word,
 * an id), the row goes out in at most two 8-byte stores built in registers: one for its
 * first 8 bytes and one for its last 8. XXH3, which reads a row of 4 to 16 bytes as
 * exactly those two words (and a shorter one as bytes within the first), then takes them
 * straight from the stores. A row assembled byte by byte (bitmap, length, then the
 * string's pieces) left each of those loads spanning several stores still in flight: the
 * load waits for them all to reach the cache (a failed store-to-load forward), a third of
 * the sender's time in the word count. Reads only [s, s + n). */
static inline __attribute__((always_inline)) size_t sl__key_row_str(uint8_t *dst, const char *s,
                                                                    size_t n)
{
    const uint8_t *b = (const uint8_t *)s;
    size_t len = n + 2;
    uint64_t v; /* the first min(n, 8) bytes of the string, little-endian */
    if (n >= 8) {
        if (n > 14) {
            dst[0] = 0;
            uint8_t *p = sl__varint_write(dst + 1, n);
            sl__copy_bytes(p, s, n);
            return (size_t)(p - dst) + n;
        }
        memcpy(&v, b, 8);
        uint64_t front = (uint64_t)n << 8 | v << 16, back;
        memcpy(&back, b + n - 8, 8);
        memcpy(dst, &front, 8);
        memcpy(dst + len - 8, &back, 8);
        return len;
    }
    if (n >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, b, 4);
        memcpy(&hi, b + n - 4, 4);
        v = lo | (uint64_t)hi << (8 * (n - 4));
    } else if (n) {
        /* 1 to 3 bytes: the first, middle and last (some the same byte, at the same place),
         * without a loop whose count, a word's length, the branch predictor cannot know */
        v = (uint64_t)b[0] | (uint64_t)b[n / 2] << (8 * (n / 2)) |
            (uint64_t)b[n - 1] << (8 * (n - 1));
    } else {
        v = 0;
    }
    uint64_t front = (uint64_t)n << 8 | v << 16;
    memcpy(dst, &front, 8);
    if (len > 8) { /* n = 7: the last byte */
        uint64_t back = (uint64_t)n | v << 8;
        memcpy(dst + 1, &back, 8);
    }
    return len;
}

/* The serialized size of one non-null value (its bytes in a row, after the bitmap). */
static inline size_t sl__value_size(const sl_value *v)
{
    switch (v->type) {
    case SL_I64:
    case SL_F64:
        return 8;
    case SL_BOOL:
        return 1;
    case SL_STR:
    case SL_BYTES:
        return sl__varint_size(v->u.s.len) + v->u.s.len;
    case SL_NULL:
        break;
    }
    return 0;
}

/* Writes one non-null value as sl__row_write does (sl__value_size bytes at p) and returns
 * the end. */
static inline uint8_t *sl__value_write(const sl_value *v, uint8_t *p)
{
    switch (v->type) {
    case SL_I64:
    case SL_F64:
        memcpy(p, &v->u.i64, 8); /* little-endian hosts only; checked at build time */
        return p + 8;
    case SL_BOOL:
        *p = v->u.b ? 1 : 0;
        return p + 1;
    case SL_STR:
    case SL_BYTES:
        p = sl__varint_write(p, v->u.s.len);
        sl__copy_bytes(p, v->u.s.ptr, v->u.s.len);
        return p + v->u.s.len;
    case SL_NULL:
        break;
    }
    return p;
}

#endif

/*
 * row.c - schema parsing, row serialization, value comparison and Flink-style formatting.
 */
#include "core/row.h"
#include "core/alloc.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    sl_type type;
} type_names[] = {
    {"i64", SL_I64}, {"f64", SL_F64},  {"bool", SL_BOOL},  {"str", SL_STR},    {"bytes", SL_BYTES},
    {"int", SL_I64}, {"long", SL_I64}, {"double", SL_F64}, {"string", SL_STR}, {"boolean", SL_BOOL},
};

const char *sl__type_name(sl_type t)
{
    switch (t) {
    case SL_I64:
        return "i64";
    case SL_F64:
        return "f64";
    case SL_BOOL:
        return "bool";
    case SL_STR:
        return "str";
    case SL_BYTES:
        return "bytes";
    case SL_NULL:
        return "null";
    }
    return "?";
}

static size_t compute_fixed(const sl__schema *s)
{
    size_t n = ((size_t)s->n + 7) / 8;
    for (int i = 0; i < s->n; i++) {
        if (s->types[i] == SL_I64 || s->types[i] == SL_F64)
            n += 8;
        else if (s->types[i] == SL_BOOL)
            n += 1;
        else
            return 0;
    }
    return n;
}

static int kind_of(sl_type t)
{
    switch (t) {
    case SL_I64:
    case SL_F64:
        return SL__KIND_FIX8;
    case SL_BOOL:
        return SL__KIND_BOOL;
    case SL_STR:
    case SL_BYTES:
        return SL__KIND_VAR;
    case SL_NULL:
        break;
    }
    return -1;
}

static int compute_shape(const sl__schema *s)
{
    int k0 = s->n >= 1 ? kind_of(s->types[0]) : -1;
    int k1 = s->n >= 2 ? kind_of(s->types[1]) : -1;
    if (s->n == 1 && k0 >= 0)
        return SL__SHAPE1(k0);
    if (s->n == 2 && k0 >= 0 && k1 >= 0)
        return SL__SHAPE2(k0, k1);
    return 0;
}

static void trim(const char **b, const char **e)
{
    while (*b < *e && isspace((unsigned char)**b))
        (*b)++;
    while (*e > *b && isspace((unsigned char)(*e)[-1]))
        (*e)--;
}

static sl__schema *schema_alloc(int n)
{
    sl__schema *s = sl__calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->n = n;
    s->types = sl__calloc((size_t)(n ? n : 1), sizeof *s->types);
    s->names = sl__calloc((size_t)(n ? n : 1), sizeof *s->names);
    if (!s->types || !s->names) {
        sl__schema_destroy(s);
        return NULL;
    }
    return s;
}

static int schema_finish(sl__schema *s)
{
    size_t len = 1;
    for (int i = 0; i < s->n; i++)
        len += strlen(s->names[i]) + 8;
    s->text = sl__malloc(len);
    if (!s->text)
        return -1;
    char *p = s->text;
    *p = 0;
    for (int i = 0; i < s->n; i++)
        p += sprintf(p, "%s%s:%s", i ? "," : "", s->names[i], sl__type_name(s->types[i]));
    s->fixed_size = compute_fixed(s);
    s->shape = compute_shape(s);
    return 0;
}

sl__schema *sl__schema_parse(const char *text, char *err, size_t errcap)
{
    if (!text || !*text) {
        snprintf(err, errcap, "empty schema: expected fields like \"name:str,count:i64\"");
        return NULL;
    }
    int n = 1;
    for (const char *p = text; *p; p++)
        n += *p == ',';
    sl__schema *s = schema_alloc(n);
    if (!s) {
        snprintf(err, errcap, "out of memory parsing schema");
        return NULL;
    }
    const char *p = text;
    for (int i = 0; i < n; i++) {
        const char *fe = strchr(p, ',');
        if (!fe)
            fe = p + strlen(p);
        const char *colon = memchr(p, ':', (size_t)(fe - p));
        const char *nb = p, *ne = colon ? colon : p, *tb = colon ? colon + 1 : p, *te = fe;
        trim(&nb, &ne);
        trim(&tb, &te);
        int found = 0;
        for (size_t k = 0; k < sizeof type_names / sizeof type_names[0]; k++) {
            if (strlen(type_names[k].name) == (size_t)(te - tb) &&
                !strncmp(type_names[k].name, tb, (size_t)(te - tb))) {
                s->types[i] = type_names[k].type;
                found = 1;
            }
        }
        if (!found) {
            snprintf(err, errcap,
                     "schema \"%s\": field %d has unknown type \"%.*s\" (accepted: i64, f64, "
                     "bool, str, bytes)",
                     text, i, (int)(te - tb), tb);
            sl__schema_destroy(s);
            return NULL;
        }
        if (colon && ne == nb) {
            snprintf(err, errcap, "schema \"%s\": field %d has an empty name", text, i);
            sl__schema_destroy(s);
            return NULL;
        }
        char buf[32];
        if (colon) {
            s->names[i] = sl__strndup(nb, (size_t)(ne - nb));
        } else {
            snprintf(buf, sizeof buf, "f%d", i);
            s->names[i] = sl__strdup(buf);
        }
        if (!s->names[i]) {
            snprintf(err, errcap, "out of memory parsing schema");
            sl__schema_destroy(s);
            return NULL;
        }
        for (int j = 0; j < i; j++) {
            if (!strcmp(s->names[j], s->names[i])) {
                snprintf(err, errcap, "schema \"%s\": field name \"%s\" appears twice", text,
                         s->names[i]);
                sl__schema_destroy(s);
                return NULL;
            }
        }
        p = *fe ? fe + 1 : fe;
    }
    if (schema_finish(s) < 0) {
        snprintf(err, errcap, "out of memory parsing schema");
        sl__schema_destroy(s);
        return NULL;
    }
    return s;
}

sl__schema *sl__schema_project(const sl__schema *src, const int *fields, int n)
{
    sl__schema *s = schema_alloc(n);
    if (!s)
        return NULL;
    for (int i = 0; i < n; i++) {
        s->types[i] = src->types[fields[i]];
        s->names[i] = sl__strdup(src->names[fields[i]]);
        if (!s->names[i]) {
            sl__schema_destroy(s);
            return NULL;
        }
    }
    if (schema_finish(s) < 0) {
        sl__schema_destroy(s);
        return NULL;
    }
    return s;
}

sl__schema *sl__schema_copy(const sl__schema *src)
{
    int idx[src->n ? src->n : 1];
    for (int i = 0; i < src->n; i++)
        idx[i] = i;
    return sl__schema_project(src, idx, src->n);
}

void sl__schema_destroy(sl__schema *s)
{
    if (!s)
        return;
    if (s->names)
        for (int i = 0; i < s->n; i++)
            sl__free(s->names[i]);
    sl__free(s->names);
    sl__free(s->types);
    sl__free(s->text);
    sl__free(s);
}

int sl__schema_equal(const sl__schema *a, const sl__schema *b)
{
    if (a->n != b->n)
        return 0;
    for (int i = 0; i < a->n; i++)
        if (a->types[i] != b->types[i])
            return 0;
    return 1;
}

int sl__schema_field(const sl__schema *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name))
            return i;
    const char *p = name;
    if (*p == 'f')
        p++;
    if (!*p)
        return -1;
    char *end;
    long v = strtol(p, &end, 10);
    if (*end || v < 0 || v >= s->n || !isdigit((unsigned char)*p))
        return -1;
    return (int)v;
}

/*
 * The shape fast paths (row.h). The helpers below encode one non-null field of a kind; they
 * are always inlined with a constant kind, so each shape's case is straight-line code. The
 * general loops after them, for nulls and the other schemas, call them with each field's
 * kind.
 */

static inline __attribute__((always_inline)) size_t size_one(int kind, const sl_value *v)
{
    if (kind == SL__KIND_FIX8)
        return 8;
    if (kind == SL__KIND_BOOL)
        return 1;
    return sl__varint_size(v->u.s.len) + v->u.s.len;
}

static inline __attribute__((always_inline)) uint8_t *write_one(int kind, const sl_value *v,
                                                                uint8_t *p)
{
    if (kind == SL__KIND_FIX8) {
        memcpy(p, &v->u.i64, 8); /* little-endian hosts only; checked at build time */
        return p + 8;
    }
    if (kind == SL__KIND_BOOL) {
        *p = v->u.b ? 1 : 0;
        return p + 1;
    }
    p = sl__varint_write(p, v->u.s.len);
    sl__copy_bytes(p, v->u.s.ptr, v->u.s.len);
    return p + v->u.s.len;
}

/* Reads one non-null field of type t (of kind kind) at p; returns its end, or NULL when it
 * is malformed or runs past end. */
static inline __attribute__((always_inline)) const uint8_t *
read_one(int kind, sl_type t, const uint8_t *p, const uint8_t *end, sl_value *v)
{
    v->type = t;
    if (kind == SL__KIND_FIX8) {
        if (end - p < 8)
            return NULL;
        memcpy(&v->u.i64, p, 8);
        return p + 8;
    }
    if (kind == SL__KIND_BOOL) {
        if (end - p < 1 || *p > 1)
            return NULL;
        v->u.b = *p != 0;
        return p + 1;
    }
    uint64_t len;
    p = sl__varint_read(p, end, &len);
    if (!p || (uint64_t)(end - p) < len)
        return NULL;
    v->u.s.ptr = (const char *)p;
    v->u.s.len = (size_t)len;
    return p + len;
}

/* The cases of a switch on s->shape, one per shape: X1(k0) for one field, X2(k0, k1) for
 * two. */
#define SHAPE_CASES(X1, X2)                                                                        \
    X1(SL__KIND_FIX8)                                                                              \
    X1(SL__KIND_BOOL)                                                                              \
    X1(SL__KIND_VAR)                                                                               \
    X2(SL__KIND_FIX8, SL__KIND_FIX8)                                                               \
    X2(SL__KIND_FIX8, SL__KIND_BOOL)                                                               \
    X2(SL__KIND_FIX8, SL__KIND_VAR)                                                                \
    X2(SL__KIND_BOOL, SL__KIND_FIX8)                                                               \
    X2(SL__KIND_BOOL, SL__KIND_BOOL)                                                               \
    X2(SL__KIND_BOOL, SL__KIND_VAR)                                                                \
    X2(SL__KIND_VAR, SL__KIND_FIX8)                                                                \
    X2(SL__KIND_VAR, SL__KIND_BOOL)                                                                \
    X2(SL__KIND_VAR, SL__KIND_VAR)

/* The fast paths of size and write take a row whose values all have exactly the schema's
 * types (so none is null). */
#define SIZE1(k0)                                                                                  \
    case SL__SHAPE1(k0):                                                                           \
        if (row[0].type == s->types[0])                                                            \
            return 1 + size_one(k0, &row[0]);                                                      \
        break;
#define SIZE2(k0, k1)                                                                              \
    case SL__SHAPE2(k0, k1):                                                                       \
        if (row[0].type == s->types[0] && row[1].type == s->types[1])                              \
            return 1 + size_one(k0, &row[0]) + size_one(k1, &row[1]);                              \
        break;

/* sl__row_size's general loop: out of line, so that the fast paths need no stack frame. */
static __attribute__((noinline)) size_t row_size_general(const sl__schema *s, const sl_value *row)
{
    if (s->fixed_size) {
        /* nulls only make it smaller; recompute exactly only when one is present */
        int has_null = 0;
        for (int i = 0; i < s->n; i++)
            has_null |= row[i].type == SL_NULL;
        if (!has_null)
            return s->fixed_size;
    }
    size_t n = ((size_t)s->n + 7) / 8;
    for (int i = 0; i < s->n; i++)
        if (row[i].type != SL_NULL)
            n += size_one(kind_of(row[i].type), &row[i]);
    return n;
}

size_t sl__row_size(const sl__schema *s, const sl_value *row)
{
    switch (s->shape) {
        SHAPE_CASES(SIZE1, SIZE2)
    }
    return row_size_general(s, row);
}

#define WRITE1(k0)                                                                                 \
    case SL__SHAPE1(k0):                                                                           \
        if (row[0].type == s->types[0]) {                                                          \
            *p = 0;                                                                                \
            return write_one(k0, &row[0], p + 1);                                                  \
        }                                                                                          \
        break;
#define WRITE2(k0, k1)                                                                             \
    case SL__SHAPE2(k0, k1):                                                                       \
        if (row[0].type == s->types[0] && row[1].type == s->types[1]) {                            \
            *p = 0;                                                                                \
            return write_one(k1, &row[1], write_one(k0, &row[0], p + 1));                          \
        }                                                                                          \
        break;

/* sl__row_write's general loop, out of line as row_size_general. */
static __attribute__((noinline)) uint8_t *row_write_general(const sl__schema *s,
                                                            const sl_value *row, uint8_t *p)
{
    size_t nb = ((size_t)s->n + 7) / 8;
    uint8_t *bitmap = p;
    if (nb == 1) /* up to 8 fields: not worth a call to memset */
        *bitmap = 0;
    else
        memset(bitmap, 0, nb);
    p += nb;
    for (int i = 0; i < s->n; i++) {
        if (row[i].type == SL_NULL)
            bitmap[i >> 3] |= (uint8_t)(1u << (i & 7));
        else
            p = write_one(kind_of(row[i].type), &row[i], p);
    }
    return p;
}

uint8_t *sl__row_write(const sl__schema *s, const sl_value *row, uint8_t *p)
{
    switch (s->shape) {
        SHAPE_CASES(WRITE1, WRITE2)
    }
    return row_write_general(s, row, p);
}

/* The fast paths of read take a row whose bitmap byte (at p) is 0: no nulls. */
#define READ1(k0)                                                                                  \
    case SL__SHAPE1(k0):                                                                           \
        return read_one(k0, s->types[0], p + 1, end, &out[0]);
#define READ2(k0, k1)                                                                              \
    case SL__SHAPE2(k0, k1): {                                                                     \
        const uint8_t *q = read_one(k0, s->types[0], p + 1, end, &out[0]);                         \
        return q ? read_one(k1, s->types[1], q, end, &out[1]) : NULL;                              \
    }

/* sl__row_read's general loop, out of line as row_size_general. */
static __attribute__((noinline)) const uint8_t *
row_read_general(const sl__schema *s, const uint8_t *p, const uint8_t *end, sl_value *out)
{
    size_t nb = ((size_t)s->n + 7) / 8;
    if ((size_t)(end - p) < nb)
        return NULL;
    const uint8_t *bitmap = p;
    p += nb;
    for (int i = 0; i < s->n; i++) {
        sl_value *v = &out[i];
        if (bitmap[i >> 3] & (1u << (i & 7))) {
            v->type = SL_NULL;
            continue;
        }
        int kind = kind_of(s->types[i]);
        if (kind < 0 || !(p = read_one(kind, s->types[i], p, end, v)))
            return NULL;
    }
    return p;
}

const uint8_t *sl__row_read(const sl__schema *s, const uint8_t *p, const uint8_t *end,
                            sl_value *out)
{
    if (s->shape && p < end && *p == 0) {
        switch (s->shape) {
            SHAPE_CASES(READ1, READ2)
        }
    }
    return row_read_general(s, p, end, out);
}

int sl__row_check_general(const sl__schema *s, const sl_value *row)
{
    for (int i = 0; i < s->n; i++)
        if (row[i].type != s->types[i] && row[i].type != SL_NULL)
            return i;
    return -1;
}

int sl__value_cmp(const sl_value *a, const sl_value *b)
{
    if (a->type == SL_NULL || b->type == SL_NULL)
        return (a->type != SL_NULL) - (b->type != SL_NULL);
    switch (a->type) {
    case SL_I64:
        return (a->u.i64 > b->u.i64) - (a->u.i64 < b->u.i64);
    case SL_F64:
        return (a->u.f64 > b->u.f64) - (a->u.f64 < b->u.f64);
    case SL_BOOL:
        return (int)a->u.b - (int)b->u.b;
    case SL_STR:
    case SL_BYTES: {
        size_t n = a->u.s.len < b->u.s.len ? a->u.s.len : b->u.s.len;
        int c = n ? memcmp(a->u.s.ptr, b->u.s.ptr, n) : 0;
        if (c)
            return c;
        return (a->u.s.len > b->u.s.len) - (a->u.s.len < b->u.s.len);
    }
    case SL_NULL:
        break;
    }
    return 0;
}

/* Java's Double.toString: the shortest digits that read back to the same double; plain
 * decimal with at least one fraction digit when 1e-3 <= |d| < 1e7 ("20.0", "0.001"), else
 * computerized scientific notation ("1.0E7", "1.5E-5"); NaN and Infinity as Java spells them. */
static int format_f64(double d, char *buf, size_t cap)
{
    if (isnan(d))
        return snprintf(buf, cap, "NaN");
    if (isinf(d))
        return snprintf(buf, cap, d < 0 ? "-Infinity" : "Infinity");
    if (d == 0)
        return snprintf(buf, cap, signbit(d) ? "-0.0" : "0.0");
    char tmp[40];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    /* tmp is [-]D[.DDD]e[+-]XX: collect the digits and the exponent */
    char digits[24];
    int nd = 0;
    const char *p = tmp;
    bool neg = *p == '-';
    if (neg)
        p++;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    char out[64];
    int o = 0;
    if (neg)
        out[o++] = '-';
    double a = fabs(d);
    if (a >= 1e-3 && a < 1e7) {
        if (exp >= 0) {
            for (int i = 0; i <= exp; i++)
                out[o++] = i < nd ? digits[i] : '0';
            out[o++] = '.';
            if (nd > exp + 1)
                for (int i = exp + 1; i < nd; i++)
                    out[o++] = digits[i];
            else
                out[o++] = '0';
        } else {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -exp - 1; i++)
                out[o++] = '0';
            for (int i = 0; i < nd; i++)
                out[o++] = digits[i];
        }
        out[o] = 0;
    } else {
        out[o++] = digits[0];
        out[o++] = '.';
        if (nd > 1)
            for (int i = 1; i < nd; i++)
                out[o++] = digits[i];
        else
            out[o++] = '0';
        snprintf(out + o, sizeof out - (size_t)o, "E%d", exp);
    }
    return snprintf(buf, cap, "%s", out);
}

static size_t put(char *buf, size_t cap, size_t at, const char *s, size_t n)
{
    if (at < cap) {
        size_t room = cap - at - 1;
        memcpy(buf + at, s, n < room ? n : room);
    }
    return at + n;
}

size_t sl_row_format(const sl_value *row, size_t nfields, char *buf, size_t cap)
{
    size_t at = 0;
    char tmp[48];
    if (nfields != 1)
        at = put(buf, cap, at, "(", 1);
    for (size_t i = 0; i < nfields; i++) {
        const sl_value *v = &row[i];
        if (i)
            at = put(buf, cap, at, ",", 1);
        int n = 0;
        switch (v->type) {
        case SL_NULL:
            at = put(buf, cap, at, "null", 4);
            break;
        case SL_I64:
            n = snprintf(tmp, sizeof tmp, "%" PRId64, v->u.i64);
            at = put(buf, cap, at, tmp, (size_t)n);
            break;
        case SL_F64:
            n = format_f64(v->u.f64, tmp, sizeof tmp);
            at = put(buf, cap, at, tmp, (size_t)n);
            break;
        case SL_BOOL:
            at = put(buf, cap, at, v->u.b ? "true" : "false", v->u.b ? 4 : 5);
            break;
        case SL_STR:
            at = put(buf, cap, at, v->u.s.ptr, v->u.s.len);
            break;
        case SL_BYTES:
            at = put(buf, cap, at, "0x", 2);
            for (size_t k = 0; k < v->u.s.len; k++) {
                n = snprintf(tmp, sizeof tmp, "%02x", (unsigned char)v->u.s.ptr[k]);
                at = put(buf, cap, at, tmp, (size_t)n);
            }
            break;
        }
    }
    if (nfields != 1)
        at = put(buf, cap, at, ")", 1);
    if (cap)
        buf[at < cap ? at : cap - 1] = 0;
    return at;
}

sl_value sl_str(const char *s)
{
    return (sl_value){.type = SL_STR, .u.s = {.ptr = s, .len = strlen(s)}};
}

sl_value sl_strn(const char *s, size_t len)
{
    return (sl_value){.type = SL_STR, .u.s = {.ptr = s, .len = len}};
}

sl_value sl_bytes(const void *p, size_t len)
{
    return (sl_value){.type = SL_BYTES, .u.s = {.ptr = p, .len = len}};
}

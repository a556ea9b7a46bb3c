/*
 * test_row.c - schema parsing, row serialization round trips and Flink-style formatting; the
 * cache-line allocations the runtime gives the rows and structures a thread writes per record.
 */
#include "core/alloc.h"
#include "core/hash.h"
#include "core/row.h"
#include "test.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

TEST(schema_parse_named_and_unnamed)
{
    char err[256];
    sl__schema *s = sl__schema_parse("city:str, value:long", err, sizeof err);
    CHECK(s);
    CHECK_EQ_INT(s->n, 2);
    CHECK_EQ_STR(s->text, "city:str,value:i64");
    CHECK_EQ_INT(sl__schema_field(s, "value"), 1);
    CHECK_EQ_INT(sl__schema_field(s, "f0"), 0);
    CHECK_EQ_INT(sl__schema_field(s, "1"), 1);
    CHECK_EQ_INT(sl__schema_field(s, "f2"), -1);
    sl__schema_destroy(s);
    s = sl__schema_parse("str,i64", err, sizeof err);
    CHECK_EQ_STR(s->text, "f0:str,f1:i64");
    sl__schema_destroy(s);
}

TEST(schema_parse_errors)
{
    char err[256];
    CHECK(!sl__schema_parse("a:str,b:integer", err, sizeof err));
    CHECK_CONTAINS(err, "unknown type \"integer\"");
    CHECK_CONTAINS(err, "accepted: i64, f64, bool, str, bytes");
    CHECK(!sl__schema_parse("a:str,a:i64", err, sizeof err));
    CHECK_CONTAINS(err, "appears twice");
    CHECK(!sl__schema_parse("", err, sizeof err));
}

TEST(row_round_trip)
{
    char err[256];
    sl__schema *s = sl__schema_parse("a:str,b:i64,c:f64,d:bool,e:bytes,f:str", err, sizeof err);
    sl_value row[6] = {sl_str("北京"),          SL_I64(-7), SL_F64(2.5), SL_BOOL(true),
                       sl_bytes("\x00\x01", 2), SL_NULLV};
    size_t n = sl__row_size(s, row);
    uint8_t buf[128];
    CHECK_EQ_INT(sl__row_write(s, row, buf) - buf, (long long)n);
    sl_value out[6];
    CHECK(sl__row_read(s, buf, buf + n, out) == buf + n);
    CHECK_EQ_INT(out[0].u.s.len, 6);
    CHECK(!memcmp(out[0].u.s.ptr, "北京", 6));
    CHECK_EQ_INT(out[1].u.i64, -7);
    CHECK(out[2].u.f64 == 2.5);
    CHECK(out[3].u.b);
    CHECK_EQ_INT(out[4].u.s.len, 2);
    CHECK_EQ_INT(out[5].type, SL_NULL);
    /* every truncation is detected */
    for (size_t cut = 0; cut < n; cut++)
        CHECK(sl__row_read(s, buf, buf + cut, out) == NULL);
    sl__schema_destroy(s);
}

TEST(format_like_flink)
{
    char buf[160];
    sl_value r[2] = {sl_str("北京"), SL_I64(6)};
    sl_row_format(r, 2, buf, sizeof buf);
    CHECK_EQ_STR(buf, "(北京,6)");
    sl_value one = sl_str("hello");
    sl_row_format(&one, 1, buf, sizeof buf);
    CHECK_EQ_STR(buf, "hello");
    sl_value f[3] = {SL_F64(1.0), SL_F64(0.1), SL_NULLV};
    sl_row_format(f, 3, buf, sizeof buf);
    CHECK_EQ_STR(buf, "(1.0,0.1,null)");
    sl_value j[8] = {SL_F64(20.0),   SL_F64(-4.0),       SL_F64(1e7),  SL_F64(0.001),
                     SL_F64(1.5e-5), SL_F64(123456.789), SL_F64(-0.0), SL_F64(1.0 / 3)};
    sl_row_format(j, 8, buf, sizeof buf);
    CHECK_EQ_STR(buf, "(20.0,-4.0,1.0E7,0.001,1.5E-5,123456.789,-0.0,0.3333333333333333)");
    /* truncation keeps the snprintf contract */
    size_t need = sl_row_format(r, 2, buf, 4);
    CHECK_EQ_INT(need, 10);
    CHECK_EQ_STR(buf, "(\xe5\x8c");
}

/* ---- the shape fast paths (row.h): the same bytes as the format's definition --------- */

/* The wire format written straight from its definition in row.h, to compare against. */
static size_t ref_write(const sl_value *row, int n, uint8_t *out)
{
    size_t nb = ((size_t)n + 7) / 8, at = nb;
    memset(out, 0, nb);
    for (int i = 0; i < n; i++) {
        const sl_value *v = &row[i];
        if (v->type == SL_NULL) {
            out[i / 8] |= (uint8_t)(1u << (i % 8));
        } else if (v->type == SL_I64 || v->type == SL_F64) {
            uint64_t x;
            memcpy(&x, &v->u.i64, 8);
            for (int b = 0; b < 8; b++)
                out[at++] = (uint8_t)(x >> (8 * b));
        } else if (v->type == SL_BOOL) {
            out[at++] = v->u.b;
        } else {
            uint64_t len = v->u.s.len;
            do {
                out[at++] = (uint8_t)((len & 0x7f) | (len >= 0x80 ? 0x80 : 0));
                len >>= 7;
            } while (len);
            memcpy(out + at, v->u.s.ptr, v->u.s.len);
            at += v->u.s.len;
        }
    }
    return at;
}

static const sl_type all_types[] = {SL_I64, SL_F64, SL_BOOL, SL_STR, SL_BYTES};
static char long_text[301]; /* bytes samples start at long_text + 1 */

/* A value of type t; variant picks among a few (lengths 0, 5, 130 and 300 for str/bytes). */
static sl_value sample(sl_type t, int variant)
{
    static const size_t lens[] = {0, 5, 130, 300};
    switch (t) {
    case SL_I64:
        return SL_I64(variant ? -((int64_t)1 << 40) - variant : 0);
    case SL_F64:
        return SL_F64(variant * 1.25);
    case SL_BOOL:
        return SL_BOOL(variant & 1);
    case SL_STR:
        return sl_strn(long_text, lens[variant & 3]);
    case SL_BYTES:
        return sl_bytes(long_text + 1, lens[(variant + 1) & 3]);
    case SL_NULL:
        break;
    }
    return SL_NULLV;
}

static bool same_value(const sl_value *a, const sl_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case SL_NULL:
        return true;
    case SL_I64:
    case SL_F64:
        return a->u.i64 == b->u.i64;
    case SL_BOOL:
        return a->u.b == b->u.b;
    case SL_STR:
    case SL_BYTES:
        return a->u.s.len == b->u.s.len && !memcmp(a->u.s.ptr, b->u.s.ptr, a->u.s.len);
    }
    return false;
}

/* Writes row with s, checks the bytes against ref_write, reads them back from a buffer of
 * exactly that size (so a sanitizer build sees any read past the row) and checks that every
 * truncation is detected. */
static void check_row_codec(const sl__schema *s, const sl_value *row)
{
    uint8_t want[700], got[700];
    size_t n = ref_write(row, s->n, want);
    CHECK_EQ_INT(sl__row_size(s, row), n);
    CHECK_EQ_INT(sl__row_write(s, row, got) - got, n);
    CHECK(!memcmp(got, want, n));
    uint8_t *exact = malloc(n);
    memcpy(exact, want, n);
    sl_value out[2];
    CHECK(sl__row_read(s, exact, exact + n, out) == exact + n);
    for (int i = 0; i < s->n; i++)
        CHECK(same_value(&out[i], &row[i]));
    free(exact);
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *part = malloc(cut ? cut : 1);
        memcpy(part, want, cut);
        CHECK(sl__row_read(s, part, part + cut, out) == NULL);
        free(part);
    }
}

TEST(row_shapes_match_the_format)
{
    for (size_t i = 0; i < sizeof long_text; i++)
        long_text[i] = (char)('a' + i % 26);
    char err[256], text[64];
    for (int t0 = 0; t0 < 5; t0++) {
        snprintf(text, sizeof text, "a:%s", sl__type_name(all_types[t0]));
        sl__schema *s = sl__schema_parse(text, err, sizeof err);
        CHECK(s && s->shape);
        for (int v = 0; v < 4; v++) {
            sl_value row[1] = {sample(all_types[t0], v)};
            check_row_codec(s, row);
        }
        sl_value null_row[1] = {SL_NULLV};
        check_row_codec(s, null_row);
        sl__schema_destroy(s);
        for (int t1 = 0; t1 < 5; t1++) {
            snprintf(text, sizeof text, "a:%s,b:%s", sl__type_name(all_types[t0]),
                     sl__type_name(all_types[t1]));
            s = sl__schema_parse(text, err, sizeof err);
            CHECK(s && s->shape);
            for (int v = 0; v < 4; v++) {
                for (int nulls = 0; nulls < 4; nulls++) { /* none, first, second, both */
                    sl_value row[2] = {sample(all_types[t0], v), sample(all_types[t1], 3 - v)};
                    if (nulls & 1)
                        row[0] = SL_NULLV;
                    if (nulls & 2)
                        row[1] = SL_NULLV;
                    check_row_codec(s, row);
                }
            }
            sl__schema_destroy(s);
        }
    }
    /* three fields take the general loops */
    sl__schema *s = sl__schema_parse("a:str,b:i64,c:bool", err, sizeof err);
    CHECK(s && !s->shape);
    sl__schema_destroy(s);
}

/* Reads bytes (an exact-size copy) as a row of schema text; returns whether it parsed to
 * the end. */
static bool reads(const char *text, const void *bytes, size_t n)
{
    char err[256];
    sl__schema *s = sl__schema_parse(text, err, sizeof err);
    uint8_t *p = malloc(n ? n : 1);
    memcpy(p, bytes, n);
    sl_value out[2];
    bool ok = sl__row_read(s, p, p + n, out) == p + n;
    free(p);
    sl__schema_destroy(s);
    return ok;
}

TEST(row_read_rejects_malformed_shapes)
{
    CHECK(reads("a:bool", "\x00\x01", 2));
    CHECK(!reads("a:bool", "\x00\x02", 2)); /* a bool is 0 or 1 */
    CHECK(!reads("a:i64,b:bool", "\x00\x01\x02\x03\x04\x05\x06\x07\x08\xff", 10));
    CHECK(reads("a:str",
                "\x00\x03"
                "abc",
                5));
    CHECK(!reads("a:str",
                 "\x00\x04"
                 "abc",
                 5)); /* length past the end */
    CHECK(!reads("a:str,b:i64",
                 "\x00\x83"
                 "abc",
                 5));
    /* a length of more than 64 bits of varint */
    CHECK(!reads("a:bytes", "\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12));
    /* a varint running off the end */
    CHECK(!reads("a:str,b:str", "\x00\x00\x80", 3));
    /* a length that would wrap the pointer */
    CHECK(!reads("a:str", "\x00\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10));
    /* nulls and the bits past the last field (ignored) go through the general loop */
    CHECK(reads("a:str,b:i64", "\x01\x01\x02\x03\x04\x05\x06\x07\x08", 9));
    CHECK(reads("a:str,b:i64", "\x03", 1));
    CHECK(reads("a:str,b:i64", "\x04\x00\x01\x02\x03\x04\x05\x06\x07\x08", 10));
    CHECK(!reads("a:str,b:i64", "\x02", 1));
    CHECK(!reads("a:str,b:i64", "", 0));
    CHECK(!reads("a:i64", "", 0));
}

TEST(row_check_two_fields)
{
    char err[256];
    sl__schema *s = sl__schema_parse("a:str,b:i64", err, sizeof err);
    sl_value ok[2] = {sl_str("x"), SL_I64(1)}, nulls[2] = {SL_NULLV, SL_NULLV};
    sl_value bad0[2] = {SL_I64(1), SL_I64(1)}, bad1[2] = {sl_str("x"), SL_F64(1)};
    sl_value bad_both[2] = {SL_BOOL(true), sl_str("x")};
    CHECK_EQ_INT(sl__row_check(s, ok), -1);
    CHECK_EQ_INT(sl__row_check(s, nulls), -1);
    CHECK_EQ_INT(sl__row_check(s, bad0), 0);
    CHECK_EQ_INT(sl__row_check(s, bad1), 1);
    CHECK_EQ_INT(sl__row_check(s, bad_both), 0);
    sl__schema_destroy(s);
}

TEST(copy_bytes_every_short_length)
{
    uint8_t src[64], dst[80];
    for (int i = 0; i < 64; i++)
        src[i] = (uint8_t)(i * 7 + 1);
    for (size_t n = 0; n <= 40; n++) {
        memset(dst, 0xee, sizeof dst);
        sl__copy_bytes(dst + 1, src + 3, n);
        CHECK_EQ_INT(dst[0], 0xee);
        CHECK(!memcmp(dst + 1, src + 3, n));
        CHECK_EQ_INT(dst[1 + n], 0xee);
    }
    uint64_t v = 1;
    const uint8_t one[1] = {5};
    CHECK(sl__varint_read(one, one, &v) == NULL); /* empty input */
    CHECK(sl__varint_read(one, one + 1, &v) == one + 1);
    CHECK_EQ_INT(v, 5);
}

/* sl__key_row_str writes the row the schema "k:str" gives a non-null string, whatever its
 * length, and reads nothing outside the string (each string sits at the end of its own
 * exact-size allocation, so AddressSanitizer sees any read past it). */
TEST(key_row_str_is_the_row_of_a_string_key)
{
    char err[128];
    sl__schema *s = sl__schema_parse("k:str", err, sizeof err);
    CHECK(s);
    for (size_t n = 0; n <= 140; n++) {
        char *str = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++)
            str[i] = (char)('a' + (i * 5 + n) % 26);
        sl_value v = sl_strn(str, n);
        size_t want = sl__row_size(s, &v);
        uint8_t ref[160], got[160 + SL__KEY_ROW_SLACK];
        sl__row_write(s, &v, ref);
        memset(got, 0xee, sizeof got);
        CHECK_EQ_INT(sl__key_row_str(got, str, n), want);
        CHECK(!memcmp(got, ref, want));
        CHECK_EQ_INT(sl__hash(got, want), sl__hash(ref, want));
        free(str);
    }
    sl__schema_destroy(s);
}

/* sl__xcalloc_lines: zeroed, on a cache line, and the rest of its last line is its own (the
 * whole rounded size is writable, which AddressSanitizer checks in make check). */
TEST(line_allocations_own_whole_lines)
{
    static const size_t shapes[][2] = {{1, 1}, {3, sizeof(sl_value)}, {1, 65}, {0, 8}, {5, 64}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        size_t count = shapes[i][0], size = shapes[i][1];
        size_t n = (count ? count : 1) * size;
        size_t lines = (n + SL_CACHE_LINE - 1) / SL_CACHE_LINE * SL_CACHE_LINE;
        uint8_t *p = sl__xcalloc_lines(count, size);
        CHECK_EQ_INT((uintptr_t)p % SL_CACHE_LINE, 0);
        for (size_t j = 0; j < n; j++)
            CHECK_EQ_INT(p[j], 0);
        memset(p, 0xab, lines);
        sl__free(p);
    }
}

int main(int argc, char **argv)
{
    return RUN_TESTS(argc, argv, schema_parse_named_and_unnamed, schema_parse_errors,
                     row_round_trip, format_like_flink, row_shapes_match_the_format,
                     row_read_rejects_malformed_shapes, row_check_two_fields,
                     copy_bytes_every_short_length, key_row_str_is_the_row_of_a_string_key,
                     line_allocations_own_whole_lines);
}

/*
 * test_row.c - schema parsing, row serialization round trips and Flink-style formatting.
 */
#include "core/row.h"
#include "test.h"

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

int main(int argc, char **argv)
{
    return RUN_TESTS(argc, argv, schema_parse_named_and_unnamed, schema_parse_errors,
                     row_round_trip, format_like_flink);
}

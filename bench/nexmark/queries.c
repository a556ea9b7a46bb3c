/*
 * queries.c - Nexmark queries q0-q3 as Sluice dataflows on the public API, each the plan
 * Flink runs for the reference's SQL: the views person / auction / bid are a filter on the
 * event kind, projections are maps, and q3's regular inner join keeps both inputs in keyed
 * state.
 *
 *   q0  SELECT auction, bidder, price, dateTime, extra FROM bid
 *   q1  SELECT auction, bidder, 0.908 * price, dateTime, extra FROM bid
 *   q2  SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0
 *   q3  SELECT P.name, P.city, P.state, A.id FROM auction A JOIN person P ON A.seller = P.id
 *       WHERE A.category = 10 AND P.state IN ('OR', 'ID', 'CA')
 *
 * q1's price is a double where Flink computes DECIMAL(23, 3); 0.908 * price is exact to the
 * cent for every generated price (below 2^53 / 1000).
 */
#include "nexmark.h"

#include <stdlib.h>
#include <string.h>

/* ---- q0, q1, q2: a filter and a projection, chained to the source ------------------------- */

static int is_bid(sl_ctx *ctx, const sl_value *in)
{
    (void)ctx;
    return in[NX_KIND].u.i64 == NEXMARK_BID;
}

static int q0_project(sl_ctx *ctx, const sl_value *in, sl_value *out)
{
    (void)ctx;
    out[0] = in[NX_AUCTION];
    out[1] = in[NX_BIDDER];
    out[2] = in[NX_PRICE];
    out[3] = in[NX_DATE_TIME];
    out[4] = in[NX_EXTRA];
    return 0;
}

static int q1_convert(sl_ctx *ctx, const sl_value *in, sl_value *out)
{
    (void)ctx;
    out[0] = in[NX_AUCTION];
    out[1] = in[NX_BIDDER];
    out[2] = SL_F64(0.908 * (double)in[NX_PRICE].u.i64); /* dollars to euros */
    out[3] = in[NX_DATE_TIME];
    out[4] = in[NX_EXTRA];
    return 0;
}

static int q2_select(sl_ctx *ctx, const sl_value *in)
{
    (void)ctx;
    return in[NX_KIND].u.i64 == NEXMARK_BID && in[NX_AUCTION].u.i64 % 123 == 0;
}

static int q2_project(sl_ctx *ctx, const sl_value *in, sl_value *out)
{
    (void)ctx;
    out[0] = in[NX_AUCTION];
    out[1] = in[NX_PRICE];
    return 0;
}

static int q2_project_timed(sl_ctx *ctx, const sl_value *in, sl_value *out)
{
    (void)ctx;
    out[0] = in[NX_AUCTION];
    out[1] = in[NX_PRICE];
    out[2] = in[NX_DATE_TIME];
    return 0;
}

/* ---- q3: an incremental join ----------------------------------------------------------------
 *
 * Both inputs are filtered and projected to one join row before the exchange (Flink pushes
 * the predicates and projections below the join in the same way), then keyed by the join
 * key: the auction's seller or the person's id. Per key the operator keeps the person (a
 * value: the person id is unique, so the join key holds its unique key) and the auctions
 * (a map by auction id), as Flink's streaming join keeps its two sides. Each arrival joins
 * with what the other side holds, so every matching pair is emitted exactly once, whichever
 * of the two came first. */

#define Q3_JOIN_SCHEMA "kind:i64,key:i64,id:i64,name:str,city:str,state:str"
enum { J_KIND, J_KEY, J_ID, J_NAME, J_CITY, J_STATE, J_TIME };
/* nexmark_query_timed's join rows also carry the event's date_time, and so do its results */
#define Q3_JOIN_TIMED_SCHEMA Q3_JOIN_SCHEMA ",date_time:i64"

static bool is_state(const sl_value *v, const char *s)
{
    return v->u.s.len == 2 && v->u.s.ptr[0] == s[0] && v->u.s.ptr[1] == s[1];
}

static int q3_select(sl_ctx *ctx, const sl_value *in)
{
    (void)ctx;
    switch (in[NX_KIND].u.i64) {
    case NEXMARK_AUCTION:
        return in[NX_CATEGORY].u.i64 == 10;
    case NEXMARK_PERSON: {
        const sl_value *st = &in[NX_STATE];
        return is_state(st, "OR") || is_state(st, "ID") || is_state(st, "CA");
    }
    default:
        return 0;
    }
}

static int q3_join_row(sl_ctx *ctx, const sl_value *in, sl_value *out)
{
    (void)ctx;
    int64_t kind = in[NX_KIND].u.i64;
    out[J_KIND] = SL_I64(kind);
    if (kind == NEXMARK_AUCTION) {
        out[J_KEY] = in[NX_SELLER];
        out[J_ID] = in[NX_AUCTION_ID];
    } else {
        out[J_KEY] = in[NX_PERSON_ID];
        out[J_ID] = in[NX_PERSON_ID];
        out[J_NAME] = in[NX_NAME];
        out[J_CITY] = in[NX_CITY];
        out[J_STATE] = in[NX_STATE];
    }
    return 0;
}

static int q3_join_row_timed(sl_ctx *ctx, const sl_value *in, sl_value *out)
{
    out[J_TIME] = in[NX_DATE_TIME];
    return q3_join_row(ctx, in, out);
}

typedef struct q3_local {
    sl_state *person;   /* (name, city, state) of the person with this id */
    sl_state *auctions; /* auction id -> seller, of this seller's auctions */
    bool timed;         /* nexmark_query_timed: results end with the arrival's date_time */
} q3_local;

static int q3_open(sl_ctx *ctx)
{
    static const sl_state_desc person = {
        .name = "person", .kind = SL_STATE_VALUE, .schema = "name:str,city:str,state:str"};
    static const sl_state_desc auctions = {
        .name = "auctions", .kind = SL_STATE_MAP, .key_schema = "id:i64", .schema = "seller:i64"};
    q3_local *l = calloc(1, sizeof *l);
    if (!l)
        return sl_fail(ctx, "out of memory");
    sl_ctx_set_local(ctx, l);
    l->timed = sl_ctx_user(ctx) != NULL;
    l->person = sl_keyed_state(ctx, &person);
    l->auctions = sl_keyed_state(ctx, &auctions);
    return l->person && l->auctions ? 0 : SL_ESTATE;
}

static int q3_close(sl_ctx *ctx)
{
    free(sl_ctx_local(ctx));
    sl_ctx_set_local(ctx, NULL);
    return 0;
}

static int q3_process(sl_ctx *ctx, const sl_value *in)
{
    q3_local *l = sl_ctx_local(ctx);
    if (in[J_KIND].u.i64 == NEXMARK_AUCTION) {
        int rc = sl_map_put(l->auctions, &in[J_ID], &in[J_KEY]);
        if (rc < 0)
            return rc;
        sl_value p[3];
        rc = sl_value_get(l->person, p);
        if (rc <= 0)
            return rc;
        sl_value out[5] = {p[0], p[1], p[2], in[J_ID], l->timed ? in[J_TIME] : SL_NULLV};
        return sl_emit(ctx, out);
    }
    int rc = sl_value_update(l->person, &in[J_NAME]);
    if (rc < 0)
        return rc;
    sl_iter *it;
    rc = sl_map_iter(l->auctions, &it);
    if (rc <= 0)
        return rc;
    sl_value id, seller;
    while ((rc = sl_iter_next_kv(it, &id, &seller)) > 0) {
        sl_value out[5] = {in[J_NAME], in[J_CITY], in[J_STATE], id,
                           l->timed ? in[J_TIME] : SL_NULLV};
        if ((rc = sl_emit(ctx, out)) < 0)
            break;
    }
    sl_iter_close(it);
    return rc < 0 ? rc : 0;
}

/* ---- the table of queries -------------------------------------------------------------------- */

static const struct {
    const char *name;
    const char *schema;
    const char *timed_schema; /* nexmark_query_timed's */
    int time_field;           /* date_time in timed_schema */
} queries[] = {
    {"q0", "auction:i64,bidder:i64,price:i64,date_time:i64,extra:str",
     "auction:i64,bidder:i64,price:i64,date_time:i64,extra:str", 3},
    {"q1", "auction:i64,bidder:i64,price:f64,date_time:i64,extra:str",
     "auction:i64,bidder:i64,price:f64,date_time:i64,extra:str", 3},
    {"q2", "auction:i64,price:i64", "auction:i64,price:i64,date_time:i64", 2},
    {"q3", "name:str,city:str,state:str,id:i64", "name:str,city:str,state:str,id:i64,date_time:i64",
     4},
};

static int query_index(const char *name)
{
    for (size_t i = 0; name && i < sizeof queries / sizeof queries[0]; i++)
        if (!strcmp(queries[i].name, name))
            return (int)i;
    return -1;
}

const char *nexmark_query_schema(const char *name)
{
    int i = query_index(name);
    return i < 0 ? NULL : queries[i].schema;
}

const char *nexmark_query_timed_schema(const char *name)
{
    int i = query_index(name);
    return i < 0 ? NULL : queries[i].timed_schema;
}

int nexmark_query_time_field(const char *name)
{
    if (name && !strcmp(name, "gen"))
        return NX_DATE_TIME;
    int i = query_index(name);
    return i < 0 ? -1 : queries[i].time_field;
}

static sl_stream *build_query(sl_env *env, sl_stream *events, const char *name, bool timed)
{
    const char *schema = timed ? nexmark_query_timed_schema(name) : nexmark_query_schema(name);
    if (!schema) {
        sl_env_fail(env, SL_EINVAL, "unknown Nexmark query '%s' (accepted: q0, q1, q2, q3)",
                    name ? name : "(null)");
        return NULL;
    }
    if (!events)
        return NULL;
    if (!strcmp(name, "q0") || !strcmp(name, "q1")) {
        sl_filter_fn bids = {.filter = is_bid};
        sl_map_fn project = {.map = name[1] == '0' ? q0_project : q1_convert};
        sl_stream *s = sl_set_name(sl_filter(events, &bids), "bids");
        return sl_set_name(sl_map(s, schema, &project), name);
    }
    if (!strcmp(name, "q2")) {
        sl_filter_fn select = {.filter = q2_select};
        sl_map_fn project = {.map = timed ? q2_project_timed : q2_project};
        sl_stream *s = sl_set_name(sl_filter(events, &select), "bids of every 123rd auction");
        return sl_set_name(sl_map(s, schema, &project), name);
    }
    sl_filter_fn select = {.filter = q3_select};
    sl_map_fn project = {.map = timed ? q3_join_row_timed : q3_join_row};
    /* the user pointer tells q3_process to carry the time (any non-NULL pointer) */
    sl_process_fn join = {
        .open = q3_open, .close = q3_close, .process = q3_process, .user = timed ? env : NULL};
    sl_stream *s =
        sl_set_name(sl_filter(events, &select), "auctions of category 10, persons in OR/ID/CA");
    s = sl_set_name(sl_map(s, timed ? Q3_JOIN_TIMED_SCHEMA : Q3_JOIN_SCHEMA, &project),
                    "join rows");
    s = sl_key_by(s, J_KEY);
    return sl_set_name(sl_process(s, schema, &join), name);
}

sl_stream *nexmark_query(sl_env *env, sl_stream *events, const char *name)
{
    return build_query(env, events, name, false);
}

sl_stream *nexmark_query_timed(sl_env *env, sl_stream *events, const char *name)
{
    return build_query(env, events, name, true);
}

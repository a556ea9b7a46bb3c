/*
 * page_visits - visits per page for each user, with a keyed MapState page -> count. Each
 * visit updates the user's map and prints (user, page, visits of that page, distinct pages
 * the user has seen so far).
 *
 *   build/bin/page_visits [-p N]
 */
#include <sluice.h>

static int visits_open(sl_ctx *ctx)
{
    sl_state_desc d = {
        .name = "visits", .kind = SL_STATE_MAP, .key_schema = "page:str", .schema = "n:i64"};
    sl_state *st = sl_keyed_state(ctx, &d);
    if (!st)
        return SL_ESTATE;
    sl_ctx_set_local(ctx, st);
    return 0;
}

static int visits_process(sl_ctx *ctx, const sl_value *in)
{
    sl_state *visits = sl_ctx_local(ctx);
    const sl_value *page = &in[1];
    sl_value n;
    int found = sl_map_get(visits, page, &n);
    if (found < 0)
        return found;
    sl_value count = SL_I64(found ? n.u.i64 + 1 : 1);
    int rc = sl_map_put(visits, page, &count);
    if (rc < 0)
        return rc;
    int64_t distinct = 0;
    sl_iter *it;
    if ((rc = sl_map_iter(visits, &it)) < 0)
        return rc;
    if (rc > 0) {
        sl_value k, v;
        while (sl_iter_next_kv(it, &k, &v) > 0)
            distinct++;
        sl_iter_close(it);
    }
    sl_value out[4] = {in[0], in[1], count, SL_I64(distinct)};
    return sl_emit(ctx, out);
}

static int job(sl_env *env, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    sl_value visits[] = {
        sl_str("ann"),   sl_str("/home"), sl_str("ann"),   sl_str("/cart"), sl_str("bo"),
        sl_str("/home"), sl_str("ann"),   sl_str("/home"), sl_str("bo"),    sl_str("/help"),
        sl_str("ann"),   sl_str("/pay"),  sl_str("bo"),    sl_str("/home"),
    };
    sl_stream *in = sl_from_rows(env, "user:str,page:str", visits, 7);
    sl_process_fn fn = {.open = visits_open, .process = visits_process};
    sl_print(sl_process(sl_key_by(in, 0), "user:str,page:str,visits:i64,pages:i64", &fn));
    return sl_execute(env, "page_visits");
}

SL_JOB(job)

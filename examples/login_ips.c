/*
 * login_ips - frequent login IPs per user, with a keyed ListState: every login appends its
 * IP to the user's list; when an IP shows up for the third time for that user, the job
 * emits (user, ip, logins from that ip) as a frequent login IP.
 *
 *   build/bin/login_ips [-p N]
 */
#include <sluice.h>

#include <string.h>

static int logins_open(sl_ctx *ctx)
{
    sl_state_desc d = {.name = "loginIps", .kind = SL_STATE_LIST, .schema = "ip:str"};
    sl_state *st = sl_keyed_state(ctx, &d);
    if (!st)
        return SL_ESTATE;
    sl_ctx_set_local(ctx, st);
    return 0;
}

static int logins_process(sl_ctx *ctx, const sl_value *in)
{
    sl_state *ips = sl_ctx_local(ctx);
    const sl_value *ip = &in[1];
    int64_t seen = 1; /* this login */
    sl_iter *it;
    int rc = sl_list_get(ips, &it);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        sl_value e;
        while (sl_iter_next(it, &e) > 0)
            seen += e.u.s.len == ip->u.s.len && !memcmp(e.u.s.ptr, ip->u.s.ptr, e.u.s.len);
        sl_iter_close(it);
    }
    rc = sl_list_add(ips, ip);
    if (rc < 0)
        return rc;
    if (seen == 3) {
        sl_value out[3] = {in[0], in[1], SL_I64(seen)};
        return sl_emit(ctx, out);
    }
    return 0;
}

static int job(sl_env *env, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    sl_value logins[] = {
        sl_str("alice"), sl_str("10.0.0.1"),    sl_str("bob"),   sl_str("192.168.1.7"),
        sl_str("alice"), sl_str("10.0.0.2"),    sl_str("alice"), sl_str("10.0.0.1"),
        sl_str("bob"),   sl_str("192.168.1.7"), sl_str("carol"), sl_str("172.16.0.9"),
        sl_str("alice"), sl_str("10.0.0.1"),    sl_str("bob"),   sl_str("192.168.1.8"),
        sl_str("bob"),   sl_str("192.168.1.7"), sl_str("alice"), sl_str("10.0.0.1"),
    };
    sl_stream *events = sl_from_rows(env, "user:str,ip:str", logins, 10);
    sl_process_fn fn = {.open = logins_open, .process = logins_process};
    sl_stream *frequent = sl_process(sl_key_by(events, 0), "user:str,ip:str,logins:i64", &fn);
    sl_set_name(frequent, "Frequent Login IPs");
    sl_print(frequent);
    return sl_execute(env, "login_ips");
}

SL_JOB(job)

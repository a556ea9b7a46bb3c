/*
 * word_count - counts words of lines read from a socket, like Flink's socketTextStream
 * word count: each line is split on spaces, each word keyed and summed, and every update
 * printed, so sending "hello" twice prints (hello,1) then (hello,2).
 *
 *   nc -lk 9999                             # in one terminal
 *   build/bin/word_count [-p N] localhost 9999   # in another
 */
#include <sluice.h>

#include <stdlib.h>
#include <string.h>

static int split(sl_ctx *ctx, const sl_value *in)
{
    const char *p = in[0].u.s.ptr, *end = p + in[0].u.s.len;
    while (p < end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        const char *we = sp ? sp : end;
        if (we > p) {
            sl_value out[2] = {sl_strn(p, (size_t)(we - p)), SL_I64(1)};
            int rc = sl_emit(ctx, out);
            if (rc < 0)
                return rc;
        }
        p = we + 1;
    }
    return 0;
}

static int job(sl_env *env, int argc, char **argv)
{
    if (argc != 3)
        return sl_env_fail(env, SL_EINVAL, "usage: %s [options] HOST PORT", argv[0]);
    char *end;
    long port = strtol(argv[2], &end, 10);
    if (*end || port < 1 || port > 65535)
        return sl_env_fail(env, SL_EINVAL, "port \"%s\" is not accepted: a number from 1 to 65535",
                           argv[2]);

    sl_stream *lines = sl_socket_text_stream(env, argv[1], (int)port, "\n", 0);
    sl_flat_map_fn fn = {.flat_map = split};
    sl_stream *words = sl_flat_map(lines, "word:str,count:i64", &fn);
    sl_stream *counts = sl_sum(sl_key_by(words, 0), 1);
    sl_print(counts);
    return sl_execute(env, "word_count");
}

SL_JOB(job)

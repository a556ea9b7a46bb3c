/*
 * bench/state_memory.c - resident memory of heap keyed state against the number of keys.
 *
 * A keyed job on the public API, at parallelism 1, heap state backend, no checkpoints:
 *
 *   sequence 0..N-1 -> [map to a string key] -> key_by(key) -> process: ValueState<i64>
 *                                                               update(value) per record
 *
 * Every key comes once, so after k records the state holds k entries of an 8-byte value.
 * The process function reads VmRSS from /proc/self/status before its first record and then
 * every N/STEPS records, on its own thread, and the difference from the first reading is
 * what the state costs (the rest of the job, its buffers and threads, is there from the
 * start). Bytes per entry "above the key bytes themselves" is that difference divided by
 * the keys, less the key's own bytes (8 for an i64 key; the string's length for a string
 * key). The measure goes through the public API, as a user's job sees it, rather than the
 * state backend's internal interface: it counts everything keyed state costs (entries,
 * tables, key groups, allocator overhead), and stays valid while the backend's internals
 * change.
 *
 *   build/bin/bench_state_memory [--keys N] [--key i64|str] [--key-len L] [--steps S]
 *                                [--csv FILE]
 *
 * --key str uses keys "k" + decimal digits zero-padded to L bytes (default 16). Prints one
 * line per reading (keys, VmRSS, bytes per entry so far) and the figure at N keys; --csv
 * appends the readings as tab-separated lines (keys, rss_bytes, key_bytes) for
 * bench/report.sh.
 */
#include "sluice.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_STEPS = 1000 };

static struct {
    int64_t keys;
    int steps;
    int key_len; /* 0: i64 keys */
    int64_t seen;
    int nreadings;
    int64_t at[MAX_STEPS + 1];
    int64_t rss[MAX_STEPS + 1];
} g = {.keys = 10000000, .steps = 20};

/* VmRSS of this process in bytes, or -1. */
static int64_t vm_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    int64_t kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) {
            kb = strtoll(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

static void reading(void)
{
    if (g.nreadings <= MAX_STEPS) {
        g.at[g.nreadings] = g.seen;
        g.rss[g.nreadings] = vm_rss();
        g.nreadings++;
    }
}

static int to_string_key(sl_ctx *ctx, const sl_value *in, sl_value *out)
{
    char *p = sl_ctx_alloc(ctx, (size_t)g.key_len + 1);
    snprintf(p, (size_t)g.key_len + 1, "k%0*" PRId64, g.key_len - 1, in[0].u.i64);
    out[0] = sl_strn(p, (size_t)g.key_len);
    out[1] = in[0];
    return 0;
}

static int keep_open(sl_ctx *ctx)
{
    static const sl_state_desc desc = {.name = "v", .kind = SL_STATE_VALUE, .schema = "v:i64"};
    sl_state *st = sl_keyed_state(ctx, &desc);
    if (!st)
        return SL_ESTATE;
    sl_ctx_set_local(ctx, st);
    reading();
    return 0;
}

static int keep_process(sl_ctx *ctx, const sl_value *in)
{
    int rc = sl_value_update(sl_ctx_local(ctx), &in[g.key_len ? 1 : 0]);
    if (rc < 0)
        return rc;
    g.seen++;
    if (g.seen % (g.keys / g.steps) == 0 || g.seen == g.keys)
        reading();
    return 0;
}

static int discard(sl_ctx *ctx, const sl_value *in)
{
    (void)ctx;
    (void)in;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *key = "i64", *csv_path = NULL;
    int key_len = 16;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--keys"))
            g.keys = strtoll(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--key"))
            key = argv[i + 1];
        else if (!strcmp(argv[i], "--key-len"))
            key_len = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps"))
            g.steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--csv"))
            csv_path = argv[i + 1];
        else
            argc = 0; /* usage */
    }
    if (argc % 2 == 0 || g.keys < 1 || g.steps < 1 || g.steps > MAX_STEPS || g.keys < g.steps ||
        (strcmp(key, "i64") && strcmp(key, "str")) || key_len < 8 || key_len > 64) {
        fprintf(stderr,
                "usage: %s [--keys N] [--key i64|str] [--key-len L] [--steps S] [--csv FILE]\n",
                argv[0]);
        return 2;
    }
    g.key_len = strcmp(key, "str") ? 0 : key_len;
    int key_bytes = g.key_len ? g.key_len : 8;

    char *eargv[] = {"bench_state_memory", "-p", "1", "-D", "state.backend.type=hashmap", NULL};
    char err[512];
    int code;
    sl_env *env = sl_env_create(5, eargv, NULL, NULL, &code, err, sizeof err);
    if (!env) {
        fprintf(stderr, "bench_state_memory: %s\n", err);
        return 1;
    }
    int64_t rss_start = vm_rss();
    sl_stream *s = sl_from_sequence(env, 0, g.keys - 1);
    if (g.key_len) {
        sl_map_fn m = {.map = to_string_key};
        s = sl_map(s, "key:str,value:i64", &m);
    }
    sl_process_fn keep = {.open = keep_open, .process = keep_process};
    s = sl_process(sl_key_by(s, 0), "value:i64", &keep);
    sl_sink_fn sink = {.invoke = discard};
    sl_add_sink(s, "discard", &sink);
    double t0 = now_s();
    int rc = sl_execute(env, "bench_state_memory");
    double wall = now_s() - t0;
    if (rc) {
        fprintf(stderr, "bench_state_memory: %s\n", sl_env_error(env));
        sl_env_destroy(env);
        return 1;
    }
    sl_env_destroy(env);
    if (g.nreadings < 2 || g.rss[0] < 0) {
        fprintf(stderr, "bench_state_memory: no VmRSS readings\n");
        return 1;
    }

    printf("heap keyed state: %" PRId64 " keys (%s keys of %d bytes), ValueState of one i64, "
           "p=1, %.1f s (%.2f M updates/s)\n",
           g.keys, g.key_len ? "str" : "i64", key_bytes, wall, (double)g.keys / wall / 1e6);
    printf("VmRSS at process start %.1f MB, before the first record %.1f MB\n",
           (double)rss_start / 1e6, (double)g.rss[0] / 1e6);
    printf("%12s %12s %14s %22s\n", "keys", "VmRSS MB", "state MB", "bytes/entry above key");
    FILE *csv = csv_path ? fopen(csv_path, "a") : NULL;
    if (csv && ftell(csv) == 0)
        fprintf(csv, "keys\trss_bytes\tkey_bytes\n");
    for (int i = 0; i < g.nreadings; i++) {
        int64_t state = g.rss[i] - g.rss[0];
        printf("%12" PRId64 " %12.1f %14.1f", g.at[i], (double)g.rss[i] / 1e6, (double)state / 1e6);
        if (g.at[i] > 0)
            printf(" %22.1f", (double)state / (double)g.at[i] - key_bytes);
        printf("\n");
        if (csv)
            fprintf(csv, "%" PRId64 "\t%" PRId64 "\t%d\n", g.at[i], g.rss[i], key_bytes);
    }
    if (csv)
        fclose(csv);
    int64_t state = g.rss[g.nreadings - 1] - g.rss[0];
    double per = (double)state / (double)g.keys - key_bytes;
    printf("at %" PRId64 " keys: %.1f bytes per entry above the %d key bytes (target <= 48: %s)\n",
           g.keys, per, key_bytes, per <= 48 ? "met" : "missed");
    return 0;
}

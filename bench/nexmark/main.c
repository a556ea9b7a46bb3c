/*
 * main.c - bench_nexmark: Nexmark q0-q3 on the engine, read against the generator alone in
 * the same run.
 *
 *   build/bin/bench_nexmark [--query q0|q1|q2|q3|gen|all|LIST] [--events N] [-p P]
 *                           [--repeat R] [--seed S] [--no-baselines] [-D key=value]...
 *
 * Each run measures, at parallelism P and over the same N events:
 *   bare loop  P threads calling the generator and filling the event rows, no engine;
 *   gen        the engine job  nexmark source -> counting sink  (the generator-only rate);
 *   qN         the engine job  nexmark source -> query -> counting sink.
 * and prints events/s (wall clock) and events per CPU-second (user + system time of the
 * whole process over the run, all threads: waiting and spinning count against it), and the
 * ratio of each query to the gen job and to the bare loop. Events are counted at the
 * source, as the reference counts them, whatever the query lets through. With --repeat R
 * every figure is the median of R runs. -D options go to the engine's configuration.
 * Sink row counts of gen, q0, q1 and q2 are checked against the bare loop's counts.
 * --no-baselines runs the listed jobs alone (to profile one: perf record ... --query q0
 * --no-baselines).
 */
#include "nexmark.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

enum { MAX_DEFS = 32, MAX_REPEAT = 99 };

typedef struct options {
    const char *queries; /* comma-separated, or "all" */
    int64_t events;
    int par;
    int repeat;
    bool baselines; /* run the bare loop and the gen job (off: for profiling a query) */
    uint64_t seed;
    const char *defs[MAX_DEFS];
    int ndefs;
} options;

typedef struct rate {
    double wall, cpu; /* seconds */
    int64_t rows;
} rate;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- the bare loop ------------------------------------------------------------------------ */

typedef struct bare_thread {
    const nexmark_gen *gen;
    nexmark_range range;
    int64_t bids, q2_rows; /* what q0/q1 and q2 must let through */
    uint64_t checksum;
    pthread_t thread;
} bare_thread;

static void *bare_main(void *arg)
{
    bare_thread *t = arg;
    nexmark_event ev;
    sl_value row[NX_NFIELDS];
    static _Thread_local char buf[NEXMARK_EVENT_BUF];
    int kind = -1;
    for (int64_t k = 0; k < t->range.max_events; k++) {
        nexmark_generate(t->gen, &t->range, k, &ev, buf);
        nexmark_event_row(&ev, row, kind);
        kind = (int)ev.kind;
        /* use the row, so that filling it is not optimised away */
        t->checksum += (uint64_t)row[NX_DATE_TIME].u.i64 + row[NX_EXTRA].u.s.len;
        if (row[NX_KIND].u.i64 == NEXMARK_BID) {
            t->bids++;
            t->q2_rows += row[NX_AUCTION].u.i64 % 123 == 0;
        }
    }
    return NULL;
}

static rate run_bare(const nexmark_gen *gen, const options *o, int64_t *bids, int64_t *q2_rows)
{
    bare_thread *ts = calloc((size_t)o->par, sizeof *ts);
    double t0 = now_s(), c0 = cpu_s();
    for (int i = 0; i < o->par; i++) {
        ts[i].gen = gen;
        ts[i].range = nexmark_split(gen, o->events, i, o->par);
        pthread_create(&ts[i].thread, NULL, bare_main, &ts[i]);
    }
    uint64_t sum = 0;
    *bids = *q2_rows = 0;
    for (int i = 0; i < o->par; i++) {
        pthread_join(ts[i].thread, NULL);
        *bids += ts[i].bids;
        *q2_rows += ts[i].q2_rows;
        sum += ts[i].checksum;
    }
    rate r = {now_s() - t0, cpu_s() - c0, o->events};
    if (sum == 42) /* keeps the checksum live */
        fprintf(stderr, "checksum %" PRIu64 "\n", sum);
    free(ts);
    return r;
}

/* ---- the engine jobs ------------------------------------------------------------------------ */

static _Atomic int64_t sink_rows;

static int count_open(sl_ctx *ctx)
{
    sl_ctx_set_local(ctx, calloc(1, sizeof(int64_t)));
    return sl_ctx_local(ctx) ? 0 : sl_fail(ctx, "out of memory");
}

static int count_invoke(sl_ctx *ctx, const sl_value *in)
{
    (void)in;
    ++*(int64_t *)sl_ctx_local(ctx);
    return 0;
}

static int count_close(sl_ctx *ctx)
{
    int64_t *n = sl_ctx_local(ctx);
    if (n)
        atomic_fetch_add(&sink_rows, *n);
    free(n);
    return 0;
}

/* Runs query (or "gen": no query) over the events; returns 0 and the rate, or 1. */
static int run_job(const nexmark_gen *gen, const options *o, const char *query, rate *out)
{
    char p[16];
    snprintf(p, sizeof p, "%d", o->par);
    char *argv[3 + 2 * MAX_DEFS + 1] = {"bench_nexmark", "-p", p};
    int argc = 3;
    for (int i = 0; i < o->ndefs; i++) {
        argv[argc++] = "-D";
        argv[argc++] = (char *)o->defs[i];
    }
    argv[argc] = NULL;
    char err[512];
    int code;
    sl_env *env = sl_env_create(argc, argv, NULL, NULL, &code, err, sizeof err);
    if (!env) {
        fprintf(stderr, "bench_nexmark: %s\n", err);
        return 1;
    }
    nexmark_source_conf conf = {.gen = gen, .events = o->events};
    sl_stream *s = nexmark_source(env, &conf);
    if (strcmp(query, "gen"))
        s = nexmark_query(env, s, query);
    sl_sink_fn sink = {.open = count_open, .invoke = count_invoke, .close = count_close};
    sl_add_sink(s, "count", &sink);
    atomic_store(&sink_rows, 0);
    double t0 = now_s(), c0 = cpu_s();
    int rc = sl_execute(env, "bench_nexmark");
    *out = (rate){now_s() - t0, cpu_s() - c0, atomic_load(&sink_rows)};
    if (rc)
        fprintf(stderr, "bench_nexmark %s: %s\n", query, sl_env_error(env));
    sl_env_destroy(env);
    return rc ? 1 : 0;
}

/* ---- reporting ------------------------------------------------------------------------------ */

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median run by wall time and by CPU time, taken separately. */
static rate median(rate *runs, int n)
{
    double wall[MAX_REPEAT], cpu[MAX_REPEAT];
    for (int i = 0; i < n; i++) {
        wall[i] = runs[i].wall;
        cpu[i] = runs[i].cpu;
    }
    qsort(wall, (size_t)n, sizeof *wall, by_value);
    qsort(cpu, (size_t)n, sizeof *cpu, by_value);
    return (rate){wall[n / 2], cpu[n / 2], runs[0].rows};
}

static void print_rate(const char *what, const options *o, rate r)
{
    printf("%-10s p=%d: %8.2f M events/s %8.2f M events/CPU-s", what, o->par,
           (double)o->events / r.wall / 1e6, (double)o->events / r.cpu / 1e6);
}

static void print_ratio(const char *to, rate r, rate base)
{
    printf("  %s %.2f (per CPU-s %.2f)", to, base.wall / r.wall, base.cpu / r.cpu);
}

static int usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--query q0|q1|q2|q3|gen|all|LIST] [--events N] [-p P] [--repeat R] "
            "[--seed S] [--no-baselines] [-D key=value]...\n",
            prog);
    return 2;
}

static int parse(int argc, char **argv, options *o)
{
    *o = (options){.queries = "q0", .events = 10000000, .par = 1, .repeat = 1, .baselines = true};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-baselines")) {
            o->baselines = false;
            continue;
        }
        if (!v)
            return usage(argv[0]);
        if (!strcmp(a, "--query"))
            o->queries = v;
        else if (!strcmp(a, "--events"))
            o->events = strtoll(v, NULL, 10);
        else if (!strcmp(a, "-p"))
            o->par = atoi(v);
        else if (!strcmp(a, "--repeat"))
            o->repeat = atoi(v);
        else if (!strcmp(a, "--seed"))
            o->seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "-D") && o->ndefs < MAX_DEFS)
            o->defs[o->ndefs++] = v;
        else
            return usage(argv[0]);
        i++;
    }
    if (o->events <= 0 || o->par < 1 || o->par > 256 || o->repeat < 1 || o->repeat > MAX_REPEAT)
        return usage(argv[0]);
    return 0;
}

int main(int argc, char **argv)
{
    options o;
    if (parse(argc, argv, &o))
        return 2;
    const char *list = strcmp(o.queries, "all") ? o.queries : "q0,q1,q2,q3";
    char names[8][8];
    int nq = 0;
    for (const char *p = list; *p && nq < 8; nq++) {
        size_t n = strcspn(p, ",");
        if (n >= sizeof names[0])
            return usage(argv[0]);
        snprintf(names[nq], sizeof names[0], "%.*s", (int)n, p);
        if (strcmp(names[nq], "gen") && !nexmark_query_schema(names[nq]))
            return usage(argv[0]);
        p += n + (p[n] == ',');
    }

    nexmark_config c;
    nexmark_config_default(&c);
    c.seed = o.seed;
    nexmark_gen *gen = nexmark_gen_create(&c);
    if (!gen) {
        fprintf(stderr, "bench_nexmark: out of memory\n");
        return 1;
    }
    printf("nexmark: %" PRId64 " events (persons:auctions:bids 1:3:46), parallelism %d, "
           "median of %d run%s\n",
           o.events, o.par, o.repeat, o.repeat > 1 ? "s" : "");

    rate runs[MAX_REPEAT], bare = {0}, genr = {0};
    int64_t bids = 0, q2_rows = 0;
    int fails = 0;
    bool ok;
    if (o.baselines) {
        for (int i = 0; i < o.repeat; i++)
            runs[i] = run_bare(gen, &o, &bids, &q2_rows);
        bare = median(runs, o.repeat);
        print_rate("bare loop", &o, bare);
        printf("\n");
        for (int i = 0; i < o.repeat; i++)
            if (run_job(gen, &o, "gen", &runs[i]))
                return 1;
        genr = median(runs, o.repeat);
        print_rate("gen", &o, genr);
        print_ratio("ratio to bare loop", genr, bare);
        ok = genr.rows == o.events;
        printf("  sink rows %" PRId64 " %s\n", genr.rows, ok ? "ok" : "MISMATCH");
        fails += !ok;
    }

    for (int q = 0; q < nq; q++) {
        const char *name = names[q];
        if (o.baselines && !strcmp(name, "gen"))
            continue; /* ran above */
        for (int i = 0; i < o.repeat; i++)
            if (run_job(gen, &o, name, &runs[i]))
                return 1;
        rate r = median(runs, o.repeat);
        print_rate(name, &o, r);
        if (o.baselines) {
            print_ratio("ratio to gen", r, genr);
            print_ratio("to bare loop", r, bare);
        }
        /* what the sink must see: every event, the bids, or q2's selection (q3's join is
         * checked by the unit test, not here) */
        int64_t want = -1;
        if (!strcmp(name, "gen"))
            want = o.events;
        else if (o.baselines && strcmp(name, "q3"))
            want = strcmp(name, "q2") ? bids : q2_rows;
        ok = want < 0 || r.rows == want;
        printf("  sink rows %" PRId64 "%s\n", r.rows, want < 0 ? "" : ok ? " ok" : " MISMATCH");
        fails += !ok;
    }
    nexmark_gen_destroy(gen);
    return fails ? 1 : 0;
}

/*
 * main.c - bench_nexmark: Nexmark q0-q3 on the engine, read against the generator alone in
 * the same run, with and without checkpoints, and their end-to-end latency.
 *
 *   build/bin/bench_nexmark [--query q0|q1|q2|q3|gen|all|LIST] [--events N] [-p P]
 *                           [--repeat R] [--seed S] [--no-baselines] [-D key=value]...
 *                           [--checkpoints off|on|both] [--checkpoint-interval DURATION]
 *                           [--latency] [--rate EVENTS_PER_S] [--load FRACTION]
 *                           [--seconds S] [--csv FILE]
 *
 * Throughput. Each run measures, at parallelism P and over the same N events:
 *   bare loop  P threads calling the generator and filling the event rows, no engine;
 *   gen        the engine job  nexmark source -> counting sink  (the generator-only rate);
 *   qN         the engine job  nexmark source -> query -> counting sink.
 * and prints events/s (wall clock) and events per CPU-second (user + system time of the
 * whole process over the run, all threads: waiting and spinning count against it), and the
 * ratio of each query to the gen job and to the bare loop. Events are counted at the
 * source, as the reference counts them, whatever the query lets through. With --repeat R
 * every figure is the median of R runs; the runs of the different jobs are interleaved
 * (bare, gen, q0, q0 with checkpoints, q1, ...; R times) so that a noisy neighbour hits
 * them alike. -D options go to the engine's configuration. Sink row counts of gen, q0, q1
 * and q2 are checked against the bare loop's counts.
 *
 * Checkpoints. --checkpoints on runs every engine job with a checkpoint every
 * --checkpoint-interval (default 1s: heap state backend, exactly-once, to a fresh
 * directory under /tmp that is removed at exit); both runs each query without and with
 * them, and prints the throughput with checkpoints as a fraction of the one without (as a
 * ratio of the medians, and "paired": the median over repeats of each run with checkpoints
 * against the run without them just before it, which a noisy neighbour disturbs least),
 * and how many checkpoints completed per run (counted by the sink's checkpoint-complete
 * hook).
 *
 * Latency (--latency). For each query: first a max-rate run (the source unthrottled, N/2
 * events), then runs of --seconds S (default 5) at --load (default 0.5) of the rate that
 * run reached, or at --rate when given, without checkpoints and/or with them as
 * --checkpoints says. The
 * source stamps each event with its creation time (CLOCK_MONOTONIC ns: its scheduled time
 * under a rate, so a source that falls behind counts its lateness) in date_time, the
 * queries carry it to their results (nexmark_query_timed) and the sink records
 * now - created in a histogram (log-linear, 1.6 % buckets, hist.h). Prints p50, p99, p99.9
 * and the maximum over every result row; with --repeat R the paced runs are repeated R
 * times, interleaved, and each percentile is the median of the runs' (the maximum, the
 * largest). --rate without --latency throttles the throughput runs instead.
 *
 * --csv FILE appends one tab-separated line per figure (a header first when the file is
 * empty), for bench/report.sh. --no-baselines runs the listed jobs alone (to profile one:
 * perf record ... --query q0 --no-baselines).
 */
#include "../bench_common.h"
#include "hist.h"
#include "nexmark.h"

#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum { MAX_DEFS = 32, MAX_REPEAT = 99, MAX_QUERIES = 8 };
enum { CP_OFF = 1, CP_ON = 2, CP_BOTH = 3 }; /* bit 0: runs without, bit 1: runs with */

typedef struct options {
    const char *queries; /* comma-separated, or "all" */
    int64_t events;
    int par;
    int repeat;
    bool baselines; /* run the bare loop and the gen job (off: for profiling a query) */
    uint64_t seed;
    const char *defs[MAX_DEFS];
    int ndefs;
    int checkpoints;      /* CP_* */
    const char *interval; /* checkpoint interval, a duration */
    bool latency;
    double rate; /* events/s, 0: unthrottled */
    double load; /* latency runs: fraction of the max rate */
    double seconds;
    const char *csv;
} options;

typedef struct result {
    double wall, cpu; /* seconds */
    int64_t events, rows, checkpoints;
} result;

/* One engine run: which job, and how. */
typedef struct job {
    const char *query; /* "gen": no query */
    bool checkpoints;
    bool stamp; /* latency: stamped source, timed query, the sink records latency */
    double rate;
    int64_t events;
} job;

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
    /* counted in locals: the threads' bare_thread structs share cache lines, and writing
     * them per event (around an opaque call) would make the threads fight over them */
    const nexmark_range range = t->range;
    uint64_t checksum = 0;
    int64_t bids = 0, q2_rows = 0;
    for (int64_t k = 0; k < range.max_events; k++) {
        nexmark_generate(t->gen, &range, k, &ev, buf);
        nexmark_event_row(&ev, row, kind);
        kind = (int)ev.kind;
        /* use the row, so that filling it is not optimised away */
        checksum += (uint64_t)row[NX_DATE_TIME].u.i64 + row[NX_EXTRA].u.s.len;
        if (row[NX_KIND].u.i64 == NEXMARK_BID) {
            bids++;
            q2_rows += row[NX_AUCTION].u.i64 % 123 == 0;
        }
    }
    t->checksum = checksum;
    t->bids = bids;
    t->q2_rows = q2_rows;
    return NULL;
}

static result run_bare(const nexmark_gen *gen, const options *o, int64_t *bids, int64_t *q2_rows)
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
    result r = {now_s() - t0, cpu_s() - c0, o->events, o->events, 0};
    if (sum == 42) /* keeps the checksum live */
        fprintf(stderr, "checksum %" PRIu64 "\n", sum);
    free(ts);
    return r;
}

/* ---- the engine jobs ------------------------------------------------------------------------ */

/* What the sinks of the current run add up. */
static struct {
    _Atomic int64_t rows;
    _Atomic int64_t checkpoints; /* highest checkpoint id seen complete */
    int time_field;              /* >= 0: record latency from this field */
    pthread_mutex_t lock;
    hist latency; /* under lock */
} run_sink = {.lock = PTHREAD_MUTEX_INITIALIZER};

typedef struct sink_local {
    int64_t rows;
    int field;
    hist latency;
} sink_local;

static int count_open(sl_ctx *ctx)
{
    sink_local *l = calloc(1, sizeof *l);
    if (!l)
        return sl_fail(ctx, "out of memory");
    l->field = run_sink.time_field;
    sl_ctx_set_local(ctx, l);
    return 0;
}

static int count_invoke(sl_ctx *ctx, const sl_value *in)
{
    sink_local *l = sl_ctx_local(ctx);
    l->rows++;
    if (l->field >= 0)
        hist_add(&l->latency, nexmark_now_ns() - in[l->field].u.i64);
    return 0;
}

static int count_close(sl_ctx *ctx)
{
    sink_local *l = sl_ctx_local(ctx);
    if (l) {
        atomic_fetch_add(&run_sink.rows, l->rows);
        pthread_mutex_lock(&run_sink.lock);
        hist_merge(&run_sink.latency, &l->latency);
        pthread_mutex_unlock(&run_sink.lock);
    }
    free(l);
    sl_ctx_set_local(ctx, NULL);
    return 0;
}

static int count_checkpoint_complete(sl_ctx *ctx, int64_t id)
{
    (void)ctx;
    int64_t seen = atomic_load(&run_sink.checkpoints);
    while (id > seen && !atomic_compare_exchange_weak(&run_sink.checkpoints, &seen, id)) {
    }
    return 0;
}

/* Runs one job; returns 0 and its result, or 1. */
static int run_job(const nexmark_gen *gen, const options *o, const job *j, result *out)
{
    char p[16], interval[64], dir[96];
    snprintf(p, sizeof p, "%d", o->par);
    char *argv[16 + 2 * MAX_DEFS + 1] = {"bench_nexmark", "-p", p};
    int argc = 3;
    if (j->checkpoints) {
        snprintf(interval, sizeof interval, "execution.checkpointing.interval=%s", o->interval);
        snprintf(dir, sizeof dir, "state.checkpoints.dir=%s",
                 bench_checkpoint_dir("sluice-bench-nexmark", "bench_nexmark: mkdtemp"));
        char *cp[] = {"-D", interval,
                      "-D", dir,
                      "-D", "execution.checkpointing.mode=EXACTLY_ONCE",
                      "-D", "state.backend.type=hashmap"};
        for (size_t i = 0; i < sizeof cp / sizeof cp[0]; i++)
            argv[argc++] = cp[i];
    }
    for (int i = 0; i < o->ndefs; i++) { /* after ours: the user's -D win */
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
    nexmark_source_conf conf = {
        .gen = gen, .events = j->events, .rate = j->rate, .stamp = j->stamp};
    sl_stream *s = nexmark_source(env, &conf);
    if (strcmp(j->query, "gen"))
        s = j->stamp ? nexmark_query_timed(env, s, j->query) : nexmark_query(env, s, j->query);
    sl_sink_fn sink = {.open = count_open,
                       .invoke = count_invoke,
                       .close = count_close,
                       .notify_checkpoint_complete = count_checkpoint_complete};
    sl_add_sink(s, "count", &sink);
    atomic_store(&run_sink.rows, 0);
    atomic_store(&run_sink.checkpoints, 0);
    run_sink.time_field = j->stamp ? nexmark_query_time_field(j->query) : -1;
    hist_reset(&run_sink.latency);
    double t0 = now_s(), c0 = cpu_s();
    int rc = sl_execute(env, "bench_nexmark");
    *out = (result){now_s() - t0, cpu_s() - c0, j->events, atomic_load(&run_sink.rows),
                    atomic_load(&run_sink.checkpoints)};
    if (rc)
        fprintf(stderr, "bench_nexmark %s: %s\n", j->query, sl_env_error(env));
    sl_env_destroy(env);
    return rc ? 1 : 0;
}

/* ---- reporting ------------------------------------------------------------------------------ */

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The median run by wall time and by CPU time (and checkpoint count), taken separately. */
static result median(const result *runs, int n)
{
    double wall[MAX_REPEAT], cpu[MAX_REPEAT], cps[MAX_REPEAT];
    for (int i = 0; i < n; i++) {
        wall[i] = runs[i].wall;
        cpu[i] = runs[i].cpu;
        cps[i] = (double)runs[i].checkpoints;
    }
    return (result){median_of(wall, n), median_of(cpu, n), runs[0].events, runs[0].rows,
                    (int64_t)median_of(cps, n)};
}

static FILE *csv;

/* Latency figures of a run, or medians of several: p50, p99, p99.9 (ns), max (ns). */
typedef struct lat_figs {
    int64_t q[4];
    uint64_t samples;
} lat_figs;

static lat_figs figs_of(const hist *h)
{
    return (lat_figs){
        {hist_quantile(h, 0.5), hist_quantile(h, 0.99), hist_quantile(h, 0.999), h->max}, h->count};
}

/* One line of --csv. paired: the median over repeats of (run with checkpoints) / (the run
 * without them next to it), wall and CPU, then the smallest and largest wall ratio; or
 * NULL. */
static void csv_line(const char *section, const char *jobname, const options *o, bool cp,
                     double target, const result *r, const lat_figs *l, const double paired[4])
{
    if (!csv)
        return;
    fprintf(csv,
            "%s\t%s\t%d\t%d\t%.0f\t%" PRId64 "\t%.6f\t%.6f\t%" PRId64 "\t%" PRId64 "\t%" PRId64
            "\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%" PRIu64 "\t%.4f\t%.4f\t%d\t%.4f\t%.4f\n",
            section, jobname, o->par, cp, target, r->events, r->wall, r->cpu, r->rows,
            r->checkpoints, l ? l->q[0] : 0, l ? l->q[1] : 0, l ? l->q[2] : 0, l ? l->q[3] : 0,
            l ? l->samples : 0, paired ? paired[0] : 0, paired ? paired[1] : 0,
            section[0] == 'l' && strcmp(section, "latency") ? 1 : o->repeat, paired ? paired[2] : 0,
            paired ? paired[3] : 0);
    fflush(csv);
}

static void print_rate(const char *what, const options *o, result r)
{
    printf("%-12s p=%d: %8.2f M events/s %8.2f M events/CPU-s", what, o->par,
           (double)r.events / r.wall / 1e6, (double)r.events / r.cpu / 1e6);
}

static void print_ratio(const char *to, result r, result base)
{
    printf("  %s %.2f (per CPU-s %.2f)", to, base.wall / r.wall, base.cpu / r.cpu);
}

static void print_latency(const hist *h)
{
    printf("latency p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms  (%" PRIu64
           " result rows)",
           (double)hist_quantile(h, 0.5) / 1e6, (double)hist_quantile(h, 0.99) / 1e6,
           (double)hist_quantile(h, 0.999) / 1e6, (double)h->max / 1e6, h->count);
}

static int usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--query q0|q1|q2|q3|gen|all|LIST] [--events N] [-p P] [--repeat R] "
            "[--seed S] [--no-baselines] [-D key=value]... [--checkpoints off|on|both] "
            "[--checkpoint-interval DURATION] [--latency] [--rate EVENTS_PER_S] "
            "[--load FRACTION] [--seconds S] [--csv FILE]\n",
            prog);
    return 2;
}

static int parse(int argc, char **argv, options *o)
{
    *o = (options){.queries = "q0",
                   .events = 10000000,
                   .par = 1,
                   .repeat = 1,
                   .baselines = true,
                   .checkpoints = CP_OFF,
                   .interval = "1s",
                   .load = 0.5,
                   .seconds = 5};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-baselines")) {
            o->baselines = false;
            continue;
        }
        if (!strcmp(a, "--latency")) {
            o->latency = true;
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
        else if (!strcmp(a, "--checkpoints"))
            o->checkpoints = !strcmp(v, "off")    ? CP_OFF
                             : !strcmp(v, "on")   ? CP_ON
                             : !strcmp(v, "both") ? CP_BOTH
                                                  : 0;
        else if (!strcmp(a, "--checkpoint-interval"))
            o->interval = v;
        else if (!strcmp(a, "--rate"))
            o->rate = strtod(v, NULL);
        else if (!strcmp(a, "--load"))
            o->load = strtod(v, NULL);
        else if (!strcmp(a, "--seconds"))
            o->seconds = strtod(v, NULL);
        else if (!strcmp(a, "--csv"))
            o->csv = v;
        else
            return usage(argv[0]);
        i++;
    }
    if (o->events <= 0 || o->par < 1 || o->par > 256 || o->repeat < 1 || o->repeat > MAX_REPEAT ||
        !o->checkpoints || o->rate < 0 || o->load <= 0 || o->seconds <= 0)
        return usage(argv[0]);
    return 0;
}

/* The throughput part: every job R times, interleaved. */
static int throughput(const nexmark_gen *gen, const options *o, char names[][8], int nq)
{
    static result bare_runs[MAX_REPEAT], gen_runs[MAX_REPEAT];
    static result runs[MAX_QUERIES][2][MAX_REPEAT];
    int64_t bids = 0, q2_rows = 0;
    double rate = o->latency ? 0 : o->rate;
    for (int i = 0; i < o->repeat; i++) {
        if (o->baselines) {
            bare_runs[i] = run_bare(gen, o, &bids, &q2_rows);
            job j = {.query = "gen",
                     .checkpoints = !(o->checkpoints & CP_OFF),
                     .rate = rate,
                     .events = o->events};
            if (run_job(gen, o, &j, &gen_runs[i]))
                return -1;
        }
        for (int q = 0; q < nq; q++) {
            if (o->baselines && !strcmp(names[q], "gen"))
                continue; /* ran above */
            for (int cp = 0; cp < 2; cp++) {
                if (!(o->checkpoints & (1 << cp)))
                    continue;
                job j = {.query = names[q], .checkpoints = cp, .rate = rate, .events = o->events};
                if (run_job(gen, o, &j, &runs[q][cp][i]))
                    return -1;
            }
        }
    }

    int fails = 0;
    bool ok;
    result bare = {0}, genr = {0};
    if (o->baselines) {
        bare = median(bare_runs, o->repeat);
        print_rate("bare loop", o, bare);
        printf("\n");
        csv_line("throughput", "bare", o, false, 0, &bare, NULL, NULL);
        genr = median(gen_runs, o->repeat);
        print_rate("gen", o, genr);
        print_ratio("ratio to bare loop", genr, bare);
        ok = rate > 0 || genr.rows == o->events;
        printf("  sink rows %" PRId64 " %s\n", genr.rows, ok ? "ok" : "MISMATCH");
        csv_line("throughput", "gen", o, !(o->checkpoints & CP_OFF), 0, &genr, NULL, NULL);
        fails += !ok;
    }
    for (int q = 0; q < nq; q++) {
        const char *name = names[q];
        if (o->baselines && !strcmp(name, "gen"))
            continue;
        result without = {0};
        for (int cp = 0; cp < 2; cp++) {
            if (!(o->checkpoints & (1 << cp)))
                continue;
            result r = median(runs[q][cp], o->repeat);
            char what[96];
            snprintf(what, sizeof what, "%s%s", name, cp ? " +ckpt" : "");
            print_rate(what, o, r);
            if (o->baselines) {
                print_ratio("ratio to gen", r, genr);
                print_ratio("to bare loop", r, bare);
            }
            double paired[4] = {0, 0, 0, 0}; /* median wall, median CPU, min and max wall */
            if (cp && (o->checkpoints & CP_OFF)) {
                /* each run with checkpoints against the run without them just before it:
                 * neighbours in time see the same load */
                double wr[MAX_REPEAT], cr[MAX_REPEAT];
                for (int i = 0; i < o->repeat; i++) {
                    wr[i] = runs[q][0][i].wall / runs[q][1][i].wall;
                    cr[i] = runs[q][0][i].cpu / runs[q][1][i].cpu;
                }
                paired[0] = median_of(wr, o->repeat); /* sorts wr */
                paired[1] = median_of(cr, o->repeat);
                paired[2] = wr[0];
                paired[3] = wr[o->repeat - 1];
                print_ratio("ratio to no checkpoints", r, without);
                printf(" paired %.2f (per CPU-s %.2f; %.2f to %.2f)", paired[0], paired[1],
                       paired[2], paired[3]);
            }
            if (cp)
                printf("  checkpoints %" PRId64, r.checkpoints);
            /* what the sink must see: every event, the bids, or q2's selection (q3's join
             * is checked by the unit test, not here) */
            int64_t want = -1;
            if (!strcmp(name, "gen"))
                want = o->events;
            else if (o->baselines && strcmp(name, "q3"))
                want = strcmp(name, "q2") ? bids : q2_rows;
            ok = want < 0 || r.rows == want;
            printf("  sink rows %" PRId64 "%s\n", r.rows, want < 0 ? "" : ok ? " ok" : " MISMATCH");
            fails += !ok;
            csv_line("throughput", name, o, cp, 0, &r, NULL, cp ? paired : NULL);
            if (!cp)
                without = r;
        }
    }
    return fails;
}

/* The latency part: per query a max-rate run, then runs at load * that rate (or --rate),
 * without and/or with checkpoints, R times interleaved; each percentile is the median of the
 * R runs' (a run that a neighbour's burst hit does not decide it), the maximum the largest. */
static int latency(const nexmark_gen *gen, const options *o, char names[][8], int nq)
{
    static double target[MAX_QUERIES];
    static result runs[MAX_QUERIES][2][MAX_REPEAT];
    static lat_figs figs[MAX_QUERIES][2][MAX_REPEAT];
    for (int q = 0; q < nq; q++) {
        target[q] = o->rate;
        if (target[q] > 0)
            continue;
        result r;
        /* half the throughput runs' events: long enough to measure a rate */
        job max = {.query = names[q], .stamp = true, .events = (o->events + 1) / 2};
        if (run_job(gen, o, &max, &r))
            return -1;
        target[q] = o->load * (double)r.events / r.wall;
        char what[96];
        snprintf(what, sizeof what, "%s max", names[q]);
        print_rate(what, o, r);
        printf("  ");
        print_latency(&run_sink.latency);
        printf("\n");
        lat_figs l = figs_of(&run_sink.latency);
        csv_line("latency_max", names[q], o, false, 0, &r, &l, NULL);
    }
    for (int i = 0; i < o->repeat; i++)
        for (int q = 0; q < nq; q++)
            for (int cp = 0; cp < 2; cp++) {
                if (!(o->checkpoints & (1 << cp)))
                    continue;
                job j = {.query = names[q],
                         .checkpoints = cp,
                         .stamp = true,
                         .rate = target[q],
                         .events = (int64_t)(target[q] * o->seconds)};
                if (j.events < o->par)
                    j.events = o->par;
                if (run_job(gen, o, &j, &runs[q][cp][i]))
                    return -1;
                figs[q][cp][i] = figs_of(&run_sink.latency);
            }
    for (int q = 0; q < nq; q++)
        for (int cp = 0; cp < 2; cp++) {
            if (!(o->checkpoints & (1 << cp)))
                continue;
            result r = median(runs[q][cp], o->repeat);
            lat_figs l = {{0}, 0};
            for (int k = 0; k < 3; k++) {
                double v[MAX_REPEAT];
                for (int i = 0; i < o->repeat; i++)
                    v[i] = (double)figs[q][cp][i].q[k];
                l.q[k] = (int64_t)median_of(v, o->repeat);
            }
            for (int i = 0; i < o->repeat; i++) {
                if (figs[q][cp][i].q[3] > l.q[3])
                    l.q[3] = figs[q][cp][i].q[3];
                l.samples += figs[q][cp][i].samples;
            }
            char what[96];
            snprintf(what, sizeof what, "%s %s", names[q], cp ? "+ckpt" : "paced");
            printf("%-12s p=%d: %8.2f M events/s (target %.2f) %6.2f M events/CPU-s  latency p50 "
                   "%.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms  (%" PRIu64 " result rows%s)",
                   what, o->par, (double)r.events / r.wall / 1e6, target[q] / 1e6,
                   (double)r.events / r.cpu / 1e6, (double)l.q[0] / 1e6, (double)l.q[1] / 1e6,
                   (double)l.q[2] / 1e6, (double)l.q[3] / 1e6, l.samples,
                   o->repeat > 1 ? ", medians of the runs' percentiles" : "");
            if (cp)
                printf("  checkpoints %" PRId64, r.checkpoints);
            printf("\n");
            csv_line("latency", names[q], o, cp, target[q], &r, &l, NULL);
        }
    return 0;
}

int main(int argc, char **argv)
{
    options o;
    if (parse(argc, argv, &o))
        return 2;
    const char *list = strcmp(o.queries, "all") ? o.queries : "q0,q1,q2,q3";
    char names[MAX_QUERIES][8];
    int nq = 0;
    for (const char *p = list; *p && nq < MAX_QUERIES; nq++) {
        size_t n = strcspn(p, ",");
        if (n >= sizeof names[0])
            return usage(argv[0]);
        snprintf(names[nq], sizeof names[0], "%.*s", (int)n, p);
        if (strcmp(names[nq], "gen") && !nexmark_query_schema(names[nq]))
            return usage(argv[0]);
        p += n + (p[n] == ',');
    }
    if (o.csv) {
        csv = fopen(o.csv, "a");
        if (!csv) {
            perror(o.csv);
            return 1;
        }
        if (ftell(csv) == 0)
            fprintf(csv, "section\tjob\tp\tcheckpoints\ttarget_rate\tevents\twall_s\tcpu_s\trows\t"
                         "checkpoints_done\tp50_ns\tp99_ns\tp999_ns\tmax_ns\tsamples\t"
                         "paired_wall_ratio\tpaired_cpu_ratio\truns\tpaired_wall_min\t"
                         "paired_wall_max\n");
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
           "median of %d run%s%s%s\n",
           o.events, o.par, o.repeat, o.repeat > 1 ? "s" : "",
           o.checkpoints == CP_OFF  ? ""
           : o.checkpoints == CP_ON ? ", checkpoints every "
                                    : ", without and with checkpoints every ",
           o.checkpoints == CP_OFF ? "" : o.interval);

    int fails = throughput(gen, &o, names, nq);
    if (fails >= 0 && o.latency) {
        printf("latency: %.0f%% of each job's max rate%s, %.0f s per run\n", o.load * 100,
               o.rate > 0 ? " (overridden by --rate)" : "", o.seconds);
        if (latency(gen, &o, names, nq) < 0)
            fails = -1;
    }
    nexmark_gen_destroy(gen);
    if (csv)
        fclose(csv);
    return fails ? 1 : 0;
}

/*
 * bench/word_count.c - keyed word count: the engine against a bare hand-written C loop doing
 * the same work (tokenise on spaces, hash, count per word) on the same in-memory text, in
 * the same run.
 *
 * The text is generated deterministically: lines of 10 words drawn from a vocabulary of V
 * distinct words with a skewed (Zipf-like) distribution. The engine job is
 *   generator(lines) -> flat_map(split) -> key_by(word) -> sum(count) -> counting sink
 * in STREAMING mode (every word emits an updated count, as the seed's word count does) and
 * in BATCH mode (only final counts). Both sides check that the counts add up to the words.
 *
 *   build/bin/bench_word_count [--words N] [--vocab V] [-p P] [--mode streaming|batch|both]
 *                              [--repeat R] [--checkpoints off|on|both]
 *                              [--checkpoint-interval DURATION] [-D key=value]... [--csv FILE]
 *                              [--no-baselines]
 *
 * Prints words/s (wall clock) and words per CPU-second for each, and the ratio to the bare
 * loop. Rates are for the whole process (all threads), so idle spinning would count.
 * With --repeat R each figure is the median of R runs, the runs interleaved (bare loop,
 * engine, engine with checkpoints, R times). --checkpoints on runs the engine with a
 * checkpoint every --checkpoint-interval (default 1s; heap backend, exactly-once, to a
 * fresh directory under /tmp removed at exit); both runs it without and with, and prints
 * the ratio (of the medians, and paired: the median of each run with checkpoints against
 * the run without just before it) and the checkpoints completed and taken mid-run per run.
 * -D options go to the engine's configuration (after the
 * checkpoint settings, so they win). --csv FILE appends one tab-separated line per figure for
 * bench/report.sh.
 * --no-baselines runs the engine alone (for perf record); with --mode batch or both the bare
 * loop still runs once, untimed, to count the distinct words the BATCH check needs.
 */
#include "bench_common.h"
#include "core/hash.h"
#include "sluice.h"

#include <ftw.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* ---- the bare loop: open addressing over (hash, word, length, count) slots ----------
 * The table starts small and doubles at 3/4 load, so it holds the distinct words, as a
 * plain program's would (it was once sized by the number of words: 8 M slots, 256 MB for
 * a 100 K vocabulary, every probe a cache and TLB miss, which made the loop 2-3 times
 * slower than it needs to be and flattered the engine's ratio). */

typedef struct slot {
    uint64_t hash;
    const char *word;
    uint32_t len;
    int64_t count;
} slot;

static int64_t bare_loop(const corpus *c, size_t *distinct)
{
    size_t cap = 1024;
    slot *t = calloc(cap, sizeof *t);
    size_t used = 0;
    const char *p = c->text, *end = c->text + c->line_at[c->nlines];
    int64_t total = 0;
    while (p < end) {
        const char *we = p;
        while (we < end && *we != ' ' && *we != '\n')
            we++;
        if (we > p) {
            uint32_t len = (uint32_t)(we - p);
            uint64_t h = sl__hash(p, len);
            size_t i = h & (cap - 1);
            while (t[i].word && !(t[i].hash == h && t[i].len == len && !memcmp(t[i].word, p, len)))
                i = (i + 1) & (cap - 1);
            if (!t[i].word) {
                t[i] = (slot){h, p, len, 0};
                if (++used * 4 > cap * 3) {
                    /* grow */
                    size_t ncap = cap * 2;
                    slot *n = calloc(ncap, sizeof *n);
                    for (size_t k = 0; k < cap; k++) {
                        if (!t[k].word)
                            continue;
                        size_t j = t[k].hash & (ncap - 1);
                        while (n[j].word)
                            j = (j + 1) & (ncap - 1);
                        n[j] = t[k];
                    }
                    free(t);
                    t = n;
                    cap = ncap;
                    i = h & (cap - 1);
                    while (!(t[i].hash == h && t[i].len == len && !memcmp(t[i].word, p, len)))
                        i = (i + 1) & (cap - 1);
                }
            }
            t[i].count++;
            total++;
        }
        p = we + 1;
    }
    *distinct = used;
    free(t);
    return total;
}

/* ---- the engine job ------------------------------------------------------------------ */

static const corpus *g_corpus;
static _Atomic int64_t sink_rows, sink_total, sink_checkpoints, sink_snapshots;

static int gen_line(sl_ctx *ctx, void *user, int64_t i, sl_value *out)
{
    (void)ctx;
    (void)user;
    const corpus *c = g_corpus;
    size_t a = c->line_at[i], b = c->line_at[i + 1] - 1; /* without '\n' */
    out[0] = sl_strn(c->text + a, b - a);
    return 0;
}

static int split(sl_ctx *ctx, const sl_value *in)
{
    const char *p = in[0].u.s.ptr, *end = p + in[0].u.s.len;
    while (p < end) {
        const char *we = memchr(p, ' ', (size_t)(end - p));
        if (!we)
            we = end;
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

typedef struct sink_local {
    int64_t rows, total;
} sink_local;

static int count_open(sl_ctx *ctx)
{
    sl_ctx_set_local(ctx, calloc(1, sizeof(sink_local)));
    return 0;
}

static int count_invoke(sl_ctx *ctx, const sl_value *in)
{
    sink_local *l = sl_ctx_local(ctx);
    l->rows++;
    l->total += in[1].u.i64;
    return 0;
}

static int count_close(sl_ctx *ctx)
{
    sink_local *l = sl_ctx_local(ctx);
    if (l) {
        atomic_fetch_add(&sink_rows, l->rows);
        atomic_fetch_add(&sink_total, l->total);
    }
    free(l);
    return 0;
}

/* Counts completed checkpoints: the highest id seen complete. */
static int count_checkpoint_complete(sl_ctx *ctx, int64_t id)
{
    (void)ctx;
    int64_t seen = atomic_load(&sink_checkpoints);
    while (id > seen && !atomic_compare_exchange_weak(&sink_checkpoints, &seen, id)) {
    }
    return 0;
}

/* Counts the checkpoints that the first sink subtask took part in (its snapshot_state hook):
 * every barrier that went through the whole job, and the final checkpoint, taken when the
 * input ended. A mid-run checkpoint that the final one replaces before it completes (the
 * input ended while it was written) has cost what any other did, but completes never. */
static int count_snapshot(sl_ctx *ctx, int64_t id)
{
    (void)id;
    if (sl_ctx_subtask(ctx) == 0)
        atomic_fetch_add(&sink_snapshots, 1);
    return 0;
}

enum { MAX_DEFS = 32, MAX_REPEAT = 99 };

typedef struct options {
    int par;
    const char *interval; /* checkpoint interval */
    const char *defs[MAX_DEFS];
    int ndefs;
} options;

static int run_engine(const corpus *c, const options *o, sl_runtime_mode mode, bool checkpoints,
                      double *wall, double *cpu)
{
    char p[16], interval[64], dir[96];
    snprintf(p, sizeof p, "%d", o->par);
    char *argv[16 + 2 * MAX_DEFS + 1] = {"bench", "-p", p};
    int argc = 3;
    if (checkpoints) {
        snprintf(interval, sizeof interval, "execution.checkpointing.interval=%s", o->interval);
        snprintf(dir, sizeof dir, "state.checkpoints.dir=%s",
                 bench_checkpoint_dir("sluice-bench-wc", "bench_word_count: mkdtemp"));
        char *cp[] = {"-D", interval,
                      "-D", dir,
                      "-D", "execution.checkpointing.mode=EXACTLY_ONCE",
                      "-D", "state.backend.type=hashmap"};
        for (size_t i = 0; i < sizeof cp / sizeof cp[0]; i++)
            argv[argc++] = cp[i];
    }
    for (int i = 0; i < o->ndefs; i++) {
        argv[argc++] = "-D";
        argv[argc++] = (char *)o->defs[i];
    }
    argv[argc] = NULL;
    char err[512];
    int code;
    sl_env *env = sl_env_create(argc, argv, NULL, NULL, &code, err, sizeof err);
    if (!env) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    sl_env_set_runtime_mode(env, mode);
    g_corpus = c;
    atomic_store(&sink_rows, 0);
    atomic_store(&sink_total, 0);
    atomic_store(&sink_checkpoints, 0);
    atomic_store(&sink_snapshots, 0);
    sl_stream *lines = sl_from_generator(env, "line:str", (int64_t)c->nlines, gen_line, NULL);
    sl_flat_map_fn fm = {.flat_map = split};
    sl_stream *words = sl_flat_map(lines, "word:str,count:i64", &fm);
    sl_stream *counts = sl_sum(sl_key_by(words, 0), 1);
    sl_sink_fn sink = {.open = count_open,
                       .invoke = count_invoke,
                       .close = count_close,
                       .snapshot_state = count_snapshot,
                       .notify_checkpoint_complete = count_checkpoint_complete};
    sl_add_sink(counts, "count", &sink);
    double t0 = now_s(), c0 = cpu_s();
    int rc = sl_execute(env, "bench_word_count");
    *wall = now_s() - t0;
    *cpu = cpu_s() - c0;
    if (rc)
        fprintf(stderr, "engine: %s\n", sl_env_error(env));
    sl_env_destroy(env);
    return rc;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(const double *in, int n)
{
    double v[MAX_REPEAT];
    memcpy(v, in, sizeof *v * (size_t)n);
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--words N] [--vocab V] [-p P] [--mode streaming|batch|both] "
            "[--repeat R] [--checkpoints off|on|both] [--checkpoint-interval DURATION] "
            "[-D key=value]... [--csv FILE] [--no-baselines]\n",
            prog);
    return 2;
}

int main(int argc, char **argv)
{
    int64_t nwords = 20000000;
    uint64_t vocab = 100000;
    options o = {.par = 1, .interval = "1s"};
    const char *mode = "both", *checkpoints = "off", *csv_path = NULL;
    int repeat = 1;
    bool baseline = true;
    int bad = 0;
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "--no-baselines")) {
            baseline = false;
            i--;
        } else if (i + 1 >= argc)
            bad = 1;
        else if (!strcmp(argv[i], "--words"))
            nwords = strtoll(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--vocab"))
            vocab = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "-p"))
            o.par = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--mode"))
            mode = argv[i + 1];
        else if (!strcmp(argv[i], "--repeat"))
            repeat = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--checkpoints"))
            checkpoints = argv[i + 1];
        else if (!strcmp(argv[i], "--checkpoint-interval"))
            o.interval = argv[i + 1];
        else if (!strcmp(argv[i], "-D") && o.ndefs < MAX_DEFS)
            o.defs[o.ndefs++] = argv[i + 1];
        else if (!strcmp(argv[i], "--csv"))
            csv_path = argv[i + 1];
        else
            return usage(argv[0]);
    }
    if (bad || repeat < 1 || repeat > MAX_REPEAT || o.par < 1 || nwords < 1 || vocab < 1)
        return usage(argv[0]);
    /* bit 0: runs without checkpoints, bit 1: with */
    int cps = !strcmp(checkpoints, "off")    ? 1
              : !strcmp(checkpoints, "on")   ? 2
              : !strcmp(checkpoints, "both") ? 3
                                             : 0;
    if (!cps)
        return usage(argv[0]);
    FILE *csv = NULL;
    if (csv_path) {
        csv = fopen(csv_path, "a");
        if (!csv) {
            perror(csv_path);
            return 1;
        }
        if (ftell(csv) == 0)
            fprintf(csv,
                    "job\tvocab\tdistinct\tp\tcheckpoints\twords\twall_s\tcpu_s\t"
                    "checkpoints_done\tpaired_wall_ratio\truns\tpaired_wall_min\tpaired_wall_max\t"
                    "checkpoints_taken\n");
    }
    corpus c = make_corpus(nwords, vocab);
    printf("corpus: %" PRId64 " words, %zu lines, vocabulary %" PRIu64 ", %.1f MB%s\n", c.nwords,
           c.nlines, vocab, (double)c.line_at[c.nlines] / 1e6,
           repeat > 1 ? ", medians of interleaved runs" : "");

    /* runs[mode][checkpoints][repeat] */
    static double bare_wall[MAX_REPEAT], bare_cpu[MAX_REPEAT];
    static double wall[2][2][MAX_REPEAT], cpu[2][2][MAX_REPEAT], ncp[2][2][MAX_REPEAT],
        ntaken[2][2][MAX_REPEAT];
    static int64_t rows[2][2], total[2][2];
    size_t distinct = 0;
    int fails = 0;
    for (int r = 0; r < repeat; r++) {
        double t0 = now_s(), c0 = cpu_s();
        bool need = baseline || (!r && strcmp(mode, "streaming")); /* BATCH needs distinct */
        int64_t bare_total = need ? bare_loop(&c, &distinct) : c.nwords;
        bare_wall[r] = now_s() - t0;
        bare_cpu[r] = cpu_s() - c0;
        if (!baseline) /* the engine alone (for perf record): the table, not the timing */
            bare_wall[r] = bare_cpu[r] = 0;
        if (bare_total != c.nwords) {
            fprintf(stderr, "bare loop counted %" PRId64 " words, expected %" PRId64 "\n",
                    bare_total, c.nwords);
            return 1;
        }
        for (int m = 0; m < 2; m++) {
            if (strcmp(mode, "both") && strcmp(mode, m ? "batch" : "streaming"))
                continue;
            for (int cp = 0; cp < 2; cp++) {
                if (!(cps & (1 << cp)))
                    continue;
                if (run_engine(&c, &o, m ? SL_BATCH : SL_STREAMING, cp, &wall[m][cp][r],
                               &cpu[m][cp][r]))
                    return 1;
                ncp[m][cp][r] = (double)atomic_load(&sink_checkpoints);
                /* all but the final one, which a bounded job always takes */
                int64_t snaps = atomic_load(&sink_snapshots);
                ntaken[m][cp][r] = (double)(snaps > 0 ? snaps - 1 : 0);
                int64_t nrows = atomic_load(&sink_rows), ntotal = atomic_load(&sink_total);
                /* STREAMING: one row per word, counts are running totals; BATCH: one per
                 * word */
                bool ok =
                    m ? (nrows == (int64_t)distinct && ntotal == c.nwords) : nrows == c.nwords;
                if (!ok)
                    fprintf(stderr, "engine %s: sink rows %" PRId64 " MISMATCH\n",
                            m ? "BATCH" : "STREAMING", nrows);
                fails += !ok;
                rows[m][cp] = nrows;
                total[m][cp] = ntotal;
            }
        }
    }

    double bw = median_of(bare_wall, repeat), bc = median_of(bare_cpu, repeat);
    double bare_rate = (double)c.nwords / bw, bare_per_cpu = (double)c.nwords / bc;
    if (baseline)
        printf("bare C loop:        %8.2f M words/s  %8.2f M words/CPU-s  (%zu distinct words)\n",
               bare_rate / 1e6, bare_per_cpu / 1e6, distinct);
    if (csv && baseline)
        fprintf(csv, "bare\t%" PRIu64 "\t%zu\t%d\t0\t%" PRId64 "\t%.6f\t%.6f\t0\t0\t%d\t0\t0\n",
                vocab, distinct, o.par, c.nwords, bw, bc, repeat); /* p: of the engine runs */
    for (int m = 0; m < 2; m++) {
        if (strcmp(mode, "both") && strcmp(mode, m ? "batch" : "streaming"))
            continue;
        double without = 0;
        for (int cp = 0; cp < 2; cp++) {
            if (!(cps & (1 << cp)))
                continue;
            double w = median_of(wall[m][cp], repeat), cu = median_of(cpu[m][cp], repeat);
            double rate = (double)c.nwords / w, per_cpu = (double)c.nwords / cu;
            int64_t n = (int64_t)median_of(ncp[m][cp], repeat);
            int64_t taken = (int64_t)median_of(ntaken[m][cp], repeat);
            printf("engine %-9s%-6s p=%d: %8.2f M words/s  %8.2f M words/CPU-s  ratio to bare "
                   "loop %.2f (per CPU-s %.2f)",
                   m ? "BATCH" : "STREAMING", cp ? " +ckpt" : "", o.par, rate / 1e6, per_cpu / 1e6,
                   rate / bare_rate, per_cpu / bare_per_cpu);
            double paired = 0, pmin = 0, pmax = 0;
            if (cp && without > 0) {
                /* each run with checkpoints against the run without them just before it */
                double pr[MAX_REPEAT];
                for (int r = 0; r < repeat; r++)
                    pr[r] = wall[m][0][r] / wall[m][1][r];
                paired = median_of(pr, repeat);
                pmin = pmax = pr[0];
                for (int r = 1; r < repeat; r++) {
                    pmin = pr[r] < pmin ? pr[r] : pmin;
                    pmax = pr[r] > pmax ? pr[r] : pmax;
                }
                printf("  ratio to no checkpoints %.2f (paired %.2f; %.2f to %.2f)", rate / without,
                       paired, pmin, pmax);
            }
            if (cp)
                printf("  checkpoints %" PRId64 " (taken mid-run %" PRId64 ")", n, taken);
            printf("  sink rows %" PRId64 "%s\n", rows[m][cp], fails ? "" : " ok");
            if (!cp)
                without = rate;
            if (csv)
                fprintf(csv,
                        "%s\t%" PRIu64 "\t%zu\t%d\t%d\t%" PRId64 "\t%.6f\t%.6f\t%" PRId64
                        "\t%.4f\t%d\t%.4f\t%.4f\t%" PRId64 "\n",
                        m ? "batch" : "streaming", vocab, distinct, o.par, cp, c.nwords, w, cu, n,
                        paired, repeat, pmin, pmax, taken);
            (void)total;
        }
    }
    if (csv)
        fclose(csv);
    free(c.text);
    free(c.line_at);
    return fails ? 1 : 0;
}

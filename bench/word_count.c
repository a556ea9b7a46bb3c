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
 *
 * Prints words/s (wall clock) and words per CPU-second for each, and the ratio to the bare
 * loop. Rates are for the whole process (all threads), so idle spinning would count.
 */
#include "core/hash.h"
#include "sluice.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct corpus {
    char *text;      /* all lines, each ended by '\n' */
    size_t *line_at; /* offset of each line */
    size_t nlines;
    int64_t nwords;
} corpus;

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void make_word(uint64_t id, char *out, int *len)
{
    /* "w" + base-26 digits: distinct, 2 to 7 letters for a 10 M vocabulary */
    int n = 0;
    out[n++] = 'w';
    do {
        out[n++] = (char)('a' + id % 26);
        id /= 26;
    } while (id);
    *len = n;
}

static corpus make_corpus(int64_t nwords, uint64_t vocab)
{
    corpus c = {0};
    size_t cap = (size_t)nwords * 9 + 64;
    c.text = malloc(cap);
    c.nlines = (size_t)(nwords + 9) / 10;
    c.line_at = malloc(sizeof *c.line_at * (c.nlines + 1));
    uint64_t s = 0x9E3779B97F4A7C15ull;
    size_t at = 0;
    int64_t w = 0;
    for (size_t l = 0; l < c.nlines; l++) {
        c.line_at[l] = at;
        for (int k = 0; k < 10 && w < nwords; k++, w++) {
            /* skew: square a uniform draw so small ids are more frequent */
            double u = (double)(rng(&s) >> 11) / 9007199254740992.0;
            uint64_t id = (uint64_t)(u * u * (double)vocab);
            if (id >= vocab)
                id = vocab - 1;
            int len;
            if (k)
                c.text[at++] = ' ';
            make_word(id, c.text + at, &len);
            at += (size_t)len;
        }
        c.text[at++] = '\n';
    }
    c.line_at[c.nlines] = at;
    c.nwords = w;
    return c;
}

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

/* ---- the bare loop: open addressing, word bytes copied into an arena ---------------- */

typedef struct slot {
    uint64_t hash;
    const char *word;
    uint32_t len;
    int64_t count;
} slot;

static int64_t bare_loop(const corpus *c, size_t *distinct)
{
    size_t cap = 1024;
    while (cap < (size_t)c->nwords / 4 + 1024)
        cap <<= 1;
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
static _Atomic int64_t sink_rows, sink_total;

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
    atomic_fetch_add(&sink_rows, l->rows);
    atomic_fetch_add(&sink_total, l->total);
    free(l);
    return 0;
}

static int run_engine(const corpus *c, int par, sl_runtime_mode mode, double *wall, double *cpu)
{
    char p[16];
    snprintf(p, sizeof p, "%d", par);
    char *argv[] = {"bench", "-p", p, NULL};
    char err[512];
    int code;
    sl_env *env = sl_env_create(3, argv, NULL, NULL, &code, err, sizeof err);
    if (!env) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    sl_env_set_runtime_mode(env, mode);
    g_corpus = c;
    atomic_store(&sink_rows, 0);
    atomic_store(&sink_total, 0);
    sl_stream *lines = sl_from_generator(env, "line:str", (int64_t)c->nlines, gen_line, NULL);
    sl_flat_map_fn fm = {.flat_map = split};
    sl_stream *words = sl_flat_map(lines, "word:str,count:i64", &fm);
    sl_stream *counts = sl_sum(sl_key_by(words, 0), 1);
    sl_sink_fn sink = {.open = count_open, .invoke = count_invoke, .close = count_close};
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

int main(int argc, char **argv)
{
    int64_t nwords = 20000000;
    uint64_t vocab = 100000;
    int par = 1;
    const char *mode = "both";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--words"))
            nwords = strtoll(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--vocab"))
            vocab = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "-p"))
            par = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--mode"))
            mode = argv[i + 1];
        else {
            fprintf(stderr,
                    "usage: %s [--words N] [--vocab V] [-p P] [--mode streaming|batch|both]\n",
                    argv[0]);
            return 2;
        }
    }
    corpus c = make_corpus(nwords, vocab);
    printf("corpus: %" PRId64 " words, %zu lines, vocabulary %" PRIu64 ", %.1f MB\n", c.nwords,
           c.nlines, vocab, (double)c.line_at[c.nlines] / 1e6);

    size_t distinct = 0;
    double t0 = now_s(), c0 = cpu_s();
    int64_t bare_total = bare_loop(&c, &distinct);
    double bare_wall = now_s() - t0, bare_cpu = cpu_s() - c0;
    double bare_rate = (double)c.nwords / bare_wall;
    printf("bare C loop:        %8.2f M words/s  %8.2f M words/CPU-s  (%zu distinct words)\n",
           bare_rate / 1e6, (double)c.nwords / bare_cpu / 1e6, distinct);
    if (bare_total != c.nwords) {
        fprintf(stderr, "bare loop counted %" PRId64 " words, expected %" PRId64 "\n", bare_total,
                c.nwords);
        return 1;
    }
    int fails = 0;
    for (int m = 0; m < 2; m++) {
        if (strcmp(mode, "both") && strcmp(mode, m ? "batch" : "streaming"))
            continue;
        double wall, cpu;
        if (run_engine(&c, par, m ? SL_BATCH : SL_STREAMING, &wall, &cpu))
            return 1;
        double rate = (double)c.nwords / wall, per_cpu = (double)c.nwords / cpu;
        int64_t rows = atomic_load(&sink_rows), total = atomic_load(&sink_total);
        /* STREAMING: one row per word, counts are running totals; BATCH: one per word */
        bool ok = m ? (rows == (int64_t)distinct && total == c.nwords) : rows == c.nwords;
        printf("engine %-9s p=%d: %8.2f M words/s  %8.2f M words/CPU-s  ratio to bare loop "
               "%.2f (per CPU-s %.2f)  sink rows %" PRId64 " %s\n",
               m ? "BATCH" : "STREAMING", par, rate / 1e6, per_cpu / 1e6, rate / bare_rate,
               per_cpu / ((double)c.nwords / bare_cpu), rows, ok ? "ok" : "MISMATCH");
        fails += !ok;
    }
    free(c.text);
    free(c.line_at);
    return fails ? 1 : 0;
}

/*
 * bench_common.h - what several benchmarks share: the generated word-count corpus (lines of
 * 10 words from a vocabulary of V distinct words, skewed to small ids), wall-clock and
 * process-CPU clocks, and a temporary checkpoint directory removed at exit. Header-only,
 * so each benchmark stays one program built from its own file(s).
 */
#ifndef SL_BENCH_COMMON_H
#define SL_BENCH_COMMON_H

#include <ftw.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

typedef struct corpus {
    char *text;      /* all lines, each ended by '\n' */
    size_t *line_at; /* offset of each line */
    size_t nlines;
    int64_t nwords;
} corpus;

static inline uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static inline void make_word(uint64_t id, char *out, int *len)
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

static inline corpus make_corpus(int64_t nwords, uint64_t vocab)
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

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* *a = max(*a, v), from any thread. */
static inline void max_store(_Atomic int64_t *a, int64_t v)
{
    int64_t cur = atomic_load(a);
    while (v > cur && !atomic_compare_exchange_weak(a, &cur, v))
        ;
}

static inline double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static inline int bench__remove_entry(const char *path, const struct stat *st, int flag,
                                      struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static inline char *bench__checkpoint_dir(void)
{
    static char dir[64];
    return dir;
}

static inline void bench__remove_checkpoint_dir(void)
{
    char *dir = bench__checkpoint_dir();
    if (dir[0])
        nftw(dir, bench__remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The checkpoint directory of this process, /tmp/<prefix>-XXXXXX, made on first use and
 * removed at exit. prog names the program in an error. */
static inline const char *bench_checkpoint_dir(const char *prefix, const char *prog)
{
    char *dir = bench__checkpoint_dir();
    if (!dir[0]) {
        snprintf(dir, 64, "/tmp/%s-XXXXXX", prefix);
        if (!mkdtemp(dir)) {
            perror(prog);
            exit(1);
        }
        atexit(bench__remove_checkpoint_dir);
    }
    return dir;
}

#endif

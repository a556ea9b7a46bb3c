/*
 * exactly_once_demo - word counts that stay exact through a failure.
 *
 * A replayable source generates numbered lines of words (deterministic, slowed down a
 * little so the job runs a few seconds); words are counted per key at parallelism 2, with
 * checkpoints every 200 ms. On the first attempt the splitter fails at one line, as a bug
 * would; the job restarts from its latest checkpoint: the source rewinds to the offset in
 * that checkpoint and the counts continue from the restored state. The counts go to a
 * two-phase-commit file sink (committed when a checkpoint completes) and the updates of one
 * word are printed, so you can watch them continue after the restart (the print sink is not
 * transactional: updates after the checkpoint are printed again when replayed). Every
 * 500th update of that word is printed.
 *
 * When the job has finished, the program reads the committed files and checks every word's
 * final count against the exact counts computed here from the same generator, and says
 * whether they matched.
 *
 *   build/bin/exactly_once_demo [options] OUTPUT_DIR CHECKPOINT_DIR [--lines N] [--fail-at N]
 *                               [--watch WORD]
 */
#include <sluice.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WORDS_PER_LINE = 8, VOCABULARY = 300 };

typedef struct demo {
    int64_t lines;
    int64_t fail_at;
    const char *watch;
} demo;

/* Word k of line i: deterministic, some words far more frequent than others. */
static int word_of(int64_t line, int k)
{
    uint64_t x = (uint64_t)line * 2654435761u + (uint64_t)k * 40503u;
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    int w = (int)(x % VOCABULARY);
    return (int)((uint64_t)w * (uint64_t)w / VOCABULARY); /* skew to small ids */
}

static int gen_line(sl_ctx *ctx, void *user, int64_t i, sl_value *out)
{
    (void)user;
    if (i % 40 == 0 && sl_ctx_sleep_ms(ctx, 4) < 0)
        return SL_ECANCELED;
    char *text = sl_ctx_alloc(ctx, WORDS_PER_LINE * 8);
    int n = 0;
    for (int k = 0; k < WORDS_PER_LINE; k++)
        n += sprintf(text + n, "%sw%d", k ? " " : "", word_of(i, k));
    out[0] = SL_I64(i);
    out[1] = sl_strn(text, (size_t)n);
    return 0;
}

static int split(sl_ctx *ctx, const sl_value *in)
{
    const demo *d = sl_ctx_user(ctx);
    if (sl_ctx_attempt(ctx) == 0 && in[0].u.i64 == d->fail_at)
        return sl_fail(ctx, "injected failure at line %lld (a bug on the first attempt)",
                       (long long)in[0].u.i64);
    const char *p = in[1].u.s.ptr, *end = p + in[1].u.s.len;
    while (p < end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        const char *we = sp ? sp : end;
        sl_value out[2] = {sl_strn(p, (size_t)(we - p)), SL_I64(1)};
        int rc = sl_emit(ctx, out);
        if (rc < 0)
            return rc;
        p = we + 1;
    }
    return 0;
}

/* Every 500th update of the watched word: enough to see the counts continue. */
static int watched(sl_ctx *ctx, const sl_value *in)
{
    const demo *d = sl_ctx_user(ctx);
    return in[1].u.i64 % 500 == 0 && in[0].u.s.len == strlen(d->watch) &&
           !memcmp(in[0].u.s.ptr, d->watch, in[0].u.s.len);
}

/* Reads the committed part files (name "part-*", no leading dot) and keeps, per word, the
 * largest count seen: the final count. Returns the number of rows read, or -1. */
static int64_t read_committed(const char *dir, int64_t *final)
{
    DIR *dd = opendir(dir);
    if (!dd)
        return -1;
    int64_t rows = 0;
    struct dirent *de;
    char path[4096], line[256];
    while ((de = readdir(dd))) {
        if (strncmp(de->d_name, "part-", 5))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        while (fgets(line, sizeof line, f)) {
            int w;
            long long c;
            if (sscanf(line, "(w%d,%lld)", &w, &c) == 2 && w >= 0 && w < VOCABULARY) {
                if (c > final[w])
                    final[w] = c;
                rows++;
            }
        }
        fclose(f);
    }
    closedir(dd);
    return rows;
}

static int job(sl_env *env, int argc, char **argv)
{
    static demo d = {.lines = 30000, .fail_at = -1, .watch = "w0"};
    const char *out_dir = NULL, *ckpt_dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--lines") && i + 1 < argc)
            d.lines = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--fail-at") && i + 1 < argc)
            d.fail_at = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--watch") && i + 1 < argc)
            d.watch = argv[++i];
        else if (!out_dir)
            out_dir = argv[i];
        else if (!ckpt_dir)
            ckpt_dir = argv[i];
        else
            out_dir = NULL, ckpt_dir = NULL, i = argc;
    }
    if (!out_dir || !ckpt_dir || d.lines < 1)
        return sl_env_fail(env, SL_EINVAL,
                           "usage: %s [options] OUTPUT_DIR CHECKPOINT_DIR [--lines N] "
                           "[--fail-at N] [--watch WORD]",
                           argv[0]);
    if (d.fail_at < 0)
        d.fail_at = d.lines / 2;

    sl_env_enable_checkpointing(env, 200, SL_EXACTLY_ONCE);
    sl_env_set_checkpoint_dir(env, ckpt_dir);
    sl_env_set_restart_fixed_delay(env, 3, 500);

    sl_stream *lines = sl_from_generator(env, "line:i64,text:str", d.lines, gen_line, NULL);
    sl_set_uid(sl_set_parallelism(lines, 1), "lines");
    sl_flat_map_fn fm = {.flat_map = split, .user = &d};
    sl_stream *words = sl_set_uid(sl_flat_map(lines, "word:str,count:i64", &fm), "split");
    sl_stream *counts = sl_sum(sl_key_by(words, 0), 1);
    sl_set_uid(sl_set_parallelism(counts, 2), "counts");
    sl_set_uid(sl_set_parallelism(sl_write_text(counts, out_dir), 2), "committed-counts");
    sl_filter_fn f = {.filter = watched, .user = &d};
    sl_print(sl_set_parallelism(sl_filter(counts, &f), 2));
    int rc = sl_execute(env, "exactly_once_demo");
    if (rc)
        return rc;

    /* the exact counts, computed again from the generator */
    int64_t expected[VOCABULARY] = {0}, final[VOCABULARY] = {0}, total = 0;
    for (int64_t i = 0; i < d.lines; i++)
        for (int k = 0; k < WORDS_PER_LINE; k++, total++)
            expected[word_of(i, k)]++;
    int64_t rows = read_committed(out_dir, final);
    int distinct = 0, wrong = 0;
    for (int w = 0; w < VOCABULARY; w++) {
        distinct += expected[w] > 0;
        if (final[w] != expected[w]) {
            if (wrong++ < 5)
                fprintf(stderr, "w%d: counted %lld, expected %lld\n", w, (long long) final[w],
                        (long long)expected[w]);
        }
    }
    if (rows != total || wrong) {
        printf("RESULT: MISMATCH: %d of %d words have wrong final counts; %lld committed rows for "
               "%lld words\n",
               wrong, distinct, (long long)rows, (long long)total);
        return sl_env_fail(env, SL_ESTATE, "the final counts do not match the exact counts");
    }
    printf("RESULT: exact: all %d words' final counts match the expected counts (%lld words, "
           "every update committed exactly once)\n",
           distinct, (long long)total);
    return 0;
}

SL_JOB(job)

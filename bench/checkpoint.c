/*
 * bench/checkpoint.c - what checkpoints cost: throughput with checkpoints every second
 * against none (word count, and a keyed sum over 1 M keys, each next to a bare C loop in the
 * same run), and for keyed state of about 100 MB and 1 GB the checkpoint duration and size,
 * the processing pause a snapshot causes on the task thread, and the restore time of the
 * same program started again with -s.
 *
 *   build/bin/bench_checkpoint [--mode wc|keyed|state|all] [--runs R] [--big] [-p P] [-v]
 *       [--words N] [--vocab V] [--records N] [--keys K] [--interval MS] [--dir D] [--keep]
 *       [--state-keys N --state-pad B]   (one state run of N keys with B-byte values)
 *       [--only-checkpointing]           (for perf record: only the checkpointing runs)
 *
 * Measured through the public API, the log and /proc (bench/README.md, "checkpoint cost"):
 *  - throughput: records / wall clock and / CPU time of the whole process;
 *  - checkpoint duration and size: the coordinator's info line
 *    `event=checkpoint_completed id=.. duration_ms=.. size_bytes=.. [sync_pause_max_us=..]`
 *    (trigger to durable _metadata; size = the state files), captured by pointing stderr at
 *    a file while the job runs (SLUICE_LOG_LEVEL=info is set here);
 *  - the synchronous pause, twice: the engine's sync_pause_max_us where the log has it, and
 *    from outside: the last operator of the keyed task (a counting sink after sum, or the
 *    state-filling process function itself) timestamps every record with the TSC; its
 *    snapshot_state hook runs inside the synchronous part; the pause is the gap between the
 *    record before that hook and the first record after it (the whole synchronous part of
 *    the chain plus one record's hand-over, and idle time when the task waits for input).
 *    The largest gap after each snapshot, and over a run without checkpoints, is printed
 *    next to it: that shows stalls after the synchronous part (freeing copy-on-write
 *    leftovers);
 *  - barrier delay: trigger (log) to the snapshot_state hook on the keyed task;
 *  - restore: the parent cancels the job (SIGTERM, RETAIN_ON_CANCELLATION) after 3
 *    checkpoints of the full state completed, then starts this program again with -s on
 *    the retained chk-<N>; the child reports when sl_execute was called, when the keyed
 *    operator's initialize_state ran (its state files read, checked and loaded), and the
 *    first record processed, then reads every key back and checks it (values, and that the
 *    per-key counters add up to the source offset the checkpoint holds). "cold" drops the
 *    checkpoint files from the page cache first (posix_fadvise DONTNEED), "warm" does not;
 *  - oth%: the share of the machine's CPU that other processes used during a run (from
 *    /proc/stat), to tell a noisy neighbour from a real cost.
 *
 * Checkpoints go to $TMPDIR (or /tmp)/sluice-bench-ckpt-<pid>, removed at the end unless
 * --keep. Peak memory is VmHWM (reset before each run through /proc/self/clear_refs).
 */
#include "bench_common.h"
#include "core/hash.h"
#include "sluice.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

extern char **environ;

/* ---- clocks ----------------------------------------------------------------------------- */

/* CPU seconds the whole machine spent busy (all processes), from /proc/stat. */
static double machine_busy_s(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 5)
        return 0;
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]; /* not idle, iowait */
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

/* How much of the machine other processes used between two points: a noisy neighbour shows
 * here. */
typedef struct load_probe {
    double t, cpu, busy;
} load_probe;

static load_probe probe_start(void)
{
    return (load_probe){now_s(), cpu_s(), machine_busy_s()};
}

/* Percent of all cores that other processes kept busy since p. */
static double probe_others_pct(const load_probe *p)
{
    double wall = now_s() - p->t, own = cpu_s() - p->cpu, busy = machine_busy_s() - p->busy;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (wall <= 0 || ncpu < 1)
        return 0;
    double pct = (busy - own) / (wall * (double)ncpu) * 100;
    return pct < 0 ? 0 : pct;
}

/* Milliseconds since midnight UTC: the log's timestamps are HH:MM:SS.mmm UTC. */
static double real_ms_of_day(int64_t real_ns)
{
    return (double)(real_ns % (86400LL * 1000000000)) / 1e6;
}

/* Per-record timestamps: the TSC where there is one (a few ns), calibrated once. */
static double ns_per_tick = 1.0;

static inline uint64_t ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return __rdtsc();
#else
    return (uint64_t)clock_ns(CLOCK_MONOTONIC);
#endif
}

static void calibrate_ticks(void)
{
    int64_t n0 = clock_ns(CLOCK_MONOTONIC);
    uint64_t t0 = ticks();
    struct timespec d = {0, 100000000};
    nanosleep(&d, NULL);
    int64_t n1 = clock_ns(CLOCK_MONOTONIC);
    uint64_t t1 = ticks();
    if (t1 > t0)
        ns_per_tick = (double)(n1 - n0) / (double)(t1 - t0);
}

/* ---- small helpers ---------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    if (n <= 0)
        return 0;
    double *c = malloc(sizeof *c * (size_t)n);
    memcpy(c, v, sizeof *c * (size_t)n);
    qsort(c, (size_t)n, sizeof *c, cmp_double);
    double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
    free(c);
    return m;
}

static double maxof(const double *v, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++)
        if (v[i] > m)
            m = v[i];
    return m;
}

static void reset_hwm(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static long vm_hwm_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6))
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static uint64_t du_total;
static int du_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (flag == FTW_F)
        du_total += (uint64_t)sb->st_size;
    return 0;
}

static uint64_t du_bytes(const char *path)
{
    du_total = 0;
    nftw(path, du_entry, 16, FTW_PHYS);
    return du_total;
}

static int evict_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag != FTW_F)
        return 0;
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    return 0;
}

/* Drops a checkpoint's files from the page cache (they are fsynced, so clean). */
static void evict_from_cache(const char *path)
{
    nftw(path, evict_entry, 16, FTW_PHYS);
}

/* ---- what hooks and the log say about each checkpoint ------------------------------------ */

#define MAX_CK 4096

typedef struct ck_obs {
    bool snapped;          /* a snapshot_state hook ran on the observed task */
    double snap_ms;        /* its time, ms of day UTC (the first subtask's) */
    double gap_ns;         /* record gap across the synchronous part (max over subtasks) */
    bool has_gap;          /* a record followed */
    double post_ns;        /* largest record gap after it, until the next snapshot */
    double sync_cpu_ns;    /* thread CPU time from the hook to the next record (state job) */
    double engine_sync_us; /* sync_pause_max_us of the completed line, -1 when absent */
    int not_full;          /* subtasks where the state was not yet full at the snapshot */
    bool done, failed;     /* from the log */
    double trig_ms;        /* checkpoint_triggered, ms of day */
    double done_ms;        /* checkpoint_completed, ms of day */
    double duration_ms;    /* duration_ms of the completed line */
    double size_bytes;     /* size_bytes of the completed line */
} ck_obs;

static ck_obs g_ck[MAX_CK];
static pthread_mutex_t g_ck_mu = PTHREAD_MUTEX_INITIALIZER;

static void obs_reset(void)
{
    memset(g_ck, 0, sizeof g_ck);
}

static void obs_snapshot(int64_t id, bool full)
{
    if (id <= 0 || id >= MAX_CK)
        return;
    double ms = real_ms_of_day(clock_ns(CLOCK_REALTIME));
    pthread_mutex_lock(&g_ck_mu);
    if (!g_ck[id].snapped)
        g_ck[id].snap_ms = ms;
    g_ck[id].snapped = true;
    g_ck[id].not_full += !full;
    pthread_mutex_unlock(&g_ck_mu);
}

static void obs_gap(int64_t id, double gap_ns)
{
    if (id <= 0 || id >= MAX_CK)
        return;
    pthread_mutex_lock(&g_ck_mu);
    if (!g_ck[id].has_gap || gap_ns > g_ck[id].gap_ns)
        g_ck[id].gap_ns = gap_ns;
    g_ck[id].has_gap = true;
    pthread_mutex_unlock(&g_ck_mu);
}

static void obs_post(int64_t id, double gap_ns)
{
    if (id <= 0 || id >= MAX_CK)
        return;
    pthread_mutex_lock(&g_ck_mu);
    if (gap_ns > g_ck[id].post_ns)
        g_ck[id].post_ns = gap_ns;
    pthread_mutex_unlock(&g_ck_mu);
}

static void obs_sync_cpu(int64_t id, double ns)
{
    if (id <= 0 || id >= MAX_CK)
        return;
    pthread_mutex_lock(&g_ck_mu);
    if (ns > g_ck[id].sync_cpu_ns)
        g_ck[id].sync_cpu_ns = ns;
    pthread_mutex_unlock(&g_ck_mu);
}

static bool obs_full(int64_t id)
{
    if (id <= 0 || id >= MAX_CK)
        return false;
    pthread_mutex_lock(&g_ck_mu);
    bool f = g_ck[id].snapped && !g_ck[id].not_full;
    pthread_mutex_unlock(&g_ck_mu);
    return f;
}

/* The record-gap clock that every observed operator keeps (one per subtask). */
typedef struct gap_clock {
    uint64_t last;
    uint64_t max_bg; /* largest gap outside checkpoints, ticks */
    int64_t armed;   /* checkpoint whose synchronous part is running: the next record closes it */
    int64_t rows;
    int64_t cur;       /* the last checkpoint snapshotted here */
    uint64_t cur_post; /* the largest gap since, ticks */
} gap_clock;

static void gap_arm(gap_clock *g, int64_t id)
{
    g->armed = id;
    g->cur = id;
    g->cur_post = 0;
}

static inline void gap_tick(gap_clock *g)
{
    uint64_t t = ticks();
    if (g->armed) {
        obs_gap(g->armed, (double)(t - g->last) * ns_per_tick);
        g->armed = 0;
    } else if (g->rows) {
        uint64_t d = t - g->last;
        if (d > g->max_bg)
            g->max_bg = d;
        if (g->cur && d > g->cur_post) {
            g->cur_post = d;
            obs_post(g->cur, (double)d * ns_per_tick);
        }
    }
    g->last = t;
    g->rows++;
}

static _Atomic uint64_t g_max_bg_ticks;

static void gap_close(const gap_clock *g)
{
    uint64_t cur = atomic_load(&g_max_bg_ticks);
    while (g->max_bg > cur && !atomic_compare_exchange_weak(&g_max_bg_ticks, &cur, g->max_bg))
        ;
}

/* ---- log capture ------------------------------------------------------------------------ */

static char g_workdir[4096];
static char g_logpath[4200];

static int capture_begin(void)
{
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int fd = open(g_logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
    return saved;
}

static void capture_end(int saved)
{
    fflush(stderr);
    if (saved >= 0) {
        dup2(saved, STDERR_FILENO);
        close(saved);
    }
}

static const char *field(const char *line, const char *key)
{
    const char *p = strstr(line, key);
    return p ? p + strlen(key) : NULL;
}

/* Reads the captured log into g_ck; copies the retained checkpoint's path, if any, into
 * retained. Failures and errors are echoed to stderr. */
static void parse_log(char *retained, size_t cap)
{
    if (retained && cap)
        *retained = 0;
    FILE *f = fopen(g_logpath, "r");
    if (!f)
        return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        int hh, mm, ss, ms;
        if (sscanf(line, "%d:%d:%d.%d", &hh, &mm, &ss, &ms) != 4)
            continue;
        double t = ((hh * 60.0 + mm) * 60.0 + ss) * 1000.0 + ms;
        const char *v;
        if ((v = field(line, "event=checkpoint_triggered id="))) {
            long long id = strtoll(v, NULL, 10);
            if (id > 0 && id < MAX_CK)
                g_ck[id].trig_ms = t;
        } else if ((v = field(line, "event=checkpoint_completed id="))) {
            long long id = strtoll(v, NULL, 10);
            if (id > 0 && id < MAX_CK) {
                g_ck[id].done = true;
                g_ck[id].done_ms = t;
                const char *d = field(line, "duration_ms="), *s = field(line, "size_bytes="),
                           *u = field(line, "sync_pause_max_us=");
                g_ck[id].duration_ms = d ? strtod(d, NULL) : 0;
                g_ck[id].size_bytes = s ? strtod(s, NULL) : 0;
                g_ck[id].engine_sync_us = u ? strtod(u, NULL) : -1;
            }
        } else if ((v = field(line, "event=checkpoint_failed id="))) {
            long long id = strtoll(v, NULL, 10);
            if (id > 0 && id < MAX_CK)
                g_ck[id].failed = true;
            fputs(line, stderr);
        } else if ((v = field(line, "event=checkpoints_retained latest="))) {
            if (retained) {
                size_t n = strcspn(v, " \n");
                if (n >= cap)
                    n = cap - 1;
                memcpy(retained, v, n);
                retained[n] = 0;
            }
        } else if (strstr(line, "level=error")) {
            fputs(line, stderr);
        }
    }
    fclose(f);
}

/* ---- one engine run --------------------------------------------------------------------- */

typedef struct run_cfg {
    int par;
    bool ckpt;
    int64_t interval_ms;
    bool retain;         /* RETAIN_ON_CANCELLATION */
    bool only_full;      /* summarise only checkpoints of the full state */
    const char *restore; /* -s */
} run_cfg;

typedef struct ck_summary {
    int completed, failed, n; /* n: those summarised */
    double dur_med, dur_max, size_med, gap_med, gap_max, barrier_med, async_med, post_med, post_max,
        sync_cpu_med, engine_sync_med, engine_sync_max;
} ck_summary;

typedef struct run_out {
    int rc;
    double wall, cpu;
    double others_pct; /* the machine's CPU used by other processes meanwhile */
    long hwm_kb;
    double max_bg_gap_ms;
    ck_summary ck;
    char retained[4096];
} run_out;

typedef void (*build_fn)(sl_env *env, void *arg);

static void summarise(bool only_full, ck_summary *s)
{
    memset(s, 0, sizeof *s);
    static double dur[MAX_CK], size[MAX_CK], gap[MAX_CK], bar[MAX_CK], asy[MAX_CK], post[MAX_CK],
        scpu[MAX_CK], esync[MAX_CK];
    int ng = 0, ne = 0;
    for (int id = 1; id < MAX_CK; id++) {
        const ck_obs *o = &g_ck[id];
        s->failed += o->failed;
        if (!o->done)
            continue;
        s->completed++;
        if (only_full && !(o->snapped && !o->not_full))
            continue;
        dur[s->n] = o->duration_ms;
        size[s->n] = o->size_bytes;
        bar[s->n] = o->snapped ? o->snap_ms - o->trig_ms : 0;
        asy[s->n] = o->snapped ? o->done_ms - o->snap_ms : 0;
        post[s->n] = o->post_ns / 1e6;
        scpu[s->n] = o->sync_cpu_ns / 1e6;
        if (o->engine_sync_us >= 0)
            esync[ne++] = o->engine_sync_us / 1e3;
        s->n++;
        if (o->has_gap)
            gap[ng++] = o->gap_ns / 1e6;
    }
    s->dur_med = median(dur, s->n);
    s->dur_max = maxof(dur, s->n);
    s->size_med = median(size, s->n);
    s->barrier_med = median(bar, s->n);
    s->async_med = median(asy, s->n);
    s->gap_med = median(gap, ng);
    s->gap_max = maxof(gap, ng);
    s->post_med = median(post, s->n);
    s->post_max = maxof(post, s->n);
    s->sync_cpu_med = median(scpu, s->n);
    s->engine_sync_med = ne ? median(esync, ne) : -1;
    s->engine_sync_max = ne ? maxof(esync, ne) : -1;
}

static bool g_verbose;

/* -v: one line per checkpoint of the last run. */
static void print_checkpoints(void)
{
    for (int id = 1; id < MAX_CK; id++) {
        const ck_obs *o = &g_ck[id];
        if (!o->snapped && !o->done && !o->failed)
            continue;
        printf("    chk %d: %s%s barrier %.0f ms, pause %.2f ms (sync CPU %.2f ms, engine's "
               "sync_pause_max %.2f ms), largest gap after %.2f ms, duration %.0f ms, size %.2f "
               "MB\n",
               id,
               o->done     ? "completed"
               : o->failed ? "failed"
                           : "not completed",
               o->snapped && !o->not_full ? ", full state," : ",",
               o->snapped ? o->snap_ms - o->trig_ms : 0, o->gap_ns / 1e6, o->sync_cpu_ns / 1e6,
               o->engine_sync_us / 1e3, o->post_ns / 1e6, o->duration_ms, o->size_bytes / 1e6);
    }
}

static void run_engine(const run_cfg *cfg, build_fn build, void *arg, const char *name,
                       run_out *out)
{
    memset(out, 0, sizeof *out);
    obs_reset();
    atomic_store(&g_max_bg_ticks, 0);
    char p[16];
    snprintf(p, sizeof p, "%d", cfg->par);
    char *argv[6] = {"bench", "-p", p, NULL, NULL, NULL};
    int argc = 3;
    if (cfg->restore) {
        argv[argc++] = "-s";
        argv[argc++] = (char *)cfg->restore;
    }
    char err[512];
    int code;
    sl_env *env = sl_env_create(argc, argv, NULL, NULL, &code, err, sizeof err);
    if (!env) {
        fprintf(stderr, "%s\n", err);
        out->rc = code ? code : 1;
        return;
    }
    sl_env_set_runtime_mode(env, SL_STREAMING);
    if (cfg->ckpt) {
        sl_env_enable_checkpointing(env, cfg->interval_ms, SL_EXACTLY_ONCE);
        sl_env_set_checkpoint_dir(env, g_workdir);
        if (cfg->retain)
            sl_env_set_externalized_checkpoints(env, SL_RETAIN_ON_CANCELLATION);
    }
    sl_env_set_restart_none(env);
    build(env, arg);
    reset_hwm();
    int saved = capture_begin();
    load_probe lp = probe_start();
    int rc = sl_execute(env, name);
    out->wall = now_s() - lp.t;
    out->cpu = cpu_s() - lp.cpu;
    out->others_pct = probe_others_pct(&lp);
    capture_end(saved);
    out->hwm_kb = vm_hwm_kb();
    out->rc = rc;
    if (rc && rc != SL_ECANCELED)
        fprintf(stderr, "engine: %s\n", sl_env_error(env));
    sl_env_destroy(env);
    parse_log(out->retained, sizeof out->retained);
    summarise(cfg->only_full, &out->ck);
    if (g_verbose && cfg->ckpt)
        print_checkpoints();
    out->max_bg_gap_ms = (double)atomic_load(&g_max_bg_ticks) * ns_per_tick / 1e6;
}

/* ---- the counting sink that observes the keyed task ------------------------------------- */

static _Atomic int64_t sink_rows, sink_total;

typedef struct sink_local {
    gap_clock g;
    int64_t total;
} sink_local;

static int sink_open(sl_ctx *ctx)
{
    sl_ctx_set_local(ctx, calloc(1, sizeof(sink_local)));
    return 0;
}

static int sink_invoke(sl_ctx *ctx, const sl_value *in)
{
    sink_local *l = sl_ctx_local(ctx);
    gap_tick(&l->g);
    l->total += in[1].u.i64;
    return 0;
}

static int sink_snapshot(sl_ctx *ctx, int64_t id)
{
    sink_local *l = sl_ctx_local(ctx);
    obs_snapshot(id, true);
    gap_arm(&l->g, id);
    return 0;
}

static int sink_close(sl_ctx *ctx)
{
    sink_local *l = sl_ctx_local(ctx);
    if (!l)
        return 0;
    atomic_fetch_add(&sink_rows, l->g.rows);
    atomic_fetch_add(&sink_total, l->total);
    gap_close(&l->g);
    free(l);
    return 0;
}

static void add_counting_sink(sl_stream *s)
{
    sl_sink_fn sink = {.open = sink_open,
                       .invoke = sink_invoke,
                       .close = sink_close,
                       .snapshot_state = sink_snapshot};
    sl_set_uid(sl_add_sink(s, "count", &sink), "count");
}

/* ---- (a) word count --------------------------------------------------------------------- */

/* The corpus (bench_common.h) and the bare loop are bench/word_count.c's. */

typedef struct slot {
    uint64_t hash;
    const char *word;
    uint32_t len;
    int64_t count;
} slot;

/* The table grows with the distinct words (see bench/word_count.c's bare loop). */
static int64_t bare_word_count(const corpus *c)
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
    free(t);
    return total;
}

static const corpus *g_corpus;

static int gen_line(sl_ctx *ctx, void *user, int64_t i, sl_value *out)
{
    (void)ctx;
    (void)user;
    const corpus *c = g_corpus;
    size_t a = c->line_at[i], b = c->line_at[i + 1] - 1;
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

static void build_wc(sl_env *env, void *arg)
{
    const corpus *c = arg;
    g_corpus = c;
    sl_stream *lines = sl_from_generator(env, "line:str", (int64_t)c->nlines, gen_line, NULL);
    sl_set_uid(lines, "lines");
    sl_flat_map_fn fm = {.flat_map = split};
    sl_stream *words = sl_set_uid(sl_flat_map(lines, "word:str,count:i64", &fm), "split");
    sl_stream *counts = sl_set_uid(sl_sum(sl_key_by(words, 0), 1), "sum");
    add_counting_sink(counts);
}

/* ---- (b) keyed sum over K keys ---------------------------------------------------------- */

typedef struct keyed_arg {
    int64_t records, keys;
} keyed_arg;

static int64_t g_keys;

static inline int64_t key_of(int64_t i, int64_t keys)
{
    return (int64_t)(splitmix((uint64_t)i) % (uint64_t)keys);
}

static int gen_kv(sl_ctx *ctx, void *user, int64_t i, sl_value *out)
{
    (void)ctx;
    (void)user;
    out[0] = SL_I64(key_of(i, g_keys));
    out[1] = SL_I64(1);
    return 0;
}

static void build_keyed(sl_env *env, void *arg)
{
    const keyed_arg *k = arg;
    g_keys = k->keys;
    sl_stream *src = sl_from_generator(env, "key:i64,value:i64", k->records, gen_kv, NULL);
    sl_set_uid(src, "kv");
    sl_stream *sums = sl_set_uid(sl_sum(sl_key_by(src, 0), 1), "sum");
    add_counting_sink(sums);
}

typedef struct kslot {
    int64_t key;
    int64_t count;
    bool used;
} kslot;

/* The same work as the engine job: generate (key, 1), find the key's running sum in an
 * open-addressing table (keys hashed with the engine's hash), add, "emit" the new sum. */
static int64_t bare_keyed(int64_t records, int64_t keys, int64_t *distinct)
{
    size_t cap = 1024;
    while (cap < (size_t)keys * 2)
        cap <<= 1;
    kslot *t = calloc(cap, sizeof *t);
    int64_t used = 0, emitted = 0;
    for (int64_t i = 0; i < records; i++) {
        int64_t k = key_of(i, keys);
        size_t h = (size_t)sl__hash(&k, sizeof k) & (cap - 1);
        while (t[h].used && t[h].key != k)
            h = (h + 1) & (cap - 1);
        if (!t[h].used) {
            t[h] = (kslot){k, 0, true};
            used++;
        }
        t[h].count += 1;
        emitted += t[h].count > 0;
    }
    free(t);
    *distinct = used;
    return emitted;
}

/* ---- (c) keyed state of a given size, checkpoints of it, restore ------------------------ */

#define PATTERN 4096
static uint8_t g_pattern[PATTERN + 4096];

typedef struct state_arg {
    int64_t keys; /* N: keys 0..N-1 are written first, then updated at random */
    int pad;      /* bytes of the value's pad field */
    int full_checkpoints;
    double stop_after_update_s; /* > 0: no checkpoints; stop after this long of updates */
    bool child;                 /* restore child: read every key back */
} state_arg;

static state_arg g_sa;
static _Atomic int64_t g_processed, g_fill_done_ns, g_full_done, g_base = -1;
static _Atomic int64_t g_t_init_ns, g_t_first_ns, g_t_verified_ns, g_reads, g_sum_n, g_bad;
static atomic_bool g_stop_sent;
static _Atomic int64_t g_stop_ns, g_stop_processed;

static int gen_key(sl_ctx *ctx, void *user, int64_t i, sl_value *out)
{
    (void)ctx;
    (void)user;
    int64_t n = g_sa.keys;
    if (g_sa.child) {
        int64_t b = atomic_load_explicit(&g_base, memory_order_relaxed);
        if (b < 0) {
            atomic_store(&g_base, i);
            b = i;
        }
        out[0] = SL_I64((i - b) % n);
    } else {
        out[0] = SL_I64(i < n ? i : key_of(i, n));
    }
    return 0;
}

typedef struct fill_local {
    gap_clock g;
    sl_state *st;
    int64_t cpu_armed, cpu_at; /* checkpoint and thread CPU time at its snapshot hook */
} fill_local;

static const sl_state_desc fill_desc = {
    .name = "v", .kind = SL_STATE_VALUE, .schema = "n:i64,pad:bytes"};

static int fill_open(sl_ctx *ctx)
{
    fill_local *l = calloc(1, sizeof *l);
    sl_ctx_set_local(ctx, l);
    l->st = sl_keyed_state(ctx, &fill_desc);
    return l->st ? 0 : SL_ESTATE;
}

static int fill_init(sl_ctx *ctx)
{
    (void)ctx;
    max_store(&g_t_init_ns, clock_ns(CLOCK_MONOTONIC));
    return 0;
}

static void stop_job(void)
{
    if (!atomic_exchange(&g_stop_sent, true)) {
        atomic_store(&g_stop_processed, atomic_load(&g_processed));
        atomic_store(&g_stop_ns, clock_ns(CLOCK_MONOTONIC));
        kill(getpid(), SIGTERM);
    }
}

static int fill_process(sl_ctx *ctx, const sl_value *in)
{
    fill_local *l = sl_ctx_local(ctx);
    gap_tick(&l->g);
    if (l->cpu_armed) {
        obs_sync_cpu(l->cpu_armed, (double)(clock_ns(CLOCK_THREAD_CPUTIME_ID) - l->cpu_at));
        l->cpu_armed = 0;
    }
    int64_t key = in[0].u.i64;
    const uint8_t *want = g_pattern + (uint64_t)key % PATTERN;
    sl_value v[2];
    int found = sl_value_get(l->st, v);
    if (found < 0)
        return found;
    if (g_sa.child) {
        if (l->g.rows == 1) {
            int64_t now = clock_ns(CLOCK_MONOTONIC), z = 0;
            atomic_compare_exchange_strong(&g_t_first_ns, &z, now);
        }
        if (atomic_load_explicit(&g_stop_sent, memory_order_relaxed))
            return 0;
        if (!found || v[1].u.s.len != (size_t)g_sa.pad || memcmp(v[1].u.s.ptr, want, v[1].u.s.len))
            atomic_fetch_add(&g_bad, 1);
        else
            atomic_fetch_add_explicit(&g_sum_n, v[0].u.i64, memory_order_relaxed);
        if (atomic_fetch_add(&g_reads, 1) + 1 == g_sa.keys) {
            atomic_store(&g_t_verified_ns, clock_ns(CLOCK_MONOTONIC));
            stop_job();
        }
        return 0;
    }
    sl_value row[2] = {SL_I64(found ? v[0].u.i64 + 1 : 1), sl_bytes(want, (size_t)g_sa.pad)};
    int rc = sl_value_update(l->st, row);
    if (rc < 0)
        return rc;
    int64_t done = atomic_fetch_add_explicit(&g_processed, 1, memory_order_relaxed) + 1;
    if (done == g_sa.keys)
        atomic_store(&g_fill_done_ns, clock_ns(CLOCK_MONOTONIC));
    if (g_sa.stop_after_update_s > 0 && (l->g.rows & 4095) == 0 && done > g_sa.keys) {
        double since = (double)(clock_ns(CLOCK_MONOTONIC) - atomic_load(&g_fill_done_ns)) / 1e9;
        if (since >= g_sa.stop_after_update_s)
            stop_job();
    }
    return 0;
}

static int fill_snapshot(sl_ctx *ctx, int64_t id)
{
    fill_local *l = sl_ctx_local(ctx);
    obs_snapshot(id, atomic_load(&g_processed) >= g_sa.keys);
    gap_arm(&l->g, id);
    l->cpu_armed = id;
    l->cpu_at = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    return 0;
}

static int fill_notify(sl_ctx *ctx, int64_t id)
{
    (void)ctx;
    if (obs_full(id) && atomic_fetch_add(&g_full_done, 1) + 1 >= g_sa.full_checkpoints)
        stop_job();
    return 0;
}

static int fill_close(sl_ctx *ctx)
{
    fill_local *l = sl_ctx_local(ctx);
    if (!l)
        return 0;
    gap_close(&l->g);
    free(l);
    return 0;
}

static int null_invoke(sl_ctx *ctx, const sl_value *in)
{
    (void)ctx;
    (void)in;
    return 0;
}

static void build_state(sl_env *env, void *arg)
{
    (void)arg;
    sl_stream *src = sl_from_generator(env, "key:i64", -1, gen_key, NULL);
    sl_set_parallelism(sl_set_uid(src, "keys"), 1);
    sl_process_fn fn = {.open = fill_open,
                        .close = fill_close,
                        .initialize_state = fill_init,
                        .process = fill_process,
                        .snapshot_state = fill_snapshot,
                        .notify_checkpoint_complete = fill_notify};
    sl_stream *st = sl_set_uid(sl_process(sl_key_by(src, 0), "key:i64", &fn), "fill");
    sl_sink_fn sink = {.invoke = null_invoke};
    sl_set_uid(sl_add_sink(st, "none", &sink), "none");
}

static void state_reset(void)
{
    atomic_store(&g_processed, 0);
    atomic_store(&g_fill_done_ns, 0);
    atomic_store(&g_full_done, 0);
    atomic_store(&g_base, -1);
    atomic_store(&g_t_init_ns, 0);
    atomic_store(&g_t_first_ns, 0);
    atomic_store(&g_t_verified_ns, 0);
    atomic_store(&g_reads, 0);
    atomic_store(&g_sum_n, 0);
    atomic_store(&g_bad, 0);
    atomic_store(&g_stop_sent, false);
    atomic_store(&g_stop_ns, 0);
    atomic_store(&g_stop_processed, 0);
}

static void make_pattern(void)
{
    uint64_t s = 0x2545F4914F6CDD1Dull;
    for (size_t i = 0; i < sizeof g_pattern; i++)
        g_pattern[i] = (uint8_t)rng(&s);
}

/* The restore child: `bench_checkpoint --restore-child KEYS PAD P CHK`. Prints one line. */
static int restore_child(int argc, char **argv)
{
    int64_t t_main = clock_ns(CLOCK_MONOTONIC);
    if (argc < 6)
        return 2;
    make_pattern();
    g_sa = (state_arg){.keys = strtoll(argv[2], NULL, 10), .pad = atoi(argv[3]), .child = true};
    state_reset();
    char *eargv[] = {"bench", "-p", argv[4], "-s", argv[5], NULL};
    char err[512];
    int code;
    sl_env *env = sl_env_create(5, eargv, NULL, NULL, &code, err, sizeof err);
    if (!env) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    sl_env_set_restart_none(env);
    build_state(env, NULL);
    int64_t t_exec = clock_ns(CLOCK_MONOTONIC);
    int rc = sl_execute(env, "bench_checkpoint_restore");
    int64_t t_end = clock_ns(CLOCK_MONOTONIC);
    if (rc && rc != SL_ECANCELED)
        fprintf(stderr, "restore child: %s\n", sl_env_error(env));
    sl_env_destroy(env);
    printf("RESTORE rc=%d main=%" PRId64 " exec=%" PRId64 " init=%" PRId64 " first=%" PRId64
           " verified=%" PRId64 " end=%" PRId64 " base=%" PRId64 " sum_n=%" PRId64 " reads=%" PRId64
           " bad=%" PRId64 " hwm_kb=%ld\n",
           rc, t_main, t_exec, atomic_load(&g_t_init_ns), atomic_load(&g_t_first_ns),
           atomic_load(&g_t_verified_ns), t_end, atomic_load(&g_base), atomic_load(&g_sum_n),
           atomic_load(&g_reads), atomic_load(&g_bad), vm_hwm_kb());
    return rc && rc != SL_ECANCELED ? 1 : 0;
}

typedef struct restore_out {
    bool ok;
    double to_first_s; /* process spawn to first record after restore */
    double restore_s;  /* sl_execute called to the keyed operator restored */
    double verify_s;   /* reading every key back */
    double startup_s;  /* spawn to main() */
    double exec_s;     /* spawn to sl_execute called */
    long hwm_kb;
    char why[4608];
} restore_out;

static int64_t kv_i64(const char *line, const char *key)
{
    const char *p = field(line, key);
    return p ? strtoll(p, NULL, 10) : -1;
}

static void run_restore(const state_arg *sa, int par, const char *chk, bool cold, restore_out *out)
{
    memset(out, 0, sizeof *out);
    if (cold)
        evict_from_cache(chk);
    char keys[32], pad[16], p[16];
    snprintf(keys, sizeof keys, "%" PRId64, sa->keys);
    snprintf(pad, sizeof pad, "%d", sa->pad);
    snprintf(p, sizeof p, "%d", par);
    char *argv[] = {"bench_checkpoint", "--restore-child", keys, pad, p, (char *)chk, NULL};
    int pfd[2];
    if (pipe(pfd) < 0) {
        snprintf(out->why, sizeof out->why, "pipe: %s", strerror(errno));
        return;
    }
    char childlog[4300];
    snprintf(childlog, sizeof childlog, "%s/restore-child.log", g_workdir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, pfd[0]);
    posix_spawn_file_actions_addclose(&fa, pfd[1]);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, childlog, O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    pid_t pid;
    int64_t t_spawn = clock_ns(CLOCK_MONOTONIC);
    int e = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    if (e) {
        close(pfd[0]);
        snprintf(out->why, sizeof out->why, "posix_spawn: %s", strerror(e));
        return;
    }
    char line[1024] = {0};
    FILE *f = fdopen(pfd[0], "r");
    char buf[1024];
    while (f && fgets(buf, sizeof buf, f))
        if (!strncmp(buf, "RESTORE ", 8))
            snprintf(line, sizeof line, "%s", buf);
    if (f)
        fclose(f);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!*line || !WIFEXITED(status) || WEXITSTATUS(status)) {
        snprintf(out->why, sizeof out->why, "restore child failed (status %d), see %s", status,
                 childlog);
        return;
    }
    int64_t main_ns = kv_i64(line, "main="), exec_ns = kv_i64(line, "exec="),
            init_ns = kv_i64(line, "init="), first_ns = kv_i64(line, "first="),
            ver_ns = kv_i64(line, "verified="), base = kv_i64(line, "base="),
            sum_n = kv_i64(line, "sum_n="), reads = kv_i64(line, "reads="),
            bad = kv_i64(line, "bad=");
    out->hwm_kb = (long)kv_i64(line, "hwm_kb=");
    out->startup_s = (double)(main_ns - t_spawn) / 1e9;
    out->exec_s = (double)(exec_ns - t_spawn) / 1e9;
    out->restore_s = (double)(init_ns - exec_ns) / 1e9;
    out->to_first_s = (double)(first_ns - t_spawn) / 1e9;
    out->verify_s = (double)(ver_ns - first_ns) / 1e9;
    if (reads != sa->keys || bad != 0 || sum_n != base || !init_ns || !first_ns) {
        snprintf(out->why, sizeof out->why,
                 "restored state wrong: %" PRId64 " keys read of %" PRId64 ", %" PRId64
                 " bad, counters add up to %" PRId64 " but the source offset is %" PRId64,
                 reads, sa->keys, bad, sum_n, base);
        return;
    }
    out->ok = true;
}

/* ---- reports ---------------------------------------------------------------------------- */

typedef struct tp_row {
    double rate, per_cpu;
    run_out r;
    bool ok;
} tp_row;

static void print_ck_header(void)
{
    printf("%-26s %8s %8s %6s %6s %5s %7s %7s %8s %7s %8s %7s %7s %7s %7s %6s\n", "run", "Mrec/s",
           "Mrec/cpu", "ratio", "r/cpu", "ckpts", "dur_med", "dur_max", "size_MB", "pause",
           "pause_mx", "eng_syn", "bg_gap", "barrier", "peakMB", "oth%");
}

static void print_ck_row(const char *label, double rate, double per_cpu, double ratio,
                         double ratio_cpu, double others, const run_out *r)
{
    if (!r) {
        printf("%-26s %8.2f %8.2f %6.2f %6.2f %87.0f\n", label, rate / 1e6, per_cpu / 1e6, ratio,
               ratio_cpu, others);
        return;
    }
    printf("%-26s %8.2f %8.2f %6.2f %6.2f %5d %7.0f %7.0f %8.2f %7.2f %8.2f %7.2f %7.2f %7.0f "
           "%7.0f %6.0f\n",
           label, rate / 1e6, per_cpu / 1e6, ratio, ratio_cpu, r->ck.completed, r->ck.dur_med,
           r->ck.dur_max, r->ck.size_med / 1e6, r->ck.gap_med, r->ck.gap_max, r->ck.engine_sync_med,
           r->max_bg_gap_ms, r->ck.barrier_med, (double)r->hwm_kb / 1024, others);
}

typedef struct opts {
    const char *mode;
    int runs, par;
    int64_t words, vocab, records, keys, interval_ms;
    bool big, keep;
    bool
        only_ckpt; /* --only-checkpointing: for profiling, run nothing but the checkpointing runs */
    int64_t state_keys;
    int state_pad;
} opts;

/* Runs the job without and with checkpoints `runs` times (alternating which goes first),
 * and the bare loop once per run; prints each run and the medians. */
static int throughput(const opts *o, const char *title, build_fn build, void *arg, int64_t nrec,
                      int64_t (*bare)(void *), int64_t expect_rows)
{
    printf("\n== %s: %" PRId64 " records, p=%d, checkpoints every %" PRId64 " ms vs none, %d "
           "run(s)\n",
           title, nrec, o->par, o->interval_ms, o->runs);
    print_ck_header();
    double bare_rate[64], bare_cpu[64], rate[2][64], cpu[2][64], ratio[64], ratio_cpu[64];
    double dur[64], dur_mx[64], esync[64], size[64], pause[64], pause_mx[64], bar[64], nck[64];
    double bg[2][64], hwm[2][64], oth[2][64], bare_o[64];
    int fails = 0, R = o->runs > 64 ? 64 : o->runs;
    if (o->only_ckpt) {
        for (int k = 0; k < R; k++) {
            run_cfg cfg = {.par = o->par, .ckpt = true, .interval_ms = o->interval_ms};
            run_out r;
            run_engine(&cfg, build, arg, "bench_checkpoint", &r);
            print_ck_row("engine ckpt 1s", (double)nrec / r.wall, (double)nrec / r.cpu, 0, 0,
                         r.others_pct, &r);
        }
        return 0;
    }
    for (int k = 0; k < R; k++) {
        load_probe lp = probe_start();
        int64_t got = bare(arg);
        double w = now_s() - lp.t, c = cpu_s() - lp.cpu;
        double bare_oth = probe_others_pct(&lp);
        bare_o[k] = bare_oth;
        bare_rate[k] = (double)nrec / w;
        bare_cpu[k] = (double)nrec / c;
        if (got != nrec) {
            fprintf(stderr, "bare loop counted %" PRId64 ", expected %" PRId64 "\n", got, nrec);
            fails++;
        }
        char label[64];
        snprintf(label, sizeof label, "#%d bare C loop", k + 1);
        print_ck_row(label, bare_rate[k], bare_cpu[k], 1, 1, bare_oth, NULL);
        run_out r[2];
        for (int j = 0; j < 2; j++) {
            int ck = k % 2 ? 1 - j : j;
            run_cfg cfg = {.par = o->par, .ckpt = ck, .interval_ms = o->interval_ms};
            atomic_store(&sink_rows, 0);
            atomic_store(&sink_total, 0);
            run_engine(&cfg, build, arg, "bench_checkpoint", &r[ck]);
            int64_t rows = atomic_load(&sink_rows);
            bool ok = r[ck].rc == 0 && rows == expect_rows && r[ck].ck.failed == 0;
            if (!ok) {
                fprintf(stderr,
                        "engine run %s: rc %d, sink rows %" PRId64 " (expected %" PRId64
                        "), %d failed checkpoints\n",
                        ck ? "with checkpoints" : "without", r[ck].rc, rows, expect_rows,
                        r[ck].ck.failed);
                fails++;
            }
            rate[ck][k] = (double)nrec / r[ck].wall;
            cpu[ck][k] = (double)nrec / r[ck].cpu;
            bg[ck][k] = r[ck].max_bg_gap_ms;
            hwm[ck][k] = (double)r[ck].hwm_kb;
            oth[ck][k] = r[ck].others_pct;
        }
        for (int ck = 0; ck < 2; ck++) {
            snprintf(label, sizeof label, "#%d engine %s", k + 1, ck ? "ckpt 1s" : "no ckpt");
            print_ck_row(label, rate[ck][k], cpu[ck][k], rate[ck][k] / bare_rate[k],
                         cpu[ck][k] / bare_cpu[k], r[ck].others_pct, ck ? &r[1] : &r[0]);
        }
        ratio[k] = rate[1][k] / rate[0][k];
        ratio_cpu[k] = cpu[1][k] / cpu[0][k];
        printf("#%d ckpt/no-ckpt throughput %.3f (per CPU-s %.3f)\n", k + 1, ratio[k],
               ratio_cpu[k]);
        dur[k] = r[1].ck.dur_med;
        size[k] = r[1].ck.size_med;
        pause[k] = r[1].ck.gap_med;
        dur_mx[k] = r[1].ck.dur_max;
        esync[k] = r[1].ck.engine_sync_med;
        pause_mx[k] = r[1].ck.gap_max;
        bar[k] = r[1].ck.barrier_med;
        nck[k] = r[1].ck.completed;
    }
    double mb = median(bare_rate, R), mbc = median(bare_cpu, R);
    printf("-- medians of %d run(s)\n", R);
    print_ck_row("bare C loop", mb, mbc, 1, 1, median(bare_o, R), NULL);
    for (int ck = 0; ck < 2; ck++) {
        run_out m = {0};
        if (ck) {
            m.ck.completed = (int)median(nck, R);
            m.ck.dur_med = median(dur, R);
            m.ck.dur_max = maxof(dur_mx, R);
            m.ck.engine_sync_med = median(esync, R);
            m.ck.size_med = median(size, R);
            m.ck.gap_med = median(pause, R);
            m.ck.gap_max = maxof(pause_mx, R);
            m.ck.barrier_med = median(bar, R);
        }
        m.max_bg_gap_ms = median(bg[ck], R);
        m.hwm_kb = (long)median(hwm[ck], R);
        double rr = median(rate[ck], R), rc = median(cpu[ck], R);
        print_ck_row(ck ? "engine ckpt 1s" : "engine no ckpt", rr, rc, rr / mb, rc / mbc,
                     median(oth[ck], R), &m);
    }
    printf("ckpt/no-ckpt throughput (median of per-run ratios): %.3f wall, %.3f per CPU-s\n",
           median(ratio, R), median(ratio_cpu, R));
    return fails;
}

static const corpus *g_wc_corpus;
static int64_t bare_wc_adapter(void *arg)
{
    (void)arg;
    return bare_word_count(g_wc_corpus);
}

static int64_t bare_keyed_adapter(void *arg)
{
    const keyed_arg *k = arg;
    int64_t distinct;
    return bare_keyed(k->records, k->keys, &distinct);
}

/* One state size: fill, checkpoints of the full state, cancel, restore twice (cold, warm);
 * then the same job without checkpoints for as long, for the update throughput. */
enum {
    S_SIZE,
    S_DISK,
    S_DUR,
    S_BARRIER,
    S_ASYNC,
    S_PAUSE,
    S_PAUSE_MAX,
    S_SYNC_CPU,
    S_ENGINE_SYNC,
    S_POST,
    S_BG_NOCK,
    S_COLD_FIRST,
    S_COLD_STATE,
    S_WARM_FIRST,
    S_WARM_STATE,
    S_UPD_CK,
    S_UPD_NOCK,
    S_FILL,
    S_RSS_CK,
    S_RSS_NOCK,
    S_RSS_CHILD,
    NSTAT
};

/* Records per second of updates (after the fill) up to the stop. */
static double update_rate(double t0, int64_t keys)
{
    int64_t fill = atomic_load(&g_fill_done_ns), stop = atomic_load(&g_stop_ns);
    int64_t n = atomic_load(&g_stop_processed) - keys;
    (void)t0;
    if (!fill || stop <= fill || n <= 0)
        return 0;
    return (double)n / ((double)(stop - fill) / 1e9);
}

static int state_case(const opts *o, int64_t keys, int pad, double *v)
{
    state_arg sa = {.keys = keys, .pad = pad, .full_checkpoints = 3};
    g_sa = sa;
    state_reset();
    run_cfg cfg = {.par = o->par,
                   .ckpt = true,
                   .interval_ms = o->interval_ms,
                   .retain = true,
                   .only_full = true};
    run_out r;
    double t0 = now_s();
    run_engine(&cfg, build_state, NULL, "bench_checkpoint_state", &r);
    int64_t fill_ns = atomic_load(&g_fill_done_ns), stop_ns = atomic_load(&g_stop_ns);
    double fill_s = fill_ns ? (double)fill_ns / 1e9 - t0 : 0;
    double update_s = fill_ns && stop_ns > fill_ns ? (double)(stop_ns - fill_ns) / 1e9 : 0;
    double upd_ck = update_rate(t0, keys);
    if (r.rc != SL_ECANCELED || !*r.retained || r.ck.n < 1) {
        fprintf(stderr,
                "state run: rc %d, retained '%s', %d full checkpoints, %d failed; log in %s\n",
                r.rc, r.retained, r.ck.n, r.ck.failed, g_logpath);
        return 1;
    }
    uint64_t on_disk = du_bytes(r.retained);
    if (o->only_ckpt) {
        printf("state %" PRId64 " keys: %d checkpoints, size %.1f MB, duration med %.0f ms, pause "
               "med %.2f ms, largest gap after a snapshot med %.2f ms\n",
               keys, r.ck.completed, r.ck.size_med / 1e6, r.ck.dur_med, r.ck.gap_med,
               r.ck.post_med);
        if (!o->keep)
            rm_rf(r.retained);
        return 0;
    }
    restore_out cold, warm;
    run_restore(&sa, o->par, r.retained, true, &cold);
    run_restore(&sa, o->par, r.retained, false, &warm);
    int fails = 0;
    if (!cold.ok || !warm.ok) {
        fprintf(stderr, "restore: %s %s\n", cold.ok ? "" : cold.why, warm.ok ? "" : warm.why);
        fails++;
    }
    char jobdir[4096];
    snprintf(jobdir, sizeof jobdir, "%s", r.retained);
    char *slash = strrchr(jobdir, '/');
    if (slash)
        *slash = 0;
    if (!o->keep)
        rm_rf(jobdir);
    /* the same job without checkpoints, updating for as long */
    state_arg nc = sa;
    nc.stop_after_update_s = update_s > 1 ? update_s : 1;
    g_sa = nc;
    state_reset();
    run_cfg ncfg = {.par = o->par};
    run_out rn;
    double t1 = now_s();
    run_engine(&ncfg, build_state, NULL, "bench_checkpoint_state", &rn);
    double upd_nock = update_rate(t1, keys);

    printf("state %" PRId64 " keys x %d-byte values: fill %.2f s, then %.1f s of updates; %d "
           "checkpoints, %d of the full state (other processes used %.0f%% of the machine "
           "meanwhile, %.0f%% in the run without checkpoints):\n",
           keys, pad, fill_s, update_s, r.ck.completed, r.ck.n, r.others_pct, rn.others_pct);
    printf("  size %.1f MB (retained chk-N on disk %.1f MB); duration med %.0f ms (max %.0f) = "
           "barrier %.0f ms + snapshot to completed %.0f ms\n",
           r.ck.size_med / 1e6, (double)on_disk / 1e6, r.ck.dur_med, r.ck.dur_max, r.ck.barrier_med,
           r.ck.async_med);
    printf("  pause med %.2f ms (max %.2f; synchronous part's CPU time med %.2f ms; the engine's "
           "sync_pause_max med %.2f ms, max %.2f); largest gap after a snapshot med %.2f ms (max "
           "%.2f); largest gap of the run without checkpoints %.2f ms\n",
           r.ck.gap_med, r.ck.gap_max, r.ck.sync_cpu_med, r.ck.engine_sync_med,
           r.ck.engine_sync_max, r.ck.post_med, r.ck.post_max, rn.max_bg_gap_ms);
    printf("  updates %.2f M rec/s with checkpoints back to back, %.2f M rec/s without (%.3f); "
           "peak RSS %.0f MB with, %.0f MB without\n",
           upd_ck / 1e6, upd_nock / 1e6, upd_nock > 0 ? upd_ck / upd_nock : 0,
           (double)r.hwm_kb / 1024, (double)rn.hwm_kb / 1024);
    printf("  restore (-s, new process): cold cache %.2f s to first record (start to sl_execute "
           "%.3f s, state %.2f s), warm %.2f s (state %.2f s); read back %" PRId64
           " keys in %.2f s: %s; child peak RSS %.0f MB\n",
           cold.to_first_s, cold.exec_s, cold.restore_s, warm.to_first_s, warm.restore_s, keys,
           warm.verify_s, cold.ok && warm.ok ? "ok" : "MISMATCH", (double)warm.hwm_kb / 1024);
    v[S_SIZE] = r.ck.size_med / 1e6;
    v[S_DISK] = (double)on_disk / 1e6;
    v[S_DUR] = r.ck.dur_med;
    v[S_BARRIER] = r.ck.barrier_med;
    v[S_ASYNC] = r.ck.async_med;
    v[S_PAUSE] = r.ck.gap_med;
    v[S_PAUSE_MAX] = r.ck.gap_max;
    v[S_SYNC_CPU] = r.ck.sync_cpu_med;
    v[S_ENGINE_SYNC] = r.ck.engine_sync_med;
    v[S_POST] = r.ck.post_med;
    v[S_BG_NOCK] = rn.max_bg_gap_ms;
    v[S_COLD_FIRST] = cold.to_first_s;
    v[S_COLD_STATE] = cold.restore_s;
    v[S_WARM_FIRST] = warm.to_first_s;
    v[S_WARM_STATE] = warm.restore_s;
    v[S_UPD_CK] = upd_ck / 1e6;
    v[S_UPD_NOCK] = upd_nock / 1e6;
    v[S_FILL] = fill_s;
    v[S_RSS_CK] = (double)r.hwm_kb / 1024;
    v[S_RSS_NOCK] = (double)rn.hwm_kb / 1024;
    v[S_RSS_CHILD] = (double)warm.hwm_kb / 1024;
    return fails;
}

static int state_sizes(const opts *o)
{
    typedef struct state_case_def {
        const char *label;
        int64_t keys;
        int pad;
        int runs;
    } state_case_def;
    state_case_def cases[3];
    int nc = 0;
    if (o->state_keys > 0) {
        cases[nc++] = (state_case_def){"custom", o->state_keys, o->state_pad, o->runs};
    } else {
        cases[nc++] = (state_case_def){"100 MB", 1000000, o->state_pad, o->runs};
        if (o->big) /* once: about 4 minutes */
            cases[nc++] = (state_case_def){"1 GB", 10000000, o->state_pad, 1};
    }
    int fails = 0;
    for (int c = 0; c < nc; c++) {
        printf("\n== keyed state %s: %" PRId64 " keys x (n:i64, pad:%d bytes), p=%d, checkpoints "
               "every %" PRId64 " ms, %d run(s)\n",
               cases[c].label, cases[c].keys, cases[c].pad, o->par, o->interval_ms, cases[c].runs);
        double v[64][NSTAT] = {{0}};
        int R = cases[c].runs > 64 ? 64 : cases[c].runs;
        for (int k = 0; k < R; k++) {
            printf("#%d ", k + 1);
            fflush(stdout);
            fails += state_case(o, cases[c].keys, cases[c].pad, v[k]);
        }
        if (o->only_ckpt)
            continue;
        double m[NSTAT];
        for (int s = 0; s < NSTAT; s++) {
            double col[64];
            for (int k = 0; k < R; k++)
                col[k] = v[k][s];
            m[s] = median(col, R);
        }
        printf("-- medians of %d run(s), %s:\n", R, cases[c].label);
        printf("| checkpoint size | duration (barrier + snapshot to completed) | pause med / "
               "max (sync CPU; engine's sync_pause_max) | largest gap after a snapshot | largest "
               "gap, no checkpoints | "
               "restore to "
               "first record cold / warm (state load) | updates with / without checkpoints | "
               "peak RSS with / without / restore |\n");
        printf(
            "| %.1f MB | %.0f ms (%.0f + %.0f) | %.2f / %.2f ms (%.2f; %.2f) | %.2f ms | %.2f ms | "
            "%.2f / "
            "%.2f s (%.2f / %.2f s) | %.2f / %.2f M rec/s (%.3f) | %.0f / %.0f / %.0f MB |\n",
            m[S_SIZE], m[S_DUR], m[S_BARRIER], m[S_ASYNC], m[S_PAUSE], m[S_PAUSE_MAX],
            m[S_SYNC_CPU], m[S_ENGINE_SYNC], m[S_POST], m[S_BG_NOCK], m[S_COLD_FIRST],
            m[S_WARM_FIRST], m[S_COLD_STATE], m[S_WARM_STATE], m[S_UPD_CK], m[S_UPD_NOCK],
            m[S_UPD_NOCK] > 0 ? m[S_UPD_CK] / m[S_UPD_NOCK] : 0, m[S_RSS_CK], m[S_RSS_NOCK],
            m[S_RSS_CHILD]);
    }
    return fails;
}

static void usage(const char *me)
{
    fprintf(stderr,
            "usage: %s [--mode wc|keyed|state|all] [--runs R] [--big] [-p P] [--words N]\n"
            "       [--vocab V] [--records N] [--keys K] [--interval MS] [--dir D] [--keep]\n"
            "       [--state-keys N] [--state-pad B] [--only-checkpointing] [-v]\n",
            me);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--restore-child"))
        return restore_child(argc, argv);
    opts o = {.mode = "all",
              .runs = 3,
              .par = 1,
              .words = 20000000,
              .vocab = 100000,
              .records = 20000000,
              .keys = 1000000,
              .interval_ms = 1000,
              .state_pad = 78};
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--big"))
            o.big = true;
        else if (!strcmp(a, "--keep"))
            o.keep = true;
        else if (!strcmp(a, "-v"))
            g_verbose = true;
        else if (!strcmp(a, "--only-checkpointing"))
            o.only_ckpt = true;
        else if (!v) {
            usage(argv[0]);
            return 2;
        } else if (!strcmp(a, "--mode"))
            o.mode = v, i++;
        else if (!strcmp(a, "--runs"))
            o.runs = atoi(v), i++;
        else if (!strcmp(a, "-p"))
            o.par = atoi(v), i++;
        else if (!strcmp(a, "--words"))
            o.words = strtoll(v, NULL, 10), i++;
        else if (!strcmp(a, "--vocab"))
            o.vocab = strtoll(v, NULL, 10), i++;
        else if (!strcmp(a, "--records"))
            o.records = strtoll(v, NULL, 10), i++;
        else if (!strcmp(a, "--keys"))
            o.keys = strtoll(v, NULL, 10), i++;
        else if (!strcmp(a, "--interval"))
            o.interval_ms = strtoll(v, NULL, 10), i++;
        else if (!strcmp(a, "--dir"))
            dir = v, i++;
        else if (!strcmp(a, "--state-keys"))
            o.state_keys = strtoll(v, NULL, 10), i++;
        else if (!strcmp(a, "--state-pad"))
            o.state_pad = atoi(v), i++;
        else {
            usage(argv[0]);
            return 2;
        }
    }
    if (o.runs < 1 || o.par < 1 || o.keys < 1 || o.vocab < 1 || o.interval_ms < 10) {
        usage(argv[0]);
        return 2;
    }
    setenv("SLUICE_LOG_LEVEL", "info", 1);
    make_pattern();
    calibrate_ticks();
    if (dir)
        snprintf(g_workdir, sizeof g_workdir, "%s", dir);
    else
        snprintf(g_workdir, sizeof g_workdir, "%s/sluice-bench-ckpt-%d", base, (int)getpid());
    mkdir(g_workdir, 0755);
    snprintf(g_logpath, sizeof g_logpath, "%s/engine.log", g_workdir);
    printf("checkpoints in %s; TSC %.3f ns/tick; pause = record gap across the synchronous "
           "part at the keyed task (ms); bg_gap = largest other gap (ms); barrier = trigger to "
           "snapshot at the keyed task (ms); dur = trigger to completed (ms)\n",
           g_workdir, ns_per_tick);
    int fails = 0;
    bool all = !strcmp(o.mode, "all");
    if (all || !strcmp(o.mode, "wc")) {
        corpus c = make_corpus(o.words, (uint64_t)o.vocab);
        g_wc_corpus = &c;
        char title[128];
        snprintf(title, sizeof title, "word count, vocabulary %" PRId64, o.vocab);
        fails += throughput(&o, title, build_wc, &c, c.nwords, bare_wc_adapter, c.nwords);
        free(c.text);
        free(c.line_at);
    }
    if (all || !strcmp(o.mode, "keyed")) {
        keyed_arg k = {.records = o.records, .keys = o.keys};
        char title[128];
        snprintf(title, sizeof title, "keyed sum, %" PRId64 " keys uniform", o.keys);
        fails += throughput(&o, title, build_keyed, &k, o.records, bare_keyed_adapter, o.records);
    }
    if (all || !strcmp(o.mode, "state"))
        fails += state_sizes(&o);
    if (!o.keep)
        rm_rf(g_workdir);
    if (fails)
        fprintf(stderr, "%d check(s) failed\n", fails);
    return fails ? 1 : 0;
}

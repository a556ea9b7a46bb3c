/*
 * bench/rocksdb_state.c - the RocksDB state backend (state.backend.type: rocksdb) against the
 * heap backend and against RocksDB itself, in one run:
 *
 *  1. throughput: a keyed sum through the public API,
 *       generator (key:i64, value:i64) -> key_by(key) -> sum(value) -> counting sink
 *     over N distinct keys (uniform), heap then rocksdb, interleaved --repeat times; events/s
 *     of wall clock and per CPU-second of the whole process (user + system, all threads);
 *  2. access: value-state get + update on random keys through the engine's state layer
 *     (sl_value_get / sl_value_update on a RocksDB keyed backend made by the runtime's
 *     factory, one sl__keyed_backend_set_key per access, sl__state_end_call after it as the
 *     runtime does after each record), next to a bare loop on rocksdb/c.h doing the same
 *     operations (get, then put) on the same key and value bytes with the backend's options
 *     (the sizes are read back from the backend so they cannot drift); and the heap backend
 *     through the same state layer, for scale;
 *  3. restore: a job fills K keys (values of --value-bytes) in rocksdb with a checkpoint every
 *     --interval; once a checkpoint of the full state completes the job cancels itself
 *     (RETAIN_ON_CANCELLATION), and the same program restores it with -s in this process
 *     (--repeat times, the checkpoint files in the page cache): seconds from sl_execute to
 *     the keyed operator's initialize_state (key groups loaded into RocksDB) and to its
 *     open() having registered the state (RocksDB validates every restored entry then), and
 *     MB/s of checkpoint files; the restored job reads a sample of keys back and checks them;
 *  4. --big: fills --big-keys keys with --big-value-bytes random bytes each (5 M x 1000 B:
 *     about 5 GB) with managed memory and --big-memory per subtask (256mb), get + update per
 *     record, and reports VmHWM and VmRSS sampled every 100 ms against the working
 *     directory's size on disk (sampled every 2 s, and at the end of input);
 *  5. --incremental: a rocksdb job filling --inc-keys keys then updating random keys with a
 *     checkpoint every second, with state.backend.incremental false then true, reporting
 *     each mode's checkpoint sizes, what each checkpoint wrote, and durations (the
 *     coordinator's checkpoint_completed log line).
 *
 *   build/bin/bench_rocksdb_state [--keys N[,N...]] [--events N] [--repeat R] [-p P]
 *       [--access-keys N] [--access-ops N] [--restore-keys N[,N...]] [--value-bytes B]
 *       [--interval MS] [--only PARTS] [--big] [--big-keys N] [--big-value-bytes B]
 *       [--big-memory SIZE] [--incremental] [--inc-keys N] [--inc-seconds S] [--csv FILE]
 *
 * PARTS is a comma list of throughput, access, restore, big, incremental (default: the first
 * three; --big and --incremental add theirs). Everything goes to one temporary directory,
 * /tmp/sluice-bench-rocksdb-XXXXXX (RocksDB working directories, the bare loop's database,
 * checkpoints, the engine's log), removed at exit. The engine's log (stderr) is captured in
 * that directory during each job; warnings and errors from it are echoed. --csv FILE appends
 * one tab-separated line per figure: part, case, metric, value.
 */
#include "bench_common.h"
#include "core/config.h"
#include "core/hash.h"
#include "core/row.h"
#include "sluice.h"
#include "state/rocksdb/rocksdb_backend.h"
#include "state/state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#define PROG "bench_rocksdb_state"
#define MAX_LIST 8
#define MAX_REPEAT 64
#define MAX_PARALLELISM 128

/* ---- options ------------------------------------------------------------------------------ */

typedef struct opts {
    int par, repeat;
    int64_t keys[MAX_LIST];
    int nkeys;
    int64_t events; /* 0: twice the keys of each case */
    int64_t access_keys, access_ops;
    int64_t restore_keys[MAX_LIST];
    int nrestore;
    int value_bytes;
    int64_t interval_ms;
    int64_t big_keys;
    int big_value;
    const char *big_memory;
    int64_t inc_keys;
    int inc_seconds;
    bool run_tp, run_access, run_restore, run_big, run_inc;
    const char *csv_path;
} opts;

static const char *g_dir; /* the temporary directory */
static char g_log[PATH_MAX];
static FILE *g_csv;

static void csv(const char *part, const char *cas, const char *metric, double value)
{
    if (g_csv)
        fprintf(g_csv, "%s\t%s\t%s\t%.6g\n", part, cas, metric, value);
}

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t splitmix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* The key of event i among keys distinct keys: uniform, the same on every side. */
static inline int64_t key_of(int64_t i, int64_t keys)
{
    return (int64_t)(splitmix((uint64_t)i) % (uint64_t)keys);
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
    double c[MAX_REPEAT];
    memcpy(c, v, sizeof *c * (size_t)n);
    qsort(c, (size_t)n, sizeof *c, cmp_double);
    return n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
}

/* A line of /proc/self/status ("VmRSS:", "VmHWM:") in kB, or -1. */
static long proc_status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n)) {
            kb = strtol(line + n, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* Resets VmHWM to the current RSS. */
static void reset_hwm(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static _Thread_local uint64_t du_total;

static int du_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (flag == FTW_F)
        du_total += (uint64_t)sb->st_blocks * 512;
    return 0;
}

/* Bytes on disk under path (allocated blocks; files that vanish meanwhile are skipped). */
static uint64_t du_bytes(const char *path)
{
    du_total = 0;
    nftw(path, du_entry, 32, FTW_PHYS);
    return du_total;
}

static void rm_rf(const char *path)
{
    nftw(path, bench__remove_entry, 32, FTW_DEPTH | FTW_PHYS);
}

/* <g_dir>/<name>, made empty. */
static const char *subdir(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", g_dir, name);
    rm_rf(buf);
    if (mkdir(buf, 0755) < 0) {
        fprintf(stderr, PROG ": cannot create %s: %s\n", buf, strerror(errno));
        exit(1);
    }
    return buf;
}

/* The retained checkpoint with the highest id under a checkpoint directory that holds one
 * job: "<dir>/<job-id>/chk-<N>" into out. false when there is none. */
static bool latest_checkpoint(const char *dir, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    char job[PATH_MAX] = "";
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' &&
            (size_t)snprintf(job, sizeof job, "%s/%s", dir, e->d_name) >= sizeof job)
            *job = 0;
    closedir(d);
    if (!*job || !(d = opendir(job)))
        return false;
    long best = -1;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "chk-", 4))
            continue;
        long id = strtol(e->d_name + 4, &end, 10);
        if (!*end && id > best)
            best = id;
    }
    closedir(d);
    if (best < 0)
        return false;
    return (size_t)snprintf(out, cap, "%s/chk-%ld", job, best) < cap;
}

/* ---- running a job ------------------------------------------------------------------------ */

typedef struct job_out {
    int rc;
    double wall, cpu; /* of sl_execute */
} job_out;

/* An environment at parallelism par with state.backend.type backend, RocksDB working
 * directories under localdir, and -s restore (with --allow-non-restored-state) when given.
 * Exits with a message when it cannot be made. */
static sl_env *new_env(const char *backend, int par, const char *localdir, const char *restore)
{
    char p[16], be[64], ld[PATH_MAX + 64];
    snprintf(p, sizeof p, "%d", par);
    snprintf(be, sizeof be, "state.backend.type=%s", backend);
    snprintf(ld, sizeof ld, "state.backend.rocksdb.localdir=%s", localdir);
    char *argv[12] = {PROG, "-p", p, "-D", be, "-D", ld};
    int argc = 7;
    if (restore) {
        argv[argc++] = "-s";
        argv[argc++] = (char *)restore;
        argv[argc++] = "--allow-non-restored-state";
    }
    char err[1024];
    int code;
    sl_env *env = sl_env_create(argc, argv, NULL, NULL, &code, err, sizeof err);
    if (!env) {
        fprintf(stderr, PROG ": %s\n", err);
        exit(1);
    }
    sl_env_set_runtime_mode(env, SL_STREAMING);
    sl_env_set_restart_none(env);
    return env;
}

/* Sets a configuration key; exits with the engine's message when it is refused. */
static void env_set(sl_env *env, const char *key, const char *value)
{
    if (sl_env_set(env, key, value) < 0) {
        fprintf(stderr, PROG ": %s\n", sl_env_error(env));
        exit(1);
    }
}

/* Runs the job with stderr (the engine's log) going to g_log; echoes the log's warnings and
 * errors, and the whole log when the job failed. SL_ECANCELED (a job that stopped itself)
 * is not a failure. Destroys env. */
static job_out run_job(sl_env *env, const char *name)
{
    job_out o = {0};
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int fd = open(g_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
    double t0 = now_s(), c0 = cpu_s();
    o.rc = sl_execute(env, name);
    o.wall = now_s() - t0;
    o.cpu = cpu_s() - c0;
    fflush(stderr);
    if (saved >= 0) {
        dup2(saved, STDERR_FILENO);
        close(saved);
    }
    bool failed = o.rc && o.rc != SL_ECANCELED;
    FILE *f = fopen(g_log, "r");
    char line[4096];
    while (f && fgets(line, sizeof line, f))
        if (failed || strstr(line, "level=error") || strstr(line, "level=warn"))
            fputs(line, stderr);
    if (f)
        fclose(f);
    if (failed)
        fprintf(stderr, PROG ": job %s failed: %s\n", name, sl_env_error(env));
    sl_env_destroy(env);
    return o;
}

static void stop_job(atomic_bool *sent)
{
    if (!atomic_exchange(sent, true))
        kill(getpid(), SIGTERM); /* sl_execute cancels the job and returns SL_ECANCELED */
}

/* ---- 1. keyed-sum throughput -------------------------------------------------------------- */

static int64_t g_tp_keys;
static _Atomic int64_t g_sink_rows;

static int gen_kv(sl_ctx *ctx, void *user, int64_t i, sl_value *out)
{
    (void)ctx;
    (void)user;
    out[0] = SL_I64(key_of(i, g_tp_keys));
    out[1] = SL_I64(1);
    return 0;
}

static int count_open(sl_ctx *ctx)
{
    sl_ctx_set_local(ctx, calloc(2, sizeof(int64_t))); /* next, when the updates began */
    return sl_ctx_local(ctx) ? 0 : SL_ENOMEM;
}

static int count_invoke(sl_ctx *ctx, const sl_value *in)
{
    (void)in;
    (*(int64_t *)sl_ctx_local(ctx))++;
    return 0;
}

static int count_close(sl_ctx *ctx)
{
    int64_t *n = sl_ctx_local(ctx);
    if (n)
        atomic_fetch_add(&g_sink_rows, *n);
    free(n);
    return 0;
}

/* One run of the keyed sum on backend; events/s wall and per CPU-s into rate and per_cpu. */
static bool tp_run(const opts *o, const char *backend, int64_t keys, int64_t events, double *rate,
                   double *per_cpu)
{
    char local[PATH_MAX];
    subdir(local, sizeof local, "rocksdb");
    g_tp_keys = keys;
    atomic_store(&g_sink_rows, 0);
    sl_env *env = new_env(backend, o->par, local, NULL);
    sl_stream *src = sl_from_generator(env, "key:i64,value:i64", events, gen_kv, NULL);
    sl_stream *sums = sl_set_uid(sl_sum(sl_key_by(src, 0), 1), "sum");
    sl_sink_fn sink = {.open = count_open, .invoke = count_invoke, .close = count_close};
    sl_add_sink(sums, "count", &sink);
    job_out r = run_job(env, "rocksdb_state_throughput");
    rm_rf(local);
    int64_t rows = atomic_load(&g_sink_rows);
    if (r.rc || rows != events) {
        fprintf(stderr,
                PROG ": keyed sum on %s: rc %d, %" PRId64 " rows at the sink, expected %" PRId64
                     "\n",
                backend, r.rc, rows, events);
        return false;
    }
    *rate = (double)events / r.wall;
    *per_cpu = (double)events / r.cpu;
    return true;
}

static int part_throughput(const opts *o)
{
    int fails = 0;
    for (int c = 0; c < o->nkeys; c++) {
        int64_t keys = o->keys[c], events = o->events ? o->events : 2 * keys;
        printf("\n== 1. keyed sum throughput: %" PRId64 " keys, %" PRId64
               " events (uniform keys), p=%d, %d run(s) interleaved heap, rocksdb\n",
               keys, events, o->par, o->repeat);
        printf("%-10s %4s %14s %16s\n", "backend", "run", "M events/s", "M events/CPU-s");
        double rate[2][MAX_REPEAT], cpu[2][MAX_REPEAT];
        static const char *const backends[2] = {"hashmap", "rocksdb"};
        int ok = 0;
        for (int k = 0; k < o->repeat; k++) {
            bool good = true;
            for (int b = 0; b < 2; b++) {
                if (!tp_run(o, backends[b], keys, events, &rate[b][ok], &cpu[b][ok])) {
                    good = false;
                    break;
                }
                printf("%-10s %4d %14.3f %16.3f\n", backends[b], k + 1, rate[b][ok] / 1e6,
                       cpu[b][ok] / 1e6);
                fflush(stdout);
            }
            if (good)
                ok++;
            else
                fails++;
        }
        if (!ok)
            continue;
        char cas[64];
        snprintf(cas, sizeof cas, "keys=%" PRId64 ",events=%" PRId64, keys, events);
        printf("-- medians of %d run(s):\n", ok);
        printf("| backend | M events/s | M events/CPU-s | rocksdb / heap (wall) | (per CPU-s) |\n");
        printf("|---|---|---|---|---|\n");
        double mr[2], mc[2];
        for (int b = 0; b < 2; b++) {
            mr[b] = median(rate[b], ok);
            mc[b] = median(cpu[b], ok);
            char metric[64];
            snprintf(metric, sizeof metric, "%s_events_per_s", backends[b]);
            csv("throughput", cas, metric, mr[b]);
            snprintf(metric, sizeof metric, "%s_events_per_cpu_s", backends[b]);
            csv("throughput", cas, metric, mc[b]);
        }
        for (int b = 0; b < 2; b++)
            printf("| %s | %.3f | %.3f | %.3f | %.3f |\n", backends[b], mr[b] / 1e6, mc[b] / 1e6,
                   mr[b] / mr[0], mc[b] / mc[0]);
    }
    return fails;
}

/* ---- 2. state access: the engine's backend against a bare RocksDB loop --------------------- */

typedef struct access_key {
    uint8_t row[32]; /* the key row, as the runtime serializes it */
    sl__key k;
} access_key;

static sl__schema *g_key_schema, *g_val_schema;

static void make_access_key(access_key *ak, int64_t id)
{
    sl_value v = SL_I64(id);
    uint8_t *end = sl__row_write(g_key_schema, &v, ak->row);
    ak->k.bytes = ak->row;
    ak->k.len = (size_t)(end - ak->row);
    ak->k.hash = sl__hash(ak->row, ak->k.len);
    ak->k.key_group = sl__key_group(ak->k.hash, MAX_PARALLELISM);
}

typedef struct access_result {
    double rate, per_cpu;
    int64_t found, sum;
    bool ok;
} access_result;

/* ops accesses through the engine's state layer on a backend of type (hashmap, rocksdb):
 * set the key, sl_value_get, sl_value_update(value + 1 or 1), end of call. */
static access_result engine_access(const char *type, const opts *o, sl__rocksdb_stats *stats)
{
    access_result r = {0};
    char local[PATH_MAX], err[1024];
    subdir(local, sizeof local, "rocksdb");
    sl__config *c = sl__config_create();
    if (!c || sl__config_set(c, "state.backend.type", type, err, sizeof err) < 0 ||
        sl__config_set(c, "state.backend.rocksdb.localdir", local, err, sizeof err) < 0) {
        fprintf(stderr, PROG ": config: %s\n", c ? err : "out of memory");
        sl__config_destroy(c);
        return r;
    }
    sl__keyed_backend *be = sl__keyed_backend_create(
        c, "access", 0, MAX_PARALLELISM, 0, MAX_PARALLELISM, g_key_schema, err, sizeof err);
    sl__config_destroy(c);
    if (!be) {
        fprintf(stderr, PROG ": %s backend: %s\n", type, err);
        return r;
    }
    static const sl_state_desc desc = {.name = "v", .kind = SL_STATE_VALUE, .schema = "n:i64"};
    sl_state *st = sl__keyed_backend_state(be, NULL, &desc);
    if (!st) {
        fprintf(stderr, PROG ": cannot register the value state on %s\n", type);
        sl__keyed_backend_destroy(be);
        return r;
    }
    if (stats && sl__backend_is_rocksdb(be))
        sl__rocksdb_backend_stats(be, stats);
    access_key ak;
    int rc = 0;
    double t0 = now_s(), c0 = cpu_s();
    for (int64_t i = 0; i < o->access_ops && rc >= 0; i++) {
        make_access_key(&ak, key_of(i, o->access_keys));
        sl__keyed_backend_set_key(be, &ak.k);
        sl_value v;
        int found = sl_value_get(st, &v);
        if (found < 0) {
            rc = found;
            break;
        }
        r.found += found;
        sl_value nv = SL_I64(found ? v.u.i64 + 1 : 1);
        rc = sl_value_update(st, &nv);
        sl__state_end_call(be, NULL);
    }
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    if (rc < 0) {
        fprintf(stderr, PROG ": %s state access failed: %s\n", type, sl_strerror(rc));
        sl__keyed_backend_destroy(be);
        return r;
    }
    /* the counts must add up to the accesses */
    for (int64_t k = 0; k < o->access_keys; k++) {
        make_access_key(&ak, k);
        sl__keyed_backend_set_key(be, &ak.k);
        sl_value v;
        if (sl_value_get(st, &v) == 1)
            r.sum += v.u.i64;
        sl__state_end_call(be, NULL);
    }
    sl__keyed_backend_destroy(be);
    rm_rf(local);
    r.rate = (double)o->access_ops / wall;
    r.per_cpu = (double)o->access_ops / cpu;
    r.ok = r.sum == o->access_ops;
    if (!r.ok)
        fprintf(stderr, PROG ": %s: the counts add up to %" PRId64 ", expected %" PRId64 "\n", type,
                r.sum, o->access_ops);
    return r;
}

/* The bare loop's database: the backend's options (rocksdb_backend.c, make_options) with the
 * sizes it reported, one column family for the state as the backend makes. */
typedef struct bare_db {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_cache_t *cache;
    rocksdb_column_family_handle_t *cf;
    rocksdb_readoptions_t *ro;
    rocksdb_writeoptions_t *wo;
} bare_db;

static void bare_close(bare_db *b)
{
    if (b->cf)
        rocksdb_column_family_handle_destroy(b->cf);
    if (b->db)
        rocksdb_close(b->db);
    if (b->ro)
        rocksdb_readoptions_destroy(b->ro);
    if (b->wo)
        rocksdb_writeoptions_destroy(b->wo);
    if (b->opts)
        rocksdb_options_destroy(b->opts);
    if (b->cache)
        rocksdb_cache_destroy(b->cache);
}

static bool bare_open(bare_db *b, const char *path, const sl__rocksdb_stats *s)
{
    memset(b, 0, sizeof *b);
    /* the backend's own options (sl__rocksdb_db_options), at its default memory budget */
    sl__rocksdb_options ro;
    sl__rocksdb_options_default(&ro);
    sl__rocksdb_stats sizes;
    char err[256], *e = NULL;
    if (sl__rocksdb_db_options(&ro, &b->opts, &b->cache, &sizes, err, sizeof err) < 0) {
        fprintf(stderr, PROG ": bare RocksDB options: %s\n", err);
        bare_close(b);
        return false;
    }
    if (sizes.block_cache_capacity != s->block_cache_capacity ||
        sizes.write_buffer_size != s->write_buffer_size) {
        fprintf(stderr, PROG ": bare RocksDB options differ from the backend's\n");
        bare_close(b);
        return false;
    }
    b->db = rocksdb_open(b->opts, path, &e);
    if (!e)
        b->cf = rocksdb_create_column_family(b->db, b->opts, "state/v", &e);
    if (e) {
        fprintf(stderr, PROG ": bare RocksDB in %s: %s\n", path, e);
        rocksdb_free(e);
        bare_close(b);
        return false;
    }
    b->ro = rocksdb_readoptions_create();
    b->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_disable_WAL(b->wo, 1);
    return true;
}

/* The same accesses on rocksdb/c.h: the same database key bytes as the backend's
 * (key group | varint len | key row | varint 0, no namespace) and a value of the size of
 * the serialized "n:i64" row; get (pinned, value copied out), then put the count + 1. */
static access_result bare_access(const opts *o, const sl__rocksdb_stats *s, size_t vlen)
{
    access_result r = {0};
    char path[PATH_MAX];
    subdir(path, sizeof path, "bare");
    bare_db b;
    if (!bare_open(&b, path, s))
        return r;
    access_key ak;
    uint8_t key[64], val[64] = {0};
    char *e = NULL;
    double t0 = now_s(), c0 = cpu_s();
    for (int64_t i = 0; i < o->access_ops && !e; i++) {
        make_access_key(&ak, key_of(i, o->access_keys));
        uint8_t *p = key;
        *p++ = (uint8_t)(ak.k.key_group >> 8);
        *p++ = (uint8_t)ak.k.key_group;
        p = sl__varint_write(p, ak.k.len);
        memcpy(p, ak.k.bytes, ak.k.len);
        p = sl__varint_write(p + ak.k.len, 0);
        size_t klen = (size_t)(p - key);
        rocksdb_pinnableslice_t *ps =
            rocksdb_get_pinned_cf(b.db, b.ro, b.cf, (const char *)key, klen, &e);
        if (e)
            break;
        int64_t n = 0;
        if (ps) {
            size_t len;
            const char *v = rocksdb_pinnableslice_value(ps, &len);
            uint8_t copy[64];
            memcpy(copy, v, len < sizeof copy ? len : sizeof copy);
            memcpy(&n, copy, sizeof n);
            rocksdb_pinnableslice_destroy(ps);
            r.found++;
        }
        n++;
        memcpy(val, &n, sizeof n);
        rocksdb_put_cf(b.db, b.wo, b.cf, (const char *)key, klen, (const char *)val, vlen, &e);
    }
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    if (e) {
        fprintf(stderr, PROG ": bare RocksDB loop: %s\n", e);
        rocksdb_free(e);
    } else {
        r.rate = (double)o->access_ops / wall;
        r.per_cpu = (double)o->access_ops / cpu;
        r.ok = true;
    }
    bare_close(&b);
    rm_rf(path);
    return r;
}

static int part_access(const opts *o)
{
    char err[256];
    g_key_schema = sl__schema_parse("key:i64", err, sizeof err);
    g_val_schema = sl__schema_parse("n:i64", err, sizeof err);
    if (!g_key_schema || !g_val_schema) {
        fprintf(stderr, PROG ": schema: %s\n", err);
        return 1;
    }
    sl_value one = SL_I64(1);
    size_t vlen = sl__row_size(g_val_schema, &one);
    access_key ak;
    make_access_key(&ak, 1);
    size_t klen = 2 + sl__varint_size(ak.k.len) + ak.k.len + sl__varint_size(0);
    printf("\n== 2. value-state get + update on random keys: %" PRId64 " keys, %" PRId64
           " accesses, %d run(s) interleaved (bare RocksDB, engine rocksdb, engine heap)\n",
           o->access_keys, o->access_ops, o->repeat);
    printf("database key %zu bytes, value %zu bytes on both sides\n", klen, vlen);
    printf("%-22s %4s %12s %14s %10s %10s\n", "loop", "run", "M ops/s", "M ops/CPU-s", "/ bare",
           "per CPU-s");
    double rate[3][MAX_REPEAT], cpu[3][MAX_REPEAT], ratio[MAX_REPEAT], ratio_cpu[MAX_REPEAT];
    static const char *const names[3] = {"bare RocksDB (c.h)", "engine rocksdb", "engine heap"};
    int ok = 0, fails = 0;
    sl__rocksdb_stats stats = {0};
    for (int k = 0; k < o->repeat; k++) {
        /* the engine first, so that the bare loop gets the sizes it reports */
        access_result e = engine_access("rocksdb", o, &stats);
        if (k == 0 && e.ok)
            printf("backend's RocksDB: block cache %zu MiB, write buffers %zu MiB (each column "
                   "family's memtable %zu MiB, two at most); the bare loop uses the same\n",
                   stats.block_cache_capacity >> 20, stats.write_buffer_budget >> 20,
                   stats.write_buffer_size >> 20);
        access_result b = bare_access(o, &stats, vlen);
        access_result h = engine_access("hashmap", o, NULL);
        if (!e.ok || !b.ok || !h.ok || e.found != b.found || h.found != b.found) {
            if (e.ok && b.ok && h.ok)
                fprintf(stderr,
                        PROG ": hits differ: bare %" PRId64 ", rocksdb %" PRId64 ", heap %" PRId64
                             "\n",
                        b.found, e.found, h.found);
            fails++;
            continue;
        }
        access_result all[3] = {b, e, h};
        for (int j = 0; j < 3; j++) {
            rate[j][ok] = all[j].rate;
            cpu[j][ok] = all[j].per_cpu;
            printf("%-22s %4d %12.3f %14.3f %10.3f %10.3f\n", names[j], k + 1, all[j].rate / 1e6,
                   all[j].per_cpu / 1e6, all[j].rate / b.rate, all[j].per_cpu / b.per_cpu);
        }
        ratio[ok] = e.rate / b.rate;
        ratio_cpu[ok] = e.per_cpu / b.per_cpu;
        ok++;
        fflush(stdout);
    }
    if (!ok)
        return fails;
    char cas[64];
    snprintf(cas, sizeof cas, "keys=%" PRId64 ",ops=%" PRId64, o->access_keys, o->access_ops);
    printf("-- medians of %d run(s):\n", ok);
    printf("| loop | M ops/s | M ops/CPU-s | us per get+update |\n|---|---|---|---|\n");
    static const char *const metric[3] = {"bare", "engine_rocksdb", "engine_heap"};
    for (int j = 0; j < 3; j++) {
        double mr = median(rate[j], ok), mc = median(cpu[j], ok);
        printf("| %s | %.3f | %.3f | %.2f |\n", names[j], mr / 1e6, mc / 1e6, 1e6 / mr);
        char m[64];
        snprintf(m, sizeof m, "%s_ops_per_s", metric[j]);
        csv("access", cas, m, mr);
        snprintf(m, sizeof m, "%s_ops_per_cpu_s", metric[j]);
        csv("access", cas, m, mc);
    }
    double mr = median(ratio, ok), mc = median(ratio_cpu, ok);
    printf("engine rocksdb / bare RocksDB, median of the per-run ratios: %.3f wall, %.3f per "
           "CPU-s\n",
           mr, mc);
    csv("access", cas, "ratio_engine_rocksdb_to_bare", mr);
    csv("access", cas, "ratio_engine_rocksdb_to_bare_per_cpu", mc);
    return fails;
}

/* ---- jobs that fill keyed state (restore, big, incremental) ------------------------------- */

#define PATTERN 4096
static uint8_t g_pattern[PATTERN + 4096];

/* What the fill source and the fill function do: shared by the job's threads, set before
 * sl_execute. */
static struct fill_conf {
    int64_t keys;          /* the source emits 0..keys-1 first */
    int64_t updates;       /* then this many random keys (-1: forever), then idles */
    int64_t update_keys;   /* the updates go to keys 0..update_keys-1 (0: all keys) */
    int64_t update_rate;   /* updates per second at most (0: as fast as the job goes) */
    int value_bytes;       /* pad bytes of each value */
    bool random_values;    /* pad of per-key random bytes (else a window of g_pattern) */
    bool get;              /* read the value before each update */
    int64_t samples;       /* restore: the sample source's keys */
    bool verify;           /* restore: read the samples back and check */
    int64_t stop_after_ns; /* incremental: stop this long after the fill (0: never) */
} g_fc;

static _Atomic int64_t g_processed, g_full_id, g_fill_done_ns, g_t_init_ns, g_t_open_ns, g_checked,
    g_bad;
static _Atomic uint64_t g_disk_at_end;
static atomic_bool g_stop_sent;
static char g_localdir[PATH_MAX];

static void fill_reset(void)
{
    atomic_store(&g_processed, 0);
    atomic_store(&g_full_id, 0);
    atomic_store(&g_fill_done_ns, 0);
    atomic_store(&g_t_init_ns, 0);
    atomic_store(&g_t_open_ns, 0);
    atomic_store(&g_checked, 0);
    atomic_store(&g_bad, 0);
    atomic_store(&g_disk_at_end, 0);
    atomic_store(&g_stop_sent, false);
}

/* The fill source (parallelism 1, no state): keys 0..keys-1, then updates random keys, then
 * idles until the job is stopped. */
static int fill_src_open(sl_ctx *ctx)
{
    sl_ctx_set_local(ctx, calloc(1, sizeof(int64_t)));
    return sl_ctx_local(ctx) ? 0 : SL_ENOMEM;
}

static int fill_src_poll(sl_ctx *ctx)
{
    int64_t *next = sl_ctx_local(ctx);
    int64_t end = g_fc.updates < 0 ? INT64_MAX : g_fc.keys + g_fc.updates;
    if (*next >= end || atomic_load_explicit(&g_stop_sent, memory_order_relaxed)) {
        sl_ctx_sleep_ms(ctx, 20); /* cancelled: the runtime sees it after this poll */
        return SL_SOURCE_IDLE;
    }
    if (*next >= g_fc.keys && g_fc.update_rate > 0) {
        if (!next[1])
            next[1] = clock_ns(CLOCK_MONOTONIC);
        int64_t allowed =
            g_fc.keys + (clock_ns(CLOCK_MONOTONIC) - next[1]) / 1000 * g_fc.update_rate / 1000000;
        if (*next >= allowed) {
            sl_ctx_sleep_ms(ctx, 1);
            return SL_SOURCE_IDLE;
        }
        if (end > allowed)
            end = allowed;
    }
    for (int n = 0; n < 1024 && *next < end; n++, (*next)++) {
        int64_t i = *next;
        sl_value k =
            SL_I64(i < g_fc.keys ? i : key_of(i, g_fc.update_keys ? g_fc.update_keys : g_fc.keys));
        int rc = sl_emit(ctx, &k);
        if (rc < 0)
            return rc;
    }
    return SL_SOURCE_MORE;
}

static int fill_src_close(sl_ctx *ctx)
{
    free(sl_ctx_local(ctx));
    return 0;
}

/* The restore job's source: samples keys spread over 0..keys-1. */
static int gen_sample(sl_ctx *ctx, void *user, int64_t i, sl_value *out)
{
    (void)ctx;
    (void)user;
    out[0] = SL_I64(key_of(i, g_fc.keys));
    return 0;
}

typedef struct fill_local {
    sl_state *st;
    uint8_t *pad; /* random_values: this record's value */
    int64_t rows;
} fill_local;

static const sl_state_desc fill_desc = {
    .name = "v", .kind = SL_STATE_VALUE, .schema = "n:i64,pad:bytes"};

static const uint8_t *pad_of(fill_local *l, int64_t key)
{
    if (!g_fc.random_values)
        return g_pattern + (uint64_t)key % PATTERN;
    uint64_t *w = (uint64_t *)l->pad;
    for (int j = 0; j < (g_fc.value_bytes + 7) / 8; j++)
        w[j] = splitmix((uint64_t)key * 1024 + (uint64_t)j);
    return l->pad;
}

static int fill_init(sl_ctx *ctx)
{
    (void)ctx;
    max_store(&g_t_init_ns, clock_ns(CLOCK_MONOTONIC));
    return 0;
}

static int fill_open(sl_ctx *ctx)
{
    fill_local *l = calloc(1, sizeof *l);
    if (!l)
        return SL_ENOMEM;
    sl_ctx_set_local(ctx, l);
    if (g_fc.random_values && !(l->pad = calloc(1, (size_t)g_fc.value_bytes + 8)))
        return SL_ENOMEM;
    l->st = sl_keyed_state(ctx, &fill_desc);
    max_store(&g_t_open_ns, clock_ns(CLOCK_MONOTONIC));
    return l->st ? 0 : SL_ESTATE;
}

static int fill_process(sl_ctx *ctx, const sl_value *in)
{
    fill_local *l = sl_ctx_local(ctx);
    int64_t key = in[0].u.i64;
    l->rows++;
    if (g_fc.verify) {
        sl_value v[2];
        int found = sl_value_get(l->st, v);
        if (found < 0)
            return found;
        const uint8_t *want = g_pattern + (uint64_t)key % PATTERN;
        if (found != 1 || v[0].u.i64 != key || v[1].u.s.len != (size_t)g_fc.value_bytes ||
            memcmp(v[1].u.s.ptr, want, v[1].u.s.len))
            atomic_fetch_add(&g_bad, 1);
        atomic_fetch_add(&g_checked, 1);
        return 0;
    }
    int64_t n = key;
    if (g_fc.get) {
        sl_value v[2];
        int found = sl_value_get(l->st, v);
        if (found < 0)
            return found;
        n = found ? v[0].u.i64 + 1 : 1;
    }
    sl_value row[2] = {SL_I64(n), sl_bytes(pad_of(l, key), (size_t)g_fc.value_bytes)};
    int rc = sl_value_update(l->st, row);
    if (rc < 0)
        return rc;
    int64_t done = atomic_fetch_add_explicit(&g_processed, 1, memory_order_relaxed) + 1;
    if (done == g_fc.keys)
        atomic_store(&g_fill_done_ns, clock_ns(CLOCK_MONOTONIC));
    if (g_fc.stop_after_ns && done > g_fc.keys && (l->rows & 1023) == 0 &&
        clock_ns(CLOCK_MONOTONIC) - atomic_load(&g_fill_done_ns) >= g_fc.stop_after_ns)
        stop_job(&g_stop_sent);
    return 0;
}

/* The first checkpoint whose snapshot here saw every key written. */
static int fill_snapshot(sl_ctx *ctx, int64_t id)
{
    (void)ctx;
    int64_t zero = 0;
    if (atomic_load(&g_processed) >= g_fc.keys)
        atomic_compare_exchange_strong(&g_full_id, &zero, id);
    return 0;
}

/* restore: stop once a checkpoint of the full state is complete (and retained). */
static int fill_notify(sl_ctx *ctx, int64_t id)
{
    (void)ctx;
    int64_t full = atomic_load(&g_full_id);
    if (!g_fc.stop_after_ns && full && id >= full)
        stop_job(&g_stop_sent);
    return 0;
}

/* big: the state's size on disk once every key is written. */
static int fill_end_input(sl_ctx *ctx)
{
    (void)ctx;
    if (g_fc.random_values)
        atomic_store(&g_disk_at_end, du_bytes(g_localdir));
    return 0;
}

static int fill_close(sl_ctx *ctx)
{
    fill_local *l = sl_ctx_local(ctx);
    if (l)
        free(l->pad);
    free(l);
    return 0;
}

static int null_invoke(sl_ctx *ctx, const sl_value *in)
{
    (void)ctx;
    (void)in;
    return 0;
}

/* source -> key_by -> fill (uid "fill") -> sink. sample: the restore job's sample source
 * (uid "sample") instead of the fill source; bounded_keys > 0: a bounded sequence of that
 * many keys instead (the big job). */
static void build_fill(sl_env *env, bool sample, int64_t bounded_keys)
{
    sl_stream *src;
    if (sample) {
        src =
            sl_set_uid(sl_from_generator(env, "key:i64", g_fc.samples, gen_sample, NULL), "sample");
    } else if (bounded_keys > 0) {
        src = sl_set_uid(sl_from_sequence(env, 0, bounded_keys - 1), "keys");
    } else {
        sl_source_fn fn = {.open = fill_src_open, .poll = fill_src_poll, .close = fill_src_close};
        src = sl_set_uid(sl_add_source(env, "keys", "key:i64", &fn, false, false), "keys");
    }
    sl_set_parallelism(src, 1);
    sl_process_fn fn = {.initialize_state = fill_init,
                        .open = fill_open,
                        .process = fill_process,
                        .snapshot_state = fill_snapshot,
                        .notify_checkpoint_complete = fill_notify,
                        .end_input = fill_end_input,
                        .close = fill_close};
    sl_stream *st = sl_set_uid(sl_process(sl_key_by(src, 0), "key:i64", &fn), "fill");
    sl_sink_fn sink = {.invoke = null_invoke};
    sl_set_uid(sl_add_sink(st, "none", &sink), "none");
}

static void make_pattern(void)
{
    uint64_t s = 0x2545F4914F6CDD1Dull;
    for (size_t i = 0; i < sizeof g_pattern; i++)
        g_pattern[i] = (uint8_t)rng(&s);
}

/* ---- 3. restore time against state size ---------------------------------------------------- */

/* incr: the checkpoint is incremental (database files) instead of key-group sections. */
static int restore_case(const opts *o, int64_t keys, bool incr)
{
    char ck[PATH_MAX], chk[PATH_MAX];
    subdir(ck, sizeof ck, "checkpoints");
    subdir(g_localdir, sizeof g_localdir, "rocksdb");
    g_fc = (struct fill_conf){.keys = keys, .updates = 0, .value_bytes = o->value_bytes};
    fill_reset();
    char interval[32];
    snprintf(interval, sizeof interval, "%" PRId64 " ms", o->interval_ms);
    sl_env *env = new_env("rocksdb", o->par, g_localdir, NULL);
    env_set(env, "state.backend.incremental", incr ? "true" : "false");
    env_set(env, "execution.checkpointing.interval", interval);
    env_set(env, "state.checkpoints.dir", ck);
    env_set(env, "state.checkpoints.num-retained", "1");
    env_set(env, "execution.checkpointing.externalized-checkpoint-retention",
            "RETAIN_ON_CANCELLATION");
    build_fill(env, false, 0);
    double t0 = now_s();
    job_out r = run_job(env, "rocksdb_state_fill");
    double fill_s =
        atomic_load(&g_fill_done_ns) ? (double)atomic_load(&g_fill_done_ns) / 1e9 - t0 : 0;
    if (r.rc != SL_ECANCELED || !latest_checkpoint(ck, chk, sizeof chk)) {
        fprintf(stderr, PROG ": fill of %" PRId64 " keys: rc %d, no retained checkpoint in %s\n",
                keys, r.rc, ck);
        return 1;
    }
    /* incremental: the shared SST files are the job directory's (one checkpoint retained) */
    uint64_t size = incr ? du_bytes(ck) : du_bytes(chk);
    printf("%s, %" PRId64
           " keys: filled in %.2f s (%.2f M keys/s), %s of the full state: %.1f MB\n",
           incr ? "incremental" : "full", keys, fill_s,
           fill_s > 0 ? (double)keys / fill_s / 1e6 : 0, strrchr(chk, '/') + 1, (double)size / 1e6);
    double init_s[MAX_REPEAT], open_s[MAX_REPEAT], total_s[MAX_REPEAT];
    int ok = 0, fails = 0;
    for (int k = 0; k < o->repeat; k++) {
        subdir(g_localdir, sizeof g_localdir, "rocksdb");
        g_fc.samples = keys < 10000 ? keys : 10000;
        g_fc.verify = true;
        fill_reset();
        sl_env *renv = new_env("rocksdb", o->par, g_localdir, chk);
        build_fill(renv, true, 0);
        int64_t t_exec = clock_ns(CLOCK_MONOTONIC);
        job_out rr = run_job(renv, "rocksdb_state_restore");
        int64_t ti = atomic_load(&g_t_init_ns), to = atomic_load(&g_t_open_ns);
        int64_t checked = atomic_load(&g_checked), bad = atomic_load(&g_bad);
        if (rr.rc || !ti || !to || checked != g_fc.samples || bad) {
            fprintf(stderr,
                    PROG ": restore of %" PRId64 " keys: rc %d, %" PRId64 " of %" PRId64
                         " sampled keys read back, %" PRId64 " wrong\n",
                    keys, rr.rc, checked, g_fc.samples, bad);
            fails++;
            continue;
        }
        init_s[ok] = (double)(ti - t_exec) / 1e9;
        open_s[ok] = (double)(to - t_exec) / 1e9;
        total_s[ok] = rr.wall;
        printf("  restore #%d: key groups loaded %.3f s, state registered (validated) %.3f s, "
               "whole job %.3f s; %" PRId64 " sampled keys read back: ok\n",
               k + 1, init_s[ok], open_s[ok], total_s[ok], checked);
        ok++;
    }
    rm_rf(ck);
    rm_rf(g_localdir);
    if (!ok)
        return fails + 1;
    double mi = median(init_s, ok), mo = median(open_s, ok), mt = median(total_s, ok);
    printf("| %s | %" PRId64 " | %.1f | %.3f | %.3f | %.1f | %.3f |\n",
           incr ? "incremental" : "full", keys, (double)size / 1e6, mi, mo, (double)size / 1e6 / mo,
           mt);
    char cas[80];
    snprintf(cas, sizeof cas, "%s,keys=%" PRId64 ",value=%d", incr ? "incremental" : "full", keys,
             o->value_bytes);
    csv("restore", cas, "checkpoint_bytes", (double)size);
    csv("restore", cas, "load_s", mi);
    csv("restore", cas, "restore_s", mo);
    csv("restore", cas, "restore_mb_per_s", (double)size / 1e6 / mo);
    csv("restore", cas, "job_s", mt);
    return fails;
}

static int part_restore(const opts *o)
{
    printf("\n== 3. restore time against state size: rocksdb, values of %d bytes (n:i64 + pad), "
           "p=%d, checkpoint every %" PRId64 " ms until one holds every key, then -s, %d "
           "restore(s) each\n",
           o->value_bytes, o->par, o->interval_ms, o->repeat);
    int fails = 0;
    for (int c = 0; c < o->nrestore; c++)
        for (int incr = 0; incr < 2; incr++)
            fails += restore_case(o, o->restore_keys[c], incr);
    printf("(columns of the table rows above: checkpoint kind | keys | checkpoint MB | state "
           "loaded s (key groups read, or files fetched and adopted) | restored and validated "
           "s | MB/s | whole restored job s; medians)\n");
    return fails;
}

/* ---- 4. --big: memory stays bounded ---------------------------------------------------------- */

typedef struct sample {
    double t;
    long rss_kb;
    uint64_t disk;
    int64_t processed;
} sample;

static struct sampler {
    pthread_t th;
    atomic_bool stop;
    long max_rss_kb;
    uint64_t max_disk;
    sample series[512];
    int nseries;
    double t0;
} g_sm;

static void *sampler_main(void *arg)
{
    (void)arg;
    int tick = 0;
    uint64_t disk = 0;
    while (!atomic_load(&g_sm.stop)) {
        long rss = proc_status_kb("VmRSS:");
        if (rss > g_sm.max_rss_kb)
            g_sm.max_rss_kb = rss;
        if (tick % 20 == 0) { /* every 2 s */
            disk = du_bytes(g_localdir);
            if (disk > g_sm.max_disk)
                g_sm.max_disk = disk;
        }
        if (tick % 100 == 0 && g_sm.nseries < 512) /* every 10 s */
            g_sm.series[g_sm.nseries++] =
                (sample){now_s() - g_sm.t0, rss, disk, atomic_load(&g_processed)};
        tick++;
        struct timespec d = {0, 100000000};
        nanosleep(&d, NULL);
    }
    return NULL;
}

static int part_big(const opts *o)
{
    subdir(g_localdir, sizeof g_localdir, "rocksdb");
    g_fc = (struct fill_conf){
        .keys = o->big_keys, .value_bytes = o->big_value, .random_values = true, .get = true};
    fill_reset();
    size_t logical = (size_t)o->big_keys * (size_t)(o->big_value + 8);
    printf("\n== 4. --big: %" PRId64 " keys x %d random bytes (%.2f GB of values), rocksdb, "
           "managed memory %s per subtask, get + update per record, p=1\n",
           o->big_keys, o->big_value, (double)logical / 1e9, o->big_memory);
    sl_env *env = new_env("rocksdb", 1, g_localdir, NULL);
    env_set(env, "state.backend.rocksdb.memory.managed", "true");
    env_set(env, "state.backend.rocksdb.memory.fixed-per-subtask", o->big_memory);
    build_fill(env, false, o->big_keys);
    long rss0 = proc_status_kb("VmRSS:");
    reset_hwm();
    memset(&g_sm, 0, sizeof g_sm);
    g_sm.t0 = now_s();
    if (pthread_create(&g_sm.th, NULL, sampler_main, NULL)) {
        fprintf(stderr, PROG ": cannot start the memory sampler\n");
        sl_env_destroy(env);
        return 1;
    }
    job_out r = run_job(env, "rocksdb_state_big");
    atomic_store(&g_sm.stop, true);
    pthread_join(g_sm.th, NULL);
    long hwm = proc_status_kb("VmHWM:");
    rm_rf(g_localdir);
    if (r.rc || atomic_load(&g_processed) != o->big_keys) {
        fprintf(stderr, PROG ": big run: rc %d, %" PRId64 " of %" PRId64 " keys written\n", r.rc,
                atomic_load(&g_processed), o->big_keys);
        return 1;
    }
    printf("%8s %10s %12s %12s\n", "t s", "keys M", "VmRSS MB", "on disk MB");
    for (int i = 0; i < g_sm.nseries; i++)
        printf("%8.0f %10.2f %12.0f %12.0f\n", g_sm.series[i].t,
               (double)g_sm.series[i].processed / 1e6, (double)g_sm.series[i].rss_kb / 1024,
               (double)g_sm.series[i].disk / 1e6);
    uint64_t end_disk = atomic_load(&g_disk_at_end);
    if (end_disk > g_sm.max_disk)
        g_sm.max_disk = end_disk;
    printf("%" PRId64 " keys in %.1f s (%.0f K keys/s, %.1f MB/s of values; CPU %.1f s)\n",
           o->big_keys, r.wall, (double)o->big_keys / r.wall / 1e3, (double)logical / r.wall / 1e6,
           r.cpu);
    printf("| state on disk at end of input | largest on disk (sampled every 2 s) | VmRSS before | "
           "VmRSS max sampled | "
           "VmHWM |\n|---|---|---|---|---|\n");
    printf("| %.2f GB | %.2f GB | %.0f MB | %.0f MB | %.0f MB |\n", (double)end_disk / 1e9,
           (double)g_sm.max_disk / 1e9, (double)rss0 / 1024, (double)g_sm.max_rss_kb / 1024,
           (double)hwm / 1024);
    char cas[96];
    snprintf(cas, sizeof cas, "keys=%" PRId64 ",value=%d,memory=%s", o->big_keys, o->big_value,
             o->big_memory);
    csv("big", cas, "seconds", r.wall);
    csv("big", cas, "disk_bytes_at_end", (double)end_disk);
    csv("big", cas, "disk_bytes_max", (double)g_sm.max_disk);
    csv("big", cas, "rss_kb_before", (double)rss0);
    csv("big", cas, "rss_kb_max_sampled", (double)g_sm.max_rss_kb);
    csv("big", cas, "vm_hwm_kb", (double)hwm);
    return 0;
}

/* ---- 5. --incremental: checkpoint size and duration, full against incremental ------------- */

#define MAX_CK 1024

typedef struct ck_line {
    int64_t id;
    double duration_ms, size, stored; /* stored: what the checkpoint wrote itself */
} ck_line;

/* The checkpoint_completed lines of the captured log, in id order, into v; their number. */
static int parse_checkpoints(ck_line *v, int cap)
{
    FILE *f = fopen(g_log, "r");
    if (!f)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        const char *p = strstr(line, "event=checkpoint_completed ");
        if (!p)
            continue;
        const char *i = strstr(p, "id="), *d = strstr(p, "duration_ms="),
                   *s = strstr(p, "size_bytes="), *w = strstr(p, "stored_bytes=");
        if (i && d && s && w)
            v[n++] = (ck_line){strtoll(i + 3, NULL, 10), strtod(d + 12, NULL), strtod(s + 11, NULL),
                               strtod(w + 13, NULL)};
    }
    fclose(f);
    return n;
}

/* One mode and update set of part 5; updates go to keys [0, hot) (0: all keys). */
static int incremental_case(const opts *o, int m, int64_t hot, int64_t rate)
{
    static const char *const modes[2] = {"false", "true"};
    char ck[PATH_MAX];
    subdir(ck, sizeof ck, "checkpoints");
    subdir(g_localdir, sizeof g_localdir, "rocksdb");
    g_fc = (struct fill_conf){.keys = o->inc_keys,
                              .updates = -1,
                              .update_keys = hot,
                              .update_rate = rate,
                              .value_bytes = o->value_bytes,
                              .stop_after_ns = (int64_t)o->inc_seconds * 1000000000};
    fill_reset();
    sl_env *env = new_env("rocksdb", o->par, g_localdir, NULL);
    if (sl_env_set(env, "state.backend.incremental", modes[m]) < 0) {
        printf("| %s | not run: this build does not know the key (%s) |\n", modes[m],
               sl_env_error(env));
        sl_env_destroy(env);
        rm_rf(ck);
        return 1;
    }
    env_set(env, "execution.checkpointing.interval", "1 s");
    env_set(env, "state.checkpoints.dir", ck);
    env_set(env, "state.checkpoints.num-retained", "3");
    env_set(env, "execution.checkpointing.externalized-checkpoint-retention",
            "RETAIN_ON_CANCELLATION");
    build_fill(env, false, 0);
    job_out r = run_job(env, "rocksdb_state_incremental");
    static ck_line v[MAX_CK];
    int n = parse_checkpoints(v, MAX_CK);
    uint64_t on_disk = du_bytes(ck);
    rm_rf(ck);
    rm_rf(g_localdir);
    /* the first checkpoint of every key, then those after it */
    int64_t full = atomic_load(&g_full_id);
    int first = -1, later = 0;
    double sz[MAX_REPEAT], wr[MAX_REPEAT], du[MAX_REPEAT], dmax = 0;
    for (int i = 0; i < n; i++) {
        if (full && v[i].id == full)
            first = i;
        if (!full || v[i].id <= full || later == MAX_REPEAT)
            continue;
        sz[later] = v[i].size;
        wr[later] = v[i].stored;
        du[later++] = v[i].duration_ms;
        if (v[i].duration_ms > dmax)
            dmax = v[i].duration_ms;
    }
    if (r.rc != SL_ECANCELED || first < 0 || !later) {
        fprintf(stderr,
                PROG ": incremental=%s: rc %d, %d checkpoints completed, none of the full "
                     "state or none after it (is SLUICE_LOG_LEVEL=info reaching the log?)\n",
                modes[m], r.rc, n);
        return 1;
    }
    int64_t updates = atomic_load(&g_processed) - o->inc_keys;
    double upd_s = (double)updates / (double)o->inc_seconds;
    double msz = median(sz, later), mwr = median(wr, later), mdu = median(du, later);
    printf("| %s | %" PRId64 " | %d | %.1f, %.0f | %.2f | %.2f | %.0f | %.0f | %.0f | %.1f |\n",
           modes[m], hot ? hot : o->inc_keys, n, v[first].size / 1e6, v[first].duration_ms,
           msz / 1e6, mwr / 1e6, mdu, dmax, upd_s, (double)on_disk / 1e6);
    char cas[96];
    snprintf(cas, sizeof cas, "incremental=%s,keys=%" PRId64 ",updated=%" PRId64, modes[m],
             o->inc_keys, hot ? hot : o->inc_keys);
    csv("incremental", cas, "checkpoints", n);
    csv("incremental", cas, "first_full_bytes", v[first].size);
    csv("incremental", cas, "later_median_bytes", msz);
    csv("incremental", cas, "later_median_written_bytes", mwr);
    csv("incremental", cas, "later_median_ms", mdu);
    csv("incremental", cas, "later_max_ms", dmax);
    return 0;
}

static int part_incremental(const opts *o)
{
    printf("\n== 5. --incremental: %" PRId64 " keys x %d bytes in rocksdb, then random updates "
           "of all keys (unthrottled) or of a tenth of them (20,000/s) for %d s, a checkpoint "
           "every second, "
           "state.backend.incremental false / true\n",
           o->inc_keys, o->value_bytes, o->inc_seconds);
    printf("| incremental | keys updated | checkpoints | first with every key: MB, ms | later: "
           "median size MB | later: median MB written | later: median ms | later: max ms | "
           "updates/s | job dir at end MB |\n|---|---|---|---|---|---|---|---|---|---|\n");
    int fails = 0;
    /* every key as fast as the job goes; a tenth of them at 20,000 updates/s */
    int64_t sets[2] = {0, o->inc_keys / 10 ? o->inc_keys / 10 : 1}, rates[2] = {0, 20000};
    for (int h = 0; h < 2; h++)
        for (int m = 0; m < 2; m++)
            fails += incremental_case(o, m, sets[h], rates[h]);
    return fails;
}

/* ---- arguments ------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f, "usage: " PROG " [--keys N[,N...]] [--events N] [--repeat R] [-p P]\n"
               "       [--access-keys N] [--access-ops N] [--restore-keys N[,N...]]\n"
               "       [--value-bytes B] [--interval MS] [--only PARTS] [--big] [--big-keys N]\n"
               "       [--big-value-bytes B] [--big-memory SIZE] [--incremental] [--inc-keys N]\n"
               "       [--inc-seconds S] [--csv FILE]\n"
               "PARTS: a comma list of throughput, access, restore, big, incremental\n"
               "(default throughput,access,restore; --big and --incremental add theirs).\n"
               "Defaults: --keys 1000000 --events 2 x keys --repeat 3 -p 1 --access-keys 1000000\n"
               "--access-ops 1000000 --restore-keys 250000,500000,1000000 --value-bytes 100\n"
               "--interval 1000 --big-keys 5000000 --big-value-bytes 1000 --big-memory 256mb\n"
               "--inc-keys 1000000 --inc-seconds 20\n");
}

/* A whole number from min to max, or exit 2 naming the option and the range. */
static int64_t num(const char *opt, const char *s, int64_t min, int64_t max)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, PROG ": %s: '%s' is not a whole number from %" PRId64 " to %" PRId64 "\n",
                opt, s, min, max);
        exit(2);
    }
    return v;
}

static int num_list(const char *opt, const char *s, int64_t *out, int64_t min, int64_t max)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    int n = 0;
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == MAX_LIST) {
            fprintf(stderr, PROG ": %s: at most %d sizes\n", opt, MAX_LIST);
            exit(2);
        }
        out[n++] = num(opt, t, min, max);
    }
    if (!n) {
        fprintf(stderr, PROG ": %s: expected a comma list of whole numbers, got '%s'\n", opt, s);
        exit(2);
    }
    return n;
}

static void parse_parts(opts *o, const char *s)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    o->run_tp = o->run_access = o->run_restore = o->run_big = o->run_inc = false;
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "throughput"))
            o->run_tp = true;
        else if (!strcmp(t, "access"))
            o->run_access = true;
        else if (!strcmp(t, "restore"))
            o->run_restore = true;
        else if (!strcmp(t, "big"))
            o->run_big = true;
        else if (!strcmp(t, "incremental"))
            o->run_inc = true;
        else {
            fprintf(stderr,
                    PROG ": --only: unknown part '%s' (accepted: throughput, access, restore, big, "
                         "incremental)\n",
                    t);
            exit(2);
        }
    }
}

static void parse_args(opts *o, int argc, char **argv)
{
    bool big = false, inc = false;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--big")) {
            big = true;
            continue;
        } else if (!strcmp(a, "--incremental")) {
            inc = true;
            continue;
        }
        static const char *const valued[] = {"--keys",
                                             "--events",
                                             "--repeat",
                                             "-p",
                                             "--access-keys",
                                             "--access-ops",
                                             "--restore-keys",
                                             "--value-bytes",
                                             "--interval",
                                             "--big-keys",
                                             "--big-value-bytes",
                                             "--big-memory",
                                             "--inc-keys",
                                             "--inc-seconds",
                                             "--only",
                                             "--csv"};
        bool known = false;
        for (size_t k = 0; k < sizeof valued / sizeof *valued; k++)
            known |= !strcmp(a, valued[k]);
        if (!known || i + 1 >= argc) {
            if (!known)
                fprintf(stderr, PROG ": unknown option '%s'\n", a);
            else
                fprintf(stderr, PROG ": %s needs a value\n", a);
            usage(stderr);
            exit(2);
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--keys"))
            o->nkeys = num_list(a, v, o->keys, 1, INT64_MAX / 4);
        else if (!strcmp(a, "--events"))
            o->events = num(a, v, 1, INT64_MAX / 4);
        else if (!strcmp(a, "--repeat"))
            o->repeat = (int)num(a, v, 1, MAX_REPEAT);
        else if (!strcmp(a, "-p"))
            o->par = (int)num(a, v, 1, MAX_PARALLELISM);
        else if (!strcmp(a, "--access-keys"))
            o->access_keys = num(a, v, 1, INT64_MAX / 4);
        else if (!strcmp(a, "--access-ops"))
            o->access_ops = num(a, v, 1, INT64_MAX / 4);
        else if (!strcmp(a, "--restore-keys"))
            o->nrestore = num_list(a, v, o->restore_keys, 1, INT64_MAX / 4);
        else if (!strcmp(a, "--value-bytes"))
            o->value_bytes = (int)num(a, v, 0, 1 << 20);
        else if (!strcmp(a, "--interval"))
            o->interval_ms = num(a, v, 10, 3600000);
        else if (!strcmp(a, "--big-keys"))
            o->big_keys = num(a, v, 1, INT64_MAX / 4);
        else if (!strcmp(a, "--big-value-bytes"))
            o->big_value = (int)num(a, v, 0, 1 << 20);
        else if (!strcmp(a, "--big-memory"))
            o->big_memory = v; /* the engine checks it (4mb to 1tb) */
        else if (!strcmp(a, "--inc-keys"))
            o->inc_keys = num(a, v, 1, INT64_MAX / 4);
        else if (!strcmp(a, "--inc-seconds"))
            o->inc_seconds = (int)num(a, v, 2, 3600);
        else if (!strcmp(a, "--only"))
            only = v;
        else /* --csv */
            o->csv_path = v;
    }
    if (only)
        parse_parts(o, only);
    o->run_big |= big;
    o->run_inc |= inc;
}

int main(int argc, char **argv)
{
    opts o = {.par = 1,
              .repeat = 3,
              .keys = {1000000},
              .nkeys = 1,
              .access_keys = 1000000,
              .access_ops = 1000000,
              .restore_keys = {250000, 500000, 1000000},
              .nrestore = 3,
              .value_bytes = 100,
              .interval_ms = 1000,
              .big_keys = 5000000,
              .big_value = 1000,
              .big_memory = "256mb",
              .inc_keys = 1000000,
              .inc_seconds = 20,
              .run_tp = true,
              .run_access = true,
              .run_restore = true};
    parse_args(&o, argc, argv);
    /* the coordinator's checkpoint_completed lines are at info level */
    if (o.run_inc)
        setenv("SLUICE_LOG_LEVEL", "info", 1);
    if (o.csv_path) {
        g_csv = fopen(o.csv_path, "a");
        if (!g_csv) {
            fprintf(stderr, PROG ": --csv %s: %s\n", o.csv_path, strerror(errno));
            return 2;
        }
        if (ftell(g_csv) == 0)
            fprintf(g_csv, "part\tcase\tmetric\tvalue\n");
    }
    g_dir = bench_checkpoint_dir("sluice-bench-rocksdb", PROG);
    snprintf(g_log, sizeof g_log, "%s/engine.log", g_dir);
    make_pattern();
    printf("working directory %s (removed at exit); engine log of the last job in %s\n", g_dir,
           g_log);
    int fails = 0;
    if (o.run_tp)
        fails += part_throughput(&o);
    if (o.run_access)
        fails += part_access(&o);
    if (o.run_restore)
        fails += part_restore(&o);
    if (o.run_big)
        fails += part_big(&o);
    if (o.run_inc)
        fails += part_incremental(&o);
    sl__schema_destroy(g_key_schema);
    sl__schema_destroy(g_val_schema);
    if (g_csv)
        fclose(g_csv);
    if (fails)
        fprintf(stderr, PROG ": %d check(s) failed\n", fails);
    return fails ? 1 : 0;
}

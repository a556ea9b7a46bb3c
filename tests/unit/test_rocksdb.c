/*
 * test_rocksdb.c - what is particular to the RocksDB state backend (the state suites
 * test_state and test_snapshot run against it as well): the working directory's life
 * (created under state.backend.rocksdb.localdir or $TMPDIR, named after the operator and
 * subtask, removed on destroy, nothing left after a failed create), the factory choosing
 * the backend by configuration, the memory options and that memory stays within them under
 * more state than the budget, errors from RocksDB translated into Sluice errors that name
 * the operation and the directory (a local directory that cannot be created, a corrupted
 * SST file, a database directory removed under a running backend), the key layout keeping
 * scopes apart when one key's bytes are a prefix of another's, list appends through the
 * merge operator across flushes, views that survive later reads, snapshot isolation, and
 * checkpoint compatibility: heap snapshots restore into RocksDB and RocksDB snapshots into
 * the heap, with the same contents. Incremental checkpoints: SST files shared between
 * retained checkpoints and deleted with the last one that references them, aborted
 * checkpoints' files deleted, and restores that adopt the files at the same and at another
 * parallelism (delete_range of the key groups a subtask does not own).
 *
 * Messages for the per-record path go through the runtime's real sl_fail(), as in
 * test_state.c.
 */
#include "backends.h"
#include "checkpoint/storage.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/hash.h"
#include "runtime/task.h"
#include "state/rocksdb/rocksdb_backend.h"
#include "state/state_int.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <sys/stat.h>

/* ---- a runtime context for sl_fail -------------------------------------------------- */

static sl__job t_job;
static sl__task t_task;
static sl__node t_node;
static sl_ctx t_ctx;
static char t_name[] = "rocksdb_test";

static sl_ctx *test_ctx(void)
{
    if (!t_ctx.task) {
        pthread_mutex_init(&t_job.mu, NULL);
        pthread_cond_init(&t_job.done, NULL);
        t_node.name = t_name;
        t_task.job = &t_job;
        t_ctx.task = &t_task;
        t_ctx.node = &t_node;
        t_ctx.parallelism = 1;
    }
    return &t_ctx;
}

static void clear_error(void)
{
    t_job.err_code = 0;
    t_job.err[0] = 0;
    t_task.failed = false;
    atomic_store(&t_job.cancelled, false);
}

/* ---- temporary directories ---------------------------------------------------------- */

static char *tmp_dir(void)
{
    const char *base = test_rocksdb_dir();
    char *t = malloc(256);
    snprintf(t, 256, "%s/sl_test_rocksdb_XXXXXX", base ? base : "/tmp");
    CHECK(mkdtemp(t));
    return t;
}

static int rm_cb(const char *p, const struct stat *sb, int f, struct FTW *ftw)
{
    (void)sb;
    (void)f;
    (void)ftw;
    remove(p);
    return 0;
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static bool is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Entries of dir (not . and ..); the first one's name into first. */
static int count_entries(const char *dir, char *first, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (!n && first)
            snprintf(first, cap, "%s", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

/* ---- keys, states, backends --------------------------------------------------------- */

static sl__schema *schema_of(const char *text)
{
    char err[128];
    sl__schema *s = sl__schema_parse(text, err, sizeof err);
    CHECK(s);
    return s;
}

static sl__schema *key_schema(void)
{
    static sl__schema *s;
    if (!s)
        s = schema_of("id:i64");
    return s;
}

typedef struct keybuf {
    uint8_t bytes[64];
    sl__key k;
} keybuf;

static void use_key(sl__keyed_backend *be, int64_t id)
{
    static keybuf kb;
    sl_value v = SL_I64(id);
    uint8_t *end = sl__row_write(key_schema(), &v, kb.bytes);
    kb.k.bytes = kb.bytes;
    kb.k.len = (size_t)(end - kb.bytes);
    kb.k.hash = sl__hash(kb.bytes, kb.k.len);
    kb.k.key_group = sl__key_group(kb.k.hash, be->max_parallelism);
    sl__keyed_backend_set_key(be, &kb.k);
}

static sl__rocksdb_options opts_in(const char *dir)
{
    sl__rocksdb_options o;
    sl__rocksdb_options_default(&o);
    o.localdir = dir;
    o.name = "test";
    return o;
}

static sl__keyed_backend *rocks(const char *dir, int m)
{
    sl__rocksdb_options o = opts_in(dir);
    char err[512];
    sl__keyed_backend *be =
        sl__rocksdb_backend_create(&o, m, 0, m, key_schema(), err, sizeof err, NULL);
    if (!be)
        FAIL_AT("create: %s", err);
    return be;
}

static sl__keyed_backend *heap(int m)
{
    sl__keyed_backend *be = sl__heap_backend_create(m, 0, m, key_schema());
    CHECK(be);
    return be;
}

/* the reduce and aggregate functions shared with the other state suites */
#include "state_callbacks.h"

enum { S_COUNT, S_LAST, S_EVENTS, S_SUM, S_AVG, S_SEEN, NSTATES };

static const sl_state_desc descs[NSTATES] = {
    {.name = "count", .kind = SL_STATE_VALUE, .schema = "n:i64"},
    {.name = "last", .kind = SL_STATE_VALUE, .schema = "s:str,n:i64"},
    {.name = "events", .kind = SL_STATE_LIST, .schema = "e:str,t:i64"},
    {.name = "sum", .kind = SL_STATE_REDUCING, .schema = "i64", .reduce = sum_reduce},
    {.name = "avg", .kind = SL_STATE_AGGREGATING, .schema = "x:i64", .aggregate = &avg_fn},
    {.name = "seen", .kind = SL_STATE_MAP, .schema = "n:i64", .key_schema = "word:str"},
};

static void reg_all(sl__keyed_backend *be, sl_state **st)
{
    for (int i = 0; i < NSTATES; i++) {
        st[i] = sl__keyed_backend_state(be, test_ctx(), &descs[i]);
        CHECK(st[i]);
    }
}

/* Every state of key id, from id alone (a namespace for every third key). */
static void fill_key(sl__keyed_backend *be, sl_state **st, int64_t id)
{
    char buf[32], ns[8];
    int nsl = id % 3 == 0 ? snprintf(ns, sizeof ns, "n%d", (int)(id % 5)) : 0;
    use_key(be, id);
    for (int i = 0; i < NSTATES; i++)
        CHECK_EQ_INT(sl_state_set_namespace(st[i], ns, (size_t)nsl), 0);
    sl_value v = SL_I64(id * 7);
    CHECK_EQ_INT(sl_value_update(st[S_COUNT], &v), 0);
    int n = snprintf(buf, sizeof buf, "k%lld", (long long)id);
    sl_value sv[2] = {sl_strn(buf, (size_t)n), SL_I64(id)};
    CHECK_EQ_INT(sl_value_update(st[S_LAST], sv), 0);
    for (int i = 0; i <= (int)(id % 3); i++) {
        sl_value e[2] = {sl_strn(buf, (size_t)n), SL_I64(i)};
        CHECK_EQ_INT(sl_list_add(st[S_EVENTS], e), 0);
    }
    sl_value x = SL_I64(id);
    CHECK_EQ_INT(sl_reducing_add(st[S_SUM], &x), 0);
    CHECK_EQ_INT(sl_aggregating_add(st[S_AVG], &x), 0);
    for (int i = 0; i <= (int)(id % 4); i++) {
        char w[8];
        int wn = snprintf(w, sizeof w, "w%d", i);
        sl_value k = sl_strn(w, (size_t)wn), mv = SL_I64(id + i);
        CHECK_EQ_INT(sl_map_put(st[S_SEEN], &k, &mv), 0);
    }
    for (int i = 0; i < NSTATES; i++)
        CHECK_EQ_INT(sl_state_set_namespace(st[i], NULL, 0), 0);
}

static void check_key(sl__keyed_backend *be, sl_state **st, int64_t id)
{
    char buf[32], ns[8];
    int nsl = id % 3 == 0 ? snprintf(ns, sizeof ns, "n%d", (int)(id % 5)) : 0;
    use_key(be, id);
    for (int i = 0; i < NSTATES; i++)
        CHECK_EQ_INT(sl_state_set_namespace(st[i], ns, (size_t)nsl), 0);
    sl_value v, sv[2];
    CHECK_EQ_INT(sl_value_get(st[S_COUNT], &v), 1);
    CHECK_EQ_INT(v.u.i64, id * 7);
    int n = snprintf(buf, sizeof buf, "k%lld", (long long)id);
    CHECK_EQ_INT(sl_value_get(st[S_LAST], sv), 1);
    CHECK(sv[0].u.s.len == (size_t)n && !memcmp(sv[0].u.s.ptr, buf, (size_t)n));
    sl_iter *it;
    CHECK_EQ_INT(sl_list_get(st[S_EVENTS], &it), 1);
    int i = 0;
    while (sl_iter_next(it, sv) == 1)
        CHECK_EQ_INT(sv[1].u.i64, i++);
    CHECK_EQ_INT(i, id % 3 + 1);
    CHECK_EQ_INT(sl_reducing_get(st[S_SUM], &v), 1);
    CHECK_EQ_INT(v.u.i64, id);
    CHECK_EQ_INT(sl_aggregating_get(st[S_AVG], &v), 1);
    CHECK(v.u.f64 == (double)id);
    CHECK_EQ_INT(sl_map_iter(st[S_SEEN], &it), 1);
    int pairs = 0;
    sl_value k;
    while (sl_iter_next_kv(it, &k, &v) == 1) {
        CHECK_EQ_INT(k.u.s.len, 2);
        int w = k.u.s.ptr[1] - '0';
        CHECK_EQ_INT(v.u.i64, id + w);
        pairs++;
    }
    CHECK_EQ_INT(pairs, id % 4 + 1);
    for (i = 0; i < NSTATES; i++)
        CHECK_EQ_INT(sl_state_set_namespace(st[i], NULL, 0), 0);
    sl__state_end_call(be, NULL);
}

/* ---- canonical contents, whatever the order ----------------------------------------- */

typedef struct strs {
    char **v;
    size_t n, cap;
} strs;

static void strs_add(strs *l, const uint8_t *p, size_t n)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
    }
    char *c = malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++)
        sprintf(c + 2 * i, "%02x", p[i]);
    c[2 * n] = 0;
    l->v[l->n++] = c;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void strs_free(strs *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

/* One string per (state, key, namespace) with its payload, map pairs sorted. */
static strs contents(const sl__buf *b)
{
    strs out = {0};
    sl__rd r = {b->data, b->data + b->len};
    uint64_t nst;
    CHECK(sl__rd_varint(&r, &nst));
    for (uint64_t i = 0; i < nst; i++) {
        sl__kg_section s;
        CHECK(sl__kg_read_section(&r, &s));
        for (uint64_t e = 0; e < s.nentries; e++) {
            const uint8_t *key, *ns, *pl;
            size_t kl, nsl, pll;
            CHECK(sl__rd_bytes(&r, &key, &kl) && sl__rd_bytes(&r, &ns, &nsl) &&
                  sl__rd_bytes(&r, &pl, &pll));
            sl__buf one = {0};
            sl__buf_append(&one, s.name, s.namelen);
            sl__buf_append(&one, "|", 1);
            sl__buf_append(&one, key, kl);
            sl__buf_append(&one, "|", 1);
            sl__buf_append(&one, ns, nsl);
            sl__buf_append(&one, "|", 1);
            if (s.kind == SL_STATE_MAP) {
                sl__rd m = {pl, pl + pll};
                uint64_t np;
                CHECK(sl__rd_varint(&m, &np));
                strs pairs = {0};
                for (uint64_t j = 0; j < np; j++) {
                    const uint8_t *start = m.p, *k, *v;
                    size_t kn, vn;
                    CHECK(sl__rd_bytes(&m, &k, &kn) && sl__rd_bytes(&m, &v, &vn));
                    strs_add(&pairs, start, (size_t)(m.p - start));
                }
                qsort(pairs.v, pairs.n, sizeof *pairs.v, cmp_str);
                for (size_t j = 0; j < pairs.n; j++)
                    sl__buf_append(&one, pairs.v[j], strlen(pairs.v[j]));
                strs_free(&pairs);
            } else {
                sl__buf_append(&one, pl, pll);
            }
            strs_add(&out, one.data, one.len);
            sl__buf_free(&one);
        }
    }
    CHECK(r.p == r.end);
    qsort(out.v, out.n, sizeof *out.v, cmp_str);
    return out;
}

static void check_same_contents(const sl__buf *a, const sl__buf *b, int kg)
{
    strs x = contents(a), y = contents(b);
    if (x.n != y.n)
        FAIL_AT("key group %d: %zu entries vs %zu", kg, x.n, y.n);
    for (size_t i = 0; i < x.n; i++)
        if (strcmp(x.v[i], y.v[i]))
            FAIL_AT("key group %d: entry %zu differs: %s vs %s", kg, i, x.v[i], y.v[i]);
    strs_free(&x);
    strs_free(&y);
}

static void snapshot_all(sl__keyed_backend *be, sl__buf *out)
{
    for (int kg = be->kg_start; kg < be->kg_end; kg++) {
        memset(&out[kg], 0, sizeof out[kg]);
        CHECK_EQ_INT(sl__keyed_backend_snapshot_kg(be, kg, &out[kg]), 0);
    }
}

static void restore_all(sl__keyed_backend *be, const sl__buf *in)
{
    char err[512];
    for (int kg = be->kg_start; kg < be->kg_end; kg++)
        if (sl__keyed_backend_restore_kg(be, kg, in[kg].data, in[kg].len, err, sizeof err))
            FAIL_AT("restore of key group %d: %s", kg, err);
}

/* ---- tests: working directory --------------------------------------------------------- */

TEST(working_directory_lifecycle)
{
    char *base = tmp_dir();
    char local[512];
    snprintf(local, sizeof local, "%s/not/yet/there", base);
    sl__rocksdb_options o = opts_in(local);
    o.name = "job 1/Keyed Agg";
    o.subtask = 3;
    char err[512];
    sl__keyed_backend *be =
        sl__rocksdb_backend_create(&o, 8, 0, 8, key_schema(), err, sizeof err, NULL);
    if (!be)
        FAIL_AT("%s", err);
    CHECK(sl__backend_is_rocksdb(be));
    CHECK(is_dir(local)); /* the local directory and its parents were created */
    sl__rocksdb_stats s;
    sl__rocksdb_backend_stats(be, &s);
    char want[600];
    snprintf(want, sizeof want, "%s/sluice-job_1_Keyed_Agg-3-", local);
    CHECK(!strncmp(s.workdir, want, strlen(want)));
    CHECK_EQ_INT(strlen(s.workdir), strlen(want) + 6); /* the unique suffix */
    char path[700];
    snprintf(path, sizeof path, "%s/CURRENT", s.dbdir);
    CHECK(access(path, F_OK) == 0);
    char workdir[600];
    snprintf(workdir, sizeof workdir, "%s", s.workdir);
    /* a second subtask of the same operator gets its own directory */
    sl__keyed_backend *be2 =
        sl__rocksdb_backend_create(&o, 8, 0, 8, key_schema(), err, sizeof err, NULL);
    CHECK(be2);
    CHECK_EQ_INT(count_entries(local, NULL, 0), 2);
    sl_state *st = sl__keyed_backend_state(be, test_ctx(), &descs[S_COUNT]);
    use_key(be, 1);
    sl_value v = SL_I64(5);
    CHECK_EQ_INT(sl_value_update(st, &v), 0);
    CHECK_EQ_INT(sl__rocksdb_backend_flush(be, err, sizeof err), 0);
    sl__keyed_backend_destroy(be);
    CHECK(!is_dir(workdir)); /* removed with everything in it */
    CHECK(is_dir(local));    /* the local directory stays */
    sl__keyed_backend_destroy(be2);
    CHECK_EQ_INT(count_entries(local, NULL, 0), 0);
    /* no local directory: $TMPDIR */
    char tmpdir[600];
    snprintf(tmpdir, sizeof tmpdir, "%s/tmpdir", base);
    CHECK_EQ_INT(mkdir(tmpdir, 0700), 0);
    setenv("TMPDIR", tmpdir, 1);
    o.localdir = NULL;
    o.name = NULL;
    o.subtask = 0;
    be = sl__rocksdb_backend_create(&o, 8, 0, 8, key_schema(), err, sizeof err, NULL);
    CHECK(be);
    char first[256];
    CHECK_EQ_INT(count_entries(tmpdir, first, sizeof first), 1);
    CHECK(!strncmp(first, "sluice-op-0-", 12));
    sl__keyed_backend_destroy(be);
    CHECK_EQ_INT(count_entries(tmpdir, NULL, 0), 0);
    rm_rf(base);
    free(base);
}

TEST(local_directory_that_cannot_be_created)
{
    char *base = tmp_dir();
    char file[512], local[600];
    snprintf(file, sizeof file, "%s/a-file", base);
    FILE *f = fopen(file, "w");
    CHECK(f);
    fclose(f);
    snprintf(local, sizeof local, "%s/sub", file);
    sl__rocksdb_options o = opts_in(local);
    char err[512];
    int code = 0;
    CHECK(!sl__rocksdb_backend_create(&o, 8, 0, 8, key_schema(), err, sizeof err, &code));
    CHECK_EQ_INT(code, SL_EIO);
    char want[700];
    snprintf(want, sizeof want,
             "cannot create the RocksDB local directory %s (state.backend.rocksdb.localdir): Not "
             "a directory",
             local);
    CHECK_EQ_STR(err, want);
    /* the same through the factory and the configuration */
    sl__config *c = sl__config_create();
    CHECK_EQ_INT(sl__config_set(c, "state.backend", "rocksdb", err, sizeof err), 0);
    CHECK_EQ_INT(sl__config_set(c, "state.backend.rocksdb.localdir", local, err, sizeof err), 0);
    err[0] = 0;
    CHECK(!sl__keyed_backend_create(c, "op", 0, 8, 0, 8, key_schema(), err, sizeof err));
    CHECK_CONTAINS(err, "cannot create the RocksDB local directory");
    CHECK_CONTAINS(err, local);
    sl__config_destroy(c);
    CHECK_EQ_INT(count_entries(base, NULL, 0), 1); /* just the file: nothing left behind */
    rm_rf(base);
    free(base);
}

TEST(factory_chooses_by_configuration)
{
    char *base = tmp_dir();
    char err[512];
    sl__keyed_backend *be = sl__keyed_backend_create(NULL, "op", 0, 8, 0, 8, NULL, err, sizeof err);
    CHECK(be && !sl__backend_is_rocksdb(be) && !strcmp(be->ops->name, "heap"));
    sl__keyed_backend_destroy(be);
    sl__config *c = sl__config_create();
    be = sl__keyed_backend_create(c, "op", 0, 8, 0, 8, NULL, err, sizeof err);
    CHECK(be && !sl__backend_is_rocksdb(be)); /* the default: hashmap */
    sl__keyed_backend_destroy(be);
    CHECK_EQ_INT(sl__config_set(c, "state.backend.type", "rocksdb", err, sizeof err), 0);
    CHECK_EQ_INT(sl__config_set(c, "state.backend.rocksdb.localdir", base, err, sizeof err), 0);
    be = sl__keyed_backend_create(c, "op", 2, 8, 4, 8, key_schema(), err, sizeof err);
    CHECK(be && sl__backend_is_rocksdb(be));
    CHECK_EQ_INT(be->kg_start, 4);
    CHECK_EQ_INT(be->kg_end, 8);
    sl__rocksdb_stats s;
    sl__rocksdb_backend_stats(be, &s);
    CHECK_CONTAINS(s.workdir, "/sluice-op-2-");
    sl__keyed_backend_destroy(be);
    CHECK(!sl__keyed_backend_create(c, "op", 0, 8, 4, 9, NULL, err, sizeof err));
    CHECK_EQ_STR(err, "invalid key-group range [4, 9) of max parallelism 8");
    sl__config_destroy(c);
    sl__keyed_backend_destroy(NULL);
    rm_rf(base);
    free(base);
}

/* ---- tests: memory ---------------------------------------------------------------------- */

TEST(memory_options)
{
    char *base = tmp_dir();
    char err[512];
    sl__config *c = sl__config_create();
    sl__rocksdb_options o;
    sl__rocksdb_options_from_config(c, &o);
    CHECK(o.managed);
    CHECK_EQ_INT(o.memory_size, 64 << 20);
    CHECK(o.write_buffer_ratio == 0.5);
    CHECK(!o.localdir);
    CHECK_EQ_INT(
        sl__config_set(c, "state.backend.rocksdb.memory.fixed-per-slot", "16mb", err, sizeof err),
        0); /* Flink's name */
    CHECK_EQ_INT(sl__config_set(c, "state.backend.rocksdb.memory.write-buffer-ratio", "0.25", err,
                                sizeof err),
                 0);
    CHECK_EQ_INT(sl__config_set(c, "state.backend.rocksdb.localdir", base, err, sizeof err), 0);
    sl__rocksdb_options_from_config(c, &o);
    CHECK_EQ_INT(o.memory_size, 16 << 20);
    CHECK_EQ_STR(o.localdir, base);
    CHECK_EQ_INT(
        sl__config_set(c, "state.backend.rocksdb.memory.fixed-per-subtask", "1mb", err, sizeof err),
        SL_ECONFIG);
    CHECK_CONTAINS(err, "state.backend.rocksdb.memory.fixed-per-subtask");
    CHECK_EQ_INT(sl__config_set(c, "state.backend.rocksdb.memory.write-buffer-ratio", "1.5", err,
                                sizeof err),
                 SL_ECONFIG);
    struct {
        const char *size, *ratio, *managed;
        size_t cache, wb, per_cf;
    } cases[] = {
        {"64mb", "0.5", "true", 32 << 20, 32 << 20, 16 << 20},
        {"16mb", "0.25", "true", 12 << 20, 4 << 20, 2 << 20},
        {"256mb", "0.5", "true", 128 << 20, 128 << 20, 64 << 20}, /* memtables at most 64 MiB */
        {"8mb", "0", "true", 7 << 20, 1 << 20, 512 << 10},        /* each side at least 1 MiB */
        {"8mb", "1", "true", 1 << 20, 8 << 20, 4 << 20},
        {"64mb", "0.5", "false", 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_EQ_INT(sl__config_set(c, "state.backend.rocksdb.memory.fixed-per-subtask",
                                    cases[i].size, err, sizeof err),
                     0);
        CHECK_EQ_INT(sl__config_set(c, "state.backend.rocksdb.memory.write-buffer-ratio",
                                    cases[i].ratio, err, sizeof err),
                     0);
        CHECK_EQ_INT(sl__config_set(c, "state.backend.rocksdb.memory.managed", cases[i].managed,
                                    err, sizeof err),
                     0);
        sl__rocksdb_options_from_config(c, &o);
        sl__keyed_backend *be =
            sl__rocksdb_backend_create(&o, 8, 0, 8, key_schema(), err, sizeof err, NULL);
        CHECK(be);
        sl__rocksdb_stats s;
        sl__rocksdb_backend_stats(be, &s);
        CHECK_EQ_INT(s.block_cache_capacity, cases[i].cache);
        CHECK_EQ_INT(s.write_buffer_budget, cases[i].wb);
        CHECK_EQ_INT(s.write_buffer_size, cases[i].per_cf);
        sl__keyed_backend_destroy(be);
    }
    sl__config_destroy(c);
    rm_rf(base);
    free(base);
}

/* Several times more state than the budget: memtables stay within the write-buffer budget
 * and the block cache within its capacity while everything is written and read back. */
TEST(memory_stays_within_budget)
{
    char *base = tmp_dir();
    sl__rocksdb_options o = opts_in(base);
    o.memory_size = 8 << 20; /* 4 MiB cache, 4 MiB write buffers */
    char err[512];
    sl__keyed_backend *be =
        sl__rocksdb_backend_create(&o, 32, 0, 32, key_schema(), err, sizeof err, NULL);
    CHECK(be);
    sl_state_desc d = {.name = "blob", .kind = SL_STATE_VALUE, .schema = "s:str,n:i64"};
    sl_state *st = sl__keyed_backend_state(be, test_ctx(), &d);
    sl_state *cnt = sl__keyed_backend_state(be, test_ctx(), &descs[S_COUNT]);
    char payload[400];
    enum { N = 100000 }; /* ~40 MB of values: five times the budget */
    size_t max_mem = 0, max_cache = 0;
    for (int64_t i = 0; i < N; i++) {
        use_key(be, i);
        memset(payload, 'a' + (int)(i % 26), sizeof payload);
        sl_value row[2] = {sl_strn(payload, sizeof payload), SL_I64(i)};
        CHECK_EQ_INT(sl_value_update(st, row), 0);
        sl_value v = SL_I64(i);
        CHECK_EQ_INT(sl_value_update(cnt, &v), 0);
        sl__state_end_call(be, NULL);
        if (i % 1000 == 0) {
            sl__rocksdb_stats s;
            sl__rocksdb_backend_stats(be, &s);
            if (s.memtable_bytes > max_mem)
                max_mem = s.memtable_bytes;
        }
    }
    for (int64_t i = 0; i < N; i += 3) {
        use_key(be, (i * 7919) % N);
        sl_value row[2];
        CHECK_EQ_INT(sl_value_get(st, row), 1);
        CHECK_EQ_INT(row[1].u.i64, (i * 7919) % N);
        CHECK_EQ_INT(row[0].u.s.len, sizeof payload);
        sl__state_end_call(be, NULL);
        if (i % 999 == 0) {
            sl__rocksdb_stats s;
            sl__rocksdb_backend_stats(be, &s);
            if (s.block_cache_usage > max_cache)
                max_cache = s.block_cache_usage;
        }
    }
    sl__rocksdb_stats s;
    sl__rocksdb_backend_stats(be, &s);
    fprintf(stderr,
            "40 MB of state, 8 MiB budget: memtables at most %zu bytes (budget %zu), block cache "
            "at most %zu bytes (capacity %zu)\n",
            max_mem, s.write_buffer_budget, max_cache, s.block_cache_capacity);
    /* the write buffer manager flushes once the budget is reached; allow one memtable's
     * arena block of overshoot per state */
    CHECK(max_mem <= s.write_buffer_budget + s.write_buffer_size);
    CHECK(max_cache <= s.block_cache_capacity + s.block_cache_capacity / 4);
    CHECK(max_cache > 0);
    sl__keyed_backend_destroy(be);
    rm_rf(base);
    free(base);
}

/* ---- tests: errors ---------------------------------------------------------------------- */

/* Overwrites the first half (the data blocks) of every .sst file under dir; returns how
 * many there were. */
static int corrupt_ssts(const char *dir)
{
    DIR *d = opendir(dir);
    CHECK(d);
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 4, ".sst"))
            continue;
        char p[700];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        CHECK_EQ_INT(stat(p, &sb), 0);
        FILE *f = fopen(p, "r+b");
        CHECK(f);
        for (off_t i = 0; i < sb.st_size / 2; i++)
            fputc((int)(i * 131 % 251), f);
        fclose(f);
        files++;
    }
    closedir(d);
    return files;
}

typedef struct ctx_read {
    sl_state *st;
    int rc;
} ctx_read;

TEST(corrupted_sst_fails_reads_with_eio)
{
    char *base = tmp_dir();
    sl__keyed_backend *be = rocks(base, 8);
    sl_state *st[NSTATES];
    reg_all(be, st);
    for (int64_t id = 0; id < 3000; id++)
        fill_key(be, st, id);
    char err[512];
    CHECK_EQ_INT(sl__rocksdb_backend_flush(be, err, sizeof err), 0);
    sl__rocksdb_stats s;
    sl__rocksdb_backend_stats(be, &s);
    CHECK(corrupt_ssts(s.dbdir) >= NSTATES);
    /* point reads fail with SL_EIO through sl_fail, naming the operation, state and
     * directory, and RocksDB's reason */
    int failures = 0;
    for (int64_t id = 1; id < 3000 && !failures; id += 3) {
        use_key(be, id);
        sl_value row[2];
        clear_error();
        int rc = sl_value_get(st[S_LAST], row);
        if (rc == 1)
            continue;
        CHECK_EQ_INT(rc, SL_EIO);
        CHECK_CONTAINS(t_job.err, "RocksDB get of state \"last\" failed in ");
        CHECK_CONTAINS(t_job.err, s.dbdir);
        CHECK_CONTAINS(t_job.err, "Corruption");
        CHECK_CONTAINS(t_job.err, "operator 'rocksdb_test' (subtask 1/1) failed");
        failures++;
    }
    CHECK(failures);
    /* a snapshot of the key groups fails with SL_EIO too, never silently short */
    int snap_failures = 0;
    for (int kg = 0; kg < 8; kg++) {
        sl__buf b = {0};
        int rc = sl__keyed_backend_snapshot_kg(be, kg, &b);
        CHECK(rc == 0 || rc == SL_EIO);
        snap_failures += rc == SL_EIO;
        sl__buf_free(&b);
    }
    CHECK(snap_failures > 0);
    sl__keyed_backend_destroy(be);
    rm_rf(base);
    free(base);
}

TEST(removed_directory_fails_writes_with_eio)
{
    char *base = tmp_dir();
    sl__keyed_backend *be = rocks(base, 8);
    sl_state *st = sl__keyed_backend_state(be, test_ctx(), &descs[S_COUNT]);
    use_key(be, 1);
    sl_value v = SL_I64(1);
    CHECK_EQ_INT(sl_value_update(st, &v), 0);
    sl__rocksdb_stats s;
    sl__rocksdb_backend_stats(be, &s);
    rm_rf(s.dbdir); /* a disk that went away */
    char err[512];
    int rc = sl__rocksdb_backend_flush(be, err, sizeof err);
    CHECK_EQ_INT(rc, SL_EIO);
    CHECK_CONTAINS(err, "RocksDB flush of state \"count\" failed in ");
    CHECK_CONTAINS(err, s.dbdir);
    CHECK_CONTAINS(err, "IO error");
    /* the failed flush stops writes: the next one fails through sl_fail */
    clear_error();
    rc = sl_value_update(st, &v);
    CHECK_EQ_INT(rc, SL_EIO);
    CHECK_CONTAINS(t_job.err, "RocksDB put of state \"count\" failed in ");
    /* registering a state needs a column family: refused with the reason */
    clear_error();
    CHECK(!sl__keyed_backend_state(be, test_ctx(), &descs[S_LAST]));
    CHECK_CONTAINS(t_job.err, "of state \"last\" failed in "); /* its column family or record */
    CHECK_CONTAINS(t_job.err, "IO error");
    sl__keyed_backend_destroy(be);
    rm_rf(base);
    free(base);
}

/* ---- tests: layout ---------------------------------------------------------------------- */

static sl__key str_key(sl__keyed_backend *be, const char *s, uint8_t *buf)
{
    static sl__schema *ks;
    if (!ks)
        ks = schema_of("str");
    sl_value v = sl_str(s);
    uint8_t *end = sl__row_write(ks, &v, buf);
    sl__key k = {.bytes = buf, .len = (size_t)(end - buf)};
    k.hash = sl__hash(buf, k.len);
    k.key_group = sl__key_group(k.hash, be->max_parallelism);
    return k;
}

static int count_cb(void *arg, const sl__key *k)
{
    (void)k;
    (*(int *)arg)++;
    return 0;
}

/* With one key group, keys "a" and "ab" (whose row bytes differ only after a length) and
 * namespaces "" and "x" are distinct scopes: no pair of one is seen from another, and
 * clearing one leaves the others. */
TEST(scopes_never_overlap)
{
    char *base = tmp_dir();
    sl__rocksdb_options o = opts_in(base);
    char err[512];
    sl__keyed_backend *be = sl__rocksdb_backend_create(&o, 1, 0, 1, NULL, err, sizeof err, NULL);
    CHECK(be);
    sl_state *m = sl__keyed_backend_state(be, test_ctx(), &descs[S_SEEN]);
    sl_state *l = sl__keyed_backend_state(be, test_ctx(), &descs[S_EVENTS]);
    const char *keys[] = {"a", "ab", "", "b"};
    const char *nss[] = {"", "x", "xy"};
    uint8_t kb[4][32];
    for (int k = 0; k < 4; k++) {
        sl__key key = str_key(be, keys[k], kb[k]);
        sl__keyed_backend_set_key(be, &key);
        for (int n = 0; n < 3; n++) {
            sl_state_set_namespace(m, nss[n], strlen(nss[n]));
            sl_state_set_namespace(l, nss[n], strlen(nss[n]));
            for (int i = 0; i <= k + n; i++) {
                char w[8];
                snprintf(w, sizeof w, "%d", i);
                sl_value uk = sl_str(w), v = SL_I64(k * 100 + n * 10 + i);
                CHECK_EQ_INT(sl_map_put(m, &uk, &v), 0);
                sl_value e[2] = {sl_str(keys[k]), SL_I64(n)};
                CHECK_EQ_INT(sl_list_add(l, e), 0);
            }
        }
    }
    for (int k = 0; k < 4; k++) {
        sl__key key = str_key(be, keys[k], kb[k]);
        sl__keyed_backend_set_key(be, &key);
        for (int n = 0; n < 3; n++) {
            sl_state_set_namespace(m, nss[n], strlen(nss[n]));
            sl_state_set_namespace(l, nss[n], strlen(nss[n]));
            sl_iter *it;
            CHECK_EQ_INT(sl_map_iter(m, &it), 1);
            sl_value uk, v;
            int c = 0;
            while (sl_iter_next_kv(it, &uk, &v) == 1) {
                CHECK_EQ_INT(v.u.i64 / 10, k * 10 + n);
                c++;
            }
            CHECK_EQ_INT(c, k + n + 1);
            CHECK_EQ_INT(sl_list_get(l, &it), 1);
            c = 0;
            sl_value e[2];
            while (sl_iter_next(it, e) == 1) {
                CHECK_EQ_INT(e[1].u.i64, n);
                c++;
            }
            CHECK_EQ_INT(c, k + n + 1);
            sl__state_end_call(be, NULL);
        }
    }
    CHECK_EQ_INT(sl__keyed_backend_size(be), 2 * 4 * 3);
    /* for_each_key sees each key once per namespace */
    int n = 0;
    sl_state_set_namespace(m, "x", 1);
    CHECK_EQ_INT(sl__keyed_backend_for_each_key(be, m, count_cb, &n), 0);
    CHECK_EQ_INT(n, 4);
    /* clearing key "a"'s map in namespace "" leaves "ab" and "a" in "x" */
    sl__key ka = str_key(be, "a", kb[0]);
    sl__keyed_backend_set_key(be, &ka);
    sl_state_set_namespace(m, "", 0);
    CHECK_EQ_INT(sl_state_clear(m), 0);
    sl_iter *it;
    CHECK_EQ_INT(sl_map_iter(m, &it), 0);
    sl_state_set_namespace(m, "x", 1);
    CHECK_EQ_INT(sl_map_iter(m, &it), 1);
    sl__key kab = str_key(be, "ab", kb[1]);
    sl__keyed_backend_set_key(be, &kab);
    sl_state_set_namespace(m, "", 0);
    CHECK_EQ_INT(sl_map_iter(m, &it), 1);
    CHECK_EQ_INT(sl__keyed_backend_size(be), 2 * 4 * 3 - 1);
    sl__keyed_backend_destroy(be);
    rm_rf(base);
    free(base);
}

/* Appends go through the merge operator: operands in memtables and SST files, merged at
 * read, compacted; a list_update (a put) replaces whatever was merged before. */
TEST(list_appends_merge_across_flushes)
{
    char *base = tmp_dir();
    sl__keyed_backend *be = rocks(base, 4);
    sl_state *l = sl__keyed_backend_state(be, test_ctx(), &descs[S_EVENTS]);
    char err[512];
    for (int round = 0; round < 4; round++) {
        for (int64_t id = 0; id < 50; id++) {
            use_key(be, id);
            for (int i = 0; i < 5; i++) {
                sl_value e[2] = {sl_str("ev"), SL_I64(round * 5 + i)};
                CHECK_EQ_INT(sl_list_add(l, e), 0);
            }
        }
        CHECK_EQ_INT(sl__rocksdb_backend_flush(be, err, sizeof err), 0);
    }
    for (int64_t id = 0; id < 50; id++) {
        use_key(be, id);
        sl_iter *it;
        CHECK_EQ_INT(sl_list_get(l, &it), 1);
        sl_value e[2];
        int i = 0;
        while (sl_iter_next(it, e) == 1)
            CHECK_EQ_INT(e[1].u.i64, i++);
        CHECK_EQ_INT(i, 20);
        if (id % 2) {
            sl_value r[2] = {sl_str("r"), SL_I64(-1)};
            CHECK_EQ_INT(sl_list_update(l, r, 1), 0);
            sl_value more[2] = {sl_str("m"), SL_I64(-2)};
            CHECK_EQ_INT(sl_list_add(l, more), 0);
        }
        sl__state_end_call(be, NULL);
    }
    CHECK_EQ_INT(sl__rocksdb_backend_flush(be, err, sizeof err), 0);
    for (int64_t id = 0; id < 50; id++) {
        use_key(be, id);
        sl_iter *it;
        CHECK_EQ_INT(sl_list_get(l, &it), 1);
        sl_value e[2];
        int i = 0;
        while (sl_iter_next(it, e) == 1) {
            if (id % 2)
                CHECK_EQ_INT(e[1].u.i64, -1 - i);
            i++;
        }
        CHECK_EQ_INT(i, id % 2 ? 2 : 20);
        sl__state_end_call(be, NULL);
    }
    sl__keyed_backend_destroy(be);
    rm_rf(base);
    free(base);
}

/* Rows read stay valid while other reads follow, until the key changes or the call ends;
 * open iterators keep them valid across a new key too. */
TEST(views_live_until_the_call_ends)
{
    char *base = tmp_dir();
    sl__keyed_backend *be = rocks(base, 4);
    sl_state *st[NSTATES];
    reg_all(be, st);
    for (int64_t id = 0; id < 20; id++)
        fill_key(be, st, id);
    use_key(be, 1);
    sl_value a[2], b[2];
    CHECK_EQ_INT(sl_value_get(st[S_LAST], a), 1);
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(sl_value_get(st[S_LAST], b), 1);
    sl_value v = SL_I64(3);
    CHECK_EQ_INT(sl_value_update(st[S_COUNT], &v), 0); /* a write to another state */
    CHECK(a[0].u.s.len == 2 && !memcmp(a[0].u.s.ptr, "k1", 2));
    sl_iter *it;
    CHECK_EQ_INT(sl_map_iter(st[S_SEEN], &it), 1);
    sl_value k, mv;
    CHECK_EQ_INT(sl_iter_next_kv(it, &k, &mv), 1);
    use_key(be, 2); /* an iterator is open: the views stay */
    CHECK_EQ_INT(sl_value_get(st[S_LAST], b), 1);
    CHECK(a[0].u.s.len == 2 && !memcmp(a[0].u.s.ptr, "k1", 2));
    CHECK(k.u.s.len == 2 && !memcmp(k.u.s.ptr, "w0", 2));
    CHECK_EQ_INT(sl_iter_next_kv(it, &k, &mv), 1); /* still key 1's map */
    CHECK_EQ_INT(mv.u.i64, 2);
    sl__state_end_call(be, NULL);
    CHECK_EQ_INT(sl_iter_next_kv(it, &k, &mv), 0); /* released */
    sl__keyed_backend_destroy(be);
    rm_rf(base);
    free(base);
}

/* ---- tests: snapshots ------------------------------------------------------------------- */

typedef struct writer {
    sl__keyed_snapshot *s;
    int m;
    sl__buf *out;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    for (int kg = 0; kg < w->m; kg++)
        CHECK_EQ_INT(sl__keyed_snapshot_write_kg(w->s, kg, &w->out[kg]), 0);
    sl__keyed_snapshot_release(w->s);
    return NULL;
}

/* A snapshot sees the state as it was at begin() while the task thread rewrites, clears
 * and adds; the live backend sees the new state. */
TEST(snapshot_isolation)
{
    enum { M = 8, N = 400 };
    char *base = tmp_dir();
    sl__keyed_backend *be = rocks(base, M);
    sl_state *st[NSTATES];
    reg_all(be, st);
    for (int64_t id = 0; id < N; id++)
        fill_key(be, st, id);
    sl__buf ref[M];
    snapshot_all(be, ref);
    sl__keyed_snapshot *s = sl__keyed_backend_snapshot_begin(be);
    CHECK(s);
    sl__buf out[M];
    memset(out, 0, sizeof out);
    writer w = {s, M, out};
    pthread_t t;
    CHECK_EQ_INT(pthread_create(&t, NULL, writer_main, &w), 0);
    for (int64_t id = 0; id < N; id++) {
        use_key(be, id);
        for (int i = 0; i < NSTATES; i++)
            CHECK_EQ_INT(sl_state_clear(st[i]), 0);
        fill_key(be, st, id + N); /* other contents under new keys */
    }
    CHECK_EQ_INT(pthread_join(t, NULL), 0);
    for (int kg = 0; kg < M; kg++) {
        if (out[kg].len != ref[kg].len || memcmp(out[kg].data, ref[kg].data, ref[kg].len))
            FAIL_AT("key group %d: the snapshot differs from the state at begin()", kg);
        sl__buf_free(&out[kg]);
        sl__buf_free(&ref[kg]);
    }
    for (int64_t id = N; id < 2 * N; id++)
        check_key(be, st, id);
    sl__keyed_backend_destroy(be);
    rm_rf(base);
    free(base);
}

/* Checkpoints are backend-independent: heap -> RocksDB -> heap, registered before and
 * after the restore, give the same contents and the same reads. */
TEST(heap_and_rocksdb_snapshots_restore_into_each_other)
{
    enum { M = 16, N = 1500 };
    char *base = tmp_dir();
    sl__keyed_backend *h = heap(M);
    sl_state *hs[NSTATES];
    reg_all(h, hs);
    for (int64_t id = 0; id < N; id++)
        fill_key(h, hs, id);
    sl__buf hsnap[M];
    snapshot_all(h, hsnap);
    /* heap -> RocksDB, restored before registration */
    sl__keyed_backend *r = rocks(base, M);
    restore_all(r, hsnap);
    CHECK_EQ_INT(sl__keyed_backend_size(r), sl__keyed_backend_size(h));
    sl_state *rs[NSTATES];
    reg_all(r, rs);
    for (int64_t id = 0; id < N; id++)
        check_key(r, rs, id);
    sl__buf rsnap[M];
    snapshot_all(r, rsnap);
    for (int kg = 0; kg < M; kg++) {
        check_same_contents(&rsnap[kg], &hsnap[kg], kg);
        CHECK_EQ_INT(rsnap[kg].len, hsnap[kg].len);
    }
    /* heap -> RocksDB, registered first */
    sl__keyed_backend *r2 = rocks(base, M);
    sl_state *r2s[NSTATES];
    reg_all(r2, r2s);
    restore_all(r2, hsnap);
    for (int64_t id = 0; id < N; id += 7)
        check_key(r2, r2s, id);
    /* RocksDB -> heap, through an asynchronous snapshot */
    sl__keyed_snapshot *s = sl__keyed_backend_snapshot_begin(r);
    sl__buf asnap[M];
    memset(asnap, 0, sizeof asnap);
    writer w = {s, M, asnap};
    pthread_t t;
    CHECK_EQ_INT(pthread_create(&t, NULL, writer_main, &w), 0);
    CHECK_EQ_INT(pthread_join(t, NULL), 0);
    sl__keyed_backend *h2 = heap(M);
    restore_all(h2, asnap);
    sl_state *h2s[NSTATES];
    reg_all(h2, h2s);
    for (int64_t id = 0; id < N; id++)
        check_key(h2, h2s, id);
    sl__buf h2snap[M];
    snapshot_all(h2, h2snap);
    for (int kg = 0; kg < M; kg++)
        check_same_contents(&h2snap[kg], &hsnap[kg], kg);
    /* restoring a map scope replaces its pairs, as on the heap */
    use_key(r2, 4);
    sl_value extra = sl_str("zz"), one = SL_I64(1);
    CHECK_EQ_INT(sl_map_put(r2s[S_SEEN], &extra, &one), 0);
    restore_all(r2, hsnap);
    use_key(r2, 4);
    CHECK_EQ_INT(sl_map_contains(r2s[S_SEEN], &extra), 0);
    check_key(r2, r2s, 4);
    for (int kg = 0; kg < M; kg++) {
        sl__buf_free(&hsnap[kg]);
        sl__buf_free(&rsnap[kg]);
        sl__buf_free(&asnap[kg]);
        sl__buf_free(&h2snap[kg]);
    }
    sl__keyed_backend_destroy(h);
    sl__keyed_backend_destroy(h2);
    sl__keyed_backend_destroy(r);
    sl__keyed_backend_destroy(r2);
    rm_rf(base);
    free(base);
}

/* ---- incremental checkpoints ---------------------------------------------------------- */

static const sl_state_desc v_desc = {.name = "v", .kind = SL_STATE_VALUE, .schema = "n:i64"};

static sl__keyed_backend *rocks_range(const char *dir, int m, int start, int end, bool incremental)
{
    sl__rocksdb_options o = opts_in(dir);
    o.incremental = incremental;
    char err[512];
    sl__keyed_backend *be =
        sl__rocksdb_backend_create(&o, m, start, end, key_schema(), err, sizeof err, NULL);
    if (!be)
        FAIL_AT("create: %s", err);
    return be;
}

static void put_v(sl__keyed_backend *be, sl_state *st, int64_t id, int64_t v)
{
    use_key(be, id);
    sl_value x = SL_I64(v);
    CHECK_EQ_INT(sl_value_update(st, &x), 0);
    sl__state_end_call(be, NULL);
}

static int64_t get_v(sl__keyed_backend *be, sl_state *st, int64_t id)
{
    use_key(be, id);
    sl_value r;
    int rc = sl_value_get(st, &r);
    CHECK(rc >= 0);
    int64_t v = rc ? r.u.i64 : -1;
    sl__state_end_call(be, NULL);
    return v;
}

/* A checkpoint storage for job 0123...ef under a fresh directory, retaining retained. */
static sl__storage *incr_storage(const char *base, int retained)
{
    char cdir[600], err[512];
    snprintf(cdir, sizeof cdir, "%s/chk", base);
    sl__storage *st =
        sl__storage_create(cdir, "0123456789abcdef0123456789abcdef", retained, err, sizeof err);
    if (!st)
        FAIL_AT("storage: %s", err);
    return st;
}

/* An incremental backend over [0, m) whose value state *v holds n keys, each its id. */
static sl__keyed_backend *incr_filled(const char *base, int m, int n, sl_state **v)
{
    sl__keyed_backend *be = rocks_range(base, m, 0, m, true);
    *v = sl__keyed_backend_state(be, test_ctx(), &v_desc);
    CHECK(*v);
    for (int64_t id = 0; id < n; id++)
        put_v(be, *v, id, id);
    return be;
}

/* Takes checkpoint id of backend be (one keyed operator "op", one subtask owning [0, m))
 * into st and completes it; returns the bytes it stored itself and, in *full, its size. */
static uint64_t take_checkpoint(sl__storage *st, sl__keyed_backend *be, int m, int64_t id,
                                uint64_t *full)
{
    char err[512];
    sl__keyed_snapshot *snap = sl__keyed_backend_snapshot_begin(be);
    CHECK(snap);
    sl__subtask_state db = {0}, ss = {0};
    if (sl__storage_put_db_files(st, id, "op", 0, snap, &db, err, sizeof err) < 0)
        FAIL_AT("put_db_files: %s", err);
    sl__keyed_snapshot_release(snap);
    sl__state_writer *w = sl__state_writer_open(st, id, "op", 0, 0, m, err, sizeof err);
    CHECK(w);
    for (int kg = 0; kg < m; kg++)
        CHECK_EQ_INT(sl__state_writer_add_kg(w, kg, NULL, 0), 0);
    CHECK_EQ_INT(sl__state_writer_close(w, &ss, err, sizeof err), 0);
    ss.files = db.files;
    ss.nfiles = db.nfiles;
    uint64_t stored = 0;
    *full = 0;
    for (int f = 0; f < ss.nfiles; f++) {
        *full += ss.files[f].size;
        stored += ss.files[f].stored ? ss.files[f].size : 0;
    }
    sl__operator_state_meta op = {
        .uid = "op", .name = "Keyed", .parallelism = 1, .max_parallelism = m, .subtasks = &ss};
    sl__checkpoint_meta meta = {.id = id,
                                .job_id = "0123456789abcdef0123456789abcdef",
                                .job_name = "incremental",
                                .noperators = 1,
                                .operators = &op};
    if (sl__storage_complete(st, &meta, err, sizeof err) < 0)
        FAIL_AT("complete %lld: %s", (long long)id, err);
    sl__subtask_state_free(&ss);
    return stored;
}

/* The shared/ files of the retained checkpoints (from their _metadata), with sizes. */
static int referenced_shared(sl__storage *st, char names[][128], uint64_t *bytes)
{
    int64_t ids[8];
    int n = sl__storage_retained(st, ids, 8), nn = 0;
    *bytes = 0;
    for (int i = 0; i < n; i++) {
        char path[4096], err[512];
        snprintf(path, sizeof path, "%s/chk-%lld", sl__storage_job_dir(st), (long long)ids[i]);
        sl__checkpoint_meta *m;
        if (sl__checkpoint_load(st, path, -1, &m, err, sizeof err) < 0)
            FAIL_AT("load: %s", err);
        const sl__subtask_state *ss = &m->operators[0].subtasks[0];
        for (int f = 0; f < ss->nfiles; f++) {
            if (strncmp(ss->files[f].path, "../shared/", 10))
                continue;
            int k = 0;
            while (k < nn && strcmp(names[k], ss->files[f].path + 10))
                k++;
            if (k == nn) {
                CHECK(nn < 256);
                snprintf(names[nn++], 128, "%s", ss->files[f].path + 10);
                *bytes += ss->files[f].size;
            }
        }
        sl__checkpoint_meta_free(m);
    }
    return nn;
}

/* What is in <job>/shared/ on disk: the count, the bytes in *bytes. */
static int shared_on_disk(sl__storage *st, uint64_t *bytes)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/shared", sl__storage_job_dir(st));
    DIR *d = opendir(dir);
    CHECK(d);
    int n = 0;
    *bytes = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[8192];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        CHECK_EQ_INT(stat(p, &sb), 0);
        *bytes += (uint64_t)sb.st_size;
        n++;
    }
    closedir(d);
    return n;
}

/* shared/ holds exactly the files the retained checkpoints reference. */
static void check_shared_matches(sl__storage *st, const char *when)
{
    static char names[256][128];
    uint64_t ref_bytes, disk_bytes;
    int nref = referenced_shared(st, names, &ref_bytes);
    int ndisk = shared_on_disk(st, &disk_bytes);
    if (nref != ndisk || ref_bytes != disk_bytes)
        FAIL_AT("%s: shared/ has %d files, %llu bytes; the retained checkpoints reference %d "
                "files, %llu bytes",
                when, ndisk, (unsigned long long)disk_bytes, nref, (unsigned long long)ref_bytes);
    for (int i = 0; i < nref; i++)
        CHECK(sl__storage_shared_refs(st, names[i]) >= 1);
}

/* Three retained checkpoints; a tenth of the keys changes between checkpoints: each
 * checkpoint stores only the SST files that are new (far less than its full size), the
 * others are referenced again, and a shared file is deleted exactly when no retained
 * checkpoint references it any more, as compactions replace files. An aborted
 * checkpoint's own files go with it. */
TEST(incremental_checkpoints_share_and_delete_sst_files)
{
    enum { M = 16, N = 40000, ROUNDS = 8 };
    char *base = tmp_dir(), err[512];
    sl__storage *st = incr_storage(base, 3);
    sl_state *v;
    sl__keyed_backend *be = incr_filled(base, M, N, &v);
    static int64_t expect[N];
    for (int64_t id = 0; id < N; id++)
        expect[id] = id;
    uint64_t full, stored = take_checkpoint(st, be, M, 1, &full);
    CHECK(stored == full && full > 0); /* the first checkpoint stores everything */
    check_shared_matches(st, "after checkpoint 1");
    uint64_t stored_later = 0, full_later = 0;
    int small = 0; /* checkpoints that stored less than a quarter of their size */
    for (int64_t id = 2; id <= ROUNDS; id++) {
        for (int64_t k = id % 10; k < N; k += 10) { /* a tenth of the keys */
            put_v(be, v, k, id * 1000000 + k);
            expect[k] = id * 1000000 + k;
        }
        uint64_t f, s2 = take_checkpoint(st, be, M, id, &f);
        printf("     checkpoint %lld: stored %llu of %llu bytes\n", (long long)id,
               (unsigned long long)s2, (unsigned long long)f);
        small += s2 * 4 < f;
        stored_later += s2;
        full_later += f;
        char when[64];
        snprintf(when, sizeof when, "after checkpoint %lld", (long long)id);
        check_shared_matches(st, when);
        int64_t ids[8];
        CHECK_EQ_INT(sl__storage_retained(st, ids, 8), id < 3 ? (int)id : 3);
    }
    printf("     incremental: first checkpoint %llu bytes; later ones stored %llu of %llu bytes "
           "(%.1f%%)\n",
           (unsigned long long)full, (unsigned long long)stored_later,
           (unsigned long long)full_later, 100.0 * (double)stored_later / (double)full_later);
    /* most checkpoints store a small part; a compaction now and then rewrites more */
    CHECK(small >= ROUNDS - 3);
    CHECK(stored_later * 2 < full_later);
    static char names[256][128];
    uint64_t b0, b1;
    int before = referenced_shared(st, names, &b0);
    /* an aborted checkpoint: what only it stored is deleted, the rest stays */
    for (int64_t k = 0; k < N; k += 3)
        put_v(be, v, k, -k);
    sl__keyed_snapshot *snap = sl__keyed_backend_snapshot_begin(be);
    CHECK(snap);
    sl__subtask_state db = {0};
    CHECK_EQ_INT(sl__storage_put_db_files(st, ROUNDS + 1, "op", 0, snap, &db, err, sizeof err), 0);
    sl__keyed_snapshot_release(snap);
    int fresh = 0, reused = 0;
    for (int f = 0; f < db.nfiles; f++)
        if (!strncmp(db.files[f].path, "../shared/", 10)) {
            int refs = sl__storage_shared_refs(st, db.files[f].path + 10);
            if (db.files[f].stored)
                fresh += refs == 1;
            else
                reused += refs >= 2;
        }
    CHECK(fresh >= 1 && reused >= 1);
    sl__storage_abort(st, ROUNDS + 1);
    for (int f = 0; f < db.nfiles; f++)
        if (db.files[f].stored && !strncmp(db.files[f].path, "../shared/", 10))
            CHECK_EQ_INT(sl__storage_shared_refs(st, db.files[f].path + 10), 0);
    sl__subtask_state_free(&db);
    check_shared_matches(st, "after an aborted checkpoint");
    CHECK_EQ_INT(referenced_shared(st, names, &b1), before);
    for (int64_t k = 0; k < N; k += 3) /* back to what checkpoint ROUNDS holds */
        put_v(be, v, k, expect[k]);
    sl__keyed_backend_destroy(be);

    /* restore the newest checkpoint at the same parallelism and into two subtasks */
    char path[4096];
    snprintf(path, sizeof path, "%s/chk-%d", sl__storage_job_dir(st), ROUNDS);
    sl__checkpoint_meta *m;
    CHECK_EQ_INT(sl__checkpoint_load(st, path, -1, &m, err, sizeof err), 0);
    const sl__subtask_state *ss = &m->operators[0].subtasks[0];
    int ranges[3][2] = {{0, M}, {0, M / 2}, {M / 2, M}};
    size_t total = 0;
    for (int r = 0; r < 3; r++) {
        sl__keyed_backend *rb = rocks_range(base, M, ranges[r][0], ranges[r][1], true);
        char *dir;
        CHECK_EQ_INT(sl__rocksdb_backend_scratch_dir(rb, &dir, err, sizeof err), 0);
        if (sl__storage_fetch_db_files(st, path, -1, ss, dir, err, sizeof err) < 0)
            FAIL_AT("fetch: %s", err);
        if (sl__rocksdb_backend_adopt(rb, dir, ranges[r][0], ranges[r][1], err, sizeof err) < 0)
            FAIL_AT("adopt: %s", err);
        sl__free(dir);
        sl_state *rv = sl__keyed_backend_state(rb, test_ctx(), &v_desc);
        CHECK(rv);
        size_t n = sl__keyed_backend_size(rb);
        if (r == 0)
            CHECK_EQ_INT(n, N);
        else
            total += n;
        for (int64_t id = 0; id < N; id++) {
            uint8_t kb[16];
            sl_value kv = SL_I64(id);
            size_t kl = (size_t)(sl__row_write(key_schema(), &kv, kb) - kb);
            int kg = sl__key_group(sl__hash(kb, kl), M);
            if (kg < ranges[r][0] || kg >= ranges[r][1])
                continue;
            if (get_v(rb, rv, id) != expect[id])
                FAIL_AT("restore %d: key %lld reads %lld, expected %lld", r, (long long)id,
                        (long long)get_v(rb, rv, id), (long long)expect[id]);
        }
        sl__keyed_backend_destroy(rb);
    }
    CHECK_EQ_INT(total, N); /* the two halves together hold every key once */
    /* the checkpoint's own files were only read: they still verify */
    sl__keyed_backend *rb = rocks_range(base, M, 0, M, false);
    char *dir;
    CHECK_EQ_INT(sl__rocksdb_backend_scratch_dir(rb, &dir, err, sizeof err), 0);
    CHECK_EQ_INT(sl__storage_fetch_db_files(st, path, -1, ss, dir, err, sizeof err), 0);
    sl__free(dir);
    sl__keyed_backend_destroy(rb);
    sl__checkpoint_meta_free(m);
    sl__storage_discard_all(st);
    uint64_t left;
    snprintf(path, sizeof path, "%s/shared", sl__storage_job_dir(st));
    CHECK(!is_dir(path) || (shared_on_disk(st, &left) == 0));
    sl__storage_destroy(st);
    rm_rf(base);
    free(base);
}

/* A restored database whose states are declared differently now is checked entry by entry
 * and refused; a corrupt or missing shared file fails the restore with a message naming
 * it. */
TEST(incremental_restore_detects_corrupt_and_missing_files)
{
    enum { M = 8 };
    char *base = tmp_dir(), err[512];
    sl__storage *st = incr_storage(base, 1);
    sl_state *v;
    sl__keyed_backend *be = incr_filled(base, M, 2000, &v);
    uint64_t full;
    take_checkpoint(st, be, M, 1, &full);
    sl__keyed_backend_destroy(be);
    char path[4096];
    snprintf(path, sizeof path, "%s/chk-1", sl__storage_job_dir(st));
    sl__checkpoint_meta *m;
    CHECK_EQ_INT(sl__checkpoint_load(st, path, -1, &m, err, sizeof err), 0);
    const sl__subtask_state *ss = &m->operators[0].subtasks[0];
    int sst = -1;
    for (int f = 0; f < ss->nfiles && sst < 0; f++)
        if (!strncmp(ss->files[f].path, "../shared/", 10))
            sst = f;
    CHECK(sst >= 0);
    /* a declaration that changed since is checked entry by entry, and refused */
    sl__keyed_backend *cb = rocks_range(base, M, 0, M, false);
    char *dir;
    CHECK_EQ_INT(sl__rocksdb_backend_scratch_dir(cb, &dir, err, sizeof err), 0);
    CHECK_EQ_INT(sl__storage_fetch_db_files(st, path, -1, ss, dir, err, sizeof err), 0);
    CHECK_EQ_INT(sl__rocksdb_backend_adopt(cb, dir, 0, M, err, sizeof err), 0);
    sl__free(dir);
    static const sl_state_desc changed = {
        .name = "v", .kind = SL_STATE_VALUE, .schema = "a:i64,b:i64"};
    clear_error();
    CHECK(!sl__keyed_backend_state(cb, test_ctx(), &changed));
    CHECK_CONTAINS(t_job.err, "does not parse as declared");
    clear_error();
    sl__keyed_backend_destroy(cb);
    char victim[8192];
    snprintf(victim, sizeof victim, "%s/%s", path, ss->files[sst].path);
    /* flip one byte */
    FILE *fp = fopen(victim, "r+b");
    CHECK(fp);
    fseek(fp, (long)ss->files[sst].size / 2, SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, (long)ss->files[sst].size / 2, SEEK_SET);
    fputc(c ^ 0x5a, fp);
    fclose(fp);
    sl__keyed_backend *rb = rocks_range(base, M, 0, M, false);
    CHECK_EQ_INT(sl__rocksdb_backend_scratch_dir(rb, &dir, err, sizeof err), 0);
    CHECK_EQ_INT(sl__storage_fetch_db_files(st, path, -1, ss, dir, err, sizeof err), SL_EFORMAT);
    CHECK_CONTAINS(err, "checksum mismatch");
    CHECK_CONTAINS(err, ss->files[sst].path + 10);
    sl__free(dir);
    CHECK_EQ_INT(unlink(victim), 0);
    CHECK_EQ_INT(sl__rocksdb_backend_scratch_dir(rb, &dir, err, sizeof err), 0);
    CHECK_EQ_INT(sl__storage_fetch_db_files(st, path, -1, ss, dir, err, sizeof err), SL_EFORMAT);
    CHECK_CONTAINS(err, "is missing");
    sl__free(dir);
    sl__keyed_backend_destroy(rb);
    sl__checkpoint_meta_free(m);
    sl__storage_destroy(st);
    rm_rf(base);
    free(base);
}

/* A full disk while storing database files: the checkpoint fails with a message naming the
 * file and the cause, nothing is left in shared/, and the next checkpoint stores it all. */
static ssize_t write_enospc(int fd, const void *p, size_t n)
{
    (void)fd;
    (void)p;
    (void)n;
    errno = ENOSPC;
    return -1;
}

TEST(incremental_checkpoint_on_a_full_disk)
{
    enum { M = 8 };
    char *base = tmp_dir(), err[512];
    sl__storage *st = incr_storage(base, 1);
    sl_state *v;
    sl__keyed_backend *be = incr_filled(base, M, 3000, &v);
    sl__file_ops full = sl__file_ops_posix;
    full.write = write_enospc;
    sl__file_ops_current = &full;
    sl__keyed_snapshot *snap = sl__keyed_backend_snapshot_begin(be);
    CHECK(snap);
    sl__subtask_state db = {0};
    CHECK_EQ_INT(sl__storage_put_db_files(st, 1, "op", 0, snap, &db, err, sizeof err), SL_EIO);
    sl__file_ops_current = &sl__file_ops_posix;
    sl__keyed_snapshot_release(snap);
    CHECK_CONTAINS(err, "cannot write");
    CHECK_CONTAINS(err, "0123456789abcdef0123456789abcdef/"); /* names the file */
    CHECK_CONTAINS(err, "no space left on device");
    CHECK_EQ_INT(db.nfiles, 0);
    sl__storage_abort(st, 1);
    uint64_t bytes;
    CHECK_EQ_INT(shared_on_disk(st, &bytes), 0);
    uint64_t full_size, stored = take_checkpoint(st, be, M, 2, &full_size);
    CHECK(stored == full_size && full_size > 0);
    check_shared_matches(st, "after the disk had room again");
    sl__keyed_backend_destroy(be);
    sl__storage_destroy(st);
    rm_rf(base);
    free(base);
}

int main(int argc, char **argv)
{
    return RUN_TESTS(argc, argv, working_directory_lifecycle,
                     local_directory_that_cannot_be_created, factory_chooses_by_configuration,
                     memory_options, memory_stays_within_budget, corrupted_sst_fails_reads_with_eio,
                     removed_directory_fails_writes_with_eio, scopes_never_overlap,
                     incremental_checkpoints_share_and_delete_sst_files,
                     incremental_restore_detects_corrupt_and_missing_files,
                     incremental_checkpoint_on_a_full_disk, list_appends_merge_across_flushes,
                     views_live_until_the_call_ends, snapshot_isolation,
                     heap_and_rocksdb_snapshots_restore_into_each_other);
}

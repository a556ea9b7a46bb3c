/*
 * test_storage.c - checkpoint storage: state files and _metadata round trips on disk and in
 * memory, retention with 1 and 3 retained checkpoints, a restarted process finding its
 * job's checkpoints, detection of every truncation and of byte flips in metadata and state
 * files (and of valid-checksum files with bad fields), paths that are not checkpoints,
 * faults injected through sl__file_ops (ENOSPC, EIO on fsync, a failing rename, short and
 * torn writes), aborts and stragglers, concurrent writers on several threads, the JSON of
 * `sluice checkpoint inspect` (checked by Python's json module), and the allocation
 * countdown on the load and write paths (run under ASan/LSan to prove no leaks).
 */
#include "checkpoint/storage.h"
#include "core/alloc.h"
#include "core/hash.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/stat.h>

#define JOB "00112233445566778899aabbccddeeff"
#define MAXP 16

/* ---- scratch directory ----------------------------------------------------------------- */

static char tmp_root[64];

static void remove_tmp(void)
{
    if (tmp_root[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmp_root);
    }
}

/* A fresh directory for this test process, removed when it exits. */
static const char *tmp_dir(void)
{
    if (!tmp_root[0]) {
        snprintf(tmp_root, sizeof tmp_root, "/tmp/sl-storage-XXXXXX");
        CHECK(mkdtemp(tmp_root) != NULL);
        atexit(remove_tmp);
    }
    return tmp_root;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ % 8];
    va_list ap;
    va_start(ap, f);
    vsnprintf(b, sizeof bufs[0], f, ap);
    va_end(ap);
    return b;
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Entries in dir (without . and ..), or -1 when it does not exist. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    CHECK(fread(p, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void spit(const char *path, const uint8_t *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(p, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

/* ---- a checkpoint with known contents --------------------------------------------------
 * Two operators: "keyed" (keyed state in key groups, parallelism par) and "src op" (operator
 * state only; its uid has a space, so its file name is sanitized), plus "sink", stateless. */

#define NOPS 3
#define MAXPAR 8

typedef struct ckpt {
    sl__operator_state_meta ops[NOPS];
    sl__subtask_state subs[NOPS][MAXPAR];
    sl__checkpoint_meta m;
} ckpt;

static const char *op_uid[NOPS] = {"keyed", "src op", "sink"};
static const char *op_name[NOPS] = {"Keyed \"Sum\"", "Source: Seq", "Sink: Print"};

/* The bytes of a key group's section (varying sizes, some empty). */
static size_t kg_bytes(int64_t id, int kg, uint8_t *out)
{
    if (kg % 5 == 3)
        return 0;
    size_t n = 0;
    for (int r = 0; r <= kg % 4; r++)
        n += (size_t)sprintf((char *)out + n, "id=%lld kg=%d rep=%d;", (long long)id, kg, r);
    return n;
}

static size_t op_bytes(int64_t id, int subtask, uint8_t *out)
{
    return (size_t)sprintf((char *)out, "offset of subtask %d at checkpoint %lld", subtask,
                           (long long)id);
}

static int write_subtask(sl__storage *st, int64_t id, int o, int s, int par, sl__subtask_state *out,
                         char *err, size_t cap)
{
    bool keyed = o == 0;
    int start = keyed ? sl__key_group_start(s, par, MAXP) : 0;
    int end = keyed ? sl__key_group_start(s + 1, par, MAXP) : 0;
    sl__state_writer *w = sl__state_writer_open(st, id, op_uid[o], s, start, end, err, cap);
    if (!w)
        return SL_EIO;
    uint8_t buf[512];
    int rc = 0;
    for (int kg = start; kg < end && rc == 0; kg++) {
        size_t n = kg_bytes(id, kg, buf);
        if (n)
            rc = sl__state_writer_add_kg(w, kg, buf, n);
    }
    if (rc == 0 && o == 1)
        rc = sl__state_writer_set_operator(w, buf, op_bytes(id, s, buf));
    if (rc < 0) {
        sl__state_writer_abort(w);
        snprintf(err, cap, "add failed: %s", sl_strerror(rc));
        return rc;
    }
    return sl__state_writer_close(w, out, err, cap);
}

static void ckpt_free(ckpt *c)
{
    for (int o = 0; o < NOPS; o++)
        for (int s = 0; s < MAXPAR; s++)
            sl__subtask_state_free(&c->subs[o][s]);
}

static void ckpt_meta(ckpt *c, int64_t id, int par)
{
    for (int o = 0; o < NOPS; o++)
        c->ops[o] = (sl__operator_state_meta){.uid = (char *)op_uid[o],
                                              .name = (char *)op_name[o],
                                              .parallelism = par,
                                              .max_parallelism = MAXP,
                                              .subtasks = c->subs[o]};
    c->m = (sl__checkpoint_meta){.id = id,
                                 .job_id = JOB,
                                 .job_name = "storage test",
                                 .timestamp_ms = 1700000000123,
                                 .duration_ms = 17,
                                 .noperators = NOPS,
                                 .operators = c->ops};
}

/* Writes every state file of checkpoint id and completes it. */
static int write_ckpt(sl__storage *st, int64_t id, int par, char *err, size_t cap)
{
    ckpt c;
    memset(&c, 0, sizeof c);
    int rc = 0;
    for (int o = 0; o < NOPS && rc == 0; o++)
        for (int s = 0; s < par && rc == 0; s++)
            rc = write_subtask(st, id, o, s, par, &c.subs[o][s], err, cap);
    if (rc == 0) {
        ckpt_meta(&c, id, par);
        rc = sl__storage_complete(st, &c.m, err, cap);
    }
    ckpt_free(&c);
    return rc;
}

static void must_write_ckpt(sl__storage *st, int64_t id, int par)
{
    char err[1024] = "";
    int rc = write_ckpt(st, id, par, err, sizeof err);
    if (rc != 0)
        FAIL_AT("checkpoint %lld: %s (%s)", (long long)id, err, sl_strerror(rc));
}

/* Loads checkpoint id and checks every field and every section, reading key groups the
 * way a restore at another parallelism does: each key group from whichever old subtask
 * holds it. */
static void check_ckpt(sl__storage *st, const char *chk, int64_t id, int par)
{
    char err[1024] = "";
    sl__checkpoint_meta *m = NULL;
    int rc = sl__checkpoint_load(st, chk, id, &m, err, sizeof err);
    if (rc != 0)
        FAIL_AT("load %s: %s", chk ? chk : "(memory)", err);
    CHECK_EQ_INT(m->id, id);
    CHECK_EQ_STR(m->job_id, JOB);
    CHECK_EQ_STR(m->job_name, "storage test");
    CHECK_EQ_INT(m->timestamp_ms, 1700000000123);
    CHECK_EQ_INT(m->duration_ms, 17);
    CHECK(!m->savepoint);
    CHECK_EQ_INT(m->noperators, NOPS);
    uint8_t want[512];
    for (int o = 0; o < NOPS; o++) {
        const sl__operator_state_meta *op = &m->operators[o];
        CHECK_EQ_STR(op->uid, op_uid[o]);
        CHECK_EQ_STR(op->name, op_name[o]);
        CHECK_EQ_INT(op->parallelism, par);
        CHECK_EQ_INT(op->max_parallelism, MAXP);
        sl__state_reader *r[MAXPAR] = {0};
        for (int s = 0; s < par; s++) {
            const sl__subtask_state *ss = &op->subtasks[s];
            CHECK_EQ_INT(ss->subtask, s);
            if (o == 2) {
                CHECK_EQ_STR(ss->file, "");
                CHECK_EQ_INT(ss->file_size, 0);
            } else {
                CHECK(ss->file[0] != 0);
                CHECK(ss->file_size > 0);
            }
            rc = sl__state_reader_open(st, chk, id, ss, &r[s], err, sizeof err);
            if (rc != 0)
                FAIL_AT("reader %s: %s", ss->file, err);
            const uint8_t *p;
            size_t n;
            CHECK_EQ_INT(sl__state_reader_operator(r[s], &p, &n), 0);
            if (o == 1) {
                size_t wn = op_bytes(id, s, want);
                CHECK_EQ_INT(n, wn);
                CHECK(!memcmp(p, want, n));
            } else {
                CHECK_EQ_INT(n, 0);
            }
        }
        if (o == 0) {
            for (int kg = 0; kg < MAXP; kg++) {
                int owner = -1;
                for (int s = 0; s < par; s++)
                    if (kg >= op->subtasks[s].kg_start && kg < op->subtasks[s].kg_end)
                        owner = s;
                CHECK(owner >= 0);
                const uint8_t *p;
                size_t n;
                CHECK_EQ_INT(sl__state_reader_kg(r[owner], kg, &p, &n), 0);
                size_t wn = kg_bytes(id, kg, want);
                CHECK_EQ_INT(n, wn);
                CHECK(!memcmp(p, want, n));
            }
            const uint8_t *p;
            size_t n;
            CHECK_EQ_INT(sl__state_reader_kg(r[0], MAXP, &p, &n), SL_EINVAL);
        }
        for (int s = 0; s < par; s++)
            sl__state_reader_free(r[s]);
    }
    sl__checkpoint_meta_free(m);
}

static sl__storage *must_create(const char *dir, int retained)
{
    char err[1024] = "";
    sl__storage *st = sl__storage_create(dir, JOB, retained, err, sizeof err);
    if (!st)
        FAIL_AT("create %s: %s", dir ? dir : "(memory)", err);
    return st;
}

static char *job_dir(void)
{
    return fmt("%s/" JOB, tmp_dir());
}

static char *chk_path(int64_t id)
{
    return fmt("%s/" JOB "/chk-%lld", tmp_dir(), (long long)id);
}

static void check_retained(sl__storage *st, int n, const int64_t *want)
{
    int64_t ids[16];
    CHECK_EQ_INT(sl__storage_retained(st, ids, 16), n);
    for (int i = 0; i < n; i++)
        CHECK_EQ_INT(ids[i], want[i]);
}

/* ---- round trips ----------------------------------------------------------------------- */

TEST(disk_round_trip)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    CHECK_EQ_STR(sl__storage_job_dir(st), job_dir());
    CHECK(exists(fmt("%s/shared", job_dir())));
    CHECK(exists(fmt("%s/taskowned", job_dir())));
    must_write_ckpt(st, 1, 3);
    CHECK(exists(fmt("%s/_metadata", chk_path(1))));
    CHECK(!exists(fmt("%s/_metadata.tmp", chk_path(1))));
    CHECK(exists(fmt("%s/keyed-0.state", chk_path(1))));
    CHECK(exists(fmt("%s/keyed-2.state", chk_path(1))));
    /* 3 keyed + 3 operator-state files + _metadata; the stateless sink has none */
    CHECK_EQ_INT(count_entries(chk_path(1)), 7);
    check_ckpt(st, chk_path(1), 1, 3);
    check_ckpt(st, fmt("%s/_metadata", chk_path(1)), 1, 3);
    check_ckpt(st, fmt("file://%s/", chk_path(1)), 1, 3);
    check_ckpt(NULL, fmt("file://%s/_metadata", chk_path(1)), 1, 3);
    check_ckpt(st, NULL, 1, 3); /* by id, in the storage's job directory */
    sl__storage_destroy(st);
    /* a file:// URI for the storage itself */
    st = must_create(fmt("file://%s/uri/", tmp_dir()), 1);
    CHECK_EQ_STR(sl__storage_job_dir(st), fmt("%s/uri/" JOB, tmp_dir()));
    must_write_ckpt(st, 7, 2);
    check_ckpt(st, fmt("%s/uri/" JOB "/chk-7", tmp_dir()), 7, 2);
    sl__storage_destroy(st);
}

TEST(memory_round_trip)
{
    /* nothing may appear on disk: run in an empty directory and check it stays empty */
    CHECK_EQ_INT(chdir(tmp_dir()), 0);
    sl__storage *st = must_create(NULL, 2);
    CHECK_EQ_STR(sl__storage_job_dir(st), "memory");
    for (int64_t id = 1; id <= 4; id++)
        must_write_ckpt(st, id, 4);
    int64_t want[] = {4, 3};
    check_retained(st, 2, want);
    check_ckpt(st, NULL, 4, 4);
    check_ckpt(st, NULL, 3, 4);
    char err[512];
    sl__checkpoint_meta *m = NULL;
    CHECK_EQ_INT(sl__checkpoint_load(st, NULL, 2, &m, err, sizeof err), SL_ENOTFOUND);
    CHECK_CONTAINS(err, "checkpoint 2");
    CHECK_EQ_INT(count_entries(tmp_dir()), 0);
    sl__storage_discard_all(st);
    CHECK_EQ_INT(sl__storage_retained(st, want, 2), 0);
    CHECK_EQ_INT(sl__checkpoint_load(st, NULL, 4, &m, err, sizeof err), SL_ENOTFOUND);
    sl__storage_destroy(st);
}

TEST(file_names_are_sanitized_and_distinct)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    const char *uids[] = {"a b", "a_b", "../../etc/x", "ü"};
    sl__subtask_state s[4];
    char err[512];
    for (int i = 0; i < 4; i++) {
        sl__state_writer *w = sl__state_writer_open(st, 1, uids[i], 0, 0, 0, err, sizeof err);
        CHECK(w != NULL);
        CHECK_EQ_INT(sl__state_writer_set_operator(w, (const uint8_t *)"x", 1), 0);
        CHECK_EQ_INT(sl__state_writer_close(w, &s[i], err, sizeof err), 0);
        CHECK(strchr(s[i].file, '/') == NULL);
        CHECK(exists(fmt("%s/%s", chk_path(1), s[i].file)));
    }
    CHECK_EQ_STR(s[1].file, "a_b-0.state");
    CHECK(strcmp(s[0].file, s[1].file) != 0);
    for (int i = 0; i < 4; i++)
        sl__subtask_state_free(&s[i]);
    sl__storage_destroy(st);
}

/* ---- retention and restart ------------------------------------------------------------- */

static void retention(int keep)
{
    sl__storage *st = must_create(tmp_dir(), keep);
    for (int64_t id = 1; id <= 6; id++) {
        must_write_ckpt(st, id, 2);
        int64_t ids[16];
        int n = sl__storage_retained(st, ids, 16);
        CHECK_EQ_INT(n, id < keep ? id : keep);
        for (int i = 0; i < n; i++)
            CHECK_EQ_INT(ids[i], id - i);
        /* subsumed ones are no longer complete at once, and deleted in the background */
        for (int64_t old = 1; old <= id; old++)
            CHECK_EQ_INT(exists(fmt("%s/_metadata", chk_path(old))), old > id - keep);
        sl__storage_settle(st);
        for (int64_t old = 1; old <= id; old++)
            CHECK_EQ_INT(exists(chk_path(old)), old > id - keep);
    }
    for (int64_t id = 6; id > 6 - keep; id--)
        check_ckpt(st, chk_path(id), id, 2);
    sl__storage_destroy(st);
}

TEST(retention_keeps_one)
{
    retention(1);
}

TEST(retention_keeps_three)
{
    retention(3);
}

TEST(restart_with_existing_job_dir)
{
    sl__storage *st = must_create(tmp_dir(), 3);
    for (int64_t id = 1; id <= 3; id++)
        must_write_ckpt(st, id, 2);
    sl__storage_destroy(st);
    /* a crashed attempt's incomplete checkpoint 4 */
    CHECK_EQ_INT(mkdir(chk_path(4), 0777), 0);
    spit(fmt("%s/stale-0.state", chk_path(4)), (const uint8_t *)"junk", 4);

    st = must_create(tmp_dir(), 3);
    int64_t want[] = {3, 2, 1};
    check_retained(st, 3, want);
    check_ckpt(st, NULL, 3, 2);
    char err[512];
    /* ids of completed checkpoints are never written again */
    CHECK(sl__state_writer_open(st, 3, "keyed", 0, 0, 8, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "not newer than the latest completed checkpoint 3");
    must_write_ckpt(st, 4, 2);
    CHECK(!exists(fmt("%s/stale-0.state", chk_path(4))));
    int64_t want2[] = {4, 3, 2};
    check_retained(st, 3, want2);
    sl__storage_settle(st);
    CHECK(!exists(chk_path(1)));
    check_ckpt(st, chk_path(4), 4, 2);
    sl__storage_destroy(st);

    /* fewer retained after the restart: trimmed at the next completion */
    st = must_create(tmp_dir(), 1);
    check_retained(st, 3, want2);
    must_write_ckpt(st, 5, 2);
    int64_t want3[] = {5};
    check_retained(st, 1, want3);
    sl__storage_destroy(st); /* waits for the deletions */
    CHECK(!exists(chk_path(4)) && !exists(chk_path(3)) && !exists(chk_path(2)));
}

TEST(savepoints_are_never_deleted)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    must_write_ckpt(st, 1, 1);
    sl__checkpoint_meta m = {.id = 2, .job_id = JOB, .job_name = "sp", .savepoint = true};
    char err[512];
    CHECK_EQ_INT(sl__storage_complete(st, &m, err, sizeof err), 0);
    must_write_ckpt(st, 3, 1);
    must_write_ckpt(st, 4, 1);
    sl__storage_settle(st);
    CHECK(exists(fmt("%s/_metadata", chk_path(2))));
    CHECK(!exists(chk_path(1)) && !exists(chk_path(3)));
    sl__checkpoint_meta *lm = NULL;
    CHECK_EQ_INT(sl__checkpoint_load(NULL, chk_path(2), -1, &lm, err, sizeof err), 0);
    CHECK(lm->savepoint);
    sl__checkpoint_meta_free(lm);
    sl__storage_discard_all(st);
    CHECK(exists(fmt("%s/_metadata", chk_path(2))));
    CHECK(!exists(chk_path(4)));
    sl__storage_destroy(st);
}

TEST(discard_all_removes_the_job_dir)
{
    sl__storage *st = must_create(tmp_dir(), 2);
    must_write_ckpt(st, 1, 2);
    must_write_ckpt(st, 2, 2);
    CHECK_EQ_INT(mkdir(chk_path(3), 0777), 0); /* an interrupted one */
    sl__storage_discard_all(st);
    CHECK(!exists(job_dir()));
    CHECK_EQ_INT(sl__storage_retained(st, NULL, 0), 0);
    sl__storage_destroy(st);
}

/* ---- corruption ------------------------------------------------------------------------ */

/* Writes bytes to path and expects load (or the reader for state files) to refuse them with
 * SL_EFORMAT naming path. */
static void expect_bad_metadata(const char *chk, const char *path, const uint8_t *p, size_t n)
{
    spit(path, p, n);
    sl__checkpoint_meta *m = NULL;
    char err[1024] = "";
    int rc = sl__checkpoint_load(NULL, chk, -1, &m, err, sizeof err);
    if (rc != SL_EFORMAT)
        FAIL_AT("%zu bytes of %s: rc %d (%s)", n, path, rc, err);
    CHECK(m == NULL);
    CHECK_CONTAINS(err, path);
}

static sl__checkpoint_meta *load_ok(const char *chk)
{
    sl__checkpoint_meta *m = NULL;
    char err[1024] = "";
    if (sl__checkpoint_load(NULL, chk, -1, &m, err, sizeof err) != 0)
        FAIL_AT("load %s: %s", chk, err);
    return m;
}

static void expect_bad_state(const sl__subtask_state *s, const char *chk, const char *path,
                             const uint8_t *p, size_t n)
{
    spit(path, p, n);
    sl__state_reader *r = NULL;
    char err[1024] = "";
    int rc = sl__state_reader_open(NULL, chk, -1, s, &r, err, sizeof err);
    if (rc != SL_EFORMAT)
        FAIL_AT("%zu bytes of %s: rc %d (%s)", n, path, rc, err);
    CHECK(r == NULL);
    CHECK_CONTAINS(err, path);
}

TEST(every_truncation_is_detected)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    must_write_ckpt(st, 1, 1);
    sl__storage_destroy(st);
    const char *chk = chk_path(1);
    const char *md = fmt("%s/_metadata", chk);
    size_t n;
    uint8_t *orig = slurp(md, &n);
    for (size_t len = 0; len < n; len++)
        expect_bad_metadata(chk, md, orig, len);
    spit(md, orig, n);

    sl__checkpoint_meta *m = load_ok(chk);
    for (int o = 0; o < 2; o++) {
        const sl__subtask_state *s = &m->operators[o].subtasks[0];
        const char *sf = fmt("%s/%s", chk, s->file);
        size_t sn;
        uint8_t *so = slurp(sf, &sn);
        for (size_t len = 0; len < sn; len++)
            expect_bad_state(s, chk, sf, so, len);
        /* a longer file is refused too */
        uint8_t *longer = calloc(1, sn + 3);
        memcpy(longer, so, sn);
        expect_bad_state(s, chk, sf, longer, sn + 3);
        free(longer);
        spit(sf, so, sn);
        free(so);
    }
    sl__checkpoint_meta_free(m);
    free(orig);
    check_ckpt(NULL, chk, 1, 1);
}

TEST(byte_flips_are_detected)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    must_write_ckpt(st, 1, 1);
    sl__storage_destroy(st);
    const char *chk = chk_path(1);
    const char *md = fmt("%s/_metadata", chk);
    size_t n;
    uint8_t *orig = slurp(md, &n);
    uint8_t *copy = malloc(n);
    srand(1234);
    for (size_t i = 0; i < n; i++) {
        memcpy(copy, orig, n);
        copy[i] ^= (uint8_t)(1 + rand() % 255);
        expect_bad_metadata(chk, md, copy, n);
    }
    spit(md, orig, n);
    sl__checkpoint_meta *m = load_ok(chk);
    for (int o = 0; o < 2; o++) {
        const sl__subtask_state *s = &m->operators[o].subtasks[0];
        const char *sf = fmt("%s/%s", chk, s->file);
        size_t sn;
        uint8_t *so = slurp(sf, &sn);
        uint8_t *sc = malloc(sn);
        for (size_t i = 0; i < sn; i++) {
            memcpy(sc, so, sn);
            sc[i] ^= (uint8_t)(1 + rand() % 255);
            expect_bad_state(s, chk, sf, sc, sn);
        }
        spit(sf, so, sn);
        free(so);
        free(sc);
    }
    /* a state file of another checkpoint in its place: size may match, checksum does not */
    sl__checkpoint_meta_free(m);
    free(orig);
    free(copy);
    check_ckpt(NULL, chk, 1, 1);
}

/* Recomputes the trailer of a file's bytes, as a writer with a bug would have. */
static void rechecksum(uint8_t *p, size_t n)
{
    uint64_t h = sl__hash(p, n - 8);
    for (int i = 0; i < 8; i++)
        p[n - 8 + i] = (uint8_t)(h >> (8 * i));
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

TEST(valid_checksum_with_bad_fields_is_refused)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    must_write_ckpt(st, 1, 2);
    sl__storage_destroy(st);
    const char *chk = chk_path(1);
    const char *md = fmt("%s/_metadata", chk);
    size_t n;
    uint8_t *orig = slurp(md, &n);
    uint8_t *c = malloc(n);

    /* walk to operator 0's parallelism: head 8, flags 4, 3 x i64, job id, job name, count */
    size_t at = 36;
    at += 4 + rd32(orig + at); /* job id */
    at += 4 + rd32(orig + at); /* job name */
    at += 4;                   /* operator count */
    size_t uid_at = at;        /* operator 0 uid */
    at += 4 + rd32(orig + at); /* uid */
    at += 4 + rd32(orig + at); /* name */
    size_t par_at = at, maxp_at = at + 4;

    struct {
        size_t at;
        uint32_t v;
        const char *msg;
    } cases[] = {
        {par_at, MAXP + 1, "parallelism"},
        {maxp_at, 1, "parallelism"},
        {maxp_at, 0, "max parallelism"},
        {par_at, 1, "in " /* the rest no longer parses: any message naming the file */},
        {par_at, 3, "in "},
        {par_at, 1000000, "parallelism"},
        {uid_at, 60000, "ends at byte"},
        {8, 2, "flags"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(c, orig, n);
        wr32(c + cases[i].at, cases[i].v);
        rechecksum(c, n);
        expect_bad_metadata(chk, md, c, n);
        char err[1024];
        sl__checkpoint_meta *m = NULL;
        sl__checkpoint_load(NULL, chk, -1, &m, err, sizeof err);
        CHECK_CONTAINS(err, cases[i].msg);
        CHECK_CONTAINS(err, "invalid checkpoint metadata in");
    }
    /* random flips with a recomputed checksum: refused or accepted, never a crash */
    srand(99);
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(c, orig, n);
        int flips = 1 + rand() % 3;
        for (int k = 0; k < flips; k++)
            c[8 + (size_t)rand() % (n - 24)] ^= (uint8_t)(1 + rand() % 255);
        rechecksum(c, n);
        spit(md, c, n);
        sl__checkpoint_meta *m = NULL;
        char err[1024];
        int rc = sl__checkpoint_load(NULL, chk, -1, &m, err, sizeof err);
        CHECK(rc == 0 || rc == SL_EFORMAT);
        if (rc == SL_EFORMAT)
            CHECK_CONTAINS(err, md);
        if (rc == 0) {
            for (int o = 0; o < m->noperators; o++)
                for (int s = 0; s < m->operators[o].parallelism; s++) {
                    sl__state_reader *r = NULL;
                    rc = sl__state_reader_open(NULL, chk, 1, &m->operators[o].subtasks[s], &r, err,
                                               sizeof err);
                    CHECK(rc == 0 || rc == SL_EFORMAT);
                    sl__state_reader_free(r);
                }
            sl__checkpoint_meta_free(m);
        }
    }
    spit(md, orig, n);
    free(c);
    free(orig);
}

/* ---- finished subtasks (format version 3) ------------------------------------------------ */

/* Writes checkpoint id at parallelism 3 with keyed subtask 1 and every subtask of the
 * operator-state operator finished. */
static void write_finished_ckpt(sl__storage *st, int64_t id)
{
    ckpt c;
    memset(&c, 0, sizeof c);
    char err[1024] = "";
    for (int o = 0; o < NOPS; o++)
        for (int s = 0; s < 3; s++)
            if (write_subtask(st, id, o, s, 3, &c.subs[o][s], err, sizeof err) < 0)
                FAIL_AT("write: %s", err);
    c.subs[0][1].finished = true;
    for (int s = 0; s < 3; s++)
        c.subs[1][s].finished = true;
    ckpt_meta(&c, id, 3);
    if (sl__storage_complete(st, &c.m, err, sizeof err) < 0)
        FAIL_AT("complete: %s", err);
    ckpt_free(&c);
}

static const sl__operator_state_meta *meta_op(const sl__checkpoint_meta *m, const char *uid)
{
    const sl__operator_state_meta *o = sl__checkpoint_meta_find(m, uid);
    if (!o)
        FAIL_AT("no operator %s", uid);
    return o;
}

/* The bytes of a version 3 _metadata rewritten as version 2: the subtask flags dropped. */
static size_t metadata_as_v2(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t i = 36, o;
    i += 4 + rd32(in + i); /* job id */
    i += 4 + rd32(in + i); /* job name */
    uint32_t nops = rd32(in + i);
    i += 4;
    memcpy(out, in, i);
    o = i;
    for (uint32_t k = 0; k < nops; k++) {
        size_t from = i;
        i += 4 + rd32(in + i); /* uid */
        i += 4 + rd32(in + i); /* name */
        uint32_t par = rd32(in + i);
        i += 8;
        memcpy(out + o, in + from, i - from);
        o += i - from;
        for (uint32_t s = 0; s < par; s++) {
            memcpy(out + o, in + i, 4); /* subtask index; the flags after it are left out */
            o += 4;
            i += 8;
            from = i;
            i += 4 + rd32(in + i);                                      /* file */
            i += 16;                                                    /* size, checksum */
            i += 8 + 8 * ((size_t)rd32(in + i + 4) - rd32(in + i) + 1); /* range, offsets */
            i += 16;                                                    /* operator section */
            CHECK_EQ_INT(rd32(in + i), 0);                              /* no database files */
            i += 4;
            memcpy(out + o, in + from, i - from);
            o += i - from;
        }
    }
    CHECK_EQ_INT(i, n - 16);
    out[4] = 2; /* version 2 */
    o += 16;
    uint64_t len = o;
    for (int b = 0; b < 8; b++)
        out[o - 16 + b] = (uint8_t)(len >> (8 * b));
    rechecksum(out, o);
    return o;
}

TEST(finished_subtasks_round_trip)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    write_finished_ckpt(st, 1);
    sl__storage_destroy(st);
    const char *chk = chk_path(1), *md = fmt("%s/_metadata", chk_path(1));
    char err[1024];
    sl__checkpoint_meta *m = NULL;
    if (sl__checkpoint_load(NULL, chk, -1, &m, err, sizeof err) != 0)
        FAIL_AT("load: %s", err);
    CHECK_EQ_INT(m->format_version, 3);
    const sl__operator_state_meta *keyed = meta_op(m, "keyed"), *src = meta_op(m, "src op"),
                                  *sink = meta_op(m, "sink");
    for (int s = 0; s < 3; s++) {
        CHECK_EQ_INT(keyed->subtasks[s].finished, s == 1);
        CHECK(src->subtasks[s].finished);
        CHECK(!sink->subtasks[s].finished);
    }
    /* fully finished: finished at any parallelism */
    CHECK(sl__operator_fully_finished(src));
    for (int p = 1; p <= 5; p++)
        for (int s = 0; s < p; s++)
            CHECK(sl__restores_finished(src, s, p));
    /* partly finished: the same subtask at the same parallelism only */
    CHECK(!sl__operator_fully_finished(keyed));
    CHECK(sl__restores_finished(keyed, 1, 3));
    CHECK(!sl__restores_finished(keyed, 0, 3));
    CHECK(!sl__restores_finished(keyed, 2, 3));
    CHECK(!sl__restores_finished(keyed, 1, 2));
    CHECK(!sl__restores_finished(keyed, 1, 4));
    CHECK(!sl__operator_fully_finished(sink));
    CHECK(sl__checkpoint_meta_find(m, "no such uid") == NULL);
    CHECK(sl__checkpoint_meta_find(m, NULL) == NULL);
    FILE *f = tmpfile();
    CHECK_EQ_INT(sl__checkpoint_meta_json(m, chk, f), 0);
    rewind(f);
    char json[16384];
    json[fread(json, 1, sizeof json - 1, f)] = 0;
    fclose(f);
    CHECK_CONTAINS(json, "\"format_version\": 3");
    CHECK_CONTAINS(json, "\"finished\": true");
    CHECK_CONTAINS(json, "\"finished\": false");
    sl__checkpoint_meta_free(m);

    /* unknown subtask flags are refused, naming them */
    size_t n;
    uint8_t *orig = slurp(md, &n), *c = malloc(n);
    size_t at = 36;
    at += 4 + rd32(orig + at);
    at += 4 + rd32(orig + at);
    at += 4;
    at += 4 + rd32(orig + at);
    at += 4 + rd32(orig + at);
    at += 8 + 4; /* parallelism, max parallelism, subtask 0's index */
    memcpy(c, orig, n);
    wr32(c + at, 3);
    rechecksum(c, n);
    expect_bad_metadata(chk, md, c, n);
    m = NULL;
    sl__checkpoint_load(NULL, chk, -1, &m, err, sizeof err);
    CHECK_CONTAINS(err, "unknown flags 0x3");
    CHECK_CONTAINS(err, "accepted: 0x1, finished");

    /* version 2 (no flags) still reads: nothing finished */
    uint8_t *v2 = malloc(n);
    size_t n2 = metadata_as_v2(orig, n, v2);
    CHECK_EQ_INT(n2, n - 9 * 4);
    spit(md, v2, n2);
    m = NULL;
    if (sl__checkpoint_load(NULL, chk, -1, &m, err, sizeof err) != 0)
        FAIL_AT("load v2: %s", err);
    CHECK_EQ_INT(m->format_version, 2);
    for (int o = 0; o < m->noperators; o++) {
        CHECK_EQ_INT(m->operators[o].parallelism, 3);
        for (int s = 0; s < 3; s++)
            CHECK(!m->operators[o].subtasks[s].finished);
        CHECK(!sl__operator_fully_finished(&m->operators[o]));
    }
    sl__checkpoint_meta_free(m);
    free(v2);
    free(c);
    free(orig);
}

TEST(bad_metadata_is_refused_on_complete)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    char err[1024];
    ckpt c;
    memset(&c, 0, sizeof c);
    for (int o = 0; o < NOPS; o++)
        for (int s = 0; s < 2; s++)
            CHECK_EQ_INT(write_subtask(st, 1, o, s, 2, &c.subs[o][s], err, sizeof err), 0);
    ckpt_meta(&c, 1, 2);

    c.ops[0].parallelism = MAXP + 1;
    CHECK_EQ_INT(sl__storage_complete(st, &c.m, err, sizeof err), SL_EINVAL);
    CHECK_CONTAINS(err, "parallelism 17");
    c.ops[0].parallelism = 2;

    c.ops[2].uid = "keyed"; /* the stateless sink: no file layout depends on its uid */
    CHECK_EQ_INT(sl__storage_complete(st, &c.m, err, sizeof err), SL_EINVAL);
    CHECK_CONTAINS(err, "uid \"keyed\" appears twice");
    c.ops[2].uid = (char *)op_uid[2];

    c.ops[1].uid = "src"; /* not the uid its files were written for */
    CHECK_EQ_INT(sl__storage_complete(st, &c.m, err, sizeof err), SL_EINVAL);
    CHECK_CONTAINS(err, "header");
    c.ops[1].uid = (char *)op_uid[1];

    c.subs[0][1].kg_start++;
    CHECK_EQ_INT(sl__storage_complete(st, &c.m, err, sizeof err), SL_EINVAL);
    CHECK_CONTAINS(err, "exactly one subtask");
    c.subs[0][1].kg_start--;

    uint64_t saved = c.subs[0][0].kg_offset[2];
    c.subs[0][0].kg_offset[2] = c.subs[0][0].kg_offset[1] - 1;
    CHECK_EQ_INT(sl__storage_complete(st, &c.m, err, sizeof err), SL_EINVAL);
    CHECK_CONTAINS(err, "below the previous one");
    c.subs[0][0].kg_offset[2] = saved;

    c.subs[0][0].file_size += 1;
    CHECK_EQ_INT(sl__storage_complete(st, &c.m, err, sizeof err), SL_EINVAL);
    CHECK_CONTAINS(err, "file size");
    c.subs[0][0].file_size -= 1;

    c.m.job_id = "ffffffffffffffffffffffffffffffff";
    CHECK_EQ_INT(sl__storage_complete(st, &c.m, err, sizeof err), SL_EINVAL);
    CHECK_CONTAINS(err, "belongs to job");
    c.m.job_id = JOB;

    CHECK_EQ_INT(sl__storage_complete(st, &c.m, err, sizeof err), 0);
    CHECK_EQ_INT(sl__storage_complete(st, &c.m, err, sizeof err), SL_EINVAL);
    CHECK_CONTAINS(err, "not newer");
    CHECK(exists(fmt("%s/_metadata", chk_path(1)))); /* the failed repeat removed nothing */
    ckpt_free(&c);
    check_ckpt(st, chk_path(1), 1, 2);
    sl__storage_destroy(st);
}

TEST(paths_that_are_not_checkpoints)
{
    sl__storage *st = must_create(tmp_dir(), 2);
    must_write_ckpt(st, 1, 1);
    must_write_ckpt(st, 2, 1);
    sl__storage_destroy(st);
    char err[1024];
    sl__checkpoint_meta *m = NULL;
    const char *missing = fmt("%s/no-such-dir", tmp_dir());
    CHECK_EQ_INT(sl__checkpoint_load(NULL, missing, -1, &m, err, sizeof err), SL_ENOTFOUND);
    CHECK_CONTAINS(err, missing);
    CHECK_CONTAINS(err, "is not a checkpoint");
    CHECK_CONTAINS(err, "chk-<N>");

    CHECK_EQ_INT(sl__checkpoint_load(NULL, tmp_dir(), -1, &m, err, sizeof err), SL_ENOTFOUND);
    CHECK_CONTAINS(err, fmt("%s is not a checkpoint: no _metadata in it", tmp_dir()));

    CHECK_EQ_INT(sl__checkpoint_load(NULL, job_dir(), -1, &m, err, sizeof err), SL_ENOTFOUND);
    CHECK_CONTAINS(err, "2 completed checkpoints");
    CHECK_CONTAINS(err, chk_path(2));

    CHECK_EQ_INT(mkdir(chk_path(9), 0777), 0);
    CHECK_EQ_INT(sl__checkpoint_load(NULL, chk_path(9), -1, &m, err, sizeof err), SL_ENOTFOUND);
    CHECK_CONTAINS(err, "is not a completed checkpoint");

    const char *text = fmt("%s/notes.txt", tmp_dir());
    spit(text, (const uint8_t *)"hello world, not a checkpoint\n", 30);
    CHECK_EQ_INT(sl__checkpoint_load(NULL, text, -1, &m, err, sizeof err), SL_ENOTFOUND);
    CHECK_CONTAINS(err, text);

    CHECK_EQ_INT(
        sl__checkpoint_load(NULL, fmt("%s/keyed-0.state", chk_path(2)), -1, &m, err, sizeof err),
        SL_ENOTFOUND);
    CHECK_CONTAINS(err, "state file");

    CHECK_EQ_INT(sl__checkpoint_load(NULL, "file://otherhost/x", -1, &m, err, sizeof err),
                 SL_ENOTFOUND);
    CHECK(m == NULL);

    /* a missing state file names itself */
    m = load_ok(chk_path(2));
    const sl__subtask_state *s = &m->operators[0].subtasks[0];
    CHECK_EQ_INT(unlink(fmt("%s/%s", chk_path(2), s->file)), 0);
    sl__state_reader *r = NULL;
    CHECK_EQ_INT(sl__state_reader_open(NULL, chk_path(2), 2, s, &r, err, sizeof err), SL_EFORMAT);
    CHECK_CONTAINS(err, fmt("%s/%s is missing", chk_path(2), s->file));
    sl__checkpoint_meta_free(m);
}

TEST(create_errors_name_the_directory)
{
    char err[1024];
    const char *file = fmt("%s/a-file", tmp_dir());
    spit(file, (const uint8_t *)"x", 1);
    CHECK(sl__storage_create(fmt("%s/sub", file), JOB, 1, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "cannot create checkpoint directory");
    CHECK_CONTAINS(err, file);
    CHECK_CONTAINS(err, "not a directory");
    CHECK(sl__storage_create(file, JOB, 1, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, file);
    CHECK(sl__storage_create(tmp_dir(), "../evil", 1, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "invalid job id");
    CHECK(sl__storage_create(tmp_dir(), JOB, 0, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "num-retained");
    CHECK(sl__storage_create("file://host/x", JOB, 1, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "file:///path");
}

/* ---- fault injection ------------------------------------------------------------------- */

/* What the injected file operations do; paths are remembered by descriptor so a fault can
 * target one file. */
static struct {
    const char *match; /* faults apply to paths containing this (NULL or "" = all) */
    bool exact;        /* ... or only to the path equal to it */
    int write_errno;   /* fail writes with this once budget bytes were written */
    long budget;
    int fsync_errno;
    int rename_errno;
    int mkdir_errno;
    size_t chunk;               /* short writes: at most this many bytes per call */
    bool tear;                  /* write half, report all */
    void (*on_rename)(void);    /* called before a rename the faults apply to */
    long written;               /* bytes that reached files the faults apply to */
    int fsyncs;                 /* fsyncs of files the faults apply to */
    int sync_waits;             /* sync_range calls that wait, on files the faults apply to */
    int sync_errno;             /* fail sync_range calls that wait with this */
    void (*on_sync_wait)(void); /* called before such a call */
} fi;
static char fd_path[1024][512];

static bool fi_path_applies(const char *path)
{
    const char *m = fi.match ? fi.match : "";
    return fi.exact ? !strcmp(path, m) : strstr(path, m) != NULL;
}

static bool fi_applies(int fd)
{
    return fd >= 0 && fd < 1024 && fi_path_applies(fd_path[fd]);
}

/* The path of name in dirfd, as the faults match it: dirfd is AT_FDCWD or a directory
 * opened through fi_openat. */
static const char *fi_path(int dirfd, const char *name)
{
    static _Thread_local char path[sizeof fd_path[0]];
    if (dirfd == AT_FDCWD || dirfd < 0 || dirfd >= 1024)
        return name;
    if (!strcmp(name, "."))
        return fd_path[dirfd];
    if (snprintf(path, sizeof path, "%s/%s", fd_path[dirfd], name) >= (int)sizeof path)
        FAIL_AT("path too long for the fault injection table");
    return path;
}

static int fi_openat(int dirfd, const char *name, int flags, mode_t mode)
{
    const char *path = fi_path(dirfd, name);
    int fd = openat(dirfd, name, flags, mode);
    if (fd >= 0 && fd < 1024)
        snprintf(fd_path[fd], sizeof fd_path[fd], "%s", path);
    return fd;
}

static ssize_t fi_write(int fd, const void *p, size_t n)
{
    bool applies = fi_applies(fd);
    if (applies) {
        if (fi.write_errno) {
            if (fi.budget <= 0) {
                errno = fi.write_errno;
                return -1;
            }
            if ((long)n > fi.budget)
                n = (size_t)fi.budget;
            fi.budget -= (long)n;
        }
        if (fi.chunk && n > fi.chunk)
            n = fi.chunk;
        if (fi.tear) {
            ssize_t r = write(fd, p, n / 2);
            fi.written += r > 0 ? (long)r : 0;
            return r < 0 ? r : (ssize_t)n;
        }
    }
    ssize_t r = write(fd, p, n);
    if (applies && r > 0)
        fi.written += (long)r;
    return r;
}

static int fi_fsync(int fd)
{
    fi.fsyncs += fi_applies(fd);
    if (fi.fsync_errno && fi_applies(fd)) {
        errno = fi.fsync_errno;
        return -1;
    }
    return fsync(fd);
}

static int fi_sync_range(int fd, off_t off, off_t n, unsigned flags)
{
    if (fi_applies(fd) && (flags & SYNC_FILE_RANGE_WAIT_AFTER)) {
        fi.sync_waits++;
        if (fi.on_sync_wait)
            fi.on_sync_wait();
        if (fi.sync_errno) {
            errno = fi.sync_errno;
            return -1;
        }
    }
    return sync_file_range(fd, off, n, flags);
}

static int fi_close(int fd)
{
    if (fd >= 0 && fd < 1024)
        fd_path[fd][0] = 0;
    return close(fd);
}

static int fi_renameat(int dirfd, const char *from, const char *to)
{
    if (fi.on_rename && fi_path_applies(fi_path(dirfd, from)))
        fi.on_rename();
    if (fi.rename_errno && fi_path_applies(fi_path(dirfd, from))) {
        errno = fi.rename_errno;
        return -1;
    }
    return renameat(dirfd, from, dirfd, to);
}

static int fi_mkdirat(int dirfd, const char *name, mode_t mode)
{
    if (fi.mkdir_errno && fi_path_applies(fi_path(dirfd, name))) {
        errno = fi.mkdir_errno;
        return -1;
    }
    return mkdirat(dirfd, name, mode);
}

static const sl__file_ops fi_ops = {
    .openat = fi_openat,
    .write = fi_write,
    .fsync = fi_fsync,
    .sync_range = fi_sync_range,
    .close = fi_close,
    .renameat = fi_renameat,
    .mkdirat = fi_mkdirat,
};

static void fi_on(void)
{
    sl__file_ops_current = &fi_ops;
}

static void fi_off(void)
{
    sl__file_ops_current = &sl__file_ops_posix;
    memset(&fi, 0, sizeof fi);
}

/* A checkpoint 2 whose write fails as fi says: the error names want_file and contains
 * want_err; afterwards nothing of checkpoint 2 is left (once the coordinator aborts it, as
 * it does for a declined checkpoint), and checkpoint 1 still loads. */
static void failing_checkpoint(const char *want_file, const char *want_err)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    must_write_ckpt(st, 1, 2);
    fi_on();
    char err[1024] = "";
    int rc = write_ckpt(st, 2, 2, err, sizeof err);
    fi_off();
    if (rc == 0)
        FAIL_AT("checkpoint 2 succeeded under the fault");
    CHECK_CONTAINS(err, want_file);
    CHECK_CONTAINS(err, want_err);
    CHECK(!exists(fmt("%s/_metadata", chk_path(2))));
    CHECK(!exists(fmt("%s/_metadata.tmp", chk_path(2))));
    sl__storage_abort(st, 2);
    sl__storage_settle(st); /* what is removed is removed in the background */
    CHECK(!exists(chk_path(2)));
    int64_t want[] = {1};
    check_retained(st, 1, want);
    check_ckpt(st, chk_path(1), 1, 2);
    /* and the next checkpoint works */
    must_write_ckpt(st, 3, 2);
    check_ckpt(st, chk_path(3), 3, 2);
    sl__storage_settle(st);
    CHECK(!exists(chk_path(1)));
    sl__storage_destroy(st);
}

TEST(enospc_on_a_state_file)
{
    fi.match = "keyed-1.state";
    fi.write_errno = ENOSPC;
    fi.budget = 10;
    failing_checkpoint(fmt("%s/keyed-1.state", chk_path(2)), "no space left on device");
}

TEST(enospc_leaves_no_partial_file)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    fi_on();
    fi.match = "keyed-0.state";
    fi.write_errno = ENOSPC;
    fi.budget = 70000; /* after the first 64 KiB flush */
    char err[1024];
    sl__state_writer *w = sl__state_writer_open(st, 1, "keyed", 0, 0, 4, err, sizeof err);
    CHECK(w != NULL);
    static uint8_t big[100000];
    CHECK_EQ_INT(sl__state_writer_add_kg(w, 0, big, sizeof big), SL_EIO);
    CHECK_EQ_INT(sl__state_writer_add_kg(w, 1, big, 10), SL_EIO); /* sticky */
    sl__subtask_state s;
    CHECK_EQ_INT(sl__state_writer_close(w, &s, err, sizeof err), SL_EIO);
    fi_off();
    CHECK_CONTAINS(err, fmt("cannot write %s/keyed-0.state: no space left on device", chk_path(1)));
    CHECK_EQ_INT(count_entries(chk_path(1)), 0);
    CHECK(s.file == NULL);
    sl__storage_destroy(st);
}

TEST(enospc_on_metadata)
{
    fi.match = "_metadata";
    fi.write_errno = ENOSPC;
    fi.budget = 5;
    failing_checkpoint(fmt("%s/_metadata.tmp", chk_path(2)), "no space left on device");
}

TEST(eio_on_state_file_fsync)
{
    fi.match = "src_op";
    fi.fsync_errno = EIO;
    failing_checkpoint("src_op", "cannot fsync");
}

TEST(eio_on_metadata_fsync)
{
    fi.match = "_metadata";
    fi.fsync_errno = EIO;
    failing_checkpoint(fmt("%s/_metadata.tmp", chk_path(2)), "input/output error");
}

TEST(eio_on_directory_fsync)
{
    fi.match = chk_path(2);
    fi.exact = true;
    fi.fsync_errno = EIO;
    failing_checkpoint(fmt("directory %s", chk_path(2)), "input/output error");
}

TEST(failing_rename)
{
    fi.match = "_metadata";
    fi.rename_errno = EXDEV;
    failing_checkpoint(fmt("cannot rename %s/_metadata.tmp", chk_path(2)), "link");
}

TEST(failing_mkdir)
{
    fi.match = "chk-2";
    fi.mkdir_errno = EACCES;
    failing_checkpoint(fmt("cannot create checkpoint directory %s", chk_path(2)),
                       "permission denied");
}

/* The job directory moved away and replaced by a regular file (what a user or a cleanup
 * script may do under a running job): a checkpoint whose directory was made before completes
 * or is removed where it was made, one begun afterwards fails naming the directory, and
 * nothing incomplete or subsumed is left behind in either place. */
static void move_job_dir(bool away)
{
    const char *job = fmt("%s/" JOB, tmp_dir()), *moved = fmt("%s/" JOB ".away", tmp_dir());
    if (away) {
        CHECK(rename(job, moved) == 0);
        spit(job, (const uint8_t *)"in the way", 10);
    } else {
        CHECK(unlink(job) == 0);
        CHECK(rename(moved, job) == 0);
    }
}

static int write_states(sl__storage *st, ckpt *c, int64_t id, int par, char *err, size_t cap)
{
    memset(c, 0, sizeof *c);
    int rc = 0;
    for (int o = 0; o < NOPS && rc == 0; o++)
        for (int s = 0; s < par && rc == 0; s++)
            rc = write_subtask(st, id, o, s, par, &c->subs[o][s], err, cap);
    ckpt_meta(c, id, par);
    return rc;
}

static void must_write_states_only(sl__storage *st, int64_t id)
{
    ckpt c;
    char err[1024] = "";
    if (write_states(st, &c, id, 2, err, sizeof err) != 0)
        FAIL_AT("states of checkpoint %lld: %s", (long long)id, err);
    ckpt_free(&c);
}

TEST(job_dir_moved_while_checkpointing)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    const char *moved = fmt("%s/" JOB ".away", tmp_dir());
    char err[1024] = "";
    ckpt c;
    must_write_ckpt(st, 1, 2);

    /* completed in the moved directory, where checkpoint 1 is subsumed */
    CHECK_EQ_INT(write_states(st, &c, 2, 2, err, sizeof err), 0);
    move_job_dir(true);
    int rc = sl__storage_complete(st, &c.m, err, sizeof err);
    if (rc != 0)
        FAIL_AT("checkpoint 2 in the moved directory: %s", err);
    ckpt_free(&c);
    sl__storage_settle(st);
    CHECK(exists(fmt("%s/chk-2/_metadata", moved)));
    CHECK(!exists(fmt("%s/chk-1", moved)));

    /* begun while the job directory is a file */
    err[0] = 0;
    CHECK(write_ckpt(st, 3, 2, err, sizeof err) < 0);
    CHECK_CONTAINS(err, fmt("cannot create checkpoint directory %s/chk-3: not a directory",
                            fmt("%s/" JOB, tmp_dir())));
    sl__storage_abort(st, 3);
    move_job_dir(false);

    /* aborted after the directory moved: removed where it was written */
    CHECK_EQ_INT(write_states(st, &c, 4, 2, err, sizeof err), 0);
    ckpt_free(&c);
    CHECK(exists(chk_path(4)));
    move_job_dir(true);
    sl__storage_abort(st, 4);
    sl__storage_settle(st);
    CHECK(!exists(fmt("%s/chk-4", moved)));
    move_job_dir(false);

    /* failed after the directory moved (the metadata cannot be written): removed there too */
    CHECK_EQ_INT(write_states(st, &c, 5, 2, err, sizeof err), 0);
    move_job_dir(true);
    fi_on();
    fi.match = "_metadata";
    fi.rename_errno = EXDEV;
    CHECK(sl__storage_complete(st, &c.m, err, sizeof err) < 0);
    fi_off();
    ckpt_free(&c);
    CHECK_CONTAINS(err, "cannot rename");
    sl__storage_settle(st);
    CHECK(!exists(fmt("%s/chk-5", moved)));
    move_job_dir(false);

    int64_t want[] = {2};
    check_retained(st, 1, want);
    CHECK_EQ_INT(count_entries(fmt("%s/" JOB, tmp_dir())), 3); /* chk-2, shared, taskowned */
    check_ckpt(st, chk_path(2), 2, 2);
    must_write_ckpt(st, 6, 2);
    check_ckpt(st, chk_path(6), 6, 2);
    sl__storage_settle(st);
    CHECK(!exists(chk_path(2)));
    sl__storage_destroy(st);
}

/* A writer of checkpoint 2 that is still writing while checkpoint 2 completes (the
 * completion has the directory already: the late file lands beside the others and the
 * checkpoint stays whole). */
static sl__storage *late_st;

static void late_writer(void)
{
    char err[512];
    sl__state_writer *w = sl__state_writer_open(late_st, 2, "late", 0, 0, 0, err, sizeof err);
    CHECK(w != NULL);
    static const uint8_t op[] = "late operator state";
    CHECK_EQ_INT(sl__state_writer_set_operator(w, op, sizeof op), 0);
    sl__subtask_state s;
    CHECK_EQ_INT(sl__state_writer_close(w, &s, err, sizeof err), 0);
    sl__subtask_state_free(&s);
}

TEST(writer_during_completion)
{
    sl__storage *st = late_st = must_create(tmp_dir(), 1);
    char err[1024] = "";
    ckpt c;
    CHECK_EQ_INT(write_states(st, &c, 2, 2, err, sizeof err), 0);
    fi_on();
    fi.match = "_metadata";
    fi.on_rename = late_writer;
    int rc = sl__storage_complete(st, &c.m, err, sizeof err);
    fi_off();
    ckpt_free(&c);
    if (rc != 0)
        FAIL_AT("checkpoint 2: %s", err);
    CHECK(exists(fmt("%s/late-0.state", chk_path(2))));
    check_ckpt(st, chk_path(2), 2, 2);
    sl__storage_destroy(st);
}

/* A state file is discarded, and a discarded storage's checkpoints in progress removed, in
 * the directory they were written to, even when another job directory has taken its
 * place (whose debris, a chk-<N> without _metadata, discard_all removes too). */
TEST(discards_follow_the_directory)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    const char *job = fmt("%s/" JOB, tmp_dir()), *moved = fmt("%s/" JOB ".away", tmp_dir());
    char err[1024];
    sl__state_writer *w = sl__state_writer_open(st, 1, "keyed", 0, 0, 4, err, sizeof err);
    CHECK(w != NULL);
    static uint8_t big[100000];
    CHECK_EQ_INT(sl__state_writer_add_kg(w, 0, big, sizeof big), 0); /* the file exists */
    CHECK(exists(fmt("%s/keyed-0.state", chk_path(1))));
    /* another job directory, with a file of the same name, at the configured path */
    CHECK(rename(job, moved) == 0);
    CHECK(mkdir(job, 0777) == 0 && mkdir(chk_path(1), 0777) == 0);
    spit(fmt("%s/keyed-0.state", chk_path(1)), (const uint8_t *)"keep", 4);
    sl__state_writer_abort(w);
    CHECK(!exists(fmt("%s/chk-1/keyed-0.state", moved)));
    CHECK(exists(fmt("%s/keyed-0.state", chk_path(1))));
    /* a checkpoint in progress in the moved directory, then the storage discarded */
    must_write_states_only(st, 2);
    sl__storage_discard_all(st);
    CHECK(!exists(fmt("%s/chk-2", moved)));
    sl__storage_destroy(st);
}

TEST(short_writes_are_completed)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    fi_on();
    fi.match = "";
    fi.chunk = 7;
    must_write_ckpt(st, 1, 3);
    fi_off();
    check_ckpt(st, chk_path(1), 1, 3);
    sl__storage_destroy(st);
}

TEST(torn_writes_are_detected_on_load)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    fi_on();
    fi.match = "keyed-1.state";
    fi.tear = true;
    must_write_ckpt(st, 1, 2); /* the writer believes every byte reached the disk */
    fi_off();
    sl__checkpoint_meta *m = load_ok(chk_path(1));
    sl__state_reader *r = NULL;
    char err[1024];
    CHECK_EQ_INT(sl__state_reader_open(st, chk_path(1), 1, &m->operators[0].subtasks[0], &r, err,
                                       sizeof err),
                 0);
    sl__state_reader_free(r);
    CHECK_EQ_INT(sl__state_reader_open(st, chk_path(1), 1, &m->operators[0].subtasks[1], &r, err,
                                       sizeof err),
                 SL_EFORMAT);
    CHECK_CONTAINS(err, fmt("%s/keyed-1.state", chk_path(1)));
    sl__checkpoint_meta_free(m);
    sl__storage_destroy(st);
}

/* ---- aborts ---------------------------------------------------------------------------- */

static void abort_checks(const char *dir)
{
    sl__storage *st = must_create(dir, 1);
    bool memory = dir == NULL;
    char err[1024];
    static uint8_t big[200000];
    /* one writer with a flushed file, one with buffered bytes only */
    sl__state_writer *w1 = sl__state_writer_open(st, 1, "a", 0, 0, 2, err, sizeof err);
    sl__state_writer *w2 = sl__state_writer_open(st, 1, "b", 0, 0, 2, err, sizeof err);
    CHECK(w1 && w2);
    CHECK_EQ_INT(sl__state_writer_add_kg(w1, 0, big, sizeof big), 0);
    CHECK_EQ_INT(sl__state_writer_add_kg(w2, 0, big, 10), 0);
    if (!memory)
        CHECK_EQ_INT(count_entries(chk_path(1)), 1);
    sl__storage_abort(st, 1);
    sl__storage_settle(st);
    if (!memory)
        CHECK(!exists(chk_path(1)));
    sl__subtask_state s;
    CHECK_EQ_INT(sl__state_writer_close(w1, &s, err, sizeof err), SL_ECANCELED);
    CHECK_CONTAINS(err, "aborted");
    CHECK_EQ_INT(sl__state_writer_close(w2, &s, err, sizeof err), SL_ECANCELED);
    CHECK(sl__state_writer_open(st, 1, "c", 0, 0, 2, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "checkpoint 1 was aborted");
    if (!memory)
        CHECK(!exists(chk_path(1)));
    sl__checkpoint_meta m = {.id = 1, .job_id = JOB, .job_name = "x"};
    CHECK_EQ_INT(sl__storage_complete(st, &m, err, sizeof err), SL_ECANCELED);

    /* sl__state_writer_abort removes its file */
    sl__state_writer *w3 = sl__state_writer_open(st, 2, "a", 0, 0, 2, err, sizeof err);
    CHECK_EQ_INT(sl__state_writer_add_kg(w3, 1, big, sizeof big), 0);
    sl__state_writer_abort(w3);
    if (!memory)
        CHECK_EQ_INT(count_entries(chk_path(2)), 0);
    must_write_ckpt(st, 2, 2);
    /* a straggler for an older checkpoint, and an abort of a completed one, change nothing */
    sl__storage_abort(st, 2);
    check_ckpt(st, memory ? NULL : chk_path(2), 2, 2);
    CHECK(sl__state_writer_open(st, 2, "late", 0, 0, 2, err, sizeof err) == NULL);
    /* the order of sections is enforced */
    sl__state_writer *w4 = sl__state_writer_open(st, 3, "o", 0, 4, 8, err, sizeof err);
    CHECK_EQ_INT(sl__state_writer_add_kg(w4, 5, big, 1), 0);
    CHECK_EQ_INT(sl__state_writer_add_kg(w4, 4, big, 1), SL_EINVAL);
    CHECK_EQ_INT(sl__state_writer_close(w4, &s, err, sizeof err), SL_EINVAL);
    CHECK_CONTAINS(err, "out of order");
    sl__storage_destroy(st);
}

TEST(aborts_on_disk)
{
    abort_checks(tmp_dir());
}

/* A checkpoint aborted while a writer is at work (as the job's end aborts one that the final
 * checkpoint replaces): the writer stops at its next key group, before its bytes reach the
 * file, and syncs nothing. */
TEST(aborted_writer_stops_at_its_next_key_group)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    char err[1024];
    static uint8_t big[200000];
    fi_on();
    fi.match = "big-0.state";
    sl__state_writer *w = sl__state_writer_open(st, 1, "big", 0, 0, 4, err, sizeof err);
    CHECK(w != NULL);
    CHECK_EQ_INT(sl__state_writer_add_kg(w, 0, big, sizeof big), 0);
    long before = fi.written;
    CHECK(before > 0);
    sl__storage_abort(st, 1);
    CHECK_EQ_INT(sl__state_writer_add_kg(w, 1, big, sizeof big), SL_ECANCELED);
    CHECK_EQ_INT(sl__state_writer_add_kg(w, 2, big, sizeof big), SL_ECANCELED);
    sl__subtask_state s;
    CHECK_EQ_INT(sl__state_writer_close(w, &s, err, sizeof err), SL_ECANCELED);
    CHECK_CONTAINS(err, "checkpoint 1 was aborted or subsumed while");
    CHECK_CONTAINS(err, "big-0.state");
    CHECK(fi.written - before < (long)sizeof big);
    CHECK_EQ_INT(fi.fsyncs, 0);

    /* aborted after its last key group: closing neither syncs nor publishes the file */
    w = sl__state_writer_open(st, 2, "big", 0, 0, 1, err, sizeof err);
    CHECK(w != NULL);
    CHECK_EQ_INT(sl__state_writer_add_kg(w, 0, big, sizeof big), 0);
    sl__storage_abort(st, 2);
    CHECK_EQ_INT(sl__state_writer_close(w, &s, err, sizeof err), SL_ECANCELED);
    CHECK_CONTAINS(err, "checkpoint 2 was aborted or subsumed while");
    CHECK_EQ_INT(fi.fsyncs, 0);
    sl__storage_settle(st);
    CHECK(!exists(chk_path(2)));
    fi_off();

    /* a writer of a live checkpoint syncs its file once */
    fi_on();
    fi.match = "big-0.state";
    must_write_ckpt(st, 3, 2);
    w = sl__state_writer_open(st, 4, "big", 0, 0, 2, err, sizeof err);
    CHECK(w != NULL);
    CHECK_EQ_INT(sl__state_writer_add_kg(w, 0, big, sizeof big), 0);
    CHECK_EQ_INT(sl__state_writer_add_kg(w, 1, big, 10), 0);
    CHECK_EQ_INT(sl__state_writer_close(w, &s, err, sizeof err), 0);
    CHECK_EQ_INT(fi.fsyncs, 1);
    fi_off();
    sl__subtask_state_free(&s);
    sl__storage_destroy(st);
}

TEST(aborts_in_memory)
{
    abort_checks(NULL);
}

/* The sync of a large state file waits for its writeback a range at a time: an abort meanwhile
 * stops it at the next range, without the fsync; an error of a range fails the file. */
static sl__storage *sync_st;
static int sync_abort_at; /* the wait at which checkpoint 1 is aborted */

static void abort_during_sync(void)
{
    if (fi.sync_waits == sync_abort_at)
        sl__storage_abort(sync_st, 1);
}

TEST(an_abort_stops_the_sync_at_its_next_range)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    char err[1024];
    size_t mb9 = (size_t)9 << 20;
    uint8_t *big = calloc(1, mb9);
    CHECK(big != NULL);
    sl__subtask_state s;

    /* live: 36 MB synced in 5 ranges of 8 MB, then one fsync */
    fi_on();
    fi.match = "big-0.state";
    sl__state_writer *w = sl__state_writer_open(st, 1, "big", 0, 0, 4, err, sizeof err);
    CHECK(w != NULL);
    for (int g = 0; g < 4; g++)
        CHECK_EQ_INT(sl__state_writer_add_kg(w, g, big, mb9), 0);
    CHECK_EQ_INT(sl__state_writer_close(w, &s, err, sizeof err), 0);
    CHECK_EQ_INT(fi.sync_waits, 5);
    CHECK_EQ_INT(fi.fsyncs, 1);
    sl__subtask_state_free(&s);
    fi_off();

    /* aborted during the second range: the third is not waited for, nor the fsync made */
    sl__storage *st2 = must_create(fmt("%s/second", tmp_dir()), 1);
    sync_st = st2;
    sync_abort_at = 2;
    fi_on();
    fi.match = "big-0.state";
    fi.on_sync_wait = abort_during_sync;
    w = sl__state_writer_open(st2, 1, "big", 0, 0, 4, err, sizeof err);
    CHECK(w != NULL);
    for (int g = 0; g < 4; g++)
        CHECK_EQ_INT(sl__state_writer_add_kg(w, g, big, mb9), 0);
    CHECK_EQ_INT(sl__state_writer_close(w, &s, err, sizeof err), SL_ECANCELED);
    CHECK_CONTAINS(err, "checkpoint 1 was aborted or subsumed while");
    CHECK_EQ_INT(fi.sync_waits, 2);
    CHECK_EQ_INT(fi.fsyncs, 0);
    fi_off();
    sl__storage_destroy(st2);

    /* a range that fails fails the file, named */
    fi_on();
    fi.match = "big-0.state";
    fi.sync_errno = EIO;
    w = sl__state_writer_open(st, 2, "big", 0, 0, 2, err, sizeof err);
    CHECK(w != NULL);
    CHECK_EQ_INT(sl__state_writer_add_kg(w, 0, big, mb9), 0);
    CHECK_EQ_INT(sl__state_writer_close(w, &s, err, sizeof err), SL_EIO);
    CHECK_CONTAINS(err, "cannot sync");
    CHECK_CONTAINS(err, "big-0.state");
    CHECK_EQ_INT(fi.fsyncs, 0);
    fi_off();
    free(big);
    sl__storage_destroy(st);
}

/* ---- deletions in the background ------------------------------------------------------ */

/* Open descriptors of this process to unlinked files whose path contains name. */
static int deleted_fds(const char *name)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char link[600], fdp[300];
        snprintf(fdp, sizeof fdp, "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(fdp, link, sizeof link - 1);
        if (k <= 0)
            continue;
        link[k] = 0;
        n += strstr(link, name) && strstr(link, "(deleted)");
    }
    closedir(d);
    return n;
}

/* What is doomed stops being a checkpoint at once and is deleted by the storage's thread:
 * held, the directories and the files' blocks stay until released; destroy deletes what is
 * still queued. */
TEST(deletions_happen_in_the_background)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    char err[1024];
    static uint8_t big[300000];
    must_write_ckpt(st, 1, 2);
    sl__storage_hold_deletions(st, true);

    /* subsumed: its _metadata goes before complete returns, the rest later */
    must_write_ckpt(st, 2, 2);
    int64_t want[] = {2};
    check_retained(st, 1, want);
    CHECK(exists(chk_path(1)));
    CHECK(!exists(fmt("%s/_metadata", chk_path(1))));

    /* aborted with its files written */
    ckpt c;
    CHECK_EQ_INT(write_states(st, &c, 3, 2, err, sizeof err), 0);
    ckpt_free(&c);
    sl__storage_abort(st, 3);
    CHECK(exists(chk_path(3)));
    CHECK(sl__state_writer_open(st, 3, "late", 0, 0, 2, err, sizeof err) == NULL);

    /* a discarded state file: its name goes at once, its blocks with the thread's close */
    sl__state_writer *w = sl__state_writer_open(st, 4, "big", 0, 0, 2, err, sizeof err);
    CHECK(w != NULL);
    CHECK_EQ_INT(sl__state_writer_add_kg(w, 0, big, sizeof big), 0);
    sl__state_writer_abort(w);
    CHECK(!exists(fmt("%s/big-0.state", chk_path(4))));
    CHECK_EQ_INT(deleted_fds("big-0.state"), 1);

    /* refused at the end, after its last key group: the same */
    w = sl__state_writer_open(st, 5, "big", 0, 0, 1, err, sizeof err);
    CHECK(w != NULL);
    CHECK_EQ_INT(sl__state_writer_add_kg(w, 0, big, sizeof big), 0);
    sl__storage_abort(st, 5);
    sl__subtask_state s;
    CHECK_EQ_INT(sl__state_writer_close(w, &s, err, sizeof err), SL_ECANCELED);
    CHECK(!exists(fmt("%s/big-0.state", chk_path(5))));
    CHECK_EQ_INT(deleted_fds("big-0.state"), 2);

    sl__storage_hold_deletions(st, false);
    sl__storage_settle(st);
    CHECK(!exists(chk_path(1)));
    CHECK(!exists(chk_path(3)));
    CHECK(!exists(chk_path(5)));
    CHECK_EQ_INT(deleted_fds("big-0.state"), 0);
    check_ckpt(st, chk_path(2), 2, 2);

    /* destroy deletes what is queued, held or not */
    sl__storage_hold_deletions(st, true);
    must_write_ckpt(st, 6, 2);
    CHECK(exists(chk_path(2)));
    sl__storage_destroy(st);
    CHECK(!exists(chk_path(2)));
    CHECK(exists(fmt("%s/_metadata", chk_path(6))));
}

/* More doomed checkpoints than the thread's queue holds (completions then wait for room):
 * nothing is left behind. */
TEST(many_deletions_leave_nothing_behind)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    for (int64_t id = 1; id <= 40; id++)
        must_write_ckpt(st, id, 2);
    sl__storage_settle(st);
    CHECK_EQ_INT(count_entries(fmt("%s/" JOB, tmp_dir())), 3); /* chk-40, shared, taskowned */
    check_ckpt(st, chk_path(40), 40, 2);
    sl__storage_destroy(st);
}

/* ---- threads --------------------------------------------------------------------------- */

#define NTHREADS 8
#define TPAR 32 /* subtasks of each operator, 4 per thread */
#define TMAXP 128

typedef struct thread_arg {
    sl__storage *st;
    int64_t id;
    int thread;
    sl__subtask_state (*subs)[TPAR];
    int rc;
    char err[512];
} thread_arg;

static void *writer_thread(void *p)
{
    thread_arg *a = p;
    uint8_t buf[3000];
    for (int k = 0; k < TPAR / NTHREADS && a->rc == 0; k++) {
        int s = a->thread * (TPAR / NTHREADS) + k;
        for (int o = 0; o < 2 && a->rc == 0; o++) {
            int start = o == 0 ? sl__key_group_start(s, TPAR, TMAXP) : 0;
            int end = o == 0 ? sl__key_group_start(s + 1, TPAR, TMAXP) : 0;
            sl__state_writer *w = sl__state_writer_open(a->st, a->id, o ? "ops" : "keys", s, start,
                                                        end, a->err, sizeof a->err);
            if (!w) {
                a->rc = -1;
                break;
            }
            for (int kg = start; kg < end; kg++) {
                memset(buf, kg, sizeof buf);
                buf[0] = (uint8_t)a->id;
                sl__state_writer_add_kg(w, kg, buf, 1000 + (size_t)kg * 7);
            }
            if (o == 1) {
                memset(buf, s, 100);
                sl__state_writer_set_operator(w, buf, 100);
            }
            a->rc = sl__state_writer_close(w, &a->subs[o][s], a->err, sizeof a->err);
        }
    }
    return NULL;
}

static void concurrent(const char *dir)
{
    sl__storage *st = must_create(dir, 2);
    for (int64_t id = 1; id <= 5; id++) {
        sl__subtask_state subs[2][TPAR];
        memset(subs, 0, sizeof subs);
        thread_arg args[NTHREADS];
        pthread_t th[NTHREADS];
        for (int t = 0; t < NTHREADS; t++) {
            args[t] = (thread_arg){.st = st, .id = id, .thread = t, .subs = subs};
            CHECK_EQ_INT(pthread_create(&th[t], NULL, writer_thread, &args[t]), 0);
        }
        for (int t = 0; t < NTHREADS; t++) {
            pthread_join(th[t], NULL);
            if (args[t].rc)
                FAIL_AT("thread %d: %s", t, args[t].err);
        }
        sl__operator_state_meta ops[2] = {
            {.uid = "keys",
             .name = "K",
             .parallelism = TPAR,
             .max_parallelism = TMAXP,
             .subtasks = subs[0]},
            {.uid = "ops",
             .name = "O",
             .parallelism = TPAR,
             .max_parallelism = TMAXP,
             .subtasks = subs[1]},
        };
        sl__checkpoint_meta m = {
            .id = id, .job_id = JOB, .job_name = "threads", .noperators = 2, .operators = ops};
        char err[1024];
        if (sl__storage_complete(st, &m, err, sizeof err))
            FAIL_AT("complete: %s", err);
        for (int o = 0; o < 2; o++)
            for (int s = 0; s < TPAR; s++)
                sl__subtask_state_free(&subs[o][s]);

        const char *chk = dir ? chk_path(id) : NULL;
        sl__checkpoint_meta *lm = NULL;
        CHECK_EQ_INT(sl__checkpoint_load(st, chk, id, &lm, err, sizeof err), 0);
        for (int s = 0; s < TPAR; s++) {
            sl__state_reader *r = NULL;
            if (sl__state_reader_open(st, chk, id, &lm->operators[0].subtasks[s], &r, err,
                                      sizeof err))
                FAIL_AT("%s", err);
            for (int kg = lm->operators[0].subtasks[s].kg_start;
                 kg < lm->operators[0].subtasks[s].kg_end; kg++) {
                const uint8_t *p;
                size_t n;
                CHECK_EQ_INT(sl__state_reader_kg(r, kg, &p, &n), 0);
                CHECK_EQ_INT(n, 1000 + (size_t)kg * 7);
                CHECK_EQ_INT(p[0], (uint8_t)id);
                CHECK_EQ_INT(p[n - 1], (uint8_t)kg);
            }
            sl__state_reader_free(r);
        }
        sl__checkpoint_meta_free(lm);
    }
    int64_t want[] = {5, 4};
    check_retained(st, 2, want);
    sl__storage_destroy(st);
}

TEST(concurrent_writers_on_disk)
{
    concurrent(tmp_dir());
}

TEST(concurrent_writers_in_memory)
{
    concurrent(NULL);
}

/* ---- JSON ------------------------------------------------------------------------------ */

/* Runs python3 on the JSON of m with script checks (reading it as d); returns its status. */
static int python_check(const sl__checkpoint_meta *m, const char *path, const char *checks)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "python3 -c 'import json,sys\nd=json.load(sys.stdin)\n%s' >&2",
             checks);
    FILE *p = popen(cmd, "w");
    CHECK(p != NULL);
    CHECK_EQ_INT(sl__checkpoint_meta_json(m, path, p), 0);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

TEST(json_is_valid)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    must_write_ckpt(st, 1, 2);
    sl__checkpoint_meta *m = load_ok(chk_path(1));
    CHECK_EQ_INT(python_check(m, chk_path(1),
                              "assert d[\"job_id\"] == \"" JOB "\"\n"
                              "assert d[\"checkpoint_id\"] == 1 and d[\"savepoint\"] is False\n"
                              "assert d[\"timestamp_ms\"] == 1700000000123\n"
                              "assert d[\"duration_ms\"] == 17\n"
                              "assert [o[\"uid\"] for o in d[\"operators\"]] == "
                              "[\"keyed\", \"src op\", \"sink\"]\n"
                              "assert d[\"operators\"][0][\"name\"] == \"Keyed \\\"Sum\\\"\"\n"
                              "k = d[\"operators\"][0][\"subtasks\"]\n"
                              "assert [s[\"key_groups\"] for s in k] == [[0, 8], [8, 16]]\n"
                              "assert k[0][\"file\"] == \"keyed-0.state\"\n"
                              "assert len(k[0][\"checksum\"]) == 16\n"
                              "assert d[\"total_size\"] == sum(s[\"size\"] for o in "
                              "d[\"operators\"] for s in o[\"subtasks\"])\n"
                              "assert list(d.keys())[:3] == [\"job_id\", \"job_name\", "
                              "\"checkpoint_id\"]\n"),
                 0);
    sl__checkpoint_meta_free(m);

    /* awkward strings: quotes, backslash, control characters, UTF-8, a byte that is not */
    sl__subtask_state none = {.subtask = 0, .file = ""};
    sl__operator_state_meta op = {.uid = "u\"\\\n\t\x01/\xe5\x8c\x97\xe4\xba\xac\xff",
                                  .name = "",
                                  .parallelism = 1,
                                  .max_parallelism = 1,
                                  .subtasks = &none};
    sl__checkpoint_meta odd = {.id = 5,
                               .job_id = JOB,
                               .job_name = "\x7f",
                               .savepoint = true,
                               .noperators = 1,
                               .operators = &op};
    CHECK_EQ_INT(python_check(&odd, NULL,
                              "assert d[\"operators\"][0][\"uid\"] == "
                              "\"u\\\"\\\\\\n\\t\\x01/\\u5317\\u4eac\\ufffd\"\n"
                              "assert d[\"path\"] is None and d[\"savepoint\"] is True\n"),
                 0);
    sl__checkpoint_meta empty = {.id = 6, .job_id = JOB, .job_name = "e"};
    CHECK_EQ_INT(python_check(&empty, "/x", "assert d[\"operators\"] == []\n"), 0);
    sl__storage_destroy(st);
}

/* ---- out of memory --------------------------------------------------------------------- */

TEST(allocation_failures)
{
    sl__storage *st = must_create(tmp_dir(), 1);
    sl__storage *mem = must_create(NULL, 1);
    must_write_ckpt(st, 1, 2);
    must_write_ckpt(mem, 1, 2);
    char err[1024];
    int failures = 0;
    /* loading */
    for (long n = 1; n < 400; n++) {
        for (int which = 0; which < 2; which++) {
            sl__checkpoint_meta *m = NULL;
            sl__alloc_fail_reset(n);
            int rc = which ? sl__checkpoint_load(mem, NULL, 1, &m, err, sizeof err)
                           : sl__checkpoint_load(st, chk_path(1), 1, &m, err, sizeof err);
            sl__state_reader *r = NULL;
            int rr = 0;
            if (rc == 0)
                rr = sl__state_reader_open(which ? mem : st, which ? NULL : chk_path(1), 1,
                                           &m->operators[0].subtasks[1], &r, err, sizeof err);
            sl__alloc_fail_reset(-1);
            CHECK(rc == 0 || rc == SL_ENOMEM);
            CHECK(rr == 0 || rr == SL_ENOMEM);
            failures += rc != 0 || rr != 0;
            if (rc == SL_ENOMEM)
                CHECK_CONTAINS(err, "out of memory");
            sl__state_reader_free(r);
            sl__checkpoint_meta_free(m);
        }
    }
    CHECK(failures > 0);
    /* writing and completing: each attempt a new id; a failure leaves the last good one */
    int64_t good = 1;
    for (long n = 1; n < 300; n++) {
        sl__storage *s = n % 2 ? st : mem;
        int64_t id = n + 1;
        sl__alloc_fail_reset(n / 2 + 1);
        int rc = write_ckpt(s, id, 2, err, sizeof err);
        sl__alloc_fail_reset(-1);
        if (rc != 0)
            sl__storage_abort(s, id);
        else
            good = id;
        int64_t ids[4];
        /* 1, or 2 when memory for the list of checkpoints to delete ran out: the older one
         * is deleted at the next completion instead */
        int k = sl__storage_retained(s, ids, 4);
        CHECK(k == 1 || k == 2);
        check_ckpt(s, s == st ? chk_path(ids[0]) : NULL, ids[0], 2);
    }
    CHECK(good > 1);
    sl__storage_destroy(st);
    sl__storage_destroy(mem);
}

int main(int argc, char **argv)
{
    return RUN_TESTS(
        argc, argv, disk_round_trip, memory_round_trip, file_names_are_sanitized_and_distinct,
        retention_keeps_one, retention_keeps_three, restart_with_existing_job_dir,
        savepoints_are_never_deleted, discard_all_removes_the_job_dir, every_truncation_is_detected,
        byte_flips_are_detected, valid_checksum_with_bad_fields_is_refused,
        finished_subtasks_round_trip, bad_metadata_is_refused_on_complete,
        paths_that_are_not_checkpoints, create_errors_name_the_directory, enospc_on_a_state_file,
        enospc_leaves_no_partial_file, enospc_on_metadata, eio_on_state_file_fsync,
        eio_on_metadata_fsync, eio_on_directory_fsync, failing_rename, failing_mkdir,
        job_dir_moved_while_checkpointing, writer_during_completion, discards_follow_the_directory,
        short_writes_are_completed, torn_writes_are_detected_on_load, aborts_on_disk,
        aborted_writer_stops_at_its_next_key_group, an_abort_stops_the_sync_at_its_next_range,
        deletions_happen_in_the_background, many_deletions_leave_nothing_behind, aborts_in_memory,
        concurrent_writers_on_disk, concurrent_writers_in_memory, json_is_valid,
        allocation_failures);
}

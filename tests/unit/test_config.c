/*
 * test_config.c - the configuration key table, value parsers and validation, error messages,
 * YAML loading and -D pairs, and out-of-memory handling through the allocation countdown.
 */
#include "core/alloc.h"
#include "core/config.h"
#include "sluice.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <stdbool.h>
#include <sys/stat.h>

/* A temporary directory holding YAML files, removed by tmp_cleanup(). */
typedef struct tmpdir {
    char dir[64];
    char files[8][128];
    int n;
} tmpdir;

static void tmp_init(tmpdir *t)
{
    snprintf(t->dir, sizeof t->dir, "/tmp/sl_test_config.XXXXXX");
    CHECK(mkdtemp(t->dir));
    t->n = 0;
}

static const char *tmp_write(tmpdir *t, const char *name, const char *text)
{
    CHECK(t->n < 8);
    char *path = t->files[t->n++];
    char dir[sizeof t->dir]; /* a copy: snprintf's source must not overlap *t */
    memcpy(dir, t->dir, sizeof dir);
    snprintf(path, sizeof t->files[0], "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f);
    CHECK(fputs(text, f) >= 0);
    CHECK(fclose(f) == 0);
    return path;
}

static void tmp_cleanup(tmpdir *t)
{
    for (int i = 0; i < t->n; i++)
        unlink(t->files[i]);
    CHECK(rmdir(t->dir) == 0);
}

static const sl__config_key *find_row(const char *name)
{
    for (const sl__config_key *k = sl__config_keys(); k->name; k++)
        if (!strcmp(k->name, name))
            return k;
    return NULL;
}

TEST(key_table_is_exactly_the_documented_keys)
{
    static const char *expect[] = {
        "parallelism.default",
        "pipeline.max-parallelism",
        "execution.runtime-mode",
        "execution.buffer-timeout",
        "taskmanager.memory.segment-size",
        "taskmanager.network.memory.buffers-per-channel",
        "state.backend.type",
        "state.backend.incremental",
        "state.backend.rocksdb.localdir",
        "state.backend.rocksdb.memory.managed",
        "state.backend.rocksdb.memory.fixed-per-subtask",
        "state.backend.rocksdb.memory.write-buffer-ratio",
        "execution.checkpointing.interval",
        "execution.checkpointing.mode",
        "execution.checkpointing.timeout",
        "execution.checkpointing.min-pause",
        "execution.checkpointing.max-concurrent-checkpoints",
        "execution.checkpointing.tolerable-failed-checkpoints",
        "execution.checkpointing.externalized-checkpoint-retention",
        "state.checkpoints.dir",
        "state.savepoints.dir",
        "state.checkpoints.num-retained",
        "state.checkpoint-storage",
        "restart-strategy.type",
        "restart-strategy.fixed-delay.attempts",
        "restart-strategy.fixed-delay.delay",
        "restart-strategy.failure-rate.max-failures-per-interval",
        "restart-strategy.failure-rate.failure-rate-interval",
        "restart-strategy.failure-rate.delay",
        "restart-strategy.exponential-delay.initial-backoff",
        "restart-strategy.exponential-delay.max-backoff",
        "restart-strategy.exponential-delay.backoff-multiplier",
        "restart-strategy.exponential-delay.reset-backoff-threshold",
        "restart-strategy.exponential-delay.jitter-factor",
        "restart-strategy.exponential-delay.attempts-before-reset-backoff",
    };
    int n = 0;
    for (const sl__config_key *k = sl__config_keys(); k->name; k++)
        n++;
    CHECK_EQ_INT(n, sizeof expect / sizeof expect[0]);
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        CHECK(find_row(expect[i]));
    CHECK_EQ_STR(find_row("execution.buffer-timeout")->alias, "execution.buffer-timeout.interval");
    CHECK_EQ_STR(find_row("state.backend.type")->alias, "state.backend");
    CHECK_EQ_STR(find_row("state.backend.rocksdb.memory.fixed-per-subtask")->alias,
                 "state.backend.rocksdb.memory.fixed-per-slot");
    CHECK(!find_row("parallelism.default")->alias);
    /* Flink 2.x names of the checkpointing keys, and 1.x's restart-strategy */
    CHECK_EQ_STR(find_row("state.checkpoints.dir")->alias, "execution.checkpointing.dir");
    CHECK_EQ_STR(find_row("state.savepoints.dir")->alias, "execution.checkpointing.savepoint-dir");
    CHECK_EQ_STR(find_row("state.checkpoints.num-retained")->alias,
                 "execution.checkpointing.num-retained");
    CHECK_EQ_STR(find_row("state.checkpoint-storage")->alias, "execution.checkpointing.storage");
    CHECK_EQ_STR(find_row("restart-strategy.type")->alias, "restart-strategy");
    CHECK(!find_row("execution.checkpointing.externalized-checkpoint-retention")->alias);
}

TEST(every_default_is_valid_and_every_key_documented)
{
    /* Keys whose absence means something (checkpointing off, no directory, a default that
     * depends on other keys): they have no default text. */
    static const char *no_default[] = {"execution.checkpointing.interval",
                                       "state.checkpoints.dir",
                                       "state.savepoints.dir",
                                       "state.checkpoint-storage",
                                       "restart-strategy.type",
                                       "state.backend.rocksdb.localdir"};
    char err[256];
    for (const sl__config_key *k = sl__config_keys(); k->name; k++) {
        CHECK(k->doc && *k->doc);
        bool expect_none = false;
        for (size_t i = 0; i < sizeof no_default / sizeof no_default[0]; i++)
            expect_none |= !strcmp(k->name, no_default[i]);
        if (expect_none != !k->def)
            FAIL_AT("%s: default %s, expected %s", k->name, k->def ? k->def : "(none)",
                    expect_none ? "none" : "one");
        if (k->type == SL_CFG_INT || k->type == SL_CFG_DURATION || k->type == SL_CFG_MEMORY ||
            k->type == SL_CFG_DOUBLE)
            CHECK(k->min <= k->max);
        if (k->type == SL_CFG_ENUM)
            CHECK(k->values && *k->values);
        if (!k->def)
            continue;
        char *v = NULL;
        int rc = sl__config_validate(k, k->name, k->def, &v, err, sizeof err);
        if (rc)
            FAIL_AT("default of %s rejected: %s", k->name, err);
        CHECK_EQ_STR(v, k->def);
        sl__free(v);
    }
}

TEST(defaults)
{
    sl__config *c = sl__config_create();
    CHECK(c);
    CHECK_EQ_INT(sl__config_int(c, "parallelism.default"), 1);
    CHECK_EQ_INT(sl__config_int(c, "pipeline.max-parallelism"), 128);
    CHECK_EQ_STR(sl__config_get(c, "execution.runtime-mode"), "STREAMING");
    CHECK_EQ_STR(sl__config_get(c, "execution.buffer-timeout"), "100 ms");
    CHECK_EQ_INT(sl__config_duration_ms(c, "execution.buffer-timeout"), 100);
    CHECK_EQ_INT(sl__config_memory(c, "taskmanager.memory.segment-size"), 32768);
    CHECK_EQ_INT(sl__config_int(c, "taskmanager.network.memory.buffers-per-channel"), 16);
    CHECK_EQ_STR(sl__config_get(c, "state.backend.type"), "hashmap");
    CHECK(!sl__config_is_set(c, "parallelism.default"));
    CHECK(!sl__config_get(c, "no.such.key"));
    CHECK(!sl__config_is_set(c, "no.such.key"));
    sl__config_destroy(c);
    sl__config_destroy(NULL);
}

TEST(set_and_get_canonical_and_alias)
{
    char err[256];
    sl__config *c = sl__config_create();
    CHECK_EQ_INT(sl__config_set(c, "parallelism.default", "8", err, sizeof err), 0);
    CHECK(sl__config_is_set(c, "parallelism.default"));
    CHECK_EQ_INT(sl__config_int(c, "parallelism.default"), 8);

    /* the 2.x alias sets the canonical key; both names read it */
    CHECK_EQ_INT(sl__config_set(c, "execution.buffer-timeout.interval", "5 s", err, sizeof err), 0);
    CHECK(sl__config_is_set(c, "execution.buffer-timeout"));
    CHECK(sl__config_is_set(c, "execution.buffer-timeout.interval"));
    CHECK_EQ_STR(sl__config_get(c, "execution.buffer-timeout"), "5 s");
    CHECK_EQ_INT(sl__config_duration_ms(c, "execution.buffer-timeout"), 5000);
    CHECK_EQ_INT(sl__config_duration_ms(c, "execution.buffer-timeout.interval"), 5000);
    CHECK_EQ_INT(sl__config_set(c, "execution.buffer-timeout", "0", err, sizeof err), 0);
    CHECK_EQ_INT(sl__config_duration_ms(c, "execution.buffer-timeout.interval"), 0);

    CHECK_EQ_INT(sl__config_set(c, "state.backend", "HashMap", err, sizeof err), 0);
    CHECK_EQ_STR(sl__config_get(c, "state.backend.type"), "hashmap");

    /* enums are stored in the table's case */
    CHECK_EQ_INT(sl__config_set(c, "execution.runtime-mode", " batch ", err, sizeof err), 0);
    CHECK_EQ_STR(sl__config_get(c, "execution.runtime-mode"), "BATCH");
    CHECK_EQ_INT(sl__config_set(c, "execution.runtime-mode", "Automatic", err, sizeof err), 0);
    CHECK_EQ_STR(sl__config_get(c, "execution.runtime-mode"), "AUTOMATIC");

    /* a later set replaces; the copy is independent */
    sl__config *d = sl__config_copy(c);
    CHECK(d);
    CHECK_EQ_INT(sl__config_set(c, "parallelism.default", "+16", err, sizeof err), 0);
    CHECK_EQ_STR(sl__config_get(c, "parallelism.default"), "16");
    CHECK_EQ_INT(sl__config_int(d, "parallelism.default"), 8);
    CHECK_EQ_STR(sl__config_get(d, "execution.runtime-mode"), "AUTOMATIC");
    CHECK(!sl__config_is_set(d, "pipeline.max-parallelism"));
    CHECK(!sl__config_copy(NULL));
    sl__config_destroy(d);
    sl__config_destroy(c);
}

TEST(int_values_and_bounds)
{
    char err[256];
    sl__config *c = sl__config_create();
    const char *key = "parallelism.default";
    CHECK_EQ_INT(sl__config_set(c, key, "32768", err, sizeof err), 0);
    CHECK_EQ_INT(sl__config_set(c, key, " 0001 ", err, sizeof err), 0);
    CHECK_EQ_STR(sl__config_get(c, key), "1");
    static const char *bad[] = {"0",
                                "32769",
                                "-1",
                                "",
                                " ",
                                "1.5",
                                "1e3",
                                "0x10",
                                "4 4",
                                "abc",
                                "+",
                                "-",
                                "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        CHECK_EQ_INT(sl__config_set(c, key, bad[i], err, sizeof err), SL_ECONFIG);
        CHECK_CONTAINS(err, "accepted an integer from 1 to 32768");
    }
    CHECK_EQ_INT(sl__config_set(c, key, "0", err, sizeof err), SL_ECONFIG);
    CHECK_EQ_STR(err, "invalid value \"0\" for parallelism.default: accepted an integer from 1 "
                      "to 32768");
    /* a rejected value leaves the previous one in place */
    CHECK_EQ_INT(sl__config_int(c, key), 1);
    CHECK_EQ_INT(sl__config_set(c, "taskmanager.network.memory.buffers-per-channel", "1025", err,
                                sizeof err),
                 SL_ECONFIG);
    CHECK_CONTAINS(err, "an integer from 1 to 1024");
    sl__config_destroy(c);
}

TEST(duration_parser)
{
    static const struct {
        const char *text;
        int64_t ms;
    } ok[] = {
        {"0", 0},
        {"1234", 1234},
        {"1234ms", 1234},
        {"1234 ms", 1234},
        {"  7 ms  ", 7},
        {"1 milli", 1},
        {"2 millis", 2},
        {"3 millisecond", 3},
        {"4 milliseconds", 4},
        {"1s", 1000},
        {"2 sec", 2000},
        {"3 secs", 3000},
        {"4 second", 4000},
        {"5 seconds", 5000},
        {"2 min", 120000},
        {"1 minute", 60000},
        {"3 minutes", 180000},
        {"1h", 3600000},
        {"2 hour", 7200000},
        {"3 hours", 10800000},
        {"1d", 86400000},
        {"1 day", 86400000},
        {"2 days", 172800000},
        {"1 MS", 1},
        {"1 Min", 60000},
        {"9223372036854775807", INT64_MAX},
        {"9223372036854775 ms", 9223372036854775},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t v = -1;
        if (sl__parse_duration_ms(ok[i].text, &v))
            FAIL_AT("\"%s\" rejected", ok[i].text);
        if (v != ok[i].ms)
            FAIL_AT("\"%s\" parsed as %lld, want %lld", ok[i].text, (long long)v,
                    (long long)ok[i].ms);
    }
    static const char *bad[] = {"",
                                " ",
                                "ms",
                                "-1 s",
                                "+1 s",
                                "1.5 s",
                                "1 sec x",
                                "1 m",
                                "1 ns",
                                "1 s s",
                                "1 mss",
                                "s 1",
                                "9223372036854775808",
                                "9223372036854776 s",
                                "106751991168 d"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 42;
        if (!sl__parse_duration_ms(bad[i], &v))
            FAIL_AT("\"%s\" accepted as %lld", bad[i], (long long)v);
        CHECK_EQ_INT(v, 42);
    }
    int64_t v;
    CHECK_EQ_INT(sl__parse_duration_ms(NULL, &v), -1);

    char err[256];
    sl__config *c = sl__config_create();
    CHECK_EQ_INT(sl__config_set(c, "execution.buffer-timeout", "1 h", err, sizeof err), 0);
    CHECK_EQ_INT(sl__config_duration_ms(c, "execution.buffer-timeout"), 3600000);
    CHECK_EQ_INT(sl__config_set(c, "execution.buffer-timeout", "3600001", err, sizeof err),
                 SL_ECONFIG);
    CHECK_EQ_STR(err, "invalid value \"3600001\" for execution.buffer-timeout: accepted a "
                      "duration such as \"100 ms\", \"1 s\", \"2 min\" from 0 ms to 1 h");
    CHECK_EQ_INT(sl__config_set(c, "execution.buffer-timeout.interval", "-5 ms", err, sizeof err),
                 SL_ECONFIG);
    CHECK_CONTAINS(err, "invalid value \"-5 ms\" for execution.buffer-timeout.interval");
    sl__config_destroy(c);
}

TEST(memory_parser)
{
    static const struct {
        const char *text;
        int64_t bytes;
    } ok[] = {
        {"0", 0},
        {"4096", 4096},
        {"1b", 1},
        {"10 bytes", 10},
        {"1k", 1024},
        {"32kb", 32768},
        {"32 KB", 32768},
        {"2 kibibytes", 2048},
        {"1m", 1048576},
        {"1 mb", 1048576},
        {"3 mebibytes", 3145728},
        {"1g", INT64_C(1) << 30},
        {"2 GB", INT64_C(2) << 30},
        {"1 gibibytes", INT64_C(1) << 30},
        {"1t", INT64_C(1) << 40},
        {"1 TB", INT64_C(1) << 40},
        {"8388607 tb", INT64_C(8388607) << 40},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t v = -1;
        if (sl__parse_memory(ok[i].text, &v))
            FAIL_AT("\"%s\" rejected", ok[i].text);
        if (v != ok[i].bytes)
            FAIL_AT("\"%s\" parsed as %lld, want %lld", ok[i].text, (long long)v,
                    (long long)ok[i].bytes);
    }
    static const char *bad[] = {"",      "kb",  "-1kb",  "1.5mb",      "1 kbx",
                                "1 kib", "1 p", "1 k b", "8388608 tb", "99999999999999999999 b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 42;
        if (!sl__parse_memory(bad[i], &v))
            FAIL_AT("\"%s\" accepted as %lld", bad[i], (long long)v);
        CHECK_EQ_INT(v, 42);
    }

    char err[256];
    sl__config *c = sl__config_create();
    const char *key = "taskmanager.memory.segment-size";
    CHECK_EQ_INT(sl__config_set(c, key, "16mb", err, sizeof err), 0);
    CHECK_EQ_INT(sl__config_memory(c, key), 16 << 20);
    CHECK_EQ_INT(sl__config_set(c, key, "4 k", err, sizeof err), 0);
    CHECK_EQ_INT(sl__config_memory(c, key), 4096);
    CHECK_EQ_INT(sl__config_set(c, key, "4095", err, sizeof err), SL_ECONFIG);
    CHECK_EQ_STR(err, "invalid value \"4095\" for taskmanager.memory.segment-size: accepted a "
                      "memory size such as \"32kb\" or \"1 mb\" from 4kb to 16mb");
    CHECK_EQ_INT(sl__config_set(c, key, "17 mb", err, sizeof err), SL_ECONFIG);
    CHECK_EQ_INT(sl__config_memory(c, key), 4096);
    sl__config_destroy(c);
}

TEST(enum_bad_value_lists_accepted)
{
    char err[256];
    sl__config *c = sl__config_create();
    CHECK_EQ_INT(sl__config_set(c, "execution.runtime-mode", "fast", err, sizeof err), SL_ECONFIG);
    CHECK_EQ_STR(err, "invalid value \"fast\" for execution.runtime-mode: accepted STREAMING, "
                      "BATCH, AUTOMATIC");
    CHECK_EQ_INT(sl__config_set(c, "execution.runtime-mode", "STREAM", err, sizeof err),
                 SL_ECONFIG);
    CHECK_EQ_INT(sl__config_set(c, "execution.runtime-mode", "", err, sizeof err), SL_ECONFIG);
    CHECK_EQ_INT(sl__config_set(c, "state.backend", "memory", err, sizeof err), SL_ECONFIG);
    CHECK_EQ_STR(err, "invalid value \"memory\" for state.backend: accepted hashmap, rocksdb");
    CHECK_EQ_INT(sl__config_set(c, "state.backend", "RocksDB", err, sizeof err), 0);
    CHECK_EQ_STR(sl__config_get(c, "state.backend.type"), "rocksdb");
    CHECK_EQ_STR(sl__config_get(c, "execution.runtime-mode"), "STREAMING");

    /* long values are shortened in the message */
    char big[400];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK_EQ_INT(sl__config_set(c, "execution.runtime-mode", big, err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, "xxx...\" for execution.runtime-mode: accepted STREAMING");
    /* a small or absent error buffer is fine */
    char tiny[8];
    CHECK_EQ_INT(sl__config_set(c, "execution.runtime-mode", "x", tiny, sizeof tiny), SL_ECONFIG);
    CHECK_EQ_STR(tiny, "invalid");
    CHECK_EQ_INT(sl__config_set(c, "execution.runtime-mode", "x", NULL, 0), SL_ECONFIG);
    sl__config_destroy(c);
}

/* Types that no key in the table has yet, through the validator the table uses. */
TEST(bool_string_path_values)
{
    char err[256];
    char *v = NULL;
    sl__config_key b = {.name = "x.enabled", .type = SL_CFG_BOOL, .def = "false", .doc = "d"};
    static const struct {
        const char *in, *out;
    } bools[] = {{"true", "true"}, {"TRUE", "true"}, {" False ", "false"}, {"fAlSe", "false"}};
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
        CHECK_EQ_INT(sl__config_validate(&b, b.name, bools[i].in, &v, err, sizeof err), 0);
        CHECK_EQ_STR(v, bools[i].out);
        sl__free(v);
    }
    static const char *bad_bools[] = {"yes", "1", "", "truee", "t", "on"};
    for (size_t i = 0; i < sizeof bad_bools / sizeof bad_bools[0]; i++) {
        CHECK_EQ_INT(sl__config_validate(&b, b.name, bad_bools[i], &v, err, sizeof err),
                     SL_ECONFIG);
        CHECK(!v);
    }
    CHECK_CONTAINS(err, "for x.enabled: accepted true or false");

    sl__config_key s = {.name = "x.name", .type = SL_CFG_STRING, .doc = "d"};
    CHECK_EQ_INT(sl__config_validate(&s, s.name, " any text ", &v, err, sizeof err), 0);
    CHECK_EQ_STR(v, " any text ");
    sl__free(v);
    CHECK_EQ_INT(sl__config_validate(&s, s.name, "", &v, err, sizeof err), 0);
    CHECK_EQ_STR(v, "");
    sl__free(v);

    sl__config_key p = {.name = "x.dir", .type = SL_CFG_PATH, .doc = "d"};
    static const struct {
        const char *in, *out;
    } paths[] = {{"/tmp/cp", "/tmp/cp"},
                 {"file:///tmp/cp", "/tmp/cp"},
                 {"FILE:///tmp/cp", "/tmp/cp"},
                 {" relative/dir ", "relative/dir"},
                 {"file://rel", "rel"}};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        CHECK_EQ_INT(sl__config_validate(&p, p.name, paths[i].in, &v, err, sizeof err), 0);
        CHECK_EQ_STR(v, paths[i].out);
        sl__free(v);
    }
    static const char *bad_paths[] = {"", "  ", "file://", "s3://bucket/cp", "hdfs:///cp"};
    for (size_t i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
        CHECK_EQ_INT(sl__config_validate(&p, p.name, bad_paths[i], &v, err, sizeof err),
                     SL_ECONFIG);
        CHECK_CONTAINS(err, "accepted a local path or a file:// URI");
    }
}

TEST(unknown_key_with_and_without_suggestion)
{
    char err[256];
    sl__config *c = sl__config_create();
    CHECK_EQ_INT(sl__config_set(c, "paralelism.default", "2", err, sizeof err), SL_ECONFIG);
    CHECK_EQ_STR(err, "unknown configuration key \"paralelism.default\"; did you mean "
                      "\"parallelism.default\"?");
    /* transposition, case, and up to three edits */
    CHECK_EQ_INT(sl__config_set(c, "pipeline.max-paralellism", "2", err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, "did you mean \"pipeline.max-parallelism\"?");
    CHECK_EQ_INT(sl__config_set(c, "Execution.Runtime-Mode", "BATCH", err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, "did you mean \"execution.runtime-mode\"?");
    CHECK_EQ_INT(sl__config_set(c, "state.backnd.typ", "hashmap", err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, "did you mean \"state.backend.type\"?");
    CHECK_EQ_INT(sl__config_set(c, "execution.buffer-timeout.intervl", "1", err, sizeof err),
                 SL_ECONFIG);
    CHECK_CONTAINS(err, "did you mean \"execution.buffer-timeout.interval\"?");
    /* a long shared prefix */
    CHECK_EQ_INT(sl__config_set(c, "taskmanager.network.memory.buffers-per-channel.max", "2", err,
                                sizeof err),
                 SL_ECONFIG);
    CHECK_CONTAINS(err, "did you mean \"taskmanager.network.memory.buffers-per-channel\"?");
    /* nothing close: no suggestion */
    CHECK_EQ_INT(sl__config_set(c, "taskmanager.memory.process.size", "1g", err, sizeof err),
                 SL_ECONFIG);
    CHECK_EQ_STR(err, "unknown configuration key \"taskmanager.memory.process.size\"");
    CHECK_EQ_INT(sl__config_set(c, "foo", "1", err, sizeof err), SL_ECONFIG);
    CHECK_EQ_STR(err, "unknown configuration key \"foo\"");
    CHECK_EQ_INT(sl__config_set(c, "", "1", err, sizeof err), SL_ECONFIG);
    CHECK_EQ_STR(err, "unknown configuration key \"\"");
    char longkey[300];
    memset(longkey, 'a', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = 0;
    CHECK_EQ_INT(sl__config_set(c, longkey, "1", err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, "unknown configuration key \"aaaa");
    CHECK(!strstr(err, "did you mean"));
    CHECK_EQ_INT(sl__config_set(c, NULL, "1", err, sizeof err), SL_EINVAL);
    CHECK_EQ_INT(sl__config_set(c, "parallelism.default", NULL, err, sizeof err), SL_EINVAL);
    sl__config_destroy(c);
}

TEST(set_pair)
{
    char err[256];
    sl__config *c = sl__config_create();
    CHECK_EQ_INT(sl__config_set_pair(c, "parallelism.default=4", err, sizeof err), 0);
    CHECK_EQ_INT(sl__config_int(c, "parallelism.default"), 4);
    CHECK_EQ_INT(sl__config_set_pair(c, "  execution.runtime-mode  =  batch  ", err, sizeof err),
                 0);
    CHECK_EQ_STR(sl__config_get(c, "execution.runtime-mode"), "BATCH");
    /* split on the first '=' */
    CHECK_EQ_INT(sl__config_set_pair(c, "execution.runtime-mode=a=b", err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, "invalid value \"a=b\" for execution.runtime-mode");
    CHECK_EQ_INT(
        sl__config_set_pair(c, "execution.buffer-timeout.interval= 2 min", err, sizeof err), 0);
    CHECK_EQ_INT(sl__config_duration_ms(c, "execution.buffer-timeout"), 120000);

    CHECK_EQ_INT(sl__config_set_pair(c, "parallelism.default", err, sizeof err), SL_ECONFIG);
    CHECK_EQ_STR(err, "invalid option \"-D parallelism.default\": expected -D key=value");
    CHECK_EQ_INT(sl__config_set_pair(c, "", err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, "expected -D key=value");
    CHECK_EQ_INT(sl__config_set_pair(c, " =4", err, sizeof err), SL_ECONFIG);
    CHECK_EQ_STR(err, "missing key in \"-D  =4\": expected -D key=value");
    CHECK_EQ_INT(sl__config_set_pair(c, "parallelism.default=", err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, "invalid value \"\" for parallelism.default");
    CHECK_EQ_INT(sl__config_set_pair(c, "paralelism.default=3", err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, "did you mean \"parallelism.default\"?");
    CHECK_EQ_INT(sl__config_int(c, "parallelism.default"), 4);
    sl__config_destroy(c);
}

TEST(yaml_flat_and_nested)
{
    tmpdir t;
    tmp_init(&t);
    char err[512];
    const char *flat = tmp_write(&t, "flat.yaml",
                                 "# Flink 1.x style\n"
                                 "parallelism.default: 3\n"
                                 "execution.runtime-mode: batch\n"
                                 "execution.buffer-timeout.interval: 10 ms\n"
                                 "\"state.backend\": hashmap\n");
    const char *nested = tmp_write(&t, "nested.yaml",
                                   "parallelism:\n"
                                   "  default: 6\n"
                                   "pipeline:\n"
                                   "  max-parallelism: 256\n"
                                   "execution:\n"
                                   "  runtime-mode: AUTOMATIC\n"
                                   "  buffer-timeout: {interval: 1 s}\n"
                                   "taskmanager:\n"
                                   "  memory.segment-size: 64 kb\n"
                                   "  network:\n"
                                   "    memory:\n"
                                   "      buffers-per-channel: 8\n");
    const char *empty = tmp_write(&t, "empty.yaml", "# nothing here\n");

    sl__config *c = sl__config_create();
    CHECK_EQ_INT(sl__config_load_yaml(c, flat, err, sizeof err), 0);
    CHECK_EQ_INT(sl__config_int(c, "parallelism.default"), 3);
    CHECK_EQ_STR(sl__config_get(c, "execution.runtime-mode"), "BATCH");
    CHECK_EQ_INT(sl__config_duration_ms(c, "execution.buffer-timeout"), 10);
    CHECK(sl__config_is_set(c, "state.backend.type"));
    CHECK(!sl__config_is_set(c, "pipeline.max-parallelism"));

    /* a second file overrides what the first set */
    CHECK_EQ_INT(sl__config_load_yaml(c, nested, err, sizeof err), 0);
    CHECK_EQ_INT(sl__config_int(c, "parallelism.default"), 6);
    CHECK_EQ_INT(sl__config_int(c, "pipeline.max-parallelism"), 256);
    CHECK_EQ_STR(sl__config_get(c, "execution.runtime-mode"), "AUTOMATIC");
    CHECK_EQ_INT(sl__config_duration_ms(c, "execution.buffer-timeout"), 1000);
    CHECK_EQ_INT(sl__config_memory(c, "taskmanager.memory.segment-size"), 65536);
    CHECK_EQ_INT(sl__config_int(c, "taskmanager.network.memory.buffers-per-channel"), 8);

    CHECK_EQ_INT(sl__config_load_yaml(c, empty, err, sizeof err), 0);
    CHECK_EQ_INT(sl__config_int(c, "parallelism.default"), 6);
    sl__config_destroy(c);
    tmp_cleanup(&t);
}

TEST(yaml_errors_name_file_line_and_key)
{
    tmpdir t;
    tmp_init(&t);
    char err[512], want[600];
    sl__config *c = sl__config_create();

    const char *seq = tmp_write(&t, "seq.yaml",
                                "parallelism.default: 2\n"
                                "execution:\n"
                                "  runtime-mode:\n"
                                "    - STREAMING\n"
                                "    - BATCH\n");
    CHECK_EQ_INT(sl__config_load_yaml(c, seq, err, sizeof err), SL_ECONFIG);
    snprintf(want, sizeof want,
             "%s:4: invalid value for execution.runtime-mode: a list is not accepted, only a "
             "single value: accepted STREAMING, BATCH, AUTOMATIC",
             seq);
    CHECK_EQ_STR(err, want);
    /* all or nothing: the valid first line was not applied */
    CHECK(!sl__config_is_set(c, "parallelism.default"));

    const char *unknown = tmp_write(&t, "unknown.yaml",
                                    "parallelism.default: 2\n"
                                    "\n"
                                    "paralelism:\n"
                                    "  default: 3\n");
    CHECK_EQ_INT(sl__config_load_yaml(c, unknown, err, sizeof err), SL_ECONFIG);
    snprintf(want, sizeof want,
             "%s:4: unknown configuration key \"paralelism.default\"; did you mean "
             "\"parallelism.default\"?",
             unknown);
    CHECK_EQ_STR(err, want);

    const char *badval = tmp_write(&t, "badval.yaml", "state:\n  backend: {type: rocksdbx}\n");
    CHECK_EQ_INT(sl__config_load_yaml(c, badval, err, sizeof err), SL_ECONFIG);
    snprintf(want, sizeof want,
             "%s:2: invalid value \"rocksdbx\" for state.backend.type: accepted hashmap, rocksdb",
             badval);
    CHECK_EQ_STR(err, want);

    const char *novalue = tmp_write(&t, "novalue.yaml", "a: 1\n");
    CHECK_EQ_INT(sl__config_load_yaml(c, novalue, err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, ":1: unknown configuration key \"a\"");

    const char *nullv = tmp_write(&t, "null.yaml", "execution.buffer-timeout:\n");
    CHECK_EQ_INT(sl__config_load_yaml(c, nullv, err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, "no value for execution.buffer-timeout: accepted a duration");

    const char *syntax = tmp_write(&t, "syntax.yaml",
                                   "parallelism.default: 2\n"
                                   "execution.runtime-mode: [BATCH\n");
    CHECK_EQ_INT(sl__config_load_yaml(c, syntax, err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, syntax);
    CHECK_CONTAINS(err, "invalid YAML");

    const char *list = tmp_write(&t, "list.yaml", "- parallelism.default: 2\n");
    CHECK_EQ_INT(sl__config_load_yaml(c, list, err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, ":1: expected a mapping of configuration keys");

    const char *twodocs =
        tmp_write(&t, "two.yaml", "parallelism.default: 2\n---\nparallelism.default: 3\n");
    CHECK_EQ_INT(sl__config_load_yaml(c, twodocs, err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, "a second YAML document");

    CHECK(!sl__config_is_set(c, "parallelism.default"));
    CHECK(!sl__config_is_set(c, "state.backend.type"));
    sl__config_destroy(c);
    tmp_cleanup(&t);
}

/* Aliases that refer to their own mapping, or expand exponentially, must end in an error. */
TEST(yaml_alias_bombs_are_bounded)
{
    tmpdir t;
    tmp_init(&t);
    char err[512];
    sl__config *c = sl__config_create();
    const char *cycle = tmp_write(&t, "cycle.yaml", "a: &x\n  b: *x\n");
    int rc = sl__config_load_yaml(c, cycle, err, sizeof err);
    CHECK(rc == SL_ECONFIG);
    const char *laughs = tmp_write(&t, "laughs.yaml",
                                   "a: &a {}\n"
                                   "b: &b {a1: *a, a2: *a, a3: *a, a4: *a, a5: *a, a6: *a}\n"
                                   "c: &c {b1: *b, b2: *b, b3: *b, b4: *b, b5: *b, b6: *b}\n"
                                   "d: &d {c1: *c, c2: *c, c3: *c, c4: *c, c5: *c, c6: *c}\n"
                                   "e: &e {d1: *d, d2: *d, d3: *d, d4: *d, d5: *d, d6: *d}\n"
                                   "f: &f {e1: *e, e2: *e, e3: *e, e4: *e, e5: *e, e6: *e}\n"
                                   "g: &g {f1: *f, f2: *f, f3: *f, f4: *f, f5: *f, f6: *f}\n");
    CHECK_EQ_INT(sl__config_load_yaml(c, laughs, err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, "more than 10000 entries");
    sl__config_destroy(c);
    tmp_cleanup(&t);
}

TEST(yaml_missing_file)
{
    char err[512];
    sl__config *c = sl__config_create();
    CHECK_EQ_INT(sl__config_load_yaml(c, "/nonexistent/sluice.yaml", err, sizeof err), SL_EIO);
    CHECK_EQ_STR(err, "cannot open configuration file /nonexistent/sluice.yaml: No such file or "
                      "directory");
    /* a directory opens but cannot be read */
    tmpdir t;
    tmp_init(&t);
    int rc = sl__config_load_yaml(c, t.dir, err, sizeof err);
    CHECK_EQ_INT(rc, SL_EIO);
    CHECK_CONTAINS(err, t.dir);
    CHECK_CONTAINS(err, strerror(EISDIR));
    tmp_cleanup(&t);
    sl__config_destroy(c);
}

/* Runs f in a child with stderr silenced; true when the child died of SIGABRT. */
static bool aborts(void (*f)(void))
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, STDERR_FILENO);
        f();
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static void read_unknown_key(void)
{
    sl__config *c = sl__config_create();
    sl__config_int(c, "parallelism.defualt");
}

static void read_int_as_duration(void)
{
    sl__config *c = sl__config_create();
    sl__config_duration_ms(c, "parallelism.default");
}

static void read_enum_as_bool(void)
{
    sl__config *c = sl__config_create();
    sl__config_bool(c, "execution.runtime-mode");
}

static void read_memory_as_int(void)
{
    sl__config *c = sl__config_create();
    sl__config_int(c, "taskmanager.memory.segment-size");
}

TEST(typed_getters_abort_on_programming_errors)
{
    CHECK(aborts(read_unknown_key));
    CHECK(aborts(read_int_as_duration));
    CHECK(aborts(read_enum_as_bool));
    CHECK(aborts(read_memory_as_int));
}

/* One pass over every operation that allocates; returns the first error. The config must
 * be unchanged by a failed operation. */
static int alloc_scenario(const char *yaml)
{
    char err[256] = "";
    sl__config *c = sl__config_create();
    if (!c)
        return SL_ENOMEM;
    int expect = 1; /* parallelism.default after the steps that succeeded */
    int rc = sl__config_set(c, "parallelism.default", "5", err, sizeof err);
    if (!rc) {
        expect = 5;
        rc = sl__config_set_pair(c, "execution.runtime-mode=batch", err, sizeof err);
    }
    if (!rc) {
        rc = sl__config_load_yaml(c, yaml, err, sizeof err);
        if (rc) /* nothing from the file was applied */
            CHECK_EQ_INT(sl__config_int(c, "pipeline.max-parallelism"), 128);
        else
            expect = 7;
    }
    if (!rc) {
        sl__config *d = sl__config_copy(c);
        if (!d) {
            rc = SL_ENOMEM;
            snprintf(err, sizeof err, "out of memory (copy has no message)");
        } else {
            CHECK_EQ_INT(sl__config_int(d, "pipeline.max-parallelism"), 64);
        }
        sl__config_destroy(d);
    }
    if (rc)
        CHECK_CONTAINS(err, "out of memory");
    CHECK_EQ_INT(sl__config_int(c, "parallelism.default"), expect);
    sl__config_destroy(c);
    return rc;
}

TEST(out_of_memory_at_every_allocation)
{
    tmpdir t;
    tmp_init(&t);
    const char *yaml = tmp_write(&t, "conf.yaml",
                                 "parallelism.default: 7\n"
                                 "pipeline:\n"
                                 "  max-parallelism: 64\n"
                                 "execution:\n"
                                 "  buffer-timeout: 1 s\n"
                                 "  runtime-mode: streaming\n");
    int failures = 0;
    long n;
    for (n = 1; n < 1000; n++) {
        sl__alloc_fail_reset(n);
        int rc = alloc_scenario(yaml);
        if (!rc)
            break;
        if (rc != SL_ENOMEM)
            FAIL_AT("allocation %ld failed with %s, want ENOMEM", n, sl_err_name(rc));
        failures++;
    }
    sl__alloc_fail_reset(0);
    CHECK(n < 1000);
    CHECK(failures >= 8);
    CHECK_EQ_INT(alloc_scenario(yaml), 0);
    tmp_cleanup(&t);
}

TEST(checkpoint_and_restart_defaults)
{
    sl__config *c = sl__config_create();
    /* no default: checkpointing off, no directories, strategy and storage chosen at run time */
    CHECK(!sl__config_get(c, "execution.checkpointing.interval"));
    CHECK(!sl__config_get(c, "state.checkpoints.dir"));
    CHECK(!sl__config_get(c, "execution.checkpointing.savepoint-dir"));
    CHECK(!sl__config_get(c, "state.checkpoint-storage"));
    CHECK(!sl__config_get(c, "restart-strategy.type"));
    CHECK(!sl__config_get(c, "restart-strategy"));
    CHECK_EQ_STR(sl__config_get(c, "execution.checkpointing.mode"), "EXACTLY_ONCE");
    CHECK_EQ_INT(sl__config_duration_ms(c, "execution.checkpointing.timeout"), 600000);
    CHECK_EQ_INT(sl__config_duration_ms(c, "execution.checkpointing.min-pause"), 0);
    CHECK_EQ_INT(sl__config_int(c, "execution.checkpointing.max-concurrent-checkpoints"), 1);
    CHECK_EQ_INT(sl__config_int(c, "execution.checkpointing.tolerable-failed-checkpoints"), 0);
    CHECK_EQ_STR(sl__config_get(c, "execution.checkpointing.externalized-checkpoint-retention"),
                 "NO_EXTERNALIZED_CHECKPOINTS");
    CHECK_EQ_INT(sl__config_int(c, "state.checkpoints.num-retained"), 1);
    CHECK_EQ_INT(sl__config_int(c, "restart-strategy.fixed-delay.attempts"), 1);
    CHECK_EQ_INT(sl__config_duration_ms(c, "restart-strategy.fixed-delay.delay"), 1000);
    CHECK_EQ_INT(sl__config_int(c, "restart-strategy.failure-rate.max-failures-per-interval"), 1);
    CHECK_EQ_INT(sl__config_duration_ms(c, "restart-strategy.failure-rate.failure-rate-interval"),
                 60000);
    CHECK_EQ_INT(sl__config_duration_ms(c, "restart-strategy.failure-rate.delay"), 1000);
    CHECK_EQ_INT(sl__config_duration_ms(c, "restart-strategy.exponential-delay.initial-backoff"),
                 1000);
    CHECK_EQ_INT(sl__config_duration_ms(c, "restart-strategy.exponential-delay.max-backoff"),
                 60000);
    CHECK(sl__config_double(c, "restart-strategy.exponential-delay.backoff-multiplier") == 1.5);
    CHECK_EQ_INT(
        sl__config_duration_ms(c, "restart-strategy.exponential-delay.reset-backoff-threshold"),
        3600000);
    CHECK(sl__config_double(c, "restart-strategy.exponential-delay.jitter-factor") == 0.1);
    CHECK_EQ_INT(
        sl__config_int(c, "restart-strategy.exponential-delay.attempts-before-reset-backoff"),
        2147483647);
    sl__config_destroy(c);
}

TEST(checkpoint_aliases_set_the_canonical_keys)
{
    char err[256];
    sl__config *c = sl__config_create();
    static const struct {
        const char *alias, *canonical, *in, *out;
    } cases[] = {
        {"execution.checkpointing.dir", "state.checkpoints.dir", "file:///data/cp", "/data/cp"},
        {"execution.checkpointing.savepoint-dir", "state.savepoints.dir", " /data/sp ", "/data/sp"},
        {"execution.checkpointing.num-retained", "state.checkpoints.num-retained", "+3", "3"},
        {"execution.checkpointing.storage", "state.checkpoint-storage", "FileSystem", "filesystem"},
        {"restart-strategy", "restart-strategy.type", "Fixed-Delay", "fixed-delay"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(!sl__config_is_set(c, cases[i].canonical));
        CHECK_EQ_INT(sl__config_set(c, cases[i].alias, cases[i].in, err, sizeof err), 0);
        CHECK(sl__config_is_set(c, cases[i].canonical));
        CHECK_EQ_STR(sl__config_get(c, cases[i].canonical), cases[i].out);
        CHECK_EQ_STR(sl__config_get(c, cases[i].alias), cases[i].out);
    }
    /* the canonical name replaces what the alias set, and the other way round */
    CHECK_EQ_INT(sl__config_set(c, "state.checkpoints.dir", "/other", err, sizeof err), 0);
    CHECK_EQ_STR(sl__config_get(c, "execution.checkpointing.dir"), "/other");
    CHECK_EQ_INT(sl__config_set(c, "restart-strategy.type", "exponentialdelay", err, sizeof err),
                 0);
    CHECK_EQ_STR(sl__config_get(c, "restart-strategy"), "exponentialdelay");
    /* enum values keep Flink's spellings, stored in the table's case */
    CHECK_EQ_INT(
        sl__config_set(c, "execution.checkpointing.mode", "at_least_once", err, sizeof err), 0);
    CHECK_EQ_STR(sl__config_get(c, "execution.checkpointing.mode"), "AT_LEAST_ONCE");
    CHECK_EQ_INT(sl__config_set(c, "execution.checkpointing.externalized-checkpoint-retention",
                                "retain_on_cancellation", err, sizeof err),
                 0);
    CHECK_EQ_STR(sl__config_get(c, "execution.checkpointing.externalized-checkpoint-retention"),
                 "RETAIN_ON_CANCELLATION");
    /* a misspelt 2.x name is suggested */
    CHECK_EQ_INT(sl__config_set(c, "execution.checkpointing.intervall", "1 s", err, sizeof err),
                 SL_ECONFIG);
    CHECK_CONTAINS(err, "did you mean \"execution.checkpointing.interval\"?");
    sl__config_destroy(c);
}

TEST(decimal_values)
{
    static const struct {
        const char *text;
        double v;
    } good[] = {{"1.5", 1.5},
                {"2", 2.0},
                {" 1.25 ", 1.25},
                {"+3.", 3.0},
                {"1.", 1.0},
                {"1000", 1000},
                {"001.50", 1.5},
                {"1.000", 1.0},
                {"999.999", 999.999},
                {"1e0", 1.0},
                {"2.5E+2", 250.0},
                {"15e-1", 1.5},
                {"1.1000000000000001", 1.1},
                {"1.0000000000000000", 1.0}};
    char err[256];
    sl__config *c = sl__config_create();
    const char *key = "restart-strategy.exponential-delay.backoff-multiplier";
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (sl__config_set(c, key, good[i].text, err, sizeof err))
            FAIL_AT("\"%s\" rejected: %s", good[i].text, err);
        if (sl__config_double(c, key) != good[i].v)
            FAIL_AT("\"%s\" read as %.17g, want %.17g", good[i].text, sl__config_double(c, key),
                    good[i].v);
    }
    /* stored as written, trimmed */
    CHECK_EQ_INT(sl__config_set(c, key, "  1.50 ", err, sizeof err), 0);
    CHECK_EQ_STR(sl__config_get(c, key), "1.50");
    const char *jkey = "restart-strategy.exponential-delay.jitter-factor";
    static const struct {
        const char *text;
        double v;
    } jitter[] = {{"0", 0},     {".5", 0.5}, {"0.1", 0.1},   {"0.05", 0.05},
                  {"1", 1},     {"-0", 0},   {"1e-5", 1e-5}, {"0.10000000000000001", 0.1},
                  {"1e-400", 0}};
    for (size_t i = 0; i < sizeof jitter / sizeof jitter[0]; i++) {
        CHECK_EQ_INT(sl__config_set(c, jkey, jitter[i].text, err, sizeof err), 0);
        CHECK(sl__config_double(c, jkey) == jitter[i].v);
    }
    static const char *bad[] = {"",
                                " ",
                                ".",
                                "+",
                                "-",
                                "e1",
                                "1e",
                                "1e+",
                                "0x1",
                                "1,5",
                                "nan",
                                "inf",
                                "1 .5",
                                "1.5.",
                                "1..5",
                                "1.5 x",
                                "--1",
                                "0.5",
                                "1001",
                                "1e4",
                                "1e999",
                                ".e1",
                                "1234567890123456"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        if (sl__config_set(c, key, bad[i], err, sizeof err) != SL_ECONFIG)
            FAIL_AT("\"%s\" accepted", bad[i]);
        CHECK_CONTAINS(err, "accepted a decimal number from 1 to 1000");
    }
    /* longer than any number needs */
    char longnum[80];
    memset(longnum, '0', sizeof longnum - 1);
    longnum[sizeof longnum - 1] = 0;
    longnum[sizeof longnum - 2] = '2';
    CHECK_EQ_INT(sl__config_set(c, key, longnum, err, sizeof err), SL_ECONFIG);
    CHECK_EQ_STR(sl__config_get(c, key), "1.50");
    sl__config_destroy(c);
}

/* A program may switch to a locale whose decimal point is a comma; values keep the '.'. */
TEST(decimal_values_under_a_comma_locale)
{
    if (!setlocale(LC_NUMERIC, "de_DE.UTF-8") && !setlocale(LC_NUMERIC, "fr_FR.UTF-8")) {
        fprintf(stderr, "skipped: no de_DE.UTF-8 or fr_FR.UTF-8 locale installed\n");
        return;
    }
    CHECK_EQ_STR(localeconv()->decimal_point, ",");
    char err[256];
    sl__config *c = sl__config_create();
    const char *key = "restart-strategy.exponential-delay.backoff-multiplier";
    CHECK_EQ_INT(sl__config_set(c, key, "1.25", err, sizeof err), 0);
    CHECK(sl__config_double(c, key) == 1.25);
    CHECK_EQ_INT(sl__config_set(c, key, "1,25", err, sizeof err), SL_ECONFIG);
    sl__config_destroy(c);
}

TEST(yaml_checkpoint_and_restart_keys)
{
    tmpdir t;
    tmp_init(&t);
    /* Flink 1.x flat keys next to 2.x nested ones */
    const char *yaml = tmp_write(&t, "conf.yaml",
                                 "restart-strategy: fixed-delay\n"
                                 "restart-strategy.fixed-delay.attempts: 3\n"
                                 "restart-strategy.fixed-delay.delay: 5 s\n"
                                 "execution:\n"
                                 "  checkpointing:\n"
                                 "    interval: 10 s\n"
                                 "    dir: file:///tmp/sluice-cp\n"
                                 "    num-retained: 2\n"
                                 "    externalized-checkpoint-retention: RETAIN_ON_CANCELLATION\n"
                                 "restart-strategy.exponential-delay.backoff-multiplier: 2.5\n");
    char err[512];
    sl__config *c = sl__config_create();
    CHECK_EQ_INT(sl__config_load_yaml(c, yaml, err, sizeof err), 0);
    CHECK_EQ_STR(sl__config_get(c, "restart-strategy.type"), "fixed-delay");
    CHECK_EQ_INT(sl__config_int(c, "restart-strategy.fixed-delay.attempts"), 3);
    CHECK_EQ_INT(sl__config_duration_ms(c, "restart-strategy.fixed-delay.delay"), 5000);
    CHECK_EQ_INT(sl__config_duration_ms(c, "execution.checkpointing.interval"), 10000);
    CHECK_EQ_STR(sl__config_get(c, "state.checkpoints.dir"), "/tmp/sluice-cp");
    CHECK_EQ_INT(sl__config_int(c, "state.checkpoints.num-retained"), 2);
    CHECK(sl__config_double(c, "restart-strategy.exponential-delay.backoff-multiplier") == 2.5);

    const char *bad = tmp_write(&t, "bad.yaml",
                                "execution.checkpointing.interval: 1 min\n"
                                "restart-strategy:\n"
                                "  exponential-delay:\n"
                                "    jitter-factor: 2\n");
    CHECK_EQ_INT(sl__config_load_yaml(c, bad, err, sizeof err), SL_ECONFIG);
    CHECK_CONTAINS(err, "bad.yaml:4: invalid value \"2\" for "
                        "restart-strategy.exponential-delay.jitter-factor: accepted a decimal "
                        "number from 0 to 1");
    /* nothing from the rejected file was applied */
    CHECK_EQ_INT(sl__config_duration_ms(c, "execution.checkpointing.interval"), 10000);
    sl__config_destroy(c);
    tmp_cleanup(&t);
}

static void read_double_as_int(void)
{
    sl__config *c = sl__config_create();
    sl__config_int(c, "restart-strategy.exponential-delay.jitter-factor");
}

static void read_int_as_double(void)
{
    sl__config *c = sl__config_create();
    sl__config_double(c, "parallelism.default");
}

static void read_unset_interval(void)
{
    sl__config *c = sl__config_create();
    sl__config_duration_ms(c, "execution.checkpointing.interval");
}

TEST(typed_getters_of_the_new_keys_abort_on_programming_errors)
{
    CHECK(aborts(read_double_as_int));
    CHECK(aborts(read_int_as_double));
    /* a key without a default must be checked with sl__config_get() before a typed read */
    CHECK(aborts(read_unset_interval));
}

int main(int argc, char **argv)
{
    return RUN_TESTS(argc, argv, key_table_is_exactly_the_documented_keys,
                     every_default_is_valid_and_every_key_documented, defaults,
                     set_and_get_canonical_and_alias, int_values_and_bounds, duration_parser,
                     memory_parser, enum_bad_value_lists_accepted, bool_string_path_values,
                     unknown_key_with_and_without_suggestion, set_pair, yaml_flat_and_nested,
                     yaml_errors_name_file_line_and_key, yaml_alias_bombs_are_bounded,
                     yaml_missing_file, typed_getters_abort_on_programming_errors,
                     out_of_memory_at_every_allocation, checkpoint_and_restart_defaults,
                     checkpoint_aliases_set_the_canonical_keys, decimal_values,
                     decimal_values_under_a_comma_locale, yaml_checkpoint_and_restart_keys,
                     typed_getters_of_the_new_keys_abort_on_programming_errors);
}

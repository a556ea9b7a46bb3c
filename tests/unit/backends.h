/*
 * backends.h - the keyed state backends the state tests run against. A test program runs
 * its whole list once per backend (hashmap, then rocksdb), or only the one named by
 * SL_TEST_BACKEND (ctest registers one test per backend that way). Backends are made
 * through the same factory as the runtime's (sl__keyed_backend_create) from a config with
 * state.backend.type set.
 *
 * RocksDB working directories go to SL_TEST_ROCKSDB_DIR when set, else /dev/shm when
 * writable (opening a database with several column families costs ~15 ms there against
 * ~100 ms on a disk that syncs, and some tests create thousands), else the default
 * ($TMPDIR or /tmp).
 *
 *   int main(int argc, char **argv) { return RUN_BACKENDS(argc, argv, test_a, test_b); }
 */
#ifndef SL_TEST_BACKENDS_H
#define SL_TEST_BACKENDS_H

#include "core/config.h"
#include "state/rocksdb/rocksdb_backend.h"
#include "state/state_int.h"
#include "test.h"

#include <unistd.h>

static const char *test_backend = "hashmap";

static inline bool on_rocksdb(void)
{
    return !strcmp(test_backend, "rocksdb");
}

static inline const char *test_rocksdb_dir(void)
{
    const char *d = getenv("SL_TEST_ROCKSDB_DIR");
    if (d && *d)
        return d;
    return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : NULL;
}

/* The config the factory reads (made once per process, so allocation countdowns that start
 * later do not see it). */
static inline sl__config *test_backend_config(void)
{
    static sl__config *c;
    if (!c) {
        char err[256];
        c = sl__config_create();
        CHECK(c);
        CHECK_EQ_INT(sl__config_set(c, "state.backend.type", test_backend, err, sizeof err), 0);
        const char *dir = test_rocksdb_dir();
        if (dir)
            CHECK_EQ_INT(sl__config_set(c, "state.backend.rocksdb.localdir", dir, err, sizeof err),
                         0);
    }
    return c;
}

/* A backend of the kind under test for [start, end) of max_parallelism; NULL (with the
 * message on stderr when not out of memory) if the factory fails. */
static inline sl__keyed_backend *test_backend_range(int max_parallelism, int start, int end,
                                                    const sl__schema *key_schema)
{
    char err[512];
    sl__keyed_backend *be = sl__keyed_backend_create(
        test_backend_config(), "unit", 0, max_parallelism, start, end, key_schema, err, sizeof err);
    if (!be && !strstr(err, "out of memory"))
        fprintf(stderr, "backend: %s\n", err);
    return be;
}

/* Live snapshots of a backend of either kind. */
static inline size_t test_live_snapshots(sl__keyed_backend *be)
{
    if (sl__backend_is_rocksdb(be)) {
        sl__rocksdb_stats s;
        sl__rocksdb_backend_stats(be, &s);
        return s.live_snapshots;
    }
    sl__heap_stats s;
    sl__heap_backend_stats(be, &s);
    return s.live_snapshots;
}

#define SKIP_ON_ROCKSDB(why)                                                                       \
    do {                                                                                           \
        if (on_rocksdb()) {                                                                        \
            fprintf(stderr, "skipped on rocksdb: %s\n", why);                                      \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define RUN_BACKENDS(argc, argv, ...)                                                              \
    __extension__({                                                                                \
        static const char *const kinds_[] = {"hashmap", "rocksdb"};                                \
        const char *only_ = getenv("SL_TEST_BACKEND");                                             \
        int rc_ = 0;                                                                               \
        for (int k_ = 0; k_ < 2; k_++) {                                                           \
            if (only_ && *only_ && strcmp(only_, kinds_[k_]))                                      \
                continue;                                                                          \
            test_backend = kinds_[k_];                                                             \
            printf("# state backend: %s\n", test_backend);                                         \
            rc_ |= RUN_TESTS(argc, argv, __VA_ARGS__);                                             \
        }                                                                                          \
        rc_;                                                                                       \
    })

#endif

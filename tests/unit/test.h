/*
 * test.h - a small unit-test harness: assertions that print both values, and a runner that
 * runs each test in its own forked process with a timeout, so a crash or hang fails one test
 * and the rest still run. Ends with "N passed, N failed".
 *
 *   TEST(name) { CHECK_EQ_INT(1 + 1, 2); }
 *   int main(int argc, char **argv) { return RUN_TESTS(argc, argv, name, other); }
 */
#ifndef SL_TEST_H
#define SL_TEST_H

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST(name) static void name(void)

#define FAIL_AT(...)                                                                               \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        exit(1);                                                                                   \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            FAIL_AT("CHECK(%s) failed", #cond);                                                    \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                      \
        if (va_ != vb_)                                                                            \
            FAIL_AT("%s == %s failed: %lld != %lld", #a, #b, va_, vb_);                            \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *sa_ = (a), *sb_ = (b);                                                         \
        if (!sa_ || !sb_ || strcmp(sa_, sb_))                                                      \
            FAIL_AT("%s == %s failed: \"%s\" != \"%s\"", #a, #b, sa_ ? sa_ : "(null)",             \
                    sb_ ? sb_ : "(null)");                                                         \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                                                \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            FAIL_AT("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_);                     \
    } while (0)

typedef struct sl_test_case {
    const char *name;
    void (*fn)(void);
} sl_test_case;

/* A case still running after this many seconds has hung. Sanitized builds run several
 * times slower: two RocksDB cases side by side under ASan took close to a minute on two
 * loaded cores. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SL_TEST_ALARM_S 180
#else
#define SL_TEST_ALARM_S 60
#endif

static inline int sl_test_run(int argc, char **argv, const sl_test_case *cases, int n)
{
    int passed = 0, failed = 0;
    const char *only = argc > 1 ? argv[1] : NULL;
    for (int i = 0; i < n; i++) {
        if (only && strcmp(only, cases[i].name))
            continue;
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(SL_TEST_ALARM_S);
            cases[i].fn();
            exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            printf("ok   %s\n", cases[i].name);
            passed++;
        } else {
            printf("FAIL %s (%s %d)\n", cases[i].name, WIFSIGNALED(st) ? "signal" : "exit",
                   WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            failed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define SL__TC(fn) {#fn, fn},
#define SL__TC_LIST(...) SL__TC_EXPAND(__VA_ARGS__)
#define RUN_TESTS(argc, argv, ...)                                                                 \
    __extension__({                                                                                \
        static void (*const fns_[])(void) = {__VA_ARGS__};                                         \
        static const char names_[] = #__VA_ARGS__;                                                 \
        sl_test_case cases_[sizeof fns_ / sizeof fns_[0]];                                         \
        char nb_[sizeof names_];                                                                   \
        memcpy(nb_, names_, sizeof names_);                                                        \
        char *save_ = NULL, *tok_ = strtok_r(nb_, ", \t\n", &save_);                               \
        for (size_t i_ = 0; i_ < sizeof fns_ / sizeof fns_[0]; i_++) {                             \
            cases_[i_].name = tok_;                                                                \
            cases_[i_].fn = fns_[i_];                                                              \
            tok_ = strtok_r(NULL, ", \t\n", &save_);                                               \
        }                                                                                          \
        sl_test_run((argc), (argv), cases_, (int)(sizeof fns_ / sizeof fns_[0]));                  \
    })

#endif

/*
 * config.c - the table of configuration keys, value validation, and loading from YAML files
 * and "key=value" pairs.
 *
 * Every key is one row of keys[] below; adding a key is adding a row (and a line in
 * docs/config.md). A config holds one text value per row, in table order, NULL meaning "not
 * set, use the default". Values are validated and normalised when set (enum values in the
 * table's case, integers in plain decimal, booleans in lower case, paths without file://;
 * durations, memory sizes and decimal numbers as written, trimmed), so the typed getters only
 * re-parse text that is known to be good.
 *
 * Loading a YAML file is all or nothing: the file is applied to a copy which replaces the
 * config only when every entry was accepted, so a failed --conf leaves the config as it was.
 */
#include "core/config.h"
#include "core/alloc.h"
#include "core/log.h"
#include "sluice.h"

#include <ctype.h>
#include <errno.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define KIB INT64_C(1024)
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)
#define TIB (1024 * GIB)
#define SEC_MS INT64_C(1000)
#define MIN_MS (60 * SEC_MS)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)
#define YEAR_MS (365 * DAY_MS)

/* The keys, canonical (Flink 1.x) name first. Bounds are in the unit the getter returns:
 * INT as is, DURATION in milliseconds, MEMORY in bytes. An ENUM's values are '|'-separated
 * and stored in the case written here. DOUBLE bounds are whole numbers. Keep the default
 * valid: a test checks every row. A key without a default (.def NULL) reads as NULL until set;
 * the code that reads it decides what "not set" means (checkpointing off, no directory). */
static const sl__config_key keys[] = {
    {
        .name = "parallelism.default",
        .type = SL_CFG_INT,
        .def = "1",
        .min = 1,
        .max = 32768,
        .doc = "Parallelism of operators that set none (-p N; a value set in code wins).",
    },
    {
        .name = "pipeline.max-parallelism",
        .type = SL_CFG_INT,
        .def = "128",
        .min = 1,
        .max = 32768,
        .doc = "Upper bound of any operator's parallelism: the number of key groups keyed "
               "state is split into.",
    },
    {
        .name = "execution.runtime-mode",
        .type = SL_CFG_ENUM,
        .def = "STREAMING",
        .values = "STREAMING|BATCH|AUTOMATIC",
        .doc = "STREAMING emits results as records arrive; BATCH emits final results when "
               "the bounded input ends; AUTOMATIC picks BATCH when every source is bounded.",
    },
    {
        .name = "execution.buffer-timeout",
        .alias = "execution.buffer-timeout.interval",
        .type = SL_CFG_DURATION,
        .def = "100 ms",
        .min = 0,
        .max = HOUR_MS,
        .doc = "How long a partly filled output buffer may wait before it is sent (0 sends "
               "every record at once: lowest latency, lowest throughput).",
    },
    {
        .name = "taskmanager.memory.segment-size",
        .type = SL_CFG_MEMORY,
        .def = "32kb",
        .min = 4 * KIB,
        .max = 16 * MIB,
        .doc = "Size of a network buffer, the unit in which records travel between subtasks.",
    },
    {
        .name = "taskmanager.network.memory.buffers-per-channel",
        .type = SL_CFG_INT,
        .def = "16",
        .min = 1,
        .max = 1024,
        .doc = "Buffers (credits) per channel: how far a sender may run ahead of its "
               "receiver before backpressure stops it.",
    },
    {
        .name = "state.backend.type",
        .alias = "state.backend",
        .type = SL_CFG_ENUM,
        .def = "hashmap",
        .values = "hashmap|rocksdb",
        .doc = "Where keyed state lives: hashmap keeps it in memory (fastest; state must fit in "
               "memory); rocksdb keeps it in a RocksDB database per keyed operator subtask, in "
               "memory and on local disk (for state larger than memory, slower to read and "
               "write).",
    },
    {
        .name = "state.backend.incremental",
        .type = SL_CFG_BOOL,
        .def = "false",
        .doc = "rocksdb: true makes checkpoints incremental: a checkpoint is a RocksDB "
               "checkpoint of the database, and only the SST files no retained checkpoint has "
               "yet go to <job-id>/shared/. false: every checkpoint holds all state by key group "
               "(also what the hashmap backend always writes).",
    },
    {
        .name = "state.backend.rocksdb.localdir",
        .type = SL_CFG_PATH,
        .doc = "rocksdb: directory under which each keyed operator subtask creates its working "
               "directory (removed when the subtask ends); created if missing. Not set: "
               "$TMPDIR, else /tmp.",
    },
    {
        .name = "state.backend.rocksdb.memory.managed",
        .type = SL_CFG_BOOL,
        .def = "true",
        .doc = "rocksdb: true bounds each instance's memory by a shared block cache and "
               "write-buffer budget (memory.fixed-per-subtask); false leaves RocksDB's defaults "
               "per state (memory grows with the number of states).",
    },
    {
        .name = "state.backend.rocksdb.memory.fixed-per-subtask",
        .alias = "state.backend.rocksdb.memory.fixed-per-slot",
        .type = SL_CFG_MEMORY,
        .def = "64mb",
        .min = 4 * MIB,
        .max = TIB,
        .doc = "rocksdb, managed memory: the block cache plus write buffers of one keyed "
               "operator subtask's instance.",
    },
    {
        .name = "state.backend.rocksdb.memory.write-buffer-ratio",
        .type = SL_CFG_DOUBLE,
        .def = "0.5",
        .min = 0,
        .max = 1,
        .doc = "rocksdb, managed memory: the share of fixed-per-subtask for write buffers "
               "(memtables); the rest is block cache. Each side gets at least 1 MiB.",
    },
    {
        .name = "execution.checkpointing.interval",
        .type = SL_CFG_DURATION,
        .min = 10,
        .max = YEAR_MS,
        .doc = "Interval at which checkpoints are triggered. Not set (the default): "
               "checkpointing is disabled.",
    },
    {
        .name = "execution.checkpointing.mode",
        .type = SL_CFG_ENUM,
        .def = "EXACTLY_ONCE",
        .values = "EXACTLY_ONCE|AT_LEAST_ONCE",
        .doc = "EXACTLY_ONCE aligns barriers at tasks with several inputs; AT_LEAST_ONCE does "
               "not (lower latency, records may be counted twice after a restore).",
    },
    {
        .name = "execution.checkpointing.timeout",
        .type = SL_CFG_DURATION,
        .def = "10 min",
        .min = 10,
        .max = YEAR_MS,
        .doc = "A checkpoint not complete after this long is aborted and counted as failed.",
    },
    {
        .name = "execution.checkpointing.min-pause",
        .type = SL_CFG_DURATION,
        .def = "0 ms",
        .min = 0,
        .max = YEAR_MS,
        .doc = "Least time between the end of one checkpoint and the start of the next.",
    },
    {
        .name = "execution.checkpointing.max-concurrent-checkpoints",
        .type = SL_CFG_INT,
        .def = "1",
        .min = 1,
        .max = 1000,
        .doc = "How many checkpoints may be in progress at once; no new one is triggered "
               "while this many are.",
    },
    {
        .name = "execution.checkpointing.tolerable-failed-checkpoints",
        .type = SL_CFG_INT,
        .def = "0",
        .min = 0,
        .max = INT32_MAX,
        .doc = "Consecutive failed checkpoints tolerated; one more fails the job and hands it "
               "to the restart strategy.",
    },
    {
        .name = "execution.checkpointing.externalized-checkpoint-retention",
        .type = SL_CFG_ENUM,
        .def = "NO_EXTERNALIZED_CHECKPOINTS",
        .values = "DELETE_ON_CANCELLATION|RETAIN_ON_CANCELLATION|NO_EXTERNALIZED_CHECKPOINTS",
        .doc = "Whether completed checkpoints outlive a cancelled job: RETAIN_ON_CANCELLATION "
               "keeps them for a later -s; the others delete them on cancellation.",
    },
    {
        .name = "state.checkpoints.dir",
        .alias = "execution.checkpointing.dir",
        .type = SL_CFG_PATH,
        .doc = "Directory for checkpoints: <dir>/<job-id>/chk-<N>/. No default.",
    },
    {
        .name = "state.savepoints.dir",
        .alias = "execution.checkpointing.savepoint-dir",
        .type = SL_CFG_PATH,
        .doc = "Default directory for savepoints. No default.",
    },
    {
        .name = "state.checkpoints.num-retained",
        .alias = "execution.checkpointing.num-retained",
        .type = SL_CFG_INT,
        .def = "1",
        .min = 1,
        .max = 10000,
        .doc = "Completed checkpoints kept; older ones are deleted when a new one completes.",
    },
    {
        .name = "state.checkpoint-storage",
        .alias = "execution.checkpointing.storage",
        .type = SL_CFG_ENUM,
        .values = "jobmanager|filesystem",
        .doc = "Where checkpoints go: jobmanager keeps them in memory, filesystem writes them "
               "to state.checkpoints.dir. Not set: filesystem when a checkpoint directory is "
               "set, else jobmanager.",
    },
    {
        .name = "restart-strategy.type",
        .alias = "restart-strategy",
        .type = SL_CFG_ENUM,
        .values = "none|off|disable|fixed-delay|fixeddelay|failure-rate|failurerate|"
                  "exponential-delay|exponentialdelay",
        .doc = "What happens when the job fails. Not set: none without checkpointing; with "
               "checkpointing fixed-delay with unlimited attempts and a 1 s delay.",
    },
    {
        .name = "restart-strategy.fixed-delay.attempts",
        .type = SL_CFG_INT,
        .def = "1",
        .min = 0,
        .max = INT32_MAX,
        .doc = "fixed-delay: restarts before the job is declared failed.",
    },
    {
        .name = "restart-strategy.fixed-delay.delay",
        .type = SL_CFG_DURATION,
        .def = "1 s",
        .min = 0,
        .max = YEAR_MS,
        .doc = "fixed-delay: wait between a failure and the restart.",
    },
    {
        .name = "restart-strategy.failure-rate.max-failures-per-interval",
        .type = SL_CFG_INT,
        .def = "1",
        .min = 1,
        .max = 10000,
        .doc = "failure-rate: failures tolerated within one interval; one more fails the job.",
    },
    {
        .name = "restart-strategy.failure-rate.failure-rate-interval",
        .type = SL_CFG_DURATION,
        .def = "1 min",
        .min = 1,
        .max = YEAR_MS,
        .doc = "failure-rate: the sliding window in which failures are counted.",
    },
    {
        .name = "restart-strategy.failure-rate.delay",
        .type = SL_CFG_DURATION,
        .def = "1 s",
        .min = 0,
        .max = YEAR_MS,
        .doc = "failure-rate: wait between a failure and the restart.",
    },
    {
        .name = "restart-strategy.exponential-delay.initial-backoff",
        .type = SL_CFG_DURATION,
        .def = "1 s",
        .min = 1,
        .max = YEAR_MS,
        .doc = "exponential-delay: wait before the first restart (and after a reset).",
    },
    {
        .name = "restart-strategy.exponential-delay.max-backoff",
        .type = SL_CFG_DURATION,
        .def = "1 min",
        .min = 1,
        .max = YEAR_MS,
        .doc = "exponential-delay: the longest wait between restarts.",
    },
    {
        .name = "restart-strategy.exponential-delay.backoff-multiplier",
        .type = SL_CFG_DOUBLE,
        .def = "1.5",
        .min = 1,
        .max = 1000,
        .doc = "exponential-delay: the wait is multiplied by this after every failure, up to "
               "max-backoff.",
    },
    {
        .name = "restart-strategy.exponential-delay.reset-backoff-threshold",
        .type = SL_CFG_DURATION,
        .def = "1 h",
        .min = 1,
        .max = YEAR_MS,
        .doc = "exponential-delay: after running this long without a failure, the wait and the "
               "attempt count start over.",
    },
    {
        .name = "restart-strategy.exponential-delay.jitter-factor",
        .type = SL_CFG_DOUBLE,
        .def = "0.1",
        .min = 0,
        .max = 1,
        .doc = "exponential-delay: a random amount up to this fraction of the wait is added "
               "or subtracted, so jobs that failed together do not restart together.",
    },
    {
        .name = "restart-strategy.exponential-delay.attempts-before-reset-backoff",
        .type = SL_CFG_INT,
        .def = "2147483647",
        .min = 1,
        .max = INT32_MAX,
        .doc = "exponential-delay: restarts before the job is declared failed, counted since "
               "the last reset (2147483647: unlimited).",
    },
    {.name = NULL},
};

#define NKEYS (sizeof keys / sizeof keys[0] - 1)

struct sl__config {
    char *values[NKEYS]; /* validated text, in table order; NULL: not set, default applies */
};

/* Limits for YAML files: nesting depth and entries visited (aliases can make a small file
 * expand to a huge tree; no sane configuration comes near either). */
#define YAML_MAX_DEPTH 32
#define YAML_MAX_ENTRIES 10000
/* Values longer than this are shortened in error messages. */
#define MSG_VALUE_MAX 100

/* A unit of durations or memory sizes: its '|'-separated labels and what one of it is worth. */
typedef struct unit {
    const char *label;
    int64_t factor;
} unit;

static const unit duration_units[] = {
    {"ms|milli|millis|millisecond|milliseconds", 1},
    {"s|sec|secs|second|seconds", SEC_MS},
    {"min|minute|minutes", MIN_MS},
    {"h|hour|hours", HOUR_MS},
    {"d|day|days", DAY_MS},
    {NULL, 0},
};

static const unit memory_units[] = {
    {"b|bytes", 1},          {"k|kb|kibibytes", KIB}, {"m|mb|mebibytes", MIB},
    {"g|gb|gibibytes", GIB}, {"t|tb|tebibytes", TIB}, {NULL, 0},
};

static void errf(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes a message into the caller's buffer; a NULL buffer or zero cap discards it. */
static void errf(char *err, size_t cap, const char *fmt, ...)
{
    if (!err || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* Puts "path:line: " in front of the message already in err, keeping what fits. */
static void err_prefix(char *err, size_t cap, const char *path, size_t line)
{
    if (!err || !cap)
        return;
    int n = snprintf(NULL, 0, "%s:%zu: ", path, line);
    if (n < 0)
        return;
    size_t plen = (size_t)n;
    if (plen + 1 >= cap) {
        snprintf(err, cap, "%s:%zu: ", path, line);
        return;
    }
    size_t mlen = strnlen(err, cap - 1);
    if (mlen > cap - 1 - plen)
        mlen = cap - 1 - plen;
    memmove(err + plen, err, mlen);
    err[plen + mlen] = 0;
    char saved = err[plen];
    snprintf(err, plen + 1, "%s:%zu: ", path, line);
    err[plen] = saved;
}

static int find_key(const char *name)
{
    if (!name)
        return -1;
    for (size_t i = 0; i < NKEYS; i++) {
        if (!strcmp(keys[i].name, name) || (keys[i].alias && !strcmp(keys[i].alias, name)))
            return (int)i;
    }
    return -1;
}

static const char *type_name(sl__config_type t)
{
    switch (t) {
    case SL_CFG_INT:
        return "integer";
    case SL_CFG_BOOL:
        return "boolean";
    case SL_CFG_DURATION:
        return "duration";
    case SL_CFG_MEMORY:
        return "memory size";
    case SL_CFG_ENUM:
        return "enumeration";
    case SL_CFG_STRING:
        return "string";
    case SL_CFG_PATH:
        return "path";
    case SL_CFG_DOUBLE:
        return "decimal number";
    }
    return "?";
}

/* ---------------------------------------------------------------------------------------
 * Suggestions for unknown keys
 * ------------------------------------------------------------------------------------- */

#define SUGGEST_MAX_DISTANCE 3
#define SUGGEST_MAX_LEN 128

/* Optimal string alignment distance (Levenshtein plus adjacent transpositions), case
 * folded. Strings longer than SUGGEST_MAX_LEN count as far apart. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > SUGGEST_MAX_LEN || lb > SUGGEST_MAX_LEN)
        return SIZE_MAX;
    size_t rows[3][SUGGEST_MAX_LEN + 1];
    size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            size_t cost = ca != cb;
            size_t d = prev[j] + 1;
            if (cur[j - 1] + 1 < d)
                d = cur[j - 1] + 1;
            if (prev[j - 1] + cost < d)
                d = prev[j - 1] + cost;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && prev2[j - 2] + 1 < d)
                d = prev2[j - 2] + 1;
            cur[j] = d;
        }
        size_t *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

static size_t common_prefix(const char *a, const char *b)
{
    size_t n = 0;
    while (a[n] && a[n] == b[n])
        n++;
    return n;
}

/* The known name (canonical or alias) closest to an unknown one: within edit distance 3, or
 * else sharing a prefix of at least three quarters of the known name ("parallelism.default.x"
 * or "execution.buffer-timeout.ms"). NULL when nothing is close. */
static const char *suggest(const char *name)
{
    const char *best = NULL;
    size_t best_d = SUGGEST_MAX_DISTANCE + 1;
    for (size_t i = 0; i < NKEYS; i++) {
        const char *cand[2] = {keys[i].name, keys[i].alias};
        for (int k = 0; k < 2; k++) {
            if (!cand[k])
                continue;
            size_t d = edit_distance(name, cand[k]);
            if (d < best_d) {
                best_d = d;
                best = cand[k];
            }
        }
    }
    if (best)
        return best;
    size_t best_p = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        const char *cand[2] = {keys[i].name, keys[i].alias};
        for (int k = 0; k < 2; k++) {
            if (!cand[k])
                continue;
            size_t p = common_prefix(name, cand[k]);
            if (p >= 8 && 4 * p >= 3 * strlen(cand[k]) && p > best_p) {
                best_p = p;
                best = cand[k];
            }
        }
    }
    return best;
}

static int unknown_key(const char *name, char *err, size_t cap)
{
    const char *s = suggest(name);
    if (s)
        errf(err, cap, "unknown configuration key \"%s\"; did you mean \"%s\"?", name, s);
    else
        errf(err, cap, "unknown configuration key \"%s\"", name);
    return SL_ECONFIG;
}

/* ---------------------------------------------------------------------------------------
 * Parsers
 * ------------------------------------------------------------------------------------- */

static const char *skip_space(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    return s;
}

/* Trims white space at both ends of [*b, *e). */
static void trim(const char **b, const char **e)
{
    while (*b < *e && isspace((unsigned char)**b))
        (*b)++;
    while (*e > *b && isspace((unsigned char)(*e)[-1]))
        (*e)--;
}

/* The entry of the '|'-separated list that matches [b, e) case-insensitively: its start in
 * the list and its length in *len. NULL when none does. */
static const char *enum_match(const char *values, const char *b, const char *e, size_t *len)
{
    size_t n = (size_t)(e - b);
    const char *v = values;
    while (v && *v) {
        const char *bar = strchr(v, '|');
        size_t vl = bar ? (size_t)(bar - v) : strlen(v);
        if (vl == n && !strncasecmp(v, b, n)) {
            *len = vl;
            return v;
        }
        v = bar ? bar + 1 : NULL;
    }
    return NULL;
}

/* Flink's "<digits> [unit]" syntax: a non-negative decimal, optional white space, an
 * optional case-insensitive unit label from units (none: factor 1). White space around the
 * whole is ignored. Fails on a missing number, sign, fraction, unknown unit or overflow. */
static int parse_scaled(const char *s, const unit *units, int64_t *out)
{
    if (!s)
        return -1;
    const char *p = skip_space(s);
    if (!isdigit((unsigned char)*p))
        return -1;
    int64_t v = 0;
    for (; isdigit((unsigned char)*p); p++) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    const char *lb = skip_space(p), *le = lb + strlen(lb);
    trim(&lb, &le);
    int64_t factor = 1;
    if (le > lb) {
        factor = 0;
        size_t len;
        for (const unit *u = units; u->label && !factor; u++) {
            if (enum_match(u->label, lb, le, &len))
                factor = u->factor;
        }
        if (!factor)
            return -1;
    }
    if (v > INT64_MAX / factor)
        return -1;
    *out = v * factor;
    return 0;
}

int sl__parse_duration_ms(const char *s, int64_t *ms)
{
    return parse_scaled(s, duration_units, ms);
}

int sl__parse_memory(const char *s, int64_t *bytes)
{
    return parse_scaled(s, memory_units, bytes);
}

/* A decimal integer with an optional sign, white space around it ignored. */
static int parse_int(const char *s, int64_t *out)
{
    const char *p = skip_space(s);
    bool neg = false;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    if (!isdigit((unsigned char)*p))
        return -1;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (limit - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (*skip_space(p))
        return -1;
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return 0;
}

/* true/false, case-insensitive, white space around ignored. */
static int parse_bool(const char *s, bool *out)
{
    const char *b = s, *e = s + strlen(s);
    trim(&b, &e);
    size_t n = (size_t)(e - b);
    if (n == 4 && !strncasecmp(b, "true", 4))
        *out = true;
    else if (n == 5 && !strncasecmp(b, "false", 5))
        *out = false;
    else
        return -1;
    return 0;
}

/* Longest decimal number accepted, white space excluded: room for the 17 significant digits
 * and exponent of "%.17g" and then some. */
#define DECIMAL_MAX_LEN 64

/* A decimal number as Flink (Java) writes one, white space around it ignored: an optional
 * sign, digits with an optional fraction ("2", "1.5", ".5", "3."), an optional exponent
 * ("1e-3", "2.5E+2"). Not hex, "inf" or "nan". The syntax is checked here and the value
 * converted by strtod, with the '.' swapped for the locale's decimal point, so a program that
 * switched to a decimal-comma locale reads "1.5" the same. */
static int parse_double(const char *s, double *out)
{
    const char *b = s, *e = s + strlen(s);
    trim(&b, &e);
    const char *p = b;
    if (p < e && (*p == '+' || *p == '-'))
        p++;
    size_t mantissa = 0;
    while (p < e && isdigit((unsigned char)*p))
        p++, mantissa++;
    const char *point = NULL;
    if (p < e && *p == '.') {
        point = p++;
        while (p < e && isdigit((unsigned char)*p))
            p++, mantissa++;
    }
    if (!mantissa)
        return -1;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p == e || !isdigit((unsigned char)*p))
            return -1;
        while (p < e && isdigit((unsigned char)*p))
            p++;
    }
    size_t n = (size_t)(e - b);
    if (p != e || n > DECIMAL_MAX_LEN)
        return -1;
    char buf[DECIMAL_MAX_LEN + 8];
    const char *dp = localeconv()->decimal_point;
    size_t dl = dp && *dp ? strlen(dp) : 1;
    if (point && dl > 7)
        return -1; /* no locale has such a decimal point; keep buf bounded */
    size_t o = 0;
    for (const char *q = b; q < e; q++) {
        if (q == point && dp && *dp) {
            memcpy(buf + o, dp, dl);
            o += dl;
        } else {
            buf[o++] = *q;
        }
    }
    buf[o] = 0;
    errno = 0;
    char *end;
    double v = strtod(buf, &end);
    if (*end || (errno == ERANGE && (v > 1 || v < -1)))
        return -1; /* overflow; an underflow to (nearly) 0 is fine */
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------------------- */

/* A duration in the largest unit that divides it exactly: "0 ms", "250 ms", "1 h". */
static void format_duration(int64_t ms, char *buf, size_t cap)
{
    static const unit units[] = {{"d", DAY_MS}, {"h", HOUR_MS}, {"min", MIN_MS},
                                 {"s", SEC_MS}, {"ms", 1},      {NULL, 0}};
    const unit *u = units;
    while (ms && ms % u->factor)
        u++;
    if (!ms)
        u = &units[4];
    snprintf(buf, cap, "%lld %s", (long long)(ms / u->factor), u->label);
}

/* A memory size in the largest binary unit that divides it exactly: "4kb", "16mb". */
static void format_memory(int64_t bytes, char *buf, size_t cap)
{
    static const unit units[] = {{"tb", TIB}, {"gb", GIB}, {"mb", MIB},
                                 {"kb", KIB}, {"b", 1},    {NULL, 0}};
    const unit *u = units;
    while (bytes && bytes % u->factor)
        u++;
    if (!bytes)
        u = &units[4];
    snprintf(buf, cap, "%lld%s", (long long)(bytes / u->factor), u->label);
}

/* What the key accepts, for error messages: "an integer from 1 to 32768". */
static void describe(const sl__config_key *k, char *buf, size_t cap)
{
    char lo[32], hi[32];
    switch (k->type) {
    case SL_CFG_INT:
        snprintf(buf, cap, "an integer from %lld to %lld", (long long)k->min, (long long)k->max);
        return;
    case SL_CFG_BOOL:
        snprintf(buf, cap, "true or false");
        return;
    case SL_CFG_DURATION:
        format_duration(k->min, lo, sizeof lo);
        format_duration(k->max, hi, sizeof hi);
        snprintf(buf, cap, "a duration such as \"100 ms\", \"1 s\", \"2 min\" from %s to %s", lo,
                 hi);
        return;
    case SL_CFG_MEMORY:
        format_memory(k->min, lo, sizeof lo);
        format_memory(k->max, hi, sizeof hi);
        snprintf(buf, cap, "a memory size such as \"32kb\" or \"1 mb\" from %s to %s", lo, hi);
        return;
    case SL_CFG_ENUM: {
        size_t o = 0;
        buf[0] = 0;
        for (const char *v = k->values; v && *v && o + 1 < cap; v++) {
            if (*v == '|') {
                int n = snprintf(buf + o, cap - o, ", ");
                o += n > 0 ? (size_t)n : 0;
            } else {
                buf[o++] = *v;
                buf[o] = 0;
            }
        }
        if (o >= cap)
            buf[cap - 1] = 0;
        return;
    }
    case SL_CFG_STRING:
        snprintf(buf, cap, "any text");
        return;
    case SL_CFG_PATH:
        snprintf(buf, cap, "a local path or a file:// URI");
        return;
    case SL_CFG_DOUBLE:
        snprintf(buf, cap, "a decimal number from %lld to %lld", (long long)k->min,
                 (long long)k->max);
        return;
    }
    snprintf(buf, cap, "?");
}

static int bad_value(const sl__config_key *k, const char *name, const char *value, char *err,
                     size_t cap)
{
    char acc[256];
    describe(k, acc, sizeof acc);
    size_t n = strlen(value);
    errf(err, cap, "invalid value \"%.*s%s\" for %s: accepted %s",
         (int)(n > MSG_VALUE_MAX ? MSG_VALUE_MAX : n), value, n > MSG_VALUE_MAX ? "..." : "", name,
         acc);
    return SL_ECONFIG;
}

static int no_memory(char *err, size_t cap, const char *what)
{
    errf(err, cap, "out of memory %s", what);
    return SL_ENOMEM;
}

int sl__config_validate(const sl__config_key *k, const char *name, const char *value, char **out,
                        char *err, size_t cap)
{
    *out = NULL;
    const char *b = value, *e = value + strlen(value);
    trim(&b, &e);
    size_t n = (size_t)(e - b);
    int64_t v;
    char num[32];
    const char *src = b; /* what to store: n bytes from src */
    switch (k->type) {
    case SL_CFG_INT:
        if (parse_int(value, &v) || v < k->min || v > k->max)
            return bad_value(k, name, value, err, cap);
        snprintf(num, sizeof num, "%lld", (long long)v);
        src = num;
        n = strlen(num);
        break;
    case SL_CFG_BOOL: {
        bool x;
        if (parse_bool(value, &x))
            return bad_value(k, name, value, err, cap);
        src = x ? "true" : "false";
        n = strlen(src);
        break;
    }
    case SL_CFG_DURATION:
        if (sl__parse_duration_ms(value, &v) || v < k->min || v > k->max)
            return bad_value(k, name, value, err, cap);
        break;
    case SL_CFG_MEMORY:
        if (sl__parse_memory(value, &v) || v < k->min || v > k->max)
            return bad_value(k, name, value, err, cap);
        break;
    case SL_CFG_ENUM:
        src = enum_match(k->values, b, e, &n);
        if (!src)
            return bad_value(k, name, value, err, cap);
        break;
    case SL_CFG_STRING:
        src = value;
        n = strlen(value);
        break;
    case SL_CFG_PATH:
        if (n >= 7 && !strncasecmp(b, "file://", 7)) {
            src += 7;
            n -= 7;
        } else if (memmem(b, n, "://", 3)) {
            return bad_value(k, name, value, err, cap);
        }
        if (!n)
            return bad_value(k, name, value, err, cap);
        break;
    case SL_CFG_DOUBLE: {
        double x;
        if (parse_double(value, &x) || x < (double)k->min || x > (double)k->max)
            return bad_value(k, name, value, err, cap);
        break;
    }
    }
    *out = sl__strndup(src, n);
    if (!*out)
        return no_memory(err, cap, "storing a configuration value");
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * The config object
 * ------------------------------------------------------------------------------------- */

const sl__config_key *sl__config_keys(void)
{
    return keys;
}

sl__config *sl__config_create(void)
{
    return sl__calloc(1, sizeof(sl__config));
}

sl__config *sl__config_copy(const sl__config *c)
{
    if (!c)
        return NULL;
    sl__config *d = sl__calloc(1, sizeof *d);
    if (!d)
        return NULL;
    for (size_t i = 0; i < NKEYS; i++) {
        if (c->values[i] && !(d->values[i] = sl__strdup(c->values[i]))) {
            sl__config_destroy(d);
            return NULL;
        }
    }
    return d;
}

void sl__config_destroy(sl__config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < NKEYS; i++)
        sl__free(c->values[i]);
    sl__free(c);
}

int sl__config_set(sl__config *c, const char *key, const char *value, char *err, size_t cap)
{
    if (!c || !key || !value) {
        errf(err, cap, "configuration key and value must not be NULL");
        return SL_EINVAL;
    }
    int i = find_key(key);
    if (i < 0)
        return unknown_key(key, err, cap);
    char *v;
    int rc = sl__config_validate(&keys[i], key, value, &v, err, cap);
    if (rc)
        return rc;
    sl__free(c->values[i]);
    c->values[i] = v;
    return 0;
}

int sl__config_set_pair(sl__config *c, const char *pair, char *err, size_t cap)
{
    if (!c || !pair) {
        errf(err, cap, "configuration pair must not be NULL");
        return SL_EINVAL;
    }
    const char *eq = strchr(pair, '=');
    if (!eq) {
        errf(err, cap, "invalid option \"-D %s\": expected -D key=value", pair);
        return SL_ECONFIG;
    }
    char *buf = sl__strdup(pair);
    if (!buf)
        return no_memory(err, cap, "parsing a -D option");
    char *key = buf, *value = buf + (eq - pair) + 1;
    const char *kb = key, *ke = buf + (eq - pair), *vb = value, *ve = value + strlen(value);
    trim(&kb, &ke);
    trim(&vb, &ve);
    int rc;
    if (ke == kb) {
        errf(err, cap, "missing key in \"-D %s\": expected -D key=value", pair);
        rc = SL_ECONFIG;
    } else {
        buf[ke - buf] = 0;
        buf[ve - buf] = 0;
        rc = sl__config_set(c, kb, vb, err, cap);
    }
    sl__free(buf);
    return rc;
}

bool sl__config_is_set(const sl__config *c, const char *key)
{
    int i = find_key(key);
    return c && i >= 0 && c->values[i];
}

const char *sl__config_get(const sl__config *c, const char *key)
{
    int i = find_key(key);
    if (!c || i < 0)
        return NULL;
    return c->values[i] ? c->values[i] : keys[i].def;
}

/* The value of a key the program reads with a typed getter; any mismatch is a bug. */
static const char *typed_value(const sl__config *c, const char *key, sl__config_type type)
{
    int i = find_key(key);
    if (!c)
        sl__log_fatal("config: reading %s from a NULL config", key ? key : "(null)");
    if (i < 0)
        sl__log_fatal("config: the program reads unknown key \"%s\"", key ? key : "(null)");
    if (keys[i].type != type)
        sl__log_fatal("config: key %s is a %s, read as a %s", key, type_name(keys[i].type),
                      type_name(type));
    const char *v = c->values[i] ? c->values[i] : keys[i].def;
    if (!v)
        sl__log_fatal("config: key %s has no value and no default", key);
    return v;
}

int64_t sl__config_int(const sl__config *c, const char *key)
{
    int64_t v;
    if (parse_int(typed_value(c, key, SL_CFG_INT), &v))
        sl__log_fatal("config: key %s holds an invalid integer", key);
    return v;
}

bool sl__config_bool(const sl__config *c, const char *key)
{
    bool v;
    if (parse_bool(typed_value(c, key, SL_CFG_BOOL), &v))
        sl__log_fatal("config: key %s holds an invalid boolean", key);
    return v;
}

int64_t sl__config_duration_ms(const sl__config *c, const char *key)
{
    int64_t v;
    if (sl__parse_duration_ms(typed_value(c, key, SL_CFG_DURATION), &v))
        sl__log_fatal("config: key %s holds an invalid duration", key);
    return v;
}

int64_t sl__config_memory(const sl__config *c, const char *key)
{
    int64_t v;
    if (sl__parse_memory(typed_value(c, key, SL_CFG_MEMORY), &v))
        sl__log_fatal("config: key %s holds an invalid memory size", key);
    return v;
}

double sl__config_double(const sl__config *c, const char *key)
{
    double v;
    if (parse_double(typed_value(c, key, SL_CFG_DOUBLE), &v))
        sl__log_fatal("config: key %s holds an invalid decimal number", key);
    return v;
}

/* ---------------------------------------------------------------------------------------
 * YAML files
 * ------------------------------------------------------------------------------------- */

typedef struct yaml_walk {
    sl__config *c;
    yaml_document_t *doc;
    const char *path;
    char *err;
    size_t cap;
    size_t entries;
} yaml_walk;

static size_t line_of(const yaml_node_t *n)
{
    return n->start_mark.line + 1;
}

/* Translates a libyaml parser failure; the only place libyaml's error convention is read. */
static int yaml_failure(const yaml_parser_t *p, FILE *f, const char *path, char *err, size_t cap)
{
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        errf(err, cap, "out of memory reading %s", path);
        return SL_ENOMEM;
    case YAML_READER_ERROR:
        if (ferror(f)) {
            errf(err, cap, "cannot read %s: %s", path, strerror(errno));
            return SL_EIO;
        }
        errf(err, cap, "%s: %s at byte %zu", path, p->problem ? p->problem : "unreadable input",
             p->problem_offset);
        return SL_ECONFIG;
    default:
        if (p->context)
            errf(err, cap, "%s:%zu: invalid YAML: %s (%s, line %zu)", path,
                 p->problem_mark.line + 1, p->problem ? p->problem : "syntax error", p->context,
                 p->context_mark.line + 1);
        else
            errf(err, cap, "%s:%zu: invalid YAML: %s", path, p->problem_mark.line + 1,
                 p->problem ? p->problem : "syntax error");
        return SL_ECONFIG;
    }
}

/* Plain "", "~" and "null" are YAML's null: "key:" with nothing after it. */
static bool is_null_scalar(const yaml_node_t *n)
{
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static bool has_nul(const yaml_node_t *n)
{
    return strlen((const char *)n->data.scalar.value) != n->data.scalar.length;
}

static int walk_value(yaml_walk *w, const char *key, const yaml_node_t *kn, const yaml_node_t *vn,
                      int depth);

static int walk_mapping(yaml_walk *w, const char *prefix, const yaml_node_t *map, int depth)
{
    if (depth > YAML_MAX_DEPTH) {
        errf(w->err, w->cap, "%s:%zu: mappings nested more than %d deep", w->path, line_of(map),
             YAML_MAX_DEPTH);
        return SL_ECONFIG;
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(w->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(w->doc, p->value);
        if (!kn || !vn)
            continue;
        if (++w->entries > YAML_MAX_ENTRIES) {
            errf(w->err, w->cap, "%s:%zu: more than %d entries (counting what aliases expand to)",
                 w->path, line_of(kn), YAML_MAX_ENTRIES);
            return SL_ECONFIG;
        }
        if (kn->type != YAML_SCALAR_NODE || !kn->data.scalar.length || has_nul(kn)) {
            errf(w->err, w->cap, "%s:%zu: a configuration key must be non-empty text%s%s", w->path,
                 line_of(kn), prefix ? " under " : "", prefix ? prefix : "");
            return SL_ECONFIG;
        }
        const char *k = (const char *)kn->data.scalar.value;
        char *full;
        if (prefix) {
            size_t pl = strlen(prefix), kl = strlen(k);
            full = sl__malloc(pl + 1 + kl + 1);
            if (full) {
                memcpy(full, prefix, pl);
                full[pl] = '.';
                memcpy(full + pl + 1, k, kl + 1);
            }
        } else {
            full = sl__strdup(k);
        }
        if (!full)
            return no_memory(w->err, w->cap, "reading a configuration file");
        int rc = walk_value(w, full, kn, vn, depth);
        sl__free(full);
        if (rc)
            return rc;
    }
    return 0;
}

static int walk_value(yaml_walk *w, const char *key, const yaml_node_t *kn, const yaml_node_t *vn,
                      int depth)
{
    if (vn->type == YAML_MAPPING_NODE)
        return walk_mapping(w, key, vn, depth + 1);
    int i = find_key(key);
    if (i < 0) {
        int rc = unknown_key(key, w->err, w->cap);
        err_prefix(w->err, w->cap, w->path, line_of(kn));
        return rc;
    }
    char acc[256];
    describe(&keys[i], acc, sizeof acc);
    if (vn->type != YAML_SCALAR_NODE) {
        errf(w->err, w->cap,
             "%s:%zu: invalid value for %s: a list is not accepted, only a single "
             "value: accepted %s",
             w->path, line_of(vn), key, acc);
        return SL_ECONFIG;
    }
    if (is_null_scalar(vn)) {
        errf(w->err, w->cap, "%s:%zu: no value for %s: accepted %s", w->path, line_of(vn), key,
             acc);
        return SL_ECONFIG;
    }
    if (has_nul(vn)) {
        errf(w->err, w->cap, "%s:%zu: invalid value for %s: contains a NUL character", w->path,
             line_of(vn), key);
        return SL_ECONFIG;
    }
    int rc = sl__config_set(w->c, key, (const char *)vn->data.scalar.value, w->err, w->cap);
    if (rc)
        err_prefix(w->err, w->cap, w->path, line_of(vn));
    return rc;
}

/* Applies the document's root mapping to w->c. */
static int walk_document(yaml_walk *w)
{
    yaml_node_t *root = yaml_document_get_root_node(w->doc);
    if (!root)
        return 0; /* an empty file */
    if (root->type == YAML_SCALAR_NODE && is_null_scalar(root))
        return 0; /* only comments */
    if (root->type != YAML_MAPPING_NODE) {
        errf(w->err, w->cap, "%s:%zu: expected a mapping of configuration keys to values", w->path,
             line_of(root));
        return SL_ECONFIG;
    }
    return walk_mapping(w, NULL, root, 0);
}

int sl__config_load_yaml(sl__config *c, const char *path, char *err, size_t cap)
{
    if (!c || !path) {
        errf(err, cap, "configuration and file path must not be NULL");
        return SL_EINVAL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        errf(err, cap, "cannot open configuration file %s: %s", path, strerror(errno));
        return SL_EIO;
    }
    sl__config *tmp = sl__config_copy(c);
    if (!tmp) {
        fclose(f);
        return no_memory(err, cap, "reading a configuration file");
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        sl__config_destroy(tmp);
        return no_memory(err, cap, "reading a configuration file");
    }
    yaml_parser_set_input_file(&parser, f);

    int rc = 0;
    yaml_document_t doc;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_failure(&parser, f, path, err, cap);
    } else {
        yaml_walk w = {.c = tmp, .doc = &doc, .path = path, .err = err, .cap = cap};
        rc = walk_document(&w);
        yaml_document_delete(&doc);
        /* A second document would be silently ignored; say so instead. */
        if (!rc && !yaml_parser_load(&parser, &doc)) {
            rc = yaml_failure(&parser, f, path, err, cap);
        } else if (!rc) {
            yaml_node_t *root = yaml_document_get_root_node(&doc);
            if (root) {
                errf(err, cap,
                     "%s:%zu: a second YAML document; expected a single mapping of "
                     "configuration keys",
                     path, line_of(root));
                rc = SL_ECONFIG;
            }
            yaml_document_delete(&doc);
        }
    }
    yaml_parser_delete(&parser);
    fclose(f);

    if (!rc) {
        sl__config t = *c;
        *c = *tmp;
        *tmp = t;
    }
    sl__config_destroy(tmp);
    return rc;
}

/*
 * env.c - the execution environment: command-line options shared by every job program,
 * configuration, the first-error rule of the builder, sl_execute and sl_job_main.
 */
#include "api/env.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/log.h"
#include "runtime/runtime.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

typedef struct owned {
    void *p;
    void (*free_fn)(void *);
} owned;

struct sl_env {
    sl__config *config;

    sl__node **nodes;
    int nnodes;
    sl_stream *streams;
    owned *owned;
    int nowned;
    struct {
        int (*fn)(void *, bool, char *, size_t);
        void *arg;
    } finish[8];
    int nfinish;

    char *restore_path; /* -s */
    bool allow_non_restored;

    int err_code;
    char err[1024];
    bool executed;
    bool started; /* the runtime ran: errors after this are job failures */
    int signal;   /* the signal that cancelled sl_execute, or 0 */
};

static const char usage_text[] =
    "Sluice job options (before the job's own arguments, or ended by --):\n"
    "  -p N               default parallelism (parallelism.default)\n"
    "  -D key=value       set a configuration key (see docs/config.md); repeatable\n"
    "  --conf FILE        load a YAML configuration file\n"
    "  -s PATH            restore from a checkpoint (its chk-<N> directory or _metadata)\n"
    "  --allow-non-restored-state\n"
    "                     with -s: skip state of operators this job no longer has\n"
    "  -h, --help         show this help\n";

static int set_err(char *buf, size_t cap, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int set_err(char *buf, size_t cap, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return code;
}

sl_env *sl_env_create(int argc, char **argv, int *job_argc, char ***job_argv, int *err_out,
                      char *errbuf, size_t errcap)
{
    int dummy_code;
    if (!err_out)
        err_out = &dummy_code;
    *err_out = 0;
    if (errcap)
        errbuf[0] = 0;
    sl_env *env = sl__calloc(1, sizeof *env);
    if (!env || !(env->config = sl__config_create())) {
        sl__free(env);
        *err_out = set_err(errbuf, errcap, SL_ENOMEM, "out of memory creating the environment");
        return NULL;
    }
    int rc = 0;
    const char *dir = getenv("SLUICE_CONF_DIR");
    if (dir && *dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/sluice.yaml", dir);
        rc = sl__config_load_yaml(env->config, path, errbuf, errcap);
    }
    int i = 1;
    while (rc == 0 && i < argc) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            sl_env_destroy(env);
            *err_out = 0;
            return NULL;
        } else if (!strcmp(a, "--allow-non-restored-state")) {
            env->allow_non_restored = true;
            i++;
        } else if (!strcmp(a, "-s")) {
            if (i + 1 >= argc) {
                rc = set_err(errbuf, errcap, SL_ECONFIG, "option -s needs a checkpoint path\n%s",
                             usage_text);
                break;
            }
            sl__free(env->restore_path);
            env->restore_path = sl__strdup(argv[i + 1]);
            if (!env->restore_path)
                rc = set_err(errbuf, errcap, SL_ENOMEM, "out of memory");
            i += 2;
        } else if (!strcmp(a, "-p") || !strcmp(a, "-D") || !strcmp(a, "--conf")) {
            if (i + 1 >= argc) {
                rc = set_err(errbuf, errcap, SL_ECONFIG, "option %s needs a value\n%s", a,
                             usage_text);
                break;
            }
            const char *v = argv[i + 1];
            if (!strcmp(a, "-p"))
                rc = sl__config_set(env->config, "parallelism.default", v, errbuf, errcap);
            else if (!strcmp(a, "-D"))
                rc = sl__config_set_pair(env->config, v, errbuf, errcap);
            else
                rc = sl__config_load_yaml(env->config, v, errbuf, errcap);
            i += 2;
        } else if (!strncmp(a, "-D", 2) && a[2]) {
            rc = sl__config_set_pair(env->config, a + 2, errbuf, errcap);
            i++;
        } else if (!strncmp(a, "-p", 2) && a[2]) {
            rc = sl__config_set(env->config, "parallelism.default", a + 2, errbuf, errcap);
            i++;
        } else if (a[0] == '-' && a[1] == '-' && a[2]) {
            rc = set_err(errbuf, errcap, SL_ECONFIG, "unknown option %s\n%s", a, usage_text);
        } else {
            break;
        }
    }
    if (rc < 0) {
        *err_out = rc;
        sl_env_destroy(env);
        return NULL;
    }
    if (job_argc && job_argv) {
        /* the job sees its program name followed by its own arguments */
        int n = argc - i;
        argv[i - 1] = argv[0];
        *job_argc = n + 1;
        *job_argv = argv + i - 1;
    }
    return env;
}

void sl_env_destroy(sl_env *env)
{
    if (!env)
        return;
    for (int i = env->nowned - 1; i >= 0; i--)
        env->owned[i].free_fn(env->owned[i].p);
    sl__free(env->owned);
    for (int i = 0; i < env->nnodes; i++) {
        sl__node *n = env->nodes[i];
        sl__free(n->name);
        sl__free(n->uid);
        sl__schema_destroy(n->schema);
        sl__free(n->inputs);
        sl__free(n->bcast.name);
        sl__free(n->bcast.key_schema);
        sl__free(n->bcast.value_schema);
        sl__free(n);
    }
    sl__free(env->nodes);
    sl_stream *s = env->streams;
    while (s) {
        sl_stream *next = s->next_alloc;
        sl__free(s);
        s = next;
    }
    sl__config_destroy(env->config);
    sl__free(env->restore_path);
    sl__free(env);
}

int sl_env_fail(sl_env *env, int code, const char *fmt, ...)
{
    if (!env->err_code) {
        env->err_code = code ? code : SL_EINVAL;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(env->err, sizeof env->err, fmt, ap);
        va_end(ap);
    }
    return code;
}

bool sl__env_failed(const sl_env *env)
{
    return env->err_code != 0;
}

const sl__config *sl__env_config(const sl_env *env)
{
    return env->config;
}

int sl__env_on_finish(sl_env *env, int (*fn)(void *arg, bool ok, char *err, size_t cap), void *arg)
{
    if (env->nfinish == (int)(sizeof env->finish / sizeof env->finish[0]))
        return sl_env_fail(env, SL_ENOMEM, "too many connectors that commit at the end of a job");
    env->finish[env->nfinish].fn = fn;
    env->finish[env->nfinish++].arg = arg;
    return 0;
}

void *sl__env_own(sl_env *env, void *p, void (*free_fn)(void *))
{
    owned *o = sl__realloc(env->owned, sizeof *o * (size_t)(env->nowned + 1));
    if (!o) {
        free_fn(p);
        sl_env_fail(env, SL_ENOMEM, "out of memory");
        return NULL;
    }
    env->owned = o;
    o[env->nowned++] = (owned){p, free_fn};
    return p;
}

int sl_env_set(sl_env *env, const char *key, const char *value)
{
    char err[512];
    int rc = sl__config_set(env->config, key, value, err, sizeof err);
    if (rc < 0)
        sl_env_fail(env, rc, "%s", err);
    return rc;
}

int sl_env_get(const sl_env *env, const char *key, char *buf, size_t cap)
{
    const char *v = sl__config_get(env->config, key);
    if (!v)
        return SL_ENOTFOUND;
    snprintf(buf, cap, "%s", v);
    return 0;
}

/* Values set in code are written into the configuration after the command line was read,
 * so they win over -p and -D, as in Flink. */
static void set_int(sl_env *env, const char *key, const char *what, int v)
{
    char text[32];
    snprintf(text, sizeof text, "%d", v);
    char err[512];
    int rc = sl__config_set(env->config, key, text, err, sizeof err);
    if (rc < 0)
        sl_env_fail(env, rc, "%s: %s", what, err);
}

void sl_env_set_parallelism(sl_env *env, int parallelism)
{
    set_int(env, "parallelism.default", "sl_env_set_parallelism", parallelism);
}

void sl_env_set_max_parallelism(sl_env *env, int max_parallelism)
{
    set_int(env, "pipeline.max-parallelism", "sl_env_set_max_parallelism", max_parallelism);
}

void sl_env_set_runtime_mode(sl_env *env, sl_runtime_mode mode)
{
    static const char *const names[] = {"STREAMING", "BATCH", "AUTOMATIC"};
    char err[512];
    if ((unsigned)mode > SL_AUTOMATIC) {
        sl_env_fail(env, SL_EINVAL,
                    "sl_env_set_runtime_mode: mode %d is not one of SL_STREAMING, "
                    "SL_BATCH, SL_AUTOMATIC",
                    (int)mode);
        return;
    }
    int rc = sl__config_set(env->config, "execution.runtime-mode", names[mode], err, sizeof err);
    if (rc < 0)
        sl_env_fail(env, rc, "sl_env_set_runtime_mode: %s", err);
}

static void set_key(sl_env *env, const char *what, const char *key, const char *value)
{
    char err[512];
    int rc = sl__config_set(env->config, key, value, err, sizeof err);
    if (rc < 0)
        sl_env_fail(env, rc, "%s: %s", what, err);
}

static void set_ms(sl_env *env, const char *what, const char *key, int64_t ms)
{
    char v[40];
    snprintf(v, sizeof v, "%lld ms", (long long)ms);
    if (ms < 0) {
        sl_env_fail(env, SL_EINVAL, "%s: %lld ms is not accepted: durations are not negative", what,
                    (long long)ms);
        return;
    }
    set_key(env, what, key, v);
}

void sl_env_enable_checkpointing(sl_env *env, int64_t interval_ms, sl_checkpointing_mode mode)
{
    set_ms(env, "sl_env_enable_checkpointing", "execution.checkpointing.interval", interval_ms);
    set_key(env, "sl_env_enable_checkpointing", "execution.checkpointing.mode",
            mode == SL_AT_LEAST_ONCE ? "AT_LEAST_ONCE" : "EXACTLY_ONCE");
}

void sl_env_set_checkpoint_dir(sl_env *env, const char *dir)
{
    if (!dir) {
        set_key(env, "sl_env_set_checkpoint_dir", "state.checkpoint-storage", "jobmanager");
        return;
    }
    set_key(env, "sl_env_set_checkpoint_dir", "state.checkpoints.dir", dir);
    set_key(env, "sl_env_set_checkpoint_dir", "state.checkpoint-storage", "filesystem");
}

void sl_env_set_min_pause_between_checkpoints(sl_env *env, int64_t ms)
{
    set_ms(env, "sl_env_set_min_pause_between_checkpoints", "execution.checkpointing.min-pause",
           ms);
}

void sl_env_set_checkpoint_timeout(sl_env *env, int64_t ms)
{
    set_ms(env, "sl_env_set_checkpoint_timeout", "execution.checkpointing.timeout", ms);
}

void sl_env_set_max_concurrent_checkpoints(sl_env *env, int n)
{
    set_int(env, "execution.checkpointing.max-concurrent-checkpoints",
            "sl_env_set_max_concurrent_checkpoints", n);
}

void sl_env_set_tolerable_checkpoint_failures(sl_env *env, int n)
{
    set_int(env, "execution.checkpointing.tolerable-failed-checkpoints",
            "sl_env_set_tolerable_checkpoint_failures", n);
}

void sl_env_set_externalized_checkpoints(sl_env *env, sl_externalized_cleanup cleanup)
{
    static const char *const names[] = {"NO_EXTERNALIZED_CHECKPOINTS", "DELETE_ON_CANCELLATION",
                                        "RETAIN_ON_CANCELLATION"};
    if ((unsigned)cleanup > SL_RETAIN_ON_CANCELLATION) {
        sl_env_fail(env, SL_EINVAL,
                    "sl_env_set_externalized_checkpoints: %d is not one of "
                    "SL_NO_EXTERNALIZED_CHECKPOINTS, SL_DELETE_ON_CANCELLATION, "
                    "SL_RETAIN_ON_CANCELLATION",
                    (int)cleanup);
        return;
    }
    set_key(env, "sl_env_set_externalized_checkpoints",
            "execution.checkpointing.externalized-checkpoint-retention", names[cleanup]);
}

void sl_env_set_num_retained_checkpoints(sl_env *env, int n)
{
    set_int(env, "state.checkpoints.num-retained", "sl_env_set_num_retained_checkpoints", n);
}

void sl_env_set_restart_none(sl_env *env)
{
    set_key(env, "sl_env_set_restart_none", "restart-strategy.type", "none");
}

void sl_env_set_restart_fixed_delay(sl_env *env, int attempts, int64_t delay_ms)
{
    const char *w = "sl_env_set_restart_fixed_delay";
    set_key(env, w, "restart-strategy.type", "fixed-delay");
    set_int(env, "restart-strategy.fixed-delay.attempts", w, attempts);
    set_ms(env, w, "restart-strategy.fixed-delay.delay", delay_ms);
}

void sl_env_set_restart_failure_rate(sl_env *env, int max_failures, int64_t interval_ms,
                                     int64_t delay_ms)
{
    const char *w = "sl_env_set_restart_failure_rate";
    set_key(env, w, "restart-strategy.type", "failure-rate");
    set_int(env, "restart-strategy.failure-rate.max-failures-per-interval", w, max_failures);
    set_ms(env, w, "restart-strategy.failure-rate.failure-rate-interval", interval_ms);
    set_ms(env, w, "restart-strategy.failure-rate.delay", delay_ms);
}

void sl_env_set_restart_exponential_delay(sl_env *env, int64_t initial_ms, int64_t max_ms,
                                          double multiplier, int64_t reset_threshold_ms,
                                          double jitter)
{
    const char *w = "sl_env_set_restart_exponential_delay";
    char v[64];
    set_key(env, w, "restart-strategy.type", "exponential-delay");
    set_ms(env, w, "restart-strategy.exponential-delay.initial-backoff", initial_ms);
    set_ms(env, w, "restart-strategy.exponential-delay.max-backoff", max_ms);
    snprintf(v, sizeof v, "%.17g", multiplier);
    set_key(env, w, "restart-strategy.exponential-delay.backoff-multiplier", v);
    set_ms(env, w, "restart-strategy.exponential-delay.reset-backoff-threshold",
           reset_threshold_ms);
    snprintf(v, sizeof v, "%.17g", jitter);
    set_key(env, w, "restart-strategy.exponential-delay.jitter-factor", v);
}

int sl_env_error_code(const sl_env *env)
{
    return env->err_code;
}

const char *sl_env_error(const sl_env *env)
{
    return env->err;
}

/* ---- nodes and streams, for the builder ---------------------------------------------- */

sl__node *sl__env_add_node(sl_env *env, sl__node_kind kind, const char *name, sl__schema *schema);
sl_stream *sl__env_add_stream(sl_env *env, sl__node *node);

sl__node *sl__env_add_node(sl_env *env, sl__node_kind kind, const char *name, sl__schema *schema)
{
    sl__node *n = sl__calloc(1, sizeof *n);
    sl__node **nodes = sl__realloc(env->nodes, sizeof *nodes * (size_t)(env->nnodes + 1));
    if (!n || !nodes || !(n->name = sl__strdup(name))) {
        if (nodes)
            env->nodes = nodes;
        sl__free(n);
        sl__schema_destroy(schema);
        sl_env_fail(env, SL_ENOMEM, "out of memory adding operator '%s'", name);
        return NULL;
    }
    env->nodes = nodes;
    n->id = env->nnodes;
    n->kind = kind;
    n->schema = schema;
    env->nodes[env->nnodes++] = n;
    return n;
}

sl_stream *sl__env_add_stream(sl_env *env, sl__node *node)
{
    sl_stream *s = sl__calloc(1, sizeof *s);
    if (!s) {
        sl_env_fail(env, SL_ENOMEM, "out of memory");
        return NULL;
    }
    s->env = env;
    s->node = node;
    s->part = SL_PART_FORWARD;
    s->key.field = -1;
    s->next_alloc = env->streams;
    env->streams = s;
    return s;
}

/* ---- execution ------------------------------------------------------------------------ */

static int run_finish_hooks(void *arg, bool ok, char *err, size_t cap)
{
    sl_env *env = arg;
    int rc = 0;
    for (int i = 0; i < env->nfinish; i++) {
        char why[1024] = "";
        int r = env->finish[i].fn(env->finish[i].arg, ok, why, sizeof why);
        if (r < 0 && rc == 0) {
            rc = r;
            snprintf(err, cap, "%s", why);
        }
    }
    return rc;
}

/* Gives every operator a uid: its own, or one derived from its position and kind, which
 * stays the same as long as the program builds the same graph. Duplicate uids are an error
 * (state would be filed under one name twice). */
static int assign_uids(sl_env *env)
{
    static const char *const kinds[] = {
        "source",      "map",   "flat-map",          "filter", "process", "reduce",
        "aggregation", "union", "broadcast-connect", "sink"};
    int derived = 0;
    for (int i = 0; i < env->nnodes; i++) {
        sl__node *n = env->nodes[i];
        if (n->uid)
            continue;
        char uid[64];
        snprintf(uid, sizeof uid, "auto-%d-%s", n->id, kinds[n->kind]);
        n->uid = sl__strdup(uid);
        if (!n->uid)
            return sl_env_fail(env, SL_ENOMEM, "out of memory");
        derived++;
    }
    for (int i = 0; i < env->nnodes; i++)
        for (int k = 0; k < i; k++)
            if (!strcmp(env->nodes[i]->uid, env->nodes[k]->uid))
                return sl_env_fail(env, SL_EINVAL,
                                   "operators '%s' and '%s' have the same uid '%s'; uids must "
                                   "be unique within a job",
                                   env->nodes[k]->name, env->nodes[i]->name, env->nodes[i]->uid);
    if (derived && env->restore_path)
        SL_WARN("event=derived_uids count=%d hint=\"operators without sl_set_uid get a uid from "
                "their position (auto-N-kind); set one on each stateful operator so its state "
                "can be restored after the job changes\"",
                derived);
    return 0;
}

int sl_execute(sl_env *env, const char *job_name)
{
    if (env->err_code)
        return env->err_code;
    if (env->executed)
        return sl_env_fail(env, SL_EINVAL, "sl_execute: this environment has already run a job");
    env->executed = true;
    if (env->nnodes == 0)
        return sl_env_fail(env, SL_EINVAL, "no operators defined: add a source before sl_execute");

    sl__job_graph g = {.nodes = env->nodes,
                       .nnodes = env->nnodes,
                       .config = env->config,
                       .name = job_name ? job_name : "sluice job"};
    g.max_parallelism = (int)sl__config_int(env->config, "pipeline.max-parallelism");
    g.default_parallelism = (int)sl__config_int(env->config, "parallelism.default");
    const char *m = sl__config_get(env->config, "execution.runtime-mode");
    sl_runtime_mode mode = !strcmp(m, "BATCH")       ? SL_BATCH
                           : !strcmp(m, "AUTOMATIC") ? SL_AUTOMATIC
                                                     : SL_STREAMING;
    for (int i = 0; i < env->nnodes; i++) {
        const sl__node *n = env->nodes[i];
        int p = n->parallelism_fixed ? 1
                : n->parallelism > 0 ? n->parallelism
                                     : g.default_parallelism;
        if (p > g.max_parallelism)
            return sl_env_fail(env, SL_ECONFIG,
                               "operator '%s' has parallelism %d, above the max parallelism %d: "
                               "lower it or raise pipeline.max-parallelism",
                               n->name, p, g.max_parallelism);
    }
    if (mode == SL_AUTOMATIC) {
        mode = SL_BATCH;
        for (int i = 0; i < env->nnodes; i++)
            if (env->nodes[i]->kind == SL_NODE_SOURCE && !env->nodes[i]->bounded)
                mode = SL_STREAMING;
    }
    if (mode == SL_BATCH) {
        for (int i = 0; i < env->nnodes; i++)
            if (env->nodes[i]->kind == SL_NODE_SOURCE && !env->nodes[i]->bounded)
                return sl_env_fail(env, SL_ECONFIG,
                                   "execution.runtime-mode is BATCH but source '%s' is unbounded; "
                                   "use STREAMING or AUTOMATIC",
                                   env->nodes[i]->name);
    }
    g.mode = mode;
    char job_id[33];
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < sizeof rnd; i++, t = t * 6364136223846793005ull + 1)
            rnd[i] = (unsigned char)(t >> 56);
    }
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(job_id + 2 * i, 3, "%02x", rnd[i]);
    g.job_id = job_id;
    g.restore_path = env->restore_path;
    g.allow_non_restored = env->allow_non_restored;
    g.on_end = run_finish_hooks;
    g.on_end_arg = env;
    int rc = assign_uids(env);
    if (rc < 0)
        return rc;
    int sig = 0;
    env->started = true;
    rc = sl__runtime_run(&g, env->err, sizeof env->err, &sig);
    env->signal = sig;
    if (rc)
        env->err_code = rc;
    return rc;
}

int sl_job_main(int argc, char **argv, sl_job_fn job)
{
    char err[1024];
    int code = 0, jargc = 0;
    char **jargv = NULL;
    const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    sl_env *env = sl_env_create(argc, argv, &jargc, &jargv, &code, err, sizeof err);
    if (!env) {
        if (code == 0)
            return 0;
        fprintf(stderr, "%s: %s\n", prog, err);
        return 2;
    }
    int rc = job(env, jargc, jargv);
    if (rc == 0 && env->err_code)
        rc = env->err_code;
    int exit_code = 0;
    if (rc == SL_ECANCELED) {
        fprintf(stderr, "%s: %s\n", prog, env->err[0] ? env->err : "job cancelled");
        exit_code = env->signal ? 128 + env->signal : 1;
    } else if (rc) {
        fprintf(stderr, "%s: %s\n", prog, env->err[0] ? env->err : sl_strerror(rc));
        exit_code =
            (rc == SL_ECONFIG || rc == SL_ESCHEMA || rc == SL_EINVAL) && !env->started ? 2 : 1;
    }
    sl_env_destroy(env);
    return exit_code;
}

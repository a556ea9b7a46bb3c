/*
 * runtime.c - turns a job graph into an execution graph and runs it: chains, tasks,
 * channels and gates, one thread per task, completion, failure and cancellation.
 *
 * Chaining: a node joins its input's chain when it has exactly one input, the edge is
 * FORWARD and both have the same parallelism (a FORWARD edge across a parallelism change
 * becomes REBALANCE, as in Flink). Every other edge becomes a set of channels, one per
 * (producer subtask, consumer subtask) pair (only the same-index pair for FORWARD).
 *
 * A task runs its chain: a source head is polled in a loop; any other head reads its input
 * gate. When a source ends or every input channel has ended, the task ends its operators'
 * input in chain order (so BATCH aggregations emit their final rows), flushes, sends
 * END_OF_PARTITION downstream and closes its operators.
 */
#include "runtime/runtime.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/log.h"
#include "runtime/task.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t sl__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void wake_all(sl__job *job)
{
    for (int i = 0; i < job->ngates; i++)
        sl__gate_wake(job->gates[i]);
}

void sl__job_fail(sl__job *job, int code, const char *fmt, ...)
{
    pthread_mutex_lock(&job->mu);
    if (!job->err_code) {
        job->err_code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(job->err, sizeof job->err, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&job->mu);
    atomic_store(&job->cancelled, true);
    wake_all(job);
}

void sl__job_cancel(sl__job *job, int code, const char *msg)
{
    sl__job_fail(job, code, "%s", msg);
}

int sl__task_flush(sl__task *t)
{
    for (int i = 0; i < t->nwriters; i++) {
        sl__writer *w = t->writers[i];
        for (int c = 0; c < w->nchans; c++)
            if (w->chans[c] && sl__channel_flush(w->chans[c]) < 0)
                return SL_ECANCELED;
    }
    t->dirty = false;
    return 0;
}

/* Flushes when output has waited longer than the buffer timeout. */
static void maybe_flush(sl__task *t)
{
    if (!t->dirty)
        return;
    int64_t now = sl__now_ns();
    if (!t->dirty_since_ns) {
        t->dirty_since_ns = now;
        return;
    }
    if (now - t->dirty_since_ns >= t->job->buffer_timeout_ns) {
        sl__task_flush(t);
        t->dirty_since_ns = 0;
    }
}

static void idle_flush(void *arg)
{
    sl__task *t = arg;
    sl__task_flush(t);
    t->dirty_since_ns = 0;
}

static int send_end(sl__task *t)
{
    for (int i = 0; i < t->nwriters; i++) {
        sl__writer *w = t->writers[i];
        for (int c = 0; c < w->nchans; c++)
            if (w->chans[c] && sl__channel_send_event(w->chans[c], SL_EV_END_OF_PARTITION, 0) < 0)
                return SL_ECANCELED;
    }
    return 0;
}

static bool cancelled(sl__task *t)
{
    return atomic_load_explicit(&t->job->cancelled, memory_order_relaxed);
}

static int run_source(sl__task *t)
{
    sl_ctx *head = t->ops[0];
    int (*poll)(sl_ctx *) = head->node->fn.source.poll;
    for (;;) {
        if (cancelled(t))
            return SL_ECANCELED;
        int rc = poll(head);
        sl__state_end_call(head->kb, head->os);
        sl__arena_reset(&t->arena);
        if (rc == SL_SOURCE_END)
            return 0;
        if (rc < 0)
            return sl__op_failed(head, "poll", rc);
        if (rc == SL_SOURCE_IDLE)
            idle_flush(t);
        else
            maybe_flush(t);
    }
}

/* Deserializes and processes every record of a buffer. */
static int process_buffer(sl__task *t, int input, const sl__buffer *b)
{
    const sl__schema *s = t->in_schema[input];
    sl_value *row = t->in_row[input];
    const uint8_t *p = b->data, *end = b->data + b->len;
    while (p < end) {
        p = sl__row_read(s, p, end, row);
        if (!p) {
            sl__job_fail(t->job, SL_EFORMAT,
                         "operator '%s' (subtask %d/%d): malformed record in input buffer",
                         t->ops[0]->node->name, t->subtask + 1, t->ops[0]->parallelism);
            return SL_EFORMAT;
        }
        int rc = sl__op_process(t->ops[0], input, row);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int run_inputs(sl__task *t)
{
    int total = 0, ended = 0;
    for (int i = 0; i < t->ninputs; i++)
        total += t->chans_per_input[i];
    while (ended < total) {
        sl__entry e;
        sl__channel *c = sl__gate_next(t->gate, &e, idle_flush, t);
        if (!c)
            return SL_ECANCELED;
        if (e.kind == SL_EV_DATA) {
            int rc = process_buffer(t, c->input, e.buf);
            sl__gate_release(t->gate, c, e.buf);
            sl__arena_reset(&t->arena);
            if (rc < 0)
                return rc;
            maybe_flush(t);
        } else if (e.kind == SL_EV_END_OF_PARTITION) {
            ended++;
            t->ended_per_input[c->input]++;
        }
    }
    return 0;
}

static void *task_main(void *arg)
{
    sl__task *t = arg;
    sl__job *job = t->job;
    int rc = 0;
    /* open from the tail of the chain to the head, as Flink does, so an operator is open
     * before anything can reach it */
    for (int i = t->nops - 1; i >= 0 && rc == 0; i--) {
        rc = sl__op_open(t->ops[i]);
        sl__state_end_call(t->ops[i]->kb, t->ops[i]->os);
    }
    if (rc == 0)
        rc = t->gate ? run_inputs(t) : run_source(t);
    for (int i = 0; i < t->nops && rc == 0; i++) {
        rc = sl__op_end_input(t->ops[i]);
        sl__state_end_call(t->ops[i]->kb, t->ops[i]->os);
        sl__arena_reset(&t->arena);
    }
    if (rc == 0)
        rc = sl__task_flush(t);
    if (rc == 0)
        rc = send_end(t);
    for (int i = 0; i < t->nops; i++)
        sl__op_close(t->ops[i]);
    if (rc < 0 && !atomic_load(&job->cancelled)) {
        /* a failure nobody described: name the task */
        sl__job_fail(job, rc, "operator '%s' (subtask %d/%d) failed: %s", t->ops[0]->node->name,
                     t->subtask + 1, t->ops[0]->parallelism, sl_strerror(rc));
    }
    pthread_mutex_lock(&job->mu);
    job->running--;
    pthread_cond_signal(&job->done);
    pthread_mutex_unlock(&job->mu);
    return NULL;
}

/* ---- building the execution graph -------------------------------------------------- */

typedef struct build {
    sl__job *job;
    const sl__job_graph *g;
    int *par;       /* by node id */
    int *head;      /* chain head node id, by node id */
    sl_ctx ***ctxs; /* [node id][subtask] */
    sl__task ***tasks_by_head;
} build;

static int node_parallelism(const sl__job_graph *g, const sl__node *n)
{
    if (n->parallelism_fixed)
        return 1;
    return n->parallelism > 0 ? n->parallelism : g->default_parallelism;
}

static sl__partitioner effective_part(const build *b, const sl__node *n, const sl__edge *e)
{
    if (e->part == SL_PART_FORWARD && b->par[e->from->id] != b->par[n->id])
        return SL_PART_REBALANCE;
    return e->part;
}

static void add_output(sl_ctx *ctx, sl__output o)
{
    ctx->outs = sl__xrealloc(ctx->outs, sizeof *ctx->outs * (size_t)(ctx->nouts + 1));
    ctx->outs[ctx->nouts++] = o;
}

static void add_writer(sl__task *t, sl__writer *w)
{
    t->writers = sl__xrealloc(t->writers, sizeof *t->writers * (size_t)(t->nwriters + 1));
    t->writers[t->nwriters++] = w;
}

static sl_ctx *ctx_new(sl__task *t, const sl__node *n, int subtask, int par, void *user)
{
    sl_ctx *c = sl__xcalloc(1, sizeof *c);
    c->task = t;
    c->node = n;
    c->subtask = subtask;
    c->parallelism = par;
    c->user = user;
    return c;
}

static void ctx_free(sl_ctx *c)
{
    if (!c)
        return;
    sl__keyed_backend_destroy(c->kb);
    sl__operator_store_destroy(c->os);
    sl__free(c->keyer.vals);
    sl__free(c->keyer.buf);
    sl__free(c->key_view);
    sl__free(c->out_row);
    sl__free(c->bcast);
    sl__free(c->outs);
    sl__free(c->key_ctx);
    sl__free(c);
}

static int build_job(build *b, char *err, size_t cap)
{
    const sl__job_graph *g = b->g;
    sl__job *job = b->job;
    int nn = g->nnodes;
    b->par = sl__xcalloc((size_t)nn, sizeof *b->par);
    b->head = sl__xcalloc((size_t)nn, sizeof *b->head);
    b->ctxs = sl__xcalloc((size_t)nn, sizeof *b->ctxs);
    b->tasks_by_head = sl__xcalloc((size_t)nn, sizeof *b->tasks_by_head);

    for (int i = 0; i < nn; i++) {
        const sl__node *n = g->nodes[i];
        b->par[i] = node_parallelism(g, n);
        if (b->par[i] < 1 || b->par[i] > g->max_parallelism) {
            snprintf(err, cap,
                     "operator '%s' has parallelism %d: accepted 1 to the max parallelism %d "
                     "(pipeline.max-parallelism)",
                     n->name, b->par[i], g->max_parallelism);
            return SL_ECONFIG;
        }
    }
    /* chains */
    for (int i = 0; i < nn; i++) {
        const sl__node *n = g->nodes[i];
        b->head[i] = i;
        if (n->ninputs == 1 && n->inputs[0].part == SL_PART_FORWARD &&
            b->par[n->inputs[0].from->id] == b->par[i])
            b->head[i] = b->head[n->inputs[0].from->id];
    }
    /* tasks and operator instances */
    for (int i = 0; i < nn; i++) {
        const sl__node *n = g->nodes[i];
        int p = b->par[i];
        b->ctxs[i] = sl__xcalloc((size_t)p, sizeof *b->ctxs[i]);
        if (b->head[i] == i) {
            b->tasks_by_head[i] = sl__xcalloc((size_t)p, sizeof(sl__task *));
            for (int s = 0; s < p; s++) {
                sl__task *t = sl__xcalloc(1, sizeof *t);
                t->job = job;
                t->subtask = s;
                sl__arena_init(&t->arena);
                b->tasks_by_head[i][s] = t;
                job->tasks =
                    sl__xrealloc(job->tasks, sizeof *job->tasks * (size_t)(job->ntasks + 1));
                job->tasks[job->ntasks++] = t;
            }
        }
        for (int s = 0; s < p; s++) {
            sl__task *t = b->tasks_by_head[b->head[i]][s];
            sl_ctx *c = ctx_new(t, n, s, p, n->fn.hooks.user);
            b->ctxs[i][s] = c;
            t->ops = sl__xrealloc(t->ops, sizeof *t->ops * (size_t)(t->nops + 1));
            t->ops[t->nops++] = c;
        }
    }
    /* edges */
    for (int i = 0; i < nn; i++) {
        const sl__node *n = g->nodes[i];
        int p = b->par[i];
        if (b->head[i] != i) {
            /* chained: the input's instance calls this one directly */
            const sl__node *from = n->inputs[0].from;
            for (int s = 0; s < p; s++)
                add_output(b->ctxs[from->id][s], (sl__output){.next = b->ctxs[i][s], .input = 0});
            continue;
        }
        if (n->ninputs == 0)
            continue;
        /* a gate per subtask with a channel per (producer subtask, edge) */
        int nchans = 0;
        for (int e = 0; e < n->ninputs; e++) {
            const sl__edge *ed = &n->inputs[e];
            nchans += effective_part(b, n, ed) == SL_PART_FORWARD ? 1 : b->par[ed->from->id];
        }
        for (int s = 0; s < p; s++) {
            sl__task *t = b->tasks_by_head[i][s];
            t->gate = sl__gate_create(nchans, &job->cancelled);
            job->gates = sl__xrealloc(job->gates, sizeof *job->gates * (size_t)(job->ngates + 1));
            job->gates[job->ngates++] = t->gate;
            t->ninputs = n->kind == SL_NODE_BROADCAST_CONNECT ? 2 : 1;
            t->ended_per_input = sl__xcalloc(2, sizeof(int));
            t->chans_per_input = sl__xcalloc(2, sizeof(int));
        }
        int ci = 0;
        for (int e = 0; e < n->ninputs; e++) {
            const sl__edge *ed = &n->inputs[e];
            sl__partitioner part = effective_part(b, n, ed);
            int pf = b->par[ed->from->id];
            for (int u = 0; u < pf; u++) {
                sl__writer *w = sl__xcalloc(1, sizeof *w);
                w->part = part;
                w->key = &ed->key;
                w->keyer.spec = &ed->key;
                w->schema = ed->from->schema;
                w->nchans = p;
                w->chans = sl__xcalloc((size_t)p, sizeof *w->chans);
                w->rr = u % p; /* spread producers over consumers */
                w->max_parallelism = g->max_parallelism;
                sl_ctx *producer = b->ctxs[ed->from->id][u];
                if (part == SL_PART_HASH && ed->key.field < 0) {
                    w->key_ctx = ctx_new(producer->task, ed->from, u, pf, ed->key.fn.user);
                }
                job->writers =
                    sl__xrealloc(job->writers, sizeof *job->writers * (size_t)(job->nwriters + 1));
                job->writers[job->nwriters++] = w;
                for (int s = 0; s < p; s++) {
                    if (part == SL_PART_FORWARD && s != u)
                        continue;
                    sl__task *t = b->tasks_by_head[i][s];
                    int idx = part == SL_PART_FORWARD ? ci : ci + u;
                    w->chans[s] =
                        sl__channel_create(t->gate, idx, ed->input, job->nbufs, job->buf_size);
                    t->chans_per_input[ed->input]++;
                    t->in_schema[ed->input] = ed->from->schema;
                }
                add_output(producer, (sl__output){.w = w});
                add_writer(producer->task, w);
            }
            ci += part == SL_PART_FORWARD ? 1 : pf;
        }
        for (int s = 0; s < p; s++) {
            sl__task *t = b->tasks_by_head[i][s];
            for (int k = 0; k < t->ninputs; k++)
                t->in_row[k] = sl__xcalloc((size_t)(t->in_schema[k]->n + 1), sizeof(sl_value));
        }
    }
    return 0;
}

static void build_free(build *b)
{
    if (b->ctxs)
        for (int i = 0; i < b->g->nnodes; i++)
            sl__free(b->ctxs[i]);
    if (b->tasks_by_head)
        for (int i = 0; i < b->g->nnodes; i++)
            sl__free(b->tasks_by_head[i]);
    sl__free(b->ctxs);
    sl__free(b->tasks_by_head);
    sl__free(b->par);
    sl__free(b->head);
}

static void job_free(sl__job *job)
{
    for (int i = 0; i < job->ntasks; i++) {
        sl__task *t = job->tasks[i];
        for (int k = 0; k < t->nops; k++)
            ctx_free(t->ops[k]);
        sl__free(t->ops);
        sl__free(t->writers);
        sl__free(t->in_row[0]);
        sl__free(t->in_row[1]);
        sl__free(t->ended_per_input);
        sl__free(t->chans_per_input);
        sl__arena_close(&t->arena);
        sl__free(t);
    }
    for (int i = 0; i < job->nwriters; i++) {
        sl__free(job->writers[i]->chans);
        sl__free(job->writers[i]->key_ctx);
        sl__free(job->writers[i]->keyer.vals);
        sl__free(job->writers[i]->keyer.buf);
        sl__free(job->writers[i]);
    }
    for (int i = 0; i < job->ngates; i++)
        sl__gate_destroy(job->gates[i]);
    sl__free(job->tasks);
    sl__free(job->writers);
    sl__free(job->gates);
    pthread_mutex_destroy(&job->mu);
    pthread_cond_destroy(&job->done);
}

/* Set by the signal handler, read by the thread running sl_execute. */
static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

int sl__runtime_run(const sl__job_graph *g, char *err, size_t cap, int *signal_out)
{
    *signal_out = 0;
    sl__job job;
    memset(&job, 0, sizeof job);
    job.g = g;
    atomic_init(&job.cancelled, false);
    pthread_mutex_init(&job.mu, NULL);
    pthread_cond_init(&job.done, NULL);
    job.buffer_timeout_ns = sl__config_duration_ms(g->config, "execution.buffer-timeout") * 1000000;
    job.buf_size = (size_t)sl__config_memory(g->config, "taskmanager.memory.segment-size");
    job.nbufs = (int)sl__config_int(g->config, "taskmanager.network.memory.buffers-per-channel");

    build b = {.job = &job, .g = g};
    int rc = build_job(&b, err, cap);
    build_free(&b);
    if (rc < 0) {
        job_free(&job);
        return rc;
    }
    SL_INFO("event=job_start job=%s tasks=%d", g->name, job.ntasks);

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    got_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    /* subtask threads do not take the signals: the handler runs on this thread */
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old_mask);
    job.running = job.ntasks;
    int started = 0;
    for (int i = 0; i < job.ntasks; i++) {
        if (pthread_create(&job.tasks[i]->thread, NULL, task_main, job.tasks[i]) != 0) {
            sl__job_fail(&job, SL_ENOMEM, "cannot start a thread for subtask %d: %s", i,
                         strerror(errno));
            pthread_mutex_lock(&job.mu);
            job.running -= job.ntasks - i;
            pthread_mutex_unlock(&job.mu);
            break;
        }
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);

    pthread_mutex_lock(&job.mu);
    while (job.running > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&job.done, &job.mu, &ts);
        if (got_signal && !*signal_out) {
            *signal_out = got_signal;
            pthread_mutex_unlock(&job.mu);
            sl__job_cancel(&job, SL_ECANCELED,
                           got_signal == SIGINT ? "job cancelled by SIGINT"
                                                : "job cancelled by SIGTERM");
            pthread_mutex_lock(&job.mu);
        }
    }
    pthread_mutex_unlock(&job.mu);
    for (int i = 0; i < started; i++)
        pthread_join(job.tasks[i]->thread, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);

    rc = job.err_code;
    if (rc)
        snprintf(err, cap, "%s", job.err);
    SL_INFO("event=job_end job=%s rc=%d", g->name, rc);
    job_free(&job);
    return rc;
}

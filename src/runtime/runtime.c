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
#include "checkpoint/restart.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/failpoint.h"
#include "core/log.h"
#include "runtime/task.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    if (head->finished_on_restore)
        return 0; /* its input had ended in the checkpoint: it stays ended */
    for (;;) {
        if (cancelled(t))
            return SL_ECANCELED;
        if (atomic_load_explicit(&t->mail, memory_order_relaxed)) {
            int rc = sl__task_handle_mail(t);
            if (rc < 0)
                return rc;
        }
        if (sl__failpoint("task.record"))
            return sl_fail(head, "failpoint task.record fired");
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

static int run_inputs(sl__task *t)
{
    while (t->nended < t->nchans) {
        sl__entry e;
        sl__channel *c = sl__gate_next(t->gate, &e, idle_flush, t);
        if (!c) {
            if (cancelled(t))
                return SL_ECANCELED;
            int rc = sl__task_handle_mail(t);
            if (rc < 0)
                return rc;
            continue;
        }
        int rc = 0;
        if (e.kind == SL_EV_DATA) {
            rc = sl__op_process_buffer(t, c, e.buf);
            sl__gate_release(t->gate, c, e.buf);
            sl__arena_reset(&t->arena);
            if (rc == 0)
                maybe_flush(t);
        } else if (e.kind == SL_EV_BARRIER) {
            rc = sl__task_on_barrier(t, c, e.arg);
        } else if (e.kind == SL_EV_END_OF_PARTITION) {
            t->ended_per_input[c->input]++;
            rc = sl__task_on_end(t, c);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Names the calling thread "<head operator>#<subtask>" (from 1; Linux keeps 15 bytes, so
 * the name is cut to leave the subtask), so that top -H, perf and gdb tell the tasks apart. */
static void name_thread(const sl__task *t)
{
    char suffix[16], name[16];
    size_t n = (size_t)snprintf(suffix, sizeof suffix, "#%d", t->subtask + 1);
    const char *op = t->nops ? t->ops[0]->node->name : "task";
    size_t k = strnlen(op, sizeof name - 1 - n);
    memcpy(name, op, k);
    memcpy(name + k, suffix, n + 1);
    pthread_setname_np(pthread_self(), name);
}

static void *task_main(void *arg)
{
    sl__task *t = arg;
    sl__job *job = t->job;
    int rc = 0;
    name_thread(t);
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
    if (rc == 0 && job->storage)
        rc = sl__task_freeze(t);
    for (int i = 0; i < t->nops; i++)
        sl__op_close(t->ops[i]);
    if (rc < 0 && !atomic_load(&job->cancelled)) {
        /* a failure nobody described: name the task */
        sl__job_fail(job, rc, "operator '%s' (subtask %d/%d) failed: %s", t->ops[0]->node->name,
                     t->subtask + 1, t->ops[0]->parallelism, sl_strerror(rc));
    }
    atomic_fetch_add(&job->finished_tasks, 1);
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
    sl_ctx *c = sl__xcalloc_lines(1, sizeof *c); /* its task's thread's alone */
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
                sl__task *t = sl__xcalloc_lines(1, sizeof *t); /* written per record */
                t->job = job;
                t->subtask = s;
                t->index = job->ntasks;
                pthread_mutex_init(&t->mb.mu, NULL);
                pthread_mutex_init(&t->frozen_mu, NULL);
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
            t->gate = sl__gate_create(nchans, &job->cancelled, &t->mail);
            t->nchans = nchans;
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
                sl__writer *w = sl__xcalloc_lines(1, sizeof *w);
                w->part = part;
                w->key = &ed->key;
                w->keyer.spec = &ed->key;
                w->keyer.field = ed->key.field;
                w->schema = ed->from->schema;
                w->pair = part == SL_PART_HASH && ed->key.field == 0 && w->schema->n == 2 &&
                          (w->schema->types[0] == SL_STR || w->schema->types[0] == SL_BYTES) &&
                          (w->schema->types[1] == SL_I64 || w->schema->types[1] == SL_F64);
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
                    w->chans[s]->keyed = part == SL_PART_HASH;
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
            /* decoded into per record by the task's thread: lines of its own. Built here,
             * on one thread, it lies among the other tasks' structures; next to one that
             * another thread reads per record, both threads missed the cache per record:
             * 25-30 % more CPU for the keyed word count, depending on allocations made
             * before the job (one -D option was enough) */
            for (int k = 0; k < t->ninputs; k++)
                t->in_row[k] =
                    sl__xcalloc_lines((size_t)(t->in_schema[k]->n + 1), sizeof(sl_value));
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
        pthread_mutex_destroy(&t->mb.mu);
        pthread_mutex_destroy(&t->frozen_mu);
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

static int64_t now_ms(void)
{
    return sl__now_ns() / 1000000;
}

/* What lives across the attempts of one sl_execute. */
typedef struct run_state {
    const sl__job_graph *g;
    sl__storage *storage; /* NULL without checkpointing */
    sl__coordinator *coord;
    sl__restart *restart;
    bool exactly_once;
    sl__checkpoint_meta *restore; /* what the next attempt starts from */
    char *restore_chk;            /* its path; NULL for in-memory checkpoints */
    int64_t bad[32];              /* checkpoints whose restore failed */
    int nbad;
    int *signal_out;
    bool final_done; /* this attempt's final checkpoint completed */
} run_state;

static void drain_acks(sl__job *job, run_state *rs)
{
    pthread_mutex_lock(&job->mu);
    sl__ack_msg *m = job->acks_head;
    job->acks_head = job->acks_tail = NULL;
    pthread_mutex_unlock(&job->mu);
    while (m) {
        sl__ack_msg *next = m->next;
        char err[1024];
        sl__coord_sync_pause(rs->coord, m->id, m->sync_us);
        sl__coord_event ev = sl__coord_ack(rs->coord, m->id, m->acks, m->nacks, m->declined,
                                           m->reason, now_ms(), err, sizeof err);
        bool final = m->id == job->final_id;
        if (ev == SL_COORD_COMPLETED && final) {
            rs->final_done = true;
        } else if (ev == SL_COORD_COMPLETED && !atomic_load(&job->cancelled)) {
            for (int i = 0; i < job->ntasks; i++)
                sl__task_post_notify(job->tasks[i], m->id);
        } else if (ev == SL_COORD_FAIL_JOB || (final && ev == SL_COORD_FAILED)) {
            /* without its final checkpoint a finished job cannot commit its output safely:
             * it fails, and a restart replays from the last completed checkpoint */
            sl__job_fail(job, SL_EIO, "%s%s", final ? "the final checkpoint failed: " : "",
                         ev == SL_COORD_FAIL_JOB ? err : m->reason);
        }
        sl__free(m->acks);
        sl__free(m);
        m = next;
    }
}

/* Covers every pending checkpoint that a frozen task has not snapshotted itself from its
 * frozen state. */
static void cover_frozen(sl__job *job, run_state *rs)
{
    int64_t ids[SL_MAX_TRIGGERS];
    int n = sl__coord_pending_ids(rs->coord, ids, SL_MAX_TRIGGERS);
    if (!n)
        return;
    for (int i = 0; i < job->ntasks; i++) {
        sl__task *t = job->tasks[i];
        if (!atomic_load_explicit(&t->frozen, memory_order_acquire))
            continue;
        int64_t done = atomic_load(&t->last_acked);
        for (int k = 0; k < n; k++)
            if (ids[k] > done && ids[k] > t->frozen_sent)
                sl__task_submit_frozen(t, ids[k]);
    }
}

/* One attempt: build the execution graph, run it until it ends, drive checkpoints. */
static int run_attempt(run_state *rs, int attempt, char *err, size_t cap)
{
    const sl__job_graph *g = rs->g;
    sl__job job;
    memset(&job, 0, sizeof job);
    job.g = g;
    job.attempt = attempt;
    atomic_init(&job.cancelled, false);
    atomic_init(&job.finished_tasks, 0);
    pthread_mutex_init(&job.mu, NULL);
    pthread_cond_init(&job.done, NULL);
    job.buffer_timeout_ns = sl__config_duration_ms(g->config, "execution.buffer-timeout") * 1000000;
    job.buf_size = (size_t)sl__config_memory(g->config, "taskmanager.memory.segment-size");
    job.nbufs = (int)sl__config_int(g->config, "taskmanager.network.memory.buffers-per-channel");
    job.storage = rs->storage;
    job.exactly_once = rs->exactly_once;
    job.restore = rs->restore;
    job.restore_chk = rs->restore_chk;

    build b = {.job = &job, .g = g};
    int rc = build_job(&b, err, cap);
    build_free(&b);
    if (rc < 0) {
        job_free(&job);
        return rc;
    }
    rs->final_done = false;
    sl__coord_new_attempt(rs->coord, now_ms());
    SL_INFO("event=job_start job=%s attempt=%d tasks=%d", g->name, attempt, job.ntasks);
    if (job.storage && sl__io_start(&job) < 0) {
        snprintf(err, cap, "cannot start the checkpoint I/O threads");
        job_free(&job);
        return SL_ENOMEM;
    }

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

    bool aborted_pending = false;
    int64_t wait_ms = job.storage ? 10 : 50;
    pthread_mutex_lock(&job.mu);
    while (job.running > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += wait_ms * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&job.done, &job.mu, &ts);
        pthread_mutex_unlock(&job.mu);
        if (got_signal && !*rs->signal_out) {
            *rs->signal_out = got_signal;
            sl__job_cancel(&job, SL_ECANCELED,
                           got_signal == SIGINT ? "job cancelled by SIGINT"
                                                : "job cancelled by SIGTERM");
        }
        if (rs->coord) {
            drain_acks(&job, rs);
            int64_t now = now_ms(), expired;
            if (atomic_load(&job.cancelled)) {
                if (!aborted_pending)
                    sl__coord_abort_pending(rs->coord);
                aborted_pending = true;
            } else {
                int64_t id = sl__coord_maybe_trigger(rs->coord, now);
                if (id > 0)
                    for (int i = 0; i < job.ntasks; i++)
                        if (!job.tasks[i]->gate && !atomic_load(&job.tasks[i]->frozen))
                            sl__task_post_trigger(job.tasks[i], id);
                cover_frozen(&job, rs);
            }
            char why[1024];
            sl__coord_event ev = sl__coord_tick(rs->coord, now, &expired, why, sizeof why);
            if (ev == SL_COORD_FAIL_JOB)
                sl__job_fail(&job, SL_EIO, "%s", why);
        }
        pthread_mutex_lock(&job.mu);
    }
    pthread_mutex_unlock(&job.mu);
    for (int i = 0; i < started; i++)
        pthread_join(job.tasks[i]->thread, NULL);
    if (job.storage) {
        if (!job.err_code && !atomic_load(&job.cancelled)) {
            /* every task has frozen: the final checkpoint takes them all as they ended */
            sl__coord_abort_pending(rs->coord);
            job.final_id = sl__coord_trigger_now(rs->coord, now_ms());
            for (int i = 0; job.final_id && i < job.ntasks; i++)
                sl__task_submit_frozen(job.tasks[i], job.final_id);
        }
        sl__io_stop(&job);
        drain_acks(&job, rs);
        sl__coord_abort_pending(rs->coord);
        for (int i = 0; i < job.ntasks; i++)
            sl__task_release_frozen(job.tasks[i]);
        if (!job.err_code && !rs->final_done)
            sl__job_fail(&job, SL_EIO,
                         "the job finished but its final checkpoint did not complete");
    }
    rc = job.err_code;
    if (rc)
        snprintf(err, cap, "%s", job.err);
    SL_INFO("event=job_end job=%s attempt=%d rc=%d", g->name, attempt, rc);
    job_free(&job);
    return rc;
}

/* An operator restored with finished subtasks receives nothing on them: its input had ended
 * and its keyed state was not kept. That holds for the job that took the checkpoint; a
 * changed job must not feed such an operator from anything that may still send, as Flink
 * refuses (FLIP-147). Every input of an operator with a finished subtask must come from an
 * operator that had fully finished, or, through a forward edge (subtask i to subtask i), from the
 * same subtasks finished. A new operator (not in the checkpoint) has not finished. */
static int check_finished(const sl__job_graph *g, const sl__checkpoint_meta *m, const char *path,
                          char *err, size_t cap)
{
    for (int k = 0; k < g->nnodes; k++) {
        const sl__node *n = g->nodes[k];
        const sl__operator_state_meta *o = sl__checkpoint_meta_find(m, n->uid);
        int p = node_parallelism(g, n);
        bool any = false;
        for (int s = 0; o && s < p && !any; s++)
            any = sl__restores_finished(o, s, p);
        if (!any)
            continue;
        for (int e = 0; e < n->ninputs; e++) {
            const sl__node *from = n->inputs[e].from;
            const sl__operator_state_meta *fo = sl__checkpoint_meta_find(m, from->uid);
            int fp = node_parallelism(g, from);
            bool ok = fo && sl__operator_fully_finished(fo);
            if (!ok && fo && n->inputs[e].part == SL_PART_FORWARD && fp == p) {
                ok = true;
                for (int s = 0; s < p && ok; s++)
                    ok = !sl__restores_finished(o, s, p) || sl__restores_finished(fo, s, fp);
            }
            if (ok)
                continue;
            snprintf(err, cap,
                     "checkpoint %s: operator '%s' (uid '%s') had finished there, but its input "
                     "'%s' (uid '%s') %s and could send it records, which it can no longer "
                     "process (a checkpoint keeps no state of a finished operator); restore "
                     "this job from a checkpoint taken before '%s' finished, or give it a new "
                     "uid to start it without state",
                     path, n->name, n->uid, from->name, from->uid ? from->uid : "",
                     fo ? "had not finished" : "is not in the checkpoint", n->name);
            return SL_ESTATE;
        }
    }
    return 0;
}

/* Checks that a checkpoint fits the job: same max parallelism, no state of operators the
 * job does not have unless allowed, and no finished operator fed by one that may send. */
static int check_restore(const sl__job_graph *g, const sl__checkpoint_meta *m, const char *path,
                         char *err, size_t cap)
{
    for (int i = 0; i < m->noperators; i++) {
        const sl__operator_state_meta *o = &m->operators[i];
        const sl__node *found = NULL;
        for (int k = 0; k < g->nnodes; k++)
            if (g->nodes[k]->uid && !strcmp(g->nodes[k]->uid, o->uid))
                found = g->nodes[k];
        bool stateless = true;
        for (int k = 0; k < o->parallelism; k++)
            if (o->subtasks[k].file && o->subtasks[k].file[0])
                stateless = false;
        if (!found && stateless)
            continue; /* nothing to lose, as in Flink */
        if (!found) {
            if (g->allow_non_restored) {
                SL_WARN("event=state_not_restored checkpoint=%s uid=%s name=\"%s\"", path, o->uid,
                        o->name);
                continue;
            }
            snprintf(err, cap,
                     "checkpoint %s holds state of operator uid '%s' ('%s') that this job does "
                     "not have; pass --allow-non-restored-state to start without it",
                     path, o->uid, o->name);
            return SL_ESTATE;
        }
        if (o->max_parallelism != g->max_parallelism) {
            snprintf(err, cap,
                     "checkpoint %s was taken with max parallelism %d for operator '%s'; this job "
                     "has %d (pipeline.max-parallelism): the max parallelism of a job cannot "
                     "change across a restore",
                     path, o->max_parallelism, o->uid, g->max_parallelism);
            return SL_ESTATE;
        }
    }
    return check_finished(g, m, path, err, cap);
}

static bool is_bad(const run_state *rs, int64_t id)
{
    for (int i = 0; i < rs->nbad; i++)
        if (rs->bad[i] == id)
            return true;
    return false;
}

/* After a failure: the newest retained checkpoint that loads becomes the restore point;
 * a corrupt one is skipped for an older one. Without any, the restore point stays (the
 * -s checkpoint, or none). */
static void pick_restore(run_state *rs)
{
    int64_t ids[64];
    int n = sl__storage_retained(rs->storage, ids, 64);
    for (int i = 0; i < n; i++) {
        if (is_bad(rs, ids[i]))
            continue;
        char path[4096], err[1024];
        const char *dir = sl__storage_job_dir(rs->storage);
        bool memory = !strcmp(dir, "memory");
        snprintf(path, sizeof path, "%s/chk-%lld", dir, (long long)ids[i]);
        sl__checkpoint_meta *m = NULL;
        int rc =
            sl__checkpoint_load(rs->storage, memory ? NULL : path, ids[i], &m, err, sizeof err);
        if (rc < 0) {
            SL_WARN("event=checkpoint_unusable id=%lld error=\"%s\" action=\"trying an older "
                    "checkpoint\"",
                    (long long)ids[i], err);
            if (rs->nbad < 32)
                rs->bad[rs->nbad++] = ids[i];
            continue;
        }
        bool same_kind = (rs->restore_chk == NULL) == memory;
        if (rs->restore && rs->restore->id == m->id && same_kind) {
            sl__checkpoint_meta_free(m);
            return;
        }
        sl__checkpoint_meta_free(rs->restore);
        sl__free(rs->restore_chk);
        rs->restore = m;
        rs->restore_chk = memory ? NULL : sl__xstrdup(path);
        return;
    }
}

typedef enum outcome { FINISHED, CANCELLED, FAILED } outcome;

static void retention(run_state *rs, outcome how)
{
    if (!rs->storage)
        return;
    const char *policy =
        sl__config_get(rs->g->config, "execution.checkpointing.externalized-checkpoint-retention");
    bool retain = how == CANCELLED ? !strcmp(policy, "RETAIN_ON_CANCELLATION")
                  : how == FAILED  ? strcmp(policy, "NO_EXTERNALIZED_CHECKPOINTS") != 0
                                   : false;
    int64_t ids[1];
    int n = sl__storage_retained(rs->storage, ids, 1);
    const char *dir = sl__storage_job_dir(rs->storage);
    if (retain && n > 0 && strcmp(dir, "memory"))
        SL_NOTICE("event=checkpoints_retained latest=%s/chk-%lld policy=%s", dir, (long long)ids[0],
                  policy);
    else
        sl__storage_discard_all(rs->storage);
}

static int setup_checkpointing(run_state *rs, char *err, size_t cap)
{
    const sl__job_graph *g = rs->g;
    const sl__config *c = g->config;
    const char *interval = sl__config_get(c, "execution.checkpointing.interval");
    if (!interval)
        return 0;
    const char *dir = sl__config_get(c, "state.checkpoints.dir");
    const char *kind = sl__config_get(c, "state.checkpoint-storage");
    if (kind && !strcmp(kind, "jobmanager"))
        dir = NULL;
    else if (kind && !strcmp(kind, "filesystem") && !dir) {
        snprintf(err, cap,
                 "state.checkpoint-storage is filesystem but state.checkpoints.dir is "
                 "not set: give a directory, or use jobmanager (in memory)");
        return SL_ECONFIG;
    }
    int retained = (int)sl__config_int(c, "state.checkpoints.num-retained");
    rs->storage = sl__storage_create(dir, g->job_id, retained, err, cap);
    if (!rs->storage)
        return SL_EIO;
    rs->exactly_once = !strcmp(sl__config_get(c, "execution.checkpointing.mode"), "EXACTLY_ONCE");
    sl__coord_config cc = {
        .interval_ms = sl__config_duration_ms(c, "execution.checkpointing.interval"),
        .timeout_ms = sl__config_duration_ms(c, "execution.checkpointing.timeout"),
        .min_pause_ms = sl__config_duration_ms(c, "execution.checkpointing.min-pause"),
        .max_concurrent =
            (int)sl__config_int(c, "execution.checkpointing.max-concurrent-checkpoints"),
        .tolerable_failures =
            (int)sl__config_int(c, "execution.checkpointing.tolerable-failed-checkpoints"),
    };
    int ntasks = 0;
    for (int i = 0; i < g->nnodes; i++) {
        /* one task per subtask of each chain head: the same rule as build_job */
        const sl__node *n = g->nodes[i];
        int p = node_parallelism(g, n);
        bool head = !(n->ninputs == 1 && n->inputs[0].part == SL_PART_FORWARD &&
                      node_parallelism(g, n->inputs[0].from) == p);
        if (head)
            ntasks += p;
    }
    int64_t first = rs->restore ? rs->restore->id + 1 : 1;
    int64_t retained_ids[1];
    if (sl__storage_retained(rs->storage, retained_ids, 1) > 0 && retained_ids[0] >= first)
        first = retained_ids[0] + 1;
    rs->coord = sl__coord_create(&cc, rs->storage, ntasks, first, g->job_id, g->name);
    if (!rs->coord) {
        snprintf(err, cap, "out of memory creating the checkpoint coordinator");
        return SL_ENOMEM;
    }
    SL_NOTICE("event=checkpointing job=%s id=%s interval_ms=%lld mode=%s storage=%s", g->name,
              g->job_id, (long long)cc.interval_ms,
              rs->exactly_once ? "EXACTLY_ONCE" : "AT_LEAST_ONCE",
              sl__storage_job_dir(rs->storage));
    return 0;
}

/* Sleeps ms, returning early (false) on SIGINT/SIGTERM. */
static bool restart_sleep(int64_t ms)
{
    int64_t end = now_ms() + ms;
    while (!got_signal) {
        int64_t left = end - now_ms();
        if (left <= 0)
            return true;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (left > 20 ? 20 : left) * 1000000};
        nanosleep(&ts, NULL);
    }
    return false;
}

int sl__runtime_run(const sl__job_graph *g, char *err, size_t cap, int *signal_out)
{
    *signal_out = 0;
    run_state rs = {.g = g, .signal_out = signal_out};
    int rc = 0;
    if (g->restore_path) {
        rc = sl__checkpoint_load(NULL, g->restore_path, -1, &rs.restore, err, cap);
        if (rc == 0)
            rc = check_restore(g, rs.restore, g->restore_path, err, cap);
        if (rc < 0) {
            sl__checkpoint_meta_free(rs.restore);
            return rc;
        }
        rs.restore_chk = sl__xstrdup(g->restore_path);
        SL_NOTICE("event=restoring checkpoint=%s id=%lld", g->restore_path,
                  (long long)rs.restore->id);
    }
    rc = setup_checkpointing(&rs, err, cap);
    if (rc == 0) {
        rs.restart = sl__restart_create(g->config, rs.storage != NULL, (uint64_t)sl__now_ns());
        if (!rs.restart) {
            snprintf(err, cap, "out of memory creating the restart strategy");
            rc = SL_ENOMEM;
        }
    }
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    got_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    outcome how = FAILED;
    for (int attempt = 0; rc == 0 || attempt > 0; attempt++) {
        rc = run_attempt(&rs, attempt, err, cap);
        if (rc == 0) {
            how = FINISHED;
            break;
        }
        if (*signal_out) {
            how = CANCELLED;
            break;
        }
        if (rs.restore && strstr(err, "restoring from checkpoint") && rs.nbad < 32)
            rs.bad[rs.nbad++] = rs.restore->id;
        int64_t delay = sl__restart_on_failure(rs.restart, now_ms());
        if (delay < 0) {
            int restarts = sl__restart_count(rs.restart);
            if (restarts > 0 || rs.storage) {
                char last[1024];
                snprintf(last, sizeof last, "%s", err);
                snprintf(err, cap,
                         "job failed after %d restart%s (restart strategy: %s); last failure: %s",
                         restarts, restarts == 1 ? "" : "s", sl__restart_describe(rs.restart),
                         last);
            }
            break;
        }
        SL_LOG(SL_LOG_WARN,
               "event=job_restarting attempt=%d delay_ms=%lld strategy=\"%s\" failure=\"%s\"",
               attempt + 1, (long long)delay, sl__restart_describe(rs.restart), err);
        if (!restart_sleep(delay)) {
            *signal_out = got_signal;
            snprintf(err, cap, "job cancelled by %s while waiting to restart",
                     got_signal == SIGINT ? "SIGINT" : "SIGTERM");
            rc = SL_ECANCELED;
            how = CANCELLED;
            break;
        }
        if (rs.storage)
            pick_restore(&rs);
        if (rs.restore && is_bad(&rs, rs.restore->id)) {
            char last[1024];
            snprintf(last, sizeof last, "%s", err);
            snprintf(err, cap,
                     "cannot recover: checkpoint %lld cannot be restored and no other checkpoint "
                     "is retained; %s",
                     (long long)rs.restore->id, last);
            break;
        }
        if (rs.restore)
            SL_NOTICE("event=restoring attempt=%d checkpoint=%lld", attempt + 1,
                      (long long)rs.restore->id);
    }
    /* output committed at the end of the job is committed while the final checkpoint still
     * exists: a crash in between restores from it and commits again */
    if (how == FINISHED && sl__failpoint("job.before_commit")) {
        /* the process dies as under kill -9, between the final checkpoint and the commit */
        SL_WARN("event=failpoint_exit name=job.before_commit");
        _exit(137);
    }
    char why[1024] = "";
    if (g->on_end && g->on_end(g->on_end_arg, how == FINISHED, why, sizeof why) < 0 &&
        how == FINISHED) {
        /* the output is not all visible: keep the checkpoints, whose final one names the
         * files to commit, so that a restore from it commits them */
        int64_t ids[1];
        int n = rs.storage ? sl__storage_retained(rs.storage, ids, 1) : 0;
        if (n > 0 && strcmp(sl__storage_job_dir(rs.storage), "memory"))
            snprintf(err, cap,
                     "the job finished but committing its output failed: %s; its final "
                     "checkpoint is kept: run the job with -s %s/chk-%lld to commit again",
                     why, sl__storage_job_dir(rs.storage), (long long)ids[0]);
        else
            snprintf(err, cap, "the job finished but committing its output failed: %s", why);
        rc = SL_EIO;
    } else {
        retention(&rs, how);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sl__coord_destroy(rs.coord);
    sl__restart_destroy(rs.restart);
    sl__storage_destroy(rs.storage);
    sl__checkpoint_meta_free(rs.restore);
    sl__free(rs.restore_chk);
    return rc;
}

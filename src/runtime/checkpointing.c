/*
 * checkpointing.c - the task side of checkpoints: mailboxes, barrier injection at sources,
 * barrier alignment (exactly-once) or counting (at-least-once) at tasks with inputs, the
 * synchronous snapshot part on the task thread, the asynchronous part on I/O threads, and
 * restoring an operator instance's state from a checkpoint.
 *
 * The synchronous part calls the user's snapshot_state hooks, copies the (small) operator
 * state, and begins a copy-on-write snapshot of the keyed backend; then the barrier goes
 * downstream and the task continues. An I/O thread serializes the keyed snapshot by key
 * group into the state file, closes it (fsync) and posts the acknowledgement; the
 * coordinator completes the checkpoint when every task has acknowledged.
 */
#include "core/alloc.h"
#include "core/failpoint.h"
#include "core/hash.h"
#include "core/log.h"
#include "runtime/task.h"
#include "state/rocksdb/rocksdb_backend.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- mailboxes ---------------------------------------------------------------------- */

static void wake(sl__task *t)
{
    atomic_store_explicit(&t->mail, 1, memory_order_release);
    if (t->gate)
        sl__gate_wake(t->gate);
}

void sl__task_post_trigger(sl__task *t, int64_t id)
{
    pthread_mutex_lock(&t->mb.mu);
    if (t->mb.ntriggers < SL_MAX_TRIGGERS)
        t->mb.triggers[t->mb.ntriggers++] = id;
    pthread_mutex_unlock(&t->mb.mu);
    wake(t);
}

void sl__task_post_notify(sl__task *t, int64_t id)
{
    pthread_mutex_lock(&t->mb.mu);
    if (id > t->mb.notify)
        t->mb.notify = id;
    pthread_mutex_unlock(&t->mb.mu);
    wake(t);
}

/* ---- the asynchronous part ---------------------------------------------------------- */

static void post_ack(sl__job *job, sl__ack_msg *m)
{
    pthread_mutex_lock(&job->mu);
    if (job->acks_tail)
        job->acks_tail->next = m;
    else
        job->acks_head = m;
    job->acks_tail = m;
    pthread_cond_signal(&job->done);
    pthread_mutex_unlock(&job->mu);
}

static void io_op_free(sl__io_op *op)
{
    if (!op->borrowed) {
        if (op->snap)
            sl__keyed_snapshot_release(op->snap);
        sl__buf_free(&op->op_state);
    }
    op->snap = NULL;
    op->op_state = (sl__buf){0};
}

static void io_job_free(sl__io_job *j)
{
    for (int i = 0; i < j->nops; i++)
        io_op_free(&j->ops[i]);
    sl__free(j->ops);
    sl__free(j);
}

/* Writes one operator instance's state file; returns 0 or an error with reason. */
static int write_op(sl__job *job, int64_t id, sl__io_op *op, sl__subtask_state *out, char *reason,
                    size_t cap)
{
    memset(out, 0, sizeof *out);
    out->subtask = op->subtask;
    if (sl__failpoint("checkpoint.async")) {
        snprintf(reason, cap, "failpoint checkpoint.async fired writing %s subtask %d", op->uid,
                 op->subtask);
        return SL_EIO;
    }
    /* an incremental snapshot is database files; its key-group sections stay empty */
    const char *dir;
    const sl__snapshot_file *files;
    size_t nfiles;
    sl__subtask_state db = {0};
    bool as_files = op->snap && sl__keyed_snapshot_files(op->snap, &dir, &files, &nfiles);
    if (as_files) {
        int rc = sl__storage_put_db_files(job->storage, id, op->uid, op->subtask, op->snap, &db,
                                          reason, cap);
        if (rc < 0)
            return rc;
    }
    sl__state_writer *w = sl__state_writer_open(job->storage, id, op->uid, op->subtask,
                                                op->kg_start, op->kg_end, reason, cap);
    if (!w) {
        sl__subtask_state_free(&db);
        return SL_EIO;
    }
    sl__buf kg = {0};
    int rc = 0;
    for (int g = op->kg_start; g < op->kg_end && rc == 0; g++) {
        kg.len = 0;
        if (op->snap && !as_files && (rc = sl__keyed_snapshot_write_kg(op->snap, g, &kg)) == 0)
            sl__keyed_snapshot_kg_written(op->snap, g); /* the task stops copying g's entries */
        if (rc == 0)
            rc = sl__state_writer_add_kg(w, g, kg.data, kg.len);
    }
    sl__buf_free(&kg);
    if (rc == 0 && op->op_state.len)
        rc = sl__state_writer_set_operator(w, op->op_state.data, op->op_state.len);
    if (rc < 0) {
        snprintf(reason, cap, "writing state of %s subtask %d failed: %s", op->uid, op->subtask,
                 sl_strerror(rc));
        sl__state_writer_abort(w);
        sl__subtask_state_free(&db);
        return rc;
    }
    rc = sl__state_writer_close(w, out, reason, cap);
    if (rc < 0) {
        sl__subtask_state_free(&db);
        return rc;
    }
    out->files = db.files;
    out->nfiles = db.nfiles;
    out->finished = op->finished;
    return 0;
}

static void run_io_job(sl__job *job, sl__io_job *j)
{
    sl__ack_msg *m = sl__xcalloc(1, sizeof *m);
    m->id = j->id;
    m->sync_us = j->sync_us;
    m->acks = sl__xcalloc((size_t)(j->nops ? j->nops : 1), sizeof *m->acks);
    if (j->lock)
        pthread_mutex_lock(j->lock);
    for (int i = 0; i < j->nops && !m->declined; i++) {
        sl__io_op *op = &j->ops[i];
        sl__op_ack *a = &m->acks[m->nacks];
        if (write_op(job, j->id, op, &a->state, m->reason, sizeof m->reason) < 0) {
            m->declined = true;
            break;
        }
        a->uid = op->uid;
        a->name = op->name;
        a->parallelism = op->parallelism;
        a->max_parallelism = op->max_parallelism;
        a->subtask = op->subtask;
        m->nacks++;
        io_op_free(op);
    }
    if (j->lock)
        pthread_mutex_unlock(j->lock);
    if (m->declined) {
        for (int i = 0; i < m->nacks; i++)
            sl__subtask_state_free(&m->acks[i].state);
        m->nacks = 0;
    }
    io_job_free(j);
    post_ack(job, m);
}

static void *io_main(void *arg)
{
    sl__job *job = arg;
    pthread_setname_np(pthread_self(), "sluice-io");
    pthread_mutex_lock(&job->io_mu);
    for (;;) {
        while (!job->io_head && !job->io_stop)
            pthread_cond_wait(&job->io_cv, &job->io_mu);
        sl__io_job *j = job->io_head;
        if (!j)
            break;
        job->io_head = j->next;
        if (!job->io_head)
            job->io_tail = NULL;
        pthread_mutex_unlock(&job->io_mu);
        run_io_job(job, j);
        pthread_mutex_lock(&job->io_mu);
    }
    pthread_mutex_unlock(&job->io_mu);
    return NULL;
}

int sl__io_start(sl__job *job)
{
    pthread_mutex_init(&job->io_mu, NULL);
    pthread_cond_init(&job->io_cv, NULL);
    job->nio = 0;
    for (int i = 0; i < 2; i++) {
        if (pthread_create(&job->io_threads[i], NULL, io_main, job) != 0)
            break;
        job->nio++;
    }
    return job->nio ? 0 : SL_ENOMEM;
}

/* Stops the I/O threads after they finished what is queued, so every snapshot is released
 * before the backends are destroyed. */
void sl__io_stop(sl__job *job)
{
    pthread_mutex_lock(&job->io_mu);
    job->io_stop = true;
    pthread_cond_broadcast(&job->io_cv);
    pthread_mutex_unlock(&job->io_mu);
    for (int i = 0; i < job->nio; i++)
        pthread_join(job->io_threads[i], NULL);
    job->nio = 0;
    pthread_cond_destroy(&job->io_cv);
    pthread_mutex_destroy(&job->io_mu);
}

static void io_submit(sl__job *job, sl__io_job *j)
{
    pthread_mutex_lock(&job->io_mu);
    if (job->io_tail)
        job->io_tail->next = j;
    else
        job->io_head = j;
    job->io_tail = j;
    pthread_cond_signal(&job->io_cv);
    pthread_mutex_unlock(&job->io_mu);
}

/* ---- the synchronous part ------------------------------------------------------------- */

/* Read from checkpoints of format version 2 only, which marked an operator finished with a
 * union list state of this name; version 3 marks each subtask in _metadata instead. */
static const char legacy_finished_state[] = "_sl_finished";

/* The synchronous part for every operator of the task: user snapshot_state hooks, a copy of
 * the operator state, the beginning of a copy-on-write keyed snapshot. With finished set
 * (the task has ended its input, sl__task_freeze) the operators are marked finished and
 * their keyed state is not taken, as Flink keeps none of finished operators (FLIP-147): an
 * operator whose input has ended for good never reads it again, and restored from such a
 * checkpoint it stays finished and receives nothing (sl__op_restore, check_restore in
 * runtime.c). A bounded job's final checkpoint then costs its operator state (source
 * positions, pending files), not its whole keyed state again. An operator restored as
 * finished was never opened: its snapshot_state hook is not called, its restored operator
 * state is kept as it is. Fills ops (t->nops entries); on error frees what it took. */
static int capture(sl__task *t, int64_t id, bool finished, sl__io_op *ops)
{
    const sl__job_graph *g = t->job->g;
    int rc = 0, i;
    for (i = 0; i < t->nops && rc == 0; i++) {
        sl_ctx *ctx = t->ops[i];
        const sl__node *n = ctx->node;
        sl__io_op *op = &ops[i];
        op->uid = n->uid;
        op->name = n->name;
        op->parallelism = ctx->parallelism;
        op->max_parallelism = g->max_parallelism;
        op->subtask = ctx->subtask;
        op->finished = finished;
        if (n->fn.hooks.snapshot_state && !ctx->finished_on_restore) {
            rc = n->fn.hooks.snapshot_state(ctx, id);
            sl__state_end_call(ctx->kb, ctx->os);
            if (rc < 0) {
                rc = sl__op_failed(ctx, "snapshot_state", rc);
                break;
            }
        }
        if (sl__failpoint("checkpoint.sync")) {
            rc = sl_fail(ctx, "failpoint checkpoint.sync fired in checkpoint %lld", (long long)id);
            break;
        }
        if (sl__operator_store_snapshot(ctx->os, &op->op_state) < 0) {
            rc = sl_fail(ctx, "out of memory snapshotting operator state");
            break;
        }
        /* a store without any state encodes as a single zero (no states): no section */
        if (op->op_state.len == 1 && op->op_state.data[0] == 0)
            op->op_state.len = 0;
        if (ctx->kb) {
            op->kg_start = sl__key_group_start(ctx->subtask, ctx->parallelism, g->max_parallelism);
            op->kg_end =
                sl__key_group_start(ctx->subtask + 1, ctx->parallelism, g->max_parallelism);
            op->snap = finished ? NULL : sl__keyed_backend_snapshot_begin(ctx->kb);
            if (!op->snap && !finished) {
                rc = sl_fail(ctx, "cannot snapshot keyed state: %s",
                             sl__keyed_backend_snapshot_error(ctx->kb));
                break;
            }
        }
    }
    if (rc < 0)
        for (int k = 0; k <= i && k < t->nops; k++)
            io_op_free(&ops[k]);
    return rc;
}

/* Snapshots the task for checkpoint id, hands the asynchronous part to the I/O threads and
 * sends the barrier downstream. */
static int snapshot_task(sl__task *t, int64_t id)
{
    sl__job *job = t->job;
    int64_t t0 = sl__now_ns();
    sl__io_job *j = sl__xcalloc(1, sizeof *j);
    j->id = id;
    j->ops = sl__xcalloc((size_t)t->nops, sizeof *j->ops);
    int rc = capture(t, id, false, j->ops);
    if (rc < 0) {
        sl__free(j->ops);
        sl__free(j);
        return rc;
    }
    j->nops = t->nops;
    j->sync_us = (sl__now_ns() - t0) / 1000;
    io_submit(job, j);
    t->last_barrier = id;
    atomic_store(&t->last_acked, id);
    /* the barrier follows every record emitted before the snapshot, on every output */
    for (int i = 0; i < t->nwriters; i++) {
        sl__writer *w = t->writers[i];
        for (int c = 0; c < w->nchans; c++)
            if (w->chans[c] && sl__channel_send_event(w->chans[c], SL_EV_BARRIER, id) < 0)
                return SL_ECANCELED;
    }
    t->dirty = false;
    SL_DEBUG("event=barrier_forwarded id=%lld task=%d", (long long)id, t->index);
    return 0;
}

int sl__task_freeze(sl__task *t)
{
    sl__io_op *ops = sl__xcalloc((size_t)t->nops, sizeof *ops);
    int rc = capture(t, t->last_barrier + 1, true, ops);
    if (rc < 0) {
        sl__free(ops);
        return rc;
    }
    t->frozen_ops = ops;
    atomic_store_explicit(&t->frozen, true, memory_order_release);
    return 0;
}

void sl__task_submit_frozen(sl__task *t, int64_t id)
{
    sl__io_job *j = sl__xcalloc(1, sizeof *j);
    j->id = id;
    j->nops = t->nops;
    j->ops = sl__xcalloc((size_t)t->nops, sizeof *j->ops);
    for (int i = 0; i < t->nops; i++) {
        j->ops[i] = t->frozen_ops[i];
        j->ops[i].borrowed = true;
    }
    j->lock = &t->frozen_mu;
    t->frozen_sent = id;
    io_submit(t->job, j);
}

void sl__task_release_frozen(sl__task *t)
{
    if (!t->frozen_ops)
        return;
    for (int i = 0; i < t->nops; i++)
        io_op_free(&t->frozen_ops[i]);
    sl__free(t->frozen_ops);
    t->frozen_ops = NULL;
}

static int notify(sl__task *t, int64_t id)
{
    for (int i = 0; i < t->nops; i++) {
        sl_ctx *ctx = t->ops[i];
        if (sl__failpoint("checkpoint.notify"))
            return sl_fail(ctx, "failpoint checkpoint.notify fired for checkpoint %lld",
                           (long long)id);
        if (!ctx->node->fn.hooks.notify_checkpoint_complete || ctx->finished_on_restore)
            continue; /* restored as finished: never opened */
        int rc = ctx->node->fn.hooks.notify_checkpoint_complete(ctx, id);
        sl__state_end_call(ctx->kb, ctx->os);
        if (rc < 0)
            return sl__op_failed(ctx, "notify_checkpoint_complete", rc);
    }
    t->notified = id;
    return 0;
}

int sl__task_handle_mail(sl__task *t)
{
    if (!atomic_exchange_explicit(&t->mail, 0, memory_order_acq_rel))
        return 0;
    int64_t triggers[SL_MAX_TRIGGERS];
    pthread_mutex_lock(&t->mb.mu);
    int n = t->mb.ntriggers;
    memcpy(triggers, t->mb.triggers, sizeof triggers[0] * (size_t)n);
    t->mb.ntriggers = 0;
    int64_t note = t->mb.notify;
    t->mb.notify = 0;
    pthread_mutex_unlock(&t->mb.mu);
    for (int i = 0; i < n; i++) {
        int rc = snapshot_task(t, triggers[i]);
        if (rc < 0)
            return rc;
    }
    if (note > t->notified)
        return notify(t, note);
    return 0;
}

/* ---- barriers at tasks with inputs ---------------------------------------------------- */

static void unblock_all(sl__task *t)
{
    for (int i = 0; i < t->gate->nchans; i++)
        t->gate->chans[i]->blocked = false;
}

/* Exactly-once: is the alignment of align_id complete? Then snapshot and release. */
static int maybe_aligned(sl__task *t)
{
    if (!t->align_id || t->align_count + t->nended < t->nchans)
        return 0;
    int64_t id = t->align_id;
    t->align_id = 0;
    t->align_count = 0;
    int rc = snapshot_task(t, id);
    unblock_all(t);
    return rc;
}

/* At-least-once: snapshot every checkpoint whose barriers all arrived. */
static int maybe_counted(sl__task *t)
{
    for (int i = 0; i < t->nalo;) {
        if (t->alo_counts[i] + t->nended < t->nchans) {
            i++;
            continue;
        }
        int64_t id = t->alo_ids[i];
        t->alo_ids[i] = t->alo_ids[t->nalo - 1];
        t->alo_counts[i] = t->alo_counts[t->nalo - 1];
        t->nalo--;
        if (id > t->last_barrier) {
            int rc = snapshot_task(t, id);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

int sl__task_on_barrier(sl__task *t, sl__channel *c, int64_t id)
{
    if (id <= t->last_barrier)
        return 0; /* a checkpoint already taken (or given up for a newer one) */
    if (!t->job->exactly_once) {
        int i = 0;
        while (i < t->nalo && t->alo_ids[i] != id)
            i++;
        if (i == t->nalo) {
            if (t->nalo == SL_MAX_TRIGGERS)
                return 0;
            t->alo_ids[t->nalo] = id;
            t->alo_counts[t->nalo++] = 0;
        }
        t->alo_counts[i]++;
        return maybe_counted(t);
    }
    if (t->align_id && id > t->align_id) {
        /* a newer checkpoint overtook the one being aligned: give that one up (the
         * coordinator expires it) and align the newer one */
        unblock_all(t);
        t->align_id = 0;
        t->align_count = 0;
    }
    if (!t->align_id)
        t->align_id = id;
    if (id < t->align_id)
        return 0;
    c->blocked = true;
    t->align_count++;
    return maybe_aligned(t);
}

int sl__task_on_end(sl__task *t, sl__channel *c)
{
    c->ended = true;
    t->nended++;
    if (!t->job->storage)
        return 0;
    return t->job->exactly_once ? maybe_aligned(t) : maybe_counted(t);
}

/* ---- restore -------------------------------------------------------------------------- */

/* The key groups [*lo, *hi) of [start, end) that old subtask ss held; returns how many. */
static int overlap(const sl__subtask_state *ss, int start, int end, int *lo, int *hi)
{
    *lo = ss->kg_start > start ? ss->kg_start : start;
    *hi = ss->kg_end < end ? ss->kg_end : end;
    return *hi > *lo ? *hi - *lo : 0;
}

/* Keyed state of key groups [lo, hi) from the database files of old subtask ss (an
 * incremental checkpoint). With adopt, ctx's RocksDB backend takes the files as its database
 * and deletes the key groups it does not own; otherwise a temporary RocksDB backend over the
 * files hands each key group to ctx's backend in the canonical form (another parallelism,
 * or a heap backend). */
static int restore_db(sl_ctx *ctx, const sl__subtask_state *ss, int lo, int hi, bool adopt,
                      char *err, size_t cap)
{
    sl__job *job = ctx->task->job;
    const sl__checkpoint_meta *m = job->restore;
    sl__keyed_backend *target = ctx->kb;
    if (!adopt) {
        sl__rocksdb_options o;
        sl__rocksdb_options_from_config(job->g->config, &o);
        o.name = ctx->node->uid;
        o.subtask = ctx->subtask;
        o.incremental = false;
        target = sl__rocksdb_backend_create(&o, job->g->max_parallelism, ss->kg_start, ss->kg_end,
                                            NULL, err, cap, NULL);
        if (!target)
            return SL_EIO;
    }
    char *dir = NULL;
    int rc = sl__rocksdb_backend_scratch_dir(target, &dir, err, cap);
    if (rc == 0)
        rc = sl__storage_fetch_db_files(job->storage, job->restore_chk, m->id, ss, dir, err, cap);
    if (rc == 0)
        rc = sl__rocksdb_backend_adopt(target, dir, lo, hi, err, cap);
    sl__free(dir);
    if (rc == 0 && adopt && job->storage && !strcmp(m->job_id, sl__storage_job_id(job->storage))) {
        /* this job's own checkpoint: its shared files need not be stored again */
        for (int f = 0; f < ss->nfiles; f++)
            if (!strncmp(ss->files[f].path, "../shared/", 10))
                sl__rocksdb_backend_set_uploaded(target, ss->files[f].name, ss->files[f].path + 10);
    }
    if (!adopt) {
        sl__buf b = {0};
        for (int kg = lo; kg < hi && rc == 0; kg++) {
            b.len = 0;
            rc = sl__keyed_backend_snapshot_kg(target, kg, &b);
            if (rc < 0)
                snprintf(err, cap, "reading key group %d of the restored database failed: %s", kg,
                         sl_strerror(rc));
            else
                rc = sl__keyed_backend_restore_kg(ctx->kb, kg, b.data, b.len, err, cap);
        }
        sl__buf_free(&b);
        sl__keyed_backend_destroy(target);
    }
    return rc;
}

int sl__op_restore(sl_ctx *ctx)
{
    sl__job *job = ctx->task->job;
    const sl__checkpoint_meta *m = job->restore;
    if (!m)
        return 0;
    const sl__operator_state_meta *o = sl__checkpoint_meta_find(m, ctx->node->uid);
    if (!o)
        return 0;
    ctx->restored = true;
    char err[512];
    int rc = 0;
    sl__state_reader **readers = sl__xcalloc((size_t)o->parallelism, sizeof *readers);
    /* keyed state: every key group this subtask now owns, from the old subtask that had it */
    if (ctx->kb) {
        const sl__job_graph *g = job->g;
        int start = sl__key_group_start(ctx->subtask, ctx->parallelism, g->max_parallelism);
        int end = sl__key_group_start(ctx->subtask + 1, ctx->parallelism, g->max_parallelism);
        /* database files (incremental): a RocksDB backend adopts those of the old subtask
         * that overlaps it most, the others go through the canonical form */
        int base = -1, best = 0, lo, hi;
        for (int s = 0; s < o->parallelism && sl__backend_is_rocksdb(ctx->kb); s++)
            if (o->subtasks[s].nfiles && overlap(&o->subtasks[s], start, end, &lo, &hi) > best) {
                best = hi - lo;
                base = s;
            }
        if (base >= 0) {
            overlap(&o->subtasks[base], start, end, &lo, &hi);
            rc = restore_db(ctx, &o->subtasks[base], lo, hi, true, err, sizeof err);
        }
        for (int s = 0; s < o->parallelism && rc == 0; s++)
            if (s != base && o->subtasks[s].nfiles &&
                overlap(&o->subtasks[s], start, end, &lo, &hi))
                rc = restore_db(ctx, &o->subtasks[s], lo, hi, false, err, sizeof err);
        for (int kg = start; kg < end && rc == 0; kg++) {
            for (int s = 0; s < o->parallelism; s++) {
                const sl__subtask_state *ss = &o->subtasks[s];
                if (kg < ss->kg_start || kg >= ss->kg_end || ss->nfiles)
                    continue;
                if (!readers[s]) {
                    rc = sl__state_reader_open(job->storage, job->restore_chk, m->id, ss,
                                               &readers[s], err, sizeof err);
                    if (rc < 0)
                        break;
                }
                const uint8_t *p;
                size_t n;
                rc = sl__state_reader_kg(readers[s], kg, &p, &n);
                if (rc == 0 && n)
                    rc = sl__keyed_backend_restore_kg(ctx->kb, kg, p, n, err, sizeof err);
                else if (rc < 0)
                    snprintf(err, sizeof err, "key group %d missing in %s", kg, ss->file);
                break;
            }
        }
    }
    /* operator state: redistributed from every old subtask's part */
    if (rc == 0) {
        sl__buf *parts = sl__xcalloc((size_t)o->parallelism, sizeof *parts);
        for (int s = 0; s < o->parallelism && rc == 0; s++) {
            const sl__subtask_state *ss = &o->subtasks[s];
            if (!ss->op_length) {
                /* no section: a store without state (varint 0 states, see state.h) */
                rc = sl__buf_append(&parts[s], "", 1);
                continue;
            }
            if (!readers[s]) {
                rc = sl__state_reader_open(job->storage, job->restore_chk, m->id, ss, &readers[s],
                                           err, sizeof err);
                if (rc < 0)
                    break;
            }
            const uint8_t *p;
            size_t n;
            rc = sl__state_reader_operator(readers[s], &p, &n);
            if (rc == 0)
                rc = sl__buf_append(&parts[s], p, n);
        }
        if (rc == 0)
            rc = sl__operator_store_restore(ctx->os, parts, o->parallelism, ctx->subtask,
                                            ctx->parallelism, err, sizeof err);
        for (int s = 0; s < o->parallelism; s++)
            sl__buf_free(&parts[s]);
        sl__free(parts);
    }
    for (int s = 0; s < o->parallelism; s++)
        sl__state_reader_free(readers[s]);
    sl__free(readers);
    if (rc < 0)
        return sl_fail(ctx, "restoring from checkpoint %lld: %s", (long long)m->id, err);
    ctx->finished_on_restore = sl__restores_finished(o, ctx->subtask, ctx->parallelism);
    if (m->format_version < 3) {
        /* a version 2 checkpoint marked the whole operator, in its operator state */
        sl_state *fin = sl__operator_store_find(ctx->os, legacy_finished_state);
        if (!fin)
            fin = sl__operator_list_state(ctx->os, ctx, legacy_finished_state, "finished:bool",
                                          SL_UNION);
        sl_iter *it;
        if (fin && sl_list_get(fin, &it) > 0) {
            ctx->finished_on_restore = true;
            sl_iter_close(it);
        }
    }
    return 0;
}

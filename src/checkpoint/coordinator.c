/*
 * coordinator.c - pending checkpoints, acknowledgements, completion and failure counting.
 *
 * A pending checkpoint collects the operator states of every task's acknowledgement. When
 * all ntasks have acknowledged, the operator states are grouped by uid into the metadata and
 * handed to the storage, which makes the checkpoint durable (_metadata written last). Older
 * pending checkpoints are then subsumed (aborted, as in Flink). A decline or a timeout fails
 * the checkpoint; more consecutive failures than tolerated fail the job.
 */
#include "checkpoint/coordinator.h"
#include "core/alloc.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct pending {
    int64_t id;
    int64_t trigger_ms;   /* coordinator clock */
    int64_t timestamp_ms; /* wall clock, for the metadata */
    int acks;
    int64_t max_sync_us;
    sl__op_ack *ops;
    int nops, cap;
    struct pending *next;
} pending;

struct sl__coordinator {
    sl__coord_config cfg;
    sl__storage *st;
    int ntasks;
    int64_t next_id;
    char *job_id, *job_name;
    pending *pending; /* oldest first */
    int npending;
    int64_t last_trigger_ms;
    int64_t last_complete_ms;
    int consecutive_failures;
    sl__coord_stats stats;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

sl__coordinator *sl__coord_create(const sl__coord_config *cfg, sl__storage *st, int ntasks,
                                  int64_t first_id, const char *job_id, const char *job_name)
{
    sl__coordinator *c = sl__calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cfg = *cfg;
    c->st = st;
    c->ntasks = ntasks;
    c->next_id = first_id;
    c->job_id = sl__strdup(job_id);
    c->job_name = sl__strdup(job_name);
    c->last_trigger_ms = INT64_MIN / 2;
    c->last_complete_ms = INT64_MIN / 2;
    if (!c->job_id || !c->job_name) {
        sl__coord_destroy(c);
        return NULL;
    }
    return c;
}

static void pending_free(pending *p)
{
    for (int i = 0; i < p->nops; i++)
        sl__subtask_state_free(&p->ops[i].state);
    sl__free(p->ops);
    sl__free(p);
}

/* Removes p from the list and frees it; aborts its files when abort is set. */
static void drop(sl__coordinator *c, pending *p, bool abort)
{
    pending **pp = &c->pending;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    c->npending--;
    if (abort)
        sl__storage_abort(c->st, p->id);
    pending_free(p);
}

void sl__coord_destroy(sl__coordinator *c)
{
    if (!c)
        return;
    while (c->pending)
        drop(c, c->pending, true);
    sl__free(c->job_id);
    sl__free(c->job_name);
    sl__free(c);
}

int64_t sl__coord_trigger_now(sl__coordinator *c, int64_t now_ms)
{
    pending *p = sl__calloc(1, sizeof *p);
    if (!p)
        return 0;
    p->id = c->next_id++;
    p->trigger_ms = now_ms;
    p->timestamp_ms = wall_ms();
    pending **pp = &c->pending;
    while (*pp)
        pp = &(*pp)->next;
    *pp = p;
    c->npending++;
    c->last_trigger_ms = now_ms;
    SL_INFO("event=checkpoint_triggered id=%lld", (long long)p->id);
    return p->id;
}

int64_t sl__coord_maybe_trigger(sl__coordinator *c, int64_t now_ms)
{
    if (c->npending >= c->cfg.max_concurrent)
        return 0;
    if (now_ms - c->last_trigger_ms < c->cfg.interval_ms)
        return 0;
    if (now_ms - c->last_complete_ms < c->cfg.min_pause_ms)
        return 0;
    return sl__coord_trigger_now(c, now_ms);
}

static pending *find(sl__coordinator *c, int64_t id)
{
    for (pending *p = c->pending; p; p = p->next)
        if (p->id == id)
            return p;
    return NULL;
}

static sl__coord_event failed(sl__coordinator *c, int64_t id, const char *why, char *err,
                              size_t cap)
{
    c->consecutive_failures++;
    c->stats.failed++;
    SL_WARN("event=checkpoint_failed id=%lld reason=\"%s\" consecutive=%d tolerable=%d",
            (long long)id, why, c->consecutive_failures, c->cfg.tolerable_failures);
    if (c->consecutive_failures > c->cfg.tolerable_failures) {
        snprintf(err, cap,
                 "checkpoint %lld failed (%s) and %d consecutive checkpoint failures exceed the "
                 "tolerable number %d (execution.checkpointing.tolerable-failed-checkpoints)",
                 (long long)id, why, c->consecutive_failures, c->cfg.tolerable_failures);
        return SL_COORD_FAIL_JOB;
    }
    return SL_COORD_FAILED;
}

static int cmp_ack(const void *a, const void *b)
{
    const sl__op_ack *x = a, *y = b;
    int c = strcmp(x->uid, y->uid);
    return c ? c : x->subtask - y->subtask;
}

/* Builds the metadata of p (grouping operator states by uid) and completes it in storage. */
static int complete(sl__coordinator *c, pending *p, int64_t now_ms, char *err, size_t cap)
{
    qsort(p->ops, (size_t)p->nops, sizeof *p->ops, cmp_ack);
    sl__checkpoint_meta m = {.id = p->id,
                             .job_id = c->job_id,
                             .job_name = c->job_name,
                             .timestamp_ms = p->timestamp_ms,
                             .duration_ms = now_ms - p->trigger_ms};
    sl__operator_state_meta *ops = sl__calloc((size_t)(p->nops ? p->nops : 1), sizeof *ops);
    if (!ops) {
        snprintf(err, cap, "out of memory completing checkpoint %lld", (long long)p->id);
        return SL_ENOMEM;
    }
    int n = 0;
    for (int i = 0; i < p->nops;) {
        int j = i;
        while (j < p->nops && !strcmp(p->ops[j].uid, p->ops[i].uid))
            j++;
        sl__operator_state_meta *o = &ops[n++];
        o->uid = (char *)p->ops[i].uid;
        o->name = (char *)p->ops[i].name;
        o->parallelism = p->ops[i].parallelism;
        o->max_parallelism = p->ops[i].max_parallelism;
        o->subtasks = sl__calloc((size_t)o->parallelism, sizeof *o->subtasks);
        if (!o->subtasks || j - i != o->parallelism) {
            for (int k = 0; k < n; k++)
                sl__free(ops[k].subtasks);
            sl__free(ops);
            snprintf(err, cap, "checkpoint %lld: operator %s acknowledged %d of %d subtasks",
                     (long long)p->id, p->ops[i].uid, j - i, p->ops[i].parallelism);
            return SL_ESTATE;
        }
        for (int k = i; k < j; k++)
            o->subtasks[p->ops[k].subtask] = p->ops[k].state; /* shallow: p keeps ownership */
        i = j;
    }
    m.noperators = n;
    m.operators = ops;
    int rc = sl__storage_complete(c->st, &m, err, cap);
    /* full size, and what this checkpoint stored (less with incremental snapshots) */
    uint64_t size = 0, stored = 0;
    for (int i = 0; i < p->nops; i++) {
        const sl__subtask_state *ss = &p->ops[i].state;
        size += ss->file_size;
        stored += ss->file_size;
        for (int f = 0; f < ss->nfiles; f++) {
            size += ss->files[f].size;
            stored += ss->files[f].stored ? ss->files[f].size : 0;
        }
    }
    for (int k = 0; k < n; k++)
        sl__free(ops[k].subtasks);
    sl__free(ops);
    if (rc == 0) {
        c->stats.completed++;
        c->stats.last_completed_id = p->id;
        c->stats.last_duration_ms = m.duration_ms;
        c->stats.last_size_bytes = (int64_t)size;
        c->stats.last_stored_bytes = (int64_t)stored;
        c->stats.last_sync_pause_us = p->max_sync_us;
        SL_INFO("event=checkpoint_completed id=%lld duration_ms=%lld size_bytes=%llu "
                "stored_bytes=%llu sync_pause_max_us=%lld",
                (long long)p->id, (long long)m.duration_ms, (unsigned long long)size,
                (unsigned long long)stored, (long long)p->max_sync_us);
    }
    return rc;
}

void sl__coord_sync_pause(sl__coordinator *c, int64_t id, int64_t us)
{
    pending *p = find(c, id);
    if (p && us > p->max_sync_us)
        p->max_sync_us = us;
}

sl__coord_event sl__coord_ack(sl__coordinator *c, int64_t id, sl__op_ack *acks, int nacks,
                              bool declined, const char *reason, int64_t now_ms, char *err,
                              size_t cap)
{
    pending *p = find(c, id);
    if (!p) {
        for (int i = 0; i < nacks; i++)
            sl__subtask_state_free(&acks[i].state);
        return SL_COORD_PENDING;
    }
    if (declined) {
        for (int i = 0; i < nacks; i++)
            sl__subtask_state_free(&acks[i].state);
        drop(c, p, true);
        return failed(c, id, reason && *reason ? reason : "declined by a task", err, cap);
    }
    if (p->nops + nacks > p->cap) {
        int ncap = (p->nops + nacks) * 2;
        sl__op_ack *o = sl__realloc(p->ops, sizeof *o * (size_t)ncap);
        if (!o) {
            for (int i = 0; i < nacks; i++)
                sl__subtask_state_free(&acks[i].state);
            drop(c, p, true);
            return failed(c, id, "out of memory", err, cap);
        }
        p->ops = o;
        p->cap = ncap;
    }
    memcpy(p->ops + p->nops, acks, sizeof *acks * (size_t)nacks);
    p->nops += nacks;
    if (++p->acks < c->ntasks)
        return SL_COORD_PENDING;

    char why[512];
    int rc = complete(c, p, now_ms, why, sizeof why);
    if (rc < 0) {
        drop(c, p, true);
        return failed(c, id, why, err, cap);
    }
    c->consecutive_failures = 0;
    c->last_complete_ms = now_ms;
    /* older pending checkpoints are subsumed by this one */
    while (c->pending && c->pending->id < id)
        drop(c, c->pending, true);
    drop(c, p, false);
    return SL_COORD_COMPLETED;
}

sl__coord_event sl__coord_tick(sl__coordinator *c, int64_t now_ms, int64_t *expired, char *err,
                               size_t cap)
{
    *expired = 0;
    for (pending *p = c->pending; p; p = p->next) {
        if (now_ms - p->trigger_ms >= c->cfg.timeout_ms) {
            int64_t id = p->id;
            *expired = id;
            drop(c, p, true);
            char why[96];
            snprintf(why, sizeof why, "expired after %lld ms (execution.checkpointing.timeout)",
                     (long long)c->cfg.timeout_ms);
            return failed(c, id, why, err, cap);
        }
    }
    return SL_COORD_PENDING;
}

void sl__coord_abort_pending(sl__coordinator *c)
{
    while (c->pending)
        drop(c, c->pending, true);
}

void sl__coord_new_attempt(sl__coordinator *c, int64_t now_ms)
{
    if (!c)
        return;
    sl__coord_abort_pending(c);
    c->consecutive_failures = 0;
    c->last_trigger_ms = now_ms;
}

int sl__coord_pending_ids(const sl__coordinator *c, int64_t *ids, int cap)
{
    int n = 0;
    for (const pending *p = c->pending; p && n < cap; p = p->next)
        ids[n++] = p->id;
    return n;
}

void sl__coord_stats_get(const sl__coordinator *c, sl__coord_stats *out)
{
    *out = c->stats;
}

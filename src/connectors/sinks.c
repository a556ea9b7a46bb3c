/*
 * sinks.c - the built-in sinks on the public sink API: print to stdout/stderr in Flink's
 * format, and text files.
 */
#include "api/env.h"
#include "core/alloc.h"
#include "core/failpoint.h"
#include "runtime/runtime.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- print ----------------------------------------------------------------------------- */

typedef struct line_buf {
    char *data;
    size_t cap;
} line_buf;

/* Formats row as a line (with the "N> " prefix when parallel) into lb; returns its length. */
static size_t format_line(sl_ctx *ctx, line_buf *lb, const sl_value *row, size_t arity)
{
    for (;;) {
        size_t at = 0;
        if (sl_ctx_parallelism(ctx) > 1)
            at = (size_t)snprintf(lb->data, lb->cap, "%d> ", sl_ctx_subtask(ctx) + 1);
        size_t need =
            at < lb->cap ? sl_row_format(row, arity, lb->data + at, lb->cap - at) : lb->cap;
        if (at + need + 2 <= lb->cap) {
            lb->data[at + need] = '\n';
            return at + need + 1;
        }
        lb->cap = (at + need + 2) * 2;
        lb->data = sl__xrealloc(lb->data, lb->cap);
    }
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

typedef struct print_cfg {
    int fd;
    int arity;
} print_cfg;

static int lb_open(sl_ctx *ctx)
{
    line_buf *lb = sl__calloc(1, sizeof *lb);
    if (!lb)
        return sl_fail(ctx, "out of memory");
    lb->cap = 256;
    lb->data = sl__malloc(lb->cap);
    if (!lb->data) {
        sl__free(lb);
        return sl_fail(ctx, "out of memory");
    }
    sl_ctx_set_local(ctx, lb);
    return 0;
}

static int lb_close(sl_ctx *ctx)
{
    line_buf *lb = sl_ctx_local(ctx);
    if (lb) {
        sl__free(lb->data);
        sl__free(lb);
        sl_ctx_set_local(ctx, NULL);
    }
    return 0;
}

/* One write(2) per line: lines from parallel subtasks never interleave and show up at once
 * for whoever watches the terminal or pipe. */
static int print_invoke(sl_ctx *ctx, const sl_value *row)
{
    print_cfg *c = sl_ctx_user(ctx);
    line_buf *lb = sl_ctx_local(ctx);
    size_t n = format_line(ctx, lb, row, (size_t)c->arity);
    if (write_all(c->fd, lb->data, n) < 0)
        return sl_fail(ctx, "print sink: cannot write to %s: %s", c->fd == 1 ? "stdout" : "stderr",
                       strerror(errno));
    return 0;
}

static void plain_free(void *p)
{
    sl__free(p);
}

static sl_stream *print_to(sl_stream *in, int fd, const char *name)
{
    if (!in || sl_env_error_code(in->env))
        return NULL;
    print_cfg *c = sl__calloc(1, sizeof *c);
    if (!c) {
        sl_env_fail(in->env, SL_ENOMEM, "out of memory");
        return NULL;
    }
    c->fd = fd;
    c->arity = sl_stream_arity(in);
    if (!sl__env_own(in->env, c, plain_free))
        return NULL;
    sl_sink_fn fn = {.open = lb_open, .close = lb_close, .invoke = print_invoke, .user = c};
    return sl_add_sink(in, name, &fn);
}

sl_stream *sl_print(sl_stream *in)
{
    return print_to(in, STDOUT_FILENO, "Print to Std. Out");
}

sl_stream *sl_print_stderr(sl_stream *in)
{
    return print_to(in, STDERR_FILENO, "Print to Std. Err");
}

/* ---- text files ------------------------------------------------------------------------------
 *
 * Without checkpointing, rows go straight to path (parallelism 1) or path/part-<subtask>.
 *
 * With checkpointing the sink is a two-phase-commit sink (Flink's FileSink): path is a
 * directory; rows go to a hidden in-progress file; at a checkpoint's barrier the file is
 * closed (fsynced) and becomes pending for that checkpoint, and its name goes into the
 * sink's operator state; when the checkpoint completes, its pending files are renamed to
 * their visible names (committed). After a failure, the restored state names the files of
 * the completed checkpoint: subtask 0 commits them (again, idempotently) and deletes every
 * other hidden file of earlier attempts, whose rows will be replayed. A job that finishes
 * commits the rest once every task has finished. Names:
 *   .part-<job>-<attempt>-<subtask>-<seq>.inprogress   open, being written
 *   .part-<job>-<attempt>-<subtask>-<seq>.pending      closed, waiting for its checkpoint
 *   part-<job>-<attempt>-<subtask>-<seq>               committed
 * where <job> is the first 8 hex digits of the job id (new for every run of the program).
 */

typedef struct pending_file {
    char *name; /* "part-..." (the committed name) */
    int64_t checkpoint;
} pending_file;

typedef struct text_cfg {
    char *path;
    int arity;
    /* exactly-once: files closed by subtasks that ended cleanly, committed when the whole
     * job has finished (guarded by mu; any subtask thread, then the sl_execute thread) */
    pthread_mutex_t mu;
    pending_file *at_finish;
    int nfinish, capfinish;
    int finish_attempt;
} text_cfg;

typedef struct text_state {
    line_buf lb;
    FILE *f;
    char *path; /* open file */
    bool two_phase;
    char prefix[48]; /* "part-<job>-<attempt>-<subtask>" */
    int seq;
    sl_state *pending_state;
    pending_file *pending;
    int npending, cappending;
} text_state;

static void text_cfg_free(void *p)
{
    text_cfg *c = p;
    for (int i = 0; i < c->nfinish; i++)
        sl__free(c->at_finish[i].name);
    sl__free(c->at_finish);
    pthread_mutex_destroy(&c->mu);
    sl__free(c->path);
    sl__free(c);
}

static char *join(const char *dir, const char *prefix, const char *name, const char *suffix)
{
    size_t n = strlen(dir) + strlen(prefix) + strlen(name) + strlen(suffix) + 2;
    char *p = sl__xmalloc(n);
    snprintf(p, n, "%s/%s%s%s", dir, prefix, name, suffix);
    return p;
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Renames .<name>.pending to <name>; a file already committed is fine. */
static int commit_file(const char *dir, const char *name, char *err, size_t cap)
{
    char *from = join(dir, ".", name, ".pending");
    char *to = join(dir, "", name, "");
    int rc = 0;
    if (rename(from, to) < 0) {
        if (errno != ENOENT || access(to, F_OK) < 0) {
            snprintf(err, cap, "file sink: cannot commit '%s' to '%s': %s", from, to,
                     errno == ENOENT ? "the pending file is missing" : strerror(errno));
            rc = -1;
        }
    }
    sl__free(from);
    sl__free(to);
    return rc;
}

static void add_pending(pending_file **arr, int *n, int *cap, char *name, int64_t checkpoint)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *arr = sl__xrealloc(*arr, sizeof **arr * (size_t)*cap);
    }
    (*arr)[(*n)++] = (pending_file){name, checkpoint};
}

/* Closes the open file; in two-phase mode it becomes pending for checkpoint. */
static int close_current(sl_ctx *ctx, text_state *st, int64_t checkpoint)
{
    if (!st->f)
        return 0;
    int rc = 0;
    if (fflush(st->f) != 0 || fsync(fileno(st->f)) != 0)
        rc = sl_fail(ctx, "file sink: cannot write '%s': %s", st->path, strerror(errno));
    if (fclose(st->f) != 0 && rc == 0)
        rc = sl_fail(ctx, "file sink: cannot close '%s': %s", st->path, strerror(errno));
    st->f = NULL;
    if (rc == 0 && st->two_phase) {
        text_cfg *c = sl_ctx_user(ctx);
        char name[96];
        snprintf(name, sizeof name, "%s-%d", st->prefix, st->seq);
        char *pend = join(c->path, ".", name, ".pending");
        if (rename(st->path, pend) < 0)
            rc = sl_fail(ctx, "file sink: cannot rename '%s' to '%s': %s", st->path, pend,
                         strerror(errno));
        else
            add_pending(&st->pending, &st->npending, &st->cappending, sl__xstrdup(name),
                        checkpoint);
        sl__free(pend);
        st->seq++;
    }
    sl__free(st->path);
    st->path = NULL;
    return rc;
}

static int open_current(sl_ctx *ctx, text_state *st)
{
    text_cfg *c = sl_ctx_user(ctx);
    if (st->two_phase) {
        char name[96];
        snprintf(name, sizeof name, "%s-%d", st->prefix, st->seq);
        st->path = join(c->path, ".", name, ".inprogress");
    } else if (sl_ctx_parallelism(ctx) == 1) {
        st->path = sl__xstrdup(c->path);
    } else {
        char name[32];
        snprintf(name, sizeof name, "part-%d", sl_ctx_subtask(ctx));
        st->path = join(c->path, "", name, "");
    }
    st->f = fopen(st->path, "w");
    if (!st->f)
        return sl_fail(ctx, "file sink: cannot open '%s' for writing: %s", st->path,
                       strerror(errno));
    return 0;
}

/* Subtask 0 after a restore: commit what the checkpoint says, delete other hidden files
 * that earlier attempts left (their rows are replayed). */
static int recover_files(sl_ctx *ctx, text_state *st, pending_file *restored, int n)
{
    text_cfg *c = sl_ctx_user(ctx);
    char err[1024];
    for (int i = 0; i < n; i++)
        if (commit_file(c->path, restored[i].name, err, sizeof err) < 0)
            return sl_fail(ctx, "%s (checkpoint %lld)", err, (long long)restored[i].checkpoint);
    DIR *d = opendir(c->path);
    if (!d)
        return sl_fail(ctx, "file sink: cannot read directory '%s': %s", c->path, strerror(errno));
    char own[64];
    snprintf(own, sizeof own, ".%.*s", (int)(strrchr(st->prefix, '-') - st->prefix), st->prefix);
    /* own is ".part-<job>-<attempt>": this attempt's files are kept */
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        size_t len = strlen(nm);
        bool hidden_part =
            !strncmp(nm, ".part-", 6) && ((len > 11 && !strcmp(nm + len - 11, ".inprogress")) ||
                                          (len > 8 && !strcmp(nm + len - 8, ".pending")));
        if (!hidden_part || !strncmp(nm, own, strlen(own)))
            continue;
        char *full = join(c->path, "", nm, "");
        if (unlink(full) < 0 && errno != ENOENT) {
            int e = errno;
            closedir(d);
            sl_fail(ctx, "file sink: cannot delete '%s': %s", full, strerror(e));
            sl__free(full);
            return SL_EIO;
        }
        sl__free(full);
    }
    closedir(d);
    sync_dir(c->path);
    return 0;
}

static int text_init(sl_ctx *ctx)
{
    text_cfg *c = sl_ctx_user(ctx);
    text_state *st = sl__calloc(1, sizeof *st);
    if (!st)
        return sl_fail(ctx, "out of memory");
    sl_ctx_set_local(ctx, st);
    st->lb.cap = 256;
    st->lb.data = sl__xmalloc(st->lb.cap);
    st->two_phase = sl__ctx_checkpointing(ctx);
    if (!st->two_phase) {
        if (sl_ctx_parallelism(ctx) > 1 && mkdir(c->path, 0777) < 0 && errno != EEXIST)
            return sl_fail(ctx, "file sink: cannot create directory '%s': %s", c->path,
                           strerror(errno));
        return 0;
    }
    if (mkdir(c->path, 0777) < 0 && errno != EEXIST)
        return sl_fail(ctx, "file sink: cannot create directory '%s': %s", c->path,
                       strerror(errno));
    snprintf(st->prefix, sizeof st->prefix, "part-%.8s-%d-%d", sl__ctx_job_id(ctx),
             sl_ctx_attempt(ctx), sl_ctx_subtask(ctx));
    pthread_mutex_lock(&c->mu);
    if (sl_ctx_attempt(ctx) > c->finish_attempt) {
        /* files an earlier attempt closed at its end are replayed, not committed */
        for (int i = 0; i < c->nfinish; i++)
            sl__free(c->at_finish[i].name);
        c->nfinish = 0;
        c->finish_attempt = sl_ctx_attempt(ctx);
    }
    pthread_mutex_unlock(&c->mu);
    st->pending_state =
        sl_operator_list_state(ctx, "pending-files", "file:str,checkpoint:i64", SL_UNION);
    if (!st->pending_state)
        return SL_ESTATE;
    if (!sl_ctx_is_restored(ctx))
        return 0;
    /* every subtask sees every pending file (union); subtask 0 commits them */
    pending_file *restored = NULL;
    int n = 0, cap = 0;
    sl_iter *it;
    int rc = sl_list_get(st->pending_state, &it);
    if (rc > 0) {
        sl_value row[2];
        while (sl_iter_next(it, row) > 0)
            add_pending(&restored, &n, &cap, sl__xstrndup(row[0].u.s.ptr, row[0].u.s.len),
                        row[1].u.i64);
        sl_iter_close(it);
    }
    if (rc >= 0 && sl_ctx_subtask(ctx) == 0)
        rc = recover_files(ctx, st, restored, n);
    for (int i = 0; i < n; i++)
        sl__free(restored[i].name);
    sl__free(restored);
    if (rc >= 0)
        rc = sl_list_update(st->pending_state, NULL, 0);
    return rc < 0 ? rc : 0;
}

static int text_invoke(sl_ctx *ctx, const sl_value *row)
{
    text_cfg *c = sl_ctx_user(ctx);
    text_state *st = sl_ctx_local(ctx);
    if (!st->f) {
        int rc = open_current(ctx, st);
        if (rc < 0)
            return rc;
    }
    /* no "N> " prefix in files */
    size_t need = sl_row_format(row, (size_t)c->arity, st->lb.data, st->lb.cap);
    if (need + 1 >= st->lb.cap) {
        st->lb.cap = (need + 2) * 2;
        st->lb.data = sl__xrealloc(st->lb.data, st->lb.cap);
        sl_row_format(row, (size_t)c->arity, st->lb.data, st->lb.cap);
    }
    st->lb.data[need] = '\n';
    if (fwrite(st->lb.data, 1, need + 1, st->f) != need + 1)
        return sl_fail(ctx, "file sink: cannot write '%s': %s", st->path, strerror(errno));
    return 0;
}

static int text_snapshot(sl_ctx *ctx, int64_t id)
{
    text_state *st = sl_ctx_local(ctx);
    if (!st->two_phase)
        return 0;
    int rc = close_current(ctx, st, id);
    if (rc < 0)
        return rc;
    sl_value *rows = sl_ctx_alloc(ctx, sizeof *rows * 2 * (size_t)(st->npending + 1));
    for (int i = 0; i < st->npending; i++) {
        rows[2 * i] = sl_str(st->pending[i].name);
        rows[2 * i + 1] = SL_I64(st->pending[i].checkpoint);
    }
    return sl_list_update(st->pending_state, rows, (size_t)st->npending);
}

static int text_notify(sl_ctx *ctx, int64_t id)
{
    text_cfg *c = sl_ctx_user(ctx);
    text_state *st = sl_ctx_local(ctx);
    int keep = 0, rc = 0;
    char err[1024];
    for (int i = 0; i < st->npending; i++) {
        if (st->pending[i].checkpoint <= id && rc == 0) {
            if (commit_file(c->path, st->pending[i].name, err, sizeof err) < 0)
                rc = sl_fail(ctx, "%s", err);
            sl__free(st->pending[i].name);
        } else {
            st->pending[keep++] = st->pending[i];
        }
    }
    st->npending = keep;
    if (rc == 0)
        sync_dir(c->path);
    return rc;
}

static int text_close(sl_ctx *ctx)
{
    text_cfg *c = sl_ctx_user(ctx);
    text_state *st = sl_ctx_local(ctx);
    if (!st)
        return 0;
    int rc = 0;
    bool clean = !sl_ctx_cancelled(ctx);
    if (st->f) {
        if (clean || !st->two_phase) {
            rc = close_current(ctx, st, INT64_MAX);
        } else {
            fclose(st->f); /* failed or cancelled: the rows are replayed or never shown */
            st->f = NULL;
        }
    }
    if (st->two_phase && clean && rc == 0) {
        /* committed once the whole job has finished (see text_finish) */
        pthread_mutex_lock(&c->mu);
        for (int i = 0; i < st->npending; i++) {
            add_pending(&c->at_finish, &c->nfinish, &c->capfinish, st->pending[i].name,
                        st->pending[i].checkpoint);
            st->pending[i].name = NULL;
        }
        pthread_mutex_unlock(&c->mu);
    }
    for (int i = 0; i < st->npending; i++)
        sl__free(st->pending[i].name);
    sl__free(st->pending);
    sl__free(st->path);
    sl__free(st->lb.data);
    sl__free(st);
    sl_ctx_set_local(ctx, NULL);
    return rc;
}

/* Commits what the subtasks closed at their end, once the whole job has finished; a file
 * that cannot be committed is an error (the caller keeps the checkpoints). */
static int text_finish(void *arg, bool ok, char *err, size_t cap)
{
    text_cfg *c = arg;
    int rc = 0;
    if (ok && sl__failpoint("sink.commit")) {
        snprintf(err, cap, "file sink: failpoint sink.commit fired committing to '%s'", c->path);
        rc = SL_EIO;
    }
    if (ok && rc == 0) {
        for (int i = 0; i < c->nfinish && rc == 0; i++)
            rc = commit_file(c->path, c->at_finish[i].name, err, cap) < 0 ? SL_EIO : 0;
        if (rc == 0 && sync_dir(c->path) < 0) {
            snprintf(err, cap, "file sink: cannot sync directory '%s': %s", c->path,
                     strerror(errno));
            rc = SL_EIO;
        }
    }
    for (int i = 0; i < c->nfinish; i++)
        sl__free(c->at_finish[i].name);
    c->nfinish = 0;
    return rc;
}

sl_stream *sl_write_text(sl_stream *in, const char *path)
{
    if (!in || sl_env_error_code(in->env))
        return NULL;
    if (!path || !*path) {
        sl_env_fail(in->env, SL_EINVAL, "sl_write_text: the path is empty");
        return NULL;
    }
    if (!strncmp(path, "file://", 7))
        path += 7;
    text_cfg *c = sl__calloc(1, sizeof *c);
    if (c)
        c->path = sl__strdup(path);
    if (!c || !c->path) {
        sl__free(c);
        sl_env_fail(in->env, SL_ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    c->arity = sl_stream_arity(in);
    if (!sl__env_own(in->env, c, text_cfg_free))
        return NULL;
    if (sl__env_on_finish(in->env, text_finish, c) < 0)
        return NULL;
    sl_sink_fn fn = {.initialize_state = text_init,
                     .close = text_close,
                     .invoke = text_invoke,
                     .snapshot_state = text_snapshot,
                     .notify_checkpoint_complete = text_notify,
                     .user = c};
    return sl_add_sink(in, "File Sink", &fn);
}

/*
 * sinks.c - the built-in sinks on the public sink API: print to stdout/stderr in Flink's
 * format, and text files.
 */
#include "api/env.h"
#include "core/alloc.h"

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

/* ---- text files -------------------------------------------------------------------------- */

typedef struct text_cfg {
    char *path;
    int arity;
} text_cfg;

typedef struct text_state {
    line_buf lb;
    FILE *f;
    char *path;
} text_state;

static void text_cfg_free(void *p)
{
    text_cfg *c = p;
    sl__free(c->path);
    sl__free(c);
}

static int text_open(sl_ctx *ctx)
{
    text_cfg *c = sl_ctx_user(ctx);
    text_state *st = sl__calloc(1, sizeof *st);
    if (!st)
        return sl_fail(ctx, "out of memory");
    sl_ctx_set_local(ctx, st);
    st->lb.cap = 256;
    st->lb.data = sl__xmalloc(st->lb.cap);
    if (sl_ctx_parallelism(ctx) == 1) {
        st->path = sl__xstrdup(c->path);
    } else {
        if (mkdir(c->path, 0777) < 0 && errno != EEXIST)
            return sl_fail(ctx, "file sink: cannot create directory '%s': %s", c->path,
                           strerror(errno));
        size_t len = strlen(c->path) + 32;
        st->path = sl__xmalloc(len);
        snprintf(st->path, len, "%s/part-%d", c->path, sl_ctx_subtask(ctx));
    }
    st->f = fopen(st->path, "w");
    if (!st->f)
        return sl_fail(ctx, "file sink: cannot open '%s' for writing: %s", st->path,
                       strerror(errno));
    return 0;
}

static int text_invoke(sl_ctx *ctx, const sl_value *row)
{
    text_cfg *c = sl_ctx_user(ctx);
    text_state *st = sl_ctx_local(ctx);
    /* no "N> " prefix in files: format without it */
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

static int text_close(sl_ctx *ctx)
{
    text_state *st = sl_ctx_local(ctx);
    int rc = 0;
    if (!st)
        return 0;
    if (st->f && (fflush(st->f) != 0 || fsync(fileno(st->f)) != 0))
        rc = sl_fail(ctx, "file sink: cannot write '%s': %s", st->path, strerror(errno));
    if (st->f && fclose(st->f) != 0 && rc == 0)
        rc = sl_fail(ctx, "file sink: cannot close '%s': %s", st->path, strerror(errno));
    sl__free(st->path);
    sl__free(st->lb.data);
    sl__free(st);
    sl_ctx_set_local(ctx, NULL);
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
        if (c)
            text_cfg_free(c);
        sl_env_fail(in->env, SL_ENOMEM, "out of memory");
        return NULL;
    }
    c->arity = sl_stream_arity(in);
    if (!sl__env_own(in->env, c, text_cfg_free))
        return NULL;
    sl_sink_fn fn = {.open = text_open, .close = text_close, .invoke = text_invoke, .user = c};
    return sl_add_sink(in, "File Sink", &fn);
}

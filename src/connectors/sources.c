/*
 * sources.c - the built-in sources, written on the public source API: rows given in code,
 * a number sequence, a generator, a socket text stream and a text file reader.
 *
 * Each keeps its configuration in a struct owned by the environment (it outlives
 * sl_execute) and its per-subtask progress in sl_ctx_local. Sources emit in bursts of at
 * most BURST rows per poll, so the runtime gets control back often (to flush, cancel and,
 * later, checkpoint between records).
 */
#include "api/env.h"
#include "core/alloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

enum { BURST = 1024 };

/* ---- rows given in code -------------------------------------------------------------- */

typedef struct rows_src {
    sl_value *vals;
    size_t nrows;
    int arity;
    char *blob; /* copies of the str/bytes values */
} rows_src;

typedef struct progress {
    int64_t next, end, step;
} progress;

static void rows_free(void *p)
{
    rows_src *r = p;
    sl__free(r->vals);
    sl__free(r->blob);
    sl__free(r);
}

static int progress_open(sl_ctx *ctx, int64_t next, int64_t end, int64_t step)
{
    progress *pr = sl__malloc(sizeof *pr);
    if (!pr)
        return sl_fail(ctx, "out of memory");
    *pr = (progress){next, end, step};
    sl_ctx_set_local(ctx, pr);
    return 0;
}

static int local_close(sl_ctx *ctx)
{
    sl__free(sl_ctx_local(ctx));
    sl_ctx_set_local(ctx, NULL);
    return 0;
}

static int rows_open(sl_ctx *ctx)
{
    rows_src *r = sl_ctx_user(ctx);
    return progress_open(ctx, 0, (int64_t)r->nrows, 1);
}

static int rows_poll(sl_ctx *ctx)
{
    rows_src *r = sl_ctx_user(ctx);
    progress *pr = sl_ctx_local(ctx);
    for (int i = 0; i < BURST && pr->next < pr->end; i++, pr->next++) {
        int rc = sl_emit(ctx, r->vals + (size_t)pr->next * (size_t)r->arity);
        if (rc < 0)
            return rc;
    }
    return pr->next < pr->end ? SL_SOURCE_MORE : SL_SOURCE_END;
}

sl_stream *sl_from_rows(sl_env *env, const char *schema, const sl_value *vals, size_t nrows)
{
    if (!env || sl__env_failed(env))
        return NULL;
    char err[512];
    sl__schema *s = sl__schema_parse(schema, err, sizeof err);
    if (!s) {
        sl_env_fail(env, SL_ESCHEMA, "sl_from_rows: %s", err);
        return NULL;
    }
    int arity = s->n;
    size_t nvals = nrows * (size_t)arity, blob_len = 0;
    for (size_t i = 0; i < nvals; i++) {
        int field = (int)(i % (size_t)arity);
        if (vals[i].type != SL_NULL && vals[i].type != s->types[field]) {
            sl_env_fail(env, SL_ESCHEMA,
                        "sl_from_rows: row %zu field %d is %s; the schema \"%s\" says %s",
                        i / (size_t)arity, field, sl__type_name(vals[i].type), s->text,
                        sl__type_name(s->types[field]));
            sl__schema_destroy(s);
            return NULL;
        }
        if (vals[i].type == SL_STR || vals[i].type == SL_BYTES)
            blob_len += vals[i].u.s.len;
    }
    sl__schema_destroy(s);
    rows_src *r = sl__calloc(1, sizeof *r);
    if (r) {
        r->vals = sl__malloc(nvals * sizeof *r->vals + 1);
        r->blob = sl__malloc(blob_len + 1);
    }
    if (!r || !r->vals || !r->blob) {
        if (r)
            rows_free(r);
        sl_env_fail(env, SL_ENOMEM, "sl_from_rows: out of memory copying %zu rows", nrows);
        return NULL;
    }
    r->nrows = nrows;
    r->arity = arity;
    size_t at = 0;
    for (size_t i = 0; i < nvals; i++) {
        r->vals[i] = vals[i];
        if (vals[i].type == SL_STR || vals[i].type == SL_BYTES) {
            if (vals[i].u.s.len)
                memcpy(r->blob + at, vals[i].u.s.ptr, vals[i].u.s.len);
            r->vals[i].u.s.ptr = r->blob + at;
            at += vals[i].u.s.len;
        }
    }
    if (!sl__env_own(env, r, rows_free))
        return NULL;
    sl_source_fn fn = {.open = rows_open, .close = local_close, .poll = rows_poll, .user = r};
    return sl_add_source(env, "Collection Source", schema, &fn, false, true);
}

/* ---- sequence and generator ------------------------------------------------------------ */

typedef struct gen_src {
    int64_t from, to; /* sequence: inclusive bounds */
    int64_t count;    /* generator: < 0 unbounded */
    sl_generator_cb gen;
    void *user;
    int arity;
} gen_src;

static void plain_free(void *p)
{
    sl__free(p);
}

static int seq_open(sl_ctx *ctx)
{
    gen_src *g = sl_ctx_user(ctx);
    int64_t count = g->to - g->from + 1, i = sl_ctx_subtask(ctx), p = sl_ctx_parallelism(ctx);
    if (count < 0)
        count = 0;
    /* contiguous, nearly equal ranges */
    int64_t lo = g->from + (int64_t)((__int128)count * i / p);
    int64_t hi = g->from + (int64_t)((__int128)count * (i + 1) / p);
    return progress_open(ctx, lo, hi, 1);
}

static int seq_poll(sl_ctx *ctx)
{
    progress *pr = sl_ctx_local(ctx);
    sl_value v = SL_I64(0);
    for (int i = 0; i < BURST && pr->next < pr->end; i++, pr->next++) {
        v.u.i64 = pr->next;
        int rc = sl_emit(ctx, &v);
        if (rc < 0)
            return rc;
    }
    return pr->next < pr->end ? SL_SOURCE_MORE : SL_SOURCE_END;
}

sl_stream *sl_from_sequence(sl_env *env, int64_t from, int64_t to)
{
    if (!env || sl__env_failed(env))
        return NULL;
    gen_src *g = sl__calloc(1, sizeof *g);
    if (!g || !sl__env_own(env, g, plain_free)) {
        if (!g)
            sl_env_fail(env, SL_ENOMEM, "out of memory");
        return NULL;
    }
    g->from = from;
    g->to = to;
    sl_source_fn fn = {.open = seq_open, .close = local_close, .poll = seq_poll, .user = g};
    return sl_add_source(env, "Sequence Source", "value:i64", &fn, true, true);
}

static int gen_open(sl_ctx *ctx)
{
    gen_src *g = sl_ctx_user(ctx);
    return progress_open(ctx, sl_ctx_subtask(ctx), g->count, sl_ctx_parallelism(ctx));
}

static int gen_poll(sl_ctx *ctx)
{
    gen_src *g = sl_ctx_user(ctx);
    progress *pr = sl_ctx_local(ctx);
    sl_value *row = sl_ctx_alloc(ctx, sizeof(sl_value) * (size_t)g->arity);
    for (int i = 0; i < BURST && (g->count < 0 || pr->next < pr->end); i++) {
        for (int k = 0; k < g->arity; k++)
            row[k] = SL_NULLV;
        int rc = g->gen(ctx, g->user, pr->next, row);
        if (rc < 0)
            return rc;
        pr->next += pr->step;
        rc = sl_emit(ctx, row);
        if (rc < 0)
            return rc;
    }
    return g->count >= 0 && pr->next >= pr->end ? SL_SOURCE_END : SL_SOURCE_MORE;
}

sl_stream *sl_from_generator(sl_env *env, const char *schema, int64_t count, sl_generator_cb gen,
                             void *user)
{
    if (!env || sl__env_failed(env))
        return NULL;
    if (!gen) {
        sl_env_fail(env, SL_EINVAL, "sl_from_generator: the generator callback is NULL");
        return NULL;
    }
    char err[512];
    sl__schema *s = sl__schema_parse(schema, err, sizeof err);
    if (!s) {
        sl_env_fail(env, SL_ESCHEMA, "sl_from_generator: %s", err);
        return NULL;
    }
    int arity = s->n;
    sl__schema_destroy(s);
    gen_src *g = sl__calloc(1, sizeof *g);
    if (!g || !sl__env_own(env, g, plain_free)) {
        if (!g)
            sl_env_fail(env, SL_ENOMEM, "out of memory");
        return NULL;
    }
    *g = (gen_src){.count = count, .gen = gen, .user = user, .arity = arity};
    sl_source_fn fn = {.open = gen_open, .close = local_close, .poll = gen_poll, .user = g};
    return sl_add_source(env, "Generator Source", schema, &fn, true, count >= 0);
}

/* ---- delimited text: shared by the socket and file sources ------------------------------ */

typedef struct text_buf {
    char *data;
    size_t len, cap;
} text_buf;

/* Reads once from fd into t. Returns bytes read, 0 at end of file, -1 on error (errno). */
static ssize_t text_fill(text_buf *t, int fd)
{
    if (t->cap - t->len < 16384) {
        size_t cap = t->cap ? t->cap * 2 : 65536;
        t->data = sl__xrealloc(t->data, cap);
        t->cap = cap;
    }
    ssize_t n;
    do
        n = read(fd, t->data + t->len, t->cap - t->len);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        t->len += (size_t)n;
    return n;
}

static int emit_text(sl_ctx *ctx, const char *p, size_t len, bool strip_cr)
{
    if (strip_cr && len && p[len - 1] == '\r')
        len--;
    sl_value v = sl_strn(p, len);
    return sl_emit(ctx, &v);
}

/* Emits every complete record of t (ended by delim) and keeps the incomplete rest. With
 * at_end, the rest is emitted too when not empty. */
static int text_emit(sl_ctx *ctx, text_buf *t, const char *delim, size_t dlen, bool at_end)
{
    bool strip_cr = dlen == 1 && delim[0] == '\n';
    size_t start = 0;
    for (;;) {
        const char *hit = dlen == 1 ? memchr(t->data + start, delim[0], t->len - start)
                                    : memmem(t->data + start, t->len - start, delim, dlen);
        if (!hit)
            break;
        size_t end = (size_t)(hit - t->data);
        int rc = emit_text(ctx, t->data + start, end - start, strip_cr);
        if (rc < 0)
            return rc;
        start = end + dlen;
    }
    if (at_end && start < t->len) {
        int rc = emit_text(ctx, t->data + start, t->len - start, strip_cr);
        if (rc < 0)
            return rc;
        start = t->len;
    }
    memmove(t->data, t->data + start, t->len - start);
    t->len -= start;
    return 0;
}

/* ---- socket text stream ----------------------------------------------------------------- */

typedef struct socket_src {
    char *host;
    int port;
    char *delim;
    size_t dlen;
    int max_retry;
} socket_src;

typedef struct socket_state {
    int fd;
    int retries; /* reconnections done */
    text_buf t;
    char last_error[256];
} socket_state;

static void socket_src_free(void *p)
{
    socket_src *s = p;
    sl__free(s->host);
    sl__free(s->delim);
    sl__free(s);
}

/* Connects; returns the fd or -1 with a message in st->last_error. */
static int socket_connect(socket_src *s, socket_state *st)
{
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(s->host, port, &hints, &res);
    if (gai != 0) {
        snprintf(st->last_error, sizeof st->last_error, "cannot resolve %s: %s", s->host,
                 gai_strerror(gai));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(st->last_error, sizeof st->last_error, "cannot connect to %s:%d: %s", s->host,
                 s->port, strerror(err));
    return fd;
}

static bool may_retry(const socket_src *s, const socket_state *st)
{
    return s->max_retry < 0 || st->retries < s->max_retry;
}

static int socket_open(sl_ctx *ctx)
{
    socket_src *s = sl_ctx_user(ctx);
    socket_state *st = sl__calloc(1, sizeof *st);
    if (!st)
        return sl_fail(ctx, "out of memory");
    sl_ctx_set_local(ctx, st);
    st->fd = socket_connect(s, st);
    if (st->fd < 0 && !may_retry(s, st))
        return sl_fail(ctx,
                       "socket source: %s (max_retry %d; accepted: a listening server, e.g. "
                       "`nc -lk %d`)",
                       st->last_error, s->max_retry, s->port);
    return 0;
}

static int socket_poll(sl_ctx *ctx)
{
    socket_src *s = sl_ctx_user(ctx);
    socket_state *st = sl_ctx_local(ctx);
    if (st->fd < 0) {
        if (!may_retry(s, st))
            return sl_fail(ctx, "socket source: %s after %d retries", st->last_error, st->retries);
        st->retries++;
        int rc = sl_ctx_sleep_ms(ctx, 500);
        if (rc < 0)
            return rc;
        st->fd = socket_connect(s, st);
        return SL_SOURCE_IDLE;
    }
    struct pollfd pfd = {.fd = st->fd, .events = POLLIN};
    int pr = poll(&pfd, 1, 100);
    if (pr == 0 || (pr < 0 && errno == EINTR))
        return SL_SOURCE_IDLE;
    ssize_t n = text_fill(&st->t, st->fd);
    if (n > 0) {
        int rc = text_emit(ctx, &st->t, s->delim, s->dlen, false);
        return rc < 0 ? rc : SL_SOURCE_MORE;
    }
    /* closed or broken: emit what is left, then reconnect or end */
    int rc = text_emit(ctx, &st->t, s->delim, s->dlen, true);
    if (rc < 0)
        return rc;
    snprintf(st->last_error, sizeof st->last_error, "connection to %s:%d %s", s->host, s->port,
             n == 0 ? "closed" : strerror(errno));
    close(st->fd);
    st->fd = -1;
    if (!may_retry(s, st))
        return SL_SOURCE_END;
    return SL_SOURCE_IDLE;
}

static int socket_close(sl_ctx *ctx)
{
    socket_state *st = sl_ctx_local(ctx);
    if (st) {
        if (st->fd >= 0)
            close(st->fd);
        sl__free(st->t.data);
        sl__free(st);
        sl_ctx_set_local(ctx, NULL);
    }
    return 0;
}

sl_stream *sl_socket_text_stream(sl_env *env, const char *host, int port, const char *delimiter,
                                 int max_retry)
{
    if (!env || sl__env_failed(env))
        return NULL;
    if (!host || !*host || port < 1 || port > 65535) {
        sl_env_fail(env, SL_EINVAL,
                    "sl_socket_text_stream: host \"%s\" port %d: accepted a host name or address "
                    "and a port from 1 to 65535",
                    host ? host : "(null)", port);
        return NULL;
    }
    if (delimiter && !*delimiter) {
        sl_env_fail(env, SL_EINVAL, "sl_socket_text_stream: the delimiter must not be empty");
        return NULL;
    }
    socket_src *s = sl__calloc(1, sizeof *s);
    if (s) {
        s->host = sl__strdup(host);
        s->delim = sl__strdup(delimiter ? delimiter : "\n");
    }
    if (!s || !s->host || !s->delim) {
        if (s)
            socket_src_free(s);
        sl_env_fail(env, SL_ENOMEM, "out of memory");
        return NULL;
    }
    s->port = port;
    s->dlen = strlen(s->delim);
    s->max_retry = max_retry;
    if (!sl__env_own(env, s, socket_src_free))
        return NULL;
    sl_source_fn fn = {.open = socket_open, .close = socket_close, .poll = socket_poll, .user = s};
    return sl_add_source(env, "Socket Stream", "line:str", &fn, false, false);
}

/* ---- text files ------------------------------------------------------------------------- */

typedef struct file_state {
    char **files; /* this subtask's files */
    int nfiles, next;
    int fd;
    text_buf t;
} file_state;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int file_open(sl_ctx *ctx)
{
    const char *path = sl_ctx_user(ctx);
    file_state *st = sl__calloc(1, sizeof *st);
    if (!st)
        return sl_fail(ctx, "out of memory");
    st->fd = -1;
    sl_ctx_set_local(ctx, st);
    struct stat sb;
    if (stat(path, &sb) < 0)
        return sl_fail(ctx, "file source: cannot open '%s': %s", path, strerror(errno));
    int sub = sl_ctx_subtask(ctx), par = sl_ctx_parallelism(ctx);
    if (!S_ISDIR(sb.st_mode)) {
        if (sub == 0) {
            st->files = sl__xcalloc(1, sizeof *st->files);
            st->files[st->nfiles++] = sl__xstrdup(path);
        }
        return 0;
    }
    DIR *d = opendir(path);
    if (!d)
        return sl_fail(ctx, "file source: cannot read directory '%s': %s", path, strerror(errno));
    char **all = NULL;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        size_t len = strlen(path) + strlen(de->d_name) + 2;
        char *full = sl__xmalloc(len);
        snprintf(full, len, "%s/%s", path, de->d_name);
        struct stat fs;
        if (stat(full, &fs) == 0 && S_ISREG(fs.st_mode)) {
            all = sl__xrealloc(all, sizeof *all * (size_t)(n + 1));
            all[n++] = full;
        } else {
            sl__free(full);
        }
    }
    closedir(d);
    if (n)
        qsort(all, (size_t)n, sizeof *all, cmp_str);
    st->files = sl__xcalloc((size_t)n + 1, sizeof *st->files);
    for (int i = 0; i < n; i++) {
        if (i % par == sub)
            st->files[st->nfiles++] = all[i];
        else
            sl__free(all[i]);
    }
    sl__free(all);
    return 0;
}

static int file_poll(sl_ctx *ctx)
{
    file_state *st = sl_ctx_local(ctx);
    if (st->fd < 0) {
        if (st->next >= st->nfiles)
            return SL_SOURCE_END;
        const char *f = st->files[st->next++];
        st->fd = open(f, O_RDONLY | O_CLOEXEC);
        if (st->fd < 0)
            return sl_fail(ctx, "file source: cannot open '%s': %s", f, strerror(errno));
        st->t.len = 0;
    }
    ssize_t n = text_fill(&st->t, st->fd);
    if (n < 0)
        return sl_fail(ctx, "file source: cannot read '%s': %s", st->files[st->next - 1],
                       strerror(errno));
    int rc = text_emit(ctx, &st->t, "\n", 1, n == 0);
    if (rc < 0)
        return rc;
    if (n == 0) {
        close(st->fd);
        st->fd = -1;
    }
    return SL_SOURCE_MORE;
}

static int file_close(sl_ctx *ctx)
{
    file_state *st = sl_ctx_local(ctx);
    if (st) {
        if (st->fd >= 0)
            close(st->fd);
        for (int i = 0; i < st->nfiles; i++)
            sl__free(st->files[i]);
        sl__free(st->files);
        sl__free(st->t.data);
        sl__free(st);
        sl_ctx_set_local(ctx, NULL);
    }
    return 0;
}

sl_stream *sl_read_text_file(sl_env *env, const char *path)
{
    if (!env || sl__env_failed(env))
        return NULL;
    if (!path || !*path) {
        sl_env_fail(env, SL_EINVAL, "sl_read_text_file: the path is empty");
        return NULL;
    }
    if (!strncmp(path, "file://", 7))
        path += 7;
    char *p = sl__strdup(path);
    if (!p) {
        sl_env_fail(env, SL_ENOMEM, "out of memory");
        return NULL;
    }
    if (!sl__env_own(env, p, plain_free))
        return NULL;
    sl_source_fn fn = {.open = file_open, .close = file_close, .poll = file_poll, .user = p};
    return sl_add_source(env, "File Source", "line:str", &fn, true, true);
}

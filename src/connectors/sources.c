/*
 * sources.c - the built-in sources, written on the public source API: rows given in code,
 * a number sequence, a generator, a socket text stream and a text file reader.
 *
 * Each keeps its configuration in a struct owned by the environment (it outlives
 * sl_execute) and its per-subtask progress in sl_ctx_local. The replayable ones (rows,
 * sequence, generator, file) keep their position in operator state, so a restore rewinds
 * them to the checkpoint and state downstream stays exactly-once. Sources emit in bursts of at
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

/* ---- indexed sources: rows, sequence, generator ---------------------------------------
 *
 * These sources produce the rows of an index space. A subtask's work is a list of streams
 * (next, stride, end): the indexes next, next + stride, ... below end (end < 0: unbounded).
 * Initially subtask i of p has one stream; the streams are the source's operator list state
 * (even-split), so a restore rewinds each to its checkpointed position and a restore at
 * another parallelism hands whole streams to the new subtasks. A subtask with several
 * streams takes from them in turn.
 */

typedef struct indexed_src indexed_src;
typedef int (*index_emit_fn)(sl_ctx *ctx, const indexed_src *src, int64_t index, sl_value *row);

struct indexed_src {
    index_emit_fn emit;
    int arity;
    /* rows */
    sl_value *vals;
    char *blob; /* copies of the str/bytes values */
    /* sequence */
    int64_t from, to; /* inclusive */
    /* generator */
    int64_t count; /* < 0 unbounded */
    sl_generator_cb gen;
    void *user;
};

typedef struct stream_pos {
    int64_t next, stride, end;
} stream_pos;

typedef struct indexed_state {
    sl_state *offsets;
    stream_pos *streams;
    int n, cap, cur;
} indexed_state;

static const char offsets_schema[] = "next:i64,stride:i64,end:i64";

static void plain_free(void *p)
{
    sl__free(p);
}

static void indexed_free(void *p)
{
    indexed_src *r = p;
    sl__free(r->vals);
    sl__free(r->blob);
    sl__free(r);
}

static void add_stream(indexed_state *st, stream_pos pos)
{
    if (st->n == st->cap) {
        st->cap = st->cap ? st->cap * 2 : 4;
        st->streams = sl__xrealloc(st->streams, sizeof *st->streams * (size_t)st->cap);
    }
    st->streams[st->n++] = pos;
}

/* The first stream of subtask i of p over the source's index space. */
static stream_pos initial_stream(const indexed_src *src, int i, int p)
{
    if (src->gen)
        return (stream_pos){i, p, src->count};
    int64_t lo = src->vals ? 0 : src->from;
    int64_t count = src->vals ? src->count : src->to - src->from + 1;
    if (count < 0)
        count = 0;
    /* contiguous, nearly equal ranges */
    int64_t a = lo + (int64_t)((__int128)count * i / p);
    int64_t b = lo + (int64_t)((__int128)count * (i + 1) / p);
    return (stream_pos){a, 1, b};
}

static int indexed_init(sl_ctx *ctx)
{
    const indexed_src *src = sl_ctx_user(ctx);
    indexed_state *st = sl__calloc(1, sizeof *st);
    if (!st)
        return sl_fail(ctx, "out of memory");
    sl_ctx_set_local(ctx, st);
    st->offsets = sl_operator_list_state(ctx, "offsets", offsets_schema, SL_SPLIT_EVEN);
    if (!st->offsets)
        return SL_ESTATE;
    if (!sl_ctx_is_restored(ctx)) {
        add_stream(st, initial_stream(src, sl_ctx_subtask(ctx), sl_ctx_parallelism(ctx)));
        return 0;
    }
    sl_iter *it;
    int rc = sl_list_get(st->offsets, &it);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        sl_value row[3];
        while (sl_iter_next(it, row) > 0)
            add_stream(st, (stream_pos){row[0].u.i64, row[1].u.i64, row[2].u.i64});
        sl_iter_close(it);
    }
    return 0;
}

static int indexed_snapshot(sl_ctx *ctx, int64_t id)
{
    (void)id;
    indexed_state *st = sl_ctx_local(ctx);
    sl_value *rows = sl_ctx_alloc(ctx, sizeof *rows * 3 * (size_t)(st->n ? st->n : 1));
    for (int i = 0; i < st->n; i++) {
        rows[3 * i] = SL_I64(st->streams[i].next);
        rows[3 * i + 1] = SL_I64(st->streams[i].stride);
        rows[3 * i + 2] = SL_I64(st->streams[i].end);
    }
    return sl_list_update(st->offsets, rows, (size_t)st->n);
}

static int indexed_close(sl_ctx *ctx)
{
    indexed_state *st = sl_ctx_local(ctx);
    if (st) {
        sl__free(st->streams);
        sl__free(st);
        sl_ctx_set_local(ctx, NULL);
    }
    return 0;
}

static bool exhausted(const stream_pos *s)
{
    return s->end >= 0 && s->next >= s->end;
}

static int indexed_poll(sl_ctx *ctx)
{
    const indexed_src *src = sl_ctx_user(ctx);
    indexed_state *st = sl_ctx_local(ctx);
    sl_value *row = sl_ctx_alloc(ctx, sizeof(sl_value) * (size_t)src->arity);
    int emitted = 0;
    while (emitted < BURST) {
        /* the next stream with work, in turn */
        int k = 0;
        while (k < st->n && exhausted(&st->streams[st->cur]))
            st->cur = (st->cur + 1) % st->n, k++;
        if (k == st->n)
            return SL_SOURCE_END;
        stream_pos *s = &st->streams[st->cur];
        for (int i = 0; i < BURST / 8 && !exhausted(s); i++, emitted++) {
            for (int f = 0; f < src->arity; f++)
                row[f] = SL_NULLV;
            int rc = src->emit(ctx, src, s->next, row);
            if (rc < 0)
                return rc;
            /* advance before emitting: a barrier can only come between polls, and the
             * row is handed on before sl_emit returns */
            s->next += s->stride;
            rc = sl_emit(ctx, row);
            if (rc < 0)
                return rc;
        }
        st->cur = (st->cur + 1) % st->n;
    }
    return SL_SOURCE_MORE;
}

static sl_stream *add_indexed(sl_env *env, const char *name, const char *schema, indexed_src *src,
                              bool parallel, bool bounded)
{
    if (!sl__env_own(env, src, indexed_free))
        return NULL;
    sl_source_fn fn = {.initialize_state = indexed_init,
                       .snapshot_state = indexed_snapshot,
                       .close = indexed_close,
                       .poll = indexed_poll,
                       .user = src};
    return sl_add_source(env, name, schema, &fn, parallel, bounded);
}

static int emit_row(sl_ctx *ctx, const indexed_src *src, int64_t index, sl_value *row)
{
    (void)ctx;
    memcpy(row, src->vals + (size_t)index * (size_t)src->arity, sizeof *row * (size_t)src->arity);
    return 0;
}

static int emit_number(sl_ctx *ctx, const indexed_src *src, int64_t index, sl_value *row)
{
    (void)ctx;
    (void)src;
    row[0] = SL_I64(index);
    return 0;
}

static int emit_generated(sl_ctx *ctx, const indexed_src *src, int64_t index, sl_value *row)
{
    return src->gen(ctx, src->user, index, row);
}

static indexed_src *new_indexed(sl_env *env)
{
    indexed_src *src = sl__calloc(1, sizeof *src);
    if (!src)
        sl_env_fail(env, SL_ENOMEM, "out of memory");
    return src;
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
    indexed_src *r = new_indexed(env);
    if (!r)
        return NULL;
    r->vals = sl__malloc(nvals * sizeof *r->vals + 1);
    r->blob = sl__malloc(blob_len + 1);
    if (!r->vals || !r->blob) {
        indexed_free(r);
        sl_env_fail(env, SL_ENOMEM, "sl_from_rows: out of memory copying %zu rows", nrows);
        return NULL;
    }
    r->count = (int64_t)nrows;
    r->arity = arity;
    r->emit = emit_row;
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
    return add_indexed(env, "Collection Source", schema, r, false, true);
}

sl_stream *sl_from_sequence(sl_env *env, int64_t from, int64_t to)
{
    if (!env || sl__env_failed(env))
        return NULL;
    indexed_src *g = new_indexed(env);
    if (!g)
        return NULL;
    g->from = from;
    g->to = to;
    g->arity = 1;
    g->emit = emit_number;
    return add_indexed(env, "Sequence Source", "value:i64", g, true, true);
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
    indexed_src *g = new_indexed(env);
    if (!g)
        return NULL;
    g->count = count;
    g->gen = gen;
    g->user = user;
    g->arity = arity;
    g->emit = emit_generated;
    return add_indexed(env, "Generator Source", schema, g, true, count >= 0);
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

/* ---- text files ---------------------------------------------------------------------------
 *
 * The work of a subtask is a list of (file, offset) entries: the files it still has to read
 * and the byte offset of the first line not yet emitted. The list is the source's operator
 * state (even-split): a restore reopens each file at its offset, so lines are neither lost
 * nor read twice; at another parallelism whole files move between subtasks.
 */

typedef struct file_entry {
    char *path;
    int64_t offset;
} file_entry;

typedef struct file_state {
    sl_state *positions;
    file_entry *files;
    int nfiles, cap, next; /* files[next] is being read */
    int fd;
    int64_t base; /* file offset of the first byte in t */
    text_buf t;
} file_state;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_file(file_state *st, char *path, int64_t offset)
{
    if (st->nfiles == st->cap) {
        st->cap = st->cap ? st->cap * 2 : 8;
        st->files = sl__xrealloc(st->files, sizeof *st->files * (size_t)st->cap);
    }
    st->files[st->nfiles++] = (file_entry){path, offset};
}

/* The files of path (a file, or the regular files of a directory in name order) that
 * subtask sub of par reads on a fresh start. */
static int assign_files(sl_ctx *ctx, file_state *st, const char *path)
{
    struct stat sb;
    if (stat(path, &sb) < 0)
        return sl_fail(ctx, "file source: cannot open '%s': %s", path, strerror(errno));
    int sub = sl_ctx_subtask(ctx), par = sl_ctx_parallelism(ctx);
    if (!S_ISDIR(sb.st_mode)) {
        if (sub == 0)
            add_file(st, sl__xstrdup(path), 0);
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
    for (int i = 0; i < n; i++) {
        if (i % par == sub)
            add_file(st, all[i], 0);
        else
            sl__free(all[i]);
    }
    sl__free(all);
    return 0;
}

static int file_init(sl_ctx *ctx)
{
    const char *path = sl_ctx_user(ctx);
    file_state *st = sl__calloc(1, sizeof *st);
    if (!st)
        return sl_fail(ctx, "out of memory");
    st->fd = -1;
    sl_ctx_set_local(ctx, st);
    st->positions = sl_operator_list_state(ctx, "positions", "file:str,offset:i64", SL_SPLIT_EVEN);
    if (!st->positions)
        return SL_ESTATE;
    if (!sl_ctx_is_restored(ctx))
        return assign_files(ctx, st, path);
    sl_iter *it;
    int rc = sl_list_get(st->positions, &it);
    if (rc > 0) {
        sl_value row[2];
        while (sl_iter_next(it, row) > 0)
            add_file(st, sl__xstrndup(row[0].u.s.ptr, row[0].u.s.len), row[1].u.i64);
        sl_iter_close(it);
    }
    return rc < 0 ? rc : 0;
}

static int file_snapshot(sl_ctx *ctx, int64_t id)
{
    (void)id;
    file_state *st = sl_ctx_local(ctx);
    int n = st->nfiles - st->next;
    sl_value *rows = sl_ctx_alloc(ctx, sizeof *rows * 2 * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        file_entry *f = &st->files[st->next + i];
        rows[2 * i] = sl_str(f->path);
        rows[2 * i + 1] = SL_I64(i == 0 && st->fd >= 0 ? st->base : f->offset);
    }
    return sl_list_update(st->positions, rows, (size_t)n);
}

static int file_poll(sl_ctx *ctx)
{
    file_state *st = sl_ctx_local(ctx);
    if (st->fd < 0) {
        if (st->next >= st->nfiles)
            return SL_SOURCE_END;
        file_entry *f = &st->files[st->next];
        st->fd = open(f->path, O_RDONLY | O_CLOEXEC);
        if (st->fd < 0)
            return sl_fail(ctx, "file source: cannot open '%s': %s", f->path, strerror(errno));
        if (f->offset > 0 && lseek(st->fd, f->offset, SEEK_SET) < 0)
            return sl_fail(ctx, "file source: cannot seek '%s' to %lld: %s", f->path,
                           (long long)f->offset, strerror(errno));
        st->base = f->offset;
        st->t.len = 0;
    }
    ssize_t n = text_fill(&st->t, st->fd);
    if (n < 0)
        return sl_fail(ctx, "file source: cannot read '%s': %s", st->files[st->next].path,
                       strerror(errno));
    size_t before = st->t.len;
    int rc = text_emit(ctx, &st->t, "\n", 1, n == 0);
    if (rc < 0)
        return rc;
    st->base += (int64_t)(before - st->t.len);
    if (n == 0) {
        close(st->fd);
        st->fd = -1;
        st->next++;
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
            sl__free(st->files[i].path);
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
    sl_source_fn fn = {.initialize_state = file_init,
                       .snapshot_state = file_snapshot,
                       .close = file_close,
                       .poll = file_poll,
                       .user = p};
    return sl_add_source(env, "File Source", "line:str", &fn, true, true);
}

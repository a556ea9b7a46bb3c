/*
 * alloc.c - allocation wrapper with an optional failure countdown for tests.
 */
#include "core/alloc.h"
#include "core/log.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SL_TESTING
/* Touched by every thread that allocates: an atomic countdown, -1 when disabled. */
static atomic_long fail_countdown = -2; /* -2: not yet read from the environment */

static int should_fail(void)
{
    long v = atomic_load(&fail_countdown);
    if (v == -2) {
        const char *e = getenv("SLUICE_FAIL_ALLOC");
        long n = e ? strtol(e, NULL, 10) : -1;
        long expect = -2;
        atomic_compare_exchange_strong(&fail_countdown, &expect, n > 0 ? n : -1);
        v = atomic_load(&fail_countdown);
    }
    if (v < 0)
        return 0;
    return atomic_fetch_sub(&fail_countdown, 1) == 1;
}

void sl__alloc_fail_reset(long nth)
{
    atomic_store(&fail_countdown, nth > 0 ? nth : -1);
}
#else
static inline int should_fail(void)
{
    return 0;
}

void sl__alloc_fail_reset(long nth)
{
    (void)nth;
}
#endif

void *sl__malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *sl__calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *sl__realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

char *sl__strdup(const char *s)
{
    return sl__strndup(s, strlen(s));
}

char *sl__strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = sl__malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = 0;
    }
    return d;
}

void sl__free(void *p)
{
    free(p);
}

static void oom(size_t n)
{
    sl__log_fatal("out of memory allocating %zu bytes", n);
}

void *sl__xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *sl__xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        oom(count * size);
    return p;
}

void *sl__xcalloc_lines(size_t count, size_t size)
{
    size_t n = (count ? count : 1) * (size ? size : 1);
    if ((size && n / size != (count ? count : 1)) || n > SIZE_MAX - SL_CACHE_LINE)
        oom(SIZE_MAX);
    n = (n + SL_CACHE_LINE - 1) & ~(size_t)(SL_CACHE_LINE - 1);
    void *p = aligned_alloc(SL_CACHE_LINE, n);
    if (!p)
        oom(n);
    memset(p, 0, n);
    return p;
}

void *sl__xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *sl__xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = sl__xmalloc(n);
    memcpy(d, s, n);
    return d;
}

char *sl__xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = sl__xmalloc(len + 1);
    memcpy(d, s, len);
    d[len] = 0;
    return d;
}

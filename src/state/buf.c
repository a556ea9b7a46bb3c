/*
 * buf.c - sl__buf, the growable byte buffer snapshots are written into. Growth doubles the
 * capacity and reports out of memory (snapshot paths must not abort).
 */
#include "core/alloc.h"
#include "state/state.h"

#include <stdint.h>
#include <string.h>

int sl__buf_reserve(sl__buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return SL_ENOMEM;
    size_t need = b->len + extra;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *p = sl__realloc(b->data, cap);
    if (!p)
        return SL_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int sl__buf_append(sl__buf *b, const void *p, size_t n)
{
    int rc = sl__buf_reserve(b, n);
    if (rc < 0)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void sl__buf_free(sl__buf *b)
{
    sl__free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/*
 * arena.c - chunked bump allocator.
 */
#include "core/arena.h"
#include "core/alloc.h"

#include <stdint.h>

struct sl__arena_chunk {
    sl__arena_chunk *next;
    size_t cap;
    _Alignas(16) unsigned char data[];
};

enum { ARENA_MIN_CHUNK = 64 * 1024 };

void sl__arena_init(sl__arena *a)
{
    a->head = NULL;
    a->used = 0;
}

void *sl__arena_alloc(sl__arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (!a->head || a->head->cap - a->used < size) {
        size_t cap = ARENA_MIN_CHUNK;
        if (a->head && a->head->cap * 2 > cap)
            cap = a->head->cap * 2;
        while (cap < size)
            cap *= 2;
        sl__arena_chunk *c = sl__xmalloc(sizeof *c + cap);
        c->cap = cap;
        c->next = a->head;
        a->head = c;
        a->used = 0;
    }
    void *p = a->head->data + a->used;
    a->used += size;
    return p;
}

void sl__arena_reset(sl__arena *a)
{
    if (!a->head)
        return;
    /* keep the newest (largest) chunk */
    sl__arena_chunk *c = a->head->next;
    while (c) {
        sl__arena_chunk *n = c->next;
        sl__free(c);
        c = n;
    }
    a->head->next = NULL;
    a->used = 0;
}

void sl__arena_close(sl__arena *a)
{
    sl__arena_chunk *c = a->head;
    while (c) {
        sl__arena_chunk *n = c->next;
        sl__free(c);
        c = n;
    }
    a->head = NULL;
    a->used = 0;
}

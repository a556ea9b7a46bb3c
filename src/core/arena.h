/*
 * arena.h - bump allocator for per-batch scratch memory.
 *
 * A subtask resets its arena after each input buffer (or source poll); everything
 * allocated from it since the last reset is then gone at once. Reset keeps the largest
 * chunk so a steady workload allocates nothing after warm-up. Single-threaded: an arena
 * belongs to one subtask thread.
 */
#ifndef SL_CORE_ARENA_H
#define SL_CORE_ARENA_H

#include <stddef.h>

typedef struct sl__arena_chunk sl__arena_chunk;
typedef struct sl__arena {
    sl__arena_chunk *head; /* current chunk; older chunks follow */
    size_t used;           /* bytes used in head */
} sl__arena;

void sl__arena_init(sl__arena *a);
/* Returns size bytes aligned to 16; aborts on out of memory (hot path). */
void *sl__arena_alloc(sl__arena *a, size_t size);
/* Frees everything allocated since the last reset, keeping one chunk. */
void sl__arena_reset(sl__arena *a);
void sl__arena_close(sl__arena *a);

#endif

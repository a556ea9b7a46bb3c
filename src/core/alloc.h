/*
 * alloc.h - the one allocation wrapper every module goes through.
 *
 * Two flavours: sl__malloc and friends return NULL on failure and are used on paths that
 * must report out-of-memory as an error (config, restore, network, job building);
 * sl__xmalloc and friends abort with a message and are used on the record hot path, where
 * an allocation failure cannot be handled record by record.
 *
 * In builds with SL_TESTING defined, the environment variable SLUICE_FAIL_ALLOC=N makes the
 * N-th call (1-based) of the NULL-returning flavour fail, so tests can walk the error paths.
 */
#ifndef SL_CORE_ALLOC_H
#define SL_CORE_ALLOC_H

#include <stddef.h>

void *sl__malloc(size_t n);
void *sl__calloc(size_t count, size_t size);
void *sl__realloc(void *p, size_t n);
char *sl__strdup(const char *s);
char *sl__strndup(const char *s, size_t n);
void sl__free(void *p);

void *sl__xmalloc(size_t n);
void *sl__xcalloc(size_t count, size_t size);
void *sl__xrealloc(void *p, size_t n);
char *sl__xstrdup(const char *s);
char *sl__xstrndup(const char *s, size_t n);

/* The cache line size assumed for sl__xcalloc_lines. */
#define SL_CACHE_LINE 64
/* Zeroed memory for count items of size that starts on a cache line and fills whole lines,
 * so nothing else shares them. For what one thread writes on the record path while the
 * memory next to it belongs to another thread: otherwise the two threads take the line
 * from each other on every record (false sharing), which costs the writer a cache miss per
 * record and depends on where the allocator happened to put things. Freed with sl__free. */
void *sl__xcalloc_lines(size_t count, size_t size);

/* Under AddressSanitizer, SL_POISON marks n bytes at p unaddressable (a read or write there
 * is reported) and SL_UNPOISON makes them addressable again; no-ops in other builds. For
 * memory a module keeps for reuse, between its release and its reuse. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SL_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SL_POISON(p, n) ((void)(p), (void)(n))
#define SL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Resets the countdown from SLUICE_FAIL_ALLOC (tests only; no-op otherwise). */
void sl__alloc_fail_reset(long nth);

#endif

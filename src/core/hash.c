/*
 * hash.c - xxHash XXH3 behind one function, so the key hash is defined in one place.
 */
#include "core/hash.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

uint64_t sl__hash(const void *p, size_t len)
{
    return XXH3_64bits(p, len);
}

/*
 * hash.h - the one hash function for keys (xxHash's XXH3, 64 bits) and key groups.
 *
 * key_group = hash(key bytes) mod max_parallelism; subtask i of p owns key groups
 * [ceil(i*M/p), ceil((i+1)*M/p)), and key group g belongs to subtask g*p/M, as in Flink.
 */
#ifndef SL_CORE_HASH_H
#define SL_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t sl__hash(const void *p, size_t len);

/* max_parallelism - 1 when it is a power of two (the default, 128, and most settings), so
 * that a key group is a mask instead of a division; else 0. */
static inline uint64_t sl__key_group_mask(int max_parallelism)
{
    uint64_t m = (uint64_t)max_parallelism;
    return (m & (m - 1)) == 0 ? m - 1 : 0;
}

/* sl__key_group with mask = sl__key_group_mask(max_parallelism), for loops over many
 * hashes: the mask's test is then made once, not per hash. */
static inline int sl__key_group_masked(uint64_t hash, int max_parallelism, uint64_t mask)
{
    return (int)(mask ? hash & mask : hash % (uint64_t)max_parallelism);
}

static inline int sl__key_group(uint64_t hash, int max_parallelism)
{
    return sl__key_group_masked(hash, max_parallelism, sl__key_group_mask(max_parallelism));
}

static inline int sl__key_group_owner(int key_group, int parallelism, int max_parallelism)
{
    uint64_t scaled = (uint64_t)key_group * (uint64_t)parallelism, m = (uint64_t)max_parallelism;
    return (int)((m & (m - 1)) == 0 ? scaled >> __builtin_ctzll(m) : scaled / m);
}

/* First key group of subtask i (inclusive); the end is the start of subtask i + 1. */
static inline int sl__key_group_start(int subtask, int parallelism, int max_parallelism)
{
    return (int)(((int64_t)subtask * max_parallelism + parallelism - 1) / parallelism);
}

#endif

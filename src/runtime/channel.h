/*
 * channel.h - bounded channels of serialized record buffers between subtask threads, and
 * the input gate a consumer subtask reads all its channels through.
 *
 * A channel connects one producer subtask to one consumer subtask over one job-graph edge.
 * It owns a fixed number of buffers (its credits). The producer fills a buffer, pushes it
 * and takes a free one; when no buffer is free it blocks until the consumer returns one:
 * that is backpressure, and it never drops or reorders data. In-band events (end of
 * partition, later barriers and watermarks) travel in the same queue, in order.
 *
 * All channels into one consumer share the consumer's gate mutex, so the consumer can wait
 * for "any channel has data" on one condition variable. Locks are taken once per buffer
 * (32 KiB by default), never per record.
 *
 * Threads: the producer side (sl__channel_* writer functions) is used by exactly one
 * producer thread; the gate side by exactly one consumer thread; sl__gate_wake from any.
 */
#ifndef SL_RUNTIME_CHANNEL_H
#define SL_RUNTIME_CHANNEL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl__buffer {
    uint8_t *data;
    size_t len; /* bytes used */
    size_t cap;
} sl__buffer;

typedef enum sl__event_kind {
    SL_EV_DATA = 0,         /* a buffer of records */
    SL_EV_END_OF_PARTITION, /* the producer will send nothing more */
    SL_EV_BARRIER,          /* checkpoint barrier; arg is the checkpoint id */
} sl__event_kind;

typedef struct sl__entry {
    sl__event_kind kind;
    sl__buffer *buf; /* DATA only */
    int64_t arg;
} sl__entry;

typedef struct sl__gate sl__gate;

typedef struct sl__channel {
    sl__gate *gate;
    int index;  /* in the gate */
    int input;  /* logical input of the consumer */
    bool keyed; /* a HASH edge's: every record is framed with its key hash (ops.c) */

    /* Guarded by gate->mu: the queue and the free buffers. */
    sl__entry *queue;
    int qcap, qhead, qlen;
    sl__buffer **free_bufs;
    int nfree, nbufs;
    bool producer_waiting;
    bool producer_wants_buf; /* while producer_waiting: it waits for a free buffer too */
    pthread_cond_t space;    /* producer waits here for a free buffer or queue slot */

    /* Consumer thread only: held back during barrier alignment (exactly-once). */
    bool blocked;
    bool ended;

    /* Producer thread only. */
    sl__buffer *cur; /* buffer being filled, NULL when none taken */
    size_t buf_size;
} sl__channel;

struct sl__gate {
    pthread_mutex_t mu;
    pthread_cond_t ready; /* consumer waits here */
    bool consumer_waiting;
    sl__channel **chans;
    int nchans;
    int rr;                 /* consumer only: next channel to look at */
    atomic_bool *cancelled; /* the job's cancel flag */
    atomic_int *mail;       /* the consumer task's mail flag: wakes sl__gate_next */
};

/* Creates a gate for nchans channels (added with sl__channel_create). mail is the consumer
 * task's mail flag: when it is set, sl__gate_next returns so the task can read its mail. */
sl__gate *sl__gate_create(int nchans, atomic_bool *cancelled, atomic_int *mail);
void sl__gate_destroy(sl__gate *g); /* destroys its channels too */
/* Creates channel index of gate g with nbufs buffers of buf_size bytes; keyed is false
 * (the runtime sets it, before the producer starts, on the channels of HASH edges). */
sl__channel *sl__channel_create(sl__gate *g, int index, int input, int nbufs, size_t buf_size);

/* The part of sl__channel_reserve that pushes the current buffer and takes a free one. */
sl__buffer *sl__channel_reserve_slow(sl__channel *c, size_t need);

/* Producer: returns a buffer with at least need free bytes (need <= buf_size, or a larger
 * one is grown for a single oversized record), pushing the current one if it lacks room.
 * Returns NULL when the job is cancelled. Inline: most records fit the current buffer. */
static inline sl__buffer *sl__channel_reserve(sl__channel *c, size_t need)
{
    sl__buffer *b = c->cur;
    if (b && b->cap - b->len >= need)
        return b;
    return sl__channel_reserve_slow(c, need);
}
/* Producer: pushes the current buffer if it holds data. Returns 0 or -1 when cancelled. */
int sl__channel_flush(sl__channel *c);
/* Producer: flushes and sends an event. Returns 0 or -1 when cancelled. */
int sl__channel_send_event(sl__channel *c, sl__event_kind kind, int64_t arg);

/* Consumer: takes the next entry from any channel that is not blocked, round-robin,
 * blocking until one is available. Returns the channel, or NULL when the job is cancelled
 * or the task has mail (check both). After handling a DATA
 * entry the consumer returns its buffer with sl__gate_release. When idle is non-NULL and
 * nothing is ready, idle(arg) is called once before blocking (to flush output). */
sl__channel *sl__gate_next(sl__gate *g, sl__entry *out, void (*idle)(void *), void *arg);
void sl__gate_release(sl__gate *g, sl__channel *c, sl__buffer *b);
/* Wakes every thread blocked on g (consumer and producers), e.g. after cancel. */
void sl__gate_wake(sl__gate *g);

#endif

/*
 * channel.c - credit-bounded buffer channels and input gates (see channel.h).
 */
#include "runtime/channel.h"
#include "core/alloc.h"
#include "core/log.h"

#include <stdlib.h>
#include <string.h>

enum { EVENT_SLOTS = 8 };

sl__gate *sl__gate_create(int nchans, atomic_bool *cancelled, atomic_int *mail)
{
    sl__gate *g = sl__xcalloc(1, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->ready, NULL);
    g->chans = sl__xcalloc((size_t)(nchans ? nchans : 1), sizeof *g->chans);
    g->nchans = nchans;
    g->cancelled = cancelled;
    g->mail = mail;
    return g;
}

static sl__buffer *buffer_new(size_t size)
{
    sl__buffer *b = sl__xcalloc_lines(1, sizeof *b); /* len: written per record */
    b->data = sl__xmalloc(size);
    b->cap = size;
    b->len = 0;
    return b;
}

static void buffer_free(sl__buffer *b)
{
    if (b) {
        SL_UNPOISON(b->data, b->cap);
        sl__free(b->data);
        sl__free(b);
    }
}

sl__channel *sl__channel_create(sl__gate *g, int index, int input, int nbufs, size_t buf_size)
{
    sl__channel *c = sl__xcalloc(1, sizeof *c);
    c->gate = g;
    c->index = index;
    c->input = input;
    c->qcap = nbufs + EVENT_SLOTS;
    c->queue = sl__xcalloc((size_t)c->qcap, sizeof *c->queue);
    c->free_bufs = sl__xcalloc((size_t)nbufs, sizeof *c->free_bufs);
    for (int i = 0; i < nbufs; i++)
        c->free_bufs[i] = buffer_new(buf_size);
    c->nfree = c->nbufs = nbufs;
    c->buf_size = buf_size;
    pthread_cond_init(&c->space, NULL);
    g->chans[index] = c;
    return c;
}

void sl__gate_destroy(sl__gate *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->nchans; i++) {
        sl__channel *c = g->chans[i];
        if (!c)
            continue;
        for (int k = 0; k < c->qlen; k++) {
            sl__entry *e = &c->queue[(c->qhead + k) % c->qcap];
            buffer_free(e->buf);
        }
        for (int k = 0; k < c->nfree; k++)
            buffer_free(c->free_bufs[k]);
        buffer_free(c->cur);
        pthread_cond_destroy(&c->space);
        sl__free(c->free_bufs);
        sl__free(c->queue);
        sl__free(c);
    }
    pthread_cond_destroy(&g->ready);
    pthread_mutex_destroy(&g->mu);
    sl__free(g->chans);
    sl__free(g);
}

static bool cancelled(const sl__gate *g)
{
    return atomic_load_explicit(g->cancelled, memory_order_relaxed);
}

/* With g->mu held: waits until the channel's queue has a free slot (and, when want_buf, a
 * free buffer). Returns false when cancelled. */
static bool wait_space(sl__channel *c, bool want_buf)
{
    sl__gate *g = c->gate;
    while (c->qlen == c->qcap || (want_buf && c->nfree == 0)) {
        if (cancelled(g))
            return false;
        c->producer_waiting = true;
        c->producer_wants_buf = want_buf;
        pthread_cond_wait(&c->space, &g->mu);
        c->producer_waiting = false;
    }
    return !cancelled(g);
}

/* With g->mu held, on the consumer's side: wakes c's producer if it waits and what it waits
 * for is there. A producer waiting for a free buffer is woken only once half the channel's
 * buffers are free, unless no more will come back without it (nothing queued, or an event
 * next, after which the channel may block for barrier alignment), or eager is set (the
 * consumer just took an event). Each wakeup costs both threads a context switch and the
 * kernel a futex call; waking for every returned buffer had the producer refill one buffer
 * per wakeup whenever the consumer was the slower side. The producer waits only when no
 * buffer is free, and the buffers it waits for are queued or being processed, so each
 * comes back (sl__gate_release) and the last one wakes it. */
static void wake_producer(sl__channel *c, bool eager)
{
    if (!c->producer_waiting || c->qlen == c->qcap)
        return;
    if (c->producer_wants_buf) {
        if (c->nfree == 0)
            return;
        bool more_coming = !eager && c->qlen > 0 && c->queue[c->qhead].kind == SL_EV_DATA;
        if (more_coming && c->nfree < (c->nbufs + 1) / 2)
            return;
    }
    pthread_cond_signal(&c->space);
}

/* With g->mu held: appends an entry and wakes the consumer. */
static void enqueue(sl__channel *c, sl__entry e)
{
    sl__gate *g = c->gate;
    c->queue[(c->qhead + c->qlen) % c->qcap] = e;
    c->qlen++;
    if (g->consumer_waiting)
        pthread_cond_signal(&g->ready);
}

sl__buffer *sl__channel_reserve_slow(sl__channel *c, size_t need)
{
    sl__buffer *b = c->cur;
    sl__gate *g = c->gate;
    pthread_mutex_lock(&g->mu);
    if (b) {
        if (!wait_space(c, false)) {
            pthread_mutex_unlock(&g->mu);
            return NULL;
        }
        enqueue(c, (sl__entry){.kind = SL_EV_DATA, .buf = b});
        c->cur = NULL;
    }
    if (!wait_space(c, true)) {
        pthread_mutex_unlock(&g->mu);
        return NULL;
    }
    b = c->free_bufs[--c->nfree];
    pthread_mutex_unlock(&g->mu);
    SL_UNPOISON(b->data, b->cap);
    b->len = 0;
    if (b->cap < need) {
        /* one record larger than a buffer: this buffer grows for it and shrinks back when
         * the consumer returns it */
        b->data = sl__xrealloc(b->data, need);
        b->cap = need;
    }
    c->cur = b;
    return b;
}

int sl__channel_flush(sl__channel *c)
{
    if (!c->cur || c->cur->len == 0)
        return 0;
    sl__gate *g = c->gate;
    pthread_mutex_lock(&g->mu);
    if (!wait_space(c, false)) {
        pthread_mutex_unlock(&g->mu);
        return -1;
    }
    enqueue(c, (sl__entry){.kind = SL_EV_DATA, .buf = c->cur});
    c->cur = NULL;
    pthread_mutex_unlock(&g->mu);
    return 0;
}

int sl__channel_send_event(sl__channel *c, sl__event_kind kind, int64_t arg)
{
    if (sl__channel_flush(c) < 0)
        return -1;
    sl__gate *g = c->gate;
    pthread_mutex_lock(&g->mu);
    if (!wait_space(c, false)) {
        pthread_mutex_unlock(&g->mu);
        return -1;
    }
    enqueue(c, (sl__entry){.kind = kind, .arg = arg});
    pthread_mutex_unlock(&g->mu);
    return 0;
}

sl__channel *sl__gate_next(sl__gate *g, sl__entry *out, void (*idle)(void *), void *arg)
{
    bool idled = false;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        if (cancelled(g) || atomic_load_explicit(g->mail, memory_order_acquire)) {
            pthread_mutex_unlock(&g->mu);
            return NULL;
        }
        for (int k = 0; k < g->nchans; k++) {
            int i = (g->rr + k) % g->nchans;
            sl__channel *c = g->chans[i];
            if (c->qlen == 0 || c->blocked)
                continue;
            *out = c->queue[c->qhead];
            c->qhead = (c->qhead + 1) % c->qcap;
            c->qlen--;
            wake_producer(c, out->kind != SL_EV_DATA);
            g->rr = (i + 1) % g->nchans;
            pthread_mutex_unlock(&g->mu);
            return c;
        }
        if (idle && !idled) {
            /* flush our own output before sleeping, without holding our gate's lock */
            pthread_mutex_unlock(&g->mu);
            idle(arg);
            idled = true;
            pthread_mutex_lock(&g->mu);
            continue;
        }
        g->consumer_waiting = true;
        pthread_cond_wait(&g->ready, &g->mu);
        g->consumer_waiting = false;
        idled = false;
    }
}

void sl__gate_release(sl__gate *g, sl__channel *c, sl__buffer *b)
{
    if (b->cap > c->buf_size) {
        b->data = sl__xrealloc(b->data, c->buf_size);
        b->cap = c->buf_size;
    }
    b->len = 0;
    /* under AddressSanitizer its bytes stay unaddressable until the producer takes it again:
     * a record, or a key borrowed from one, read after the buffer went back is reported
     * where it is read, not found later as wrong data */
    SL_POISON(b->data, b->cap);
    pthread_mutex_lock(&g->mu);
    SL_ASSERT(c->nfree < c->nbufs);
    c->free_bufs[c->nfree++] = b;
    wake_producer(c, false);
    pthread_mutex_unlock(&g->mu);
}

void sl__gate_wake(sl__gate *g)
{
    pthread_mutex_lock(&g->mu);
    pthread_cond_broadcast(&g->ready);
    for (int i = 0; i < g->nchans; i++)
        if (g->chans[i])
            pthread_cond_broadcast(&g->chans[i]->space);
    pthread_mutex_unlock(&g->mu);
}

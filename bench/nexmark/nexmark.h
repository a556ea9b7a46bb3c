/*
 * nexmark.h - the Nexmark benchmark for Sluice: an event generator that follows the
 * published nexmark-flink generator (Person, Auction and Bid events of an online auction
 * site), a parallel Sluice source over it, and the queries q0-q3 as job programs on the
 * public API. bench_nexmark (main.c) runs them; tests/unit/test_nexmark.c checks them.
 *
 * The generator is a pure function: event number n of a generator's range is computed from
 * the configuration and n alone (its random draws are seeded by the event id), so runs
 * repeat exactly and parallel generators need no coordination. As in the reference,
 * parallel generators split the event id space into contiguous ranges and run on parallel
 * timelines: generator i of p owns ids [first + i*(N/p), ...), the last one takes the
 * remainder, and each spaces its event times by p / rate.
 *
 * Everything here runs on any thread; a nexmark_gen is read-only after creation and may be
 * shared by any number of threads.
 */
#ifndef SL_BENCH_NEXMARK_H
#define SL_BENCH_NEXMARK_H

#include "sluice.h"

#include <stddef.h>
#include <stdint.h>

/* ---- configuration (the reference's NexmarkConfiguration) ------------------------------ */

typedef struct nexmark_config {
    int64_t first_event_rate;   /* events/s of all generators together: spacing of event times */
    int person_proportion;      /* 1: of every 50 event ids, 1 person, */
    int auction_proportion;     /* 3 auctions */
    int bid_proportion;         /* and 46 bids */
    int avg_person_bytes;       /* 200: 'extra' pads each kind to about this size */
    int avg_auction_bytes;      /* 500 */
    int avg_bid_bytes;          /* 100 */
    int hot_auction_ratio;      /* 2: a bid is for a hot auction with probability 1 - 1/2 */
    int hot_sellers_ratio;      /* 4: an auction is by a hot seller with probability 3/4 */
    int hot_bidders_ratio;      /* 4: a bid is by a hot bidder with probability 3/4 */
    int num_in_flight_auctions; /* 100: bids go to one of the last 100 auctions (+ a lead) */
    int num_active_people;      /* 1000: sellers and bidders are among the last 1000 people */
    int64_t base_time;          /* ms since the epoch: event time of event number 0 */
    int64_t first_event_id;     /* 1 and 1, as the reference's Flink source sets them: the */
    int64_t first_event_number; /* first event id is their sum */
    uint64_t seed;              /* mixed into every event's random draws */
} nexmark_config;

/* Fills c with the reference's defaults, event rate 10 M/s (its benchmark's setting) and
 * base time 2015-07-15T00:00:00Z. */
void nexmark_config_default(nexmark_config *c);

/* A generator: the configuration plus tables derived from it (the 10,000 channel URLs).
 * Returns NULL when the configuration is invalid (a proportion or ratio below its minimum,
 * a rate <= 0) or memory runs out. The caller owns it; destroy(NULL) is a no-op. */
typedef struct nexmark_gen nexmark_gen;
nexmark_gen *nexmark_gen_create(const nexmark_config *c);
void nexmark_gen_destroy(nexmark_gen *g);
const nexmark_config *nexmark_gen_config(const nexmark_gen *g);

/* The events of one generator (the reference's GeneratorConfig after split()): event
 * number k in [0, max_events) has id first_event_id + first_event_number + k and event time
 * base_time + (first_event_number + k) * generators / rate. */
typedef struct nexmark_range {
    int64_t first_event_id;
    int64_t first_event_number;
    int64_t max_events;
    int generators; /* parallel timelines sharing the event rate */
} nexmark_range;

/* The range of generator i of n when n generators share total events. */
nexmark_range nexmark_split(const nexmark_gen *g, int64_t total, int i, int n);

/* ---- events ---------------------------------------------------------------------------- */

typedef enum nexmark_kind {
    NEXMARK_PERSON = 0,
    NEXMARK_AUCTION = 1,
    NEXMARK_BID = 2,
} nexmark_kind;

/* A string of an event: a view into the buffer given to nexmark_generate (or static text). */
typedef struct nexmark_str {
    const char *ptr;
    int len;
} nexmark_str;

typedef struct nexmark_person {
    int64_t id;
    nexmark_str name, email, credit_card, city, state;
} nexmark_person;

typedef struct nexmark_auction {
    int64_t id;
    nexmark_str item_name, description;
    int64_t initial_bid, reserve; /* cents */
    int64_t expires;              /* ms since the epoch */
    int64_t seller, category;
} nexmark_auction;

typedef struct nexmark_bid {
    int64_t auction, bidder, price; /* price in cents */
    nexmark_str channel, url;
} nexmark_bid;

typedef struct nexmark_event {
    nexmark_kind kind;
    int64_t event_id;
    int64_t date_time; /* ms since the epoch */
    nexmark_str extra;
    union {
        nexmark_person person;
        nexmark_auction auction;
        nexmark_bid bid;
    } u;
} nexmark_event;

/* Bytes of text buffer nexmark_generate needs: the longest event's strings at the largest
 * average sizes accepted (3000 bytes). */
enum { NEXMARK_EVENT_BUF = 4096 };

/* Generates event number k (0 <= k < r->max_events) of range r into ev. Its strings are
 * written into buf (NEXMARK_EVENT_BUF bytes) or point to static text; they are valid while
 * buf is. Deterministic: the same (configuration, range, k) gives the same event. */
void nexmark_generate(const nexmark_gen *g, const nexmark_range *r, int64_t k, nexmark_event *ev,
                      char *buf);

/* The id arithmetic of the reference, for an event id: which kind it is, and the last
 * person and auction id (base 0, before adding 1000) generated at or before it. */
nexmark_kind nexmark_kind_of(const nexmark_gen *g, int64_t event_id);
int64_t nexmark_last_base0_person_id(const nexmark_gen *g, int64_t event_id);
int64_t nexmark_last_base0_auction_id(const nexmark_gen *g, int64_t event_id);

/* Ids start here, as in the reference, so that small runs still find matches. */
enum {
    NEXMARK_FIRST_PERSON_ID = 1000,
    NEXMARK_FIRST_AUCTION_ID = 1000,
    NEXMARK_FIRST_CATEGORY = 10
};

/* The size the reference counts for an event against its average: 8 bytes per number
 * (id, times, prices, ...) plus the string lengths, extra included. */
int nexmark_event_size(const nexmark_event *ev);

/* ---- events as rows ---------------------------------------------------------------------
 *
 * One row schema for all three kinds, as nexmark-flink's Event (a type and one nested row
 * per kind): the kind, the fields every kind has (event time and extra), then each kind's
 * own fields, null in the rows of the other kinds. */

#define NEXMARK_SCHEMA                                                                             \
    "kind:i64,date_time:i64,extra:str,"                                                            \
    "person_id:i64,name:str,email:str,credit_card:str,city:str,state:str,"                         \
    "auction_id:i64,item_name:str,description:str,initial_bid:i64,reserve:i64,expires:i64,"        \
    "seller:i64,category:i64,"                                                                     \
    "auction:i64,bidder:i64,price:i64,channel:str,url:str"

enum nexmark_field {
    NX_KIND,
    NX_DATE_TIME,
    NX_EXTRA,
    NX_PERSON_ID,
    NX_NAME,
    NX_EMAIL,
    NX_CREDIT_CARD,
    NX_CITY,
    NX_STATE,
    NX_AUCTION_ID,
    NX_ITEM_NAME,
    NX_DESCRIPTION,
    NX_INITIAL_BID,
    NX_RESERVE,
    NX_EXPIRES,
    NX_SELLER,
    NX_CATEGORY,
    NX_AUCTION,
    NX_BIDDER,
    NX_PRICE,
    NX_CHANNEL,
    NX_URL,
    NX_NFIELDS
};

/* Fills row (NX_NFIELDS values) from ev; the row's strings are views of ev's. prev is the
 * kind of the event row already holds (it is refilled in place), or -1 when row holds
 * anything else. */
void nexmark_event_row(const nexmark_event *ev, sl_value *row, int prev);

/* ---- the Sluice source and the queries ---------------------------------------------------- */

/* What a Nexmark source generates: borrowed by the source, so it must outlive sl_execute. */
typedef struct nexmark_source_conf {
    const nexmark_gen *gen;
    int64_t events; /* in total, over all subtasks */
    /* Events per second over all subtasks (each subtask paces its share, rate / p); 0 or
     * less: as fast as possible. The source paces in bursts: each poll emits every event
     * whose scheduled time (first poll + k / (rate / p)) has come, up to a burst, and when
     * none has, flushes its output and sleeps until the next one is due (sl_ctx_sleep_ms
     * for whole milliseconds, nanosleep for the rest), so the rate holds at millions/s. */
    double rate;
    /* Replaces each row's date_time with the event's creation time in CLOCK_MONOTONIC
     * nanoseconds, for latency measurement: its scheduled time when rate > 0 (so a source
     * that falls behind counts its lateness), the clock when it is generated otherwise. */
    bool stamp;
} nexmark_source_conf;

/* A bounded parallel source of NEXMARK_SCHEMA rows: subtask i of p generates the range
 * nexmark_split(gen, events, i, p) in order. Its position is operator state, so a restore
 * from a checkpoint resumes where the checkpoint was taken (at the same parallelism: the
 * split cannot be rescaled, and a restore at another parallelism fails the job). */
sl_stream *nexmark_source(sl_env *env, const nexmark_source_conf *conf);

/* CLOCK_MONOTONIC in nanoseconds: the clock of nexmark_source_conf.stamp. */
int64_t nexmark_now_ns(void);

/* Adds query name ("q0" to "q3") to events, a stream of NEXMARK_SCHEMA rows of env, and
 * returns its result stream, without a sink (the caller adds one). An unknown name records
 * SL_EINVAL on env and returns NULL; a NULL events (a failed builder) returns NULL.
 *   q0  pass-through: the bids as (auction, bidder, price, date_time, extra)
 *   q1  currency conversion: the same with price:f64 = 0.908 * price (dollars to euros)
 *   q2  selection: (auction, price) of the bids with auction % 123 == 0
 *   q3  local item suggestion: (name, city, state, id) for every auction of category 10
 *       joined with its seller when the seller's state is OR, ID or CA; an incremental
 *       inner join keyed by seller with both sides in keyed state */
sl_stream *nexmark_query(sl_env *env, sl_stream *events, const char *name);
/* The result schema of a query, NULL for an unknown name. */
const char *nexmark_query_schema(const char *name);

/* The same queries for latency measurement: each result row also carries the date_time of
 * the event that produced it (q0 and q1 already do, as field 3; q2 and q3 get it as a last
 * field "date_time:i64"; for q3 it is the arrival, auction or person, that made the match).
 * With a stamping source that is the creation time of the event, so a sink can measure
 * source-to-sink latency. */
sl_stream *nexmark_query_timed(sl_env *env, sl_stream *events, const char *name);
const char *nexmark_query_timed_schema(const char *name);
/* The index of date_time in nexmark_query_timed's result rows ("gen", no query: the event
 * row's NX_DATE_TIME); -1 for an unknown name. */
int nexmark_query_time_field(const char *name);

#endif

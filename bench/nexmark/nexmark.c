/*
 * nexmark.c - the Nexmark event generator and its Sluice source.
 *
 * Follows the nexmark-flink generator (NexmarkGenerator, GeneratorConfig and the Person,
 * Auction, Bid, Price and Strings generators), written afresh in C:
 *  - the kind of an event comes from its id: id % 50 below 1 is a person, below 4 an
 *    auction, else a bid (proportions 1:3:46);
 *  - person and auction ids count the persons and auctions before the event id
 *    (lastBase0PersonId / lastBase0AuctionId) plus 1000; sellers and bidders are "hot" (the
 *    first or second person of the last batch of 100) with probability 1 - 1/ratio, else
 *    one of the last 1000 people plus a lead of 10 not yet generated; bids go to a hot
 *    auction (the first of the last batch of 100) or to one of the last 100 auctions plus a
 *    lead of 10;
 *  - event times are base_time + event number * generators / rate, per generator; auctions
 *    expire within twice the time it takes to generate the next 100 auctions;
 *  - prices are log-uniform between $1 and $1,000,000 (cents: round(10^(6u) * 100));
 *  - bids name a hot channel (Google, Facebook, Baidu, Apple) half of the time, else one of
 *    10,000 channels "channel-N" whose URL carries "&channel_id=" 9 times in 10;
 *  - 'extra' pads each event towards 200 / 500 / 100 bytes (uniform within +-20% of what
 *    is missing), counting 8 bytes per number plus the other strings' lengths.
 *
 * Where this differs from the reference, on purpose:
 *  - each event's random draws come from a splitmix64 stream seeded by the event id and the
 *    configured seed (the reference seeded java.util.Random by event id in its earlier
 *    versions and now shares one unseeded Random, which makes runs unrepeatable). The
 *    distributions are the reference's; the values are not Java's.
 *  - the channel URLs are a function of the channel number and seed, built once (the
 *    reference fills its cache on first use from unseeded Randoms);
 *  - bidder ids get FIRST_PERSON_ID added once, as in Beam's generator and as its comment
 *    intends (nexmark-flink adds it twice since channels were added: its issue #30);
 *  - no out-of-order groups (outOfOrderGroupSize 1, the reference's default) and no rate
 *    shapes: the source emits as fast as it can, as the benchmark runs the reference.
 */
#include "nexmark.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

__extension__ typedef unsigned __int128 u128;

#define NX_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: nexmark: assertion failed: %s\n", __FILE__, __LINE__, #cond);  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum {
    PERSON_ID_LEAD = 10,  /* persons not yet generated that may be referenced */
    AUCTION_ID_LEAD = 10, /* auctions likewise */
    HOT_BATCH = 100,      /* hot sellers, bidders and auctions: first of each batch of 100 */
    NUM_CATEGORIES = 5,
    HOT_CHANNELS_RATIO = 2,
    NUM_CHANNELS = 10000,
    MIN_STRING_LENGTH = 3,
    MAX_AVG_BYTES = 3000, /* so that the longest event fits NEXMARK_EVENT_BUF */
    URL_CAP = 96,
    CHANNEL_NAME_CAP = 16,
};

/* Kept few, as in the reference, so that the queries find matches in small runs. */
static const char *const us_states[] = {"AZ", "CA", "ID", "OR", "WA", "WY"};
static const char *const us_cities[] = {"Phoenix",  "Los Angeles", "San Francisco", "Boise",
                                        "Portland", "Bend",        "Redmond",       "Seattle",
                                        "Kent",     "Cheyenne"};
static const char *const first_names[] = {"Peter", "Paul",  "Luke",  "John",   "Saul",  "Vicky",
                                          "Kate",  "Julie", "Sarah", "Deiter", "Walter"};
static const char *const last_names[] = {"Shultz", "Abrams", "Spencer", "White", "Bartels",
                                         "Walton", "Smith",  "Jones",   "Noris"};
static const char *const hot_channels[] = {"Google", "Facebook", "Baidu", "Apple"};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

struct nexmark_gen {
    nexmark_config c;
    int total_proportion;
    nexmark_str hot_url[4];
    nexmark_str channel_name[NUM_CHANNELS];
    nexmark_str channel_url[NUM_CHANNELS];
    char *text; /* the bytes of the URLs and channel names */
};

/* ---- random draws ------------------------------------------------------------------------ */

typedef struct rng {
    uint64_t s;
} rng;

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* splitmix64: one add and a mix per draw, and any seed starts a good stream. */
static inline uint64_t rng_next(rng *r)
{
    return mix64(r->s += 0x9E3779B97F4A7C15ull);
}

/* Uniform in [0, n) for n >= 1 (multiply-shift: a bias below n / 2^64). */
static inline int64_t rng_below(rng *r, int64_t n)
{
    return (int64_t)(((u128)rng_next(r) * (uint64_t)n) >> 64);
}

static inline double rng_unit(rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static rng rng_for(uint64_t seed, uint64_t stream, int64_t id)
{
    return (rng){mix64(seed ^ mix64(stream + (uint64_t)id * 0xD1B54A32D192ED03ull))};
}

/* ---- strings (the reference's StringsGenerator) ------------------------------------------ */

/* n random lowercase letters, four a draw: each 16 bits u of the draw give the letter
 * floor(u * 26 / 2^16), so no letter is more likely than another by more than 1 in 2520.
 * The four multiplications are done two at a time in 32-bit slots of one 64-bit product,
 * and the draws of one call do not depend on each other, so they overlap in the pipeline:
 * the letters are most of an event's bytes and were the generator's biggest cost. */
static char *letters(rng *r, char *out, int n)
{
    const uint64_t lanes = 0x0000ffff0000ffffull, five_bits = 0x0000001f0000001full;
    uint64_t s = r->s;
    int words = (n + 3) / 4;
    for (int i = 0; i < words; i++) {
        uint64_t x = mix64(s + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull);
        uint64_t even = ((x & lanes) * 26 >> 16) & five_bits;        /* 16-bit lanes 0, 2 */
        uint64_t odd = (((x >> 16) & lanes) * 26 >> 16) & five_bits; /* lanes 1, 3 */
        uint64_t w = even | odd << 8;                                /* bytes 0, 1, 4, 5 */
        uint32_t four = (uint32_t)(w | w >> 16) + 0x61616161u;       /* + 'a' in each byte */
        out[4 * i] = (char)four;
        out[4 * i + 1] = (char)(four >> 8);
        out[4 * i + 2] = (char)(four >> 16);
        out[4 * i + 3] = (char)(four >> 24);
    }
    r->s = s + (uint64_t)words * 0x9E3779B97F4A7C15ull;
    return out + n;
}

/* 3 to max_len - 1 characters, each `special` with probability 1/13, else a letter; then
 * trimmed of spaces at both ends, as Java's String.trim does. Returns the end. */
static char *next_string(rng *r, int max_len, char special, char *out)
{
    int len = MIN_STRING_LENGTH + (int)rng_below(r, max_len - MIN_STRING_LENGTH);
    /* one draw in 13 * 26 = 338 per character: 26 of them (1/13) give `special` */
    for (int i = 0; i < len;) {
        uint64_t x = rng_next(r);
        for (int k = 0; k < 7 && i < len; k++, i++) {
            u128 m = (u128)x * 338;
            int c = (int)(m >> 64);
            x = (uint64_t)m;
            out[i] = c < 26 ? special : (char)('a' + c % 26);
        }
    }
    int b = 0, e = len;
    if (special == ' ') {
        while (b < e && out[b] == ' ')
            b++;
        while (e > b && out[e - 1] == ' ')
            e--;
        if (b)
            memmove(out, out + b, (size_t)(e - b));
    }
    return out + (e - b);
}

/* Letters so that current + their number averages `average`: uniform in
 * [missing - delta, missing + delta) with delta = round(missing / 5). */
static char *next_extra(rng *r, int current, int average, char *out)
{
    if (current > average)
        return out;
    int missing = average - current;
    int delta = (int)floor(missing * 0.2 + 0.5);
    int n = missing - delta + (delta ? (int)rng_below(r, 2 * delta) : 0);
    return letters(r, out, n);
}

static char *put(char *at, const char *s)
{
    size_t n = strlen(s);
    memcpy(at, s, n);
    return at + n;
}

static nexmark_str str_of(const char *s)
{
    return (nexmark_str){s, (int)strlen(s)};
}

static nexmark_str span(const char *b, const char *e)
{
    return (nexmark_str){b, (int)(e - b)};
}

/* "https://www.nexmark.com/xxx/xxx/xxx/item.htm?query=1", parts of 3 or 4 characters
 * where '_' replaces a letter with probability 1/13. */
static char *base_url(rng *r, char *at)
{
    at = put(at, "https://www.nexmark.com/");
    for (int i = 0; i < 3; i++) {
        at = next_string(r, 5, '_', at);
        *at++ = '/';
    }
    return put(at, "item.htm?query=1");
}

/* Java's Math.abs(Integer.reverse(v)): the bits of v reversed, as a non-negative int except
 * for the one value whose absolute value does not fit. */
static int64_t abs_reversed(uint32_t v)
{
    uint32_t r = 0;
    for (int i = 0; i < 32; i++, v >>= 1)
        r = (r << 1) | (v & 1);
    int64_t s = (int32_t)r;
    return s == INT32_MIN ? s : (s < 0 ? -s : s);
}

/* ---- configuration ------------------------------------------------------------------------ */

void nexmark_config_default(nexmark_config *c)
{
    *c = (nexmark_config){
        .first_event_rate = 10000000,
        .person_proportion = 1,
        .auction_proportion = 3,
        .bid_proportion = 46,
        .avg_person_bytes = 200,
        .avg_auction_bytes = 500,
        .avg_bid_bytes = 100,
        .hot_auction_ratio = 2,
        .hot_sellers_ratio = 4,
        .hot_bidders_ratio = 4,
        .num_in_flight_auctions = 100,
        .num_active_people = 1000,
        .base_time = 1436918400000, /* 2015-07-15T00:00:00Z, as Beam's Nexmark */
        .first_event_id = 1,
        .first_event_number = 1,
        .seed = 0,
    };
}

static bool config_valid(const nexmark_config *c)
{
    return c->first_event_rate > 0 && c->person_proportion >= 1 && c->auction_proportion >= 1 &&
           c->bid_proportion >= 0 && c->hot_auction_ratio >= 1 && c->hot_sellers_ratio >= 1 &&
           c->hot_bidders_ratio >= 1 && c->num_in_flight_auctions >= 0 &&
           c->num_active_people >= 0 && c->avg_person_bytes >= 0 &&
           c->avg_person_bytes <= MAX_AVG_BYTES && c->avg_auction_bytes >= 0 &&
           c->avg_auction_bytes <= MAX_AVG_BYTES && c->avg_bid_bytes >= 0 &&
           c->avg_bid_bytes <= MAX_AVG_BYTES && c->first_event_id >= 0 &&
           c->first_event_number >= 0;
}

nexmark_gen *nexmark_gen_create(const nexmark_config *c)
{
    if (!c || !config_valid(c))
        return NULL;
    nexmark_gen *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->c = *c;
    g->total_proportion = c->person_proportion + c->auction_proportion + c->bid_proportion;
    g->text = malloc((size_t)(NUM_CHANNELS + 4) * (URL_CAP + CHANNEL_NAME_CAP));
    if (!g->text) {
        free(g);
        return NULL;
    }
    char *at = g->text;
    for (int i = 0; i < 4; i++) {
        rng r = rng_for(c->seed, 0x407, i);
        char *b = at;
        at = base_url(&r, at);
        g->hot_url[i] = span(b, at);
    }
    for (int i = 0; i < NUM_CHANNELS; i++) {
        rng r = rng_for(c->seed, 0xC4A, i);
        char *b = at;
        at = base_url(&r, at);
        if (rng_below(&r, 10) > 0)
            at += sprintf(at, "&channel_id=%lld", (long long)abs_reversed((uint32_t)i));
        g->channel_url[i] = span(b, at);
        b = at;
        at += sprintf(at, "channel-%d", i);
        g->channel_name[i] = span(b, at);
    }
    NX_CHECK(at <= g->text + (size_t)(NUM_CHANNELS + 4) * (URL_CAP + CHANNEL_NAME_CAP));
    return g;
}

void nexmark_gen_destroy(nexmark_gen *g)
{
    if (!g)
        return;
    free(g->text);
    free(g);
}

const nexmark_config *nexmark_gen_config(const nexmark_gen *g)
{
    return &g->c;
}

nexmark_range nexmark_split(const nexmark_gen *g, int64_t total, int i, int n)
{
    /* GeneratorConfig.split: equal shares, the last one takes what division leaves */
    int64_t share = total / n;
    nexmark_range r = {
        .first_event_id = g->c.first_event_id + share * i,
        .first_event_number = g->c.first_event_number,
        .max_events = i == n - 1 ? total - share * (n - 1) : share,
        .generators = n,
    };
    return r;
}

/* ---- ids and times ------------------------------------------------------------------------ */

/* What an event id says: its kind and the last person and auction (base 0) generated at or
 * before it, which is the current one for a person or an auction. One division. */
typedef struct event_ids {
    nexmark_kind kind;
    int64_t last_person, last_auction;
} event_ids;

static event_ids ids_of(const nexmark_gen *g, int64_t event_id)
{
    int64_t pp = g->c.person_proportion, ap = g->c.auction_proportion;
    int64_t epoch = event_id / g->total_proportion;
    int64_t offset = event_id - epoch * g->total_proportion;
    event_ids x;
    if (offset < pp) {
        /* a person; the last auction is the last of the previous epoch */
        x.kind = NEXMARK_PERSON;
        x.last_person = epoch * pp + offset;
        x.last_auction = (epoch - 1) * ap + ap - 1;
    } else if (offset < pp + ap) {
        x.kind = NEXMARK_AUCTION;
        x.last_person = epoch * pp + pp - 1;
        x.last_auction = epoch * ap + offset - pp;
    } else {
        /* a bid: the last person and auction of this epoch */
        x.kind = NEXMARK_BID;
        x.last_person = epoch * pp + pp - 1;
        x.last_auction = epoch * ap + ap - 1;
    }
    return x;
}

nexmark_kind nexmark_kind_of(const nexmark_gen *g, int64_t event_id)
{
    return ids_of(g, event_id).kind;
}

int64_t nexmark_last_base0_person_id(const nexmark_gen *g, int64_t event_id)
{
    return ids_of(g, event_id).last_person;
}

int64_t nexmark_last_base0_auction_id(const nexmark_gen *g, int64_t event_id)
{
    return ids_of(g, event_id).last_auction;
}

/* One of the active people, or one of the few to come. */
static int64_t next_base0_person_id(const nexmark_gen *g, rng *r, const event_ids *x)
{
    int64_t people = x->last_person + 1;
    int64_t active = people < g->c.num_active_people ? people : g->c.num_active_people;
    return people - active + rng_below(r, active + PERSON_ID_LEAD);
}

/* One of the auctions probably still open, or one of the few to come. */
static int64_t next_base0_auction_id(const nexmark_gen *g, rng *r, const event_ids *x)
{
    int64_t max = x->last_auction;
    int64_t min = max - g->c.num_in_flight_auctions;
    if (min < 0)
        min = 0;
    return min + rng_below(r, max - min + 1 + AUCTION_ID_LEAD);
}

static int64_t timestamp_for(const nexmark_gen *g, const nexmark_range *rg, int64_t number)
{
    double delay_us = 1000000.0 / (double)g->c.first_event_rate * rg->generators;
    return g->c.base_time + (int64_t)((double)number * delay_us) / 1000;
}

/* In cents, log-uniform over [$1, $1,000,000). */
static int64_t next_price(rng *r)
{
    return (int64_t)floor(exp(rng_unit(r) * 6.0 * 2.302585092994046) * 100.0 + 0.5);
}

/* ---- the three kinds ------------------------------------------------------------------------ */

static char *gen_person(const nexmark_gen *g, const event_ids *x, rng *r, nexmark_event *ev,
                        char *at)
{
    nexmark_person *p = &ev->u.person;
    p->id = x->last_person + NEXMARK_FIRST_PERSON_ID;
    char *b = at;
    at = put(at, first_names[rng_below(r, COUNT(first_names))]);
    *at++ = ' ';
    at = put(at, last_names[rng_below(r, COUNT(last_names))]);
    p->name = span(b, at);
    b = at;
    at = next_string(r, 7, ' ', at);
    *at++ = '@';
    at = next_string(r, 5, ' ', at);
    at = put(at, ".com");
    p->email = span(b, at);
    b = at;
    for (int i = 0; i < 4; i++) {
        int v = (int)rng_below(r, 10000);
        if (i)
            *at++ = ' ';
        at[0] = (char)('0' + v / 1000);
        at[1] = (char)('0' + v / 100 % 10);
        at[2] = (char)('0' + v / 10 % 10);
        at[3] = (char)('0' + v % 10);
        at += 4;
    }
    p->credit_card = span(b, at);
    p->city = str_of(us_cities[rng_below(r, COUNT(us_cities))]);
    p->state = str_of(us_states[rng_below(r, COUNT(us_states))]);
    int size = 8 + p->name.len + p->email.len + p->credit_card.len + p->city.len + p->state.len;
    b = at;
    at = next_extra(r, size, g->c.avg_person_bytes, at);
    ev->extra = span(b, at);
    return at;
}

static char *gen_auction(const nexmark_gen *g, const event_ids *x, const nexmark_range *rg,
                         int64_t number, rng *r, nexmark_event *ev, char *at)
{
    nexmark_auction *a = &ev->u.auction;
    a->id = x->last_auction + NEXMARK_FIRST_AUCTION_ID;
    if (rng_below(r, g->c.hot_sellers_ratio) > 0)
        a->seller = x->last_person / HOT_BATCH * HOT_BATCH;
    else
        a->seller = next_base0_person_id(g, r, x);
    a->seller += NEXMARK_FIRST_PERSON_ID;
    a->category = NEXMARK_FIRST_CATEGORY + rng_below(r, NUM_CATEGORIES);
    a->initial_bid = next_price(r);
    /* lasts on average until numInFlightAuctions more auctions have been generated */
    int64_t events_for_auctions =
        (int64_t)g->c.num_in_flight_auctions * g->total_proportion / g->c.auction_proportion;
    int64_t horizon = timestamp_for(g, rg, number + events_for_auctions) - ev->date_time;
    a->expires = ev->date_time + 1 + rng_below(r, horizon * 2 > 1 ? horizon * 2 : 1);
    char *b = at;
    at = next_string(r, 20, ' ', at);
    a->item_name = span(b, at);
    b = at;
    at = next_string(r, 100, ' ', at);
    a->description = span(b, at);
    a->reserve = a->initial_bid + next_price(r);
    int size = 8 + a->item_name.len + a->description.len + 8 + 8 + 8 + 8 + 8;
    b = at;
    at = next_extra(r, size, g->c.avg_auction_bytes, at);
    ev->extra = span(b, at);
    return at;
}

static char *gen_bid(const nexmark_gen *g, const event_ids *x, rng *r, nexmark_event *ev, char *at)
{
    nexmark_bid *bid = &ev->u.bid;
    if (rng_below(r, g->c.hot_auction_ratio) > 0)
        bid->auction = x->last_auction / HOT_BATCH * HOT_BATCH;
    else
        bid->auction = next_base0_auction_id(g, r, x);
    bid->auction += NEXMARK_FIRST_AUCTION_ID;
    /* the second person of the batch, so that hot bidders are not hot sellers */
    if (rng_below(r, g->c.hot_bidders_ratio) > 0)
        bid->bidder = x->last_person / HOT_BATCH * HOT_BATCH + 1;
    else
        bid->bidder = next_base0_person_id(g, r, x);
    bid->bidder += NEXMARK_FIRST_PERSON_ID;
    bid->price = next_price(r);
    if (rng_below(r, HOT_CHANNELS_RATIO) > 0) {
        int i = (int)rng_below(r, COUNT(hot_channels));
        bid->channel = str_of(hot_channels[i]);
        bid->url = g->hot_url[i];
    } else {
        int i = (int)rng_below(r, NUM_CHANNELS);
        bid->channel = g->channel_name[i];
        bid->url = g->channel_url[i];
    }
    char *b = at;
    at = next_extra(r, 8 + 8 + 8 + 8, g->c.avg_bid_bytes, at);
    ev->extra = span(b, at);
    return at;
}

void nexmark_generate(const nexmark_gen *g, const nexmark_range *rg, int64_t k, nexmark_event *ev,
                      char *buf)
{
    int64_t number = rg->first_event_number + k;
    ev->event_id = rg->first_event_id + number;
    ev->date_time = timestamp_for(g, rg, number);
    event_ids x = ids_of(g, ev->event_id);
    ev->kind = x.kind;
    rng r = rng_for(g->c.seed, 0xE7, ev->event_id);
    char *end;
    switch (ev->kind) {
    case NEXMARK_PERSON:
        end = gen_person(g, &x, &r, ev, buf);
        break;
    case NEXMARK_AUCTION:
        end = gen_auction(g, &x, rg, number, &r, ev, buf);
        break;
    default:
        end = gen_bid(g, &x, &r, ev, buf);
        break;
    }
    NX_CHECK(end <= buf + NEXMARK_EVENT_BUF);
}

int nexmark_event_size(const nexmark_event *ev)
{
    switch (ev->kind) {
    case NEXMARK_PERSON: {
        const nexmark_person *p = &ev->u.person;
        return 8 + p->name.len + p->email.len + p->credit_card.len + p->city.len + p->state.len +
               ev->extra.len;
    }
    case NEXMARK_AUCTION: {
        const nexmark_auction *a = &ev->u.auction;
        return 8 + a->item_name.len + a->description.len + 5 * 8 + ev->extra.len;
    }
    default:
        return 4 * 8 + ev->extra.len;
    }
}

/* ---- rows ------------------------------------------------------------------------------------ */

static inline sl_value str_value(nexmark_str s)
{
    return (sl_value){.type = SL_STR, .u.s = {.ptr = s.ptr, .len = (size_t)s.len}};
}

/* The fields only rows of kind k have. */
static const struct {
    int first, end;
} kind_fields[] = {
    [NEXMARK_PERSON] = {NX_PERSON_ID, NX_AUCTION_ID},
    [NEXMARK_AUCTION] = {NX_AUCTION_ID, NX_AUCTION},
    [NEXMARK_BID] = {NX_AUCTION, NX_NFIELDS},
};

/* Only the fields that the previous row's kind had and ev's has not are nulled, so a run
 * of bids costs the bid's fields alone. */
void nexmark_event_row(const nexmark_event *ev, sl_value *row, int prev)
{
    if (prev < 0) {
        for (int i = 0; i < NX_NFIELDS; i++)
            row[i] = SL_NULLV;
    } else if (prev != (int)ev->kind) {
        for (int i = kind_fields[prev].first; i < kind_fields[prev].end; i++)
            row[i] = SL_NULLV;
    }
    row[NX_KIND] = SL_I64(ev->kind);
    row[NX_DATE_TIME] = SL_I64(ev->date_time);
    row[NX_EXTRA] = str_value(ev->extra);
    switch (ev->kind) {
    case NEXMARK_PERSON: {
        const nexmark_person *p = &ev->u.person;
        row[NX_PERSON_ID] = SL_I64(p->id);
        row[NX_NAME] = str_value(p->name);
        row[NX_EMAIL] = str_value(p->email);
        row[NX_CREDIT_CARD] = str_value(p->credit_card);
        row[NX_CITY] = str_value(p->city);
        row[NX_STATE] = str_value(p->state);
        break;
    }
    case NEXMARK_AUCTION: {
        const nexmark_auction *a = &ev->u.auction;
        row[NX_AUCTION_ID] = SL_I64(a->id);
        row[NX_ITEM_NAME] = str_value(a->item_name);
        row[NX_DESCRIPTION] = str_value(a->description);
        row[NX_INITIAL_BID] = SL_I64(a->initial_bid);
        row[NX_RESERVE] = SL_I64(a->reserve);
        row[NX_EXPIRES] = SL_I64(a->expires);
        row[NX_SELLER] = SL_I64(a->seller);
        row[NX_CATEGORY] = SL_I64(a->category);
        break;
    }
    case NEXMARK_BID: {
        const nexmark_bid *b = &ev->u.bid;
        row[NX_AUCTION] = SL_I64(b->auction);
        row[NX_BIDDER] = SL_I64(b->bidder);
        row[NX_PRICE] = SL_I64(b->price);
        row[NX_CHANNEL] = str_value(b->channel);
        row[NX_URL] = str_value(b->url);
        break;
    }
    }
}

/* ---- the source -------------------------------------------------------------------------------
 *
 * A parallel source like the reference's NexmarkSourceFunction: subtask i of p generates
 * the range nexmark_split(i, p) and keeps how far it got as operator state. Each event's
 * strings are written into one buffer of the subtask, reused for the next event: sl_emit
 * has consumed a row when it returns. */

enum { SOURCE_BURST = 1024 };

typedef struct source_local {
    nexmark_range range;
    int64_t next;        /* event number in range to generate next */
    int kind;            /* of the row in row, -1 before the first */
    double ns_per_event; /* pacing (conf->rate > 0): this subtask's spacing, else 0 */
    int64_t t0;          /* pacing: CLOCK_MONOTONIC ns of the first poll, 0 before */
    int64_t k0;          /* pacing: next at the first poll (a restore resumes mid-range) */
    sl_state *position;
    nexmark_event ev;
    sl_value row[NX_NFIELDS];
    char buf[NEXMARK_EVENT_BUF];
} source_local;

static const char position_schema[] = "subtask:i64,parallelism:i64,next:i64";

static int source_init(sl_ctx *ctx)
{
    const nexmark_source_conf *conf = sl_ctx_user(ctx);
    source_local *l = calloc(1, sizeof *l);
    if (!l)
        return sl_fail(ctx, "out of memory");
    sl_ctx_set_local(ctx, l);
    l->kind = -1;
    int i = sl_ctx_subtask(ctx), p = sl_ctx_parallelism(ctx);
    l->range = nexmark_split(conf->gen, conf->events, i, p);
    if (conf->rate > 0)
        l->ns_per_event = 1e9 * (double)p / conf->rate;
    l->position = sl_operator_list_state(ctx, "nexmark-position", position_schema, SL_SPLIT_EVEN);
    if (!l->position)
        return SL_ESTATE;
    if (!sl_ctx_is_restored(ctx))
        return 0;
    sl_iter *it;
    int rc = sl_list_get(l->position, &it);
    if (rc < 0)
        return rc;
    int found = 0;
    bool same = true;
    if (rc > 0) {
        sl_value v[3];
        while ((rc = sl_iter_next(it, v)) > 0) {
            found++;
            same = same && v[0].u.i64 == i && v[1].u.i64 == p;
            l->next = v[2].u.i64;
        }
        sl_iter_close(it);
        if (rc < 0)
            return rc;
    }
    if (found != 1 || !same || l->next < 0 || l->next > l->range.max_events)
        return sl_fail(ctx,
                       "nexmark source: the checkpoint does not hold one position for subtask "
                       "%d of %d (it holds %d); the generator's split restores only at the "
                       "parallelism the checkpoint was taken at",
                       i + 1, p, found);
    return 0;
}

static int source_snapshot(sl_ctx *ctx, int64_t checkpoint_id)
{
    (void)checkpoint_id;
    source_local *l = sl_ctx_local(ctx);
    sl_value row[3] = {SL_I64(sl_ctx_subtask(ctx)), SL_I64(sl_ctx_parallelism(ctx)),
                       SL_I64(l->next)};
    return sl_list_update(l->position, row, 1);
}

int64_t nexmark_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Pacing: the scheduled time of event number k. */
static int64_t source_due_ns(const source_local *l, int64_t k)
{
    return l->t0 + (int64_t)((double)(k - l->k0) * l->ns_per_event);
}

/* Pacing: returns how many events past next are due now (at most max), or, when none is,
 * flushes the output, sleeps until the next one is due and returns 0 (or a negative code
 * when the job is cancelled). */
static int64_t source_pace(sl_ctx *ctx, source_local *l, int64_t max)
{
    int64_t now = nexmark_now_ns();
    if (!l->t0) {
        l->t0 = now;
        l->k0 = l->next;
    }
    int64_t due = (int64_t)((double)(now - l->t0) / l->ns_per_event) + 1 + l->k0 - l->next;
    if (due > 0)
        return due < max ? due : max;
    int64_t wait = source_due_ns(l, l->next) - now;
    /* sleep_ms flushes this subtask's pending output first, so nothing waits for the
     * buffer timeout while the source sleeps */
    int rc = sl_ctx_sleep_ms(ctx, wait / 1000000);
    if (rc < 0)
        return rc;
    if (wait > 0 && wait < 1000000) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(wait % 1000000)};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int source_poll(sl_ctx *ctx)
{
    const nexmark_source_conf *conf = sl_ctx_user(ctx);
    source_local *l = sl_ctx_local(ctx);
    int64_t end = l->range.max_events;
    if (l->next >= end)
        return SL_SOURCE_END;
    int64_t n = end - l->next > SOURCE_BURST ? SOURCE_BURST : end - l->next;
    if (l->ns_per_event > 0) {
        n = source_pace(ctx, l, n);
        if (n <= 0)
            return n < 0 ? (int)n : SL_SOURCE_MORE;
    }
    int64_t stop = l->next + n;
    while (l->next < stop) {
        nexmark_generate(conf->gen, &l->range, l->next, &l->ev, l->buf);
        nexmark_event_row(&l->ev, l->row, l->kind);
        l->kind = (int)l->ev.kind;
        if (conf->stamp)
            l->row[NX_DATE_TIME].u.i64 =
                l->ns_per_event > 0 ? source_due_ns(l, l->next) : nexmark_now_ns();
        /* counted before emitting: a checkpoint comes only between polls */
        l->next++;
        int rc = sl_emit(ctx, l->row);
        if (rc < 0)
            return rc;
    }
    return SL_SOURCE_MORE;
}

static int source_close(sl_ctx *ctx)
{
    free(sl_ctx_local(ctx));
    sl_ctx_set_local(ctx, NULL);
    return 0;
}

sl_stream *nexmark_source(sl_env *env, const nexmark_source_conf *conf)
{
    if (!conf || !conf->gen || conf->events < 0) {
        sl_env_fail(env, SL_EINVAL, "nexmark_source: needs a generator and events >= 0");
        return NULL;
    }
    sl_source_fn fn = {.initialize_state = source_init,
                       .snapshot_state = source_snapshot,
                       .close = source_close,
                       .poll = source_poll,
                       .user = (void *)conf};
    return sl_add_source(env, "nexmark", NEXMARK_SCHEMA, &fn, true, true);
}

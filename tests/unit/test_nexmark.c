/*
 * test_nexmark.c - the Nexmark generator and queries of bench/nexmark: the generator's
 * properties (kinds 1:3:46 by event id, ids, hot sellers/bidders/auctions, prices, field
 * contents, sizes against the 200/500/100-byte targets, determinism, the parallel split
 * covering every event once), the source on the engine (every event, at parallelism 1 and
 * 2, and exactly once through a failure and a restore), and q0-q3 on the engine against
 * results computed here with plain loops over the same generator output.
 *
 * The generator and the queries are compiled into this test from their sources.
 */
#include "../../bench/nexmark/nexmark.c"
#include "../../bench/nexmark/queries.c"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* ---- helpers -------------------------------------------------------------------------------- */

static nexmark_gen *default_gen(void)
{
    nexmark_config c;
    nexmark_config_default(&c);
    nexmark_gen *g = nexmark_gen_create(&c);
    CHECK(g);
    return g;
}

/* Calls fn on every event of the n-way split of total events, range by range. */
typedef void (*event_fn)(const nexmark_event *ev, int64_t number, void *arg);
static void for_each_event(const nexmark_gen *g, int64_t total, int n, event_fn fn, void *arg)
{
    static char buf[NEXMARK_EVENT_BUF];
    for (int i = 0; i < n; i++) {
        nexmark_range r = nexmark_split(g, total, i, n);
        for (int64_t k = 0; k < r.max_events; k++) {
            nexmark_event ev;
            nexmark_generate(g, &r, k, &ev, buf);
            fn(&ev, r.first_event_number + k, arg);
        }
    }
}

static bool str_is(nexmark_str s, const char *t)
{
    return (size_t)s.len == strlen(t) && !memcmp(s.ptr, t, (size_t)s.len);
}

static bool all_letters(nexmark_str s)
{
    for (int i = 0; i < s.len; i++)
        if (s.ptr[i] < 'a' || s.ptr[i] > 'z')
            return false;
    return true;
}

static bool one_of(nexmark_str s, const char *const *list, int n)
{
    for (int i = 0; i < n; i++)
        if (str_is(s, list[i]))
            return true;
    return false;
}

/* A growable list of owned strings, sortable and comparable. */
typedef struct lines {
    char **v;
    int64_t n, cap;
} lines;

static void lines_add(lines *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = realloc(l->v, sizeof *l->v * (size_t)l->cap);
        CHECK(l->v);
    }
    l->v[l->n++] = strdup(s);
}

static void lines_add_row(lines *l, const sl_value *row, size_t n)
{
    char buf[8192];
    size_t len = sl_row_format(row, n, buf, sizeof buf);
    CHECK(len < sizeof buf);
    lines_add(l, buf);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void lines_sort(lines *l)
{
    qsort(l->v, (size_t)l->n, sizeof *l->v, cmp_str);
}

static void lines_free(lines *l)
{
    for (int64_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    *l = (lines){0};
}

/* Fails naming the first difference. */
static void check_same_lines(const lines *got, const lines *want, const char *what)
{
    for (int64_t i = 0; i < got->n && i < want->n; i++)
        if (strcmp(got->v[i], want->v[i]))
            FAIL_AT("%s: line %lld differs:\n  got  %s\n  want %s", what, (long long)i, got->v[i],
                    want->v[i]);
    if (got->n != want->n)
        FAIL_AT("%s: %lld lines, want %lld", what, (long long)got->n, (long long)want->n);
}

/* ---- the generator ----------------------------------------------------------------------------
 */

typedef struct stats {
    const nexmark_gen *g;
    int64_t kinds[3];
    int64_t last_person_id, last_auction_id; /* of the previous person / auction event */
    int64_t hot_sellers, hot_auctions, hot_bidders;
    int64_t categories[5];
    int64_t prices, price_below[7]; /* price < 100 * 10^k cents, k = 0..6 */
    int64_t hot_channels, channel_ids, urls_with_id;
    int64_t size_sum[3];
    int64_t extra_min[3], extra_max[3];
} stats;

static const char *const states[] = {"AZ", "CA", "ID", "OR", "WA", "WY"};
static const char *const cities[] = {"Phoenix",  "Los Angeles", "San Francisco", "Boise",
                                     "Portland", "Bend",        "Redmond",       "Seattle",
                                     "Kent",     "Cheyenne"};

static void count_price(stats *s, int64_t price)
{
    CHECK(price >= 100 && price <= 100000000);
    s->prices++;
    int64_t bound = 100;
    for (int k = 0; k < 7; k++, bound *= 10)
        s->price_below[k] += price < bound;
}

static void check_person(stats *s, const nexmark_event *ev)
{
    const nexmark_person *p = &ev->u.person;
    /* one person per 50 ids: its id counts the persons before it */
    CHECK_EQ_INT(p->id, 1000 + ev->event_id / 50);
    if (s->last_person_id)
        CHECK_EQ_INT(p->id, s->last_person_id + 1);
    s->last_person_id = p->id;
    CHECK(one_of(p->state, states, 6));
    CHECK(one_of(p->city, cities, 10));
    CHECK(memchr(p->name.ptr, ' ', (size_t)p->name.len));
    CHECK(p->email.len >= 5 && memchr(p->email.ptr, '@', (size_t)p->email.len));
    CHECK(!memcmp(p->email.ptr + p->email.len - 4, ".com", 4));
    CHECK_EQ_INT(p->credit_card.len, 19);
    for (int i = 0; i < 19; i++)
        CHECK(i % 5 == 4 ? p->credit_card.ptr[i] == ' '
                         : p->credit_card.ptr[i] >= '0' && p->credit_card.ptr[i] <= '9');
}

static void check_auction(stats *s, const nexmark_event *ev)
{
    const nexmark_auction *a = &ev->u.auction;
    int64_t epoch = ev->event_id / 50, offset = ev->event_id % 50;
    CHECK_EQ_INT(a->id, 1000 + epoch * 3 + offset - 1);
    if (s->last_auction_id)
        CHECK_EQ_INT(a->id, s->last_auction_id + 1);
    s->last_auction_id = a->id;
    /* sellers: the hot seller of the last 100 persons, or an active person or a lead */
    int64_t last_person = epoch; /* base 0 */
    int64_t hot = last_person / 100 * 100 + 1000;
    s->hot_sellers += a->seller == hot;
    int64_t active = last_person + 1 < 1000 ? last_person + 1 : 1000;
    CHECK(a->seller == hot ||
          (a->seller >= 1000 + last_person + 1 - active && a->seller < 1000 + last_person + 11));
    CHECK(a->category >= 10 && a->category < 15);
    s->categories[a->category - 10]++;
    count_price(s, a->initial_bid);
    CHECK(a->reserve > a->initial_bid);
    CHECK(a->expires > ev->date_time);
    CHECK(a->item_name.len <= 19 && a->description.len <= 99);
}

static void check_bid(stats *s, const nexmark_event *ev)
{
    const nexmark_bid *b = &ev->u.bid;
    int64_t epoch = ev->event_id / 50;
    int64_t last_auction = epoch * 3 + 2, last_person = epoch; /* base 0 */
    int64_t hot_auction = last_auction / 100 * 100 + 1000;
    s->hot_auctions += b->auction == hot_auction;
    int64_t min = last_auction - 100 > 0 ? last_auction - 100 : 0;
    CHECK(b->auction == hot_auction ||
          (b->auction >= 1000 + min && b->auction <= 1000 + last_auction + 10));
    int64_t hot_bidder = last_person / 100 * 100 + 1 + 1000;
    s->hot_bidders += b->bidder == hot_bidder;
    int64_t active = last_person + 1 < 1000 ? last_person + 1 : 1000;
    CHECK(b->bidder == hot_bidder ||
          (b->bidder >= 1000 + last_person + 1 - active && b->bidder < 1000 + last_person + 11));
    count_price(s, b->price);
    static const char *const hot[] = {"Google", "Facebook", "Baidu", "Apple"};
    CHECK(b->url.len > 24 && !memcmp(b->url.ptr, "https://www.nexmark.com/", 24));
    if (one_of(b->channel, hot, 4)) {
        s->hot_channels++;
        CHECK(!memmem(b->url.ptr, (size_t)b->url.len, "&channel_id=", 12));
    } else {
        CHECK(b->channel.len > 8 && !memcmp(b->channel.ptr, "channel-", 8));
        int n = atoi(b->channel.ptr + 8);
        CHECK(n >= 0 && n < 10000);
        s->channel_ids++;
        s->urls_with_id += memmem(b->url.ptr, (size_t)b->url.len, "&channel_id=", 12) != NULL;
    }
}

static void collect_stats(const nexmark_event *ev, int64_t number, void *arg)
{
    stats *s = arg;
    (void)number;
    int k = ev->kind;
    CHECK(k >= 0 && k < 3);
    /* the kind is chosen by the event id: of every 50, 1 person, 3 auctions, 46 bids */
    int64_t rem = ev->event_id % 50;
    CHECK_EQ_INT(k, rem < 1 ? NEXMARK_PERSON : rem < 4 ? NEXMARK_AUCTION : NEXMARK_BID);
    CHECK_EQ_INT(k, nexmark_kind_of(s->g, ev->event_id));
    s->kinds[k]++;
    CHECK(all_letters(ev->extra));
    s->size_sum[k] += nexmark_event_size(ev);
    if (!s->extra_max[k] || ev->extra.len < s->extra_min[k])
        s->extra_min[k] = ev->extra.len;
    if (ev->extra.len > s->extra_max[k])
        s->extra_max[k] = ev->extra.len;
    if (k == NEXMARK_PERSON)
        check_person(s, ev);
    else if (k == NEXMARK_AUCTION)
        check_auction(s, ev);
    else
        check_bid(s, ev);
}

static void check_fraction(const char *what, int64_t part, int64_t whole, double lo, double hi)
{
    double f = (double)part / (double)whole;
    if (f < lo || f > hi)
        FAIL_AT("%s: %.4f (%lld of %lld), expected within [%.3f, %.3f]", what, f, (long long)part,
                (long long)whole, lo, hi);
}

TEST(generator_kinds_ids_and_fields)
{
    nexmark_gen *g = default_gen();
    stats s = {.g = g};
    int64_t n = 500000;
    for_each_event(g, n, 1, collect_stats, &s);
    /* ids 2 .. n+1 (first event id 1 + first event number 1, as the reference's source) */
    CHECK_EQ_INT(s.kinds[0] + s.kinds[1] + s.kinds[2], n);
    CHECK_EQ_INT(s.kinds[NEXMARK_PERSON], 10000);
    CHECK_EQ_INT(s.kinds[NEXMARK_AUCTION], 30000);
    CHECK_EQ_INT(s.kinds[NEXMARK_BID], 460000);
    /* hot: 1 - 1/ratio, plus the cold draws that happen to pick the hot one */
    check_fraction("hot sellers", s.hot_sellers, s.kinds[1], 0.74, 0.77);
    check_fraction("hot auctions", s.hot_auctions, s.kinds[2], 0.495, 0.515);
    check_fraction("hot bidders", s.hot_bidders, s.kinds[2], 0.745, 0.760);
    for (int c = 0; c < 5; c++)
        check_fraction("category", s.categories[c], s.kinds[1], 0.19, 0.21);
    /* log-uniform over [100, 10^8) cents: a sixth of the prices per decade */
    CHECK_EQ_INT(s.price_below[0], 0);
    for (int k = 1; k < 6; k++)
        check_fraction("prices below a decade", s.price_below[k], s.prices, k / 6.0 - 0.006,
                       k / 6.0 + 0.006);
    CHECK_EQ_INT(s.price_below[6], s.prices);
    check_fraction("hot channels", s.hot_channels, s.kinds[2], 0.495, 0.505);
    /* 9 channels in 10 carry their id in the URL */
    check_fraction("channel ids in URLs", s.urls_with_id, s.channel_ids, 0.87, 0.93);
    nexmark_gen_destroy(g);
}

TEST(generator_sizes_near_targets)
{
    nexmark_gen *g = default_gen();
    stats s = {.g = g};
    for_each_event(g, 500000, 1, collect_stats, &s);
    static const double target[3] = {200, 500, 100};
    for (int k = 0; k < 3; k++) {
        double avg = (double)s.size_sum[k] / (double)s.kinds[k];
        if (avg < target[k] * 0.98 || avg > target[k] * 1.02)
            FAIL_AT("kind %d: average size %.1f bytes, target %.0f", k, avg, target[k]);
    }
    /* a bid's extra is 68 +- 14 letters (100 - 4 numbers of 8 bytes, +-20%) */
    CHECK_EQ_INT(s.extra_min[NEXMARK_BID], 54);
    CHECK_EQ_INT(s.extra_max[NEXMARK_BID], 81);
    nexmark_gen_destroy(g);
}

/* Formats every event of the split as its row, in generation order. */
static void add_event_line(const nexmark_event *ev, int64_t number, void *arg)
{
    (void)number;
    sl_value row[NX_NFIELDS];
    nexmark_event_row(ev, row, -1);
    lines_add_row(arg, row, NX_NFIELDS);
}

TEST(generator_is_deterministic)
{
    nexmark_gen *g1 = default_gen(), *g2 = default_gen();
    lines a = {0}, b = {0};
    for_each_event(g1, 20000, 1, add_event_line, &a);
    /* another generator, events taken backwards: the same events */
    nexmark_range r = nexmark_split(g2, 20000, 0, 1);
    static char buf[NEXMARK_EVENT_BUF];
    for (int64_t k = r.max_events - 1; k >= 0; k--) {
        nexmark_event ev;
        nexmark_generate(g2, &r, k, &ev, buf);
        sl_value row[NX_NFIELDS];
        nexmark_event_row(&ev, row, -1);
        char line[8192];
        sl_row_format(row, NX_NFIELDS, line, sizeof line);
        CHECK_EQ_STR(line, a.v[k]);
    }
    /* another seed: other strings, the same ids and kinds */
    nexmark_config c;
    nexmark_config_default(&c);
    c.seed = 7;
    nexmark_gen *g3 = nexmark_gen_create(&c);
    for_each_event(g3, 20000, 1, add_event_line, &b);
    int64_t same = 0;
    for (int64_t i = 0; i < a.n; i++) {
        same += !strcmp(a.v[i], b.v[i]);
        CHECK_EQ_INT(atoi(a.v[i] + 1), atoi(b.v[i] + 1)); /* the kind, first field */
    }
    CHECK_EQ_INT(same, 0);
    lines_free(&a);
    lines_free(&b);
    nexmark_gen_destroy(g1);
    nexmark_gen_destroy(g2);
    nexmark_gen_destroy(g3);
}

TEST(generator_rejects_bad_configs)
{
    nexmark_config c;
    nexmark_config_default(&c);
    c.person_proportion = 0;
    CHECK(!nexmark_gen_create(&c));
    nexmark_config_default(&c);
    c.first_event_rate = 0;
    CHECK(!nexmark_gen_create(&c));
    nexmark_config_default(&c);
    c.hot_bidders_ratio = 0;
    CHECK(!nexmark_gen_create(&c));
    nexmark_config_default(&c);
    c.avg_auction_bytes = 100000;
    CHECK(!nexmark_gen_create(&c));
    CHECK(!nexmark_gen_create(NULL));
    nexmark_gen_destroy(NULL);
}

/* The events of a split, by id, against those of one generator. */
typedef struct split_check {
    uint8_t *seen; /* per event id - first id */
    int64_t first, total;
    lines *single; /* rows of the one-generator run, by event number */
    int generators;
    int64_t prev_time, prev_id;
} split_check;

static void check_split_event(const nexmark_event *ev, int64_t number, void *arg)
{
    split_check *c = arg;
    int64_t i = ev->event_id - c->first;
    CHECK(i >= 0 && i < c->total);
    CHECK_EQ_INT(c->seen[i], 0);
    c->seen[i] = 1;
    /* within a range, ids are consecutive and times do not go back */
    if (number > 1) {
        CHECK_EQ_INT(ev->event_id, c->prev_id + 1);
        CHECK(ev->date_time >= c->prev_time);
    } else {
        /* parallel timelines: every range starts at event number 1 */
        CHECK_EQ_INT(ev->date_time, 1436918400000 + (int64_t)(1 * 0.1 * c->generators) / 1000);
    }
    c->prev_id = ev->event_id;
    c->prev_time = ev->date_time;
    /* event time = base + number * generators / 10 M/s */
    CHECK_EQ_INT(ev->date_time,
                 1436918400000 + (int64_t)((double)number * (0.1 * c->generators)) / 1000);
    /* the same event as one generator makes, but for its times (another timeline) */
    nexmark_event copy = *ev;
    const char *one = c->single->v[i];
    copy.date_time = atoll(strchr(one, ',') + 1);
    if (copy.kind == NEXMARK_AUCTION)
        copy.u.auction.expires = 0;
    sl_value row[NX_NFIELDS];
    nexmark_event_row(&copy, row, -1);
    char line[8192];
    sl_row_format(row, NX_NFIELDS, line, sizeof line);
    if (copy.kind == NEXMARK_AUCTION) {
        /* compare all but expires (field 14) */
        char want[8192];
        snprintf(want, sizeof want, "%s", one);
        char *a = line, *b = want;
        for (int f = 0; f < NX_EXPIRES; f++) {
            a = strchr(a, ',') + 1;
            b = strchr(b, ',') + 1;
        }
        CHECK(!strncmp(line, want, (size_t)(a - line)));
        CHECK_EQ_STR(strchr(a, ','), strchr(b, ','));
    } else {
        CHECK_EQ_STR(line, one);
    }
}

TEST(generator_split_covers_every_event_once)
{
    nexmark_gen *g = default_gen();
    static const int64_t totals[] = {0, 1, 49, 1000, 10007};
    static const int ways[] = {1, 2, 3, 4, 7};
    for (size_t t = 0; t < sizeof totals / sizeof totals[0]; t++) {
        lines single = {0};
        for_each_event(g, totals[t], 1, add_event_line, &single);
        for (size_t w = 0; w < sizeof ways / sizeof ways[0]; w++) {
            int n = ways[w];
            /* the reference's split: equal contiguous ranges, the last one takes the rest */
            int64_t sum = 0, next_id = 1;
            for (int i = 0; i < n; i++) {
                nexmark_range r = nexmark_split(g, totals[t], i, n);
                CHECK_EQ_INT(r.first_event_id, next_id);
                CHECK_EQ_INT(r.first_event_number, 1);
                CHECK_EQ_INT(r.generators, n);
                CHECK_EQ_INT(r.max_events,
                             i < n - 1 ? totals[t] / n : totals[t] - totals[t] / n * (n - 1));
                next_id += r.max_events;
                sum += r.max_events;
            }
            CHECK_EQ_INT(sum, totals[t]);
            split_check c = {.seen = calloc((size_t)totals[t] + 1, 1),
                             .first = 2,
                             .total = totals[t],
                             .single = &single,
                             .generators = n};
            for_each_event(g, totals[t], n, check_split_event, &c);
            for (int64_t i = 0; i < totals[t]; i++)
                CHECK_EQ_INT(c.seen[i], 1);
            free(c.seen);
        }
        lines_free(&single);
    }
    nexmark_gen_destroy(g);
}

/* ---- the engine ---------------------------------------------------------------------------------
 */

typedef struct collected {
    pthread_mutex_t mu;
    lines rows;
    int arity;
} collected;

static int collect_invoke(sl_ctx *ctx, const sl_value *in)
{
    collected *c = sl_ctx_user(ctx);
    char buf[8192];
    size_t len = sl_row_format(in, (size_t)c->arity, buf, sizeof buf);
    if (len >= sizeof buf)
        return sl_fail(ctx, "row too long");
    pthread_mutex_lock(&c->mu);
    lines_add(&c->rows, buf);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static sl_env *env_p(int p)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", p);
    char *argv[] = {"test", "-p", ps, NULL};
    char err[512];
    int code;
    sl_env *env = sl_env_create(3, argv, NULL, NULL, &code, err, sizeof err);
    if (!env)
        FAIL_AT("sl_env_create: %s", err);
    return env;
}

/* Runs source -> query (NULL: none) -> collecting sink at parallelism p; returns the rows
 * in arrival order. */
static lines run_engine(const nexmark_gen *g, int64_t events, int p, const char *query)
{
    sl_env *env = env_p(p);
    nexmark_source_conf conf = {.gen = g, .events = events};
    sl_stream *s = nexmark_source(env, &conf);
    if (query)
        s = nexmark_query(env, s, query);
    collected c = {.mu = PTHREAD_MUTEX_INITIALIZER, .arity = sl_stream_arity(s)};
    sl_sink_fn sink = {.invoke = collect_invoke, .user = &c};
    sl_add_sink(s, "collect", &sink);
    int rc = sl_execute(env, "test_nexmark");
    if (rc)
        FAIL_AT("sl_execute: %s", sl_env_error(env));
    sl_env_destroy(env);
    return c.rows;
}

TEST(source_emits_every_event)
{
    nexmark_gen *g = default_gen();
    lines want = {0};
    for_each_event(g, 10000, 1, add_event_line, &want);
    lines got = run_engine(g, 10000, 1, NULL);
    check_same_lines(&got, &want, "source p=1, in order");
    lines_free(&got);
    lines_free(&want);
    /* p=2: the events of the 2-way split (their own timelines), in any order */
    for_each_event(g, 10000, 2, add_event_line, &want);
    got = run_engine(g, 10000, 2, NULL);
    lines_sort(&got);
    lines_sort(&want);
    check_same_lines(&got, &want, "source p=2");
    lines_free(&got);
    lines_free(&want);
    nexmark_gen_destroy(g);
}

/* ---- the queries, computed here
 * ------------------------------------------------------------------ */

static void expect_q0(const nexmark_event *ev, int64_t number, void *arg)
{
    (void)number;
    if (ev->kind != NEXMARK_BID)
        return;
    const nexmark_bid *b = &ev->u.bid;
    sl_value row[5] = {SL_I64(b->auction), SL_I64(b->bidder), SL_I64(b->price),
                       SL_I64(ev->date_time), sl_strn(ev->extra.ptr, (size_t)ev->extra.len)};
    lines_add_row(arg, row, 5);
}

static void expect_q1(const nexmark_event *ev, int64_t number, void *arg)
{
    (void)number;
    if (ev->kind != NEXMARK_BID)
        return;
    const nexmark_bid *b = &ev->u.bid;
    sl_value row[5] = {SL_I64(b->auction), SL_I64(b->bidder), SL_F64(b->price * 0.908),
                       SL_I64(ev->date_time), sl_strn(ev->extra.ptr, (size_t)ev->extra.len)};
    lines_add_row(arg, row, 5);
}

static void expect_q2(const nexmark_event *ev, int64_t number, void *arg)
{
    (void)number;
    if (ev->kind != NEXMARK_BID || ev->u.bid.auction % 123 != 0)
        return;
    sl_value row[2] = {SL_I64(ev->u.bid.auction), SL_I64(ev->u.bid.price)};
    lines_add_row(arg, row, 2);
}

static void check_query(const char *q, event_fn expect, int64_t events, int64_t min_rows)
{
    nexmark_gen *g = default_gen();
    for (int p = 1; p <= 2; p++) {
        lines want = {0};
        for_each_event(g, events, p, expect, &want);
        if (want.n < min_rows)
            FAIL_AT("%s: only %lld expected rows", q, (long long)want.n);
        lines got = run_engine(g, events, p, q);
        char what[32];
        snprintf(what, sizeof what, "%s p=%d", q, p);
        if (p > 1) {
            lines_sort(&got);
            lines_sort(&want);
        }
        check_same_lines(&got, &want, what); /* p=1: in generation order too */
        lines_free(&got);
        lines_free(&want);
    }
    nexmark_gen_destroy(g);
}

TEST(q0_passes_bids_through)
{
    check_query("q0", expect_q0, 10000, 9000);
}

TEST(q1_converts_prices_to_euros)
{
    check_query("q1", expect_q1, 10000, 9000);
}

TEST(q2_selects_every_123rd_auction)
{
    /* bids of auction 1107 (hot) and a few others */
    check_query("q2", expect_q2, 100000, 50);
}

/* q3, computed here: the whole join of the filtered sides. An incremental inner join that
 * keeps both sides emits each matching pair once, when the later of the two arrives, so
 * the multiset of its output is the join whatever the order. Also counts the pairs whose
 * auction came before its person in event id order (one timeline). */
typedef struct q3_expect {
    int64_t npersons;
    struct q3_person {
        char name[32], city[32], state[4];
        int64_t event_id;
        bool present;
    } * persons; /* by person id - 1000 */
    struct q3_auction {
        int64_t id, seller, event_id;
    } * auctions;
    int64_t nauctions;
} q3_expect;

static void q3_gather(const nexmark_event *ev, int64_t number, void *arg)
{
    (void)number;
    q3_expect *x = arg;
    if (ev->kind == NEXMARK_PERSON) {
        const nexmark_person *p = &ev->u.person;
        if (!str_is(p->state, "OR") && !str_is(p->state, "ID") && !str_is(p->state, "CA"))
            return;
        int64_t i = p->id - 1000;
        CHECK(i >= 0 && i < x->npersons && !x->persons[i].present);
        struct q3_person *e = &x->persons[i];
        snprintf(e->name, sizeof e->name, "%.*s", p->name.len, p->name.ptr);
        snprintf(e->city, sizeof e->city, "%.*s", p->city.len, p->city.ptr);
        snprintf(e->state, sizeof e->state, "%.*s", p->state.len, p->state.ptr);
        e->event_id = ev->event_id;
        e->present = true;
    } else if (ev->kind == NEXMARK_AUCTION && ev->u.auction.category == 10) {
        x->auctions[x->nauctions++] =
            (struct q3_auction){ev->u.auction.id, ev->u.auction.seller, ev->event_id};
    }
}

static void check_q3(const nexmark_config *c, int64_t events, int64_t min_rows,
                     int64_t min_auction_first)
{
    nexmark_gen *g = nexmark_gen_create(c);
    CHECK(g);
    for (int p = 1; p <= 2; p++) {
        q3_expect x = {.npersons = events / 50 + 20};
        x.persons = calloc((size_t)x.npersons, sizeof *x.persons);
        x.auctions = calloc((size_t)events / 10 + 10, sizeof *x.auctions);
        for_each_event(g, events, p, q3_gather, &x);
        lines want = {0};
        int64_t auction_first = 0, person_first = 0;
        for (int64_t i = 0; i < x.nauctions; i++) {
            int64_t s = x.auctions[i].seller - 1000;
            if (s < 0 || s >= x.npersons || !x.persons[s].present)
                continue;
            const struct q3_person *e = &x.persons[s];
            sl_value row[4] = {sl_str(e->name), sl_str(e->city), sl_str(e->state),
                               SL_I64(x.auctions[i].id)};
            lines_add_row(&want, row, 4);
            if (x.auctions[i].event_id < e->event_id)
                auction_first++;
            else
                person_first++;
        }
        if (want.n < min_rows || person_first == 0 || auction_first < min_auction_first)
            FAIL_AT("q3: %lld expected rows, %lld with the auction first, %lld with the "
                    "person first: the input does not exercise the join",
                    (long long)want.n, (long long)auction_first, (long long)person_first);
        lines got = run_engine(g, events, p, "q3");
        lines_sort(&got);
        lines_sort(&want);
        check_same_lines(&got, &want, p == 1 ? "q3 p=1" : "q3 p=2");
        lines_free(&got);
        lines_free(&want);
        free(x.persons);
        free(x.auctions);
    }
    nexmark_gen_destroy(g);
}

TEST(q3_joins_auctions_with_local_sellers)
{
    nexmark_config c;
    nexmark_config_default(&c);
    check_q3(&c, 50000, 50, 0);
}

TEST(q3_joins_whichever_side_comes_first)
{
    /* sellers drawn only among a few active people and the 10 yet to come: many auctions
     * arrive before their seller, and the join must keep them until the seller does */
    nexmark_config c;
    nexmark_config_default(&c);
    c.hot_sellers_ratio = 1;
    c.num_active_people = 5;
    check_q3(&c, 50000, 100, 20);
}

TEST(unknown_query_is_an_error)
{
    sl_env *env = env_p(1);
    nexmark_gen *g = default_gen();
    nexmark_source_conf conf = {.gen = g, .events = 10};
    CHECK(!nexmark_query(env, nexmark_source(env, &conf), "q99"));
    CHECK_EQ_INT(sl_execute(env, "test_nexmark"), SL_EINVAL);
    CHECK_CONTAINS(sl_env_error(env), "unknown Nexmark query 'q99'");
    CHECK(!nexmark_query_schema("q4"));
    CHECK_EQ_STR(nexmark_query_schema("q2"), "auction:i64,price:i64");
    sl_env_destroy(env);
    nexmark_gen_destroy(g);
}

/* ---- exactly once through a failure
 * ----------------------------------------------------------------
 *
 * source -> (kind, 1) -> key_by kind -> sum -> sink keeping the largest count per kind.
 * On the first attempt the map fails once a checkpoint has completed; the job restarts
 * from it, the source resuming at its checkpointed position and the sums from their state.
 * Exactly once: the final counts are the exact numbers of persons, auctions and bids. */

static atomic_bool checkpoint_done;
static atomic_llong max_count[3];
static atomic_int attempts_seen;

static int fail_map_notify(sl_ctx *ctx, int64_t id)
{
    (void)ctx;
    (void)id;
    atomic_store(&checkpoint_done, true);
    return 0;
}

static int fail_map(sl_ctx *ctx, const sl_value *in, sl_value *out)
{
    if (sl_ctx_attempt(ctx) == 0) {
        if (atomic_load(&checkpoint_done))
            return sl_fail(ctx, "injected failure after a checkpoint");
        /* slow down until a checkpoint has been taken */
        nanosleep(&(struct timespec){0, 20000}, NULL);
    } else {
        atomic_fetch_or(&attempts_seen, 2);
    }
    out[0] = in[NX_KIND];
    out[1] = SL_I64(1);
    return 0;
}

static int max_invoke(sl_ctx *ctx, const sl_value *in)
{
    (void)ctx;
    atomic_llong *m = &max_count[in[0].u.i64];
    long long v = in[1].u.i64, cur = atomic_load(m);
    while (v > cur && !atomic_compare_exchange_weak(m, &cur, v))
        ;
    return 0;
}

TEST(source_restores_its_position_exactly_once)
{
    nexmark_gen *g = default_gen();
    int64_t events = 20000;
    sl_env *env = env_p(2);
    sl_env_enable_checkpointing(env, 20, SL_EXACTLY_ONCE);
    sl_env_set_restart_fixed_delay(env, 1, 0);
    nexmark_source_conf conf = {.gen = g, .events = events};
    sl_map_fn m = {.map = fail_map, .notify_checkpoint_complete = fail_map_notify};
    sl_stream *s = sl_map(nexmark_source(env, &conf), "kind:i64,n:i64", &m);
    s = sl_sum(sl_key_by(s, 0), 1);
    sl_sink_fn sink = {.invoke = max_invoke};
    sl_add_sink(s, "max", &sink);
    int rc = sl_execute(env, "test_nexmark");
    if (rc)
        FAIL_AT("sl_execute: %s", sl_env_error(env));
    CHECK(atomic_load(&attempts_seen) & 2); /* it did fail and restart */
    CHECK_EQ_INT(atomic_load(&max_count[NEXMARK_PERSON]), events / 50);
    CHECK_EQ_INT(atomic_load(&max_count[NEXMARK_AUCTION]), events / 50 * 3);
    CHECK_EQ_INT(atomic_load(&max_count[NEXMARK_BID]), events / 50 * 46);
    sl_env_destroy(env);
    nexmark_gen_destroy(g);
}

int main(int argc, char **argv)
{
    return RUN_TESTS(argc, argv, generator_kinds_ids_and_fields, generator_sizes_near_targets,
                     generator_is_deterministic, generator_rejects_bad_configs,
                     generator_split_covers_every_event_once, source_emits_every_event,
                     q0_passes_bids_through, q1_converts_prices_to_euros,
                     q2_selects_every_123rd_auction, q3_joins_auctions_with_local_sellers,
                     q3_joins_whichever_side_comes_first, unknown_query_is_an_error,
                     source_restores_its_position_exactly_once);
}

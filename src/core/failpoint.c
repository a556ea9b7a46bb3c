/*
 * failpoint.c - parsing SLUICE_FAILPOINTS once and deciding when a point fires.
 */
#include "core/failpoint.h"

#ifdef SL_TESTING
#include "core/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_POINTS = 16 };

typedef struct point {
    char name[48];
    double prob;
    long nth;
    long max;
    atomic_long hits;
    atomic_long fired;
} point;

static point points[MAX_POINTS];
static int npoints;
static uint64_t seed = 1;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static atomic_ulong thread_counter;

static void parse(void)
{
    const char *e = getenv("SLUICE_FAILPOINTS");
    const char *s = getenv("SLUICE_FAILPOINT_SEED");
    if (s)
        seed = strtoull(s, NULL, 10);
    if (!e || !*e)
        return;
    char *copy = strdup(e), *save = NULL;
    for (char *item = strtok_r(copy, ";", &save); item && npoints < MAX_POINTS;
         item = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) {
            SL_WARN("event=failpoint_ignored spec=\"%s\" reason=\"expected NAME=RULE\"", item);
            continue;
        }
        *eq = 0;
        point *p = &points[npoints++];
        strncpy(p->name, item, sizeof p->name - 1);
        p->max = -1;
        char *rsave = NULL;
        for (char *r = strtok_r(eq + 1, ",", &rsave); r; r = strtok_r(NULL, ",", &rsave)) {
            if (r[0] == 'p')
                p->prob = strtod(r + 1, NULL);
            else if (!strncmp(r, "max", 3))
                p->max = strtol(r + 3, NULL, 10);
            else if (r[0] == 'n')
                p->nth = strtol(r + 1, NULL, 10);
        }
        SL_INFO("event=failpoint_armed name=%s prob=%g nth=%ld max=%ld", p->name, p->prob, p->nth,
                p->max);
    }
    free(copy);
}

static double draw(void)
{
    static _Thread_local uint64_t state;
    if (!state)
        state = (seed * 0x9E3779B97F4A7C15ull) ^
                (atomic_fetch_add(&thread_counter, 1) + 1) * 0xD1B54A32D192ED03ull;
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) / 9007199254740992.0;
}

atomic_int sl__failpoints_armed = -1; /* -1 unknown, 0 none configured, 1 some */

bool sl__failpoint_hit(const char *name)
{
    int a = atomic_load_explicit(&sl__failpoints_armed, memory_order_relaxed);
    if (a == 0)
        return false;
    if (a < 0) {
        pthread_once(&once, parse);
        atomic_store(&sl__failpoints_armed, npoints > 0);
        if (!npoints)
            return false;
    }
    for (int i = 0; i < npoints; i++) {
        point *p = &points[i];
        if (strcmp(p->name, name))
            continue;
        long hit = atomic_fetch_add(&p->hits, 1) + 1;
        bool fire = (p->nth && hit == p->nth) || (p->prob > 0 && draw() < p->prob);
        if (!fire)
            return false;
        if (p->max >= 0 && atomic_fetch_add(&p->fired, 1) >= p->max)
            return false;
        SL_INFO("event=failpoint_fired name=%s hit=%ld", name, hit);
        return true;
    }
    return false;
}
#endif

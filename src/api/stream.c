/*
 * stream.c - the DataStream builder: transformations, user-defined sources and sinks, and
 * operator settings. Each call validates what it can see now (fields in range, types that
 * an aggregation accepts, keyed-ness) and records the first error on the environment.
 */
#include "api/env.h"
#include "core/alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

sl__node *sl__env_add_node(sl_env *env, sl__node_kind kind, const char *name, sl__schema *schema);
sl_stream *sl__env_add_stream(sl_env *env, sl__node *node);

static sl__schema *parse_schema(sl_env *env, const char *what, const char *text)
{
    char err[512];
    sl__schema *s = sl__schema_parse(text, err, sizeof err);
    if (!s)
        sl_env_fail(env, SL_ESCHEMA, "%s: %s", what, err);
    return s;
}

static bool usable(const sl_stream *s)
{
    return s && !sl__env_failed(s->env);
}

/* Adds a node fed by in (edge from in's node with in's partitioning). */
static sl_stream *add_op(sl_stream *in, sl__node_kind kind, const char *name, sl__schema *schema)
{
    if (!schema)
        return NULL;
    sl__node *n = sl__env_add_node(in->env, kind, name, schema);
    if (!n)
        return NULL;
    n->inputs = sl__calloc(1, sizeof *n->inputs);
    if (!n->inputs) {
        sl_env_fail(in->env, SL_ENOMEM, "out of memory");
        return NULL;
    }
    n->ninputs = 1;
    n->inputs[0] = (sl__edge){.from = in->node, .part = in->part, .key = in->key};
    n->keyed = in->keyed;
    return sl__env_add_stream(in->env, n);
}

static const char *in_name(const sl_stream *s)
{
    return s->node->name;
}

static bool check_field(sl_stream *s, const char *op, int field)
{
    const sl__schema *sc = s->node->schema;
    if (field < 0 || field >= sc->n) {
        sl_env_fail(s->env, SL_ESCHEMA,
                    "%s: field index %d is out of range for the schema \"%s\" of '%s' "
                    "(accepted 0 to %d)",
                    op, field, sc->text, in_name(s), sc->n - 1);
        return false;
    }
    return true;
}

static bool check_keyed(sl_stream *s, const char *op)
{
    if (!s->keyed) {
        sl_env_fail(s->env, SL_EINVAL,
                    "%s needs a keyed stream, but the output of '%s' is not keyed: call "
                    "sl_key_by first",
                    op, in_name(s));
        return false;
    }
    return true;
}

int sl_stream_arity(const sl_stream *s)
{
    return s ? s->node->schema->n : 0;
}

const char *sl_stream_schema(const sl_stream *s)
{
    return s ? s->node->schema->text : "";
}

int sl_field(sl_stream *s, const char *name)
{
    if (!usable(s))
        return -1;
    int i = sl__schema_field(s->node->schema, name);
    if (i < 0)
        sl_env_fail(s->env, SL_ESCHEMA, "no field \"%s\" in the schema \"%s\" of '%s'", name,
                    s->node->schema->text, in_name(s));
    return i;
}

/* ---- sources ------------------------------------------------------------------------- */

sl_stream *sl_add_source(sl_env *env, const char *name, const char *schema, const sl_source_fn *fn,
                         bool parallel, bool bounded)
{
    if (!env || sl__env_failed(env))
        return NULL;
    if (!fn || !fn->poll) {
        sl_env_fail(env, SL_EINVAL, "source '%s': the function struct needs a poll callback",
                    name ? name : "?");
        return NULL;
    }
    char full[256];
    snprintf(full, sizeof full, "Source: %s", name ? name : "Custom Source");
    sl__schema *s = parse_schema(env, full, schema);
    if (!s)
        return NULL;
    sl__node *n = sl__env_add_node(env, SL_NODE_SOURCE, full, s);
    if (!n)
        return NULL;
    n->fn.source = *fn;
    n->parallelism_fixed = !parallel;
    n->bounded = bounded;
    return sl__env_add_stream(env, n);
}

/* ---- one-input transformations ---------------------------------------------------------- */

/* Adds an operator that runs a user function struct (copied: fn_size bytes) after checking
 * that it has its main callback. out_schema NULL keeps the input's schema. */
static sl_stream *add_user_op(sl_stream *in, sl__node_kind kind, const char *call,
                              bool has_callback, const char *callback, const char *name,
                              const char *out_schema, const void *fn, size_t fn_size)
{
    if (!usable(in))
        return NULL;
    if (!has_callback) {
        sl_env_fail(in->env, SL_EINVAL, "%s: the function struct needs a %s callback", call,
                    callback);
        return NULL;
    }
    sl__schema *sc =
        out_schema ? parse_schema(in->env, call, out_schema) : sl__schema_copy(in->node->schema);
    sl_stream *s = add_op(in, kind, name, sc);
    if (s)
        memcpy(&s->node->fn, fn, fn_size);
    return s;
}

sl_stream *sl_map(sl_stream *in, const char *out_schema, const sl_map_fn *fn)
{
    return add_user_op(in, SL_NODE_MAP, "sl_map", fn && fn->map, "map", "Map", out_schema, fn,
                       sizeof *fn);
}

sl_stream *sl_flat_map(sl_stream *in, const char *out_schema, const sl_flat_map_fn *fn)
{
    return add_user_op(in, SL_NODE_FLAT_MAP, "sl_flat_map", fn && fn->flat_map, "flat_map",
                       "Flat Map", out_schema, fn, sizeof *fn);
}

sl_stream *sl_filter(sl_stream *in, const sl_filter_fn *fn)
{
    return add_user_op(in, SL_NODE_FILTER, "sl_filter", fn && fn->filter, "filter", "Filter", NULL,
                       fn, sizeof *fn);
}

sl_stream *sl_process(sl_stream *in, const char *out_schema, const sl_process_fn *fn)
{
    return add_user_op(in, SL_NODE_PROCESS, "sl_process", fn && fn->process, "process",
                       in && in->keyed ? "Keyed Process" : "Process", out_schema, fn, sizeof *fn);
}

sl_stream *sl_union(sl_stream *const *inputs, size_t n)
{
    if (!inputs || n < 1 || !inputs[0])
        return NULL;
    sl_env *env = inputs[0]->env;
    for (size_t i = 0; i < n; i++)
        if (!usable(inputs[i]))
            return NULL;
    if (n < 2) {
        sl_env_fail(env, SL_EINVAL, "sl_union needs at least 2 streams, got %zu", n);
        return NULL;
    }
    for (size_t i = 1; i < n; i++) {
        if (!sl__schema_equal(inputs[0]->node->schema, inputs[i]->node->schema)) {
            sl_env_fail(env, SL_ESCHEMA,
                        "sl_union: stream %zu ('%s') has schema \"%s\" but stream 0 ('%s') has "
                        "\"%s\"; union needs equal schemas",
                        i, in_name(inputs[i]), inputs[i]->node->schema->text, in_name(inputs[0]),
                        inputs[0]->node->schema->text);
            return NULL;
        }
    }
    sl__schema *sc = sl__schema_copy(inputs[0]->node->schema);
    if (!sc) {
        sl_env_fail(env, SL_ENOMEM, "out of memory");
        return NULL;
    }
    sl__node *node = sl__env_add_node(env, SL_NODE_UNION, "Union", sc);
    if (!node)
        return NULL;
    node->inputs = sl__calloc(n, sizeof *node->inputs);
    if (!node->inputs) {
        sl_env_fail(env, SL_ENOMEM, "out of memory");
        return NULL;
    }
    node->ninputs = (int)n;
    for (size_t i = 0; i < n; i++) {
        /* a keyed input is partitioned by key into the union; the union's output is not keyed */
        node->inputs[i] =
            (sl__edge){.from = inputs[i]->node, .part = inputs[i]->part, .key = inputs[i]->key};
    }
    return sl__env_add_stream(env, node);
}

static sl_stream *repartition(sl_stream *in, sl__partitioner part)
{
    sl_stream *s = sl__env_add_stream(in->env, in->node);
    if (s)
        s->part = part;
    return s;
}

sl_stream *sl_rebalance(sl_stream *in)
{
    if (!usable(in))
        return NULL;
    return repartition(in, SL_PART_REBALANCE);
}

sl_stream *sl_key_by(sl_stream *in, int field)
{
    if (!usable(in) || !check_field(in, "sl_key_by", field))
        return NULL;
    sl__schema *ks = sl__schema_project(in->node->schema, &field, 1);
    if (!ks || !sl__env_own(in->env, ks, (void (*)(void *))sl__schema_destroy))
        return NULL;
    sl_stream *s = repartition(in, SL_PART_HASH);
    if (!s)
        return NULL;
    s->keyed = true;
    s->key.field = field;
    s->key.schema = ks;
    return s;
}

sl_stream *sl_key_by_fn(sl_stream *in, const char *key_schema, const sl_key_fn *fn)
{
    if (!usable(in))
        return NULL;
    if (!fn || !fn->key) {
        sl_env_fail(in->env, SL_EINVAL, "sl_key_by_fn: the function struct needs a key callback");
        return NULL;
    }
    sl__schema *ks = parse_schema(in->env, "sl_key_by_fn key schema", key_schema);
    if (!ks || !sl__env_own(in->env, ks, (void (*)(void *))sl__schema_destroy))
        return NULL;
    sl_stream *s = repartition(in, SL_PART_HASH);
    if (!s)
        return NULL;
    s->keyed = true;
    s->key.field = -1;
    s->key.fn = *fn;
    s->key.schema = ks;
    return s;
}

/* ---- keyed aggregations ---------------------------------------------------------------- */

static sl_stream *agg(sl_stream *keyed, sl__agg_kind kind, const char *op, int field)
{
    if (!usable(keyed) || !check_keyed(keyed, op) || !check_field(keyed, op, field))
        return NULL;
    sl_type t = keyed->node->schema->types[field];
    bool ok = kind == SL_AGG_SUM ? (t == SL_I64 || t == SL_F64)
                                 : (t == SL_I64 || t == SL_F64 || t == SL_STR);
    if (!ok) {
        sl_env_fail(keyed->env, SL_ESCHEMA, "%s: field %d (%s) of '%s' is %s; %s accepts %s fields",
                    op, field, keyed->node->schema->names[field], in_name(keyed), sl__type_name(t),
                    op, kind == SL_AGG_SUM ? "i64 or f64" : "i64, f64 or str");
        return NULL;
    }
    sl_stream *s =
        add_op(keyed, SL_NODE_AGG, "Keyed Aggregation", sl__schema_copy(keyed->node->schema));
    if (s) {
        s->node->agg = kind;
        s->node->agg_field = field;
    }
    return s;
}

sl_stream *sl_sum(sl_stream *keyed, int field)
{
    return agg(keyed, SL_AGG_SUM, "sum", field);
}

sl_stream *sl_min(sl_stream *keyed, int field)
{
    return agg(keyed, SL_AGG_MIN, "min", field);
}

sl_stream *sl_max(sl_stream *keyed, int field)
{
    return agg(keyed, SL_AGG_MAX, "max", field);
}

sl_stream *sl_min_by(sl_stream *keyed, int field)
{
    return agg(keyed, SL_AGG_MIN_BY, "min_by", field);
}

sl_stream *sl_max_by(sl_stream *keyed, int field)
{
    return agg(keyed, SL_AGG_MAX_BY, "max_by", field);
}

sl_stream *sl_reduce(sl_stream *keyed, const sl_reduce_fn *fn)
{
    if (!usable(keyed) || !check_keyed(keyed, "reduce"))
        return NULL;
    if (!fn || !fn->reduce) {
        sl_env_fail(keyed->env, SL_EINVAL,
                    "sl_reduce: the function struct needs a reduce callback");
        return NULL;
    }
    sl_stream *s =
        add_op(keyed, SL_NODE_REDUCE, "Keyed Reduce", sl__schema_copy(keyed->node->schema));
    if (s)
        s->node->fn.reduce = *fn;
    return s;
}

/* ---- broadcast ---------------------------------------------------------------------------- */

static void free_bcast(sl__bcast_desc *d)
{
    sl__free(d->name);
    sl__free(d->key_schema);
    sl__free(d->value_schema);
}

static void free_bcast_desc(void *p)
{
    free_bcast(p);
    sl__free(p);
}

sl_stream *sl_broadcast(sl_stream *in, const char *state_name, const char *key_schema,
                        const char *value_schema)
{
    if (!usable(in))
        return NULL;
    if (!state_name || !*state_name) {
        sl_env_fail(in->env, SL_EINVAL, "sl_broadcast: the broadcast state needs a name");
        return NULL;
    }
    /* validate both schemas now so errors show at build time */
    sl__schema *k = parse_schema(in->env, "sl_broadcast key schema", key_schema);
    sl__schema *v = k ? parse_schema(in->env, "sl_broadcast value schema", value_schema) : NULL;
    sl__schema_destroy(k);
    sl__schema_destroy(v);
    if (!k || !v)
        return NULL;
    sl_stream *s = repartition(in, SL_PART_BROADCAST);
    if (!s)
        return NULL;
    sl__bcast_desc *d = sl__calloc(1, sizeof *d);
    if (!d || !(d->name = sl__strdup(state_name)) || !(d->key_schema = sl__strdup(key_schema)) ||
        !(d->value_schema = sl__strdup(value_schema))) {
        if (d)
            free_bcast_desc(d);
        sl_env_fail(in->env, SL_ENOMEM, "out of memory");
        return NULL;
    }
    if (!sl__env_own(in->env, d, free_bcast_desc))
        return NULL;
    s->bcast = *d;
    s->is_broadcast = true;
    return s;
}

sl_stream *sl_connect_broadcast(sl_stream *in, sl_stream *broadcast, const char *out_schema,
                                const sl_broadcast_process_fn *fn)
{
    if (!usable(in) || !usable(broadcast))
        return NULL;
    if (!broadcast->is_broadcast) {
        sl_env_fail(in->env, SL_EINVAL,
                    "sl_connect_broadcast: the second stream ('%s') is not a broadcast stream; "
                    "make it with sl_broadcast()",
                    in_name(broadcast));
        return NULL;
    }
    if (!fn || !fn->process_element || !fn->process_broadcast) {
        sl_env_fail(in->env, SL_EINVAL,
                    "sl_connect_broadcast: the function struct needs process_element and "
                    "process_broadcast callbacks");
        return NULL;
    }
    sl_stream *s = add_op(in, SL_NODE_BROADCAST_CONNECT,
                          in->keyed ? "Co-Process-Broadcast-Keyed" : "Co-Process-Broadcast",
                          parse_schema(in->env, "sl_connect_broadcast", out_schema));
    if (!s)
        return NULL;
    sl__node *n = s->node;
    sl__edge *e = sl__realloc(n->inputs, 2 * sizeof *e);
    if (!e) {
        sl_env_fail(in->env, SL_ENOMEM, "out of memory");
        return NULL;
    }
    n->inputs = e;
    n->inputs[1] = (sl__edge){.from = broadcast->node, .part = SL_PART_BROADCAST, .input = 1};
    n->ninputs = 2;
    n->fn.bcast = *fn;
    n->bcast.name = sl__strdup(broadcast->bcast.name);
    n->bcast.key_schema = sl__strdup(broadcast->bcast.key_schema);
    n->bcast.value_schema = sl__strdup(broadcast->bcast.value_schema);
    if (!n->bcast.name || !n->bcast.key_schema || !n->bcast.value_schema) {
        sl_env_fail(in->env, SL_ENOMEM, "out of memory");
        return NULL;
    }
    return s;
}

/* ---- sinks and settings ------------------------------------------------------------------- */

sl_stream *sl_add_sink(sl_stream *in, const char *name, const sl_sink_fn *fn)
{
    if (!usable(in))
        return NULL;
    if (!fn || !fn->invoke) {
        sl_env_fail(in->env, SL_EINVAL, "sink '%s': the function struct needs an invoke callback",
                    name ? name : "?");
        return NULL;
    }
    char full[256];
    snprintf(full, sizeof full, "Sink: %s", name ? name : "Unnamed");
    sl_stream *s = add_op(in, SL_NODE_SINK, full, sl__schema_copy(in->node->schema));
    if (s)
        s->node->fn.sink = *fn;
    return s;
}

sl_stream *sl_set_parallelism(sl_stream *s, int parallelism)
{
    if (!usable(s))
        return s;
    if (parallelism < 1) {
        sl_env_fail(s->env, SL_EINVAL,
                    "sl_set_parallelism: parallelism %d for '%s' is not accepted; it must be at "
                    "least 1",
                    parallelism, in_name(s));
    } else if (s->node->parallelism_fixed && parallelism != 1) {
        sl_env_fail(s->env, SL_EINVAL,
                    "sl_set_parallelism: '%s' is not a parallel source; its parallelism must be 1",
                    in_name(s));
    } else {
        s->node->parallelism = parallelism;
    }
    return s;
}

sl_stream *sl_set_name(sl_stream *s, const char *name)
{
    if (!usable(s) || !name)
        return s;
    char *n = sl__strdup(name);
    if (!n) {
        sl_env_fail(s->env, SL_ENOMEM, "out of memory");
        return s;
    }
    sl__free(s->node->name);
    s->node->name = n;
    return s;
}

sl_stream *sl_set_uid(sl_stream *s, const char *uid)
{
    if (!usable(s) || !uid)
        return s;
    sl_env *env = s->env;
    (void)env;
    char *u = sl__strdup(uid);
    if (!u) {
        sl_env_fail(s->env, SL_ENOMEM, "out of memory");
        return s;
    }
    sl__free(s->node->uid);
    s->node->uid = u;
    return s;
}

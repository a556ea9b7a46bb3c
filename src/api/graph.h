/*
 * graph.h - the job graph: what the DataStream builder (src/api) produces and the runtime
 * (src/runtime) executes.
 *
 * A node is one logical operator with a parallelism, an output schema and input edges. An
 * sl_stream is a view of a node's output plus how its consumers receive it (forward, hash
 * by key, rebalance, broadcast), so key_by/rebalance/broadcast add no node, as in Flink.
 * Nodes are numbered in creation order, which is a topological order.
 */
#ifndef SL_API_GRAPH_H
#define SL_API_GRAPH_H

#include "core/config.h"
#include "core/row.h"
#include "sluice.h"

#include <stdbool.h>

typedef enum sl__node_kind {
    SL_NODE_SOURCE,
    SL_NODE_MAP,
    SL_NODE_FLAT_MAP,
    SL_NODE_FILTER,
    SL_NODE_PROCESS,
    SL_NODE_REDUCE,
    SL_NODE_AGG,
    SL_NODE_UNION,
    SL_NODE_BROADCAST_CONNECT,
    SL_NODE_SINK,
} sl__node_kind;

typedef enum sl__agg_kind {
    SL_AGG_SUM,
    SL_AGG_MIN,
    SL_AGG_MAX,
    SL_AGG_MIN_BY,
    SL_AGG_MAX_BY,
} sl__agg_kind;

typedef enum sl__partitioner {
    SL_PART_FORWARD,
    SL_PART_HASH,
    SL_PART_REBALANCE,
    SL_PART_BROADCAST,
} sl__partitioner;

/* How a key is made from a row: a field, or a key selector function. */
typedef struct sl__key_spec {
    int field;          /* >= 0: key by this field; -1: use fn */
    sl_key_fn fn;       /* copied */
    sl__schema *schema; /* key schema (owned by the env) */
} sl__key_spec;

/* The common lifecycle hooks every function struct starts with (SL_FN_HOOKS). */
typedef struct sl__hooks {
    SL_FN_HOOKS;
} sl__hooks;

typedef struct sl__node sl__node;

typedef struct sl__edge {
    sl__node *from;
    sl__partitioner part;
    sl__key_spec key; /* HASH only */
    int input;        /* logical input of the consumer: 0, or 1 for the broadcast side */
} sl__edge;

/* A broadcast state declared by sl_broadcast(). */
typedef struct sl__bcast_desc {
    char *name;
    char *key_schema;
    char *value_schema;
} sl__bcast_desc;

struct sl__node {
    int id;
    sl__node_kind kind;
    char *name;
    char *uid;
    int parallelism;        /* 0: the environment's default */
    bool parallelism_fixed; /* a non-parallel source: always 1 */
    bool bounded;           /* sources */
    sl__schema *schema;     /* output schema */
    sl__edge *inputs;
    int ninputs;
    bool keyed; /* input 0 is a keyed (HASH) edge and the operator may use keyed state */

    /* The user's function, by kind; hooks alias the first members of each struct. */
    union {
        sl__hooks hooks;
        sl_source_fn source;
        sl_map_fn map;
        sl_flat_map_fn flat_map;
        sl_filter_fn filter;
        sl_process_fn process;
        sl_reduce_fn reduce;
        sl_broadcast_process_fn bcast;
        sl_sink_fn sink;
    } fn;
    sl__agg_kind agg;
    int agg_field;
    sl__bcast_desc bcast; /* BROADCAST_CONNECT: the state of the broadcast input */
};

struct sl_stream {
    sl_env *env;
    sl__node *node;
    sl__partitioner part;
    sl__key_spec key;
    bool keyed;
    sl__bcast_desc bcast; /* set by sl_broadcast */
    bool is_broadcast;
    sl_stream *next_alloc; /* env's list of streams, for freeing */
};

/* Everything sl_execute needs from the environment. */
typedef struct sl__job_graph {
    sl__node **nodes;
    int nnodes;
    sl__config *config;
    int default_parallelism;
    int max_parallelism;
    sl_runtime_mode mode; /* resolved: STREAMING or BATCH */
    const char *name;
    const char *job_id;       /* 32 hex digits, new for every sl_execute */
    const char *restore_path; /* -s, or NULL */
    bool allow_non_restored;  /* --allow-non-restored-state */
    /* Called once when the job has ended (ok: it finished), before its checkpoints are
     * deleted; connectors commit their last output there. Returns 0, or an error with a
     * message in err (the output could not be committed). */
    int (*on_end)(void *arg, bool ok, char *err, size_t cap);
    void *on_end_arg;
} sl__job_graph;

#endif

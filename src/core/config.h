/*
 * config.h - configuration: a table of known keys with Flink's names, typed validation,
 * defaults, 2.x/1.x aliases, and loading from YAML (libyaml) and "key=value" pairs.
 *
 * Every key Sluice understands is a row in one table (config.c). Setting an unknown key or
 * a value the key does not accept fails with a message that names the key and lists what
 * is accepted. Values are stored as validated text under the canonical key name; the typed
 * getters below parse them (they cannot fail after validation).
 *
 * Not thread-safe for writes; after sl_execute() starts, the config is only read.
 */
#ifndef SL_CORE_CONFIG_H
#define SL_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl__config sl__config;

typedef enum sl__config_type {
    SL_CFG_INT,      /* decimal integer within [min, max] */
    SL_CFG_BOOL,     /* true/false (case-insensitive) */
    SL_CFG_DURATION, /* "100 ms", "1s", "2 min", "1h", plain number = ms */
    SL_CFG_MEMORY,   /* "32kb", "64 mb", "1gb", plain number = bytes */
    SL_CFG_ENUM,     /* one of a '|'-separated list, case-insensitive; stored in list case */
    SL_CFG_STRING,   /* any text */
    SL_CFG_PATH,     /* a local path or file:// URI; stored without the scheme */
    SL_CFG_DOUBLE,   /* decimal number "1.5", "0.1", "2", "1e-3" within [min, max] */
} sl__config_type;

typedef struct sl__config_key {
    const char *name;  /* canonical (Flink 1.x) name */
    const char *alias; /* other accepted name (2.x or older), or NULL */
    sl__config_type type;
    const char *def;    /* default as text, NULL for none */
    int64_t min, max;   /* INT, DOUBLE, DURATION (ms) and MEMORY (bytes) bounds */
    const char *values; /* ENUM: "STREAMING|BATCH|AUTOMATIC" */
    const char *doc;    /* one line for docs/config.md and --help */
} sl__config_key;

/* The table of known keys, terminated by an entry with name NULL. */
const sl__config_key *sl__config_keys(void);

/* A config with every key at its default. NULL on out of memory. */
sl__config *sl__config_create(void);
sl__config *sl__config_copy(const sl__config *c);
void sl__config_destroy(sl__config *c);

/* Sets key (canonical name or alias) to value after validating it. Returns 0, or
 * SL_ECONFIG with a message in err like:
 *   unknown configuration key "paralelism.default"; did you mean "parallelism.default"?
 *   invalid value "fast" for execution.runtime-mode: accepted STREAMING, BATCH, AUTOMATIC
 * SL_ENOMEM on out of memory. */
int sl__config_set(sl__config *c, const char *key, const char *value, char *err, size_t cap);
/* Parses "key=value" (as given to -D). */
int sl__config_set_pair(sl__config *c, const char *pair, char *err, size_t cap);
/* Loads a YAML file: flat keys ("a.b.c: v") and nested mappings (a: {b: {c: v}}) are both
 * flattened with dots; scalars only (a sequence is an error naming the key). Errors name
 * the file and line. Missing file: SL_EIO with the path and strerror. */
int sl__config_load_yaml(sl__config *c, const char *path, char *err, size_t cap);

/* Checks value against key row k (called name in messages) and returns in *out the text
 * to store, allocated with sl__malloc and owned by the caller. Returns 0, SL_ECONFIG with a
 * message naming the key and what it accepts, or SL_ENOMEM. */
int sl__config_validate(const sl__config_key *k, const char *name, const char *value, char **out,
                        char *err, size_t cap);

/* True when the key was set explicitly (not a default). */
bool sl__config_is_set(const sl__config *c, const char *key);
/* The effective value as text (default if unset); NULL when the key is unknown or has no
 * value. Lives until the key is set again or the config is destroyed. */
const char *sl__config_get(const sl__config *c, const char *key);
/* Typed getters for a known key with a value; they abort on a programming error (unknown
 * key or wrong type), never on user input, which was validated when set. */
int64_t sl__config_int(const sl__config *c, const char *key);
bool sl__config_bool(const sl__config *c, const char *key);
int64_t sl__config_duration_ms(const sl__config *c, const char *key);
int64_t sl__config_memory(const sl__config *c, const char *key);
double sl__config_double(const sl__config *c, const char *key);

/* Parsers, also used by the API for values given in code. Return 0 or -1. */
int sl__parse_duration_ms(const char *s, int64_t *ms);
int sl__parse_memory(const char *s, int64_t *bytes);

#endif

/*
 * Private: what the policy files share. policy.c: one policy (the object,
 * validation, its index record) and the stored policies; policy_set.c: a
 * ranked set read in one transaction; policy_evaluate.c: the evaluation of a
 * node against a set.
 */
#ifndef PS_POLICY_H
#define PS_POLICY_H

#include <jansson.h>

#include "index.h"
#include "pkgstore/policy.h"

/* PS_DB_META key of the counter bumped by every policy change. */
#define PS_POLICY_GENERATION_KEY "policies.generation"

struct pkgstore_policy {
    int stored;         /* from the index or a set: read-only */
    int type_given;     /* the type was set (a put checks it against the package's) */
    pkgstore_package_type type;
    int priority;
    int64_t created, updated;
    uint64_t retry;
    pkgstore_rollout_strategy strategy; /* nbatches 0: one batch of 100% */
    char *config;                       /* an addon's configuration (canonical JSON), or NULL */
    pkgstore_digest config_digest;      /* its SHA-256 */
    pkgstore_selector *selector;
    char *name, *package, *version;
};

/* Parse an index record (JSON) into a new stored policy. Errors:
 * PKGSTORE_ECORRUPT (the detail names the record), PKGSTORE_ENOMEM. */
int ps_policy_from_record(pkgstore_policy **out, const void *data, size_t len);

/* The policy generation counter in txn (0 when never written). */
int ps_policy_read_generation(uint64_t *out, MDB_txn *txn, ps_index *index);

/* PKGSTORE_ECONFLICT (naming the policy) when a stored policy names
 * package at version (normalized), for pkgstore_registry_remove()'s
 * transaction; PKGSTORE_ECORRUPT when a record cannot be read to tell. */
int ps_policy_check_unreferenced(MDB_txn *txn, ps_index *index, const char *package,
                                 const char *version);

/* The strategy as the JSON object of records and the API (policy_rollout.c). */
json_t *ps_policy_strategy_to_json(const pkgstore_rollout_strategy *s);
/* A strategy from that object, validated. Errors: PKGSTORE_EINVALID. */
int ps_policy_strategy_from_json(pkgstore_rollout_strategy *out, json_t *obj);
/* A count (integer) or an amount string. Errors: PKGSTORE_EINVALID. */
int ps_policy_amount_from_json(pkgstore_rollout_amount *out, json_t *value);
/* 1 when s is the default: one batch of 100%, nothing else set. */
int ps_policy_strategy_is_default(const pkgstore_rollout_strategy *s);

/* An addon configuration object (policy_config.c): checked, then its
 * canonical text into *canonical (NULL for an empty object; free()) and
 * its digest. Errors: PKGSTORE_EINVALID naming "config.<member>",
 * PKGSTORE_ENOMEM. */
int ps_policy_config_from_json(char **canonical, pkgstore_digest *digest, json_t *obj);

/* The index of reg's store. */
ps_index *ps_policy_index(pkgstore_registry *reg);

#endif

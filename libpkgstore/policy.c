/*
 * Policies: the policy object, its validation, its record in
 * PS_DB_POLICIES, and put/get/delete/retry through a registry handle.
 *
 * Every change runs in one index write transaction that also checks the
 * package version the policy names (pkgstore_registry_remove() checks the
 * reverse in its own transaction, so neither can slip past the other) and
 * bumps PS_POLICY_GENERATION_KEY, which tells sets that they are stale.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "error.h"
#include "name.h"
#include "policy.h"
#include "policy_refs.h"
#include "pkgstore/version.h"
#include "registry.h"

static const char *const state_names[PKGSTORE_ROLLOUT_COUNT] = {
    "Pending",       "Downloading", "Verifying",     "Validating", "Swapping",
    "Monitoring",    "Upgraded",    "UpgradeFailed", "RolledBack", "RollbackFailed",
    "Incompatible",  "Unknown",     "Waiting",
};

const char *pkgstore_rollout_state_name(pkgstore_rollout_state state)
{
    if ((int)state < 0 || state >= PKGSTORE_ROLLOUT_COUNT)
        return NULL;
    return state_names[state];
}

int pkgstore_rollout_state_parse(pkgstore_rollout_state *out, const char *status)
{
    if (!out || !status)
        return ps_error_set(PKGSTORE_EINVALID, "status: NULL");
    for (int s = PKGSTORE_ROLLOUT_DOWNLOADING; s <= PKGSTORE_ROLLOUT_ROLLBACK_FAILED; s++) {
        if (strcmp(status, state_names[s]) == 0) {
            *out = (pkgstore_rollout_state)s;
            return 0;
        }
    }
    return ps_error_set(PKGSTORE_EINVALID,
                        "status: '%.64s' is not one of Downloading, Verifying, Validating, "
                        "Swapping, Monitoring, Upgraded, UpgradeFailed, RolledBack, "
                        "RollbackFailed",
                        status);
}

int pkgstore_policy_name_validate(const char *name)
{
    return ps_name_check("policy name", name, PKGSTORE_POLICY_NAME_MAX);
}

/* ---------------------------------------------------------------- the object */

void pkgstore_policy_free(pkgstore_policy *policy)
{
    if (!policy)
        return;
    pkgstore_selector_free(policy->selector);
    free(policy->name);
    free(policy->package);
    free(policy->version);
    free(policy->config);
    free(policy);
}

/* A policy with the three strings checked and copied, the empty selector. */
static int policy_alloc(pkgstore_policy **out, const char *name, const char *package,
                        const char *version)
{
    pkgstore_policy *policy;
    pkgstore_semver semver;
    char normalized[PKGSTORE_SEMVER_STR_SIZE];
    int error;

    *out = NULL;
    if ((error = pkgstore_policy_name_validate(name)) < 0)
        return error;
    if (!package || pkgstore_manifest_name_validate(package) < 0) {
        if (!package)
            return ps_error_set(PKGSTORE_EINVALID, "package: missing");
        ps_error_prefix("package");
        return PKGSTORE_EINVALID;
    }
    if (!version || !*version)
        return ps_error_set(PKGSTORE_EINVALID, "version: missing");
    if (pkgstore_version_parse(&semver, version) < 0) {
        ps_error_prefix("version");
        return PKGSTORE_EINVALID;
    }
    pkgstore_version_format(normalized, &semver);
    if (!(policy = calloc(1, sizeof(*policy))))
        return ps_error_set(PKGSTORE_ENOMEM, "policy %s: out of memory", name);
    policy->strategy = (pkgstore_rollout_strategy)PKGSTORE_ROLLOUT_STRATEGY_INIT;
    policy->name = strdup(name);
    policy->package = strdup(package);
    policy->version = strdup(normalized);
    error = pkgstore_selector_parse(&policy->selector, "");
    if (error == 0 && (!policy->name || !policy->package || !policy->version))
        error = ps_error_set(PKGSTORE_ENOMEM, "policy %s: out of memory", name);
    if (error < 0) {
        pkgstore_policy_free(policy);
        return error;
    }
    *out = policy;
    return 0;
}

int pkgstore_policy_new(pkgstore_policy **out, const char *name, const char *package,
                        const char *version)
{
    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "policy_new: NULL output");
    return policy_alloc(out, name, package, version);
}

static int check_mutable(const pkgstore_policy *policy, const char *what)
{
    if (!policy)
        return ps_error_set(PKGSTORE_EINVALID, "%s: NULL policy", what);
    if (policy->stored)
        return ps_error_set(PKGSTORE_EINVALID,
                            "%s: policy %s is read-only (it came from the store; make a new "
                            "one to change it)",
                            what, policy->name);
    return 0;
}

int pkgstore_policy_set_selector(pkgstore_policy *policy, const char *selector)
{
    pkgstore_selector *parsed = NULL;
    int error;

    if ((error = check_mutable(policy, "policy_set_selector")) < 0)
        return error;
    if ((error = pkgstore_selector_parse(&parsed, selector ? selector : "")) < 0)
        return error;
    pkgstore_selector_free(policy->selector);
    policy->selector = parsed;
    return 0;
}

int pkgstore_policy_set_priority(pkgstore_policy *policy, int priority)
{
    int error;
    if ((error = check_mutable(policy, "policy_set_priority")) < 0)
        return error;
    if (priority < PKGSTORE_POLICY_PRIORITY_MIN || priority > PKGSTORE_POLICY_PRIORITY_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "priority: %d is outside %d..%d", priority,
                            PKGSTORE_POLICY_PRIORITY_MIN, PKGSTORE_POLICY_PRIORITY_MAX);
    policy->priority = priority;
    return 0;
}

int pkgstore_policy_set_type(pkgstore_policy *policy, pkgstore_package_type type)
{
    int error;
    if ((error = check_mutable(policy, "policy_set_type")) < 0)
        return error;
    if (!pkgstore_package_type_name(type))
        return ps_error_set(PKGSTORE_EINVALID, "type: must be primary or addon");
    policy->type = type;
    policy->type_given = 1;
    return 0;
}

/* Accessors take NULL as "" and 0 so that a misuse cannot crash a caller. */
const char *pkgstore_policy_name(const pkgstore_policy *p) { return p ? p->name : ""; }
const char *pkgstore_policy_package(const pkgstore_policy *p) { return p ? p->package : ""; }
const char *pkgstore_policy_version(const pkgstore_policy *p) { return p ? p->version : ""; }
const pkgstore_selector *pkgstore_policy_selector(const pkgstore_policy *p)
{
    return p ? p->selector : NULL;
}
const char *pkgstore_policy_selector_text(const pkgstore_policy *p)
{
    return p ? pkgstore_selector_string(p->selector) : "";
}
pkgstore_package_type pkgstore_policy_type(const pkgstore_policy *p)
{
    return p ? p->type : PKGSTORE_TYPE_PRIMARY;
}
int pkgstore_policy_priority(const pkgstore_policy *p) { return p ? p->priority : 0; }
int64_t pkgstore_policy_created(const pkgstore_policy *p) { return p ? p->created : 0; }
int64_t pkgstore_policy_updated(const pkgstore_policy *p) { return p ? p->updated : 0; }
uint64_t pkgstore_policy_retry_generation(const pkgstore_policy *p) { return p ? p->retry : 0; }

/* ---------------------------------------------------------------- records */

/* The record: {"created","name","package","priority","retry","selector",
 * "type","updated","version"} with sorted keys (docs/index-format.md), and
 * "strategy" when the policy has one other than the default (so that a
 * record without it reads as before and an unstaged policy's record does
 * not change); "config" likewise, when it configures its addon. */
static char *policy_to_record(const pkgstore_policy *policy)
{
    json_t *record = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:I}", "name", policy->name, "selector",
        pkgstore_selector_string(policy->selector), "package", policy->package, "version",
        policy->version, "type", pkgstore_package_type_name(policy->type), "priority",
        policy->priority, "created", (json_int_t)policy->created, "updated",
        (json_int_t)policy->updated, "retry", (json_int_t)policy->retry);
    if (record && !ps_policy_strategy_is_default(&policy->strategy)) {
        json_t *strategy = ps_policy_strategy_to_json(&policy->strategy);
        if (!strategy || json_object_set_new(record, "strategy", strategy) < 0) {
            json_decref(record);
            return NULL;
        }
    }
    if (record && policy->config) {
        json_t *config = json_loads(policy->config, 0, NULL);
        if (!config || json_object_set_new(record, "config", config) < 0) {
            json_decref(record);
            return NULL;
        }
    }
    char *text = record ? json_dumps(record, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(record);
    return text;
}

int ps_policy_from_record(pkgstore_policy **out, const void *data, size_t len)
{
    json_t *root = json_loadb(data, len, 0, NULL), *priority, *retry;
    pkgstore_policy *policy = NULL;
    const char *selector;
    int error;

    *out = NULL;
    if (!root)
        return ps_error_set(PKGSTORE_ECORRUPT, "not JSON");
    priority = json_object_get(root, "priority");
    retry = json_object_get(root, "retry");
    selector = json_string_value(json_object_get(root, "selector"));
    if ((error = policy_alloc(&policy, json_string_value(json_object_get(root, "name")),
                              json_string_value(json_object_get(root, "package")),
                              json_string_value(json_object_get(root, "version")))) < 0)
        goto corrupt;
    if (!selector) {
        ps_error_set(PKGSTORE_ECORRUPT, "selector: missing");
        goto corrupt;
    }
    pkgstore_selector_free(policy->selector);
    policy->selector = NULL;
    if (pkgstore_selector_parse(&policy->selector, selector) < 0)
        goto corrupt;
    if (!json_is_integer(priority) || (retry && !json_is_integer(retry))) {
        ps_error_set(PKGSTORE_ECORRUPT, "priority or retry: not an integer");
        goto corrupt;
    }
    if (pkgstore_package_type_parse(&policy->type,
                                    json_string_value(json_object_get(root, "type"))) < 0) {
        ps_error_set(PKGSTORE_ECORRUPT, "type: not primary or addon");
        goto corrupt;
    }
    json_t *strategy = json_object_get(root, "strategy");
    if (strategy && ps_policy_strategy_from_json(&policy->strategy, strategy) < 0) {
        ps_error_prefix("strategy");
        goto corrupt;
    }
    json_t *config = json_object_get(root, "config");
    if (config && ps_policy_config_from_json(&policy->config, &policy->config_digest, config) < 0)
        goto corrupt;
    policy->priority = (int)json_integer_value(priority);
    policy->retry = retry ? (uint64_t)json_integer_value(retry) : 0;
    policy->created = (int64_t)json_integer_value(json_object_get(root, "created"));
    policy->updated = (int64_t)json_integer_value(json_object_get(root, "updated"));
    policy->type_given = 1;
    policy->stored = 1;
    json_decref(root);
    *out = policy;
    return 0;
corrupt:
    {
        /* keep the field's detail: "version: ..." says what is wrong */
        char detail[256];
        snprintf(detail, sizeof(detail), "%s", pkgstore_error_detail());
        json_decref(root);
        pkgstore_policy_free(policy);
        return ps_error_set(PKGSTORE_ECORRUPT, "%s", detail[0] ? detail : "malformed");
    }
}

static int read_counter(uint64_t *out, MDB_txn *txn, ps_index *index, const char *name)
{
    MDB_val key = {strlen(name), (void *)name}, val;
    int rc = mdb_get(txn, ps_index_dbi(index, PS_DB_META), &key, &val);
    *out = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return ps_index_error(rc, "read %s", name);
    if (val.mv_size != 8)
        return ps_error_set(PKGSTORE_ECORRUPT, "index: %s: %zu bytes, not 8", name, val.mv_size);
    const unsigned char *p = val.mv_data;
    for (int i = 7; i >= 0; i--)
        *out = (*out << 8) | p[i];
    return 0;
}

int ps_policy_read_generation(uint64_t *out, MDB_txn *txn, ps_index *index)
{
    return read_counter(out, txn, index, PS_POLICY_GENERATION_KEY);
}

static int bump_generation(MDB_txn *txn, ps_index *index)
{
    uint64_t generation;
    unsigned char bytes[8];
    int error, rc;
    if ((error = ps_policy_read_generation(&generation, txn, index)) < 0)
        return error;
    generation++;
    for (int i = 0; i < 8; i++)
        bytes[i] = (unsigned char)(generation >> (8 * i));
    MDB_val key = {sizeof(PS_POLICY_GENERATION_KEY) - 1, (void *)PS_POLICY_GENERATION_KEY};
    MDB_val val = {8, bytes};
    if ((rc = mdb_put(txn, ps_index_dbi(index, PS_DB_META), &key, &val, 0)) != 0)
        return ps_index_error(rc, "write %s", PS_POLICY_GENERATION_KEY);
    return 0;
}

ps_index *ps_policy_index(pkgstore_registry *reg)
{
    return reg->index;
}

int ps_policy_check_unreferenced(MDB_txn *txn, ps_index *index, const char *package,
                                 const char *version)
{
    MDB_cursor *cursor = NULL;
    MDB_val key, val;
    int rc, error = 0;

    if ((rc = mdb_cursor_open(txn, ps_index_dbi(index, PS_DB_POLICIES), &cursor)) != 0)
        return ps_index_error(rc, "opening a cursor over the policies");
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0 && error == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        pkgstore_policy *policy = NULL;
        int name_len = (int)(key.mv_size > 128 ? 128 : key.mv_size);
        if (ps_policy_from_record(&policy, val.mv_data, val.mv_size) < 0) {
            /* it may name this version: refuse rather than guess */
            ps_error_prefix("%s %s: cannot tell whether policy record '%.*s' references it",
                            package, version, name_len, (const char *)key.mv_data);
            error = PKGSTORE_ECORRUPT;
        } else if (strcmp(policy->package, package) == 0 &&
                   strcmp(policy->version, version) == 0) {
            error = ps_error_set(PKGSTORE_ECONFLICT,
                                 "%s %s is referenced by policy %s (delete the policy or point "
                                 "it at another version first)",
                                 package, version, policy->name);
        }
        pkgstore_policy_free(policy);
    }
    if (error == 0 && rc != MDB_NOTFOUND)
        error = ps_index_error(rc, "reading the policies");
    mdb_cursor_close(cursor);
    return error;
}

/* ---------------------------------------------------------------- put, get, delete, retry */

enum policy_op { OP_PUT, OP_DELETE, OP_RETRY };

struct policy_txn {
    enum policy_op op;
    pkgstore_registry *reg;
    const char *name;
    const pkgstore_policy *input; /* OP_PUT */
    pkgstore_policy *result;      /* OP_PUT, OP_RETRY: what was written */
};

/* The stored record of name in txn into *out (NULL when there is none). */
static int read_policy(pkgstore_policy **out, MDB_txn *txn, ps_index *index, const char *name)
{
    MDB_val key = {strlen(name), (void *)name}, val;
    int rc = mdb_get(txn, ps_index_dbi(index, PS_DB_POLICIES), &key, &val);
    *out = NULL;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return ps_index_error(rc, "reading policy %s", name);
    if (ps_policy_from_record(out, val.mv_data, val.mv_size) < 0) {
        ps_error_prefix("index: policy record '%s'", name);
        return PKGSTORE_ECORRUPT;
    }
    return 0;
}

static int write_policy(MDB_txn *txn, ps_index *index, const pkgstore_policy *policy)
{
    MDB_val key = {strlen(policy->name), policy->name}, val;
    char *text = policy_to_record(policy);
    int rc;
    if (!text)
        return ps_error_set(PKGSTORE_ENOMEM, "policy %s: out of memory", policy->name);
    val.mv_size = strlen(text);
    val.mv_data = text;
    rc = mdb_put(txn, ps_index_dbi(index, PS_DB_POLICIES), &key, &val, 0);
    free(text);
    if (rc != 0)
        return ps_index_error(rc, "writing policy %s", policy->name);
    return bump_generation(txn, index);
}

/* The package version the policy names, read in the same transaction as
 * the write: it must exist, and with the policy's type if one was given. */
static int check_package(pkgstore_package_type *type_out, MDB_txn *txn, pkgstore_registry *reg,
                         const pkgstore_policy *policy)
{
    pkgstore_package_type type = PKGSTORE_TYPE_PRIMARY;
    int error = ps_policy_refs_target(&type, txn, reg->index, reg->store, policy->package,
                                      policy->version);
    if (error == PKGSTORE_ENOTFOUND)
        return ps_error_set(PKGSTORE_ENOTFOUND, "package %s version %s not found",
                            policy->package, policy->version);
    if (error < 0)
        return error;
    if (policy->type_given && policy->type != type)
        return ps_error_set(PKGSTORE_EINVALID, "type: %s %s is a%s %s package, not %s",
                            policy->package, policy->version,
                            type == PKGSTORE_TYPE_ADDON ? "n" : "",
                            pkgstore_package_type_name(type),
                            pkgstore_package_type_name(policy->type));
    if (policy->config && type != PKGSTORE_TYPE_ADDON)
        return ps_error_set(PKGSTORE_EINVALID,
                            "config: %s %s is a primary package; only addons take a "
                            "configuration from a policy (the collector's is the node's "
                            "collector.config)",
                            policy->package, policy->version);
    *type_out = type;
    return 0;
}

/* A stored copy of src (the selector re-parsed from its canonical text). */
static int policy_copy(pkgstore_policy **out, const pkgstore_policy *src)
{
    pkgstore_policy *copy = NULL;
    int error;
    if ((error = policy_alloc(&copy, src->name, src->package, src->version)) < 0)
        return error;
    pkgstore_selector_free(copy->selector);
    copy->selector = NULL;
    if ((error = pkgstore_selector_parse(&copy->selector,
                                         pkgstore_selector_string(src->selector))) < 0) {
        pkgstore_policy_free(copy);
        return error;
    }
    copy->type = src->type;
    copy->type_given = 1;
    copy->priority = src->priority;
    copy->created = src->created;
    copy->updated = src->updated;
    copy->retry = src->retry;
    copy->strategy = src->strategy;
    if (src->config && !(copy->config = strdup(src->config))) {
        pkgstore_policy_free(copy);
        return ps_error_set(PKGSTORE_ENOMEM, "policy %s: out of memory", src->name);
    }
    copy->config_digest = src->config_digest;
    copy->stored = 1;
    *out = copy;
    return 0;
}

static int policy_txn_fn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct policy_txn *op = payload;
    pkgstore_policy *existing = NULL;
    int error;

    pkgstore_policy_free(op->result); /* the function may run again */
    op->result = NULL;
    error = read_policy(&existing, txn, index, op->name);
    /* A record that does not parse stops every set from loading (and
     * pkgstored from starting): deleting or replacing it is the repair, so
     * neither may depend on reading it. A replacement starts afresh. */
    int corrupt = error == PKGSTORE_ECORRUPT && op->op != OP_RETRY;
    if (error < 0 && !corrupt)
        return error;
    switch (op->op) {
    case OP_DELETE: {
        MDB_val key = {strlen(op->name), (void *)op->name};
        int rc;
        if (!existing && !corrupt)
            return ps_error_set(PKGSTORE_ENOTFOUND, "policy %.128s not found", op->name);
        pkgstore_policy_free(existing);
        if ((rc = mdb_del(txn, ps_index_dbi(index, PS_DB_POLICIES), &key, NULL)) != 0)
            return ps_index_error(rc, "deleting policy %s", op->name);
        return bump_generation(txn, index);
    }
    case OP_RETRY:
        if (!existing)
            return ps_error_set(PKGSTORE_ENOTFOUND, "policy %.128s not found", op->name);
        existing->retry++;
        existing->updated = (int64_t)time(NULL);
        op->result = existing;
        return write_policy(txn, index, existing);
    case OP_PUT: {
        pkgstore_package_type type = PKGSTORE_TYPE_PRIMARY;
        if ((error = check_package(&type, txn, op->reg, op->input)) < 0 ||
            (error = policy_copy(&op->result, op->input)) < 0) {
            pkgstore_policy_free(existing);
            return error;
        }
        op->result->type = type;
        op->result->updated = (int64_t)time(NULL);
        op->result->created = existing ? existing->created : op->result->updated;
        op->result->retry = existing ? existing->retry : 0;
        pkgstore_policy_free(existing);
        return write_policy(txn, index, op->result);
    }
    }
    pkgstore_policy_free(existing);
    return ps_error_set(PKGSTORE_EINTERNAL, "policy: unknown operation");
}

static int run_op(pkgstore_policy **stored_out, struct policy_txn *op)
{
    int error = ps_index_write(op->reg->index, policy_txn_fn, op);
    if (error < 0 || !stored_out) {
        pkgstore_policy_free(op->result);
        op->result = NULL;
    }
    if (stored_out)
        *stored_out = op->result;
    return error;
}

int pkgstore_policy_put(pkgstore_policy **stored_out, pkgstore_registry *reg,
                        const pkgstore_policy *policy)
{
    if (stored_out)
        *stored_out = NULL;
    if (!reg || !policy)
        return ps_error_set(PKGSTORE_EINVALID, "policy_put: NULL argument");
    struct policy_txn op = {OP_PUT, reg, policy->name, policy, NULL};
    return run_op(stored_out, &op);
}

int pkgstore_policy_retry(pkgstore_policy **stored_out, pkgstore_registry *reg, const char *name)
{
    int error;
    if (stored_out)
        *stored_out = NULL;
    if (!reg)
        return ps_error_set(PKGSTORE_EINVALID, "policy_retry: NULL registry");
    if ((error = pkgstore_policy_name_validate(name)) < 0)
        return error;
    struct policy_txn op = {OP_RETRY, reg, name, NULL, NULL};
    return run_op(stored_out, &op);
}

int pkgstore_policy_delete(pkgstore_registry *reg, const char *name)
{
    int error;
    if (!reg)
        return ps_error_set(PKGSTORE_EINVALID, "policy_delete: NULL registry");
    if ((error = pkgstore_policy_name_validate(name)) < 0)
        return error;
    struct policy_txn op = {OP_DELETE, reg, name, NULL, NULL};
    return run_op(NULL, &op);
}

struct get_txn {
    const char *name;
    pkgstore_policy *result;
};

static int get_txn_fn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct get_txn *get = payload;
    pkgstore_policy_free(get->result);
    get->result = NULL;
    int error = read_policy(&get->result, txn, index, get->name);
    if (error == 0 && !get->result)
        error = ps_error_set(PKGSTORE_ENOTFOUND, "policy %.128s not found", get->name);
    return error;
}

int pkgstore_policy_get(pkgstore_policy **out, pkgstore_registry *reg, const char *name)
{
    struct get_txn get = {name, NULL};
    int error;
    if (out)
        *out = NULL;
    if (!out || !reg)
        return ps_error_set(PKGSTORE_EINVALID, "policy_get: NULL argument");
    if ((error = pkgstore_policy_name_validate(name)) < 0)
        return error;
    if ((error = ps_index_read(reg->index, get_txn_fn, &get)) < 0) {
        pkgstore_policy_free(get.result);
        return error;
    }
    *out = get.result;
    return 0;
}

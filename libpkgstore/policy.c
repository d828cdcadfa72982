/*
 * Policies: the handle and the policy records in PS_DB_POLICIES (the
 * rollout views built from them and the nodes are in policy_view.c).
 *
 * Policies are written through to the index at once and kept in memory as
 * an immutable, reference-counted snapshot with compiled selectors, so a
 * heartbeat evaluates them without a lock held and without parsing.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "policy.h"
#include "store.h"

static const char *const state_names[PKGSTORE_ROLLOUT_COUNT] = {
    "Pending",       "Downloading", "Verifying",  "Validating",     "Swapping",
    "Monitoring",    "Upgraded",    "UpgradeFailed", "RolledBack", "RollbackFailed",
    "Incompatible",  "Unknown",
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

int ps_policy_time_format(char out[32], int64_t seconds)
{
    struct tm tm;
    time_t t = (time_t)seconds;
    if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        strcpy(out, "1970-01-01T00:00:00Z");
        return PKGSTORE_EINVALID;
    }
    return 0;
}

int pkgstore_policy_name_validate(const char *name)
{
    size_t len;

    if (!name)
        return ps_error_set(PKGSTORE_EINVALID, "policy name: NULL");
    len = strlen(name);
    if (len == 0)
        return ps_error_set(PKGSTORE_EINVALID, "policy name: empty");
    if (len > PKGSTORE_POLICY_NAME_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "policy name: longer than %d characters",
                            PKGSTORE_POLICY_NAME_MAX);
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 (i > 0 && (c == '.' || c == '_' || c == '-'));
        if (!ok)
            return ps_error_set(PKGSTORE_EINVALID,
                                "policy name: position %zu: invalid character 0x%02x "
                                "(allowed: [a-z0-9][a-z0-9._-]*)",
                                i + 1, (unsigned char)name[i]);
    }
    return 0;
}

/* ---------------------------------------------------------------- snapshots */

static void policy_set_free(struct ps_policy_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->count; i++)
        pkgstore_selector_free(set->by_rank[i].selector);
    free(set->by_rank);
    free(set->by_name);
    free(set);
}

void ps_policy_set_release(struct ps_policy_set *set)
{
    if (set && atomic_fetch_sub(&set->refs, 1) == 1)
        policy_set_free(set);
}

struct ps_policy_set *ps_policy_set_get(pkgstore_policy_db *db)
{
    struct ps_policy_set *set;
    pthread_mutex_lock(&db->policy_lock);
    set = db->policies;
    atomic_fetch_add(&set->refs, 1);
    pthread_mutex_unlock(&db->policy_lock);
    return set;
}

static int cmp_rank(const void *a, const void *b)
{
    const pkgstore_policy *pa = &((const struct ps_policy_item *)a)->policy;
    const pkgstore_policy *pb = &((const struct ps_policy_item *)b)->policy;
    if (pa->priority != pb->priority)
        return pa->priority > pb->priority ? -1 : 1;
    return strcmp(pa->name, pb->name);
}

static int cmp_name(const void *a, const void *b)
{
    const struct ps_policy_item *ia = *(const struct ps_policy_item *const *)a;
    const struct ps_policy_item *ib = *(const struct ps_policy_item *const *)b;
    return strcmp(ia->policy.name, ib->policy.name);
}

/* A new snapshot of count policies (selectors compiled here). */
static int policy_set_new(struct ps_policy_set **out, const pkgstore_policy *policies,
                          size_t count)
{
    struct ps_policy_set *set = calloc(1, sizeof(*set));
    int error = 0;

    *out = NULL;
    if (!set)
        return ps_error_set(PKGSTORE_ENOMEM, "policies: out of memory");
    atomic_init(&set->refs, 1);
    if (count > 0) {
        set->by_rank = calloc(count, sizeof(*set->by_rank));
        set->by_name = calloc(count, sizeof(*set->by_name));
        if (!set->by_rank || !set->by_name) {
            error = ps_error_set(PKGSTORE_ENOMEM, "policies: out of memory");
            goto out;
        }
    }
    for (size_t i = 0; i < count; i++) {
        set->by_rank[i].policy = policies[i];
        if ((error = pkgstore_selector_parse(&set->by_rank[i].selector,
                                             policies[i].selector)) < 0) {
            ps_error_prefix("policy %s", policies[i].name);
            goto out;
        }
        set->count++;
    }
    if (count > 0)
        qsort(set->by_rank, count, sizeof(*set->by_rank), cmp_rank);
    for (size_t i = 0; i < count; i++)
        set->by_name[i] = &set->by_rank[i];
    if (count > 0)
        qsort(set->by_name, count, sizeof(*set->by_name), cmp_name);
    *out = set;
    set = NULL; /* now owned by the caller */
out:
    policy_set_free(set);
    return error;
}

const struct ps_policy_item *ps_policy_set_find(const struct ps_policy_set *set,
                                                const char *name)
{
    size_t lo = 0, hi = set->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(name, set->by_name[mid]->policy.name);
        if (c == 0)
            return set->by_name[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static void policy_set_swap(pkgstore_policy_db *db, struct ps_policy_set *set)
{
    struct ps_policy_set *old;
    pthread_mutex_lock(&db->policy_lock);
    old = db->policies;
    db->policies = set;
    pthread_mutex_unlock(&db->policy_lock);
    ps_policy_set_release(old);
}

/* ---------------------------------------------------------------- records */

static json_t *policy_to_record(const pkgstore_policy *policy)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:I}", "name", policy->name,
                     "selector", policy->selector, "package", policy->package, "version",
                     policy->version, "type", pkgstore_package_type_name(policy->type),
                     "priority", policy->priority, "created", (json_int_t)policy->created,
                     "updated", (json_int_t)policy->updated, "retry",
                     (json_int_t)policy->retry);
}

static int copy_field(char *dst, size_t size, json_t *obj, const char *key)
{
    const char *value = json_string_value(json_object_get(obj, key));
    if (!value || strlen(value) >= size)
        return -1;
    memcpy(dst, value, strlen(value) + 1);
    return 0;
}

static int policy_from_record(pkgstore_policy *out, const char *data, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb(data, len, 0, &jerr);
    int error = PKGSTORE_ECORRUPT;
    json_t *priority;

    memset(out, 0, sizeof(*out));
    if (!root)
        return PKGSTORE_ECORRUPT;
    priority = json_object_get(root, "priority");
    if (copy_field(out->name, sizeof(out->name), root, "name") < 0 ||
        copy_field(out->selector, sizeof(out->selector), root, "selector") < 0 ||
        copy_field(out->package, sizeof(out->package), root, "package") < 0 ||
        copy_field(out->version, sizeof(out->version), root, "version") < 0 ||
        !json_is_integer(priority) ||
        pkgstore_package_type_parse(&out->type,
                                    json_string_value(json_object_get(root, "type"))) < 0)
        goto out;
    out->priority = (int)json_integer_value(priority);
    out->created = (int64_t)json_integer_value(json_object_get(root, "created"));
    out->updated = (int64_t)json_integer_value(json_object_get(root, "updated"));
    /* absent in records written before retry generations: 0 */
    json_t *retry = json_object_get(root, "retry");
    if (retry && (!json_is_integer(retry) || json_integer_value(retry) < 0 ||
                  json_integer_value(retry) > UINT32_MAX))
        goto out;
    out->retry = (uint32_t)json_integer_value(retry);
    error = 0;
out:
    json_decref(root);
    return error;
}

struct load_policies {
    pkgstore_policy *policies;
    size_t count;
};

static int load_policies_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct load_policies *load = payload;
    MDB_cursor *cursor = NULL;
    MDB_val key, val;
    int rc, error = 0;

    free(load->policies);
    load->policies = NULL;
    load->count = 0;
    if ((rc = mdb_cursor_open(txn, ps_index_dbi(index, PS_DB_POLICIES), &cursor)) != 0)
        return ps_index_error(rc, "opening a cursor over the policies");
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        pkgstore_policy *grown = realloc(load->policies, (load->count + 1) * sizeof(*grown));
        if (!grown) {
            error = ps_error_set(PKGSTORE_ENOMEM, "policies: out of memory");
            goto out;
        }
        load->policies = grown;
        if (policy_from_record(&load->policies[load->count], val.mv_data, val.mv_size) < 0) {
            error = ps_error_set(PKGSTORE_ECORRUPT, "index: policy record '%.*s' does not parse",
                                 (int)(key.mv_size > 128 ? 128 : key.mv_size),
                                 (const char *)key.mv_data);
            goto out;
        }
        load->count++;
    }
    if (rc != MDB_NOTFOUND)
        error = ps_index_error(rc, "reading the policies");
out:
    mdb_cursor_close(cursor);
    return error;
}

struct policy_write {
    const pkgstore_policy *policy; /* NULL: delete name */
    const char *name;
};

static int policy_write_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct policy_write *write = payload;
    MDB_val key = {strlen(write->name), (void *)write->name};
    MDB_dbi dbi = ps_index_dbi(index, PS_DB_POLICIES);
    int rc;

    if (!write->policy) {
        if ((rc = mdb_del(txn, dbi, &key, NULL)) != 0 && rc != MDB_NOTFOUND)
            return ps_index_error(rc, "deleting policy %s", write->name);
        return 0;
    }
    json_t *record = policy_to_record(write->policy);
    char *text = record ? json_dumps(record, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(record);
    if (!text)
        return ps_error_set(PKGSTORE_ENOMEM, "policy %s: out of memory", write->name);
    MDB_val val = {strlen(text), text};
    rc = mdb_put(txn, dbi, &key, &val, 0);
    free(text);
    if (rc != 0)
        return ps_index_error(rc, "writing policy %s", write->name);
    return 0;
}

/* Make the count policies of all the current set, after writing the one
 * change to the index (write->policy NULL: the deletion of write->name).
 * The caller holds policy_write. */
static int policy_commit(pkgstore_policy_db *db, const pkgstore_policy *all, size_t count,
                         struct policy_write *write)
{
    struct ps_policy_set *next = NULL;
    int error;

    if ((error = policy_set_new(&next, all, count)) < 0)
        return error;
    if ((error = ps_index_write(db->index, policy_write_txn, write)) < 0) {
        policy_set_free(next);
        return error;
    }
    policy_set_swap(db, next); /* next is now owned by db */
    return 0;
}

/* ---------------------------------------------------------------- the handle */

int pkgstore_policy_open(pkgstore_policy_db **out, pkgstore_store *store,
                         const pkgstore_policy_options *opts)
{
    pkgstore_policy_options defaults = PKGSTORE_POLICY_OPTIONS_INIT;
    struct load_policies load = {NULL, 0};
    pkgstore_policy_db *db = NULL;
    int error = 0;

    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "policy_open: NULL output");
    *out = NULL;
    if (!store)
        return ps_error_set(PKGSTORE_EINVALID, "policy_open: NULL store");
    if (!opts)
        opts = &defaults;
    if (opts->version != PKGSTORE_POLICY_OPTIONS_VERSION)
        return ps_error_set(PKGSTORE_EINVALID, "policy_open: options version %u (expected %u)",
                            opts->version, PKGSTORE_POLICY_OPTIONS_VERSION);
    if (opts->history_max > 1024)
        return ps_error_set(PKGSTORE_EINVALID, "policy_open: history_max %u over 1024",
                            opts->history_max);
    if (!(db = calloc(1, sizeof(*db))))
        return ps_error_set(PKGSTORE_ENOMEM, "policy_open: out of memory");
    db->store = store;
    db->index = ps_store_index(store);
    db->heartbeat_interval_s = opts->heartbeat_interval_s ? opts->heartbeat_interval_s : 30;
    db->history_max = opts->history_max ? opts->history_max : 32;
    db->flush_interval_ms = opts->flush_interval_ms ? opts->flush_interval_ms : 1000;
    pthread_mutex_init(&db->policy_write, NULL);
    pthread_mutex_init(&db->policy_lock, NULL);
    pthread_rwlock_init(&db->target_lock, NULL);
    pthread_mutex_init(&db->flush_lock, NULL);
    pthread_mutex_init(&db->flusher_lock, NULL);
    pthread_cond_init(&db->flusher_cond, NULL);
    atomic_init(&db->target_gen, 0);
    atomic_init(&db->node_count, 0);
    if ((error = ps_nodes_init(db)) < 0)
        goto fail;
    if (!db->index) {
        error = ps_error_set(PKGSTORE_EINVALID, "policy_open: the store has no index");
        goto fail;
    }
    if ((error = pkgstore_registry_open(&db->registry, store)) < 0)
        goto fail;
    if ((error = ps_index_read(db->index, load_policies_txn, &load)) < 0)
        goto fail;
    if ((error = policy_set_new(&db->policies, load.policies, load.count)) < 0)
        goto fail;
    if ((error = ps_nodes_load(db)) < 0)
        goto fail;
    if (!opts->no_flusher && (error = ps_flusher_start(db)) < 0)
        goto fail;
    free(load.policies);
    *out = db;
    return 0;
fail:
    free(load.policies);
    pkgstore_policy_free(db);
    return error;
}

void pkgstore_policy_free(pkgstore_policy_db *db)
{
    if (!db)
        return;
    ps_flusher_stop(db);
    if (db->policies) /* fully opened: write what is pending */
        pkgstore_policy_flush(db);
    ps_nodes_free(db);
    ps_target_cache_free(db);
    ps_policy_set_release(db->policies);
    pkgstore_registry_free(db->registry);
    pthread_cond_destroy(&db->flusher_cond);
    pthread_mutex_destroy(&db->flusher_lock);
    pthread_mutex_destroy(&db->flush_lock);
    pthread_rwlock_destroy(&db->target_lock);
    pthread_mutex_destroy(&db->policy_lock);
    pthread_mutex_destroy(&db->policy_write);
    free(db);
}

/* ---------------------------------------------------------------- put, get, list, delete */

/* Validate policy into *clean (selector canonical, version normalized).
 * type_given 0 takes the package's own type. */
static int policy_validate(pkgstore_policy *clean, pkgstore_policy_db *db,
                           const pkgstore_policy *policy, int type_given)
{
    pkgstore_selector *selector = NULL;
    pkgstore_manifest *manifest = NULL;
    int error;

    *clean = *policy;
    if ((error = pkgstore_policy_name_validate(policy->name)) < 0)
        return error;
    if (memchr(policy->selector, '\0', sizeof(policy->selector)) == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "selector: not terminated");
    if ((error = pkgstore_selector_parse(&selector, policy->selector)) < 0)
        return error;
    snprintf(clean->selector, sizeof(clean->selector), "%s", pkgstore_selector_string(selector));
    pkgstore_selector_free(selector);
    if (policy->priority < PKGSTORE_POLICY_PRIORITY_MIN ||
        policy->priority > PKGSTORE_POLICY_PRIORITY_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "priority: %d is outside %d..%d",
                            policy->priority, PKGSTORE_POLICY_PRIORITY_MIN,
                            PKGSTORE_POLICY_PRIORITY_MAX);
    if (type_given && !pkgstore_package_type_name(policy->type))
        return ps_error_set(PKGSTORE_EINVALID, "type: must be primary or addon");
    if (memchr(policy->package, '\0', sizeof(policy->package)) == NULL ||
        (error = pkgstore_manifest_name_validate(policy->package)) < 0) {
        ps_error_prefix("package");
        return PKGSTORE_EINVALID;
    }
    if (memchr(policy->version, '\0', sizeof(policy->version)) == NULL || !policy->version[0])
        return ps_error_set(PKGSTORE_EINVALID, "version: empty");

    error = pkgstore_registry_get(&manifest, NULL, db->registry, policy->package,
                                  policy->version);
    if (error == PKGSTORE_ENOTFOUND)
        return ps_error_set(PKGSTORE_ENOTFOUND, "package %s version %s not found",
                            policy->package, policy->version);
    if (error == PKGSTORE_EINVALID) {
        ps_error_prefix("version");
        return error;
    }
    if (error < 0)
        return error;
    snprintf(clean->version, sizeof(clean->version), "%s", pkgstore_manifest_version(manifest));
    if (!type_given) {
        clean->type = pkgstore_manifest_type(manifest);
    } else if (policy->type != pkgstore_manifest_type(manifest)) {
        error = ps_error_set(PKGSTORE_EINVALID, "type: %s %s is a%s %s package, not %s",
                             policy->package, clean->version,
                             pkgstore_manifest_type(manifest) == PKGSTORE_TYPE_ADDON ? "n" : "",
                             pkgstore_package_type_name(pkgstore_manifest_type(manifest)),
                             pkgstore_package_type_name(policy->type));
    }
    pkgstore_manifest_free(manifest);
    return error;
}

/*
 * Store clean under its name, keeping the created time and the retry
 * generation of a policy it replaces; or, with bump, store the existing
 * policy of clean->name again with its retry generation raised by one.
 */
static int policy_replace(pkgstore_policy *stored_out, pkgstore_policy_db *db,
                          const pkgstore_policy *input, int bump)
{
    struct ps_policy_set *set = NULL;
    pkgstore_policy clean = *input, *all = NULL;
    size_t count = 0;
    int error = 0;

    pthread_mutex_lock(&db->policy_write);
    set = ps_policy_set_get(db);
    const struct ps_policy_item *existing = ps_policy_set_find(set, clean.name);
    if (bump) {
        if (!existing) {
            error = ps_error_set(PKGSTORE_ENOTFOUND, "policy %.128s not found", clean.name);
            goto out;
        }
        clean = existing->policy;
        if (clean.retry == UINT32_MAX) {
            error = ps_error_set(PKGSTORE_ELIMIT, "policy %s: retry generation at its maximum",
                                 clean.name);
            goto out;
        }
        clean.retry++;
        clean.updated = (int64_t)time(NULL);
    } else {
        clean.updated = (int64_t)time(NULL);
        clean.created = existing ? existing->policy.created : clean.updated;
        clean.retry = existing ? existing->policy.retry : 0;
    }
    if (!(all = calloc(set->count + 1, sizeof(*all)))) {
        error = ps_error_set(PKGSTORE_ENOMEM, "policy %s: out of memory", clean.name);
        goto out;
    }
    for (size_t i = 0; i < set->count; i++) {
        if (strcmp(set->by_rank[i].policy.name, clean.name) != 0)
            all[count++] = set->by_rank[i].policy;
    }
    all[count++] = clean;
    struct policy_write write = {&clean, clean.name};
    if ((error = policy_commit(db, all, count, &write)) < 0)
        goto out;
    if (stored_out)
        *stored_out = clean;
out:
    pthread_mutex_unlock(&db->policy_write);
    ps_policy_set_release(set);
    free(all);
    return error;
}

static int policy_put(pkgstore_policy *stored_out, pkgstore_policy_db *db,
                      const pkgstore_policy *policy, int type_given)
{
    pkgstore_policy clean;
    int error;

    if (stored_out)
        memset(stored_out, 0, sizeof(*stored_out));
    if (!db || !policy)
        return ps_error_set(PKGSTORE_EINVALID, "policy_put: NULL argument");
    if ((error = policy_validate(&clean, db, policy, type_given)) < 0)
        return error;
    return policy_replace(stored_out, db, &clean, 0);
}

int pkgstore_policy_put(pkgstore_policy *stored_out, pkgstore_policy_db *db,
                        const pkgstore_policy *policy)
{
    return policy_put(stored_out, db, policy, 1);
}

int pkgstore_policy_retry(pkgstore_policy *stored_out, pkgstore_policy_db *db, const char *name)
{
    pkgstore_policy which;
    int error;

    if (stored_out)
        memset(stored_out, 0, sizeof(*stored_out));
    if (!db || !name)
        return ps_error_set(PKGSTORE_EINVALID, "policy_retry: NULL argument");
    if ((error = pkgstore_policy_name_validate(name)) < 0)
        return error;
    memset(&which, 0, sizeof(which));
    snprintf(which.name, sizeof(which.name), "%s", name);
    return policy_replace(stored_out, db, &which, 1);
}

int pkgstore_policy_get(pkgstore_policy *out, pkgstore_policy_db *db, const char *name)
{
    struct ps_policy_set *set;
    const struct ps_policy_item *item;
    int error = 0;

    if (out)
        memset(out, 0, sizeof(*out));
    if (!out || !db || !name)
        return ps_error_set(PKGSTORE_EINVALID, "policy_get: NULL argument");
    set = ps_policy_set_get(db);
    if ((item = ps_policy_set_find(set, name)))
        *out = item->policy;
    else
        error = ps_error_set(PKGSTORE_ENOTFOUND, "policy %.128s not found", name);
    ps_policy_set_release(set);
    return error;
}

int pkgstore_policy_list(pkgstore_policy **out, size_t *count, pkgstore_policy_db *db)
{
    struct ps_policy_set *set;
    int error = 0;

    if (out)
        *out = NULL;
    if (count)
        *count = 0;
    if (!out || !count || !db)
        return ps_error_set(PKGSTORE_EINVALID, "policy_list: NULL argument");
    set = ps_policy_set_get(db);
    if (set->count > 0) {
        if (!(*out = malloc(set->count * sizeof(**out)))) {
            error = ps_error_set(PKGSTORE_ENOMEM, "policy_list: out of memory");
        } else {
            for (size_t i = 0; i < set->count; i++)
                (*out)[i] = set->by_name[i]->policy;
            *count = set->count;
        }
    }
    ps_policy_set_release(set);
    return error;
}

int pkgstore_policy_delete(pkgstore_policy_db *db, const char *name)
{
    struct ps_policy_set *set = NULL;
    pkgstore_policy *rest = NULL;
    size_t count = 0;
    int error = 0;

    if (!db || !name)
        return ps_error_set(PKGSTORE_EINVALID, "policy_delete: NULL argument");
    pthread_mutex_lock(&db->policy_write);
    set = ps_policy_set_get(db);
    if (!ps_policy_set_find(set, name)) {
        error = ps_error_set(PKGSTORE_ENOTFOUND, "policy %.128s not found", name);
        goto out;
    }
    if (set->count > 1 && !(rest = calloc(set->count - 1, sizeof(*rest)))) {
        error = ps_error_set(PKGSTORE_ENOMEM, "policy %s: out of memory", name);
        goto out;
    }
    for (size_t i = 0; i < set->count; i++) {
        if (strcmp(set->by_rank[i].policy.name, name) != 0)
            rest[count++] = set->by_rank[i].policy;
    }
    struct policy_write write = {NULL, name};
    error = policy_commit(db, rest, count, &write);
out:
    pthread_mutex_unlock(&db->policy_write);
    ps_policy_set_release(set);
    free(rest);
    return error;
}

int pkgstore_policy_check_unreferenced(pkgstore_policy_db *db, const char *package,
                                       const char *version)
{
    struct ps_policy_set *set;
    int error = 0;

    if (!db || !package)
        return ps_error_set(PKGSTORE_EINVALID, "policy_check_unreferenced: NULL argument");
    set = ps_policy_set_get(db);
    for (size_t i = 0; i < set->count && error == 0; i++) {
        const pkgstore_policy *policy = &set->by_name[i]->policy;
        if (strcmp(policy->package, package) != 0)
            continue;
        /* Versions are stored normalized; accept the "v" spelling too. */
        if (version && strcmp(policy->version, version) != 0 &&
            !(version[0] == 'v' && strcmp(policy->version, version + 1) == 0))
            continue;
        error = ps_error_set(PKGSTORE_ECONFLICT, "%s %s is referenced by policy %s", package,
                             policy->version, policy->name);
    }
    ps_policy_set_release(set);
    return error;
}

/* ---------------------------------------------------------------- JSON in */

int pkgstore_policy_put_json(char **json_out, pkgstore_policy_db *db, const char *name,
                             const char *body, size_t len)
{
    pkgstore_policy policy, stored;
    json_error_t jerr;
    json_t *root = NULL, *value;
    const char *key;
    int type_given = 0, error = 0;

    if (json_out)
        *json_out = NULL;
    if (!json_out || !db || !name || (!body && len > 0))
        return ps_error_set(PKGSTORE_EINVALID, "policy_put_json: NULL argument");
    memset(&policy, 0, sizeof(policy));
    if ((error = pkgstore_policy_name_validate(name)) < 0)
        return error;
    snprintf(policy.name, sizeof(policy.name), "%s", name);
    if (!(root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr)))
        return ps_error_set(PKGSTORE_EINVALID, "body: line %d column %d: %s", jerr.line,
                            jerr.column, jerr.text);
    if (!json_is_object(root)) {
        error = ps_error_set(PKGSTORE_EINVALID, "body: not a JSON object");
        goto out;
    }
    json_object_foreach(root, key, value) {
        if (strcmp(key, "selector") == 0 || strcmp(key, "package") == 0 ||
            strcmp(key, "version") == 0 || strcmp(key, "type") == 0) {
            const char *str = json_string_value(value);
            if (!str) {
                error = ps_error_set(PKGSTORE_EINVALID, "%s: not a string", key);
                goto out;
            }
            size_t slen = strlen(str);
            if (key[0] == 's' && slen > PKGSTORE_SELECTOR_MAX) {
                error = ps_error_set(PKGSTORE_ELIMIT, "selector: longer than %d bytes",
                                     PKGSTORE_SELECTOR_MAX);
                goto out;
            }
            if ((key[0] == 'p' && slen > PKGSTORE_NAME_MAX) ||
                (key[0] == 'v' && slen > PKGSTORE_VERSION_MAX)) {
                error = ps_error_set(PKGSTORE_EINVALID, "%s: too long", key);
                goto out;
            }
            if (key[0] == 's')
                memcpy(policy.selector, str, slen + 1);
            else if (key[0] == 'p')
                memcpy(policy.package, str, slen + 1);
            else if (key[0] == 'v')
                memcpy(policy.version, str, slen + 1);
            else if (pkgstore_package_type_parse(&policy.type, str) < 0) {
                error = ps_error_set(PKGSTORE_EINVALID, "type: must be primary or addon");
                goto out;
            } else
                type_given = 1;
        } else if (strcmp(key, "priority") == 0) {
            if (!json_is_integer(value)) {
                error = ps_error_set(PKGSTORE_EINVALID, "priority: not an integer");
                goto out;
            }
            json_int_t p = json_integer_value(value);
            if (p < PKGSTORE_POLICY_PRIORITY_MIN || p > PKGSTORE_POLICY_PRIORITY_MAX) {
                error = ps_error_set(PKGSTORE_EINVALID, "priority: %lld is outside %d..%d",
                                     (long long)p, PKGSTORE_POLICY_PRIORITY_MIN,
                                     PKGSTORE_POLICY_PRIORITY_MAX);
                goto out;
            }
            policy.priority = (int)p;
        } else if (strcmp(key, "name") == 0) {
            if (!json_is_string(value) || strcmp(json_string_value(value), name) != 0) {
                error = ps_error_set(PKGSTORE_EINVALID,
                                     "name: does not match the policy name in the path");
                goto out;
            }
        } else if (strcmp(key, "created") == 0 || strcmp(key, "updated") == 0 ||
                   strcmp(key, "status") == 0 || strcmp(key, "retry") == 0) {
            /* read-only fields of a GET, accepted so a GET can be PUT back */
        } else {
            error = ps_error_set(PKGSTORE_EINVALID, "%.64s: unknown field", key);
            goto out;
        }
    }
    if (!policy.package[0]) {
        error = ps_error_set(PKGSTORE_EINVALID, "package: missing");
        goto out;
    }
    if (!policy.version[0]) {
        error = ps_error_set(PKGSTORE_EINVALID, "version: missing");
        goto out;
    }
    if ((error = policy_put(&stored, db, &policy, type_given)) < 0)
        goto out;
    error = ps_policy_dump(json_out, ps_policy_to_json(&stored));
out:
    json_decref(root);
    return error;
}

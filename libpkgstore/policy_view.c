/*
 * Rollout views: a policy with its counts per state and the nodes it
 * governs, computed from the nodes at the time of the query (so they follow
 * policy changes at once), and the per-policy counts for /metrics.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "policy.h"

json_t *ps_policy_to_json(const pkgstore_policy *policy)
{
    char created[32], updated[32];
    ps_policy_time_format(created, policy->created);
    ps_policy_time_format(updated, policy->updated);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:I}", "name", policy->name,
                     "selector", policy->selector, "package", policy->package, "version",
                     policy->version, "type", pkgstore_package_type_name(policy->type),
                     "priority", policy->priority, "created", created, "updated", updated,
                     "retry", (json_int_t)policy->retry);
}

struct tally {
    pkgstore_policy_db *db;
    struct ps_policy_set *set;
    struct ps_slot *slots;
    struct ps_target **targets;                  /* per by_rank index */
    uint64_t (*counts)[PKGSTORE_ROLLOUT_COUNT]; /* per by_rank index */
    uint64_t *matching;                          /* per by_rank index */
    size_t only;                                 /* by_rank index, or SIZE_MAX for all */
    json_t **nodes;                              /* per by_rank index: [{"id","state"}], or NULL */
    int failed;
};

static int tally_node(struct ps_node *node, void *payload)
{
    struct tally *tally = payload;
    size_t nslots = 0;

    if (!node->report)
        return 0;
    ps_policy_evaluate(tally->slots, &nslots, tally->db, tally->set, node->report, node,
                       tally->targets);
    for (size_t i = 0; i < nslots; i++) {
        size_t idx = (size_t)(tally->slots[i].item - tally->set->by_rank);
        if (tally->only != SIZE_MAX && idx != tally->only)
            continue;
        tally->counts[idx][tally->slots[i].state]++;
        if (tally->nodes && tally->nodes[idx]) {
            json_t *entry = json_pack("{s:s, s:s}", "id", node->id, "state",
                                      pkgstore_rollout_state_name(tally->slots[i].state));
            if (!entry || json_array_append_new(tally->nodes[idx], entry) < 0)
                tally->failed = 1;
        }
    }
    ps_slots_release(tally->slots, nslots);
    for (size_t idx = 0; idx < tally->set->count; idx++) {
        if (tally->only != SIZE_MAX && idx != tally->only)
            continue;
        if (pkgstore_selector_matches(tally->set->by_rank[idx].selector, node->report->labels,
                                      node->report->nlabels))
            tally->matching[idx]++;
    }
    return 0;
}

static int cmp_node_entry(const void *a, const void *b)
{
    json_t *ja = *(json_t *const *)a, *jb = *(json_t *const *)b;
    return strcmp(json_string_value(json_object_get(ja, "id")),
                  json_string_value(json_object_get(jb, "id")));
}

/* Sort a JSON array of objects by their "id". */
static int sort_by_id(json_t *array)
{
    size_t n = json_array_size(array);
    json_t **items;
    if (n < 2)
        return 0;
    if (!(items = malloc(n * sizeof(*items))))
        return -1;
    for (size_t i = 0; i < n; i++)
        items[i] = json_incref(json_array_get(array, i));
    qsort(items, n, sizeof(*items), cmp_node_entry);
    json_array_clear(array);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(array, items[i]);
    free(items);
    return 0;
}

/* Tally the nodes for the policy at by_rank index only (SIZE_MAX: all). */
static int tally_run(struct tally *tally, pkgstore_policy_db *db, struct ps_policy_set *set,
                     size_t only, int with_nodes)
{
    memset(tally, 0, sizeof(*tally));
    tally->db = db;
    tally->set = set;
    tally->only = only;
    size_t n = set->count ? set->count : 1;
    tally->slots = calloc(n, sizeof(*tally->slots));
    tally->targets = calloc(n, sizeof(*tally->targets));
    tally->counts = calloc(n, sizeof(*tally->counts));
    tally->matching = calloc(n, sizeof(*tally->matching));
    if (!tally->slots || !tally->targets || !tally->counts || !tally->matching)
        return ps_error_set(PKGSTORE_ENOMEM, "rollout status: out of memory");
    if (with_nodes) {
        if (!(tally->nodes = calloc(n, sizeof(*tally->nodes))))
            return ps_error_set(PKGSTORE_ENOMEM, "rollout status: out of memory");
        for (size_t idx = 0; idx < set->count; idx++) {
            if ((only == SIZE_MAX || idx == only) && !(tally->nodes[idx] = json_array()))
                return ps_error_set(PKGSTORE_ENOMEM, "rollout status: out of memory");
        }
    }
    ps_nodes_foreach(db, tally_node, tally);
    if (tally->failed)
        return ps_error_set(PKGSTORE_ENOMEM, "rollout status: out of memory");
    for (size_t idx = 0; tally->nodes && idx < set->count; idx++) {
        if (tally->nodes[idx] && sort_by_id(tally->nodes[idx]) < 0)
            return ps_error_set(PKGSTORE_ENOMEM, "rollout status: out of memory");
    }
    return 0;
}

static void tally_free(struct tally *tally)
{
    if (tally->set)
        ps_targets_release(tally->targets, tally->set->count);
    free(tally->targets);
    free(tally->slots);
    free(tally->counts);
    free(tally->matching);
    for (size_t idx = 0; tally->nodes && tally->set && idx < tally->set->count; idx++)
        json_decref(tally->nodes[idx]);
    free(tally->nodes);
}

/* The policy at by_rank index idx with its status; nodes (may be NULL) is
 * borrowed. NULL when out of memory. */
static json_t *policy_status_json(struct tally *tally, size_t idx, json_t *nodes)
{
    json_t *obj = ps_policy_to_json(&tally->set->by_rank[idx].policy);
    json_t *counts = json_object(), *status = json_object();
    uint64_t total = 0;
    int failed = 0;

    if (!obj || !counts || !status) {
        json_decref(obj);
        json_decref(counts);
        json_decref(status);
        return NULL;
    }
    for (int s = 0; s < PKGSTORE_ROLLOUT_COUNT; s++) {
        total += tally->counts[idx][s];
        failed |= json_object_set_new(counts, pkgstore_rollout_state_name((pkgstore_rollout_state)s),
                                      json_integer((json_int_t)tally->counts[idx][s]));
    }
    /* json_object_set_new() takes the reference even when it fails */
    failed |= json_object_set_new(status, "nodes_total", json_integer((json_int_t)total));
    failed |= json_object_set_new(status, "nodes_matching",
                                  json_integer((json_int_t)tally->matching[idx]));
    failed |= json_object_set_new(status, "counts", counts);
    if (nodes)
        failed |= json_object_set(status, "nodes", nodes);
    failed |= json_object_set_new(obj, "status", status);
    if (failed) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

int ps_policy_dump(char **json_out, json_t *root)
{
    if (!root)
        return ps_error_set(PKGSTORE_ENOMEM, "JSON: out of memory");
    *json_out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!*json_out)
        return ps_error_set(PKGSTORE_ENOMEM, "JSON: out of memory");
    return 0;
}

int pkgstore_policy_get_json(char **json_out, pkgstore_policy_db *db, const char *name,
                             int with_nodes)
{
    struct ps_policy_set *set;
    struct tally tally;
    const struct ps_policy_item *item;
    int error;

    if (json_out)
        *json_out = NULL;
    if (!json_out || !db || !name)
        return ps_error_set(PKGSTORE_EINVALID, "policy_get_json: NULL argument");
    set = ps_policy_set_get(db);
    if (!(item = ps_policy_set_find(set, name))) {
        ps_policy_set_release(set);
        return ps_error_set(PKGSTORE_ENOTFOUND, "policy %.128s not found", name);
    }
    size_t idx = (size_t)(item - set->by_rank);
    if ((error = tally_run(&tally, db, set, idx, with_nodes)) == 0)
        error = ps_policy_dump(json_out, policy_status_json(&tally, idx,
                                                            tally.nodes ? tally.nodes[idx] : NULL));
    tally_free(&tally);
    ps_policy_set_release(set);
    return error;
}

int pkgstore_policy_list_json(char **json_out, pkgstore_policy_db *db, int with_nodes)
{
    struct ps_policy_set *set;
    struct tally tally;
    json_t *root = NULL, *list = NULL;
    int error;

    if (json_out)
        *json_out = NULL;
    if (!json_out || !db)
        return ps_error_set(PKGSTORE_EINVALID, "policy_list_json: NULL argument");
    set = ps_policy_set_get(db);
    /* one pass over the nodes for every policy */
    if ((error = tally_run(&tally, db, set, SIZE_MAX, with_nodes)) < 0)
        goto out;
    if (!(root = json_object()) || !(list = json_array()) ||
        json_object_set_new(root, "policies", list) < 0) {
        json_decref(list);
        error = ps_error_set(PKGSTORE_ENOMEM, "JSON: out of memory");
        goto out;
    }
    for (size_t i = 0; i < set->count; i++) {
        size_t idx = (size_t)(set->by_name[i] - set->by_rank);
        json_t *obj = policy_status_json(&tally, idx, tally.nodes ? tally.nodes[idx] : NULL);
        if (!obj || json_array_append_new(list, obj) < 0) {
            error = ps_error_set(PKGSTORE_ENOMEM, "JSON: out of memory");
            goto out;
        }
    }
    error = ps_policy_dump(json_out, root);
    root = NULL; /* freed by dump */
out:
    json_decref(root);
    tally_free(&tally);
    ps_policy_set_release(set);
    return error;
}

int pkgstore_policy_counts(uint64_t counts[PKGSTORE_ROLLOUT_COUNT], uint64_t *total,
                           pkgstore_policy_db *db, const char *name)
{
    struct ps_policy_set *set;
    struct tally tally;
    const struct ps_policy_item *item;
    int error;

    if (counts)
        memset(counts, 0, PKGSTORE_ROLLOUT_COUNT * sizeof(*counts));
    if (total)
        *total = 0;
    if (!counts || !db || !name)
        return ps_error_set(PKGSTORE_EINVALID, "policy_counts: NULL argument");
    set = ps_policy_set_get(db);
    if (!(item = ps_policy_set_find(set, name))) {
        ps_policy_set_release(set);
        return ps_error_set(PKGSTORE_ENOTFOUND, "policy %.128s not found", name);
    }
    size_t idx = (size_t)(item - set->by_rank);
    if ((error = tally_run(&tally, db, set, idx, 0)) == 0) {
        for (int s = 0; s < PKGSTORE_ROLLOUT_COUNT; s++) {
            counts[s] = tally.counts[idx][s];
            if (total)
                *total += counts[s];
        }
    }
    tally_free(&tally);
    ps_policy_set_release(set);
    return error;
}

int pkgstore_policy_count_foreach(pkgstore_policy_db *db, pkgstore_policy_count_cb cb,
                                  void *payload)
{
    struct ps_policy_set *set;
    struct tally tally;
    int error;

    if (!db || !cb)
        return ps_error_set(PKGSTORE_EINVALID, "policy_count_foreach: NULL argument");
    set = ps_policy_set_get(db);
    if ((error = tally_run(&tally, db, set, SIZE_MAX, 0)) == 0) {
        for (size_t i = 0; i < set->count && error == 0; i++) {
            size_t idx = (size_t)(set->by_name[i] - set->by_rank);
            for (int s = 0; s < PKGSTORE_ROLLOUT_COUNT && error == 0; s++)
                error = cb(set->by_rank[idx].policy.name, (pkgstore_rollout_state)s,
                           tally.counts[idx][s], payload);
        }
    }
    tally_free(&tally);
    ps_policy_set_release(set);
    return error;
}

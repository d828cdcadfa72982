/*
 * Nodes: the node table, status history, the fleet view and write-behind
 * persistence to PS_DB_NODES (heartbeats themselves: policy_heartbeat.c).
 *
 * Nodes live in a sharded hash table in memory; a heartbeat swaps a node's
 * report under its shard's lock only. A background thread writes changed
 * nodes in one LMDB transaction per period, so a heartbeat never waits on
 * the disk; pkgstore_policy_free() writes everything that is left.
 */
#include <stdio.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string.h>
#include <time.h>

#include "error.h"
#include "policy.h"

/* ---------------------------------------------------------------- history */

static const char *hist_version(const struct ps_hist *h)
{
    return h->text + strlen(h->text) + 1;
}

static const char *hist_message(const struct ps_hist *h)
{
    const char *version = hist_version(h);
    return version + strlen(version) + 1;
}

/* Cut a message to PKGSTORE_STATUS_MESSAGE_MAX bytes on a UTF-8 boundary. */
static size_t message_len(const char *message)
{
    size_t len = strlen(message);
    if (len <= PKGSTORE_STATUS_MESSAGE_MAX)
        return len;
    len = PKGSTORE_STATUS_MESSAGE_MAX;
    while (len > 0 && ((unsigned char)message[len] & 0xc0) == 0x80)
        len--;
    return len;
}

int ps_hist_append(pkgstore_policy_db *db, struct ps_node *node, int64_t time,
                       const char *package, const char *version,
                       pkgstore_rollout_state status, const char *message)
{
    unsigned int cap = db->history_max;
    if (!message)
        message = "";
    if (!version)
        version = "";
    size_t mlen = message_len(message);

    for (unsigned int k = node->hlen; k > 0; k--) {
        const struct ps_hist *h = &node->ring[(node->hstart + k - 1) % cap];
        if (strcmp(h->text, package) != 0)
            continue;
        if (h->status == status && strcmp(hist_version(h), version) == 0 &&
            strlen(hist_message(h)) == mlen && memcmp(hist_message(h), message, mlen) == 0)
            return 0;
        break;
    }
    if (!node->ring && !(node->ring = calloc(cap, sizeof(*node->ring))))
        return ps_error_set(PKGSTORE_ENOMEM, "node %s: out of memory", node->id);
    size_t plen = strlen(package), vlen = strlen(version);
    char *text = malloc(plen + vlen + mlen + 3);
    if (!text)
        return ps_error_set(PKGSTORE_ENOMEM, "node %s: out of memory", node->id);
    memcpy(text, package, plen + 1);
    memcpy(text + plen + 1, version, vlen + 1);
    memcpy(text + plen + vlen + 2, message, mlen);
    text[plen + vlen + 2 + mlen] = '\0';

    struct ps_hist *slot;
    if (node->hlen == cap) { /* full: drop the oldest */
        slot = &node->ring[node->hstart];
        free(slot->text);
        node->hstart = (node->hstart + 1) % cap;
    } else {
        slot = &node->ring[(node->hstart + node->hlen) % cap];
        node->hlen++;
    }
    slot->time = time;
    slot->status = status;
    slot->text = text;
    return 1;
}

/* ---------------------------------------------------------------- the table */

uint64_t ps_node_id_hash(const char *id)
{
    return ps_fnv1a(PS_FNV_OFFSET, id, strlen(id));
}

struct ps_shard *ps_node_shard(pkgstore_policy_db *db, uint64_t hash)
{
    return &db->shards[hash % PS_NODE_SHARDS];
}

struct ps_node *ps_node_find(struct ps_shard *shard, const char *id, uint64_t hash)
{
    struct ps_node *node = shard->buckets[(hash / PS_NODE_SHARDS) & (shard->nbuckets - 1)];
    for (; node; node = node->next) {
        if (node->hash == hash && strcmp(node->id, id) == 0)
            return node;
    }
    return NULL;
}

static void shard_grow(struct ps_shard *shard)
{
    size_t nbuckets = shard->nbuckets * 2;
    struct ps_node **buckets = calloc(nbuckets, sizeof(*buckets));
    if (!buckets)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < shard->nbuckets; i++) {
        struct ps_node *node = shard->buckets[i], *next;
        for (; node; node = next) {
            next = node->next;
            size_t b = (node->hash / PS_NODE_SHARDS) & (nbuckets - 1);
            node->next = buckets[b];
            buckets[b] = node;
        }
    }
    free(shard->buckets);
    shard->buckets = buckets;
    shard->nbuckets = nbuckets;
}

struct ps_node *ps_node_insert(pkgstore_policy_db *db, struct ps_shard *shard,
                                   const char *id, uint64_t hash)
{
    size_t len = strlen(id);
    struct ps_node *node = calloc(1, sizeof(*node) + len + 1);
    if (!node)
        return NULL;
    memcpy(node->id, id, len + 1);
    node->hash = hash;
    if (shard->count >= shard->nbuckets)
        shard_grow(shard);
    size_t b = (hash / PS_NODE_SHARDS) & (shard->nbuckets - 1);
    node->next = shard->buckets[b];
    shard->buckets[b] = node;
    shard->count++;
    atomic_fetch_add(&db->node_count, 1);
    return node;
}

static void node_free(pkgstore_policy_db *db, struct ps_node *node)
{
    if (!node)
        return;
    if (node->ring) {
        for (unsigned int k = 0; k < node->hlen; k++)
            free(node->ring[(node->hstart + k) % db->history_max].text);
        free(node->ring);
    }
    free(node->report);
    free(node);
}

int ps_nodes_init(pkgstore_policy_db *db)
{
    for (size_t s = 0; s < PS_NODE_SHARDS; s++) {
        struct ps_shard *shard = &db->shards[s];
        pthread_mutex_init(&shard->lock, NULL);
        shard->nbuckets = 16;
        if (!(shard->buckets = calloc(shard->nbuckets, sizeof(*shard->buckets))))
            return ps_error_set(PKGSTORE_ENOMEM, "nodes: out of memory");
    }
    return 0;
}

static void nodes_clear(pkgstore_policy_db *db)
{
    for (size_t s = 0; s < PS_NODE_SHARDS; s++) {
        struct ps_shard *shard = &db->shards[s];
        for (size_t i = 0; shard->buckets && i < shard->nbuckets; i++) {
            struct ps_node *node = shard->buckets[i], *next;
            for (; node; node = next) {
                next = node->next;
                node_free(db, node);
            }
            shard->buckets[i] = NULL;
        }
        shard->count = 0;
    }
    atomic_store(&db->node_count, 0);
}

void ps_nodes_free(pkgstore_policy_db *db)
{
    nodes_clear(db);
    for (size_t s = 0; s < PS_NODE_SHARDS; s++) {
        free(db->shards[s].buckets);
        db->shards[s].buckets = NULL;
        pthread_mutex_destroy(&db->shards[s].lock);
    }
}

int ps_nodes_foreach(pkgstore_policy_db *db, ps_node_fn fn, void *payload)
{
    int rc = 0;
    for (size_t s = 0; s < PS_NODE_SHARDS && rc == 0; s++) {
        struct ps_shard *shard = &db->shards[s];
        pthread_mutex_lock(&shard->lock);
        for (size_t i = 0; i < shard->nbuckets && rc == 0; i++) {
            for (struct ps_node *node = shard->buckets[i]; node && rc == 0; node = node->next)
                rc = fn(node, payload);
        }
        pthread_mutex_unlock(&shard->lock);
    }
    return rc;
}

size_t pkgstore_policy_node_count(pkgstore_policy_db *db)
{
    return db ? atomic_load(&db->node_count) : 0;
}

/* ---------------------------------------------------------------- node JSON */

static json_t *time_json(int64_t seconds, int stored)
{
    char buf[32];
    if (stored)
        return json_integer((json_int_t)seconds);
    ps_policy_time_format(buf, seconds);
    return json_string(buf);
}

static json_t *hist_json(const struct ps_hist *h, int stored)
{
    return json_pack("{s:o, s:s, s:s, s:s, s:s}", "time", time_json(h->time, stored), "package",
                     h->text, "version", hist_version(h), "status",
                     pkgstore_rollout_state_name(h->status), "message", hist_message(h));
}

/* The node as JSON: stored (the index record: integer times, no computed
 * fields) or the fleet view (set non-NULL: RFC 3339 times, rollout,
 * last_status). NULL when out of memory. */
static json_t *node_json(pkgstore_policy_db *db, const struct ps_node *node,
                         const struct ps_policy_set *set, struct ps_target **targets,
                         int stored, int with_history)
{
    const struct ps_report *r = node->report;
    json_t *obj = json_object(), *labels = json_object(), *pkgs = json_array();
    int failed = !obj || !labels || !pkgs;

    for (size_t i = 0; !failed && i < r->nlabels; i++)
        failed |= json_object_set_new(labels, r->labels[i].key, json_string(r->labels[i].value));
    for (size_t i = 0; !failed && i < r->npkgs; i++) {
        const struct ps_pkg *pkg = &r->pkgs[i];
        json_t *p = json_pack("{s:s, s:s}", "name", pkg->name, "type",
                              pkgstore_package_type_name(pkg->type));
        if (p && pkg->version[0])
            json_object_set_new(p, "version", json_string(pkg->version));
        if (p && pkg->has_digest) {
            char digest[PKGSTORE_DIGEST_STR_SIZE];
            pkgstore_digest_format(digest, &pkg->digest);
            json_object_set_new(p, "digest", json_string(digest));
        }
        if (p && pkg->state[0])
            json_object_set_new(p, "state", json_string(pkg->state));
        failed |= json_array_append_new(pkgs, p);
    }
    if (failed) {
        json_decref(obj);
        json_decref(labels);
        json_decref(pkgs);
        return NULL;
    }
    failed |= json_object_set_new(obj, "id", json_string(node->id));
    failed |= json_object_set_new(obj, "labels", labels);
    failed |= json_object_set_new(obj, "platform", json_string(r->platform));
    if (r->agent_version[0])
        failed |= json_object_set_new(obj, "agent_version", json_string(r->agent_version));
    failed |= json_object_set_new(obj, "last_seen", time_json(node->last_seen, stored));
    failed |= json_object_set_new(obj, "packages", pkgs);

    if (!stored && set) {
        struct ps_slot stack_slots[16], *slots = stack_slots;
        size_t nslots = 0;
        json_t *rollout = json_array();
        if (set->count > 16 && !(slots = calloc(set->count, sizeof(*slots))))
            failed = 1;
        if (!failed && rollout) {
            ps_policy_evaluate(slots, &nslots, db, set, r, node, targets);
            /* one word for the fleet table: the primary slot's state, else
             * the first addon's, else null (no policy governs the node) */
            const struct ps_slot *headline = nslots > 0 ? &slots[0] : NULL;
            for (size_t i = 0; i < nslots; i++) {
                if (slots[i].item->policy.type == PKGSTORE_TYPE_PRIMARY) {
                    headline = &slots[i];
                    break;
                }
            }
            failed |= json_object_set_new(
                obj, "rollout_state",
                headline ? json_string(pkgstore_rollout_state_name(headline->state))
                         : json_null());
            for (size_t i = 0; i < nslots; i++) {
                const pkgstore_policy *p = &slots[i].item->policy;
                failed |= json_array_append_new(
                    rollout, json_pack("{s:s, s:s, s:s, s:s, s:s}", "policy", p->name,
                                       "package", p->package, "version", p->version, "type",
                                       pkgstore_package_type_name(p->type), "state",
                                       pkgstore_rollout_state_name(slots[i].state)));
            }
            ps_slots_release(slots, nslots);
        }
        if (slots != stack_slots)
            free(slots);
        failed |= json_object_set_new(obj, "rollout", rollout);
        if (node->hlen > 0)
            failed |= json_object_set_new(
                obj, "last_status",
                hist_json(&node->ring[(node->hstart + node->hlen - 1) % db->history_max], 0));
        else
            failed |= json_object_set_new(obj, "last_status", json_null());
    }
    if (with_history) {
        json_t *history = json_array();
        for (unsigned int k = 0; history && k < node->hlen; k++)
            failed |= json_array_append_new(
                history, hist_json(&node->ring[(node->hstart + k) % db->history_max], stored));
        failed |= json_object_set_new(obj, "history", history);
    }
    if (failed) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* ---------------------------------------------------------------- fleet view */

int pkgstore_policy_node_get_json(char **json_out, pkgstore_policy_db *db, const char *node_id)
{
    struct ps_policy_set *set;
    json_t *obj = NULL;
    int error = 0;

    if (json_out)
        *json_out = NULL;
    if (!json_out || !db || !node_id)
        return ps_error_set(PKGSTORE_EINVALID, "node_get_json: NULL argument");
    uint64_t hash = ps_node_id_hash(node_id);
    struct ps_shard *shard = ps_node_shard(db, hash);
    set = ps_policy_set_get(db);
    pthread_mutex_lock(&shard->lock);
    struct ps_node *node = ps_node_find(shard, node_id, hash);
    if (!node || !node->report)
        error = ps_error_set(PKGSTORE_ENOTFOUND, "node %.253s not found", node_id);
    else if (!(obj = node_json(db, node, set, NULL, 0, 1)))
        error = ps_error_set(PKGSTORE_ENOMEM, "node %s: out of memory", node_id);
    pthread_mutex_unlock(&shard->lock);
    ps_policy_set_release(set);
    if (obj) {
        *json_out = json_dumps(obj, JSON_COMPACT);
        json_decref(obj);
        if (!*json_out)
            error = ps_error_set(PKGSTORE_ENOMEM, "node %s: out of memory", node_id);
    }
    return error;
}

struct list_ids {
    const pkgstore_selector *selector; /* NULL: every node */
    char **ids;
    size_t count, cap;
    int failed;
};

static int collect_id(struct ps_node *node, void *payload)
{
    struct list_ids *list = payload;

    if (!node->report)
        return 0;
    if (list->selector &&
        !pkgstore_selector_matches(list->selector, node->report->labels, node->report->nlabels))
        return 0;
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 64;
        char **grown = realloc(list->ids, cap * sizeof(*grown));
        if (!grown) {
            list->failed = 1;
            return 1;
        }
        list->ids = grown;
        list->cap = cap;
    }
    if (!(list->ids[list->count] = strdup(node->id))) {
        list->failed = 1;
        return 1;
    }
    list->count++;
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int pkgstore_policy_node_query_json(char **json_out, pkgstore_policy_db *db, const char *selector,
                                    size_t offset, size_t limit, int with_history)
{
    struct list_ids list = {NULL, NULL, 0, 0, 0};
    pkgstore_selector *parsed = NULL;
    struct ps_policy_set *set = NULL;
    struct ps_target **targets = NULL;
    json_t *root = NULL, *array = NULL;
    int error = 0;

    if (json_out)
        *json_out = NULL;
    if (!json_out || !db)
        return ps_error_set(PKGSTORE_EINVALID, "node_query_json: NULL argument");
    if (selector && (error = pkgstore_selector_parse(&parsed, selector)) < 0)
        return error;
    list.selector = parsed;
    /* ids first, then JSON only for the page: a page of a big fleet stays cheap */
    ps_nodes_foreach(db, collect_id, &list);
    if (list.failed) {
        error = ps_error_set(PKGSTORE_ENOMEM, "nodes: out of memory");
        goto out;
    }
    if (list.count) /* qsort(NULL, 0) is undefined (UBSan, empty fleet) */
        qsort(list.ids, list.count, sizeof(*list.ids), cmp_id);
    set = ps_policy_set_get(db);
    if (!(targets = calloc(set->count ? set->count : 1, sizeof(*targets))) ||
        !(root = json_object()) || !(array = json_array()) ||
        json_object_set_new(root, "nodes", array) < 0 ||
        json_object_set_new(root, "total", json_integer((json_int_t)list.count)) < 0) {
        error = ps_error_set(PKGSTORE_ENOMEM, "nodes: out of memory");
        goto out;
    }
    for (size_t i = offset; i < list.count && i - offset < limit; i++) {
        uint64_t hash = ps_node_id_hash(list.ids[i]);
        struct ps_shard *shard = ps_node_shard(db, hash);
        json_t *obj = NULL;
        pthread_mutex_lock(&shard->lock);
        struct ps_node *node = ps_node_find(shard, list.ids[i], hash);
        int present = node && node->report; /* else deleted meanwhile: skip it */
        if (present)
            obj = node_json(db, node, set, targets, 0, with_history);
        pthread_mutex_unlock(&shard->lock);
        if (present && (!obj || json_array_append_new(array, obj) < 0)) {
            error = ps_error_set(PKGSTORE_ENOMEM, "nodes: out of memory");
            goto out;
        }
    }
    if (!(*json_out = json_dumps(root, JSON_COMPACT)))
        error = ps_error_set(PKGSTORE_ENOMEM, "nodes: out of memory");
out:
    for (size_t i = 0; i < list.count; i++)
        free(list.ids[i]);
    free(list.ids);
    json_decref(root);
    if (set) {
        ps_targets_release(targets, set->count);
        ps_policy_set_release(set);
    }
    free(targets);
    pkgstore_selector_free(parsed);
    return error;
}

int pkgstore_policy_node_list_json(char **json_out, pkgstore_policy_db *db, int with_history)
{
    return pkgstore_policy_node_query_json(json_out, db, NULL, 0, SIZE_MAX, with_history);
}

/* ---------------------------------------------------------------- persistence */

struct flush_item {
    char *json;
    size_t id_len; /* the key is json's "id"; kept apart for the write */
    char *id;
};

struct flush_batch {
    struct flush_item *items;
    size_t count, cap;
    int full;
    int64_t now;
    pkgstore_policy_db *db;
    int failed;
};

static int collect_node(struct ps_node *node, void *payload)
{
    struct flush_batch *batch = payload;
    int touched;

    if (!node->report)
        return 0;
    touched = node->last_seen != node->persisted_seen &&
              (batch->full || node->last_seen - node->persisted_seen >= PS_NODE_TOUCH_S);
    if (!node->dirty && !touched)
        return 0;
    if (batch->count == PS_FLUSH_BATCH)
        return 1; /* write this batch, then look again */
    if (batch->count == batch->cap) {
        size_t cap = batch->cap ? batch->cap * 2 : 256;
        struct flush_item *grown = realloc(batch->items, cap * sizeof(*grown));
        if (!grown) {
            batch->failed = 1;
            return 1;
        }
        batch->items = grown;
        batch->cap = cap;
    }
    json_t *obj = node_json(batch->db, node, NULL, NULL, 1, 1);
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    char *id = strdup(node->id);
    json_decref(obj);
    if (!text || !id) {
        free(text);
        free(id);
        batch->failed = 1;
        return 1;
    }
    batch->items[batch->count].json = text;
    batch->items[batch->count].id = id;
    batch->items[batch->count].id_len = strlen(id);
    batch->count++;
    node->dirty = 0;
    node->persisted_seen = node->last_seen;
    return 0;
}

static int flush_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct flush_batch *batch = payload;
    MDB_dbi dbi = ps_index_dbi(index, PS_DB_NODES);
    for (size_t i = 0; i < batch->count; i++) {
        MDB_val key = {batch->items[i].id_len, batch->items[i].id};
        MDB_val val = {strlen(batch->items[i].json), batch->items[i].json};
        int rc = mdb_put(txn, dbi, &key, &val, 0);
        if (rc != 0)
            return ps_index_error(rc, "writing node %s", batch->items[i].id);
    }
    return 0;
}

static void mark_dirty(pkgstore_policy_db *db, const char *id)
{
    uint64_t hash = ps_node_id_hash(id);
    struct ps_shard *shard = ps_node_shard(db, hash);
    pthread_mutex_lock(&shard->lock);
    struct ps_node *node = ps_node_find(shard, id, hash);
    if (node)
        node->dirty = 1;
    pthread_mutex_unlock(&shard->lock);
}

static int nodes_flush(pkgstore_policy_db *db, int full)
{
    struct flush_batch batch;
    size_t written = 0;
    int error = 0, more = 1;

    memset(&batch, 0, sizeof(batch));
    batch.full = full;
    batch.db = db;
    pthread_mutex_lock(&db->flush_lock);
    /* Bounded batches keep the memory of a flush small with many nodes;
     * collected nodes are clean, so each pass finds only the rest. */
    while (more && error == 0) {
        batch.count = 0;
        more = ps_nodes_foreach(db, collect_node, &batch) != 0 && !batch.failed;
        if (batch.count > 0 && (error = ps_index_write(db->index, flush_txn, &batch)) < 0) {
            for (size_t i = 0; i < batch.count; i++)
                mark_dirty(db, batch.items[i].id);
        }
        if (batch.failed && error == 0) /* what was collected is written */
            error = ps_error_set(PKGSTORE_ENOMEM, "nodes: out of memory while flushing");
        for (size_t i = 0; i < batch.count; i++) {
            free(batch.items[i].json);
            free(batch.items[i].id);
        }
        written += batch.count;
    }
    pthread_mutex_unlock(&db->flush_lock);
    free(batch.items);
#ifdef __GLIBC__
    if (written >= PS_FLUSH_BATCH)
        malloc_trim(0); /* give the serialisation buffers back to the system */
#endif
    return error;
}

int pkgstore_policy_flush(pkgstore_policy_db *db)
{
    if (!db)
        return ps_error_set(PKGSTORE_EINVALID, "policy_flush: NULL handle");
    return nodes_flush(db, 1);
}

static void *flusher_main(void *arg)
{
    pkgstore_policy_db *db = arg;
    pthread_mutex_lock(&db->flusher_lock);
    while (!db->flusher_stop) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += db->flush_interval_ms / 1000;
        deadline.tv_nsec += (long)(db->flush_interval_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&db->flusher_cond, &db->flusher_lock, &deadline);
        if (db->flusher_stop)
            break;
        pthread_mutex_unlock(&db->flusher_lock);
        nodes_flush(db, 0); /* a failure leaves the nodes dirty for the next round */
        pthread_mutex_lock(&db->flusher_lock);
    }
    pthread_mutex_unlock(&db->flusher_lock);
    return NULL;
}

int ps_flusher_start(pkgstore_policy_db *db)
{
    int rc = pthread_create(&db->flusher, NULL, flusher_main, db);
    if (rc != 0)
        return ps_error_errno(rc, "nodes: starting the flusher thread");
    db->flusher_running = 1;
    return 0;
}

void ps_flusher_stop(pkgstore_policy_db *db)
{
    if (!db->flusher_running)
        return;
    pthread_mutex_lock(&db->flusher_lock);
    db->flusher_stop = 1;
    pthread_cond_signal(&db->flusher_cond);
    pthread_mutex_unlock(&db->flusher_lock);
    pthread_join(db->flusher, NULL);
    db->flusher_running = 0;
}

/* Install a stored node record (parsed as a heartbeat plus last_seen and
 * history). Records that do not parse are skipped: a node re-registers on
 * its next heartbeat, so one bad record must not keep the server down. */
static void load_node(pkgstore_policy_db *db, const char *data, size_t len)
{
    struct ps_hb *hb = malloc(sizeof(*hb));
    json_t *root = json_loadb(data, len, 0, NULL), *history;
    struct ps_report *report = NULL;

    if (!hb || !root || ps_hb_parse(hb, root, 1) < 0 || !(report = ps_report_build(hb)))
        goto out;
    uint64_t hash = ps_node_id_hash(hb->node_id);
    struct ps_shard *shard = ps_node_shard(db, hash);
    struct ps_node *node = ps_node_find(shard, hb->node_id, hash);
    if (node || !(node = ps_node_insert(db, shard, hb->node_id, hash)))
        goto out;
    node->report = report;
    report = NULL; /* now owned by the node */
    node->last_seen = (int64_t)json_integer_value(json_object_get(root, "last_seen"));
    node->persisted_seen = node->last_seen;
    history = json_object_get(root, "history");
    for (size_t i = 0; i < json_array_size(history); i++) {
        json_t *h = json_array_get(history, i);
        pkgstore_rollout_state status;
        const char *package = json_string_value(json_object_get(h, "package"));
        const char *status_str = json_string_value(json_object_get(h, "status"));
        if (!package || !status_str || pkgstore_rollout_state_parse(&status, status_str) < 0)
            continue;
        ps_hist_append(db, node, (int64_t)json_integer_value(json_object_get(h, "time")), package,
                    json_string_value(json_object_get(h, "version")), status,
                    json_string_value(json_object_get(h, "message")));
    }
out:
    free(report);
    json_decref(root);
    free(hb);
}

static int load_nodes_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    pkgstore_policy_db *db = payload;
    MDB_cursor *cursor = NULL;
    MDB_val key, val;
    int rc, error = 0;

    nodes_clear(db);
    if ((rc = mdb_cursor_open(txn, ps_index_dbi(index, PS_DB_NODES), &cursor)) != 0)
        return ps_index_error(rc, "opening a cursor over the nodes");
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT))
        load_node(db, val.mv_data, val.mv_size);
    if (rc != MDB_NOTFOUND)
        error = ps_index_error(rc, "reading the nodes");
    mdb_cursor_close(cursor);
    return error;
}

int ps_nodes_load(pkgstore_policy_db *db)
{
    /* single-threaded at open: no shard locks needed */
    return ps_index_read(db->index, load_nodes_txn, db);
}

static int node_delete_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    const char *id = payload;
    MDB_val key = {strlen(id), (void *)id};
    int rc = mdb_del(txn, ps_index_dbi(index, PS_DB_NODES), &key, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return ps_index_error(rc, "deleting node %s", id);
    return 0;
}

int pkgstore_policy_node_delete(pkgstore_policy_db *db, const char *node_id)
{
    int error = 0;

    if (!db || !node_id)
        return ps_error_set(PKGSTORE_EINVALID, "node_delete: NULL argument");
    uint64_t hash = ps_node_id_hash(node_id);
    struct ps_shard *shard = ps_node_shard(db, hash);
    pthread_mutex_lock(&db->flush_lock);
    pthread_mutex_lock(&shard->lock);
    int known = ps_node_find(shard, node_id, hash) != NULL;
    pthread_mutex_unlock(&shard->lock);
    if (!known) {
        error = ps_error_set(PKGSTORE_ENOTFOUND, "node %.253s not found", node_id);
        goto out;
    }
    if ((error = ps_index_write(db->index, node_delete_txn, (void *)node_id)) < 0)
        goto out;
    pthread_mutex_lock(&shard->lock);
    struct ps_node **link = &shard->buckets[(hash / PS_NODE_SHARDS) & (shard->nbuckets - 1)];
    for (; *link; link = &(*link)->next) {
        if ((*link)->hash == hash && strcmp((*link)->id, node_id) == 0) {
            struct ps_node *node = *link;
            *link = node->next;
            shard->count--;
            atomic_fetch_sub(&db->node_count, 1);
            node_free(db, node);
            break;
        }
    }
    pthread_mutex_unlock(&shard->lock);
out:
    pthread_mutex_unlock(&db->flush_lock);
    return error;
}

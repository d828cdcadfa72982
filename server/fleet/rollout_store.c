/*
 * server/fleet/rollout_store.c - the rollouts on disk: one record per
 * policy in the fleet's LMDB environment (database "rollouts"), the
 * append-only audit log (database "audit", keyed by a big-endian sequence
 * number, so that LMDB's order is time order), reading them at open, and
 * installing a written record in memory.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../server.h"
#include "rollout_impl.h"

static const char *const ro_state_names[FL_RO_COUNT] = {"running", "soaking", "paused", "done",
                                                        "aborted"};

const char *fl_rollout_state_name(int state)
{
    return state >= 0 && state < FL_RO_COUNT ? ro_state_names[state] : "unknown";
}

struct fl_rollout *fl_ro_find(struct fl_rollouts *ro, const char *policy)
{
    for (size_t i = 0; i < ro->count; i++) {
        if (strcmp(ro->items[i]->policy, policy) == 0)
            return ro->items[i];
    }
    return NULL;
}

static json_t *record_json(const struct fl_rollout *r)
{
    json_t *limits = json_array(), *acked = json_array();
    for (size_t j = 0; limits && acked && j <= r->batch && j < PKGSTORE_ROLLOUT_BATCHES_MAX; j++) {
        char text[24];
        /* as text: JSON integers are signed 64-bit */
        snprintf(text, sizeof(text), "%016" PRIx64, r->limit[j]);
        json_array_append_new(limits, json_string(text));
        json_array_append_new(acked, json_integer((json_int_t)r->acked[j]));
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:b, s:o, s:o, s:I, s:I, s:I, "
                     "s:I, s:s}",
                     "policy", r->policy, "package", r->package, "version", r->version, "previous",
                     r->previous, "revert_from", r->revert_from, "state",
                     fl_rollout_state_name(r->state), "paused_auto", r->paused_auto, "batch",
                     (json_int_t)r->batch, "all", r->all, "limits", limits, "acked", acked,
                     "started", (json_int_t)r->started, "batch_started",
                     (json_int_t)r->batch_started, "settled_at", (json_int_t)r->settled_at,
                     "changed", (json_int_t)r->changed, "reason", r->reason);
}

static int copy_member(char *out, size_t size, json_t *root, const char *key)
{
    const char *value = json_string_value(json_object_get(root, key));
    if (!value || strlen(value) >= size)
        return -1;
    memcpy(out, value, strlen(value) + 1);
    return 0;
}

static int record_parse(struct fl_rollout *r, const void *data, size_t len)
{
    json_t *root = json_loadb(data, len, 0, NULL);
    int failed = !root;
    char state[16] = "";
    memset(r, 0, sizeof(*r));
    failed = failed || copy_member(r->policy, sizeof(r->policy), root, "policy") < 0 ||
             copy_member(r->package, sizeof(r->package), root, "package") < 0 ||
             copy_member(r->version, sizeof(r->version), root, "version") < 0 ||
             copy_member(r->previous, sizeof(r->previous), root, "previous") < 0 ||
             copy_member(r->revert_from, sizeof(r->revert_from), root, "revert_from") < 0 ||
             copy_member(state, sizeof(state), root, "state") < 0 ||
             copy_member(r->reason, sizeof(r->reason), root, "reason") < 0;
    r->state = -1;
    for (int s = 0; !failed && s < FL_RO_COUNT; s++) {
        if (strcmp(state, ro_state_names[s]) == 0)
            r->state = s;
    }
    json_t *limits = json_object_get(root, "limits"), *acked = json_object_get(root, "acked");
    r->batch = (size_t)json_integer_value(json_object_get(root, "batch"));
    failed = failed || r->state < 0 || r->batch >= PKGSTORE_ROLLOUT_BATCHES_MAX ||
             json_array_size(limits) != r->batch + 1 || json_array_size(acked) != r->batch + 1;
    for (size_t j = 0; !failed && j <= r->batch; j++) {
        const char *text = json_string_value(json_array_get(limits, j));
        char *end;
        r->limit[j] = text ? strtoull(text, &end, 16) : 0;
        failed = !text || *end != '\0';
        r->acked[j] = (uint64_t)json_integer_value(json_array_get(acked, j));
    }
    if (!failed) {
        r->paused_auto = json_is_true(json_object_get(root, "paused_auto"));
        r->all = json_is_true(json_object_get(root, "all"));
        r->started = json_integer_value(json_object_get(root, "started"));
        r->batch_started = json_integer_value(json_object_get(root, "batch_started"));
        r->settled_at = json_integer_value(json_object_get(root, "settled_at"));
        r->changed = json_integer_value(json_object_get(root, "changed"));
    }
    json_decref(root);
    return failed ? -1 : 0;
}

/* Write r (or delete the record of policy when r is NULL) and one audit
 * entry, in one transaction. The caller holds the write lock (not the
 * rollouts' rwlock: a heartbeat takes that one under its shard lock, and
 * the flusher takes shard locks under the flush lock taken here). */
int fl_ro_persist(fleet *f, const char *policy, const struct fl_rollout *r, const char *who,
                  const char *action, const char *why, fleet_error *err)
{
    return fl_ro_persist_entry(f, policy, r, 1, who, action, why, NULL, err);
}

/* fl_ro_persist() with touch_record 0: the audit entry only (version for it). */
int fl_ro_persist_entry(fleet *f, const char *policy, const struct fl_rollout *r, int touch_record,
                        const char *who, const char *action, const char *why, const char *version,
                        fleet_error *err)
{
    struct fl_rollouts *ro = f->rollouts;
    MDB_txn *txn = NULL;
    char *text = NULL, *entry_text = NULL;
    json_t *obj = r ? record_json(r) : NULL;
    int rc;

    if ((r && !obj) || (r && !(text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS)))) {
        json_decref(obj);
        return fl_fail(err, PKGSTORE_ENOMEM, "rollout %s: out of memory", policy);
    }
    json_decref(obj);
    uint64_t seq = ro->audit_seq + 1;
    json_t *entry = json_pack("{s:I, s:I, s:s, s:s, s:s, s:s}", "seq", (json_int_t)seq, "time",
                              (json_int_t)time(NULL), "who", who ? who : "pkgstored", "policy",
                              policy, "action", action, "reason", why ? why : "");
    if (entry && version)
        json_object_set_new(entry, "version", json_string(version));
    if (entry && r) {
        json_object_set_new(entry, "version", json_string(r->version));
        json_object_set_new(entry, "state", json_string(fl_rollout_state_name(r->state)));
        json_object_set_new(entry, "batch", json_integer((json_int_t)r->batch + 1));
    }
    entry_text = entry ? json_dumps(entry, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(entry);
    if (!entry_text) {
        free(text);
        return fl_fail(err, PKGSTORE_ENOMEM, "rollout %s: out of memory", policy);
    }
    unsigned char seq_key[8];
    for (int i = 0; i < 8; i++)
        seq_key[i] =
            (unsigned char)(seq >> (56 - 8 * i)); /* big-endian: LMDB order is time order */
    MDB_val key = {strlen(policy), (void *)policy}, val = {text ? strlen(text) : 0, text};
    MDB_val akey = {8, seq_key}, aval = {strlen(entry_text), entry_text};
    /* the flush lock serialises this process's transactions with the
     * flusher's, which may grow the map (no transaction may be open then) */
    pthread_mutex_lock(&f->flush_lock);
    for (;;) {
        if ((rc = mdb_txn_begin(f->env, NULL, 0, &txn)) == 0) {
            if (!touch_record)
                rc = 0;
            else if (r)
                rc = mdb_put(txn, ro->dbi, &key, &val, 0);
            else if ((rc = mdb_del(txn, ro->dbi, &key, NULL)) == MDB_NOTFOUND)
                rc = 0;
            if (rc == 0)
                rc = mdb_put(txn, ro->audit_dbi, &akey, &aval, MDB_APPEND);
            if (rc == 0)
                rc = mdb_txn_commit(txn);
            else
                mdb_txn_abort(txn);
        }
        if (rc == MDB_MAP_FULL && f->map_size < ((size_t)64 << 30)) {
            f->map_size *= 2;
            if ((rc = mdb_env_set_mapsize(f->env, f->map_size)) == 0)
                continue;
        }
        break;
    }
    pthread_mutex_unlock(&f->flush_lock);
    free(text);
    free(entry_text);
    if (rc != 0)
        return fl_fail(err, PKGSTORE_EIO, "rollout %s: writing its state to the fleet: lmdb: %s",
                       policy, mdb_strerror(rc));
    ro->audit_seq = seq;
    return 0;
}

/* ---------------------------------------------------------------- open, close */

int fl_rollouts_open(fleet *f, MDB_txn *txn, fleet_error *err)
{
    struct fl_rollouts *ro = calloc(1, sizeof(*ro));
    MDB_cursor *cursor = NULL;
    MDB_val key, val;
    int rc;

    if (!ro)
        return fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
    pthread_rwlock_init(&ro->lock, NULL);
    pthread_mutex_init(&ro->write_lock, NULL);
    pthread_mutex_init(&ro->wake_lock, NULL);
    pthread_cond_init(&ro->wake, NULL);
    f->rollouts = ro;
    if ((rc = mdb_dbi_open(txn, "rollouts", MDB_CREATE, &ro->dbi)) != 0 ||
        (rc = mdb_dbi_open(txn, "audit", MDB_CREATE, &ro->audit_dbi)) != 0)
        return fl_fail(err, PKGSTORE_EIO, "fleet %s: opening the rollout databases: lmdb: %s",
                       f->opts.dir, mdb_strerror(rc));
    if ((rc = mdb_cursor_open(txn, ro->audit_dbi, &cursor)) == 0) {
        if (mdb_cursor_get(cursor, &key, &val, MDB_LAST) == 0 && key.mv_size == 8) {
            for (int i = 0; i < 8; i++)
                ro->audit_seq = (ro->audit_seq << 8) | ((unsigned char *)key.mv_data)[i];
        }
        mdb_cursor_close(cursor);
    }
    if ((rc = mdb_cursor_open(txn, ro->dbi, &cursor)) != 0)
        return fl_fail(err, PKGSTORE_EIO, "fleet %s: reading the rollouts: lmdb: %s", f->opts.dir,
                       mdb_strerror(rc));
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        struct fl_rollout *r = malloc(sizeof(*r));
        if (!r || (ro->count == ro->cap &&
                   !(ro->items = realloc(ro->items, (ro->cap = ro->cap ? ro->cap * 2 : 8) *
                                                        sizeof(*ro->items))))) {
            free(r);
            mdb_cursor_close(cursor);
            return fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
        }
        if (record_parse(r, val.mv_data, val.mv_size) < 0) {
            free(r);
            mdb_cursor_close(cursor);
            return fl_fail(err, PKGSTORE_ECORRUPT,
                           "fleet %s: rollout record '%.*s' does not parse (delete the fleet "
                           "directory's rollouts to start the rollouts over)",
                           f->opts.dir, (int)(key.mv_size > 128 ? 128 : key.mv_size),
                           (const char *)key.mv_data);
        }
        ro->items[ro->count++] = r;
    }
    mdb_cursor_close(cursor);
    return 0;
}

void fl_rollouts_free(fleet *f)
{
    struct fl_rollouts *ro = f->rollouts;
    if (!ro)
        return;
    for (size_t i = 0; i < ro->count; i++)
        free(ro->items[i]);
    free(ro->items);
    pthread_rwlock_destroy(&ro->lock);
    pthread_mutex_destroy(&ro->write_lock);
    pthread_mutex_destroy(&ro->wake_lock);
    pthread_cond_destroy(&ro->wake);
    free(ro);
    f->rollouts = NULL;
}

/* Put r in place of the record of r->policy (or add fresh, allocated by
 * the caller, when there is none), as generation gen; the max_parallel
 * counters stay. The write lock is held. */
int fl_ro_install(struct fl_rollouts *ro, const struct fl_rollout *r, struct fl_rollout *fresh,
                  uint64_t gen, fleet_error *err)
{
    int error = 0;
    pthread_rwlock_wrlock(&ro->lock);
    struct fl_rollout *current = fl_ro_find(ro, r->policy);
    if (current) {
        uint64_t active_now = current->active_now, offers = current->offers;
        *current = *r;
        current->active_now = active_now;
        current->offers = offers;
        current->generation = gen;
        free(fresh);
    } else if (!fresh) {
        error = fl_fail(err, PKGSTORE_EINTERNAL, "rollout %s: no record", r->policy);
    } else {
        if (ro->count == ro->cap) {
            size_t cap = ro->cap ? ro->cap * 2 : 8;
            struct fl_rollout **grown = realloc(ro->items, cap * sizeof(*grown));
            if (!grown) {
                pthread_rwlock_unlock(&ro->lock);
                free(fresh);
                return fl_fail(err, PKGSTORE_ENOMEM, "rollout: out of memory");
            }
            ro->items = grown;
            ro->cap = cap;
        }
        *fresh = *r;
        fresh->generation = gen;
        fresh->active_now = fresh->offers = 0;
        ro->items[ro->count++] = fresh;
    }
    pthread_rwlock_unlock(&ro->lock);
    return error;
}

void fl_ro_log(const char *policy, const char *action, const struct fl_rollout *r, const char *why)
{
    char q[300], w[1400];
    log_msg(strcmp(action, "auto-pause") == 0 ? LOG_WARN : LOG_INFO, "rollout",
            "policy=%s action=%s state=%s batch=%zu version=%s why=%s",
            log_quote(q, sizeof(q), policy), action, fl_rollout_state_name(r->state), r->batch + 1,
            r->version, log_quote(w, sizeof(w), why));
}

/* ---------------------------------------------------------------- the audit log */

int fleet_audit_append(fleet *f, const char *who, const char *policy, const char *action,
                       const char *version, const char *why, fleet_error *err)
{
    struct fl_rollouts *ro = f->rollouts;
    int error;
    if (!ro)
        return 0;
    pthread_mutex_lock(&ro->write_lock);
    error = fl_ro_persist_entry(f, policy, NULL, 0, who, action, why, version, err);
    pthread_mutex_unlock(&ro->write_lock);
    return error;
}

int fleet_audit_json(json_t **out, fleet *f, const char *policy, size_t limit, fleet_error *err)
{
    struct fl_rollouts *ro = f->rollouts;
    MDB_txn *txn = NULL;
    MDB_cursor *cursor = NULL;
    MDB_val key, val;
    json_t *entries = json_array();
    int rc;

    *out = NULL;
    if (!entries)
        return fl_fail(err, PKGSTORE_ENOMEM, "audit: out of memory");
    if (limit == 0 || limit > RO_AUDIT_MAX)
        limit = limit ? RO_AUDIT_MAX : 100;
    pthread_mutex_lock(&f->flush_lock); /* no transaction may be open while the map grows */
    if ((rc = mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn)) != 0 ||
        (rc = mdb_cursor_open(txn, ro->audit_dbi, &cursor)) != 0) {
        if (txn)
            mdb_txn_abort(txn);
        pthread_mutex_unlock(&f->flush_lock);
        json_decref(entries);
        return fl_fail(err, PKGSTORE_EIO, "audit: lmdb: %s", mdb_strerror(rc));
    }
    /* newest first, then reversed: the last `limit` entries, oldest first */
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_LAST);
         rc == 0 && json_array_size(entries) < limit;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_PREV)) {
        json_t *entry = json_loadb(val.mv_data, val.mv_size, 0, NULL);
        if (!entry)
            continue;
        const char *entry_policy = json_string_value(json_object_get(entry, "policy"));
        if (policy && (!entry_policy || strcmp(entry_policy, policy) != 0)) {
            json_decref(entry);
            continue;
        }
        json_t *seconds = json_object_get(entry, "time");
        char when[32];
        fleet_time_format(when, (int64_t)json_integer_value(seconds));
        json_object_set_new(entry, "time", json_string(when));
        json_array_insert_new(entries, 0, entry);
    }
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    pthread_mutex_unlock(&f->flush_lock);
    *out = json_pack("{s:o}", "entries", entries);
    return *out ? 0 : fl_fail(err, PKGSTORE_ENOMEM, "audit: out of memory");
}

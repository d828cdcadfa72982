/*
 * server/fleet/heartbeat.c - one heartbeat: parse the body strictly, record
 * the node (bounded by the node cap and the new-node rate per credential),
 * append its statuses to its history, evaluate it against the policies and
 * write the reply:
 *
 *   {"heartbeat_interval_s":30,
 *    "offers":[{"policy":"P","retry":0,<the offer's members>}],
 *    "targets":[{"name","type","version","policy","state"[,"digest"][,"reason"]
 *                [,"config_digest","retry"[,"config"]]}]}
 *
 * "targets" names every slot a policy governs, offered or not: an agent
 * keeps an installed addon while a target names it (docs/api.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fleet_impl.h"

/* ---------------------------------------------------------------- new-node rate */

/* Take one new-node token of credential; 0 when there is none (then
 * *retry_s says when there will be). */
static int take_new_node_token(fleet *f, uint64_t credential, unsigned int *retry_s)
{
    double rate = f->opts.new_nodes_per_s, burst = f->opts.new_nodes_burst;
    int64_t now = fl_now_ms();
    int granted = 0;

    if (rate <= 0)
        return 1; /* unlimited */
    pthread_mutex_lock(&f->rate_lock);
    struct fl_bucket *bucket = NULL;
    for (size_t i = 0; i < f->nbuckets && !bucket; i++) {
        if (f->buckets[i].credential == credential)
            bucket = &f->buckets[i];
    }
    if (!bucket) {
        /* one bucket per credential that ever added a node: bounded by the
         * tokens the server accepts */
        struct fl_bucket *grown = realloc(f->buckets, (f->nbuckets + 1) * sizeof(*grown));
        if (grown) {
            f->buckets = grown;
            bucket = &f->buckets[f->nbuckets++];
            bucket->credential = credential;
            bucket->tokens = burst;
            bucket->refilled_ms = now;
        }
    }
    if (bucket) {
        bucket->tokens += (double)(now - bucket->refilled_ms) / 1000.0 * rate;
        if (bucket->tokens > burst)
            bucket->tokens = burst;
        bucket->refilled_ms = now;
        if (bucket->tokens >= 1.0) {
            bucket->tokens -= 1.0;
            granted = 1;
        } else {
            *retry_s = (unsigned int)((1.0 - bucket->tokens) / rate) + 1;
        }
    }
    pthread_mutex_unlock(&f->rate_lock);
    return granted;
}

/* ---------------------------------------------------------------- recording */

/* Record hb as node: find or add it, swap its profile when the report
 * changed, append statuses. *profile_out receives a reference to the
 * node's profile for the evaluation. */
static int record(struct fl_profile **profile_out, fleet *f, const struct fl_hb *hb,
                  uint64_t credential, fleet_error *err)
{
    uint64_t hash = fl_node_hash(hb->node_id), report_hash = fl_hb_hash(hb);
    struct fl_shard *shard = fl_shard_of(f, hash);
    int64_t now = (int64_t)time(NULL);
    int error = 0;

    *profile_out = NULL;
    pthread_mutex_lock(&shard->lock);
    struct fl_node *node = fl_node_find(shard, hb->node_id, hash);
    if (!node) {
        unsigned int retry_s = 0;
        /* Take a place under the cap first, in one step: new nodes of other
         * shards, added meanwhile, see it taken. */
        size_t count = atomic_load(&f->node_count);
        do {
            if (count >= f->opts.max_nodes) {
                pthread_mutex_unlock(&shard->lock);
                atomic_fetch_add(&f->nodes_refused, 1);
                error = fl_fail(err, PKGSTORE_ELIMIT,
                                "node %s: the fleet is full (%zu nodes, the --max-nodes limit)",
                                hb->node_id, f->opts.max_nodes);
                err->http_status = 503;
                err->retry_after_s = 3600;
                return error;
            }
        } while (!atomic_compare_exchange_weak(&f->node_count, &count, count + 1));
        if (!take_new_node_token(f, credential, &retry_s)) {
            atomic_fetch_sub(&f->node_count, 1);
            pthread_mutex_unlock(&shard->lock);
            atomic_fetch_add(&f->nodes_throttled, 1);
            error = fl_fail(err, PKGSTORE_ELIMIT,
                            "node %s: too many new nodes from this credential (%.4g per second, "
                            "burst %u); retry later",
                            hb->node_id, f->opts.new_nodes_per_s, f->opts.new_nodes_burst);
            err->http_status = 429;
            err->retry_after_s = retry_s;
            return error;
        }
        if (!(node = fl_node_insert(shard, hb->node_id, hash))) {
            atomic_fetch_sub(&f->node_count, 1);
            pthread_mutex_unlock(&shard->lock);
            return fl_fail(err, PKGSTORE_ENOMEM, "heartbeat: out of memory");
        }
    }
    if (!fl_profile_matches(node->profile, hb, report_hash)) {
        struct fl_profile *profile = fl_profile_intern(f, hb, report_hash);
        if (!profile) {
            pthread_mutex_unlock(&shard->lock);
            return fl_fail(err, PKGSTORE_ENOMEM, "heartbeat: out of memory");
        }
        fl_node_set_profile(f, node, profile);
        fl_node_mark_dirty(f, node);
    }
    node->last_seen = now;
    for (size_t i = 0; i < hb->npkgs && error == 0; i++) {
        const struct fl_hb_pkg *pkg = &hb->pkgs[i];
        if (!pkg->has_status)
            continue;
        int rc = fl_hist_append(f, node, now, pkg->name,
                                pkg->offer_version ? pkg->offer_version : pkg->version,
                                pkg->status, pkg->message);
        if (rc < 0)
            error = fl_fail(err, PKGSTORE_ENOMEM, "heartbeat: out of memory");
        else if (rc > 0)
            fl_node_mark_dirty(f, node);
    }
    if (error == 0) {
        fl_profile_acquire(f, node->profile);
        *profile_out = node->profile;
    }
    pthread_mutex_unlock(&shard->lock);
    return error;
}

/* With the node's history: the states of the decisions that offer. */
static void restate(fleet *f, struct fl_eval *eval, const char *id)
{
    uint64_t hash = fl_node_hash(id);
    struct fl_shard *shard = fl_shard_of(f, hash);
    pthread_mutex_lock(&shard->lock);
    struct fl_node *node = fl_node_find(shard, id, hash);
    for (size_t i = 0; node && i < eval->count; i++)
        eval->states[i] = fl_decision_state(&eval->decisions[i], node);
    if (node)
        fl_rollout_gate(f, eval, node, 1); /* a staged rollout may hold an offer back */
    pthread_mutex_unlock(&shard->lock);
}

/* ---------------------------------------------------------------- the reply */

/* Why a slot gets no offer (other than running it already), or NULL. */
static const char *reason_for(char *buf, size_t size, const pkgstore_decision *d,
                              const struct fl_profile *profile)
{
    switch (d->verdict) {
    case PKGSTORE_VERDICT_INCOMPATIBLE:
        snprintf(buf, size, "no artifact of %s %s for %s", pkgstore_policy_package(d->policy),
                 pkgstore_policy_version(d->policy), profile->platform);
        return buf;
    case PKGSTORE_VERDICT_UNMET: {
        const char *runs = NULL;
        for (size_t i = 0; i < profile->npkgs && !runs; i++) {
            if (strcmp(profile->pkgs[i].name, d->unmet->name) == 0)
                runs = profile->pkgs[i].version;
        }
        if (runs && *runs)
            snprintf(buf, size, "needs %s %s; the node runs %s", d->unmet->name,
                     d->unmet->constraint, runs);
        else
            snprintf(buf, size, "needs %s %s; the node does not run it", d->unmet->name,
                     d->unmet->constraint);
        return buf;
    }
    case PKGSTORE_VERDICT_UNRESOLVED: {
        snprintf(buf, size, "%s %s cannot be read: %s", pkgstore_policy_package(d->policy),
                 pkgstore_policy_version(d->policy), pkgstore_strerror(d->error));
        return buf;
    }
    case PKGSTORE_VERDICT_OFFER:
    case PKGSTORE_VERDICT_CURRENT:
        break;
    }
    return NULL;
}

/* An addon's configuration from its policy: "config_digest" and "retry"
 * always, and the body ("config") only to a node that runs the version
 * (CURRENT) or is offered it now, and did not report that digest applied
 * (nor refused it under the policy's retry generation), so that the reply
 * of a node in step, or of one that rolled the configuration back, stays
 * small (docs/api.md). 0, or -1 out of memory. */
static int target_config(json_t *t, const pkgstore_decision *d, pkgstore_rollout_state state,
                         const struct fl_profile *profile)
{
    const char *config = pkgstore_policy_config(d->policy);
    pkgstore_digest digest;
    if (!config || pkgstore_policy_config_digest(&digest, d->policy) < 0)
        return 0;
    char text[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest_format(text, &digest);
    if (json_object_set_new(t, "config_digest", json_string(text)) < 0 ||
        json_object_set_new(t, "retry",
                            json_integer((json_int_t)pkgstore_policy_retry_generation(
                                d->policy))) < 0)
        return -1;
    if (d->verdict != PKGSTORE_VERDICT_CURRENT &&
        (d->verdict != PKGSTORE_VERDICT_OFFER || state == PKGSTORE_ROLLOUT_WAITING))
        return 0;
    for (size_t i = 0; i < profile->npkgs; i++) {
        const struct fl_pkg *pkg = &profile->pkgs[i];
        if (strcmp(pkg->name, pkgstore_policy_package(d->policy)) != 0)
            continue;
        const struct fl_pkg_config *c = pkg->config;
        if (c && c->has_config && pkgstore_digest_equal(&c->config_digest, &digest))
            return 0; /* applied */
        if (c && c->has_refused && pkgstore_digest_equal(&c->refused_digest, &digest) &&
            c->refused_retry >= pkgstore_policy_retry_generation(d->policy))
            return 0; /* rolled back: it is not applied again until the retry rises */
    }
    json_t *body = json_loads(config, 0, NULL);
    return body && json_object_set_new(t, "config", body) == 0 ? 0 : -1;
}

static json_t *targets_json(const struct fl_eval *eval, const struct fl_profile *profile)
{
    json_t *targets = json_array();
    for (size_t i = 0; targets && i < eval->count; i++) {
        const pkgstore_decision *d = &eval->decisions[i];
        char reason[512], digest[PKGSTORE_DIGEST_STR_SIZE];
        json_t *t = json_pack("{s:s, s:s, s:s, s:s, s:s}", "name",
                              pkgstore_policy_package(d->policy), "type",
                              pkgstore_package_type_name(pkgstore_policy_type(d->policy)),
                              "version", pkgstore_policy_version(d->policy), "policy",
                              pkgstore_policy_name(d->policy), "state",
                              pkgstore_rollout_state_name(eval->states[i]));
        if (t && d->artifact) {
            pkgstore_digest_format(digest, &d->artifact->digest);
            json_object_set_new(t, "digest", json_string(digest));
        }
        const char *why = reason_for(reason, sizeof(reason), d, profile);
        if (eval->states[i] == PKGSTORE_ROLLOUT_WAITING) {
            snprintf(reason, sizeof(reason), "the staged rollout of policy %s has not reached "
                     "this node", pkgstore_policy_name(d->policy));
            why = reason;
        }
        if (t && why)
            json_object_set_new(t, "reason", json_string(why));
        if (t && target_config(t, d, eval->states[i], profile) < 0) {
            json_decref(t);
            t = NULL;
        }
        if (!t || json_array_append_new(targets, t) < 0) {
            json_decref(targets);
            return NULL;
        }
    }
    return targets;
}

/* The reply text, by hand around the cached offer members: no JSON tree is
 * built for the offers of a heartbeat. */
static int reply_build(char **out, size_t *len_out, fleet *f, const struct fl_eval *eval,
                       const struct fl_profile *profile, struct fl_lookup *lookup,
                       fleet_error *err)
{
    const char **members = calloc(eval->count ? eval->count : 1, sizeof(*members));
    json_t *targets = targets_json(eval, profile);
    char *targets_text = targets ? json_dumps(targets, JSON_COMPACT) : NULL;
    char head[64];
    size_t head_len, total;
    int error = 0;

    json_decref(targets);
    if (!targets_text || !members) {
        error = fl_fail(err, PKGSTORE_ENOMEM, "heartbeat: out of memory");
        goto out;
    }
    head_len = (size_t)snprintf(head, sizeof(head), "{\"heartbeat_interval_s\":%u,\"offers\":[",
                                f->opts.heartbeat_interval_s);
    total = head_len + sizeof("],\"targets\":}") + strlen(targets_text);
    for (size_t i = 0; i < eval->count; i++) {
        const pkgstore_decision *d = &eval->decisions[i];
        members[i] = NULL;
        if (d->verdict != PKGSTORE_VERDICT_OFFER || eval->states[i] == PKGSTORE_ROLLOUT_WAITING)
            continue;
        struct fl_target *target = fl_lookup_target(lookup, d);
        if (!target || !(members[i] = fl_offer_members(target, d->artifact))) {
            error = fl_fail(err, PKGSTORE_ENOMEM, "offer: out of memory");
            goto out;
        }
        /* {"policy":"P","retry":N,MEMBERS}, : policy names need no escaping */
        total += strlen(pkgstore_policy_name(d->policy)) + strlen(members[i]) + 48;
    }
    char *text = malloc(total), *at = text;
    if (!text) {
        error = fl_fail(err, PKGSTORE_ENOMEM, "heartbeat: out of memory");
        goto out;
    }
    memcpy(at, head, head_len);
    at += head_len;
    for (size_t i = 0, first = 1; i < eval->count; i++) {
        if (!members[i])
            continue;
        const pkgstore_policy *policy = eval->decisions[i].policy;
        at += sprintf(at, "%s{\"policy\":\"%s\",\"retry\":%llu,%s}", first ? "" : ",",
                      pkgstore_policy_name(policy),
                      (unsigned long long)pkgstore_policy_retry_generation(policy), members[i]);
        first = 0;
    }
    at = stpcpy(at, "],\"targets\":");
    at = stpcpy(at, targets_text);
    at = stpcpy(at, "}");
    *out = text;
    *len_out = (size_t)(at - text);
out:
    free(members);
    free(targets_text);
    return error;
}

/* ---------------------------------------------------------------- identity */

static int key_allowed(const fleet_identity *who, const char *key)
{
    if (who->self_any)
        return 1;
    for (size_t i = 0; i < who->nself_keys; i++) {
        if (strcmp(who->self_keys[i], key) == 0)
            return 1;
    }
    return 0;
}

static int pinned_has(const fleet_identity *who, const char *key)
{
    for (size_t i = 0; i < who->nlabels; i++) {
        if (strcmp(who->labels[i].key, key) == 0)
            return 1;
    }
    return 0;
}

static int cmp_label_key(const void *a, const void *b)
{
    return strcmp(((const pkgstore_label *)a)->key, ((const pkgstore_label *)b)->key);
}

/* Hold hb to what who may say: its own node id only; the pinned labels,
 * and of the reported ones only those who allows and no pin names. */
static int apply_identity(struct fl_hb *hb, const fleet_identity *who, fleet_error *err)
{
    if (strcmp(hb->node_id, who->node_id) != 0) {
        int error = fl_fail(err, PKGSTORE_EDENIED,
                            "node_id %.253s: this credential speaks for node %s only",
                            hb->node_id, who->node_id);
        err->http_status = 403;
        return error;
    }
    pkgstore_label kept[FL_LABELS_MAX];
    size_t nkept = 0;
    for (size_t i = 0; i < who->nlabels && nkept < FL_LABELS_MAX; i++)
        kept[nkept++] = who->labels[i];
    for (size_t i = 0; i < hb->nlabels && nkept < FL_LABELS_MAX; i++) {
        if (key_allowed(who, hb->labels[i].key) && !pinned_has(who, hb->labels[i].key))
            kept[nkept++] = hb->labels[i];
    }
    qsort(kept, nkept, sizeof(*kept), cmp_label_key);
    memcpy(hb->labels, kept, nkept * sizeof(*kept));
    hb->nlabels = nkept;
    return 0;
}

/* ---------------------------------------------------------------- heartbeat */

int fleet_heartbeat(char **reply_out, size_t *reply_len, fleet *f, const char *body, size_t len,
                    uint64_t credential, const fleet_identity *who, fleet_error *err)
{
    struct fl_profile *profile = NULL;
    struct fl_policies *policies = NULL;
    struct fl_lookup lookup = {0};
    struct fl_eval eval = {0};
    struct fl_hb *hb = NULL;
    json_error_t jerr;
    json_t *root = NULL;
    int error = 0;

    *reply_out = NULL;
    *reply_len = 0;
    if (!(root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr)))
        return fl_fail(err, PKGSTORE_EINVALID, "body: line %d column %d: %s", jerr.line,
                       jerr.column, jerr.text);
    if (!(hb = malloc(sizeof(*hb)))) {
        error = fl_fail(err, PKGSTORE_ENOMEM, "heartbeat: out of memory");
        goto out;
    }
    if ((error = fl_hb_parse(hb, root, 0, err)) < 0)
        goto out;
    if (who && (error = apply_identity(hb, who, err)) < 0)
        goto out;
    if ((error = fl_targets_refresh(f)) < 0) {
        fl_fail_lib(err, error, "registry");
        goto out;
    }
    if (!(policies = fl_policies_get(f, err))) {
        error = err->code;
        goto out;
    }
    if ((error = record(&profile, f, hb, credential, err)) < 0)
        goto out;
    if (fl_lookup_init(&lookup, f, pkgstore_policies_count(policies->set)) < 0) {
        error = fl_fail(err, PKGSTORE_ENOMEM, "heartbeat: out of memory");
        goto out;
    }
    /* Evaluate without the shard lock held (a manifest may be read), then
     * take the states from the history under it. */
    if ((error = fl_evaluate(&eval, policies, profile, NULL, &lookup, err)) < 0)
        goto out;
    restate(f, &eval, hb->node_id);
    error = reply_build(reply_out, reply_len, f, &eval, profile, &lookup, err);
out:
    fl_eval_done(&eval);
    fl_lookup_done(&lookup);
    if (profile)
        fl_profile_release(f, profile);
    fl_policies_release(policies);
    json_decref(root);
    free(hb);
    return error;
}

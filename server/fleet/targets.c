/*
 * server/fleet/targets.c - what the policies point at: the manifest of each
 * (package, version) a policy names, read from the registry once per
 * registry generation, and the text of its offers, built once per artifact.
 * Also the policy set, reloaded when another writer changed it.
 *
 * A heartbeat therefore costs two cheap index reads (the registry's and the
 * policies' generation counters) and no manifest parse.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../server.h"
#include "fleet_impl.h"

/* ---------------------------------------------------------------- policies */

void fl_policies_release(struct fl_policies *p)
{
    if (p && atomic_fetch_sub(&p->refs, 1) == 1) {
        pkgstore_policies_free(p->set);
        free(p);
    }
}

struct fl_policies *fl_policies_get(fleet *f, fleet_error *err)
{
    struct fl_policies *p;

    pthread_mutex_lock(&f->policies_lock);
    p = f->policies;
    int stale = !p || atomic_exchange(&f->policies_stale, 0);
    if (!stale) {
        int current = pkgstore_policies_current(p->set, f->reg);
        if (current < 0) {
            pthread_mutex_unlock(&f->policies_lock);
            fl_fail_lib(err, current, "policies");
            return NULL;
        }
        stale = !current;
    }
    if (stale) {
        struct fl_policies *fresh = calloc(1, sizeof(*fresh));
        int error = fresh ? pkgstore_policies_load(&fresh->set, f->reg) : PKGSTORE_ENOMEM;
        if (error < 0) {
            free(fresh);
            pthread_mutex_unlock(&f->policies_lock);
            fl_fail_lib(err, error, "policies");
            return NULL;
        }
        atomic_init(&fresh->refs, 1);
        fl_policies_release(f->policies);
        f->policies = p = fresh;
    }
    atomic_fetch_add(&p->refs, 1);
    pthread_mutex_unlock(&f->policies_lock);
    return p;
}

void fleet_policies_changed(fleet *f)
{
    atomic_store(&f->policies_stale, 1);
    fl_rollout_kick(f); /* a new target starts its rollout now, not at the next tick */
}

/* ---------------------------------------------------------------- targets */

static void target_release(struct fl_target *target)
{
    if (!target || atomic_fetch_sub(&target->refs, 1) != 1)
        return;
    for (size_t i = 0; target->offer_text && i < target->nartifacts; i++)
        free(atomic_load(&target->offer_text[i]));
    free((void *)target->offer_text);
    pkgstore_manifest_free(target->manifest);
    free(target);
}

static int target_is(const struct fl_target *target, const char *package, const char *version)
{
    return strcmp(target->key, package) == 0 &&
           strcmp(target->key + strlen(target->key) + 1, version) == 0;
}

static struct fl_target *target_fetch(fleet *f, const char *package, const char *version,
                                      uint64_t generation)
{
    size_t plen = strlen(package), vlen = strlen(version);
    struct fl_target *target = calloc(1, sizeof(*target) + plen + vlen + 3);

    if (!target)
        return NULL;
    atomic_init(&target->refs, 1);
    memcpy(target->key, package, plen + 1);
    memcpy(target->key + plen + 1, version, vlen + 1);
    target->generation = generation;
    target->store = f->opts.store;
    target->error = pkgstore_registry_get(&target->manifest, &target->manifest_digest, f->reg,
                                          package, version);
    if (target->error < 0) {
        target->manifest = NULL;
        snprintf(target->detail, sizeof(target->detail), "%s", pkgstore_error_detail());
        return target;
    }
    target->nartifacts = pkgstore_manifest_artifact_count(target->manifest);
    target->offer_text = calloc(target->nartifacts ? target->nartifacts : 1,
                                sizeof(*target->offer_text));
    if (!target->offer_text) {
        pkgstore_manifest_free(target->manifest);
        free(target);
        return NULL;
    }
    return target;
}

int fl_targets_refresh(fleet *f)
{
    uint64_t generation;
    int error = pkgstore_registry_generation(&generation, f->reg);
    if (error < 0)
        return error;
    atomic_store(&f->registry_generation, generation);
    return 0;
}

/* A reference to the target for (package, version) at the current registry
 * generation; NULL when out of memory. */
static struct fl_target *target_get(fleet *f, const char *package, const char *version)
{
    uint64_t generation = atomic_load(&f->registry_generation);
    struct fl_target *found = NULL, *fetched;

    pthread_rwlock_rdlock(&f->targets_lock);
    for (size_t i = 0; i < f->ntargets && !found; i++) {
        if (f->targets[i]->generation == generation && target_is(f->targets[i], package, version)) {
            found = f->targets[i];
            atomic_fetch_add(&found->refs, 1);
        }
    }
    pthread_rwlock_unlock(&f->targets_lock);
    if (found)
        return found;

    /* Fetch outside the lock; two threads fetching one target is harmless. */
    if (!(fetched = target_fetch(f, package, version, generation)))
        return NULL;
    pthread_rwlock_wrlock(&f->targets_lock);
    /* Replace the entry for the same key, and drop entries of older
     * generations: the cache holds one entry per target a policy names. */
    size_t kept = 0;
    for (size_t i = 0; i < f->ntargets; i++) {
        struct fl_target *t = f->targets[i];
        if (t->generation != generation || target_is(t, package, version))
            target_release(t);
        else
            f->targets[kept++] = t;
    }
    f->ntargets = kept;
    struct fl_target **grown = realloc(f->targets, (f->ntargets + 1) * sizeof(*grown));
    if (grown) {
        f->targets = grown;
        f->targets[f->ntargets++] = fetched;
        atomic_fetch_add(&fetched->refs, 1);
    }
    pthread_rwlock_unlock(&f->targets_lock);
    return fetched;
}

void fl_targets_free(fleet *f)
{
    for (size_t i = 0; i < f->ntargets; i++)
        target_release(f->targets[i]);
    free(f->targets);
    f->targets = NULL;
    f->ntargets = 0;
}

/* ---------------------------------------------------------------- lookups */

int fl_lookup_init(struct fl_lookup *lookup, fleet *f, size_t nranks)
{
    lookup->f = f;
    lookup->nheld = nranks;
    lookup->held = calloc(nranks ? nranks : 1, sizeof(*lookup->held));
    return lookup->held ? 0 : -1;
}

void fl_lookup_done(struct fl_lookup *lookup)
{
    for (size_t i = 0; lookup->held && i < lookup->nheld; i++)
        target_release(lookup->held[i]);
    free(lookup->held);
    lookup->held = NULL;
    lookup->nheld = 0;
}

int fl_lookup_manifest(const pkgstore_manifest **out, const char *package, const char *version,
                       void *payload)
{
    struct fl_lookup *lookup = payload;
    struct fl_target *target = NULL;

    *out = NULL;
    /* Policies naming one target share the held reference. */
    for (size_t i = 0; i < lookup->nheld && !target; i++) {
        if (lookup->held[i] && target_is(lookup->held[i], package, version))
            target = lookup->held[i];
    }
    if (!target) {
        size_t slot = 0;
        while (slot < lookup->nheld && lookup->held[slot])
            slot++;
        if (slot == lookup->nheld || !(target = target_get(lookup->f, package, version)))
            return PKGSTORE_ENOMEM;
        lookup->held[slot] = target;
    }
    if (target->error < 0)
        return target->error;
    *out = target->manifest;
    return 0;
}

struct fl_target *fl_lookup_target(struct fl_lookup *lookup, const pkgstore_decision *d)
{
    for (size_t i = 0; d->manifest && i < lookup->nheld; i++) {
        if (lookup->held[i] && lookup->held[i]->manifest == d->manifest)
            return lookup->held[i];
    }
    return NULL;
}

/* ---------------------------------------------------------------- offers */

/* Annotations as an object of strings; dependencies as [{"name","version"}]. */
static json_t *offer_extras(json_t *obj, const pkgstore_manifest *manifest)
{
    json_t *annotations = json_object(), *dependencies = json_array();
    int failed = !annotations || !dependencies;
    for (size_t i = 0; !failed && i < pkgstore_manifest_annotation_count(manifest); i++) {
        const char *key, *value;
        if (pkgstore_manifest_annotation(&key, &value, manifest, i) == 0)
            failed |= json_object_set_new(annotations, key, json_string(value)) < 0;
    }
    for (size_t i = 0; !failed && i < pkgstore_manifest_dependency_count(manifest); i++) {
        const pkgstore_dependency *dep = pkgstore_manifest_dependency(manifest, i);
        failed |= json_array_append_new(dependencies, json_pack("{s:s, s:s}", "name", dep->name,
                                                                "version", dep->constraint)) < 0;
    }
    failed |= json_object_set_new(obj, "annotations", annotations) < 0;
    annotations = NULL; /* now owned by obj */
    failed |= json_object_set_new(obj, "dependencies", dependencies) < 0;
    if (failed) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* "manifest": the digest of the manifest blob the agent fetches and checks;
 * "signatures": every envelope stored for it (docs/api.md). The text is
 * cached per registry generation, which a new signature moves. An envelope
 * that no longer parses is left out: the agent counts only valid ones. */
static json_t *offer_signatures(json_t *obj, pkgstore_store *store, const pkgstore_digest *digest,
                                const char *digest_str)
{
    pkgstore_trust_stored_signature *list = NULL;
    size_t count = 0;
    json_t *signatures = json_array();
    int failed = !signatures;
    if (!failed && store && pkgstore_trust_signatures_list(&list, &count, store, digest) < 0) {
        /* unreadable records: offer none (a node with a root refuses the
         * offer, one without acts as before) rather than fail the heartbeat */
        log_msg(LOG_WARN, "fleet: signatures not offered", "manifest=%s error=%s", digest_str,
                pkgstore_error_detail());
        count = 0;
    }
    for (size_t i = 0; !failed && i < count; i++) {
        json_t *env = json_loadb(list[i].data, list[i].len, JSON_REJECT_DUPLICATES, NULL);
        if (env && json_is_object(env))
            failed |= json_array_append_new(signatures, env) < 0;
        else
            json_decref(env);
    }
    pkgstore_trust_signatures_free(list, count);
    failed |= json_object_set_new(obj, "manifest", json_string(digest_str)) < 0;
    failed |= json_object_set_new(obj, "signatures", signatures) < 0;
    if (failed) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

const char *fl_offer_members(struct fl_target *target, const pkgstore_artifact *artifact)
{
    size_t index = 0;

    while (index < target->nartifacts &&
           pkgstore_manifest_artifact(target->manifest, index) != artifact)
        index++;
    if (index == target->nartifacts)
        return NULL;
    char *text = atomic_load(&target->offer_text[index]);
    if (text)
        return text;

    char digest[PKGSTORE_DIGEST_STR_SIZE], manifest_digest[PKGSTORE_DIGEST_STR_SIZE];
    char url[PKGSTORE_DIGEST_STR_SIZE + 16];
    pkgstore_digest_format(digest, &artifact->digest);
    pkgstore_digest_format(manifest_digest, &target->manifest_digest);
    snprintf(url, sizeof(url), "/v1/blobs/%s", digest);
    json_t *obj = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s}", "name",
        pkgstore_manifest_name(target->manifest), "type",
        pkgstore_package_type_name(pkgstore_manifest_type(target->manifest)), "version",
        pkgstore_manifest_version(target->manifest), "platform", artifact->platform, "digest",
        digest, "size", (json_int_t)artifact->size, "format", artifact->format, "entrypoint",
        artifact->entrypoint, "url", url, "manifest_digest", manifest_digest);
    obj = obj ? offer_extras(obj, target->manifest) : NULL;
    obj = obj ? offer_signatures(obj, target->store, &target->manifest_digest,
                                 manifest_digest)
              : NULL;
    char *dumped = obj ? json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(obj);
    if (!dumped)
        return NULL;
    /* strip the braces: "{...}" -> "..." */
    size_t len = strlen(dumped);
    memmove(dumped, dumped + 1, len - 2);
    dumped[len - 2] = '\0';
    char *expected = NULL;
    if (!atomic_compare_exchange_strong(&target->offer_text[index], &expected, dumped)) {
        free(dumped); /* another thread was first */
        return expected;
    }
    return dumped;
}

/* ---------------------------------------------------------------- evaluation */

pkgstore_rollout_state fl_decision_state(const pkgstore_decision *d, const struct fl_node *node)
{
    pkgstore_rollout_state state;
    switch (d->verdict) {
    case PKGSTORE_VERDICT_CURRENT:
        /* running the digest is not done while the agent still monitors
         * it: Upgraded once it says so (or when it reported nothing for
         * this version: it ran it before) */
        if (node && fl_hist_latest(&state, node, pkgstore_policy_package(d->policy),
                                   pkgstore_policy_version(d->policy)) &&
            state >= PKGSTORE_ROLLOUT_DOWNLOADING && state <= PKGSTORE_ROLLOUT_MONITORING)
            return state;
        return PKGSTORE_ROLLOUT_UPGRADED;
    case PKGSTORE_VERDICT_INCOMPATIBLE:
    case PKGSTORE_VERDICT_UNMET:
        return PKGSTORE_ROLLOUT_INCOMPATIBLE;
    case PKGSTORE_VERDICT_UNRESOLVED:
        return PKGSTORE_ROLLOUT_UNKNOWN;
    case PKGSTORE_VERDICT_OFFER:
        break;
    }
    if (node && fl_hist_latest(&state, node, pkgstore_policy_package(d->policy),
                               pkgstore_policy_version(d->policy)))
        return state;
    return PKGSTORE_ROLLOUT_PENDING;
}

int fl_evaluate(struct fl_eval *eval, const struct fl_policies *p,
                const struct fl_profile *profile, const struct fl_node *node,
                struct fl_lookup *lookup, fleet_error *err)
{
    pkgstore_node_package packages[FL_PACKAGES_MAX];
    size_t capacity = pkgstore_policies_count(p->set);

    eval->count = 0;
    eval->decisions = eval->stack_decisions;
    eval->states = eval->stack_states;
    if (capacity > 8) {
        eval->decisions = malloc(capacity * sizeof(*eval->decisions));
        eval->states = malloc(capacity * sizeof(*eval->states));
        if (!eval->decisions || !eval->states) {
            fl_eval_done(eval);
            return fl_fail(err, PKGSTORE_ENOMEM, "evaluation: out of memory");
        }
    }
    for (size_t i = 0; i < profile->npkgs; i++) {
        const struct fl_pkg *pkg = &profile->pkgs[i];
        packages[i].name = pkg->name;
        packages[i].type = pkg->type;
        packages[i].version = pkg->version;
        packages[i].digest = pkg->has_digest ? &pkg->digest : NULL;
    }
    pkgstore_node_facts facts = {profile->platform, profile->labels, profile->nlabels, packages,
                                 profile->npkgs};
    int error = pkgstore_policy_evaluate(eval->decisions, capacity, &eval->count, p->set, &facts,
                                         fl_lookup_manifest, lookup);
    if (error < 0) {
        fl_eval_done(eval);
        return fl_fail_lib(err, error, "evaluation");
    }
    for (size_t i = 0; i < eval->count; i++)
        eval->states[i] = fl_decision_state(&eval->decisions[i], node);
    return 0;
}

void fl_eval_done(struct fl_eval *eval)
{
    if (eval->decisions != eval->stack_decisions)
        free(eval->decisions);
    if (eval->states != eval->stack_states)
        free(eval->states);
    eval->decisions = eval->stack_decisions;
    eval->states = eval->stack_states;
    eval->count = 0;
}

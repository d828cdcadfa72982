/*
 * Offers: which policy governs a node, which artifact that means for the
 * node's platform, and where the node stands in that rollout.
 *
 * The manifests that policies point at are cached here (reference counted,
 * expiring after PS_TARGET_TTL_MS or at pkgstore_policy_invalidate()), so a
 * heartbeat costs no index read and no manifest parse.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "policy.h"

int64_t ps_policy_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ps_target_release(struct ps_target *target)
{
    if (!target)
        return;
    if (atomic_fetch_sub(&target->refs, 1) == 1) {
        for (size_t i = 0; target->offer_text && i < target->nartifacts; i++)
            free(atomic_load(&target->offer_text[i]));
        free((void *)target->offer_text);
        for (size_t i = 0; target->deps && i < target->ndeps; i++)
            pkgstore_version_constraint_free(target->deps[i]);
        free(target->deps);
        pkgstore_manifest_free(target->manifest);
        free(target);
    }
}

static int target_matches(const struct ps_target *target, const char *package,
                          const char *version)
{
    /* strcmp, not memcmp over plen + 1 bytes: a target with a shorter
     * package name has a shorter key, and memcmp may read all plen + 1. */
    return strcmp(target->key, package) == 0 &&
           strcmp(target->key + strlen(package) + 1, version) == 0;
}

static int target_fresh(pkgstore_policy_db *db, const struct ps_target *target, int64_t now)
{
    return target->generation == atomic_load(&db->target_gen) &&
           now - target->fetched_ms < PS_TARGET_TTL_MS;
}

/* A fresh target read from the registry (errors are kept in the target). */
static struct ps_target *target_fetch(pkgstore_policy_db *db, const char *package,
                                      const char *version)
{
    size_t plen = strlen(package), vlen = strlen(version);
    struct ps_target *target = calloc(1, sizeof(*target) + plen + vlen + 2);

    if (!target)
        return NULL;
    atomic_init(&target->refs, 1);
    memcpy(target->key, package, plen + 1);
    memcpy(target->key + plen + 1, version, vlen + 1);
    target->generation = atomic_load(&db->target_gen);
    target->error = pkgstore_registry_get(&target->manifest, &target->manifest_digest,
                                          db->registry, package, version);
    if (target->error < 0) {
        target->manifest = NULL;
    } else {
        target->nartifacts = pkgstore_manifest_artifact_count(target->manifest);
        target->offer_text = calloc(target->nartifacts ? target->nartifacts : 1,
                                    sizeof(*target->offer_text));
        target->ndeps = pkgstore_manifest_dependency_count(target->manifest);
        target->deps = calloc(target->ndeps ? target->ndeps : 1, sizeof(*target->deps));
        if (!target->offer_text || !target->deps) {
            free((void *)target->offer_text);
            free(target->deps);
            pkgstore_manifest_free(target->manifest);
            free(target);
            return NULL;
        }
        /* compiled once per target: a heartbeat only matches */
        for (size_t i = 0; i < target->ndeps; i++) {
            const pkgstore_dependency *dep = pkgstore_manifest_dependency(target->manifest, i);
            if (dep && pkgstore_version_constraint_parse(&target->deps[i], dep->constraint) < 0)
                target->deps[i] = NULL;
        }
    }
    target->fetched_ms = ps_policy_now_ms();
    return target;
}

struct ps_target *ps_target_get(pkgstore_policy_db *db, const char *package,
                                const char *version)
{
    struct ps_target *found = NULL, *fetched;
    int64_t now = ps_policy_now_ms();

    pthread_rwlock_rdlock(&db->target_lock);
    for (size_t i = 0; i < db->ntargets; i++) {
        if (target_matches(db->targets[i], package, version)) {
            if (target_fresh(db, db->targets[i], now)) {
                found = db->targets[i];
                atomic_fetch_add(&found->refs, 1);
            }
            break;
        }
    }
    pthread_rwlock_unlock(&db->target_lock);
    if (found)
        return found;

    /* Fetch outside the lock; concurrent fetches of one target are harmless. */
    if (!(fetched = target_fetch(db, package, version)))
        return NULL;
    pthread_rwlock_wrlock(&db->target_lock);
    size_t i;
    for (i = 0; i < db->ntargets; i++) {
        if (target_matches(db->targets[i], package, version))
            break;
    }
    if (i < db->ntargets) {
        ps_target_release(db->targets[i]);
        db->targets[i] = fetched;
        atomic_fetch_add(&fetched->refs, 1);
    } else {
        struct ps_target **grown = realloc(db->targets, (db->ntargets + 1) * sizeof(*grown));
        if (grown) {
            db->targets = grown;
            db->targets[db->ntargets++] = fetched;
            atomic_fetch_add(&fetched->refs, 1);
        }
    }
    /* Drop stale entries of targets no longer asked for. */
    size_t kept = 0;
    for (size_t j = 0; j < db->ntargets; j++) {
        if (now - db->targets[j]->fetched_ms > 60 * PS_TARGET_TTL_MS)
            ps_target_release(db->targets[j]);
        else
            db->targets[kept++] = db->targets[j];
    }
    db->ntargets = kept;
    pthread_rwlock_unlock(&db->target_lock);
    return fetched;
}

void ps_target_cache_free(pkgstore_policy_db *db)
{
    for (size_t i = 0; i < db->ntargets; i++)
        ps_target_release(db->targets[i]);
    free(db->targets);
    db->targets = NULL;
    db->ntargets = 0;
}

void pkgstore_policy_invalidate(pkgstore_policy_db *db)
{
    if (db)
        atomic_fetch_add(&db->target_gen, 1);
}

/* ---------------------------------------------------------------- evaluation */

static int runs_digest(const struct ps_report *report, const pkgstore_digest *digest)
{
    for (size_t i = 0; i < report->npkgs; i++) {
        if (report->pkgs[i].has_digest &&
            memcmp(report->pkgs[i].digest.bytes, digest->bytes, PKGSTORE_DIGEST_SIZE) == 0)
            return 1;
    }
    return 0;
}

/* The most recent status the node reported for package at version. */
static int reported_state(pkgstore_rollout_state *out, const pkgstore_policy_db *db,
                          const struct ps_node *node, const char *package, const char *version)
{
    if (!node || !node->ring)
        return 0;
    for (unsigned int k = node->hlen; k > 0; k--) {
        const struct ps_hist *h = &node->ring[(node->hstart + k - 1) % db->history_max];
        const char *h_version = h->text + strlen(h->text) + 1;
        if (strcmp(h->text, package) == 0 && strcmp(h_version, version) == 0) {
            *out = h->status;
            return 1;
        }
    }
    return 0;
}

/* 1 if the node's packages satisfy every dependency of the target's
 * manifest, else 0 with the first unmet one described in reason. */
static int dependencies_met(char *reason, size_t len, const struct ps_target *target,
                            const struct ps_report *report)
{
    for (size_t i = 0; i < target->ndeps; i++) {
        const pkgstore_dependency *dep = pkgstore_manifest_dependency(target->manifest, i);
        const struct ps_pkg *running = NULL;
        pkgstore_semver version;
        if (!dep)
            continue;
        for (size_t j = 0; j < report->npkgs && !running; j++) {
            if (strcmp(report->pkgs[j].name, dep->name) == 0)
                running = &report->pkgs[j];
        }
        if (!running) {
            snprintf(reason, len, "requires %.128s %.256s; the node does not run %.128s", dep->name,
                     dep->constraint, dep->name);
            return 0;
        }
        if (!running->version[0] || pkgstore_version_parse(&version, running->version) < 0) {
            snprintf(reason, len, "requires %.128s %.256s; the node runs %.128s at an unknown version",
                     dep->name, dep->constraint, dep->name);
            return 0;
        }
        if (!pkgstore_version_constraint_match(target->deps[i], &version)) {
            snprintf(reason, len, "requires %.128s %.256s; the node runs %.128s %.128s", dep->name,
                     dep->constraint, dep->name, running->version);
            return 0;
        }
    }
    return 1;
}

void ps_policy_evaluate(struct ps_slot *slots, size_t *nslots, pkgstore_policy_db *db,
                        const struct ps_policy_set *set, const struct ps_report *report,
                        const struct ps_node *history, struct ps_target **targets)
{
    size_t n = 0;
    int primary_taken = 0;

    for (size_t i = 0; i < set->count; i++) {
        const struct ps_policy_item *item = &set->by_rank[i];
        const pkgstore_policy *policy = &item->policy;

        if (policy->type == PKGSTORE_TYPE_PRIMARY) {
            if (primary_taken)
                continue;
        } else {
            int taken = 0;
            for (size_t j = 0; j < n && !taken; j++)
                taken = slots[j].item->policy.type == PKGSTORE_TYPE_ADDON &&
                        strcmp(slots[j].item->policy.package, policy->package) == 0;
            if (taken)
                continue;
        }
        if (!pkgstore_selector_matches(item->selector, report->labels, report->nlabels))
            continue;
        if (policy->type == PKGSTORE_TYPE_PRIMARY)
            primary_taken = 1;

        struct ps_slot *slot = &slots[n++];
        memset(slot, 0, sizeof(*slot));
        slot->item = item;
        if (targets && targets[i]) {
            slot->target = targets[i];
            atomic_fetch_add(&slot->target->refs, 1);
        } else {
            slot->target = ps_target_get(db, policy->package, policy->version);
            if (targets && slot->target) {
                targets[i] = slot->target;
                atomic_fetch_add(&slot->target->refs, 1);
            }
        }
        if (!slot->target || slot->target->error < 0) {
            slot->state = PKGSTORE_ROLLOUT_UNKNOWN;
            snprintf(slot->reason, sizeof(slot->reason), "%.128s %.128s: %s", policy->package,
                     policy->version,
                     pkgstore_strerror(slot->target ? slot->target->error : PKGSTORE_ENOMEM));
            continue;
        }
        if (pkgstore_manifest_best_artifact(&slot->artifact, slot->target->manifest,
                                            report->platform) < 0 ||
            !slot->artifact) {
            slot->artifact = NULL;
            slot->state = PKGSTORE_ROLLOUT_INCOMPATIBLE;
            snprintf(slot->reason, sizeof(slot->reason), "no artifact of %.128s %.128s for %.64s",
                     policy->package, policy->version, report->platform);
            continue;
        }
        if (runs_digest(report, &slot->artifact->digest)) {
            slot->state = PKGSTORE_ROLLOUT_UPGRADED;
            continue;
        }
        if (!dependencies_met(slot->reason, sizeof(slot->reason), slot->target, report)) {
            slot->state = PKGSTORE_ROLLOUT_INCOMPATIBLE;
            continue;
        }
        slot->offer = 1;
        if (!reported_state(&slot->state, db, history, policy->package, policy->version))
            slot->state = PKGSTORE_ROLLOUT_PENDING;
    }
    *nslots = n;
    pkgstore_error_clear();
}

void ps_targets_release(struct ps_target **targets, size_t count)
{
    for (size_t i = 0; targets && i < count; i++) {
        ps_target_release(targets[i]);
        targets[i] = NULL;
    }
}

void ps_slots_release(struct ps_slot *slots, size_t nslots)
{
    for (size_t i = 0; i < nslots; i++) {
        ps_target_release(slots[i].target);
        slots[i].target = NULL;
    }
}

/* The members of an offer other than "policy" depend only on the manifest
 * and the artifact, so they are built once per target and artifact and
 * shared by every heartbeat. */
const char *ps_offer_members(const struct ps_slot *slot)
{
    struct ps_target *target = slot->target;
    size_t index = 0;

    while (index < target->nartifacts &&
           pkgstore_manifest_artifact(target->manifest, index) != slot->artifact)
        index++;
    if (index == target->nartifacts)
        return NULL;
    char *text = atomic_load(&target->offer_text[index]);
    if (text)
        return text;

    const pkgstore_artifact *artifact = slot->artifact;
    char digest[PKGSTORE_DIGEST_STR_SIZE], manifest_digest[PKGSTORE_DIGEST_STR_SIZE];
    char url[PKGSTORE_DIGEST_STR_SIZE + 16];
    pkgstore_digest_format(digest, &artifact->digest);
    pkgstore_digest_format(manifest_digest, &target->manifest_digest);
    snprintf(url, sizeof(url), "/v1/blobs/%s", digest);
    /* what the agent needs to install and run it: it never reads the
     * manifest itself (GET /v1/packages is admin-only) */
    json_t *annotations = json_object(), *dependencies = json_array();
    for (size_t i = 0; annotations && i < pkgstore_manifest_annotation_count(target->manifest);
         i++) {
        const char *key, *value;
        if (pkgstore_manifest_annotation(&key, &value, target->manifest, i) == 0)
            json_object_set_new(annotations, key, json_string(value));
    }
    for (size_t i = 0; dependencies && i < target->ndeps; i++) {
        const pkgstore_dependency *dep = pkgstore_manifest_dependency(target->manifest, i);
        if (dep)
            json_array_append_new(dependencies, json_pack("{s:s, s:s}", "name", dep->name,
                                                          "version", dep->constraint));
    }
    json_t *obj = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:o, s:o}", "name",
        pkgstore_manifest_name(target->manifest), "type",
        pkgstore_package_type_name(pkgstore_manifest_type(target->manifest)), "version",
        pkgstore_manifest_version(target->manifest), "platform", artifact->platform, "digest",
        digest, "size", (json_int_t)artifact->size, "format", artifact->format, "entrypoint",
        artifact->entrypoint, "url", url, "manifest_digest", manifest_digest, "annotations",
        annotations, "dependencies", dependencies);
    char *dumped = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
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

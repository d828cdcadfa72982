/*
 * server/fleet/rollout_ops.c - what operators do and see of a rollout:
 * pause, resume and abort (with revert), the rollout part of a policy's
 * status, and the /metrics walk over the rollouts.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../server.h"
#include "rollout_impl.h"

/* ---------------------------------------------------------------- operator actions */

/* src with another version, and everything else of it kept (its addon
 * configuration too). */
static int policy_with_version(pkgstore_policy **out, const pkgstore_policy *src,
                               const char *version)
{
    pkgstore_policy *copy = NULL;
    const char *config = pkgstore_policy_config(src);
    int error;
    *out = NULL;
    if ((error = pkgstore_policy_new(&copy, pkgstore_policy_name(src), pkgstore_policy_package(src),
                                     version)) < 0 ||
        (error = pkgstore_policy_set_selector(copy, pkgstore_policy_selector_text(src))) < 0 ||
        (error = pkgstore_policy_set_priority(copy, pkgstore_policy_priority(src))) < 0 ||
        (error = pkgstore_policy_set_type(copy, pkgstore_policy_type(src))) < 0 ||
        (error = pkgstore_policy_set_strategy(copy, pkgstore_policy_strategy(src))) < 0 ||
        (config && (error = pkgstore_policy_set_config(copy, config, strlen(config))) < 0)) {
        pkgstore_policy_free(copy);
        return error;
    }
    *out = copy;
    return 0;
}

int fleet_rollout_action(fleet *f, const char *name, const char *action, int revert,
                         const char *who, fleet_error *err)
{
    struct fl_rollouts *ro = f->rollouts;
    pkgstore_policy *policy = NULL, *back = NULL;
    struct fl_rollout before, next;
    const char *what = action;
    char why[1200];
    int error, found;

    if (strcmp(action, "pause") != 0 && strcmp(action, "resume") != 0 &&
        strcmp(action, "abort") != 0)
        return fl_fail(err, PKGSTORE_EINVALID, "rollout action '%.32s': not pause, resume or abort",
                       action);
    if ((error = pkgstore_policy_get(&policy, f->reg, name)) < 0)
        return fl_fail_lib(err, error, NULL);
    pthread_mutex_lock(&ro->write_lock);
    pthread_rwlock_rdlock(&ro->lock);
    const struct fl_rollout *r = fl_ro_find(ro, name);
    found = r && strcmp(r->version, pkgstore_policy_version(policy)) == 0 &&
            strcmp(r->package, pkgstore_policy_package(policy)) == 0;
    if (found)
        before = *r;
    pthread_rwlock_unlock(&ro->lock);
    if (!found) {
        error = fl_fail(err, PKGSTORE_ECONFLICT,
                        "policy %s: its rollout has not started yet; try again in a moment", name);
        err->retry_after_s = 1;
        goto conflict;
    }
    next = before;
    if (strcmp(action, "pause") == 0) {
        if (before.state == FL_RO_DONE || before.state == FL_RO_ABORTED) {
            error =
                fl_fail(err, PKGSTORE_ECONFLICT, "policy %s: the rollout is %s: nothing to pause",
                        name, fl_rollout_state_name(before.state));
            goto conflict;
        }
        next.state = FL_RO_PAUSED;
        next.paused_auto = 0;
        next.settled_at = 0;
        snprintf(next.reason, sizeof(next.reason), "paused by %s", who);
        snprintf(why, sizeof(why), "operator pause");
    } else if (strcmp(action, "resume") == 0) {
        if (before.state != FL_RO_PAUSED &&
            !(before.state == FL_RO_ABORTED && !before.revert_from[0])) {
            error = fl_fail(err, PKGSTORE_ECONFLICT, "policy %s: the rollout is %s, not paused%s",
                            name, fl_rollout_state_name(before.state),
                            before.revert_from[0] ? " (it was reverted: put the policy again to "
                                                    "start a new rollout)"
                                                  : "");
            goto conflict;
        }
        if (before.live.at == 0) {
            /* counts come with the first round after a start: acknowledge
             * the failures there are, not none */
            error = fl_fail(err, PKGSTORE_ECONFLICT,
                            "policy %s: the rollout has not been counted since the server "
                            "started; try again in a moment",
                            name);
            err->retry_after_s = 1;
            goto conflict;
        }
        /* the failures seen so far are accepted: only new ones count */
        for (size_t j = 0; j <= before.batch; j++)
            next.acked[j] =
                before.live.failed[j] > before.acked[j] ? before.live.failed[j] : before.acked[j];
        snprintf(why, sizeof(why), "operator resume (was: %.1000s)", before.reason);
        next.state = FL_RO_RUNNING;
        next.paused_auto = 0;
        next.settled_at = 0;
        next.reason[0] = '\0';
    } else {
        if (before.state == FL_RO_ABORTED) {
            error =
                fl_fail(err, PKGSTORE_ECONFLICT, "policy %s: the rollout is aborted already", name);
            goto conflict;
        }
        next.state = FL_RO_ABORTED;
        next.paused_auto = 0;
        snprintf(next.reason, sizeof(next.reason), "aborted by %s", who);
        snprintf(why, sizeof(why), "operator abort");
        if (revert) {
            if (!before.previous[0]) {
                error = fl_fail(err, PKGSTORE_ECONFLICT,
                                "policy %s: no previous version is known to revert to (the "
                                "policy named %s when this rollout started)",
                                name, before.version);
                goto conflict;
            }
            if ((error = policy_with_version(&back, policy, before.previous)) < 0) {
                fl_fail_lib(err, error, "revert");
                goto out;
            }
            /* the record first: heartbeats in between hold the version
             * left (admits_locked) */
            snprintf(next.revert_from, sizeof(next.revert_from), "%s", before.version);
            snprintf(next.version, sizeof(next.version), "%s", before.previous);
            next.previous[0] = '\0';
            snprintf(next.reason, sizeof(next.reason),
                     "aborted by %s; %s offered back to the nodes that moved to %s", who,
                     before.previous, before.version);
            snprintf(why, sizeof(why), "operator abort with revert to %s", before.previous);
            what = "abort-revert";
        }
    }
    next.changed = (int64_t)time(NULL);
    if ((error = fl_ro_persist(f, name, &next, who, what, why, err)) < 0 ||
        (error = fl_ro_install(ro, &next, NULL, before.generation + 1, err)) < 0)
        goto out;
    if (back) {
        if ((error = pkgstore_policy_put(NULL, f->reg, back)) < 0) {
            fleet_error ignored;
            char detail[300];
            int code = error;
            snprintf(detail, sizeof(detail), "%s", pkgstore_error_detail());
            /* the policy still names the version: so does its record again */
            before.changed = (int64_t)time(NULL);
            if (fl_ro_persist(f, name, &before, who, "abort-revert-failed", detail, &ignored) == 0)
                fl_ro_install(ro, &before, NULL, before.generation + 2, &ignored);
            error =
                fl_fail(err, code, "policy %s: revert to %s: %s", name, before.previous, detail);
            goto out;
        }
        fleet_policies_changed(f);
    }
    fl_ro_log(name, what, &next, why);
out:
    pthread_mutex_unlock(&ro->write_lock);
    pkgstore_policy_free(policy);
    pkgstore_policy_free(back);
    if (error == 0)
        fl_rollout_kick(f);
    return error;
conflict:
    err->http_status = 409;
    goto out;
}

/* ---------------------------------------------------------------- views */

json_t *fl_rollout_json(fleet *f, const pkgstore_policy *policy)
{
    struct fl_rollouts *ro = f->rollouts;
    const pkgstore_rollout_strategy *s = pkgstore_policy_strategy(policy);
    struct fl_rollout r;
    char when[32];

    if (!ro)
        return json_null();
    pthread_rwlock_rdlock(&ro->lock);
    const struct fl_rollout *found = fl_ro_find(ro, pkgstore_policy_name(policy));
    if (found)
        r = *found;
    pthread_rwlock_unlock(&ro->lock);
    if (!found || strcmp(r.version, pkgstore_policy_version(policy)) != 0 ||
        strcmp(r.package, pkgstore_policy_package(policy)) != 0)
        return json_pack("{s:s, s:s}", "state", "starting", "reason",
                         "the rollout of this version starts at the next tick");
    json_t *batches = json_array();
    size_t count = pkgstore_rollout_batch_count(s);
    for (size_t j = 0; batches && j < count; j++) {
        char amount[PKGSTORE_ROLLOUT_AMOUNT_STR_SIZE];
        pkgstore_rollout_amount all = {10000, 1};
        pkgstore_rollout_amount_format(amount, s->nbatches ? &s->batches[j] : &all);
        const char *state = j < r.batch ? "started" : j == r.batch ? "current" : "next";
        json_t *b = json_pack("{s:I, s:s, s:s}", "batch", (json_int_t)j + 1, "size", amount,
                              "state", state);
        if (b && j <= r.batch && j < PKGSTORE_ROLLOUT_BATCHES_MAX) {
            /* the admission limit, for checks from outside: a node of rank
             * (pkgstore_rollout_rank()) below it is admitted */
            char limit[24];
            snprintf(limit, sizeof(limit), "%016" PRIx64, r.limit[j]);
            json_object_set_new(b, "rank_below",
                                j == r.batch && r.all ? json_string("all") : json_string(limit));
            json_object_set_new(b, "nodes", json_integer((json_int_t)r.live.nodes[j]));
            json_object_set_new(b, "done", json_integer((json_int_t)r.live.done[j]));
            json_object_set_new(b, "active", json_integer((json_int_t)r.live.active[j]));
            json_object_set_new(b, "pending", json_integer((json_int_t)r.live.pending[j]));
            json_object_set_new(b, "failed", json_integer((json_int_t)r.live.failed[j]));
            json_object_set_new(b, "failures_tolerated",
                                s->has_max_failures
                                    ? json_integer((json_int_t)pkgstore_rollout_failures_allowed(
                                          s, r.live.nodes[j]))
                                    : json_null());
        } else if (b) {
            json_object_set_new(
                b, "planned_nodes",
                json_integer((json_int_t)pkgstore_rollout_batch_size(s, j, r.live.eligible)));
        }
        json_array_append_new(batches, b);
    }
    json_t *failures = json_array();
    for (size_t i = 0; failures && i < r.live.nfailures; i++) {
        const struct ro_failure *fail = &r.live.failures[i];
        json_array_append_new(
            failures, json_pack("{s:s, s:s, s:s, s:I}", "node", fail->node, "status",
                                fail->status == PKGSTORE_ROLLOUT_COUNT
                                    ? "Silent"
                                    : pkgstore_rollout_state_name(fail->status),
                                "message", fail->message, "batch", (json_int_t)fail->batch + 1));
    }
    fleet_time_format(when, r.changed);
    json_t *obj =
        json_pack("{s:s, s:I, s:I, s:o, s:I, s:I, s:s, s:s, s:o, s:s}", "state",
                  fl_rollout_state_name(r.state), "batch", (json_int_t)r.batch + 1, "batch_count",
                  (json_int_t)count, "batches", batches, "nodes", (json_int_t)r.live.eligible,
                  "waiting", (json_int_t)r.live.waiting, "reason", r.reason, "since", when,
                  "failures", failures, "version", r.version);
    if (obj) {
        json_object_set_new(obj, "paused_by_threshold", json_boolean(r.paused_auto));
        json_object_set_new(obj, "previous_version",
                            r.previous[0] ? json_string(r.previous) : json_null());
        if (r.revert_from[0])
            json_object_set_new(obj, "reverted_from", json_string(r.revert_from));
        if (r.state == FL_RO_SOAKING) {
            char until[32];
            fleet_time_format(until, r.settled_at + (int64_t)s->soak_s);
            json_object_set_new(obj, "soak_until", json_string(until));
        }
    }
    return obj;
}

void fleet_rollout_foreach(fleet *f, fleet_rollout_cb cb, void *ctx)
{
    struct fl_rollouts *ro = f->rollouts;
    if (!ro)
        return;
    pthread_rwlock_rdlock(&ro->lock);
    for (size_t i = 0; i < ro->count; i++)
        cb(ctx, ro->items[i]->policy, fl_rollout_state_name(ro->items[i]->state));
    pthread_rwlock_unlock(&ro->lock);
}

uint64_t fleet_rollout_auto_pauses(fleet *f)
{
    return f->rollouts ? atomic_load(&f->rollouts->auto_pauses) : 0;
}

/*
 * An addon's configuration from its policy (docs/policies.md, "Addon
 * configuration"): the heartbeat reply's target for the addon names the
 * configuration's digest and, while the node has not applied it, carries
 * its arguments, environment and file body. The agent applies it like an
 * upgrade applies a binary: journaled, the file written atomically
 * (addons/NAME/policy.conf), the addon restarted and watched for its
 * monitor window, rolled back to the configuration it ran before when it
 * exits or fails its health check, and then remembered as bad (in the bad
 * set, under the configuration's digest) so that it is not tried again
 * until the policy's configuration or its retry generation changes.
 */
#include "supervisor.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

char *config_file_path(const supervisor *sup, const char *name)
{
    return agent_strdup_printf("%s/addons/%s/policy.conf", sup->cfg->state_dir, name);
}

/* "sha256:0123456789ab" for messages; "none" for no configuration. */
static void short_digest(char out[32], const char *digest)
{
    if (!digest || !digest[0])
        snprintf(out, 32, "none");
    else
        snprintf(out, 32, "%.19s", digest);
}

const bad_entry *config_refused(const supervisor *sup, const pkg_slot *slot)
{
    for (size_t i = sup->nbad; i-- > 0;) {
        const bad_entry *e = &sup->bad[i];
        if (e->is_config && e->package && !strcmp(e->package, slot->name))
            return e;
    }
    return NULL;
}

/* ------------------------------------------------------------------ the journal */

json_t *policy_config_json(const agent_policy_config *c)
{
    json_t *obj = json_pack("{s:s}", "digest", c->digest);
    if (!obj)
        return NULL;
    if (c->has_args) {
        json_t *args = json_array();
        for (size_t i = 0; i < c->args.count; i++)
            json_array_append_new(args, json_string(c->args.items[i]));
        json_object_set_new(obj, "args", args);
    }
    json_t *env = json_object();
    for (size_t i = 0; i < c->env.count; i++)
        json_object_set_new(env, c->env.items[i].key, json_string(c->env.items[i].value));
    json_object_set_new(obj, "env", env);
    if (c->file)
        json_object_set_new(obj, "file", json_string(c->file));
    return obj;
}

void policy_config_from_json(agent_policy_config *out, json_t *obj)
{
    agent_policy_config_free(out);
    const char *digest = jstr(obj, "digest");
    if (!json_is_object(obj) || !digest || pkgstore_digest_validate(digest) < 0)
        return;
    snprintf(out->digest, sizeof out->digest, "%s", digest);
    json_t *args = json_object_get(obj, "args");
    if (json_is_array(args)) {
        strv_from_json(&out->args, args);
        out->has_args = 1;
    }
    kvv_from_json(&out->env, json_object_get(obj, "env"));
    set_str(&out->file, jstr(obj, "file"));
}

void config_apply_clear(supervisor *sup)
{
    free(sup->config_apply.name);
    agent_policy_config_free(&sup->config_apply.old);
    memset(&sup->config_apply, 0, sizeof sup->config_apply);
}

/* ------------------------------------------------------------------ applying */

/* The node's own args win over the policy's (docs/policies.md,
 * "Precedence"): say so where it happens, once per application. */
static void note_local_args(const supervisor *sup, const pkg_slot *slot)
{
    const agent_addon_config *local = agent_config_addon(sup->cfg, slot->name);
    if (local && local->has_args && slot->config.has_args)
        agent_log("warn",
                  "msg=\"the local configuration's args win over the policy's\" "
                  "addon=%s config=%s",
                  slot->name, sup->cfg->path);
}

/* Write body to addons/NAME/policy.conf through a temporary file and a
 * rename, or remove it when body is NULL. 0, or -1 with why. */
static int write_config_file(const supervisor *sup, const pkg_slot *slot, const char *body,
                             char *why, size_t why_len)
{
    char *dir = addon_dir(sup, slot->name), *path = config_file_path(sup, slot->name);
    int rc = 0;
    if (!dir || !path) {
        snprintf(why, why_len, "out of memory");
        rc = -1;
    } else if (body) {
        agent_mkdirs(dir, 0755);
        /* it may hold credentials: the addon runs as the agent's user */
        if (pkgstore_install_write_atomic(path, body, strlen(body), 0600) < 0) {
            snprintf(why, why_len, "%s: %s", path, pkgstore_error_detail());
            rc = -1;
        }
    } else if (unlink(path) < 0 && errno != ENOENT) {
        snprintf(why, why_len, "%s: %s", path, strerror(errno));
        rc = -1;
    }
    free(dir);
    free(path);
    return rc;
}

/* Start applying next (taken over) to slot: config_apply keeps the
 * configuration it replaces, the way back. The caller journals it. 0, or
 * -1 out of memory with nothing changed (next freed). */
static int begin_apply(supervisor *sup, pkg_slot *slot, agent_policy_config *next,
                       uint32_t retry, const char *with)
{
    char from_short[32], to_short[32], *name = strdup(slot->name);
    if (!name) {
        agent_policy_config_free(next);
        agent_log("error", "msg=\"cannot apply the configuration\" addon=%s error=\"out of memory\"",
                  slot->name);
        return -1;
    }
    short_digest(from_short, slot->config.digest);
    short_digest(to_short, next->digest);
    config_apply_clear(sup);
    sup->config_apply.active = 1;
    sup->config_apply.name = name;
    sup->config_apply.retry = retry;
    sup->config_apply.old = slot->config; /* now owned by config_apply */
    slot->config = *next;
    memset(next, 0, sizeof *next); /* now owned by slot */
    agent_log("info", "msg=\"config applying\" addon=%s from=%s to=%s%s", slot->name, from_short,
              to_short, with);
    note_local_args(sup, slot);
    return 0;
}

/* The configuration config_apply replaced goes back into slot and its
 * file; 0, or -1 with why (the file could not be restored). */
static int restore_previous(supervisor *sup, pkg_slot *slot, char *why, size_t why_len)
{
    agent_policy_config_free(&slot->config);
    slot->config = sup->config_apply.old;
    memset(&sup->config_apply.old, 0, sizeof sup->config_apply.old); /* now owned by slot */
    return write_config_file(sup, slot, slot->config.file, why, why_len);
}

/* The configuration being applied failed (why): the previous one goes
 * back, in the file and in the launch spec, and the addon runs with it
 * again. Unless the agent is stopping, the failed configuration is
 * remembered as bad. restarted: the addon was restarted with it. */
static void rollback_config(supervisor *sup, pkg_slot *slot, const char *why, int restarted)
{
    char failed_short[32], back_short[32], identity[PKGSTORE_DIGEST_STR_SIZE];
    short_digest(failed_short, slot->config.digest);
    short_digest(back_short, sup->config_apply.old.digest);
    snprintf(identity, sizeof identity, "%s",
             slot->config.digest[0] ? slot->config.digest : CONFIG_NONE_DIGEST);
    if (restarted)
        slot_stop(sup, slot, SIGTERM);
    char detail[256] = "";
    int restored = restore_previous(sup, slot, detail, sizeof detail);
    if (restarted && !agent_stop_requested())
        slot_start(sup, slot, 1);
    char msg[MESSAGE_MAX];
    if (restored < 0)
        snprintf(msg, sizeof msg, "configuration %s: %.250s; restore: %.150s", failed_short, why,
                 detail);
    else
        snprintf(msg, sizeof msg,
                 "configuration %s: %.300s; restored the previous configuration (%s)",
                 failed_short, why, back_short);
    int stopping = agent_stop_requested();
    if (!stopping) { /* its own fault: not tried again until the policy changes it */
        bad_entry *bad = bad_add(sup, identity, slot->name, msg, sup->config_apply.retry, NULL);
        bad->is_config = 1;
    }
    config_apply_clear(sup);
    agent_log("warn", "msg=\"config rolled back\" addon=%s digest=%s restored=%s error=\"%s\"",
              slot->name, identity, back_short, why);
    set_status(sup, slot, restored < 0 ? "RollbackFailed" : "RolledBack", "%s", msg);
}

/* Apply want (a copy is taken) to slot: journal, file, restart, watch. */
static void apply_config(supervisor *sup, pkg_slot *slot, const agent_policy_config *want,
                         uint32_t retry)
{
    char why[MESSAGE_MAX], from_short[32], to_short[32];
    agent_policy_config next;
    if (agent_policy_config_copy(&next, want) < 0) {
        agent_log("error",
                  "msg=\"cannot apply the configuration\" addon=%s error=\"out of "
                  "memory\"",
                  slot->name);
        return;
    }
    short_digest(from_short, slot->config.digest);
    short_digest(to_short, want->digest);
    if (begin_apply(sup, slot, &next, retry, "") < 0)
        return;
    if (set_status(sup, slot, "Swapping", "configuration %s: applying (was %s)", to_short,
                   from_short) < 0) {
        /* without the journal a restart could not roll it back */
        rollback_config(sup, slot, "the journal cannot be written", 0);
        return;
    }
    if (write_config_file(sup, slot, slot->config.file, why, sizeof why) < 0) {
        rollback_config(sup, slot, why, 0);
        return;
    }
    slot_stop(sup, slot, SIGTERM);
    slot_start(sup, slot, 0); /* unsupervised: a death in the window is a failure */
    set_status(sup, slot, "Monitoring", "configuration %s", to_short);
    if (monitor_slot(sup, slot, why, sizeof why) < 0) {
        rollback_config(sup, slot, why, 1);
        return;
    }
    slot->proc.supervised = 1;
    slot->proc.failures = 0;
    config_apply_clear(sup);
    agent_log("info", "msg=\"config applied\" addon=%s digest=%s", slot->name,
              slot->config.digest[0] ? slot->config.digest : "none");
    set_status(sup, slot, "Upgraded", "configuration %s applied; %s %s is running", to_short,
               slot->name, slot->version ? slot->version : "-");
}

/* Is the configuration identity bad for a target of retry generation
 * retry? A larger generation clears it (pkgstore-policy retry). */
static int config_still_bad(supervisor *sup, pkg_slot *slot, const char *identity, uint32_t retry)
{
    bad_entry *bad = bad_find(sup, identity);
    if (!bad)
        return 0;
    if (!bad->retry_known || retry <= bad->retry)
        return 1;
    agent_log("info",
              "msg=\"retry generation raised: trying a bad configuration again\" "
              "addon=%s digest=%s retry=%u failed_under=%u",
              slot->name, identity, (unsigned)retry, (unsigned)bad->retry);
    bad_remove(sup, bad);
    state_save(sup);
    return 0;
}

void process_configs(supervisor *sup, const agent_reply *reply, int *changed_out)
{
    static const agent_policy_config none;
    if (!reply->has_targets)
        return; /* an older server, or targets that did not parse: nothing changes */
    for (size_t i = 0; i < reply->ntargets && !agent_stop_requested(); i++) {
        const agent_target *t = &reply->targets[i];
        pkg_slot *slot = t->is_addon ? find_addon(sup, t->name) : NULL;
        /* only on the version the target names: a node not there yet
         * keeps what it runs until its upgrade is done */
        if (!slot || !t->digest[0] || strcmp(slot->digest, t->digest) ||
            access(slot->executable, F_OK) != 0)
            continue;
        if (!strcmp(t->config_digest, slot->config.digest))
            continue; /* applied (or none, and none wanted) */
        if (t->config_digest[0] && !t->has_config)
            continue; /* the body comes with a reply that knows the node needs it */
        const char *identity = t->config_digest[0] ? t->config_digest : CONFIG_NONE_DIGEST;
        if (config_still_bad(sup, slot, identity, t->retry))
            continue;
        apply_config(sup, slot, t->config_digest[0] ? &t->config : &none, t->retry);
        *changed_out = 1;
    }
}

void recover_config(supervisor *sup)
{
    if (!sup->config_apply.active)
        return;
    pkg_slot *slot = find_addon(sup, sup->config_apply.name);
    if (!slot) {
        config_apply_clear(sup);
        state_save(sup);
        return;
    }
    char step[STATUS_LEN], failed_short[32], back_short[32];
    copy_status(step, sup->config_apply.step);
    short_digest(failed_short, slot->config.digest);
    short_digest(back_short, sup->config_apply.old.digest);
    agent_log("warn",
              "msg=\"recovering an interrupted configuration\" addon=%s step=%s "
              "digest=%s",
              slot->name, step, failed_short);
    char detail[256] = "";
    int restored = restore_previous(sup, slot, detail, sizeof detail);
    config_apply_clear(sup);
    /* not the configuration's fault as far as we know: the next heartbeat
     * applies it again */
    copy_status(slot->status, restored < 0 ? "RollbackFailed" : "RolledBack");
    char msg[MESSAGE_MAX];
    snprintf(msg, sizeof msg, "configuration %s: agent restarted during %s; %s%.200s", failed_short,
             step, restored < 0 ? "restore: " : "restored the previous configuration ",
             restored < 0 ? detail : back_short);
    set_str(&slot->message, msg);
    state_save(sup);
}

/* ------------------------------------------------------------------ with an upgrade */

/* The reply's target for slot at the package digest, or NULL. */
static const agent_target *target_for(const supervisor *sup, const pkg_slot *slot,
                                      const char *digest)
{
    const agent_reply *reply = sup->reply;
    for (size_t i = 0; reply && reply->has_targets && i < reply->ntargets; i++) {
        const agent_target *t = &reply->targets[i];
        if (t->is_addon && !strcmp(t->name, slot->name) && !strcmp(t->digest, digest))
            return t;
    }
    return NULL;
}

const char *config_wanted(const supervisor *sup, const pkg_slot *slot, const char *digest)
{
    const agent_target *t = target_for(sup, slot, digest);
    if (!t)
        return NULL;
    return t->config_digest[0] ? t->config_digest : CONFIG_NONE_DIGEST;
}

int config_stage(supervisor *sup, pkg_slot *slot, const char *digest)
{
    static const agent_policy_config none;
    const agent_target *t = target_for(sup, slot, digest);
    if (!t || !strcmp(t->config_digest, slot->config.digest) ||
        (t->config_digest[0] && !t->has_config))
        return 0;
    const char *identity = t->config_digest[0] ? t->config_digest : CONFIG_NONE_DIGEST;
    if (config_still_bad(sup, slot, identity, t->retry))
        return 0; /* the version goes on with the configuration it has */
    agent_policy_config next;
    if (agent_policy_config_copy(&next, t->config_digest[0] ? &t->config : &none) < 0)
        return 0;
    char why[MESSAGE_MAX] = "the journal cannot be written"; /* else write_config_file's */
    if (begin_apply(sup, slot, &next, t->retry, " with=upgrade") < 0)
        return 0;
    copy_status(sup->config_apply.step, "Swapping");
    if (state_save(sup) < 0 ||
        write_config_file(sup, slot, slot->config.file, why, sizeof why) < 0) {
        agent_log("warn",
                  "msg=\"cannot stage the configuration; the upgrade goes on without "
                  "it\" addon=%s error=\"%s\"",
                  slot->name, why);
        config_unstage(sup, slot);
        return 0;
    }
    return 1;
}

void config_unstage(supervisor *sup, pkg_slot *slot)
{
    if (!sup->config_apply.active || strcmp(sup->config_apply.name, slot->name))
        return;
    char why[256] = "";
    if (restore_previous(sup, slot, why, sizeof why) < 0)
        agent_log("error",
                  "msg=\"cannot restore the previous configuration\" addon=%s "
                  "error=\"%s\"",
                  slot->name, why);
    config_apply_clear(sup);
    state_save(sup);
}

void config_commit(supervisor *sup, pkg_slot *slot)
{
    if (!sup->config_apply.active || strcmp(sup->config_apply.name, slot->name))
        return;
    config_apply_clear(sup);
    agent_log("info", "msg=\"config applied\" addon=%s digest=%s with=upgrade", slot->name,
              slot->config.digest[0] ? slot->config.digest : "none");
    state_save(sup);
}

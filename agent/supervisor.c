/*
 * The Supervisor: keeps the collector and the addon sidecars running,
 * heartbeats to pkgstored and acts on its offers (upgrade.c runs the
 * steps, state.c keeps the slots and the journal).
 */
#include "supervisor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

/* ------------------------------------------------------------------ offers */

static void warn_reply(const char *what, void *payload)
{
    (void)payload;
    agent_log("warn", "msg=\"ignoring part of the heartbeat reply\" error=\"%s\"", what);
}

/* The version the node runs of package name (dependency checks). */
static const char *running_version(const char *name, void *payload)
{
    supervisor *sup = payload;
    pkg_slot *slot = !strcmp(name, sup->primary.name) ? &sup->primary : find_addon(sup, name);
    return slot && slot->digest[0] ? slot->version : NULL;
}

/* Is digest bad for this offer? An entry is cleared (and the digest tried
 * again) when the offer carries a larger retry generation than the one it
 * failed under, or, for a failed validation, when the collector's
 * configuration is not the one it failed with any more. */
static int still_bad(supervisor *sup, pkg_slot *slot, const agent_offer *o)
{
    bad_entry *bad = bad_find(sup, o->digest);
    if (!bad)
        return 0;
    if (!bad->retry_known) {
        /* it failed while running, out of any offer: the generation it
         * failed under is the one offered now, so only a later raise
         * retries it */
        bad->retry = o->retry;
        bad->retry_known = 1;
        state_save(sup);
        return 1;
    }
    if (o->retry > bad->retry) {
        agent_log("info", "msg=\"retry generation raised: trying a bad digest again\" package=%s "
                          "digest=%s retry=%u failed_under=%u reason=\"%s\"",
                  slot->name, o->digest, (unsigned)o->retry, (unsigned)bad->retry,
                  bad->reason ? bad->reason : "");
    } else if (bad->config_digest[0] && slot->is_addon) {
        /* it failed with the configuration its policy gave: a new one
         * may be what it needed */
        const char *now = config_wanted(sup, slot, o->digest);
        if (!now || !strcmp(now, bad->config_digest))
            return 1;
        agent_log("info", "msg=\"the addon's configuration changed since it failed: trying "
                          "again\" package=%s digest=%s config=%s",
                  slot->name, o->digest, now);
    } else if (bad->config_digest[0]) {
        char now[PKGSTORE_DIGEST_STR_SIZE];
        config_digest(sup, now);
        if (!now[0] || !strcmp(now, bad->config_digest))
            return 1;
        agent_log("info", "msg=\"collector configuration changed since the validation failed: "
                          "trying again\" package=%s digest=%s",
                  slot->name, o->digest);
    } else {
        return 1;
    }
    bad_remove(sup, bad);
    slot->attempts = 0;
    slot->retry_at = 0;
    slot->deferred[0] = '\0';
    state_save(sup);
    return 0;
}

/* Report once per offer why it is not acted on. */
static void defer(supervisor *sup, pkg_slot *slot, const agent_offer *o, const char *why)
{
    if (!strcmp(slot->deferred, o->digest))
        return;
    copy_digest(slot->deferred, o->digest);
    set_status(sup, slot, "UpgradeFailed", "%s", why);
}

/* Decide about one offer; maybe run an upgrade. Returns 1 if it ran. */
static int handle_offer(supervisor *sup, pkg_slot *slot, const agent_offer *o)
{
    if (strcmp(slot->offer_digest, o->digest) || slot->offer_retry != o->retry) {
        if (strcmp(slot->offer_digest, o->digest)) {
            /* Another digest: its transient failures are its own. Bad
             * digests stay bad whatever the offers do (no retry storm). */
            slot->attempts = 0;
            slot->retry_at = 0;
            slot->deferred[0] = '\0';
        }
        copy_digest(slot->offer_digest, o->digest);
        set_str(&slot->offer_version, o->version);
        slot->offer_retry = o->retry;
        state_save(sup);
    }
    if (!strcmp(slot->digest, o->digest))
        return 0; /* already running */
    if (still_bad(sup, slot, o))
        return 0;
    if (slot->retry_at && agent_now() < slot->retry_at)
        return 0;
    char why[MESSAGE_MAX];
    if (!agent_offer_deps_met(o, running_version, sup, why, sizeof why)) {
        char msg[MESSAGE_MAX + 16];
        snprintf(msg, sizeof msg, "dependencies: %s", why);
        defer(sup, slot, o, msg);
        return 0;
    }
    /* With trust.root: never a revoked version, never below the highest
     * version that ran here unless that one is revoked. Not remembered as
     * bad: a revocation that arrives later may allow it. */
    if (sup->trust.enabled &&
        agent_trust_version_allowed(&sup->trust, slot->name, o->version, slot->highest_version,
                                    why, sizeof why) < 0) {
        if (strcmp(slot->deferred, o->digest)) /* once per offer, as defer() reports */
            agent_log("warn", "msg=\"offer refused\" package=%s version=%s error=\"%s\"",
                      slot->name, o->version, why);
        defer(sup, slot, o, why);
        return 0;
    }
    if (!attempt_allowed(sup)) {
        snprintf(why, sizeof why,
                 "rate-limited: %u upgrade attempts within %.0f s (upgrade_limit); tried when the "
                 "window allows",
                 sup->cfg->limit_attempts, sup->cfg->limit_window_s);
        agent_log("warn", "msg=\"upgrade attempts rate-limited\" package=%s digest=%s limit=%u "
                          "window_s=%.0f",
                  slot->name, o->digest, sup->cfg->limit_attempts, sup->cfg->limit_window_s);
        defer(sup, slot, o, why);
        return 0;
    }
    slot->deferred[0] = '\0';
    upgrade(sup, slot, o);
    return 1;
}

/* A live binary whose version is unknown (a lost journal, a hand-installed
 * file) is named by the server's targets and offers with its digest. */
static void identify(supervisor *sup, const agent_reply *reply)
{
    for (size_t i = 0; i <= sup->addon_count; i++) {
        pkg_slot *slot = i == 0 ? &sup->primary : sup->addons[i - 1];
        if (slot->version || !slot->digest[0])
            continue;
        const char *version = NULL;
        for (size_t j = 0; j < reply->ntargets && !version; j++)
            if (!strcmp(reply->targets[j].name, slot->name) &&
                !strcmp(reply->targets[j].digest, slot->digest))
                version = reply->targets[j].version;
        for (size_t j = 0; j < reply->noffers && !version; j++)
            if (!strcmp(reply->offers[j].name, slot->name) &&
                !strcmp(reply->offers[j].digest, slot->digest))
                version = reply->offers[j].version;
        if (!version)
            continue;
        agent_log("info", "msg=\"identified the live binary by its digest\" package=%s version=%s "
                          "digest=%s",
                  slot->name, version, slot->digest);
        set_str(&slot->version, version);
        state_save(sup);
    }
}

/* A new root may trust what the old one did not (a new key): the digests
 * refused for their signatures are judged again, each once. */
static void forget_signature_failures(supervisor *sup)
{
    size_t forgotten = 0;
    for (size_t i = 0; i < sup->nbad;) {
        const char *reason = sup->bad[i].reason;
        if (reason && !strncmp(reason, "signature: ", 11)) {
            bad_remove(sup, &sup->bad[i]);
            forgotten++;
        } else {
            i++;
        }
    }
    for (size_t i = 0; i <= sup->addon_count; i++) {
        pkg_slot *slot = i == 0 ? &sup->primary : sup->addons[i - 1];
        slot->deferred[0] = '\0';
    }
    if (forgotten) {
        agent_log("info", "msg=\"new root: offers refused for their signatures are checked "
                          "again\" count=%zu", forgotten);
        state_save(sup);
    }
}

static void process_offers(supervisor *sup, const agent_reply *reply, int *upgraded_out)
{
    for (size_t i = 0; i < reply->noffers; i++) {
        if (agent_stop_requested())
            return;
        const agent_offer *o = &reply->offers[i];
        pkg_slot *slot = NULL;
        if (!o->is_addon) {
            if (strcmp(o->name, sup->cfg->package)) {
                agent_log("warn", "msg=\"ignoring an offer for another primary package\" "
                                  "package=%s collector=%s", o->name, sup->cfg->package);
                continue;
            }
            slot = &sup->primary;
        } else {
            slot = find_addon(sup, o->name);
            if (!slot && !(slot = add_addon(sup, o->name, o->entrypoint)))
                continue;
        }
        if (handle_offer(sup, slot, o))
            *upgraded_out = 1;
    }
    if (agent_stop_requested())
        return;
    /* The addon contract (docs/api.md): an addon stays while a policy
     * targets it; it is removed only when the reply lists targets and
     * neither they nor the offers name it. */
    for (size_t i = 0; i < sup->addon_count;) {
        pkg_slot *slot = sup->addons[i];
        if (agent_reply_keeps_addon(reply, slot->name)) {
            i++;
            continue;
        }
        agent_log("info", "msg=\"addon no longer targeted, removing\" addon=%s", slot->name);
        slot_stop(sup, slot, SIGTERM);
        char *dir = addon_dir(sup, slot->name);
        if (agent_remove_tree(dir) < 0)
            agent_log("warn", "msg=\"cannot remove addon directory\" dir=%s error=\"%s\"", dir,
                      agent_error());
        free(dir);
        char *keep = kept_path(sup, slot);
        if (keep)
            unlink(keep);
        free(keep);
        remove_addon(sup, slot);
        *upgraded_out = 1;
        state_save(sup);
    }
}

int supervisor_heartbeat(supervisor *sup, int *upgraded_out)
{
    *upgraded_out = 0;
    char *text = NULL;
    int rc = heartbeat_post(sup, &text, sup->cfg->http_timeout_s);
    if (rc < 0)
        return rc;
    agent_reply reply;
    rc = agent_reply_parse(&reply, text, strlen(text), warn_reply, NULL);
    free(text);
    if (rc < 0)
        return rc;
    sup->server_interval_s = reply.interval_s;
    if (sup->server_interval_s && (sup->server_interval_s < 0.1 || sup->server_interval_s > 86400)) {
        /* pkgstored sends 1 s .. 1 day; anything else would make us hammer
         * the server or go silent for good. Keep our configured interval. */
        agent_log("warn", "msg=\"ignoring the server's heartbeat interval\" interval_s=%g",
                  sup->server_interval_s);
        sup->server_interval_s = 0;
    }
    identify(sup, &reply);
    /* a rotated root first: the offers of this reply may be signed by it */
    uint64_t root_before = sup->trust.version;
    agent_trust_update_root(&sup->trust, sup->cfg, sup->tmp_dir, reply.trust_root_version);
    if (sup->trust.version != root_before)
        forget_signature_failures(sup);
    agent_trust_update_revocations(&sup->trust, sup->cfg, reply.trust_revocations);
    sup->reply = &reply;
    process_offers(sup, &reply, upgraded_out);
    if (!agent_stop_requested())
        process_configs(sup, &reply, upgraded_out);
    sup->reply = NULL;
    agent_reply_free(&reply);
    return 0;
}

/* ------------------------------------------------------------------ after the pump */

/* The watchdog ended without a verdict: the binary is known good, and an
 * addon's old entrypoint (kept for a rollback) can go. */
static void watch_end(supervisor *sup, pkg_slot *slot)
{
    agent_log("info", "msg=\"watchdog passed\" package=%s version=%s crashes=%u", slot->name,
              slot->version ? slot->version : "-", slot->watch_crashes);
    slot_mark_good(slot, slot->exe_digest);
    if (slot->watch_moved && slot->watch_old_entrypoint) {
        char *old = addon_executable(sup, slot->name, slot->watch_old_entrypoint);
        if (old && strcmp(old, slot->executable)) {
            unlink(old);
            char *bak = agent_strdup_printf("%s.bak", old);
            if (bak)
                unlink(bak);
            free(bak);
        }
        free(old);
    }
    slot->watch_until = 0;
    slot->watch_crashes = 0;
    slot->watch_moved = 0;
    set_str(&slot->watch_old_entrypoint, NULL);
    state_save(sup);
}

/* The digest of <executable>.bak, "" when there is none. */
static void bak_digest(const pkg_slot *slot, char out[PKGSTORE_DIGEST_STR_SIZE])
{
    out[0] = '\0';
    char *bak = agent_strdup_printf("%s.bak", slot->executable);
    if (bak && access(bak, F_OK) == 0 && agent_file_digest(out, bak) < 0)
        out[0] = '\0';
    free(bak);
}

static int slot_tick(supervisor *sup, pkg_slot *slot)
{
    const agent_config *cfg = sup->cfg;
    int changed = 0;
    if (slot->spawn_failed) {
        slot->spawn_failed = 0;
        heal(sup, slot);
        changed = 1;
    }
    if (slot->crashed) {
        slot->crashed = 0;
        char how[96];
        agent_describe_status(how, sizeof how, slot->proc.wait_status);
        if (slot->watch_until && wall_now() < slot->watch_until) {
            slot->watch_crashes++;
            agent_log("warn", "msg=\"crash within the watchdog window\" package=%s version=%s "
                              "crashes=%u of=%u status=\"%s\"",
                      slot->name, slot->version ? slot->version : "-", slot->watch_crashes,
                      cfg->watchdog_crashes, how);
            state_save(sup);
            if (slot->watch_crashes >= cfg->watchdog_crashes) {
                char why[MESSAGE_MAX];
                snprintf(why, sizeof why,
                         "watchdog: crashed %u times within %.0f s of the upgrade (last: %s)",
                         slot->watch_crashes, cfg->watchdog_window_s, how);
                rollback_running(sup, slot, why);
                changed = 1;
            }
        } else if (cfg->watchdog_crashes && slot->proc.failures >= cfg->watchdog_crashes &&
                   slot->exe_digest[0] && !slot_is_good(slot, slot->exe_digest)) {
            /* A crash loop of a binary nobody vouched for (a lost
             * journal, a file put there by hand): the .bak ran before. */
            char bak[PKGSTORE_DIGEST_STR_SIZE];
            bak_digest(slot, bak);
            if (bak[0] && strcmp(bak, slot->exe_digest)) {
                char why[MESSAGE_MAX];
                snprintf(why, sizeof why,
                         "crash loop: %u exits in a row (last: %s) of a binary that is not "
                         "known good",
                         slot->proc.failures, how);
                rollback_running(sup, slot, why);
                changed = 1;
            }
        }
    }
    if (slot->watch_until && wall_now() >= slot->watch_until)
        watch_end(sup, slot);
    return changed;
}

int supervisor_tick(supervisor *sup)
{
    int changed = 0;
    for (size_t i = 0; i <= sup->addon_count && !agent_stop_requested(); i++)
        changed |= slot_tick(sup, i == 0 ? &sup->primary : sup->addons[i - 1]);
    return changed;
}

/* ------------------------------------------------------------------ lifecycle */

int supervisor_init(supervisor *sup, agent_config *cfg)
{
    memset(sup, 0, sizeof *sup);
    sup->cfg = cfg;
    sup->lock_fd = -1;
    /* The lock first: a second agent on this state_dir touches nothing. */
    if (agent_mkdirs(cfg->state_dir, 0755) < 0)
        return agent_error_set(PKGSTORE_EIO, "%s: cannot create: %s", cfg->state_dir,
                               strerror(errno));
    int rc = state_lock(sup);
    if (rc < 0)
        return rc;
    sup->state_path = agent_strdup_printf("%s/state.json", cfg->state_dir);
    sup->copy_path = agent_strdup_printf("%s/state.copy.json", cfg->state_dir);
    sup->tmp_dir = agent_strdup_printf("%s/tmp", cfg->state_dir);
    char *addons = agent_strdup_printf("%s/addons", cfg->state_dir);
    char *run = agent_strdup_printf("%s/run", cfg->state_dir);
    char *keep = agent_strdup_printf("%s/keep", cfg->state_dir);
    if (!sup->state_path || !sup->copy_path || !sup->tmp_dir || !addons || !run || !keep)
        rc = agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    else if (agent_mkdirs(sup->tmp_dir, 0700) < 0 || agent_mkdirs(addons, 0755) < 0 ||
             agent_mkdirs(run, 0755) < 0 || agent_mkdirs(keep, 0700) < 0)
        rc = agent_error_set(PKGSTORE_EIO, "%s: cannot create: %s", cfg->state_dir, strerror(errno));
    free(addons);
    free(run);
    free(keep);
    if (rc < 0)
        return rc;
    agent_proc_set_marker_dir(cfg->state_dir);
    slot_init(&sup->primary, cfg->package, 0, cfg->executable, cfg);
    srand48((long)time(NULL) ^ (long)getpid());
    if ((rc = state_load(sup)) < 0)
        return rc;
    return agent_trust_init(&sup->trust, cfg);
}

void supervisor_free(supervisor *sup)
{
    agent_trust_free(&sup->trust);
    slot_free(&sup->primary);
    for (size_t i = 0; i < sup->addon_count; i++) {
        slot_free(sup->addons[i]);
        free(sup->addons[i]);
    }
    free(sup->addons);
    upgrade_clear(sup);
    config_apply_clear(sup);
    while (sup->nbad)
        bad_remove(sup, &sup->bad[0]);
    free(sup->attempt_times);
    free(sup->state_path);
    free(sup->copy_path);
    free(sup->tmp_dir);
    if (sup->lock_fd >= 0)
        close(sup->lock_fd);
    agent_proc_set_marker_dir(NULL);
    memset(sup, 0, sizeof *sup);
    sup->lock_fd = -1;
}

/* What is on disk is the truth about what runs. A slot's digest is its
 * package's (an archive's, say); exe_digest is the installed file's. */
static void check_live(supervisor *sup, pkg_slot *slot)
{
    char actual[PKGSTORE_DIGEST_STR_SIZE];
    clean_install_leftovers(slot->executable);
    int rc = agent_file_digest(actual, slot->executable);
    if (rc == PKGSTORE_ENOTFOUND) {
        if (slot->exe_digest[0] || slot->digest[0]) {
            agent_log("warn", "msg=\"executable missing\" package=%s path=%s", slot->name,
                      slot->executable);
            heal(sup, slot);
        }
        return;
    }
    if (rc < 0) {
        /* It is there and it runs; what it is is decided next time. */
        agent_log("warn", "msg=\"cannot hash the executable, keeping the journal's digest\" "
                          "package=%s path=%s error=\"%s\"",
                  slot->name, slot->executable, agent_error());
        return;
    }
    if (!strcmp(actual, slot->exe_digest)) {
        if (strcmp(slot->kept_digest, slot->exe_digest))
            keep_live(sup, slot);
        return;
    }
    if (!slot->exe_digest[0] && !strcmp(actual, slot->digest)) {
        copy_digest(slot->exe_digest, actual); /* a journal older than exe_digest */
        keep_live(sup, slot);
        return;
    }
    /* Not what we installed: someone put it there, or the journal is
     * gone. Only a fresh state_dir's first binary takes the configured
     * version; otherwise the version is unknown until the server names
     * the digest (supervisor_heartbeat). */
    int initial = !slot->is_addon && sup->first_start;
    set_str(&slot->version, initial ? sup->cfg->initial_version : NULL);
    copy_digest(slot->digest, actual);
    copy_digest(slot->exe_digest, actual);
    if (initial)
        slot_mark_good(slot, actual); /* what the operator installed */
    agent_log("info", "msg=\"live executable identified by its digest\" package=%s digest=%s "
                      "version=%s",
              slot->name, actual, slot->version ? slot->version : "unknown");
    keep_live(sup, slot);
}

int supervisor_start(supervisor *sup)
{
    stop_leftovers(sup);
    sup->quiet = 1; /* start the collector first, report on the first heartbeat */
    recover(sup);
    recover_config(sup);
    for (size_t i = 0; i <= sup->addon_count; i++) {
        check_live(sup, i == 0 ? &sup->primary : sup->addons[i - 1]);
        /* what runs at start counts for the anti-rollback floor */
        slot_note_highest(i == 0 ? &sup->primary : sup->addons[i - 1]);
    }
    sup->quiet = 0;
    state_save(sup);
    for (size_t i = 0; i <= sup->addon_count; i++) {
        pkg_slot *slot = i == 0 ? &sup->primary : sup->addons[i - 1];
        if (slot->proc.pid)
            continue; /* heal started it */
        if (access(slot->executable, F_OK) == 0)
            slot_start(sup, slot, 1);
        else if (!slot->is_addon)
            agent_log("warn", "msg=\"no collector binary yet, waiting for an offer\" path=%s",
                      slot->executable);
    }
    return 0;
}

void supervisor_shutdown(supervisor *sup, int sig)
{
    for (size_t i = 0; i < sup->addon_count; i++)
        if (sup->addons[i]->proc.pid)
            kill(-sup->addons[i]->proc.pid, sig);
    slot_stop(sup, &sup->primary, sig);
    for (size_t i = 0; i < sup->addon_count; i++)
        slot_stop(sup, sup->addons[i], sig);
    state_save(sup);
}

/*
 * Keeping a node healthy after an upgrade: the kept copy of each live
 * executable (state_dir/keep/, a second hard link), healing a live
 * executable that was deleted or damaged, and rolling a running program
 * back to its .bak when the watchdog or a crash loop says so.
 */
#include "supervisor.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void config_digest(supervisor *sup, char out[PKGSTORE_DIGEST_STR_SIZE])
{
    if (agent_file_digest(out, sup->cfg->collector_config) < 0)
        out[0] = '\0';
}

void keep_live(supervisor *sup, pkg_slot *slot)
{
    char *keep = kept_path(sup, slot);
    if (!keep || !slot->exe_digest[0]) {
        free(keep);
        return;
    }
    if (pkgstore_install_link_atomic(keep, slot->executable) < 0) {
        agent_log("warn", "msg=\"cannot keep a copy of the live executable\" path=%s error=\"%s\"",
                  keep, pkgstore_error_detail());
        slot->kept_digest[0] = '\0';
    } else {
        copy_digest(slot->kept_digest, slot->exe_digest);
    }
    free(keep);
}

/* The slot now runs whatever is live: known when it is the .bak recorded
 * (prev_*), else identified by its digest, version unknown. */
static void slot_from_live(pkg_slot *slot)
{
    char live[PKGSTORE_DIGEST_STR_SIZE] = "";
    if (agent_file_digest(live, slot->executable) < 0)
        live[0] = '\0';
    if (live[0] && !strcmp(live, slot->prev_exe_digest)) {
        set_str(&slot->version, slot->prev_version);
        copy_digest(slot->digest, slot->prev_digest[0] ? slot->prev_digest : live);
    } else {
        set_str(&slot->version, NULL);
        copy_digest(slot->digest, live);
    }
    copy_digest(slot->exe_digest, live);
}

void rollback_running(supervisor *sup, pkg_slot *slot, const char *why)
{
    char failed[PKGSTORE_DIGEST_STR_SIZE];
    copy_digest(failed, slot->digest);
    agent_log("warn", "msg=\"rolling back a running package\" package=%s version=%s reason=\"%s\"",
              slot->name, slot->version ? slot->version : "-", why);
    slot_stop(sup, slot, SIGTERM);
    char msg[MESSAGE_MAX];
    int restored = 0;
    if (slot->watch_moved && slot->watch_old_entrypoint) {
        /* a renamed addon entrypoint: its old path still holds the
         * previous version */
        char *old = addon_executable(sup, slot->name, slot->watch_old_entrypoint);
        if (old && access(old, F_OK) == 0) {
            unlink_with_bak(slot->executable);
            set_str(&slot->executable, old);
            set_str(&slot->entrypoint, slot->watch_old_entrypoint);
            restored = 1;
        }
        free(old);
    } else if (pkgstore_install_has_backup(slot->executable) == 1) {
        if (pkgstore_install_restore(slot->executable) == 0)
            restored = 1;
        else
            agent_log("error", "msg=\"rollback failed\" package=%s error=\"%s\"", slot->name,
                      pkgstore_error_detail());
    }
    /* the generation it failed under: its offer's, when that is the
     * offer last seen for it, else unknown (the next offer's counts) */
    bad_add(sup, failed, slot->name, why,
            !strcmp(slot->offer_digest, failed) ? slot->offer_retry : BAD_RETRY_UNKNOWN, NULL);
    slot->watch_until = 0;
    slot->watch_crashes = 0;
    slot->watch_moved = 0;
    set_str(&slot->watch_old_entrypoint, NULL);
    slot->proc.failures = 0;
    if (!restored) {
        /* nothing to go back to: the binary keeps its restarts */
        snprintf(msg, sizeof msg, "%.400s; no previous binary to go back to", why);
        slot_start(sup, slot, 1);
        set_status(sup, slot, "RollbackFailed", "%s", msg);
        return;
    }
    slot_from_live(slot);
    keep_live(sup, slot);
    slot_start(sup, slot, 1);
    snprintf(msg, sizeof msg, "%.400s; restored the previous binary", why);
    set_status(sup, slot, "RolledBack", "%s", msg);
}

void heal(supervisor *sup, pkg_slot *slot)
{
    char live[PKGSTORE_DIGEST_STR_SIZE] = "";
    int rc = agent_file_digest(live, slot->executable);
    if (rc < 0 && rc != PKGSTORE_ENOTFOUND)
        return; /* cannot tell: the restarts go on with their backoff */
    if (rc == 0 && (!slot->exe_digest[0] || !strcmp(live, slot->exe_digest)))
        return; /* it is what we installed: not the binary's fault */
    agent_log("warn", "msg=\"live executable %s\" package=%s path=%s expected=%s",
              rc == 0 ? "damaged" : "missing", slot->name, slot->executable,
              slot->exe_digest[0] ? slot->exe_digest : "-");
    int was_supervised = slot->proc.supervised || slot->proc.restart_at;
    agent_proc_stop(&slot->proc, SIGTERM, 0); /* no restarts of a missing file */
    clean_install_leftovers(slot->executable);

    /* 1. the kept copy, when it is still the binary recorded */
    char *keep = kept_path(sup, slot);
    char kept[PKGSTORE_DIGEST_STR_SIZE] = "";
    if (keep && slot->exe_digest[0] && !strcmp(slot->kept_digest, slot->exe_digest) &&
        agent_file_digest(kept, keep) == 0 && !strcmp(kept, slot->exe_digest)) {
        if (pkgstore_install_link_atomic(slot->executable, keep) == 0) {
            agent_log("warn", "msg=\"restored the live executable from its kept copy\" package=%s "
                              "path=%s digest=%s",
                      slot->name, slot->executable, slot->exe_digest);
            free(keep);
            if (was_supervised || !slot->is_addon)
                slot_start(sup, slot, 1);
            state_save(sup);
            return;
        }
        agent_log("error", "msg=\"cannot restore the kept copy\" path=%s error=\"%s\"", keep,
                  pkgstore_error_detail());
    }
    free(keep);

    /* 2. the previous binary */
    if (pkgstore_install_has_backup(slot->executable) == 1 &&
        pkgstore_install_restore(slot->executable) == 0) {
        slot_from_live(slot);
        keep_live(sup, slot);
        slot_start(sup, slot, 1);
        set_status(sup, slot, "RolledBack",
                   "the live executable was %s and its kept copy was not usable: restored the "
                   "previous binary (.bak)",
                   rc == 0 ? "damaged" : "missing");
        return;
    }

    /* 3. nothing to restore: report it as not installed, and the server
     * offers what the policy says again */
    agent_log("error", "msg=\"no copy of the executable to restore, waiting for an offer\" "
                       "package=%s path=%s",
              slot->name, slot->executable);
    if (rc == 0 && unlink(slot->executable) < 0 && errno != ENOENT)
        agent_log("warn", "msg=\"cannot remove the damaged executable\" path=%s", slot->executable);
    set_str(&slot->version, NULL);
    slot->digest[0] = slot->exe_digest[0] = slot->kept_digest[0] = '\0';
    state_save(sup);
}

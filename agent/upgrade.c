/*
 * The six upgrade steps of DESIGN.md (Downloading, Verifying, Validating,
 * Swapping, Monitoring, Upgraded) with automatic fallback (UpgradeFailed,
 * RolledBack, RollbackFailed), each journaled and reported to the server
 * as it starts, and the recovery of an upgrade interrupted by the agent's
 * death. heal.c keeps a node healthy after the upgrade.
 */
#include "supervisor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

/* ------------------------------------------------------------------ validate */

static void first_lines(char *out, size_t len, const char *text)
{
    size_t n = 0;
    int lines = 0;
    out[0] = '\0';
    while (*text && lines < 4 && n + 4 < len) {
        const char *end = strchr(text, '\n');
        size_t l = end ? (size_t)(end - text) : strlen(text);
        if (l > 0) {
            if (lines > 0)
                n += (size_t)snprintf(out + n, len - n, " | ");
            if (n < len) {
                size_t room = len - n - 1;
                size_t take = l < room ? l : room;
                memcpy(out + n, text, take);
                n += take;
                out[n] = '\0';
            }
            lines++;
        }
        if (!end)
            break;
        text = end + 1;
    }
}

/* The outcomes of run_validate() other than 0 (passed). */
enum { VALIDATE_FAILED = -1, VALIDATE_TIMEOUT = -2, VALIDATE_STOPPED = -3 };

static int run_validate(supervisor *sup, const char *candidate, char *why, size_t why_len)
{
    const agent_config *cfg = sup->cfg;
    agent_kv var_items[] = {{"executable", (char *)candidate}, {"config", cfg->collector_config}};
    agent_kvv vars = {var_items, 2};
    char *template_copy = strdup(cfg->validate_command);
    char **argv = calloc(strlen(cfg->validate_command) / 2 + 2, sizeof *argv);
    size_t argc = 0;
    if (!template_copy || !argv) {
        free(template_copy);
        free(argv);
        snprintf(why, why_len, "validate: out of memory");
        return VALIDATE_TIMEOUT;
    }
    char *save = NULL;
    for (char *tok = strtok_r(template_copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save))
        argv[argc++] = agent_expand(tok, &vars);
    free(template_copy);
    if (argc == 0) {
        agent_argv_free(argv);
        snprintf(why, why_len, "validate: empty validate_command");
        return VALIDATE_FAILED;
    }
    agent_run_opts opts = {.name = "validate", .argv = argv, .merge_stderr = 1,
                           .timeout_s = cfg->validate_timeout_s, .interruptible = 1,
                           .max_output = 8192};
    agent_run_result res;
    int rc = agent_run(&opts, &res);
    agent_argv_free(argv);
    if (rc < 0) {
        snprintf(why, why_len, "validate: %s", agent_error());
        return VALIDATE_TIMEOUT; /* it did not run: no verdict on the binary */
    }
    const char *output = res.output ? res.output : "";
    int timed_out = res.outcome == AGENT_RUN_TIMEOUT ? 1 : res.outcome == AGENT_RUN_STOPPED ? -1 : 0;
    char lines[MESSAGE_MAX];
    first_lines(lines, sizeof lines, output);
    int wait_status = res.wait_status;
    free(res.output);
    if (timed_out > 0) {
        snprintf(why, why_len, "validate: timed out after %.1f s%s%.400s", cfg->validate_timeout_s,
                 lines[0] ? ": " : "", lines);
        return VALIDATE_TIMEOUT;
    }
    if (timed_out < 0) {
        snprintf(why, why_len, "validate: interrupted by stop request");
        return VALIDATE_STOPPED;
    }
    if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
        char how[96];
        agent_describe_status(how, sizeof how, wait_status);
        snprintf(why, why_len, "validate: %s%s%.400s", how, lines[0] ? ": " : "", lines);
        return VALIDATE_FAILED;
    }
    agent_log("info", "msg=\"validate passed\" output=\"%s\"", lines);
    return 0;
}

/* ------------------------------------------------------------------ monitor */

static int health_check(const agent_health_spec *spec, char *why, size_t why_len)
{
    if (spec->port_count) {
        int missing = 0;
        if (agent_ports_bound(spec->ports, spec->port_count, &missing) < 0) {
            snprintf(why, why_len, "port %d not bound", missing);
            return -1;
        }
    }
    if (spec->health_url) {
        if (agent_helper_call(NULL, NULL, 1.0, AGENT_HELPER_NO_TOKEN, "health", spec->health_url, NULL) < 0) {
            snprintf(why, why_len, "health %s: %s", spec->health_url, agent_error());
            return -1;
        }
    }
    return 0;
}

/* Watch a freshly swapped program for the window. 0 if it stayed alive
 * and is healthy at the end; else -1 with the reason in why. */
int monitor_slot(supervisor *sup, pkg_slot *slot, char *why, size_t why_len)
{
    double stop_timeout;
    const agent_health_spec *spec = slot_health(sup, slot, &stop_timeout);
    double start = agent_now(), end = start + spec->monitor_window_s;
    char last[256] = "";
    int healthy = 0;
    for (;;) {
        if (!slot->proc.pid) {
            char how[96];
            if (slot->proc.exited)
                agent_describe_status(how, sizeof how, slot->proc.wait_status);
            else
                snprintf(how, sizeof how, "did not start: %s", agent_error());
            snprintf(why, why_len, "monitor: process %s after %.1f s (window %.0f s)", how,
                     agent_now() - start, spec->monitor_window_s);
            return -1;
        }
        if (agent_stop_requested()) {
            snprintf(why, why_len, "monitor: agent stopped during the window");
            return -1;
        }
        /* Only death counts inside the window (SIGCHLD wakes the pump);
         * ports and health are judged at its end. */
        double nap = end - agent_now();
        if (nap <= 0)
            break;
        agent_pump(nap);
    }
    /* The end of the window: alive, ports bound, health 200 (a short grace
     * lets a check that was in flight settle). */
    double grace_end = agent_now() + 2.0;
    while (!(healthy = health_check(spec, last, sizeof last) == 0) && agent_now() < grace_end &&
           slot->proc.pid && !agent_stop_requested())
        agent_pump(0.2);
    if (!slot->proc.pid) {
        char how[96];
        agent_describe_status(how, sizeof how, slot->proc.wait_status);
        snprintf(why, why_len, "monitor: process %s at the end of the window", how);
        return -1;
    }
    if (!healthy) {
        snprintf(why, why_len, "monitor: %s", last);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ upgrade */


/* ------------------------------------------------------------------ upgrade */

static void fail_transient(supervisor *sup, pkg_slot *slot, const char *status, const char *why)
{
    slot->attempts++;
    double delay = retry_delay(sup->cfg, slot->attempts);
    slot->retry_at = agent_now() + delay;
    upgrade_clear(sup);
    set_status(sup, slot, status, "%s (attempt %u, retry in %.0f s)", why, slot->attempts, delay);
}

/* The digest failed on its merits: remembered as bad (with the config it
 * was validated against, when a validation failed) until an offer carries
 * a larger retry generation. */
static void fail_bad(supervisor *sup, pkg_slot *slot, const char *status, const char *why,
                     const char *config)
{
    bad_add(sup, sup->upgrade.digest, slot->name, why, sup->upgrade.retry, config);
    slot->attempts = 0;
    slot->retry_at = 0;
    upgrade_clear(sup);
    set_status(sup, slot, status, "%s", why);
}

void unlink_with_bak(const char *path)
{
    char *bak = agent_strdup_printf("%s.bak", path);
    if (unlink(path) < 0 && errno != ENOENT)
        agent_log("warn", "msg=\"cannot remove\" path=%s error=\"%s\"", path, strerror(errno));
    if (bak)
        unlink(bak);
    free(bak);
}

/* Addons whose entrypoint was renamed: go back to the old path (never
 * touched) and, with remove_new, delete what was installed at the new one. */
static void undo_move(supervisor *sup, pkg_slot *slot, int remove_new)
{
    if (!sup->upgrade.old_executable)
        return;
    if (remove_new)
        unlink_with_bak(slot->executable);
    set_str(&slot->executable, sup->upgrade.old_executable);
    set_str(&slot->entrypoint, sup->upgrade.old_entrypoint);
}

/* Is the new binary live? Only the swap's last rename puts it there.
 * 1 yes, 0 no (the previous binary, or nothing, is still there), -1 the
 * live file could not be hashed. */
static int new_binary_live(supervisor *sup, pkg_slot *slot)
{
    char live[PKGSTORE_DIGEST_STR_SIZE];
    int rc = agent_file_digest(live, slot->executable);
    if (rc == PKGSTORE_ENOTFOUND)
        return 0;
    if (rc < 0) {
        agent_log("warn", "msg=\"cannot hash the live executable\" path=%s error=\"%s\"",
                  slot->executable, agent_error());
        return -1;
    }
    if (sup->upgrade.exe_digest[0])
        return !strcmp(live, sup->upgrade.exe_digest);
    /* a journal written before exe_digest was recorded */
    if (sup->upgrade.old_exe_digest[0])
        return strcmp(live, sup->upgrade.old_exe_digest) != 0;
    return -1;
}

/* Put the previous binary back at the live path: nothing to do if the new
 * one never got there, else restore the .bak, or remove the new file when
 * there was no previous one. 0, or <0 with detail. */
static int put_back(supervisor *sup, pkg_slot *slot, char *detail, size_t len)
{
    if (sup->upgrade.old_executable) {
        undo_move(sup, slot, 1);
        return 0;
    }
    if (new_binary_live(sup, slot) == 0)
        return 0;
    if (sup->upgrade.had_old) {
        int rc = pkgstore_install_restore(slot->executable);
        if (rc < 0)
            snprintf(detail, len, "%s", pkgstore_error_detail());
        return rc;
    }
    if (unlink(slot->executable) < 0 && errno != ENOENT) {
        snprintf(detail, len, "%s: %s", slot->executable, strerror(errno));
        return -1;
    }
    return 0;
}

/* The slot runs what it ran before the upgrade. */
static void slot_set_previous(supervisor *sup, pkg_slot *slot)
{
    set_str(&slot->version, sup->upgrade.had_old ? sup->upgrade.old_version : NULL);
    copy_digest(slot->digest, sup->upgrade.had_old ? sup->upgrade.old_digest : "");
    copy_digest(slot->exe_digest, sup->upgrade.had_old ? sup->upgrade.old_exe_digest : "");
}

/* After the swap: stop the new program, put the previous one back (and
 * the configuration it ran with, when one from its policy came with it:
 * the pair failed, so the binary is bad with that configuration only). */
static void rollback(supervisor *sup, pkg_slot *slot, const char *why, int transient)
{
    char staged[PKGSTORE_DIGEST_STR_SIZE] = "";
    if (sup->config_apply.active && !strcmp(sup->config_apply.name, slot->name))
        snprintf(staged, sizeof staged, "%s",
                 slot->config.digest[0] ? slot->config.digest : CONFIG_NONE_DIGEST);
    slot_stop(sup, slot, SIGTERM);
    char detail[256] = "";
    if (put_back(sup, slot, detail, sizeof detail) < 0) {
        /* The new binary stays; run it rather than nothing. */
        agent_log("error", "msg=\"rollback failed\" package=%s error=\"%s\"", slot->name, detail);
        config_commit(sup, slot);
        slot_start(sup, slot, 1);
        char msg[MESSAGE_MAX];
        snprintf(msg, sizeof msg, "%.300s; restore: %.150s", why, detail);
        fail_bad(sup, slot, "RollbackFailed", msg, NULL);
        return;
    }
    slot_set_previous(sup, slot);
    config_unstage(sup, slot);
    if (!agent_stop_requested())
        slot_start(sup, slot, 1);
    char msg[MESSAGE_MAX];
    snprintf(msg, sizeof msg, "%.400s; %s%s", why,
             sup->upgrade.had_old ? "restored the previous binary" : "removed (no previous binary)",
             staged[0] ? " and configuration" : "");
    if (transient)
        fail_transient(sup, slot, "RolledBack", msg);
    else
        fail_bad(sup, slot, "RolledBack", msg, staged[0] ? staged : NULL);
}

static char *resolve_url(const supervisor *sup, const char *url, int *with_token)
{
    const char *server = sup->cfg->server_url;
    size_t slen = strlen(server);
    if (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8)) {
        /* The token goes only to our own server, never to a mirror. */
        *with_token = !strncmp(url, server, slen) && (url[slen] == '/' || url[slen] == '\0');
        return strdup(url);
    }
    *with_token = 1;
    return agent_strdup_printf("%s%s%s", server, url[0] == '/' ? "" : "/", url);
}

/* An addon's args and env from its offer's annotations, held aside until
 * the version they belong to has passed its monitor window. */
typedef struct manifest_args {
    agent_strv args;
    agent_kvv env;
    int has;
} manifest_args;

static void exchange_args(pkg_slot *slot, manifest_args *m)
{
    agent_strv args = slot->args;
    agent_kvv env = slot->env;
    int has = slot->has_manifest_args;
    slot->args = m->args;
    slot->env = m->env;
    slot->has_manifest_args = m->has;
    m->args = args;
    m->env = env;
    m->has = has;
}

static int copy_strv(agent_strv *out, const agent_strv *in)
{
    out->items = calloc(in->count + 1, sizeof *out->items);
    for (size_t i = 0; out->items && i < in->count; i++)
        if ((out->items[out->count] = strdup(in->items[i])))
            out->count++;
    return out->items && out->count == in->count ? 0 : -1;
}

static int copy_kvv(agent_kvv *out, const agent_kvv *in)
{
    out->items = calloc(in->count + 1, sizeof *out->items);
    for (size_t i = 0; out->items && i < in->count; i++) {
        out->items[out->count].key = strdup(in->items[i].key);
        out->items[out->count].value = strdup(in->items[i].value);
        out->count++;
        if (!out->items[out->count - 1].key || !out->items[out->count - 1].value)
            return -1;
    }
    return out->items ? 0 : -1;
}

/* Is name "<hex>.part" for a digest some slot is offered right now? */
static int part_still_offered(const supervisor *sup, const char *name)
{
    size_t len = strlen(name);
    if (len != PKGSTORE_DIGEST_HEX_LEN + 5 || strcmp(name + PKGSTORE_DIGEST_HEX_LEN, ".part"))
        return 0;
    for (size_t i = 0; i <= sup->addon_count; i++) {
        const pkg_slot *slot = i == 0 ? &sup->primary : sup->addons[i - 1];
        const char *hex = strchr(slot->offer_digest, ':');
        if (hex && !strncmp(hex + 1, name, PKGSTORE_DIGEST_HEX_LEN))
            return 1;
    }
    return 0;
}

/* Only one upgrade runs at a time, so anything else in tmp_dir is left
 * over: an extraction directory or a verified download ("<hex>.ready")
 * from an agent that died while validating, or a part of a digest no
 * longer offered. Parts still offered are kept so that their download can
 * resume. */
static void clean_tmp(const supervisor *sup)
{
    DIR *dir = opendir(sup->tmp_dir);
    if (!dir)
        return;
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        const char *name = entry->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..") || part_still_offered(sup, name))
            continue;
        char *path = agent_strdup_printf("%s/%s", sup->tmp_dir, name);
        if (!path)
            continue;
        struct stat st;
        int rc = 0;
        if (lstat(path, &st) == 0)
            rc = S_ISDIR(st.st_mode) ? agent_remove_tree(path) : unlink(path);
        if (rc < 0)
            agent_log("warn", "msg=\"cannot remove a leftover\" path=%s", path);
        else
            agent_log("info", "msg=\"removed a leftover\" path=%s", path);
        free(path);
    }
    closedir(dir);
}

/* The temporary names a kill during a swap or a restore can leave beside
 * a live executable (pkgstore/install.h); the next install would replace
 * them, but nothing else removes them. */
void clean_install_leftovers(const char *executable)
{
    static const char *const suffixes[] = {".bak.tmp", ".new.tmp", ".restore.tmp",
                                           ".check.tmp", ".check2.tmp"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char *path = agent_strdup_printf("%s%s", executable, suffixes[i]);
        if (path && unlink(path) == 0)
            agent_log("info", "msg=\"removed a leftover\" path=%s", path);
        free(path);
    }
}

/* The prepared executable: its path and its extraction directory
 * (archives). */
typedef struct prepared {
    char *executable;
    char *extract_dir;
} prepared;

static int prepare(supervisor *sup, prepared *out, const char *file, const agent_offer *o)
{
    json_t *reply = NULL;
    int rc = agent_helper_call(&reply, NULL, 0, 0, "prepare", file, o->format ? o->format : "",
                               o->entrypoint ? o->entrypoint : "", sup->tmp_dir, NULL);
    if (rc < 0)
        return rc;
    if ((rc = agent_helper_reply_path(&out->executable, reply, "executable", sup->tmp_dir, 0,
                                      "prepare")) == 0 &&
        (rc = agent_helper_reply_path(&out->extract_dir, reply, "extract_dir", sup->tmp_dir, 1,
                                      "prepare")) == 0) {
        /* a plain binary is the verified download: the offer's digest is its own */
        if (out->extract_dir)
            rc = agent_helper_reply_digest(sup->upgrade.exe_digest, reply, "digest", "prepare");
        else
            copy_digest(sup->upgrade.exe_digest, o->digest);
    }
    json_decref(reply);
    return rc;
}

static void prepared_free(prepared *p)
{
    if (p->extract_dir && agent_remove_tree(p->extract_dir) < 0)
        agent_log("warn", "msg=\"cannot remove\" path=%s error=\"%s\"", p->extract_dir,
                  agent_error());
    free(p->extract_dir);
    free(p->executable);
    p->extract_dir = p->executable = NULL;
}

static void stopped_midway(supervisor *sup)
{
    upgrade_clear(sup);
    state_save(sup);
}

#ifdef PKGSTORE_TEST_HOOKS
/* Is word one of the comma-separated words of list? */
static int listed(const char *list, const char *word)
{
    size_t len = strlen(word);
    for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, word, len) && (p[len] == ',' || p[len] == '\0'))
            return 1;
    return 0;
}

/* The test build's fault switch (build/test-bin/pkgstore-agent; the
 * release agent has none): PKGSTORE_AGENT_TEST_FAULT holds words
 * separated by commas:
 *   swap-after-rename  every swap fails at its last step, the directory
 *                      fsync after the rename, so the new binary is live
 *                      when the swap reports its failure;
 *   check-live         before every step of a swap, log whether the live
 *                      path is a complete executable (a regular file, not
 *                      empty, executable): "msg=\"test hook\" live=...";
 *   kill-at:STEP       the agent SIGKILLs itself at that install step
 *                      ("bak:rename", "new:rename", ...), a kill at a
 *                      known point of the swap. */
static int test_fault_step(const char *step, void *payload)
{
    const char *live = payload;
    const char *fault = getenv("PKGSTORE_AGENT_TEST_FAULT");
    char kill_at[64];
    snprintf(kill_at, sizeof kill_at, "kill-at:%s", step);
    if (fault && listed(fault, "check-live")) {
        struct stat st;
        const char *what = stat(live, &st) < 0              ? "MISSING"
                           : !S_ISREG(st.st_mode)           ? "not-a-file"
                           : st.st_size == 0                ? "empty"
                           : !(st.st_mode & 0111)           ? "not-executable"
                                                            : "complete";
        agent_log("info", "msg=\"test hook\" step=%s live=%s", step, what);
    }
    if (fault && listed(fault, kill_at))
        raise(SIGKILL);
    if (fault && listed(fault, "swap-after-rename") && !strcmp(step, "new:dirsync"))
        return PKGSTORE_EIO;
    return 0;
}
#endif

static void install_options(pkgstore_install_options *opts, const char *live)
{
    pkgstore_install_options_init(opts);
    /* the verified download (or extraction) is ours: move it, never copy */
    opts->flags = PKGSTORE_INSTALL_MOVE;
#ifdef PKGSTORE_TEST_HOOKS
    opts->step = test_fault_step;
    opts->payload = (void *)live;
#else
    (void)live;
#endif
}

/* The upgrade passed its window: the .bak holds what ran before, the
 * watchdog starts, the kept copy follows the live binary. */
void slot_note_highest(pkg_slot *slot)
{
    pkgstore_semver running, highest;
    if (!slot->version || pkgstore_version_parse(&running, slot->version) < 0)
        return;
    if (slot->highest_version && pkgstore_version_parse(&highest, slot->highest_version) == 0 &&
        pkgstore_version_compare(&running, &highest) <= 0)
        return;
    set_str(&slot->highest_version, slot->version);
}

static void upgraded(supervisor *sup, pkg_slot *slot, const agent_offer *o)
{
    const agent_config *cfg = sup->cfg;
    int watch = cfg->watchdog_window_s > 0 && cfg->watchdog_crashes > 0;
    set_str(&slot->prev_version, sup->upgrade.had_old ? sup->upgrade.old_version : NULL);
    copy_digest(slot->prev_digest, sup->upgrade.had_old ? sup->upgrade.old_digest : "");
    copy_digest(slot->prev_exe_digest, sup->upgrade.had_old ? sup->upgrade.old_exe_digest : "");
    slot->watch_moved = 0;
    set_str(&slot->watch_old_entrypoint, NULL);
    if (sup->upgrade.old_executable) {
        if (watch) {
            /* a renamed addon: its old path is its way back until the
             * watchdog ends */
            slot->watch_moved = 1;
            set_str(&slot->watch_old_entrypoint, sup->upgrade.old_entrypoint);
        } else {
            unlink_with_bak(sup->upgrade.old_executable);
        }
    }
    slot->watch_until = watch ? wall_now() + (int64_t)(cfg->watchdog_window_s + 0.999) : 0;
    slot->watch_crashes = 0;
    if (!watch)
        slot_mark_good(slot, slot->exe_digest);
    if (slot->is_addon)
        set_str(&slot->entrypoint, o->entrypoint);
    slot_note_highest(slot); /* it passed its window: the anti-rollback floor */
    slot->proc.supervised = 1;
    slot->proc.failures = 0;
    slot->attempts = 0;
    slot->retry_at = 0;
    keep_live(sup, slot);
}

void upgrade(supervisor *sup, pkg_slot *slot, const agent_offer *o)
{
    const agent_config *cfg = sup->cfg;
    char why[MESSAGE_MAX + 64];
    manifest_args pending = {0};
    prepared prep = {0};

    /* Step 1 happened: the offer is new, not running, not known bad. */
    upgrade_clear(sup);
    sup->upgrade.active = 1;
    sup->upgrade.name = strdup(slot->name);
    sup->upgrade.is_addon = slot->is_addon;
    sup->upgrade.version = dup_or_null(o->version);
    copy_digest(sup->upgrade.digest, o->digest);
    sup->upgrade.retry = o->retry;
    sup->upgrade.old_version = dup_or_null(slot->version);
    copy_digest(sup->upgrade.old_digest, slot->digest);
    copy_digest(sup->upgrade.old_exe_digest, slot->exe_digest);
    /* a file at the live path is what runs, whether or not its digest is known */
    sup->upgrade.had_old = access(slot->executable, F_OK) == 0;
    agent_log("info", "msg=\"upgrade starting\" package=%s from=%s to=%s digest=%s", slot->name,
              slot->version ? slot->version : "-", o->version, o->digest);

    /* With trust.root, the offer must match a manifest signed to threshold
     * by the current root's keys before a byte of its artifact is fetched;
     * from here on the digest, size, format and entrypoint are the signed
     * manifest's, never the offer's (docs/trust.md). */
    agent_offer checked;
    agent_signed_artifact signed_artifact;
    if (sup->trust.enabled) {
        int verdict = agent_trust_offer(&signed_artifact, &sup->trust, cfg, sup->tmp_dir, o, why,
                                        sizeof why);
        if (verdict == TRUST_TRANSIENT && agent_stop_requested()) {
            stopped_midway(sup);
            return;
        }
        if (verdict < 0) {
            agent_log("warn", "msg=\"offer refused\" package=%s version=%s digest=%s error=\"%s\"",
                      slot->name, o->version, o->digest, why);
            if (verdict == TRUST_TRANSIENT)
                fail_transient(sup, slot, "UpgradeFailed", why);
            else
                fail_bad(sup, slot, "UpgradeFailed", why, NULL);
            return;
        }
        checked = *o;
        checked.digest = signed_artifact.digest;
        checked.size = signed_artifact.size;
        checked.format = signed_artifact.format;
        checked.entrypoint = signed_artifact.entrypoint[0] ? signed_artifact.entrypoint : NULL;
        o = &checked;
    }
    /* An addon lives at addons/NAME/<entrypoint's base name>. */
    char *target = slot->is_addon ? addon_executable(sup, slot->name, o->entrypoint) : NULL;
    if (target && !strcmp(target, slot->executable)) {
        free(target);
        target = NULL;
    } else if (target && !sup->upgrade.had_old) {
        set_str(&slot->executable, target); /* nothing installed at the old path */
        set_str(&slot->entrypoint, o->entrypoint);
        free(target);
        target = NULL;
    }

    const char *hex = strchr(o->digest, ':') + 1;
    char *part = agent_strdup_printf("%s/%s.part", sup->tmp_dir, hex);
    /* a verified download is renamed here: no later download writes to
     * what a validation (or a killed agent's leftover) executes */
    char *ready = agent_strdup_printf("%s/%s.ready", sup->tmp_dir, hex);
    clean_tmp(sup);
    if (!part || !ready) {
        fail_transient(sup, slot, "UpgradeFailed", "out of memory");
        goto out;
    }

    /* 2. Download */
    set_status(sup, slot, "Downloading", NULL);
    int with_token = 0;
    char *url = resolve_url(sup, o->url, &with_token);
    char max_text[32];
    snprintf(max_text, sizeof max_text, "%llu", (unsigned long long)o->size);
    double t0 = agent_now();
    json_t *reply = NULL;
    int rc = url ? agent_helper_call(&reply, NULL, cfg->http_timeout_s,
                                     with_token ? 0 : AGENT_HELPER_NO_TOKEN, "download", url, part,
                                     max_text, NULL)
                 : agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    free(url);
    uint64_t got = 0;
    if (rc == 0)
        rc = agent_helper_reply_size(&got, reply, o->size, "download");
    json_decref(reply);
    if (rc == PKGSTORE_ELIMIT || rc == PKGSTORE_ENOSPC)
        unlink(part); /* useless, or what fills the disk: never kept */
    if (rc == 0 && got != o->size)
        rc = agent_error_set(PKGSTORE_ESIZE_MISMATCH, "short body: %llu of %llu bytes",
                             (unsigned long long)got, (unsigned long long)o->size);
    if (rc < 0) {
        snprintf(why, sizeof why, "download: %s", agent_error());
        if (agent_stop_requested())
            stopped_midway(sup);
        else
            fail_transient(sup, slot, "UpgradeFailed", why);
        goto out;
    }
    agent_log("info", "msg=\"downloaded\" package=%s bytes=%llu seconds=%.3f", slot->name,
              (unsigned long long)got, agent_now() - t0);

    /* 3. Verify */
    set_status(sup, slot, "Verifying", NULL);
    t0 = agent_now();
    rc = agent_helper_call(NULL, NULL, 0, 0, "verify", part, o->digest, max_text, NULL);
    if (rc < 0) {
        snprintf(why, sizeof why, "verify: %s", agent_error());
        unlink(part);
        fail_transient(sup, slot, "UpgradeFailed", why);
        goto out;
    }
    if (rename(part, ready) < 0) {
        snprintf(why, sizeof why, "verify: %s: %s", ready, strerror(errno));
        unlink(part);
        fail_transient(sup, slot, "UpgradeFailed", why);
        goto out;
    }
    agent_log("info", "msg=\"verified\" package=%s digest=%s seconds=%.3f", slot->name, o->digest,
              agent_now() - t0);

    /* 4. Extract the entrypoint, then the dry-run validation */
    set_status(sup, slot, "Validating", NULL);
    t0 = agent_now();
    if (prepare(sup, &prep, ready, o) < 0) {
        snprintf(why, sizeof why, "extract: %s", agent_error());
        unlink(ready);
        fail_bad(sup, slot, "UpgradeFailed", why, NULL);
        goto out;
    }
    if (!slot->is_addon) {
        /* the config it is validated against: a failure is this
         * binary's with this configuration, not for ever */
        char config[PKGSTORE_DIGEST_STR_SIZE];
        config_digest(sup, config);
        int verdict = run_validate(sup, prep.executable, why, sizeof why);
        if (verdict < 0) {
            unlink(ready);
            if (verdict == VALIDATE_STOPPED || agent_stop_requested())
                stopped_midway(sup);
            else if (verdict == VALIDATE_TIMEOUT)
                fail_transient(sup, slot, "UpgradeFailed", why);
            else
                fail_bad(sup, slot, "UpgradeFailed", why, config[0] ? config : NULL);
            goto out;
        }
    } else if (!agent_config_addon(cfg, slot->name) ||
               !agent_config_addon(cfg, slot->name)->has_args) {
        /* the offer carries the manifest's annotations */
        pending.has = 1;
        if ((o->has_args && copy_strv(&pending.args, &o->args) < 0) ||
            (o->has_env && copy_kvv(&pending.env, &o->env) < 0)) {
            unlink(ready);
            fail_transient(sup, slot, "UpgradeFailed", "annotations: out of memory");
            goto out;
        }
    }
    agent_log("info", "msg=\"validated\" package=%s seconds=%.3f", slot->name, agent_now() - t0);
    if (agent_stop_requested()) {
        unlink(ready);
        stopped_midway(sup);
        goto out;
    }

    /* 5. Swap: check, stop, keep .bak, rename the new binary in, start it.
     * A renamed addon entrypoint goes to its new path instead; the old
     * path is left alone until the new version has passed its window. */
    if (target) {
        sup->upgrade.old_executable = strdup(slot->executable);
        sup->upgrade.old_entrypoint = dup_or_null(slot->entrypoint);
        set_str(&slot->executable, target);
        set_str(&slot->entrypoint, o->entrypoint);
    }
    if (slot->is_addon) {
        char *dir = addon_dir(sup, slot->name);
        if (dir)
            agent_mkdirs(dir, 0755);
        free(dir);
    }
    pkgstore_install_options install_opts;
    install_options(&install_opts, slot->executable);
    /* Everything that can be checked is checked while the old program
     * still runs: a read-only directory, a full disk or a directory in
     * the .bak's way fail the upgrade without a restart. */
    if (pkgstore_install_check(slot->executable, prep.executable, &install_opts) < 0) {
        snprintf(why, sizeof why, "swap: %s (nothing stopped)", pkgstore_error_detail());
        undo_move(sup, slot, 0);
        unlink(ready);
        fail_transient(sup, slot, "UpgradeFailed", why);
        goto out;
    }
    if (set_status(sup, slot, "Swapping", NULL) < 0) {
        /* Without Swapping in the journal a restart could not roll back. */
        undo_move(sup, slot, 0);
        unlink(ready);
        snprintf(why, sizeof why, "swap: %s cannot be written", sup->state_path);
        fail_transient(sup, slot, "UpgradeFailed", why);
        goto out;
    }
    /* an addon's configuration from its policy for this version starts with it */
    if (slot->is_addon)
        config_stage(sup, slot, o->digest);
    t0 = agent_now();
    slot_stop(sup, slot, SIGTERM);
    rc = pkgstore_install_swap_ext(slot->executable, prep.executable, &install_opts);
    if (rc < 0) {
        snprintf(why, sizeof why, "swap: %s", pkgstore_error_detail());
        unlink(ready);
        if (new_binary_live(sup, slot) == 0) {
            undo_move(sup, slot, 1);
            config_unstage(sup, slot);
            slot_start(sup, slot, 1);
            fail_transient(sup, slot, "UpgradeFailed", why);
        } else {
            /* It failed after its rename (at the directory fsync): the
             * new binary is live but unproven. Put the old one back. */
            agent_log("warn", "msg=\"swap failed with the new binary live, rolling back\" "
                              "package=%s", slot->name);
            rollback(sup, slot, why, 1);
        }
        goto out;
    }
    unlink(ready);        /* gone when it was moved in; an archive's stays */
    prepared_free(&prep); /* the executable is installed: the extraction is done with */
    copy_digest(slot->digest, o->digest);
    copy_digest(slot->exe_digest, sup->upgrade.exe_digest);
    set_str(&slot->version, o->version);
    if (pending.has)
        exchange_args(slot, &pending); /* the new version starts with its own args */
    slot_start(sup, slot, 0); /* unsupervised: a death in the window is a failure */
    if (pending.has)
        exchange_args(slot, &pending); /* the journal keeps the old ones until Upgraded */
    agent_log("info", "msg=\"swapped\" package=%s seconds=%.3f", slot->name, agent_now() - t0);

    /* 6. Monitor */
    set_status(sup, slot, "Monitoring", NULL);
    if (monitor_slot(sup, slot, why, sizeof why) < 0) {
        rollback(sup, slot, why, agent_stop_requested());
        goto out;
    }
    if (pending.has)
        exchange_args(slot, &pending);
    upgraded(sup, slot, o);
    config_commit(sup, slot);
    upgrade_clear(sup);
    set_status(sup, slot, "Upgraded", "%s %s is running", slot->name,
               slot->version ? slot->version : slot->digest);

out:
    agent_strv_free(&pending.args);
    agent_kvv_free(&pending.env);
    prepared_free(&prep);
    free(target);
    free(part);
    free(ready);
}

/* ------------------------------------------------------------------ recovery */

void recover(supervisor *sup)
{
    if (!sup->upgrade.active)
        return;
    pkg_slot *slot = sup->upgrade.is_addon ? find_addon(sup, sup->upgrade.name)
                                           : (!strcmp(sup->upgrade.name, sup->primary.name)
                                                  ? &sup->primary
                                                  : NULL);
    if (!slot) {
        upgrade_clear(sup);
        state_save(sup);
        return;
    }
    char step[STATUS_LEN];
    copy_status(step, sup->upgrade.step);
    agent_log("warn", "msg=\"recovering an interrupted upgrade\" package=%s step=%s", slot->name,
              step);
    clean_install_leftovers(slot->executable);
    if (sup->upgrade.old_executable)
        clean_install_leftovers(sup->upgrade.old_executable);
    if (strcmp(step, "Swapping") && strcmp(step, "Monitoring")) {
        /* Before the swap the live binary was never touched. */
        char why[128];
        snprintf(why, sizeof why, "agent restarted during %s", step);
        fail_transient(sup, slot, "UpgradeFailed", why);
        return;
    }
    char detail[256] = "";
    if (put_back(sup, slot, detail, sizeof detail) < 0) {
        /* Whatever is live stays; the start-up check records what it is.
         * A configuration staged with it stays too, as in rollback(): the
         * new binary was meant to run with it. */
        config_commit(sup, slot);
        bad_add(sup, sup->upgrade.digest, slot->name, detail, sup->upgrade.retry, NULL);
        upgrade_clear(sup);
        copy_status(slot->status, "RollbackFailed");
        set_str(&slot->message, detail);
        state_save(sup);
        return;
    }
    slot_set_previous(sup, slot);
    char why[MESSAGE_MAX];
    snprintf(why, sizeof why, "agent restarted during %s; %s", step,
             sup->upgrade.had_old ? "restored the previous binary" : "removed (no previous binary)");
    /* Not the binary's fault as far as we know: retry later, with backoff. */
    slot->attempts++;
    slot->retry_at = agent_now() + retry_delay(sup->cfg, slot->attempts);
    upgrade_clear(sup);
    copy_status(slot->status, "RolledBack");
    set_str(&slot->message, why);
    state_save(sup);
    agent_log("warn", "msg=\"rolled back after restart\" package=%s", slot->name);
}

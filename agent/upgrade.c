/*
 * The six upgrade steps of DESIGN.md (Downloading, Verifying, Validating,
 * Swapping, Monitoring, Upgraded) with automatic fallback (UpgradeFailed,
 * RolledBack, RollbackFailed), each reported to the server as it starts,
 * and the recovery of an upgrade interrupted by the agent's death.
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

#define REPORT_TIMEOUT_S 3.0

/* ------------------------------------------------------------------ heartbeat */

static json_t *heartbeat_request(const supervisor *sup)
{
    const agent_config *cfg = sup->cfg;
    json_t *labels = json_object();
    for (size_t i = 0; i < cfg->labels.count; i++)
        json_object_set_new(labels, cfg->labels.items[i].key, json_string(cfg->labels.items[i].value));
    json_t *packages = json_array();
    for (size_t i = 0; i <= sup->addon_count; i++) {
        const pkg_slot *slot = i == 0 ? &sup->primary : sup->addons[i - 1];
        json_t *pkg = json_pack("{s:s, s:s, s:s?, s:s?, s:s}", "name", slot->name, "type",
                                slot->is_addon ? "addon" : "primary", "version", slot->version,
                                "digest", slot->digest[0] ? slot->digest : NULL, "state",
                                proc_state(slot));
        if (slot->offer_digest[0])
            json_object_set_new(pkg, "offer", json_pack("{s:s?, s:s}", "version",
                                                        slot->offer_version, "digest",
                                                        slot->offer_digest));
        if (slot->status[0]) {
            json_object_set_new(pkg, "status", json_string(slot->status));
            if (slot->message)
                json_object_set_new(pkg, "message", json_string(slot->message));
        }
        json_array_append_new(packages, pkg);
    }
    return json_pack("{s:s, s:o, s:s, s:s, s:o}", "node_id", cfg->node_id, "labels", labels,
                     "platform", cfg->platform, "agent_version", PKGSTORE_VERSION_STRING,
                     "packages", packages);
}

/* One small request through the helper: a JSON POST when body is not
 * NULL, else a GET. *response_out (free()) gets the body. */
static int http_small(char **response_out, long *status_out, const char *url, const char *body,
                      double timeout_s)
{
    *response_out = NULL;
    *status_out = 0;
    json_t *reply = NULL;
    int rc = agent_helper_call(&reply, body, timeout_s, 0, body ? "http-post" : "http-get", url,
                               NULL);
    if (rc < 0)
        return rc;
    json_t *status = json_object_get(reply, "status");
    const char *text = jstr(reply, "body");
    *status_out = json_is_integer(status) ? (long)json_integer_value(status) : 0;
    *response_out = strdup(text ? text : "");
    json_decref(reply);
    return *response_out ? 0 : agent_error_set(PKGSTORE_ENOMEM, "out of memory");
}

/* POST a heartbeat; on success *response_out is the parsed reply. */
int heartbeat_post(supervisor *sup, json_t **response_out, double timeout_s)
{
    *response_out = NULL;
    json_t *request = heartbeat_request(sup);
    char *body = request ? json_dumps(request, JSON_COMPACT) : NULL;
    json_decref(request);
    if (!body)
        return agent_error_set(PKGSTORE_ENOMEM, "heartbeat: cannot build the request");
    char *url = agent_strdup_printf("%s/v1/agents/heartbeat", sup->cfg->server_url);
    char *reply = NULL;
    long status = 0;
    int rc = http_small(&reply, &status, url, body, timeout_s);
    free(body);
    if (rc == 0 && status != 200) {
        json_t *err = reply ? json_loads(reply, 0, NULL) : NULL;
        const char *msg = err ? jstr(json_object_get(err, "error"), "message") : NULL;
        rc = agent_error_set(status == 401 || status == 403 ? PKGSTORE_EDENIED : PKGSTORE_ENET,
                             "%s: HTTP %ld%s%s", url, status, msg ? ": " : "", msg ? msg : "");
        json_decref(err);
    } else if (rc == 0) {
        json_error_t jerr;
        *response_out = json_loads(reply, 0, &jerr);
        if (!json_is_object(*response_out)) {
            json_decref(*response_out);
            *response_out = NULL;
            rc = agent_error_set(PKGSTORE_EFORMAT, "%s: response is not a JSON object: %s", url,
                                 jerr.text);
        }
    }
    free(reply);
    free(url);
    return rc;
}

/* Tell the server about a step now (best effort; the next heartbeat
 * carries the latest status anyway). */
static void report(supervisor *sup)
{
    json_t *reply = NULL;
    if (heartbeat_post(sup, &reply, REPORT_TIMEOUT_S) < 0)
        agent_log("warn", "msg=\"status report failed\" error=\"%s\"", agent_error());
    json_decref(reply);
}

int set_status(supervisor *sup, pkg_slot *slot, const char *status, const char *fmt, ...)
{
    copy_status(slot->status, status);
    free(slot->message);
    slot->message = NULL;
    if (fmt) {
        char msg[MESSAGE_MAX + 1];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        slot->message = strdup(msg);
    }
    if (sup->upgrade.active && !strcmp(sup->upgrade.name, slot->name))
        copy_status(sup->upgrade.step, status);
    const char *shown_version = sup->upgrade.version ? sup->upgrade.version : slot->version;
    agent_log(strcmp(status, "UpgradeFailed") && strcmp(status, "RolledBack") &&
                      strcmp(status, "RollbackFailed")
                  ? "info"
                  : "warn",
              "msg=\"upgrade status\" package=%s status=%s version=%s message=\"%s\"", slot->name,
              status, shown_version ? shown_version : "-",
              slot->message ? slot->message : "");
    int saved = state_save(sup);
    if (!sup->quiet) /* the first heartbeat carries it otherwise */
        report(sup);
    return saved;
}

/* ------------------------------------------------------------------ validate */

/* Keep the first lines of a program's output, joined with " | ". */
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
        return -1;
    }
    char *save = NULL;
    for (char *tok = strtok_r(template_copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save))
        argv[argc++] = agent_expand(tok, &vars);
    free(template_copy);
    if (argc == 0) {
        agent_argv_free(argv);
        snprintf(why, why_len, "validate: empty validate_command");
        return -1;
    }
    agent_run_opts opts = {.name = "validate", .argv = argv, .merge_stderr = 1,
                           .timeout_s = cfg->validate_timeout_s, .interruptible = 1,
                           .max_output = 8192};
    agent_run_result res;
    int rc = agent_run(&opts, &res);
    agent_argv_free(argv);
    if (rc < 0) {
        snprintf(why, why_len, "validate: %s", agent_error());
        return -1;
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
        return -1;
    }
    if (timed_out < 0) {
        snprintf(why, why_len, "validate: interrupted by stop request");
        return -1;
    }
    if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
        char how[96];
        agent_describe_status(how, sizeof how, wait_status);
        snprintf(why, why_len, "validate: %s%s%.400s", how, lines[0] ? ": " : "", lines);
        return -1;
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
static int monitor(supervisor *sup, pkg_slot *slot, char *why, size_t why_len)
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

static void fail_transient(supervisor *sup, pkg_slot *slot, const char *status, const char *why)
{
    slot->attempts++;
    double delay = retry_delay(sup->cfg, slot->attempts);
    slot->retry_at = agent_now() + delay;
    upgrade_clear(sup);
    set_status(sup, slot, status, "%s (attempt %u, retry in %.0f s)", why, slot->attempts, delay);
}

static void fail_bad(supervisor *sup, pkg_slot *slot, const char *status, const char *why)
{
    copy_digest(slot->bad_digest, sup->upgrade.digest);
    slot->attempts = 0;
    slot->retry_at = 0;
    upgrade_clear(sup);
    set_status(sup, slot, status, "%s", why);
}

static void unlink_with_bak(const char *path)
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

/* After the swap: stop the new program, put the previous one back. */
static void rollback(supervisor *sup, pkg_slot *slot, const char *why, int transient)
{
    slot_stop(sup, slot, SIGTERM);
    char detail[256] = "";
    if (put_back(sup, slot, detail, sizeof detail) < 0) {
        /* The new binary stays; run it rather than nothing. */
        agent_log("error", "msg=\"rollback failed\" package=%s error=\"%s\"", slot->name, detail);
        slot_start(sup, slot, 1);
        copy_digest(slot->bad_digest, sup->upgrade.digest);
        upgrade_clear(sup);
        set_status(sup, slot, "RollbackFailed", "%s; restore: %s", why, detail);
        return;
    }
    slot_set_previous(sup, slot);
    if (!agent_stop_requested())
        slot_start(sup, slot, 1);
    char msg[MESSAGE_MAX];
    snprintf(msg, sizeof msg, "%.400s; %s", why,
             sup->upgrade.had_old ? "restored the previous binary" : "removed (no previous binary)");
    if (transient)
        fail_transient(sup, slot, "RolledBack", msg);
    else
        fail_bad(sup, slot, "RolledBack", msg);
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

/* An addon's args and env from its manifest, held aside until the version
 * they belong to has passed its monitor window. */
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

/* Addons: args and env from the manifest's annotations
 * ("io.pkgstore.addon.args": a JSON array, "io.pkgstore.addon.env": a JSON
 * object, both as strings). Best effort: none when they cannot be read. */
static void fetch_addon_annotations(supervisor *sup, manifest_args *out, const offer *o)
{
    char *url = agent_strdup_printf("%s/v1/packages/%s/%s", sup->cfg->server_url, o->name,
                                    o->version);
    char *body = NULL;
    long status = 0;
    out->has = 1;
    if (!url || http_small(&body, &status, url, NULL, sup->cfg->http_timeout_s) < 0 ||
        status != 200) {
        agent_log("warn", "msg=\"no manifest annotations\" url=%s status=%ld", url ? url : "-",
                  status);
        free(body);
        free(url);
        return;
    }
    json_t *manifest = json_loads(body, 0, NULL);
    json_t *inner = json_object_get(manifest, "manifest");
    json_t *ann = json_object_get(inner ? inner : manifest, "annotations");
    const char *args_text = jstr(ann, "io.pkgstore.addon.args");
    const char *env_text = jstr(ann, "io.pkgstore.addon.env");
    json_t *args = args_text ? json_loads(args_text, 0, NULL) : NULL;
    json_t *env = env_text ? json_loads(env_text, 0, NULL) : NULL;
    if (json_is_array(args))
        strv_from_json(&out->args, args);
    if (json_is_object(env))
        kvv_from_json(&out->env, env);
    json_decref(args);
    json_decref(env);
    json_decref(manifest);
    free(body);
    free(url);
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
 * over: an extraction directory from an agent that died while
 * validating, or a part of a digest no longer offered. Parts still
 * offered are kept so that their download can resume. */
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

/* The prepared executable: its path, its extraction directory (archives)
 * and its own digest. */
typedef struct prepared {
    char *executable;
    char *extract_dir;
} prepared;

static int prepare(supervisor *sup, prepared *out, const char *part, const offer *o)
{
    json_t *reply = NULL;
    int rc = agent_helper_call(&reply, NULL, 0, 0, "prepare", part, o->format ? o->format : "",
                               o->entrypoint ? o->entrypoint : "", sup->tmp_dir, NULL);
    if (rc < 0)
        return rc;
    out->executable = dup_or_null(jstr(reply, "executable"));
    out->extract_dir = dup_or_null(jstr(reply, "extract_dir"));
    /* a plain binary is the verified download: the offer's digest is its own */
    copy_digest(sup->upgrade.exe_digest, out->extract_dir ? jstr(reply, "digest") : o->digest);
    json_decref(reply);
    if (!out->executable || !sup->upgrade.exe_digest[0])
        return agent_error_set(PKGSTORE_EIO, "prepare: malformed reply");
    return 0;
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
/* The test build's fault switch (build/test-bin/pkgstore-agent; the
 * release agent has none): PKGSTORE_AGENT_TEST_FAULT=swap-after-rename
 * fails every swap at its last step, the directory fsync after the rename,
 * so the new binary is live when the swap reports its failure. */
static int test_fault_step(const char *step, void *payload)
{
    (void)payload;
    const char *fault = getenv("PKGSTORE_AGENT_TEST_FAULT");
    if (fault && !strcmp(fault, "swap-after-rename") && !strcmp(step, "new:dirsync"))
        return PKGSTORE_EIO;
    return 0;
}
#endif

void upgrade(supervisor *sup, pkg_slot *slot, const offer *o)
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
    sup->upgrade.old_version = dup_or_null(slot->version);
    copy_digest(sup->upgrade.old_digest, slot->digest);
    copy_digest(sup->upgrade.old_exe_digest, slot->exe_digest);
    /* a file at the live path is what runs, whether or not its digest is known */
    sup->upgrade.had_old = access(slot->executable, F_OK) == 0;
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
    agent_log("info", "msg=\"upgrade starting\" package=%s from=%s to=%s digest=%s", slot->name,
              slot->version ? slot->version : "-", o->version ? o->version : "-", o->digest);

    char *part = agent_strdup_printf("%s/%s.part", sup->tmp_dir, strchr(o->digest, ':') + 1);
    clean_tmp(sup);

    /* 2. Download */
    set_status(sup, slot, "Downloading", NULL);
    int with_token = 0;
    char *url = resolve_url(sup, o->url, &with_token);
    char max_text[32];
    snprintf(max_text, sizeof max_text, "%llu", (unsigned long long)o->size);
    double t0 = agent_now();
    json_t *reply = NULL;
    int rc = agent_helper_call(&reply, NULL, cfg->http_timeout_s,
                               with_token ? 0 : AGENT_HELPER_NO_TOKEN, "download", url, part,
                               max_text, NULL);
    free(url);
    json_t *got_json = json_object_get(reply, "size");
    uint64_t got = json_is_integer(got_json) ? (uint64_t)json_integer_value(got_json) : 0;
    json_decref(reply);
    if (rc == PKGSTORE_ELIMIT)
        unlink(part);
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
    agent_log("info", "msg=\"verified\" package=%s digest=%s seconds=%.3f", slot->name, o->digest,
              agent_now() - t0);

    /* 4. Extract the entrypoint, then the dry-run validation */
    set_status(sup, slot, "Validating", NULL);
    t0 = agent_now();
    if (prepare(sup, &prep, part, o) < 0) {
        snprintf(why, sizeof why, "extract: %s", agent_error());
        unlink(part);
        fail_bad(sup, slot, "UpgradeFailed", why);
        goto out;
    }
    if (!slot->is_addon) {
        if (run_validate(sup, prep.executable, why, sizeof why) < 0) {
            unlink(part);
            if (agent_stop_requested())
                stopped_midway(sup);
            else
                fail_bad(sup, slot, "UpgradeFailed", why);
            goto out;
        }
    } else if (!agent_config_addon(cfg, slot->name) ||
               !agent_config_addon(cfg, slot->name)->has_args) {
        fetch_addon_annotations(sup, &pending, o);
    }
    agent_log("info", "msg=\"validated\" package=%s seconds=%.3f", slot->name, agent_now() - t0);
    if (agent_stop_requested()) {
        stopped_midway(sup);
        goto out;
    }

    /* 5. Swap: stop, keep .bak, rename the new binary in, start it. A
     * renamed addon entrypoint goes to its new path instead; the old path
     * is left alone until the new version has passed its window. */
    if (target) {
        sup->upgrade.old_executable = strdup(slot->executable);
        sup->upgrade.old_entrypoint = dup_or_null(slot->entrypoint);
        set_str(&slot->executable, target);
        set_str(&slot->entrypoint, o->entrypoint);
    }
    if (set_status(sup, slot, "Swapping", NULL) < 0) {
        /* Without Swapping in the journal a restart could not roll back. */
        undo_move(sup, slot, 0);
        snprintf(why, sizeof why, "swap: %s cannot be written", sup->state_path);
        fail_transient(sup, slot, "UpgradeFailed", why);
        goto out;
    }
    t0 = agent_now();
    slot_stop(sup, slot, SIGTERM);
    if (slot->is_addon) {
        char *dir = addon_dir(sup, slot->name);
        agent_mkdirs(dir, 0755);
        free(dir);
    }
    pkgstore_install_options install_opts = PKGSTORE_INSTALL_OPTIONS_INIT;
#ifdef PKGSTORE_TEST_HOOKS
    install_opts.step = test_fault_step;
#endif
    rc = pkgstore_install_swap_ext(slot->executable, prep.executable, &install_opts);
    if (rc < 0) {
        snprintf(why, sizeof why, "swap: %s", pkgstore_error_detail());
        if (new_binary_live(sup, slot) == 0) {
            undo_move(sup, slot, 1);
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
    unlink(part);
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
    if (monitor(sup, slot, why, sizeof why) < 0) {
        rollback(sup, slot, why, agent_stop_requested());
        goto out;
    }
    if (pending.has)
        exchange_args(slot, &pending);
    if (sup->upgrade.old_executable)
        unlink_with_bak(sup->upgrade.old_executable);
    if (slot->is_addon)
        set_str(&slot->entrypoint, o->entrypoint);
    slot->proc.supervised = 1;
    slot->proc.failures = 0;
    slot->attempts = 0;
    slot->retry_at = 0;
    slot->bad_digest[0] = '\0';
    upgrade_clear(sup);
    set_status(sup, slot, "Upgraded", "%s %s is running", slot->name,
               slot->version ? slot->version : slot->digest);

out:
    agent_strv_free(&pending.args);
    agent_kvv_free(&pending.env);
    prepared_free(&prep);
    free(target);
    free(part);
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
    if (strcmp(step, "Swapping") && strcmp(step, "Monitoring")) {
        /* Before the swap the live binary was never touched. */
        char why[128];
        snprintf(why, sizeof why, "agent restarted during %s", step);
        fail_transient(sup, slot, "UpgradeFailed", why);
        return;
    }
    char detail[256] = "";
    if (put_back(sup, slot, detail, sizeof detail) < 0) {
        /* Whatever is live stays; the start-up check records what it is. */
        copy_digest(slot->bad_digest, sup->upgrade.digest);
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

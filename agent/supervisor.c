/*
 * The Supervisor: keeps the collector and the addon sidecars running,
 * heartbeats to pkgstored, and runs the six upgrade steps of DESIGN.md
 * (Downloading, Verifying, Validating, Swapping, Monitoring, Upgraded) with
 * automatic fallback. Every step is written to the journal
 * (state_dir/state.json, atomically through libpkgstore's install module)
 * before it starts, so a restarted agent can finish or roll back.
 */
#include "supervisor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
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

#define STATE_FORMAT 1
#define REPORT_TIMEOUT_S 3.0
#define MESSAGE_MAX 480

typedef struct offer {
    const char *name, *type, *version, *digest, *format, *entrypoint, *url, *policy;
    uint64_t size;
} offer;

/* ------------------------------------------------------------------ helpers */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void set_str(char **dst, const char *src)
{
    char *copy = dup_or_null(src);
    free(*dst);
    *dst = copy;
}

static double jittered(const agent_config *cfg, double seconds)
{
    double j = cfg->heartbeat_jitter;
    if (j <= 0)
        return seconds;
    if (j > 0.9)
        j = 0.9;
    return seconds * (1.0 - j + 2.0 * j * drand48());
}

static double retry_delay(const agent_config *cfg, unsigned attempts)
{
    double delay = cfg->retry_initial_s;
    for (unsigned i = 1; i < attempts && delay < cfg->retry_max_s; i++)
        delay *= 2;
    if (delay > cfg->retry_max_s)
        delay = cfg->retry_max_s;
    return jittered(cfg, delay);
}

static const char *proc_state(const pkg_slot *slot)
{
    if (slot->proc.pid)
        return "Running";
    if (!slot->digest[0])
        return "NotInstalled";
    if (slot->proc.supervised && slot->proc.restart_at)
        return "Restarting";
    return "Stopped";
}

static int live_digest(char out[PKGSTORE_DIGEST_STR_SIZE], const char *path)
{
    pkgstore_digest digest;
    out[0] = '\0';
    if (pkgstore_digest_file(&digest, NULL, path) < 0)
        return -1;
    pkgstore_digest_format(out, &digest);
    return 0;
}

/* ------------------------------------------------------------------ slots */

static void slot_init(pkg_slot *slot, const char *name, int is_addon, const char *executable,
                      const agent_config *cfg)
{
    memset(slot, 0, sizeof *slot);
    slot->name = strdup(name);
    slot->is_addon = is_addon;
    slot->executable = dup_or_null(executable);
    slot->proc.name = agent_strdup_printf("%s%s", is_addon ? "addon:" : "collector:", name);
    slot->proc.output_fd = -1;
    slot->proc.backoff_initial_s = cfg->backoff_initial_s;
    slot->proc.backoff_max_s = cfg->backoff_max_s;
    slot->proc.backoff_reset_s = cfg->backoff_reset_s;
}

static void slot_free(pkg_slot *slot)
{
    agent_proc_unregister(&slot->proc);
    free(slot->name);
    free(slot->version);
    free(slot->message);
    free(slot->offer_version);
    free(slot->executable);
    free(slot->entrypoint);
    agent_strv_free(&slot->args);
    agent_kvv_free(&slot->env);
    free(slot->proc.name);
    free(slot->proc.pid_file);
    agent_argv_free(slot->proc.argv);
    agent_argv_free(slot->proc.envp);
    memset(slot, 0, sizeof *slot);
}

static char *addon_dir(const supervisor *sup, const char *name)
{
    return agent_strdup_printf("%s/addons/%s", sup->cfg->state_dir, name);
}

static char *addon_executable(const supervisor *sup, const char *name, const char *entrypoint)
{
    char *dir = addon_dir(sup, name);
    const char *base = entrypoint && *entrypoint ? strrchr(entrypoint, '/') : NULL;
    base = base ? base + 1 : (entrypoint && *entrypoint ? entrypoint : name);
    char *exe = agent_strdup_printf("%s/%s", dir, base);
    free(dir);
    return exe;
}

static const agent_health_spec *slot_health(const supervisor *sup, const pkg_slot *slot,
                                            double *stop_timeout_s)
{
    if (!slot->is_addon) {
        *stop_timeout_s = sup->cfg->stop_timeout_s;
        return &sup->cfg->health;
    }
    const agent_addon_config *addon = agent_config_addon(sup->cfg, slot->name);
    static agent_health_spec defaults;
    if (addon) {
        *stop_timeout_s = addon->stop_timeout_s;
        return &addon->health;
    }
    *stop_timeout_s = sup->cfg->stop_timeout_s;
    defaults.monitor_window_s = sup->cfg->health.monitor_window_s;
    return &defaults;
}

/* argv for a program: executable, then args with placeholders expanded. */
static char **slot_argv(const supervisor *sup, const pkg_slot *slot, const char *executable)
{
    const agent_config *cfg = sup->cfg;
    const agent_strv *args = &cfg->args;
    char *dir = slot->is_addon ? addon_dir(sup, slot->name) : NULL;
    if (slot->is_addon) {
        const agent_addon_config *addon = agent_config_addon(cfg, slot->name);
        args = addon && addon->has_args ? &addon->args : &slot->args;
    }
    agent_kv var_items[] = {
        {"executable", (char *)executable},
        {"config", cfg->collector_config},
        {"state_dir", cfg->state_dir},
        {"addon_dir", dir ? dir : cfg->state_dir},
    };
    agent_kvv vars = {var_items, 4};
    char **argv = calloc(args->count + 2, sizeof *argv);
    if (argv) {
        argv[0] = strdup(executable);
        for (size_t i = 0; i < args->count; i++)
            argv[i + 1] = agent_expand(args->items[i], &vars);
    }
    free(dir);
    return argv;
}

static char **slot_envp(const supervisor *sup, const pkg_slot *slot)
{
    extern char **environ;
    const agent_kvv *cfg_env = NULL;
    if (slot->is_addon) {
        const agent_addon_config *addon = agent_config_addon(sup->cfg, slot->name);
        if (addon && addon->env.count)
            cfg_env = &addon->env;
    }
    agent_kv marker_item = {"PKGSTORE_AGENT_CHILD", NULL};
    marker_item.value = agent_strdup_printf("%s/%s-%s", sup->cfg->state_dir,
                                            slot->is_addon ? "addon" : "primary", slot->name);
    agent_kvv marker = {&marker_item, 1};
    /* later sources win: manifest annotations, then the config, then the marker */
    const agent_kvv *sources[3] = {slot->is_addon ? &slot->env : NULL, cfg_env, &marker};
    size_t extra = 1 + slot->env.count + (cfg_env ? cfg_env->count : 0);
    size_t base = 0;
    while (environ[base])
        base++;
    char **envp = calloc(base + extra + 1, sizeof *envp);
    if (!envp || !marker_item.value) {
        free(envp);
        free(marker_item.value);
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < base; i++)
        envp[n++] = strdup(environ[i]);
    for (int s = 0; s < 3; s++) {
        if (!sources[s])
            continue;
        for (size_t i = 0; i < sources[s]->count; i++) {
            const agent_kv *kv = &sources[s]->items[i];
            size_t klen = strlen(kv->key);
            char *entry = agent_strdup_printf("%s=%s", kv->key, kv->value);
            size_t j = 0;
            for (; j < n; j++)
                if (!strncmp(envp[j], kv->key, klen) && envp[j][klen] == '=')
                    break;
            if (j < n)
                free(envp[j]);
            else
                n++;
            envp[j] = entry;
        }
    }
    free(marker_item.value);
    return envp;
}

/* Pid files (state_dir/run/<name>.pid) let a restarted agent find the
 * children a killed agent left behind and stop them before starting anew. */
static char *pid_path(const supervisor *sup, const pkg_slot *slot)
{
    return agent_strdup_printf("%s/run/%s-%s.pid", sup->cfg->state_dir,
                               slot->is_addon ? "addon" : "primary", slot->name);
}

static void pid_remove(const supervisor *sup, const pkg_slot *slot)
{
    char *path = pid_path(sup, slot);
    if (path)
        unlink(path);
    free(path);
}

static int process_gone(pid_t pid)
{
    if (kill(pid, 0) < 0)
        return 1;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')');
    return close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z';
}

/* Every child carries PKGSTORE_AGENT_CHILD=<state_dir>/<slot> in its
 * environment. A restarted agent scans /proc for that marker and stops what
 * a killed agent left behind (a pid file alone has a window between the
 * spawn and its write). */
#define CHILD_MARKER "PKGSTORE_AGENT_CHILD="

static int environ_has_marker(long pid, const char *prefix)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/environ", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    static char buf[65536];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    size_t plen = strlen(prefix);
    for (char *p = buf; p < buf + n; p += strlen(p) + 1)
        if (!strncmp(p, prefix, plen))
            return 1;
    return 0;
}

static void stop_leftovers(const supervisor *sup)
{
    char *prefix = agent_strdup_printf(CHILD_MARKER "%s/", sup->cfg->state_dir);
    DIR *dir = opendir("/proc");
    if (!prefix || !dir) {
        free(prefix);
        if (dir)
            closedir(dir);
        return;
    }
    pid_t found[64];
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) && count < 64) {
        char *end;
        long pid = strtol(entry->d_name, &end, 10);
        if (*end || pid <= 1 || pid == (long)getpid() || process_gone((pid_t)pid))
            continue;
        if (environ_has_marker(pid, prefix))
            found[count++] = (pid_t)pid;
    }
    closedir(dir);
    free(prefix);
    if (!count)
        return;
    for (size_t i = 0; i < count; i++) {
        agent_log("warn", "msg=\"stopping a child left by a previous agent\" pid=%ld",
                  (long)found[i]);
        kill(getpgid(found[i]) == found[i] ? -found[i] : found[i], SIGTERM);
    }
    double deadline = agent_now() + sup->cfg->stop_timeout_s;
    for (size_t i = 0; i < count; i++) {
        while (!process_gone(found[i]) && agent_now() < deadline)
            usleep(20000);
        if (!process_gone(found[i])) {
            kill(getpgid(found[i]) == found[i] ? -found[i] : found[i], SIGKILL);
            for (int j = 0; j < 100 && !process_gone(found[i]); j++)
                usleep(20000);
        }
    }
}

/* Start a slot's program under supervision (restarts with backoff). */
static void slot_start(supervisor *sup, pkg_slot *slot, int supervised)
{
    if (!slot->executable || !slot->digest[0])
        return;
    agent_proc_set_argv(&slot->proc, slot_argv(sup, slot, slot->executable));
    agent_argv_free(slot->proc.envp);
    slot->proc.envp = slot_envp(sup, slot);
    slot->proc.supervised = supervised;
    slot->proc.failures = 0;
    agent_proc_register(&slot->proc);
    if (!slot->proc.pid_file)
        slot->proc.pid_file = pid_path(sup, slot);
    if (agent_proc_spawn(&slot->proc) < 0) {
        agent_log("error", "msg=\"cannot start\" name=%s error=\"%s\"", slot->name, agent_error());
        if (supervised) {
            slot->proc.failures = 1;
            slot->proc.restart_at = agent_now() + slot->proc.backoff_initial_s;
        }
    }
}

static void slot_stop(supervisor *sup, pkg_slot *slot, int sig)
{
    double stop_timeout;
    slot_health(sup, slot, &stop_timeout);
    agent_proc_stop(&slot->proc, sig, stop_timeout);
    pid_remove(sup, slot);
}

/* ------------------------------------------------------------------ state (journal) */

static json_t *slot_json(const pkg_slot *slot)
{
    json_t *obj = json_pack("{s:s, s:s, s:s?, s:s, s:s, s:s?, s:s?, s:s, s:s, s:i, s:s?}",
                            "name", slot->name, "type", slot->is_addon ? "addon" : "primary",
                            "version", slot->version, "digest", slot->digest, "status",
                            slot->status, "message", slot->message, "offer_version",
                            slot->offer_version, "offer_digest", slot->offer_digest,
                            "bad_digest", slot->bad_digest, "attempts", (int)slot->attempts,
                            "entrypoint", slot->entrypoint);
    if (obj && slot->has_manifest_args) {
        json_t *args = json_array(), *env = json_object();
        for (size_t i = 0; i < slot->args.count; i++)
            json_array_append_new(args, json_string(slot->args.items[i]));
        for (size_t i = 0; i < slot->env.count; i++)
            json_object_set_new(env, slot->env.items[i].key, json_string(slot->env.items[i].value));
        json_object_set_new(obj, "args", args);
        json_object_set_new(obj, "env", env);
    }
    return obj;
}

static int state_save(supervisor *sup)
{
    json_t *root = json_object();
    json_t *packages = json_array();
    json_array_append_new(packages, slot_json(&sup->primary));
    for (size_t i = 0; i < sup->addon_count; i++)
        json_array_append_new(packages, slot_json(sup->addons[i]));
    json_object_set_new(root, "format", json_integer(STATE_FORMAT));
    json_object_set_new(root, "packages", packages);
    if (sup->upgrade.active)
        json_object_set_new(root, "upgrade",
                            json_pack("{s:s, s:s, s:s, s:s?, s:s, s:s?, s:s, s:b}", "step",
                                      sup->upgrade.step, "name", sup->upgrade.name, "type",
                                      sup->upgrade.is_addon ? "addon" : "primary", "version",
                                      sup->upgrade.version, "digest", sup->upgrade.digest,
                                      "old_version", sup->upgrade.old_version, "old_digest",
                                      sup->upgrade.old_digest, "had_old", sup->upgrade.had_old));
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(root);
    if (!text)
        return agent_error_set(PKGSTORE_ENOMEM, "state: cannot serialize");
    int rc = pkgstore_install_write_atomic(sup->state_path, text, strlen(text), 0600);
    free(text);
    if (rc < 0) {
        agent_log("error", "msg=\"cannot write the journal\" path=%s error=\"%s\"", sup->state_path,
                  pkgstore_error_detail());
        return agent_error_set(rc, "%s: %s", sup->state_path, pkgstore_error_detail());
    }
    return 0;
}

static const char *jstr(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void copy_digest(char dst[PKGSTORE_DIGEST_STR_SIZE], const char *src)
{
    dst[0] = '\0';
    if (src && pkgstore_digest_validate(src) == 0)
        snprintf(dst, PKGSTORE_DIGEST_STR_SIZE, "%s", src);
}

static void copy_status(char dst[STATUS_LEN], const char *src)
{
    snprintf(dst, STATUS_LEN, "%s", src ? src : "");
}

static int valid_package_name(const char *name)
{
    if (!name || !*name || strlen(name) > 128 || name[0] == '.')
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return 0;
    return 1;
}

static pkg_slot *find_addon(supervisor *sup, const char *name)
{
    for (size_t i = 0; i < sup->addon_count; i++)
        if (!strcmp(sup->addons[i]->name, name))
            return sup->addons[i];
    return NULL;
}

static pkg_slot *add_addon(supervisor *sup, const char *name, const char *entrypoint)
{
    pkg_slot **grown = realloc(sup->addons, (sup->addon_count + 1) * sizeof *grown);
    pkg_slot *slot = calloc(1, sizeof *slot);
    if (!grown || !slot) {
        free(slot);
        if (grown)
            sup->addons = grown;
        return NULL;
    }
    sup->addons = grown;
    char *exe = addon_executable(sup, name, entrypoint);
    slot_init(slot, name, 1, exe, sup->cfg);
    free(exe);
    slot->entrypoint = dup_or_null(entrypoint);
    sup->addons[sup->addon_count++] = slot;
    return slot;
}

static void remove_addon(supervisor *sup, pkg_slot *slot)
{
    for (size_t i = 0; i < sup->addon_count; i++) {
        if (sup->addons[i] != slot)
            continue;
        memmove(&sup->addons[i], &sup->addons[i + 1],
                (sup->addon_count - i - 1) * sizeof *sup->addons);
        sup->addon_count--;
        break;
    }
    slot_free(slot);
    free(slot);
}

static void slot_load(pkg_slot *slot, json_t *obj)
{
    set_str(&slot->version, jstr(obj, "version"));
    copy_digest(slot->digest, jstr(obj, "digest"));
    copy_status(slot->status, jstr(obj, "status"));
    set_str(&slot->message, jstr(obj, "message"));
    set_str(&slot->offer_version, jstr(obj, "offer_version"));
    copy_digest(slot->offer_digest, jstr(obj, "offer_digest"));
    copy_digest(slot->bad_digest, jstr(obj, "bad_digest"));
    json_t *attempts = json_object_get(obj, "attempts");
    slot->attempts = json_is_integer(attempts) ? (unsigned)json_integer_value(attempts) : 0;
    json_t *args = json_object_get(obj, "args"), *env = json_object_get(obj, "env");
    if (json_is_array(args) && json_is_object(env)) {
        agent_strv_free(&slot->args);
        agent_kvv_free(&slot->env);
        slot->args.items = calloc(json_array_size(args) + 1, sizeof(char *));
        slot->env.items = calloc(json_object_size(env) + 1, sizeof(agent_kv));
        size_t i;
        json_t *v;
        const char *k;
        json_array_foreach(args, i, v) if (json_is_string(v) && slot->args.items)
            slot->args.items[slot->args.count++] = strdup(json_string_value(v));
        json_object_foreach(env, k, v) if (json_is_string(v) && slot->env.items) {
            slot->env.items[slot->env.count].key = strdup(k);
            slot->env.items[slot->env.count++].value = strdup(json_string_value(v));
        }
        slot->has_manifest_args = 1;
    }
}

static int state_load(supervisor *sup)
{
    json_error_t jerr;
    json_t *root = json_load_file(sup->state_path, 0, &jerr);
    if (!root) {
        if (access(sup->state_path, F_OK) == 0)
            agent_log("error", "msg=\"unreadable journal, starting fresh\" path=%s error=\"%s\"",
                      sup->state_path, jerr.text);
        return 0;
    }
    json_t *packages = json_object_get(root, "packages");
    size_t i;
    json_t *item;
    json_array_foreach(packages, i, item) {
        const char *name = jstr(item, "name"), *type = jstr(item, "type");
        if (!valid_package_name(name) || !type)
            continue;
        if (!strcmp(type, "primary") && !strcmp(name, sup->cfg->package))
            slot_load(&sup->primary, item);
        else if (!strcmp(type, "addon") && !find_addon(sup, name)) {
            pkg_slot *slot = add_addon(sup, name, jstr(item, "entrypoint"));
            if (slot)
                slot_load(slot, item);
        }
    }
    json_t *upgrade = json_object_get(root, "upgrade");
    if (json_is_object(upgrade) && valid_package_name(jstr(upgrade, "name"))) {
        sup->upgrade.active = 1;
        copy_status(sup->upgrade.step, jstr(upgrade, "step"));
        set_str(&sup->upgrade.name, jstr(upgrade, "name"));
        sup->upgrade.is_addon = jstr(upgrade, "type") && !strcmp(jstr(upgrade, "type"), "addon");
        set_str(&sup->upgrade.version, jstr(upgrade, "version"));
        copy_digest(sup->upgrade.digest, jstr(upgrade, "digest"));
        set_str(&sup->upgrade.old_version, jstr(upgrade, "old_version"));
        copy_digest(sup->upgrade.old_digest, jstr(upgrade, "old_digest"));
        sup->upgrade.had_old = json_is_true(json_object_get(upgrade, "had_old"));
    }
    json_decref(root);
    return 0;
}

static void upgrade_clear(supervisor *sup)
{
    free(sup->upgrade.name);
    free(sup->upgrade.version);
    free(sup->upgrade.old_version);
    memset(&sup->upgrade, 0, sizeof sup->upgrade);
}

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

/* POST a heartbeat; on success *response_out is the parsed reply. */
static int heartbeat_post(supervisor *sup, json_t **response_out, double timeout_s)
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
    int rc = agent_http_post_json(&reply, &status, sup->cfg, url, body, timeout_s);
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

static void set_status(supervisor *sup, pkg_slot *slot, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_status(supervisor *sup, pkg_slot *slot, const char *status, const char *fmt, ...)
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
    state_save(sup);
    report(sup);
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
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        agent_argv_free(argv);
        snprintf(why, why_len, "validate: pipe: %s", strerror(errno));
        return -1;
    }
    agent_proc proc = {.name = "validate", .output_fd = pipefd[1], .argv = argv};
    if (agent_proc_spawn(&proc) < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        agent_argv_free(argv);
        snprintf(why, why_len, "validate: %s", agent_error());
        return -1;
    }
    close(pipefd[1]);
    char output[8192];
    size_t out_len = 0;
    int eof = 0, timed_out = 0;
    double deadline = agent_now() + cfg->validate_timeout_s;
    while (!eof || proc.pid) {
        if (agent_now() >= deadline) {
            timed_out = 1;
            break;
        }
        if (!eof) {
            struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
            if (poll(&pfd, 1, 50) > 0) {
                char chunk[1024];
                ssize_t n = read(pipefd[0], chunk, sizeof chunk);
                if (n <= 0)
                    eof = 1;
                else if (out_len < sizeof output - 1) {
                    size_t take = (size_t)n < sizeof output - 1 - out_len ? (size_t)n
                                                                          : sizeof output - 1 - out_len;
                    memcpy(output + out_len, chunk, take);
                    out_len += take;
                }
            }
            agent_pump(0);
        } else {
            agent_pump(0.05);
        }
        if (agent_stop_requested()) {
            timed_out = -1;
            break;
        }
    }
    output[out_len] = '\0';
    close(pipefd[0]);
    if (proc.pid) {
        kill(-proc.pid, SIGKILL);
        while (proc.pid)
            agent_pump(0.05);
    }
    agent_proc_unregister(&proc);
    agent_argv_free(argv);
    char lines[MESSAGE_MAX];
    first_lines(lines, sizeof lines, output);
    if (timed_out > 0) {
        snprintf(why, why_len, "validate: timed out after %.1f s%s%s", cfg->validate_timeout_s,
                 lines[0] ? ": " : "", lines);
        return -1;
    }
    if (timed_out < 0) {
        snprintf(why, why_len, "validate: interrupted by stop request");
        return -1;
    }
    if (!WIFEXITED(proc.wait_status) || WEXITSTATUS(proc.wait_status) != 0) {
        char how[96];
        agent_describe_status(how, sizeof how, proc.wait_status);
        snprintf(why, why_len, "validate: %s%s%s", how, lines[0] ? ": " : "", lines);
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
        long status = 0;
        if (agent_http_health(spec->health_url, 1.0, &status) < 0) {
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
        double now = agent_now();
        if (now >= end)
            break;
        healthy = health_check(spec, last, sizeof last) == 0;
        double nap = end - agent_now();
        agent_pump(nap < 0.25 ? (nap > 0 ? nap : 0) : 0.25);
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

/* After the swap: stop the new program, put the previous one back. */
static void rollback(supervisor *sup, pkg_slot *slot, const char *why, int transient)
{
    slot_stop(sup, slot, SIGTERM);
    int rc = 0;
    char detail[256] = "";
    if (sup->upgrade.had_old) {
        rc = pkgstore_install_restore(slot->executable);
        if (rc < 0)
            snprintf(detail, sizeof detail, "%s", pkgstore_error_detail());
    } else if (unlink(slot->executable) < 0 && errno != ENOENT) {
        rc = -1;
        snprintf(detail, sizeof detail, "%s: %s", slot->executable, strerror(errno));
    }
    if (rc < 0) {
        /* The new binary stays; run it rather than nothing. */
        agent_log("error", "msg=\"rollback failed\" package=%s error=\"%s\"", slot->name, detail);
        slot_start(sup, slot, 1);
        copy_digest(slot->bad_digest, sup->upgrade.digest);
        upgrade_clear(sup);
        set_status(sup, slot, "RollbackFailed", "%s; restore: %s", why, detail);
        return;
    }
    set_str(&slot->version, sup->upgrade.old_version);
    copy_digest(slot->digest, sup->upgrade.had_old ? sup->upgrade.old_digest : "");
    if (sup->upgrade.had_old)
        live_digest(slot->digest, slot->executable);
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

/* Addons: args and env from the manifest's annotations
 * ("io.pkgstore.addon.args": a JSON array, "io.pkgstore.addon.env": a JSON
 * object, both as strings). Best effort. */
static void fetch_addon_annotations(supervisor *sup, pkg_slot *slot, const offer *o)
{
    char *url = agent_strdup_printf("%s/v1/packages/%s/%s", sup->cfg->server_url, o->name,
                                    o->version);
    char *body = NULL;
    long status = 0;
    agent_strv_free(&slot->args);
    agent_kvv_free(&slot->env);
    slot->has_manifest_args = 1;
    if (agent_http_get_small(&body, &status, sup->cfg, url, 1) < 0 || status != 200) {
        agent_log("warn", "msg=\"no manifest annotations\" url=%s status=%ld", url, status);
        free(body);
        free(url);
        return;
    }
    json_t *manifest = json_loads(body, 0, NULL);
    json_t *ann = json_object_get(json_object_get(manifest, "manifest") ? json_object_get(manifest, "manifest") : manifest,
                                  "annotations");
    const char *args_text = jstr(ann, "io.pkgstore.addon.args");
    const char *env_text = jstr(ann, "io.pkgstore.addon.env");
    json_t *args = args_text ? json_loads(args_text, 0, NULL) : NULL;
    json_t *env = env_text ? json_loads(env_text, 0, NULL) : NULL;
    size_t i;
    json_t *v;
    const char *k;
    if (json_is_array(args)) {
        slot->args.items = calloc(json_array_size(args) + 1, sizeof(char *));
        json_array_foreach(args, i, v) if (json_is_string(v) && slot->args.items)
            slot->args.items[slot->args.count++] = strdup(json_string_value(v));
    }
    if (json_is_object(env)) {
        slot->env.items = calloc(json_object_size(env) + 1, sizeof(agent_kv));
        json_object_foreach(env, k, v) if (json_is_string(v) && slot->env.items) {
            slot->env.items[slot->env.count].key = strdup(k);
            slot->env.items[slot->env.count++].value = strdup(json_string_value(v));
        }
    }
    json_decref(args);
    json_decref(env);
    json_decref(manifest);
    free(body);
    free(url);
}

static void upgrade(supervisor *sup, pkg_slot *slot, const offer *o)
{
    const agent_config *cfg = sup->cfg;
    char why[MESSAGE_MAX + 64];
    pkgstore_digest expected;
    pkgstore_archive_format format = PKGSTORE_ARCHIVE_UNKNOWN;
    pkgstore_digest_parse(&expected, o->digest); /* validated by the caller */
    if (o->format)
        pkgstore_archive_format_parse(&format, o->format);

    /* Step 1 happened: the offer is new, not running, not known bad. */
    upgrade_clear(sup);
    sup->upgrade.active = 1;
    sup->upgrade.name = strdup(slot->name);
    sup->upgrade.is_addon = slot->is_addon;
    sup->upgrade.version = dup_or_null(o->version);
    copy_digest(sup->upgrade.digest, o->digest);
    sup->upgrade.old_version = dup_or_null(slot->version);
    copy_digest(sup->upgrade.old_digest, slot->digest);
    if (slot->is_addon && (!slot->entrypoint || !o->entrypoint || strcmp(slot->entrypoint, o->entrypoint))) {
        /* first install, or the entrypoint's name changed */
        if (!slot->digest[0]) {
            set_str(&slot->entrypoint, o->entrypoint);
            char *exe = addon_executable(sup, slot->name, o->entrypoint);
            set_str(&slot->executable, exe);
            free(exe);
        }
    }
    sup->upgrade.had_old = slot->digest[0] && access(slot->executable, F_OK) == 0;
    agent_log("info", "msg=\"upgrade starting\" package=%s from=%s to=%s digest=%s", slot->name,
              slot->version ? slot->version : "-", o->version ? o->version : "-", o->digest);

    char hex[PKGSTORE_DIGEST_HEX_LEN + 1];
    pkgstore_digest_format_hex(hex, &expected);
    char *part = agent_strdup_printf("%s/%s.part", sup->tmp_dir, hex);
    char *exe = NULL, *extract_dir = NULL;

    /* 2. Download */
    set_status(sup, slot, "Downloading", NULL);
    int with_token = 0;
    char *url = resolve_url(sup, o->url, &with_token);
    uint64_t got = 0;
    double t0 = agent_now();
    int rc = agent_http_download(cfg, url, with_token, part, o->size, &got);
    free(url);
    if (rc == PKGSTORE_ELIMIT)
        unlink(part);
    if (rc == 0 && got != o->size)
        rc = agent_error_set(PKGSTORE_ESIZE_MISMATCH, "short body: %llu of %llu bytes",
                             (unsigned long long)got, (unsigned long long)o->size);
    if (rc < 0) {
        snprintf(why, sizeof why, "download: %s", agent_error());
        if (agent_stop_requested()) {
            upgrade_clear(sup);
            state_save(sup);
        } else
            fail_transient(sup, slot, "UpgradeFailed", why);
        goto out;
    }
    agent_log("info", "msg=\"downloaded\" package=%s bytes=%llu seconds=%.3f", slot->name,
              (unsigned long long)got, agent_now() - t0);

    /* 3. Verify */
    set_status(sup, slot, "Verifying", NULL);
    t0 = agent_now();
    pkgstore_digest actual;
    rc = pkgstore_install_verify(&actual, part, &expected, o->size);
    if (rc < 0) {
        snprintf(why, sizeof why, "verify: %s", pkgstore_error_detail());
        unlink(part);
        fail_transient(sup, slot, "UpgradeFailed", why);
        goto out;
    }
    agent_log("info", "msg=\"verified\" package=%s digest=%s seconds=%.3f", slot->name, o->digest,
              agent_now() - t0);

    /* 4. Extract the entrypoint, then the dry-run validation */
    set_status(sup, slot, "Validating", NULL);
    t0 = agent_now();
    rc = pkgstore_install_prepare(&exe, &extract_dir, part, format, o->entrypoint, sup->tmp_dir,
                                  NULL);
    if (rc < 0) {
        snprintf(why, sizeof why, "extract: %s", pkgstore_error_detail());
        unlink(part);
        fail_bad(sup, slot, "UpgradeFailed", why);
        goto out;
    }
    if (!slot->is_addon) {
        if (run_validate(sup, exe, why, sizeof why) < 0) {
            unlink(part);
            if (agent_stop_requested()) {
                upgrade_clear(sup);
                state_save(sup);
            } else
                fail_bad(sup, slot, "UpgradeFailed", why);
            goto out;
        }
    } else if (!agent_config_addon(cfg, slot->name) || !agent_config_addon(cfg, slot->name)->has_args) {
        fetch_addon_annotations(sup, slot, o);
    }
    agent_log("info", "msg=\"validated\" package=%s seconds=%.3f", slot->name, agent_now() - t0);
    if (agent_stop_requested()) {
        upgrade_clear(sup);
        state_save(sup);
        goto out;
    }

    /* 5. Swap: stop, keep .bak, rename the new binary in, start it */
    set_status(sup, slot, "Swapping", NULL);
    t0 = agent_now();
    slot_stop(sup, slot, SIGTERM);
    if (slot->is_addon) {
        char *dir = addon_dir(sup, slot->name);
        agent_mkdirs(dir, 0755);
        free(dir);
    }
    rc = pkgstore_install_swap(slot->executable, exe);
    if (rc < 0) {
        snprintf(why, sizeof why, "swap: %s", pkgstore_error_detail());
        slot_start(sup, slot, 1); /* the live path is unchanged */
        fail_transient(sup, slot, "UpgradeFailed", why);
        goto out;
    }
    unlink(part);
    copy_digest(slot->digest, o->digest);
    set_str(&slot->version, o->version);
    slot_start(sup, slot, 0); /* unsupervised: a death in the window is a failure */
    agent_log("info", "msg=\"swapped\" package=%s seconds=%.3f", slot->name, agent_now() - t0);

    /* 6. Monitor */
    set_status(sup, slot, "Monitoring", NULL);
    if (monitor(sup, slot, why, sizeof why) < 0) {
        rollback(sup, slot, why, agent_stop_requested());
        goto out;
    }
    slot->proc.supervised = 1;
    slot->proc.failures = 0;
    slot->attempts = 0;
    slot->retry_at = 0;
    slot->bad_digest[0] = '\0';
    upgrade_clear(sup);
    set_status(sup, slot, "Upgraded", "%s %s is running", slot->name,
               slot->version ? slot->version : slot->digest);

out:
    if (extract_dir) {
        pkgstore_archive_remove_tree(extract_dir);
        pkgstore_free(extract_dir);
    }
    pkgstore_free(exe);
    free(part);
}

/* ------------------------------------------------------------------ recovery */

static void recover(supervisor *sup)
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
    char live[PKGSTORE_DIGEST_STR_SIZE];
    int have_live = live_digest(live, slot->executable) == 0;
    int rc = 0;
    char detail[256] = "";
    if (have_live && sup->upgrade.old_digest[0] && !strcmp(live, sup->upgrade.old_digest)) {
        /* died before the rename: the old binary is still live */
    } else if (sup->upgrade.had_old) {
        rc = pkgstore_install_restore(slot->executable);
        if (rc < 0)
            snprintf(detail, sizeof detail, "%s", pkgstore_error_detail());
    } else if (have_live) {
        unlink(slot->executable);
    }
    char why[MESSAGE_MAX];
    if (rc < 0) {
        copy_digest(slot->digest, have_live ? live : "");
        set_str(&slot->version, have_live && !strcmp(live, sup->upgrade.digest) ? sup->upgrade.version : NULL);
        copy_digest(slot->bad_digest, sup->upgrade.digest);
        upgrade_clear(sup);
        state_save(sup);
        copy_status(slot->status, "RollbackFailed");
        set_str(&slot->message, detail);
        return;
    }
    live_digest(slot->digest, slot->executable);
    set_str(&slot->version, sup->upgrade.old_version);
    snprintf(why, sizeof why, "agent restarted during %s; restored the previous binary", step);
    /* Not the binary's fault as far as we know: retry later, with backoff. */
    slot->attempts++;
    slot->retry_at = agent_now() + retry_delay(sup->cfg, slot->attempts);
    upgrade_clear(sup);
    copy_status(slot->status, "RolledBack");
    set_str(&slot->message, why);
    state_save(sup);
    agent_log("warn", "msg=\"rolled back after restart\" package=%s", slot->name);
}

/* ------------------------------------------------------------------ offers */

static int parse_offer(offer *o, json_t *item, char *why, size_t why_len)
{
    memset(o, 0, sizeof *o);
    o->name = jstr(item, "name");
    o->type = jstr(item, "type");
    o->version = jstr(item, "version");
    o->digest = jstr(item, "digest");
    o->format = jstr(item, "format");
    o->entrypoint = jstr(item, "entrypoint");
    o->url = jstr(item, "url");
    o->policy = jstr(item, "policy");
    json_t *size = json_object_get(item, "size");
    if (!valid_package_name(o->name)) {
        snprintf(why, why_len, "name: missing or invalid");
        return -1;
    }
    if (!o->type || (strcmp(o->type, "primary") && strcmp(o->type, "addon"))) {
        snprintf(why, why_len, "%s: type: must be primary or addon", o->name);
        return -1;
    }
    if (!o->digest || pkgstore_digest_validate(o->digest) < 0) {
        snprintf(why, why_len, "%s: digest: not a sha256 digest", o->name);
        return -1;
    }
    if (!json_is_integer(size) || json_integer_value(size) <= 0) {
        snprintf(why, why_len, "%s: size: must be a positive integer", o->name);
        return -1;
    }
    o->size = (uint64_t)json_integer_value(size);
    pkgstore_archive_format format;
    if (o->format && pkgstore_archive_format_parse(&format, o->format) < 0) {
        snprintf(why, why_len, "%s: format: %s", o->name, pkgstore_error_detail());
        return -1;
    }
    if (!o->url) {
        char *fallback = NULL;
        (void)fallback;
        snprintf(why, why_len, "%s: url: missing", o->name);
        return -1;
    }
    if (o->entrypoint && (o->entrypoint[0] == '/' || strstr(o->entrypoint, "..") ||
                          strlen(o->entrypoint) > 255)) {
        snprintf(why, why_len, "%s: entrypoint: unsafe path", o->name);
        return -1;
    }
    return 0;
}

/* Decide about one offer; maybe run an upgrade. Returns 1 if it ran. */
static int handle_offer(supervisor *sup, pkg_slot *slot, const offer *o)
{
    if (strcmp(slot->offer_digest, o->digest)) {
        /* The offer changed: forget transient failures, and a bad digest
         * that is no longer offered may be tried again later. */
        slot->attempts = 0;
        slot->retry_at = 0;
        if (strcmp(slot->bad_digest, o->digest))
            slot->bad_digest[0] = '\0';
        copy_digest(slot->offer_digest, o->digest);
        set_str(&slot->offer_version, o->version);
        state_save(sup);
    }
    if (!strcmp(slot->digest, o->digest))
        return 0; /* already running */
    if (!strcmp(slot->bad_digest, o->digest))
        return 0; /* failed before: not retried until the offer changes */
    if (slot->retry_at && agent_now() < slot->retry_at)
        return 0;
    upgrade(sup, slot, o);
    return 1;
}

static void process_offers(supervisor *sup, json_t *offers, int *upgraded_out)
{
    for (size_t i = 0; i < sup->addon_count; i++)
        sup->addons[i]->offered = 0;
    size_t index;
    json_t *item;
    json_array_foreach(offers, index, item) {
        if (agent_stop_requested())
            return;
        offer o;
        char why[256];
        if (parse_offer(&o, item, why, sizeof why) < 0) {
            agent_log("warn", "msg=\"ignoring a malformed offer\" index=%zu error=\"%s\"", index, why);
            continue;
        }
        pkg_slot *slot = NULL;
        if (!strcmp(o.type, "primary")) {
            if (strcmp(o.name, sup->cfg->package)) {
                agent_log("warn", "msg=\"ignoring an offer for another primary package\" "
                                  "package=%s collector=%s", o.name, sup->cfg->package);
                continue;
            }
            slot = &sup->primary;
        } else {
            slot = find_addon(sup, o.name);
            if (!slot && !(slot = add_addon(sup, o.name, o.entrypoint)))
                continue;
            slot->offered = 1;
        }
        if (handle_offer(sup, slot, &o))
            *upgraded_out = 1;
    }
    if (agent_stop_requested())
        return;
    /* Addons no longer offered are stopped and removed. */
    for (size_t i = 0; i < sup->addon_count;) {
        pkg_slot *slot = sup->addons[i];
        if (slot->offered) {
            i++;
            continue;
        }
        agent_log("info", "msg=\"addon no longer offered, removing\" addon=%s", slot->name);
        slot_stop(sup, slot, SIGTERM);
        char *dir = addon_dir(sup, slot->name);
        if (pkgstore_archive_remove_tree(dir) < 0)
            agent_log("warn", "msg=\"cannot remove addon directory\" dir=%s error=\"%s\"", dir,
                      pkgstore_error_detail());
        free(dir);
        remove_addon(sup, slot);
        *upgraded_out = 1;
        state_save(sup);
    }
}

int supervisor_heartbeat(supervisor *sup, int *upgraded_out)
{
    *upgraded_out = 0;
    json_t *reply = NULL;
    int rc = heartbeat_post(sup, &reply, sup->cfg->http_timeout_s);
    if (rc < 0)
        return rc;
    json_t *interval = json_object_get(reply, "heartbeat_interval_s");
    sup->server_interval_s = json_is_number(interval) ? json_number_value(interval) : 0;
    json_t *offers = json_object_get(reply, "offers");
    if (offers && !json_is_array(offers))
        agent_log("warn", "msg=\"offers is not an array, ignored\"");
    else if (offers)
        process_offers(sup, offers, upgraded_out);
    json_decref(reply);
    return 0;
}

/* ------------------------------------------------------------------ lifecycle */

int supervisor_init(supervisor *sup, agent_config *cfg)
{
    memset(sup, 0, sizeof *sup);
    sup->cfg = cfg;
    sup->state_path = agent_strdup_printf("%s/state.json", cfg->state_dir);
    sup->tmp_dir = agent_strdup_printf("%s/tmp", cfg->state_dir);
    char *addons = agent_strdup_printf("%s/addons", cfg->state_dir);
    char *run = agent_strdup_printf("%s/run", cfg->state_dir);
    if (run && agent_mkdirs(run, 0755) < 0)
        agent_log("warn", "msg=\"cannot create\" path=%s", run);
    free(run);
    if (!sup->state_path || !sup->tmp_dir || !addons) {
        free(addons);
        return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    }
    int rc = 0;
    if (agent_mkdirs(cfg->state_dir, 0755) < 0 || agent_mkdirs(sup->tmp_dir, 0700) < 0 ||
        agent_mkdirs(addons, 0755) < 0)
        rc = agent_error_set(PKGSTORE_EIO, "%s: cannot create: %s", cfg->state_dir, strerror(errno));
    free(addons);
    if (rc < 0)
        return rc;
    slot_init(&sup->primary, cfg->package, 0, cfg->executable, cfg);
    srand48((long)time(NULL) ^ (long)getpid());
    return state_load(sup);
}

void supervisor_free(supervisor *sup)
{
    slot_free(&sup->primary);
    for (size_t i = 0; i < sup->addon_count; i++) {
        slot_free(sup->addons[i]);
        free(sup->addons[i]);
    }
    free(sup->addons);
    upgrade_clear(sup);
    free(sup->state_path);
    free(sup->tmp_dir);
    memset(sup, 0, sizeof *sup);
}

int supervisor_start(supervisor *sup)
{
    stop_leftovers(sup);
    recover(sup);
    /* What is on disk is the truth about what runs. */
    for (size_t i = 0; i <= sup->addon_count; i++) {
        pkg_slot *slot = i == 0 ? &sup->primary : sup->addons[i - 1];
        char actual[PKGSTORE_DIGEST_STR_SIZE];
        if (live_digest(actual, slot->executable) < 0) {
            if (slot->digest[0])
                agent_log("warn", "msg=\"executable missing\" package=%s path=%s", slot->name,
                          slot->executable);
            slot->digest[0] = '\0';
            continue;
        }
        if (strcmp(actual, slot->digest)) {
            set_str(&slot->version, !slot->is_addon && !slot->digest[0] ? sup->cfg->initial_version
                                                                        : NULL);
            copy_digest(slot->digest, actual);
        }
    }
    state_save(sup);
    for (size_t i = 0; i <= sup->addon_count; i++) {
        pkg_slot *slot = i == 0 ? &sup->primary : sup->addons[i - 1];
        if (slot->digest[0])
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

/*
 * The Supervisor's slots (one per supervised program: the collector and
 * each addon) and the journal, state_dir/state.json, written atomically
 * through libpkgstore's install module before every upgrade step.
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

#define STATE_FORMAT 1

/* ------------------------------------------------------------------ helpers */

char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

void set_str(char **dst, const char *src)
{
    char *copy = dup_or_null(src);
    free(*dst);
    *dst = copy;
}

double jittered(const agent_config *cfg, double seconds)
{
    double j = cfg->heartbeat_jitter;
    if (j <= 0)
        return seconds;
    if (j > 0.9)
        j = 0.9;
    return seconds * (1.0 - j + 2.0 * j * drand48());
}

/* initial_s doubled per attempt after the first, capped at max_s, jittered:
 * failed heartbeats and failed upgrade attempts both back off this way. */
double backoff(const agent_config *cfg, double initial_s, double max_s, unsigned attempts)
{
    double delay = initial_s;
    for (unsigned i = 1; i < attempts && delay < max_s; i++)
        delay *= 2;
    if (delay > max_s)
        delay = max_s;
    return jittered(cfg, delay);
}

double retry_delay(const agent_config *cfg, unsigned attempts)
{
    return backoff(cfg, cfg->retry_initial_s, cfg->retry_max_s, attempts);
}

const char *proc_state(const pkg_slot *slot)
{
    if (slot->proc.pid)
        return "Running";
    if (!slot->digest[0])
        return "NotInstalled";
    if (slot->proc.supervised && slot->proc.restart_at)
        return "Restarting";
    return "Stopped";
}

/* ------------------------------------------------------------------ slots */

void slot_init(pkg_slot *slot, const char *name, int is_addon, const char *executable,
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

void slot_free(pkg_slot *slot)
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

char *addon_dir(const supervisor *sup, const char *name)
{
    return agent_strdup_printf("%s/addons/%s", sup->cfg->state_dir, name);
}

char *addon_executable(const supervisor *sup, const char *name, const char *entrypoint)
{
    char *dir = addon_dir(sup, name);
    const char *base = entrypoint && *entrypoint ? strrchr(entrypoint, '/') : NULL;
    base = base ? base + 1 : (entrypoint && *entrypoint ? entrypoint : name);
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        base = name;
    char *exe = agent_strdup_printf("%s/%s", dir, base);
    free(dir);
    return exe;
}

const agent_health_spec *slot_health(const supervisor *sup, const pkg_slot *slot,
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

void stop_leftovers(const supervisor *sup)
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
void slot_start(supervisor *sup, pkg_slot *slot, int supervised)
{
    if (!slot->executable || access(slot->executable, F_OK) != 0)
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

void slot_stop(supervisor *sup, pkg_slot *slot, int sig)
{
    double stop_timeout;
    slot_health(sup, slot, &stop_timeout);
    agent_proc_stop(&slot->proc, sig, stop_timeout);
    pid_remove(sup, slot);
}

/* ------------------------------------------------------------------ state (journal) */

static json_t *slot_json(const pkg_slot *slot)
{
    json_t *obj = json_pack("{s:s, s:s, s:s?, s:s, s:s, s:s, s:s?, s:s?, s:s, s:s, s:i, s:s?}",
                            "name", slot->name, "type", slot->is_addon ? "addon" : "primary",
                            "version", slot->version, "digest", slot->digest, "exe_digest",
                            slot->exe_digest, "status",
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

int state_save(supervisor *sup)
{
    json_t *root = json_object();
    json_t *packages = json_array();
    json_array_append_new(packages, slot_json(&sup->primary));
    for (size_t i = 0; i < sup->addon_count; i++)
        json_array_append_new(packages, slot_json(sup->addons[i]));
    json_object_set_new(root, "format", json_integer(STATE_FORMAT));
    json_object_set_new(root, "packages", packages);
    if (sup->upgrade.active)
        json_object_set_new(
            root, "upgrade",
            json_pack("{s:s, s:s, s:s, s:s?, s:s, s:s, s:s?, s:s, s:s, s:b, s:b, s:s?}", "step",
                      sup->upgrade.step, "name", sup->upgrade.name, "type",
                      sup->upgrade.is_addon ? "addon" : "primary", "version",
                      sup->upgrade.version, "digest", sup->upgrade.digest, "exe_digest",
                      sup->upgrade.exe_digest, "old_version", sup->upgrade.old_version,
                      "old_digest", sup->upgrade.old_digest, "old_exe_digest",
                      sup->upgrade.old_exe_digest, "had_old", sup->upgrade.had_old,
                      "moved", sup->upgrade.old_executable != NULL, "old_entrypoint",
                      sup->upgrade.old_entrypoint));
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

const char *jstr(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

void copy_digest(char dst[PKGSTORE_DIGEST_STR_SIZE], const char *src)
{
    dst[0] = '\0';
    if (src && pkgstore_digest_validate(src) == 0)
        snprintf(dst, PKGSTORE_DIGEST_STR_SIZE, "%s", src);
}

void copy_status(char dst[STATUS_LEN], const char *src)
{
    snprintf(dst, STATUS_LEN, "%s", src ? src : "");
}

pkg_slot *find_addon(supervisor *sup, const char *name)
{
    for (size_t i = 0; i < sup->addon_count; i++)
        if (!strcmp(sup->addons[i]->name, name))
            return sup->addons[i];
    return NULL;
}

pkg_slot *add_addon(supervisor *sup, const char *name, const char *entrypoint)
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

void remove_addon(supervisor *sup, pkg_slot *slot)
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

void strv_from_json(agent_strv *out, json_t *array)
{
    size_t i;
    json_t *v;
    agent_strv_free(out);
    out->items = calloc(json_array_size(array) + 1, sizeof(char *));
    json_array_foreach(array, i, v) if (json_is_string(v) && out->items)
        out->items[out->count++] = strdup(json_string_value(v));
}

void kvv_from_json(agent_kvv *out, json_t *object)
{
    const char *k;
    json_t *v;
    agent_kvv_free(out);
    out->items = calloc(json_object_size(object) + 1, sizeof(agent_kv));
    json_object_foreach(object, k, v) if (json_is_string(v) && out->items) {
        out->items[out->count].key = strdup(k);
        out->items[out->count++].value = strdup(json_string_value(v));
    }
}

static void slot_load(pkg_slot *slot, json_t *obj)
{
    set_str(&slot->version, jstr(obj, "version"));
    copy_digest(slot->digest, jstr(obj, "digest"));
    copy_digest(slot->exe_digest, jstr(obj, "exe_digest"));
    copy_status(slot->status, jstr(obj, "status"));
    set_str(&slot->message, jstr(obj, "message"));
    set_str(&slot->offer_version, jstr(obj, "offer_version"));
    copy_digest(slot->offer_digest, jstr(obj, "offer_digest"));
    copy_digest(slot->bad_digest, jstr(obj, "bad_digest"));
    json_t *attempts = json_object_get(obj, "attempts");
    slot->attempts = json_is_integer(attempts) ? (unsigned)json_integer_value(attempts) : 0;
    json_t *args = json_object_get(obj, "args"), *env = json_object_get(obj, "env");
    if (json_is_array(args) && json_is_object(env)) {
        strv_from_json(&slot->args, args);
        kvv_from_json(&slot->env, env);
        slot->has_manifest_args = 1;
    }
}

int state_load(supervisor *sup)
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
        if (!agent_valid_name(name) || !type)
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
    if (json_is_object(upgrade) && agent_valid_name(jstr(upgrade, "name"))) {
        sup->upgrade.active = 1;
        copy_status(sup->upgrade.step, jstr(upgrade, "step"));
        set_str(&sup->upgrade.name, jstr(upgrade, "name"));
        sup->upgrade.is_addon = jstr(upgrade, "type") && !strcmp(jstr(upgrade, "type"), "addon");
        set_str(&sup->upgrade.version, jstr(upgrade, "version"));
        copy_digest(sup->upgrade.digest, jstr(upgrade, "digest"));
        copy_digest(sup->upgrade.exe_digest, jstr(upgrade, "exe_digest"));
        set_str(&sup->upgrade.old_version, jstr(upgrade, "old_version"));
        copy_digest(sup->upgrade.old_digest, jstr(upgrade, "old_digest"));
        copy_digest(sup->upgrade.old_exe_digest, jstr(upgrade, "old_exe_digest"));
        sup->upgrade.had_old = json_is_true(json_object_get(upgrade, "had_old"));
        set_str(&sup->upgrade.old_entrypoint, jstr(upgrade, "old_entrypoint"));
        /* paths are derived from the (checked) name, never read back */
        if (sup->upgrade.is_addon && json_is_true(json_object_get(upgrade, "moved")))
            sup->upgrade.old_executable =
                addon_executable(sup, sup->upgrade.name, sup->upgrade.old_entrypoint);
    }
    json_decref(root);
    return 0;
}

void upgrade_clear(supervisor *sup)
{
    free(sup->upgrade.name);
    free(sup->upgrade.version);
    free(sup->upgrade.old_version);
    free(sup->upgrade.old_executable);
    free(sup->upgrade.old_entrypoint);
    memset(&sup->upgrade, 0, sizeof sup->upgrade);
}


/*
 * The Supervisor's slots (one per supervised program: the collector and
 * each addon), their processes, the leftovers of a killed agent, and the
 * lock that keeps a second agent off the state_dir. The journal is in
 * journal.c.
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
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

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

int64_t wall_now(void)
{
    return (int64_t)time(NULL);
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

/* The pump's news about a slot's process: only flags here (the pump may
 * be turning inside an upgrade); supervisor_tick() acts on them. */
static void slot_event(agent_proc *proc, int spawn_failed, void *payload)
{
    pkg_slot *slot = payload;
    (void)proc;
    if (spawn_failed)
        slot->spawn_failed = 1;
    else
        slot->crashed = 1;
}

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
    slot->proc.on_event = slot_event;
    slot->proc.payload = slot;
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
    free(slot->prev_version);
    free(slot->highest_version);
    free(slot->watch_old_entrypoint);
    agent_policy_config_free(&slot->config);
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

/* state_dir/keep/<type>-<name>: the live executable's second name. */
char *kept_path(const supervisor *sup, const pkg_slot *slot)
{
    return agent_strdup_printf("%s/keep/%s-%s", sup->cfg->state_dir,
                               slot->is_addon ? "addon" : "primary", slot->name);
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
    char *config_file = slot->is_addon ? config_file_path(sup, slot->name) : NULL;
    if (slot->is_addon) {
        /* the local YAML, then the policy, then the manifest
         * (docs/policies.md, "Addon configuration") */
        const agent_addon_config *addon = agent_config_addon(cfg, slot->name);
        args = addon && addon->has_args ? &addon->args
               : slot->config.has_args  ? &slot->config.args
                                        : &slot->args;
    }
    agent_kv var_items[] = {
        {"executable", (char *)executable},
        {"config", cfg->collector_config},
        {"state_dir", cfg->state_dir},
        {"addon_dir", dir ? dir : cfg->state_dir},
        {"config_file", config_file ? config_file : ""},
    };
    agent_kvv vars = {var_items, 5};
    char **argv = calloc(args->count + 2, sizeof *argv);
    if (argv) {
        argv[0] = strdup(executable);
        for (size_t i = 0; i < args->count; i++)
            argv[i + 1] = agent_expand(args->items[i], &vars);
    }
    free(dir);
    free(config_file);
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
    agent_kv marker_item = {"PKGSTORE_AGENT_CHILD", NULL}; /* AGENT_CHILD_MARKER */
    marker_item.value = agent_strdup_printf("%s/%s-%s", sup->cfg->state_dir,
                                            slot->is_addon ? "addon" : "primary", slot->name);
    agent_kvv marker = {&marker_item, 1};
    /* later sources win: manifest annotations, the policy, the local
     * config, then the marker */
    const agent_kvv *sources[4] = {slot->is_addon ? &slot->env : NULL,
                                   slot->is_addon ? &slot->config.env : NULL, cfg_env, &marker};
    size_t extra = 1 + slot->env.count + slot->config.env.count + (cfg_env ? cfg_env->count : 0);
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
    for (int s = 0; s < 4; s++) {
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

/* Every child carries PKGSTORE_AGENT_CHILD=<state_dir>/<what> in its
 * environment (proc.c adds it where the caller did not). A restarted agent
 * scans /proc for that marker and stops what a killed agent left behind: a
 * collector, an addon, a validation, a helper (a pid file alone has a
 * window between the spawn and its write). */

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
    char *prefix = agent_strdup_printf(AGENT_CHILD_MARKER "%s/", sup->cfg->state_dir);
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

/* ------------------------------------------------------------------ the lock */

/*
 * One agent per state_dir: an exclusive flock on state_dir/lock, held for
 * the agent's life (the descriptor is close-on-exec, so no child keeps it
 * after the agent dies). Taken before anything else is read or touched.
 */
int state_lock(supervisor *sup)
{
    char *path = agent_strdup_printf("%s/lock", sup->cfg->state_dir);
    if (!path)
        return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int rc = agent_error_set(PKGSTORE_EIO, "%s: %s", path, strerror(errno));
        free(path);
        return rc;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno;
        char holder[32] = "";
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        close(fd);
        int rc = err == EWOULDBLOCK
                     ? agent_error_set(PKGSTORE_ELOCKED,
                                       "%s: in use by another pkgstore-agent%s%s%s; not starting",
                                       sup->cfg->state_dir, holder[0] ? " (pid " : "", holder,
                                       holder[0] ? ")" : "")
                     : agent_error_set(PKGSTORE_EIO, "%s: flock: %s", path, strerror(err));
        free(path);
        return rc;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len)
        agent_log("warn", "msg=\"cannot write the lock file\" path=%s error=\"%s\"", path,
                  strerror(errno));
    free(path);
    sup->lock_fd = fd;
    return 0;
}

/* ------------------------------------------------------------------ addon slots */

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

void slot_mark_good(pkg_slot *slot, const char *exe_digest)
{
    if (!exe_digest || !exe_digest[0] || slot_is_good(slot, exe_digest))
        return;
    if (slot->ngood == GOOD_MAX) { /* the oldest goes */
        memmove(slot->good[0], slot->good[1], (GOOD_MAX - 1) * sizeof slot->good[0]);
        slot->ngood--;
    }
    copy_digest(slot->good[slot->ngood++], exe_digest);
}

int slot_is_good(const pkg_slot *slot, const char *exe_digest)
{
    for (size_t i = 0; exe_digest && exe_digest[0] && i < slot->ngood; i++)
        if (!strcmp(slot->good[i], exe_digest))
            return 1;
    return 0;
}

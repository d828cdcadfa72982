/*
 * The journal: state_dir/state.json, written atomically through
 * libpkgstore's install module before every upgrade step, and written a
 * second time to state_dir/state.copy.json, so that one damaged or emptied
 * file is survivable. Also the node-wide memory that lives in it: the
 * bounded set of bad digests and the times of recent upgrade attempts.
 */
#include "supervisor.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#define STATE_FORMAT 1

/* ------------------------------------------------------------------ small helpers */

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

static int64_t jint(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

/* ------------------------------------------------------------------ bad digests */

bad_entry *bad_find(supervisor *sup, const char *digest)
{
    for (size_t i = 0; digest && i < sup->nbad; i++)
        if (!strcmp(sup->bad[i].digest, digest))
            return &sup->bad[i];
    return NULL;
}

void bad_remove(supervisor *sup, bad_entry *entry)
{
    size_t i = (size_t)(entry - sup->bad);
    free(entry->package);
    free(entry->reason);
    memmove(&sup->bad[i], &sup->bad[i + 1], (sup->nbad - i - 1) * sizeof sup->bad[0]);
    sup->nbad--;
    memset(&sup->bad[sup->nbad], 0, sizeof sup->bad[0]);
}

bad_entry *bad_add(supervisor *sup, const char *digest, const char *package, const char *reason,
                   uint32_t retry, const char *config_digest)
{
    if (!digest || !digest[0])
        return NULL;
    bad_entry *old = bad_find(sup, digest);
    if (old)
        bad_remove(sup, old);
    if (sup->nbad == BAD_MAX) /* bounded: the oldest is forgotten */
        bad_remove(sup, &sup->bad[0]);
    bad_entry *e = &sup->bad[sup->nbad++];
    memset(e, 0, sizeof *e);
    copy_digest(e->digest, digest);
    e->package = dup_or_null(package);
    e->reason = dup_or_null(reason);
    e->retry_known = retry != BAD_RETRY_UNKNOWN;
    e->retry = e->retry_known ? retry : 0;
    copy_digest(e->config_digest, config_digest);
    e->time = wall_now();
    return e;
}

int attempt_allowed(supervisor *sup)
{
    const agent_config *cfg = sup->cfg;
    if (!cfg->limit_attempts)
        return 1;
    int64_t now = wall_now();
    size_t kept = 0;
    for (size_t i = 0; i < sup->nattempts; i++)
        if ((double)(now - sup->attempt_times[i]) < cfg->limit_window_s && sup->attempt_times[i] <= now)
            sup->attempt_times[kept++] = sup->attempt_times[i];
    sup->nattempts = kept;
    if (sup->nattempts >= cfg->limit_attempts)
        return 0;
    if (!sup->attempt_times) {
        sup->attempt_times = calloc(cfg->limit_attempts, sizeof *sup->attempt_times);
        if (!sup->attempt_times)
            return 1; /* out of memory: do not make it a reason to stop upgrading */
    }
    sup->attempt_times[sup->nattempts++] = now;
    return 1;
}

/* ------------------------------------------------------------------ writing */

static json_t *slot_json(const pkg_slot *slot)
{
    json_t *obj = json_pack("{s:s, s:s, s:s?, s:s, s:s, s:s, s:s?, s:s?, s:s, s:I, s:i, s:s?}",
                            "name", slot->name, "type", slot->is_addon ? "addon" : "primary",
                            "version", slot->version, "digest", slot->digest, "exe_digest",
                            slot->exe_digest, "status", slot->status, "message", slot->message,
                            "offer_version", slot->offer_version, "offer_digest",
                            slot->offer_digest, "offer_retry", (json_int_t)slot->offer_retry,
                            "attempts", (int)slot->attempts, "entrypoint", slot->entrypoint);
    if (!obj)
        return NULL;
    if (slot->has_manifest_args) {
        json_t *args = json_array(), *env = json_object();
        for (size_t i = 0; i < slot->args.count; i++)
            json_array_append_new(args, json_string(slot->args.items[i]));
        for (size_t i = 0; i < slot->env.count; i++)
            json_object_set_new(env, slot->env.items[i].key, json_string(slot->env.items[i].value));
        json_object_set_new(obj, "args", args);
        json_object_set_new(obj, "env", env);
    }
    if (slot->config.digest[0])
        json_object_set_new(obj, "config", policy_config_json(&slot->config));
    if (slot->prev_digest[0] || slot->prev_exe_digest[0])
        json_object_set_new(obj, "prev", json_pack("{s:s?, s:s, s:s}", "version",
                                                   slot->prev_version, "digest", slot->prev_digest,
                                                   "exe_digest", slot->prev_exe_digest));
    if (slot->kept_digest[0])
        json_object_set_new(obj, "kept_digest", json_string(slot->kept_digest));
    if (slot->highest_version)
        json_object_set_new(obj, "highest_version", json_string(slot->highest_version));
    json_t *good = json_array();
    for (size_t i = 0; i < slot->ngood; i++)
        json_array_append_new(good, json_string(slot->good[i]));
    json_object_set_new(obj, "good", good);
    if (slot->watch_until)
        json_object_set_new(obj, "watch", json_pack("{s:I, s:i, s:b, s:s?}", "until",
                                                    (json_int_t)slot->watch_until, "crashes",
                                                    (int)slot->watch_crashes, "moved",
                                                    slot->watch_moved, "old_entrypoint",
                                                    slot->watch_old_entrypoint));
    return obj;
}

static json_t *state_json(const supervisor *sup)
{
    json_t *root = json_object();
    json_t *packages = json_array();
    json_array_append_new(packages, slot_json(&sup->primary));
    for (size_t i = 0; i < sup->addon_count; i++)
        json_array_append_new(packages, slot_json(sup->addons[i]));
    json_object_set_new(root, "format", json_integer(STATE_FORMAT));
    json_object_set_new(root, "packages", packages);
    json_t *bad = json_array();
    for (size_t i = 0; i < sup->nbad; i++) {
        const bad_entry *e = &sup->bad[i];
        json_t *entry = json_pack("{s:s, s:s?, s:s?, s:s?, s:I}", "digest", e->digest, "package",
                                  e->package, "reason", e->reason, "config_digest",
                                  e->config_digest[0] ? e->config_digest : NULL, "time",
                                  (json_int_t)e->time);
        if (entry && e->retry_known)
            json_object_set_new(entry, "retry", json_integer((json_int_t)e->retry));
        if (entry && e->is_config)
            json_object_set_new(entry, "kind", json_string("config"));
        json_array_append_new(bad, entry);
    }
    json_object_set_new(root, "bad", bad);
    json_t *attempts = json_array();
    for (size_t i = 0; i < sup->nattempts; i++)
        json_array_append_new(attempts, json_integer((json_int_t)sup->attempt_times[i]));
    json_object_set_new(root, "attempts", attempts);
    if (sup->upgrade.active)
        json_object_set_new(
            root, "upgrade",
            json_pack("{s:s, s:s, s:s, s:s?, s:s, s:s, s:I, s:s?, s:s, s:s, s:b, s:b, s:s?}",
                      "step", sup->upgrade.step, "name", sup->upgrade.name, "type",
                      sup->upgrade.is_addon ? "addon" : "primary", "version",
                      sup->upgrade.version, "digest", sup->upgrade.digest, "exe_digest",
                      sup->upgrade.exe_digest, "retry", (json_int_t)sup->upgrade.retry,
                      "old_version", sup->upgrade.old_version, "old_digest",
                      sup->upgrade.old_digest, "old_exe_digest", sup->upgrade.old_exe_digest,
                      "had_old", sup->upgrade.had_old, "moved",
                      sup->upgrade.old_executable != NULL, "old_entrypoint",
                      sup->upgrade.old_entrypoint));
    if (sup->config_apply.active) {
        json_t *old = sup->config_apply.old.digest[0] ? policy_config_json(&sup->config_apply.old)
                                                      : json_null();
        json_object_set_new(root, "config_apply",
                            json_pack("{s:s, s:s, s:I, s:o}", "name", sup->config_apply.name,
                                      "step", sup->config_apply.step, "retry",
                                      (json_int_t)sup->config_apply.retry, "old", old));
    }
    return root;
}

int state_save(supervisor *sup)
{
    json_t *root = state_json(sup);
    char *text = root ? json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    if (!text)
        return agent_error_set(PKGSTORE_ENOMEM, "state: cannot serialize");
    int rc = pkgstore_install_write_atomic(sup->state_path, text, strlen(text), 0600);
    if (rc < 0) {
        agent_log("error", "msg=\"cannot write the journal\" path=%s error=\"%s\"", sup->state_path,
                  pkgstore_error_detail());
        rc = agent_error_set(rc, "%s: %s", sup->state_path, pkgstore_error_detail());
        free(text);
        return rc;
    }
    /* The second copy: the journal survives one damaged file. */
    if (pkgstore_install_write_atomic(sup->copy_path, text, strlen(text), 0600) < 0)
        agent_log("warn", "msg=\"cannot write the journal's copy\" path=%s error=\"%s\"",
                  sup->copy_path, pkgstore_error_detail());
    free(text);
    return 0;
}

/* ------------------------------------------------------------------ reading */

static void slot_load(pkg_slot *slot, json_t *obj)
{
    set_str(&slot->version, jstr(obj, "version"));
    copy_digest(slot->digest, jstr(obj, "digest"));
    copy_digest(slot->exe_digest, jstr(obj, "exe_digest"));
    copy_status(slot->status, jstr(obj, "status"));
    set_str(&slot->message, jstr(obj, "message"));
    set_str(&slot->offer_version, jstr(obj, "offer_version"));
    copy_digest(slot->offer_digest, jstr(obj, "offer_digest"));
    int64_t retry = jint(obj, "offer_retry");
    slot->offer_retry = retry > 0 && retry <= (int64_t)UINT32_MAX ? (uint32_t)retry : 0;
    int64_t attempts = jint(obj, "attempts");
    slot->attempts = attempts > 0 && attempts < 1000000 ? (unsigned)attempts : 0;
    json_t *args = json_object_get(obj, "args"), *env = json_object_get(obj, "env");
    if (json_is_array(args) && json_is_object(env)) {
        strv_from_json(&slot->args, args);
        kvv_from_json(&slot->env, env);
        slot->has_manifest_args = 1;
    }
    policy_config_from_json(&slot->config, json_object_get(obj, "config"));
    json_t *prev = json_object_get(obj, "prev");
    set_str(&slot->prev_version, jstr(prev, "version"));
    copy_digest(slot->prev_digest, jstr(prev, "digest"));
    copy_digest(slot->prev_exe_digest, jstr(prev, "exe_digest"));
    copy_digest(slot->kept_digest, jstr(obj, "kept_digest"));
    set_str(&slot->highest_version, jstr(obj, "highest_version"));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(obj, "good"), i, v) if (json_is_string(v))
        slot_mark_good(slot, json_string_value(v));
    /* a journal older than known-good executables: what it ran was good
     * enough to keep, so a crash loop of it is not rolled back */
    if (!json_object_get(obj, "good"))
        slot_mark_good(slot, slot->exe_digest);
    json_t *watch = json_object_get(obj, "watch");
    if (json_is_object(watch) && jint(watch, "until") > 0) {
        slot->watch_until = jint(watch, "until");
        int64_t crashes = jint(watch, "crashes");
        slot->watch_crashes = crashes > 0 && crashes < 1000 ? (unsigned)crashes : 0;
        slot->watch_moved = json_is_true(json_object_get(watch, "moved"));
        const char *old_entry = jstr(watch, "old_entrypoint");
        /* a path comes from it: the same rule as an offer's entrypoint */
        if (old_entry && old_entry[0] != '/' && !strstr(old_entry, ".."))
            set_str(&slot->watch_old_entrypoint, old_entry);
        else
            slot->watch_moved = 0;
    }
}

/* The journal at path, if it is one: a JSON object of the right format
 * with a packages array. NULL otherwise (*exists says whether a file was
 * there at all). */
static json_t *journal_read(const char *path, int *exists)
{
    json_error_t jerr;
    *exists = access(path, F_OK) == 0;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root && jint(root, "format") == STATE_FORMAT && json_is_array(json_object_get(root, "packages")))
        return root;
    if (*exists)
        agent_log("error", "msg=\"unreadable journal\" path=%s error=\"%s\"", path,
                  root ? "not a journal" : jerr.text);
    json_decref(root);
    return NULL;
}

int state_load(supervisor *sup)
{
    int exists = 0, copy_exists = 0;
    json_t *root = journal_read(sup->state_path, &exists);
    if (!root) {
        root = journal_read(sup->copy_path, &copy_exists);
        if (root)
            agent_log("warn", "msg=\"using the journal's copy\" path=%s", sup->copy_path);
    }
    if (!root) {
        if (exists || copy_exists) {
            /* Not a fresh state_dir: what runs is identified by digest
             * from here on (supervisor_start), never by the config. */
            sup->journal_lost = 1;
            agent_log("error", "msg=\"journal lost, starting from what is on disk\" path=%s",
                      sup->state_path);
        } else {
            sup->first_start = 1;
        }
        return 0;
    }
    json_t *packages = json_object_get(root, "packages");
    size_t i;
    json_t *item;
    json_array_foreach(packages, i, item) {
        const char *name = jstr(item, "name"), *type = jstr(item, "type");
        if (!agent_valid_name(name) || !type)
            continue;
        pkg_slot *slot = NULL;
        if (!strcmp(type, "primary") && !strcmp(name, sup->cfg->package))
            slot = &sup->primary;
        else if (!strcmp(type, "addon") && !find_addon(sup, name))
            slot = add_addon(sup, name, jstr(item, "entrypoint"));
        if (!slot)
            continue;
        slot_load(slot, item);
        /* a journal older than the bad set: its one bad digest per package */
        const char *legacy = jstr(item, "bad_digest");
        if (legacy && pkgstore_digest_validate(legacy) == 0 && !bad_find(sup, legacy))
            bad_add(sup, legacy, name, "failed before (older journal)", 0, NULL);
    }
    json_array_foreach(json_object_get(root, "bad"), i, item) {
        const char *digest = jstr(item, "digest");
        json_t *retry_json = json_object_get(item, "retry");
        int64_t retry = jint(item, "retry");
        if (!digest || pkgstore_digest_validate(digest) < 0 || bad_find(sup, digest))
            continue;
        bad_entry *e = bad_add(sup, digest, jstr(item, "package"), jstr(item, "reason"),
                               !json_is_integer(retry_json)               ? BAD_RETRY_UNKNOWN
                               : retry > 0 && retry < (int64_t)UINT32_MAX ? (uint32_t)retry
                                                                          : 0,
                               jstr(item, "config_digest"));
        const char *kind = jstr(item, "kind");
        e->is_config = kind && !strcmp(kind, "config");
        e->time = jint(item, "time");
    }
    json_t *attempts = json_object_get(root, "attempts");
    if (sup->cfg->limit_attempts && json_array_size(attempts)) {
        sup->attempt_times = calloc(sup->cfg->limit_attempts, sizeof *sup->attempt_times);
        json_array_foreach(attempts, i, item) {
            if (!sup->attempt_times || sup->nattempts == sup->cfg->limit_attempts)
                break;
            if (json_is_integer(item))
                sup->attempt_times[sup->nattempts++] = (int64_t)json_integer_value(item);
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
        int64_t retry = jint(upgrade, "retry");
        sup->upgrade.retry = retry > 0 && retry <= (int64_t)UINT32_MAX ? (uint32_t)retry : 0;
        set_str(&sup->upgrade.old_version, jstr(upgrade, "old_version"));
        copy_digest(sup->upgrade.old_digest, jstr(upgrade, "old_digest"));
        copy_digest(sup->upgrade.old_exe_digest, jstr(upgrade, "old_exe_digest"));
        sup->upgrade.had_old = json_is_true(json_object_get(upgrade, "had_old"));
        const char *old_entry = jstr(upgrade, "old_entrypoint");
        if (old_entry && old_entry[0] != '/' && !strstr(old_entry, ".."))
            set_str(&sup->upgrade.old_entrypoint, old_entry);
        /* paths are derived from the (checked) name, never read back */
        if (sup->upgrade.is_addon && json_is_true(json_object_get(upgrade, "moved")))
            sup->upgrade.old_executable =
                addon_executable(sup, sup->upgrade.name, sup->upgrade.old_entrypoint);
    }
    json_t *config_apply = json_object_get(root, "config_apply");
    if (json_is_object(config_apply) && agent_valid_name(jstr(config_apply, "name"))) {
        sup->config_apply.active = 1;
        set_str(&sup->config_apply.name, jstr(config_apply, "name"));
        copy_status(sup->config_apply.step, jstr(config_apply, "step"));
        int64_t retry = jint(config_apply, "retry");
        sup->config_apply.retry = retry > 0 && retry <= (int64_t)UINT32_MAX ? (uint32_t)retry : 0;
        policy_config_from_json(&sup->config_apply.old, json_object_get(config_apply, "old"));
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

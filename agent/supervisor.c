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
    if (!agent_valid_name(o->name)) {
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
    /* The helper parses the format name itself (an unknown one fails the
     * upgrade at its extract step); here it only has to be a plain word. */
    if (o->format && (!*o->format || strlen(o->format) > 32 ||
                      strspn(o->format, "abcdefghijklmnopqrstuvwxyz0123456789+-_.") !=
                          strlen(o->format))) {
        snprintf(why, why_len, "%s: format: not a format name", o->name);
        return -1;
    }
    if (!o->url) {
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
        if (agent_remove_tree(dir) < 0)
            agent_log("warn", "msg=\"cannot remove addon directory\" dir=%s error=\"%s\"", dir,
                      agent_error());
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
    if (sup->server_interval_s && (sup->server_interval_s < 0.1 || sup->server_interval_s > 86400)) {
        /* pkgstored sends 1 s .. 1 day; anything else would make us hammer
         * the server or go silent for good. Keep our configured interval. */
        agent_log("warn", "msg=\"ignoring the server's heartbeat interval\" interval_s=%g",
                  sup->server_interval_s);
        sup->server_interval_s = 0;
    }
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
    sup->quiet = 1; /* start the collector first, report on the first heartbeat */
    recover(sup);
    sup->quiet = 0;
    /* What is on disk is the truth about what runs. A slot's digest is its
     * package's (an archive's, say); exe_digest is the installed file's. */
    for (size_t i = 0; i <= sup->addon_count; i++) {
        pkg_slot *slot = i == 0 ? &sup->primary : sup->addons[i - 1];
        char actual[PKGSTORE_DIGEST_STR_SIZE];
        int rc = agent_file_digest(actual, slot->executable);
        if (rc == PKGSTORE_ENOTFOUND) {
            if (slot->digest[0])
                agent_log("warn", "msg=\"executable missing\" package=%s path=%s", slot->name,
                          slot->executable);
            slot->digest[0] = slot->exe_digest[0] = '\0';
            continue;
        }
        if (rc < 0) {
            /* It is there and it runs; what it is is decided next time. */
            agent_log("warn", "msg=\"cannot hash the executable, keeping the journal's digest\" "
                              "package=%s path=%s error=\"%s\"",
                      slot->name, slot->executable, agent_error());
            continue;
        }
        if (!strcmp(actual, slot->exe_digest))
            continue;
        if (!slot->exe_digest[0] && !strcmp(actual, slot->digest)) {
            copy_digest(slot->exe_digest, actual); /* a journal older than exe_digest */
            continue;
        }
        /* Not what we installed: someone put it there. */
        set_str(&slot->version, !slot->is_addon && !slot->digest[0] ? sup->cfg->initial_version
                                                                    : NULL);
        copy_digest(slot->digest, actual);
        copy_digest(slot->exe_digest, actual);
    }
    state_save(sup);
    for (size_t i = 0; i <= sup->addon_count; i++) {
        pkg_slot *slot = i == 0 ? &sup->primary : sup->addons[i - 1];
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


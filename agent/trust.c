/*
 * Signed packages on the agent (trust.h): the current root, the check of
 * an offer before its artifact is downloaded, root rotations. The helper
 * verifies; this file fetches, decides and keeps files.
 */
#include "trust.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

static int revoked_load(agent_trust *trust);

static int reply_u64(uint64_t *out, json_t *reply, const char *key)
{
    json_t *v = json_object_get(reply, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return agent_error_set(PKGSTORE_EIO, "helper: malformed reply: %s", key);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* root-check: 0 with the version of the root in path. */
static int root_check(uint64_t *version_out, const char *path)
{
    json_t *reply = NULL;
    int rc = agent_helper_call(&reply, NULL, 0, 0, "root-check", path, NULL);
    if (rc == 0)
        rc = reply_u64(version_out, reply, "version");
    json_decref(reply);
    return rc;
}

int agent_trust_check_pinned(const agent_config *cfg, uint64_t *version_out)
{
    *version_out = 0;
    if (!cfg->trust_root)
        return 0;
    int rc = root_check(version_out, cfg->trust_root);
    if (rc < 0) {
        char reason[1024]; /* agent_error() is the buffer agent_error_set() writes */
        snprintf(reason, sizeof reason, "%s", agent_error());
        return agent_error_set(rc, "%s: trust.root: %s", cfg->path, reason);
    }
    if (*version_out == 0)
        return agent_error_set(PKGSTORE_EINVALID, "%s: trust.root: %s: version 0", cfg->path,
                               cfg->trust_root);
    return 0;
}

const char *agent_trust_current(const agent_trust *trust)
{
    return trust->use_adopted ? trust->adopted : trust->pinned;
}

int agent_trust_init(agent_trust *trust, const agent_config *cfg)
{
    memset(trust, 0, sizeof *trust);
    if (!cfg->trust_root)
        return 0;
    trust->enabled = 1;
    trust->pinned = strdup(cfg->trust_root);
    char *dir = agent_strdup_printf("%s/trust", cfg->state_dir);
    trust->adopted = dir ? agent_strdup_printf("%s/root.json", dir) : NULL;
    trust->revoked_path = dir ? agent_strdup_printf("%s/revoked.json", dir) : NULL;
    if (!trust->pinned || !trust->adopted || !trust->revoked_path) {
        free(dir);
        return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    }
    if (agent_mkdirs(dir, 0700) < 0) {
        int rc = agent_error_set(PKGSTORE_EIO, "%s: cannot create: %s", dir, strerror(errno));
        free(dir);
        return rc;
    }
    free(dir);
    int rc = agent_trust_check_pinned(cfg, &trust->version);
    if (rc < 0)
        return rc;
    /* The adopted root was verified as a rotation when it was written, by
     * this agent, into its own state_dir; it is checked again for damage
     * (self-signed to threshold) and used only when newer than the pinned
     * one (a new pinned root installed with the node wins). */
    uint64_t adopted = 0;
    if (access(trust->adopted, F_OK) == 0) {
        if (root_check(&adopted, trust->adopted) < 0)
            agent_log("warn", "msg=\"ignoring the adopted root\" path=%s error=\"%s\"",
                      trust->adopted, agent_error());
        else if (adopted > trust->version) {
            trust->use_adopted = 1;
            trust->version = adopted;
        }
    }
    agent_log("info", "msg=\"trust root\" path=%s version=%" PRIu64, agent_trust_current(trust),
              trust->version);
    if (revoked_load(trust) < 0)
        return agent_error_set(PKGSTORE_ENOMEM, "%s: out of memory", trust->revoked_path);
    return 0;
}

static void revocations_clear(agent_trust *trust);

void agent_trust_free(agent_trust *trust)
{
    revocations_clear(trust);
    free(trust->pinned);
    free(trust->adopted);
    free(trust->revoked_path);
    memset(trust, 0, sizeof *trust);
}

static int copy_field(char *dst, size_t len, json_t *reply, const char *key)
{
    const char *text = json_string_value(json_object_get(reply, key));
    if (!text || strlen(text) >= len)
        return agent_error_set(PKGSTORE_EIO, "verify-offer: malformed reply: %s", key);
    memcpy(dst, text, strlen(text) + 1);
    return 0;
}

int agent_trust_offer(agent_signed_artifact *out, const agent_trust *trust,
                      const agent_config *cfg, const char *tmp_dir, const agent_offer *o,
                      char *why, size_t why_len)
{
    memset(out, 0, sizeof *out);
    if (o->trust_error) {
        snprintf(why, why_len, "signature: %s", o->trust_error);
        return TRUST_REFUSED;
    }
    if (!o->manifest) {
        snprintf(why, why_len, "signature: unsigned offer (no manifest digest; trust.root "
                               "requires signed packages)");
        return TRUST_REFUSED;
    }
    const char *hex = strchr(o->manifest, ':') + 1;
    char *path = agent_strdup_printf("%s/%s.manifest", tmp_dir, hex);
    char *url = agent_strdup_printf("%s/v1/blobs/%s", cfg->server_url, o->manifest);
    char max_text[32];
    snprintf(max_text, sizeof max_text, "%d", PKGSTORE_MANIFEST_SIZE_MAX);
    if (!path || !url) {
        free(path);
        free(url);
        snprintf(why, why_len, "signature: out of memory");
        return TRUST_TRANSIENT;
    }
    unlink(path); /* the helper would resume a leftover: start afresh */
    int result = 0;
    json_t *reply = NULL;
    int rc = agent_helper_call(NULL, NULL, cfg->http_timeout_s, 0, "fetch", url, path, max_text,
                               NULL);
    if (rc < 0) {
        snprintf(why, why_len, "signature: manifest %s: %s", o->manifest, agent_error());
        result = rc == PKGSTORE_ELIMIT ? TRUST_REFUSED : TRUST_TRANSIENT;
        goto out;
    }
    const char *input = o->signatures ? o->signatures : "[]";
    rc = agent_helper_call(&reply, input, 0, 0, "verify-offer", agent_trust_current(trust), path,
                           o->manifest, o->name, o->version, o->is_addon ? "addon" : "primary",
                           cfg->platform, NULL);
    if (rc < 0) {
        snprintf(why, why_len, "signature: %s", agent_error());
        /* a helper that could not read its files says nothing of the offer */
        result = rc == PKGSTORE_EIO || rc == PKGSTORE_ENOMEM || rc == PKGSTORE_ENOTFOUND
                     ? TRUST_TRANSIENT
                     : TRUST_REFUSED;
        goto out;
    }
    if (copy_field(out->digest, sizeof out->digest, reply, "digest") < 0 ||
        pkgstore_digest_validate(out->digest) < 0 ||
        copy_field(out->format, sizeof out->format, reply, "format") < 0 ||
        copy_field(out->entrypoint, sizeof out->entrypoint, reply, "entrypoint") < 0 ||
        reply_u64(&out->size, reply, "size") < 0 || out->size == 0) {
        snprintf(why, why_len, "signature: %s", agent_error());
        result = TRUST_TRANSIENT;
        goto out;
    }
    /* The artifact comes from the signed manifest; an offer that names
     * another digest is someone else's package under this name. */
    if (strcmp(out->digest, o->digest)) {
        snprintf(why, why_len, "signature: the offer's digest %s is not the signed manifest's %s "
                               "for %s", o->digest, out->digest, cfg->platform);
        result = TRUST_REFUSED;
        goto out;
    }
    uint64_t valid = 0;
    reply_u64(&valid, reply, "valid");
    agent_log("info", "msg=\"offer signature verified\" package=%s version=%s manifest=%s "
                      "valid_keys=%" PRIu64 " root_version=%" PRIu64,
              o->name, o->version, o->manifest, valid, trust->version);
out:
    json_decref(reply);
    unlink(path);
    free(path);
    free(url);
    return result;
}

/* GET /v1/trust/root/V into path (the body, as received). */
static int fetch_root(const agent_config *cfg, uint64_t version, const char *path)
{
    char *url = agent_strdup_printf("%s/v1/trust/root/%" PRIu64, cfg->server_url, version);
    if (!url)
        return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    json_t *reply = NULL;
    int rc = agent_helper_call(&reply, NULL, 0, 0, "http-get", url, NULL);
    free(url);
    long status = 0;
    char *body = NULL;
    if (rc == 0)
        rc = agent_helper_reply_http(&status, &body, reply, "http-get");
    json_decref(reply);
    if (rc == 0 && status != 200)
        rc = agent_error_set(PKGSTORE_ENET, "GET /v1/trust/root/%" PRIu64 ": HTTP %ld", version,
                             status);
    if (rc == 0 && strlen(body) > PKGSTORE_TRUST_DOCUMENT_SIZE_MAX)
        rc = agent_error_set(PKGSTORE_ELIMIT, "root version %" PRIu64 ": over %d bytes", version,
                             PKGSTORE_TRUST_DOCUMENT_SIZE_MAX);
    if (rc == 0 && pkgstore_install_write_atomic(path, body, strlen(body), 0600) < 0)
        rc = agent_error_set(PKGSTORE_EIO, "%s", pkgstore_error_detail());
    free(body);
    return rc;
}

void agent_trust_update_root(agent_trust *trust, const agent_config *cfg, const char *tmp_dir,
                             uint64_t server_version)
{
    if (!trust->enabled || server_version <= trust->version || server_version <= trust->refused)
        return;
    char *candidate = agent_strdup_printf("%s/root.candidate.json", tmp_dir);
    if (!candidate)
        return;
    for (unsigned steps = 0; trust->version < server_version && steps < TRUST_ROOT_WALK_MAX;
         steps++) {
        uint64_t next = trust->version + 1;
        int rc = fetch_root(cfg, next, candidate);
        json_t *reply = NULL;
        if (rc == 0)
            rc = agent_helper_call(&reply, NULL, 0, 0, "root-rotate", candidate,
                                   agent_trust_current(trust), NULL);
        uint64_t got = 0;
        if (rc == 0 && (rc = reply_u64(&got, reply, "version")) == 0 && got != next)
            rc = agent_error_set(PKGSTORE_EDENIED, "asked for root version %" PRIu64
                                 ", got version %" PRIu64, next, got);
        json_decref(reply);
        /* Only a verified rotation replaces the current root, atomically;
         * the pinned file is never written. */
        if (rc == 0 && pkgstore_install_copy_atomic(trust->adopted, candidate, 0600) < 0)
            rc = agent_error_set(PKGSTORE_EIO, "%s", pkgstore_error_detail());
        if (rc < 0) {
            agent_log("warn", "msg=\"root rotation refused; keeping the current root\" "
                              "version=%" PRIu64 " offered=%" PRIu64 " error=\"%s\"",
                      trust->version, next, agent_error());
            /* unreachable, or our own files could not be read or written
             * (a full disk, say): try again; the document refused: not
             * until the server announces a newer one */
            if (rc != PKGSTORE_ENET && rc != PKGSTORE_EIO && rc != PKGSTORE_ENOSPC &&
                rc != PKGSTORE_ENOMEM && rc != PKGSTORE_ENOTFOUND)
                trust->refused = server_version;
            break;
        }
        trust->use_adopted = 1;
        trust->version = next;
        trust->revocations_generation = 0; /* verified again against the new root */
        agent_log("info", "msg=\"root rotated\" version=%" PRIu64 " path=%s", next,
                  trust->adopted);
    }
    unlink(candidate);
    free(candidate);
}

/* Add name version (reason) unless held already: a verified revocation is
 * never dropped, whatever a later list leaves out (docs/trust.md: a
 * revocation cannot be withdrawn; a registry taken over must not undo
 * one by serving a newer generation without it). 1 if added, 0 if held,
 * -1 when out of memory. */
static int revoked_add(agent_trust *trust, const char *name, const char *version,
                       const char *reason)
{
    if (agent_trust_revoked(trust, name, version))
        return 0;
    struct agent_revocation *grown =
        realloc(trust->revoked, (trust->nrevoked + 1) * sizeof *trust->revoked);
    if (!grown)
        return -1;
    trust->revoked = grown;
    struct agent_revocation *r = &trust->revoked[trust->nrevoked];
    r->name = strdup(name);
    r->version = strdup(version);
    r->reason = strdup(reason ? reason : "");
    if (r->name && r->version && r->reason) {
        trust->nrevoked++;
        return 1;
    }
    free(r->name);
    free(r->version);
    free(r->reason);
    return -1;
}

/* The verified list, kept in state_dir/trust/revoked.json so that a
 * restart does not forget it either (written by this agent after the
 * helper verified each statement, like the adopted root). */
static void revoked_save(const agent_trust *trust)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < trust->nrevoked; i++)
        json_array_append_new(list, json_pack("{s:s, s:s, s:s}", "name", trust->revoked[i].name,
                                              "version", trust->revoked[i].version, "reason",
                                              trust->revoked[i].reason));
    char *text = list ? json_dumps(list, JSON_COMPACT) : NULL;
    json_decref(list);
    if (!text || pkgstore_install_write_atomic(trust->revoked_path, text, strlen(text), 0600) < 0)
        agent_log("warn", "msg=\"cannot keep the revocations\" path=%s error=\"%s\"",
                  trust->revoked_path, text ? pkgstore_error_detail() : "out of memory");
    free(text);
}

/* 0, or -1 out of memory (a kept revocation must not be lost quietly). */
static int revoked_load(agent_trust *trust)
{
    if (access(trust->revoked_path, F_OK) != 0)
        return 0;
    json_error_t jerr;
    json_t *list = json_load_file(trust->revoked_path, JSON_REJECT_DUPLICATES, &jerr);
    size_t i;
    json_t *item;
    if (!json_is_array(list))
        agent_log("warn", "msg=\"ignoring the kept revocations\" path=%s error=\"%s\"",
                  trust->revoked_path, list ? "not an array" : jerr.text);
    json_array_foreach(list, i, item) {
        const char *name = json_string_value(json_object_get(item, "name"));
        const char *version = json_string_value(json_object_get(item, "version"));
        if (name && version &&
            revoked_add(trust, name, version, json_string_value(json_object_get(item, "reason"))) < 0) {
            json_decref(list);
            return -1;
        }
    }
    json_decref(list);
    if (trust->nrevoked)
        agent_log("info", "msg=\"revocations kept\" path=%s revoked=%zu", trust->revoked_path,
                  trust->nrevoked);
    return 0;
}

static void revocations_clear(agent_trust *trust)
{
    for (size_t i = 0; i < trust->nrevoked; i++) {
        free(trust->revoked[i].name);
        free(trust->revoked[i].version);
        free(trust->revoked[i].reason);
    }
    free(trust->revoked);
    trust->revoked = NULL;
    trust->nrevoked = 0;
}

void agent_trust_update_revocations(agent_trust *trust, const agent_config *cfg,
                                    uint64_t generation)
{
    if (!trust->enabled)
        return;
    trust->server_generation = generation;
    if (generation == 0 || generation == trust->revocations_generation)
        return;
    char *url = agent_strdup_printf("%s/v1/trust/revocations", cfg->server_url);
    json_t *reply = NULL, *checked = NULL;
    long status = 0;
    char *body = NULL;
    int rc = url ? agent_helper_call(&reply, NULL, 0, 0, "http-get", url, NULL)
                 : agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    free(url);
    if (rc == 0)
        rc = agent_helper_reply_http(&status, &body, reply, "http-get");
    if (rc == 0 && status != 200)
        rc = agent_error_set(PKGSTORE_ENET, "GET /v1/trust/revocations: HTTP %ld", status);
    if (rc == 0)
        rc = agent_helper_call(&checked, body, 0, 0, "verify-revocations",
                               agent_trust_current(trust), NULL);
    json_t *list = json_object_get(checked, "revoked");
    if (rc == 0 && !json_is_array(list))
        rc = agent_error_set(PKGSTORE_EIO, "verify-revocations: malformed reply: revoked");
    if (rc < 0) {
        agent_log("warn", "msg=\"cannot read the revocations; keeping the previous list\" "
                          "generation=%" PRIu64 " error=\"%s\"",
                  generation, agent_error());
        goto out;
    }
    size_t i, added = 0, listed = 0, lost = 0;
    json_t *item;
    json_array_foreach(list, i, item) {
        const char *name = json_string_value(json_object_get(item, "name"));
        const char *version = json_string_value(json_object_get(item, "version"));
        if (!name || !version)
            continue;
        listed++;
        int held = revoked_add(trust, name, version,
                               json_string_value(json_object_get(item, "reason")));
        if (held < 0)
            lost++;
        else
            added += (size_t)held;
    }
    if (added)
        revoked_save(trust);
    if (lost) { /* fail safe: nothing is installed until the whole list is held */
        agent_log("warn", "msg=\"cannot hold the revocations; trying again\" generation=%" PRIu64
                          " error=\"out of memory\"", generation);
        goto out;
    }
    if (listed < trust->nrevoked)
        agent_log("warn", "msg=\"the server's revocations leave out some this node verified; "
                          "they stay revoked\" generation=%" PRIu64 " listed=%zu kept=%zu",
                  generation, listed, trust->nrevoked);
    json_array_foreach(json_object_get(checked, "ignored"), i, item)
        agent_log("warn", "msg=\"revocation not signed by the current root, ignored\" error=\"%s\"",
                  json_string_value(json_object_get(item, "error")));
    trust->revocations_generation = generation;
    agent_log("info", "msg=\"revocations\" generation=%" PRIu64 " revoked=%zu", generation,
              trust->nrevoked);
out:
    json_decref(reply);
    json_decref(checked);
    free(body);
}

const char *agent_trust_revoked(const agent_trust *trust, const char *name, const char *version)
{
    pkgstore_semver want;
    if (pkgstore_version_parse(&want, version) < 0)
        return NULL;
    for (size_t i = 0; i < trust->nrevoked; i++) {
        pkgstore_semver have;
        if (!strcmp(trust->revoked[i].name, name) &&
            pkgstore_version_parse(&have, trust->revoked[i].version) == 0 &&
            pkgstore_version_compare(&have, &want) == 0)
            return trust->revoked[i].reason;
    }
    return NULL;
}

int agent_trust_version_allowed(const agent_trust *trust, const char *name, const char *version,
                                const char *highest, char *why, size_t why_len)
{
    if (trust->server_generation && trust->server_generation != trust->revocations_generation) {
        /* fail safe: the version may be revoked in the list not read */
        snprintf(why, why_len, "revocations: generation %" PRIu64 " could not be read from the "
                               "server yet; nothing is installed until it is",
                 trust->server_generation);
        return -1;
    }
    const char *reason = agent_trust_revoked(trust, name, version);
    if (reason) {
        snprintf(why, why_len, "revoked: %s %s is revoked%s%.300s", name, version,
                 reason[0] ? ": " : "", reason);
        return -1;
    }
    pkgstore_semver offered, floor;
    if (!highest || pkgstore_version_parse(&floor, highest) < 0 ||
        pkgstore_version_parse(&offered, version) < 0 ||
        pkgstore_version_compare(&offered, &floor) >= 0)
        return 0;
    if (agent_trust_revoked(trust, name, highest))
        return 0; /* the way back from a revoked release */
    snprintf(why, why_len, "rollback: %s %s is lower than %s, which ran here, and %s is not "
                           "revoked", name, version, highest, highest);
    return -1;
}

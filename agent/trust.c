/*
 * Signed packages on the agent (trust.h): the current root, the check of
 * an offer before its artifact is downloaded, root rotations, revocations
 * and what was verified (state_dir/trust/state.json). The helper
 * verifies; this file fetches, decides and keeps files.
 */
#include "trust.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>


static int reply_u64(uint64_t *out, json_t *reply, const char *key)
{
    json_t *v = json_object_get(reply, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return agent_error_set(PKGSTORE_EIO, "helper: malformed reply: %s", key);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* A "created" member of a helper reply: Unix seconds, 0 when absent. */
static int64_t reply_created(json_t *reply)
{
    json_t *v = json_object_get(reply, "created");
    return json_is_integer(v) && json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
}

/* root-check: 0 with the version of the root in path (and its "created"
 * in *created_out when not NULL). */
static int root_check_created(uint64_t *version_out, int64_t *created_out, const char *path)
{
    json_t *reply = NULL;
    int rc = agent_helper_call(&reply, NULL, 0, 0, "root-check", path, NULL);
    if (rc == 0)
        rc = reply_u64(version_out, reply, "version");
    if (rc == 0 && created_out)
        *created_out = reply_created(reply);
    json_decref(reply);
    return rc;
}

static int root_check(uint64_t *version_out, const char *path)
{
    return root_check_created(version_out, NULL, path);
}

void agent_trust_time_format(char out[32], int64_t seconds)
{
    struct tm tm;
    time_t t = (time_t)seconds;
    if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "1970-01-01T00:00:00Z");
}

/* ------------------------------------------------------------------ state.json */

#define TRUST_STATE_FORMAT 1

static void revocations_clear(agent_trust *trust);

/* Add one verified revocation unless held; 0, or -1 when out of memory.
 * Not capped: only statements signed to threshold get here, and dropping
 * one would undo it. */
static int revoked_add(agent_trust *trust, const char *name, const char *version,
                       const char *reason, int64_t created)
{
    for (size_t i = 0; i < trust->nrevoked; i++)
        if (!strcmp(trust->revoked[i].name, name) && !strcmp(trust->revoked[i].version, version))
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
    r->created = created;
    if (!r->name || !r->version || !r->reason) {
        free(r->name);
        free(r->version);
        free(r->reason);
        return -1;
    }
    trust->nrevoked++;
    return 0;
}

/* Keep what was verified: the revocations, the generation they were read
 * at and newest_signed, written whole and renamed. A failure is logged:
 * the next change writes it again, and the server is asked again after a
 * restart. */
static void trust_save(const agent_trust *trust)
{
    json_t *revoked = json_array();
    for (size_t i = 0; revoked && i < trust->nrevoked; i++)
        json_array_append_new(revoked, json_pack("{s:s, s:s, s:s, s:I}", "name",
                                                 trust->revoked[i].name, "version",
                                                 trust->revoked[i].version, "reason",
                                                 trust->revoked[i].reason, "created",
                                                 (json_int_t)trust->revoked[i].created));
    json_t *root = json_pack("{s:i, s:I, s:I, s:I, s:o*}", "format", TRUST_STATE_FORMAT,
                             "root_version", (json_int_t)trust->version,
                             "revocations_generation", (json_int_t)trust->revocations_generation,
                             "newest_signed", (json_int_t)trust->newest_signed, "revoked",
                             revoked);
    char *text = root ? json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    if (!text || pkgstore_install_write_atomic(trust->state_path, text, strlen(text), 0600) < 0)
        agent_log("error", "msg=\"cannot keep the verified trust state\" path=%s error=\"%s\"",
                  trust->state_path, text ? pkgstore_error_detail() : "out of memory");
    free(text);
}

/* state.json as a JSON object of the right format, or NULL (logged when
 * a file is there but unusable). */
static json_t *trust_state_read(const char *path)
{
    if (access(path, F_OK) != 0)
        return NULL;
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    json_t *format = json_object_get(root, "format");
    if (json_is_integer(format) && json_integer_value(format) == TRUST_STATE_FORMAT &&
        json_is_array(json_object_get(root, "revoked")))
        return root;
    agent_log("warn", "msg=\"ignoring the verified trust state; the server is asked again\" "
                      "path=%s error=\"%s\"",
              path, root ? "not a trust state" : jerr.text);
    json_decref(root);
    return NULL;
}

static uint64_t json_u64(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

/* What an earlier run verified, and in *root_version_out the root it was
 * verified against (0: no file). The file is this agent's own, in its
 * state_dir (0700); a damaged one is ignored, which is safe: the
 * generation stays 0, so nothing is installed until the list is read from
 * the server again. */
static void trust_load(agent_trust *trust, uint64_t *root_version_out)
{
    *root_version_out = 0;
    json_t *root = trust_state_read(trust->state_path);
    if (!root)
        return;
    *root_version_out = json_u64(root, "root_version");
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(root, "revoked"), i, item) {
        const char *name = json_string_value(json_object_get(item, "name"));
        const char *version = json_string_value(json_object_get(item, "version"));
        if (name && version &&
            revoked_add(trust, name, version, json_string_value(json_object_get(item, "reason")),
                        (int64_t)json_u64(item, "created")) < 0)
            break;
    }
    if (i == json_array_size(json_object_get(root, "revoked")))
        trust->revocations_generation = json_u64(root, "revocations_generation");
    trust->newest_signed = (int64_t)json_u64(root, "newest_signed");
    agent_log("info", "msg=\"verified trust state\" path=%s revocations_generation=%" PRIu64
                      " revoked=%zu newest_signed=%" PRId64,
              trust->state_path, trust->revocations_generation, trust->nrevoked,
              trust->newest_signed);
    json_decref(root);
}

/* A signed document created at created was verified: 1 when it is the
 * newest so far (the caller saves), else 0. */
static int note_signed(agent_trust *trust, int64_t created)
{
    if (created <= trust->newest_signed)
        return 0;
    trust->newest_signed = created;
    return 1;
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
    trust->state_path = dir ? agent_strdup_printf("%s/state.json", dir) : NULL;
    if (!trust->pinned || !trust->adopted || !trust->state_path) {
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
    uint64_t kept_root = 0;
    trust_load(trust, &kept_root);
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
    /* The generation was read with the root of the file: under another
     * one (a new pinned root installed with the node) the statements it
     * ignored may verify, so the list is read again, as after a rotation. */
    int changed = kept_root != trust->version;
    if (changed)
        trust->revocations_generation = 0;
    /* the current root counts among the signed data seen */
    uint64_t checked = 0;
    int64_t created = 0;
    if (root_check_created(&checked, &created, agent_trust_current(trust)) == 0 &&
        checked == trust->version)
        changed |= note_signed(trust, created);
    if (changed)
        trust_save(trust);
    agent_log("info", "msg=\"trust root\" path=%s version=%" PRIu64, agent_trust_current(trust),
              trust->version);
    return 0;
}

void agent_trust_free(agent_trust *trust)
{
    revocations_clear(trust);
    free(trust->pinned);
    free(trust->adopted);
    free(trust->state_path);
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

int agent_trust_offer(agent_signed_artifact *out, agent_trust *trust,
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
    if (note_signed(trust, reply_created(reply)))
        trust_save(trust);
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
        int64_t created = rc == 0 ? reply_created(reply) : 0;
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
        trust->revocations_generation = 0; /* read again, verified against the new root */
        note_signed(trust, created);
        trust_save(trust);
        agent_log("info", "msg=\"root rotated\" version=%" PRIu64 " path=%s", next,
                  trust->adopted);
    }
    unlink(candidate);
    free(candidate);
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
    /* Added to what was verified before, never replacing it: a revocation
     * cannot be withdrawn, so a list without it (an older generation, a
     * server that lost its trust directory) takes nothing away. */
    size_t i, before = trust->nrevoked, listed = 0;
    json_t *item;
    json_array_foreach(list, i, item) {
        const char *name = json_string_value(json_object_get(item, "name"));
        const char *version = json_string_value(json_object_get(item, "version"));
        if (!name || !version)
            continue;
        listed++;
        int64_t created = reply_created(item);
        if (revoked_add(trust, name, version, json_string_value(json_object_get(item, "reason")),
                        created) < 0) {
            /* fail safe: the generation stays unread, so nothing is
             * installed until the whole list is held; tried again */
            agent_log("warn", "msg=\"cannot keep the revocations; keeping the previous list\" "
                              "generation=%" PRIu64 " error=\"out of memory\"",
                      generation);
            goto out;
        }
        note_signed(trust, created);
    }
    if (listed < trust->nrevoked)
        agent_log("warn", "msg=\"the server's revocations leave out some this node verified; "
                          "they stay revoked\" generation=%" PRIu64 " listed=%zu kept=%zu",
                  generation, listed, trust->nrevoked);
    json_array_foreach(json_object_get(checked, "ignored"), i, item)
        agent_log("warn", "msg=\"revocation not signed by the current root, ignored\" error=\"%s\"",
                  json_string_value(json_object_get(item, "error")));
    trust->revocations_generation = generation;
    trust_save(trust);
    agent_log("info", "msg=\"revocations\" generation=%" PRIu64 " revoked=%zu new=%zu",
              generation, trust->nrevoked, trust->nrevoked - before);
out:
    json_decref(reply);
    json_decref(checked);
    free(body);
}

json_t *agent_trust_report(const agent_trust *trust)
{
    if (!trust->enabled)
        return NULL;
    json_t *obj = json_pack("{s:I, s:I}", "root_version", (json_int_t)trust->version,
                            "revocations", (json_int_t)trust->revocations_generation);
    if (obj && trust->newest_signed > 0) {
        char when[32];
        agent_trust_time_format(when, trust->newest_signed);
        json_object_set_new(obj, "newest_signed", json_string(when));
    }
    return obj;
}

json_t *agent_trust_status(const agent_config *cfg)
{
    if (!cfg->trust_root)
        return NULL;
    json_t *out = json_object();
    char *adopted = agent_strdup_printf("%s/trust/root.json", cfg->state_dir);
    char *path = agent_strdup_printf("%s/trust/state.json", cfg->state_dir);
    uint64_t version = 0;
    if (adopted && access(adopted, F_OK) == 0 && root_check(&version, adopted) == 0)
        json_object_set_new(out, "adopted_root_version", json_integer((json_int_t)version));
    json_t *state = path ? trust_state_read(path) : NULL;
    if (state) {
        json_object_set_new(out, "revocations",
                            json_integer((json_int_t)json_u64(state, "revocations_generation")));
        json_object_set_new(out, "revoked", json_incref(json_object_get(state, "revoked")));
        int64_t newest = (int64_t)json_u64(state, "newest_signed");
        if (newest > 0) {
            char when[32];
            agent_trust_time_format(when, newest);
            json_object_set_new(out, "newest_signed", json_string(when));
            json_object_set_new(out, "newest_signed_age_s",
                                json_integer((json_int_t)(time(NULL) - newest)));
        }
    }
    json_decref(state);
    free(adopted);
    free(path);
    return out;
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

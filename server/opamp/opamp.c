/*
 * server/opamp/opamp.c - one OpAMP exchange, without HTTP: an AgentToServer
 * in, the JSON heartbeat it stands for through fleet_heartbeat() (the same
 * parser, limits and credential checks as POST /v1/agents/heartbeat), and
 * the reply's offers and targets out as a ServerToAgent's
 * PackagesAvailable. docs/opamp.md is the contract: identity, the
 * attribute-to-label table, full state, and the status table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "opamp.pb-c.h"
#include "opamp.h"

#define SERVER_CAPABILITIES                                                                    \
    (OPAMP__PROTO__V1__SERVER_CAPABILITIES__ServerCapabilities_AcceptsStatus |                  \
     OPAMP__PROTO__V1__SERVER_CAPABILITIES__ServerCapabilities_OffersPackages |                 \
     OPAMP__PROTO__V1__SERVER_CAPABILITIES__ServerCapabilities_AcceptsPackagesStatus)

#define LABELS_MAX 64   /* the fleet's labels per node */
#define PACKAGES_MAX 64 /* the fleet's packages per heartbeat */

typedef Opamp__Proto__V1__AgentToServer agent_to_server;
typedef Opamp__Proto__V1__ServerToAgent server_to_agent;
typedef Opamp__Proto__V1__AgentDescription agent_description;
typedef Opamp__Proto__V1__PackageStatuses package_statuses;
typedef Opamp__Proto__V1__PackageStatus package_status;
typedef Opamp__Proto__V1__KeyValue key_value;

/* ---------------------------------------------------------------- small helpers */

static int fail(fleet_error *err, int code, unsigned int http_status, const char *message)
{
    err->code = code;
    err->http_status = http_status;
    err->retry_after_s = 0;
    snprintf(err->message, sizeof(err->message), "%s", message);
    return code;
}

void opamp_uid_format(char out[37], const uint8_t uid[OPAMP_UID_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    char *at = out;
    for (size_t i = 0; i < OPAMP_UID_SIZE; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *at++ = '-';
        *at++ = hex[uid[i] >> 4];
        *at++ = hex[uid[i] & 15];
    }
    *at = '\0';
}

/* A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits
 * under the version and variant. -1 when getrandom() fails. */
static int uuid_v7(uint8_t out[OPAMP_UID_SIZE])
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
    if (getrandom(out + 6, OPAMP_UID_SIZE - 6, 0) != (ssize_t)(OPAMP_UID_SIZE - 6))
        return -1;
    for (int i = 0; i < 6; i++)
        out[i] = (uint8_t)(ms >> (8 * (5 - i)));
    out[6] = (uint8_t)(0x70 | (out[6] & 0x0f));
    out[8] = (uint8_t)(0x80 | (out[8] & 0x3f));
    return 0;
}

/* A JSON string of text, which the agent sent and may not be UTF-8:
 * such bytes become '?'. NULL only when out of memory. */
static json_t *json_text(const char *text)
{
    json_t *str = json_string(text ? text : "");
    if (str)
        return str;
    char *copy = strdup(text);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80 || (unsigned char)*p < 0x20)
            *p = '?';
    str = json_string(copy);
    free(copy);
    return str;
}

/* [A-Za-z0-9][A-Za-z0-9._:-]{0,252}, as the fleet's node ids. */
static int node_id_valid(const char *id)
{
    size_t len = strlen(id);
    if (len < 1 || len > 253)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != ':' && c != '-')))
            return 0;
    }
    return 1;
}

/* Printable ASCII without spaces, 1..max bytes: the heartbeat's versions. */
static int token_valid(const char *s, size_t max)
{
    size_t len = s ? strlen(s) : 0;
    if (len == 0 || len > max)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

static const char *attr_string(const key_value *kv)
{
    if (!kv || !kv->key || !kv->value ||
        kv->value->value_case != OPAMP__PROTO__V1__ANY_VALUE__VALUE_STRING_VALUE)
        return NULL;
    return kv->value->string_value;
}

/* The string value of attribute key (identifying first), or NULL. */
static const char *attribute(const agent_description *desc, const char *key)
{
    for (size_t i = 0; desc && i < desc->n_identifying_attributes; i++) {
        const key_value *kv = desc->identifying_attributes[i];
        if (kv && kv->key && strcmp(kv->key, key) == 0 && attr_string(kv))
            return attr_string(kv);
    }
    for (size_t i = 0; desc && i < desc->n_non_identifying_attributes; i++) {
        const key_value *kv = desc->non_identifying_attributes[i];
        if (kv && kv->key && strcmp(kv->key, key) == 0 && attr_string(kv))
            return attr_string(kv);
    }
    return NULL;
}

/* ---------------------------------------------------------------- AgentToServer -> heartbeat */

/* Attributes that are not labels (docs/opamp.md, the table). */
static int reserved_attribute(const char *key)
{
    return strcmp(key, "service.instance.id") == 0 || strcmp(key, "service.version") == 0 ||
           strcmp(key, "os.type") == 0 || strcmp(key, "host.arch") == 0;
}

static void add_label(json_t *labels, const char *key, const char *value)
{
    if (json_object_size(labels) >= LABELS_MAX || json_object_get(labels, key))
        return;
    if (pkgstore_label_key_validate(key) < 0 || pkgstore_label_value_validate(value) < 0)
        return; /* not a label: dropped, not an error */
    json_object_set_new(labels, key, json_string(value));
}

/* pkgstore.label.KEY first (they win), then every other string attribute. */
static json_t *labels_of(const agent_description *desc)
{
    static const char prefix[] = "pkgstore.label.";
    json_t *labels = json_object();
    for (int pass = 0; labels && pass < 2; pass++) {
        for (int list = 0; list < 2; list++) {
            size_t n = list ? desc->n_non_identifying_attributes : desc->n_identifying_attributes;
            key_value **kvs = list ? desc->non_identifying_attributes
                                   : desc->identifying_attributes;
            for (size_t i = 0; i < n; i++) {
                const char *value = attr_string(kvs[i]);
                if (!value)
                    continue;
                const char *key = kvs[i]->key;
                int prefixed = strncmp(key, prefix, sizeof(prefix) - 1) == 0;
                if (pass == 0 && prefixed)
                    add_label(labels, key + sizeof(prefix) - 1, value);
                else if (pass == 1 && !prefixed && !reserved_attribute(key))
                    add_label(labels, key, value);
            }
        }
    }
    return labels;
}

/* os.type and host.arch as a platform, normalized; "unknown/unknown"
 * without both (or when they do not make a platform). */
static void platform_of(char out[PKGSTORE_PLATFORM_STR_SIZE], const agent_description *desc)
{
    const char *os = attribute(desc, "os.type"), *arch = attribute(desc, "host.arch");
    char joined[160];
    size_t os_len = os ? strlen(os) : 0, arch_len = arch ? strlen(arch) : 0;
    if (os_len && arch_len && os_len + arch_len + 2 <= sizeof(joined) && !strchr(os, '/')) {
        memcpy(joined, os, os_len);
        joined[os_len] = '/';
        memcpy(joined + os_len + 1, arch, arch_len + 1);
        if (pkgstore_platform_normalize(out, joined) == 0)
            return;
    }
    snprintf(out, PKGSTORE_PLATFORM_STR_SIZE, "unknown/unknown");
}

static const opamp_slot *slot_named(const opamp_agent_state *prev, const char *name)
{
    for (size_t i = 0; i < prev->nslots; i++)
        if (strcmp(prev->slots[i].name, name) == 0)
            return &prev->slots[i];
    return NULL;
}

static const opamp_slot *primary_slot(const opamp_agent_state *prev)
{
    for (size_t i = 0; i < prev->nslots; i++)
        if (!prev->slots[i].addon)
            return &prev->slots[i];
    return NULL;
}

/* "Verifying", "Verifying: ..." or "Verifying ...": that step. */
static const char *installing_step(const char *message)
{
    static const char *const steps[] = {"Verifying", "Validating", "Swapping", "Monitoring"};
    for (size_t i = 0; message && i < sizeof(steps) / sizeof(*steps); i++) {
        size_t len = strlen(steps[i]);
        if (strncmp(message, steps[i], len) == 0 &&
            (message[len] == '\0' || message[len] == ':' || message[len] == ' '))
            return steps[i];
    }
    return NULL;
}

static int starts_with(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The history status and message of one PackageStatus (the status table
 * of docs/opamp.md); status NULL: nothing for the history. message is
 * written into buf or points into ps. */
static void status_of(const char **status, const char **message, char *buf, size_t size,
                      const package_status *ps, const char *offered)
{
    const char *error_message = ps->error_message && *ps->error_message ? ps->error_message
                                                                        : NULL;
    *status = NULL;
    *message = error_message;
    switch (ps->status) {
    case OPAMP__PROTO__V1__PACKAGE_STATUS_ENUM__PackageStatusEnum_Installed:
        if (offered && ps->agent_has_version && strcmp(ps->agent_has_version, offered) == 0)
            *status = "Upgraded";
        break;
    case OPAMP__PROTO__V1__PACKAGE_STATUS_ENUM__PackageStatusEnum_InstallPending:
        break; /* Pending is the state of an offer nothing was reported for */
    case OPAMP__PROTO__V1__PACKAGE_STATUS_ENUM__PackageStatusEnum_Downloading:
        *status = "Downloading";
        if (ps->download_details) {
            snprintf(buf, size, "%.1f%% at %.0f bytes/s%s%.900s",
                     ps->download_details->download_percent,
                     ps->download_details->download_bytes_per_second, error_message ? ": " : "",
                     error_message ? error_message : "");
            *message = buf;
        }
        break;
    case OPAMP__PROTO__V1__PACKAGE_STATUS_ENUM__PackageStatusEnum_Installing: {
        const char *step = installing_step(error_message);
        *status = step ? step : "Swapping";
        if (step && strcmp(error_message, step) == 0)
            *message = NULL;
        break;
    }
    case OPAMP__PROTO__V1__PACKAGE_STATUS_ENUM__PackageStatusEnum_InstallFailed:
        if (starts_with(error_message, "rolled back:"))
            *status = "RolledBack";
        else if (starts_with(error_message, "rollback failed:"))
            *status = "RollbackFailed";
        else
            *status = "UpgradeFailed"; /* "incompatible: ..." too: see docs/opamp.md */
        break;
    default:
        break; /* a value of a later schema */
    }
}

static json_t *package_of(const package_status *ps, const char *name,
                          const opamp_agent_state *prev)
{
    const opamp_slot *slot = slot_named(prev, name);
    json_t *pkg = json_pack("{s:s, s:s}", "name", name, "type",
                            slot && slot->addon ? "addon" : "primary");
    if (!pkg)
        return NULL;
    if (token_valid(ps->agent_has_version, PKGSTORE_VERSION_MAX))
        json_object_set_new(pkg, "version", json_string(ps->agent_has_version));
    if (ps->agent_has_hash.len == PKGSTORE_DIGEST_SIZE) {
        pkgstore_digest digest;
        char text[PKGSTORE_DIGEST_STR_SIZE];
        memcpy(digest.bytes, ps->agent_has_hash.data, PKGSTORE_DIGEST_SIZE);
        pkgstore_digest_format(text, &digest);
        json_object_set_new(pkg, "digest", json_string(text));
    }
    /* the version the status is about: the offered one (the history is
     * kept per offered version), else the slot's target */
    const char *offered = NULL;
    if (token_valid(ps->server_offered_version, PKGSTORE_VERSION_MAX))
        offered = ps->server_offered_version;
    else if (slot && slot->version[0])
        offered = slot->version;
    if (offered)
        json_object_set_new(pkg, "offer", json_pack("{s:s}", "version", offered));
    const char *status, *message;
    char buf[1024];
    status_of(&status, &message, buf, sizeof(buf), ps, offered);
    if (status) {
        json_object_set_new(pkg, "status", json_string(status));
        if (message)
            json_object_set_new(pkg, "message", json_text(message));
    }
    return pkg;
}

/* The heartbeat an agent's description and statuses stand for. */
static json_t *heartbeat_of(const agent_description *desc, const package_statuses *statuses,
                            const uint8_t uid[OPAMP_UID_SIZE], const opamp_agent_state *prev,
                            int primary_empty_name)
{
    char platform[PKGSTORE_PLATFORM_STR_SIZE], uid_text[37];
    const char *node_id = attribute(desc, "service.instance.id");
    if (!node_id || !node_id_valid(node_id)) {
        opamp_uid_format(uid_text, uid);
        node_id = uid_text;
    }
    platform_of(platform, desc);
    json_t *hb = json_pack("{s:s, s:s, s:o, s:[]}", "node_id", node_id, "platform", platform,
                           "labels", labels_of(desc), "packages");
    if (!hb)
        return NULL;
    const char *version = attribute(desc, "service.version");
    if (token_valid(version, 64))
        json_object_set_new(hb, "agent_version", json_string(version));
    json_t *packages = json_object_get(hb, "packages");
    for (size_t i = 0; statuses && i < statuses->n_packages; i++) {
        const Opamp__Proto__V1__PackageStatuses__PackagesEntry *entry = statuses->packages[i];
        if (!entry || !entry->value || json_array_size(packages) >= PACKAGES_MAX)
            continue;
        const char *name = entry->key ? entry->key : "";
        if (name[0] == '\0' && entry->value->name && entry->value->name[0])
            name = entry->value->name;
        if (name[0] == '\0') {
            /* the primary offered under "" (--opamp-primary-empty-name):
             * its name from the last reply; unknown yet (a new agent, a
             * restart) it waits for the full state that reply asks for */
            const opamp_slot *primary = primary_empty_name ? primary_slot(prev) : NULL;
            if (!primary)
                continue;
            name = primary->name;
        }
        if (pkgstore_manifest_name_validate(name) < 0)
            continue; /* no package of pkgstore's: not recorded */
        json_t *pkg = package_of(entry->value, name, prev);
        if (!pkg || json_array_append_new(packages, pkg) < 0) {
            json_decref(hb);
            return NULL;
        }
    }
    return hb;
}

/* ---------------------------------------------------------------- reply -> PackagesAvailable */

typedef struct entry {
    const char *name;
    Opamp__Proto__V1__PackagesAvailable__PackagesEntry map_entry;
    Opamp__Proto__V1__PackageAvailable available;
    Opamp__Proto__V1__DownloadableFile file;
    uint8_t content_hash[PKGSTORE_DIGEST_SIZE];
    uint8_t hash[PKGSTORE_DIGEST_SIZE];
    char *url;
    char *signature;
    char *version;
} entry;

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

static json_t *offer_named(json_t *reply, const char *name)
{
    size_t i;
    json_t *offer;
    json_array_foreach(json_object_get(reply, "offers"), i, offer) {
        const char *offer_name = json_string_value(json_object_get(offer, "name"));
        if (offer_name && strcmp(offer_name, name) == 0)
            return offer;
    }
    return NULL;
}

/* The status the agent reported for name, to keep what it runs. */
static const package_status *reported(const package_statuses *statuses, const char *name,
                                      const char *wire_name)
{
    for (size_t i = 0; statuses && i < statuses->n_packages; i++) {
        const Opamp__Proto__V1__PackageStatuses__PackagesEntry *e = statuses->packages[i];
        if (e && e->value && e->key && (strcmp(e->key, name) == 0 || strcmp(e->key, wire_name) == 0))
            return e->value;
    }
    return NULL;
}

static void sha256_field(EVP_MD_CTX *ctx, const void *data, size_t len)
{
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (uint8_t)((uint64_t)len >> (8 * (7 - i)));
    EVP_DigestUpdate(ctx, prefix, sizeof(prefix));
    EVP_DigestUpdate(ctx, data, len);
}

/* hash: SHA-256 over the type, version and content hash, each with its
 * length in front. Not the signature: it goes with an offer, and the entry
 * of a node that runs the version carries none (docs/opamp.md); the entry
 * must not change when the node gets there. */
static int entry_hash(entry *e)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint8_t type = (uint8_t)e->available.type;
    unsigned int len = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    if (ok) {
        sha256_field(ctx, &type, 1);
        sha256_field(ctx, e->version, strlen(e->version));
        sha256_field(ctx, e->content_hash, sizeof(e->content_hash));
        ok = EVP_DigestFinal_ex(ctx, e->hash, &len) && len == sizeof(e->hash);
    }
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* all_packages_hash: SHA-256 over the entries sorted by name, each its
 * name and its hash. */
static int all_hash(uint8_t out[PKGSTORE_DIGEST_SIZE], const entry *entries, size_t n)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; ok && i < n; i++) {
        sha256_field(ctx, entries[i].name, strlen(entries[i].name));
        sha256_field(ctx, entries[i].hash, sizeof(entries[i].hash));
    }
    ok = ok && EVP_DigestFinal_ex(ctx, out, &len) && len == PKGSTORE_DIGEST_SIZE;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

static char *url_of(const char *base, const char *path)
{
    size_t len = strlen(base) + strlen(path) + 1;
    char *url = malloc(len);
    if (url)
        snprintf(url, len, "%s%s", base, path);
    return url;
}

/* One entry for target t of the reply, or 0 when the slot gets none:
 *   - offered now: the offer (its artifact, URL and signatures);
 *   - running the target (no offer, no reason, not Waiting): the target;
 *   - held back (a staged rollout, an unmet dependency, no artifact):
 *     what the agent reports it has, so that it keeps it; none when it
 *     reports nothing.
 * -1 out of memory. */
static int entry_of(entry *e, json_t *reply, json_t *t, const package_statuses *statuses,
                    const opamp_request *rq)
{
    const char *name = json_string_value(json_object_get(t, "name"));
    const char *type = json_string_value(json_object_get(t, "type"));
    const char *state = json_string_value(json_object_get(t, "state"));
    const char *version = json_string_value(json_object_get(t, "version"));
    const char *digest_text = json_string_value(json_object_get(t, "digest"));
    int addon = type && strcmp(type, "addon") == 0;
    json_t *offer = name ? offer_named(reply, name) : NULL;
    pkgstore_digest digest;
    char path[128];

    memset(e, 0, sizeof(*e));
    if (!name || !version)
        return 0;
    e->name = !addon && rq->primary_empty_name ? "" : name;
    if (offer) {
        const char *url = json_string_value(json_object_get(offer, "url"));
        digest_text = json_string_value(json_object_get(offer, "digest"));
        version = json_string_value(json_object_get(offer, "version"));
        if (!url || !version || !digest_text || pkgstore_digest_parse(&digest, digest_text) < 0)
            return 0;
        if (!(e->url = url_of(rq->base_url, url)))
            return -1;
        json_t *manifest = json_object_get(offer, "manifest");
        if (json_is_string(manifest)) {
            json_t *sig = json_pack("{s:O, s:O}", "manifest", manifest, "signatures",
                                    json_object_get(offer, "signatures")
                                        ? json_object_get(offer, "signatures")
                                        : json_null());
            e->signature = sig ? json_dumps(sig, JSON_COMPACT) : NULL;
            json_decref(sig);
            if (!e->signature)
                return -1;
        }
    } else if (digest_text && !json_object_get(t, "reason") && state &&
               strcmp(state, "Waiting") != 0) {
        if (pkgstore_digest_parse(&digest, digest_text) < 0)
            return 0;
        snprintf(path, sizeof(path), "/v1/blobs/%s", digest_text);
        if (!(e->url = url_of(rq->base_url, path)))
            return -1;
    } else {
        const package_status *has = reported(statuses, name, e->name);
        if (!has || has->agent_has_hash.len != PKGSTORE_DIGEST_SIZE ||
            !token_valid(has->agent_has_version, PKGSTORE_VERSION_MAX))
            return 0;
        memcpy(digest.bytes, has->agent_has_hash.data, PKGSTORE_DIGEST_SIZE);
        version = has->agent_has_version;
        char text[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(text, &digest);
        snprintf(path, sizeof(path), "/v1/blobs/%s", text);
        if (!(e->url = url_of(rq->base_url, path)))
            return -1;
    }
    if (!(e->version = strdup(version)))
        return -1;
    memcpy(e->content_hash, digest.bytes, PKGSTORE_DIGEST_SIZE);
    opamp__proto__v1__downloadable_file__init(&e->file);
    e->file.download_url = e->url;
    e->file.content_hash.data = e->content_hash;
    e->file.content_hash.len = PKGSTORE_DIGEST_SIZE;
    if (e->signature) {
        e->file.signature.data = (uint8_t *)e->signature;
        e->file.signature.len = strlen(e->signature);
    }
    opamp__proto__v1__package_available__init(&e->available);
    e->available.type = addon ? OPAMP__PROTO__V1__PACKAGE_TYPE__PackageType_Addon
                              : OPAMP__PROTO__V1__PACKAGE_TYPE__PackageType_TopLevel;
    e->available.version = e->version;
    e->available.file = &e->file;
    if (entry_hash(e) < 0)
        return -1;
    e->available.hash.data = e->hash;
    e->available.hash.len = sizeof(e->hash);
    return 1;
}

static void entries_free(entry *entries, size_t n)
{
    for (size_t i = 0; entries && i < n; i++) {
        free(entries[i].url);
        free(entries[i].signature);
        free(entries[i].version);
    }
    free(entries);
}

/* The slots of the reply's targets, remembered for the next statuses. */
static void remember_slots(const opamp_request *rq, const uint8_t uid[OPAMP_UID_SIZE],
                           json_t *reply)
{
    opamp_slot slots[OPAMP_SLOTS_MAX];
    size_t n = 0, i;
    json_t *t;
    json_array_foreach(json_object_get(reply, "targets"), i, t) {
        const char *name = json_string_value(json_object_get(t, "name"));
        const char *type = json_string_value(json_object_get(t, "type"));
        const char *version = json_string_value(json_object_get(t, "version"));
        if (n >= OPAMP_SLOTS_MAX || !name || strlen(name) > PKGSTORE_NAME_MAX)
            continue;
        memset(&slots[n], 0, sizeof(slots[n]));
        snprintf(slots[n].name, sizeof(slots[n].name), "%s", name);
        if (version && strlen(version) <= PKGSTORE_VERSION_MAX)
            snprintf(slots[n].version, sizeof(slots[n].version), "%s", version);
        slots[n].addon = type && strcmp(type, "addon") == 0;
        n++;
    }
    opamp_agents_set_slots(rq->agents, uid, slots, n);
}

/* ---------------------------------------------------------------- the exchange */

static int pack(uint8_t **out, size_t *out_len, const server_to_agent *reply, fleet_error *err)
{
    size_t size = opamp__proto__v1__server_to_agent__get_packed_size(reply);
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return fail(err, PKGSTORE_ENOMEM, 0, "opamp: out of memory");
    *out_len = opamp__proto__v1__server_to_agent__pack(reply, buf);
    *out = buf;
    return 0;
}

/* Answer with a ServerErrorResponse of type BadRequest. */
static int bad_request(uint8_t **out, size_t *out_len, server_to_agent *reply, const char *message,
                       fleet_error *err)
{
    Opamp__Proto__V1__ServerErrorResponse error = OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE__INIT;
    json_t *checked = json_text(message); /* a proto3 string is UTF-8 */
    error.type = OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE_TYPE__ServerErrorResponseType_BadRequest;
    error.error_message = checked ? (char *)json_string_value(checked) : "bad request";
    reply->error_response = &error;
    int rc = pack(out, out_len, reply, err);
    reply->error_response = NULL;
    json_decref(checked);
    return rc;
}

/* A sub-message packed into a new buffer (at most OPAMP_PART_MAX bytes),
 * or NULL with *too_large set. */
static uint8_t *pack_part(size_t *len_out, const ProtobufCMessage *part, int *too_large)
{
    size_t size = protobuf_c_message_get_packed_size(part);
    *len_out = 0;
    if (size > OPAMP_PART_MAX) {
        *too_large = 1;
        return NULL;
    }
    uint8_t *buf = malloc(size ? size : 1);
    if (buf)
        *len_out = protobuf_c_message_pack(part, buf);
    return buf;
}

int opamp_exchange(uint8_t **out, size_t *out_len, const opamp_request *rq, const uint8_t *body,
                   size_t len, fleet_error *err)
{
    server_to_agent reply = OPAMP__PROTO__V1__SERVER_TO_AGENT__INIT;
    Opamp__Proto__V1__AgentIdentification identification =
        OPAMP__PROTO__V1__AGENT_IDENTIFICATION__INIT;
    Opamp__Proto__V1__PackagesAvailable available = OPAMP__PROTO__V1__PACKAGES_AVAILABLE__INIT;
    opamp_agent_state prev = {0};
    agent_description *stored_description = NULL;
    package_statuses *stored_statuses = NULL;
    uint8_t *description_bytes = NULL, *statuses_bytes = NULL;
    size_t description_len = 0, statuses_len = 0, nentries = 0;
    uint8_t new_uid[OPAMP_UID_SIZE], all_packages_hash[PKGSTORE_DIGEST_SIZE];
    Opamp__Proto__V1__PackagesAvailable__PackagesEntry **map = NULL;
    json_t *hb = NULL, *reply_json = NULL;
    char *hb_text = NULL, *reply_text = NULL;
    size_t reply_len = 0;
    entry *entries = NULL;
    int error = 0, too_large = 0;

    *out = NULL;
    *out_len = 0;
    memset(err, 0, sizeof(*err));
    agent_to_server *msg = opamp__proto__v1__agent_to_server__unpack(NULL, len, body);
    if (!msg)
        return fail(err, PKGSTORE_EINVALID, 400, "opamp: body: not an AgentToServer message");
    reply.instance_uid = msg->instance_uid; /* echoed, whatever it is */
    reply.capabilities = SERVER_CAPABILITIES;
    if (msg->instance_uid.len != OPAMP_UID_SIZE) {
        char message[96];
        snprintf(message, sizeof(message), "instance_uid: must be 16 bytes, not %zu",
                 msg->instance_uid.len);
        error = bad_request(out, out_len, &reply, message, err);
        goto out;
    }
    const uint8_t *uid = msg->instance_uid.data;
    if (msg->agent_description)
        description_bytes = pack_part(&description_len, &msg->agent_description->base, &too_large);
    if (msg->package_statuses)
        statuses_bytes = pack_part(&statuses_len, &msg->package_statuses->base, &too_large);
    if (too_large) {
        error = bad_request(out, out_len, &reply,
                            msg->agent_description && !description_bytes
                                ? "agent_description: larger than 65536 bytes"
                                : "package_statuses: larger than 65536 bytes",
                            err);
        goto out;
    }
    if ((msg->agent_description && !description_bytes) ||
        (msg->package_statuses && !statuses_bytes)) {
        error = fail(err, PKGSTORE_ENOMEM, 0, "opamp: out of memory");
        goto out;
    }
    if ((error = opamp_agents_update(&prev, rq->agents, uid, msg->sequence_num, description_bytes,
                                     description_len, statuses_bytes, statuses_len)) < 0) {
        fail(err, error, 0, "opamp: out of memory");
        goto out;
    }
    /* A gap, or an agent this server does not know (new, forgotten, or
     * after a restart): it is asked for everything again. */
    if (!prev.known || msg->sequence_num != prev.sequence_num + 1)
        reply.flags |= OPAMP__PROTO__V1__SERVER_TO_AGENT_FLAGS__ServerToAgentFlags_ReportFullState;
    if (msg->flags & OPAMP__PROTO__V1__AGENT_TO_SERVER_FLAGS__AgentToServerFlags_RequestInstanceUid) {
        if (uuid_v7(new_uid) < 0) {
            error = fail(err, PKGSTORE_EIO, 503, "opamp: getrandom failed");
            goto out;
        }
        identification.new_instance_uid.data = new_uid;
        identification.new_instance_uid.len = OPAMP_UID_SIZE;
        reply.agent_identification = &identification;
    }

    /* the parts left out are the ones stored */
    const agent_description *desc = msg->agent_description;
    if (!desc && prev.description)
        desc = stored_description =
            opamp__proto__v1__agent_description__unpack(NULL, prev.description_len,
                                                         prev.description);
    const package_statuses *statuses = msg->package_statuses;
    if (!statuses && prev.statuses)
        statuses = stored_statuses =
            opamp__proto__v1__package_statuses__unpack(NULL, prev.statuses_len, prev.statuses);
    if (!desc) {
        /* nothing says which node it is yet: no heartbeat until the full
         * state (ReportFullState is set: the agent is not known) */
        error = pack(out, out_len, &reply, err);
        goto out;
    }

    if (!(hb = heartbeat_of(desc, statuses, uid, &prev, rq->primary_empty_name)) ||
        !(hb_text = json_dumps(hb, JSON_COMPACT))) {
        error = fail(err, PKGSTORE_ENOMEM, 0, "opamp: out of memory");
        goto out;
    }
    if ((error = fleet_heartbeat(&reply_text, &reply_len, rq->fleet, hb_text, strlen(hb_text),
                                 rq->credential, rq->who, err)) < 0) {
        /* what the message says is wrong: BadRequest; who sends it or how
         * much (403, 429, 503) and the server's own failures: HTTP */
        if (error == PKGSTORE_EINVALID && !err->http_status) {
            char message[600];
            snprintf(message, sizeof(message), "heartbeat: %.500s", err->message);
            error = bad_request(out, out_len, &reply, message, err);
        }
        goto out;
    }
    if (!(reply_json = json_loadb(reply_text, reply_len, 0, NULL))) {
        error = fail(err, PKGSTORE_ENOMEM, 0, "opamp: out of memory");
        goto out;
    }
    remember_slots(rq, uid, reply_json);

    json_t *targets = json_object_get(reply_json, "targets");
    if (msg->capabilities & OPAMP__PROTO__V1__AGENT_CAPABILITIES__AgentCapabilities_AcceptsPackages &&
        json_array_size(targets) > 0) {
        size_t i;
        json_t *t;
        entries = calloc(json_array_size(targets), sizeof(*entries));
        map = calloc(json_array_size(targets), sizeof(*map));
        if (!entries || !map) {
            error = fail(err, PKGSTORE_ENOMEM, 0, "opamp: out of memory");
            goto out;
        }
        json_array_foreach(targets, i, t) {
            int rc = entry_of(&entries[nentries], reply_json, t, statuses, rq);
            if (rc < 0) {
                nentries++; /* freed below */
                error = fail(err, PKGSTORE_ENOMEM, 0, "opamp: out of memory");
                goto out;
            }
            nentries += (size_t)rc;
        }
        qsort(entries, nentries, sizeof(*entries), cmp_entry);
        for (i = 0; i < nentries; i++) {
            opamp__proto__v1__packages_available__packages_entry__init(&entries[i].map_entry);
            entries[i].map_entry.key = (char *)entries[i].name;
            entries[i].map_entry.value = &entries[i].available;
            map[i] = &entries[i].map_entry;
        }
        /* No slot with a package to offer: no PackagesAvailable, which
         * would tell the agent to have none. */
        if (nentries > 0) {
            if (all_hash(all_packages_hash, entries, nentries) < 0) {
                error = fail(err, PKGSTORE_ENOMEM, 0, "opamp: out of memory");
                goto out;
            }
            available.n_packages = nentries;
            available.packages = map;
            available.all_packages_hash.data = all_packages_hash;
            available.all_packages_hash.len = sizeof(all_packages_hash);
            reply.packages_available = &available;
        }
    }
    error = pack(out, out_len, &reply, err);
out:
    entries_free(entries, nentries);
    free(map);
    json_decref(reply_json);
    free(reply_text);
    free(hb_text);
    json_decref(hb);
    if (stored_description)
        opamp__proto__v1__agent_description__free_unpacked(stored_description, NULL);
    if (stored_statuses)
        opamp__proto__v1__package_statuses__free_unpacked(stored_statuses, NULL);
    opamp_agent_state_done(&prev);
    free(description_bytes);
    free(statuses_bytes);
    opamp__proto__v1__agent_to_server__free_unpacked(msg, NULL);
    return error;
}

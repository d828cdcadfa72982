/*
 * The agent's OpAMP client (docs/opamp.md), translated at the edge: the
 * resident agent builds its JSON heartbeat and reads a JSON reply as it
 * does with pkgstored's own protocol; this file turns the heartbeat into
 * an AgentToServer (protobuf-c), POSTs it, and turns the ServerToAgent
 * into that reply. It also owns what OpAMP needs to outlive one helper
 * run, in state_dir/opamp/: the instance_uid (a UUIDv7 made once) and
 * state.json (the next sequence_num, the server's heartbeat interval and
 * what its last PackagesAvailable said, for the statuses).
 *
 * The agent always sends its full state, so ReportFullState is honoured
 * by every message.
 */
#include "helper.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <pkgstore/manifest.h>

#include "opamp.pb-c.h"

#define UID_SIZE 16
#define UID_TEXT 36
#define STATE_MAX 65536
#define PACKAGES_MAX 64
#define MANIFEST_TIMEOUT_CAP_S 30.0

typedef Opamp__Proto__V1__AgentToServer AgentToServer;
typedef Opamp__Proto__V1__ServerToAgent ServerToAgent;
typedef Opamp__Proto__V1__KeyValue KeyValue;
typedef Opamp__Proto__V1__AnyValue AnyValue;
typedef Opamp__Proto__V1__PackageStatus PackageStatus;
typedef Opamp__Proto__V1__PackageStatuses__PackagesEntry StatusEntry;
typedef Opamp__Proto__V1__PackageAvailable PackageAvailable;
typedef Opamp__Proto__V1__ComponentHealth ComponentHealth;
typedef Opamp__Proto__V1__ComponentHealth__ComponentHealthMapEntry HealthEntry;

/* ------------------------------------------------------------------ arena */

/* Everything an AgentToServer points to lives until the message is packed:
 * allocations are remembered here and freed together. */
typedef struct arena {
    void **items;
    size_t count, cap;
    int failed;
} arena;

static void *arena_alloc(arena *a, size_t size)
{
    if (a->count == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        void **grown = realloc(a->items, cap * sizeof *grown);
        if (!grown) {
            a->failed = 1;
            return NULL;
        }
        a->items = grown;
        a->cap = cap;
    }
    void *p = calloc(1, size);
    if (!p) {
        a->failed = 1;
        return NULL;
    }
    a->items[a->count++] = p;
    return p;
}

static char *arena_strdup(arena *a, const char *text)
{
    char *copy = arena_alloc(a, strlen(text) + 1);
    if (copy)
        strcpy(copy, text);
    return copy;
}

static void arena_free(arena *a)
{
    for (size_t i = 0; i < a->count; i++)
        free(a->items[i]);
    free(a->items);
}

/* ------------------------------------------------------------------ state */

typedef struct opamp_state {
    char *dir;                 /* state_dir/opamp */
    unsigned char uid[UID_SIZE];
    json_t *saved;             /* state.json: sequence_num, interval_s, primary_key,
                                  all_packages_hash, offered {name: hash hex} */
} opamp_state;

static void hex_of(char *out, const unsigned char *bytes, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

static int unhex(unsigned char *out, size_t max, size_t *len_out, const char *hex)
{
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > max)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + k];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= (unsigned)(c - 'a' + 10);
            else
                return -1;
        }
        out[i] = (unsigned char)v;
    }
    *len_out = n / 2;
    return 0;
}

static void uid_format(char out[UID_TEXT + 1], const unsigned char uid[UID_SIZE])
{
    char hex[2 * UID_SIZE + 1];
    hex_of(hex, uid, UID_SIZE);
    snprintf(out, UID_TEXT + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
             hex + 20);
}

static int uid_parse(unsigned char uid[UID_SIZE], const char *text)
{
    char hex[2 * UID_SIZE + 1];
    size_t n = 0, len = 0;
    if (strlen(text) != UID_TEXT)
        return -1;
    for (size_t i = 0; i < UID_TEXT; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-')
                return -1;
            continue;
        }
        hex[n++] = text[i];
    }
    hex[n] = '\0';
    return unhex(uid, UID_SIZE, &len, hex) == 0 && len == UID_SIZE ? 0 : -1;
}

/* A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. */
static int uid_new(unsigned char uid[UID_SIZE])
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
    for (int i = 0; i < 6; i++)
        uid[i] = (unsigned char)(ms >> (40 - 8 * i));
    if (getrandom(uid + 6, UID_SIZE - 6, 0) != UID_SIZE - 6)
        return agent_error_set(PKGSTORE_EIO, "getrandom: %s", strerror(errno));
    uid[6] = (unsigned char)(0x70 | (uid[6] & 0x0f));
    uid[8] = (unsigned char)(0x80 | (uid[8] & 0x3f));
    return 0;
}

/* Write text to dir/name atomically (a temporary file, fsync, rename),
 * private to the agent's user. */
static int write_atomic(const char *dir, const char *name, const char *text)
{
    char *path = agent_strdup_printf("%s/%s", dir, name);
    char *tmp = agent_strdup_printf("%s/.%s.tmp", dir, name);
    int rc = 0;
    if (!path || !tmp) {
        rc = agent_error_set(PKGSTORE_ENOMEM, "out of memory");
        goto out;
    }
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = agent_error_set(PKGSTORE_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    if (done < len || fsync(fd) < 0) {
        rc = agent_error_set(errno == ENOSPC ? PKGSTORE_ENOSPC : PKGSTORE_EIO, "%s: %s", tmp,
                             strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        rc = agent_error_set(PKGSTORE_EIO, "%s: rename: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
out:
    free(path);
    free(tmp);
    return rc;
}

static int save_uid(opamp_state *st)
{
    char text[UID_TEXT + 2];
    uid_format(text, st->uid);
    strcat(text, "\n");
    return write_atomic(st->dir, "instance_uid", text);
}

static int save_state(opamp_state *st)
{
    char *text = json_dumps(st->saved, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    int rc = write_atomic(st->dir, "state.json", text);
    free(text);
    return rc;
}

/* Load (or make) the instance_uid and state.json. A state.json that cannot
 * be read starts over: the server asks for the full state on a gap in the
 * sequence numbers, and the agent sends it every time anyway. */
static int load_state(opamp_state *st, const char *state_dir)
{
    memset(st, 0, sizeof *st);
    st->dir = agent_strdup_printf("%s/opamp", state_dir);
    if (!st->dir)
        return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    if (agent_mkdirs(st->dir, 0700) < 0)
        return agent_error_set(PKGSTORE_EIO, "%s: cannot create: %s", st->dir, strerror(errno));
    char *path = agent_strdup_printf("%s/instance_uid", st->dir);
    char *text = path ? agent_trimmed(agent_read_small_file(path, 256)) : NULL;
    int rc = 0;
    if (text && uid_parse(st->uid, text) == 0) {
        /* kept */
    } else {
        if (text)
            agent_log("warn", "msg=\"opamp: instance_uid unreadable, making a new one\" path=%s",
                      path);
        if ((rc = uid_new(st->uid)) == 0)
            rc = save_uid(st);
    }
    free(text);
    free(path);
    if (rc < 0)
        return rc;
    path = agent_strdup_printf("%s/state.json", st->dir);
    text = path ? agent_read_small_file(path, STATE_MAX) : NULL;
    st->saved = text ? json_loads(text, 0, NULL) : NULL;
    if (text && !json_is_object(st->saved))
        agent_log("warn", "msg=\"opamp: state unreadable, starting over\" path=%s", path);
    if (!json_is_object(st->saved)) {
        json_decref(st->saved);
        st->saved = json_object();
    }
    free(text);
    free(path);
    return st->saved ? 0 : agent_error_set(PKGSTORE_ENOMEM, "out of memory");
}

static void free_state(opamp_state *st)
{
    free(st->dir);
    json_decref(st->saved);
}

static uint64_t saved_u64(const opamp_state *st, const char *key)
{
    json_t *v = json_object_get(st->saved, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

/* ------------------------------------------------------------------ request */

static KeyValue *attribute(arena *a, const char *key, const char *value)
{
    KeyValue *kv = arena_alloc(a, sizeof *kv);
    AnyValue *any = arena_alloc(a, sizeof *any);
    char *k = arena_strdup(a, key), *v = arena_strdup(a, value ? value : "");
    if (!kv || !any || !k || !v)
        return NULL;
    opamp__proto__v1__key_value__init(kv);
    opamp__proto__v1__any_value__init(any);
    any->value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_STRING_VALUE;
    any->string_value = v;
    kv->key = k;
    kv->value = any;
    return kv;
}

/* "sha256:HEX" as 32 raw bytes; an empty value for anything else. */
static ProtobufCBinaryData digest_bytes(arena *a, const char *digest)
{
    ProtobufCBinaryData out = {0, NULL};
    pkgstore_digest d;
    if (!digest || pkgstore_digest_parse(&d, digest) < 0)
        return out;
    unsigned char *bytes = arena_alloc(a, PKGSTORE_DIGEST_SIZE);
    if (!bytes)
        return out;
    memcpy(bytes, d.bytes, PKGSTORE_DIGEST_SIZE);
    out.data = bytes;
    out.len = PKGSTORE_DIGEST_SIZE;
    return out;
}

static ProtobufCBinaryData hex_bytes(arena *a, const char *hex)
{
    ProtobufCBinaryData out = {0, NULL};
    unsigned char buf[64];
    size_t len = 0;
    if (!hex || unhex(buf, sizeof buf, &len, hex) < 0 || !len)
        return out;
    unsigned char *bytes = arena_alloc(a, len);
    if (!bytes)
        return out;
    memcpy(bytes, buf, len);
    out.data = bytes;
    out.len = len;
    return out;
}

static const char *jstring(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static int starts_with(const char *text, const char *prefix)
{
    return text && !strncmp(text, prefix, strlen(prefix));
}

/* The agent's status of a package as OpAMP's (docs/opamp.md, "Statuses"). */
static void map_status(PackageStatus *ps, arena *a, const char *status, const char *message)
{
    const char *msg = message ? message : "";
    char *text = NULL;
    ps->status = OPAMP__PROTO__V1__PACKAGE_STATUS_ENUM__PackageStatusEnum_Installed;
    if (!status || !*status || !strcmp(status, "Upgraded"))
        return;
    if (!strcmp(status, "Downloading")) {
        ps->status = OPAMP__PROTO__V1__PACKAGE_STATUS_ENUM__PackageStatusEnum_Downloading;
        return;
    }
    if (!strcmp(status, "Verifying") || !strcmp(status, "Validating") ||
        !strcmp(status, "Swapping") || !strcmp(status, "Monitoring")) {
        ps->status = OPAMP__PROTO__V1__PACKAGE_STATUS_ENUM__PackageStatusEnum_Installing;
        text = arena_strdup(a, status);
    } else if (!strcmp(status, "Pending")) {
        ps->status = OPAMP__PROTO__V1__PACKAGE_STATUS_ENUM__PackageStatusEnum_InstallPending;
    } else {
        const char *prefix = "upgrade failed: ";
        if (!strcmp(status, "RolledBack"))
            prefix = "rolled back: ";
        else if (!strcmp(status, "RollbackFailed"))
            prefix = "rollback failed: ";
        else if (!strcmp(status, "Incompatible"))
            prefix = "incompatible: ";
        else if (starts_with(msg, "validate:"))
            prefix = "validation failed: ";
        ps->status = OPAMP__PROTO__V1__PACKAGE_STATUS_ENUM__PackageStatusEnum_InstallFailed;
        char *joined = agent_strdup_printf("%s%s", prefix, msg);
        text = joined ? arena_strdup(a, joined) : NULL;
        free(joined);
    }
    if (text)
        ps->error_message = text;
}

static PackageStatus *package_status(arena *a, json_t *pkg, const char *key,
                                     const opamp_state *st)
{
    PackageStatus *ps = arena_alloc(a, sizeof *ps);
    if (!ps)
        return NULL;
    opamp__proto__v1__package_status__init(ps);
    ps->name = arena_strdup(a, key);
    const char *version = jstring(pkg, "version");
    if (version)
        ps->agent_has_version = arena_strdup(a, version);
    ps->agent_has_hash = digest_bytes(a, jstring(pkg, "digest"));
    json_t *offer = json_object_get(pkg, "offer");
    if (json_is_object(offer)) {
        const char *offered = jstring(offer, "version");
        if (offered)
            ps->server_offered_version = arena_strdup(a, offered);
        /* the PackageAvailable.hash the server sent with it, when known */
        json_t *seen = json_object_get(json_object_get(st->saved, "offered"), key);
        if (json_is_object(seen) && json_is_string(json_object_get(seen, "digest")) &&
            !strcmp(jstring(seen, "digest"), jstring(offer, "digest") ? jstring(offer, "digest") : ""))
            ps->server_offered_hash = hex_bytes(a, jstring(seen, "hash"));
        else
            ps->server_offered_hash = digest_bytes(a, jstring(offer, "digest"));
    }
    map_status(ps, a, jstring(pkg, "status"), jstring(pkg, "message"));
    return ps;
}

static ComponentHealth *health_of(arena *a, json_t *pkg)
{
    ComponentHealth *h = arena_alloc(a, sizeof *h);
    if (!h)
        return NULL;
    opamp__proto__v1__component_health__init(h);
    const char *state = jstring(pkg, "state");
    h->healthy = state && !strcmp(state, "Running");
    h->status = arena_strdup(a, state ? state : "Unknown");
    const char *status = jstring(pkg, "status");
    if (status && (!strcmp(status, "UpgradeFailed") || !strcmp(status, "RolledBack") ||
                   !strcmp(status, "RollbackFailed")) && jstring(pkg, "message"))
        h->last_error = arena_strdup(a, jstring(pkg, "message"));
    return h;
}

/* The name the primary package's status goes under: the server's own key
 * for it when it offered it (the empty name with pkgstored's
 * --opamp-primary-empty-name), else its package name. */
static const char *primary_key(const opamp_state *st, const char *name)
{
    const char *key = jstring(st->saved, "primary_key");
    return key && (!*key || !strcmp(key, name)) ? key : name;
}

static int build_request(AgentToServer *msg, arena *a, json_t *hb, opamp_state *st,
                         uint64_t sequence_num)
{
    opamp__proto__v1__agent_to_server__init(msg);
    msg->instance_uid.data = st->uid;
    msg->instance_uid.len = UID_SIZE;
    msg->sequence_num = sequence_num;
    msg->capabilities = OPAMP__PROTO__V1__AGENT_CAPABILITIES__AgentCapabilities_ReportsStatus |
                        OPAMP__PROTO__V1__AGENT_CAPABILITIES__AgentCapabilities_AcceptsPackages |
                        OPAMP__PROTO__V1__AGENT_CAPABILITIES__AgentCapabilities_ReportsPackageStatuses |
                        OPAMP__PROTO__V1__AGENT_CAPABILITIES__AgentCapabilities_ReportsHealth |
                        OPAMP__PROTO__V1__AGENT_CAPABILITIES__AgentCapabilities_ReportsHeartbeat;

    /* agent_description: docs/opamp.md, "Attributes to labels and platform" */
    Opamp__Proto__V1__AgentDescription *desc = arena_alloc(a, sizeof *desc);
    json_t *labels = json_object_get(hb, "labels");
    size_t nlabels = json_is_object(labels) ? json_object_size(labels) : 0;
    KeyValue **ident = arena_alloc(a, 2 * sizeof *ident);
    KeyValue **other = arena_alloc(a, (2 + nlabels) * sizeof *other);
    if (!desc || !ident || !other)
        return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    opamp__proto__v1__agent_description__init(desc);
    const char *platform = jstring(hb, "platform");
    const char *slash = platform ? strchr(platform, '/') : NULL;
    char os[64] = "";
    if (slash)
        snprintf(os, sizeof os, "%.*s", (int)(slash - platform), platform);
    ident[desc->n_identifying_attributes++] = attribute(a, "service.instance.id", jstring(hb, "node_id"));
    ident[desc->n_identifying_attributes++] = attribute(a, "service.version", jstring(hb, "agent_version"));
    if (slash) {
        other[desc->n_non_identifying_attributes++] = attribute(a, "os.type", os);
        other[desc->n_non_identifying_attributes++] = attribute(a, "host.arch", slash + 1);
    }
    const char *key;
    json_t *value;
    json_object_foreach(labels, key, value) {
        char *attr = agent_strdup_printf("pkgstore.label.%s", key);
        other[desc->n_non_identifying_attributes++] =
            attr ? attribute(a, attr, json_string_value(value)) : NULL;
        free(attr);
    }
    desc->identifying_attributes = ident;
    desc->non_identifying_attributes = other;
    msg->agent_description = desc;

    /* package_statuses and health, one per package the agent has */
    json_t *packages = json_object_get(hb, "packages");
    size_t npkg = json_is_array(packages) ? json_array_size(packages) : 0;
    if (npkg > PACKAGES_MAX)
        npkg = PACKAGES_MAX;
    Opamp__Proto__V1__PackageStatuses *statuses = arena_alloc(a, sizeof *statuses);
    StatusEntry **entries = arena_alloc(a, (npkg + 1) * sizeof *entries);
    ComponentHealth *health = NULL;
    HealthEntry **components = arena_alloc(a, (npkg + 1) * sizeof *components);
    if (!statuses || !entries || !components)
        return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    opamp__proto__v1__package_statuses__init(statuses);
    for (size_t i = 0; i < npkg; i++) {
        json_t *pkg = json_array_get(packages, i);
        const char *name = jstring(pkg, "name");
        if (!name)
            continue;
        const char *type = jstring(pkg, "type");
        int primary = type && !strcmp(type, "primary");
        const char *status_key = primary ? primary_key(st, name) : name;
        StatusEntry *e = arena_alloc(a, sizeof *e);
        HealthEntry *h = arena_alloc(a, sizeof *h);
        if (!e || !h)
            return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
        opamp__proto__v1__package_statuses__packages_entry__init(e);
        e->key = arena_strdup(a, status_key);
        e->value = package_status(a, pkg, status_key, st);
        entries[statuses->n_packages++] = e;
        opamp__proto__v1__component_health__component_health_map_entry__init(h);
        h->key = arena_strdup(a, name);
        h->value = health_of(a, pkg);
        components[i] = h;
        if (primary)
            health = health_of(a, pkg);
    }
    statuses->packages = entries;
    statuses->server_provided_all_packages_hash =
        hex_bytes(a, jstring(st->saved, "all_packages_hash"));
    msg->package_statuses = statuses;
    /* the agent's health is its collector's; each package is a component */
    if (!health && (health = arena_alloc(a, sizeof *health)))
        opamp__proto__v1__component_health__init(health);
    if (health) {
        size_t n = 0;
        for (size_t i = 0; i < npkg; i++)
            if (components[i])
                components[n++] = components[i];
        health->component_health_map = components;
        health->n_component_health_map = n;
    }
    msg->health = health;
    return a->failed ? agent_error_set(PKGSTORE_ENOMEM, "out of memory") : 0;
}

/* ------------------------------------------------------------------ response */

/* The server's answer as a failed HTTP exchange the agent already knows:
 * status, {"error":{"message"}} and the pause it asked for. */
static void reply_error(json_t *reply, long status, double retry_after_s, const char *message)
{
    json_t *body = json_pack("{s:{s:s}}", "error", "message", message);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!text) { /* message not UTF-8 */
        json_decref(body);
        body = json_pack("{s:{s:s}}", "error", "message", "the OpAMP server refused the request");
        text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    }
    json_object_set_new(reply, "status", json_integer(status));
    json_object_set_new(reply, "body", json_string(text ? text : ""));
    if (retry_after_s >= 0)
        json_object_set_new(reply, "retry_after_s", json_real(retry_after_s));
    json_decref(body);
    free(text);
}

typedef struct offer_ctx {
    const char *server_url;
    const char *token;
    double timeout_s;
    json_t *heartbeat;
    const char *primary_name;
} offer_ctx;

/* The package the agent reports under name, or NULL. */
static json_t *reported(const offer_ctx *ctx, const char *name)
{
    json_t *packages = json_object_get(ctx->heartbeat, "packages"), *pkg;
    size_t i;
    json_array_foreach(packages, i, pkg) {
        const char *n = jstring(pkg, "name");
        if (n && !strcmp(n, name))
            return pkg;
    }
    return NULL;
}

/* pkgstored's file.signature: {"manifest":"sha256:...","signatures":[...]}.
 * The manifest it names (GET /v1/blobs/<manifest>) completes the offer
 * with what the agent guarantees rest on: the artifact's format,
 * entrypoint and size, the annotations and dependencies, and, with
 * trust.root, the signatures it verifies. Returns 1 when the signature is
 * not pkgstore's (a best-effort offer then), 0 with the offer completed,
 * -1 with the reason in why (the offer is left out). */
static int complete_from_manifest(json_t *offer, const offer_ctx *ctx,
                                  const ProtobufCBinaryData *signature, const char *name,
                                  const char *version, const char *digest, char *why,
                                  size_t why_len)
{
    if (!signature->len)
        return 1;
    json_t *sig = json_loadb((const char *)signature->data, signature->len,
                             JSON_REJECT_DUPLICATES, NULL);
    const char *manifest_digest = jstring(sig, "manifest");
    json_t *envelopes = json_object_get(sig, "signatures");
    if (!json_is_object(sig) || !manifest_digest) {
        json_decref(sig);
        return 1;
    }
    int rc = -1;
    char *url = NULL, *body = NULL;
    pkgstore_manifest *m = NULL;
    pkgstore_digest want, got;
    if (pkgstore_digest_parse(&want, manifest_digest) < 0 ||
        (envelopes && !json_is_array(envelopes))) {
        snprintf(why, why_len, "file.signature: not a manifest digest and signature array");
        goto out;
    }
    url = agent_strdup_printf("%s/v1/blobs/%s", ctx->server_url, manifest_digest);
    long status = 0;
    if (!url || helper_http_request(&body, &status, ctx->token, url, NULL,
                                    ctx->timeout_s < MANIFEST_TIMEOUT_CAP_S
                                        ? ctx->timeout_s
                                        : MANIFEST_TIMEOUT_CAP_S) < 0) {
        snprintf(why, why_len, "manifest: %s", url ? agent_error() : "out of memory");
        goto out;
    }
    if (status != 200) {
        snprintf(why, why_len, "manifest: %s: HTTP %ld", url, status);
        goto out;
    }
    size_t len = body ? strlen(body) : 0;
    if (pkgstore_digest_buffer(&got, body ? body : "", len) < 0 ||
        !pkgstore_digest_equal(&want, &got)) {
        snprintf(why, why_len, "manifest: %s: the body is not %s", url, manifest_digest);
        goto out;
    }
    if (pkgstore_manifest_parse(&m, body, len) < 0) {
        snprintf(why, why_len, "manifest: %s: %s", url, pkgstore_error_detail());
        goto out;
    }
    if (strcmp(pkgstore_manifest_name(m), name) || strcmp(pkgstore_manifest_version(m), version)) {
        snprintf(why, why_len, "manifest: %s is %s %s, not %s %s", manifest_digest,
                 pkgstore_manifest_name(m), pkgstore_manifest_version(m), name, version);
        goto out;
    }
    const pkgstore_artifact *artifact = NULL;
    pkgstore_digest content;
    pkgstore_digest_parse(&content, digest);
    for (size_t i = 0; i < pkgstore_manifest_artifact_count(m); i++) {
        const pkgstore_artifact *candidate = pkgstore_manifest_artifact(m, i);
        if (pkgstore_digest_equal(&candidate->digest, &content))
            artifact = candidate;
    }
    if (!artifact) {
        snprintf(why, why_len, "manifest: %s has no artifact %s", manifest_digest, digest);
        goto out;
    }
    json_t *annotations = json_object(), *deps = json_array();
    for (size_t i = 0; i < pkgstore_manifest_annotation_count(m); i++) {
        const char *k, *v;
        if (pkgstore_manifest_annotation(&k, &v, m, i) == 0)
            json_object_set_new(annotations, k, json_string(v));
    }
    for (size_t i = 0; i < pkgstore_manifest_dependency_count(m); i++) {
        const pkgstore_dependency *d = pkgstore_manifest_dependency(m, i);
        json_array_append_new(deps, json_pack("{s:s, s:s}", "name", d->name, "version",
                                              d->constraint));
    }
    json_object_set_new(offer, "size", json_integer((json_int_t)artifact->size));
    json_object_set_new(offer, "format", json_string(artifact->format));
    json_object_set_new(offer, "entrypoint", json_string(artifact->entrypoint));
    json_object_set_new(offer, "platform", json_string(artifact->platform));
    json_object_set_new(offer, "annotations", annotations);
    json_object_set_new(offer, "dependencies", deps);
    json_object_set_new(offer, "manifest", json_string(manifest_digest));
    json_object_set_new(offer, "manifest_digest", json_string(manifest_digest));
    json_object_set(offer, "signatures", envelopes ? envelopes : json_array());
    rc = 0;
out:
    pkgstore_manifest_free(m);
    free(body);
    free(url);
    json_decref(sig);
    return rc;
}

/* A file from another OpAMP server: its size from a HEAD request, its
 * format from its content (the helper's prepare step), the package name
 * as its entrypoint; no signatures, annotations or dependencies. */
static int best_effort(json_t *offer, const offer_ctx *ctx, const char *url, const char *name,
                       char *why, size_t why_len)
{
    size_t slen = strlen(ctx->server_url);
    int own = !strncmp(url, ctx->server_url, slen) && (url[slen] == '/' || !url[slen]);
    uint64_t size = 0;
    if (helper_http_content_length(&size, own ? ctx->token : NULL, url, ctx->timeout_s) < 0) {
        snprintf(why, why_len, "size: %s", agent_error());
        return -1;
    }
    json_object_set_new(offer, "size", json_integer((json_int_t)size));
    json_object_set_new(offer, "entrypoint", json_string(name));
    return 0;
}

/* One PackagesAvailable entry: a target, and an offer unless the node runs
 * its content already. */
static void translate_package(json_t *offers, json_t *targets, json_t *offered,
                              const offer_ctx *ctx, const char *key, const PackageAvailable *p)
{
    const char *name = *key ? key : ctx->primary_name;
    int addon = p->type == OPAMP__PROTO__V1__PACKAGE_TYPE__PackageType_Addon;
    char why[1024] = "";
    if (!*key && addon) {
        agent_log("warn", "msg=\"opamp: package ignored\" package=\"\" error=\"the empty name is the "
                          "top-level package, not an addon\"");
        return;
    }
    if (!name || !agent_valid_name(name)) {
        agent_log("warn", "msg=\"opamp: package ignored\" error=\"not a package name\"");
        return;
    }
    const Opamp__Proto__V1__DownloadableFile *file = p->file;
    if (!file || file->content_hash.len != PKGSTORE_DIGEST_SIZE || !file->download_url ||
        (strncmp(file->download_url, "http://", 7) && strncmp(file->download_url, "https://", 8))) {
        agent_log("warn", "msg=\"opamp: package ignored\" package=%s error=\"file: needs an absolute "
                          "http(s) download_url and a 32-byte SHA-256 content_hash\"", name);
        return;
    }
    pkgstore_digest content;
    char digest[PKGSTORE_DIGEST_STR_SIZE], hash_hex[129] = "";
    memcpy(content.bytes, file->content_hash.data, PKGSTORE_DIGEST_SIZE);
    pkgstore_digest_format(digest, &content);
    if (p->hash.len && p->hash.len <= 64)
        hex_of(hash_hex, p->hash.data, p->hash.len);
    json_object_set_new(offered, *key ? key : "",
                        json_pack("{s:s, s:s}", "digest", digest, "hash", hash_hex));
    const char *type = addon ? "addon" : "primary";
    json_array_append_new(targets, json_pack("{s:s, s:s, s:s, s:s}", "name", name, "type", type,
                                             "version", p->version ? p->version : "", "digest",
                                             digest));
    json_t *running = reported(ctx, name);
    const char *running_digest = jstring(running, "digest");
    if (running_digest && !strcmp(running_digest, digest))
        return;
    json_t *offer = json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", name, "type", type, "version",
                              p->version ? p->version : "", "digest", digest, "url",
                              file->download_url);
    if (!offer)
        return;
    int rc = complete_from_manifest(offer, ctx, &file->signature, name,
                                    p->version ? p->version : "", digest, why, sizeof why);
    if (rc == 1)
        rc = best_effort(offer, ctx, file->download_url, name, why, sizeof why);
    if (rc < 0) {
        agent_log("warn", "msg=\"opamp: offer left out\" package=%s version=%s error=\"%s\"", name,
                  p->version ? p->version : "-", why);
        json_decref(offer);
        return;
    }
    json_array_append_new(offers, offer);
}

static json_t *translate_packages(const Opamp__Proto__V1__PackagesAvailable *pa,
                                  const offer_ctx *ctx, opamp_state *st, json_t *body)
{
    json_t *offers = json_array(), *targets = json_array(), *offered = json_object();
    size_t n = pa->n_packages < PACKAGES_MAX ? pa->n_packages : PACKAGES_MAX;
    const char *primary_as = NULL;
    for (size_t i = 0; i < n; i++) {
        const Opamp__Proto__V1__PackagesAvailable__PackagesEntry *e = pa->packages[i];
        if (!e || !e->key || !e->value)
            continue;
        translate_package(offers, targets, offered, ctx, e->key, e->value);
        if (e->value->type == OPAMP__PROTO__V1__PACKAGE_TYPE__PackageType_TopLevel &&
            (!*e->key || (ctx->primary_name && !strcmp(e->key, ctx->primary_name))))
            primary_as = e->key;
    }
    if (pa->n_packages > PACKAGES_MAX)
        agent_log("warn", "msg=\"opamp: packages beyond the first %d ignored\" count=%zu",
                  PACKAGES_MAX, pa->n_packages);
    char hash_hex[129] = "";
    if (pa->all_packages_hash.len && pa->all_packages_hash.len <= 64)
        hex_of(hash_hex, pa->all_packages_hash.data, pa->all_packages_hash.len);
    json_object_set_new(st->saved, "all_packages_hash", json_string(hash_hex));
    json_object_set_new(st->saved, "offered", offered);
    if (primary_as)
        json_object_set_new(st->saved, "primary_key", json_string(primary_as));
    json_object_set_new(body, "offers", offers);
    json_object_set_new(body, "targets", targets);
    return body;
}

/* ------------------------------------------------------------------ exchange */

static const char *primary_name_of(json_t *hb)
{
    json_t *packages = json_object_get(hb, "packages"), *pkg;
    size_t i;
    json_array_foreach(packages, i, pkg) {
        const char *type = jstring(pkg, "type");
        if (type && !strcmp(type, "primary"))
            return jstring(pkg, "name");
    }
    return NULL;
}

static int handle_response(json_t *reply, const ServerToAgent *s2a, opamp_state *st,
                           const offer_ctx *ctx, const char *url, char *detail, size_t dlen)
{
    if (s2a->instance_uid.len &&
        (s2a->instance_uid.len != UID_SIZE || memcmp(s2a->instance_uid.data, st->uid, UID_SIZE))) {
        snprintf(detail, dlen, "%s: the response is for another instance_uid", url);
        return PKGSTORE_EFORMAT;
    }
    if (s2a->agent_identification) {
        const ProtobufCBinaryData *uid = &s2a->agent_identification->new_instance_uid;
        if (uid->len == UID_SIZE) {
            char before[UID_TEXT + 1], after[UID_TEXT + 1];
            uid_format(before, st->uid);
            memcpy(st->uid, uid->data, UID_SIZE);
            uid_format(after, st->uid);
            int rc = save_uid(st);
            if (rc < 0) {
                snprintf(detail, dlen, "new_instance_uid: %s", agent_error());
                return rc;
            }
            agent_log("info", "msg=\"opamp: new instance_uid\" was=%s now=%s", before, after);
        } else if (uid->len) {
            agent_log("warn", "msg=\"opamp: new_instance_uid ignored: not 16 bytes\" length=%zu",
                      uid->len);
        }
    }
    if (s2a->error_response) {
        const Opamp__Proto__V1__ServerErrorResponse *err = s2a->error_response;
        int unavailable =
            err->type == OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE_TYPE__ServerErrorResponseType_Unavailable;
        double retry_after_s = -1;
        if (err->details_case == OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE__DETAILS_RETRY_INFO &&
            err->retry_info)
            retry_after_s = (double)err->retry_info->retry_after_nanoseconds / 1e9;
        char *message = agent_strdup_printf(
            "ServerErrorResponse %s: %s",
            unavailable ? "Unavailable"
            : err->type == OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE_TYPE__ServerErrorResponseType_BadRequest
                ? "BadRequest"
                : "Unknown",
            err->error_message ? err->error_message : "");
        reply_error(reply, unavailable ? 503 : 400, retry_after_s, message ? message : "");
        free(message);
        return 0;
    }
    if (s2a->flags & OPAMP__PROTO__V1__SERVER_TO_AGENT_FLAGS__ServerToAgentFlags_ReportFullState)
        agent_log("debug", "msg=\"opamp: the server asked for the full state (always sent)\"");
    const Opamp__Proto__V1__ConnectionSettingsOffers *cs = s2a->connection_settings;
    if (cs && cs->opamp && cs->opamp->heartbeat_interval_seconds)
        json_object_set_new(st->saved, "interval_s",
                            json_integer(cs->opamp->heartbeat_interval_seconds > 86400 * 365
                                             ? 86400 * 365
                                             : (json_int_t)cs->opamp->heartbeat_interval_seconds));
    json_t *body = json_object();
    uint64_t interval = saved_u64(st, "interval_s");
    if (interval)
        json_object_set_new(body, "heartbeat_interval_s", json_integer((json_int_t)interval));
    if (s2a->packages_available)
        translate_packages(s2a->packages_available, ctx, st, body);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text) {
        snprintf(detail, dlen, "out of memory");
        return PKGSTORE_ENOMEM;
    }
    json_object_set_new(reply, "status", json_integer(200));
    json_object_set_new(reply, "body", json_string(text));
    free(text);
    return 0;
}

int helper_opamp_exchange(json_t *reply, const char *server_url, const char *path,
                          const char *state_dir, const char *token, const char *heartbeat,
                          size_t len, double timeout_s, char *detail, size_t dlen)
{
    opamp_state st;
    arena a = {0};
    helper_exchange ex = {0};
    uint8_t *packed = NULL;
    ServerToAgent *s2a = NULL;
    char *url = NULL;
    json_error_t jerr;
    json_t *hb = json_loadb(heartbeat, len, 0, &jerr);
    int rc = load_state(&st, state_dir);
    if (rc < 0) {
        snprintf(detail, dlen, "%s", agent_error());
        goto out;
    }
    if (!json_is_object(hb)) {
        snprintf(detail, dlen, "heartbeat: not a JSON object: %s", jerr.text);
        rc = PKGSTORE_EINVALID;
        goto out;
    }
    /* the number goes to disk before the message leaves: never twice */
    uint64_t sequence_num = saved_u64(&st, "next_sequence_num");
    json_object_set_new(st.saved, "next_sequence_num", json_integer((json_int_t)(sequence_num + 1)));
    if ((rc = save_state(&st)) < 0) {
        snprintf(detail, dlen, "%s", agent_error());
        goto out;
    }
    AgentToServer msg;
    if ((rc = build_request(&msg, &a, hb, &st, sequence_num)) < 0) {
        snprintf(detail, dlen, "%s", agent_error());
        goto out;
    }
    size_t packed_len = opamp__proto__v1__agent_to_server__get_packed_size(&msg);
    url = agent_strdup_printf("%s%s", server_url, path);
    if (!url || !(packed = malloc(packed_len ? packed_len : 1))) {
        snprintf(detail, dlen, "out of memory");
        rc = PKGSTORE_ENOMEM;
        goto out;
    }
    opamp__proto__v1__agent_to_server__pack(&msg, packed);
    if ((rc = helper_http_exchange(&ex, token, url, packed, packed_len, "application/x-protobuf",
                                   timeout_s)) < 0) {
        snprintf(detail, dlen, "%s", agent_error());
        goto out;
    }
    if (ex.status != 200) {
        char message[160];
        snprintf(message, sizeof message, "OpAMP server answered HTTP %ld%s", ex.status,
                 ex.status == 429 || ex.status == 503 ? " (busy)" : "");
        reply_error(reply, ex.status, ex.retry_after_s, message);
        goto out;
    }
    size_t type_len = strcspn(ex.content_type, "; ");
    if (type_len != strlen("application/x-protobuf") ||
        strncmp(ex.content_type, "application/x-protobuf", type_len)) {
        snprintf(detail, dlen, "%s: the response's Content-Type is \"%.64s\", not "
                 "application/x-protobuf", url, ex.content_type);
        rc = PKGSTORE_EFORMAT;
        goto out;
    }
    s2a = opamp__proto__v1__server_to_agent__unpack(NULL, ex.len, (const uint8_t *)ex.body);
    if (!s2a) {
        snprintf(detail, dlen, "%s: the response is not a ServerToAgent message (%zu bytes)", url,
                 ex.len);
        rc = PKGSTORE_EFORMAT;
        goto out;
    }
    offer_ctx ctx = {server_url, token, timeout_s, hb, primary_name_of(hb)};
    if ((rc = handle_response(reply, s2a, &st, &ctx, url, detail, dlen)) < 0)
        goto out;
    if (save_state(&st) < 0)
        agent_log("warn", "msg=\"opamp: state not saved\" error=\"%s\"", agent_error());
out:
    if (s2a)
        opamp__proto__v1__server_to_agent__free_unpacked(s2a, NULL);
    free(ex.body);
    free(packed);
    free(url);
    arena_free(&a);
    free_state(&st);
    json_decref(hb);
    return rc;
}

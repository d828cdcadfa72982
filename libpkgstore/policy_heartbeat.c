/*
 * Heartbeats: strict parsing of the request body (shared with the stored
 * node records, which use the same fields), the compact node report, and
 * the heartbeat itself: record the node, append statuses to its history,
 * compute the offers and write the response text by hand.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "pkgstore/platform.h"
#include "policy.h"

/* ---------------------------------------------------------------- parsing */

/* 1 if every byte of str is accepted by the character class. */
enum charset { CS_NODE_ID, CS_PLATFORM, CS_TOKEN, CS_STATE };

static int char_ok(enum charset cs, char c, size_t i)
{
    int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    switch (cs) {
    case CS_NODE_ID:
        return alnum || (i > 0 && (c == '.' || c == '_' || c == '-' || c == ':'));
    case CS_PLATFORM:
        return alnum || c == '.' || c == '_' || c == '-' || c == '/';
    case CS_TOKEN:
        return c > 0x20 && c < 0x7f;
    case CS_STATE:
        return alnum || c == '_' || c == '-';
    }
    return 0;
}

/* A string field: present (unless optional), a string, 1..max bytes of cs. */
static int get_string(const char **out, json_t *obj, const char *key, const char *where,
                      int optional, size_t max, enum charset cs)
{
    json_t *value = json_object_get(obj, key);
    const char *str;
    size_t len;

    *out = NULL;
    if (!value || json_is_null(value)) {
        if (optional)
            return 0;
        return ps_error_set(PKGSTORE_EINVALID, "%s%s: missing", where, key);
    }
    if (!(str = json_string_value(value)))
        return ps_error_set(PKGSTORE_EINVALID, "%s%s: not a string", where, key);
    len = strlen(str);
    if (len == 0) {
        if (optional)
            return 0;
        return ps_error_set(PKGSTORE_EINVALID, "%s%s: empty", where, key);
    }
    if (len > max)
        return ps_error_set(PKGSTORE_EINVALID, "%s%s: longer than %zu bytes", where, key, max);
    for (size_t i = 0; i < len; i++) {
        if (!char_ok(cs, str[i], i))
            return ps_error_set(PKGSTORE_EINVALID, "%s%s: position %zu: invalid character 0x%02x",
                                where, key, i + 1, (unsigned char)str[i]);
    }
    *out = str;
    return 0;
}

static int parse_pkg(struct ps_hb_pkg *pkg, json_t *obj, size_t index)
{
    char where[48];
    const char *str;
    json_t *value;
    int error;

    memset(pkg, 0, sizeof(*pkg));
    snprintf(where, sizeof(where), "packages[%zu].", index);
    if (!json_is_object(obj))
        return ps_error_set(PKGSTORE_EINVALID, "packages[%zu]: not an object", index);
    if ((error = get_string(&pkg->name, obj, "name", where, 0, PKGSTORE_NAME_MAX, CS_TOKEN)) < 0)
        return error;
    if (pkgstore_manifest_name_validate(pkg->name) < 0) {
        ps_error_prefix("%sname", where);
        return PKGSTORE_EINVALID;
    }
    if ((error = get_string(&str, obj, "type", where, 1, 16, CS_TOKEN)) < 0)
        return error;
    pkg->type = PKGSTORE_TYPE_PRIMARY;
    if (str && pkgstore_package_type_parse(&pkg->type, str) < 0)
        return ps_error_set(PKGSTORE_EINVALID, "%stype: must be primary or addon", where);
    if ((error = get_string(&pkg->version, obj, "version", where, 1, PKGSTORE_VERSION_MAX,
                            CS_TOKEN)) < 0 ||
        (error = get_string(&pkg->state, obj, "state", where, 1, 32, CS_STATE)) < 0)
        return error;
    if ((error = get_string(&str, obj, "digest", where, 1, 80, CS_TOKEN)) < 0)
        return error;
    if (str) {
        if (pkgstore_digest_parse(&pkg->digest, str) < 0)
            return ps_error_set(PKGSTORE_EINVALID, "%sdigest: not a sha256 digest", where);
        pkg->has_digest = 1;
    }
    if ((value = json_object_get(obj, "offer")) && !json_is_null(value)) {
        char offer_where[64];
        snprintf(offer_where, sizeof(offer_where), "%soffer.", where);
        if (!json_is_object(value))
            return ps_error_set(PKGSTORE_EINVALID, "%soffer: not an object", where);
        if ((error = get_string(&pkg->offer_version, value, "version", offer_where, 1,
                                PKGSTORE_VERSION_MAX, CS_TOKEN)) < 0 ||
            (error = get_string(&str, value, "digest", offer_where, 1, 80, CS_TOKEN)) < 0)
            return error;
        pkgstore_digest ignored;
        if (str && pkgstore_digest_parse(&ignored, str) < 0)
            return ps_error_set(PKGSTORE_EINVALID, "%soffer.digest: not a sha256 digest", where);
    }
    if ((error = get_string(&str, obj, "status", where, 1, 32, CS_STATE)) < 0)
        return error;
    if (str) {
        if (pkgstore_rollout_state_parse(&pkg->status, str) < 0)
            return ps_error_set(PKGSTORE_EINVALID,
                                "%sstatus: '%s' is not one of Downloading, Verifying, "
                                "Validating, Swapping, Monitoring, Upgraded, UpgradeFailed, "
                                "RolledBack, RollbackFailed",
                                where, str);
        pkg->has_status = 1;
    }
    value = json_object_get(obj, "message");
    if (value && !json_is_null(value)) {
        if (!(pkg->message = json_string_value(value)))
            return ps_error_set(PKGSTORE_EINVALID, "%smessage: not a string", where);
    }
    return 0;
}

static int cmp_label(const void *a, const void *b)
{
    return strcmp(((const pkgstore_label *)a)->key, ((const pkgstore_label *)b)->key);
}

int ps_hb_parse(struct ps_hb *hb, json_t *root, int stored)
{
    json_t *labels, *packages, *value;
    const char *key;
    int error;

    memset(hb, 0, sizeof(*hb));
    if (!json_is_object(root))
        return ps_error_set(PKGSTORE_EINVALID, "body: not a JSON object");
    if ((error = get_string(&hb->node_id, root, stored ? "id" : "node_id",
                            "", 0, PKGSTORE_NODE_ID_MAX, CS_NODE_ID)) < 0 ||
        (error = get_string(&hb->platform, root, "platform", "", 0, PKGSTORE_PLATFORM_MAX,
                            CS_PLATFORM)) < 0 ||
        (error = get_string(&hb->agent_version, root, "agent_version", "", 1, 64,
                            CS_TOKEN)) < 0)
        return error;
    /* "linux/x86_64" is stored and matched as "linux/amd64" */
    if (pkgstore_platform_normalize(hb->platform_buf, hb->platform) < 0) {
        if (strncmp(pkgstore_error_detail(), "platform", 8) != 0)
            ps_error_prefix("platform");
        return PKGSTORE_EINVALID;
    }
    hb->platform = hb->platform_buf;
    if ((labels = json_object_get(root, "labels")) && !json_is_null(labels)) {
        if (!json_is_object(labels))
            return ps_error_set(PKGSTORE_EINVALID, "labels: not an object");
        if (json_object_size(labels) > PKGSTORE_LABELS_MAX)
            return ps_error_set(PKGSTORE_ELIMIT, "labels: more than %d", PKGSTORE_LABELS_MAX);
        json_object_foreach(labels, key, value) {
            const char *str = json_string_value(value);
            if (pkgstore_label_key_validate(key) < 0) {
                ps_error_prefix("labels.%.64s", key);
                return PKGSTORE_EINVALID;
            }
            if (!str)
                return ps_error_set(PKGSTORE_EINVALID, "labels.%s: not a string", key);
            if (pkgstore_label_value_validate(str) < 0) {
                ps_error_prefix("labels.%s", key);
                return PKGSTORE_EINVALID;
            }
            hb->labels[hb->nlabels].key = key;
            hb->labels[hb->nlabels].value = str;
            hb->nlabels++;
        }
        qsort(hb->labels, hb->nlabels, sizeof(*hb->labels), cmp_label);
    }
    if ((packages = json_object_get(root, "packages")) && !json_is_null(packages)) {
        if (!json_is_array(packages))
            return ps_error_set(PKGSTORE_EINVALID, "packages: not an array");
        if (json_array_size(packages) > PKGSTORE_NODE_PACKAGES_MAX)
            return ps_error_set(PKGSTORE_ELIMIT, "packages: more than %d",
                                PKGSTORE_NODE_PACKAGES_MAX);
        for (size_t i = 0; i < json_array_size(packages); i++) {
            if ((error = parse_pkg(&hb->pkgs[i], json_array_get(packages, i), i)) < 0)
                return error;
            hb->npkgs++;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- reports */

uint64_t ps_fnv1a(uint64_t hash, const void *data, size_t len)
{
    const unsigned char *bytes = data;
    for (size_t i = 0; i < len; i++) {
        hash ^= bytes[i];
        hash *= 1099511628211ULL;
    }
    return hash;
}

struct report_builder {
    char *next;
    uint64_t hash;
};

static const char *put_str(struct report_builder *b, const char *str)
{
    size_t len = strlen(str ? str : "") + 1;
    char *dst = b->next;
    memcpy(dst, str ? str : "", len);
    b->next += len;
    b->hash = ps_fnv1a(b->hash, dst, len);
    return dst;
}

static size_t str_size(const char *str)
{
    return strlen(str ? str : "") + 1;
}

struct ps_report *ps_report_build(const struct ps_hb *hb)
{
    size_t strings = str_size(hb->platform) + str_size(hb->agent_version);
    for (size_t i = 0; i < hb->nlabels; i++)
        strings += str_size(hb->labels[i].key) + str_size(hb->labels[i].value);
    for (size_t i = 0; i < hb->npkgs; i++)
        strings += str_size(hb->pkgs[i].name) + str_size(hb->pkgs[i].version) +
                   str_size(hb->pkgs[i].state);
    size_t head = sizeof(struct ps_report) + hb->nlabels * sizeof(pkgstore_label) +
                  hb->npkgs * sizeof(struct ps_pkg);
    struct ps_report *r = malloc(head + strings);
    if (!r)
        return NULL;
    struct report_builder b = {(char *)r + head, PS_FNV_OFFSET};
    r->labels = (pkgstore_label *)(r + 1);
    r->pkgs = (struct ps_pkg *)(r->labels + hb->nlabels);
    r->nlabels = hb->nlabels;
    r->npkgs = hb->npkgs;
    r->platform = put_str(&b, hb->platform);
    r->agent_version = put_str(&b, hb->agent_version);
    for (size_t i = 0; i < hb->nlabels; i++) {
        r->labels[i].key = put_str(&b, hb->labels[i].key);
        r->labels[i].value = put_str(&b, hb->labels[i].value);
    }
    for (size_t i = 0; i < hb->npkgs; i++) {
        struct ps_pkg *pkg = &r->pkgs[i];
        memset(pkg, 0, sizeof(*pkg));
        pkg->name = put_str(&b, hb->pkgs[i].name);
        pkg->version = put_str(&b, hb->pkgs[i].version);
        pkg->state = put_str(&b, hb->pkgs[i].state);
        pkg->type = hb->pkgs[i].type;
        pkg->has_digest = hb->pkgs[i].has_digest;
        pkg->digest = hb->pkgs[i].digest;
        unsigned char extra[2] = {(unsigned char)pkg->type, (unsigned char)pkg->has_digest};
        b.hash = ps_fnv1a(b.hash, extra, sizeof(extra));
        b.hash = ps_fnv1a(b.hash, pkg->digest.bytes, sizeof(pkg->digest.bytes));
    }
    r->hash = b.hash;
    return r;
}

/* ---------------------------------------------------------------- heartbeat */

/*
 * The response's pieces, sized first and then written. Names, versions,
 * policy names, states and digests are plain ASCII that JSON needs not
 * escape (each is validated where it is stored); a reason may quote a
 * manifest's constraint, so it is escaped the way jansson would.
 */
#define RETRY_TEXT_MAX 10 /* digits of a uint32_t */

static size_t escaped_size(const char *text)
{
    size_t n = 2;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        n += (*p == '"' || *p == '\\') ? 2 : *p < 0x20 ? 6 : 1;
    return n;
}

static char *put_escaped(char *at, const char *text)
{
    *at++ = '"';
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\') {
            *at++ = '\\';
            *at++ = (char)*p;
        } else if (*p < 0x20) {
            at += sprintf(at, "\\u%04x", *p);
        } else {
            *at++ = (char)*p;
        }
    }
    *at++ = '"';
    return at;
}

static size_t offer_size(const struct ps_slot *slot, const char *members)
{
    return sizeof("{\"policy\":\"\",\"retry\":,}") + strlen(slot->item->policy.name) +
           RETRY_TEXT_MAX + strlen(members);
}

static char *put_offer(char *at, const struct ps_slot *slot, const char *members)
{
    at += sprintf(at, "{\"policy\":\"%s\",\"retry\":%u,", slot->item->policy.name,
                  (unsigned int)slot->item->policy.retry);
    at = stpcpy(at, members);
    *at++ = '}';
    return at;
}

static size_t target_size(const struct ps_slot *slot)
{
    const pkgstore_policy *policy = &slot->item->policy;
    return sizeof("{\"name\":\"\",\"type\":\"\",\"version\":\"\",\"policy\":\"\",\"state\":\"\","
                  "\"digest\":\"\",\"reason\":}") +
           strlen(policy->package) + 8 + strlen(policy->version) + strlen(policy->name) + 16 +
           PKGSTORE_DIGEST_STR_SIZE + escaped_size(slot->reason);
}

static char *put_target(char *at, const struct ps_slot *slot)
{
    const pkgstore_policy *policy = &slot->item->policy;
    at += sprintf(at, "{\"name\":\"%s\",\"type\":\"%s\",\"version\":\"%s\",\"policy\":\"%s\","
                      "\"state\":\"%s\"",
                  policy->package, pkgstore_package_type_name(policy->type), policy->version,
                  policy->name, pkgstore_rollout_state_name(slot->state));
    if (slot->artifact) {
        char digest[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(digest, &slot->artifact->digest);
        at += sprintf(at, ",\"digest\":\"%s\"", digest);
    }
    if (slot->reason[0]) {
        at = stpcpy(at, ",\"reason\":");
        at = put_escaped(at, slot->reason);
    }
    *at++ = '}';
    return at;
}

int pkgstore_policy_heartbeat(char **response_out, pkgstore_policy_db *db, const char *body,
                              size_t len)
{
    struct ps_slot stack_slots[16], *slots = stack_slots;
    struct ps_policy_set *set = NULL;
    struct ps_report *report = NULL;
    struct ps_hb *hb = NULL;
    json_error_t jerr;
    json_t *root = NULL;
    size_t nslots = 0;
    int error = 0;

    if (response_out)
        *response_out = NULL;
    if (!response_out || !db || (!body && len > 0))
        return ps_error_set(PKGSTORE_EINVALID, "heartbeat: NULL argument");
    if (!(root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr)))
        return ps_error_set(PKGSTORE_EINVALID, "body: line %d column %d: %s", jerr.line,
                            jerr.column, jerr.text);
    if (!(hb = malloc(sizeof(*hb)))) {
        error = ps_error_set(PKGSTORE_ENOMEM, "heartbeat: out of memory");
        goto out;
    }
    if ((error = ps_hb_parse(hb, root, 0)) < 0)
        goto out;
    if (!(report = ps_report_build(hb))) {
        error = ps_error_set(PKGSTORE_ENOMEM, "heartbeat: out of memory");
        goto out;
    }

    set = ps_policy_set_get(db);
    if (set->count > 16 && !(slots = calloc(set->count, sizeof(*slots)))) {
        slots = stack_slots;
        error = ps_error_set(PKGSTORE_ENOMEM, "heartbeat: out of memory");
        goto out;
    }
    ps_policy_evaluate(slots, &nslots, db, set, report, NULL, NULL);

    /* Record the node. */
    {
        uint64_t hash = ps_node_id_hash(hb->node_id);
        struct ps_shard *shard = ps_node_shard(db, hash);
        struct ps_report *old = NULL;
        int64_t now = (int64_t)time(NULL);

        pthread_mutex_lock(&shard->lock);
        struct ps_node *node = ps_node_find(shard, hb->node_id, hash);
        if (!node && !(node = ps_node_insert(db, shard, hb->node_id, hash))) {
            pthread_mutex_unlock(&shard->lock);
            error = ps_error_set(PKGSTORE_ENOMEM, "heartbeat: out of memory");
            goto out;
        }
        if (!node->report || node->report->hash != report->hash)
            node->dirty = 1;
        old = node->report;
        node->report = report;
        report = NULL; /* now owned by the node */
        node->last_seen = now;
        for (size_t i = 0; i < hb->npkgs && error == 0; i++) {
            const struct ps_hb_pkg *pkg = &hb->pkgs[i];
            if (!pkg->has_status)
                continue;
            int rc = ps_hist_append(db, node, now, pkg->name,
                                 pkg->offer_version ? pkg->offer_version : pkg->version,
                                 pkg->status, pkg->message);
            if (rc < 0)
                error = rc;
            else if (rc > 0)
                node->dirty = 1;
        }
        pthread_mutex_unlock(&shard->lock);
        free(old);
        if (error < 0)
            goto out;
    }

    /* {"heartbeat_interval_s":N,"offers":[{"policy":"P","retry":R,MEMBERS},...],
     *  "targets":[{...},...]} by hand: the offer members are cached JSON
     * texts, so no JSON tree is built per heartbeat and each offer is
     * copied once, into the response. */
    {
        char head[64];
        size_t head_len = (size_t)snprintf(head, sizeof(head),
                                           "{\"heartbeat_interval_s\":%u,\"offers\":[",
                                           db->heartbeat_interval_s);
        size_t total = head_len + sizeof("],\"targets\":[]}");
        for (size_t i = 0; i < nslots; i++) {
            if (slots[i].offer) {
                const char *members = ps_offer_members(&slots[i]);
                if (!members) {
                    error = ps_error_set(PKGSTORE_ENOMEM, "offer: out of memory");
                    goto out;
                }
                total += offer_size(&slots[i], members);
            }
            total += target_size(&slots[i]);
        }
        char *text = malloc(total), *at = text;
        if (!text) {
            error = ps_error_set(PKGSTORE_ENOMEM, "heartbeat: out of memory");
            goto out;
        }
        memcpy(at, head, head_len);
        at += head_len;
        for (size_t i = 0, first = 1; i < nslots; i++) {
            if (!slots[i].offer)
                continue;
            if (!first)
                *at++ = ',';
            first = 0;
            at = put_offer(at, &slots[i], ps_offer_members(&slots[i])); /* cached by the first pass */
        }
        at = stpcpy(at, "],\"targets\":[");
        for (size_t i = 0; i < nslots; i++) {
            if (i > 0)
                *at++ = ',';
            at = put_target(at, &slots[i]);
        }
        memcpy(at, "]}", sizeof("]}"));
        *response_out = text;
    }
out:
    ps_slots_release(slots, nslots);
    if (slots != stack_slots)
        free(slots);
    ps_policy_set_release(set);
    json_decref(root);
    free(report);
    free(hb);
    return error;
}

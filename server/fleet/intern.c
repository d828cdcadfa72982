/*
 * server/fleet/intern.c - what nodes share: interned, reference-counted
 * strings (history keys and messages) and profiles (a node's report:
 * platform, agent version, labels, packages), and the strict parser that
 * turns a heartbeat body or a stored record into one.
 *
 * Both tables are striped by hash, each stripe a small open hash table with
 * its own lock, so heartbeats of different nodes rarely meet on a lock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fleet_impl.h"

int64_t fl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int fl_fail(fleet_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        err->http_status = 0;
        err->retry_after_s = 0;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return code;
}

int fl_fail_lib(fleet_error *err, int code, const char *context)
{
    const char *detail = pkgstore_error_detail();
    if (!detail || !*detail)
        detail = pkgstore_strerror(code);
    if (context)
        return fl_fail(err, code, "%s: %s", context, detail);
    return fl_fail(err, code, "%s", detail);
}

uint64_t fl_fnv1a(uint64_t hash, const void *data, size_t len)
{
    const unsigned char *bytes = data;
    for (size_t i = 0; i < len; i++) {
        hash ^= bytes[i];
        hash *= 1099511628211ULL;
    }
    return hash;
}

static struct fl_intern_stripe *stripe_of(fleet *f, uint64_t hash)
{
    return &f->stripes[(hash >> 32) % FL_INTERN_STRIPES];
}

/* Grow a chained hash table to twice its buckets. Failure keeps the old
 * table (longer chains, still correct). */
static void grow(struct fl_chain ***table, size_t *cap)
{
    size_t ncap = *cap ? *cap * 2 : 16;
    struct fl_chain **fresh = calloc(ncap, sizeof(*fresh));
    if (!fresh)
        return;
    for (size_t i = 0; i < *cap; i++) {
        struct fl_chain *entry = (*table)[i], *next;
        for (; entry; entry = next) {
            next = entry->next;
            size_t b = entry->hash & (ncap - 1);
            entry->next = fresh[b];
            fresh[b] = entry;
        }
    }
    free(*table);
    *table = fresh;
    *cap = ncap;
}

/* Unlink entry from its chain. */
static void unlink_entry(struct fl_chain **table, size_t cap, struct fl_chain *entry)
{
    struct fl_chain **link = &table[entry->hash & (cap - 1)];
    while (*link != entry)
        link = &(*link)->next;
    *link = entry->next;
}

/* Link entry into its chain. */
static void link_entry(struct fl_chain **table, size_t cap, struct fl_chain *entry)
{
    size_t b = entry->hash & (cap - 1);
    entry->next = table[b];
    table[b] = entry;
}

/* ---------------------------------------------------------------- strings */

struct fl_str *fl_str_intern(fleet *f, const char *s, size_t len)
{
    uint64_t hash = fl_fnv1a(FL_FNV_OFFSET, s, len);
    struct fl_intern_stripe *stripe = stripe_of(f, hash);
    struct fl_str *str;

    pthread_mutex_lock(&stripe->lock);
    for (struct fl_chain *c = stripe->cap_strs ? stripe->strs[hash & (stripe->cap_strs - 1)] : NULL;
         c; c = c->next) {
        str = (struct fl_str *)c;
        if (c->hash == hash && str->len == len && memcmp(str->s, s, len) == 0) {
            str->refs++;
            pthread_mutex_unlock(&stripe->lock);
            return str;
        }
    }
    if (stripe->nstrs >= stripe->cap_strs)
        grow(&stripe->strs, &stripe->cap_strs);
    if (!stripe->cap_strs || !(str = malloc(sizeof(*str) + len + 1))) {
        pthread_mutex_unlock(&stripe->lock);
        return NULL;
    }
    str->chain.hash = hash;
    str->refs = 1;
    str->len = (uint32_t)len;
    memcpy(str->s, s, len);
    str->s[len] = '\0';
    link_entry(stripe->strs, stripe->cap_strs, &str->chain);
    stripe->nstrs++;
    pthread_mutex_unlock(&stripe->lock);
    return str;
}

void fl_str_release(fleet *f, struct fl_str *str)
{
    if (!str)
        return;
    struct fl_intern_stripe *stripe = stripe_of(f, str->chain.hash);
    pthread_mutex_lock(&stripe->lock);
    if (--str->refs == 0) {
        unlink_entry(stripe->strs, stripe->cap_strs, &str->chain);
        stripe->nstrs--;
        free(str);
    }
    pthread_mutex_unlock(&stripe->lock);
}

/* ---------------------------------------------------------------- parsing */

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
                      int optional, size_t max, enum charset cs, fleet_error *err)
{
    json_t *value = json_object_get(obj, key);
    const char *str;
    size_t len;

    *out = NULL;
    if (!value || json_is_null(value)) {
        if (optional)
            return 0;
        return fl_fail(err, PKGSTORE_EINVALID, "%s%s: missing", where, key);
    }
    if (!(str = json_string_value(value)))
        return fl_fail(err, PKGSTORE_EINVALID, "%s%s: not a string", where, key);
    len = strlen(str);
    if (len == 0) {
        if (optional)
            return 0;
        return fl_fail(err, PKGSTORE_EINVALID, "%s%s: empty", where, key);
    }
    if (len > max)
        return fl_fail(err, PKGSTORE_EINVALID, "%s%s: longer than %zu bytes", where, key, max);
    for (size_t i = 0; i < len; i++) {
        if (!char_ok(cs, str[i], i))
            return fl_fail(err, PKGSTORE_EINVALID, "%s%s: position %zu: invalid character 0x%02x",
                           where, key, i + 1, (unsigned char)str[i]);
    }
    *out = str;
    return 0;
}

static int parse_pkg(struct fl_hb_pkg *pkg, json_t *obj, size_t index, fleet_error *err)
{
    char where[48];
    const char *str;
    json_t *value;
    int error;

    memset(pkg, 0, sizeof(*pkg));
    snprintf(where, sizeof(where), "packages[%zu].", index);
    if (!json_is_object(obj))
        return fl_fail(err, PKGSTORE_EINVALID, "packages[%zu]: not an object", index);
    if ((error = get_string(&pkg->name, obj, "name", where, 0, PKGSTORE_NAME_MAX, CS_TOKEN,
                            err)) < 0)
        return error;
    if (pkgstore_manifest_name_validate(pkg->name) < 0)
        return fl_fail(err, PKGSTORE_EINVALID, "%sname: %s", where, pkgstore_error_detail());
    if ((error = get_string(&str, obj, "type", where, 1, 16, CS_TOKEN, err)) < 0)
        return error;
    pkg->type = PKGSTORE_TYPE_PRIMARY;
    if (str && pkgstore_package_type_parse(&pkg->type, str) < 0)
        return fl_fail(err, PKGSTORE_EINVALID, "%stype: must be primary or addon", where);
    if ((error = get_string(&pkg->version, obj, "version", where, 1, PKGSTORE_VERSION_MAX,
                            CS_TOKEN, err)) < 0 ||
        (error = get_string(&pkg->state, obj, "state", where, 1, 32, CS_STATE, err)) < 0)
        return error;
    if ((error = get_string(&str, obj, "digest", where, 1, 80, CS_TOKEN, err)) < 0)
        return error;
    if (str) {
        if (pkgstore_digest_parse(&pkg->digest, str) < 0)
            return fl_fail(err, PKGSTORE_EINVALID, "%sdigest: not a sha256 digest", where);
        pkg->has_digest = 1;
    }
    if ((error = get_string(&str, obj, "config_digest", where, 1, 80, CS_TOKEN, err)) < 0)
        return error;
    if (str) {
        if (pkgstore_digest_parse(&pkg->config.config_digest, str) < 0)
            return fl_fail(err, PKGSTORE_EINVALID, "%sconfig_digest: not a sha256 digest", where);
        pkg->config.has_config = 1;
    }
    if ((value = json_object_get(obj, "config_refused")) && !json_is_null(value)) {
        char refused_where[64];
        json_t *retry = json_object_get(value, "retry");
        snprintf(refused_where, sizeof(refused_where), "%sconfig_refused.", where);
        if (!json_is_object(value))
            return fl_fail(err, PKGSTORE_EINVALID, "%sconfig_refused: not an object", where);
        if ((error = get_string(&str, value, "digest", refused_where, 0, 80, CS_TOKEN, err)) < 0)
            return error;
        if (pkgstore_digest_parse(&pkg->config.refused_digest, str) < 0)
            return fl_fail(err, PKGSTORE_EINVALID, "%sconfig_refused.digest: not a sha256 digest",
                           where);
        if (retry && (!json_is_integer(retry) || json_integer_value(retry) < 0 ||
                      json_integer_value(retry) > (json_int_t)UINT32_MAX))
            return fl_fail(err, PKGSTORE_EINVALID,
                           "%sconfig_refused.retry: not an integer in 0..4294967295", where);
        pkg->config.refused_retry = retry ? (uint32_t)json_integer_value(retry) : 0;
        pkg->config.has_refused = 1;
    }
    if ((value = json_object_get(obj, "offer")) && !json_is_null(value)) {
        char offer_where[64];
        snprintf(offer_where, sizeof(offer_where), "%soffer.", where);
        if (!json_is_object(value))
            return fl_fail(err, PKGSTORE_EINVALID, "%soffer: not an object", where);
        if ((error = get_string(&pkg->offer_version, value, "version", offer_where, 1,
                                PKGSTORE_VERSION_MAX, CS_TOKEN, err)) < 0 ||
            (error = get_string(&str, value, "digest", offer_where, 1, 80, CS_TOKEN, err)) < 0)
            return error;
        pkgstore_digest ignored;
        if (str && pkgstore_digest_parse(&ignored, str) < 0)
            return fl_fail(err, PKGSTORE_EINVALID, "%soffer.digest: not a sha256 digest", where);
    }
    if ((error = get_string(&str, obj, "status", where, 1, 32, CS_STATE, err)) < 0)
        return error;
    if (str) {
        if (pkgstore_rollout_state_parse(&pkg->status, str) < 0)
            return fl_fail(err, PKGSTORE_EINVALID,
                           "%sstatus: '%s' is not one of Downloading, Verifying, Validating, "
                           "Swapping, Monitoring, Upgraded, UpgradeFailed, RolledBack, "
                           "RollbackFailed",
                           where, str);
        pkg->has_status = 1;
    }
    value = json_object_get(obj, "message");
    if (value && !json_is_null(value)) {
        if (!(pkg->message = json_string_value(value)))
            return fl_fail(err, PKGSTORE_EINVALID, "%smessage: not a string", where);
    }
    return 0;
}

static int cmp_label(const void *a, const void *b)
{
    return strcmp(((const pkgstore_label *)a)->key, ((const pkgstore_label *)b)->key);
}

int fl_hb_parse(struct fl_hb *hb, json_t *root, int stored, fleet_error *err)
{
    json_t *labels, *packages, *value;
    const char *key;
    int error;

    memset(hb, 0, sizeof(*hb));
    if (!json_is_object(root))
        return fl_fail(err, PKGSTORE_EINVALID, "body: not a JSON object");
    if ((error = get_string(&hb->node_id, root, stored ? "id" : "node_id", "", 0,
                            FL_NODE_ID_MAX, CS_NODE_ID, err)) < 0 ||
        (error = get_string(&hb->platform, root, "platform", "", 0, PKGSTORE_PLATFORM_MAX,
                            CS_PLATFORM, err)) < 0 ||
        (error = get_string(&hb->agent_version, root, "agent_version", "", 1, 64, CS_TOKEN,
                            err)) < 0)
        return error;
    /* "linux/x86_64" is stored and matched as "linux/amd64" */
    if (pkgstore_platform_normalize(hb->platform_buf, hb->platform) < 0) {
        const char *detail = pkgstore_error_detail();
        return fl_fail(err, PKGSTORE_EINVALID, "%s%s",
                       strncmp(detail, "platform", 8) == 0 ? "" : "platform: ", detail);
    }
    hb->platform = hb->platform_buf;
    if ((labels = json_object_get(root, "labels")) && !json_is_null(labels)) {
        if (!json_is_object(labels))
            return fl_fail(err, PKGSTORE_EINVALID, "labels: not an object");
        if (json_object_size(labels) > FL_LABELS_MAX)
            return fl_fail(err, PKGSTORE_ELIMIT, "labels: more than %d", FL_LABELS_MAX);
        json_object_foreach(labels, key, value) {
            const char *str = json_string_value(value);
            if (pkgstore_label_key_validate(key) < 0)
                return fl_fail(err, PKGSTORE_EINVALID, "labels.%.64s: %s", key,
                               pkgstore_error_detail());
            if (!str)
                return fl_fail(err, PKGSTORE_EINVALID, "labels.%s: not a string", key);
            if (pkgstore_label_value_validate(str) < 0)
                return fl_fail(err, PKGSTORE_EINVALID, "labels.%s: %s", key,
                               pkgstore_error_detail());
            hb->labels[hb->nlabels].key = key;
            hb->labels[hb->nlabels].value = str;
            hb->nlabels++;
        }
        qsort(hb->labels, hb->nlabels, sizeof(*hb->labels), cmp_label);
    }
    if ((packages = json_object_get(root, "packages")) && !json_is_null(packages)) {
        if (!json_is_array(packages))
            return fl_fail(err, PKGSTORE_EINVALID, "packages: not an array");
        if (json_array_size(packages) > FL_PACKAGES_MAX)
            return fl_fail(err, PKGSTORE_ELIMIT, "packages: more than %d", FL_PACKAGES_MAX);
        for (size_t i = 0; i < json_array_size(packages); i++) {
            if ((error = parse_pkg(&hb->pkgs[i], json_array_get(packages, i), i, err)) < 0)
                return error;
            hb->npkgs++;
        }
    }
    return fl_trust_parse(&hb->trust, root, stored, err);
}

/* ---------------------------------------------------------------- profiles */

static uint64_t hash_str(uint64_t hash, const char *str)
{
    return fl_fnv1a(hash, str ? str : "", strlen(str ? str : "") + 1);
}

uint64_t fl_hb_hash(const struct fl_hb *hb)
{
    uint64_t hash = FL_FNV_OFFSET;
    hash = hash_str(hash, hb->platform);
    hash = hash_str(hash, hb->agent_version);
    for (size_t i = 0; i < hb->nlabels; i++) {
        hash = hash_str(hash, hb->labels[i].key);
        hash = hash_str(hash, hb->labels[i].value);
    }
    hash = fl_fnv1a(hash, "\1", 1); /* labels end */
    hash = fl_fnv1a(hash, &hb->trust.root_version, sizeof(hb->trust.root_version));
    hash = fl_fnv1a(hash, &hb->trust.revocations, sizeof(hb->trust.revocations));
    hash = fl_fnv1a(hash, &hb->trust.newest_signed, sizeof(hb->trust.newest_signed));
    for (size_t i = 0; i < hb->npkgs; i++) {
        const struct fl_hb_pkg *pkg = &hb->pkgs[i];
        const struct fl_pkg_config *c = &pkg->config;
        unsigned char extra[4] = {(unsigned char)pkg->type, (unsigned char)pkg->has_digest,
                                  (unsigned char)c->has_config, (unsigned char)c->has_refused};
        hash = hash_str(hash, pkg->name);
        hash = hash_str(hash, pkg->version);
        hash = hash_str(hash, pkg->state);
        hash = fl_fnv1a(hash, extra, sizeof(extra));
        if (pkg->has_digest)
            hash = fl_fnv1a(hash, pkg->digest.bytes, sizeof(pkg->digest.bytes));
        if (c->has_config)
            hash = fl_fnv1a(hash, c->config_digest.bytes, sizeof(c->config_digest.bytes));
        if (c->has_refused) {
            hash = fl_fnv1a(hash, c->refused_digest.bytes, sizeof(c->refused_digest.bytes));
            hash = fl_fnv1a(hash, &c->refused_retry, sizeof(c->refused_retry));
        }
    }
    return hash;
}

static int str_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static int has_pkg_config(const struct fl_pkg_config *c)
{
    return c->has_config || c->has_refused;
}

/* The same configuration report (a profile's may be NULL: none). */
static int pkg_config_equals(const struct fl_pkg_config *a, const struct fl_pkg_config *b)
{
    if (!a || !has_pkg_config(a))
        return !has_pkg_config(b);
    return a->has_config == b->has_config && a->has_refused == b->has_refused &&
           (!a->has_config ||
            memcmp(a->config_digest.bytes, b->config_digest.bytes, PKGSTORE_DIGEST_SIZE) == 0) &&
           (!a->has_refused ||
            (a->refused_retry == b->refused_retry &&
             memcmp(a->refused_digest.bytes, b->refused_digest.bytes, PKGSTORE_DIGEST_SIZE) == 0));
}

/* Does profile hold exactly what hb reports? */
static int profile_equals(const struct fl_profile *p, const struct fl_hb *hb)
{
    if (p->nlabels != hb->nlabels || p->npkgs != hb->npkgs || !str_eq(p->platform, hb->platform) ||
        !str_eq(p->agent_version, hb->agent_version) ||
        p->trust.root_version != hb->trust.root_version ||
        p->trust.revocations != hb->trust.revocations ||
        p->trust.newest_signed != hb->trust.newest_signed)
        return 0;
    for (size_t i = 0; i < hb->nlabels; i++) {
        if (!str_eq(p->labels[i].key, hb->labels[i].key) ||
            !str_eq(p->labels[i].value, hb->labels[i].value))
            return 0;
    }
    for (size_t i = 0; i < hb->npkgs; i++) {
        const struct fl_pkg *a = &p->pkgs[i];
        const struct fl_hb_pkg *b = &hb->pkgs[i];
        if (!str_eq(a->name, b->name) || !str_eq(a->version, b->version) ||
            !str_eq(a->state, b->state) || a->type != b->type || a->has_digest != b->has_digest ||
            (a->has_digest && memcmp(a->digest.bytes, b->digest.bytes, PKGSTORE_DIGEST_SIZE)) ||
            !pkg_config_equals(a->config, &b->config))
            return 0;
    }
    return 1;
}

int fl_profile_matches(const struct fl_profile *profile, const struct fl_hb *hb, uint64_t hash)
{
    return profile && profile->chain.hash == hash && profile_equals(profile, hb);
}

static size_t str_size(const char *str)
{
    return strlen(str ? str : "") + 1;
}

static const char *put_str(char **next, const char *str)
{
    size_t len = str_size(str);
    char *dst = *next;
    memcpy(dst, str ? str : "", len);
    *next += len;
    return dst;
}

static struct fl_profile *profile_build(const struct fl_hb *hb, uint64_t hash)
{
    size_t strings = str_size(hb->platform) + str_size(hb->agent_version);
    for (size_t i = 0; i < hb->nlabels; i++)
        strings += str_size(hb->labels[i].key) + str_size(hb->labels[i].value);
    for (size_t i = 0; i < hb->npkgs; i++)
        strings += str_size(hb->pkgs[i].name) + str_size(hb->pkgs[i].version) +
                   str_size(hb->pkgs[i].state);
    size_t nconfigs = 0;
    for (size_t i = 0; i < hb->npkgs; i++)
        nconfigs += has_pkg_config(&hb->pkgs[i].config);
    size_t head = sizeof(struct fl_profile) + hb->nlabels * sizeof(pkgstore_label) +
                  hb->npkgs * sizeof(struct fl_pkg) + nconfigs * sizeof(struct fl_pkg_config);
    struct fl_profile *p = malloc(head + strings);
    if (!p)
        return NULL;
    char *next = (char *)p + head;
    memset(p, 0, sizeof(*p));
    p->chain.hash = hash;
    p->refs = 1;
    p->size = head + strings;
    p->labels = (pkgstore_label *)(p + 1);
    p->pkgs = (struct fl_pkg *)(p->labels + hb->nlabels);
    struct fl_pkg_config *configs = (struct fl_pkg_config *)(p->pkgs + hb->npkgs);
    p->nlabels = (uint16_t)hb->nlabels;
    p->npkgs = (uint16_t)hb->npkgs;
    p->trust = hb->trust;
    p->platform = put_str(&next, hb->platform);
    p->agent_version = put_str(&next, hb->agent_version);
    for (size_t i = 0; i < hb->nlabels; i++) {
        p->labels[i].key = put_str(&next, hb->labels[i].key);
        p->labels[i].value = put_str(&next, hb->labels[i].value);
    }
    for (size_t i = 0; i < hb->npkgs; i++) {
        struct fl_pkg *pkg = &p->pkgs[i];
        memset(pkg, 0, sizeof(*pkg));
        pkg->name = put_str(&next, hb->pkgs[i].name);
        pkg->version = put_str(&next, hb->pkgs[i].version);
        pkg->state = put_str(&next, hb->pkgs[i].state);
        pkg->type = hb->pkgs[i].type;
        pkg->has_digest = hb->pkgs[i].has_digest;
        pkg->digest = hb->pkgs[i].digest;
        if (has_pkg_config(&hb->pkgs[i].config)) {
            *configs = hb->pkgs[i].config;
            pkg->config = configs++;
        }
    }
    return p;
}

struct fl_profile *fl_profile_intern(fleet *f, const struct fl_hb *hb, uint64_t hash)
{
    struct fl_intern_stripe *stripe = stripe_of(f, hash);
    struct fl_profile *p;

    pthread_mutex_lock(&stripe->lock);
    for (struct fl_chain *c =
             stripe->cap_profiles ? stripe->profiles[hash & (stripe->cap_profiles - 1)] : NULL;
         c; c = c->next) {
        p = (struct fl_profile *)c;
        if (c->hash == hash && profile_equals(p, hb)) {
            p->refs++;
            pthread_mutex_unlock(&stripe->lock);
            return p;
        }
    }
    if (stripe->nprofiles >= stripe->cap_profiles)
        grow(&stripe->profiles, &stripe->cap_profiles);
    if (!stripe->cap_profiles || !(p = profile_build(hb, hash))) {
        pthread_mutex_unlock(&stripe->lock);
        return NULL;
    }
    link_entry(stripe->profiles, stripe->cap_profiles, &p->chain);
    stripe->nprofiles++;
    atomic_fetch_add(&f->profile_count, 1);
    pthread_mutex_unlock(&stripe->lock);
    return p;
}

void fl_profile_acquire(fleet *f, struct fl_profile *profile)
{
    struct fl_intern_stripe *stripe = stripe_of(f, profile->chain.hash);
    pthread_mutex_lock(&stripe->lock);
    profile->refs++;
    pthread_mutex_unlock(&stripe->lock);
}

void fl_profile_release(fleet *f, struct fl_profile *profile)
{
    if (!profile)
        return;
    struct fl_intern_stripe *stripe = stripe_of(f, profile->chain.hash);
    pthread_mutex_lock(&stripe->lock);
    if (--profile->refs == 0) {
        unlink_entry(stripe->profiles, stripe->cap_profiles, &profile->chain);
        stripe->nprofiles--;
        atomic_fetch_sub(&f->profile_count, 1);
        free(profile);
    }
    pthread_mutex_unlock(&stripe->lock);
}

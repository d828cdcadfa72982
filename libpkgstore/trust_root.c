/*
 * trust_root.c - root.json (docs/trust.md): build and sign a root, parse
 * it strictly, and decide whether a root is trusted, on its own (a pinned
 * root) or as the successor of the trusted one (the rotation rule).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "time_text.h"
#include "trust.h"

static void clear_signatures(pkgstore_trust_root *root)
{
    root->sigs.count = 0;
}

int pkgstore_trust_root_new(pkgstore_trust_root **out, uint64_t version)
{
    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "root: no output pointer");
    *out = NULL;
    if (version == 0 || version > INT64_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "root: version must be 1 to %lld",
                            (long long)INT64_MAX);
    pkgstore_trust_root *root = calloc(1, sizeof(*root));
    if (!root)
        return ps_error_set(PKGSTORE_ENOMEM, "root: out of memory");
    root->version = version;
    root->threshold = 1;
    root->created = (int64_t)time(NULL);
    *out = root;
    return 0;
}

int pkgstore_trust_root_add_key(pkgstore_trust_root *root, const pkgstore_trust_key *key,
                                const char *name)
{
    int error;
    if (!root || !key)
        return ps_error_set(PKGSTORE_EINVALID, "root: NULL root or key");
    if (name && (error = ps_trust_check_text("keys.name", name, PKGSTORE_TRUST_KEY_NAME_MAX)) < 0)
        return error;
    for (size_t i = 0; i < root->key_count; i++)
        if (strcmp(root->keys[i].keyid, key->keyid) == 0)
            return ps_error_set(PKGSTORE_EEXISTS, "root: key %.16s... is already listed",
                                key->keyid);
    if (root->key_count == PKGSTORE_TRUST_ROOT_KEYS_MAX)
        return ps_error_set(PKGSTORE_ELIMIT, "root: more than %d keys",
                            PKGSTORE_TRUST_ROOT_KEYS_MAX);
    ps_trust_root_key *slot = &root->keys[root->key_count];
    memset(slot, 0, sizeof(*slot));
    if (!(slot->pkey = ps_trust_public_pkey(key->public_raw)))
        return PKGSTORE_EINTERNAL;
    memcpy(slot->public_raw, key->public_raw, sizeof(slot->public_raw));
    memcpy(slot->keyid, key->keyid, sizeof(slot->keyid));
    snprintf(slot->name, sizeof(slot->name), "%s", name ? name : "");
    root->key_count++;
    clear_signatures(root);
    return 0;
}

int pkgstore_trust_root_set_threshold(pkgstore_trust_root *root, unsigned int threshold)
{
    if (!root || threshold == 0)
        return ps_error_set(PKGSTORE_EINVALID, "root: threshold must be at least 1");
    root->threshold = threshold;
    clear_signatures(root);
    return 0;
}

int pkgstore_trust_root_set_created(pkgstore_trust_root *root, int64_t seconds)
{
    if (!root || seconds < PS_TIME_MIN || seconds > PS_TIME_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "root: created outside the years 0000-9999");
    root->created = seconds;
    clear_signatures(root);
    return 0;
}

static int check_complete(const pkgstore_trust_root *root)
{
    if (root->key_count == 0)
        return ps_error_set(PKGSTORE_EINVALID, "root: no keys");
    if (root->threshold > root->key_count)
        return ps_error_set(PKGSTORE_EINVALID, "root: threshold %u is above its %zu key%s",
                            root->threshold, root->key_count, root->key_count == 1 ? "" : "s");
    return 0;
}

json_t *ps_trust_root_signed_json(const pkgstore_trust_root *root)
{
    char created[PS_TIME_SIZE], b64[PS_TRUST_PUBLIC_B64_LEN + 1];
    if (ps_time_format(created, root->created) < 0)
        return NULL;
    json_t *keys = json_array();
    for (size_t i = 0; keys && i < root->key_count; i++) {
        const ps_trust_root_key *k = &root->keys[i];
        ps_trust_b64_encode(b64, k->public_raw, PS_TRUST_PUBLIC_SIZE);
        json_t *item = json_pack("{s:s, s:s}", "keyid", k->keyid, "public", b64);
        if (item && k->name[0] && json_object_set_new(item, "name", json_string(k->name)) < 0) {
            json_decref(item);
            item = NULL;
        }
        if (!item || json_array_append_new(keys, item) < 0) {
            json_decref(keys);
            return NULL;
        }
    }
    if (!keys)
        return NULL;
    return json_pack("{s:s, s:o, s:i, s:I, s:s, s:I}", "created", created, "keys", keys,
                     "schemaVersion", PKGSTORE_TRUST_SCHEMA_VERSION, "threshold",
                     (json_int_t)root->threshold, "type", "root", "version",
                     (json_int_t)root->version);
}

/* The canonical bytes a root's signatures cover. */
static int signed_bytes(char **out, size_t *len_out, const pkgstore_trust_root *root)
{
    json_t *obj = ps_trust_root_signed_json(root);
    if (!obj)
        return ps_error_set(PKGSTORE_ENOMEM, "root: out of memory building JSON");
    int error = ps_json_dump(out, len_out, obj, PS_JSON_CANONICAL, "root");
    json_decref(obj);
    return error;
}

int pkgstore_trust_root_sign(pkgstore_trust_root *root, const pkgstore_trust_key *key)
{
    char *body = NULL;
    size_t len = 0;
    int error;
    if (!root || !key)
        return ps_error_set(PKGSTORE_EINVALID, "root: NULL root or key");
    if ((error = check_complete(root)) < 0 || (error = signed_bytes(&body, &len, root)) < 0)
        return error;
    error = ps_trust_sigs_add(&root->sigs, key, PKGSTORE_TRUST_TYPE_ROOT, body, len);
    pkgstore_free(body);
    return error;
}

int pkgstore_trust_root_serialize(char **out, size_t *len_out, const pkgstore_trust_root *root)
{
    int error;
    if (out)
        *out = NULL;
    if (len_out)
        *len_out = 0;
    if (!out || !root)
        return ps_error_set(PKGSTORE_EINVALID, "root: NULL argument");
    if ((error = check_complete(root)) < 0)
        return error;
    json_t *obj = ps_trust_root_signed_json(root);
    if (!obj)
        return ps_error_set(PKGSTORE_ENOMEM, "root: out of memory building JSON");
    error = ps_trust_document(out, len_out, obj, &root->sigs, "root");
    json_decref(obj);
    return error;
}

static int parse_key(ps_trust_root_key *out, json_t *item, size_t index)
{
    static const char *const keys[] = {"keyid", "name", "public", NULL};
    char prefix[48], field[64], derived[PKGSTORE_TRUST_KEYID_SIZE];
    const char *str;
    int error;
    snprintf(prefix, sizeof(prefix), "signed.keys[%zu]", index);
    if (!json_is_object(item))
        return ps_error_set(PKGSTORE_EINVALID, "%s: not an object", prefix);
    if ((error = ps_trust_only_keys(item, prefix, keys)) < 0)
        return error;
    snprintf(field, sizeof(field), "%s.public", prefix);
    if ((error = ps_trust_get_string(&str, item, "public", field, PS_TRUST_B64_FIELD_MAX)) < 0 ||
        (error = ps_trust_b64_decode(out->public_raw, PS_TRUST_PUBLIC_SIZE, field, str)) < 0)
        return error;
    snprintf(field, sizeof(field), "%s.keyid", prefix);
    if ((error = ps_trust_get_string(&str, item, "keyid", field, PS_TRUST_B64_FIELD_MAX)) < 0)
        return error;
    if ((error = ps_trust_keyid(derived, out->public_raw)) < 0)
        return error;
    if (strcmp(str, derived) != 0)
        return ps_error_set(PKGSTORE_EINVALID, "%s: not the id of its public key", field);
    memcpy(out->keyid, derived, sizeof(out->keyid));
    if (json_object_get(item, "name")) {
        snprintf(field, sizeof(field), "%s.name", prefix);
        if ((error = ps_trust_get_string(&str, item, "name", field, PKGSTORE_TRUST_KEY_NAME_MAX)) <
            0)
            return error;
        if (!str[0])
            return ps_error_set(PKGSTORE_EINVALID, "%s: empty (leave it out)", field);
        strcpy(out->name, str);
    }
    if (!(out->pkey = ps_trust_public_pkey(out->public_raw))) {
        ps_error_prefix("%s", prefix);
        return PKGSTORE_EINVALID;
    }
    return 0;
}

static int get_positive(json_int_t *out, json_t *obj, const char *key, const char *field,
                        json_int_t max)
{
    json_t *value = json_object_get(obj, key);
    if (!value)
        return ps_error_set(PKGSTORE_EINVALID, "%s: missing", field);
    if (!json_is_integer(value) || json_integer_value(value) < 1 || json_integer_value(value) > max)
        return ps_error_set(PKGSTORE_EINVALID, "%s: not an integer from 1 to %lld", field,
                            (long long)max);
    *out = json_integer_value(value);
    return 0;
}

int pkgstore_trust_root_parse(pkgstore_trust_root **out, const void *data, size_t len)
{
    static const char *const keys[] = {"created", "keys", "schemaVersion", "threshold", "type",
                                       "version", NULL};
    pkgstore_trust_root *root = NULL;
    json_t *body = NULL;
    json_int_t number;
    const char *str;
    int error;

    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "root: no output pointer");
    *out = NULL;
    if (!(root = calloc(1, sizeof(*root))))
        return ps_error_set(PKGSTORE_ENOMEM, "root: out of memory");
    if ((error = ps_trust_document_parse(&body, &root->sigs, "root", data, len)) < 0)
        goto out;
    if ((error = ps_trust_only_keys(body, "signed", keys)) < 0 ||
        (error = ps_trust_check_header(body, "root")) < 0)
        goto out;
    if ((error = get_positive(&number, body, "version", "signed.version", INT64_MAX)) < 0)
        goto out;
    root->version = (uint64_t)number;
    if ((error = ps_trust_get_string(&str, body, "created", "signed.created", 64)) < 0)
        goto out;
    if ((error = ps_time_parse(&root->created, str)) < 0) {
        ps_error_prefix("signed.created");
        goto out;
    }
    json_t *key_array = json_object_get(body, "keys");
    if (!key_array || !json_is_array(key_array)) {
        error = ps_error_set(PKGSTORE_EINVALID, "signed.keys: %s",
                             key_array ? "not an array" : "missing");
        goto out;
    }
    if (json_array_size(key_array) == 0) {
        error = ps_error_set(PKGSTORE_EINVALID, "signed.keys: empty");
        goto out;
    }
    if (json_array_size(key_array) > PKGSTORE_TRUST_ROOT_KEYS_MAX) {
        error = ps_error_set(PKGSTORE_ELIMIT, "signed.keys: more than %d",
                             PKGSTORE_TRUST_ROOT_KEYS_MAX);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(key_array); i++) {
        ps_trust_root_key *k = &root->keys[root->key_count];
        if ((error = parse_key(k, json_array_get(key_array, i), i)) < 0)
            goto out;
        root->key_count++;
        for (size_t j = 0; j + 1 < root->key_count; j++)
            if (strcmp(root->keys[j].keyid, k->keyid) == 0) {
                error = ps_error_set(PKGSTORE_EINVALID, "signed.keys[%zu]: key listed twice", i);
                goto out;
            }
    }
    if ((error = get_positive(&number, body, "threshold", "signed.threshold",
                              (json_int_t)root->key_count)) < 0) {
        ps_error_prefix("%zu key%s", root->key_count, root->key_count == 1 ? "" : "s");
        goto out;
    }
    root->threshold = (unsigned int)number;
    *out = root;
    root = NULL; /* now owned by the caller */
out:
    json_decref(body);
    pkgstore_trust_root_free(root);
    return error;
}

/* 0 when signer (its keys, its threshold) has signed root's content. */
static int signed_by(const pkgstore_trust_root *root, const pkgstore_trust_root *signer,
                     const char *whose)
{
    char *body = NULL, why[768] = "";
    size_t len = 0;
    int error;
    if ((error = signed_bytes(&body, &len, root)) < 0)
        return error;
    size_t valid =
        ps_trust_count(signer, &root->sigs, PKGSTORE_TRUST_TYPE_ROOT, body, len, why, sizeof(why));
    pkgstore_free(body);
    if (valid >= signer->threshold)
        return 0;
    return ps_error_set(PKGSTORE_EDENIED,
                        "root version %llu: %zu valid signature%s by %s keys, %u required%s%s%s",
                        (unsigned long long)root->version, valid, valid == 1 ? "" : "s", whose,
                        signer->threshold, why[0] ? " (" : "", why, why[0] ? ")" : "");
}

int pkgstore_trust_root_verify(const pkgstore_trust_root *root, const pkgstore_trust_root *trusted)
{
    int error;
    if (!root)
        return ps_error_set(PKGSTORE_EINVALID, "root: NULL");
    if ((error = check_complete(root)) < 0)
        return error;
    if (trusted) {
        if (root->version <= trusted->version)
            return ps_error_set(
                PKGSTORE_EDENIED, "root version %llu: not newer than the trusted version %llu",
                (unsigned long long)root->version, (unsigned long long)trusted->version);
        if ((error = signed_by(root, trusted, "the trusted root's")) < 0)
            return error;
    }
    return signed_by(root, root, "its own");
}

void pkgstore_trust_root_free(pkgstore_trust_root *root)
{
    if (!root)
        return;
    for (size_t i = 0; i < root->key_count; i++)
        EVP_PKEY_free(root->keys[i].pkey);
    free(root);
}

uint64_t pkgstore_trust_root_version(const pkgstore_trust_root *root)
{
    return root ? root->version : 0;
}

unsigned int pkgstore_trust_root_threshold(const pkgstore_trust_root *root)
{
    return root ? root->threshold : 0;
}

int64_t pkgstore_trust_root_created(const pkgstore_trust_root *root)
{
    return root ? root->created : 0;
}

size_t pkgstore_trust_root_key_count(const pkgstore_trust_root *root)
{
    return root ? root->key_count : 0;
}

int pkgstore_trust_root_key(const char **keyid, const char **name, const pkgstore_trust_root *root,
                            size_t i)
{
    if (keyid)
        *keyid = NULL;
    if (name)
        *name = NULL;
    if (!root || i >= root->key_count)
        return ps_error_set(PKGSTORE_ENOTFOUND, "root: no key %zu", i);
    if (keyid)
        *keyid = root->keys[i].keyid;
    if (name)
        *name = root->keys[i].name;
    return 0;
}

size_t pkgstore_trust_root_signature_count(const pkgstore_trust_root *root)
{
    return root ? root->sigs.count : 0;
}

const char *pkgstore_trust_root_signature_keyid(const pkgstore_trust_root *root, size_t i)
{
    return root && i < root->sigs.count ? root->sigs.items[i].keyid : NULL;
}

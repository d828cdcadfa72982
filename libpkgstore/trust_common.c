/*
 * trust_common.c - the primitives of the trust module (docs/trust.md):
 * DSSE's pre-authentication encoding, Ed25519 through EVP (NULL digest),
 * key ids, strict base64, canonical JSON and the signed-document shape
 * {"signatures":[...],"signed":{...}} that root.json and revocations
 * share, and the threshold count every verification ends in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "error.h"
#include "pkgstore/digest.h"
#include "trust.h"

int ps_trust_openssl_error(const char *what)
{
    char text[256] = "unknown OpenSSL error";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, text, sizeof(text));
    ERR_clear_error();
    return ps_error_set(PKGSTORE_EINTERNAL, "%s: %s", what, text);
}

int ps_trust_keyid(char out[PKGSTORE_TRUST_KEYID_SIZE], const unsigned char *public_raw)
{
    static const char hex[] = "0123456789abcdef";
    pkgstore_digest digest;
    int error;
    out[0] = '\0';
    if ((error = pkgstore_digest_buffer(&digest, public_raw, PS_TRUST_PUBLIC_SIZE)) < 0)
        return error;
    for (size_t i = 0; i < sizeof(digest.bytes); i++) {
        out[2 * i] = hex[digest.bytes[i] >> 4];
        out[2 * i + 1] = hex[digest.bytes[i] & 15];
    }
    out[64] = '\0';
    return 0;
}

int ps_trust_keyid_valid(const char *text)
{
    size_t i;
    for (i = 0; text[i]; i++)
        if (!((text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f')))
            return 0;
    return i == 64;
}

EVP_PKEY *ps_trust_public_pkey(const unsigned char *public_raw)
{
    EVP_PKEY *pkey =
        EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, public_raw, PS_TRUST_PUBLIC_SIZE);
    if (!pkey)
        ps_trust_openssl_error("public key");
    return pkey;
}

/* "DSSEv1 <len(type)> <type> <len(body)> <body>" */
static unsigned char *pae(size_t *len_out, const char *type, const void *body, size_t len)
{
    char head[128];
    size_t type_len = strlen(type);
    int n = snprintf(head, sizeof(head), "DSSEv1 %zu %s %zu ", type_len, type, len);
    if (n < 0 || (size_t)n >= sizeof(head))
        return NULL;
    unsigned char *buf = malloc((size_t)n + len + 1);
    if (!buf)
        return NULL;
    memcpy(buf, head, (size_t)n);
    if (len)
        memcpy(buf + n, body, len);
    *len_out = (size_t)n + len;
    return buf;
}

int ps_trust_sign(unsigned char sig[PS_TRUST_SIG_SIZE], const pkgstore_trust_key *key,
                  const char *type, const void *body, size_t len)
{
    size_t msg_len = 0, sig_len = PS_TRUST_SIG_SIZE;
    unsigned char *msg = NULL;
    EVP_MD_CTX *ctx = NULL;
    int error = 0;

    if (!key || !key->has_private)
        return ps_error_set(PKGSTORE_EINVALID, "sign: key %.16s... has no private half",
                            key ? key->keyid : "");
    if (!(msg = pae(&msg_len, type, body, len)))
        return ps_error_set(PKGSTORE_ENOMEM, "sign: out of memory");
    if (!(ctx = EVP_MD_CTX_new())) {
        error = ps_error_set(PKGSTORE_ENOMEM, "sign: out of memory");
        goto out;
    }
    if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, key->pkey) != 1 ||
        EVP_DigestSign(ctx, sig, &sig_len, msg, msg_len) != 1 || sig_len != PS_TRUST_SIG_SIZE) {
        error = ps_trust_openssl_error("sign: EVP_DigestSign");
        goto out;
    }
out:
    EVP_MD_CTX_free(ctx);
    free(msg);
    return error;
}

int ps_trust_verify(EVP_PKEY *pkey, const unsigned char sig[PS_TRUST_SIG_SIZE], const char *type,
                    const void *body, size_t len)
{
    size_t msg_len = 0;
    unsigned char *msg = pae(&msg_len, type, body, len);
    EVP_MD_CTX *ctx = msg ? EVP_MD_CTX_new() : NULL;
    int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
             EVP_DigestVerify(ctx, sig, PS_TRUST_SIG_SIZE, msg, msg_len) == 1;
    ERR_clear_error(); /* a failed verification queues an error we do not report */
    EVP_MD_CTX_free(ctx);
    free(msg);
    return ok;
}

void ps_trust_b64_encode(char *out, const unsigned char *data, size_t n)
{
    EVP_EncodeBlock((unsigned char *)out, data, (int)n);
}

int ps_trust_b64_decode(unsigned char *out, size_t n, const char *field, const char *text)
{
    /* EVP_DecodeBlock is lenient (whitespace, padding counted as zero
     * bytes): decode, then require that encoding the n bytes gives back
     * exactly the text, so only one spelling of a value is accepted. */
    size_t expected = 4 * ((n + 2) / 3);
    unsigned char buf[4 * 64];
    char again[4 * 64 + 1];
    if (n > 3 * 64 || strlen(text) != expected)
        return ps_error_set(PKGSTORE_EINVALID, "%s: not base64 of %zu bytes", field, n);
    if (EVP_DecodeBlock(buf, (const unsigned char *)text, (int)expected) < 0) {
        ERR_clear_error();
        return ps_error_set(PKGSTORE_EINVALID, "%s: not base64", field);
    }
    ps_trust_b64_encode(again, buf, n);
    if (strcmp(again, text) != 0)
        return ps_error_set(PKGSTORE_EINVALID, "%s: not canonical base64 of %zu bytes", field, n);
    memcpy(out, buf, n);
    return 0;
}

/* Deepest nesting, found by a scan that skips strings, so deep input is
 * refused before jansson recurses. The documents here nest 4 deep at most. */
#define DEPTH_MAX 6
static int too_deep(const char *data, size_t len)
{
    int depth = 0, in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > DEPTH_MAX)
                return 1;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 0;
}

int ps_trust_load(json_t **out, const char *what, const void *data, size_t len, size_t max)
{
    json_error_t jerr;
    *out = NULL;
    if (!data && len)
        return ps_error_set(PKGSTORE_EINVALID, "%s: NULL data", what);
    if (len > max)
        return ps_error_set(PKGSTORE_ELIMIT, "%s: %zu bytes, more than the %zu allowed", what, len,
                            max);
    if (too_deep(data, len))
        return ps_error_set(PKGSTORE_ELIMIT, "%s: JSON nested deeper than %d levels", what,
                            DEPTH_MAX);
    json_t *root = json_loadb(data ? data : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return ps_error_set(PKGSTORE_EINVALID, "%s: not valid JSON: line %d column %d: %s", what,
                            jerr.line, jerr.column, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return ps_error_set(PKGSTORE_EINVALID, "%s: not a JSON object", what);
    }
    *out = root;
    return 0;
}

int ps_trust_only_keys(json_t *object, const char *prefix, const char *const *keys)
{
    const char *key;
    json_t *value;
    json_object_foreach(object, key, value)
    {
        int known = 0;
        for (const char *const *k = keys; *k; k++)
            if (strcmp(*k, key) == 0)
                known = 1;
        if (!known) {
            size_t n = strlen(key);
            return ps_error_set(PKGSTORE_EINVALID, "%s%s%.*s%s: unknown field", prefix,
                                prefix[0] ? "." : "", (int)(n > 40 ? 40 : n), key,
                                n > 40 ? "..." : "");
        }
    }
    return 0;
}

int ps_trust_get_string(const char **out, json_t *object, const char *key, const char *field,
                        size_t max)
{
    json_t *value = json_object_get(object, key);
    *out = NULL;
    if (!value)
        return ps_error_set(PKGSTORE_EINVALID, "%s: missing", field);
    if (!json_is_string(value))
        return ps_error_set(PKGSTORE_EINVALID, "%s: not a string", field);
    if (json_string_length(value) > max)
        return ps_error_set(PKGSTORE_ELIMIT, "%s: longer than %zu bytes", field, max);
    *out = json_string_value(value);
    return 0;
}

int ps_trust_check_text(const char *field, const char *text, size_t max)
{
    size_t len = strlen(text);
    if (len > max)
        return ps_error_set(PKGSTORE_ELIMIT, "%s: longer than %zu bytes", field, max);
    /* jansson's own UTF-8 check, the one the parser applies */
    json_t *probe = json_stringn(text, len);
    if (!probe)
        return ps_error_set(PKGSTORE_EINVALID, "%s: not valid UTF-8", field);
    json_decref(probe);
    return 0;
}

int ps_trust_check_header(json_t *signed_obj, const char *type)
{
    json_t *schema = json_object_get(signed_obj, "schemaVersion");
    const char *str;
    int error;
    if (!schema)
        return ps_error_set(PKGSTORE_EINVALID, "signed.schemaVersion: missing");
    if (!json_is_integer(schema))
        return ps_error_set(PKGSTORE_EINVALID, "signed.schemaVersion: not an integer");
    if (json_integer_value(schema) != PKGSTORE_TRUST_SCHEMA_VERSION)
        return ps_error_set(PKGSTORE_EUNSUPPORTED,
                            "signed.schemaVersion: %lld is not supported (only %d)",
                            (long long)json_integer_value(schema), PKGSTORE_TRUST_SCHEMA_VERSION);
    if ((error = ps_trust_get_string(&str, signed_obj, "type", "signed.type", 32)) < 0)
        return error;
    if (strcmp(str, type) != 0)
        return ps_error_set(PKGSTORE_EINVALID, "signed.type: \"%s\", expected \"%s\"", str, type);
    return 0;
}

int ps_trust_sigs_parse(ps_trust_sigs *out, json_t *array)
{
    static const char *const keys[] = {"keyid", "signature", NULL};
    char prefix[48], field[64];
    const char *str;
    int error;
    out->count = 0;
    if (!array)
        return ps_error_set(PKGSTORE_EINVALID, "signatures: missing");
    if (!json_is_array(array))
        return ps_error_set(PKGSTORE_EINVALID, "signatures: not an array");
    if (json_array_size(array) > PKGSTORE_TRUST_SIGNATURES_MAX)
        return ps_error_set(PKGSTORE_ELIMIT, "signatures: more than %d",
                            PKGSTORE_TRUST_SIGNATURES_MAX);
    for (size_t i = 0; i < json_array_size(array); i++) {
        json_t *item = json_array_get(array, i);
        ps_trust_sig *sig = &out->items[out->count];
        snprintf(prefix, sizeof(prefix), "signatures[%zu]", i);
        if (!json_is_object(item))
            return ps_error_set(PKGSTORE_EINVALID, "%s: not an object", prefix);
        if ((error = ps_trust_only_keys(item, prefix, keys)) < 0)
            return error;
        snprintf(field, sizeof(field), "%s.keyid", prefix);
        if ((error = ps_trust_get_string(&str, item, "keyid", field, PS_TRUST_B64_FIELD_MAX)) < 0)
            return error;
        if (!ps_trust_keyid_valid(str))
            return ps_error_set(PKGSTORE_EINVALID, "%s: not 64 lower-case hex characters", field);
        memcpy(sig->keyid, str, PKGSTORE_TRUST_KEYID_SIZE);
        snprintf(field, sizeof(field), "%s.signature", prefix);
        if ((error = ps_trust_get_string(&str, item, "signature", field, PS_TRUST_B64_FIELD_MAX)) <
                0 ||
            (error = ps_trust_b64_decode(sig->sig, PS_TRUST_SIG_SIZE, field, str)) < 0)
            return error;
        out->count++;
    }
    return 0;
}

json_t *ps_trust_sigs_json(const ps_trust_sigs *sigs)
{
    json_t *array = json_array();
    char b64[PS_TRUST_SIG_B64_LEN + 1];
    for (size_t i = 0; array && i < sigs->count; i++) {
        ps_trust_b64_encode(b64, sigs->items[i].sig, PS_TRUST_SIG_SIZE);
        json_t *item = json_pack("{s:s, s:s}", "keyid", sigs->items[i].keyid, "signature", b64);
        if (!item || json_array_append_new(array, item) < 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

int ps_trust_sigs_add(ps_trust_sigs *sigs, const pkgstore_trust_key *key, const char *type,
                      const void *body, size_t len)
{
    ps_trust_sig sig;
    size_t slot = sigs->count;
    int error;
    for (size_t i = 0; i < sigs->count; i++)
        if (strcmp(sigs->items[i].keyid, key->keyid) == 0)
            slot = i;
    if (slot == PKGSTORE_TRUST_SIGNATURES_MAX)
        return ps_error_set(PKGSTORE_ELIMIT, "signatures: more than %d",
                            PKGSTORE_TRUST_SIGNATURES_MAX);
    if ((error = ps_trust_sign(sig.sig, key, type, body, len)) < 0)
        return error;
    memcpy(sig.keyid, key->keyid, sizeof(sig.keyid));
    sigs->items[slot] = sig;
    if (slot == sigs->count)
        sigs->count++;
    return 0;
}

int ps_trust_document(char **out, size_t *len_out, json_t *signed_obj, const ps_trust_sigs *sigs,
                      const char *what)
{
    json_t *sig_array = ps_trust_sigs_json(sigs);
    json_t *doc =
        sig_array ? json_pack("{s:o, s:O}", "signatures", sig_array, "signed", signed_obj) : NULL;
    if (!doc)
        return ps_error_set(PKGSTORE_ENOMEM, "%s: out of memory building JSON", what);
    int error = ps_json_dump(out, len_out, doc, PS_JSON_CANONICAL, what);
    json_decref(doc);
    return error;
}

int ps_trust_document_parse(json_t **signed_obj, ps_trust_sigs *sigs, const char *what,
                            const void *data, size_t len)
{
    static const char *const keys[] = {"signatures", "signed", NULL};
    json_t *doc = NULL;
    int error;
    *signed_obj = NULL;
    if ((error = ps_trust_load(&doc, what, data, len, PKGSTORE_TRUST_DOCUMENT_SIZE_MAX)) < 0)
        return error;
    if ((error = ps_trust_only_keys(doc, "", keys)) < 0 ||
        (error = ps_trust_sigs_parse(sigs, json_object_get(doc, "signatures"))) < 0)
        goto out;
    json_t *body = json_object_get(doc, "signed");
    if (!body) {
        error = ps_error_set(PKGSTORE_EINVALID, "signed: missing");
        goto out;
    }
    if (!json_is_object(body)) {
        error = ps_error_set(PKGSTORE_EINVALID, "signed: not an object");
        goto out;
    }
    *signed_obj = json_incref(body);
out:
    json_decref(doc);
    return error;
}

void ps_trust_why(char *why, size_t size, const char *keyid, const char *reason)
{
    size_t used = strlen(why);
    if (used + 1 < size)
        snprintf(why + used, size - used, "%skey %.12s: %s", used ? "; " : "", keyid, reason);
}

size_t ps_trust_count(const pkgstore_trust_root *root, const ps_trust_sigs *sigs, const char *type,
                      const void *body, size_t len, char *why, size_t why_size)
{
    unsigned char counted[PKGSTORE_TRUST_ROOT_KEYS_MAX] = {0};
    size_t valid = 0;
    for (size_t i = 0; i < sigs->count; i++) {
        const ps_trust_sig *sig = &sigs->items[i];
        size_t k;
        for (k = 0; k < root->key_count; k++)
            if (strcmp(root->keys[k].keyid, sig->keyid) == 0)
                break;
        if (k == root->key_count) {
            ps_trust_why(why, why_size, sig->keyid, "unknown key");
        } else if (counted[k]) {
            ps_trust_why(why, why_size, sig->keyid, "counted once");
        } else if (!ps_trust_verify(root->keys[k].pkey, sig->sig, type, body, len)) {
            ps_trust_why(why, why_size, sig->keyid, "signature does not verify");
        } else {
            counted[k] = 1;
            valid++;
        }
    }
    return valid;
}

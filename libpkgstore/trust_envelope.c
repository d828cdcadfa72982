/*
 * trust_envelope.c - detached manifest signatures (docs/trust.md): sign a
 * manifest's canonical bytes into an envelope, parse envelopes strictly,
 * count a threshold of them against a root, and the mix-and-match check
 * of a verified manifest against an offer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "pkgstore/digest.h"
#include "pkgstore/manifest.h"
#include "pkgstore/version.h"
#include "trust.h"

struct pkgstore_trust_envelope {
    char keyid[PKGSTORE_TRUST_KEYID_SIZE];
    char payload_type[64];
    pkgstore_digest payload_digest;
    unsigned char sig[PS_TRUST_SIG_SIZE];
};

static int envelope_serialize(char **out, size_t *len_out, const pkgstore_trust_envelope *env)
{
    char b64[PS_TRUST_SIG_B64_LEN + 1], digest[PKGSTORE_DIGEST_STR_SIZE];
    ps_trust_b64_encode(b64, env->sig, PS_TRUST_SIG_SIZE);
    pkgstore_digest_format(digest, &env->payload_digest);
    json_t *obj = json_pack("{s:s, s:s, s:s, s:i, s:s}", "keyid", env->keyid, "payloadDigest",
                            digest, "payloadType", env->payload_type, "schemaVersion",
                            PKGSTORE_TRUST_SCHEMA_VERSION, "signature", b64);
    if (!obj)
        return ps_error_set(PKGSTORE_ENOMEM, "envelope: out of memory building JSON");
    int error = ps_json_dump(out, len_out, obj, PS_JSON_CANONICAL, "envelope");
    json_decref(obj);
    return error;
}

int pkgstore_trust_manifest_sign(char **out, size_t *len_out, const pkgstore_trust_key *key,
                                 const pkgstore_manifest *m)
{
    pkgstore_trust_envelope env;
    char *canonical = NULL;
    size_t len = 0;
    int error;
    if (out)
        *out = NULL;
    if (len_out)
        *len_out = 0;
    if (!out || !key || !m)
        return ps_error_set(PKGSTORE_EINVALID, "sign: NULL argument");
    if ((error = pkgstore_manifest_serialize(&canonical, &len, m, 0)) < 0)
        return error;
    memset(&env, 0, sizeof(env));
    memcpy(env.keyid, key->keyid, sizeof(env.keyid));
    strcpy(env.payload_type, PKGSTORE_TRUST_TYPE_MANIFEST);
    if ((error = pkgstore_digest_buffer(&env.payload_digest, canonical, len)) < 0 ||
        (error = ps_trust_sign(env.sig, key, PKGSTORE_TRUST_TYPE_MANIFEST, canonical, len)) < 0)
        goto out;
    error = envelope_serialize(out, len_out, &env);
out:
    pkgstore_free(canonical);
    return error;
}

int pkgstore_trust_envelope_parse(pkgstore_trust_envelope **out, const void *data, size_t len)
{
    static const char *const keys[] = {"keyid",         "payloadDigest", "payloadType",
                                       "schemaVersion", "signature",     NULL};
    pkgstore_trust_envelope *env = NULL;
    json_t *obj = NULL;
    const char *str;
    int error;

    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "envelope: no output pointer");
    *out = NULL;
    if ((error = ps_trust_load(&obj, "envelope", data, len, PKGSTORE_TRUST_ENVELOPE_SIZE_MAX)) < 0)
        return error;
    if ((error = ps_trust_only_keys(obj, "", keys)) < 0)
        goto out;
    json_t *schema = json_object_get(obj, "schemaVersion");
    if (!schema || !json_is_integer(schema)) {
        error = ps_error_set(PKGSTORE_EINVALID, "schemaVersion: %s",
                             schema ? "not an integer" : "missing");
        goto out;
    }
    if (json_integer_value(schema) != PKGSTORE_TRUST_SCHEMA_VERSION) {
        error =
            ps_error_set(PKGSTORE_EUNSUPPORTED, "schemaVersion: %lld is not supported (only %d)",
                         (long long)json_integer_value(schema), PKGSTORE_TRUST_SCHEMA_VERSION);
        goto out;
    }
    if (!(env = calloc(1, sizeof(*env)))) {
        error = ps_error_set(PKGSTORE_ENOMEM, "envelope: out of memory");
        goto out;
    }
    if ((error = ps_trust_get_string(&str, obj, "keyid", "keyid", PS_TRUST_B64_FIELD_MAX)) < 0)
        goto out;
    if (!ps_trust_keyid_valid(str)) {
        error = ps_error_set(PKGSTORE_EINVALID, "keyid: not 64 lower-case hex characters");
        goto out;
    }
    strcpy(env->keyid, str);
    if ((error = ps_trust_get_string(&str, obj, "payloadType", "payloadType",
                                     sizeof(env->payload_type) - 1)) < 0)
        goto out;
    if (strcmp(str, PKGSTORE_TRUST_TYPE_MANIFEST) != 0 && strcmp(str, PKGSTORE_TRUST_TYPE_ROOT) &&
        strcmp(str, PKGSTORE_TRUST_TYPE_REVOCATION) != 0) {
        error = ps_error_set(PKGSTORE_EINVALID, "payloadType: not a pkgstore payload type");
        goto out;
    }
    strcpy(env->payload_type, str);
    if ((error = ps_trust_get_string(&str, obj, "payloadDigest", "payloadDigest",
                                     PKGSTORE_DIGEST_STR_SIZE)) < 0)
        goto out;
    if (pkgstore_digest_parse(&env->payload_digest, str) < 0) {
        error = ps_error_set(PKGSTORE_EINVALID, "payloadDigest: not a sha256 digest");
        goto out;
    }
    if ((error = ps_trust_get_string(&str, obj, "signature", "signature", PS_TRUST_B64_FIELD_MAX)) <
            0 ||
        (error = ps_trust_b64_decode(env->sig, PS_TRUST_SIG_SIZE, "signature", str)) < 0)
        goto out;
    *out = env;
    env = NULL; /* now owned by the caller */
out:
    free(env);
    json_decref(obj);
    return error;
}

int pkgstore_trust_envelope_serialize(char **out, size_t *len_out,
                                      const pkgstore_trust_envelope *env)
{
    if (out)
        *out = NULL;
    if (len_out)
        *len_out = 0;
    if (!out || !env)
        return ps_error_set(PKGSTORE_EINVALID, "envelope: NULL argument");
    return envelope_serialize(out, len_out, env);
}

void pkgstore_trust_envelope_free(pkgstore_trust_envelope *env)
{
    free(env);
}

const char *pkgstore_trust_envelope_keyid(const pkgstore_trust_envelope *env)
{
    return env ? env->keyid : "";
}

const char *pkgstore_trust_envelope_payload_type(const pkgstore_trust_envelope *env)
{
    return env ? env->payload_type : "";
}

const pkgstore_digest *pkgstore_trust_envelope_payload_digest(const pkgstore_trust_envelope *env)
{
    return env ? &env->payload_digest : NULL;
}

int pkgstore_trust_manifest_verify(pkgstore_manifest **manifest_out, size_t *valid_out,
                                   const pkgstore_trust_root *root, const void *manifest_data,
                                   size_t manifest_len, pkgstore_trust_envelope *const *envelopes,
                                   size_t count)
{
    pkgstore_manifest *m = NULL;
    pkgstore_digest digest;
    ps_trust_sigs *sigs = NULL;
    char *canonical = NULL, why[768] = "";
    size_t canonical_len = 0, valid = 0;
    int error;

    if (manifest_out)
        *manifest_out = NULL;
    if (valid_out)
        *valid_out = 0;
    if (!root || (!envelopes && count))
        return ps_error_set(PKGSTORE_EINVALID, "verify: NULL root or envelopes");
    if ((error = pkgstore_manifest_parse(&m, manifest_data, manifest_len)) < 0)
        return error;
    /* Only canonical bytes are ever signed: anything else would let two
     * texts share one signature's meaning. */
    if ((error = pkgstore_manifest_serialize(&canonical, &canonical_len, m, 0)) < 0)
        goto out;
    if (canonical_len != manifest_len || memcmp(canonical, manifest_data, manifest_len) != 0) {
        error = ps_error_set(PKGSTORE_EINVALID, "%s %s: manifest is not in canonical form",
                             pkgstore_manifest_name(m), pkgstore_manifest_version(m));
        goto out;
    }
    if ((error = pkgstore_digest_buffer(&digest, canonical, canonical_len)) < 0)
        goto out;
    if (!(sigs = calloc(1, sizeof(*sigs)))) {
        error = ps_error_set(PKGSTORE_ENOMEM, "verify: out of memory");
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        const pkgstore_trust_envelope *env = envelopes[i];
        if (!env)
            continue;
        if (strcmp(env->payload_type, PKGSTORE_TRUST_TYPE_MANIFEST) != 0)
            ps_trust_why(why, sizeof(why), env->keyid, "not a manifest signature");
        else if (!pkgstore_digest_equal(&env->payload_digest, &digest))
            ps_trust_why(why, sizeof(why), env->keyid, "signs another manifest");
        else if (sigs->count == PKGSTORE_TRUST_SIGNATURES_MAX)
            ps_trust_why(why, sizeof(why), env->keyid, "too many signatures");
        else {
            ps_trust_sig *sig = &sigs->items[sigs->count++];
            memcpy(sig->keyid, env->keyid, sizeof(sig->keyid));
            memcpy(sig->sig, env->sig, sizeof(sig->sig));
        }
    }
    valid = ps_trust_count(root, sigs, PKGSTORE_TRUST_TYPE_MANIFEST, canonical, canonical_len, why,
                           sizeof(why));
    if (valid_out)
        *valid_out = valid;
    if (valid < root->threshold) {
        error = ps_error_set(PKGSTORE_EDENIED, "%s %s: %zu valid signature%s, %u required%s%s%s",
                             pkgstore_manifest_name(m), pkgstore_manifest_version(m), valid,
                             valid == 1 ? "" : "s", root->threshold, why[0] ? " (" : "", why,
                             why[0] ? ")" : "");
        goto out;
    }
    if (manifest_out) {
        *manifest_out = m;
        m = NULL; /* now owned by the caller */
    }
out:
    free(sigs);
    pkgstore_free(canonical);
    pkgstore_manifest_free(m);
    return error;
}

int pkgstore_trust_manifest_match(const pkgstore_manifest *m, const char *name, const char *version,
                                  pkgstore_package_type type, const char *platform)
{
    pkgstore_semver offered, signed_version;
    char offered_text[PKGSTORE_SEMVER_STR_SIZE];
    if (!m || !name || !version)
        return ps_error_set(PKGSTORE_EINVALID, "match: NULL manifest, name or version");
    const char *signed_name = pkgstore_manifest_name(m);
    const char *signed_text = pkgstore_manifest_version(m);
    if (strcmp(signed_name, name) != 0)
        return ps_error_set(PKGSTORE_EDENIED, "offered %s, but the signed manifest is of %s", name,
                            signed_name);
    if (pkgstore_version_parse(&offered, version) < 0 ||
        pkgstore_version_parse(&signed_version, signed_text) < 0)
        return ps_error_set(PKGSTORE_EDENIED, "%s: offered version \"%s\" is not SemVer", name,
                            version);
    /* The exact version, build metadata included: precedence ignores it,
     * but two builds are two packages. */
    pkgstore_version_format(offered_text, &offered);
    if (strcmp(offered_text, signed_text) != 0)
        return ps_error_set(PKGSTORE_EDENIED, "%s: offered %s, but the signed manifest is %s", name,
                            version, signed_text);
    if (pkgstore_manifest_type(m) != type)
        return ps_error_set(PKGSTORE_EDENIED, "%s %s: offered as %s, but signed as %s", name,
                            signed_text, pkgstore_package_type_name(type),
                            pkgstore_package_type_name(pkgstore_manifest_type(m)));
    if (platform) {
        for (size_t i = 0; i < pkgstore_manifest_artifact_count(m); i++)
            if (strcmp(pkgstore_manifest_artifact(m, i)->platform, platform) == 0)
                return 0;
        return ps_error_set(PKGSTORE_EDENIED,
                            "%s %s: offered for %s, a platform the signed manifest does not list",
                            name, signed_text, platform);
    }
    return 0;
}

/*
 * trust_revocation.c - signed revocation statements, "version VERSION of
 * package NAME is revoked" (docs/trust.md): build, sign, parse strictly,
 * and verify against a root's threshold.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "manifest.h"
#include "name.h"
#include "pkgstore/manifest.h"
#include "time_text.h"
#include "trust.h"

struct pkgstore_trust_revocation {
    char name[PKGSTORE_NAME_MAX + 1];
    char version[PKGSTORE_VERSION_MAX + 1];
    char reason[PKGSTORE_TRUST_REASON_MAX + 1];
    int64_t created;
    ps_trust_sigs sigs;
};

int pkgstore_trust_revocation_new(pkgstore_trust_revocation **out, const char *name,
                                  const char *version, const char *reason)
{
    pkgstore_trust_revocation *rev = NULL;
    int error;
    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "revocation: no output pointer");
    *out = NULL;
    if (!name || !version)
        return ps_error_set(PKGSTORE_EINVALID, "revocation: NULL name or version");
    if (!(rev = calloc(1, sizeof(*rev))))
        return ps_error_set(PKGSTORE_ENOMEM, "revocation: out of memory");
    if ((error = pkgstore_manifest_name_validate(name)) < 0 ||
        (error = ps_manifest_normalize_version(rev->version, "version", version)) < 0 ||
        (reason &&
         (error = ps_trust_check_text("reason", reason, PKGSTORE_TRUST_REASON_MAX)) < 0)) {
        free(rev);
        return error;
    }
    strcpy(rev->name, name);
    snprintf(rev->reason, sizeof(rev->reason), "%s", reason ? reason : "");
    rev->created = (int64_t)time(NULL);
    *out = rev;
    return 0;
}

int pkgstore_trust_revocation_set_created(pkgstore_trust_revocation *rev, int64_t seconds)
{
    if (!rev || seconds < PS_TIME_MIN || seconds > PS_TIME_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "revocation: created outside the years 0000-9999");
    rev->created = seconds;
    rev->sigs.count = 0;
    return 0;
}

static json_t *signed_json(const pkgstore_trust_revocation *rev)
{
    char created[PS_TIME_SIZE];
    if (ps_time_format(created, rev->created) < 0)
        return NULL;
    json_t *obj = json_pack("{s:s, s:s, s:i, s:s, s:s}", "created", created, "name", rev->name,
                            "schemaVersion", PKGSTORE_TRUST_SCHEMA_VERSION, "type", "revocation",
                            "version", rev->version);
    if (obj && rev->reason[0] && json_object_set_new(obj, "reason", json_string(rev->reason)) < 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static int signed_bytes(char **out, size_t *len_out, const pkgstore_trust_revocation *rev)
{
    json_t *obj = signed_json(rev);
    if (!obj)
        return ps_error_set(PKGSTORE_ENOMEM, "revocation: out of memory building JSON");
    int error = ps_json_dump(out, len_out, obj, PS_JSON_CANONICAL, "revocation");
    json_decref(obj);
    return error;
}

int pkgstore_trust_revocation_sign(pkgstore_trust_revocation *rev, const pkgstore_trust_key *key)
{
    char *body = NULL;
    size_t len = 0;
    int error;
    if (!rev || !key)
        return ps_error_set(PKGSTORE_EINVALID, "revocation: NULL revocation or key");
    if ((error = signed_bytes(&body, &len, rev)) < 0)
        return error;
    error = ps_trust_sigs_add(&rev->sigs, key, PKGSTORE_TRUST_TYPE_REVOCATION, body, len);
    pkgstore_free(body);
    return error;
}

int pkgstore_trust_revocation_serialize(char **out, size_t *len_out,
                                        const pkgstore_trust_revocation *rev)
{
    if (out)
        *out = NULL;
    if (len_out)
        *len_out = 0;
    if (!out || !rev)
        return ps_error_set(PKGSTORE_EINVALID, "revocation: NULL argument");
    json_t *obj = signed_json(rev);
    if (!obj)
        return ps_error_set(PKGSTORE_ENOMEM, "revocation: out of memory building JSON");
    int error = ps_trust_document(out, len_out, obj, &rev->sigs, "revocation");
    json_decref(obj);
    return error;
}

int pkgstore_trust_revocation_parse(pkgstore_trust_revocation **out, const void *data, size_t len)
{
    static const char *const keys[] = {"created", "name",    "reason", "schemaVersion",
                                       "type",    "version", NULL};
    pkgstore_trust_revocation *rev = NULL;
    json_t *body = NULL;
    const char *str;
    int error;

    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "revocation: no output pointer");
    *out = NULL;
    if (!(rev = calloc(1, sizeof(*rev))))
        return ps_error_set(PKGSTORE_ENOMEM, "revocation: out of memory");
    if ((error = ps_trust_document_parse(&body, &rev->sigs, "revocation", data, len)) < 0)
        goto out;
    if ((error = ps_trust_only_keys(body, "signed", keys)) < 0 ||
        (error = ps_trust_check_header(body, "revocation")) < 0)
        goto out;
    if ((error = ps_trust_get_string(&str, body, "name", "signed.name", PKGSTORE_NAME_MAX)) < 0 ||
        (error = ps_name_check("signed.name", str, PKGSTORE_NAME_MAX)) < 0)
        goto out;
    strcpy(rev->name, str);
    if ((error = ps_trust_get_string(&str, body, "version", "signed.version",
                                     PKGSTORE_VERSION_MAX)) < 0 ||
        (error = ps_manifest_normalize_version(rev->version, "signed.version", str)) < 0)
        goto out;
    /* Only the normalized spelling: a "v" prefix would sign other bytes
     * than the ones this revocation serializes to. */
    if (strcmp(rev->version, str) != 0) {
        error = ps_error_set(PKGSTORE_EINVALID, "signed.version: not normalized (\"%s\")",
                             rev->version);
        goto out;
    }
    if ((error = ps_trust_get_string(&str, body, "created", "signed.created", 64)) < 0)
        goto out;
    if ((error = ps_time_parse(&rev->created, str)) < 0) {
        ps_error_prefix("signed.created");
        goto out;
    }
    if (json_object_get(body, "reason")) {
        if ((error = ps_trust_get_string(&str, body, "reason", "signed.reason",
                                         PKGSTORE_TRUST_REASON_MAX)) < 0)
            goto out;
        if (!str[0]) {
            error = ps_error_set(PKGSTORE_EINVALID, "signed.reason: empty (leave it out)");
            goto out;
        }
        strcpy(rev->reason, str);
    }
    *out = rev;
    rev = NULL; /* now owned by the caller */
out:
    json_decref(body);
    free(rev);
    return error;
}

int pkgstore_trust_revocation_verify(const pkgstore_trust_revocation *rev,
                                     const pkgstore_trust_root *root)
{
    char *body = NULL, why[768] = "";
    size_t len = 0;
    int error;
    if (!rev || !root)
        return ps_error_set(PKGSTORE_EINVALID, "revocation: NULL revocation or root");
    if ((error = signed_bytes(&body, &len, rev)) < 0)
        return error;
    size_t valid = ps_trust_count(root, &rev->sigs, PKGSTORE_TRUST_TYPE_REVOCATION, body, len, why,
                                  sizeof(why));
    pkgstore_free(body);
    if (valid >= root->threshold)
        return 0;
    return ps_error_set(PKGSTORE_EDENIED,
                        "revocation of %s %s: %zu valid signature%s, %u required%s%s%s", rev->name,
                        rev->version, valid, valid == 1 ? "" : "s", root->threshold,
                        why[0] ? " (" : "", why, why[0] ? ")" : "");
}

void pkgstore_trust_revocation_free(pkgstore_trust_revocation *rev)
{
    free(rev);
}

const char *pkgstore_trust_revocation_name(const pkgstore_trust_revocation *rev)
{
    return rev ? rev->name : "";
}

const char *pkgstore_trust_revocation_version(const pkgstore_trust_revocation *rev)
{
    return rev ? rev->version : "";
}

const char *pkgstore_trust_revocation_reason(const pkgstore_trust_revocation *rev)
{
    return rev ? rev->reason : "";
}

int64_t pkgstore_trust_revocation_created(const pkgstore_trust_revocation *rev)
{
    return rev ? rev->created : 0;
}

size_t pkgstore_trust_revocation_signature_count(const pkgstore_trust_revocation *rev)
{
    return rev ? rev->sigs.count : 0;
}

const char *pkgstore_trust_revocation_signature_keyid(const pkgstore_trust_revocation *rev,
                                                      size_t i)
{
    return rev && i < rev->sigs.count ? rev->sigs.items[i].keyid : NULL;
}

/*
 * The helper's trust commands (docs/trust.md, "The agent"): the resident
 * agent maps no OpenSSL, so every signature check of a root or an offer
 * runs here, through libpkgstore's trust API only. Each command reads its
 * files, checks, and fills the reply; a failure returns a PKGSTORE_E*
 * code with the reason in the detail buffer.
 *
 *   root-check FILE          a pinned root: self-signed to threshold
 *   root-rotate NEW CURRENT  NEW may replace CURRENT (the rotation rule)
 *   verify-offer ROOT MANIFEST MANIFEST_DIGEST NAME VERSION TYPE PLATFORM
 *                            (stdin: the offer's "signatures" JSON array)
 */
#include "helper.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static int detail_set(char *detail, size_t len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int detail_set(char *detail, size_t len, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, len, fmt, ap);
    va_end(ap);
    return code;
}

/* The whole file, at most max bytes, into *out (free()). */
static int read_whole(char **out, size_t *len_out, const char *path, size_t max, char *detail,
                      size_t dlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return detail_set(detail, dlen, errno == ENOENT ? PKGSTORE_ENOTFOUND : PKGSTORE_EIO,
                          "%s: cannot read: %s", path, strerror(errno));
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int err = ferror(f);
    fclose(f);
    if (!buf)
        return detail_set(detail, dlen, PKGSTORE_ENOMEM, "out of memory");
    if (err) {
        free(buf);
        return detail_set(detail, dlen, PKGSTORE_EIO, "%s: read error", path);
    }
    if (n > max) {
        free(buf);
        return detail_set(detail, dlen, PKGSTORE_ELIMIT, "%s: larger than %zu bytes", path, max);
    }
    buf[n] = '\0';
    *out = buf;
    *len_out = n;
    return 0;
}

static int load_root(pkgstore_trust_root **out, const char *path, char *detail, size_t dlen)
{
    char *data = NULL;
    size_t len = 0;
    int rc = read_whole(&data, &len, path, PKGSTORE_TRUST_DOCUMENT_SIZE_MAX, detail, dlen);
    if (rc < 0)
        return rc;
    rc = pkgstore_trust_root_parse(out, data, len);
    free(data);
    if (rc < 0)
        return detail_set(detail, dlen, rc, "%s: %s", path, pkgstore_error_detail());
    return 0;
}

static void root_reply(json_t *reply, const pkgstore_trust_root *root)
{
    json_object_set_new(reply, "version", json_integer((json_int_t)pkgstore_trust_root_version(root)));
    json_object_set_new(reply, "threshold", json_integer(pkgstore_trust_root_threshold(root)));
    json_object_set_new(reply, "keys", json_integer((json_int_t)pkgstore_trust_root_key_count(root)));
    json_object_set_new(reply, "created", json_integer((json_int_t)pkgstore_trust_root_created(root)));
}

int helper_root_check(json_t *reply, const char *path, char *detail, size_t dlen)
{
    pkgstore_trust_root *root = NULL;
    int rc = load_root(&root, path, detail, dlen);
    if (rc < 0)
        return rc;
    if ((rc = pkgstore_trust_root_verify(root, NULL)) < 0)
        detail_set(detail, dlen, rc, "%s: %s", path, pkgstore_error_detail());
    else
        root_reply(reply, root);
    pkgstore_trust_root_free(root);
    return rc;
}

int helper_root_rotate(json_t *reply, const char *new_path, const char *current_path,
                       char *detail, size_t dlen)
{
    pkgstore_trust_root *next = NULL, *current = NULL;
    int rc = load_root(&current, current_path, detail, dlen);
    if (rc == 0)
        rc = load_root(&next, new_path, detail, dlen);
    if (rc == 0 && (rc = pkgstore_trust_root_verify(next, current)) < 0)
        detail_set(detail, dlen, rc, "root version %llu: %s",
                   (unsigned long long)pkgstore_trust_root_version(next), pkgstore_error_detail());
    if (rc == 0)
        root_reply(reply, next);
    pkgstore_trust_root_free(next);
    pkgstore_trust_root_free(current);
    return rc;
}

/* The offer's "signatures" (a JSON array of envelope objects) into
 * envelopes. An item that is not a well-formed envelope is dropped with
 * its reason appended to notes: it does not count, like an envelope by
 * an unknown key, and the threshold decides. */
static int parse_envelopes(pkgstore_trust_envelope ***out, size_t *count_out, const char *text,
                           size_t len, char *notes, size_t nlen, char *detail, size_t dlen)
{
    json_error_t jerr;
    *out = NULL;
    *count_out = 0;
    json_t *array = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_array(array)) {
        json_decref(array);
        return detail_set(detail, dlen, PKGSTORE_EFORMAT, "signatures: not a JSON array%s%s",
                          array ? "" : ": ", array ? "" : jerr.text);
    }
    size_t n = json_array_size(array);
    if (n > PKGSTORE_TRUST_SIGNATURES_MAX) {
        json_decref(array);
        return detail_set(detail, dlen, PKGSTORE_ELIMIT, "signatures: %zu, at most %d", n,
                          PKGSTORE_TRUST_SIGNATURES_MAX);
    }
    pkgstore_trust_envelope **envelopes = calloc(n + 1, sizeof *envelopes);
    if (!envelopes) {
        json_decref(array);
        return detail_set(detail, dlen, PKGSTORE_ENOMEM, "out of memory");
    }
    size_t count = 0, used = strlen(notes);
    for (size_t i = 0; i < n; i++) {
        char *item = json_dumps(json_array_get(array, i), JSON_COMPACT | JSON_ENCODE_ANY);
        int rc = item ? pkgstore_trust_envelope_parse(&envelopes[count], item, strlen(item))
                      : PKGSTORE_ENOMEM;
        free(item);
        if (rc == 0) {
            count++;
            continue;
        }
        if (used + 8 < nlen)
            used += (size_t)snprintf(notes + used, nlen - used, "%ssignatures[%zu]: %s",
                                     used ? "; " : "", i, pkgstore_error_detail());
        if (used >= nlen)
            used = nlen - 1;
    }
    json_decref(array);
    *out = envelopes;
    *count_out = count;
    return 0;
}

int helper_verify_offer(json_t *reply, char **args, const char *signatures, size_t sig_len,
                        char *detail, size_t dlen)
{
    const char *root_path = args[0], *manifest_path = args[1], *manifest_digest = args[2];
    const char *name = args[3], *version = args[4], *type_text = args[5], *platform = args[6];
    pkgstore_trust_root *root = NULL;
    pkgstore_trust_envelope **envelopes = NULL;
    size_t count = 0, valid = 0;
    pkgstore_manifest *m = NULL;
    char *data = NULL, notes[1024] = "";
    size_t len = 0;
    pkgstore_package_type type;
    pkgstore_digest expected, actual;
    int rc;

    if (pkgstore_package_type_parse(&type, type_text) < 0)
        return detail_set(detail, dlen, PKGSTORE_EINVALID, "verify-offer: TYPE: primary or addon");
    if (pkgstore_digest_parse(&expected, manifest_digest) < 0)
        return detail_set(detail, dlen, PKGSTORE_EINVALID,
                          "verify-offer: MANIFEST_DIGEST: not a sha256 digest");
    if ((rc = load_root(&root, root_path, detail, dlen)) < 0)
        goto out;
    if ((rc = read_whole(&data, &len, manifest_path, PKGSTORE_MANIFEST_SIZE_MAX, detail, dlen)) < 0)
        goto out;
    /* the bytes checked are the bytes verified: no second read */
    if ((rc = pkgstore_digest_buffer(&actual, data, len)) < 0) {
        detail_set(detail, dlen, rc, "manifest: %s", pkgstore_error_detail());
        goto out;
    }
    if (!pkgstore_digest_equal(&expected, &actual)) {
        char got[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(got, &actual);
        rc = detail_set(detail, dlen, PKGSTORE_EDIGEST_MISMATCH,
                        "manifest: the server's blob is %s, the offer names %s", got,
                        manifest_digest);
        goto out;
    }
    if ((rc = parse_envelopes(&envelopes, &count, signatures, sig_len, notes, sizeof notes, detail,
                              dlen)) < 0)
        goto out;
    rc = pkgstore_trust_manifest_verify(&m, &valid, root, data, len, envelopes, count);
    if (rc < 0) {
        /* the library's detail names the package and version */
        detail_set(detail, dlen, rc, "%s%s%s%s",
                   count == 0 && !notes[0] ? "unsigned (no signatures): " : "",
                   pkgstore_error_detail(), notes[0] ? "; " : "", notes);
        goto out;
    }
    /* The artifact this node installs, chosen from the signed manifest the
     * way the server chooses it (the best platform rank), then matched
     * exactly: name, version, type and that platform (no mix-and-match). */
    const pkgstore_artifact *artifact = NULL;
    if ((rc = pkgstore_manifest_best_artifact(&artifact, m, platform)) < 0) {
        detail_set(detail, dlen, PKGSTORE_EDENIED, "%s %s: the signed manifest has no artifact for %s",
                   name, version, platform);
        rc = PKGSTORE_EDENIED;
        goto out;
    }
    if ((rc = pkgstore_trust_manifest_match(m, name, version, type, artifact->platform)) < 0) {
        detail_set(detail, dlen, rc, "mix-and-match: %s", pkgstore_error_detail());
        goto out;
    }
    char digest_text[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest_format(digest_text, &artifact->digest);
    json_object_set_new(reply, "digest", json_string(digest_text));
    json_object_set_new(reply, "size", json_integer((json_int_t)artifact->size));
    json_object_set_new(reply, "format", json_string(artifact->format));
    json_object_set_new(reply, "entrypoint", json_string(artifact->entrypoint));
    json_object_set_new(reply, "platform", json_string(artifact->platform));
    json_object_set_new(reply, "valid", json_integer((json_int_t)valid));
    json_object_set_new(reply, "threshold", json_integer(pkgstore_trust_root_threshold(root)));
    json_object_set_new(reply, "root_version",
                        json_integer((json_int_t)pkgstore_trust_root_version(root)));
    json_object_set_new(reply, "created", json_integer((json_int_t)pkgstore_manifest_created(m)));
out:
    for (size_t i = 0; i < count; i++)
        pkgstore_trust_envelope_free(envelopes[i]);
    free(envelopes);
    pkgstore_manifest_free(m);
    pkgstore_trust_root_free(root);
    free(data);
    return rc;
}

int helper_verify_revocations(json_t *reply, const char *root_path, const char *body, size_t len,
                              char *detail, size_t dlen)
{
    pkgstore_trust_root *root = NULL;
    int rc = load_root(&root, root_path, detail, dlen);
    if (rc < 0)
        return rc;
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *list = json_object_get(doc, "revocations");
    if (!json_is_array(list) || json_array_size(list) > 4096) {
        json_decref(doc);
        pkgstore_trust_root_free(root);
        return detail_set(detail, dlen, PKGSTORE_EFORMAT,
                          "revocations: expected {\"generation\":G,\"revocations\":[...]} "
                          "(at most 4096)");
    }
    json_t *revoked = json_array(), *ignored = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        char *text = json_dumps(item, JSON_COMPACT | JSON_ENCODE_ANY);
        pkgstore_trust_revocation *rev = NULL;
        rc = text ? pkgstore_trust_revocation_parse(&rev, text, strlen(text)) : PKGSTORE_ENOMEM;
        free(text);
        /* only a revocation signed to threshold by the current root counts */
        if (rc == 0)
            rc = pkgstore_trust_revocation_verify(rev, root);
        if (rc == 0)
            json_array_append_new(revoked,
                                  json_pack("{s:s, s:s, s:s, s:I}", "name",
                                            pkgstore_trust_revocation_name(rev), "version",
                                            pkgstore_trust_revocation_version(rev), "reason",
                                            pkgstore_trust_revocation_reason(rev), "created",
                                            (json_int_t)pkgstore_trust_revocation_created(rev)));
        else
            json_array_append_new(ignored, json_pack("{s:i, s:s}", "index", (int)i, "error",
                                                     pkgstore_error_detail()));
        pkgstore_trust_revocation_free(rev);
    }
    json_object_set_new(reply, "revoked", revoked);
    json_object_set_new(reply, "ignored", ignored);
    json_decref(doc);
    pkgstore_trust_root_free(root);
    return 0;
}

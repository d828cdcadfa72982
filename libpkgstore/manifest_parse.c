/*
 * manifest_parse.c - strict parsing of manifest v1 JSON (docs/manifest.md):
 * limits first (size, then nesting, by a scan before jansson recurses),
 * then jansson with duplicate keys refused and \u0000 not allowed, then
 * every field checked by type and by value with a detail that names it
 * ("artifacts[1].digest: not a sha256 digest"). Values are normalized with
 * the same checks the builder uses (manifest.c), so parse, canonical, parse
 * again gives identical bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "error.h"
#include "manifest.h"
#include "pkgstore/digest.h"
#include "pkgstore/manifest.h"

/* Deepest nesting of arrays and objects in the text, found without parsing
 * it (strings are skipped), so that absurdly deep input is refused with a
 * clear error before jansson recurses into it. Stops counting past limit. */
static int nesting_depth(const char *data, size_t len, int limit)
{
    int depth = 0, deepest = 0, in_string = 0;
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
            if (++depth > deepest && (deepest = depth) > limit)
                return deepest;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return deepest;
}

static int expect_only_keys(json_t *object, const char *prefix, const char *const *keys)
{
    const char *key;
    json_t *value;
    json_object_foreach(object, key, value) {
        int known = 0;
        for (const char *const *k = keys; *k; k++)
            if (strcmp(*k, key) == 0)
                known = 1;
        if (!known) {
            char shown[64];
            size_t n = strlen(key);
            snprintf(shown, sizeof(shown), "%.*s%s", (int)(n > 40 ? 40 : n), key,
                     n > 40 ? "..." : "");
            return ps_error_set(PKGSTORE_EINVALID, "%s%s%s: unknown field", prefix,
                                prefix[0] ? "." : "", shown);
        }
    }
    return 0;
}

static int get_string(const char **out, json_t *object, const char *key, const char *field,
                      size_t max)
{
    json_t *value = json_object_get(object, key);
    *out = NULL;
    if (!value)
        return ps_error_set(PKGSTORE_EINVALID, "%s: missing", field);
    if (!json_is_string(value))
        return ps_error_set(PKGSTORE_EINVALID, "%s: not a string", field);
    /* JSON_ALLOW_NUL is off, so jansson has refused \u0000 already; the
     * length check is still the real one. */
    if (json_string_length(value) > max)
        return ps_error_set(PKGSTORE_ELIMIT, "%s: longer than %zu bytes", field, max);
    *out = json_string_value(value);
    return 0;
}

static int parse_artifact(pkgstore_artifact *out, json_t *item, size_t index,
                          const char *manifest_name)
{
    static const char *const keys[] = {"platform", "digest", "size", "format", "entrypoint",
                                       NULL};
    char prefix[48], field[64];
    pkgstore_artifact raw;
    const char *str;
    int error;

    memset(&raw, 0, sizeof(raw));
    snprintf(prefix, sizeof(prefix), "artifacts[%zu]", index);
    if (!json_is_object(item))
        return ps_error_set(PKGSTORE_EINVALID, "%s: not an object", prefix);
    if ((error = expect_only_keys(item, prefix, keys)) < 0)
        return error;

    snprintf(field, sizeof(field), "%s.platform", prefix);
    if ((error = get_string(&str, item, "platform", field, PKGSTORE_PLATFORM_MAX)) < 0 ||
        (error = ps_manifest_copy_bounded(raw.platform, sizeof(raw.platform), field, str)) < 0)
        return error;

    snprintf(field, sizeof(field), "%s.digest", prefix);
    if ((error = get_string(&str, item, "digest", field, PKGSTORE_DIGEST_STR_SIZE)) < 0)
        return error;
    if (pkgstore_digest_parse(&raw.digest, str) < 0)
        return ps_error_set(PKGSTORE_EINVALID, "%s: not a sha256 digest", field);

    snprintf(field, sizeof(field), "%s.size", prefix);
    json_t *size = json_object_get(item, "size");
    if (!size)
        return ps_error_set(PKGSTORE_EINVALID, "%s: missing", field);
    if (!json_is_integer(size) || json_integer_value(size) < 0)
        return ps_error_set(PKGSTORE_EINVALID, "%s: not a non-negative integer", field);
    raw.size = (uint64_t)json_integer_value(size);

    snprintf(field, sizeof(field), "%s.format", prefix);
    if ((error = get_string(&str, item, "format", field, PKGSTORE_FORMAT_MAX + 16)) < 0)
        return error;
    if (pkgstore_manifest_format_validate(str) < 0)
        return ps_error_set(PKGSTORE_EINVALID,
                            "%s: not one of binary, tar, tar+gzip, tar+zstd, tar+xz, zip", field);
    strcpy(raw.format, str);

    snprintf(field, sizeof(field), "%s.entrypoint", prefix);
    if ((error = get_string(&str, item, "entrypoint", field, PKGSTORE_ENTRYPOINT_MAX)) < 0)
        return error;
    if (!str[0])
        return ps_error_set(PKGSTORE_EINVALID, "%s: empty", field);
    strcpy(raw.entrypoint, str);

    return ps_manifest_artifact_check(out, prefix, &raw, manifest_name);
}

static int parse_dependencies(pkgstore_manifest *m, json_t *deps)
{
    static const char *const keys[] = {"name", "version", NULL};
    char prefix[48], field[64];
    const char *name, *constraint;
    int error;

    if (!json_is_array(deps))
        return ps_error_set(PKGSTORE_EINVALID, "dependencies: not an array");
    size_t count = json_array_size(deps);
    if (count > PKGSTORE_MANIFEST_DEPENDENCIES_MAX)
        return ps_error_set(PKGSTORE_ELIMIT, "dependencies: more than %d",
                            PKGSTORE_MANIFEST_DEPENDENCIES_MAX);
    if (count && !(m->dependencies = calloc(count, sizeof(*m->dependencies))))
        return ps_error_set(PKGSTORE_ENOMEM, "manifest: out of memory");
    for (size_t i = 0; i < count; i++) {
        json_t *item = json_array_get(deps, i);
        snprintf(prefix, sizeof(prefix), "dependencies[%zu]", i);
        if (!json_is_object(item))
            return ps_error_set(PKGSTORE_EINVALID, "%s: not an object", prefix);
        if ((error = expect_only_keys(item, prefix, keys)) < 0)
            return error;
        snprintf(field, sizeof(field), "%s.name", prefix);
        if ((error = get_string(&name, item, "name", field, PKGSTORE_NAME_MAX)) < 0)
            return error;
        if ((error = pkgstore_manifest_name_validate(name)) < 0) {
            ps_error_prefix("%s", prefix);
            return error;
        }
        snprintf(field, sizeof(field), "%s.version", prefix);
        if ((error = get_string(&constraint, item, "version", field,
                                PKGSTORE_MANIFEST_CONSTRAINT_MAX)) < 0 ||
            (error = ps_manifest_check_constraint(field, constraint)) < 0)
            return error;
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->dependencies[j].name, name) == 0)
                return ps_error_set(PKGSTORE_EINVALID,
                                    "%s.name: duplicate dependency %s (also dependencies[%zu])",
                                    prefix, name, j);
        strcpy(m->dependencies[i].name, name);
        strcpy(m->dependencies[i].constraint, constraint);
        m->dependency_count = i + 1;
    }
    return 0;
}

static int parse_annotations(pkgstore_manifest *m, json_t *annotations)
{
    const char *key;
    json_t *value;
    int error;

    if (!json_is_object(annotations))
        return ps_error_set(PKGSTORE_EINVALID, "annotations: not an object");
    if (json_object_size(annotations) > PKGSTORE_MANIFEST_ANNOTATIONS_MAX)
        return ps_error_set(PKGSTORE_ELIMIT, "annotations: more than %d",
                            PKGSTORE_MANIFEST_ANNOTATIONS_MAX);
    json_object_foreach(annotations, key, value) {
        char field[80];
        size_t klen = strlen(key);
        snprintf(field, sizeof(field), "annotations.%.*s%s", (int)(klen > 40 ? 40 : klen), key,
                 klen > 40 ? "..." : "");
        if (!json_is_string(value))
            return ps_error_set(PKGSTORE_EINVALID, "%s: not a string", field);
        if (klen == 0)
            return ps_error_set(PKGSTORE_EINVALID, "annotations: empty key");
        if (klen > PKGSTORE_MANIFEST_ANNOTATION_KEY_MAX)
            return ps_error_set(PKGSTORE_ELIMIT, "%s: key longer than %d bytes", field,
                                PKGSTORE_MANIFEST_ANNOTATION_KEY_MAX);
        if (json_string_length(value) > PKGSTORE_MANIFEST_ANNOTATION_VALUE_MAX)
            return ps_error_set(PKGSTORE_ELIMIT, "%s: longer than %d bytes", field,
                                PKGSTORE_MANIFEST_ANNOTATION_VALUE_MAX);
        if ((error = pkgstore_manifest_annotation_set(m, key, json_string_value(value))) < 0)
            return error;
    }
    return 0;
}

int pkgstore_manifest_parse(pkgstore_manifest **out, const void *data, size_t len)
{
    static const char *const keys[] = {"schemaVersion", "name",         "version",
                                       "type",          "artifacts",    "dependencies",
                                       "created",       "annotations",  NULL};
    pkgstore_manifest *m = NULL;
    json_t *root = NULL;
    json_error_t jerr;
    const char *str;
    int error = 0;

    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "manifest: no output pointer");
    *out = NULL;
    if (!data && len)
        return ps_error_set(PKGSTORE_EINVALID, "manifest: NULL data");
    if (len > PKGSTORE_MANIFEST_SIZE_MAX)
        return ps_error_set(PKGSTORE_ELIMIT, "manifest: %zu bytes, more than the %d allowed",
                            len, PKGSTORE_MANIFEST_SIZE_MAX);
    if (nesting_depth(data, len, PKGSTORE_MANIFEST_DEPTH_MAX) > PKGSTORE_MANIFEST_DEPTH_MAX)
        return ps_error_set(PKGSTORE_ELIMIT, "manifest: JSON nested deeper than %d levels",
                            PKGSTORE_MANIFEST_DEPTH_MAX);
    root = json_loadb(data ? data : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return ps_error_set(PKGSTORE_EINVALID, "manifest: not valid JSON: line %d column %d: %s",
                            jerr.line, jerr.column, jerr.text);
    if (!json_is_object(root)) {
        error = ps_error_set(PKGSTORE_EINVALID, "manifest: not a JSON object");
        goto out;
    }
    if ((error = expect_only_keys(root, "", keys)) < 0)
        goto out;

    json_t *schema = json_object_get(root, "schemaVersion");
    if (!schema) {
        error = ps_error_set(PKGSTORE_EINVALID, "schemaVersion: missing");
        goto out;
    }
    if (!json_is_integer(schema)) {
        error = ps_error_set(PKGSTORE_EINVALID, "schemaVersion: not an integer");
        goto out;
    }
    if (json_integer_value(schema) != PKGSTORE_MANIFEST_SCHEMA_VERSION) {
        error = ps_error_set(PKGSTORE_EUNSUPPORTED, "schemaVersion: %lld is not supported (only %d)",
                             (long long)json_integer_value(schema),
                             PKGSTORE_MANIFEST_SCHEMA_VERSION);
        goto out;
    }

    if (!(m = calloc(1, sizeof(*m)))) {
        error = ps_error_set(PKGSTORE_ENOMEM, "manifest: out of memory");
        goto out;
    }

    if ((error = get_string(&str, root, "name", "name", PKGSTORE_NAME_MAX)) < 0 ||
        (error = pkgstore_manifest_name_validate(str)) < 0)
        goto out;
    strcpy(m->name, str);

    if ((error = get_string(&str, root, "version", "version", PKGSTORE_VERSION_MAX + 1)) < 0 ||
        (error = ps_manifest_normalize_version(m->version, "version", str)) < 0)
        goto out;

    if ((error = get_string(&str, root, "type", "type", 16)) < 0)
        goto out;
    if (pkgstore_package_type_parse(&m->type, str) < 0) {
        error = ps_error_set(PKGSTORE_EINVALID, "type: neither primary nor addon");
        goto out;
    }

    if ((error = get_string(&str, root, "created", "created", 64)) < 0)
        goto out;
    if ((error = pkgstore_manifest_time_parse(&m->created, str)) < 0) {
        ps_error_prefix("created");
        goto out;
    }

    json_t *artifacts = json_object_get(root, "artifacts");
    if (!artifacts) {
        error = ps_error_set(PKGSTORE_EINVALID, "artifacts: missing");
        goto out;
    }
    if (!json_is_array(artifacts)) {
        error = ps_error_set(PKGSTORE_EINVALID, "artifacts: not an array");
        goto out;
    }
    size_t count = json_array_size(artifacts);
    if (count == 0) {
        error = ps_error_set(PKGSTORE_EINVALID, "artifacts: empty");
        goto out;
    }
    if (count > PKGSTORE_MANIFEST_ARTIFACTS_MAX) {
        error = ps_error_set(PKGSTORE_ELIMIT, "artifacts: %zu, more than %d", count,
                             PKGSTORE_MANIFEST_ARTIFACTS_MAX);
        goto out;
    }
    if (!(m->artifacts = calloc(count, sizeof(*m->artifacts)))) {
        error = ps_error_set(PKGSTORE_ENOMEM, "manifest: out of memory");
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        pkgstore_artifact *a = &m->artifacts[i];
        if ((error = parse_artifact(a, json_array_get(artifacts, i), i, m->name)) < 0)
            goto out;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(m->artifacts[j].platform, a->platform) == 0) {
                error = ps_error_set(PKGSTORE_EINVALID,
                                     "artifacts[%zu].platform: duplicate platform %s "
                                     "(also artifacts[%zu])",
                                     i, a->platform, j);
                goto out;
            }
        }
        m->artifact_count = i + 1;
    }

    json_t *deps = json_object_get(root, "dependencies");
    if (deps && (error = parse_dependencies(m, deps)) < 0)
        goto out;
    json_t *annotations = json_object_get(root, "annotations");
    if (annotations && (error = parse_annotations(m, annotations)) < 0)
        goto out;

    *out = m;
    m = NULL; /* now owned by the caller */
out:
    json_decref(root);
    pkgstore_manifest_free(m);
    return error;
}

/*
 * manifest.c - the manifest v1 JSON: build, modify, validate values and
 * serialize canonically (docs/manifest.md); parsing is manifest_parse.c.
 *
 * The manifest is kept as plain C values, not as a jansson tree: jansson is
 * used only at the edges (parse, serialize), so that what we hold has always
 * been validated and the canonical bytes are a pure function of it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "error.h"
#include "json_dump.h"
#include "manifest.h"
#include "name.h"
#include "pkgstore/archive.h"
#include "pkgstore/digest.h"
#include "pkgstore/manifest.h"
#include "pkgstore/platform.h"
#include "pkgstore/version.h"
#include "time_text.h"

/* ------------------------------------------------------------------ checks */

int pkgstore_manifest_name_validate(const char *name)
{
    return ps_name_check("name", name, PKGSTORE_NAME_MAX);
}

int pkgstore_manifest_format_validate(const char *format)
{
    pkgstore_archive_format parsed;
    if (!format)
        return ps_error_set(PKGSTORE_EINVALID, "format: missing");
    if (pkgstore_archive_format_parse(&parsed, format) == 0)
        return 0;
    return ps_error_set(PKGSTORE_EINVALID,
                        "format: not one of binary, tar, tar+gzip, tar+zstd, tar+xz, zip");
}

int ps_manifest_format_is_archive(const char *format)
{
    pkgstore_archive_format parsed;
    return format && pkgstore_archive_format_parse(&parsed, format) == 0 &&
           pkgstore_archive_format_is_archive(parsed);
}

_Static_assert(PKGSTORE_MANIFEST_TIME_SIZE == PS_TIME_SIZE, "one time text size");

int pkgstore_manifest_time_parse(int64_t *out, const char *str)
{
    return ps_time_parse(out, str);
}

int pkgstore_manifest_time_format(char out[PKGSTORE_MANIFEST_TIME_SIZE], int64_t seconds)
{
    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "time: no buffer");
    return ps_time_format(out, seconds);
}

/* A string is acceptable text: valid UTF-8 without NUL (the length is
 * strlen's, so an embedded NUL would have cut it) and without C0 controls
 * where the field is a path. */
static int utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = *p;
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if ((size_t)(end - p) <= n)
            return 0;
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        p += n + 1;
    }
    return 1;
}

/* Check a string field: present, within max bytes, UTF-8. field names it
 * in the detail. */
static int check_text(const char *field, const char *value, size_t max, int allow_empty)
{
    if (!value)
        return ps_error_set(PKGSTORE_EINVALID, "%s: missing", field);
    size_t len = strlen(value);
    if (len == 0 && !allow_empty)
        return ps_error_set(PKGSTORE_EINVALID, "%s: empty", field);
    if (len > max)
        return ps_error_set(PKGSTORE_ELIMIT, "%s: longer than %zu bytes", field, max);
    if (!utf8_valid(value, len))
        return ps_error_set(PKGSTORE_EINVALID, "%s: not valid UTF-8", field);
    return 0;
}

/* Normalize a SemVer version into out. */
int ps_manifest_normalize_version(char out[PKGSTORE_VERSION_MAX + 1], const char *field,
                             const char *version)
{
    pkgstore_semver parsed;
    char formatted[PKGSTORE_SEMVER_STR_SIZE];
    int error;

    out[0] = '\0';
    if (!version)
        return ps_error_set(PKGSTORE_EINVALID, "%s: missing", field);
    if (strlen(version) > PKGSTORE_VERSION_MAX + 1) /* +1: a leading 'v' */
        return ps_error_set(PKGSTORE_ELIMIT, "%s: longer than %d characters", field,
                            PKGSTORE_VERSION_MAX);
    if ((error = pkgstore_version_parse(&parsed, version)) < 0) {
        /* the version module's detail already starts with "version: " */
        if (strcmp(field, "version") != 0)
            ps_error_prefix("%s", field);
        return error;
    }
    size_t len = pkgstore_version_format(formatted, &parsed);
    if (len > PKGSTORE_VERSION_MAX)
        return ps_error_set(PKGSTORE_ELIMIT, "%s: longer than %d characters", field,
                            PKGSTORE_VERSION_MAX);
    memcpy(out, formatted, len + 1);
    return 0;
}

static int normalize_platform(char out[PKGSTORE_PLATFORM_MAX + 1], const char *field,
                              const char *platform)
{
    char formatted[PKGSTORE_PLATFORM_STR_SIZE];
    int error;

    out[0] = '\0';
    if (!platform)
        return ps_error_set(PKGSTORE_EINVALID, "%s: missing", field);
    if ((error = pkgstore_platform_normalize(formatted, platform)) < 0) {
        ps_error_prefix("%s", field);
        return error;
    }
    size_t len = strlen(formatted);
    if (len > PKGSTORE_PLATFORM_MAX)
        return ps_error_set(PKGSTORE_ELIMIT, "%s: longer than %d characters", field,
                            PKGSTORE_PLATFORM_MAX);
    memcpy(out, formatted, len + 1);
    return 0;
}

/* An entrypoint is a relative path inside the archive (or, for a binary, a
 * plain file name): no absolute path, no "." or ".." component, no empty
 * component, no control characters. */
static int check_entrypoint(const char *field, const char *entrypoint, const char *format)
{
    int error;
    if ((error = check_text(field, entrypoint, PKGSTORE_ENTRYPOINT_MAX, 0)) < 0)
        return error;
    for (const char *p = entrypoint; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '\\')
            return ps_error_set(PKGSTORE_EINVALID,
                                "%s: control character or backslash at position %zu", field,
                                (size_t)(p - entrypoint) + 1);
    if (entrypoint[0] == '/')
        return ps_error_set(PKGSTORE_EINVALID, "%s: absolute path", field);
    if (!ps_manifest_format_is_archive(format) && strchr(entrypoint, '/'))
        return ps_error_set(PKGSTORE_EINVALID, "%s: a binary's entrypoint is a file name, not a path",
                            field);
    const char *component = entrypoint;
    for (;;) {
        const char *slash = strchr(component, '/');
        size_t clen = slash ? (size_t)(slash - component) : strlen(component);
        if (clen == 0)
            return ps_error_set(PKGSTORE_EINVALID, "%s: empty path component", field);
        if ((clen == 1 && component[0] == '.') ||
            (clen == 2 && component[0] == '.' && component[1] == '.'))
            return ps_error_set(PKGSTORE_EINVALID, "%s: '.' or '..' path component", field);
        if (!slash)
            break;
        component = slash + 1;
    }
    return 0;
}

int ps_manifest_copy_bounded(char *dst, size_t size, const char *field, const char *src)
{
    size_t len = strlen(src);
    if (len >= size)
        return ps_error_set(PKGSTORE_ELIMIT, "%s: longer than %zu bytes", field, size - 1);
    memcpy(dst, src, len + 1);
    return 0;
}

/* Validate and normalize an artifact into *out. An empty format is
 * "binary"; an empty entrypoint of a binary is default_entrypoint. */
int ps_manifest_artifact_check(pkgstore_artifact *out, const char *prefix, const pkgstore_artifact *in,
                          const char *default_entrypoint)
{
    char field[64];
    int error;

    memset(out, 0, sizeof(*out));
    if (memchr(in->platform, '\0', sizeof(in->platform)) == NULL ||
        memchr(in->format, '\0', sizeof(in->format)) == NULL ||
        memchr(in->entrypoint, '\0', sizeof(in->entrypoint)) == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "%s: unterminated string", prefix);

    snprintf(field, sizeof(field), "%s.platform", prefix);
    if ((error = normalize_platform(out->platform, field, in->platform)) < 0)
        return error;

    snprintf(field, sizeof(field), "%s.format", prefix);
    const char *format = in->format[0] ? in->format : "binary";
    if ((error = pkgstore_manifest_format_validate(format)) < 0) {
        ps_error_prefix("%s", prefix);
        return error;
    }
    strcpy(out->format, format);

    snprintf(field, sizeof(field), "%s.entrypoint", prefix);
    const char *entrypoint = in->entrypoint;
    if (!entrypoint[0] && !ps_manifest_format_is_archive(format) && default_entrypoint)
        entrypoint = default_entrypoint;
    if (!entrypoint[0] && ps_manifest_format_is_archive(format))
        return ps_error_set(PKGSTORE_EINVALID, "%s: required for an archive (format %s)", field,
                            format);
    if ((error = check_entrypoint(field, entrypoint, format)) < 0)
        return error;
    strcpy(out->entrypoint, entrypoint);

    if (in->size > (uint64_t)INT64_MAX)
        return ps_error_set(PKGSTORE_ELIMIT, "%s.size: larger than 2^63-1", prefix);
    out->size = in->size;
    out->digest = in->digest;
    return 0;
}

int ps_manifest_check_constraint(const char *field, const char *constraint)
{
    pkgstore_version_constraint *parsed = NULL;
    int error;
    if ((error = check_text(field, constraint, PKGSTORE_MANIFEST_CONSTRAINT_MAX, 0)) < 0)
        return error;
    if ((error = pkgstore_version_constraint_parse(&parsed, constraint)) < 0) {
        ps_error_prefix("%s", field);
        return error;
    }
    pkgstore_version_constraint_free(parsed);
    return 0;
}

/* ------------------------------------------------------------------ build */

int pkgstore_manifest_new(pkgstore_manifest **out, const char *name, const char *version,
                          pkgstore_package_type type)
{
    pkgstore_manifest *m = NULL;
    int error;

    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "manifest: no output pointer");
    *out = NULL;
    if ((error = pkgstore_manifest_name_validate(name)) < 0)
        return error;
    if (type != PKGSTORE_TYPE_PRIMARY && type != PKGSTORE_TYPE_ADDON)
        return ps_error_set(PKGSTORE_EINVALID, "type: neither primary nor addon");
    if (!(m = calloc(1, sizeof(*m))))
        return ps_error_set(PKGSTORE_ENOMEM, "manifest: out of memory");
    if ((error = ps_manifest_normalize_version(m->version, "version", version)) < 0)
        goto out;
    strcpy(m->name, name);
    m->type = type;
    time_t now = time(NULL);
    m->created = (int64_t)now;
    *out = m;
    m = NULL; /* now owned by the caller */
out:
    pkgstore_manifest_free(m);
    return error;
}

void pkgstore_manifest_free(pkgstore_manifest *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->annotation_count; i++) {
        free(m->annotations[i].key);
        free(m->annotations[i].value);
    }
    free(m->annotations);
    free(m->artifacts);
    free(m->dependencies);
    free(m);
}

int pkgstore_manifest_dup(pkgstore_manifest **out, const pkgstore_manifest *m)
{
    pkgstore_manifest *copy = NULL;
    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "manifest: no output pointer");
    *out = NULL;
    if (!m)
        return ps_error_set(PKGSTORE_EINVALID, "manifest: NULL");
    if (!(copy = calloc(1, sizeof(*copy))))
        goto nomem;
    *copy = *m;
    copy->artifacts = NULL;
    copy->dependencies = NULL;
    copy->annotations = NULL;
    copy->artifact_count = copy->dependency_count = copy->annotation_count = 0;
    if (m->artifact_count) {
        if (!(copy->artifacts = malloc(m->artifact_count * sizeof(*m->artifacts))))
            goto nomem;
        memcpy(copy->artifacts, m->artifacts, m->artifact_count * sizeof(*m->artifacts));
        copy->artifact_count = m->artifact_count;
    }
    if (m->dependency_count) {
        if (!(copy->dependencies = malloc(m->dependency_count * sizeof(*m->dependencies))))
            goto nomem;
        memcpy(copy->dependencies, m->dependencies,
               m->dependency_count * sizeof(*m->dependencies));
        copy->dependency_count = m->dependency_count;
    }
    if (m->annotation_count) {
        if (!(copy->annotations = calloc(m->annotation_count, sizeof(*m->annotations))))
            goto nomem;
        for (size_t i = 0; i < m->annotation_count; i++) {
            copy->annotation_count = i + 1;
            if (!(copy->annotations[i].key = strdup(m->annotations[i].key)) ||
                !(copy->annotations[i].value = strdup(m->annotations[i].value)))
                goto nomem;
        }
    }
    *out = copy;
    return 0;
nomem:
    pkgstore_manifest_free(copy);
    return ps_error_set(PKGSTORE_ENOMEM, "manifest: out of memory");
}

const char *pkgstore_manifest_name(const pkgstore_manifest *m)
{
    return m ? m->name : NULL;
}

const char *pkgstore_manifest_version(const pkgstore_manifest *m)
{
    return m ? m->version : NULL;
}

pkgstore_package_type pkgstore_manifest_type(const pkgstore_manifest *m)
{
    return m ? m->type : PKGSTORE_TYPE_PRIMARY;
}

int64_t pkgstore_manifest_created(const pkgstore_manifest *m)
{
    return m ? m->created : 0;
}

void pkgstore_manifest_set_type(pkgstore_manifest *m, pkgstore_package_type type)
{
    if (m && (type == PKGSTORE_TYPE_PRIMARY || type == PKGSTORE_TYPE_ADDON))
        m->type = type;
}

int pkgstore_manifest_set_created(pkgstore_manifest *m, int64_t seconds)
{
    if (!m)
        return ps_error_set(PKGSTORE_EINVALID, "manifest: NULL");
    if (seconds < PS_TIME_MIN || seconds > PS_TIME_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "created: %lld is outside the years 0000-9999",
                            (long long)seconds);
    m->created = seconds;
    return 0;
}

size_t pkgstore_manifest_artifact_count(const pkgstore_manifest *m)
{
    return m ? m->artifact_count : 0;
}

const pkgstore_artifact *pkgstore_manifest_artifact(const pkgstore_manifest *m, size_t i)
{
    return m && i < m->artifact_count ? &m->artifacts[i] : NULL;
}

static pkgstore_artifact *find_artifact(const pkgstore_manifest *m, const char *platform)
{
    for (size_t i = 0; i < m->artifact_count; i++)
        if (strcmp(m->artifacts[i].platform, platform) == 0)
            return &m->artifacts[i];
    return NULL;
}

const pkgstore_artifact *pkgstore_manifest_artifact_find(const pkgstore_manifest *m,
                                                         const char *platform)
{
    char normalized[PKGSTORE_PLATFORM_STR_SIZE];
    if (!m || !platform || pkgstore_platform_normalize(normalized, platform) < 0)
        return NULL;
    return find_artifact(m, normalized);
}

int pkgstore_manifest_add_artifact(pkgstore_manifest *m, const pkgstore_artifact *artifact)
{
    pkgstore_artifact checked;
    int error;

    if (!m || !artifact)
        return ps_error_set(PKGSTORE_EINVALID, "artifact: NULL");
    if ((error = ps_manifest_artifact_check(&checked, "artifact", artifact, m->name)) < 0)
        return error;
    pkgstore_artifact *existing = find_artifact(m, checked.platform);
    if (existing) {
        *existing = checked;
        return 1;
    }
    if (m->artifact_count >= PKGSTORE_MANIFEST_ARTIFACTS_MAX)
        return ps_error_set(PKGSTORE_ELIMIT, "artifacts: more than %d",
                            PKGSTORE_MANIFEST_ARTIFACTS_MAX);
    pkgstore_artifact *grown = realloc(m->artifacts, (m->artifact_count + 1) * sizeof(*grown));
    if (!grown)
        return ps_error_set(PKGSTORE_ENOMEM, "manifest: out of memory");
    m->artifacts = grown;
    m->artifacts[m->artifact_count++] = checked;
    return 0;
}

int pkgstore_manifest_remove_artifact(pkgstore_manifest *m, const char *platform)
{
    char normalized[PKGSTORE_PLATFORM_STR_SIZE];
    int error;
    if (!m || !platform)
        return ps_error_set(PKGSTORE_EINVALID, "platform: NULL");
    if ((error = pkgstore_platform_normalize(normalized, platform)) < 0)
        return error;
    pkgstore_artifact *found = find_artifact(m, normalized);
    if (!found)
        return ps_error_set(PKGSTORE_ENOTFOUND, "%s %s: no artifact for %s", m->name,
                            m->version, normalized);
    size_t i = (size_t)(found - m->artifacts);
    memmove(&m->artifacts[i], &m->artifacts[i + 1],
            (m->artifact_count - i - 1) * sizeof(*m->artifacts));
    m->artifact_count--;
    return 0;
}

int pkgstore_manifest_best_artifact(const pkgstore_artifact **out, const pkgstore_manifest *m,
                                    const char *node_platform)
{
    pkgstore_platform node, candidate;
    int error, best_rank = PKGSTORE_PLATFORM_RANK_NONE;

    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "artifact: no output pointer");
    *out = NULL;
    if (!m)
        return ps_error_set(PKGSTORE_EINVALID, "manifest: NULL");
    if (node_platform)
        error = pkgstore_platform_parse(&node, node_platform);
    else
        error = pkgstore_platform_host(&node);
    if (error < 0)
        return error;
    for (size_t i = 0; i < m->artifact_count; i++) {
        if (pkgstore_platform_parse(&candidate, m->artifacts[i].platform) < 0)
            continue;
        int rank = pkgstore_platform_rank(&node, &candidate);
        if (rank != PKGSTORE_PLATFORM_RANK_NONE &&
            (best_rank == PKGSTORE_PLATFORM_RANK_NONE || rank < best_rank)) {
            best_rank = rank;
            *out = &m->artifacts[i];
        }
    }
    if (!*out) {
        char formatted[PKGSTORE_PLATFORM_STR_SIZE];
        pkgstore_platform_format(formatted, &node);
        return ps_error_set(PKGSTORE_ENOTFOUND, "%s %s: no artifact for platform %s", m->name,
                            m->version, formatted);
    }
    return 0;
}

size_t pkgstore_manifest_dependency_count(const pkgstore_manifest *m)
{
    return m ? m->dependency_count : 0;
}

const pkgstore_dependency *pkgstore_manifest_dependency(const pkgstore_manifest *m, size_t i)
{
    return m && i < m->dependency_count ? &m->dependencies[i] : NULL;
}

int pkgstore_manifest_add_dependency(pkgstore_manifest *m, const char *name,
                                     const char *constraint)
{
    int error;
    if (!m)
        return ps_error_set(PKGSTORE_EINVALID, "manifest: NULL");
    if ((error = pkgstore_manifest_name_validate(name)) < 0) {
        ps_error_prefix("dependency");
        return error;
    }
    if ((error = ps_manifest_check_constraint("dependency version", constraint)) < 0)
        return error;
    for (size_t i = 0; i < m->dependency_count; i++) {
        if (strcmp(m->dependencies[i].name, name) == 0) {
            strcpy(m->dependencies[i].constraint, constraint);
            return 1;
        }
    }
    if (m->dependency_count >= PKGSTORE_MANIFEST_DEPENDENCIES_MAX)
        return ps_error_set(PKGSTORE_ELIMIT, "dependencies: more than %d",
                            PKGSTORE_MANIFEST_DEPENDENCIES_MAX);
    pkgstore_dependency *grown =
        realloc(m->dependencies, (m->dependency_count + 1) * sizeof(*grown));
    if (!grown)
        return ps_error_set(PKGSTORE_ENOMEM, "manifest: out of memory");
    m->dependencies = grown;
    pkgstore_dependency *dep = &m->dependencies[m->dependency_count++];
    memset(dep, 0, sizeof(*dep));
    strcpy(dep->name, name);
    strcpy(dep->constraint, constraint);
    return 0;
}

int pkgstore_dependency_parse(pkgstore_dependency *out, const char *text)
{
    pkgstore_version_constraint *parsed = NULL;
    int error;

    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "dependency: NULL output");
    memset(out, 0, sizeof(*out));
    if (!text)
        return ps_error_set(PKGSTORE_EINVALID, "dependency: missing");
    const char *space = strchr(text, ' ');
    size_t name_len = space ? (size_t)(space - text) : strlen(text);
    if (name_len == 0)
        return ps_error_set(PKGSTORE_EINVALID,
                            "name: empty (give NAME, or NAME, a space and a constraint)");
    if (name_len > PKGSTORE_NAME_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "name: longer than %d characters",
                            PKGSTORE_NAME_MAX);
    memcpy(out->name, text, name_len);
    if ((error = pkgstore_manifest_name_validate(out->name)) < 0)
        goto fail;
    /* NAME alone: any version, as a manifest writes it */
    const char *constraint = "*";
    if (space) {
        for (constraint = space; *constraint == ' '; constraint++) {
        }
        if (!*constraint) {
            error = ps_error_set(PKGSTORE_EINVALID,
                                 "constraint: empty after the name (NAME alone means any "
                                 "version)");
            goto fail;
        }
    }
    if ((error = check_text("constraint", constraint, PKGSTORE_MANIFEST_CONSTRAINT_MAX, 0)) < 0 ||
        (error = pkgstore_version_constraint_parse(&parsed, constraint)) < 0)
        goto fail;
    pkgstore_version_constraint_free(parsed);
    strcpy(out->constraint, constraint); /* checked: within the limit */
    return 0;
fail:
    memset(out, 0, sizeof(*out));
    return error;
}

size_t pkgstore_manifest_annotation_count(const pkgstore_manifest *m)
{
    return m ? m->annotation_count : 0;
}

int pkgstore_manifest_annotation(const char **key, const char **value,
                                 const pkgstore_manifest *m, size_t i)
{
    if (key)
        *key = NULL;
    if (value)
        *value = NULL;
    if (!m || i >= m->annotation_count)
        return ps_error_set(PKGSTORE_ENOTFOUND, "annotations: no annotation %zu", i);
    if (key)
        *key = m->annotations[i].key;
    if (value)
        *value = m->annotations[i].value;
    return 0;
}

/* Index of key, or -(insertion point) - 1. */
static long annotation_search(const pkgstore_manifest *m, const char *key)
{
    size_t lo = 0, hi = m->annotation_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(m->annotations[mid].key, key);
        if (cmp == 0)
            return (long)mid;
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(long)lo - 1;
}

const char *pkgstore_manifest_annotation_get(const pkgstore_manifest *m, const char *key)
{
    if (!m || !key)
        return NULL;
    long at = annotation_search(m, key);
    return at >= 0 ? m->annotations[at].value : NULL;
}

int pkgstore_manifest_annotation_set(pkgstore_manifest *m, const char *key, const char *value)
{
    char field[PKGSTORE_MANIFEST_ANNOTATION_KEY_MAX + 32];
    int error;
    if (!m)
        return ps_error_set(PKGSTORE_EINVALID, "manifest: NULL");
    if ((error = check_text("annotations key", key, PKGSTORE_MANIFEST_ANNOTATION_KEY_MAX, 0)) < 0)
        return error;
    long at = annotation_search(m, key);
    if (!value) {
        if (at >= 0) {
            free(m->annotations[at].key);
            free(m->annotations[at].value);
            memmove(&m->annotations[at], &m->annotations[at + 1],
                    (m->annotation_count - (size_t)at - 1) * sizeof(*m->annotations));
            m->annotation_count--;
        }
        return 0;
    }
    snprintf(field, sizeof(field), "annotations.%s", key);
    if ((error = check_text(field, value, PKGSTORE_MANIFEST_ANNOTATION_VALUE_MAX, 1)) < 0)
        return error;
    char *copy = strdup(value);
    if (!copy)
        return ps_error_set(PKGSTORE_ENOMEM, "manifest: out of memory");
    if (at >= 0) {
        free(m->annotations[at].value);
        m->annotations[at].value = copy;
        return 0;
    }
    if (m->annotation_count >= PKGSTORE_MANIFEST_ANNOTATIONS_MAX) {
        free(copy);
        return ps_error_set(PKGSTORE_ELIMIT, "annotations: more than %d",
                            PKGSTORE_MANIFEST_ANNOTATIONS_MAX);
    }
    char *key_copy = strdup(key);
    ps_manifest_annotation *grown = key_copy ? realloc(m->annotations,
                                           (m->annotation_count + 1) * sizeof(*grown))
                                 : NULL;
    if (!grown) {
        free(copy);
        free(key_copy);
        return ps_error_set(PKGSTORE_ENOMEM, "manifest: out of memory");
    }
    m->annotations = grown;
    size_t insert = (size_t)(-at - 1);
    memmove(&m->annotations[insert + 1], &m->annotations[insert],
            (m->annotation_count - insert) * sizeof(*m->annotations));
    m->annotations[insert].key = key_copy;
    m->annotations[insert].value = copy;
    m->annotation_count++;
    return 0;
}

/* ------------------------------------------------------------------ serialize */

static int set_new(json_t *object, const char *key, json_t *value)
{
    return value ? json_object_set_new(object, key, value) : -1;
}

static json_t *to_json(const pkgstore_manifest *m)
{
    char created[PKGSTORE_MANIFEST_TIME_SIZE];
    char digest[PKGSTORE_DIGEST_STR_SIZE];
    json_t *root = json_object(), *artifacts = json_array(), *deps = json_array(),
           *annotations = json_object();
    int failed = !root || !artifacts || !deps || !annotations;

    if (pkgstore_manifest_time_format(created, m->created) < 0)
        failed = 1;
    for (size_t i = 0; !failed && i < m->artifact_count; i++) {
        const pkgstore_artifact *a = &m->artifacts[i];
        json_t *item = json_object();
        pkgstore_digest_format(digest, &a->digest);
        /* append first: the array owns item from here, even on failure */
        failed = !item || json_array_append_new(artifacts, item) ||
                 set_new(item, "platform", json_string(a->platform)) ||
                 set_new(item, "digest", json_string(digest)) ||
                 set_new(item, "size", json_integer((json_int_t)a->size)) ||
                 set_new(item, "format", json_string(a->format)) ||
                 set_new(item, "entrypoint", json_string(a->entrypoint));
    }
    for (size_t i = 0; !failed && i < m->dependency_count; i++) {
        json_t *item = json_object();
        failed = !item || json_array_append_new(deps, item) ||
                 set_new(item, "name", json_string(m->dependencies[i].name)) ||
                 set_new(item, "version", json_string(m->dependencies[i].constraint));
    }
    for (size_t i = 0; !failed && i < m->annotation_count; i++)
        failed = set_new(annotations, m->annotations[i].key,
                         json_string(m->annotations[i].value));
    if (!failed) {
        failed = set_new(root, "schemaVersion", json_integer(PKGSTORE_MANIFEST_SCHEMA_VERSION)) ||
                 set_new(root, "name", json_string(m->name)) ||
                 set_new(root, "version", json_string(m->version)) ||
                 set_new(root, "type", json_string(pkgstore_package_type_name(m->type))) ||
                 set_new(root, "created", json_string(created)) ||
                 json_object_set_new(root, "artifacts", artifacts) ||
                 json_object_set_new(root, "dependencies", deps) ||
                 json_object_set_new(root, "annotations", annotations);
        artifacts = deps = annotations = NULL; /* now owned by root (even on failure) */
    }
    json_decref(artifacts);
    json_decref(deps);
    json_decref(annotations);
    if (failed) {
        json_decref(root);
        return NULL;
    }
    return root;
}

int pkgstore_manifest_serialize(char **out, size_t *len_out, const pkgstore_manifest *m,
                                unsigned int flags)
{
    if (out)
        *out = NULL;
    if (len_out)
        *len_out = 0;
    if (!out || !m)
        return ps_error_set(PKGSTORE_EINVALID, "manifest: NULL");
    if (m->artifact_count == 0)
        return ps_error_set(PKGSTORE_EINVALID, "artifacts: %s %s has no artifact", m->name,
                            m->version);
    json_t *root = to_json(m);
    if (!root)
        return ps_error_set(PKGSTORE_ENOMEM, "manifest: out of memory building JSON");
    size_t dump_flags = (flags & PKGSTORE_MANIFEST_PRETTY) ? JSON_SORT_KEYS | JSON_INDENT(2)
                                                           : PS_JSON_CANONICAL;
    int error = ps_json_dump(out, len_out, root, dump_flags, "manifest");
    json_decref(root);
    return error;
}

int pkgstore_manifest_digest(pkgstore_digest *out, const pkgstore_manifest *m)
{
    char *canonical = NULL;
    size_t len = 0;
    int error;
    if (out)
        memset(out, 0, sizeof(*out));
    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "digest: no output pointer");
    if ((error = pkgstore_manifest_serialize(&canonical, &len, m, 0)) < 0)
        return error;
    error = pkgstore_digest_buffer(out, canonical, len);
    free(canonical);
    return error;
}

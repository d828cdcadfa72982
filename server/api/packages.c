/*
 * server/api/packages.c - the package routes over the registry:
 *   PUT    /v1/packages/NAME/VERSION?platform=&type=&entrypoint=&format=&depends=...
 *   GET    /v1/packages, /v1/packages/NAME, /v1/packages/NAME/VERSION
 *   DELETE /v1/packages/NAME/VERSION   (409 while a policy references it)
 *
 * An upload is checked (name, version, platform, type, format, entrypoint,
 * dependencies) before a byte of the body is read, then streams into the
 * store writer like a blob upload; once the blob is durable the registry
 * adds it to the manifest.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../server.h"

typedef struct package_upload {
    pkgstore_artifact artifact;
    pkgstore_package_type type;
    int force;
    int replace; /* ?replace=1: a different artifact may replace the platform's */
    pkgstore_dependency *dependencies; /* every ?depends=, in order (heap) */
    size_t dependency_count;
} package_upload;

static void package_upload_free(void *data)
{
    package_upload *upload = data;
    if (upload)
        free(upload->dependencies);
    free(upload);
}

/* Room for a name, spaces and a constraint at their limits; longer is
 * refused before it is parsed. */
#define DEPENDS_TEXT_MAX 511

/* Every ?depends=NAME%20CONSTRAINT (or NAME: any version) into upload, in
 * order. 0, or -1 with the 400 queued into *result. */
static int read_depends(struct MHD_Connection *conn, request *req, package_upload *upload,
                        enum MHD_Result *result)
{
    char text[DEPENDS_TEXT_MAX + 1];
    const char *pos = req->query;
    int present;
    while ((present = http_query_next(text, sizeof text, &pos, "depends")) != 0) {
        if (present < 0) {
            *result = respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                                    "depends: bad escape, NUL or longer than %d bytes",
                                    DEPENDS_TEXT_MAX);
            return -1;
        }
        if (!text[0]) {
            *result = respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                                    "depends: empty (give NAME, or NAME%%20CONSTRAINT)");
            return -1;
        }
        if (upload->dependency_count == PKGSTORE_MANIFEST_DEPENDENCIES_MAX) {
            *result = respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                                    "depends: more than %d dependencies",
                                    PKGSTORE_MANIFEST_DEPENDENCIES_MAX);
            return -1;
        }
        pkgstore_dependency dep;
        if (pkgstore_dependency_parse(&dep, text) < 0) {
            *result = respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                                    "depends: '%s': %s", text, pkgstore_error_detail());
            return -1;
        }
        /* the registry would keep only the last constraint: refuse instead */
        for (size_t i = 0; i < upload->dependency_count; i++) {
            if (strcmp(upload->dependencies[i].name, dep.name) == 0) {
                *result = respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                                        "depends: '%s' is given twice", dep.name);
                return -1;
            }
        }
        pkgstore_dependency *grown = realloc(
            upload->dependencies, (upload->dependency_count + 1) * sizeof *upload->dependencies);
        if (!grown) {
            *result = respond_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, PKGSTORE_ENOMEM,
                                    "depends: out of memory");
            return -1;
        }
        upload->dependencies = grown;
        upload->dependencies[upload->dependency_count++] = dep;
    }
    return 0;
}

static enum MHD_Result bad_field(struct MHD_Connection *conn, request *req, const char *field)
{
    const char *detail = pkgstore_error_detail();
    if (*detail && strncmp(detail, field, strlen(field)) == 0) /* already names it */
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID, "%s", detail);
    return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID, "%s: %s", field,
                         *detail ? detail : "invalid");
}

int package_path_check(struct MHD_Connection *conn, request *req, int with_version,
                       enum MHD_Result *result)
{
    if (pkgstore_manifest_name_validate(req->seg[2]) < 0) {
        *result = bad_field(conn, req, "name");
        return -1;
    }
    if (with_version) {
        pkgstore_semver semver;
        if (pkgstore_version_parse(&semver, req->seg[3]) < 0) {
            *result = bad_field(conn, req, "version");
            return -1;
        }
    }
    return 0;
}

/* The agent installs the entrypoint under a directory of its own: refuse
 * anything that could name a place outside it. */
static int entrypoint_unsafe(const char *entrypoint, const char *format)
{
    if (entrypoint[0] == '/')
        return 1;
    if (strcmp(format, "binary") == 0 && strchr(entrypoint, '/'))
        return 1;
    for (const char *p = entrypoint; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '\\')
            return 1;
    const char *segment = entrypoint;
    for (;;) {
        const char *end = strchr(segment, '/');
        size_t len = end ? (size_t)(end - segment) : strlen(segment);
        if ((len == 2 && segment[0] == '.' && segment[1] == '.') ||
            (len == 1 && segment[0] == '.'))
            return 1;
        if (!end)
            return 0;
        segment = end + 1;
    }
}

/* Under --require-signatures, 0 when no policy targets name version, else
 * PKGSTORE_ECONFLICT (or the error of reading the policies) with why: a new
 * artifact makes a new manifest, which drops the signatures of the old
 * one, so a targeted version would become unsigned. */
static int refuse_targeted(char *why, size_t why_size, const char *name, const char *version)
{
    if (!trust_require_signatures())
        return 0;
    char policy[300];
    int targeted = trust_version_targeted(policy, sizeof policy, name, version);
    if (targeted < 0) {
        snprintf(why, why_size, "policies: %s", policy);
        return targeted;
    }
    if (!targeted)
        return 0;
    metrics_unsigned_refused(UNSIGNED_REFUSED_UPLOAD);
    snprintf(why, why_size,
             "%s %s is targeted by policy %s: a new artifact would change its manifest and drop "
             "its signatures (--require-signatures); push and sign a new version, then move the "
             "policy",
             name, version, policy);
    return PKGSTORE_ECONFLICT;
}

enum MHD_Result package_upload_begin(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    if (package_path_check(conn, req, 1, &result) < 0)
        return result;
    package_upload *upload = calloc(1, sizeof *upload);
    if (!upload)
        return MHD_NO;
    req->route_data = upload;
    req->route_data_free = package_upload_free;

    char value[PKGSTORE_ENTRYPOINT_MAX + 1];
    int present = query_arg(value, sizeof value, conn, "platform");
    if (present <= 0)
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                             present < 0 ? "platform: bad escape or too long"
                                         : "platform: missing (?platform=OS/ARCH, or 'any')");
    char platform[PKGSTORE_PLATFORM_STR_SIZE];
    if (strcmp(value, "any") == 0) /* shorthand for scripts that run anywhere */
        snprintf(value, sizeof value, "any/any");
    if (pkgstore_platform_normalize(platform, value) < 0)
        return bad_field(conn, req, "platform");
    if (strlen(platform) >= sizeof upload->artifact.platform)
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                             "platform: too long");
    memcpy(upload->artifact.platform, platform, strlen(platform) + 1);

    upload->type = PKGSTORE_TYPE_PRIMARY;
    present = query_arg(value, sizeof value, conn, "type");
    if (present < 0 || (present > 0 && pkgstore_package_type_parse(&upload->type, value) < 0))
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                             "type: must be 'primary' or 'addon'");

    /* absent: the registry detects the format from the content (and checks
     * a declared one against it) */
    upload->artifact.format[0] = '\0';
    present = query_arg(value, sizeof value, conn, "format");
    if (present < 0 || (present > 0 && (strlen(value) > PKGSTORE_FORMAT_MAX ||
                                        pkgstore_manifest_format_validate(value) < 0)))
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                             "format: must be one of binary, tar, tar+gzip, tar+zstd, tar+xz, "
                             "zip");
    if (present > 0) /* validated: at most PKGSTORE_FORMAT_MAX bytes */
        memcpy(upload->artifact.format, value, strlen(value) + 1);

    present = query_arg(upload->artifact.entrypoint, sizeof upload->artifact.entrypoint, conn,
                        "entrypoint");
    if (present < 0)
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                             "entrypoint: bad escape, NUL or longer than %d bytes",
                             PKGSTORE_ENTRYPOINT_MAX);

    if (present > 0 && entrypoint_unsafe(upload->artifact.entrypoint, upload->artifact.format))
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                             "entrypoint: must be a relative path without '..' components "
                             "(a plain file name for a binary)");

    if (read_depends(conn, req, upload, &result) < 0)
        return result;

    upload->force = query_flag(conn, "force", 0);
    upload->replace = query_flag(conn, "replace", 0);

    /* early, before the body; package_upload_finish() checks again */
    char why[512];
    int error = refuse_targeted(why, sizeof why, req->seg[2], req->seg[3]);
    if (error < 0)
        return respond_pkgstore_error_text(conn, req, error, NULL, why);

    error = upload_open_writer(req);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, "upload");
    return MHD_YES;
}

/* Answer with a manifest: its canonical JSON and its digest. */
static enum MHD_Result respond_manifest(struct MHD_Connection *conn, request *req,
                                        unsigned int status, const pkgstore_manifest *manifest,
                                        const pkgstore_digest *digest)
{
    char *text = NULL;
    size_t len = 0;
    int error = pkgstore_manifest_serialize(&text, &len, manifest, 0);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, "manifest");
    struct MHD_Response *response =
        MHD_create_response_from_buffer_with_free_callback(len, text, pkgstore_free);
    if (!response) {
        pkgstore_free(text);
        return MHD_NO;
    }
    char digest_str[PKGSTORE_DIGEST_STR_SIZE], etag[PKGSTORE_DIGEST_STR_SIZE + 4];
    pkgstore_digest_format(digest_str, digest);
    snprintf(etag, sizeof etag, "\"%s\"", digest_str);
    MHD_add_response_header(response, "Content-Type", "application/json");
    MHD_add_response_header(response, "X-Pkgstore-Manifest-Digest", digest_str);
    MHD_add_response_header(response, "ETag", etag);
    MHD_add_response_header(response, "Cache-Control", "no-cache");
    req->response_bytes = len;
    return queue_response(conn, req, status, response);
}

enum MHD_Result package_upload_finish(struct MHD_Connection *conn, request *req)
{
    package_upload *upload = req->route_data;
    if (!req->writer || !upload)
        return respond_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, PKGSTORE_EINTERNAL,
                             "upload: no writer");
    enum MHD_Result result;
    if (upload_check_size(conn, req, &result) < 0)
        return result;
    /* The blob is linked, readable by digest for the registry's archive
     * checks, but not recorded: a refused package takes it back
     * (withdraw), so that nothing of it can be served or mistaken for a
     * stored upload. Only an accepted package commits it. */
    pkgstore_store_writer *writer = req->writer;
    req->writer = NULL; /* now owned here: commit or withdraw frees it */
    int error = pkgstore_store_writer_link(&upload->artifact.digest, &upload->artifact.size,
                                           writer);
    if (error < 0) {
        pkgstore_store_writer_abort(writer);
        metrics_upload(0, 0);
        return respond_pkgstore_error(conn, req, error, "upload");
    }

    pkgstore_registry_add_options opts = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT;
    pkgstore_artifact replaced;
    opts.type = upload->type;
    opts.force = upload->force;
    opts.replace = upload->replace;
    opts.replaced = &replaced;
    opts.dependencies = upload->dependencies;
    opts.dependency_count = upload->dependency_count;
    pkgstore_manifest *manifest = NULL;
    pkgstore_digest manifest_digest;
    char saved[512];
    /* a policy may have been put on the version since the upload began */
    trust_upload_lock();
    if ((error = refuse_targeted(saved, sizeof saved, req->seg[2], req->seg[3])) == 0 &&
        (error = pkgstore_registry_add(&manifest, &manifest_digest, g_server.registry,
                                       req->seg[2], req->seg[3], &upload->artifact, &opts)) < 0)
        snprintf(saved, sizeof saved, "%s", pkgstore_error_detail());
    trust_signed_unlock();
    if (error < 0) {
        if (pkgstore_store_writer_withdraw(writer) < 0) {
            char d[PKGSTORE_DIGEST_STR_SIZE];
            pkgstore_digest_format(d, &upload->artifact.digest);
            log_msg(LOG_WARN, "refused upload not withdrawn",
                    "digest=%s error=%s (an orphan: gc removes it after its grace period)", d,
                    pkgstore_error_detail());
        }
        metrics_upload(0, 0);
        return respond_pkgstore_error_text(conn, req, error, "package", saved);
    }
    int commit_error = pkgstore_store_writer_commit(NULL, NULL, writer);
    if (commit_error < 0) {
        /* The manifest names the blob and the blob is in place; only its
         * own record is missing: fsck gives it back (an orphan something
         * refers to). Say so, but the package is added. */
        char d[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(d, &upload->artifact.digest);
        log_msg(LOG_WARN, "blob record not written", "digest=%s error=%s", d,
                pkgstore_error_detail());
    }
    metrics_upload(1, upload->artifact.size);
    if (error == 1) { /* replaced: versions are immutable unless asked, so say it */
        char old[PKGSTORE_DIGEST_STR_SIZE], new_digest[PKGSTORE_DIGEST_STR_SIZE], qv[300];
        pkgstore_digest_format(old, &replaced.digest);
        pkgstore_digest_format(new_digest, &upload->artifact.digest);
        log_msg(LOG_WARN, "package artifact replaced",
                "name=%s version=%s platform=%s old_digest=%s new_digest=%s", req->seg[2],
                log_quote(qv, sizeof qv, req->seg[3]), upload->artifact.platform, old,
                new_digest);
    }

    char digest_str[PKGSTORE_DIGEST_STR_SIZE], manifest_str[PKGSTORE_DIGEST_STR_SIZE], q[300];
    pkgstore_digest_format(digest_str, &upload->artifact.digest);
    pkgstore_digest_format(manifest_str, &manifest_digest);
    log_msg(LOG_INFO, "package artifact added",
            "name=%s version=%s platform=%s digest=%s size=%" PRIu64 " manifest=%s",
            req->seg[2], log_quote(q, sizeof q, pkgstore_manifest_version(manifest)),
            upload->artifact.platform, digest_str, upload->artifact.size, manifest_str);
    result = respond_manifest(conn, req, MHD_HTTP_CREATED, manifest, &manifest_digest);
    pkgstore_manifest_free(manifest);
    return result;
}

static json_t *versions_array(const char *name, int *error_out)
{
    char **versions = NULL;
    size_t count = 0;
    *error_out = pkgstore_registry_versions(&versions, &count, g_server.registry, name);
    if (*error_out < 0)
        return NULL;
    json_t *array = json_array();
    for (size_t i = 0; array && i < count; i++)
        json_array_append_new(array, json_string(versions[i]));
    pkgstore_registry_strings_free(versions, count);
    return array;
}

enum MHD_Result packages_list(struct MHD_Connection *conn, request *req)
{
    char **names = NULL;
    size_t count = 0;
    int error = pkgstore_registry_names(&names, &count, g_server.registry);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, "packages");
    json_t *packages = json_array();
    for (size_t i = 0; packages && i < count; i++) {
        json_t *versions = versions_array(names[i], &error);
        if (!versions) /* removed in between: skip it */
            continue;
        json_array_append_new(packages,
                              json_pack("{s:s,s:o}", "name", names[i], "versions", versions));
    }
    pkgstore_registry_strings_free(names, count);
    return respond_json(conn, req, MHD_HTTP_OK, json_pack("{s:o}", "packages", packages));
}

enum MHD_Result package_versions(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    if (package_path_check(conn, req, 0, &result) < 0)
        return result;
    int error = 0;
    json_t *versions = versions_array(req->seg[2], &error);
    if (!versions)
        return respond_pkgstore_error(conn, req, error, NULL);
    return respond_json(conn, req, MHD_HTTP_OK,
                        json_pack("{s:s,s:o}", "name", req->seg[2], "versions", versions));
}

int package_path_get(pkgstore_manifest **manifest_out, pkgstore_digest *digest_out,
                     struct MHD_Connection *conn, request *req, enum MHD_Result *result)
{
    pkgstore_manifest *manifest = NULL;
    if (manifest_out)
        *manifest_out = NULL;
    if (package_path_check(conn, req, 1, result) < 0)
        return -1;
    int error = pkgstore_registry_get(&manifest, digest_out, g_server.registry, req->seg[2],
                                      req->seg[3]);
    if (error < 0) {
        *result = respond_pkgstore_error(conn, req, error, NULL);
        return -1;
    }
    if (manifest_out)
        *manifest_out = manifest; /* now owned by the caller */
    else
        pkgstore_manifest_free(manifest);
    return 0;
}

enum MHD_Result package_manifest(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    pkgstore_manifest *manifest = NULL;
    pkgstore_digest digest;
    if (package_path_get(&manifest, &digest, conn, req, &result) < 0)
        return result;
    result = respond_manifest(conn, req, MHD_HTTP_OK, manifest, &digest);
    pkgstore_manifest_free(manifest);
    return result;
}

enum MHD_Result package_delete(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    if (package_path_check(conn, req, 1, &result) < 0)
        return result;
    /* The registry refuses, in its remove transaction, a version a policy
     * references (409). */
    int error = pkgstore_registry_remove(g_server.registry, req->seg[2], req->seg[3]);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, NULL);
    char q[300];
    log_msg(LOG_INFO, "package version removed", "name=%s version=%s", req->seg[2],
            log_quote(q, sizeof q, req->seg[3]));
    return respond_json(conn, req, MHD_HTTP_OK,
                        json_pack("{s:{s:s,s:s}}", "deleted", "name", req->seg[2], "version",
                                  req->seg[3]));
}

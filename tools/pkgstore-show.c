/*
 * pkgstore-show: packages, their versions, or one manifest; with --trust,
 * the roots of trust and revocations a registry keeps (read from its
 * STORE.trust directory, or from a pkgstored over the API).
 */
#include "cli.h"
#include "files.h"
#include "httpclient.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

static const char usage_text[] =
    "Usage: pkgstore-show [--store DIR] [--json] [NAME [VERSION]]\n"
    "       pkgstore-show [--store DIR | --trust-dir DIR] --trust [--json]\n"
    "       pkgstore-show --server URL [--token-file FILE] [--cacert FILE] --trust [--json]\n"
    "Without NAME, list every package with its versions. With NAME, list its\n"
    "versions from lowest to highest precedence. With NAME VERSION, show that\n"
    "manifest: its digest, artifacts, dependencies, annotations and the key ids\n"
    "of the signatures kept with it (pkgstore-sign).\n"
    "With --trust, show the roots of trust and the revocations a registry\n"
    "keeps: from pkgstored's directory beside the store (STORE.trust), or from\n"
    "a running pkgstored with --server.\n"
    "\n"
    "  --store DIR        the store (default: $COLLECTORCTRL_PACKAGES_DIR)\n"
    "  --json             print JSON (for a manifest: the manifest itself, indented)\n"
    "  --canonical        with NAME VERSION: print the canonical manifest bytes, the\n"
    "                     ones its digest covers\n"
    "  --digest           with NAME VERSION: print only the manifest digest\n"
    "  --trust            show every root version (created, threshold, keys, who\n"
    "                     signed it) and the revocations with their generation\n"
    "  --trust-dir DIR    the trust directory to read (implies --trust; default\n"
    "                     STORE.trust, as pkgstored --trust-dir)\n"
    "  --server URL       read them from pkgstored instead (implies --trust)\n"
    "  --token-file FILE  a token for --server (default $PKGSTORE_TOKEN_FILE, then\n"
    "                     the token in $PKGSTORE_TOKEN); admin, agent or node\n"
    "  --cacert FILE      PEM CA that an https:// server's certificate must chain\n"
    "                     to (default $PKGSTORE_CACERT, else the system's CAs)\n"
    "  --help             show this help\n"
    "  --version          show the program version\n"
    "\n"
    "Exit status: 0 success, 1 no such package or version (with --trust: no\n"
    "trust directory), 2 usage error, 3 any other error.\n";

static int status_of(int error)
{
    return error == PKGSTORE_ENOTFOUND ? CLI_EXIT_FAIL : CLI_EXIT_ERROR;
}

static void json_string_array(char **items, size_t count)
{
    putchar('[');
    for (size_t i = 0; i < count; i++) {
        if (i)
            fputs(", ", stdout);
        cli_json_string(stdout, items[i]);
    }
    putchar(']');
}

static int show_names(pkgstore_registry *reg, int json)
{
    char **names = NULL;
    size_t count = 0;
    int error;
    if ((error = pkgstore_registry_names(&names, &count, reg)) < 0) {
        cli_lib_error(NULL, error);
        return CLI_EXIT_ERROR;
    }
    if (json)
        printf("{\"packages\": [");
    for (size_t i = 0; i < count; i++) {
        char **versions = NULL;
        size_t version_count = 0;
        if ((error = pkgstore_registry_versions(&versions, &version_count, reg, names[i])) < 0 &&
            error != PKGSTORE_ENOTFOUND) { /* removed meanwhile: skip it */
            cli_lib_error(names[i], error);
            pkgstore_registry_strings_free(names, count);
            return CLI_EXIT_ERROR;
        }
        if (json) {
            printf("%s\n  {\"name\": ", i ? "," : "");
            cli_json_string(stdout, names[i]);
            printf(", \"versions\": ");
            json_string_array(versions, version_count);
            putchar('}');
        } else {
            printf("%-32s", names[i]);
            for (size_t v = 0; v < version_count; v++)
                printf(" %s", versions[v]);
            putchar('\n');
        }
        pkgstore_registry_strings_free(versions, version_count);
    }
    if (json)
        printf("%s]}\n", count ? "\n" : "");
    pkgstore_registry_strings_free(names, count);
    return CLI_EXIT_OK;
}

static int show_versions(pkgstore_registry *reg, const char *name, int json)
{
    char **versions = NULL;
    size_t count = 0;
    int error, status = CLI_EXIT_OK;
    if ((error = pkgstore_registry_versions(&versions, &count, reg, name)) < 0) {
        cli_lib_error(name, error);
        return status_of(error);
    }
    if (json) {
        printf("{\"name\": ");
        cli_json_string(stdout, name);
        printf(", \"versions\": [");
    } else {
        printf("%-20s %-8s %-20s %-71s %s\n", "VERSION", "TYPE", "CREATED", "MANIFEST",
               "PLATFORMS");
    }
    for (size_t i = 0; i < count; i++) {
        pkgstore_manifest *m = NULL;
        pkgstore_digest digest;
        char shown[PKGSTORE_DIGEST_STR_SIZE], created[PKGSTORE_MANIFEST_TIME_SIZE];
        if ((error = pkgstore_registry_get(&m, &digest, reg, name, versions[i])) < 0) {
            if (error == PKGSTORE_ENOTFOUND)
                continue; /* removed meanwhile */
            cli_lib_error(name, error);
            status = CLI_EXIT_ERROR;
            break;
        }
        pkgstore_digest_format(shown, &digest);
        if (pkgstore_manifest_time_format(created, pkgstore_manifest_created(m)) < 0)
            strcpy(created, "-");
        const char *type = pkgstore_package_type_name(pkgstore_manifest_type(m));
        if (json) {
            printf("%s\n  {\"version\": ", i ? "," : "");
            cli_json_string(stdout, versions[i]);
            printf(", \"type\": \"%s\", \"created\": \"%s\", \"manifest_digest\": \"%s\", "
                   "\"platforms\": [",
                   type, created, shown);
            for (size_t a = 0; a < pkgstore_manifest_artifact_count(m); a++) {
                if (a)
                    fputs(", ", stdout);
                cli_json_string(stdout, pkgstore_manifest_artifact(m, a)->platform);
            }
            printf("]}");
        } else {
            printf("%-20s %-8s %-20s %-71s", versions[i], type, created, shown);
            for (size_t a = 0; a < pkgstore_manifest_artifact_count(m); a++)
                printf("%s%s", a ? "," : " ", pkgstore_manifest_artifact(m, a)->platform);
            putchar('\n');
        }
        pkgstore_manifest_free(m);
    }
    if (json)
        printf("%s]}\n", count ? "\n" : "");
    pkgstore_registry_strings_free(versions, count);
    return status;
}

/* The signature envelopes kept with the manifest (pkgstore-sign), one
 * line each; nothing when there are none. Their validity needs a root:
 * pkgstore-sign --root checks it. */
static int show_signatures(pkgstore_store *store, const pkgstore_digest *digest)
{
    pkgstore_trust_stored_signature *list = NULL;
    size_t count = 0;
    int error;
    if ((error = pkgstore_trust_signatures_list(&list, &count, store, digest)) < 0) {
        cli_lib_error("signatures", error);
        return CLI_EXIT_ERROR;
    }
    if (count)
        printf("\nSIGNATURES\n%-64s %s\n", "KEY ID", "ENVELOPE");
    for (size_t i = 0; i < count; i++) {
        pkgstore_trust_envelope *env = NULL;
        char shown[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(shown, &list[i].digest);
        if (pkgstore_trust_envelope_parse(&env, list[i].data, list[i].len) < 0)
            printf("%-64s %s (malformed: %s)\n", "-", shown, pkgstore_error_detail());
        else
            printf("%-64s %s\n", pkgstore_trust_envelope_keyid(env), shown);
        pkgstore_trust_envelope_free(env);
    }
    pkgstore_trust_signatures_free(list, count);
    return CLI_EXIT_OK;
}

static int show_manifest(pkgstore_store *store, pkgstore_registry *reg, const char *name,
                         const char *version, int json, int canonical, int digest_only)
{
    pkgstore_manifest *m = NULL;
    pkgstore_digest digest;
    char shown[PKGSTORE_DIGEST_STR_SIZE], created[PKGSTORE_MANIFEST_TIME_SIZE];
    char *text = NULL;
    size_t len = 0;
    int error;

    if ((error = pkgstore_registry_get(&m, &digest, reg, name, version)) < 0) {
        char object[PKGSTORE_NAME_MAX + PKGSTORE_VERSION_MAX + 2];
        snprintf(object, sizeof(object), "%s %s", name, version);
        cli_lib_error(object, error);
        return status_of(error);
    }
    pkgstore_digest_format(shown, &digest);
    if (digest_only) {
        printf("%s\n", shown);
    } else if (json || canonical) {
        if ((error = pkgstore_manifest_serialize(&text, &len, m,
                                                 canonical ? 0 : PKGSTORE_MANIFEST_PRETTY)) < 0) {
            cli_lib_error(name, error);
            pkgstore_manifest_free(m);
            return CLI_EXIT_ERROR;
        }
        fwrite(text, 1, len, stdout);
        if (!canonical)
            putchar('\n');
        pkgstore_free(text);
    } else {
        if (pkgstore_manifest_time_format(created, pkgstore_manifest_created(m)) < 0)
            strcpy(created, "-");
        printf("name:      %s\nversion:   %s\ntype:      %s\ncreated:   %s\nmanifest:  %s\n",
               pkgstore_manifest_name(m), pkgstore_manifest_version(m),
               pkgstore_package_type_name(pkgstore_manifest_type(m)), created, shown);
        printf("\nARTIFACTS\n%-16s %-9s %12s %-71s %s\n", "PLATFORM", "FORMAT", "SIZE", "DIGEST",
               "ENTRYPOINT");
        for (size_t i = 0; i < pkgstore_manifest_artifact_count(m); i++) {
            const pkgstore_artifact *a = pkgstore_manifest_artifact(m, i);
            char artifact_digest[PKGSTORE_DIGEST_STR_SIZE];
            pkgstore_digest_format(artifact_digest, &a->digest);
            printf("%-16s %-9s %12llu %-71s %s\n", a->platform, a->format,
                   (unsigned long long)a->size, artifact_digest, a->entrypoint);
        }
        if (pkgstore_manifest_dependency_count(m)) {
            printf("\nDEPENDENCIES\n");
            for (size_t i = 0; i < pkgstore_manifest_dependency_count(m); i++) {
                const pkgstore_dependency *d = pkgstore_manifest_dependency(m, i);
                printf("%-32s %s\n", d->name, d->constraint);
            }
        }
        if (pkgstore_manifest_annotation_count(m)) {
            printf("\nANNOTATIONS\n");
            for (size_t i = 0; i < pkgstore_manifest_annotation_count(m); i++) {
                const char *key, *value;
                if (pkgstore_manifest_annotation(&key, &value, m, i) == 0)
                    printf("%s=%s\n", key, value);
            }
        }
        if (show_signatures(store, &digest) != CLI_EXIT_OK) {
            pkgstore_manifest_free(m);
            return CLI_EXIT_ERROR;
        }
    }
    pkgstore_manifest_free(m);
    return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- --trust */

/* A server holds few roots; walking versions below the newest one by one
 * stops after this many requests (a root may start at any version). */
#define ROOT_FETCH_MAX 256

typedef struct trust_view {
    pkgstore_trust_root **roots; /* ascending version */
    size_t nroots;
    int roots_cut; /* --server: older versions were not asked for */
    uint64_t generation;
    pkgstore_trust_revocation **revocations;
    size_t nrevocations;
} trust_view;

static void trust_view_free(trust_view *view)
{
    for (size_t i = 0; i < view->nroots; i++)
        pkgstore_trust_root_free(view->roots[i]);
    free(view->roots);
    for (size_t i = 0; i < view->nrevocations; i++)
        pkgstore_trust_revocation_free(view->revocations[i]);
    free(view->revocations);
}

/* Parse text as root.json (source names it in errors) and keep it in
 * version order. 0, or prints and returns -1. */
static int view_add_root(trust_view *view, const char *source, const char *text, size_t len,
                         uint64_t expected_version)
{
    pkgstore_trust_root *root = NULL;
    int error = pkgstore_trust_root_parse(&root, text, len);
    if (error < 0) {
        cli_lib_error(source, error);
        return -1;
    }
    if (expected_version && pkgstore_trust_root_version(root) != expected_version) {
        cli_error(source, "holds root version %" PRIu64 ", not %" PRIu64,
                  pkgstore_trust_root_version(root), expected_version);
        pkgstore_trust_root_free(root);
        return -1;
    }
    pkgstore_trust_root **grown = realloc(view->roots, (view->nroots + 1) * sizeof *grown);
    if (!grown) {
        cli_error(source, "out of memory");
        pkgstore_trust_root_free(root);
        return -1;
    }
    view->roots = grown;
    size_t at = view->nroots;
    while (at > 0 &&
           pkgstore_trust_root_version(view->roots[at - 1]) > pkgstore_trust_root_version(root))
        at--;
    memmove(&view->roots[at + 1], &view->roots[at], (view->nroots - at) * sizeof *grown);
    view->roots[at] = root; /* now owned by view */
    view->nroots++;
    return 0;
}

/* {"generation":G,"revocations":[<signed revocation>...]}: the form of both
 * STORE.trust/revocations.json and GET /v1/trust/revocations. Each one is
 * parsed by the library. 0, or prints and returns -1. */
static int view_set_revocations(trust_view *view, const char *source, const char *text,
                                size_t len)
{
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *list = json_object_get(doc, "revocations");
    json_t *generation = json_object_get(doc, "generation");
    int status = -1;
    if (!json_is_array(list) || !json_is_integer(generation) ||
        json_integer_value(generation) < 0) {
        cli_error(source, "not a list of revocations (%s)",
                  doc ? "no generation or revocations" : jerr.text);
        goto out;
    }
    view->generation = (uint64_t)json_integer_value(generation);
    if (json_array_size(list) &&
        !(view->revocations = calloc(json_array_size(list), sizeof *view->revocations))) {
        cli_error(source, "out of memory");
        goto out;
    }
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        char *item_text = json_dumps(item, JSON_COMPACT | JSON_SORT_KEYS);
        int error = item_text ? pkgstore_trust_revocation_parse(
                                    &view->revocations[i], item_text, strlen(item_text))
                              : PKGSTORE_ENOMEM;
        free(item_text);
        if (error < 0) {
            char object[4200];
            snprintf(object, sizeof object, "%s: revocations[%zu]", source, i);
            cli_lib_error(object, error);
            goto out;
        }
        view->nrevocations++;
    }
    status = 0;
out:
    json_decref(doc);
    return status;
}

/* Read dir as pkgstored keeps it: root.N.json and revocations.json. */
static int trust_read_dir(trust_view *view, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        int saved = errno;
        cli_error(dir, "%s%s", strerror(saved),
                  saved == ENOENT ? " (pkgstored makes it at start; see --trust-dir)" : "");
        return saved == ENOENT ? CLI_EXIT_FAIL : CLI_EXIT_ERROR;
    }
    struct dirent *entry;
    int status = CLI_EXIT_OK;
    while (status == CLI_EXIT_OK && (entry = readdir(d))) {
        uint64_t version = 0;
        int consumed = 0;
        if (sscanf(entry->d_name, "root.%" SCNu64 ".json%n", &version, &consumed) != 1 ||
            (size_t)consumed != strlen(entry->d_name) || version == 0)
            continue;
        char path[4400], *text = NULL;
        size_t len = 0;
        snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
        if (cli_read_file(&text, &len, path, PKGSTORE_TRUST_DOCUMENT_SIZE_MAX) < 0 ||
            view_add_root(view, path, text, len, version) < 0)
            status = CLI_EXIT_ERROR;
        free(text);
    }
    closedir(d);
    if (status != CLI_EXIT_OK)
        return status;

    char path[4400], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/revocations.json", dir);
    if (access(path, F_OK) < 0 && errno == ENOENT)
        return CLI_EXIT_OK; /* none yet: generation 0 */
    if (cli_read_file(&text, &len, path, 64u << 20) < 0 ||
        view_set_revocations(view, path, text, len) < 0)
        status = CLI_EXIT_ERROR;
    free(text);
    return status;
}

/* GET path; 1 with the body on 200, 0 on 404, -1 (printed) otherwise. */
static int trust_get(http_reply *reply, const http_client *client, const char *path)
{
    memset(reply, 0, sizeof *reply);
    if (http_request(reply, client, "GET", path, NULL) < 0 ||
        (reply->status != 200 && reply->status != 404)) {
        cli_error(path, "%s", http_reply_error(reply));
        http_reply_free(reply);
        return -1;
    }
    if (reply->status == 404) {
        http_reply_free(reply);
        return 0;
    }
    return 1;
}

/* The newest root, then every older version the server holds (a 404 is a
 * version it never held), then the revocations. */
static int trust_read_server(trust_view *view, const http_client *client)
{
    http_reply reply;
    int found = trust_get(&reply, client, "/v1/trust/root");
    if (found < 0)
        return CLI_EXIT_ERROR;
    if (found) {
        int bad = view_add_root(view, "GET /v1/trust/root", reply.body, reply.len, 0);
        http_reply_free(&reply);
        if (bad)
            return CLI_EXIT_ERROR;
        uint64_t newest = pkgstore_trust_root_version(view->roots[0]);
        unsigned asked = 0;
        for (uint64_t version = newest - 1; version >= 1; version--) {
            if (asked++ == ROOT_FETCH_MAX) {
                view->roots_cut = 1;
                break;
            }
            char path[64];
            snprintf(path, sizeof path, "/v1/trust/root/%" PRIu64, version);
            if ((found = trust_get(&reply, client, path)) < 0)
                return CLI_EXIT_ERROR;
            if (!found)
                continue;
            bad = view_add_root(view, path, reply.body, reply.len, version);
            http_reply_free(&reply);
            if (bad)
                return CLI_EXIT_ERROR;
        }
    }
    if ((found = trust_get(&reply, client, "/v1/trust/revocations")) <= 0) {
        if (found == 0)
            cli_error("/v1/trust/revocations", "not found (is this pkgstored?)");
        return CLI_EXIT_ERROR;
    }
    int bad = view_set_revocations(view, "GET /v1/trust/revocations", reply.body, reply.len);
    http_reply_free(&reply);
    return bad ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}

/* The check a node makes (docs/trust.md), said in a few words: the first
 * root shown must be signed by a threshold of its own keys, each later one
 * must be a valid rotation of the one before. A gap in versions is shown
 * as such: a node walks every version. Sets *detail to the library's
 * reason when not valid. */
static int root_chain_valid(const trust_view *view, size_t i, char *detail, size_t size)
{
    const pkgstore_trust_root *previous = i ? view->roots[i - 1] : NULL;
    int error = pkgstore_trust_root_verify(view->roots[i], previous);
    if (error == 0 && previous &&
        pkgstore_trust_root_version(view->roots[i]) != pkgstore_trust_root_version(previous) + 1) {
        snprintf(detail, size, "versions between %" PRIu64 " and %" PRIu64 " are missing",
                 pkgstore_trust_root_version(previous), pkgstore_trust_root_version(view->roots[i]));
        return 0;
    }
    snprintf(detail, size, "%s", error == 0 ? "" : pkgstore_error_detail());
    return error == 0;
}

/* Checked against the newest root, as a node that adopted it checks them
 * (a revocation signed only by keys rotated out no longer counts). */
static int revocation_valid(const trust_view *view, size_t i, char *detail, size_t size)
{
    if (!view->nroots) {
        snprintf(detail, size, "no root held to check it against");
        return 0;
    }
    int error = pkgstore_trust_revocation_verify(view->revocations[i],
                                                 view->roots[view->nroots - 1]);
    snprintf(detail, size, "%s", error == 0 ? "" : pkgstore_error_detail());
    return error == 0;
}

static json_t *keyids_json(const char *(*keyid_at)(const void *, size_t), const void *doc,
                           size_t count)
{
    json_t *array = json_array();
    for (size_t i = 0; array && i < count; i++)
        if (json_array_append_new(array, json_string(keyid_at(doc, i))) < 0) {
            json_decref(array);
            return NULL;
        }
    return array;
}

static const char *root_signer(const void *root, size_t i)
{
    return pkgstore_trust_root_signature_keyid(root, i);
}

static const char *revocation_signer(const void *rev, size_t i)
{
    return pkgstore_trust_revocation_signature_keyid(rev, i);
}

static int trust_print_json(const trust_view *view)
{
    char created[32], detail[2048];
    json_t *roots = json_array(), *revocations = json_array();
    for (size_t i = 0; roots && i < view->nroots; i++) {
        const pkgstore_trust_root *root = view->roots[i];
        json_t *keys = json_array();
        for (size_t k = 0; keys && k < pkgstore_trust_root_key_count(root); k++) {
            const char *keyid = NULL, *name = NULL;
            pkgstore_trust_root_key(&keyid, &name, root, k);
            json_array_append_new(keys, json_pack("{s:s, s:s}", "keyid", keyid, "name", name));
        }
        int valid = root_chain_valid(view, i, detail, sizeof detail);
        cli_format_time(created, sizeof created, (long long)pkgstore_trust_root_created(root));
        json_t *item = json_pack(
            "{s:I, s:s, s:i, s:o*, s:o*, s:b}", "version",
            (json_int_t)pkgstore_trust_root_version(root), "created", created, "threshold",
            (int)pkgstore_trust_root_threshold(root), "keys", keys, "signed_by",
            keyids_json(root_signer, root, pkgstore_trust_root_signature_count(root)), "valid",
            valid);
        if (item && !valid)
            json_object_set_new(item, "why", json_string(detail));
        if (!item || json_array_append_new(roots, item) < 0) {
            json_decref(roots);
            roots = NULL;
        }
    }
    for (size_t i = 0; revocations && i < view->nrevocations; i++) {
        const pkgstore_trust_revocation *rev = view->revocations[i];
        int valid = revocation_valid(view, i, detail, sizeof detail);
        cli_format_time(created, sizeof created,
                        (long long)pkgstore_trust_revocation_created(rev));
        json_t *item = json_pack(
            "{s:s, s:s, s:s, s:s, s:o*, s:b}", "name", pkgstore_trust_revocation_name(rev),
            "version", pkgstore_trust_revocation_version(rev), "reason",
            pkgstore_trust_revocation_reason(rev), "created", created, "signed_by",
            keyids_json(revocation_signer, rev, pkgstore_trust_revocation_signature_count(rev)),
            "valid", valid);
        if (item && !valid)
            json_object_set_new(item, "why", json_string(detail));
        if (!item || json_array_append_new(revocations, item) < 0) {
            json_decref(revocations);
            revocations = NULL;
        }
    }
    json_t *doc = json_object();
    int failed = !doc || !roots || !revocations ||
                 json_object_set_new(doc, "roots", roots) < 0 ||
                 json_object_set_new(doc, "roots_complete", json_boolean(!view->roots_cut)) < 0 ||
                 json_object_set_new(doc, "generation",
                                     json_integer((json_int_t)view->generation)) < 0 ||
                 json_object_set_new(doc, "revocations", revocations) < 0 ||
                 json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0;
    json_decref(doc);
    if (failed) {
        cli_error(NULL, "out of memory");
        return CLI_EXIT_ERROR;
    }
    putchar('\n');
    return CLI_EXIT_OK;
}

static void trust_print_text(const trust_view *view)
{
    char created[32], detail[2048];
    if (!view->nroots)
        printf("ROOTS: none held\n");
    for (size_t i = 0; i < view->nroots; i++) {
        const pkgstore_trust_root *root = view->roots[i];
        int valid = root_chain_valid(view, i, detail, sizeof detail);
        cli_format_time(created, sizeof created, (long long)pkgstore_trust_root_created(root));
        printf("%sROOT %" PRIu64 "  created %s  threshold %u of %zu  %s%s\n", i ? "\n" : "",
               pkgstore_trust_root_version(root), created, pkgstore_trust_root_threshold(root),
               pkgstore_trust_root_key_count(root),
               valid ? (i ? "valid rotation" : "self-signed to threshold") : "NOT VALID: ",
               valid ? "" : detail);
        for (size_t k = 0; k < pkgstore_trust_root_key_count(root); k++) {
            const char *keyid = NULL, *name = NULL;
            pkgstore_trust_root_key(&keyid, &name, root, k);
            printf("  key        %s", keyid);
            if (*name) {
                putchar(' ');
                cli_json_string(stdout, name);
            }
            putchar('\n');
        }
        for (size_t k = 0; k < pkgstore_trust_root_signature_count(root); k++)
            printf("  signed by  %s\n", pkgstore_trust_root_signature_keyid(root, k));
    }
    if (view->roots_cut)
        printf("(versions more than %d below the newest were not asked for)\n", ROOT_FETCH_MAX);
    printf("\nREVOCATIONS  generation %" PRIu64 "%s\n", view->generation,
           view->nrevocations ? "" : "  none");
    for (size_t i = 0; i < view->nrevocations; i++) {
        const pkgstore_trust_revocation *rev = view->revocations[i];
        int valid = revocation_valid(view, i, detail, sizeof detail);
        cli_format_time(created, sizeof created,
                        (long long)pkgstore_trust_revocation_created(rev));
        uint64_t newest = view->nroots ? pkgstore_trust_root_version(view->roots[view->nroots - 1])
                                       : 0;
        if (valid)
            printf("%s %s  created %s  signed to threshold by root %" PRIu64 "\n",
                   pkgstore_trust_revocation_name(rev), pkgstore_trust_revocation_version(rev),
                   created, newest);
        else if (newest)
            printf("%s %s  created %s  NOT VALID under root %" PRIu64 ": %s\n",
                   pkgstore_trust_revocation_name(rev), pkgstore_trust_revocation_version(rev),
                   created, newest, detail);
        else
            printf("%s %s  created %s  unchecked: %s\n", pkgstore_trust_revocation_name(rev),
                   pkgstore_trust_revocation_version(rev), created, detail);
        if (*pkgstore_trust_revocation_reason(rev)) {
            printf("  reason     ");
            cli_json_string(stdout, pkgstore_trust_revocation_reason(rev));
            putchar('\n');
        }
        for (size_t k = 0; k < pkgstore_trust_revocation_signature_count(rev); k++)
            printf("  signed by  %s\n", pkgstore_trust_revocation_signature_keyid(rev, k));
    }
}

static int show_trust(const char *dir, const http_client *client, int json)
{
    trust_view view;
    memset(&view, 0, sizeof view);
    int status = client ? trust_read_server(&view, client) : trust_read_dir(&view, dir);
    if (status == CLI_EXIT_OK) {
        if (json)
            status = trust_print_json(&view);
        else
            trust_print_text(&view);
    }
    trust_view_free(&view);
    return status;
}

int main(int argc, char **argv)
{
    enum {
        OPT_STORE = 256,
        OPT_JSON,
        OPT_CANONICAL,
        OPT_DIGEST,
        OPT_TRUST,
        OPT_TRUST_DIR,
        OPT_SERVER,
        OPT_TOKEN_FILE,
        OPT_CACERT,
        OPT_HELP,
        OPT_VERSION
    };
    static const struct option options[] = {{"store", required_argument, NULL, OPT_STORE},
                                            {"json", no_argument, NULL, OPT_JSON},
                                            {"canonical", no_argument, NULL, OPT_CANONICAL},
                                            {"digest", no_argument, NULL, OPT_DIGEST},
                                            {"trust", no_argument, NULL, OPT_TRUST},
                                            {"trust-dir", required_argument, NULL, OPT_TRUST_DIR},
                                            {"server", required_argument, NULL, OPT_SERVER},
                                            {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
                                            {"cacert", required_argument, NULL, OPT_CACERT},
                                            {"help", no_argument, NULL, OPT_HELP},
                                            {"version", no_argument, NULL, OPT_VERSION},
                                            {NULL, 0, NULL, 0}};
    const char *store_opt = NULL, *store_dir, *trust_dir = NULL, *server = NULL;
    const char *token_file = NULL, *cacert = NULL;
    pkgstore_store *store = NULL;
    pkgstore_registry *reg = NULL;
    int opt, error, json = 0, canonical = 0, digest_only = 0, trust = 0, status;

    cli_init(argv[0]);
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (opt) {
        case OPT_STORE: store_opt = optarg; break;
        case OPT_JSON: json = 1; break;
        case OPT_CANONICAL: canonical = 1; break;
        case OPT_DIGEST: digest_only = 1; break;
        case OPT_TRUST: trust = 1; break;
        case OPT_TRUST_DIR: trust_dir = optarg; trust = 1; break;
        case OPT_SERVER: server = optarg; trust = 1; break;
        case OPT_TOKEN_FILE: token_file = optarg; break;
        case OPT_CACERT: cacert = optarg; break;
        case OPT_HELP: fputs(usage_text, stdout); return CLI_EXIT_OK;
        case OPT_VERSION: return cli_version();
        case ':':
        default: return cli_option_error(opt, argv);
        }
    }
    int args = argc - optind;
    if ((token_file || cacert) && !server)
        return cli_usage("--token-file and --cacert go with --server");
    if (trust) {
        if (args > 0)
            return cli_usage("--trust takes no NAME or VERSION");
        if (canonical || digest_only)
            return cli_usage("--canonical and --digest show a manifest, not --trust");
        if (server && (trust_dir || store_opt))
            return cli_usage("--server reads the server's trust: not with --store or --trust-dir");
        if (server) {
            http_client client;
            if (http_client_init(&client, cli_prog(), server, token_file, cacert) < 0)
                return CLI_EXIT_USAGE;
            status = show_trust(NULL, &client, json);
        } else {
            char default_dir[4200];
            if (!trust_dir) {
                if ((store_dir = cli_store_dir(store_opt)) == NULL)
                    return CLI_EXIT_USAGE;
                snprintf(default_dir, sizeof default_dir, "%s.trust", store_dir);
                trust_dir = default_dir;
            }
            status = show_trust(trust_dir, NULL, json);
        }
        if (fflush(stdout) != 0) {
            cli_error(NULL, "writing output failed");
            return CLI_EXIT_ERROR;
        }
        return status;
    }
    if (args > 2)
        return cli_usage("unexpected argument '%s'", argv[optind + 2]);
    if ((canonical || digest_only) && args != 2)
        return cli_usage("--canonical and --digest need NAME VERSION");
    if (canonical + digest_only + json > 1)
        return cli_usage("--json, --canonical and --digest exclude each other");
    if (args >= 1 && (error = pkgstore_manifest_name_validate(argv[optind])) < 0) {
        cli_lib_error(argv[optind], error);
        return CLI_EXIT_USAGE;
    }
    if ((store_dir = cli_store_dir(store_opt)) == NULL)
        return CLI_EXIT_USAGE;
    if (cli_open_store(&store, store_dir, PKGSTORE_DURABILITY_FSYNC, 0) < 0)
        return CLI_EXIT_ERROR;
    if ((error = pkgstore_registry_open(&reg, store)) < 0) {
        cli_lib_error(store_dir, error);
        pkgstore_store_free(store);
        return CLI_EXIT_ERROR;
    }

    if (args == 0)
        status = show_names(reg, json);
    else if (args == 1)
        status = show_versions(reg, argv[optind], json);
    else
        status = show_manifest(store, reg, argv[optind], argv[optind + 1], json, canonical, digest_only);

    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    if (fflush(stdout) != 0) {
        cli_error(NULL, "writing output failed");
        return CLI_EXIT_ERROR;
    }
    return status;
}

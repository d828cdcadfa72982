/*
 * pkgstore-push - upload a package artifact to pkgstored.
 *
 *   pkgstore-push --server URL [--token-file F] --name N --version V
 *                 [--platform P] [--type T] [--format F] [--entrypoint E]
 *                 [--depends 'NAME CONSTRAINT']... FILE
 *
 * Streams FILE with PUT /v1/packages/N/V?platform=&type=&format=&entrypoint=
 * &depends=... while hashing it, then checks that the manifest the server returns lists
 * the artifact for that platform with the same digest and size.
 *
 * --sign-key KEY (repeatable) then signs that manifest, the one the server
 * answered with and checked above, and PUTs each envelope to
 * /v1/packages/N/V/signatures; --signature FILE uploads an envelope made
 * offline (pkgstore-sign --manifest). Without FILE, only the signing and
 * the envelopes happen, over the version's current manifest.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "httpclient.h"
#include "files.h"
#include "pkgstore/common.h"
#include "pkgstore/digest.h"
#include "pkgstore/error.h"
#include "pkgstore/manifest.h"
#include "pkgstore/trust.h"

#define PROG "pkgstore-push"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pkgstore-push --server URL [--token-file FILE] [--cacert FILE]\n"
            "                     --name NAME --version VERSION\n"
            "                     [--platform OS/ARCH] [--type primary|addon] [--format FORMAT]\n"
            "                     [--entrypoint PATH] [--depends 'NAME CONSTRAINT']...\n"
            "                     [--force] [--replace] [--json] [--quiet]\n"
            "                     [--sign-key KEY]... [--signature ENVELOPE]... FILE\n"
            "       pkgstore-push --name NAME --version VERSION\n"
            "                     [--sign-key KEY]... [--signature ENVELOPE]...\n"
            "\n"
            "Upload FILE as the artifact of NAME VERSION for one platform and print the\n"
            "resulting manifest. Without FILE, sign or add signatures to the version as\n"
            "it is on the server.\n"
            "\n"
            "  --server URL        pkgstored base URL (default $PKGSTORE_SERVER)\n"
            "  --token-file FILE   admin token (default $PKGSTORE_TOKEN_FILE, then the token\n"
            "                      itself in $PKGSTORE_TOKEN)\n"
            "  --cacert FILE       PEM CA that an https:// server's certificate must chain to\n"
            "                      (default $PKGSTORE_CACERT, else the system's CAs)\n"
            "  --platform P        os/arch[/variant] or 'any' (default: this host)\n"
            "  --type T            primary (default) or addon\n"
            "  --format F          binary, tar, tar+gzip, tar+zstd, tar+xz, zip\n"
            "                      (default: from the file name, else binary)\n"
            "  --entrypoint PATH   executable inside an archive; file name for a binary\n"
            "                      (default for a binary: the package name)\n"
            "  --depends 'NAME CONSTRAINT'\n"
            "                      a primary package this one needs, e.g.\n"
            "                      'otelcol-contrib >=0.90.0 <1.0.0'; NAME alone means any\n"
            "                      version (repeatable). The server refuses the upload\n"
            "                      while it is unmet; a dependency the version already\n"
            "                      has gets the new constraint\n"
            "  --force             skip the server's dependency check\n"
            "  --replace           replace the artifact this version already has for the\n"
            "                      platform (versions are immutable otherwise; refused\n"
            "                      while a policy references the version)\n"
            "  --sign-key KEY      after the upload, sign the manifest the server answered\n"
            "                      with using this private key (pkgstore-key generate) and\n"
            "                      upload the signature; repeatable. The manifest lists\n"
            "                      every platform of the version: sign after the last one\n"
            "  --signature FILE    upload a signature envelope made offline (pkgstore-sign\n"
            "                      --manifest ... --output-dir); repeatable\n"
            "  --json              print the manifest JSON\n"
            "  --quiet             no progress bar\n"
            "  --help, --version\n");
}

/* Append "&key=value" (escaped) to query, size bytes in all. */
static int query_add(char *query, size_t size, const char *key, const char *value)
{
    char *escaped = http_escape(value);
    if (!escaped)
        return -1;
    size_t len = strlen(query);
    int n = snprintf(query + len, size - len, "%s%s=%s", len ? "&" : "?", key, escaped);
    free(escaped);
    return (n < 0 || (size_t)n >= size - len) ? -1 : 0;
}

#define SIGN_KEYS_MAX 32
/* a manifest holds no more */
#define DEPENDS_MAX PKGSTORE_MANIFEST_DEPENDENCIES_MAX

/* The keys and envelopes given, released at exit whatever path it takes
 * (the keys' private halves are cleared by OpenSSL when freed). */
static pkgstore_trust_key *sign_keys[SIGN_KEYS_MAX];
static char *envelopes[SIGN_KEYS_MAX];

static void release_signing(void)
{
    for (size_t i = 0; i < SIGN_KEYS_MAX; i++) {
        pkgstore_trust_key_free(sign_keys[i]);
        free(envelopes[i]);
    }
}

/* PUT one envelope (NUL-terminated canonical JSON) to the version's
 * signatures; prints the outcome. 0 or -1. */
static int put_signature(const http_client *client, const char *name, const char *version,
                         const char *envelope, const char *what, int quiet)
{
    char *name_escaped = http_escape(name), *version_escaped = http_escape(version);
    char path[2048];
    int error = -1;
    if (!name_escaped || !version_escaped)
        goto out;
    snprintf(path, sizeof path, "/v1/packages/%s/%s/signatures", name_escaped, version_escaped);
    http_reply reply;
    if (http_request(&reply, client, "PUT", path, envelope) < 0 ||
        (reply.status != 201 && reply.status != 200)) {
        fprintf(stderr, PROG ": signature %s: %s\n", what, http_reply_error(&reply));
    } else {
        json_t *body = json_loads(reply.body, 0, NULL);
        if (!quiet)
            fprintf(stderr, "%s signature %s (key %.16s) of %s %s\n",
                    reply.status == 201 ? "added" : "already held", what,
                    json_string_value(json_object_get(body, "keyid")), name, version);
        json_decref(body);
        error = 0;
    }
    http_reply_free(&reply);
out:
    free(name_escaped);
    free(version_escaped);
    return error;
}

/* Sign manifest_text (the server's canonical manifest of name version) with
 * each key and upload the envelopes. 0 or -1. */
static int sign_and_put(const http_client *client, const char *name, const char *version,
                        const char *manifest_text, pkgstore_trust_key *const *keys,
                        const char *const *key_paths, size_t nkeys, int quiet)
{
    pkgstore_manifest *manifest = NULL;
    if (pkgstore_manifest_parse(&manifest, manifest_text, strlen(manifest_text)) < 0) {
        fprintf(stderr, PROG ": the server's manifest of %s %s: %s\n", name, version,
                pkgstore_error_detail());
        return -1;
    }
    int error = 0;
    for (size_t i = 0; i < nkeys && error == 0; i++) {
        char *envelope = NULL;
        if (pkgstore_trust_manifest_sign(&envelope, NULL, keys[i], manifest) < 0) {
            fprintf(stderr, PROG ": %s: %s\n", key_paths[i], pkgstore_error_detail());
            error = -1;
            break;
        }
        error = put_signature(client, name, version, envelope, key_paths[i], quiet);
        pkgstore_free(envelope);
    }
    pkgstore_manifest_free(manifest);
    return error;
}

/* GET the version's manifest (canonical JSON) into *out (free()). */
static int fetch_manifest(char **out, const http_client *client, const char *name,
                          const char *version)
{
    char *name_escaped = http_escape(name), *version_escaped = http_escape(version);
    char path[2048];
    int error = -1;
    *out = NULL;
    if (name_escaped && version_escaped) {
        snprintf(path, sizeof path, "/v1/packages/%s/%s", name_escaped, version_escaped);
        http_reply reply;
        if (http_request(&reply, client, "GET", path, NULL) < 0 || reply.status != 200) {
            fprintf(stderr, PROG ": %s %s: %s\n", name, version, http_reply_error(&reply));
            http_reply_free(&reply);
        } else {
            *out = reply.body; /* now owned by the caller */
            error = 0;
        }
    }
    free(name_escaped);
    free(version_escaped);
    return error;
}

int main(int argc, char **argv)
{
    const char *server = getenv("PKGSTORE_SERVER"), *token_file = NULL, *cacert = NULL,
               *name = NULL,
               *version = NULL, *platform = NULL, *type = "primary", *format = NULL,
               *entrypoint = NULL;
    int force = 0, replace = 0, json_out = 0, quiet = 0;
    const char *key_paths[SIGN_KEYS_MAX], *signature_paths[SIGN_KEYS_MAX];
    const char *depends[DEPENDS_MAX];
    size_t nkeys = 0, nsignatures = 0, ndepends = 0;
    enum { O_SERVER = 256, O_TOKEN, O_NAME, O_VERSION, O_PLATFORM, O_TYPE, O_FORMAT, O_ENTRY,
           O_FORCE, O_REPLACE, O_JSON, O_QUIET, O_HELP, O_VERSION_FLAG, O_CACERT, O_SIGN_KEY,
           O_SIGNATURE, O_DEPENDS };
    static const struct option options[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"token-file", required_argument, NULL, O_TOKEN},
        {"cacert", required_argument, NULL, O_CACERT},
        {"name", required_argument, NULL, O_NAME},
        {"version", required_argument, NULL, O_VERSION},
        {"platform", required_argument, NULL, O_PLATFORM},
        {"type", required_argument, NULL, O_TYPE},
        {"format", required_argument, NULL, O_FORMAT},
        {"entrypoint", required_argument, NULL, O_ENTRY},
        {"depends", required_argument, NULL, O_DEPENDS},
        {"force", no_argument, NULL, O_FORCE},
        {"replace", no_argument, NULL, O_REPLACE},
        {"json", no_argument, NULL, O_JSON},
        {"quiet", no_argument, NULL, O_QUIET},
        {"sign-key", required_argument, NULL, O_SIGN_KEY},
        {"signature", required_argument, NULL, O_SIGNATURE},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    cli_init(argv[0]);
    /* "--version" alone prints ours; "--version V" names the package's. */
    if (argc == 2 && strcmp(argv[1], "--version") == 0)
        return cli_version();
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (opt) {
        case O_SERVER: server = optarg; break;
        case O_TOKEN: token_file = optarg; break;
        case O_CACERT: cacert = optarg; break;
        case O_NAME: name = optarg; break;
        case O_VERSION: version = optarg; break;
        case O_PLATFORM: platform = optarg; break;
        case O_TYPE: type = optarg; break;
        case O_FORMAT: format = optarg; break;
        case O_ENTRY: entrypoint = optarg; break;
        case O_DEPENDS:
            if (ndepends == DEPENDS_MAX)
                return cli_usage("--depends: at most %d", DEPENDS_MAX);
            depends[ndepends++] = optarg;
            break;
        case O_FORCE: force = 1; break;
        case O_REPLACE: replace = 1; break;
        case O_JSON: json_out = 1; break;
        case O_QUIET: quiet = 1; break;
        case O_SIGN_KEY:
            if (nkeys == SIGN_KEYS_MAX)
                return cli_usage("--sign-key: at most %d keys", SIGN_KEYS_MAX);
            key_paths[nkeys++] = optarg;
            break;
        case O_SIGNATURE:
            if (nsignatures == SIGN_KEYS_MAX)
                return cli_usage("--signature: at most %d envelopes", SIGN_KEYS_MAX);
            signature_paths[nsignatures++] = optarg;
            break;
        case O_HELP: usage(stdout); return 0;
        case ':':
        default: return cli_option_error(opt, argv);
        }
    }
    if (!name || !version)
        return cli_usage("--name and --version are required");
    if (optind + 1 < argc || (optind == argc && !nkeys && !nsignatures))
        return cli_usage("exactly one FILE is required (or, without FILE, --sign-key or "
                         "--signature)");
    if (strcmp(type, "primary") != 0 && strcmp(type, "addon") != 0)
        return cli_usage("--type: must be primary or addon, not '%s'", type);
    if (ndepends && optind == argc)
        return cli_usage("--depends needs FILE: dependencies are set by an upload");
    /* checked here as the server checks them, so that a bad one is a usage
     * error and nothing is sent */
    static pkgstore_dependency parsed[DEPENDS_MAX];
    for (size_t i = 0; i < ndepends; i++) {
        if (pkgstore_dependency_parse(&parsed[i], depends[i]) < 0)
            return cli_usage("--depends: '%s': %s", depends[i], pkgstore_error_detail());
        for (size_t j = 0; j < i; j++)
            if (strcmp(parsed[j].name, parsed[i].name) == 0)
                return cli_usage("--depends: '%s' is given twice", parsed[i].name);
    }
    /* Every key and envelope is read before anything is sent: a bad one
     * stops the push before the upload. */
    atexit(release_signing);
    for (size_t i = 0; i < nkeys; i++) {
        if (pkgstore_trust_key_load(&sign_keys[i], key_paths[i]) < 0 ||
            !pkgstore_trust_key_has_private(sign_keys[i])) {
            fprintf(stderr, PROG ": --sign-key %s: %s\n", key_paths[i],
                    sign_keys[i] ? "a public key: signing needs the private key (.key)"
                                         : pkgstore_error_detail());
            return 2;
        }
    }
    for (size_t i = 0; i < nsignatures; i++) {
        size_t len = 0;
        pkgstore_trust_envelope *env = NULL;
        if (cli_read_file(&envelopes[i], &len, signature_paths[i],
                          PKGSTORE_TRUST_ENVELOPE_SIZE_MAX) < 0)
            return 2;
        if (pkgstore_trust_envelope_parse(&env, envelopes[i], len) < 0) {
            fprintf(stderr, PROG ": --signature %s: %s\n", signature_paths[i],
                    pkgstore_error_detail());
            return 2;
        }
        pkgstore_trust_envelope_free(env);
    }
    if (optind == argc) { /* no FILE: signatures of the version as it is */
        http_client client;
        if (http_client_init(&client, PROG, server, token_file, cacert) < 0)
            return 2;
        char *manifest_text = NULL;
        int failed = 0;
        if (nkeys && (fetch_manifest(&manifest_text, &client, name, version) < 0 ||
                      sign_and_put(&client, name, version, manifest_text, sign_keys, key_paths,
                                   nkeys, quiet) < 0))
            failed = 1;
        for (size_t i = 0; !failed && i < nsignatures; i++)
            failed = put_signature(&client, name, version, envelopes[i], signature_paths[i],
                                   quiet) < 0;
        free(manifest_text);
        return failed;
    }
    const char *path = argv[optind];
    char host_platform[128];
    if (!platform) {
        struct utsname uts;
        if (uname(&uts) < 0) {
            fprintf(stderr, PROG ": uname: %s\n", strerror(errno));
            return 1;
        }
        /* the server normalizes aliases such as x86_64 and aarch64 */
        snprintf(host_platform, sizeof host_platform, "linux/%s", uts.machine);
        platform = host_platform;
    }

    FILE *file = fopen(path, "rb");
    if (!file) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct stat st;
    if (fstat(fileno(file), &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, PROG ": %s: not a regular file\n", path);
        fclose(file);
        return 1;
    }

    http_client client;
    if (http_client_init(&client, PROG, server, token_file, cacert) < 0) {
        fclose(file);
        return 2;
    }
    /* room for every value escaped (at most three times as long) and its
     * "&key=" */
    const char *values[] = {platform, type, format, entrypoint};
    size_t query_size = 64;
    for (size_t i = 0; i < sizeof values / sizeof *values; i++)
        query_size += values[i] ? 3 * strlen(values[i]) + 16 : 0;
    for (size_t i = 0; i < ndepends; i++)
        query_size += 3 * strlen(depends[i]) + 16;
    char *name_escaped = http_escape(name), *version_escaped = http_escape(version);
    char *query = calloc(1, query_size), *url_path = NULL;
    int bad = !name_escaped || !version_escaped || !query ||
              query_add(query, query_size, "platform", platform) < 0 ||
              query_add(query, query_size, "type", type) < 0 ||
              (format && query_add(query, query_size, "format", format) < 0) ||
              (entrypoint && query_add(query, query_size, "entrypoint", entrypoint) < 0) ||
              (force && query_add(query, query_size, "force", "1") < 0) ||
              (replace && query_add(query, query_size, "replace", "1") < 0);
    for (size_t i = 0; !bad && i < ndepends; i++)
        bad = query_add(query, query_size, "depends", depends[i]) < 0;
    if (!bad) {
        size_t url_size = strlen(name_escaped) + strlen(version_escaped) + strlen(query) + 32;
        if ((url_path = malloc(url_size)) != NULL)
            snprintf(url_path, url_size, "/v1/packages/%s/%s%s", name_escaped, version_escaped,
                     query);
        bad = !url_path;
    }
    free(name_escaped);
    free(version_escaped);
    free(query);
    if (bad) {
        fclose(file);
        free(url_path);
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }

    pkgstore_digest_ctx *ctx = NULL;
    if (pkgstore_digest_ctx_new(&ctx) < 0) {
        fprintf(stderr, PROG ": sha256: %s\n", pkgstore_error_detail());
        fclose(file);
        free(url_path);
        return 1;
    }
    http_reply reply;
    int progress = !quiet && isatty(STDERR_FILENO);
    int result = http_upload(&reply, &client, url_path, file, (uint64_t)st.st_size, progress, ctx);
    fclose(file);
    free(url_path);
    pkgstore_digest local;
    pkgstore_digest_ctx_final(&local, ctx);
    pkgstore_digest_ctx_free(ctx);
    if (result < 0 || reply.status != 201) {
        fprintf(stderr, PROG ": %s: %s\n", path, http_reply_error(&reply));
        http_reply_free(&reply);
        return 1;
    }

    /* The server hashed what it received: it must be what we sent. */
    char local_str[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest_format(local_str, &local);
    json_error_t jerr;
    json_t *manifest = json_loads(reply.body, 0, &jerr);
    json_t *artifacts = json_object_get(manifest, "artifacts");
    int matched = 0;
    const char *stored_platform = platform;
    for (size_t i = 0; i < json_array_size(artifacts); i++) {
        json_t *artifact = json_array_get(artifacts, i);
        const char *digest = json_string_value(json_object_get(artifact, "digest"));
        json_int_t size = json_integer_value(json_object_get(artifact, "size"));
        if (digest && strcmp(digest, local_str) == 0 && size == (json_int_t)st.st_size) {
            matched = 1;
            if (json_string_value(json_object_get(artifact, "platform")))
                stored_platform = json_string_value(json_object_get(artifact, "platform"));
        }
    }
    if (!matched) {
        fprintf(stderr, PROG ": %s: the server's manifest does not list %s (%lld bytes)\n", path,
                local_str, (long long)st.st_size);
        json_decref(manifest);
        http_reply_free(&reply);
        return 1;
    }
    int failed = 0;
    if (nkeys && sign_and_put(&client, name, version, reply.body, sign_keys, key_paths, nkeys,
                              quiet) < 0)
        failed = 1;
    for (size_t i = 0; !failed && i < nsignatures; i++)
        failed = put_signature(&client, name, version, envelopes[i], signature_paths[i],
                               quiet) < 0;
    if (failed) {
        fprintf(stderr, PROG ": %s %s was uploaded but not signed\n", name, version);
        json_decref(manifest);
        http_reply_free(&reply);
        return 1;
    }
    if (json_out) {
        printf("%s\n", reply.body);
    } else {
        printf("pushed %s %s %s %s (%lld bytes)\n", json_string_value(json_object_get(manifest, "name")),
               json_string_value(json_object_get(manifest, "version")), stored_platform, local_str,
               (long long)st.st_size);
    }
    json_decref(manifest);
    http_reply_free(&reply);
    return 0;
}

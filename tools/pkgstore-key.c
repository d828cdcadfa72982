/*
 * pkgstore-key: Ed25519 signing keys and roots of trust (docs/trust.md).
 * Offline: it never talks to a registry.
 */
#include "cli.h"
#include "files.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "Usage: pkgstore-key generate [--json] --output PREFIX\n"
    "       pkgstore-key id [--json] KEYFILE...\n"
    "       pkgstore-key root create --version N --threshold K --key PUB [--name TEXT]\n"
    "                    [--key PUB [--name TEXT]]... [--sign KEY]... --output ROOT\n"
    "       pkgstore-key root sign --sign KEY [--sign KEY]... ROOT\n"
    "       pkgstore-key root verify [--json] [--trusted OLD_ROOT] ROOT\n"
    "Make and inspect the keys that sign packages, and the root.json that\n"
    "lists them with a threshold (docs/trust.md).\n"
    "\n"
    "  generate         write a new key pair: PREFIX.key (private, mode 0600)\n"
    "                   and PREFIX.pub (public); existing files are never\n"
    "                   overwritten. Prints the key id.\n"
    "  id               print the key id of each key file (private or public)\n"
    "  root create      write a new root listing the public keys, each with an\n"
    "                   optional --name after its --key, signed by every --sign\n"
    "                   key (for a rotation: a threshold of the old root's keys\n"
    "                   and of the new one's); ROOT must not exist\n"
    "  root sign        add signatures to ROOT, replaced atomically (co-signing)\n"
    "  root verify      check that ROOT is signed by a threshold of its own keys,\n"
    "                   and with --trusted that it may replace OLD_ROOT (higher\n"
    "                   version, signed by a threshold of OLD_ROOT's keys)\n"
    "\n"
    "  --json           print JSON\n"
    "  --help           show this help\n"
    "  --version        show the program version\n"
    "\n"
    "Exit status: 0 success, 1 a root does not verify, 2 usage error, 3 any\n"
    "other error (including an unreadable or malformed file).\n";

enum {
    OPT_OUTPUT = 256,
    OPT_JSON,
    OPT_VERSION_NUMBER,
    OPT_THRESHOLD,
    OPT_KEY,
    OPT_NAME,
    OPT_SIGN,
    OPT_TRUSTED,
    OPT_HELP,
    OPT_VERSION
};

#define MAX_KEYS 64

typedef struct args {
    const char *output, *trusted;
    int json;
    const char *version_text, *threshold_text;
    const char *keys[MAX_KEYS], *names[MAX_KEYS];
    size_t key_count;
    const char *signers[MAX_KEYS];
    size_t signer_count;
} args;

static int load_key(pkgstore_trust_key **out, const char *path, int need_private)
{
    int error = pkgstore_trust_key_load(out, path);
    if (error < 0) {
        cli_lib_error(path, error);
        return error;
    }
    if (need_private && !pkgstore_trust_key_has_private(*out)) {
        cli_error(path, "a public key cannot sign (pass the .key file)");
        pkgstore_trust_key_free(*out);
        *out = NULL;
        return PKGSTORE_EINVALID;
    }
    return 0;
}

static int cmd_generate(const args *a)
{
    char priv[4096], pub[4096];
    pkgstore_trust_key *key = NULL;
    int error;
    if (!a->output)
        return cli_usage("generate needs --output PREFIX");
    if (snprintf(priv, sizeof(priv), "%s.key", a->output) >= (int)sizeof(priv) ||
        snprintf(pub, sizeof(pub), "%s.pub", a->output) >= (int)sizeof(pub))
        return cli_usage("--output: path too long");
    if ((error = pkgstore_trust_key_generate(&key)) < 0) {
        cli_lib_error("generate", error);
        return CLI_EXIT_ERROR;
    }
    if ((error = pkgstore_trust_key_save_private(key, priv)) < 0) {
        cli_lib_error(priv, error);
        pkgstore_trust_key_free(key);
        return CLI_EXIT_ERROR;
    }
    if ((error = pkgstore_trust_key_save_public(key, pub)) < 0) {
        cli_lib_error(pub, error);
        cli_error(priv, "written, but not its public key; remove it and run again");
        pkgstore_trust_key_free(key);
        return CLI_EXIT_ERROR;
    }
    if (a->json) {
        printf("{\"keyid\": \"%s\", \"private\": ", pkgstore_trust_key_id(key));
        cli_json_string(stdout, priv);
        printf(", \"public\": ");
        cli_json_string(stdout, pub);
        printf("}\n");
    } else {
        printf("%s\n", pkgstore_trust_key_id(key));
    }
    pkgstore_trust_key_free(key);
    return CLI_EXIT_OK;
}

static int cmd_id(const args *a, char **files, int count)
{
    int status = CLI_EXIT_OK;
    (void)a;
    if (count == 0)
        return cli_usage("id needs a KEYFILE");
    if (a->json)
        printf("{\"keys\": [");
    for (int i = 0; i < count; i++) {
        pkgstore_trust_key *key = NULL;
        if (load_key(&key, files[i], 0) < 0) {
            status = CLI_EXIT_ERROR;
            continue;
        }
        if (a->json) {
            printf("%s\n  {\"file\": ", i ? "," : "");
            cli_json_string(stdout, files[i]);
            printf(", \"keyid\": \"%s\", \"private\": %s}", pkgstore_trust_key_id(key),
                   pkgstore_trust_key_has_private(key) ? "true" : "false");
        } else {
            printf("%s  %s\n", pkgstore_trust_key_id(key), files[i]);
        }
        pkgstore_trust_key_free(key);
    }
    if (a->json)
        printf("%s]}\n", count ? "\n" : "");
    return status;
}

static int parse_positive(unsigned long long *out, const char *option, const char *text)
{
    char *end;
    if (!text || !*text || *text == '-' ||
        (*out = strtoull(text, &end, 10), *end != '\0') || *out == 0)
        return cli_usage("%s: not a positive integer: '%s'", option, text ? text : "");
    return 0;
}

static int write_root(const pkgstore_trust_root *root, const char *path, int replace)
{
    char *text = NULL;
    size_t len = 0;
    int error;
    if ((error = pkgstore_trust_root_serialize(&text, &len, root)) < 0) {
        cli_lib_error(path, error);
        return -1;
    }
    error = cli_write_file(path, text, len, 0644, replace);
    pkgstore_free(text);
    return error;
}

static int sign_with(pkgstore_trust_root *root, const args *a)
{
    for (size_t i = 0; i < a->signer_count; i++) {
        pkgstore_trust_key *key = NULL;
        int error;
        if (load_key(&key, a->signers[i], 1) < 0)
            return -1;
        error = pkgstore_trust_root_sign(root, key);
        pkgstore_trust_key_free(key);
        if (error < 0) {
            cli_lib_error(a->signers[i], error);
            return -1;
        }
    }
    return 0;
}

static int cmd_root_create(const args *a)
{
    unsigned long long version, threshold;
    pkgstore_trust_root *root = NULL;
    int status = CLI_EXIT_ERROR, error;
    if (!a->output)
        return cli_usage("root create needs --output ROOT");
    if (!a->version_text || !a->threshold_text)
        return cli_usage("root create needs --version N and --threshold K");
    if (parse_positive(&version, "--version", a->version_text) ||
        parse_positive(&threshold, "--threshold", a->threshold_text))
        return CLI_EXIT_USAGE;
    if (a->key_count == 0)
        return cli_usage("root create needs at least one --key");
    if (threshold > a->key_count)
        return cli_usage("--threshold %llu is more than the %zu keys listed", threshold,
                         a->key_count);
    if ((error = pkgstore_trust_root_new(&root, version)) < 0) {
        cli_lib_error("root", error);
        return CLI_EXIT_USAGE;
    }
    for (size_t i = 0; i < a->key_count; i++) {
        pkgstore_trust_key *key = NULL;
        if (load_key(&key, a->keys[i], 0) < 0)
            goto out;
        error = pkgstore_trust_root_add_key(root, key, a->names[i]);
        pkgstore_trust_key_free(key);
        if (error < 0) {
            cli_lib_error(a->keys[i], error);
            goto out;
        }
    }
    pkgstore_trust_root_set_threshold(root, (unsigned)threshold);
    if (sign_with(root, a) < 0 || write_root(root, a->output, 0) < 0)
        goto out;
    if ((error = pkgstore_trust_root_verify(root, NULL)) < 0)
        cli_error(a->output, "written, not yet valid: %s (add signatures with 'root sign')",
                  pkgstore_error_detail());
    status = CLI_EXIT_OK;
out:
    pkgstore_trust_root_free(root);
    return status;
}

static int load_root(pkgstore_trust_root **out, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    int error;
    *out = NULL;
    if (cli_read_file(&text, &len, path, PKGSTORE_TRUST_DOCUMENT_SIZE_MAX) < 0)
        return PKGSTORE_EIO;
    if ((error = pkgstore_trust_root_parse(out, text, len)) < 0)
        cli_lib_error(path, error);
    free(text);
    return error;
}

static int cmd_root_sign(const args *a, const char *path)
{
    pkgstore_trust_root *root = NULL;
    int status = CLI_EXIT_ERROR;
    if (a->signer_count == 0)
        return cli_usage("root sign needs --sign KEY");
    if (load_root(&root, path) < 0)
        return CLI_EXIT_ERROR;
    if (sign_with(root, a) == 0 && write_root(root, path, 1) == 0)
        status = CLI_EXIT_OK;
    pkgstore_trust_root_free(root);
    return status;
}

static int cmd_root_verify(const args *a, const char *path)
{
    pkgstore_trust_root *root = NULL, *trusted = NULL;
    int status = CLI_EXIT_ERROR, error;
    if (load_root(&root, path) < 0 || (a->trusted && load_root(&trusted, a->trusted) < 0))
        goto out;
    error = pkgstore_trust_root_verify(root, trusted);
    if (error < 0 && error != PKGSTORE_EDENIED) {
        cli_lib_error(path, error);
        goto out;
    }
    status = error == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    if (a->json) {
        char created[32];
        cli_format_time(created, sizeof(created), (long long)pkgstore_trust_root_created(root));
        printf("{\"valid\": %s, \"version\": %llu, \"threshold\": %u, \"created\": \"%s\", "
               "\"signatures\": %zu, ",
               error == 0 ? "true" : "false",
               (unsigned long long)pkgstore_trust_root_version(root),
               pkgstore_trust_root_threshold(root), created,
               pkgstore_trust_root_signature_count(root));
        if (error < 0) {
            printf("\"reason\": ");
            cli_json_string(stdout, pkgstore_error_detail());
            printf(", ");
        }
        printf("\"keys\": [");
        for (size_t i = 0; i < pkgstore_trust_root_key_count(root); i++) {
            const char *keyid, *name;
            pkgstore_trust_root_key(&keyid, &name, root, i);
            printf("%s{\"keyid\": \"%s\", \"name\": ", i ? ", " : "", keyid);
            cli_json_string(stdout, name);
            putchar('}');
        }
        printf("]}\n");
    } else if (error == 0) {
        printf("%s: valid: version %llu, %u of %zu keys%s\n", path,
               (unsigned long long)pkgstore_trust_root_version(root),
               pkgstore_trust_root_threshold(root), pkgstore_trust_root_key_count(root),
               trusted ? ", may replace the trusted root" : "");
    }
    if (error < 0)
        cli_lib_error(path, error);
out:
    pkgstore_trust_root_free(root);
    pkgstore_trust_root_free(trusted);
    return status;
}

int main(int argc, char **argv)
{
    /* --version is the program's, except after "root create", where it is
     * the root's version number. */
    static const struct option options[] = {{"output", required_argument, NULL, OPT_OUTPUT},
                                            {"json", no_argument, NULL, OPT_JSON},
                                            {"threshold", required_argument, NULL, OPT_THRESHOLD},
                                            {"key", required_argument, NULL, OPT_KEY},
                                            {"name", required_argument, NULL, OPT_NAME},
                                            {"sign", required_argument, NULL, OPT_SIGN},
                                            {"trusted", required_argument, NULL, OPT_TRUSTED},
                                            {"help", no_argument, NULL, OPT_HELP},
                                            {"version", no_argument, NULL, OPT_VERSION},
                                            {NULL, 0, NULL, 0}};
    struct option create_options[sizeof(options) / sizeof(options[0])];
    const struct option *table = options;
    const char *command = NULL, *sub = NULL;
    args a;
    int opt;

    memset(&a, 0, sizeof(a));
    cli_init(argv[0]);
    /* the command words come first: generate, id, root create|sign|verify */
    optind = 1;
    if (argc > 1 && argv[1][0] != '-') {
        command = argv[optind++];
        if (strcmp(command, "root") == 0 && argc > 2 && argv[2][0] != '-')
            sub = argv[optind++];
    }
    if (command && sub && strcmp(command, "root") == 0 && strcmp(sub, "create") == 0) {
        memcpy(create_options, options, sizeof(options));
        for (size_t i = 0; create_options[i].name; i++)
            if (strcmp(create_options[i].name, "version") == 0) {
                create_options[i].has_arg = required_argument;
                create_options[i].val = OPT_VERSION_NUMBER;
            }
        table = create_options;
    }
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":o:", table, NULL)) != -1) {
        switch (opt) {
        case 'o':
        case OPT_OUTPUT: a.output = optarg; break;
        case OPT_JSON: a.json = 1; break;
        case OPT_THRESHOLD: a.threshold_text = optarg; break;
        case OPT_VERSION_NUMBER: a.version_text = optarg; break;
        case OPT_KEY:
            if (a.key_count == MAX_KEYS)
                return cli_usage("more than %d --key options", MAX_KEYS);
            a.keys[a.key_count++] = optarg;
            break;
        case OPT_NAME:
            if (a.key_count == 0 || a.names[a.key_count - 1])
                return cli_usage("--name names the --key just before it");
            a.names[a.key_count - 1] = optarg;
            break;
        case OPT_SIGN:
            if (a.signer_count == MAX_KEYS)
                return cli_usage("more than %d --sign options", MAX_KEYS);
            a.signers[a.signer_count++] = optarg;
            break;
        case OPT_TRUSTED: a.trusted = optarg; break;
        case OPT_HELP: fputs(usage_text, stdout); return CLI_EXIT_OK;
        case OPT_VERSION: return cli_version();
        case ':':
        default: return cli_option_error(opt, argv);
        }
    }
    if (!command)
        return cli_usage("need a command: generate, id or root");
    if (strcmp(command, "generate") == 0) {
        if (optind < argc)
            return cli_usage("unexpected argument '%s'", argv[optind]);
        return cmd_generate(&a);
    }
    if (strcmp(command, "id") == 0)
        return cmd_id(&a, argv + optind, argc - optind);
    if (strcmp(command, "root") != 0)
        return cli_usage("unknown command '%s' (generate, id or root)", command);
    if (!sub)
        return cli_usage("root needs a subcommand: create, sign or verify");
    if (strcmp(sub, "create") == 0) {
        if (optind < argc)
            return cli_usage("unexpected argument '%s'", argv[optind]);
        return cmd_root_create(&a);
    }
    if (strcmp(sub, "sign") != 0 && strcmp(sub, "verify") != 0)
        return cli_usage("unknown root subcommand '%s' (create, sign or verify)", sub);
    if (argc - optind != 1)
        return cli_usage("root %s needs exactly one ROOT file", sub);
    return strcmp(sub, "sign") == 0 ? cmd_root_sign(&a, argv[optind])
                                    : cmd_root_verify(&a, argv[optind]);
}

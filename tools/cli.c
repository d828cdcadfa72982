/*
 * tools/cli.c - shared helpers of the pkgstore-* programs (see cli.h).
 */
#include "cli.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static const char *prog_name = "pkgstore";

void cli_init(const char *argv0)
{
    const char *slash;
    if (argv0 == NULL || argv0[0] == '\0')
        return;
    slash = strrchr(argv0, '/');
    prog_name = slash ? slash + 1 : argv0;
}

const char *cli_prog(void)
{
    return prog_name;
}

void cli_error(const char *object, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog_name);
    if (object != NULL)
        fprintf(stderr, "%s: ", object);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_lib_error(const char *object, int code)
{
    const char *detail = pkgstore_error_detail();
    size_t object_len = object != NULL ? strlen(object) : 0;
    /* the library's detail usually names the object already: say it once */
    if (detail != NULL && object != NULL && strncmp(detail, object, object_len) == 0 &&
        (detail[object_len] == ':' || detail[object_len] == ' '))
        object = NULL;
    if (detail != NULL && detail[0] != '\0')
        cli_error(object, "%s", detail);
    else
        cli_error(object, "%s", pkgstore_strerror(code));
}

int cli_usage(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help' for more information.\n", prog_name);
    return CLI_EXIT_USAGE;
}

int cli_option_error(int opt, char **argv)
{
    if (opt == ':')
        return cli_usage("option '%s' needs a value", argv[optind - 1]);
    /* optopt: an unknown short option, which argv[optind - 1] may not hold
     * (options grouped as in -xy); 0 for an unknown long one */
    if (optopt)
        return cli_usage("unknown option '-%c'", optopt);
    return cli_usage("unknown option '%s'", argv[optind - 1]);
}

int cli_version(void)
{
    printf("%s (pkgstore) %s\n", prog_name, pkgstore_library_version());
    return CLI_EXIT_OK;
}

const char *cli_store_dir(const char *option_value)
{
    const char *env;
    if (option_value != NULL && option_value[0] != '\0')
        return option_value;
    env = getenv(CLI_STORE_ENV);
    if (env != NULL && env[0] != '\0')
        return env;
    cli_error(NULL, "no store given: pass --store DIR or set $%s", CLI_STORE_ENV);
    return NULL;
}

int cli_open_store(pkgstore_store **out, const char *dir, pkgstore_durability durability,
                   int create)
{
    pkgstore_store_options opts = PKGSTORE_STORE_OPTIONS_INIT;
    int error;
    opts.durability = durability;
    opts.no_create = !create;
    if ((error = pkgstore_store_open(out, dir, &opts)) == PKGSTORE_ENOTFOUND && !create &&
        strstr(pkgstore_error_detail(), ": no store here") != NULL)
        cli_error(NULL, "%s (pkgstore-add creates one)", pkgstore_error_detail());
    else if (error < 0)
        cli_lib_error(NULL, error);
    return error;
}

/* A copy of s in which every byte that does not start a valid UTF-8
 * character becomes U+FFFD (jansson judges validity: json_stringn()). */
static char *utf8_sanitized(const char *s)
{
    size_t len = strlen(s), n = 0;
    char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < len;) {
        size_t take = 0;
        for (size_t k = 1; k <= 4 && i + k <= len && !take; k++) {
            json_t *probe = json_stringn(s + i, k);
            if (probe)
                take = k;
            json_decref(probe);
        }
        if (take) {
            memcpy(out + n, s + i, take);
            n += take;
            i += take;
        } else {
            memcpy(out + n, "\xEF\xBF\xBD", 3);
            n += 3;
            i++;
        }
    }
    out[n] = '\0';
    return out;
}

void cli_json_string(FILE *out, const char *s)
{
    /* jansson does the escaping. Bytes that are not UTF-8 (a file name,
     * say) are shown as U+FFFD, so the output is always valid JSON. */
    json_t *value = json_string(s);
    if (!value) {
        char *clean = utf8_sanitized(s);
        value = clean ? json_string(clean) : NULL;
        free(clean);
    }
    if (!value || json_dumpf(value, out, JSON_ENCODE_ANY) < 0)
        fputs("null", out);
    json_decref(value);
}

void cli_format_time(char *buf, size_t size, long long unix_time)
{
    char text[PKGSTORE_MANIFEST_TIME_SIZE];
    if (pkgstore_manifest_time_format(text, (int64_t)unix_time) == 0)
        snprintf(buf, size, "%s", text);
    else
        snprintf(buf, size, "%lld", unix_time);
}

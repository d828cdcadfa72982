/*
 * tools/cli.c - shared helpers of the pkgstore-* programs (see cli.h).
 */
#include "cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
        detail[object_len] == ':')
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

int cli_version(void)
{
    printf("%s (pkgstore) %s\n", prog_name, pkgstore_version());
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
    opts.create = create;
    if ((error = pkgstore_store_open(out, dir, &opts)) < 0)
        cli_lib_error(NULL, error);
    return error;
}

void cli_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

void cli_format_time(char *buf, size_t size, long long unix_time)
{
    time_t t = (time_t)unix_time;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "%lld", unix_time);
}

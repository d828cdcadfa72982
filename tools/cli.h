/*
 * tools/cli.h - what the pkgstore-* programs share: the program name, error
 * printing in the one-line "prog: object: reason" form, finding and opening
 * the store, and writing JSON strings. Public API only.
 */
#ifndef PKGSTORE_CLI_H
#define PKGSTORE_CLI_H

#include <stdio.h>

#include <pkgstore.h>

/* Exit codes shared by the tools (each man page lists its own). */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_ERROR 3

#define CLI_STORE_ENV "COLLECTORCTRL_PACKAGES_DIR"

/* Remember the program name (basename of argv[0]) for messages. */
void cli_init(const char *argv0);
const char *cli_prog(void);

/* "prog: object: reason" on stderr (object may be NULL). */
void cli_error(const char *object, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* "prog: object: <library detail, or the code's message>" on stderr; the object
 * is left out when the detail already starts with it ("object:" or "object "). */
void cli_lib_error(const char *object, int code);

/* Usage error: the message, a hint to --help, and CLI_EXIT_USAGE. */
int cli_usage(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* "prog (pkgstore) X.Y.Z" on stdout; returns CLI_EXIT_OK. */
/* A getopt error (opt ':' or '?', with ":" leading the optstring) as a
 * one-line usage error naming the option; returns 2. */
int cli_option_error(int opt, char **argv);
int cli_version(void);

/* The store directory: --store value, else $COLLECTORCTRL_PACKAGES_DIR.
 * NULL (after printing an error naming both) when neither is set. */
const char *cli_store_dir(const char *option_value);

/* Open the store; prints the error and returns the library code on failure. */
int cli_open_store(pkgstore_store **out, const char *dir, pkgstore_durability durability,
                   int create);

/* Write s as a JSON string literal (quotes included) to out. */
void cli_json_string(FILE *out, const char *s);

/* Unix time as "YYYY-MM-DDTHH:MM:SSZ" into buf (at least 21 bytes), through
 * pkgstore_manifest_time_format(); the bare number outside years 0000-9999. */
void cli_format_time(char *buf, size_t size, long long unix_time);

#endif

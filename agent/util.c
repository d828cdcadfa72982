/*
 * Small helpers of the agent: clock, structured log lines, directories,
 * placeholder expansion. File replacement goes through libpkgstore's
 * install module, never through here.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double agent_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int log_threshold = 1; /* info */

static int level_rank(const char *level)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(level, names[i]))
            return i;
    return -1;
}

int agent_log_set_level(const char *level)
{
    int rank = level ? level_rank(level) : -1;
    if (rank < 0)
        return PKGSTORE_EINVALID;
    log_threshold = rank;
    return 0;
}

void agent_log(const char *level, const char *fmt, ...)
{
    if (level_rank(level) < log_threshold)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ level=%s %s\n", when, ts.tv_nsec / 1000000L, level, line);
}

char *agent_strdup_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = NULL;
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : out;
}

int agent_mkdirs(const char *path, int mode)
{
    char *copy = strdup(path);
    if (!copy)
        return PKGSTORE_ENOMEM;
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, (mode_t)mode) < 0 && errno != EEXIST) {
            free(copy);
            return PKGSTORE_EIO;
        }
        *p = '/';
    }
    int rc = (mkdir(copy, (mode_t)mode) < 0 && errno != EEXIST) ? PKGSTORE_EIO : 0;
    free(copy);
    return rc;
}

char *agent_read_small_file(const char *path, size_t max)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *buf = malloc(max + 1);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    size_t n = fread(buf, 1, max, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

char *agent_expand(const char *text, const agent_kvv *vars)
{
    size_t cap = strlen(text) + 64, len = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (const char *p = text; *p;) {
        const char *insert = NULL;
        size_t insert_len = 0, skip = 1;
        if (*p == '{') {
            const char *close = strchr(p, '}');
            for (size_t i = 0; close && vars && i < vars->count; i++) {
                size_t klen = strlen(vars->items[i].key);
                if ((size_t)(close - p - 1) == klen && strncmp(p + 1, vars->items[i].key, klen) == 0) {
                    insert = vars->items[i].value;
                    insert_len = strlen(insert);
                    skip = klen + 2;
                    break;
                }
            }
        }
        if (!insert) {
            insert = p;
            insert_len = 1;
        }
        if (len + insert_len + 1 > cap) {
            cap = (len + insert_len + 1) * 2;
            char *grown = realloc(out, cap);
            if (!grown) {
                free(out);
                return NULL;
            }
            out = grown;
        }
        memcpy(out + len, insert, insert_len);
        len += insert_len;
        p += skip;
    }
    out[len] = '\0';
    return out;
}

void agent_strv_free(agent_strv *v)
{
    for (size_t i = 0; i < v->count; i++)
        free(v->items[i]);
    free(v->items);
    v->items = NULL;
    v->count = 0;
}

void agent_kvv_free(agent_kvv *v)
{
    for (size_t i = 0; i < v->count; i++) {
        free(v->items[i].key);
        free(v->items[i].value);
    }
    free(v->items);
    v->items = NULL;
    v->count = 0;
}

static char error_detail[1024];

int agent_error_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_detail, sizeof error_detail, fmt, ap);
    va_end(ap);
    return code;
}

const char *agent_error(void)
{
    return error_detail;
}

int agent_valid_name(const char *name)
{
    if (!name || !*name || strlen(name) > 128 || name[0] == '.')
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return 0;
    return 1;
}

char *agent_trimmed(char *text)
{
    if (!text)
        return NULL;
    char *start = text;
    while (*start == ' ' || *start == '\t' || *start == '\n' || *start == '\r')
        start++;
    size_t n = strlen(start);
    while (n > 0 && (start[n - 1] == ' ' || start[n - 1] == '\t' || start[n - 1] == '\n' ||
                     start[n - 1] == '\r'))
        n--;
    memmove(text, start, n);
    text[n] = '\0';
    return text;
}

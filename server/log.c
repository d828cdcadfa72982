/*
 * server/log.c - structured log lines on stderr.
 *
 * One line per event: "ts=<RFC 3339 UTC, ms> level=<level> msg=<msg> k=v...",
 * written with a single write(2) so that lines from the worker threads never
 * interleave.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

enum log_level log_threshold = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(enum log_level *out, const char *str)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(str, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *log_quote(char *buf, size_t size, const char *s)
{
    size_t o = 0;
    int needs_quotes = (s == NULL || *s == '\0');
    if (s == NULL)
        s = "";
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c == '"' || c == '\\' || c == '=' || c >= 0x7f) {
            needs_quotes = 1;
            break;
        }
    }
    if (size < 8) {
        if (size)
            buf[0] = '\0';
        return buf;
    }
    if (needs_quotes)
        buf[o++] = '"';
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        /* this character's escape, then room for "...", the quote and NUL */
        size_t need = (c == '"' || c == '\\') ? 2 : (c < 0x20 || c == 0x7f) ? 4 : 1;
        if (o + need + 5 > size) {
            buf[o++] = '.';
            buf[o++] = '.';
            buf[o++] = '.';
            break;
        }
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    if (needs_quotes)
        buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

void log_msg(enum log_level level, const char *msg, const char *kv_fmt, ...)
{
    if (level < log_threshold)
        return;
    char line[2048];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    char quoted_msg[256];
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, now.tv_nsec / 1000000L, level_names[level],
                     log_quote(quoted_msg, sizeof quoted_msg, msg));
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (kv_fmt && *kv_fmt && len + 2 < sizeof line) {
        line[len++] = ' ';
        va_list ap;
        va_start(ap, kv_fmt);
        int m = vsnprintf(line + len, sizeof line - len, kv_fmt, ap);
        va_end(ap);
        if (m > 0)
            len += (size_t)m < sizeof line - len ? (size_t)m : sizeof line - len - 1;
    }
    if (len >= sizeof line - 1)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, len);
    (void)ignored;
}

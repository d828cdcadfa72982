/*
 * server/http/parse.c - request parsers that run before authentication.
 *
 * Anyone who can reach the port reaches this code, so it is kept free of
 * libmicrohttpd and libpkgstore and fuzzed on its own
 * (fuzz/fuzz_http_parse.c). Numbers are parsed digit by digit with
 * overflow checks rather than with strtoull(), which accepts signs and
 * leading blanks and saturates silently.
 */
#include "parse.h"

#include <string.h>
#include <strings.h>

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int http_percent_decode(char *out, size_t size, const char *src, size_t len, int no_slash)
{
    size_t o = 0;
    if (size == 0)
        return -1;
    out[0] = '\0';
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '\0')
            return -1;
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hex_value(src[i + 1]), lo = hex_value(src[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
            if (c == '\0' || (no_slash && c == '/'))
                return -1;
        }
        if (o + 1 >= size)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

int http_split_path(char seg[HTTP_PATH_SEGMENTS_MAX][HTTP_PATH_SEGMENT_MAX], int *nseg,
                    const char *path, const char **reason)
{
    *nseg = 0;
    if (path[0] != '/') {
        *reason = "path must start with '/'";
        return -1;
    }
    const char *p = path + 1;
    if (*p == '\0')
        return 0;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (*nseg == HTTP_PATH_SEGMENTS_MAX)
            return -2;
        char *decoded = seg[*nseg];
        if (http_percent_decode(decoded, HTTP_PATH_SEGMENT_MAX, p, len, 1) < 0) {
            *reason = len >= HTTP_PATH_SEGMENT_MAX
                          ? "path segment too long"
                          : "path segment has a bad or forbidden escape (NUL, '/' or malformed %)";
            return -1;
        }
        if (strcmp(decoded, "..") == 0 || strcmp(decoded, ".") == 0) {
            *reason = "path segment '.' or '..' is not allowed";
            return -1;
        }
        if (len == 0 && end) /* "//" */
            return -2;
        (*nseg)++;
        if (!end)
            break;
        p = end + 1;
        if (*p == '\0') /* trailing slash */
            return -2;
    }
    return 0;
}

int http_query_next(char *out, size_t size, const char **pos, const char *key)
{
    size_t key_len = strlen(key);
    if (size > 0)
        out[0] = '\0';
    const char *p = *pos;
    if (!p)
        return 0;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t name_len = eq ? (size_t)(eq - p) : len;
        *pos = end ? end + 1 : p + len;
        if (name_len == key_len && memcmp(p, key, key_len) == 0) {
            const char *value = eq ? eq + 1 : p + len;
            size_t value_len = (size_t)(p + len - value);
            return http_percent_decode(out, size, value, value_len, 0) < 0 ? -1 : 1;
        }
        p = *pos;
    }
    return 0;
}

int http_query_value(char *out, size_t size, const char *query, const char *key)
{
    const char *pos = query;
    return http_query_next(out, size, &pos, key);
}

const char *http_bearer_token(const char *value, size_t *len)
{
    *len = 0;
    if (!value || strncasecmp(value, "Bearer ", 7) != 0)
        return NULL;
    value += 7;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t n = strlen(value);
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
        n--;
    *len = n;
    return n ? value : NULL;
}

/* Digits at *p into *out; advances *p. -1 on overflow past max or no digit. */
static int parse_digits(uint64_t *out, const char **p, uint64_t max)
{
    const char *s = *p;
    uint64_t n = 0;
    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned int digit = (unsigned int)(*s - '0');
        if (n > (max - digit) / 10)
            return -1;
        n = n * 10 + digit;
    }
    *out = n;
    *p = s;
    return 0;
}

int http_parse_content_length(int64_t *out, const char *value)
{
    uint64_t n = 0;
    *out = -1;
    if (!value || parse_digits(&n, &value, INT64_MAX) < 0 || *value != '\0')
        return -1;
    *out = (int64_t)n;
    return 0;
}

enum http_range http_parse_range(const char *value, uint64_t size, uint64_t *start_out,
                                 uint64_t *length_out)
{
    if (!value)
        return HTTP_RANGE_NONE;
    while (*value == ' ')
        value++;
    if (strncasecmp(value, "bytes=", 6) != 0)
        return HTTP_RANGE_NONE;
    const char *p = value + 6;
    if (strchr(p, ','))
        return HTTP_RANGE_NONE;
    while (*p == ' ')
        p++;
    uint64_t first = 0, last = 0;
    int has_first = 0, has_last = 0;
    if (*p >= '0' && *p <= '9') {
        if (parse_digits(&first, &p, UINT64_MAX) < 0)
            return HTTP_RANGE_NONE; /* past 2^64: no representation is that large */
        has_first = 1;
    }
    if (*p != '-')
        return HTTP_RANGE_NONE;
    p++;
    if (*p >= '0' && *p <= '9') {
        if (parse_digits(&last, &p, UINT64_MAX) < 0)
            last = UINT64_MAX; /* a suffix or an end past 2^64 means "to the end" */
        while (*p >= '0' && *p <= '9')
            p++;
        has_last = 1;
    }
    while (*p == ' ')
        p++;
    if (*p || (!has_first && !has_last))
        return HTTP_RANGE_NONE;
    if (!has_first) { /* suffix: the last N bytes */
        if (last == 0)
            return HTTP_RANGE_UNSATISFIABLE;
        if (size == 0) /* satisfiable (RFC 9110 14.1.1) but no byte to name: send it all */
            return HTTP_RANGE_NONE;
        uint64_t n = last > size ? size : last;
        *start_out = size - n;
        *length_out = n;
        return HTTP_RANGE_OK;
    }
    if (has_last && last < first)
        return HTTP_RANGE_NONE;
    if (first >= size)
        return HTTP_RANGE_UNSATISFIABLE;
    if (!has_last || last >= size)
        last = size - 1;
    *start_out = first;
    *length_out = last - first + 1;
    return HTTP_RANGE_OK;
}

int http_etag_listed(const char *list, const char *etag, int allow_star, int weak_ok)
{
    if (!list)
        return 0;
    size_t etag_len = strlen(etag);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (!*p)
            break;
        if (*p == '*') {
            if (allow_star)
                return 1;
            p++;
            continue;
        }
        int weak = p[0] == 'W' && p[1] == '/';
        if (weak)
            p += 2;
        const char *start = p;
        if (*p == '"') {
            const char *end = strchr(p + 1, '"');
            if (!end)
                return 0;
            p = end + 1;
        } else {
            while (*p && *p != ',')
                p++;
        }
        if ((!weak || weak_ok) && (size_t)(p - start) == etag_len &&
            strncmp(start, etag, etag_len) == 0)
            return 1;
    }
    return 0;
}

/* A qvalue (RFC 9110 12.4.2): "0", "1", "0.xxx", "1.000". 0 for q=0, 1 for
 * any other well-formed or malformed value (a malformed q is ignored). */
static int qvalue_nonzero(const char *p)
{
    if (p[0] != '0')
        return 1;
    for (p++; *p == '.' || *p == '0'; p++) {
    }
    return *p >= '1' && *p <= '9';
}

int http_accepts_zstd(const char *value)
{
    if (!value)
        return 0;
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *token = p;
        while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        size_t len = (size_t)(p - token);
        int nonzero = 1;
        while (*p && *p != ',') {
            if (*p == ';') {
                p++;
                while (*p == ' ')
                    p++;
                if ((p[0] == 'q' || p[0] == 'Q') && p[1] == '=')
                    nonzero = qvalue_nonzero(p + 2);
            } else {
                p++;
            }
        }
        if (len == 4 && strncasecmp(token, "zstd", 4) == 0 && nonzero)
            return 1;
    }
    return 0;
}

int http_hex_id_parse(unsigned char *out, size_t size, const char *value)
{
    memset(out, 0, size);
    if (!value)
        return -1;
    for (size_t i = 0; i < size; i++) {
        /* value[2 * i] is read only when every byte before it was a hex
         * digit, so a short string stops at its NUL */
        int hi = hex_value(value[2 * i]);
        if (hi < 0)
            goto bad;
        int lo = hex_value(value[2 * i + 1]);
        if (lo < 0)
            goto bad;
        out[i] = (unsigned char)(hi * 16 + lo);
    }
    if (value[2 * size] == '\0')
        return 0;
bad:
    memset(out, 0, size);
    return -1;
}

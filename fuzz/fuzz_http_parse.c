/*
 * fuzz_http_parse: the parsers pkgstored runs before it checks a token
 * (server/http/parse.c). The whole input is given to each of them, as the
 * bytes a client controls (a path, a query, a header value). Checks:
 *   - percent-decoding never writes past its buffer, never yields a NUL,
 *     and with no_slash never turns an escape into '/';
 *   - a split path has at most 5 non-empty segments, none holding NUL or
 *     '/', none "." or "..";
 *   - a query value fits its buffer and holds no NUL;
 *   - a bearer token lies inside the header value, non-empty and unpadded;
 *   - a Content-Length is all digits, and prints back as itself;
 *   - a range satisfies 0 < length and start + length <= size, for sizes
 *     0, 1, 1000, 2^64-1 and one taken from the input;
 *   - etag lists and Accept-Encoding answer 0 or 1, and match the obvious
 *     cases;
 *   - a session id parses only from exactly 64 hex digits, and then prints
 *     back as the same digits (case aside); otherwise it is all zeros.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../server/http/parse.h"
#include "fuzz.h"

static void check_decode(const char *src, size_t len, size_t out_size, int no_slash)
{
    char *out = malloc(out_size ? out_size : 1);
    if (!out)
        return;
    if (http_percent_decode(out, out_size, src, len, no_slash) == 0) {
        size_t n = strlen(out);
        CHECK(n < out_size);
        CHECK(n <= len);
        CHECK(memchr(src, '\0', len) == NULL);
        if (no_slash) { /* a '/' can only come from a raw '/' */
            size_t raw_slashes = 0, out_slashes = 0;
            for (size_t i = 0; i < len; i++)
                raw_slashes += src[i] == '/';
            for (size_t i = 0; i < n; i++)
                out_slashes += out[i] == '/';
            CHECK(out_slashes == raw_slashes);
        }
    }
    free(out);
}

static void check_path(const char *path)
{
    char seg[HTTP_PATH_SEGMENTS_MAX][HTTP_PATH_SEGMENT_MAX];
    int nseg = -1;
    const char *reason = NULL;
    int rc = http_split_path(seg, &nseg, path, &reason);
    CHECK(rc == 0 || rc == -1 || rc == -2);
    if (rc == -1)
        CHECK(reason != NULL && reason[0] != '\0');
    if (rc != 0)
        return;
    CHECK(nseg >= 0 && nseg <= HTTP_PATH_SEGMENTS_MAX);
    for (int i = 0; i < nseg; i++) {
        size_t n = strnlen(seg[i], HTTP_PATH_SEGMENT_MAX);
        CHECK(n > 0 && n < HTTP_PATH_SEGMENT_MAX);
        CHECK(memchr(seg[i], '/', n) == NULL);
        CHECK(strcmp(seg[i], ".") != 0 && strcmp(seg[i], "..") != 0);
    }
}

static void check_query(const char *query, const char *key)
{
    char small[8], large[512];
    int rc = http_query_value(small, sizeof small, query, key);
    CHECK(rc >= -1 && rc <= 1);
    if (rc == 1)
        CHECK(strlen(small) < sizeof small);
    if (rc == 0)
        CHECK(small[0] == '\0');
    int rc_large = http_query_value(large, sizeof large, query, key);
    CHECK(rc_large >= -1 && rc_large <= 1);
    CHECK((rc == 0) == (rc_large == 0)); /* presence does not depend on the buffer */
    if (rc == 1) {                       /* what fits a small buffer fits a large one */
        CHECK(rc_large == 1);
        CHECK(strcmp(small, large) == 0);
    }
    /* every occurrence: the first is http_query_value()'s, *pos only moves
     * forward within the query, and the walk ends */
    const char *pos = query, *end = query ? query + strlen(query) : NULL;
    size_t visits = 0;
    int rc_next;
    while ((rc_next = http_query_next(large, sizeof large, &pos, key)) != 0) {
        CHECK(rc_next == 1 || rc_next == -1);
        if (visits == 0)
            CHECK(rc_next == rc_large);
        CHECK(pos > query && pos <= end);
        CHECK(++visits <= strlen(query) + 1);
    }
    CHECK((visits == 0) == (rc_large == 0));
}

static void check_bearer(const char *value)
{
    size_t len = 99;
    const char *token = http_bearer_token(value, &len);
    if (!token)
        return;
    size_t total = strlen(value);
    CHECK(len > 0);
    CHECK(token >= value + 7 && token + len <= value + total);
    CHECK(token[0] != ' ' && token[0] != '\t');
    CHECK(token[len - 1] != ' ' && token[len - 1] != '\t');
}

static void check_content_length(const char *value)
{
    int64_t n = 0;
    if (http_parse_content_length(&n, value) < 0) {
        CHECK(n == -1);
        return;
    }
    CHECK(n >= 0);
    const char *digits = value;
    while (digits[0] == '0' && digits[1] != '\0')
        digits++;
    char printed[32];
    snprintf(printed, sizeof printed, "%" PRId64, n);
    CHECK(strcmp(printed, digits) == 0);
}

static void check_range(const char *value, uint64_t size)
{
    uint64_t start = 12345, length = 67890;
    enum http_range r = http_parse_range(value, size, &start, &length);
    CHECK(r == HTTP_RANGE_NONE || r == HTTP_RANGE_OK || r == HTTP_RANGE_UNSATISFIABLE);
    if (r != HTTP_RANGE_OK)
        return;
    CHECK(length > 0);
    CHECK(start < size);
    CHECK(length <= size - start); /* start + length <= size, without overflow */
}

static void check_lists(const char *value)
{
    static const char etag[] = "\"sha256:0123abcd\"";
    int strong = http_etag_listed(value, etag, 0, 0);
    int weak = http_etag_listed(value, etag, 0, 1);
    int star = http_etag_listed(value, etag, 1, 1);
    CHECK(strong == 0 || strong == 1);
    CHECK(weak == 0 || weak == 1);
    CHECK(star == 0 || star == 1);
    CHECK(!strong || weak); /* a strong match is also a weak one */
    CHECK(!weak || star);   /* allowing '*' only adds matches */
    if (strcmp(value, etag) == 0)
        CHECK(strong);
    int zstd = http_accepts_zstd(value);
    CHECK(zstd == 0 || zstd == 1);
    if (strcmp(value, "zstd") == 0)
        CHECK(zstd);
}

static void check_hex_id(const char *value)
{
    unsigned char id[32];
    static const unsigned char zeros[32];
    if (http_hex_id_parse(id, sizeof id, value) < 0) {
        CHECK(memcmp(id, zeros, sizeof id) == 0);
        return;
    }
    CHECK(strlen(value) == 2 * sizeof id);
    char printed[2 * sizeof id + 1];
    for (size_t i = 0; i < sizeof id; i++)
        snprintf(printed + 2 * i, 3, "%02x", id[i]);
    CHECK(strncasecmp(printed, value, sizeof printed) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    /* raw bytes, NULs included, as a length-delimited buffer */
    check_decode(text, size, 1, 0);
    check_decode(text, size, 16, 1);
    check_decode(text, size, size + 1, 0);
    check_decode(text, size, size + 1, 1);

    /* the rest see C strings, as libmicrohttpd hands them over */
    check_path(text);
    check_query(text, "format");
    check_query(text, "platform");
    check_query(text, "");
    {
        char key[9] = {0};
        const char *eq = strchr(text, '=');
        if (eq && eq - text < (ptrdiff_t)sizeof key)
            memcpy(key, text, (size_t)(eq - text));
        check_query(text, key);
    }
    check_bearer(text);
    check_content_length(text);

    uint64_t from_input = 0;
    memcpy(&from_input, data, size < sizeof from_input ? size : sizeof from_input);
    check_range(text, 0);
    check_range(text, 1);
    check_range(text, 1000);
    check_range(text, UINT64_MAX);
    check_range(text, from_input);
    check_lists(text);
    check_hex_id(text);

    free(text);
    return 0;
}

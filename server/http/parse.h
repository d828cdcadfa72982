/*
 * server/http/parse.h - the parsers that see request bytes before any
 * token is checked: path segments, query arguments, Authorization,
 * Content-Length, Range, entity-tag lists, Accept-Encoding, session ids.
 *
 * They depend on neither libmicrohttpd nor libpkgstore, so that
 * fuzz/fuzz_http_parse.c can drive them directly. Every function takes its
 * input as bytes or a C string and writes only into the buffers it is given.
 */
#ifndef PKGSTORED_HTTP_PARSE_H
#define PKGSTORED_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_PATH_SEGMENTS_MAX 5
#define HTTP_PATH_SEGMENT_MAX 256

/* Percent-decode [src, src+len) into out (size bytes, NUL-terminated).
 * '+' is a literal plus. Returns 0, or -1 on a bad escape, an encoded NUL,
 * a raw NUL in src, a result that does not fit, or (when no_slash) an
 * encoded '/'. */
int http_percent_decode(char *out, size_t size, const char *src, size_t len, int no_slash);

/* Split a raw path ("/a/b%2Fc") into decoded segments, at most
 * HTTP_PATH_SEGMENTS_MAX of HTTP_PATH_SEGMENT_MAX bytes each. A decoded
 * segment never holds NUL or '/' and is never "." or "..".
 * Returns 0 (*nseg set), -1 with *reason for a 400, or -2 for a path that
 * cannot name any route (404: too many segments, "//", a trailing '/'). */
int http_split_path(char seg[HTTP_PATH_SEGMENTS_MAX][HTTP_PATH_SEGMENT_MAX], int *nseg,
                    const char *path, const char **reason);

/* The value of key in a raw query string ("a=1&b=x%2By"), percent-decoded
 * into out; '+' stays a '+' (the API documents unencoded values such as
 * format=tar+gzip). A key without '=' has the value "". The first
 * occurrence wins. Returns 1 if present and valid, 0 if absent, -1 if its
 * value has a bad escape, a NUL or does not fit. */
int http_query_value(char *out, size_t size, const char *query, const char *key);

/* Every occurrence of key, in order: set *pos to the raw query (NULL: no
 * query) and call until it returns 0. Each call decodes the next value as
 * http_query_value() does into out and moves *pos past it. Returns 1 for a
 * value, 0 when none is left, -1 when this occurrence's value is invalid
 * (*pos is past it as well). */
int http_query_next(char *out, size_t size, const char **pos, const char *key);

/* The token of an "Authorization: Bearer TOKEN" value: *len receives its
 * length (surrounding blanks trimmed). NULL when value is NULL, not the
 * Bearer scheme, or holds an empty token. */
const char *http_bearer_token(const char *value, size_t *len);

/* A Content-Length value: 1*DIGIT, at most INT64_MAX. Returns 0 with *out
 * set, or -1 (*out = -1). */
int http_parse_content_length(int64_t *out, const char *value);

enum http_range { HTTP_RANGE_NONE, HTTP_RANGE_OK, HTTP_RANGE_UNSATISFIABLE };

/* A single "bytes=" range against a representation of size bytes. On
 * HTTP_RANGE_OK, *start + *length <= size and *length > 0. Malformed or
 * multiple ranges give HTTP_RANGE_NONE (serve it all), as RFC 9110
 * allows. */
enum http_range http_parse_range(const char *value, uint64_t size, uint64_t *start,
                                 uint64_t *length);

/* 1 when an entity-tag list (If-None-Match, If-Range) names etag (quotes
 * included) or, with allow_star, '*'. weak_ok: compare weakly (W/"x"
 * matches "x"), as If-None-Match does; If-Range compares strongly. */
int http_etag_listed(const char *list, const char *etag, int allow_star, int weak_ok);

/* 1 when an Accept-Encoding value names zstd with a non-zero q. */
int http_accepts_zstd(const char *value);

/* A random id sent back by a client (a session cookie's value, an
 * X-CSRF-Token): exactly 2 * size hex digits (either case), decoded into
 * out. Returns 0, or -1 (out zeroed) for NULL, another length or a
 * non-hex byte: such a value names no session. */
int http_hex_id_parse(unsigned char *out, size_t size, const char *value);

#endif

/*
 * test_manifest.c - manifest v1: build, modify, canonical form, digest,
 * strict parsing and limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pkgstore/archive.h"
#include "pkgstore/error.h"
#include "pkgstore/manifest.h"

#include "name.h"      /* private: the shared name grammar */
#include "time_text.h" /* private: the shared RFC 3339 text */

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static const char valid_json[] =
    "{\"schemaVersion\":1,\"name\":\"otelcol-contrib\",\"version\":\"0.98.0\","
    "\"type\":\"primary\",\"artifacts\":["
    "{\"platform\":\"linux/amd64\",\"digest\":\"" D1 "\",\"size\":123456,"
    "\"format\":\"binary\",\"entrypoint\":\"otelcol-contrib\"},"
    "{\"platform\":\"linux/arm64\",\"digest\":\"" D2 "\",\"size\":120001,"
    "\"format\":\"tar+gzip\",\"entrypoint\":\"bin/otelcol-contrib\"}],"
    "\"dependencies\":[{\"name\":\"otelcol-contrib\",\"version\":\">=0.90.0 <1.0.0\"}],"
    "\"created\":\"2026-11-27T10:00:00Z\","
    "\"annotations\":{\"org.opencontainers.image.source\":\"https://example.org/x\"}}";

static pkgstore_artifact artifact(const char *platform, const char *digest, uint64_t size,
                                  const char *format, const char *entrypoint)
{
    pkgstore_artifact a;
    memset(&a, 0, sizeof(a));
    snprintf(a.platform, sizeof(a.platform), "%s", platform);
    assert_int_equal(pkgstore_digest_parse(&a.digest, digest), 0);
    a.size = size;
    snprintf(a.format, sizeof(a.format), "%s", format);
    snprintf(a.entrypoint, sizeof(a.entrypoint), "%s", entrypoint);
    return a;
}

/* Parse text; expect code and, when want is non-NULL, a detail starting
 * with want. */
static void expect_parse_error(const char *text, int code, const char *want)
{
    pkgstore_manifest *m = (pkgstore_manifest *)1;
    int rc = pkgstore_manifest_parse(&m, text, strlen(text));
    if (code == 0 && rc == 0) {
        pkgstore_manifest_free(m);
        return;
    }
    if (rc != code)
        fail_msg("parse gave %d (%s), wanted %d for: %.200s", rc, pkgstore_error_detail(), code,
                 text);
    assert_null(m);
    if (want && strncmp(pkgstore_error_detail(), want, strlen(want)) != 0)
        fail_msg("detail \"%s\" does not start with \"%s\"", pkgstore_error_detail(), want);
}

/* valid_json with the first occurrence of from replaced by to. */
static char *mutate(const char *from, const char *to)
{
    const char *at = strstr(valid_json, from);
    assert_non_null(at);
    size_t size = sizeof(valid_json) - strlen(from) + strlen(to);
    char *out = malloc(size);
    assert_non_null(out);
    size_t head = (size_t)(at - valid_json);
    memcpy(out, valid_json, head);
    strcpy(out + head, to);
    strcat(out, at + strlen(from));
    return out;
}

static void expect_mutation_error(const char *from, const char *to, int code, const char *want)
{
    char *text = mutate(from, to);
    expect_parse_error(text, code, want);
    free(text);
}

static void test_manifest__build_and_serialize_canonical(void **state)
{
    (void)state;
    pkgstore_manifest *m = NULL;
    assert_int_equal(pkgstore_manifest_new(&m, "otelcol", "v1.2.3", PKGSTORE_TYPE_PRIMARY), 0);
    assert_string_equal(pkgstore_manifest_version(m), "1.2.3");
    assert_int_equal(pkgstore_manifest_set_created(m, 1795773600), 0); /* 2026-11-27T10:00:00Z */
    pkgstore_artifact a = artifact("Linux/x86_64", D1, 10, "", "");
    assert_int_equal(pkgstore_manifest_add_artifact(m, &a), 0);
    assert_int_equal(pkgstore_manifest_annotation_set(m, "b", "2"), 0);
    assert_int_equal(pkgstore_manifest_annotation_set(m, "a", "1"), 0);

    char *json = NULL;
    size_t len = 0;
    assert_int_equal(pkgstore_manifest_serialize(&json, &len, m, 0), 0);
    assert_string_equal(json,
                        "{\"annotations\":{\"a\":\"1\",\"b\":\"2\"},\"artifacts\":[{\"digest\":\"" D1
                        "\",\"entrypoint\":\"otelcol\",\"format\":\"binary\",\"platform\":"
                        "\"linux/amd64\",\"size\":10}],\"created\":\"2026-11-27T10:00:00Z\","
                        "\"dependencies\":[],\"name\":\"otelcol\",\"schemaVersion\":1,\"type\":"
                        "\"primary\",\"version\":\"1.2.3\"}");
    assert_int_equal(len, strlen(json));

    /* the digest is the SHA-256 of exactly those bytes */
    pkgstore_digest from_manifest, from_bytes;
    assert_int_equal(pkgstore_manifest_digest(&from_manifest, m), 0);
    assert_int_equal(pkgstore_digest_buffer(&from_bytes, json, len), 0);
    assert_true(pkgstore_digest_equal(&from_manifest, &from_bytes));
    pkgstore_free(json);

    /* pretty output is different bytes but parses to the same manifest */
    assert_int_equal(pkgstore_manifest_serialize(&json, &len, m, PKGSTORE_MANIFEST_PRETTY), 0);
    assert_non_null(strchr(json, '\n'));
    pkgstore_manifest *again = NULL;
    assert_int_equal(pkgstore_manifest_parse(&again, json, len), 0);
    pkgstore_digest again_digest;
    assert_int_equal(pkgstore_manifest_digest(&again_digest, again), 0);
    assert_true(pkgstore_digest_equal(&from_manifest, &again_digest));
    pkgstore_free(json);
    pkgstore_manifest_free(again);
    pkgstore_manifest_free(m);
}

static void test_manifest__add_replaces_same_platform(void **state)
{
    (void)state;
    pkgstore_manifest *m = NULL;
    assert_int_equal(pkgstore_manifest_new(&m, "agent", "1.0.0", PKGSTORE_TYPE_ADDON), 0);
    pkgstore_artifact a = artifact("linux/amd64", D1, 1, "binary", "agent");
    pkgstore_artifact b = artifact("linux/arm64", D1, 2, "binary", "agent");
    pkgstore_artifact c = artifact("linux/x86-64", D2, 3, "tar+zstd", "bin/agent");
    assert_int_equal(pkgstore_manifest_add_artifact(m, &a), 0);
    assert_int_equal(pkgstore_manifest_add_artifact(m, &b), 0);
    assert_int_equal(pkgstore_manifest_add_artifact(m, &c), 1); /* replaced amd64 */
    assert_int_equal(pkgstore_manifest_artifact_count(m), 2);
    const pkgstore_artifact *first = pkgstore_manifest_artifact(m, 0);
    assert_string_equal(first->platform, "linux/amd64"); /* kept its position */
    assert_int_equal(first->size, 3);
    assert_string_equal(first->format, "tar+zstd");
    assert_non_null(pkgstore_manifest_artifact_find(m, "linux/aarch64"));
    assert_null(pkgstore_manifest_artifact_find(m, "darwin/arm64"));
    assert_int_equal(pkgstore_manifest_remove_artifact(m, "linux/arm64"), 0);
    assert_int_equal(pkgstore_manifest_remove_artifact(m, "linux/arm64"), PKGSTORE_ENOTFOUND);
    assert_int_equal(pkgstore_manifest_artifact_count(m), 1);
    pkgstore_manifest_free(m);
}

static void test_manifest__add_refuses_bad_artifacts(void **state)
{
    (void)state;
    pkgstore_manifest *m = NULL;
    assert_int_equal(pkgstore_manifest_new(&m, "x", "1.0.0", PKGSTORE_TYPE_PRIMARY), 0);
    pkgstore_artifact a = artifact("linux/amd64", D1, 1, "rar", "x");
    assert_int_equal(pkgstore_manifest_add_artifact(m, &a), PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), "format"));
    a = artifact("linux/amd64", D1, 1, "tar", "");
    assert_int_equal(pkgstore_manifest_add_artifact(m, &a), PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), "entrypoint"));
    a = artifact("linux/amd64", D1, 1, "tar", "../x");
    assert_int_equal(pkgstore_manifest_add_artifact(m, &a), PKGSTORE_EINVALID);
    a = artifact("linux/amd64", D1, 1, "tar", "/x");
    assert_int_equal(pkgstore_manifest_add_artifact(m, &a), PKGSTORE_EINVALID);
    a = artifact("linux/amd64", D1, 1, "binary", "bin/x");
    assert_int_equal(pkgstore_manifest_add_artifact(m, &a), PKGSTORE_EINVALID);
    a = artifact("linux", D1, 1, "binary", "x");
    assert_int_equal(pkgstore_manifest_add_artifact(m, &a), PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), "platform"));
    assert_int_equal(pkgstore_manifest_artifact_count(m), 0);
    /* a manifest without artifacts has no canonical form */
    char *json = NULL;
    assert_int_equal(pkgstore_manifest_serialize(&json, NULL, m, 0), PKGSTORE_EINVALID);
    assert_null(json);
    pkgstore_manifest_free(m);
}

static void test_manifest__artifact_limit(void **state)
{
    (void)state;
    pkgstore_manifest *m = NULL;
    char platform[32];
    assert_int_equal(pkgstore_manifest_new(&m, "x", "1.0.0", PKGSTORE_TYPE_PRIMARY), 0);
    for (int i = 0; i < PKGSTORE_MANIFEST_ARTIFACTS_MAX; i++) {
        snprintf(platform, sizeof(platform), "os%d/amd64", i);
        pkgstore_artifact a = artifact(platform, D1, 1, "binary", "x");
        assert_int_equal(pkgstore_manifest_add_artifact(m, &a), 0);
    }
    pkgstore_artifact extra = artifact("linux/amd64", D1, 1, "binary", "x");
    assert_int_equal(pkgstore_manifest_add_artifact(m, &extra), PKGSTORE_ELIMIT);

    /* ...and parsing the 256 back works, while 257 is refused */
    char *json = NULL;
    size_t len;
    assert_int_equal(pkgstore_manifest_serialize(&json, &len, m, 0), 0);
    pkgstore_manifest *parsed = NULL;
    assert_int_equal(pkgstore_manifest_parse(&parsed, json, len), 0);
    pkgstore_manifest_free(parsed);
    char *more = malloc(len + 200);
    assert_non_null(more);
    const char *at = strstr(json, "\"artifacts\":[") + strlen("\"artifacts\":[");
    size_t head = (size_t)(at - json);
    memcpy(more, json, head);
    sprintf(more + head,
            "{\"digest\":\"" D1 "\",\"entrypoint\":\"x\",\"format\":\"binary\","
            "\"platform\":\"linux/amd64\",\"size\":1},%s",
            at);
    expect_parse_error(more, PKGSTORE_ELIMIT, "artifacts: 257");
    free(more);
    pkgstore_free(json);
    pkgstore_manifest_free(m);
}

static void test_manifest__parse_valid_round_trip(void **state)
{
    (void)state;
    pkgstore_manifest *m = NULL;
    assert_int_equal(pkgstore_manifest_parse(&m, valid_json, strlen(valid_json)), 0);
    assert_string_equal(pkgstore_manifest_name(m), "otelcol-contrib");
    assert_string_equal(pkgstore_manifest_version(m), "0.98.0");
    assert_int_equal(pkgstore_manifest_type(m), PKGSTORE_TYPE_PRIMARY);
    assert_int_equal(pkgstore_manifest_created(m), 1795773600);
    assert_int_equal(pkgstore_manifest_artifact_count(m), 2);
    assert_string_equal(pkgstore_manifest_artifact(m, 1)->entrypoint, "bin/otelcol-contrib");
    assert_int_equal(pkgstore_manifest_dependency_count(m), 1);
    assert_string_equal(pkgstore_manifest_dependency(m, 0)->constraint, ">=0.90.0 <1.0.0");
    assert_string_equal(
        pkgstore_manifest_annotation_get(m, "org.opencontainers.image.source"),
        "https://example.org/x");

    char *first = NULL, *second = NULL;
    size_t first_len, second_len;
    assert_int_equal(pkgstore_manifest_serialize(&first, &first_len, m, 0), 0);
    pkgstore_manifest *again = NULL;
    assert_int_equal(pkgstore_manifest_parse(&again, first, first_len), 0);
    assert_int_equal(pkgstore_manifest_serialize(&second, &second_len, again, 0), 0);
    assert_int_equal(first_len, second_len);
    assert_memory_equal(first, second, first_len);

    pkgstore_manifest *copy = NULL;
    assert_int_equal(pkgstore_manifest_dup(&copy, m), 0);
    pkgstore_digest d1, d2;
    assert_int_equal(pkgstore_manifest_digest(&d1, m), 0);
    assert_int_equal(pkgstore_manifest_digest(&d2, copy), 0);
    assert_true(pkgstore_digest_equal(&d1, &d2));

    pkgstore_free(first);
    pkgstore_free(second);
    pkgstore_manifest_free(copy);
    pkgstore_manifest_free(again);
    pkgstore_manifest_free(m);
}

static void test_manifest__parse_normalizes(void **state)
{
    (void)state;
    char *text = mutate("\"linux/arm64\"", "\"Linux/aarch64\"");
    pkgstore_manifest *m = NULL;
    assert_int_equal(pkgstore_manifest_parse(&m, text, strlen(text)), 0);
    assert_string_equal(pkgstore_manifest_artifact(m, 1)->platform, "linux/arm64");
    pkgstore_manifest_free(m);
    free(text);
    text = mutate("\"0.98.0\"", "\"v0.98.0\"");
    assert_int_equal(pkgstore_manifest_parse(&m, text, strlen(text)), 0);
    assert_string_equal(pkgstore_manifest_version(m), "0.98.0");
    pkgstore_manifest_free(m);
    free(text);
    /* optional members may be left out */
    text = mutate(",\"annotations\":{\"org.opencontainers.image.source\":\"https://example.org/x\"}",
                  "");
    assert_int_equal(pkgstore_manifest_parse(&m, text, strlen(text)), 0);
    assert_int_equal(pkgstore_manifest_annotation_count(m), 0);
    pkgstore_manifest_free(m);
    free(text);
}

static void test_manifest__parse_names_the_field(void **state)
{
    (void)state;
    expect_mutation_error(D2, "sha256:abc", PKGSTORE_EINVALID,
                          "artifacts[1].digest: not a sha256 digest");
    expect_mutation_error(D2, "sha512:2222", PKGSTORE_EINVALID,
                          "artifacts[1].digest: not a sha256 digest");
    expect_mutation_error("\"size\":120001", "\"size\":-1", PKGSTORE_EINVALID,
                          "artifacts[1].size: not a non-negative integer");
    expect_mutation_error("\"size\":120001", "\"size\":1.5", PKGSTORE_EINVALID,
                          "artifacts[1].size");
    expect_mutation_error("\"size\":120001", "\"size\":\"1\"", PKGSTORE_EINVALID,
                          "artifacts[1].size");
    expect_mutation_error("\"tar+gzip\"", "\"tar.gz\"", PKGSTORE_EINVALID,
                          "artifacts[1].format");
    expect_mutation_error("\"linux/arm64\"", "\"linux/amd64\"", PKGSTORE_EINVALID,
                          "artifacts[1].platform: duplicate platform linux/amd64");
    expect_mutation_error("\"linux/arm64\"", "\"linux\"", PKGSTORE_EINVALID,
                          "artifacts[1].platform");
    expect_mutation_error("\"bin/otelcol-contrib\"", "\"../otelcol\"", PKGSTORE_EINVALID,
                          "artifacts[1].entrypoint");
    expect_mutation_error("\"bin/otelcol-contrib\"", "\"\"", PKGSTORE_EINVALID,
                          "artifacts[1].entrypoint: empty");
    expect_mutation_error(",\"entrypoint\":\"bin/otelcol-contrib\"", "", PKGSTORE_EINVALID,
                          "artifacts[1].entrypoint: missing");
    expect_mutation_error("\"format\":\"binary\",", "\"format\":\"binary\",\"extra\":1,",
                          PKGSTORE_EINVALID, "artifacts[0].extra: unknown field");
    expect_mutation_error("\"schemaVersion\":1,", "\"schemaVersion\":1,\"signature\":\"x\",",
                          PKGSTORE_EINVALID, "signature: unknown field");
    expect_mutation_error("\"schemaVersion\":1", "\"schemaVersion\":2", PKGSTORE_EUNSUPPORTED,
                          "schemaVersion");
    expect_mutation_error("\"schemaVersion\":1,", "", PKGSTORE_EINVALID,
                          "schemaVersion: missing");
    expect_mutation_error("\"name\":\"otelcol-contrib\"", "\"name\":\"Otelcol\"",
                          PKGSTORE_EINVALID, "name: invalid character 'O' at position 1");
    expect_mutation_error("\"name\":\"otelcol-contrib\"", "\"name\":\"-x\"", PKGSTORE_EINVALID,
                          "name: invalid character '-' at position 1");
    expect_mutation_error("\"name\":\"otelcol-contrib\"", "\"name\":7", PKGSTORE_EINVALID,
                          "name: not a string");
    expect_mutation_error("\"0.98.0\"", "\"0.98\"", PKGSTORE_EINVALID, "version");
    expect_mutation_error("\"primary\"", "\"sidecar\"", PKGSTORE_EINVALID, "type");
    expect_mutation_error("\"2026-11-27T10:00:00Z\"", "\"2026-11-27 10:00:00\"",
                          PKGSTORE_EINVALID, "created");
    expect_mutation_error("\"2026-11-27T10:00:00Z\"", "\"2026-02-30T10:00:00Z\"",
                          PKGSTORE_EINVALID, "created");
    expect_mutation_error("\">=0.90.0 <1.0.0\"", "\">=0.90.0 <<1\"", PKGSTORE_EINVALID,
                          "dependencies[0].version");
    expect_mutation_error("{\"name\":\"otelcol-contrib\",\"version\"",
                          "{\"name\":\"otelcol-contrib\",\"v\":\"1\",\"version\"",
                          PKGSTORE_EINVALID, "dependencies[0].v: unknown field");
    expect_mutation_error("\"https://example.org/x\"", "1", PKGSTORE_EINVALID,
                          "annotations.org.opencontainers.image.source: not a string");
    expect_mutation_error("\"artifacts\":[", "\"artifacts\":[],\"x\":[", PKGSTORE_EINVALID,
                          NULL);
}

static void test_manifest__parse_refuses_malformed_json(void **state)
{
    (void)state;
    expect_parse_error("", PKGSTORE_EINVALID, "manifest: not valid JSON");
    expect_parse_error("[]", PKGSTORE_EINVALID, "manifest: not a JSON object");
    expect_parse_error("{\"name\":\"a\",\"name\":\"b\"}", PKGSTORE_EINVALID,
                       "manifest: not valid JSON");
    expect_parse_error("{} x", PKGSTORE_EINVALID, "manifest: not valid JSON");
    /* escaped NUL inside a string */
    expect_mutation_error("\"https://example.org/x\"", "\"a\\u0000b\"", PKGSTORE_EINVALID,
                          "manifest: not valid JSON");
    /* invalid UTF-8 */
    expect_mutation_error("https://example.org/x", "\xc3\x28", PKGSTORE_EINVALID,
                          "manifest: not valid JSON");
    expect_mutation_error("https://example.org/x", "\xed\xa0\x80", PKGSTORE_EINVALID,
                          "manifest: not valid JSON");
    /* huge numbers */
    expect_mutation_error("\"size\":120001", "\"size\":123456789012345678901234567890",
                          PKGSTORE_EINVALID, "manifest: not valid JSON");
    expect_mutation_error("\"schemaVersion\":1", "\"schemaVersion\":1e400", PKGSTORE_EINVALID,
                          NULL);
    /* raw NUL byte in the input */
    char with_nul[] = "{\"schemaVersion\":1\0}";
    pkgstore_manifest *m = NULL;
    assert_int_equal(pkgstore_manifest_parse(&m, with_nul, sizeof(with_nul) - 1),
                     PKGSTORE_EINVALID);
    assert_null(m);
    assert_int_equal(pkgstore_manifest_parse(&m, NULL, 0), PKGSTORE_EINVALID);
}

static void test_manifest__limits(void **state)
{
    (void)state;
    /* over 1 MiB */
    size_t big = PKGSTORE_MANIFEST_SIZE_MAX + 1;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, ' ', big);
    text[0] = '{';
    text[big - 1] = '}';
    text[big] = '\0';
    expect_parse_error(text, PKGSTORE_ELIMIT, "manifest: 1048577 bytes");
    free(text);

    /* deep nesting */
    char deep[20001];
    memset(deep, '[', 10000);
    memset(deep + 10000, ']', 10000);
    deep[20000] = '\0';
    expect_parse_error(deep, PKGSTORE_ELIMIT, "manifest: JSON nested deeper than");
    expect_mutation_error("\"https://example.org/x\"", "[[[[[[[[[[1]]]]]]]]]]", PKGSTORE_ELIMIT,
                          "manifest: JSON nested deeper than");
    /* brackets inside strings do not count */
    expect_mutation_error("https://example.org/x", "[[[[[[[[[[[[[[[[[[[[", 0, NULL);

    /* over-long strings */
    char *long_entry = malloc(PKGSTORE_ENTRYPOINT_MAX + 10);
    assert_non_null(long_entry);
    memset(long_entry, 'a', PKGSTORE_ENTRYPOINT_MAX + 1);
    long_entry[PKGSTORE_ENTRYPOINT_MAX + 1] = '\0';
    char *quoted = malloc(PKGSTORE_ENTRYPOINT_MAX + 20);
    assert_non_null(quoted);
    sprintf(quoted, "\"%s\"", long_entry);
    expect_mutation_error("\"bin/otelcol-contrib\"", quoted, PKGSTORE_ELIMIT,
                          "artifacts[1].entrypoint: longer than 1024 bytes");
    free(long_entry);
    free(quoted);

    char name[200];
    memset(name, 'a', 129);
    name[129] = '\0';
    char replacement[220];
    snprintf(replacement, sizeof(replacement), "\"name\":\"%s\"", name);
    expect_mutation_error("\"name\":\"otelcol-contrib\"", replacement, PKGSTORE_ELIMIT,
                          "name: longer than 128 bytes");

    /* too many annotations */
    pkgstore_manifest *m = NULL;
    assert_int_equal(pkgstore_manifest_new(&m, "x", "1.0.0", PKGSTORE_TYPE_PRIMARY), 0);
    char key[16];
    for (int i = 0; i < PKGSTORE_MANIFEST_ANNOTATIONS_MAX; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(pkgstore_manifest_annotation_set(m, key, "v"), 0);
    }
    assert_int_equal(pkgstore_manifest_annotation_set(m, "one-more", "v"), PKGSTORE_ELIMIT);
    assert_int_equal(pkgstore_manifest_annotation_set(m, "k0", "replaced"), 0);
    assert_int_equal(pkgstore_manifest_annotation_set(m, "k0", NULL), 0);
    assert_int_equal(pkgstore_manifest_annotation_count(m), PKGSTORE_MANIFEST_ANNOTATIONS_MAX - 1);
    assert_int_equal(pkgstore_manifest_annotation_set(m, "bad", "\xff"), PKGSTORE_EINVALID);
    pkgstore_manifest_free(m);
}

static void test_manifest__dependencies(void **state)
{
    (void)state;
    pkgstore_manifest *m = NULL;
    assert_int_equal(pkgstore_manifest_new(&m, "sidecar", "1.0.0", PKGSTORE_TYPE_ADDON), 0);
    assert_int_equal(pkgstore_manifest_add_dependency(m, "otelcol", "^0.98"), 0);
    assert_int_equal(pkgstore_manifest_add_dependency(m, "otelcol", ">=0.99.0"), 1);
    assert_int_equal(pkgstore_manifest_dependency_count(m), 1);
    assert_string_equal(pkgstore_manifest_dependency(m, 0)->constraint, ">=0.99.0");
    assert_int_equal(pkgstore_manifest_add_dependency(m, "Bad", "1"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_manifest_add_dependency(m, "ok", ">>1"), PKGSTORE_EINVALID);
    assert_null(pkgstore_manifest_dependency(m, 1));
    pkgstore_manifest_free(m);
    expect_mutation_error("}],\"created\"",
                          "},{\"name\":\"otelcol-contrib\",\"version\":\"1\"}],\"created\"",
                          PKGSTORE_EINVALID, "dependencies[1].name: duplicate dependency");
}

/* A failed parse: code, a detail starting with want, and *out zeroed. */
static void expect_dependency_error(const char *text, int code, const char *want)
{
    pkgstore_dependency dep, zero;
    memset(&dep, 'x', sizeof(dep));
    memset(&zero, 0, sizeof(zero));
    int rc = pkgstore_dependency_parse(&dep, text);
    if (rc != code)
        fail_msg("'%s': parse gave %d (%s), wanted %d", text ? text : "(null)", rc,
                 pkgstore_error_detail(), code);
    if (strncmp(pkgstore_error_detail(), want, strlen(want)) != 0)
        fail_msg("'%s': detail \"%s\" does not start with \"%s\"", text ? text : "(null)",
                 pkgstore_error_detail(), want);
    assert_memory_equal(&dep, &zero, sizeof(dep));
}

static void test_manifest__dependency_parse(void **state)
{
    (void)state;
    pkgstore_dependency dep;
    assert_int_equal(pkgstore_dependency_parse(&dep, "otelcol-contrib >=0.90.0 <1.0.0"), 0);
    assert_string_equal(dep.name, "otelcol-contrib");
    assert_string_equal(dep.constraint, ">=0.90.0 <1.0.0");
    assert_int_equal(pkgstore_dependency_parse(&dep, "otelcol   ^0.98"), 0); /* spaces between */
    assert_string_equal(dep.name, "otelcol");
    assert_string_equal(dep.constraint, "^0.98");
    assert_int_equal(pkgstore_dependency_parse(&dep, "otelcol"), 0); /* any version */
    assert_string_equal(dep.name, "otelcol");
    assert_string_equal(dep.constraint, "*");

    /* the longest name and constraint fit */
    char text[PKGSTORE_NAME_MAX + PKGSTORE_MANIFEST_CONSTRAINT_MAX + 8];
    memset(text, 'a', PKGSTORE_NAME_MAX);
    snprintf(text + PKGSTORE_NAME_MAX, sizeof(text) - PKGSTORE_NAME_MAX, " >=1.0.0%*s",
             PKGSTORE_MANIFEST_CONSTRAINT_MAX - 7, "");
    assert_int_equal(strlen(text), PKGSTORE_NAME_MAX + 1 + PKGSTORE_MANIFEST_CONSTRAINT_MAX);
    assert_int_equal(pkgstore_dependency_parse(&dep, text), 0);
    assert_int_equal(strlen(dep.name), PKGSTORE_NAME_MAX);
    assert_int_equal(strlen(dep.constraint), PKGSTORE_MANIFEST_CONSTRAINT_MAX);
    /* one byte more of either does not */
    strcat(text, " ");
    expect_dependency_error(text, PKGSTORE_ELIMIT, "constraint: longer than 256 bytes");
    memset(text, 'a', PKGSTORE_NAME_MAX + 1);
    strcpy(text + PKGSTORE_NAME_MAX + 1, " 1");
    expect_dependency_error(text, PKGSTORE_EINVALID, "name: longer than 128 characters");

    expect_dependency_error(NULL, PKGSTORE_EINVALID, "dependency: missing");
    expect_dependency_error("", PKGSTORE_EINVALID, "name: empty");
    expect_dependency_error(" >=1.0.0", PKGSTORE_EINVALID, "name: empty");
    expect_dependency_error("Bad_Name >=1.0.0", PKGSTORE_EINVALID,
                            "name: invalid character 'B' at position 1");
    expect_dependency_error("otelcol\t>=1.0.0", PKGSTORE_EINVALID,
                            "name: invalid byte 0x09 at position 8");
    expect_dependency_error("otelcol ", PKGSTORE_EINVALID, "constraint: empty after the name");
    expect_dependency_error("otelcol   ", PKGSTORE_EINVALID, "constraint: empty after the name");
    expect_dependency_error("otelcol >>1", PKGSTORE_EINVALID, "constraint: ");
    expect_dependency_error("otelcol >=1.0.0 \xff", PKGSTORE_EINVALID,
                            "constraint: not valid UTF-8");
    assert_int_equal(pkgstore_dependency_parse(NULL, "otelcol"), PKGSTORE_EINVALID);

    /* what it gives is what a manifest takes */
    pkgstore_manifest *m = NULL;
    assert_int_equal(pkgstore_manifest_new(&m, "sidecar", "1.0.0", PKGSTORE_TYPE_ADDON), 0);
    assert_int_equal(pkgstore_dependency_parse(&dep, "otelcol >=0.90.0"), 0);
    assert_int_equal(pkgstore_manifest_add_dependency(m, dep.name, dep.constraint), 0);
    assert_int_equal(pkgstore_dependency_parse(&dep, "otelcol"), 0);
    assert_int_equal(pkgstore_manifest_add_dependency(m, dep.name, dep.constraint), 1);
    assert_string_equal(pkgstore_manifest_dependency(m, 0)->constraint, "*");
    pkgstore_manifest_free(m);
}

static void test_manifest__names(void **state)
{
    (void)state;
    assert_int_equal(pkgstore_manifest_name_validate("otelcol-contrib"), 0);
    assert_int_equal(pkgstore_manifest_name_validate("a"), 0);
    assert_int_equal(pkgstore_manifest_name_validate("0.x_y-z"), 0);
    assert_int_equal(pkgstore_manifest_name_validate(""), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_manifest_name_validate(NULL), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_manifest_name_validate(".x"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_manifest_name_validate("a/b"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_manifest_name_validate("a b"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_manifest_name_validate("A"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_manifest_name_validate("caf\xc3\xa9"), PKGSTORE_EINVALID);
    char name[PKGSTORE_NAME_MAX + 2];
    memset(name, 'a', sizeof(name) - 1);
    name[PKGSTORE_NAME_MAX] = '\0';
    assert_int_equal(pkgstore_manifest_name_validate(name), 0);
    name[PKGSTORE_NAME_MAX] = 'a';
    name[PKGSTORE_NAME_MAX + 1] = '\0';
    assert_int_equal(pkgstore_manifest_name_validate(name), PKGSTORE_EINVALID);
}

static void test_manifest__times(void **state)
{
    (void)state;
    int64_t t;
    char text[PKGSTORE_MANIFEST_TIME_SIZE];
    assert_int_equal(pkgstore_manifest_time_parse(&t, "1970-01-01T00:00:00Z"), 0);
    assert_int_equal(t, 0);
    assert_int_equal(pkgstore_manifest_time_parse(&t, "2000-02-29T23:59:59Z"), 0);
    assert_int_equal(t, 951868799);
    assert_int_equal(pkgstore_manifest_time_format(text, t), 0);
    assert_string_equal(text, "2000-02-29T23:59:59Z");
    assert_int_equal(pkgstore_manifest_time_parse(&t, "1969-12-31T23:59:59Z"), 0);
    assert_int_equal(t, -1);
    assert_int_equal(pkgstore_manifest_time_format(text, -1), 0);
    assert_string_equal(text, "1969-12-31T23:59:59Z");
    assert_int_equal(pkgstore_manifest_time_parse(&t, "0000-01-01T00:00:00Z"), 0);
    assert_int_equal(pkgstore_manifest_time_format(text, t), 0);
    assert_string_equal(text, "0000-01-01T00:00:00Z");
    assert_int_equal(pkgstore_manifest_time_parse(&t, "9999-12-31T23:59:59Z"), 0);
    assert_int_equal(pkgstore_manifest_time_format(text, t), 0);
    assert_string_equal(text, "9999-12-31T23:59:59Z");
    assert_int_equal(pkgstore_manifest_time_format(text, t + 1), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_manifest_time_parse(&t, "2001-02-29T00:00:00Z"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_manifest_time_parse(&t, "2001-01-01T24:00:00Z"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_manifest_time_parse(&t, "2001-01-01T00:00:60Z"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_manifest_time_parse(&t, "2001-01-01T00:00:00+00:00"),
                     PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_manifest_time_parse(&t, "2001-01-01T00:00:00.5Z"),
                     PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_manifest_time_parse(&t, "2001-01-01T00:00:00Zx"),
                     PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_manifest_time_parse(&t, "2001-1-01T00:00:00Z"), PKGSTORE_EINVALID);
}

/* The grammar, the time text and the format names exist once in the
 * library (issue 10 section 6): package and policy names, manifests and
 * policy records, manifests and archives all use the same code. */
static void test_manifest__shared_helpers(void **state)
{
    (void)state;
    assert_int_equal(ps_name_check("policy name", "Canary", 64), PKGSTORE_EINVALID);
    assert_string_equal(pkgstore_error_detail(),
                        "policy name: invalid character 'C' at position 1 "
                        "(names match [a-z0-9][a-z0-9._-]*)");
    assert_int_equal(ps_name_check("policy name", "canary-1", 8), 0);
    assert_int_equal(ps_name_check("policy name", "canary-12", 8), PKGSTORE_EINVALID);
    assert_string_equal(pkgstore_error_detail(), "policy name: longer than 8 characters");
    assert_int_equal(pkgstore_manifest_name_validate("a\x01"), PKGSTORE_EINVALID);
    assert_string_equal(pkgstore_error_detail(),
                        "name: invalid byte 0x01 at position 2 (names match [a-z0-9][a-z0-9._-]*)");

    char text[PS_TIME_SIZE], public_text[PKGSTORE_MANIFEST_TIME_SIZE];
    int64_t back = 0;
    assert_int_equal(ps_time_format(text, 1795773600), 0);
    assert_string_equal(text, "2026-11-27T10:00:00Z");
    assert_int_equal(pkgstore_manifest_time_format(public_text, 1795773600), 0);
    assert_string_equal(public_text, text);
    assert_int_equal(ps_time_parse(&back, text), 0);
    assert_int_equal(back, 1795773600);
    assert_int_equal(ps_time_format(text, PS_TIME_MAX + 1), PKGSTORE_EINVALID);
    assert_string_equal(text, "");

    /* every name the archive module knows is a manifest format, and back */
    for (int f = PKGSTORE_ARCHIVE_BINARY; f <= PKGSTORE_ARCHIVE_ZIP; f++) {
        pkgstore_archive_format parsed;
        const char *name = pkgstore_archive_format_name((pkgstore_archive_format)f);
        assert_int_equal(pkgstore_manifest_format_validate(name), 0);
        assert_int_equal(pkgstore_archive_format_parse(&parsed, name), 0);
        assert_int_equal(parsed, f);
    }
    assert_int_equal(pkgstore_manifest_format_validate("unknown"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_manifest_format_validate("tar+bzip2"), PKGSTORE_EINVALID);
}

/* The canonical bytes are what signing will sign: they must never change
 * for a given manifest, whatever jansson's version. Pinned here, byte for
 * byte and by digest, with what jansson's escaper could treat differently:
 * non-ASCII text (raw UTF-8, also in keys, which sort bytewise), quotes and
 * backslashes, the short escapes, other control characters (\u00XX,
 * upper-case hex), DEL and U+2028 (raw), and '/' (not escaped). */
static void test_manifest__canonical_bytes_are_pinned(void **state)
{
    (void)state;
    static const char expected[] =
        "{\"annotations\":{\"a\":\"caf\xc3\xa9 \xe2\x98\x95 \xf0\x9d\x84\x9e \\\"q\\\" b\\\\s /x "
        "\\n\\t\\r\\b\\f \\u0001\\u001F \x7f \xe2\x80\xa8.\",\"z\":\"last\",\"\xc3\xa9t\xc3\xa9\":"
        "\"non-ASCII key\"},\"artifacts\":[{\"digest\":\"" D1 "\",\"entrypoint\":\"otelcol-caf"
        "\xc3\xa9\",\"format\":\"binary\",\"platform\":\"linux/amd64\",\"size\":10}],\"created\":"
        "\"2026-11-27T10:00:00Z\",\"dependencies\":[],\"name\":\"otelcol\",\"schemaVersion\":1,"
        "\"type\":\"primary\",\"version\":\"1.2.3\"}";
    /* sha256sum of exactly those bytes */
    static const char expected_digest[] =
        "sha256:4e98596b0bbe1f9250ad5deab4d20b718a1ba6c02be7df99a55938222223a85a";
    pkgstore_manifest *m = NULL, *again = NULL;
    pkgstore_artifact a = artifact("linux/amd64", D1, 10, "", "otelcol-caf\xc3\xa9");
    assert_int_equal(pkgstore_manifest_new(&m, "otelcol", "1.2.3", PKGSTORE_TYPE_PRIMARY), 0);
    assert_int_equal(pkgstore_manifest_set_created(m, 1795773600), 0);
    assert_int_equal(pkgstore_manifest_add_artifact(m, &a), 0);
    assert_int_equal(pkgstore_manifest_annotation_set(m, "z", "last"), 0);
    assert_int_equal(pkgstore_manifest_annotation_set(m, "\xc3\xa9t\xc3\xa9", "non-ASCII key"), 0);
    assert_int_equal(pkgstore_manifest_annotation_set(
                         m, "a",
                         "caf\xc3\xa9 \xe2\x98\x95 \xf0\x9d\x84\x9e \"q\" b\\s /x \n\t\r\b\f "
                         "\x01\x1f \x7f \xe2\x80\xa8."),
                     0);

    char *json = NULL, digest_text[PKGSTORE_DIGEST_STR_SIZE];
    size_t len = 0;
    pkgstore_digest digest;
    assert_int_equal(pkgstore_manifest_serialize(&json, &len, m, 0), 0);
    assert_int_equal(len, sizeof(expected) - 1);
    assert_memory_equal(json, expected, len);
    assert_int_equal(pkgstore_manifest_digest(&digest, m), 0);
    pkgstore_digest_format(digest_text, &digest);
    assert_string_equal(digest_text, expected_digest);

    /* parsed back, it gives the very same bytes */
    assert_int_equal(pkgstore_manifest_parse(&again, expected, sizeof(expected) - 1), 0);
    pkgstore_free(json);
    assert_int_equal(pkgstore_manifest_serialize(&json, &len, again, 0), 0);
    assert_memory_equal(json, expected, sizeof(expected) - 1);
    pkgstore_free(json);
    pkgstore_manifest_free(again);
    pkgstore_manifest_free(m);
}

/* jansson's allocator, as an embedder may set it: blocks behind a header
 * that plain free() would choke on. */
static void *shifted_malloc(size_t size)
{
    unsigned char *block = malloc(size + 16);
    return block ? block + 16 : NULL;
}

static void shifted_free(void *ptr)
{
    if (ptr)
        free((unsigned char *)ptr - 16);
}

/* What the library hands out is freed with pkgstore_free(), whatever
 * allocator the program gave jansson; jansson's own memory goes back
 * through jansson's free. */
static void test_manifest__serialize_with_another_jansson_allocator(void **state)
{
    (void)state;
    int status = 0;
    pid_t pid = fork(); /* a wrong free() aborts: let it abort a child */
    assert_true(pid >= 0);
    if (pid == 0) {
        pkgstore_manifest *m = NULL;
        char *json = NULL;
        size_t len = 0;
        pkgstore_digest digest;
        pkgstore_artifact a = artifact("linux/amd64", D1, 10, "", "");
        json_set_alloc_funcs(shifted_malloc, shifted_free);
        if (pkgstore_manifest_new(&m, "otelcol", "1.2.3", PKGSTORE_TYPE_PRIMARY) != 0 ||
            pkgstore_manifest_add_artifact(m, &a) != 0 ||
            pkgstore_manifest_serialize(&json, &len, m, 0) != 0 ||
            pkgstore_manifest_digest(&digest, m) != 0)
            _exit(2);
        if (strlen(json) != len)
            _exit(3);
        pkgstore_free(json);
        pkgstore_manifest_free(m);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status))
        fail_msg("serialize/pkgstore_free with another jansson allocator: signal %d",
                 WTERMSIG(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_manifest__best_artifact(void **state)
{
    (void)state;
    pkgstore_manifest *m = NULL;
    const pkgstore_artifact *best = NULL;
    assert_int_equal(pkgstore_manifest_new(&m, "x", "1.0.0", PKGSTORE_TYPE_PRIMARY), 0);
    pkgstore_artifact a = artifact("linux/386", D1, 1, "binary", "x");
    pkgstore_artifact b = artifact("linux/arm/v6", D1, 2, "binary", "x");
    pkgstore_artifact c = artifact("any/any", D1, 3, "binary", "x");
    pkgstore_artifact d = artifact("linux/amd64", D1, 4, "binary", "x");
    assert_int_equal(pkgstore_manifest_add_artifact(m, &a), 0);
    assert_int_equal(pkgstore_manifest_add_artifact(m, &b), 0);
    assert_int_equal(pkgstore_manifest_add_artifact(m, &c), 0);
    assert_int_equal(pkgstore_manifest_best_artifact(&best, m, "linux/x86_64"), 0);
    assert_int_equal(best->size, 1); /* 386 before any */
    assert_int_equal(pkgstore_manifest_best_artifact(&best, m, "linux/armv7l"), 0);
    assert_int_equal(best->size, 2);
    assert_int_equal(pkgstore_manifest_best_artifact(&best, m, "darwin/arm64"), 0);
    assert_int_equal(best->size, 3);
    assert_int_equal(pkgstore_manifest_add_artifact(m, &d), 0);
    assert_int_equal(pkgstore_manifest_best_artifact(&best, m, "linux/amd64"), 0);
    assert_int_equal(best->size, 4);
    assert_int_equal(pkgstore_manifest_remove_artifact(m, "any/any"), 0);
    assert_int_equal(pkgstore_manifest_best_artifact(&best, m, "windows/arm64"),
                     PKGSTORE_ENOTFOUND);
    assert_null(best);
    assert_int_equal(pkgstore_manifest_best_artifact(&best, m, "nonsense"), PKGSTORE_EINVALID);
    pkgstore_manifest_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest__build_and_serialize_canonical),
        cmocka_unit_test(test_manifest__add_replaces_same_platform),
        cmocka_unit_test(test_manifest__add_refuses_bad_artifacts),
        cmocka_unit_test(test_manifest__artifact_limit),
        cmocka_unit_test(test_manifest__parse_valid_round_trip),
        cmocka_unit_test(test_manifest__parse_normalizes),
        cmocka_unit_test(test_manifest__parse_names_the_field),
        cmocka_unit_test(test_manifest__parse_refuses_malformed_json),
        cmocka_unit_test(test_manifest__limits),
        cmocka_unit_test(test_manifest__dependencies),
        cmocka_unit_test(test_manifest__dependency_parse),
        cmocka_unit_test(test_manifest__names),
        cmocka_unit_test(test_manifest__times),
        cmocka_unit_test(test_manifest__best_artifact),
        cmocka_unit_test(test_manifest__shared_helpers),
        cmocka_unit_test(test_manifest__canonical_bytes_are_pinned),
        cmocka_unit_test(test_manifest__serialize_with_another_jansson_allocator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

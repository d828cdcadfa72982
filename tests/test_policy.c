/*
 * Policies, nodes, heartbeats, offers, history and rollout status, through
 * the public API on a real store (no HTTP).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "pkgstore.h"
#include "pkgstore/manifest.h"
#include "pkgstore/registry.h"
/* private: to plant corrupt records the public API cannot write */
#include "index.h"
#include "store.h"

struct fixture {
    char dir[64];
    pkgstore_store *store;
    pkgstore_registry *reg;
    pkgstore_policy_db *db;
    char contrib97_amd64[PKGSTORE_DIGEST_STR_SIZE];
    char contrib98_amd64[PKGSTORE_DIGEST_STR_SIZE];
    char contrib98_arm64[PKGSTORE_DIGEST_STR_SIZE];
    char sidecar_amd64[PKGSTORE_DIGEST_STR_SIZE];
};

#define CHECK(expr)                                                                        \
    do {                                                                                   \
        int check_rc_ = (expr);                                                            \
        if (check_rc_ != 0)                                                                \
            print_error("%s: %d %s\n", #expr, check_rc_, pkgstore_error_detail());         \
        assert_int_equal(check_rc_, 0);                                                    \
    } while (0)

/* Add an artifact with the given bytes; its digest string into digest_out. */
static void add_artifact(struct fixture *f, const char *name, const char *version,
                         pkgstore_package_type type, const char *platform, const char *bytes,
                         char *digest_out)
{
    pkgstore_artifact artifact;
    pkgstore_registry_add_options opts = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT;

    memset(&artifact, 0, sizeof(artifact));
    CHECK(pkgstore_store_add_buffer(&artifact.digest, f->store, bytes, strlen(bytes)));
    snprintf(artifact.platform, sizeof(artifact.platform), "%s", platform);
    snprintf(artifact.format, sizeof(artifact.format), "binary");
    snprintf(artifact.entrypoint, sizeof(artifact.entrypoint), "%s", name);
    opts.type = type;
    opts.force = 1;
    CHECK(pkgstore_registry_add(NULL, NULL, f->reg, name, version, &artifact, &opts));
    if (digest_out)
        pkgstore_digest_format(digest_out, &artifact.digest);
}

static int open_db(struct fixture *f, unsigned int history_max)
{
    pkgstore_policy_options opts = PKGSTORE_POLICY_OPTIONS_INIT;
    opts.no_flusher = 1;
    opts.history_max = history_max;
    return pkgstore_policy_open(&f->db, f->store, &opts);
}

static int open_store(struct fixture *f)
{
    pkgstore_store_options sopts = PKGSTORE_STORE_OPTIONS_INIT;
    sopts.durability = PKGSTORE_DURABILITY_NONE;
    int rc = pkgstore_store_open(&f->store, f->dir, &sopts);
    if (rc == 0)
        rc = pkgstore_registry_open(&f->reg, f->store);
    return rc;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_policy.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    CHECK(open_store(f));
    add_artifact(f, "otelcol-contrib", "0.97.0", PKGSTORE_TYPE_PRIMARY, "linux/amd64",
                 "contrib 0.97.0 amd64", f->contrib97_amd64);
    add_artifact(f, "otelcol-contrib", "0.98.0", PKGSTORE_TYPE_PRIMARY, "linux/amd64",
                 "contrib 0.98.0 amd64", f->contrib98_amd64);
    add_artifact(f, "otelcol-contrib", "0.98.0", PKGSTORE_TYPE_PRIMARY, "linux/arm64",
                 "contrib 0.98.0 arm64", f->contrib98_arm64);
    add_artifact(f, "log-sidecar", "1.0.0", PKGSTORE_TYPE_ADDON, "linux/amd64",
                 "sidecar 1.0.0 amd64", f->sidecar_amd64);
    CHECK(open_db(f, 0));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    pkgstore_policy_free(f->db);
    pkgstore_registry_free(f->reg);
    pkgstore_store_free(f->store);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void put_policy(struct fixture *f, const char *name, const char *body)
{
    char *json = NULL;
    CHECK(pkgstore_policy_put_json(&json, f->db, name, body, strlen(body)));
    assert_non_null(json);
    pkgstore_free(json);
}

/* POST a heartbeat; returns the parsed response (json_decref it). */
static json_t *heartbeat(struct fixture *f, const char *body)
{
    char *response = NULL;
    CHECK(pkgstore_policy_heartbeat(&response, f->db, body, strlen(body)));
    json_t *root = json_loads(response, 0, NULL);
    assert_non_null(root);
    pkgstore_free(response);
    return root;
}

static json_t *offers_of(json_t *response)
{
    json_t *offers = json_object_get(response, "offers");
    assert_true(json_is_array(offers));
    return offers;
}

static const char *str_at(json_t *obj, const char *key)
{
    const char *value = json_string_value(json_object_get(obj, key));
    if (!value) {
        print_error("no string \"%s\" in %s\n", key, json_dumps(obj, 0));
        fail();
    }
    return value;
}

static json_t *node_view(struct fixture *f, const char *id)
{
    char *json = NULL;
    CHECK(pkgstore_policy_node_get_json(&json, f->db, id));
    json_t *root = json_loads(json, 0, NULL);
    assert_non_null(root);
    pkgstore_free(json);
    return root;
}

static json_t *policy_view(struct fixture *f, const char *name)
{
    char *json = NULL;
    CHECK(pkgstore_policy_get_json(&json, f->db, name, 1));
    json_t *root = json_loads(json, 0, NULL);
    assert_non_null(root);
    pkgstore_free(json);
    return root;
}

static json_int_t count_of(json_t *policy, const char *state)
{
    json_t *counts = json_object_get(json_object_get(policy, "status"), "counts");
    json_t *value = json_object_get(counts, state);
    assert_true(json_is_integer(value));
    return json_integer_value(value);
}

static void assert_fails(int rc, int code, const char *needle)
{
    if (rc != code || !strstr(pkgstore_error_detail(), needle)) {
        print_error("expected %d with '%s', got %d '%s'\n", code, needle, rc,
                    pkgstore_error_detail());
        fail();
    }
}

/* ---------------------------------------------------------------- policies */

static void test_policy__put_get_list_delete(void **state)
{
    struct fixture *f = *state;
    pkgstore_policy policy, stored, got, *list = NULL;
    size_t count = 0;
    char *json = NULL;

    memset(&policy, 0, sizeof(policy));
    snprintf(policy.name, sizeof(policy.name), "zeta");
    snprintf(policy.selector, sizeof(policy.selector), " env = dev , canary ");
    snprintf(policy.package, sizeof(policy.package), "otelcol-contrib");
    snprintf(policy.version, sizeof(policy.version), "v0.98.0");
    policy.type = PKGSTORE_TYPE_PRIMARY;
    policy.priority = 5;
    CHECK(pkgstore_policy_put(&stored, f->db, &policy));
    assert_string_equal(stored.selector, "canary,env=dev");
    assert_string_equal(stored.version, "0.98.0");
    assert_true(stored.created > 0);
    assert_int_equal(stored.created, stored.updated);

    const char *body = "{\"selector\":\"env=prod\",\"package\":\"otelcol-contrib\","
                       "\"version\":\"0.97.0\",\"type\":\"primary\",\"priority\":10}";
    CHECK(pkgstore_policy_put_json(&json, f->db, "alpha", body, strlen(body)));
    json_t *reply = json_loads(json, 0, NULL);
    assert_string_equal(str_at(reply, "name"), "alpha");
    assert_string_equal(str_at(reply, "selector"), "env=prod");
    assert_int_equal(json_integer_value(json_object_get(reply, "priority")), 10);
    assert_non_null(strstr(str_at(reply, "created"), "T"));
    json_decref(reply);
    pkgstore_free(json);

    CHECK(pkgstore_policy_get(&got, f->db, "alpha"));
    assert_string_equal(got.version, "0.97.0");
    assert_int_equal(got.type, PKGSTORE_TYPE_PRIMARY);

    CHECK(pkgstore_policy_list(&list, &count, f->db));
    assert_int_equal(count, 2);
    assert_string_equal(list[0].name, "alpha");
    assert_string_equal(list[1].name, "zeta");
    pkgstore_free(list);

    /* replacing keeps created */
    policy.priority = 7;
    CHECK(pkgstore_policy_put(&got, f->db, &policy));
    assert_int_equal(got.created, stored.created);
    assert_int_equal(got.priority, 7);

    CHECK(pkgstore_policy_list_json(&json, f->db, 0));
    reply = json_loads(json, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(reply, "policies")), 2);
    json_decref(reply);
    pkgstore_free(json);

    CHECK(pkgstore_policy_delete(f->db, "zeta"));
    assert_fails(pkgstore_policy_get(&got, f->db, "zeta"), PKGSTORE_ENOTFOUND, "zeta");
    assert_fails(pkgstore_policy_delete(f->db, "zeta"), PKGSTORE_ENOTFOUND, "not found");
    assert_fails(pkgstore_policy_get_json(&json, f->db, "zeta", 1), PKGSTORE_ENOTFOUND,
                 "not found");
    assert_null(json);
}

static void test_policy__put_validates(void **state)
{
    struct fixture *f = *state;
    char *json = (char *)0x1;
#define PUT(name, body) pkgstore_policy_put_json(&json, f->db, name, body, strlen(body))

    assert_fails(PUT("Bad", "{}"), PKGSTORE_EINVALID, "policy name: position 1");
    assert_null(json);
    assert_fails(PUT("ok", "{\"package\":"), PKGSTORE_EINVALID, "body: line 1");
    assert_fails(PUT("ok", "[]"), PKGSTORE_EINVALID, "not a JSON object");
    assert_fails(PUT("ok", "{\"version\":\"0.98.0\"}"), PKGSTORE_EINVALID, "package: missing");
    assert_fails(PUT("ok", "{\"package\":\"otelcol-contrib\"}"), PKGSTORE_EINVALID,
                 "version: missing");
    CHECK(PUT("ok", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\","
                    "\"selector\":\"env=\"}"));
    pkgstore_free(json);
    json = NULL;
    assert_fails(PUT("ok", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\","
                           "\"selector\":\"env in (a\"}"),
                 PKGSTORE_EINVALID, "selector: position 10");
    assert_fails(PUT("ok", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\","
                           "\"priority\":1000001}"),
                 PKGSTORE_EINVALID, "priority: 1000001 is outside");
    assert_fails(PUT("ok", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\","
                           "\"priority\":\"high\"}"),
                 PKGSTORE_EINVALID, "priority: not an integer");
    assert_fails(PUT("ok", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\","
                           "\"type\":\"sidecar\"}"),
                 PKGSTORE_EINVALID, "type: must be primary or addon");
    assert_fails(PUT("ok", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\","
                           "\"type\":\"addon\"}"),
                 PKGSTORE_EINVALID, "is a primary package, not addon");
    assert_fails(PUT("ok", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\","
                           "\"colour\":\"red\"}"),
                 PKGSTORE_EINVALID, "colour: unknown field");
    assert_fails(PUT("ok", "{\"package\":\"otelcol-contrib\",\"version\":\"0.99.0\"}"),
                 PKGSTORE_ENOTFOUND, "otelcol-contrib version 0.99.0 not found");
    assert_fails(PUT("ok", "{\"package\":\"no-such\",\"version\":\"1.0.0\"}"),
                 PKGSTORE_ENOTFOUND, "no-such version 1.0.0 not found");
    assert_fails(PUT("ok", "{\"package\":\"Bad/Name\",\"version\":\"1.0.0\"}"),
                 PKGSTORE_EINVALID, "package");
    /* type defaults to the package's own */
    CHECK(PUT("side", "{\"package\":\"log-sidecar\",\"version\":\"1.0.0\"}"));
    json_t *reply = json_loads(json, 0, NULL);
    assert_string_equal(str_at(reply, "type"), "addon");
    assert_string_equal(str_at(reply, "selector"), "");
    json_decref(reply);
    pkgstore_free(json);
#undef PUT
}

static void test_policy__reference_check(void **state)
{
    struct fixture *f = *state;
    put_policy(f, "canary", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\"}");
    assert_fails(pkgstore_policy_check_unreferenced(f->db, "otelcol-contrib", "0.98.0"),
                 PKGSTORE_ECONFLICT, "otelcol-contrib 0.98.0 is referenced by policy canary");
    assert_fails(pkgstore_policy_check_unreferenced(f->db, "otelcol-contrib", "v0.98.0"),
                 PKGSTORE_ECONFLICT, "canary");
    assert_fails(pkgstore_policy_check_unreferenced(f->db, "otelcol-contrib", NULL),
                 PKGSTORE_ECONFLICT, "canary");
    CHECK(pkgstore_policy_check_unreferenced(f->db, "otelcol-contrib", "0.97.0"));
    CHECK(pkgstore_policy_check_unreferenced(f->db, "log-sidecar", NULL));
    CHECK(pkgstore_policy_delete(f->db, "canary"));
    CHECK(pkgstore_policy_check_unreferenced(f->db, "otelcol-contrib", "0.98.0"));
}

/* ---------------------------------------------------------------- offers */

static void test_policy__offer_carries_every_field(void **state)
{
    struct fixture *f = *state;
    pkgstore_digest manifest_digest;
    char manifest_str[PKGSTORE_DIGEST_STR_SIZE], url[128];

    put_policy(f, "canary", "{\"selector\":\"env=dev,canary=true\",\"package\":"
                            "\"otelcol-contrib\",\"version\":\"0.98.0\",\"priority\":10}");
    json_t *resp = heartbeat(
        f, "{\"node_id\":\"edge-42\",\"labels\":{\"env\":\"dev\",\"canary\":\"true\"},"
           "\"platform\":\"linux/amd64\",\"agent_version\":\"0.1.0\",\"packages\":[{\"name\":"
           "\"otelcol-contrib\",\"type\":\"primary\",\"version\":\"0.97.0\",\"state\":"
           "\"Running\"}]}");
    assert_int_equal(json_integer_value(json_object_get(resp, "heartbeat_interval_s")), 30);
    json_t *offers = offers_of(resp);
    assert_int_equal(json_array_size(offers), 1);
    json_t *offer = json_array_get(offers, 0);
    assert_string_equal(str_at(offer, "name"), "otelcol-contrib");
    assert_string_equal(str_at(offer, "type"), "primary");
    assert_string_equal(str_at(offer, "version"), "0.98.0");
    assert_string_equal(str_at(offer, "policy"), "canary");
    assert_string_equal(str_at(offer, "platform"), "linux/amd64");
    assert_string_equal(str_at(offer, "digest"), f->contrib98_amd64);
    assert_int_equal(json_integer_value(json_object_get(offer, "size")),
                     strlen("contrib 0.98.0 amd64"));
    assert_string_equal(str_at(offer, "format"), "binary");
    assert_string_equal(str_at(offer, "entrypoint"), "otelcol-contrib");
    snprintf(url, sizeof(url), "/v1/blobs/%s", f->contrib98_amd64);
    assert_string_equal(str_at(offer, "url"), url);
    CHECK(pkgstore_registry_get(NULL, &manifest_digest, f->reg, "otelcol-contrib", "0.98.0"));
    pkgstore_digest_format(manifest_str, &manifest_digest);
    assert_string_equal(str_at(offer, "manifest_digest"), manifest_str);
    json_decref(resp);

    /* an arm64 node gets the arm64 artifact */
    resp = heartbeat(f, "{\"node_id\":\"edge-43\",\"labels\":{\"env\":\"dev\",\"canary\":"
                        "\"true\"},\"platform\":\"linux/aarch64\"}");
    offer = json_array_get(offers_of(resp), 0);
    assert_non_null(offer);
    assert_string_equal(str_at(offer, "digest"), f->contrib98_arm64);
    assert_string_equal(str_at(offer, "platform"), "linux/arm64");
    json_decref(resp);
    json_t *view = node_view(f, "edge-43"); /* stored normalized */
    assert_string_equal(str_at(view, "platform"), "linux/arm64");
    json_decref(view);

    /* a node the selector does not match gets nothing */
    resp = heartbeat(f, "{\"node_id\":\"edge-44\",\"labels\":{\"env\":\"dev\"},"
                        "\"platform\":\"linux/amd64\"}");
    assert_int_equal(json_array_size(offers_of(resp)), 0);
    json_decref(resp);
}

static void test_policy__priority_and_tie_break(void **state)
{
    struct fixture *f = *state;
    const char *node = "{\"node_id\":\"n1\",\"labels\":{\"env\":\"dev\"},\"platform\":"
                       "\"linux/amd64\"}";

    put_policy(f, "low", "{\"selector\":\"env=dev\",\"package\":\"otelcol-contrib\","
                         "\"version\":\"0.97.0\",\"priority\":1}");
    put_policy(f, "high", "{\"selector\":\"env\",\"package\":\"otelcol-contrib\","
                          "\"version\":\"0.98.0\",\"priority\":2}");
    json_t *resp = heartbeat(f, node);
    assert_int_equal(json_array_size(offers_of(resp)), 1);
    assert_string_equal(str_at(json_array_get(offers_of(resp), 0), "policy"), "high");
    json_decref(resp);

    /* equal priority: the lexically first name wins */
    put_policy(f, "aaa", "{\"selector\":\"env=dev\",\"package\":\"otelcol-contrib\","
                         "\"version\":\"0.97.0\",\"priority\":2}");
    resp = heartbeat(f, node);
    assert_string_equal(str_at(json_array_get(offers_of(resp), 0), "policy"), "aaa");
    assert_string_equal(str_at(json_array_get(offers_of(resp), 0), "version"), "0.97.0");
    json_decref(resp);

    /* the losers govern nothing */
    json_t *view = policy_view(f, "high");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(view, "status"),
                                                        "nodes_total")),
                     0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(view, "status"),
                                                        "nodes_matching")),
                     1);
    json_decref(view);

    /* deleting the winner hands the node to the next one */
    CHECK(pkgstore_policy_delete(f->db, "aaa"));
    resp = heartbeat(f, node);
    assert_string_equal(str_at(json_array_get(offers_of(resp), 0), "policy"), "high");
    json_decref(resp);
}

static void test_policy__primary_and_addon_offers(void **state)
{
    struct fixture *f = *state;
    put_policy(f, "collector", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\"}");
    put_policy(f, "sidecar", "{\"package\":\"log-sidecar\",\"version\":\"1.0.0\"}");
    json_t *resp = heartbeat(f, "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\"}");
    json_t *offers = offers_of(resp);
    assert_int_equal(json_array_size(offers), 2);
    int seen_primary = 0, seen_addon = 0;
    for (size_t i = 0; i < 2; i++) {
        const char *type = str_at(json_array_get(offers, i), "type");
        seen_primary += strcmp(type, "primary") == 0;
        seen_addon += strcmp(type, "addon") == 0;
    }
    assert_int_equal(seen_primary, 1);
    assert_int_equal(seen_addon, 1);
    json_decref(resp);
}

static void test_policy__no_offer_when_running_the_digest(void **state)
{
    struct fixture *f = *state;
    char body[512];

    put_policy(f, "canary", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\"}");
    snprintf(body, sizeof(body),
             "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\",\"packages\":[{\"name\":"
             "\"otelcol-contrib\",\"version\":\"0.98.0\",\"digest\":\"%s\",\"state\":"
             "\"Running\"}]}",
             f->contrib98_amd64);
    json_t *resp = heartbeat(f, body);
    assert_int_equal(json_array_size(offers_of(resp)), 0);
    json_decref(resp);

    json_t *view = node_view(f, "n1");
    json_t *rollout = json_array_get(json_object_get(view, "rollout"), 0);
    assert_string_equal(str_at(rollout, "state"), "Upgraded");
    assert_string_equal(str_at(rollout, "policy"), "canary");
    json_decref(view);
}

/* The addon contract (docs/api.md): targets name every governed package,
 * offered or not; an addon running its digest has a target and no offer. */
static void test_policy__targets_name_every_governed_package(void **state)
{
    struct fixture *f = *state;
    char body[768];
    put_policy(f, "collector", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\"}");
    put_policy(f, "sidecar", "{\"package\":\"log-sidecar\",\"version\":\"1.0.0\"}");
    snprintf(body, sizeof(body),
             "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\",\"packages\":["
             "{\"name\":\"otelcol-contrib\",\"version\":\"0.97.0\",\"digest\":\"%s\"},"
             "{\"name\":\"log-sidecar\",\"type\":\"addon\",\"version\":\"1.0.0\",\"digest\":\"%s\"}]}",
             f->contrib97_amd64, f->sidecar_amd64);
    json_t *resp = heartbeat(f, body);
    json_t *offers = offers_of(resp), *targets = json_object_get(resp, "targets");
    assert_int_equal(json_array_size(offers), 1);
    assert_string_equal(str_at(json_array_get(offers, 0), "name"), "otelcol-contrib");
    assert_true(json_is_array(targets));
    assert_int_equal(json_array_size(targets), 2);
    int seen = 0;
    for (size_t i = 0; i < 2; i++) {
        json_t *t = json_array_get(targets, i);
        if (!strcmp(str_at(t, "name"), "log-sidecar")) {
            assert_string_equal(str_at(t, "type"), "addon");
            assert_string_equal(str_at(t, "state"), "Upgraded");
            assert_string_equal(str_at(t, "digest"), f->sidecar_amd64);
            assert_string_equal(str_at(t, "policy"), "sidecar");
            assert_null(json_object_get(t, "reason")); /* running it is no reason */
            seen++;
        } else {
            assert_string_equal(str_at(t, "state"), "Pending");
            assert_string_equal(str_at(t, "digest"), f->contrib98_amd64);
            seen++;
        }
    }
    assert_int_equal(seen, 2);
    json_decref(resp);

    /* no artifact for the platform: a target with the reason, no digest */
    resp = heartbeat(f, "{\"node_id\":\"n2\",\"platform\":\"linux/s390x\"}");
    assert_int_equal(json_array_size(offers_of(resp)), 0);
    targets = json_object_get(resp, "targets");
    assert_int_equal(json_array_size(targets), 2);
    json_t *t = json_array_get(targets, 0);
    assert_string_equal(str_at(t, "state"), "Incompatible");
    assert_null(json_object_get(t, "digest"));
    assert_non_null(strstr(str_at(t, "reason"), "for linux/s390x"));
    json_decref(resp);

    /* no policy, no target */
    CHECK(pkgstore_policy_delete(f->db, "sidecar"));
    resp = heartbeat(f, body);
    assert_int_equal(json_array_size(json_object_get(resp, "targets")), 1);
    json_decref(resp);
}

/* Offers carry annotations and dependencies; an addon whose dependencies
 * the node's packages do not meet is Incompatible with the reason. */
static void test_policy__offers_carry_annotations_and_check_dependencies(void **state)
{
    struct fixture *f = *state;
    pkgstore_manifest *m = NULL;
    CHECK(pkgstore_registry_get(&m, NULL, f->reg, "log-sidecar", "1.0.0"));
    CHECK(pkgstore_manifest_annotation_set(m, "io.pkgstore.addon.args", "[\"--x\"]"));
    CHECK(pkgstore_manifest_add_dependency(m, "otelcol-contrib", ">=0.98.0"));
    CHECK(pkgstore_registry_put(NULL, f->reg, m, 1));
    pkgstore_manifest_free(m);
    pkgstore_policy_invalidate(f->db);
    put_policy(f, "sidecar", "{\"package\":\"log-sidecar\",\"version\":\"1.0.0\"}");

    json_t *resp = heartbeat(f, "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\",\"packages\":"
                                "[{\"name\":\"otelcol-contrib\",\"version\":\"0.97.0\"}]}");
    assert_int_equal(json_array_size(offers_of(resp)), 0);
    json_t *t = json_array_get(json_object_get(resp, "targets"), 0);
    assert_string_equal(str_at(t, "state"), "Incompatible");
    assert_string_equal(str_at(t, "reason"),
                        "requires otelcol-contrib >=0.98.0; the node runs otelcol-contrib 0.97.0");
    json_decref(resp);
    resp = heartbeat(f, "{\"node_id\":\"n3\",\"platform\":\"linux/amd64\"}");
    assert_non_null(strstr(str_at(json_array_get(json_object_get(resp, "targets"), 0), "reason"),
                           "the node does not run otelcol-contrib"));
    json_decref(resp);

    resp = heartbeat(f, "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\",\"packages\":"
                        "[{\"name\":\"otelcol-contrib\",\"version\":\"0.98.0\"}]}");
    json_t *offers = offers_of(resp);
    assert_int_equal(json_array_size(offers), 1);
    json_t *o = json_array_get(offers, 0);
    assert_string_equal(str_at(json_object_get(o, "annotations"), "io.pkgstore.addon.args"),
                        "[\"--x\"]");
    json_t *dep = json_array_get(json_object_get(o, "dependencies"), 0);
    assert_string_equal(str_at(dep, "name"), "otelcol-contrib");
    assert_string_equal(str_at(dep, "version"), ">=0.98.0");
    assert_int_equal(json_integer_value(json_object_get(o, "retry")), 0);
    json_decref(resp);
}

/* The retry generation: 0, raised by one, kept by a PUT, carried by offers. */
static void test_policy__retry_generation(void **state)
{
    struct fixture *f = *state;
    pkgstore_policy stored;
    put_policy(f, "canary", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\"}");
    CHECK(pkgstore_policy_get(&stored, f->db, "canary"));
    assert_int_equal(stored.retry, 0);
    CHECK(pkgstore_policy_retry(&stored, f->db, "canary"));
    assert_int_equal(stored.retry, 1);
    CHECK(pkgstore_policy_retry(NULL, f->db, "canary"));
    /* a PUT keeps it, even one that sends another value */
    put_policy(f, "canary", "{\"package\":\"otelcol-contrib\",\"version\":\"0.97.0\",\"retry\":0}");
    CHECK(pkgstore_policy_get(&stored, f->db, "canary"));
    assert_int_equal(stored.retry, 2);
    json_t *resp = heartbeat(f, "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\"}");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(offers_of(resp), 0), "retry")),
                     2);
    json_decref(resp);
    json_t *view = policy_view(f, "canary");
    assert_int_equal(json_integer_value(json_object_get(view, "retry")), 2);
    json_decref(view);
    assert_fails(pkgstore_policy_retry(NULL, f->db, "nope"), PKGSTORE_ENOTFOUND, "nope");
    assert_fails(pkgstore_policy_retry(NULL, f->db, "Bad!"), PKGSTORE_EINVALID, "policy name");
    /* it survives a reopen */
    pkgstore_policy_free(f->db);
    f->db = NULL;
    CHECK(open_db(f, 0));
    CHECK(pkgstore_policy_get(&stored, f->db, "canary"));
    assert_int_equal(stored.retry, 2);
}

static void test_policy__incompatible_platform(void **state)
{
    struct fixture *f = *state;
    put_policy(f, "canary", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\"}");
    json_t *resp = heartbeat(f, "{\"node_id\":\"rv\",\"platform\":\"linux/riscv64\"}");
    assert_int_equal(json_array_size(offers_of(resp)), 0);
    json_decref(resp);

    json_t *view = node_view(f, "rv");
    json_t *rollout = json_array_get(json_object_get(view, "rollout"), 0);
    assert_string_equal(str_at(rollout, "state"), "Incompatible");
    assert_string_equal(str_at(view, "rollout_state"), "Incompatible");
    json_decref(view);

    view = policy_view(f, "canary");
    assert_int_equal(count_of(view, "Incompatible"), 1);
    json_t *nodes = json_object_get(json_object_get(view, "status"), "nodes");
    assert_int_equal(json_array_size(nodes), 1);
    assert_string_equal(str_at(json_array_get(nodes, 0), "state"), "Incompatible");
    json_decref(view);

    /* a riscv64 artifact appears: after invalidation the node gets it */
    char digest[PKGSTORE_DIGEST_STR_SIZE];
    add_artifact(f, "otelcol-contrib", "0.98.0", PKGSTORE_TYPE_PRIMARY, "linux/riscv64",
                 "contrib 0.98.0 riscv64", digest);
    pkgstore_policy_invalidate(f->db);
    resp = heartbeat(f, "{\"node_id\":\"rv\",\"platform\":\"linux/riscv64\"}");
    assert_int_equal(json_array_size(offers_of(resp)), 1);
    assert_string_equal(str_at(json_array_get(offers_of(resp), 0), "digest"), digest);
    json_decref(resp);
}


static void test_policy__addon_slots_per_package(void **state)
{
    struct fixture *f = *state;
    add_artifact(f, "metrics-sidecar", "2.0.0", PKGSTORE_TYPE_ADDON, "linux/amd64",
                 "metrics sidecar 2.0.0", NULL);
    add_artifact(f, "log-sidecar", "1.1.0", PKGSTORE_TYPE_ADDON, "linux/amd64",
                 "sidecar 1.1.0 amd64", NULL);
    /* two addon packages side by side; for log-sidecar the higher priority wins */
    put_policy(f, "logs-old", "{\"package\":\"log-sidecar\",\"version\":\"1.0.0\",\"priority\":1}");
    put_policy(f, "logs-new", "{\"package\":\"log-sidecar\",\"version\":\"1.1.0\",\"priority\":2}");
    put_policy(f, "metrics", "{\"package\":\"metrics-sidecar\",\"version\":\"2.0.0\"}");
    json_t *resp = heartbeat(f, "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\"}");
    json_t *offers = offers_of(resp);
    assert_int_equal(json_array_size(offers), 2);
    int logs = 0, metrics = 0;
    for (size_t i = 0; i < json_array_size(offers); i++) {
        json_t *offer = json_array_get(offers, i);
        assert_string_equal(str_at(offer, "type"), "addon");
        if (strcmp(str_at(offer, "name"), "log-sidecar") == 0) {
            assert_string_equal(str_at(offer, "policy"), "logs-new");
            assert_string_equal(str_at(offer, "version"), "1.1.0");
            logs++;
        } else {
            assert_string_equal(str_at(offer, "name"), "metrics-sidecar");
            metrics++;
        }
    }
    assert_int_equal(logs, 1);
    assert_int_equal(metrics, 1);
    json_decref(resp);
}

/* More policies and offers than the heartbeat keeps on its stack (16). */
static void test_policy__many_addon_offers(void **state)
{
    struct fixture *f = *state;
    enum { ADDONS = 40 };
    char name[32], body[160], bytes[32];

    put_policy(f, "collector", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\"}");
    for (int i = 0; i < ADDONS; i++) {
        snprintf(name, sizeof(name), "addon-%02d", i);
        snprintf(bytes, sizeof(bytes), "addon %02d", i);
        add_artifact(f, name, "1.0.0", PKGSTORE_TYPE_ADDON, "linux/amd64", bytes, NULL);
        snprintf(body, sizeof(body), "{\"package\":\"%s\",\"version\":\"1.0.0\"}", name);
        put_policy(f, name, body);
    }
    json_t *resp = heartbeat(f, "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\"}");
    json_t *offers = offers_of(resp);
    assert_int_equal(json_array_size(offers), ADDONS + 1);
    int seen[ADDONS] = {0}, primary = 0;
    for (size_t i = 0; i < json_array_size(offers); i++) {
        json_t *offer = json_array_get(offers, i);
        const char *offered = str_at(offer, "name");
        if (strcmp(offered, "otelcol-contrib") == 0) {
            assert_string_equal(str_at(offer, "digest"), f->contrib98_amd64);
            primary++;
            continue;
        }
        int n = -1;
        assert_int_equal(sscanf(offered, "addon-%d", &n), 1);
        assert_in_range(n, 0, ADDONS - 1);
        assert_string_equal(str_at(offer, "policy"), offered);
        seen[n]++;
    }
    assert_int_equal(primary, 1);
    for (int i = 0; i < ADDONS; i++)
        assert_int_equal(seen[i], 1);
    json_decref(resp);
}

static void test_policy__offer_uses_a_compatible_fallback(void **state)
{
    struct fixture *f = *state;
    char digest[PKGSTORE_DIGEST_STR_SIZE];
    add_artifact(f, "otelcol-lite", "1.0.0", PKGSTORE_TYPE_PRIMARY, "linux/386", "lite 386",
                 digest);
    put_policy(f, "lite", "{\"package\":\"otelcol-lite\",\"version\":\"1.0.0\"}");
    json_t *resp = heartbeat(f, "{\"node_id\":\"n1\",\"platform\":\"linux/x86_64\"}");
    json_t *offer = json_array_get(offers_of(resp), 0);
    assert_non_null(offer);
    assert_string_equal(str_at(offer, "platform"), "linux/386"); /* the artifact's */
    assert_string_equal(str_at(offer, "digest"), digest);
    json_decref(resp);
}

struct plant {
    enum ps_index_db db;
    const char *key;
    const char *value;
};

static int plant_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct plant *plant = payload;
    MDB_val key = {strlen(plant->key), (void *)plant->key};
    MDB_val val = {strlen(plant->value), (void *)plant->value};
    return mdb_put(txn, ps_index_dbi(index, plant->db), &key, &val, 0) == 0 ? 0
                                                                             : PKGSTORE_EIO;
}

static void test_policy__corrupt_records_on_open(void **state)
{
    struct fixture *f = *state;
    json_decref(heartbeat(f, "{\"node_id\":\"good\",\"platform\":\"linux/amd64\"}"));
    pkgstore_policy_free(f->db);
    f->db = NULL;

    /* a node record that does not parse is dropped: the node comes back */
    struct plant node = {PS_DB_NODES, "broken", "{\"id\":\"broken\",\"platform\":"};
    CHECK(ps_index_write(ps_store_index(f->store), plant_txn, &node));
    CHECK(open_db(f, 0));
    assert_int_equal(pkgstore_policy_node_count(f->db), 1);
    pkgstore_policy_free(f->db);
    f->db = NULL;

    /* a policy record that does not parse refuses the open, naming it */
    struct plant policy = {PS_DB_POLICIES, "mangled", "not json"};
    CHECK(ps_index_write(ps_store_index(f->store), plant_txn, &policy));
    assert_fails(open_db(f, 0), PKGSTORE_ECORRUPT, "policy record 'mangled'");
    assert_null(f->db);
}

/* ---------------------------------------------------------------- status */

static void send_status(struct fixture *f, const char *node, const char *status,
                        const char *message)
{
    char body[4096];
    snprintf(body, sizeof(body),
             "{\"node_id\":\"%s\",\"platform\":\"linux/amd64\",\"packages\":[{\"name\":"
             "\"otelcol-contrib\",\"version\":\"0.97.0\",\"offer\":{\"version\":\"0.98.0\"},"
             "\"status\":\"%s\",\"message\":\"%s\"}]}",
             node, status, message);
    json_decref(heartbeat(f, body));
}

static void test_policy__history_bounded_and_deduplicated(void **state)
{
    struct fixture *f = *state;
    pkgstore_policy_free(f->db);
    CHECK(open_db(f, 4));
    put_policy(f, "canary", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\"}");

    send_status(f, "n1", "Downloading", "");
    send_status(f, "n1", "Downloading", ""); /* a repeat: not recorded again */
    send_status(f, "n1", "Verifying", "");
    send_status(f, "n1", "Validating", "");
    send_status(f, "n1", "UpgradeFailed", "validate: exit 1");
    send_status(f, "n1", "Downloading", "retry");
    send_status(f, "n1", "Downloading", "retry");

    json_t *view = node_view(f, "n1");
    json_t *history = json_object_get(view, "history");
    assert_int_equal(json_array_size(history), 4);
    assert_string_equal(str_at(json_array_get(history, 0), "status"), "Verifying");
    assert_string_equal(str_at(json_array_get(history, 2), "status"), "UpgradeFailed");
    assert_string_equal(str_at(json_array_get(history, 2), "message"), "validate: exit 1");
    assert_string_equal(str_at(json_array_get(history, 2), "version"), "0.98.0");
    assert_string_equal(str_at(json_array_get(history, 3), "message"), "retry");
    json_t *last = json_object_get(view, "last_status");
    assert_string_equal(str_at(last, "status"), "Downloading");
    assert_string_equal(str_at(last, "package"), "otelcol-contrib");
    json_t *rollout = json_array_get(json_object_get(view, "rollout"), 0);
    assert_string_equal(str_at(rollout, "state"), "Downloading");
    json_decref(view);

    /* a long message is cut, never refused */
    char *message = malloc(3000);
    memset(message, 'm', 2999);
    message[2999] = '\0';
    send_status(f, "n1", "RolledBack", message);
    free(message);
    view = node_view(f, "n1");
    history = json_object_get(view, "history");
    assert_int_equal(strlen(str_at(json_array_get(history, 3), "message")),
                     PKGSTORE_STATUS_MESSAGE_MAX);
    json_decref(view);
}

static void test_policy__rollout_counts(void **state)
{
    struct fixture *f = *state;
    char body[512];
    uint64_t counts[PKGSTORE_ROLLOUT_COUNT], total = 0;

    put_policy(f, "canary", "{\"selector\":\"ring=canary\",\"package\":\"otelcol-contrib\","
                            "\"version\":\"0.98.0\"}");
    json_decref(heartbeat(f, "{\"node_id\":\"pending\",\"labels\":{\"ring\":\"canary\"},"
                             "\"platform\":\"linux/amd64\"}"));
    json_decref(heartbeat(f, "{\"node_id\":\"other\",\"labels\":{\"ring\":\"main\"},"
                             "\"platform\":\"linux/amd64\"}"));
    json_decref(heartbeat(f, "{\"node_id\":\"odd\",\"labels\":{\"ring\":\"canary\"},"
                             "\"platform\":\"plan9/mips\"}"));
    json_decref(heartbeat(f, "{\"node_id\":\"dl\",\"labels\":{\"ring\":\"canary\"},"
                             "\"platform\":\"linux/amd64\",\"packages\":[{\"name\":"
                             "\"otelcol-contrib\",\"offer\":{\"version\":\"0.98.0\"},"
                             "\"status\":\"Downloading\"}]}"));
    json_decref(heartbeat(f, "{\"node_id\":\"rb\",\"labels\":{\"ring\":\"canary\"},"
                             "\"platform\":\"linux/amd64\",\"packages\":[{\"name\":"
                             "\"otelcol-contrib\",\"offer\":{\"version\":\"0.98.0\"},"
                             "\"status\":\"RolledBack\",\"message\":\"health check\"}]}"));
    snprintf(body, sizeof(body),
             "{\"node_id\":\"up\",\"labels\":{\"ring\":\"canary\"},\"platform\":"
             "\"linux/amd64\",\"packages\":[{\"name\":\"otelcol-contrib\",\"version\":"
             "\"0.98.0\",\"digest\":\"%s\",\"status\":\"Upgraded\"}]}",
             f->contrib98_amd64);
    json_decref(heartbeat(f, body));

    CHECK(pkgstore_policy_counts(counts, &total, f->db, "canary"));
    assert_int_equal(total, 5);
    assert_int_equal(counts[PKGSTORE_ROLLOUT_PENDING], 1);
    assert_int_equal(counts[PKGSTORE_ROLLOUT_DOWNLOADING], 1);
    assert_int_equal(counts[PKGSTORE_ROLLOUT_ROLLED_BACK], 1);
    assert_int_equal(counts[PKGSTORE_ROLLOUT_UPGRADED], 1);
    assert_int_equal(counts[PKGSTORE_ROLLOUT_INCOMPATIBLE], 1);

    json_t *view = policy_view(f, "canary");
    assert_int_equal(count_of(view, "Pending"), 1);
    assert_int_equal(count_of(view, "Unknown"), 0);
    json_t *nodes = json_object_get(json_object_get(view, "status"), "nodes");
    assert_int_equal(json_array_size(nodes), 5);
    assert_string_equal(str_at(json_array_get(nodes, 0), "id"), "dl"); /* sorted by id */
    assert_string_equal(str_at(json_array_get(nodes, 4), "id"), "up");
    json_decref(view);
    assert_int_equal(pkgstore_policy_node_count(f->db), 6);

    /* the list gives the same status, nodes included, in one pass */
    char *json = NULL;
    CHECK(pkgstore_policy_list_json(&json, f->db, 1));
    json_t *list = json_loads(json, 0, NULL);
    pkgstore_free(json);
    json_t *first = json_array_get(json_object_get(list, "policies"), 0);
    assert_string_equal(str_at(first, "name"), "canary");
    assert_int_equal(count_of(first, "RolledBack"), 1);
    assert_int_equal(json_array_size(json_object_get(json_object_get(first, "status"), "nodes")),
                     5);
    json_decref(list);
}

struct metric_sum {
    uint64_t total;
    unsigned int calls;
};

static int sum_counts(const char *policy, pkgstore_rollout_state st, uint64_t count, void *p)
{
    struct metric_sum *sum = p;
    assert_string_equal(policy, "canary");
    assert_non_null(pkgstore_rollout_state_name(st));
    sum->total += count;
    sum->calls++;
    return 0;
}

static void test_policy__count_foreach_for_metrics(void **state)
{
    struct fixture *f = *state;
    struct metric_sum sum = {0, 0};
    put_policy(f, "canary", "{\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\"}");
    json_decref(heartbeat(f, "{\"node_id\":\"a\",\"platform\":\"linux/amd64\"}"));
    json_decref(heartbeat(f, "{\"node_id\":\"b\",\"platform\":\"linux/amd64\"}"));
    CHECK(pkgstore_policy_count_foreach(f->db, sum_counts, &sum));
    assert_int_equal(sum.calls, PKGSTORE_ROLLOUT_COUNT);
    assert_int_equal(sum.total, 2);
}

/* ---------------------------------------------------------------- heartbeats */

static void test_policy__heartbeat_validation(void **state)
{
    struct fixture *f = *state;
    char *out = (char *)0x1;
#define HB(body) pkgstore_policy_heartbeat(&out, f->db, body, strlen(body))
    assert_fails(HB("{\"node_id\":"), PKGSTORE_EINVALID, "body: line 1");
    assert_null(out);
    assert_fails(HB("[1]"), PKGSTORE_EINVALID, "body: not a JSON object");
    assert_fails(HB("{\"platform\":\"linux/amd64\"}"), PKGSTORE_EINVALID, "node_id: missing");
    assert_fails(HB("{\"node_id\":\"a b\",\"platform\":\"linux/amd64\"}"), PKGSTORE_EINVALID,
                 "node_id: position 2");
    assert_fails(HB("{\"node_id\":\"n\"}"), PKGSTORE_EINVALID, "platform: missing");
    assert_fails(HB("{\"node_id\":\"n\",\"platform\":7}"), PKGSTORE_EINVALID,
                 "platform: not a string");
    assert_fails(HB("{\"node_id\":\"n\",\"platform\":\"linux\"}"), PKGSTORE_EINVALID,
                 "platform");
    assert_fails(HB("{\"node_id\":\"n\",\"platform\":\"linux/amd64\",\"labels\":{\"bad key\":"
                    "\"x\"}}"),
                 PKGSTORE_EINVALID, "labels.bad key");
    assert_fails(HB("{\"node_id\":\"n\",\"platform\":\"linux/amd64\",\"labels\":{\"k\":1}}"),
                 PKGSTORE_EINVALID, "labels.k: not a string");
    assert_fails(HB("{\"node_id\":\"n\",\"platform\":\"linux/amd64\",\"packages\":[{\"name\":"
                    "\"x\",\"digest\":\"sha256:zz\"}]}"),
                 PKGSTORE_EINVALID, "packages[0].digest: not a sha256 digest");
    assert_fails(HB("{\"node_id\":\"n\",\"platform\":\"linux/amd64\",\"packages\":[{\"name\":"
                    "\"x\"},{\"version\":\"1\"}]}"),
                 PKGSTORE_EINVALID, "packages[1].name: missing");
    assert_fails(HB("{\"node_id\":\"n\",\"platform\":\"linux/amd64\",\"packages\":[{\"name\":"
                    "\"x\",\"status\":\"Exploded\"}]}"),
                 PKGSTORE_EINVALID, "packages[0].status: 'Exploded' is not one of");
    assert_fails(HB("{\"node_id\":\"n\",\"platform\":\"linux/amd64\",\"packages\":{}}"),
                 PKGSTORE_EINVALID, "packages: not an array");
    assert_fails(HB("{\"node_id\":\"n\",\"node_id\":\"m\",\"platform\":\"linux/amd64\"}"),
                 PKGSTORE_EINVALID, "duplicate");

    char big[8192];
    size_t len = (size_t)snprintf(big, sizeof(big), "{\"node_id\":\"n\",\"platform\":\"x/y\","
                                                    "\"labels\":{");
    for (int i = 0; i <= PKGSTORE_LABELS_MAX; i++)
        len += (size_t)snprintf(big + len, sizeof(big) - len, "%s\"k%d\":\"v\"", i ? "," : "", i);
    snprintf(big + len, sizeof(big) - len, "}}");
    assert_fails(HB(big), PKGSTORE_ELIMIT, "labels: more than");
    assert_int_equal(pkgstore_policy_node_count(f->db), 0);

    /* packages fill a fixed array: the limit itself is accepted, one more is not */
    for (int count = PKGSTORE_NODE_PACKAGES_MAX; count <= PKGSTORE_NODE_PACKAGES_MAX + 1;
         count++) {
        len = (size_t)snprintf(big, sizeof(big),
                               "{\"node_id\":\"p%d\",\"platform\":\"linux/amd64\",\"packages\":[",
                               count);
        for (int i = 0; i < count; i++)
            len += (size_t)snprintf(big + len, sizeof(big) - len, "%s{\"name\":\"p%d\"}",
                                    i ? "," : "", i);
        assert_true(len + 3 < sizeof(big));
        snprintf(big + len, sizeof(big) - len, "]}");
        if (count == PKGSTORE_NODE_PACKAGES_MAX) {
            CHECK(HB(big));
            pkgstore_free(out);
        } else {
            assert_fails(HB(big), PKGSTORE_ELIMIT, "packages: more than");
        }
    }
    assert_int_equal(pkgstore_policy_node_count(f->db), 1);

    /* unknown fields are ignored (newer agents) */
    CHECK(HB("{\"node_id\":\"n\",\"platform\":\"linux/amd64\",\"uptime_s\":5}"));
    pkgstore_free(out);
#undef HB
}

static void test_policy__node_views_and_delete(void **state)
{
    struct fixture *f = *state;
    char *json = NULL;
    json_decref(heartbeat(f, "{\"node_id\":\"b\",\"labels\":{\"zone\":\"z1\",\"env\":\"dev\"},"
                             "\"platform\":\"linux/amd64\",\"agent_version\":\"0.1.0\"}"));
    json_decref(heartbeat(f, "{\"node_id\":\"a\",\"platform\":\"linux/arm64\"}"));

    json_t *view = node_view(f, "b");
    assert_string_equal(str_at(view, "id"), "b");
    assert_string_equal(str_at(view, "platform"), "linux/amd64");
    assert_string_equal(str_at(view, "agent_version"), "0.1.0");
    assert_string_equal(str_at(json_object_get(view, "labels"), "zone"), "z1");
    assert_non_null(strstr(str_at(view, "last_seen"), "Z"));
    assert_true(json_is_null(json_object_get(view, "last_status")));
    assert_true(json_is_null(json_object_get(view, "rollout_state"))); /* no policy */
    assert_int_equal(json_array_size(json_object_get(view, "history")), 0);
    json_decref(view);

    CHECK(pkgstore_policy_node_list_json(&json, f->db, 0));
    json_t *list = json_loads(json, 0, NULL);
    pkgstore_free(json);
    json_t *nodes = json_object_get(list, "nodes");
    assert_int_equal(json_array_size(nodes), 2);
    assert_string_equal(str_at(json_array_get(nodes, 0), "id"), "a");
    assert_null(json_object_get(json_array_get(nodes, 0), "history"));
    json_decref(list);

    assert_fails(pkgstore_policy_node_get_json(&json, f->db, "zz"), PKGSTORE_ENOTFOUND,
                 "node zz not found");
    CHECK(pkgstore_policy_node_delete(f->db, "a"));
    assert_fails(pkgstore_policy_node_delete(f->db, "a"), PKGSTORE_ENOTFOUND, "not found");
    assert_int_equal(pkgstore_policy_node_count(f->db), 1);
}

static void test_policy__node_query_by_selector_and_page(void **state)
{
    struct fixture *f = *state;
    char body[256], *json = NULL;
    for (int i = 0; i < 10; i++) {
        snprintf(body, sizeof(body),
                 "{\"node_id\":\"n%d\",\"labels\":{\"env\":\"%s\"},\"platform\":\"linux/amd64\"}",
                 i, i % 2 ? "dev" : "prod");
        json_decref(heartbeat(f, body));
    }
    CHECK(pkgstore_policy_node_query_json(&json, f->db, "env=dev", 1, 2, 0));
    json_t *page = json_loads(json, 0, NULL);
    pkgstore_free(json);
    assert_int_equal(json_integer_value(json_object_get(page, "total")), 5);
    json_t *nodes = json_object_get(page, "nodes");
    assert_int_equal(json_array_size(nodes), 2);
    assert_string_equal(str_at(json_array_get(nodes, 0), "id"), "n3"); /* n1 n3 n5 n7 n9 */
    assert_string_equal(str_at(json_array_get(nodes, 1), "id"), "n5");
    json_decref(page);

    CHECK(pkgstore_policy_node_query_json(&json, f->db, NULL, 8, SIZE_MAX, 1));
    page = json_loads(json, 0, NULL);
    pkgstore_free(json);
    assert_int_equal(json_integer_value(json_object_get(page, "total")), 10);
    assert_int_equal(json_array_size(json_object_get(page, "nodes")), 2); /* n8 n9 */
    assert_non_null(json_object_get(json_array_get(json_object_get(page, "nodes"), 0), "history"));
    json_decref(page);

    assert_fails(pkgstore_policy_node_query_json(&json, f->db, "env in (", 0, 10, 0),
                 PKGSTORE_EINVALID, "selector: position 9");
    assert_null(json);
}

/* ---------------------------------------------------------------- persistence */

static void test_policy__survives_close_and_reopen(void **state)
{
    struct fixture *f = *state;
    put_policy(f, "canary", "{\"selector\":\"env=dev\",\"package\":\"otelcol-contrib\","
                            "\"version\":\"0.98.0\",\"priority\":3}");
    json_decref(heartbeat(f, "{\"node_id\":\"n1\",\"labels\":{\"env\":\"dev\"},"
                             "\"platform\":\"linux/amd64\",\"agent_version\":\"0.1.0\","
                             "\"packages\":[{\"name\":\"otelcol-contrib\",\"version\":"
                             "\"0.97.0\",\"state\":\"Running\",\"offer\":{\"version\":"
                             "\"0.98.0\"},\"status\":\"RolledBack\",\"message\":\"port\"}]}"));
    json_decref(heartbeat(f, "{\"node_id\":\"n2\",\"platform\":\"linux/amd64\"}"));
    CHECK(pkgstore_policy_node_delete(f->db, "n2"));
    json_decref(heartbeat(f, "{\"node_id\":\"n3\",\"platform\":\"linux/amd64\"}"));

    /* close everything, reopen from disk */
    pkgstore_policy_free(f->db);
    f->db = NULL;
    pkgstore_registry_free(f->reg);
    f->reg = NULL;
    pkgstore_store_free(f->store);
    f->store = NULL;
    CHECK(open_store(f));
    CHECK(open_db(f, 0));

    pkgstore_policy policy;
    CHECK(pkgstore_policy_get(&policy, f->db, "canary"));
    assert_int_equal(policy.priority, 3);
    assert_string_equal(policy.selector, "env=dev");
    assert_int_equal(pkgstore_policy_node_count(f->db), 2);
    json_t *view = node_view(f, "n1");
    assert_string_equal(str_at(json_object_get(view, "labels"), "env"), "dev");
    assert_string_equal(str_at(view, "agent_version"), "0.1.0");
    json_t *history = json_object_get(view, "history");
    assert_int_equal(json_array_size(history), 1);
    assert_string_equal(str_at(json_array_get(history, 0), "status"), "RolledBack");
    assert_string_equal(str_at(json_array_get(history, 0), "message"), "port");
    json_t *rollout = json_array_get(json_object_get(view, "rollout"), 0);
    assert_string_equal(str_at(rollout, "state"), "RolledBack");
    json_decref(view);
    char *json = NULL;
    assert_int_equal(pkgstore_policy_node_get_json(&json, f->db, "n2"), PKGSTORE_ENOTFOUND);
}

static void test_policy__background_flusher_writes_nodes(void **state)
{
    struct fixture *f = *state;
    pkgstore_policy_options opts = PKGSTORE_POLICY_OPTIONS_INIT;
    pkgstore_policy_db *second = NULL;

    pkgstore_policy_free(f->db);
    f->db = NULL;
    opts.flush_interval_ms = 20;
    CHECK(pkgstore_policy_open(&f->db, f->store, &opts));
    json_decref(heartbeat(f, "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\"}"));
    /* a second handle over the same store loads what the flusher wrote */
    for (int tries = 0; tries < 200; tries++) {
        opts.no_flusher = 1;
        CHECK(pkgstore_policy_open(&second, f->store, &opts));
        size_t seen = pkgstore_policy_node_count(second);
        pkgstore_policy_free(second);
        second = NULL;
        if (seen == 1)
            return;
        usleep(10000);
    }
    fail_msg("the flusher never wrote node n1");
}

/* ---------------------------------------------------------------- threads */

struct worker {
    struct fixture *f;
    int index;
    int failures;
};

static void *heartbeat_worker(void *arg)
{
    struct worker *w = arg;
    char body[256];
    for (int i = 0; i < 300; i++) {
        char *out = NULL;
        static const char *const statuses[] = {"Downloading", "Verifying", "RolledBack"};
        int len = snprintf(body, sizeof(body),
                           "{\"node_id\":\"t%d-n%d\",\"labels\":{\"env\":\"%s\"},"
                           "\"platform\":\"linux/amd64\",\"packages\":[{\"name\":"
                           "\"otelcol-contrib\",\"offer\":{\"version\":\"0.98.0\"},\"status\":\"%s\"}]}",
                           w->index, i % 100, i % 2 ? "dev" : "prod", statuses[i % 3]);
        if (pkgstore_policy_heartbeat(&out, w->f->db, body, (size_t)len) != 0 || !out)
            w->failures++;
        pkgstore_free(out);
    }
    return NULL;
}

static void test_policy__concurrent_heartbeats(void **state)
{
    struct fixture *f = *state;
    pthread_t threads[4];
    struct worker workers[4];

    put_policy(f, "dev", "{\"selector\":\"env=dev\",\"package\":\"otelcol-contrib\","
                         "\"version\":\"0.98.0\"}");
    for (int i = 0; i < 4; i++) {
        workers[i] = (struct worker){f, i, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, heartbeat_worker, &workers[i]), 0);
    }
    /* policy changes, views, flushes and node deletes while heartbeats run */
    for (int i = 0; i < 20; i++) {
        char *json = NULL;
        json_decref(heartbeat(f, "{\"node_id\":\"victim\",\"platform\":\"linux/amd64\"}"));
        CHECK(pkgstore_policy_node_delete(f->db, "victim"));
        CHECK(pkgstore_policy_node_list_json(&json, f->db, 1));
        pkgstore_free(json);
        CHECK(pkgstore_policy_get_json(&json, f->db, "dev", 1));
        pkgstore_free(json);
        put_policy(f, "prod", i % 2 ? "{\"selector\":\"env=prod\",\"package\":"
                                      "\"otelcol-contrib\",\"version\":\"0.97.0\"}"
                                    : "{\"selector\":\"env=prod\",\"package\":"
                                      "\"otelcol-contrib\",\"version\":\"0.98.0\"}");
        CHECK(pkgstore_policy_list_json(&json, f->db, 1));
        pkgstore_free(json);
        CHECK(pkgstore_policy_flush(f->db));
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(workers[i].failures, 0);
    }
    assert_int_equal(pkgstore_policy_node_count(f->db), 400);
    uint64_t counts[PKGSTORE_ROLLOUT_COUNT], total = 0;
    CHECK(pkgstore_policy_counts(counts, &total, f->db, "dev"));
    assert_int_equal(total, 200);
    /* every dev node last reported Downloading, Verifying or RolledBack */
    assert_int_equal(counts[PKGSTORE_ROLLOUT_DOWNLOADING] + counts[PKGSTORE_ROLLOUT_VERIFYING] +
                         counts[PKGSTORE_ROLLOUT_ROLLED_BACK],
                     200);
}

static void test_policy__misuse_is_refused(void **state)
{
    struct fixture *f = *state;
    pkgstore_policy_db *db = (pkgstore_policy_db *)0x1;
    char *out = NULL;
    assert_int_equal(pkgstore_policy_open(&db, NULL, NULL), PKGSTORE_EINVALID);
    assert_null(db);
    assert_int_equal(pkgstore_policy_heartbeat(&out, NULL, "{}", 2), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_policy_put(NULL, f->db, NULL), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_policy_get_json(NULL, f->db, "x", 0), PKGSTORE_EINVALID);
    assert_string_equal(pkgstore_rollout_state_name(PKGSTORE_ROLLOUT_INCOMPATIBLE),
                        "Incompatible");
    assert_null(pkgstore_rollout_state_name(PKGSTORE_ROLLOUT_COUNT));
    pkgstore_rollout_state st;
    assert_int_equal(pkgstore_rollout_state_parse(&st, "Pending"), PKGSTORE_EINVALID);
    CHECK(pkgstore_rollout_state_parse(&st, "RollbackFailed"));
    assert_int_equal(st, PKGSTORE_ROLLOUT_ROLLBACK_FAILED);
    pkgstore_policy_free(NULL);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_policy__put_get_list_delete),
        T(test_policy__put_validates),
        T(test_policy__reference_check),
        T(test_policy__offer_carries_every_field),
        T(test_policy__priority_and_tie_break),
        T(test_policy__primary_and_addon_offers),
        T(test_policy__no_offer_when_running_the_digest),
        T(test_policy__incompatible_platform),
        T(test_policy__addon_slots_per_package),
        T(test_policy__many_addon_offers),
        T(test_policy__offer_uses_a_compatible_fallback),
        T(test_policy__corrupt_records_on_open),
        T(test_policy__history_bounded_and_deduplicated),
        T(test_policy__rollout_counts),
        T(test_policy__count_foreach_for_metrics),
        T(test_policy__heartbeat_validation),
        T(test_policy__node_views_and_delete),
        T(test_policy__node_query_by_selector_and_page),
        T(test_policy__survives_close_and_reopen),
        T(test_policy__background_flusher_writes_nodes),
        T(test_policy__concurrent_heartbeats),
        T(test_policy__misuse_is_refused),
        T(test_policy__targets_name_every_governed_package),
        T(test_policy__offers_carry_annotations_and_check_dependencies),
        T(test_policy__retry_generation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#undef T
}

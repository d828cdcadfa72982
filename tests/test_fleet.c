/*
 * test_fleet.c - pkgstored's fleet (server/fleet/) without HTTP, on a real
 * store and a real fleet directory: heartbeats and their replies, history,
 * paged views and rollout status, persistence and the write-behind flusher,
 * the bounds on what agents can make it hold (node cap, new-node rate,
 * expiry, shared profiles), and a failing disk made visible.
 *
 * Only fleet.h is used, except where a case needs a lever the interface
 * does not offer: fl_expire() with a "now" of the test's choosing, and the
 * fleet's own LMDB environment, read to see what the flusher wrote.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <lmdb.h>

#include "pkgstore.h"
#include "../server/fleet/fleet.h"
/* internals: fl_expire() and the fleet's LMDB environment */
#include "../server/fleet/fleet_impl.h"
/* private: to plant a policy record that the public API cannot write */
#include "index.h"
#include "store.h"

#include "helpers/policy_fixture.h"

struct fixture {
    char dir[64];
    char fleet_dir[256];
    pkgstore_store *store;
    pkgstore_registry *reg;
    fleet *fleet;
    fleet_options opts;
    char contrib97_amd64[PKGSTORE_DIGEST_STR_SIZE];
    char contrib98_amd64[PKGSTORE_DIGEST_STR_SIZE];
    char contrib98_arm64[PKGSTORE_DIGEST_STR_SIZE];
    char sidecar_amd64[PKGSTORE_DIGEST_STR_SIZE];
};

#define CHECK_FLEET(expr, err)                                                                     \
    do {                                                                                           \
        int check_rc_ = (expr);                                                                    \
        if (check_rc_ != 0)                                                                        \
            print_error("%s: %d %s\n", #expr, check_rc_, (err).message);                           \
        assert_int_equal(check_rc_, 0);                                                            \
    } while (0)

static void assert_fleet_fails(int rc, const fleet_error *err, int code, const char *needle)
{
    if (rc != code || err->code != code || !strstr(err->message, needle)) {
        print_error("expected %d with '%s', got %d (%d) '%s'\n", code, needle, rc, err->code,
                    err->message);
        fail();
    }
}

/* fixture_add_artifact() on the fixture's store; the digest as a string. */
static void add_artifact(struct fixture *f, const char *name, const char *version,
                         pkgstore_package_type type, const char *platform, const char *bytes,
                         char *digest_out, const pkgstore_dependency *deps, size_t ndeps)
{
    pkgstore_digest digest;
    CHECK(fixture_add_artifact(&digest, f->store, f->reg, name, version, type, platform, bytes,
                               deps, ndeps));
    if (digest_out)
        pkgstore_digest_format(digest_out, &digest);
}

/* Set an annotation on a stored version (the registry keeps whole manifests). */
static void annotate(struct fixture *f, const char *name, const char *version, const char *key,
                     const char *value)
{
    pkgstore_manifest *manifest = NULL;
    CHECK(pkgstore_registry_get(&manifest, NULL, f->reg, name, version));
    CHECK(pkgstore_manifest_annotation_set(manifest, key, value));
    CHECK(pkgstore_registry_put(NULL, f->reg, manifest, 1));
    pkgstore_manifest_free(manifest);
}

static void put_policy(struct fixture *f, const char *name, const char *package,
                       const char *version, const char *selector, int priority)
{
    CHECK(fixture_put_policy(f->reg, name, package, version, selector, priority));
}

static int open_fleet(struct fixture *f)
{
    fleet_error err;
    int rc = fleet_open(&f->fleet, f->reg, &f->opts, &err);
    if (rc != 0)
        print_message("fleet_open: %d %s\n", rc, err.message);
    return rc;
}

static void close_fleet(struct fixture *f)
{
    fleet_error err;
    CHECK_FLEET(fleet_close(f->fleet, &err), err);
    f->fleet = NULL;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    pkgstore_store_options sopts = PKGSTORE_STORE_OPTIONS_INIT;

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_fleet.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->fleet_dir, sizeof(f->fleet_dir), "%s/fleet", f->dir);
    sopts.durability = PKGSTORE_DURABILITY_NONE;
    CHECK(pkgstore_store_open(&f->store, f->dir, &sopts));
    CHECK(pkgstore_registry_open(&f->reg, f->store));
    add_artifact(f, "otelcol-contrib", "0.97.0", PKGSTORE_TYPE_PRIMARY, "linux/amd64",
                 "contrib 0.97.0 amd64", f->contrib97_amd64, NULL, 0);
    add_artifact(f, "otelcol-contrib", "0.98.0", PKGSTORE_TYPE_PRIMARY, "linux/amd64",
                 "contrib 0.98.0 amd64", f->contrib98_amd64, NULL, 0);
    add_artifact(f, "otelcol-contrib", "0.98.0", PKGSTORE_TYPE_PRIMARY, "linux/arm64",
                 "contrib 0.98.0 arm64", f->contrib98_arm64, NULL, 0);
    add_artifact(f, "log-sidecar", "1.0.0", PKGSTORE_TYPE_ADDON, "linux/amd64",
                 "sidecar 1.0.0 amd64", f->sidecar_amd64, NULL, 0);
    fleet_options_init(&f->opts);
    f->opts.dir = f->fleet_dir;
    f->opts.no_fsync = 1;
    f->opts.no_flusher = 1; /* cases that need it start it */
    CHECK(open_fleet(f));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    fleet_close(f->fleet, NULL);
    snprintf(cmd, sizeof(cmd), "%s/small", f->dir);
    umount2(cmd, MNT_DETACH); /* the full-disk case's tmpfs, if it failed midway */
    pkgstore_registry_free(f->reg);
    pkgstore_store_free(f->store);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* A heartbeat from credential 1; the parsed reply (json_decref it). */
static json_t *heartbeat_as(struct fixture *f, uint64_t credential, const char *body)
{
    char *reply = NULL;
    size_t len = 0;
    fleet_error err;
    CHECK_FLEET(fleet_heartbeat(&reply, &len, f->fleet, body, strlen(body), credential, NULL, &err), err);
    assert_non_null(reply);
    assert_int_equal(len, strlen(reply));
    json_error_t jerr;
    json_t *root = json_loads(reply, 0, &jerr);
    if (!root)
        fail_msg("reply is not JSON: %s: %s", jerr.text, reply);
    free(reply);
    return root;
}

static json_t *heartbeat(struct fixture *f, const char *body)
{
    return heartbeat_as(f, 1, body);
}

static json_t *offers_of(json_t *reply)
{
    json_t *offers = json_object_get(reply, "offers");
    assert_true(json_is_array(offers));
    return offers;
}

static const char *str_at(json_t *obj, const char *key)
{
    const char *value = json_string_value(json_object_get(obj, key));
    if (!value) {
        char *dump = json_dumps(obj, 0);
        print_error("no string \"%s\" in %s\n", key, dump ? dump : "(null)");
        free(dump);
        fail();
    }
    return value;
}

static json_int_t int_at(json_t *obj, const char *key)
{
    json_t *value = json_object_get(obj, key);
    if (!json_is_integer(value)) {
        print_error("no integer \"%s\"\n", key);
        fail();
    }
    return json_integer_value(value);
}

/* The element of array whose key is value, or NULL. */
static json_t *find_by(json_t *array, const char *key, const char *value)
{
    size_t i;
    json_t *item;
    json_array_foreach(array, i, item)
    {
        const char *s = json_string_value(json_object_get(item, key));
        if (s && strcmp(s, value) == 0)
            return item;
    }
    return NULL;
}

static json_t *node_view(struct fixture *f, const char *id)
{
    char *json = NULL;
    size_t len = 0;
    fleet_error err;
    CHECK_FLEET(fleet_node_json(&json, &len, f->fleet, id, &err), err);
    json_t *root = json_loads(json, 0, NULL);
    assert_non_null(root);
    assert_int_equal(len, strlen(json));
    free(json);
    return root;
}

static json_t *page(struct fixture *f, const fleet_query *q, size_t *len_out)
{
    char *json = NULL;
    size_t len = 0;
    fleet_error err;
    CHECK_FLEET(fleet_node_page(&json, &len, f->fleet, q, &err), err);
    json_t *root = json_loads(json, 0, NULL);
    assert_non_null(root);
    assert_int_equal(len, strlen(json));
    if (len_out)
        *len_out = len;
    free(json);
    return root;
}

static fleet_stats stats(struct fixture *f)
{
    fleet_stats s;
    fleet_stats_get(f->fleet, &s);
    return s;
}

static void send_status(struct fixture *f, const char *node, const char *status,
                        const char *message)
{
    size_t size = strlen(message) + 512;
    char *body = malloc(size);
    assert_non_null(body);
    snprintf(body, size,
             "{\"node_id\":\"%s\",\"platform\":\"linux/amd64\",\"packages\":[{\"name\":"
             "\"otelcol-contrib\",\"version\":\"0.97.0\",\"offer\":{\"version\":\"0.98.0\"},"
             "\"status\":\"%s\",\"message\":\"%s\"}]}",
             node, status, message);
    json_decref(heartbeat(f, body));
    free(body);
}

/* ---------------------------------------------------------------- heartbeats */

static void test_fleet__reply_carries_every_offer_field_and_every_target(void **state)
{
    struct fixture *f = *state;
    pkgstore_digest manifest_digest;
    char manifest_str[PKGSTORE_DIGEST_STR_SIZE], url[128], shipper[PKGSTORE_DIGEST_STR_SIZE];
    char body[1024];
    pkgstore_dependency needs;

    annotate(f, "otelcol-contrib", "0.98.0", "org.example.note", "hello");
    memset(&needs, 0, sizeof(needs));
    snprintf(needs.name, sizeof(needs.name), "otelcol-contrib");
    snprintf(needs.constraint, sizeof(needs.constraint), ">=0.97.0");
    add_artifact(f, "log-shipper", "1.0.0", PKGSTORE_TYPE_ADDON, "linux/amd64", "shipper", shipper,
                 &needs, 1);
    add_artifact(f, "win-agent", "1.0.0", PKGSTORE_TYPE_ADDON, "windows/amd64", "win", NULL, NULL,
                 0);
    put_policy(f, "canary", "otelcol-contrib", "0.98.0", "env=dev,canary=true", 10);
    put_policy(f, "ship", "log-shipper", "1.0.0", NULL, 0);
    put_policy(f, "side", "log-sidecar", "1.0.0", NULL, 0);
    put_policy(f, "win", "win-agent", "1.0.0", NULL, 0);

    /* the node runs the sidecar's digest already: a target, no offer */
    snprintf(body, sizeof(body),
             "{\"node_id\":\"edge-42\",\"labels\":{\"env\":\"dev\",\"canary\":\"true\"},"
             "\"platform\":\"linux/amd64\",\"agent_version\":\"0.1.0\",\"packages\":["
             "{\"name\":\"otelcol-contrib\",\"type\":\"primary\",\"version\":\"0.97.0\","
             "\"state\":\"Running\"},"
             "{\"name\":\"log-sidecar\",\"type\":\"addon\",\"version\":\"1.0.0\","
             "\"digest\":\"%s\",\"state\":\"Running\"}]}",
             f->sidecar_amd64);
    json_t *reply = heartbeat(f, body);
    assert_int_equal(int_at(reply, "heartbeat_interval_s"), 30);
    json_t *offers = offers_of(reply);
    assert_int_equal(json_array_size(offers), 2);

    json_t *offer = find_by(offers, "name", "otelcol-contrib");
    assert_non_null(offer);
    assert_string_equal(str_at(offer, "type"), "primary");
    assert_string_equal(str_at(offer, "version"), "0.98.0");
    assert_string_equal(str_at(offer, "policy"), "canary");
    assert_int_equal(int_at(offer, "retry"), 0);
    assert_string_equal(str_at(offer, "platform"), "linux/amd64");
    assert_string_equal(str_at(offer, "digest"), f->contrib98_amd64);
    assert_int_equal(int_at(offer, "size"), strlen("contrib 0.98.0 amd64"));
    assert_string_equal(str_at(offer, "format"), "binary");
    assert_string_equal(str_at(offer, "entrypoint"), "otelcol-contrib");
    snprintf(url, sizeof(url), "/v1/blobs/%s", f->contrib98_amd64);
    assert_string_equal(str_at(offer, "url"), url);
    CHECK(pkgstore_registry_get(NULL, &manifest_digest, f->reg, "otelcol-contrib", "0.98.0"));
    pkgstore_digest_format(manifest_str, &manifest_digest);
    assert_string_equal(str_at(offer, "manifest_digest"), manifest_str);
    assert_string_equal(str_at(json_object_get(offer, "annotations"), "org.example.note"), "hello");
    assert_true(json_is_array(json_object_get(offer, "dependencies")));
    assert_int_equal(json_array_size(json_object_get(offer, "dependencies")), 0);

    offer = find_by(offers, "name", "log-shipper");
    assert_non_null(offer);
    assert_string_equal(str_at(offer, "type"), "addon");
    assert_string_equal(str_at(offer, "policy"), "ship");
    assert_string_equal(str_at(offer, "digest"), shipper);
    assert_true(json_is_object(json_object_get(offer, "annotations")));
    json_t *deps = json_object_get(offer, "dependencies");
    assert_int_equal(json_array_size(deps), 1);
    assert_string_equal(str_at(json_array_get(deps, 0), "name"), "otelcol-contrib");
    assert_string_equal(str_at(json_array_get(deps, 0), "version"), ">=0.97.0");

    json_t *targets = json_object_get(reply, "targets");
    assert_int_equal(json_array_size(targets), 4);
    json_t *target = find_by(targets, "name", "otelcol-contrib");
    assert_string_equal(str_at(target, "state"), "Pending");
    assert_string_equal(str_at(target, "policy"), "canary");
    assert_string_equal(str_at(target, "type"), "primary");
    assert_string_equal(str_at(target, "version"), "0.98.0");
    assert_string_equal(str_at(target, "digest"), f->contrib98_amd64);
    assert_null(json_object_get(target, "reason"));
    target = find_by(targets, "name", "log-sidecar");
    assert_non_null(target);
    assert_string_equal(str_at(target, "state"), "Upgraded");
    assert_string_equal(str_at(target, "type"), "addon");
    assert_string_equal(str_at(target, "digest"), f->sidecar_amd64);
    assert_null(find_by(offers, "name", "log-sidecar"));
    target = find_by(targets, "name", "win-agent");
    assert_string_equal(str_at(target, "state"), "Incompatible");
    assert_string_equal(str_at(target, "reason"), "no artifact of win-agent 1.0.0 for linux/amd64");
    assert_null(json_object_get(target, "digest"));
    json_decref(reply);

    /* a retry raises the offer's generation, with no call into the fleet */
    CHECK(pkgstore_policy_retry(NULL, f->reg, "canary"));
    reply = heartbeat(f, body);
    assert_int_equal(int_at(find_by(offers_of(reply), "policy", "canary"), "retry"), 1);
    assert_int_equal(int_at(find_by(offers_of(reply), "policy", "ship"), "retry"), 0);
    json_decref(reply);

    /* an arm64 node gets the arm64 artifact; the platform is stored normalized */
    reply = heartbeat(f, "{\"node_id\":\"edge-43\",\"labels\":{\"env\":\"dev\",\"canary\":"
                         "\"true\"},\"platform\":\"linux/aarch64\"}");
    offer = find_by(offers_of(reply), "name", "otelcol-contrib");
    assert_string_equal(str_at(offer, "digest"), f->contrib98_arm64);
    assert_string_equal(str_at(offer, "platform"), "linux/arm64");
    target = find_by(json_object_get(reply, "targets"), "name", "log-shipper");
    assert_string_equal(str_at(target, "state"), "Incompatible");
    assert_string_equal(str_at(target, "reason"),
                        "no artifact of log-shipper 1.0.0 for linux/arm64");
    json_decref(reply);
    json_t *view = node_view(f, "edge-43");
    assert_string_equal(str_at(view, "platform"), "linux/arm64");
    json_decref(view);

    /* a node the selector does not match gets no primary offer */
    reply = heartbeat(f, "{\"node_id\":\"edge-44\",\"labels\":{\"env\":\"dev\"},"
                         "\"platform\":\"linux/amd64\",\"packages\":[{\"name\":"
                         "\"otelcol-contrib\",\"version\":\"0.96.0\"}]}");
    assert_null(find_by(offers_of(reply), "name", "otelcol-contrib"));
    assert_null(find_by(json_object_get(reply, "targets"), "name", "otelcol-contrib"));
    target = find_by(json_object_get(reply, "targets"), "name", "log-shipper");
    assert_string_equal(str_at(target, "state"), "Incompatible");
    assert_string_equal(str_at(target, "reason"),
                        "needs otelcol-contrib >=0.97.0; the node runs 0.96.0");
    assert_null(find_by(offers_of(reply), "name", "log-shipper"));
    json_decref(reply);
    reply = heartbeat(f, "{\"node_id\":\"edge-45\",\"platform\":\"linux/amd64\"}");
    target = find_by(json_object_get(reply, "targets"), "name", "log-shipper");
    assert_string_equal(str_at(target, "reason"),
                        "needs otelcol-contrib >=0.97.0; the node does not run it");
    json_decref(reply);
}

static void test_fleet__offers_follow_policy_and_registry_changes(void **state)
{
    struct fixture *f = *state;
    const char *node = "{\"node_id\":\"rv\",\"labels\":{\"env\":\"dev\"},"
                       "\"platform\":\"linux/riscv64\"}";
    char digest[PKGSTORE_DIGEST_STR_SIZE];

    /* no policy yet */
    json_t *reply = heartbeat(f, node);
    assert_int_equal(json_array_size(offers_of(reply)), 0);
    assert_int_equal(json_array_size(json_object_get(reply, "targets")), 0);
    json_decref(reply);

    /* a policy put by the library (another writer): seen at the next heartbeat */
    put_policy(f, "canary", "otelcol-contrib", "0.98.0", "env=dev", 0);
    reply = heartbeat(f, node);
    assert_int_equal(json_array_size(offers_of(reply)), 0);
    json_t *target = json_array_get(json_object_get(reply, "targets"), 0);
    assert_string_equal(str_at(target, "state"), "Incompatible");
    json_decref(reply);
    json_t *view = node_view(f, "rv");
    assert_string_equal(str_at(view, "rollout_state"), "Incompatible");
    json_decref(view);

    /* a riscv64 artifact appears: the node gets it */
    add_artifact(f, "otelcol-contrib", "0.98.0", PKGSTORE_TYPE_PRIMARY, "linux/riscv64",
                 "contrib 0.98.0 riscv64", digest, NULL, 0);
    reply = heartbeat(f, node);
    assert_int_equal(json_array_size(offers_of(reply)), 1);
    assert_string_equal(str_at(json_array_get(offers_of(reply), 0), "digest"), digest);
    json_decref(reply);

    /* a higher priority policy of this server takes over */
    put_policy(f, "pin", "otelcol-contrib", "0.97.0", "env", 5);
    fleet_policies_changed(f->fleet);
    reply = heartbeat(f, "{\"node_id\":\"a\",\"labels\":{\"env\":\"dev\"},"
                         "\"platform\":\"linux/amd64\"}");
    assert_string_equal(str_at(json_array_get(offers_of(reply), 0), "policy"), "pin");
    assert_string_equal(str_at(json_array_get(offers_of(reply), 0), "digest"), f->contrib97_amd64);
    json_decref(reply);

    /* deleting it hands the node back */
    CHECK(pkgstore_policy_delete(f->reg, "pin"));
    reply = heartbeat(f, "{\"node_id\":\"a\",\"labels\":{\"env\":\"dev\"},"
                         "\"platform\":\"linux/amd64\"}");
    assert_string_equal(str_at(json_array_get(offers_of(reply), 0), "policy"), "canary");
    json_decref(reply);
}

static void test_fleet__many_addon_offers(void **state)
{
    struct fixture *f = *state;
    enum { ADDONS = 40 };
    char name[32], bytes[32];

    put_policy(f, "collector", "otelcol-contrib", "0.98.0", NULL, 0);
    for (int i = 0; i < ADDONS; i++) {
        snprintf(name, sizeof(name), "addon-%02d", i);
        snprintf(bytes, sizeof(bytes), "addon %02d", i);
        add_artifact(f, name, "1.0.0", PKGSTORE_TYPE_ADDON, "linux/amd64", bytes, NULL, NULL, 0);
        put_policy(f, name, name, "1.0.0", NULL, 0);
    }
    json_t *reply = heartbeat(f, "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\"}");
    json_t *offers = offers_of(reply);
    assert_int_equal(json_array_size(offers), ADDONS + 1);
    assert_int_equal(json_array_size(json_object_get(reply, "targets")), ADDONS + 1);
    for (int i = 0; i < ADDONS; i++) {
        snprintf(name, sizeof(name), "addon-%02d", i);
        json_t *offer = find_by(offers, "name", name);
        assert_non_null(offer);
        assert_string_equal(str_at(offer, "policy"), name);
    }
    assert_string_equal(str_at(find_by(offers, "name", "otelcol-contrib"), "digest"),
                        f->contrib98_amd64);
    json_decref(reply);
}

/* A heartbeat of node running log-sidecar 1.0.0 on linux/amd64, with
 * extra members in its package entry ("" for none). */
static json_t *sidecar_heartbeat(struct fixture *f, const char *node, const char *extra)
{
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"node_id\":\"%s\",\"platform\":\"linux/amd64\",\"packages\":[{\"name\":"
             "\"log-sidecar\",\"type\":\"addon\",\"version\":\"1.0.0\",\"digest\":\"%s\"%s}]}",
             node, f->sidecar_amd64, extra);
    return heartbeat(f, body);
}

/* An addon's configuration from its policy: every target of the slot names
 * its digest and the retry generation; the body goes only to a node that
 * is offered the version or runs it, until it reports that digest applied
 * (kept in its profile, its view and its record). */
static void test_fleet__addon_config_travels_in_targets_until_applied(void **state)
{
    struct fixture *f = *state;
    const char *config = "{\"args\":[\"--config\",\"{config_file}\"],\"env\":{\"A\":\"1\"},"
                         "\"file\":\"x: 1\\n\"}";
    pkgstore_policy *policy = NULL;
    pkgstore_digest digest;
    char digest_text[PKGSTORE_DIGEST_STR_SIZE], applied[128], refused_at_0[160];
    fleet_error err;

    CHECK(pkgstore_policy_new(&policy, "side", "log-sidecar", "1.0.0"));
    CHECK(pkgstore_policy_set_config(policy, config, strlen(config)));
    CHECK(pkgstore_policy_config_digest(&digest, policy));
    CHECK(pkgstore_policy_put(NULL, f->reg, policy));
    pkgstore_policy_free(policy);
    pkgstore_digest_format(digest_text, &digest);
    snprintf(applied, sizeof(applied), ",\"config_digest\":\"%s\"", digest_text);
    snprintf(refused_at_0, sizeof(refused_at_0), ",\"config_refused\":{\"digest\":\"%s\",\"retry\":0}",
             digest_text);
    json_t *expected = json_loads(config, 0, NULL);

    /* offered: the body comes with the offer's target */
    json_t *reply = heartbeat(f, "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\"}");
    json_t *t = find_by(json_object_get(reply, "targets"), "name", "log-sidecar");
    assert_non_null(find_by(offers_of(reply), "name", "log-sidecar"));
    assert_string_equal(str_at(t, "config_digest"), digest_text);
    assert_int_equal(json_integer_value(json_object_get(t, "retry")), 0);
    assert_true(json_equal(json_object_get(t, "config"), expected));
    json_decref(reply);

    /* runs the version without it: the body, no offer */
    reply = sidecar_heartbeat(f, "n1", "");
    t = find_by(json_object_get(reply, "targets"), "name", "log-sidecar");
    assert_null(find_by(offers_of(reply), "name", "log-sidecar"));
    assert_string_equal(str_at(t, "state"), "Upgraded");
    assert_true(json_equal(json_object_get(t, "config"), expected));
    json_decref(reply);

    /* applied: the digest only */
    reply = sidecar_heartbeat(f, "n1", applied);
    t = find_by(json_object_get(reply, "targets"), "name", "log-sidecar");
    assert_string_equal(str_at(t, "config_digest"), digest_text);
    assert_null(json_object_get(t, "config"));
    json_decref(reply);
    json_t *view = node_view(f, "n1");
    assert_string_equal(str_at(find_by(json_object_get(view, "packages"), "name", "log-sidecar"),
                               "config_digest"),
                        digest_text);
    json_decref(view);

    /* it is part of the record: the same after a reopen */
    close_fleet(f);
    CHECK(open_fleet(f));
    view = node_view(f, "n1");
    assert_string_equal(str_at(find_by(json_object_get(view, "packages"), "name", "log-sidecar"),
                               "config_digest"),
                        digest_text);
    json_decref(view);

    /* another configuration applied (a rollback to an older one): the body again */
    reply = sidecar_heartbeat(f, "n1",
                              ",\"config_digest\":\"sha256:"
                              "0000000000000000000000000000000000000000000000000000000000000000\"");
    t = find_by(json_object_get(reply, "targets"), "name", "log-sidecar");
    assert_true(json_equal(json_object_get(t, "config"), expected));
    json_decref(reply);

    /* refused (rolled back) under the policy's retry generation: no body,
     * until the generation rises; the view shows the refusal */
    reply = sidecar_heartbeat(f, "n1", refused_at_0);
    t = find_by(json_object_get(reply, "targets"), "name", "log-sidecar");
    assert_string_equal(str_at(t, "config_digest"), digest_text);
    assert_null(json_object_get(t, "config"));
    json_decref(reply);
    view = node_view(f, "n1");
    json_t *refused = json_object_get(
        find_by(json_object_get(view, "packages"), "name", "log-sidecar"), "config_refused");
    assert_string_equal(str_at(refused, "digest"), digest_text);
    assert_int_equal(json_integer_value(json_object_get(refused, "retry")), 0);
    json_decref(view);
    /* the policy's status counts it; n2 runs the configuration */
    json_decref(sidecar_heartbeat(f, "n2", applied));
    json_t *status = NULL;
    CHECK_FLEET(fleet_policy_status(&status, f->fleet, "side", NULL, &err), err);
    json_t *tally = json_object_get(status, "config");
    assert_int_equal(json_integer_value(json_object_get(tally, "applied")), 1);
    assert_int_equal(json_integer_value(json_object_get(tally, "refused")), 1);
    json_decref(status);
    CHECK(pkgstore_policy_retry(NULL, f->reg, "side"));
    reply = sidecar_heartbeat(f, "n1", refused_at_0);
    t = find_by(json_object_get(reply, "targets"), "name", "log-sidecar");
    assert_int_equal(json_integer_value(json_object_get(t, "retry")), 1);
    assert_true(json_equal(json_object_get(t, "config"), expected));
    json_decref(reply);

    /* a policy without a configuration: no config members at all */
    put_policy(f, "side", "log-sidecar", "1.0.0", NULL, 0);
    reply = sidecar_heartbeat(f, "n1", refused_at_0);
    t = find_by(json_object_get(reply, "targets"), "name", "log-sidecar");
    assert_null(json_object_get(t, "config_digest"));
    assert_null(json_object_get(t, "config"));
    assert_null(json_object_get(t, "retry"));
    json_decref(reply);

    /* a config_digest that is not one is refused, naming it */
    const char *bad = "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\",\"packages\":[{\"name\":"
                      "\"log-sidecar\",\"config_digest\":\"md5:00\"}]}";
    char *text = NULL;
    size_t len = 0;
    assert_fleet_fails(fleet_heartbeat(&text, &len, f->fleet, bad, strlen(bad), 1, NULL, &err),
                       &err, PKGSTORE_EINVALID, "packages[0].config_digest: not a sha256 digest");
    json_decref(expected);
}

/* A node credential speaks for its node only: another node_id is refused
 * before anything is recorded; pinned labels win, and reported labels are
 * kept only for the keys the credential allows. */
static void test_fleet__identity_binds_node_and_pins_labels(void **state)
{
    struct fixture *f = *state;
    static const pkgstore_label pinned[] = {{"canary", "false"}, {"env", "prod"}};
    static const char *const self_keys[] = {"zone"};
    fleet_identity who = {"edge-1", pinned, 2, self_keys, 1, 0};
    char *out = NULL;
    size_t len = 0;
    fleet_error err;

    json_decref(heartbeat(f, "{\"node_id\":\"edge-2\",\"platform\":\"linux/amd64\","
                             "\"labels\":{\"env\":\"dev\"},\"packages\":[{\"name\":\"otelcol\","
                             "\"version\":\"1.0.0\",\"status\":\"Downloading\",\"offer_version\":"
                             "\"2.0.0\"}]}"));
    json_t *before = node_view(f, "edge-2");
    const char *as_edge_2 = "{\"node_id\":\"edge-2\",\"platform\":\"linux/arm64\","
                            "\"labels\":{\"env\":\"prod\"},\"packages\":[{\"name\":\"otelcol\","
                            "\"version\":\"1.0.0\",\"status\":\"UpgradeFailed\",\"offer_version\":"
                            "\"2.0.0\",\"message\":\"forged\"}]}";
    assert_fleet_fails(fleet_heartbeat(&out, &len, f->fleet, as_edge_2, strlen(as_edge_2), 1,
                                       &who, &err),
                       &err, PKGSTORE_EDENIED, "speaks for node edge-1 only");
    assert_int_equal(err.http_status, 403);
    assert_null(out);
    json_t *after = node_view(f, "edge-2");
    assert_true(json_equal(before, after));
    json_decref(before);
    json_decref(after);
    /* an unknown id is not created either */
    const char *as_new = "{\"node_id\":\"edge-9\",\"platform\":\"linux/amd64\"}";
    assert_fleet_fails(fleet_heartbeat(&out, &len, f->fleet, as_new, strlen(as_new), 1, &who,
                                       &err),
                       &err, PKGSTORE_EDENIED, "edge-1 only");
    assert_int_equal(stats(f).nodes, 1);

    const char *own = "{\"node_id\":\"edge-1\",\"platform\":\"linux/amd64\",\"labels\":"
                      "{\"canary\":\"true\",\"zone\":\"eu\",\"aa\":\"x\"}}";
    CHECK_FLEET(fleet_heartbeat(&out, &len, f->fleet, own, strlen(own), 1, &who, &err), err);
    free(out);
    json_t *view = node_view(f, "edge-1");
    json_t *expected = json_pack("{s:s, s:s, s:s}", "canary", "false", "env", "prod", "zone", "eu");
    assert_true(json_equal(json_object_get(view, "labels"), expected));
    json_decref(expected);
    json_decref(view);

    /* self_any keeps every reported label, pins still win */
    fleet_identity any = {"edge-1", pinned, 1, NULL, 0, 1};
    CHECK_FLEET(fleet_heartbeat(&out, &len, f->fleet, own, strlen(own), 1, &any, &err), err);
    free(out);
    view = node_view(f, "edge-1");
    expected = json_pack("{s:s, s:s, s:s}", "aa", "x", "canary", "false", "zone", "eu");
    assert_true(json_equal(json_object_get(view, "labels"), expected));
    json_decref(expected);
    json_decref(view);
}

static void test_fleet__heartbeats_are_validated(void **state)
{
    struct fixture *f = *state;
    char *out = (char *)0x1;
    size_t len = 99;
    fleet_error err;
#define HB(body) fleet_heartbeat(&out, &len, f->fleet, body, strlen(body), 1, NULL, &err)
    assert_fleet_fails(HB("{\"node_id\":"), &err, PKGSTORE_EINVALID, "body: line 1");
    assert_null(out);
    assert_int_equal(len, 0);
    assert_fleet_fails(HB("[1]"), &err, PKGSTORE_EINVALID, "body: not a JSON object");
    assert_fleet_fails(HB("{\"platform\":\"linux/amd64\"}"), &err, PKGSTORE_EINVALID,
                       "node_id: missing");
    assert_fleet_fails(HB("{\"node_id\":\"a b\",\"platform\":\"linux/amd64\"}"), &err,
                       PKGSTORE_EINVALID, "node_id: position 2");
    assert_fleet_fails(HB("{\"node_id\":\"n\"}"), &err, PKGSTORE_EINVALID, "platform: missing");
    assert_fleet_fails(HB("{\"node_id\":\"n\",\"platform\":7}"), &err, PKGSTORE_EINVALID,
                       "platform: not a string");
    assert_fleet_fails(HB("{\"node_id\":\"n\",\"platform\":\"linux\"}"), &err, PKGSTORE_EINVALID,
                       "platform");
    assert_fleet_fails(HB("{\"node_id\":\"n\",\"platform\":\"linux/amd64\",\"labels\":"
                          "{\"bad key\":\"x\"}}"),
                       &err, PKGSTORE_EINVALID, "labels.bad key");
    assert_fleet_fails(HB("{\"node_id\":\"n\",\"platform\":\"linux/amd64\",\"labels\":"
                          "{\"k\":1}}"),
                       &err, PKGSTORE_EINVALID, "labels.k: not a string");
    assert_fleet_fails(HB("{\"node_id\":\"n\",\"platform\":\"linux/amd64\",\"packages\":"
                          "[{\"name\":\"x\",\"digest\":\"sha256:zz\"}]}"),
                       &err, PKGSTORE_EINVALID, "packages[0].digest: not a sha256 digest");
    assert_fleet_fails(HB("{\"node_id\":\"n\",\"platform\":\"linux/amd64\",\"packages\":"
                          "[{\"name\":\"x\"},{\"version\":\"1\"}]}"),
                       &err, PKGSTORE_EINVALID, "packages[1].name: missing");
    assert_fleet_fails(HB("{\"node_id\":\"n\",\"platform\":\"linux/amd64\",\"packages\":"
                          "[{\"name\":\"x\",\"status\":\"Exploded\"}]}"),
                       &err, PKGSTORE_EINVALID, "packages[0].status: 'Exploded' is not one of");
    assert_fleet_fails(HB("{\"node_id\":\"n\",\"platform\":\"linux/amd64\",\"packages\":"
                          "[{\"name\":\"x\",\"status\":\"Pending\"}]}"),
                       &err, PKGSTORE_EINVALID, "packages[0].status");
    assert_fleet_fails(HB("{\"node_id\":\"n\",\"platform\":\"linux/amd64\",\"packages\":{}}"), &err,
                       PKGSTORE_EINVALID, "packages: not an array");
    assert_fleet_fails(HB("{\"node_id\":\"n\",\"node_id\":\"m\",\"platform\":\"linux/amd64\"}"),
                       &err, PKGSTORE_EINVALID, "duplicate");
    assert_fleet_fails(fleet_heartbeat(&out, &len, f->fleet, NULL, 0, 1, NULL, &err), &err,
                       PKGSTORE_EINVALID, "body");

    char big[8192];
    size_t n =
        (size_t)snprintf(big, sizeof(big), "{\"node_id\":\"n\",\"platform\":\"x/y\",\"labels\":{");
    for (int i = 0; i <= FL_LABELS_MAX; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"k%d\":\"v\"", i ? "," : "", i);
    snprintf(big + n, sizeof(big) - n, "}}");
    assert_fleet_fails(HB(big), &err, PKGSTORE_ELIMIT, "labels: more than");
    assert_int_equal(stats(f).nodes, 0);

    /* the package limit itself is accepted, one more is not */
    for (int count = FL_PACKAGES_MAX; count <= FL_PACKAGES_MAX + 1; count++) {
        n = (size_t)snprintf(big, sizeof(big),
                             "{\"node_id\":\"p%d\",\"platform\":\"linux/amd64\",\"packages\":[",
                             count);
        for (int i = 0; i < count; i++)
            n +=
                (size_t)snprintf(big + n, sizeof(big) - n, "%s{\"name\":\"p%d\"}", i ? "," : "", i);
        assert_true(n + 3 < sizeof(big));
        snprintf(big + n, sizeof(big) - n, "]}");
        if (count == FL_PACKAGES_MAX) {
            CHECK_FLEET(HB(big), err);
            free(out);
        } else {
            assert_fleet_fails(HB(big), &err, PKGSTORE_ELIMIT, "packages: more than");
        }
    }
    assert_int_equal(stats(f).nodes, 1);

    /* unknown fields are ignored (newer agents) */
    CHECK_FLEET(HB("{\"node_id\":\"n\",\"platform\":\"linux/amd64\",\"uptime_s\":5}"), err);
    free(out);
    assert_int_equal(stats(f).nodes, 2);
#undef HB
}

/* ---------------------------------------------------------------- history */

static void test_fleet__history_is_bounded_and_deduplicated(void **state)
{
    struct fixture *f = *state;
    close_fleet(f);
    f->opts.history_max = 4;
    CHECK(open_fleet(f));
    put_policy(f, "canary", "otelcol-contrib", "0.98.0", NULL, 0);

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
    assert_string_equal(str_at(json_array_get(history, 1), "status"), "Validating");
    assert_string_equal(str_at(json_array_get(history, 2), "status"), "UpgradeFailed");
    assert_string_equal(str_at(json_array_get(history, 2), "message"), "validate: exit 1");
    assert_string_equal(str_at(json_array_get(history, 2), "version"), "0.98.0");
    assert_string_equal(str_at(json_array_get(history, 2), "package"), "otelcol-contrib");
    assert_non_null(strstr(str_at(json_array_get(history, 2), "time"), "Z"));
    assert_string_equal(str_at(json_array_get(history, 3), "message"), "retry");
    json_t *last = json_object_get(view, "last_status");
    assert_string_equal(str_at(last, "status"), "Downloading");
    assert_string_equal(str_at(last, "package"), "otelcol-contrib");
    json_t *rollout = json_array_get(json_object_get(view, "rollout"), 0);
    assert_string_equal(str_at(rollout, "state"), "Downloading");
    assert_string_equal(str_at(rollout, "policy"), "canary");
    assert_string_equal(str_at(view, "rollout_state"), "Downloading");
    json_decref(view);

    /* another package's entry between two equal ones does not make a repeat */
    json_decref(heartbeat(f, "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\",\"packages\":"
                             "[{\"name\":\"log-sidecar\",\"type\":\"addon\",\"status\":"
                             "\"Downloading\",\"message\":\"retry\"}]}"));
    send_status(f, "n1", "Downloading", "retry");
    view = node_view(f, "n1");
    history = json_object_get(view, "history");
    assert_string_equal(str_at(json_array_get(history, 3), "package"), "log-sidecar");
    json_decref(view);
    send_status(f, "n1", "Monitoring", "");
    view = node_view(f, "n1");
    history = json_object_get(view, "history");
    assert_int_equal(json_array_size(history), 4);
    assert_string_equal(str_at(json_array_get(history, 2), "package"), "log-sidecar");
    assert_string_equal(str_at(json_array_get(history, 3), "status"), "Monitoring");
    json_decref(view);
}

/* The message of node's last history entry, via the node view. */
static char *last_message(struct fixture *f, const char *node)
{
    json_t *view = node_view(f, node);
    json_t *history = json_object_get(view, "history");
    char *message =
        strdup(str_at(json_array_get(history, json_array_size(history) - 1), "message"));
    json_decref(view);
    return message;
}

static void test_fleet__messages_are_cut_on_a_utf8_boundary(void **state)
{
    struct fixture *f = *state;
    char message[FL_MESSAGE_MAX + 64], *stored;

    /* plain ASCII: exactly FL_MESSAGE_MAX bytes are kept */
    memset(message, 'a', sizeof(message) - 1);
    message[sizeof(message) - 1] = '\0';
    send_status(f, "n1", "Downloading", message);
    stored = last_message(f, "n1");
    assert_int_equal(strlen(stored), FL_MESSAGE_MAX);
    free(stored);

    /* a two-byte character across the limit goes whole */
    memset(message, 'b', FL_MESSAGE_MAX - 1);
    strcpy(message + FL_MESSAGE_MAX - 1, "\xc3\xa9 and more");
    send_status(f, "n1", "Verifying", message);
    stored = last_message(f, "n1");
    assert_int_equal(strlen(stored), FL_MESSAGE_MAX - 1);
    assert_int_equal(strspn(stored, "b"), FL_MESSAGE_MAX - 1);
    free(stored);

    /* a three-byte character whose first byte is the last one kept */
    memset(message, 'c', FL_MESSAGE_MAX - 1);
    strcpy(message + FL_MESSAGE_MAX - 1, "\xe2\x82\xac tail");
    send_status(f, "n1", "Validating", message);
    stored = last_message(f, "n1");
    assert_int_equal(strlen(stored), FL_MESSAGE_MAX - 1);
    free(stored);

    /* a character that ends exactly at the limit is kept */
    memset(message, 'd', FL_MESSAGE_MAX - 3);
    strcpy(message + FL_MESSAGE_MAX - 3, "\xe2\x82\xac tail");
    send_status(f, "n1", "Swapping", message);
    stored = last_message(f, "n1");
    assert_int_equal(strlen(stored), FL_MESSAGE_MAX);
    assert_memory_equal(stored + FL_MESSAGE_MAX - 3, "\xe2\x82\xac", 3);
    free(stored);

    /* what was cut is stored and reloaded as valid UTF-8 */
    close_fleet(f);
    CHECK(open_fleet(f));
    json_t *view = node_view(f, "n1");
    assert_int_equal(json_array_size(json_object_get(view, "history")), 4);
    json_decref(view);
}

/* ---------------------------------------------------------------- status views */

static json_t *policy_status(struct fixture *f, const char *name, const fleet_query *nodes)
{
    json_t *status = NULL;
    fleet_error err;
    CHECK_FLEET(fleet_policy_status(&status, f->fleet, name, nodes, &err), err);
    assert_non_null(status);
    return status;
}

static json_int_t count_of(json_t *status, const char *state)
{
    return int_at(json_object_get(status, "counts"), state);
}

struct metric_sum {
    uint64_t total;
    unsigned int calls;
};

static void sum_counts(void *ctx, const char *policy, const char *state, uint64_t count)
{
    struct metric_sum *sum = ctx;
    assert_string_equal(policy, "canary");
    assert_non_null(state);
    sum->total += count;
    sum->calls++;
}

static void test_fleet__rollout_counts_and_policy_status(void **state)
{
    struct fixture *f = *state;
    char body[512];

    put_policy(f, "canary", "otelcol-contrib", "0.98.0", "ring=canary", 0);
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

    json_t *status = policy_status(f, "canary", NULL);
    assert_int_equal(int_at(status, "nodes_total"), 5);
    assert_int_equal(int_at(status, "nodes_matching"), 5);
    assert_int_equal(count_of(status, "Pending"), 1);
    assert_int_equal(count_of(status, "Downloading"), 1);
    assert_int_equal(count_of(status, "RolledBack"), 1);
    assert_int_equal(count_of(status, "Upgraded"), 1);
    assert_int_equal(count_of(status, "Incompatible"), 1);
    assert_int_equal(count_of(status, "Unknown"), 0);
    assert_null(json_object_get(status, "nodes"));
    json_decref(status);

    /* its nodes, a page at a time, by id */
    static const char *const expected[] = {"dl", "odd", "pending", "rb", "up"};
    static const char *const states[] = {"Downloading", "Incompatible", "Pending", "RolledBack",
                                         "Upgraded"};
    fleet_query q = {0};
    q.limit = 2;
    size_t seen = 0;
    char after[64] = "";
    for (int round = 0; round < 4; round++) {
        q.after = after[0] ? after : NULL;
        status = policy_status(f, "canary", &q);
        assert_int_equal(int_at(status, "nodes_total"), 5); /* the whole policy, every page */
        json_t *nodes = json_object_get(status, "nodes");
        for (size_t i = 0; i < json_array_size(nodes); i++, seen++) {
            assert_true(seen < 5);
            assert_string_equal(str_at(json_array_get(nodes, i), "id"), expected[seen]);
            assert_string_equal(str_at(json_array_get(nodes, i), "state"), states[seen]);
        }
        json_t *next = json_object_get(status, "next");
        if (json_is_null(next)) {
            json_decref(status);
            break;
        }
        assert_string_equal(json_string_value(next), expected[seen - 1]);
        snprintf(after, sizeof(after), "%s", json_string_value(next));
        json_decref(status);
    }
    assert_int_equal(seen, 5);

    /* every policy at once, and the /metrics walk */
    json_t *all = NULL;
    fleet_error err;
    CHECK_FLEET(fleet_policies_status(&all, f->fleet, &err), err);
    assert_int_equal(json_object_size(all), 1);
    assert_int_equal(count_of(json_object_get(all, "canary"), "RolledBack"), 1);
    assert_int_equal(int_at(json_object_get(all, "canary"), "nodes_total"), 5);
    json_decref(all);
    struct metric_sum sum = {0, 0};
    CHECK_FLEET(fleet_count_foreach(f->fleet, sum_counts, &sum, &err), err);
    assert_int_equal(sum.calls, PKGSTORE_ROLLOUT_COUNT);
    assert_int_equal(sum.total, 5);
    assert_int_equal(stats(f).nodes, 6);

    assert_fleet_fails(fleet_policy_status(&status, f->fleet, "nope", NULL, &err), &err,
                       PKGSTORE_ENOTFOUND, "policy nope not found");
    assert_null(status);
}


/* ---------------------------------------------------------------- staged rollouts */

static void put_staged(struct fixture *f, const char *name, const char *version,
                       const char *strategy_json)
{
    pkgstore_policy *policy = NULL;
    pkgstore_rollout_strategy strategy;
    CHECK(pkgstore_policy_new(&policy, name, "otelcol-contrib", version));
    CHECK(pkgstore_policy_set_selector(policy, "ring=prod"));
    CHECK(pkgstore_rollout_strategy_parse(&strategy, strategy_json, strlen(strategy_json)));
    CHECK(pkgstore_policy_set_strategy(policy, &strategy));
    CHECK(pkgstore_policy_put(NULL, f->reg, policy));
    pkgstore_policy_free(policy);
    fleet_policies_changed(f->fleet);
}

/* A prod node's heartbeat, running 0.97.0 (or 0.98.0 with its digest when
 * running98), reporting status for the 0.98.0 offer (NULL: none). 1 when
 * the reply offers 0.98.0. */
static int prod_heartbeat(struct fixture *f, const char *node, int running98, const char *status,
                          const char *message)
{
    char body[1024], report[256] = "";
    if (status)
        snprintf(report, sizeof(report),
                 ",\"offer\":{\"version\":\"0.98.0\"},\"status\":\"%s\",\"message\":\"%s\"",
                 status, message ? message : "");
    snprintf(body, sizeof(body),
             "{\"node_id\":\"%s\",\"labels\":{\"ring\":\"prod\"},\"platform\":\"linux/amd64\","
             "\"packages\":[{\"name\":\"otelcol-contrib\",\"version\":\"%s\",\"digest\":\"%s\"%s}]}",
             node, running98 ? "0.98.0" : "0.97.0",
             running98 ? f->contrib98_amd64 : f->contrib97_amd64, report);
    json_t *reply = heartbeat(f, body);
    int offered = json_array_size(offers_of(reply)) > 0;
    if (offered)
        assert_string_equal(str_at(json_array_get(offers_of(reply), 0), "version"), "0.98.0");
    json_t *target = json_array_get(json_object_get(reply, "targets"), 0);
    if (!offered && !running98 && !status && strcmp(str_at(target, "version"), "0.98.0") == 0)
        assert_string_equal(str_at(target, "state"), "Waiting");
    json_decref(reply);
    return offered;
}

static void tick(struct fixture *f, int64_t now)
{
    fleet_error err;
    CHECK_FLEET(fleet_rollout_tick(f->fleet, now, &err), err);
}

static json_t *rollout_of(struct fixture *f, const char *policy)
{
    json_t *status = policy_status(f, policy, NULL);
    json_t *rollout = json_incref(json_object_get(status, "rollout"));
    json_decref(status);
    assert_non_null(rollout);
    return rollout;
}

static void assert_rollout(struct fixture *f, const char *policy, const char *state,
                           json_int_t batch)
{
    json_t *rollout = rollout_of(f, policy);
    if (strcmp(str_at(rollout, "state"), state) != 0 || int_at(rollout, "batch") != batch) {
        char *dump = json_dumps(rollout, 0);
        print_error("expected %s in batch %lld, got %s\n", state, (long long)batch, dump);
        free(dump);
        fail();
    }
    json_decref(rollout);
}

#define PROD_NODES 6
static const char *const prod[PROD_NODES] = {"p0", "p1", "p2", "p3", "p4", "p5"};

/* The ids of prod in rollout order of policy. */
static void rank_order(const char *order[PROD_NODES], const char *policy)
{
    for (size_t i = 0; i < PROD_NODES; i++)
        order[i] = prod[i];
    for (size_t i = 0; i < PROD_NODES; i++)
        for (size_t j = i + 1; j < PROD_NODES; j++)
            if (pkgstore_rollout_rank(policy, order[j]) < pkgstore_rollout_rank(policy, order[i])) {
                const char *t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
}

static void test_fleet__staged_rollout_advances_by_rank_after_the_soak(void **state)
{
    struct fixture *f = *state;
    const char *order[PROD_NODES];
    rank_order(order, "prod");

    put_staged(f, "prod", "0.98.0", "{\"batches\":[1,\"50%\",\"100%\"],\"soak_s\":10}");
    /* before the driver has seen the policy nobody is offered anything */
    for (size_t i = 0; i < PROD_NODES; i++)
        assert_false(prod_heartbeat(f, prod[i], 0, NULL, NULL));
    tick(f, 1000);
    assert_rollout(f, "prod", "running", 1);
    /* batch 1: exactly the lowest rank */
    for (size_t i = 0; i < PROD_NODES; i++)
        assert_int_equal(prod_heartbeat(f, order[i], 0, NULL, NULL), i == 0);
    /* running the version while the agent monitors it is not done */
    prod_heartbeat(f, order[0], 1, "Monitoring", "");
    tick(f, 1001);
    assert_rollout(f, "prod", "running", 1);
    json_t *node = node_view(f, order[0]);
    assert_string_equal(str_at(node, "rollout_state"), "Monitoring");
    json_decref(node);
    prod_heartbeat(f, order[0], 1, "Upgraded", "");
    tick(f, 1002);
    assert_rollout(f, "prod", "soaking", 1);
    tick(f, 1011); /* 9 s of 10 */
    assert_rollout(f, "prod", "soaking", 1);
    for (size_t i = 1; i < PROD_NODES; i++)
        assert_false(prod_heartbeat(f, order[i], 0, NULL, NULL));
    tick(f, 1012);
    assert_rollout(f, "prod", "running", 2);
    /* batch 2: 50% of 6 is 3 nodes, the first one included */
    for (size_t i = 1; i < PROD_NODES; i++)
        assert_int_equal(prod_heartbeat(f, order[i], 0, NULL, NULL), i < 3);
    tick(f, 1013); /* counts are the last tick's */
    json_t *rollout = rollout_of(f, "prod");
    assert_int_equal(int_at(rollout, "waiting"), 3);
    /* the limits, as hex: one past the rank of the last node admitted */
    char limit[24];
    snprintf(limit, sizeof(limit), "%016llx",
             (unsigned long long)pkgstore_rollout_rank("prod", order[2]) + 1);
    assert_string_equal(str_at(json_array_get(json_object_get(rollout, "batches"), 1), "rank_below"),
                        limit);
    snprintf(limit, sizeof(limit), "%016llx",
             (unsigned long long)pkgstore_rollout_rank("prod", order[0]) + 1);
    assert_string_equal(str_at(json_array_get(json_object_get(rollout, "batches"), 0), "rank_below"),
                        limit);
    json_decref(rollout);

    /* a node that joins now takes its place in the order: admitted when
     * its rank is below the third lowest of the six */
    char id[32];
    int joined_in = 0, joined_out = 0;
    for (int i = 0; i < 40 && !(joined_in && joined_out); i++) {
        snprintf(id, sizeof(id), "late-%d", i);
        int admitted = pkgstore_rollout_rank("prod", id) <= pkgstore_rollout_rank("prod", order[2]);
        assert_int_equal(prod_heartbeat(f, id, 0, NULL, NULL), admitted);
        joined_in |= admitted;
        joined_out |= !admitted;
        /* it leaves again: it would hold the batch open */
        fleet_error err;
        CHECK_FLEET(fleet_node_delete(f->fleet, id, &err), err);
    }
    assert_true(joined_in && joined_out);

    /* a restart keeps the batch: the same three nodes, no more */
    close_fleet(f);
    CHECK(open_fleet(f));
    assert_rollout(f, "prod", "running", 2);
    for (size_t i = 1; i < PROD_NODES; i++)
        assert_int_equal(prod_heartbeat(f, order[i], 0, NULL, NULL), i < 3);
    for (size_t i = 1; i < 3; i++)
        prod_heartbeat(f, order[i], 1, "Upgraded", "");
    tick(f, 2000);
    assert_rollout(f, "prod", "soaking", 2);
    tick(f, 2010);
    assert_rollout(f, "prod", "running", 3);
    for (size_t i = 3; i < PROD_NODES; i++)
        assert_true(prod_heartbeat(f, order[i], 0, NULL, NULL));
    for (size_t i = 3; i < PROD_NODES; i++)
        prod_heartbeat(f, order[i], 1, "Upgraded", "");
    tick(f, 2011);
    assert_rollout(f, "prod", "done", 3);

    /* nothing to pause once done; the audit log has every transition */
    fleet_error err;
    assert_fleet_fails(fleet_rollout_action(f->fleet, "prod", "pause", 0, "token:t", &err), &err,
                       PKGSTORE_ECONFLICT, "the rollout is done");
    json_t *audit = NULL;
    CHECK_FLEET(fleet_audit_json(&audit, f->fleet, "prod", 100, &err), err);
    static const char *const actions[] = {"start", "advance", "soak", "advance", "soak", "advance",
                                          "done"};
    json_t *entries = json_object_get(audit, "entries");
    assert_int_equal(json_array_size(entries), 7);
    for (size_t i = 0; i < 7; i++)
        assert_string_equal(str_at(json_array_get(entries, i), "action"), actions[i]);
    json_decref(audit);
}

static void test_fleet__staged_rollout_pauses_on_failures_and_resumes(void **state)
{
    struct fixture *f = *state;
    const char *order[PROD_NODES];
    fleet_error err;
    rank_order(order, "prod");

    put_staged(f, "prod", "0.98.0", "{\"batches\":[\"50%\",\"100%\"],\"max_failures\":1}");
    for (size_t i = 0; i < PROD_NODES; i++)
        assert_false(prod_heartbeat(f, order[i], 0, NULL, NULL));
    tick(f, 1000);
    for (size_t i = 0; i < PROD_NODES; i++)
        assert_int_equal(prod_heartbeat(f, order[i], 0, NULL, NULL), i < 3);
    /* one failure is tolerated, two are not */
    prod_heartbeat(f, order[0], 0, "RolledBack", "health check failed");
    prod_heartbeat(f, order[1], 0, "Downloading", "");
    tick(f, 1001);
    assert_rollout(f, "prod", "running", 1);
    prod_heartbeat(f, order[1], 0, "UpgradeFailed", "validate: exit 1");
    tick(f, 1002);
    assert_rollout(f, "prod", "paused", 1);
    assert_int_equal(fleet_rollout_auto_pauses(f->fleet), 1);
    json_t *rollout = rollout_of(f, "prod");
    const char *reason = str_at(rollout, "reason");
    assert_non_null(strstr(reason, "2 of 3 nodes failed (1 tolerated)"));
    assert_non_null(strstr(reason, "validate: exit 1"));
    assert_non_null(strstr(reason, "health check failed"));
    assert_true(json_is_true(json_object_get(rollout, "paused_by_threshold")));
    assert_int_equal(json_array_size(json_object_get(rollout, "failures")), 2);
    json_decref(rollout);
    /* paused: the one admitted node that has not started waits too */
    assert_false(prod_heartbeat(f, order[2], 0, NULL, NULL));
    for (size_t i = 3; i < PROD_NODES; i++)
        assert_false(prod_heartbeat(f, order[i], 0, NULL, NULL));

    /* the pause survives a restart */
    close_fleet(f);
    CHECK(open_fleet(f));
    assert_rollout(f, "prod", "paused", 1);
    /* a resume before the first count would accept no failures */
    assert_fleet_fails(fleet_rollout_action(f->fleet, "prod", "resume", 0, "token:ops", &err),
                       &err, PKGSTORE_ECONFLICT, "not been counted since the server started");
    tick(f, 1003);
    assert_rollout(f, "prod", "paused", 1);
    assert_false(prod_heartbeat(f, order[2], 0, NULL, NULL));

    /* resume accepts the failures seen; the next batch needs the third */
    CHECK_FLEET(fleet_rollout_action(f->fleet, "prod", "resume", 0, "token:ops", &err), err);
    assert_fleet_fails(fleet_rollout_action(f->fleet, "prod", "resume", 0, "token:ops", &err),
                       &err, PKGSTORE_ECONFLICT, "not paused");
    assert_true(prod_heartbeat(f, order[2], 0, NULL, NULL));
    tick(f, 1004);
    assert_rollout(f, "prod", "running", 1);
    prod_heartbeat(f, order[2], 1, "Upgraded", "");
    tick(f, 1005);
    assert_rollout(f, "prod", "running", 2);
    /* an operator pause holds the rest until resumed */
    CHECK_FLEET(fleet_rollout_action(f->fleet, "prod", "pause", 0, "token:ops", &err), err);
    for (size_t i = 3; i < PROD_NODES; i++)
        assert_false(prod_heartbeat(f, order[i], 0, NULL, NULL));
    tick(f, 1006);
    assert_rollout(f, "prod", "paused", 2);
    CHECK_FLEET(fleet_rollout_action(f->fleet, "prod", "resume", 0, "token:ops", &err), err);
    for (size_t i = 3; i < PROD_NODES; i++)
        assert_true(prod_heartbeat(f, order[i], 0, NULL, NULL));

    json_t *audit = NULL;
    CHECK_FLEET(fleet_audit_json(&audit, f->fleet, NULL, 100, &err), err);
    json_t *entries = json_object_get(audit, "entries");
    json_t *pause = find_by(entries, "action", "auto-pause");
    assert_non_null(pause);
    assert_string_equal(str_at(pause, "who"), "pkgstored");
    json_t *resume = find_by(entries, "action", "resume");
    assert_non_null(resume);
    assert_string_equal(str_at(resume, "who"), "token:ops");
    assert_non_null(strstr(str_at(resume, "reason"), "2 of 3 nodes failed"));
    json_decref(audit);

    /* batch 2 fails too: its reason names its own nodes, not batch 1's */
    prod_heartbeat(f, order[3], 0, "UpgradeFailed", "batch two exit 2");
    prod_heartbeat(f, order[4], 0, "RolledBack", "batch two crash");
    tick(f, 1007);
    assert_rollout(f, "prod", "paused", 2);
    rollout = rollout_of(f, "prod");
    reason = str_at(rollout, "reason");
    assert_non_null(strstr(reason, "batch 2: 2 of 3 nodes failed (1 tolerated): "));
    assert_non_null(strstr(reason, order[3]));
    assert_non_null(strstr(reason, order[4]));
    assert_null(strstr(reason, order[0]));
    assert_null(strstr(reason, order[1]));
    /* status.failures still lists every started batch's, with its batch */
    assert_int_equal(json_array_size(json_object_get(rollout, "failures")), 4);
    json_decref(rollout);
}

static void test_fleet__staged_rollout_abort_reverts_the_nodes_that_moved(void **state)
{
    struct fixture *f = *state;
    const char *order[PROD_NODES];
    fleet_error err;
    rank_order(order, "prod");

    put_staged(f, "prod", "0.97.0", "{}");
    for (size_t i = 0; i < PROD_NODES; i++)
        assert_false(prod_heartbeat(f, order[i], 0, NULL, NULL));
    tick(f, 1000);
    put_staged(f, "prod", "0.98.0", "{\"batches\":[\"50%\",\"100%\"]}");
    tick(f, 1001);
    json_t *rollout = rollout_of(f, "prod");
    assert_string_equal(str_at(rollout, "previous_version"), "0.97.0");
    json_decref(rollout);
    for (size_t i = 0; i < 3; i++)
        prod_heartbeat(f, order[i], 1, "Upgraded", "");
    /* a node that never ran 0.98.0 and runs something else: not moved */
    json_decref(heartbeat(f, "{\"node_id\":\"other\",\"labels\":{\"ring\":\"prod\"},"
                             "\"platform\":\"linux/amd64\"}"));
    CHECK_FLEET(fleet_rollout_action(f->fleet, "prod", "abort", 1, "token:ops", &err), err);
    pkgstore_policy *policy = NULL;
    CHECK(pkgstore_policy_get(&policy, f->reg, "prod"));
    assert_string_equal(pkgstore_policy_version(policy), "0.97.0");
    pkgstore_policy_free(policy);
    /* the three that moved are offered 0.97.0; the others run it already */
    for (size_t i = 0; i < 3; i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"node_id\":\"%s\",\"labels\":{\"ring\":\"prod\"},\"platform\":\"linux/amd64\","
                 "\"packages\":[{\"name\":\"otelcol-contrib\",\"version\":\"0.98.0\",\"digest\":"
                 "\"%s\"}]}",
                 order[i], f->contrib98_amd64);
        json_t *reply = heartbeat(f, body);
        assert_int_equal(json_array_size(offers_of(reply)), 1);
        assert_string_equal(str_at(json_array_get(offers_of(reply), 0), "version"), "0.97.0");
        json_decref(reply);
    }
    json_t *reply = heartbeat(f, "{\"node_id\":\"other\",\"labels\":{\"ring\":\"prod\"},"
                                 "\"platform\":\"linux/amd64\"}");
    assert_int_equal(json_array_size(offers_of(reply)), 0);
    json_decref(reply);
    tick(f, 1002);
    rollout = rollout_of(f, "prod");
    assert_string_equal(str_at(rollout, "state"), "aborted");
    assert_string_equal(str_at(rollout, "reverted_from"), "0.98.0");
    json_decref(rollout);
    assert_fleet_fails(fleet_rollout_action(f->fleet, "prod", "resume", 0, "token:ops", &err),
                       &err, PKGSTORE_ECONFLICT, "reverted");
    /* no previous version: nothing to revert to */
    put_staged(f, "fresh", "0.98.0", "{}");
    tick(f, 1003);
    assert_fleet_fails(fleet_rollout_action(f->fleet, "fresh", "abort", 1, "token:ops", &err),
                       &err, PKGSTORE_ECONFLICT, "no previous version");
}

/* abort --revert puts back the previous version and nothing else: the
 * addon configuration the policy carries stays with it. */
static void test_fleet__staged_rollout_revert_keeps_the_addon_config(void **state)
{
    struct fixture *f = *state;
    static const char *const versions[] = {"1.0.0", "1.1.0"};
    const char *config = "{\"env\":{\"A\":\"1\"}}";
    pkgstore_policy *policy = NULL;
    pkgstore_digest put_digest, kept_digest;
    fleet_error err;

    add_artifact(f, "log-sidecar", "1.1.0", PKGSTORE_TYPE_ADDON, "linux/amd64",
                 "sidecar 1.1.0 amd64", NULL, NULL, 0);
    for (size_t i = 0; i < 2; i++) {
        CHECK(pkgstore_policy_new(&policy, "side", "log-sidecar", versions[i]));
        CHECK(pkgstore_policy_set_config(policy, config, strlen(config)));
        CHECK(pkgstore_policy_config_digest(&put_digest, policy));
        CHECK(pkgstore_policy_put(NULL, f->reg, policy));
        pkgstore_policy_free(policy);
        fleet_policies_changed(f->fleet);
        tick(f, 1000 + (int64_t)i);
    }
    CHECK_FLEET(fleet_rollout_action(f->fleet, "side", "abort", 1, "token:ops", &err), err);
    CHECK(pkgstore_policy_get(&policy, f->reg, "side"));
    assert_string_equal(pkgstore_policy_version(policy), "1.0.0");
    assert_non_null(pkgstore_policy_config(policy));
    CHECK(pkgstore_policy_config_digest(&kept_digest, policy));
    assert_true(pkgstore_digest_equal(&kept_digest, &put_digest));
    pkgstore_policy_free(policy);
}

static void test_fleet__staged_rollout_of_an_empty_selector_waits_for_nodes(void **state)
{
    struct fixture *f = *state;
    put_staged(f, "prod", "0.98.0", "{\"batches\":[1,\"100%\"]}");
    for (int64_t t = 1000; t < 1005; t++)
        tick(f, t);
    /* no node: batch 1 never settles, so a node that comes later is not
     * handed the whole rollout at once */
    assert_rollout(f, "prod", "running", 1);
    assert_false(prod_heartbeat(f, "a", 0, NULL, NULL));
    assert_false(prod_heartbeat(f, "b", 0, NULL, NULL));
    tick(f, 1006);
    int offered = prod_heartbeat(f, "a", 0, NULL, NULL) + prod_heartbeat(f, "b", 0, NULL, NULL);
    assert_int_equal(offered, 1);
}

static void test_fleet__staged_rollout_max_parallel_bounds_the_starts(void **state)
{
    struct fixture *f = *state;
    int offered[PROD_NODES], total = 0;

    put_staged(f, "prod", "0.98.0", "{\"max_parallel\":2}");
    for (size_t i = 0; i < PROD_NODES; i++) /* before the driver has seen it: nobody */
        assert_false(prod_heartbeat(f, prod[i], 0, NULL, NULL));
    tick(f, 1000);
    for (size_t i = 0; i < PROD_NODES; i++)
        total += offered[i] = prod_heartbeat(f, prod[i], 0, NULL, NULL);
    assert_int_equal(total, 2);
    /* the same two keep their offer; nobody else gets one, before or after a count */
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < PROD_NODES; i++)
            assert_int_equal(prod_heartbeat(f, prod[i], 0, NULL, NULL), offered[i]);
        tick(f, 1001 + round);
    }
    /* one finishes: one more may start */
    size_t done = 0;
    while (!offered[done])
        done++;
    prod_heartbeat(f, prod[done], 1, "Upgraded", "");
    tick(f, 1005);
    int more = 0;
    for (size_t i = 0; i < PROD_NODES; i++) {
        if (!offered[i])
            more += prod_heartbeat(f, prod[i], 0, NULL, NULL);
    }
    assert_int_equal(more, 1);
}

static void test_fleet__staged_rollout_counts_silent_nodes_as_failed(void **state)
{
    struct fixture *f = *state;
    const char *order[PROD_NODES];
    int64_t t0 = (int64_t)time(NULL);
    rank_order(order, "prod");

    put_staged(f, "prod", "0.98.0",
               "{\"batches\":[1,\"100%\"],\"deadline_s\":60,\"max_failures\":0}");
    for (size_t i = 0; i < PROD_NODES; i++)
        prod_heartbeat(f, prod[i], 0, NULL, NULL);
    tick(f, t0);
    assert_true(prod_heartbeat(f, order[0], 0, NULL, NULL));
    prod_heartbeat(f, order[0], 0, "Downloading", "");
    /* the node goes silent while it downloads: within the deadline it is
     * still upgrading, past it, failed */
    tick(f, t0 + 59);
    assert_rollout(f, "prod", "running", 1);
    tick(f, t0 + 62);
    assert_rollout(f, "prod", "paused", 1);
    json_t *rollout = rollout_of(f, "prod");
    assert_non_null(strstr(str_at(rollout, "reason"), "silent past the deadline"));
    json_t *failure = json_array_get(json_object_get(rollout, "failures"), 0);
    assert_string_equal(str_at(failure, "node"), order[0]);
    assert_string_equal(str_at(failure, "status"), "Silent");
    json_decref(rollout);
}

static void test_fleet__staged_rollout_strategy_changed_midway(void **state)
{
    struct fixture *f = *state;
    const char *order[PROD_NODES];
    rank_order(order, "prod");

    put_staged(f, "prod", "0.98.0", "{\"batches\":[1,2,3,\"100%\"]}");
    for (size_t i = 0; i < PROD_NODES; i++)
        prod_heartbeat(f, prod[i], 0, NULL, NULL);
    tick(f, 1000);
    prod_heartbeat(f, order[0], 1, "Upgraded", "");
    tick(f, 1001);
    tick(f, 1002);
    assert_rollout(f, "prod", "running", 2);
    prod_heartbeat(f, order[1], 1, "Upgraded", "");
    tick(f, 1003);
    tick(f, 1004);
    assert_rollout(f, "prod", "running", 3);
    /* the operator cuts the strategy to two batches: batch 3 is past the
     * last, so the rollout goes on to every node once it settles */
    put_staged(f, "prod", "0.98.0", "{\"batches\":[1,\"100%\"]}");
    prod_heartbeat(f, order[2], 1, "Upgraded", "");
    tick(f, 1005);
    tick(f, 1006);
    for (size_t i = 3; i < PROD_NODES; i++)
        assert_true(prod_heartbeat(f, order[i], 0, NULL, NULL));
    for (size_t i = 3; i < PROD_NODES; i++)
        prod_heartbeat(f, order[i], 1, "Upgraded", "");
    tick(f, 1007);
    json_t *rollout = rollout_of(f, "prod");
    assert_string_equal(str_at(rollout, "state"), "done");
    json_decref(rollout);
}

static void test_fleet__losing_policies_govern_nothing(void **state)
{
    struct fixture *f = *state;
    put_policy(f, "low", "otelcol-contrib", "0.97.0", "env=dev", 1);
    put_policy(f, "high", "otelcol-contrib", "0.98.0", "env", 2);
    put_policy(f, "aaa", "otelcol-contrib", "0.97.0", "env=dev", 2);
    json_t *reply = heartbeat(f, "{\"node_id\":\"n1\",\"labels\":{\"env\":\"dev\"},"
                                 "\"platform\":\"linux/amd64\"}");
    assert_int_equal(json_array_size(offers_of(reply)), 1);
    assert_string_equal(str_at(json_array_get(offers_of(reply), 0), "policy"), "aaa");
    json_decref(reply);

    json_t *status = policy_status(f, "high", NULL);
    assert_int_equal(int_at(status, "nodes_total"), 0);
    assert_int_equal(int_at(status, "nodes_matching"), 1);
    json_decref(status);
    status = policy_status(f, "aaa", NULL);
    assert_int_equal(int_at(status, "nodes_total"), 1);
    assert_int_equal(count_of(status, "Pending"), 1);
    json_decref(status);
}

/* ---------------------------------------------------------------- paging */

/* Fleet of n nodes "n00".."n(n-1)": env dev for even, prod for odd, every
 * fifth on riscv64 (incompatible with every artifact here). */
static void grow_fleet(struct fixture *f, int n)
{
    char body[256];
    for (int i = 0; i < n; i++) {
        snprintf(body, sizeof(body),
                 "{\"node_id\":\"n%02d\",\"labels\":{\"env\":\"%s\"},\"platform\":\"%s\"}", i,
                 i % 2 ? "prod" : "dev", i % 5 ? "linux/amd64" : "linux/riscv64");
        json_decref(heartbeat(f, body));
    }
}

/* Walk every page of q (limit and max_bytes as given); fills seen[] with
 * how often each node index came, and returns the number of pages. */
static int walk_pages(struct fixture *f, fleet_query q, int seen[], int n, json_int_t total)
{
    char after[300] = "", previous[300];
    int pages = 0;
    for (;;) {
        size_t len = 0;
        q.after = after[0] ? after : NULL;
        json_t *root = page(f, &q, &len);
        json_t *nodes = json_object_get(root, "nodes");
        pages++;
        assert_true(pages <= n + 1);
        assert_int_equal(int_at(root, "total"), total);
        assert_true(json_array_size(nodes) <= (q.limit ? q.limit : FLEET_PAGE_DEFAULT));
        if (q.max_bytes && json_array_size(nodes) > 1 && len > q.max_bytes)
            fail_msg("a page of %zu nodes is %zu bytes, over its budget of %zu",
                     json_array_size(nodes), len, q.max_bytes);
        previous[0] = '\0';
        for (size_t i = 0; i < json_array_size(nodes); i++) {
            const char *id = str_at(json_array_get(nodes, i), "id");
            int index = -1;
            assert_true(strcmp(id, previous) > 0); /* ascending */
            assert_true(!q.after || strcmp(id, q.after) > 0);
            snprintf(previous, sizeof(previous), "%s", id);
            assert_int_equal(sscanf(id, "n%d", &index), 1);
            assert_in_range(index, 0, n - 1);
            seen[index]++;
        }
        json_t *next = json_object_get(root, "next");
        if (json_is_null(next)) {
            json_decref(root);
            return pages;
        }
        assert_true(json_array_size(nodes) > 0);
        assert_string_equal(json_string_value(next), previous); /* the last one shown */
        snprintf(after, sizeof(after), "%s", json_string_value(next));
        json_decref(root);
    }
}

static void test_fleet__pages_cover_every_node_once(void **state)
{
    struct fixture *f = *state;
    enum { N = 57 };
    int seen[N];
    fleet_query q = {0};

    grow_fleet(f, N);
    memset(seen, 0, sizeof(seen));
    q.limit = 10;
    assert_int_equal(walk_pages(f, q, seen, N, N), 6);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);

    /* one page holds everything within the default limit */
    memset(seen, 0, sizeof(seen));
    q.limit = 0;
    assert_int_equal(walk_pages(f, q, seen, N, N), 1);
    /* a limit over the maximum is the maximum, and exact fits end the walk */
    memset(seen, 0, sizeof(seen));
    q.limit = 57;
    assert_int_equal(walk_pages(f, q, seen, N, N), 1);
    memset(seen, 0, sizeof(seen));
    q.limit = 1;
    assert_int_equal(walk_pages(f, q, seen, N, N), N);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);

    /* a node deleted between pages does not disturb the walk */
    fleet_error err;
    CHECK_FLEET(fleet_node_delete(f->fleet, "n00", &err), err);
    memset(seen, 0, sizeof(seen));
    q.limit = 7;
    q.after = NULL;
    walk_pages(f, q, seen, N, N - 1);
    assert_int_equal(seen[0], 0);
    for (int i = 1; i < N; i++)
        assert_int_equal(seen[i], 1);
}

static void test_fleet__pages_filter_by_selector_policy_and_state(void **state)
{
    struct fixture *f = *state;
    enum { N = 57 };
    int seen[N];
    fleet_query q = {0};
    fleet_error err;
    char *json = (char *)0x1;
    size_t len = 0;

    put_policy(f, "devs", "otelcol-contrib", "0.98.0", "env=dev", 0);
    grow_fleet(f, N);

    /* dev: the even indexes, 29 of them */
    memset(seen, 0, sizeof(seen));
    q.limit = 4;
    q.selector = "env=dev";
    walk_pages(f, q, seen, N, 29);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], i % 2 == 0);

    /* governed by devs: the same */
    memset(seen, 0, sizeof(seen));
    q.selector = NULL;
    q.policy = "devs";
    walk_pages(f, q, seen, N, 29);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], i % 2 == 0);

    /* by state for the policy: every tenth node is riscv64 and dev */
    memset(seen, 0, sizeof(seen));
    q.state = "Incompatible";
    walk_pages(f, q, seen, N, 6);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], i % 10 == 0);
    memset(seen, 0, sizeof(seen));
    q.state = "Pending";
    walk_pages(f, q, seen, N, 23);

    /* by headline state without a policy: ungoverned nodes have none */
    memset(seen, 0, sizeof(seen));
    q.policy = NULL;
    q.state = "Pending";
    walk_pages(f, q, seen, N, 23);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], i % 2 == 0 && i % 10 != 0);

    /* filters combine */
    memset(seen, 0, sizeof(seen));
    q.state = NULL;
    q.selector = "env=prod";
    q.policy = "devs";
    walk_pages(f, q, seen, N, 0);

    /* the page's node view carries the rollout */
    q = (fleet_query){0};
    q.selector = "env=dev";
    q.limit = 1;
    json_t *root = page(f, &q, NULL);
    json_t *node = json_array_get(json_object_get(root, "nodes"), 0);
    assert_string_equal(str_at(node, "id"), "n00");
    assert_string_equal(str_at(node, "rollout_state"), "Incompatible");
    assert_null(json_object_get(node, "history"));
    json_decref(root);

    q = (fleet_query){0};
    q.selector = "env in (";
    assert_fleet_fails(fleet_node_page(&json, &len, f->fleet, &q, &err), &err, PKGSTORE_EINVALID,
                       "selector: position 9");
    assert_null(json);
    q.selector = NULL;
    q.policy = "nope";
    assert_fleet_fails(fleet_node_page(&json, &len, f->fleet, &q, &err), &err, PKGSTORE_ENOTFOUND,
                       "policy nope not found");
    q.policy = NULL;
    q.state = "Exploded";
    assert_fleet_fails(fleet_node_page(&json, &len, f->fleet, &q, &err), &err, PKGSTORE_EINVALID,
                       "state: 'Exploded' is not a rollout state");
}

static void test_fleet__pages_stop_at_the_byte_budget(void **state)
{
    struct fixture *f = *state;
    enum { N = 40 };
    int seen[N];
    char body[1024], id[300];
    fleet_query q = {0};

    /* long ids (the longest a node may have) make the budget bite */
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "n%02d", i);
        memset(id + 3, 'x', FL_NODE_ID_MAX - 3);
        id[FL_NODE_ID_MAX] = '\0';
        snprintf(body, sizeof(body), "{\"node_id\":\"%s\",\"platform\":\"linux/amd64\"}", id);
        json_decref(heartbeat(f, body));
    }
    q.limit = 100;
    for (size_t budget = 700; budget < 4000; budget += 97) {
        memset(seen, 0, sizeof(seen));
        q.max_bytes = budget;
        int pages = walk_pages(f, q, seen, N, N);
        assert_true(pages >= (int)(N * 300 / budget)); /* a page holds few of these nodes */
        for (int i = 0; i < N; i++)
            assert_int_equal(seen[i], 1);
    }

    /* with history, and a budget smaller than one node: one node a page */
    memset(seen, 0, sizeof(seen));
    q.with_history = 1;
    q.max_bytes = 100;
    assert_int_equal(walk_pages(f, q, seen, N, N), N);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
}

/* A page asked for on another thread. */
struct pager {
    fleet *fleet;
    fleet_query q;
    _Atomic pid_t tid;
    char *json;
    size_t len;
    int rc;
    fleet_error err;
};

static void *pager_main(void *arg)
{
    struct pager *p = arg;
    atomic_store(&p->tid, gettid());
    p->rc = fleet_node_page(&p->json, &p->len, p->fleet, &p->q, &p->err);
    return NULL;
}

/* Wait (bounded) until thread tid sleeps in futex() on mutex: blocked on
 * it, as /proc/self/task/TID/syscall shows; or until *done (may be NULL). */
static void wait_blocked_on(pid_t tid, pthread_mutex_t *mutex, atomic_int *done)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
    for (int polls = 0; polls < 20000; polls++) {
        if (done && atomic_load(done))
            return;
        FILE *file = fopen(path, "r");
        long nr = -1;
        unsigned long long addr = 0;
        if (file && fgets(line, sizeof(line), file) && sscanf(line, "%ld %llx", &nr, &addr) == 2 &&
            nr == SYS_futex && addr == (unsigned long long)(uintptr_t)mutex) {
            fclose(file);
            return;
        }
        if (file)
            fclose(file);
        usleep(500);
    }
    fail_msg("thread %d never blocked on the shard lock", (int)tid);
}

static void test_fleet__a_node_deleted_during_a_walk_is_not_paged_twice(void **state)
{
    struct fixture *f = *state;
    char body[128], id[16], first[16];
    struct pager pager;
    pthread_t thread;
    fleet_error err;
    size_t shard = FL_SHARDS;

    /* node ids whose smallest is not in the last shard (the walk must pass it) */
    for (char prefix = 'a'; shard >= FL_SHARDS - 1 && prefix <= 'z'; prefix++) {
        snprintf(first, sizeof(first), "%c00", prefix);
        shard = (size_t)(fl_shard_of(f->fleet, fl_node_hash(first)) - f->fleet->shards);
    }
    assert_true(shard < FL_SHARDS - 1);
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "%c%02d", first[0], i);
        snprintf(body, sizeof(body), "{\"node_id\":\"%s\",\"platform\":\"linux/amd64\"}", id);
        json_decref(heartbeat(f, body));
    }

    /* the walk takes the shards in order: stop it just past the first node's,
     * delete that node, and let the page finish */
    memset(&pager, 0, sizeof(pager));
    pager.fleet = f->fleet;
    pager.q.limit = 2;
    pthread_mutex_t *next_shard = &f->fleet->shards[shard + 1].lock;
    pthread_mutex_lock(next_shard);
    assert_int_equal(pthread_create(&thread, NULL, pager_main, &pager), 0);
    while (atomic_load(&pager.tid) == 0)
        usleep(100);
    wait_blocked_on(atomic_load(&pager.tid), next_shard, NULL);
    CHECK_FLEET(fleet_node_delete(f->fleet, first, &err), err);
    pthread_mutex_unlock(next_shard);
    pthread_join(thread, NULL);
    CHECK_FLEET(pager.rc, pager.err);

    json_t *root = json_loads(pager.json, 0, NULL);
    free(pager.json);
    json_t *nodes = json_object_get(root, "nodes");
    assert_int_equal(json_array_size(nodes), 2);
    /* the next page starts after the last node this one showed */
    assert_string_equal(json_string_value(json_object_get(root, "next")),
                        str_at(json_array_get(nodes, 1), "id"));
    json_decref(root);

    /* and the whole walk shows every other node once */
    int seen[10] = {0};
    fleet_query q = {0};
    q.limit = 2;
    q.after = NULL;
    char after[16] = "";
    for (int pages = 0; pages < 10; pages++) {
        q.after = after[0] ? after : NULL;
        root = page(f, &q, NULL);
        nodes = json_object_get(root, "nodes");
        for (size_t i = 0; i < json_array_size(nodes); i++)
            seen[atoi(str_at(json_array_get(nodes, i), "id") + 1)]++;
        json_t *next = json_object_get(root, "next");
        if (json_is_null(next)) {
            json_decref(root);
            break;
        }
        snprintf(after, sizeof(after), "%s", json_string_value(next));
        json_decref(root);
    }
    assert_int_equal(seen[0], 0);
    for (int i = 1; i < 10; i++)
        assert_int_equal(seen[i], 1);
}

/* ---------------------------------------------------------------- nodes */

static void test_fleet__node_view_and_delete(void **state)
{
    struct fixture *f = *state;
    char *json = (char *)0x1;
    size_t len = 0;
    fleet_error err;

    json_decref(heartbeat(f, "{\"node_id\":\"b\",\"labels\":{\"zone\":\"z1\",\"env\":\"dev\"},"
                             "\"platform\":\"linux/amd64\",\"agent_version\":\"0.1.0\","
                             "\"packages\":[{\"name\":\"otelcol-contrib\",\"version\":\"0.97.0\","
                             "\"state\":\"Running\"}]}"));
    json_decref(heartbeat(f, "{\"node_id\":\"a\",\"platform\":\"linux/arm64\"}"));

    json_t *view = node_view(f, "b");
    assert_string_equal(str_at(view, "id"), "b");
    assert_string_equal(str_at(view, "platform"), "linux/amd64");
    assert_string_equal(str_at(view, "agent_version"), "0.1.0");
    assert_string_equal(str_at(json_object_get(view, "labels"), "zone"), "z1");
    assert_string_equal(str_at(json_object_get(view, "labels"), "env"), "dev");
    json_t *pkg = json_array_get(json_object_get(view, "packages"), 0);
    assert_string_equal(str_at(pkg, "name"), "otelcol-contrib");
    assert_string_equal(str_at(pkg, "version"), "0.97.0");
    assert_string_equal(str_at(pkg, "state"), "Running");
    assert_string_equal(str_at(pkg, "type"), "primary");
    assert_non_null(strstr(str_at(view, "last_seen"), "Z"));
    assert_true(json_is_null(json_object_get(view, "last_status")));
    assert_true(json_is_null(json_object_get(view, "rollout_state"))); /* no policy */
    assert_int_equal(json_array_size(json_object_get(view, "rollout")), 0);
    assert_int_equal(json_array_size(json_object_get(view, "history")), 0);
    json_decref(view);

    assert_fleet_fails(fleet_node_json(&json, &len, f->fleet, "zz", &err), &err, PKGSTORE_ENOTFOUND,
                       "node zz not found");
    assert_null(json);
    CHECK_FLEET(fleet_node_delete(f->fleet, "a", &err), err);
    assert_fleet_fails(fleet_node_delete(f->fleet, "a", &err), &err, PKGSTORE_ENOTFOUND,
                       "not found");
    assert_fleet_fails(fleet_node_json(&json, &len, f->fleet, "a", &err), &err, PKGSTORE_ENOTFOUND,
                       "not found");
    assert_int_equal(stats(f).nodes, 1);

    /* a deleted node that comes back is a new node */
    json_decref(heartbeat(f, "{\"node_id\":\"a\",\"platform\":\"linux/arm64\"}"));
    assert_int_equal(stats(f).nodes, 2);
}

/* ---------------------------------------------------------------- persistence */

/* Direct access to the fleet's LMDB environment (the fleet must be closed,
 * or fl is its handle: one environment per process). */
struct raw_env {
    MDB_env *env;
    MDB_dbi dbi;
    int own;
};

static void raw_open(struct raw_env *raw, struct fixture *f)
{
    MDB_txn *txn = NULL;
    memset(raw, 0, sizeof(*raw));
    if (f->fleet) {
        raw->env = f->fleet->env;
        raw->dbi = f->fleet->dbi;
        return;
    }
    raw->own = 1;
    assert_int_equal(mdb_env_create(&raw->env), 0);
    mdb_env_set_maxdbs(raw->env, 4);
    mdb_env_set_mapsize(raw->env, (size_t)256 << 20);
    assert_int_equal(mdb_env_open(raw->env, f->fleet_dir, MDB_NOTLS, 0600), 0);
    assert_int_equal(mdb_txn_begin(raw->env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "nodes", 0, &raw->dbi), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

static void raw_close(struct raw_env *raw)
{
    if (raw->own)
        mdb_env_close(raw->env);
    raw->env = NULL;
}

/* The stored record of id (json_decref it), or NULL. */
static json_t *raw_get(struct raw_env *raw, const char *id)
{
    MDB_txn *txn = NULL;
    MDB_val key = {strlen(id), (void *)id}, val;
    json_t *record = NULL;
    assert_int_equal(mdb_txn_begin(raw->env, NULL, MDB_RDONLY, &txn), 0);
    if (mdb_get(txn, raw->dbi, &key, &val) == 0) {
        record = json_loadb(val.mv_data, val.mv_size, 0, NULL);
        assert_non_null(record);
    }
    mdb_txn_abort(txn);
    return record;
}

static void raw_put(struct raw_env *raw, const char *id, const char *text)
{
    MDB_txn *txn = NULL;
    MDB_val key = {strlen(id), (void *)id}, val = {strlen(text), (void *)text};
    assert_int_equal(mdb_txn_begin(raw->env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_put(txn, raw->dbi, &key, &val, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

static size_t raw_count(struct raw_env *raw)
{
    MDB_txn *txn = NULL;
    MDB_stat st;
    assert_int_equal(mdb_txn_begin(raw->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_stat(txn, raw->dbi, &st), 0);
    mdb_txn_abort(txn);
    return st.ms_entries;
}

static void test_fleet__survives_close_and_reopen(void **state)
{
    struct fixture *f = *state;
    fleet_error err;

    put_policy(f, "canary", "otelcol-contrib", "0.98.0", "env=dev", 3);
    json_decref(heartbeat(f, "{\"node_id\":\"n1\",\"labels\":{\"env\":\"dev\"},"
                             "\"platform\":\"linux/amd64\",\"agent_version\":\"0.1.0\","
                             "\"packages\":[{\"name\":\"otelcol-contrib\",\"version\":"
                             "\"0.97.0\",\"state\":\"Running\",\"offer\":{\"version\":"
                             "\"0.98.0\"},\"status\":\"RolledBack\",\"message\":\"port\"}]}"));
    json_decref(heartbeat(f, "{\"node_id\":\"n2\",\"platform\":\"linux/amd64\"}"));
    CHECK_FLEET(fleet_node_delete(f->fleet, "n2", &err), err);
    json_decref(heartbeat(f, "{\"node_id\":\"n3\",\"platform\":\"linux/amd64\"}"));
    json_t *before = node_view(f, "n1");
    assert_true(stats(f).unsaved > 0);

    /* close everything, reopen from disk */
    close_fleet(f);
    pkgstore_registry_free(f->reg);
    f->reg = NULL;
    pkgstore_store_free(f->store);
    f->store = NULL;
    CHECK(pkgstore_store_open(&f->store, f->dir, NULL));
    CHECK(pkgstore_registry_open(&f->reg, f->store));
    CHECK(open_fleet(f));

    assert_int_equal(stats(f).nodes, 2);
    assert_int_equal(stats(f).unsaved, 0);
    json_t *view = node_view(f, "n1");
    /* the same view: labels, platform, packages, last_seen, history, rollout */
    if (!json_equal(view, before)) {
        char *a = json_dumps(before, JSON_SORT_KEYS), *b = json_dumps(view, JSON_SORT_KEYS);
        fail_msg("before: %s\nafter:  %s", a, b);
    }
    json_t *history = json_object_get(view, "history");
    assert_int_equal(json_array_size(history), 1);
    assert_string_equal(str_at(json_array_get(history, 0), "status"), "RolledBack");
    assert_string_equal(str_at(json_array_get(history, 0), "message"), "port");
    assert_string_equal(str_at(json_array_get(history, 0), "version"), "0.98.0");
    json_t *rollout = json_array_get(json_object_get(view, "rollout"), 0);
    assert_string_equal(str_at(rollout, "state"), "RolledBack");
    json_decref(view);
    json_decref(before);
    char *json = NULL;
    size_t len;
    assert_int_equal(fleet_node_json(&json, &len, f->fleet, "n2", &err), PKGSTORE_ENOTFOUND);
}

/* History entries are stored compactly in memory (one interned string for
 * package, version and message) and on disk (no empty message): the view
 * and the records read back are what they were, and an old record that
 * spells out an empty message still loads. */
static void test_fleet__history_entries_round_trip(void **state)
{
    struct fixture *f = *state;
    struct raw_env raw;

    put_policy(f, "canary", "otelcol-contrib", "0.98.0", NULL, 0);
    send_status(f, "n1", "Downloading", "");
    send_status(f, "n1", "Downloading", "slow mirror"); /* same status, a message: recorded */
    send_status(f, "n1", "UpgradeFailed", "validate: exit 1");
    send_status(f, "n2", "UpgradeFailed", "validate: exit 1"); /* shares n1's entry string */
    send_status(f, "n2", "Upgraded", "");
    json_t *before1 = node_view(f, "n1"), *before2 = node_view(f, "n2");
    json_t *history = json_object_get(before1, "history");
    assert_int_equal(json_array_size(history), 3);
    assert_string_equal(str_at(json_array_get(history, 0), "message"), "");
    assert_string_equal(str_at(json_array_get(history, 1), "message"), "slow mirror");
    assert_string_equal(str_at(json_array_get(history, 2), "message"), "validate: exit 1");
    assert_string_equal(str_at(json_array_get(history, 2), "version"), "0.98.0");
    assert_string_equal(str_at(json_array_get(history, 2), "package"), "otelcol-contrib");
    close_fleet(f);

    raw_open(&raw, f);
    json_t *record = raw_get(&raw, "n1");
    json_t *stored = json_object_get(record, "history");
    assert_int_equal(json_array_size(stored), 3);
    assert_null(json_object_get(json_array_get(stored, 0), "message"));
    assert_string_equal(str_at(json_array_get(stored, 1), "message"), "slow mirror");
    assert_string_equal(str_at(json_array_get(stored, 0), "status"), "Downloading");
    assert_true(json_is_integer(json_object_get(json_array_get(stored, 0), "time")));
    json_decref(record);
    /* a record as earlier versions wrote it: "message":"" spelled out */
    raw_put(&raw, "old", "{\"id\":\"old\",\"platform\":\"linux/amd64\",\"last_seen\":1764237600,"
                         "\"history\":[{\"time\":1764237600,\"package\":\"otelcol-contrib\","
                         "\"version\":\"0.98.0\",\"status\":\"Upgraded\",\"message\":\"\"}]}");
    raw_close(&raw);
    f->opts.expiry_s = 0; /* the old record's last_seen is long past */
    CHECK(open_fleet(f));

    json_t *after1 = node_view(f, "n1"), *after2 = node_view(f, "n2");
    assert_true(json_equal(after1, before1));
    assert_true(json_equal(after2, before2));
    json_t *old = node_view(f, "old");
    history = json_object_get(old, "history");
    assert_int_equal(json_array_size(history), 1);
    assert_string_equal(str_at(json_array_get(history, 0), "message"), "");
    assert_string_equal(str_at(json_array_get(history, 0), "time"), "2025-11-27T10:00:00Z");
    json_decref(old);
    json_decref(after1);
    json_decref(after2);
    json_decref(before1);
    json_decref(before2);
}

/* Write the policy record "name\0value" (payload) through the index. */
static int plant_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    const char *name = payload, *value = name + strlen(name) + 1;
    MDB_val key = {strlen(name), (void *)name}, val = {strlen(value), (void *)value};
    return mdb_put(txn, ps_index_dbi(index, PS_DB_POLICIES), &key, &val, 0) == 0 ? 0 : PKGSTORE_EIO;
}

static void test_fleet__unreadable_records_and_policies(void **state)
{
    struct fixture *f = *state;
    struct raw_env raw;
    fleet_error err;

    json_decref(heartbeat(f, "{\"node_id\":\"good\",\"platform\":\"linux/amd64\"}"));
    close_fleet(f);

    /* a node record that does not parse is skipped: the node comes back */
    raw_open(&raw, f);
    raw_put(&raw, "broken", "{\"id\":\"broken\",\"platform\":");
    raw_put(&raw, "wrong", "{\"id\":\"wrong\",\"platform\":\"linux\",\"last_seen\":1}");
    raw_close(&raw);
    CHECK(open_fleet(f));
    assert_int_equal(stats(f).nodes, 1);
    json_decref(heartbeat(f, "{\"node_id\":\"broken\",\"platform\":\"linux/amd64\"}"));
    close_fleet(f);
    CHECK(open_fleet(f));
    assert_int_equal(stats(f).nodes, 2);
    close_fleet(f);

    /* a policy record that does not parse refuses the open, naming it */
    CHECK(ps_index_write(ps_store_index(f->store), plant_txn, "mangled\0not json"));
    assert_fleet_fails(fleet_open(&f->fleet, f->reg, &f->opts, &err), &err, PKGSTORE_ECORRUPT,
                       "policy record 'mangled'");
    assert_null(f->fleet);
    /* the repair: delete it */
    CHECK(pkgstore_policy_delete(f->reg, "mangled"));
    CHECK(open_fleet(f));
}

static void test_fleet__flusher_writes_without_a_flush(void **state)
{
    struct fixture *f = *state;
    struct raw_env raw;
    char body[128], id[16];

    close_fleet(f);
    f->opts.no_flusher = 0;
    f->opts.flush_interval_ms = 2;
    CHECK(open_fleet(f));
    raw_open(&raw, f);
    for (int round = 0; round < 100; round++) {
        snprintf(id, sizeof(id), "n%d", round);
        snprintf(body, sizeof(body), "{\"node_id\":\"%s\",\"platform\":\"linux/amd64\"}", id);
        json_decref(heartbeat(f, body));
        /* wait for the event: the flusher reports nothing unsaved (bounded) */
        int polls = 0;
        while (stats(f).unsaved != 0 && polls++ < 300000)
            usleep(100);
        fleet_stats s = stats(f);
        assert_int_equal(s.unsaved, 0);
        assert_int_equal(s.degraded, 0);
        assert_int_equal(s.flushes_failed, 0);
        /* and then the record is in the environment, written by the flusher alone */
        json_t *record = raw_get(&raw, id);
        if (!record)
            fail_msg("round %d: unsaved is 0, yet %s is not written", round, id);
        assert_string_equal(str_at(record, "id"), id);
        assert_string_equal(str_at(record, "platform"), "linux/amd64");
        assert_true(json_is_integer(json_object_get(record, "last_seen")));
        json_decref(record);
    }
    raw_close(&raw);
}

static void test_fleet__one_server_per_fleet_directory(void **state)
{
    struct fixture *f = *state;
    fleet *second = (fleet *)0x1;
    fleet_error err;

    assert_fleet_fails(fleet_open(&second, f->reg, &f->opts, &err), &err, PKGSTORE_ELOCKED,
                       "in use by another pkgstored");
    assert_null(second);
    /* the first one is undisturbed */
    json_decref(heartbeat(f, "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\"}"));
    CHECK_FLEET(fleet_flush(f->fleet, &err), err);
    close_fleet(f);
    /* once it is closed, the directory is free */
    CHECK(open_fleet(f));
    assert_int_equal(stats(f).nodes, 1);
}

/* ---------------------------------------------------------------- bounds */

static void test_fleet__node_cap_refuses_new_ids_only(void **state)
{
    struct fixture *f = *state;
    char *out = NULL;
    size_t len;
    fleet_error err;
    const char *fourth = "{\"node_id\":\"n4\",\"platform\":\"linux/amd64\"}";

    close_fleet(f);
    f->opts.max_nodes = 3;
    CHECK(open_fleet(f));
    json_decref(heartbeat(f, "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\"}"));
    json_decref(heartbeat(f, "{\"node_id\":\"n2\",\"platform\":\"linux/amd64\"}"));
    json_decref(heartbeat(f, "{\"node_id\":\"n3\",\"platform\":\"linux/amd64\"}"));
    assert_fleet_fails(fleet_heartbeat(&out, &len, f->fleet, fourth, strlen(fourth), 1, NULL, &err), &err,
                       PKGSTORE_ELIMIT, "the fleet is full (3 nodes");
    assert_int_equal(err.http_status, 503);
    assert_true(err.retry_after_s > 0);
    assert_null(out);
    assert_int_equal(stats(f).nodes, 3);
    assert_int_equal(stats(f).nodes_refused, 1);

    /* known nodes still report, with news */
    json_decref(heartbeat(f, "{\"node_id\":\"n2\",\"platform\":\"linux/arm64\"}"));
    json_t *view = node_view(f, "n2");
    assert_string_equal(str_at(view, "platform"), "linux/arm64");
    json_decref(view);

    /* room again once a node goes */
    CHECK_FLEET(fleet_node_delete(f->fleet, "n1", &err), err);
    json_decref(heartbeat(f, fourth));
    assert_int_equal(stats(f).nodes, 3);
}

/* A heartbeat of a new node on another thread. */
struct newcomer {
    fleet *fleet;
    char body[128];
    _Atomic pid_t tid;
    atomic_int done;
    int rc;
    fleet_error err;
};

static void *newcomer_main(void *arg)
{
    struct newcomer *n = arg;
    char *reply = NULL;
    size_t len;
    atomic_store(&n->tid, gettid());
    n->rc = fleet_heartbeat(&reply, &len, n->fleet, n->body, strlen(n->body), 1, NULL, &n->err);
    free(reply);
    atomic_store(&n->done, 1);
    return NULL;
}

static void test_fleet__node_cap_holds_under_concurrent_newcomers(void **state)
{
    struct fixture *f = *state;
    struct newcomer racers[2];
    pthread_t threads[2];
    char ids[2][16];

    close_fleet(f);
    f->opts.max_nodes = 1;
    CHECK(open_fleet(f));
    /* two new ids in two shards, so that neither waits for the other's */
    snprintf(ids[0], sizeof(ids[0]), "r0");
    for (int i = 1; i < 100; i++) {
        snprintf(ids[1], sizeof(ids[1]), "r%d", i);
        if (fl_shard_of(f->fleet, fl_node_hash(ids[0])) !=
            fl_shard_of(f->fleet, fl_node_hash(ids[1])))
            break;
    }
    /* both pass the cap while the first waits for its new-node token */
    pthread_mutex_lock(&f->fleet->rate_lock);
    for (int i = 0; i < 2; i++) {
        memset(&racers[i], 0, sizeof(racers[i]));
        racers[i].fleet = f->fleet;
        snprintf(racers[i].body, sizeof(racers[i].body),
                 "{\"node_id\":\"%s\",\"platform\":\"linux/amd64\"}", ids[i]);
        assert_int_equal(pthread_create(&threads[i], NULL, newcomer_main, &racers[i]), 0);
        while (atomic_load(&racers[i].tid) == 0)
            usleep(100);
        wait_blocked_on(atomic_load(&racers[i].tid), &f->fleet->rate_lock, &racers[i].done);
    }
    pthread_mutex_unlock(&f->fleet->rate_lock);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);

    assert_int_equal(stats(f).nodes, 1);
    assert_int_equal(racers[0].rc, 0);
    assert_int_equal(racers[1].rc, PKGSTORE_ELIMIT);
    assert_int_equal(racers[1].err.http_status, 503);
    assert_int_equal(stats(f).nodes_refused, 1);
}

static void test_fleet__new_node_rate_is_per_credential(void **state)
{
    struct fixture *f = *state;
    char *out = NULL;
    size_t len;
    fleet_error err;
    const char *third = "{\"node_id\":\"n3\",\"platform\":\"linux/amd64\"}";

    close_fleet(f);
    f->opts.new_nodes_per_s = 0.001; /* no refill within the test */
    f->opts.new_nodes_burst = 2;
    CHECK(open_fleet(f));
    json_decref(heartbeat_as(f, 7, "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\"}"));
    json_decref(heartbeat_as(f, 7, "{\"node_id\":\"n2\",\"platform\":\"linux/amd64\"}"));
    assert_fleet_fails(fleet_heartbeat(&out, &len, f->fleet, third, strlen(third), 7, NULL, &err), &err,
                       PKGSTORE_ELIMIT, "too many new nodes from this credential");
    assert_int_equal(err.http_status, 429);
    assert_true(err.retry_after_s >= 1);
    assert_null(out);
    assert_int_equal(stats(f).nodes_throttled, 1);

    /* the credential's known nodes are not throttled */
    for (int i = 0; i < 5; i++)
        json_decref(heartbeat_as(f, 7, "{\"node_id\":\"n1\",\"platform\":\"linux/amd64\"}"));
    /* another credential has its own budget */
    json_decref(heartbeat_as(f, 8, third));
    json_decref(heartbeat_as(f, 8, "{\"node_id\":\"m1\",\"platform\":\"linux/amd64\"}"));
    assert_int_equal(stats(f).nodes, 4);
    assert_int_equal(stats(f).nodes_throttled, 1);
    const char *m2 = "{\"node_id\":\"m2\",\"platform\":\"linux/amd64\"}";
    assert_int_equal(fleet_heartbeat(&out, &len, f->fleet, m2, strlen(m2), 8, NULL, &err),
                     PKGSTORE_ELIMIT);
    assert_int_equal(err.http_status, 429);
}

static void test_fleet__silent_nodes_expire(void **state)
{
    struct fixture *f = *state;
    struct raw_env raw;
    fleet_error err;
    int64_t now = (int64_t)time(NULL);

    close_fleet(f);
    f->opts.expiry_s = 3600;
    CHECK(open_fleet(f));
    json_decref(heartbeat(f, "{\"node_id\":\"old\",\"platform\":\"linux/amd64\"}"));
    json_decref(heartbeat(f, "{\"node_id\":\"fresh\",\"platform\":\"linux/amd64\"}"));
    close_fleet(f);

    /* "old" was last seen two hours ago, as its stored record says */
    raw_open(&raw, f);
    json_t *record = raw_get(&raw, "old");
    assert_non_null(record);
    json_object_set_new(record, "last_seen", json_integer(now - 7200));
    char *text = json_dumps(record, JSON_COMPACT);
    raw_put(&raw, "old", text);
    free(text);
    json_decref(record);
    raw_close(&raw);

    CHECK(open_fleet(f));
    assert_int_equal(stats(f).nodes, 1);
    assert_int_equal(stats(f).nodes_expired, 1);
    char *json = NULL;
    size_t len;
    assert_int_equal(fleet_node_json(&json, &len, f->fleet, "old", &err), PKGSTORE_ENOTFOUND);
    close_fleet(f);
    /* forgotten on disk too, not only skipped at every start */
    raw_open(&raw, f);
    assert_null(raw_get(&raw, "old"));
    assert_int_equal(raw_count(&raw), 1);
    raw_close(&raw);
    CHECK(open_fleet(f));

    /* a node expires after expiry_s of silence, not before */
    json_decref(heartbeat(f, "{\"node_id\":\"other\",\"platform\":\"linux/amd64\"}"));
    fl_expire(f->fleet, (int64_t)time(NULL) + 3600 - 60);
    assert_int_equal(stats(f).nodes, 2);
    fl_expire(f->fleet, (int64_t)time(NULL) + 3600 + 60);
    fleet_stats s = stats(f);
    assert_int_equal(s.nodes, 0);
    assert_int_equal(s.nodes_expired, 2);
    assert_int_equal(s.profiles, 0);
    assert_int_equal(s.unsaved, 0);
    close_fleet(f);
    raw_open(&raw, f);
    assert_int_equal(raw_count(&raw), 0);
    raw_close(&raw);

    /* expiry 0: never */
    f->opts.expiry_s = 0;
    CHECK(open_fleet(f));
    json_decref(heartbeat(f, "{\"node_id\":\"kept\",\"platform\":\"linux/amd64\"}"));
    fl_expire(f->fleet, (int64_t)time(NULL) + 100 * 365 * 86400LL);
    assert_int_equal(stats(f).nodes, 1);
}

static void test_fleet__shared_label_sets_share_one_profile(void **state)
{
    struct fixture *f = *state;
    enum { NODES = 20000 };
    char body[512];

    close_fleet(f);
    f->opts.new_nodes_per_s = 0; /* unlimited: this test floods node ids */
    f->opts.max_nodes = NODES;
    CHECK(open_fleet(f));
    put_policy(f, "canary", "otelcol-contrib", "0.98.0", "ring=r1", 0);
    for (int i = 0; i < NODES; i++) {
        /* labels in two orders: the same set */
        snprintf(body, sizeof(body),
                 i % 2 ? "{\"node_id\":\"edge-%05d\",\"labels\":{\"env\":\"prod\",\"ring\":"
                         "\"r1\",\"zone\":\"eu-west-1\"},\"platform\":\"linux/x86_64\","
                         "\"agent_version\":\"0.1.0\",\"packages\":[{\"name\":"
                         "\"otelcol-contrib\",\"version\":\"0.97.0\",\"state\":\"Running\"}]}"
                       : "{\"node_id\":\"edge-%05d\",\"labels\":{\"zone\":\"eu-west-1\","
                         "\"ring\":\"r1\",\"env\":\"prod\"},\"platform\":\"linux/amd64\","
                         "\"agent_version\":\"0.1.0\",\"packages\":[{\"name\":"
                         "\"otelcol-contrib\",\"version\":\"0.97.0\",\"state\":\"Running\"}]}",
                 i);
        char *reply = NULL;
        size_t len;
        fleet_error err;
        CHECK_FLEET(fleet_heartbeat(&reply, &len, f->fleet, body, strlen(body), 1, NULL, &err), err);
        free(reply);
    }
    fleet_stats s = stats(f);
    assert_int_equal(s.nodes, NODES);
    assert_int_equal(s.profiles, 1);

    /* a node whose report changes moves to a profile of its own, and back */
    json_decref(heartbeat(f, "{\"node_id\":\"edge-00007\",\"labels\":{\"env\":\"prod\","
                             "\"ring\":\"r1\",\"zone\":\"eu-west-1\"},\"platform\":"
                             "\"linux/amd64\",\"agent_version\":\"0.2.0\"}"));
    assert_int_equal(stats(f).profiles, 2);
    json_decref(heartbeat(f, "{\"node_id\":\"edge-00007\",\"labels\":{\"env\":\"prod\","
                             "\"ring\":\"r1\",\"zone\":\"eu-west-1\"},\"platform\":"
                             "\"linux/amd64\",\"agent_version\":\"0.1.0\",\"packages\":[{"
                             "\"name\":\"otelcol-contrib\",\"version\":\"0.97.0\",\"state\":"
                             "\"Running\"}]}"));
    assert_int_equal(stats(f).profiles, 1);

    json_t *status = policy_status(f, "canary", NULL);
    assert_int_equal(int_at(status, "nodes_total"), NODES);
    json_decref(status);

    /* every reference is returned when the nodes go */
    fl_expire(f->fleet, (int64_t)time(NULL) + (int64_t)f->opts.expiry_s + 1);
    s = stats(f);
    assert_int_equal(s.nodes, 0);
    assert_int_equal(s.profiles, 0);
}

/* ---------------------------------------------------------------- a failing disk */

/* Fill the file system of dir: write path until ENOSPC. */
static void fill(const char *path)
{
    static char chunk[65536];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    for (size_t size = sizeof(chunk); size > 0; size /= 2) {
        while (write(fd, chunk, size) == (ssize_t)size)
            ;
    }
    assert_int_equal(errno, ENOSPC);
    close(fd);
}

/* Run fn with stderr (the server's log) captured into log (NUL-terminated). */
static int with_log(char *log, size_t size, int (*fn)(struct fixture *, fleet_error *),
                    struct fixture *f, fleet_error *err)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/log", f->dir);
    int saved = dup(STDERR_FILENO), fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    int rc = fn(f, err);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, log, size - 1, 0);
    log[n > 0 ? n : 0] = '\0';
    close(fd);
    return rc;
}

static int flush_fn(struct fixture *f, fleet_error *err)
{
    return fleet_flush(f->fleet, err);
}

static void test_fleet__a_full_disk_is_reported_and_recovered(void **state)
{
    struct fixture *f = *state;
    char mnt[96], filler[160], body[512], log[8192];
    fleet_error err;

    if (geteuid() != 0) {
        print_message("SKIP test_fleet__a_full_disk_is_reported_and_recovered: needs root to "
                      "mount a small tmpfs\n");
        skip();
    }
    close_fleet(f);
    snprintf(mnt, sizeof(mnt), "%s/small", f->dir);
    assert_int_equal(mkdir(mnt, 0755), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0)
        fail_msg("running as root, yet mount tmpfs on %s: %s", mnt, strerror(errno));
    snprintf(f->fleet_dir, sizeof(f->fleet_dir), "%s/fleet", mnt);
    snprintf(filler, sizeof(filler), "%s/filler", mnt);
    CHECK(open_fleet(f));

    for (int i = 0; i < 5; i++) {
        snprintf(body, sizeof(body), "{\"node_id\":\"early-%d\",\"platform\":\"linux/amd64\"}", i);
        json_decref(heartbeat(f, body));
    }
    CHECK_FLEET(fleet_flush(f->fleet, &err), err);

    fill(filler);
    /* heartbeats still answer while their nodes cannot be written */
    for (int i = 0; i < 200; i++) {
        snprintf(body, sizeof(body),
                 "{\"node_id\":\"late-%03d\",\"labels\":{\"host\":\"host-%03d\",\"rack\":"
                 "\"rack-with-a-long-name-%03d\"},\"platform\":\"linux/amd64\"}",
                 i, i, i);
        json_decref(heartbeat(f, body));
    }
    int rc = with_log(log, sizeof(log), flush_fn, f, &err);
    if (rc != PKGSTORE_ENOSPC)
        fail_msg("flush on a full disk: %d %s", rc, err.message);
    assert_non_null(strstr(err.message, "No space left on device"));
    fleet_stats s = stats(f);
    assert_int_equal(s.degraded, 1);
    assert_non_null(strstr(s.last_error, "No space left on device"));
    assert_int_equal(s.unsaved, 200);
    assert_true(s.flushes_failed >= 1);
    assert_non_null(strstr(log, "level=error msg=\"fleet: cannot write node records; retrying\""));
    assert_non_null(strstr(log, "unsaved=200"));

    /* still failing: still degraded, logged once */
    assert_int_equal(with_log(log, sizeof(log), flush_fn, f, &err), PKGSTORE_ENOSPC);
    assert_int_equal(stats(f).degraded, 1);
    assert_null(strstr(log, "cannot write node records"));

    /* space again: the next flush writes everything and says so */
    assert_int_equal(unlink(filler), 0);
    rc = with_log(log, sizeof(log), flush_fn, f, &err);
    if (rc != 0)
        fail_msg("flush after freeing space: %d %s", rc, err.message);
    s = stats(f);
    assert_int_equal(s.degraded, 0);
    assert_int_equal(s.unsaved, 0);
    assert_non_null(strstr(log, "msg=\"fleet: node records written again\""));
    close_fleet(f);
    CHECK(open_fleet(f));
    assert_int_equal(stats(f).nodes, 205);
    close_fleet(f);
    umount2(mnt, MNT_DETACH);
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
    static const char *const statuses[] = {"Downloading", "Verifying", "RolledBack"};
    for (int i = 0; i < 300; i++) {
        char *out = NULL;
        size_t len;
        fleet_error err;
        int n = snprintf(body, sizeof(body),
                         "{\"node_id\":\"t%d-n%d\",\"labels\":{\"env\":\"%s\"},"
                         "\"platform\":\"linux/amd64\",\"packages\":[{\"name\":"
                         "\"otelcol-contrib\",\"offer\":{\"version\":\"0.98.0\"},\"status\":"
                         "\"%s\"}]}",
                         w->index, i % 100, i % 2 ? "dev" : "prod", statuses[i % 3]);
        if (fleet_heartbeat(&out, &len, w->f->fleet, body, (size_t)n, (uint64_t)w->index, NULL, &err) !=
                0 ||
            !out)
            w->failures++;
        free(out);
    }
    return NULL;
}

static void test_fleet__concurrent_heartbeats(void **state)
{
    struct fixture *f = *state;
    pthread_t threads[4];
    struct worker workers[4];
    fleet_error err;

    close_fleet(f);
    f->opts.no_flusher = 0;
    f->opts.flush_interval_ms = 5;
    CHECK(open_fleet(f));
    put_policy(f, "dev", "otelcol-contrib", "0.98.0", "env=dev", 0);
    /* a staged rollout over the prod nodes, driven and acted on meanwhile */
    {
        pkgstore_policy *staged = NULL;
        pkgstore_rollout_strategy strategy;
        const char *json = "{\"batches\":[\"10%\",\"50%\",\"100%\"],\"max_parallel\":10,"
                           "\"max_failures\":\"50%\"}";
        CHECK(pkgstore_policy_new(&staged, "staged", "otelcol-contrib", "0.98.0"));
        CHECK(pkgstore_policy_set_selector(staged, "env=prod"));
        CHECK(pkgstore_policy_set_priority(staged, 5));
        CHECK(pkgstore_rollout_strategy_parse(&strategy, json, strlen(json)));
        CHECK(pkgstore_policy_set_strategy(staged, &strategy));
        CHECK(pkgstore_policy_put(NULL, f->reg, staged));
        pkgstore_policy_free(staged);
        fleet_policies_changed(f->fleet);
    }
    for (int i = 0; i < 4; i++) {
        workers[i] = (struct worker){f, i, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, heartbeat_worker, &workers[i]), 0);
    }
    /* policy changes, views, flushes, expiry and node deletes meanwhile */
    for (int i = 0; i < 20; i++) {
        char *json = NULL;
        size_t len;
        fleet_query q = {0};
        json_t *status = NULL;
        json_decref(heartbeat(f, "{\"node_id\":\"victim\",\"platform\":\"linux/amd64\"}"));
        CHECK_FLEET(fleet_node_delete(f->fleet, "victim", &err), err);
        q.with_history = 1;
        q.limit = 50;
        CHECK_FLEET(fleet_node_page(&json, &len, f->fleet, &q, &err), err);
        free(json);
        CHECK_FLEET(fleet_policy_status(&status, f->fleet, "dev", &q, &err), err);
        json_decref(status);
        put_policy(f, "prod", "otelcol-contrib", i % 2 ? "0.97.0" : "0.98.0", "env=prod", 0);
        fleet_policies_changed(f->fleet);
        CHECK_FLEET(fleet_policies_status(&status, f->fleet, &err), err);
        json_decref(status);
        CHECK_FLEET(fleet_flush(f->fleet, &err), err);
        fl_expire(f->fleet, (int64_t)time(NULL));
        /* the rollout: a round, an operator's action, the audit log */
        CHECK_FLEET(fleet_rollout_tick(f->fleet, (int64_t)time(NULL), &err), err);
        int rc = fleet_rollout_action(f->fleet, "staged", i % 2 ? "resume" : "pause", 0,
                                      "token:test", &err);
        assert_true(rc == 0 || rc == PKGSTORE_ECONFLICT);
        CHECK_FLEET(fleet_audit_json(&status, f->fleet, "staged", 10, &err), err);
        json_decref(status);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(workers[i].failures, 0);
    }
    assert_int_equal(stats(f).nodes, 400);
    json_t *status = policy_status(f, "dev", NULL);
    assert_int_equal(int_at(status, "nodes_total"), 200);
    /* every dev node last reported Downloading, Verifying or RolledBack */
    assert_int_equal(count_of(status, "Downloading") + count_of(status, "Verifying") +
                         count_of(status, "RolledBack"),
                     200);
    json_decref(status);
    close_fleet(f);
    CHECK(open_fleet(f));
    assert_int_equal(stats(f).nodes, 400);
}

/* ---------------------------------------------------------------- misuse */

static void test_fleet__bad_options_are_refused(void **state)
{
    struct fixture *f = *state;
    fleet *other = (fleet *)0x1;
    fleet_options opts;
    fleet_error err;

    fleet_options_init(&opts);
    assert_fleet_fails(fleet_open(&other, f->reg, &opts, &err), &err, PKGSTORE_EINVALID,
                       "no directory");
    assert_null(other);
    opts.dir = f->fleet_dir;
    opts.history_max = 0;
    assert_fleet_fails(fleet_open(&other, f->reg, &opts, &err), &err, PKGSTORE_EINVALID,
                       "history_max 0 is outside 1..1024");
    opts.history_max = FL_HISTORY_LIMIT + 1;
    assert_fleet_fails(fleet_open(&other, f->reg, &opts, &err), &err, PKGSTORE_EINVALID,
                       "history_max");
    assert_int_equal(fleet_close(NULL, &err), 0);
    char out[32];
    fleet_time_format(out, 0);
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    fleet_time_format(out, 1700000000);
    assert_string_equal(out, "2023-11-14T22:13:20Z");
}

/* ---------------------------------------------------------------- trust */

static fleet_trust_stats trust_stats(struct fixture *f)
{
    fleet_trust_stats s;
    fleet_trust_stats_get(f->fleet, &s);
    return s;
}

/* The ids of a page filtered by trust, joined by ','. */
static void trust_page(struct fixture *f, const char *trust, char *out, size_t size)
{
    fleet_query q = {0};
    q.trust = trust;
    json_t *root = page(f, &q, NULL), *item;
    size_t i, n = 0;
    out[0] = '\0';
    json_array_foreach(json_object_get(root, "nodes"), i, item)
        n += (size_t)snprintf(out + n, size - n, "%s%s", i ? "," : "", str_at(item, "id"));
    json_decref(root);
}

static void test_fleet__trust_is_validated_counted_filtered_and_kept(void **state)
{
    struct fixture *f = *state;
    char *out = NULL, ids[256];
    size_t len = 0;
    fleet_error err;
#define HB(body) fleet_heartbeat(&out, &len, f->fleet, body, strlen(body), 1, NULL, &err)
#define NODE "{\"node_id\":\"bad\",\"platform\":\"linux/amd64\",\"trust\":"
    assert_fleet_fails(HB(NODE "7}"), &err, PKGSTORE_EINVALID, "trust: not an object");
    assert_fleet_fails(HB(NODE "{\"revocations\":0}}"), &err, PKGSTORE_EINVALID,
                       "trust.root_version: missing");
    assert_fleet_fails(HB(NODE "{\"root_version\":0,\"revocations\":0}}"), &err,
                       PKGSTORE_EINVALID, "trust.root_version: not a positive integer");
    assert_fleet_fails(HB(NODE "{\"root_version\":\"1\",\"revocations\":0}}"), &err,
                       PKGSTORE_EINVALID, "trust.root_version: not a positive integer");
    assert_fleet_fails(HB(NODE "{\"root_version\":1}}"), &err, PKGSTORE_EINVALID,
                       "trust.revocations: missing");
    assert_fleet_fails(HB(NODE "{\"root_version\":1,\"revocations\":-1}}"), &err,
                       PKGSTORE_EINVALID, "trust.revocations: not a generation");
    assert_fleet_fails(HB(NODE "{\"root_version\":1,\"revocations\":0,\"newest_signed\":"
                               "\"yesterday\"}}"),
                       &err, PKGSTORE_EINVALID, "trust.newest_signed: not an RFC 3339");
    assert_fleet_fails(HB(NODE "{\"root_version\":1,\"revocations\":0,\"newest_signed\":5}}"),
                       &err, PKGSTORE_EINVALID, "trust.newest_signed: not an RFC 3339");
    assert_int_equal(stats(f).nodes, 0);
#undef NODE
#undef HB

    /* a and b say the same: one profile; c read an older generation */
    const char *current = "\"trust\":{\"root_version\":1,\"revocations\":2,"
                          "\"newest_signed\":\"2026-01-01T00:00:00Z\"}";
    char body[512];
    snprintf(body, sizeof body, "{\"node_id\":\"a\",\"platform\":\"linux/amd64\",%s}", current);
    json_decref(heartbeat(f, body));
    snprintf(body, sizeof body, "{\"node_id\":\"b\",\"platform\":\"linux/amd64\",%s}", current);
    json_decref(heartbeat(f, body));
    json_decref(heartbeat(f, "{\"node_id\":\"c\",\"platform\":\"linux/amd64\",\"trust\":"
                             "{\"root_version\":1,\"revocations\":1,\"newest_signed\":"
                             "\"2025-01-01T00:00:00Z\"}}"));
    json_decref(heartbeat(f, "{\"node_id\":\"d\",\"platform\":\"linux/amd64\"}"));
    assert_int_equal(stats(f).profiles, 3);

    fleet_trust_server(f->fleet, 1, 2);
    fleet_trust_stats ts = trust_stats(f);
    assert_int_equal(ts.nodes_reporting, 3);
    assert_int_equal(ts.behind_root, 0);
    assert_int_equal(ts.behind_revocations, 1);
    assert_int_equal(ts.oldest_newest_signed, 1735689600);
    json_t *view = node_view(f, "c"), *trust = json_object_get(view, "trust");
    assert_int_equal(int_at(trust, "root_version"), 1);
    assert_int_equal(int_at(trust, "revocations"), 1);
    assert_string_equal(str_at(trust, "newest_signed"), "2025-01-01T00:00:00Z");
    assert_true(int_at(trust, "newest_signed_age_s") > 0);
    assert_true(json_is_true(json_object_get(trust, "behind")));
    json_decref(view);
    view = node_view(f, "d");
    assert_null(json_object_get(view, "trust"));
    json_decref(view);
    trust_page(f, "behind", ids, sizeof ids);
    assert_string_equal(ids, "c");
    trust_page(f, "current", ids, sizeof ids);
    assert_string_equal(ids, "a,b");
    trust_page(f, "none", ids, sizeof ids);
    assert_string_equal(ids, "d");
    fleet_query q = {0};
    q.trust = "stale";
    assert_fleet_fails(fleet_node_page(&out, &len, f->fleet, &q, &err), &err, PKGSTORE_EINVALID,
                       "trust: 'stale' is not behind, current or none");

    /* a new root on the server: every reporting node is behind on it */
    fleet_trust_server(f->fleet, 2, 2);
    ts = trust_stats(f);
    assert_int_equal(ts.behind_root, 3);
    trust_page(f, "behind", ids, sizeof ids);
    assert_string_equal(ids, "a,b,c");

    /* c catches up, a is forgotten, d starts to report: the counts follow */
    fleet_trust_server(f->fleet, 1, 2);
    snprintf(body, sizeof body, "{\"node_id\":\"c\",\"platform\":\"linux/amd64\",%s}", current);
    json_decref(heartbeat(f, body));
    CHECK_FLEET(fleet_node_delete(f->fleet, "a", &err), err);
    json_decref(heartbeat(f, "{\"node_id\":\"d\",\"platform\":\"linux/amd64\",\"trust\":"
                             "{\"root_version\":1,\"revocations\":0}}"));
    ts = trust_stats(f);
    assert_int_equal(ts.nodes_reporting, 3);
    assert_int_equal(ts.behind_revocations, 1);
    assert_int_equal(ts.oldest_newest_signed, 1767225600);
    view = node_view(f, "d");
    trust = json_object_get(view, "trust");
    assert_true(json_is_null(json_object_get(trust, "newest_signed")));
    assert_true(json_is_null(json_object_get(trust, "newest_signed_age_s")));
    json_decref(view);

    /* kept on disk: the same views and counts after a reopen */
    json_t *before = node_view(f, "b");
    close_fleet(f);
    CHECK(open_fleet(f));
    fleet_trust_server(f->fleet, 1, 2);
    view = node_view(f, "b");
    json_object_del(json_object_get(before, "trust"), "newest_signed_age_s");
    json_object_del(json_object_get(view, "trust"), "newest_signed_age_s");
    json_object_del(before, "last_seen");
    json_object_del(view, "last_seen");
    if (!json_equal(view, before)) {
        char *x = json_dumps(before, JSON_SORT_KEYS), *y = json_dumps(view, JSON_SORT_KEYS);
        fail_msg("before: %s\nafter:  %s", x, y);
    }
    json_decref(view);
    json_decref(before);
    ts = trust_stats(f);
    assert_int_equal(ts.nodes_reporting, 3);
    assert_int_equal(ts.behind_revocations, 1);
    assert_int_equal(ts.oldest_newest_signed, 1767225600);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_fleet__reply_carries_every_offer_field_and_every_target),
        T(test_fleet__offers_follow_policy_and_registry_changes),
        T(test_fleet__many_addon_offers),
        T(test_fleet__addon_config_travels_in_targets_until_applied),
        T(test_fleet__heartbeats_are_validated),
        T(test_fleet__identity_binds_node_and_pins_labels),
        T(test_fleet__history_is_bounded_and_deduplicated),
        T(test_fleet__messages_are_cut_on_a_utf8_boundary),
        T(test_fleet__rollout_counts_and_policy_status),
        T(test_fleet__losing_policies_govern_nothing),
        T(test_fleet__staged_rollout_advances_by_rank_after_the_soak),
        T(test_fleet__staged_rollout_pauses_on_failures_and_resumes),
        T(test_fleet__staged_rollout_abort_reverts_the_nodes_that_moved),
        T(test_fleet__staged_rollout_revert_keeps_the_addon_config),
        T(test_fleet__staged_rollout_of_an_empty_selector_waits_for_nodes),
        T(test_fleet__staged_rollout_max_parallel_bounds_the_starts),
        T(test_fleet__staged_rollout_counts_silent_nodes_as_failed),
        T(test_fleet__staged_rollout_strategy_changed_midway),
        T(test_fleet__pages_cover_every_node_once),
        T(test_fleet__pages_filter_by_selector_policy_and_state),
        T(test_fleet__pages_stop_at_the_byte_budget),
        T(test_fleet__a_node_deleted_during_a_walk_is_not_paged_twice),
        T(test_fleet__node_view_and_delete),
        T(test_fleet__survives_close_and_reopen),
        T(test_fleet__history_entries_round_trip),
        T(test_fleet__unreadable_records_and_policies),
        T(test_fleet__flusher_writes_without_a_flush),
        T(test_fleet__one_server_per_fleet_directory),
        T(test_fleet__node_cap_refuses_new_ids_only),
        T(test_fleet__node_cap_holds_under_concurrent_newcomers),
        T(test_fleet__new_node_rate_is_per_credential),
        T(test_fleet__silent_nodes_expire),
        T(test_fleet__shared_label_sets_share_one_profile),
        T(test_fleet__a_full_disk_is_reported_and_recovered),
        T(test_fleet__concurrent_heartbeats),
        T(test_fleet__bad_options_are_refused),
        T(test_fleet__trust_is_validated_counted_filtered_and_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#undef T
}

/*
 * fuzz_heartbeat: heartbeat bodies against a small fleet setup.
 * One store is created per process (LLVMFuzzerInitialize, or lazily for
 * the replay driver) with two package versions and two policies; every
 * input is posted as a heartbeat body. Checks:
 *   - the result is 0, EINVALID or ELIMIT, never anything else;
 *   - on failure nothing is returned and the detail is set;
 *   - on success the response is JSON with heartbeat_interval_s and an
 *     offers array whose entries carry a digest, a url and a policy;
 *   - the node view of a recorded node is JSON too.
 */
#include <pkgstore.h>
#include <pkgstore/registry.h>

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char dir[64];
static pkgstore_store *store;
static pkgstore_registry *reg;
static pkgstore_policy_db *db;

static void cleanup(void)
{
    char cmd[128];
    pkgstore_policy_free(db);
    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_heartbeat: could not remove %s\n", dir);
}

static void add(const char *version, const char *platform, const char *bytes)
{
    pkgstore_artifact artifact;
    pkgstore_registry_add_options opts = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT;
    memset(&artifact, 0, sizeof(artifact));
    CHECK(pkgstore_store_add_buffer(&artifact.digest, store, bytes, strlen(bytes)) == 0);
    snprintf(artifact.platform, sizeof(artifact.platform), "%s", platform);
    opts.force = 1;
    CHECK(pkgstore_registry_add(NULL, NULL, reg, "otelcol", version, &artifact, &opts) == 0);
}

static void policy(const char *name, const char *body)
{
    char *json = NULL;
    CHECK(pkgstore_policy_put_json(&json, db, name, body, strlen(body)) == 0);
    pkgstore_free(json);
}

static void setup(void)
{
    pkgstore_store_options sopts = PKGSTORE_STORE_OPTIONS_INIT;
    pkgstore_policy_options popts = PKGSTORE_POLICY_OPTIONS_INIT;
    if (db)
        return;
    snprintf(dir, sizeof(dir), "/tmp/fuzz_heartbeat.XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    sopts.durability = PKGSTORE_DURABILITY_NONE;
    CHECK(pkgstore_store_open(&store, dir, &sopts) == 0);
    CHECK(pkgstore_registry_open(&reg, store) == 0);
    add("1.0.0", "linux/amd64", "one amd64");
    add("1.0.0", "linux/arm64", "one arm64");
    add("2.0.0", "linux/amd64", "two amd64");
    popts.no_flusher = 1;
    popts.history_max = 4;
    CHECK(pkgstore_policy_open(&db, store, &popts) == 0);
    policy("base", "{\"package\":\"otelcol\",\"version\":\"1.0.0\"}");
    policy("canary", "{\"selector\":\"ring in (canary,beta),!frozen\",\"package\":\"otelcol\","
                     "\"version\":\"2.0.0\",\"priority\":5}");
    atexit(cleanup);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setup();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *response = (char *)0x1;
    int rc;

    if (size > 65536)
        return 0;
    setup();
    rc = pkgstore_policy_heartbeat(&response, db, (const char *)data, size);
    if (rc != 0) {
        CHECK(rc == PKGSTORE_EINVALID || rc == PKGSTORE_ELIMIT);
        CHECK(response == NULL);
        CHECK(pkgstore_error_detail()[0] != '\0');
        return 0;
    }
    json_t *root = json_loads(response, 0, NULL);
    CHECK(root != NULL);
    CHECK(json_is_integer(json_object_get(root, "heartbeat_interval_s")));
    json_t *offers = json_object_get(root, "offers");
    CHECK(json_is_array(offers));
    for (size_t i = 0; i < json_array_size(offers); i++) {
        json_t *offer = json_array_get(offers, i);
        CHECK(pkgstore_digest_validate(json_string_value(json_object_get(offer, "digest"))) == 0);
        CHECK(json_is_string(json_object_get(offer, "url")));
        CHECK(json_is_string(json_object_get(offer, "policy")));
    }
    json_decref(root);
    pkgstore_free(response);

    /* the node is now in the fleet view */
    json_t *body = json_loadb((const char *)data, size, 0, NULL);
    const char *id = json_string_value(json_object_get(body, "node_id"));
    char *view = NULL;
    CHECK(id != NULL);
    CHECK(pkgstore_policy_node_get_json(&view, db, id) == 0);
    json_t *parsed = json_loads(view, 0, NULL);
    CHECK(parsed != NULL);
    json_decref(parsed);
    pkgstore_free(view);
    json_decref(body);
    return 0;
}

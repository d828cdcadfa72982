/*
 * fuzz_heartbeat: heartbeat bodies against pkgstored's fleet (server/fleet/).
 * One store and one fleet directory are created per process
 * (LLVMFuzzerInitialize, or lazily for the replay driver) with three
 * versions of a primary package, an addon that depends on it and carries an
 * annotation, and three policies. Every input is posted as a heartbeat body
 * twice (the second time the node is known and its statuses repeat), then
 * the node is deleted so that inputs stay independent. Checks:
 *   - the result is 0, EINVALID or ELIMIT, never anything else;
 *   - on failure nothing is returned and the error has a code and a message;
 *   - on success the reply is JSON with heartbeat_interval_s, offers (each
 *     with a digest, its url, a policy, a retry generation, annotations and
 *     dependencies) and targets (each naming a policy and a rollout state);
 *   - the node view of the recorded node is JSON and names it.
 */
#include <pkgstore.h>

#include "../server/fleet/fleet.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static char dir[64], fleet_dir[96];
static pkgstore_store *store;
static pkgstore_registry *reg;
static fleet *fl;

static void cleanup(void)
{
    char cmd[128];
    fleet_close(fl, NULL);
    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_heartbeat: could not remove %s\n", dir);
}

static void add(const char *name, const char *version, pkgstore_package_type type,
                const char *platform, const char *bytes, const char *needs)
{
    pkgstore_artifact artifact;
    pkgstore_dependency dep;
    pkgstore_registry_add_options opts = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT;
    memset(&artifact, 0, sizeof(artifact));
    CHECK(pkgstore_store_add_buffer(&artifact.digest, store, bytes, strlen(bytes)) == 0);
    snprintf(artifact.platform, sizeof(artifact.platform), "%s", platform);
    opts.type = type;
    opts.force = 1;
    if (needs) {
        memset(&dep, 0, sizeof(dep));
        snprintf(dep.name, sizeof(dep.name), "otelcol");
        snprintf(dep.constraint, sizeof(dep.constraint), "%s", needs);
        opts.dependencies = &dep;
        opts.dependency_count = 1;
    }
    CHECK(pkgstore_registry_add(NULL, NULL, reg, name, version, &artifact, &opts) == 0);
}

static void policy(const char *name, const char *package, const char *version, const char *selector,
                   int priority)
{
    pkgstore_policy *p = NULL;
    CHECK(pkgstore_policy_new(&p, name, package, version) == 0);
    CHECK(pkgstore_policy_set_selector(p, selector) == 0);
    CHECK(pkgstore_policy_set_priority(p, priority) == 0);
    CHECK(pkgstore_policy_put(NULL, reg, p) == 0);
    pkgstore_policy_free(p);
}

static void setup(void)
{
    pkgstore_store_options sopts = PKGSTORE_STORE_OPTIONS_INIT;
    pkgstore_manifest *manifest = NULL;
    fleet_options fopts;
    fleet_error err;
    if (fl)
        return;
    snprintf(dir, sizeof(dir), "/tmp/fuzz_heartbeat.XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(fleet_dir, sizeof(fleet_dir), "%s/fleet", dir);
    sopts.durability = PKGSTORE_DURABILITY_NONE;
    CHECK(pkgstore_store_open(&store, dir, &sopts) == 0);
    CHECK(pkgstore_registry_open(&reg, store) == 0);
    add("otelcol", "1.0.0", PKGSTORE_TYPE_PRIMARY, "linux/amd64", "one amd64", NULL);
    add("otelcol", "1.0.0", PKGSTORE_TYPE_PRIMARY, "linux/arm64", "one arm64", NULL);
    add("otelcol", "2.0.0", PKGSTORE_TYPE_PRIMARY, "linux/amd64", "two amd64", NULL);
    add("shipper", "1.0.0", PKGSTORE_TYPE_ADDON, "linux/amd64", "shipper", ">=1.0.0");
    CHECK(pkgstore_registry_get(&manifest, NULL, reg, "shipper", "1.0.0") == 0);
    CHECK(pkgstore_manifest_annotation_set(manifest, "org.example.note", "hello") == 0);
    CHECK(pkgstore_registry_put(NULL, reg, manifest, 1) == 0);
    pkgstore_manifest_free(manifest);
    policy("base", "otelcol", "1.0.0", "", 0);
    policy("canary", "otelcol", "2.0.0", "ring in (canary,beta),!frozen", 5);
    policy("ship", "shipper", "1.0.0", "", 0);
    CHECK(pkgstore_policy_retry(NULL, reg, "canary") == 0);
    fleet_options_init(&fopts);
    fopts.dir = fleet_dir;
    fopts.history_max = 4;
    fopts.no_flusher = 1;
    fopts.no_fsync = 1;
    fopts.new_nodes_per_s = 0; /* unlimited: inputs are independent */
    CHECK(fleet_open(&fl, reg, &fopts, &err) == 0);
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

static void check_reply(const char *reply, size_t len)
{
    json_t *root = json_loads(reply, 0, NULL);
    CHECK(root != NULL);
    CHECK(len == strlen(reply));
    CHECK(json_is_integer(json_object_get(root, "heartbeat_interval_s")));
    json_t *offers = json_object_get(root, "offers"), *item;
    size_t i;
    CHECK(json_is_array(offers));
    json_array_foreach(offers, i, item)
    {
        const char *digest = json_string_value(json_object_get(item, "digest"));
        const char *url = json_string_value(json_object_get(item, "url"));
        json_t *deps = json_object_get(item, "dependencies"), *dep;
        size_t j;
        CHECK(pkgstore_digest_validate(digest) == 0);
        CHECK(url && strncmp(url, "/v1/blobs/", 10) == 0 && strcmp(url + 10, digest) == 0);
        CHECK(json_is_string(json_object_get(item, "policy")));
        CHECK(json_is_integer(json_object_get(item, "retry")));
        CHECK(json_is_object(json_object_get(item, "annotations")));
        CHECK(json_is_array(deps));
        json_array_foreach(deps, j, dep)
        {
            CHECK(json_is_string(json_object_get(dep, "name")));
            CHECK(json_is_string(json_object_get(dep, "version")));
        }
    }
    json_t *targets = json_object_get(root, "targets");
    CHECK(json_is_array(targets));
    CHECK(json_array_size(targets) >= json_array_size(offers));
    json_array_foreach(targets, i, item)
    {
        const char *state = json_string_value(json_object_get(item, "state"));
        int known = 0;
        CHECK(json_is_string(json_object_get(item, "name")));
        CHECK(json_is_string(json_object_get(item, "policy")));
        CHECK(json_is_string(json_object_get(item, "version")));
        CHECK(state != NULL);
        for (int s = 0; s < PKGSTORE_ROLLOUT_COUNT; s++)
            known |= strcmp(state, pkgstore_rollout_state_name((pkgstore_rollout_state)s)) == 0;
        CHECK(known);
    }
    json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *reply = (char *)0x1;
    size_t len = 99;
    fleet_error err;
    int rc;

    if (size > 65536)
        return 0;
    setup();
    memset(&err, 0, sizeof(err));
    rc = fleet_heartbeat(&reply, &len, fl, (const char *)data, size, 1, NULL, &err);
    if (rc != 0) {
        CHECK(rc == PKGSTORE_EINVALID || rc == PKGSTORE_ELIMIT);
        CHECK(err.code == rc);
        CHECK(reply == NULL && len == 0);
        CHECK(err.message[0] != '\0');
        return 0;
    }
    check_reply(reply, len);
    free(reply);

    /* again: the node is known, its statuses repeat */
    CHECK(fleet_heartbeat(&reply, &len, fl, (const char *)data, size, 1, NULL, &err) == 0);
    check_reply(reply, len);
    free(reply);

    /* the node is now in the fleet view */
    json_t *body = json_loadb((const char *)data, size, 0, NULL);
    const char *id = json_string_value(json_object_get(body, "node_id"));
    char *view = NULL;
    CHECK(id != NULL);
    CHECK(fleet_node_json(&view, &len, fl, id, &err) == 0);
    json_t *parsed = json_loads(view, 0, NULL);
    CHECK(parsed != NULL);
    CHECK(len == strlen(view));
    CHECK(strcmp(json_string_value(json_object_get(parsed, "id")), id) == 0);
    CHECK(json_is_array(json_object_get(parsed, "history")));
    CHECK(json_array_size(json_object_get(parsed, "history")) <= 4);
    json_decref(parsed);
    free(view);
    CHECK(fleet_node_delete(fl, id, &err) == 0);
    json_decref(body);
    return 0;
}

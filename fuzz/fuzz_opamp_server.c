/*
 * fuzz_opamp_server: AgentToServer bodies through pkgstored's OpAMP
 * exchange (server/opamp/opamp.c), which unpacks, translates into a
 * heartbeat, posts it to a real fleet (server/fleet/) and packs the reply;
 * no libmicrohttpd. One store and fleet per process, as fuzz_heartbeat:
 * a primary in two versions and an addon, with policies for env=dev.
 * Every input is exchanged twice (the second time the agent is known).
 * Checks:
 *   - the result is 0, or EINVALID (400: not an AgentToServer) or ELIMIT
 *     (the fleet full), never anything else; on failure nothing is
 *     returned and the error has a message;
 *   - on success the reply unpacks as a ServerToAgent whose instance_uid is
 *     the request's, with the server's capabilities; every offered package
 *     has a 32-byte content hash and hash, an absolute download URL, and
 *     the reply's all_packages_hash is 32 bytes;
 *   - a message with a 16-byte uid and no error answer is asked for its
 *     full state the first time, when the agent was new.
 */
#include <pkgstore.h>

#include "../server/opamp/opamp.h"
#include "opamp.pb-c.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static char dir[64], fleet_dir[96];
static pkgstore_store *store;
static pkgstore_registry *reg;
static fleet *fl;
static opamp_agents *agents;

static void cleanup(void)
{
    char cmd[128];
    opamp_agents_free(agents);
    fleet_close(fl, NULL);
    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_opamp_server: could not remove %s\n", dir);
}

static void add(const char *name, const char *version, pkgstore_package_type type,
                const char *bytes)
{
    pkgstore_artifact artifact;
    pkgstore_registry_add_options opts = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT;
    memset(&artifact, 0, sizeof(artifact));
    CHECK(pkgstore_store_add_buffer(&artifact.digest, store, bytes, strlen(bytes)) == 0);
    snprintf(artifact.platform, sizeof(artifact.platform), "linux/amd64");
    opts.type = type;
    opts.force = 1;
    CHECK(pkgstore_registry_add(NULL, NULL, reg, name, version, &artifact, &opts) == 0);
}

static void policy(const char *name, const char *package, const char *version,
                   const char *selector)
{
    pkgstore_policy *p = NULL;
    CHECK(pkgstore_policy_new(&p, name, package, version) == 0);
    CHECK(pkgstore_policy_set_selector(p, selector) == 0);
    CHECK(pkgstore_policy_put(NULL, reg, p) == 0);
    pkgstore_policy_free(p);
}

static void setup(void)
{
    pkgstore_store_options sopts = PKGSTORE_STORE_OPTIONS_INIT;
    fleet_options fopts;
    fleet_error err;
    if (fl)
        return;
    snprintf(dir, sizeof(dir), "/tmp/fuzz_opamp_server.XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(fleet_dir, sizeof(fleet_dir), "%s/fleet", dir);
    sopts.durability = PKGSTORE_DURABILITY_NONE;
    CHECK(pkgstore_store_open(&store, dir, &sopts) == 0);
    CHECK(pkgstore_registry_open(&reg, store) == 0);
    add("otelcol", "1.0.0", PKGSTORE_TYPE_PRIMARY, "one");
    add("otelcol", "2.0.0", PKGSTORE_TYPE_PRIMARY, "two");
    add("shipper", "1.0.0", PKGSTORE_TYPE_ADDON, "shipper");
    policy("base", "otelcol", "1.0.0", "env=dev");
    policy("ship", "shipper", "1.0.0", "");
    fleet_options_init(&fopts);
    fopts.dir = fleet_dir;
    fopts.history_max = 4;
    fopts.max_nodes = 100000;
    fopts.no_flusher = 1;
    fopts.no_fsync = 1;
    fopts.new_nodes_per_s = 0; /* unlimited */
    CHECK(fleet_open(&fl, reg, &fopts, &err) == 0);
    CHECK(opamp_agents_new(&agents, 64) == 0); /* small: eviction is exercised */
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

static void check_reply(const uint8_t *out, size_t len, const uint8_t *data, size_t size,
                        int first)
{
    Opamp__Proto__V1__AgentToServer *in =
        opamp__proto__v1__agent_to_server__unpack(NULL, size, data);
    Opamp__Proto__V1__ServerToAgent *reply =
        opamp__proto__v1__server_to_agent__unpack(NULL, len, out);
    CHECK(in != NULL); /* the exchange decoded it */
    CHECK(reply != NULL);
    CHECK(reply->instance_uid.len == in->instance_uid.len);
    CHECK(in->instance_uid.len == 0 ||
          memcmp(reply->instance_uid.data, in->instance_uid.data, in->instance_uid.len) == 0);
    CHECK(reply->capabilities == 25);
    if (first && in->instance_uid.len == OPAMP_UID_SIZE && !reply->error_response)
        CHECK(reply->flags & 1); /* new to this run's first exchange or evicted: asked */
    if (reply->packages_available) {
        const Opamp__Proto__V1__PackagesAvailable *pa = reply->packages_available;
        CHECK(pa->all_packages_hash.len == 32);
        CHECK(pa->n_packages > 0);
        for (size_t i = 0; i < pa->n_packages; i++) {
            const Opamp__Proto__V1__PackageAvailable *p = pa->packages[i]->value;
            CHECK(p && p->file && p->version && p->version[0]);
            CHECK(p->file->content_hash.len == 32 && p->hash.len == 32);
            CHECK(strncmp(p->file->download_url, "http://fuzz.example:4320/v1/blobs/sha256:",
                          41) == 0);
        }
    }
    opamp__proto__v1__server_to_agent__free_unpacked(reply, NULL);
    opamp__proto__v1__agent_to_server__free_unpacked(in, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    opamp_request rq = {0};
    fleet_error err;
    uint8_t *out = (uint8_t *)0x1;
    size_t len = 99;

    if (size > 65536)
        return 0;
    setup();
    rq.fleet = fl;
    rq.agents = agents;
    rq.base_url = "http://fuzz.example:4320";
    rq.credential = 1;
    rq.primary_empty_name = size > 0 && (data[0] & 1);
    for (int round = 0; round < 2; round++) {
        /* the first exchange of an input may meet an agent an earlier
         * input left; only a brand-new table entry is surely unknown */
        size_t before = opamp_agents_count(agents);
        int rc = opamp_exchange(&out, &len, &rq, data, size, &err);
        if (rc != 0) {
            CHECK(rc == PKGSTORE_EINVALID || rc == PKGSTORE_ELIMIT);
            CHECK(err.code == rc && err.message[0] != '\0');
            CHECK(out == NULL && len == 0);
            return 0;
        }
        check_reply(out, len, data, size,
                    round == 0 && opamp_agents_count(agents) > before);
        free(out);
    }
    return 0;
}

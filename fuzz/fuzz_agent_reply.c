/*
 * fuzz_agent_reply: what a malicious pkgstored (or a man in the middle)
 * sends the agent as a heartbeat reply, through the agent's own parser and
 * decisions (agent/reply.c): the offers with their addon annotations
 * (JSON inside strings) and dependencies, the targets, which addons the
 * reply keeps, and the dependency check. Checks:
 *   - a reply is parsed or refused as a whole with a detail, never crashes;
 *   - every offer kept has a valid name, a SemVer version, a sha256
 *     digest, a positive size and a url that is a path or an http(s) URL;
 *     its entrypoint, when present, is relative without "..";
 *   - parsed args and env are bounded; env names are [A-Za-z_][A-Za-z0-9_]*;
 *   - targets are counted only when every one is well formed;
 *   - an addon the reply does not name is kept only without targets.
 */
#include "../agent/reply.h"

#include "fuzz.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const char *running(const char *name, void *payload)
{
    (void)payload;
    if (!strcmp(name, "otelcol"))
        return "1.0.0";
    if (!strcmp(name, "otelcol-contrib"))
        return "0.98.0";
    return NULL;
}

static void check_offer(const agent_offer *o)
{
    pkgstore_semver version;
    CHECK(agent_valid_name(o->name));
    CHECK(o->version && pkgstore_version_parse(&version, o->version) == 0);
    CHECK(o->digest && pkgstore_digest_validate(o->digest) == 0);
    CHECK(o->size > 0);
    CHECK(o->url && (o->url[0] == '/' || !strncmp(o->url, "http://", 7) ||
                     !strncmp(o->url, "https://", 8)));
    CHECK(!o->entrypoint || (o->entrypoint[0] != '/' && !strstr(o->entrypoint, "..")));
    CHECK(o->args.count <= REPLY_ARGS_MAX && (o->has_args || o->args.count == 0));
    for (size_t i = 0; i < o->args.count; i++)
        CHECK(o->args.items[i] != NULL);
    CHECK(o->env.count <= REPLY_ENV_MAX);
    for (size_t i = 0; i < o->env.count; i++) {
        const char *key = o->env.items[i].key;
        CHECK(key && *key && strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                         "0123456789_") == strlen(key));
        CHECK(o->env.items[i].value != NULL);
    }
    CHECK(o->ndeps <= REPLY_DEPS_MAX);
    char why[REPLY_WHY_MAX];
    int met = agent_offer_deps_met(o, running, NULL, why, sizeof why);
    CHECK(met == 0 || met == 1);
    if (!met)
        CHECK(strstr(why, "requires ") == why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    agent_reply reply;
    int rc = agent_reply_parse(&reply, (const char *)data, size, NULL, NULL);
    if (rc < 0) {
        CHECK(rc == PKGSTORE_EFORMAT || rc == PKGSTORE_ENOMEM);
        CHECK(agent_error()[0] != '\0');
        CHECK(reply.noffers == 0 && reply.ntargets == 0 && !reply.offers && !reply.targets);
        agent_reply_free(&reply);
        return 0;
    }
    CHECK(reply.noffers <= REPLY_OFFERS_MAX);
    for (size_t i = 0; i < reply.noffers; i++)
        check_offer(&reply.offers[i]);
    CHECK(reply.ntargets <= REPLY_TARGETS_MAX);
    for (size_t i = 0; reply.has_targets && i < reply.ntargets; i++) {
        const agent_target *t = &reply.targets[i];
        CHECK(agent_valid_name(t->name));
        CHECK(!t->digest[0] || pkgstore_digest_validate(t->digest) == 0);
    }
    /* an addon nobody names is removed only on a reply with targets */
    CHECK(agent_reply_keeps_addon(&reply, "no-such-addon-name-in-any-input") == !reply.has_targets);
    for (size_t i = 0; i < reply.noffers; i++)
        if (reply.offers[i].is_addon)
            CHECK(agent_reply_keeps_addon(&reply, reply.offers[i].name));
    agent_reply_free(&reply);
    return 0;
}

/*
 * What the agent receives from outside, parsed and checked without side
 * effects: the heartbeat reply (which a malicious server or a man in the
 * middle controls) with its offers, their addon annotations and
 * dependencies, and its targets; and the helper's one-line replies. The
 * fuzz harnesses (fuzz/fuzz_agent_*.c) call these functions directly.
 */
#ifndef PKGSTORE_AGENT_REPLY_H
#define PKGSTORE_AGENT_REPLY_H

#include "agent.h"

#include <jansson.h>

#define REPLY_OFFERS_MAX 64      /* as many as a heartbeat may report packages */
#define REPLY_TARGETS_MAX 64
#define REPLY_DEPS_MAX 64
#define REPLY_ARGS_MAX 256       /* io.pkgstore.addon.args items */
#define REPLY_ENV_MAX 256        /* io.pkgstore.addon.env entries */
#define REPLY_STRING_MAX 4096    /* any one string taken from a reply */
#define REPLY_WHY_MAX 256
#define REPLY_CONFIG_FILE_MAX 65536  /* a policy's config file body (PKGSTORE_ADDON_CONFIG_FILE_MAX) */

typedef struct agent_dependency {
    char *name;
    char *constraint;            /* parsed by pkgstore_version_constraint_parse() */
} agent_dependency;

/* One offer, every string owned (agent_reply_free). */
typedef struct agent_offer {
    char *name, *version, *digest, *url;   /* always set */
    char *format, *entrypoint, *policy;    /* NULL when absent */
    int is_addon;
    uint64_t size;
    uint32_t retry;                        /* the policy's retry generation, 0 if absent */
    agent_strv args;                       /* io.pkgstore.addon.args, when has_args */
    int has_args;
    agent_kvv env;                         /* io.pkgstore.addon.env, when has_env */
    int has_env;
    agent_dependency *deps;
    size_t ndeps;
    /* signed packages (docs/api.md): checked only with trust.root, so a
     * malformed one does not drop the offer but is its refusal's reason */
    char *manifest;                        /* "manifest": a sha256 digest, NULL when absent */
    char *signatures;                      /* "signatures": the array as compact JSON, or NULL */
    char *trust_error;                     /* why "manifest"/"signatures" are unusable, or NULL */
} agent_offer;

/* An addon's configuration from its policy (docs/policies.md, "Addon
 * configuration"): what the agent runs it with. Every string owned. */
typedef struct agent_policy_config {
    char digest[PKGSTORE_DIGEST_STR_SIZE]; /* the policy's config_digest; "" for none */
    agent_strv args;                       /* replaces the manifest's, when has_args */
    int has_args;
    agent_kvv env;                         /* over the manifest's, under the local YAML's */
    char *file;                            /* the config file's body; NULL: no file */
} agent_policy_config;

void agent_policy_config_free(agent_policy_config *config);
/* A deep copy of in into out (0), or -1 out of memory (out is then empty). */
int agent_policy_config_copy(agent_policy_config *out, const agent_policy_config *in);

/* One package a policy governs at the node (docs/api.md, targets). */
typedef struct agent_target {
    char *name;
    int is_addon;
    char *version;                         /* NULL when absent */
    char digest[PKGSTORE_DIGEST_STR_SIZE]; /* "" when absent */
    char *state;                           /* NULL when absent */
    char *reason;                          /* NULL when absent */
    /* an addon's configuration: its digest ("" when the policy has none),
     * the policy's retry generation, and the body when the server sent it */
    char config_digest[PKGSTORE_DIGEST_STR_SIZE];
    uint32_t retry;
    int has_config;                        /* config holds the body */
    agent_policy_config config;
} agent_target;

typedef struct agent_reply {
    double interval_s;                     /* heartbeat_interval_s, 0 when absent */
    agent_offer *offers;                   /* the well-formed offers, in order */
    size_t noffers;
    int has_targets;                       /* a well-formed "targets" array came */
    agent_target *targets;
    size_t ntargets;
    uint64_t trust_root_version;           /* "trust": {"root_version"}; 0 when absent or null */
    uint64_t trust_revocations;            /* "trust": {"revocations"}: the generation, 0 if none */
} agent_reply;

/* Called for each part of a reply that is skipped, with the reason. */
typedef void (*agent_reply_warn_fn)(const char *what, void *payload);

/*
 * Parse a heartbeat reply of len bytes into *out. A malformed offer is
 * skipped (warn says why); a malformed target, or too many, makes the
 * whole "targets" count as absent (has_targets 0), so that nothing is
 * removed on its say. 0, or PKGSTORE_EFORMAT (not a JSON object) /
 * PKGSTORE_ENOMEM with the agent's error detail set. *out is always safe
 * to pass to agent_reply_free().
 */
int agent_reply_parse(agent_reply *out, const char *text, size_t len, agent_reply_warn_fn warn,
                      void *payload);
void agent_reply_free(agent_reply *reply);

/* One offer object; 0, or -1 with the reason in why (out is freed). */
int agent_offer_parse(agent_offer *out, json_t *item, char *why, size_t why_len);
void agent_offer_free(agent_offer *offer);

/* Is the addon called name kept by this reply? Offered, or named by a
 * target; and always when the reply has no targets (an older server). */
int agent_reply_keeps_addon(const agent_reply *reply, const char *name);

/* The version of what the node runs of package name, for the dependency
 * check; NULL when it runs none (or at an unknown version). */
typedef const char *(*agent_running_fn)(const char *name, void *payload);

/* 1 if every dependency of offer is met by running(), else 0 with the
 * first unmet one in why ("requires otelcol >=5.0.0; this node runs
 * otelcol 1.0.0"). A constraint that does not compile is unmet. */
int agent_offer_deps_met(const agent_offer *offer, agent_running_fn running, void *payload,
                         char *why, size_t why_len);

/*
 * A helper's reply (one JSON object on its stdout, len bytes): 0 with
 * *reply_out (json_decref) when it says {"ok":true,...}; else the negative
 * code it reported (a code outside the PKGSTORE_E* range becomes
 * PKGSTORE_EIO) with its "error" in the agent's error detail, or
 * PKGSTORE_EIO when it is not a JSON object (how says how the helper
 * ended). Never fails to set the detail on error.
 */
int agent_helper_reply_parse(json_t **reply_out, const char *text, size_t len, const char *cmd,
                             const char *how);

/* Checked members of a helper reply. Each returns 0, or PKGSTORE_EIO with
 * "<cmd>: malformed reply: <member>" in the error detail. */
int agent_helper_reply_size(uint64_t *out, json_t *reply, uint64_t max, const char *cmd);
int agent_helper_reply_digest(char out[PKGSTORE_DIGEST_STR_SIZE], json_t *reply,
                              const char *key, const char *cmd);
/* An absolute path below dir (no "..", no control characters); NULL
 * allowed when optional. *out is a copy (free()). */
int agent_helper_reply_path(char **out, json_t *reply, const char *key, const char *dir,
                            int optional, const char *cmd);
/* "status" 100..599 and "body" (a string; a copy in *body_out, free()). */
int agent_helper_reply_http(long *status_out, char **body_out, json_t *reply, const char *cmd);

#endif

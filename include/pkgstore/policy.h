/*
 * pkgstore/policy.h - label selectors, upgrade policies, and the evaluation
 * of a node against them.
 *
 * A policy assigns one package version to the nodes whose labels match its
 * selector. Policies are records in the store's index, written through a
 * registry handle (they name package versions, and the registry refuses to
 * remove a version a policy references). pkgstore_policy_evaluate() is a
 * pure function: given a node's labels, platform and running packages and
 * a set of policies, it says which policy governs each package slot and
 * what to offer. Node tables, heartbeats, history and rollout views belong
 * to the program that keeps a fleet (pkgstored's server/fleet/).
 *
 * docs/policies.md has the selector grammar and the priority rules. Nothing
 * here starts a thread or keeps a cache; every object is immutable once
 * stored and safe to read from many threads.
 */
#ifndef PKGSTORE_POLICY_H
#define PKGSTORE_POLICY_H

#include "common.h"
#include "digest.h"
#include "index.h"
#include "manifest.h"
#include "registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- labels */

#define PKGSTORE_LABEL_KEY_MAX 317   /* optional "dns.prefix/" (253) + "/" + name (63) */
#define PKGSTORE_LABEL_VALUE_MAX 63
#define PKGSTORE_LABELS_MAX 64       /* labels per node */

/** One label of a node. Both strings are borrowed by the functions below. */
typedef struct pkgstore_label {
    const char *key;
    const char *value;
} pkgstore_label;

/**
 * Check a label key: an optional DNS-subdomain prefix (lower case, at most
 * 253 characters) and "/", then a name of 1 to 63 characters from
 * [A-Za-z0-9._-] that starts and ends with an alphanumeric.
 * Errors: PKGSTORE_EINVALID with a detail naming the character and position.
 */
PKGSTORE_API int pkgstore_label_key_validate(const char *key);

/**
 * Check a label value: empty, or 1 to 63 characters from [A-Za-z0-9._-]
 * that start and end with an alphanumeric. Errors: PKGSTORE_EINVALID.
 */
PKGSTORE_API int pkgstore_label_value_validate(const char *value);

/* ---------------------------------------------------------------- selectors */

#define PKGSTORE_SELECTOR_MAX 1024   /* bytes of selector text */

/** A parsed label selector (opaque, immutable, safe to share). */
typedef struct pkgstore_selector pkgstore_selector;

/**
 * Parse a selector into *out. Requirements are separated by commas and all
 * must hold (AND): "key=value" (also "key==value"), "key!=value",
 * "key in (a,b)", "key notin (a,b)", "key" (the label exists) and "!key"
 * (it does not). Whitespace around tokens is ignored. The empty selector
 * matches every node.
 * Errors: PKGSTORE_EINVALID with a detail "selector: position N: <what>"
 * (N counts bytes from 1), PKGSTORE_ELIMIT (text longer than
 * PKGSTORE_SELECTOR_MAX), PKGSTORE_ENOMEM. On failure *out is NULL.
 * Free with pkgstore_selector_free().
 */
PKGSTORE_API int pkgstore_selector_parse(pkgstore_selector **out, const char *text);

/** Free a selector. Accepts NULL. */
PKGSTORE_API void pkgstore_selector_free(pkgstore_selector *selector);

/**
 * The canonical text of a selector: requirements sorted by key then form,
 * set members sorted and deduplicated, no whitespace except "key in (a,b)".
 * Parsing the canonical text gives the same selector. Valid while the
 * selector lives; never NULL.
 */
PKGSTORE_API const char *pkgstore_selector_string(const pkgstore_selector *selector);

/**
 * 1 if the labels (count entries, keys unique) satisfy every requirement of
 * the selector, 0 if not. A NULL selector matches nothing.
 */
PKGSTORE_API int pkgstore_selector_matches(const pkgstore_selector *selector,
                                           const pkgstore_label *labels, size_t count);

/* ---------------------------------------------------------------- policies */

#define PKGSTORE_POLICY_NAME_MAX 128      /* [a-z0-9][a-z0-9._-]{0,127} */
#define PKGSTORE_POLICY_PRIORITY_MIN (-1000000)
#define PKGSTORE_POLICY_PRIORITY_MAX 1000000

/** A policy (opaque). Built with pkgstore_policy_new() and the setters;
 * those returned by the store and by sets are read-only. */
typedef struct pkgstore_policy pkgstore_policy;

/** 0 if name is a valid policy name, else PKGSTORE_EINVALID with a detail. */
PKGSTORE_API int pkgstore_policy_name_validate(const char *name);

/**
 * A new policy called name that assigns package at version (an exact
 * SemVer version; a leading "v" is dropped) to every node: the empty
 * selector, priority 0, and the type of the package itself. The strings are
 * copied. Errors: PKGSTORE_EINVALID (the detail names the field: "name",
 * "package" or "version"), PKGSTORE_ENOMEM. On failure *out is NULL.
 * Free with pkgstore_policy_free().
 */
PKGSTORE_API int pkgstore_policy_new(pkgstore_policy **out, const char *name,
                                     const char *package, const char *version);

/**
 * Set the label selector (parsed and kept in canonical form; "" matches
 * every node). Errors: PKGSTORE_EINVALID ("selector: position N: ..."),
 * PKGSTORE_ELIMIT (longer than PKGSTORE_SELECTOR_MAX), PKGSTORE_ENOMEM;
 * PKGSTORE_EINVALID for a policy that came from the store or a set.
 * On failure the policy is unchanged.
 */
PKGSTORE_API int pkgstore_policy_set_selector(pkgstore_policy *policy, const char *selector);

/** Set the priority (higher wins), PKGSTORE_POLICY_PRIORITY_MIN..MAX.
 * Errors: PKGSTORE_EINVALID. */
PKGSTORE_API int pkgstore_policy_set_priority(pkgstore_policy *policy, int priority);

/** Require the package to be of this type (pkgstore_policy_put() refuses
 * a mismatch). Errors: PKGSTORE_EINVALID. */
PKGSTORE_API int pkgstore_policy_set_type(pkgstore_policy *policy, pkgstore_package_type type);

/** Free a policy. Accepts NULL. */
PKGSTORE_API void pkgstore_policy_free(pkgstore_policy *policy);

/* Accessors. Strings are valid while the policy lives; never NULL. */
PKGSTORE_API const char *pkgstore_policy_name(const pkgstore_policy *policy);
/** The canonical selector text. */
PKGSTORE_API const char *pkgstore_policy_selector_text(const pkgstore_policy *policy);
/** The compiled selector (borrowed, valid while the policy lives). */
PKGSTORE_API const pkgstore_selector *pkgstore_policy_selector(const pkgstore_policy *policy);
PKGSTORE_API const char *pkgstore_policy_package(const pkgstore_policy *policy);
PKGSTORE_API const char *pkgstore_policy_version(const pkgstore_policy *policy);
/** The package type; for a new policy without pkgstore_policy_set_type(),
 * PKGSTORE_TYPE_PRIMARY until pkgstore_policy_put() fills in the package's. */
PKGSTORE_API pkgstore_package_type pkgstore_policy_type(const pkgstore_policy *policy);
PKGSTORE_API int pkgstore_policy_priority(const pkgstore_policy *policy);
/** Unix seconds of the first put and of the last change (0 before put). */
PKGSTORE_API int64_t pkgstore_policy_created(const pkgstore_policy *policy);
PKGSTORE_API int64_t pkgstore_policy_updated(const pkgstore_policy *policy);
/**
 * The retry generation: 0 for a new policy, raised by
 * pkgstore_policy_retry(). Agents that marked this policy's version bad
 * try it again when they see a higher value (docs/api.md).
 */
PKGSTORE_API uint64_t pkgstore_policy_retry_generation(const pkgstore_policy *policy);

/* ---------------------------------------------------------------- rollout strategy */

/*
 * A policy's rollout strategy: how the fleet that serves the policy admits
 * nodes to its version, batch by batch (docs/policies.md, "Staged
 * rollouts"). The library holds, validates and stores it and does the
 * arithmetic below; the program that keeps a fleet drives the rollout.
 */

#define PKGSTORE_ROLLOUT_BATCHES_MAX 16
#define PKGSTORE_ROLLOUT_COUNT_MAX 1000000000u  /* a count of nodes */
#define PKGSTORE_ROLLOUT_SECONDS_MAX 31536000u  /* soak and deadline: one year */
#define PKGSTORE_ROLLOUT_AMOUNT_STR_SIZE 16

/** A number of nodes, absolute or relative. */
typedef struct pkgstore_rollout_amount {
    uint32_t value; /* a count of nodes, or hundredths of a percent (1..10000) */
    int percent;    /* 1: value is in hundredths of a percent */
} pkgstore_rollout_amount;

/** A strategy. Start from PKGSTORE_ROLLOUT_STRATEGY_INIT: one batch of
 * 100%, no soak, no failure threshold, no deadline, no parallel limit,
 * which is how a policy without a strategy behaves. */
typedef struct pkgstore_rollout_strategy {
    unsigned int version;        /* PKGSTORE_ROLLOUT_STRATEGY_VERSION */
    size_t nbatches;             /* 0 means one batch of 100% */
    pkgstore_rollout_amount batches[PKGSTORE_ROLLOUT_BATCHES_MAX]; /* cumulative sizes */
    uint32_t soak_s;             /* a batch stays healthy this long before the next one */
    int has_max_failures;        /* 0: failures never pause the rollout */
    pkgstore_rollout_amount max_failures; /* failed nodes a batch tolerates */
    uint32_t deadline_s;         /* an admitted node silent this long counts as failed; 0: never */
    uint32_t max_parallel;       /* nodes upgrading at once; 0: no limit */
} pkgstore_rollout_strategy;

#define PKGSTORE_ROLLOUT_STRATEGY_VERSION 1
#define PKGSTORE_ROLLOUT_STRATEGY_INIT {PKGSTORE_ROLLOUT_STRATEGY_VERSION, 0, {{0, 0}}, 0, 0, {0, 0}, 0, 0}

/**
 * Parse "N" (a count of nodes, 0..PKGSTORE_ROLLOUT_COUNT_MAX) or "P%"
 * (a percentage, 0 to 100 with at most two decimals, e.g. "0.5%") into
 * *out. Errors: PKGSTORE_EINVALID with a detail quoting the text.
 */
PKGSTORE_API int pkgstore_rollout_amount_parse(pkgstore_rollout_amount *out, const char *text);

/** The text of an amount ("3", "5%", "0.25%") into out (NUL-terminated). */
PKGSTORE_API void pkgstore_rollout_amount_format(char out[PKGSTORE_ROLLOUT_AMOUNT_STR_SIZE],
                                                 const pkgstore_rollout_amount *amount);

/**
 * Check a strategy: 1 to PKGSTORE_ROLLOUT_BATCHES_MAX batches (or 0 for the
 * default), each more than 0 nodes, counts and percentages each strictly
 * increasing, the last batch "100%"; times at most
 * PKGSTORE_ROLLOUT_SECONDS_MAX; max_parallel at most
 * PKGSTORE_ROLLOUT_COUNT_MAX. Errors: PKGSTORE_EINVALID naming the field
 * ("batches[2]: ...", "soak_s: ...").
 */
PKGSTORE_API int pkgstore_rollout_strategy_validate(const pkgstore_rollout_strategy *strategy);

/** The number of batches (1 for the default). */
PKGSTORE_API size_t pkgstore_rollout_batch_count(const pkgstore_rollout_strategy *strategy);

/**
 * How many of total nodes batches 0..k admit together: the largest of
 * their amounts resolved against total, a count capped at total, a
 * percentage rounded up (ceil(total * p / 100)), so a non-empty fleet gives
 * every non-empty batch at least one node. The last batch (and any k past
 * it) admits total.
 */
PKGSTORE_API uint64_t pkgstore_rollout_batch_size(const pkgstore_rollout_strategy *strategy,
                                                  size_t k, uint64_t total);

/**
 * How many failed nodes a batch of batch_size nodes tolerates: the count,
 * or the percentage of batch_size rounded down ("10%" of 6 is 0: one
 * failure pauses); UINT64_MAX without a threshold. The rollout pauses when
 * a batch has more failures than this.
 */
PKGSTORE_API uint64_t pkgstore_rollout_failures_allowed(const pkgstore_rollout_strategy *strategy,
                                                        uint64_t batch_size);

/**
 * The rank of a node in the rollout order of a policy: a 64-bit hash of
 * the policy name and the node id (FNV-1a with a 64-bit finalizer), the
 * same on every run and every machine. Lower ranks go first; a node that
 * joins later takes its place in the order.
 */
PKGSTORE_API uint64_t pkgstore_rollout_rank(const char *policy, const char *node_id);

/**
 * Parse the JSON text of a strategy (len bytes), the form of the policy
 * record and of the API: {"batches":[1,"5%","100%"],"soak_s":600,
 * "max_failures":"10%","deadline_s":1800,"max_parallel":50}; every member
 * is optional, unknown members are refused, max_failures may be null.
 * A single batch of "100%" reads as the default. Then validated.
 * Errors: PKGSTORE_EINVALID naming the member. On failure *out is the default.
 */
PKGSTORE_API int pkgstore_rollout_strategy_parse(pkgstore_rollout_strategy *out, const char *json,
                                                 size_t len);

/** The JSON text of a strategy (every member, batches written out) into
 * *out: free() it. Errors: PKGSTORE_EINVALID, PKGSTORE_ENOMEM. */
PKGSTORE_API int pkgstore_rollout_strategy_format(char **out,
                                                  const pkgstore_rollout_strategy *strategy);

/** Set the policy's rollout strategy (copied, after
 * pkgstore_rollout_strategy_validate()). NULL restores the default.
 * Errors: PKGSTORE_EINVALID. */
PKGSTORE_API int pkgstore_policy_set_strategy(pkgstore_policy *policy,
                                              const pkgstore_rollout_strategy *strategy);

/** The policy's strategy; never NULL, valid while the policy lives. */
PKGSTORE_API const pkgstore_rollout_strategy *pkgstore_policy_strategy(const pkgstore_policy *policy);

/* ---------------------------------------------------------------- addon configuration */

/*
 * A policy for an addon package may carry the addon's configuration: its
 * arguments, environment variables and the body of a configuration file,
 * which the agent applies, watches and rolls back (docs/policies.md,
 * "Addon configuration"). The library holds it as canonical JSON (sorted
 * keys, compact) and its SHA-256, the identity agents report.
 */

#define PKGSTORE_ADDON_CONFIG_ARGS_MAX 64      /* arguments */
#define PKGSTORE_ADDON_CONFIG_ENV_MAX 64       /* environment variables */
#define PKGSTORE_ADDON_CONFIG_STRING_MAX 4096  /* bytes of one argument or value */
#define PKGSTORE_ADDON_CONFIG_NAME_MAX 128     /* bytes of a variable name */
#define PKGSTORE_ADDON_CONFIG_FILE_MAX 65536   /* bytes of the file body */

/**
 * Check the JSON text of an addon configuration (len bytes) and set it on
 * the policy: {"args":["--config","{config_file}"],"env":{"NAME":"value"},
 * "file":"body"}. Every member is optional; unknown members are refused;
 * args holds at most PKGSTORE_ADDON_CONFIG_ARGS_MAX strings, env at most
 * PKGSTORE_ADDON_CONFIG_ENV_MAX variables named [A-Za-z_][A-Za-z0-9_]*
 * (PKGSTORE_AGENT_CHILD is the agent's own), strings at most
 * PKGSTORE_ADDON_CONFIG_STRING_MAX bytes, file at most
 * PKGSTORE_ADDON_CONFIG_FILE_MAX bytes; no string holds a NUL. NULL, "null"
 * and "{}" remove the configuration. A policy whose type was set to
 * primary is refused (pkgstore_policy_put() refuses a configuration on a
 * policy for a primary package too).
 * Errors: PKGSTORE_EINVALID naming the member ("config.env.1X: ...");
 * PKGSTORE_ENOMEM. On failure the policy is unchanged.
 */
PKGSTORE_API int pkgstore_policy_set_config(pkgstore_policy *policy, const char *json, size_t len);

/** The policy's addon configuration as canonical JSON, or NULL when it has
 * none. Valid while the policy lives. */
PKGSTORE_API const char *pkgstore_policy_config(const pkgstore_policy *policy);

/** The SHA-256 of pkgstore_policy_config()'s text into *out.
 * Errors: PKGSTORE_ENOTFOUND (no configuration), PKGSTORE_EINVALID. */
PKGSTORE_API int pkgstore_policy_config_digest(pkgstore_digest *out,
                                               const pkgstore_policy *policy);

/* ---------------------------------------------------------------- stored policies */

/**
 * Create or replace the policy of the same name in reg's store, in one
 * index write transaction that also checks that package@version exists with
 * the policy's type (so that no concurrent pkgstore_registry_remove() can
 * take it away). created and the retry generation are kept from an
 * existing policy; updated is set now (an existing record that does not
 * parse is replaced as if absent). Every policy change moves the
 * generation that pkgstore_policies_current() compares.
 * *stored_out (may be NULL) receives the stored policy (free it).
 * Errors: PKGSTORE_EINVALID (a field; the detail names it, e.g. "type:
 * otelcol 1.0.0 is a primary package, not addon"), PKGSTORE_ENOTFOUND
 * ("package otelcol-contrib version 0.99.0 not found"), PKGSTORE_EIO,
 * PKGSTORE_ENOSPC, PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_policy_put(pkgstore_policy **stored_out, pkgstore_registry *reg,
                                     const pkgstore_policy *policy);

/** The stored policy called name into *out (free it).
 * Errors: PKGSTORE_ENOTFOUND, PKGSTORE_EINVALID, PKGSTORE_ECORRUPT, PKGSTORE_EIO. */
PKGSTORE_API int pkgstore_policy_get(pkgstore_policy **out, pkgstore_registry *reg,
                                     const char *name);

/** Delete the policy called name, also when its record does not parse
 * (the repair for PKGSTORE_ECORRUPT from pkgstore_policies_load()).
 * Errors: PKGSTORE_ENOTFOUND, PKGSTORE_EINVALID, PKGSTORE_EIO. */
PKGSTORE_API int pkgstore_policy_delete(pkgstore_registry *reg, const char *name);

/**
 * Raise the retry generation of the policy called name by one, so that
 * agents retry its version once even where they recorded it as bad.
 * *stored_out (may be NULL) receives the stored policy (free it).
 * Errors: PKGSTORE_ENOTFOUND, PKGSTORE_EINVALID, PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_policy_retry(pkgstore_policy **stored_out, pkgstore_registry *reg,
                                       const char *name);

/* ---------------------------------------------------------------- sets */

/** Every stored policy at one moment, ranked (opaque, immutable, safe to
 * share between threads). */
typedef struct pkgstore_policies pkgstore_policies;

/**
 * Read every stored policy into *out, with the generation it was read at.
 * Errors: PKGSTORE_ECORRUPT (a record does not parse; the detail names it),
 * PKGSTORE_EIO, PKGSTORE_ENOMEM. Free with pkgstore_policies_free().
 */
PKGSTORE_API int pkgstore_policies_load(pkgstore_policies **out, pkgstore_registry *reg);

/**
 * 1 if set still holds what is stored (no policy was put, deleted or
 * retried since it was loaded, by any handle or process), 0 if it is
 * stale. A cheap index read. Errors: PKGSTORE_EINVALID, PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_policies_current(const pkgstore_policies *set, pkgstore_registry *reg);

/** The number of policies. */
PKGSTORE_API size_t pkgstore_policies_count(const pkgstore_policies *set);

/** Policy i in rank order (priority descending, then name ascending), or
 * NULL when out of range. Borrowed: valid while the set lives. */
PKGSTORE_API const pkgstore_policy *pkgstore_policies_at(const pkgstore_policies *set, size_t i);

/** Policy i in name order, or NULL; *rank_out (may be NULL) receives its
 * rank (the index for pkgstore_policies_at()). Borrowed. */
PKGSTORE_API const pkgstore_policy *pkgstore_policies_by_name(const pkgstore_policies *set,
                                                              size_t i, size_t *rank_out);

/** The policy called name or NULL; *rank_out (may be NULL) its rank. */
PKGSTORE_API const pkgstore_policy *pkgstore_policies_find(const pkgstore_policies *set,
                                                           const char *name, size_t *rank_out);

/** Free a set. Accepts NULL. */
PKGSTORE_API void pkgstore_policies_free(pkgstore_policies *set);

/* ---------------------------------------------------------------- evaluation */

/** A package a node runs, as it reports it. */
typedef struct pkgstore_node_package {
    const char *name;
    pkgstore_package_type type;
    const char *version;           /* NULL or "" when unknown */
    const pkgstore_digest *digest; /* NULL when unknown */
} pkgstore_node_package;

/** What a node says about itself; every pointer is borrowed. */
typedef struct pkgstore_node_facts {
    const char *platform;                   /* canonical os/arch[/variant] */
    const pkgstore_label *labels;           /* keys unique */
    size_t label_count;
    const pkgstore_node_package *packages;
    size_t package_count;
} pkgstore_node_facts;

/** What a policy means for a node. */
typedef enum pkgstore_verdict {
    PKGSTORE_VERDICT_OFFER = 0,     /* offer artifact */
    PKGSTORE_VERDICT_CURRENT,       /* the node runs artifact's digest: nothing to do */
    PKGSTORE_VERDICT_INCOMPATIBLE,  /* no artifact of the version fits the node's platform */
    PKGSTORE_VERDICT_UNMET,         /* a dependency is not met by what the node runs */
    PKGSTORE_VERDICT_UNRESOLVED     /* the version's manifest could not be read */
} pkgstore_verdict;

/** "offer", "current", "incompatible", "unmet", "unresolved"; NULL out of range. */
PKGSTORE_API const char *pkgstore_verdict_name(pkgstore_verdict verdict);

/** One slot of a node: the primary package, or one addon package. */
typedef struct pkgstore_decision {
    const pkgstore_policy *policy;      /* the governing policy, borrowed from the set */
    size_t rank;                        /* its rank in the set */
    pkgstore_verdict verdict;
    const pkgstore_manifest *manifest;  /* from the lookup; NULL when UNRESOLVED */
    const pkgstore_artifact *artifact;  /* borrowed from manifest: OFFER and CURRENT */
    const pkgstore_dependency *unmet;   /* borrowed from manifest: UNMET (the first) */
    int error;                          /* the lookup's error: UNRESOLVED */
} pkgstore_decision;

/**
 * Find the manifest of package at version for pkgstore_policy_evaluate():
 * 0 and a manifest in *out that stays valid as long as the caller keeps
 * the decisions, or a negative PKGSTORE_E* code (the slot becomes
 * UNRESOLVED with that error).
 */
typedef int (*pkgstore_manifest_lookup)(const pkgstore_manifest **out, const char *package,
                                        const char *version, void *payload);

/**
 * Evaluate node against set. For the primary slot, and for each addon
 * package, the highest-ranked policy whose selector matches the node's
 * labels governs it (one decision each, in rank order). Its version's
 * manifest comes from lookup, then:
 *   - no artifact for the node's platform (pkgstore_manifest_best_artifact)
 *     gives INCOMPATIBLE;
 *   - a node that runs the artifact's digest gives CURRENT;
 *   - a dependency (other than on the package itself) that the node does
 *     not run at a version meeting its constraint gives UNMET;
 *   - else OFFER.
 * decisions has room for capacity entries (pkgstore_policies_count() is
 * always enough); *count receives how many were filled.
 * Errors: PKGSTORE_EINVALID (NULL argument), PKGSTORE_ELIMIT (capacity too
 * small; *count then says how many always fit). Lookup failures are not
 * errors: the slot is UNRESOLVED.
 */
PKGSTORE_API int pkgstore_policy_evaluate(pkgstore_decision *decisions, size_t capacity,
                                          size_t *count, const pkgstore_policies *set,
                                          const pkgstore_node_facts *node,
                                          pkgstore_manifest_lookup lookup, void *payload);

/* ---------------------------------------------------------------- rollout states */

/*
 * Where a node stands for the policy that governs one of its slots. The
 * first ten are the agent's status values after Pending (docs/api.md);
 * Incompatible and Unknown come from the verdicts; Waiting from a fleet
 * that holds the offer back (a staged rollout).
 */
typedef enum pkgstore_rollout_state {
    PKGSTORE_ROLLOUT_PENDING = 0,     /* offered; the node reported nothing for it yet */
    PKGSTORE_ROLLOUT_DOWNLOADING,
    PKGSTORE_ROLLOUT_VERIFYING,
    PKGSTORE_ROLLOUT_VALIDATING,
    PKGSTORE_ROLLOUT_SWAPPING,
    PKGSTORE_ROLLOUT_MONITORING,
    PKGSTORE_ROLLOUT_UPGRADED,        /* the node runs the assigned digest */
    PKGSTORE_ROLLOUT_UPGRADE_FAILED,
    PKGSTORE_ROLLOUT_ROLLED_BACK,
    PKGSTORE_ROLLOUT_ROLLBACK_FAILED,
    PKGSTORE_ROLLOUT_INCOMPATIBLE,    /* INCOMPATIBLE or UNMET */
    PKGSTORE_ROLLOUT_UNKNOWN,         /* UNRESOLVED */
    PKGSTORE_ROLLOUT_WAITING,         /* OFFER, but a staged rollout has not reached the node */
    PKGSTORE_ROLLOUT_COUNT
} pkgstore_rollout_state;

/** "Pending", "Downloading", ..., "RollbackFailed", "Incompatible",
 * "Unknown", "Waiting"; NULL for an out-of-range value. Static storage. */
PKGSTORE_API const char *pkgstore_rollout_state_name(pkgstore_rollout_state state);

/** Parse an agent status value ("Downloading" ... "RollbackFailed") into
 * *out. Errors: PKGSTORE_EINVALID (also for the computed states). */
PKGSTORE_API int pkgstore_rollout_state_parse(pkgstore_rollout_state *out, const char *status);

#ifdef __cplusplus
}
#endif

#endif

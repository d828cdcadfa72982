/*
 * The agent's side of signed packages (docs/trust.md, "The agent"): which
 * root is trusted now (the pinned trust.root, or a newer one adopted by a
 * verified rotation and kept in state_dir/trust/root.json), the check of
 * an offer before any download of its artifact, and the walk of the root
 * chain the server announces. Every signature is checked by the helper
 * (root-check, root-rotate, verify-offer): this process maps no OpenSSL.
 */
#ifndef PKGSTORE_AGENT_TRUST_H
#define PKGSTORE_AGENT_TRUST_H

#include "agent.h"
#include "reply.h"

#define TRUST_ROOT_WALK_MAX 16 /* root versions fetched per heartbeat at most */

typedef struct agent_trust {
    int enabled;             /* trust.root is configured */
    char *pinned;            /* the configured root.json (never written) */
    char *adopted;           /* state_dir/trust/root.json */
    char *revoked_path;      /* state_dir/trust/revoked.json: the list below, kept */
    int use_adopted;         /* the current root is the adopted one */
    uint64_t version;        /* the current root's version */
    uint64_t refused;        /* a server root version whose chain failed to verify: not
                                fetched again until the server announces a higher one */
    uint64_t revocations_generation;   /* of the list below; 0: never fetched */
    uint64_t server_generation;        /* the last reply's; nothing is installed while the
                                          list of that generation could not be read */
    struct agent_revocation {
        char *name, *version, *reason;
    } *revoked;              /* every revocation verified here, by the root current then;
                                never dropped (a registry cannot withdraw one) */
    size_t nrevoked;
} agent_trust;

/* What the signed manifest says this node installs. */
typedef struct agent_signed_artifact {
    char digest[PKGSTORE_DIGEST_STR_SIZE];
    uint64_t size;
    char format[40];
    char entrypoint[256];
} agent_signed_artifact;

/* The outcomes of agent_trust_offer() other than 0 (trusted). */
enum { TRUST_TRANSIENT = -1, TRUST_REFUSED = -2 };

/* The pinned root must be signed by a threshold of its own keys: 0 with
 * *version_out, or <0 with the reason in agent_error(). */
int agent_trust_check_pinned(const agent_config *cfg, uint64_t *version_out);

/* After the state_dir lock: the pinned root, or the adopted one when it is
 * newer and still self-signed. 0, or <0 (agent_error()) when the pinned
 * root fails. Nothing to do without trust.root. */
int agent_trust_init(agent_trust *trust, const agent_config *cfg);
void agent_trust_free(agent_trust *trust);
const char *agent_trust_current(const agent_trust *trust);

/*
 * Check offer o before its artifact is downloaded: fetch its manifest blob
 * into tmp_dir, then the helper's verify-offer. 0 with *out the artifact
 * of the signed manifest (its digest equals the offer's), TRUST_TRANSIENT
 * (the manifest could not be fetched) or TRUST_REFUSED, with why set.
 */
int agent_trust_offer(agent_signed_artifact *out, const agent_trust *trust,
                      const agent_config *cfg, const char *tmp_dir, const agent_offer *o,
                      char *why, size_t why_len);

/* The server holds root server_version: fetch and verify each version
 * after the current one in turn, adopting each valid rotation. Logs and
 * keeps the current root on any failure. */
void agent_trust_update_root(agent_trust *trust, const agent_config *cfg, const char *tmp_dir,
                             uint64_t server_version);

/* The server's revocation generation: when it is not the one fetched
 * last, fetch GET /v1/trust/revocations and add those that verify against
 * the current root (the helper's verify-revocations) to the list, which
 * keeps every one verified before (also in state_dir/trust/revoked.json):
 * a list that leaves one out withdraws nothing. On failure the list stays
 * and the fetch is tried at the next heartbeat. */
void agent_trust_update_revocations(agent_trust *trust, const agent_config *cfg,
                                    uint64_t generation);

/* The reason ("" when none given) if name version is revoked, else NULL. */
const char *agent_trust_revoked(const agent_trust *trust, const char *name, const char *version);

/* Anti-rollback: 0 if the node may move package name to version, given
 * the highest version it ran successfully (NULL: none); else -1 with why.
 * A revoked version is never installed; a lower version than highest only
 * when highest is revoked; nothing while the server's revocations could
 * not be read. */
int agent_trust_version_allowed(const agent_trust *trust, const char *name, const char *version,
                                const char *highest, char *why, size_t why_len);

#endif

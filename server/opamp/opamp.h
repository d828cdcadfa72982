/*
 * server/opamp/opamp.h - pkgstored as an OpAMP server over HTTP
 * (docs/opamp.md is the contract).
 *
 * An AgentToServer is translated into the JSON heartbeat it stands for and
 * goes through fleet_heartbeat(); the reply (offers, targets) is translated
 * into the ServerToAgent. Nothing here decides what an offer is: the fleet
 * does. opamp.c is the exchange (no HTTP, so that it can be fuzzed);
 * agents.c keeps what OpAMP needs between messages per instance_uid;
 * server/api/opamp.c is the route (content type, gzip, limits, the base
 * URL).
 *
 * This header names no protobuf-c type: files that include server.h need
 * no generated header.
 */
#ifndef PKGSTORED_OPAMP_H
#define PKGSTORED_OPAMP_H

#include <stddef.h>
#include <stdint.h>

#include "pkgstore.h"

#include "../fleet/fleet.h"

#define OPAMP_UID_SIZE 16
/* The request body, and what a gzip body inflates to, at most (the
 * spec's recommended limit): 413 past it. */
#define OPAMP_BODY_MAX ((size_t)64 << 20)
/* An agent description or package statuses kept per agent: a larger one
 * is a BadRequest (the fleet keeps 64 labels and 64 packages anyway). */
#define OPAMP_PART_MAX ((size_t)64 << 10)
/* Package slots remembered per agent (the fleet's packages per node). */
#define OPAMP_SLOTS_MAX 64

/* ---------------------------------------------------------------- per-agent state (agents.c) */

typedef struct opamp_agents opamp_agents;

/* A package slot the last reply named: the statuses an agent sends next
 * are typed by it, and "" is mapped back to the primary's name. */
typedef struct opamp_slot {
    char name[PKGSTORE_NAME_MAX + 1];
    char version[PKGSTORE_VERSION_MAX + 1];
    int addon;
} opamp_slot;

/* What was stored for one agent before this message (copies: free with
 * opamp_agent_state_done()). */
typedef struct opamp_agent_state {
    int known;             /* 0: a new agent, or forgotten (restart, eviction) */
    uint64_t sequence_num; /* the last one it sent */
    uint8_t *description;  /* packed AgentDescription, or NULL */
    size_t description_len;
    uint8_t *statuses;     /* packed PackageStatuses, or NULL */
    size_t statuses_len;
    opamp_slot *slots;
    size_t nslots;
} opamp_agent_state;

/* A table for at most max agents (the fleet's --max-nodes): past it the
 * agent heard from least recently is forgotten (it is asked for its full
 * state when it comes back). */
int opamp_agents_new(opamp_agents **out, size_t max);
void opamp_agents_free(opamp_agents *agents);
size_t opamp_agents_count(opamp_agents *agents);

/* For one message of uid: *prev receives what was stored (copies), then
 * the entry takes sequence_num and the parts given (NULL: keep the stored
 * one). PKGSTORE_ENOMEM; *prev is then empty. */
int opamp_agents_update(opamp_agent_state *prev, opamp_agents *agents,
                        const uint8_t uid[OPAMP_UID_SIZE], uint64_t sequence_num,
                        const uint8_t *description, size_t description_len,
                        const uint8_t *statuses, size_t statuses_len);

/* Remember the package slots of the reply to uid (when it is still known). */
void opamp_agents_set_slots(opamp_agents *agents, const uint8_t uid[OPAMP_UID_SIZE],
                            const opamp_slot *slots, size_t nslots);

void opamp_agent_state_done(opamp_agent_state *state);

/* ---------------------------------------------------------------- the exchange (opamp.c) */

typedef struct opamp_request {
    fleet *fleet;
    opamp_agents *agents;
    /* "scheme://host[:port][/prefix]" without a trailing '/': download
     * URLs are this plus the blob's path */
    const char *base_url;
    uint64_t credential;          /* the new-node rate's key (fleet_heartbeat) */
    const fleet_identity *who;    /* a per-node credential, or NULL */
    int primary_empty_name;       /* --opamp-primary-empty-name */
} opamp_request;

/* One AgentToServer (body, len bytes, already inflated) in: 0 with *out
 * (free()) the packed ServerToAgent to answer with 200 (a message the
 * server refuses, such as an instance_uid that is not 16 bytes, is a
 * ServerErrorResponse of type BadRequest in it). < 0 with err for an HTTP
 * answer instead: PKGSTORE_EINVALID (400) when body is not an
 * AgentToServer, and fleet_heartbeat()'s refusals: 403 (a credential
 * speaking for another node), 429 and 503 with Retry-After (new-node rate,
 * fleet full), ENOMEM. */
int opamp_exchange(uint8_t **out, size_t *out_len, const opamp_request *rq, const uint8_t *body,
                   size_t len, fleet_error *err);

/* The node id an agent without a valid service.instance.id gets: its
 * instance_uid as a lower-case UUID (37 bytes with the NUL). */
void opamp_uid_format(char out[37], const uint8_t uid[OPAMP_UID_SIZE]);

#endif

/*
 * server/opamp/agents.c - what the OpAMP server keeps per instance_uid
 * between messages, in memory only: the last sequence_num, the agent
 * description and package statuses as last sent (packed, at most
 * OPAMP_PART_MAX bytes each), and the package slots of the last reply.
 *
 * A chained hash table under one lock, with a list from most to least
 * recently heard from: past the cap (--max-nodes) the least recent agent
 * is forgotten. A forgotten agent, like every agent after a restart, is
 * asked for its full state when it comes back (docs/opamp.md).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "opamp.h"

struct agent {
    struct agent *chain;            /* same bucket */
    struct agent *newer, *older;    /* recency list */
    uint8_t uid[OPAMP_UID_SIZE];
    uint64_t sequence_num;
    uint8_t *description;
    size_t description_len;
    uint8_t *statuses;
    size_t statuses_len;
    opamp_slot *slots;
    size_t nslots;
};

struct opamp_agents {
    pthread_mutex_t lock;
    struct agent **buckets;
    size_t nbuckets; /* a power of two */
    size_t count, max;
    struct agent *newest, *oldest;
};

static size_t bucket_of(const opamp_agents *agents, const uint8_t uid[OPAMP_UID_SIZE])
{
    uint64_t hash = 14695981039346656037ULL; /* FNV-1a */
    for (size_t i = 0; i < OPAMP_UID_SIZE; i++) {
        hash ^= uid[i];
        hash *= 1099511628211ULL;
    }
    return (size_t)hash & (agents->nbuckets - 1);
}

int opamp_agents_new(opamp_agents **out, size_t max)
{
    opamp_agents *agents = calloc(1, sizeof(*agents));
    *out = NULL;
    if (!agents || max == 0)
        goto fail;
    agents->max = max;
    agents->nbuckets = 64;
    while (agents->nbuckets < max && agents->nbuckets < ((size_t)1 << 18))
        agents->nbuckets <<= 1;
    if (!(agents->buckets = calloc(agents->nbuckets, sizeof(*agents->buckets))))
        goto fail;
    pthread_mutex_init(&agents->lock, NULL);
    *out = agents;
    return 0;
fail:
    free(agents);
    return PKGSTORE_ENOMEM;
}

static void agent_free(struct agent *agent)
{
    if (!agent)
        return;
    free(agent->description);
    free(agent->statuses);
    free(agent->slots);
    free(agent);
}

void opamp_agents_free(opamp_agents *agents)
{
    if (!agents)
        return;
    for (struct agent *a = agents->newest, *next; a; a = next) {
        next = a->older;
        agent_free(a);
    }
    pthread_mutex_destroy(&agents->lock);
    free(agents->buckets);
    free(agents);
}

size_t opamp_agents_count(opamp_agents *agents)
{
    pthread_mutex_lock(&agents->lock);
    size_t count = agents->count;
    pthread_mutex_unlock(&agents->lock);
    return count;
}

/* Under the lock. */
static struct agent *find(opamp_agents *agents, const uint8_t uid[OPAMP_UID_SIZE])
{
    for (struct agent *a = agents->buckets[bucket_of(agents, uid)]; a; a = a->chain) {
        if (memcmp(a->uid, uid, OPAMP_UID_SIZE) == 0)
            return a;
    }
    return NULL;
}

static void list_unlink(opamp_agents *agents, struct agent *a)
{
    if (a->newer)
        a->newer->older = a->older;
    else
        agents->newest = a->older;
    if (a->older)
        a->older->newer = a->newer;
    else
        agents->oldest = a->newer;
    a->newer = a->older = NULL;
}

static void list_push(opamp_agents *agents, struct agent *a)
{
    a->older = agents->newest;
    a->newer = NULL;
    if (agents->newest)
        agents->newest->newer = a;
    agents->newest = a;
    if (!agents->oldest)
        agents->oldest = a;
}

static void forget(opamp_agents *agents, struct agent *victim)
{
    struct agent **link = &agents->buckets[bucket_of(agents, victim->uid)];
    while (*link && *link != victim)
        link = &(*link)->chain;
    if (*link)
        *link = victim->chain;
    list_unlink(agents, victim);
    agents->count--;
    agent_free(victim);
}

static uint8_t *copy_bytes(const uint8_t *bytes, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (copy && len)
        memcpy(copy, bytes, len);
    return copy;
}

void opamp_agent_state_done(opamp_agent_state *state)
{
    if (!state)
        return;
    free(state->description);
    free(state->statuses);
    free(state->slots);
    memset(state, 0, sizeof(*state));
}

int opamp_agents_update(opamp_agent_state *prev, opamp_agents *agents,
                        const uint8_t uid[OPAMP_UID_SIZE], uint64_t sequence_num,
                        const uint8_t *description, size_t description_len,
                        const uint8_t *statuses, size_t statuses_len)
{
    /* the copies are made before the lock is taken */
    uint8_t *new_description = description ? copy_bytes(description, description_len) : NULL;
    uint8_t *new_statuses = statuses ? copy_bytes(statuses, statuses_len) : NULL;
    int error = 0;

    memset(prev, 0, sizeof(*prev));
    if ((description && !new_description) || (statuses && !new_statuses)) {
        error = PKGSTORE_ENOMEM;
        goto out;
    }
    pthread_mutex_lock(&agents->lock);
    struct agent *a = find(agents, uid);
    if (a) {
        prev->known = 1;
        prev->sequence_num = a->sequence_num;
        if ((a->description &&
             !(prev->description = copy_bytes(a->description, a->description_len))) ||
            (a->statuses && !(prev->statuses = copy_bytes(a->statuses, a->statuses_len))) ||
            (a->nslots && !(prev->slots = malloc(a->nslots * sizeof(*prev->slots))))) {
            pthread_mutex_unlock(&agents->lock);
            opamp_agent_state_done(prev);
            error = PKGSTORE_ENOMEM;
            goto out;
        }
        prev->description_len = a->description_len;
        prev->statuses_len = a->statuses_len;
        if (a->nslots)
            memcpy(prev->slots, a->slots, a->nslots * sizeof(*prev->slots));
        prev->nslots = a->nslots;
        list_unlink(agents, a);
    } else {
        if (agents->count >= agents->max && agents->oldest)
            forget(agents, agents->oldest);
        if (!(a = calloc(1, sizeof(*a)))) {
            pthread_mutex_unlock(&agents->lock);
            error = PKGSTORE_ENOMEM;
            goto out;
        }
        memcpy(a->uid, uid, OPAMP_UID_SIZE);
        size_t b = bucket_of(agents, uid);
        a->chain = agents->buckets[b];
        agents->buckets[b] = a;
        agents->count++;
    }
    list_push(agents, a);
    a->sequence_num = sequence_num;
    if (new_description) {
        free(a->description);
        a->description = new_description;
        a->description_len = description_len;
        new_description = NULL; /* now owned by the table */
    }
    if (new_statuses) {
        free(a->statuses);
        a->statuses = new_statuses;
        a->statuses_len = statuses_len;
        new_statuses = NULL; /* now owned by the table */
    }
    pthread_mutex_unlock(&agents->lock);
out:
    free(new_description);
    free(new_statuses);
    return error;
}

void opamp_agents_set_slots(opamp_agents *agents, const uint8_t uid[OPAMP_UID_SIZE],
                            const opamp_slot *slots, size_t nslots)
{
    if (nslots > OPAMP_SLOTS_MAX)
        nslots = OPAMP_SLOTS_MAX;
    opamp_slot *copy = nslots ? malloc(nslots * sizeof(*copy)) : NULL;
    if (nslots && !copy)
        return; /* the statuses are typed as primary until a reply fits */
    if (nslots)
        memcpy(copy, slots, nslots * sizeof(*copy));
    pthread_mutex_lock(&agents->lock);
    struct agent *a = find(agents, uid);
    if (a) {
        free(a->slots);
        a->slots = copy;
        a->nslots = nslots;
        copy = NULL; /* now owned by the table */
    }
    pthread_mutex_unlock(&agents->lock);
    free(copy);
}

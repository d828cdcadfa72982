/*
 * server/fleet/nodes.c - the node table and each node's status history.
 *
 * Nodes live in FL_SHARDS shards, each a chained hash table under its own
 * lock; a heartbeat takes one shard's lock for a few pointer swaps. The
 * history is a ring that starts small and doubles up to --history-max, so
 * a node that never reported a status costs nothing for it.
 */
#include <stdlib.h>
#include <string.h>

#include "fleet_impl.h"

/* ---------------------------------------------------------------- the table */

uint64_t fl_node_hash(const char *id)
{
    return fl_fnv1a(FL_FNV_OFFSET, id, strlen(id));
}

struct fl_shard *fl_shard_of(fleet *f, uint64_t hash)
{
    return &f->shards[hash % FL_SHARDS];
}

static size_t bucket_of(const struct fl_shard *shard, uint64_t hash)
{
    return (hash / FL_SHARDS) & (shard->nbuckets - 1);
}

struct fl_node *fl_node_find(struct fl_shard *shard, const char *id, uint64_t hash)
{
    for (struct fl_node *node = shard->buckets[bucket_of(shard, hash)]; node; node = node->next) {
        if (node->hash == hash && strcmp(node->id, id) == 0)
            return node;
    }
    return NULL;
}

static void shard_grow(struct fl_shard *shard)
{
    size_t nbuckets = shard->nbuckets * 2;
    struct fl_node **buckets = calloc(nbuckets, sizeof(*buckets));
    if (!buckets)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < shard->nbuckets; i++) {
        struct fl_node *node = shard->buckets[i], *next;
        for (; node; node = next) {
            next = node->next;
            size_t b = (node->hash / FL_SHARDS) & (nbuckets - 1);
            node->next = buckets[b];
            buckets[b] = node;
        }
    }
    free(shard->buckets);
    shard->buckets = buckets;
    shard->nbuckets = nbuckets;
}

struct fl_node *fl_node_insert(struct fl_shard *shard, const char *id, uint64_t hash)
{
    size_t len = strlen(id);
    struct fl_node *node = calloc(1, sizeof(*node) + len + 1);
    if (!node)
        return NULL;
    memcpy(node->id, id, len + 1);
    node->hash = hash;
    if (shard->count >= shard->nbuckets)
        shard_grow(shard);
    size_t b = bucket_of(shard, hash);
    node->next = shard->buckets[b];
    shard->buckets[b] = node;
    shard->count++;
    return node;
}

static void hist_clear(fleet *f, struct fl_node *node)
{
    for (unsigned int k = 0; k < node->hlen; k++) {
        struct fl_hist *h = &node->hist[(node->hstart + k) % node->hcap];
        fl_str_release(f, h->entry);
    }
    free(node->hist);
    node->hist = NULL;
    node->hcap = node->hstart = node->hlen = 0;
}

static void node_free(fleet *f, struct fl_node *node)
{
    hist_clear(f, node);
    fl_trust_move(f, node->profile, NULL);
    fl_profile_release(f, node->profile);
    if (node->dirty)
        atomic_fetch_sub(&f->unsaved, 1);
    free(node);
}

int fl_node_remove(fleet *f, struct fl_shard *shard, const char *id, uint64_t hash)
{
    for (struct fl_node **link = &shard->buckets[bucket_of(shard, hash)]; *link;
         link = &(*link)->next) {
        if ((*link)->hash == hash && strcmp((*link)->id, id) == 0) {
            struct fl_node *node = *link;
            *link = node->next;
            shard->count--;
            atomic_fetch_sub(&f->node_count, 1);
            node_free(f, node);
            return 1;
        }
    }
    return 0;
}

void fl_node_set_profile(fleet *f, struct fl_node *node, struct fl_profile *profile)
{
    struct fl_profile *old = node->profile;
    fl_trust_move(f, old, profile);
    node->profile = profile;
    fl_profile_release(f, old);
}

void fl_node_mark_dirty(fleet *f, struct fl_node *node)
{
    if (!node->dirty) {
        node->dirty = 1;
        atomic_fetch_add(&f->unsaved, 1);
    }
}

int fl_nodes_init(fleet *f)
{
    for (size_t s = 0; s < FL_SHARDS; s++) {
        struct fl_shard *shard = &f->shards[s];
        pthread_mutex_init(&shard->lock, NULL);
        shard->nbuckets = 16;
        if (!(shard->buckets = calloc(shard->nbuckets, sizeof(*shard->buckets))))
            return -1;
    }
    return 0;
}

void fl_nodes_free(fleet *f)
{
    for (size_t s = 0; s < FL_SHARDS; s++) {
        struct fl_shard *shard = &f->shards[s];
        for (size_t i = 0; shard->buckets && i < shard->nbuckets; i++) {
            struct fl_node *node = shard->buckets[i], *next;
            for (; node; node = next) {
                next = node->next;
                node_free(f, node);
            }
        }
        free(shard->buckets);
        shard->buckets = NULL;
        shard->count = 0;
        pthread_mutex_destroy(&shard->lock);
    }
    atomic_store(&f->node_count, 0);
}

int fl_nodes_foreach(fleet *f, fl_node_fn fn, void *payload)
{
    int rc = 0;
    for (size_t s = 0; s < FL_SHARDS && rc == 0; s++) {
        struct fl_shard *shard = &f->shards[s];
        pthread_mutex_lock(&shard->lock);
        for (size_t i = 0; i < shard->nbuckets && rc == 0; i++) {
            for (struct fl_node *node = shard->buckets[i]; node && rc == 0; node = node->next)
                rc = fn(node, payload);
        }
        pthread_mutex_unlock(&shard->lock);
    }
    return rc;
}

/* ---------------------------------------------------------------- history */

const struct fl_hist *fl_hist_at(const struct fl_node *node, unsigned int k)
{
    return &node->hist[(node->hstart + k) % node->hcap];
}

const char *fl_hist_package(const struct fl_hist *h)
{
    return h->entry->s;
}

const char *fl_hist_version(const struct fl_hist *h)
{
    return h->entry->s + strlen(h->entry->s) + 1;
}

const char *fl_hist_message(const struct fl_hist *h)
{
    const char *version = fl_hist_version(h);
    return version + strlen(version) + 1;
}

int64_t fl_hist_time(const struct fl_hist *h)
{
    return (int64_t)h->time;
}

/* Cut a message to FL_MESSAGE_MAX bytes on a UTF-8 boundary. */
static size_t message_len(const char *message)
{
    size_t len = strlen(message);
    if (len <= FL_MESSAGE_MAX)
        return len;
    len = FL_MESSAGE_MAX;
    while (len > 0 && ((unsigned char)message[len] & 0xc0) == 0x80)
        len--;
    return len;
}

/* Is h's package the one of plen bytes? */
static int package_is(const struct fl_hist *h, const char *package, size_t plen)
{
    return h->entry->len > plen && memcmp(h->entry->s, package, plen) == 0 &&
           h->entry->s[plen] == '\0';
}

static int key_is(const struct fl_hist *h, const char *package, size_t plen,
                  const char *version)
{
    return package_is(h, package, plen) && strcmp(h->entry->s + plen + 1, version) == 0;
}

int fl_hist_latest(pkgstore_rollout_state *out, const struct fl_node *node, const char *package,
                   const char *version)
{
    size_t plen = strlen(package);
    for (unsigned int k = node->hlen; k > 0; k--) {
        const struct fl_hist *h = fl_hist_at(node, k - 1);
        if (key_is(h, package, plen, version)) {
            *out = (pkgstore_rollout_state)h->status;
            return 1;
        }
    }
    return 0;
}

/* Make room for one more entry: grow the ring up to history_max, else drop
 * the oldest. 0, or -1 when out of memory. */
static int hist_make_room(fleet *f, struct fl_node *node)
{
    unsigned int max = f->opts.history_max;
    if (node->hlen < node->hcap)
        return 0;
    if (node->hcap < max) {
        unsigned int cap = node->hcap ? node->hcap * 2u : 4u;
        if (cap > max)
            cap = max;
        struct fl_hist *ring = malloc(cap * sizeof(*ring));
        if (!ring)
            return -1;
        for (unsigned int k = 0; k < node->hlen; k++)
            ring[k] = *fl_hist_at(node, k);
        free(node->hist);
        node->hist = ring;
        node->hcap = (uint16_t)cap;
        node->hstart = 0;
        return 0;
    }
    struct fl_hist *oldest = &node->hist[node->hstart];
    fl_str_release(f, oldest->entry);
    node->hstart = (uint16_t)((node->hstart + 1) % node->hcap);
    node->hlen--;
    return 0;
}

int fl_hist_append(fleet *f, struct fl_node *node, int64_t time, const char *package,
                   const char *version, pkgstore_rollout_state status, const char *message)
{
    size_t plen = strlen(package), vlen, mlen;
    if (!version)
        version = "";
    if (!message)
        message = "";
    vlen = strlen(version);
    mlen = message_len(message);

    for (unsigned int k = node->hlen; k > 0; k--) {
        const struct fl_hist *h = fl_hist_at(node, k - 1);
        if (!package_is(h, package, plen))
            continue;
        const char *old_message = fl_hist_message(h);
        if (h->status == status && strcmp(h->entry->s + plen + 1, version) == 0 &&
            strlen(old_message) == mlen && memcmp(old_message, message, mlen) == 0)
            return 0;
        break;
    }

    char entry[PKGSTORE_NAME_MAX + PKGSTORE_VERSION_MAX + FL_MESSAGE_MAX + 3];
    if (plen > PKGSTORE_NAME_MAX || vlen > PKGSTORE_VERSION_MAX)
        return -1; /* the parser bounds both */
    memcpy(entry, package, plen + 1);
    memcpy(entry + plen + 1, version, vlen);
    entry[plen + 1 + vlen] = '\0';
    memcpy(entry + plen + 2 + vlen, message, mlen);
    struct fl_str *entry_str = fl_str_intern(f, entry, plen + 2 + vlen + mlen);
    if (!entry_str || hist_make_room(f, node) < 0) {
        fl_str_release(f, entry_str);
        return -1;
    }
    struct fl_hist *slot = &node->hist[(node->hstart + node->hlen) % node->hcap];
    slot->time = time < 0 ? 0 : time > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)time;
    slot->status = (uint8_t)status;
    slot->entry = entry_str;
    node->hlen++;
    return 1;
}

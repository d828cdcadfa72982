/*
 * server/fleet/views.c - the fleet as the API shows it: one node, pages of
 * nodes, the rollout status of policies, and the per-policy counts of
 * /metrics. Rollout states are computed at query time from each node's
 * report and history, so they follow a policy change at once.
 *
 * No listing grows with the fleet: a page holds at most its limit of nodes
 * and stops early past a byte budget, and the walk keeps only the page's
 * ids (a bounded heap), never the whole fleet's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fleet_impl.h"

void fleet_time_format(char out[32], int64_t seconds)
{
    struct tm tm;
    time_t t = (time_t)seconds;
    if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        strcpy(out, "1970-01-01T00:00:00Z");
}

static json_t *time_json(int64_t seconds, int stored)
{
    char buf[32];
    if (stored)
        return json_integer((json_int_t)seconds);
    fleet_time_format(buf, seconds);
    return json_string(buf);
}

static json_t *hist_json(const struct fl_hist *h, int stored)
{
    json_t *obj = json_pack("{s:o, s:s, s:s, s:s}", "time", time_json(fl_hist_time(h), stored),
                            "package", fl_hist_package(h), "version", fl_hist_version(h), "status",
                            pkgstore_rollout_state_name((pkgstore_rollout_state)h->status));
    /* the stored record leaves an empty message out (the loader reads a
     * missing one as empty, as every version did); the API view has it */
    const char *message = fl_hist_message(h);
    if (obj && (!stored || message[0]) &&
        json_object_set_new(obj, "message", json_string(message)) < 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* "rollout" and "rollout_state" of the API view. */
static int add_rollout(json_t *obj, const struct fl_node *node, const struct fl_policies *p,
                       struct fl_lookup *lookup)
{
    struct fl_eval eval = {0};
    fleet_error err;
    json_t *rollout = json_array();
    int failed = !rollout;

    if (!failed && fl_evaluate(&eval, p, node->profile, node, lookup, &err) < 0)
        failed = 1;
    if (!failed)
        fl_rollout_gate(lookup->f, &eval, (struct fl_node *)node, 0); /* 0: writes nothing */
    /* one word for the fleet table: the primary slot's state, else the
     * first addon's, else null (no policy governs the node) */
    size_t headline = eval.count;
    for (size_t i = 0; i < eval.count && headline == eval.count; i++) {
        if (pkgstore_policy_type(eval.decisions[i].policy) == PKGSTORE_TYPE_PRIMARY)
            headline = i;
    }
    if (headline == eval.count && eval.count > 0)
        headline = 0;
    for (size_t i = 0; !failed && i < eval.count; i++) {
        const pkgstore_policy *policy = eval.decisions[i].policy;
        failed |= json_array_append_new(
                      rollout,
                      json_pack("{s:s, s:s, s:s, s:s, s:s}", "policy", pkgstore_policy_name(policy),
                                "package", pkgstore_policy_package(policy), "version",
                                pkgstore_policy_version(policy), "type",
                                pkgstore_package_type_name(pkgstore_policy_type(policy)),
                                "state", pkgstore_rollout_state_name(eval.states[i]))) < 0;
    }
    if (!failed)
        failed |= json_object_set_new(obj, "rollout_state",
                                      headline < eval.count
                                          ? json_string(pkgstore_rollout_state_name(
                                                eval.states[headline]))
                                          : json_null()) < 0;
    failed |= json_object_set_new(obj, "rollout", rollout) < 0;
    fl_eval_done(&eval);
    return failed ? -1 : 0;
}

json_t *fl_node_to_json(const struct fl_node *node, const struct fl_policies *p,
                        struct fl_lookup *lookup, int stored, int with_history)
{
    fleet *f = lookup ? lookup->f : NULL; /* the API view's: "behind" needs the server's */
    const struct fl_profile *r = node->profile;
    json_t *obj = json_object(), *labels = json_object(), *pkgs = json_array();
    int failed = !obj || !labels || !pkgs;

    for (size_t i = 0; !failed && i < r->nlabels; i++)
        failed |= json_object_set_new(labels, r->labels[i].key, json_string(r->labels[i].value));
    for (size_t i = 0; !failed && i < r->npkgs; i++) {
        const struct fl_pkg *pkg = &r->pkgs[i];
        json_t *pj = json_pack("{s:s, s:s}", "name", pkg->name, "type",
                               pkgstore_package_type_name(pkg->type));
        if (pj && pkg->version[0])
            json_object_set_new(pj, "version", json_string(pkg->version));
        if (pj && pkg->has_digest) {
            char digest[PKGSTORE_DIGEST_STR_SIZE];
            pkgstore_digest_format(digest, &pkg->digest);
            json_object_set_new(pj, "digest", json_string(digest));
        }
        if (pj && pkg->state[0])
            json_object_set_new(pj, "state", json_string(pkg->state));
        if (pj && pkg->config && pkg->config->has_config) {
            char digest[PKGSTORE_DIGEST_STR_SIZE];
            pkgstore_digest_format(digest, &pkg->config->config_digest);
            json_object_set_new(pj, "config_digest", json_string(digest));
        }
        if (pj && pkg->config && pkg->config->has_refused) {
            char digest[PKGSTORE_DIGEST_STR_SIZE];
            pkgstore_digest_format(digest, &pkg->config->refused_digest);
            json_object_set_new(pj, "config_refused",
                                json_pack("{s:s, s:I}", "digest", digest, "retry",
                                          (json_int_t)pkg->config->refused_retry));
        }
        failed |= json_array_append_new(pkgs, pj);
    }
    if (failed) {
        json_decref(obj);
        json_decref(labels);
        json_decref(pkgs);
        return NULL;
    }
    failed |= json_object_set_new(obj, "id", json_string(node->id));
    failed |= json_object_set_new(obj, "labels", labels);
    failed |= json_object_set_new(obj, "platform", json_string(r->platform));
    if (r->agent_version[0])
        failed |= json_object_set_new(obj, "agent_version", json_string(r->agent_version));
    failed |= json_object_set_new(obj, "last_seen", time_json(node->last_seen, stored));
    failed |= json_object_set_new(obj, "packages", pkgs);
    if (r->trust.root_version && (stored || f)) {
        json_t *trust = fl_trust_json(f, &r->trust, stored);
        failed |= !trust || json_object_set_new(obj, "trust", trust) < 0;
    }
    if (!stored && p) {
        failed |= add_rollout(obj, node, p, lookup) < 0;
        failed |= json_object_set_new(obj, "last_status",
                                      node->hlen ? hist_json(fl_hist_at(node, node->hlen - 1), 0)
                                                 : json_null());
    }
    if (with_history) {
        json_t *history = json_array();
        for (unsigned int k = 0; history && k < node->hlen; k++)
            failed |= json_array_append_new(history, hist_json(fl_hist_at(node, k), stored));
        failed |= json_object_set_new(obj, "history", history);
    }
    if (failed) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* ---------------------------------------------------------------- one node */

int fleet_node_json(char **json_out, size_t *len_out, fleet *f, const char *id, fleet_error *err)
{
    struct fl_policies *p = NULL;
    struct fl_lookup lookup = {0};
    json_t *obj = NULL;
    int error = 0;

    *json_out = NULL;
    if (fl_targets_refresh(f) < 0)
        return fl_fail_lib(err, PKGSTORE_EIO, "registry");
    if (!(p = fl_policies_get(f, err)))
        return err->code;
    if (fl_lookup_init(&lookup, f, pkgstore_policies_count(p->set)) < 0) {
        error = fl_fail(err, PKGSTORE_ENOMEM, "node %s: out of memory", id);
        goto out;
    }
    uint64_t hash = fl_node_hash(id);
    struct fl_shard *shard = fl_shard_of(f, hash);
    pthread_mutex_lock(&shard->lock);
    const struct fl_node *node = fl_node_find(shard, id, hash);
    if (!node || !node->profile)
        error = fl_fail(err, PKGSTORE_ENOTFOUND, "node %.253s not found", id);
    else if (!(obj = fl_node_to_json(node, p, &lookup, 0, 1)))
        error = fl_fail(err, PKGSTORE_ENOMEM, "node %s: out of memory", id);
    pthread_mutex_unlock(&shard->lock);
    if (obj && !(*json_out = json_dumps(obj, JSON_COMPACT)))
        error = fl_fail(err, PKGSTORE_ENOMEM, "node %s: out of memory", id);
    if (*json_out)
        *len_out = strlen(*json_out);
out:
    json_decref(obj);
    fl_lookup_done(&lookup);
    fl_policies_release(p);
    return error;
}

int fleet_node_delete(fleet *f, const char *id, fleet_error *err)
{
    uint64_t hash = fl_node_hash(id);
    struct fl_shard *shard = fl_shard_of(f, hash);
    int error;

    pthread_mutex_lock(&f->flush_lock);
    pthread_mutex_lock(&shard->lock);
    int known = fl_node_find(shard, id, hash) != NULL;
    pthread_mutex_unlock(&shard->lock);
    if (!known)
        error = fl_fail(err, PKGSTORE_ENOTFOUND, "node %.253s not found", id);
    else if ((error = fl_store_delete(f, id, err)) == 0) {
        pthread_mutex_lock(&shard->lock);
        fl_node_remove(f, shard, id, hash);
        pthread_mutex_unlock(&shard->lock);
    }
    pthread_mutex_unlock(&f->flush_lock);
    return error;
}

/* ---------------------------------------------------------------- the page heap */

/* The smallest `cap` ids seen, as a max-heap (the largest at the top). */
struct id_heap {
    char **ids;
    pkgstore_rollout_state *states;
    size_t count, cap;
    int failed;
};

static void heap_swap(struct id_heap *h, size_t a, size_t b)
{
    char *id = h->ids[a];
    pkgstore_rollout_state state = h->states[a];
    h->ids[a] = h->ids[b];
    h->states[a] = h->states[b];
    h->ids[b] = id;
    h->states[b] = state;
}

static void heap_down(struct id_heap *h, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, top = i;
        if (l < h->count && strcmp(h->ids[l], h->ids[top]) > 0)
            top = l;
        if (r < h->count && strcmp(h->ids[r], h->ids[top]) > 0)
            top = r;
        if (top == i)
            return;
        heap_swap(h, i, top);
        i = top;
    }
}

static void heap_offer(struct id_heap *h, const char *id, pkgstore_rollout_state state)
{
    if (h->cap == 0 || h->failed)
        return;
    if (h->count == h->cap) {
        if (strcmp(id, h->ids[0]) >= 0)
            return;
        char *copy = strdup(id);
        if (!copy) {
            h->failed = 1;
            return;
        }
        free(h->ids[0]);
        h->ids[0] = copy;
        h->states[0] = state;
        heap_down(h, 0);
        return;
    }
    char *copy = strdup(id);
    if (!copy) {
        h->failed = 1;
        return;
    }
    size_t i = h->count++;
    h->ids[i] = copy;
    h->states[i] = state;
    while (i > 0 && strcmp(h->ids[(i - 1) / 2], h->ids[i]) < 0) {
        heap_swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static int heap_init(struct id_heap *h, size_t cap)
{
    memset(h, 0, sizeof(*h));
    h->cap = cap;
    h->ids = calloc(cap ? cap : 1, sizeof(*h->ids));
    h->states = calloc(cap ? cap : 1, sizeof(*h->states));
    return h->ids && h->states ? 0 : -1;
}

/* Sort the heap's ids ascending (in place; the heap is spent). */
static void heap_sort(struct id_heap *h)
{
    size_t n = h->count;
    while (h->count > 1) {
        heap_swap(h, 0, h->count - 1);
        h->count--;
        heap_down(h, 0);
    }
    h->count = n;
}

static void heap_free(struct id_heap *h)
{
    for (size_t i = 0; h->ids && i < h->count; i++)
        free(h->ids[i]);
    free(h->ids);
    free(h->states);
}

/* ---------------------------------------------------------------- filters */

struct walk {
    fleet *f;
    const struct fl_policies *p;
    struct fl_lookup *lookup;
    pkgstore_selector *selector;     /* NULL: no filter */
    size_t policy_rank;              /* SIZE_MAX: no policy filter */
    int state;                       /* -1: no state filter */
    const char *package, *version;   /* NULL: no package or version filter */
    int status;                      /* -1: no last-status filter */
    int trust;                       /* TRUST_ANY, or the trust filter */
    const char *after;
    uint64_t total;
    struct id_heap heap;
    /* tallies (policy views): per rank */
    uint64_t (*counts)[PKGSTORE_ROLLOUT_COUNT];
    uint64_t *matching;
    uint64_t (*config_counts)[2];    /* an addon configuration: applied, refused */
    int failed;
};

/* Does the node report the configuration of decision d's policy as applied
 * (0) or as refused (1)? -1: neither, or the policy has none. */
static int config_outcome(const struct fl_profile *r, const pkgstore_decision *d)
{
    pkgstore_digest digest;
    if (!pkgstore_policy_config(d->policy) || pkgstore_policy_config_digest(&digest, d->policy) < 0)
        return -1;
    for (size_t i = 0; i < r->npkgs; i++) {
        const struct fl_pkg_config *c = r->pkgs[i].config;
        if (!c || strcmp(r->pkgs[i].name, pkgstore_policy_package(d->policy)) != 0)
            continue;
        if (c->has_config && pkgstore_digest_equal(&c->config_digest, &digest))
            return 0;
        if (c->has_refused && pkgstore_digest_equal(&c->refused_digest, &digest))
            return 1;
    }
    return -1;
}

/* The node's state for the policy filter (or its headline state); -1 when
 * the policy does not govern it (or no policy does). */
static int node_state(struct walk *w, const struct fl_node *node, struct fl_eval *eval)
{
    int state = -1, primary_seen = 0;
    for (size_t i = 0; i < eval->count; i++) {
        const pkgstore_decision *d = &eval->decisions[i];
        if (w->policy_rank != SIZE_MAX) {
            if (d->rank == w->policy_rank)
                return (int)eval->states[i];
            continue;
        }
        int primary = pkgstore_policy_type(d->policy) == PKGSTORE_TYPE_PRIMARY;
        if (state < 0 || (primary && !primary_seen)) {
            state = (int)eval->states[i];
            primary_seen = primary;
        }
    }
    (void)node;
    return state;
}

enum { TRUST_ANY, TRUST_BEHIND, TRUST_CURRENT, TRUST_NONE };

static int trust_passes(struct walk *w, const struct fl_profile *r)
{
    switch (w->trust) {
    case TRUST_BEHIND:
        return fl_trust_behind(w->f, &r->trust);
    case TRUST_CURRENT:
        return r->trust.root_version && !fl_trust_behind(w->f, &r->trust);
    case TRUST_NONE:
        return !r->trust.root_version;
    }
    return 1;
}

/* Does the node run w's package (any, when only a version is asked: the
 * primary, the one the fleet table shows) at w's version? */
static int package_passes(const struct walk *w, const struct fl_profile *r)
{
    if (!w->package && !w->version)
        return 1;
    for (size_t i = 0; i < r->npkgs; i++) {
        const struct fl_pkg *pkg = &r->pkgs[i];
        if (w->package ? strcmp(pkg->name, w->package) != 0 : pkg->type != PKGSTORE_TYPE_PRIMARY)
            continue;
        if (!w->version || strcmp(pkg->version, w->version) == 0)
            return 1;
    }
    return 0;
}

static int walk_node(struct fl_node *node, void *payload)
{
    struct walk *w = payload;
    const struct fl_profile *r = node->profile;
    int state = -1;

    if (!r || !trust_passes(w, r) || !package_passes(w, r))
        return 0;
    if (w->status >= 0 && (!node->hlen || fl_hist_at(node, node->hlen - 1)->status != w->status))
        return 0;
    if (w->selector && !pkgstore_selector_matches(w->selector, r->labels, r->nlabels))
        return 0;
    int need_eval = w->policy_rank != SIZE_MAX || w->state >= 0 || w->counts;
    if (need_eval) {
        struct fl_eval eval = {0};
        fleet_error err;
        if (fl_evaluate(&eval, w->p, r, node, w->lookup, &err) < 0) {
            w->failed = 1;
            return 1;
        }
        fl_rollout_gate(w->f, &eval, node, 0);
        if (w->counts) {
            for (size_t i = 0; i < eval.count; i++) {
                w->counts[eval.decisions[i].rank][eval.states[i]]++;
                int outcome = config_outcome(r, &eval.decisions[i]);
                if (outcome >= 0)
                    w->config_counts[eval.decisions[i].rank][outcome]++;
            }
            for (size_t rank = 0; rank < pkgstore_policies_count(w->p->set); rank++) {
                const pkgstore_policy *policy = pkgstore_policies_at(w->p->set, rank);
                if (pkgstore_selector_matches(pkgstore_policy_selector(policy), r->labels,
                                              r->nlabels))
                    w->matching[rank]++;
            }
        }
        state = node_state(w, node, &eval);
        fl_eval_done(&eval);
        if (w->policy_rank != SIZE_MAX && state < 0)
            return 0; /* not governed by the policy */
        if (w->state >= 0 && state != w->state)
            return 0;
    }
    w->total++;
    if (!w->after || strcmp(node->id, w->after) > 0)
        heap_offer(&w->heap, node->id, state < 0 ? PKGSTORE_ROLLOUT_COUNT : (pkgstore_rollout_state)state);
    return 0;
}

/* The rollout state called name into *out; -1 with err naming field. */
static int state_parse(int *out, const char *field, const char *name, fleet_error *err)
{
    for (int s = 0; s < PKGSTORE_ROLLOUT_COUNT; s++) {
        if (strcmp(name, pkgstore_rollout_state_name((pkgstore_rollout_state)s)) == 0) {
            *out = s;
            return 0;
        }
    }
    return fl_fail(err, PKGSTORE_EINVALID,
                   "%s: '%.64s' is not a rollout state (Pending, Downloading, ..., Incompatible, "
                   "Unknown)",
                   field, name);
}

/* Parse the query's filters into w (p must be set). */
static int walk_init(struct walk *w, fleet *f, const struct fl_policies *p,
                     struct fl_lookup *lookup, const fleet_query *q, size_t heap_cap,
                     fleet_error *err)
{
    memset(w, 0, sizeof(*w));
    w->f = f;
    w->p = p;
    w->lookup = lookup;
    w->policy_rank = SIZE_MAX;
    w->state = -1;
    if (q && q->selector) {
        int error = pkgstore_selector_parse(&w->selector, q->selector);
        if (error < 0)
            return fl_fail_lib(err, error, NULL);
    }
    if (q && q->policy && !pkgstore_policies_find(p->set, q->policy, &w->policy_rank))
        return fl_fail(err, PKGSTORE_ENOTFOUND, "policy %.128s not found", q->policy);
    w->status = -1;
    int error;
    if (q && q->state && (error = state_parse(&w->state, "state", q->state, err)) < 0)
        return error;
    if (q && q->status && (error = state_parse(&w->status, "status", q->status, err)) < 0)
        return error;
    if (q) {
        w->package = q->package;
        w->version = q->version;
    }
    if (q && q->trust) {
        static const char *const words[] = {"behind", "current", "none"};
        for (int t = 0; t < 3 && w->trust == TRUST_ANY; t++) {
            if (strcmp(q->trust, words[t]) == 0)
                w->trust = TRUST_BEHIND + t;
        }
        if (w->trust == TRUST_ANY)
            return fl_fail(err, PKGSTORE_EINVALID,
                           "trust: '%.64s' is not behind, current or none", q->trust);
    }
    w->after = q ? q->after : NULL;
    if (heap_init(&w->heap, heap_cap) < 0)
        return fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
    return 0;
}

static void walk_free(struct walk *w)
{
    heap_free(&w->heap);
    pkgstore_selector_free(w->selector);
    free(w->counts);
    free(w->matching);
    free(w->config_counts);
}

/* ---------------------------------------------------------------- pages */

/* Common set-up of a view: the registry generation, the policies, a lookup. */
static int view_begin(struct fl_policies **p, struct fl_lookup *lookup, fleet *f,
                      fleet_error *err)
{
    int error;
    *p = NULL;
    memset(lookup, 0, sizeof(*lookup));
    if ((error = fl_targets_refresh(f)) < 0)
        return fl_fail_lib(err, error, "registry");
    if (!(*p = fl_policies_get(f, err)))
        return err->code;
    if (fl_lookup_init(lookup, f, pkgstore_policies_count((*p)->set)) < 0)
        return fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
    return 0;
}

static void view_end(struct fl_policies *p, struct fl_lookup *lookup)
{
    fl_lookup_done(lookup);
    fl_policies_release(p);
}

/* A growing text buffer. */
struct text {
    char *data;
    size_t len, cap;
    int failed;
};

static void text_add(struct text *t, const char *s, size_t len)
{
    if (t->failed)
        return;
    if (t->len + len + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + len + 1)
            cap *= 2;
        char *data = realloc(t->data, cap);
        if (!data) {
            t->failed = 1;
            return;
        }
        t->data = data;
        t->cap = cap;
    }
    memcpy(t->data + t->len, s, len);
    t->len += len;
    t->data[t->len] = '\0';
}

static size_t page_limit(const fleet_query *q)
{
    size_t limit = q && q->limit ? q->limit : FLEET_PAGE_DEFAULT;
    return limit > FLEET_PAGE_MAX ? FLEET_PAGE_MAX : limit;
}

static size_t page_bytes(const fleet_query *q)
{
    size_t max = q && q->max_bytes ? q->max_bytes : FLEET_PAGE_BYTES_MAX;
    return max > FLEET_PAGE_BYTES_MAX ? FLEET_PAGE_BYTES_MAX : max;
}

/* The end of a page at its longest: a 20-digit total and the longest id
 * (ids need no escaping). A page keeps room for it. */
#define PAGE_TAIL_MAX (sizeof("],\"total\":,\"next\":\"\"}") - 1 + 20 + FL_NODE_ID_MAX)

int fleet_node_page(char **json_out, size_t *len_out, fleet *f, const fleet_query *q,
                    fleet_error *err)
{
    struct fl_policies *p = NULL;
    struct fl_lookup lookup;
    struct walk w;
    struct text out = {0};
    size_t limit = page_limit(q), max_bytes = page_bytes(q), shown = 0, i = 0;
    const char *next = NULL;
    int error;

    *json_out = NULL;
    memset(&w, 0, sizeof(w));
    if ((error = view_begin(&p, &lookup, f, err)) < 0)
        goto out;
    /* one more than the page: whether a next page exists */
    if ((error = walk_init(&w, f, p, &lookup, q, limit + 1, err)) < 0)
        goto out;
    fl_nodes_foreach(f, walk_node, &w);
    if (w.failed || w.heap.failed) {
        error = fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
        goto out;
    }
    heap_sort(&w.heap);
    text_add(&out, "{\"nodes\":[", 10);
    for (; i < w.heap.count && shown < limit; i++) {
        const char *id = w.heap.ids[i];
        uint64_t hash = fl_node_hash(id);
        struct fl_shard *shard = fl_shard_of(f, hash);
        char *text = NULL;
        pthread_mutex_lock(&shard->lock);
        const struct fl_node *node = fl_node_find(shard, id, hash);
        if (node && node->profile) { /* else deleted meanwhile: skip it */
            json_t *obj = fl_node_to_json(node, p, &lookup, 0, q && q->with_history);
            text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
            json_decref(obj);
            if (!text)
                out.failed = 1;
        }
        pthread_mutex_unlock(&shard->lock);
        if (!text)
            continue;
        size_t len = strlen(text);
        if (shown > 0 && out.len + 1 + len + PAGE_TAIL_MAX > max_bytes) {
            free(text); /* the byte budget ends the page early */
            break;
        }
        if (shown > 0)
            text_add(&out, ",", 1);
        text_add(&out, text, len);
        free(text);
        shown++;
    }
    /* The next page starts after the last id looked at (shown, or deleted
     * since the walk), when more follow: the page stopped before the end
     * of the heap, or the heap was full (it keeps limit + 1 ids). */
    if (i > 0 && (i < w.heap.count || w.heap.count > limit))
        next = w.heap.ids[i - 1];
    char tail[400];
    json_t *next_json = next ? json_string(next) : json_null();
    char *next_text = next_json ? json_dumps(next_json, JSON_ENCODE_ANY) : NULL;
    json_decref(next_json);
    int n = snprintf(tail, sizeof(tail), "],\"total\":%llu,\"next\":%s}",
                     (unsigned long long)w.total, next_text ? next_text : "null");
    free(next_text);
    text_add(&out, tail, (size_t)n);
    if (out.failed) {
        error = fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
        goto out;
    }
    *json_out = out.data;
    *len_out = out.len;
    out.data = NULL;
out:
    free(out.data);
    walk_free(&w);
    view_end(p, &lookup);
    return error;
}

/* ---------------------------------------------------------------- rollout status */

static json_t *status_json(const struct walk *w, size_t rank)
{
    json_t *counts = json_object();
    uint64_t total = 0;
    int failed = !counts;
    for (int s = 0; !failed && s < PKGSTORE_ROLLOUT_COUNT; s++) {
        total += w->counts[rank][s];
        failed |= json_object_set_new(counts, pkgstore_rollout_state_name((pkgstore_rollout_state)s),
                                      json_integer((json_int_t)w->counts[rank][s])) < 0;
    }
    if (failed) {
        json_decref(counts);
        return NULL;
    }
    json_t *status = json_pack("{s:I, s:I, s:o}", "nodes_total", (json_int_t)total,
                               "nodes_matching", (json_int_t)w->matching[rank], "counts", counts);
    /* a policy with an addon configuration: how many nodes run it, and how
     * many rolled it back */
    const pkgstore_policy *policy = pkgstore_policies_at(w->p->set, rank);
    if (status && pkgstore_policy_config(policy) &&
        json_object_set_new(status, "config",
                            json_pack("{s:I, s:I}", "applied",
                                      (json_int_t)w->config_counts[rank][0], "refused",
                                      (json_int_t)w->config_counts[rank][1])) < 0) {
        json_decref(status);
        return NULL;
    }
    return status;
}

static int tally_init(struct walk *w, size_t nranks)
{
    w->counts = calloc(nranks ? nranks : 1, sizeof(*w->counts));
    w->matching = calloc(nranks ? nranks : 1, sizeof(*w->matching));
    w->config_counts = calloc(nranks ? nranks : 1, sizeof(*w->config_counts));
    return w->counts && w->matching && w->config_counts ? 0 : -1;
}

int fleet_policy_status(json_t **status_out, fleet *f, const char *name, const fleet_query *nodes,
                        fleet_error *err)
{
    struct fl_policies *p = NULL;
    struct fl_lookup lookup;
    struct walk w;
    fleet_query q = {0};
    size_t limit = nodes ? page_limit(nodes) : 0;
    json_t *status = NULL;
    int error;

    *status_out = NULL;
    memset(&w, 0, sizeof(w));
    if ((error = view_begin(&p, &lookup, f, err)) < 0)
        goto out;
    if (nodes)
        q = *nodes;
    q.policy = name;
    q.selector = NULL;
    if ((error = walk_init(&w, f, p, &lookup, &q, nodes ? limit + 1 : 0, err)) < 0)
        goto out;
    if (tally_init(&w, pkgstore_policies_count(p->set)) < 0) {
        error = fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
        goto out;
    }
    fl_nodes_foreach(f, walk_node, &w);
    if (w.failed || w.heap.failed || !(status = status_json(&w, w.policy_rank)) ||
        json_object_set_new(status, "rollout",
                            fl_rollout_json(f, pkgstore_policies_at(p->set, w.policy_rank))) < 0) {
        error = fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
        goto out;
    }
    if (nodes) {
        json_t *list = json_array();
        heap_sort(&w.heap);
        for (size_t i = 0; list && i < w.heap.count && i < limit; i++) {
            const char *state = pkgstore_rollout_state_name(w.heap.states[i]);
            if (json_array_append_new(list, json_pack("{s:s, s:s}", "id", w.heap.ids[i], "state",
                                                      state ? state : "Unknown")) < 0) {
                json_decref(list);
                list = NULL;
            }
        }
        if (!list || json_object_set_new(status, "nodes", list) < 0 ||
            json_object_set_new(status, "next", w.heap.count > limit
                                                    ? json_string(w.heap.ids[limit - 1])
                                                    : json_null()) < 0) {
            error = fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
            goto out;
        }
    }
    *status_out = status;
    status = NULL;
out:
    json_decref(status);
    walk_free(&w);
    view_end(p, &lookup);
    return error;
}

/* One pass over the fleet that tallies every policy. */
static int tally_all(struct walk *w, struct fl_policies **p, struct fl_lookup *lookup, fleet *f,
                     fleet_error *err)
{
    int error;
    memset(w, 0, sizeof(*w));
    if ((error = view_begin(p, lookup, f, err)) < 0)
        return error;
    if ((error = walk_init(w, f, *p, lookup, NULL, 0, err)) < 0)
        return error;
    if (tally_init(w, pkgstore_policies_count((*p)->set)) < 0)
        return fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
    fl_nodes_foreach(f, walk_node, w);
    if (w->failed)
        return fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
    return 0;
}

int fleet_policies_status(json_t **out, fleet *f, fleet_error *err)
{
    struct fl_policies *p = NULL;
    struct fl_lookup lookup;
    struct walk w;
    json_t *all = NULL;
    int error;

    *out = NULL;
    if ((error = tally_all(&w, &p, &lookup, f, err)) < 0)
        goto out;
    if (!(all = json_object())) {
        error = fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
        goto out;
    }
    for (size_t rank = 0; rank < pkgstore_policies_count(p->set); rank++) {
        json_t *status = status_json(&w, rank);
        if (status)
            json_object_set_new(status, "rollout",
                                fl_rollout_json(f, pkgstore_policies_at(p->set, rank)));
        if (!status || json_object_set_new(all, pkgstore_policy_name(pkgstore_policies_at(p->set, rank)),
                                           status) < 0) {
            error = fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
            goto out;
        }
    }
    *out = all;
    all = NULL;
out:
    json_decref(all);
    walk_free(&w);
    view_end(p, &lookup);
    return error;
}

int fleet_count_foreach(fleet *f, fleet_count_cb cb, void *ctx, fleet_error *err)
{
    struct fl_policies *p = NULL;
    struct fl_lookup lookup;
    struct walk w;
    int error;

    if ((error = tally_all(&w, &p, &lookup, f, err)) == 0) {
        for (size_t i = 0; i < pkgstore_policies_count(p->set); i++) {
            size_t rank;
            const pkgstore_policy *policy = pkgstore_policies_by_name(p->set, i, &rank);
            for (int s = 0; s < PKGSTORE_ROLLOUT_COUNT; s++)
                cb(ctx, pkgstore_policy_name(policy),
                   pkgstore_rollout_state_name((pkgstore_rollout_state)s), w.counts[rank][s]);
        }
    }
    walk_free(&w);
    view_end(p, &lookup);
    return error;
}

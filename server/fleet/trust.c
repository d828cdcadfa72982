/*
 * server/fleet/trust.c - what each node says it verified (the heartbeat's
 * optional "trust": its root version, the revocation generation it read
 * last, the newest "created" of the signed data it verified), and the
 * counts /metrics reads (docs/trust.md, "Freeze attacks").
 *
 * The values live in the node's interned profile; the fleet keeps, besides,
 * one count of nodes per distinct value, moved whenever a node's profile
 * changes, so that a scrape reads a few entries instead of walking the
 * fleet. Fleets hold few distinct values (one per root, generation and
 * signing time), and each node counts in exactly one.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fleet_impl.h"

/* ---------------------------------------------------------------- parsing */

int fl_trust_parse(struct fl_trust *out, json_t *root, int stored, fleet_error *err)
{
    json_t *trust = json_object_get(root, "trust"), *value;

    memset(out, 0, sizeof(*out));
    if (!trust || json_is_null(trust))
        return 0;
    if (!json_is_object(trust))
        return fl_fail(err, PKGSTORE_EINVALID, "trust: not an object");
    value = json_object_get(trust, "root_version");
    if (!json_is_integer(value) || json_integer_value(value) < 1)
        return fl_fail(err, PKGSTORE_EINVALID, "trust.root_version: %s",
                       value ? "not a positive integer" : "missing");
    out->root_version = (uint64_t)json_integer_value(value);
    value = json_object_get(trust, "revocations");
    if (!json_is_integer(value) || json_integer_value(value) < 0)
        return fl_fail(err, PKGSTORE_EINVALID, "trust.revocations: %s",
                       value ? "not a generation (an integer, 0 or more)" : "missing");
    out->revocations = (uint64_t)json_integer_value(value);
    value = json_object_get(trust, "newest_signed");
    if (!value || json_is_null(value))
        return 0;
    if (stored) {
        if (json_is_integer(value) && json_integer_value(value) > 0)
            out->newest_signed = (int64_t)json_integer_value(value);
        else
            return fl_fail(err, PKGSTORE_EINVALID, "trust.newest_signed: not a time");
    } else if (!json_is_string(value) ||
               pkgstore_manifest_time_parse(&out->newest_signed, json_string_value(value)) < 0 ||
               out->newest_signed <= 0) {
        out->newest_signed = 0;
        return fl_fail(err, PKGSTORE_EINVALID,
                       "trust.newest_signed: not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)");
    }
    return 0;
}

/* ---------------------------------------------------------------- the views */

void fleet_trust_server(fleet *f, uint64_t root_version, uint64_t revocations)
{
    atomic_store(&f->server_root_version, root_version);
    atomic_store(&f->server_revocations, revocations);
}

static int behind_root(fleet *f, const struct fl_trust *t)
{
    return t->root_version < atomic_load(&f->server_root_version);
}

static int behind_revocations(fleet *f, const struct fl_trust *t)
{
    return t->revocations < atomic_load(&f->server_revocations);
}

int fl_trust_behind(fleet *f, const struct fl_trust *t)
{
    return t->root_version && (behind_root(f, t) || behind_revocations(f, t));
}

json_t *fl_trust_json(fleet *f, const struct fl_trust *t, int stored)
{
    if (!t->root_version)
        return NULL;
    json_t *obj = json_pack("{s:I, s:I}", "root_version", (json_int_t)t->root_version,
                            "revocations", (json_int_t)t->revocations);
    if (!obj)
        return NULL;
    int failed = 0;
    if (stored) {
        if (t->newest_signed)
            failed |= json_object_set_new(obj, "newest_signed",
                                          json_integer((json_int_t)t->newest_signed));
    } else {
        char when[32];
        int64_t age = (int64_t)time(NULL) - t->newest_signed;
        fleet_time_format(when, t->newest_signed);
        failed |= json_object_set_new(obj, "newest_signed",
                                      t->newest_signed ? json_string(when) : json_null());
        /* signed on a clock ahead of this one: no negative ages */
        failed |= json_object_set_new(obj, "newest_signed_age_s",
                                      t->newest_signed ? json_integer(age > 0 ? age : 0)
                                                       : json_null());
        failed |= json_object_set_new(obj, "behind", json_boolean(fl_trust_behind(f, t)));
    }
    if (failed) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* ---------------------------------------------------------------- counts */

static int trust_cmp(const struct fl_trust *a, const struct fl_trust *b)
{
    if (a->root_version != b->root_version)
        return a->root_version < b->root_version ? -1 : 1;
    if (a->revocations != b->revocations)
        return a->revocations < b->revocations ? -1 : 1;
    if (a->newest_signed != b->newest_signed)
        return a->newest_signed < b->newest_signed ? -1 : 1;
    return 0;
}

/* The index of t in the sorted counts, or where it would go (*found 0). */
static size_t count_find(const fleet *f, const struct fl_trust *t, int *found)
{
    size_t lo = 0, hi = f->ntrust_counts;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = trust_cmp(&f->trust_counts[mid].trust, t);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void count_remove(fleet *f, const struct fl_trust *t)
{
    int found;
    size_t i = count_find(f, t, &found);
    if (!found) /* its insert failed for want of memory */
        return;
    if (--f->trust_counts[i].nodes > 0)
        return;
    memmove(&f->trust_counts[i], &f->trust_counts[i + 1],
            (f->ntrust_counts - i - 1) * sizeof(f->trust_counts[0]));
    f->ntrust_counts--;
}

static void count_add(fleet *f, const struct fl_trust *t)
{
    int found;
    size_t i = count_find(f, t, &found);
    if (found) {
        f->trust_counts[i].nodes++;
        return;
    }
    if (f->ntrust_counts == f->cap_trust_counts) {
        size_t cap = f->cap_trust_counts ? f->cap_trust_counts * 2 : 8;
        struct fl_trust_count *grown = realloc(f->trust_counts, cap * sizeof(*grown));
        if (!grown)
            return; /* the gauges miss this node; its views do not */
        f->trust_counts = grown;
        f->cap_trust_counts = cap;
    }
    memmove(&f->trust_counts[i + 1], &f->trust_counts[i],
            (f->ntrust_counts - i) * sizeof(f->trust_counts[0]));
    f->trust_counts[i].trust = *t;
    f->trust_counts[i].nodes = 1;
    f->ntrust_counts++;
}

void fl_trust_move(fleet *f, const struct fl_profile *old, const struct fl_profile *new_profile)
{
    const struct fl_trust *from = old && old->trust.root_version ? &old->trust : NULL;
    const struct fl_trust *to =
        new_profile && new_profile->trust.root_version ? &new_profile->trust : NULL;
    if ((!from && !to) || (from && to && trust_cmp(from, to) == 0))
        return;
    pthread_mutex_lock(&f->trust_lock);
    if (from)
        count_remove(f, from);
    if (to)
        count_add(f, to);
    pthread_mutex_unlock(&f->trust_lock);
}

void fleet_trust_stats_get(fleet *f, fleet_trust_stats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&f->trust_lock);
    for (size_t i = 0; i < f->ntrust_counts; i++) {
        const struct fl_trust_count *c = &f->trust_counts[i];
        out->nodes_reporting += c->nodes;
        if (behind_root(f, &c->trust))
            out->behind_root += c->nodes;
        if (behind_revocations(f, &c->trust))
            out->behind_revocations += c->nodes;
        if (c->trust.newest_signed &&
            (!out->oldest_newest_signed || c->trust.newest_signed < out->oldest_newest_signed))
            out->oldest_newest_signed = c->trust.newest_signed;
    }
    pthread_mutex_unlock(&f->trust_lock);
}

void fl_trust_free(fleet *f)
{
    free(f->trust_counts);
    f->trust_counts = NULL;
    f->ntrust_counts = f->cap_trust_counts = 0;
    pthread_mutex_destroy(&f->trust_lock);
}

/*
 * Policy sets: every stored policy, read in one transaction with the
 * generation counter, ranked for evaluation (priority descending, then name)
 * and indexed by name. A set is immutable, so threads share it freely; a
 * program keeps one and asks pkgstore_policies_current() whether to reload.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "policy.h"

struct pkgstore_policies {
    uint64_t generation;
    size_t count;
    pkgstore_policy **by_rank;
    size_t *by_name; /* ranks, sorted by name */
};

void pkgstore_policies_free(pkgstore_policies *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->count; i++)
        pkgstore_policy_free(set->by_rank[i]);
    free(set->by_rank);
    free(set->by_name);
    free(set);
}

struct load_txn {
    pkgstore_policies *set;
};

static int load_txn_fn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct load_txn *load = payload;
    pkgstore_policies *set = load->set;
    MDB_cursor *cursor = NULL;
    MDB_val key, val;
    size_t cap = 0;
    int rc, error;

    for (size_t i = 0; i < set->count; i++) /* the function may run again */
        pkgstore_policy_free(set->by_rank[i]);
    set->count = 0;
    if ((error = ps_policy_read_generation(&set->generation, txn, index)) < 0)
        return error;
    if ((rc = mdb_cursor_open(txn, ps_index_dbi(index, PS_DB_POLICIES), &cursor)) != 0)
        return ps_index_error(rc, "opening a cursor over the policies");
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        if (set->count == cap) {
            cap = cap ? cap * 2 : 16;
            pkgstore_policy **grown = realloc(set->by_rank, cap * sizeof(*grown));
            if (!grown) {
                error = ps_error_set(PKGSTORE_ENOMEM, "policies: out of memory");
                goto out;
            }
            set->by_rank = grown;
        }
        if (ps_policy_from_record(&set->by_rank[set->count], val.mv_data, val.mv_size) < 0) {
            ps_error_prefix("index: policy record '%.*s'",
                            (int)(key.mv_size > 128 ? 128 : key.mv_size),
                            (const char *)key.mv_data);
            error = PKGSTORE_ECORRUPT;
            goto out;
        }
        set->count++;
    }
    if (rc != MDB_NOTFOUND)
        error = ps_index_error(rc, "reading the policies");
out:
    mdb_cursor_close(cursor);
    return error;
}

static int cmp_rank(const void *a, const void *b)
{
    const pkgstore_policy *pa = *(const pkgstore_policy *const *)a;
    const pkgstore_policy *pb = *(const pkgstore_policy *const *)b;
    if (pa->priority != pb->priority)
        return pa->priority > pb->priority ? -1 : 1;
    return strcmp(pa->name, pb->name);
}

/* qsort has no payload: sort (rank, name) pairs instead. */
struct name_entry {
    const char *name;
    size_t rank;
};

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct name_entry *)a)->name, ((const struct name_entry *)b)->name);
}

int pkgstore_policies_load(pkgstore_policies **out, pkgstore_registry *reg)
{
    struct load_txn load;
    struct name_entry *names = NULL;
    int error;

    if (out)
        *out = NULL;
    if (!out || !reg)
        return ps_error_set(PKGSTORE_EINVALID, "policies_load: NULL argument");
    if (!(load.set = calloc(1, sizeof(*load.set))))
        return ps_error_set(PKGSTORE_ENOMEM, "policies: out of memory");
    if ((error = ps_index_read(ps_policy_index(reg), load_txn_fn, &load)) < 0)
        goto fail;
    pkgstore_policies *set = load.set;
    if (set->count > 0) {
        qsort(set->by_rank, set->count, sizeof(*set->by_rank), cmp_rank);
        names = malloc(set->count * sizeof(*names));
        set->by_name = malloc(set->count * sizeof(*set->by_name));
        if (!names || !set->by_name) {
            error = ps_error_set(PKGSTORE_ENOMEM, "policies: out of memory");
            goto fail;
        }
        for (size_t i = 0; i < set->count; i++) {
            names[i].name = set->by_rank[i]->name;
            names[i].rank = i;
        }
        qsort(names, set->count, sizeof(*names), cmp_name);
        for (size_t i = 0; i < set->count; i++)
            set->by_name[i] = names[i].rank;
        free(names);
    }
    *out = set;
    return 0;
fail:
    free(names);
    pkgstore_policies_free(load.set);
    return error;
}

struct generation_txn {
    uint64_t generation;
};

static int generation_txn_fn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct generation_txn *op = payload;
    return ps_policy_read_generation(&op->generation, txn, index);
}

int pkgstore_policies_current(const pkgstore_policies *set, pkgstore_registry *reg)
{
    struct generation_txn op = {0};
    int error;
    if (!set || !reg)
        return ps_error_set(PKGSTORE_EINVALID, "policies_current: NULL argument");
    if ((error = ps_index_read(ps_policy_index(reg), generation_txn_fn, &op)) < 0)
        return error;
    return op.generation == set->generation;
}

size_t pkgstore_policies_count(const pkgstore_policies *set)
{
    return set ? set->count : 0;
}

const pkgstore_policy *pkgstore_policies_at(const pkgstore_policies *set, size_t i)
{
    return set && i < set->count ? set->by_rank[i] : NULL;
}

const pkgstore_policy *pkgstore_policies_by_name(const pkgstore_policies *set, size_t i,
                                                 size_t *rank_out)
{
    if (!set || i >= set->count)
        return NULL;
    if (rank_out)
        *rank_out = set->by_name[i];
    return set->by_rank[set->by_name[i]];
}

const pkgstore_policy *pkgstore_policies_find(const pkgstore_policies *set, const char *name,
                                              size_t *rank_out)
{
    if (!set || !name)
        return NULL;
    size_t lo = 0, hi = set->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        size_t rank = set->by_name[mid];
        int c = strcmp(name, set->by_rank[rank]->name);
        if (c == 0) {
            if (rank_out)
                *rank_out = rank;
            return set->by_rank[rank];
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/*
 * registry_cache.c - the registry's read side that must be fast: a cache per
 * handle of the parsed versions and artifacts of each package name, and
 * what is served from it: resolve(), the version lists and the dependency
 * check.
 *
 * The cache is filled lazily, one name at a time, from PS_DB_MANIFESTS (the
 * canonical manifest bytes are in the record: no file reads), and dropped
 * whenever "registry.generation" in the index moves, which every change by
 * any handle of any process does. Platforms are interned per package and
 * every version carries a bitmask of its platforms, so resolve() ranks the
 * node against each distinct platform once and skips versions that have
 * nothing for it without looking at their artifacts.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "index.h"
#include "pkgstore/archive.h"
#include "pkgstore/platform.h"
#include "pkgstore/registry.h"
#include "pkgstore/version.h"
#include "registry.h"

/* ------------------------------------------------------------------ cache */

/* Platforms are interned per registry handle (ids never change while the
 * handle lives): resolve() ranks a node against each platform once per
 * thread and keeps the ranks, and a version whose platform bitmask has no
 * compatible bit is skipped without looking at its artifacts. */
#define MASK_OTHER 63 /* platform ids >= 63 share the last bit */

struct ps_registry_platform {
    pkgstore_platform parsed;
    char name[PKGSTORE_PLATFORM_MAX + 1];
};
typedef struct ps_registry_platform cached_platform;

typedef struct cached_artifact {
    uint16_t platform; /* index into the registry's platforms (the package's
                          while it is being loaded) */
    pkgstore_digest digest;
    uint64_t size;
    unsigned char format; /* a pkgstore_archive_format */
    char *entrypoint;     /* in the same allocation as the artifacts */
} cached_artifact;

typedef struct cached_version {
    /* hot: read for every version a resolve walks past (the mask, then the
     * numbers at the start of semver) */
    uint64_t platform_mask; /* bit min(id, MASK_OTHER) per artifact */
    pkgstore_semver semver;
    /* cold: read for the chosen version only */
    char version[PKGSTORE_VERSION_MAX + 1]; /* normalized */
    pkgstore_package_type type;
    pkgstore_digest manifest_digest;
    cached_artifact *artifacts; /* owned, in manifest order */
    size_t artifact_count;
} cached_version;

/* The hot fields of a lookup (next, hash, name) share the node's first
 * cache lines: a resolve over a thousand packages is bound by memory. */
struct ps_registry_package {
    struct ps_registry_package *next; /* hash chain */
    uint64_t hash;                    /* hash_name(name) */
    cached_version *versions;         /* highest precedence first */
    size_t version_count;
    cached_platform *platforms;       /* while loading: the distinct platforms of
                                         its versions; NULL once inserted */
    size_t platform_count;
    size_t platform_capacity;
    char name[];                      /* NUL-terminated, allocated with the node */
};
typedef struct ps_registry_package cached_package;


static uint64_t hash_name(const char *name)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *name; name++) {
        h ^= (unsigned char)*name;
        h *= 1099511628211ULL;
    }
    return h;
}

static void package_free(cached_package *pkg)
{
    if (!pkg)
        return;
    for (size_t i = 0; i < pkg->version_count; i++) {
        cached_version *v = &pkg->versions[i];
        free(v->artifacts);
    }
    free(pkg->versions);
    free(pkg->platforms);
    free(pkg);
}

/* Drop every cached package. Caller holds the write lock (or is the last
 * user, in pkgstore_registry_free()). */
void ps_registry_cache_clear(pkgstore_registry *reg)
{
    for (size_t b = 0; b < reg->bucket_count; b++) {
        cached_package *pkg = reg->buckets[b];
        while (pkg) {
            cached_package *next = pkg->next;
            package_free(pkg);
            pkg = next;
        }
        reg->buckets[b] = NULL;
    }
    reg->package_count = 0;
}

void ps_registry_cache_free(pkgstore_registry *reg)
{
    ps_registry_cache_clear(reg);
    free(reg->platforms);
    free(reg->buckets);
    reg->platforms = NULL;
    reg->buckets = NULL;
}

static cached_package *cache_find(const pkgstore_registry *reg, const char *name)
{
    uint64_t hash = hash_name(name);
    cached_package *pkg = reg->buckets[hash & (reg->bucket_count - 1)];
    for (; pkg; pkg = pkg->next)
        if (pkg->hash == hash && strcmp(pkg->name, name) == 0)
            return pkg;
    return NULL;
}

/* The registry-wide id of platform (write lock held), adding it if new;
 * -1 when out of memory or ids. */
static long intern_global(pkgstore_registry *reg, const cached_platform *platform)
{
    for (size_t i = 0; i < reg->platform_count; i++)
        if (strcmp(reg->platforms[i].name, platform->name) == 0)
            return (long)i;
    if (reg->platform_count >= UINT16_MAX)
        return -1;
    if (reg->platform_count == reg->platform_capacity) {
        size_t capacity = reg->platform_capacity ? reg->platform_capacity * 2 : 16;
        cached_platform *grown = realloc(reg->platforms, capacity * sizeof(*grown));
        if (!grown)
            return -1;
        reg->platforms = grown;
        reg->platform_capacity = capacity;
    }
    reg->platforms[reg->platform_count] = *platform;
    return (long)reg->platform_count++;
}

/* Turn pkg's platform ids (into its own table, from loading) into the
 * registry's (write lock held) and drop its table. */
static int remap_platforms(pkgstore_registry *reg, cached_package *pkg)
{
    uint16_t map_small[64], *map = map_small;
    if (pkg->platform_count > 64 && !(map = malloc(pkg->platform_count * sizeof(*map))))
        return ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
    for (size_t i = 0; i < pkg->platform_count; i++) {
        long id = intern_global(reg, &pkg->platforms[i]);
        if (id < 0) {
            if (map != map_small)
                free(map);
            return ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory for platforms");
        }
        map[i] = (uint16_t)id;
    }
    for (size_t v = 0; v < pkg->version_count; v++) {
        cached_version *version = &pkg->versions[v];
        version->platform_mask = 0;
        for (size_t a = 0; a < version->artifact_count; a++) {
            uint16_t id = map[version->artifacts[a].platform];
            version->artifacts[a].platform = id;
            version->platform_mask |= 1ULL << (id < MASK_OTHER ? id : MASK_OTHER);
        }
    }
    if (map != map_small)
        free(map);
    free(pkg->platforms);
    pkg->platforms = NULL;
    pkg->platform_count = pkg->platform_capacity = 0;
    return 0;
}

/* Insert pkg (the caller holds the write lock). Grows the table when full;
 * a failed growth just leaves longer chains. */
static void cache_insert(pkgstore_registry *reg, cached_package *pkg)
{
    if (reg->package_count >= reg->bucket_count) {
        size_t count = reg->bucket_count * 2;
        cached_package **buckets = calloc(count, sizeof(*buckets));
        if (buckets) {
            for (size_t b = 0; b < reg->bucket_count; b++) {
                cached_package *p = reg->buckets[b];
                while (p) {
                    cached_package *next = p->next;
                    size_t at = p->hash & (count - 1);
                    p->next = buckets[at];
                    buckets[at] = p;
                    p = next;
                }
            }
            free(reg->buckets);
            reg->buckets = buckets;
            reg->bucket_count = count;
        }
    }
    size_t at = pkg->hash & (reg->bucket_count - 1);
    pkg->next = reg->buckets[at];
    reg->buckets[at] = pkg;
    reg->package_count++;
}

/* ------------------------------------------------------------------ loading a package */

static int version_desc(const void *a, const void *b)
{
    const cached_version *va = a, *vb = b;
    int cmp = pkgstore_version_compare(&vb->semver, &va->semver);
    return cmp ? cmp : strcmp(vb->version, va->version);
}

/* The id of platform in pkg's table, adding it if new; -1 on error. */
static long intern_platform(cached_package *pkg, const char *platform)
{
    for (size_t i = 0; i < pkg->platform_count; i++)
        if (strcmp(pkg->platforms[i].name, platform) == 0)
            return (long)i;
    if (pkg->platform_count >= UINT16_MAX)
        return -1;
    if (pkg->platform_count == pkg->platform_capacity) {
        size_t capacity = pkg->platform_capacity ? pkg->platform_capacity * 2 : 8;
        cached_platform *grown = realloc(pkg->platforms, capacity * sizeof(*grown));
        if (!grown)
            return -1;
        pkg->platforms = grown;
        pkg->platform_capacity = capacity;
    }
    cached_platform *c = &pkg->platforms[pkg->platform_count];
    if (pkgstore_platform_parse(&c->parsed, platform) < 0 || strlen(platform) > PKGSTORE_PLATFORM_MAX)
        return -1;
    strcpy(c->name, platform);
    return (long)pkg->platform_count++;
}

static int cached_version_fill(cached_version *v, cached_package *pkg, const pkgstore_manifest *m,
                               const pkgstore_digest *digest)
{
    memset(v, 0, sizeof(*v));
    if (pkgstore_version_parse(&v->semver, pkgstore_manifest_version(m)) < 0)
        return PKGSTORE_ECORRUPT;
    strcpy(v->version, pkgstore_manifest_version(m)); /* fits: the manifest checked it */
    v->type = pkgstore_manifest_type(m);
    v->manifest_digest = *digest;
    /* the artifacts and their entrypoints in one block: one miss, not two */
    size_t count = pkgstore_manifest_artifact_count(m), strings = 0;
    for (size_t i = 0; i < count; i++)
        strings += strlen(pkgstore_manifest_artifact(m, i)->entrypoint) + 1;
    if (!(v->artifacts = calloc(1, (count ? count : 1) * sizeof(*v->artifacts) + strings)))
        return ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
    char *next_string = (char *)(v->artifacts + count);
    for (size_t i = 0; i < count; i++) {
        const pkgstore_artifact *a = pkgstore_manifest_artifact(m, i);
        cached_artifact *c = &v->artifacts[i];
        long id = intern_platform(pkg, a->platform);
        if (id < 0)
            return PKGSTORE_ECORRUPT;
        c->platform = (uint16_t)id;
        v->platform_mask |= 1ULL << (id < MASK_OTHER ? id : MASK_OTHER);
        c->digest = a->digest;
        c->size = a->size;
        pkgstore_archive_format format;
        if (pkgstore_archive_format_parse(&format, a->format) < 0)
            return PKGSTORE_ECORRUPT; /* the manifest parser checked it */
        c->format = (unsigned char)format;
        size_t len = strlen(a->entrypoint) + 1;
        c->entrypoint = memcpy(next_string, a->entrypoint, len);
        next_string += len;
        v->artifact_count = i + 1;
    }
    return 0;
}

typedef struct load_op {
    pkgstore_registry *reg;
    const char *name;
    cached_package *pkg; /* out */
    uint64_t generation; /* out */
} load_op;

static int load_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    load_op *op = payload;
    MDB_cursor *cursor = NULL;
    char prefix[PKGSTORE_NAME_MAX + 2];
    size_t prefix_len = strlen(op->name) + 1;
    cached_package *pkg = NULL;
    size_t capacity = 0;
    int error = 0, rc;

    package_free(op->pkg);
    op->pkg = NULL;
    if ((error = ps_registry_read_generation(&op->generation, txn, index)) < 0)
        return error;
    memcpy(prefix, op->name, prefix_len);
    if (!(pkg = calloc(1, sizeof(*pkg) + prefix_len))) {
        error = ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
        goto out;
    }
    memcpy(pkg->name, op->name, prefix_len); /* with its NUL */
    pkg->hash = hash_name(op->name);
    if ((rc = mdb_cursor_open(txn, ps_index_dbi(index, PS_DB_MANIFESTS), &cursor)) != 0) {
        error = ps_index_error(rc, "open manifests cursor");
        goto out;
    }
    MDB_val key = {prefix_len, prefix}, val;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        if (key.mv_size <= prefix_len || memcmp(key.mv_data, prefix, prefix_len) != 0)
            break;
        char version[PKGSTORE_VERSION_MAX + 1];
        size_t version_len = key.mv_size - prefix_len;
        if (version_len > PKGSTORE_VERSION_MAX) {
            error = ps_error_set(PKGSTORE_ECORRUPT, "index: over-long manifest key for %s",
                                 op->name);
            goto out;
        }
        memcpy(version, (char *)key.mv_data + prefix_len, version_len);
        version[version_len] = '\0';

        pkgstore_manifest *m = NULL;
        pkgstore_digest digest;
        if ((error = ps_registry_record_manifest(&m, &digest, op->reg, op->name, version, val.mv_data,
                                     val.mv_size, 0)) < 0)
            goto out;
        if (pkg->version_count == capacity) {
            size_t grown_capacity = capacity ? capacity * 2 : 8;
            cached_version *grown = realloc(pkg->versions, grown_capacity * sizeof(*grown));
            if (!grown) {
                pkgstore_manifest_free(m);
                error = ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
                goto out;
            }
            pkg->versions = grown;
            capacity = grown_capacity;
        }
        error = cached_version_fill(&pkg->versions[pkg->version_count++], pkg, m, &digest);
        pkgstore_manifest_free(m);
        if (error == PKGSTORE_ECORRUPT)
            error = ps_error_set(error, "index: manifest of %s %s does not parse", op->name,
                                 version);
        if (error < 0)
            goto out;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        error = ps_index_error(rc, "read manifests of %s", op->name);
        goto out;
    }
    if (pkg->version_count > 1)
        qsort(pkg->versions, pkg->version_count, sizeof(*pkg->versions), version_desc);
    op->pkg = pkg;
    pkg = NULL; /* now owned by op */
out:
    if (cursor)
        mdb_cursor_close(cursor);
    package_free(pkg);
    return error;
}

typedef struct generation_op {
    uint64_t generation;
} generation_op;

static int generation_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    generation_op *op = payload;
    return ps_registry_read_generation(&op->generation, txn, index);
}

int pkgstore_registry_generation(uint64_t *out, pkgstore_registry *reg)
{
    generation_op gen = {0};
    int error;
    if (out)
        *out = 0;
    if (!out || !reg)
        return ps_error_set(PKGSTORE_EINVALID, "registry_generation: NULL argument");
    if ((error = ps_index_read(reg->index, generation_txn, &gen)) < 0)
        return error;
    *out = gen.generation;
    return 0;
}

/*
 * Find name in the cache, loading it when missing, after dropping the cache
 * if the generation moved. On success the lock is held (read or write, as
 * *write_locked says) and *out points into the cache until the unlock; a
 * package with no versions is a valid "no such package" answer. On failure
 * the lock is released.
 */
static int cache_acquire(cached_package **out, int *write_locked, pkgstore_registry *reg,
                         const char *name)
{
    generation_op gen;
    load_op load = {reg, name, NULL, 0};
    int error;

    *out = NULL;
    *write_locked = 0;

    /* Fast: no commit at all since the generation was last confirmed. */
    uint64_t txnid = ps_index_last_txnid(reg->index);
    pthread_rwlock_rdlock(&reg->lock);
    if (reg->generation_known && txnid != 0 &&
        __atomic_load_n(&reg->checked_txnid, __ATOMIC_ACQUIRE) == txnid) {
        cached_package *pkg = cache_find(reg, name);
        if (pkg) {
            *out = pkg;
            return 0;
        }
    }
    pthread_rwlock_unlock(&reg->lock);

    /* Something was committed (maybe not by the registry): read the
     * generation. txnid was read first, so confirming it is conservative. */
    if ((error = ps_index_read(reg->index, generation_txn, &gen)) < 0)
        return error;
    pthread_rwlock_rdlock(&reg->lock);
    if (reg->generation_known && reg->generation == gen.generation) {
        __atomic_store_n(&reg->checked_txnid, txnid, __ATOMIC_RELEASE);
        cached_package *pkg = cache_find(reg, name);
        if (pkg) {
            *out = pkg;
            return 0;
        }
    }
    pthread_rwlock_unlock(&reg->lock);

    /* Load outside the lock (it may parse many manifests), then insert. */
    if ((error = ps_index_read(reg->index, load_txn, &load)) < 0)
        return error;

    pthread_rwlock_wrlock(&reg->lock);
    if (!reg->generation_known || reg->generation != load.generation) {
        ps_registry_cache_clear(reg);
        reg->generation = load.generation;
        reg->generation_known = 1;
        /* only what this load saw is confirmed: the next call reads again */
        __atomic_store_n(&reg->checked_txnid, 0, __ATOMIC_RELEASE);
    }
    cached_package *pkg = cache_find(reg, name);
    if (pkg) {
        package_free(load.pkg); /* another thread was first */
    } else {
        if ((error = remap_platforms(reg, load.pkg)) < 0) {
            pthread_rwlock_unlock(&reg->lock);
            package_free(load.pkg);
            return error;
        }
        pkg = load.pkg;
        cache_insert(reg, pkg);
    }
    *out = pkg;
    *write_locked = 1;
    return 0;
}

/* ------------------------------------------------------------------ dependency check */

/* Append to a growing detail buffer. */
static void append(char *buf, size_t size, size_t *used, const char *fmt, ...)
    PS_PRINTF(4, 5);
static void append(char *buf, size_t size, size_t *used, const char *fmt, ...)
{
    va_list ap;
    if (*used >= size)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, size - *used, fmt, ap);
    va_end(ap);
    if (n > 0)
        *used = *used + (size_t)n < size ? *used + (size_t)n : size;
}

int pkgstore_registry_check_dependencies(pkgstore_registry *reg,
                                         const pkgstore_manifest *manifest)
{
    char detail[2048];
    size_t used = 0, missing = 0;
    int error = 0;

    if (!reg || !manifest)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL argument");
    detail[0] = '\0';
    for (size_t i = 0; i < pkgstore_manifest_dependency_count(manifest); i++) {
        const pkgstore_dependency *dep = pkgstore_manifest_dependency(manifest, i);
        pkgstore_version_constraint *constraint = NULL;
        const char *reason = NULL;
        if ((error = pkgstore_version_constraint_parse(&constraint, dep->constraint)) < 0) {
            ps_error_prefix("dependencies[%zu].version", i);
            return error;
        }
        cached_package *pkg;
        int write_locked;
        if ((error = cache_acquire(&pkg, &write_locked, reg, dep->name)) < 0) {
            pkgstore_version_constraint_free(constraint);
            return error;
        }
        if (pkg->version_count == 0) {
            reason = "no such package";
        } else {
            int primary = 0, matched = 0;
            for (size_t v = 0; v < pkg->version_count && !matched; v++) {
                if (pkg->versions[v].type != PKGSTORE_TYPE_PRIMARY)
                    continue;
                primary = 1;
                matched = pkgstore_version_constraint_match(constraint, &pkg->versions[v].semver);
            }
            if (!primary)
                reason = "not a primary package";
            else if (!matched)
                reason = "no matching version";
        }
        pthread_rwlock_unlock(&reg->lock);
        pkgstore_version_constraint_free(constraint);
        if (reason) {
            append(detail, sizeof(detail), &used, "%s%s %s (%s)", missing ? "; " : "",
                   dep->name, dep->constraint, reason);
            missing++;
        }
    }
    if (missing)
        return ps_error_set(PKGSTORE_EDEPENDENCY, "%s %s: unmet dependenc%s: %s",
                            pkgstore_manifest_name(manifest), pkgstore_manifest_version(manifest),
                            missing == 1 ? "y" : "ies", detail);
    return 0;
}

int pkgstore_registry_versions(char ***versions_out, size_t *count_out, pkgstore_registry *reg,
                               const char *name)
{
    cached_package *pkg;
    int write_locked, error;
    char **versions = NULL;

    if (versions_out)
        *versions_out = NULL;
    if (count_out)
        *count_out = 0;
    if (!versions_out || !count_out || !reg)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL argument");
    if ((error = pkgstore_manifest_name_validate(name)) < 0)
        return error;
    if ((error = cache_acquire(&pkg, &write_locked, reg, name)) < 0)
        return error;
    size_t count = pkg->version_count;
    if (count == 0) {
        error = ps_error_set(PKGSTORE_ENOTFOUND, "%s: no such package", name);
        goto out;
    }
    if (!(versions = calloc(count, sizeof(*versions)))) {
        error = ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        /* the cache is highest first; the list is lowest first */
        if (!(versions[i] = strdup(pkg->versions[count - 1 - i].version))) {
            pkgstore_registry_strings_free(versions, i);
            versions = NULL;
            error = ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
            goto out;
        }
    }
    *versions_out = versions;
    *count_out = count;
out:
    pthread_rwlock_unlock(&reg->lock);
    return error;
}

/* ------------------------------------------------------------------ resolve */

/* Per-thread memo of recently parsed constraints and node platforms: a
 * fleet asks the same few questions over and over, and parsing them is a
 * large part of a resolve. A thread's memo is freed by the key's destructor
 * when the thread exits. The key lives only while a registry handle does:
 * the last pkgstore_registry_free() deletes it and frees every memo left,
 * so that nothing (no destructor pointing into an unloaded library, no
 * memory) outlives the library's last use, as after a dlclose(). */
#define MEMO_CONSTRAINTS 8
#define MEMO_PLATFORMS 4
#define MEMO_TEXT_MAX 160
#define MEMO_RANKS 64 /* registries with more platforms rank per call */

typedef struct memo {
    struct memo *next; /* every live memo, to free them with the key */
    struct {
        char text[MEMO_TEXT_MAX];
        pkgstore_version_constraint *constraint;
    } constraints[MEMO_CONSTRAINTS];
    unsigned next_constraint;
    /* a node platform, parsed, and its rank against the first `ranked`
     * platforms of registry handle `registry` (ids only ever get added) */
    struct {
        char text[MEMO_TEXT_MAX]; /* "" for the host */
        pkgstore_platform platform;
        uint64_t registry;
        size_t ranked;
        uint64_t compatible;
        int ranks[MEMO_RANKS];
    } platforms[MEMO_PLATFORMS];
    unsigned next_platform;
} memo;

static pthread_mutex_t memo_mutex = PTHREAD_MUTEX_INITIALIZER;
static unsigned long memo_users; /* open registry handles */
static int memo_key_ok;
static pthread_key_t memo_key;
static memo *memo_list;

static void memo_release(memo *cache)
{
    for (size_t i = 0; i < MEMO_CONSTRAINTS; i++)
        pkgstore_version_constraint_free(cache->constraints[i].constraint);
    free(cache);
}

/* The key's destructor, at thread exit. The memo may be gone already (the
 * last handle was freed meanwhile): only a memo still listed is freed. */
static void memo_thread_exit(void *ptr)
{
    pthread_mutex_lock(&memo_mutex);
    for (memo **link = &memo_list; *link; link = &(*link)->next) {
        if (*link == ptr) {
            *link = ((memo *)ptr)->next;
            memo_release(ptr);
            break;
        }
    }
    pthread_mutex_unlock(&memo_mutex);
}

void ps_registry_memo_acquire(void)
{
    pthread_mutex_lock(&memo_mutex);
    if (memo_users++ == 0)
        __atomic_store_n(&memo_key_ok, pthread_key_create(&memo_key, memo_thread_exit) == 0,
                         __ATOMIC_RELEASE);
    pthread_mutex_unlock(&memo_mutex);
}

void ps_registry_memo_release(void)
{
    pthread_mutex_lock(&memo_mutex);
    if (memo_users > 0 && --memo_users == 0) {
        if (memo_key_ok)
            pthread_key_delete(memo_key);
        __atomic_store_n(&memo_key_ok, 0, __ATOMIC_RELEASE);
        while (memo_list) {
            memo *next = memo_list->next;
            memo_release(memo_list);
            memo_list = next;
        }
    }
    pthread_mutex_unlock(&memo_mutex);
}

/* This thread's memo, made on first use; NULL without one (no key, no
 * memory): callers then parse every time. A registry handle is open. */
static memo *memo_get(void)
{
    memo *cache;
    if (!__atomic_load_n(&memo_key_ok, __ATOMIC_ACQUIRE))
        return NULL;
    if ((cache = pthread_getspecific(memo_key)))
        return cache;
    if (!(cache = calloc(1, sizeof(*cache))))
        return NULL;
    pthread_mutex_lock(&memo_mutex);
    if (!memo_key_ok || pthread_setspecific(memo_key, cache) != 0) {
        pthread_mutex_unlock(&memo_mutex);
        free(cache);
        return NULL;
    }
    cache->next = memo_list;
    memo_list = cache;
    pthread_mutex_unlock(&memo_mutex);
    return cache;
}

/* A parsed constraint for text into *out. *owned says whether the caller
 * must free it (it is not in the memo). */
static int constraint_get(const pkgstore_version_constraint **out, int *owned, const char *text)
{
    pkgstore_version_constraint *parsed = NULL;
    memo *cache = memo_get();
    size_t len = strlen(text);
    int error;

    *out = NULL;
    *owned = 0;
    if (cache && len < MEMO_TEXT_MAX) {
        for (size_t i = 0; i < MEMO_CONSTRAINTS; i++) {
            if (cache->constraints[i].constraint &&
                memcmp(cache->constraints[i].text, text, len + 1) == 0) {
                *out = cache->constraints[i].constraint;
                return 0;
            }
        }
    }
    if ((error = pkgstore_version_constraint_parse(&parsed, text)) < 0)
        return error;
    if (cache && len < MEMO_TEXT_MAX) {
        unsigned slot = cache->next_constraint++ % MEMO_CONSTRAINTS;
        pkgstore_version_constraint_free(cache->constraints[slot].constraint);
        memcpy(cache->constraints[slot].text, text, len + 1);
        cache->constraints[slot].constraint = parsed;
    } else {
        *owned = 1;
    }
    *out = parsed;
    return 0;
}

/* The node platform for text (NULL: the host's), parsed, as a memo entry
 * (or in *scratch when there is no memo). */
typedef struct node_entry {
    pkgstore_platform platform;
    uint64_t registry;
    size_t ranked;
    uint64_t compatible;
    int *ranks; /* MEMO_RANKS of them */
} node_entry;

static int node_get(node_entry *out, int *ranks_scratch, const char *text)
{
    memo *cache = memo_get();
    const char *key = text ? text : "";
    size_t len = strlen(key);
    int error;
    if (cache && len < MEMO_TEXT_MAX) {
        for (size_t i = 0; i < MEMO_PLATFORMS; i++) {
            if (cache->platforms[i].platform.os[0] &&
                memcmp(cache->platforms[i].text, key, len + 1) == 0) {
                out->platform = cache->platforms[i].platform;
                out->registry = cache->platforms[i].registry;
                out->ranked = cache->platforms[i].ranked;
                out->compatible = cache->platforms[i].compatible;
                out->ranks = cache->platforms[i].ranks;
                return 0;
            }
        }
    }
    memset(out, 0, sizeof(*out));
    error = text ? pkgstore_platform_parse(&out->platform, text)
                 : pkgstore_platform_host(&out->platform);
    if (error < 0)
        return error;
    out->ranks = ranks_scratch;
    if (cache && len < MEMO_TEXT_MAX) {
        unsigned slot = cache->next_platform++ % MEMO_PLATFORMS;
        memcpy(cache->platforms[slot].text, key, len + 1);
        cache->platforms[slot].platform = out->platform;
        cache->platforms[slot].registry = 0;
        cache->platforms[slot].ranked = 0;
        cache->platforms[slot].compatible = 0;
        out->ranks = cache->platforms[slot].ranks;
    }
    return 0;
}

/* Bring node's ranks up to date with reg's platforms (read lock held):
 * only platforms interned since the last call are ranked. Returns the ranks
 * (node->ranks, or a malloc'd array in *owned past MEMO_RANKS). */
static const int *node_ranks(node_entry *node, int **owned, const pkgstore_registry *reg)
{
    *owned = NULL;
    if (node->registry != reg->id) {
        node->registry = reg->id;
        node->ranked = 0;
        node->compatible = 0;
    }
    size_t count = reg->platform_count;
    int *ranks = node->ranks;
    if (count > MEMO_RANKS) {
        if (!(ranks = malloc(count * sizeof(*ranks))))
            return NULL;
        *owned = ranks;
        memcpy(ranks, node->ranks, node->ranked * sizeof(*ranks));
    }
    for (size_t i = node->ranked; i < count; i++) {
        ranks[i] = pkgstore_platform_rank(&node->platform, &reg->platforms[i].parsed);
        if (ranks[i] != PKGSTORE_PLATFORM_RANK_NONE)
            node->compatible |= 1ULL << (i < MASK_OTHER ? i : MASK_OTHER);
    }
    if (count <= MEMO_RANKS)
        node->ranked = count;
    return ranks;
}

/* Write back what node_ranks() learnt into the memo entry it came from. */
static void node_put(const node_entry *node)
{
    memo *cache = memo_get();
    if (!cache)
        return;
    for (size_t i = 0; i < MEMO_PLATFORMS; i++) {
        if (cache->platforms[i].ranks == node->ranks) {
            cache->platforms[i].registry = node->registry;
            cache->platforms[i].ranked = node->ranked;
            cache->platforms[i].compatible = node->compatible;
        }
    }
}

/* The best artifact of v given the node's rank of each package platform:
 * index into v->artifacts, or -1. */
static long best_artifact(const cached_version *v, const int *ranks)
{
    long best = -1;
    int best_rank = 0;
    for (size_t i = 0; i < v->artifact_count; i++) {
        int rank = ranks[v->artifacts[i].platform];
        if (rank != PKGSTORE_PLATFORM_RANK_NONE && (best < 0 || rank < best_rank)) {
            best = (long)i;
            best_rank = rank;
            if (rank == 0)
                break;
        }
    }
    return best;
}

int pkgstore_registry_resolve(pkgstore_resolution *out, pkgstore_registry *reg, const char *name,
                              const char *constraint, const char *node_platform)
{
    const pkgstore_version_constraint *parsed = NULL;
    cached_package *pkg;
    node_entry node;
    int ranks_scratch[MEMO_RANKS], *ranks_owned = NULL;
    int write_locked, owned = 0, error;

    if (!out || !reg) {
        if (out)
            memset(out, 0, sizeof(*out));
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL argument");
    }
    int any_version = !constraint || !constraint[0];
    if ((error = pkgstore_manifest_name_validate(name)) < 0)
        goto out_unlocked;
    /* (the platform and version modules' details name the field already) */
    if ((error = node_get(&node, ranks_scratch, node_platform)) < 0)
        goto out_unlocked;
    if (!any_version && (error = constraint_get(&parsed, &owned, constraint)) < 0)
        goto out_unlocked;
    if ((error = cache_acquire(&pkg, &write_locked, reg, name)) < 0)
        goto out_unlocked;

    if (pkg->version_count == 0) {
        error = ps_error_set(PKGSTORE_ENOTFOUND, "%s: no such package", name);
        goto out;
    }
    const int *ranks = node_ranks(&node, &ranks_owned, reg);
    if (!ranks) {
        error = ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
        goto out;
    }
    node_put(&node);
    uint64_t compatible = node.compatible;
    const cached_version *chosen = NULL;
    long artifact = -1;
    /* Without a constraint: releases first, pre-releases only as a last
     * resort. With one, the constraint decides (npm pre-release rule).
     * The platform mask is checked first: it is cheaper than matching. */
    for (int pass = any_version ? 0 : 1; pass < 2 && !chosen && compatible; pass++) {
        for (size_t i = 0; i < pkg->version_count; i++) {
            const cached_version *v = &pkg->versions[i];
            if (!(v->platform_mask & compatible))
                continue;
            if (any_version) {
                if ((pass == 0) == pkgstore_version_is_prerelease(&v->semver))
                    continue;
            } else if (!pkgstore_version_constraint_match(parsed, &v->semver)) {
                continue;
            }
            if ((artifact = best_artifact(v, ranks)) >= 0) {
                chosen = v;
                break;
            }
        }
    }
    if (!chosen) {
        /* say why: no version matches at all, or none for this platform */
        int matched_version = any_version;
        for (size_t i = 0; i < pkg->version_count && !matched_version; i++)
            matched_version = pkgstore_version_constraint_match(parsed, &pkg->versions[i].semver);
        char shown[PKGSTORE_PLATFORM_STR_SIZE];
        pkgstore_platform_format(shown, &node.platform);
        if (!matched_version)
            error = ps_error_set(PKGSTORE_ENOTFOUND, "%s: no version matches %s", name,
                                 any_version ? "*" : constraint);
        else
            error = ps_error_set(PKGSTORE_ENOTFOUND,
                                 "%s: no version matching %s has an artifact for %s", name,
                                 any_version ? "*" : constraint, shown);
        goto out;
    }
    const cached_artifact *a = &chosen->artifacts[artifact];
    /* (no memset of the 1.5 KB result on the hot path: every field is set;
     * padding and the bytes after each string are left as they were) */
    strcpy(out->name, pkg->name);
    strcpy(out->version, chosen->version);
    out->type = chosen->type;
    out->manifest_digest = chosen->manifest_digest;
    strcpy(out->artifact.platform, reg->platforms[a->platform].name);
    out->artifact.digest = a->digest;
    out->artifact.size = a->size;
    strcpy(out->artifact.format, pkgstore_archive_format_name((pkgstore_archive_format)a->format));
    strcpy(out->artifact.entrypoint, a->entrypoint);
out:
    pthread_rwlock_unlock(&reg->lock);
out_unlocked:
    free(ranks_owned);
    if (owned)
        pkgstore_version_constraint_free((pkgstore_version_constraint *)parsed);
    if (error < 0)
        memset(out, 0, sizeof(*out));
    return error;
}

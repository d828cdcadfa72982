/*
 * Private: what registry.c (handles, reads), registry_write.c (changes) and
 * registry_cache.c (the cache behind resolve) share.
 */
#ifndef PS_REGISTRY_H
#define PS_REGISTRY_H

#include <pthread.h>

#include "index.h"
#include "pkgstore/registry.h"

/* PS_DB_META key of the counter bumped by every manifest change. */
#define GENERATION_KEY "registry.generation"
/* A manifest key "name\0version", plus a NUL for package-record prefixes. */
#define PS_REGISTRY_KEY_MAX (PKGSTORE_NAME_MAX + 1 + PKGSTORE_VERSION_MAX + 1)

struct pkgstore_registry {
    uint64_t id; /* unique per handle in this process (per-thread memos key on it) */
    pkgstore_store *store;
    ps_index *index;
    pthread_rwlock_t lock; /* guards everything below */
    uint64_t generation;   /* of the cache contents */
    int generation_known;
    uint64_t checked_txnid; /* the index's last txn id when generation was last
                               confirmed; atomic (read under the read lock) */
    struct ps_registry_package **buckets; /* the resolve cache (registry_cache.c) */
    size_t bucket_count; /* power of two */
    size_t package_count;
    struct ps_registry_platform *platforms; /* interned; ids never change */
    size_t platform_count;
    size_t platform_capacity;
};

/* "name\0version" into key; returns its length. */
size_t ps_registry_manifest_key(char key[PS_REGISTRY_KEY_MAX], const char *name,
                                const char *version);

/* Move the generation counter in txn: every change that a reader's cache
 * (the registry's, the server's offers) must see calls it. */
int ps_registry_bump_generation(MDB_txn *txn, ps_index *index);

/* The generation counter in txn (0 when never written). */
int ps_registry_read_generation(uint64_t *out, MDB_txn *txn, ps_index *index);

/* Parse a manifest record value (digest, then canonical bytes; a value of
 * only the digest is served from the blob) into *out and *digest_out;
 * verify re-hashes the bytes. Errors: PKGSTORE_ECORRUPT, PKGSTORE_EIO,
 * PKGSTORE_ENOMEM. */
int ps_registry_record_manifest(pkgstore_manifest **out, pkgstore_digest *digest_out,
                                pkgstore_registry *reg, const char *name, const char *version,
                                const void *data, size_t len, int verify);

/* Validate name and normalize version into version_out. Errors:
 * PKGSTORE_EINVALID, PKGSTORE_ELIMIT (the detail names the field). */
int ps_registry_check_name_version(char version_out[PKGSTORE_VERSION_MAX + 1], const char *name,
                                   const char *version);

/* The manifest record of (name, version) (version normalized), in one read
 * transaction: *found 0 when there is none; else its digest into
 * *digest_out and, when manifest_out is not NULL, the manifest into
 * *manifest_out (verify: re-hash the record's bytes). Errors:
 * PKGSTORE_ECORRUPT, PKGSTORE_EIO, PKGSTORE_ENOMEM. */
int ps_registry_read(int *found, pkgstore_manifest **manifest_out, pkgstore_digest *digest_out,
                     pkgstore_registry *reg, const char *name, const char *version, int verify);

/* Drop every cached package (write lock held); the interned platforms stay. */
void ps_registry_cache_clear(pkgstore_registry *reg);

/* Free everything the cache holds (the handle's last use). */
void ps_registry_cache_free(pkgstore_registry *reg);

/* Count an open handle (pkgstore_registry_open()) and drop one
 * (pkgstore_registry_free()): the per-thread resolve memos and their
 * pthread key live while any handle does. */
void ps_registry_memo_acquire(void);
void ps_registry_memo_release(void);

#endif

/*
 * Private: which policies reference a package version, and whether a
 * version exists, answered inside the caller's LMDB transaction. The
 * registry's remove and replace check the first in their write
 * transaction; the policy put transaction can check the second in its own.
 * LMDB serialises write transactions, so a version cannot be removed or
 * replaced while a policy that names it is being written, nor the other
 * way round.
 */
#ifndef PS_POLICY_REFS_H
#define PS_POLICY_REFS_H

#include "index.h"

/* 0 when no policy record in PS_DB_POLICIES names (package, version)
 * ("package" and "version" keys of its JSON value; versions compare
 * normalized, so "v1.2.3" is "1.2.3"). Otherwise PKGSTORE_ECONFLICT with
 * the detail "otelcol-contrib 0.98.0 is referenced by policy canary" (or
 * "by policies a, b", all of them named up to a limit). A policy record
 * that does not parse is PKGSTORE_ECORRUPT: it might name the version.
 * Errors also: PKGSTORE_EIO. */
int ps_policy_refs_check(MDB_txn *txn, ps_index *index, const char *package,
                         const char *version);

/* 0 when (package, version) has a manifest record in txn, its type into
 * *type_out (may be NULL); PKGSTORE_ENOTFOUND ("otelcol 1.2.3: no such
 * version") when it has none. A record holding only the digest is read
 * from the manifest blob through store. Errors also: PKGSTORE_ECORRUPT,
 * PKGSTORE_EIO, PKGSTORE_ENOMEM. */
int ps_policy_refs_target(pkgstore_package_type *type_out, MDB_txn *txn, ps_index *index,
                          pkgstore_store *store, const char *package, const char *version);

#endif

/*
 * Private: the signature records of the index (docs/index-format.md,
 * "signatures"), for the registry, which drops a manifest's records with
 * the manifest.
 */
#ifndef PS_TRUST_STORE_H
#define PS_TRUST_STORE_H

#include "index.h"

/* Delete every signature record of manifest_digest in txn (none is fine). */
int ps_trust_signatures_drop_txn(MDB_txn *txn, ps_index *index,
                                 const pkgstore_digest *manifest_digest);

#endif

/*
 * Private: what the store needs from gc, and gc's test hook.
 */
#ifndef PS_GC_H
#define PS_GC_H

#include <stddef.h>
#include <stdint.h>

#include "pkgstore/gc.h"

/* 1 when a package record, a manifest record (its manifest blob or one of
 * its artifacts) or a pin refers to digest, with the first referrer
 * described in why ("package otelcol 0.98.0 linux/amd64"); 0 when nothing
 * does; or a negative code (an unreadable record counts as a reference
 * nobody can rule out). gc's mark walk, for one digest; the caller holds
 * the store lock exclusively for the answer to stay true. */
int ps_gc_blob_referenced(char *why, size_t why_size, pkgstore_store *store,
                          const pkgstore_digest *digest);

#ifdef PKGSTORE_TEST_HOOKS
/* Test hook (test builds only): gc's clock runs this many seconds ahead
 * (process-wide; 0 by default). With a large skew every blob looks old, so
 * only the marks and the store lock keep registered blobs alive: the
 * racing-adders test uses it to make the race bite. */
void ps_gc_set_clock_skew(int64_t seconds);
#endif

#endif

/*
 * Private: gc test hooks.
 */
#ifndef PS_GC_H
#define PS_GC_H

#include <stdint.h>

#include "pkgstore/gc.h"

/* Test hook: gc's clock runs this many seconds ahead (process-wide; 0 by
 * default). With a large skew every blob looks old, so only the marks and
 * the store lock keep registered blobs alive: the racing-adders test uses
 * it to make the race bite. */
void ps_gc_set_clock_skew(int64_t seconds);

#endif

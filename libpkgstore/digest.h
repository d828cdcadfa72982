/*
 * Private: nothing beyond the public digest API yet; kept beside digest.c so
 * every module has its header in the same place.
 */
#ifndef PS_DIGEST_H
#define PS_DIGEST_H

#include "pkgstore/digest.h"

#endif

/*
 * pkgstore.h - umbrella header for libpkgstore.
 */
#ifndef PKGSTORE_H
#define PKGSTORE_H

#include "pkgstore/common.h"
#include "pkgstore/error.h"
#include "pkgstore/digest.h"
#include "pkgstore/policy.h"

#endif

/*
 * pkgstore.h - umbrella header for libpkgstore.
 */
#ifndef PKGSTORE_H
#define PKGSTORE_H

#include "pkgstore/common.h"
#include "pkgstore/error.h"
#include "pkgstore/digest.h"
#include "pkgstore/store.h"
#include "pkgstore/index.h"
#include "pkgstore/gc.h"
#include "pkgstore/version.h"
#include "pkgstore/platform.h"
#include "pkgstore/manifest.h"
#include "pkgstore/registry.h"
#include "pkgstore/archive.h"
#include "pkgstore/install.h"
#include "pkgstore/policy.h"
#include "pkgstore/trust.h"

#endif

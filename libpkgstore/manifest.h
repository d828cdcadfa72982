/*
 * Private: what the registry needs from the manifest module.
 */
#ifndef PS_MANIFEST_H
#define PS_MANIFEST_H

#include "pkgstore/manifest.h"

/* 1 if format names an archive (anything but "binary"), else 0. */
int ps_manifest_format_is_archive(const char *format);

#endif

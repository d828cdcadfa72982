/*
 * Private: JSON text of the library's own formats (manifests, trust
 * documents) as the library hands it out: jansson's dump, copied into
 * memory that pkgstore_free() frees.
 */
#ifndef PS_JSON_DUMP_H
#define PS_JSON_DUMP_H

#include <stddef.h>

#include <jansson.h>

/* The canonical form: sorted keys, compact, UTF-8 (what digests and
 * signatures cover). */
#define PS_JSON_CANONICAL (JSON_SORT_KEYS | JSON_COMPACT)

/* json_dumps(value, flags) into a malloc'd NUL-terminated copy in *out
 * (pkgstore_free() frees it), its length in *len_out (may be NULL).
 * PKGSTORE_ENOMEM with the detail "<what>: out of memory serializing JSON";
 * on failure *out is NULL. */
int ps_json_dump(char **out, size_t *len_out, json_t *value, size_t flags, const char *what);

#endif

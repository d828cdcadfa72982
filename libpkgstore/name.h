/*
 * Private: the one name grammar of the library, [a-z0-9][a-z0-9._-]*, for
 * package names (pkgstore_manifest_name_validate()) and policy names.
 */
#ifndef PS_NAME_H
#define PS_NAME_H

#include <stddef.h>

/* 0 if name matches [a-z0-9][a-z0-9._-]* in 1 to max_len bytes, else
 * PKGSTORE_EINVALID with a detail that starts with field and names the
 * offending character and its position, e.g.
 * "name: invalid character 'A' at position 1 (names match [a-z0-9][a-z0-9._-]*)". */
int ps_name_check(const char *field, const char *name, size_t max_len);

#endif

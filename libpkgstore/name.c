/*
 * name: the name grammar shared by packages and policies (name.h).
 */
#include "name.h"

#include <string.h>

#include "error.h"

int ps_name_check(const char *field, const char *name, size_t max_len)
{
    if (!name)
        return ps_error_set(PKGSTORE_EINVALID, "%s: missing", field);
    size_t len = strlen(name);
    if (len == 0)
        return ps_error_set(PKGSTORE_EINVALID, "%s: empty", field);
    if (len > max_len)
        return ps_error_set(PKGSTORE_EINVALID, "%s: longer than %zu characters", field, max_len);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (i > 0)
            ok = ok || c == '.' || c == '_' || c == '-';
        if (ok)
            continue;
        if (c >= 0x20 && c < 0x7f)
            return ps_error_set(PKGSTORE_EINVALID,
                                "%s: invalid character '%c' at position %zu "
                                "(names match [a-z0-9][a-z0-9._-]*)",
                                field, c, i + 1);
        return ps_error_set(PKGSTORE_EINVALID,
                            "%s: invalid byte 0x%02x at position %zu "
                            "(names match [a-z0-9][a-z0-9._-]*)",
                            field, c, i + 1);
    }
    return 0;
}

/*
 * json_dump.c - JSON text handed out by the library (see json_dump.h).
 */
#include "json_dump.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

int ps_json_dump(char **out, size_t *len_out, json_t *value, size_t flags, const char *what)
{
    *out = NULL;
    if (len_out)
        *len_out = 0;
    char *text = json_dumps(value, flags);
    if (!text)
        return ps_error_set(PKGSTORE_ENOMEM, "%s: out of memory serializing JSON", what);
    /* jansson allocated text with whatever allocator the program gave it
     * (json_set_alloc_funcs()): hand out our own copy, which pkgstore_free()
     * frees, and give text back to jansson's free. */
    json_malloc_t jansson_malloc;
    json_free_t jansson_free;
    json_get_alloc_funcs(&jansson_malloc, &jansson_free);
    size_t len = strlen(text);
    char *copy = malloc(len + 1);
    if (copy)
        memcpy(copy, text, len + 1);
    jansson_free(text);
    if (!copy)
        return ps_error_set(PKGSTORE_ENOMEM, "%s: out of memory serializing JSON", what);
    *out = copy;
    if (len_out)
        *len_out = len;
    return 0;
}

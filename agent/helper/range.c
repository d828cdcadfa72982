/*
 * The Content-Range of a 206 response, parsed without libcurl so that a
 * fuzz harness reaches it: "bytes START-END/TOTAL" (TOTAL may be "*").
 */
#include "helper.h"

#include <string.h>

/* Digits at *p into *out (no sign, no overflow); advances *p. */
static int number(const char **p, const char *end, uint64_t *out)
{
    uint64_t value = 0;
    const char *start = *p;
    while (*p < end && **p >= '0' && **p <= '9') {
        unsigned digit = (unsigned)(**p - '0');
        if (value > (UINT64_MAX - digit) / 10)
            return -1;
        value = value * 10 + digit;
        (*p)++;
    }
    if (*p == start)
        return -1;
    *out = value;
    return 0;
}

int helper_content_range_parse(uint64_t *start_out, uint64_t *end_out, uint64_t *total_out,
                               const char *value, size_t len)
{
    const char *p = value, *end = value + len;
    uint64_t start, last, total = UINT64_MAX;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        end--;
    if ((size_t)(end - p) < 6 || strncmp(p, "bytes ", 6) != 0)
        return -1;
    p += 6;
    while (p < end && *p == ' ')
        p++;
    if (number(&p, end, &start) < 0 || p >= end || *p++ != '-' || number(&p, end, &last) < 0 ||
        p >= end || *p++ != '/')
        return -1;
    if (p < end && *p == '*')
        p++;
    else if (number(&p, end, &total) < 0)
        return -1;
    if (p != end || last < start || (total != UINT64_MAX && last >= total))
        return -1;
    *start_out = start;
    *end_out = last;
    *total_out = total;
    return 0;
}

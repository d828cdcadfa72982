/*
 * Private: RFC 3339 UTC times "YYYY-MM-DDTHH:MM:SSZ", the one form the
 * library writes (manifests' "created", policy and node records).
 */
#ifndef PS_TIME_TEXT_H
#define PS_TIME_TEXT_H

#include <stdint.h>

/* "YYYY-MM-DDTHH:MM:SSZ" and its NUL. */
#define PS_TIME_SIZE 21

/* The seconds that fit four-digit years: 0000-01-01T00:00:00Z to
 * 9999-12-31T23:59:59Z. */
#define PS_TIME_MIN (-62167219200LL)
#define PS_TIME_MAX 253402300799LL

/* Format Unix seconds into out. Needs neither the TZ nor gmtime(). Errors:
 * PKGSTORE_EINVALID (outside PS_TIME_MIN..PS_TIME_MAX; out is then ""). */
int ps_time_format(char out[PS_TIME_SIZE], int64_t seconds);

/* Parse exactly "YYYY-MM-DDTHH:MM:SSZ" into Unix seconds (*out 0 on
 * failure). Errors: PKGSTORE_EINVALID, with a detail saying where. */
int ps_time_parse(int64_t *out, const char *str);

#endif

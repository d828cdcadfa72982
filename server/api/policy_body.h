/*
 * server/api/policy_body.h - the body of PUT /v1/policies/NAME (no
 * libmicrohttpd, so that a fuzzer reaches it).
 */
#ifndef PKGSTORED_POLICY_BODY_H
#define PKGSTORED_POLICY_BODY_H

#include <stdarg.h>
#include <stdio.h>

#include <jansson.h>

#include "pkgstore.h"
#include "../fleet/fleet.h"

/* Parse body (len bytes) into a new policy called name (already checked)
 * into *out (free with pkgstore_policy_free()). 0, or a PKGSTORE_E* code
 * with err set: EINVALID (400) naming the field, ELIMIT (413), ENOMEM. */
int policy_body_parse(pkgstore_policy **out, const char *name, const char *body, size_t len,
                      fleet_error *err);

/* Fill err: code, an HTTP status (0: the code's own) and the message.
 * Returns code. */
int fl_body_fail(fleet_error *err, int code, unsigned int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif

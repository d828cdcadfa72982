/*
 * fuzz_agent_helper_reply: the one-line replies of pkgstore-agent-helper as
 * the agent reads them (agent/reply.c). A helper's "body" and "status"
 * carry what a server sent, and its paths come back into file operations.
 * Checks:
 *   - a reply is accepted, or refused with a PKGSTORE_E* code (anything
 *     else becomes EIO) and a one-line detail;
 *   - a size is never above the limit asked for;
 *   - a path taken from a reply is absolute, below the directory it must
 *     be in, without "/../" and control characters;
 *   - an HTTP status is 100..599.
 */
#include "../agent/reply.h"

#include "fuzz.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define DIR_ "/var/lib/pkgstore-agent/tmp"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *reply = NULL;
    int rc = agent_helper_reply_parse(&reply, (const char *)data, size, "fuzz", "exit 0");
    if (rc < 0) {
        CHECK(reply == NULL);
        CHECK(rc >= PKGSTORE_EINTERNAL && rc <= PKGSTORE_ENOTFOUND);
        CHECK(agent_error()[0] != '\0' && !strchr(agent_error(), '\n'));
        return 0;
    }
    CHECK(json_is_object(reply));
    uint64_t got;
    if (agent_helper_reply_size(&got, reply, 1000000, "download") == 0)
        CHECK(got <= 1000000);
    char digest[PKGSTORE_DIGEST_STR_SIZE];
    if (agent_helper_reply_digest(digest, reply, "digest", "digest") == 0)
        CHECK(pkgstore_digest_validate(digest) == 0);
    else
        CHECK(digest[0] == '\0');
    char *path = NULL;
    if (agent_helper_reply_path(&path, reply, "executable", DIR_, 0, "prepare") == 0) {
        CHECK(path && !strncmp(path, DIR_ "/", sizeof DIR_) && !strstr(path, "/../"));
        for (const char *p = path; *p; p++)
            CHECK((unsigned char)*p >= 0x20);
    } else {
        CHECK(path == NULL);
    }
    free(path);
    long status;
    char *body = NULL;
    if (agent_helper_reply_http(&status, &body, reply, "http-post") == 0)
        CHECK(status >= 100 && status <= 599 && body != NULL);
    free(body);
    json_decref(reply);
    return 0;
}

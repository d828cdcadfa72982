/*
 * fuzz_platform: platform parsing, normalization and ranking.
 * The input is one or more lines; each is parsed. Checks:
 *   - normalize(normalize(x)) == normalize(x), and parse(format(p)) == p;
 *   - a platform ranks 0 (exact) against itself and is compatible;
 *   - best_match over all parsed lines picks a lowest rank, first on ties;
 *   - every failure is EINVALID with a detail and a zeroed output.
 */
#include <pkgstore.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define MAX_LINES 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pkgstore_platform platforms[MAX_LINES];
    size_t count = 0;
    char *text, *line, *next;

    if (size > 4096)
        return 0;
    text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    for (line = text; line != NULL && count < MAX_LINES; line = next) {
        char once[PKGSTORE_PLATFORM_STR_SIZE], twice[PKGSTORE_PLATFORM_STR_SIZE];
        pkgstore_platform p, q;
        int rc;
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        rc = pkgstore_platform_normalize(once, line);
        CHECK(rc == 0 || rc == PKGSTORE_EINVALID);
        CHECK((pkgstore_platform_parse(&p, line) == 0) == (rc == 0));
        if (rc != 0) {
            static const pkgstore_platform zero;
            CHECK(once[0] == '\0');
            CHECK(memcmp(&p, &zero, sizeof(p)) == 0);
            CHECK(pkgstore_error_detail()[0] != '\0');
            continue;
        }
        CHECK(pkgstore_platform_normalize(twice, once) == 0);
        CHECK(strcmp(once, twice) == 0);
        CHECK(pkgstore_platform_parse(&q, once) == 0);
        CHECK(pkgstore_platform_equal(&p, &q));
        CHECK(pkgstore_platform_rank(&p, &p) == 0);
        CHECK(pkgstore_platform_compatible(&p, &p));
        platforms[count++] = p;
    }

    for (size_t n = 0; n < count; n++) {
        size_t best = 0;
        int rc = pkgstore_platform_best_match(&best, &platforms[n], platforms, count);
        int best_rank;
        CHECK(rc == 0); /* platforms[n] itself is an exact match */
        CHECK(best <= n);
        best_rank = pkgstore_platform_rank(&platforms[n], &platforms[best]);
        CHECK(best_rank == 0);
        for (size_t i = 0; i < count; i++) {
            int rank = pkgstore_platform_rank(&platforms[n], &platforms[i]);
            CHECK(rank >= PKGSTORE_PLATFORM_RANK_NONE);
            if (i < best)
                CHECK(rank == PKGSTORE_PLATFORM_RANK_NONE || rank > best_rank);
        }
    }
    free(text);
    return 0;
}

/*
 * fuzz_agent_range: the Content-Range of a 206 response as the agent's
 * helper reads it before it appends a single byte to a partial download
 * (agent/helper/range.c). The property: a range accepted is START <= END,
 * and END < TOTAL when TOTAL is known, so a resumed download never writes
 * past the size it expects.
 */
#include "../agent/helper/helper.h"

#include "fuzz.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t start = 7, end = 7, total = 7;
    if (helper_content_range_parse(&start, &end, &total, (const char *)data, size) == 0) {
        CHECK(start <= end);
        CHECK(total == UINT64_MAX || end < total);
        /* what the helper then requires of a resume at start of an
         * artifact of total bytes: the rest fits */
        if (total != UINT64_MAX)
            CHECK(end - start + 1 <= total - start);
    } else {
        CHECK(start == 7 && end == 7 && total == 7); /* nothing written on refusal */
    }
    return 0;
}

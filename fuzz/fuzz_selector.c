/*
 * fuzz_selector: label selector parsing, canonical form and matching.
 * The first line of the input is a selector; every further line "key=value"
 * is a label (invalid labels are skipped). Checks:
 *   - parse succeeds, or fails with EINVALID (a detail with a position) or
 *     ELIMIT, and leaves *out NULL;
 *   - the canonical text parses to itself (a fixed point);
 *   - the selector and its canonical form match the same labels.
 */
#include <pkgstore.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define MAX_LABELS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pkgstore_label labels[MAX_LABELS];
    pkgstore_selector *sel = NULL, *again = NULL;
    size_t nlabels = 0;
    char *text, *line, *next;
    int rc;

    if (size > 8192)
        return 0;
    text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    next = strchr(text, '\n');
    if (next != NULL)
        *next++ = '\0';
    for (line = next; line != NULL && nlabels < MAX_LABELS; line = next) {
        char *eq;
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        if ((eq = strchr(line, '=')) == NULL)
            continue;
        *eq = '\0';
        if (pkgstore_label_key_validate(line) != 0 || pkgstore_label_value_validate(eq + 1) != 0)
            continue;
        for (size_t i = 0; i < nlabels; i++) {
            if (strcmp(labels[i].key, line) == 0)
                goto next_line; /* keys are unique */
        }
        labels[nlabels].key = line;
        labels[nlabels].value = eq + 1;
        nlabels++;
    next_line:;
    }

    rc = pkgstore_selector_parse(&sel, text);
    if (rc != 0) {
        CHECK(rc == PKGSTORE_EINVALID || rc == PKGSTORE_ELIMIT);
        CHECK(sel == NULL);
        CHECK(pkgstore_error_detail()[0] != '\0');
        if (rc == PKGSTORE_EINVALID)
            CHECK(strstr(pkgstore_error_detail(), "position ") != NULL);
        free(text);
        return 0;
    }
    const char *canonical = pkgstore_selector_string(sel);
    CHECK(pkgstore_selector_parse(&again, canonical) == 0);
    CHECK(strcmp(pkgstore_selector_string(again), canonical) == 0);
    CHECK(pkgstore_selector_matches(sel, labels, nlabels) ==
          pkgstore_selector_matches(again, labels, nlabels));
    pkgstore_selector_free(again);
    pkgstore_selector_free(sel);
    free(text);
    return 0;
}

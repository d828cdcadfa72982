/*
 * What the harnesses (fuzz_*.c) share: libFuzzer's entry
 * point and the assertion that reports a finding (a trap, which libFuzzer
 * and fuzz/replay.c both catch).
 */
#ifndef PKGSTORE_FUZZ_HARNESS_H
#define PKGSTORE_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) \
    do { \
        if (!(cond)) \
            __builtin_trap(); \
    } while (0)

#endif

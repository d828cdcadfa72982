/*
 * fuzz/fuzz.h - what every harness shares: the entry point that libFuzzer
 * (make fuzz) and fuzz/replay.c (make test) call, and CHECK, which stops
 * the run on a broken property so that the fuzzer reports the input.
 */
#ifndef PKGSTORE_FUZZ_H
#define PKGSTORE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) \
    do { \
        if (!(cond)) \
            __builtin_trap(); \
    } while (0)

#endif

/* The libFuzzer entry point every tests/fuzz/fuzz-<name>.c defines. */
#ifndef CO_TESTS_FUZZ_H
#define CO_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif

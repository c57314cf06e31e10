#include "CFuzzerDriver.h"

// Exported by libFuzzer (LLVM 11 and later), linked in by -sanitize=fuzzer.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

int fuzz_run_driver(int argc, char **argv, fuzz_target_callback callback) {
    return LLVMFuzzerRunDriver(&argc, &argv, callback);
}

#ifndef C_FUZZER_DRIVER_H
#define C_FUZZER_DRIVER_H

#include <stddef.h>
#include <stdint.h>

/// A libFuzzer target: one input, 0 when done (a crash or abort reports a finding).
typedef int (*fuzz_target_callback)(const uint8_t *data, size_t size);

/// Runs libFuzzer's driver, as its own `main` would, with `callback` as the target.
/// SwiftPM links an executable target's entry point as `<Target>_main`, which libFuzzer's
/// `main` cannot be; each target's `<Target>_main` calls this instead.
int fuzz_run_driver(int argc, char **argv, fuzz_target_callback callback);

#endif

// fuzz_util.h — shared by the libFuzzer targets in test/fuzz/ (scripts/fuzz.sh).
#pragma once

/// A failed check stops the fuzzer at once: libFuzzer reports the trap and saves the input.
#define REQUIRE(cond)              \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

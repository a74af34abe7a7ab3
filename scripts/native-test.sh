#!/usr/bin/env bash
# Builds and runs the native core tests (test/native, ctest, no Node).
#
#   scripts/native-test.sh [plain|tsan|asan]     (default: plain)
#
#   plain  -O2 -g
#   tsan   -O1 -g -fsanitize=thread
#   asan   -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all
#
# Configures into build/native-<mode>, builds, runs ctest --output-on-failure.
# Exits non-zero on any build/test failure or sanitizer report (the sanitizers
# halt on the first error, and the output is scanned as a second line of defence).
# Op counts of the threaded tests come from ISOPOOL_* environment variables
# (see each *_test.cc); every test prints the counts it ran.
set -euo pipefail

mode="${1:-plain}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${root}/build/native-${mode}"

case "${mode}" in
  plain) flags="-O2 -g" ;;
  tsan)  flags="-O1 -g -fsanitize=thread" ;;
  asan)  flags="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" ;;
  *) echo "usage: $0 [plain|tsan|asan]" >&2; exit 2 ;;
esac

export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"

jobs="$(nproc 2>/dev/null || echo 2)"
cmake -S "${root}/test/native" -B "${build}" -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_CXX_FLAGS="${flags}" -DCMAKE_EXE_LINKER_FLAGS="${flags}" >/dev/null
cmake --build "${build}" -j "${jobs}"

log="${build}/ctest.log"
start=$(date +%s)
set +e
ctest --test-dir "${build}" --output-on-failure -V 2>&1 | tee "${log}"
status=${PIPESTATUS[0]}
set -e
echo "native-test ${mode}: ctest exit ${status}, $(( $(date +%s) - start )) s"

if grep -Eq "WARNING: ThreadSanitizer|ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:" "${log}"; then
  echo "native-test ${mode}: sanitizer report found in ${log}" >&2
  exit 1
fi
exit "${status}"

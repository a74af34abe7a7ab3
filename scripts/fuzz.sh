#!/usr/bin/env bash
# Builds and runs the libFuzzer targets of test/fuzz/ (no Node) with ASan + UBSan.
#
#   scripts/fuzz.sh [seconds-per-target]        (default 25, or $ISOPOOL_FUZZ_SECONDS)
#
# Targets: every test/fuzz/*_fuzz.cc, each linked with the core sources (native/core/*.cc,
# no Node-API), like test/native.
#   handle_fuzz  HandleTable id decoding and state machine vs a shadow model
#   ledger_fuzz  ChannelLedger check-and-charge, refunds, limits, open/close vs a model
#
# Self-contained and idempotent:
#   * installs clang with apt-get when clang++ or its libFuzzer runtime is missing
#     (as root, or with sudo when available); nothing else is downloaded;
#   * builds into build/fuzz/ (rebuilt every run, a few seconds each);
#   * keeps each target's corpus in build/fuzz/corpus-<target> across runs;
#   * a crash input is saved as build/fuzz/crash-<target>-* (replay: build/fuzz/<target> FILE).
# Exits non-zero when a build fails or a target finds a crash, leak, timeout or sanitizer
# report. Prints the number of executions of each target.
set -euo pipefail

secs="${1:-${ISOPOOL_FUZZ_SECONDS:-25}}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${root}/build/fuzz"
mkdir -p "${out}"

fuzz_flags="-std=c++17 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"

# --- toolchain ------------------------------------------------------------------
have_libfuzzer() {
  command -v clang++ >/dev/null 2>&1 || return 1
  printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' >"${out}/probe.cc"
  clang++ ${fuzz_flags} "${out}/probe.cc" -o "${out}/probe" >/dev/null 2>&1
}

if ! have_libfuzzer; then
  echo "fuzz: clang++ with libFuzzer not found; installing clang with apt-get"
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "fuzz: need root (or sudo) to apt-get install clang" >&2
    exit 2
  fi
  start=$(date +%s)
  ${sudo} env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  ${sudo} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null
  echo "fuzz: clang installed in $(( $(date +%s) - start )) s"
  have_libfuzzer || { echo "fuzz: clang++ still cannot build a libFuzzer target" >&2; exit 2; }
fi
echo "fuzz: $(clang++ --version | head -1)"

# --- build ----------------------------------------------------------------------
core=("${root}"/native/core/*.cc)

targets=()
for src in "${root}"/test/fuzz/*_fuzz.cc; do
  name="$(basename "${src}" .cc)"
  echo "fuzz: building ${name}"
  clang++ ${fuzz_flags} -I"${root}/native/core" "${src}" "${core[@]}" -lpthread -o "${out}/${name}"
  targets+=("${name}")
done

# --- run --------------------------------------------------------------------------
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
status=0
summary=""
for name in "${targets[@]}"; do
  corpus="${out}/corpus-${name}"
  mkdir -p "${corpus}"
  log="${out}/${name}.log"
  echo "fuzz: running ${name} for ${secs} s (corpus ${corpus})"
  set +e
  (cd "${out}" && "./${name}" -max_total_time="${secs}" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="${out}/crash-${name}-" "${corpus}") >"${log}" 2>&1
  rc=$?
  set -e
  execs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "${log}" | grep -Eo '[0-9]+$' || true)"
  if [ "${rc}" -ne 0 ]; then
    echo "fuzz: ${name} FAILED (exit ${rc}); last lines of ${log}:" >&2
    tail -40 "${log}" >&2
    status=1
  fi
  summary="${summary}fuzz: ${name}: ${execs:-?} executions in ${secs} s, exit ${rc}, corpus $(ls "${corpus}" | wc -l) inputs\n"
done
printf "%b" "${summary}"
exit "${status}"

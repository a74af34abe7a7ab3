#!/usr/bin/env bash
# Scrapes the example service (examples/server.ts) after real traffic and runs
# `promtool check metrics` (Debian's prometheus package) on the scrape; fails on any finding.
#
#   scripts/promtool-check.sh          (after `npm run build && npm run build:test`)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
if ! command -v promtool >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "promtool-check: apt-get install prometheus (for promtool)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  else
    echo "promtool-check: promtool is missing (Debian: apt-get install prometheus)" >&2
    exit 1
  fi
fi

port=$((20000 + RANDOM % 20000))
log="$(mktemp)"
node build/ts/examples/server.js --port "${port}" >"${log}" 2>&1 &
server=$!
trap 'kill "${server}" 2>/dev/null || true; rm -f "${log}"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:${port}/metrics" >/dev/null 2>&1 && break
  sleep 0.1
done

# Traffic: small and large bodies, and one over the 413 rule, so every family has samples.
head -c 1024 /dev/urandom >"${log}.1k"
head -c 262144 /dev/urandom >"${log}.256k"
for _ in $(seq 1 20); do
  curl -fsS --data-binary @"${log}.1k" "http://127.0.0.1:${port}/digest" >/dev/null
  curl -fsS --data-binary @"${log}.256k" "http://127.0.0.1:${port}/digest" >/dev/null
done
rm -f "${log}.1k" "${log}.256k"

scrape="$(curl -fsS "http://127.0.0.1:${port}/metrics")"
grep -q '^isopool_allocate_latency_seconds_bucket{le="+Inf"} [1-9]' <<<"${scrape}" || {
  echo "promtool-check: the scrape has no allocation latency samples" >&2
  exit 1
}
findings="$(promtool check metrics <<<"${scrape}" 2>&1)" || {
  echo "promtool-check: promtool check metrics failed:" >&2
  echo "${findings}" >&2
  exit 1
}
if [[ -n "${findings}" ]]; then
  echo "promtool-check: promtool check metrics reports:" >&2
  echo "${findings}" >&2
  exit 1
fi
echo "promtool-check: $(grep -c '^# TYPE' <<<"${scrape}") metric families, $(grep -vc '^#' <<<"${scrape}") samples: promtool check metrics is clean"

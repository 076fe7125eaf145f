#!/usr/bin/env bash
# Installs squish's build dependencies from Debian packages (skips apt when all are present).
set -euo pipefail
PACKAGES=(cmake ninja-build g++ pkg-config nlohmann-json3-dev libcli11-dev libfmt-dev
          libpcre2-dev libicu-dev libsentencepiece-dev libgtest-dev libbenchmark-dev
          libssl-dev zlib1g-dev chromium
          libonnx-dev libprotobuf-dev protobuf-compiler  # squish export --format onnx
          clang libclang-rt-14-dev libomp-dev)  # scripts/sanitize.sh, scripts/fuzz.sh: libFuzzer, ASan
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Builds squish and runs the whole test suite. Test data is read from $SQUISH_SHARED
# (default: ../shared beside the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
export SQUISH_SHARED="${SQUISH_SHARED:-$(cd .. && pwd)/shared}"
if [ ! -d "$SQUISH_SHARED/models" ]; then
  echo "error: shared test data not found at $SQUISH_SHARED (set SQUISH_SHARED)" >&2
  exit 1
fi
bash scripts/build.sh
cd build
ctest --output-on-failure -j"$(nproc)" --timeout 600

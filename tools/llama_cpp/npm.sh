# Sourced by the llama.cpp peer scripts (build.sh, prebuilt.sh, cuda_source.sh): the pinned
# node-llama-cpp release, whose llama/gitRelease.bundle is the llama.cpp source squish compares
# against, and the one npm install they share.
NODE_LLAMA_CPP_VERSION="${NODE_LLAMA_CPP_VERSION:-3.22.1}"

# npm_install_pinned DIR [PACKAGE@VERSION ...]: node-llama-cpp (plus the extra packages) into
# DIR/node_modules, without running install scripts (they would download or build binaries).
npm_install_pinned() {
  local dir=$1
  shift
  mkdir -p "$dir"
  (cd "$dir" && { [ -f package.json ] || npm init -y >/dev/null 2>&1; } &&
    npm install --prefix "$dir" --ignore-scripts --omit=optional --no-audit --no-fund \
      --loglevel=error "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" "$@" >/dev/null)
}

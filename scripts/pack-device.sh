#!/usr/bin/env bash
# Packs what a GPU machine without Node needs to run the dit-poc CLI into .device/ (ignored by
# git, carried to the machine with the working tree): this machine's Node, the runtime
# node_modules (dev packages pruned, offline) and the compiled TypeScript, about 37 MB.
# bench/gpu-session.sh unpacks it there and builds the addon with the CUDA backend; the device
# needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device

# Node: this machine's binary, stripped (the device unpacks it with xz alone).
tmp_node=$(mktemp)
cp "$(readlink -f "$(command -v node)")" "$tmp_node"
strip "$tmp_node" 2>/dev/null || true
xz -T0 -6 -c "$tmp_node" > .device/node.xz
rm -f "$tmp_node"

npx tsc -p tsconfig.json
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -a node_modules package.json package-lock.json "$stage/"
(cd "$stage" && npm prune --omit=dev --offline --ignore-scripts --no-audit --no-fund >/dev/null)
cp -a dist "$stage/dist"
tar -C "$stage" -cf - node_modules dist | xz -T0 -6 > .device/runtime.tar.xz
ls -la .device/node.xz .device/runtime.tar.xz

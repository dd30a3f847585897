#!/usr/bin/env bash
# Builds the engine with plain CMake (no Node) and runs its ctest tests.
set -euo pipefail
cd "$(dirname "$0")/.."
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B build/engine "${gen[@]}" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build/engine -j"$(nproc)"
ctest --test-dir build/engine --output-on-failure

#!/usr/bin/env bash
# npm run bench: builds the engine with plain CMake (Release) and runs the benchmarks:
# the CPU forward (s/nonce, GFLOP/s, against OpenBLAS sgemm on the same shapes), a video
# denoising step (s/step, ditpoc_bench denoise), the GEMM
# against OpenBLAS, and the SMST commitment build. Extra arguments go to the forward bench.
set -euo pipefail
cd "$(dirname "$0")/.."
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B build/engine "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/engine --target ditpoc_bench -j"$(nproc)" >/dev/null
echo "== forward (CPU backend)"
./build/engine/ditpoc_bench forward "$@"
echo "== CUDA backend (skipped unless this build has it and a GPU answers)"
./build/engine/ditpoc_bench cuda || true
echo "== denoise step (SPEC §13: one CFG pair, 256x256x17 video, wan-tiny)"
./build/engine/ditpoc_bench denoise --model wan-tiny
echo "== GEMM"
./build/engine/ditpoc_bench gemm
echo "== PyTorch peer on the CPU, interleaved with the engine (bench/compare_peer.py)"
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  /usr/bin/python3 bench/compare_peer.py
elif python3 -c "import torch" 2>/dev/null; then
  python3 bench/compare_peer.py
else
  echo "skipped: no python with torch (Debian: apt-get install python3-torch)"
fi
echo "== SMST commitment"
[ -f dist/bench/smst-bench.js ] || npx tsc -p tsconfig.json
node dist/bench/smst-bench.js

#!/usr/bin/env bash
# The CUDA backend's checks and benchmarks, stage by stage, on a GPU host (a lent machine of the
# `device` tool, or any CUDA machine). Run from the repository root. Four files go to $OUT
# (default ./gpu-session-out): session.txt (the summary), build.txt, ctest.txt and results.jsonl
# (one JSON line per benchmark, peer run and calibration); a failing stage stops the script. Where the host has no Node, first run scripts/pack-device.sh on a machine that has
# it and bring .device/ along: the build stage unpacks it.
#
#   bash bench/gpu-session.sh [build] [test] [bench] [peer] [calibrate]   (default: all, in order)
#
#   build      engine, tests and bench with CMake, CUDA required (sm_80 + sm_90); with Node, the
#              addon with the CUDA backend too
#   test       ctest: every kernel against its CPU twin, bit identity, GPU-vs-CPU forwards
#              (wan-tiny, and wan2.1-t2v-1.3b at grid [2,8,8])
#   bench      ditpoc_bench cuda, wan2.2-t2v-a14b, random weights: grid [4,16,16] at the largest
#              batch that fits, and the 480p grid [21,30,52]; ditpoc_bench denoise: s/step of a
#              480p×81 video (the CFG pair, ctx_len 512)
#   peer       bench/peer_torch.py at the same shapes: eager and torch.compile
#   calibrate  GPU-vs-CPU artifact distances (dit-poc calibrate --backend cuda, honest variants):
#              wan-tiny N=200, wan2.1-t2v-1.3b grid [2,8,8] N=$CAL_NONCES_13B (default 48)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-session-out}
mkdir -p "$OUT"
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(build test bench peer calibrate)
jobs=$(nproc)

log() { echo "== $*" | tee -a "$OUT/session.txt"; }

with_node() {
  command -v node >/dev/null && return 0
  [ -f .device/node.xz ] || return 1
  mkdir -p /tmp/ditpoc-node
  [ -x /tmp/ditpoc-node/node ] || { xz -dc .device/node.xz > /tmp/ditpoc-node/node && chmod +x /tmp/ditpoc-node/node; }
  export PATH=/tmp/ditpoc-node:$PATH
  if [ ! -d node_modules ] && [ -f .device/runtime.tar.xz ]; then xz -dc .device/runtime.tar.xz | tar -xf -; fi
  [ -d node_modules ]
}

stage_build() {
  log "build: engine (CMake, CUDA required)"
  # python3 decides where pip's cuBLASLt is found (nvidia.cu13 / nvidia.cublas), if not in the toolkit.
  cmake -S . -B build/engine -G Ninja -DCMAKE_BUILD_TYPE=Release -DDITPOC_CUDA=ON \
    -DPython3_EXECUTABLE="$(command -v python3)" 2>&1 | tee "$OUT/build.txt" | grep "dit-poc"
  cmake --build build/engine -j"$jobs" >>"$OUT/build.txt" 2>&1 || { tail -40 "$OUT/build.txt"; return 1; }
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee -a "$OUT/session.txt" || true
  if with_node; then
    log "build: addon with the CUDA backend (node $(node --version))"
    npx cmake-js compile --out build/addon --CDDITPOC_CUDA=ON --CDPython3_EXECUTABLE="$(command -v python3)" \
      >>"$OUT/build.txt" 2>&1 || { tail -40 "$OUT/build.txt"; return 1; }
    [ -d dist ] || npx tsc -p tsconfig.json
    node dist/src/cli/main.js info | tee -a "$OUT/session.txt"
  else
    log "build: no Node here and no .device/ pack: the calibrate stage will be skipped"
  fi
}

stage_test() {
  log "test: ctest (DITPOC_CUDA_TEST_BIG=1)"
  DITPOC_CUDA_TEST_BIG=1 ctest --test-dir build/engine --output-on-failure -V >"$OUT/ctest.txt" 2>&1 || true
  grep -E "^[0-9]+: (device|.*‖|batch independence|denoise|test_)|tests passed" "$OUT/ctest.txt" | tee -a "$OUT/session.txt"
  # On a GPU host a skipped CUDA test is a failure.
  grep -q "100% tests passed" "$OUT/ctest.txt" && grep -q "test_cuda_kernels: all checks passed" "$OUT/ctest.txt"
}

stage_bench() {
  log "bench: ditpoc_bench cuda, wan2.2-t2v-a14b"
  ./build/engine/ditpoc_bench cuda --model wan2.2-t2v-a14b --grid 4,16,16 --batch auto --json | tee -a "$OUT/results.jsonl"
  ./build/engine/ditpoc_bench cuda --model wan2.2-t2v-a14b --grid 21,30,52 --batch 1 --min-time 10 --json | tee -a "$OUT/results.jsonl"
  log "bench: ditpoc_bench denoise, wan2.2-t2v-a14b, 832x480x81 (one CFG step)"
  ./build/engine/ditpoc_bench denoise --model wan2.2-t2v-a14b --video 832,480,81 --backend cuda --min-time 10 --json \
    | tee -a "$OUT/results.jsonl"
}

stage_peer() {
  log "peer: bench/peer_torch.py, wan2.2-t2v-a14b"
  # The batch the engine ran at [4,16,16] (the largest that fit), else 4.
  local b
  b=$(python3 -c '
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(next((r["batch"] for r in runs if r.get("bench") == "cuda" and r.get("grid") == [4, 16, 16]), 4))' "$OUT/results.jsonl" 2>/dev/null || echo 4)
  PYTHONUNBUFFERED=1 python3 bench/peer_torch.py --model wan2.2-t2v-a14b --grid 4,16,16 --batch "$b" | tee -a "$OUT/results.jsonl"
  PYTHONUNBUFFERED=1 python3 bench/peer_torch.py --model wan2.2-t2v-a14b --grid 21,30,52 --batch 1 | tee -a "$OUT/results.jsonl"
}

stage_calibrate() {
  if ! with_node; then log "calibrate: skipped (no Node; see scripts/pack-device.sh)"; return 0; fi
  log "calibrate: GPU vs CPU artifact distances (reports in /tmp/ditpoc-cal-*)"
  node dist/src/cli/main.js calibrate --model wan-tiny --nonces 200 --backend cuda --variants 'CUDA|batch size|bf16 attention' \
    --no-write-calibration --out-dir /tmp/ditpoc-cal-wan-tiny --json | tee -a "$OUT/results.jsonl" >/tmp/ditpoc-cal-wan-tiny.json
  node dist/src/cli/main.js calibrate --model wan2.1-t2v-1.3b --grid 2,8,8 --nonces "${CAL_NONCES_13B:-48}" --backend cuda \
    --variants 'CUDA' --no-write-calibration --out-dir /tmp/ditpoc-cal-wan2.1 --json | tee -a "$OUT/results.jsonl" >/tmp/ditpoc-cal-wan2.1.json
  node -e '
    for (const f of process.argv.slice(1)) {
      const r = require(f);
      for (const d of r.deviations) console.log(`${r.model}: ${d.name}: p50 ${d.distances.p50} p99.9 ${d.distances.p999} max ${d.distances.max}`);
    }' /tmp/ditpoc-cal-wan-tiny.json /tmp/ditpoc-cal-wan2.1.json | tee -a "$OUT/session.txt"
}

for s in "${stages[@]}"; do
  case "$s" in
    build|test|bench|peer|calibrate) "stage_$s" ;;
    *) echo "unknown stage '$s' (build test bench peer calibrate)" >&2; exit 2 ;;
  esac
done
log "done: ${stages[*]}"

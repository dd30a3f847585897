#!/usr/bin/env python3
"""The engine's CPU GEMM against PyTorch's bf16 F.linear (oneDNN on x86) on the forward's shapes,
interleaved in one run: each round times every shape on both sides (the engine through
`ditpoc_bench gemm --no-blas --json`, PyTorch in this process), the side that goes first
alternating between rounds, so that a change in machine load hits both alike. Per side and
shape: the best call of each round; the summary gives GFLOP/s at the best round and the median
round, and ours ÷ oneDNN for each.

  /usr/bin/python3 bench/compare_gemm_peer.py [--threads N] [--rounds R] [--min-time S]
                                              [--shape MxNxK]... [--json]

Both sides compute C = A·Wᵀ + bias with bf16 W and A rounded to bf16; ours accumulates in fp32
and writes fp32, F.linear in bf16 autocast writes bf16. Needs build/engine/ditpoc_bench
(`npm run bench` or `bash native/run-ctest.sh` builds it) and a python with torch (Debian's
python3-torch 1.13 works).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# wan2.1-t2v-1.3b (dim 1536, ffn 8960) at M = 64 (batch 1, [1,4,4]) and M = 2048, plus the
# 1536 x 4096 projection (text context) at M = 2048.
DEFAULT_SHAPES = ["64x1536x1536", "64x8960x1536", "64x1536x8960",
                  "2048x1536x1536", "2048x8960x1536", "2048x1536x8960", "2048x1536x4096"]


def parse_shape(s):
    try:
        m, n, k = (int(x) for x in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape '{s}' (want MxNxK)")
    if min(m, n, k) <= 0:
        raise argparse.ArgumentTypeError(f"bad shape '{s}' (sizes must be positive)")
    return (m, n, k)


def ours_round(bench, shapes, threads, min_time):
    cmd = [bench, "gemm", "--no-blas", "--json", "--threads", str(threads), "--min-time", str(min_time)]
    for m, n, k in shapes:
        cmd += ["--shape", f"{m}x{n}x{k}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    doc = json.loads(out)
    return doc["cpu_path"], {(r["m"], r["n"], r["k"]): r["ours_ms"] / 1e3 for r in doc["results"]}


class TorchSide:
    def __init__(self, shapes, threads):
        import torch
        import torch.nn.functional as F
        self.torch, self.F = torch, F
        torch.set_num_threads(threads)
        g = torch.Generator().manual_seed(1234)
        self.data = {}
        for m, n, k in shapes:
            a = (torch.rand(m, k, generator=g) * 2 - 1).to(torch.bfloat16)
            w = ((torch.rand(n, k, generator=g) * 2 - 1) / k ** 0.5).to(torch.bfloat16)
            b = (torch.rand(n, generator=g) * 2 - 1).to(torch.bfloat16)
            self.data[(m, n, k)] = (a, w, b)
        self.version = f"torch {torch.__version__} bf16 F.linear (oneDNN {torch.backends.mkldnn.is_available()})"

    def best(self, shape, min_time):
        a, w, b = self.data[shape]
        with self.torch.no_grad():
            self.F.linear(a, w, b)  # warm-up
            best, total, reps = float("inf"), 0.0, 0
            while reps < 3 or total < min_time:
                t0 = time.perf_counter()
                self.F.linear(a, w, b)
                dt = time.perf_counter() - t0
                best, total, reps = min(best, dt), total + dt, reps + 1
        return best

    def round(self, shapes, min_time):
        return {s: self.best(s, min_time) for s in shapes}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", action="append", type=parse_shape)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per shape, side and round")
    ap.add_argument("--bench", default=os.path.join(ROOT, "build/engine/ditpoc_bench"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.rounds < 1 or args.threads < 1:
        ap.error("--rounds and --threads must be at least 1")
    if not os.access(args.bench, os.X_OK):
        ap.error(f"{args.bench} not found: build it first (bash native/run-ctest.sh)")
    shapes = args.shape or [parse_shape(s) for s in DEFAULT_SHAPES]
    try:
        peer = TorchSide(shapes, args.threads)
    except ImportError as e:
        sys.exit(f"compare_gemm_peer: needs torch ({e}); Debian: apt install python3-torch")

    times = {"ours": {s: [] for s in shapes}, "peer": {s: [] for s in shapes}}
    cpu_path = "?"
    for r in range(args.rounds):
        for side in (("ours", "peer") if r % 2 == 0 else ("peer", "ours")):
            if side == "ours":
                cpu_path, got = ours_round(args.bench, shapes, args.threads, args.min_time)
            else:
                got = peer.round(shapes, args.min_time)
            for s in shapes:
                times[side][s].append(got[s])

    print(f"GEMM C = A.W^T + bias, bf16 W, {args.threads} threads, {args.rounds} interleaved rounds; "
          f"ours: CPU path {cpu_path}; peer: {peer.version}")
    print(f"{'M':>6} {'N':>6} {'K':>6} | {'ours GF/s best':>14} {'median':>7} | {'oneDNN best':>11} {'median':>7} | "
          f"{'ours/oneDNN best':>16} {'median':>7}")
    rows = []
    for s in shapes:
        flop = 2.0 * s[0] * s[1] * s[2]
        gf = {side: [flop / t * 1e-9 for t in times[side][s]] for side in times}
        best = {side: max(v) for side, v in gf.items()}
        med = {side: statistics.median(v) for side, v in gf.items()}
        rows.append({"m": s[0], "n": s[1], "k": s[2], "ours_gflops_rounds": [round(x, 1) for x in gf["ours"]],
                     "peer_gflops_rounds": [round(x, 1) for x in gf["peer"]],
                     "ratio_best": best["ours"] / best["peer"], "ratio_median": med["ours"] / med["peer"]})
        print(f"{s[0]:>6} {s[1]:>6} {s[2]:>6} | {best['ours']:>14.1f} {med['ours']:>7.1f} | {best['peer']:>11.1f} "
              f"{med['peer']:>7.1f} | {best['ours'] / best['peer']:>16.2f} {med['ours'] / med['peer']:>7.2f}", flush=True)
    if args.json:
        print(json.dumps({"threads": args.threads, "rounds": args.rounds, "cpu_path": cpu_path,
                          "peer": peer.version, "results": rows}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The engine's CPU forward against PyTorch's own (bench/peer_torch.py, eager bf16) on the same
work, interleaved in one run: both sides are started once per model (weights built, warmed
up), then take turns, one timed round each (engine, peer, engine, peer, ...), so that a change
in machine load hits both alike. Each side reports best and median per round; the summary line
per model gives nonces/s at each side's best round and median round, and the ratio engine ÷ peer.

  python3 bench/compare_peer.py [--model ID]... [--grid F,H,W] [--batch B] [--rounds R]
                                [--min-time S] [--threads N]

Needs build/engine/ditpoc_bench (npm run bench builds it) and a python with torch (Debian's
python3-torch 1.13 works); prints one line per model and a JSON line per model with --json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(cmd):
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    ready = json.loads(p.stdout.readline() or "null")
    if not ready or not ready.get("ready"):
        p.kill()
        raise SystemExit(f"compare_peer: {cmd[0]} did not start")
    return p, ready


def one_round(p):
    p.stdin.write("go\n")
    p.stdin.flush()
    return json.loads(p.stdout.readline())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append")
    ap.add_argument("--grid", default=None, help="default: 2,8,8 for wan-tiny, 1,4,4 otherwise")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=3.0, help="seconds per round and side")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--bench", default=os.path.join(ROOT, "build/engine/ditpoc_bench"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for model in args.model or ["wan-tiny", "wan2.1-t2v-1.3b"]:
        grid = args.grid or ("2,8,8" if model == "wan-tiny" else "1,4,4")
        common = ["--model", model, "--grid", grid, "--batch", str(args.batch), "--min-time", str(args.min_time)]
        eng, eng_info = start([args.bench, "forward", *common, "--threads", str(args.threads), "--rounds-stdin"])
        peer, peer_info = start([sys.executable, os.path.join(ROOT, "bench/peer_torch.py"), *common,
                                 "--device", "cpu", "--threads", str(args.threads), "--rounds-stdin"])
        rounds = {"engine": [], "peer": []}
        try:
            for _ in range(args.rounds):
                rounds["engine"].append(one_round(eng))
                rounds["peer"].append(one_round(peer))
        finally:
            for p in (eng, peer):
                p.stdin.close()
                p.wait()
        rate = {k: {"best": max(args.batch / r["best_s"] for r in v),
                    "median": statistics.median(args.batch / r["median_s"] for r in v),
                    "rounds_best": [round(args.batch / r["best_s"], 3) for r in v]} for k, v in rounds.items()}
        line = (f"{model} grid {grid} batch {args.batch}, {args.threads} threads, {args.rounds} interleaved rounds: "
                f"engine ({eng_info['cpu_path']}) {rate['engine']['best']:.3f} nonces/s best, {rate['engine']['median']:.3f} median; "
                f"{peer_info['engine']} {rate['peer']['best']:.3f} best, {rate['peer']['median']:.3f} median; "
                f"engine ÷ peer {rate['engine']['best'] / rate['peer']['best']:.2f} (best), "
                f"{rate['engine']['median'] / rate['peer']['median']:.2f} (median)")
        print(line, flush=True)
        if args.json:
            print(json.dumps({"model": model, "grid": grid, "batch": args.batch, "threads": args.threads,
                              "cpu_path": eng_info["cpu_path"], "peer": peer_info["engine"], **rate}), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch timing peer of the engine's nonce forward (SPEC §5 steps 1-8, same FLOPs).

The same computation as the CUDA backend: per nonce, inputs of the seeded shapes drawn inside
every forward (latent, per expert used the text context), a timestep and per-layer expert
routing; per expert used, for the nonces that use it, the time/text embeddings; patch
embedding with the first layer's expert, every block with per-layer expert groups (one GEMM
per projection and expert; a group holding the whole batch is not gathered), the Householder
reflection after every block, the head in fp32. Expert groups are planned on the host once,
as the engine plans them per request, so the timed loop has no device-to-host syncs.
Precision follows SPEC §7 as closely as torch allows: bf16 weights and GEMM inputs with fp32
accumulation (cuBLAS), fp32 residual stream, LayerNorm/RMSNorm statistics, modulation, RoPE,
time MLPs and head.
Deliberate differences from the engine (none changes the FLOPs):
  * GEMM outputs are bf16 (torch's bf16 linear, as under the official code's autocast); the
    CUDA backend's GEMMs write fp32 except the FFN hidden layer and the text MLP (bf16 in both);
  * the text MLP is one GEMM pair over all of an expert's users (the engine runs it per nonce);
  * attention is F.scaled_dot_product_attention on bf16 q/k/v (flash backend on the GPU: fp32
    softmax, bf16 probabilities in P·V, as the engine's own flash kernel), not that kernel; on
    torch < 2.0 (Debian's python3-torch 1.13) the same math with explicit matmuls and softmax;
  * residual, gate and reflection are separate ops in eager mode (the engine fuses them; the
    compile mode may);
  * inputs come from torch's generator, not SPEC §2's hashes, and the routing and timesteps
    are drawn once and reused by every timed forward.
Weights are random (torch's generator, SPEC §6 scales): bit-compatibility with the engine's
seeds is not needed for a timing peer, only the same shapes and FLOPs.

  python3 bench/peer_torch.py --model wan2.2-t2v-a14b --grid 4,16,16 --batch 4 --mode both

prints one JSON object: nonces/s and model TFLOP/s (SPEC §12) for eager and torch.compile,
and torch's own dense bf16 GEMM rate on the device (no torch.compile on torch < 2.0: that
entry is null). `--device cpu` runs it on the CPU (CPU timings say nothing about the GPU), e.g.

  python3 bench/peer_torch.py --model wan-tiny --grid 1,4,4 --batch 3 --device cpu --gemm-n 1024

The CPU comparison with the engine, interleaved in one run, is bench/compare_peer.py.
"""
import argparse
import json
import math
import platform
import statistics
import sys
import time

MODELS = {  # id: (D, FFN, heads, layers, C_in, C_out, experts)
    "wan2.2-t2v-a14b": (5120, 13824, 40, 40, 16, 16, 2),
    "wan2.2-i2v-a14b": (5120, 13824, 40, 40, 36, 16, 2),
    "wan2.2-ti2v-5b": (3072, 14336, 24, 30, 48, 48, 1),
    "wan2.1-t2v-1.3b": (1536, 8960, 12, 30, 16, 16, 1),
    "wan-tiny": (256, 512, 2, 4, 16, 16, 2),
}
TEXT_DIM, FREQ_DIM, HEAD_DIM, EPS = 4096, 256, 128, 1e-6


def forward_flops(D, F, layers, cin, cout, L, Lc, experts_used):
    block = 12 * L * D * D + 4 * Lc * D * D + 4 * L * D * F + 4 * L * L * D + 4 * L * Lc * D
    return layers * block + 2 * L * 4 * cin * D + 2 * L * D * 4 * cout + experts_used * 2 * Lc * (TEXT_DIM * D + D * D)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="wan2.2-t2v-a14b", choices=sorted(MODELS))
    ap.add_argument("--grid", default="4,16,16")
    ap.add_argument("--ctx-len", type=int, default=None, help="text tokens (default 16 for wan-tiny, else 512, as the engine's benches)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--mode", default="both", choices=["eager", "compile", "both"])
    ap.add_argument("--min-time", type=float, default=5.0)
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--rounds-stdin", action="store_true",
                    help="eager only: after the warm-up print {ready}, then time one round per line read on stdin (bench/compare_peer.py)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--gemm-n", type=int, default=8192, help="size of the dense bf16 GEMM yardstick (n³)")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as Fn

    if args.threads:
        torch.set_num_threads(args.threads)
    dev, bf16, f32 = torch.device(args.device), torch.bfloat16, torch.float32
    is_cuda = dev.type == "cuda"

    def sync():  # wall-clock timing needs the queued GPU work done; CPU ops are synchronous
        if is_cuda:
            torch.cuda.synchronize(dev)

    D, FF, H, layers, cin, cout, n_exp = MODELS[args.model]
    Fg, Hg, Wg = (int(v) for v in args.grid.split(","))
    Lc = args.ctx_len if args.ctx_len is not None else (16 if args.model == "wan-tiny" else 512)
    L, B = Fg * Hg * Wg, args.batch
    torch.manual_seed(0)

    def w(*shape, fan_in):  # SPEC §6 scale, bf16
        return (torch.randn(*shape, device=dev, dtype=bf16) / math.sqrt(fan_in)).contiguous()

    def vec(n, mu=0.0):
        return (mu + 0.02 * torch.randn(n, device=dev)).to(bf16).float()

    def lin(n_out, n_in):
        return (w(n_out, n_in, fan_in=n_in), vec(n_out).to(bf16))

    def make_expert():
        blocks = []
        for _ in range(layers):
            blocks.append(dict(
                mod=torch.randn(6, D, device=dev) / math.sqrt(D),
                qkv=(torch.cat([w(D, D, fan_in=D) for _ in range(3)]), vec(3 * D).to(bf16)),
                o=lin(D, D), cq=lin(D, D), ckv=(torch.cat([w(D, D, fan_in=D) for _ in range(2)]), vec(2 * D).to(bf16)),
                co=lin(D, D), f0=lin(FF, D), f2=lin(D, FF),
                nq=vec(D, 1.0), nk=vec(D, 1.0), cnq=vec(D, 1.0), cnk=vec(D, 1.0), n3w=vec(D, 1.0), n3b=vec(D)))
        # The time MLPs and the head run in fp32 (SPEC §7): their bf16 weights widened once.
        f = lambda p: (p[0].float(), p[1].float())
        return dict(blocks=blocks, patch=lin(D, 4 * cin), t0=lin(D, TEXT_DIM), t2=lin(D, D), e0=f(lin(D, FREQ_DIM)),
                    e2=f(lin(D, D)), proj=f(lin(6 * D, D)), head=f(lin(4 * cout, D)),
                    hmod=torch.randn(2, D, device=dev) / math.sqrt(D))

    experts = [make_expert() for _ in range(n_exp)]

    # 3D RoPE as (cos, sin) per token and pair: frames d/2-2⌊d/6⌋ pairs, height/width ⌊d/6⌋ each.
    hw = HEAD_DIM // 6
    fp = HEAD_DIM // 2 - 2 * hw
    def band(n_pairs, n_pos):
        om = 10000.0 ** (-torch.arange(n_pairs, dtype=torch.float64, device=dev) / n_pairs)
        return torch.arange(n_pos, dtype=torch.float64, device=dev)[:, None] * om[None]
    ang = torch.cat([band(fp, Fg)[:, None, None].expand(Fg, Hg, Wg, fp), band(hw, Hg)[None, :, None].expand(Fg, Hg, Wg, hw),
                     band(hw, Wg)[None, None, :].expand(Fg, Hg, Wg, hw)], -1).reshape(L, HEAD_DIM // 2)
    cos, sin = ang.cos().float(), ang.sin().float()
    hh = Fn.normalize(torch.randn(layers, D, device=dev), dim=-1)

    def mm(x, p, act=None):  # bf16 GEMM inputs, fp32 accumulation (cuBLAS), bf16 out
        y = Fn.linear(x.to(bf16), p[0], p[1])
        return Fn.gelu(y, approximate="tanh") if act else y

    def rms(x, wt):
        x = x.float()
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * wt

    def rope(x):  # x [G, L, H, 128] fp32, adjacent pairs
        a, b = x[..., 0::2], x[..., 1::2]
        c, s = cos[None, :, None], sin[None, :, None]
        return torch.stack([a * c - b * s, a * s + b * c], -1).flatten(-2)

    has_sdpa = hasattr(Fn, "scaled_dot_product_attention")

    def attn(q, k, v):  # [G, L, D] → [G, L, D], SDPA on bf16
        G, Lq, Lk = q.shape[0], q.shape[1], k.shape[1]
        q, k, v = (t.to(bf16).reshape(G, -1, H, HEAD_DIM).transpose(1, 2) for t in (q, k, v))
        if has_sdpa:
            o = Fn.scaled_dot_product_attention(q, k, v)
        else:  # torch < 2.0 (Debian's 1.13): the same math spelled out, fp32 softmax
            s = torch.matmul(q, k.transpose(-1, -2)).float() * (HEAD_DIM ** -0.5)
            o = torch.matmul(torch.softmax(s, -1).to(bf16), v)
        return o.transpose(1, 2).reshape(G, Lq, D)

    def block(p, x, e0, ctx, w_hh):  # x [G, L, D] fp32, e0 [G, 6, D] fp32, ctx [G, Lc, D] bf16
        m = p["mod"][None] + e0
        h = Fn.layer_norm(x, (D,), eps=EPS) * (1 + m[:, 1:2]) + m[:, 0:1]
        q, k, v = mm(h, p["qkv"]).split(D, -1)
        G = x.shape[0]
        q = rope(rms(q, p["nq"]).view(G, L, H, HEAD_DIM)).view(G, L, D)
        k = rope(rms(k, p["nk"]).view(G, L, H, HEAD_DIM)).view(G, L, D)
        x = x + mm(attn(q, k, v), p["o"]).float() * m[:, 2:3]
        h = Fn.layer_norm(x, (D,), p["n3w"], p["n3b"], eps=EPS)
        ck, cv = mm(ctx, p["ckv"]).split(D, -1)
        x = x + mm(attn(rms(mm(h, p["cq"]), p["cnq"]), rms(ck, p["cnk"]), cv), p["co"]).float()
        h = Fn.layer_norm(x, (D,), eps=EPS) * (1 + m[:, 4:5]) + m[:, 3:4]
        x = x + mm(mm(h, p["f0"], act=True), p["f2"]).float() * m[:, 5:6]
        return x - 2 * (x @ w_hh)[..., None] * w_hh

    t = torch.randint(0, 1000, (B,), device=dev)
    routes = torch.randint(0, n_exp, (B, layers)).tolist()  # on the host, like the engine's routing bits
    used = [len(set(r)) for r in routes]
    flops = sum(forward_flops(D, FF, layers, cin, cout, L, Lc, u) for u in used)

    # Expert groups as (expert, rows): rows None = the whole batch in order (no gather/scatter).
    def groups(member):
        out = []
        for xi in range(n_exp):
            rows = [b for b in range(B) if member(b, xi)]
            if rows:
                out.append((xi, None if len(rows) == B else torch.tensor(rows, device=dev)))
        return out
    users = groups(lambda b, xi: xi in routes[b])  # nonces that use expert xi at some layer
    per_layer = [groups(lambda b, xi: routes[b][i] == xi) for i in range(layers)]

    def take(full, rows):
        return full if rows is None else full[rows]

    def put(full, rows, val):  # full[rows] = val (full allocated on first use), or val itself for the whole batch
        if rows is None:
            return val
        if full is None:
            full = val.new_empty((B,) + val.shape[1:])
        full[rows] = val
        return full

    def run(block_fn):
        # Inputs, drawn per forward as the engine draws its seeded ones.
        latent = torch.randn(B, cin, Fg, 2 * Hg, 2 * Wg, device=dev)
        half = FREQ_DIM // 2
        om = 10000.0 ** (-torch.arange(half, dtype=torch.float64, device=dev) / half)
        ta = t[:, None].double() * om
        sin_emb = torch.cat([ta.cos(), ta.sin()], -1).float()  # cos first, as the engine
        # Per expert used, for its users only: time MLPs in fp32, text MLP in bf16.
        cond = {}
        for xi, rows in users:
            ex = experts[xi]
            G = B if rows is None else rows.numel()
            context = torch.randn(G, Lc, TEXT_DIM, device=dev, dtype=bf16)
            e = Fn.linear(Fn.silu(Fn.linear(take(sin_emb, rows), *ex["e0"])), *ex["e2"])
            e0 = Fn.linear(Fn.silu(e), *ex["proj"]).view(G, 6, D)
            ctx = mm(mm(context, ex["t0"], act=True), ex["t2"])
            cond[xi] = (put(None, rows, e), put(None, rows, e0), put(None, rows, ctx))
        patches = latent.view(B, cin, Fg, 1, Hg, 2, Wg, 2).permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(B, L, 4 * cin)
        x = None
        for xi, rows in per_layer[0]:
            x = put(x, rows, mm(take(patches, rows), experts[xi]["patch"]).float())
        for i in range(layers):
            for xi, rows in per_layer[i]:
                e, e0, ctx = cond[xi]
                x = put(x, rows, block_fn(experts[xi]["blocks"][i], take(x, rows), take(e0, rows), take(ctx, rows), hh[i]))
        y = None
        for xi, rows in per_layer[-1]:
            ex = experts[xi]
            e = take(cond[xi][0], rows)[:, None]
            h = Fn.layer_norm(take(x, rows), (D,), eps=EPS) * (1 + ex["hmod"][1] + e) + (ex["hmod"][0] + e)
            y = put(y, rows, Fn.linear(h, *ex["head"]))
        return y

    def one_round(block_fn):  # best and median of at least 3 runs and args.min_time seconds
        with torch.no_grad():
            runs = []
            while len(runs) < 3 or sum(runs) < args.min_time:
                t0 = time.perf_counter()
                run(block_fn)
                sync()
                runs.append(time.perf_counter() - t0)
        return min(runs), statistics.median(runs), len(runs)

    def timed(block_fn):
        with torch.no_grad():
            for _ in range(2):
                run(block_fn)  # warm-up (and compilation)
            sync()
        best, median, reps = one_round(block_fn)
        return {"seconds_per_batch": best, "median_seconds_per_batch": median, "reps": reps,
                "nonces_per_s": B / best, "median_nonces_per_s": B / median, "model_tflops": flops / best * 1e-12}

    if args.rounds_stdin:  # eager rounds on demand, interleaved by bench/compare_peer.py
        with torch.no_grad():
            for _ in range(2):
                run(block)
        print(json.dumps({"ready": True, "engine": f"torch {torch.__version__} eager", "threads": torch.get_num_threads(),
                          "sdpa": has_sdpa}), flush=True)
        for _ in sys.stdin:
            best, median, reps = one_round(block)
            print(json.dumps({"best_s": best, "median_s": median, "reps": reps, "batch": B}), flush=True)
        return

    n = args.gemm_n
    a = torch.randn(n, n, device=dev, dtype=bf16)
    for _ in range(3):
        a @ a
    sync()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ a
    sync()
    gemm_tflops = 10 * 2 * n ** 3 / (time.perf_counter() - t0) * 1e-12
    del a

    device_name = torch.cuda.get_device_name(dev) if is_cuda else \
        f"{dev.type}: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    result = {"bench": "peer_torch", "torch": torch.__version__, "device": device_name,
              "model": args.model, "grid": [Fg, Hg, Wg], "ctx_len": Lc, "batch": B, "experts_used": used,
              "model_tflop_per_nonce": flops / B * 1e-12, "gemm_n": n, "torch_dense_gemm_tflops": gemm_tflops}
    if args.mode in ("eager", "both"):
        result["eager"] = timed(block)
    if args.mode in ("compile", "both") and not hasattr(torch, "compile"):
        result["compile"] = None  # torch < 2.0: no torch.compile
    elif args.mode in ("compile", "both"):
        # One compiled graph per expert-group size (the limit was renamed recompile_limit in torch 2.7).
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, max(64, getattr(torch._dynamo.config, name)))
        result["compile"] = timed(torch.compile(block, dynamic=False))
    for k in ("eager", "compile"):
        if result.get(k):
            result[k]["mfu_vs_torch_gemm"] = result[k]["model_tflops"] / gemm_tflops
    print(json.dumps(result))


if __name__ == "__main__":
    main()

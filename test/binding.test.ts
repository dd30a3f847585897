// The Node-API surface: clear errors for bad input, explicit lifetimes, zero-copy buffers and
// a free event loop while the engine computes.
import { readFile } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { addon, type NativeModel } from '../src/engine/native.js';
import { computeArtifact } from '../src/artifact/artifact.js';
import { BLOCK_HASH, PUBLIC_KEY, bitsEqual, loadTiny, tinyRequest } from './helpers/native-model.js';

let model: NativeModel;
beforeAll(async () => {
  model = await loadTiny(2);
});
afterAll(() => model.dispose());

describe('model registry', () => {
  it('lists the five SPEC §3 models with the derived parameter counts', () => {
    const byId = new Map(addon().models().map((m) => [m.id, m]));
    expect([...byId.keys()].sort()).toEqual(['wan-tiny', 'wan2.1-t2v-1.3b', 'wan2.2-i2v-a14b', 'wan2.2-t2v-a14b', 'wan2.2-ti2v-5b']);
    // research/wan22-architecture.md §3–§4.4
    expect(byId.get('wan2.2-t2v-a14b')!.paramsPerExpert).toBe(14_288_491_584);
    expect(byId.get('wan2.2-i2v-a14b')!.paramsPerExpert).toBe(14_288_901_184);
    expect(byId.get('wan2.2-ti2v-5b')!.paramsPerExpert).toBe(4_999_787_712);
    expect(byId.get('wan2.1-t2v-1.3b')!.paramsPerExpert).toBe(1_418_996_800);
    expect(byId.get('wan2.2-t2v-a14b')!.experts).toEqual(['high_noise_model', 'low_noise_model']);
    expect(byId.get('wan2.2-ti2v-5b')!.experts).toEqual(['model']);
  });

  it('derives 1,095 official tensors for A14B and maps them to diffusers names (norm3 → norm2)', () => {
    const specs = addon().tensorSpecs('wan2.2-t2v-a14b');
    expect(specs.length).toBe(1095);
    const by = new Map(specs.map((s) => [s.name, s]));
    expect(by.get('blocks.7.norm3.weight')!.diffusersName).toBe('blocks.7.norm2.weight');
    expect(by.get('blocks.0.self_attn.o.weight')!.diffusersName).toBe('blocks.0.attn1.to_out.0.weight');
    expect(by.get('blocks.0.cross_attn.norm_k.weight')!.diffusersName).toBe('blocks.0.attn2.norm_k.weight');
    expect(by.get('blocks.3.ffn.0.weight')).toMatchObject({ diffusersName: 'blocks.3.ffn.net.0.proj.weight', shape: [13824, 5120] });
    expect(by.get('time_projection.1.weight')).toMatchObject({ diffusersName: 'condition_embedder.time_proj.weight', shape: [30720, 5120] });
    expect(by.get('head.modulation')).toMatchObject({ diffusersName: 'scale_shift_table', shape: [1, 2, 5120] });
    expect(by.get('patch_embedding.weight')!.shape).toEqual([5120, 16, 1, 2, 2]);
    expect(new Set(specs.map((s) => s.diffusersName)).size).toBe(1095);
  });
});

describe('errors are JS errors with useful messages', () => {
  it('unknown model', async () => {
    expect(() => addon().loadModel({ model: 'wan9', weights: 'random', weightsSeed: 's' })).toThrow(/unknown model 'wan9' \(known: .*wan-tiny/);
    expect(() => addon().tensorSpecs('wan9')).toThrow(/unknown model/);
  });

  it('weights larger than host memory are refused up front, not killed mid-way', async () => {
    // 2 experts × 14.3 B params × 2 bytes = 57 GB packed, plus the tensors in flight while they stream in.
    if (totalmem() > 200e9) return;  // a machine that can hold them has nothing to refuse
    await expect(addon().loadModel({ model: 'wan2.2-t2v-a14b', weights: 'random', weightsSeed: 's', backend: 'cpu' })).rejects.toThrow(
      /packed weights of wan2\.2-t2v-a14b needs 5[7-9]\.\d GB of host memory, [\d.]+ GB is available/,
    );
  });

  it('missing checkpoint directory rejects the promise', async () => {
    await expect(addon().loadModel({ model: 'wan-tiny', weights: '/nonexistent/ckpt' })).rejects.toThrow(/nonexistent/);
  });

  it('bad shapes, dtypes and routing in a forward request', async () => {
    const req = tinyRequest([0]);
    const n = req.nonces[0];
    await expect(() => model.forward({ ...req, nonces: [{ ...n, latent: new Float32Array(5) }] })).toThrow(/latent has 5 elements, expected 2048/);
    await expect(() => model.forward({ ...req, nonces: [{ ...n, latent: new Float64Array(2048) as unknown as Float32Array }] })).toThrow(/must be a Float32Array/);
    await expect(() => model.forward({ ...req, nonces: [{ ...n, experts: new Uint8Array(3) }] })).toThrow(/routing has 3 entries, model wan-tiny has 4 layers/);
    await expect(() => model.forward({ ...req, nonces: [{ ...n, timestep: 1000 }] })).toThrow(/timestep/);
    await expect(() => model.forward({ ...req, grid: [2, 4] as unknown as [number, number, number] })).toThrow(/grid must be/);
    await expect(() => model.forward({ ...req, householderSeeds: new Uint32Array(2) })).toThrow(/householder seeds: 2 given/);
    await expect(() => model.forward(req, new Float32Array(10))).toThrow(/out has 10 elements, expected 2048/);
    expect(() => model.tensor(0, 'blocks.99.modulation')).toThrow(/missing tensor 'blocks.99.modulation'/);
    expect(() => model.tensor(2, 'head.modulation')).toThrow(/expert must be an integer in \[0, 1\]/);
  });

  it('a disposed model refuses work; a forward in flight still completes', async () => {
    const m = await loadTiny(1);
    const pending = m.forward(tinyRequest([1]));
    m.dispose();
    expect(m.disposed).toBe(true);
    expect(() => m.forward(tinyRequest([1]))).toThrow(/disposed/);
    expect(() => m.config).toThrow(/disposed/);
    // dispose also cancels: the in-flight forward ends, either done or cancelled, never crashing
    await pending.then(
      (y) => expect(y.length).toBe(2048),
      (e: Error) => expect(e.message).toMatch(/cancelled/),
    );
  });
});

describe('buffers and the event loop', () => {
  it('explicit input tensors are read in place and give the seeded result', async () => {
    const req = tinyRequest([2]);
    const n = req.nonces[0];
    const a = addon();
    const latent = a.normal(n.latentSeed!, 2048);
    const context = a.normal(n.contextSeed!, 16 * 4096);
    const seeded = await model.forward(req);
    const explicit = await model.forward({ ...req, nonces: [{ timestep: n.timestep, experts: n.experts, latent, context }] });
    expect(bitsEqual(seeded, explicit)).toBe(true);
  });

  it('a NaN in the inputs gives a non-finite output and no artifact (a dropped nonce), never a crash', async () => {
    const req = tinyRequest([2]);
    const n = req.nonces[0];
    const latent = addon().normal(n.latentSeed!, 2048);
    latent[100] = NaN;
    const y = await model.forward({ ...req, nonces: [{ ...n, latent }] });
    expect(y.some((v) => !Number.isFinite(v))).toBe(true);
    expect(computeArtifact(y, BLOCK_HASH, PUBLIC_KEY, 2)).toBeNull();
  });

  it('writes into a caller-provided output array (same object returned)', async () => {
    const out = new Float32Array(2048).fill(NaN);
    const y = await model.forward(tinyRequest([3]), out);
    expect(y).toBe(out);
    expect(out.every(Number.isFinite)).toBe(true);
  });

  it('the event loop keeps turning while a forward runs', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = performance.now();
    // Enough nonces that the forward lasts well over 20 ms even with fast kernels.
    await model.forward(tinyRequest(Array.from({ length: 48 }, (_, i) => i)));
    const ms = performance.now() - t0;
    clearInterval(timer);
    expect(ms).toBeGreaterThan(20);
    expect(ticks).toBeGreaterThan(ms / 20);
  });

  it("a model's forwards run one after another in submission order, and queued ones leave the libuv pool to fs", async () => {
    // More forwards than libuv has workers (4): queued behind one engine thread, none holds a
    // worker, so a file read completes while the first forward still runs.
    const done: number[] = [];
    const forwards = Array.from({ length: 6 }, (_, i) =>
      model.forward(tinyRequest(Array.from({ length: 64 }, (_, j) => 100 * i + j))).then((y) => {
        done.push(i);
        return y;
      }),
    );
    await readFile(fileURLToPath(import.meta.url));
    expect(done).toEqual([]);
    const ys = await Promise.all(forwards);
    expect(done).toEqual([0, 1, 2, 3, 4, 5]);
    expect(bitsEqual(ys[2].subarray(0, 2048), await model.forward(tinyRequest([200])))).toBe(true);
  });

  it('dispose() with forwards queued settles every one of them, done or cancelled', async () => {
    const m = await loadTiny(1);
    const queued = Array.from({ length: 5 }, (_, i) => m.forward(tinyRequest(Array.from({ length: 8 }, (_, j) => 10 * i + j))));
    m.dispose();
    const settled = await Promise.allSettled(queued);
    expect(settled.length).toBe(5);
    for (const r of settled) {
      if (r.status === 'fulfilled') expect(r.value.length).toBe(8 * 2048);
      else expect(String(r.reason)).toMatch(/cancelled/);
    }
    expect(settled.some((r) => r.status === 'rejected')).toBe(true); // the queued ones never ran
  });

  it('cancel() stops a forward with a clear error', async () => {
    const m = await loadTiny(1);
    try {
      const p = m.forward(tinyRequest([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
      m.cancel();
      await expect(p).rejects.toThrow(/cancelled/);
      const y = await m.forward(tinyRequest([0]));  // usable afterwards
      expect(y.length).toBe(2048);
    } finally {
      m.dispose();
    }
  });
});

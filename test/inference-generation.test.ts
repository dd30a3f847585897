// The generation's bookkeeping with a cheap stand-in denoiser: checkpoints, manifest, resume
// bit for bit, segment spot-checks and the tamper cases of SPEC §13 step 6.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { addon, type NativeModel } from '../src/engine/native.js';
import { nativeDenoiser } from '../src/inference/denoiser.js';
import { checkpointSteps, decodeCheckpoint, encodeCheckpoint } from '../src/inference/checkpoint-files.js';
import type { Denoiser } from '../src/inference/denoiser.js';
import { executeGeneration, newManifest } from '../src/inference/executor.js';
import { initialNoise, prepareGeneration } from '../src/inference/generation-setup.js';
import type { LoopDeviations } from '../src/inference/loop.js';
import { encodeManifest, parseManifest, readManifest, sha256Hex, type InferenceRequest } from '../src/inference/manifest.js';
import { initialSolverState } from '../src/inference/scheduler.js';
import { drawSegments, latentDistance, verifyGeneration, type InferenceThreshold } from '../src/inference/verification.js';
import { loadTiny } from './helpers/native-model.js';
import { toyDenoiser } from './helpers/toy-denoiser.js';

const cfg = addon().models().find((m) => m.id === 'wan-tiny')!;
const root = mkdtempSync(join(tmpdir(), 'dit-poc-gen-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;

const REQUEST: InferenceRequest = {
  model: 'wan-tiny', width: 32, height: 32, frames: 5, steps: 8, shift: 5, guide: [3, 4], boundary: 0.875, seed: '7',
  noise: { source: 'spec' }, context: { source: 'seeded', prompt_seed: 'p', tokens: 4 },
};
const RUNTIME = { engine_version: 'test', backend: 'cpu', device: 'test', precision: 'bf16', threads: 1 };

async function generate(opts: { request?: InferenceRequest; denoiser?: Denoiser; abortAfter?: number; deviations?: LoopDeviations } = {}) {
  const dir = join(root, `g${dirs++}`);
  const req = opts.request ?? REQUEST;
  const prepared = prepareGeneration(req, cfg, dir);
  const manifest = newManifest(req, prepared, { source: 'random', seed: 's', identity: 'toy' }, RUNTIME);
  const ctl = new AbortController();
  const result = await executeGeneration({
    dir, manifest, setup: prepared.setup, denoiser: opts.denoiser ?? toyDenoiser(), deviations: opts.deviations,
    start: { latent: initialNoise(req, prepared.setup, dir), solver: initialSolverState() },
    signal: ctl.signal,
    onStep: (r) => { if (r.step === opts.abortAfter) ctl.abort(); },
  });
  return { dir, result, prepared };
}

const THRESHOLD: InferenceThreshold = { segment: 1e-3, final: 1e-2 };
function verify(dir: string, o: { full?: boolean; segments?: number; thresholds?: InferenceThreshold | null; denoiser?: Denoiser } = {}) {
  return verifyGeneration({
    dir, cfg, validatorRuntime: 'cpu-bf16', thresholds: () => (o.thresholds === undefined ? THRESHOLD : o.thresholds),
    denoiser: async () => o.denoiser ?? toyDenoiser({ noise: 1e-6 }), segments: o.segments ?? 20, full: o.full ?? false, validatorKey: 'v',
  });
}

/** Perturbs a checkpoint's latent and, when asked, rewrites its hash in the manifest. */
function tamperCheckpoint(dir: string, index: number, rewriteHash: boolean) {
  const { manifest } = readManifest(dir);
  const c = manifest.checkpoints[index];
  const path = join(dir, c.file);
  const data = readFileSync(path);
  const state = decodeCheckpoint(data, manifest.latent_shape, c.step, path);
  // A 1 % change of the latent, far above honest rounding.
  const latent = state.latent.map((v, k) => (k % 3 === 0 ? v * 1.01 : v));
  const bytes = encodeCheckpoint({ ...state, latent }, manifest.latent_shape);
  writeFileSync(path, bytes);
  if (rewriteHash) {
    c.sha256 = sha256Hex(bytes);
    writeFileSync(join(dir, 'manifest.json'), encodeManifest(manifest));
  }
}

/** Puts a cheat's checkpoints and final latent under an honest run's names and steps, hashes rewritten. */
function presentAs(honestDir: string, cheatDir: string) {
  const m = readManifest(honestDir).manifest;
  const s = readManifest(cheatDir).manifest;
  m.checkpoints.forEach((c, i) => {
    const src = s.checkpoints[Math.round((i * (s.checkpoints.length - 1)) / (m.checkpoints.length - 1))];
    const state = decodeCheckpoint(readFileSync(join(cheatDir, src.file)), s.latent_shape, src.step, src.file);
    const bytes = encodeCheckpoint({ ...state, solver: { ...state.solver, stepIndex: c.step } }, m.latent_shape);
    writeFileSync(join(honestDir, c.file), bytes);
    c.sha256 = sha256Hex(bytes);
  });
  writeFileSync(join(honestDir, 'latent.safetensors'), readFileSync(join(cheatDir, 'latent.safetensors')));
  m.final!.sha256 = s.final!.sha256;
  writeFileSync(join(honestDir, 'manifest.json'), encodeManifest(m));
}

describe('generation', () => {
  it('writes checkpoints at the due steps and a complete manifest', async () => {
    const { dir, result } = await generate();
    const { manifest } = readManifest(dir);
    expect(manifest.complete).toBe(true);
    expect(manifest.checkpoints.map((c) => c.step)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(manifest.final?.sha256).toBe(sha256Hex(readFileSync(join(dir, 'latent.safetensors'))));
    for (const c of manifest.checkpoints) expect(sha256Hex(readFileSync(join(dir, c.file)))).toBe(c.sha256);
    expect(result.forwards).toBe(16);
    expect(checkpointSteps(40, 26)).toEqual([0, 5, 10, 15, 20, 25, 26, 30, 35, 40]);
  });

  it('resumes after an interruption to a final latent bit-identical to an uninterrupted run', async () => {
    const whole = await generate();
    const cut = await generate({ abortAfter: 3 });
    expect(cut.result.interrupted).toBe(true);
    const partial = readManifest(cut.dir).manifest;
    expect(partial.complete).toBe(false);
    expect(partial.final).toBeNull();
    expect(partial.checkpoints.map((c) => c.step)).toEqual([0, 1, 2, 3]);
    const last = partial.checkpoints[partial.checkpoints.length - 1];
    const start = decodeCheckpoint(readFileSync(join(cut.dir, last.file)), partial.latent_shape, last.step, last.file);
    const resumed = await executeGeneration({ dir: cut.dir, manifest: partial, setup: cut.prepared.setup, denoiser: toyDenoiser(), start });
    expect(resumed.interrupted).toBe(false);
    const a = readManifest(whole.dir).manifest, b = readManifest(cut.dir).manifest;
    expect(b.final!.sha256).toBe(a.final!.sha256);
    expect(b.checkpoints.map((c) => c.sha256)).toEqual(a.checkpoints.map((c) => c.sha256));
  });

  it('matches on every segment of an honest run, and on a full replay', async () => {
    const { dir } = await generate();
    const spot = await verify(dir);
    expect(spot.verdict).toBe('match');
    expect(spot.noise_ok).toBe(true);
    expect(spot.segments.length).toBe(8);
    for (const s of spot.segments) {
      expect(s.distance).toBeGreaterThan(0); // the validator's stand-in rounds differently
      expect(s.distance).toBeLessThan(THRESHOLD.segment);
      expect(s.per_frame.length).toBe(2);
    }
    const full = await verify(dir, { full: true });
    expect(full.verdict).toBe('match');
    expect(full.final!.to_step).toBe(8);
  });

  it('draws segments from the validator key and the manifest hash', () => {
    const a = drawSegments(8, 3, 'v', 'a'.repeat(64));
    expect(new Set(a).size).toBe(3);
    expect(drawSegments(8, 3, 'v', 'a'.repeat(64))).toEqual(a);
    const others = [1, 2, 3, 4, 5].map((i) => drawSegments(8, 3, `v${i}`, 'a'.repeat(64)).join());
    expect(new Set(others).size).toBeGreaterThan(1);
    expect(drawSegments(3, 10, 'v', 'b'.repeat(64))).toEqual([0, 1, 2]);
  });

  it('calls a perturbed checkpoint with its hash rewritten a mismatch', async () => {
    const { dir } = await generate();
    tamperCheckpoint(dir, 4, true);
    const r = await verify(dir);
    expect(r.verdict).toBe('mismatch');
    expect(r.segments.filter((s) => s.distance > THRESHOLD.segment).map((s) => s.to_step)).toContain(4);
  });

  it('calls a changed file without a new hash invalid', async () => {
    const { dir } = await generate();
    tamperCheckpoint(dir, 2, false);
    const r = await verify(dir);
    expect(r.verdict).toBe('invalid');
    expect(r.files_ok).toBe(false);
  });

  it('calls a run with S−1 steps presented as S a mismatch', async () => {
    const honest = await generate();
    presentAs(honest.dir, (await generate({ request: { ...REQUEST, steps: 7 } })).dir);
    expect((await verify(honest.dir)).verdict).toBe('mismatch');
    expect((await verify(honest.dir, { full: true })).verdict).toBe('mismatch');
  });

  it('calls CFG off a mismatch', async () => {
    const { dir } = await generate({ deviations: { cfgOff: true } });
    expect((await verify(dir)).verdict).toBe('mismatch');
  });

  it('calls a wrong noise a mismatch and delegates without a threshold', async () => {
    const { dir } = await generate();
    const m = readManifest(dir).manifest;
    m.request.seed = '8';
    writeFileSync(join(dir, 'manifest.json'), encodeManifest(m));
    const r = await verify(dir);
    expect(r.verdict).toBe('mismatch');
    expect(r.noise_ok).toBe(false);
    const honest = await generate();
    const d = await verify(honest.dir, { thresholds: null });
    expect(d.verdict).toBe('delegate');
    expect(d.segments).toEqual([]);
  });

  it('refuses truncated manifests and missing files with input errors', async () => {
    const { dir } = await generate();
    const text = readFileSync(join(dir, 'manifest.json'), 'utf8');
    expect(() => parseManifest(text.slice(0, text.length / 2))).toThrow(/not valid JSON/);
    const m = JSON.parse(text);
    m.checkpoints[1].file = '../escape.safetensors';
    expect(() => parseManifest(JSON.stringify(m))).toThrow(/leaves the generation directory/);
    rmSync(join(dir, 'checkpoints/step-0003.safetensors'));
    await expect(verify(dir)).rejects.toThrow(/missing/);
  });

  it('measures relative L2 overall and per frame', () => {
    const b = Float32Array.from({ length: 2 * 2 * 1 * 2 }, (_, i) => i + 1);
    const a = b.slice();
    a[2] += 1; // channel 0, frame 1
    const d = latentDistance(a, b, [2, 2, 1, 2]);
    expect(d.perFrame[0]).toBe(0);
    expect(d.perFrame[1]).toBeCloseTo(1 / Math.sqrt(3 * 3 + 4 * 4 + 7 * 7 + 8 * 8), 12);
    expect(d.distance).toBeCloseTo(1 / Math.sqrt(204), 12);
  });
});

describe('tamper cases on the engine (wan-tiny, bf16)', () => {
  let model: NativeModel;
  beforeAll(async () => {
    model = await loadTiny(2);
  });
  afterAll(() => model?.dispose());

  it('calls CFG off and S−1 steps presented as S mismatches, and matches the honest run', async () => {
    const denoiser = () => nativeDenoiser(model, 'bf16');
    const honest = await generate({ denoiser: denoiser() });
    expect((await verify(honest.dir, { denoiser: denoiser() })).verdict).toBe('match');
    const cfgOff = await generate({ denoiser: denoiser(), deviations: { cfgOff: true } });
    expect((await verify(cfgOff.dir, { denoiser: denoiser() })).verdict).toBe('mismatch');
    presentAs(honest.dir, (await generate({ denoiser: denoiser(), request: { ...REQUEST, steps: 7 } })).dir);
    const r = await verify(honest.dir, { denoiser: denoiser() });
    expect(r.verdict).toBe('mismatch');
    expect(Math.max(...r.segments.map((x) => x.distance))).toBeGreaterThan(THRESHOLD.segment);
  }, 120_000);
});

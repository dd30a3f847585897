// `dit-poc infer` and `dit-poc verify-inference` as a user runs them: bad input (exit 2, no
// output that looks complete) and, on the native engine, a real generation, its resume after an
// interruption, and its validation.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { addon } from '../src/engine/native.js';
import { executeGeneration, newManifest } from '../src/inference/executor.js';
import { initialNoise, prepareGeneration } from '../src/inference/generation-setup.js';
import { decodeCheckpoint, encodeCheckpoint } from '../src/inference/checkpoint-files.js';
import { encodeManifest, readManifest, sha256Hex, type InferenceRequest } from '../src/inference/manifest.js';
import { initialSolverState } from '../src/inference/scheduler.js';
import { runCli } from './helpers/cli.js';
import { writeSafetensors } from './helpers/safetensors-writer.js';
import { toyDenoiser } from './helpers/toy-denoiser.js';

const root = mkdtempSync(join(tmpdir(), 'dit-poc-infer-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const BASE = ['infer', '--model', 'wan-tiny', '--weights-seed', 'w', '--seed', '1', '--prompt-seed', 'p', '--width', '32', '--height', '32', '--frames', '5', '--threads', '1', '--backend', 'cpu'];

function contextFile(name: string, tensors: Record<string, number[]>): string {
  const p = join(root, name);
  writeSafetensors(p, new Map(Object.entries(tensors).map(([k, shape]) => [k, { shape, values: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i)) }])), 'F32');
  return p;
}

async function expectUsageError(args: string[], pattern: RegExp, out: string) {
  const r = await runCli(args);
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr).toMatch(pattern);
  expect(existsSync(join(out, 'manifest.json'))).toBe(false);
  expect(existsSync(join(out, 'latent.safetensors'))).toBe(false);
}

// A finished generation made with the stand-in denoiser (files only; no engine needed).
async function toyGeneration(name: string): Promise<string> {
  const dir = join(root, name);
  const cfg = addon().models().find((m) => m.id === 'wan-tiny')!;
  const req: InferenceRequest = { model: 'wan-tiny', width: 32, height: 32, frames: 5, steps: 8, shift: 5, guide: [3, 4], boundary: 0.875, seed: '1', noise: { source: 'spec' }, context: { source: 'seeded', prompt_seed: 'p', tokens: 4 } };
  const prepared = prepareGeneration(req, cfg, dir);
  const manifest = newManifest(req, prepared, { source: 'random', seed: 'w', identity: 'toy' }, { engine_version: 't', backend: 'cpu', device: 't', precision: 'bf16', threads: 1 });
  const ctl = new AbortController();
  await executeGeneration({ dir, manifest, setup: prepared.setup, denoiser: toyDenoiser(), signal: ctl.signal, start: { latent: initialNoise(req, prepared.setup, dir), solver: initialSolverState() }, onStep: (r) => r.step === 4 && ctl.abort() });
  return dir;
}

describe('dit-poc infer: bad input', () => {
  it('refuses a context file with wrong tensor names or shapes', async () => {
    const out = join(root, 'bad-ctx');
    const names = contextFile('names.safetensors', { prompt: [4, 4096], context_null: [4, 4096] });
    await expectUsageError([...BASE.filter((a) => a !== '--prompt-seed' && a !== 'p'), '--context', names, '--out', out], /no tensor 'context'/, out);
    const shapes = contextFile('shapes.safetensors', { context: [4, 1024], context_null: [4, 4096] });
    await expectUsageError([...BASE.filter((a) => a !== '--prompt-seed' && a !== 'p'), '--context', shapes, '--out', out], /shape \[4, 1024\], expected \[n ≤ 512, 4096\]/, out);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses frames that are not 4n+1 and sizes that are not multiples of 16', async () => {
    const out = join(root, 'bad-size');
    await expectUsageError([...BASE.slice(0, -6), '--frames', '6', '--threads', '1', '--backend', 'cpu', '--out', out], /frames must be 4·k \+ 1/, out);
    const wide = BASE.map((a, i) => (BASE[i - 1] === '--width' ? '40' : a));
    await expectUsageError([...wide, '--out', out], /width must be divisible by 16/, out);
    const oneExpert = BASE.map((a, i) => (BASE[i - 1] === '--model' ? 'wan2.1-t2v-1.3b' : a));
    await expectUsageError([...oneExpert, '--guide', '3,4', '--out', out], /single-expert model takes one guide scale/, out);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses a truncated manifest and a missing checkpoint on --resume', async () => {
    const dir = await toyGeneration('cut');
    const text = readFileSync(join(dir, 'manifest.json'), 'utf8');
    const m = readManifest(dir).manifest;
    rmSync(join(dir, m.checkpoints[m.checkpoints.length - 1].file));
    let r = await runCli(['infer', '--out', dir, '--resume']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/step-0004\.safetensors is missing/);
    writeFileSync(join(dir, 'manifest.json'), text.slice(0, 200));
    r = await runCli(['infer', '--out', dir, '--resume']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/not valid JSON \(truncated\?\)/);
    r = await runCli(['verify-inference', dir]);
    expect(r.code).toBe(2);
    expect(existsSync(join(dir, 'latent.safetensors'))).toBe(false);
  });

  it('refuses to verify a generation with a missing checkpoint file', async () => {
    const dir = await toyGeneration('incomplete');
    let r = await runCli(['verify-inference', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/incomplete/);
    const m = readManifest(dir).manifest;
    m.complete = true;
    m.final = { file: 'latent.safetensors', sha256: 'a'.repeat(64) };
    m.checkpoint_steps = m.checkpoints.map((c) => c.step);
    writeFileSync(join(dir, 'manifest.json'), encodeManifest(m));
    r = await runCli(['verify-inference', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/latent\.safetensors is missing/);
  });

  it('refuses to overwrite a generation without --resume', async () => {
    const dir = await toyGeneration('exists');
    await expect(runCli([...BASE, '--out', dir])).resolves.toMatchObject({ code: 2 });
  });
});

describe('dit-poc infer and verify-inference on the engine (wan-tiny)', () => {
  // 24 steps: checkpoints every 3 steps and at the expert switch, long enough to interrupt.
  const ARGS = [...BASE, '--steps', '24', '--threads', '2'];
  const calDir = join(root, 'cal');
  const whole = join(root, 'whole');

  function writeThresholds(segment: number, final: number) {
    mkdirSync(calDir, { recursive: true });
    writeFileSync(join(calDir, 'wan-tiny.json'), JSON.stringify({ model: 'wan-tiny', inference: { runtime_pairs: { 'cpu-bf16|cpu-bf16': { segment, final } }, basis: 'test', steps: 24, size: '32x32x5', runs: 1, created: 'test', command: 'test' } }));
  }

  it('generates, reports FLOPs and s/forward, and resumes after Ctrl-C to the same final latent', async () => {
    const r = await runCli([...ARGS, '--out', whole, '--json'], { timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.complete).toBe(true);
    expect(summary.cost.flops).toBe(summary.cost.flops_per_forward * 48);
    expect(summary.cost.s_per_forward).toBeGreaterThan(0);
    const m = readManifest(whole).manifest;
    expect(m.checkpoint_steps).toContain(m.timesteps.filter((t) => t >= 875).length); // the expert switch

    const cut = join(root, 'cut-real');
    const interrupted = await runCli([...ARGS, '--out', cut], {
      timeoutMs: 300_000,
      onSpawn: (p) => {
        const timer = setInterval(() => {
          if (existsSync(join(cut, 'checkpoints/step-0006.safetensors'))) {
            clearInterval(timer);
            p.kill('SIGINT');
          }
        }, 20);
        p.on('close', () => clearInterval(timer));
      },
    });
    expect(interrupted.code, interrupted.stderr).toBe(130);
    expect(interrupted.stderr).toMatch(/--resume/);
    const partial = readManifest(cut).manifest;
    expect(partial.complete).toBe(false);
    expect(partial.checkpoints.length).toBeLessThan(m.checkpoints.length);
    expect(existsSync(join(cut, 'latent.safetensors'))).toBe(false);
    const resumed = await runCli(['infer', '--out', cut, '--resume'], { timeoutMs: 300_000 });
    expect(resumed.code, resumed.stderr).toBe(0);
    const done = readManifest(cut).manifest;
    expect(done.final!.sha256).toBe(m.final!.sha256);
    expect(done.checkpoints.map((c) => c.sha256)).toEqual(m.checkpoints.map((c) => c.sha256));
  }, 600_000);

  it('matches on every segment of an honest run, delegates without a threshold', async () => {
    let r = await runCli(['verify-inference', whole, '--json', '--calibration-dir', join(root, 'none')], { timeoutMs: 300_000 });
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stdout)).toMatchObject({ verdict: 'delegate', noise_ok: true, files_ok: true });
    writeThresholds(1e-3, 1e-2);
    const n = readManifest(whole).manifest.checkpoints.length - 1;
    r = await runCli(['verify-inference', whole, '--json', '--segments', String(n), '--threads', '1', '--calibration-dir', calDir], { timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.verdict).toBe('match');
    expect(report.segments.length).toBe(n);
    for (const s of report.segments) expect(s.distance).toBeLessThanOrEqual(s.threshold);
  }, 600_000);

  it('calls a perturbed checkpoint with its hash rewritten a mismatch, and a changed file invalid', async () => {
    writeThresholds(1e-3, 1e-2);
    const dir = join(root, 'tampered');
    cpSync(whole, dir, { recursive: true });
    const m = readManifest(dir).manifest;
    const c = m.checkpoints[4];
    const state = decodeCheckpoint(readFileSync(join(dir, c.file)), m.latent_shape, c.step, c.file);
    const bytes = encodeCheckpoint({ ...state, latent: state.latent.map((v, i) => (i % 5 === 0 ? v * 1.02 : v)) }, m.latent_shape);
    writeFileSync(join(dir, c.file), bytes);
    c.sha256 = sha256Hex(bytes);
    writeFileSync(join(dir, 'manifest.json'), encodeManifest(m));
    const all = String(m.checkpoints.length - 1);
    let r = await runCli(['verify-inference', dir, '--json', '--segments', all, '--calibration-dir', calDir], { timeoutMs: 300_000 });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).verdict).toBe('mismatch');
    writeFileSync(join(dir, m.checkpoints[2].file), Buffer.concat([readFileSync(join(dir, m.checkpoints[2].file)), Buffer.from([0])]));
    r = await runCli(['verify-inference', dir, '--json', '--calibration-dir', calDir], { timeoutMs: 300_000 });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ verdict: 'invalid', files_ok: false });
  }, 600_000);
});

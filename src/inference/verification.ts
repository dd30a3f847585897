// Validation of a generation (SPEC §13 step 6): every named file's SHA-256, the noise re-drawn
// and checkpoint 0 compared bit for bit, then K segments drawn from the validator's key and the
// manifest hash (resume from checkpoint j, run to j+1, relative L2 to the executor's j+1) or a
// full replay. Distances above the calibrated threshold of the runtime pair are a mismatch; a
// pair without a calibrated threshold gets `delegate`, never a verdict.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { ModelInfo } from '../engine/native.js';
import { InputError } from '../errors.js';
import { seed32 } from '../seeds/rng.js';
import { decodeCheckpoint } from './checkpoint-files.js';
import type { LatentShape } from './conditioning.js';
import type { Denoiser } from './denoiser.js';
import { initialNoise, prepareGeneration } from './generation-setup.js';
import { runLoop, type LoopState } from './loop.js';
import { readManifest, sha256Hex, type FileRef } from './manifest.js';
import { parseSafetensors } from './safetensors.js';

export type Verdict = 'match' | 'mismatch' | 'invalid' | 'delegate';

export interface InferenceThreshold {
  /** Largest honest relative L2 of one checkpoint-to-checkpoint segment. */
  segment: number;
  /** Largest honest relative L2 of the final latent after a full replay. */
  final: number;
}

export interface SegmentResult {
  from_step: number;
  to_step: number;
  distance: number;
  per_frame: number[];
  threshold: number | null;
}

export interface VerifyReport {
  verdict: Verdict;
  reason: string;
  manifest_sha256: string;
  files_ok: boolean;
  noise_ok: boolean | null;
  runtime_pair: string;
  threshold: InferenceThreshold | null;
  mode: 'segments' | 'full';
  segments: SegmentResult[];
  final: SegmentResult | null;
}

export interface VerifyOptions {
  dir: string;
  cfg: ModelInfo;
  /** The validator's runtime class, e.g. "cpu-bf16". */
  validatorRuntime: string;
  thresholds: (executorRuntime: string, validatorRuntime: string) => InferenceThreshold | null;
  /** Opened only when segments are replayed (a delegate or invalid verdict needs no model). */
  denoiser: () => Promise<Denoiser>;
  segments: number;
  full: boolean;
  validatorKey: string;
}

export function runtimeClass(backend: string, precision: string): string {
  return `${backend}-${precision}`;
}

export function runtimePair(a: string, b: string): string {
  return [a, b].sort().join('|');
}

/** Relative L2 ‖a − b‖ / ‖b‖ (b the executor's), overall and per latent frame of [C, F, H, W]. */
export function latentDistance(a: Float32Array, b: Float32Array, shape: LatentShape): { distance: number; perFrame: number[] } {
  const [c, frames, h, w] = shape;
  const plane = h * w;
  const num = new Float64Array(frames), den = new Float64Array(frames);
  for (let ch = 0; ch < c; ch++) {
    for (let fr = 0; fr < frames; fr++) {
      const base = (ch * frames + fr) * plane;
      for (let k = base; k < base + plane; k++) {
        const d = a[k] - b[k];
        num[fr] += d * d;
        den[fr] += b[k] * b[k];
      }
    }
  }
  const rel = (n: number, d: number) => (d > 0 ? Math.sqrt(n / d) : n > 0 ? Infinity : 0);
  const total = rel(num.reduce((x, y) => x + y, 0), den.reduce((x, y) => x + y, 0));
  // NaN anywhere is as far as it gets (NaN > threshold would be false).
  const clean = (x: number) => (Number.isNaN(x) ? Infinity : x);
  return { distance: clean(total), perFrame: Array.from(num, (n, i) => clean(rel(n, den[i]))) };
}

/** K distinct segment indices in [0, count), drawn from the validator's key and the manifest hash. */
export function drawSegments(count: number, k: number, validatorKey: string, manifestSha256: string): number[] {
  const picked: number[] = [];
  const want = Math.min(k, count);
  for (let r = 0; picked.length < want; r++) {
    const j = seed32(`${validatorKey}_${manifestSha256}_segment_${r}`) % count;
    if (!picked.includes(j)) picked.push(j);
  }
  return picked.sort((a, b) => a - b);
}

function fileBytes(dir: string, ref: FileRef): Buffer {
  const path = join(dir, ref.file);
  if (!existsSync(path)) throw new InputError(`${path} is missing (named by the manifest)`);
  return readFileSync(path);
}

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

export async function verifyGeneration(o: VerifyOptions): Promise<VerifyReport> {
  const { manifest: m, sha256: manifestHash } = readManifest(o.dir);
  if (!m.complete) throw new InputError(`${o.dir}: the generation is incomplete (resume it with \`dit-poc infer --resume\`)`);
  if (m.request.model !== o.cfg.id) throw new InputError(`the manifest is for model ${m.request.model}, not ${o.cfg.id}`);
  const executor = runtimeClass(m.runtime.backend, m.runtime.precision);
  const report: VerifyReport = {
    verdict: 'match',
    reason: '',
    manifest_sha256: manifestHash,
    files_ok: true,
    noise_ok: null,
    runtime_pair: runtimePair(executor, o.validatorRuntime),
    threshold: null,
    mode: o.full ? 'full' : 'segments',
    segments: [],
    final: null,
  };
  const done = (verdict: Verdict, reason: string) => Object.assign(report, { verdict, reason });

  // (a) Every named file, by SHA-256: a file that does not match its hash is an invalid claim.
  const refs: FileRef[] = [...m.checkpoints, m.final!];
  if (m.request.context.source === 'file') refs.push(m.request.context);
  if (m.request.noise.source === 'file') refs.push(m.request.noise);
  const bytes = new Map<string, Buffer>();
  for (const ref of refs) {
    const data = fileBytes(o.dir, ref);
    bytes.set(ref.file, data);
    if (sha256Hex(data) !== ref.sha256) {
      report.files_ok = false;
      return done('invalid', `${ref.file} does not match its SHA-256 in the manifest`);
    }
  }
  const shape = m.latent_shape;
  const prepared = prepareGeneration(m.request, o.cfg, o.dir);
  if (prepared.setup.latentShape.some((d, i) => d !== shape[i])) return done('invalid', 'latent_shape does not fit the request');
  if (prepared.timesteps.some((t, i) => t !== m.timesteps[i])) return done('invalid', 'timesteps do not fit the request');
  const states = new Map<number, LoopState>();
  const stateAt = (i: number): LoopState => {
    const c = m.checkpoints[i];
    let s = states.get(i);
    if (!s) states.set(i, (s = decodeCheckpoint(bytes.get(c.file)!, shape, c.step, join(o.dir, c.file))));
    return s;
  };
  const last = stateAt(m.checkpoints.length - 1);
  const final = parseSafetensors(bytes.get(m.final!.file)!, join(o.dir, m.final!.file)).tensors.get('latent');
  if (!final || !bitsEqual(final.values, last.latent)) return done('invalid', 'the final latent differs from the last checkpoint');

  // (b) The noise, re-drawn, must be checkpoint 0 bit for bit.
  const noise = initialNoise(m.request, prepared.setup, o.dir);
  report.noise_ok = bitsEqual(noise, stateAt(0).latent);
  if (!report.noise_ok) return done('mismatch', 'checkpoint 0 is not the request\'s noise');

  const threshold = o.thresholds(executor, o.validatorRuntime);
  report.threshold = threshold;
  if (!threshold) return done('delegate', `no calibrated threshold for runtime pair ${report.runtime_pair}`);

  const denoiser = await o.denoiser();
  const pairs = m.checkpoints.length - 1;
  if (o.full) {
    let state: LoopState = { latent: noise, solver: stateAt(0).solver };
    for (let j = 0; j < pairs; j++) {
      const to = m.checkpoints[j + 1];
      state = await runLoop(prepared.setup, denoiser, state, { until: to.step });
      const d = latentDistance(state.latent, stateAt(j + 1).latent, shape);
      // Cumulative replay distances: informative; the verdict is the final latent's.
      report.segments.push({ from_step: 0, to_step: to.step, distance: d.distance, per_frame: d.perFrame, threshold: null });
    }
    const f = report.segments[report.segments.length - 1];
    report.final = { ...f, threshold: threshold.final };
    return f.distance > threshold.final ? done('mismatch', `final latent distance ${f.distance} > ${threshold.final}`) : done('match', 'full replay within the threshold');
  }
  for (const j of drawSegments(pairs, o.segments, o.validatorKey, manifestHash)) {
    const from = stateAt(j);
    const to = m.checkpoints[j + 1];
    const state = await runLoop(prepared.setup, denoiser, from, { until: to.step });
    const d = latentDistance(state.latent, stateAt(j + 1).latent, shape);
    report.segments.push({ from_step: from.solver.stepIndex, to_step: to.step, distance: d.distance, per_frame: d.perFrame, threshold: threshold.segment });
  }
  const bad = report.segments.filter((s) => s.distance > threshold.segment);
  return bad.length > 0
    ? done('mismatch', `${bad.length} of ${report.segments.length} segments above ${threshold.segment}`)
    : done('match', `${report.segments.length} segments within ${threshold.segment}`);
}

/** Exit codes of `verify-inference`: 0 match, 1 mismatch or invalid, 3 delegate. */
export function verdictExitCode(v: Verdict): number {
  return v === 'match' ? 0 : v === 'delegate' ? 3 : 1;
}


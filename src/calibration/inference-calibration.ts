// DiFR-style calibration of inference validation (SPEC §13 step 7): for several requests, an
// honest reference generation on the CPU, then
//   benign variants (other thread count, cond/uncond in separate calls, fp32, FlashAttention-style
//   probabilities) as validators: resume each reference checkpoint j, run to j+1, distance to the
//   reference's j+1; and a full replay, distance of the final latents;
//   malign variants (fewer steps, CFG off, one expert, wrong boundary, cheap weights, reused
//   predictions, another seed) as executors: an honest validator resumes each of the cheat's
//   checkpoints and compares with the cheat's next one; the final latents against the honest one.
// The distances go through the PoC calibration's report machinery (AUC, pAUC@1 %, thresholds).
import type { ModelInfo, Precision } from '../engine/native.js';
import { checkpointSteps } from '../inference/checkpoint-files.js';
import type { Denoiser } from '../inference/denoiser.js';
import { initialNoise, prepareGeneration } from '../inference/generation-setup.js';
import { runLoop, type LoopDeviations, type LoopState } from '../inference/loop.js';
import type { InferenceRequest } from '../inference/manifest.js';
import { latentDistance } from '../inference/verification.js';
import { buildCalibrationResult, type CalibrationResult } from './report.js';

export interface InferenceRuntime {
  precision: Precision;
  threads?: number;
  weightTransform?: string;
  /** cond and uncond as two denoiser calls instead of one batch of two. */
  splitBatch?: boolean;
}

export interface InferenceVariant {
  name: string;
  kind: 'benign' | 'malign';
  runtime?: Partial<InferenceRuntime>;
  /** Request fields the cheat changes (steps, boundary, seed). */
  request?: Partial<Pick<InferenceRequest, 'steps' | 'boundary' | 'seed'>>;
  deviations?: LoopDeviations;
}

export function inferenceVariants(cfg: ModelInfo, steps: number): InferenceVariant[] {
  const v: InferenceVariant[] = [
    { name: 'one thread', kind: 'benign', runtime: { threads: 1 } },
    { name: 'cond and uncond in separate calls', kind: 'benign', runtime: { splitBatch: true } },
    { name: 'fp32 GEMM/attention inputs', kind: 'benign', runtime: { precision: 'fp32' } },
    { name: 'bf16 attention probabilities (FlashAttention-style)', kind: 'benign', runtime: { precision: 'bf16-flash' } },
    { name: `S−1 = ${steps - 1} steps`, kind: 'malign', request: { steps: steps - 1 } },
    { name: `0.75·S = ${Math.round(0.75 * steps)} steps`, kind: 'malign', request: { steps: Math.round(0.75 * steps) } },
    { name: 'CFG off', kind: 'malign', deviations: { cfgOff: true } },
  ];
  if (cfg.experts.length === 2) {
    v.push(
      { name: 'high-noise expert for all steps', kind: 'malign', deviations: { expert: 0 } },
      { name: 'low-noise expert for all steps', kind: 'malign', deviations: { expert: 1 } },
      { name: 'wrong boundary (0.75)', kind: 'malign', request: { boundary: 0.75 } },
    );
  }
  v.push(
    { name: 'weights in fp8 e4m3', kind: 'malign', runtime: { weightTransform: 'fp8' } },
    { name: 'weights in int4 (group 128)', kind: 'malign', runtime: { weightTransform: 'int4:128' } },
    { name: 'weights with 1 % noise', kind: 'malign', runtime: { weightTransform: 'noise:0.01:calibration' } },
    { name: 'previous prediction reused on alternate steps', kind: 'malign', deviations: { reusePrediction: true } },
    { name: 'another seed', kind: 'malign', request: { seed: 'another' } },
  );
  return v;
}

export type DenoiserFactory = (rt: InferenceRuntime) => Promise<{ denoiser: Denoiser; dispose: () => void }>;

export interface InferenceCalibrationOptions {
  cfg: ModelInfo;
  /** The requests calibrated (one generation each); the validator's runtime is the reference. */
  requests: InferenceRequest[];
  reference: InferenceRuntime;
  variants: InferenceVariant[];
  open: DenoiserFactory;
  /** Where request files would live (seeded contexts and spec noise need none). */
  dir: string;
  onProgress?: (what: string) => void;
}

export interface SpotCheckPower {
  deviation: string;
  /** Segments of a generation the cheat touches. */
  touched: number;
  /** Segments the validator checks. */
  k: number;
  power: number;
}

export interface InferenceCalibrationRun {
  segments: CalibrationResult;
  final: CalibrationResult;
  segmentDistances: Map<string, number[]>;
  finalDistances: Map<string, number[]>;
  /** Malign variants whose checkpoint 0 is not the request's noise (caught bit-exactly). */
  caughtByNoise: string[];
  segmentsPerGeneration: number;
  power: SpotCheckPower[];
}

/** Splits a batched CFG call into one call per context. */
function splitBatch(d: Denoiser): Denoiser {
  return {
    async denoise(call) {
      const parts: Float32Array[] = [];
      for (const c of call.contexts) parts.push(await d.denoise({ ...call, contexts: [c] }));
      const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
      let o = 0;
      for (const p of parts) {
        out.set(p, o);
        o += p.length;
      }
      return out;
    },
  };
}

/** States of a run at the given steps (index 0: the start state). */
async function trajectory(req: InferenceRequest, o: InferenceCalibrationOptions, d: Denoiser, due: number[], deviations?: LoopDeviations): Promise<LoopState[]> {
  const { setup } = prepareGeneration(req, o.cfg, o.dir);
  const start: LoopState = { latent: initialNoise(req, setup, o.dir), solver: { stepIndex: 0, lowerOrderNums: 0, thisOrder: 0, modelOutputs: [null, null], lastSample: null } };
  const states: LoopState[] = [start];
  const want = new Set(due);
  await runLoop(setup, d, start, {
    until: req.steps,
    deviations,
    onStep: (s) => {
      if (want.has(s.solver.stepIndex)) states.push({ latent: s.latent, solver: { ...s.solver, modelOutputs: [...s.solver.modelOutputs] } });
    },
  });
  return states;
}

function hypergeometric(n: number, good: number, k: number, i: number): number {
  const c = (a: number, b: number) => {
    if (b < 0 || b > a) return 0;
    let r = 1;
    for (let j = 1; j <= b; j++) r = (r * (a - b + j)) / j;
    return r;
  };
  return (c(good, i) * c(n - good, k - i)) / c(n, k);
}

/** P(at least one mismatch) when K of N segments are checked and `touched` carry the cheat. */
export function spotCheckPower(n: number, touched: number, k: number, mismatchRate: number): number {
  let miss = 0;
  for (let i = 0; i <= Math.min(k, touched); i++) miss += hypergeometric(n, touched, k, i) * (1 - mismatchRate) ** i;
  return 1 - miss;
}

export async function calibrateInference(o: InferenceCalibrationOptions): Promise<InferenceCalibrationRun> {
  const ref = await o.open(o.reference);
  const segmentDistances = new Map<string, number[]>();
  const finalDistances = new Map<string, number[]>();
  const caughtByNoise: string[] = [];
  let segmentsPerGeneration = 0;
  try {
    const plans = o.requests.map((req) => {
      const p = prepareGeneration(req, o.cfg, o.dir);
      return { req, setup: p.setup, due: checkpointSteps(req.steps, p.highNoiseSteps).slice(1) };
    });
    segmentsPerGeneration = plans[0].due.length;
    const refStates: LoopState[][] = [];
    for (const [r, p] of plans.entries()) {
      o.onProgress?.(`reference run ${r + 1}/${plans.length}`);
      refStates.push(await trajectory(p.req, o, ref.denoiser, p.due));
    }
    for (const v of o.variants) {
      o.onProgress?.(v.name);
      const rt: InferenceRuntime = { ...o.reference, ...v.runtime };
      const own = rt.precision !== o.reference.precision || rt.threads !== o.reference.threads || rt.weightTransform !== o.reference.weightTransform ? await o.open(rt) : ref;
      const seg: number[] = [];
      const fin: number[] = [];
      try {
        const d = rt.splitBatch ? splitBatch(own.denoiser) : own.denoiser;
        for (const [r, p] of plans.entries()) {
          const honest = refStates[r];
          const last = honest[honest.length - 1].latent;
          if (v.kind === 'benign') {
            // This runtime validates the reference: segment replays and a full replay.
            for (let j = 0; j + 1 < honest.length; j++) {
              const s = await runLoop(p.setup, d, honest[j], { until: honest[j + 1].solver.stepIndex });
              seg.push(latentDistance(s.latent, honest[j + 1].latent, p.setup.latentShape).distance);
            }
            const full = await runLoop(p.setup, d, honest[0], { until: p.req.steps });
            fin.push(latentDistance(full.latent, last, p.setup.latentShape).distance);
            continue;
          }
          // The cheat executes; its checkpoints are presented under the honest steps.
          const cheatReq = { ...p.req, ...v.request, seed: v.request?.seed ? `${p.req.seed}-${v.request.seed}` : p.req.seed };
          const cheatPrep = prepareGeneration(cheatReq, o.cfg, o.dir);
          const cheatDue = checkpointSteps(cheatReq.steps, cheatPrep.highNoiseSteps).slice(1);
          const cheat = await trajectory(cheatReq, o, d, cheatDue, v.deviations);
          const at = (i: number): LoopState => {
            const c = cheat[Math.round((i * (cheat.length - 1)) / (honest.length - 1))];
            return { latent: c.latent, solver: { ...c.solver, stepIndex: honest[i].solver.stepIndex } };
          };
          if (r === 0 && !Buffer.from(at(0).latent.buffer).equals(Buffer.from(honest[0].latent.buffer))) caughtByNoise.push(v.name);
          for (let j = 0; j + 1 < honest.length; j++) {
            const s = await runLoop(p.setup, ref.denoiser, at(j), { until: honest[j + 1].solver.stepIndex });
            seg.push(latentDistance(s.latent, at(j + 1).latent, p.setup.latentShape).distance);
          }
          fin.push(latentDistance(at(honest.length - 1).latent, last, p.setup.latentShape).distance);
        }
      } finally {
        if (own !== ref) own.dispose();
      }
      segmentDistances.set(v.name, seg);
      finalDistances.set(v.name, fin);
    }
  } finally {
    ref.dispose();
  }
  // SPEC §13 step 7: the 1 %-false-positive point (p99) of the worst honest class, with 1.5×
  // headroom for honest runtimes not measured here, as the PoC calibration (§10) keeps.
  const statTest = { quantile: 0.99, margin: 1.5, floor: 1e-6 };
  const build = (dist: Map<string, number[]>, what: string) =>
    buildCalibrationResult({
      model: o.cfg.id,
      reference: `${what}: cpu backend, ${o.reference.precision}, ${o.requests.length} generations of ${o.requests[0].width}×${o.requests[0].height}×${o.requests[0].frames}, ${o.requests[0].steps} steps`,
      deviations: o.variants.map((v) => ({ name: v.name, kind: v.kind, distances: dist.get(v.name)! })),
      fractions: [],
      statTest,
    });
  const segments = build(segmentDistances, 'segments');
  const final = build(finalDistances, 'final latent');
  const power: SpotCheckPower[] = [];
  const n = segmentsPerGeneration;
  for (const d of segments.deviations.filter((x) => x.kind === 'malign')) {
    for (const touched of [...new Set([1, Math.max(1, Math.floor(n / 2)), n])]) {
      for (const k of [...new Set([1, 2, Math.min(4, n)])]) power.push({ deviation: d.name, touched, k, power: spotCheckPower(n, touched, k, d.mismatch_rate_at_threshold) });
    }
  }
  return { segments, final, segmentDistances, finalDistances, caughtByNoise, segmentsPerGeneration, power };
}

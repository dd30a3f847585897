// DiFR-style calibration: the same nonces under a reference configuration and under each
// variant; the artifact distances to the reference tell honest recomputation from cheating.
import { artifactDistance, decodeArtifact } from '../artifact/artifact.js';
import { addon, type NativeModel } from '../engine/native.js';
import { NonceRunner, openModel } from '../engine/nonce-runner.js';
import type { RoundParams } from '../round/params.js';
import { buildCalibrationResult, type CalibrationResult } from './report.js';
import { rocCurve } from './stats.js';
import type { Variant } from './variants.js';

export interface CalibrateOptions {
  round: RoundParams;
  nonces: number[];
  variants: Variant[];
  threads?: number;
  batch: number;
  nSamples: number;
  onVariant?: (name: string, index: number, total: number) => void;
}

export interface CalibrationRun {
  result: CalibrationResult;
  distances: Map<string, number[]>;
  rocs: { label: string; fpr: number[]; tpr: number[] }[];
}

async function artifactsOf(model: NativeModel, round: RoundParams, v: Variant | null, nonces: number[], batch: number) {
  const runner = new NonceRunner(model, { ...round, precision: v?.precision ?? round.precision, ctxLen: v?.ctxLen ?? round.ctxLen }, { ...v?.deviations, weightTransform: undefined });
  const out: (Float32Array | null)[] = [];
  for (let i = 0; i < nonces.length; i += batch) {
    for (const r of await runner.run(nonces.slice(i, i + batch))) out.push(r.vectorB64 ? decodeArtifact(r.vectorB64, round.kDim) : null);
  }
  return out;
}

export async function calibrate(o: CalibrateOptions): Promise<CalibrationRun> {
  const { nonces } = o;
  // The reference is the CPU backend, what every validator can run; variants name their own.
  const round: RoundParams = { ...o.round, backend: 'cpu' };
  const reference = await openModel(round, o.threads);
  const referenceThreads = reference.threads;
  const distances = new Map<string, number[]>();
  try {
    const ref = await artifactsOf(reference, round, null, nonces, o.batch);
    for (const [i, v] of o.variants.entries()) {
      o.onVariant?.(v.name, i, o.variants.length);
      const transform = v.deviations?.weightTransform;
      const backend = v.backend ?? round.backend;
      const own = transform || v.threads || backend !== round.backend
        ? await openModel({ ...round, backend }, v.threads ?? o.threads, undefined, transform)
        : reference;
      try {
        const arts = await artifactsOf(own, round, v, nonces, v.batch ?? o.batch);
        // A nonce without an artifact on either side (non-finite output) is as far as it gets.
        distances.set(v.name, arts.map((a, j) => (a && ref[j] ? artifactDistance(a, ref[j]!) : 2)));
      } finally {
        if (own !== reference) own.dispose();
      }
    }
  } finally {
    reference.dispose();
  }

  const result = buildCalibrationResult({
    model: round.model,
    reference: `cpu backend (path ${addon().buildInfo().simd}), ${round.precision} precision, batch ${o.batch}, ${referenceThreads} threads, weights ${round.weights === 'random' ? `random:${round.weightsSeed}` : round.weights}, grid ${round.grid.join('x')}, ctx_len ${round.ctxLen}`,
    deviations: o.variants.map((v) => ({ name: v.name, kind: v.kind, distances: distances.get(v.name)! })),
    nSamples: o.nSamples,
    // The threshold sits well above honest noise: 1.5 × the p99.9 of the worst honest
    // configuration, so honest provers (hardware not measured here included) mismatch far
    // less often than p_mismatch = 0.02 assumes, while cheats that move artifacts more stay caught.
    statTest: { quantile: 0.999, margin: 1.5 },
  });
  const honest = o.variants.filter((v) => v.kind === 'benign').flatMap((v) => distances.get(v.name)!);
  const rocs = o.variants
    .filter((v) => v.kind === 'malign')
    .map((v) => ({ label: v.name, ...rocCurve(honest, distances.get(v.name)!) }));
  return { result, distances, rocs };
}

// Validates a proof bundle as a Gonka validator would (SPEC §10, gonka-poc.md §5.4): the
// commitment is the bundle's (root, count), proofs come from the bundle's artifacts (playing the
// prover's proof API), a seeded sample of dense indices is checked and recomputed, and a
// one-sided binomial test decides.
import type { Bundle } from '../bundle/reader.js';
import { SmstBuilder } from '../commitment/smst.js';
import type { NonceRunner } from '../engine/nonce-runner.js';
import { proofsInWorker } from '../workers/pool.js';
import { recomputeAndCompare, type ComparedClaim } from './recompute.js';
import { sampleDenseIndices, samplingSeed } from './sampling.js';
import { POROSITY_LIMIT, decideVerdict, porosity, type StatTest, type Verdict } from './verdict.js';

export interface ValidateOptions {
  validatorKey: string;
  samplingHash: string;
  nSamples: number;
  stat: StatTest;
  batchSize: number;
  onProgress?: (done: number, total: number) => void;
}

export interface BundleVerdict extends Verdict {
  /** false when the commitment itself fails (proofs, uniqueness, porosity): fraud without recomputation. */
  valid: boolean;
  invalid_reason: string | null;
  count: number;
  root_hex: string;
  sampled: number;
  mismatch_rate: number;
  distances: { p50: number | null; max: number | null };
}

function invalid(reason: string, count: number, rootHex: string): BundleVerdict {
  return {
    n_total: 0, n_mismatch: 0, mismatch_nonces: [], p_value: 0, fraud_detected: true,
    valid: false, invalid_reason: reason, count, root_hex: rootHex, sampled: 0, mismatch_rate: 0,
    distances: { p50: null, max: null },
  };
}

function quantile(sorted: number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

export async function validateBundle(bundle: Bundle, runner: NonceRunner, o: ValidateOptions): Promise<BundleVerdict> {
  if (!bundle.end) return invalid('the bundle has no commitment (truncated)', 0, '');
  const { count, root_hex: rootHex } = bundle.end;
  if (count === 0) return invalid('the commitment is empty (count 0)', count, rootHex);

  // The prover's proof store. Duplicates are refused as Gonka's store refuses them.
  const store = new SmstBuilder();
  for (const a of bundle.artifacts) {
    try {
      store.add(a.nonce, Buffer.from(a.vectorB64, 'base64'));
    } catch (e) {
      return invalid(`the artifact store is inconsistent: ${(e as Error).message}`, count, rootHex);
    }
  }

  const h = bundle.header.round;
  const seed = samplingSeed(o.validatorKey, o.samplingHash, h.block_height, h.model);
  const indices = sampleDenseIndices(seed, count, o.nSamples);
  const missing = indices.find((i) => i >= store.count);
  if (missing !== undefined) return invalid(`no artifact for dense index ${missing}: the commitment claims ${count}, the bundle holds ${store.count}`, count, rootHex);

  const checks = indices.map((i) => ({ denseIndex: i, ...store.proof(i) }));
  const failures = await proofsInWorker({ rootHex, count, checks });
  const failed = failures.findIndex((f) => f !== null);
  if (failed >= 0) return invalid(`proof for dense index ${checks[failed].denseIndex} (nonce ${checks[failed].nonce}) fails: ${failures[failed]}`, count, rootHex);

  const nonces = checks.map((c) => c.nonce);
  if (new Set(nonces).size !== nonces.length) return invalid('sampled nonces repeat', count, rootHex);
  const por = porosity(nonces, count);
  if (!(por < POROSITY_LIMIT)) return invalid(`porosity ${por.toFixed(1)} ≥ ${POROSITY_LIMIT}: nonces are spread too thin for the count`, count, rootHex);

  const claims = checks.map((c) => ({ nonce: c.nonce, vectorB64: Buffer.from(c.vector).toString('base64') }));
  const compared: ComparedClaim[] = await recomputeAndCompare(runner, claims, o.stat, o.batchSize, (d) => o.onProgress?.(d, claims.length));
  const verdict = decideVerdict(compared, o.stat);
  const dist = compared.map((c) => c.distance).filter((d): d is number => d !== null).sort((a, b) => a - b);
  return {
    ...verdict,
    valid: true,
    invalid_reason: null,
    count,
    root_hex: rootHex,
    sampled: claims.length,
    mismatch_rate: verdict.n_total ? verdict.n_mismatch / verdict.n_total : 0,
    distances: { p50: quantile(dist, 0.5), max: dist.length ? dist[dist.length - 1] : null },
  };
}

// Statistical verdict of a validation (SPEC §10), following Gonka PoC v2's ML node
// (research/gonka-poc.md §5.4, §6.3; vllm/poc/validation.py, data.py):
//   p_value = binomtest(n_mismatch, n_total, p_mismatch, alternative="greater")
//           = P[X ≥ n_mismatch], X ~ Binomial(n_total, p_mismatch)
//   fraud_detected = p_value < threshold          (strict: p_value == threshold is not fraud)
// The result carries the field names of Gonka's validation result / `{url}/validated` callback.
import { InputError } from '../errors.js';
import { binomialTailPValue } from './binomial.js';

/** `stat_test` of POST /api/v1/pow/generate (validation mode). */
export interface StatTest {
  /** A nonce mismatches when ‖a_own − a_claimed‖₂ > dist_threshold. */
  dist_threshold: number;
  /** Probability that an honest node's nonce mismatches (the binomial null hypothesis). */
  p_mismatch: number;
  /** fraud_detected iff p_value < p_value_threshold. Wire alias: `fraud_threshold`. */
  p_value_threshold: number;
}

/** Pre-calibration defaults of SPEC §10. */
export const DEFAULT_STAT_TEST: Readonly<StatTest> = Object.freeze({
  dist_threshold: 0.1,
  p_mismatch: 0.02,
  p_value_threshold: 0.01,
});

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

const KNOWN_KEYS = new Set(['dist_threshold', 'p_mismatch', 'p_value_threshold', 'fraud_threshold']);

function field(
  o: Record<string, unknown>,
  key: string,
  ok: (x: number) => boolean,
  range: string,
): number | undefined {
  if (!Object.prototype.hasOwnProperty.call(o, key) || o[key] === undefined) return undefined;
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) {
    throw new InputError(`stat_test.${key} must be a number in ${range}, got ${JSON.stringify(v) ?? String(v)}`);
  }
  return v;
}

/**
 * Parses a `stat_test` object. Every field is optional (defaults: DEFAULT_STAT_TEST);
 * undefined or null stands for `{}`. Gonka's DAPI sends `p_value_threshold` while its vLLM ML
 * node reads `fraud_threshold` (gonka-poc.md §11.1); both are accepted here as the same field,
 * and giving both with different values is an error. Ranges: dist_threshold ≥ 0,
 * 0 ≤ p_mismatch < 1, 0 < p_value_threshold ≤ 1 (values that would silently disable the test are
 * rejected). Unknown keys are ignored, as Gonka's pydantic model does, unless `strict` is set.
 * Throws InputError.
 */
export function parseStatTest(obj: unknown, options: { strict?: boolean } = {}): StatTest {
  if (obj === undefined || obj === null) return { ...DEFAULT_STAT_TEST };
  if (!isPlainObject(obj)) {
    const what = Array.isArray(obj) ? 'an array' : typeof obj;
    throw new InputError(`stat_test must be an object, got ${what}`);
  }
  if (options.strict) {
    const unknown = Object.keys(obj).filter((k) => !KNOWN_KEYS.has(k));
    if (unknown.length > 0) throw new InputError(`stat_test has unknown field(s): ${unknown.join(', ')}`);
  }
  const dist = field(obj, 'dist_threshold', (x) => x >= 0, '[0, ∞)');
  const pm = field(obj, 'p_mismatch', (x) => x >= 0 && x < 1, '[0, 1)');
  const pvt = field(obj, 'p_value_threshold', (x) => x > 0 && x <= 1, '(0, 1]');
  const ft = field(obj, 'fraud_threshold', (x) => x > 0 && x <= 1, '(0, 1]');
  if (pvt !== undefined && ft !== undefined && pvt !== ft) {
    throw new InputError(
      `stat_test.p_value_threshold (${pvt}) and its alias stat_test.fraud_threshold (${ft}) disagree`,
    );
  }
  return {
    dist_threshold: dist ?? DEFAULT_STAT_TEST.dist_threshold,
    p_mismatch: pm ?? DEFAULT_STAT_TEST.p_mismatch,
    p_value_threshold: pvt ?? ft ?? DEFAULT_STAT_TEST.p_value_threshold,
  };
}

/** Gonka's validation result (`wait=true` response of /generate, body of `{url}/validated`). */
export interface Verdict {
  n_total: number;
  n_mismatch: number;
  /** Mismatching nonces, in the order the results were given. */
  mismatch_nonces: number[];
  p_value: number;
  fraud_detected: boolean;
}

/**
 * Full body of Gonka's `POST {url}/validated` callback: the verdict plus the request's envelope
 * (gonka-poc.md §5.4 step 6). `request_id` is present for queued (`wait=false`) jobs. Gonka's DAPI
 * turns it into validated_weight = n_total, or −1 when fraud_detected or n_total ≤ 0.
 */
export interface ValidatedCallback extends Verdict {
  request_id?: string;
  block_hash: string;
  block_height: number;
  public_key: string;
  node_id: number;
}

/**
 * Binomial verdict over per-nonce comparison results. An empty list gives n_total 0, p_value 1
 * and no fraud (Gonka's DAPI itself treats n_total ≤ 0 as invalid). Throws InputError for a
 * non-integer or repeated nonce or a non-boolean mismatch flag, RangeError for an invalid stat.
 */
export function decideVerdict(results: Array<{ nonce: number; mismatch: boolean }>, stat: StatTest): Verdict {
  const seen = new Set<number>();
  const mismatchNonces: number[] = [];
  for (const r of results) {
    if (!Number.isSafeInteger(r.nonce)) throw new InputError(`nonce must be an integer, got ${r.nonce}`);
    if (typeof r.mismatch !== 'boolean') throw new InputError(`mismatch flag of nonce ${r.nonce} is not a boolean`);
    if (seen.has(r.nonce)) throw new InputError(`nonce ${r.nonce} appears more than once`);
    seen.add(r.nonce);
    if (r.mismatch) mismatchNonces.push(r.nonce);
  }
  const nTotal = results.length;
  const nMismatch = mismatchNonces.length;
  const pValue = binomialTailPValue(nTotal, nMismatch, stat.p_mismatch);
  return {
    n_total: nTotal,
    n_mismatch: nMismatch,
    mismatch_nonces: mismatchNonces,
    p_value: pValue,
    fraud_detected: pValue < stat.p_value_threshold,
  };
}

/** A commitment is rejected when porosity(sampled nonces, count) ≥ POROSITY_LIMIT (Gonka PR #903). */
export const POROSITY_LIMIT = 100;

/**
 * max|nonce| / count over the sampled nonces (SPEC §10; absolute value as in Gonka, so negative
 * nonces cannot slip through). 0 for no nonces; Infinity for nonces with count 0.
 */
export function porosity(nonces: number[], count: number): number {
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new RangeError(`porosity: count must be a non-negative integer, got ${count}`);
  }
  let max = 0;
  for (const n of nonces) {
    if (!Number.isSafeInteger(n)) throw new RangeError(`porosity: nonce must be an integer, got ${n}`);
    max = Math.max(max, Math.abs(n));
  }
  if (nonces.length === 0) return 0;
  return count === 0 ? Infinity : max / count;
}

/** porosity(nonces, count) < POROSITY_LIMIT. */
export function porosityOk(nonces: number[], count: number): boolean {
  return porosity(nonces, count) < POROSITY_LIMIT;
}

/**
 * Text form of a p-value. One below 1e-300 (an underflow to 0 included) prints as `< 1e-300`, not
 * as 0, which would read as certainty; JSON output keeps the number (0 there means < 1e-300 too).
 */
export function formatPValue(p: number): string {
  return p < 1e-300 ? '< 1e-300' : p.toExponential(3);
}

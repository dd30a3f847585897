// The per-nonce artifact of SPEC §5 step 9: k picked, Haar-rotated, normalized fp16 values.
// The reference: the engine's twin (native/engine/artifact.h), which sprints use, gives the same
// bits (test/native-artifacts.test.ts).
import { artifactString } from '../inputs/nonce-inputs.js';
import { haar, norm2, pick, seed32 } from '../seeds/rng.js';

const f32 = Math.fround;
const EPS_F32 = f32(1e-8);
const F16_INF_THRESHOLD = 65520; // max half (65504) plus half an ulp: ties round to even = inf
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export interface Artifact {
  /** The fp16-rounded values, widened back to float. */
  values: Float32Array;
  /** 2k bytes: k fp16 values, little-endian. */
  bytes: Uint8Array;
  vectorB64: string;
}

function roundHalfEven(v: number): number {
  const fl = Math.floor(v);
  const d = v - fl;
  if (d > 0.5) return fl + 1;
  if (d < 0.5) return fl;
  return fl % 2 === 0 ? fl : fl + 1;
}

// Unbiased binary exponent of a finite positive double (its normal range covers all fp16 inputs).
const expView = new DataView(new ArrayBuffer(8));
function exponentOf(a: number): number {
  expView.setFloat64(0, a);
  return ((expView.getUint16(0) >>> 4) & 0x7ff) - 1023;
}

/** IEEE binary16 bits of x, rounded to nearest even from x's exact value. */
export function f32ToF16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= F16_INF_THRESHOLD) return sign | 0x7c00;
  if (a < 2 ** -14) {
    // Subnormal: a multiple of 2^-24; rounding up to 1024 lands exactly on the smallest normal.
    return sign | roundHalfEven(a * 2 ** 24);
  }
  let e = exponentOf(a);
  let q = roundHalfEven(a * 2 ** (10 - e)); // in [1024, 2048]; the scaling is exact
  if (q === 2048) {
    q = 1024;
    e += 1;
  }
  return sign | ((e + 15) << 10) | (q - 1024);
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m === 0 ? sign * Infinity : NaN;
  return sign * (1024 + m) * 2 ** (e - 25);
}

/**
 * Reduce a forward output y (length M = L·4·C_out) to the artifact of (block_hash, public_key, nonce):
 * v = y/(‖y‖+1e-8), a = haar(Q, v[pick(seed32(Q+"_pick_"+k), M, k)]), a/(‖a‖+1e-8), fp16 LE, base64.
 * Returns null when y is empty or has a non-finite value (such a nonce yields no artifact).
 */
export function computeArtifact(
  y: Float32Array,
  blockHash: string,
  publicKey: string,
  nonce: number,
  k = 12,
): Artifact | null {
  const q = artifactString(blockHash, publicKey, nonce);
  if (!Number.isInteger(k) || k < 1) throw new Error(`k must be a positive integer, got ${k}`);
  if (y.length === 0) return null;
  for (let i = 0; i < y.length; i++) if (!Number.isFinite(y[i])) return null;
  if (y.length < k) throw new Error(`output length ${y.length} is smaller than k = ${k}`);

  // Only the k picked coordinates of v are ever needed, so v is never materialized.
  const yDen = f32(norm2(y) + EPS_F32);
  const idx = pick(seed32(`${q}_pick_${k}`), y.length, k);
  const a = haar(q, Float32Array.from(idx, (j) => y[j] / yDen));
  const aDen = f32(norm2(a) + EPS_F32);

  const bytes = new Uint8Array(2 * k);
  const view = new DataView(bytes.buffer);
  const values = new Float32Array(k);
  for (let i = 0; i < k; i++) {
    const h = f32ToF16Bits(f32(a[i] / aDen));
    view.setUint16(2 * i, h, true);
    values[i] = f16BitsToF32(h);
  }
  return { values, bytes, vectorB64: Buffer.from(bytes).toString('base64') };
}

/** Decode a base64 artifact of exactly k little-endian fp16 values; null if malformed or non-finite. */
export function decodeArtifact(b64: string, k = 12): Float32Array | null {
  if (typeof b64 !== 'string' || !BASE64_RE.test(b64)) return null;
  const bytes = Buffer.from(b64, 'base64');
  if (bytes.length !== 2 * k) return null;
  const values = new Float32Array(k);
  for (let i = 0; i < k; i++) {
    const v = f16BitsToF32(bytes.readUInt16LE(2 * i));
    if (!Number.isFinite(v)) return null;
    values[i] = v;
  }
  return values;
}

/** Euclidean distance between two artifacts of equal length. */
export function artifactDistance(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`artifactDistance: length mismatch ${a.length} vs ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    s += d * d;
  }
  return Math.sqrt(s);
}

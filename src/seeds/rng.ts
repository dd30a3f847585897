// Seeding primitives of SPEC §2, bit-compatible with Gonka PoC v2 (gpu_random.py).
// Gonka evaluates these as torch float32 ops, so every op's result is rounded to float32
// with Math.fround. Reductions (dot products, sums of squares) are summed in float64 and
// rounded once: a float32 sum's order depends on the device, and the golden vectors do not
// favour any particular order, while an order-free result keeps this module deterministic.
import { sha256 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';

const f32 = Math.fround;
const TWO_POW_M32 = 2 ** -32;
const TWO_PI_F32 = f32(2 * Math.PI);
const MIN_U1_F32 = f32(1e-10);

function assertCount(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${what} must be a non-negative integer, got ${n}`);
}

function assertSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new Error(`seed must be a uint32, got ${seed}`);
  }
}

/** First 4 bytes of SHA-256(UTF-8 s), big-endian, as an unsigned 32-bit integer. */
export function seed32(s: string): number {
  const d = sha256(utf8ToBytes(s));
  return ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) >>> 0;
}

/** The eight big-endian 32-bit words of SHA-256(UTF-8 s). */
export function sha256Words(s: string): Uint32Array {
  const d = sha256(utf8ToBytes(s));
  const words = new Uint32Array(8);
  for (let t = 0; t < 8; t++) {
    words[t] = ((d[4 * t] << 24) | (d[4 * t + 1] << 16) | (d[4 * t + 2] << 8) | d[4 * t + 3]) >>> 0;
  }
  return words;
}

/** MurmurHash3 x86_32 of a single 32-bit key, without the length xor before fmix32. */
export function mm(key: number, seed: number): number {
  let k = Math.imul(key, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  let h = seed ^ k;
  h = (h << 13) | (h >>> 19);
  h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

// float32(h) first (nearest even, so the largest hashes give exactly 1.0), then an exact scaling.
function uniformAt(i: number, seed: number): number {
  return f32(mm(i, seed)) * TWO_POW_M32;
}

/** U(seed, n)[i] = f32(mm(i, seed)) / 2^32. */
export function uniform(seed: number, n: number): Float32Array {
  assertSeed(seed);
  assertCount(n, 'n');
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = uniformAt(i, seed);
  return out;
}

/** Box–Muller N(seed, n) in float32, half/half layout: concat(r·cos θ, r·sin θ) truncated to n. */
export function normal(seed: number, n: number): Float32Array {
  assertSeed(seed);
  assertCount(n, 'n');
  const m = Math.ceil(n / 2);
  const out = new Float32Array(n);
  for (let i = 0; i < m; i++) {
    const u1 = Math.max(uniformAt(i, seed), MIN_U1_F32);
    const u2 = uniformAt(m + i, seed);
    const r = f32(Math.sqrt(f32(-2 * f32(Math.log(u1)))));
    const theta = f32(TWO_PI_F32 * u2);
    out[i] = f32(r * f32(Math.cos(theta)));
    if (m + i < n) out[m + i] = f32(r * f32(Math.sin(theta)));
  }
  return out;
}

/** N8(s, n), the "stronger RNG": eight N segments seeded by the SHA-256 words of s. */
export function normalStrong(s: string, n: number): Float32Array {
  assertCount(n, 'n');
  const words = sha256Words(s);
  const seg = Math.ceil(n / 8);
  const out = new Float32Array(n);
  for (let t = 0; t < 8 && t * seg < n; t++) {
    out.set(normal(words[t], Math.min(seg, n - t * seg)), t * seg);
  }
  return out;
}

/** ‖v‖₂ as torch computes it in float32: sqrt of the float32 sum of squares. */
export function norm2(v: Float32Array): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  return f32(Math.sqrt(f32(s)));
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return f32(s);
}

/** v / ‖v‖₂ in float32. */
export function unit(v: Float32Array): Float32Array {
  const nv = norm2(v);
  const out = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = v[i] / nv;
  return out;
}

/** Householder reflection x − 2(w·x)w in float32 (w is expected to be a unit vector). */
export function reflect(x: Float32Array, w: Float32Array): Float32Array {
  if (x.length !== w.length) throw new Error(`reflect: length mismatch ${x.length} vs ${w.length}`);
  const c = f32(2 * dot(w, x));
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] - f32(c * w[i]);
  return out;
}

/**
 * The k indices j in [0, dim) with the smallest mm(j, seed), ordered by ascending (score, j).
 * One pass with a bounded max-heap of the k best (score, j) pairs: O(dim log k) time, O(k) memory.
 */
export function pick(seed: number, dim: number, k: number): number[] {
  assertSeed(seed);
  if (!Number.isInteger(dim) || dim < 0 || dim > 2 ** 32) throw new Error(`pick: dim must be an integer in [0, 2^32], got ${dim}`);
  if (!Number.isInteger(k) || k < 0 || k > dim) throw new Error(`pick: k must be an integer in [0, dim=${dim}], got ${k}`);
  if (k === 0) return [];
  const score = new Uint32Array(k);
  const idx = new Float64Array(k);
  // Heap order is by (score, j); since j only grows, a later j never beats an equal score.
  const worse = (a: number, b: number): boolean => score[a] > score[b] || (score[a] === score[b] && idx[a] > idx[b]);
  const siftDown = (from: number, size: number): void => {
    let p = from;
    for (;;) {
      const l = 2 * p + 1;
      if (l >= size) return;
      const c = l + 1 < size && worse(l + 1, l) ? l + 1 : l;
      if (!worse(c, p)) return;
      const s = score[p], j = idx[p];
      score[p] = score[c]; idx[p] = idx[c];
      score[c] = s; idx[c] = j;
      p = c;
    }
  };
  for (let j = 0; j < k; j++) {
    score[j] = mm(j, seed);
    idx[j] = j;
  }
  for (let p = (k >> 1) - 1; p >= 0; p--) siftDown(p, k);
  for (let j = k; j < dim; j++) {
    const s = mm(j, seed);
    if (s < score[0]) {
      score[0] = s;
      idx[0] = j;
      siftDown(0, k);
    }
  }
  // Heapsort in place: repeatedly move the worst to the end, leaving ascending (score, j).
  for (let size = k - 1; size > 0; size--) {
    const s = score[0], j = idx[0];
    score[0] = score[size]; idx[0] = idx[size];
    score[size] = s; idx[size] = j;
    siftDown(0, size);
  }
  return Array.from(idx);
}

/** Haar-like chain: for j = 0..k−2, x = reflect(x, unit(N(seed32(prefix + "_haar_hh_" + k + "_" + j), k))). */
export function haar(prefix: string, x: Float32Array): Float32Array {
  const k = x.length;
  let y: Float32Array = Float32Array.from(x);
  for (let j = 0; j + 1 < k; j++) {
    y = reflect(y, unit(normal(seed32(`${prefix}_haar_hh_${k}_${j}`), k)));
  }
  return y;
}

// SMST commitment benchmark (SPEC §9): build time for N artifacts, proof and verify throughput.
// Build: npx tsc -p tsconfig.json  →  node dist/bench/smst-bench.js [--n 1000000] [--bytes 24]
//        [--proofs 20000] [--seed smst-bench] [--layout random|interleaved]. Single-threaded.
import seedrandom from 'seedrandom';
import { SmstBuilder, verifyProof } from '../src/commitment/smst.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  return eq ? eq.slice(name.length + 3) : fallback;
}

const N = Number(arg('n', '1000000'));
const VECTOR_BYTES = Number(arg('bytes', '24')); // 12 fp16 values
const PROOFS = Number(arg('proofs', '20000'));
const rng = seedrandom(arg('seed', 'smst-bench'));
if (!Number.isInteger(N) || N < 1) throw new Error(`--n must be a positive integer, got ${N}`);

// --layout random (default): N distinct random nonces in [0, max(2^24, 2N)), the sparse worst
// case. --layout interleaved: Gonka's per-node nonces offset + x·step (step 4), SPEC §11.
const LAYOUT = arg('layout', 'random');
const nonces: number[] = [];
if (LAYOUT === 'interleaved') {
  for (let i = 0; i < N; i++) nonces.push(1 + 4 * i);
} else if (LAYOUT === 'random') {
  const space = Math.max(2 ** 24, 2 * N);
  const seen = new Set<number>();
  while (nonces.length < N) {
    const x = Math.floor(rng() * space);
    if (!seen.has(x)) {
      seen.add(x);
      nonces.push(x);
    }
  }
} else {
  throw new Error(`--layout must be random or interleaved, got ${LAYOUT}`);
}
// Deterministic vector bytes (xorshift32 seeded from the run seed), so the root is reproducible.
const vectors = new Uint8Array(N * VECTOR_BYTES);
let x = (Math.floor(rng() * 2 ** 32) | 1) >>> 0;
for (let i = 0; i < vectors.length; i++) {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  vectors[i] = x & 0xff;
}

const t0 = performance.now();
const b = new SmstBuilder();
for (let i = 0; i < N; i++) b.add(nonces[i], vectors.subarray(i * VECTOR_BYTES, (i + 1) * VECTOR_BYTES));
const t1 = performance.now();
const root = b.root();
const t2 = performance.now();
console.log(`N=${N} layout=${LAYOUT} vector=${VECTOR_BYTES}B depth=${b.depth()} root=${b.rootHex()}`);
console.log(`add (leaf hashing): ${((t1 - t0) / 1000).toFixed(2)} s`);
console.log(`tree build:         ${((t2 - t1) / 1000).toFixed(2)} s`);
console.log(`total build:        ${((t2 - t0) / 1000).toFixed(2)} s`);

const indices = Array.from({ length: PROOFS }, () => Math.floor(rng() * N));
const t3 = performance.now();
const proofs = indices.map((i) => b.proof(i));
const t4 = performance.now();
let bad = 0;
for (let j = 0; j < PROOFS; j++) {
  const p = proofs[j];
  if (!verifyProof(root, N, indices[j], p.nonce, p.vector, p.proof).ok) bad++;
}
const t5 = performance.now();
console.log(`proofs:             ${Math.round(PROOFS / ((t4 - t3) / 1000))} /s (${PROOFS} proofs)`);
console.log(`verifications:      ${Math.round(PROOFS / ((t5 - t4) / 1000))} /s (${bad} failed)`);
console.log(`heap used:          ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MiB, rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
if (bad > 0) process.exitCode = 1;

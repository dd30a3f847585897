// Sparse Merkle Sum Tree commitment (SPEC §9), byte-compatible with Gonka's
// decentralized-api artifact store (decentralized-api/poc/artifacts/smst.go, smst_store.go,
// proof verification in VerifySMSTProofWithDenseIndex).
//
//   leaf data  = uint32 LE(nonce) ‖ artifact bytes
//   leaf hash  = SHA-256(0x00 ‖ leaf data)            empty leaf = SHA-256(0x00)
//   internal   = SHA-256(0x01 ‖ left ‖ right ‖ uint32 LE(count)), count = leaves below
//   empty subtree of height h+1 = internal(empty_h, empty_h, 0)
//   path       = the low `depth` bits of the nonce, most significant first (1 = right)
//   depth      = 24, grown to the bit length of the largest nonce (max 32)
//   dense index i = the i-th smallest nonce (left-to-right leaf order)
//   proof      = per level from the root: sibling hash (32) ‖ uint32 LE sibling count (4)
//
// The builder does not insert path by path like Gonka's live tree: it sorts the nonces and
// hashes bottom-up, touching only non-empty nodes and using precomputed empty-subtree hashes.
// Gonka grows depth by wrapping the old root as the left child of new roots whose right child
// is empty; that is exactly the tree of the final depth built directly, because the nonces that
// fit the old depth have zero high bits. So the depth (and root) depend only on the nonce set.
//
// SHA-256 is implemented here on 32-bit words (hashes kept as 8 big-endian words in Int32Arrays)
// because a node hash has a fixed 69-byte layout: no per-call allocation, ~2-3x faster than
// @noble/hashes or node:crypto called per node on this machine, ~7 s for 1M random leaves
// (bench/smst-bench.ts). The tests check it against @noble/hashes.

/** Gonka smstDefaultDepth: starting depth; changing it changes committed roots. */
export const SMST_DEFAULT_DEPTH = 24;
/** Gonka smstMaxDepth. */
export const SMST_MAX_DEPTH = 32;
/**
 * Largest nonce accepted. Gonka stores nonces as int32 and paths use uint32(nonce), so a
 * negative int32 would sort after every positive one and break "dense index = i-th smallest
 * nonce"; PoC nonces (offset + x·step) are non-negative, so the builder accepts [0, 2^31 - 1]
 * (bit length ≤ 31, hence depth ≤ 31 in practice; verification still accepts up to 32).
 */
export const SMST_MAX_NONCE = 0x7fffffff;
/** Gonka MaxLeafCount = 2^30 - 1 (smst_store.go). */
export const SMST_MAX_LEAVES = 2 ** 30 - 1;
/** Bytes per proof element: sibling hash ‖ uint32 LE sibling count. */
export const SMST_PROOF_ELEMENT_BYTES = 36;

// ---------------------------------------------------------------------------------------------
// SHA-256 on words (FIPS 180-4)

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const IV = new Int32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);
const W = new Int32Array(64); // message schedule; W[0..15] are filled by the caller
const ST = new Int32Array(8); // running state

/** One compression of the block in W[0..15] into ST. */
function compress(): void {
  for (let t = 16; t < 64; t++) {
    const w15 = W[t - 15];
    const w2 = W[t - 2];
    const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
    const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
    W[t] = (((((s1 + W[t - 7]) | 0) + s0) | 0) + W[t - 16]) | 0; // stay in int32 (no float adds)
  }
  let a = ST[0], b = ST[1], c = ST[2], d = ST[3], e = ST[4], f = ST[5], g = ST[6], h = ST[7];
  for (let t = 0; t < 64; t++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = g ^ (e & (f ^ g));
    const t1 = (((((((h + S1) | 0) + ch) | 0) + K[t]) | 0) + W[t]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const maj = (a & b) ^ (c & (a ^ b));
    const t2 = (S0 + maj) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  ST[0] = (ST[0] + a) | 0;
  ST[1] = (ST[1] + b) | 0;
  ST[2] = (ST[2] + c) | 0;
  ST[3] = (ST[3] + d) | 0;
  ST[4] = (ST[4] + e) | 0;
  ST[5] = (ST[5] + f) | 0;
  ST[6] = (ST[6] + g) | 0;
  ST[7] = (ST[7] + h) | 0;
}

function storeState(out: Int32Array, o: number): void {
  for (let i = 0; i < 8; i++) out[o + i] = ST[i];
}

// Message buffer for variable-length hashes (leaves); grown on demand.
let scratch = new Uint8Array(128);

/** Makes room for a message of msgLen bytes plus SHA-256 padding; returns the padded length. */
function reserveScratch(msgLen: number): number {
  const total = Math.ceil((msgLen + 9) / 64) * 64;
  if (scratch.length < total) scratch = new Uint8Array(total * 2);
  return total;
}

/** SHA-256 of scratch[0, msgLen) (padded in place) into out[o..o+8) as big-endian words. */
function sha256Scratch(msgLen: number, out: Int32Array, o: number): void {
  const total = reserveScratch(msgLen);
  const m = scratch;
  m[msgLen] = 0x80;
  m.fill(0, msgLen + 1, total - 8);
  const bits = msgLen * 8; // 64-bit big-endian bit length, split into two 32-bit halves
  const hi = Math.floor(bits / 0x100000000);
  const lo = bits >>> 0;
  m[total - 8] = hi >>> 24;
  m[total - 7] = (hi >>> 16) & 0xff;
  m[total - 6] = (hi >>> 8) & 0xff;
  m[total - 5] = hi & 0xff;
  m[total - 4] = lo >>> 24;
  m[total - 3] = (lo >>> 16) & 0xff;
  m[total - 2] = (lo >>> 8) & 0xff;
  m[total - 1] = lo & 0xff;
  ST.set(IV);
  for (let blk = 0; blk < total; blk += 64) {
    for (let i = 0; i < 16; i++) {
      const p = blk + 4 * i;
      W[i] = (m[p] << 24) | (m[p + 1] << 16) | (m[p + 2] << 8) | m[p + 3];
    }
    compress();
  }
  storeState(out, o);
}

/** Leaf hash SHA-256(0x00 ‖ uint32 LE(nonce) ‖ vector) into out[o..o+8) (Gonka smstHashLeaf(encodeLeaf)). */
function leafWordsInto(nonce: number, vector: Uint8Array, out: Int32Array, o: number): void {
  reserveScratch(5 + vector.length);
  const m = scratch;
  m[0] = 0x00;
  m[1] = nonce & 0xff;
  m[2] = (nonce >>> 8) & 0xff;
  m[3] = (nonce >>> 16) & 0xff;
  m[4] = nonce >>> 24;
  m.set(vector, 5);
  sha256Scratch(5 + vector.length, out, o);
}

/**
 * Internal node: SHA-256(0x01 ‖ left ‖ right ‖ uint32 LE(count)), 69 bytes = two blocks.
 * left/right are 8 big-endian words each; the 1-byte prefix shifts every word by 8 bits.
 */
function hashNodeWords(L: Int32Array, lo: number, R: Int32Array, ro: number, count: number, out: Int32Array, o: number): void {
  // Block 1: bytes 0..63 = 0x01, left[0..31], right[0..30]
  W[0] = 0x01000000 | (L[lo] >>> 8);
  for (let i = 1; i < 8; i++) W[i] = (L[lo + i - 1] << 24) | (L[lo + i] >>> 8);
  W[8] = (L[lo + 7] << 24) | (R[ro] >>> 8);
  for (let i = 1; i < 8; i++) W[8 + i] = (R[ro + i - 1] << 24) | (R[ro + i] >>> 8);
  ST.set(IV);
  compress();
  // Block 2: bytes 64..127 = right[31], count LE (4), 0x80, zeros, bit length 552
  W[0] = (R[ro + 7] << 24) | ((count & 0xff) << 16) | (((count >>> 8) & 0xff) << 8) | ((count >>> 16) & 0xff);
  W[1] = (((count >>> 24) & 0xff) << 24) | 0x800000;
  for (let i = 2; i < 15; i++) W[i] = 0;
  W[15] = 69 * 8;
  compress();
  storeState(out, o);
}

function wordsToBytes(words: Int32Array, o: number, out: Uint8Array, bo: number): void {
  for (let i = 0; i < 8; i++) {
    const w = words[o + i];
    out[bo + 4 * i] = w >>> 24;
    out[bo + 4 * i + 1] = (w >>> 16) & 0xff;
    out[bo + 4 * i + 2] = (w >>> 8) & 0xff;
    out[bo + 4 * i + 3] = w & 0xff;
  }
}

function bytesToWords(bytes: Uint8Array, bo: number, out: Int32Array, o: number): void {
  for (let i = 0; i < 8; i++) {
    const p = bo + 4 * i;
    out[o + i] = (bytes[p] << 24) | (bytes[p + 1] << 16) | (bytes[p + 2] << 8) | bytes[p + 3];
  }
}

// Empty-subtree hashes by height (Gonka emptyHash): EMPTY[h*8 .. h*8+8), count 0.
const EMPTY = new Int32Array((SMST_MAX_DEPTH + 1) * 8);
scratch[0] = 0x00;
sha256Scratch(1, EMPTY, 0); // empty leaf = SHA-256(0x00)
for (let h = 1; h <= SMST_MAX_DEPTH; h++) hashNodeWords(EMPTY, (h - 1) * 8, EMPTY, (h - 1) * 8, 0, EMPTY, h * 8);

// ---------------------------------------------------------------------------------------------
// Helpers

/** Leaf hash SHA-256(0x00 ‖ uint32 LE(nonce) ‖ vector). */
export function leafHash(nonce: number, vector: Uint8Array): Uint8Array {
  const w = new Int32Array(8);
  leafWordsInto(nonce, vector, w, 0);
  const out = new Uint8Array(32);
  wordsToBytes(w, 0, out, 0);
  return out;
}

/** Root of a tree with no leaves: the empty-subtree hash of height `depth` (Gonka GetRoot on nil). */
export function emptyRoot(depth: number = SMST_DEFAULT_DEPTH): Uint8Array {
  if (!Number.isInteger(depth) || depth < 0 || depth > SMST_MAX_DEPTH) throw new RangeError(`SMST depth must be an integer in [0, ${SMST_MAX_DEPTH}], got ${depth}`);
  const out = new Uint8Array(32);
  wordsToBytes(EMPTY, depth * 8, out, 0);
  return out;
}

export function hex(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += (bytes[i] < 16 ? '0' : '') + bytes[i].toString(16);
  return s;
}

export function fromHex(s: string): Uint8Array {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) throw new Error(`invalid hex string: ${JSON.stringify(s.length > 80 ? s.slice(0, 80) + '…' : s)}`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
  return out;
}

/** Bit length of a nonce as Gonka's requiredDepth (0 needs 1 bit). */
function bitLength(n: number): number {
  return n === 0 ? 1 : 32 - Math.clz32(n);
}

/** Tree depth for a largest nonce: 24, grown to what the nonce needs (Gonka expandDepth). */
function depthFor(maxNonce: number): number {
  return Math.min(SMST_MAX_DEPTH, Math.max(SMST_DEFAULT_DEPTH, bitLength(maxNonce)));
}

// ---------------------------------------------------------------------------------------------
// Builder

/** The non-empty nodes of one height, sorted by key (= nonce >>> height). */
interface Level {
  keys: Uint32Array;
  hashes: Int32Array; // 8 words per node
  counts: Uint32Array;
}

export interface SmstProof {
  nonce: number;
  vector: Uint8Array;
  /** Root-first: proof[j] is the sibling at distance j+1 from the root; 36 bytes each. */
  proof: Uint8Array[];
}

function lowerBound(keys: Uint32Array, key: number): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid] < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class SmstBuilder {
  // Insertion-order storage: nonce, leaf hash (hashed at add time), vector bytes in an arena.
  private n = 0;
  private nonces = new Uint32Array(1024);
  private leafWords = new Int32Array(1024 * 8);
  private vecOffsets = new Float64Array(1025);
  private vecArena = new Uint8Array(1024 * 32);
  private index = new Map<number, number>(); // nonce -> insertion index (duplicate check)
  private maxNonce = 0;
  // Built tree (levels[0] = leaves, levels[depth] = root); null when adds happened since.
  private levels: Level[] | null = null;

  /** Adds the artifact of `nonce`. Throws on a duplicate (Gonka ErrDuplicateNonce) or a nonce outside [0, 2^31-1]. */
  add(nonce: number, vector: Uint8Array): void {
    if (!Number.isInteger(nonce) || nonce < 0 || nonce > SMST_MAX_NONCE) {
      throw new RangeError(`SMST nonce must be an integer in [0, ${SMST_MAX_NONCE}], got ${nonce}`);
    }
    if (!(vector instanceof Uint8Array)) throw new TypeError('SMST vector must be a Uint8Array');
    if (this.index.has(nonce)) throw new Error(`duplicate nonce ${nonce}`);
    if (this.n >= SMST_MAX_LEAVES) throw new RangeError(`SMST capacity exceeded (${SMST_MAX_LEAVES} leaves)`);
    const i = this.n;
    if (i === this.nonces.length) this.growIndex();
    const start = this.vecOffsets[i];
    const end = start + vector.length;
    if (end > this.vecArena.length) {
      const bigger = new Uint8Array(Math.max(end, this.vecArena.length * 2));
      bigger.set(this.vecArena.subarray(0, start));
      this.vecArena = bigger;
    }
    this.vecArena.set(vector, start);
    this.vecOffsets[i + 1] = end;
    this.nonces[i] = nonce;
    leafWordsInto(nonce, vector, this.leafWords, i * 8);
    this.index.set(nonce, i);
    if (nonce > this.maxNonce) this.maxNonce = nonce;
    this.n = i + 1;
    this.levels = null;
  }

  private growIndex(): void {
    const cap = this.nonces.length * 2;
    const nonces = new Uint32Array(cap);
    nonces.set(this.nonces);
    this.nonces = nonces;
    const leafWords = new Int32Array(cap * 8);
    leafWords.set(this.leafWords);
    this.leafWords = leafWords;
    const offs = new Float64Array(cap + 1);
    offs.set(this.vecOffsets);
    this.vecOffsets = offs;
  }

  get count(): number {
    return this.n;
  }

  /** Tree depth = proof length: 24, or the bit length of the largest nonce if more. */
  depth(): number {
    return depthFor(this.maxNonce);
  }

  root(): Uint8Array {
    const out = new Uint8Array(32);
    const levels = this.build();
    const top = levels[levels.length - 1];
    if (top.keys.length === 0) wordsToBytes(EMPTY, (levels.length - 1) * 8, out, 0);
    else wordsToBytes(top.hashes, 0, out, 0);
    return out;
  }

  rootHex(): string {
    return hex(this.root());
  }

  /** The nonce at dense index i (the i-th smallest nonce). */
  nonceAt(denseIndex: number): number {
    this.checkIndex(denseIndex);
    return this.build()[0].keys[denseIndex];
  }

  /** Dense index of a nonce, or -1 if it is not in the tree (Gonka denseIndexForNonce). */
  indexOfNonce(nonce: number): number {
    if (!this.index.has(nonce)) return -1;
    return lowerBound(this.build()[0].keys, nonce);
  }

  /** Artifact and proof for dense index i (Gonka GetLeafByDenseIndex + buildProofWithCounts). */
  proof(denseIndex: number): SmstProof {
    this.checkIndex(denseIndex);
    const levels = this.build();
    const depth = levels.length - 1;
    const nonce = levels[0].keys[denseIndex];
    const buf = new Uint8Array(depth * SMST_PROOF_ELEMENT_BYTES);
    const proof = new Array<Uint8Array>(depth);
    let pos = denseIndex; // position of the path node in its level
    for (let h = 0; h < depth; h++) {
      const { keys, hashes, counts } = levels[h];
      const key = nonce >>> h;
      const sibPos = (key & 1) === 0 ? pos + 1 : pos - 1;
      const j = depth - 1 - h; // root-first order
      const el = buf.subarray(j * SMST_PROOF_ELEMENT_BYTES, (j + 1) * SMST_PROOF_ELEMENT_BYTES);
      if (sibPos >= 0 && sibPos < keys.length && keys[sibPos] === (key ^ 1)) {
        wordsToBytes(hashes, sibPos * 8, el, 0);
        const c = counts[sibPos]; // uint32 LE
        el[32] = c & 0xff;
        el[33] = (c >>> 8) & 0xff;
        el[34] = (c >>> 16) & 0xff;
        el[35] = c >>> 24;
      } else {
        wordsToBytes(EMPTY, h * 8, el, 0); // empty sibling subtree, count 0
      }
      proof[j] = el;
      if (h + 1 < depth) pos = lowerBound(levels[h + 1].keys, key >>> 1);
    }
    const i = this.index.get(nonce)!;
    const vector = this.vecArena.slice(this.vecOffsets[i], this.vecOffsets[i + 1]);
    return { nonce, vector, proof };
  }

  private checkIndex(denseIndex: number): void {
    if (!Number.isInteger(denseIndex) || denseIndex < 0 || denseIndex >= this.n) {
      throw new RangeError(`dense index ${denseIndex} out of range [0, ${this.n})`);
    }
  }

  /** Bottom-up build over the sorted leaves, hashing only non-empty nodes. */
  private build(): Level[] {
    if (this.levels) return this.levels;
    const n = this.n;
    const depth = this.depth();
    // Leaves in dense order: sorted nonces with their leaf hashes.
    const keys = this.nonces.slice(0, n).sort();
    const hashes = new Int32Array(n * 8);
    for (let j = 0; j < n; j++) {
      const i = this.index.get(keys[j])!;
      hashes.set(this.leafWords.subarray(i * 8, i * 8 + 8), j * 8);
    }
    const levels: Level[] = [{ keys, hashes, counts: new Uint32Array(n).fill(1) }];
    for (let h = 0; h < depth; h++) {
      const child = levels[h];
      const ck = child.keys;
      const ch = child.hashes;
      const cc = child.counts;
      const len = ck.length;
      // Parents = distinct keys >>> 1.
      let m = 0;
      for (let i = 0; i < len; i++) if (i === 0 || ck[i] >>> 1 !== ck[i - 1] >>> 1) m++;
      const pk = new Uint32Array(m);
      const ph = new Int32Array(m * 8);
      const pc = new Uint32Array(m);
      const e = h * 8; // empty sibling of height h
      let p = 0;
      for (let i = 0; i < len; p++) {
        const k = ck[i];
        pk[p] = k >>> 1;
        if ((k & 1) === 0) {
          if (i + 1 < len && ck[i + 1] === k + 1) {
            const c = cc[i] + cc[i + 1];
            pc[p] = c;
            hashNodeWords(ch, i * 8, ch, (i + 1) * 8, c, ph, p * 8);
            i += 2;
          } else {
            pc[p] = cc[i];
            hashNodeWords(ch, i * 8, EMPTY, e, cc[i], ph, p * 8);
            i += 1;
          }
        } else {
          pc[p] = cc[i];
          hashNodeWords(EMPTY, e, ch, i * 8, cc[i], ph, p * 8);
          i += 1;
        }
      }
      levels.push({ keys: pk, hashes: ph, counts: pc });
    }
    this.levels = levels;
    return levels;
  }
}

// ---------------------------------------------------------------------------------------------
// Verification (Gonka VerifySMSTProofWithDenseIndex, plus depth and empty-sibling plausibility)

export type VerifyResult = { ok: true } | { ok: false; reason: string };

/**
 * Verifies that `(nonce, vector)` is the leaf at `denseIndex` of the tree committed as
 * `(root, count)`. Accepts every proof Gonka's VerifySMSTProofWithDenseIndex accepts from an
 * honest Gonka tree, and is stricter (depth range, nonce bits, empty-sibling consistency; in
 * Gonka a non-nil node always has count ≥ 1 and a nil one hashes to emptyHash[height]). Checks, in order: argument ranges; proof shape (24..32 elements of 36 bytes);
 * that the nonce fits the proof depth and that a depth above 24 is justified (some nonce needs
 * that many bits, so the root's right subtree is non-empty); that every sibling count is 0
 * exactly when its hash is the empty-subtree hash of its height; the recomputed root count and
 * hash; and that the counts of the left siblings sum to the dense index.
 */
export function verifyProof(root: Uint8Array, count: number, denseIndex: number, nonce: number, vector: Uint8Array, proof: Uint8Array[]): VerifyResult {
  const fail = (reason: string): VerifyResult => ({ ok: false, reason });
  if (!(root instanceof Uint8Array) || root.length !== 32) return fail('root must be 32 bytes');
  if (!Number.isInteger(count) || count < 1 || count > 0xffffffff) return fail(`count ${count} out of range`);
  if (!Number.isInteger(denseIndex) || denseIndex < 0 || denseIndex >= count) return fail(`dense index ${denseIndex} out of range [0, ${count})`);
  if (!Number.isInteger(nonce) || nonce < 0 || nonce > SMST_MAX_NONCE) return fail(`nonce ${nonce} out of range [0, ${SMST_MAX_NONCE}]`);
  if (!(vector instanceof Uint8Array)) return fail('vector must be a Uint8Array');
  if (!Array.isArray(proof)) return fail('proof must be an array');
  const depth = proof.length;
  if (depth < SMST_DEFAULT_DEPTH || depth > SMST_MAX_DEPTH) return fail(`proof length ${depth} outside [${SMST_DEFAULT_DEPTH}, ${SMST_MAX_DEPTH}]`);
  for (let j = 0; j < depth; j++) {
    const el = proof[j];
    if (!(el instanceof Uint8Array) || el.length !== SMST_PROOF_ELEMENT_BYTES) return fail(`proof element ${j} is not ${SMST_PROOF_ELEMENT_BYTES} bytes`);
  }
  // Depth plausibility: the path must hold every bit of the nonce, and the tree only grows past
  // 24 when some nonce needs exactly `depth` bits, which then sits in the root's right subtree.
  if (bitLength(nonce) > depth) return fail(`nonce ${nonce} needs ${bitLength(nonce)} bits, proof depth is ${depth}`);
  const topBit = (nonce >>> (depth - 1)) & 1;
  if (depth > SMST_DEFAULT_DEPTH && topBit === 0 && readCount(proof[0]) === 0) {
    return fail(`proof depth ${depth} > ${SMST_DEFAULT_DEPTH} but the root's right subtree is empty`);
  }

  const cur = new Int32Array(8);
  const sib = new Int32Array(8);
  leafWordsInto(nonce, vector, cur, 0);
  let curCount = 1;
  let leftSum = 0; // Σ counts of left siblings = number of leaves before this one
  for (let h = 0; h < depth; h++) {
    const el = proof[depth - 1 - h];
    bytesToWords(el, 0, sib, 0);
    const sibCount = readCount(el);
    const isEmpty = equalWords(sib, 0, EMPTY, h * 8);
    if ((sibCount === 0) !== isEmpty) return fail(`sibling at height ${h}: count ${sibCount} inconsistent with ${isEmpty ? 'empty' : 'non-empty'} hash`);
    const total = curCount + sibCount;
    if (total > 0xffffffff) return fail(`count overflow at height ${h}`);
    const goRight = ((nonce >>> h) & 1) === 1;
    if (goRight) {
      leftSum += sibCount;
      hashNodeWords(sib, 0, cur, 0, total, cur, 0);
    } else {
      hashNodeWords(cur, 0, sib, 0, total, cur, 0);
    }
    curCount = total;
  }
  if (curCount !== count) return fail(`root count ${curCount} != committed count ${count}`);
  bytesToWords(root, 0, sib, 0);
  if (!equalWords(cur, 0, sib, 0)) return fail('root hash mismatch');
  if (leftSum !== denseIndex) return fail(`proof places nonce ${nonce} at dense index ${leftSum}, not ${denseIndex}`);
  return { ok: true };
}

function readCount(el: Uint8Array): number {
  return (el[32] | (el[33] << 8) | (el[34] << 16) | (el[35] << 24)) >>> 0;
}

function equalWords(a: Int32Array, ao: number, b: Int32Array, bo: number): boolean {
  for (let i = 0; i < 8; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}

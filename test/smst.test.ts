// SPEC §9: Sparse Merkle Sum Tree commitment, against conformance/smst.json (Gonka-compatible).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import seedrandom from 'seedrandom';
import { describe, expect, it } from 'vitest';
import {
  SMST_MAX_NONCE,
  SmstBuilder,
  emptyRoot,
  fromHex,
  hex,
  leafHash,
  verifyProof,
} from '../src/commitment/smst.js';

interface GoldenProof {
  dense_index: number;
  nonce: number;
  vector_b64: string;
  proof: string[];
}
interface GoldenCase {
  name: string;
  vector_salt: string;
  nonces_in_insert_order: number[];
  vectors_b64: string[];
  depth_after_inserts: number;
  count: number;
  root_hex: string;
  proofs: GoldenProof[];
}

const golden = JSON.parse(
  readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/conformance/smst.json'), 'utf8'),
) as { cases: GoldenCase[]; empty_root_hex_depth24: string };

const b64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));
const toB64 = (u: Uint8Array): string => Buffer.from(u).toString('base64');
const u32le = (x: number): Uint8Array => new Uint8Array(new Uint32Array([x >>> 0]).buffer);

function buildCase(c: GoldenCase, order?: number[]): SmstBuilder {
  const b = new SmstBuilder();
  for (const i of order ?? c.nonces_in_insert_order.map((_, j) => j)) b.add(c.nonces_in_insert_order[i], b64(c.vectors_b64[i]));
  return b;
}

function shuffle<T>(xs: T[], rng: () => number): T[] {
  const a = xs.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

function caseNamed(name: string): GoldenCase {
  const c = golden.cases.find((x) => x.name === name);
  if (!c) throw new Error(`no golden case ${name}`);
  return c;
}

// Independent reference in Gonka's style (smst.go): insert path by path into a pointer tree,
// grow depth by wrapping the old root as a left child, hash lazily with @noble/hashes.
class GonkaStyleReference {
  private depth = 24;
  private rootNode: RefNode | null = null;
  private readonly empty: Uint8Array[] = [sha256(Uint8Array.of(0))];
  constructor() {
    for (let h = 1; h <= 32; h++) this.empty.push(refNode(this.empty[h - 1], this.empty[h - 1], 0));
  }
  insert(nonce: number, vector: Uint8Array): void {
    const need = nonce === 0 ? 1 : 32 - Math.clz32(nonce);
    while (this.depth < need) {
      if (this.rootNode) this.rootNode = { left: this.rootNode, right: null, count: this.rootNode.count };
      this.depth++;
    }
    const leaf = sha256(concatBytes(Uint8Array.of(0), u32le(nonce), vector));
    const ins = (n: RefNode | null, level: number): RefNode => {
      if (level === this.depth) return { left: null, right: null, count: 1, hash: leaf };
      const node = n ?? { left: null, right: null, count: 0 };
      if ((nonce >>> (this.depth - 1 - level)) & 1) node.right = ins(node.right, level + 1);
      else node.left = ins(node.left, level + 1);
      node.count = (node.left?.count ?? 0) + (node.right?.count ?? 0);
      return node;
    };
    this.rootNode = ins(this.rootNode, 0);
  }
  root(): Uint8Array {
    const hash = (n: RefNode | null, height: number): Uint8Array => {
      if (!n) return this.empty[height];
      if (height === 0) return n.hash!;
      return refNode(hash(n.left, height - 1), hash(n.right, height - 1), n.count);
    };
    return hash(this.rootNode, this.depth);
  }
}
interface RefNode {
  left: RefNode | null;
  right: RefNode | null;
  count: number;
  hash?: Uint8Array;
}
const refNode = (l: Uint8Array, r: Uint8Array, count: number): Uint8Array => sha256(concatBytes(Uint8Array.of(1), l, r, u32le(count)));

describe('SMST golden vectors (conformance/smst.json)', () => {
  it('empty root at depth 24', () => {
    expect(hex(emptyRoot(24))).toBe(golden.empty_root_hex_depth24);
    const b = new SmstBuilder();
    expect(b.count).toBe(0);
    expect(b.depth()).toBe(24);
    expect(b.rootHex()).toBe(golden.empty_root_hex_depth24);
  });

  for (const c of golden.cases) {
    describe(c.name, () => {
      const b = buildCase(c);
      const root = fromHex(c.root_hex);

      it('root, count and depth', () => {
        expect(b.rootHex()).toBe(c.root_hex);
        expect(hex(b.root())).toBe(c.root_hex);
        expect(b.count).toBe(c.count);
        expect(b.depth()).toBe(c.depth_after_inserts);
      });

      it('vector bytes are the first 24 bytes of SHA-256("{salt}_vec_{nonce}")', () => {
        c.nonces_in_insert_order.forEach((n, i) => {
          expect(c.vectors_b64[i]).toBe(toB64(sha256(utf8ToBytes(`${c.vector_salt}_vec_${n}`)).subarray(0, 24)));
        });
      });

      it('dense indices are the sorted nonces', () => {
        const sorted = c.nonces_in_insert_order.slice().sort((x, y) => x - y);
        sorted.forEach((n, i) => {
          expect(b.nonceAt(i)).toBe(n);
          expect(b.indexOfNonce(n)).toBe(i);
        });
      });

      for (const p of c.proofs) {
        it(`proof for dense index ${p.dense_index}: every element, and it verifies`, () => {
          const got = b.proof(p.dense_index);
          expect(got.nonce).toBe(p.nonce);
          expect(toB64(got.vector)).toBe(p.vector_b64);
          expect(got.proof.length).toBe(c.depth_after_inserts);
          expect(got.proof.map(toB64)).toEqual(p.proof);
          expect(verifyProof(root, c.count, p.dense_index, p.nonce, b64(p.vector_b64), p.proof.map(b64))).toEqual({ ok: true });
        });
      }

      it('insert order does not matter', () => {
        const rng = seedrandom(`order-${c.name}`);
        for (let t = 0; t < 3; t++) {
          const order = shuffle(c.nonces_in_insert_order.map((_, j) => j), rng);
          expect(buildCase(c, order).rootHex()).toBe(c.root_hex);
        }
      });

      it('matches the Gonka-style insert-by-path reference', () => {
        const ref = new GonkaStyleReference();
        c.nonces_in_insert_order.forEach((n, i) => ref.insert(n, b64(c.vectors_b64[i])));
        expect(hex(ref.root())).toBe(c.root_hex);
      });
    });
  }
});

describe('SMST verifyProof rejects tampering', () => {
  // A depth-25 case (grown tree) and a dense depth-24 case.
  for (const [name, idx] of [
    ['sparse_with_depth_growth', 2],
    ['five_dense', 2],
  ] as const) {
    describe(`${name}, dense index ${idx}`, () => {
      const c = caseNamed(name);
      const p = c.proofs.find((x) => x.dense_index === idx)!;
      const root = fromHex(c.root_hex);
      const vector = b64(p.vector_b64);
      const proof = (): Uint8Array[] => p.proof.map(b64);
      const reject = (r: ReturnType<typeof verifyProof>): void => {
        expect(r.ok).toBe(false);
        if (!r.ok) expect(r.reason.length).toBeGreaterThan(0);
      };

      it('accepts the untouched proof', () => {
        expect(verifyProof(root, c.count, idx, p.nonce, vector, proof())).toEqual({ ok: true });
      });
      it('changed vector byte', () => {
        for (const at of [0, vector.length - 1]) {
          const v = vector.slice();
          v[at] ^= 0x01;
          reject(verifyProof(root, c.count, idx, p.nonce, v, proof()));
        }
      });
      it('truncated or extended vector', () => {
        reject(verifyProof(root, c.count, idx, p.nonce, vector.subarray(0, vector.length - 1), proof()));
        reject(verifyProof(root, c.count, idx, p.nonce, concatBytes(vector, Uint8Array.of(0)), proof()));
      });
      it('changed nonce', () => {
        reject(verifyProof(root, c.count, idx, p.nonce + 1, vector, proof()));
        reject(verifyProof(root, c.count, idx, p.nonce ^ (1 << 20), vector, proof()));
        reject(verifyProof(root, c.count, idx, -1, vector, proof()));
      });
      it('wrong dense index', () => {
        reject(verifyProof(root, c.count, idx + 1, p.nonce, vector, proof()));
        reject(verifyProof(root, c.count, idx - 1, p.nonce, vector, proof()));
        reject(verifyProof(root, c.count, c.count, p.nonce, vector, proof()));
        reject(verifyProof(root, c.count, -1, p.nonce, vector, proof()));
      });
      it('forged count', () => {
        reject(verifyProof(root, c.count + 1, idx, p.nonce, vector, proof()));
        reject(verifyProof(root, c.count - 1, idx, p.nonce, vector, proof()));
        reject(verifyProof(root, 0, 0, p.nonce, vector, proof()));
      });
      it('forged sibling count inside the proof', () => {
        for (let j = 0; j < p.proof.length; j++) {
          const pr = proof();
          pr[j] = pr[j].slice();
          pr[j][32] ^= 0x01;
          reject(verifyProof(root, c.count, idx, p.nonce, vector, pr));
        }
      });
      it('forged sibling hash inside the proof', () => {
        for (let j = 0; j < p.proof.length; j++) {
          const pr = proof();
          pr[j] = pr[j].slice();
          pr[j][7] ^= 0x80;
          reject(verifyProof(root, c.count, idx, p.nonce, vector, pr));
        }
      });
      it('wrong root', () => {
        const r = root.slice();
        r[31] ^= 1;
        reject(verifyProof(r, c.count, idx, p.nonce, vector, proof()));
        reject(verifyProof(root.subarray(0, 31), c.count, idx, p.nonce, vector, proof()));
      });
      it('truncated proof', () => {
        reject(verifyProof(root, c.count, idx, p.nonce, vector, proof().slice(1)));
        reject(verifyProof(root, c.count, idx, p.nonce, vector, proof().slice(0, -1)));
        reject(verifyProof(root, c.count, idx, p.nonce, vector, proof().slice(0, 23)));
        reject(verifyProof(root, c.count, idx, p.nonce, vector, []));
      });
      it('extended proof', () => {
        const d = p.proof.length;
        // An extra empty level on top (what a needless depth growth would look like).
        const top = concatBytes(emptyRoot(d), u32le(0));
        reject(verifyProof(root, c.count, idx, p.nonce, vector, [top, ...proof()]));
        reject(verifyProof(root, c.count, idx, p.nonce, vector, [...proof(), concatBytes(emptyRoot(0), u32le(0))]));
        reject(verifyProof(root, c.count, idx, p.nonce, vector, [...proof(), ...proof()].slice(0, 33)));
      });
      it('malformed element length', () => {
        for (const len of [0, 32, 35, 37]) {
          const pr = proof();
          pr[5] = new Uint8Array(len);
          pr[5].set(b64(p.proof[5]).subarray(0, Math.min(len, 36)));
          reject(verifyProof(root, c.count, idx, p.nonce, vector, pr));
        }
      });
    });
  }

  it('rejects a proof whose depth is not justified by a nonce needing that many bits', () => {
    // A real tree of depth 25 whose root's right subtree is empty can only be forged; the
    // builder never makes one, and the verifier refuses it before hashing.
    const c = caseNamed('five_dense');
    const p = c.proofs[0];
    const grown = [concatBytes(emptyRoot(24), u32le(0)), ...p.proof.map(b64)];
    const r = verifyProof(fromHex(c.root_hex), c.count, 0, p.nonce, b64(p.vector_b64), grown);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/right subtree is empty/);
  });

  it('rejects a nonce that does not fit the proof depth', () => {
    const c = caseNamed('five_dense');
    const p = c.proofs[0];
    const r = verifyProof(fromHex(c.root_hex), c.count, 0, 2 ** 24 + p.nonce, b64(p.vector_b64), p.proof.map(b64));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/needs 25 bits/);
  });
});

describe('SmstBuilder input rules', () => {
  it('rejects duplicate nonces (Gonka ErrDuplicateNonce) and keeps the tree unchanged', () => {
    const b = new SmstBuilder();
    b.add(7, new Uint8Array(24));
    const before = b.rootHex();
    expect(() => b.add(7, new Uint8Array(24))).toThrow(/duplicate nonce 7/);
    expect(() => b.add(7, new Uint8Array(24).fill(1))).toThrow(/duplicate/);
    expect(b.count).toBe(1);
    expect(b.rootHex()).toBe(before);
  });

  it('rejects nonces outside [0, 2^31 - 1]', () => {
    const b = new SmstBuilder();
    for (const bad of [-1, 2 ** 31, 2 ** 32, 1.5, Number.NaN, Infinity]) {
      expect(() => b.add(bad, new Uint8Array(24))).toThrow(RangeError);
    }
    expect(b.count).toBe(0);
    b.add(SMST_MAX_NONCE, new Uint8Array(24));
    expect(b.depth()).toBe(31);
  });

  it('rejects out-of-range dense indices', () => {
    const b = new SmstBuilder();
    b.add(3, new Uint8Array(24));
    expect(() => b.proof(1)).toThrow(RangeError);
    expect(() => b.proof(-1)).toThrow(RangeError);
    expect(() => b.nonceAt(1)).toThrow(RangeError);
    expect(b.indexOfNonce(4)).toBe(-1);
  });

  it('copies vectors: later caller mutation does not change the tree', () => {
    const v = new Uint8Array(24).fill(9);
    const b = new SmstBuilder();
    b.add(1, v);
    const root = b.rootHex();
    v[0] = 0;
    const b2 = new SmstBuilder();
    b2.add(1, new Uint8Array(24).fill(9));
    expect(b2.rootHex()).toBe(root);
    expect(b.proof(0).vector).toEqual(new Uint8Array(24).fill(9));
    b.add(2, v); // adding after a build rebuilds
    expect(b.rootHex()).not.toBe(root);
  });

  it('leaf hash is SHA-256(0x00 ‖ uint32 LE nonce ‖ vector) for any vector length', () => {
    const rng = seedrandom('leaf-lengths');
    for (let len = 0; len <= 200; len++) {
      const v = Uint8Array.from({ length: len }, () => Math.floor(rng() * 256));
      const nonce = Math.floor(rng() * 2 ** 31);
      expect(hex(leafHash(nonce, v))).toBe(hex(sha256(concatBytes(Uint8Array.of(0), u32le(nonce), v))));
    }
  });

  it('hex helpers round-trip and reject malformed input', () => {
    const bytes = Uint8Array.of(0, 1, 0xab, 0xff);
    expect(hex(bytes)).toBe('0001abff');
    expect(fromHex('0001ABff')).toEqual(bytes);
    expect(() => fromHex('abc')).toThrow();
    expect(() => fromHex('zz')).toThrow();
    expect(() => emptyRoot(33)).toThrow(RangeError);
  });
});

describe('SMST depth growth (Gonka expandDepth)', () => {
  const vec = (n: number): Uint8Array => sha256(utf8ToBytes(`growth_vec_${n}`)).subarray(0, 24);

  it('grows one level per extra bit, starting from 24, as the golden case says', () => {
    const c = caseNamed('sparse_with_depth_growth');
    const b = new SmstBuilder();
    const depths: number[] = [];
    c.nonces_in_insert_order.forEach((n, i) => {
      b.add(n, b64(c.vectors_b64[i]));
      depths.push(b.depth());
    });
    expect(depths).toEqual(c.nonces_in_insert_order.map((_, i) => (c.nonces_in_insert_order.slice(0, i + 1).some((n) => n >= 2 ** 24) ? 25 : 24)));
    expect(b.depth()).toBe(c.depth_after_inserts);

    for (const [nonce, depth] of [
      [2 ** 24 - 1, 24],
      [2 ** 24, 25],
      [2 ** 25 + 3, 26],
      [2 ** 30, 31],
      [SMST_MAX_NONCE, 31],
    ] as const) {
      const t = new SmstBuilder();
      t.add(0, vec(0));
      t.add(nonce, vec(nonce));
      expect(t.depth()).toBe(depth);
      expect(t.proof(1).proof.length).toBe(depth);
    }
  });

  it('a grown tree keeps the old tree as the root\'s left subtree (root wrapped, empty right)', () => {
    const low = [0, 5, 1000, 70000, 2 ** 24 - 1];
    const small = new SmstBuilder();
    for (const n of low) small.add(n, vec(n));
    const big = new SmstBuilder();
    for (const n of low) big.add(n, vec(n));
    big.add(2 ** 24 + 12, vec(2 ** 24 + 12));
    expect(big.depth()).toBe(25);
    // For the high nonce the root-level sibling is the old depth-24 root with its count.
    const p = big.proof(low.length);
    expect(hex(p.proof[0])).toBe(hex(concatBytes(small.root(), u32le(low.length))));
    // For a low nonce the root-level sibling is the subtree of the high nonce (count 1).
    expect(big.proof(0).proof[0].subarray(32)).toEqual(u32le(1));
    // Same result when the high nonce comes first or last, and as the insert-by-path reference.
    const ref = new GonkaStyleReference();
    for (const n of low) ref.insert(n, vec(n));
    ref.insert(2 ** 24 + 12, vec(2 ** 24 + 12));
    expect(hex(ref.root())).toBe(big.rootHex());
  });
});

describe('SMST randomized (2,000 nonces)', () => {
  const rng = seedrandom('smst-random-2000');
  const seen = new Set<number>();
  const nonces: number[] = [];
  while (nonces.length < 2000) {
    // Mostly below 2^24, a few needing up to 27 bits, so the tree grows to depth 27.
    const n = rng() < 0.98 ? Math.floor(rng() * 2 ** 24) : Math.floor(rng() * 2 ** 27);
    if (!seen.has(n)) {
      seen.add(n);
      nonces.push(n);
    }
  }
  const vectors = nonces.map((n) => sha256(utf8ToBytes(`rand_vec_${n}`)).subarray(0, 24));
  const b = new SmstBuilder();
  nonces.forEach((n, i) => b.add(n, vectors[i]));
  const root = b.root();
  const sorted = nonces.slice().sort((x, y) => x - y);
  const maxBits = 32 - Math.clz32(sorted[sorted.length - 1]);

  it('depth, count and root agree with the insert-by-path reference', () => {
    expect(b.count).toBe(2000);
    expect(b.depth()).toBe(Math.max(24, maxBits));
    const ref = new GonkaStyleReference();
    nonces.forEach((n, i) => ref.insert(n, vectors[i]));
    expect(hex(ref.root())).toBe(hex(root));
  });

  it('every proof verifies and the sum-tree counts hold', () => {
    const vecOf = new Map(nonces.map((n, i) => [n, vectors[i]]));
    for (let i = 0; i < sorted.length; i++) {
      const p = b.proof(i);
      expect(p.nonce).toBe(sorted[i]);
      expect(p.vector).toEqual(vecOf.get(p.nonce));
      const counts = p.proof.map((e) => new DataView(e.buffer, e.byteOffset, 36).getUint32(32, true));
      // root count = this leaf + all siblings; left siblings (path bit 1) = leaves before it
      expect(1 + counts.reduce((s, x) => s + x, 0)).toBe(2000);
      const d = p.proof.length;
      const left = counts.reduce((s, x, j) => s + (((p.nonce >>> (d - 1 - j)) & 1) === 1 ? x : 0), 0);
      expect(left).toBe(i);
      const r = verifyProof(root, 2000, i, p.nonce, p.vector, p.proof);
      if (!r.ok) throw new Error(`dense index ${i}: ${r.reason}`);
    }
  });

  it('a proof does not verify at any other dense index or against another count', () => {
    for (const i of [0, 1, 999, 1999]) {
      const p = b.proof(i);
      for (const j of [i - 1, i + 1]) if (j >= 0 && j < 2000) expect(verifyProof(root, 2000, j, p.nonce, p.vector, p.proof).ok).toBe(false);
      expect(verifyProof(root, 2001, i, p.nonce, p.vector, p.proof).ok).toBe(false);
    }
  });

  it('insert order does not matter', () => {
    const order = shuffle(nonces.map((_, i) => i), seedrandom('shuffle-2000'));
    const b2 = new SmstBuilder();
    for (const i of order) b2.add(nonces[i], vectors[i]);
    expect(b2.rootHex()).toBe(hex(root));
  });
});

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import seedrandom from 'seedrandom';
import { describe, expect, it } from 'vitest';
import {
  artifactDistance,
  computeArtifact,
  decodeArtifact,
  f16BitsToF32,
  f32ToF16Bits,
} from '../src/artifact/artifact.js';

const golden = JSON.parse(
  readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/conformance/rng.json'), 'utf8'),
);

const b64OfHalves = (halves: number[]): string => {
  const buf = Buffer.alloc(2 * halves.length);
  halves.forEach((h, i) => buf.writeUInt16LE(h, 2 * i));
  return buf.toString('base64');
};

describe('computeArtifact golden vectors', () => {
  for (const c of golden.artifact) {
    it(`nonce ${c.nonce}`, () => {
      const a = computeArtifact(Float32Array.from(c.output_vector), c.block_hash, c.public_key, c.nonce, c.k);
      expect(a).not.toBeNull();
      expect(a!.vectorB64).toBe(c.vector_b64);
      expect(Array.from(a!.values)).toEqual(c.artifact_f16_values);
      expect(Buffer.from(a!.bytes).toString('base64')).toBe(c.vector_b64);
      expect(a!.bytes.length).toBe(2 * c.k);
      expect(Array.from(decodeArtifact(c.vector_b64, c.k)!)).toEqual(c.artifact_f16_values);
    });
  }
});

describe('computeArtifact', () => {
  const c = golden.artifact[0];
  const y = Float32Array.from(c.output_vector);

  it('yields no artifact for empty or non-finite outputs', () => {
    expect(computeArtifact(new Float32Array(0), 'b', 'p', 0)).toBeNull();
    for (const bad of [NaN, Infinity, -Infinity]) {
      const z = Float32Array.from(y);
      z[200] = bad; // a coordinate that is not picked still poisons the nonce
      expect(computeArtifact(z, c.block_hash, c.public_key, c.nonce)).toBeNull();
    }
  });

  it('is a unit vector up to fp16 rounding, and scale-invariant', () => {
    const a = computeArtifact(y, c.block_hash, c.public_key, c.nonce)!;
    const n = Math.sqrt(a.values.reduce((s, x) => s + x * x, 0));
    expect(Math.abs(n - 1)).toBeLessThan(2e-3);
    // Scaling by a power of two is exact in float32, so the artifact must not move.
    expect(computeArtifact(y.map((x) => 4 * x), c.block_hash, c.public_key, c.nonce)!.vectorB64).toBe(a.vectorB64);
  });

  it('depends on the nonce, the key and the block', () => {
    const base = computeArtifact(y, 'block', 'key', 5)!.vectorB64;
    expect(computeArtifact(y, 'block', 'key', 6)!.vectorB64).not.toBe(base);
    expect(computeArtifact(y, 'block', 'key2', 5)!.vectorB64).not.toBe(base);
    expect(computeArtifact(y, 'block2', 'key', 5)!.vectorB64).not.toBe(base);
  });

  it('supports other k and rejects bad arguments', () => {
    const a = computeArtifact(y, 'block', 'key', 5, 4)!;
    expect(a.bytes.length).toBe(8);
    expect(Array.from(decodeArtifact(a.vectorB64, 4)!)).toEqual(Array.from(a.values));
    expect(() => computeArtifact(y, 'block', 'key', -(2 ** 31) - 1)).toThrow(/nonce/);
    expect(() => computeArtifact(y, '', 'key', 1)).toThrow(/blockHash/);
    expect(() => computeArtifact(new Float32Array(5), 'block', 'key', 1)).toThrow(/smaller than k/);
    expect(() => computeArtifact(y, 'block', 'key', 1, 0)).toThrow(/k must be/);
  });
});

describe('fp16 conversion', () => {
  it('converts known values', () => {
    const cases: Array<[number, number]> = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [65504, 0x7bff],
      [65519.99, 0x7bff],
      [65520, 0x7c00], // halfway to 2^16 rounds to even, i.e. overflows
      [1e6, 0x7c00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [1023 * 2 ** -24, 0x03ff], // largest subnormal
      [2 ** -14 - 2 ** -25, 0x0400], // tie between 0x03ff and 0x0400: even wins
    ];
    for (const [x, h] of cases) expect(f32ToF16Bits(x), `${x}`).toBe(h);
    const nan = f32ToF16Bits(NaN);
    expect(nan & 0x7c00).toBe(0x7c00);
    expect(nan & 0x03ff).not.toBe(0);
  });

  it('rounds ties to even', () => {
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // between 0x3c00 and 0x3c01
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // between 0x3c01 and 0x3c02
    expect(f32ToF16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // just above the tie
    expect(f32ToF16Bits(2049)).toBe(0x6800); // ulp 2 at 2048
    expect(f32ToF16Bits(2051)).toBe(0x6802);
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // between 0 and the smallest subnormal
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002);
    expect(f32ToF16Bits(-(2 ** -26))).toBe(0x8000); // underflow keeps the sign
    expect(f32ToF16Bits(2 ** 15 * (2 - 2 ** -11))).toBe(0x7c00); // rounds up across the top exponent
  });

  it('round-trips every non-NaN half', () => {
    const failures: string[] = [];
    for (let h = 0; h < 0x10000; h++) {
      const x = f16BitsToF32(h);
      const isNaNBits = (h & 0x7c00) === 0x7c00 && (h & 0x03ff) !== 0;
      const ok = isNaNBits ? Number.isNaN(x) : f32ToF16Bits(x) === h && Math.fround(x) === x;
      if (!ok) failures.push(h.toString(16));
    }
    expect(failures).toEqual([]);
  });

  it('picks the nearest half for random float32 values', () => {
    const rng = seedrandom('fp16');
    const failures: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const x = Math.fround((rng() - 0.5) * 2 ** Math.floor(rng() * 44 - 28));
      const h = f32ToF16Bits(x);
      const err = Math.abs(f16BitsToF32(h) - x);
      const magnitude = h & 0x7fff;
      for (const nb of [magnitude - 1, magnitude + 1]) {
        if (nb < 0 || nb > 0x7bff) continue;
        const other = Math.abs(f16BitsToF32((h & 0x8000) | nb) - x);
        if (err > other || (err === other && (magnitude & 1) !== 0)) failures.push(`x=${x} h=${h.toString(16)}`);
      }
    }
    expect(failures).toEqual([]);
  });
});

describe('decodeArtifact', () => {
  it('rejects wrong lengths, garbage and non-finite values', () => {
    const ok = b64OfHalves(Array(12).fill(0x3c00));
    expect(Array.from(decodeArtifact(ok)!)).toEqual(Array(12).fill(1));
    expect(decodeArtifact(b64OfHalves(Array(11).fill(0x3c00)))).toBeNull();
    expect(decodeArtifact(b64OfHalves(Array(13).fill(0x3c00)))).toBeNull();
    expect(decodeArtifact(ok, 11)).toBeNull();
    expect(decodeArtifact('')).toBeNull();
    expect(decodeArtifact('!!!!' + ok.slice(4))).toBeNull();
    expect(decodeArtifact(ok + ' ')).toBeNull();
    expect(decodeArtifact(ok.slice(0, 31))).toBeNull();
    expect(decodeArtifact(ok.replace(/.$/, '='))).toBeNull();
    expect(decodeArtifact(123 as unknown as string)).toBeNull();
    for (const bad of [0x7e00, 0x7c00, 0xfc00, 0x7c01]) {
      const halves = Array(12).fill(0x3c00);
      halves[7] = bad;
      expect(decodeArtifact(b64OfHalves(halves)), bad.toString(16)).toBeNull();
    }
  });
});

describe('artifactDistance', () => {
  it('is the L2 distance', () => {
    const a = Float32Array.of(0, 0, 1);
    const b = Float32Array.of(3, 4, 1);
    expect(artifactDistance(a, b)).toBe(5);
    expect(artifactDistance(b, a)).toBe(5);
    expect(artifactDistance(a, a)).toBe(0);
    expect(() => artifactDistance(a, Float32Array.of(1))).toThrow(/length mismatch/);
  });
});

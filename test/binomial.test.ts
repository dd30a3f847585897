import { describe, expect, it } from 'vitest';
import {
  binomialPower,
  binomialTailPValue,
  logBinomialCoefficient,
  logBinomialTailPValue,
} from '../src/validation/binomial.js';

// ---- independent exact arithmetic -------------------------------------------------------------

const bitLength = (x: bigint): number => x.toString(2).length;

/** num/den (positive BigInts) rounded to a double; exact scaling, correct to ~2^-63. */
function ratioToNumber(num: bigint, den: bigint): number {
  if (num === 0n) return 0;
  const shift = 64 - (bitLength(num) - bitLength(den));
  const q = shift >= 0 ? (num << BigInt(shift)) / den : num / (den << BigInt(-shift));
  const half = Math.trunc(shift / 2);
  return Number(q) * 2 ** -half * 2 ** -(shift - half);
}

function binomBig(n: number, k: number): bigint {
  let c = 1n;
  for (let i = 0; i < k; i++) c = (c * BigInt(n - i)) / BigInt(i + 1);
  return c;
}

/** Exact P[X ≥ k] for X ~ Binomial(n, a/b), by summing the pmf in rationals. */
function exactTail(n: number, k: number, a: number, b: number): number {
  if (k <= 0) return 1;
  if (k > n) return 0;
  const A = BigInt(a);
  const B = BigInt(b);
  let num = 0n;
  for (let i = k; i <= n; i++) num += binomBig(n, i) * A ** BigInt(i) * (B - A) ** BigInt(n - i);
  return ratioToNumber(num, B ** BigInt(n));
}

/**
 * Exact suffix sums Σ_{i≥k} C(n,i)·(b−1)^(n−i) for p = 1/b, via the exact integer recurrence
 * T_{i−1} = T_i·i·(b−1)/(n−i+1) from T_n = 1; returns P[X ≥ k] for each requested k.
 */
function exactTailsOneOverB(n: number, b: number, ks: number[]): Map<number, number> {
  const want = new Set(ks);
  const den = BigInt(b) ** BigInt(n);
  const out = new Map<number, number>();
  let t = 1n;
  let s = 0n;
  for (let i = n; i >= 0; i--) {
    s += t;
    if (want.has(i)) out.set(i, ratioToNumber(s, den));
    if (i > 0) t = (t * BigInt(i) * BigInt(b - 1)) / BigInt(n - i + 1);
  }
  return out;
}

/**
 * Relative error bound c·max(1, |ln expected|): a log-space evaluation cannot do better than a few
 * ulps of ln P (e.g. ~1.5e-13 at P = 1e-300), while the bulk must be good to a few 1e-15. A
 * difference-of-lgamma evaluation (error ~ ln(n!)·2^-52 ≈ 2e-11 at n = 10^4) fails this.
 */
function expectClose(actual: number, expected: number, what = '', c = 4e-15): void {
  if (expected === 0) {
    expect(actual, what).toBe(0);
    return;
  }
  const tol = c * Math.max(1, Math.abs(Math.log(expected)));
  const rel = Math.abs(actual - expected) / expected;
  if (!(rel <= tol)) throw new Error(`${what}: got ${actual}, expected ${expected} (rel err ${rel} > ${tol})`);
}

// ---- tests ------------------------------------------------------------------------------------

describe('binomialTailPValue: exact small-n values', () => {
  // p = a/b. Dyadic ones are exact doubles; for the others the double p differs from a/b by
  // < 2^-53 relative, which moves the tail by < ~2n·2^-53 relative — inside the tolerance.
  const probs: Array<[number, number]> = [
    [1, 2], [1, 4], [3, 8], [1, 64], [63, 64], [1, 1024], [1, 3], [1, 10], [1, 50], [49, 50], [7, 9],
  ];
  for (const n of [1, 2, 3, 5, 10, 17, 30, 45, 60]) {
    it(`n = ${n}, all k, ${probs.length} values of p`, () => {
      for (const [a, b] of probs) {
        const p = a / b;
        for (let k = -1; k <= n + 1; k++) {
          expectClose(binomialTailPValue(n, k, p), exactTail(n, k, a, b), `n=${n} k=${k} p=${a}/${b}`);
        }
      }
    });
  }

  it('n = 200 (Gonka sample size), every k, p = 1/10 and 1/50', () => {
    for (const b of [10, 50]) {
      const ks = Array.from({ length: 201 }, (_, i) => i);
      const exact = exactTailsOneOverB(200, b, ks);
      for (const k of ks) {
        expectClose(binomialTailPValue(200, k, 1 / b), exact.get(k)!, `n=200 k=${k} p=1/${b}`);
      }
    }
  });
});

describe('binomialTailPValue: n = 10,000 against exact BigInt rationals', () => {
  it('p = 1/50: bulk and tails down to ~1e-307, 0 where the value underflows', () => {
    const ks = [1, 100, 150, 199, 200, 201, 250, 300, 400, 600, 900, 905, 910, 915, 1000];
    const exact = exactTailsOneOverB(10_000, 50, ks);
    for (const k of ks) {
      expectClose(binomialTailPValue(10_000, k, 1 / 50), exact.get(k)!, `k=${k}`);
    }
    // Spot checks against a 60-digit mpmath sum (independent of the BigInt code above).
    expectClose(binomialTailPValue(10_000, 400, 0.02), 1.4234790215402141791e-36, 'mpmath k=400');
    expect(exact.get(915)!).toBeGreaterThan(1e-308);
    expect(exact.get(915)!).toBeLessThan(1e-306);
    // True value 1.24e-368 is below the smallest subnormal.
    expect(exact.get(1000)).toBe(0);
    expect(binomialTailPValue(10_000, 1000, 0.02)).toBe(0);
    expect(logBinomialTailPValue(10_000, 1000, 0.02) / Math.LN10).toBeCloseTo(-367.906, 2);
  });

  it('p = 1/2 and p = 1/10: tails near 1e-300', () => {
    const half = exactTailsOneOverB(10_000, 2, [5000, 5100, 6000, 6820, 6830, 6840]);
    for (const [k, v] of half) expectClose(binomialTailPValue(10_000, k, 0.5), v, `p=1/2 k=${k}`);
    expect(half.get(6840)!).toBeLessThan(1e-302);
    const tenth = exactTailsOneOverB(10_000, 10, [900, 1000, 1100, 1500, 2260, 2270, 2280]);
    for (const [k, v] of tenth) expectClose(binomialTailPValue(10_000, k, 0.1), v, `p=1/10 k=${k}`);
    expect(tenth.get(2280)!).toBeLessThan(1e-302);
  });

  it('subnormal results are returned, not flushed to 0', () => {
    // 0.93^10000 = 6.7528256882183770483e-316 (mpmath); subnormal spacing limits precision.
    const sub = binomialTailPValue(10_000, 10_000, 0.93);
    expect(Math.abs(sub - 6.7528256882183770483e-316) / 6.7528256882183770483e-316).toBeLessThan(1e-7);
  });
});

describe('binomialTailPValue: known answers (60-digit mpmath)', () => {
  const cases: Array<[number, number, number, number]> = [
    [200, 28, 0.1, 0.043428499610610781198],
    [200, 31, 0.1, 0.0095083119469732592284],
    [200, 27, 0.1, 0.067224684073425001907],
    [200, 5, 5e-4, 7.3061158824233770417e-8],
    [200, 10, 0.02, 0.0074792878653614870777],
    [200, 9, 0.02, 0.020174875984250773243],
    [200, 28, 1e-7, 1.2118086642761387928e-162],
    [1000, 1, 1e-300, 1.0e-297],
  ];
  for (const [n, k, p, v] of cases) {
    it(`P[Bin(${n}, ${p}) ≥ ${k}] = ${v}`, () => expectClose(binomialTailPValue(n, k, p), v, `n=${n} k=${k} p=${p}`));
  }
});

describe('binomialTailPValue: symmetry and monotonicity', () => {
  it('P_p[X ≥ k] + P_{1−p}[X ≥ n−k+1] = 1', () => {
    for (const [n, p] of [[10_000, 0.5], [10_000, 0.25], [999, 0.375], [1_000_000, 0.5], [57, 0.125]] as const) {
      const sd = Math.sqrt(n * p * (1 - p));
      for (const z of [-6, -3, -1.5, -0.5, 0, 0.3, 1, 2, 4]) {
        const k = Math.round(n * p + z * sd);
        const s = binomialTailPValue(n, k, p) + binomialTailPValue(n, n - k + 1, 1 - p);
        expect(Math.abs(s - 1), `n=${n} p=${p} k=${k}`).toBeLessThan(4e-15);
      }
    }
  });

  it('p = 1/2, n even: P[X ≥ n/2 + j] = P[X ≤ n/2 − j]', () => {
    const n = 10_000;
    for (const j of [1, 7, 50, 120]) { // upper ≥ 0.008: 1 − tail does not cancel
      const upper = binomialTailPValue(n, n / 2 + j, 0.5);
      const lower = 1 - binomialTailPValue(n, n / 2 - j + 1, 0.5);
      expect(Math.abs(upper - lower)).toBeLessThanOrEqual(4e-16);
    }
  });

  it('non-increasing in k, non-decreasing in p', () => {
    const ps = [0, 1e-9, 1e-4, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.33, 0.5, 0.7, 0.9, 0.99, 1];
    for (const n of [1, 20, 200, 2000]) {
      for (const p of ps) {
        let prev = Infinity;
        for (let k = -1; k <= n + 2; k++) {
          const v = binomialTailPValue(n, k, p);
          expect(v).toBeGreaterThanOrEqual(0);
          expect(v).toBeLessThanOrEqual(1);
          expect(v, `n=${n} p=${p} k=${k}`).toBeLessThanOrEqual(prev * (1 + 1e-15));
          prev = v;
        }
      }
      for (const k of [1, 2, Math.ceil(n / 10), Math.ceil(n / 2), n]) {
        let prev = -Infinity;
        for (const p of ps) {
          const v = binomialTailPValue(n, k, p);
          expect(v, `n=${n} k=${k} p=${p}`).toBeGreaterThanOrEqual(prev * (1 - 1e-15));
          prev = v;
        }
      }
    }
  });
});

describe('binomialTailPValue: edge cases and input checks', () => {
  it('k ≤ 0 → 1, k > n → 0, p = 0, p = 1, n = 0', () => {
    expect(binomialTailPValue(10, 0, 0.3)).toBe(1);
    expect(binomialTailPValue(10, -5, 0.3)).toBe(1);
    expect(binomialTailPValue(10, 11, 0.3)).toBe(0);
    expect(binomialTailPValue(10, 11, 1)).toBe(0);
    expect(binomialTailPValue(10, 0, 0)).toBe(1);
    expect(binomialTailPValue(10, 1, 0)).toBe(0);
    expect(binomialTailPValue(10, 10, 1)).toBe(1);
    expect(binomialTailPValue(10, 1, 1)).toBe(1);
    expect(binomialTailPValue(0, 0, 0.5)).toBe(1);
    expect(binomialTailPValue(0, 1, 0.5)).toBe(0);
    expect(binomialTailPValue(1, 1, 0.25)).toBe(0.25);
    expect(logBinomialTailPValue(10, 11, 0.3)).toBe(-Infinity);
    expect(logBinomialTailPValue(10, 0, 0.3)).toBe(0);
  });

  it('rejects bad arguments with clear errors', () => {
    expect(() => binomialTailPValue(-1, 0, 0.5)).toThrow(/n must be a non-negative/);
    expect(() => binomialTailPValue(1.5, 0, 0.5)).toThrow(/n must be/);
    expect(() => binomialTailPValue(NaN, 0, 0.5)).toThrow(/n must be/);
    expect(() => binomialTailPValue(10, 2.5, 0.5)).toThrow(/k must be a safe integer/);
    expect(() => binomialTailPValue(10, NaN, 0.5)).toThrow(/k must be/);
    expect(() => binomialTailPValue(10, 2, -0.1)).toThrow(/p must be a number in \[0, 1\]/);
    expect(() => binomialTailPValue(10, 2, 1.0000001)).toThrow(/p must be/);
    expect(() => binomialTailPValue(10, 2, NaN)).toThrow(/p must be/);
    expect(() => binomialTailPValue(10, 2, '0.5' as unknown as number)).toThrow(/p must be/);
    expect(() => binomialTailPValue(10, 2, 0.5)).not.toThrow();
  });

  it('is fast enough for validation loops (n = 10,000 near the mode, n = 10^7)', () => {
    const t0 = performance.now();
    for (let i = 0; i < 50; i++) binomialTailPValue(10_000, 200 + (i % 5), 0.02);
    const v = binomialTailPValue(10_000_000, 5_000_000, 0.5);
    expect(v).toBeGreaterThan(0.5);
    expect(v).toBeLessThan(0.5002);
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});

describe('logBinomialCoefficient', () => {
  it('matches exact BigInt binomial coefficients', () => {
    for (const n of [0, 1, 2, 5, 16, 17, 36, 81, 100, 501, 1000]) {
      for (let k = 0; k <= n; k++) {
        const exact = Math.log(Number(binomBig(n, k))); // C(1000, k) < 1e300: fits a double
        const got = logBinomialCoefficient(n, k);
        expect(Math.abs(got - exact), `C(${n},${k})`).toBeLessThanOrEqual(4e-15 * Math.max(1, exact));
      }
    }
  });

  it('large n stays accurate: ln C(10^4, 10^3) via the exact BigInt', () => {
    const c = binomBig(10_000, 1000);
    const shift = bitLength(c) - 60;
    const exact = Math.log(Number(c >> BigInt(shift))) + shift * Math.LN2;
    expect(Math.abs(logBinomialCoefficient(10_000, 1000) - exact) / exact).toBeLessThan(1e-15);
  });

  it('rejects k outside [0, n]', () => {
    expect(() => logBinomialCoefficient(5, 6)).toThrow(/0 ≤ k ≤ n/);
    expect(() => logBinomialCoefficient(5, -1)).toThrow(/0 ≤ k ≤ n/);
  });
});

describe('binomialPower', () => {
  it("reproduces Gonka's derived fraud triggers at n = 200", () => {
    // gonka-poc.md §5.5: "≥ 28 mismatches (α 0.05) or ≥ 31 (α 0.01)" for p_mismatch 0.1;
    // §5.2: PoC 1.0 (p0 = 5e-4, threshold 1e-7) "flags fraud at ≥ 5 invalid nonces".
    expect(binomialPower(200, 0.1, 0.3, 0.05).criticalK).toBe(28);
    expect(binomialPower(200, 0.1, 0.3, 0.01).criticalK).toBe(31);
    expect(binomialPower(200, 5e-4, 0.02, 1e-7).criticalK).toBe(5);
    // SPEC §10 defaults: p_mismatch 0.02, threshold 0.01.
    expect(binomialPower(200, 0.02, 0.1, 0.01).criticalK).toBe(10);
  });

  it('criticalK is the first k with tail < alpha; power is the cheat tail there', () => {
    for (const [n, ph, pc, a] of [
      [200, 0.02, 0.05, 0.01], [200, 0.1, 0.2, 0.05], [50, 0.3, 0.6, 1e-3], [1000, 0.001, 0.01, 1e-9],
    ] as const) {
      const { criticalK, power } = binomialPower(n, ph, pc, a);
      expect(binomialTailPValue(n, criticalK, ph)).toBeLessThan(a);
      expect(binomialTailPValue(n, criticalK - 1, ph)).toBeGreaterThanOrEqual(a);
      expect(power).toBe(binomialTailPValue(n, criticalK, pc));
    }
    // power at pCheat = pHonest is the size of the test, below alpha.
    const same = binomialPower(200, 0.02, 0.02, 0.01);
    expect(same.power).toBeLessThan(0.01);
    expect(same.power).toBeCloseTo(0.0074792878653614870777, 15);
  });

  it('returns n + 1 and power 0 when the test can never fire; alpha = 1 gives k = 1', () => {
    expect(binomialPower(10, 0.9, 0.99, 0.01)).toEqual({ criticalK: 11, power: 0 });
    expect(binomialPower(10, 0.5, 0.5, 1).criticalK).toBe(1);
  });

  it('rejects bad alpha / p', () => {
    expect(() => binomialPower(200, 0.1, 0.2, 0)).toThrow(/alpha/);
    expect(() => binomialPower(200, 0.1, 0.2, 1.5)).toThrow(/alpha/);
    expect(() => binomialPower(200, 0.1, 0.2, NaN)).toThrow(/alpha/);
    expect(() => binomialPower(200, 1.1, 0.2, 0.01)).toThrow(/p must be/);
    expect(() => binomialPower(200, 0.1, -0.2, 0.01)).toThrow(/p must be/);
  });
});

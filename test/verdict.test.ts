import { describe, expect, it } from 'vitest';
import { InputError } from '../src/errors.js';
import { binomialTailPValue } from '../src/validation/binomial.js';
import {
  DEFAULT_STAT_TEST,
  POROSITY_LIMIT,
  decideVerdict,
  parseStatTest,
  porosity,
  porosityOk,
  type StatTest,
  type ValidatedCallback,
} from '../src/validation/verdict.js';

/** n results for nonces 0..n−1 (times step), the first m of which mismatch. */
function results(n: number, m: number, step = 1): Array<{ nonce: number; mismatch: boolean }> {
  return Array.from({ length: n }, (_, i) => ({ nonce: i * step, mismatch: i < m }));
}

describe('parseStatTest', () => {
  it('defaults (SPEC §10: 0.1, 0.02, 0.01) for undefined, null and {}', () => {
    expect(DEFAULT_STAT_TEST).toEqual({ dist_threshold: 0.1, p_mismatch: 0.02, p_value_threshold: 0.01 });
    expect(parseStatTest(undefined)).toEqual(DEFAULT_STAT_TEST);
    expect(parseStatTest(null)).toEqual(DEFAULT_STAT_TEST);
    expect(parseStatTest({})).toEqual(DEFAULT_STAT_TEST);
    expect(Object.isFrozen(DEFAULT_STAT_TEST)).toBe(true);
    expect(parseStatTest({})).not.toBe(DEFAULT_STAT_TEST); // a fresh, mutable copy
  });

  it('fills only the missing fields', () => {
    expect(parseStatTest({ dist_threshold: 0.2 })).toEqual({ ...DEFAULT_STAT_TEST, dist_threshold: 0.2 });
    expect(parseStatTest({ p_mismatch: 0.1, p_value_threshold: 0.05 })).toEqual({
      dist_threshold: 0.1,
      p_mismatch: 0.1,
      p_value_threshold: 0.05,
    });
  });

  it('accepts fraud_threshold (vLLM name) as an alias of p_value_threshold (DAPI name)', () => {
    expect(parseStatTest({ fraud_threshold: 1e-7 }).p_value_threshold).toBe(1e-7);
    expect(parseStatTest({ p_value_threshold: 0.05 }).p_value_threshold).toBe(0.05);
    expect(parseStatTest({ p_value_threshold: 0.05, fraud_threshold: 0.05 }).p_value_threshold).toBe(0.05);
    expect(() => parseStatTest({ p_value_threshold: 0.05, fraud_threshold: 0.01 })).toThrow(/disagree/);
    expect('fraud_threshold' in parseStatTest({ fraud_threshold: 0.2 })).toBe(false);
  });

  it('takes the exact body DAPI and vLLM send', () => {
    // DAPI (mlnodeclient/poc_v2_requests.go) and vLLM (routes.py) shapes, gonka-poc.md §6.3/§6.4.
    expect(parseStatTest({ dist_threshold: 0.2, p_mismatch: 0.1, p_value_threshold: 0.05 })).toEqual({
      dist_threshold: 0.2,
      p_mismatch: 0.1,
      p_value_threshold: 0.05,
    });
    expect(parseStatTest({ dist_threshold: 0.02, p_mismatch: 0.001, fraud_threshold: 0.01 })).toEqual({
      dist_threshold: 0.02,
      p_mismatch: 0.001,
      p_value_threshold: 0.01,
    });
  });

  it('ignores unknown keys unless strict', () => {
    expect(parseStatTest({ p_mismatch: 0.05, extra: 'x' })).toEqual({ ...DEFAULT_STAT_TEST, p_mismatch: 0.05 });
    expect(() => parseStatTest({ p_mismatch: 0.05, extra: 'x' }, { strict: true })).toThrow(/unknown field\(s\): extra/);
    expect(parseStatTest({ fraud_threshold: 0.05 }, { strict: true }).p_value_threshold).toBe(0.05);
  });

  it('accepts range boundaries', () => {
    expect(parseStatTest({ dist_threshold: 0, p_mismatch: 0, p_value_threshold: 1 })).toEqual({
      dist_threshold: 0,
      p_mismatch: 0,
      p_value_threshold: 1,
    });
  });

  it('rejects malformed stat_test with InputError', () => {
    const bad: unknown[] = [
      'x', 5, true, [], [0.1], new Date(0),
      { dist_threshold: '0.1' }, { dist_threshold: -0.1 }, { dist_threshold: Infinity }, { dist_threshold: NaN },
      { dist_threshold: null },
      { p_mismatch: -0.01 }, { p_mismatch: 1 }, { p_mismatch: 2 }, { p_mismatch: '0.02' },
      { p_value_threshold: 0 }, { p_value_threshold: 1.5 }, { p_value_threshold: -1 }, { p_value_threshold: false },
      { fraud_threshold: 0 }, { fraud_threshold: 'high' },
    ];
    for (const b of bad) {
      expect(() => parseStatTest(b), JSON.stringify(b) ?? String(b)).toThrow(InputError);
    }
    expect(() => parseStatTest('x')).toThrow(/stat_test must be an object, got string/);
    expect(() => parseStatTest([])).toThrow(/got an array/);
    expect(() => parseStatTest({ p_mismatch: 1 })).toThrow(/stat_test\.p_mismatch must be a number in \[0, 1\), got 1/);
    expect(() => parseStatTest({ dist_threshold: '0.1' })).toThrow(/stat_test\.dist_threshold .* got "0\.1"/);
    expect(() => parseStatTest({ fraud_threshold: 0 })).toThrow(/stat_test\.fraud_threshold must be a number in \(0, 1\]/);
  });
});

describe('decideVerdict', () => {
  it("has exactly Gonka's validation-result fields", () => {
    const v = decideVerdict(results(200, 3), DEFAULT_STAT_TEST);
    expect(Object.keys(v).sort()).toEqual(['fraud_detected', 'mismatch_nonces', 'n_mismatch', 'n_total', 'p_value']);
    expect(v.n_total).toBe(200);
    expect(v.n_mismatch).toBe(3);
    expect(v.mismatch_nonces).toEqual([0, 1, 2]);
    expect(v.p_value).toBe(binomialTailPValue(200, 3, 0.02));
    expect(v.fraud_detected).toBe(false);
    // The callback body is the verdict plus Gonka's envelope fields.
    const body: ValidatedCallback = {
      request_id: 'r', block_hash: 'h', block_height: 1, public_key: 'pk', node_id: 0, ...v,
    };
    expect(body.n_total).toBe(200);
  });

  it('keeps mismatch nonces in input order', () => {
    const r = [
      { nonce: 90, mismatch: true }, { nonce: 5, mismatch: false }, { nonce: 17, mismatch: true },
    ];
    expect(decideVerdict(r, DEFAULT_STAT_TEST).mismatch_nonces).toEqual([90, 17]);
  });

  it('SPEC §10 defaults on 200 samples: 9 mismatches pass, 10 are fraud', () => {
    // P[Bin(200, .02) ≥ 9] = 0.0202, P[≥ 10] = 0.00748 (mpmath).
    const nine = decideVerdict(results(200, 9), DEFAULT_STAT_TEST);
    expect(nine.fraud_detected).toBe(false);
    expect(nine.p_value).toBeCloseTo(0.020174875984250773, 14);
    const ten = decideVerdict(results(200, 10), DEFAULT_STAT_TEST);
    expect(ten.fraud_detected).toBe(true);
    expect(ten.p_value).toBeCloseTo(0.0074792878653614871, 14);
  });

  it("Gonka chain parameters (p_mismatch 0.1): 30 pass and 31 convict at threshold 0.01", () => {
    const stat = parseStatTest({ dist_threshold: 0.2, p_mismatch: 0.1, fraud_threshold: 0.01 });
    expect(decideVerdict(results(200, 30), stat).fraud_detected).toBe(false);
    expect(decideVerdict(results(200, 31), stat).fraud_detected).toBe(true);
  });

  it('is strict at the threshold: p_value == threshold is not fraud', () => {
    const p = binomialTailPValue(200, 7, 0.02);
    const at: StatTest = { ...DEFAULT_STAT_TEST, p_value_threshold: p };
    const v = decideVerdict(results(200, 7), at);
    expect(v.p_value).toBe(p);
    expect(v.fraud_detected).toBe(false);
    const above = { ...at, p_value_threshold: p * (1 + 2 ** -52) }; // next double up
    expect(above.p_value_threshold).toBeGreaterThan(p);
    expect(decideVerdict(results(200, 7), above).fraud_detected).toBe(true);
    // No mismatches: p_value exactly 1, never below a threshold ≤ 1.
    const none = decideVerdict(results(200, 0), { ...DEFAULT_STAT_TEST, p_value_threshold: 1 });
    expect(none.p_value).toBe(1);
    expect(none.fraud_detected).toBe(false);
  });

  it('p_mismatch 0: any mismatch has p_value 0 and is fraud', () => {
    const stat = { ...DEFAULT_STAT_TEST, p_mismatch: 0 };
    expect(decideVerdict(results(200, 1), stat)).toMatchObject({ p_value: 0, fraud_detected: true });
    expect(decideVerdict(results(200, 0), stat)).toMatchObject({ p_value: 1, fraud_detected: false });
  });

  it('all mismatched: tiny p_value, fraud; empty input: no fraud', () => {
    const all = decideVerdict(results(200, 200), DEFAULT_STAT_TEST);
    expect(all.p_value).toBe(0); // 0.02^200 = 1.6e-340 is below the smallest double
    expect(all.fraud_detected).toBe(true);
    const half = decideVerdict(results(200, 100), DEFAULT_STAT_TEST);
    expect(half.p_value).toBeGreaterThan(0);
    expect(half.p_value).toBeLessThan(1e-100);
    expect(half.fraud_detected).toBe(true);
    expect(decideVerdict([], DEFAULT_STAT_TEST)).toEqual({
      n_total: 0, n_mismatch: 0, mismatch_nonces: [], p_value: 1, fraud_detected: false,
    });
  });

  it('rejects duplicate or non-integer nonces and non-boolean flags', () => {
    expect(() => decideVerdict([{ nonce: 1, mismatch: false }, { nonce: 1, mismatch: true }], DEFAULT_STAT_TEST))
      .toThrow(/appears more than once/);
    expect(() => decideVerdict([{ nonce: 1.5, mismatch: false }], DEFAULT_STAT_TEST)).toThrow(InputError);
    expect(() => decideVerdict([{ nonce: 1, mismatch: 1 as unknown as boolean }], DEFAULT_STAT_TEST))
      .toThrow(/not a boolean/);
  });
});

describe('porosity', () => {
  it('is max|nonce| / count', () => {
    expect(POROSITY_LIMIT).toBe(100);
    expect(porosity([3, 10, 7], 5)).toBe(2);
    expect(porosity([-700, 10], 7)).toBe(100); // absolute value, as Gonka (PR #903)
    expect(porosity([], 10)).toBe(0);
    expect(porosity([0], 0)).toBe(Infinity);
  });

  it('limit is strict: max|nonce| / count must be < 100', () => {
    expect(porosityOk([9_999], 100)).toBe(true);
    expect(porosityOk([10_000], 100)).toBe(false);
    expect(porosityOk([-10_000], 100)).toBe(false);
    // Gonka-style nonce stride: node_count·n_groups = 8 nodes, dense and fine.
    expect(porosityOk(Array.from({ length: 200 }, (_, i) => i * 8), 200)).toBe(true);
  });

  it('rejects bad input', () => {
    expect(() => porosity([1.5], 10)).toThrow(/integer/);
    expect(() => porosity([1], -1)).toThrow(/count/);
  });
});

import { describe, expect, it } from 'vitest';
import seedrandom from 'seedrandom';
import { InputError } from '../src/errors.js';
import { binomialPower } from '../src/validation/binomial.js';
import {
  auc,
  chooseStatTest,
  detectionPower,
  DIST_THRESHOLD_FLOOR,
  mismatchRate,
  partialAuc,
  quantile,
  rocCurve,
  summarize,
  thresholds,
} from '../src/calibration/stats.js';
import { buildCalibrationResult, calibrationMarkdown } from '../src/calibration/report.js';

const range = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe('quantile (type 7)', () => {
  it('matches hand-computed values', () => {
    expect(quantile([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(quantile([1, 2, 3, 4], 0.25)).toBe(1.75);
    expect(quantile([1, 2, 3, 4], 0)).toBe(1);
    expect(quantile([1, 2, 3, 4], 1)).toBe(4);
    expect(quantile([7], 0.98)).toBe(7);
    // n = 10: h = 9·0.98 = 8.82 → x[8] + 0.82·(x[9] − x[8]) = 9.82 (numpy.percentile agrees)
    expect(quantile(range(1, 10), 0.98)).toBeCloseTo(9.82, 12);
    expect(quantile(range(1, 10), 0.999)).toBeCloseTo(9.991, 12);
    // n = 101 values 0..100: p98 is exactly the order statistic 98
    expect(quantile(range(0, 100), 0.98)).toBe(98);
  });

  it('handles ties and +Infinity without NaN', () => {
    expect(quantile([1, 1, 1], 0.3)).toBe(1);
    expect(quantile([1, Infinity, Infinity], 0.75)).toBe(Infinity);
    expect(quantile([1, 2, Infinity], 0.5)).toBe(2);
  });

  it('rejects bad input', () => {
    expect(() => quantile([], 0.5)).toThrow(InputError);
    expect(() => quantile([2, 1], 0.5)).toThrow(InputError);
    expect(() => quantile([1, 2], 1.5)).toThrow(InputError);
    expect(() => quantile([1, NaN], 0.5)).toThrow(InputError);
  });
});

describe('summarize / thresholds / mismatchRate', () => {
  it('summarizes an unsorted sample', () => {
    expect(summarize([3, 1, 2])).toEqual({ n: 3, p50: 2, p98: 2.96, p999: 2.998, max: 3, mean: 2 });
    const s = summarize(range(1, 10));
    expect(s.p98).toBeCloseTo(9.82, 12);
    expect(s.p999).toBeCloseTo(9.991, 12);
    expect(s.mean).toBe(5.5);
  });

  it('thresholds are the p98 and p99.9 of the honest distances', () => {
    const t = thresholds(range(0, 100).reverse());
    expect(t.p98).toBe(98);
    expect(t.p999).toBeCloseTo(99.9, 12);
  });

  it('counts strictly-greater distances, as the validator does', () => {
    expect(mismatchRate([0.1, 0.2, 0.3, 0.4], 0.2)).toBe(0.5);
    expect(mismatchRate([0.1, 0.2, Infinity], 0.2)).toBeCloseTo(1 / 3, 15);
  });

  it('rejects NaN, negative and empty distances', () => {
    expect(() => summarize([])).toThrow(InputError);
    expect(() => summarize([1, NaN])).toThrow(InputError);
    expect(() => summarize([-0.5])).toThrow(InputError);
  });
});

describe('ROC, AUC, partial AUC', () => {
  it('AUC is 1 for perfectly separated sets and 0 for the reverse', () => {
    expect(auc([0.1, 0.2, 0.3], [0.5, 0.6])).toBe(1);
    expect(auc([0.5, 0.6], [0.1, 0.2, 0.3])).toBe(0);
    expect(partialAuc([0.1, 0.2, 0.3], [0.5, 0.6])).toBe(1);
  });

  it('AUC is 0.5 for identical sets', () => {
    expect(auc([1, 2, 3, 4], [1, 2, 3, 4])).toBe(0.5);
    expect(auc([0, 0, 0], [0, 0])).toBe(0.5);
  });

  it('hand-computed case with ties: benign {1,2,3}, malign {2,3,4} → 7/9', () => {
    // wins + ½·ties over the 9 pairs: m=2 → 1 + ½, m=3 → 2 + ½, m=4 → 3; total 7
    expect(auc([1, 2, 3], [2, 3, 4])).toBeCloseTo(7 / 9, 15);
    const roc = rocCurve([1, 2, 3], [2, 3, 4]);
    expect(roc.thresholds).toEqual([4, 3, 2, 1, -Infinity]);
    expect(roc.fpr).toEqual([0, 0, 1 / 3, 2 / 3, 1]);
    expect(roc.tpr).toEqual([0, 1 / 3, 2 / 3, 1, 1]);
  });

  it('trapezoidal ROC area equals the Mann–Whitney AUC and brute force on tied random data', () => {
    const rng = seedrandom('roc');
    const b = Array.from({ length: 300 }, () => Math.floor(rng() * 20));
    const m = Array.from({ length: 200 }, () => Math.floor(rng() * 20) + 3);
    let brute = 0;
    for (const x of m) for (const y of b) brute += x > y ? 1 : x === y ? 0.5 : 0;
    brute /= b.length * m.length;
    const { fpr, tpr } = rocCurve(b, m);
    let trap = 0;
    for (let k = 1; k < fpr.length; k++) trap += ((fpr[k] - fpr[k - 1]) * (tpr[k] + tpr[k - 1])) / 2;
    expect(auc(b, m)).toBeCloseTo(brute, 12);
    expect(trap).toBeCloseTo(brute, 12);
    expect(partialAuc(b, m, 1)).toBeCloseTo(brute, 12);
    expect(brute).toBeGreaterThan(0.55);
    expect(brute).toBeLessThan(0.95);
  });

  it('partial AUC interpolates the ROC at maxFpr (hand-computed)', () => {
    // benign {1,2}, malign {2,3}: ROC (0,0) (0,½) (½,1) (1,1). Up to FPR ¼ the curve goes from
    // (0,½) to (¼,¾): area ¼·(½+¾)/2 = 5/32; normalised by ¼ → 5/8.
    expect(partialAuc([1, 2], [2, 3], 0.25)).toBeCloseTo(0.625, 15);
    expect(auc([1, 2], [2, 3])).toBe(0.875);
    // benign {1,2,3}, malign {2,3,4} up to FPR ½: 1/6 + (1/6)·(2/3 + 5/6)/2 = 7/24 → /½ = 7/12
    expect(partialAuc([1, 2, 3], [2, 3, 4], 0.5)).toBeCloseTo(7 / 12, 15);
  });

  it('partial AUC at 1 % with a vertical ROC segment exactly at FPR = 0.01', () => {
    // 100 benign 1..100; malign {50.5, 99.5, 200, 300}. TPR is ½ on FPR ∈ [0, 0.01]
    // (200 and 300 beat every benign value, 99.5 beats all but 100) → pAUC = ½.
    expect(partialAuc(range(1, 100), [50.5, 99.5, 200, 300], 0.01)).toBeCloseTo(0.5, 15);
    // chance level is maxFpr/2 after the normalisation: identical sets give a diagonal ROC
    expect(partialAuc(range(1, 100), range(1, 100), 0.01)).toBeCloseTo(0.005, 15);
  });

  it('rejects bad input', () => {
    expect(() => auc([], [1])).toThrow(InputError);
    expect(() => rocCurve([1], [])).toThrow(InputError);
    expect(() => partialAuc([1], [2], 0)).toThrow(InputError);
    expect(() => auc([NaN], [1])).toThrow(InputError);
  });
});

describe('detectionPower', () => {
  it('equals binomialPower at p = f·m + (1 − f)·h', () => {
    for (const [n, h, alpha, m, f] of [
      [200, 0.02, 0.01, 0.5, 0.1],
      [200, 0.02, 0.01, 0.77, 0.05],
      [50, 0.1, 0.05, 0.9, 1],
    ]) {
      const expected = binomialPower(n, h, f * m + (1 - f) * h, alpha).power;
      expect(detectionPower(n, h, alpha, m, f)).toBe(expected);
    }
    // f = 1, m = 1: every sample mismatches → certain conviction
    expect(detectionPower(200, 0.02, 0.01, 1, 1)).toBe(1);
  });

  it('is the false-conviction rate (≤ alpha) at f = 0 and increases with f', () => {
    const p0 = detectionPower(200, 0.02, 0.01, 0.6, 0);
    expect(p0).toBeGreaterThan(0);
    expect(p0).toBeLessThan(0.01);
    let prev = p0;
    for (const f of [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1]) {
      const p = detectionPower(200, 0.02, 0.01, 0.6, f);
      // strictly increasing until it saturates at 1 in double precision
      if (prev < 1) expect(p).toBeGreaterThan(prev);
      else expect(p).toBe(1);
      prev = p;
    }
    expect(prev).toBeGreaterThan(0.999);
  });

  it('rejects bad input', () => {
    expect(() => detectionPower(200, 0.02, 0.01, 1.5, 0.1)).toThrow(InputError);
    expect(() => detectionPower(200, 0.02, 0, 0.5, 0.1)).toThrow(InputError);
    expect(() => detectionPower(2.5, 0.02, 0.01, 0.5, 0.1)).toThrow(InputError);
  });
});

describe('chooseStatTest', () => {
  it('takes the largest p98 over the honest classes', () => {
    const st = chooseStatTest({
      'cpu-threads-1': range(0, 100).map((i) => i / 1000), // p98 0.098
      'gpu-batch-8': range(0, 100).map((i) => i / 500), // p98 0.196
      'cpu-threads-16': range(0, 100).map((i) => i / 2000), // p98 0.049
    });
    expect(st.dist_threshold).toBeCloseTo(0.196, 15);
    expect(st.p_mismatch).toBe(0.02);
    expect(st.p_value_threshold).toBe(0.01);
    expect(st.basis).toContain('gpu-batch-8');
    // the worst class then mismatches on exactly 2 of its 101 nonces
    expect(mismatchRate(range(0, 100).map((i) => i / 500), st.dist_threshold)).toBeCloseTo(2 / 101, 15);
  });

  it('uses the floor when every honest distance is 0', () => {
    const st = chooseStatTest({ a: [0, 0, 0], b: [0, 0] });
    expect(st.dist_threshold).toBe(DIST_THRESHOLD_FLOOR);
    expect(DIST_THRESHOLD_FLOOR).toBe(1e-3);
    expect(st.basis).toContain('floor');
  });

  it('follows a custom p_mismatch with the matching quantile', () => {
    const st = chooseStatTest({ a: range(0, 100) }, { pMismatch: 0.1, pValueThreshold: 0.05 });
    expect(st.dist_threshold).toBeCloseTo(90, 12);
    expect(st.p_mismatch).toBe(0.1);
    expect(st.p_value_threshold).toBe(0.05);
  });

  it('rejects no classes or an empty class', () => {
    expect(() => chooseStatTest({})).toThrow(InputError);
    expect(() => chooseStatTest({ a: [] })).toThrow(InputError);
  });
});

describe('calibration result and Markdown', () => {
  const rng = seedrandom('cal');
  const honestA = Array.from({ length: 500 }, () => 0.01 + 0.01 * rng());
  const honestB = Array.from({ length: 500 }, () => 0.02 * rng());
  const skip = Array.from({ length: 500 }, () => 0.2 + 0.1 * rng());
  const fp8 = Array.from({ length: 500 }, () => 0.015 + 0.02 * rng());
  const result = buildCalibrationResult({
    model: 'wan2.2-ti2v-5b (tiny)',
    reference: 'cpu fp32',
    deviations: [
      { name: 'threads-16', kind: 'benign', distances: honestA },
      { name: 'batch-8', kind: 'benign', distances: honestB },
      { name: 'skip-block', kind: 'malign', distances: skip },
      { name: 'fp8|weights', kind: 'malign', distances: fp8 },
    ],
    environment: { device: 'cpu', date: '2025-01-01', commit: 'abc123', command: 'dit-poc calibrate' },
  });

  it('has the JSON shape of `dit-poc calibrate --json`', () => {
    const json = JSON.parse(JSON.stringify(result));
    expect(Object.keys(json)).toEqual(
      expect.arrayContaining(['model', 'reference', 'nonces', 'deviations', 'thresholds', 'stat_test', 'power', 'environment']),
    );
    expect(json.nonces).toBe(500);
    for (const d of json.deviations) {
      expect(Object.keys(d)).toEqual(
        expect.arrayContaining(['name', 'kind', 'auc', 'pauc_1pct', 'distances', 'mismatch_rate_at_threshold']),
      );
      expect(Object.keys(d.distances).sort()).toEqual(['max', 'p50', 'p98', 'p999']);
    }
    expect(json.deviations[0].auc).toBeNull();
    expect(json.deviations[2].auc).toBe(1);
    expect(json.stat_test.dist_threshold).toBe(Math.max(summarize(honestA).p98, summarize(honestB).p98));
    expect(json.thresholds.p98).toBe(json.stat_test.dist_threshold);
    expect(json.power).toHaveLength(8);
    const skipPower = json.power.filter((p: { deviation: string }) => p.deviation === 'skip-block');
    expect(skipPower.map((p: { fraction: number }) => p.fraction)).toEqual([1, 0.5, 0.1, 0.05]);
    expect(skipPower[0].power).toBe(1);
  });

  it('renders the tables, the stat test and image links', () => {
    const text = calibrationMarkdown(result, [{ title: 'Distances', path: 'plots/hist.png' }]);
    expect(text).toContain('# Calibration report: wan2.2-ti2v-5b (tiny)');
    expect(text).toContain('| threads-16 | benign |');
    expect(text).toContain('fp8\\|weights'); // pipe escaped inside a table
    expect(text).toContain('| f = 1 | f = 0.5 | f = 0.1 | f = 0.05 |');
    expect(text).toContain('declares fraud at ≥');
    expect(text).toContain('![Distances](plots/hist.png)');
    expect(text).toContain('`dit-poc calibrate`');
  });
});

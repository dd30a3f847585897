// Which calibrated cheats a stat_test lets pass (serve's warning), from wan-tiny's calibration.
import { describe, expect, it } from 'vitest';

import { readCalibration } from '../src/calibration/calibration-file.js';
import { cheatsPassing, distancePercentiles, mismatchRateAt } from '../src/calibration/cheat-check.js';

describe('cheats a stat_test lets pass', () => {
  it('percentiles and the mismatch rate read from them', () => {
    const d = Array.from({ length: 201 }, (_, i) => i / 200);
    const p = distancePercentiles(d);
    expect(p).toHaveLength(101);
    expect(p[0]).toBe(0);
    expect(p[50]).toBe(0.5);
    expect(p[100]).toBe(1);
    expect(mismatchRateAt(p, 2)).toBe(0);
    expect(mismatchRateAt(p, -1)).toBe(1);
    expect(mismatchRateAt(p, 0.5)).toBeCloseTo(0.5, 1);
  });

  it('wan-tiny: the DAPI defaults let the subtle cheats pass; the calibrated stat_test catches every cheat', () => {
    const file = readCalibration('wan-tiny')!;
    expect(file.cheats!.length).toBeGreaterThanOrEqual(8);
    const lenient = cheatsPassing(file.cheats!, { dist_threshold: 0.4, p_mismatch: 0.1, p_value_threshold: 0.05 }).map((c) => c.name);
    expect(lenient).toEqual(expect.arrayContaining(['weights in fp8 e4m3', 'weights with 1 % noise', 'attention inputs in fp8', 'timestep off by one']));
    expect(lenient).not.toContain('one expert for every layer (high noise)');
    expect(cheatsPassing(file.cheats!, file.stat_test)).toEqual([]);
  });
});

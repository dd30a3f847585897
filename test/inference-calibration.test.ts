// The inference calibration's wiring with stand-in denoisers (the real run is `dit-poc calibrate
// --inference`): honest variants stay near the reference, cheats move away, thresholds and the
// spot-check power follow.
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';

import { calibrateInference, inferenceVariants, spotCheckPower } from '../src/calibration/inference-calibration.js';
import { addon } from '../src/engine/native.js';
import type { InferenceRequest } from '../src/inference/manifest.js';
import { toyDenoiser } from './helpers/toy-denoiser.js';

const cfg = addon().models().find((m) => m.id === 'wan-tiny')!;

describe('calibrateInference', () => {
  it('separates the cheats from honest rounding', async () => {
    const requests: InferenceRequest[] = [0, 1].map((r) => ({
      model: 'wan-tiny', width: 32, height: 32, frames: 5, steps: 8, shift: 5, guide: [3, 4], boundary: 0.875, seed: String(r),
      noise: { source: 'spec' }, context: { source: 'seeded', prompt_seed: `c${r}`, tokens: 4 },
    }));
    const variants = inferenceVariants(cfg, 8).filter((v) => !v.runtime?.weightTransform);
    const run = await calibrateInference({
      cfg, requests, variants, dir: tmpdir(), reference: { precision: 'bf16' },
      // Other precisions stand for other runtimes: the stand-in rounds a little differently.
      open: async (rt) => ({ denoiser: toyDenoiser({ noise: rt.precision === 'bf16' ? 0 : 1e-5 }), dispose: () => {} }),
    });
    expect(run.segmentsPerGeneration).toBe(8);
    const byName = new Map(run.segments.deviations.map((d) => [d.name, d]));
    for (const v of variants.filter((x) => x.kind === 'benign')) expect(run.segmentDistances.get(v.name)!.length).toBe(16);
    expect(byName.get('CFG off')!.auc).toBe(1);
    expect(byName.get('S−1 = 7 steps')!.mismatch_rate_at_threshold).toBeGreaterThan(0.5);
    expect(run.final.deviations.find((d) => d.name === 'another seed')!.auc).toBe(1);
    expect(run.caughtByNoise).toEqual(['another seed']);
    expect(run.segments.stat_test.dist_threshold).toBeGreaterThan(0);
    expect(run.power.length).toBeGreaterThan(0);
  });

  it('computes spot-check power from the hypergeometric draw', () => {
    expect(spotCheckPower(8, 8, 1, 1)).toBe(1);
    expect(spotCheckPower(8, 1, 1, 1)).toBeCloseTo(1 / 8, 12);
    expect(spotCheckPower(8, 1, 2, 1)).toBeCloseTo(2 / 8, 12);
    // P(i touched among the 2 checked) = 6/28, 16/28, 6/28; each touched one mismatches with 0.5
    expect(spotCheckPower(8, 4, 2, 0.5)).toBeCloseTo(1 - (6 / 28 + (16 / 28) * 0.5 + (6 / 28) * 0.25), 12);
  });
});

// Would a validation stat_test let a calibrated cheat pass? The cheat's mismatch rate at the
// stat_test's dist_threshold comes from its calibrated distance percentiles; a cheat computed
// for every nonce "passes" when the binomial test over n samples flags it less than half the time.
import type { StatTest } from '../validation/verdict.js';
import type { CalibratedCheat } from './calibration-file.js';
import { detectionPower, quantile } from './stats.js';

/** Distances at percentiles 0, 1, …, 100, rounded to 4 significant digits (what the file keeps). */
export function distancePercentiles(distances: number[]): number[] {
  const sorted = [...distances].sort((a, b) => a - b);
  return Array.from({ length: 101 }, (_, i) => Number(quantile(sorted, i / 100).toPrecision(4)));
}

/** Fraction of a cheat's distances above `threshold`, to the percentiles' 1 % resolution. */
export function mismatchRateAt(percentiles: readonly number[], threshold: number): number {
  const above = percentiles.filter((d) => d > threshold).length;
  return above === 0 ? 0 : above === percentiles.length ? 1 : above / percentiles.length;
}

export interface PassingCheat {
  name: string;
  /** Its mismatch rate at the stat_test's dist_threshold. */
  mismatch_rate: number;
  /** Probability that n samples flag it as fraud. */
  detection_power: number;
}

/** The calibrated cheats the stat_test flags less than half the time over n samples. */
export function cheatsPassing(cheats: readonly CalibratedCheat[], stat: StatTest, n = 200): PassingCheat[] {
  const out: PassingCheat[] = [];
  for (const c of cheats) {
    const rate = mismatchRateAt(c.distance_percentiles, stat.dist_threshold);
    const power = detectionPower(n, stat.p_mismatch, stat.p_value_threshold, rate, 1);
    if (power < 0.5) out.push({ name: c.name, mismatch_rate: rate, detection_power: power });
  }
  return out;
}

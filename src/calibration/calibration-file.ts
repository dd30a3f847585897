// Per-model validation defaults measured by `dit-poc calibrate` (calibration/<model>.json in
// the package). validate and serve use them unless a flag or request overrides them; a model
// without a file falls back to SPEC §10's defaults.
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { InputError } from '../errors.js';
import { packageRoot } from '../package-info.js';
import { DEFAULT_STAT_TEST, parseStatTest, type StatTest } from '../validation/verdict.js';

/** One calibrated cheat: its artifact distances to the reference at percentiles 0, 1, …, 100. */
export interface CalibratedCheat {
  name: string;
  distance_percentiles: number[];
}

export interface CalibrationFile {
  model: string;
  stat_test: StatTest;
  basis: string;
  nonces: number;
  created: string;
  command: string;
  /** The malign variants measured (absent in files written before they were recorded). */
  cheats?: CalibratedCheat[];
}

export function calibrationPath(model: string, root = join(packageRoot(), 'calibration')): string {
  return join(root, `${model}.json`);
}

export function readCalibration(model: string, root?: string): CalibrationFile | null {
  const p = calibrationPath(model, root);
  if (!existsSync(p)) return null;
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(p, 'utf8'));
  } catch (e) {
    throw new InputError(`calibration file ${p} is not valid JSON: ${(e as Error).message}`);
  }
  const d = data as CalibrationFile;
  if (d?.model !== model) throw new InputError(`calibration file ${p} is for model ${JSON.stringify(d?.model)}, not ${model}`);
  if (d.cheats !== undefined) {
    const ok = Array.isArray(d.cheats) && d.cheats.every((c) => typeof c?.name === 'string' && Array.isArray(c.distance_percentiles) && c.distance_percentiles.length === 101 && c.distance_percentiles.every((x, i, a) => typeof x === 'number' && x >= 0 && (i === 0 || x >= a[i - 1])));
    if (!ok) throw new InputError(`calibration file ${p}: cheats must be [{name, distance_percentiles: 101 ascending non-negative numbers}]`);
  }
  return { ...d, stat_test: parseStatTest(d.stat_test) };
}

export function writeCalibration(file: CalibrationFile, root?: string): string {
  const p = calibrationPath(file.model, root);
  mkdirSync(dirname(p), { recursive: true });
  // The same file holds the inference thresholds (calibrate --inference): keep them.
  let kept: Record<string, unknown> = {};
  if (existsSync(p)) {
    try {
      const old = JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
      if (old.inference !== undefined) kept = { inference: old.inference };
    } catch {
      // an unreadable old file is replaced whole
    }
  }
  // Number arrays (the cheats' percentiles) on one line each, to keep the file readable.
  const text = JSON.stringify({ ...file, ...kept }, null, 2).replace(/\[\s*(-?[\d.e+-]+(?:,\s*-?[\d.e+-]+)*)\s*\]/g, (_m, inner: string) => `[${inner.split(/,\s*/).join(', ')}]`);
  writeFileSync(p, text + '\n');
  return p;
}

/** The stat test for a model: its calibration (or SPEC §10 defaults), then explicit overrides. */
export function statTestForModel(model: string, overrides: Partial<Record<string, unknown>> = {}): StatTest {
  const base = readCalibration(model)?.stat_test ?? DEFAULT_STAT_TEST;
  const given: Record<string, unknown> = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  // Gonka's fraud_threshold alias overrides the calibrated p_value_threshold like the real name.
  if (given.fraud_threshold !== undefined && given.p_value_threshold === undefined) {
    given.p_value_threshold = given.fraud_threshold;
    delete given.fraud_threshold;
  }
  return parseStatTest({ ...base, ...given });
}

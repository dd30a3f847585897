// Inference-validation thresholds (SPEC §13 steps 6–7) in calibration/<model>.json, under the
// key `inference`, per pair of runtime classes ("cpu-bf16|cpu-fp32"). They sit beside the PoC
// fields of the same file, which reading and writing here leave untouched.
import { existsSync, readFileSync } from 'node:fs';

import { InputError } from '../errors.js';
import { runtimePair, type InferenceThreshold } from '../inference/verification.js';
import { writeFileAtomic } from '../inference/safetensors.js';
import { calibrationPath } from './calibration-file.js';

export interface InferenceCalibration {
  /** Runtime pair → thresholds (relative L2). */
  runtime_pairs: Record<string, InferenceThreshold>;
  basis: string;
  steps: number;
  size: string;
  runs: number;
  created: string;
  command: string;
}

function readRaw(model: string, root?: string): Record<string, unknown> | null {
  const p = calibrationPath(model, root);
  if (!existsSync(p)) return null;
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new InputError(`calibration file ${p} is not valid JSON: ${(e as Error).message}`);
  }
}

export function readInferenceCalibration(model: string, root?: string): InferenceCalibration | null {
  const raw = readRaw(model, root);
  const inf = raw?.inference as InferenceCalibration | undefined;
  if (!inf) return null;
  if (typeof inf !== 'object' || typeof inf.runtime_pairs !== 'object' || inf.runtime_pairs === null) {
    throw new InputError(`calibration file ${calibrationPath(model, root)}: 'inference.runtime_pairs' is missing`);
  }
  for (const [pair, t] of Object.entries(inf.runtime_pairs)) {
    if (!(t?.segment > 0) || !(t?.final > 0)) throw new InputError(`calibration file ${calibrationPath(model, root)}: thresholds of ${pair} must be positive numbers`);
  }
  return inf;
}

/** The thresholds of a runtime pair for a model, or null (the validator then delegates). */
export function inferenceThreshold(model: string, a: string, b: string, root?: string): InferenceThreshold | null {
  return readInferenceCalibration(model, root)?.runtime_pairs[runtimePair(a, b)] ?? null;
}

/** Stores the inference calibration, keeping every other field of the model's file. */
export function writeInferenceCalibration(model: string, cal: InferenceCalibration, root?: string): string {
  const p = calibrationPath(model, root);
  const raw = readRaw(model, root) ?? { model };
  raw.inference = cal;
  writeFileAtomic(p, JSON.stringify(raw, null, 2) + '\n');
  return p;
}

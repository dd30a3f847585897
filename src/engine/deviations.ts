// Deliberate departures from the protocol, for calibrating validation and for testing that
// cheaters are caught. An honest prover uses none of them.
import { InputError } from '../errors.js';

export interface Deviations {
  /** Route every layer to this expert (a prover holding only one expert's weights). */
  singleExpert?: 0 | 1;
  /** Skip these blocks (their reflections still apply). */
  skipLayers?: number[];
  /** Derive the Householder reflections from this block hash instead of the round's. */
  householderBlockHash?: string;
  /** Use timestep (t + shift) mod 1000 instead of t. */
  timestepShift?: number;
  /** Weight transform applied at load: "noise:REL[:SEED]", "fp8", "int4[:GROUP]". */
  weightTransform?: string;
}

export function describeDeviations(d: Deviations): string {
  const parts: string[] = [];
  if (d.singleExpert !== undefined) parts.push(`single-expert:${d.singleExpert}`);
  if (d.skipLayers?.length) parts.push(`skip-layers:${d.skipLayers.join(',')}`);
  if (d.householderBlockHash !== undefined) parts.push(`householder-from:${d.householderBlockHash}`);
  if (d.timestepShift) parts.push(`timestep-shift:${d.timestepShift}`);
  if (d.weightTransform && d.weightTransform !== 'none') parts.push(`weights:${d.weightTransform}`);
  return parts.join(' ');
}

export function checkDeviations(d: Deviations, numLayers: number): Deviations {
  if (d.singleExpert !== undefined && d.singleExpert !== 0 && d.singleExpert !== 1) throw new InputError('single expert must be 0 or 1');
  for (const l of d.skipLayers ?? [])
    if (!Number.isInteger(l) || l < 0 || l >= numLayers) throw new InputError(`skipped layer ${l} is not in [0, ${numLayers})`);
  if (d.timestepShift !== undefined && !Number.isInteger(d.timestepShift)) throw new InputError('timestep shift must be an integer');
  return d;
}

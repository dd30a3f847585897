// Calibration result (the JSON of `dit-poc calibrate --json`) and its Markdown report.
//
// buildCalibrationResult turns raw per-nonce distances (one array per configuration, all
// measured against the same reference) into a CalibrationResult using ./stats.ts;
// calibrationMarkdown renders one for people. Both are pure: writing files and rendering the
// PNGs (src/report/plots.ts) is the caller's job.
import { InputError } from '../errors.js';
import { binomialPower } from '../validation/binomial.js';
import type { StatTest } from '../validation/verdict.js';
import {
  auc,
  chooseStatTest,
  detectionPower,
  mismatchRate,
  partialAuc,
  summarize,
  type ChooseStatTestOptions,
} from './stats.js';

export type DeviationKind = 'benign' | 'malign';

export interface DeviationResult {
  /** Configuration name, e.g. "cpu-fp32-accum", "skip-block-17", "int4-weights". */
  name: string;
  /** benign = honest recomputation (float noise only); malign = tampered, cheaper computation. */
  kind: DeviationKind;
  /**
   * ROC AUC of this configuration's distances against the pooled distances of all benign
   * configurations (Mann–Whitney, ties ½; 1 = separable, 0.5 = indistinguishable). null for
   * benign configurations.
   */
  auc: number | null;
  /** Partial AUC for FPR ∈ [0, 0.01] divided by 0.01 (1 = perfect, chance 0.005); null for benign. */
  pauc_1pct: number | null;
  /** Percentiles (type 7) and maximum of ‖a_config − a_reference‖₂ over the nonces. */
  distances: { p50: number; p98: number; p999: number; max: number };
  /** Fraction of nonces whose distance is > stat_test.dist_threshold (what a validator counts). */
  mismatch_rate_at_threshold: number;
}

export interface PowerEntry {
  /** Name of a malign deviation. */
  deviation: string;
  /** Fraction f of a prover's nonces computed with that deviation (the rest honestly). */
  fraction: number;
  /** Probability that one validation of n_samples nonces declares fraud. */
  power: number;
  /** Nonces sampled per validation (SPEC §10 default 200). */
  n_samples?: number;
}

/** Free-form description of where and how the calibration ran. */
export interface CalibrationEnvironment {
  device?: string;
  date?: string;
  commit?: string;
  command?: string;
  [key: string]: unknown;
}

export interface CalibrationResult {
  model: string;
  /** The configuration every distance is measured against (e.g. "cpu reference, fp32"). */
  reference: string;
  /** Nonces recomputed per configuration. */
  nonces: number;
  deviations: DeviationResult[];
  /**
   * Worst benign configuration's 98th and 99.9th percentile distance (max over benign classes
   * of each class's percentile). stat_test.basis says how dist_threshold was derived from them.
   */
  thresholds: { p98: number; p999: number };
  stat_test: StatTest & { basis: string };
  power: PowerEntry[];
  environment: CalibrationEnvironment;
}

/** Cheat fractions reported by default. */
export const DEFAULT_POWER_FRACTIONS: readonly number[] = Object.freeze([1, 0.5, 0.1, 0.05]);

export interface CalibrationInput {
  model: string;
  reference: string;
  /** Per configuration: its distances, one per nonce (same nonces for every configuration). */
  deviations: { name: string; kind: DeviationKind; distances: number[] }[];
  environment?: CalibrationEnvironment;
  /** Nonces per validation for the power table (default 200, SPEC §10). */
  nSamples?: number;
  /** Cheat fractions for the power table (default DEFAULT_POWER_FRACTIONS). */
  fractions?: readonly number[];
  statTest?: ChooseStatTestOptions;
}

/**
 * Assembles a CalibrationResult: stat_test from the benign configurations (chooseStatTest),
 * per-deviation percentiles, mismatch rate at dist_threshold, AUC and pAUC@1 % of each malign
 * configuration against the pooled benign distances, and the detection power of each malign
 * configuration for every cheat fraction. Needs at least one benign configuration; names must
 * be unique. `nonces` is the largest number of distances of any configuration.
 */
export function buildCalibrationResult(input: CalibrationInput): CalibrationResult {
  const devs = input.deviations ?? [];
  if (devs.length === 0) throw new InputError('calibration: no deviations');
  const seen = new Set<string>();
  for (const d of devs) {
    if (typeof d.name !== 'string' || d.name === '') throw new InputError('calibration: deviation without a name');
    if (seen.has(d.name)) throw new InputError(`calibration: duplicate deviation name ${JSON.stringify(d.name)}`);
    seen.add(d.name);
    if (d.kind !== 'benign' && d.kind !== 'malign') {
      throw new InputError(`calibration: deviation ${JSON.stringify(d.name)} has kind ${JSON.stringify(d.kind)}`);
    }
    if (!Array.isArray(d.distances) || d.distances.length === 0) {
      throw new InputError(`calibration: deviation ${JSON.stringify(d.name)} has no distances`);
    }
  }
  const benign = devs.filter((d) => d.kind === 'benign');
  if (benign.length === 0) {
    throw new InputError('calibration: need at least one benign configuration to set the threshold');
  }
  const nSamples = input.nSamples ?? 200;
  const fractions = input.fractions ?? DEFAULT_POWER_FRACTIONS;
  if (!Number.isSafeInteger(nSamples) || nSamples < 1) {
    throw new InputError(`calibration: nSamples must be a positive integer, got ${String(nSamples)}`);
  }
  const statTest = chooseStatTest(Object.fromEntries(benign.map((d) => [d.name, d.distances])), input.statTest);
  const summaries = new Map(devs.map((d) => [d.name, summarize(d.distances)]));
  let p98 = -Infinity;
  let p999 = -Infinity;
  for (const d of benign) {
    const s = summaries.get(d.name)!;
    p98 = Math.max(p98, s.p98);
    p999 = Math.max(p999, s.p999);
  }
  const pooledBenign = benign.flatMap((d) => d.distances);
  const deviations: DeviationResult[] = devs.map((d) => {
    const s = summaries.get(d.name)!;
    const malign = d.kind === 'malign';
    return {
      name: d.name,
      kind: d.kind,
      auc: malign ? auc(pooledBenign, d.distances) : null,
      pauc_1pct: malign ? partialAuc(pooledBenign, d.distances, 0.01) : null,
      distances: { p50: s.p50, p98: s.p98, p999: s.p999, max: s.max },
      mismatch_rate_at_threshold: mismatchRate(d.distances, statTest.dist_threshold),
    };
  });
  const power: PowerEntry[] = [];
  for (const d of deviations) {
    if (d.kind !== 'malign') continue;
    for (const f of fractions) {
      power.push({
        deviation: d.name,
        fraction: f,
        power: detectionPower(nSamples, statTest.p_mismatch, statTest.p_value_threshold, d.mismatch_rate_at_threshold, f),
        n_samples: nSamples,
      });
    }
  }
  return {
    model: input.model,
    reference: input.reference,
    nonces: Math.max(...devs.map((d) => d.distances.length)),
    deviations,
    thresholds: { p98, p999 },
    stat_test: statTest,
    power,
    environment: { ...(input.environment ?? {}) },
  };
}

// ---------------------------------------------------------------------------------------------
// Markdown

function md(text: unknown): string {
  return String(text).replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function num(x: number | null | undefined): string {
  if (x === null || x === undefined) return '—';
  if (!Number.isFinite(x)) return Number.isNaN(x) ? 'NaN' : x > 0 ? '∞' : '−∞';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e-3 && a < 1e6) return String(+x.toPrecision(4));
  return x.toExponential(3).replace(/\.?0+e/, 'e');
}

function pct(x: number, digits = 2): string {
  if (!Number.isFinite(x)) return num(x);
  const p = x * 100;
  if (p === 0) return '0 %';
  if (p === 100) return '100 %';
  const lim = 10 ** -digits;
  if (p < lim) return `< ${lim} %`;
  if (p > 100 - lim) return `> ${+(100 - lim).toFixed(digits)} %`;
  return `${p.toFixed(digits)} %`;
}

function auc4(x: number | null): string {
  return x === null ? '—' : x.toFixed(4);
}

/**
 * Markdown report of a calibration: what was measured, a table with one row per deviation
 * (percentiles, mismatch rate at the chosen threshold, AUC, pAUC@1 %), the chosen stat_test and
 * why, the detection-power table (rows: malign deviations, columns: cheat fractions), and
 * image links. `images` are paths relative to where the Markdown will be written.
 */
export function calibrationMarkdown(
  result: CalibrationResult,
  images: readonly { title: string; path: string }[] = [],
): string {
  const st = result.stat_test;
  const out: string[] = [];
  out.push(`# Calibration report: ${md(result.model)}`, '');
  out.push(
    'Validators recompute a random sample of a prover\'s nonces and count a **mismatch** when the L2 ' +
      'distance between their artifact and the claimed one exceeds `dist_threshold`; a one-sided ' +
      'binomial test with `p_mismatch` then decides fraud (SPEC §10). This run recomputed ' +
      `${result.nonces} nonces under each configuration below and measured every artifact's distance ` +
      `to the reference (**${md(result.reference)}**). *Benign* configurations are honest ` +
      'recomputations (other backend, precision, batch size, thread count): their distances are ' +
      'rounding noise and set the threshold. *Malign* configurations are cheaper, tampered ' +
      'computations a cheater might run; the validator should flag them.',
    '',
  );

  const envKeys = Object.keys(result.environment ?? {});
  if (envKeys.length > 0) {
    out.push('## Environment', '');
    for (const k of envKeys) {
      const v = result.environment[k];
      const s = typeof v === 'string' ? v : JSON.stringify(v);
      out.push(`- **${md(k)}**: ${k === 'command' || k === 'commit' ? `\`${String(s).replace(/`/g, "'")}\`` : md(s)}`);
    }
    out.push('');
  }

  out.push('## Distances per configuration', '');
  out.push(
    `| configuration | kind | p50 | p98 | p99.9 | max | mismatch rate at ${num(st.dist_threshold)} | AUC | pAUC@1 % |`,
    '|---|---|--:|--:|--:|--:|--:|--:|--:|',
  );
  for (const d of result.deviations) {
    out.push(
      `| ${md(d.name)} | ${d.kind} | ${num(d.distances.p50)} | ${num(d.distances.p98)} | ${num(d.distances.p999)} | ` +
        `${num(d.distances.max)} | ${pct(d.mismatch_rate_at_threshold)} | ${auc4(d.auc)} | ${auc4(d.pauc_1pct)} |`,
    );
  }
  out.push(
    '',
    'Distances are ‖a_config − a_reference‖₂ per nonce; percentiles interpolate linearly (type 7). ' +
      '**AUC** is the probability that a random nonce of the malign configuration lies farther from ' +
      'the reference than a random honest nonce (all benign configurations pooled, ties count ½): ' +
      '1 = perfectly separable, 0.5 = indistinguishable. **pAUC@1 %** is the area under the ROC for ' +
      'false-positive rates up to 1 %, divided by 0.01 (1 = perfect, chance = 0.005): separation ' +
      'in the low-false-positive regime a validator works in.',
    '',
  );

  out.push('## Chosen stat_test', '');
  out.push('| dist_threshold | p_mismatch | p_value_threshold |', '|--:|--:|--:|');
  out.push(`| ${num(st.dist_threshold)} | ${st.p_mismatch} | ${st.p_value_threshold} |`, '');
  out.push(`Basis: ${md(st.basis)}.`, '');
  out.push(
    `Worst benign configuration: p98 = ${num(result.thresholds.p98)}, p99.9 = ${num(result.thresholds.p999)}. ` +
      'Gonka PoC v2 puts the threshold at the 98th percentile of honest distances (2 % honest ' +
      'mismatch). The basis line above says where this one sits: at or above a high percentile ' +
      'of the *worst* honest configuration, so no honest configuration measured here mismatches ' +
      'on more than `p_mismatch` of its nonces and the binomial test convicts an honest prover ' +
      'with probability at most about `p_value_threshold` per validation.',
    '',
  );
  const nValues = [...new Set(result.power.map((p) => p.n_samples).filter((n): n is number => n !== undefined))];
  if (nValues.length === 1) {
    const n = nValues[0];
    const { criticalK } = binomialPower(n, st.p_mismatch, st.p_mismatch, st.p_value_threshold);
    out.push(
      `With n = ${n} sampled nonces a validation declares fraud at ≥ ${criticalK} mismatches ` +
        `(P[X ≥ ${criticalK}] < ${st.p_value_threshold} for X ~ Binomial(${n}, ${st.p_mismatch})).`,
      '',
    );
  }
  const hot = result.deviations.filter((d) => d.kind === 'benign' && d.mismatch_rate_at_threshold > st.p_mismatch);
  for (const d of hot) {
    out.push(
      `> **Warning:** benign configuration ${md(d.name)} mismatches on ${pct(d.mismatch_rate_at_threshold)} ` +
        `of nonces, above p_mismatch = ${st.p_mismatch}: honest provers running it would be convicted ` +
        'more often than p_value_threshold.',
      '',
    );
  }

  out.push('## Detection power', '');
  const malign = result.deviations.filter((d) => d.kind === 'malign');
  if (malign.length === 0 || result.power.length === 0) {
    out.push('No malign configurations were measured.', '');
  } else {
    const fractions = [...new Set(result.power.map((p) => p.fraction))].sort((a, b) => b - a);
    const nText = nValues.length === 1 ? `n = ${nValues[0]}` : 'n';
    out.push(
      `Probability that one validation (${nText} sampled nonces, binomial test above) declares fraud ` +
        'against a prover that computes a fraction f of its nonces with the malign configuration and ' +
        'the rest honestly. A sampled nonce then mismatches with probability f·m + (1 − f)·p_mismatch, ' +
        'm being the configuration\'s mismatch rate at dist_threshold.',
      '',
    );
    out.push(
      `| configuration | m | ${fractions.map((f) => `f = ${f}`).join(' | ')} |`,
      `|---|--:|${fractions.map(() => '--:').join('|')}|`,
    );
    for (const d of malign) {
      const cells = fractions.map((f) => {
        const e = result.power.find((p) => p.deviation === d.name && p.fraction === f);
        return e ? pct(e.power, 1) : '—';
      });
      out.push(`| ${md(d.name)} | ${pct(d.mismatch_rate_at_threshold)} | ${cells.join(' | ')} |`);
    }
    out.push('');
    const invisible = malign.filter((d) => d.mismatch_rate_at_threshold <= st.p_mismatch);
    if (invisible.length > 0) {
      out.push(
        `Not detectable at this threshold (m ≤ p_mismatch): ${invisible.map((d) => md(d.name)).join(', ')}. ` +
          'A cheater using these configurations looks like an honest prover to this test.',
        '',
      );
    }
  }

  if (images.length > 0) {
    out.push('## Plots', '');
    for (const im of images) {
      const alt = md(im.title).replace(/[[\]]/g, '');
      out.push(`![${alt}](${encodeURI(im.path).replace(/\(/g, '%28').replace(/\)/g, '%29')})`, '');
    }
  }
  return out.join('\n');
}

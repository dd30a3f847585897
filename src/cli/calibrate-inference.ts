// `dit-poc calibrate --inference`: calibrates inference validation (SPEC §13 step 7) on the CPU
// and writes the per-runtime-pair thresholds into calibration/<model>.json, with a report.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, relative } from 'node:path';

import { calibrateInference, inferenceVariants, type InferenceCalibrationRun, type InferenceRuntime } from '../calibration/inference-calibration.js';
import type { CalibrationResult } from '../calibration/report.js';
import { writeInferenceCalibration } from '../calibration/inference-thresholds.js';
import { addon } from '../engine/native.js';
import { InputError } from '../errors.js';
import { latentShape } from '../inference/conditioning.js';
import { nativeDenoiser } from '../inference/denoiser.js';
import type { InferenceRequest } from '../inference/manifest.js';
import { samplingDefaults } from '../inference/schedule.js';
import { runtimeClass, runtimePair } from '../inference/verification.js';
import { histogramPng, rocPng } from '../report/plots.js';
import { rocCurve } from '../calibration/stats.js';
import { modelInfo } from '../round/params.js';

export interface InferenceCalibrateOptions {
  model: string;
  weights: string;
  weightsSeed?: string;
  blockHash: string;
  threads?: number;
  width: number;
  height: number;
  frames: number;
  steps?: number;
  runs: number;
  variants?: RegExp;
  outDir?: string;
  writeCalibration: boolean;
  calibrationDir?: string;
  json: boolean;
  commit: string;
}

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

const num = (x: number) => (x === 0 ? '0' : Math.abs(x) >= 1e-3 && Math.abs(x) < 1e4 ? String(+x.toPrecision(3)) : x.toExponential(2));

function distanceTable(r: CalibrationResult): string[] {
  return [
    `| configuration | kind | p50 | p98 | max | above ${num(r.stat_test.dist_threshold)} | AUC | pAUC@1 % |`,
    '|---|---|--:|--:|--:|--:|--:|--:|',
    ...r.deviations.map((d) => `| ${d.name} | ${d.kind} | ${num(d.distances.p50)} | ${num(d.distances.p98)} | ${num(d.distances.max)} | ${pct(d.mismatch_rate_at_threshold)} | ${d.auc === null ? '—' : d.auc.toFixed(4)} | ${d.pauc_1pct === null ? '—' : d.pauc_1pct.toFixed(4)} |`),
  ];
}

/** The inference calibration report: distances per segment and for the final latent, thresholds, spot-check power. */
function inferenceMarkdown(run: InferenceCalibrationRun, figures: { title: string; path: string }[], o: { intro: string; environment: Record<string, unknown> }): string {
  const n = run.segmentsPerGeneration;
  const touched = [...new Set(run.power.map((p) => p.touched))];
  const ks = [...new Set(run.power.map((p) => p.k))];
  const malign = run.segments.deviations.filter((d) => d.kind === 'malign');
  return [
    `# ${run.segments.model}: inference-validation calibration (SPEC §13 step 7)`,
    '',
    `${o.intro} Distances are relative L2 ‖a − b‖/‖b‖ of latents. **Benign** configurations are honest runtimes acting as the ` +
      "validator of the reference's generations: each segment is resumed from the reference's checkpoint j and run to j+1, and a full " +
      "replay gives the final latent. **Malign** configurations are cheats acting as the executor: an honest validator (the reference) " +
      "resumes each of the cheat's checkpoints and compares with the cheat's next one; the final latent is compared with the honest one. " +
      'Cheats with fewer steps present their checkpoints under the honest steps.',
    '',
    ...Object.entries(o.environment).map(([k, v]) => `- **${k}**: ${k === 'command' || k === 'commit' ? `\`${String(v)}\`` : String(v)}`),
    '',
    '## Thresholds',
    '',
    `- per segment: **${num(run.segments.stat_test.dist_threshold)}** — ${run.segments.stat_test.basis}`,
    `- final latent (full replay): **${num(run.final.stat_test.dist_threshold)}** — ${run.final.stat_test.basis}`,
    '',
    '## Per segment',
    '',
    ...distanceTable(run.segments),
    '',
    '## Final latent (full replay)',
    '',
    ...distanceTable(run.final),
    '',
    'AUC: probability that a malign distance exceeds an honest one (all benign classes pooled, ties ½). pAUC@1 %: area under the ROC for ' +
      'false-positive rates up to 1 %, divided by 0.01 (1 = perfect, chance 0.005).',
    '',
    '## Spot-check detection power',
    '',
    `Probability that checking K of the ${n} segments finds a mismatch when a cheat touches t segments of a generation: segments are ` +
      "drawn without replacement, and a touched segment mismatches at the configuration's rate m above (measured with the cheat on " +
      'every step; cheats that only change some steps, such as a wrong boundary, touch only those segments).',
    '',
    `| configuration | m | ${touched.flatMap((t) => ks.map((k) => `t=${t}, K=${k}`)).join(' | ')} |`,
    `|---|--:|${touched.flatMap(() => ks.map(() => '--:')).join('|')}|`,
    ...malign.map((d) => `| ${d.name} | ${pct(d.mismatch_rate_at_threshold)} | ${touched.flatMap((t) => ks.map((k) => pct(run.power.find((p) => p.deviation === d.name && p.touched === t && p.k === k)!.power))).join(' | ')} |`),
    '',
    run.caughtByNoise.length > 0 ? `Caught bit-exactly by the noise check (checkpoint 0 is not the request's noise) whatever the distances: ${run.caughtByNoise.join(', ')}.` : '',
    '',
    ...figures.flatMap((f) => [`![${f.title}](${f.path})`, '']),
  ].join('\n');
}

export async function runInferenceCalibration(o: InferenceCalibrateOptions): Promise<void> {
  const cfg = modelInfo(o.model);
  const d = samplingDefaults(cfg.id);
  latentShape(cfg, o.width, o.height, o.frames);
  const steps = o.steps ?? d.steps;
  if (steps < 4) throw new InputError('--steps must be at least 4 for the fewer-steps cheats');
  const requests: InferenceRequest[] = Array.from({ length: o.runs }, (_, r) => ({
    model: cfg.id, width: o.width, height: o.height, frames: o.frames, steps, shift: d.shift, guide: d.guide, boundary: d.boundary,
    seed: String(r), noise: { source: 'spec' }, context: { source: 'seeded', prompt_seed: `calibration-${r}`, tokens: 16 },
  }));
  const variants = inferenceVariants(cfg, steps).filter((v) => !o.variants || o.variants.test(v.name));
  if (!variants.some((v) => v.kind === 'benign')) throw new InputError('--variants: no honest variant matches, and the thresholds are set from them');
  const weightsSeed = o.weightsSeed ?? o.blockHash;
  const reference: InferenceRuntime = { precision: 'bf16', threads: o.threads };
  const t0 = performance.now();
  const run = await calibrateInference({
    cfg, requests, reference, variants, dir: tmpdir(),
    onProgress: (what) => process.stderr.write(`${what}\n`),
    open: async (rt) => {
      const model = await addon().loadModel({ model: cfg.id, weights: o.weights, weightsSeed, threads: rt.threads, weightTransform: rt.weightTransform, backend: 'cpu' });
      return { denoiser: nativeDenoiser(model, rt.precision), dispose: () => model.dispose() };
    },
  });
  const date = new Date().toISOString().slice(0, 10);
  const command = `dit-poc calibrate ${process.argv.slice(3).join(' ')}`.trim();
  const environment = { device: `CPU ${cpus()[0]?.model ?? 'unknown'} (${cpus().length} threads)`, date, commit: o.commit, command, seconds: Number(((performance.now() - t0) / 1000).toFixed(1)) };
  run.segments.environment = environment;
  run.final.environment = environment;

  const outDir = o.outDir ?? join('calibration', cfg.id, 'inference');
  mkdirSync(outDir, { recursive: true });
  const benign = variants.filter((v) => v.kind === 'benign');
  const malign = variants.filter((v) => v.kind === 'malign');
  const positive = (xs: number[]) => xs.map((x) => Math.max(x, 1e-7));
  const honestSeg = benign.flatMap((v) => run.segmentDistances.get(v.name)!);
  writeFileSync(join(outDir, 'segments.png'), await histogramPng(
    [{ label: 'honest (all benign variants)', values: positive(honestSeg) }, ...malign.map((v) => ({ label: v.name, values: positive(run.segmentDistances.get(v.name)!) }))],
    { title: `${cfg.id}: segment relative L2 (validator replay vs executor checkpoint)`, xLabel: 'relative L2 (log scale; 0 shown as 1e-7)', logX: true, markers: [{ label: 'threshold', x: run.segments.stat_test.dist_threshold }] },
  ));
  const figures = [{ title: 'Segment distances', path: 'segments.png' }];
  if (malign.length > 0) {
    writeFileSync(join(outDir, 'roc.png'), await rocPng(malign.map((v) => ({ label: v.name, ...rocCurve(honestSeg, run.segmentDistances.get(v.name)!) })), { title: `${cfg.id}: honest vs each cheat, per segment (ROC)` }));
    figures.push({ title: 'ROC per segment: honest vs each cheat', path: 'roc.png' });
  }
  const md = inferenceMarkdown(run, figures, {
    intro: `${o.runs} generations of ${o.width}×${o.height}×${o.frames} (latent ${latentShape(cfg, o.width, o.height, o.frames).join('×')}), ${steps} steps, ` +
      `${run.segmentsPerGeneration} checkpoint segments each; reference: the CPU backend at bf16.`,
    environment,
  });
  writeFileSync(join(outDir, 'report.md'), md);
  writeFileSync(join(outDir, 'calibration.json'), JSON.stringify({ segments: run.segments, final: run.final, power: run.power, caught_by_noise: run.caughtByNoise }, null, 2) + '\n');

  const thresholds = { segment: run.segments.stat_test.dist_threshold, final: run.final.stat_test.dist_threshold };
  const refClass = runtimeClass('cpu', reference.precision);
  const pairs = Object.fromEntries([...new Set(benign.map((v) => runtimePair(refClass, runtimeClass('cpu', v.runtime?.precision ?? reference.precision))))].map((p) => [p, thresholds]));
  if (o.writeCalibration) {
    const p = writeInferenceCalibration(cfg.id, {
      runtime_pairs: pairs,
      basis: `1.5 × the 99th percentile (1 % FPR) of the worst honest class over ${benign.length} honest classes; ${o.runs} generations, ${steps} steps, ${o.width}×${o.height}×${o.frames}`,
      steps, size: `${o.width}x${o.height}x${o.frames}`, runs: o.runs, created: date, command,
    }, o.calibrationDir);
    process.stderr.write(`inference thresholds written to ${relative(process.cwd(), p) || p}\n`);
  }
  if (o.json) process.stdout.write(JSON.stringify({ thresholds, runtime_pairs: Object.keys(pairs), segments: run.segments, final: run.final, power: run.power }) + '\n');
  else console.log(`${cfg.id}: segment threshold ${thresholds.segment.toPrecision(3)}, final ${thresholds.final.toPrecision(3)}; report in ${join(outDir, 'report.md')}`);
}

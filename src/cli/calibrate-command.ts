// `dit-poc calibrate`: measures honest and dishonest artifact distances for a model and turns
// them into that model's validation defaults (calibration/<model>.json) plus a report.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, relative } from 'node:path';
import { Command } from 'commander';

import { calibrate } from '../calibration/calibrate.js';
import { distancePercentiles } from '../calibration/cheat-check.js';
import { writeCalibration } from '../calibration/calibration-file.js';
import { note } from './progress.js';
import { calibrationMarkdown } from '../calibration/report.js';
import { calibrationVariants } from '../calibration/variants.js';
import { addon } from '../engine/native.js';
import { InputError } from '../errors.js';
import { histogramPng, rocPng } from '../report/plots.js';
import { makeRound, modelInfo } from '../round/params.js';
import { DEFAULT_N_SAMPLES } from '../validation/sampling.js';
import { closeWorkers } from '../workers/pool.js';
import { runInferenceCalibration } from './calibrate-inference.js';
import { addRoundOptions, positiveInt, type RoundCliOptions } from './options.js';

interface CalibrateCliOptions extends RoundCliOptions {
  nonces: number;
  batch: number;
  threads?: number;
  samples: number;
  outDir?: string;
  writeCalibration: boolean;
  calibrationDir?: string;
  variants?: RegExp;
  json: boolean;
  inference: boolean;
  width: number;
  height: number;
  frames: number;
  steps?: number;
  runs: number;
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

function variantPattern(text: string): RegExp {
  try {
    return new RegExp(text, 'i');
  } catch (e) {
    throw new InputError(`--variants: not a regular expression: ${(e as Error).message}`);
  }
}

export function calibrateCommand(): Command {
  const cmd = new Command('calibrate').description('measure honest vs cheating artifact distances and set the validation defaults of a model');
  addRoundOptions(cmd, { requireKeys: false });
  return cmd
    .option('--block-hash <H>', 'block hash of the calibration round', 'calibration-round')
    .option('--public-key <P>', 'public key of the calibration round', 'calibration-key')
    .option('--nonces <N>', 'nonces to compute under every configuration', positiveInt('--nonces'), 200)
    .option('--batch <N>', 'nonces per forward', positiveInt('--batch'), 4)
    .option('--samples <N>', 'validator sample size for the power analysis', positiveInt('--samples'), DEFAULT_N_SAMPLES)
    .option('--out-dir <DIR>', 'report directory (default calibration/<model>)')
    .option('--no-write-calibration', 'do not write calibration/<model>.json')
    .option('--calibration-dir <DIR>', 'where calibration/<model>.json goes (default: the package calibration/)')
    .option('--variants <REGEX>', 'only the variants whose name matches (case-insensitive), e.g. CUDA', variantPattern)
    .option('--json', 'print the result as JSON', false)
    .option('--inference', 'calibrate inference validation (SPEC §13 step 7) instead of PoC artifacts', false)
    .option('--width <W>', '--inference: video width', positiveInt('--width'), 64)
    .option('--height <H>', '--inference: video height', positiveInt('--height'), 64)
    .option('--frames <T>', '--inference: frames (4n+1)', positiveInt('--frames'), 5)
    .option('--steps <S>', '--inference: sampling steps (default: official)', positiveInt('--steps'))
    .option('--runs <N>', '--inference: generations per configuration', positiveInt('--runs'), 8)
    .action(async (o: CalibrateCliOptions) => {
      if (o.inference) {
        return runInferenceCalibration({
          model: o.model, weights: o.weights, weightsSeed: o.weightsSeed, blockHash: o.blockHash, threads: o.threads, width: o.width, height: o.height,
          frames: o.frames, steps: o.steps, runs: o.runs, variants: o.variants, outDir: o.outDir, writeCalibration: o.writeCalibration,
          calibrationDir: o.calibrationDir, json: o.json, commit: gitCommit(),
        });
      }
      const round = makeRound({
        model: o.model, blockHash: o.blockHash, publicKey: o.publicKey, grid: o.grid, ctxLen: o.ctxLen, kDim: o.kDim,
        weights: o.weights, weightsSeed: o.weightsSeed, strongerRng: o.strongerRng, precision: o.precision,
        device: o.device,
      });
      // The reference is always the CPU; --backend says whether the CUDA backend is measured
      // against it too (auto: when this build has it and a GPU answers).
      const build = addon().buildInfo();
      if (o.backend === 'cuda' && !build.backends.includes('cuda'))
        throw new InputError(`--backend cuda: ${build.cudaCompiled ? 'no CUDA device answers' : 'this build has no CUDA backend'} (backends: ${build.backends.join(', ')})`);
      const withCuda = o.backend !== 'cpu' && build.backends.includes('cuda');
      const variants = calibrationVariants(modelInfo(round.model), round.ctxLen, round.blockHash, withCuda ? o.device : undefined,
        { active: build.simd, available: build.cpuPaths })
        .filter((v) => !o.variants || o.variants.test(v.name));
      if (variants.length === 0) throw new InputError(`--variants ${o.variants}: no variant matches`);
      if (!variants.some((v) => v.kind === 'benign'))
        throw new InputError(`--variants ${o.variants}: no honest variant matches, and the threshold is set from them`);
      const nonces = Array.from({ length: o.nonces }, (_, i) => i);
      const t0 = performance.now();
      let run;
      try {
        run = await calibrate({
          round, nonces, variants, threads: o.threads, batch: o.batch, nSamples: o.samples,
          onVariant: (name, i, n) => note(`[${i + 1}/${n}] ${name}`),
        });
      } finally {
        await closeWorkers();
      }
      const { result } = run;
      const command = `dit-poc calibrate ${process.argv.slice(3).join(' ')}`.trim();
      result.environment = {
        device: `CPU ${cpus()[0]?.model ?? 'unknown'} (${cpus().length} threads)${withCuda ? `; CUDA device ${o.device}` : ''}`,
        date: new Date().toISOString().slice(0, 10),
        commit: gitCommit(),
        command,
        seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
      };

      const outDir = o.outDir ?? join('calibration', round.model);
      mkdirSync(outDir, { recursive: true });
      const honest = variants.filter((v) => v.kind === 'benign').flatMap((v) => run.distances.get(v.name)!);
      const malign = variants.filter((v) => v.kind === 'malign');
      const positive = (xs: number[]) => xs.map((x) => Math.max(x, 1e-6));
      writeFileSync(join(outDir, 'distances.png'), await histogramPng(
        [{ label: 'honest (all benign variants)', values: positive(honest) }, ...malign.map((v) => ({ label: v.name, values: positive(run.distances.get(v.name)!) }))],
        { title: `${round.model}: artifact L2 distance to the reference`, xLabel: 'L2 distance (log scale; 0 shown as 1e-6)', logX: true, markers: [{ label: 'dist_threshold', x: result.stat_test.dist_threshold }] },
      ));
      const figures = [{ title: 'Artifact distances to the reference', path: 'distances.png' }];
      if (run.rocs.length > 0) {  // none when --variants kept honest variants only
        writeFileSync(join(outDir, 'roc.png'), await rocPng(run.rocs, { title: `${round.model}: honest vs each cheat (ROC)` }));
        figures.push({ title: 'ROC: honest vs each cheat', path: 'roc.png' });
      }
      writeFileSync(join(outDir, 'calibration.json'), JSON.stringify(result, null, 2) + '\n');
      writeFileSync(join(outDir, 'report.md'), calibrationMarkdown(result, figures));
      if (o.writeCalibration) {
        const p = writeCalibration(
          {
            model: round.model, stat_test: { dist_threshold: result.stat_test.dist_threshold, p_mismatch: result.stat_test.p_mismatch, p_value_threshold: result.stat_test.p_value_threshold },
            basis: result.stat_test.basis, nonces: nonces.length, created: result.environment.date as string, command,
            // serve warns when a request's stat_test would let one of these pass.
            cheats: malign.map((v) => ({ name: v.name, distance_percentiles: distancePercentiles(run.distances.get(v.name)!) })),
          },
          o.calibrationDir,
        );
        note(`validation defaults written to ${relative(process.cwd(), p) || p}`);
      }
      if (o.json) process.stdout.write(JSON.stringify(result) + '\n');
      else console.log(`${round.model}: dist_threshold ${result.stat_test.dist_threshold.toPrecision(3)} (${result.stat_test.basis}); report in ${join(outDir, 'report.md')}`);
    });
}

// `dit-poc verify-inference DIR`: validates a generation (SPEC §13 step 6) and prints a verdict.
// Exit 0 match, 1 mismatch or invalid, 3 delegate (no calibrated threshold for the runtime pair),
// 2 for unreadable input.
import { Command, Option } from 'commander';

import { inferenceThreshold } from '../calibration/inference-thresholds.js';
import { addon, type NativeModel, type Precision } from '../engine/native.js';
import { InputError } from '../errors.js';
import { nativeDenoiser } from '../inference/denoiser.js';
import { readManifest } from '../inference/manifest.js';
import { runtimeClass, verdictExitCode, verifyGeneration } from '../inference/verification.js';
import { nonNegativeInt, positiveInt } from './options.js';

interface VerifyCliOptions {
  segments: number;
  full: boolean;
  validatorKey: string;
  weights?: string;
  calibrationDir?: string;
  json: boolean;
  precision: Precision;
  threads?: number;
  backend: 'cpu' | 'cuda';
  device: number;
}

async function run(dir: string, o: VerifyCliOptions): Promise<void> {
  const { manifest } = readManifest(dir);
  const all = addon().models();
  const cfg = all.find((m) => m.id === manifest.request.model);
  if (!cfg) throw new InputError(`unknown model '${manifest.request.model}' in the manifest`);
  const w = manifest.weights;
  // Opened only if segments are replayed; the closure below fills it.
  const opened: { model?: NativeModel } = {};
  try {
    const report = await verifyGeneration({
      dir,
      cfg,
      validatorRuntime: runtimeClass(o.backend, o.precision),
      thresholds: (a, b) => inferenceThreshold(cfg.id, a, b, o.calibrationDir),
      segments: o.segments,
      full: o.full,
      validatorKey: o.validatorKey,
      denoiser: async () => {
        const weights = w.source === 'random' ? 'random' : (o.weights ?? w.path!);
        try {
          opened.model = await addon().loadModel({ model: cfg.id, weights, weightsSeed: w.seed, threads: o.threads, backend: o.backend, device: o.device });
        } catch (e) {
          throw new InputError(`cannot load the model (weights '${weights}'): ${(e as Error).message}`);
        }
        const model = opened.model;
        if (model.identity !== w.identity) throw new InputError(`the weights loaded (${model.identity}) are not the manifest's (${w.identity})`);
        return nativeDenoiser(model, o.precision);
      },
    });
    if (o.json) {
      process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    } else {
      for (const s of report.segments) {
        process.stdout.write(`steps ${s.from_step}→${s.to_step}: distance ${s.distance.toExponential(3)}${s.threshold !== null ? ` (threshold ${s.threshold.toExponential(3)})` : ''}\n`);
      }
      process.stdout.write(`${report.verdict}: ${report.reason}\n`);
    }
    process.exitCode = verdictExitCode(report.verdict);
  } finally {
    opened.model?.dispose();
  }
}

export function verifyInferenceCommand(): Command {
  return new Command('verify-inference')
    .description('validate a generation directory made by `dit-poc infer` (SPEC §13 step 6)')
    .argument('<DIR>', 'generation directory (manifest.json, checkpoints/, latent.safetensors)')
    .option('--segments <K>', 'checkpoint segments to spot-check', positiveInt('--segments'), 2)
    .option('--full', 'replay the whole generation instead', false)
    .option('--validator-key <K>', "the validator's key (seeds the segment draw with the manifest hash)", 'validator')
    .option('--weights <DIR>', "checkpoint directory of the manifest's weights (default: the path in the manifest)")
    .option('--calibration-dir <DIR>', 'where <model>.json with the inference thresholds is (default: the package calibration/)')
    .option('--json', 'print the report as JSON', false)
    .addOption(new Option('--precision <p>', 'GEMM/attention input precision of this validator').choices(['bf16', 'fp32', 'bf16-flash']).default('bf16'))
    .option('--threads <N>', 'CPU threads (default: all cores)', positiveInt('--threads'))
    .addOption(new Option('--backend <b>', 'compute backend of this validator').choices(['cpu', 'cuda']).default('cpu'))
    .option('--device <N>', 'CUDA device ordinal', nonNegativeInt('--device'), 0)
    .action(async (dir: string, o: VerifyCliOptions) => run(dir, o));
}

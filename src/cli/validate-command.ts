// `dit-poc validate`: checks a proof bundle as a Gonka validator would and prints the verdict.
import { randomBytes } from 'node:crypto';
import { Command } from 'commander';

import { readBundle } from '../bundle/reader.js';
import { statTestForModel } from '../calibration/calibration-file.js';
import { NonceRunner } from '../engine/nonce-runner.js';
import { makeRound } from '../round/params.js';
import { DEFAULT_N_SAMPLES } from '../validation/sampling.js';
import { validateBundle, type BundleVerdict } from '../validation/validator.js';
import { closeWorkers } from '../workers/pool.js';
import { EXIT_INVALID } from './errors.js';
import { nonNegativeInt, positiveInt } from './options.js';
import { bar, loadWithProgress } from './progress.js';

interface ValidateOptions {
  weights: string;
  weightsSeed?: string;
  blockHash?: string;
  publicKey?: string;
  validatorKey: string;
  samplingHash?: string;
  samples: number;
  distThreshold?: number;
  pMismatch?: number;
  pValueThreshold?: number;
  threads?: number;
  batch: number;
  json: boolean;
}

const num = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number`);
  return n;
};

function mismatchReport(v: BundleVerdict): string {
  if (!v.valid) return `INVALID: ${v.invalid_reason}`;
  return `${v.fraud_detected ? 'FRAUD' : 'OK'}: ${v.n_mismatch}/${v.n_total} mismatches (${(100 * v.mismatch_rate).toFixed(1)} %), p-value ${v.p_value.toExponential(3)}, distance p50 ${v.distances.p50?.toFixed(4) ?? '-'} max ${v.distances.max?.toFixed(4) ?? '-'}`;
}

export function validateCommand(): Command {
  return new Command('validate')
    .description('validate a proof bundle: proofs, sampling, recomputation and the binomial test (SPEC §10)')
    .argument('<bundle>', 'proof bundle written by `dit-poc generate`')
    .option('--weights <random|DIR>', "the validator's own weights for the bundle's model", 'random')
    .option('--weights-seed <S>', 'seed of random weights (default: the block hash)')
    .option('--block-hash <H>', 'the round block hash the bundle must be for')
    .option('--public-key <P>', 'the public key the bundle must be for')
    .option('--validator-key <K>', "the validator's key (seeds the sample)", 'validator')
    .option('--sampling-hash <H>', 'fresh hash for sampling (default: random)')
    .option('--samples <N>', 'dense indices to check', positiveInt('--samples'), DEFAULT_N_SAMPLES)
    .option('--dist-threshold <D>', 'L2 distance above which a nonce mismatches (default: the model calibration)', num('--dist-threshold'))
    .option('--p-mismatch <P>', 'honest mismatch probability', num('--p-mismatch'))
    .option('--p-value-threshold <A>', 'fraud when the p-value is below this', num('--p-value-threshold'))
    .option('--threads <N>', 'CPU threads (default: all cores)', positiveInt('--threads'))
    .option('--batch <N>', 'nonces per forward', positiveInt('--batch'), 4)
    .option('--json', 'print the verdict as JSON', false)
    .action(async (path: string, o: ValidateOptions) => {
      const bundle = await readBundle(path);
      const h = bundle.header.round;
      // The model's calibrated defaults (calibration/<model>.json), then the flags.
      const stat = statTestForModel(h.model, { dist_threshold: o.distThreshold, p_mismatch: o.pMismatch, p_value_threshold: o.pValueThreshold });
      const wrongRound =
        (o.blockHash !== undefined && o.blockHash !== h.block_hash && `the bundle is for block hash ${h.block_hash}, expected ${o.blockHash}`) ||
        (o.publicKey !== undefined && o.publicKey !== h.public_key && `the bundle is for public key ${h.public_key}, expected ${o.publicKey}`);
      let verdict: BundleVerdict;
      if (wrongRound) {
        verdict = {
          n_total: 0, n_mismatch: 0, mismatch_nonces: [], p_value: 0, fraud_detected: true, valid: false,
          invalid_reason: wrongRound, count: bundle.end?.count ?? 0, root_hex: bundle.end?.root_hex ?? '',
          sampled: 0, mismatch_rate: 0, distances: { p50: null, max: null },
        };
      } else {
        // The validator's own round: the bundle's parameters, but its own weights.
        const round = makeRound({
          model: h.model, blockHash: h.block_hash, publicKey: h.public_key, grid: h.grid, ctxLen: h.ctx_len,
          kDim: h.k_dim, strongerRng: h.stronger_rng, precision: h.precision, weights: o.weights, weightsSeed: o.weightsSeed,
        });
        const model = await loadWithProgress(round, o.threads);
        const progress = bar('recompute {bar} {value}/{total} nonces');
        try {
          verdict = await validateBundle(bundle, new NonceRunner(model, round), {
            validatorKey: o.validatorKey,
            samplingHash: o.samplingHash ?? randomBytes(32).toString('hex'),
            nSamples: o.samples,
            stat,
            batchSize: o.batch,
            onProgress: (done, total) => {
              if (done === o.batch || done === total) progress?.start(total, done);
              progress?.update(done);
            },
          });
        } finally {
          progress?.stop();
          model.dispose();
          await closeWorkers();
        }
      }
      if (o.json) process.stdout.write(JSON.stringify(verdict) + '\n');
      else console.log(`${path}: ${mismatchReport(verdict)}`);
      if (verdict.fraud_detected) process.exitCode = EXIT_INVALID;
    });
}

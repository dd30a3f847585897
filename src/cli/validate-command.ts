// `dit-poc validate`: checks a proof bundle as a Gonka validator would and prints the verdict.
import { randomBytes } from 'node:crypto';
import { Command, Option } from 'commander';

import { readBundle } from '../bundle/reader.js';
import { statTestForModel } from '../calibration/calibration-file.js';
import { NonceRunner } from '../engine/nonce-runner.js';
import type { Precision } from '../engine/native.js';
import { parseGrid, type Grid } from '../round/params.js';
import { DEFAULT_N_SAMPLES } from '../validation/sampling.js';
import { formatPValue } from '../validation/verdict.js';
import {
  mergeRoundFields, readRoundFile, resolveValidatorRound, roundMismatchVerdict, weightsMismatch,
  type RoundFields, type RoundSource,
} from '../validation/trusted-round.js';
import { validateBundle, type BundleVerdict } from '../validation/validator.js';
import { closeWorkers } from '../workers/pool.js';
import { EXIT_INVALID } from './errors.js';
import { nonNegativeInt, positiveInt } from './options.js';
import { bar, loadWithProgress } from './progress.js';

interface ValidateOptions {
  weights?: string;
  weightsSeed?: string;
  round?: string;
  model?: string;
  blockHash?: string;
  publicKey?: string;
  blockHeight?: number;
  grid?: Grid;
  ctxLen?: number;
  kDim?: number;
  strongerRng?: boolean;
  precision?: Precision;
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
  return `${v.fraud_detected ? 'FRAUD' : 'OK'}: ${v.n_mismatch}/${v.n_total} mismatches (${(100 * v.mismatch_rate).toFixed(1)} %), p-value ${formatPValue(v.p_value)}, distance p50 ${v.distances.p50?.toFixed(4) ?? '-'} max ${v.distances.max?.toFixed(4) ?? '-'}`;
}

const UNVERIFIED_NOTE =
  'note: round parameters taken from the bundle header (the prover), unverified; give --round FILE, or --model, --block-hash and --public-key, to validate against a round you trust';

export function validateCommand(): Command {
  return new Command('validate')
    .description(
      'validate a proof bundle: proofs, sampling, recomputation and the binomial test (SPEC §10). ' +
        'The round comes from --round FILE or from --model, --block-hash and --public-key (with --grid, --ctx-len, --k-dim, ' +
        '--stronger-rng and --block-height when they are not the defaults); a header that disagrees is invalid (round mismatch). ' +
        'Without them the parameters are taken from the bundle header, unverified (round_source "bundle").',
    )
    .argument('<bundle>', 'proof bundle written by `dit-poc generate`')
    .option('--round <FILE>', "the round to validate against: JSON with the fields of a bundle header's round (what /status shows)")
    .option('--model <id>', 'the round model')
    .option('--block-hash <H>', 'the round block hash the bundle must be for')
    .option('--public-key <P>', 'the public key the bundle must be for')
    .option('--block-height <N>', 'the round block height (default: the bundle\'s; it seeds the sample)', nonNegativeInt('--block-height'))
    .option('--grid <F,H,W>', 'the round latent-patch grid (default per model, SPEC §4)', parseGrid)
    .option('--ctx-len <N>', 'the round text tokens', positiveInt('--ctx-len'))
    .option('--k-dim <N>', 'the round artifact length', positiveInt('--k-dim'))
    .option('--stronger-rng', 'the round draws the latent with N8 (SPEC §2)')
    .addOption(new Option('--precision <p>', "the validator's own GEMM/attention precision (default: bf16, or the bundle's without a trusted round)").choices(['bf16', 'fp32', 'bf16-flash']))
    .option('--weights <random|DIR>', "the validator's own weights for the model (default: random)")
    .option('--weights-seed <S>', 'seed of random weights (default: the block hash)')
    .option('--validator-key <K>', "the validator's key (seeds the sample)", 'validator')
    .option('--sampling-hash <H>', 'fresh hash for sampling (default: random)')
    .option('--samples <N>', 'dense indices to check', positiveInt('--samples'), DEFAULT_N_SAMPLES)
    .option('--dist-threshold <D>', 'L2 distance above which a nonce mismatches (default: the model calibration)', num('--dist-threshold'))
    .option('--p-mismatch <P>', 'honest mismatch probability', num('--p-mismatch'))
    .option('--p-value-threshold <A>', 'fraud when the p-value is below this', num('--p-value-threshold'))
    .option('--threads <N>', 'CPU threads (default: all cores)', positiveInt('--threads'))
    .option('--batch <N>', 'nonces per forward', positiveInt('--batch'), 4)
    .option('--json', 'print the verdict as JSON, with round_source (p_value stays a number: one that underflows is 0 there, while the text prints "< 1e-300")', false)
    .action(async (path: string, o: ValidateOptions) => {
      const flags: RoundFields = {
        model: o.model, block_hash: o.blockHash, public_key: o.publicKey, block_height: o.blockHeight, grid: o.grid,
        ctx_len: o.ctxLen, k_dim: o.kDim, stronger_rng: o.strongerRng,
      };
      // Read the trusted round before the bundle, so a bad round file fails fast.
      const source: RoundSource = o.round ? 'file' : o.model ? 'flags' : 'bundle';
      const given = o.round ? mergeRoundFields(readRoundFile(o.round), flags, o.round) : flags;
      const bundle = await readBundle(path);
      const h = bundle.header.round;
      const count = bundle.end?.count ?? 0, rootHex = bundle.end?.root_hex ?? '';
      const vr = resolveValidatorRound(h, given, source, { precision: o.precision, weights: o.weights, weightsSeed: o.weightsSeed });
      // The model's calibrated defaults (calibration/<model>.json), then the flags.
      const stat = statTestForModel(vr.round.model, { dist_threshold: o.distThreshold, p_mismatch: o.pMismatch, p_value_threshold: o.pValueThreshold });
      let verdict: BundleVerdict;
      if (vr.mismatches.length) {
        verdict = roundMismatchVerdict(vr.mismatches, count, rootHex);
      } else {
        const model = await loadWithProgress(vr.round, o.threads);
        const progress = bar('recompute {bar} {value}/{total} nonces');
        try {
          const weights = weightsMismatch(h.weights_identity, model.identity);
          verdict = weights
            ? roundMismatchVerdict([weights], count, rootHex)
            : await validateBundle(bundle, new NonceRunner(model, vr.round), {
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
      if (o.json) process.stdout.write(JSON.stringify({ ...verdict, round_source: vr.source }) + '\n');
      else {
        console.log(`${path}: ${mismatchReport(verdict)}`);
        if (vr.source === 'bundle') console.log(UNVERIFIED_NOTE);
      }
      if (verdict.fraud_detected || !verdict.valid) process.exitCode = EXIT_INVALID;
    });
}

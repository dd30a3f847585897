// `dit-poc artifacts`: computes the artifacts of a nonce range and prints them.
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';

import { NonceRunner, openModel, type NonceResult } from '../engine/nonce-runner.js';
import { makeRound, parseGrid } from '../round/params.js';
import { InputError } from '../errors.js';
import { EXIT_INTERRUPTED } from './errors.js';
import { parseNonces } from './nonce-range.js';

function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new InputError(`${name} must be a positive integer, got '${v}'`);
    return n;
  };
}

function toJson(r: NonceResult) {
  return { nonce: r.nonce, vector_b64: r.vectorB64, timestep: r.timestep, experts: r.experts };
}

export function artifactsCommand(): Command {
  return new Command('artifacts')
    .description('compute the artifacts (SPEC §5) of a range of nonces')
    .requiredOption('--model <id>', 'model id (see `dit-poc info`)')
    .option('--weights <random|DIR>', 'seeded random weights or a checkpoint directory', 'random')
    .option('--weights-seed <S>', 'seed of random weights (default: the block hash)')
    .requiredOption('--block-hash <H>', 'block hash of the round')
    .requiredOption('--public-key <P>', 'public key of the node')
    .requiredOption('--nonces <A..B>', 'nonces: A..B (inclusive), A,B,C or one nonce')
    .option('--grid <F,H,W>', 'latent-patch grid (default per model, SPEC §4)', parseGrid)
    .option('--ctx-len <N>', 'text tokens', positiveInt('--ctx-len'))
    .option('--k-dim <N>', 'artifact length', positiveInt('--k-dim'))
    .option('--stronger-rng', 'draw the latent with N8 (SPEC §2)', false)
    .addOption(new Option('--precision <p>', 'GEMM/attention input precision').choices(['bf16', 'fp32']).default('bf16'))
    .option('--threads <N>', 'CPU threads (default: all cores)', positiveInt('--threads'))
    .option('--batch <N>', 'nonces per forward', positiveInt('--batch'), 4)
    .option('--json', 'print a JSON array [{nonce, vector_b64, timestep, experts}]', false)
    .action(async (o) => {
      const nonces = parseNonces(o.nonces);
      const round = makeRound({
        model: o.model,
        blockHash: o.blockHash,
        publicKey: o.publicKey,
        grid: o.grid,
        ctxLen: o.ctxLen,
        kDim: o.kDim,
        weights: o.weights,
        weightsSeed: o.weightsSeed,
        strongerRng: o.strongerRng,
        precision: o.precision,
      });
      const interactive = process.stderr.isTTY === true;
      const loadBar = interactive ? new cliProgress.SingleBar({ format: 'weights {bar} {value}/{total} tensors', clearOnComplete: true }, cliProgress.Presets.shades_classic) : null;
      let started = false;
      const model = await openModel(round, o.threads, (done, total) => {
        if (!loadBar) return;
        if (!started) { loadBar.start(total, 0); started = true; }
        loadBar.update(done);
      }).catch((e: Error) => {
        throw new InputError(`cannot load weights '${round.weights}': ${e.message}`);
      }).finally(() => loadBar?.stop());

      const results: NonceResult[] = [];
      let interrupted = false;
      const onSigint = () => {
        interrupted = true;
        model.cancel();
      };
      process.once('SIGINT', onSigint);
      const bar = interactive ? new cliProgress.SingleBar({ format: 'nonces {bar} {value}/{total} | {rate} nonces/s | ETA {eta_formatted}' }, cliProgress.Presets.shades_classic) : null;
      bar?.start(nonces.length, 0, { rate: '0.00' });
      const t0 = performance.now();
      try {
        const runner = new NonceRunner(model, round);
        for (let i = 0; i < nonces.length && !interrupted; i += o.batch) {
          try {
            results.push(...(await runner.run(nonces.slice(i, i + o.batch))));
          } catch (e) {
            if (interrupted) break;  // the cancelled batch is dropped; everything before it is kept
            throw e;
          }
          const rate = results.length / ((performance.now() - t0) / 1000);
          bar?.update(results.length, { rate: rate.toFixed(2) });
        }
      } finally {
        bar?.stop();
        process.removeListener('SIGINT', onSigint);
        model.dispose();
      }

      const dropped = results.filter((r) => r.vectorB64 === null);
      if (dropped.length) console.error(`dropped ${dropped.length} nonce(s) with non-finite output: ${dropped.map((r) => r.nonce).join(', ')}`);
      const kept = results.filter((r) => r.vectorB64 !== null);
      if (o.json) {
        process.stdout.write(JSON.stringify(kept.map(toJson)) + '\n');
      } else {
        for (const r of kept) console.log(`${r.nonce}\tt=${r.timestep}\texperts=${r.experts.join('')}\t${r.vectorB64}`);
      }
      if (interrupted) {
        console.error(`interrupted: wrote ${kept.length} of ${nonces.length} nonces`);
        process.exitCode = EXIT_INTERRUPTED;
      }
    });
}

// `dit-poc artifacts`: computes the artifacts of a list of nonces and prints them.
import { Command } from 'commander';

import { NonceRunner, type NonceResult } from '../engine/nonce-runner.js';
import { EXIT_INTERRUPTED } from './errors.js';
import { parseNonces } from './nonce-range.js';
import { addRoundOptions, positiveInt, roundFromOptions, type RoundCliOptions } from './options.js';
import { bar, interruptSignal, loadWithProgress } from './progress.js';

function toJson(r: NonceResult) {
  return { nonce: r.nonce, vector_b64: r.vectorB64, timestep: r.timestep, experts: r.experts };
}

export function artifactsCommand(): Command {
  const cmd = new Command('artifacts').description('compute the artifacts (SPEC §5) of a list of nonces');
  addRoundOptions(cmd, { requireKeys: true });
  return cmd
    .requiredOption('--nonces <A..B>', 'nonces: A..B (inclusive), A,B,C or one nonce')
    .option('--batch <N>', 'nonces per forward', positiveInt('--batch'), 4)
    .option('--json', 'print a JSON array [{nonce, vector_b64, timestep, experts}]', false)
    .action(async (o: RoundCliOptions & { nonces: string; threads?: number; batch: number; json: boolean }) => {
      const nonces = parseNonces(o.nonces);
      const round = roundFromOptions(o);
      const model = await loadWithProgress(round, o.threads);
      const results: NonceResult[] = [];
      const interrupt = interruptSignal();
      interrupt.signal.addEventListener('abort', () => model.cancel());
      const progress = bar('nonces {bar} {value}/{total} | {rate} nonces/s | ETA {eta_formatted}');
      progress?.start(nonces.length, 0, { rate: '0.00' });
      const t0 = performance.now();
      try {
        const runner = new NonceRunner(model, round);
        for (let i = 0; i < nonces.length && !interrupt.signal.aborted; i += o.batch) {
          try {
            results.push(...(await runner.run(nonces.slice(i, i + o.batch))));
          } catch (e) {
            if (interrupt.signal.aborted) break; // the cancelled batch is dropped; earlier ones are kept
            throw e;
          }
          progress?.update(results.length, { rate: (results.length / ((performance.now() - t0) / 1000)).toFixed(2) });
        }
      } finally {
        progress?.stop();
        interrupt.dispose();
        model.dispose();
      }

      const dropped = results.filter((r) => r.vectorB64 === null);
      if (dropped.length) console.error(`dropped ${dropped.length} nonce(s) with non-finite output: ${dropped.map((r) => r.nonce).join(', ')}`);
      const kept = results.filter((r) => r.vectorB64 !== null);
      if (o.json) process.stdout.write(JSON.stringify(kept.map(toJson)) + '\n');
      else for (const r of kept) console.log(`${r.nonce}\tt=${r.timestep}\texperts=${r.experts.join('')}\t${r.vectorB64}`);
      if (interrupt.signal.aborted) {
        console.error(`interrupted: wrote ${kept.length} of ${nonces.length} nonces`);
        process.exitCode = EXIT_INTERRUPTED;
      }
    });
}

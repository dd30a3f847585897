// `dit-poc generate`: a PoC sprint written to a proof bundle.
import { Command, Option } from 'commander';

import type { Deviations } from '../engine/deviations.js';
import { InputError } from '../errors.js';
import { assignedNonces, checkAssignment } from '../protocol/nonce-assignment.js';
import { generateBundle } from '../sprint/generate-bundle.js';
import { closeWorkers } from '../workers/pool.js';
import { EXIT_INTERRUPTED } from './errors.js';
import { parseNonces } from './nonce-range.js';
import { addRoundOptions, nonNegativeInt, parseDuration, positiveInt, roundFromOptions, type RoundCliOptions } from './options.js';
import { bar, interruptSignal, loadWithProgress } from './progress.js';

interface GenerateOptions extends RoundCliOptions {
  out: string;
  overwrite: boolean;
  blockHeight: number;
  nodeId: number;
  nodeCount: number;
  groupId: number;
  nGroups: number;
  nonces?: string;
  count?: number;
  duration?: number;
  batch: number;
  threads?: number;
  json: boolean;
  cheatSingleExpert?: number;
  cheatSkipLayers?: string;
  cheatWeights?: string;
  cheatHouseholderBlockHash?: string;
  cheatTimestepShift?: number;
}

function deviationsFrom(o: GenerateOptions): Deviations {
  const d: Deviations = {};
  if (o.cheatSingleExpert !== undefined) d.singleExpert = o.cheatSingleExpert as 0 | 1;
  if (o.cheatSkipLayers) d.skipLayers = o.cheatSkipLayers.split(',').map(Number);
  if (o.cheatWeights) d.weightTransform = o.cheatWeights;
  if (o.cheatHouseholderBlockHash) d.householderBlockHash = o.cheatHouseholderBlockHash;
  if (o.cheatTimestepShift) d.timestepShift = o.cheatTimestepShift;
  return d;
}

const hidden = (flags: string, desc: string) => new Option(flags, desc).hideHelp();

export function generateCommand(): Command {
  const cmd = new Command('generate').description('run a PoC sprint and write its proof bundle');
  addRoundOptions(cmd, { requireKeys: true });
  return cmd
    .requiredOption('--out <FILE>', 'proof bundle to write')
    .option('--overwrite', 'replace an existing bundle', false)
    .option('--block-height <N>', 'block height of the round', nonNegativeInt('--block-height'), 0)
    .option('--node-id <N>', 'node index within the participant (Gonka NodeNum)', nonNegativeInt('--node-id'), 0)
    .option('--node-count <N>', 'nodes of the participant', positiveInt('--node-count'), 1)
    .option('--group-id <N>', 'worker index within the node', nonNegativeInt('--group-id'), 0)
    .option('--n-groups <N>', 'workers of the node', positiveInt('--n-groups'), 1)
    .option('--nonces <A..B>', 'explicit nonces instead of the node assignment')
    .option('--count <N>', 'stop after N nonces', positiveInt('--count'))
    .option('--duration <T>', 'stop after T (e.g. 180s, 3m)', parseDuration)
    .option('--batch <N>', 'nonces per forward', positiveInt('--batch'), 4)
    .option('--json', 'print a JSON summary {count, root_hex, nonces_per_second, dropped, …}', false)
    // Deliberate cheats, for testing and calibrating validators: never use them to prove.
    .addOption(hidden('--cheat-single-expert <0|1>', 'route every layer to one expert').argParser(nonNegativeInt('--cheat-single-expert')))
    .addOption(hidden('--cheat-skip-layers <i,j>', 'skip these blocks'))
    .addOption(hidden('--cheat-weights <T>', 'weight transform: noise:REL[:SEED], fp8, int4[:GROUP]'))
    .addOption(hidden('--cheat-householder-block-hash <H>', 'reflections from another block hash'))
    .addOption(hidden('--cheat-timestep-shift <N>', 'shift every timestep').argParser(Number))
    .action(async (o: GenerateOptions) => {
      const round = roundFromOptions(o);
      const node = checkAssignment({ nodeId: o.nodeId, nodeCount: o.nodeCount, groupId: o.groupId, nGroups: o.nGroups });
      if (!o.nonces && o.count === undefined && o.duration === undefined)
        throw new InputError('say when to stop: --count N, --duration T or --nonces A..B');
      const nonces = o.nonces ? parseNonces(o.nonces) : assignedNonces(node);
      const deviations = deviationsFrom(o);
      const model = await loadWithProgress(round, o.threads, deviations.weightTransform);
      const interrupt = interruptSignal();
      const total = o.nonces ? (nonces as number[]).length : (o.count ?? null);
      const progress = bar(total ? 'nonces {bar} {value}/{total} | {rate} nonces/s | {elapsed}s' : 'nonces {value} | {rate} nonces/s | {elapsed}s / {budget}');
      progress?.start(total ?? 0, 0, { rate: '0.00', elapsed: 0, budget: o.duration ? `${o.duration / 1000}s` : '-' });
      try {
        const summary = await generateBundle({
          model, round, node, nonces, deviations,
          blockHeight: o.blockHeight,
          out: o.out,
          overwrite: o.overwrite,
          batchSize: o.batch,
          limit: o.count,
          durationMs: o.duration,
          signal: interrupt.signal,
          onProgress: (p) => progress?.update(p.done + p.dropped, { rate: p.noncesPerSecond.toFixed(2), elapsed: p.elapsedS.toFixed(0) }),
        });
        progress?.stop();
        if (o.json) process.stdout.write(JSON.stringify(summary) + '\n');
        else console.log(`${o.out}: ${summary.count} artifacts, root ${summary.root_hex}, ${summary.nonces_per_second.toFixed(2)} nonces/s, ${summary.dropped} dropped (${summary.stopped_by})`);
        if (summary.stopped_by === 'signal') process.exitCode = EXIT_INTERRUPTED;
      } finally {
        progress?.stop();
        interrupt.dispose();
        model.dispose();
        await closeWorkers();
      }
    });
}

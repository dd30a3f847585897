// `dit-poc inspect`: a bundle's summary and integrity (recomputed root and count), and the
// repair of a bundle a crash left without its end record.
import { Command } from 'commander';

import { readBundle } from '../bundle/reader.js';
import { BundleWriter } from '../bundle/writer.js';
import { closeWorkers, commitmentInWorker } from '../workers/pool.js';
import { EXIT_INVALID } from './errors.js';

interface InspectOptions {
  json: boolean;
  artifacts: boolean;
  repair?: string;
}

export function inspectCommand(): Command {
  return new Command('inspect')
    .description("summarise a proof bundle and check its integrity")
    .argument('<bundle>', 'proof bundle')
    .option('--json', 'print JSON', false)
    .option('--artifacts', 'include every artifact in the JSON output', false)
    .option('--repair <OUT>', 'write a closed copy of a truncated bundle (keeps every complete batch)')
    .action(async (path: string, o: InspectOptions) => {
      // The reader's rule decides what is wrong with the header and the nonces; inspect reports it.
      const bundle = await readBundle(path, { allowTruncated: true, allowBadHeader: true });
      const { header, artifacts, end } = bundle;
      const problems: string[] = [...bundle.problems];
      let commit: { count: number; rootHex: string } | null = null;
      try {
        if (!bundle.duplicateArtifacts) commit = await commitmentInWorker({ nonces: artifacts.map((a) => a.nonce), vectorsB64: artifacts.map((a) => a.vectorB64) });
      } finally {
        await closeWorkers();
      }
      if (!end) problems.push(`truncated: no end record${bundle.tornTail ? ' (the last line is torn)' : ''}`);
      else if (commit) {
        if (end.count !== commit.count) problems.push(`end record claims count ${end.count}, the bundle holds ${commit.count} artifacts`);
        if (end.root_hex !== commit.rootHex) problems.push(`end record root ${end.root_hex} differs from the artifacts' root ${commit.rootHex}`);
      }

      // Only a bundle whose sole problem is the missing end record is repaired.
      const repairable = !end && commit !== null && problems.length === 1;
      if (o.repair) {
        if (end) problems.push('nothing to repair: the bundle has an end record');
        else if (!repairable) problems.push('not repaired: the bundle has problems besides the missing end record');
        else {
          const w = BundleWriter.create(o.repair, header.round, header.node);
          // The writer splits this into records that stay under the reader's line limit.
          w.appendBatch(artifacts.map((a) => [a.nonce, a.vectorB64]), bundle.dropped);
          await w.finish({ count: commit!.count, root_hex: commit!.rootHex, dropped: bundle.dropped.length, elapsed_s: 0, nonces_per_second: 0, interrupted: true });
        }
      }

      const r = header.round;
      const summary = {
        model: r.model, block_hash: r.block_hash, public_key: r.public_key, block_height: r.block_height,
        grid: r.grid, ctx_len: r.ctx_len, k_dim: r.k_dim, stronger_rng: r.stronger_rng, precision: r.precision,
        weights_identity: r.weights_identity, node: header.node, created: header.created,
        count: end?.count ?? null, root_hex: end?.root_hex ?? null, artifacts_held: artifacts.length,
        recomputed_root_hex: commit?.rootHex ?? null, dropped: bundle.dropped.length,
        nonces_per_second: end?.nonces_per_second ?? null, interrupted: end?.interrupted ?? null,
        intact: problems.length === 0, problems,
        ...(o.artifacts ? { artifacts: artifacts.map((a) => ({ nonce: a.nonce, vector_b64: a.vectorB64 })) } : {}),
      };
      if (o.json) process.stdout.write(JSON.stringify(summary) + '\n');
      else {
        console.log(`${path}: ${r.model} grid ${r.grid.join('x')} ctx ${r.ctx_len}, block ${r.block_height} ${r.block_hash}, key ${r.public_key}`);
        console.log(`  weights ${r.weights_identity}; node ${header.node.node_id}/${header.node.node_count} group ${header.node.group_id}/${header.node.n_groups}`);
        console.log(`  ${artifacts.length} artifacts, count ${end?.count ?? '-'}, root ${end?.root_hex ?? '-'}, ${bundle.dropped.length} dropped`);
        console.log(problems.length ? `  PROBLEMS:\n    ${problems.join('\n    ')}` : '  intact: root and count match the artifacts');
        if (o.repair && repairable) console.log(`  repaired copy written to ${o.repair}`);
      }
      if (problems.length && !(o.repair && repairable)) process.exitCode = EXIT_INVALID;
    });
}

// Builds proof bundles in-process with the same code `dit-poc generate` runs, and edits them
// the way a dishonest prover would.
import { readFileSync, writeFileSync } from 'node:fs';

import { SmstBuilder } from '../../src/commitment/smst.js';
import type { Deviations } from '../../src/engine/deviations.js';
import { openModel } from '../../src/engine/nonce-runner.js';
import { SINGLE_NODE, assignedNonces } from '../../src/protocol/nonce-assignment.js';
import { makeRound, type RoundParams } from '../../src/round/params.js';
import { generateBundle, type GenerateSummary } from '../../src/sprint/generate-bundle.js';
import { BLOCK_HASH, PUBLIC_KEY } from './native-model.js';

export function tinyRound(over: Partial<RoundParams> = {}): RoundParams {
  return { ...makeRound({ model: 'wan-tiny', blockHash: BLOCK_HASH, publicKey: PUBLIC_KEY }), ...over };
}

export async function makeBundle(
  out: string,
  o: { count?: number; nonces?: number[]; deviations?: Deviations; round?: RoundParams; batch?: number; threads?: number } = {},
): Promise<GenerateSummary> {
  const round = o.round ?? tinyRound();
  const model = await openModel(round, o.threads ?? 2, undefined, o.deviations?.weightTransform);
  try {
    return await generateBundle({
      model, round, blockHeight: 100, node: SINGLE_NODE,
      nonces: o.nonces ?? assignedNonces(SINGLE_NODE),
      limit: o.nonces ? undefined : (o.count ?? 40),
      out, overwrite: true, batchSize: o.batch ?? 4, deviations: o.deviations,
    });
  } finally {
    model.dispose();
  }
}

type Rec = Record<string, unknown> & { type: string };

export function readRecords(path: string): Rec[] {
  return readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

export function writeRecords(path: string, recs: Rec[]): void {
  writeFileSync(path, recs.map((r) => JSON.stringify(r)).join('\n') + '\n');
}

/** All artifacts of a bundle as [nonce, b64] in file order. */
export function artifactsOf(recs: Rec[]): [number, string][] {
  return recs.filter((r) => r.type === 'batch').flatMap((r) => r.artifacts as [number, string][]);
}

/** Rewrites a bundle with new artifacts and, when `recommit`, a correct commitment over them. */
export function rewriteArtifacts(path: string, out: string, edit: (a: [number, string][]) => [number, string][], recommit: boolean): void {
  const recs = readRecords(path);
  const artifacts = edit(artifactsOf(recs));
  const end = { ...recs[recs.length - 1] };
  if (recommit) {
    const t = new SmstBuilder();
    for (const [n, v] of artifacts) t.add(n, Buffer.from(v, 'base64'));
    end.count = t.count;
    end.root_hex = t.rootHex();
  }
  writeRecords(out, [recs[0], { type: 'batch', seq: 0, artifacts, dropped: [] }, end]);
}

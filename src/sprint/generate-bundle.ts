// A sprint written to a proof bundle: the batches are appended as they finish, the commitment
// (SMST root and count) is built at the end and closes the file. Shared by `dit-poc generate`
// and the tests.
import { bundleRound } from '../bundle/format.js';
import { BundleWriter } from '../bundle/writer.js';
import type { NativeModel } from '../engine/native.js';
import { NonceRunner } from '../engine/nonce-runner.js';
import type { Deviations } from '../engine/deviations.js';
import type { NodeAssignment } from '../protocol/nonce-assignment.js';
import type { RoundParams } from '../round/params.js';
import { commitmentInWorker, sizeWorkersBesideEngine } from '../workers/pool.js';
import { runSprint, type SprintProgress, type SprintResult } from './sprint-runner.js';

export interface GenerateBundleOptions {
  model: NativeModel;
  round: RoundParams;
  blockHeight: number;
  node: NodeAssignment;
  nonces: Iterable<number>;
  out: string;
  overwrite?: boolean;
  batchSize: number;
  limit?: number;
  durationMs?: number;
  signal?: AbortSignal;
  deviations?: Deviations;
  onProgress?: (p: SprintProgress) => void;
}

export interface GenerateSummary {
  bundle: string;
  count: number;
  root_hex: string;
  nonces_per_second: number;
  dropped: number;
  elapsed_s: number;
  stopped_by: SprintResult['stoppedBy'];
}

export async function generateBundle(o: GenerateBundleOptions): Promise<GenerateSummary> {
  const { round, node } = o;
  const writer = BundleWriter.create(
    o.out,
    bundleRound(round, o.blockHeight, o.model.identity),
    { node_id: node.nodeId, node_count: node.nodeCount, group_id: node.groupId, n_groups: node.nGroups },
    { overwrite: o.overwrite },
  );
  try {
    await sizeWorkersBesideEngine(o.model.threads);
    const sprint = await runSprint(new NonceRunner(o.model, round, o.deviations), {
      batchSize: o.batchSize,
      nonces: o.nonces,
      limit: o.limit,
      durationMs: o.durationMs,
      signal: o.signal,
      onBatch: (good, bad) => writer.appendBatch(good, bad),
      onProgress: o.onProgress,
    });
    const commit = await commitmentInWorker({ nonces: sprint.artifacts.map((a) => a[0]), vectorsB64: sprint.artifacts.map((a) => a[1]) });
    await writer.finish({
      count: commit.count, root_hex: commit.rootHex, dropped: sprint.dropped.length,
      elapsed_s: sprint.elapsedS, nonces_per_second: sprint.noncesPerSecond, interrupted: sprint.stoppedBy === 'signal',
    });
    return {
      bundle: o.out, count: commit.count, root_hex: commit.rootHex, nonces_per_second: sprint.noncesPerSecond,
      dropped: sprint.dropped.length, elapsed_s: sprint.elapsedS, stopped_by: sprint.stoppedBy,
    };
  } finally {
    await writer.close(); // fsyncs what was written, on an error too
  }
}

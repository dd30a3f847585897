// A PoC sprint: nonces in batches until the sequence, a count limit or a deadline ends it, or
// the caller aborts (SIGINT). The next batch's inputs are derived while the current forward
// runs, and artifacts are post-processed on worker threads while the next forward runs.
// Batches are delivered to onBatch in order; everything computed before a stop is kept.
// A batch that runs out of memory is halved and its nonces retried (the smaller size is kept);
// a single nonce that does, or any other failure, ends the sprint with that error. A failed
// delivery (post-processing or onBatch) ends it too, never as an unhandled rejection.
import { isOutOfMemory } from '../engine/out-of-memory.js';
import type { NonceInputs } from '../inputs/nonce-inputs.js';
import type { NonceRunner } from '../engine/nonce-runner.js';
import { artifactsInWorker } from '../workers/pool.js';

export interface SprintProgress {
  done: number;
  dropped: number;
  elapsedS: number;
  noncesPerSecond: number;
  total: number | null;
}

export interface SprintOptions {
  batchSize: number;
  nonces: Iterable<number>;
  /** Stop after this many nonces (computed or dropped). */
  limit?: number;
  /** Stop at this many milliseconds from the start; the batch in flight is cancelled. */
  durationMs?: number;
  signal?: AbortSignal;
  onBatch?: (artifacts: [number, string][], dropped: number[]) => void | Promise<void>;
  onProgress?: (p: SprintProgress) => void;
  /** Told when a batch of `size` ran out of memory; the sprint goes on with batches of `half`. */
  onOutOfMemory?: (size: number, half: number) => void;
}

export interface SprintResult {
  artifacts: [number, string][];
  dropped: number[];
  elapsedS: number;
  noncesPerSecond: number;
  /** Why the sprint ended. */
  stoppedBy: 'done' | 'limit' | 'deadline' | 'signal';
  /** The batch size in use at the end (smaller than asked after running out of memory). */
  batchSize: number;
}

export async function runSprint(runner: NonceRunner, o: SprintOptions): Promise<SprintResult> {
  if (!Number.isInteger(o.batchSize) || o.batchSize <= 0) throw new Error('batch size must be a positive integer');
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  const it = o.nonces[Symbol.iterator]();
  let taken = 0;
  let exhausted = false;
  let batchSize = o.batchSize;
  // Nonces taken but not computed yet: those of a batch that ran out of memory.
  const pending: NonceInputs[] = [];
  const take = (): NonceInputs[] => {
    const out: NonceInputs[] = pending.splice(0, batchSize);
    while (out.length < batchSize && (o.limit === undefined || taken < o.limit)) {
      const n = it.next();
      if (n.done) {
        exhausted = true;
        break;
      }
      out.push(runner.inputs(n.value));
      taken++;
    }
    return out;
  };

  let stoppedBy: SprintResult['stoppedBy'] = 'done';
  const stop = (why: SprintResult['stoppedBy']) => {
    if (stoppedBy === 'done') stoppedBy = why;
    runner.model.cancel();
  };
  const onAbort = () => stop('signal');
  o.signal?.addEventListener('abort', onAbort);
  if (o.signal?.aborted) stoppedBy = 'signal';
  const deadline = o.durationMs !== undefined ? setTimeout(() => stop('deadline'), o.durationMs) : null;

  const artifacts: [number, string][] = [];
  const dropped: number[] = [];
  let delivered = Promise.resolve();
  let failed = false;
  const report = () =>
    o.onProgress?.({
      done: artifacts.length,
      dropped: dropped.length,
      elapsedS: elapsed(),
      noncesPerSecond: (artifacts.length + dropped.length) / Math.max(elapsed(), 1e-9),
      total: o.limit ?? null,
    });

  try {
    let inputs = stoppedBy === 'done' ? take() : [];
    while (inputs.length > 0 && stoppedBy === 'done' && !failed) {
      const forward = runner.forward(inputs);
      let next: NonceInputs[];
      try {
        next = take(); // overlaps the native forward
      } catch (e) {
        await forward.catch(() => undefined);
        throw e;
      }
      let y: Float32Array;
      try {
        y = await forward;
      } catch (e) {
        if (stoppedBy !== 'done') break; // cancelled by the deadline or a signal: drop this batch only
        if (!isOutOfMemory(e) || inputs.length < 2) throw e;
        const half = Math.ceil(inputs.length / 2);
        o.onOutOfMemory?.(inputs.length, half);
        batchSize = half;
        pending.unshift(...inputs, ...next);
        inputs = take();
        continue;
      }
      const batch = inputs;
      const post = artifactsInWorker({
        y,
        nonces: batch.map((b) => b.nonce),
        blockHash: runner.round.blockHash,
        publicKey: runner.round.publicKey,
        kDim: runner.round.kDim,
      });
      post.catch(() => undefined); // awaited in order below; not an unhandled rejection meanwhile
      delivered = delivered.then(async () => {
        const vectors = await post;
        const good: [number, string][] = [];
        const bad: number[] = [];
        vectors.forEach((v, i) => (v === null ? bad.push(batch[i].nonce) : good.push([batch[i].nonce, v])));
        artifacts.push(...good);
        dropped.push(...bad);
        await o.onBatch?.(good, bad);
        report();
      });
      delivered.catch(() => {
        failed = true;
      });
      inputs = next;
      if (o.limit !== undefined && taken >= o.limit && inputs.length === 0 && stoppedBy === 'done') stoppedBy = 'limit';
    }
    await delivered;
  } finally {
    if (deadline) clearTimeout(deadline);
    o.signal?.removeEventListener('abort', onAbort);
  }
  if (stoppedBy === 'done' && !exhausted && o.limit !== undefined) stoppedBy = 'limit';
  const t = elapsed();
  return { artifacts, dropped, elapsedS: t, noncesPerSecond: (artifacts.length + dropped.length) / Math.max(t, 1e-9), stoppedBy, batchSize };
}

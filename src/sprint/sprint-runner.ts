// A PoC sprint: nonces in batches until the sequence, a count limit or a deadline ends it, or
// the caller aborts (SIGINT). Two forwards are in flight: while one runs, the next batch's
// inputs are derived and its forward is queued behind it (the engine runs one forward at a
// time), so the engine goes from one batch to the next without waiting for this thread;
// artifacts are post-processed on worker threads meanwhile.
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
  // Post-processes a computed batch on a worker and chains its delivery after the previous one.
  const deliver = (batch: NonceInputs[], y: Float32Array) => {
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
  };

  interface InFlight {
    inputs: NonceInputs[];
    y: Promise<Float32Array>;
  }
  const launch = (inputs: NonceInputs[]): InFlight | null => {
    if (inputs.length === 0) return null;
    const y = runner.forward(inputs);
    y.catch(() => undefined); // awaited in order; not an unhandled rejection meanwhile
    return { inputs, y };
  };
  // Cancels a forward in flight and waits until it has stopped; returns its output if it had
  // completed before the cancel reached it.
  const drop = async (f: InFlight): Promise<Float32Array | null> => {
    runner.model.cancel();
    return f.y.catch(() => null);
  };

  let current: InFlight | null = null;
  try {
    current = stoppedBy === 'done' ? launch(take()) : null;
    while (current && stoppedBy === 'done' && !failed) {
      const queued = launch(take()); // derived while `current` runs, then queued behind it
      let y: Float32Array;
      try {
        y = await current.y;
      } catch (e) {
        const inputs = current.inputs;
        current = queued;
        if (stoppedBy !== 'done') {
          // Cancelled by the deadline or a signal: this batch is dropped, and so is the one
          // queued behind it (cancelled, or dropped if it completed before the cancel reached it),
          // so that the delivered nonces stay a prefix of the sequence, with no gap.
          if (current) await drop(current);
          current = null;
          break;
        }
        if (!isOutOfMemory(e) || inputs.length < 2) throw e;
        // The queued batch is as large: cancel it and run both again in halves.
        const half = Math.ceil(inputs.length / 2);
        o.onOutOfMemory?.(inputs.length, half);
        batchSize = half;
        if (current) {
          await drop(current);
          pending.unshift(...current.inputs);
        }
        pending.unshift(...inputs);
        current = launch(take());
        continue;
      }
      deliver(current.inputs, y);
      current = queued;
      if (o.limit !== undefined && taken >= o.limit && current === null && stoppedBy === 'done') stoppedBy = 'limit';
    }
  } finally {
    // A forward left in flight on a failure (or a stop seen between batches) is cancelled; if
    // it had completed, its batch is delivered like the others, so nothing computed is lost.
    try {
      const y = current ? await drop(current) : null;
      if (y && current && !failed) deliver(current.inputs, y);
    } finally {
      if (deadline) clearTimeout(deadline);
      o.signal?.removeEventListener('abort', onAbort);
    }
  }
  await delivered;
  if (stoppedBy === 'done' && !exhausted && o.limit !== undefined) stoppedBy = 'limit';
  const t = elapsed();
  return { artifacts, dropped, elapsedS: t, noncesPerSecond: (artifacts.length + dropped.length) / Math.max(t, 1e-9), stoppedBy, batchSize };
}

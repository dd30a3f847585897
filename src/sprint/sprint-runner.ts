// A PoC sprint: nonces in batches until the sequence, a count limit or a deadline ends it, or
// the caller aborts (SIGINT). Two batches are in flight: while one runs, the next is queued
// behind it (the engine runs one forward at a time), so the engine goes from one batch to the
// next without waiting for this thread. The engine derives the nonces' inputs and reduces their
// outputs itself (NonceRunner.artifacts), so this thread does no per-nonce work beside it.
// Batches are delivered to onBatch in order; everything computed before a stop is kept.
// A batch that runs out of memory is halved and its nonces retried (the smaller size is kept);
// a single nonce that does, or any other failure (the artifacts' included), ends the sprint with
// that error. A failing onBatch ends it too, never as an unhandled rejection.
import { isOutOfMemory } from '../engine/out-of-memory.js';
import type { NonceRunner } from '../engine/nonce-runner.js';

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
  const pending: number[] = [];
  const take = (): number[] => {
    const out: number[] = pending.splice(0, batchSize);
    while (out.length < batchSize && (o.limit === undefined || taken < o.limit)) {
      const n = it.next();
      if (n.done) {
        exhausted = true;
        break;
      }
      out.push(n.value);
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
  // Chains a computed batch's delivery after the previous one's.
  const deliver = (batch: number[], vectors: (string | null)[]) => {
    delivered = delivered.then(async () => {
      const good: [number, string][] = [];
      const bad: number[] = [];
      vectors.forEach((v, i) => (v === null ? bad.push(batch[i]) : good.push([batch[i], v])));
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
    nonces: number[];
    vectors: Promise<(string | null)[]>;
  }
  const launch = (nonces: number[]): InFlight | null => {
    if (nonces.length === 0) return null;
    const vectors = runner.artifacts(nonces);
    vectors.catch(() => undefined); // awaited in order; not an unhandled rejection meanwhile
    return { nonces, vectors };
  };
  // Cancels a batch in flight and waits until it has stopped; returns its artifacts if it had
  // completed before the cancel reached it.
  const drop = async (f: InFlight): Promise<(string | null)[] | null> => {
    runner.model.cancel();
    return f.vectors.catch(() => null);
  };

  let current: InFlight | null = null;
  try {
    current = stoppedBy === 'done' ? launch(take()) : null;
    while (current && stoppedBy === 'done' && !failed) {
      const queued = launch(take()); // queued behind `current`, so the engine never waits for us
      let vectors: (string | null)[];
      try {
        vectors = await current.vectors;
      } catch (e) {
        const nonces = current.nonces;
        current = queued;
        if (stoppedBy !== 'done') {
          // Cancelled by the deadline or a signal: this batch is dropped, and so is the one
          // queued behind it (cancelled, or dropped if it completed before the cancel reached it),
          // so that the delivered nonces stay a prefix of the sequence, with no gap.
          if (current) await drop(current);
          current = null;
          break;
        }
        if (!isOutOfMemory(e) || nonces.length < 2) throw e;
        // The queued batch is as large: cancel it and run both again in halves.
        const half = Math.ceil(nonces.length / 2);
        o.onOutOfMemory?.(nonces.length, half);
        batchSize = half;
        if (current) {
          await drop(current);
          pending.unshift(...current.nonces);
        }
        pending.unshift(...nonces);
        current = launch(take());
        continue;
      }
      deliver(current.nonces, vectors);
      current = queued;
      if (o.limit !== undefined && taken >= o.limit && current === null && stoppedBy === 'done') stoppedBy = 'limit';
    }
  } finally {
    // A forward left in flight on a failure (or a stop seen between batches) is cancelled; if
    // it had completed, its batch is delivered like the others, so nothing computed is lost.
    try {
      const vectors = current ? await drop(current) : null;
      if (vectors && current && !failed) deliver(current.nonces, vectors);
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

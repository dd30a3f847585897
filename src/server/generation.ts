// A PoC generation started by POST /init/generate: one sprint loop per device worker, each over
// its share of the node's nonces, every artifact appended to the spool stream of `{url}/generated`.
//
// Nonce sharing: the request's group (group_id of n_groups, set by an MLNode proxy or 0 of 1) is
// split again between this server's W device workers: worker w computes group g + w·G of W·G, so
// the node's nonces `offset + x·step` (SPEC §11) are interleaved across devices without overlap.
//
// Failures: a batch that runs out of memory is halved and retried (runSprint); any other failed
// batch is retried after a pause, but MAX_CONSECUTIVE_FAILURES in a row fail the round: every
// worker stops, `failure` says why (shown by /status), and the server stays up.
import type { Logger } from 'pino';

import { assignedNonces, type NodeAssignment } from '../protocol/nonce-assignment.js';
import type { RoundParams } from '../round/params.js';
import { runSprint } from '../sprint/sprint-runner.js';
import type { DeviceWorker } from './devices.js';
import type { ServerMetrics } from './metrics.js';
import type { Spool, SpoolStream } from './spool.js';

export interface GenerationConfig {
  block_hash: string;
  block_height: number;
  public_key: string;
  node_id: number;
  node_count: number;
  group_id: number;
  n_groups: number;
  seq_len: number;
  k_dim: number;
}

/** Worker w's share of the node's nonces (see the header). */
export function workerAssignment(c: Pick<GenerationConfig, 'node_id' | 'node_count' | 'group_id' | 'n_groups'>, w: number, workers: number): NodeAssignment {
  return { nodeId: c.node_id, nodeCount: c.node_count, groupId: c.group_id + w * c.n_groups, nGroups: workers * c.n_groups };
}

/** Failed batches in a row (on one device) after which the round fails instead of retrying. */
export const MAX_CONSECUTIVE_FAILURES = 3;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

export class GenerationSession {
  readonly startedAt = Date.now();
  private readonly abort = new AbortController();
  private processed = 0;
  private _ended = false;
  private _failure: string | null = null;
  readonly done: Promise<void>;

  constructor(
    readonly config: GenerationConfig,
    readonly round: RoundParams,
    private readonly batchSize: number,
    private readonly devices: DeviceWorker[],
    private readonly stream: SpoolStream | null,
    private readonly spool: Spool,
    private readonly metrics: ServerMetrics,
    private readonly log: Logger,
  ) {
    this.done = Promise.allSettled(devices.map((d) => this.runWorker(d))).then((results) => {
      for (const r of results) if (r.status === 'rejected') this.fail(r.reason);
      this._ended = true;
      try {
        this.stream?.close();
      } catch (e) {
        this.log.error({ err: e }, 'spool: cannot seal the last segment');
      }
      if (this._failure) this.log.error({ total_processed: this.processed, error: this._failure }, 'generation FAILED: the round was given up');
      else this.log.info({ total_processed: this.processed, seconds: (Date.now() - this.startedAt) / 1000 }, 'generation ended');
    });
  }

  get ended(): boolean {
    return this._ended;
  }

  /** Why the round failed, or null. */
  get failure(): string | null {
    return this._failure;
  }

  /** Fails the round: records why (the first reason wins) and stops every worker. */
  fail(reason: unknown): void {
    if (this._failure === null) {
      this._failure = reason instanceof Error ? reason.message : String(reason);
      this.metrics.roundsFailed.inc();
    }
    this.abort.abort();
  }

  get stats(): { total_processed: number; nonces_per_second: number } {
    const elapsed = (Date.now() - this.startedAt) / 1000;
    return { total_processed: this.processed, nonces_per_second: elapsed > 0 ? this.processed / elapsed : 0 };
  }

  /** Stops every worker (the batch in flight is cancelled, everything computed is spooled). */
  async stop(): Promise<void> {
    // runSprint cancels its own forward in flight; a worker still waiting for its device sees
    // the signal before it starts.
    this.abort.abort();
    await this.done;
  }

  private async runWorker(device: DeviceWorker): Promise<void> {
    const signal = this.abort.signal;
    const assignment = workerAssignment(this.config, device.index, this.devices.length);
    const log = this.log.child({ device: device.spec.id });
    const base = assignedNonces(assignment);
    let exhausted = false;
    // The sprint takes nonces from here; it ends cleanly (nothing in flight lost) when the spool
    // is over its byte cap, and the loop below resumes once there is room again.
    const gated: Iterable<number> = {
      [Symbol.iterator]: () => ({
        next: (): IteratorResult<number> => {
          if (signal.aborted || this.spool.full) return { done: true, value: undefined };
          const n = base.next();
          if (n.done) exhausted = true;
          return n;
        },
      }),
    };
    let lease;
    try {
      lease = await device.acquireUnlessAborted(this.round, signal);
    } catch (e) {
      log.error({ err: e }, 'generation cannot start on this device');
      this.fail(e);
      return;
    }
    if (!lease) return; // stopped while the weights were loading
    try {
      await device.exclusive(async () => {
        const runner = device.runner(lease.model, this.round);
        log.info({ group_id: assignment.groupId, n_groups: assignment.nGroups, batch_size: this.batchSize }, 'generation started');
        let batchSize = this.batchSize;
        let failures = 0;
        while (!signal.aborted && !exhausted) {
          if (this.spool.full) {
            if (this.spool.diskFull) log.warn({ spool: this.spool.depth }, 'disk full: generation paused until space returns');
            else log.warn({ spool: this.spool.depth }, 'spool is full: generation paused until the receiver catches up');
            await this.spool.waitForRoom(signal);
            continue;
          }
          try {
            const sprint = await runSprint(runner, {
              batchSize,
              nonces: gated,
              signal,
              onBatch: (artifacts, dropped) => {
                failures = 0;
                this.processed += artifacts.length + dropped.length;
                this.metrics.countNonces(device.spec.id, artifacts.length, dropped.length);
                if (dropped.length) log.warn({ nonces: dropped }, 'non-finite output: no artifact');
                if (artifacts.length && this.stream) this.stream.append(artifacts);
              },
              onOutOfMemory: (size, half) => {
                this.metrics.batchFailures.inc({ reason: 'out_of_memory' });
                log.warn({ batch_size: size, retry_batch_size: half }, 'batch ran out of memory: halved and retried');
              },
            });
            batchSize = sprint.batchSize;
          } catch (e) {
            if (signal.aborted) break;
            failures++;
            this.metrics.batchFailures.inc({ reason: 'error' });
            if (failures >= MAX_CONSECUTIVE_FAILURES) {
              log.error({ err: e, failures }, 'generation batch failed too often in a row: the round fails');
              this.fail(e);
              break;
            }
            log.error({ err: e, failures, max: MAX_CONSECUTIVE_FAILURES }, 'generation batch failed; retrying');
            await sleep(1000, signal);
          }
        }
      });
    } finally {
      lease.release();
    }
  }
}

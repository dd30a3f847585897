// A PoC generation started by POST /init/generate: one sprint loop per device worker, each over
// its share of the node's nonces, every artifact appended to the spool stream of `{url}/generated`.
//
// Nonce sharing: the request's group (group_id of n_groups, set by an MLNode proxy or 0 of 1) is
// split again between this server's W device workers: worker w computes group g + w·G of W·G, so
// the node's nonces `offset + x·step` (SPEC §11) are interleaved across devices without overlap.
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
      for (const r of results) if (r.status === 'rejected') this.log.error({ err: r.reason }, 'device worker failed');
      this._ended = true;
      try {
        this.stream?.close();
      } catch (e) {
        this.log.error({ err: e }, 'spool: cannot seal the last segment');
      }
      this.log.info({ total_processed: this.processed, seconds: (Date.now() - this.startedAt) / 1000 }, 'generation ended');
    });
  }

  get ended(): boolean {
    return this._ended;
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
      return;
    }
    if (!lease) return; // stopped while the weights were loading
    try {
      await device.exclusive(async () => {
        const runner = device.runner(lease.model, this.round);
        log.info({ group_id: assignment.groupId, n_groups: assignment.nGroups, batch_size: this.batchSize }, 'generation started');
        while (!signal.aborted && !exhausted) {
          if (this.spool.full) {
            log.warn({ spool: this.spool.depth }, 'spool is full: generation paused until the receiver catches up');
            await this.spool.waitForRoom(signal);
            continue;
          }
          try {
            await runSprint(runner, {
              batchSize: this.batchSize,
              nonces: gated,
              signal,
              onBatch: (artifacts, dropped) => {
                this.processed += artifacts.length + dropped.length;
                this.metrics.countNonces(device.spec.id, artifacts.length, dropped.length);
                if (dropped.length) log.warn({ nonces: dropped }, 'non-finite output: no artifact');
                if (artifacts.length && this.stream) this.stream.append(artifacts);
              },
            });
          } catch (e) {
            if (signal.aborted) break;
            log.error({ err: e }, 'generation batch failed; retrying');
            await sleep(1000, signal);
          }
        }
      });
    } finally {
      lease.release();
    }
  }
}

// The ML node's state: one generation at a time, the /generate job queue, the callback spool and
// the device workers. The HTTP layer (app.ts) only validates bodies and calls in here.
import type { Logger } from 'pino';

import { bundleRound } from '../bundle/format.js';
import { InputError } from '../errors.js';
import { weightsIdentity } from '../round/params.js';
import { statTestForModel } from '../calibration/calibration-file.js';
import type { DeviceWorker } from './devices.js';
import { GenerationSession } from './generation.js';
import { encoding, JobQueue, type JobQueueOptions } from './jobs.js';
import type { ServerMetrics } from './metrics.js';
import { checkCallbackUrl, HttpError, resolveRound, type Deployed } from './params.js';
import type { GenerateBody, InitGenerateBody } from './schemas.js';
import type { Spool } from './spool.js';

export interface ServiceOptions {
  deployed: Deployed;
  devices: DeviceWorker[];
  spool: Spool;
  metrics: ServerMetrics;
  log: Logger;
  /** Batch size when a request gives none (the decentralized-api omits it on purpose). */
  defaultBatchSize: number;
  jobs: JobQueueOptions;
}

export const GENERATING = 'GENERATING';
export const IDLE = 'IDLE';
export const STOPPED = 'STOPPED';

export class PocService {
  private session: GenerationSession | null = null;
  private stopping: Promise<void> | null = null;
  private idleWaiters: Array<() => void> = [];
  private closing = false;
  readonly jobs: JobQueue;

  constructor(private readonly o: ServiceOptions) {
    this.jobs = new JobQueue(o.devices, o.spool, () => this.whenIdle(), o.jobs, o.log.child({ part: 'jobs' }), (kind, outcome) =>
      o.metrics.jobs.inc({ kind, outcome }),
    );
  }

  get generating(): boolean {
    return this.session !== null && !this.session.ended;
  }

  /** POST /init/generate */
  async initGenerate(b: InitGenerateBody): Promise<Record<string, unknown>> {
    this.checkOpen();
    const round = resolveRound(this.o.deployed, b);
    const groupId = b.group_id ?? 0;
    const nGroups = b.n_groups ?? 1;
    if (groupId >= nGroups) throw new InputError(`group_id ${groupId} must be below n_groups ${nGroups}`);
    if (b.node_id >= b.node_count) this.o.log.warn({ node_id: b.node_id, node_count: b.node_count }, 'node_id is not below node_count: nonces may overlap another node');
    const url = b.url ? checkCallbackUrl(b.url) : null;
    if (this.generating) throw new HttpError(409, 'Already generating');
    if (this.stopping) await this.stopping;
    if (this.generating) throw new HttpError(409, 'Already generating');
    this.checkOpen();

    const config = {
      block_hash: b.block_hash,
      block_height: b.block_height,
      public_key: b.public_key,
      node_id: b.node_id,
      node_count: b.node_count,
      group_id: groupId,
      n_groups: nGroups,
      seq_len: b.params.seq_len,
      k_dim: round.kDim,
    };
    const log = this.o.log.child({ round: b.block_height });
    if (!url) log.warn('init/generate without url: artifacts are computed but sent nowhere');
    const identity = weightsIdentity(round);
    const stream = url
      ? this.o.spool.openStream(url, { public_key: b.public_key, block_hash: b.block_hash, block_height: b.block_height, node_id: b.node_id, encoding: encoding(round), log_context: { weights_identity: identity } })
      : null;
    const session = new GenerationSession(config, round, b.batch_size ?? this.o.defaultBatchSize, this.o.devices, stream, this.o.spool, this.o.metrics, log);
    this.session = session;
    log.info({ ...config, round: bundleRound(round, b.block_height), url, devices: this.o.devices.length }, 'init/generate');
    void session.done.then(() => {
      if (this.session === session) this.session = null;
      this.wakeIdle();
    });
    return { status: 'OK', pow_status: { status: GENERATING } };
  }

  /** POST /generate: returns the inline result (wait) or the queued answer. */
  async generate(b: GenerateBody): Promise<Record<string, unknown>> {
    this.checkOpen();
    const round = resolveRound(this.o.deployed, b);
    const url = b.url ? checkCallbackUrl(b.url) : null;
    let claims: Map<number, string> | undefined;
    if (b.validation) {
      claims = new Map();
      for (const a of b.validation.artifacts) {
        if (claims.has(a.nonce)) throw new InputError(`validation.artifacts lists nonce ${a.nonce} twice`);
        claims.set(a.nonce, a.vector_b64);
      }
      const seen = new Set<number>();
      for (const n of b.nonces) {
        if (seen.has(n)) throw new InputError(`nonces lists ${n} twice`);
        seen.add(n);
      }
      if (seen.size !== claims.size || b.nonces.some((n) => !claims!.has(n)))
        throw new InputError('validation.artifacts nonces must match nonces field');
    }
    // Fields the request leaves out come from the model's calibration (or SPEC §10 defaults).
    const stat = claims ? statTestForModel(round.model, { ...(b.stat_test ?? {}) }) : undefined;
    const wait = b.wait ?? false;
    if (wait && this.generating) throw new HttpError(409, 'Already generating');
    const job = this.jobs.submit({
      envelope: { block_hash: b.block_hash, block_height: b.block_height, public_key: b.public_key, node_id: b.node_id },
      round,
      nonces: b.nonces,
      batchSize: b.batch_size ?? this.o.defaultBatchSize,
      url,
      wait,
      claims,
      stat,
    });
    if (!wait) return { status: 'queued', request_id: job.id, queued_count: b.nonces.length };
    await job.settled;
    const view = this.jobs.view(job.id);
    if (!view || view.status === 'failed') throw new HttpError(503, view?.error ?? 'the job did not finish');
    return view;
  }

  /** GET /generate/{id} */
  job(id: string): Record<string, unknown> {
    const v = this.jobs.view(id);
    if (!v) throw new HttpError(404, `unknown or expired request_id '${id}'`);
    return v;
  }

  /** GET /status */
  status(): Record<string, unknown> {
    const s = this.session;
    if (!s || s.ended) return { status: IDLE, config: null, stats: null };
    return { status: GENERATING, config: { ...s.config }, stats: s.stats, round: bundleRound(s.round, s.config.block_height) };
  }

  /** POST /stop: ends the generation and clears the job queue; spooled artifacts stay for delivery. */
  async stop(reason = 'stopped'): Promise<Record<string, unknown>> {
    this.jobs.cancelAll(reason);
    const s = this.session;
    if (s && !this.stopping) {
      this.stopping = s.stop().finally(() => {
        this.stopping = null;
        if (this.session === s) this.session = null;
        this.wakeIdle();
      });
    }
    if (this.stopping) await this.stopping;
    return { status: 'OK', pow_status: { status: STOPPED } };
  }

  /** Refuses new work (503) from now on; used by a graceful shutdown. */
  close(): void {
    this.closing = true;
  }

  private checkOpen(): void {
    if (this.closing) throw new HttpError(503, 'the server is shutting down');
  }

  private whenIdle(): Promise<void> {
    if (!this.generating && !this.stopping) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private wakeIdle(): void {
    if (this.generating || this.stopping) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }
}

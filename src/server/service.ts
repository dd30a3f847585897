// The ML node's state: one generation at a time, the /generate job queue, the callback spool and
// the device workers. The HTTP layer (app.ts) only validates bodies and calls in here.
import type { Logger } from 'pino';

import { bundleRound } from '../bundle/format.js';
import { InputError } from '../errors.js';
import { modelInfo, weightsIdentity, type RoundParams } from '../round/params.js';
import { readCalibration, statTestForModel } from '../calibration/calibration-file.js';
import { cheatsPassing } from '../calibration/cheat-check.js';
import { availableHostMemory, cpuWeightsBytes, forwardBytesPerNonce, gib, planBatch } from '../engine/memory-estimate.js';
import { checkAssignment } from '../protocol/nonce-assignment.js';
import { DEFAULT_STAT_TEST, type StatTest } from '../validation/verdict.js';
import type { DeviceWorker } from './devices.js';
import { GenerationSession } from './generation.js';
import { encoding, JobQueue, type JobQueueOptions } from './jobs.js';
import type { ServerMetrics } from './metrics.js';
import { checkCallbackUrl, HttpError, resolveRound, type Deployed } from './params.js';
import { pointsAtSelf, type ListenAddress } from './self-address.js';
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
  /** Bytes each device's forwards may use for activations (default: the host's available memory, shared by CPU workers). */
  memoryBudgetBytes?: number;
}

/** A round that ended in failure, as /status shows it until the next init/generate. */
interface FailedRound {
  config: Record<string, unknown>;
  stats: Record<string, unknown>;
  error: string;
  failed_at: string;
}

export const GENERATING = 'GENERATING';
export const IDLE = 'IDLE';
export const STOPPED = 'STOPPED';

export class PocService {
  private session: GenerationSession | null = null;
  private stopping: Promise<void> | null = null;
  private idleWaiters: Array<() => void> = [];
  private closing = false;
  private readonly warnedRounds = new Set<string>();
  private failedRound: FailedRound | null = null;
  private listening: ListenAddress | null = null;
  readonly jobs: JobQueue;

  constructor(private readonly o: ServiceOptions) {
    this.jobs = new JobQueue(
      o.devices,
      o.spool,
      () => this.whenIdle(),
      o.jobs,
      o.log.child({ part: 'jobs' }),
      (kind, outcome) => o.metrics.jobs.inc({ kind, outcome }),
      (device, computed, dropped) => o.metrics.countNonces(device, computed, dropped),
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
    // The same rule as the CLI's --node-id/--node-count/--group-id/--n-groups.
    checkAssignment({ nodeId: b.node_id, nodeCount: b.node_count, groupId, nGroups });
    const url = b.url ? this.callbackBase(b.url) : null;
    const batchSize = this.batchFor(round, b.batch_size);
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
    const session = new GenerationSession(config, round, batchSize, this.o.devices, stream, this.o.spool, this.o.metrics, log);
    this.session = session;
    this.failedRound = null;
    log.info({ ...config, round: bundleRound(round, b.block_height), batch_size: batchSize, url, devices: this.o.devices.length }, 'init/generate');
    void session.done.then(() => {
      if (session.failure !== null)
        this.failedRound = { config: { ...session.config }, stats: session.stats, error: session.failure, failed_at: new Date().toISOString() };
      if (this.session === session) this.session = null;
      this.wakeIdle();
    });
    return { status: 'OK', pow_status: { status: GENERATING } };
  }

  /** POST /generate: returns the inline result (wait) or the queued answer. */
  async generate(b: GenerateBody): Promise<Record<string, unknown>> {
    this.checkOpen();
    const round = resolveRound(this.o.deployed, b);
    const url = b.url ? this.callbackBase(b.url) : null;
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
    if (stat) this.warnIfLenient(round.model, b, stat);
    const wait = b.wait ?? false;
    // wait=true during a generation waits for it to end (the queue runs jobs when idle), as vLLM's does.
    const batchSize = this.batchFor(round, b.batch_size);
    const job = this.jobs.submit({
      envelope: { block_hash: b.block_hash, block_height: b.block_height, public_key: b.public_key, node_id: b.node_id },
      round,
      nonces: b.nonces,
      batchSize,
      url,
      wait,
      claims,
      stat,
    });
    if (!wait) return { status: 'queued', request_id: job.id, queued_count: b.nonces.length };
    await job.settled;
    const view = this.jobs.view(job.id);
    if (!view || view.status === 'failed')
      throw new HttpError(this.jobs.failedByInput(job.id) ? 400 : 503, view?.error ?? 'the job did not finish');
    return view;
  }

  /**
   * The batch a request runs with: min(requested, what fits in memory). 413 with the numbers when
   * not even one nonce fits. GPU memory is not known here: without --memory-budget-mb a GPU
   * worker takes the requested batch, and one that runs out of memory is halved (runSprint).
   */
  private batchFor(round: RoundParams, requested: number | undefined): number {
    const want = requested ?? this.o.defaultBatchSize;
    const cpuWorkers = this.o.devices.filter((d) => d.spec.kind === 'cpu').length;
    if (this.o.memoryBudgetBytes === undefined && cpuWorkers === 0) return want;
    const info = modelInfo(round.model);
    const perNonce = forwardBytesPerNonce(info, round.grid, round.ctxLen);
    const fromBudget = this.o.memoryBudgetBytes !== undefined;
    const available = this.o.memoryBudgetBytes ?? availableHostMemory() / cpuWorkers;
    // Weights a worker still has to load come out of the same memory (not out of a budget, which is for activations).
    const toLoad = !fromBudget && this.o.devices.some((d) => d.spec.kind === 'cpu' && !d.holds(round)) ? cpuWeightsBytes(info) : 0;
    const plan = planBatch(want, perNonce, available, toLoad);
    if (plan.batchSize < 1)
      throw new HttpError(413, {
        error: 'the round does not fit in memory',
        grid: round.grid,
        ctx_len: round.ctxLen,
        bytes_per_nonce: perNonce,
        usable_bytes: Math.floor(plan.usableBytes),
        message: `one nonce of ${round.model} at grid [${round.grid.join(', ')}] needs about ${gib(perNonce)} GiB; ${gib(plan.usableBytes)} GiB is usable per device${fromBudget ? ' (--memory-budget-mb)' : ''}`,
      });
    if (plan.batchSize < want)
      this.o.log.info({ requested: want, batch_size: plan.batchSize, bytes_per_nonce: perNonce, usable_bytes: Math.floor(plan.usableBytes) }, 'batch_size reduced to what fits in memory');
    return plan.batchSize;
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
    if (!s || s.ended) return { status: IDLE, config: null, stats: null, ...(this.failedRound ? { failed_round: this.failedRound } : {}) };
    const paused = this.o.spool.diskFull ? 'disk_full' : this.o.spool.full ? 'spool_full' : null;
    return { status: GENERATING, config: { ...s.config }, stats: s.stats, round: bundleRound(s.round, s.config.block_height), paused };
  }

  /** Fails the running generation, if any (the process-wide guard's answer to an unhandled rejection). */
  failGeneration(reason: unknown): boolean {
    const s = this.session;
    if (!s || s.ended) return false;
    s.fail(reason);
    return true;
  }

  /** POST /stop: ends the generation and clears the job queue; spooled artifacts stay for delivery. */
  async stop(reason = 'stopped', opts: { keepInline?: boolean } = {}): Promise<Record<string, unknown>> {
    this.jobs.cancelAll(reason, opts);
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

  /** Where the HTTP server listens (callbacks must not point there). */
  listeningOn(address: ListenAddress): void {
    this.listening = address;
  }

  /** A request's callback base URL: absolute http(s), no credentials, not this server itself. */
  private callbackBase(url: string): string {
    const checked = checkCallbackUrl(url);
    if (this.listening && pointsAtSelf(new URL(checked), this.listening))
      throw new InputError(`url ${url} points at this server (${this.listening.host}:${this.listening.port}): callbacks must go to the decentralized-api`);
    return checked;
  }

  /** GET /calibration: the served model's calibrated stat_test, for the chain's governance to copy. */
  calibration(): Record<string, unknown> {
    const model = this.o.deployed.model;
    const file = readCalibration(model);
    const stat = file?.stat_test ?? DEFAULT_STAT_TEST;
    return {
      model,
      served_model_names: this.o.deployed.names.all,
      stat_test: { dist_threshold: stat.dist_threshold, p_mismatch: stat.p_mismatch, p_value_threshold: stat.p_value_threshold },
      source: file ? `calibration/${model}.json` : 'SPEC §10 defaults (this model has no calibration)',
      basis: file?.basis ?? null,
      created: file?.created ?? null,
      cheats: (file?.cheats ?? []).map((c) => c.name),
    };
  }

  /** Warns, once per round, when a validation's stat_test would let a calibrated cheat pass. */
  private warnIfLenient(model: string, b: GenerateBody, stat: StatTest): void {
    const key = `${b.block_hash}|${b.block_height}|${stat.dist_threshold}|${stat.p_mismatch}|${stat.p_value_threshold}`;
    if (this.warnedRounds.has(key)) return;
    const file = readCalibration(model);
    if (!file?.cheats) return;
    const passing = cheatsPassing(file.cheats, stat);
    if (passing.length === 0) return;
    if (this.warnedRounds.size >= 1000) this.warnedRounds.clear();
    this.warnedRounds.add(key);
    this.o.log.warn(
      {
        block_height: b.block_height,
        stat_test: stat,
        calibrated_stat_test: file.stat_test,
        passing_cheats: passing,
      },
      `stat_test dist_threshold ${stat.dist_threshold} lets calibrated cheats of ${model} pass validation: ${passing.map((c) => c.name).join(', ')}; ` +
        `the calibrated dist_threshold is ${file.stat_test.dist_threshold.toPrecision(4)} (calibration/${model}.json; GET /api/v1/pow/calibration)`,
    );
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

// POST /generate jobs: compute the artifacts of given nonces, or (with validation.artifacts)
// recompute and judge claimed artifacts. One FIFO queue; a job waits while a generation runs
// (Gonka's queue-until-idle) and spreads its chunks over the device workers. Results are kept for
// a while for GET /generate/{request_id}; queued jobs with a `url` also go to the spool as a
// `{url}/generated` (with request_id) or `{url}/validated` callback.
import { randomUUID } from 'node:crypto';

import type { Logger } from 'pino';

import { InputError } from '../errors.js';
import { weightsIdentity, type RoundParams } from '../round/params.js';
import { recomputeAndCompare, type ComparedClaim } from '../validation/recompute.js';
import { decideVerdict, type StatTest, type ValidatedCallback, type Verdict } from '../validation/verdict.js';
import type { DeviceWorker } from './devices.js';
import { HttpError } from './params.js';
import type { GeneratedEnvelope, Spool } from './spool.js';

export interface JobEnvelope {
  block_hash: string;
  block_height: number;
  public_key: string;
  node_id: number;
}

export interface JobSpec {
  envelope: JobEnvelope;
  round: RoundParams;
  nonces: number[];
  batchSize: number;
  url: string | null;
  wait: boolean;
  /** Claimed vectors by nonce (validation); absent for compute-only. */
  claims?: Map<number, string>;
  stat?: StatTest;
}

export type JobStatus = 'queued' | 'running' | 'completed' | 'failed';

type Artifacts = { nonce: number; vector_b64: string }[];

interface Job {
  id: string;
  spec: JobSpec;
  status: JobStatus;
  artifacts?: Artifacts;
  verdict?: Verdict;
  error?: string;
  /** The job failed because of its input (a 4xx when waited on), not the server. */
  inputError?: boolean;
  finishedAt?: number;
  abort: AbortController;
  settled: Promise<void>;
  settle: () => void;
}

export interface JobQueueOptions {
  /** Nonces in queued + running jobs (Gonka: 100 000). */
  maxQueuedNonces: number;
  /** How long finished results stay readable. */
  resultTtlMs: number;
  /** Artifacts kept in finished results, oldest results go first. */
  maxStoredArtifacts: number;
  /** Jobs known at once (queued, running and finished). */
  maxJobs: number;
}

export class JobQueue {
  private readonly jobs = new Map<string, Job>();
  private readonly queue: Job[] = [];
  private running: Job | null = null;
  private pumping = false;

  constructor(
    private readonly devices: DeviceWorker[],
    private readonly spool: Spool,
    /** Resolves when no generation runs. */
    private readonly idle: () => Promise<void>,
    private readonly options: JobQueueOptions,
    private readonly log: Logger,
    private readonly onFinished: (kind: 'compute' | 'validation', outcome: JobStatus) => void,
    /** Nonces a job's forwards computed, per device (the same /metrics counters as generation). */
    private readonly countNonces: (device: string, computed: number, dropped: number) => void = () => undefined,
  ) {}

  get depth(): { jobs: number; nonces: number } {
    const active = this.running ? [this.running, ...this.queue] : this.queue;
    return { jobs: active.length, nonces: active.reduce((s, j) => s + j.spec.nonces.length, 0) };
  }

  submit(spec: JobSpec): { id: string; settled: Promise<void> } {
    const { nonces } = this.depth;
    this.expire();
    if (this.jobs.size >= this.options.maxJobs) this.expire(true);
    if (this.jobs.size >= this.options.maxJobs)
      throw new HttpError(429, `queue full: ${this.jobs.size} jobs are queued or running (cap ${this.options.maxJobs})`);
    if (nonces + spec.nonces.length > this.options.maxQueuedNonces)
      throw new HttpError(429, `queue full: ${nonces} nonces queued, ${spec.nonces.length} more would pass the cap of ${this.options.maxQueuedNonces}`);
    let settle!: () => void;
    const settled = new Promise<void>((r) => (settle = r));
    const job: Job = { id: randomUUID(), spec, status: 'queued', abort: new AbortController(), settled, settle };
    this.jobs.set(job.id, job);
    this.queue.push(job);
    void this.pump();
    return { id: job.id, settled };
  }

  /** Gonka's job view (GET /generate/{id} and the wait=true answer); null when unknown or expired. */
  view(id: string): Record<string, unknown> | null {
    this.expire();
    const j = this.jobs.get(id);
    if (!j) return null;
    if (j.status === 'queued' || j.status === 'running') return { status: j.status, request_id: j.id };
    if (j.status === 'failed') return { status: 'failed', request_id: j.id, error: j.error };
    if (j.verdict) return { status: 'completed', request_id: j.id, ...j.verdict };
    return { status: 'completed', request_id: j.id, artifacts: j.artifacts ?? [], encoding: encoding(j.spec.round) };
  }

  failedByInput(id: string): boolean {
    return this.jobs.get(id)?.inputError === true;
  }

  statusOf(id: string): JobStatus | null {
    return this.jobs.get(id)?.status ?? null;
  }

  /** Fails every queued and running job (POST /stop clears the queue, as Gonka's does). */
  cancelAll(reason: string, opts: { keepInline?: boolean } = {}): void {
    // vLLM's PoC /stop clears its queue; a wait=true request is not in that queue and goes on.
    const kept = opts.keepInline ? this.queue.filter((j) => j.spec.wait) : [];
    for (const j of this.queue.splice(0)) if (!kept.includes(j)) this.finish(j, 'failed', reason);
    this.queue.push(...kept);
    if (this.running && !(opts.keepInline && this.running.spec.wait)) {
      this.running.abort.abort(reason);
      for (const d of this.devices) d.cancel();
    }
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        await this.idle();
        const job = this.queue.shift();
        if (!job) break;
        this.running = job;
        job.status = 'running';
        try {
          await this.run(job);
          this.finish(job, 'completed');
        } catch (e) {
          const msg = job.abort.signal.aborted ? String(job.abort.signal.reason ?? 'cancelled') : (e as Error).message;
          if (!job.abort.signal.aborted) this.log.error({ err: e, request_id: job.id }, 'generate job failed');
          job.inputError = !job.abort.signal.aborted && e instanceof InputError;
          this.finish(job, 'failed', msg);
        } finally {
          this.running = null;
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  private finish(job: Job, status: 'completed' | 'failed', error?: string): void {
    job.status = status;
    job.error = error;
    job.finishedAt = Date.now();
    const kind = job.spec.claims ? 'validation' : 'compute';
    this.onFinished(kind, status);
    if (status === 'completed' && !job.spec.wait && job.spec.url) {
      try {
        this.spoolCallback(job);
      } catch (e) {
        this.log.error({ err: e, request_id: job.id }, 'cannot spool the job callback');
      }
    }
    job.settle();
    this.expire();
  }

  private spoolCallback(job: Job): void {
    const env = job.spec.envelope;
    if (job.verdict) {
      const body: ValidatedCallback = {
        request_id: job.id,
        block_hash: env.block_hash,
        block_height: env.block_height,
        public_key: env.public_key,
        node_id: env.node_id,
        ...job.verdict,
      };
      this.spool.enqueue('validated', job.spec.url!, { ...body, log_context: { weights_identity: weightsIdentity(job.spec.round) } });
    } else {
      const e: GeneratedEnvelope = { request_id: job.id, public_key: env.public_key, block_hash: env.block_hash, block_height: env.block_height, node_id: env.node_id, encoding: encoding(job.spec.round), log_context: { weights_identity: weightsIdentity(job.spec.round) } };
      this.spool.enqueue('generated', job.spec.url!, e, (job.artifacts ?? []).map((a) => [a.nonce, a.vector_b64]));
    }
  }

  /** Runs a job's nonces in chunks of batchSize, chunks shared by the devices. */
  private async run(job: Job): Promise<void> {
    const { spec } = job;
    const signal = job.abort.signal;
    const chunks: number[][] = [];
    for (let i = 0; i < spec.nonces.length; i += spec.batchSize) chunks.push(spec.nonces.slice(i, i + spec.batchSize));
    const compared: ComparedClaim[][] = new Array(chunks.length);
    const computed: (string | null)[][] = new Array(chunks.length);
    let next = 0;
    await Promise.all(
      this.devices.map(async (device) => {
        if (next >= chunks.length) return;
        const lease = await device.acquireUnlessAborted(spec.round, signal);
        if (!lease) throw new Error('cancelled');
        try {
          const runner = device.runner(lease.model, spec.round);
          while (next < chunks.length) {
            if (signal.aborted) throw new Error('cancelled');
            const i = next++;
            const chunk = chunks[i];
            await device.exclusive(async () => {
              if (signal.aborted) throw new Error('cancelled');
              if (spec.claims) {
                const claims = chunk.map((nonce) => ({ nonce, vectorB64: spec.claims!.get(nonce)! }));
                compared[i] = await recomputeAndCompare(runner, claims, spec.stat!, chunk.length);
                this.countNonces(device.spec.id, chunk.length, 0);
              } else {
                computed[i] = (await runner.run(chunk)).map((r) => r.vectorB64);
                const dropped = computed[i].filter((v) => v === null).length;
                this.countNonces(device.spec.id, chunk.length - dropped, dropped);
              }
            });
          }
        } finally {
          lease.release();
        }
      }),
    );
    if (spec.claims) {
      job.verdict = decideVerdict(compared.flat(), spec.stat!);
    } else {
      const artifacts: Artifacts = [];
      chunks.forEach((chunk, i) => chunk.forEach((nonce, j) => {
        const v = computed[i][j];
        if (v !== null) artifacts.push({ nonce, vector_b64: v });
      }));
      job.artifacts = artifacts;
    }
  }

  /** Forgets finished results past their TTL or past the storage caps (`room`: one more job). */
  private expire(room = false): void {
    const now = Date.now();
    let stored = 0;
    let kept = this.jobs.size;
    const finished = [...this.jobs.values()].filter((j) => j.finishedAt !== undefined).sort((a, b) => b.finishedAt! - a.finishedAt!);
    for (const j of finished) {
      stored += j.artifacts?.length ?? 0;
      if (now - j.finishedAt! > this.options.resultTtlMs || stored > this.options.maxStoredArtifacts) {
        this.jobs.delete(j.id);
        kept--;
      }
    }
    // Over the job cap, the oldest finished results go first.
    for (let i = finished.length - 1; i >= 0 && (kept > this.options.maxJobs || (room && kept >= this.options.maxJobs)); i--) {
      if (this.jobs.delete(finished[i].id)) kept--;
    }
  }
}

export function encoding(round: RoundParams): { dtype: 'f16'; k_dim: number; endian: 'le' } {
  return { dtype: 'f16', k_dim: round.kDim, endian: 'le' };
}

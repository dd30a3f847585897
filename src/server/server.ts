// Assembles `dit-poc serve`: device workers, spool, metrics, service and HTTP app; and takes
// them down in order on shutdown.
import type { Logger } from 'pino';

import { makeRound } from '../round/params.js';
import { closeWorkers } from '../workers/pool.js';
import { buildApp } from './app.js';
import { DeviceWorker, type DeviceSpec } from './devices.js';
import { ServerMetrics } from './metrics.js';
import { MlNode } from './mlnode.js';
import { checkNonceFlags, type Deployed } from './params.js';
import { PocService } from './service.js';
import { fetchPost, Spool, type PostFn, type RetryPolicy } from './spool.js';

export interface ServeConfig {
  deployed: Deployed;
  devices: DeviceSpec[];
  host: string;
  port: number;
  spoolDir: string;
  spoolMaxBytes: number;
  /** Artifacts per callback at most (a segment is sealed early when it reaches this). */
  maxCallbackArtifacts: number;
  token?: string;
  defaultBatchSize: number;
  callbackIntervalMs: number;
  callbackTimeoutMs: number;
  retry: RetryPolicy;
  maxRejects: number;
  /** Failed attempts of any kind before a callback goes to dead/. */
  maxAttempts?: number;
  shutdownTimeoutMs: number;
  bodyLimit: number;
  requestTimeoutMs?: number;
  memoryBudgetBytes?: number;
  resultTtlMs: number;
  logger: Logger;
  post?: PostFn;
}

export interface RunningServer {
  url: string;
  service: PocService;
  spool: Spool;
  /** Stops generation and jobs, closes HTTP, flushes the spool within the shutdown timeout. */
  shutdown(reason: string): Promise<{ flushed: boolean }>;
}

/** A checkpoint does not change per round: it is loaded at startup (random weights come with each round's seed). */
function fixedWeights(d: Deployed): boolean {
  return d.weights !== 'random';
}

export async function startServer(c: ServeConfig): Promise<RunningServer> {
  const log = c.logger;
  checkNonceFlags(c.deployed.model, { grid: c.deployed.grid, ctxLen: c.deployed.ctxLen, kDim: c.deployed.kDim });
  // Each device worker keeps one native forward on libuv's pool; file I/O and DNS need some too.
  const uvThreads = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  if (c.devices.length + 2 > uvThreads)
    log.warn({ devices: c.devices.length, UV_THREADPOOL_SIZE: uvThreads }, `set UV_THREADPOOL_SIZE to at least ${c.devices.length + 2} before starting, or device workers will wait for each other`);
  const devices = c.devices.map((spec, i) => new DeviceWorker(i, spec));
  // Random weights come with each round's seed; fixed ones are loaded now (and again after a stop).
  const loadWeights = async () => {
    if (!fixedWeights(c.deployed)) return;
    const round = makeRound({ model: c.deployed.model, blockHash: 'startup', publicKey: 'startup', weights: c.deployed.weights });
    const t0 = performance.now();
    await Promise.all(devices.map(async (d) => (await d.acquire(round)).release()));
    log.info({ model: c.deployed.model, weights: c.deployed.weights, seconds: (performance.now() - t0) / 1000 }, 'weights loaded');
  };
  await loadWeights();

  // The metrics read the spool and the service, which are created below.
  let spool: Spool | null = null;
  let service: PocService | null = null;
  const metrics = new ServerMetrics({
    spoolDepth: () => spool?.depth ?? { segments: 0, artifacts: 0, bytes: 0 },
    spoolDiskFull: () => spool?.diskFull ?? false,
    jobQueue: () => service?.jobs.depth ?? { jobs: 0, nonces: 0 },
    generating: () => service?.generating ?? false,
    devices,
    model: c.deployed.model,
  });
  spool = new Spool({
    dir: c.spoolDir,
    flushIntervalMs: c.callbackIntervalMs,
    maxSegmentArtifacts: c.maxCallbackArtifacts,
    maxBytes: c.spoolMaxBytes,
    retry: c.retry,
    timeoutMs: c.callbackTimeoutMs,
    maxRejects: c.maxRejects,
    maxAttempts: c.maxAttempts,
    post: c.post ?? fetchPost,
    logger: log.child({ part: 'spool' }),
    events: {
      onDelivered: (kind, artifacts) => {
        metrics.callbacks.inc({ kind, outcome: 'delivered' });
        if (kind === 'generated') metrics.artifactsDelivered.inc(artifacts);
      },
      onFailure: (kind, reason) => metrics.callbackFailures.inc({ kind, reason }),
      onDeadLetter: (kind, why) => {
        metrics.callbacks.inc({ kind, outcome: 'dead' });
        metrics.deadLetters.inc({ kind, reason: why });
      },
    },
  });
  spool.start();
  const sp = spool;
  service = new PocService({
    deployed: c.deployed,
    devices,
    spool: sp,
    metrics,
    log,
    defaultBatchSize: c.defaultBatchSize,
    jobs: { maxQueuedNonces: 100_000, resultTtlMs: c.resultTtlMs, maxStoredArtifacts: 200_000, maxJobs: 10_000 },
    memoryBudgetBytes: c.memoryBudgetBytes,
  });
  const svc = service;
  // Process-wide guard: a rejection nothing handled (a bug in a batch callback, say) must not end
  // the server. It is logged and counted, and the generation running, whose state it may have
  // left inconsistent, fails visibly (/status failed_round) instead of going on.
  const onUnhandled = (reason: unknown) => {
    metrics.unhandledRejections.inc();
    const failed = svc.failGeneration(reason);
    log.error({ err: reason, generation_failed: failed }, 'unhandled promise rejection (the server stays up)');
  };
  process.on('unhandledRejection', onUnhandled);
  const node = new MlNode({
    service: svc,
    names: c.deployed.names,
    weights: c.deployed.weights,
    gpus: c.devices.flatMap((d) => (d.kind === 'gpu' ? [d.ordinal!] : [])),
    loadWeights,
    log: log.child({ part: 'mlnode' }),
  });
  const app = buildApp({ service: svc, node, metrics, logger: log, bodyLimit: c.bodyLimit, token: c.token, requestTimeoutMs: c.requestTimeoutMs });
  let address: string;
  try {
    address = await app.listen({ host: c.host, port: c.port });
    const bound = app.server.address();
    if (bound && typeof bound === 'object') svc.listeningOn({ host: c.host, port: bound.port });
  } catch (e) {
    process.off('unhandledRejection', onUnhandled);
    sp.close();
    metrics.close();
    throw e;
  }
  let down: Promise<{ flushed: boolean }> | null = null;
  return {
    url: address,
    service: svc,
    spool: sp,
    shutdown: (reason) =>
      (down ??= (async () => {
        log.info({ reason }, 'shutting down: stopping generation and jobs');
        svc.close();
        // One deadline for everything (the CLI exits hard at the shutdown timeout): stopping
        // (forwards see the cancel within ~100 ms; a generation still loading its weights is left
        // behind), then flushing the spool.
        const deadline = Date.now() + c.shutdownTimeoutMs * 0.9;
        const stopped = await Promise.race([
          svc.stop('the server is shutting down').then(() => true),
          new Promise<false>((r) => setTimeout(() => r(false), Math.max(0, deadline - Date.now())).unref()),
        ]);
        if (!stopped) log.warn('generation did not stop within the shutdown timeout');
        await Promise.race([app.close(), new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())).unref())]);
        const flushed = await sp.drain(deadline);
        const left = sp.depth;
        if (flushed) log.info('spool flushed: every callback was acknowledged');
        else log.warn({ segments: left.segments, artifacts: left.artifacts, dir: c.spoolDir }, 'spool not empty at shutdown: kept on disk, re-sent at the next start');
        sp.close();
        metrics.close();
        for (const d of devices) d.dispose();
        await closeWorkers();
        process.off('unhandledRejection', onUnhandled);
        return { flushed };
      })()),
  };
}

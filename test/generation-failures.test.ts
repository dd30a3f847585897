// How a generation survives failing batches (issue 11 items 1, 3, 4; issue 10's batch halving):
// a failed delivery ends the sprint with its error (never an unhandled rejection that ends the
// process); a batch that runs out of memory is halved and its nonces retried, never looped on;
// a batch that keeps failing fails the round visibly after MAX_CONSECUTIVE_FAILURES.
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';

import type { NativeForwardRequest, NativeModel } from '../src/engine/native.js';
import { NonceRunner } from '../src/engine/nonce-runner.js';
import { makeRound, modelInfo, type RoundParams } from '../src/round/params.js';
import { DeviceWorker } from '../src/server/devices.js';
import { GenerationSession, MAX_CONSECUTIVE_FAILURES } from '../src/server/generation.js';
import { ServerMetrics } from '../src/server/metrics.js';
import { ServedNames } from '../src/server/model-names.js';
import { PocService } from '../src/server/service.js';
import type { Spool } from '../src/server/spool.js';
import { runSprint } from '../src/sprint/sprint-runner.js';
import { closeWorkers } from '../src/workers/pool.js';

afterAll(() => closeWorkers());

const round: RoundParams = makeRound({ model: 'wan-tiny', blockHash: 'AB12', publicKey: 'pk', grid: [1, 1, 1] });

/** A model whose forward gives random finite outputs, or fails as `fail` says. */
function fakeModel(fail: (req: NativeForwardRequest) => Error | null, delayMs = 1): NativeModel & { batches: number[][] } {
  const info = modelInfo('wan-tiny');
  const perNonce = 64;
  const batches: number[][] = [];
  return {
    config: info, identity: 'fake', backend: 'cpu', threads: 1, disposed: false, batches,
    async denoise() {
      throw new Error('denoise is not used by this test');
    },
    async forward(req) {
      await new Promise((r) => setTimeout(r, delayMs));
      const err = fail(req);
      if (err) throw err;
      batches.push(req.nonces.map((n) => n.latentSeed!));
      return Float32Array.from({ length: req.nonces.length * perNonce }, (_, i) => Math.sin(i + 1) + 0.01 * req.nonces.length);
    },
    tensor: () => { throw new Error('no tensors'); },
    cancel() {},
    dispose() {},
  };
}

describe('runSprint', () => {
  it('a failing onBatch ends the sprint with its error; no unhandled rejection', async () => {
    const runner = new NonceRunner(fakeModel(() => null), round);
    let calls = 0;
    await expect(
      runSprint(runner, {
        batchSize: 2,
        nonces: [1, 2, 3, 4, 5, 6, 7, 8],
        onBatch: () => {
          if (++calls === 2) throw new Error('ENOSPC: no space left on device, write');
        },
      }),
    ).rejects.toThrow(/ENOSPC/);
    expect(calls).toBe(2); // nothing delivered after the failure
  });

  it('a failing post-processing (k_dim past the output, as before init checked it) ends the sprint with its error', async () => {
    // The round as it was accepted before k_dim was checked against the output size.
    const unchecked: RoundParams = { ...round, kDim: 65 };
    const runner = new NonceRunner(fakeModel(() => null, 50), unchecked);
    await expect(runSprint(runner, { batchSize: 1, nonces: [1, 2, 3, 4, 5, 6] })).rejects.toThrow(/smaller than k = 65/);
  });

  it('a batch out of memory is halved and its nonces retried in order, each computed once', async () => {
    const model = fakeModel((req) => (req.nonces.length > 3 ? new Error('std::bad_alloc') : null));
    const runner = new NonceRunner(model, round);
    const shrinks: Array<[number, number]> = [];
    const r = await runSprint(runner, { batchSize: 16, nonces: Array.from({ length: 20 }, (_, i) => i), onOutOfMemory: (a, b) => shrinks.push([a, b]) });
    expect(shrinks).toEqual([[16, 8], [8, 4], [4, 2]]);
    expect(r.batchSize).toBe(2);
    expect(r.artifacts.map((a) => a[0])).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(model.batches.every((b) => b.length <= 2)).toBe(true);
  });

  it('one nonce out of memory is an error, not a loop', async () => {
    const model = fakeModel(() => new Error('std::bad_alloc'));
    await expect(runSprint(new NonceRunner(model, round), { batchSize: 4, nonces: [1, 2, 3, 4, 5] })).rejects.toThrow(/bad_alloc/);
  });

  it('queues the next forward behind the running one, and a stop leaves nothing running and loses nothing computed', async () => {
    // One forward at a time, like the engine; cancel() rejects the forwards in flight.
    const info = modelInfo('wan-tiny');
    let chain = Promise.resolve();
    let inFlight = 0;
    let maxInFlight = 0;
    const cancels: Array<() => void> = [];
    const computed: number[][] = [];
    const model: NativeModel = {
      config: info, identity: 'fake', backend: 'cpu', threads: 1, disposed: false,
      async denoise() {
        throw new Error('denoise is not used by this test');
      },
      forward(req) {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        let cancelled = false;
        cancels.push(() => (cancelled = true));
        const run = chain.then(async () => {
          await new Promise((r) => setTimeout(r, 20));
          if (cancelled) throw new Error('cancelled');
          computed.push(req.nonces.map((n) => n.latentSeed!));
          return Float32Array.from({ length: req.nonces.length * 64 }, (_, i) => Math.cos(i + 1));
        });
        chain = run.then(() => undefined, () => undefined);
        return run.finally(() => inFlight--);
      },
      tensor: () => { throw new Error('no tensors'); },
      cancel() {
        cancels.splice(0).forEach((c) => c());
      },
      dispose() {},
    };
    const runner = new NonceRunner(model, round);
    const all = await runSprint(runner, { batchSize: 2, nonces: Array.from({ length: 12 }, (_, i) => i) });
    expect(all.artifacts.map((a) => a[0])).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(maxInFlight).toBe(2);
    expect(inFlight).toBe(0);

    const ac = new AbortController();
    let batches = 0;
    const r = await runSprint(runner, {
      batchSize: 2,
      nonces: Array.from({ length: 100 }, (_, i) => 100 + i),
      signal: ac.signal,
      onBatch: () => {
        if (++batches === 3) ac.abort();
      },
    });
    expect(r.stoppedBy).toBe('signal');
    expect(inFlight).toBe(0); // nothing left running after the sprint returns
    // Every batch the model completed in this sprint was delivered, in nonce order.
    const done = computed.slice(6).flat().length;
    expect(r.artifacts.map((a) => a[0])).toEqual(Array.from({ length: done }, (_, i) => 100 + i));
    expect(r.artifacts.length).toBeLessThan(100);
  });

  it('NonceRunner.run halves a batch out of memory (the /generate job path)', async () => {
    const model = fakeModel((req) => (req.nonces.length > 1 ? new Error('CUDA error: out of memory') : null));
    const runner = new NonceRunner(model, round);
    const res = await runner.run([5, 6, 7]);
    expect(res.map((x) => x.nonce)).toEqual([5, 6, 7]);
    expect(res.every((x) => x.vectorB64 !== null)).toBe(true);
  });
});

function fakeDevice(model: NativeModel): DeviceWorker {
  class FakeDevice extends DeviceWorker {
    override async acquireUnlessAborted() {
      return { model, release() {} };
    }
  }
  return new FakeDevice(0, { id: 'cpu0', kind: 'cpu', threads: 1 });
}

const fakeSpool = { full: false, diskFull: false, depth: { segments: 0, artifacts: 0, bytes: 0 }, waitForRoom: async () => undefined } as unknown as Spool;

function service(model: NativeModel): { svc: PocService; metrics: ServerMetrics } {
  const device = fakeDevice(model);
  const metrics = new ServerMetrics({ spoolDepth: () => fakeSpool.depth, jobQueue: () => ({ jobs: 0, nonces: 0 }), generating: () => false, devices: [device], model: 'wan-tiny' });
  const svc = new PocService({
    deployed: { model: 'wan-tiny', names: new ServedNames('wan-tiny', []), weights: 'random' },
    devices: [device], spool: fakeSpool, metrics, log: pino({ level: 'silent' }), defaultBatchSize: 2,
    jobs: { maxQueuedNonces: 1000, resultTtlMs: 1000, maxStoredArtifacts: 1000, maxJobs: 10 },
    memoryBudgetBytes: 2 ** 30,
  });
  return { svc, metrics };
}

const initBody = { block_hash: 'AB12', block_height: 7, public_key: 'pk', node_id: 0, node_count: 1, params: { model: 'wan-tiny', seq_len: 1, grid: [1, 1, 1] } };

async function until(pred: () => boolean, ms = 20_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

describe('PocService: a failed round shows in /status', () => {
  it('failing batches → status IDLE with failed_round {config, error}', async () => {
    const { svc, metrics } = service(fakeModel(() => new Error('engine exploded')));
    expect((await svc.initGenerate(initBody)).pow_status).toEqual({ status: 'GENERATING' });
    expect(await until(() => !svc.generating)).toBe(true);
    metrics.close();
    const st = svc.status() as { status: string; failed_round?: { error: string; config: { block_height: number } } };
    expect(st.status).toBe('IDLE');
    expect(st.failed_round?.error).toMatch(/engine exploded/);
    expect(st.failed_round?.config.block_height).toBe(7);
  });

  it('failGeneration (the process-wide guard against unhandled rejections) fails the running round', async () => {
    const { svc, metrics } = service(fakeModel(() => null));
    await svc.initGenerate(initBody);
    expect(svc.failGeneration(new Error('rejection in a batch callback'))).toBe(true);
    expect(await until(() => !svc.generating)).toBe(true);
    metrics.close();
    expect((svc.status() as { failed_round?: { error: string } }).failed_round?.error).toMatch(/rejection in a batch callback/);
    expect(svc.failGeneration(new Error('again'))).toBe(false);
  });
});

describe('GenerationSession', () => {
  it(`fails the round after ${MAX_CONSECUTIVE_FAILURES} failed batches in a row, visibly, instead of retrying forever`, async () => {
    const model = fakeModel(() => new Error('engine exploded'));
    const device = fakeDevice(model);
    const metrics = new ServerMetrics({ spoolDepth: () => ({ segments: 0, artifacts: 0, bytes: 0 }), jobQueue: () => ({ jobs: 0, nonces: 0 }), generating: () => true, devices: [device], model: 'wan-tiny' });
    const config = { block_hash: 'AB12', block_height: 1, public_key: 'pk', node_id: 0, node_count: 1, group_id: 0, n_groups: 1, seq_len: 1, k_dim: 12 };
    const session = new GenerationSession(config, round, 2, [device], null, fakeSpool, metrics, pino({ level: 'silent' }));
    const ended = await Promise.race([session.done.then(() => true), new Promise((r) => setTimeout(() => r(false), 20_000))]);
    metrics.close();
    expect(ended, 'the session kept retrying').toBe(true);
    expect(session.failure).toMatch(/engine exploded/);
    expect((await metrics.roundsFailed.get()).values[0].value).toBe(1);
    expect((await metrics.batchFailures.get()).values.find((v) => v.labels.reason === 'error')?.value).toBe(MAX_CONSECUTIVE_FAILURES);
  });
});

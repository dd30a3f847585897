// `dit-poc serve` as an attacker and an unlucky operator would try it (issue 11): schema-valid
// requests whose derived quantities cannot work are refused at init with a 4xx and the server
// stays up; requests too large for memory are refused with the numbers or run with a smaller
// batch; /stop and SIGTERM take effect inside a long forward. Real processes on loopback, a
// server without a pinned grid (so every request picks its own).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { runCli } from './helpers/cli.js';
import { ROUND, ServeProcess, sleep, waitFor } from './helpers/receiver-harness.js';

let dir: string;
let srv: ServeProcess;

// No --grid: the request's params decide it. 1 GiB for activations, whatever the machine has.
function args(spool: string, extra: string[] = []): string[] {
  return ['--model', 'wan-tiny', '--weights', 'random', '--threads', '2', '--port', '0', '--spool-dir', spool,
    '--callback-interval', '0.3', '--shutdown-timeout', '5', '--memory-budget-mb', '1024', ...extra];
}

const init = (params: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ ...ROUND, node_id: 0, node_count: 1, params: { model: 'wan-tiny', ...params }, ...extra });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-hardening-'));
  srv = await ServeProcess.start(args(join(dir, 'spool')));
});

afterAll(async () => {
  await srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function alive(s: ServeProcess): Promise<void> {
  await sleep(500);
  expect(s.proc.exitCode, 'the server exited').toBeNull();
  expect((await s.request('GET', '/health')).status).toBe(200);
}

describe('serve: rounds that cannot run are refused at init', () => {
  it('k_dim above the output size → 400 on init/generate and on /generate (wait), the server stays up', async () => {
    const bad = { grid: [1, 1, 1], seq_len: 1, k_dim: 65 };
    const a = await srv.request('POST', '/api/v1/pow/init/generate', init(bad));
    expect(a.status).toBe(400);
    expect(a.body.detail).toMatch(/k_dim 65 is larger than the 64 output values per nonce of wan-tiny at grid \[1, 1, 1\]/);
    const b = await srv.request('POST', '/api/v1/pow/generate', { ...init(bad), nonces: [1, 2], wait: true });
    expect(b.status).toBe(400);
    expect(b.body.detail).toMatch(/k_dim 65/);
    // k_dim 64 is the most this grid allows, and works.
    const ok = await srv.request('POST', '/api/v1/pow/generate', { ...init({ grid: [1, 1, 1], seq_len: 1, k_dim: 64 }), nonces: [1], wait: true });
    expect(ok.status).toBe(200);
    expect(ok.body.artifacts).toHaveLength(1);
    await alive(srv);
    expect((await srv.request('GET', '/api/v1/pow/status')).body.status).toBe('IDLE');
  });

  it('seq_len whose grid exceeds the engine → 400 at init, never GENERATING', async () => {
    const r = await srv.request('POST', '/api/v1/pow/init/generate', init({ seq_len: 262400 }));
    expect(r.status).toBe(400);
    expect(r.body.detail).toMatch(/seq_len 262400 gives grid \[1025, 16, 16\]/);
    expect((await srv.request('GET', '/api/v1/pow/status')).body.status).toBe('IDLE');
    await alive(srv);
  });

  it('node assignments follow the CLI rule: node_id < node_count, n_groups·node_count in int32', async () => {
    const a = await srv.request('POST', '/api/v1/pow/init/generate', init({ grid: [2, 4, 4], seq_len: 32 }, { node_id: 3, node_count: 3 }));
    expect(a.status).toBe(400);
    expect(a.body.detail).toMatch(/node_id 3 must be below node_count 3/);
    const b = await srv.request('POST', '/api/v1/pow/init/generate', init({ grid: [2, 4, 4], seq_len: 32 }, { node_count: 2 ** 31 - 1, n_groups: 2 }));
    expect(b.status).toBe(400);
    expect(b.body.detail).toMatch(/n_groups·node_count exceeds the int32 range/);
    expect((await srv.request('GET', '/api/v1/pow/status')).body.status).toBe('IDLE');
  });
});

describe('generate: the same checks as serve', () => {
  it('--k-dim above the output size and a grid past the engine are usage errors (exit 2), no stack', async () => {
    const base = ['generate', '--model', 'wan-tiny', '--block-hash', 'AB', '--public-key', 'pk', '--count', '1', '--out', join(dir, 'x.bundle')];
    const k = await runCli([...base, '--grid', '1,1,1', '--k-dim', '65']);
    expect(k.code).toBe(2);
    expect(k.stderr).toMatch(/k_dim 65 is larger than the 64 output values per nonce/);
    expect(k.stderr).not.toMatch(/\n\s+at /);
    const g = await runCli([...base, '--grid', '1025,1,1']);
    expect(g.code).toBe(2);
    expect(g.stderr).toMatch(/each ≤ 1024/);
  });
});

describe('serve: memory', () => {
  it('a round whose one nonce cannot fit → 413 with the numbers; a batch too large is shrunk; batch_size above 1024 is allowed', async () => {
    const huge = await srv.request('POST', '/api/v1/pow/init/generate', init({ grid: [1024, 1024, 1], seq_len: 1024 * 1024 }));
    expect(huge.status).toBe(413);
    expect(huge.body.detail.error).toBe('the round does not fit in memory');
    expect(huge.body.detail.bytes_per_nonce).toBeGreaterThan(2 ** 30);
    expect(huge.body.detail.usable_bytes).toBeLessThanOrEqual(2 ** 30);
    expect(huge.body.detail.message).toMatch(/needs about [\d.]+ GiB/);
    const hugeJob = await srv.request('POST', '/api/v1/pow/generate', { ...init({ grid: [1024, 1024, 1], seq_len: 1024 * 1024 }), nonces: [1], wait: true });
    expect(hugeJob.status).toBe(413);

    // [16,16,16] × 256 nonces is ~11 GiB of activations: run in batches that fit the 1 GiB budget.
    const big = await srv.request('POST', '/api/v1/pow/init/generate', init({ grid: [16, 16, 16], seq_len: 4096 }, { batch_size: 256 }));
    expect(big.status).toBe(200);
    // The log line is written around the answer; on a loaded machine it can arrive just after it.
    const reduced = () => srv.logLines().find((l) => l.msg === 'batch_size reduced to what fits in memory');
    await waitFor(() => reduced() !== undefined, 'batch_size reduced log line', 10_000);
    const line = reduced();
    expect(line).toBeDefined();
    expect(line!.requested).toBe(256);
    expect(line!.batch_size as number).toBeGreaterThan(0);
    expect((line!.batch_size as number) * (line!.bytes_per_nonce as number)).toBeLessThanOrEqual(2 ** 30);
    expect((await srv.request('POST', '/api/v1/pow/stop')).status).toBe(200);

    const many = await srv.request('POST', '/api/v1/pow/generate', { ...init({ grid: [2, 4, 4], seq_len: 32 }), nonces: [1, 2, 3], wait: true, batch_size: 5000 });
    expect(many.status).toBe(200);
    expect(many.body.artifacts).toHaveLength(3);
    await alive(srv);
  });
});

describe('serve: stop means stop', () => {
  // One forward at grid [16,32,32] (16 384 tokens) takes minutes on a CPU; both stops must end it
  // within seconds. The waits below are generous bounds, not speed assertions.
  const longRound = () => init({ grid: [16, 32, 32], seq_len: 16384 }, { batch_size: 1 });

  async function startLong(s: ServeProcess): Promise<void> {
    const before = s.logLines().filter((l) => l.msg === 'generation started').length;
    expect((await s.request('POST', '/api/v1/pow/init/generate', longRound())).status).toBe(200);
    await waitFor(() => s.logLines().filter((l) => l.msg === 'generation started').length > before, 'generation started', 30_000);
    await sleep(1500); // inside the first forward
  }

  it('/stop ends a forward in flight', async () => {
    await startLong(srv);
    const t0 = performance.now();
    const r = await srv.request('POST', '/api/v1/pow/stop');
    const s = (performance.now() - t0) / 1000;
    expect(r.status).toBe(200);
    expect(r.body.pow_status.status).toBe('STOPPED');
    expect(s).toBeLessThan(20);
    expect((await srv.request('GET', '/api/v1/pow/status')).body.status).toBe('IDLE');
  });

  it('the hard exit behind --shutdown-timeout does not wait for native work in flight', () => {
    // process.exit() would wait for this forward (libuv joins its thread pool at exit); the
    // addon's hardExit, which serve uses for its bound, does not.
    const script = `
      const { NonceRunner, openModel } = await import(${JSON.stringify(new URL('../dist/src/engine/nonce-runner.js', import.meta.url).href)});
      const { makeRound } = await import(${JSON.stringify(new URL('../dist/src/round/params.js', import.meta.url).href)});
      const { addon } = await import(${JSON.stringify(new URL('../dist/src/engine/native.js', import.meta.url).href)});
      const round = makeRound({ model: 'wan-tiny', blockHash: 'AB', publicKey: 'pk', grid: [16, 32, 32], weightsSeed: 's' });
      const model = await openModel({ ...round, backend: 'cpu' }, 2);
      new NonceRunner(model, round).run([1]).catch(() => {});
      setTimeout(() => addon().hardExit(3), 500);`;
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(3);
    expect((performance.now() - t0) / 1000).toBeLessThan(30);
  });

  it('SIGTERM during a forward exits within --shutdown-timeout', async () => {
    const s = await ServeProcess.start(args(join(dir, 'spool-term'), ['--shutdown-timeout', '3']));
    try {
      await startLong(s);
      const t0 = performance.now();
      s.kill('SIGTERM');
      const exit = await Promise.race([s.exited, sleep(30_000).then(() => null)]);
      const took = (performance.now() - t0) / 1000;
      expect(exit, 'still running 30 s after SIGTERM').not.toBeNull();
      expect(took).toBeLessThan(3 + 2); // the timeout, plus process start-up slack of a loaded machine
      expect(exit!.code).toBe(0);
    } finally {
      s.kill('SIGKILL');
    }
  });
});

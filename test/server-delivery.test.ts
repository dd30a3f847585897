// Nothing lost: artifacts wait in the disk spool until the receiver acknowledges them, through a
// receiver outage, a receiver answering 500s, a server killed with SIGKILL and restarted, and a
// graceful SIGTERM.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBody, Receiver, segmentFiles, serveArgs, ServeProcess, sleep, spooledNonces, waitFor } from './helpers/receiver-harness.js';

let dir: string;
let rx: Receiver;
const servers: ServeProcess[] = [];

async function serve(spool: string, extra: string[] = []): Promise<ServeProcess> {
  const s = await ServeProcess.start(serveArgs(spool, extra));
  servers.push(s);
  return s;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const sorted = (m: Map<number, string>) => [...m.keys()].sort((a, b) => a - b);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-serve-delivery-'));
  rx = await Receiver.start();
});

afterAll(async () => {
  for (const s of servers) await s.stop();
  rx?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('dit-poc serve: durable callback delivery', () => {
  it('receiver down, then failing with 500s, then back: every nonce arrives, none missing', async () => {
    const spool = join(dir, 'outage');
    const srv = await serve(spool);
    const url = rx.base('wan-tiny-outage');
    const mine = (c: { path: string }) => c.path.includes('wan-tiny-outage');
    expect((await srv.request('POST', '/api/v1/pow/init/generate', initBody(url))).status).toBe(200);
    await waitFor(() => rx.generated().filter(mine).length >= 1, 'a first callback');

    // Down for 10 s, as in the issue: refused connections, retried with capped exponential backoff.
    await rx.down();
    await sleep(10_000);
    // Undelivered artifacts are files on disk, not memory.
    expect(segmentFiles(spool).length).toBeGreaterThan(1);
    const refusedAttempts = await srv.metric('ditpoc_callback_failures_total', { reason: 'network' });
    expect(refusedAttempts).toBeGreaterThan(5);
    expect(refusedAttempts).toBeLessThan(100); // 100 ms doubling to a 400 ms cap: about 25 tries, not a busy loop

    await rx.up();
    await rx.mode('error500');
    await sleep(1500);
    await srv.request('POST', '/api/v1/pow/stop');
    await sleep(300);
    expect(await srv.metric('ditpoc_callback_failures_total', { reason: 'http_5xx' })).toBeGreaterThan(0);
    expect(rx.refused).toBeGreaterThan(0);
    const total = await srv.metric('ditpoc_nonces_total');
    const pending = await srv.metric('ditpoc_spool_artifacts');
    expect(pending).toBeGreaterThan(0);
    expect(spooledNonces(spool).length).toBe(pending);

    await rx.mode('ok');
    await waitFor(() => rx.artifacts(mine).size >= total, `all ${total} artifacts after the outage`);
    expect(sorted(rx.artifacts(mine))).toEqual(range(total));
    await waitFor(() => segmentFiles(spool).length === 0, 'an empty spool directory');
    expect(await srv.metric('ditpoc_spool_segments')).toBe(0);
  });

  it('a receiver that accepts nothing cannot make the spool grow past --spool-max-mb: generation pauses, then resumes', async () => {
    const spool = join(dir, 'full');
    const url = rx.base('wan-tiny-full');
    const mine = (c: { path: string }) => c.path.includes('wan-tiny-full');
    const srv = await serve(spool, ['--spool-max-mb', '0.01']);
    let n1 = 0;
    await rx.down();
    try {
      expect((await srv.request('POST', '/api/v1/pow/init/generate', initBody(url))).status).toBe(200);
      await waitFor(() => srv.logLines().some((l) => l.msg?.toString().startsWith('spool is full')), 'the spool to fill', 20_000);
      n1 = await srv.metric('ditpoc_nonces_total');
      await sleep(1000);
      expect(await srv.metric('ditpoc_nonces_total')).toBe(n1);
      const bytes = await srv.metric('ditpoc_spool_bytes');
      expect(bytes).toBeGreaterThanOrEqual(0.01 * 1024 * 1024);
      expect(bytes).toBeLessThan(0.01 * 1024 * 1024 + 4096); // at most one batch over the cap
      expect((await srv.request('GET', '/api/v1/pow/status')).body.status).toBe('GENERATING');
    } finally {
      await rx.up();
    }
    await waitFor(async () => (await srv.metric('ditpoc_nonces_total')) > n1, 'generation to resume once the receiver is back');
    await srv.request('POST', '/api/v1/pow/stop');
    const total = await srv.metric('ditpoc_nonces_total');
    await waitFor(() => rx.artifacts(mine).size >= total, 'every artifact');
    expect(sorted(rx.artifacts(mine))).toEqual(range(total));
  });

  it('kill -9 mid-sprint, restart on the same spool directory: the spool is delivered', async () => {
    const spool = join(dir, 'crash');
    const url = rx.base('wan-tiny-crash');
    const mine = (c: { path: string }) => c.path.includes('wan-tiny-crash');
    const first = await serve(spool);
    expect((await first.request('POST', '/api/v1/pow/init/generate', initBody(url))).status).toBe(200);
    await waitFor(() => rx.generated().filter(mine).length >= 2, 'two callbacks before the crash');
    await rx.mode('error500');
    await sleep(1200);
    first.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    await rx.mode('ok');

    const before = new Set(rx.artifacts(mine).keys());
    const left = spooledNonces(spool);
    expect(left.length).toBeGreaterThan(0);
    expect(left.filter((n) => !before.has(n)).length).toBeGreaterThan(0);

    // No init: the restarted server finds the spool and sends it to the URL recorded in it.
    const second = await serve(spool);
    expect((await second.request('GET', '/api/v1/pow/status')).body.status).toBe('IDLE');
    await waitFor(() => left.every((n) => rx.artifacts(mine).has(n)), 'every spooled artifact after the restart');
    await waitFor(() => segmentFiles(spool).length === 0, 'an empty spool directory');
    // Everything computed before the kill, except the batch in flight, reached the receiver: a dense prefix.
    const got = sorted(rx.artifacts(mine));
    expect(got).toEqual(range(got.length));
    expect(got.length).toBeGreaterThanOrEqual(Math.max(...left) + 1);
    expect(await second.metric('ditpoc_artifacts_delivered_total')).toBe(left.length);
    const { code } = await second.stop();
    expect(code).toBe(0);
  });

  it('SIGTERM stops generation, flushes the spool and exits 0; with the receiver down the rest stays on disk', async () => {
    const spool = join(dir, 'term');
    const url = rx.base('wan-tiny-term');
    const mine = (c: { path: string }) => c.path.includes('wan-tiny-term');
    const srv = await serve(spool);
    expect((await srv.request('POST', '/api/v1/pow/init/generate', initBody(url))).status).toBe(200);
    await waitFor(() => rx.generated().filter(mine).length >= 1, 'a first callback');
    const t0 = performance.now();
    const { code } = await srv.stop();
    expect(code).toBe(0);
    expect(performance.now() - t0).toBeLessThan(6000);
    const ended = srv.logLines().find((l) => l.msg === 'generation ended');
    const total = ended?.total_processed as number;
    expect(total).toBeGreaterThan(0);
    expect(sorted(rx.artifacts(mine))).toEqual(range(total));
    expect(segmentFiles(spool)).toEqual([]);
    expect(srv.logLines().some((l) => l.msg === 'spool flushed: every callback was acknowledged')).toBe(true);

    // Receiver down: the shutdown gives up after --shutdown-timeout and keeps the spool.
    const spool2 = join(dir, 'term-down');
    const url2 = rx.base('wan-tiny-term-down');
    const down = await serve(spool2, ['--shutdown-timeout', '1']);
    await rx.down();
    try {
      expect((await down.request('POST', '/api/v1/pow/init/generate', initBody(url2))).status).toBe(200);
      await sleep(800);
      const t1 = performance.now();
      expect((await down.stop()).code).toBe(0);
      expect(performance.now() - t1).toBeLessThan(4000);
      const kept = spooledNonces(spool2);
      expect(kept.length).toBeGreaterThan(0);
      expect([...kept].sort((a, b) => a - b)).toEqual(range(kept.length));
    } finally {
      await rx.up();
    }
  });
});

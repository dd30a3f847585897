// Callbacks as an attacker would aim them (issue 11 items 9–11, issue 10's dead letters): the
// kind is joined as a path segment (a query string stays a query); URLs pointing at this server
// are refused; a 3xx is a failed attempt, never followed; queued-job callbacks respect
// --max-callback-artifacts and their nonces are counted; a callback that keeps failing goes to
// dead/ after --max-attempts (vLLM's 10) and is counted in /metrics.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { callbackUrl, fetchPost, Spool } from '../src/server/spool.js';
import { initBody, Receiver, serveArgs, ServeProcess, waitFor } from './helpers/receiver-harness.js';

let dir: string;
let rx: Receiver;
let srv: ServeProcess;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-callbacks-'));
  rx = await Receiver.start();
  srv = await ServeProcess.start([...serveArgs(join(dir, 'spool'), ['--max-callback-artifacts', '10']), '--max-attempts', '3']);
});

afterAll(async () => {
  await srv?.stop();
  rx?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('callback URLs', () => {
  it('the kind is a path segment: a query string or a trailing slash of the base stays intact', () => {
    expect(callbackUrl('http://127.0.0.1:18080/api/v1/pow/stop?x=', 'generated')).toBe('http://127.0.0.1:18080/api/v1/pow/stop/generated?x=');
    expect(callbackUrl('http://h:1/v2/poc-batches/m/', 'validated')).toBe('http://h:1/v2/poc-batches/m/validated');
    expect(callbackUrl('https://h/base#frag', 'generated')).toBe('https://h/base/generated#frag');
  });

  it('a url that points at this server (any loopback spelling, its port) → 400; the node keeps working', async () => {
    const port = new URL(srv.url).port;
    for (const url of [`${srv.url}/api/v1/pow/stop?x=`, `http://localhost:${port}/x`, `http://[::1]:${port}/`, `http://2130706433:${port}/api/v1/pow/stop?x=`, `http://127.1.2.3:${port}`]) {
      const a = await srv.request('POST', '/api/v1/pow/init/generate', initBody(url));
      expect(a.status, url).toBe(400);
      expect(a.body.detail, url).toMatch(/points at this server/);
      const b = await srv.request('POST', '/api/v1/pow/generate', { ...initBody(url), nonces: [1] });
      expect(b.status, url).toBe(400);
    }
    expect((await srv.request('GET', '/api/v1/pow/status')).body.status).toBe('IDLE');
    // The same host on another port is a receiver like any other.
    const ok = await srv.request('POST', '/api/v1/pow/generate', { ...initBody(rx.base()), nonces: [1] });
    expect(ok.status).toBe(200);
  });
});

describe('redirects', () => {
  it('a 307 is a failed attempt: the body is never re-posted to the Location', async () => {
    let redirected = 0;
    let followed = 0;
    const server = http.createServer((req, res) => {
      req.resume();
      if (req.url === '/target') {
        followed++;
        res.writeHead(200).end('{}');
      } else {
        redirected++;
        res.writeHead(307, { location: '/target' }).end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const r = await fetchPost(`http://127.0.0.1:${port}/cb/generated`, '{"a":1}', 5000, new AbortController().signal);
      expect(r).toEqual({ status: 307 });
      expect(redirected).toBe(1);
      expect(followed).toBe(0);
    } finally {
      server.close();
    }
  });
});

describe('dead letters', () => {
  it(`a callback whose every attempt fails goes to dead/ after maxAttempts (default 10), not retried forever`, async () => {
    const spoolDir = join(dir, 'dl-spool');
    let attempts = 0;
    const dead: string[] = [];
    const spool = new Spool({
      dir: spoolDir, flushIntervalMs: 1000, maxSegmentArtifacts: 100, maxBytes: 1 << 30,
      retry: { initialMs: 5, maxMs: 10, factor: 2 }, timeoutMs: 1000, maxRejects: 3,
      post: async () => {
        attempts++;
        return { error: 'network', message: 'ECONNREFUSED' };
      },
      logger: pino({ level: 'silent' }),
      events: { onDeadLetter: (_kind, why) => dead.push(why) },
    });
    spool.start();
    try {
      spool.enqueue('validated', 'http://127.0.0.1:9/cb', { request_id: 'r1' });
      await waitFor(() => dead.length > 0, 'the dead letter', 10_000);
      expect(dead).toEqual(['failed']);
      expect(attempts).toBe(10);
      expect(readdirSync(join(spoolDir, 'dead')).length).toBe(1);
      expect(spool.depth.segments).toBe(0);
    } finally {
      spool.close();
    }
  });

  it('serve: --max-attempts moves a failing callback to dead/ and counts it in /metrics', async () => {
    await rx.down();
    try {
      const r = await srv.request('POST', '/api/v1/pow/generate', { ...initBody(rx.base()), nonces: [40, 41] });
      expect(r.status).toBe(200);
      await waitFor(async () => (await srv.metric('ditpoc_callbacks_dead_total', { reason: 'failed' })) >= 1, 'a dead letter', 30_000, 100);
      expect(existsSync(join(dir, 'spool', 'dead'))).toBe(true);
      expect(readdirSync(join(dir, 'spool', 'dead')).length).toBeGreaterThanOrEqual(1);
    } finally {
      await rx.up();
    }
  });
});

describe('queued-job callbacks', () => {
  it('respect --max-callback-artifacts, and /metrics counts job nonces', async () => {
    const before = await srv.metric('ditpoc_nonces_total');
    const nonces = Array.from({ length: 25 }, (_, i) => 1000 + i);
    const q = await srv.request('POST', '/api/v1/pow/generate', { ...initBody(rx.base()), nonces });
    expect(q.status).toBe(200);
    const id = q.body.request_id as string;
    await waitFor(() => rx.generated().filter((c) => c.body.request_id === id).reduce((n, c) => n + (c.body.artifacts as unknown[]).length, 0) >= 25, 'the job callbacks', 60_000, 100);
    const sizes = rx.generated().filter((c) => c.body.request_id === id).map((c) => (c.body.artifacts as unknown[]).length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(10);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(25);
    expect((await srv.metric('ditpoc_nonces_total')) - before).toBeGreaterThanOrEqual(25);
  });
});

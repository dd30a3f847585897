// POST /generate as Gonka uses it: compute-only and validation, inline (wait) and queued with
// callbacks; the bearer token.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { NonceRunner, openModel } from '../src/engine/nonce-runner.js';
import { makeRound } from '../src/round/params.js';
import { initBody, Receiver, ROUND, serveArgs, ServeProcess, waitFor } from './helpers/receiver-harness.js';

const TOKEN = 'test-token-5f2c';
let dir: string;
let rx: Receiver;
let srv: ServeProcess;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-serve-validation-'));
  rx = await Receiver.start();
  srv = await ServeProcess.start(serveArgs(join(dir, 'spool')), { DITPOC_TOKEN: TOKEN });
  srv.headers = { authorization: `Bearer ${TOKEN}` };
});

afterAll(async () => {
  await srv?.stop();
  rx?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const NONCES = [...Array.from({ length: 22 }, (_, i) => i), 1000, 2 ** 31 - 1];
type Art = { nonce: number; vector_b64: string };
let honest: Art[] = [];

function validation(artifacts: Art[], extra: Record<string, unknown> = {}) {
  return { ...initBody(null), nonces: artifacts.map((a) => a.nonce), validation: { artifacts }, batch_size: 8, ...extra };
}

describe('dit-poc serve: /generate', () => {
  it('the bearer token guards every route but /health', async () => {
    const none = await srv.request('GET', '/api/v1/pow/status', undefined, { headers: { authorization: '' } });
    expect(none.status).toBe(401);
    expect(none.body.detail).toMatch(/missing bearer token/);
    const wrong = await srv.request('GET', '/metrics', undefined, { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    expect((await srv.request('GET', '/health', undefined, { headers: { authorization: '' } })).status).toBe(200);
    expect((await srv.request('GET', '/api/v1/pow/status')).status).toBe(200);
  });

  it('compute-only, wait=true: Gonka\'s inline answer, artifacts equal to the engine\'s', async () => {
    const r = await srv.request('POST', '/api/v1/pow/generate', { ...initBody(null), nonces: NONCES, batch_size: 8, wait: true });
    expect(r.status, r.text).toBe(200);
    expect(Object.keys(r.body).sort()).toEqual(['artifacts', 'encoding', 'request_id', 'status']);
    expect(r.body.status).toBe('completed');
    expect(r.body.encoding).toEqual({ dtype: 'f16', k_dim: 12, endian: 'le' });
    honest = r.body.artifacts;
    expect(honest.map((a) => a.nonce)).toEqual(NONCES);

    const round = makeRound({ model: 'wan-tiny', blockHash: ROUND.block_hash, publicKey: ROUND.public_key, grid: [2, 4, 4] });
    const model = await openModel(round, 1);
    try {
      const own = await new NonceRunner(model, round).run(NONCES);
      expect(honest.map((a) => a.vector_b64)).toEqual(own.map((o) => o.vectorB64));
    } finally {
      model.dispose();
    }
  });

  it('validation, wait=true: an honest batch → fraud_detected false; a tampered one → true (both stat_test aliases)', async () => {
    const ok = await srv.request('POST', '/api/v1/pow/generate', validation(honest, { wait: true, stat_test: { dist_threshold: 0.1, p_mismatch: 0.02, p_value_threshold: 0.01 } }));
    expect(ok.status, ok.text).toBe(200);
    expect(Object.keys(ok.body).sort()).toEqual(['fraud_detected', 'mismatch_nonces', 'n_mismatch', 'n_total', 'p_value', 'request_id', 'status']);
    expect(ok.body).toMatchObject({ status: 'completed', n_total: NONCES.length, n_mismatch: 0, mismatch_nonces: [], p_value: 1, fraud_detected: false });

    // Half the vectors come from another participant's key, one is not even base64.
    const other = await srv.request('POST', '/api/v1/pow/generate', { ...initBody(null, { public_key: '03ffff' }), nonces: NONCES, wait: true });
    const forged = new Map((other.body.artifacts as Art[]).map((a) => [a.nonce, a.vector_b64]));
    const tampered = honest.map((a, i) => (i % 2 === 0 ? { nonce: a.nonce, vector_b64: forged.get(a.nonce)! } : a));
    tampered[1] = { nonce: tampered[1].nonce, vector_b64: '!!not base64!!' };
    const expectedBad = tampered.filter((_, i) => i % 2 === 0 || i === 1).map((a) => a.nonce);
    const bad = await srv.request('POST', '/api/v1/pow/generate', validation(tampered, { wait: true, stat_test: { dist_threshold: 0.1, p_mismatch: 0.02, fraud_threshold: 0.01 } }));
    expect(bad.status, bad.text).toBe(200);
    expect(bad.body).toMatchObject({ status: 'completed', n_total: NONCES.length, n_mismatch: expectedBad.length, fraud_detected: true });
    expect([...bad.body.mismatch_nonces].sort((a: number, b: number) => a - b)).toEqual([...expectedBad].sort((a, b) => a - b));
    expect(bad.body.p_value).toBeLessThan(0.01);
  });

  it('queued (wait=false): the verdict goes to {url}/validated and GET /generate/{id}; artifacts to {url}/generated with request_id', async () => {
    const q = await srv.request('POST', '/api/v1/pow/generate', validation(honest, { wait: false, url: rx.base(), stat_test: { p_value_threshold: 0.05 } }));
    expect(q.status, q.text).toBe(200);
    expect(Object.keys(q.body).sort()).toEqual(['queued_count', 'request_id', 'status']);
    expect(q.body).toMatchObject({ status: 'queued', queued_count: NONCES.length });
    const id = q.body.request_id as string;

    await waitFor(() => rx.validated().some((c) => c.body.request_id === id), 'the /validated callback');
    const cb = rx.validated().find((c) => c.body.request_id === id)!;
    expect(cb.path).toBe('/v2/poc-batches/wan-tiny/validated');
    expect(Object.keys(cb.body).sort()).toEqual(['block_hash', 'block_height', 'fraud_detected', 'mismatch_nonces', 'n_mismatch', 'n_total', 'node_id', 'p_value', 'public_key', 'request_id']);
    expect(cb.body).toEqual({ request_id: id, ...ROUND, node_id: 0, n_total: NONCES.length, n_mismatch: 0, mismatch_nonces: [], p_value: 1, fraud_detected: false });
    const polled = await srv.request('GET', `/api/v1/pow/generate/${id}`);
    expect(polled.body).toEqual({ status: 'completed', request_id: id, n_total: NONCES.length, n_mismatch: 0, mismatch_nonces: [], p_value: 1, fraud_detected: false });

    const c = await srv.request('POST', '/api/v1/pow/generate', { ...initBody(null), nonces: [3, 4, 5], wait: false, url: rx.base() });
    const cid = c.body.request_id as string;
    await waitFor(() => rx.generated().some((x) => x.body.request_id === cid), 'the job\'s /generated callback');
    const gen = rx.generated().find((x) => x.body.request_id === cid)!;
    expect(Object.keys(gen.body).sort()).toEqual(['artifacts', 'block_hash', 'block_height', 'encoding', 'node_id', 'public_key', 'request_id']);
    expect(gen.body.artifacts).toEqual(honest.filter((a) => [3, 4, 5].includes(a.nonce)));
    expect((await srv.request('GET', `/api/v1/pow/generate/${cid}`)).body).toMatchObject({ status: 'completed', artifacts: gen.body.artifacts });
    expect(await srv.metric('ditpoc_jobs_total', { outcome: 'completed' })).toBeGreaterThanOrEqual(5);
  });
});

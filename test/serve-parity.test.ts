// vLLM parity where a decentralized-api or the MLNode proxy would notice: negative int32 nonces,
// params.decode / params.max_tokens accepted and ignored, a running job reports `running`.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { NonceRunner, openModel } from '../src/engine/nonce-runner.js';
import { makeRound } from '../src/round/params.js';
import { initBody, PARAMS, ROUND, serveArgs, ServeProcess, sleep } from './helpers/receiver-harness.js';

let dir: string;
let srv: ServeProcess;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-parity-'));
  srv = await ServeProcess.start(serveArgs(join(dir, 'spool')));
});

afterAll(async () => {
  await srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('vLLM parity', () => {
  it('negative int32 nonces are computed (seed string "…_nonce-5") and validated', async () => {
    const nonces = [-5, -(2 ** 31), 7];
    const r = await srv.request('POST', '/api/v1/pow/generate', { ...initBody(null), nonces, wait: true });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const round = makeRound({ model: 'wan-tiny', blockHash: ROUND.block_hash, publicKey: ROUND.public_key, grid: [2, 4, 4] });
    const model = await openModel(round, 1);
    try {
      const own = await new NonceRunner(model, round).run(nonces);
      expect(r.body.artifacts).toEqual(own.map((a, i) => ({ nonce: nonces[i], vector_b64: a.vectorB64 })));
    } finally {
      model.dispose();
    }
    const v = await srv.request('POST', '/api/v1/pow/generate', { ...initBody(null), nonces, wait: true, validation: { artifacts: r.body.artifacts } });
    expect(v.body).toMatchObject({ n_total: 3, n_mismatch: 0, fraud_detected: false });
  });

  it('params.decode and params.max_tokens (newer decentralized-apis) are accepted and change nothing', async () => {
    const plain = await srv.request('POST', '/api/v1/pow/generate', { ...initBody(null), nonces: [1, 2], wait: true });
    const decode = await srv.request('POST', '/api/v1/pow/generate', { ...initBody(null, { params: { ...PARAMS, decode: true, max_tokens: 16 } }), nonces: [1, 2], wait: true });
    expect(decode.status).toBe(200);
    expect(decode.body.artifacts).toEqual(plain.body.artifacts);
    const init = await srv.request('POST', '/api/v1/inference/pow/init/generate', initBody(null, { params: { ...PARAMS, decode: false, max_tokens: 0 } }));
    expect(init.status).toBe(200);
    await srv.request('POST', '/api/v1/inference/pow/stop');
  });

  it('a queued job reports queued, then running, then completed', async () => {
    const nonces = Array.from({ length: 300 }, (_, i) => i);
    const q = await srv.request('POST', '/api/v1/pow/generate', { ...initBody(null), nonces, batch_size: 1 });
    expect(q.body).toMatchObject({ status: 'queued', queued_count: 300 });
    const seen: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const s = (await srv.request('GET', `/api/v1/pow/generate/${q.body.request_id}`)).body.status as string;
      if (seen.at(-1) !== s) seen.push(s);
      if (s === 'completed' || s === 'failed') break;
      await sleep(5);
    }
    expect(seen.filter((s) => s !== 'queued')).toEqual(['running', 'completed']);
  });
});

// Round parameters come from the chain alone: (model, seq_len, poc_stronger_rng) and SPEC
// defaults fix grid, ctx_len, k_dim, weights seed and precision. Serve flags that would change a
// nonce are refused at start-up; nodes started with different harmless flags agree on every
// artifact; /status shows the effective round in the bundle's shape.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openModel } from '../src/engine/nonce-runner.js';
import { gridForSeqLen, makeRound, weightsIdentity } from '../src/round/params.js';
import { checkNonceFlags } from '../src/server/params.js';
import { runCli } from './helpers/cli.js';
import { initBody, Receiver, ROUND, serveArgs, ServeProcess, waitFor } from './helpers/receiver-harness.js';

const BUNDLE_ROUND_KEYS = ['block_hash', 'block_height', 'ctx_len', 'grid', 'k_dim', 'model', 'precision', 'public_key', 'stronger_rng', 'weights', 'weights_identity', 'weights_seed'];

describe('round parameters derived from the chain', () => {
  it('seq_len → grid: the model\'s default grid at its token count, else [seq_len/256, 16, 16]', () => {
    expect(gridForSeqLen('wan-tiny', 32)).toEqual([2, 4, 4]);
    expect(gridForSeqLen('wan-tiny', 256)).toEqual([1, 16, 16]);
    expect(gridForSeqLen('wan2.2-t2v-a14b', 1024)).toEqual([4, 16, 16]);
    expect(gridForSeqLen('wan2.2-t2v-a14b', 2048)).toEqual([8, 16, 16]);
    expect(() => gridForSeqLen('wan2.2-t2v-a14b', 32)).toThrow(/multiple of 256/);
  });

  it('flags equal to the derived values are accepted; any other value is refused, each named', () => {
    expect(() => checkNonceFlags('wan-tiny', { grid: [2, 4, 4], ctxLen: 16, kDim: 12, precision: 'bf16', strongerRng: false })).not.toThrow();
    expect(() => checkNonceFlags('wan2.2-t2v-a14b', { grid: [8, 16, 16], ctxLen: 512 })).not.toThrow();
    const cases: Array<[Parameters<typeof checkNonceFlags>[1], RegExp]> = [
      [{ grid: [2, 8, 8] }, /--grid 2,8,8: no seq_len the chain can send means this grid/],
      [{ grid: [4, 8, 8] }, /--grid 4,8,8: seq_len 256 means grid 1,16,16/],
      [{ ctxLen: 8 }, /--ctx-len 8: wan-tiny rounds use ctx_len 16/],
      [{ kDim: 16 }, /--k-dim 16: the chain's artifacts have k_dim 12/],
      [{ weightsSeed: 'abc' }, /--weights-seed abc: random weights are seeded by each round's block hash/],
      [{ strongerRng: true }, /--stronger-rng: the chain sends poc_stronger_rng/],
      [{ precision: 'fp32' }, /--precision fp32: rounds are computed in bf16/],
    ];
    for (const [flags, msg] of cases) expect(() => checkNonceFlags('wan-tiny', flags)).toThrow(msg);
    expect(() => checkNonceFlags('wan-tiny', { ctxLen: 8, precision: 'fp32' })).toThrow(/these flags change what a nonce is.*--ctx-len 8.*--precision fp32/);
  });

  it('the weights identity is the engine\'s', async () => {
    const round = makeRound({ model: 'wan-tiny', blockHash: 'C0FFEE42', publicKey: '02a1' });
    const model = await openModel(round, 1);
    try {
      expect(weightsIdentity(round)).toBe(model.identity);
    } finally {
      model.dispose();
    }
  });
});

describe('two nodes, different flags', () => {
  let dir: string;
  let rx: Receiver;
  let pinned: ServeProcess;
  let plain: ServeProcess;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ditpoc-round-'));
    rx = await Receiver.start();
    // serveArgs pins --grid 2,4,4 (wan-tiny's seq_len 32); the other node pins nothing.
    [pinned, plain] = await Promise.all([
      ServeProcess.start(serveArgs(join(dir, 'a'), ['--ctx-len', '16', '--k-dim', '12', '--precision', 'bf16', '--batch', '5'])),
      ServeProcess.start(['--model', 'wan-tiny', '--threads', '1', '--port', '0', '--spool-dir', join(dir, 'b'), '--batch', '2', '--shutdown-timeout', '2', '--callback-interval', '0.3']),
    ]);
  });

  afterAll(async () => {
    await Promise.all([pinned?.stop(), plain?.stop()]);
    rx?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('agree on every artifact of a chain request, with and without poc_stronger_rng', async () => {
    const seen: unknown[] = [];
    for (const stronger of [false, true]) {
      const body = { ...initBody(null), nonces: [0, 1, 2, 7, 1000], wait: true, ...(stronger ? { poc_stronger_rng: true } : {}) };
      const [a, b] = await Promise.all([pinned.request('POST', '/api/v1/pow/generate', body), plain.request('POST', '/api/v1/pow/generate', body)]);
      expect(a.status, JSON.stringify(a.body)).toBe(200);
      expect(b.body.artifacts).toEqual(a.body.artifacts);
      expect(a.body.artifacts).toHaveLength(5);
      seen.push(a.body.artifacts);
    }
    // poc_stronger_rng is honoured: it changes every artifact.
    expect(seen[1]).not.toEqual(seen[0]);
  });

  it('/status shows the effective round in the bundle\'s shape, and the callbacks\' log lines the weights identity', async () => {
    expect((await plain.request('POST', '/api/v1/pow/init/generate', initBody(rx.base()))).status).toBe(200);
    const st = await plain.request('GET', '/api/v1/pow/status');
    expect(Object.keys(st.body.round).sort()).toEqual(BUNDLE_ROUND_KEYS);
    expect(st.body.round).toEqual({
      model: 'wan-tiny', block_hash: ROUND.block_hash, public_key: ROUND.public_key, block_height: ROUND.block_height,
      grid: [2, 4, 4], ctx_len: 16, k_dim: 12, stronger_rng: false, precision: 'bf16',
      weights: 'random', weights_seed: ROUND.block_hash, weights_identity: `random:${ROUND.block_hash}`,
    });
    await waitFor(() => rx.generated().length >= 2, 'two callbacks');
    await plain.request('POST', '/api/v1/pow/stop');
    await waitFor(() => plain.logLines().filter((l) => l.msg === 'callback delivered').length >= 2, 'two delivery log lines');
    for (const l of plain.logLines().filter((l) => l.msg === 'callback delivered')) expect(l.weights_identity).toBe(`random:${ROUND.block_hash}`);
    const init = plain.logLines().find((l) => l.msg === 'init/generate');
    expect(init?.round).toEqual(st.body.round);
  });

  it('a stat_test that lets calibrated cheats pass is used as sent, with one warning per round naming them; GET /calibration', async () => {
    const nonces = [3, 4, 5];
    const own = await pinned.request('POST', '/api/v1/pow/generate', { ...initBody(null), nonces, wait: true });
    const validation = { artifacts: own.body.artifacts };
    // What the decentralized-api sends when the chain has no stat_test for the model.
    const dapiDefaults = { dist_threshold: 0.4, p_mismatch: 0.1, p_value_threshold: 0.05 };
    for (let i = 0; i < 2; i++) {
      const r = await pinned.request('POST', '/api/v1/pow/generate', { ...initBody(null), nonces, wait: true, validation, stat_test: dapiDefaults });
      expect(r.body).toMatchObject({ status: 'completed', n_total: 3, n_mismatch: 0, fraud_detected: false });
    }
    await waitFor(() => pinned.logLines().some((l) => /lets calibrated cheats/.test(String(l.msg))), 'the warning');
    const warnings = pinned.logLines().filter((l) => /lets calibrated cheats/.test(String(l.msg)));
    expect(warnings).toHaveLength(1);
    const msg = String(warnings[0].msg);
    for (const cheat of ['weights in fp8 e4m3', 'weights with 1 % noise', 'attention inputs in fp8', 'timestep off by one']) expect(msg).toContain(cheat);
    expect(msg).not.toContain('one expert for every layer');
    expect(msg).toMatch(/the calibrated dist_threshold is 0\.006966 \(calibration\/wan-tiny\.json/);
    expect(warnings[0].level).toBe(40);
    // The calibrated stat_test itself warns about nothing.
    const cal = await pinned.request('GET', '/api/v1/inference/pow/calibration');
    expect(cal.body).toMatchObject({ model: 'wan-tiny', source: 'calibration/wan-tiny.json', stat_test: { dist_threshold: expect.closeTo(0.006966, 6), p_mismatch: 0.02, p_value_threshold: 0.01 } });
    expect(cal.body.cheats).toContain('ctx_len halved');
    await pinned.request('POST', '/api/v1/pow/generate', { ...initBody(null, { block_height: 4243 }), nonces, wait: true, validation, stat_test: cal.body.stat_test });
    expect(pinned.logLines().filter((l) => /lets calibrated cheats/.test(String(l.msg)))).toHaveLength(1);
  });

  it('a node whose flags would change a nonce refuses to start, exit 2', async () => {
    const r = await runCli(['serve', '--model', 'wan-tiny', '--port', '0', '--spool-dir', join(dir, 'c'), '--ctx-len', '8', '--weights-seed', 'x'], { timeoutMs: 30_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/refusing to serve: these flags change what a nonce is.*--ctx-len 8: wan-tiny rounds use ctx_len 16.*--weights-seed x/);
  });
});

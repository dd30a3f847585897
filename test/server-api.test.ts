// `dit-poc serve` driven as a Gonka decentralized-api drives its ML nodes: a receiver process
// plays the callback endpoints. Bad requests, a full init/generate → callbacks → stop cycle whose
// every artifact is validated, two interleaving device workers, and a burst of 500 requests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { decodeArtifact } from '../src/artifact/artifact.js';
import { NonceRunner, openModel } from '../src/engine/nonce-runner.js';
import { makeRound } from '../src/round/params.js';
import { initBody, PARAMS, Receiver, ROUND, serveArgs, ServeProcess, sleep, waitFor } from './helpers/receiver-harness.js';

let dir: string;
let rx: Receiver;
let srv: ServeProcess;

const GENERATED_FIELDS = ['artifacts', 'block_hash', 'block_height', 'encoding', 'node_id', 'public_key'];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-serve-api-'));
  rx = await Receiver.start();
  srv = await ServeProcess.start(serveArgs(join(dir, 'spool'), ['--body-limit', String(1 << 20)]));
});

afterAll(async () => {
  await srv?.stop();
  rx?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The same nonces recomputed here, in this process, with the engine directly. */
async function recompute(nonces: number[], publicKey = ROUND.public_key): Promise<(string | null)[]> {
  const round = makeRound({ model: 'wan-tiny', blockHash: ROUND.block_hash, publicKey, grid: [2, 4, 4] });
  const model = await openModel(round, 1);
  try {
    return (await new NonceRunner(model, round).run(nonces)).map((r) => r.vectorB64);
  } finally {
    model.dispose();
  }
}

describe('dit-poc serve: request checking', () => {
  const gen = (extra: Record<string, unknown>) => ({ ...initBody(null), nonces: [1, 2], wait: true, ...extra });

  it('malformed JSON and inconsistent values → 400; schema failures (unknown params fields, bad types, out-of-range nonces) → FastAPI\'s 422 {detail: [{type, loc, msg}]}', async () => {
    const cases: Array<[string, string, unknown, RegExp, { raw?: string }?]> = [
      ['/api/v1/pow/init/generate', 'malformed JSON', undefined, /not valid JSON/, { raw: '{"block_hash": "AB", ' }],
      ['/api/v1/pow/init/generate', 'a JSON array', undefined, /body must be object/, { raw: '[1,2]' }],
      ['/api/v1/pow/init/generate', 'unknown params field', initBody(null, { params: { ...PARAMS, scheme: 'decode' } }), /body\.params has an unknown field 'scheme'/],
      ['/api/v1/pow/init/generate', 'missing node_count', { ...ROUND, node_id: 0, params: PARAMS }, /missing the required field 'node_count'/],
      ['/api/v1/pow/init/generate', 'string block_height', initBody(null, { block_height: '4242' }), /body\.block_height must be integer/],
      ['/api/v1/pow/init/generate', 'negative node_id', initBody(null, { node_id: -1 }), /body\.node_id must be ≥ 0/],
      ['/api/v1/pow/init/generate', 'group_id ≥ n_groups', initBody(null, { group_id: 2, n_groups: 2 }), /group_id 2 must be below n_groups 2/],
      ['/api/v1/pow/init/generate', 'a non-http url', initBody('ftp://127.0.0.1/x'), /url must use http or https/],
      ['/api/v1/pow/init/generate', 'empty block_hash', initBody(null, { block_hash: '' }), /body\.block_hash must not be empty/],
      ['/api/v1/pow/generate', 'a nonce below int32', gen({ nonces: [3, -(2 ** 31) - 1] }), /body\.nonces\[1\] must be ≥ -2147483648 \(nonces are int32\)/],
      ['/api/v1/pow/generate', 'a nonce past int32', gen({ nonces: [2 ** 31] }), /body\.nonces\[0\] must be ≤ 2147483647/],
      ['/api/v1/pow/generate', 'a fractional nonce', gen({ nonces: [1.5] }), /body\.nonces\[0\] must be integer/],
      ['/api/v1/pow/generate', 'a string nonce', gen({ nonces: ['7'] }), /body\.nonces\[0\] must be integer/],
      ['/api/v1/pow/generate', 'validation nonces ≠ nonces', gen({ validation: { artifacts: [{ nonce: 1, vector_b64: 'AAAA' }] } }), /validation\.artifacts nonces must match nonces field/],
      ['/api/v1/pow/generate', 'a claimed nonce past int32', gen({ validation: { artifacts: [{ nonce: 2 ** 31, vector_b64: 'AAAA' }] } }), /body\.validation\.artifacts\[0\]\.nonce must be ≤ 2147483647/],
      ['/api/v1/pow/generate', 'p_mismatch out of range', gen({ nonces: [1], validation: { artifacts: [{ nonce: 1, vector_b64: 'AAAA' }] }, stat_test: { p_mismatch: 2 } }), /stat_test\.p_mismatch must be a number in \[0, 1\)/],
      ['/api/v1/pow/generate', 'disagreeing aliases', gen({ nonces: [1], validation: { artifacts: [{ nonce: 1, vector_b64: 'AAAA' }] }, stat_test: { fraud_threshold: 0.01, p_value_threshold: 0.05 } }), /disagree/],
      ['/api/v1/pow/generate', 'seq_len with an inconsistent grid', gen({ params: { ...PARAMS, grid: [2, 4, 4], seq_len: 33 } }), /seq_len \(33\) must equal the token count/],
    ];
    for (const [path, what, body, detail, opts] of cases) {
      const r = await srv.request('POST', path, body, opts);
      if (Array.isArray(r.body.detail)) {
        expect(r.status, what).toBe(422);
        expect(r.body.detail[0].msg, what).toMatch(detail);
        expect(Object.keys(r.body.detail[0]).sort(), what).toEqual(['loc', 'msg', 'type']);
      } else {
        expect(r.status, what).toBe(400);
        expect(r.body.detail, what).toMatch(detail);
      }
    }
    // Which answers are which, as FastAPI splits them: pydantic failures 422, the handler's own checks 400.
    const statuses = await Promise.all(cases.map(([path, , body, , opts]) => srv.request('POST', path, body, opts).then((r) => r.status)));
    expect(statuses).toEqual([400, 422, 422, 422, 422, 422, 400, 400, 422, 422, 422, 422, 422, 400, 422, 400, 400, 400]);
    const missing = await srv.request('POST', '/api/v1/pow/init/generate', { ...ROUND, node_id: 0, params: PARAMS });
    expect(missing.body.detail[0]).toEqual({ type: 'missing', loc: ['body', 'node_count'], msg: "body is missing the required field 'node_count'" });
    const nonce = await srv.request('POST', '/api/v1/pow/generate', gen({ nonces: [1, 2 ** 31] }));
    expect(nonce.body.detail[0]).toMatchObject({ type: 'less_than_equal', loc: ['body', 'nonces', 1] });
  });

  it('another model or seq_len → 409 params mismatch; huge bodies → 413; unknown ids and routes → 404; wrong media type → 415', async () => {
    const model = await srv.request('POST', '/api/v1/pow/init/generate', initBody(null, { params: { model: 'wan2.2-t2v-a14b', seq_len: 32 } }));
    expect(model.status).toBe(409);
    expect(model.body.detail).toMatchObject({ error: 'params mismatch', fields: ['model'], deployed: { model: 'wan-tiny', seq_len: 32 } });
    const seq = await srv.request('POST', '/api/v1/pow/generate', { ...initBody(null, { params: { model: 'wan-tiny', seq_len: 1024 } }), nonces: [1] });
    expect(seq.status).toBe(409);
    expect(seq.body.detail.fields).toEqual(['seq_len']);

    const huge = await srv.request('POST', '/api/v1/pow/generate', undefined, { raw: JSON.stringify({ ...initBody(null), nonces: [], pad: 'x'.repeat(2 << 20) }) });
    expect(huge.status).toBe(413);
    expect(huge.body.detail).toMatch(/larger than the limit of 1048576 bytes/);

    expect((await srv.request('GET', '/api/v1/pow/generate/no-such-id')).status).toBe(404);
    expect((await srv.request('GET', '/api/v1/pow/nothing')).status).toBe(404);
    const media = await srv.request('POST', '/api/v1/pow/init/generate', undefined, { raw: '<a/>', headers: { 'content-type': 'application/xml' } });
    expect(media.status).toBe(415);
    expect(media.body.detail).toMatch(/unsupported content type 'application\/xml': send application\/json/);
    // Gonka's stop carries no body; an empty JSON body is accepted too.
    expect((await srv.request('POST', '/api/v1/pow/stop')).status).toBe(200);
    expect((await srv.request('POST', '/api/v1/pow/stop', undefined, { raw: '' })).body).toEqual({ status: 'OK', pow_status: { status: 'STOPPED' } });
  });
});

describe('dit-poc serve: a PoC generation', () => {
  it('init/generate → callbacks every interval in Gonka\'s exact body → stop; every artifact validates', async () => {
    const init = await srv.request('POST', '/api/v1/pow/init/generate', initBody(rx.base()));
    expect(init.status, JSON.stringify(init.body)).toBe(200);
    expect(init.body).toEqual({ status: 'OK', pow_status: { status: 'GENERATING' } });

    const st = await srv.request('GET', '/api/v1/pow/status');
    expect(st.body.status).toBe('GENERATING');
    expect(st.body.config).toEqual({ ...ROUND, node_id: 0, node_count: 1, group_id: 0, n_groups: 1, seq_len: 32, k_dim: 12 });
    expect(Object.keys(st.body.stats).sort()).toEqual(['nonces_per_second', 'total_processed']);

    const again = await srv.request('POST', '/api/v1/pow/init/generate', initBody(rx.base()));
    expect(again.status).toBe(409);
    expect(again.body.detail).toBe('Already generating');
    // wait=true during a generation waits for it to end (vLLM parity), then answers inline.
    let inlineAnswered = false;
    const inline = srv.request('POST', '/api/v1/pow/generate', { ...initBody(null), nonces: [5], wait: true }).finally(() => (inlineAnswered = true));

    await waitFor(() => rx.generated().length >= 3, 'three /generated callbacks');
    const mid = await srv.request('GET', '/api/v1/pow/status');
    expect(mid.body.stats.total_processed).toBeGreaterThan(0);
    expect(mid.body.stats.nonces_per_second).toBeGreaterThan(0);

    expect(inlineAnswered, 'the inline request waits while generating').toBe(false);
    const stop = await srv.request('POST', '/api/v1/pow/stop');
    expect(stop.body).toEqual({ status: 'OK', pow_status: { status: 'STOPPED' } });
    expect((await srv.request('GET', '/api/v1/pow/status')).body).toEqual({ status: 'IDLE', config: null, stats: null });
    const answered = await inline;
    expect(answered.status).toBe(200);
    expect(answered.body).toMatchObject({ status: 'completed', artifacts: [{ nonce: 5 }] });

    // The generation's nonces: the inline job's one nonce is counted too, but sent nowhere.
    const total = (await srv.metric('ditpoc_nonces_total')) - 1;
    expect(total).toBeGreaterThan(0);
    await waitFor(() => rx.artifacts().size >= total, `all ${total} artifacts at the receiver`);
    await waitFor(async () => (await srv.metric('ditpoc_spool_segments')) === 0, 'an empty spool');
    expect(await srv.metric('ditpoc_artifacts_delivered_total')).toBeGreaterThanOrEqual(total);
    expect(await srv.metric('ditpoc_callback_failures_total')).toBe(0);

    for (const c of rx.generated()) {
      expect(c.path).toBe('/v2/poc-batches/wan-tiny/generated');
      expect(Object.keys(c.body).sort()).toEqual(GENERATED_FIELDS);
      expect(c.body).toMatchObject({ public_key: ROUND.public_key, block_hash: ROUND.block_hash, block_height: ROUND.block_height, node_id: 0 });
      expect(c.body.encoding).toEqual({ dtype: 'f16', k_dim: 12, endian: 'le' });
      for (const a of c.body.artifacts as object[]) expect(Object.keys(a).sort()).toEqual(['nonce', 'vector_b64']);
    }
    const got = rx.artifacts();
    expect([...got.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: total }, (_, i) => i));
    for (const v of got.values()) {
      const a = decodeArtifact(v, 12)!;
      expect(a).not.toBeNull();
      expect(Math.hypot(...a)).toBeCloseTo(1, 2);
    }

    // Every artifact, recomputed by the server's validation path…
    const nonces = [...got.keys()];
    const val = await srv.request('POST', '/api/v1/pow/generate', {
      ...initBody(null), nonces, batch_size: 16, wait: true,
      validation: { artifacts: nonces.map((nonce) => ({ nonce, vector_b64: got.get(nonce) })) },
      stat_test: { dist_threshold: 0.02, p_mismatch: 0.001, fraud_threshold: 0.01 },
    });
    expect(val.status, JSON.stringify(val.body)).toBe(200);
    expect(val.body).toMatchObject({ status: 'completed', n_total: total, n_mismatch: 0, mismatch_nonces: [], p_value: 1, fraud_detected: false });
    // …and a sample recomputed independently here, bit for bit.
    const sample = [0, 1, 2, 3, total - 2, total - 1];
    expect(await recompute(sample)).toEqual(sample.map((n) => got.get(n)));
  });

  it('two device workers interleave the node\'s nonces with group_id = worker index', async () => {
    const rx2 = await Receiver.start();
    const two = await ServeProcess.start(serveArgs(join(dir, 'spool-two'), ['--devices', 'cpu,cpu']));
    try {
      // node 1 of 2: the node owns the odd nonces; worker 0 takes 1, 5, 9, …, worker 1 takes 3, 7, 11, …
      const init = await two.request('POST', '/api/v1/pow/init/generate', initBody(rx2.base(), { node_id: 1, node_count: 2 }));
      expect(init.status).toBe(200);
      await waitFor(() => rx2.artifacts().size >= 40, '40 artifacts from two workers');
      await two.request('POST', '/api/v1/pow/stop');
      const total = await two.metric('ditpoc_nonces_total');
      expect(await two.metric('ditpoc_nonces_total', { device: 'cpu0' })).toBeGreaterThan(0);
      expect(await two.metric('ditpoc_nonces_total', { device: 'cpu1' })).toBeGreaterThan(0);
      await waitFor(() => rx2.artifacts().size >= total, 'every artifact');
      const got = [...rx2.artifacts().keys()].sort((a, b) => a - b);
      for (const r of [1, 3]) {
        const lane = got.filter((n) => n % 4 === r);
        expect(lane.length).toBeGreaterThan(0);
        expect(lane).toEqual(Array.from({ length: lane.length }, (_, i) => r + 4 * i));
      }
      expect(got.every((n) => n % 2 === 1)).toBe(true);
      const sample = got.slice(0, 4);
      expect(await recompute(sample)).toEqual(sample.map((n) => rx2.artifacts().get(n)));
    } finally {
      await two.stop();
      rx2.stop();
    }
  });

  it('500 concurrent status / init / generate requests are answered at once and generation keeps going', async () => {
    const before = rx.generated().length;
    expect((await srv.request('POST', '/api/v1/pow/init/generate', initBody(rx.base()))).status).toBe(200);
    await waitFor(async () => (await srv.request('GET', '/api/v1/pow/status')).body.stats?.total_processed > 0, 'the first batch');
    const n0 = await srv.metric('ditpoc_nonces_total');
    const t0 = performance.now();
    const kinds = ['status', 'status', 'status', 'init', 'queued'] as const;
    const answers = await Promise.all(
      Array.from({ length: 500 }, (_, i) => {
        const kind = kinds[i % kinds.length];
        if (kind === 'status') return srv.request('GET', '/api/v1/pow/status').then((r) => ({ kind, r }));
        if (kind === 'init') return srv.request('POST', '/api/v1/pow/init/generate', initBody(rx.base())).then((r) => ({ kind, r }));
        return srv.request('POST', '/api/v1/pow/generate', { ...initBody(null), nonces: [i, i + 1], wait: false }).then((r) => ({ kind, r }));
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const expected = { status: 200, init: 409, queued: 200 };
    for (const { kind, r } of answers) expect(r.status, `${kind}: ${r.text}`).toBe(expected[kind]);
    for (const { kind, r } of answers.filter((a) => a.kind === 'queued')) expect(r.body, kind).toMatchObject({ status: 'queued', queued_count: 2 });
    expect(seconds).toBeLessThan(20);
    await sleep(800);
    const n1 = await srv.metric('ditpoc_nonces_total');
    expect(n1).toBeGreaterThan(n0);
    const status = await srv.request('GET', '/api/v1/pow/status');
    expect(status.body.status).toBe('GENERATING');
    expect(rx.generated().length).toBeGreaterThan(before);

    // The queued jobs waited for the generation to end; /stop clears them, as Gonka's does.
    const queuedId = answers.find((a) => a.kind === 'queued')!.r.body.request_id;
    expect((await srv.request('GET', `/api/v1/pow/generate/${queuedId}`)).body).toEqual({ status: 'queued', request_id: queuedId });
    await srv.request('POST', '/api/v1/pow/stop');
    expect((await srv.request('GET', `/api/v1/pow/generate/${queuedId}`)).body).toMatchObject({ status: 'failed', request_id: queuedId });
    expect(await srv.metric('ditpoc_http_requests_total', { status: '500' })).toBe(0);
    console.log(`load: 500 requests answered in ${seconds.toFixed(2)} s; ${n1 - n0} nonces computed meanwhile`);
  });
});

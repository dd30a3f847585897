// A recorded decentralized-api epoch (test/fixtures/dapi/epoch-conversation.json: the Go client's
// bodies, in its order, without a Content-Type header) replayed against `dit-poc serve` through
// the MLNode routes only. Every answer and every callback must decode into the Go type the DAPI
// decodes it into (test/fixtures/dapi/go-types.json); callbacks go to the path the DAPI routes
// for the chain's model id.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { goDecodeErrors } from './helpers/go-json.js';
import { Receiver, serveArgs, ServeProcess, waitFor } from './helpers/receiver-harness.js';

interface Step {
  go?: string;
  do?: 'await_generated' | 'await_validated';
  min_artifacts?: number;
  count?: number;
  method?: string;
  path?: string;
  body?: string | null;
  expect?: { status: number; type?: string; match?: Record<string, unknown>; first_model?: string };
}

const conversation = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'dapi', 'epoch-conversation.json'), 'utf8')) as {
  model: string;
  seq_len: number;
  round: { block_hash: string; block_height: number; public_key: string };
  steps: Step[];
};

const hasNvidiaSmi = () => spawnSync('nvidia-smi', ['-L']).status === 0;

/** Go's url.PathEscape applied twice, as broker.encodeCallbackModelID does. */
const goPathEscapeTwice = (s: string) => encodeURIComponent(encodeURIComponent(s));

let dir: string;
let rx: Receiver;
let srv: ServeProcess;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-dapi-'));
  rx = await Receiver.start();
  srv = await ServeProcess.start(serveArgs(join(dir, 'spool'), ['--served-model-name', conversation.model]));
});

afterAll(async () => {
  await srv?.stop();
  rx?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A request as Go's http.Client sends it: the JSON bytes and no Content-Type (a nil body is no body). */
async function goRequest(method: string, path: string, body: string | null | undefined): Promise<{ status: number; json: unknown }> {
  const res = await fetch(srv.url + path, { method, body: body == null ? undefined : Buffer.from(body), signal: AbortSignal.timeout(60_000) });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, json };
}

describe('a decentralized-api epoch through the MLNode routes', () => {
  it('state → up → init/generate → callbacks → validation → stop, every answer and callback in the Go types', async () => {
    const escaped = goPathEscapeTwice(conversation.model);
    expect(escaped).toBe('dit-poc%252Fwan-tiny');
    const callbackUrl = rx.base(escaped);
    const vars: Record<string, string> = {
      $MODEL: conversation.model,
      $SEQ_LEN: String(conversation.seq_len),
      $BLOCK_HASH: conversation.round.block_hash,
      $BLOCK_HEIGHT: String(conversation.round.block_height),
      $PUBLIC_KEY: conversation.round.public_key,
      $CALLBACK_URL: callbackUrl,
    };
    const fill = (s: string) => s.replace(/\$[A-Z_]+/g, (m) => {
      if (!(m in vars)) throw new Error(`fixture placeholder ${m} has no value yet`);
      return vars[m];
    });
    const requestIds: string[] = [];

    for (const step of conversation.steps) {
      if (step.do === 'await_generated') {
        await waitFor(() => rx.artifacts().size >= step.min_artifacts!, `${step.min_artifacts} artifacts at the DAPI`, 30_000);
        // The DAPI's validator samples from what the node committed: here, twelve received artifacts.
        const got = [...rx.artifacts().entries()].sort((a, b) => a[0] - b[0]).slice(0, 12);
        vars.$SAMPLE_NONCES = JSON.stringify(got.map(([n]) => n));
        vars.$SAMPLE_ARTIFACTS = JSON.stringify(got.map(([nonce, vector_b64]) => ({ nonce, vector_b64 })));
        // A forger replays each artifact under its neighbour's nonce.
        vars.$FORGED_ARTIFACTS = JSON.stringify(got.map(([nonce], i) => ({ nonce, vector_b64: got[(i + 1) % got.length][1] })));
        continue;
      }
      if (step.do === 'await_validated') {
        await waitFor(() => rx.validated().length >= step.count!, `${step.count} /validated callbacks`, 30_000);
        continue;
      }
      const r = await goRequest(step.method!, step.path!, step.body == null ? step.body : fill(step.body));
      const what = `${step.go} (${step.method} ${step.path}) → ${JSON.stringify(r.json)}`;
      expect(r.status, what).toBe(step.expect!.status);
      if (step.expect!.type) expect(goDecodeErrors(r.json, step.expect!.type), what).toEqual([]);
      if (step.expect!.match) expect(r.json, what).toMatchObject(step.expect!.match);
      if (step.expect!.first_model) expect((r.json as { data: { id: string }[] }).data[0].id, what).toBe(fill(step.expect!.first_model));
      const id = (r.json as { request_id?: string }).request_id;
      if (step.path!.endsWith('/pow/generate') && id) requestIds.push(id);
    }

    // Every callback arrived where the DAPI's echo router sends it, and decodes into its struct.
    const generated = rx.generated();
    expect(generated.length).toBeGreaterThan(0);
    for (const c of generated) {
      expect(c.path).toBe(`/v2/poc-batches/${escaped}/generated`);
      expect(goDecodeErrors(c.body, 'GeneratedArtifactBatchV2', true)).toEqual([]);
      expect(c.body).toMatchObject({ block_hash: conversation.round.block_hash, block_height: conversation.round.block_height, public_key: conversation.round.public_key, node_id: 0 });
      for (const a of c.body.artifacts as { nonce: number; vector_b64: string }[]) {
        // post_generated_artifacts_v2_handler: base64.StdEncoding, non-empty, int32 nonce; 12 fp16 values.
        expect(Buffer.from(a.vector_b64, 'base64').length).toBe(24);
        expect(a.nonce).toBe(a.nonce | 0);
      }
    }
    const validated = rx.validated();
    expect(validated.map((c) => c.path)).toEqual([`/v2/poc-batches/${escaped}/validated`, `/v2/poc-batches/${escaped}/validated`]);
    for (const c of validated) expect(goDecodeErrors(c.body, 'ValidatedResultV2', true)).toEqual([]);
    const byId = new Map(validated.map((c) => [c.body.request_id, c.body]));
    expect(requestIds).toHaveLength(2);
    const [honest, forged] = requestIds.map((id) => byId.get(id));
    expect(honest).toMatchObject({ n_total: 12, n_mismatch: 0, mismatch_nonces: [], fraud_detected: false, public_key: conversation.round.public_key, block_height: conversation.round.block_height });
    expect(forged).toMatchObject({ n_total: 12, n_mismatch: 12, fraud_detected: true });
    // ToValidatedWeight: n_total for a valid participant, −1 for a fraud.
    const weight = (v: { fraud_detected: boolean; n_total: number }) => (v.fraud_detected || v.n_total <= 0 ? -1 : v.n_total);
    expect([weight(honest as never), weight(forged as never)]).toEqual([12, -1]);
  });

  it('PoC is refused while the node is stopped, and another model cannot be brought up', async () => {
    // The conversation ended with the node stopped.
    const init = await goRequest('POST', '/api/v1/inference/pow/init/generate', JSON.stringify({ ...conversation.round, node_id: 0, node_count: 1, params: { model: conversation.model, seq_len: conversation.seq_len } }));
    expect(init.status).toBe(503);
    expect(init.json).toEqual({ detail: 'the node is stopped: POST /api/v1/inference/up first' });
    const other = await goRequest('POST', '/api/v1/inference/up', JSON.stringify({ model: 'Wan-AI/Wan2.2-T2V-A14B', dtype: 'auto', additional_args: [] }));
    expect(other.status).toBe(409);
    expect((other.json as { detail: string }).detail).toMatch(/serves wan-tiny as 'dit-poc\/wan-tiny'.*cannot load 'Wan-AI\/Wan2.2-T2V-A14B'/);
    // Up with the registry id works too; /v1/models then lists that name first, as vLLM would.
    expect((await goRequest('POST', '/api/v1/inference/up', JSON.stringify({ model: 'wan-tiny', dtype: 'auto' }))).status).toBe(200);
    const models = (await goRequest('GET', '/v1/models', undefined)).json as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(['wan-tiny', 'dit-poc/wan-tiny']);
    // Model management a dit-poc node does not do: downloads are IGNORED (as an offline MLNode), deletes refused.
    const dl = await goRequest('POST', '/api/v1/models/download', JSON.stringify({ hf_repo: 'Qwen/Qwen3-235B-A22B-Instruct-2507-FP8', hf_commit: null }));
    expect(dl.status).toBe(202);
    expect(goDecodeErrors(dl.json, 'DownloadStartResponse')).toEqual([]);
    expect(dl.json).toMatchObject({ status: 'IGNORED' });
    expect((await fetch(srv.url + '/api/v1/models', { method: 'DELETE', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ hf_repo: 'wan-tiny' }) })).status).toBe(409);
    // Without an NVIDIA driver the driver route answers 503, as the MLNode's does without NVML.
    const driver = await goRequest('GET', '/api/v1/gpu/driver', undefined);
    if (hasNvidiaSmi()) expect(driver.json).toMatchObject({ driver_version: expect.stringMatching(/^\d+\./) });
    else expect(driver).toEqual({ status: 503, json: { detail: expect.stringMatching(/nvidia-smi/) } });
  });
});

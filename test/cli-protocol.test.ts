// generate → inspect → validate as a user runs them, the stable JSON scripts rely on, and a
// sprint interrupted by SIGINT.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { runCli } from './helpers/cli.js';

let dir: string;
const ROUND = ['--model', 'wan-tiny', '--block-hash', 'CAFE01', '--public-key', '02beef', '--threads', '2'];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('dit-poc generate / inspect / validate', () => {
  it('a sprint of N nonces, its summary, inspection and an honest verdict', async () => {
    const out = join(dir, 'b.ndjson');
    const g = await runCli(['generate', ...ROUND, '--count', '30', '--batch', '4', '--block-height', '42', '--out', out, '--json']);
    expect(g.code, g.stderr).toBe(0);
    const s = JSON.parse(g.stdout);
    expect(s).toMatchObject({ count: 30, dropped: 0, stopped_by: 'limit' });
    expect(s.root_hex).toMatch(/^[0-9a-f]{64}$/);
    expect(s.nonces_per_second).toBeGreaterThan(0);

    const i = await runCli(['inspect', out, '--json', '--artifacts']);
    expect(i.code, i.stderr).toBe(0);
    const info = JSON.parse(i.stdout);
    for (const k of ['model', 'block_hash', 'public_key', 'block_height', 'grid', 'ctx_len', 'count', 'root_hex', 'artifacts'])
      expect(info).toHaveProperty(k);
    expect(info).toMatchObject({ model: 'wan-tiny', block_hash: 'CAFE01', public_key: '02beef', block_height: 42, grid: [2, 4, 4], ctx_len: 16, count: 30, root_hex: s.root_hex, intact: true });
    expect(info.artifacts).toHaveLength(30);
    expect(Object.keys(info.artifacts[0])).toEqual(['nonce', 'vector_b64']);

    const v = await runCli(['validate', out, '--json', '--batch', '3', '--threads', '1', '--block-hash', 'CAFE01']);
    expect(v.code, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ n_total: 30, n_mismatch: 0, mismatch_nonces: [], p_value: 1, fraud_detected: false });

    const wrong = await runCli(['validate', out, '--json', '--block-hash', 'OTHER']);
    expect(wrong.code).toBe(1);
    expect(JSON.parse(wrong.stdout)).toMatchObject({ valid: false, fraud_detected: false, invalid_reason: 'round mismatch (block_hash: bundle CAFE01, validator OTHER)' });
  });

  it('node assignment: two workers of one node produce disjoint interleaved nonces', async () => {
    const nonces = [];
    for (const g of [0, 1]) {
      const out = join(dir, `g${g}.ndjson`);
      const r = await runCli(['generate', ...ROUND, '--count', '6', '--group-id', String(g), '--n-groups', '2', '--node-id', '1', '--node-count', '2', '--out', out, '--json']);
      expect(r.code, r.stderr).toBe(0);
      nonces.push(JSON.parse((await runCli(['inspect', out, '--json', '--artifacts'])).stdout).artifacts.map((a: { nonce: number }) => a.nonce));
    }
    expect(nonces[0]).toEqual([1, 5, 9, 13, 17, 21]);
    expect(nonces[1]).toEqual([3, 7, 11, 15, 19, 23]);
  });

  it('--duration stops the sprint at the deadline with a closed bundle', async () => {
    const out = join(dir, 'd.ndjson');
    const r = await runCli(['generate', ...ROUND, '--duration', '1.5s', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.stopped_by).toBe('deadline');
    expect(s.count).toBeGreaterThan(0);
    expect(s.elapsed_s).toBeLessThan(5);
    expect(JSON.parse((await runCli(['inspect', out, '--json'])).stdout).intact).toBe(true);
  });

  it('SIGINT during a sprint leaves a valid bundle of everything computed', async () => {
    const out = join(dir, 'sigint.ndjson');
    const r = await runCli(['generate', ...ROUND, '--count', '1000000', '--batch', '2', '--out', out, '--json'], {
      onSpawn: (p) => setTimeout(() => p.kill('SIGINT'), 2500),
    });
    expect(r.code).toBe(130);
    const s = JSON.parse(r.stdout);
    expect(s.stopped_by).toBe('signal');
    expect(s.count).toBeGreaterThan(0);
    const info = JSON.parse((await runCli(['inspect', out, '--json'])).stdout);
    expect(info).toMatchObject({ intact: true, count: s.count, interrupted: true });
    const v = await runCli(['validate', out, '--json', '--samples', '20']);
    expect(JSON.parse(v.stdout)).toMatchObject({ n_mismatch: 0, fraud_detected: false });
  });

  it('usage errors exit 2', async () => {
    const r = await runCli(['generate', ...ROUND, '--out', join(dir, 'x.ndjson')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--count N, --duration T or --nonces/);
    const d = await runCli(['generate', ...ROUND, '--duration', 'soon', '--out', join(dir, 'y.ndjson')]);
    expect(d.code).toBe(2);
    const v = await runCli(['validate', join(dir, 'missing.ndjson')]);
    expect(v.code).toBe(2);
    expect(v.stderr).toMatch(/cannot read bundle/);
  });
});

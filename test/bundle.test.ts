// The proof bundle file: written batch by batch, read back strictly, repaired after a crash.
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readBundle } from '../src/bundle/reader.js';
import { BundleWriter } from '../src/bundle/writer.js';
import type { BundleRound } from '../src/bundle/format.js';
import { runCli } from './helpers/cli.js';
import { makeBundle } from './helpers/bundles.js';

let dir: string;
const round: BundleRound = {
  model: 'wan-tiny', block_hash: 'AB', public_key: '02', block_height: 7, grid: [2, 4, 4], ctx_len: 16, k_dim: 12,
  stronger_rng: false, precision: 'bf16', weights: 'random', weights_seed: 'AB', weights_identity: 'random:AB',
};
const node = { node_id: 0, node_count: 1, group_id: 0, n_groups: 1 };
const vec = (i: number) => Buffer.alloc(24, i).toString('base64');

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-bundle-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('bundle writer and reader', () => {
  it('round-trips header, batches, dropped nonces and the end record', async () => {
    const p = join(dir, 'rt.ndjson');
    const w = BundleWriter.create(p, round, node);
    w.appendBatch([[0, vec(0)], [1, vec(1)]], [2]);
    w.appendBatch([[3, vec(3)]], []);
    await w.finish({ count: 3, root_hex: 'a'.repeat(64), dropped: 1, elapsed_s: 1, nonces_per_second: 4, interrupted: false });
    const b = await readBundle(p);
    expect(b.header.round).toEqual(round);
    expect(b.artifacts.map((a) => a.nonce)).toEqual([0, 1, 3]);
    expect(b.dropped).toEqual([2]);
    expect(b.end).toMatchObject({ count: 3, root_hex: 'a'.repeat(64) });
    expect(() => BundleWriter.create(p, round, node)).toThrow(/already exists/);
  });

  it('rejects truncated, reordered and malformed files with clear messages', async () => {
    const p = join(dir, 'ok.ndjson');
    const w = BundleWriter.create(p, round, node);
    w.appendBatch([[0, vec(0)]], []);
    w.appendBatch([[1, vec(1)]], []);
    await w.finish({ count: 2, root_hex: 'b'.repeat(64), dropped: 0, elapsed_s: 1, nonces_per_second: 2, interrupted: false });
    const lines = readFileSync(p, 'utf8').trim().split('\n');
    const variant = async (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return readBundle(join(dir, name));
    };
    await expect(variant('trunc', lines.slice(0, 2).join('\n') + '\n')).rejects.toThrow(/truncated: no end record after 1 artifacts/);
    await expect(variant('torn', lines.slice(0, 3).join('\n') + '\n' + lines[3].slice(0, 10))).rejects.toThrow(/truncated/);
    await expect(variant('order', [lines[0], lines[2], lines[1], lines[3]].join('\n'))).rejects.toThrow(/batch seq 1, expected 0/);
    await expect(variant('after-end', [...lines, lines[1]].join('\n'))).rejects.toThrow(/after the end record/);
    await expect(variant('header', lines.slice(1).join('\n'))).rejects.toThrow(/bad header/);
    await expect(variant('version', lines[0].replace('"version":1', '"version":9') + '\n' + lines.slice(1).join('\n'))).rejects.toThrow(/version 9 is not supported/);
    await expect(variant('nonce', lines.join('\n').replace('[[1,', '[[-1,'))).rejects.toThrow(/nonce -1 is not a non-negative int32/);
    await expect(variant('b64', lines.join('\n').replace(vec(1), 'not base64!'))).rejects.toThrow(/is not \[nonce, base64\]/);
    await expect(variant('middle', [lines[0], '{garbage', lines[1], lines[3]].join('\n'))).rejects.toThrow(/after a damaged line/);
    await expect(variant('empty', '')).rejects.toThrow(/empty file/);
    await expect(readBundle(join(dir, 'missing.ndjson'))).rejects.toThrow(/cannot read bundle/);
  });

  it('a crashed sprint (no end record, torn last line) is repaired by inspect --repair and then validates', async () => {
    const full = join(dir, 'full.ndjson');
    await makeBundle(full, { count: 12, batch: 4 });
    const lines = readFileSync(full, 'utf8').trim().split('\n');
    const crashed = join(dir, 'crashed.ndjson');
    writeFileSync(crashed, lines.slice(0, 3).join('\n') + '\n');  // header + 2 of 3 batches
    appendFileSync(crashed, lines[3].slice(0, 25));               // torn third batch
    const inspect = await runCli(['inspect', crashed, '--json']);
    expect(inspect.code).toBe(1);
    expect(JSON.parse(inspect.stdout)).toMatchObject({ intact: false, artifacts_held: 8, count: null });
    const repaired = join(dir, 'repaired.ndjson');
    const repair = await runCli(['inspect', crashed, '--repair', repaired]);
    expect(repair.code, repair.stderr).toBe(0);
    const r = JSON.parse((await runCli(['inspect', repaired, '--json'])).stdout);
    expect(r).toMatchObject({ intact: true, count: 8, interrupted: true });
    const v = await runCli(['validate', repaired, '--json']);
    expect(v.code, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ n_total: 8, n_mismatch: 0, fraud_detected: false });
  });
});

// The validator decides the round (issue 11, items 7 and 8): a header that disagrees with the
// round the validator trusts (its flags or a round file) is a round mismatch, other weights are
// a round mismatch and not fraud, and a p-value that underflows is not printed as 0.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { bundleRound, type BundleRound } from '../src/bundle/format.js';
import { makeRound } from '../src/round/params.js';
import { formatPValue } from '../src/validation/verdict.js';
import { mergeRoundFields, readRoundFile, resolveValidatorRound, weightsMismatch } from '../src/validation/trusted-round.js';
import { rewriteArtifacts } from './helpers/bundles.js';
import { runCli } from './helpers/cli.js';

let dir: string;
const KEYS = ['--block-hash', 'CAFE01', '--public-key', '02beef'];
const ROUND = ['--model', 'wan-tiny', ...KEYS];
const GEN = [...ROUND, '--threads', '2', '--count', '12', '--batch', '4'];
let small: string, seeded: string, honest: string;

const header: BundleRound = {
  model: 'wan-tiny', block_hash: 'CAFE01', public_key: '02beef', block_height: 5, grid: [2, 4, 4], ctx_len: 16, k_dim: 12,
  stronger_rng: false, precision: 'bf16', weights: 'random', weights_seed: 'CAFE01', weights_identity: 'random:CAFE01',
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-vround-'));
  small = join(dir, 'small.ndjson');
  seeded = join(dir, 'seeded.ndjson');
  honest = join(dir, 'honest.ndjson');
  // A cheap bundle: 1 token, 1 text token, 2 artifact values, as a cheating prover would compute.
  for (const [out, extra] of [[small, ['--grid', '1,1,1', '--ctx-len', '1', '--k-dim', '2']], [seeded, ['--weights-seed', 'X']], [honest, []]] as const) {
    const g = await runCli(['generate', ...GEN, ...extra, '--out', out, '--json']);
    expect(g.code, g.stderr).toBe(0);
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('validate: the round comes from the validator', () => {
  it('a bundle computed at a cheaper grid, ctx_len and k_dim is a round mismatch naming each field (flags)', async () => {
    const v = await runCli(['validate', small, ...ROUND, '--json']);
    expect(v.code, v.stderr).toBe(1);
    const r = JSON.parse(v.stdout);
    expect(r).toMatchObject({ valid: false, fraud_detected: false, n_total: 0, round_source: 'flags' });
    expect(r.invalid_reason).toBe('round mismatch (grid: bundle [1,1,1], validator [2,4,4]; ctx_len: bundle 1, validator 16; k_dim: bundle 2, validator 12)');
    const t = await runCli(['validate', small, ...ROUND]);
    expect(t.code).toBe(1);
    expect(t.stdout).toMatch(/INVALID: round mismatch \(grid: bundle \[1,1,1\]/);
    expect(t.stdout).not.toMatch(/unverified/);
  });

  it('the same from a round file in the /status shape, and from a saved /status body', async () => {
    const file = join(dir, 'round.json');
    writeFileSync(file, JSON.stringify({ ...header, block_height: 100 }));
    const v = await runCli(['validate', small, '--round', file, '--json']);
    expect(v.code, v.stderr).toBe(1);
    const r = JSON.parse(v.stdout);
    expect(r.round_source).toBe('file');
    expect(r.invalid_reason).toBe('round mismatch (block_height: bundle 0, validator 100; grid: bundle [1,1,1], validator [2,4,4]; ctx_len: bundle 1, validator 16; k_dim: bundle 2, validator 12)');
    const status = join(dir, 'status.json');
    writeFileSync(status, JSON.stringify({ status: 'IDLE', round: { ...header, block_height: 7 } }));
    const s = JSON.parse((await runCli(['validate', honest, '--round', status, '--json'])).stdout);
    expect(s).toMatchObject({ round_source: 'file', valid: false, invalid_reason: 'round mismatch (block_height: bundle 0, validator 7)' });
    // The honest bundle against its own round: valid.
    writeFileSync(status, JSON.stringify({ round: { ...header, block_height: 0 } }));
    const ok = await runCli(['validate', honest, '--round', status, '--json', '--samples', '6']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ valid: true, fraud_detected: false, n_total: 6, round_source: 'file' });
  });

  it('without a trusted round the verdict says the parameters are the prover\'s, unverified', async () => {
    const j = await runCli(['validate', small, '--json', ...KEYS]);
    expect(j.code, j.stderr).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject({ valid: true, round_source: 'bundle' });
    const t = await runCli(['validate', small]);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/round parameters taken from the bundle header \(the prover\), unverified/);
    // Given fields are checked even then.
    const k = JSON.parse((await runCli(['validate', small, '--json', '--k-dim', '12'])).stdout);
    expect(k).toMatchObject({ valid: false, round_source: 'bundle', invalid_reason: 'round mismatch (k_dim: bundle 2, validator 12)' });
  });

  it('bad round files and contradicting flags are usage errors', async () => {
    const file = join(dir, 'partial.json');
    writeFileSync(file, JSON.stringify({ model: 'wan-tiny', block_hash: 'CAFE01', public_key: '02beef', grid: [2, 4, 4], ctx_len: 16 }));
    const a = await runCli(['validate', honest, '--round', file]);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/round file .*partial\.json: k_dim is required/);
    writeFileSync(file, JSON.stringify({ ...header, grid: [2, 4] }));
    expect((await runCli(['validate', honest, '--round', file])).stderr).toMatch(/grid must be \[F, H, W\]/);
    writeFileSync(file, JSON.stringify(header));
    const c = await runCli(['validate', honest, '--round', file, '--k-dim', '4']);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/--k-dim 4 contradicts k_dim 12 in the round file/);
    const m = await runCli(['validate', honest, '--model', 'wan-tiny', '--block-hash', 'CAFE01']);
    expect(m.code).toBe(2);
    expect(m.stderr).toMatch(/needs public_key \(--public-key\)/);
    expect(m.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('validate: other weights are a round mismatch, not fraud', () => {
  it('a bundle made with --weights-seed X, validated without it', async () => {
    const t = await runCli(['validate', seeded, ...ROUND]);
    expect(t.code).toBe(1);
    expect(t.stdout).toMatch(/INVALID: round mismatch \(weights: bundle random:X, validator random:CAFE01\)/);
    expect(t.stdout).not.toMatch(/FRAUD/);
    const j = JSON.parse((await runCli(['validate', seeded, '--json'])).stdout);
    expect(j).toMatchObject({ valid: false, fraud_detected: false, round_source: 'bundle', invalid_reason: 'round mismatch (weights: bundle random:X, validator random:CAFE01)' });
    const ok = await runCli(['validate', seeded, ...ROUND, '--weights-seed', 'X', '--json', '--samples', '6']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ valid: true, fraud_detected: false });
  });

  it('weightsMismatch: random seeds must agree; two local checkpoint paths are not compared', () => {
    expect(weightsMismatch('random:A', 'random:A')).toBeNull();
    expect(weightsMismatch('random:A', 'random:B')).toBe('weights: bundle random:A, validator random:B');
    expect(weightsMismatch('random:A+fp8', 'random:A')).toMatch(/bundle random:A\+fp8/);
    expect(weightsMismatch('/ckpt/a', 'random:A')).toMatch(/bundle \/ckpt\/a, validator random:A/);
    expect(weightsMismatch('/prover/ckpt', '/validator/ckpt')).toBeNull();
  });
});

describe('p-values that underflow', () => {
  it('print as "< 1e-300" in the text and stay numeric in JSON', async () => {
    const forged = join(dir, 'forged.ndjson');
    // Every artifact replaced by another valid-length vector, honestly committed: all mismatch.
    rewriteArtifacts(honest, forged, (a) => a.map(([n, v]) => [n, Buffer.alloc(Buffer.from(v, 'base64').length, 0x3c).toString('base64')]), true);
    const args = ['validate', forged, ...ROUND, '--p-mismatch', '1e-30', '--samples', '12'];
    const t = await runCli(args);
    expect(t.code).toBe(1);
    expect(t.stdout).toMatch(/FRAUD: 12\/12 mismatches .*p-value < 1e-300/);
    const j = JSON.parse((await runCli([...args, '--json'])).stdout);
    expect(typeof j.p_value).toBe('number');
    expect(j.p_value).toBeLessThan(1e-300);
    expect(j).toMatchObject({ fraud_detected: true, valid: true, n_mismatch: 12 });
  });

  it('formatPValue', () => {
    expect(formatPValue(0)).toBe('< 1e-300');
    expect(formatPValue(5e-324)).toBe('< 1e-300');
    expect(formatPValue(1e-300)).toBe('1.000e-300');
    expect(formatPValue(0.5)).toBe('5.000e-1');
  });
});

describe('round resolution', () => {
  it('flags default grid, ctx_len, k_dim and stronger_rng per SPEC §4 and compare them all', () => {
    const r = resolveValidatorRound(header, { model: 'wan-tiny', block_hash: 'CAFE01', public_key: '02beef' }, 'flags');
    expect(r.mismatches).toEqual([]);
    expect(r.round).toMatchObject({ grid: [2, 4, 4], ctxLen: 16, kDim: 12, strongerRng: false, weightsSeed: 'CAFE01', precision: 'bf16' });
    expect(r.blockHeight).toBe(5);
    const s = resolveValidatorRound({ ...header, stronger_rng: true, model: 'other' }, { model: 'wan-tiny', block_hash: 'CAFE01', public_key: '02beef' }, 'flags');
    expect(s.mismatches).toEqual(['model: bundle other, validator wan-tiny', 'stronger_rng: bundle true, validator false']);
  });

  it('the bundle source takes the header and checks only what is given', () => {
    const r = resolveValidatorRound({ ...header, grid: [1, 1, 1], precision: 'fp32' }, { block_hash: 'CAFE01' }, 'bundle');
    expect(r.mismatches).toEqual([]);
    expect(r.round).toMatchObject({ grid: [1, 1, 1], precision: 'fp32' });
    expect(resolveValidatorRound(header, { block_hash: 'OTHER' }, 'bundle').mismatches).toEqual(['block_hash: bundle CAFE01, validator OTHER']);
  });

  it('the round /status shows (bundleRound, the header\'s own shape) reads back with no mismatch', () => {
    const file = join(dir, 'status-round.json');
    const shown = bundleRound(makeRound({ model: 'wan-tiny', blockHash: 'CAFE01', publicKey: '02beef' }), 5);
    writeFileSync(file, JSON.stringify({ status: 'GENERATING', round: shown }));
    const r = resolveValidatorRound(shown, readRoundFile(file), 'file');
    expect(r.mismatches).toEqual([]);
    expect(r.blockHeight).toBe(5);
    expect(weightsMismatch(shown.weights_identity, 'random:CAFE01')).toBeNull();
  });

  it('round files: types checked, weights_identity informational, flags fill gaps', () => {
    const file = join(dir, 'rf.json');
    writeFileSync(file, JSON.stringify({ ...header, block_height: undefined, weights_identity: 'random:whatever' }));
    const f = readRoundFile(file);
    expect(f).toMatchObject({ model: 'wan-tiny', grid: [2, 4, 4], k_dim: 12, weights_seed: 'CAFE01' });
    expect(f).not.toHaveProperty('weights_identity');
    expect(mergeRoundFields(f, { block_height: 9, k_dim: 12 }, file)).toMatchObject({ block_height: 9, k_dim: 12 });
    writeFileSync(file, JSON.stringify({ ...header, ctx_len: '16' }));
    expect(() => readRoundFile(file)).toThrow(/ctx_len must be a non-negative integer, got "16"/);
    writeFileSync(file, '{nope');
    expect(() => readRoundFile(file)).toThrow(/cannot read round file/);
  });
});

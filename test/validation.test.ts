// Validation end to end on wan-tiny (SPEC §10): honest bundles pass under another batch size
// and thread count; every kind of tampering and every cheating prover is caught.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readBundle } from '../src/bundle/reader.js';
import type { Deviations } from '../src/engine/deviations.js';
import type { NativeModel } from '../src/engine/native.js';
import { NonceRunner, openModel } from '../src/engine/nonce-runner.js';
import { validateBundle, type BundleVerdict } from '../src/validation/validator.js';
import { statTestForModel } from '../src/calibration/calibration-file.js';
import { closeWorkers } from '../src/workers/pool.js';
import { makeBundle, readRecords, rewriteArtifacts, tinyRound, writeRecords } from './helpers/bundles.js';

let dir: string;
let validatorModel: NativeModel;
let honest: string;

async function validate(path: string, samples = 200, batch = 3): Promise<BundleVerdict> {
  const bundle = await readBundle(path);
  return validateBundle(bundle, new NonceRunner(validatorModel, tinyRound()), {
    validatorKey: 'validator-1', samplingHash: 'fresh-hash', nSamples: samples, stat: statTestForModel('wan-tiny'), batchSize: batch,
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-val-'));
  honest = join(dir, 'honest.ndjson');
  await makeBundle(honest, { count: 60, batch: 4, threads: 2 });
  // The validator runs with other threads and batch size than the prover.
  validatorModel = await openModel(tinyRound(), 1);
});

afterAll(async () => {
  validatorModel.dispose();
  await closeWorkers();
  rmSync(dir, { recursive: true, force: true });
});

describe('honest bundles', () => {
  it('validate with no mismatch under another batch size and thread count', async () => {
    const v = await validate(honest);
    expect(v).toMatchObject({ valid: true, n_total: 60, n_mismatch: 0, fraud_detected: false, p_value: 1 });
    expect(Object.keys(v)).toEqual(expect.arrayContaining(['n_total', 'n_mismatch', 'mismatch_nonces', 'p_value', 'fraud_detected']));
  });

  it('a sample smaller than the count checks that many distinct indices', async () => {
    const v = await validate(honest, 25);
    expect(v.n_total).toBe(25);
    expect(v.fraud_detected).toBe(false);
  });
});

describe('tampering is caught', () => {
  const tampered = (name: string) => join(dir, `${name}.ndjson`);

  it('a changed artifact byte fails its proof', async () => {
    rewriteArtifacts(honest, tampered('byte'), (a) => {
      const v = Buffer.from(a[7][1], 'base64');
      v[3] ^= 0x01;
      a[7] = [a[7][0], v.toString('base64')];
      return a;
    }, false);
    const v = await validate(tampered('byte'));
    expect(v.valid).toBe(false);
    expect(v.fraud_detected).toBe(true);
    expect(v.invalid_reason).toMatch(/proof for dense index \d+ \(nonce \d+\) fails/);
  });

  it('swapped nonces fail their proofs', async () => {
    rewriteArtifacts(honest, tampered('swap'), (a) => {
      [a[3][0], a[4][0]] = [a[4][0], a[3][0]];
      return a;
    }, false);
    const v = await validate(tampered('swap'));
    expect(v.valid).toBe(false);
    expect(v.invalid_reason).toMatch(/proof .* fails/);
  });

  it('a forged count is caught', async () => {
    const recs = readRecords(honest);
    recs[recs.length - 1].count = 61;
    writeRecords(tampered('count'), recs);
    const v = await validate(tampered('count'));
    expect(v.valid).toBe(false);
    expect(v.invalid_reason).toMatch(/commitment claims 61, the bundle holds 60|proof .* fails/);
  });

  it('a duplicated nonce is refused', async () => {
    rewriteArtifacts(honest, tampered('dup'), (a) => [...a, [a[5][0], a[6][1]]], false);
    const v = await validate(tampered('dup'));
    expect(v.valid).toBe(false);
    expect(v.invalid_reason).toMatch(/duplicate nonce/);
  });

  it('a porous nonce set (max nonce / count ≥ 100) is refused', async () => {
    const porous = tampered('porous');
    await makeBundle(porous, { nonces: Array.from({ length: 12 }, (_, i) => i * 500) });
    const v = await validate(porous);
    expect(v.valid).toBe(false);
    expect(v.invalid_reason).toMatch(/porosity/);
  });

  it('a truncated bundle is rejected when read', async () => {
    const text = readFileSync(honest, 'utf8');
    writeFileSync(tampered('trunc'), text.slice(0, Math.floor(text.length * 0.6)));
    await expect(readBundle(tampered('trunc'))).rejects.toThrow(/truncated: no end record/);
  });

  it('NaN and wrong-length artifacts, honestly committed, are counted mismatches', async () => {
    const nan = Buffer.alloc(24);
    nan.writeUInt16LE(0x7e00, 0);
    rewriteArtifacts(honest, tampered('nan'), (a) => {
      a[2] = [a[2][0], nan.toString('base64')];
      a[9] = [a[9][0], Buffer.alloc(10, 1).toString('base64')];
      return a;
    }, true);
    const v = await validate(tampered('nan'));
    expect(v.valid).toBe(true);
    expect(v.n_mismatch).toBe(2);
    expect(v.mismatch_nonces.sort((x, y) => x - y)).toEqual([2, 9]);
  });

  it('a bundle computed for another block hash mismatches everywhere', async () => {
    const other = tampered('other-block');
    await makeBundle(other, { count: 30, round: tinyRound({ blockHash: 'ANOTHER-BLOCK', weightsSeed: tinyRound().weightsSeed }) });
    // Pretend it is for this round: same header, other computation.
    const recs = readRecords(other);
    (recs[0].round as Record<string, unknown>).block_hash = tinyRound().blockHash;
    writeRecords(other, recs);
    const v = await validate(other);
    expect(v.valid).toBe(true);
    expect(v.n_mismatch).toBe(30);
    expect(v.fraud_detected).toBe(true);
  });
});

// Thresholds come from calibration/wan-tiny.json (dit-poc calibrate), as `dit-poc validate` uses.
describe('cheating provers are caught at n = 200 (wan-tiny)', () => {
  const cheats: [string, Deviations][] = [
    ['one expert for every layer', { singleExpert: 0 }],
    ['one block skipped', { skipLayers: [2] }],
    ['weights perturbed by 1 % noise', { weightTransform: 'noise:0.01:cheat' }],
    ['wrong Householder seed', { householderBlockHash: 'WRONG' }],
  ];
  for (const [name, deviations] of cheats) {
    it(name, async () => {
      const path = join(dir, `cheat-${name.replace(/\W+/g, '-')}.ndjson`);
      await makeBundle(path, { count: 220, deviations, batch: 8 });
      const v = await validate(path, 200, 8);
      console.log(`cheat "${name}": ${v.n_mismatch}/${v.n_total} mismatches (${(100 * v.mismatch_rate).toFixed(1)} %), p-value ${v.p_value.toExponential(2)}, median distance ${v.distances.p50?.toFixed(3)}`);
      expect(v.valid).toBe(true);
      expect(v.n_total).toBe(200);
      expect(v.fraud_detected).toBe(true);
    });
  }
});

// Hostile checkpoints through the binding (issue 11, item 13): a safetensors header under the
// 100 MB limit that would cost gigabytes to parse fails at a bound on its work, and mutated
// headers and index files (a bounded fuzz) give a rejected promise or a model, never a crash.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import seedrandom from 'seedrandom';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { addon } from '../src/engine/native.js';
import { loadTiny } from './helpers/native-model.js';
import { writeSafetensors, type StTensor } from './helpers/safetensors-writer.js';

let dir: string;
let good: string;
const SHARD = 'diffusion_pytorch_model-00001-of-00002.safetensors';
const INDEX = 'diffusion_pytorch_model.safetensors.index.json';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-hostile-'));
  good = join(dir, 'good');
  const source = await loadTiny(1, 'hostile-source');
  try {
    ['high_noise_model', 'low_noise_model'].forEach((folder, expert) => {
      const d = join(good, folder);
      mkdirSync(d, { recursive: true });
      const all: [string, StTensor][] = addon().tensorSpecs('wan-tiny').map((s) => [s.name, { shape: s.shape, values: source.tensor(expert, s.name) }]);
      const half = Math.ceil(all.length / 2);
      const weightMap: Record<string, string> = {};
      [all.slice(0, half), all.slice(half)].forEach((part, i) => {
        const file = `diffusion_pytorch_model-0000${i + 1}-of-00002.safetensors`;
        writeSafetensors(join(d, file), new Map(part), 'BF16');
        for (const [name] of part) weightMap[name] = file;
      });
      writeFileSync(join(d, INDEX), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    });
  } finally {
    source.dispose();
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A copy of the good checkpoint with one file of high_noise_model replaced. */
function withFile(name: string, file: string, content: Buffer | string): string {
  const d = join(dir, name);
  rmSync(d, { recursive: true, force: true });
  cpSync(good, d, { recursive: true });
  writeFileSync(join(d, 'high_noise_model', file), content);
  return d;
}

function safetensors(header: string, dataBytes = 0): Buffer {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(header)));
  return Buffer.concat([len, Buffer.from(header), Buffer.alloc(dataBytes)]);
}

async function load(weights: string): Promise<'loaded' | Error> {
  try {
    const m = await addon().loadModel({ model: 'wan-tiny', weights, threads: 1 });
    m.dispose();
    return 'loaded';
  } catch (e) {
    return e as Error;
  }
}

describe('bounded work per safetensors header', () => {
  it('a 20 MB header of 10 million shape dimensions fails at the rank bound', async () => {
    const dims = '1,'.repeat(10_000_000) + '1';
    const d = withFile('rank-bomb', SHARD, safetensors(`{"t":{"dtype":"F32","shape":[${dims}],"data_offsets":[0,4]}}`, 4));
    const r = await load(d);
    expect(r).toBeInstanceOf(Error);
    expect((r as Error).message).toMatch(new RegExp(`${SHARD}: bad header: JSON error at byte \\d+ .*at most 32 elements in an array`));
  });

  it('a header of 300,000 tensors fails at the tensor-count bound', async () => {
    const entries = Array.from({ length: 300_000 }, (_, i) => `"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`);
    const d = withFile('key-bomb', SHARD, safetensors(`{${entries.join(',')}}`));
    expect(((await load(d)) as Error).message).toMatch(/at most 131072 members in an object/);
  });

  it('an index file that names thousands of shards, or is nested deeply, is refused', async () => {
    const map = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`t${i}`, `s${i}.safetensors`]));
    const d = withFile('index-shards', INDEX, JSON.stringify({ weight_map: map }));
    for (let i = 0; i < 5000; i++) writeFileSync(join(d, 'high_noise_model', `s${i}.safetensors`), '');
    expect(((await load(d)) as Error).message).toMatch(/bad index: more than 4096 shard files/);
    const deep = withFile('index-deep', INDEX, `{"metadata":${'['.repeat(100)}${']'.repeat(100)},"weight_map":{}}`);
    expect(((await load(deep)) as Error).message).toMatch(/bad index: JSON error .*at most 8 levels of nesting/);
  });
});

describe('fuzz: mutated headers and index files', () => {
  function mutate(base: Buffer, rng: seedrandom.PRNG, lo: number, hi: number, i: number): Buffer {
    const m = Buffer.from(base);
    const at = () => lo + Math.floor(rng() * (hi - lo));
    const specials = Buffer.from('{}[]",:0123456789-.eE \\');
    for (let k = 0; k <= Math.floor(rng() * 3); k++) {
      if (i % 3 === 0) m[at()] ^= 1 << Math.floor(rng() * 8);
      else if (i % 3 === 1) m[at()] = specials[Math.floor(rng() * specials.length)];
      else return m.subarray(0, at());
    }
    return m;
  }

  it('60 shard headers and 60 index files: each load is a model or a rejected promise with a message', async () => {
    const rng = seedrandom('checkpoint-fuzz');
    const shard = readFileSync(join(good, 'high_noise_model', SHARD));
    const headerEnd = 8 + Number(shard.readBigUInt64LE(0));
    const index = readFileSync(join(good, 'high_noise_model', INDEX));
    const outcomes = { loaded: 0, refused: 0 };
    for (let i = 0; i < 120; i++) {
      const d = i < 60
        ? withFile('fuzz', SHARD, mutate(shard, rng, 0, headerEnd, i))
        : withFile('fuzz', INDEX, mutate(index, rng, 0, index.length, i));
      const r = await load(d);
      if (r === 'loaded') outcomes.loaded++;
      else {
        expect(r.message.length, `mutation ${i}`).toBeGreaterThan(10);
        expect(r.message).toMatch(/high_noise_model/);
        outcomes.refused++;
      }
    }
    expect(outcomes.refused).toBeGreaterThan(30);
    expect(await load(good)).toBe('loaded');
  });
});

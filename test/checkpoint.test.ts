// Checkpoints through the binding: the random model's own tensors written in the official
// layout (two shards + index, fp32) and in the diffusers layout (bf16, renamed keys) load to
// the same bits, and both forward exactly like the model they came from.
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { addon, type NativeModel } from '../src/engine/native.js';
import { bitsEqual, loadTiny, tinyRequest } from './helpers/native-model.js';
import { writeSafetensors, type StTensor } from './helpers/safetensors-writer.js';

let source: NativeModel;
let dir: string;
let expected: Float32Array;
const req = tinyRequest([0, 1, 2]);

function tensors(expert: number, rename: (n: string) => string): Map<string, StTensor> {
  const m = new Map<string, StTensor>();
  for (const spec of addon().tensorSpecs('wan-tiny'))
    m.set(rename(spec.name), { shape: spec.shape, values: source.tensor(expert, spec.name) });
  return m;
}

function writeOfficial(root: string) {
  ['high_noise_model', 'low_noise_model'].forEach((folder, expert) => {
    const d = join(root, folder);
    mkdirSync(d, { recursive: true });
    const all = [...tensors(expert, (n) => n)];
    const half = Math.ceil(all.length / 2);
    const shards = [all.slice(0, half), all.slice(half)];
    const weightMap: Record<string, string> = {};
    shards.forEach((s, i) => {
      const file = `diffusion_pytorch_model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(join(d, file), new Map(s), 'F32');
      for (const [name] of s) weightMap[name] = file;
    });
    writeFileSync(join(d, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  });
}

function writeDiffusers(root: string) {
  const rename = new Map(addon().tensorSpecs('wan-tiny').map((s) => [s.name, s.diffusersName]));
  ['transformer', 'transformer_2'].forEach((folder, expert) => {
    const d = join(root, folder);
    mkdirSync(d, { recursive: true });
    writeSafetensors(join(d, 'diffusion_pytorch_model.safetensors'), tensors(expert, (n) => rename.get(n)!), 'BF16');
  });
}

beforeAll(async () => {
  source = await loadTiny(2, 'checkpoint-source');
  expected = await source.forward(req);
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-ckpt-'));
  writeOfficial(join(dir, 'official'));
  writeDiffusers(join(dir, 'diffusers'));
});

afterAll(() => {
  source.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('checkpoint loading', () => {
  it('official layout (sharded fp32) and diffusers layout (bf16) give identical outputs', async () => {
    const progress: number[] = [];
    const official = await addon().loadModel({ model: 'wan-tiny', weights: join(dir, 'official'), threads: 2 }, (done) => progress.push(done));
    const diffusers = await addon().loadModel({ model: 'wan-tiny', weights: join(dir, 'diffusers'), threads: 2 });
    try {
      expect(official.identity).toContain('official');
      expect(bitsEqual(official.tensor(1, 'blocks.2.norm3.weight'), source.tensor(1, 'blocks.2.norm3.weight'))).toBe(true);
      expect(bitsEqual(diffusers.tensor(0, 'blocks.0.norm3.bias'), source.tensor(0, 'blocks.0.norm3.bias'))).toBe(true);
      expect(bitsEqual(await official.forward(req), expected)).toBe(true);
      expect(bitsEqual(await diffusers.forward(req), expected)).toBe(true);
      expect(progress.length).toBeGreaterThan(0);
    } finally {
      official.dispose();
      diffusers.dispose();
    }
  });

  it('a malformed checkpoint is a rejected promise naming the problem', async () => {
    const broken = join(dir, 'broken');
    writeDiffusers(broken);
    unlinkSync(join(broken, 'transformer_2', 'diffusion_pytorch_model.safetensors'));
    await expect(addon().loadModel({ model: 'wan-tiny', weights: broken })).rejects.toThrow(/transformer_2/);
    const wrongModel = addon().loadModel({ model: 'wan2.1-t2v-1.3b', weights: join(dir, 'official') });
    await expect(wrongModel).rejects.toThrow(/shape|missing|model/);
  });
});

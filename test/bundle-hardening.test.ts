// Bundle input limits and the header rule (issue 11, items 12 and 17), and a bounded fuzz of the
// reader: random truncations and byte flips give a clean error or a result, never a raw stack.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import seedrandom from 'seedrandom';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MAX_BATCH_RECORD_ITEMS, MAX_BUNDLE_LINE_BYTES, type BundleNode, type BundleRound } from '../src/bundle/format.js';
import { BundleFormatError, headerProblems, readBundle } from '../src/bundle/reader.js';
import { BundleWriter } from '../src/bundle/writer.js';
import { SmstBuilder } from '../src/commitment/smst.js';
import { InputError } from '../src/errors.js';
import { runCli } from './helpers/cli.js';

let dir: string;
const round: BundleRound = {
  model: 'wan-tiny', block_hash: 'AB', public_key: '02', block_height: 7, grid: [2, 4, 4], ctx_len: 16, k_dim: 12,
  stronger_rng: false, precision: 'bf16', weights: 'random', weights_seed: 'AB', weights_identity: 'random:AB',
};
const node: BundleNode = { node_id: 0, node_count: 1, group_id: 0, n_groups: 1 };
const vec = (i: number) => Buffer.alloc(24, i % 251).toString('base64');

/** A closed bundle with a correct commitment over `nonces`, `dropped` listed in the first batch. */
async function synthetic(name: string, o: { round?: BundleRound; node?: BundleNode; nonces?: number[]; dropped?: number[]; closed?: boolean } = {}): Promise<string> {
  const p = join(dir, name);
  const nonces = o.nonces ?? [0, 1, 2, 3, 4, 5];
  const w = BundleWriter.create(p, o.round ?? round, o.node ?? node, { overwrite: true });
  for (let i = 0; i < nonces.length; i += 4) w.appendBatch(nonces.slice(i, i + 4).map((n) => [n, vec(n)]), i === 0 ? (o.dropped ?? []) : []);
  if (o.closed === false) {
    await w.close();
    return p;
  }
  const t = new SmstBuilder();
  for (const n of new Set(nonces)) t.add(n, Buffer.from(vec(n), 'base64'));
  await w.finish({ count: t.count, root_hex: t.rootHex(), dropped: (o.dropped ?? []).length, elapsed_s: 1, nonces_per_second: 6, interrupted: false });
  return p;
}

const noStack = (s: string) => expect(s).not.toMatch(/\n\s+at .+:\d+:\d+/);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-bundle-hard-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('line length cap', () => {
  it('a line over the cap is refused with a clear error, streaming (never read whole)', async () => {
    const p = join(dir, 'long.ndjson');
    const head = readFileSync(await synthetic('base.ndjson'), 'utf8').split('\n')[0] + '\n';
    const fd = openSync(p, 'w');
    writeSync(fd, head);
    const block = Buffer.alloc(1 << 20, 'x');
    for (let i = 0; i <= MAX_BUNDLE_LINE_BYTES / block.length; i++) writeSync(fd, block);
    closeSync(fd);
    await expect(readBundle(p)).rejects.toThrow(new RegExp(`long\\.ndjson:2: line longer than ${MAX_BUNDLE_LINE_BYTES} bytes`));
    const r = await runCli(['inspect', p, '--json']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/line longer than 67108864 bytes, the limit for one bundle record/);
    noStack(r.stderr);
    const v = await runCli(['validate', p]);
    expect(v.code).toBe(2);
    expect(v.stderr).toMatch(/line longer than/);
  });

  it('the bound is exact, and lines split across read chunks and \\r\\n endings still parse', async () => {
    const p = await synthetic('exact.ndjson');
    const lines = readFileSync(p, 'utf8').split('\n').filter(Boolean);
    const longest = Math.max(...lines.map((l) => Buffer.byteLength(l)));
    await expect(readBundle(p, { maxLineBytes: longest })).resolves.toMatchObject({ artifacts: expect.any(Array) });
    await expect(readBundle(p, { maxLineBytes: longest - 1 })).rejects.toThrow(BundleFormatError);
    const crlf = join(dir, 'crlf.ndjson');
    writeFileSync(crlf, lines.join('\r\n') + '\r\n');
    expect((await readBundle(crlf)).artifacts).toHaveLength(6);
  });

  it('the writer splits a batch into records under the cap; inspect --repair of a large bundle reads back', async () => {
    const p = join(dir, 'split.ndjson');
    const w = BundleWriter.create(p, round, node, { overwrite: true });
    const n = MAX_BATCH_RECORD_ITEMS * 2 + 5;
    w.appendBatch(Array.from({ length: n }, (_, i) => [i, vec(i)]), [n + 1]);
    await w.close();
    const batches = readFileSync(p, 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l));
    expect(batches.map((b) => [b.seq, b.artifacts.length, b.dropped.length])).toEqual([[0, MAX_BATCH_RECORD_ITEMS, 1], [1, MAX_BATCH_RECORD_ITEMS, 0], [2, 5, 0]]);
    // A line of MAX_BATCH_RECORD_ITEMS artifacts at the largest k_dim (1024: 2048 bytes each) fits the cap.
    const widest = JSON.stringify({ type: 'batch', seq: 2 ** 31, artifacts: Array.from({ length: MAX_BATCH_RECORD_ITEMS }, () => [2 ** 31 - 1, Buffer.alloc(2048).toString('base64')]), dropped: Array(MAX_BATCH_RECORD_ITEMS).fill(2 ** 31 - 1) });
    expect(Buffer.byteLength(widest)).toBeLessThan(MAX_BUNDLE_LINE_BYTES);
    const out = join(dir, 'repaired.ndjson');
    const r = await runCli(['inspect', p, '--repair', out]);
    expect(r.code, r.stderr).toBe(0);
    const back = await readBundle(out);
    expect(back.problems).toEqual([]);
    expect(back.artifacts).toHaveLength(n);
    expect(back.end).toMatchObject({ count: n, dropped: 1, interrupted: true });
  });
});

describe('the header rule: inspect never calls an invalid bundle intact', () => {
  const cases: [string, Parameters<typeof synthetic>[1], RegExp][] = [
    ['node_count 0', { node: { ...node, node_count: 0 } }, /node: node_count must be an integer in \[1,/],
    ['node_id ≥ node_count', { node: { ...node, node_id: 3, node_count: 2 } }, /node: node_id 3 must be below node_count 2/],
    ['n_groups·node_count overflows', { node: { node_id: 0, node_count: 2 ** 20, group_id: 0, n_groups: 2 ** 20 } }, /n_groups·node_count exceeds the int32 range/],
    ['unknown model', { round: { ...round, model: 'nope' } }, /round: unknown model 'nope'/],
    ['k_dim out of range', { round: { ...round, k_dim: 1 } }, /round: k_dim must be an integer in \[2, 1024\], got 1/],
    ['ctx_len 0', { round: { ...round, ctx_len: 0 } }, /round: ctx_len must be an integer in \[1, 4096\], got 0/],
    ['grid too large', { round: { ...round, grid: [1, 2000, 1] } }, /round: grid must be three integers F,H,W in \[1, 1024\]/],
    ['k_dim above the output size', { round: { ...round, grid: [1, 1, 1], k_dim: 1000 } }, /round: k_dim 1000 is larger than the \d+ output values/],
    ['unknown precision', { round: { ...round, precision: 'fp4' as never } }, /round: unknown precision "fp4"/],
    ['weights identity of other weights', { round: { ...round, weights_identity: 'random:CD' } }, /weights_identity random:CD does not name the weights random with seed AB/],
    ['a nonce both committed and dropped', { dropped: [3] }, /nonce 3 is both an artifact and dropped/],
    ['a dropped nonce listed twice', { dropped: [9, 9] }, /dropped nonce 9 is listed twice/],
    ['a repeated artifact', { nonces: [0, 1, 1, 2] }, /nonce 1 appears twice/],
  ];
  for (const [name, o, problem] of cases) {
    it(name, async () => {
      const b = await readBundle(await synthetic(`rule-${name.replace(/\W+/g, '_')}.ndjson`, o), { allowBadHeader: true });
      expect(b.problems.join('\n')).toMatch(problem);
    });
  }

  it('inspect reports them (the cases of the issue: node_count 0, model "nope", a nonce committed and dropped)', async () => {
    for (const [name, o, problem] of cases.filter(([n]) => ['node_count 0', 'unknown model', 'a nonce both committed and dropped'].includes(n))) {
      const r = await runCli(['inspect', await synthetic(`cli-${name.replace(/\W+/g, '_')}.ndjson`, o), '--json']);
      expect(r.code, r.stderr).toBe(1);
      const s = JSON.parse(r.stdout);
      expect(s.intact).toBe(false);
      expect(s.problems.join('\n')).toMatch(problem);
    }
  });

  it('a bad header refuses validation (usage error, no stack); inspect --repair refuses to copy it', async () => {
    const p = await synthetic('bad-node.ndjson', { node: { ...node, node_count: 0 } });
    await expect(readBundle(p)).rejects.toThrow(/bad header: node: node_count must be/);
    const v = await runCli(['validate', p]);
    expect(v.code).toBe(2);
    expect(v.stderr).toMatch(/bad header: node: node_count must be/);
    noStack(v.stderr);
    const open = await synthetic('bad-open.ndjson', { round: { ...round, model: 'nope' }, closed: false });
    const r = await runCli(['inspect', open, '--repair', join(dir, 'never.ndjson'), '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).problems).toContain('not repaired: the bundle has problems besides the missing end record');
  });

  it('an end record whose dropped count disagrees, and a valid bundle for contrast', async () => {
    const p = await synthetic('end-dropped.ndjson', { dropped: [7] });
    const lines = readFileSync(p, 'utf8').trim().split('\n');
    writeFileSync(p, [...lines.slice(0, -1), lines.at(-1)!.replace('"dropped":1', '"dropped":4')].join('\n') + '\n');
    expect((await readBundle(p)).problems).toEqual(['end record claims 4 dropped nonces, the bundle lists 1']);
    const ok = await synthetic('ok.ndjson', { dropped: [7] });
    expect((await readBundle(ok)).problems).toEqual([]);
    expect(headerProblems((await readBundle(ok)).header)).toEqual([]);
    expect(JSON.parse((await runCli(['inspect', ok, '--json'])).stdout)).toMatchObject({ intact: true, problems: [] });
  });

  it('identities of transformed weights and checkpoints follow the rule', () => {
    const h = (r: Partial<BundleRound>) => ({ type: 'header' as const, format: 'dit-poc-bundle' as const, version: 1, created: '', round: { ...round, ...r }, node });
    expect(headerProblems(h({ weights_identity: 'random:AB+fp8' }))).toEqual([]);
    expect(headerProblems(h({ weights: '/ckpt', weights_identity: '/ckpt' }))).toEqual([]);
    expect(headerProblems(h({ weights: '/ckpt', weights_identity: '/other' }))).toHaveLength(1);
  });
});

describe('reader fuzz: truncations and byte flips', () => {
  it('every mutation reads or fails with an InputError (400 mutations in process)', async () => {
    const base = readFileSync(await synthetic('fuzz-base.ndjson', { nonces: Array.from({ length: 10 }, (_, i) => 2 * i), dropped: [1] }));
    const rng = seedrandom('bundle-reader-fuzz');
    const int = (n: number) => Math.floor(rng() * n);
    const p = join(dir, 'fuzz.ndjson');
    const outcomes = { read: 0, refused: 0 };
    for (let i = 0; i < 400; i++) {
      let m = Buffer.from(base);
      const kind = i % 4;
      if (kind === 0) m = m.subarray(0, int(m.length));                    // truncation
      else if (kind === 1) for (let j = 0; j <= int(4); j++) m[int(m.length)] = int(256); // random bytes
      else if (kind === 2) for (let j = 0; j <= int(4); j++) m[int(m.length)] ^= 1 << int(8); // bit flips
      else {
        // A structural character swapped for another one JSON cares about.
        const specials = Buffer.from('{}[]",:0-9en\n');
        for (let j = 0; j <= int(3); j++) m[int(m.length)] = specials[int(specials.length)];
      }
      writeFileSync(p, m);
      for (const opts of [{}, { allowTruncated: true, allowBadHeader: true }]) {
        try {
          const b = await readBundle(p, opts);
          expect(Array.isArray(b.problems)).toBe(true);
          outcomes.read++;
        } catch (e) {
          if (!(e instanceof InputError)) throw new Error(`mutation ${i} (kind ${kind}) gave a raw ${(e as Error).name}: ${(e as Error).stack}`);
          expect((e as Error).message).toMatch(/fuzz\.ndjson/);
          outcomes.refused++;
        }
      }
    }
    // Both outcomes occur: the fuzz reaches past the first check.
    expect(outcomes.read).toBeGreaterThan(20);
    expect(outcomes.refused).toBeGreaterThan(20);
  });

  it('inspect and validate on mutated bundles exit 0, 1 or 2 with no stack (8 runs)', async () => {
    const base = readFileSync(await synthetic('fuzz-cli.ndjson'));
    const rng = seedrandom('bundle-cli-fuzz');
    for (let i = 0; i < 4; i++) {
      const m = Buffer.from(i % 2 ? base.subarray(0, Math.floor(rng() * base.length)) : base);
      if (i % 2 === 0) for (let j = 0; j < 3; j++) m[Math.floor(rng() * m.length)] ^= 1 << Math.floor(rng() * 8);
      const p = join(dir, `fuzz-cli-${i}.ndjson`);
      writeFileSync(p, m);
      for (const args of [['inspect', p, '--json'], ['validate', p, '--samples', '2', '--threads', '1']]) {
        const r = await runCli(args);
        expect([0, 1, 2], `${args.join(' ')}: ${r.stderr}`).toContain(r.code);
        noStack(r.stderr);
      }
    }
  });
});

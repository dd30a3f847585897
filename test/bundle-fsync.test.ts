// Grouped, off-thread fsyncs of the bundle writer (issue 13 item 5): at most one every 0.5 s, a
// trailing one so nothing written stays unsynced longer, always one covering the end record, writes
// in order while an fsync is pending, and a full disk found by an fsync leaves only whole records.
import { fstatSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import type { BundleRound } from '../src/bundle/format.js';
import { readBundle } from '../src/bundle/reader.js';
import { BundleWriter } from '../src/bundle/writer.js';
import { DiskFullError } from '../src/disk-full.js';
import { workersBesideEngine } from '../src/workers/pool.js';

let dir: string;
const round: BundleRound = {
  model: 'wan-tiny', block_hash: 'AB', public_key: '02', block_height: 7, grid: [2, 4, 4], ctx_len: 16, k_dim: 12,
  stronger_rng: false, precision: 'bf16', weights: 'random', weights_seed: 'AB', weights_identity: 'random:AB',
};
const node = { node_id: 0, node_count: 1, group_id: 0, n_groups: 1 };
const vec = (i: number) => Buffer.alloc(24, i % 251).toString('base64');
const END = { count: 0, root_hex: 'a'.repeat(64), dropped: 0, elapsed_s: 1, nonces_per_second: 1, interrupted: false };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-fsync-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  vi.useRealTimers();
});

/** An fsync that records when it ran and how many bytes of the file it covered. */
function recordingSync() {
  const calls: { at: number; size: number }[] = [];
  const fsync = async (fd: number) => {
    calls.push({ at: Date.now(), size: fstatSync(fd).size });
  };
  return { calls, fsync };
}

describe('bundle writer fsyncs', () => {
  it('groups fsyncs to at most one per 0.5 s and always syncs the end record', async () => {
    vi.useFakeTimers({ now: 0, toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const p = join(dir, 'grouped.ndjson');
    const s = recordingSync();
    const w = BundleWriter.create(p, round, node, { now: () => Date.now(), fsync: s.fsync });
    // 2 s of batches, one every 20 ms: 100 records.
    for (let i = 0; i < 100; i++) {
      w.appendBatch([[i, vec(i)]], []);
      await vi.advanceTimersByTimeAsync(20);
    }
    expect(s.calls.length).toBeGreaterThanOrEqual(4); // 2 s of writing is synced as it goes
    expect(s.calls.length).toBeLessThanOrEqual(6);
    for (let i = 1; i < s.calls.length; i++) expect(s.calls[i].at - s.calls[i - 1].at).toBeGreaterThanOrEqual(500);
    const before = s.calls.length;
    await w.finish(END); // right after a grouped sync: finish syncs anyway
    expect(s.calls.length).toBe(before + 1);
    expect(s.calls.at(-1)!.size).toBe(readFileSync(p).length);
    const b = await readBundle(p);
    expect(b.artifacts.map((a) => a.nonce)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(b.end).toMatchObject({ root_hex: 'a'.repeat(64) });
  });

  it('a trailing fsync covers the last batch within the interval when no more batches come', async () => {
    vi.useFakeTimers({ now: 0, toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const p = join(dir, 'trailing.ndjson');
    const s = recordingSync();
    const w = BundleWriter.create(p, round, node, { now: () => Date.now(), fsync: s.fsync });
    await vi.advanceTimersByTimeAsync(10);
    w.appendBatch([[1, vec(1)]], []); // 10 ms after the header's sync: waits for its turn
    await vi.advanceTimersByTimeAsync(100);
    expect(s.calls.at(-1)!.size).toBeLessThan(readFileSync(p).length);
    await vi.advanceTimersByTimeAsync(500);
    expect(s.calls.at(-1)!.size).toBe(readFileSync(p).length);
    expect(s.calls.at(-1)!.at).toBeLessThanOrEqual(510);
    await w.close();
  });

  it('keeps writing in order while an fsync is pending; finish waits for it', async () => {
    const p = join(dir, 'pending.ndjson');
    const releases: (() => void)[] = [];
    let calls = 0;
    const fsync = () => {
      calls++;
      return new Promise<void>((res) => releases.push(res));
    };
    const w = BundleWriter.create(p, round, node, { fsync, syncIntervalMs: 0 });
    for (let i = 0; i < 5; i++) w.appendBatch([[i, vec(i)]], []); // none blocks on the pending sync
    expect(calls).toBe(1);
    expect(readFileSync(p, 'utf8').trim().split('\n')).toHaveLength(6);
    let finished = false;
    const done = w.finish(END).then(() => (finished = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(finished).toBe(false);
    while (!finished) {
      releases.shift()?.();
      await new Promise((r) => setTimeout(r, 5));
    }
    await done;
    expect(calls).toBe(2); // the header's, then one covering the five batches and the end record
    expect((await readBundle(p)).artifacts.map((a) => a.nonce)).toEqual([0, 1, 2, 3, 4]);
  });

  it('a full disk reported by an fsync truncates to the synced records and names inspect --repair', async () => {
    const p = join(dir, 'fsync-full.ndjson');
    let n = 0;
    const fsync = async () => {
      if (++n > 3) throw Object.assign(new Error('ENOSPC: no space left on device, fsync'), { code: 'ENOSPC' });
    };
    const w = BundleWriter.create(p, round, node, { fsync, syncIntervalMs: 0 });
    let err: unknown;
    for (let i = 0; i < 20 && !err; i++) {
      try {
        w.appendBatch([[i, vec(i)]], []);
      } catch (e) {
        err = e;
      }
      await new Promise((r) => setImmediate(r));
    }
    expect(err).toBeInstanceOf(DiskFullError);
    expect((err as Error).message).toMatch(/disk full writing .*fsync-full\.ndjson \(\d+ batches written\).*inspect .*--repair OUT/);
    await w.close();
    const b = await readBundle(p, { allowTruncated: true });
    expect(b.tornTail).toBeFalsy();
    expect(b.end).toBeFalsy();
    expect(b.artifacts.map((a) => a.nonce)).toEqual([0, 1]); // what the three successful fsyncs covered
  });
});

describe('worker pool beside the engine', () => {
  it('gets the cores the engine leaves free, at least one', () => {
    expect(workersBesideEngine(4, 8)).toBe(4);
    expect(workersBesideEngine(8, 8)).toBe(1);
    expect(workersBesideEngine(16, 8)).toBe(1);
    expect(workersBesideEngine(0, 8)).toBe(8);
  });
});

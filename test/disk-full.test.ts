// A full disk (issue 11 item 2) pauses generation and resumes it when space returns; it never
// throws out of a batch callback, never leaves a torn line, and loses no artifact. `generate`
// onto a full disk ends with a clear error and a bundle that `inspect --repair` closes.
// Two ways to fill a disk: an injected write error (node:fs.writeSync failing with ENOSPC after a
// byte budget; always runs), and a real, tiny tmpfs in a private mount namespace (`unshare -rm`;
// skipped where the machine does not allow it).
import { spawnSync } from 'node:child_process';
import * as realFs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { readBundle } from '../src/bundle/reader.js';
import type { NativeModel } from '../src/engine/native.js';
import { makeRound, modelInfo } from '../src/round/params.js';
import { Spool, type GeneratedEnvelope } from '../src/server/spool.js';
import { generateBundle } from '../src/sprint/generate-bundle.js';
import { closeWorkers } from '../src/workers/pool.js';
import { CLI, runCli } from './helpers/cli.js';
import { Receiver, ServeProcess, sleep, waitFor } from './helpers/receiver-harness.js';

// Bytes writeSync may still write before the disk is "full" (Infinity: not full).
const disk = vi.hoisted(() => ({ budget: Infinity }));
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const writeSync = ((fd: number, buf: Buffer | string, off?: number, ...rest: unknown[]) => {
    const data = typeof buf === 'string' ? Buffer.from(buf) : buf;
    const start = typeof off === 'number' ? off : 0;
    const len = data.length - start;
    if (disk.budget <= 0) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    if (len > disk.budget) {
      const n = fs.writeSync(fd, data, start, disk.budget); // a short write, as a filling disk gives
      disk.budget = 0;
      return n;
    }
    disk.budget -= len;
    return (fs.writeSync as (...a: unknown[]) => number)(fd, buf, off, ...rest);
  }) as typeof fs.writeSync;
  return { ...fs, writeSync, default: { ...fs, writeSync } };
});

let dir: string;
beforeAll(() => {
  dir = realFs.mkdtempSync(join(tmpdir(), 'ditpoc-diskfull-'));
});
afterAll(async () => {
  disk.budget = Infinity;
  await closeWorkers();
  realFs.rmSync(dir, { recursive: true, force: true });
});

/** Every line of every segment in a spool directory parses (no torn line left behind). */
function segmentLinesParse(spoolDir: string): boolean {
  for (const name of realFs.readdirSync(spoolDir).filter((n) => n.endsWith('.ndjson'))) {
    const text = realFs.readFileSync(join(spoolDir, name), 'utf8');
    for (const line of text.split('\n').filter((l) => l !== '')) {
      try {
        JSON.parse(line);
      } catch {
        return false;
      }
    }
  }
  return true;
}

const ENVELOPE: GeneratedEnvelope = { public_key: 'pk', block_hash: 'AB', block_height: 1, node_id: 0, encoding: { dtype: 'f16', k_dim: 12, endian: 'le' } };
const art = (n: number): [number, string] => [n, Buffer.alloc(24, n % 251).toString('base64')];

describe('spool on a full disk (injected ENOSPC)', () => {
  it('holds what it cannot write, pauses writers, resumes and delivers everything once space returns', async () => {
    const bodies: Array<{ artifacts: { nonce: number }[]; request_id?: string }> = [];
    const events: boolean[] = [];
    const spool = new Spool({
      dir: join(dir, 'spool'), flushIntervalMs: 50, maxSegmentArtifacts: 5, maxBytes: 1 << 30,
      retry: { initialMs: 10, maxMs: 20, factor: 2 }, timeoutMs: 1000, maxRejects: 3,
      post: async (_url, body) => {
        bodies.push(JSON.parse(body));
        return { status: 200 };
      },
      logger: pino({ level: 'silent' }),
      events: { onDiskFull: (full) => events.push(full) },
    });
    spool.start();
    try {
      const stream = spool.openStream('http://127.0.0.1:9/cb', ENVELOPE);
      stream.append([art(0), art(1), art(2)]);
      disk.budget = 30; // the next line is written in part, then the disk is full
      expect(() => stream.append([3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map(art))).not.toThrow();
      expect(spool.diskFull).toBe(true);
      expect(spool.full).toBe(true);
      expect(stream.heldArtifacts).toBeGreaterThan(0);
      expect(segmentLinesParse(join(dir, 'spool'))).toBe(true);
      // A queued job's callback while the disk is full is held too; it is split by maxSegmentArtifacts.
      expect(() => spool.enqueue('generated', 'http://127.0.0.1:9/cb', { ...ENVELOPE, request_id: 'job-1' }, [100, 101, 102, 103, 104, 105, 106].map(art))).not.toThrow();
      let resumed = false;
      void spool.waitForRoom().then(() => (resumed = true));
      await sleep(300);
      expect(resumed).toBe(false);

      disk.budget = Infinity;
      await waitFor(() => resumed, 'writers to resume', 10_000);
      expect(spool.diskFull).toBe(false);
      stream.close();
      await waitFor(() => spool.depth.segments === 0 && spool.depth.artifacts === 0, 'every segment delivered', 10_000);
      const streamed = bodies.filter((b) => b.request_id === undefined).flatMap((b) => b.artifacts.map((a) => a.nonce));
      expect(streamed).toEqual(Array.from({ length: 13 }, (_, i) => i));
      const job = bodies.filter((b) => b.request_id === 'job-1');
      expect(job.map((b) => b.artifacts.length)).toEqual([5, 2]);
      expect(events).toEqual([true, false]);
    } finally {
      disk.budget = Infinity;
      spool.close();
    }
  });
});

/** A model whose forward gives finite outputs at once (the bundle path, not the engine, is tested). */
function fakeModel(): NativeModel {
  return {
    config: modelInfo('wan-tiny'), identity: 'random:AB' /* the round's weights: the bundle header rule checks it */, backend: 'cpu', threads: 1, disposed: false,
    async denoise() {
      throw new Error('denoise is not used by this test');
    },
    async forward(req) {
      return Float32Array.from({ length: req.nonces.length * 64 }, (_, i) => Math.cos(i) + 2);
    },
    tensor: () => { throw new Error('no tensors'); },
    cancel() {},
    dispose() {},
  };
}

describe('generate onto a full disk (injected ENOSPC)', () => {
  it('ends with a clear error; the bundle has only complete records and inspect --repair closes it', async () => {
    const out = join(dir, 'full.bundle');
    const round = makeRound({ model: 'wan-tiny', blockHash: 'AB', publicKey: 'pk', grid: [1, 1, 1] });
    disk.budget = 3000; // the header and a few batches
    let err: Error | undefined;
    try {
      await generateBundle({ model: fakeModel(), round, blockHeight: 1, node: { nodeId: 0, nodeCount: 1, groupId: 0, nGroups: 1 }, nonces: Array.from({ length: 200 }, (_, i) => i), out, batchSize: 4 });
    } catch (e) {
      err = e as Error;
    } finally {
      disk.budget = Infinity;
    }
    expect(err?.name).toBe('DiskFullError');
    expect(err?.message).toMatch(/disk full writing .*full\.bundle \(\d+ batches written\).*inspect .*--repair OUT/);
    const b = await readBundle(out, { allowTruncated: true });
    expect(b.end).toBeNull();
    expect(b.tornTail).toBe(false);
    expect(b.artifacts.length).toBeGreaterThan(0);
    const repaired = join(dir, 'repaired.bundle');
    const r = await runCli(['inspect', out, '--repair', repaired]);
    expect(r.code, r.stderr).toBe(0);
    const closed = await readBundle(repaired);
    expect(closed.end?.count).toBe(b.artifacts.length);
  });
});

// ---- a real tiny disk: tmpfs in a private mount namespace ------------------------------------

function canMountTmpfs(): boolean {
  if (process.platform !== 'linux') return false;
  const probe = realFs.mkdtempSync(join(tmpdir(), 'ditpoc-mnt-probe-'));
  try {
    return spawnSync('unshare', ['-rm', 'sh', '-c', 'mount -t tmpfs -o size=64k tmpfs "$0"', probe], { stdio: 'ignore', timeout: 10_000 }).status === 0;
  } catch {
    return false;
  } finally {
    realFs.rmSync(probe, { recursive: true, force: true });
  }
}

/** argv run inside a new mount namespace with a tmpfs of `size` mounted on `mnt`. */
const onTmpfs = (mnt: string, size: string) => (argv: string[]) => ['unshare', '-rm', 'sh', '-c', `mount -t tmpfs -o size=${size} tmpfs "$0" && exec "$@"`, mnt, ...argv];

describe.skipIf(!canMountTmpfs())('a real full disk (tmpfs)', () => {
  it('serve: generation pauses on a full spool disk, shows it in /status, /metrics and the logs, and resumes when deliveries free space', async () => {
    const mnt = join(dir, 'serve-mnt');
    realFs.mkdirSync(mnt);
    const rx = await Receiver.start();
    await rx.down(); // nothing is delivered: the spool grows until the disk is full
    const srv = await ServeProcess.start(
      ['--model', 'wan-tiny', '--weights', 'random', '--grid', '2,4,4', '--threads', '2', '--port', '0', '--spool-dir', join(mnt, 'spool'),
        '--callback-interval', '0.2', '--retry-initial', '100', '--retry-max', '300', '--callback-timeout', '2', '--shutdown-timeout', '5', '--spool-max-mb', '512', '--max-attempts', '100000'],
      {}, 30_000, onTmpfs(mnt, '96k'),
    );
    try {
      const init = await srv.request('POST', '/api/v1/pow/init/generate', { block_hash: 'C0FFEE', block_height: 9, public_key: 'pk', node_id: 0, node_count: 1, params: { model: 'wan-tiny', seq_len: 32 }, url: rx.base() });
      expect(init.status).toBe(200);
      await waitFor(async () => (await srv.request('GET', '/api/v1/pow/status')).body.paused === 'disk_full', 'generation paused for a full disk', 90_000, 200);
      expect(await srv.metric('ditpoc_spool_disk_full')).toBe(1);
      expect(srv.logLines().some((l) => l.msg === 'spool: disk full: generation paused until space returns')).toBe(true);
      // Paused: the count stops moving (after the batch in flight).
      await sleep(1500);
      const a = (await srv.request('GET', '/api/v1/pow/status')).body.stats.total_processed as number;
      await sleep(1500);
      const b = (await srv.request('GET', '/api/v1/pow/status')).body;
      expect(b.paused).toBe('disk_full');
      expect(b.stats.total_processed).toBe(a);

      await rx.up(); // deliveries delete segments: space returns
      await waitFor(() => srv.logLines().some((l) => l.msg === 'spool: disk space is back: generation resumes'), 'space to return', 60_000, 200);
      await waitFor(async () => ((await srv.request('GET', '/api/v1/pow/status')).body.stats?.total_processed ?? 0) > a, 'generation to resume', 60_000, 200);
      expect((await srv.request('POST', '/api/v1/pow/stop')).status).toBe(200);
      expect(srv.proc.exitCode).toBeNull();
      // Everything computed reaches the receiver (or stays spooled); each nonce with one vector.
      await waitFor(async () => (await srv.metric('ditpoc_spool_artifacts')) === 0, 'the spool to drain', 60_000, 200);
      expect(rx.artifacts().size).toBeGreaterThan(a);
    } finally {
      await srv.stop();
      rx.stop();
    }
  });

  it('generate: a full disk ends with a clear error (no stack) and a bundle that inspect --repair closes', () => {
    const mnt = join(dir, 'gen-mnt');
    realFs.mkdirSync(mnt);
    const keep = join(dir, 'from-tmpfs.bundle');
    const args = [CLI, 'generate', '--model', 'wan-tiny', '--block-hash', 'AB', '--public-key', 'pk', '--grid', '1,1,1', '--threads', '2', '--count', '1000000', '--batch', '4', '--out', join(mnt, 'x.bundle')];
    const r = spawnSync('unshare', ['-rm', 'sh', '-c', `mount -t tmpfs -o size=16k tmpfs "$0" && "$@"; rc=$?; cp "$0/x.bundle" "${keep}"; exit $rc`, mnt, process.execPath, ...args], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/dit-poc: disk full writing .*x\.bundle/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const repaired = join(dir, 'tmpfs-repaired.bundle');
    const fixed = spawnSync(process.execPath, [CLI, 'inspect', keep, '--repair', repaired], { encoding: 'utf8' });
    expect(fixed.status, fixed.stderr).toBe(0);
    expect(realFs.existsSync(repaired)).toBe(true);
  });
});

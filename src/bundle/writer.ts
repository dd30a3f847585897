// Appends bundle records in order. Each record is written at once (one write, so a full disk never
// leaves a torn record), but fsyncs are grouped and run off the main thread: at most one every
// `syncIntervalMs` (0.5 s), a trailing one so that nothing written stays unsynced for longer, and
// always one before `finish` (the end record) and `close` return. A crash therefore loses at most
// the last ~0.5 s of batches; earlier records are never touched again.
import { closeSync, fsync, ftruncateSync, openSync, rmSync, writeSync } from 'node:fs';

import { DiskFullError, isDiskFull } from '../disk-full.js';
import { InputError } from '../errors.js';
import { BUNDLE_FORMAT, BUNDLE_VERSION, MAX_BATCH_RECORD_ITEMS, type BundleEnd, type BundleNode, type BundleRound } from './format.js';

export const BUNDLE_SYNC_INTERVAL_MS = 500;

export interface BundleSyncOptions {
  /** Least time between two fsyncs (default 500 ms). */
  syncIntervalMs?: number;
  /** Milliseconds on a monotonic clock (injectable for tests). */
  now?: () => number;
  /** Flushes fd to the disk without blocking the event loop (injectable for tests). */
  fsync?: (fd: number) => Promise<void>;
}

const fsyncOffThread = (fd: number) => new Promise<void>((res, rej) => fsync(fd, (e) => (e ? rej(e) : res())));

export class BundleWriter {
  private fd: number | null;
  private seq = 0;
  private size = 0;
  // What the last completed fsync covers: a disk-full fsync truncates back to it.
  private syncedSize = 0;
  private syncedSeq = 0;
  private lastSyncAt = -Infinity;
  private syncing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private flushing = false;
  private failure: Error | null = null;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly fsync: (fd: number) => Promise<void>;

  private constructor(
    fd: number,
    private readonly path: string,
    sync: BundleSyncOptions,
  ) {
    this.fd = fd;
    this.intervalMs = sync.syncIntervalMs ?? BUNDLE_SYNC_INTERVAL_MS;
    this.now = sync.now ?? (() => performance.now());
    this.fsync = sync.fsync ?? fsyncOffThread;
  }

  /** Creates the file (refusing to overwrite one) and writes the header. */
  static create(path: string, round: BundleRound, node: BundleNode, opts: { overwrite?: boolean } & BundleSyncOptions = {}): BundleWriter {
    let fd: number;
    try {
      fd = openSync(path, opts.overwrite ? 'w' : 'wx');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new InputError(err.code === 'EEXIST' ? `bundle ${path} already exists (choose another --out or pass --overwrite)` : `cannot create bundle ${path}: ${err.message}`);
    }
    const w = new BundleWriter(fd, path, opts);
    try {
      w.append({ type: 'header', format: BUNDLE_FORMAT, version: BUNDLE_VERSION, created: new Date().toISOString(), round, node });
    } catch (e) {
      closeSync(fd);
      w.fd = null;
      rmSync(path, { force: true });
      throw e instanceof DiskFullError ? new DiskFullError(`disk full: cannot write the header of bundle ${path}`) : e;
    }
    return w;
  }

  /** Writes the batch now; its fsync follows within ~syncIntervalMs. Throws a failed earlier fsync. */
  appendBatch(artifacts: [number, string][], dropped: number[]): void {
    // A large batch goes out as several records, so no line passes the reader's MAX_BUNDLE_LINE_BYTES.
    const n = MAX_BATCH_RECORD_ITEMS;
    for (let i = 0; i < Math.max(artifacts.length, dropped.length); i += n)
      this.append({ type: 'batch', seq: this.seq++, artifacts: artifacts.slice(i, i + n), dropped: dropped.slice(i, i + n) });
  }

  /** Writes the end record, fsyncs everything and closes the file. */
  async finish(end: Omit<BundleEnd, 'type'>): Promise<void> {
    this.append({ type: 'end', ...end });
    await this.flush();
    await this.close();
  }

  /** Resolves once everything written so far is on the disk (rejects with a failed fsync). */
  async flush(): Promise<void> {
    this.flushing = true; // no timer while flushing: this call does the last fsync itself
    try {
      this.clearTimer();
      while (this.syncing) await this.syncing;
      this.throwFailure();
      if (this.fd !== null && this.size > this.syncedSize) await this.startSync();
      this.throwFailure();
    } finally {
      this.flushing = false;
    }
  }

  /** Fsyncs what is written (best effort: a failure was or will be reported elsewhere) and closes. */
  async close(): Promise<void> {
    if (this.fd === null) return;
    await this.flush().catch(() => undefined);
    this.clearTimer();
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private append(record: object): void {
    if (this.fd === null) throw new Error('bundle writer is closed');
    this.throwFailure();
    const buf = Buffer.from(JSON.stringify(record) + '\n');
    try {
      let off = 0;
      while (off < buf.length) off += writeSync(this.fd, buf, off);
    } catch (e) {
      if (!isDiskFull(e)) throw e;
      // Leave no torn record behind: the file ends after the last complete one.
      this.truncateTo(this.size);
      throw this.diskFull(this.seq);
    }
    this.size += buf.length;
    this.scheduleSync();
  }

  private scheduleSync(): void {
    if (this.syncing || this.timer || this.flushing || this.fd === null) return; // a running sync reschedules when done
    const wait = this.lastSyncAt + this.intervalMs - this.now();
    if (wait <= 0) {
      void this.startSync();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.syncing && !this.flushing && this.fd !== null) void this.startSync();
    }, wait);
    this.timer.unref(); // finish/close sync anyway; a timer alone must not keep the process up
  }

  private startSync(): Promise<void> {
    const fd = this.fd!;
    const size = this.size;
    const seq = this.seq;
    this.lastSyncAt = this.now();
    const run = this.fsync(fd).then(
      () => {
        this.syncedSize = Math.max(this.syncedSize, size);
        this.syncedSeq = Math.max(this.syncedSeq, seq);
      },
      (e: unknown) => this.syncFailed(e),
    );
    this.syncing = run.finally(() => {
      this.syncing = null;
      if (!this.failure && this.size > this.syncedSize) this.scheduleSync();
    });
    return this.syncing;
  }

  private syncFailed(e: unknown): void {
    if (this.failure) return;
    if (!isDiskFull(e)) {
      this.failure = e as Error;
      return;
    }
    // Only what an fsync has covered is known to be on the disk: keep that, drop the rest whole.
    this.truncateTo(this.syncedSize);
    this.size = this.syncedSize;
    this.failure = this.diskFull(this.syncedSeq);
  }

  private throwFailure(): void {
    if (this.failure) throw this.failure;
  }

  private truncateTo(size: number): void {
    try {
      if (this.fd !== null) ftruncateSync(this.fd, size);
    } catch {
      // the reader ignores a torn last line anyway
    }
  }

  private diskFull(batches: number): DiskFullError {
    return new DiskFullError(
      `disk full writing ${this.path} (${batches} batches written): the bundle has no end record; free space, then \`dit-poc inspect ${this.path} --repair OUT\` closes it`,
    );
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

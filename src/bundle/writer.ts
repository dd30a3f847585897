// Appends bundle records durably: each record is one write followed by fsync.
import { closeSync, fsyncSync, ftruncateSync, openSync, rmSync, writeSync } from 'node:fs';

import { DiskFullError, isDiskFull } from '../disk-full.js';
import { InputError } from '../errors.js';
import { BUNDLE_FORMAT, BUNDLE_VERSION, MAX_BATCH_RECORD_ITEMS, type BundleEnd, type BundleNode, type BundleRound } from './format.js';

export class BundleWriter {
  private fd: number | null;
  private seq = 0;
  private size = 0;

  private constructor(
    fd: number,
    private readonly path: string,
  ) {
    this.fd = fd;
  }

  /** Creates the file (refusing to overwrite one) and writes the header. */
  static create(path: string, round: BundleRound, node: BundleNode, opts: { overwrite?: boolean } = {}): BundleWriter {
    let fd: number;
    try {
      fd = openSync(path, opts.overwrite ? 'w' : 'wx');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new InputError(err.code === 'EEXIST' ? `bundle ${path} already exists (choose another --out or pass --overwrite)` : `cannot create bundle ${path}: ${err.message}`);
    }
    const w = new BundleWriter(fd, path);
    try {
      w.append({ type: 'header', format: BUNDLE_FORMAT, version: BUNDLE_VERSION, created: new Date().toISOString(), round, node });
    } catch (e) {
      w.close();
      rmSync(path, { force: true });
      throw e instanceof DiskFullError ? new DiskFullError(`disk full: cannot write the header of bundle ${path}`) : e;
    }
    return w;
  }

  appendBatch(artifacts: [number, string][], dropped: number[]): void {
    // A large batch goes out as several records, so no line passes the reader's MAX_BUNDLE_LINE_BYTES.
    const n = MAX_BATCH_RECORD_ITEMS;
    for (let i = 0; i < Math.max(artifacts.length, dropped.length); i += n)
      this.append({ type: 'batch', seq: this.seq++, artifacts: artifacts.slice(i, i + n), dropped: dropped.slice(i, i + n) });
  }

  finish(end: Omit<BundleEnd, 'type'>): void {
    this.append({ type: 'end', ...end });
    this.close();
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private append(record: object): void {
    if (this.fd === null) throw new Error('bundle writer is closed');
    const buf = Buffer.from(JSON.stringify(record) + '\n');
    try {
      let off = 0;
      while (off < buf.length) off += writeSync(this.fd, buf, off);
      fsyncSync(this.fd);
    } catch (e) {
      if (!isDiskFull(e)) throw e;
      // Leave no torn record behind: the file ends after the last complete one.
      try {
        ftruncateSync(this.fd, this.size);
      } catch {
        // the reader ignores a torn last line anyway
      }
      throw new DiskFullError(
        `disk full writing ${this.path} (${this.seq} batches written): the bundle has no end record; free space, then \`dit-poc inspect ${this.path} --repair OUT\` closes it`,
      );
    }
    this.size += buf.length;
  }
}

// Durable callback spool: every callback body (artifacts for `{url}/generated`, verdicts for
// `{url}/validated`) is on disk under the spool directory before it is sent, and leaves the disk
// only once the receiver acknowledged it with a 2xx. After a crash or restart the directory is
// scanned and everything in it is sent again (duplicates are harmless: Gonka's decentralized-api
// ignores duplicate nonces).
//
// Layout of the directory:
//   spool.lock                     flock-ed by the server that owns the directory (its pid inside, for messages)
//   open-<seq>.ndjson              segment being appended to by a generation stream
//   seg-<seq>-<count>.ndjson       sealed segment, waiting for delivery
//   tmp-<seq>.ndjson               half-written sealed segment (deleted at startup)
//   dead/seg-…                     segments the receiver rejected with 4xx too often (kept, not retried)
// Segment format (NDJSON): line 1 {"v":1,"kind":"generated"|"validated","url":…}; line 2 the body's
// envelope (for validated: the whole body); then one `[nonce,"vector_b64"]` line per artifact.
// Appends are written to the OS on every batch (they survive a killed process) and fsynced when the
// segment is sealed, which happens every flush interval or at maxSegmentArtifacts.
//
// Delivery: one lane per callback URL, one request in flight per lane, segments in sequence order.
// A failed send (network error, timeout, non-2xx) backs the lane off exponentially up to a cap and
// retries the same segment; a segment refused with a 4xx (other than 408/425/429) maxRejects times
// is moved to dead/, and so is one whose attempts of any kind reach maxAttempts (10, as vLLM).
// Memory holds only per-segment metadata and at most one segment per lane
// (segments are bounded in size); when the bytes on disk exceed maxBytes, writers are told to
// wait (see `full` / `waitForRoom`).
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
  ftruncateSync,
  rmSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { Logger } from 'pino';

import { isDiskFull } from '../disk-full.js';
import { addon } from '../engine/native.js';
import { InputError } from '../errors.js';

/** Failed attempts before a callback goes to dead/, as vLLM's PoC sender gives up after 10 tries. */
export const DEFAULT_MAX_ATTEMPTS = 10;

/** How often writes held for a full disk are retried. */
const DISK_FULL_RETRY_MS = 500;

export type CallbackKind = 'generated' | 'validated';

/** Envelope of a `{url}/generated` body (everything but the artifacts). */
export interface GeneratedEnvelope {
  request_id?: string;
  public_key: string;
  block_hash: string;
  block_height: number;
  node_id: number;
  encoding: { dtype: 'f16'; k_dim: number; endian: 'le' };
  /** Added to the log lines of this callback (e.g. the weights identity); never sent. */
  log_context?: Record<string, unknown>;
}

export interface RetryPolicy {
  initialMs: number;
  maxMs: number;
  factor: number;
}

export type PostResult = { status: number } | { error: 'timeout' | 'network'; message: string };

/** Sends one JSON body; never throws. */
export type PostFn = (url: string, body: string, timeoutMs: number, signal: AbortSignal) => Promise<PostResult>;

export interface SpoolEvents {
  onDelivered?(kind: CallbackKind, artifacts: number): void;
  onFailure?(kind: CallbackKind, reason: string): void;
  onDeadLetter?(kind: CallbackKind, why: 'refused' | 'failed'): void;
  onDiskFull?(full: boolean): void;
}

export interface SpoolOptions {
  dir: string;
  flushIntervalMs: number;
  maxSegmentArtifacts: number;
  maxBytes: number;
  retry: RetryPolicy;
  timeoutMs: number;
  maxRejects: number;
  /** Failed attempts of any kind (network, timeout, 3xx, 5xx) before a segment goes to dead/ (vLLM: 10). */
  maxAttempts?: number;
  post: PostFn;
  logger: Logger;
  events?: SpoolEvents;
}

interface Segment {
  seq: number;
  file: string;
  kind: CallbackKind;
  url: string;
  count: number;
  bytes: number;
  rejects: number;
  /** Failed delivery attempts of any kind (after maxAttempts the segment goes to dead/). */
  attempts: number;
}

interface Lane {
  url: string;
  queue: Segment[];
  busy: boolean;
  failures: number;
  nextAt: number;
  timer: NodeJS.Timeout | null;
}

const SEQ_WIDTH = 12;
const pad = (n: number) => String(n).padStart(SEQ_WIDTH, '0');
const SEALED_RE = /^seg-(\d+)-(\d+)\.ndjson$/;
const OPEN_RE = /^open-(\d+)\.ndjson$/;
const TMP_RE = /^tmp-(\d+)\.ndjson$/;

function header(kind: CallbackKind, url: string): string {
  return JSON.stringify({ v: 1, kind, url }) + '\n';
}

function parseHeader(line: string): { kind: CallbackKind; url: string } | null {
  try {
    const h = JSON.parse(line) as { v?: number; kind?: string; url?: string };
    if (h.v !== 1 || (h.kind !== 'generated' && h.kind !== 'validated') || typeof h.url !== 'string') return null;
    return { kind: h.kind, url: h.url };
  } catch {
    return null;
  }
}

function isArtifactLine(v: unknown): v is [number, string] {
  return Array.isArray(v) && v.length === 2 && Number.isInteger(v[0]) && typeof v[1] === 'string';
}

/** Lines of a segment; a torn last line (crash mid-write) and anything after it is ignored. */
function parseSegment(text: string): { kind: CallbackKind; url: string; envelope: unknown; artifacts: [number, string][] } | null {
  const lines = text.split('\n');
  const h = parseHeader(lines[0] ?? '');
  if (!h) return null;
  let envelope: unknown;
  try {
    envelope = JSON.parse(lines[1] ?? '');
  } catch {
    return null;
  }
  const artifacts: [number, string][] = [];
  for (let i = 2; i < lines.length; i++) {
    if (lines[i] === '') continue;
    let v: unknown;
    try {
      v = JSON.parse(lines[i]);
    } catch {
      break;
    }
    if (!isArtifactLine(v)) break;
    artifacts.push(v);
  }
  return { ...h, envelope, artifacts };
}

/** The `{url}/generated` body, fields in Gonka's order (request_id first for queued jobs). */
export function generatedBody(env: GeneratedEnvelope, artifacts: [number, string][]): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (env.request_id !== undefined) body.request_id = env.request_id;
  body.public_key = env.public_key;
  body.block_hash = env.block_hash;
  body.block_height = env.block_height;
  body.node_id = env.node_id;
  body.artifacts = artifacts.map(([nonce, vector_b64]) => ({ nonce, vector_b64 }));
  body.encoding = env.encoding;
  return body;
}

/** `{base}/generated`: the kind is a path segment; a query or fragment of the base stays where it is. */
export function callbackUrl(base: string, kind: CallbackKind): string {
  const u = new URL(base);
  u.pathname = u.pathname.replace(/\/+$/, '') + '/' + kind;
  return u.toString();
}

/** An append-only generation stream: artifacts go to an open segment, sealed every interval. */
export class SpoolStream {
  private fd: number | null = null;
  private seq = 0;
  private count = 0;
  private bytes = 0;
  private closed = false;
  private closing = false;
  private held: [number, string][] = [];

  constructor(
    private readonly spool: Spool,
    readonly url: string,
    private readonly envelope: GeneratedEnvelope,
  ) {}

  get pendingArtifacts(): number {
    return this.count + this.held.length;
  }

  get pendingBytes(): number {
    return this.bytes;
  }

  /** Artifacts accepted but not on disk yet (the disk was full); written when space returns. */
  get heldArtifacts(): number {
    return this.held.length;
  }

  /** Never throws for a full disk: what cannot be written is held (one batch or two: generation pauses). */
  append(artifacts: [number, string][]): void {
    if (this.closed || this.closing) throw new Error('spool stream is closed');
    this.held.push(...artifacts);
    this.writeHeld();
  }

  /**
   * Writes the held artifacts. On a full disk the segment is cut back to its last complete line,
   * the rest stays held and the spool is told (it pauses generation and retries). True when
   * nothing is held any more.
   */
  writeHeld(): boolean {
    try {
      while (this.held.length > 0) {
        if (this.fd === null) this.open();
        const room = this.spool.options.maxSegmentArtifacts - this.count;
        const part = this.held.slice(0, room);
        const buf = Buffer.from(part.map((a) => JSON.stringify(a)).join('\n') + '\n');
        try {
          writeAll(this.fd!, buf);
        } catch (e) {
          if (isDiskFull(e)) ftruncateSync(this.fd!, this.bytes);
          throw e;
        }
        this.held.splice(0, part.length);
        this.count += part.length;
        this.bytes += buf.length;
        if (this.count >= this.spool.options.maxSegmentArtifacts) this.seal();
      }
      if (this.closing) this.close();
      return true;
    } catch (e) {
      if (!isDiskFull(e)) throw e;
      this.spool.noteDiskFull(e);
      return false;
    }
  }

  /** Makes the open segment durable and hands it to delivery; a no-op when nothing is open. */
  seal(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    try {
      fsyncSync(fd);
    } catch (e) {
      // Some file systems report a full disk only here: keep the segment open and retry.
      if (isDiskFull(e)) return this.spool.noteDiskFull(e);
      throw e;
    }
    this.fd = null;
    closeSync(fd);
    const open = join(this.spool.options.dir, `open-${pad(this.seq)}.ndjson`);
    if (this.count === 0) {
      unlinkSync(open);
    } else {
      const name = `seg-${pad(this.seq)}-${this.count}.ndjson`;
      renameSync(open, join(this.spool.options.dir, name));
      this.spool.fsyncDir();
      this.spool.adopt({ seq: this.seq, file: name, kind: 'generated', url: this.url, count: this.count, bytes: statSync(join(this.spool.options.dir, name)).size, rejects: 0, attempts: 0 });
    }
    this.count = 0;
    this.bytes = 0;
  }

  /**
   * Seals what is pending and refuses further appends. Artifacts still held for a full disk keep
   * the stream with the spool until they are written (or the spool closes).
   */
  close(): void {
    if (this.closed) return;
    this.closing = true;
    if (this.held.length > 0) return;
    this.seal();
    if (this.fd !== null) return; // fsync found the disk full: retried with the held artifacts
    this.closed = true;
    this.spool.detach(this);
  }

  private open(): void {
    const seq = this.spool.nextSeq();
    const path = join(this.spool.options.dir, `open-${pad(seq)}.ndjson`);
    const fd = openSync(path, 'wx');
    const head = Buffer.from(header('generated', this.url) + JSON.stringify(this.envelope) + '\n');
    try {
      writeAll(fd, head);
    } catch (e) {
      closeSync(fd);
      unlinkSync(path);
      throw e;
    }
    this.fd = fd;
    this.seq = seq;
    this.bytes = head.length;
    this.count = 0;
  }
}

/** writeSync until every byte is written (a short write is not an error). */
function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off);
}

export class Spool {
  private seq = 0;
  private readonly lanes = new Map<string, Lane>();
  private readonly streams = new Set<SpoolStream>();
  private readonly waiters = new Set<() => void>();
  private readonly inflight = new Set<AbortController>();
  private flushTimer: NodeJS.Timeout | null = null;
  private diskFullSince: number | null = null;
  private diskProbe: NodeJS.Timeout | null = null;
  private readonly heldBodies: Array<{ kind: CallbackKind; url: string; envelope: unknown; artifacts: [number, string][] }> = [];
  private closed = false;
  private segBytes = 0;
  private segArtifacts = 0;
  private segCount = 0;
  private lockPath: string;
  private lockFd: number | null = null;

  constructor(readonly options: SpoolOptions) {
    this.lockPath = join(options.dir, 'spool.lock');
  }

  /** Takes the directory's lock, recovers what a previous run left, starts delivery. */
  start(): void {
    const { dir } = this.options;
    mkdirSync(join(dir, 'dead'), { recursive: true });
    this.lock();
    const names = readdirSync(dir);
    let maxSeq = 0;
    for (const name of names) {
      const m = SEALED_RE.exec(name) ?? OPEN_RE.exec(name) ?? TMP_RE.exec(name);
      if (m) maxSeq = Math.max(maxSeq, Number(m[1]));
    }
    for (const name of readdirSync(join(dir, 'dead'))) {
      const m = SEALED_RE.exec(name);
      if (m) maxSeq = Math.max(maxSeq, Number(m[1]));
    }
    this.seq = maxSeq + 1;
    let recovered = 0;
    for (const name of names.sort()) {
      const path = join(dir, name);
      if (TMP_RE.test(name)) {
        unlinkSync(path);
        continue;
      }
      const open = OPEN_RE.exec(name);
      if (open) {
        // Left by a killed process: seal what was written (its torn tail, if any, is ignored).
        const seg = parseSegment(readFileSync(path, 'utf8'));
        if (!seg || seg.artifacts.length === 0) {
          if (seg) unlinkSync(path);
          else this.bury(name, 'unreadable open segment');
          continue;
        }
        const sealed = `seg-${open[1]}-${seg.artifacts.length}.ndjson`;
        renameSync(path, join(dir, sealed));
        this.adopt({ seq: Number(open[1]), file: sealed, kind: seg.kind, url: seg.url, count: seg.artifacts.length, bytes: statSync(join(dir, sealed)).size, rejects: 0, attempts: 0 }, false);
        recovered++;
        continue;
      }
      const sealed = SEALED_RE.exec(name);
      if (!sealed) continue;
      const h = parseHeader(this.firstLine(path));
      if (!h) {
        this.bury(name, 'unreadable segment header');
        continue;
      }
      this.adopt({ seq: Number(sealed[1]), file: name, kind: h.kind, url: h.url, count: Number(sealed[2]), bytes: statSync(path).size, rejects: 0, attempts: 0 }, false);
      recovered++;
    }
    this.fsyncDir();
    if (recovered > 0) this.options.logger.info({ segments: recovered, artifacts: this.segArtifacts, bytes: this.segBytes }, 'spool: re-sending segments left by a previous run');
    this.flushTimer = setInterval(() => this.flush(), this.options.flushIntervalMs);
    this.flushTimer.unref();
    for (const lane of this.lanes.values()) this.kick(lane);
  }

  /** A generation stream to `{url}/generated`. */
  openStream(url: string, envelope: GeneratedEnvelope): SpoolStream {
    const s = new SpoolStream(this, url, envelope);
    this.streams.add(s);
    return s;
  }

  /** Spools one complete callback body (a queued job's artifacts or a verdict). */
  enqueue(kind: CallbackKind, url: string, envelope: unknown, artifacts: [number, string][] = []): void {
    // A queued job's artifacts go out in callbacks of at most maxSegmentArtifacts, as a stream's do.
    const max = this.options.maxSegmentArtifacts;
    for (let i = 0; i === 0 || i < artifacts.length; i += max) {
      const part = artifacts.slice(i, i + max);
      if (this.diskFull) this.heldBodies.push({ kind, url, envelope, artifacts: part });
      else this.writeBody(kind, url, envelope, part);
    }
  }

  /** One complete callback body to a sealed segment; held for later when the disk is full. */
  private writeBody(kind: CallbackKind, url: string, envelope: unknown, artifacts: [number, string][]): boolean {
    const seq = this.nextSeq();
    const { dir } = this.options;
    const tmp = join(dir, `tmp-${pad(seq)}.ndjson`);
    const lines = [header(kind, url).trimEnd(), JSON.stringify(envelope), ...artifacts.map((a) => JSON.stringify(a))];
    try {
      const fd = openSync(tmp, 'wx');
      try {
        writeAll(fd, Buffer.from(lines.join('\n') + '\n'));
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    } catch (e) {
      if (!isDiskFull(e)) throw e;
      rmSync(tmp, { force: true });
      this.heldBodies.push({ kind, url, envelope, artifacts });
      this.noteDiskFull(e);
      return false;
    }
    const name = `seg-${pad(seq)}-${artifacts.length}.ndjson`;
    renameSync(tmp, join(dir, name));
    this.fsyncDir();
    this.adopt({ seq, file: name, kind, url, count: artifacts.length, bytes: statSync(join(dir, name)).size, rejects: 0, attempts: 0 });
    return true;
  }

  /** Whether a write found the disk full and has not succeeded since (generation is paused). */
  get diskFull(): boolean {
    return this.diskFullSince !== null;
  }

  /** A write failed for a full disk: pause writers and retry what is held every interval. */
  noteDiskFull(e: unknown): void {
    if (this.diskFullSince !== null) return;
    this.diskFullSince = Date.now();
    this.options.logger.error({ err: e, dir: this.options.dir }, 'spool: disk full: generation paused until space returns');
    this.options.events?.onDiskFull?.(true);
    this.diskProbe = setInterval(() => this.retryHeld(), DISK_FULL_RETRY_MS);
    this.diskProbe.unref();
  }

  private retryHeld(): void {
    if (this.closed) return;
    const wasFull = this.diskFullSince;
    this.diskFullSince = null; // writes below re-note it if the disk is still full
    try {
      for (const s of [...this.streams]) if (!s.writeHeld()) break;
      while (this.diskFullSince === null && this.heldBodies.length > 0) {
        const b = this.heldBodies.shift()!;
        this.writeBody(b.kind, b.url, b.envelope, b.artifacts);
      }
    } catch (e) {
      this.options.logger.error({ err: e }, 'spool: cannot write held artifacts');
    }
    if (this.diskFullSince !== null) {
      this.diskFullSince = wasFull; // still full: keep the first time it was seen
      return;
    }
    if (this.diskProbe) clearInterval(this.diskProbe);
    this.diskProbe = null;
    this.options.logger.info({ paused_s: wasFull ? (Date.now() - wasFull) / 1000 : 0 }, 'spool: disk space is back: generation resumes');
    this.options.events?.onDiskFull?.(false);
    for (const w of [...this.waiters]) w();
  }


  /** Seals every open stream now (each becomes a callback). */
  flush(): void {
    for (const s of this.streams) {
      try {
        s.seal();
      } catch (e) {
        this.options.logger.error({ err: e }, 'spool: cannot seal a segment');
      }
    }
  }

  get depth(): { segments: number; artifacts: number; bytes: number } {
    let artifacts = this.segArtifacts;
    let bytes = this.segBytes;
    for (const s of this.streams) {
      artifacts += s.pendingArtifacts;
      bytes += s.pendingBytes;
    }
    return { segments: this.segCount, artifacts, bytes };
  }

  /** Writers must wait: the spool is over its byte cap, or the disk is full. */
  get full(): boolean {
    return this.diskFull || this.depth.bytes >= this.options.maxBytes;
  }

  /** Resolves once the spool is below its byte cap (or at once when it is), or when `signal` aborts. */
  waitForRoom(signal?: AbortSignal): Promise<void> {
    if (!this.full || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.waiters.delete(check);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const check = () => {
        if (!this.full) done();
      };
      this.waiters.add(check);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * Seals the open streams and sends until nothing is left or `deadline` (ms since epoch) passes.
   * Returns true when the spool is empty.
   */
  async drain(deadline: number): Promise<boolean> {
    this.flush();
    // A lane backed off for longer than the drain allows gets one more early try.
    const soon = Date.now() + this.options.retry.initialMs;
    for (const lane of this.lanes.values()) {
      if (lane.nextAt > soon) {
        lane.nextAt = soon;
        if (lane.timer) clearTimeout(lane.timer);
        lane.timer = null;
      }
      this.kick(lane);
    }
    while (this.segCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    return this.segCount === 0;
  }

  /** Stops delivery; everything not acknowledged stays on disk for the next run. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of [...this.streams]) {
      try {
        s.close();
      } catch (e) {
        this.options.logger.error({ err: e }, 'spool: cannot seal a segment');
      }
    }
    if (this.flushTimer) clearInterval(this.flushTimer);
    if (this.diskProbe) clearInterval(this.diskProbe);
    const held = [...this.streams].reduce((n, st) => n + st.heldArtifacts, 0) + this.heldBodies.reduce((n, b) => n + b.artifacts.length, 0);
    if (held > 0 || this.heldBodies.length > 0)
      this.options.logger.error({ artifacts: held, bodies: this.heldBodies.length }, 'spool: closed with artifacts the full disk never took: they are lost');
    for (const lane of this.lanes.values()) if (lane.timer) clearTimeout(lane.timer);
    for (const c of this.inflight) c.abort();
    for (const w of [...this.waiters]) w();
    this.unlock();
  }

  // ---- internals, used by SpoolStream ------------------------------------------------------

  nextSeq(): number {
    return this.seq++;
  }

  detach(s: SpoolStream): void {
    this.streams.delete(s);
  }

  fsyncDir(): void {
    try {
      const fd = openSync(this.options.dir, 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    } catch {
      // not every file system allows fsync on a directory
    }
  }

  adopt(seg: Segment, kick = true): void {
    let lane = this.lanes.get(seg.url);
    if (!lane) {
      lane = { url: seg.url, queue: [], busy: false, failures: 0, nextAt: 0, timer: null };
      this.lanes.set(seg.url, lane);
    }
    lane.queue.push(seg);
    lane.queue.sort((a, b) => a.seq - b.seq);
    this.segCount++;
    this.segArtifacts += seg.count;
    this.segBytes += seg.bytes;
    if (kick) this.kick(lane);
  }

  private forget(lane: Lane, seg: Segment): void {
    const i = lane.queue.indexOf(seg);
    if (i >= 0) lane.queue.splice(i, 1);
    this.segCount--;
    this.segArtifacts -= seg.count;
    this.segBytes -= seg.bytes;
    for (const w of [...this.waiters]) w();
  }

  private kick(lane: Lane): void {
    if (this.closed || lane.busy || lane.queue.length === 0) return;
    const wait = lane.nextAt - Date.now();
    if (wait > 0) {
      if (!lane.timer) {
        lane.timer = setTimeout(() => {
          lane.timer = null;
          this.kick(lane);
        }, wait);
        lane.timer.unref();
      }
      return;
    }
    if (lane.timer) {
      clearTimeout(lane.timer);
      lane.timer = null;
    }
    lane.busy = true;
    void this.send(lane, lane.queue[0]).finally(() => {
      lane.busy = false;
      this.kick(lane);
    });
  }

  private async send(lane: Lane, seg: Segment): Promise<void> {
    const path = join(this.options.dir, seg.file);
    const log = this.options.logger;
    let body: string;
    let context: Record<string, unknown> = {};
    try {
      const parsed = parseSegment(await readFile(path, 'utf8'));
      if (!parsed) throw new Error('unreadable segment');
      const { log_context, ...envelope } = parsed.envelope as GeneratedEnvelope;
      context = log_context ?? {};
      body = JSON.stringify(seg.kind === 'generated' ? generatedBody(envelope, parsed.artifacts) : envelope);
    } catch (e) {
      if (this.closed) return;
      log.error({ err: e, file: seg.file }, 'spool: segment cannot be read; moved to dead/');
      this.forget(lane, seg);
      if (existsSync(path)) this.bury(seg.file, (e as Error).message);
      return;
    }
    const ctl = new AbortController();
    this.inflight.add(ctl);
    const target = callbackUrl(seg.url, seg.kind);
    const r = await this.options.post(target, body, this.options.timeoutMs, ctl.signal);
    this.inflight.delete(ctl);
    if (this.closed) return; // an aborted send stays on disk
    if ('status' in r && r.status >= 200 && r.status < 300) {
      try {
        unlinkSync(path);
      } catch (e) {
        log.warn({ err: e, file: seg.file }, 'spool: cannot delete a delivered segment');
      }
      this.forget(lane, seg);
      lane.failures = 0;
      lane.nextAt = 0;
      this.options.events?.onDelivered?.(seg.kind, seg.count);
      log.info({ url: target, artifacts: seg.count, seq: seg.seq, ...context }, 'callback delivered');
      return;
    }
    const reason = 'status' in r ? `http_${Math.floor(r.status / 100)}xx` : r.error;
    this.options.events?.onFailure?.(seg.kind, reason);
    lane.failures++;
    const { initialMs, maxMs, factor } = this.options.retry;
    const delay = Math.min(maxMs, initialMs * factor ** (lane.failures - 1));
    lane.nextAt = Date.now() + delay * (0.8 + 0.4 * Math.random());
    const rejected = 'status' in r && r.status >= 400 && r.status < 500 && ![408, 425, 429].includes(r.status);
    if (rejected) seg.rejects++;
    seg.attempts++;
    const detail = 'status' in r ? { status: r.status } : { error: r.message };
    const refused = rejected && seg.rejects >= this.options.maxRejects;
    if (refused || seg.attempts >= (this.options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS)) {
      const msg = refused ? 'callback: receiver keeps refusing this segment; moved to dead/' : `callback: ${seg.attempts} attempts failed; moved to dead/`;
      log.error({ url: target, ...detail, file: seg.file, artifacts: seg.count, attempts: seg.attempts, ...context }, msg);
      this.forget(lane, seg);
      this.bury(seg.file, refused ? 'refused' : 'failed');
      this.options.events?.onDeadLetter?.(seg.kind, refused ? 'refused' : 'failed');
      return;
    }
    log.warn({ url: target, ...detail, attempt: lane.failures, retry_in_ms: Math.round(lane.nextAt - Date.now()), artifacts: seg.count, ...context }, 'callback failed; will retry');
  }

  private bury(name: string, why: string): void {
    try {
      renameSync(join(this.options.dir, name), join(this.options.dir, 'dead', name));
      this.options.logger.warn({ file: name, why }, 'spool: segment moved to dead/');
    } catch (e) {
      this.options.logger.error({ err: e, file: name }, 'spool: cannot move a segment to dead/');
    }
  }

  private firstLine(path: string): string {
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(16384);
      const n = readSync(fd, buf, 0, buf.length, 0);
      const text = buf.subarray(0, n).toString('utf8');
      const nl = text.indexOf('\n');
      return nl >= 0 ? text.slice(0, nl) : text;
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Takes the directory's lock: flock on spool.lock (native addon), held by an open descriptor, so
   * the kernel releases it when this process ends however it ends. The pid written into the file
   * only names the owner in the error a second server gets.
   */
  private lock(): void {
    let fd: number;
    try {
      fd = addon().lockFile(this.lockPath);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ELOCKED') throw e;
      let owner = '';
      try {
        owner = readFileSync(this.lockPath, 'utf8').trim();
      } catch {
        // unreadable: the lock itself is what counts
      }
      throw new SpoolLockedError(`spool directory ${this.options.dir} is in use by ${/^\d+$/.test(owner) ? `process ${owner}` : 'another process'} (another dit-poc serve?)`);
    }
    this.lockFd = fd;
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
  }

  /** Releases the lock (the file stays: unlinking a flock file lets two owners race). */
  private unlock(): void {
    if (this.lockFd === null) return;
    addon().unlockFile(this.lockFd);
    this.lockFd = null;
  }
}

export class SpoolLockedError extends InputError {
  override name = 'SpoolLockedError';
}

/** POST with fetch; network errors and timeouts are results, not exceptions. */
export const fetchPost: PostFn = async (url, body, timeoutMs, signal) => {
  try {
    const res = await fetch(url, {
      method: 'POST',
      // A 3xx is a failed attempt, never followed: the URL checks apply to the URL given only.
      redirect: 'manual',
      headers: { 'content-type': 'application/json' },
      body,
      signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
    });
    await res.arrayBuffer().catch(() => undefined);
    return { status: res.status };
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    if (err.name === 'TimeoutError') return { error: 'timeout', message: `no answer within ${timeoutMs} ms` };
    return { error: 'network', message: err.cause?.code ?? err.cause?.message ?? err.message };
  }
};

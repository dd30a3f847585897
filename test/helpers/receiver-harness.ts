// Test harness for `dit-poc serve`: the callback receiver process (receiver.mjs, driven over IPC)
// and the server process (the built CLI), both on loopback.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { assertCliBuilt, CLI } from './cli.js';

const RECEIVER = resolve(dirname(fileURLToPath(import.meta.url)), 'receiver.mjs');

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `pred` holds; fails with `what` after timeoutMs. */
export async function waitFor(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000, everyMs = 50): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export interface Callback {
  path: string;
  body: Record<string, unknown>;
}

export class Receiver {
  readonly callbacks: Callback[] = [];
  refused = 0;
  private seq = 0;
  private readonly acks = new Map<number, () => void>();

  private constructor(
    private readonly proc: ChildProcess,
    readonly port: number,
  ) {
    proc.on('message', (m: { type: string; id?: number; path?: string; body?: Record<string, unknown> }) => {
      if (m.type === 'callback') this.callbacks.push({ path: m.path!, body: m.body! });
      else if (m.type === 'refused') this.refused++;
      else if (m.type === 'ack') this.acks.get(m.id!)?.();
    });
  }

  static start(): Promise<Receiver> {
    return new Promise((resolvePromise, reject) => {
      const proc = fork(RECEIVER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      proc.once('error', reject);
      proc.once('message', (m: { type: string; port: number }) => {
        if (m.type === 'ready') resolvePromise(new Receiver(proc, m.port));
        else reject(new Error(`receiver: unexpected first message ${JSON.stringify(m)}`));
      });
    });
  }

  /** The callback base `url` a decentralized-api sends: {poc_callback_url}/v2/poc-batches/{model}. */
  base(model = 'wan-tiny'): string {
    return `http://127.0.0.1:${this.port}/v2/poc-batches/${model}`;
  }

  private command(cmd: Record<string, unknown>): Promise<void> {
    const id = ++this.seq;
    return new Promise((r) => {
      this.acks.set(id, () => {
        this.acks.delete(id);
        r();
      });
      this.proc.send({ ...cmd, id });
    });
  }

  mode(mode: 'ok' | 'error500'): Promise<void> {
    return this.command({ cmd: 'mode', mode });
  }

  /** Closes the port: connections are refused until up(). */
  down(): Promise<void> {
    return this.command({ cmd: 'down' });
  }

  up(): Promise<void> {
    return this.command({ cmd: 'up' });
  }

  generated(): Callback[] {
    return this.callbacks.filter((c) => c.path.endsWith('/generated'));
  }

  validated(): Callback[] {
    return this.callbacks.filter((c) => c.path.endsWith('/validated'));
  }

  /** nonce → vector_b64 over every /generated callback without request_id (duplicates must agree). */
  artifacts(filter: (c: Callback) => boolean = (c) => !('request_id' in c.body)): Map<number, string> {
    const out = new Map<number, string>();
    for (const c of this.generated().filter(filter)) {
      for (const a of c.body.artifacts as { nonce: number; vector_b64: string }[]) {
        const prev = out.get(a.nonce);
        if (prev !== undefined && prev !== a.vector_b64) throw new Error(`nonce ${a.nonce} arrived with two different vectors`);
        out.set(a.nonce, a.vector_b64);
      }
    }
    return out;
  }

  stop(): void {
    if (this.proc.connected) this.proc.disconnect();
    this.proc.kill('SIGKILL');
  }
}

export interface HttpAnswer {
  status: number;
  body: any;
  text: string;
}

// Servers still running when the test process exits (a failed test) are not left behind.
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

export class ServeProcess {
  readonly logs: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  url = '';
  headers: Record<string, string> = {};

  private constructor(readonly proc: ChildProcess) {
    live.add(proc);
    this.exited = new Promise((r) =>
      proc.once('exit', (code, signal) => {
        live.delete(proc);
        r({ code, signal });
      }),
    );
  }

  /**
   * Spawns `dit-poc serve ARGS` (add --port 0) and waits for its "listening" log line. `wrap`
   * turns the command line [node, cli, serve, …] into another (e.g. run inside a namespace).
   */
  static start(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000, wrap?: (argv: string[]) => string[]): Promise<ServeProcess> {
    assertCliBuilt();
    const argv = [process.execPath, CLI, 'serve', ...args];
    const [cmd, ...rest] = wrap ? wrap(argv) : argv;
    const proc = spawn(cmd, rest, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    const s = new ServeProcess(proc);
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => {
        proc.kill('SIGKILL');
        reject(new Error(`serve did not start within ${timeoutMs} ms:\n${s.logs.join('\n')}`));
      }, timeoutMs);
      let pending = '';
      proc.stdout!.on('data', (d: Buffer) => {
        pending += d.toString();
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          s.logs.push(line);
          if (!s.url) {
            try {
              const j = JSON.parse(line) as { msg?: string; url?: string };
              if (j.msg === 'listening' && j.url) {
                s.url = j.url;
                clearTimeout(timer);
                resolvePromise(s);
              }
            } catch {
              // not a log line
            }
          }
        }
      });
      proc.stderr!.on('data', (d: Buffer) => s.logs.push(...d.toString().split('\n').filter(Boolean)));
      void s.exited.then(({ code, signal }) => {
        if (!s.url) {
          clearTimeout(timer);
          reject(new Error(`serve exited (${code ?? signal}) before listening:\n${s.logs.join('\n')}`));
        }
      });
    });
  }

  /** JSON request; `raw` sends a string body as is. */
  async request(method: string, path: string, body?: unknown, opts: { raw?: string; headers?: Record<string, string> } = {}): Promise<HttpAnswer> {
    const headers: Record<string, string> = { ...this.headers, ...(opts.headers ?? {}) };
    let payload: string | undefined;
    if (opts.raw !== undefined) payload = opts.raw;
    else if (body !== undefined) payload = JSON.stringify(body);
    if (payload !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
    const res = await fetch(this.url + path, { method, headers, body: payload, signal: AbortSignal.timeout(60_000) });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON (metrics)
    }
    return { status: res.status, body: parsed, text };
  }

  /** Sum of a metric's samples whose labels include `labels`. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const { text } = await this.request('GET', '/metrics');
    let sum = 0;
    for (const line of text.split('\n')) {
      const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
      if (!m || m[1] !== name) continue;
      const l = m[2] ?? '';
      if (Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`))) sum += Number(m[3]);
    }
    return sum;
  }

  /** The parsed log lines (pino JSON). */
  logLines(): Record<string, unknown>[] {
    return this.logs.flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }

  kill(signal: NodeJS.Signals): void {
    this.proc.kill(signal);
  }

  /** SIGTERM and wait for the exit (SIGKILL after timeoutMs). */
  async stop(timeoutMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return this.exited;
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    const r = await this.exited;
    clearTimeout(t);
    return r;
  }
}

/** Nonces of every artifact line in a spool directory's open and sealed segments. */
export function spooledNonces(dir: string): number[] {
  if (!existsSync(dir)) return [];
  const out: number[] = [];
  for (const name of readdirSync(dir)) {
    if (!/^(seg|open)-.*\.ndjson$/.test(name)) continue;
    const lines = readFileSync(join(dir, name), 'utf8').split('\n');
    for (const line of lines.slice(2)) {
      try {
        const v = JSON.parse(line) as unknown;
        if (Array.isArray(v) && typeof v[0] === 'number') out.push(v[0]);
      } catch {
        // a torn last line
      }
    }
  }
  return out;
}

export function segmentFiles(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((n) => /^(seg|open)-.*\.ndjson$/.test(n)) : [];
}

/** The server flags every test uses: wan-tiny, random weights, loopback, fast callbacks. */
export function serveArgs(spoolDir: string, extra: string[] = []): string[] {
  return [
    '--model', 'wan-tiny', '--weights', 'random', '--grid', '2,4,4', '--threads', '2',
    '--port', '0', '--spool-dir', spoolDir,
    '--callback-interval', '0.3', '--retry-initial', '100', '--retry-max', '400', '--callback-timeout', '2',
    '--shutdown-timeout', '5',
    // Fast retries give up after --max-attempts; the tests keep receivers down for seconds.
    '--max-attempts', '1000',
    ...extra,
  ];
}

export const ROUND = { block_hash: 'C0FFEE42', block_height: 4242, public_key: '02a1b2c3' };
/** What a decentralized-api sends: params {model, seq_len} only (the server pins grid 2,4,4 = 32 tokens). */
export const PARAMS = { model: 'wan-tiny', seq_len: 32 };

export function initBody(url: string | null, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...ROUND, node_id: 0, node_count: 1, params: PARAMS, ...(url ? { url } : {}), ...extra };
}

// Progress on stderr: a bar for a person at a terminal; without a terminal (pipes, CI logs,
// services) one plain line every few seconds; nothing with --quiet.
import cliProgress from 'cli-progress';

import { openModel } from '../engine/nonce-runner.js';
import type { NativeModel } from '../engine/native.js';
import { InputError } from '../errors.js';
import type { RoundParams } from '../round/params.js';

let quiet = false;

/** --quiet: no progress and no notes on stderr (results and errors still print). */
export function setQuiet(q: boolean): void {
  quiet = q;
}

export function isQuiet(): boolean {
  return quiet;
}

export function interactive(): boolean {
  return !quiet && process.stderr.isTTY === true;
}

/** An informational line on stderr, unless --quiet. */
export function note(text: string): void {
  if (!quiet) process.stderr.write(text.endsWith('\n') ? text : text + '\n');
}

/** What the commands use of a progress bar. */
export interface Progress {
  start(total: number, value: number, payload?: Record<string, unknown>): void;
  update(value: number, payload?: Record<string, unknown>): void;
  stop(): void;
}

/** Seconds between two progress lines without a terminal. */
export const PROGRESS_LINE_INTERVAL_MS = 5000;

/** Without a terminal: `dit-poc: <label> 120/500 (24 %), rate 3.10/s, 38 s` at most every few seconds, and at the end. */
class ProgressLines implements Progress {
  private total = 0;
  private value = 0;
  private payload: Record<string, unknown> = {};
  private readonly t0 = performance.now();
  private last = 0;
  private started = false;
  private printed = -1;

  constructor(private readonly label: string) {}

  start(total: number, value: number, payload: Record<string, unknown> = {}): void {
    this.started = true;
    this.total = total;
    this.value = value;
    this.payload = { ...payload };
    this.last = performance.now();
  }

  update(value: number, payload: Record<string, unknown> = {}): void {
    this.value = value;
    Object.assign(this.payload, payload);
    if (performance.now() - this.last >= PROGRESS_LINE_INTERVAL_MS) this.print();
  }

  stop(): void {
    if (this.started && this.printed !== this.value && performance.now() - this.t0 >= PROGRESS_LINE_INTERVAL_MS) this.print();
    this.started = false;
  }

  private print(): void {
    this.last = performance.now();
    this.printed = this.value;
    const of = this.total > 0 ? `/${this.total} (${Math.floor((100 * this.value) / this.total)} %)` : '';
    const rate = this.payload.rate !== undefined ? `, ${String(this.payload.rate)}/s` : '';
    process.stderr.write(`dit-poc: ${this.label} ${this.value}${of}${rate}, ${((this.last - this.t0) / 1000).toFixed(0)} s\n`);
  }
}

/** A progress display for `format`'s first word as the label (a bar at a terminal). */
export function bar(format: string, opts: { clearOnComplete?: boolean } = {}): Progress | null {
  if (quiet) return null;
  if (process.stderr.isTTY) return new cliProgress.SingleBar({ format, stream: process.stderr, clearOnComplete: opts.clearOnComplete ?? false }, cliProgress.Presets.shades_classic);
  return new ProgressLines(format.split(/\s/)[0]);
}

/** Loads or generates the round's weights with a progress bar; load failures are input errors. */
export async function loadWithProgress(round: RoundParams, threads?: number, weightTransform?: string): Promise<NativeModel> {
  const b = bar('weights {bar} {value}/{total} tensors', { clearOnComplete: true });
  let started = false;
  try {
    return await openModel(round, threads, (done, total) => {
      if (!b) return;
      if (!started) {
        b.start(total, 0);
        started = true;
      }
      b.update(done);
    }, weightTransform);
  } catch (e) {
    throw new InputError(`cannot load the model (weights '${round.weights}', backend ${round.backend}): ${(e as Error).message}`);
  } finally {
    b?.stop();
  }
}

/** An AbortSignal raised by the first SIGINT (and SIGTERM); the caller stops cleanly. */
export function interruptSignal(): { signal: AbortSignal; dispose: () => void } {
  const ctl = new AbortController();
  const onSignal = () => ctl.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    signal: ctl.signal,
    dispose: () => {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    },
  };
}

// Progress bars on stderr, shown only to a person at a terminal (never in pipes or CI logs).
import cliProgress from 'cli-progress';

import { openModel } from '../engine/nonce-runner.js';
import type { NativeModel } from '../engine/native.js';
import { InputError } from '../errors.js';
import type { RoundParams } from '../round/params.js';

export function interactive(): boolean {
  return process.stderr.isTTY === true;
}

export function bar(format: string): cliProgress.SingleBar | null {
  return interactive() ? new cliProgress.SingleBar({ format, stream: process.stderr, clearOnComplete: false }, cliProgress.Presets.shades_classic) : null;
}

/** Loads or generates the round's weights with a progress bar; load failures are input errors. */
export async function loadWithProgress(round: RoundParams, threads?: number, weightTransform?: string): Promise<NativeModel> {
  const b = interactive() ? new cliProgress.SingleBar({ format: 'weights {bar} {value}/{total} tensors', stream: process.stderr, clearOnComplete: true }, cliProgress.Presets.shades_classic) : null;
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

// The shared piscina pool. Workers run the compiled tasks.js (dist/), so tests running TypeScript
// sources use the build that `npm test` makes first. Alone, the pool gets every core; beside an
// engine running T threads on N cores it gets the max(1, N - T) the engine leaves free, so the
// post-processing workers do not compete with the forward (issue 13 item 5).
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';

import type { ArtifactTask, CommitmentResult, CommitmentTask, ProofTask } from './tasks.js';

function taskFile(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const compiled = resolve(here, 'tasks.js');
  if (existsSync(compiled)) return compiled;
  const fromSource = resolve(here, '../../dist/src/workers/tasks.js');
  if (existsSync(fromSource)) return fromSource;
  throw new Error('worker tasks are not compiled: run `npm run build:ts`');
}

let pool: Piscina | null = null;
let poolSize = 0;
let engineThreads = 0;
let running = 0;

/** Workers for an engine of `threads` threads on `cores` cores: the cores it leaves free, at least one. */
export function workersBesideEngine(threads: number, cores = availableParallelism()): number {
  return Math.max(1, cores - threads);
}

/** Sizes the pool to the cores an engine of `threads` threads leaves free (0: no engine). */
export async function sizeWorkersBesideEngine(threads: number): Promise<void> {
  engineThreads = threads;
  // An idle pool of another size is replaced; a busy one (another user) is left as it is.
  if (pool && poolSize !== workersBesideEngine(threads) && running === 0) await closeWorkers();
}

function get(): Piscina {
  if (!pool) {
    poolSize = workersBesideEngine(engineThreads);
    pool = new Piscina({ filename: taskFile(), minThreads: 1, maxThreads: poolSize, idleTimeout: 2000 });
  }
  return pool;
}

async function run<T>(task: unknown, opts: { name: string; transferList?: ArrayBuffer[] }): Promise<T> {
  running++;
  try {
    return (await get().run(task, opts)) as T;
  } finally {
    running--;
  }
}

export function artifactsInWorker(t: ArtifactTask): Promise<(string | null)[]> {
  // The output buffer moves to the worker instead of being copied (the caller gives it up).
  return run(t, { name: 'artifacts', transferList: [t.y.buffer as ArrayBuffer] });
}

export function commitmentInWorker(t: CommitmentTask): Promise<CommitmentResult> {
  return run(t, { name: 'commitment' });
}

export function proofsInWorker(t: ProofTask): Promise<(string | null)[]> {
  return run(t, { name: 'proofs' });
}

export async function closeWorkers(): Promise<void> {
  if (pool) await pool.destroy();
  pool = null;
}

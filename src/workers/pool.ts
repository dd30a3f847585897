// The shared piscina pool, sized to the machine's cores. Workers run the compiled tasks.js
// (dist/), so tests running TypeScript sources use the build that `npm test` makes first.
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

function get(): Piscina {
  if (!pool) pool = new Piscina({ filename: taskFile(), maxThreads: Math.max(1, availableParallelism()), idleTimeout: 2000 });
  return pool;
}

export function artifactsInWorker(t: ArtifactTask): Promise<(string | null)[]> {
  // The output buffer moves to the worker instead of being copied (the caller gives it up).
  return get().run(t, { name: 'artifacts', transferList: [t.y.buffer as ArrayBuffer] });
}

export function commitmentInWorker(t: CommitmentTask): Promise<CommitmentResult> {
  return get().run(t, { name: 'commitment' });
}

export function proofsInWorker(t: ProofTask): Promise<(string | null)[]> {
  return get().run(t, { name: 'proofs' });
}

export async function closeWorkers(): Promise<void> {
  if (pool) await pool.destroy();
  pool = null;
}

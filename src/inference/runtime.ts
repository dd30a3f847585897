// The runtime a generation ran on (SPEC §13 step 5: engine version, backend, device, precision).
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { NativeModel, Precision } from '../engine/native.js';
import type { RuntimeInfo } from './manifest.js';

let version: string | undefined;

/** dit-poc's package version (package.json above this file, in src/ or dist/src/). */
export function engineVersion(): string {
  if (version) return version;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) return (version = `dit-poc ${(JSON.parse(readFileSync(p, 'utf8')) as { version: string }).version}`);
    dir = resolve(dir, '..');
  }
  return (version = 'dit-poc unknown');
}

export function runtimeInfo(model: NativeModel, precision: Precision, device: number): RuntimeInfo {
  const cpu = `${cpus()[0]?.model?.trim() ?? 'unknown CPU'} (${cpus().length} threads)`;
  return {
    engine_version: engineVersion(),
    backend: model.backend,
    device: model.backend === 'cuda' ? `CUDA device ${device}` : cpu,
    precision,
    threads: model.threads,
  };
}

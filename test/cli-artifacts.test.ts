// `dit-poc artifacts` as a user runs it: the JSON shape scripts rely on, exit codes, and
// SIGINT keeping what was computed.
import { describe, expect, it } from 'vitest';

import { decodeArtifact } from '../src/artifact/artifact.js';
import { runCli } from './helpers/cli.js';

const BASE = ['artifacts', '--model', 'wan-tiny', '--block-hash', 'AB12', '--public-key', '02ff', '--threads', '2'];

describe('dit-poc artifacts', () => {
  it('prints [{nonce, vector_b64, timestep, experts}] and is independent of batch size', async () => {
    const a = await runCli([...BASE, '--nonces', '3..8', '--json']);
    expect(a.code, a.stderr).toBe(0);
    const rows = JSON.parse(a.stdout);
    expect(rows.map((r: { nonce: number }) => r.nonce)).toEqual([3, 4, 5, 6, 7, 8]);
    for (const r of rows) {
      expect(Object.keys(r)).toEqual(['nonce', 'vector_b64', 'timestep', 'experts']);
      expect(decodeArtifact(r.vector_b64)).not.toBeNull();
      expect(r.timestep).toBeGreaterThanOrEqual(0);
      expect(r.timestep).toBeLessThanOrEqual(999);
      expect(r.experts).toHaveLength(4);
      expect(r.experts.every((b: number) => b === 0 || b === 1)).toBe(true);
    }
    const b = await runCli([...BASE, '--nonces', '5,8', '--batch', '1', '--threads', '1', '--json']);
    const rowsB = JSON.parse(b.stdout);
    expect(rowsB).toEqual([rows[2], rows[5]]);
  });

  it('exit code 2 with a clear message for bad input', async () => {
    const cases: [string[], RegExp][] = [
      [['--nonces', '5..1'], /empty/],
      [['--nonces', '-3'], /not a non-negative integer/],
      [['--nonces', '0..2', '--grid', '2,4'], /grid must be three positive integers/],
      [['--nonces', '0', '--weights', '/no/such/dir'], /cannot load the model \(weights '\/no\/such\/dir'/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli([...BASE, ...args, '--json']);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    const unknown = await runCli(['artifacts', '--model', 'wan9', '--block-hash', 'a', '--public-key', 'b', '--nonces', '0']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown model 'wan9'/);
  });

  it('SIGINT stops the run, prints every artifact computed so far and exits 130', async () => {
    const r = await runCli([...BASE, '--nonces', '0..100000', '--batch', '2', '--json'], {
      onSpawn: (p) => setTimeout(() => p.kill('SIGINT'), 2500),
    });
    expect(r.code).toBe(130);
    const rows = JSON.parse(r.stdout);
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.length).toBeLessThan(100001);
    expect(rows.map((x: { nonce: number }) => x.nonce)).toEqual(rows.map((_: unknown, i: number) => i));
    expect(r.stderr).toMatch(/interrupted: wrote \d+ of 100001 nonces/);
    const check = await runCli([...BASE, '--nonces', `0..${Math.min(2, rows.length - 1)}`, '--json']);
    expect(JSON.parse(check.stdout)).toEqual(rows.slice(0, Math.min(3, rows.length)));
  });
});

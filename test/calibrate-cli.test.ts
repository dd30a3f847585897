// `dit-poc calibrate` on wan-tiny with a small N, as CI runs it: the stable JSON, the report
// files, and a calibration file that `validate` then uses.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readCalibration } from '../src/calibration/calibration-file.js';
import { calibrationVariants } from '../src/calibration/variants.js';
import { addon } from '../src/engine/native.js';
import { modelInfo } from '../src/round/params.js';
import { runCli } from './helpers/cli.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-cal-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('dit-poc calibrate (wan-tiny, CPU, small N)', () => {
  it('separates honest variants from every cheat and writes the report and the defaults', async () => {
    const r = await runCli(['calibrate', '--model', 'wan-tiny', '--nonces', '16', '--threads', '2', '--out-dir', join(dir, 'report'), '--calibration-dir', join(dir, 'cal'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res).toHaveProperty('reference');
    expect(res.thresholds).toEqual({ p98: expect.any(Number), p999: expect.any(Number) });
    expect(res.power.length).toBeGreaterThan(0);
    const byName = new Map<string, { kind: string; auc: number | null; distances: Record<string, number>; mismatch_rate_at_threshold: number }>(
      res.deviations.map((d: { name: string }) => [d.name, d]),
    );
    for (const [name, d] of byName) {
      expect(Object.keys(d.distances)).toEqual(['p50', 'p98', 'p999', 'max']);
      if (d.kind === 'benign') {
        expect(d.auc, name).toBeNull();
        expect(d.mismatch_rate_at_threshold, name).toBe(0);
      } else {
        expect(d.auc, name).toBeGreaterThan(0.85);
      }
    }
    // --backend auto measures the CUDA backend against the CPU reference only where one answers.
    const hasCuda = addon().buildInfo().backends.includes('cuda');
    expect(byName.has('CUDA backend (device 0)')).toBe(hasCuda);
    // Scheduling changes are bit-exact on the CPU backend.
    expect(byName.get('batch size 1')!.distances.max).toBe(0);
    expect(byName.get('one thread')!.distances.max).toBe(0);
    expect(byName.get('weights in int4 (group 128)')!.mismatch_rate_at_threshold).toBe(1);
    const stat = res.stat_test;
    expect(stat.dist_threshold).toBeGreaterThan(byName.get('fp32 GEMM/attention inputs (a more precise backend)')!.distances.max);
    expect(stat.dist_threshold).toBeLessThan(byName.get('weights with 1 % noise')!.distances.p50);

    for (const f of ['report.md', 'calibration.json', 'distances.png', 'roc.png']) expect(existsSync(join(dir, 'report', f)), f).toBe(true);
    expect(readFileSync(join(dir, 'report', 'distances.png')).subarray(1, 4).toString()).toBe('PNG');
    expect(readFileSync(join(dir, 'report', 'report.md'), 'utf8')).toMatch(/## Chosen stat_test/);
    expect(readCalibration('wan-tiny', join(dir, 'cal'))!.stat_test.dist_threshold).toBe(stat.dist_threshold);
  });

  it('--backend cuda adds honest CUDA variants, or says why it cannot', async () => {
    const names = calibrationVariants(modelInfo('wan-tiny'), 16, 'h', 0).filter((v) => v.backend === 'cuda');
    expect(names.map((v) => [v.name, v.kind, v.batch])).toEqual([
      ['CUDA backend (device 0)', 'benign', undefined],
      ['CUDA backend (device 0), batch size 1', 'benign', 1],
    ]);
    expect(calibrationVariants(modelInfo('wan-tiny'), 16, 'h').some((v) => v.backend)).toBe(false);
    if (addon().buildInfo().backends.includes('cuda')) return;  // the GPU path runs in the test above
    const r = await runCli(['calibrate', '--model', 'wan-tiny', '--nonces', '2', '--backend', 'cuda', '--out-dir', join(dir, 'nocuda')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--backend cuda: (this build has no CUDA backend|no CUDA device answers) \(backends: cpu\)/);
    expect(existsSync(join(dir, 'nocuda'))).toBe(false);
  });

  it('--variants keeps the matching variants; honest-only runs have no ROC', async () => {
    const r = await runCli(['calibrate', '--model', 'wan-tiny', '--nonces', '4', '--threads', '2', '--variants', 'BATCH size|one thread', '--out-dir', join(dir, 'some'), '--no-write-calibration', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).deviations.map((d: { name: string }) => d.name)).toEqual(['batch size 1', 'one thread']);
    expect(existsSync(join(dir, 'some', 'distances.png'))).toBe(true);
    expect(existsSync(join(dir, 'some', 'roc.png'))).toBe(false);
    const cheatsOnly = await runCli(['calibrate', '--model', 'wan-tiny', '--nonces', '4', '--variants', 'fp8', '--out-dir', join(dir, 'cheats')]);
    expect(cheatsOnly.code).toBe(2);
    expect(cheatsOnly.stderr).toMatch(/no honest variant matches/);
    const bad = await runCli(['calibrate', '--model', 'wan-tiny', '--variants', '(']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/not a regular expression/);
  });

  it('the committed wan-tiny calibration is what validate uses by default', () => {
    const c = readCalibration('wan-tiny');
    expect(c).not.toBeNull();
    expect(c!.stat_test.dist_threshold).toBeGreaterThan(0);
    expect(c!.stat_test.dist_threshold).toBeLessThan(0.1);
    expect(readCalibration('wan2.2-t2v-a14b')).toBeNull();  // not calibrated yet: SPEC §10 defaults
  });
});

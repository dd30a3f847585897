// The CPU kernels' instruction-set paths (native/engine/cpu/cpu_isa.h): each one keeps SPEC §8
// (a nonce's bits do not depend on the batch or its position in it), the fp32 FMA paths agree
// bit for bit, the bf16 dot-product path stays within float rounding of them, and the path is
// reported by `info` and forced by DITPOC_CPU_ISA.
import { describe, expect, it } from 'vitest';

import { addon, type NativeModel } from '../src/engine/native.js';
import { otherCpuPaths } from '../src/calibration/variants.js';
import { runCli } from './helpers/cli.js';
import { bitsEqual, relL2, tinyRequest } from './helpers/native-model.js';

const build = addon().buildInfo();
const loadOn = (path: string): Promise<NativeModel> =>
  addon().loadModel({ model: 'wan-tiny', weights: 'random', weightsSeed: 'test-weights', threads: 2, backend: `cpu:${path}` });

describe('CPU paths', () => {
  it('the active path is one this machine runs; portable and avx2 exist on every x86-64 build', () => {
    expect(build.cpuPaths).toContain(build.simd);
    expect(build.cpuPaths).toContain('portable');
    if (process.arch === 'x64') expect(build.cpuPaths).toContain('avx2');
  });

  it('each path: a nonce alone equals itself inside a mixed batch; FMA paths agree bit for bit', async () => {
    const nonces = [10, 11, 12];
    const outs = new Map<string, Float32Array>();
    for (const path of build.cpuPaths) {
      const m = await loadOn(path);
      try {
        const batch = await m.forward(tinyRequest(nonces));
        const per = batch.length / nonces.length;
        const alone = await m.forward(tinyRequest([nonces[2]]));
        expect(bitsEqual(alone, batch.subarray(2 * per, 3 * per)), `${path}: nonce alone vs in batch`).toBe(true);
        outs.set(path, batch);
      } finally {
        m.dispose();
      }
    }
    const fma = build.cpuPaths.filter((p) => p !== 'avx512-bf16');
    for (const p of fma) expect(bitsEqual(outs.get(p)!, outs.get(fma[0])!), `${p} vs ${fma[0]}`).toBe(true);
    if (outs.has('avx512-bf16')) {
      const d = relL2(outs.get('avx512-bf16')!, outs.get(fma[0])!);
      console.log(`avx512-bf16 vs ${fma[0]}: relative L2 ${d.toExponential(2)}`);
      expect(d).toBeGreaterThan(0);  // a different rounding order, not the same kernels
      expect(d).toBeLessThan(1e-2);  // float rounding, far inside an artifact's threshold
    }
  });

  it('calibration compares the paths whose GEMMs round differently', () => {
    expect(otherCpuPaths({ active: 'avx512-bf16', available: ['portable', 'avx2', 'avx512', 'avx512-bf16'] })).toEqual(['avx512']);
    expect(otherCpuPaths({ active: 'avx512', available: ['portable', 'avx2', 'avx512', 'avx512-bf16'] })).toEqual(['avx512-bf16']);
    expect(otherCpuPaths({ active: 'avx2', available: ['portable', 'avx2'] })).toEqual([]);
  });

  it('DITPOC_CPU_ISA forces the path info reports, and an unknown or unrunnable one is a clear error', async () => {
    const r = await runCli(['info', '--json'], { env: { ...process.env, DITPOC_CPU_ISA: 'portable' } });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).build.simd).toBe('portable');
    const bad = await runCli(['info'], { env: { ...process.env, DITPOC_CPU_ISA: 'avx9000' } });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/DITPOC_CPU_ISA: unknown CPU path 'avx9000'/);
    await expect(Promise.resolve().then(() => loadOn('avx9000'))).rejects.toThrow(/unknown CPU path/);
  });
});

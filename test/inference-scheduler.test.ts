// The FlowUniPC port against golden vectors of the official Python scheduler
// (test/fixtures/unipc/make-golden.py) and against an independent float64 re-derivation.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { flowUniPCSchedule, planSteps, samplingDefaults } from '../src/inference/schedule.js';
import { FlowUniPCScheduler, initialSolverState } from '../src/inference/scheduler.js';
import { unipc64 } from './reference/unipc64.js';

interface GoldenCase {
  steps: number;
  shift: number;
  shape: number[];
  timesteps: number[];
  sigmas: number[];
  initial_sample: number[];
  model_outputs: number[][];
  samples: number[][];
}
const golden = JSON.parse(readFileSync(resolve(dirname(fileURLToPath(import.meta.url)), 'fixtures/unipc/golden.json'), 'utf8')) as {
  cases: GoldenCase[];
  schedules: { steps: number; shift: number; timesteps: number[]; sigmas: number[] }[];
};

/** Largest |a − b| relative to the largest |b|. */
function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0, scale = 0;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return err / scale;
}

describe('flowUniPCSchedule', () => {
  it('gives the official timesteps and float32 sigmas bit for bit', () => {
    for (const s of [...golden.schedules, ...golden.cases]) {
      const got = flowUniPCSchedule(s.steps, s.shift);
      expect(got.timesteps).toEqual(s.timesteps);
      expect(Array.from(got.sigmas)).toEqual(s.sigmas);
    }
  });

  it('splits the A14B default run into 26 high-noise and 14 low-noise steps', () => {
    const d = samplingDefaults('wan2.2-t2v-a14b');
    const plan = planSteps(flowUniPCSchedule(d.steps, d.shift).timesteps, d.guide, d.boundary, 2);
    expect(plan.filter((p) => p.expert === 0).length).toBe(26);
    expect(plan[25]).toEqual({ timestep: 877, expert: 0, guide: 4 });
    expect(plan[26]).toEqual({ timestep: 865, expert: 1, guide: 3 });
  });

  it('refuses bad steps, shifts and guide scales', () => {
    expect(() => flowUniPCSchedule(0, 5)).toThrow(/steps/);
    expect(() => flowUniPCSchedule(8, 0)).toThrow(/shift/);
    expect(() => planSteps([999], [3, 4], null, 1)).toThrow(/one guide scale/);
    expect(() => planSteps([999], [3, 4], 0.875, 1)).toThrow(/two experts/);
    expect(() => samplingDefaults('wan2.2-i2v-a14b')).toThrow(/no video-inference defaults/);
  });
});

describe('FlowUniPCScheduler', () => {
  it('follows the official float32 scheduler step by step', () => {
    for (const c of golden.cases) {
      const sched = new FlowUniPCScheduler(flowUniPCSchedule(c.steps, c.shift).sigmas);
      let sample: Float32Array = Float32Array.from(c.initial_sample);
      let worst = 0;
      for (let i = 0; i < c.steps; i++) {
        // Feed the official run's own sample each step so the comparison is per step.
        const next = sched.step(Float32Array.from(c.model_outputs[i]), i === 0 ? sample : Float32Array.from(c.samples[i - 1]));
        worst = Math.max(worst, maxRelErr(next, c.samples[i]));
        sample = next;
      }
      // float32 rounding of the same ops; only log/expm1 and the 2×2 solve may differ by an ulp.
      expect(worst, `steps ${c.steps} shift ${c.shift}`).toBeLessThan(2e-6);
    }
  });

  it('matches the official final sample when run on its own trajectory', () => {
    for (const c of golden.cases) {
      const sched = new FlowUniPCScheduler(flowUniPCSchedule(c.steps, c.shift).sigmas);
      let sample: Float32Array = Float32Array.from(c.initial_sample);
      for (let i = 0; i < c.steps; i++) sample = sched.step(Float32Array.from(c.model_outputs[i]), sample);
      expect(maxRelErr(sample, c.samples[c.steps - 1])).toBeLessThan(1e-5);
    }
  });

  it('agrees with an independent float64 re-derivation', () => {
    for (const c of golden.cases) {
      const { sigmas } = flowUniPCSchedule(c.steps, c.shift);
      const port = new FlowUniPCScheduler(sigmas);
      const ref = unipc64(sigmas);
      for (let i = 0; i < c.steps; i++) {
        const input = i === 0 ? Float32Array.from(c.initial_sample) : Float32Array.from(c.samples[i - 1]);
        const mo = Float32Array.from(c.model_outputs[i]);
        expect(maxRelErr(port.step(mo, input), ref.step(mo, input)), `step ${i}`).toBeLessThan(5e-6);
      }
    }
  });

  it('ends at the last x0 prediction (final sigma 0) and refuses a step past the end', () => {
    const { sigmas } = flowUniPCSchedule(3, 5);
    const sched = new FlowUniPCScheduler(sigmas);
    let x: Float32Array = Float32Array.from([0.5, -1.25, 2, 0.125]);
    const v = Float32Array.from([0.3, -0.7, 0.9, 1.1]);
    for (let i = 0; i < 3; i++) x = sched.step(v, x);
    expect(Array.from(x)).toEqual(Array.from(sched.state.modelOutputs[1]!));
    expect(() => sched.step(v, x)).toThrow(/all 3 steps are done/);
  });

  it('resumes from a copy of its state bit for bit', () => {
    const c = golden.cases[1];
    const { sigmas } = flowUniPCSchedule(c.steps, c.shift);
    const run = (stopAt: number | null) => {
      let sched = new FlowUniPCScheduler(sigmas);
      let x: Float32Array = Float32Array.from(c.initial_sample);
      for (let i = 0; i < c.steps; i++) {
        if (i === stopAt) {
          const s = sched.state;
          const copy = { ...s, modelOutputs: s.modelOutputs.map((m) => (m ? m.slice() : null)) as [Float32Array | null, Float32Array | null], lastSample: s.lastSample?.slice() ?? null };
          sched = new FlowUniPCScheduler(sigmas, copy);
        }
        x = sched.step(Float32Array.from(c.model_outputs[i]), x);
      }
      return x;
    };
    expect(Buffer.from(run(5).buffer).equals(Buffer.from(run(null).buffer))).toBe(true);
    expect(() => new FlowUniPCScheduler(sigmas, { ...initialSolverState(), stepIndex: 99 })).toThrow(/step index/);
  });
});

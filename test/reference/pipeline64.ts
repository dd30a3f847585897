/**
 * Independent float64 reference of the official Wan2.2 text-to-video sampling loop
 * (wan/text2video.py with the UniPC solver), written from the official code's description in
 * research/wan22-architecture.md §2.7 and SPEC §13, not from src/inference: sigmas
 * linspace(1 − 1/1000, 0, S+1)[:-1] shifted by s·σ/(1 + (s−1)·σ), timesteps ⌊1000·σ⌋, the
 * high-noise expert and g_high while t ≥ boundary·1000, pred = u + g·(c − u), and the float64
 * UniPC of ./unipc64.ts. Everything is float64; `denoise` is the model (e.g. the float64
 * reference forward).
 */
import { unipc64 } from './unipc64.js';

export interface Pipeline64Request {
  steps: number;
  shift: number;
  guide: [number, number];
  boundary: number | null;
}

export type Denoise64 = (latent: Float64Array, timestep: number, expert: number, context: 'cond' | 'uncond') => Float64Array | Promise<Float64Array>;

export function schedule64(steps: number, shift: number): { timesteps: number[]; sigmas: number[] } {
  const sigmas: number[] = [];
  const timesteps: number[] = [];
  const top = 1 - 1 / 1000;
  for (let i = 0; i < steps; i++) {
    const s = top - (top * i) / steps;
    const shifted = (shift * s) / (1 + (shift - 1) * s);
    sigmas.push(shifted);
    timesteps.push(Math.floor(shifted * 1000));
  }
  sigmas.push(0);
  return { timesteps, sigmas };
}

export async function pipeline64(req: Pipeline64Request, noise: ArrayLike<number>, denoise: Denoise64): Promise<Float64Array> {
  const { timesteps, sigmas } = schedule64(req.steps, req.shift);
  const solver = unipc64(sigmas);
  let x: Float64Array = Float64Array.from(noise);
  for (const t of timesteps) {
    const high = req.boundary !== null && t >= req.boundary * 1000;
    const expert = req.boundary === null ? 0 : high ? 0 : 1;
    const g = high ? req.guide[1] : req.guide[0];
    const u = await denoise(x, t, expert, 'uncond');
    const c = await denoise(x, t, expert, 'cond');
    const pred = u.map((v, i) => v + g * (c[i] - v));
    x = solver.step(pred, x);
  }
  return x;
}

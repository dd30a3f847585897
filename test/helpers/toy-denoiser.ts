// A cheap deterministic stand-in for the DiT in tests of the loop's bookkeeping (checkpoints,
// resume, manifests, segment replay): its output depends on the latent, the timestep, the
// expert and the context, like the model's, so skipped steps, a wrong expert or CFG off move the
// result. The real model's loop is tested against the float64 reference elsewhere.
import type { Denoiser, DenoiseCall } from '../../src/inference/denoiser.js';

const f = Math.fround;

export function toyDenoiser(opts: { noise?: number } = {}): Denoiser & { calls: number } {
  const d = {
    calls: 0,
    async denoise(call: DenoiseCall): Promise<Float32Array> {
      d.calls++;
      const n = call.latent.length;
      const out = new Float32Array(n * call.contexts.length);
      const a = call.expert === 0 ? 0.9 : 1.1;
      const t = call.timestep / 1000;
      call.contexts.forEach((ctx, c) => {
        let mean = 0;
        for (let i = 0; i < 64; i++) mean += ctx[i];
        mean /= 64;
        for (let k = 0; k < n; k++) {
          const x = call.latent[k];
          // a small relative perturbation stands in for another runtime's rounding
          const jitter = opts.noise ? 1 + opts.noise * Math.sin(k * 12.9898 + call.timestep) : 1;
          out[c * n + k] = f((Math.tanh(a * x) * (0.6 + 0.4 * t) + mean * 0.5 + 0.05 * Math.sin(k)) * jitter);
        }
      });
      return out;
    },
  };
  return d;
}

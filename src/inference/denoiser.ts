// The model as the generation loop sees it: f(x, t, contexts) on one expert (SPEC §13 step 4).
// The engine's denoiser forward serves it in production; tests drive the same loop with an
// independent float64 reference.
import type { NativeModel, Precision } from '../engine/native.js';

export interface DenoiseCall {
  /** [C_in, F, H, W] latent grid. */
  latentShape: [number, number, number, number];
  latent: Float32Array;
  /** Integer timestep in [0, 999]. */
  timestep: number;
  /** Index into the model's experts; every layer runs on it. */
  expert: number;
  /** Each [512, textDim] (zero-padded); CFG passes [context_null, context] in one batch. */
  contexts: Float32Array[];
}

export interface Denoiser {
  /** One output [C_out, F, H, W] per context, concatenated in the contexts' order. */
  denoise(call: DenoiseCall): Promise<Float32Array>;
}

/** The native engine's denoiser forward at the given precision. */
export function nativeDenoiser(model: NativeModel, precision: Precision): Denoiser {
  return {
    denoise: (call) => model.denoise({ ...call, ctxLen: call.contexts[0].length / model.config.textDim, precision }),
  };
}

// Turns nonces into artifacts: seeds and routing (src/inputs) → native forward → artifact.
import { computeArtifact } from '../artifact/artifact.js';
import { deriveNonceInputs, householderSeeds, type NonceInputs } from '../inputs/nonce-inputs.js';
import type { RoundParams } from '../round/params.js';
import { checkDeviations, type Deviations } from './deviations.js';
import { addon, type NativeModel } from './native.js';
import { isOutOfMemory } from './out-of-memory.js';

export interface NonceResult {
  nonce: number;
  timestep: number;
  experts: number[];
  /** base64 of the fp16 artifact, or null when the output was non-finite (no artifact). */
  vectorB64: string | null;
}

export async function openModel(
  round: RoundParams,
  threads?: number,
  onProgress?: (done: number, total: number) => void,
  weightTransform?: string,
): Promise<NativeModel> {
  return addon().loadModel(
    { model: round.model, weights: round.weights, weightsSeed: round.weightsSeed, threads, weightTransform, backend: round.backend, device: round.device },
    onProgress,
  );
}

export class NonceRunner {
  private readonly hhSeeds: Uint32Array;
  private readonly skipLayers: Uint8Array | undefined;

  constructor(
    readonly model: NativeModel,
    readonly round: RoundParams,
    readonly deviations: Deviations = {},
  ) {
    if (model.config.id !== round.model)
      throw new Error(`model ${model.config.id} is loaded, the round is for ${round.model}`);
    const layers = model.config.numLayers;
    checkDeviations(deviations, layers);
    this.hhSeeds = householderSeeds(deviations.householderBlockHash ?? round.blockHash, layers);
    if (deviations.skipLayers?.length) {
      this.skipLayers = new Uint8Array(layers);
      for (const l of deviations.skipLayers) this.skipLayers[l] = 1;
    }
  }

  /** Output values per nonce: L · 4 · C_out. */
  get outputSize(): number {
    const [f, h, w] = this.round.grid;
    const c = this.model.config;
    return f * h * w * c.patch[0] * c.patch[1] * c.patch[2] * c.outChannels;
  }

  inputs(nonce: number): NonceInputs {
    const inp = deriveNonceInputs(
      {
        blockHash: this.round.blockHash,
        publicKey: this.round.publicKey,
        numLayers: this.model.config.numLayers,
        strongerRng: this.round.strongerRng,
      },
      nonce,
    );
    const d = this.deviations;
    if (d.singleExpert !== undefined) inp.experts.fill(d.singleExpert);
    if (d.timestepShift) inp.timestep = (((inp.timestep + d.timestepShift) % 1000) + 1000) % 1000;
    return inp;
  }

  /** Raw model outputs y for a batch, [nonces.length, outputSize]. */
  async forward(inputs: NonceInputs[]): Promise<Float32Array> {
    return this.model.forward({
      grid: this.round.grid,
      ctxLen: this.round.ctxLen,
      precision: this.round.precision,
      householderSeeds: this.hhSeeds,
      skipLayers: this.skipLayers,
      nonces: inputs.map((n) => ({
        latentSeed: n.latentSeed,
        latentWords: n.latentSeedWords,
        contextSeed: n.contextSeed,
        timestep: n.timestep,
        experts: n.experts,
      })),
    });
  }

  /**
   * One batch of nonces to artifacts. A batch that fails for lack of memory is split in halves,
   * each run on its own (down to single nonces, whose failure is final): never retried as is.
   */
  async run(nonces: number[]): Promise<NonceResult[]> {
    try {
      return await this.runOnce(nonces);
    } catch (e) {
      if (nonces.length < 2 || !isOutOfMemory(e)) throw e;
      const half = Math.ceil(nonces.length / 2);
      this.onOutOfMemory?.(nonces.length, half);
      return [...(await this.run(nonces.slice(0, half))), ...(await this.run(nonces.slice(half)))];
    }
  }

  /** Told when a batch of `size` ran out of memory and is retried in batches of `half`. */
  onOutOfMemory?: (size: number, half: number) => void;

  private async runOnce(nonces: number[]): Promise<NonceResult[]> {
    const inputs = nonces.map((n) => this.inputs(n));
    const y = await this.forward(inputs);
    const m = this.outputSize;
    return inputs.map((inp, i) => {
      const a = computeArtifact(
        y.subarray(i * m, (i + 1) * m),
        this.round.blockHash,
        this.round.publicKey,
        inp.nonce,
        this.round.kDim,
      );
      return {
        nonce: inp.nonce,
        timestep: inp.timestep,
        experts: Array.from(inp.experts),
        vectorB64: a ? a.vectorB64 : null,
      };
    });
  }
}

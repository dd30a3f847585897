// Turns nonces into artifacts: seeds and routing (src/inputs) → native forward → artifact.
// Honest rounds go to the engine as bare nonces (forwardArtifacts derives, runs and reduces them
// in native code, the same bits); deviations and stand-in engines take the TypeScript path.
import { deriveNonceInputs, householderSeeds, type NonceInputs } from '../inputs/nonce-inputs.js';
import type { RoundParams } from '../round/params.js';
import { checkDeviations, type Deviations } from './deviations.js';
import { addon, type NativeModel } from './native.js';
import { isOutOfMemory } from './out-of-memory.js';
import { artifactsInWorker } from '../workers/pool.js';

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
  /** The engine derives the inputs and reduces the outputs (no deviation touches the inputs). */
  private readonly inEngine: boolean;

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
    const d = deviations;
    const inputsAsSpecified = d.singleExpert === undefined && !d.skipLayers?.length && d.householderBlockHash === undefined && !d.timestepShift;
    this.inEngine = inputsAsSpecified && typeof model.forwardArtifacts === 'function';
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
   * The artifacts of a batch of nonces, base64, null where the output was non-finite. In the
   * engine when it can (nothing per nonce on this thread), else forward() here and the
   * reduction on a worker thread.
   */
  async artifacts(nonces: number[]): Promise<(string | null)[]> {
    const r = this.round;
    if (!this.inEngine) {
      const y = await this.forward(nonces.map((n) => this.inputs(n)));
      return artifactsInWorker({ y, nonces, blockHash: r.blockHash, publicKey: r.publicKey, kDim: r.kDim });
    }
    const { vectors, finite } = await this.model.forwardArtifacts!({
      grid: r.grid,
      ctxLen: r.ctxLen,
      precision: r.precision,
      blockHash: r.blockHash,
      publicKey: r.publicKey,
      strongerRng: r.strongerRng,
      kDim: r.kDim,
      nonces,
    });
    const bytes = Buffer.from(vectors.buffer, vectors.byteOffset, vectors.byteLength);
    const size = 2 * r.kDim;
    return nonces.map((_, i) => (finite[i] ? bytes.toString('base64', i * size, (i + 1) * size) : null));
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
    const vectors = await this.artifacts(nonces);
    return nonces.map((nonce, i) => {
      const inp = this.inputs(nonce);
      return { nonce, timestep: inp.timestep, experts: Array.from(inp.experts), vectorB64: vectors[i] };
    });
  }
}

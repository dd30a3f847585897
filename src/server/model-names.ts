// The names a served model answers to, as vLLM does: its Hugging Face ids (official and
// -Diffusers layouts, which the chain's governance models use), dit-poc's registry id, and every
// --served-model-name. A request for any of them is a request for this model.
import { InputError } from '../errors.js';

/** Hugging Face repositories of each registry model (the -Diffusers layout holds the same weights). */
const HF_IDS: Record<string, string[]> = {
  'wan2.2-t2v-a14b': ['Wan-AI/Wan2.2-T2V-A14B'],
  'wan2.2-i2v-a14b': ['Wan-AI/Wan2.2-I2V-A14B'],
  'wan2.2-ti2v-5b': ['Wan-AI/Wan2.2-TI2V-5B'],
  'wan2.1-t2v-1.3b': ['Wan-AI/Wan2.1-T2V-1.3B'],
};

/** Every Hugging Face id of a registry model, with its -Diffusers variant; [] for test models. */
export function huggingFaceIds(model: string): string[] {
  return (HF_IDS[model] ?? []).flatMap((id) => [id, `${id}-Diffusers`]);
}

/** The registry id a Hugging Face id (or a registry id) stands for; null when unknown. */
export function registryIdOf(name: string): string | null {
  for (const model of Object.keys(HF_IDS)) {
    if (name === model || huggingFaceIds(model).includes(name)) return model;
  }
  return null;
}

export class ServedNames {
  /** The name /v1/models lists first: the last /inference/up name, else the first --served-model-name, else the HF id. */
  private primary: string;
  private readonly names: string[];

  constructor(
    readonly model: string,
    servedModelNames: string[] = [],
  ) {
    for (const n of servedModelNames) {
      if (n.trim() === '' || n.length > 256) throw new InputError(`--served-model-name must be 1 to 256 characters, got '${n}'`);
      const other = registryIdOf(n);
      if (other !== null && other !== model) throw new InputError(`--served-model-name '${n}' names the model ${other}, but this node serves ${model}`);
    }
    this.names = [...new Set([...servedModelNames, ...huggingFaceIds(model), model])];
    this.primary = this.names[0];
  }

  /** Every name, the one to list first first. */
  get all(): string[] {
    return [this.primary, ...this.names.filter((n) => n !== this.primary)];
  }

  get listed(): string {
    return this.primary;
  }

  serves(name: string): boolean {
    return this.names.includes(name);
  }

  /** /inference/up with one of the names: /v1/models lists it first from now on (the DAPI compares it). */
  select(name: string): void {
    if (!this.serves(name)) throw new InputError(`this node serves ${this.model} (names: ${this.names.join(', ')}), not '${name}'`);
    this.primary = name;
  }
}

// The names a served model answers to: Hugging Face ids (and -Diffusers), the registry id and
// --served-model-name, as vLLM accepts its served names.
import { describe, expect, it } from 'vitest';

import { huggingFaceIds, registryIdOf, ServedNames } from '../src/server/model-names.js';

describe('served model names', () => {
  it('maps the chain\'s Hugging Face ids, both layouts, to the registry model', () => {
    expect(registryIdOf('Wan-AI/Wan2.2-T2V-A14B')).toBe('wan2.2-t2v-a14b');
    expect(registryIdOf('Wan-AI/Wan2.2-T2V-A14B-Diffusers')).toBe('wan2.2-t2v-a14b');
    expect(registryIdOf('Wan-AI/Wan2.1-T2V-1.3B-Diffusers')).toBe('wan2.1-t2v-1.3b');
    expect(registryIdOf('Wan-AI/Wan2.2-TI2V-5B')).toBe('wan2.2-ti2v-5b');
    expect(registryIdOf('wan2.2-i2v-a14b')).toBe('wan2.2-i2v-a14b');
    expect(registryIdOf('wan-ai/wan2.2-t2v-a14b')).toBeNull();
    expect(huggingFaceIds('wan-tiny')).toEqual([]);
  });

  it('serves every alias; lists a --served-model-name first, then whatever inference/up named', () => {
    const n = new ServedNames('wan2.2-t2v-a14b', ['gonka/wan-video']);
    for (const name of ['gonka/wan-video', 'Wan-AI/Wan2.2-T2V-A14B', 'Wan-AI/Wan2.2-T2V-A14B-Diffusers', 'wan2.2-t2v-a14b']) expect(n.serves(name)).toBe(true);
    expect(n.serves('Wan-AI/Wan2.2-I2V-A14B')).toBe(false);
    expect(n.listed).toBe('gonka/wan-video');
    n.select('Wan-AI/Wan2.2-T2V-A14B-Diffusers');
    expect(n.all[0]).toBe('Wan-AI/Wan2.2-T2V-A14B-Diffusers');
    expect(() => n.select('Wan-AI/Wan2.2-I2V-A14B')).toThrow(/serves wan2.2-t2v-a14b/);
    expect(new ServedNames('wan2.2-t2v-a14b').listed).toBe('Wan-AI/Wan2.2-T2V-A14B');
  });

  it('refuses a --served-model-name that is another model\'s id', () => {
    expect(() => new ServedNames('wan2.1-t2v-1.3b', ['Wan-AI/Wan2.2-T2V-A14B'])).toThrow(/names the model wan2.2-t2v-a14b, but this node serves wan2.1-t2v-1.3b/);
    expect(() => new ServedNames('wan-tiny', [' '])).toThrow(/--served-model-name must be 1 to 256 characters/);
  });
});

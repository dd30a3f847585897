// `serve --devices`: CPU workers share the cores; GPU ordinals need a build with CUDA.
import { describe, expect, it } from 'vitest';

import { addon } from '../src/engine/native.js';
import { parseDevices } from '../src/server/devices.js';

describe('parseDevices', () => {
  it('splits the threads among CPU workers', () => {
    expect(parseDevices('cpu', 4).map((d) => [d.kind, d.threads])).toEqual([['cpu', 4]]);
    expect(parseDevices('cpu,cpu', 4).map((d) => d.threads)).toEqual([2, 2]);
  });

  it('GPU ordinals follow the build: refused without CUDA, one worker per GPU with it', () => {
    if (addon().buildInfo().backends.includes('cuda')) {
      expect(parseDevices('0,1').map((d) => d.ordinal)).toEqual([0, 1]);
    } else {
      expect(() => parseDevices('0')).toThrow(/GPU 0 requested, but this build has no CUDA backend/);
    }
  });

  it('rejects malformed lists', () => {
    expect(() => parseDevices('0,0')).toThrow(/GPU 0 twice/);
    expect(() => parseDevices('tpu')).toThrow(/neither 'cpu' nor a GPU ordinal/);
  });
});

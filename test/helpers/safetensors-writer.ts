// Writes .safetensors files (8-byte LE header length, JSON header, raw little-endian data) so
// tests can build checkpoints in the official and diffusers layouts.
import { writeFileSync } from 'node:fs';

export type StDtype = 'F32' | 'BF16' | 'F16';

export interface StTensor {
  shape: number[];
  values: Float32Array;
}

// float32 → binary16 bits, nearest even (test values are chosen fp16-representable).
function f16Bits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  const man = u & 0x7fffff;
  if (exp <= 0) {
    if (exp < -10) return sign;
    const m = (man | 0x800000) >>> (1 - exp);
    const half = m & 0x1fff, base = m >>> 13;
    return sign | (base + (half > 0x1000 || (half === 0x1000 && base & 1) ? 1 : 0));
  }
  if (exp >= 31) return sign | 0x7c00;
  const half = man & 0x1fff, base = (exp << 10) | (man >>> 13);
  return sign | (base + (half > 0x1000 || (half === 0x1000 && base & 1) ? 1 : 0));
}

export function encodeTensor(values: Float32Array, dtype: StDtype): Buffer {
  if (dtype === 'F32') return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint16Array(values.length);
  if (dtype === 'BF16') {
    const u = new Uint32Array(values.buffer, values.byteOffset, values.length);
    for (let i = 0; i < u.length; i++) out[i] = ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16) & 0xffff;
  } else {
    for (let i = 0; i < values.length; i++) out[i] = f16Bits(values[i]);
  }
  return Buffer.from(out.buffer);  // little-endian hosts, as safetensors requires
}

export function writeSafetensors(path: string, tensors: Map<string, StTensor>, dtype: StDtype): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const blobs: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    const data = encodeTensor(t.values, dtype);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + data.length] };
    blobs.push(data);
    offset += data.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(path, Buffer.concat([len, Buffer.from(json), ...blobs]));
}

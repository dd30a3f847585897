// Small .safetensors reader and F32 writer for the inference files (contexts, noise, latents,
// checkpoints): 8-byte little-endian header length, JSON header, raw little-endian data.
// Everything wrong with a file is an InputError naming the file, never a crash.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';

import { InputError } from '../errors.js';

export interface Tensor {
  shape: number[];
  values: Float32Array;
}

export interface SafetensorsFile {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

const MAX_HEADER = 100 * 1024 * 1024;

function bf16ToF32(bits: Uint16Array): Float32Array {
  const u = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
  return new Float32Array(u.buffer);
}

function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const man = h & 0x3ff;
    if (exp === 0) out[i] = sign * man * 2 ** -24;
    else if (exp === 31) out[i] = man ? NaN : sign * Infinity;
    else out[i] = sign * (1 + man / 1024) * 2 ** (exp - 15);
  }
  return out;
}

const DTYPE_BYTES: Record<string, number> = { F32: 4, BF16: 2, F16: 2 };

/** Parses a safetensors buffer; F32, BF16 and F16 tensors come back as float32. */
export function parseSafetensors(buf: Buffer, what: string): SafetensorsFile {
  if (buf.length < 8) throw new InputError(`${what}: not a safetensors file (${buf.length} bytes)`);
  const headerLen = Number(buf.readBigUInt64LE(0));
  if (headerLen > MAX_HEADER || 8 + headerLen > buf.length) throw new InputError(`${what}: truncated or not a safetensors file (header length ${headerLen})`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new InputError(`${what}: safetensors header is not valid JSON: ${(e as Error).message}`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw new InputError(`${what}: safetensors header is not an object`);
  const data = buf.subarray(8 + headerLen);
  const tensors = new Map<string, Tensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = Object.fromEntries(Object.entries((entry ?? {}) as Record<string, unknown>).map(([k, v]) => [k, String(v)]));
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = String(e?.dtype);
    const bytes = DTYPE_BYTES[dtype];
    if (!bytes) throw new InputError(`${what}: tensor '${name}' has dtype ${dtype} (F32, BF16 or F16 expected)`);
    const shape = e.shape;
    const offsets = e.data_offsets;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new InputError(`${what}: tensor '${name}' has a bad shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new InputError(`${what}: tensor '${name}' has bad data_offsets`);
    const [begin, end] = offsets as [number, number];
    const numel = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end - begin !== numel * bytes || end > data.length || begin > end) {
      throw new InputError(`${what}: tensor '${name}' data does not fit its shape [${(shape as number[]).join(', ')}] or the file is truncated`);
    }
    const raw = Buffer.from(data.subarray(begin, end)); // copy: aligned, owned
    const values = dtype === 'F32'
      ? new Float32Array(raw.buffer, raw.byteOffset, numel)
      : dtype === 'BF16'
        ? bf16ToF32(new Uint16Array(raw.buffer, raw.byteOffset, numel))
        : f16ToF32(new Uint16Array(raw.buffer, raw.byteOffset, numel));
    tensors.set(name, { shape: shape as number[], values });
  }
  return { tensors, metadata };
}

export function readSafetensors(path: string, what = path): SafetensorsFile {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new InputError(`${what}: cannot read: ${(e as Error).message}`);
  }
  return parseSafetensors(buf, what);
}

/** Serializes F32 tensors (in the map's order) with string metadata. */
export function encodeSafetensors(tensors: Map<string, Tensor>, metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const blobs: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== t.values.length) throw new Error(`tensor '${name}': shape [${t.shape.join(', ')}] does not hold ${t.values.length} values`);
    const data = Buffer.from(t.values.buffer, t.values.byteOffset, t.values.byteLength);
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + data.length] };
    blobs.push(data);
    offset += data.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json), ...blobs]);
}

/** Writes a file whole or not at all (temporary name, then rename), so no half file looks complete. */
export function writeFileAtomic(path: string, data: Buffer | string): void {
  const tmp = `${path}.partial-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

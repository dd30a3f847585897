// Reads a bundle, streaming line by line, and checks its structure. Semantic checks of the
// commitment (root, count, proofs) are the validator's and `inspect`'s job.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';

import { InputError } from '../errors.js';
import { BUNDLE_FORMAT, BUNDLE_VERSION, type BundleArtifact, type BundleEnd, type BundleHeader } from './format.js';

export interface Bundle {
  header: BundleHeader;
  artifacts: BundleArtifact[];
  dropped: number[];
  /** null when the file has no end record (truncated). */
  end: BundleEnd | null;
  /** Lines after the last complete record that could not be parsed (a torn final write). */
  tornTail: boolean;
}

export class BundleFormatError extends InputError {
  override name = 'BundleFormatError';
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const INT32_MAX = 2 ** 31 - 1;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkHeader(v: unknown, path: string): BundleHeader {
  const bad = (m: string) => new BundleFormatError(`${path}: bad header: ${m}`);
  if (!isObj(v) || v.type !== 'header') throw bad('the first line is not a header record');
  if (v.format !== BUNDLE_FORMAT) throw bad(`format is ${JSON.stringify(v.format)}, expected "${BUNDLE_FORMAT}"`);
  if (v.version !== BUNDLE_VERSION) throw bad(`version ${JSON.stringify(v.version)} is not supported (this build reads ${BUNDLE_VERSION})`);
  const r = v.round, n = v.node;
  if (!isObj(r) || !isObj(n)) throw bad('round and node must be objects');
  for (const k of ['model', 'block_hash', 'public_key', 'weights', 'weights_seed', 'weights_identity', 'precision'])
    if (typeof r[k] !== 'string' || r[k] === '') throw bad(`round.${k} must be a non-empty string`);
  for (const k of ['block_height', 'ctx_len', 'k_dim'])
    if (!Number.isInteger(r[k]) || (r[k] as number) < 0) throw bad(`round.${k} must be a non-negative integer`);
  if (!Array.isArray(r.grid) || r.grid.length !== 3 || !r.grid.every((x) => Number.isInteger(x) && x > 0)) throw bad('round.grid must be [F, H, W]');
  if (typeof r.stronger_rng !== 'boolean') throw bad('round.stronger_rng must be a boolean');
  for (const k of ['node_id', 'node_count', 'group_id', 'n_groups'])
    if (!Number.isInteger(n[k]) || (n[k] as number) < 0) throw bad(`node.${k} must be a non-negative integer`);
  return v as unknown as BundleHeader;
}

function checkNonce(v: unknown, where: string): number {
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > INT32_MAX) throw new BundleFormatError(`${where}: nonce ${JSON.stringify(v)} is not a non-negative int32`);
  return v as number;
}

export async function readBundle(path: string, opts: { allowTruncated?: boolean } = {}): Promise<Bundle> {
  let stream;
  try {
    stream = createReadStream(path);
    await new Promise((res, rej) => stream!.once('open', res).once('error', rej));
  } catch (e) {
    throw new InputError(`cannot read bundle ${path}: ${(e as Error).message}`);
  }
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let header: BundleHeader | null = null;
  let end: BundleEnd | null = null;
  let tornTail = false;
  let expectedSeq = 0;
  let lineNo = 0;
  const artifacts: BundleArtifact[] = [];
  const dropped: number[] = [];
  for await (const line of lines) {
    lineNo++;
    const where = `${path}:${lineNo}`;
    if (tornTail) throw new BundleFormatError(`${where}: records after a damaged line`);
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch {
      // Only the final line may be torn (a crash mid-write); anything else is corruption.
      tornTail = true;
      continue;
    }
    if (!header) {
      header = checkHeader(rec, path);
      continue;
    }
    if (end) throw new BundleFormatError(`${where}: records after the end record`);
    if (!isObj(rec)) throw new BundleFormatError(`${where}: not a record`);
    if (rec.type === 'batch') {
      if (rec.seq !== expectedSeq) throw new BundleFormatError(`${where}: batch seq ${JSON.stringify(rec.seq)}, expected ${expectedSeq} (a batch is missing or repeated)`);
      expectedSeq++;
      if (!Array.isArray(rec.artifacts) || !Array.isArray(rec.dropped)) throw new BundleFormatError(`${where}: batch needs artifacts and dropped arrays`);
      for (const a of rec.artifacts) {
        if (!Array.isArray(a) || a.length !== 2 || typeof a[1] !== 'string' || !BASE64.test(a[1]) || a[1].length % 4 !== 0)
          throw new BundleFormatError(`${where}: artifact ${JSON.stringify(a)} is not [nonce, base64]`);
        artifacts.push({ nonce: checkNonce(a[0], where), vectorB64: a[1] });
      }
      for (const d of rec.dropped) dropped.push(checkNonce(d, where));
    } else if (rec.type === 'end') {
      if (!Number.isInteger(rec.count) || (rec.count as number) < 0) throw new BundleFormatError(`${where}: end.count must be a non-negative integer`);
      if (typeof rec.root_hex !== 'string' || !/^[0-9a-f]{64}$/.test(rec.root_hex)) throw new BundleFormatError(`${where}: end.root_hex must be 64 lower-case hex digits`);
      end = rec as unknown as BundleEnd;
    } else {
      throw new BundleFormatError(`${where}: unknown record type ${JSON.stringify(rec.type)}`);
    }
  }
  if (!header) throw new BundleFormatError(`${path}: empty file or no header`);
  if (!end && !opts.allowTruncated)
    throw new BundleFormatError(`${path}: truncated: no end record after ${artifacts.length} artifacts (the sprint did not finish; \`dit-poc inspect --repair OUT\` closes it)`);
  if (end && tornTail) throw new BundleFormatError(`${path}: a damaged line precedes the end record`);
  return { header, artifacts, dropped, end, tornTail };
}

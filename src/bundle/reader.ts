// Reads a bundle, streaming line by line with a bound on the line length, and checks its
// structure and the header rule (headerProblems). Semantic checks of the commitment (root, count,
// proofs) are the validator's and `inspect`'s job.
import { createReadStream } from 'node:fs';

import { InputError } from '../errors.js';
import { checkAssignment } from '../protocol/nonce-assignment.js';
import { makeRound, weightsIdentity } from '../round/params.js';
import {
  BUNDLE_FORMAT, BUNDLE_VERSION, MAX_BUNDLE_LINE_BYTES, type BundleArtifact, type BundleEnd, type BundleHeader,
} from './format.js';

export interface Bundle {
  header: BundleHeader;
  artifacts: BundleArtifact[];
  dropped: number[];
  /** null when the file has no end record (truncated). */
  end: BundleEnd | null;
  /** Lines after the last complete record that could not be parsed (a torn final write). */
  tornTail: boolean;
  /**
   * What breaks the bundle's rules without breaking its structure: header fields outside the
   * rule of headerProblems (only with allowBadHeader; otherwise reading throws), a nonce both
   * committed and dropped, repeated nonces, an end record whose dropped count disagrees.
   */
  problems: string[];
  /** Some artifact nonce appears more than once (no commitment can be built over them). */
  duplicateArtifacts: boolean;
}

export interface ReadBundleOptions {
  /** Accept a file without its end record (inspect, repair). */
  allowTruncated?: boolean;
  /** Report header rule violations in `problems` instead of throwing (inspect). */
  allowBadHeader?: boolean;
  /** Longest accepted line in bytes (default MAX_BUNDLE_LINE_BYTES). */
  maxLineBytes?: number;
}

export class BundleFormatError extends InputError {
  override name = 'BundleFormatError';
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const INT32_MAX = 2 ** 31 - 1;
// Problems listed one by one before the rest are only counted (a hostile file may hold millions).
const MAX_LISTED_PROBLEMS = 50;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The header's types: without them nothing else can be read. */
function checkHeaderStructure(v: unknown, path: string): BundleHeader {
  const bad = (m: string) => new BundleFormatError(`${path}: bad header: ${m}`);
  if (!isObj(v) || v.type !== 'header') throw bad('the first line is not a header record');
  if (v.format !== BUNDLE_FORMAT) throw bad(`format is ${JSON.stringify(v.format)}, expected "${BUNDLE_FORMAT}"`);
  if (v.version !== BUNDLE_VERSION) throw bad(`version ${JSON.stringify(v.version)} is not supported (this build reads ${BUNDLE_VERSION})`);
  const r = v.round, n = v.node;
  if (!isObj(r) || !isObj(n)) throw bad('round and node must be objects');
  for (const k of ['model', 'block_hash', 'public_key', 'weights', 'weights_seed', 'weights_identity', 'precision'])
    if (typeof r[k] !== 'string' || r[k] === '') throw bad(`round.${k} must be a non-empty string`);
  for (const k of ['block_height', 'ctx_len', 'k_dim'])
    if (!Number.isSafeInteger(r[k]) || (r[k] as number) < 0) throw bad(`round.${k} must be a non-negative integer`);
  if (!Array.isArray(r.grid) || r.grid.length !== 3 || !r.grid.every((x) => Number.isSafeInteger(x) && x > 0)) throw bad('round.grid must be [F, H, W]');
  if (typeof r.stronger_rng !== 'boolean') throw bad('round.stronger_rng must be a boolean');
  for (const k of ['node_id', 'node_count', 'group_id', 'n_groups'])
    if (!Number.isSafeInteger(n[k]) || (n[k] as number) < 0) throw bad(`node.${k} must be a non-negative integer`);
  if (typeof v.created !== 'string') throw bad('created must be a string');
  return v as unknown as BundleHeader;
}

/**
 * The header rule: what `generate` could have written. The round passes the checks every command
 * applies to round parameters (makeRound: known model, grid, ctx_len and k_dim), the node assignment
 * the checks of `generate`'s and the server's node options, the precision is one the engine has,
 * and the weights identity names the header's weights. One message per broken part.
 */
export function headerProblems(h: BundleHeader): string[] {
  const r = h.round, n = h.node;
  const problems: string[] = [];
  try {
    makeRound({ model: r.model, blockHash: r.block_hash, publicKey: r.public_key, grid: r.grid, ctxLen: r.ctx_len, kDim: r.k_dim });
  } catch (e) {
    problems.push(`round: ${messageOf(e)}`);
  }
  if (!['bf16', 'fp32', 'bf16-flash', 'fp8-attention'].includes(r.precision)) problems.push(`round: unknown precision ${JSON.stringify(r.precision)}`);
  const names = weightsIdentity({ weights: r.weights, weightsSeed: r.weights_seed });
  // The engine appends "+transform" to the identity of transformed (deviation) weights.
  if (r.weights_identity !== names && !r.weights_identity.startsWith(`${names}+`))
    problems.push(`round: weights_identity ${r.weights_identity} does not name the weights ${r.weights === 'random' ? `random with seed ${r.weights_seed}` : r.weights}`);
  try {
    checkAssignment({ nodeId: n.node_id, nodeCount: n.node_count, groupId: n.group_id, nGroups: n.n_groups });
  } catch (e) {
    problems.push(`node: ${messageOf(e)}`);
  }
  return problems;
}

function checkNonce(v: unknown, where: string): number {
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > INT32_MAX) throw new BundleFormatError(`${where}: nonce ${JSON.stringify(v)} is not a non-negative int32`);
  return v as number;
}

/**
 * The file's lines, split on '\n' (a trailing '\r' removed), never holding more than `maxBytes`
 * of one line: a longer line is refused as soon as it passes the bound.
 */
async function* boundedLines(chunks: AsyncIterable<Buffer>, maxBytes: number, path: string): AsyncGenerator<string> {
  let parts: Buffer[] = [];
  let length = 0;
  let lineNo = 0;
  const line = () => {
    const buf = parts.length === 1 ? parts[0] : Buffer.concat(parts, length);
    parts = [];
    length = 0;
    const text = buf.toString('utf8');
    return text.endsWith('\r') ? text.slice(0, -1) : text;
  };
  for await (const chunk of chunks) {
    for (let start = 0; ;) {
      const nl = chunk.indexOf(10, start);
      const end = nl < 0 ? chunk.length : nl;
      if (length + (end - start) > maxBytes)
        throw new BundleFormatError(`${path}:${lineNo + 1}: line longer than ${maxBytes} bytes, the limit for one bundle record (the file is corrupt or not a bundle)`);
      if (end > start) {
        parts.push(chunk.subarray(start, end));
        length += end - start;
      }
      if (nl < 0) break;
      lineNo++;
      yield line();
      start = nl + 1;
    }
  }
  if (length > 0) yield line();
}

export async function readBundle(path: string, opts: ReadBundleOptions = {}): Promise<Bundle> {
  let stream;
  try {
    stream = createReadStream(path, { highWaterMark: 1 << 20 });
    await new Promise((res, rej) => stream!.once('open', res).once('error', rej));
  } catch (e) {
    throw new InputError(`cannot read bundle ${path}: ${(e as Error).message}`);
  }
  let header: BundleHeader | null = null;
  let end: BundleEnd | null = null;
  let tornTail = false;
  let expectedSeq = 0;
  let lineNo = 0;
  const artifacts: BundleArtifact[] = [];
  const dropped: number[] = [];
  const problems: string[] = [];
  let unlisted = 0;
  const problem = (m: string) => (problems.length < MAX_LISTED_PROBLEMS ? problems.push(m) : unlisted++);
  const committed = new Set<number>();
  const droppedSet = new Set<number>();
  let duplicateArtifacts = false;
  try {
    for await (const line of boundedLines(stream, opts.maxLineBytes ?? MAX_BUNDLE_LINE_BYTES, path)) {
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
        header = checkHeaderStructure(rec, path);
        const bad = headerProblems(header);
        if (bad.length && !opts.allowBadHeader) throw new BundleFormatError(`${path}: bad header: ${bad.join('; ')}`);
        bad.forEach(problem);
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
            throw new BundleFormatError(`${where}: artifact ${JSON.stringify(a).slice(0, 200)} is not [nonce, base64]`);
          const nonce = checkNonce(a[0], where);
          if (committed.has(nonce)) {
            duplicateArtifacts = true;
            problem(`nonce ${nonce} appears twice`);
          }
          committed.add(nonce);
          artifacts.push({ nonce, vectorB64: a[1] });
        }
        for (const d of rec.dropped) {
          const nonce = checkNonce(d, where);
          if (droppedSet.has(nonce)) problem(`dropped nonce ${nonce} is listed twice`);
          droppedSet.add(nonce);
          dropped.push(nonce);
        }
      } else if (rec.type === 'end') {
        if (!Number.isSafeInteger(rec.count) || (rec.count as number) < 0) throw new BundleFormatError(`${where}: end.count must be a non-negative integer`);
        if (typeof rec.root_hex !== 'string' || !/^[0-9a-f]{64}$/.test(rec.root_hex)) throw new BundleFormatError(`${where}: end.root_hex must be 64 lower-case hex digits`);
        if (!Number.isSafeInteger(rec.dropped) || (rec.dropped as number) < 0) throw new BundleFormatError(`${where}: end.dropped must be a non-negative integer`);
        end = rec as unknown as BundleEnd;
      } else {
        throw new BundleFormatError(`${where}: unknown record type ${JSON.stringify(rec.type)?.slice(0, 100)}`);
      }
    }
  } finally {
    stream.destroy();
  }
  if (!header) throw new BundleFormatError(`${path}: empty file or no header`);
  if (!end && !opts.allowTruncated)
    throw new BundleFormatError(`${path}: truncated: no end record after ${artifacts.length} artifacts (the sprint did not finish; \`dit-poc inspect --repair OUT\` closes it)`);
  if (end && tornTail) throw new BundleFormatError(`${path}: a damaged line precedes the end record`);
  for (const d of droppedSet) if (committed.has(d)) problem(`nonce ${d} is both an artifact and dropped`);
  if (end && end.dropped !== dropped.length) problem(`end record claims ${end.dropped} dropped nonces, the bundle lists ${dropped.length}`);
  if (unlisted) problems.push(`… and ${unlisted} more problems`);
  return { header, artifacts, dropped, end, tornTail, problems, duplicateArtifacts };
}

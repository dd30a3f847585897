// CPU-side work that is parallel by nature, run on piscina worker threads so the main thread
// (and the native forward it drives) never waits on it. Each export is one task (piscina `name`).
import { computeArtifact } from '../artifact/artifact.js';
import { SmstBuilder, verifyProof } from '../commitment/smst.js';

export interface ArtifactTask {
  y: Float32Array;
  nonces: number[];
  blockHash: string;
  publicKey: string;
  kDim: number;
}

/** Artifacts of a batch's outputs (SPEC §5 step 9); null marks a non-finite output. */
export function artifacts(t: ArtifactTask): (string | null)[] {
  const m = t.y.length / t.nonces.length;
  return t.nonces.map((nonce, i) => computeArtifact(t.y.subarray(i * m, (i + 1) * m), t.blockHash, t.publicKey, nonce, t.kDim)?.vectorB64 ?? null);
}

export interface CommitmentTask {
  nonces: number[];
  vectorsB64: string[];
}

export interface CommitmentResult {
  count: number;
  rootHex: string;
  depth: number;
}

/** The SMST root and count of a set of artifacts (SPEC §9). */
export function commitment(t: CommitmentTask): CommitmentResult {
  const tree = new SmstBuilder();
  for (let i = 0; i < t.nonces.length; i++) tree.add(t.nonces[i], Buffer.from(t.vectorsB64[i], 'base64'));
  return { count: tree.count, rootHex: tree.rootHex(), depth: tree.depth() };
}

export interface ProofCheck {
  denseIndex: number;
  nonce: number;
  vector: Uint8Array;
  proof: Uint8Array[];
}

export interface ProofTask {
  rootHex: string;
  count: number;
  checks: ProofCheck[];
}

/** Verifies SMST proofs against a committed (root, count); returns one failure reason or null per check. */
export function proofs(t: ProofTask): (string | null)[] {
  const root = Buffer.from(t.rootHex, 'hex');
  return t.checks.map((c) => {
    const r = verifyProof(root, t.count, c.denseIndex, c.nonce, c.vector, c.proof);
    return r.ok ? null : r.reason;
  });
}

// Recomputes claimed artifacts and compares them (SPEC §10): a claim is a mismatch when it is
// malformed (bad base64, wrong length, non-finite) or farther than dist_threshold (L2) from the
// validator's own artifact.
import { artifactDistance, decodeArtifact } from '../artifact/artifact.js';
import type { NonceRunner } from '../engine/nonce-runner.js';
import type { StatTest } from './verdict.js';

export interface Claim {
  nonce: number;
  vectorB64: string;
}

export interface ComparedClaim {
  nonce: number;
  mismatch: boolean;
  /** L2 distance to the recomputed artifact; null when either side is malformed or non-finite. */
  distance: number | null;
}

export async function recomputeAndCompare(
  runner: NonceRunner,
  claims: Claim[],
  stat: StatTest,
  batchSize: number,
  onProgress?: (done: number) => void,
): Promise<ComparedClaim[]> {
  const out: ComparedClaim[] = [];
  const k = runner.round.kDim;
  for (let i = 0; i < claims.length; i += batchSize) {
    const batch = claims.slice(i, i + batchSize);
    const own = await runner.run(batch.map((c) => c.nonce));
    batch.forEach((c, j) => {
      const claimed = decodeArtifact(c.vectorB64, k);
      const mine = own[j].vectorB64 === null ? null : decodeArtifact(own[j].vectorB64!, k);
      const distance = claimed && mine ? artifactDistance(mine, claimed) : null;
      out.push({ nonce: c.nonce, distance, mismatch: distance === null || !(distance <= stat.dist_threshold) });
    });
    onProgress?.(out.length);
  }
  return out;
}

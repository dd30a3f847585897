// Which nonces a worker computes (SPEC §11; Gonka's NonceIterator):
// offset = node_id + group_id·node_count, step = n_groups·node_count, nonce_x = offset + x·step.
import { InputError } from '../errors.js';

export const INT32_MAX = 2 ** 31 - 1;

export interface NodeAssignment {
  nodeId: number;
  nodeCount: number;
  groupId: number;
  nGroups: number;
}

export const SINGLE_NODE: NodeAssignment = Object.freeze({ nodeId: 0, nodeCount: 1, groupId: 0, nGroups: 1 });

export function checkAssignment(a: NodeAssignment): NodeAssignment {
  const int = (v: number, name: string, min: number) => {
    if (!Number.isInteger(v) || v < min || v > INT32_MAX) throw new InputError(`${name} must be an integer in [${min}, ${INT32_MAX}], got ${v}`);
  };
  int(a.nodeCount, 'node_count', 1);
  int(a.nGroups, 'n_groups', 1);
  int(a.nodeId, 'node_id', 0);
  int(a.groupId, 'group_id', 0);
  if (a.nodeId >= a.nodeCount) throw new InputError(`node_id ${a.nodeId} must be below node_count ${a.nodeCount}`);
  if (a.groupId >= a.nGroups) throw new InputError(`group_id ${a.groupId} must be below n_groups ${a.nGroups}`);
  if (a.nGroups * a.nodeCount > INT32_MAX) throw new InputError('n_groups·node_count exceeds the int32 range');
  return a;
}

/** The worker's x-th nonce, or null once it would leave the int32 range. */
export function nonceAt(a: NodeAssignment, x: number): number | null {
  const offset = a.nodeId + a.groupId * a.nodeCount;
  const step = a.nGroups * a.nodeCount;
  const n = offset + x * step;
  return Number.isSafeInteger(n) && n <= INT32_MAX ? n : null;
}

/** Iterates the worker's nonces from index `start` on, stopping at the int32 bound (callers validate with checkAssignment). */
export function* assignedNonces(a: NodeAssignment, start = 0): Generator<number> {
  for (let x = start; ; x++) {
    const n = nonceAt(a, x);
    if (n === null) return;
    yield n;
  }
}

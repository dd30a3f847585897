import { describe, expect, it } from 'vitest';

import { assignedNonces, checkAssignment, nonceAt } from '../src/protocol/nonce-assignment.js';

describe('nonce assignment (Gonka NonceIterator)', () => {
  it('offset = node_id + group_id·node_count, step = n_groups·node_count', () => {
    const a = { nodeId: 1, nodeCount: 3, groupId: 2, nGroups: 4 };
    const it = assignedNonces(a);
    const first = Array.from({ length: 4 }, () => it.next().value);
    expect(first).toEqual([7, 19, 31, 43]);
  });

  it('the workers of all nodes cover the nonces exactly once', () => {
    const seen = new Map<number, string>();
    for (let node = 0; node < 3; node++)
      for (let g = 0; g < 2; g++)
        for (let x = 0; x < 50; x++) {
          const n = nonceAt({ nodeId: node, nodeCount: 3, groupId: g, nGroups: 2 }, x)!;
          expect(seen.has(n)).toBe(false);
          seen.set(n, `${node}/${g}`);
        }
    expect([...seen.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 300 }, (_, i) => i));
  });

  it('stops at the int32 bound', () => {
    const a = { nodeId: 0, nodeCount: 1, groupId: 0, nGroups: 1 };
    expect(nonceAt(a, 2 ** 31 - 1)).toBe(2 ** 31 - 1);
    expect(nonceAt(a, 2 ** 31)).toBeNull();
    const big = { nodeId: 0, nodeCount: 2 ** 20, groupId: 0, nGroups: 2 ** 10 };
    expect([...assignedNonces(big)].length).toBe(2);
  });

  it('rejects malformed assignments', () => {
    expect(() => checkAssignment({ nodeId: 3, nodeCount: 3, groupId: 0, nGroups: 1 })).toThrow(/node_id 3 must be below node_count 3/);
    expect(() => checkAssignment({ nodeId: 0, nodeCount: 1, groupId: 0, nGroups: 0 })).toThrow(/n_groups/);
    expect(() => checkAssignment({ nodeId: -1, nodeCount: 1, groupId: 0, nGroups: 1 })).toThrow(/node_id/);
    expect(() => checkAssignment({ nodeId: 0, nodeCount: 2 ** 31, groupId: 0, nGroups: 1 })).toThrow(/node_count/);
  });
});

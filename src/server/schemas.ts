// JSON schemas of the request bodies (Gonka PoC v2, research/gonka-poc.md §6.3; SPEC §11).
// `params` forbids unknown keys, as Gonka's pydantic model does (extra="forbid"); the other
// objects ignore unknown keys, as pydantic does by default, so newer decentralized-api versions
// that send extra fields keep working. Nonces are int32 (PoCArtifactV2.nonce), never negative.
import type { FastifySchemaValidationError } from 'fastify';

import { INT32_MAX } from '../protocol/nonce-assignment.js';

/** Gonka's /generate queue cap, also the largest nonce list one request may carry. */
export const MAX_NONCES = 100_000;

const int32 = { type: 'integer', minimum: 0, maximum: INT32_MAX } as const;
const str = (max: number) => ({ type: 'string', minLength: 1, maxLength: max }) as const;

export const paramsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['model', 'seq_len'],
  properties: {
    model: str(256),
    seq_len: { type: 'integer', minimum: 1, maximum: 1 << 20 },
    k_dim: { type: 'integer', minimum: 2, maximum: 1024 },
    grid: { type: 'array', minItems: 3, maxItems: 3, items: { type: 'integer', minimum: 1, maximum: 1024 } },
    ctx_len: { type: 'integer', minimum: 1, maximum: 4096 },
  },
} as const;

const roundFields = {
  block_hash: str(256),
  block_height: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
  public_key: str(256),
  node_id: int32,
  node_count: { type: 'integer', minimum: 1, maximum: INT32_MAX },
  // No cap but memory: the server runs min(batch_size, what fits) (vLLM does the same).
  batch_size: { type: 'integer', minimum: 1, maximum: INT32_MAX },
  params: paramsSchema,
  url: { type: ['string', 'null'], maxLength: 2048 },
  poc_stronger_rng: { type: 'boolean' },
} as const;

export const initGenerateSchema = {
  type: 'object',
  required: ['block_hash', 'block_height', 'public_key', 'node_id', 'node_count', 'params'],
  properties: {
    ...roundFields,
    group_id: int32,
    n_groups: { type: 'integer', minimum: 1, maximum: INT32_MAX },
  },
} as const;

const artifactSchema = {
  type: 'object',
  required: ['nonce', 'vector_b64'],
  properties: { nonce: int32, vector_b64: { type: 'string', maxLength: 8192 } },
} as const;

export const generateSchema = {
  type: 'object',
  required: ['block_hash', 'block_height', 'public_key', 'node_id', 'node_count', 'nonces', 'params'],
  properties: {
    ...roundFields,
    nonces: { type: 'array', maxItems: MAX_NONCES, items: int32 },
    wait: { type: 'boolean' },
    validation: {
      type: ['object', 'null'],
      required: ['artifacts'],
      properties: { artifacts: { type: 'array', maxItems: MAX_NONCES, items: artifactSchema } },
    },
    // Ranges are checked by parseStatTest, which names the field and its alias in its messages.
    stat_test: {
      type: ['object', 'null'],
      properties: {
        dist_threshold: { type: 'number' },
        p_mismatch: { type: 'number' },
        fraud_threshold: { type: 'number' },
        p_value_threshold: { type: 'number' },
      },
    },
  },
} as const;

export const requestIdSchema = {
  type: 'object',
  required: ['request_id'],
  properties: { request_id: { type: 'string', minLength: 1, maxLength: 256 } },
} as const;

export interface InitGenerateBody {
  block_hash: string;
  block_height: number;
  public_key: string;
  node_id: number;
  node_count: number;
  group_id?: number;
  n_groups?: number;
  batch_size?: number;
  params: { model: string; seq_len: number; k_dim?: number; grid?: number[]; ctx_len?: number };
  url?: string | null;
  poc_stronger_rng?: boolean;
}

export interface GenerateBody extends Omit<InitGenerateBody, 'group_id' | 'n_groups'> {
  nonces: number[];
  wait?: boolean;
  validation?: { artifacts: { nonce: number; vector_b64: string }[] } | null;
  stat_test?: Record<string, unknown> | null;
}

/** body.params.foo, body.nonces[3] */
function where(dataVar: string, instancePath: string): string {
  let out = dataVar;
  for (const part of instancePath.split('/').slice(1)) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(key) ? `[${key}]` : `.${key}`;
  }
  return out;
}

/** One readable sentence per validation failure (fastify's schemaErrorFormatter). */
export function formatSchemaErrors(errors: FastifySchemaValidationError[], dataVar: string): Error {
  const msgs = errors.map((e) => {
    const at = where(dataVar, e.instancePath);
    const p = e.params as Record<string, unknown>;
    switch (e.keyword) {
      case 'additionalProperties':
        return `${at} has an unknown field '${String(p.additionalProperty)}'`;
      case 'required':
        return `${at} is missing the required field '${String(p.missingProperty)}'`;
      case 'type':
        return `${at} must be ${Array.isArray(p.type) ? p.type.join(' or ') : String(p.type)}`;
      case 'minimum':
      case 'maximum':
        return `${at} must be ${e.keyword === 'minimum' ? '≥' : '≤'} ${String(p.limit)}${/nonce/.test(at) ? ' (nonces are non-negative int32)' : ''}`;
      case 'maxItems':
        return `${at} has more than ${String(p.limit)} items`;
      case 'minItems':
        return `${at} must have at least ${String(p.limit)} items`;
      case 'minLength':
        return `${at} must not be empty`;
      case 'maxLength':
        return `${at} is longer than ${String(p.limit)} characters`;
      default:
        return `${at} ${e.message ?? 'is invalid'}`;
    }
  });
  return new Error(msgs.join('; '));
}

// JSON schemas of the request bodies (Gonka PoC v2, research/gonka-poc.md §6.3; SPEC §11).
// `params` forbids unknown keys, as Gonka's pydantic model does (extra="forbid"); the other
// objects ignore unknown keys, as pydantic does by default, so newer decentralized-api versions
// that send extra fields keep working. Nonces are int32 (PoCArtifactV2.nonce), negative ones
// included, as vLLM takes them. Schema failures answer 422 {detail: [{type, loc, msg}]}, as
// FastAPI's request validation does.
import type { FastifySchemaValidationError } from 'fastify';

import { INT32_MAX } from '../protocol/nonce-assignment.js';
import { HttpError } from './params.js';

/** Gonka's /generate queue cap, also the largest nonce list one request may carry. */
export const MAX_NONCES = 100_000;

const int32 = { type: 'integer', minimum: 0, maximum: INT32_MAX } as const;
const nonce = { type: 'integer', minimum: -INT32_MAX - 1, maximum: INT32_MAX } as const;
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
    // Newer decentralized-apis send the LLM "decode" scheme's switch and step count; a DiT
    // nonce is one forward, so they are accepted and ignored.
    decode: { type: 'boolean' },
    max_tokens: { type: 'integer', minimum: 0, maximum: INT32_MAX },
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
  properties: { nonce, vector_b64: { type: 'string', maxLength: 8192 } },
} as const;

export const generateSchema = {
  type: 'object',
  required: ['block_hash', 'block_height', 'public_key', 'node_id', 'node_count', 'nonces', 'params'],
  properties: {
    ...roundFields,
    nonces: { type: 'array', maxItems: MAX_NONCES, items: nonce },
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
  params: { model: string; seq_len: number; k_dim?: number; grid?: number[]; ctx_len?: number; decode?: boolean; max_tokens?: number };
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

/** pydantic v2's error type for each JSON-schema keyword. */
function pydanticType(e: FastifySchemaValidationError): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties':
      return 'extra_forbidden';
    case 'required':
      return 'missing';
    case 'type': {
      const t = Array.isArray(p.type) ? p.type.find((x) => x !== 'null') : p.type;
      return ({ integer: 'int_type', number: 'float_type', string: 'string_type', boolean: 'bool_type', array: 'list_type', object: 'model_type' } as Record<string, string>)[String(t)] ?? 'value_error';
    }
    case 'minimum':
      return 'greater_than_equal';
    case 'maximum':
      return 'less_than_equal';
    case 'minItems':
      return 'too_short';
    case 'maxItems':
      return 'too_long';
    case 'minLength':
      return 'string_too_short';
    case 'maxLength':
      return 'string_too_long';
    default:
      return 'value_error';
  }
}

/** FastAPI's loc: ['body', 'params', 'foo'], ['body', 'nonces', 3]; the missing or extra field last. */
function location(dataVar: string, e: FastifySchemaValidationError): (string | number)[] {
  const loc: (string | number)[] = [dataVar];
  for (const part of e.instancePath.split('/').slice(1)) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    loc.push(/^\d+$/.test(key) ? Number(key) : key);
  }
  const p = e.params as Record<string, unknown>;
  if (e.keyword === 'required') loc.push(String(p.missingProperty));
  if (e.keyword === 'additionalProperties') loc.push(String(p.additionalProperty));
  return loc;
}

/** One readable sentence per validation failure (fastify's schemaErrorFormatter), as a 422 {detail: […]}. */
export function formatSchemaErrors(errors: FastifySchemaValidationError[], dataVar: string): Error {
  const detail = errors.map((e) => {
    const at = where(dataVar, e.instancePath);
    const p = e.params as Record<string, unknown>;
    let msg: string;
    switch (e.keyword) {
      case 'additionalProperties':
        msg = `${at} has an unknown field '${String(p.additionalProperty)}'`;
        break;
      case 'required':
        msg = `${at} is missing the required field '${String(p.missingProperty)}'`;
        break;
      case 'type':
        msg = `${at} must be ${Array.isArray(p.type) ? p.type.join(' or ') : String(p.type)}`;
        break;
      case 'minimum':
      case 'maximum':
        msg = `${at} must be ${e.keyword === 'minimum' ? '≥' : '≤'} ${String(p.limit)}${/nonce/.test(at) ? ' (nonces are int32)' : ''}`;
        break;
      case 'maxItems':
        msg = `${at} has more than ${String(p.limit)} items`;
        break;
      case 'minItems':
        msg = `${at} must have at least ${String(p.limit)} items`;
        break;
      case 'minLength':
        msg = `${at} must not be empty`;
        break;
      case 'maxLength':
        msg = `${at} is longer than ${String(p.limit)} characters`;
        break;
      default:
        msg = `${at} ${e.message ?? 'is invalid'}`;
    }
    return { type: pydanticType(e), loc: location(dataVar, e), msg };
  });
  return new HttpError(422, detail);
}

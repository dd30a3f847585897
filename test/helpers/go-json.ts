// Does a JSON value decode into a Go type the way encoding/json would (json.Unmarshal without
// DisallowUnknownFields)? Types are written as in test/fixtures/dapi/go-types.json: string, bool,
// int / int32 / int64 (an integral number in range), float64, *T (null allowed), []T (null
// allowed), or a struct name. `strict` also refuses keys the struct does not have, to catch
// fields the Go side would silently drop.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'dapi', 'go-types.json');
export const GO_TYPES = (JSON.parse(readFileSync(FIXTURE, 'utf8')) as { types: Record<string, Record<string, string>> }).types;

const RANGES: Record<string, [bigint, bigint]> = {
  int: [-(2n ** 63n), 2n ** 63n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
};

/** Problems found (empty when the value decodes). */
export function goDecodeErrors(value: unknown, type: string, strict = false, at = '$'): string[] {
  if (type.startsWith('*')) return value === null ? [] : goDecodeErrors(value, type.slice(1), strict, at);
  if (type.startsWith('[]')) {
    if (value === null) return [];
    if (!Array.isArray(value)) return [`${at}: ${JSON.stringify(value)} is not an array (${type})`];
    return value.flatMap((v, i) => goDecodeErrors(v, type.slice(2), strict, `${at}[${i}]`));
  }
  // encoding/json leaves a Go value untouched on a JSON null for every kind below.
  if (value === null) return [];
  switch (type) {
    case 'string':
      return typeof value === 'string' ? [] : [`${at}: ${JSON.stringify(value)} is not a string`];
    case 'bool':
      return typeof value === 'boolean' ? [] : [`${at}: ${JSON.stringify(value)} is not a bool`];
    case 'float64':
      return typeof value === 'number' && Number.isFinite(value) ? [] : [`${at}: ${JSON.stringify(value)} is not a float64`];
    case 'int':
    case 'int32':
    case 'int64': {
      if (typeof value !== 'number' || !Number.isInteger(value)) return [`${at}: ${JSON.stringify(value)} is not an integer (${type})`];
      const [lo, hi] = RANGES[type];
      const b = BigInt(value);
      return b >= lo && b <= hi ? [] : [`${at}: ${value} overflows ${type}`];
    }
  }
  const fields = GO_TYPES[type];
  if (!fields) return [`${at}: unknown Go type ${type}`];
  if (typeof value !== 'object' || Array.isArray(value)) return [`${at}: ${JSON.stringify(value)} is not an object (${type})`];
  const errs: string[] = [];
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const t = fields[k];
    if (t === undefined) {
      if (strict) errs.push(`${at}.${k}: ${type} has no such field`);
      continue;
    }
    errs.push(...goDecodeErrors(v, t, strict, `${at}.${k}`));
  }
  return errs;
}

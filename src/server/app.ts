// The HTTP surface of `dit-poc serve`: Gonka PoC v2's ML-node API under /api/v1/pow
// (research/gonka-poc.md §6.3), GET /metrics, GET /health. Errors answer FastAPI's shape
// {"detail": …}: 400 invalid body (with a readable message), 401 missing/wrong bearer token,
// 404 unknown route or request_id, 409 already generating / params mismatch, 413 body too large,
// 429 job queue full, 503 shutting down.
import { timingSafeEqual } from 'node:crypto';

import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

import { InputError } from '../errors.js';
import type { ServerMetrics } from './metrics.js';
import { HttpError } from './params.js';
import { formatSchemaErrors, generateSchema, initGenerateSchema, requestIdSchema, type GenerateBody, type InitGenerateBody } from './schemas.js';
import type { PocService } from './service.js';

export interface AppOptions {
  service: PocService;
  metrics: ServerMetrics;
  logger: Logger;
  bodyLimit: number;
  token?: string;
}

function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function buildApp(o: AppOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: o.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: o.bodyLimit,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    schemaErrorFormatter: formatSchemaErrors,
    // Reject, never silently fix: no type coercion, no removal of unknown properties.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  });

  // An empty JSON body is an empty request (POST /stop is sent without one).
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (typeof body === 'string' && body.trim() === '') return done(null, undefined);
    json(req, body as string, done);
  });

  if (o.token) {
    const token = o.token;
    app.addHook('onRequest', async (req, reply) => {
      if (req.url === '/health') return;
      const h = req.headers.authorization ?? '';
      const m = /^Bearer\s+(.+)$/i.exec(h);
      if (!m || !sameToken(m[1].trim(), token)) {
        reply.header('www-authenticate', 'Bearer');
        return reply.code(401).send({ detail: m ? 'invalid bearer token' : 'missing bearer token (Authorization: Bearer …)' });
      }
    });
  }

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unknown';
    o.metrics.requests.inc({ route, status: String(reply.statusCode) });
    if (reply.statusCode >= 500) req.log.warn({ method: req.method, url: req.url, status: reply.statusCode }, 'request failed');
    else req.log.debug({ method: req.method, url: req.url, status: reply.statusCode, ms: reply.elapsedTime }, 'request');
  });

  app.setNotFoundHandler((req, reply) => reply.code(404).send({ detail: `no route ${req.method} ${req.url}` }));

  app.setErrorHandler((err: FastifyError | HttpError | InputError | Error, req, reply) => {
    if (err instanceof HttpError) return reply.code(err.statusCode).send({ detail: err.detail });
    if (err instanceof InputError) return reply.code(400).send({ detail: err.message });
    const fe = err as FastifyError;
    if (fe.validation) return reply.code(400).send({ detail: fe.message });
    const status = fe.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      let detail = fe.message;
      if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') detail = `request body is larger than the limit of ${o.bodyLimit} bytes`;
      else if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') detail = `unsupported content type '${req.headers['content-type'] ?? ''}': send application/json`;
      else if (err instanceof SyntaxError || fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY') detail = `body is not valid JSON: ${fe.message}`;
      return reply.code(status).send({ detail });
    }
    req.log.error({ err }, 'unexpected error');
    return reply.code(500).send({ detail: `internal error: ${err.message}` });
  });

  const s = o.service;
  app.get('/health', async () => ({ status: 'ok' }));
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', o.metrics.registry.contentType);
    return o.metrics.registry.metrics();
  });
  app.post<{ Body: InitGenerateBody }>('/api/v1/pow/init/generate', { schema: { body: initGenerateSchema } }, (req) => s.initGenerate(req.body));
  app.post<{ Body: GenerateBody }>('/api/v1/pow/generate', { schema: { body: generateSchema } }, (req) => s.generate(req.body));
  app.get<{ Params: { request_id: string } }>('/api/v1/pow/generate/:request_id', { schema: { params: requestIdSchema } }, async (req) => s.job(req.params.request_id));
  app.get('/api/v1/pow/status', async () => s.status());
  app.post('/api/v1/pow/stop', async () => s.stop());
  return app;
}

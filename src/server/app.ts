// The HTTP surface of `dit-poc serve`: Gonka PoC v2's ML-node API under /api/v1/pow
// (research/gonka-poc.md §6.3) and again under /api/v1/inference/pow, where the decentralized-api
// sends it through an MLNode; the MLNode's own routes (mlnode-routes.ts); GET /metrics, GET /health.
// Errors answer FastAPI's shape
// {"detail": …}: 400 invalid body (with a readable message), 401 missing/wrong bearer token,
// 404 unknown route or request_id, 409 already generating / params mismatch, 413 body too large,
// 429 job queue full, 503 shutting down.
import { timingSafeEqual } from 'node:crypto';

import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

import { InputError } from '../errors.js';
import type { ServerMetrics } from './metrics.js';
import type { MlNode } from './mlnode.js';
import { registerMlNodeRoutes } from './mlnode-routes.js';
import { HttpError } from './params.js';
import { formatSchemaErrors, generateSchema, initGenerateSchema, requestIdSchema, type GenerateBody, type InitGenerateBody } from './schemas.js';
import type { PocService } from './service.js';

export interface AppOptions {
  service: PocService;
  node: MlNode;
  metrics: ServerMetrics;
  logger: Logger;
  bodyLimit: number;
  token?: string;
  /** A client has this long to send a whole request, headers and body (a trickle is cut off with 408). */
  requestTimeoutMs?: number;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

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
    // Fastify's default (0) lets a slowly trickled request hold a connection forever. Both bounds
    // cover receiving the request only: a long wait:true answer is not cut off.
    requestTimeout: o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    http: {
      headersTimeout: o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      // How often Node checks those timeouts (its default, 30 s, would stretch them).
      connectionsCheckingInterval: Math.min(1000, o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS),
    },
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
  // The decentralized-api's Go client posts JSON without a Content-Type header (FastAPI reads it
  // as JSON); a body of any other declared type is refused.
  app.addContentTypeParser('*', { parseAs: 'string' }, (req, body, done) => {
    if (req.headers['content-type'] !== undefined) {
      const err = Object.assign(new Error(`Unsupported Media Type: ${req.headers['content-type']}`), { statusCode: 415, code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE' });
      return done(err, undefined);
    }
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
    // A schema failure the formatter did not build (it always does) still answers FastAPI's shape.
    if (fe.validation) return reply.code(422).send({ detail: [{ type: 'value_error', loc: ['body'], msg: fe.message }] });
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

  app.get('/health', async () => ({ status: 'ok', state: o.node.nodeState().state }));
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', o.metrics.registry.contentType);
    return o.metrics.registry.metrics();
  });
  for (const prefix of ['/api/v1/pow', '/api/v1/inference/pow']) registerPocRoutes(app, prefix, o.service, o.node);
  registerMlNodeRoutes(app, o.node);
  return app;
}

/** The PoC v2 routes under one prefix; new work is refused while the node is stopped. */
function registerPocRoutes(app: FastifyInstance, prefix: string, s: PocService, node: MlNode): void {
  app.post<{ Body: InitGenerateBody }>(`${prefix}/init/generate`, { schema: { body: initGenerateSchema } }, (req) => {
    node.checkReady();
    return s.initGenerate(req.body);
  });
  app.post<{ Body: GenerateBody }>(`${prefix}/generate`, { schema: { body: generateSchema } }, (req) => {
    node.checkReady();
    return s.generate(req.body);
  });
  app.get<{ Params: { request_id: string } }>(`${prefix}/generate/:request_id`, { schema: { params: requestIdSchema } }, async (req) => s.job(req.params.request_id));
  app.get(`${prefix}/status`, async () => s.status());
  app.get(`${prefix}/calibration`, async () => s.calibration());
  // PoC's stop, as vLLM's: generation and the queue end; wait=true requests still get their answer.
  app.post(`${prefix}/stop`, async () => s.stop('stopped', { keepInline: true }));
}

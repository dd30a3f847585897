// The MLNode routes of a Gonka node (mlnodeclient/client.go, gpu.go, models.go), on the same
// port as PoC: the DAPI's poc_url and inference_url may both point here.
import type { FastifyInstance } from 'fastify';

import type { HfModel, MlNode } from './mlnode.js';

const hfModelSchema = {
  type: 'object',
  required: ['hf_repo'],
  properties: { hf_repo: { type: 'string', minLength: 1, maxLength: 256 }, hf_commit: { type: ['string', 'null'], maxLength: 256 } },
} as const;

const upSchema = {
  type: 'object',
  required: ['model'],
  properties: {
    model: { type: 'string', minLength: 1, maxLength: 256 },
    dtype: { type: 'string', maxLength: 64 },
    additional_args: { type: ['array', 'null'], maxItems: 1024, items: { type: 'string', maxLength: 4096 } },
  },
} as const;

export function registerMlNodeRoutes(app: FastifyInstance, node: MlNode): void {
  app.get('/api/v1/state', async () => node.nodeState());
  app.post('/api/v1/stop', async () => node.stop());
  app.post<{ Body: { model: string; dtype?: string; additional_args?: string[] } }>('/api/v1/inference/up', { schema: { body: upSchema } }, (req) => node.up(req.body));
  app.get('/v1/models', async () => node.models());
  app.get('/api/v1/gpu/devices', () => node.gpuDevices());
  app.get('/api/v1/gpu/driver', () => node.gpuDriver());
  app.post<{ Body: HfModel }>('/api/v1/models/status', { schema: { body: hfModelSchema } }, async (req) => node.modelStatus(req.body));
  app.post<{ Body: HfModel }>('/api/v1/models/download', { schema: { body: hfModelSchema } }, async (req, reply) => {
    const r = node.modelDownload(req.body);
    return reply.code(r.code).send(r.body);
  });
  app.delete<{ Body: HfModel }>('/api/v1/models', { schema: { body: hfModelSchema } }, async (req) => node.modelDelete(req.body));
  app.get('/api/v1/models/list', async () => node.modelList());
  app.get('/api/v1/models/space', () => node.diskSpace());
}

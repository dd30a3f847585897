// The MLNode layer a Gonka decentralized-api (DAPI) drives (mlnodeclient/client.go, interface.go):
// node state, stop, inference up, and the model and GPU listings. In a Gonka deployment the
// MLNode starts vLLM and proxies PoC to it; here the node is one process, so "inference up"
// loads the served model's weights and reports ready, and PoC runs in the INFERENCE state.
import { statfsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import type { Logger } from 'pino';

import { packageVersion } from '../package-info.js';
import { driverInfo, gpuDevices, type DriverInfo, type GpuDevice } from './gpu-info.js';
import type { ServedNames } from './model-names.js';
import { HttpError } from './params.js';
import type { PocService } from './service.js';

/** mlnodeclient MLNodeState. */
export type NodeStateName = 'INFERENCE' | 'STOPPED';

export interface MlNodeOptions {
  service: PocService;
  names: ServedNames;
  weights: string;
  /** GPU ordinals this node computes on. */
  gpus: number[];
  /** Loads the weights that do not change per round on every device (a no-op once loaded). */
  loadWeights: () => Promise<void>;
  log: Logger;
}

/** mlnodeclient Model: a Hugging Face repository and optional commit. */
export interface HfModel {
  hf_repo: string;
  hf_commit?: string | null;
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await directoryBytes(p);
    else if (e.isFile()) total += (await stat(p)).size;
  }
  return total;
}

export class MlNode {
  // The process serves as soon as it listens, like an MLNode whose vLLM is up.
  private state: NodeStateName = 'INFERENCE';
  private upInFlight: Promise<void> | null = null;

  constructor(private readonly o: MlNodeOptions) {}

  get ready(): boolean {
    return this.state === 'INFERENCE';
  }

  /** GET /api/v1/state (StateResponse, with the MLNode's optional poc_status / inference_healthy / loaded_model). */
  nodeState(): Record<string, unknown> {
    const base = { state: this.state, version: packageVersion() };
    if (this.state !== 'INFERENCE') return base;
    return { ...base, poc_status: this.o.service.generating ? 'GENERATING' : 'IDLE', inference_healthy: true, loaded_model: this.o.names.listed };
  }

  /** POST /api/v1/inference/up {model, dtype, additional_args}: another model → 409; the same model again → OK at once. */
  async up(body: { model: string; dtype?: string; additional_args?: string[] }): Promise<Record<string, unknown>> {
    if (!this.o.names.serves(body.model))
      throw new HttpError(409, `this node serves ${this.o.names.model} as ${this.o.names.all.map((n) => `'${n}'`).join(', ')}; it cannot load '${body.model}'`);
    if (body.additional_args?.length) this.o.log.info({ additional_args: body.additional_args, dtype: body.dtype }, 'inference/up: vLLM arguments do not apply to dit-poc and are ignored');
    this.o.names.select(body.model);
    if (this.state === 'INFERENCE') return { status: 'OK' };
    this.upInFlight ??= this.o.loadWeights().then(
      () => {
        this.state = 'INFERENCE';
        this.o.log.info({ model: body.model }, 'inference up: weights loaded, ready for PoC');
      },
      (e: unknown) => {
        throw new HttpError(500, `cannot load the weights of ${this.o.names.model}: ${(e as Error).message}`);
      },
    ).finally(() => (this.upInFlight = null));
    await this.upInFlight;
    return { status: 'OK' };
  }

  /** POST /api/v1/stop: stops PoC generation and jobs; PoC is refused until the next inference/up. */
  async stop(): Promise<Record<string, unknown>> {
    this.state = 'STOPPED';
    await this.o.service.stop('the node was stopped (POST /api/v1/stop)');
    this.o.log.info('node stopped: PoC refused until POST /api/v1/inference/up');
    return { status: 'OK' };
  }

  /** Refuses new PoC work while stopped (an MLNode without vLLM answers 503 too). */
  checkReady(): void {
    if (this.state !== 'INFERENCE') throw new HttpError(503, 'the node is stopped: POST /api/v1/inference/up first');
  }

  /** GET /v1/models (OpenAI list, as vLLM): the name the DAPI compares first. */
  models(): Record<string, unknown> {
    const created = Math.floor(Date.now() / 1000);
    return { object: 'list', data: this.o.names.all.map((id) => ({ id, object: 'model', created, owned_by: 'dit-poc', root: this.o.names.model, parent: null })) };
  }

  async gpuDevices(): Promise<{ devices: GpuDevice[]; count: number }> {
    const devices = await gpuDevices(this.o.gpus);
    return { devices, count: devices.length };
  }

  async gpuDriver(): Promise<DriverInfo> {
    try {
      return await driverInfo();
    } catch (e) {
      throw new HttpError(503, (e as Error).message);
    }
  }

  private modelOf(m: HfModel): { model: { hf_repo: string; hf_commit: string | null }; served: boolean } {
    return { model: { hf_repo: m.hf_repo, hf_commit: m.hf_commit ?? null }, served: this.o.names.serves(m.hf_repo) };
  }

  /** POST /api/v1/models/status: the served model is DOWNLOADED (its weights are loaded or seeded), any other NOT_FOUND. */
  modelStatus(m: HfModel): Record<string, unknown> {
    const { model, served } = this.modelOf(m);
    return { model, status: served ? 'DOWNLOADED' : 'NOT_FOUND', progress: null, error_message: null };
  }

  /** POST /api/v1/models/download: dit-poc never downloads; it answers as an offline MLNode does (IGNORED). */
  modelDownload(m: HfModel): { code: number; body: Record<string, unknown> } {
    const { model, served } = this.modelOf(m);
    const task_id = `${model.hf_repo}:${model.hf_commit ?? 'latest'}`;
    return served ? { code: 200, body: { task_id, status: 'DOWNLOADED', model } } : { code: 202, body: { task_id, status: 'IGNORED', model } };
  }

  /** DELETE /api/v1/models: the served checkpoint is never deleted from here. */
  modelDelete(m: HfModel): never {
    const { served } = this.modelOf(m);
    if (served) throw new HttpError(409, `'${m.hf_repo}' is the model this node serves; dit-poc does not delete it`);
    throw new HttpError(404, `model '${m.hf_repo}' not found on this node`);
  }

  /** GET /api/v1/models/list */
  modelList(): Record<string, unknown> {
    return { models: this.o.names.all.map((hf_repo) => ({ model: { hf_repo, hf_commit: null }, status: 'DOWNLOADED' })) };
  }

  /** GET /api/v1/models/space: the checkpoint's size and the free space of its disk. */
  async diskSpace(): Promise<Record<string, unknown>> {
    const dir = this.o.weights === 'random' ? null : resolve(this.o.weights);
    const fsInfo = statfsSync(dir ?? process.cwd());
    const gb = (bytes: number) => bytes / 1024 ** 3;
    return { cache_size_gb: dir ? gb(await directoryBytes(dir)) : 0, available_gb: gb(fsInfo.bavail * fsInfo.bsize), cache_path: dir ?? '' };
  }
}

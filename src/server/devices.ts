// Device workers: one per compute device given to `--devices`. Each owns its models (one copy of
// the weights per device), runs one thing at a time (generation holds it for a whole sprint,
// queued jobs per chunk) and measures how long its forwards keep it busy.
//
// Only the CPU backend exists today: `--devices cpu` is one worker with all threads,
// `--devices cpu,cpu` two workers sharing the threads. GPU ordinals (`0,1`) run the CUDA
// backend on those devices, and are refused when the native build has no CUDA backend.
import { NonceRunner, openModel } from '../engine/nonce-runner.js';
import { addon, type NativeModel } from '../engine/native.js';
import type { NonceInputs } from '../inputs/nonce-inputs.js';
import { InputError } from '../errors.js';
import type { RoundParams } from '../round/params.js';

export interface DeviceSpec {
  /** Label in logs and metrics: "cpu0", "cpu1", "gpu0"… */
  id: string;
  kind: 'cpu' | 'gpu';
  /** GPU ordinal (kind gpu). */
  ordinal?: number;
  threads?: number;
}

/** Parses `--devices`: "cpu", "cpu,cpu" or GPU ordinals "0,1"; threads are shared by CPU workers. */
export function parseDevices(text: string, threads?: number): DeviceSpec[] {
  const parts = text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (parts.length === 0) throw new InputError('--devices must list at least one device (e.g. cpu, or 0,1)');
  if (parts.length > 64) throw new InputError('--devices lists more than 64 devices');
  const specs: DeviceSpec[] = [];
  let cpus = 0;
  const seen = new Set<number>();
  for (const p of parts) {
    if (p === 'cpu') {
      specs.push({ id: `cpu${cpus++}`, kind: 'cpu' });
    } else if (/^\d+$/.test(p)) {
      const ordinal = Number(p);
      if (seen.has(ordinal)) throw new InputError(`--devices names GPU ${ordinal} twice`);
      seen.add(ordinal);
      specs.push({ id: `gpu${ordinal}`, kind: 'gpu', ordinal });
    } else {
      throw new InputError(`--devices: '${p}' is neither 'cpu' nor a GPU ordinal`);
    }
  }
  const backends = addon().buildInfo().backends;
  const gpu = specs.find((s) => s.kind === 'gpu');
  if (gpu && !backends.includes('cuda'))
    throw new InputError(`--devices: GPU ${gpu.ordinal} requested, but this build has no CUDA backend (backends: ${backends.join(', ')}); use --devices cpu`);
  if (cpus > 0) {
    const total = threads ?? addon().buildInfo().hardwareThreads;
    const each = Math.max(1, Math.floor(total / cpus));
    for (const s of specs) if (s.kind === 'cpu') s.threads = each;
  }
  return specs;
}

/** The cache key of a round's weights: random weights change with their seed. */
export function weightsKey(round: RoundParams): string {
  return `${round.model}|${round.weights}|${round.weights === 'random' ? round.weightsSeed : ''}`;
}

interface CachedModel {
  key: string;
  model: Promise<NativeModel>;
  refs: number;
  lastUsed: number;
}

export interface ModelLease {
  model: NativeModel;
  release(): void;
}

/** A NonceRunner whose forwards count towards its device's busy time. */
class TimedRunner extends NonceRunner {
  constructor(
    private readonly device: DeviceWorker,
    model: NativeModel,
    round: RoundParams,
  ) {
    super(model, round);
  }

  override async forward(inputs: NonceInputs[]): Promise<Float32Array> {
    this.device.busyStart();
    try {
      return await super.forward(inputs);
    } finally {
      this.device.busyEnd();
    }
  }
}

export class DeviceWorker {
  private readonly models = new Map<string, CachedModel>();
  private tail: Promise<unknown> = Promise.resolve();
  private busyMs = 0;
  private busySince: number | null = null;
  private depth = 0;

  constructor(
    readonly index: number,
    readonly spec: DeviceSpec,
    /** Models kept loaded per device (random weights change every round). */
    private readonly maxModels = 2,
  ) {}

  get backend(): string {
    return this.spec.kind;
  }

  /** Seconds spent in forwards so far (including the one running). */
  get busySeconds(): number {
    const running = this.busySince !== null ? performance.now() - this.busySince : 0;
    return (this.busyMs + running) / 1000;
  }

  busyStart(): void {
    if (this.depth++ === 0) this.busySince = performance.now();
  }

  busyEnd(): void {
    if (--this.depth === 0 && this.busySince !== null) {
      this.busyMs += performance.now() - this.busySince;
      this.busySince = null;
    }
  }

  /** Whether the round's weights are loaded (or loading) on this device. */
  holds(round: RoundParams): boolean {
    return this.models.has(weightsKey(round));
  }

  /** The round's model on this device, loaded once and shared until released. */
  async acquire(round: RoundParams): Promise<ModelLease> {
    const key = weightsKey(round);
    let c = this.models.get(key);
    if (!c) {
      const placed: RoundParams =
        this.spec.kind === 'gpu' ? { ...round, backend: 'cuda', device: this.spec.ordinal! } : { ...round, backend: 'cpu' };
      const model = openModel(placed, this.spec.threads);
      c = { key, model, refs: 0, lastUsed: Date.now() };
      this.models.set(key, c);
      model.catch(() => this.models.delete(key));
    }
    c.refs++;
    c.lastUsed = Date.now();
    const entry = c;
    let model: NativeModel;
    try {
      model = await entry.model;
    } catch (e) {
      entry.refs--;
      throw new InputError(`cannot load weights '${round.weights}' on ${this.spec.id}: ${(e as Error).message}`);
    }
    this.evict();
    let released = false;
    return {
      model,
      release: () => {
        if (released) return;
        released = true;
        entry.refs--;
        entry.lastUsed = Date.now();
        this.evict();
      },
    };
  }

  /** acquire(), given up (null) as soon as `signal` aborts; a load still running is released when it ends. */
  async acquireUnlessAborted(round: RoundParams, signal: AbortSignal): Promise<ModelLease | null> {
    if (signal.aborted) return null;
    const lease = this.acquire(round);
    let onAbort!: () => void;
    const aborted = new Promise<null>((r) => {
      onAbort = () => r(null);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const got = await Promise.race([lease, aborted]);
      if (got === null) lease.then((l) => l.release(), () => undefined);
      return got;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  runner(model: NativeModel, round: RoundParams): NonceRunner {
    return new TimedRunner(this, model, round);
  }

  /** Runs fn when the device is free; one holder at a time, first come first served. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Cancels every forward in flight on this device. */
  cancel(): void {
    for (const c of this.models.values()) c.model.then((m) => m.cancel(), () => undefined);
  }

  /** Frees every model (a load still running is freed when it ends). */
  dispose(): void {
    for (const c of this.models.values()) c.model.then((m) => m.dispose(), () => undefined);
    this.models.clear();
  }

  private evict(): void {
    if (this.models.size <= this.maxModels) return;
    const idle = [...this.models.values()].filter((c) => c.refs === 0).sort((a, b) => a.lastUsed - b.lastUsed);
    while (this.models.size > this.maxModels && idle.length > 0) {
      const c = idle.shift()!;
      this.models.delete(c.key);
      c.model.then((m) => m.dispose(), () => undefined);
    }
  }
}

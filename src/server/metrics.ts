// Prometheus metrics of `dit-poc serve` (GET /metrics), on a registry of their own.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

import type { DeviceWorker } from './devices.js';

export interface MetricSources {
  spoolDepth(): { segments: number; artifacts: number; bytes: number };
  spoolDiskFull?(): boolean;
  jobQueue(): { jobs: number; nonces: number };
  generating(): boolean;
  devices: DeviceWorker[];
  model: string;
}

/** Rate of a monotonic value over a sliding window, sampled once a second. */
class WindowRate {
  private readonly samples: Array<[number, number]> = [];
  constructor(
    private readonly read: () => number,
    private readonly windowS = 10,
  ) {}
  sample(): void {
    this.samples.push([performance.now(), this.read()]);
    while (this.samples.length > this.windowS + 1) this.samples.shift();
  }
  rate(): number {
    if (this.samples.length < 2) return 0;
    const [t0, v0] = this.samples[0];
    const [t1, v1] = [performance.now(), this.read()];
    return t1 > t0 ? ((v1 - v0) * 1000) / (t1 - t0) : 0;
  }
}

export class ServerMetrics {
  readonly registry = new Registry();
  readonly nonces: Counter<'device'>;
  readonly dropped: Counter<'device'>;
  readonly callbacks: Counter<'kind' | 'outcome'>;
  readonly callbackFailures: Counter<'kind' | 'reason'>;
  readonly artifactsDelivered: Counter;
  readonly requests: Counter<'route' | 'status'>;
  readonly jobs: Counter<'kind' | 'outcome'>;
  readonly roundsFailed: Counter;
  readonly deadLetters: Counter<'kind' | 'reason'>;
  readonly batchFailures: Counter<'reason'>;
  readonly unhandledRejections: Counter;
  private noncesSum = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly rates: { total: WindowRate; busy: Map<string, WindowRate> };

  constructor(src: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.nonces = new Counter({ name: 'ditpoc_nonces_total', help: 'Nonces computed into artifacts', labelNames: ['device'], registers });
    this.dropped = new Counter({ name: 'ditpoc_nonces_dropped_total', help: 'Nonces whose output was non-finite (no artifact)', labelNames: ['device'], registers });
    this.callbacks = new Counter({ name: 'ditpoc_callbacks_total', help: 'Callback deliveries by outcome (delivered, dead = refused for good)', labelNames: ['kind', 'outcome'], registers });
    this.callbackFailures = new Counter({ name: 'ditpoc_callback_failures_total', help: 'Failed callback attempts (retried)', labelNames: ['kind', 'reason'], registers });
    this.artifactsDelivered = new Counter({ name: 'ditpoc_artifacts_delivered_total', help: 'Artifacts acknowledged by the callback receiver', registers });
    this.requests = new Counter({ name: 'ditpoc_http_requests_total', help: 'HTTP requests answered', labelNames: ['route', 'status'], registers });
    this.jobs = new Counter({ name: 'ditpoc_jobs_total', help: 'Finished /generate jobs', labelNames: ['kind', 'outcome'], registers });
    this.deadLetters = new Counter({ name: 'ditpoc_callbacks_dead_total', help: 'Callbacks moved to <spool>/dead (refused: 4xx too often; failed: every attempt failed)', labelNames: ['kind', 'reason'], registers });
    this.roundsFailed = new Counter({ name: 'ditpoc_rounds_failed_total', help: 'Generations given up (failed batches in a row, or an unhandled error)', registers });
    this.batchFailures = new Counter({ name: 'ditpoc_batch_failures_total', help: 'Failed generation batches (out_of_memory: halved and retried)', labelNames: ['reason'], registers });
    this.unhandledRejections = new Counter({ name: 'ditpoc_unhandled_rejections_total', help: 'Promise rejections nothing handled (logged; the server stays up)', registers });

    this.rates = { total: new WindowRate(() => this.noncesSum), busy: new Map(src.devices.map((d) => [d.spec.id, new WindowRate(() => d.busySeconds)])) };
    const rates = this.rates;
    new Gauge({
      name: 'ditpoc_nonces_per_second', help: 'Nonces per second over the last 10 s', registers,
      collect() { this.set(rates.total.rate()); },
    });
    new Gauge({
      name: 'ditpoc_generating', help: '1 while a PoC generation runs', registers,
      collect() { this.set(src.generating() ? 1 : 0); },
    });
    new Gauge({
      name: 'ditpoc_spool_disk_full', help: '1 while the spool disk is full (generation paused until space returns)', registers,
      collect() { this.set(src.spoolDiskFull?.() ? 1 : 0); },
    });
    new Gauge({
      name: 'ditpoc_spool_segments', help: 'Callback bodies on disk awaiting acknowledgement', registers,
      collect() { this.set(src.spoolDepth().segments); },
    });
    new Gauge({
      name: 'ditpoc_spool_artifacts', help: 'Artifacts on disk awaiting acknowledgement', registers,
      collect() { this.set(src.spoolDepth().artifacts); },
    });
    new Gauge({
      name: 'ditpoc_spool_bytes', help: 'Bytes in the spool directory awaiting acknowledgement', registers,
      collect() { this.set(src.spoolDepth().bytes); },
    });
    new Gauge({
      name: 'ditpoc_job_queue_jobs', help: 'Queued or running /generate jobs', registers,
      collect() { this.set(src.jobQueue().jobs); },
    });
    new Gauge({
      name: 'ditpoc_job_queue_nonces', help: 'Nonces in queued or running /generate jobs', registers,
      collect() { this.set(src.jobQueue().nonces); },
    });
    new Gauge({
      name: 'ditpoc_device_info', help: 'Compute devices (value 1)', labelNames: ['device', 'backend', 'threads', 'model'], registers,
      collect() {
        for (const d of src.devices) this.set({ device: d.spec.id, backend: d.backend, threads: String(d.spec.threads ?? ''), model: src.model }, 1);
      },
    });
    new Gauge({
      name: 'ditpoc_device_busy_seconds', help: 'Seconds each device spent in forwards', labelNames: ['device'], registers,
      collect() { for (const d of src.devices) this.set({ device: d.spec.id }, d.busySeconds); },
    });
    new Gauge({
      name: 'ditpoc_device_utilization', help: 'Fraction of the last 10 s each device spent in forwards', labelNames: ['device'], registers,
      collect() { for (const [id, r] of rates.busy) this.set({ device: id }, Math.min(1, r.rate())); },
    });
    this.timer = setInterval(() => {
      rates.total.sample();
      for (const r of rates.busy.values()) r.sample();
    }, 1000);
    this.timer.unref();
    rates.total.sample();
  }

  countNonces(device: string, computed: number, dropped: number): void {
    if (computed) this.nonces.inc({ device }, computed);
    if (dropped) this.dropped.inc({ device }, dropped);
    this.noncesSum += computed + dropped;
  }

  close(): void {
    clearInterval(this.timer);
  }
}

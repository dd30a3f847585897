// This node's GPUs in the MLNode's shape (mlnodeclient GPUDevice / DriverInfo), read from
// nvidia-smi the way the MLNode reads NVML. Only the GPUs given to `--devices` are listed: they
// are the ones this node computes on; a CPU-only node lists none, as an MLNode without NVML does.
import { execFile } from 'node:child_process';

export interface GpuDevice {
  index: number;
  name: string;
  total_memory_mb: number | null;
  free_memory_mb: number | null;
  used_memory_mb: number | null;
  utilization_percent: number | null;
  temperature_c: number | null;
  is_available: boolean;
  error_message: string | null;
}

export interface DriverInfo {
  driver_version: string;
  cuda_driver_version: string;
  nvml_version: string;
}

function smi(args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('nvidia-smi', args, { timeout: 10_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) =>
      err ? reject(new Error(`nvidia-smi: ${(stderr || err.message).trim()}`)) : resolve(stdout),
    ),
  );
}

const num = (s: string | undefined): number | null => {
  const n = Number(s?.trim());
  return s === undefined || s.trim() === '' || !Number.isFinite(n) ? null : Math.round(n);
};

/** One device per ordinal; a device nvidia-smi cannot answer for is listed unavailable, with the reason. */
export async function gpuDevices(ordinals: number[]): Promise<GpuDevice[]> {
  if (ordinals.length === 0) return [];
  let rows = new Map<number, string[]>();
  let failure: string | null = null;
  try {
    const out = await smi(['--query-gpu=index,name,memory.total,memory.free,memory.used,utilization.gpu,temperature.gpu', '--format=csv,noheader,nounits']);
    rows = new Map(out.split('\n').filter((l) => l.trim()).map((l) => l.split(',').map((f) => f.trim())).map((f) => [Number(f[0]), f]));
  } catch (e) {
    failure = (e as Error).message;
  }
  return ordinals.map((index) => {
    const f = rows.get(index);
    if (!f) return { index, name: 'unknown', total_memory_mb: null, free_memory_mb: null, used_memory_mb: null, utilization_percent: null, temperature_c: null, is_available: false, error_message: failure ?? `nvidia-smi lists no GPU ${index}` };
    return { index, name: f[1], total_memory_mb: num(f[2]), free_memory_mb: num(f[3]), used_memory_mb: num(f[4]), utilization_percent: num(f[5]), temperature_c: num(f[6]), is_available: true, error_message: null };
  });
}

/** Driver versions; throws when there is no NVIDIA driver (the route answers 503, as the MLNode's does). */
export async function driverInfo(): Promise<DriverInfo> {
  const out = await smi(['-q']);
  const field = (label: string) => new RegExp(`^\\s*${label}\\s*:\\s*(.+)$`, 'm').exec(out)?.[1].trim() ?? '';
  const driver = field('Driver Version');
  if (!driver) throw new Error('nvidia-smi reports no driver version');
  // NVML ships with the driver: its version is the driver's, prefixed by the CUDA major.
  const cuda = field('CUDA Version');
  return { driver_version: driver, cuda_driver_version: cuda, nvml_version: cuda ? `${cuda.split('.')[0]}.${driver}` : driver };
}

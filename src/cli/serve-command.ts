// `dit-poc serve`: the ML-node service a Gonka decentralized-api drives like its vLLM nodes
// (Gonka PoC v2 API, SPEC §11). Logs are JSON lines (pino) on stdout; the first
// {"msg":"listening","url":…} line says where it listens. SIGTERM/SIGINT stop it gracefully.
import { resolve } from 'node:path';

import { Command, Option } from 'commander';
import { pino, symbols as pinoSymbols } from 'pino';

import { addon } from '../engine/native.js';
import { isQuiet } from './progress.js';
import { InputError } from '../errors.js';
import { modelInfo } from '../round/params.js';
import { parseDevices } from '../server/devices.js';
import { checkNonceFlags } from '../server/params.js';
import { registryIdOf, ServedNames } from '../server/model-names.js';
import { startServer } from '../server/server.js';
import { addRoundOptions, portNumber, nonNegativeInt, positiveInt, positiveNumber, type RoundCliOptions } from './options.js';

interface ServeOptions extends Omit<RoundCliOptions, 'blockHash' | 'publicKey'> {
  threads?: number;
  host: string;
  port: number;
  devices?: string;
  spoolDir: string;
  spoolMaxMb: number;
  maxCallbackArtifacts: number;
  token?: string;
  batch: number;
  callbackInterval: number;
  callbackTimeout: number;
  retryInitial: number;
  retryMax: number;
  maxRejects: number;
  maxAttempts: number;
  shutdownTimeout: number;
  bodyLimit: number;
  requestTimeout: number;
  memoryBudgetMb?: number;
  resultTtl: number;
  logLevel: string;
  servedModelName?: string[];
}

const opt = (flags: string, desc: string, env: string) => new Option(flags, desc).env(env);

/** --devices, or the one device --backend / --device name (auto: the GPU when one answers, else the CPU). */
function devicesOf(o: ServeOptions, cmd: Command): string {
  const given = (name: string) => cmd.getOptionValueSource(name) === 'cli' || cmd.getOptionValueSource(name) === 'env';
  if (o.devices !== undefined) {
    if (given('backend') || given('device'))
      throw new InputError(`give the devices once: --devices ${o.devices}, or --backend and --device, not both`);
    return o.devices;
  }
  if (o.backend === 'cpu') {
    if (given('device')) throw new InputError('--device picks a GPU; with --backend cpu leave it out (use --threads for the CPU)');
    return 'cpu';
  }
  if (o.backend === 'cuda' || addon().buildInfo().backends.includes('cuda')) return String(o.device);
  if (given('device')) throw new InputError(`--device ${o.device}: no CUDA device answers in this build (backends: ${addon().buildInfo().backends.join(', ')})`);
  return 'cpu';
}

export function serveCommand(): Command {
  const cmd = new Command('serve').description('serve the Gonka PoC v2 ML-node API (init/generate, generate, status, stop) with durable callbacks');
  addRoundOptions(cmd, { requireKeys: false });
  return cmd
    .addOption(new Option('--served-model-name <names...>', 'names requests may use for the model, as vLLM\'s (the first is listed first by /v1/models); its Hugging Face ids are always accepted'))
    .addOption(opt('--host <addr>', 'address to bind', 'DITPOC_HOST').default('127.0.0.1'))
    .addOption(opt('--port <N>', 'port (0 = any free port)', 'DITPOC_PORT').argParser(portNumber('--port')).default(8080))
    .addOption(opt('--devices <list>', "device workers: 'cpu', 'cpu,cpu' or GPU ordinals '0,1' (default: from --backend and --device)", 'DITPOC_DEVICES'))
    .addOption(opt('--spool-dir <DIR>', 'durable callback spool', 'DITPOC_SPOOL_DIR').default('dit-poc-spool'))
    .addOption(opt('--spool-max-mb <N>', 'generation pauses while the spool holds more', 'DITPOC_SPOOL_MAX_MB').argParser(positiveNumber('--spool-max-mb')).default(1024))
    .addOption(opt('--max-callback-artifacts <N>', 'artifacts per callback at most', 'DITPOC_MAX_CALLBACK_ARTIFACTS').argParser(positiveInt('--max-callback-artifacts')).default(10_000))
    .addOption(opt('--token <T>', 'require Authorization: Bearer T on every route but /health', 'DITPOC_TOKEN'))
    .addOption(opt('--batch <N>', 'nonces per forward when a request gives no batch_size', 'DITPOC_BATCH').argParser(positiveInt('--batch')).default(8))
    .addOption(opt('--callback-interval <S>', 'seconds between {url}/generated callbacks', 'POC_CALLBACK_INTERVAL_SEC').argParser(positiveNumber('--callback-interval')).default(5))
    .addOption(opt('--callback-timeout <S>', 'seconds before a callback attempt is abandoned', 'DITPOC_CALLBACK_TIMEOUT_SEC').argParser(positiveNumber('--callback-timeout')).default(10))
    .addOption(opt('--retry-initial <MS>', 'first retry delay of a failed callback', 'DITPOC_RETRY_INITIAL_MS').argParser(positiveNumber('--retry-initial')).default(1000))
    .addOption(opt('--retry-max <MS>', 'cap of the exponential retry delay', 'DITPOC_RETRY_MAX_MS').argParser(positiveNumber('--retry-max')).default(30_000))
    .addOption(opt('--max-rejects <N>', '4xx answers before a callback is moved to <spool>/dead', 'DITPOC_MAX_REJECTS').argParser(positiveInt('--max-rejects')).default(5))
    .addOption(opt('--max-attempts <N>', 'failed attempts of any kind before a callback is moved to <spool>/dead (vLLM: 10)', 'DITPOC_MAX_ATTEMPTS').argParser(positiveInt('--max-attempts')).default(10))
    .addOption(opt('--memory-budget-mb <N>', "memory each device's forwards may use (default: the host's available memory, shared by CPU workers)", 'DITPOC_MEMORY_BUDGET_MB').argParser(positiveNumber('--memory-budget-mb')))
    .addOption(opt('--shutdown-timeout <S>', 'seconds from SIGTERM to exit at most (stopping, then flushing the spool)', 'DITPOC_SHUTDOWN_TIMEOUT_SEC').argParser(nonNegativeInt('--shutdown-timeout')).default(10))
    .addOption(opt('--body-limit <BYTES>', 'largest request body', 'DITPOC_BODY_LIMIT').argParser(positiveInt('--body-limit')).default(8 * 1024 * 1024))
    .addOption(opt('--request-timeout <S>', 'seconds a client has to send a whole request (headers and body)', 'DITPOC_REQUEST_TIMEOUT_SEC').argParser(positiveNumber('--request-timeout')).default(30))
    .addOption(opt('--result-ttl <S>', 'seconds finished /generate results stay readable', 'POC_GENERATE_RESULT_TTL_SEC').argParser(positiveNumber('--result-ttl')).default(300))
    .addOption(opt('--log-level <L>', 'log level', 'DITPOC_LOG_LEVEL').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'))
    .action(async (o: ServeOptions) => {
      // vLLM takes a Hugging Face id as --model; so does serve.
      o.model = registryIdOf(o.model) ?? o.model;
      modelInfo(o.model);
      checkNonceFlags(o.model, { grid: o.grid, ctxLen: o.ctxLen, kDim: o.kDim, weightsSeed: o.weightsSeed, strongerRng: o.strongerRng, precision: o.precision });
      if (o.retryMax < o.retryInitial) throw new InputError('--retry-max must not be below --retry-initial');
      const devices = parseDevices(devicesOf(o, cmd), o.threads);
      // --quiet keeps warnings and errors, unless --log-level says otherwise.
      const level = isQuiet() && cmd.getOptionValueSource('logLevel') === 'default' ? 'warn' : o.logLevel;
      const logger = pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
      const server = await startServer({
        deployed: {
          model: o.model,
          names: new ServedNames(o.model, o.servedModelName),
          weights: o.weights,
          grid: o.grid,
          ctxLen: o.ctxLen,
          kDim: o.kDim,
        },
        devices,
        host: o.host,
        port: o.port,
        spoolDir: resolve(o.spoolDir),
        spoolMaxBytes: o.spoolMaxMb * 1024 * 1024,
        maxCallbackArtifacts: o.maxCallbackArtifacts,
        token: o.token || undefined,
        defaultBatchSize: o.batch,
        callbackIntervalMs: o.callbackInterval * 1000,
        callbackTimeoutMs: o.callbackTimeout * 1000,
        retry: { initialMs: o.retryInitial, maxMs: o.retryMax, factor: 2 },
        maxRejects: o.maxRejects,
        maxAttempts: o.maxAttempts,
        shutdownTimeoutMs: o.shutdownTimeout * 1000,
        bodyLimit: o.bodyLimit,
        requestTimeoutMs: Math.round(o.requestTimeout * 1000),
        memoryBudgetBytes: o.memoryBudgetMb !== undefined ? o.memoryBudgetMb * 1024 * 1024 : undefined,
        resultTtlMs: o.resultTtl * 1000,
        logger,
      });
      logger.info({ url: server.url, model: o.model, devices: devices.map((d) => d.id), spool_dir: resolve(o.spoolDir), auth: o.token ? 'bearer' : 'none' }, 'listening');
      if (!o.token && !/^(127\.|::1$|localhost$)/.test(o.host))
        logger.warn({ host: o.host }, 'listening beyond loopback without --token: anyone who reaches this port can start and stop PoC work');

      const signal = await new Promise<NodeJS.Signals>((done) => {
        process.once('SIGTERM', () => done('SIGTERM'));
        process.once('SIGINT', () => done('SIGINT'));
      });
      // Exits without Node's exit path, which waits for native work still on the thread pool (an
      // uncancellable weights load, say): the logs are flushed first, the spool is on disk.
      const exitNow = (code: number): never => {
        try {
          (logger as unknown as Record<symbol, { flushSync?: () => void }>)[pinoSymbols.streamSym]?.flushSync?.();
        } catch {
          // a closed stdout: nothing more can be logged anyway
        }
        return addon().hardExit(code);
      };
      // A second signal leaves at once: whatever is not delivered is on disk already.
      const hard = () => {
        logger.warn('second signal: exiting without waiting for the spool');
        exitNow(1);
      };
      process.once('SIGTERM', hard);
      process.once('SIGINT', hard);
      // --shutdown-timeout is a hard bound: whatever is not delivered by then stays on disk.
      setTimeout(() => {
        logger.error({ shutdown_timeout_s: o.shutdownTimeout }, 'shutdown timeout reached: exiting now');
        exitNow(1);
      }, o.shutdownTimeout * 1000).unref();
      await server.shutdown(signal);
      logger.info('stopped');
      // Keep-alive sockets of the callback client must not hold the process open either.
      exitNow(0);
    });
}

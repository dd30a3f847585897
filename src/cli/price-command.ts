// `dit-poc price`: FLOPs and price units of video-generation requests (SPEC §12).
import { readFileSync, writeFileSync } from 'node:fs';

import { Command } from 'commander';

import { addon } from '../engine/native.js';
import { InputError } from '../errors.js';
import {
  fitAlphaBeta,
  gpuSeconds,
  parseBenchFile,
  pricedModelIds,
  priceRequest,
  referenceSize,
  supportedSizes,
  type CostFit,
  type Price,
  type PricingModel,
} from '../pricing/cost-model.js';
import { positiveInt, positiveNumber } from './options.js';

interface PriceCliOptions {
  model?: string;
  width?: number;
  height?: number;
  frames?: number;
  steps?: number;
  cfg: boolean;
  ctxLen: number;
  fit?: string;
  tflops?: number;
  plot?: string;
  json: boolean;
}

const HELP_AFTER = `
With --width and --height: the price of one request (frames and steps default to the model's
official values). Without: a table of every supported size of every model (or of --model).

One unit = one DiT forward at the smallest supported size of that model. A request costs
  units = passes · c(N) / c(N_ref),  passes = steps · (CFG ? 2 : 1),  c(N) = α·N² + β·N + γ
where N is the latent-patch count, α, β, γ come from the FLOP model (SPEC §12) or from --fit.

--fit FILE takes measured seconds per forward on one device:
  { "model": "wan2.2-t2v-a14b", "points": [ { "tokens": 32760, "seconds": 2.9 }, ... ] }
("model" optional; ≥ 3 points at ≥ 3 distinct token counts; fits seconds = α·N² + β·N + γ ≥ 0).`;

function out(line = ''): void {
  process.stdout.write(line + '\n');
}

const fmtInt = (n: number): string => n.toLocaleString('en-US');
const pflop = (f: number): string => (f / 1e15).toFixed(3);

function loadModels(): PricingModel[] {
  return addon().models();
}

function findModel(models: PricingModel[], id: string): PricingModel {
  const m = models.find((x) => x.id === id);
  if (!m) throw new InputError(`unknown model '${id}' (known: ${models.map((x) => x.id).join(', ')})`);
  supportedSizes(id); // throws for a model without a sizes table
  return m;
}

function jsonRecord(p: Price, extra: Record<string, unknown>): Record<string, unknown> {
  const { latent_patches, forward_passes, flops, units, ...rest } = p;
  return { latent_patches, forward_passes, flops, units, ...extra, ...rest };
}

export function priceCommand(): Command {
  return new Command('price')
    .description('FLOPs, price units and GPU-seconds of video-generation requests (SPEC §12)')
    .option('--model <id>', 'model id (default for the table: every priced model)')
    .option('--width <W>', 'video width in pixels', positiveInt('--width'))
    .option('--height <H>', 'video height in pixels', positiveInt('--height'))
    .option('--frames <T>', 'frames, 4k+1 (default: the model’s, 81 or 121)', positiveInt('--frames'))
    .option('--steps <S>', 'sampling steps (default: the model’s, 40 or 50)', positiveInt('--steps'))
    .option('--no-cfg', 'no classifier-free guidance (one forward per step instead of two)')
    .option('--ctx-len <N>', 'text tokens', positiveInt('--ctx-len'), 512)
    .option('--fit <bench.json>', 'fit α, β, γ to measured seconds per forward (format below)')
    .option('--tflops <X>', 'achieved TFLOP/s of a benchmarked device, to estimate GPU-seconds', positiveNumber('--tflops'))
    .option('--plot <out.png>', 'write a PNG of units per forward vs latent patches (log y)')
    .option('--json', 'print JSON', false)
    .addHelpText('after', HELP_AFTER)
    .action(async (o: PriceCliOptions) => {
      if ((o.width === undefined) !== (o.height === undefined))
        throw new InputError('--width and --height go together');
      const all = loadModels();

      // --fit: coefficients for one model
      let fit: CostFit | undefined;
      let modelId = o.model;
      if (o.fit !== undefined) {
        let text: string;
        try {
          text = readFileSync(o.fit, 'utf8');
        } catch (e) {
          throw new InputError(`--fit: cannot read ${o.fit}: ${e instanceof Error ? e.message : String(e)}`);
        }
        const bench = parseBenchFile(text, o.fit);
        if (bench.model !== undefined && modelId !== undefined && bench.model !== modelId)
          throw new InputError(`--fit: ${o.fit} was measured on model '${bench.model}', not '${modelId}'`);
        modelId ??= bench.model;
        if (modelId === undefined) throw new InputError('--fit needs --model (or "model" in the bench file)');
        fit = fitAlphaBeta(bench.points);
      }

      const models = modelId !== undefined ? [findModel(all, modelId)] : pricedModelIds().map((id) => findModel(all, id));
      const extras = (p: Price): Record<string, unknown> => {
        const e: Record<string, unknown> = {};
        if (o.tflops !== undefined) {
          e.tflops = o.tflops;
          e.gpu_seconds = gpuSeconds(p.flops, o.tflops);
        }
        return e;
      };

      if (o.width !== undefined && o.height !== undefined) {
        if (modelId === undefined) throw new InputError('pricing one size needs --model');
        const model = models[0];
        const def = supportedSizes(model.id)[0];
        const frames = o.frames ?? def.frames;
        const steps = o.steps ?? def.steps;
        const p = priceRequest({ model, width: o.width, height: o.height, frames, steps, cfg: o.cfg, ctxLen: o.ctxLen, fit });
        const ex = extras(p);
        if (o.json) {
          out(JSON.stringify(jsonRecord(p, { model: model.id, width: o.width, height: o.height, frames, steps, cfg: o.cfg, ctx_len: o.ctxLen, ...ex })));
        } else {
          const r = p.reference;
          out(`model            ${model.id}`);
          out(`size             ${o.width}×${o.height}×${frames}  (latent grid ${p.grid.join('×')})`);
          out(`latent patches   ${fmtInt(p.latent_patches)}`);
          out(`forward passes   ${p.forward_passes}  (${steps} steps${o.cfg ? ' × 2, CFG' : ', no CFG'})`);
          out(`FLOPs            ${pflop(p.flops)} PFLOP  (${pflop(p.flops_per_forward)} PFLOP per forward, ${(100 * p.quadratic_share).toFixed(1)} % in the L² term${p.coefficients === 'fit' ? ' of the fit' : ''})`);
          out(`units            ${p.units.toFixed(2)}  (1 unit = one forward at ${r.width}×${r.height}×${r.frames}, ${fmtInt(r.latent_patches)} patches${p.coefficients === 'fit' ? '; fitted α, β, γ' : ''})`);
          if (p.fitted_seconds !== undefined) out(`fitted seconds   ${p.fitted_seconds.toFixed(1)} s  (α·N² + β·N + γ per forward, fitted to ${o.fit})`);
          if (o.tflops !== undefined) out(`GPU-seconds      ${(ex.gpu_seconds as number).toFixed(1)} s  (at ${o.tflops} TFLOP/s achieved)`);
        }
      } else {
        const rows: { model: string; p: Price; size: { width: number; height: number; frames: number; steps: number } }[] = [];
        for (const model of models) {
          for (const s of supportedSizes(model.id)) {
            const size = { width: s.width, height: s.height, frames: o.frames ?? s.frames, steps: o.steps ?? s.steps };
            const p = priceRequest({ model, ...size, cfg: o.cfg, ctxLen: o.ctxLen, fit });
            rows.push({ model: model.id, p, size });
          }
        }
        if (o.json) {
          out(JSON.stringify(rows.map((r) => jsonRecord(r.p, { model: r.model, ...r.size, cfg: o.cfg, ctx_len: o.ctxLen, ...extras(r.p) }))));
        } else {
          const head = ['model', 'size', 'steps', 'passes', 'patches', 'PFLOP/fwd', 'PFLOP', 'L² share', 'units'];
          if (fit) head.push('fit s');
          if (o.tflops !== undefined) head.push('GPU-s');
          const table = rows.map(({ model, p, size }) => {
            const cells = [
              model,
              `${size.width}×${size.height}×${size.frames}`,
              String(size.steps),
              String(p.forward_passes),
              fmtInt(p.latent_patches),
              pflop(p.flops_per_forward),
              (p.flops / 1e15).toFixed(1),
              `${(100 * p.quadratic_share).toFixed(1)} %`,
              p.units.toFixed(2),
            ];
            if (fit) cells.push(p.fitted_seconds!.toFixed(1));
            if (o.tflops !== undefined) cells.push(gpuSeconds(p.flops, o.tflops).toFixed(1));
            return cells;
          });
          const widths = head.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
          const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
          out(line(head));
          for (const r of table) out(line(r));
          out();
          out(`units: 1 = one forward at the model's smallest supported size (${models.map((m) => { const r = referenceSize(m); return `${m.id} ${r.width}×${r.height}×${r.frames}`; }).join('; ')})`);
          out(`CFG ${o.cfg ? 'on (2 forwards per step)' : 'off'}, ctx-len ${o.ctxLen}${o.tflops !== undefined ? `, GPU-s at ${o.tflops} TFLOP/s achieved` : ''}${fit ? `, α β γ fitted to ${o.fit}` : ''}`);
        }
      }

      if (o.plot !== undefined) await writePlot(o.plot, models, modelId !== undefined, o.ctxLen, fit, o.json);
    });
}

/** Units per forward vs latent patches, with and without the L² term, one pair of lines per model. */
async function writePlot(
  file: string,
  models: PricingModel[],
  explicit: boolean,
  ctxLen: number,
  fit: CostFit | undefined,
  json: boolean,
): Promise<void> {
  // the test model's sizes are 3 orders of magnitude below the others: plot it only on request
  const shown = explicit ? models : models.filter((m) => m.id !== 'wan-tiny');
  const refs = shown.map((m) => referenceSize(m));
  const nMax = Math.max(
    ...shown.map((m) =>
      Math.max(...supportedSizes(m.id).map((s) => priceRequest({ model: m, ...s, steps: 1, cfg: false, ctxLen }).latent_patches)),
    ),
  );
  const nMin = Math.max(1, Math.floor(Math.min(...refs.map((r) => r.latent_patches)) / 8));
  const hi = Math.ceil(nMax * 1.5);
  const xs = Array.from({ length: 25 }, (_, i) => Math.round(nMin + ((hi - nMin) * i) / 24));
  const series: { label: string; x: number[]; y: number[] }[] = [];
  for (const [k, m] of shown.entries()) {
    const ref = refs[k];
    const p = priceRequest({ model: m, width: ref.width, height: ref.height, frames: ref.frames, steps: 1, cfg: false, ctxLen, fit });
    const cRef = p.alpha * ref.latent_patches ** 2 + p.beta * ref.latent_patches + p.gamma;
    series.push({ label: m.id, x: xs, y: xs.map((n) => (p.alpha * n * n + p.beta * n + p.gamma) / cRef) });
    series.push({ label: `${m.id} without L² term`, x: xs, y: xs.map((n) => (p.beta * n + p.gamma) / cRef) });
  }
  const { lineChartPng } = await import('../report/plots.js');
  const png = await lineChartPng(series, {
    title: `Cost per forward vs latent patches${fit ? ' (fitted)' : ''} (1 unit = one forward at the model's smallest size)`,
    xLabel: 'latent patches N (tokens)',
    yLabel: 'units per forward',
    logY: true,
  });
  writeFileSync(file, png);
  (json ? process.stderr : process.stdout).write(`wrote ${file}\n`);
}

// PNG charts for calibration and cost reports, rendered headlessly with Chart.js 4 on
// @napi-rs/canvas (Skia; a prebuilt binary shipped in the npm package, no system libraries).
//
// Both libraries are loaded lazily on the first call, so importing this module never loads the
// native binary: a CLI that only prints JSON keeps working where the binary is unavailable.
// Chart.js runs on its BasicPlatform (no DOM) with animation off, so a chart is fully drawn when
// its constructor returns. Text uses the system fonts Skia finds (DejaVu Sans, Liberation Sans,
// Arial, …); with none installed labels would be invisible, so the usual font folders are loaded
// explicitly when Skia reports no font family.
import { InputError } from '../errors.js';

type ChartModule = typeof import('chart.js');
type CanvasModule = typeof import('@napi-rs/canvas');
type ChartCtor = ChartModule['Chart'];

let libs: Promise<{ Chart: ChartCtor; canvas: CanvasModule }> | undefined;

async function loadLibs(): Promise<{ Chart: ChartCtor; canvas: CanvasModule }> {
  libs ??= (async () => {
    // Optional dependencies: a consumer that never plots may install without them (--omit=optional).
    const [chartjs, canvas] = await Promise.all([import('chart.js'), import('@napi-rs/canvas')]).catch((e: unknown) => {
      throw new InputError(
        `plots need the optional packages chart.js and @napi-rs/canvas, which are not installed (${(e as Error).message.split('\n')[0]}); ` +
          'install them with `npm install chart.js@4.6.1 @napi-rs/canvas@1.1.1`, or run without plots',
      );
    });
    chartjs.Chart.register(...chartjs.registerables);
    if (canvas.GlobalFonts.families.length === 0) {
      for (const dir of ['/usr/share/fonts', '/usr/local/share/fonts', '/System/Library/Fonts', 'C:\\Windows\\Fonts']) {
        try {
          canvas.GlobalFonts.loadFontsFromDir(dir);
        } catch {
          // folder absent: try the next
        }
      }
    }
    return { Chart: chartjs.Chart, canvas };
  })();
  libs.catch(() => {
    libs = undefined; // let a later call retry (and report the error again)
  });
  return libs;
}

const FONT_FAMILY = "'DejaVu Sans', 'Liberation Sans', Arial, Helvetica, sans-serif";
const DEFAULT_WIDTH = 900;
const DEFAULT_HEIGHT = 560;
// Tableau 10: distinguishable, and readable in greyscale print thanks to the dash patterns below.
const PALETTE = [
  [31, 119, 180],
  [214, 39, 40],
  [44, 160, 44],
  [255, 127, 14],
  [148, 103, 189],
  [140, 86, 75],
  [227, 119, 194],
  [127, 127, 127],
  [188, 189, 34],
  [23, 190, 207],
];
const MARKER_COLORS = ['#000000', '#6a3d9a', '#b15928', '#01665e', '#8c2d04'];
const MARKER_DASHES = [[8, 4], [2, 3], [10, 3, 2, 3], [4, 4], [1, 2]];

function rgba(i: number, a: number): string {
  const [r, g, b] = PALETTE[i % PALETTE.length];
  return `rgba(${r}, ${g}, ${b}, ${a})`;
}

function font(size: number, weight: 'normal' | 'bold' = 'normal') {
  return { family: FONT_FAMILY, size, weight } as const;
}

function checkSize(width: number | undefined, height: number | undefined): { width: number; height: number } {
  const w = width ?? DEFAULT_WIDTH;
  const h = height ?? DEFAULT_HEIGHT;
  for (const [name, v] of [['width', w], ['height', h]] as const) {
    if (!Number.isInteger(v) || v < 200 || v > 8000) {
      throw new InputError(`plot ${name} must be an integer in [200, 8000], got ${String(v)}`);
    }
  }
  return { width: w, height: h };
}

function checkFinite(values: readonly number[], what: string, allowPosInf = false): void {
  if (!Array.isArray(values)) throw new InputError(`${what} must be an array of numbers`);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== 'number' || Number.isNaN(v) || v === -Infinity || (!allowPosInf && v === Infinity)) {
      throw new InputError(`${what}[${i}] must be a finite number, got ${String(v)}`);
    }
  }
}

/** Fills the canvas white under everything Chart.js draws (its own clear() leaves it transparent). */
const whiteBackground = {
  id: 'ditPocWhiteBackground',
  beforeDraw(chart: { ctx: CanvasRenderingContext2D; width: number; height: number }) {
    const { ctx } = chart;
    ctx.save();
    ctx.globalCompositeOperation = 'destination-over';
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, chart.width, chart.height);
    ctx.restore();
  },
};

function commonOptions(title: string, xTitle: string, yTitle: string) {
  return {
    responsive: false,
    animation: false as const,
    devicePixelRatio: 1,
    layout: { padding: { left: 8, right: 20, top: 8, bottom: 8 } },
    plugins: {
      title: { display: true, text: title, font: font(19, 'bold'), color: '#111111', padding: { top: 6, bottom: 6 } },
      legend: {
        display: true,
        position: 'top' as const,
        labels: { font: font(14), color: '#222222', boxWidth: 28, boxHeight: 12, padding: 14 },
      },
      tooltip: { enabled: false },
    },
    elements: { point: { radius: 0 } },
    scales: {
      x: {
        title: { display: true, text: xTitle, font: font(15), color: '#222222' },
        ticks: { font: font(13), color: '#333333' },
        grid: { color: 'rgba(0, 0, 0, 0.09)' },
      },
      y: {
        title: { display: true, text: yTitle, font: font(15), color: '#222222' },
        ticks: { font: font(13), color: '#333333' },
        grid: { color: 'rgba(0, 0, 0, 0.09)' },
      },
    },
  };
}

async function render(
  width: number,
  height: number,
  // The config is assembled from plain objects; Chart.js's generic config type is too deep to
  // spell out here, so it is checked structurally at runtime by Chart.js itself.
  config: Record<string, unknown>,
): Promise<Buffer> {
  const { Chart, canvas } = await loadLibs();
  const cv = canvas.createCanvas(width, height);
  const plugins = [whiteBackground, ...(((config.plugins as unknown[]) ?? []) as object[])];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const chart = new Chart(cv as unknown as HTMLCanvasElement, { ...config, plugins } as any);
  try {
    chart.draw();
    return await cv.encode('png');
  } finally {
    chart.destroy();
  }
}

function fmtNum(x: number): string {
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e-3 && a < 1e5) return String(+x.toPrecision(4));
  return x.toExponential(3).replace(/\.?0+e/, 'e'); // 1e-4, 2.5e-5, 1.235e+6
}

/** Tick labels for a log axis: only 1·10ᵏ, 2·10ᵏ and 5·10ᵏ, formatted compactly. */
function logTick(value: number | string): string {
  const v = Number(value);
  if (!(v > 0)) return '';
  const mant = v / 10 ** Math.floor(Math.log10(v) + 1e-9);
  const m = Math.round(mant * 1e6) / 1e6;
  return m === 1 || m === 2 || m === 5 ? fmtNum(v) : '';
}

function setLogTicks(axis: Record<string, unknown>): void {
  axis.ticks = { ...(axis.ticks as object), callback: logTick, autoSkip: false, maxRotation: 0 };
}

export interface HistogramSeries {
  label: string;
  values: number[];
}

export interface HistogramOptions {
  title: string;
  xLabel: string;
  /** Number of bins shared by all series (default 40). */
  bins?: number;
  /** Logarithmic x axis with log-spaced bins; values ≤ 0 are counted in the first bin (noted in the axis title). */
  logX?: boolean;
  width?: number;
  height?: number;
  /** Vertical dashed lines, e.g. the p98 / p99.9 thresholds. */
  markers?: { label: string; x: number }[];
}

/**
 * Overlaid histograms (step outlines with semi-transparent fill), all series on the same bins,
 * each normalised to the fraction of its own samples per bin so that series of different sizes
 * compare. +Infinity values are left out and counted in the legend; markers are drawn as labelled
 * vertical lines and are kept inside the x range.
 */
export async function histogramPng(series: HistogramSeries[], opts: HistogramOptions): Promise<Buffer> {
  const { width, height } = checkSize(opts.width, opts.height);
  if (!Array.isArray(series) || series.length === 0) throw new InputError('histogramPng: need at least one series');
  const bins = opts.bins ?? 40;
  if (!Number.isInteger(bins) || bins < 1 || bins > 10_000) {
    throw new InputError(`histogramPng: bins must be an integer in [1, 10000], got ${String(bins)}`);
  }
  const markers = opts.markers ?? [];
  series.forEach((s, i) => checkFinite(s.values, `histogramPng: series[${i}].values`, true));
  markers.forEach((m, i) => checkFinite([m.x], `histogramPng: markers[${i}].x`));

  const finite = series.flatMap((s) => s.values.filter((v) => v !== Infinity));
  const rangeValues = [...finite, ...markers.map((m) => m.x)];
  let logX = opts.logX === true;
  let clampedNonPositive = false;
  if (logX) {
    const positive = rangeValues.filter((v) => v > 0);
    if (positive.length === 0) logX = false; // nothing to put on a log axis
    else clampedNonPositive = finite.some((v) => v <= 0);
  }
  let lo: number;
  let hi: number;
  if (rangeValues.length === 0) {
    lo = 0;
    hi = 1;
  } else if (logX) {
    const positive = rangeValues.filter((v) => v > 0);
    lo = Math.min(...positive);
    hi = Math.max(...positive);
    if (lo === hi) {
      lo /= 2;
      hi *= 2;
    }
  } else {
    lo = Math.min(...rangeValues);
    hi = Math.max(...rangeValues);
    if (lo === hi) {
      const pad = lo === 0 ? 0.5 : Math.abs(lo) * 0.5;
      lo -= pad;
      hi += pad;
    }
  }
  const edges: number[] = [];
  for (let k = 0; k <= bins; k++) {
    edges.push(logX ? Math.exp(Math.log(lo) + ((Math.log(hi) - Math.log(lo)) * k) / bins) : lo + ((hi - lo) * k) / bins);
  }
  edges[bins] = hi;
  const binOf = (v: number): number => {
    if (logX && v <= lo) return 0;
    const t = logX ? (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) : (v - lo) / (hi - lo);
    return Math.min(bins - 1, Math.max(0, Math.floor(t * bins)));
  };

  const datasets = series.map((s, i) => {
    const counts = new Array<number>(bins).fill(0);
    let inf = 0;
    for (const v of s.values) {
      if (v === Infinity) inf++;
      else counts[binOf(v)]++;
    }
    const total = s.values.length;
    const frac = counts.map((c) => (total > 0 ? c / total : 0));
    // Step outline: (e0, 0) → (e_k, frac_k) … → (e_B, 0), stepped 'after' = horizontal first.
    const data = [{ x: edges[0], y: 0 }, ...frac.map((y, k) => ({ x: edges[k], y })), { x: edges[bins], y: 0 }];
    const label = `${s.label} (n=${total}${inf > 0 ? `, ${inf} × ∞ not shown` : ''})`;
    return {
      type: 'line',
      label,
      data,
      stepped: 'after',
      fill: 'origin',
      backgroundColor: rgba(i, 0.28),
      borderColor: rgba(i, 1),
      borderWidth: 2,
      pointRadius: 0,
    };
  });

  const xTitle = clampedNonPositive ? `${opts.xLabel} (values ≤ 0 counted in the first bin)` : opts.xLabel;
  const options = commonOptions(opts.title, xTitle, 'fraction of samples per bin');
  const scales = options.scales as Record<string, Record<string, unknown>>;
  scales.x.type = logX ? 'logarithmic' : 'linear';
  if (logX) setLogTicks(scales.x);
  scales.x.min = edges[0];
  scales.x.max = edges[bins];
  scales.y.beginAtZero = true;
  scales.y.grace = '8%';

  const markerPlugin = {
    id: 'ditPocMarkers',
    afterDatasetsDraw(chart: {
      ctx: CanvasRenderingContext2D;
      chartArea: { left: number; right: number; top: number; bottom: number };
      scales: Record<string, { getPixelForValue(v: number): number }>;
    }) {
      const { ctx, chartArea } = chart;
      markers.forEach((m, i) => {
        const px = chart.scales.x.getPixelForValue(m.x);
        if (!Number.isFinite(px)) return;
        const x = Math.min(chartArea.right, Math.max(chartArea.left, px));
        const color = MARKER_COLORS[i % MARKER_COLORS.length];
        ctx.save();
        ctx.strokeStyle = color;
        ctx.lineWidth = 2;
        ctx.setLineDash(MARKER_DASHES[i % MARKER_DASHES.length]);
        ctx.beginPath();
        ctx.moveTo(x, chartArea.top);
        ctx.lineTo(x, chartArea.bottom);
        ctx.stroke();
        ctx.setLineDash([]);
        const text = `${m.label} = ${fmtNum(m.x)}`;
        ctx.font = `bold 13px ${FONT_FAMILY}`;
        const tw = ctx.measureText(text).width;
        const right = x + 6 + tw <= chartArea.right;
        const tx = right ? x + 6 : x - 6 - tw;
        const ty = chartArea.top + 6 + i * 20;
        ctx.fillStyle = 'rgba(255, 255, 255, 0.85)';
        ctx.fillRect(tx - 3, ty - 2, tw + 6, 18);
        ctx.fillStyle = color;
        ctx.textBaseline = 'top';
        ctx.fillText(text, tx, ty);
        ctx.restore();
      });
    },
  };

  return render(width, height, { type: 'line', data: { datasets }, options, plugins: [markerPlugin] });
}

export interface RocSeries {
  label: string;
  fpr: number[];
  tpr: number[];
}

/**
 * ROC curves (FPR on x, TPR on y, both [0, 1]) with the chance diagonal. Points are joined in
 * the order given (rocCurve's order: FPR non-decreasing); the legend shows each curve's
 * trapezoidal AUC.
 */
export async function rocPng(
  curves: RocSeries[],
  opts: {
    title: string;
    width?: number;
    height?: number;
    /** Show FPR ∈ [0, maxFpr] only (e.g. 0.05 to see the low-FPR region that matters); default 1. */
    maxFpr?: number;
  },
): Promise<Buffer> {
  const maxFpr = opts.maxFpr ?? 1;
  if (typeof maxFpr !== 'number' || !(maxFpr > 0 && maxFpr <= 1)) {
    throw new InputError(`rocPng: maxFpr must be in (0, 1], got ${String(maxFpr)}`);
  }
  const { width, height } = checkSize(opts.width ?? 800, opts.height ?? 680);
  if (!Array.isArray(curves) || curves.length === 0) throw new InputError('rocPng: need at least one curve');
  const datasets: Record<string, unknown>[] = curves.map((c, i) => {
    checkFinite(c.fpr, `rocPng: curves[${i}].fpr`);
    checkFinite(c.tpr, `rocPng: curves[${i}].tpr`);
    if (c.fpr.length !== c.tpr.length || c.fpr.length === 0) {
      throw new InputError(`rocPng: curves[${i}] needs fpr and tpr of the same non-zero length`);
    }
    let area = 0;
    for (let k = 1; k < c.fpr.length; k++) area += ((c.fpr[k] - c.fpr[k - 1]) * (c.tpr[k] + c.tpr[k - 1])) / 2;
    return {
      label: `${c.label} (AUC ${area.toFixed(4)})`,
      data: c.fpr.map((x, k) => ({ x, y: c.tpr[k] })),
      showLine: true,
      borderColor: rgba(i, 1),
      backgroundColor: rgba(i, 1),
      borderWidth: 2.5,
      pointRadius: 0,
      pointStyle: 'line',
      clip: { left: 6, top: 6, right: 0, bottom: 6 },
      borderDash: i < PALETTE.length ? [] : [6, 3],
    };
  });
  datasets.push({
    label: 'chance',
    data: [
      { x: 0, y: 0 },
      { x: 1, y: 1 },
    ],
    showLine: true,
    borderColor: 'rgba(120, 120, 120, 0.9)',
    backgroundColor: 'rgba(120, 120, 120, 0.9)',
    borderWidth: 1.5,
    borderDash: [6, 5],
    pointRadius: 0,
    pointStyle: 'line',
  });
  const options = commonOptions(opts.title, 'false-positive rate (honest samples flagged)', 'true-positive rate (tampered samples flagged)');
  const scales = options.scales as Record<string, Record<string, unknown>>;
  scales.x.type = 'linear';
  scales.x.min = 0;
  scales.x.max = maxFpr;
  scales.y.min = 0;
  scales.y.max = 1;
  const plain = (v: number | string): string => String(+Number(v).toPrecision(6));
  (scales.x.ticks as Record<string, unknown>).callback = plain;
  (scales.y.ticks as Record<string, unknown>).callback = plain;
  const legend = (options.plugins as Record<string, Record<string, unknown>>).legend;
  legend.labels = { ...(legend.labels as object), usePointStyle: true, pointStyleWidth: 34 };
  return render(width, height, { type: 'scatter', data: { datasets }, options });
}

export interface LineSeries {
  label: string;
  x: number[];
  y: number[];
}

/**
 * Line chart with markers, numeric x axis (linear) and linear or logarithmic y axis.
 * Throws InputError on mismatched x/y lengths, non-finite values, or y ≤ 0 with logY.
 */
export async function lineChartPng(
  series: LineSeries[],
  opts: { title: string; xLabel: string; yLabel: string; logY?: boolean },
): Promise<Buffer> {
  if (!Array.isArray(series) || series.length === 0) throw new InputError('lineChartPng: need at least one series');
  const datasets = series.map((s, i) => {
    checkFinite(s.x, `lineChartPng: series[${i}].x`);
    checkFinite(s.y, `lineChartPng: series[${i}].y`);
    if (s.x.length !== s.y.length) {
      throw new InputError(`lineChartPng: series[${i}] has ${s.x.length} x values but ${s.y.length} y values`);
    }
    if (opts.logY && s.y.some((v) => v <= 0)) {
      throw new InputError(`lineChartPng: series[${i}] has y ≤ 0, which a logarithmic y axis cannot show`);
    }
    return {
      label: s.label,
      data: s.x.map((x, k) => ({ x, y: s.y[k] })),
      showLine: true,
      borderColor: rgba(i, 1),
      backgroundColor: rgba(i, 1),
      borderWidth: 2.5,
      pointRadius: 3.5,
      pointStyle: ['circle', 'rect', 'triangle', 'rectRot', 'crossRot'][i % 5],
    };
  });
  const options = commonOptions(opts.title, opts.xLabel, opts.yLabel);
  const scales = options.scales as Record<string, Record<string, unknown>>;
  scales.x.type = 'linear';
  scales.y.type = opts.logY ? 'logarithmic' : 'linear';
  if (opts.logY) setLogTicks(scales.y);
  const legend = (options.plugins as Record<string, Record<string, unknown>>).legend;
  legend.labels = { ...(legend.labels as object), usePointStyle: true };
  return render(DEFAULT_WIDTH, DEFAULT_HEIGHT, { type: 'scatter', data: { datasets }, options });
}

import { describe, expect, it } from 'vitest';
import { createCanvas, loadImage } from '@napi-rs/canvas';
import { InputError } from '../src/errors.js';
import { histogramPng, lineChartPng, rocPng } from '../src/report/plots.js';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function pngSize(buf: Buffer): { width: number; height: number } {
  expect(buf.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
  expect(buf.subarray(12, 16).toString('latin1')).toBe('IHDR');
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

/** Decodes the PNG; returns the top-left pixel and the share of pixels that are not white. */
async function pixels(buf: Buffer): Promise<{ corner: number[]; inked: number; colored: number }> {
  const img = await loadImage(buf);
  const cv = createCanvas(img.width, img.height);
  const ctx = cv.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const { data } = ctx.getImageData(0, 0, img.width, img.height);
  let inked = 0;
  let colored = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
    if (r < 240 || g < 240 || b < 240) inked++;
    if (Math.max(r, g, b) - Math.min(r, g, b) > 60) colored++;
  }
  const n = data.length / 4;
  return { corner: Array.from(data.subarray(0, 4)), inked: inked / n, colored: colored / n };
}

const honest = Array.from({ length: 400 }, (_, i) => 0.01 + 0.01 * Math.sin(i) ** 2);
const tampered = Array.from({ length: 400 }, (_, i) => 0.05 + 0.03 * Math.cos(i) ** 2);

describe('histogramPng', () => {
  it('renders a PNG of the requested size on a white background', async () => {
    const buf = await histogramPng(
      [
        { label: 'honest', values: honest },
        { label: 'tampered', values: tampered },
      ],
      { title: 'distances', xLabel: 'L2', width: 640, height: 400, markers: [{ label: 'p98', x: 0.02 }] },
    );
    expect(pngSize(buf)).toEqual({ width: 640, height: 400 });
    const px = await pixels(buf);
    expect(px.corner).toEqual([255, 255, 255, 255]);
    expect(px.inked).toBeGreaterThan(0.02); // axes, text and bars were drawn
    expect(px.colored).toBeGreaterThan(0.005); // the series colours are there
  });

  it('uses 900×560 by default, and different inputs give different images', async () => {
    const a = await histogramPng([{ label: 'a', values: honest }], { title: 't', xLabel: 'x' });
    const b = await histogramPng([{ label: 'a', values: tampered }], { title: 't', xLabel: 'x' });
    const a2 = await histogramPng([{ label: 'a', values: honest }], { title: 't', xLabel: 'x' });
    expect(pngSize(a)).toEqual({ width: 900, height: 560 });
    expect(a.equals(b)).toBe(false);
    expect(a.equals(a2)).toBe(true); // deterministic
  });

  it('copes with log x, zeros, +Infinity, all-equal values and an empty series', async () => {
    const buf = await histogramPng(
      [
        { label: 'zeros', values: [0, 0, 0] },
        { label: 'spread', values: [1e-4, 1e-3, 1e-2, Infinity] },
        { label: 'empty', values: [] },
      ],
      { title: 'log', xLabel: 'L2', logX: true, bins: 10 },
    );
    expect(pngSize(buf).width).toBe(900);
    const flat = await histogramPng([{ label: 'same', values: [0.5, 0.5] }], { title: 'flat', xLabel: 'x' });
    expect(pngSize(flat).height).toBe(560);
  });

  it('rejects NaN values and bad sizes', async () => {
    await expect(histogramPng([{ label: 'a', values: [NaN] }], { title: 't', xLabel: 'x' })).rejects.toThrow(InputError);
    await expect(histogramPng([{ label: 'a', values: [1] }], { title: 't', xLabel: 'x', width: 10 })).rejects.toThrow(
      InputError,
    );
  });
});

describe('rocPng', () => {
  it('renders, and different curves give different images', async () => {
    const a = await rocPng([{ label: 'skip', fpr: [0, 0, 1], tpr: [0, 1, 1] }], { title: 'ROC' });
    const b = await rocPng([{ label: 'skip', fpr: [0, 0.5, 1], tpr: [0, 0.6, 1] }], { title: 'ROC' });
    expect(pngSize(a)).toEqual({ width: 800, height: 680 });
    expect(a.equals(b)).toBe(false);
    expect((await pixels(a)).corner).toEqual([255, 255, 255, 255]);
  });

  it('rejects mismatched fpr/tpr', async () => {
    await expect(rocPng([{ label: 'x', fpr: [0, 1], tpr: [0] }], { title: 'ROC' })).rejects.toThrow(InputError);
  });
});

describe('lineChartPng', () => {
  it('renders linear and log-y charts that differ', async () => {
    const series = [{ label: 'cost', x: [256, 1024, 4096], y: [0.1, 0.6, 5] }];
    const lin = await lineChartPng(series, { title: 'cost', xLabel: 'tokens', yLabel: 's' });
    const log = await lineChartPng(series, { title: 'cost', xLabel: 'tokens', yLabel: 's', logY: true });
    expect(pngSize(lin)).toEqual({ width: 900, height: 560 });
    expect(pngSize(log)).toEqual({ width: 900, height: 560 });
    expect(lin.equals(log)).toBe(false);
    expect((await pixels(log)).colored).toBeGreaterThan(0.001);
  });

  it('rejects y ≤ 0 on a log axis and length mismatches', async () => {
    await expect(
      lineChartPng([{ label: 'c', x: [1, 2], y: [0, 1] }], { title: 't', xLabel: 'x', yLabel: 'y', logY: true }),
    ).rejects.toThrow(InputError);
    await expect(lineChartPng([{ label: 'c', x: [1, 2], y: [1] }], { title: 't', xLabel: 'x', yLabel: 'y' })).rejects.toThrow(
      InputError,
    );
  });
});

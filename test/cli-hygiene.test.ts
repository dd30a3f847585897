// The command line as users expect it: --version, exit 2 for every usage error (subcommands
// too), --quiet, progress lines without a terminal; and serve's process hygiene: --port range,
// --backend/--device honoured or refused, SIGTERM exits promptly with stdout a closed pipe.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { addon } from '../src/engine/native.js';
import { CLI, runCli } from './helpers/cli.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ditpoc-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const version = (JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
const GEN = ['generate', '--model', 'wan-tiny', '--block-hash', 'AB', '--public-key', 'pk', '--threads', '1'];

describe('the dit-poc command line', () => {
  it('--version and -V print the package version', async () => {
    for (const flag of ['--version', '-V']) {
      const r = await runCli([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(version);
    }
  });

  it('every usage error exits 2 with a message, in subcommands too', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['no-such-command'], /unknown command/],
      [[...GEN, '--out', join(dir, 'b.ndjson'), '--count', '1', '--bogus'], /unknown option '--bogus'/],
      [['validate'], /missing required argument/],
      [['info', '--nope'], /unknown option/],
      [['inspect'], /missing required argument/],
      [['serve', '--model', 'wan-tiny', '--port', '99999'], /--port must be a port number from 0 to 65535, got '99999'/],
      [['serve', '--model', 'wan-tiny', '--port', '-1'], /--port must be a port number/],
      [['serve', '--model', 'wan-tiny', '--devices', 'cpu', '--backend', 'cpu'], /give the devices once: --devices cpu, or --backend and --device, not both/],
      [['serve', '--model', 'wan-tiny', '--backend', 'cpu', '--device', '1'], /--device picks a GPU; with --backend cpu leave it out/],
      [[...GEN, '--out', join(dir, 'x.ndjson'), '--precision', 'fp64'], /Allowed choices are/],
    ];
    if (!addon().buildInfo().backends.includes('cuda'))
      cases.push([['serve', '--model', 'wan-tiny', '--backend', 'cuda', '--port', '0', '--spool-dir', join(dir, 's')], /this build has no CUDA backend|no CUDA/]);
    for (const [args, msg] of cases) {
      const r = await runCli(args, { timeoutMs: 30_000 });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(msg);
    }
  });

  it('without a terminal, long work reports one progress line every few seconds on stderr; --quiet none', async () => {
    const loud = await runCli([...GEN, '--duration', '7s', '--batch', '2', '--out', join(dir, 'loud.ndjson'), '--json']);
    expect(loud.code, loud.stderr).toBe(0);
    const lines = loud.stderr.split('\n').filter((l) => /^dit-poc: nonces \d+/.test(l));
    expect(lines.length, loud.stderr).toBeGreaterThanOrEqual(1);
    expect(lines[0]).toMatch(/^dit-poc: nonces \d+, [\d.]+\/s, \d+ s$/);
    expect(JSON.parse(loud.stdout).count).toBeGreaterThan(0);

    const quiet = await runCli(['--quiet', ...GEN, '--duration', '6s', '--batch', '2', '--out', join(dir, 'quiet.ndjson'), '--json']);
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).toBe('');
    expect(JSON.parse(quiet.stdout).count).toBeGreaterThan(0);
  });
});

describe('serve: process hygiene', () => {
  it('SIGTERM during a generation exits 0 within 5 s even when stdout is a closed pipe', async () => {
    const p = spawn(process.execPath, [CLI, 'serve', '--model', 'wan-tiny', '--threads', '1', '--port', '0', '--spool-dir', join(dir, 'sp'), '--log-level', 'debug', '--shutdown-timeout', '3'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<{ code: number | null; at: number }>((r) => p.once('exit', (code) => r({ code, at: performance.now() })));
    const url = await new Promise<string>((resolve, reject) => {
      let buf = '';
      p.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        const m = /"msg":"listening"[^\n]*"url":"([^"]+)"|"url":"([^"]+)"[^\n]*"msg":"listening"/.exec(buf);
        if (m) resolve(m[1] ?? m[2]);
      });
      setTimeout(() => reject(new Error('serve did not start')), 30_000);
    });
    const init = await fetch(`${url}/api/v1/pow/init/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ block_hash: 'AB', block_height: 1, public_key: 'pk', node_id: 0, node_count: 1, params: { model: 'wan-tiny', seq_len: 32 }, url: 'http://127.0.0.1:9/cb' }),
    });
    expect(init.status).toBe(200);
    // Nobody reads the logs any more: every write from now on meets EPIPE.
    p.stdout!.destroy();
    await new Promise((r) => setTimeout(r, 1500));
    const t0 = performance.now();
    p.kill('SIGTERM');
    const killer = setTimeout(() => p.kill('SIGKILL'), 20_000);
    const { code, at } = await exited;
    clearTimeout(killer);
    expect(code).toBe(0);
    expect((at - t0) / 1000).toBeLessThan(5);
  });
});

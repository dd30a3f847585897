// Adds lock entries for optional platform packages the registry mirror here does not serve
// (other OS/CPU builds of rollup, esbuild, @napi-rs/canvas, …). npm 11's `npm ci` requires an
// entry for every optional dependency; the platform fields on each entry make npm skip them on
// other platforms, exactly as a lock written against the full registry does. Run after
// `npm install` changes the lock: node scripts/complete-lockfile.mjs
import { readFileSync, writeFileSync } from 'node:fs';

const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
const pkgs = lock.packages;

// Platform of a binary package from its name (the convention of these projects).
function platform(name) {
  const n = name.split('/').pop();
  const os = ['android', 'darwin', 'freebsd', 'linux', 'win32', 'openbsd', 'netbsd', 'sunos', 'aix', 'openharmony'].find((o) => n.includes(o));
  const cpu = ['arm64', 'arm', 'x64', 'ia32', 'riscv64', 'ppc64', 'loong64', 's390x', 'mips64el', 'wasm32'].find((c) => n.includes(`-${c}`));
  const out = {};
  if (os) out.os = [os === 'openharmony' ? 'openharmony' : os];
  if (cpu) out.cpu = [cpu];
  if (n.includes('musl')) out.libc = ['musl'];
  else if (n.includes('gnu') && os === 'linux') out.libc = ['glibc'];
  return out;
}

let added = 0;
for (const [path, entry] of Object.entries(pkgs)) {
  for (const [dep, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const where = `node_modules/${dep}`;
    if (pkgs[where] || pkgs[`${path}/${where}`]) continue;
    pkgs[where] = { version, optional: true, ...(entry.dev ? { dev: true } : {}), ...platform(dep) };
    added++;
  }
}
lock.packages = Object.fromEntries(Object.entries(pkgs).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0)));
writeFileSync('package-lock.json', JSON.stringify(lock, null, 2) + '\n');
console.log(`complete-lockfile: added ${added} optional platform entries`);

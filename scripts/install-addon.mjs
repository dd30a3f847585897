// npm's install step: builds the native addon from source (cmake-js, a C++17 compiler, CMake)
// unless it is already there. In a clone, `npm ci` then rebuilds it incrementally in `prepare`;
// in an installed package this is the only build. The CPU kernels are chosen at run time.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (existsSync(join(root, 'build/addon/Release/ditpoc.node'))) process.exit(0);
// npm puts every node_modules/.bin above the package on PATH for its scripts: cmake-js is there.
const r = spawnSync('cmake-js', ['compile', '--out', 'build/addon'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
if (r.status !== 0) {
  process.stderr.write('dit-poc: building the native addon failed; it needs CMake ≥ 3.18 and a C++17 compiler (g++ ≥ 12)\n');
  process.exit(r.status ?? 1);
}

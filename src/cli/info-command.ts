// `dit-poc info`: what this build can run.
import { Command } from 'commander';

import { addon } from '../engine/native.js';

export function infoCommand(): Command {
  return new Command('info')
    .description('backends, CPU features and supported models of this build')
    .option('--json', 'print JSON', false)
    .action((o) => {
      const a = addon();
      const build = a.buildInfo();
      const models = a.models().map((m) => ({
        id: m.id,
        dim: m.dim,
        layers: m.numLayers,
        heads: m.numHeads,
        experts: m.experts,
        params_per_expert: m.paramsPerExpert,
      }));
      if (o.json) {
        process.stdout.write(JSON.stringify({ build, models }, null, 2) + '\n');
        return;
      }
      console.log(`backends: ${build.backends.join(', ')}  (CPU: ${build.hardwareThreads} threads, path ${build.simd} of ${build.cpuPaths.join('/')} (DITPOC_CPU_ISA forces one); CUDA ${build.cudaCompiled ? 'compiled in' : 'not in this build'})`);
      console.log('models:');
      for (const m of models)
        console.log(`  ${m.id.padEnd(18)} D=${m.dim} layers=${m.layers} heads=${m.heads} experts=${m.experts.join('+')} params/expert=${(m.params_per_expert / 1e9).toFixed(3)}B`);
    });
}

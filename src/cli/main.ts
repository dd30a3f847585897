#!/usr/bin/env node
// The dit-poc command line.
import { Command, CommanderError } from 'commander';

import { artifactsCommand } from './artifacts-command.js';
import { calibrateCommand } from './calibrate-command.js';
import { InputError } from '../errors.js';
import { packageVersion } from '../package-info.js';
import { setQuiet } from './progress.js';
import { EXIT_USAGE } from './errors.js';
import { generateCommand } from './generate-command.js';
import { inferCommand } from './infer-command.js';
import { infoCommand } from './info-command.js';
import { inspectCommand } from './inspect-command.js';
import { priceCommand } from './price-command.js';
import { serveCommand } from './serve-command.js';
import { validateCommand } from './validate-command.js';
import { verifyInferenceCommand } from './verify-inference-command.js';

const program: Command = new Command('dit-poc')
  .description('Proof-of-Compute engine for Wan2.2 video diffusion transformers (Gonka PoC)')
  .version(packageVersion(), '-V, --version', 'print the version')
  .option('-q, --quiet', 'no progress or notes on stderr (results and errors still print; serve logs warnings and errors only)')
  .hook('preAction', (): void => setQuiet(program.opts().quiet === true))
  .exitOverride()
  .addCommand(generateCommand())
  .addCommand(validateCommand())
  .addCommand(inspectCommand())
  .addCommand(artifactsCommand())
  .addCommand(calibrateCommand())
  .addCommand(priceCommand())
  .addCommand(inferCommand())
  .addCommand(verifyInferenceCommand())
  .addCommand(infoCommand())
  .addCommand(serveCommand());

// Every command's usage errors end here (exit 2), not in commander's own exit(1).
const withOverride = (c: Command): void => {
  c.exitOverride();
  c.commands.forEach(withOverride);
};
withOverride(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // commander already printed its message (help and version exit 0)
    process.exitCode = e.exitCode === 0 ? 0 : EXIT_USAGE;
  } else {
    const msg = e instanceof Error ? e.message : String(e);
    console.error(`dit-poc: ${msg}`);
    process.exitCode = e instanceof InputError ? EXIT_USAGE : 1;
  }
}


#!/usr/bin/env node
// The dit-poc command line.
import { Command, CommanderError } from 'commander';

import { artifactsCommand } from './artifacts-command.js';
import { calibrateCommand } from './calibrate-command.js';
import { InputError } from '../errors.js';
import { EXIT_USAGE } from './errors.js';
import { generateCommand } from './generate-command.js';
import { inferCommand } from './infer-command.js';
import { infoCommand } from './info-command.js';
import { inspectCommand } from './inspect-command.js';
import { priceCommand } from './price-command.js';
import { serveCommand } from './serve-command.js';
import { validateCommand } from './validate-command.js';
import { verifyInferenceCommand } from './verify-inference-command.js';

const program = new Command('dit-poc')
  .description('Proof-of-Compute engine for Wan2.2 video diffusion transformers (Gonka PoC)')
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


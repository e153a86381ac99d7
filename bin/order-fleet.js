#!/usr/bin/env node
// Thin launcher: the CLI is compiled to dist/ by `npm run build` (run by `prepare` on `npm ci`).
import { runCli } from '../dist/cli/main.js';

await runCli(process.argv);

// tsc does not copy non-TypeScript files: put the backend's Lua scripts next to the compiled code.
import { cpSync, mkdirSync, readdirSync } from 'node:fs';

const from = 'libs/job-queue/src/bullmq/scripts';
const to = 'libs/job-queue/dist/bullmq/scripts';
mkdirSync(to, { recursive: true });
for (const file of readdirSync(from)) if (file.endsWith('.lua')) cpSync(`${from}/${file}`, `${to}/${file}`);

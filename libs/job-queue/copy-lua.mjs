// tsc does not copy non-TypeScript files: put the backend's Lua scripts next to the compiled code.
import { cpSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const from = join(root, 'src/backends/bullmq/scripts');
const to = join(root, 'dist/backends/bullmq/scripts');
mkdirSync(to, { recursive: true });
for (const file of readdirSync(from)) if (file.endsWith('.lua')) cpSync(join(from, file), join(to, file));
